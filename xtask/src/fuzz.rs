//! `cargo xtask fuzz`: every cargo-fuzz target of `fuzz/` for N seconds each, seeded
//! from `tests/fixtures/` and `fuzz/seeds/`, with the executions, coverage and findings
//! of each.
//!
//! The targets run on the stable toolchain: with `--sanitizer none` cargo-fuzz passes
//! rustc no `-Z` flag (the parsers under test are safe Rust, so a sanitizer has little
//! to add). `--debug-assertions` turns arithmetic overflow into a finding, as it is in
//! the debug builds the tests run. libFuzzer runs in fork mode with crashes ignored, so
//! a target that finds a bug keeps fuzzing for its whole time; every crashing input is
//! kept in `fuzz/artifacts/TARGET/`. The figures go to stdout and, unless `--no-write`
//! or `--target`, to `BENCHMARKS.md` between this task's markers.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

const START_MARK: &str = "<!-- fuzz:start -->";
const END_MARK: &str = "<!-- fuzz:end -->";

const USAGE: &str = "usage: cargo xtask fuzz [--seconds N] [--target NAME]... [--no-write]";

/// The targets, what each fuzzes, and where its seeds come from.
const TARGETS: &[(&str, &str)] = &[
    (
        "transcript",
        "`Transcript::parse`; a parsed transcript survives a round trip through its JSON",
    ),
    (
        "machine_action",
        "`MachineAction` decoding and `result_type`; round trip through its JSON",
    ),
    (
        "api_reply",
        "the client against a loopback server sending the input as a reply (JSON bodies, \
         lists, the API error decoder); a non-2xx reply is an API error with its status",
    ),
    (
        "disposition",
        "`disposition_file_name` + `safe_file_name`: one plain, visible name, no \
         separator, control character or `..`, at most 200 bytes",
    ),
    (
        "url",
        "`check_url` against `http::Uri` (plain http only to loopback), `redact_url` \
         (no `sig` value survives)",
    ),
    (
        "link_expiry",
        "`ResultLink::expires` / `expires_at` on the service's `se=`",
    ),
];

struct Options {
    seconds: u64,
    targets: Vec<String>,
    write: bool,
}

fn parse(args: &[&str]) -> Result<Options, String> {
    let mut options = Options {
        seconds: 60,
        targets: Vec::new(),
        write: true,
    };
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match *arg {
            "--seconds" => {
                options.seconds = rest
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|&s| s > 0)
                    .ok_or_else(|| format!("--seconds takes a whole number above 0\n{USAGE}"))?;
            }
            "--target" => {
                let name = rest
                    .next()
                    .ok_or_else(|| format!("--target takes a name\n{USAGE}"))?;
                if !TARGETS.iter().any(|(t, _)| t == name) {
                    let known: Vec<&str> = TARGETS.iter().map(|(t, _)| *t).collect();
                    return Err(format!(
                        "no target {name:?}; there are {}",
                        known.join(", ")
                    ));
                }
                options.targets.push((*name).to_owned());
            }
            "--no-write" => options.write = false,
            other => return Err(format!("unknown option {other:?}\n{USAGE}")),
        }
    }
    Ok(options)
}

/// What one target's run found.
struct Figures {
    target: &'static str,
    executions: u64,
    coverage: u64,
    features: u64,
    corpus: u64,
    crashes: usize,
    /// Where the panics were (`file:line`), each once.
    panic_sites: Vec<String>,
    seconds: f64,
}

