//! Tests of the test infrastructure itself: the private PKI (`pki`), the HTTPS server
//! (`tls`), tinyproxy (`tinyproxy`) and the Entra ID / IMDS / Azure CLI stand-ins
//! (`idp`). Each test checks that a helper refuses what it must refuse, not only that
//! it accepts what it should.

use std::io::{Read, Write};
use std::net::{IpAddr, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use mdlr_tests::idp::{
    DEFAULT_RESOURCE, DEFAULT_SCOPE, DEVICE_CODE_GRANT, DeviceFlow, DeviceOutcome, Endpoint,
    FakeAz, FakeAzConfig, Fault, Grant, Idp, IdpConfig, JWT_BEARER,
};
use mdlr_tests::pki::{self, ClientCert, JwtAlg, KeyFormat, PemOrder, TestCa};
use mdlr_tests::server::{Handler, Request, Response, Server};
use mdlr_tests::tinyproxy::Tinyproxy;
use mdlr_tests::tls::TlsServer;
use serde_json::{Value, json};

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
    } else {
        // The workspace builds ureq without a root set of its own, so the web roots
        // are given as certificates.
        let web: Vec<_> = webpki_root_certs::TLS_SERVER_ROOT_CERTS
            .iter()
            .map(|c| ureq::tls::Certificate::from_der(c.as_ref()))
            .collect();
        tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&web));
    }
    // The workspace's ureq has no crypto provider of its own (mdlr hands it one).
    tls =
        tls.unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()));
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

// ---------------------------------------------------------------------------------------
// idp

/// POSTs `form` to `url`: status and JSON body.
#[track_caller]
fn post_form(url: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let mut reply = agent(None, None)
        .post(url)
        .send_form(form.iter().copied())
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = reply.status().as_u16();
    let body = reply.body_mut().read_to_string().expect("a body");
    let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    (status, json)
}

/// GETs `url` with `headers`: status and JSON body.
#[track_caller]
fn get_json(url: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut request = agent(None, None).get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut reply = request.call().unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = reply.status().as_u16();
    let body = reply.body_mut().read_to_string().expect("a body");
    let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    (status, json)
}

/// The claims of a JWT-shaped token.
#[track_caller]
fn claims(token: &str) -> Value {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "{token}");
    let bytes = pki::base64url_decode(parts[1]).expect("base64url claims");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

