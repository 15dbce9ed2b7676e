//! `cargo xtask bench-batch`: the release `mdlr` binary runs one script on N simulated
//! machines, and the makespan is set against the bound the service's quotas allow.
//!
//! For each N the simulator of `tests/src/sim.rs` serves `SimMachine::many(N)` (every
//! action `Pending` 10 s, one RunScript of 20 s, `Succeeded`) with the default quotas
//! (100 API calls a minute and 1500 an hour, 10 starts a minute, 25 actions at once), in
//! service time scaled down. `mdlr run --machines-file` runs as a user would run it, with
//! its client-side quotas, poll interval and wait timeout scaled by the same factor. The
//! figures go to stdout and, when every sanity check passes, to `BENCHMARKS.md` between
//! this task's markers.

use crate::flags::{Flags, command_line, release_mdlr};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime};

use mdlr_tests::sim::{SimConfig, SimMachine, SimRequest, Simulator};

const START_MARK: &str = "<!-- bench-batch:start -->";
const END_MARK: &str = "<!-- bench-batch:end -->";
const SECTION_TITLE: &str = "## Batch: makespan against the quota bound";

const DEFAULT_SIZES: [usize; 3] = [10, 100, 1000];
/// Without `--scale`: the largest of these that keeps the quota bound within
/// [`TARGET_REAL`] of real time. Larger scales make the simulator's and the client's
/// own CPU time (about a millisecond a request) weigh less in service time.
const AUTO_SCALES: [f64; 7] = [0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001];
const TARGET_REAL: Duration = Duration::from_secs(60);

/// Service-time settings of the mdlr command line, before scaling.
const POLL_INTERVAL_S: f64 = 5.0;
const WAIT_TIMEOUT_S: f64 = 3600.0;

const USAGE: &str =
    "usage: cargo xtask bench-batch [--sizes 10,100,1000] [--scale F[,F...]] [--no-write]";

struct Options {
    sizes: Vec<usize>,
    /// `None`: chosen per N (see [`AUTO_SCALES`]).
    scales: Option<Vec<f64>>,
    write: bool,
    /// `--mdlr PATH`: benchmark this binary instead of building one (never written).
    mdlr: Option<PathBuf>,
}

fn parse(args: &[&str]) -> Result<Options, String> {
    let mut options = Options {
        sizes: DEFAULT_SIZES.to_vec(),
        scales: None,
        write: true,
        mdlr: None,
    };
    let mut flags = Flags::new(args, USAGE);
    while let Some((key, switch)) = flags.next() {
        match key {
            "--sizes" => {
                options.sizes = list(&flags.value()?, |s| {
                    s.parse::<usize>().ok().filter(|n| *n > 0 && *n <= 100_000)
                })
                .map_err(|bad| format!("--sizes: {bad:?} is not a machine count\n{USAGE}"))?;
            }
            "--scale" => {
                options.scales = Some(
                    list(&flags.value()?, |s| {
                        s.parse::<f64>()
                            .ok()
                            .filter(|f| f.is_finite() && *f > 0.0 && *f <= 1.0)
                    })
                    .map_err(|bad| {
                        format!("--scale: {bad:?} is not a time scale in (0, 1]\n{USAGE}")
                    })?,
                );
            }
            "--mdlr" => options.mdlr = Some(PathBuf::from(flags.value()?)),
            "--write" if switch => options.write = true,
            "--no-write" if switch => options.write = false,
            _ => return Err(flags.unknown()),
        }
    }
    Ok(options)
}

/// A comma-separated list; the first item `item` refuses is the error.
fn list<T>(text: &str, item: impl Fn(&str) -> Option<T>) -> Result<Vec<T>, String> {
    let items: Vec<&str> = text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if items.is_empty() {
        return Err(text.to_owned());
    }
    items
        .into_iter()
        .map(|s| item(s).ok_or_else(|| s.to_owned()))
        .collect()
}

