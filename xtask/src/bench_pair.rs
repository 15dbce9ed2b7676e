//! `cargo xtask bench-batch --pair`: two release `mdlr` processes, started together,
//! each run one script on 8 of 16 simulated machines with the same app on the same
//! tenant — the case of issue 13, where two responders each spent the full start
//! quota. With the quota state shared (mdlr's default, `XDG_RUNTIME_DIR` a scratch
//! directory) and without it (`--no-shared-quotas`), in interleaved rounds: the joint
//! makespan against the quota bound of all 16, and the 429s. The figures go to stdout
//! and, when every check passes, to `BENCHMARKS.md` between this task's markers.

use crate::flags::{Flags, command_line, release_mdlr};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use mdlr_tests::sim::{QuotaKind, SimConfig, SimMachine, Simulator};

use crate::bench_batch::{Machine, count_dirs, real_ms};

const START_MARK: &str = "<!-- bench-batch-pair:start -->";
const END_MARK: &str = "<!-- bench-batch-pair:end -->";
const SECTION_TITLE: &str = "## Batch: two processes, one app, one tenant";

/// Machines per process.
const EACH: usize = 8;
const DEFAULT_ROUNDS: usize = 5;
const DEFAULT_SCALE: f64 = 0.1;
/// The issue's scenario: actions of 3 s (1 s `Pending`, a 2 s script), so that the
/// 16 machines' bound is 63 s, as reported.
const PENDING_S: u64 = 1;
const RUN_S: u64 = 2;
/// Service-time settings of the mdlr command line, before scaling (as bench-batch).
const POLL_INTERVAL_S: f64 = 5.0;
const WAIT_TIMEOUT_S: f64 = 3600.0;

pub(crate) const USAGE: &str =
    "usage: cargo xtask bench-batch --pair [--rounds N] [--scale F] [--no-write] [--mdlr PATH]";

struct Options {
    rounds: usize,
    scale: f64,
    write: bool,
    mdlr: Option<PathBuf>,
}

fn parse(args: &[&str]) -> Result<Options, String> {
    let mut options = Options {
        rounds: DEFAULT_ROUNDS,
        scale: DEFAULT_SCALE,
        write: true,
        mdlr: None,
    };
    let mut flags = Flags::new(args, USAGE);
    while let Some((key, switch)) = flags.next() {
        match key {
            "--pair" if switch => {}
            "--rounds" => {
                let v = flags.value()?;
                options.rounds = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=100).contains(n))
                    .ok_or_else(|| format!("--rounds: {v:?} is not 1 to 100\n{USAGE}"))?;
            }
            "--scale" => {
                let v = flags.value()?;
                options.scale = v
                    .parse()
                    .ok()
                    .filter(|f: &f64| f.is_finite() && *f > 0.0 && *f <= 1.0)
                    .ok_or_else(|| {
                        format!("--scale: {v:?} is not a time scale in (0, 1]\n{USAGE}")
                    })?;
            }
            "--mdlr" => options.mdlr = Some(PathBuf::from(flags.value()?)),
            "--write" if switch => options.write = true,
            "--no-write" if switch => options.write = false,
            _ => return Err(flags.unknown()),
        }
    }
    Ok(options)
}