/// Checks an Entra ID error reply: status, `error`, and the AADSTS code that starts the
/// description and is in `error_codes`.
#[track_caller]
fn check_aad_error(reply: &(u16, Value), status: u16, error: &str, code: u32) {
    let (got, body) = reply;
    assert_eq!(
        (*got, body["error"].as_str()),
        (status, Some(error)),
        "{body:#}"
    );
    let description = body["error_description"]
        .as_str()
        .expect("error_description");
    assert!(
        description.starts_with(&format!("AADSTS{code}: ")),
        "{description}"
    );
    assert!(
        description.contains("\r\nCorrelation ID: "),
        "{description}"
    );
    assert_eq!(body["error_codes"], json!([code]));
    assert_eq!(
        body["correlation_id"].as_str().map(str::len),
        Some(36),
        "{body:#}"
    );
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

#[test]
fn client_secret_sign_ins_are_checked_like_entra_id() {
    let idp = Idp::start(IdpConfig::default());
    let config = idp.config();
    let secret = config.client_secret.clone().expect("a secret");
    let url = idp.token_url();
    assert_eq!(
        url,
        format!("{}/{}/oauth2/v2.0/token", idp.authority(), config.tenant)
    );
    let good = [
        ("grant_type", "client_credentials"),
        ("client_id", config.client_id.as_str()),
        ("client_secret", secret.as_str()),
        ("scope", DEFAULT_SCOPE),
    ];
    let (status, body) = post_form(&url, &good);
    assert_eq!(status, 200, "{body:#}");
    assert_eq!(
        (&body["token_type"], &body["expires_in"]),
        (&json!("Bearer"), &json!(3599))
    );
    let token = body["access_token"].as_str().expect("a token").to_owned();
    let c = claims(&token);
    assert_eq!(c["aud"], DEFAULT_RESOURCE);
    assert_eq!(
        (&c["appid"], &c["azp"]),
        (&json!(config.client_id), &json!(config.client_id))
    );
    assert_eq!(c["tid"], config.tenant.as_str());
    assert_eq!(
        c["roles"],
        json!(["Machine.Read.All", "Machine.LiveResponse", "Library.Manage"])
    );
    assert_eq!(c["exp"].as_u64(), c["iat"].as_u64().map(|t| t + 3599));
    assert_eq!(idp.grant_of(&token), Some(Grant::ClientSecret));
    assert_eq!(
        idp.check_bearer(Some(&format!("Bearer {token}"))),
        Ok(Grant::ClientSecret)
    );
    assert!(idp.check_bearer(Some(&token)).is_err(), "no Bearer prefix");
    assert!(idp.check_bearer(Some("Bearer made.up.token")).is_err());
    assert!(idp.check_bearer(None).is_err());

    // Every token is new; lifetimes and number formats follow the configuration.
    idp.update(|c| c.numbers_as_strings = true);
    idp.set_expires_in(120);
    let (_, again) = post_form(&url, &good);
    assert_ne!(again["access_token"], body["access_token"]);
    let again_claims = claims(again["access_token"].as_str().expect("a token"));
    assert_eq!(again_claims["oid"], c["oid"], "one app, one object id");
    assert_ne!(again_claims["uti"], c["uti"]);
    assert_eq!(again["expires_in"], json!("120"));
    assert!(idp.errors().is_empty(), "{:#?}", idp.errors());

    // What Entra ID refuses, it refuses here too, and says so.
    let with = |name: &str, value: &str| -> Vec<(String, String)> {
        good.iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    if *k == name { value } else { v }.to_string(),
                )
            })
            .collect()
    };
    let post = |form: Vec<(String, String)>| {
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        post_form(&url, &form)
    };
    check_aad_error(
        &post(with("client_secret", "wrong")),
        401,
        "invalid_client",
        7000215,
    );
    check_aad_error(
        &post(with("client_id", "someone-else")),
        400,
        "unauthorized_client",
        700016,
    );
    check_aad_error(
        &post(with("scope", "https://graph.microsoft.com/.default")),
        400,
        "invalid_resource",
        500011,
    );
    check_aad_error(
        &post(with("scope", "Machine.Read")),
        400,
        "invalid_scope",
        1002012,
    );
    check_aad_error(
        &post(with("grant_type", "password")),
        400,
        "unsupported_grant_type",
        70003,
    );
    let other_tenant = url.replace(&config.tenant, "contoso.example");
    check_aad_error(
        &post_form(&other_tenant, &good),
        400,
        "invalid_request",
        90002,
    );
    check_aad_error(&get_json(&url, &[]), 400, "invalid_request", 900561);
    let errors = idp.errors();
    assert_eq!(errors.len(), 7, "{errors:#?}");
    assert!(
        errors[0].ends_with("client_secret is not the app's secret"),
        "{errors:#?}"
    );
    assert!(
        errors[1].contains("client_id \"someone-else\" is not the app's"),
        "{errors:#?}"
    );
    assert!(
        errors[5].contains("tenant \"contoso.example\""),
        "{errors:#?}"
    );
    assert!(
        errors.iter().all(|e| !e.contains(&secret)),
        "a secret in {errors:#?}"
    );
    let recorded = format!("{:?}", idp.requests());
    assert!(!recorded.contains(&secret) && recorded.contains("[redacted]"));
    let shown = format!("{:?}", idp.config());
    assert!(
        !shown.contains(&secret) && shown.contains("[redacted]"),
        "{shown}"
    );

    // Injected faults answer whatever the request, and are no mistake of the client's.
    idp.fail_next(
        Endpoint::Token,
        Fault::Status {
            status: 503,
            retry_after: Some(2),
        },
    );
    idp.fail_next(Endpoint::Token, Fault::InvalidSecret);
    let reply = agent(None, None)
        .post(&url)
        .send_form(good.iter().copied())
        .expect("a reply");
    assert_eq!(reply.status().as_u16(), 503);
    assert_eq!(
        reply.headers().get("retry-after").map(|v| v.as_bytes()),
        Some(&b"2"[..])
    );
    check_aad_error(&post_form(&url, &good), 401, "invalid_client", 7000215);
    assert_eq!(post_form(&url, &good).0, 200);
    assert_eq!(idp.errors().len(), 7);
    assert_eq!(idp.requests_to(Endpoint::Token).len(), 12);
    assert_eq!(idp.issued().len(), 3);
}