/// Runs the benchmark; `args` are what follows `bench-batch` on the command line
/// (`--pair`: the two-process case of `bench_pair` instead).
pub fn run(root: &Path, args: &[&str]) -> Result<(), String> {
    if args.contains(&"--pair") {
        return crate::bench_pair::run(root, args);
    }
    let options = parse(args)?;
    let command = command_line("cargo xtask bench-batch", args);
    let bin = release_mdlr(root, options.mdlr.as_ref())?;
    let mut runs = Vec::new();
    for &n in &options.sizes {
        let scales = match &options.scales {
            Some(s) => s.clone(),
            None => vec![auto_scale(n)],
        };
        for scale in scales {
            println!("N = {n}, scale {scale}: running ...");
            let run = bench_one(&bin, n, scale)?;
            println!("  {}", run.summary_line);
            for line in &run.diagnosis {
                println!("  {line}");
            }
            for v in &run.violations {
                println!("  FAILED: {v}");
            }
            runs.push(run);
        }
    }
    let machine = Machine::detect(root);
    let table = table(&runs);
    println!();
    print!("{table}");
    println!();
    println!("{}", machine.line());
    let failed: Vec<String> = runs
        .iter()
        .flat_map(|r| {
            r.violations
                .iter()
                .map(move |v| format!("N = {}: {v}", r.n))
        })
        .collect();
    if !failed.is_empty() {
        return Err(format!(
            "sanity checks failed; BENCHMARKS.md left as it was:\n  {}",
            failed.join("\n  ")
        ));
    }
    if options.mdlr.is_some() {
        println!("BENCHMARKS.md not written: --mdlr names a binary not built from this tree");
    } else if options.write {
        let section = section(&runs, &table, &machine, &command);
        let path = root.join("BENCHMARKS.md");
        crate::write_section(&path, START_MARK, END_MARK, &section)?;
        println!(
            "wrote   BENCHMARKS.md (section \"{}\")",
            &SECTION_TITLE[3..]
        );
    }
    Ok(())
}

/// The default quotas' bound for `n` machines (service time).
fn default_bound(n: usize) -> Duration {
    SimConfig::default().quota_bound(n, 1)
}

fn auto_scale(n: usize) -> f64 {
    let bound = default_bound(n).as_secs_f64();
    AUTO_SCALES
        .iter()
        .copied()
        .find(|s| bound * s <= TARGET_REAL.as_secs_f64())
        .unwrap_or(AUTO_SCALES[AUTO_SCALES.len() - 1])
}

// ---------------------------------------------------------------------------------------
// One run

struct Run {
    n: usize,
    scale: f64,
    /// Service seconds from the first start to the end of the last action.
    makespan: f64,
    /// `quota_bound(n, 1)`, service seconds.
    bound: f64,
    api_calls: usize,
    poll_rounds: Option<usize>,
    throttled: usize,
    peak_concurrent: usize,
    max_starts: usize,
    /// Real seconds the mdlr process ran.
    wall: f64,
    exit: ExitStatus,
    summary_line: String,
    diagnosis: Vec<String>,
    violations: Vec<String>,
}

impl Run {
    fn ratio(&self) -> f64 {
        self.makespan / self.bound
    }
}

fn bench_one(bin: &Path, n: usize, scale: f64) -> Result<Run, String> {
    let config = SimConfig {
        time_scale: scale,
        machines: SimMachine::many(n),
        ..SimConfig::default()
    };
    let schedule_config = config.clone();
    let sim = Simulator::start(config).map_err(|e| format!("cannot start the simulator: {e}"))?;
    let dir = crate::TempDir::new(&format!("mdlr-bench-{}-{n}", std::process::id()))?;
    let machines_file = dir.path().join("machines.txt");
    let names: String = sim
        .machines()
        .iter()
        .map(|m| format!("{}\n", m.dns_name))
        .collect();
    std::fs::write(&machines_file, names)
        .map_err(|e| format!("cannot write {}: {e}", machines_file.display()))?;
    let out_dir = dir.path().join("out");

    let args = mdlr_args(scale, &machines_file, &out_dir);
    let bound = sim.quota_bound(n, 1);
    // Generous: several times the bound in real time, and never under a minute.
    let limit = Duration::from_secs(60) + sim.real(bound) * 6;
    let outcome = run_mdlr(bin, &sim.api_url(), &sim.token(), &args, limit)?;

    let stats = sim.stats();
    let log = sim.requests();
    let stderr = String::from_utf8_lossy(&outcome.stderr).into_owned();
    let summary_line = stderr
        .lines()
        .rev()
        .find(|l| l.contains("poll round(s)"))
        .map(|l| l.trim_start_matches("mdlr: ").to_owned())
        .unwrap_or_else(|| "(no summary line on stderr)".to_owned());
    let poll_rounds = number_before(&summary_line, "poll");

    let first_start = log
        .iter()
        .find(|r| r.endpoint == "runliveresponse" && r.status == 201)
        .map(|r| r.at);
    let makespan = match (first_start, stats.last_terminal) {
        (Some(a), Some(b)) => b.saturating_duration_since(a).as_secs_f64() / scale,
        _ => f64::NAN,
    };
    let results = count_dirs(&out_dir);

    let mut violations = Vec::new();
    if !outcome.status.success() {
        violations.push(format!("mdlr exited with {}", outcome.status));
    }
    if stats.throttled > 0 {
        violations.push(format!("{} responses were 429", stats.throttled));
    }
    if stats.starts != n || stats.starts_per_machine.len() != n {
        violations.push(format!(
            "{} actions started on {} machines, not one on each of {n}",
            stats.starts,
            stats.starts_per_machine.len()
        ));
    }
    if stats.max_starts_per_machine() > 1 {
        violations.push(format!(
            "a machine got {} actions",
            stats.max_starts_per_machine()
        ));
    }
    if stats.terminal_actions != n {
        violations.push(format!("{} of {n} actions ended", stats.terminal_actions));
    }
    if results != n {
        violations.push(format!("results for {results} of {n} machines under -o"));
    }
    if poll_rounds.is_none() {
        violations.push("no summary line on stderr".to_owned());
    }
    if !violations.is_empty() {
        let tail: Vec<&str> = stderr.lines().rev().take(10).collect();
        violations.push(format!(
            "mdlr's last stderr lines:\n    {}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n    ")
        ));
    }

    let diagnosis = diagnose(&log, &schedule_config, scale, first_start);
    Ok(Run {
        n,
        scale,
        makespan,
        bound: bound.as_secs_f64(),
        api_calls: stats.api_calls,
        poll_rounds,
        throttled: stats.throttled,
        peak_concurrent: stats.peak_concurrent,
        max_starts: stats.max_starts_per_machine(),
        wall: outcome.wall.as_secs_f64(),
        exit: outcome.status,
        summary_line,
        diagnosis,
        violations,
    })
}

