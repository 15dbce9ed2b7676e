//! The `mdlr` binary against the stand-in service.

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use crate::util::*;

/// Runs `mdlr result ACTION` on a transcript and checks the exit status and outputs.
#[track_caller]
fn check_transcript(transcript: &str, code: i32, stdout: &str, stderr: &str) {
    let svc = Service::start();
    svc.transcript(transcript);
    svc.mdlr(&["result", ACTION]).check(code, stdout, stderr);
}

/// A transcript with these fields (`exit_code` as JSON text: `3`, `"3"`, ...).
fn transcript(exit_code: &str, output: &str, errors: &str) -> String {
    format!(
        "{{\"script_name\":\"t.ps1\",\"exit_code\":{exit_code},\"script_output\":{},\"script_errors\":{}}}",
        json!(output),
        json!(errors)
    )
}

/// Runs `mdlr result ACTION --index 1 ARGS` on a GetFile result sent with
/// `disposition`, in a working directory `work` inside the scratch directory, and checks
/// the exit status, that `work` then holds exactly `files` (with the evidence in the
/// first), and that nothing appeared beside `work`.
#[track_caller]
fn check_getfile(disposition: Option<&str>, args: &[&str], code: i32, files: &[&str]) -> Outcome {
    let svc = Service::start();
    let content = b"evidence line\n".repeat(700);
    svc.getfile(gzip(&content), disposition);
    let work = svc.dir.join("work");
    std::fs::create_dir_all(work.join("sub")).expect("create work/sub");
    let out = svc
        .mdlr(&["result", ACTION, "--index", "1"])
        .args(args)
        .cwd(&work)
        .status(code);
    let mut want: Vec<String> = files.iter().map(|f| f.to_string()).collect();
    want.sort();
    assert_eq!(files_under(&work), want, "files after mdlr {args:?}");
    assert_eq!(
        list(svc.dir.path()),
        ["work"],
        "nothing outside the target directory"
    );
    if let Some(first) = files.first() {
        assert_eq!(read(work.join(first)), content);
    }
    out
}

// --- The seed call -------------------------------------------------------------------------

#[test]
fn link_hides_the_signature_unless_revealed() {
    let svc = Service::start();
    svc.action(done_action());
    let link = svc.link(0, "/results/transcript");
    svc.mdlr(&["link", ACTION]).check(
        0,
        "{BLOB}/results/transcript?se=2021-02-04T16%3A13%3A50Z&sp=r&sv=2019-07-07&sr=b&sig=REDACTED\n",
        "mdlr: the link's signature is hidden; pass --reveal to print the usable link (valid until 2021-02-04T16:13:50Z)\n",
    );
    svc.mdlr(&["link", "--reveal", ACTION]).check(
        0,
        "{BLOB}/results/transcript?se=2021-02-04T16%3A13%3A50Z&sp=r&sv=2019-07-07&sr=b&sig=SIGSECRET\n",
        "",
    );
    link.assert_calls(2);
}

#[test]
fn link_as_json() {
    let svc = Service::start();
    svc.action(done_action());
    let link = svc.link(1, "/results/file");
    let url = svc.blob_url("/results/file");
    for (reveal, shown) in [(false, url.replace(SIG, "REDACTED")), (true, url.clone())] {
        let mut run = svc.mdlr(&["--json", "link", ACTION, "--index", "1"]);
        if reveal {
            run = run.arg("--reveal");
        }
        let out = run.status(0);
        assert_eq!(out.stderr, "");
        assert_eq!(
            out.json_lines(),
            [json!({
                "action_id": ACTION,
                "index": 1,
                "url": shown,
                "expires": "2021-02-04T16:13:50Z",
                "redacted": !reveal,
            })]
        );
    }
    link.assert_calls(2);
}

#[test]
fn seed_transcript() {
    let svc = Service::start();
    let [action, link, blob] = svc.transcript(SEED);
    svc.mdlr(&["result", ACTION]).check(0, SEED_OUTPUT, "");
    action.assert_calls(1);
    link.assert_calls(1);
    blob.assert_calls(1);
}

#[test]
fn bearer_to_the_api_none_to_the_result_host() {
    let svc = Service::start();
    let [action, link, blob] = svc.getfile(gzip(b"x"), None);
    svc.mdlr(&["result", ACTION, "--index", "1"]).status(0);
    // All three mocks require it: the API ones `Authorization: Bearer TOKEN`, the
    // result host one no `Authorization` at all (and `Service` checks its trap on drop).
    action.assert_calls(1);
    link.assert_calls(1);
    blob.assert_calls(1);
    let with_auth = svc.blob.mock(|when, then| {
        when.header_exists("authorization");
        then.status(400);
    });
    with_auth.assert_calls(0);
}

// --- Transcripts ---------------------------------------------------------------------------

#[test]
fn transcript_exit_codes_pass_through() {
    check_transcript(
        &transcript("3", "partial\n", "boom\n"),
        3,
        "partial\n",
        "boom\n",
    );
    check_transcript(&transcript("\"7\"", "", ""), 7, "", "");
    check_transcript(&transcript("255", "", ""), 255, "", "");
    check_transcript(&transcript("300", "x", "y"), 1, "x", "y");
    check_transcript(&transcript("-1", "", ""), 1, "", "");
    check_transcript(&transcript("null", "no code\n", ""), 0, "no code\n", "");
}