#[test]
fn client_assertions_are_verified_against_the_registered_certificate() {
    let cert = ClientCert::new("mdlr-app", KeyFormat::Pkcs8, PemOrder::CertThenKey).expect("cert");
    let stranger = ClientCert::new("other", KeyFormat::Pkcs8, PemOrder::CertThenKey).expect("cert");
    let idp = Idp::start(IdpConfig {
        client_cert_der: Some(cert.cert_der().to_vec()),
        ..IdpConfig::default()
    });
    let client = idp.config().client_id;
    let url = idp.token_url();
    let sign_in = |url: &str, assertion: &str| {
        post_form(
            url,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &client),
                ("scope", DEFAULT_SCOPE),
                ("client_assertion_type", JWT_BEARER),
                ("client_assertion", assertion),
            ],
        )
    };

    // Well-made assertions: RS256 + x5t, PS256 + x5t#S256, and at another spelling of
    // the authority (aud is the URL requested).
    let first = cert.assertion(&client, &url);
    let (status, body) = sign_in(&url, &first);
    assert_eq!(status, 200, "{body:#}");
    let token = body["access_token"].as_str().expect("a token");
    assert_eq!(idp.grant_of(token), Some(Grant::ClientAssertion));
    assert_eq!(claims(token)["appidacr"], "2");
    let pss = cert.sign_jwt(
        JwtAlg::PS256,
        &cert.assertion_header(JwtAlg::PS256),
        &ClientCert::assertion_claims(&client, &url),
    );
    assert_eq!(sign_in(&url, &pss).0, 200);
    let by_name = url.replace("127.0.0.1", "localhost");
    assert_eq!(sign_in(&by_name, &cert.assertion(&client, &by_name)).0, 200);
    assert!(idp.errors().is_empty(), "{:#?}", idp.errors());

    // Bad ones, each refused for its own reason.
    let rs = JwtAlg::RS256;
    let header = cert.assertion_header(rs);
    let fresh = || ClientCert::assertion_claims(&client, &url);
    let with = |name: &str, value: Value| {
        let mut c = fresh();
        c[name] = value;
        cert.sign_jwt(rs, &header, &c)
    };
    let header_without = |name: &str| {
        let mut h = header.clone();
        h.as_object_mut().expect("an object").remove(name);
        cert.sign_jwt(rs, &h, &fresh())
    };
    let no_typ = header_without("typ");
    let no_x5t = header_without("x5t");
    let t = now();
    let mut wrong_sig = cert.assertion(&client, &url);
    wrong_sig.truncate(wrong_sig.rfind('.').expect("three parts") + 1);
    wrong_sig.push_str(&pki::base64url(&[7u8; 256]));
    let cases: Vec<(&str, String, &str)> = vec![
        ("a replay", first.clone(), "was used before (a replay)"),
        (
            "signed by another key",
            stranger.sign_jwt(rs, &header, &fresh()),
            "signature does not verify",
        ),
        ("a junk signature", wrong_sig, "signature does not verify"),
        (
            "another certificate",
            stranger.assertion(&client, &url),
            "is not the registered certificate's",
        ),
        (
            "aud elsewhere",
            with("aud", json!(url.replace("v2.0/", ""))),
            "aud is",
        ),
        ("aud another host", with("aud", json!(by_name)), "aud is"),
        (
            "iss someone else",
            with("iss", json!("someone-else")),
            "iss is",
        ),
        (
            "sub someone else",
            with("sub", json!("someone-else")),
            "sub is",
        ),
        (
            "exp too far",
            // 601 s after the assertion's own iat: `t` may be a second older by now.
            {
                let mut c = fresh();
                c["exp"] = json!(c["iat"].as_u64().unwrap_or(t) + 601);
                cert.sign_jwt(rs, &header, &c)
            },
            "more than 10 minutes",
        ),
        ("exp past", with("exp", json!(t - 5)), "in the past"),
        ("nbf future", with("nbf", json!(t + 120)), "nbf is"),
        ("iat future", with("iat", json!(t + 120)), "iat is"),
        ("no jti", with("jti", Value::Null), "no jti"),
        ("no typ", no_typ, "typ is"),
        ("RS256 without x5t", no_x5t, "without x5t"),
        (
            "alg none",
            cert.sign_jwt(rs, &json!({"alg": "none", "typ": "JWT"}), &fresh()),
            "alg is",
        ),
        ("not a JWT", "abc.def".to_owned(), "three parts"),
    ];
    for (what, assertion, why) in &cases {
        let reply = sign_in(&url, assertion);
        check_aad_error(&reply, 401, "invalid_client", 700027);
        let errors = idp.errors();
        let last = errors.last().expect("an error recorded");
        assert!(last.contains(why), "{what}: {last}");
    }
    assert_eq!(idp.errors().len(), cases.len(), "{:#?}", idp.errors());
    // 30 s of skew is tolerated.
    assert_eq!(sign_in(&url, &with("nbf", json!(t + 20))).0, 200);

    // The assertion type, and only one credential.
    let reply = post_form(
        &url,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &client),
            ("scope", DEFAULT_SCOPE),
            ("client_assertion_type", "jwt"),
            ("client_assertion", &cert.assertion(&client, &url)),
        ],
    );
    check_aad_error(&reply, 401, "invalid_client", 700027);
    let reply = post_form(
        &url,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &client),
            ("scope", DEFAULT_SCOPE),
            ("client_secret", "x"),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", &cert.assertion(&client, &url)),
        ],
    );
    check_aad_error(&reply, 401, "invalid_client", 50012);
    assert_eq!(idp.errors().len(), cases.len() + 2, "{:#?}", idp.errors());
}

