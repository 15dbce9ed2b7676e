//! Where the real service does what our contract does not say (issue 13, point 5):
//! field reports and other clients show it, the simulator learns it, and mdlr holds.

use std::time::Duration;

use mdlr_tests::sim::{QuotaKind, SimConfig, SimMachine};
use mdlr_tests::util::sha256_hex;

use crate::util::*;

/// A GetFile result that is not gzip, in a batch: saved as it came with a warning
/// naming the machine, listed in the manifest with its SHA-256; the other machine's
/// result is un-gzipped as usual; the batch succeeds.
#[test]
fn a_getfile_result_that_is_not_gzip_is_saved_with_a_warning() {
    let mut machines = SimMachine::many(2);
    for m in &mut machines {
        m.files
            .push((r"C:\Temp\a.txt".to_owned(), b"evidence\n".repeat(1000)));
    }
    machines[1].plain_getfile = true;
    let sim = Sim::with(machines);
    let out = sim
        .live(&["getfile", &host(1), &host(2), r"C:\Temp\a.txt", "-o", "out"])
        .run();
    out.status(0);
    let warnings: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("mdlr: warning:"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", out.stderr);
    assert!(
        warnings[0].contains(&host(2)) && warnings[0].contains("is not gzip"),
        "{}",
        warnings[0]
    );
    let want = b"evidence\n".repeat(1000);
    for n in [1, 2] {
        assert_eq!(read(sim.dir.join("out").join(host(n)).join("a.txt")), want);
    }
    let manifest = std::fs::read_to_string(sim.dir.join("out/manifest.jsonl")).expect("manifest");
    assert_eq!(manifest.lines().count(), 2);
    assert!(manifest.contains(&sha256_hex(&want)));
    sim.mdlr(&["verify", "out"]).run().status(0);
}

/// Each machine was started once.
#[track_caller]
fn one_start_each(sim: &Sim, machines: usize) {
    let stats = sim.stats();
    assert_eq!(stats.starts_per_machine.len(), machines, "machines started");
    assert_eq!(stats.max_starts_per_machine(), 1, "starts per machine");
}

/// `mdlr run HOSTS --script x.ps1 -o out` and the extra arguments.
fn run_args<'a>(hosts: &'a [String], extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["run"];
    args.extend(hosts.iter().map(String::as_str));
    args.extend(["--script", "x.ps1", "-o", "out"]);
    args.extend(extra);
    args
}

/// The service allows fewer sessions than asked for: a start refused for too many
/// sessions lowers the batch's cap and puts the machine off; no machine fails for it.
#[test]
fn a_session_cap_below_max_in_flight_fails_no_machine() {
    let n = 12;
    let sim = Sim::start(SimConfig {
        max_concurrent: 5,
        run_for: Duration::from_secs(60),
        ..sim_config(SimMachine::many(n))
    });
    let hosts: Vec<String> = (1..=n).map(host).collect();
    // No retries in the transport: each refusal reaches the batch.
    let out = sim
        .live(&run_args(
            &hosts,
            &["--max-in-flight", "10", "--retries", "0"],
        ))
        .run();
    out.status(0);
    let stats = sim.stats();
    assert!(stats.peak_concurrent <= 5, "peak {}", stats.peak_concurrent);
    let refused = stats.throttled_by.get(&QuotaKind::Concurrency).copied();
    assert!(refused.is_some_and(|r| r >= 1), "{:?}", stats.throttled_by);
    assert!(
        out.stderr
            .contains("too many at once; keeping to 5 at a time"),
        "{}",
        out.stderr
    );
    // Refused once, the cap holds: not a refusal for every start that follows.
    assert!(refused.is_some_and(|r| r <= 3), "{refused:?} refusals");
    one_start_each(&sim, n);
    assert_eq!(files_under(&sim.dir.join("out")).len(), 2 * n + 2);
}

/// A machine refused as busy with no action of its own to be seen (a session opened
/// in the portal): tried again less and less often, not every second; it starts once
/// the session ends, and is reported busy if that takes longer than its wait.
#[test]
fn busy_with_no_visible_action_backs_off() {
    let mut machines = SimMachine::many(2);
    machines[0].portal_session_for = Some(Duration::from_secs(150));
    let sim = Sim::with(machines);
    let hosts: Vec<String> = (1..=2).map(host).collect();
    let out = sim.live(&run_args(&hosts, &[])).run();
    out.status(0);
    assert!(
        out.stderr
            .contains("busy with a session the API does not show"),
        "{}",
        out.stderr
    );
    let refusals = sim.stats().active_request_already_exists;
    // Every 5 s, 10 s, 20 s... (service time): about five refusals in 150 s, where a
    // look every second would have made dozens.
    assert!((2..=8).contains(&refusals), "{refusals} refusals");
    one_start_each(&sim, 2);

    // A session that outlasts the wait: reported busy (75), not started.
    let mut machines = SimMachine::many(1);
    machines[0].portal_session_for = Some(Duration::from_secs(3600));
    let sim = Sim::with(machines);
    let hosts = vec![host(1)];
    let wait = sim.dur(120.0);
    let out = sim
        .live(&run_args(&hosts, &["--wait-timeout", &wait]))
        .run();
    out.status(75);
    assert!(
        out.stdout
            .contains("busy with another session; not started"),
        "{}",
        out.stdout
    );
    let refusals = sim.stats().active_request_already_exists;
    assert!((2..=8).contains(&refusals), "{refusals} refusals");
}

