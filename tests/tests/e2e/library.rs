//! The library against the stand-in service.

use std::path::Path;
use std::time::{Duration, Instant};

use mdlr::{
    ActionStatus, Client, CommandType, Credential, DownloadRequest, Downloaded, Endpoints, Error,
    Event, Gunzip, RateLimit, ResultLink, Transcript,
};
use serde_json::json;

use crate::util::*;

/// Downloads command 1 of [`ACTION`] into `dest`, un-gzipping, with `overwrite`.
fn download(svc: &Service, dest: DownloadRequest, overwrite: bool) -> mdlr::Result<Downloaded> {
    let request = dest
        .gunzip(Gunzip::On)
        .overwrite(overwrite)
        .fallback_name(format!("{ACTION}-1"));
    svc.client().download_result(ACTION, 1, &request)
}

/// Downloads a GetFile result sent with `disposition` into a directory of its own and
/// checks that exactly `name` appeared there, holding `content`, and nothing beside it.
#[track_caller]
fn check_saved_as(disposition: Option<&str>, name: &str) {
    let svc = Service::start();
    let content = b"evidence\n".repeat(1000);
    svc.getfile(gzip(&content), disposition);
    let out = svc.dir.join("out");
    std::fs::create_dir(&out).expect("create out");
    let done = download(&svc, DownloadRequest::to_dir(out.clone()), false).expect("downloads");
    assert_eq!(done.path, out.join(name), "{disposition:?}");
    assert_eq!(list(&out), [name], "{disposition:?}");
    assert_eq!(list(svc.dir.path()), ["out"], "{disposition:?}");
    assert_eq!(read(&done.path), content);
    assert_eq!(done.written, content.len() as u64);
}

/// Checks that `result` is an error matching `pattern`, showing it otherwise.
macro_rules! assert_err {
    ($result:expr, $pattern:pat $(if $guard:expr)?) => {
        match $result {
            Err(e) => assert!(matches!(&e, $pattern $(if $guard)?), "unexpected error: {e:?}"),
            Ok(v) => panic!("expected an error, got {v:?}"),
        }
    };
}

// --- The seed call and the action ------------------------------------------------------

#[test]
fn seed_path_is_literal_and_carries_the_token() {
    let svc = Service::start();
    let link = svc.link(0, "/results/transcript");
    let got = svc.client().result_link(ACTION, 0).expect("link");
    link.assert_calls(1);
    assert_eq!(got.expose(), svc.blob_url("/results/transcript"));
    assert_eq!(got.expires().as_deref(), Some("2021-02-04T16:13:50Z"));
    assert!(got.redacted().ends_with("&sig=REDACTED"));

    let svc = Service::start();
    svc.link(7, "/results/seven");
    let got = svc
        .client()
        .result_link(ACTION, 7)
        .expect("link of index 7");
    assert_eq!(got.expose(), svc.blob_url("/results/seven"));
}

#[test]
fn action_decodes_tolerantly() {
    let svc = Service::start();
    svc.action(action_json(
        "InProgress",
        &[("RunScript", "Completed"), ("GetFile", "Created")],
    ));
    let action = svc.client().action(ACTION).expect("action");
    assert_eq!(action.status, Some(ActionStatus::InProgress));
    assert_eq!(action.commands.len(), 2);
    assert_eq!(action.result_type(0).ok(), Some(CommandType::RunScript));
    assert_err!(action.result_type(1), Error::NotFinished { .. });
    assert_err!(action.result_type(2), Error::NoSuchCommand { count: 2, .. });
}

#[test]
fn bad_action_ids_are_refused_before_any_request() {
    let svc = Service::start();
    let any = svc.api.mock(|when, then| {
        when.any_request();
        then.status(500);
    });
    let client = svc.client();
    for bad in ["../x", "a/b", "x?y=1", "", "a(index=0)"] {
        assert_err!(client.action(bad), Error::InvalidArgument { .. });
        assert_err!(client.result_link(bad, 0), Error::InvalidArgument { .. });
        assert_err!(client.transcript(bad, 0), Error::InvalidArgument { .. });
    }
    any.assert_calls(0);
}