/// Starts a device code sign-in: the `/devicecode` reply.
#[track_caller]
fn device_code(idp: &Idp, scope: &str) -> Value {
    let (status, body) = post_form(
        &idp.device_code_url(),
        &[("client_id", &idp.config().client_id), ("scope", scope)],
    );
    assert_eq!(status, 200, "{body:#}");
    body
}

/// One device code poll.
fn poll(idp: &Idp, device_code: &str) -> (u16, Value) {
    post_form(
        &idp.token_url(),
        &[
            ("grant_type", DEVICE_CODE_GRANT),
            ("client_id", &idp.config().client_id),
            ("device_code", device_code),
        ],
    )
}

#[test]
fn the_device_code_flow_answers_pending_then_slow_down_then_tokens() {
    let idp = Idp::start(IdpConfig {
        device: DeviceFlow {
            interval: 1,
            pending: 1,
            slow_down: true,
            slow_down_adds: 1,
            ..DeviceFlow::default()
        },
        ..IdpConfig::default()
    });
    let scope = format!("{DEFAULT_SCOPE} offline_access");
    let start = device_code(&idp, &scope);
    let code = start["device_code"]
        .as_str()
        .expect("device_code")
        .to_owned();
    let user_code = start["user_code"].as_str().expect("user_code");
    assert_eq!(
        start["verification_uri"],
        "https://microsoft.com/devicelogin"
    );
    assert_eq!(
        (&start["interval"], &start["expires_in"]),
        (&json!(1), &json!(900))
    );
    assert!(
        start["message"]
            .as_str()
            .is_some_and(|m| m.contains(user_code)),
        "{start:#}"
    );
    assert_eq!(idp.device_authorizations()[0].user_code, user_code);

    check_aad_error(&poll(&idp, &code), 400, "authorization_pending", 70016);
    std::thread::sleep(Duration::from_millis(1000));
    check_aad_error(&poll(&idp, &code), 400, "slow_down", 70016);
    std::thread::sleep(Duration::from_millis(2000));
    let (status, tokens) = poll(&idp, &code);
    assert_eq!(status, 200, "{tokens:#}");
    assert!(tokens["refresh_token"].as_str().is_some(), "{tokens:#}");
    assert!(
        tokens["scope"]
            .as_str()
            .is_some_and(|s| s.ends_with(" offline_access"))
    );
    let token = tokens["access_token"].as_str().expect("a token");
    let c = claims(token);
    assert_eq!(
        (&c["upn"], &c["scp"]),
        (
            &json!("analyst@contoso.example"),
            &json!("Machine.Read Machine.LiveResponse Library.Manage")
        )
    );
    assert!(c.get("roles").is_none(), "{c:#}");
    assert_eq!(idp.grant_of(token), Some(Grant::DeviceCode));
    assert_eq!(idp.polls().len(), 3);
    assert!(idp.errors().is_empty(), "{:#?}", idp.errors());

    // A redeemed code is spent; polling too fast is noticed (the interval after a
    // slow_down is longer).
    check_aad_error(&poll(&idp, &code), 400, "invalid_grant", 54005);
    let errors = idp.errors();
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert!(
        errors[0].contains("ms after the previous poll; the interval is 2 s"),
        "{errors:#?}"
    );
    assert!(errors[1].contains("after it was redeemed"), "{errors:#?}");

    let eager = device_code(&idp, &scope)["device_code"]
        .as_str()
        .expect("code")
        .to_owned();
    check_aad_error(&poll(&idp, &eager), 400, "authorization_pending", 70016);
    check_aad_error(&poll(&idp, &eager), 400, "slow_down", 70016);
    let errors = idp.errors();
    assert!(errors[2].contains("the interval is 1 s"), "{errors:#?}");
    check_aad_error(&poll(&idp, "made-up"), 400, "bad_verification_code", 70000);
}

