//! The examples of the `mdlr` crate (`crates/mdlr/examples/`), run as their binaries
//! against the live response simulator (`mdlr_tests::sim`): each gets a real action to
//! work on, its stdout, stderr and exit status are checked, and so is a failure.
//!
//! `cargo test --workspace` builds the examples into `target/<profile>/examples/` (to
//! check that they compile) but `cargo test -p mdlr-tests` does not, so [`examples_dir`]
//! builds them with the same cargo, target directory and profile first (a no-op when
//! they are up to date), as `e2e/util.rs` builds the `mdlr` binary.
//!
//! The batch example uses the library's default poll policy (the first look 1 s after
//! a start, then every second), so its run takes a second or two whatever the
//! simulator's time scale.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mdlr::{ActionStatus, Client, Credential, Endpoints, LiveResponse, MachineAction, PollPolicy};
use mdlr_tests::sim::{LibraryFile, Outcome, SimConfig, SimMachine, Simulator};
use mdlr_tests::util::names_in;

/// Real seconds per service second: an action (10 s pending, 20 s per command) takes a
/// few tenths of a second.
const SCALE: f64 = 0.01;
/// Longest an example may run before the test kills it.
const EXAMPLE_TIMEOUT: Duration = Duration::from_secs(120);
/// The most lines of code an example may have (comments and blank lines not counted).
const MAX_LINES: usize = 25;
/// The examples.
const EXAMPLES: [&str; 3] = ["transcript", "download", "batch"];
/// An action id the simulator has never handed out.
const UNKNOWN_ACTION: &str = "0b5e1c3a-9d4f-4e2b-8a7c-6f1d2e3b4c5d";

// ---------------------------------------------------------------------------------------
// Building and running the examples

/// `target/<profile>/examples`, once `cargo build -p mdlr --examples` has run with the
/// cargo, target directory and profile this test executable was built with
/// (`target/<profile>/deps/examples-HASH`).
fn examples_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let profile_dir = mdlr_tests::build_beside_this_test(&["--package", "mdlr", "--examples"]);
        let dir = profile_dir.join("examples");
        for name in EXAMPLES {
            let bin = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
            assert!(bin.is_file(), "example {} was not built", bin.display());
        }
        dir
    })
}

/// How an example's run ended.
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