#[test]
fn transcript_with_bom_crlf_and_non_ascii() {
    let doc = "\u{feff}{\r\n  \"script_name\": \"collect.ps1\",\r\n  \"exit_code\": \"3\",\r\n  \
               \"script_output\": \"Zürich: 3 fichiers\r\n東京: 2\r\n\\u0000\\u0000\",\r\n  \
               \"script_errors\": \"Avertissement : accès refusé\r\n\"\r\n}\r\n";
    check_transcript(
        doc,
        3,
        "Zürich: 3 fichiers\r\n東京: 2\r\n",
        "Avertissement : accès refusé\r\n",
    );
}

#[test]
fn transcript_as_json() {
    let svc = Service::start();
    svc.transcript(SEED);
    let out = svc.mdlr(&["--json", "result", ACTION]).status(0);
    assert_eq!(out.stderr, "");
    assert_eq!(
        out.json_lines(),
        [json!({
            "action_id": ACTION,
            "index": 0,
            "script_name": "minidump.ps1",
            "exit_code": 0,
            "script_output": SEED_OUTPUT,
            "script_errors": "",
        })]
    );

    // Retrieved: exit 0 whatever the script's own code.
    let svc = Service::start();
    svc.transcript(transcript("\"3\"", "out\r\n", "ärger\n"));
    let out = svc.mdlr(&["--json", "result", ACTION]).status(0);
    assert_eq!(
        out.json_lines(),
        [json!({
            "action_id": ACTION,
            "index": 0,
            "script_name": "t.ps1",
            "exit_code": 3,
            "script_output": "out\r\n",
            "script_errors": "ärger\n",
        })]
    );
}

#[test]
fn transcript_raw_and_to_a_file() {
    let svc = Service::start();
    svc.transcript(SEED);
    let out = svc.mdlr(&["result", ACTION, "--raw"]).status(0);
    assert_eq!(out.stdout, SEED);
    svc.mdlr(&["result", ACTION, "-o", "t.json"]).check(
        0,
        &format!("saved t.json ({} bytes)\n", SEED.len()),
        "",
    );
    assert_eq!(read(svc.dir.join("t.json")), SEED.as_bytes());
}

#[test]
fn putfile_has_no_result() {
    let svc = Service::start();
    svc.action(action_json(
        "Succeeded",
        &[("PutFile", "Completed"), ("RunScript", "Completed")],
    ));
    svc.mdlr(&["result", ACTION]).check(
        0,
        "",
        "mdlr: command 0 of action {ID} is a PutFile: it has no result\n",
    );
    svc.mdlr(&["link", ACTION]).check(
        66,
        "",
        "mdlr: command 0 of action {ID} is a PutFile: it has no result, so there is no link\n",
    );
}

// --- GetFile -------------------------------------------------------------------------------

#[test]
fn getfile_is_ungzipped_into_the_current_directory() {
    check_getfile(
        Some("attachment; filename=\"evidence.txt.gz\""),
        &[],
        0,
        &["evidence.txt"],
    )
    .check(
        0,
        "saved evidence.txt (9800 bytes, from evidence.txt.gz)\n",
        "",
    );
}

#[test]
fn getfile_raw_keeps_the_gz() {
    let svc = Service::start();
    let gz = gzip(b"raw");
    svc.getfile(gz.clone(), Some("attachment; filename=\"evidence.txt.gz\""));
    svc.mdlr(&["result", ACTION, "--index", "1", "--raw"])
        .check(
            0,
            &format!(
                "saved evidence.txt.gz ({} bytes, from evidence.txt.gz)\n",
                gz.len()
            ),
            "",
        );
    assert_eq!(read(svc.dir.join("evidence.txt.gz")), gz);
    assert_eq!(list(svc.dir.path()), ["evidence.txt.gz"]);
}

#[test]
fn getfile_output_file_or_directory() {
    let disposition = Some("attachment; filename=\"evidence.txt.gz\"");
    check_getfile(disposition, &["-o", "copy.txt"], 0, &["copy.txt"]);
    let svc = Service::start();
    svc.getfile(gzip(b"into a directory"), disposition);
    std::fs::create_dir(svc.dir.join("out")).expect("create out");
    svc.mdlr(&["result", ACTION, "--index", "1", "-o", "out"])
        .check(
            0,
            "saved out/evidence.txt (16 bytes, from evidence.txt.gz)\n",
            "",
        );
    assert_eq!(read(svc.dir.join("out/evidence.txt")), b"into a directory");
    // An absolute -o, and --json.
    let dir = svc.dir.join("out").display().to_string();
    let out = svc
        .mdlr(&[
            "--json", "result", ACTION, "--index", "1", "--force", "-o", &dir,
        ])
        .status(0);
    assert_eq!(
        out.json_lines(),
        [json!({
            "action_id": ACTION,
            "index": 1,
            "type": "GetFile",
            "path": svc.dir.join("out/evidence.txt"),
            "bytes": 16,
            "received": gzip(b"into a directory").len(),
            "original_name": "evidence.txt.gz",
            "not_gzip": false,
        })]
    );
}

