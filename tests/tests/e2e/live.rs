//! `mdlr run | getfile | putfile` and the commands around them (cancel, actions,
//! machines, library) against the live response simulator (`mdlr_tests::sim`), with
//! time scaled down ([`SCALE`]) and the client's quotas scaled to match.
//!
//! Tests slower than ~15 s are `#[ignore]`d: `cargo xtask test --slow` runs them.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use mdlr_tests::sim::{
    LibraryFile, Outcome as SimOutcome, Quota, QuotaKind, SimConfig, SimMachine, SimStats,
};
use serde_json::Value;

use crate::util::*;

/// `text` with every action id the simulator knows replaced by `{ACTION}`.
fn mask_actions(sim: &Sim, text: &str) -> String {
    let mut text = text.to_owned();
    for a in sim.sim.actions() {
        if let Some(id) = a["id"].as_str() {
            text = text.replace(id, "{ACTION}");
        }
    }
    text
}

/// Checks the exit status, stdout and stderr of a run, with action ids masked.
#[track_caller]
fn check_masked(sim: &Sim, out: &Outcome, code: i32, stdout: &str, stderr: &str) {
    out.status(code);
    assert_eq!(
        mask_actions(sim, &out.normalize(&out.stdout)),
        stdout,
        "stdout\n--- stderr\n{}",
        out.stderr
    );
    assert_eq!(
        mask_actions(sim, &out.normalize(&out.stderr)),
        stderr,
        "stderr"
    );
}

/// stdout's lines, sorted, with action ids masked.
fn sorted_lines(sim: &Sim, text: &str) -> Vec<String> {
    let mut lines: Vec<String> = mask_actions(sim, text).lines().map(str::to_owned).collect();
    lines.sort();
    lines
}

/// Checks that every machine got exactly one action started through the API.
#[track_caller]
fn check_one_start_each(sim: &Sim, machines: usize) {
    let stats = sim.stats();
    assert_eq!(stats.starts_per_machine.len(), machines, "machines started");
    assert_eq!(stats.max_starts_per_machine(), 1, "starts per machine");
}

/// The summary line closing a batch on stderr, as `(machines, started, poll rounds)`.
#[track_caller]
fn summary(out: &Outcome) -> (usize, usize, usize) {
    let line = out
        .stderr
        .lines()
        .find(|l| l.contains(" machine(s), "))
        .unwrap_or_else(|| panic!("no summary line on stderr:\n{}", out.stderr));
    let numbers: Vec<usize> = line
        .trim_start_matches("mdlr: ")
        .split(", ")
        .filter_map(|part| part.split(' ').next()?.parse().ok())
        .collect();
    assert!(numbers.len() >= 3, "summary line {line:?}");
    (numbers[0], numbers[1], numbers[2])
}

/// A library with `x.ps1` and `tool.ps1`.
fn library() -> Vec<LibraryFile> {
    vec![
        LibraryFile::new("x.ps1", b"Write-Output x\r\n"),
        LibraryFile::new("tool.ps1", b"Write-Output tool\r\n"),
    ]
}

// --- One machine ---------------------------------------------------------------------------

#[test]
fn run_prints_the_transcript_and_exits_with_the_script_code() {
    let mut m = SimMachine::new(1);
    m.script_exit_code = 3;
    m.script_errors = "a warning\n".to_owned();
    let sim = Sim::with(vec![m]);
    let out = sim
        .live(&["run", &host(1), "--script", "x.ps1", "--args", "-Days 3"])
        .run();
    check_masked(
        &sim,
        &out,
        3,
        "host0001.contoso.test: x.ps1 -Days 3\n",
        "a warning\n",
    );
    check_one_start_each(&sim, 1);
    let action = &sim.sim.actions()[0];
    assert_eq!(action["status"], "Succeeded");
    assert_eq!(action["requestorComment"], "mdlr run x.ps1");
}

#[test]
fn run_as_json() {
    let mut m = SimMachine::new(1);
    m.script_exit_code = 3;
    let sim = Sim::with(vec![m]);
    let out = sim
        .live(&["--json", "run", &host(1), "--script", "x.ps1"])
        .run();
    // As `mdlr --json result`: exit 0 once the transcript is retrieved; the script's
    // code is in the record.
    out.status(0);
    let lines = out.json_lines();
    assert_eq!(lines.len(), 1, "{}", out.stdout);
    let v = &lines[0];
    let id = sim.sim.actions()[0]["id"].clone();
    assert_eq!(v["machine"], host(1));
    assert_eq!(v["machine_id"], sim.machine(1).id);
    assert_eq!(v["action_id"], id);
    assert_eq!(v["exit_status"], 0);
    let r = &v["results"][0];
    assert_eq!(r["index"], 0);
    assert_eq!(r["type"], "RunScript");
    assert_eq!(r["script_name"], "x.ps1");
    assert_eq!(r["exit_code"], 3);
    assert_eq!(r["script_output"], "host0001.contoso.test: x.ps1\n");
    assert_eq!(r["script_errors"], "");
    assert_eq!(out.stderr, "");
}

#[test]
fn run_no_wait_prints_the_action_id() {
    let mut m = SimMachine::new(1);
    m.run_for = Some(Duration::from_secs(600));
    let sim = Sim::with(vec![m]);
    let out = sim
        .live(&["run", &host(1), "--script", "x.ps1", "--no-wait"])
        .status(0);
    let actions = sim.sim.actions();
    assert_eq!(actions.len(), 1);
    assert_eq!(
        out.stdout,
        format!("{}\n", actions[0]["id"].as_str().expect("id"))
    );
    assert_ne!(actions[0]["status"], "Succeeded", "it did not wait");
    assert_eq!(sim.stats().requests_to("link"), 0);
}

#[test]
fn machine_by_id_needs_no_lookup() {
    let sim = Sim::with(SimMachine::many(2));
    let id = sim.machine(2).id;
    let out = sim.live(&["run", &id, "--script", "x.ps1"]).run();
    check_masked(&sim, &out, 0, "host0002.contoso.test: x.ps1\n", "");
    assert_eq!(sim.stats().requests_to("machines"), 0);
    let upper = id.to_ascii_uppercase();
    sim.live(&["run", &upper, "--script", "x.ps1"]).status(0);
    assert_eq!(sim.stats().starts_per_machine[&id], 2);
}

#[test]
fn machines_by_name_take_one_lookup() {
    let sim = Sim::with(SimMachine::many(3));
    sim.live(&[
        "run",
        &host(1),
        "HOST0003.contoso.test",
        "--script",
        "x.ps1",
    ])
    .status(0);
    assert_eq!(sim.stats().requests_to("machines"), 1);
    check_one_start_each(&sim, 2);
}

#[test]
fn unknown_machines_are_66_and_listed() {
    let sim = Sim::with(SimMachine::many(2));
    let out = sim
        .live(&[
            "run",
            &host(1),
            "nosuch.contoso.test",
            "other.contoso.test",
            "--script",
            "x.ps1",
        ])
        .run();
    check_masked(
        &sim,
        &out,
        66,
        "",
        "mdlr: no machine is named nosuch.contoso.test; no machine is named other.contoso.test\n",
    );
    assert_eq!(sim.stats().starts, 0, "nothing starts");
}