pub fn run(root: &Path, args: &[&str]) -> Result<(), String> {
    let options = parse(args)?;
    let fuzz = root.join("fuzz");
    crate::tools::ensure(root, &crate::tools::CARGO_FUZZ)?;
    println!("building the fuzz targets (release, debug assertions, no sanitizer)");
    let status = cargo_fuzz(&fuzz)
        .args(["build", "--sanitizer", "none", "--debug-assertions"])
        .status()
        .map_err(|e| format!("cannot run cargo fuzz: {e}"))?;
    if !status.success() {
        return Err(format!("cargo fuzz build failed ({status})"));
    }
    let chosen: Vec<&'static str> = TARGETS
        .iter()
        .map(|(t, _)| *t)
        .filter(|t| options.targets.is_empty() || options.targets.iter().any(|c| c == t))
        .collect();
    let mut all = Vec::new();
    for target in chosen {
        let seeds = seed_corpus(root, target)?;
        println!("fuzzing {target} for {} s", options.seconds);
        let figures = fuzz_target(&fuzz, target, &seeds, options.seconds)?;
        println!(
            "  {} executions, cov {}, ft {}, corpus {}, crashes {}{}",
            figures.executions,
            figures.coverage,
            figures.features,
            figures.corpus,
            figures.crashes,
            if figures.panic_sites.is_empty() {
                String::new()
            } else {
                format!(" (at {})", figures.panic_sites.join(", "))
            }
        );
        all.push(figures);
    }
    let table = table(&all);
    println!();
    print!("{table}");
    let machine = machine_line(root);
    println!("\n{machine}");
    if options.write && options.targets.is_empty() {
        let command = format!("cargo xtask fuzz --seconds {}", options.seconds);
        crate::write_section(
            &root.join("BENCHMARKS.md"),
            START_MARK,
            END_MARK,
            &section(&command, &table, &machine),
        )?;
        println!("wrote   BENCHMARKS.md (section \"Fuzzing\")");
    }
    let crashed: Vec<String> = all
        .iter()
        .filter(|f| f.crashes > 0)
        .map(|f| {
            format!(
                "{} ({} crashing inputs in fuzz/artifacts/{}/)",
                f.target, f.crashes, f.target
            )
        })
        .collect();
    if crashed.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "findings: {}; replay one with `cargo fuzz run --sanitizer none -a TARGET FILE` \
             in fuzz/, shrink it with `cargo fuzz tmin`",
            crashed.join(", ")
        ))
    }
}

/// A `cargo` command in `fuzz/` (its own Cargo project, outside the workspace), which
/// finds cargo-fuzz where `tools` installs it too.
fn cargo_fuzz(fuzz: &Path) -> Command {
    let root = fuzz.parent().unwrap_or(fuzz);
    let mut command = crate::tools::cargo(root, &crate::tools::CARGO_FUZZ);
    command.current_dir(fuzz).arg("fuzz");
    command
}