// --- Transcripts --------------------------------------------------------------------------

#[test]
fn seed_transcript_byte_for_byte() {
    let svc = Service::start();
    let [_, link, blob] = svc.transcript(SEED);
    let t = svc.client().transcript(ACTION, 0).expect("transcript");
    assert_eq!(t.script_name, "minidump.ps1");
    assert_eq!(t.exit_code, 0);
    assert_eq!(t.script_output, SEED_OUTPUT);
    assert_eq!(t.script_errors, "");
    assert_eq!(t.exit_status(), 0);
    link.assert_calls(1);
    blob.assert_calls(1);
    assert_eq!(
        svc.client().transcript_bytes(ACTION, 0).expect("bytes"),
        SEED.as_bytes()
    );
}

#[test]
fn transcript_with_bom_crlf_and_non_ascii() {
    let svc = Service::start();
    let doc = "\u{feff}{\r\n  \"script_name\": \"collect.ps1\",\r\n  \"exit_code\": \"3\",\r\n  \
               \"script_output\": \"Zürich: 3 fichiers\r\n東京: 2\r\n\\u0000\\u0000\",\r\n  \
               \"script_errors\": \"Avertissement : accès refusé\r\n\"\r\n}\r\n";
    svc.transcript(doc);
    let t = svc.client().transcript(ACTION, 0).expect("transcript");
    assert_eq!(t.script_name, "collect.ps1");
    assert_eq!(t.exit_code, 3);
    assert_eq!(t.script_output, "Zürich: 3 fichiers\r\n東京: 2\r\n");
    assert_eq!(t.script_errors, "Avertissement : accès refusé\r\n");
}

#[test]
fn garbage_transcript_is_malformed() {
    for garbage in [
        &b"<html><body>Gateway</body></html>"[..],
        b"",
        b"\x1f\x8b\x08\x00garbage",
        b"{\"script_output\": \"cut short",
        b"{\"unrelated\": true}",
    ] {
        let svc = Service::start();
        svc.transcript(garbage);
        assert_err!(
            svc.client().transcript(ACTION, 0),
            Error::Malformed { what, .. } if what == "transcript"
        );
    }
    // The same rules as the network path.
    assert!(Transcript::parse(SEED.as_bytes()).is_ok());
}

#[test]
fn link_reply_without_a_link_is_malformed() {
    for body in [json!({"value": null}), json!({"value": ""}), json!([1, 2])] {
        let svc = Service::start();
        svc.api.mock(|when, then| {
            when.path(seed_path(0));
            then.status(200).json_body(body.clone());
        });
        assert_err!(svc.client().result_link(ACTION, 0), Error::Malformed { .. });
    }
    let svc = Service::start();
    svc.api.mock(|when, then| {
        when.path(seed_path(0));
        then.status(200).body("{\"value\": \"https://x/");
    });
    assert_err!(svc.client().result_link(ACTION, 0), Error::Malformed { .. });
}

// --- The token goes to the API only ------------------------------------------------------

#[test]
fn bearer_to_the_api_none_to_the_result_host() {
    let svc = Service::start();
    let [action, link, blob] = svc.getfile(gzip(b"x"), None);
    let client = svc.client();
    client.action(ACTION).expect("action");
    download(
        &svc,
        DownloadRequest::to_dir(svc.dir.path().to_owned()),
        false,
    )
    .expect("download");
    client.transcript_bytes(ACTION, 1).expect("bytes");
    action.assert_calls(1);
    link.assert_calls(2);
    blob.assert_calls(2);
    // `Service` checks on drop that its trap for `Authorization` on the result host
    // saw nothing; an explicit look here too:
    let with_auth = svc.blob.mock(|when, then| {
        when.header_exists("authorization");
        then.status(400);
    });
    with_auth.assert_calls(0);
}