#[test]
fn device_code_refusals_and_a_missing_offline_access() {
    let idp = Idp::start(IdpConfig {
        device: DeviceFlow {
            pending: 0,
            outcome: DeviceOutcome::Decline,
            ..DeviceFlow::default()
        },
        ..IdpConfig::default()
    });
    let scope = format!("{DEFAULT_SCOPE} offline_access");
    let code = device_code(&idp, &scope)["device_code"]
        .as_str()
        .expect("code")
        .to_owned();
    check_aad_error(&poll(&idp, &code), 400, "authorization_declined", 70000);
    idp.update(|c| c.device.outcome = DeviceOutcome::Expire);
    let code = device_code(&idp, &scope)["device_code"]
        .as_str()
        .expect("code")
        .to_owned();
    check_aad_error(&poll(&idp, &code), 400, "expired_token", 70019);
    assert!(idp.errors().is_empty(), "{:#?}", idp.errors());

    // Without offline_access: tokens, but no refresh token, and the mistake is noted.
    idp.update(|c| c.device.outcome = DeviceOutcome::Approve);
    let code = device_code(&idp, DEFAULT_SCOPE)["device_code"]
        .as_str()
        .expect("code")
        .to_owned();
    let (status, tokens) = poll(&idp, &code);
    assert_eq!(status, 200, "{tokens:#}");
    assert!(tokens.get("refresh_token").is_none(), "{tokens:#}");
    let errors = idp.errors();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(errors[0].contains("lacks offline_access"), "{errors:#?}");
    // The API scope itself is required.
    let (status, body) = post_form(
        &idp.device_code_url(),
        &[
            ("client_id", &idp.config().client_id),
            ("scope", "offline_access"),
        ],
    );
    check_aad_error(&(status, body), 400, "invalid_scope", 70011);
}