/// Runs the benchmark; `args` are what follows `bench-batch` (with `--pair`).
pub fn run(root: &Path, args: &[&str]) -> Result<(), String> {
    let options = parse(args)?;
    let command = command_line("cargo xtask bench-batch", args);
    let bin = release_mdlr(root, options.mdlr.as_ref())?;
    let mut runs = Vec::new();
    for round in 1..=options.rounds {
        // Interleaved, the order swapped every round: a drift in the machine's load
        // falls on both alike.
        let order = if round % 2 == 1 {
            [true, false]
        } else {
            [false, true]
        };
        for shared in order {
            let run = pair(&bin, shared, options.scale, round)?;
            println!("  {}", run.line());
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
                .map(move |v| format!("round {} ({}): {v}", r.round, r.mode()))
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
        let section = section(&runs, &table, &machine, &command, options.scale);
        let path = root.join("BENCHMARKS.md");
        crate::write_section(&path, START_MARK, END_MARK, &section)?;
        println!(
            "wrote   BENCHMARKS.md (section \"{}\")",
            &SECTION_TITLE[3..]
        );
    }
    Ok(())
}

/// One run of the two processes.
struct Run {
    round: usize,
    shared: bool,
    /// Service seconds from the first start to the end of the last action.
    makespan: f64,
    /// `quota_bound(16, 1)`, service seconds.
    bound: f64,
    throttled: usize,
    busiest_starts: usize,
    busiest_api: usize,
    starts: usize,
    /// Real seconds until both processes ended.
    wall: f64,
    exits: [Option<i32>; 2],
    violations: Vec<String>,
}

impl Run {
    fn ratio(&self) -> f64 {
        self.makespan / self.bound
    }

    fn mode(&self) -> &'static str {
        if self.shared {
            "shared"
        } else {
            "--no-shared-quotas"
        }
    }

    fn line(&self) -> String {
        format!(
            "round {}, {}: makespan {:.1} s / bound {:.0} s = {:.3}, {} 429s, busiest start \
             window {}, exits {:?}, {:.1} s real",
            self.round,
            self.mode(),
            self.makespan,
            self.bound,
            self.ratio(),
            self.throttled,
            self.busiest_starts,
            self.exits,
            self.wall
        )
    }
}

fn config(scale: f64) -> SimConfig {
    SimConfig {
        time_scale: scale,
        machines: SimMachine::many(2 * EACH),
        pending_for: Duration::from_secs(PENDING_S),
        run_for: Duration::from_secs(RUN_S),
        ..SimConfig::default()
    }
}

/// mdlr's arguments after `--api-url` for one process: the service's quotas, the
/// poll interval and wait timeout of bench-batch, all scaled to real time.
fn mdlr_args(scale: f64, machines_file: &Path, out_dir: &Path, shared: bool) -> Vec<String> {
    let mut args = vec![
        "--api-quota".to_owned(),
        format!(
            "100/{},1500/{}",
            real_ms(60.0, scale),
            real_ms(3600.0, scale)
        ),
        "--start-quota".to_owned(),
        format!("10/{}", real_ms(60.0, scale)),
    ];
    if !shared {
        args.push("--no-shared-quotas".to_owned());
    }
    args.extend([
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
    ]);
    args
}