impl Ran {
    /// Checks the exit code, showing both outputs when it is wrong.
    #[track_caller]
    fn code(&self, what: &str, code: i32) -> &Ran {
        assert_eq!(
            self.code,
            Some(code),
            "{what}: wrong exit status\n--- stdout\n{}--- stderr\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    /// Checks a failure: a non-zero exit, nothing on stdout, and one `error:` line on
    /// stderr that contains every one of `needles`.
    #[track_caller]
    fn failed(&self, what: &str, needles: &[&str]) {
        assert!(
            self.code.is_some_and(|c| c != 0),
            "{what}: should exit non-zero, exited {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code,
            self.stdout,
            self.stderr
        );
        assert_eq!(self.stdout, "", "{what}: should print nothing on stdout");
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert!(
            lines.len() == 1 && lines[0].starts_with("error: "),
            "{what}: stderr should be one `error: ...` line (the error's Display, not its \
             Debug), not:\n{}",
            self.stderr
        );
        for needle in needles {
            assert!(
                self.stderr.contains(needle),
                "{what}: the error should mention {needle:?}: {}",
                self.stderr
            );
        }
    }
}

/// Runs example `name` with `args`, pointed at `sim` through `MDLR_API_URL` and
/// `MDLR_TOKEN` and no other variable but `PATH`; kills it after [`EXAMPLE_TIMEOUT`].
#[track_caller]
fn example(sim: &Simulator, name: &str, args: &[&str]) -> Ran {
    let bin = examples_dir().join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    let mut command = Command::new(&bin);
    command
        .args(args)
        .env_clear()
        .env("MDLR_API_URL", sim.api_url())
        .env("MDLR_TOKEN", sim.token())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    let started = Instant::now();
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
    let reader = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = reader(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = reader(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the example") {
            break status;
        }
        if started.elapsed() > EXAMPLE_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("example {name} {args:?} still ran after {EXAMPLE_TIMEOUT:?}: killed");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ran {
        code: status.code(),
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
        elapsed: started.elapsed(),
    }
}

// ---------------------------------------------------------------------------------------
// The simulator

/// A simulator of `machines` at [`SCALE`] with a library of `x.ps1` and `collect.ps1`.
fn simulator(machines: Vec<SimMachine>) -> Simulator {
    // Build first: the service clock runs from the start.
    examples_dir();
    Simulator::start(SimConfig {
        time_scale: SCALE,
        machines,
        library: vec![
            LibraryFile::new("x.ps1", b"Write-Output x\r\n"),
            LibraryFile::new("collect.ps1", b"Get-ChildItem C:\\evidence\r\n"),
        ],
        ..SimConfig::default()
    })
    .expect("the simulator starts")
}

/// A client of `sim`, as the examples build theirs.
fn client(sim: &Simulator) -> Client {
    Client::builder(Credential::token(sim.token()))
        .endpoints(Endpoints::default().with_api_base(&sim.api_url()))
        .build()
        .expect("a client for the simulator")
}

/// Starts `request` on `machine_id`, waits for the action to succeed and returns its id.
#[track_caller]
fn finished_action(sim: &Simulator, machine_id: &str, request: &LiveResponse) -> String {
    let client = client(sim);
    let started = client
        .start_live_response(machine_id, request)
        .unwrap_or_else(|e| panic!("starting a live response on {machine_id} failed: {e}"));
    let id = started.id.expect("the started action has an id");
    let poll = PollPolicy::new(Duration::from_millis(20), Duration::from_millis(100));
    let action = client
        .wait_for(
            &id,
            Duration::from_secs(60),
            poll,
            MachineAction::is_finished,
        )
        .unwrap_or_else(|e| panic!("waiting for action {id} failed: {e}"));
    assert_eq!(
        action.status,
        Some(ActionStatus::Succeeded),
        "action {id} should have succeeded: {action:?}"
    );
    id
}

/// A temporary directory under cargo's per-target temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("examples-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create a temporary directory");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------------------
// The tests

#[test]
fn transcript_prints_output_and_errors_and_exits_with_the_script_code() {
    let mut failing = SimMachine::new(1);
    failing.script_exit_code = 3;
    failing.script_errors = "a warning\nanother one\n".to_owned();
    let sim = simulator(vec![failing, SimMachine::new(2)]);
    let machines = sim.machines();
    let request = LiveResponse::new("examples test").run_script("x.ps1", "-Days 3");
    let code_3 = finished_action(&sim, &machines[0].id, &request);
    let code_0 = finished_action(&sim, &machines[1].id, &request);

    let ran = example(&sim, "transcript", &[&code_3, "0"]);
    ran.code("transcript of a script exiting 3", 3);
    assert_eq!(
        ran.stdout, "host0001.contoso.test: x.ps1 -Days 3\n",
        "transcript: stdout should be the script's output, exactly"
    );
    assert_eq!(
        ran.stderr, "a warning\nanother one\n",
        "transcript: stderr should be the script's errors, exactly"
    );

    let ran = example(&sim, "transcript", &[&code_0, "0"]);
    ran.code("transcript of a script exiting 0", 0);
    assert_eq!(
        ran.stdout, "host0002.contoso.test: x.ps1 -Days 3\n",
        "transcript: stdout should be the second machine's output"
    );
    assert_eq!(ran.stderr, "", "transcript: the script wrote no errors");

    example(&sim, "transcript", &[UNKNOWN_ACTION, "0"])
        .failed("transcript of an unknown action", &["404", UNKNOWN_ACTION]);
    example(&sim, "transcript", &[&code_0, "7"]).failed(
        "transcript of a command the action lacks",
        &["404", "no command 7"],
    );
    example(&sim, "transcript", &[&code_0, "first"])
        .failed("transcript with an index that is not a number", &["first"]);
    example(&sim, "transcript", &[]).failed("transcript without arguments", &["usage"]);
}

#[test]
fn download_saves_the_file_under_its_own_name() {
    let collected: Vec<u8> = [
        &b"report of host0001\r\n"[..],
        &mdlr_tests::util::noise(7, 200_000),
    ]
    .concat();
    let mut machine = SimMachine::new(1);
    machine.files = vec![("C:\\evidence\\report.bin".to_owned(), collected.clone())];
    let sim = simulator(vec![machine]);
    let request = LiveResponse::new("examples test")
        .run_script("collect.ps1", "")
        .get_file("C:\\evidence\\report.bin");
    let action = finished_action(&sim, &sim.machines()[0].id, &request);
    let dir = TempDir::new();
    let dir_arg = dir.0.to_str().expect("a UTF-8 temporary path");

    // Command 1 is the GetFile: un-gzipped, without the host's `.gz`.
    let ran = example(&sim, "download", &[&action, "1", dir_arg]);
    ran.code("download of a GetFile result", 0);
    let saved = dir.0.join("report.bin");
    assert_eq!(
        ran.stdout,
        format!("{}\n", saved.display()),
        "download: stdout should be the saved path\n--- stderr\n{}",
        ran.stderr
    );
    assert_eq!(ran.stderr, "", "download: nothing on stderr when it works");
    assert_eq!(
        names_in(&dir.0),
        ["report.bin"],
        "download: the directory should hold the file alone, under its original name"
    );
    let bytes = std::fs::read(&saved).expect("read the downloaded file");
    assert!(
        bytes == collected,
        "download: the file should hold the collected bytes, un-gzipped ({} bytes, \
         expected {})",
        bytes.len(),
        collected.len()
    );

    // A second run never replaces the file.
    example(&sim, "download", &[&action, "1", dir_arg])
        .failed("download over an existing file", &["report.bin", "exists"]);
    assert!(
        std::fs::read(&saved).expect("read the downloaded file again") == collected,
        "download: a refused second run must leave the file as it was"
    );

    example(&sim, "download", &[UNKNOWN_ACTION, "1", dir_arg])
        .failed("download of an unknown action", &["404", UNKNOWN_ACTION]);
    assert_eq!(
        names_in(&dir.0),
        ["report.bin"],
        "download: failed runs should leave nothing behind"
    );
}

#[test]
fn batch_prints_one_sorted_line_per_machine() {
    let machines = vec![
        SimMachine::new(1),
        SimMachine::new(2),
        SimMachine::new(3).with_outcome(Outcome::failed(0)),
        SimMachine::new(4),
    ];
    let sim = simulator(machines.clone());
    let by_id = machines[0].id.clone();
    // Not in sorted order; a name in capitals resolves as well.
    let ran = example(
        &sim,
        "batch",
        &[
            "collect.ps1",
            "host0003.contoso.test",
            &by_id,
            "HOST0002.contoso.test",
        ],
    );
    ran.code("batch on three machines", 0);
    let expected = format!(
        "{by_id}: ended (Succeeded)\n\
         host0002.contoso.test: ended (Succeeded)\n\
         host0003.contoso.test: ended (Failed)\n"
    );
    assert_eq!(
        ran.stdout, expected,
        "batch: one `NAME: OUTCOME` line per machine, sorted by name (an id as given, a \
         DNS name as resolved, in lower case)\n--- stderr\n{}",
        ran.stderr
    );
    assert_eq!(ran.stderr, "", "batch: nothing on stderr when it works");
    let stats = sim.stats();
    let started: Vec<&String> = stats.starts_per_machine.keys().collect();
    let mut wanted = vec![&machines[0].id, &machines[1].id, &machines[2].id];
    wanted.sort();
    assert_eq!(
        started, wanted,
        "batch: one action each on machines 1 to 3, none on machine 4"
    );
    assert_eq!(
        stats.max_starts_per_machine(),
        1,
        "batch: one start per machine"
    );
    for a in sim.actions() {
        assert_eq!(
            a["requestorComment"], "mdlr batch example",
            "batch: the action's comment"
        );
    }
    eprintln!("the batch example ran {:?}", ran.elapsed);

    // An unknown name fails the run before anything starts.
    example(
        &sim,
        "batch",
        &[
            "collect.ps1",
            "host0004.contoso.test",
            "nosuch.contoso.test",
        ],
    )
    .failed(
        "batch with an unknown machine",
        &["no machine is named nosuch.contoso.test"],
    );
    assert_eq!(
        sim.stats().starts,
        3,
        "batch: nothing may start when a name is unknown"
    );
    example(&sim, "batch", &["collect.ps1"]).failed("batch without machines", &["usage"]);
}

#[test]
fn examples_are_short() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/mdlr/examples");
    for name in EXAMPLES {
        let path = dir.join(format!("{name}.rs"));
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        assert!(
            text.starts_with("//!"),
            "{}: an example starts with a `//!` comment saying what it shows and how to \
             run it",
            path.display()
        );
        let code = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("//"))
            .count();
        assert!(
            code <= MAX_LINES,
            "{}: {code} lines of code, more than {MAX_LINES} (comments and blank lines not \
             counted)",
            path.display()
        );
    }
}