#[test]
fn output_ending_in_a_separator_is_a_directory() {
    let svc = Service::start();
    svc.getfile(
        gzip(b"evidence"),
        Some("attachment; filename=\"evidence.txt.gz\""),
    );
    svc.mdlr(&["result", ACTION, "--index", "1", "-o", "new/dir/"])
        .check(
            0,
            "saved new/dir/evidence.txt (8 bytes, from evidence.txt.gz)\n",
            "",
        );
    assert_eq!(read(svc.dir.join("new/dir/evidence.txt")), b"evidence");
}

#[test]
fn an_existing_output_file_costs_no_link() {
    let svc = Service::start();
    let [_, link, blob] = svc.getfile(gzip(b"new"), None);
    write(svc.dir.join("kept.txt"), "old");
    svc.mdlr(&["result", ACTION, "--index", "1", "-o", "kept.txt"])
        .status(73);
    assert_eq!(
        link.calls(),
        0,
        "no quota spent on a link that cannot be used"
    );
    assert_eq!(blob.calls(), 0);
    assert_eq!(read(svc.dir.join("kept.txt")), b"old");
}

#[test]
fn hostile_names_land_as_plain_names() {
    assert!(
        !Path::new("/etc/x").exists(),
        "/etc/x must not exist for this test"
    );
    for disposition in [
        "attachment; filename=\"../x.gz\"",
        "attachment; filename=..\\..\\x.gz",
        "attachment; filename=\"/etc/x.gz\"",
        "attachment; filename=C:\\x.gz",
        "attachment; filename*=UTF-8''..%2F..%2Fx.gz",
    ] {
        check_getfile(Some(disposition), &[], 0, &["x"]);
        // Into a directory named by -o: its evidence manifest beside the file.
        check_getfile(
            Some(disposition),
            &["-o", "sub"],
            0,
            &["sub/x", "sub/manifest.jsonl"],
        );
    }
    assert!(!Path::new("/etc/x").exists());
}

#[test]
fn fallback_name_is_action_and_index() {
    let name = format!("{ACTION}-1");
    check_getfile(None, &[], 0, &[&name]).check(0, "saved {ID}-1 (9800 bytes)\n", "");
    check_getfile(Some("attachment; filename=\"..\""), &[], 0, &[&name]);
    // --raw keeps the gzip stream, so the fallback name says so.
    let svc = Service::start();
    let gz = gzip(b"x");
    svc.getfile(gz.clone(), None);
    svc.mdlr(&["result", ACTION, "--index", "1", "--raw"])
        .check(0, &format!("saved {{ID}}-1.gz ({} bytes)\n", gz.len()), "");
    assert_eq!(read(svc.dir.join(format!("{ACTION}-1.gz"))), gz);
}

#[test]
fn no_overwrite_without_force() {
    let svc = Service::start();
    svc.getfile(
        gzip(b"new"),
        Some("attachment; filename=\"evidence.txt.gz\""),
    );
    write(svc.dir.join("evidence.txt"), "old");
    svc.mdlr(&["result", ACTION, "--index", "1"]).check(
        73,
        "",
        "mdlr: command 1 of action {ID}: evidence.txt exists already\n  hint: pass --force to overwrite it\n",
    );
    assert_eq!(read(svc.dir.join("evidence.txt")), b"old");
    svc.mdlr(&["result", ACTION, "--index", "1", "-o", "evidence.txt"])
        .status(73);
    assert_eq!(read(svc.dir.join("evidence.txt")), b"old");
    assert_eq!(list(svc.dir.path()), ["evidence.txt"]);

    svc.mdlr(&["result", ACTION, "--index", "1", "--force"])
        .check(
            0,
            "saved evidence.txt (3 bytes, from evidence.txt.gz)\n",
            "",
        );
    assert_eq!(read(svc.dir.join("evidence.txt")), b"new");
    assert_eq!(list(svc.dir.path()), ["evidence.txt"]);
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
    // Ten bytes of a thousand, and a host that cannot send the rest: nothing to go on
    // with, and nothing a rerun could use.
    svc.mdlr(&["result", ACTION, "--index", "1"])
        .run()
        .check_err(
            65,
            &["mdlr: command 1 of action {ID}: malformed download: the result host ignored the request for bytes from 10"],
        );
    assert_eq!(list(svc.dir.path()), Vec::<String>::new());
    // With an existing file and --force, the old file survives the failure intact.
    write(svc.dir.join("evidence.txt"), "old");
    svc.mdlr(&["result", ACTION, "--index", "1", "--force"])
        .status(65);
    assert_eq!(list(svc.dir.path()), ["evidence.txt"]);
    assert_eq!(read(svc.dir.join("evidence.txt")), b"old");
}

