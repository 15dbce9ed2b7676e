//! At home on a jump host: the progress bar, `mdlr auth`, every sign-in method against
//! a local stand-in of Entra ID and IMDS that checks each request, proxies through a real
//! tinyproxy, and a private CA in front of a local HTTPS server.

use serde_json::json;

use crate::util::*;

/// A JWT-shaped token with `claims` (the signature is junk: only the API checks it).
pub fn jwt(claims: &serde_json::Value) -> String {
    let url = |bytes: &[u8]| {
        mdlr_tests::util::base64(bytes)
            .trim_end_matches('=')
            .replace('+', "-")
            .replace('/', "_")
    };
    format!(
        "{}.{}.c2lnbmF0dXJlLVNFQ1JFVA",
        url(br#"{"typ":"JWT","alg":"RS256"}"#),
        url(claims.to_string().as_bytes())
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

fn stand_in(base: Base, token: String) -> Arc<mdlr_tests::server::Handler> {
    Arc::new(move |req: &Request| {
        let bearer = format!("Bearer {token}");
        let path = req.path();
        if path.starts_with("/results/") {
            if req.header("authorization").is_some() {
                return Response::text(400, "the result host must never see a bearer token");
            }
            return Response::new(200, "application/octet-stream", SEED.as_bytes().to_vec());
        }
        if req.header("authorization") != Some(bearer.as_str()) {
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
    let base: Base = Arc::default();
    let server = Server::start(stand_in(base.clone(), TOKEN.to_owned())).expect("start server");
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