#[test]
fn redirects_from_the_result_host_carry_no_token_and_stay_secure() {
    let svc = Service::start();
    svc.link(0, "/results/moved");
    let target = svc.blob_url("/results/here");
    svc.blob("/results/moved", |then| {
        then.status(302).header("location", target)
    });
    let here = svc.blob("/results/here", |then| then.body(SEED));
    assert_eq!(
        svc.client()
            .transcript(ACTION, 0)
            .expect("followed")
            .script_output,
        SEED_OUTPUT
    );
    here.assert_calls(1);

    let svc = Service::start();
    svc.link(0, "/results/moved");
    svc.blob("/results/moved", |then| {
        then.status(302)
            .header("location", "http://results.example.com/x?sig=abc")
    });
    assert_err!(svc.client().transcript(ACTION, 0), Error::Config { .. });
}

// --- Downloads ----------------------------------------------------------------------------

#[test]
fn getfile_is_ungzipped_to_disk() {
    let svc = Service::start();
    let content: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
    let gz = gzip(&content);
    svc.getfile(gz.clone(), Some("attachment; filename=\"evidence.bin.gz\""));
    let done = download(
        &svc,
        DownloadRequest::to_dir(svc.dir.path().to_owned()),
        false,
    )
    .expect("ok");
    assert_eq!(done.path, svc.dir.join("evidence.bin"));
    assert_eq!(done.original_name.as_deref(), Some("evidence.bin.gz"));
    assert_eq!(done.received, gz.len() as u64);
    assert_eq!(done.written, content.len() as u64);
    assert_eq!(read(&done.path), content);
    assert_eq!(list(svc.dir.path()), ["evidence.bin"]);
}

#[test]
fn getfile_raw_keeps_the_gz() {
    let svc = Service::start();
    let gz = gzip(b"raw bytes");
    svc.getfile(gz.clone(), Some("attachment; filename=\"evidence.txt.gz\""));
    let request = DownloadRequest::to_dir(svc.dir.path())
        .gunzip(Gunzip::Off)
        .fallback_name("fallback");
    let done = svc
        .client()
        .download_result(ACTION, 1, &request)
        .expect("ok");
    assert_eq!(done.path, svc.dir.join("evidence.txt.gz"));
    assert_eq!(read(&done.path), gz);
}

#[test]
fn hostile_names_stay_inside_the_target_directory() {
    assert!(
        !Path::new("/etc/x").exists(),
        "/etc/x must not exist for this test"
    );
    for disposition in [
        "attachment; filename=\"../x.gz\"",
        "attachment; filename=..\\..\\x.gz",
        "attachment; filename=\"..\\\\..\\\\x.gz\"",
        "attachment; filename=\"/etc/x.gz\"",
        "attachment; filename=C:\\x.gz",
        "attachment; filename*=UTF-8''..%2F..%2Fx.gz",
        "attachment; filename=\"../../.x.gz\"",
    ] {
        check_saved_as(Some(disposition), "x");
    }
    assert!(!Path::new("/etc/x").exists());
}

#[test]
fn fallback_name_without_a_usable_disposition() {
    check_saved_as(None, &format!("{ACTION}-1"));
    check_saved_as(Some("attachment"), &format!("{ACTION}-1"));
    check_saved_as(Some("attachment; filename=\"..\""), &format!("{ACTION}-1"));
    check_saved_as(
        Some("attachment; filename=\"../.gz\""),
        &format!("{ACTION}-1"),
    );
}

#[test]
fn download_to_a_named_file() {
    let svc = Service::start();
    svc.getfile(
        gzip(b"named"),
        Some("attachment; filename=\"evidence.txt.gz\""),
    );
    let target = svc.dir.join("my-copy.txt");
    let done = download(&svc, DownloadRequest::to_file(target.clone()), false).expect("ok");
    assert_eq!(done.path, target);
    assert_eq!(read(&target), b"named");
    assert_eq!(list(svc.dir.path()), ["my-copy.txt"]);
}