/// A GetFile result that is not gzip (field reports show the service sending some):
/// saved as it came, under the name without `.gz`, with a warning; in the manifest
/// like any file.
#[test]
fn a_getfile_result_that_is_not_gzip_is_saved_as_it_came() {
    let svc = Service::start();
    let content = b"plain evidence, never gzipped\n".repeat(300);
    svc.getfile(
        content.clone(),
        Some("attachment; filename=\"evidence.txt.gz\""),
    );
    let out = svc
        .mdlr(&["result", ACTION, "--index", "1", "-o", "got/"])
        .run();
    out.status(0);
    assert_eq!(
        out.stdout,
        format!(
            "saved got/evidence.txt ({} bytes, from evidence.txt.gz)\n",
            content.len()
        )
    );
    assert!(
        out.stderr
            .contains("is not gzip (it does not start with 1f 8b): saved as it came, 9000 bytes"),
        "{}",
        out.stderr
    );
    assert_eq!(read(svc.dir.join("got/evidence.txt")), content);
    let line: serde_json::Value = serde_json::from_slice(&read(svc.dir.join("got/manifest.jsonl")))
        .expect("one manifest line");
    assert_eq!(line["sha256"], line["sha256_served"]);
    assert_eq!(line["size"], content.len());
    // The same in --json: said in the record.
    let out = svc
        .mdlr(&["--json", "result", ACTION, "--index", "1", "-o", "again/"])
        .run();
    out.status(0);
    assert_eq!(out.json_lines()[0]["not_gzip"], true);
}

#[test]
fn broken_gzip_leaves_no_file() {
    let full = gzip(&b"some evidence that compresses\n".repeat(500));
    let cut = full[..full.len() / 2].to_vec();
    let svc = Service::start();
    svc.getfile(cut, Some("attachment; filename=\"evidence.txt.gz\""));
    let out = svc.mdlr(&["result", ACTION, "--index", "1"]).run();
    out.check_err(
        65,
        &["mdlr: command 1 of action {ID}: malformed gzip stream"],
    );
    assert_eq!(list(svc.dir.path()), Vec::<String>::new());

    // A corrupt stream whose length is announced correctly, served raw.
    let mut corrupt = full.clone();
    let n = corrupt.len();
    corrupt[n - 8] ^= 0x01; // the CRC-32
    let raw = RawServer::start(RawServer::reply(corrupt.len(), "", &corrupt));
    let svc = Service::start();
    svc.action(done_action());
    svc.link_to(1, &raw.url("/results/corrupt"));
    svc.mdlr(&["result", ACTION, "--index", "1"])
        .run()
        .check_err(65, &["malformed gzip stream"]);
    assert_eq!(list(svc.dir.path()), Vec::<String>::new());
}

#[test]
fn unwritable_output_is_a_local_io_error() {
    let svc = Service::start();
    svc.getfile(gzip(b"x"), None);
    write(svc.dir.join("file"), "in the way");
    svc.mdlr(&["result", ACTION, "--index", "1", "-o", "file/evidence"])
        .run()
        .check_err(74, &["mdlr: command 1 of action {ID}: cannot write file/"]);
    svc.mdlr(&["result", ACTION, "--all", "-o", "file/sub"])
        .run()
        .check_err(74, &["cannot create directory file/sub"]);
    assert_eq!(list(svc.dir.path()), ["file"]);
    assert_eq!(read(svc.dir.join("file")), b"in the way");
}

#[test]
fn all_results_into_a_directory() {
    let svc = Service::start();
    svc.transcript(SEED);
    svc.link(1, "/results/file");
    svc.blob("/results/file", |then| {
        then.header(
            "content-disposition",
            "attachment; filename=\"evidence.txt.gz\"",
        )
        .body(gzip(b"file"))
    });
    svc.mdlr(&["result", ACTION, "--all", "-o", "evidence"]).check(
        0,
        &format!(
            "saved evidence/{{ID}}-0.json ({} bytes)\nsaved evidence/evidence.txt (4 bytes, from evidence.txt.gz)\n",
            SEED.len()
        ),
        "",
    );
    assert_eq!(
        read(svc.dir.join(format!("evidence/{ACTION}-0.json"))),
        SEED.as_bytes()
    );
    assert_eq!(read(svc.dir.join("evidence/evidence.txt")), b"file");
}

// --- Exit statuses -------------------------------------------------------------------------

#[test]
fn usage_errors_exit_64() {
    let svc = Service::start();
    let any = svc.api.mock(|when, then| {
        when.any_request();
        then.status(500);
    });
    svc.mdlr(&["result"]).check(
        64,
        "",
        "mdlr: missing ACTION_ID\nRun `mdlr help result` for its usage.\n",
    );
    svc.mdlr(&["result", ACTION, "--index", "-1"]).check(
        64,
        "",
        "mdlr: --index takes a command index (0, 1, 2, ...), not \"-1\"\nRun `mdlr help result` for its usage.\n",
    );
    svc.mdlr(&["frobnicate"]).check(
        64,
        "",
        "mdlr: unknown command \"frobnicate\"\nRun `mdlr help` for usage.\n",
    );
    svc.mdlr(&["result", "../x"]).check(
        64,
        "",
        "mdlr: cannot read action ../x: \"../x\" is not a machine action id (a GUID such as {ID})\n",
    );
    svc.mdlr(&["link", "..\\x"]).status(64);
    svc.mdlr(&["action", "a%2F..%2Fx"]).status(64);
    any.assert_calls(0);
}

