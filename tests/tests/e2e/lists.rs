//! Lists as a stricter or odder service answers them (issue 13): a service that refuses
//! `or` in a `$filter`, pages that end oddly, action list items without their
//! `commands`, and a 404 for an empty action list. Against the simulator's modes.

use std::time::Duration;

use mdlr_tests::sim::{OddPaging, QuotaKind, SimConfig, SimMachine};

use crate::util::*;

/// What `-v` says once when the service refuses `or`.
const ONE_AT_A_TIME: &str = "asking for one at a time from now on";

/// The requests the simulator answered 400.
fn refusals(sim: &Sim) -> Vec<String> {
    sim.sim
        .requests()
        .into_iter()
        .filter(|r| r.status == 400)
        .map(|r| r.target)
        .collect()
}

/// `mdlr run` on six machines named by DNS against a service that refuses `or`: the
/// names are looked up one at a time, the batch's looks too, every result arrives,
/// and `-v` says so once (and nothing says it without `-v`). Only the first lookup is
/// refused: the rest of the run goes one at a time at once.
#[test]
fn six_machines_by_name_when_the_service_refuses_or() {
    let sim = Sim::start(SimConfig {
        refuse_or_filters: true,
        ..sim_config(SimMachine::many(6))
    });
    let names: Vec<String> = (1..=6).map(host).collect();
    let mut args: Vec<&str> = vec!["-v", "run"];
    args.extend(names.iter().map(String::as_str));
    args.extend(["--script", "x.ps1"]);
    let out = sim.live(&args).run();
    out.status(0);
    let said = out.stderr.matches(ONE_AT_A_TIME).count();
    assert_eq!(said, 1, "the notice, once:\n{}", out.stderr);
    for name in &names {
        assert!(
            out.stdout.contains(&format!("{name}: x.ps1")),
            "{name}'s transcript:\n{}",
            out.stdout
        );
    }
    let stats = sim.stats();
    assert_eq!(stats.throttled, 0, "429s: {:?}", stats.throttled_by);
    assert_eq!(stats.starts_per_machine.len(), 6, "machines started");
    let refused = refusals(&sim);
    assert_eq!(refused.len(), 1, "refused: {refused:?}");
    assert!(refused[0].starts_with("/api/machines?"), "{refused:?}");
    assert_eq!(stats.requests_to("machines"), 1 + 6, "one lookup per name");

    let quiet = sim.live(&args[1..]).run();
    quiet.status(0);
    assert!(!quiet.stderr.contains(ONE_AT_A_TIME), "{}", quiet.stderr);
}

/// A batch whose looks go one action at a time keeps to the quotas and leaves its starts
/// and links their room: the rounds are paced for a call per action, so the minute's
/// window never fills and the makespan stays near what the quotas allow. (Paced for one
/// query per 25 actions, rounds of a dozen calls a second fill the window, and starts
/// and links wait for it.)
#[test]
fn a_batch_looking_one_action_at_a_time_keeps_within_the_quotas() {
    let machines: Vec<SimMachine> = (1..=60)
        .map(|n| {
            let mut m = SimMachine::new(n);
            m.run_for = Some(Duration::from_secs(60));
            m
        })
        .collect();
    let sim = Sim::start(SimConfig {
        refuse_or_filters: true,
        ..sim_config(machines)
    });
    let list: String = sim
        .sim
        .machines()
        .iter()
        .map(|m| format!("{}\n", m.id))
        .collect();
    write(sim.dir.join("hosts.txt"), list);
    let out = sim
        .live(&["run", "--machines-file", "hosts.txt", "--script", "x.ps1"])
        .run();
    out.status(0);
    let stats = sim.stats();
    let config = sim.sim.config();
    assert_eq!(stats.throttled, 0, "429s: {:?}", stats.throttled_by);
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
    // Planned for, the looks never fill the minute's window: no call waits for it.
    let minute = stats.busiest_window[&QuotaKind::ApiPerMinute];
    assert!(
        minute < config.api_per_minute.limit,
        "the minute's window filled ({minute} calls): the rounds were not paced for a \
         call per action"
    );
    let refused = refusals(&sim);
    assert_eq!(refused.len(), 1, "refused: {refused:?}");
    let looks = stats.requests_to("actions");
    assert!(looks > 60, "{looks} looks: one at a time");
    let bound = sim.sim.quota_bound(60, 1);
    let makespan = stats.makespan_service().expect("a makespan");
    let ratio = makespan.as_secs_f64() / bound.as_secs_f64();
    eprintln!(
        "makespan {makespan:?} / bound {bound:?} = {ratio:.3}; {} API calls, {looks} looks, \
         busiest windows {:?}",
        stats.api_calls, stats.busiest_window
    );
    assert!(
        ratio <= 1.15,
        "makespan {makespan:?} against the bound {bound:?}: the looks held the starts back"
    );
}

