//! `cargo xtask <TASK>`: the project's own tasks, in Rust, with almost no dependencies.

#![forbid(unsafe_code)]

mod bench;
mod bench_batch;
mod bench_inflate;
mod bench_latency;
mod bench_pair;
mod demo;
mod deny;
mod dist;
mod fixtures;
mod flags;
mod fuzz;
mod package;
mod sbom;
mod tools;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

const HELP: &str = "\
Usage: cargo xtask <TASK>

Tasks:
  fixtures [--check]  write tests/fixtures/ from the library's own types;
                      --check only compares, and fails when they are stale
  demo                run the real mdlr binary against a local stand-in for the
                      Defender API and its result host (loopback only, no credentials)
  test [--slow]       run every test of the workspace (what CI runs); installs
                      Azurite into target/tools with npm first if it is missing,
                      tinyproxy, openssl, zsh, fish, man-db, groff, binutils and
                      dpkg with apt-get as root, and builds the release (dist,
                      with cargo-auditable) for the tests of it; --slow then runs
                      the #[ignore]d slow tests too, in release mode
  dist                the release in target/dist/: the static binary (built with
                      cargo-auditable, installed into ~/.cargo/mdlr-tools if
                      missing),
                      its CycloneDX SBOM, a .deb, a tarball, the man page and
                      SHA256SUMS; checks that the binary is static, at most
                      3.5 MiB, and that `mdlr --version` runs with an empty
                      environment
  deny [--advisories] the supply-chain checks of deny.toml on the binary's crates
                      (licences, duplicate versions, sources) with cargo-deny,
                      installed into ~/.cargo/mdlr-tools if missing; --advisories
                      adds
                      RustSec's (needs GitHub)
  bench-batch [--sizes 10,100,1000] [--scale F[,F...]] [--no-write] [--mdlr PATH]
                      run the release mdlr binary on N simulated machines and set its
                      makespan against the quota bound; writes BENCHMARKS.md (not with
                      --mdlr, which benchmarks another build; default scale: per N)
  bench-batch --pair [--rounds N] [--scale F] [--no-write] [--mdlr PATH]
                      two release mdlr processes started together, 8 simulated
                      machines each, one app and tenant: with the quotas shared and
                      with --no-shared-quotas, over N interleaved rounds (default 5),
                      makespan against the joint bound and 429s; writes BENCHMARKS.md
  bench-latency [--rounds N] [--no-write] [--mdlr PATH]
                      how soon the release mdlr binary delivers results once their
                      actions end (1, 10, 25, 200 simulated machines), a 2-second
                      action in real time and 12 machines against the quota bound,
                      over N interleaved rounds (default 8); writes BENCHMARKS.md
  bench [--quick] [--rounds N] [--no-write] [--mdlr PATH] [--baseline PATH]
        [--connections N] [--only md5,getfile,capped,sizes,small,startup]
                      the dist binary's `mdlr fetch` against curl, curl | gzip -dc and
                      aria2c on loopback, in interleaved rounds judged at mdlr's upper
                      quartile, on the disk and on tmpfs: raw 512 MiB with Content-MD5,
                      un-gzipped GetFile, a link capped per connection (--connections
                      when the binary has it; installs aria2 as root), memory from
                      64 MiB to 1 GiB, start-up, size; writes BENCHMARKS.md (not with
                      --quick, --mdlr, another build, --baseline, a second build run
                      beside it for before/after figures, --connections, mdlr's
                      connections in every download row, or --only)
  bench-inflate [--rounds N] [--no-write]
                      flate2's zlib-rs backend against miniz_oxide: inflate speed of a
                      256 MiB GetFile-like payload (a probe built twice under target/)
                      and the size of the dist binary built from a copy of the tree
                      with zlib-rs; says whether it passes issue 11's rule (≥ 1.5×,
                      ≤ 3.5 MiB) and writes BENCHMARKS.md; changes nothing else
  fuzz [--seconds N] [--target NAME]... [--no-write]
                      run every cargo-fuzz target of fuzz/ for N seconds (default
                      60), installing cargo-fuzz if missing; prints executions and
                      findings per target and writes them to BENCHMARKS.md
  help                show this
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        [] | ["help" | "--help" | "-h"] => {
            print!("{HELP}");
            Ok(())
        }
        ["fixtures"] => write_fixtures(&root()),
        ["fixtures", "--check"] => check_fixtures(&root()),
        ["demo"] => demo::run(&root()),
        ["test"] => test(&root(), false),
        ["test", "--slow"] => test(&root(), true),
        ["dist", rest @ ..] => dist::run(&root(), rest),
        ["deny", rest @ ..] => deny::run(&root(), rest),
        ["bench", rest @ ..] => bench::run(&root(), rest),
        ["bench-batch", rest @ ..] => bench_batch::run(&root(), rest),
        ["bench-inflate", rest @ ..] => bench_inflate::run(&root(), rest),
        ["bench-latency", rest @ ..] => bench_latency::run(&root(), rest),
        ["fuzz", rest @ ..] => fuzz::run(&root(), rest),
        _ => {
            eprint!(
                "xtask: unknown task or option: {}\n\n{HELP}",
                args.join(" ")
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root.
fn root() -> PathBuf {
    let xtask = Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask.parent().unwrap_or(xtask).to_path_buf()
}

fn fixtures_dir(root: &Path) -> PathBuf {
    root.join("tests").join("fixtures")
}

/// How the files on disk differ from the generated ones.
#[derive(Default)]
struct Drift {
    /// Generated files that differ from the files on disk.
    stale: Vec<&'static str>,
    /// Generated files not on disk.
    missing: Vec<&'static str>,
    /// Files on disk that the generator does not make.
    extra: Vec<String>,
}

impl Drift {
    fn is_empty(&self) -> bool {
        self.stale.is_empty() && self.missing.is_empty() && self.extra.is_empty()
    }
}

fn drift(dir: &Path) -> Result<Drift, String> {
    let all = fixtures::all();
    let mut drift = Drift::default();
    for (name, bytes) in &all {
        match std::fs::read(dir.join(name)) {
            Ok(on_disk) if on_disk == *bytes => {}
            Ok(_) => drift.stale.push(name),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => drift.missing.push(name),
            Err(e) => return Err(format!("cannot read {}: {e}", dir.join(name).display())),
        }
    }
    for name in files_under(dir)? {
        if !all.iter().any(|(n, _)| *n == name) {
            drift.extra.push(name);
        }
    }
    Ok(drift)
}

/// Every file under `dir`, as `/`-separated paths relative to it.
fn files_under(dir: &Path) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut pending = vec![(dir.to_path_buf(), String::new())];
    while let Some((path, prefix)) = pending.pop() {
        let entries = match std::fs::read_dir(&path) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && prefix.is_empty() => continue,
            Err(e) => return Err(format!("cannot list {}: {e}", path.display())),
        };
        for entry in entries {
            let entry = entry.map_err(|e| format!("cannot list {}: {e}", path.display()))?;
            let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
            let kind = entry
                .file_type()
                .map_err(|e| format!("cannot stat {}: {e}", entry.path().display()))?;
            if kind.is_dir() {
                pending.push((entry.path(), format!("{name}/")));
            } else {
                out.push(name);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn write_fixtures(root: &Path) -> Result<(), String> {
    let dir = fixtures_dir(root);
    let before = drift(&dir)?;
    for (name, bytes) in fixtures::all() {
        if !before.stale.contains(&name) && !before.missing.contains(&name) {
            continue;
        }
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        std::fs::write(&path, bytes)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        println!("wrote   tests/fixtures/{name}");
    }
    if before.is_empty() {
        println!("tests/fixtures is up to date");
    }
    // Never delete: a file there may be somebody's work in progress.
    if !before.extra.is_empty() {
        return Err(format!(
            "tests/fixtures holds files the generator does not make; generate them in \
             xtask/src/fixtures.rs or delete them:\n  {}",
            before.extra.join("\n  ")
        ));
    }
    Ok(())
}

fn check_fixtures(root: &Path) -> Result<(), String> {
    let drift = drift(&fixtures_dir(root))?;
    if drift.is_empty() {
        println!("tests/fixtures is up to date");
        return Ok(());
    }
    let mut lines = Vec::new();
    lines.extend(drift.missing.iter().map(|n| format!("missing:    {n}")));
    lines.extend(drift.stale.iter().map(|n| format!("stale:      {n}")));
    lines.extend(drift.extra.iter().map(|n| format!("unexpected: {n}")));
    Err(format!(
        "tests/fixtures is stale; run `cargo xtask fixtures`:\n  {}",
        lines.join("\n  ")
    ))
}

/// A command running the cargo that runs us, in `root`, without the variables cargo set
/// for this package only. (Build scripts such as ring's watch `CARGO_MANIFEST_DIR`:
/// passing ours on would rebuild them here and again in the next plain build.)
fn cargo(root: &Path) -> std::process::Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = std::process::Command::new(cargo);
    command.current_dir(root);
    for (name, _) in std::env::vars_os() {
        let n = name.to_string_lossy();
        let per_package = n.starts_with("CARGO_PKG_")
            || n.starts_with("CARGO_MANIFEST_")
            || matches!(
                &*n,
                "CARGO_CRATE_NAME" | "CARGO_BIN_NAME" | "CARGO_PRIMARY_PACKAGE"
            );
        if per_package {
            command.env_remove(&name);
        }
    }
    command
}

/// Runs the workspace's tests with the cargo that runs us, with Azurite (the blob
/// storage emulator the transfer tests need) installed and named by `MDLR_AZURITE`,
/// the Debian packages of [`system_tools`] installed, and the release
/// (`tests/tests/dist.rs`, `tests/tests/release.rs`) built and its binary named by
/// `MDLR_DIST_BINARY`.
///
/// With `slow`, then the tests `#[ignore]`d for their time (500 and 1000 simulated
/// machines, 1 GiB through faults, the release built twice), and only those, in
/// release mode: the 1 GiB transfer needs it (BENCHMARKS.md).
fn test(root: &Path, slow: bool) -> Result<(), String> {
    system_tools()?;
    let azurite = azurite(root)?;
    let dist = dist::build(root, false)?;
    println!("{}", dist::describe(root, &dist));
    let mut runs = vec![vec!["test", "--workspace"]];
    if slow {
        runs.push(vec!["test", "--workspace", "--release", "--", "--ignored"]);
    }
    // The slow tests run even when a fast one failed: their figures are worth having.
    let mut failed = Vec::new();
    for args in runs {
        println!("xtask: cargo {}", args.join(" "));
        let status = cargo(root)
            .args(&args)
            .env("MDLR_AZURITE", &azurite)
            .env("MDLR_DIST_BINARY", &dist.binary)
            .status()
            .map_err(|e| format!("cannot run cargo: {e}"))?;
        if !status.success() {
            failed.push(format!("cargo {} failed ({status})", args.join(" ")));
        }
    }
    match failed.is_empty() {
        true => Ok(()),
        false => Err(failed.join("; ")),
    }
}

/// The Debian packages the tests run: tinyproxy (a real proxy), openssl (it makes
/// the test CA and certificates), zsh and fish (the completion tests run real shells),
/// and for the release and its tests man-db and groff (the man page), binutils (objcopy
/// reads the binary's dependency list) and dpkg (the .deb).
/// Missing ones are installed with apt-get when we are root; otherwise we say how, and
/// the tests that need them fail with the same hint.
fn system_tools() -> Result<(), String> {
    let on_path = |name: &str| {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
            .any(|dir| dir.join(name).is_file())
    };
    let tinyproxy_set = std::env::var_os("MDLR_TINYPROXY").is_some_and(|p| Path::new(&p).is_file());
    let mut missing = Vec::new();
    if !tinyproxy_set && !on_path("tinyproxy") {
        missing.push("tinyproxy");
    }
    // (command, the Debian package that has it)
    for (tool, package) in [
        ("openssl", "openssl"),
        ("zsh", "zsh"),
        ("fish", "fish"),
        ("man", "man-db"),
        ("groff", "groff-base"),
        ("objcopy", "binutils"),
        ("dpkg-deb", "dpkg"),
    ] {
        if !on_path(tool) {
            missing.push(package);
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let command = format!(
        "apt-get install -y --no-install-recommends {}",
        missing.join(" ")
    );
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.status.success() && out.stdout.trim_ascii() == b"0");
    if !root {
        println!(
            "xtask: {} not installed: the tests that use them will fail; run `sudo \
             {command}` (or this task as root)",
            missing.join(" and ")
        );
        return Ok(());
    }
    println!("xtask: installing what the tests need: {command}");
    let install = || {
        std::process::Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .map_err(|e| format!("cannot run apt-get: {e}"))
    };
    if install()?.success() {
        return Ok(());
    }
    // Probably no package lists yet (a fresh container): fetch them once.
    println!("xtask: apt-get update");
    let updated = std::process::Command::new("apt-get")
        .arg("update")
        .status()
        .map_err(|e| format!("cannot run apt-get: {e}"))?;
    match updated.success() && install()?.success() {
        true => Ok(()),
        false => Err(format!("apt-get could not install {}", missing.join(" "))),
    }
}

/// The `azurite-blob` executable, found where the tests look (`$MDLR_AZURITE`,
/// `target/tools`, `PATH`) or installed into `target/tools` with npm.
fn azurite(root: &Path) -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("MDLR_AZURITE").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        return match path.is_file() {
            true => Ok(path),
            false => Err(format!("MDLR_AZURITE={} is not a file", path.display())),
        };
    }
    let tools = root.join("target").join("tools");
    let bin = tools.join("node_modules").join(".bin").join("azurite-blob");
    let on_path = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|dir| dir.join("azurite-blob"))
            .find(|p| p.is_file())
    });
    if let Some(found) = Some(bin.clone()).filter(|b| b.is_file()).or(on_path) {
        return Ok(found);
    }
    let args = ["install", "--no-audit", "--no-fund", "--prefix"];
    println!(
        "xtask: installing Azurite for the transfer tests: npm {} {} azurite@3",
        args.join(" "),
        tools.display()
    );
    let status = std::process::Command::new("npm")
        .args(args)
        .arg(&tools)
        .arg("azurite@3")
        .status()
        .map_err(|e| {
            format!(
                "cannot run npm ({e}): the transfer tests need Azurite; install Node.js and \
                 npm, or set MDLR_AZURITE to an azurite-blob executable"
            )
        })?;
    if !status.success() || !bin.is_file() {
        return Err(format!("npm could not install Azurite ({status})"));
    }
    Ok(bin)
}