/// Starts throttled past the client's retries: the machines wait their turn, the
/// starts pause, nothing fails.
#[test]
fn starts_throttled_past_the_retries_wait_their_turn() {
    let sim = Sim::start(SimConfig {
        refuse_first_starts: 5,
        ..sim_config(SimMachine::many(3))
    });
    let hosts: Vec<String> = (1..=3).map(host).collect();
    let out = sim.live(&run_args(&hosts, &["--retries", "1"])).run();
    out.status(0);
    assert!(
        out.stderr
            .contains("the service throttled the start; starts pause"),
        "{}",
        out.stderr
    );
    assert_eq!(sim.stats().throttled_by.get(&QuotaKind::Scenario), Some(&5));
    one_start_each(&sim, 3);
}

/// A machine whose action stays `Pending` (offline: the service queues the action):
/// named as probably offline with what the machines API says of it, within the
/// first minute, and waited for past the 15 minutes a running action gets, since
/// the default wait covers the service's queue.
#[test]
fn an_offline_machine_is_named_and_its_queued_action_waited_for() {
    let mut machines = SimMachine::many(2);
    machines[1].pending_for = Some(Duration::from_secs(16 * 60));
    machines[1].last_seen_ago = Some(Duration::from_secs(3 * 86400));
    machines[1].health_status = "Inactive".to_owned();
    let sim = Sim::with(machines);
    let hosts: Vec<String> = (1..=2).map(host).collect();
    let mut args = run_args(&hosts, &[]);
    let (poll, offline) = (sim.dur(5.0), sim.dur(60.0));
    args.extend(["--poll-interval", &poll, "--offline-after", &offline]);
    // Not Sim::live: it would set a --wait-timeout.
    let out = sim.mdlr(&args).run();
    out.status(0);
    let notes: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("probably offline"))
        .collect();
    assert_eq!(notes.len(), 1, "{}", out.stderr);
    assert!(
        notes[0].starts_with(&format!("mdlr: {}: action ", host(2))),
        "{}",
        notes[0]
    );
    assert!(notes[0].contains("health Inactive"), "{}", notes[0]);
    assert!(notes[0].contains("last seen "), "{}", notes[0]);
    assert_eq!(sim.stats().requests_to("machine"), 1, "one look-up");
    one_start_each(&sim, 2);
}

/// A new action not found for a moment, and result links refused just after their
/// command completed: read again with backoff before anything is believed.
#[test]
fn new_actions_and_fresh_results_are_asked_again_before_believed() {
    let sim = Sim::start(SimConfig {
        new_action_404_for: Duration::from_secs(3),
        // A second of real time: the link is asked for well within it.
        link_lag: Duration::from_secs(100),
        ..sim_config(SimMachine::many(2))
    });
    // A batch: lists leave the new action out for a moment; its link comes late.
    let out = sim.live(&["run", &host(1), "--script", "x.ps1"]).run();
    out.status(0);
    assert_eq!(out.stdout, format!("{}: x.ps1\n", host(1)));
    assert!(
        out.stderr
            .contains("no result yet though command 0 has ended from http://127.0.0.1:"),
        "{}",
        out.stderr
    );
    // Waiting on an action that is not found yet: `mdlr action --wait`.
    let client = mdlr::Client::builder(mdlr::Credential::token(sim.sim.token()))
        .endpoints(mdlr::Endpoints::default().with_api_base(&sim.sim.api_url()))
        .build()
        .expect("client");
    let request = mdlr::LiveResponse::new("late").run_script("x.ps1", "");
    let action = client
        .start_live_response(&sim.machine(2).id, &request)
        .expect("started");
    let id = action.id.expect("an id");
    let out = sim.live(&["action", &id, "--wait"]).run();
    out.status(0);
    assert!(out.stdout.contains("Succeeded"), "{}", out.stdout);
}

/// An action the batch stopped waiting for may go on running: it still takes one of
/// the `--max-in-flight` places until it is seen to end.
#[test]
fn an_action_no_longer_waited_for_still_holds_its_place() {
    let mut machines = SimMachine::many(2);
    machines[0].run_for = Some(Duration::from_secs(300));
    let sim = Sim::with(machines);
    let hosts: Vec<String> = (1..=2).map(host).collect();
    let wait = sim.dur(60.0);
    let out = sim
        .live(&run_args(
            &hosts,
            &["--max-in-flight", "1", "--wait-timeout", &wait],
        ))
        .run();
    out.status(75);
    let stats = sim.stats();
    assert_eq!(
        stats.peak_concurrent, 1,
        "the second started only after the first ended"
    );
    one_start_each(&sim, 2);
}