/// mdlr's arguments after `--api-url`: the service's quotas, a 5 s first poll interval
/// and a 60 min wait timeout, all scaled to real time.
fn mdlr_args(scale: f64, machines_file: &Path, out_dir: &Path) -> Vec<String> {
    vec![
        "--api-quota".to_owned(),
        format!(
            "100/{},1500/{}",
            real_ms(60.0, scale),
            real_ms(3600.0, scale)
        ),
        "--start-quota".to_owned(),
        format!("10/{}", real_ms(60.0, scale)),
        "run".to_owned(),
        "--machines-file".to_owned(),
        machines_file.display().to_string(),
        "--script".to_owned(),
        "x.ps1".to_owned(),
        "-o".to_owned(),
        out_dir.display().to_string(),
        "--poll-interval".to_owned(),
        real_ms(POLL_INTERVAL_S, scale),
        "--wait-timeout".to_owned(),
        real_ms(WAIT_TIMEOUT_S, scale),
    ]
}

/// `service` seconds scaled to real time, in milliseconds as mdlr parses them.
pub(crate) fn real_ms(service: f64, scale: f64) -> String {
    let ms = (service * scale * 1e6).round() / 1e3;
    format!("{ms}ms")
}

/// The whole number just before the word `word` in `line`.
fn number_before(line: &str, word: &str) -> Option<usize> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words.iter().position(|w| *w == word)?;
    words.get(at.checked_sub(1)?)?.parse().ok()
}

pub(crate) fn count_dirs(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .count()
        })
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------
// Where the time goes

/// Whether a logged request counted against the API quotas.
fn counted(r: &SimRequest) -> bool {
    !matches!(r.endpoint, "blob" | "token") && r.status != 429 && r.status != 401
}