#[test]
fn an_ambiguous_name_is_66_with_the_candidates() {
    let mut twin = SimMachine::new(2);
    twin.dns_name = host(1);
    let sim = Sim::with(vec![SimMachine::new(1), twin]);
    let out = sim.live(&["run", &host(1), "--script", "x.ps1"]).run();
    out.check_err(
        66,
        &[
            "host0001.contoso.test names 2 machines; pass one id: ",
            &sim.machine(1).id,
            &sim.machine(2).id,
        ],
    );
    assert_eq!(sim.stats().starts, 0, "nothing starts");
}

// --- Quotas --------------------------------------------------------------------------------

/// Runs one RunScript on every machine of `config` (by id, from a file) and checks the
/// quota figures: no 429, no quota window ever fuller than its limit, one start per
/// machine, every result delivered, at most 50 actions at once, a makespan within 10 %
/// of the bound the quotas set, and API calls within 2N + poll rounds + a small
/// constant. The client's quotas are the simulator's ([`Sim::quota_args`]).
#[track_caller]
fn check_quota_batch(config: SimConfig) -> SimStats {
    let (n, scale) = (config.machines.len(), config.time_scale);
    let sim = Sim::start(config);
    let list: String = sim
        .sim
        .machines()
        .iter()
        .map(|m| format!("{}\n", m.id))
        .collect();
    write(sim.dir.join("hosts.txt"), list);
    let begun = Instant::now();
    let out = sim
        .live(&[
            "run",
            "--machines-file",
            "hosts.txt",
            "--script",
            "x.ps1",
            "-o",
            "out",
        ])
        .run();
    let wall = begun.elapsed();
    out.status(0);
    let stats = sim.stats();
    let (machines, started, rounds) = summary(&out);
    let bound = sim.sim.quota_bound(n, 1);
    let makespan = stats.makespan_service().expect("a makespan");
    let ratio = makespan.as_secs_f64() / bound.as_secs_f64();
    eprintln!(
        "{n} machines at scale {scale}: makespan {:.0} s / bound {:.0} s = {ratio:.3}; \
         {} API calls, {rounds} poll rounds, {} throttled, busiest windows {:?}, \
         peak {} at once; {:.1} s real",
        makespan.as_secs_f64(),
        bound.as_secs_f64(),
        stats.api_calls,
        stats.throttled,
        stats.busiest_window,
        stats.peak_concurrent,
        wall.as_secs_f64()
    );
    assert_eq!((machines, started), (n, n), "summary: {}", out.stderr);
    assert_eq!(stats.throttled, 0, "429s: {:?}", stats.throttled_by);
    let config = sim.sim.config();
    for (kind, quota) in [
        (QuotaKind::ApiPerMinute, config.api_per_minute),
        (QuotaKind::ApiPerHour, config.api_per_hour),
        (QuotaKind::StartsPerMinute, config.starts_per_minute),
    ] {
        let busiest = stats.busiest_window.get(&kind).copied().unwrap_or(0);
        assert!(
            busiest <= quota.limit,
            "{kind:?}: {busiest} calls in a window"
        );
    }
    check_one_start_each(&sim, n);
    assert!(
        stats.peak_concurrent <= 50,
        "peak {}",
        stats.peak_concurrent
    );
    assert!(
        ratio <= 1.10,
        "makespan {makespan:?} against the bound {bound:?}"
    );
    assert!(
        stats.api_calls <= 2 * n + rounds + 5,
        "{} API calls for {n} machines and {rounds} poll rounds",
        stats.api_calls
    );
    assert_eq!(
        stats.requests_to("action"),
        0,
        "states come from list queries"
    );
    // Two files a machine, the journal and the evidence manifest.
    assert_eq!(files_under(&sim.dir.join("out")).len(), 2 * n + 2);
    stats
}

#[test]
fn two_hundred_machines_within_the_quotas() {
    check_quota_batch(sim_config(SimMachine::many(200)));
}

/// The hour's quota binding, in seconds of wall time: the service's quotas with the
/// hour cut to a fifth, 300 calls in any 12 minutes, make 200 machines what 1000 are
/// to the real hour ([`five_hundred_machines_within_the_quotas`] runs the real quotas,
/// slowly). At 10 starts a minute, a window's 120 starts and 120 links leave 60 of its
/// 300 calls, and a look at the actions every 5 s (144 a window) would not fit.
///
/// mdlr must plan its polls (`poll_floor`: one every 16 s while machines wait to
/// start) so that the window never fills; unplanned, it fills and calls wait for it
/// (the makespan hardly shows it: the limiter holds back polls and links as well as
/// starts). And its limiter must keep the longer window, or the service answers 429.
/// (A tenth of the hour, 150 calls in 6 minutes and 100 machines, would take half the
/// time, but its window's edges, links bunched behind a 16 s poll, come within a
/// couple of calls of the twentieth the plan leaves spare.)
#[test]
fn the_hourly_quota_binds_and_polls_make_room_for_starts_and_links() {
    let hour = Quota::new(300, Duration::from_secs(720));
    let config = SimConfig {
        api_per_hour: hour,
        ..sim_config(SimMachine::many(200))
    };
    // The scenario binds: a window's starts and links, and polls every 5 s, are more
    // than the quota.
    let window = hour.window.as_secs() as usize;
    let starts = window / 60 * config.starts_per_minute.limit;
    assert!(2 * starts + window / 5 > hour.limit);
    let stats = check_quota_batch(config);
    let busiest = stats.busiest_window[&QuotaKind::ApiPerHour];
    assert!(
        busiest >= 2 * starts,
        "the hour's quota never came close to binding: {busiest} calls at most in a window"
    );
    assert!(
        busiest < hour.limit,
        "the hour's window filled ({busiest} calls): calls waited for it, polls were not \
         planned to leave starts and links room"
    );
}

#[test]
fn long_actions_keep_to_50_at_once() {
    // 50 starts take 5 minutes at 10 a minute; actions of 400 s are all still running
    // then, and the 51st must wait for one to end.
    let n = 60;
    let sim = Sim::start(SimConfig {
        run_for: Duration::from_secs(400),
        ..sim_config(SimMachine::many(n))
    });
    let hosts: Vec<String> = (1..=n).map(host).collect();
    let mut args = vec!["run"];
    args.extend(hosts.iter().map(String::as_str));
    args.extend(["--script", "x.ps1", "-o", "out"]);
    let out = sim.live(&args).run();
    out.status(0);
    let stats = sim.stats();
    // The concurrency limit binds: the bound has actions wait for others to end, and
    // mdlr learns that an action ended only at its next look (a second or so later).
    let bound = sim.sim.quota_bound(n, 1);
    let makespan = stats.makespan_service().expect("a makespan");
    let ratio = makespan.as_secs_f64() / bound.as_secs_f64();
    assert!(
        ratio <= 1.2,
        "makespan {makespan:?} against the bound {bound:?}"
    );
    assert_eq!(stats.peak_concurrent, 50);
    assert_eq!(stats.throttled, 0, "{:?}", stats.throttled_by);
    check_one_start_each(&sim, n);
}