#[test]
fn no_overwrite_without_permission() {
    let svc = Service::start();
    let [_, _, blob] = svc.getfile(
        gzip(b"new"),
        Some("attachment; filename=\"evidence.txt.gz\""),
    );
    let target = svc.dir.join("evidence.txt");
    write(&target, "old");
    let dir = DownloadRequest::to_dir(svc.dir.path());
    assert_err!(download(&svc, dir.clone(), false), Error::Exists { path } if path == &target);
    assert_eq!(read(&target), b"old");
    assert_err!(
        download(&svc, DownloadRequest::to_file(target.clone()), false),
        Error::Exists { .. }
    );
    assert_eq!(read(&target), b"old");
    assert_eq!(list(svc.dir.path()), ["evidence.txt"]);

    download(&svc, dir, true).expect("overwrites");
    assert_eq!(read(&target), b"new");
    assert_eq!(list(svc.dir.path()), ["evidence.txt"]);
    assert!(blob.calls() >= 1);
}

#[test]
fn short_body_leaves_no_file() {
    let svc = Service::start();
    let raw = RawServer::start(RawServer::reply(
        1000,
        "Content-Disposition: attachment; filename=\"evidence.txt.gz\"\r\n",
        b"only ten b",
    ));
    svc.action(done_action());
    svc.link_to(1, &raw.url("/results/short"));
    let request = DownloadRequest::to_dir(svc.dir.path())
        .gunzip(Gunzip::Off)
        .fallback_name("f");
    // The download goes on from byte 10 with a Range request; this host ignores it.
    assert_err!(
        svc.client().download_result(ACTION, 1, &request),
        Error::Malformed { .. }
    );
    assert_eq!(list(svc.dir.path()), Vec::<String>::new());
    let requests = raw.requests();
    assert_eq!(
        requests.len(),
        2,
        "the first GET, then one to continue from byte 10"
    );
    assert!(
        requests[1]
            .to_ascii_lowercase()
            .contains("range: bytes=10-"),
        "{}",
        requests[1]
    );
    for r in &requests {
        assert!(!r.to_ascii_lowercase().contains("authorization"));
    }
}

#[test]
fn broken_gzip_leaves_no_file() {
    let full = gzip(&b"some evidence that compresses\n".repeat(500));
    let cut = full[..full.len() / 2].to_vec();
    let mut corrupt = full.clone();
    let mid = corrupt.len() / 2;
    corrupt[mid] ^= 0xff;
    corrupt[mid + 1] ^= 0xff;
    let mut bad_crc = full.clone();
    let n = bad_crc.len();
    bad_crc[n - 8] ^= 0x01;
    for body in [cut, corrupt, bad_crc] {
        let svc = Service::start();
        svc.getfile(body, Some("attachment; filename=\"evidence.txt.gz\""));
        assert_err!(
            download(&svc, DownloadRequest::to_dir(svc.dir.path().to_owned()), false),
            Error::Malformed { what, .. } if what == "gzip stream"
        );
        assert_eq!(list(svc.dir.path()), Vec::<String>::new());
    }
    // Bytes that do not start as gzip does are not a broken gzip stream: they are
    // saved as they came, and said to be.
    let svc = Service::start();
    svc.getfile(
        b"not gzip at all".to_vec(),
        Some("attachment; filename=\"evidence.txt.gz\""),
    );
    let done = download(
        &svc,
        DownloadRequest::to_dir(svc.dir.path().to_owned()),
        false,
    )
    .expect("saved as it came");
    assert!(done.not_gzip && !done.gunzipped, "{done:?}");
    assert_eq!(read(svc.dir.join("evidence.txt")), b"not gzip at all");
}

#[test]
fn unwritable_destination_is_an_io_error() {
    let svc = Service::start();
    svc.getfile(gzip(b"x"), None);
    write(svc.dir.join("file"), "in the way");
    assert_err!(
        download(
            &svc,
            DownloadRequest::to_file(svc.dir.join("file/evidence")),
            false
        ),
        Error::Io { .. }
    );
    assert_err!(
        download(
            &svc,
            DownloadRequest::to_dir(svc.dir.join("missing")),
            false
        ),
        Error::Io { .. }
    );
    assert_eq!(list(svc.dir.path()), ["file"]);
}