#[test]
fn refresh_tokens_rotate_and_only_the_latest_is_accepted() {
    let idp = Idp::start(IdpConfig {
        device: DeviceFlow {
            pending: 0,
            ..DeviceFlow::default()
        },
        ..IdpConfig::default()
    });
    let scope = format!("{DEFAULT_SCOPE} offline_access");
    let code = device_code(&idp, &scope)["device_code"]
        .as_str()
        .expect("code")
        .to_owned();
    let (_, tokens) = poll(&idp, &code);
    let first = tokens["refresh_token"]
        .as_str()
        .expect("a refresh token")
        .to_owned();
    let refresh = |token: &str| {
        post_form(
            &idp.token_url(),
            &[
                ("grant_type", "refresh_token"),
                ("client_id", &idp.config().client_id),
                ("refresh_token", token),
                ("scope", &scope),
            ],
        )
    };
    let (status, body) = refresh(&first);
    assert_eq!(status, 200, "{body:#}");
    let second = body["refresh_token"]
        .as_str()
        .expect("a new refresh token")
        .to_owned();
    assert_ne!(second, first);
    assert_eq!(
        idp.grant_of(body["access_token"].as_str().expect("token")),
        Some(Grant::RefreshToken)
    );
    assert_eq!(idp.latest_refresh_token().as_deref(), Some(second.as_str()));
    assert!(idp.errors().is_empty(), "{:#?}", idp.errors());

    check_aad_error(&refresh(&first), 400, "invalid_grant", 70043);
    check_aad_error(&refresh("never-issued"), 400, "invalid_grant", 9002313);
    let errors = idp.errors();
    assert!(errors[0].contains("an old refresh token"), "{errors:#?}");
    assert!(errors[1].contains("never issued"), "{errors:#?}");
    let (status, body) = refresh(&second);
    assert_eq!(status, 200, "{body:#}");
    let third = body["refresh_token"]
        .as_str()
        .expect("a refresh token")
        .to_owned();
    idp.revoke_refresh_tokens();
    check_aad_error(&refresh(&third), 400, "invalid_grant", 700082);
    assert_eq!(idp.errors().len(), 2);
}

#[test]
fn imds_wants_its_header_and_refuses_proxied_requests() {
    let idp = Idp::start(IdpConfig {
        imds_identities: vec!["11111111-2222-4333-8444-555555555555".to_owned()],
        ..IdpConfig::default()
    });
    let system = idp.config().imds_system_identity;
    let url = format!(
        "{}?api-version=2018-02-01&resource={}",
        idp.imds_token_url(),
        mdlr_tests::server::percent_encode(DEFAULT_RESOURCE)
    );
    let metadata = [("Metadata", "true")];

    let (status, body) = get_json(&url, &metadata);
    assert_eq!(status, 200, "{body:#}");
    for key in ["expires_in", "expires_on", "ext_expires_in", "not_before"] {
        assert!(body[key].is_string(), "{key} is not a string: {body:#}");
    }
    assert_eq!(
        (&body["expires_in"], &body["token_type"]),
        (&json!("3599"), &json!("Bearer"))
    );
    assert_eq!(
        (&body["resource"], &body["client_id"]),
        (&json!(DEFAULT_RESOURCE), &json!(system))
    );
    let expires_on: u64 = body["expires_on"]
        .as_str()
        .expect("a string")
        .parse()
        .expect("epoch");
    assert!(expires_on.abs_diff(now() + 3599) < 5, "{body:#}");
    let token = body["access_token"].as_str().expect("a token");
    assert_eq!(idp.grant_of(token), Some(Grant::ManagedIdentity));
    assert_eq!(claims(token)["appid"], system.as_str());

    let user = format!("{url}&client_id=11111111-2222-4333-8444-555555555555");
    let (status, body) = get_json(&user, &metadata);
    assert_eq!(status, 200, "{body:#}");
    assert_eq!(
        claims(body["access_token"].as_str().expect("token"))["appid"],
        "11111111-2222-4333-8444-555555555555"
    );
    assert!(idp.errors().is_empty(), "{:#?}", idp.errors());

    let refused = [
        (
            get_json(&url, &[]),
            "invalid_request",
            "Required metadata header not specified",
        ),
        (
            get_json(&format!("{url}&client_id=nobody"), &metadata),
            "invalid_request",
            "Identity not found",
        ),
        (
            get_json(&url.replace("securitycenter", "example"), &metadata),
            "invalid_resource",
            "AADSTS500011",
        ),
        (
            get_json(&url.replace("2018-02-01", "2030-01-01"), &metadata),
            "invalid_request",
            "Invalid version",
        ),
        (
            get_json(&idp.imds_token_url(), &metadata),
            "invalid_request",
            "'api-version' is missing",
        ),
    ];
    for ((status, body), error, description) in &refused {
        assert_eq!(
            (*status, body["error"].as_str()),
            (400, Some(*error)),
            "{body:#}"
        );
        assert!(
            body["error_description"]
                .as_str()
                .is_some_and(|d| d.contains(description)),
            "{body:#}"
        );
    }
    assert_eq!(idp.errors().len(), refused.len(), "{:#?}", idp.errors());

    // Through a proxy (which adds Via), IMDS refuses.
    let proxy = start_proxy(None);
    let mut s = TcpStream::connect(proxy.addr()).expect("connect to the proxy");
    write!(
        s,
        "GET {url} HTTP/1.1\r\nHost: {}\r\nMetadata: true\r\nConnection: close\r\n\r\n",
        idp.authority().trim_start_matches("http://")
    )
    .expect("write");
    let mut reply = String::new();
    s.read_to_string(&mut reply).expect("read");
    assert!(
        reply.starts_with("HTTP/1.0 400") || reply.starts_with("HTTP/1.1 400"),
        "{reply}"
    );
    let errors = idp.errors();
    assert!(
        errors
            .last()
            .is_some_and(|e| e.contains("came through a proxy")),
        "{errors:#?}"
    );
}