/// The head of a new BENCHMARKS.md.
const INTRO: &str = "# Benchmarks\n\nFigures measured by commands in this repo; re-run \
                     the command given with each section to refresh it.\n";

/// Puts `section` between the `start` and `end` markers in `path` (BENCHMARKS.md), or
/// appends it; creates the file. Other sections stay as they are.
fn write_section(path: &Path, start: &str, end: &str, section: &str) -> Result<(), String> {
    let old = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => INTRO.to_owned(),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let new = match (old.find(start), old.find(end)) {
        (Some(a), Some(b)) if a < b => {
            let mut stop = b + end.len();
            if old[stop..].starts_with('\n') {
                stop += 1;
            }
            format!("{}{section}{}", &old[..a], &old[stop..])
        }
        (None, None) => format!("{}\n\n{section}", old.trim_end()),
        _ => {
            return Err(format!(
                "{} has a broken {start} ... {end} pair; fix it by hand",
                path.display()
            ));
        }
    };
    std::fs::write(path, new).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Builds `mdlr` (in release mode when asked) and returns its path, as cargo reports it.
fn build_mdlr(root: &Path, release: bool) -> Result<PathBuf, String> {
    let mut args = vec!["build", "--quiet"];
    if release {
        args.push("--release");
    }
    args.extend([
        "--package",
        "mdlr-cli",
        "--bin",
        "mdlr",
        "--message-format=json-render-diagnostics",
    ]);
    let output = cargo(root)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !output.status.success() {
        return Err(format!("cargo build failed ({})", output.status));
    }
    let mut found = None;
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if message["reason"] == "compiler-artifact"
            && message["target"]["name"] == "mdlr"
            && let Some(exe) = message["executable"].as_str()
        {
            found = Some(PathBuf::from(exe));
        }
    }
    found.ok_or_else(|| "cargo build did not name the mdlr executable".to_owned())
}

