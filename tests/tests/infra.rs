//! Tests of the test infrastructure itself: the private PKI (`pki`), the HTTPS server
//! (`tls`), tinyproxy (`tinyproxy`) and the Entra ID / IMDS / Azure CLI stand-ins
//! (`idp`). Each test checks that a helper refuses what it must refuse, not only that
//! it accepts what it should.

use std::io::{Read, Write};
use std::net::{IpAddr, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use mdlr_tests::pki::{self, ClientCert, JwtAlg, KeyFormat, PemOrder, TestCa};
use mdlr_tests::server::{Handler, Request, Response, Server};
use mdlr_tests::tinyproxy::Tinyproxy;
use mdlr_tests::tls::TlsServer;

// ---------------------------------------------------------------------------------------
// Helpers

/// A handler answering `hello PATH` (and the `Via` header it got, if any).
fn hello() -> Arc<Handler> {
    Arc::new(|req: &Request| {
        let via = req
            .header("via")
            .map(|v| format!(" via {v}"))
            .unwrap_or_default();
        Response::text(200, format!("hello {}{via}", req.target))
    })
}

/// A ureq agent that trusts `roots` (DER) instead of the bundled web roots when given,
/// and goes through `proxy` when given (never through the environment's).
fn agent(roots: Option<&[u8]>, proxy: Option<&str>) -> ureq::Agent {
    let mut tls = ureq::tls::TlsConfig::builder();
    if let Some(der) = roots {
        let ca = ureq::tls::Certificate::from_der(der).to_owned();
        tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&[ca]));
    }
    ureq::Agent::config_builder()
        .tls_config(tls.build())
        .proxy(proxy.map(|p| ureq::Proxy::new(p).expect("a proxy URL")))
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into()
}

/// GETs `url` with `agent`: status and body.
fn get(agent: &ureq::Agent, url: &str) -> Result<(u16, String), ureq::Error> {
    let mut reply = agent.get(url).call()?;
    let status = reply.status().as_u16();
    Ok((status, reply.body_mut().read_to_string()?))
}