/// Lines telling where the service time went: calls by kind, start pacing against the
/// quota schedule, the busiest API windows, poll spacing.
fn diagnose(
    log: &[SimRequest],
    config: &SimConfig,
    scale: f64,
    first_start: Option<Instant>,
) -> Vec<String> {
    let mut lines = Vec::new();
    let count = |endpoint: &str| {
        log.iter()
            .filter(|r| r.endpoint == endpoint && counted(r))
            .count()
    };
    let known = ["machines", "runliveresponse", "actions", "link"];
    let other = log
        .iter()
        .filter(|r| counted(r) && !known.contains(&r.endpoint))
        .count();
    lines.push(format!(
        "API calls: {} name lookups, {} starts, {} status lists, {} result links, {other} other",
        count("machines"),
        count("runliveresponse"),
        count("actions"),
        count("link"),
    ));
    let Some(origin) = first_start else {
        return lines;
    };
    // Service seconds since the first start (negative before it).
    let at = |r: &SimRequest| -> f64 {
        if r.at >= origin {
            r.at.duration_since(origin).as_secs_f64() / scale
        } else {
            -(origin.duration_since(r.at).as_secs_f64() / scale)
        }
    };
    let starts: Vec<f64> = log
        .iter()
        .filter(|r| r.endpoint == "runliveresponse" && r.status == 201)
        .map(at)
        .collect();
    if let Some(&last) = starts.last() {
        // The quota schedule: start k at bound(k + 1) − D when every action lasts D.
        let d = config.pending_for + config.run_for;
        let ideal_last = config
            .quota_bound(starts.len(), 1)
            .saturating_sub(d)
            .as_secs_f64();
        // Held back beyond what the start quota allowed, given the starts before.
        let (per, window) = (
            config.starts_per_minute.limit,
            config.starts_per_minute.window.as_secs_f64(),
        );
        let mut late_total = 0.0;
        let mut late_count = 0;
        let mut late_max: f64 = 0.0;
        for k in 1..starts.len() {
            let mut allowed = starts[k - 1];
            if k >= per {
                allowed = allowed.max(starts[k - per] + window);
            }
            let late = starts[k] - allowed;
            if late > 1.0 {
                late_total += late;
                late_count += 1;
                late_max = late_max.max(late);
            }
        }
        lines.push(format!(
            "starts: last at {last:.0} s after the first (quota schedule: {ideal_last:.0} s); \
             {late_count} went out > 1 s after the start quota allowed them, {late_total:.0} s \
             in all (longest {late_max:.0} s)"
        ));
        // How far behind the quota schedule the starts fell, along the way.
        let n = starts.len();
        let mut marks: Vec<usize> = [n / 4, n / 2, 3 * n / 4, n - 1]
            .into_iter()
            .filter(|k| *k > 0)
            .collect();
        marks.dedup();
        let behind: Vec<String> = marks
            .iter()
            .map(|&k| {
                let ideal = config.quota_bound(k + 1, 1).saturating_sub(d).as_secs_f64();
                format!("{:.0} s at start {}", starts[k] - ideal, k + 1)
            })
            .collect();
        if !behind.is_empty() {
            lines.push(format!("behind the quota schedule: {}", behind.join(", ")));
        }
    }
    let counted_at: Vec<f64> = log.iter().filter(|r| counted(r)).map(at).collect();
    for (limit, window) in [
        (config.api_per_hour.limit, config.api_per_hour.window),
        (config.api_per_minute.limit, config.api_per_minute.window),
    ] {
        let w = window.as_secs_f64();
        let (busiest, from) = busiest_window(&counted_at, w);
        let full = first_full(&counted_at, w, limit);
        lines.push(format!(
            "busiest {:.0} s of API calls: {busiest} (limit {limit}), from {:.1} s{}",
            w,
            if from.abs() < 0.05 { 0.0 } else { from },
            match full {
                Some(t) => format!("; the window first held {limit} calls at {t:.0} s"),
                None => String::new(),
            }
        ));
    }
    let polls: Vec<f64> = log
        .iter()
        .filter(|r| r.endpoint == "actions" && counted(r))
        .map(at)
        .collect();
    if polls.len() >= 2 {
        let mut gaps: Vec<f64> = polls.windows(2).map(|w| w[1] - w[0]).collect();
        gaps.sort_by(f64::total_cmp);
        let span = polls[polls.len() - 1] - polls[0];
        lines.push(format!(
            "status lists: {} over {span:.0} s, one every {:.1} s on average (median gap {:.1} s, \
             longest {:.1} s)",
            polls.len(),
            span / (polls.len() - 1) as f64,
            gaps[gaps.len() / 2],
            gaps[gaps.len() - 1],
        ));
    }
    lines
}

/// The most times in any window of `w` (sorted input), and where that window starts.
fn busiest_window(times: &[f64], w: f64) -> (usize, f64) {
    let (mut best, mut from, mut lo) = (0, 0.0, 0);
    for hi in 0..times.len() {
        while times[hi] - times[lo] >= w {
            lo += 1;
        }
        if hi + 1 - lo > best {
            best = hi + 1 - lo;
            from = times[lo];
        }
    }
    (best, from)
}

/// When a window of `w` first held `limit` times.
fn first_full(times: &[f64], w: f64, limit: usize) -> Option<f64> {
    let mut lo = 0;
    for hi in 0..times.len() {
        while times[hi] - times[lo] >= w {
            lo += 1;
        }
        if hi + 1 - lo >= limit {
            return Some(times[hi]);
        }
    }
    None
}

