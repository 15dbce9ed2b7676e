//! Quotas shared between processes (issue 13): the service counts calls per application
//! and tenant, whichever process makes them, so two `mdlr` batches of one user on one
//! host with the same app keep the quotas together through a state file in the user's
//! runtime directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mdlr_tests::sim::{QuotaKind, SimConfig, SimMachine, SimStats};

use crate::util::*;

/// What two batches started together did.
struct Pair {
    stats: SimStats,
    /// `quota_bound` of all their machines, service time.
    bound: Duration,
    makespan: Duration,
    outs: [Outcome; 2],
}

impl Pair {
    fn ratio(&self) -> f64 {
        self.makespan.as_secs_f64() / self.bound.as_secs_f64()
    }
}

/// Two `mdlr run` batches of `n` machines each (distinct machines, by id), started
/// together against one simulator with `XDG_RUNTIME_DIR` at `runtime`, both with
/// `extra` options.
fn two_batches(sim: &Sim, n: usize, runtime: &Path, extra: &[&str]) -> Pair {
    let ids: Vec<String> = sim.sim.machines().iter().map(|m| m.id.clone()).collect();
    assert_eq!(ids.len(), 2 * n);
    let mut spawned = Vec::new();
    for (k, half) in ids.chunks(n).enumerate() {
        let list: String = half.iter().map(|id| format!("{id}\n")).collect();
        let hosts = format!("hosts-{k}.txt");
        write(sim.dir.join(&hosts), list);
        let out = format!("out-{k}");
        let mut args = vec![
            "run",
            "--machines-file",
            &hosts,
            "--script",
            "x.ps1",
            "-o",
            &out,
        ];
        args.extend(extra);
        spawned.push(
            sim.live(&args)
                .env("XDG_RUNTIME_DIR", runtime.display().to_string())
                .spawn(),
        );
    }
    let outs: Vec<Outcome> = spawned.into_iter().map(Spawned::wait).collect();
    let stats = sim.stats();
    let bound = sim.sim.quota_bound(2 * n, 1);
    let makespan = stats.makespan_service().expect("a makespan");
    let pair = Pair {
        stats,
        bound,
        makespan,
        outs: outs.try_into().unwrap_or_else(|_| unreachable!("two runs")),
    };
    eprintln!(
        "two batches of {n}{}: makespan {:.0} s / joint bound {:.0} s = {:.3}; {} 429s \
         ({:?}), busiest windows {:?}",
        if extra.is_empty() {
            ""
        } else {
            " (--no-shared-quotas)"
        },
        pair.makespan.as_secs_f64(),
        pair.bound.as_secs_f64(),
        pair.ratio(),
        pair.stats.throttled,
        pair.stats.throttled_by,
        pair.stats.busiest_window,
    );
    pair
}

/// The files in `dir`, sorted, with their modes.
fn modes(dir: &Path) -> Vec<(String, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let mut files: Vec<(String, u32)> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| {
                    let mode = e.metadata().map_or(0, |m| m.permissions().mode() & 0o777);
                    (e.file_name().to_string_lossy().into_owned(), mode)
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// 16 machines at a twentieth of real time: a quota minute is 3 s, so the few
/// milliseconds each request costs a debug build on a loaded machine weigh little
/// against the bound (about 4.5 s real).
fn sixteen() -> Sim {
    Sim::start(SimConfig {
        time_scale: 0.05,
        machines: SimMachine::many(16),
        ..SimConfig::default()
    })
}

/// A private directory to stand for `XDG_RUNTIME_DIR`.
fn runtime_dir(sim: &Sim) -> PathBuf {
    use std::os::unix::fs::DirBuilderExt;
    let dir = sim.dir.join("runtime");
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .expect("runtime dir");
    dir
}

/// 16 machines, 8 to each of two batches started at once: the start quota (10 a
/// minute) binds them together. Sharing it, they get no 429, every window stays
/// within its quota, and the last action ends close to the joint bound (one batch of
/// 16 could do no better).
#[test]
fn two_batches_started_together_keep_the_quotas_together() {
    let sim = sixteen();
    let runtime = runtime_dir(&sim);
    let pair = two_batches(&sim, 8, &runtime, &[]);
    for out in &pair.outs {
        out.status(0);
    }
    let stats = &pair.stats;
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
    assert_eq!(
        stats.busiest_window.get(&QuotaKind::StartsPerMinute),
        Some(&10),
        "the start quota bound"
    );
    assert_eq!(stats.starts_per_machine.len(), 16, "machines started");
    assert_eq!(stats.max_starts_per_machine(), 1, "starts per machine");
    assert!(
        pair.ratio() <= 1.10,
        "makespan {:?} against the joint bound {:?}",
        pair.makespan,
        pair.bound
    );
    // One state file for the two (same API host, same token), private to the user.
    let files = modes(&runtime.join("mdlr"));
    assert_eq!(files.len(), 2, "{files:?}");
    let (state, lock) = (&files[0], &files[1]);
    assert!(
        state.0.starts_with("quota-") && state.0.ends_with(".json"),
        "{files:?}"
    );
    assert_eq!(lock.0, format!("{}.lock", state.0));
    assert!(files.iter().all(|(_, mode)| *mode == 0o600), "{files:?}");
    assert_eq!(modes(&runtime).first().map(|f| f.1), Some(0o700));
}

/// The same two batches with `--no-shared-quotas`: each keeps to the quotas alone, so
/// together they spend twice the start quota, and the service answers 429 (the issue:
/// 16 machines took 76 s against a joint bound of 63 s). Nothing is kept in the
/// runtime directory.
#[test]
fn two_batches_not_sharing_overrun_the_start_quota() {
    let sim = sixteen();
    let runtime = runtime_dir(&sim);
    let pair = two_batches(&sim, 8, &runtime, &["--no-shared-quotas"]);
    for out in &pair.outs {
        out.status(0);
    }
    assert!(
        pair.stats.throttled > 0,
        "no 429: the batches did not start together? makespan {:?}, joint bound {:?}",
        pair.makespan,
        pair.bound
    );
    assert_eq!(modes(&runtime), Vec::new());
}

/// `-vv` says where the quotas are shared; with `--no-shared-quotas`, that they are
/// not; with no runtime or cache directory or home, that they are not, without a
/// warning.
#[test]
fn verbose_says_where_quotas_are_shared() {
    let sim = Sim::with(SimMachine::many(1));
    let runtime = runtime_dir(&sim);
    let shared = sim
        .mdlr(&["-vv", "machines"])
        .env("XDG_RUNTIME_DIR", runtime.display().to_string())
        .run();
    let state = modes(&runtime.join("mdlr"))
        .into_iter()
        .find(|(name, _)| name.ends_with(".json"))
        .map(|(name, _)| runtime.join("mdlr").join(name))
        .expect("a state file");
    assert!(
        shared.stderr.contains(&format!(
            "mdlr: quotas shared through {}\n",
            state.display()
        )),
        "{}",
        shared.stderr
    );
    for run in [
        sim.mdlr(&["-vv", "--no-shared-quotas", "machines"])
            .env("XDG_RUNTIME_DIR", runtime.display().to_string()),
        sim.mdlr(&["-vv", "machines"]),
    ] {
        let out = run.run();
        assert!(
            out.stderr
                .contains("mdlr: quotas kept by this process alone\n"),
            "{}",
            out.stderr
        );
        assert!(!out.stderr.contains("warning"), "{}", out.stderr);
    }
}
