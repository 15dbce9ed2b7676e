//! Evidence (issue 12): the manifest of every output directory, `mdlr verify`, and
//! CSV for the case file — against the simulator, with files on disk, read back by a
//! real CSV parser (Python's `csv`).

use std::path::Path;
use std::time::{Duration, Instant};

use mdlr_tests::sim::{Outcome, SimConfig, SimMachine};
use mdlr_tests::util::{names_in, sha256_hex};

use crate::util::*;

/// Machine `n` with a file to collect, and errors in its transcripts when `errors`.
fn machine(n: usize, errors: bool) -> SimMachine {
    let mut m = SimMachine::new(n);
    m.files.push((
        r"C:\Temp\a.txt".to_owned(),
        format!("evidence of machine {n}\n")
            .repeat(2000)
            .into_bytes(),
    ));
    if errors {
        m.script_errors = format!("warning on {n}\n");
    }
    m
}

/// A CSV file's rows, as Python's `csv` module reads them.
#[track_caller]
fn csv_rows(path: &Path) -> Vec<Vec<String>> {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import csv, json, sys\n\
             with open(sys.argv[1], newline='', encoding='utf-8') as f:\n    \
             print(json.dumps(list(csv.reader(f, strict=True))))",
        ])
        .arg(path)
        .output()
        .expect("run python3 (the CSV parser)");
    assert!(
        out.status.success(),
        "python3 could not read {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the rows as JSON")
}