// ---------------------------------------------------------------------------------------
// Figures

fn table(runs: &[Run]) -> String {
    let mut out = String::from(
        "| machines | scale | makespan (s) | quota bound (s) | makespan / bound | API calls | \
         calls / machine | poll rounds | 429s | peak in flight | max starts / machine | \
         wall (s) | exit |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in runs {
        out.push_str(&format!(
            "| {} | {} | {:.1} | {:.0} | {:.3} | {} | {:.2} | {} | {} | {} | {} | {:.1} | {} |\n",
            r.n,
            r.scale,
            r.makespan,
            r.bound,
            r.ratio(),
            r.api_calls,
            r.api_calls as f64 / r.n as f64,
            r.poll_rounds.map_or("?".to_owned(), |p| p.to_string()),
            r.throttled,
            r.peak_concurrent,
            r.max_starts,
            r.wall,
            r.exit.code().map_or("signal".to_owned(), |c| c.to_string()),
        ));
    }
    out
}

/// The machine a benchmark ran on, for its `Measured ...` line.
pub(crate) struct Machine {
    cores: String,
    cpu: String,
    rustc: String,
    date: String,
    commit: String,
}

impl Machine {
    pub(crate) fn detect(root: &Path) -> Machine {
        let cores = std::thread::available_parallelism()
            .map(|n| n.to_string())
            .unwrap_or_else(|_| "?".to_owned());
        let cpu = crate::cpu_model();
        let rustc_cmd = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
        let rustc = crate::first_line(Command::new(rustc_cmd).arg("-V"))
            .unwrap_or_else(|| "rustc ?".to_owned());
        let commit = crate::commit_description(root);
        Machine {
            cores,
            cpu,
            rustc,
            date: crate::utc_date(SystemTime::now()),
            commit,
        }
    }

    pub(crate) fn line(&self) -> String {
        format!(
            "Measured {} at {} on {} core(s) (nproc), {}, {}.",
            self.date, self.commit, self.cores, self.cpu, self.rustc
        )
    }
}

