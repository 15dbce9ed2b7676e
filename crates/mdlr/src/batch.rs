//! One live response (or investigation package collection) on many machines at once,
//! within the service's quotas.
//!
//! Three kinds of threads share one [`Client`] (and so its token cache and rate
//! limiters): a *starter* that starts actions as long as fewer than
//! [`BatchOptions::max_in_flight`] are unfinished, a *poller* (the calling thread) that
//! looks at every unfinished action with one list query per round, and *finishers*
//! that hand each ended action to the caller's callback (which downloads results) while
//! the batch goes on. No async runtime.
//!
//! Written against the crate's public API only: everything here an embedder could
//! write with the same calls.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::mpsc;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::{
    ActionQuery, ActionStatus, Client, CommandType, Error, ErrorKind, LiveResponse, Machine,
    MachineAction, PollPlan, PollPolicy, RateLimit, Target, TransportKind,
};

/// What a batch starts on each machine.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum BatchWork {
    /// A live response session with these commands
    /// ([`Client::start_live_response`]).
    LiveResponse(LiveResponse),
    /// An investigation package collection ([`Client::collect_investigation_package`]),
    /// with this comment. A collection already running on a machine makes it busy.
    InvestigationPackage {
        /// Why, for the action center.
        comment: String,
    },
}

impl BatchWork {
    /// An investigation package collection with `comment`.
    pub fn investigation_package(comment: impl Into<String>) -> BatchWork {
        BatchWork::InvestigationPackage {
            comment: comment.into(),
        }
    }

    /// The comment the actions get.
    pub fn comment(&self) -> &str {
        match self {
            BatchWork::LiveResponse(r) => &r.comment,
            BatchWork::InvestigationPackage { comment } => comment,
        }
    }

    /// The `type` of the actions it starts: `LiveResponse` or
    /// `CollectInvestigationPackage`.
    pub fn action_type(&self) -> &'static str {
        match self {
            BatchWork::LiveResponse(_) => "LiveResponse",
            BatchWork::InvestigationPackage { .. } => "CollectInvestigationPackage",
        }
    }

    /// Starts it on one machine.
    fn start(&self, client: &Client, machine_id: &str) -> crate::Result<MachineAction> {
        match self {
            BatchWork::LiveResponse(r) => client.start_live_response(machine_id, r),
            BatchWork::InvestigationPackage { comment } => {
                client.collect_investigation_package(machine_id, comment)
            }
        }
    }

    /// The quota that paces a batch of it: the start quota of live response sessions,
    /// or the package link quota of collections (each needs one link, and starts are
    /// held only by the API quotas).
    fn pace<'c>(&self, client: &'c Client) -> &'c [RateLimit] {
        match self {
            BatchWork::LiveResponse(_) => client.start_quotas(),
            BatchWork::InvestigationPackage { .. } => client.package_quotas(),
        }
    }
}

impl From<LiveResponse> for BatchWork {
    fn from(request: LiveResponse) -> BatchWork {
        BatchWork::LiveResponse(request)
    }
}

/// What to do when a machine already has a live response session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnBusy {
    /// Wait for the other session to end, then start (within the wait timeout).
    #[default]
    Wait,
    /// Leave the machine out.
    Skip,
    /// Report the machine as failed.
    Fail,
}

/// How a batch runs. Every setting has a default; change one with its setter:
///
/// ```
/// use std::time::Duration;
/// use mdlr::{BatchOptions, OnBusy};
///
/// let options = BatchOptions::default()
///     .on_busy(OnBusy::Skip)
///     .wait_timeout(Duration::from_secs(20 * 60));
/// # let _ = options;
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BatchOptions {
    /// Most unfinished actions at once, `Pending` included (the service allows 50
    /// sessions; when it refuses a start for too many, the batch starts fewer for a
    /// while, and that machine later).
    pub max_in_flight: usize,
    /// What to do with a machine that has a session already.
    pub on_busy: OnBusy,
    /// How long to wait for each machine's action once it runs (left `Pending`); with
    /// no [`queue_timeout`](BatchOptions#structfield.queue_timeout), counted from its
    /// start.
    pub wait_timeout: Duration,
    /// How long an action may stay `Pending`: the service queues an action for an
    /// offline machine for up to 2 hours (the default). `None`: the wait timeout counts
    /// from the start, whatever the action's state.
    pub queue_timeout: Option<Duration>,
    /// How long an action may be `Pending` before the batch looks the machine up and
    /// says it is probably offline ([`BatchEvent::ProbablyOffline`]; default a minute).
    pub offline_after: Duration,
    /// How often to look at unfinished actions: the first look at a fresh action comes
    /// `poll.first` after its start; after that, rounds of looks (one list query per 25
    /// actions) come as often as the API quotas allow once the batch's own starts and
    /// result links are provided for ([`Client::poll_interval`]), never more often than
    /// every `poll.first` and at least once a minute. With few actions left that is
    /// every `poll.first`; while a thousand machines wait to start, every 15–20 s. Looks
    /// never make a start or a link wait for the limiter. (`poll.max` bounds the
    /// intervals of [`Client::wait_for`]; a batch's are longer than it only when the
    /// quotas need the room.)
    pub poll: PollPolicy,
    /// Wait for the actions to end; without it, each machine is reported once started.
    pub wait: bool,
    /// Threads handing ended actions to the callback (downloads run there).
    pub finishers: usize,
}