#[test]
fn malformed_replies_exit_65() {
    let svc = Service::start();
    svc.api.mock(|when, then| {
        when.path(format!("/api/machineactions/{ACTION}"));
        then.status(200)
            .body("{\"status\": \"Succeeded\", \"commands\": [");
    });
    svc.mdlr(&["result", ACTION]).run().check_err(
        65,
        &["mdlr: cannot read action {ID}: malformed machine action: "],
    );

    let svc = Service::start();
    svc.transcript("<html><body>Service Unavailable</body></html>");
    svc.mdlr(&["result", ACTION]).check(
        65,
        "",
        "mdlr: command 0 of action {ID}: malformed transcript: not a JSON document: expected value at line 1 column 1\n",
    );

    let svc = Service::start();
    svc.action(done_action());
    svc.api.mock(|when, then| {
        when.path(seed_path(0));
        then.status(200).json_body(json!({"value": null}));
    });
    svc.mdlr(&["link", ACTION]).check(
        65,
        "",
        "mdlr: malformed download link reply: it has no `value` link\n",
    );
}

#[test]
fn not_found_exits_66() {
    let svc = Service::start();
    svc.action_error(
        404,
        api_error("ResourceNotFound", "Machine action was not found"),
    );
    svc.mdlr(&["result", ACTION]).check(
        66,
        "",
        "mdlr: cannot read action {ID}: the API answered 404: Machine action was not found\n  code ResourceNotFound, correlation id corr-42\n",
    );

    let svc = Service::start();
    svc.action(done_action());
    svc.mdlr(&["result", ACTION, "--index", "5"]).check(
        66,
        "",
        "mdlr: action {ID} has no command at index 5 (it has 2)\n",
    );
    svc.mdlr(&["link", ACTION, "--index", "2"]).status(66);
}

#[test]
fn server_errors_after_retries_exit_69() {
    let svc = Service::start();
    let failing = svc.api.mock(|when, then| {
        when.path(format!("/api/machineactions/{ACTION}"));
        then.status(503)
            .header("retry-after", "0")
            .body("<html><body>Service Unavailable</body></html>");
    });
    let retry = "mdlr: status 503 from {API}/api/machineactions/{ID}; retrying in 0.0 s\n";
    svc.mdlr(&["result", ACTION]).check(
        69,
        "",
        &format!(
            "{}mdlr: cannot read action {{ID}}: the API answered 503: an HTML or XML page instead of JSON (a proxy or gateway may have answered)\n",
            retry.repeat(4)
        ),
    );
    failing.assert_calls(5);
}

#[test]
fn server_error_then_success() {
    let svc = Service::start();
    let failing = svc.api.mock(|when, then| {
        when.path(seed_path(0));
        then.status(502).up_to_n_times(1);
    });
    svc.transcript(SEED);
    let out = svc
        .mdlr(&["-q", "result", ACTION])
        .check(0, SEED_OUTPUT, "");
    failing.assert_calls(1);
    assert!(
        out.elapsed >= Duration::from_millis(240),
        "{:?}",
        out.elapsed
    );
}

#[test]
fn failed_or_cancelled_actions_exit_69() {
    let svc = Service::start();
    svc.action(action_json(
        "Failed",
        &[("RunScript", "Failed"), ("GetFile", "Created")],
    ));
    svc.mdlr(&["result", ACTION]).check(
        69,
        "",
        "mdlr: command 0 of action {ID} has no result: action Failed, command Failed\n  error: The script failed\n",
    );
    svc.mdlr(&["result", ACTION, "--index", "1"]).check(
        69,
        "",
        "mdlr: command 1 of action {ID} has no result: action Failed, command Created\n",
    );

    let svc = Service::start();
    svc.action(action_json("Cancelled", &[("RunScript", "Created")]));
    svc.mdlr(&["result", ACTION]).check(
        69,
        "",
        "mdlr: command 0 of action {ID} has no result: action Cancelled, command Created\n",
    );
    svc.mdlr(&["action", ACTION, "--wait"]).status(69);
}

#[test]
fn connection_refused_exits_69() {
    let url = format!("http://127.0.0.1:{}", free_port());
    Run::new(&["-q", "result", ACTION, "--api-url", &url])
        .env("MDLR_TOKEN", TOKEN)
        .replace(url.clone(), "{API}")
        .run()
        .check_err(
            69,
            &[
                "mdlr: cannot read action {ID}: cannot connect (",
                "Connection refused",
                "({API}/api/machineactions/{ID})\n",
                "hint: check the network; behind a proxy, set HTTPS_PROXY or pass --proxy URL",
            ],
        );
}

#[test]
fn quota_exhausted_exits_75() {
    let svc = Service::start();
    svc.action(done_action());
    let busy = svc.api.mock(|when, then| {
        when.path(seed_path(0));
        then.status(429)
            .header("retry-after", "0")
            .json_body(api_error("TooManyRequests", "Rate limit is exceeded"));
    });
    svc.mdlr(&["-q", "result", ACTION]).check(
        75,
        "",
        "mdlr: command 0 of action {ID}: the API answered 429: Rate limit is exceeded (retry after 0 s)\n  code TooManyRequests, correlation id corr-42\n  hint: the API quota is used up for now; try again in a minute\n",
    );
    busy.assert_calls(5);
}

