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
