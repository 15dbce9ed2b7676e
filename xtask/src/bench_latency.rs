//! `cargo xtask bench-latency`: how soon the release `mdlr` binary delivers a batch's
//! results once their actions end, against the simulator of `tests/src/sim.rs`, and the
//! goals of issue 11 on polling.
//!
//! Each round runs every scenario once, in an order that rotates from round to round
//! (interleaved: a slow moment of the machine falls on a different scenario each time):
//!
//! - **delay, N machines** (1, 10, 25, 200): `mdlr run --machines-file NAMES --script
//!   x.ps1` on `SimMachine::many(N)` (every action `Pending` 10 s, then a RunScript of
//!   20 s and a fraction of a second drawn per machine and round, so that actions end
//!   at every moment between two looks) with the service's quotas, every duration on
//!   mdlr's command line scaled like the service's, and mdlr's defaults otherwise
//!   (`--poll-interval 5s`, `--wait-timeout 15m`). For each machine: the service time
//!   from its action's end (`lastUpdateDateTimeUtc` of the ended action) to the moment
//!   mdlr printed the machine's line, which it does after the transcript (one machine:
//!   the transcript, which it prints alone, as `mdlr result` does). p50 and p95
//!   over the machines of the run. (Without `-o`: with it, every result and the journal
//!   are synced to disk, milliseconds that scaled time would multiply by 10 to 20.)
//! - **12 machines under the real quotas**: the same with 12 machines: ten start at
//!   once, two a minute later. From the first start to the last machine's line, set
//!   against `SimConfig::quota_bound(12, 1)` (about 90 s), the bound `bench-batch` uses.
//! - **a 2-second action**, in real time (scale 1: no scaling error at all): one machine
//!   whose action is `Pending` 1 s and runs 1 s and up to a tenth more (drawn per
//!   round: an action of exactly 2 s ends just before mdlr's look 2 s after its start,
//!   which would flatter; a little longer, it is seen at the next look);
//!   `mdlr run NAME --script x.ps1`
//!   with no option but the API URL (the default quotas and poll interval). From
//!   launching mdlr to the transcript on its stdout.
//!
//! Every figure is taken per round; the tables give the median over rounds, the upper
//! quartile and the spread (lowest–highest). A goal is met only when it holds at the
//! upper quartile. The rounds are also split in two (odd and even), each half judged on
//! its own, to show that a repeat gives the same verdicts.

use crate::flags::{Flags, command_line, release_mdlr};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use mdlr_tests::sim::{SimConfig, SimMachine, Simulator};

const START_MARK: &str = "<!-- bench-latency:start -->";
const END_MARK: &str = "<!-- bench-latency:end -->";
const SECTION_TITLE: &str = "## Results sooner: from an action's end to its result";

const DEFAULT_ROUNDS: usize = 8;
/// Machines of the delay table, and the time scale of each: the largest that keeps a
/// run within a minute. At 0.1 a millisecond of the client's own work weighs 10 ms of
/// service time; at 0.05, 20 ms.
const DELAY_RUNS: [(usize, f64); 4] = [(1, 0.1), (10, 0.1), (25, 0.1), (200, 0.05)];
const TWELVE: (usize, f64) = (12, 0.1);
/// The goals: a 2-second action delivered within this (seconds, real time) ...
const QUICK_GOAL_S: f64 = 3.5;
/// ... and 12 machines within this of the quota bound.
const TWELVE_GOAL: f64 = 1.08;

/// mdlr's defaults, in service seconds, scaled onto its command line.
const POLL_INTERVAL_S: f64 = 5.0;
const WAIT_TIMEOUT_S: f64 = 900.0;

const USAGE: &str = "usage: cargo xtask bench-latency [--rounds N] [--no-write] [--mdlr PATH]";

struct Options {
    rounds: usize,
    write: bool,
    mdlr: Option<PathBuf>,
}