/// A batch with `-o`: every delivered file has one manifest line saying what it is and
/// where it came from, hashed while it streamed; `mdlr verify` holds the directory to
/// it and names a flipped bit, a missing file and an unlisted one (exit 65).
#[test]
fn the_manifest_lists_every_file_and_verify_catches_changes() {
    let sim = Sim::with(vec![machine(1, false), machine(2, true)]);
    let out = sim
        .live(&[
            "run",
            &host(1),
            &host(2),
            "--script",
            "x.ps1",
            "--get",
            r"C:\Temp\a.txt",
            "--comment",
            "case 4711",
            "-o",
            "out",
        ])
        .run();
    out.status(0);
    let dir = sim.dir.join("out");
    let lines = manifest(&dir);
    let version = Run::new(&["--version"]).run().stdout;
    let mut paths: Vec<&str> = lines
        .iter()
        .map(|l| l["path"].as_str().unwrap_or(""))
        .collect();
    paths.sort_unstable();
    assert_eq!(
        paths,
        [
            "host0001.contoso.test/0-x.json",
            "host0001.contoso.test/0-x.out",
            "host0001.contoso.test/a.txt",
            "host0002.contoso.test/0-x.err",
            "host0002.contoso.test/0-x.json",
            "host0002.contoso.test/0-x.out",
            "host0002.contoso.test/a.txt",
        ]
    );
    for l in &lines {
        let path = dir.join(l["path"].as_str().expect("path"));
        let bytes = read(&path);
        assert_eq!(l["size"], bytes.len(), "{l}");
        assert_eq!(l["sha256"], sha256_hex(&bytes), "{l}");
        let n = if l["machine"] == host(1) { 1 } else { 2 };
        assert_eq!(l["machine_id"], sim.machine(n).id, "{l}");
        assert_eq!(
            l["requestor"].as_str().map(|r| !r.is_empty()),
            Some(true),
            "{l}"
        );
        assert_eq!(l["comment"], "case 4711", "{l}");
        assert!(l["created"].is_string() && l["updated"].is_string(), "{l}");
        assert!(
            l["downloaded_at"]
                .as_str()
                .is_some_and(|t| t.ends_with('Z')),
            "{l}"
        );
        let v = l["mdlr_version"].as_str().unwrap_or("?");
        assert!(
            version.starts_with(&format!("mdlr {v} ")),
            "{l} vs {version}"
        );
        assert!(l["action_id"].is_string(), "{l}");
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name == "a.txt" {
            // Served as gzip: the served digest and size are the stream's.
            let content = sim.machine(n).file_content(r"C:\Temp\a.txt");
            assert_eq!(bytes, content);
            assert_ne!(l["sha256_served"], l["sha256"], "{l}");
            assert!(
                l["size_served"].as_u64() < Some(content.len() as u64),
                "{l}"
            );
            assert_eq!(l["index"], 1, "{l}");
            assert_eq!(l["command"]["type"], "GetFile", "{l}");
            assert_eq!(l["command"]["params"]["Path"], r"C:\Temp\a.txt", "{l}");
        } else {
            // The transcript's files come from its JSON, served as it is.
            let json = read(path.with_file_name("0-x.json"));
            assert_eq!(l["sha256_served"], sha256_hex(&json), "{l}");
            assert_eq!(l["size_served"], json.len(), "{l}");
            assert_eq!(l["index"], 0, "{l}");
            assert_eq!(l["command"]["type"], "RunScript", "{l}");
            assert_eq!(l["command"]["params"]["ScriptName"], "x.ps1", "{l}");
        }
    }
    sim.mdlr(&["verify", "out"])
        .check(0, "", "mdlr: 7 file(s) listed, 7 match, 0 do not\n");

    // A flipped bit, a missing file, an unlisted one: each named, exit 65.
    let target = dir.join(host(1)).join("a.txt");
    let mut bytes = read(&target);
    bytes[100] ^= 0x01;
    write(&target, &bytes);
    std::fs::remove_file(dir.join(host(2)).join("0-x.err")).expect("remove a file");
    write(dir.join(host(2)).join("extra.txt"), "planted");
    let out = sim.mdlr(&["verify", "out"]).run();
    out.status(65);
    let text = out.normalize(&out.stdout);
    assert!(
        text.contains(&format!(
            "{}/a.txt: changed: SHA-256 {}",
            host(1),
            sha256_hex(&bytes)
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("{}/0-x.err: missing", host(2))),
        "{text}"
    );
    assert!(
        text.contains(&format!("{}/extra.txt: not in the manifest", host(2))),
        "{text}"
    );
    assert_eq!(text.lines().count(), 3, "{text}");
    let out = sim.mdlr(&["--json", "verify", "out"]).run();
    out.status(65);
    let records = out.json_lines();
    assert_eq!(records.len(), 8);
    let status_of = |p: String| {
        records
            .iter()
            .find(|r| r["path"] == p.as_str())
            .map(|r| r["status"].clone())
    };
    assert_eq!(
        status_of(format!("{}/a.txt", host(1))),
        Some("changed".into())
    );
    assert_eq!(
        status_of(format!("{}/0-x.err", host(2))),
        Some("missing".into())
    );
    assert_eq!(
        status_of(format!("{}/extra.txt", host(2))),
        Some("unlisted".into())
    );
    assert_eq!(status_of(format!("{}/a.txt", host(2))), Some("ok".into()));
    // No manifest: nothing to verify against.
    sim.mdlr(&["verify", "."])
        .run()
        .check_err(66, &["has no manifest"]);
}

/// `mdlr result --all -o DIR` and `mdlr fetch -o DIR` keep a manifest too.
#[test]
fn result_and_fetch_keep_a_manifest() {
    let sim = Sim::with(vec![machine(1, false)]);
    sim.live(&["getfile", &host(1), r"C:\Temp\a.txt", "--no-wait"])
        .run()
        .status(0);
    let action = sim.sim.actions()[0]["id"]
        .as_str()
        .expect("an id")
        .to_owned();
    sim.live(&["result", &action, "--all", "--wait", "-o", "res"])
        .run()
        .status(0);
    let lines = manifest(&sim.dir.join("res"));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["path"], "a.txt");
    assert_eq!(lines[0]["action_id"], action.as_str());
    assert_eq!(lines[0]["machine"], host(1));
    sim.mdlr(&["verify", "res"]).run().status(0);
    // A bare link: no action to name, the file still hashed and listed.
    let link = sim.mdlr(&["link", &action, "--reveal"]).run();
    link.status(0);
    Run::new(&["fetch", "-", "-o", "fetched/"])
        .stdin(link.stdout.trim().to_owned())
        .cwd(sim.dir.path())
        .run()
        .status(0);
    let lines = manifest(&sim.dir.join("fetched"));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["path"], "a.txt");
    assert!(lines[0]["action_id"].is_null());
    assert_eq!(
        lines[0]["sha256"],
        sha256_hex(&sim.machine(1).file_content(r"C:\Temp\a.txt"))
    );
    sim.mdlr(&["verify", "fetched"]).run().status(0);
}