// --- Sign-in --------------------------------------------------------------------------

#[test]
fn client_secret_token_refreshed_once_after_401() {
    let svc = Service::start();
    let old = svc.token_endpoint("tok-SECRET-old", Some(1));
    let fresh = svc.token_endpoint(TOKEN, None);
    let refused = svc.api.mock(|when, then| {
        when.path(format!("/api/machineactions/{ACTION}"))
            .header("authorization", "Bearer tok-SECRET-old");
        then.status(401)
            .json_body(api_error("Unauthorized", "The token has expired"));
    });
    let action = svc.action(done_action());
    let client = svc.client_with(Credential::client_secret(TENANT, CLIENT_ID, CLIENT_SECRET));
    client.action(ACTION).expect("succeeds after the refresh");
    old.assert_calls(1);
    fresh.assert_calls(1);
    refused.assert_calls(1);
    action.assert_calls(1);
    // The new token is cached.
    client.action(ACTION).expect("again");
    fresh.assert_calls(1);
    action.assert_calls(2);
}

#[test]
fn a_given_token_is_not_refreshed() {
    let svc = Service::start();
    let refused = svc.action_error(401, api_error("Unauthorized", "expired"));
    assert_err!(svc.client().action(ACTION), Error::Api { status: 401, .. });
    refused.assert_calls(1);
}

#[test]
fn token_endpoint_refusal() {
    let svc = Service::start();
    svc.api.mock(|when, then| {
        when.method("POST")
            .path(format!("/{TENANT}/oauth2/v2.0/token"));
        then.status(401).json_body(json!({
            "error": "invalid_client",
            "error_description": "AADSTS7000215: Invalid client secret provided.\r\nTrace ID: t-1",
            "correlation_id": "c-1",
        }));
    });
    let api = svc.action(done_action());
    let client = svc.client_with(Credential::client_secret(TENANT, CLIENT_ID, "wrong"));
    match client.action(ACTION) {
        Err(e @ Error::Auth { .. }) => {
            assert_eq!(e.code(), Some("invalid_client"));
            assert_eq!(e.correlation_id(), Some("c-1"));
            assert_eq!(
                e.to_string(),
                "sign-in failed (401): AADSTS7000215: Invalid client secret provided."
            );
        }
        other => panic!("{other:?}"),
    }
    api.assert_calls(0);
}

// --- Errors, retries and quotas ------------------------------------------------------------

#[test]
fn api_errors_keep_code_message_and_correlation_id() {
    let svc = Service::start();
    svc.action_error(
        404,
        api_error("ResourceNotFound", "Machine action was not found"),
    );
    let e = svc.client().action(ACTION).expect_err("404");
    assert_eq!(e.status(), Some(404));
    assert_eq!(e.code(), Some("ResourceNotFound"));
    assert_eq!(e.correlation_id(), Some("corr-42"));
    assert_eq!(
        e.to_string(),
        "the API answered 404: Machine action was not found"
    );

    let svc = Service::start();
    svc.api.mock(|when, then| {
        when.path(format!("/api/machineactions/{ACTION}"));
        then.status(403)
            .body("<html><body>Forbidden by proxy</body></html>");
    });
    let e = svc.client().action(ACTION).expect_err("403");
    assert_eq!(e.status(), Some(403));
    assert_eq!(e.code(), None);
    assert!(e.to_string().contains("HTML"), "{e}");
}

#[test]
fn retry_after_is_honoured_on_429() {
    // mdlr waits at least 1 s after a 429 anyway, so only a longer `Retry-After`
    // shows that it was read.
    let svc = Service::start();
    let busy = svc.api.mock(|when, then| {
        when.path(seed_path(0));
        then.status(429)
            .header("retry-after", "2")
            .json_body(api_error("TooManyRequests", "Slow down"))
            .up_to_n_times(1);
    });
    let link = svc.link(0, "/results/transcript");
    let started = Instant::now();
    svc.client()
        .result_link(ACTION, 0)
        .expect("succeeds after waiting");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1950),
        "waited only {waited:?}"
    );
    busy.assert_calls(1);
    link.assert_calls(1);
}