fn pair(bin: &Path, shared: bool, scale: f64, round: usize) -> Result<Run, String> {
    let sim =
        Simulator::start(config(scale)).map_err(|e| format!("cannot start the simulator: {e}"))?;
    let dir = crate::TempDir::new(&format!(
        "mdlr-bench-pair-{}-{round}-{shared}",
        std::process::id()
    ))?;
    // The runtime directory both processes share, private as a real one is.
    let runtime = dir.path().join("runtime");
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&runtime)
            .map_err(|e| format!("cannot create {}: {e}", runtime.display()))?;
    }
    let names: Vec<String> = sim.machines().iter().map(|m| m.dns_name.clone()).collect();
    let bound = sim.quota_bound(2 * EACH, 1);
    let limit = Duration::from_secs(60) + sim.real(bound) * 6;
    let mut children = Vec::new();
    let mut outs = Vec::new();
    for (k, half) in names.chunks(EACH).enumerate() {
        let file = dir.path().join(format!("machines-{k}.txt"));
        std::fs::write(
            &file,
            half.iter().map(|n| format!("{n}\n")).collect::<String>(),
        )
        .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
        let out = dir.path().join(format!("out-{k}"));
        let mut command = Command::new(bin);
        command
            .arg("--api-url")
            .arg(sim.api_url())
            .args(mdlr_args(scale, &file, &out, shared))
            .env_clear()
            .env("MDLR_TOKEN", sim.token())
            .env("XDG_RUNTIME_DIR", &runtime)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        outs.push(out);
        children.push(command);
    }
    let begun = Instant::now();
    let mut running = Vec::new();
    for mut command in children {
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
        let stderr = crate::read_in_background(child.stderr.take());
        running.push((child, stderr));
    }
    let mut exits: Vec<ExitStatus> = Vec::new();
    let mut stderrs = Vec::new();
    for (mut child, stderr) in running {
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if begun.elapsed() < limit => std::thread::sleep(Duration::from_millis(2)),
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("mdlr did not finish within {} s", limit.as_secs()));
                }
                Err(e) => return Err(format!("cannot wait for mdlr: {e}")),
            }
        };
        exits.push(status);
        stderrs.push(String::from_utf8_lossy(&crate::collect(stderr)?).into_owned());
    }
    let wall = begun.elapsed().as_secs_f64();
    let stats = sim.stats();
    let log = sim.requests();
    let first_start = log
        .iter()
        .find(|r| r.endpoint == "runliveresponse" && r.status == 201)
        .map(|r| r.at);
    let makespan = match (first_start, stats.last_terminal) {
        (Some(a), Some(b)) => b.saturating_duration_since(a).as_secs_f64() / scale,
        _ => f64::NAN,
    };
    let config = sim.config();
    let busiest = |kind| stats.busiest_window.get(&kind).copied().unwrap_or(0);
    let mut violations = Vec::new();
    for (k, status) in exits.iter().enumerate() {
        if !status.success() {
            let tail: Vec<&str> = stderrs[k].lines().rev().take(5).collect();
            violations.push(format!(
                "process {k} exited with {status}: {}",
                tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
            ));
        }
    }
    if stats.starts != 2 * EACH || stats.max_starts_per_machine() != 1 {
        violations.push(format!(
            "{} actions on {} machines, not one on each of {}",
            stats.starts,
            stats.starts_per_machine.len(),
            2 * EACH
        ));
    }
    for (k, out) in outs.iter().enumerate() {
        let results = count_dirs(out);
        if results != EACH {
            violations.push(format!("process {k}: results for {results} of {EACH}"));
        }
    }
    for (kind, limit) in [
        (QuotaKind::StartsPerMinute, config.starts_per_minute.limit),
        (QuotaKind::ApiPerMinute, config.api_per_minute.limit),
        (QuotaKind::ApiPerHour, config.api_per_hour.limit),
    ] {
        if busiest(kind) > limit {
            violations.push(format!("{kind:?}: {} calls in a window", busiest(kind)));
        }
    }
    if shared && stats.throttled > 0 {
        violations.push(format!(
            "{} responses were 429 with the quotas shared",
            stats.throttled
        ));
    }
    if shared {
        let files = std::fs::read_dir(runtime.join("mdlr"))
            .map(|d| d.count())
            .unwrap_or(0);
        if files != 2 {
            violations.push(format!(
                "{files} files in the runtime directory, not the state and its lock"
            ));
        }
    }
    Ok(Run {
        round,
        shared,
        makespan,
        bound: bound.as_secs_f64(),
        throttled: stats.throttled,
        busiest_starts: busiest(QuotaKind::StartsPerMinute),
        busiest_api: busiest(QuotaKind::ApiPerMinute),
        starts: stats.starts,
        wall,
        exits: [exits[0].code(), exits[1].code()],
        violations,
    })
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