impl BatchOptions {
    /// Most unfinished actions at once (default 50).
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n;
        self
    }

    /// What to do with a machine that has a session already (default: wait).
    pub fn on_busy(mut self, on_busy: OnBusy) -> Self {
        self.on_busy = on_busy;
        self
    }

    /// How long to wait for each machine's action once it runs (default 15 min).
    pub fn wait_timeout(mut self, timeout: Duration) -> Self {
        self.wait_timeout = timeout;
        self
    }

    /// How long an action may stay `Pending` (default 2 hours, the service's queue for
    /// offline machines); `None`: the wait timeout counts from the start.
    pub fn queue_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.queue_timeout = timeout;
        self
    }

    /// How long an action may be `Pending` before its machine is said to be probably
    /// offline (default a minute).
    pub fn offline_after(mut self, after: Duration) -> Self {
        self.offline_after = after;
        self
    }

    /// How often to look at unfinished actions (default: the first look 1 s after a
    /// start, then as often as the quotas allow, but at most every second; see the
    /// field [`poll`](BatchOptions#structfield.poll)).
    pub fn poll(mut self, poll: PollPolicy) -> Self {
        self.poll = poll;
        self
    }

    /// Whether to wait for the actions to end (default: yes).
    pub fn wait(mut self, wait: bool) -> Self {
        self.wait = wait;
        self
    }

    /// Threads delivering ended actions to the callback (default 4).
    pub fn finishers(mut self, n: usize) -> Self {
        self.finishers = n;
        self
    }
}

impl Default for BatchOptions {
    fn default() -> BatchOptions {
        BatchOptions {
            max_in_flight: 50,
            on_busy: OnBusy::Wait,
            wait_timeout: Duration::from_secs(15 * 60),
            queue_timeout: Some(Duration::from_secs(2 * 3600)),
            offline_after: Duration::from_secs(60),
            poll: PollPolicy::default(),
            wait: true,
            finishers: 4,
        }
    }
}

/// How one machine's part of the batch ended.
#[derive(Debug)]
#[non_exhaustive]
pub enum Outcome {
    /// The action was started and not waited for.
    Started,
    /// The action ended; its status is in [`Report::action`].
    Ended,
    /// The machine had a session already and the options said not to wait (or the wait
    /// for it ran out).
    Busy {
        /// The other session's action, when found.
        other_action: Option<String>,
    },
    /// The action did not end within the wait timeout. It goes on running.
    WaitTimedOut,
    /// The action could not be started.
    StartFailed(Error),
    /// Its status could not be read, round after round.
    PollFailed(Error),
}

/// One machine's part of the batch.
#[derive(Debug)]
#[non_exhaustive]
pub struct Report {
    /// The machine.
    pub target: Target,
    /// Its action, when one was started.
    pub action_id: Option<String>,
    /// The action as last seen.
    pub action: Option<MachineAction>,
    /// How it ended.
    pub outcome: Outcome,
}

impl Report {
    /// The action's status as last seen, when there is an action.
    pub fn status(&self) -> Option<ActionStatus> {
        self.action.as_ref().map(MachineAction::status_or_unknown)
    }
}

/// `ended (Succeeded)`, `busy with action X`, `not started: ...`: how a machine's part
/// ended, in a few words.
impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.outcome, self.status()) {
            (Outcome::Ended, Some(status)) => write!(f, "ended ({status})"),
            (Outcome::WaitTimedOut, Some(status)) => {
                write!(f, "still {status} when the wait ran out")
            }
            (outcome, _) => write!(f, "{outcome}"),
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Started => f.write_str("started"),
            Outcome::Ended => f.write_str("ended"),
            Outcome::Busy {
                other_action: Some(other),
            } => write!(f, "busy with action {other}; not started"),
            Outcome::Busy { other_action: None } => {
                f.write_str("busy with another session; not started")
            }
            Outcome::WaitTimedOut => f.write_str("still running when the wait ran out"),
            Outcome::StartFailed(e) => write!(f, "not started: {e}"),
            Outcome::PollFailed(e) => write!(f, "its status could not be read: {e}"),
        }
    }
}

/// Counts of machines per state, for progress displays.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counts {
    /// Not started yet.
    pub queued: usize,
    /// Waiting for another session on the same machine to end.
    pub busy: usize,
    /// Started, `Pending` or not seen yet.
    pub pending: usize,
    /// `InProgress`.
    pub running: usize,
    /// Reported.
    pub done: usize,
}