#[test]
fn max_in_flight_caps_unfinished_actions() {
    let sim = Sim::with(SimMachine::many(8));
    let hosts: Vec<String> = (1..=8).map(host).collect();
    let mut args = vec!["run"];
    args.extend(hosts.iter().map(String::as_str));
    args.extend(["--script", "x.ps1", "--max-in-flight", "3", "-o", "out"]);
    let out = sim.live(&args).run();
    out.status(0);
    let stats = sim.stats();
    assert_eq!(stats.peak_concurrent, 3);
    assert_eq!(stats.throttled, 0);
    check_one_start_each(&sim, 8);
    assert_eq!(summary(&out).1, 8);
}

/// Service seconds at which the simulator answered each request to `endpoint`.
fn service_times(sim: &Sim, endpoint: &str) -> Vec<f64> {
    sim.sim
        .requests()
        .iter()
        .filter(|r| r.endpoint == endpoint)
        .map(|r| r.service_at.as_secs_f64())
        .collect()
}

/// The gaps between consecutive times.
fn gaps(times: &[f64]) -> Vec<f64> {
    times.windows(2).map(|w| w[1] - w[0]).collect()
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Scale of the tests of when mdlr looks: a service second lasts 100 ms, so the
/// client's own delays (a few milliseconds on a busy machine) weigh a few hundredths of
/// a second.
const LOOK_SCALE: f64 = 0.1;

#[test]
fn a_batch_looks_a_second_after_the_start_then_every_second() {
    let mut m = SimMachine::new(1);
    m.run_for = Some(Duration::from_secs(40));
    let sim = Sim::start(SimConfig {
        time_scale: LOOK_SCALE,
        ..sim_config(vec![m])
    });
    sim.live(&["run", &host(1), "--script", "x.ps1"]).check(
        0,
        "host0001.contoso.test: x.ps1\n",
        "",
    );
    let started = service_times(&sim, "runliveresponse");
    let looks = service_times(&sim, "actions");
    assert_eq!(started.len(), 1);
    let first = looks.first().copied().unwrap_or(f64::NAN) - started[0];
    // --poll-interval 5s (the default): the first look after a fifth of it.
    assert!(
        (0.9..=2.0).contains(&first),
        "first look {first:.2} s after the start; looks at {looks:?}"
    );
    // One action, nothing else to spend: the quotas allow a look every second.
    let between = gaps(&looks);
    assert!(
        (0.9..=1.3).contains(&median(&between)),
        "gaps between looks: {between:?}"
    );
    let long = between.iter().filter(|g| **g > 2.0).count();
    assert!(long <= 2, "gaps between looks: {between:?}");
    // The action ended 50 s after its start (10 s pending, 40 s running); its result
    // was asked for within about a second of that.
    let link = service_times(&sim, "link");
    let late = link.first().copied().unwrap_or(f64::NAN) - (started[0] + 50.0);
    assert!(
        (0.0..=1.6).contains(&late),
        "result link {late:.2} s after the end"
    );
    let stats = sim.stats();
    assert_eq!(stats.throttled, 0, "{:?}", stats.throttled_by);
    assert_eq!(stats.requests_to("action"), 0, "list queries only");
}

#[test]
fn waiting_for_one_action_looks_at_once_then_after_a_second_then_less_often() {
    let mut m = SimMachine::new(1);
    m.run_for = Some(Duration::from_secs(40));
    let sim = Sim::start(SimConfig {
        time_scale: LOOK_SCALE,
        ..sim_config(vec![m])
    });
    let out = sim
        .live(&["run", &host(1), "--script", "x.ps1", "--no-wait"])
        .status(0);
    let id = out.stdout.trim().to_owned();
    let out = sim.live(&["action", &id, "--wait"]).status(0);
    assert!(out.stdout.contains("Succeeded"), "{}", out.stdout);
    let looks = service_times(&sim, "action");
    let between = gaps(&looks);
    // At once, then 1 s later (a fifth of --poll-interval), then half as long again
    // each time up to 5 s.
    assert!(
        (0.9..=2.0).contains(&between[0]),
        "gaps between looks: {between:?}"
    );
    assert!(
        between.windows(2).all(|w| w[1] >= w[0] - 0.5),
        "growing: {between:?}"
    );
    let longest = between.iter().copied().fold(0.0, f64::max);
    assert!((4.5..=6.5).contains(&longest), "up to 5 s: {between:?}");
    // 50 s of action: looks at 0, 1, 2.5, 4.75, 8.1, 13.1 s, then every 5 s.
    assert!(
        (10..=16).contains(&looks.len()),
        "{} looks: {between:?}",
        looks.len()
    );
    assert_eq!(sim.stats().throttled, 0);
}

/// 100 machines, 8 starts a minute, and an API quota of 200 calls in 10 minutes: their
/// starts and links take 160 of every 200, and the looks get what is left — one every
/// 20 s or so while machines wait to start, every few seconds once all are started.
#[test]
fn looks_come_more_often_once_few_actions_are_left() {
    let n = 100;
    let scale = 0.005;
    let sim = Sim::start(SimConfig {
        time_scale: scale,
        api_per_hour: mdlr_tests::sim::Quota::new(200, Duration::from_secs(600)),
        starts_per_minute: mdlr_tests::sim::Quota::new(8, Duration::from_secs(60)),
        ..sim_config(SimMachine::many(n))
    });
    let list: String = sim
        .sim
        .machines()
        .iter()
        .map(|m| format!("{}\n", m.id))
        .collect();
    write(sim.dir.join("hosts.txt"), list);
    let args = ["run", "--machines-file", "hosts.txt", "--script", "x.ps1"];
    // The last --api-quota and --start-quota count: these replace the default ones.
    let api_quota = format!("100/{},200/{}", sim.dur(60.0), sim.dur(600.0));
    let start_quota = format!("8/{}", sim.dur(60.0));
    let out = sim
        .live(&args)
        .args(&["--api-quota", &api_quota, "--start-quota", &start_quota])
        .run();
    out.status(0);
    let stats = sim.stats();
    assert_eq!(stats.throttled, 0, "429s: {:?}", stats.throttled_by);
    check_one_start_each(&sim, n);
    let starts = service_times(&sim, "runliveresponse");
    let looks = service_times(&sim, "actions");
    // While 20 or more machines wait to start, and after the last start.
    let busy_until = starts[n - 20];
    let last_start = starts[n - 1];
    let early: Vec<f64> = looks
        .windows(2)
        .filter(|w| w[1] <= busy_until)
        .map(|w| w[1] - w[0])
        .collect();
    let late: Vec<f64> = looks
        .windows(2)
        .filter(|w| w[0] >= last_start)
        .map(|w| w[1] - w[0])
        .collect();
    let (early, late) = (median(&early), median(&late));
    // (Before the looks were paced by the budget, they came every 5 s after a change
    // and less often while nothing changed: 8 s at the median after the last start.)
    assert!(
        early >= 12.0 && late <= 6.0,
        "median gap between looks {early:.1} s while machines wait to start, {late:.1} s after"
    );
    // The looks held up no start and no link: no window of an API quota ever filled,
    // so the limiter never had a call wait.
    let counted: Vec<f64> = sim
        .sim
        .requests()
        .iter()
        .filter(|r| r.status != 429 && r.status != 401 && !matches!(r.endpoint, "blob" | "token"))
        .map(|r| r.service_at.as_secs_f64())
        .collect();
    for (limit, window) in [(100, 60.0), (200, 600.0)] {
        let busiest = (0..counted.len())
            .map(|i| {
                counted[i..]
                    .iter()
                    .take_while(|t| **t - counted[i] < window)
                    .count()
            })
            .max()
            .unwrap_or(0);
        assert!(
            busiest < limit - 1,
            "{busiest} calls in {window} s: the window filled (limit {limit})"
        );
    }
}

#[test]
fn a_batch_without_waiting_lists_the_started_actions() {
    let sim = Sim::with(SimMachine::many(2));
    let out = sim
        .live(&["run", &host(1), &host(2), "--script", "x.ps1", "--no-wait"])
        .run();
    out.status(0);
    assert_eq!(
        sorted_lines(&sim, &out.stdout),
        [
            "host0001.contoso.test: started (action {ACTION})",
            "host0002.contoso.test: started (action {ACTION})",
        ]
    );
    assert_eq!(summary(&out), (2, 2, 0));
    assert_eq!(sim.stats().requests_to("actions"), 0, "no poll");
}

/// 500 machines at the service's quotas: 50 minutes of service time, where the hour's
/// quota comes close.
#[test]
#[ignore = "slow: 20 s; cargo xtask test --slow"]
fn five_hundred_machines_within_the_quotas() {
    check_quota_batch(SimConfig {
        time_scale: 0.005,
        ..sim_config(SimMachine::many(500))
    });
}

// --- Chains --------------------------------------------------------------------------------

/// A machine whose `C:\Temp\a.txt` holds some bytes that do not compress to themselves.
fn machine_with_a_file(n: usize) -> SimMachine {
    let mut m = SimMachine::new(n);
    let content: Vec<u8> = (0..20_000u32)
        .flat_map(|i| (i * 7919).to_le_bytes())
        .collect();
    m.files = vec![(r"C:\Temp\a.txt".to_owned(), content)];
    m
}

#[test]
fn a_chain_delivers_the_transcript_and_the_file() {
    let sim = Sim::start(SimConfig {
        library: library(),
        ..sim_config(vec![machine_with_a_file(1)])
    });
    let out = sim
        .live(&[
            "run",
            &host(1),
            "--put",
            "tool.ps1",
            "--script",
            "x.ps1",
            "--get",
            r"C:\Temp\a.txt",
        ])
        .run();
    let content = sim.machine(1).file_content(r"C:\Temp\a.txt");
    check_masked(
        &sim,
        &out,
        0,
        &format!(
            "host0001.contoso.test: x.ps1\nsaved a.txt ({} bytes)\n",
            content.len()
        ),
        "",
    );
    assert_eq!(read(sim.dir.join("a.txt")), content);
    assert_eq!(list(sim.dir.path()), ["a.txt"]);
    let action = &sim.sim.actions()[0];
    let types: Vec<&str> = action["commands"]
        .as_array()
        .expect("commands")
        .iter()
        .map(|c| c["command"]["type"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(types, ["PutFile", "RunScript", "GetFile"]);
    assert_eq!(
        sim.stats().requests_to("link"),
        2,
        "no link for the PutFile"
    );
}

#[test]
fn a_chain_needs_its_files_in_the_library() {
    let sim = Sim::with(SimMachine::many(1));
    let out = sim
        .live(&["run", &host(1), "--put", "tool.ps1", "--script", "x.ps1"])
        .run();
    check_masked(
        &sim,
        &out,
        64,
        "",
        "mdlr: host0001.contoso.test: not started: the API answered 400: File tool.ps1 was not found in the live response library [BadRequest] (action none)\n",
    );
    assert_eq!(sim.stats().starts, 0);
}

#[test]
fn getfile_with_an_output_directory() {
    let sim = Sim::with(vec![machine_with_a_file(1)]);
    let out = sim
        .live(&["getfile", &host(1), r"C:\Temp\a.txt", "-o", "evidence"])
        .run();
    out.status(0);
    assert_eq!(
        sorted_lines(&sim, &out.stdout),
        ["host0001.contoso.test: Succeeded (action {ACTION})"]
    );
    assert_eq!(summary(&out), (1, 1, summary(&out).2));
    assert_eq!(
        read(sim.dir.join("evidence").join(host(1)).join("a.txt")),
        sim.machine(1).file_content(r"C:\Temp\a.txt")
    );
}

#[test]
fn putfile_has_nothing_to_deliver() {
    let sim = Sim::start(SimConfig {
        library: library(),
        ..sim_config(SimMachine::many(1))
    });
    let out = sim.live(&["putfile", &host(1), "tool.ps1"]).run();
    check_masked(
        &sim,
        &out,
        0,
        "",
        "mdlr: command 0 of action {ACTION} is a PutFile: it has no result\n",
    );
    let out = sim.live(&["--json", "putfile", &host(1), "tool.ps1"]).run();
    out.status(0);
    assert_eq!(
        out.json_lines()[0]["results"],
        serde_json::json!([{"index": 0, "type": "PutFile", "result": null}])
    );
    assert_eq!(sim.stats().requests_to("link"), 0);
    assert_eq!(list(sim.dir.path()), Vec::<String>::new());
    assert_eq!(
        sim.sim.actions()[0]["requestorComment"],
        "mdlr putfile tool.ps1"
    );
}

// --- How actions end -----------------------------------------------------------------------

/// Runs `x.ps1` on one machine whose action ends as `outcome` and checks the exit
/// status and stderr (action ids masked).
#[track_caller]
fn check_ending(outcome: SimOutcome, code: i32, stderr: &str) {
    let sim = Sim::start(SimConfig {
        timeout_after: Duration::from_secs(60),
        ..sim_config(vec![SimMachine::new(1).with_outcome(outcome)])
    });
    let out = sim.live(&["run", &host(1), "--script", "x.ps1"]).run();
    check_masked(&sim, &out, code, "", stderr);
}

#[test]
fn a_failed_action_is_69() {
    check_ending(
        SimOutcome::failed(0),
        69,
        "mdlr: host0001.contoso.test: Failed; command 0 failed: The command failed on the machine (simulated). (action {ACTION})\n",
    );
}

#[test]
fn an_action_that_timed_out_is_75() {
    check_ending(
        SimOutcome::TimeOut,
        75,
        "mdlr: host0001.contoso.test: TimeOut (action {ACTION})\n",
    );
}

#[test]
fn a_cancelled_action_is_69() {
    check_ending(
        SimOutcome::Cancelled,
        69,
        "mdlr: host0001.contoso.test: Cancelled (action {ACTION})\n",
    );
}

#[test]
fn a_wait_that_times_out_is_75_with_the_pick_up_hint() {
    let mut m = SimMachine::new(1);
    m.run_for = Some(Duration::from_secs(100));
    let sim = Sim::with(vec![m]);
    let timeout = sim.dur(20.0);
    let out = sim
        .live(&[
            "run",
            &host(1),
            "--script",
            "x.ps1",
            "--wait-timeout",
            &timeout,
        ])
        .run();
    check_masked(
        &sim,
        &out,
        75,
        "",
        "mdlr: host0001.contoso.test: still InProgress after the wait timeout; pick it up with `mdlr result {ACTION} --all --wait` (action {ACTION})\n",
    );
    assert_eq!(sim.sim.actions()[0]["status"], "InProgress", "it goes on");
    // The hint works.
    let id = sim.sim.actions()[0]["id"].as_str().expect("id").to_owned();
    sim.live(&["result", &id, "--all", "--wait"]).check(
        0,
        "host0001.contoso.test: x.ps1
",
        "",
    );
    check_one_start_each(&sim, 1);
}

// --- Actions, machines and the library -----------------------------------------------------

#[test]
fn actions_lists_and_cancel_cancels() {
    let mut m = SimMachine::new(2);
    m.run_for = Some(Duration::from_secs(600));
    let sim = Sim::with(vec![SimMachine::new(1), m]);
    sim.live(&["run", &host(1), "--script", "x.ps1"]).status(0);
    let out = sim
        .live(&["run", &host(2), "--script", "x.ps1", "--no-wait"])
        .status(0);
    let id = out.stdout.trim().to_owned();
    // Wait for it to leave Pending (10 s of service time).
    std::thread::sleep(sim.sim.real(Duration::from_secs(12)));
    let out = sim
        .mdlr(&["actions", "--machine", &host(2), "--status", "InProgress"])
        .run();
    out.status(0);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{}", out.stdout);
    assert!(
        lines[0].starts_with(&format!("{id}  InProgress  LiveResponse  {}", host(2))),
        "{}",
        lines[0]
    );
    assert_eq!(out.stderr, "mdlr: 1 action(s)\n");
    let out = sim
        .mdlr(&["--json", "actions", "--machine", &host(1)])
        .status(0);
    let listed = out.json_lines();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["status"], "Succeeded");

    sim.mdlr(&["cancel", &id, "--comment", "wrong machine"])
        .check(
            0,
            &format!("cancellation requested for action {id} (status Cancelled)\n"),
            "",
        );
    let action = sim.sim.action(&id).expect("the action");
    assert_eq!(action["status"], "Cancelled");
    assert_eq!(action["cancellationComment"], "wrong machine");
    let out = sim.mdlr(&["cancel", &id]).run();
    out.check_err(64, &["cannot cancel action", "already ended", "BadRequest"]);
}

#[test]
fn machines_by_name() {
    let sim = Sim::with(SimMachine::many(3));
    let out = sim.mdlr(&["machines", "--name", &host(2)]).run();
    out.status(0);
    assert!(
        out.stdout.starts_with(&format!(
            "{:<42}{:<36}Windows11",
            sim.machine(2).id,
            host(2)
        )),
        "{}",
        out.stdout
    );
    assert_eq!(out.stdout.lines().count(), 1);
    let out = sim
        .mdlr(&["--json", "machines", "--name", &host(3)])
        .status(0);
    assert_eq!(out.json_lines()[0]["id"], sim.machine(3).id);
    sim.mdlr(&["machines", "--name", "nosuch.contoso.test"])
        .run()
        .check_err(66, &["no machine is named nosuch.contoso.test"]);
    let out = sim.mdlr(&["machines"]).status(0);
    assert_eq!(out.stdout.lines().count(), 3);
}

#[test]
fn library_upload_list_override_delete() {
    let sim = Sim::with(SimMachine::many(1));
    write(sim.dir.join("triage.ps1"), "Write-Output triage\r\n");
    sim.mdlr(&[
        "library",
        "upload",
        "triage.ps1",
        "--description",
        "Collect triage data",
        "--parameters-description",
        "-Days N",
    ])
    .check(0, "uploaded triage.ps1 (21 bytes)\n", "");
    let out = sim.mdlr(&["--json", "library", "list"]).status(0);
    let files = out.json_lines();
    let triage = files
        .iter()
        .find(|f| f["fileName"] == "triage.ps1")
        .expect("triage.ps1 listed");
    assert_eq!(triage["description"], "Collect triage data");
    assert_eq!(triage["parametersDescription"], "-Days N");
    assert_eq!(triage["hasParameters"], true);
    let sha = triage["sha256"].clone();

    // The same name again: refused without --override, replaced with it.
    write(sim.dir.join("triage.ps1"), "Write-Output triage v2\r\n");
    let out = sim
        .mdlr(&["library", "upload", "triage.ps1", "--description", "v2"])
        .run();
    out.check_err(
        64,
        &[
            "mdlr: cannot upload triage.ps1: ",
            "already exists",
            "BadRequest",
        ],
    );
    sim.mdlr(&[
        "library",
        "upload",
        "triage.ps1",
        "--description",
        "v2",
        "--override",
    ])
    .check(0, "uploaded triage.ps1 (24 bytes)\n", "");
    let out = sim.mdlr(&["library", "list"]).status(0);
    assert!(out.stdout.contains("triage.ps1"), "{}", out.stdout);
    let out = sim.mdlr(&["--json", "library", "list"]).status(0);
    let triage = out
        .json_lines()
        .into_iter()
        .find(|f| f["fileName"] == "triage.ps1")
        .expect("triage.ps1 listed");
    assert_eq!(triage["description"], "v2");
    assert_ne!(triage["sha256"], sha);

    // The new script runs.
    sim.live(&["run", &host(1), "--script", "triage.ps1"])
        .check(0, "host0001.contoso.test: triage.ps1\n", "");

    sim.mdlr(&["library", "delete", "triage.ps1"])
        .check(0, "deleted triage.ps1\n", "");
    let out = sim.mdlr(&["library", "list"]).status(0);
    assert!(!out.stdout.contains("triage.ps1"), "{}", out.stdout);
    let out = sim.mdlr(&["library", "delete", "triage.ps1"]).run();
    out.check_err(66, &["mdlr: cannot delete triage.ps1: "]);
}

// --- Busy machines -------------------------------------------------------------------------

/// Machine 1 busy with somebody else's action for 100 s of service time.
fn busy_sim() -> Sim {
    let mut m = SimMachine::new(1);
    m.busy_for = Some(Duration::from_secs(100));
    Sim::with(vec![m, SimMachine::new(2)])
}

#[test]
fn a_busy_machine_is_waited_for() {
    let sim = busy_sim();
    let out = sim.live(&["run", &host(1), "--script", "x.ps1"]).run();
    check_masked(
        &sim,
        &out,
        0,
        "host0001.contoso.test: x.ps1\n",
        "mdlr: host0001.contoso.test is busy with action {ACTION}; waiting for it to end\n",
    );
    let stats = sim.stats();
    assert!(stats.active_request_already_exists >= 1);
    check_one_start_each(&sim, 1);
    let actions = sim.sim.actions();
    assert_eq!(actions.len(), 2);
    assert_eq!(actions[0]["requestor"], "analyst@contoso.test");
    assert_eq!(actions[1]["status"], "Succeeded");
}

#[test]
fn a_busy_machine_skipped_is_0_and_failed_is_75() {
    for (mode, status, what) in [
        ("skip", 0, "busy with another session; skipped"),
        ("fail", 75, "busy with another session; not started"),
    ] {
        let sim = busy_sim();
        let out = sim
            .live(&[
                "run",
                &host(1),
                &host(2),
                "--script",
                "x.ps1",
                "--on-busy",
                mode,
            ])
            .run();
        out.status(status);
        assert_eq!(
            sorted_lines(&sim, &out.stdout),
            [
                "== host0002.contoso.test (command 0, exit code 0)",
                &format!("host0001.contoso.test: {what} (action none)"),
                "host0002.contoso.test: Succeeded (action {ACTION})",
                "host0002.contoso.test: x.ps1",
            ],
            "--on-busy {mode}"
        );
        let stats = sim.stats();
        assert_eq!(stats.active_request_already_exists, 1);
        assert_eq!(stats.starts_per_machine.get(&sim.machine(1).id), None);
        assert_eq!(summary(&out), (2, 1, summary(&out).2));
    }
}

// --- Many machines -------------------------------------------------------------------------

/// stdout of a batch without `-o`, cut into each machine's piece (its transcript under
/// a `== NAME` header, then its line), sorted, with action ids masked.
fn pieces(sim: &Sim, stdout: &str) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut piece = String::new();
    for line in mask_actions(sim, stdout).split_inclusive('\n') {
        piece.push_str(line);
        if !line.starts_with("== ") && line.contains(" (action ") {
            pieces.push(std::mem::take(&mut piece));
        }
    }
    assert_eq!(piece, "", "output after the last machine's line");
    pieces.sort();
    pieces
}

#[test]
fn several_machines_each_in_one_piece() {
    let mut m2 = SimMachine::new(2);
    m2.script_output = Some("line 1\r\nline 2".to_owned());
    let sim = Sim::with(vec![SimMachine::new(1), m2, SimMachine::new(3)]);
    write(
        sim.dir.join("hosts.txt"),
        "# web servers\n\nhost0002.contoso.test\n   host0003.contoso.test   # the new one\n\n# end\n",
    );
    let out = sim
        .live(&[
            "run",
            &host(1),
            "--machines-file",
            "hosts.txt",
            "--script",
            "x.ps1",
        ])
        .run();
    out.status(0);
    assert_eq!(
        pieces(&sim, &out.stdout),
        [
            "== host0001.contoso.test (command 0, exit code 0)\nhost0001.contoso.test: x.ps1\nhost0001.contoso.test: Succeeded (action {ACTION})\n",
            "== host0002.contoso.test (command 0, exit code 0)\nline 1\r\nline 2\nhost0002.contoso.test: Succeeded (action {ACTION})\n",
            "== host0003.contoso.test (command 0, exit code 0)\nhost0003.contoso.test: x.ps1\nhost0003.contoso.test: Succeeded (action {ACTION})\n",
        ]
    );
    assert_eq!(summary(&out), (3, 3, summary(&out).2));
    assert!(
        out.stderr.ends_with("; exit status 0\n") && out.stderr.lines().count() == 1,
        "{}",
        out.stderr
    );
    check_one_start_each(&sim, 3);
    assert_eq!(
        sim.stats().requests_to("machines"),
        1,
        "one lookup for all names"
    );
}

#[test]
fn results_go_under_the_output_directory_per_machine() {
    let mut m1 = machine_with_a_file(1);
    m1.script_errors = "a warning\n".to_owned();
    let sim = Sim::with(vec![m1, machine_with_a_file(2)]);
    let out = sim
        .live(&[
            "run",
            &host(1),
            &host(2),
            "--script",
            "x.ps1",
            "--get",
            r"C:\Temp\a.txt",
            "-o",
            "evidence",
        ])
        .run();
    out.status(0);
    assert_eq!(
        sorted_lines(&sim, &out.stdout),
        [
            "host0001.contoso.test: Succeeded (action {ACTION})",
            "host0002.contoso.test: Succeeded (action {ACTION})",
        ]
    );
    let evidence = sim.dir.join("evidence");
    assert_eq!(
        files_under(&evidence),
        [
            ".mdlr-journal.jsonl",
            "host0001.contoso.test/0-x.err",
            "host0001.contoso.test/0-x.json",
            "host0001.contoso.test/0-x.out",
            "host0001.contoso.test/a.txt",
            "host0002.contoso.test/0-x.json",
            "host0002.contoso.test/0-x.out",
            "host0002.contoso.test/a.txt",
            // What was delivered, with its SHA-256 (see evidence.rs).
            "manifest.jsonl",
        ]
    );
    for n in [1, 2] {
        let dir = evidence.join(host(n));
        assert_eq!(
            read(dir.join("a.txt")),
            sim.machine(n).file_content(r"C:\Temp\a.txt")
        );
        assert_eq!(
            read(dir.join("0-x.out")),
            format!("{}: x.ps1\n", host(n)).into_bytes()
        );
        let stored: Value = serde_json::from_slice(&read(dir.join("0-x.json"))).expect("JSON");
        assert_eq!(stored["script_name"], "x.ps1");
    }
    assert_eq!(read(evidence.join(host(1)).join("0-x.err")), b"a warning\n");
}

#[test]
fn a_batch_as_json_is_one_object_per_machine() {
    let sim = Sim::with(vec![
        SimMachine::new(1),
        SimMachine::new(2).with_outcome(SimOutcome::failed(0)),
    ]);
    let out = sim
        .live(&["--json", "run", &host(1), &host(2), "--script", "x.ps1"])
        .run();
    out.status(69);
    let mut lines = out.json_lines();
    lines.sort_by_key(|v| v["machine"].as_str().unwrap_or_default().to_owned());
    assert_eq!(lines.len(), 2, "{}", out.stdout);
    assert_eq!(lines[0]["machine"], host(1));
    assert_eq!(lines[0]["exit_status"], 0);
    assert_eq!(lines[0]["summary"], "Succeeded");
    assert_eq!(
        lines[0]["results"][0]["script_output"],
        "host0001.contoso.test: x.ps1\n"
    );
    assert_eq!(lines[1]["machine"], host(2));
    assert_eq!(lines[1]["machine_id"], sim.machine(2).id);
    assert_eq!(lines[1]["exit_status"], 69);
    assert_eq!(
        lines[1]["summary"],
        "Failed; command 0 failed: The command failed on the machine (simulated)."
    );
    assert_eq!(lines[1]["results"], serde_json::json!([]));
    for line in &lines {
        assert!(
            sim.sim
                .action(line["action_id"].as_str().expect("id"))
                .is_some()
        );
    }
    assert_eq!(out.stderr, "", "--json: no summary line");
}

/// Runs `x.ps1` on machines ending as `machines` say (outcome, script exit code) and
/// checks the batch's exit status.
#[track_caller]
fn check_batch_status(machines: &[(SimOutcome, i64)], code: i32) {
    let machines: Vec<SimMachine> = machines
        .iter()
        .enumerate()
        .map(|(i, (outcome, exit))| {
            let mut m = SimMachine::new(i + 1).with_outcome(outcome.clone());
            m.script_exit_code = *exit;
            m
        })
        .collect();
    let n = machines.len();
    let sim = Sim::start(SimConfig {
        timeout_after: Duration::from_secs(60),
        ..sim_config(machines)
    });
    let hosts: Vec<String> = (1..=n).map(host).collect();
    let mut args = vec!["run"];
    args.extend(hosts.iter().map(String::as_str));
    args.extend(["--script", "x.ps1"]);
    let out = sim.live(&args).status(code);
    assert!(
        out.stderr.ends_with(&format!("; exit status {code}\n")),
        "{}",
        out.stderr
    );
}

#[test]
fn a_batch_exits_with_the_most_severe_status() {
    use SimOutcome::*;
    check_batch_status(&[(Succeeded, 0), (Succeeded, 0)], 0);
    check_batch_status(&[(Succeeded, 0), (SimOutcome::failed(0), 0)], 69);
    check_batch_status(&[(Succeeded, 3), (Succeeded, 0)], 3);
    check_batch_status(&[(Succeeded, 3), (Succeeded, 300)], 3);
    check_batch_status(&[(Succeeded, 3), (TimeOut, 0)], 75);
    check_batch_status(&[(Cancelled, 0), (TimeOut, 0), (Succeeded, 3)], 69);
}

// --- Resume and Ctrl-C ---------------------------------------------------------------------

/// The journal's lines in `dir` (none when it is not there yet).
fn journal(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join(".mdlr-journal.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The journal's lines of `event` (`started`, `downloaded`, `finished`).
fn journal_events(dir: &Path, event: &str) -> Vec<Value> {
    journal(dir)
        .into_iter()
        .filter(|l| l["event"] == event)
        .collect()
}

/// Waits (at most 20 s) until `ready` holds.
#[track_caller]
fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ready() {
        assert!(Instant::now() < deadline, "gave up waiting until {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Blob requests per result path (`/blob/MACHINE/ACTION/INDEX/NAME`).
fn blob_requests(sim: &Sim) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for r in sim.sim.requests() {
        if r.endpoint == "blob" {
            let path = r.target.split('?').next().unwrap_or_default().to_owned();
            *counts.entry(path).or_insert(0) += 1;
        }
    }
    counts
}

/// The arguments of the batch the resume tests interrupt: a script and a file on
/// every machine, results under `out`.
fn resume_args(hosts: &[String]) -> Vec<&str> {
    let mut args = vec!["run"];
    args.extend(hosts.iter().map(String::as_str));
    args.extend(["--script", "x.ps1", "--get", r"C:\Temp\a.txt", "-o", "out"]);
    args
}

#[test]
fn a_killed_batch_resumes_without_starting_or_downloading_twice() {
    let n = 20;
    // Short actions (10 s) in a long start window (60 s): the kill comes after the
    // first ten started and some downloaded, well before the next start.
    let sim = Sim::start(SimConfig {
        pending_for: Duration::from_secs(4),
        run_for: Duration::from_secs(3),
        ..sim_config((1..=n).map(machine_with_a_file).collect())
    });
    let hosts: Vec<String> = (1..=n).map(host).collect();
    let out_dir = sim.dir.join("out");
    let child = sim.live(&resume_args(&hosts)).spawn();
    // The first results come a second after their action ends, possibly before the
    // tenth start on a busy machine: wait for both.
    wait_until("ten started and a result downloaded", || {
        journal_events(&out_dir, "started").len() == 10
            && !journal_events(&out_dir, "downloaded").is_empty()
    });
    let killed = child.kill();
    assert_eq!(killed.code, None, "killed by a signal");
    let started = journal_events(&out_dir, "started");
    let downloaded = journal_events(&out_dir, "downloaded");
    assert_eq!(
        sim.stats().starts,
        started.len(),
        "every start is in the journal"
    );
    assert!(
        started.len() < n,
        "killed mid-way: {} started",
        started.len()
    );
    let mtimes: Vec<(std::path::PathBuf, std::time::SystemTime)> = downloaded
        .iter()
        .map(|d| {
            let path = out_dir.join(d["path"].as_str().expect("path"));
            let mtime = std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .expect("the downloaded file");
            (path, mtime)
        })
        .collect();

    // A machine started and not finished whose files were written but not recorded
    // when the kill came (or a fresh machine with leftovers): written again.
    let unfinished = started
        .iter()
        .find(|s| !downloaded.iter().any(|d| d["action_id"] == s["action_id"]))
        .map(|s| s["machine"].as_str().expect("machine").to_owned())
        .unwrap_or_else(|| host(n));
    std::fs::create_dir_all(out_dir.join(&unfinished)).expect("create machine directory");
    write(out_dir.join(&unfinished).join("0-x.json"), "left over");
    write(out_dir.join(&unfinished).join("a.txt"), "left over");

    // The same command without --resume refuses to mix with the journal.
    let out = sim.live(&resume_args(&hosts)).run();
    out.check_err(73, &[".mdlr-journal.jsonl", "add --resume to continue it"]);
    // --resume with another command refuses too.
    let mut other: Vec<&str> = resume_args(&hosts)
        .into_iter()
        .map(|a| if a == "x.ps1" { "tool.ps1" } else { a })
        .collect();
    other.push("--resume");
    let out = sim.live(&other).run();
    out.check_err(64, &["was written for another command"]);
    assert_eq!(
        sim.stats().starts,
        started.len(),
        "nothing started meanwhile"
    );

    // Resumed from the output directory itself: the journal's paths still hold.
    let mut args: Vec<&str> = resume_args(&hosts)
        .into_iter()
        .map(|a| if a == "out" { "." } else { a })
        .collect();
    args.push("--resume");
    let out = sim.live(&args).cwd(&out_dir).run();
    out.status(0);
    check_one_start_each(&sim, n);
    let stats = sim.stats();
    assert_eq!(
        stats.throttled, 0,
        "the journal's starts count: {:?}",
        stats.throttled_by
    );
    for (n, count) in blob_requests(&sim) {
        assert!(count <= 2, "{n} fetched {count} times");
    }
    let blobs = blob_requests(&sim);
    for d in &downloaded {
        let (action, index) = (d["action_id"].as_str().expect("id"), &d["index"]);
        let fetched: usize = blobs
            .iter()
            .filter(|(path, _)| path.contains(&format!("/{action}/{index}/")))
            .map(|(_, c)| c)
            .sum();
        assert_eq!(
            fetched, 1,
            "result {index} of {action} was downloaded again"
        );
    }
    for (path, mtime) in mtimes {
        let now = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .expect("still there");
        assert_eq!(now, mtime, "{} was written again", path.display());
    }
    for n in 1..=n {
        let dir = out_dir.join(host(n));
        assert_eq!(
            read(dir.join("a.txt")),
            sim.machine(n).file_content(r"C:\Temp\a.txt")
        );
        assert_eq!(
            read(dir.join("0-x.out")),
            format!("{}: x.ps1\n", host(n)).into_bytes()
        );
        let stored: Value = serde_json::from_slice(&read(dir.join("0-x.json"))).expect("JSON");
        assert_eq!(stored["script_name"], "x.ps1");
    }
    assert_eq!(
        journal_events(&out_dir, "finished").len(),
        n,
        "every machine finished once"
    );
    assert_eq!(out.stdout.lines().count(), n, "{}", out.stdout);
}

/// Three machines with long actions (150 s of service time).
fn long_sim() -> Sim {
    Sim::with(
        (1..=3)
            .map(|n| {
                let mut m = SimMachine::new(n);
                m.run_for = Some(Duration::from_secs(150));
                m
            })
            .collect(),
    )
}

/// Runs `x.ps1` on the three machines of [`long_sim`] with `args`, interrupts it with
/// SIGINT once a poll round has looked at all three actions, and returns what it did.
fn interrupted(sim: &Sim, args: &[&str]) -> Outcome {
    let rounds = |ids: &[String]| {
        sim.sim
            .requests()
            .iter()
            .filter(|r| {
                r.endpoint == "actions" && ids.iter().all(|id| r.target.contains(id.as_str()))
            })
            .count()
    };
    let ids = || -> Vec<String> {
        sim.sim
            .actions()
            .iter()
            .filter_map(|a| a["id"].as_str().map(str::to_owned))
            .collect()
    };
    let before = if ids().len() == 3 { rounds(&ids()) } else { 0 };
    let mut all = vec!["run", "host0001.contoso.test", "host0002.contoso.test"];
    all.extend(["host0003.contoso.test", "--script", "x.ps1"]);
    all.extend(args);
    let child = sim.live(&all).spawn();
    // Once a poll round asks for all three, this run of mdlr knows them all.
    wait_until("a poll round looks at three actions", || {
        let ids = ids();
        ids.len() == 3 && rounds(&ids) > before
    });
    child.interrupt();
    child.wait()
}

/// Checks that a run was interrupted (130) and named every action and the command that
/// picks it up, plus `--resume` when `resumable`.
#[track_caller]
fn check_interrupted(sim: &Sim, out: &Outcome, resumable: bool) {
    out.status(130);
    let stderr = mask_actions(sim, &out.stderr);
    let mut lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines.first().copied(),
        Some("mdlr: interrupted; 3 action(s) go on running on the machines:"),
        "{stderr}"
    );
    lines.remove(0);
    if resumable {
        assert_eq!(
            lines.pop(),
            Some("mdlr: or run the same command again with --resume")
        );
    }
    lines.sort();
    assert_eq!(
        lines,
        [
            "  host0001.contoso.test: pick it up later with `mdlr result {ACTION} --all --wait`",
            "  host0002.contoso.test: pick it up later with `mdlr result {ACTION} --all --wait`",
            "  host0003.contoso.test: pick it up later with `mdlr result {ACTION} --all --wait`",
        ]
    );
    for a in sim.sim.actions() {
        assert!(out.stderr.contains(a["id"].as_str().expect("id")));
        let status = a["status"].as_str().unwrap_or_default();
        assert!(
            ["Pending", "InProgress"].contains(&status),
            "the actions go on: {status}"
        );
    }
}

#[test]
fn ctrl_c_names_each_running_action() {
    let sim = long_sim();
    let out = interrupted(&sim, &[]);
    check_interrupted(&sim, &out, false);
}

#[test]
fn ctrl_c_then_resume() {
    let sim = long_sim();
    let out = interrupted(&sim, &["-o", "out"]);
    check_interrupted(&sim, &out, true);
    // Interrupted again while following the actions of the first run.
    let out = interrupted(&sim, &["-o", "out", "--resume"]);
    check_interrupted(&sim, &out, true);
    let out = sim
        .live(&[
            "run",
            &host(1),
            &host(2),
            &host(3),
            "--script",
            "x.ps1",
            "-o",
            "out",
            "--resume",
        ])
        .run();
    out.status(0);
    check_one_start_each(&sim, 3);
    assert_eq!(
        sorted_lines(&sim, &out.stdout),
        [
            "host0001.contoso.test: Succeeded (action {ACTION})",
            "host0002.contoso.test: Succeeded (action {ACTION})",
            "host0003.contoso.test: Succeeded (action {ACTION})",
        ]
    );
    assert_eq!(summary(&out), (3, 0, summary(&out).2));
}

// --- Secrets -------------------------------------------------------------------------------

#[test]
fn no_secret_in_verbose_output() {
    let sim = Sim::with(vec![machine_with_a_file(1), machine_with_a_file(2)]);
    let (token, second) = (sim.sim.token(), host(2));
    let args = [
        "-v",
        "run",
        &host(1),
        "--script",
        "x.ps1",
        "--get",
        r"C:\Temp\a.txt",
    ];
    let mut batch = args.to_vec();
    batch.extend([second.as_str(), "-o", "out"]);
    for args in [&args[..], &batch[..]] {
        let out = sim.live(args).run();
        out.status(0);
        assert!(
            out.stderr.contains("runliveresponse -> 201"),
            "{}",
            out.stderr
        );
        assert!(out.stderr.contains("sig=REDACTED"), "{}", out.stderr);
        for (name, text) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
            assert!(!text.contains(&token), "{name} shows the token:\n{text}");
            for (i, _) in text.match_indices("sig=") {
                assert!(
                    text[i..].starts_with("sig=REDACTED"),
                    "{name} shows a signature:\n{text}"
                );
            }
        }
    }
}

#[test]
fn a_terminal_gets_a_live_count_and_a_pipe_does_not() {
    let sim = Sim::with(SimMachine::many(3));
    let mut line = vec![
        mdlr_bin().display().to_string(),
        "--api-url".to_owned(),
        sim.sim.api_url(),
    ];
    line.extend(sim.quota_args());
    line.push("run".to_owned());
    line.extend((1..=3).map(host));
    line.extend(["--script", "x.ps1", "--poll-interval"].map(str::to_owned));
    line.push(sim.dur(5.0));
    let quoted: Vec<String> = line
        .iter()
        .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
        .collect();
    // util-linux `script` gives the command a terminal, as a person at a keyboard has.
    let out = std::process::Command::new("script")
        .args(["-qec", &quoted.join(" "), "/dev/null"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("MDLR_TOKEN", sim.sim.token())
        .current_dir(sim.dir.path())
        .output()
        .expect("script runs");
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{screen}");
    assert!(
        screen.contains(" queued · ")
            && screen.contains(" running · ")
            && screen.contains("/3 done"),
        "no live count on the terminal:\n{screen}"
    );
    // Piped, stderr carries the summary line only.
    let piped = sim
        .live(&["run", &host(1), &host(2), "--script", "x.ps1"])
        .run();
    piped.status(0);
    assert!(!piped.stderr.contains("queued"), "{}", piped.stderr);
}

#[test]
fn resume_adopts_a_start_the_journal_missed() {
    // A run killed between the service's answer to a start and the journal line: the
    // action exists, the journal does not know it. --resume must follow it, not start
    // the machine again.
    let mut slow = SimMachine::new(2);
    slow.run_for = Some(std::time::Duration::from_secs(120));
    let sim = Sim::with(vec![SimMachine::new(1), slow]);
    // The first run starts host 1 only, without waiting: the journal records that.
    sim.live(&[
        "run",
        &host(1),
        "--script",
        "x.ps1",
        "-o",
        "out",
        "--no-wait",
    ])
    .run()
    .status(0);
    // ... and, unrecorded, an action on host 2 with the batch's comment.
    let client = mdlr::Client::builder(mdlr::Credential::token(sim.sim.token()))
        .endpoints(mdlr::Endpoints::default().with_api_base(&sim.sim.api_url()))
        .build()
        .expect("client");
    let request = mdlr::LiveResponse::new("mdlr run x.ps1").run_script("x.ps1", "");
    client
        .start_live_response(&sim.machine(2).id, &request)
        .expect("started behind the journal's back");
    let out = sim
        .live(&[
            "run",
            &host(1),
            &host(2),
            "--script",
            "x.ps1",
            "-o",
            "out",
            "--resume",
        ])
        .run();
    out.status(0);
    check_one_start_each(&sim, 2);
    assert!(sim.dir.join("out").join(host(1)).join("0-x.out").is_file());
    assert!(sim.dir.join("out").join(host(2)).join("0-x.out").is_file());
}