fn table(runs: &[Run]) -> String {
    let mut out = String::from(
        "| quotas | rounds | makespan (s), median | min–max (s) | joint bound (s) | \
         makespan / bound | 429s, each round | busiest start minute | busiest API minute | \
         starts | wall (s), median |\n\
         |---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|\n",
    );
    for shared in [true, false] {
        let mine: Vec<&Run> = runs.iter().filter(|r| r.shared == shared).collect();
        let Some(first) = mine.first() else { continue };
        let makespans: Vec<f64> = mine.iter().map(|r| r.makespan).collect();
        let lo = makespans.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = makespans.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let med = median(makespans);
        out.push_str(&format!(
            "| {} | {} | {med:.1} | {lo:.1}–{hi:.1} | {:.0} | {:.3} | {} | {} | {} | {} | {:.1} |\n",
            if shared {
                "shared (default)"
            } else {
                "each alone (`--no-shared-quotas`)"
            },
            mine.len(),
            first.bound,
            med / first.bound,
            mine.iter()
                .map(|r| r.throttled.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            mine.iter().map(|r| r.busiest_starts).max().unwrap_or(0),
            mine.iter().map(|r| r.busiest_api).max().unwrap_or(0),
            mine.iter().map(|r| r.starts).max().unwrap_or(0),
            median(mine.iter().map(|r| r.wall).collect()),
        ));
    }
    out
}

fn section(runs: &[Run], table: &str, machine: &Machine, command: &str, scale: f64) -> String {
    let example = mdlr_args(scale, Path::new("machines-0.txt"), Path::new("OUT-0"), true)
        .into_iter()
        .map(|a| if a.contains(',') { format!("'{a}'") } else { a })
        .collect::<Vec<_>>()
        .join(" ");
    let rounds = runs.iter().filter(|r| r.shared).count();
    format!(
        "{START_MARK}\n{SECTION_TITLE}\n\n\
         ```console\n$ {command}\n```\n\n\
         {table}\n\
         {}\n\n\
         - **What runs** (issue 13: \"16 machines took 76 s against a joint bound of \
         63 s\"). The simulator of `tests/src/sim.rs` serves `SimMachine::many(16)` \
         with the service's quotas (100 API calls a minute and 1500 an hour, 10 session \
         starts a minute, 25 actions at once), every action `Pending` {PENDING_S} s then \
         one RunScript of {RUN_S} s. Two release `mdlr` processes, started together with \
         the same token (one app, one tenant) and the same `XDG_RUNTIME_DIR` (a scratch \
         directory), each run the script on 8 of the machines, by name; every duration \
         on their command lines is scaled like the service's. At scale {scale}:\n  \
         `MDLR_TOKEN=<the simulator's> XDG_RUNTIME_DIR=<scratch> mdlr --api-url \
         http://127.0.0.1:PORT {example}` (and the same with `machines-1.txt`; \
         `--no-shared-quotas` for the other row). {rounds} rounds, the two rows \
         interleaved.\n\
         - **Time.** Service time (real seconds divided by the scale {scale}); *wall* is \
         the real time until both processes ended.\n\
         - **Makespan**: from the first session start of either process to the end of \
         the last action, as the simulator saw them. **Joint bound**: \
         `SimConfig::quota_bound(16, 1)`, the earliest any client could have the last \
         of the 16 actions end: one batch of all 16 could do no better.\n\
         - **429s** and the **busiest** windows (accepted calls in any window of the \
         quota, over all rounds) from the simulator. Each alone, each process's \
         limiter lets its own 8 starts through in the first minute, 16 against the \
         quota of 10: the service refuses the first start over the quota of each \
         (a batch's later starts queue behind it), and each process waits out the \
         `Retry-After` and tries again. The simulator's `Retry-After` is the exact \
         wait to the window's end (rounded up to a whole real second, {:.0} service \
         seconds here), so in it the refusals cost no time; the service's own cost the \
         issue's reporter 13 s. Shared, the quota is never overrun: the second \
         process's starts wait at its limiter for the window the first one filled.\n\
         - Checked on every run: both exit 0, one action per machine, a result directory \
         per machine, no window over its quota; with the quotas shared, no 429 and one \
         state file (and its lock) in the runtime directory.\n\
         {END_MARK}\n",
        machine.line(),
        1.0 / scale,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options() {
        let o = parse(&["--pair"]).map_err(|e| e.to_string());
        assert!(
            o.as_ref()
                .is_ok_and(|o| o.rounds == DEFAULT_ROUNDS && o.scale == DEFAULT_SCALE && o.write)
        );
        let o = parse(&["--pair", "--rounds=3", "--scale", "0.05", "--no-write"]);
        assert!(
            o.as_ref()
                .is_ok_and(|o| o.rounds == 3 && o.scale == 0.05 && !o.write)
        );
        assert!(parse(&["--pair", "--rounds", "0"]).is_err());
        assert!(parse(&["--pair", "--scale", "2"]).is_err());
        assert!(parse(&["--pair", "--sizes", "10"]).is_err());
    }

    #[test]
    fn the_issue_scenario_has_its_bound() {
        // 16 machines of 3 s actions: 10 start at once, 6 a minute later.
        assert_eq!(
            config(0.1).quota_bound(2 * EACH, 1),
            Duration::from_secs(63)
        );
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