/// Something that happened in a batch.
#[derive(Debug)]
#[non_exhaustive]
pub enum BatchEvent<'a> {
    /// An action started on a machine.
    Started {
        /// The machine.
        target: &'a Target,
        /// The new action.
        action_id: &'a str,
    },
    /// A machine has another session; the batch waits for it to end.
    Busy {
        /// The machine.
        target: &'a Target,
        /// The other session's action.
        other_action: &'a str,
    },
    /// A start was put off: the machine is tried again later, within its wait.
    StartDeferred {
        /// The machine.
        target: &'a Target,
        /// Why.
        reason: Deferral,
        /// When it is tried again, from now.
        retry_in: Duration,
    },
    /// An action has been `Pending` for [`BatchOptions::offline_after`]: its machine
    /// is probably offline (the service keeps the action queued, for up to 2 hours).
    ProbablyOffline {
        /// The machine.
        target: &'a Target,
        /// The pending action.
        action_id: &'a str,
        /// The machine as the machines API describes it (last seen, health), when it
        /// could be read.
        machine: Option<&'a Machine>,
    },
    /// A poll round failed; the next round tries again.
    PollError(&'a Error),
    /// The counts changed.
    Progress(Counts),
}

/// Why a start was put off ([`BatchEvent::StartDeferred`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Deferral {
    /// The service refused it for too many sessions at once: the batch keeps to `cap`
    /// unfinished actions for a while.
    SessionCap {
        /// Unfinished actions the batch now keeps to.
        cap: usize,
    },
    /// The service refused it as busy, but no action of the machine's can be seen (a
    /// session opened in the portal is not among the machine actions): tried again
    /// less and less often, never every few seconds.
    BusyUnseen,
    /// The service throttled it (429) past the retries: the batch pauses its starts.
    Throttled,
}

/// Figures about a finished batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BatchStats {
    /// Actions started.
    pub started: usize,
    /// Poll rounds (each one list query per 25 unfinished actions).
    pub poll_rounds: usize,
    /// Starts refused because the machine had a session.
    pub busy_refusals: usize,
    /// Starts put off ([`BatchEvent::StartDeferred`]).
    pub deferred: usize,
    /// Time from the first start to the last report.
    pub elapsed: Duration,
}

/// Ids per list query: keeps the query string short.
const IDS_PER_QUERY: usize = 25;
/// Poll rounds failing in a row before the batch gives up on its unfinished actions.
const MAX_POLL_FAILURES: usize = 5;
/// After the service refused a start for too many sessions, the lower cap holds for
/// this many times `poll.max` (5 minutes by default) before the full one is tried again.
const CAP_HOLD_ROUNDS: u32 = 60;
/// The longest backoff of a put-off start, in times `poll.max` (5 minutes by default).
const MAX_BACKOFF_ROUNDS: u32 = 60;

struct Tracked {
    target: Target,
    deadline: Instant,
    /// When to look at it first: `poll.first` after its start.
    first_look: Instant,
    action: Option<MachineAction>,
    failures: usize,
    /// When it started (or, resumed, when this run began following it).
    started: Instant,
    /// Seen running (or ended): its deadline counts from then.
    ran: bool,
    /// Its machine was looked up for being `Pending` long.
    offline_checked: bool,
}

impl Tracked {
    fn new(target: Target, options: &BatchOptions, started: Instant, first_look: Instant) -> Self {
        Tracked {
            target,
            deadline: started + options.queue_timeout.unwrap_or(options.wait_timeout),
            first_look,
            action: None,
            failures: 0,
            started,
            ran: false,
            offline_checked: false,
        }
    }
}

/// A machine waiting to start.
struct Queued {
    target: Target,
    /// Not before then.
    at: Instant,
    /// Set once a start was put off: the machine is given up at this time.
    deadline: Option<Instant>,
    /// Starts put off in a row (the backoff grows with them).
    tries: u32,
}

impl Queued {
    fn now(target: Target, at: Instant) -> Queued {
        Queued {
            target,
            at,
            deadline: None,
            tries: 0,
        }
    }
}

struct Blocked {
    target: Target,
    deadline: Instant,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Queued>,
    starting: usize,
    /// Unfinished actions the batch keeps to now (`max_in_flight`, lower for a while
    /// after the service refused a start for too many sessions), and when it goes back.
    cap: usize,
    cap_until: Option<Instant>,
    /// No start before then: the service throttled one past its retries.
    paused_until: Option<Instant>,
    /// Actions the batch stopped waiting for: the service may keep them running, so
    /// they still count against the session cap until they are seen to end.
    lingering: HashSet<String>,
    in_flight: HashMap<String, Tracked>,
    /// Other sessions' actions, and the machines waiting for them.
    blocked: HashMap<String, Vec<Blocked>>,
    reported: usize,
    total: usize,
    /// Reports handed to the finishers whose callback has not returned yet.
    delivering: usize,
    /// The service listed an ended action without its commands: each ended action may
    /// take a read by id.
    rereads_ended: bool,
    stats: BatchStats,
    /// Where reports go; dropped when the batch is over, which ends the finishers.
    reports: Option<mpsc::Sender<Report>>,
}

impl State {
    fn report(&mut self, r: Report) {
        self.reported += 1;
        self.delivering += 1;
        if let Some(sender) = &self.reports {
            let _ = sender.send(r);
        }
    }

    fn occupied(&self) -> usize {
        self.starting + self.in_flight.len() + self.blocked.len() + self.lingering.len()
    }

    /// The first machine that may start now, if any.
    fn next_ready(&mut self, now: Instant) -> Option<Queued> {
        if self.paused_until.is_some_and(|t| t > now) || self.occupied() >= self.cap {
            return None;
        }
        let i = self.queue.iter().position(|q| q.at <= now)?;
        self.queue.remove(i)
    }