#[test]
fn persistent_429_gives_up_after_the_retries() {
    let svc = Service::start();
    let busy = svc.api.mock(|when, then| {
        when.path(seed_path(0));
        then.status(429)
            .header("retry-after", "0")
            .json_body(api_error("TooManyRequests", "Slow down"));
    });
    let e = svc.client().result_link(ACTION, 0).expect_err("429");
    assert_eq!(e.status(), Some(429));
    assert!(e.to_string().contains("retry after 0 s"), "{e}");
    busy.assert_calls(3);
}

#[test]
fn a_retry_after_beyond_the_limit_is_not_waited_for() {
    let svc = Service::start();
    let busy = svc.api.mock(|when, then| {
        when.path(seed_path(0));
        then.status(429).header("retry-after", "3600");
    });
    let started = Instant::now();
    assert_err!(
        svc.client().result_link(ACTION, 0),
        Error::Api { status: 429, .. }
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    busy.assert_calls(1);
}

#[test]
fn server_errors_are_retried() {
    let svc = Service::start();
    let failing = svc.api.mock(|when, then| {
        when.path(seed_path(0));
        then.status(503)
            .body("<html>unavailable</html>")
            .up_to_n_times(1);
    });
    let link = svc.link(0, "/results/transcript");
    svc.client()
        .result_link(ACTION, 0)
        .expect("succeeds on the retry");
    failing.assert_calls(1);
    link.assert_calls(1);

    let svc = Service::start();
    let failing = svc.action_error(500, api_error("InternalServerError", "oops"));
    assert_err!(svc.client().action(ACTION), Error::Api { status: 500, .. });
    failing.assert_calls(3);
}

#[test]
fn result_host_errors_are_retried_too() {
    let svc = Service::start();
    svc.action(done_action());
    svc.link(0, "/results/transcript");
    let failing = svc.blob("/results/transcript", |then| {
        then.status(500).up_to_n_times(1)
    });
    svc.blob("/results/transcript", |then| then.body(SEED));
    svc.client()
        .transcript(ACTION, 0)
        .expect("succeeds on the retry");
    failing.assert_calls(1);
}

#[test]
fn connection_refused_is_a_transport_error() {
    let api = format!("http://127.0.0.1:{}", free_port());
    let (events, record) = recorder();
    let client = Client::builder(Credential::token(TOKEN))
        .endpoints(Endpoints::default().with_api_base(&api))
        .retry_policy(fast_retries())
        .on_event(record)
        .build()
        .expect("builds");
    assert_err!(client.action(ACTION), Error::Transport { url, .. } if url.starts_with(&api));
    let retries = events
        .all()
        .into_iter()
        .filter(|e| matches!(e, Event::Retry { .. }))
        .count();
    assert_eq!(retries, 2, "{:?}", events.all());
}

#[test]
fn expired_link_is_renewed_once() {
    let svc = Service::start();
    svc.action(done_action());
    let first = svc.api.mock(|when, then| {
        when.path(seed_path(0));
        then.status(200)
            .json_body(json!({"value": svc.blob_url("/results/expired")}))
            .up_to_n_times(1);
    });
    let second = svc.link(0, "/results/fresh");
    let expired = svc.blob("/results/expired", |then| {
        then.status(403)
            .header("x-ms-error-code", "AuthenticationFailed")
            .header("x-ms-request-id", "req-1")
            .body("<?xml version=\"1.0\"?><Error><Code>AuthenticationFailed</Code><Message>Signed expiry time has to be after signed start time\nRequestId:req-1</Message></Error>")
    });
    let fresh = svc.blob("/results/fresh", |then| then.body(SEED));
    let t = svc.client().transcript(ACTION, 0).expect("renewed");
    assert_eq!(t.script_output, SEED_OUTPUT);
    first.assert_calls(1);
    second.assert_calls(1);
    expired.assert_calls(1);
    fresh.assert_calls(1);
}

#[test]
fn a_link_refused_twice_is_an_error() {
    let svc = Service::start();
    let link = svc.link(0, "/results/expired");
    let refused = svc.blob("/results/expired", |then| {
        then.status(403)
            .header("x-ms-error-code", "AuthenticationFailed")
            .body("<Error><Code>AuthenticationFailed</Code><Message>Server failed to authenticate the request.</Message></Error>")
    });
    let e = svc.client().transcript(ACTION, 0).expect_err("refused");
    assert_err!(Err::<(), _>(&e), Error::Blob { status: 403, .. });
    assert_eq!(e.code(), Some("AuthenticationFailed"));
    assert_eq!(
        e.to_string(),
        "the result host answered 403: Server failed to authenticate the request."
    );
    link.assert_calls(2);
    refused.assert_calls(2);
    assert!(!format!("{e:?}").contains(SIG));
}

#[test]
fn the_rate_limiter_is_shared_by_clones_and_threads() {
    let svc = Service::start();
    let action = svc.action(done_action());
    let (events, record) = recorder();
    let client = Client::builder(Credential::token(TOKEN))
        .endpoints(Endpoints::default().with_api_base(&svc.api_url()))
        .rate_limits(vec![RateLimit::new(2, Duration::from_secs(1))])
        .on_event(record)
        .build()
        .expect("builds");
    let started = Instant::now();
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let c = client.clone();
            std::thread::spawn(move || c.action(ACTION).map(|_| ()))
        })
        .collect();
    for t in threads {
        t.join().expect("thread").expect("action");
    }
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(950), "{waited:?}");
    let throttled = events.all();
    assert!(
        throttled
            .iter()
            .any(|e| matches!(e, Event::Throttled { .. })),
        "{throttled:?}"
    );
    action.assert_calls(3);
}