/// A simulator of `machines` machines whose lists page oddly.
fn odd_sim(machines: Vec<SimMachine>, odd: OddPaging) -> Sim {
    Sim::start(SimConfig {
        odd_paging: odd,
        ..sim_config(machines)
    })
}

/// The machine ids `mdlr machines` printed, in order.
fn listed_machines(out: &Outcome) -> Vec<String> {
    out.stdout
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn an_empty_page_ends_a_list() {
    let sim = odd_sim(
        SimMachine::many(5),
        OddPaging {
            page_size: Some(2),
            empty_page: true,
            ..OddPaging::default()
        },
    );
    let out = sim.mdlr(&["machines"]).run();
    out.status(0);
    let ids = listed_machines(&out);
    assert_eq!(
        ids,
        [sim.machine(1).id, sim.machine(2).id],
        "{}",
        out.stdout
    );
    assert_eq!(
        sim.stats().requests_to("machines"),
        2,
        "the empty page ends it"
    );
}

#[test]
fn a_repeated_link_ends_a_list() {
    let sim = odd_sim(
        SimMachine::many(5),
        OddPaging {
            page_size: Some(2),
            repeat_link: true,
            ..OddPaging::default()
        },
    );
    let out = sim.mdlr(&["machines"]).run();
    out.status(0);
    let ids = listed_machines(&out);
    let expected: Vec<String> = (1..=4).map(|n| sim.machine(n).id).collect();
    assert_eq!(ids, expected, "{}", out.stdout);
    assert_eq!(sim.stats().requests_to("machines"), 2, "no page twice");
}

#[test]
fn a_link_that_drops_the_filter_is_refused() {
    // Three machines of one name: the lookup takes two pages.
    let twins: Vec<SimMachine> = (1..=3)
        .map(|n| {
            let mut m = SimMachine::new(n);
            m.dns_name = host(1);
            m
        })
        .chain([SimMachine::new(4)])
        .collect();
    let sim = odd_sim(
        twins,
        OddPaging {
            page_size: Some(2),
            drop_filter: true,
            ..OddPaging::default()
        },
    );
    let out = sim.mdlr(&["machines", "--name", &host(1)]).run();
    out.check_err(
        65,
        &[
            "malformed machine list: its next page drops the query's $filter: ",
            "/machines?$top=10000&$skip=2",
        ],
    );
    assert_eq!(sim.stats().requests_to("machines"), 1, "not followed");
}

#[test]
fn items_a_later_page_repeats_are_listed_once() {
    let sim = odd_sim(
        SimMachine::many(5),
        OddPaging {
            page_size: Some(2),
            overlap: true,
            ..OddPaging::default()
        },
    );
    let out = sim.mdlr(&["machines"]).run();
    out.status(0);
    let ids = listed_machines(&out);
    let expected: Vec<String> = (1..=5).map(|n| sim.machine(n).id).collect();
    assert_eq!(ids, expected, "{}", out.stdout);
    assert_eq!(sim.stats().requests_to("machines"), 3);
}

/// A list that goes on for more than 100 pages is refused rather than followed on.
#[test]
fn a_list_of_too_many_pages_is_refused() {
    let sim = odd_sim(
        SimMachine::many(150),
        OddPaging {
            page_size: Some(1),
            ..OddPaging::default()
        },
    );
    let out = sim.mdlr(&["machines"]).run();
    out.check_err(
        65,
        &["malformed machine list: it goes on for more than 100 pages"],
    );
    assert_eq!(sim.stats().requests_to("machines"), 100);
}

/// Action list items without `commands`: each ended action is read by id before its
/// results are delivered, once.
#[test]
fn list_items_without_commands_still_deliver() {
    let sim = Sim::start(SimConfig {
        list_without_commands: true,
        ..sim_config(SimMachine::many(3))
    });
    let out = sim
        .live(&["run", &host(1), &host(2), &host(3), "--script", "x.ps1"])
        .run();
    out.status(0);
    for n in 1..=3 {
        assert!(
            out.stdout.contains(&format!("{}: x.ps1", host(n))),
            "{}'s transcript:\n{}\n--- stderr\n{}",
            host(n),
            out.stdout,
            out.stderr
        );
    }
    assert_eq!(sim.stats().requests_to("action"), 3, "one read per action");
}

#[test]
fn a_404_for_an_empty_action_list_is_an_empty_list() {
    let sim = Sim::start(SimConfig {
        empty_action_list_as_404: true,
        ..sim_config(SimMachine::many(2))
    });
    sim.mdlr(&["actions", "--machine", &host(1)])
        .check(0, "", "mdlr: 0 action(s)\n");
    sim.mdlr(&["--json", "actions"]).check(0, "", "");
    assert_eq!(refusals(&sim), Vec::<String>::new());
}