    /// How long until a machine may start, when it is only a matter of time.
    fn next_start_in(&self, now: Instant) -> Option<Duration> {
        if self.occupied() >= self.cap {
            return None;
        }
        let at = self.queue.iter().map(|q| q.at).min()?;
        let at = self.paused_until.map_or(at, |p| p.max(at));
        Some(at.saturating_duration_since(now))
    }

    fn counts(&self) -> Counts {
        let running = self
            .in_flight
            .values()
            .filter(|t| {
                t.action
                    .as_ref()
                    .is_some_and(|a| a.status == Some(ActionStatus::InProgress))
            })
            .count();
        Counts {
            queued: self.queue.len(),
            busy: self.blocked.values().map(Vec::len).sum(),
            pending: self.starting + self.in_flight.len() - running,
            running,
            done: self.reported,
        }
    }
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A batch being set up: [`Client::batch`] makes one, the setters say on which
/// machines and how, and [`for_each`](Batch::for_each) or [`collect`](Batch::collect)
/// runs it.
///
/// ```no_run
/// # fn main() -> mdlr::Result<()> {
/// # let client = mdlr::Client::builder(mdlr::Credential::token("t")).build()?;
/// use mdlr::{LiveResponse, Outcome};
///
/// let targets = client.resolve_targets(&["host1.contoso.com", "host2.contoso.com"])?;
/// let (reports, stats) = client
///     .batch(LiveResponse::new("inventory").run_script("collect.ps1", ""))
///     .targets(targets)
///     .collect();
/// for r in reports {
///     let ended = matches!(r.outcome, Outcome::Ended);
///     println!("{}: {}", r.target.name, if ended { "ended" } else { "did not end" });
/// }
/// println!("{} started in {:.0?}", stats.started, stats.elapsed);
/// # Ok(()) }
/// ```
#[must_use]
pub struct Batch<'c> {
    client: &'c Client,
    work: BatchWork,
    targets: Vec<Target>,
    resumed: Vec<(Target, String)>,
    options: BatchOptions,
    on_event: Option<EventHandler<'c>>,
}

/// What hears of a batch's events.
type EventHandler<'c> = Box<dyn Fn(BatchEvent<'_>) + Sync + 'c>;

impl Client {
    /// A batch that runs `work` on machines — a [`LiveResponse`], or
    /// [`BatchWork::investigation_package`]: add them with [`Batch::targets`].
    pub fn batch(&self, work: impl Into<BatchWork>) -> Batch<'_> {
        Batch {
            client: self,
            work: work.into(),
            targets: Vec::new(),
            resumed: Vec::new(),
            options: BatchOptions::default(),
            on_event: None,
        }
    }
}

impl<'c> Batch<'c> {
    /// Adds machines to start the live response on (see
    /// [`Client::resolve_targets`]).
    pub fn targets(mut self, targets: impl IntoIterator<Item = Target>) -> Self {
        self.targets.extend(targets);
        self
    }

    /// Adds actions an earlier run started (machine and action id): they are followed,
    /// not started again.
    pub fn resume(mut self, actions: impl IntoIterator<Item = (Target, String)>) -> Self {
        self.resumed.extend(actions);
        self
    }

    /// How the batch runs.
    pub fn options(mut self, options: BatchOptions) -> Self {
        self.options = options;
        self
    }

    /// Hears of starts, busy machines, failed poll rounds and progress, as they happen.
    pub fn on_event(mut self, f: impl Fn(BatchEvent<'_>) + Sync + 'c) -> Self {
        self.on_event = Some(Box::new(f));
        self
    }

    /// Runs the batch and hands each machine's [`Report`] to `on_done` as soon as it
    /// is known, from one of [`BatchOptions::finishers`] threads (results can be
    /// downloaded there while the batch goes on). Keeps to the client's quotas (starts,
    /// API calls) and to [`BatchOptions::max_in_flight`] unfinished actions, one per
    /// machine.
    pub fn for_each(self, on_done: impl Fn(Report) + Sync) -> BatchStats {
        let quiet = |_: BatchEvent<'_>| {};
        let on_event: &(dyn Fn(BatchEvent<'_>) + Sync) = match &self.on_event {
            Some(f) => f.as_ref(),
            None => &quiet,
        };
        Run {
            client: self.client,
            work: &self.work,
            options: &self.options,
            on_event,
        }
        .go(self.targets, self.resumed, &on_done)
    }

    /// Runs the batch and returns every machine's [`Report`], in the order the
    /// machines finished.
    pub fn collect(self) -> (Vec<Report>, BatchStats) {
        let reports = Mutex::new(Vec::new());
        let stats = self.for_each(|r| reports.lock().unwrap_or_else(|e| e.into_inner()).push(r));
        (
            reports.into_inner().unwrap_or_else(|e| e.into_inner()),
            stats,
        )
    }
}

/// One batch at work.
struct Run<'a> {
    client: &'a Client,
    work: &'a BatchWork,
    options: &'a BatchOptions,
    on_event: &'a (dyn Fn(BatchEvent<'_>) + Sync),
}