/// A thread reading a child's pipe to the end.
type Reading = std::thread::JoinHandle<std::io::Result<Vec<u8>>>;

/// Reads `pipe` to the end in a thread, so that a child never blocks on a full pipe.
fn read_in_background(pipe: Option<impl std::io::Read + Send + 'static>) -> Option<Reading> {
    pipe.map(|mut pipe| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            pipe.read_to_end(&mut bytes).map(|_| bytes)
        })
    })
}

/// What the thread read.
fn collect(reading: Option<Reading>) -> Result<Vec<u8>, String> {
    match reading {
        None => Ok(Vec::new()),
        Some(handle) => handle
            .join()
            .map_err(|_| "the thread reading mdlr's output panicked".to_owned())?
            .map_err(|e| format!("cannot read mdlr's output: {e}")),
    }
}

/// A fresh directory under the system's temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Result<TempDir, String> {
        let path = std::env::temp_dir().join(name);
        if path.exists() {
            std::fs::remove_dir_all(&path)
                .map_err(|e| format!("cannot clear {}: {e}", path.display()))?;
        }
        std::fs::create_dir_all(&path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        Ok(TempDir(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The CPU's model name, for the machine line of BENCHMARKS.md.
fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned())
}

/// The first line a command prints (trimmed), when it runs and succeeds; `Some("")`
/// when it succeeds silently.
pub fn first_line(command: &mut std::process::Command) -> Option<String> {
    let output = command
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    Some(
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_owned(),
    )
}

/// The commit a measurement was made at: `abc1234`, `abc1234 with uncommitted changes`
/// or `unknown commit`.
pub fn commit_description(root: &Path) -> String {
    let head = first_line(
        std::process::Command::new("git")
            .args(["rev-parse", "--short", "HEAD"])
            .current_dir(root),
    )
    .filter(|h| !h.is_empty());
    let dirty = first_line(
        std::process::Command::new("git")
            .args(["status", "--porcelain", "--untracked-files=no"])
            .current_dir(root),
    )
    .is_some_and(|l| !l.is_empty());
    match head {
        Some(h) if dirty => format!("{h} with uncommitted changes"),
        Some(h) => h,
        None => "unknown commit".to_owned(),
    }
}

/// `YYYY-MM-DD` (UTC) of `t`.
pub fn utc_date(t: std::time::SystemTime) -> String {
    let days = t
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400);
    let (y, m, d) = mdlr_tests::util::civil_from_days(days as i64);
    format!("{y:04}-{m:02}-{d:02}")
}