/// A fresh scratch directory, removed on drop.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("mdlr-infra-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("a temporary directory");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn the_fake_azure_cli_prints_a_token_as_az_does_and_logs_its_arguments() {
    let idp = Idp::start(IdpConfig::default());
    let dir = TempDir::new("az");
    let token = idp.mint(Grant::AzureCli);
    let az = FakeAz::write(
        &dir.0,
        &FakeAzConfig {
            access_token: token.clone(),
            ..FakeAzConfig::default()
        },
    );
    let args = [
        "account",
        "get-access-token",
        "--resource",
        DEFAULT_RESOURCE,
        "--output",
        "json",
    ];
    let out = Command::new(&az)
        .args(args)
        .output()
        .expect("the fake az runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    let keys: Vec<&String> = printed.as_object().expect("an object").keys().collect();
    assert_eq!(
        keys,
        [
            "accessToken",
            "expiresOn",
            "expires_on",
            "subscription",
            "tenant",
            "tokenType"
        ]
    );
    assert_eq!(printed["accessToken"], token.as_str());
    assert_eq!(idp.grant_of(&token), Some(Grant::AzureCli));
    assert_eq!(printed["tokenType"], "Bearer");
    let expires_on = printed["expires_on"].as_u64().expect("an integer");
    assert!(expires_on.abs_diff(now() + 3599) < 5, "{printed:#}");
    let local = printed["expiresOn"].as_str().expect("a string");
    let shape: String = local
        .chars()
        .map(|c| if c.is_ascii_digit() { 'd' } else { c })
        .collect();
    assert_eq!(shape, "dddd-dd-dd dd:dd:dd.dddddd", "{local}");
    assert_eq!(FakeAz::calls(&dir.0), [args.map(str::to_owned).to_vec()]);

    // An older az has no expires_on; a logged-out one fails; other resources and
    // commands fail.
    let old = FakeAz::write(
        &dir.0,
        &FakeAzConfig {
            with_expires_on: false,
            ..FakeAzConfig::default()
        },
    );
    let out = Command::new(&old).args(args).output().expect("runs");
    let printed: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert!(
        printed.get("expires_on").is_none() && printed["expiresOn"].is_string(),
        "{printed:#}"
    );

    let out_of = FakeAz::write(
        &dir.0,
        &FakeAzConfig {
            logged_out: true,
            ..FakeAzConfig::default()
        },
    );
    let out = Command::new(&out_of).args(args).output().expect("runs");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "ERROR: Please run 'az login' to setup account.\n"
    );
    assert!(out.stdout.is_empty());

    let az = FakeAz::write(&dir.0, &FakeAzConfig::default());
    let out = Command::new(&az)
        .args([
            "account",
            "get-access-token",
            "--resource",
            "https://graph.microsoft.com",
        ])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("AADSTS500011"));
    let out = Command::new(&az).args(["login"]).output().expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(FakeAz::calls(&dir.0).len(), 5);
    assert_eq!(FakeAz::calls(&dir.0)[4], ["login"]);
}