impl Run<'_> {
    fn go(
        &self,
        targets: Vec<Target>,
        resumed: Vec<(Target, String)>,
        on_done: &(dyn Fn(Report) + Sync),
    ) -> BatchStats {
        let options = self.options;
        let begun = Instant::now();
        let mut state = State {
            total: targets.len() + resumed.len(),
            ..State::default()
        };
        state.cap = options.max_in_flight.max(1);
        state.queue = targets.into_iter().map(|t| Queued::now(t, begun)).collect();
        for (target, action_id) in resumed {
            // Started in an earlier run: look at once.
            let tracked = Tracked::new(target, options, begun, begun);
            state.in_flight.insert(action_id, tracked);
        }
        let (sender, receiver) = mpsc::channel::<Report>();
        state.reports = Some(sender);
        let shared = Shared {
            state: Mutex::new(state),
            wake: Condvar::new(),
        };
        let receiver = Mutex::new(receiver);
        std::thread::scope(|scope| {
            for _ in 0..options.finishers.max(1) {
                scope.spawn(|| {
                    loop {
                        let next = receiver.lock().unwrap_or_else(|e| e.into_inner()).recv();
                        match next {
                            Ok(report) => {
                                on_done(report);
                                let mut st = shared.lock();
                                st.delivering = st.delivering.saturating_sub(1);
                            }
                            Err(_) => return,
                        }
                    }
                });
            }
            scope.spawn(|| self.starter(&shared));
            self.poller(&shared);
            shared.lock().reports = None;
        });
        let mut stats = shared.lock().stats;
        stats.elapsed = begun.elapsed();
        stats
    }

    fn starter(&self, shared: &Shared) {
        let (client, options, on_event) = (self.client, self.options, self.on_event);
        loop {
            let queued = {
                let mut st = shared.lock();
                loop {
                    if st.queue.is_empty() && st.blocked.is_empty() {
                        return;
                    }
                    let now = Instant::now();
                    if st.cap_until.is_some_and(|t| t <= now) {
                        // Try the full number again: other people's sessions end too.
                        st.cap = options.max_in_flight.max(1);
                        st.cap_until = None;
                    }
                    if let Some(q) = st.next_ready(now) {
                        st.starting += 1;
                        break q;
                    }
                    let nap = st
                        .next_start_in(now)
                        .filter(|d| !d.is_zero())
                        .unwrap_or(Duration::from_secs(1));
                    st = shared
                        .wake
                        .wait_timeout(st, nap)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            };
            let target = &queued.target;
            let started = self.work.start(client, &target.machine_id);
            let busy = started.as_ref().is_err_and(Error::is_busy);
            let other = if busy && options.on_busy == OnBusy::Wait {
                self.running_action(&target.machine_id)
            } else {
                None
            };
            let mut st = shared.lock();
            st.starting -= 1;
            let now = Instant::now();
            match started {
                Ok(action) => {
                    let target = queued.target;
                    let Some(id) = action.id.clone() else {
                        let e = Error::malformed("machine action", "the started action has no id");
                        st.report(failed_start(target, e));
                        continue;
                    };
                    st.stats.started += 1;
                    on_event(BatchEvent::Started {
                        target: &target,
                        action_id: &id,
                    });
                    if options.wait {
                        let mut tracked =
                            Tracked::new(target, options, now, now + options.poll.first);
                        tracked.action = Some(action);
                        st.in_flight.insert(id, tracked);
                    } else {
                        let r = Report {
                            target,
                            action_id: Some(id),
                            action: Some(action),
                            outcome: Outcome::Started,
                        };
                        st.report(r);
                    }
                }
                Err(_) if busy => {
                    st.stats.busy_refusals += 1;
                    match (options.on_busy, other) {
                        (OnBusy::Wait, Some(other)) => {
                            on_event(BatchEvent::Busy {
                                target: &queued.target,
                                other_action: &other,
                            });
                            let deadline = queued.deadline.unwrap_or(now + options.wait_timeout);
                            st.blocked.entry(other).or_default().push(Blocked {
                                target: queued.target,
                                deadline,
                            });
                        }
                        // Busy, with no action to be seen: it ended meanwhile, or it
                        // is a session the API does not list (opened in the portal).
                        // Again later and later, within the machine's wait.
                        (OnBusy::Wait, None) => {
                            self.defer(&mut st, queued, Deferral::BusyUnseen, now, None);
                        }
                        (_, other_action) => {
                            let r = Report {
                                target: queued.target,
                                action_id: None,
                                action: None,
                                outcome: Outcome::Busy { other_action },
                            };
                            st.report(r);
                        }
                    }
                }
                // Too many sessions at once: start no more than are open now, for a
                // while, and this machine when one ends. Never a failure.
                Err(e) if e.is_session_cap() => {
                    let cap = st.occupied().max(1);
                    st.cap = cap;
                    st.cap_until = Some(now + CAP_HOLD_ROUNDS * options.poll.max);
                    let reason = Deferral::SessionCap { cap };
                    self.defer(&mut st, queued, reason, now, Some(options.poll.first));
                }
                // Throttled past the retries: the batch pauses its starts.
                Err(e) if e.kind() == ErrorKind::Throttled => {
                    if let Some(at) = self.defer(&mut st, queued, Deferral::Throttled, now, None) {
                        st.paused_until = Some(at);
                    }
                }
                Err(e) => st.report(failed_start(queued.target, e)),
            }
            shared.wake.notify_all();
            on_event(BatchEvent::Progress(st.counts()));
        }
    }

    /// Puts a machine's start off: again after `delay` (or a backoff that doubles
    /// with each deferral in a row, from `poll.max` up to [`MAX_BACKOFF_ROUNDS`] times
    /// it), within its wait; reported busy or not started once its wait has run out.
    /// Returns when it is tried again, if it is.
    fn defer(
        &self,
        st: &mut State,
        mut queued: Queued,
        reason: Deferral,
        now: Instant,
        delay: Option<Duration>,
    ) -> Option<Instant> {
        let options = self.options;
        let deadline = *queued.deadline.get_or_insert(now + options.wait_timeout);
        let base = options.poll.max.max(options.poll.first);
        let backoff = base
            .saturating_mul(1u32 << queued.tries.min(16))
            .min(base.saturating_mul(MAX_BACKOFF_ROUNDS));
        let at = now + delay.unwrap_or(backoff);
        if at > deadline {
            let outcome = match reason {
                Deferral::BusyUnseen => Outcome::Busy { other_action: None },
                _ => Outcome::StartFailed(Error::Api {
                    status: 429,
                    code: None,
                    message: format!(
                        "the service refused the start ({}) until the wait ran out",
                        match reason {
                            Deferral::SessionCap { .. } => "too many sessions at once",
                            _ => "throttled",
                        }
                    ),
                    correlation_id: None,
                }),
            };
            let r = Report {
                target: queued.target,
                action_id: None,
                action: None,
                outcome,
            };
            st.report(r);
            return None;
        }
        st.stats.deferred += 1;
        (self.on_event)(BatchEvent::StartDeferred {
            target: &queued.target,
            reason,
            retry_in: at - now,
        });
        queued.at = at;
        queued.tries += 1;
        st.queue.push_back(queued);
        Some(at)
    }

    /// The unfinished action holding a machine's session, if one can be found.
    fn running_action(&self, machine_id: &str) -> Option<String> {
        let mut query = ActionQuery::new();
        query.machine_ids = vec![machine_id.to_owned()];
        query.statuses = vec![ActionStatus::Pending, ActionStatus::InProgress];
        query.action_type = Some(self.work.action_type().to_owned());
        query.top = Some(10);
        self.client
            .list_actions(&query)
            .ok()?
            .into_iter()
            .find(|a| !a.status_or_unknown().is_terminal())
            .and_then(|a| a.id)
    }

    fn poller(&self, shared: &Shared) {
        let (client, options, on_event) = (self.client, self.options, self.on_event);
        // How often to look again when nothing wakes the poller: the interval the
        // quotas allow changes as calls leave their windows.
        let recheck = options.poll.first.max(Duration::from_millis(1));
        let mut last_round: Option<Instant> = None;
        let mut offline: Vec<(Target, String)> = Vec::new();
        loop {
            let ids: Vec<String> = {
                let mut st = shared.lock();
                loop {
                    if st.reported >= st.total {
                        return;
                    }
                    let now = Instant::now();
                    let nap = match self.next_round(&st, last_round, now) {
                        Some(at) if at <= now => break,
                        Some(at) => (at - now).min(recheck),
                        None => recheck,
                    };
                    st = shared
                        .wake
                        .wait_timeout(st, nap)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                st.in_flight
                    .keys()
                    .chain(st.blocked.keys())
                    .chain(st.lingering.iter())
                    .cloned()
                    .collect()
            };
            last_round = Some(Instant::now());
            if ids.is_empty() {
                continue;
            }
            let mut seen: HashMap<String, MachineAction> = HashMap::new();
            let mut failure = None;
            for chunk in ids.chunks(IDS_PER_QUERY) {
                let mut query = ActionQuery::new();
                query.ids = chunk.to_vec();
                match client.list_actions(&query) {
                    Ok(actions) => seen.extend(
                        actions
                            .into_iter()
                            .filter_map(|a| a.id.clone().map(|id| (id, a))),
                    ),
                    Err(e) => failure = Some(e),
                }
            }
            let reread = self.read_unlisted_commands(shared, &mut seen, &mut failure);
            let mut st = shared.lock();
            st.stats.poll_rounds += 1;
            st.rereads_ended |= reread;
            if let Some(e) = &failure {
                on_event(BatchEvent::PollError(e));
            }
            let now = Instant::now();
            for id in ids {
                let action = seen.remove(&id);
                if st.lingering.contains(&id) {
                    if action.is_some_and(|a| a.status_or_unknown().is_terminal()) {
                        st.lingering.remove(&id);
                    }
                    continue;
                }
                if let Some(waiting) = st.blocked.remove(&id) {
                    let ended = action
                        .as_ref()
                        .is_none_or(|a| a.status_or_unknown().is_terminal());
                    let (expired, keep): (Vec<_>, Vec<_>) =
                        waiting.into_iter().partition(|b| b.deadline <= now);
                    for b in expired {
                        let r = Report {
                            target: b.target,
                            action_id: None,
                            action: None,
                            outcome: Outcome::Busy {
                                other_action: Some(id.clone()),
                            },
                        };
                        st.report(r);
                    }
                    if ended {
                        for b in keep {
                            st.queue.push_front(Queued {
                                target: b.target,
                                at: now,
                                deadline: Some(b.deadline),
                                tries: 0,
                            });
                        }
                    } else if !keep.is_empty() {
                        st.blocked.insert(id, keep);
                    }
                    continue;
                }
                let Some(mut tracked) = st.in_flight.remove(&id) else {
                    continue;
                };
                let outcome = match action {
                    Some(a) if a.status_or_unknown().is_terminal() => {
                        tracked.action = Some(a);
                        Some(Outcome::Ended)
                    }
                    Some(a) => {
                        let running = a.status_or_unknown() != ActionStatus::Pending;
                        if running && !tracked.ran {
                            // Out of the queue: its wait runs from now.
                            tracked.ran = true;
                            if options.queue_timeout.is_some() {
                                tracked.deadline = now + options.wait_timeout;
                            }
                        }
                        tracked.action = Some(a);
                        tracked.failures = 0;
                        None
                    }
                    None if failure.is_some() => {
                        tracked.failures += 1;
                        (tracked.failures >= MAX_POLL_FAILURES).then(|| {
                            Outcome::PollFailed(Error::Transport {
                                url: String::new(),
                                kind: TransportKind::Other,
                                message: format!(
                                    "the action's status could not be read in {MAX_POLL_FAILURES} rounds"
                                ),
                                source: failure.as_ref().map(|e| e.to_string().into()),
                            })
                        })
                    }
                    // Not listed yet: new actions take a moment to appear.
                    None => None,
                };
                let outcome =
                    outcome.or_else(|| (tracked.deadline <= now).then_some(Outcome::WaitTimedOut));
                match outcome {
                    Some(outcome) => {
                        if matches!(outcome, Outcome::WaitTimedOut) {
                            st.lingering.insert(id.clone());
                        }
                        let r = Report {
                            target: tracked.target,
                            action_id: Some(id),
                            action: tracked.action,
                            outcome,
                        };
                        st.report(r);
                    }
                    None => {
                        if !tracked.ran
                            && !tracked.offline_checked
                            && now.saturating_duration_since(tracked.started)
                                >= options.offline_after
                        {
                            tracked.offline_checked = true;
                            offline.push((tracked.target.clone(), id.clone()));
                        }
                        st.in_flight.insert(id, tracked);
                    }
                }
            }
            shared.wake.notify_all();
            on_event(BatchEvent::Progress(st.counts()));
            drop(st);
            // Machines whose action is still queued: say what the machines API knows
            // of them (one call each, once).
            for (target, action_id) in offline.drain(..) {
                let machine = client.machine(&target.machine_id).ok();
                on_event(BatchEvent::ProbablyOffline {
                    target: &target,
                    action_id: &action_id,
                    machine: machine.as_ref(),
                });
            }
        }
    }

    /// Reads by id each of our ended live response actions that the list showed
    /// without commands (a service may leave them out of list items): delivery needs
    /// them, and a live response always has some. An action that cannot be read is left
    /// unseen this round, as a failed look. Says whether any was read. (Other sessions'
    /// actions and investigation packages need no commands.)
    fn read_unlisted_commands(
        &self,
        shared: &Shared,
        seen: &mut HashMap<String, MachineAction>,
        failure: &mut Option<Error>,
    ) -> bool {
        if !matches!(self.work, BatchWork::LiveResponse(_)) {
            return false;
        }
        let unlisted: Vec<String> = {
            let st = shared.lock();
            seen.iter()
                .filter(|(id, a)| {
                    st.in_flight.contains_key(*id) && a.is_finished() && a.commands.is_empty()
                })
                .map(|(id, _)| id.clone())
                .collect()
        };
        for id in &unlisted {
            match self.client.action(id) {
                Ok(a) => {
                    seen.insert(id.clone(), a);
                }
                Err(e) => {
                    seen.remove(id);
                    *failure = Some(e);
                }
            }
        }
        !unlisted.is_empty()
    }

    /// When the next round of looks is due, if there is anything to look at: at the
    /// pace the quotas leave after the batch's own needs, but no fresh action before
    /// `poll.first` after its start.
    fn next_round(&self, st: &State, last: Option<Instant>, now: Instant) -> Option<Instant> {
        let poll = self.options.poll;
        // Other sessions' actions are due at once (and ours we stopped waiting for,
        // when machines wait for their places); ours `poll.first` after their start.
        let lingering = !st.lingering.is_empty() && !st.queue.is_empty();
        let due = if st.blocked.is_empty() && !lingering {
            st.in_flight.values().map(|t| t.first_look).min()?
        } else {
            now
        };
        let Some(last) = last else {
            return Some(due);
        };
        let links_each = links_per_action(self.work);
        let per_query = if self.client.lists_one_at_a_time() {
            1
        } else {
            IDS_PER_QUERY
        };
        let plan = plan(
            st,
            self.options,
            self.work.pace(self.client),
            (links_each, per_query),
            now,
        );
        let interval = self.client.poll_interval(&plan).max(poll.first);
        Some((last + interval).max(due))
    }
}

/// Result links an action of `request` needs: one per RunScript and GetFile (a PutFile
/// has no result).
fn links_per_action(work: &BatchWork) -> usize {
    match work {
        BatchWork::LiveResponse(request) => request
            .commands
            .iter()
            .filter(|c| {
                matches!(
                    c.command_type,
                    CommandType::RunScript | CommandType::GetFile
                )
            })
            .count(),
        // One package link each.
        BatchWork::InvestigationPackage { .. } => 1,
    }
}

/// What the batch still has to spend besides its looks: a start for every machine not
/// started, a link per result of every action not delivered (and a read of each once
/// the service was seen to list ended actions without their commands), and looks until
/// the last wait can run out, at one list query per `per_query` actions.
fn plan(
    st: &State,
    options: &BatchOptions,
    start_quotas: &[RateLimit],
    (links_each, per_query): (usize, usize),
    now: Instant,
) -> PollPlan {
    let watched = st.in_flight.len() + st.blocked.len() + st.lingering.len();
    let waiting: usize = st.blocked.values().map(Vec::len).sum();
    let to_start = st.queue.len() + st.starting + waiting;
    let last_deadline = st
        .in_flight
        .values()
        .map(|t| t.deadline)
        .chain(st.blocked.values().flatten().map(|b| b.deadline))
        .max()
        .map_or(Duration::ZERO, |d| d.saturating_duration_since(now));
    let horizon = if to_start > 0 {
        // The last machine starts once the start quotas let it through (or when the
        // last of the others has ended), then waits its full time.
        last_deadline.max(start_span(start_quotas, to_start)) + options.wait_timeout
    } else {
        last_deadline
    };
    let reads = usize::from(st.rereads_ended) * st.in_flight.len();
    PollPlan::new(watched.div_ceil(per_query.max(1)).max(1), horizon)
        .starts(to_start, links_each)
        .links(links_each * (st.in_flight.len() + st.delivering) + reads)
}

/// How long the start quotas take to let `n` more starts through.
fn start_span(starts: &[RateLimit], n: usize) -> Duration {
    starts
        .iter()
        .filter(|l| l.calls > 0)
        .map(|l| l.per * n.div_ceil(l.calls as usize).saturating_sub(1) as u32)
        .max()
        .unwrap_or(Duration::ZERO)
}

fn failed_start(target: Target, e: Error) -> Report {
    Report {
        target,
        action_id: None,
        action: None,
        outcome: Outcome::StartFailed(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_counts_what_the_batch_still_has_to_spend() {
        let now = Instant::now();
        let options = BatchOptions::default();
        let target = |n: usize| Target {
            machine_id: format!("{n:040x}"),
            name: format!("host{n}"),
        };
        // 30 queued, 2 starting, 27 watched (one of them another session with a
        // machine waiting for it), 3 being delivered.
        let mut st = State {
            queue: (0..30).map(|n| Queued::now(target(n), now)).collect(),
            starting: 2,
            delivering: 3,
            ..State::default()
        };
        for n in 0..26 {
            let mut t = Tracked::new(target(100 + n), &options, now, now);
            t.deadline = now + Duration::from_secs(60 * (n as u64 + 1));
            st.in_flight.insert(format!("a{n}"), t);
        }
        let b = Blocked {
            target: target(200),
            deadline: now + Duration::from_secs(30),
        };
        st.blocked.insert("other".to_owned(), vec![b]);
        let p = plan(&st, &options, &RateLimit::start_defaults(), (2, 25), now);
        assert_eq!(p.round_calls, 2, "27 actions: two list queries a round");
        assert_eq!((p.starts, p.links_per_start), (33, 2));
        assert_eq!(p.links, 2 * (26 + 3));
        // 33 starts take four minutes at 10 a minute (the first ten at once); the
        // last of the 26 waits ends in 26 minutes; then the last start waits 15.
        assert_eq!(p.horizon, Duration::from_secs((26 + 15) * 60));
        st.queue.clear();
        st.starting = 0;
        st.blocked.clear();
        let p = plan(&st, &options, &RateLimit::start_defaults(), (2, 25), now);
        assert_eq!((p.starts, p.round_calls), (0, 2));
        assert_eq!(p.horizon, Duration::from_secs(26 * 60));
        // A service that takes one id a query: a call per action a round; one that
        // lists ended actions without commands: a read each on top of the links.
        st.rereads_ended = true;
        let p = plan(&st, &options, &RateLimit::start_defaults(), (2, 1), now);
        assert_eq!(p.round_calls, 26);
        assert_eq!(p.links, 2 * (26 + 3) + 26);
        assert_eq!(
            start_span(&RateLimit::start_defaults(), 33),
            Duration::from_secs(180)
        );
        assert_eq!(start_span(&[], 33), Duration::ZERO);
    }

    #[test]
    fn results_need_links_and_put_files_none() {
        let request = LiveResponse::new("c")
            .put_file("a.ps1")
            .run_script("a.ps1", "")
            .get_file("C:\\a")
            .get_file("C:\\b");
        assert_eq!(links_per_action(&request.into()), 3);
        assert_eq!(
            links_per_action(&LiveResponse::new("c").put_file("a").into()),
            0
        );
        assert_eq!(links_per_action(&BatchWork::investigation_package("c")), 1);
    }
}
