//! At home on a jump host: the progress bar, `mdlr auth`, every sign-in method against
//! a local stand-in of Entra ID and IMDS that checks each request, proxies through a real
//! tinyproxy, and a private CA in front of a local HTTPS server.

use serde_json::json;

use crate::util::*;

/// A JWT-shaped token with `claims` (the signature is junk: only the API checks it).
pub fn jwt(claims: &serde_json::Value) -> String {
    use mdlr_tests::pki::base64url;
    format!(
        "{}.{}.c2lnbmF0dXJlLVNFQ1JFVA",
        base64url(br#"{"typ":"JWT","alg":"RS256"}"#),
        base64url(claims.to_string().as_bytes())
    )
}

/// 3 MiB of compressible text, gzipped as a GetFile result is.
fn getfile_payload() -> (Vec<u8>, Vec<u8>) {
    let text: Vec<u8> = (0..3 << 20)
        .map(|i: u32| b"abcdefghij\n"[(i % 11) as usize])
        .collect();
    let gz = gzip(&text);
    (text, gz)
}

#[test]
fn progress_bar_only_when_asked_or_on_a_terminal() {
    let (text, gz) = getfile_payload();
    let svc = Service::start();
    let _mocks = svc.getfile(gz, Some("attachment; filename=\"big.log.gz\""));
    // Piped stderr (as here): no bar, only the result line.
    let out = svc.mdlr(&["result", ACTION, "--index", "1"]).run();
    out.status(0);
    assert!(!out.stderr.contains('\r'), "{:?}", out.stderr);
    assert!(!out.stderr.contains('%'), "{:?}", out.stderr);
    assert_eq!(read(svc.dir.join("big.log")), text);

    // --progress: a bar on stderr, redrawn in place, ending at 100 % and cleared.
    let out = svc
        .mdlr(&["--progress", "result", ACTION, "--index", "1", "--force"])
        .run();
    out.status(0);
    assert!(out.stderr.contains('\r'), "{:?}", out.stderr);
    assert!(
        out.stderr.contains("100% [========================]"),
        "{:?}",
        out.stderr
    );
    assert!(out.stderr.contains("/s"), "{:?}", out.stderr);
    assert!(out.stderr.ends_with("\r\x1b[K"), "{:?}", out.stderr);
    assert_eq!(
        out.stdout,
        "saved big.log (3145728 bytes, from big.log.gz)\n"
    );
    assert_eq!(read(svc.dir.join("big.log")), text);

    // -q wins over --progress.
    let out = svc
        .mdlr(&[
            "-q",
            "--progress",
            "result",
            ACTION,
            "--index",
            "1",
            "--force",
        ])
        .run();
    out.status(0);
    assert_eq!(out.stderr, "");
}

#[test]
fn auth_shows_what_the_token_grants_never_the_token() {
    let svc = Service::start();
    let any = svc.api.mock(|when, then| {
        when.any_request();
        then.status(500);
    });
    let token = jwt(&json!({
        "aud": "https://api.securitycenter.microsoft.com",
        "tid": "11111111-2222-3333-4444-555555555555",
        "appid": "app-0001",
        "app_displayname": "mdlr responders",
        "roles": ["Machine.LiveResponse", "Machine.Read.All"],
        "exp": 4_102_444_800u64,
    }));
    let out = svc.mdlr(&["auth"]).env("MDLR_TOKEN", token.clone()).run();
    out.status(0);
    let want = "sign-in   token\n\
         tenant    11111111-2222-3333-4444-555555555555\n\
         app       mdlr responders (app-0001)\n\
         audience  https://api.securitycenter.microsoft.com\n\
         roles     Machine.LiveResponse, Machine.Read.All\n\
         expires   2100-01-01 00:00:00 UTC (in ";
    assert!(out.stdout.starts_with(want), "{}", out.stdout);
    assert_eq!(out.stderr, "");
    assert!(!out.stdout.contains(&token) && !out.stdout.contains("c2lnbmF0dXJl"));

    let out = svc
        .mdlr(&["--json", "auth"])
        .env("MDLR_TOKEN", token.clone())
        .run();
    out.status(0);
    let v = &out.json_lines()[0];
    assert_eq!(v["method"], "token");
    assert_eq!(
        v["roles"],
        json!(["Machine.LiveResponse", "Machine.Read.All"])
    );
    assert_eq!(v["expires_at"], 4_102_444_800u64);
    assert_eq!(v["live_response"], true);
    assert!(!out.stdout.contains(&token));

    // A token without the live response permission says what will fail.
    let reader = jwt(&json!({"tid": "t", "appid": "a", "roles": ["Machine.Read.All"]}));
    let out = svc.mdlr(&["auth"]).env("MDLR_TOKEN", reader).run();
    out.status(0);
    assert!(
        out.stderr.contains("does not carry Machine.LiveResponse"),
        "{}",
        out.stderr
    );
    // An opaque token: nothing to read, still no token shown.
    let out = svc.mdlr(&["auth"]).env("MDLR_TOKEN", "opaque-SECRET").run();
    out.check(
        0,
        "sign-in   token\ntoken     not a JWT: it cannot be read, only used\n",
        "",
    );
    // No API call was needed for any of it.
    any.assert_calls(0);
}

// ---------------------------------------------------------------------------------------
// A stand-in of the API and the result host on one server, plain or HTTPS, serving the
// seed transcript at index 0.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use mdlr_tests::pki::TestCa;
use mdlr_tests::server::{Request, Response, Server};
use mdlr_tests::tinyproxy::Tinyproxy;
use mdlr_tests::tls::TlsServer;

/// The base URL the stand-in puts in its result links (known once it listens).
type Base = Arc<OnceLock<String>>;

/// Which `Authorization` headers the API stand-in accepts.
type Gate = Arc<dyn Fn(Option<&str>) -> bool + Send + Sync>;

fn stand_in(base: Base, token: String) -> Arc<mdlr_tests::server::Handler> {
    let bearer = format!("Bearer {token}");
    gated_stand_in(base, Arc::new(move |auth| auth == Some(bearer.as_str())))
}

fn gated_stand_in(base: Base, gate: Gate) -> Arc<mdlr_tests::server::Handler> {
    Arc::new(move |req: &Request| {
        let path = req.path();
        if path.starts_with("/results/") {
            if req.header("authorization").is_some() {
                return Response::text(400, "the result host must never see a bearer token");
            }
            return Response::new(200, "application/octet-stream", SEED.as_bytes().to_vec());
        }
        if !gate(req.header("authorization")) {
            return Response::json(401, &api_error("Unauthorized", "bad token"));
        }
        if path == format!("/api/machineactions/{ACTION}") {
            return Response::json(200, &done_action());
        }
        if path == seed_path(0) {
            let base = base.get().cloned().unwrap_or_default();
            return Response::json(
                200,
                &json!({"value": format!("{base}/results/transcript?{LINK_QUERY}")}),
            );
        }
        Response::json(404, &api_error("NotFound", "no such thing"))
    })
}

fn plain_stand_in() -> (Server, String) {
    let bearer = format!("Bearer {TOKEN}");
    gated_plain_stand_in(Arc::new(move |auth| auth == Some(bearer.as_str())))
}

fn gated_plain_stand_in(gate: Gate) -> (Server, String) {
    let base: Base = Arc::default();
    let server = Server::start(gated_stand_in(base.clone(), gate)).expect("start server");
    let url = server.url().trim_end_matches('/').to_owned();
    let _ = base.set(url.clone());
    (server, url)
}

fn tls_stand_in(ca: &TestCa) -> (TlsServer, String) {
    let cert = ca.localhost_cert().expect("server certificate");
    let base: Base = Arc::default();
    let server =
        TlsServer::start(&cert, stand_in(base.clone(), TOKEN.to_owned())).expect("start server");
    let url = server.url();
    let _ = base.set(url.clone());
    (server, url)
}

/// `mdlr result ACTION` (the seed transcript) against `api`, with our token.
fn result_from(api: &str) -> Run {
    Run::new(&["--api-url", api, "result", ACTION]).env("MDLR_TOKEN", TOKEN)
}

#[track_caller]
fn check_seed(out: &Outcome) {
    assert_eq!(out.code, Some(0), "stderr: {}", out.stderr);
    assert_eq!(out.stdout, SEED_OUTPUT);
}

#[test]
fn private_ca_is_trusted_on_top_of_the_bundled_roots() {
    let ca = TestCa::new().expect("test CA");
    let (server, api) = tls_stand_in(&ca);
    let dir = TempDir::new();

    // Unknown CA: refused, with the hint that fixes it.
    let out = result_from(&api).run();
    out.check_err(
        69,
        &[
            "TLS failed: the server's certificate is not signed by a trusted certificate authority",
            "hint: if a proxy inspects TLS on this network, trust its CA with --ca-cert PATH",
        ],
    );
    let failures = server.wait_failures(1, Duration::from_secs(5));
    assert!(
        failures.iter().any(|f| f.certificate_sent),
        "the client should have refused our certificate: {failures:?}"
    );
    assert_eq!(server.requests(), 0);

    // --ca-cert, then SSL_CERT_FILE: accepted, the whole result comes through.
    let ca_pem = ca.ca_pem_path();
    let ca_pem = ca_pem.to_str().expect("utf-8 path");
    check_seed(&result_from(&api).args(&["--ca-cert", ca_pem]).run());
    check_seed(&result_from(&api).env("SSL_CERT_FILE", ca_pem).run());
    assert!(server.requests() >= 6, "{} requests", server.requests());

    // Another CA does not vouch for this server.
    let other = TestCa::named("someone else").expect("second CA");
    let other_pem = other.ca_pem_path();
    result_from(&api)
        .args(&["--ca-cert", other_pem.to_str().expect("utf-8 path")])
        .run()
        .check_err(69, &["not signed by a trusted certificate authority"]);

    // A file without a certificate is a configuration error.
    let junk = dir.join("junk.pem");
    write(&junk, "not a certificate\n");
    result_from(&api)
        .args(&["--ca-cert", junk.to_str().expect("utf-8 path")])
        .run()
        .check_err(78, &["--ca-cert", "no PEM certificate"]);
    result_from(&api)
        .args(&["--ca-cert", "/nonexistent/ca.pem"])
        .run()
        .check_err(78, &["cannot read CA file /nonexistent/ca.pem"]);
}

fn tinyproxy() -> Tinyproxy {
    Tinyproxy::start().unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn proxies_from_the_environment_and_the_command_line() {
    let (server, api) = plain_stand_in();
    let target = format!("127.0.0.1:{}", server.port());
    let proxy = tinyproxy();

    // HTTP_PROXY carries plain-http traffic (tunnelled with CONNECT).
    check_seed(&result_from(&api).env("HTTP_PROXY", proxy.url()).run());
    let through = proxy.connects();
    assert!(
        !through.is_empty() && through.iter().all(|t| *t == target),
        "{through:?}\n{}",
        proxy.log()
    );

    // NO_PROXY, --no-proxy: direct, the proxy sees nothing more.
    check_seed(
        &result_from(&api)
            .env("HTTP_PROXY", proxy.url())
            .env("NO_PROXY", "example.com, 127.0.0.1")
            .run(),
    );
    check_seed(
        &result_from(&api)
            .env("ALL_PROXY", proxy.url())
            .arg("--no-proxy")
            .run(),
    );
    assert_eq!(proxy.connects().len(), through.len(), "{}", proxy.log());

    // --proxy wins over a broken variable; ALL_PROXY fills in for HTTP_PROXY.
    check_seed(
        &result_from(&api)
            .env("HTTP_PROXY", "http://127.0.0.1:1")
            .args(&["--proxy", &proxy.url()])
            .run(),
    );
    check_seed(&result_from(&api).env("ALL_PROXY", proxy.url()).run());
    assert!(
        proxy.connects().len() >= through.len() + 2,
        "{}",
        proxy.log()
    );

    // HTTPS through the proxy: a tunnel to the host, TLS inside it.
    let ca = TestCa::new().expect("test CA");
    let (tls, tls_api) = tls_stand_in(&ca);
    let ca_pem = ca.ca_pem_path();
    let before = proxy.connects().len();
    check_seed(
        &result_from(&tls_api)
            .env("HTTPS_PROXY", proxy.url())
            .env("SSL_CERT_FILE", ca_pem.to_str().expect("utf-8 path"))
            .run(),
    );
    let tunnels = &proxy.connects()[before..];
    assert!(
        !tunnels.is_empty()
            && tunnels
                .iter()
                .all(|t| *t == format!("localhost:{}", tls.port())),
        "{tunnels:?}"
    );

    // A proxy that is not there: exit 69, and the hint says which option fixes it.
    let dead = format!("http://127.0.0.1:{}", free_port());
    result_from(&api)
        .env("HTTP_PROXY", dead.clone())
        .args(&["--retries", "0"])
        .run()
        .check_err(
            69,
            &[
                &format!("cannot connect to the proxy {dead}"),
                "hint: check --proxy (or HTTPS_PROXY/HTTP_PROXY/ALL_PROXY and NO_PROXY); --no-proxy connects directly",
            ],
        );
    // SOCKS is refused up front.
    result_from(&api)
        .env("HTTPS_PROXY", "socks5://127.0.0.1:1080")
        .run()
        .check_err(78, &["HTTPS_PROXY", "SOCKS proxies are not supported"]);
}

#[test]
fn proxy_credentials_work_and_are_never_shown() {
    let (_server, api) = plain_stand_in();
    let proxy =
        Tinyproxy::start_with_auth("responder", "pr0xy-SECRET").unwrap_or_else(|e| panic!("{e}"));
    let out = result_from(&api)
        .args(&["-vv", "--proxy", &proxy.url_with_credentials()])
        .run();
    check_seed(&out);
    assert!(!out.stderr.contains("pr0xy-SECRET"), "{}", out.stderr);
    assert!(!proxy.connects().is_empty(), "{}", proxy.log());

    let wrong = proxy
        .url_with_credentials()
        .replace("pr0xy-SECRET", "wr0ng-SECRET");
    let out = result_from(&api)
        .args(&["-vv", "--retries", "0", "--proxy", &wrong])
        .run();
    out.check_err(69, &["did not open a tunnel", "hint: check --proxy"]);
    assert!(!out.stderr.contains("wr0ng-SECRET"), "{}", out.stderr);
}

// ---------------------------------------------------------------------------------------
// Sign-in methods against the identity stand-in, which checks every request.

use mdlr_tests::idp::{FakeAz, FakeAzConfig, Grant, Idp, IdpConfig};
use mdlr_tests::pki::{ClientCert, KeyFormat, PemOrder};

/// An API stand-in that takes only tokens `idp` issued (by any grant).
fn api_for(idp: &Arc<Idp>) -> (Server, String) {
    let idp = idp.clone();
    gated_plain_stand_in(Arc::new(move |auth| idp.check_bearer(auth).is_ok()))
}

/// `mdlr ARGS` signing in at `idp`, calling `api`, with no credential of its own.
fn signed_in(idp: &Idp, api: &str, args: &[&str]) -> Run {
    Run::new(&["--login-url", &idp.authority(), "--api-url", api])
        .args(args)
        .env("PATH", "/nonexistent")
}

/// Nothing `out` shows is a secret the stand-in issued or was sent: access and refresh
/// tokens, client secrets and assertions, device codes.
#[track_caller]
fn check_no_idp_secrets(out: &Outcome, idp: &Idp) {
    let mut secrets: Vec<String> = Vec::new();
    for issued in idp.issued() {
        secrets.push(issued.access_token);
        secrets.extend(issued.refresh_token);
    }
    for req in idp.requests() {
        for (key, value) in &req.form {
            if matches!(
                key.as_str(),
                "client_secret" | "client_assertion" | "refresh_token" | "device_code"
            ) {
                secrets.push(value.clone());
            }
        }
    }
    secrets.extend(idp.config().client_secret);
    assert!(!secrets.is_empty());
    for secret in secrets.iter().filter(|s| s.len() >= 8) {
        assert!(
            !out.stdout.contains(secret.as_str()) && !out.stderr.contains(secret.as_str()),
            "a secret was shown:\n{}\n{}",
            out.stdout,
            out.stderr
        );
    }
}

#[track_caller]
fn check_idp_clean(idp: &Idp) {
    assert!(
        idp.errors().is_empty(),
        "the stand-in found: {:?}",
        idp.errors()
    );
}

#[test]
fn client_certificate_signs_a_checked_assertion() {
    for (format, order) in [
        (KeyFormat::Pkcs8, PemOrder::CertThenKey),
        (KeyFormat::Pkcs1, PemOrder::KeyThenCert),
    ] {
        let cert = ClientCert::new("mdlr responders", format, order).expect("certificate");
        let idp = Arc::new(Idp::start(IdpConfig {
            client_cert_der: Some(cert.cert_der().to_vec()),
            client_secret: None,
            ..IdpConfig::default()
        }));
        let (_api, api) = api_for(&idp);
        let config = idp.config();
        let run = |args: &[&str]| {
            signed_in(&idp, &api, args)
                .env("AZURE_TENANT_ID", config.tenant.clone())
                .env("AZURE_CLIENT_ID", config.client_id.clone())
                .env(
                    "AZURE_CLIENT_CERTIFICATE_PATH",
                    cert.pem_path().to_str().expect("utf-8 path"),
                )
        };
        check_seed(&run(&["result", ACTION]).run());
        let out = run(&["-vv", "--auth", "client-certificate", "result", ACTION]).run();
        check_seed(&out);
        check_no_idp_secrets(&out, &idp);
        check_idp_clean(&idp);
        let grants: Vec<Grant> = idp.issued().iter().map(|i| i.grant).collect();
        assert_eq!(grants, [Grant::ClientAssertion, Grant::ClientAssertion]);
        // Each request carried a fresh assertion (the stand-in refuses a replayed jti).
        let out = run(&["--json", "auth"]).run();
        out.status(0);
        assert_eq!(out.json_lines()[0]["method"], "client-certificate");
        assert!(!out.stdout.contains(&idp.issued()[2].access_token));
    }

    // A certificate the app does not know: refused, and the hint says what to do.
    let known = ClientCert::new("registered", KeyFormat::Pkcs8, PemOrder::CertThenKey)
        .expect("certificate");
    let stranger =
        ClientCert::new("stranger", KeyFormat::Pkcs8, PemOrder::CertThenKey).expect("certificate");
    let idp = Arc::new(Idp::start(IdpConfig {
        client_cert_der: Some(known.cert_der().to_vec()),
        ..IdpConfig::default()
    }));
    let (_api, api) = api_for(&idp);
    let config = idp.config();
    signed_in(&idp, &api, &["result", ACTION])
        .env("AZURE_TENANT_ID", config.tenant.clone())
        .env("AZURE_CLIENT_ID", config.client_id.clone())
        .env(
            "AZURE_CLIENT_CERTIFICATE_PATH",
            stranger.pem_path().to_str().expect("utf-8 path"),
        )
        .run()
        .check_err(
            77,
            &[
                "AADSTS700027",
                "hint: the certificate was not accepted: upload its public part",
            ],
        );
    // A file without a key is a configuration error, before any request.
    signed_in(&idp, &api, &["result", ACTION])
        .env("AZURE_TENANT_ID", config.tenant.clone())
        .env("AZURE_CLIENT_ID", config.client_id.clone())
        .env(
            "AZURE_CLIENT_CERTIFICATE_PATH",
            known.cert_pem_path().to_str().expect("utf-8 path"),
        )
        .run()
        .check_err(78, &["certificate file", "no private key"]);
}

#[test]
fn managed_identity_asks_imds_directly_even_behind_a_proxy() {
    let idp = Arc::new(Idp::start(IdpConfig {
        imds_identities: vec!["11111111-aaaa-bbbb-cccc-222222222222".to_owned()],
        ..IdpConfig::default()
    }));
    let (api_server, api) = api_for(&idp);
    let proxy = tinyproxy();
    let run = |extra: &[(&str, &str)]| {
        let mut run = signed_in(
            &idp,
            &api,
            &["-vv", "--auth", "managed-identity", "result", ACTION],
        )
        .env("AZURE_POD_IDENTITY_AUTHORITY_HOST", idp.imds_url())
        .env("HTTP_PROXY", proxy.url());
        for (k, v) in extra {
            run = run.env(k, *v);
        }
        run.run()
    };
    check_seed(&run(&[]));
    check_seed(&run(&[(
        "AZURE_CLIENT_ID",
        "11111111-aaaa-bbbb-cccc-222222222222",
    )]));
    check_idp_clean(&idp);
    let grants: Vec<Grant> = idp.issued().iter().map(|i| i.grant).collect();
    assert_eq!(grants, [Grant::ManagedIdentity, Grant::ManagedIdentity]);
    // The API went through the proxy; the metadata service never did.
    let api_target = format!("127.0.0.1:{}", api_server.port());
    let connects = proxy.connects();
    assert!(connects.contains(&api_target), "{connects:?}");
    assert!(
        connects.iter().all(|c| *c == api_target),
        "IMDS went through the proxy: {connects:?}"
    );
    // Off Azure nothing answers: a clear sign-in error, quickly.
    let dead = format!("http://127.0.0.1:{}", free_port());
    signed_in(
        &idp,
        &api,
        &[
            "--auth",
            "managed-identity",
            "--retries",
            "0",
            "result",
            ACTION,
        ],
    )
    .env("AZURE_POD_IDENTITY_AUTHORITY_HOST", dead)
    .run()
    .check_err(77, &["no managed identity endpoint answered", "Azure VM"]);
    // An identity IMDS does not have.
    run(&[("AZURE_CLIENT_ID", "99999999-0000-0000-0000-000000000000")]).status(77);
}

#[test]
fn azure_cli_token_is_used_and_its_errors_explained() {
    let idp = Arc::new(Idp::start(IdpConfig::default()));
    let (_api, api) = api_for(&idp);
    let bin = TempDir::new();
    FakeAz::write(
        bin.path(),
        &FakeAzConfig {
            access_token: idp.mint(Grant::AzureCli),
            ..FakeAzConfig::default()
        },
    );
    // The fake az needs `date`; the system's PATH has no az of its own in CI.
    let with_system = |dir: &std::path::Path| format!("{}:/usr/bin:/bin", dir.display());
    let path = with_system(bin.path());
    // auto finds `az` in PATH when nothing else is set up.
    let out = signed_in(&idp, &api, &["result", ACTION])
        .env("PATH", path.clone())
        .run();
    check_seed(&out);
    let out = signed_in(&idp, &api, &["--auth", "azure-cli", "result", ACTION])
        .env("PATH", path.clone())
        .env("AZURE_TENANT_ID", "contoso.onmicrosoft.com")
        .run();
    check_seed(&out);
    let calls = FakeAz::calls(bin.path());
    assert_eq!(
        calls[0],
        [
            "account",
            "get-access-token",
            "--resource",
            "https://api.securitycenter.microsoft.com",
            "--output",
            "json"
        ]
    );
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(
        calls[1][6..],
        ["--tenant", "contoso.onmicrosoft.com"],
        "{calls:?}"
    );

    // An older az without expires_on: the token's own exp is used.
    let old = TempDir::new();
    FakeAz::write(
        old.path(),
        &FakeAzConfig {
            access_token: idp.mint(Grant::AzureCli),
            with_expires_on: false,
            ..FakeAzConfig::default()
        },
    );
    let out = signed_in(&idp, &api, &["auth"])
        .env("PATH", with_system(old.path()))
        .run();
    out.status(0);
    assert!(
        out.stdout.contains("sign-in   azure-cli\n"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("(in 59 min)"), "{}", out.stdout);

    // Logged out: the CLI's own message, exit 77.
    let out_dir = TempDir::new();
    FakeAz::write(
        out_dir.path(),
        &FakeAzConfig {
            logged_out: true,
            ..FakeAzConfig::default()
        },
    );
    signed_in(&idp, &api, &["--auth", "azure-cli", "result", ACTION])
        .env("PATH", with_system(out_dir.path()))
        .run()
        .check_err(
            77,
            &["the Azure CLI failed: Please run 'az login' to setup account."],
        );
    // Not installed at all.
    signed_in(&idp, &api, &["--auth", "azure-cli", "result", ACTION])
        .run()
        .check_err(77, &["the Azure CLI (az) is not installed or not in PATH"]);
}

#[test]
fn device_code_login_is_kept_privately_refreshed_and_removed() {
    use std::os::unix::fs::PermissionsExt;
    let idp = Arc::new(Idp::start(IdpConfig {
        // Short-lived access tokens: every later run must use the refresh token.
        expires_in: 200,
        ..IdpConfig::default()
    }));
    let (_api, api) = api_for(&idp);
    let home = TempDir::new();
    let config = idp.config();
    let at_home = |args: &[&str]| {
        signed_in(&idp, &api, args).env("HOME", home.path().to_str().expect("utf-8 path"))
    };
    let out = at_home(&[
        "login",
        "--client-id",
        &config.client_id,
        "--tenant",
        &config.tenant,
    ])
    .run();
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let code = &idp.device_authorizations()[0];
    assert!(out.stderr.contains(&code.user_code), "{}", out.stderr);
    assert!(
        out.stderr.contains("signed in as analyst@contoso.example"),
        "{}",
        out.stderr
    );
    check_idp_clean(&idp);
    // The polls kept the interval (the stand-in records any that came too fast).
    assert!(idp.polls().len() >= 3, "{:?}", idp.polls());

    let file = home.join(".config/mdlr/login.json");
    let mode = std::fs::metadata(&file)
        .expect("login kept")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let dir_mode = std::fs::metadata(home.join(".config/mdlr"))
        .expect("dir")
        .permissions()
        .mode();
    assert_eq!(dir_mode & 0o777, 0o700);
    let kept = |key: &str| -> String {
        let v: serde_json::Value = serde_json::from_slice(&read(&file)).expect("json");
        v[key].as_str().unwrap_or_default().to_owned()
    };
    let first_refresh = kept("refresh_token");
    assert_eq!(Some(first_refresh.clone()), idp.latest_refresh_token());
    assert!(!out.stderr.contains(&first_refresh) && !out.stdout.contains(&first_refresh));

    // Later runs use the kept login (auto), refreshing and keeping the rotated token.
    let out = at_home(&["-vv", "result", ACTION]).run();
    check_seed(&out);
    check_no_idp_secrets(&out, &idp);
    let second_refresh = kept("refresh_token");
    assert_ne!(second_refresh, first_refresh);
    assert_eq!(Some(second_refresh), idp.latest_refresh_token());
    check_seed(&at_home(&["--auth", "device-code", "result", ACTION]).run());
    check_idp_clean(&idp);
    let out = at_home(&["auth"]).run();
    out.status(0);
    assert!(
        out.stdout.contains("sign-in   device-code\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("user      analyst@contoso.example\n"),
        "{}",
        out.stdout
    );

    // A revoked login: exit 77 and the way out.
    idp.revoke_refresh_tokens();
    at_home(&["result", ACTION])
        .run()
        .check_err(77, &["run `mdlr login`"]);

    // Readable by others: refused. Logout removes it; then there is nothing to use.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    at_home(&["result", ACTION])
        .run()
        .check_err(78, &["can be read by other users"]);
    at_home(&["logout"])
        .replace(home.path().display().to_string(), "{HOME}")
        .check(
            0,
            "",
            "mdlr: removed the kept login {HOME}/.config/mdlr/login.json\n",
        );
    assert!(!file.exists());
    at_home(&["--auth", "device-code", "result", ACTION])
        .run()
        .check_err(78, &["no login kept", "run `mdlr login` first"]);
    at_home(&["login"])
        .run()
        .check_err(78, &["--client-id ID or set AZURE_CLIENT_ID"]);
    // A damaged file is reported, never a panic.
    for junk in [
        &b"{not json"[..],
        b"\xff\xfe\x00",
        b"{\"authority\": 5}",
        b"",
    ] {
        write(&file, junk);
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let out = at_home(&["--auth", "device-code", "result", ACTION]).run();
        assert!(
            matches!(out.code, Some(78)),
            "{:?}: {:?} {}",
            junk,
            out.code,
            out.stderr
        );
    }
}

#[test]
fn auto_takes_the_first_method_that_is_set_up() {
    let cert = ClientCert::new("auto", KeyFormat::Pkcs8, PemOrder::CertThenKey).expect("cert");
    let idp = Arc::new(Idp::start(IdpConfig {
        client_cert_der: Some(cert.cert_der().to_vec()),
        ..IdpConfig::default()
    }));
    let (_api, api) = api_for(&idp);
    let config = idp.config();
    let bin = TempDir::new();
    FakeAz::write(
        bin.path(),
        &FakeAzConfig {
            access_token: idp.mint(Grant::AzureCli),
            ..FakeAzConfig::default()
        },
    );
    let method = |without: &[&str]| -> String {
        let mut run = signed_in(&idp, &api, &["--json", "auth"])
            .env("PATH", format!("{}:/usr/bin:/bin", bin.path().display()))
            .env("MDLR_TOKEN", idp.mint(Grant::ClientSecret))
            .env("AZURE_TENANT_ID", config.tenant.clone())
            .env("AZURE_CLIENT_ID", config.client_id.clone())
            .env(
                "AZURE_CLIENT_SECRET",
                config.client_secret.clone().unwrap_or_default(),
            )
            .env(
                "AZURE_CLIENT_CERTIFICATE_PATH",
                cert.pem_path().to_str().expect("utf-8 path"),
            );
        for var in without {
            run = run.env(var, "");
        }
        let out = run.run();
        assert_eq!(out.code, Some(0), "{}", out.stderr);
        out.json_lines()[0]["method"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(method(&[]), "token");
    assert_eq!(method(&["MDLR_TOKEN"]), "client-secret");
    assert_eq!(
        method(&["MDLR_TOKEN", "AZURE_CLIENT_SECRET"]),
        "client-certificate"
    );
    assert_eq!(
        method(&[
            "MDLR_TOKEN",
            "AZURE_CLIENT_SECRET",
            "AZURE_CLIENT_CERTIFICATE_PATH"
        ]),
        "azure-cli"
    );
    check_idp_clean(&idp);
}

#[test]
fn a_403_names_the_permission_the_command_needs() {
    let svc = Service::start();
    svc.api.mock(|when, then| {
        when.any_request();
        then.status(403)
            .json_body(api_error("Forbidden", "Missing application roles"));
    });
    svc.mdlr(&["library", "list"]).run().check_err(
        77,
        &[
            "Missing application roles",
            "code Forbidden, correlation id corr-42",
            "hint: this needs the WindowsDefenderATP API permission Library.Manage",
            "`mdlr auth` shows what your token carries",
        ],
    );
    svc.mdlr(&["result", ACTION]).run().check_err(
        77,
        &["hint: this needs the WindowsDefenderATP API permission Machine.LiveResponse"],
    );
    svc.mdlr(&["actions"]).run().check_err(
        77,
        &["hint: this needs the WindowsDefenderATP API permission Machine.Read.All"],
    );
}