/// The read-only seed directories of `target`: `fuzz/seeds/TARGET` if there is one, and
/// `fuzz/corpus/seeds/TARGET`, written here from `tests/fixtures/`.
fn seed_corpus(root: &Path, target: &str) -> Result<Vec<PathBuf>, String> {
    let fixtures = root.join("tests").join("fixtures");
    let read_dir = |dir: &str| -> Result<Vec<(String, Vec<u8>)>, String> {
        let mut files = Vec::new();
        let path = fixtures.join(dir);
        for entry in
            std::fs::read_dir(&path).map_err(|e| format!("cannot list {}: {e}", path.display()))?
        {
            let entry = entry.map_err(|e| format!("cannot list {}: {e}", path.display()))?;
            let bytes = std::fs::read(entry.path())
                .map_err(|e| format!("cannot read {}: {e}", entry.path().display()))?;
            files.push((entry.file_name().to_string_lossy().into_owned(), bytes));
        }
        files.sort();
        Ok(files)
    };
    // The links' SAS URLs, on a real-looking result host.
    let links = || -> Result<Vec<(String, String)>, String> {
        Ok(read_dir("links")?
            .into_iter()
            .filter_map(|(name, bytes)| {
                let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
                let url = value["value"]
                    .as_str()?
                    .replace("{{BLOB}}", "https://h.blob.core.windows.net");
                Some((name, url))
            })
            .collect())
    };
    let seeds: Vec<(String, Vec<u8>)> = match target {
        "transcript" => read_dir("transcripts")?,
        "machine_action" => read_dir("actions")?,
        "api_reply" => {
            // Byte 0 picks the status (the index in the target's table), byte 1 the call.
            const STATUSES: [u16; 14] = [
                200, 201, 204, 301, 302, 400, 401, 403, 404, 409, 429, 500, 502, 503,
            ];
            let with = |status: u16, call: u8, body: &[u8]| {
                let i = STATUSES.iter().position(|s| *s == status).unwrap_or(0) as u8;
                [&[i, call][..], body].concat()
            };
            let mut seeds = Vec::new();
            for (name, body) in read_dir("actions")? {
                seeds.push((format!("action-{name}"), with(200, 0, &body)));
                let list = format!("{{\"value\":[{}]}}", String::from_utf8_lossy(&body));
                seeds.push((format!("list-{name}"), with(200, 2, list.as_bytes())));
            }
            for (name, body) in read_dir("links")? {
                seeds.push((format!("link-{name}"), with(200, 1, &body)));
            }
            for (name, body) in read_dir("errors")? {
                let status = name.get(..3).and_then(|s| s.parse().ok()).unwrap_or(400);
                for call in 0..6 {
                    seeds.push((format!("{call}-{name}"), with(status, call, &body)));
                }
            }
            seeds
        }
        "disposition" => read_dir("files")?
            .into_iter()
            .map(|(name, _)| {
                let value = format!("attachment; filename=\"{name}.gz\"");
                (name, value.into_bytes())
            })
            .collect(),
        "url" => links()?
            .into_iter()
            .map(|(n, url)| (n, url.into_bytes()))
            .collect(),
        "link_expiry" => links()?
            .into_iter()
            .filter_map(|(n, url)| Some((n, url.split_once('?')?.1.as_bytes().to_vec())))
            .collect(),
        _ => Vec::new(),
    };
    let generated = root.join("fuzz").join("corpus").join("seeds").join(target);
    std::fs::create_dir_all(&generated)
        .map_err(|e| format!("cannot create {}: {e}", generated.display()))?;
    for (name, bytes) in seeds {
        let path = generated.join(format!("fixture-{name}"));
        std::fs::write(&path, bytes)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    let mut dirs = vec![generated];
    let committed = root.join("fuzz").join("seeds").join(target);
    if committed.is_dir() {
        dirs.push(committed);
    }
    Ok(dirs)
}

/// Runs `target` for `seconds` in fork mode and reads its figures.
fn fuzz_target(
    fuzz: &Path,
    target: &'static str,
    seeds: &[PathBuf],
    seconds: u64,
) -> Result<Figures, String> {
    let corpus = fuzz.join("corpus").join(target);
    let artifacts = fuzz.join("artifacts").join(target);
    for dir in [&corpus, &artifacts] {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let started = Instant::now();
    let output = cargo_fuzz(fuzz)
        .args(["run", "--sanitizer", "none", "--debug-assertions", target])
        .arg(&corpus)
        .args(seeds)
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .arg("-fork=1")
        .arg("-ignore_crashes=1")
        .arg("-ignore_timeouts=1")
        .arg("-ignore_ooms=1")
        .arg("-timeout=10")
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run cargo fuzz: {e}"))?;
    let seconds = started.elapsed().as_secs_f64();
    let log = String::from_utf8_lossy(&output.stderr);
    std::fs::write(fuzz.join("artifacts").join(format!("{target}.log")), &*log)
        .map_err(|e| format!("cannot write the log of {target}: {e}"))?;
    // Fork mode reports `#EXECS: cov: C ft: F corp: N exec/s: E oom/timeout/crash: a/b/c`.
    let last = log
        .lines()
        .rfind(|l| l.starts_with('#') && l.contains(" cov: "))
        .ok_or_else(|| {
            format!(
                "{target}: libFuzzer printed no figures (exit {}):\n{}",
                output.status,
                log.lines().rev().take(30).collect::<Vec<_>>().join("\n")
            )
        })?;
    let after = |key: &str| -> u64 {
        last.split(key)
            .nth(1)
            .and_then(|rest| {
                rest.trim_start()
                    .split(|c: char| !c.is_ascii_digit())
                    .next()
                    .and_then(|n| n.parse().ok())
            })
            .unwrap_or(0)
    };
    let executions = last
        .trim_start_matches('#')
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    // The crashing inputs written meanwhile (the seeds' crashes count here too, unlike
    // in libFuzzer's own tally).
    let crashes = crashes_since(&artifacts, started);
    let panic_sites = panic_sites(fuzz, target, &crashes);
    Ok(Figures {
        target,
        executions,
        coverage: after(" cov:"),
        features: after(" ft:"),
        corpus: after(" corp:"),
        crashes: crashes.len(),
        panic_sites,
        seconds,
    })
}

/// The crashing inputs in `artifacts` written since `since`.
fn crashes_since(artifacts: &Path, since: Instant) -> Vec<PathBuf> {
    let since = std::time::SystemTime::now() - since.elapsed();
    let mut crashes: Vec<PathBuf> = std::fs::read_dir(artifacts)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("crash-"))
        .filter(|e| {
            e.metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t >= since)
        })
        .map(|e| e.path())
        .collect();
    crashes.sort();
    crashes
}