#[test]
fn replies_are_capped_in_size() {
    let svc = Service::start();
    svc.transcript(SEED);
    let small = |json: u64, transcript: u64| {
        Client::builder(Credential::token(TOKEN))
            .endpoints(Endpoints::default().with_api_base(&svc.api_url()))
            .json_limit(json)
            .transcript_limit(transcript)
            .build()
            .expect("builds")
    };
    assert_err!(small(100, 1 << 20).action(ACTION), Error::Malformed { .. });
    assert_err!(
        small(1 << 20, 100).transcript(ACTION, 0),
        Error::Malformed { .. }
    );
    assert!(
        small(1 << 20, SEED.len() as u64)
            .transcript(ACTION, 0)
            .is_ok()
    );
}

#[test]
fn tokens_are_refreshed_ahead_of_expiry() {
    let svc = Service::start();
    let login = svc.api.mock(|when, then| {
        when.method("POST")
            .path(format!("/{TENANT}/oauth2/v2.0/token"));
        // Expires within the refresh margin: every call needs a new one.
        then.status(200)
            .json_body(json!({"token_type": "Bearer", "expires_in": 60, "access_token": TOKEN}));
    });
    let action = svc.action(done_action());
    let client = svc.client_with(Credential::client_secret(TENANT, CLIENT_ID, CLIENT_SECRET));
    client.action(ACTION).expect("first");
    client.action(ACTION).expect("second");
    login.assert_calls(2);
    action.assert_calls(2);
}

// --- Configuration -------------------------------------------------------------------------

