//! Lists as a stricter or odder service answers them (issue 13): pages that end oddly
//! and a 404 for an empty action list. Against the simulator's modes.

use mdlr_tests::sim::{OddPaging, SimConfig, SimMachine};

use crate::util::*;

/// The DNS name of simulated machine `n`.
fn host(n: usize) -> String {
    format!("host{n:04}.contoso.test")
}

/// The requests the simulator answered 400.
fn refusals(sim: &Sim) -> Vec<String> {
    sim.sim
        .requests()
        .into_iter()
        .filter(|r| r.status == 400)
        .map(|r| r.target)
        .collect()
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