#[test]
fn retry_after_is_honoured() {
    // mdlr waits at least 1 s after a 429 anyway, so only a longer `Retry-After`
    // shows that it was read.
    let svc = Service::start();
    svc.action(done_action());
    let busy = svc.api.mock(|when, then| {
        when.path(seed_path(0));
        then.status(429)
            .header("retry-after", "2")
            .json_body(api_error("TooManyRequests", "Rate limit is exceeded"))
            .up_to_n_times(1);
    });
    svc.link(0, "/results/transcript");
    svc.blob("/results/transcript", |then| then.body(SEED));
    let out = svc.mdlr(&["result", ACTION]).check(
        0,
        SEED_OUTPUT,
        "mdlr: status 429 from {API}/api/machineactions/{ID}/GetLiveResponseResultDownloadLink(index=0); retrying in 2.0 s\n",
    );
    busy.assert_calls(1);
    assert!(
        out.elapsed >= Duration::from_millis(1950),
        "{:?}",
        out.elapsed
    );
}

#[test]
fn unfinished_commands_exit_75() {
    let svc = Service::start();
    svc.action(action_json("InProgress", &[("RunScript", "Created")]));
    svc.mdlr(&["result", ACTION]).check(
        75,
        "",
        "mdlr: command 0 of action {ID} has not finished yet (action InProgress, command Created)\n  hint: run `mdlr result {ID} --wait` to wait for it\n",
    );

    let svc = Service::start();
    svc.action(action_json("TimeOut", &[("RunScript", "Created")]));
    let timed_out = "mdlr: command 0 of action {ID} has no result: action TimeOut, command Created\n  hint: the action timed out on the machine, so this command will not finish; start it again\n";
    svc.mdlr(&["result", ACTION]).check(75, "", timed_out);
    // Nothing to wait for: the action has ended.
    svc.mdlr(&["result", ACTION, "--wait"])
        .check(75, "", timed_out);
    svc.mdlr(&["action", ACTION, "--wait"]).status(75);

    // Details not listed yet, right after the start.
    let svc = Service::start();
    svc.action(action_json("Pending", &[]));
    svc.mdlr(&["result", ACTION]).status(75);
}

#[test]
fn a_link_refused_as_not_finished_exits_75() {
    // The action says Completed, but the service still answers the seed call with 400
    // (SPEC A5: asking too early is a 400): try later, not a usage error.
    let svc = Service::start();
    svc.action(done_action());
    svc.api.mock(|when, then| {
        when.method("GET").path(seed_path(0));
        then.status(400)
            .json_body(api_error("BadRequest", "Command not completed yet"));
    });
    svc.mdlr(&["result", ACTION]).run().check_err(
        75,
        &[
            "the API answered 400: Command not completed yet",
            "code BadRequest",
        ],
    );
    svc.mdlr(&["link", ACTION]).status(75);
}

#[test]
fn wait_that_times_out_exits_75() {
    let svc = Service::start();
    let action = svc.action(action_json("InProgress", &[("RunScript", "Created")]));
    let out = svc
        .mdlr(&["result", ACTION, "--wait", "--wait-timeout", "1s", "--poll-interval", "200ms"])
        .check(
            75,
            "",
            "mdlr: gave up waiting after 1s: command 0 of action {ID} has not finished yet (action InProgress, command Created)\n  hint: run `mdlr result {ID} --wait` to wait for it\n",
        );
    assert!(
        out.elapsed >= Duration::from_millis(950),
        "{:?}",
        out.elapsed
    );
    assert!(action.calls() >= 3, "looked {} times", action.calls());

    svc.mdlr(&[
        "action",
        ACTION,
        "--wait",
        "--wait-timeout",
        "500ms",
        "--poll-interval",
        "100ms",
    ])
    .run()
    .check_err(
        75,
        &["mdlr: gave up waiting after 500ms; the action is still InProgress\n"],
    );
}

#[test]
fn wait_until_finished() {
    let svc = Service::start();
    let running = svc.api.mock(|when, then| {
        when.path(format!("/api/machineactions/{ACTION}"));
        then.status(200)
            .json_body(action_json("InProgress", &[("RunScript", "Created")]))
            .up_to_n_times(2);
    });
    svc.transcript(SEED);
    svc.mdlr(&["result", ACTION, "--wait", "--poll-interval", "100ms"])
        .check(0, SEED_OUTPUT, "");
    running.assert_calls(2);
}

#[test]
fn refused_credentials_exit_77() {
    let svc = Service::start();
    svc.action_error(401, api_error("Unauthorized", "Token is expired"));
    svc.mdlr(&["result", ACTION]).check(
        77,
        "",
        "mdlr: cannot read action {ID}: the API answered 401: Token is expired\n  code Unauthorized, correlation id corr-42\n  hint: the token was refused: it may have expired, or be for another API or cloud (check --cloud and --scope); `mdlr auth` shows what it is for\n",
    );

    let svc = Service::start();
    svc.action_error(403, api_error("Forbidden", "Missing application roles"));
    svc.mdlr(&["result", ACTION]).run().check_err(
        77,
        &[
            "Missing application roles",
            "Machine.Read.All",
            "code Forbidden",
        ],
    );

    let svc = Service::start();
    let api = svc.action(done_action());
    svc.api.mock(|when, then| {
        when.method("POST").path(format!("/{TENANT}/oauth2/v2.0/token"));
        then.status(401).json_body(json!({
            "error": "invalid_client",
            "error_description": "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value.\r\nTrace ID: t-1\r\nCorrelation ID: c-1",
            "correlation_id": "c-1",
        }));
    });
    let out = svc
        .mdlr(&["result", ACTION, "--login-url", &svc.api_url()])
        .client_secret()
        .check(
            77,
            "",
            "mdlr: cannot read action {ID}: sign-in failed (401): AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value.\n  code invalid_client, correlation id c-1\n  hint: the client secret is wrong: check AZURE_CLIENT_SECRET (the secret's value, not its id)\n",
        );
    out.check_no_secrets();
    api.assert_calls(0);
}