fn parse(args: &[&str]) -> Result<Options, String> {
    let mut options = Options {
        rounds: DEFAULT_ROUNDS,
        write: true,
        mdlr: None,
    };
    let mut flags = Flags::new(args, USAGE);
    while let Some((key, switch)) = flags.next() {
        match key {
            "--rounds" => {
                options.rounds = flags
                    .value()?
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (2..=100).contains(n))
                    .ok_or_else(|| format!("--rounds wants a number from 2 to 100\n{USAGE}"))?;
            }
            "--mdlr" => options.mdlr = Some(PathBuf::from(flags.value()?)),
            "--no-write" if switch => options.write = false,
            _ => return Err(flags.unknown()),
        }
    }
    Ok(options)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Scenario {
    /// N machines at a scale: the delay from each action's end to its result.
    Delay(usize, f64),
    /// 12 machines: the last result against the quota bound.
    Twelve,
    /// One 2-second action in real time.
    Quick,
}

impl Scenario {
    fn all() -> Vec<Scenario> {
        let mut all = vec![Scenario::Quick];
        all.extend(DELAY_RUNS.iter().map(|&(n, s)| Scenario::Delay(n, s)));
        all.push(Scenario::Twelve);
        all
    }
}

/// What one run of a scenario measured.
#[derive(Debug, Clone, Default)]
struct Figures {
    /// Per machine: service seconds from the action's end to its result.
    delays: Vec<f64>,
    /// Service seconds from the first start to the last machine's line.
    delivered_makespan: f64,
    /// Service seconds from the first start to the end of the last action.
    sim_makespan: f64,
    /// `quota_bound(N, 1)`, service seconds.
    bound: f64,
    /// Real seconds from launching mdlr to the transcript (the 2-second action).
    quick: f64,
    api_calls: usize,
    throttled: usize,
    poll_lists: usize,
}

/// Runs the benchmark; `args` are what follows `bench-latency` on the command line.
pub fn run(root: &Path, args: &[&str]) -> Result<(), String> {
    let options = parse(args)?;
    let command = command_line("cargo xtask bench-latency", args);
    let bin = release_mdlr(root, options.mdlr.as_ref())?;
    let scenarios = Scenario::all();
    // results[scenario][round]
    let mut results: Vec<Vec<Figures>> = vec![Vec::new(); scenarios.len()];
    let mut failures = Vec::new();
    for round in 0..options.rounds {
        for k in 0..scenarios.len() {
            let i = (k + round) % scenarios.len();
            let scenario = scenarios[i];
            match run_scenario(&bin, scenario, round) {
                Ok(f) => {
                    println!("round {}: {}", round + 1, describe(scenario, &f));
                    results[i].push(f);
                }
                Err(e) => {
                    println!("round {}: {scenario:?} FAILED: {e}", round + 1);
                    failures.push(format!("round {}, {scenario:?}: {e}", round + 1));
                }
            }
        }
    }
    if !failures.is_empty() {
        return Err(format!(
            "runs failed; BENCHMARKS.md left as it was:\n  {}",
            failures.join("\n  ")
        ));
    }
    let machine = crate::bench_batch::Machine::detect(root);
    let report = report(&scenarios, &results, options.rounds);
    println!();
    print!("{}", report.text);
    println!();
    println!("{}", machine.line());
    if options.mdlr.is_some() {
        println!("BENCHMARKS.md not written: --mdlr names a binary not built from this tree");
    } else if options.write {
        let section = section(&report.text, &machine, &command, options.rounds);
        crate::write_section(&root.join("BENCHMARKS.md"), START_MARK, END_MARK, &section)?;
        println!(
            "wrote   BENCHMARKS.md (section \"{}\")",
            &SECTION_TITLE[3..]
        );
    }
    if report.all_met {
        Ok(())
    } else {
        Err("a goal was missed (see the table)".to_owned())
    }
}