/// GETs `/raw` from `server` with a bare rustls client that trusts `root` (DER) and asks
/// for `name`: the whole reply. (It sends an alert when it refuses the certificate.)
fn rustls_get(server: &TlsServer, root: &[u8], name: &str) -> std::io::Result<String> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(root.to_vec()))
        .expect("a CA certificate");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(name.to_owned()).expect("a name");
    let conn =
        rustls::ClientConnection::new(Arc::new(config), name).map_err(std::io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(conn, TcpStream::connect(server.addr())?);
    tls.write_all(b"GET /raw HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    let mut reply = String::new();
    tls.read_to_string(&mut reply)?;
    Ok(reply)
}

/// `openssl ARGS` on this machine: its stdout.
#[track_caller]
fn openssl(args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `AB:CD:...` to bytes.
fn unhex(colons: &str) -> Vec<u8> {
    colons
        .trim()
        .split(':')
        .map(|h| u8::from_str_radix(h, 16).expect("hex"))
        .collect()
}

// ---------------------------------------------------------------------------------------
// pki

#[test]
fn the_ca_and_server_certificates_carry_the_extensions_webpki_wants() {
    let ca = TestCa::new().expect("test CA");
    let text = openssl(&[
        "x509",
        "-noout",
        "-text",
        "-in",
        &ca.ca_pem_path().to_string_lossy(),
    ]);
    assert!(text.contains("CA:TRUE"), "{text}");
    assert!(text.contains("Certificate Sign"), "{text}");
    let der = openssl(&[
        "x509",
        "-outform",
        "DER",
        "-in",
        &ca.ca_pem_path().to_string_lossy(),
    ]);
    assert!(!der.is_empty() && !ca.ca_der().is_empty());

    let ips = [IpAddr::from([127, 0, 0, 1]), IpAddr::from([10, 1, 2, 3])];
    let cert = ca
        .server_cert(&["localhost", "api.test"], &ips)
        .expect("server certificate");
    let text = openssl(&[
        "x509",
        "-noout",
        "-text",
        "-in",
        &cert.cert_pem_path().to_string_lossy(),
    ]);
    for want in [
        "CA:FALSE",
        "Digital Signature",
        "TLS Web Server Authentication",
        "DNS:localhost, DNS:api.test, IP Address:127.0.0.1, IP Address:10.1.2.3",
        "Issuer: O = mdlr tests, CN = mdlr test CA",
    ] {
        assert!(text.contains(want), "no {want:?} in\n{text}");
    }
    // The chain file is the certificate then the CA; openssl verifies it against the CA.
    let chain = std::fs::read_to_string(cert.chain_pem_path()).expect("chain");
    assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2);
    let verified = openssl(&[
        "verify",
        "-CAfile",
        &ca.ca_pem_path().to_string_lossy(),
        "-purpose",
        "sslserver",
        &cert.cert_pem_path().to_string_lossy(),
    ]);
    assert!(verified.contains(": OK"), "{verified}");
    let key = std::fs::read_to_string(cert.key_pem_path()).expect("key");
    assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"), "{key}");
    assert_eq!(cert.chain_der()[1], ca.ca_der());

    let none = ca.server_cert(&[], &[]).expect_err("no names");
    assert_eq!(none.kind(), std::io::ErrorKind::InvalidInput);
    // Another CA does not vouch for it.
    let other = TestCa::named("unrelated CA").expect("second CA");
    let out = Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(other.ca_pem_path())
        .arg(cert.cert_pem_path())
        .output()
        .expect("openssl runs");
    assert!(!out.status.success(), "an unrelated CA verified it");
}

#[test]
fn client_certificates_come_in_every_layout_with_right_thumbprints() {
    for (key, order) in [
        (KeyFormat::Pkcs8, PemOrder::CertThenKey),
        (KeyFormat::Pkcs8, PemOrder::KeyThenCert),
        (KeyFormat::Pkcs1, PemOrder::CertThenKey),
        (KeyFormat::Pkcs1, PemOrder::KeyThenCert),
    ] {
        let cert = ClientCert::new("mdlr-app", key, order).expect("client certificate");
        let pem = std::fs::read_to_string(cert.pem_path()).expect("PEM");
        let label = match key {
            KeyFormat::Pkcs8 => "-----BEGIN PRIVATE KEY-----",
            KeyFormat::Pkcs1 => "-----BEGIN RSA PRIVATE KEY-----",
        };
        let first = match order {
            PemOrder::CertThenKey => "-----BEGIN CERTIFICATE-----",
            PemOrder::KeyThenCert => label,
        };
        assert!(pem.starts_with(first), "{key:?} {order:?}:\n{pem}");
        assert!(pem.contains(label) && pem.contains("-----BEGIN CERTIFICATE-----"));
        assert_eq!(pem.matches("-----BEGIN ").count(), 2, "{pem}");

        // openssl reads the combined file both ways, and it is RSA 2048.
        let path = cert.pem_path().to_string_lossy().into_owned();
        let key_text = openssl(&["pkey", "-in", &path, "-noout", "-text"]);
        assert!(key_text.contains("2048 bit"), "{key_text}");
        let sha1 = openssl(&["x509", "-in", &path, "-noout", "-fingerprint", "-sha1"]);
        let sha256 = openssl(&["x509", "-in", &path, "-noout", "-fingerprint", "-sha256"]);
        let (_, sha1) = sha1.split_once('=').expect("SHA1 Fingerprint=...");
        let (_, sha256) = sha256.split_once('=').expect("SHA256 Fingerprint=...");
        assert_eq!(cert.x5t(), pki::base64url(&unhex(sha1)));
        assert_eq!(cert.x5t_s256(), pki::base64url(&unhex(sha256)));
        assert_eq!(cert.thumbprint_hex(), sha1.trim().replace(':', ""));
        assert_eq!(cert.x5t().len(), 27, "20 bytes, unpadded");
        assert!(!cert.x5t_s256().contains(['=', '+', '/']));

        // The key in the file is the certificate's: what it signs, the certificate's
        // public key verifies; a changed message does not.
        let public = pki::rsa_public_key(cert.cert_der()).expect("an RSA certificate");
        for (alg, check) in [
            (JwtAlg::RS256, &ring::signature::RSA_PKCS1_2048_8192_SHA256),
            (JwtAlg::PS256, &ring::signature::RSA_PSS_2048_8192_SHA256),
        ] {
            let jwt = cert.sign_jwt(
                alg,
                &cert.assertion_header(alg),
                &serde_json::json!({"a": 1}),
            );
            let (input, sig) = jwt.rsplit_once('.').expect("three parts");
            let sig = pki::base64url_decode(sig).expect("base64url");
            let key = ring::signature::UnparsedPublicKey::new(check, &public);
            assert!(key.verify(input.as_bytes(), &sig).is_ok(), "{alg:?}");
            assert!(key.verify(format!("{input}x").as_bytes(), &sig).is_err());
        }
    }
    // Two certificates are unrelated; an EC certificate has no RSA key.
    let a = ClientCert::new("a", KeyFormat::Pkcs8, PemOrder::CertThenKey).expect("a");
    let b = ClientCert::new("a", KeyFormat::Pkcs8, PemOrder::CertThenKey).expect("b");
    assert_ne!(a.x5t(), b.x5t());
    let ca = TestCa::new().expect("test CA");
    assert_eq!(pki::rsa_public_key(ca.ca_der()), None);
    assert_eq!(pki::rsa_public_key(b"not DER"), None);
}

// ---------------------------------------------------------------------------------------
// tls

#[test]
fn a_client_trusting_the_test_ca_is_served_others_refuse_the_certificate() {
    let ca = TestCa::new().expect("test CA");
    let cert = ca.localhost_cert().expect("server certificate");
    let server = TlsServer::start(&cert, hello()).expect("TLS server");
    assert_eq!(server.url(), format!("https://localhost:{}", server.port()));

    let trusting = agent(Some(ca.ca_der()), None);
    let reply = get(&trusting, &format!("{}/a?b=c", server.url())).expect("trusted by name");
    assert_eq!(reply, (200, "hello /a?b=c".to_owned()));
    let reply = get(&trusting, &format!("{}/ip", server.url_ip())).expect("trusted by IP");
    assert_eq!(reply, (200, "hello /ip".to_owned()));
    assert_eq!((server.handshakes(), server.requests()), (2, 2));
    assert_eq!(server.failures(), []);

    // A bare rustls client trusting the CA reads the reply to the end (close_notify).
    let reply = rustls_get(&server, ca.ca_der(), "localhost").expect("trusted");
    assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
    assert!(reply.ends_with("\r\n\r\nhello /raw"), "{reply}");
    assert_eq!((server.handshakes(), server.requests()), (3, 3));

    // The bundled web roots do not know the test CA: ureq closes the connection once it
    // has the certificate (without an alert).
    let err = get(&agent(None, None), &server.url()).expect_err("untrusted");
    let failures = server.wait_failures(1, Duration::from_secs(5));
    assert_eq!(failures.len(), 1, "{err}: {failures:?}");
    assert!(failures[0].certificate_sent, "{failures:?}");
    assert_eq!(failures[0].server_name.as_deref(), Some("localhost"));
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");

    // Another CA: a bare rustls client says so with an alert.
    let other = TestCa::named("unrelated CA").expect("second CA");
    let err = rustls_get(&server, other.ca_der(), "localhost").expect_err("untrusted");
    let failures = server.wait_failures(2, Duration::from_secs(5));
    assert_eq!(failures.len(), 2, "{err}: {failures:?}");
    assert_eq!(
        failures[1].alert.as_deref(),
        Some("UnknownCA"),
        "{failures:?}"
    );
    assert!(failures[1].certificate_sent);
    get(&agent(Some(other.ca_der()), None), &server.url()).expect_err("untrusted");
    assert_eq!(server.wait_failures(3, Duration::from_secs(5)).len(), 3);

    // Plain text is no handshake either.
    let mut plain = TcpStream::connect(server.addr()).expect("connect");
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let _ = plain.read_to_end(&mut Vec::new());
    let failures = server.wait_failures(4, Duration::from_secs(5));
    assert_eq!(failures.len(), 4, "{failures:?}");
    assert_eq!(failures[3].alert, None);
    assert!(!failures[3].certificate_sent, "{failures:?}");
    assert_eq!((server.handshakes(), server.requests()), (3, 3));
}

#[test]
fn a_certificate_for_another_name_is_refused() {
    let ca = TestCa::new().expect("test CA");
    let cert = ca
        .server_cert(&["api.example.test"], &[])
        .expect("certificate");
    let server = TlsServer::start(&cert, hello()).expect("TLS server");
    let err = get(&agent(Some(ca.ca_der()), None), &server.url()).expect_err("wrong name");
    assert!(err.to_string().contains("not valid for name"), "{err}");
    rustls_get(&server, ca.ca_der(), "localhost").expect_err("wrong name");
    let failures = server.wait_failures(2, Duration::from_secs(5));
    assert_eq!(failures.len(), 2, "{failures:?}");
    assert!(failures.iter().all(|f| f.certificate_sent), "{failures:?}");
    assert_eq!(failures[1].alert.as_deref(), Some("BadCertificate"));
    assert_eq!(server.handshakes(), 0);
    // The name it has works.
    let reply = rustls_get(&server, ca.ca_der(), "api.example.test").expect("right name");
    assert!(reply.ends_with("hello /raw"), "{reply}");
}

// ---------------------------------------------------------------------------------------
// tinyproxy

#[track_caller]
fn start_proxy(auth: Option<(&str, &str)>) -> Tinyproxy {
    let started = match auth {
        None => Tinyproxy::start(),
        Some((user, password)) => Tinyproxy::start_with_auth(user, password),
    };
    started.unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn requests_through_tinyproxy_show_up_in_its_log() {
    let proxy = start_proxy(None);
    assert!(proxy.requests().is_empty(), "{}", proxy.log());
    let plain = Server::start(hello()).expect("server");
    let ca = TestCa::new().expect("test CA");
    let tls = TlsServer::start(&ca.localhost_cert().expect("cert"), hello()).expect("TLS");
    let via = agent(Some(ca.ca_der()), Some(&proxy.url()));

    // ureq tunnels both http and https targets with CONNECT.
    let reply = get(&via, &format!("{}/plain", plain.url())).expect("via the proxy");
    assert_eq!(reply, (200, "hello /plain".to_owned()));
    let reply = get(&via, &format!("{}/tls", tls.url())).expect("via the proxy");
    assert_eq!(reply, (200, "hello /tls".to_owned()));
    let want = [
        format!("127.0.0.1:{}", plain.port()),
        format!("localhost:{}", tls.port()),
    ];
    assert_eq!(proxy.connects(), want, "{}", proxy.log());
    assert_eq!(proxy.established(), ["127.0.0.1", "localhost"]);
    assert_eq!(tls.handshakes(), 1);

    // A plain proxied request (absolute URL) is forwarded with a Via header.
    let mut s = TcpStream::connect(proxy.addr()).expect("connect to the proxy");
    let target = format!("{}/direct", plain.url());
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut reply = String::new();
    s.read_to_string(&mut reply).expect("read");
    assert!(
        reply.starts_with("HTTP/1.1 200") || reply.starts_with("HTTP/1.0 200"),
        "{reply}"
    );
    assert!(
        reply.contains("hello /direct via 1.1 ") && reply.contains("(tinyproxy/"),
        "{reply}"
    );
    let last = proxy.requests().pop().expect("a request");
    assert_eq!(
        (last.method.as_str(), last.target.as_str()),
        ("GET", target.as_str())
    );

    // Without a proxy, nothing is logged.
    let before = proxy.requests().len();
    get(&agent(None, None), &plain.url()).expect("direct");
    assert_eq!(proxy.requests().len(), before);

    // Dropping it stops it.
    let addr = proxy.addr();
    drop(proxy);
    assert!(TcpStream::connect(addr).is_err(), "tinyproxy still listens");
}

#[test]
fn tinyproxy_with_basic_auth_wants_the_credentials() {
    let proxy = start_proxy(Some(("alice", "s3cr3t")));
    let server = Server::start(hello()).expect("server");
    let url = format!("{}/x", server.url());
    assert_eq!(
        proxy.url_with_credentials(),
        format!("http://alice:s3cr3t@127.0.0.1:{}", proxy.port())
    );

    // ureq reports a refused CONNECT as an error; tinyproxy logged it but did not connect.
    let refused = get(&agent(None, Some(&proxy.url())), &url);
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(proxy.connects().len(), 1, "{}", proxy.log());
    assert!(proxy.established().is_empty(), "{}", proxy.log());

    let wrong = format!("http://alice:wrong@127.0.0.1:{}", proxy.port());
    assert!(get(&agent(None, Some(&wrong)), &url).is_err());
    assert!(proxy.established().is_empty(), "{}", proxy.log());

    let reply = get(&agent(None, Some(&proxy.url_with_credentials())), &url).expect("allowed");
    assert_eq!(reply, (200, "hello /x".to_owned()));
    assert_eq!(proxy.established(), ["127.0.0.1"], "{}", proxy.log());
    assert_eq!(proxy.connects().len(), 3);

    assert!(Tinyproxy::start_with_auth("a b", "c").is_err());
}