/// Where `crashes` panic (`file:line` from the project root), each place once: fork
/// mode keeps the jobs' output to itself, so each input is replayed.
fn panic_sites(fuzz: &Path, target: &str, crashes: &[PathBuf]) -> Vec<String> {
    let host = Command::new("rustc")
        .arg("-vV")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
        })
        .unwrap_or_default();
    let binary = fuzz.join("target").join(host).join("release").join(target);
    let root = fuzz.parent().unwrap_or(fuzz).display().to_string();
    let mut sites = Vec::new();
    for crash in crashes.iter().take(100) {
        let Ok(out) = Command::new(&binary).arg(crash).output() else {
            continue;
        };
        let text = String::from_utf8_lossy(&out.stderr);
        for at in text.lines().filter_map(|l| l.split(" panicked at ").nth(1)) {
            let at = at.trim_end_matches(':');
            // file:line, without the column, from the project root.
            let at = at.rsplit_once(':').map_or(at, |(fl, _)| fl);
            let at = at.strip_prefix(&format!("{root}/")).unwrap_or(at);
            let at = if at.starts_with("fuzz_targets/") {
                format!("fuzz/{at}")
            } else {
                at.to_owned()
            };
            sites.push(at);
        }
    }
    sites.sort();
    sites.dedup();
    sites
}

fn table(all: &[Figures]) -> String {
    let mut t = String::from(
        "| target | fuzzes | seconds | executions | exec/s | coverage (cov) | features (ft) | corpus | crashes | where |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for f in all {
        let what = TARGETS
            .iter()
            .find(|(t, _)| *t == f.target)
            .map_or("", |(_, w)| w);
        let sites = if f.panic_sites.is_empty() {
            "—".to_owned()
        } else {
            f.panic_sites
                .iter()
                .map(|s| format!("`{s}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        t.push_str(&format!(
            "| `{}` | {what} | {:.0} | {} | {:.0} | {} | {} | {} | {} | {sites} |\n",
            f.target,
            f.seconds,
            f.executions,
            f.executions as f64 / f.seconds.max(1.0),
            f.coverage,
            f.features,
            f.corpus,
            f.crashes,
        ));
    }
    t
}

fn section(command: &str, table: &str, machine: &str) -> String {
    format!(
        "{START_MARK}\n## Fuzzing\n\n```console\n$ {command}\n```\n\n{table}\n{machine}\n\n\
         - **How.** Each target of `fuzz/` runs for the given time under libFuzzer \
         (cargo-fuzz, stable toolchain, `--sanitizer none --debug-assertions`, fork mode \
         with crashes ignored so that a finding does not end the run). Seeds: \
         `tests/fixtures/` (transcripts, actions, links, errors, file names) and \
         `fuzz/seeds/`, which also keeps every minimised finding.\n\
         - **Executions** count every input run in all fork jobs; **coverage** and \
         **features** are libFuzzer's `cov` (code edges) and `ft` (edge and counter \
         features); **crashes** counts crashing inputs (kept in `fuzz/artifacts/TARGET/`), \
         **where** the distinct places that panicked.\n\
         {END_MARK}\n"
    )
}

/// When, at which commit, on what machine.
fn machine_line(root: &Path) -> String {
    use crate::first_line;
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpu = crate::cpu_model();
    let rustc = first_line(Command::new("rustc").arg("-V")).unwrap_or_else(|| "rustc ?".into());
    let fuzz = first_line(crate::cargo(root).args(["fuzz", "--version"]))
        .unwrap_or_else(|| "cargo-fuzz ?".into());
    let date =
        first_line(Command::new("date").args(["-u", "+%Y-%m-%d"])).unwrap_or_else(|| "?".into());
    let commit = crate::commit_description(root);
    format!("Measured {date} at {commit} on {cores} core(s), {cpu}, {rustc}, {fuzz}.")
}