fn describe(scenario: Scenario, f: &Figures) -> String {
    match scenario {
        Scenario::Quick => format!(
            "2-second action delivered {:.2} s after launch; {} API calls, {} × 429",
            f.quick, f.api_calls, f.throttled
        ),
        Scenario::Twelve => format!(
            "12 machines: last result {:.1} s after the first start, bound {:.0} s ({:.3}); \
             last action ended at {:.1} s; {} × 429",
            f.delivered_makespan,
            f.bound,
            f.delivered_makespan / f.bound,
            f.sim_makespan,
            f.throttled
        ),
        Scenario::Delay(n, scale) => format!(
            "{n} machines at {scale}: delay p50 {:.2} s, p95 {:.2} s; {} API calls ({} \
             status lists), {} × 429",
            percentile(&f.delays, 0.5),
            percentile(&f.delays, 0.95),
            f.api_calls,
            f.poll_lists,
            f.throttled
        ),
    }
}

// ---------------------------------------------------------------------------------------
// One run

fn run_scenario(bin: &Path, scenario: Scenario, round: usize) -> Result<Figures, String> {
    match scenario {
        Scenario::Delay(n, scale) => run_batch(bin, n, scale, round),
        Scenario::Twelve => run_batch(bin, TWELVE.0, TWELVE.1, round),
        Scenario::Quick => run_quick(bin, round),
    }
}

/// A number in [0, 1) that depends only on `seed` (splitmix64): the same rounds get the
/// same action lengths on every run of the benchmark.
fn unit(seed: u64) -> f64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// `mdlr run` on `n` machines at `scale`: one line per machine once its transcript is
/// printed. Each action runs 20 s and a fraction of a second more, drawn per machine
/// and round, so that actions end at every moment between two looks (with whole
/// seconds they would end just before a look that comes a whole number of seconds
/// after the start, and the delays would flatter).
fn run_batch(bin: &Path, n: usize, scale: f64, round: usize) -> Result<Figures, String> {
    let wall = SystemTime::now();
    let machines = SimMachine::many(n)
        .into_iter()
        .enumerate()
        .map(|(k, mut m)| {
            let extra = unit(((round as u64) << 32) ^ k as u64);
            m.run_for = Some(Duration::from_secs_f64(20.0 + extra));
            m
        })
        .collect();
    let sim = Simulator::start(SimConfig {
        time_scale: scale,
        machines,
        epoch: Some(wall),
        ..SimConfig::default()
    })
    .map_err(|e| format!("cannot start the simulator: {e}"))?;
    let dir = crate::TempDir::new(&format!("mdlr-latency-{}-{n}", std::process::id()))?;
    let names = dir.path().join("machines.txt");
    let list: String = sim
        .machines()
        .iter()
        .map(|m| format!("{}\n", m.dns_name))
        .collect();
    std::fs::write(&names, list).map_err(|e| format!("cannot write {}: {e}", names.display()))?;
    let args = vec![
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
        names.display().to_string(),
        "--script".to_owned(),
        "x.ps1".to_owned(),
        "--poll-interval".to_owned(),
        real_ms(POLL_INTERVAL_S, scale),
        "--wait-timeout".to_owned(),
        real_ms(WAIT_TIMEOUT_S, scale),
    ];
    let bound = sim.quota_bound(n, 1);
    let limit = Duration::from_secs(60) + sim.real(bound) * 6;
    let ran = run_mdlr(bin, &sim, &args, limit)?;
    let log = sim.requests();
    let stats = sim.stats();
    // The simulator's clock: its first request was answered `service_at` into it.
    let origin = log
        .first()
        .map(|r| r.at - sim.real(r.service_at))
        .ok_or("the simulator saw no request")?;
    let service = |at: Instant| at.saturating_duration_since(origin).as_secs_f64() / scale;
    let mut delays = Vec::new();
    let mut last_line = 0.0_f64;
    // One machine prints its transcript alone, as `mdlr result` does; several print a
    // line each, naming the action, after the transcript.
    let only = sim
        .actions()
        .first()
        .and_then(|a| a["id"].as_str().map(str::to_owned));
    let lines = match (n, ran.lines.first()) {
        (1, Some((at, _))) => vec![(*at, only.clone())],
        _ => ran
            .lines
            .iter()
            .map(|(at, line)| (*at, action_of(line).map(str::to_owned)))
            .collect(),
    };
    for (at, id) in &lines {
        let Some(id) = id.as_deref() else { continue };
        let action = sim
            .action(id)
            .ok_or_else(|| format!("mdlr named an action the simulator does not know: {id}"))?;
        let end = action["lastUpdateDateTimeUtc"]
            .as_str()
            .and_then(parse_iso)
            .and_then(|t| t.duration_since(wall).ok())
            .ok_or_else(|| format!("action {id} has no usable lastUpdateDateTimeUtc"))?;
        if action["status"] != "Succeeded" {
            return Err(format!("action {id} is {}", action["status"]));
        }
        let delivered = service(*at);
        delays.push(delivered - end.as_secs_f64());
        last_line = last_line.max(delivered);
    }
    if delays.len() != n {
        return Err(format!(
            "{} of {n} machines reported; mdlr's stderr:\n{}",
            delays.len(),
            ran.stderr
        ));
    }
    if !ran.success {
        return Err(format!("mdlr failed; its stderr:\n{}", ran.stderr));
    }
    let first_start = log
        .iter()
        .find(|r| r.endpoint == "runliveresponse" && r.status == 201)
        .map(|r| service(r.at))
        .ok_or("no action started")?;
    let sim_makespan = stats
        .last_terminal
        .map_or(f64::NAN, |t| service(t) - first_start);
    Ok(Figures {
        delays,
        delivered_makespan: last_line - first_start,
        sim_makespan,
        bound: bound.as_secs_f64(),
        quick: f64::NAN,
        api_calls: stats.api_calls,
        throttled: stats.throttled,
        poll_lists: stats.requests_to("actions"),
    })
}