#[test]
fn configuration_errors_exit_78() {
    let svc = Service::start();
    let any = svc.api.mock(|when, then| {
        when.any_request();
        then.status(500);
    });
    // No `az` in PATH, no HOME (so no kept login): nothing to sign in with.
    svc.mdlr(&["result", ACTION])
        .env("MDLR_TOKEN", "")
        .env("PATH", "/nonexistent")
        .check(
        78,
        "",
        "mdlr: no credential: set MDLR_TOKEN (or pass --token-file PATH) for a bearer token; AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET (or AZURE_CLIENT_CERTIFICATE_PATH) for an app registration; run `mdlr login` to sign in as yourself; sign in to the Azure CLI (`az login`); or use --auth managed-identity on an Azure VM\n",
    );
    svc.mdlr(&["result", ACTION])
        .env("MDLR_TOKEN", "")
        .env("AZURE_CLIENT_SECRET", "a-secret")
        .run()
        .check_err(
            78,
            &["AZURE_CLIENT_SECRET is set but AZURE_TENANT_ID and AZURE_CLIENT_ID not"],
        );
    svc.mdlr(&["--cloud", "mars", "result", ACTION])
        .run()
        .check_err(78, &["unknown cloud \"mars\""]);
    svc.mdlr(&["result", ACTION])
        .env("MDLR_CLOUD", "mars")
        .run()
        .check_err(78, &["unknown cloud \"mars\""]);
    Run::new(&["result", ACTION, "--api-url", "http://api.example.com"])
        .env("MDLR_TOKEN", TOKEN)
        .check(
            78,
            "",
            "mdlr: refusing plain http:// for API URL http://api.example.com: only https:// is allowed, except to a loopback address\n",
        );
    Run::new(&["result", ACTION])
        .env("MDLR_TOKEN", TOKEN)
        .env("MDLR_API_URL", "http://127.0.0.1.example.com/api")
        .status(78);
    svc.mdlr(&["result", ACTION, "--login-url", "http://login.example.com"])
        .client_secret()
        .run()
        .check_err(78, &["refusing plain http:// for login URL"]);
    any.assert_calls(0);

    // A download link to a plain http:// host that is not loopback.
    let svc = Service::start();
    svc.action(done_action());
    svc.link_to(0, &format!("http://results.example.com/c/b?{LINK_QUERY}"));
    let out = svc.mdlr(&["result", ACTION]).check(
        78,
        "",
        "mdlr: command 0 of action {ID}: refusing plain http:// for download link http://results.example.com/c/b?se=2021-02-04T16%3A13%3A50Z&sp=r&sv=2019-07-07&sr=b&sig=REDACTED: only https:// is allowed, except to a loopback address\n",
    );
    out.check_no_secrets();
    svc.mdlr(&["link", ACTION, "--reveal"])
        .run()
        .check_err(78, &["refusing plain http:// for download link"]);
}

#[test]
fn settings_from_options_and_environment() {
    let svc = Service::start();
    let [action, ..] = svc.transcript(SEED);
    // MDLR_API_URL instead of --api-url, with the `/api/` suffix users copy from docs.
    Run::new(&["result", ACTION])
        .cwd(svc.dir.path())
        .env("MDLR_TOKEN", TOKEN)
        .env("MDLR_API_URL", format!("{}/api/", svc.api_url()))
        .check(0, SEED_OUTPUT, "");
    // --token-file wins over MDLR_TOKEN, and its line end is dropped.
    write(svc.dir.join("token"), format!("{TOKEN}\n"));
    svc.mdlr(&["result", ACTION, "--token-file", "token"])
        .env("MDLR_TOKEN", "tok-wrong")
        .check(0, SEED_OUTPUT, "");
    // AZURE_AUTHORITY_HOST and --scope reach the token request.
    let login = svc.api.mock(|when, then| {
        when.method("POST")
            .path(format!("/{TENANT}/oauth2/v2.0/token"))
            .form_urlencoded_tuple("scope", "api://mde-proxy/.default");
        then.status(200)
            .json_body(json!({"token_type": "Bearer", "expires_in": 3599, "access_token": TOKEN}));
    });
    svc.mdlr(&["result", ACTION, "--scope", "api://mde-proxy/.default"])
        .client_secret()
        .env("AZURE_AUTHORITY_HOST", svc.api_url())
        .check(0, SEED_OUTPUT, "");
    login.assert_calls(1);
    action.assert_calls(3);
}

// --- Sign-in -------------------------------------------------------------------------------