#[test]
fn plain_http_only_to_loopback() {
    for (api, authority) in [
        (
            "http://api.example.com",
            "https://login.microsoftonline.com",
        ),
        ("https://api.example.com", "http://login.example.com"),
        (
            "http://127.0.0.1.example.com",
            "https://login.microsoftonline.com",
        ),
    ] {
        let endpoints = Endpoints {
            authority: authority.to_owned(),
            ..Endpoints::default().with_api_base(api)
        };
        assert_err!(
            Client::builder(Credential::token(TOKEN))
                .endpoints(endpoints)
                .build(),
            Error::Config { .. }
        );
    }
    for loopback in ["http://127.0.0.1:1", "http://localhost:1", "http://[::1]:1"] {
        let endpoints = Endpoints::default().with_api_base(loopback);
        assert!(
            Client::builder(Credential::token(TOKEN))
                .endpoints(endpoints)
                .build()
                .is_ok()
        );
    }
}

#[test]
fn insecure_download_link_is_refused_before_fetching() {
    let svc = Service::start();
    svc.action(done_action());
    svc.link_to(0, &format!("http://results.example.com/x?{LINK_QUERY}"));
    let e = svc.client().transcript(ACTION, 0).expect_err("refused");
    assert_err!(Err::<(), _>(&e), Error::Config { .. });
    assert!(!e.to_string().contains(SIG), "{e}");
    assert!(e.to_string().contains("sig=REDACTED"), "{e}");
}

#[test]
fn unusable_credentials_are_refused() {
    for credential in [
        Credential::token(""),
        Credential::token("two\nlines"),
        Credential::client_secret("../evil", CLIENT_ID, CLIENT_SECRET),
    ] {
        assert_err!(Client::builder(credential).build(), Error::Config { .. });
    }
}

// --- Secrets ------------------------------------------------------------------------------

#[test]
fn debug_output_hides_secrets() {
    let token = Credential::token(TOKEN);
    let app = Credential::client_secret(TENANT, CLIENT_ID, CLIENT_SECRET);
    let link = ResultLink::new(format!("https://h.blob.core.windows.net/c/b?{LINK_QUERY}"));
    for text in [
        format!("{token:?}"),
        format!("{app:?}"),
        format!("{link:?}"),
        format!(
            "{:?}",
            Client::builder(app.clone()).build().expect("builds")
        ),
    ] {
        for secret in [TOKEN, CLIENT_SECRET, SIG] {
            assert!(!text.contains(secret), "{text}");
        }
    }
    assert!(format!("{app:?}").contains(CLIENT_ID));
    assert!(format!("{link:?}").contains("sig=REDACTED"));
    assert_eq!(
        link.expose(),
        format!("https://h.blob.core.windows.net/c/b?{LINK_QUERY}")
    );
}

#[test]
fn events_never_carry_secrets() {
    let svc = Service::start();
    svc.token_endpoint(TOKEN, None);
    svc.getfile(gzip(b"x"), Some("attachment; filename=\"e.gz\""));
    svc.transcript(SEED);
    let (events, record) = recorder();
    let endpoints = Endpoints {
        authority: svc.api_url(),
        ..Endpoints::default().with_api_base(&svc.api_url())
    };
    let client = Client::builder(Credential::client_secret(TENANT, CLIENT_ID, CLIENT_SECRET))
        .endpoints(endpoints)
        .retry_policy(fast_retries())
        .on_event(record)
        .build()
        .expect("builds");
    client.transcript(ACTION, 0).expect("transcript");
    let request = DownloadRequest::to_dir(svc.dir.path())
        .gunzip(Gunzip::On)
        .fallback_name("f");
    client
        .download_result(ACTION, 1, &request)
        .expect("download");
    let urls: Vec<String> = events
        .all()
        .into_iter()
        .map(|e| match e {
            Event::Exchange { method, url, .. } => format!("{method} {url}"),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    let (api, blob) = (svc.api_url(), svc.blob.base_url());
    let redacted = LINK_QUERY.replace(SIG, "REDACTED");
    assert_eq!(
        urls,
        [
            format!("POST {api}/{TENANT}/oauth2/v2.0/token"),
            format!("GET {api}{}", seed_path(0)),
            format!("GET {blob}/results/transcript?{redacted}"),
            format!("GET {api}{}", seed_path(1)),
            format!("GET {blob}/results/file?{redacted}"),
        ]
    );
}