/// `mdlr run NAME --script x.ps1` on one machine whose action lasts 2 s and up to a
/// tenth more, drawn per round (exactly 2 s would end just before the look 2 s after
/// the start), in real time, with mdlr's defaults.
fn run_quick(bin: &Path, round: usize) -> Result<Figures, String> {
    let mut m = SimMachine::new(1);
    m.pending_for = Some(Duration::from_secs(1));
    m.run_for = Some(Duration::from_secs_f64(1.0 + 0.1 * unit(round as u64)));
    let name = m.dns_name.clone();
    let sim = Simulator::start(SimConfig {
        time_scale: 1.0,
        machines: vec![m],
        ..SimConfig::default()
    })
    .map_err(|e| format!("cannot start the simulator: {e}"))?;
    let args: Vec<String> = ["run", &name, "--script", "x.ps1"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    let ran = run_mdlr(bin, &sim, &args, Duration::from_secs(60))?;
    if !ran.success {
        return Err(format!("mdlr failed; its stderr:\n{}", ran.stderr));
    }
    let (at, line) = ran.lines.first().ok_or("mdlr printed nothing")?;
    if line != &format!("{name}: x.ps1") {
        return Err(format!("unexpected transcript {line:?}"));
    }
    let stats = sim.stats();
    Ok(Figures {
        quick: at.saturating_duration_since(ran.launched).as_secs_f64(),
        api_calls: stats.api_calls,
        throttled: stats.throttled,
        poll_lists: stats.requests_to("actions"),
        ..Figures::default()
    })
}

/// The action id of a batch line `NAME: ... (action ID)`.
fn action_of(line: &str) -> Option<&str> {
    let rest = &line[line.rfind("(action ")? + "(action ".len()..];
    rest.strip_suffix(')')
}

/// `service` seconds scaled to real time, in milliseconds as mdlr parses them.
fn real_ms(service: f64, scale: f64) -> String {
    let ms = (service * scale * 1e6).round() / 1e3;
    format!("{ms}ms")
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction]Z`, as the simulator writes its times.
fn parse_iso(text: &str) -> Option<SystemTime> {
    let text = text.strip_suffix('Z')?;
    let (date, time) = text.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, mo, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, fraction) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.splitn(3, ':').map(|p| p.parse::<u64>().ok());
    let (h, mi, s) = (t.next()??, t.next()??, t.next()??);
    let nanos = if fraction.is_empty() {
        0
    } else {
        let digits: String = fraction
            .chars()
            .chain(std::iter::repeat('0'))
            .take(9)
            .collect();
        digits.parse::<u32>().ok()?
    };
    let days = u64::try_from(days_from_civil(y, mo, day)).ok()?;
    let secs = days * 86_400 + h * 3600 + mi * 60 + s;
    Some(SystemTime::UNIX_EPOCH + Duration::new(secs, nanos))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

struct Ran {
    success: bool,
    launched: Instant,
    /// Each stdout line and when it arrived.
    lines: Vec<(Instant, String)>,
    stderr: String,
}

/// Runs `mdlr --api-url SIM ARGS...` with only `MDLR_TOKEN` in its environment, noting
/// when each line of its stdout arrives; kills it after `limit`.
fn run_mdlr(bin: &Path, sim: &Simulator, args: &[String], limit: Duration) -> Result<Ran, String> {
    let mut command = Command::new(bin);
    command
        .arg("--api-url")
        .arg(sim.api_url())
        .args(args)
        .env_clear()
        .env("MDLR_TOKEN", sim.token())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let launched = Instant::now();
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    let lines = Arc::new(Mutex::new(Vec::new()));
    let reader = child.stdout.take().map(|out| {
        let lines = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let at = Instant::now();
                lines
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((at, line));
            }
        })
    });
    let stderr = crate::read_in_background(child.stderr.take());
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if launched.elapsed() < limit => std::thread::sleep(Duration::from_millis(2)),
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
    if let Some(reader) = reader {
        reader
            .join()
            .map_err(|_| "the thread reading mdlr's stdout panicked".to_owned())?;
    }
    let stderr = String::from_utf8_lossy(&crate::collect(stderr)?).into_owned();
    let lines = std::mem::take(&mut *lines.lock().unwrap_or_else(|e| e.into_inner()));
    Ok(Ran {
        success: status.success(),
        launched,
        lines,
        stderr,
    })
}

// ---------------------------------------------------------------------------------------
// Figures

/// Nearest-rank percentile `p` (0 < p ≤ 1) of `values`.
fn percentile(values: &[f64], p: f64) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

/// One figure over the rounds: median, upper quartile, lowest and highest.
#[derive(Debug, Clone, Copy)]
struct Spread {
    median: f64,
    upper: f64,
    low: f64,
    high: f64,
}

impl Spread {
    fn of(values: &[f64]) -> Spread {
        Spread {
            median: percentile(values, 0.5),
            upper: percentile(values, 0.75),
            low: percentile(values, 0.0),
            high: percentile(values, 1.0),
        }
    }

    fn show(&self, digits: usize) -> String {
        format!(
            "{:.d$} | {:.d$} | {:.d$}–{:.d$}",
            self.median,
            self.upper,
            self.low,
            self.high,
            d = digits
        )
    }
}

struct Report {
    text: String,
    all_met: bool,
}

/// A goal's verdict on some rounds: met at the upper quartile.
fn verdict(values: &[f64], goal: f64) -> bool {
    percentile(values, 0.75) <= goal
}

fn yes(met: bool) -> &'static str {
    if met { "yes" } else { "**no**" }
}

fn report(scenarios: &[Scenario], results: &[Vec<Figures>], rounds: usize) -> Report {
    let per = |pick: &dyn Fn(Scenario) -> bool, f: &dyn Fn(&Figures) -> f64| -> Vec<f64> {
        scenarios
            .iter()
            .zip(results)
            .filter(|(s, _)| pick(**s))
            .flat_map(|(_, runs)| runs.iter().map(f))
            .collect()
    };
    let quick = per(&|s| s == Scenario::Quick, &|f| f.quick);
    let twelve = per(&|s| s == Scenario::Twelve, &|f| {
        f.delivered_makespan / f.bound
    });
    let twelve_sim = per(&|s| s == Scenario::Twelve, &|f| f.sim_makespan / f.bound);
    let throttled: usize = results.iter().flatten().map(|f| f.throttled).sum();
    let runs: usize = results.iter().map(Vec::len).sum();
    // Split halves: even rounds and odd rounds (runs are kept in round order).
    let half = |values: &[f64], odd: usize| -> Vec<f64> {
        values
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 2 == odd)
            .map(|(_, v)| *v)
            .collect()
    };
    let judge = |values: &[f64], goal: f64| -> (bool, String) {
        let all = verdict(values, goal);
        let halves = format!(
            "{} / {}",
            yes(verdict(&half(values, 0), goal)),
            yes(verdict(&half(values, 1), goal))
        );
        (all, halves)
    };
    let (quick_met, quick_halves) = judge(&quick, QUICK_GOAL_S);
    let (twelve_met, twelve_halves) = judge(&twelve, TWELVE_GOAL);
    let mut text = format!(
        "| goal | target | median | upper quartile | spread | met (at the upper quartile) | \
         met in even / odd rounds |\n\
         |---|---|---:|---:|---:|---|---|\n\
         | a 2-second action: launch of `mdlr run` to its transcript on stdout, real time (s) \
         | ≤ {QUICK_GOAL_S} | {} | {} | {quick_halves} |\n\
         | 12 machines under the real quotas: last result delivered ÷ quota bound \
         | ≤ {TWELVE_GOAL} | {} | {} | {twelve_halves} |\n\
         | 429 answers, every run ({runs} runs) | 0 | {throttled} | {throttled} | – | {} | – |\n\n",
        Spread::of(&quick).show(2),
        yes(quick_met),
        Spread::of(&twelve).show(3),
        yes(twelve_met),
        yes(throttled == 0),
    );
    text.push_str(&format!(
        "(12 machines: the last action itself ended at {} of the bound: median | upper \
         quartile | spread.)\n\n",
        Spread::of(&twelve_sim).show(3)
    ));
    text.push_str(
        "| machines | scale | delay p50 (s): median \\| upper quartile \\| spread | \
         delay p95 (s): median \\| upper quartile \\| spread | API calls (median) | \
         status lists (median) | 429s |\n\
         |---:|---:|---|---|---:|---:|---:|\n",
    );
    for (scenario, runs) in scenarios.iter().zip(results) {
        let Scenario::Delay(n, scale) = *scenario else {
            continue;
        };
        let p50: Vec<f64> = runs.iter().map(|f| percentile(&f.delays, 0.5)).collect();
        let p95: Vec<f64> = runs.iter().map(|f| percentile(&f.delays, 0.95)).collect();
        let calls: Vec<f64> = runs.iter().map(|f| f.api_calls as f64).collect();
        let lists: Vec<f64> = runs.iter().map(|f| f.poll_lists as f64).collect();
        let throttled: usize = runs.iter().map(|f| f.throttled).sum();
        text.push_str(&format!(
            "| {n} | {scale} | {} | {} | {:.0} | {:.0} | {throttled} |\n",
            Spread::of(&p50).show(2).replace(" | ", " \\| "),
            Spread::of(&p95).show(2).replace(" | ", " \\| "),
            percentile(&calls, 0.5),
            percentile(&lists, 0.5),
        ));
    }
    text.push_str(&format!(
        "\n{rounds} rounds of every scenario, interleaved.\n"
    ));
    Report {
        text,
        all_met: quick_met && twelve_met && throttled == 0,
    }
}

fn section(
    report: &str,
    machine: &crate::bench_batch::Machine,
    command: &str,
    rounds: usize,
) -> String {
    format!(
        "{START_MARK}\n{SECTION_TITLE}\n\n\
         ```console\n$ {command}\n```\n\n\
         {report}\n\
         {}\n\n\
         - **What runs.** The release `mdlr` binary against the simulator of \
         `tests/src/sim.rs` with the service's quotas (100 API calls a minute, 1500 an \
         hour, 10 starts a minute, 25 actions at once), in an empty environment but for \
         `MDLR_TOKEN`. Each of the {rounds} rounds runs every scenario once, in an order \
         that rotates from round to round.\n\
         - **Delay**: for each machine, the service time from its action's end \
         (`lastUpdateDateTimeUtc` of the ended action) to the moment mdlr printed the \
         machine's line, which it does after the transcript (one machine: the \
         transcript, which it prints alone); p50 and p95 over the \
         machines of a run, then the median, upper quartile and spread of those over the \
         rounds. `mdlr run --machines-file NAMES --script x.ps1` on `SimMachine::many(N)` \
         (each action `Pending` 10 s, then a RunScript of 20 s and a fraction of a second \
         drawn per machine and round, so that actions end at every moment between two \
         looks), with mdlr's defaults (`--poll-interval 5s`, `--wait-timeout 15m`) and \
         quotas scaled like the service's time: at scale 0.1 a service second lasts \
         100 ms, and a millisecond of mdlr's or the simulator's own work counts as 10 ms \
         (20 ms at 0.05), which only lengthens the delays. Without `-o`: with it every \
         result and the journal are synced to disk, milliseconds the scaling would \
         multiply likewise.\n\
         - **12 machines**: the same run with 12 machines; from the first start to the \
         last machine's line, over `SimConfig::quota_bound(12, 1)` (90 s and the drawn \
         fractions: ten start at once, two a minute later, each action lasts 30 s), the \
         bound `bench-batch` uses.\n\
         - **2-second action**: real time, scale 1 (no scaling error): one machine whose \
         action is `Pending` 1 s and runs 1 s and up to a tenth more, drawn per round (an \
         action of exactly 2 s ends just before mdlr's look 2 s after its start, which \
         would flatter; a little longer, it is seen at the next look); `mdlr run NAME \
         --script x.ps1` with nothing but the API URL on its command line; from launching \
         mdlr to the transcript on its stdout (the name lookup and the start included).\n\
         - **Verdicts** are taken at the upper quartile of the rounds, never the best \
         round; the last column judges the even and the odd rounds apart, as two repeats.\n\
         {END_MARK}\n",
        machine.line(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options() {
        let o = parse(&[]).map_err(|e| e.to_string());
        assert!(
            o.as_ref()
                .is_ok_and(|o| o.rounds == DEFAULT_ROUNDS && o.write)
        );
        let o = parse(&["--rounds", "4", "--no-write"]);
        assert!(o.as_ref().is_ok_and(|o| o.rounds == 4 && !o.write));
        assert!(parse(&["--rounds", "1"]).is_err());
        assert!(parse(&["--rounds"]).is_err());
        assert!(parse(&["--fast"]).is_err());
    }

    #[test]
    fn helpers() {
        assert_eq!(
            action_of("host0001.contoso.test: Succeeded (action 1234-ab)"),
            Some("1234-ab")
        );
        assert_eq!(action_of("== host0001 (command 0, exit code 0)"), None);
        let t = parse_iso("2024-02-29T01:02:03.5000000Z");
        let want = SystemTime::UNIX_EPOCH + Duration::from_millis(1_709_168_523_500);
        assert_eq!(t, Some(want));
        assert_eq!(parse_iso("2024-02-29T01:02:03"), None);
        assert_eq!(percentile(&[3.0, 1.0, 2.0, 4.0], 0.5), 2.0);
        assert_eq!(percentile(&[3.0, 1.0, 2.0, 4.0], 0.75), 3.0);
        assert_eq!(percentile(&[3.0, 1.0, 2.0, 4.0], 0.0), 1.0);
        assert_eq!(percentile(&[3.0, 1.0, 2.0, 4.0], 1.0), 4.0);
        assert!(verdict(&[1.0, 2.0, 3.0, 9.0], 3.0));
        assert!(!verdict(&[1.0, 2.0, 4.0, 9.0], 3.0));
        assert_eq!(real_ms(5.0, 0.1), "500ms");
    }
}