fn section(runs: &[Run], table: &str, machine: &Machine, command: &str) -> String {
    let mut scales: Vec<String> = Vec::new();
    for r in runs {
        let s = r.scale.to_string();
        if !scales.contains(&s) {
            scales.push(s);
        }
    }
    let example = runs
        .last()
        .map(|r| {
            mdlr_args(r.scale, Path::new("machines.txt"), Path::new("OUT"))
                .into_iter()
                .map(|a| if a.contains(',') { format!("'{a}'") } else { a })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    let example_scale = runs.last().map_or(0.0, |r| r.scale);
    format!(
        "{START_MARK}\n{SECTION_TITLE}\n\n\
         ```console\n$ {command}\n```\n\n\
         {table}\n\
         {}\n\n\
         - **What runs.** For each N, the simulator of `tests/src/sim.rs` serves \
         `SimMachine::many(N)` (every action `Pending` 10 s, then one RunScript of 20 s, \
         `Succeeded`) with the service's quotas: 100 API calls a minute and 1500 an hour, \
         10 session starts a minute, 25 actions at once. The release `mdlr` binary runs \
         against it as a user would, in an empty environment but for `MDLR_TOKEN`, with the \
         machines' names in a file; every duration on its command line is scaled like the \
         service's. At scale {example_scale}:\n  `MDLR_TOKEN=<the simulator's> mdlr --api-url http://127.0.0.1:PORT \
         {example}`\n\
         - **Time.** Figures are in service time (real seconds divided by `scale`, real \
         seconds per service second: here {}); *wall* is the real time of the mdlr \
         process, name lookups and result downloads included.\n\
         - **Makespan**: from the first session start to the end of the last action, as \
         the simulator saw them. **Quota bound**: `SimConfig::quota_bound(N, 1)`, the \
         earliest any client could have the last action end when it starts them as early \
         as the quotas allow (here `⌊(N−1)/10⌋·60 s + 30 s`: the start quota binds).\n\
         - **API calls**: every call counted against the API quotas (name lookups, starts, \
         status lists, result links). **Poll rounds** and the exit status are from mdlr's \
         own summary line; 429s, peak in flight and starts per machine from the simulator.\n\
         - Checked on every run: exit status 0, no 429, one action per machine, a result \
         directory per machine.\n\n\
         Where the time went, from the simulator's request log (service seconds from the \
         first start; the *quota schedule* starts 10 a minute from the first):\n\n\
         {}\
         {END_MARK}\n",
        machine.line(),
        scales.join(" and "),
        where_it_went(runs),
    )
}

/// The diagnosis lines of every run, as a Markdown list.
fn where_it_went(runs: &[Run]) -> String {
    let mut out = String::new();
    for r in runs {
        out.push_str(&format!("- N = {}, scale {}:\n", r.n, r.scale));
        for line in &r.diagnosis {
            out.push_str(&format!("  - {line}\n"));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Building and running mdlr

struct Finished {
    status: ExitStatus,
    stderr: Vec<u8>,
    wall: Duration,
}

/// Runs `mdlr --api-url API ARGS...` with only `MDLR_TOKEN` in its environment; kills
/// it after `limit`.
fn run_mdlr(
    bin: &Path,
    api: &str,
    token: &str,
    args: &[String],
    limit: Duration,
) -> Result<Finished, String> {
    let mut command = Command::new(bin);
    command
        .arg("--api-url")
        .arg(api)
        .args(args)
        .env_clear()
        .env("MDLR_TOKEN", token)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let begun = Instant::now();
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    let stdout = crate::read_in_background(child.stdout.take());
    let stderr = crate::read_in_background(child.stderr.take());
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if begun.elapsed() < limit => std::thread::sleep(Duration::from_millis(2)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "mdlr {} did not finish within {} s",
                    args.join(" "),
                    limit.as_secs()
                ));
            }
            Err(e) => return Err(format!("cannot wait for mdlr: {e}")),
        }
    };
    let wall = begun.elapsed();
    crate::collect(stdout)?;
    Ok(Finished {
        status,
        stderr: crate::collect(stderr)?,
        wall,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options() {
        let o = parse(&[]).map_err(|e| e.to_string());
        assert!(
            o.as_ref()
                .is_ok_and(|o| o.sizes == DEFAULT_SIZES && o.write)
        );
        let o = parse(&["--sizes", "10,200", "--scale=0.005,0.002", "--no-write"]);
        assert!(o.as_ref().is_ok_and(|o| o.sizes == [10, 200]
            && o.scales == Some(vec![0.005, 0.002])
            && !o.write));
        assert!(parse(&["--sizes", "ten"]).is_err());
        assert!(parse(&["--scale", "0"]).is_err());
        assert!(parse(&["--scale"]).is_err());
        assert!(parse(&["--fast"]).is_err());
    }

    #[test]
    fn scales_keep_the_bound_short() {
        assert_eq!(auto_scale(10), 0.1);
        assert_eq!(auto_scale(100), 0.1);
        assert_eq!(auto_scale(1000), 0.01);
        assert_eq!(auto_scale(2000), 0.005);
        assert_eq!(real_ms(60.0, 0.005), "300ms");
        assert_eq!(real_ms(5.0, 0.001), "5ms");
        assert_eq!(real_ms(5.0, 0.05), "250ms");
    }

    #[test]
    fn helpers() {
        assert_eq!(
            number_before("10 machine(s), 10 started, 7 poll round(s), 3.1 s", "poll"),
            Some(7)
        );
        assert_eq!(crate::utc_date(SystemTime::UNIX_EPOCH), "1970-01-01");
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_709_164_800); // 2024-02-29
        assert_eq!(crate::utc_date(t), "2024-02-29");
        assert_eq!(busiest_window(&[0.0, 1.0, 2.0, 10.0], 5.0), (3, 0.0));
        assert_eq!(first_full(&[0.0, 1.0, 2.0, 10.0], 5.0, 3), Some(2.0));
        assert_eq!(first_full(&[0.0, 6.0, 12.0], 5.0, 2), None);
    }

    #[test]
    fn section_replaced_in_place() {
        let dir = std::env::temp_dir().join(format!("xtask-bench-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("BENCHMARKS.md");
        let _ = std::fs::remove_file(&path);
        let one = format!("{START_MARK}\none\n{END_MARK}\n");
        let two = format!("{START_MARK}\ntwo\n{END_MARK}\n");
        assert!(crate::write_section(&path, START_MARK, END_MARK, &one).is_ok());
        let other = "\n## Other\n\nkept\n";
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(std::fs::write(&path, format!("{text}{other}")).is_ok());
        assert!(crate::write_section(&path, START_MARK, END_MARK, &two).is_ok());
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(text.starts_with(crate::INTRO));
        assert!(text.contains("two") && !text.contains("one"));
        assert!(text.ends_with(other));
    }
}