/// A batch killed after some results were delivered, then resumed: every file has
/// exactly one manifest line, and the directory verifies.
#[test]
fn a_killed_batch_leaves_one_manifest_line_per_file() {
    let n = 12;
    let sim = Sim::start(SimConfig {
        pending_for: Duration::from_secs(4),
        run_for: Duration::from_secs(3),
        ..sim_config((1..=n).map(|i| machine(i, false)).collect())
    });
    let hosts: Vec<String> = (1..=n).map(host).collect();
    let mut args = vec!["run"];
    args.extend(hosts.iter().map(String::as_str));
    args.extend(["--script", "x.ps1", "--get", r"C:\Temp\a.txt", "-o", "out"]);
    let dir = sim.dir.join("out");
    let child = sim.live(&args).spawn();
    let deadline = Instant::now() + Duration::from_secs(20);
    while manifest(&dir).len() < 3 {
        assert!(Instant::now() < deadline, "no result delivered in 20 s");
        std::thread::sleep(Duration::from_millis(5));
    }
    let killed = child.kill();
    assert_eq!(killed.code, None, "killed by a signal");
    let before = manifest(&dir).len();
    assert!(before < 3 * n, "it had finished: {before} lines");
    args.push("--resume");
    sim.live(&args).run().status(0);
    let lines = manifest(&dir);
    let mut paths: Vec<String> = lines
        .iter()
        .map(|l| l["path"].as_str().unwrap_or_default().to_owned())
        .collect();
    paths.sort();
    let all = paths.len();
    paths.dedup();
    assert_eq!(all, paths.len(), "a file listed twice: {paths:?}");
    assert_eq!(paths.len(), 3 * n, "{paths:?}");
    sim.mdlr(&["verify", "out"]).run().status(0);
    for name in names_in(&dir) {
        assert!(
            !name.ends_with(".mdlr-part"),
            "a partial file is left: {name}"
        );
    }
}

/// `--report FILE.csv` and `--csv`: RFC 4180 as a real parser reads it, a header row,
/// one row per machine and command, and text from the service or a machine that a
/// spreadsheet would run as a formula neutralised.
#[test]
fn csv_reports_read_back_with_formulas_neutralised() {
    let failing = machine(2, false).with_outcome(Outcome::Failed {
        command: 1,
        errors: vec!["=HYPERLINK(\"http://evil\",\"click\"), then +1".to_owned()],
    });
    let sim = Sim::with(vec![machine(1, false), failing]);
    sim.live(&[
        "run",
        &host(1),
        &host(2),
        "--script",
        "x.ps1",
        "--get",
        r"C:\Temp\a.txt",
        "--comment",
        "=1+1",
        "-o",
        "out",
        "--report",
        "report.csv",
    ])
    .run()
    .status(69);
    let rows = csv_rows(&sim.dir.join("report.csv"));
    assert_eq!(
        rows[0],
        [
            "machine",
            "machine_id",
            "action_id",
            "status",
            "exit_code",
            "file",
            "sha256",
            "error"
        ]
    );
    assert_eq!(rows.len(), 5, "a row per machine and command: {rows:?}");
    let row = |machine: &str, file: &str| {
        rows.iter()
            .find(|r| r[0] == machine && r[5].ends_with(file))
            .unwrap_or_else(|| panic!("no row of {machine} for {file}: {rows:?}"))
            .clone()
    };
    let a = row(&host(1), "a.txt");
    assert_eq!(a[3], "Succeeded");
    assert_eq!(
        a[6],
        sha256_hex(&sim.machine(1).file_content(r"C:\Temp\a.txt"))
    );
    assert_eq!(row(&host(1), "0-x.json")[4], "0");
    let failed = rows
        .iter()
        .find(|r| r[0] == host(2) && r[5].is_empty())
        .unwrap_or_else(|| panic!("no failure row: {rows:?}"));
    assert_eq!(failed[3], "Failed");
    assert_eq!(
        failed[7], "'=HYPERLINK(\"http://evil\",\"click\"), then +1",
        "the formula is neutralised, the text kept"
    );

    // `actions --csv`: the comment came back from the service.
    let out = sim.mdlr(&["actions", "--csv"]).run();
    out.status(0);
    let path = sim.dir.join("actions.csv");
    write(&path, out.stdout.as_bytes());
    let rows = csv_rows(&path);
    assert_eq!(rows[0][..3], ["id", "status", "type"]);
    assert_eq!(rows.len(), 3);
    for r in &rows[1..] {
        assert_eq!(r[6], "'=1+1", "{r:?}");
    }
    let out = sim.mdlr(&["machines", "--csv"]).run();
    out.status(0);
    write(&path, out.stdout.as_bytes());
    let rows = csv_rows(&path);
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[1][1], host(1));
}