#[test]
fn client_secret_refreshed_once_after_401() {
    let svc = Service::start();
    let old = svc.token_endpoint("tok-SECRET-old", Some(1));
    let fresh = svc.token_endpoint(TOKEN, None);
    let refused = svc.api.mock(|when, then| {
        when.path(format!("/api/machineactions/{ACTION}"))
            .header("authorization", "Bearer tok-SECRET-old");
        then.status(401)
            .json_body(api_error("Unauthorized", "The token has expired"));
    });
    svc.transcript(SEED);
    let out = svc
        .mdlr(&["-v", "result", ACTION, "--login-url", &svc.api_url()])
        .client_secret()
        .check(
            0,
            SEED_OUTPUT,
            r"mdlr: POST {API}/contoso.onmicrosoft.com/oauth2/v2.0/token -> 200 (N ms)
mdlr: GET {API}/api/machineactions/{ID} -> 401 (N ms)
mdlr: POST {API}/contoso.onmicrosoft.com/oauth2/v2.0/token -> 200 (N ms)
mdlr: GET {API}/api/machineactions/{ID} -> 200 (N ms)
mdlr: GET {API}/api/machineactions/{ID}/GetLiveResponseResultDownloadLink(index=0) -> 200 (N ms)
mdlr: GET {BLOB}/results/transcript?se=2021-02-04T16%3A13%3A50Z&sp=r&sv=2019-07-07&sr=b&sig=REDACTED -> 200 (N ms)
",
        );
    out.check_no_secrets();
    old.assert_calls(1);
    fresh.assert_calls(1);
    refused.assert_calls(1);
}

// --- The result host -----------------------------------------------------------------------

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
            .body("<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>AuthenticationFailed</Code><Message>Server failed to authenticate the request.\nRequestId:r-1</Message></Error>")
    });
    svc.blob("/results/fresh", |then| then.body(SEED));
    svc.mdlr(&["result", ACTION]).check(0, SEED_OUTPUT, "");
    first.assert_calls(1);
    second.assert_calls(1);
    expired.assert_calls(1);

    // Refused again: give up with 77 after exactly one renewal.
    let svc = Service::start();
    svc.action(done_action());
    let link = svc.link(0, "/results/expired");
    svc.blob("/results/expired", |then| {
        then.status(403)
            .header("x-ms-error-code", "AuthenticationFailed")
            .header("x-ms-request-id", "r-2")
    });
    let out = svc.mdlr(&["result", ACTION]).check(
        77,
        "",
        "mdlr: command 0 of action {ID}: the result host answered 403: access refused (the link may have expired)\n  code AuthenticationFailed, correlation id r-2\n",
    );
    out.check_no_secrets();
    link.assert_calls(2);
}

// --- Logs and secrets ------------------------------------------------------------------------

#[test]
fn verbose_logs_each_exchange() {
    let svc = Service::start();
    svc.getfile(gzip(b"x"), Some("attachment; filename=\"evidence.txt.gz\""));
    svc.mdlr(&["-v", "result", ACTION, "--index", "1"]).check(
        0,
        "saved evidence.txt (1 bytes, from evidence.txt.gz)\n",
        r"mdlr: GET {API}/api/machineactions/{ID} -> 200 (N ms)
mdlr: GET {API}/api/machineactions/{ID}/GetLiveResponseResultDownloadLink(index=1) -> 200 (N ms)
mdlr: GET {BLOB}/results/file?se=2021-02-04T16%3A13%3A50Z&sp=r&sv=2019-07-07&sr=b&sig=REDACTED -> 200 (N ms)
",
    );
}

#[test]
fn no_secret_in_any_output_at_any_verbosity() {
    let svc = Service::start();
    svc.token_endpoint(TOKEN, None);
    svc.getfile(gzip(b"x"), Some("attachment; filename=\"evidence.txt.gz\""));
    svc.link(0, "/results/transcript");
    svc.blob("/results/transcript", |then| then.body(SEED));
    // A second service whose result host fails, for the error paths.
    let broken = Service::start();
    broken.token_endpoint(TOKEN, None);
    broken.action(done_action());
    broken.link(0, "/results/broken");
    broken.blob("/results/broken", |then| {
        then.status(500).header("retry-after", "0").body("oops")
    });
    broken.link_to(1, &format!("http://results.example.com/c/b?{LINK_QUERY}"));
    let runs: [(&Service, &[&str], i32); 9] = [
        (&svc, &["link", ACTION], 0),
        (&svc, &["--json", "link", ACTION, "--reveal"], 0),
        (&svc, &["result", ACTION], 0),
        (&svc, &["--json", "result", ACTION], 0),
        (&svc, &["result", ACTION, "--index", "1", "--force"], 0),
        (&svc, &["action", ACTION], 0),
        (&broken, &["result", ACTION], 69),
        (&broken, &["result", ACTION, "--index", "1"], 78),
        (&broken, &["link", ACTION, "--index", "1"], 78),
    ];
    for verbosity in ["-v", "-vv"] {
        for (service, args, code) in runs {
            let login = service.api_url();
            let with_token = service.mdlr(&[verbosity]).args(args);
            let with_secret = service
                .mdlr(&[verbosity, "--login-url", &login])
                .client_secret()
                .args(args);
            for out in [with_token.status(code), with_secret.status(code)] {
                if args.contains(&"--reveal") {
                    // The one place a signature may show: stdout of `link --reveal`.
                    assert!(out.stdout.contains(SIG));
                    assert!(!out.stderr.contains(SIG), "{}", out.stderr);
                    assert!(!out.stdout.contains(TOKEN) && !out.stdout.contains(CLIENT_SECRET));
                } else {
                    out.check_no_secrets();
                }
                assert!(out.stderr.contains("mdlr: GET "), "{}", out.stderr);
            }
        }
    }
}
