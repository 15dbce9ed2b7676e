//! The quota state that processes share
//! ([`ClientBuilder::shared_quotas`](crate::ClientBuilder::shared_quotas)).
//!
//! The service counts calls per application and tenant, whichever process makes them
//! (SPEC A7). Processes that opt in keep, in one small JSON file, what each quota's
//! windows hold: when the replies of finished calls arrived, and which calls are under
//! way and since when. A call is let through only under an exclusive lock, once the
//! state read back has room for it in every window; it goes in as under way, and the
//! arrival of its reply dates it — as in one process's limiter.
//!
//! What keeps it sound:
//! - The lock is an advisory `flock` (std's `File::lock`) on `PATH.lock`, a file that is
//!   never renamed or truncated: the kernel drops it when its holder dies, however it
//!   dies. Threads of one process take a mutex first (a `flock` is per open file).
//! - The state is written whole to `PATH.tmp`, then renamed over `PATH`: a reader sees
//!   the old state or the new one, never part of one, and a writer killed halfway
//!   leaves only the temporary file, which the next writer truncates.
//! - A state that does not parse counts as empty and is written anew (and reported),
//!   never a panic.
//! - A call under way whose process died counts as under way for [`STALE`] at most,
//!   then as finished at that moment.
//! - Times are the wall clock, milliseconds since the epoch, since they must mean the
//!   same in every process: stored rounded up, read against now rounded down, so
//!   rounding never frees a place early. A time in the future (the clock was set back)
//!   counts as now and is written back as now: a clock set back slows the processes
//!   down for a window at most. A clock set forward makes calls look older than they
//!   are; each process's own limiter, on the monotonic clock, still holds its own calls.
//! - A lock not had within [`PATIENCE`] (its holder stopped, not killed), or a file
//!   that cannot be read or written, lets the call go by the process's own limiter
//!   alone, and is reported once until the file works again; meanwhile calls wait for
//!   the lock a tenth of a second at most.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How long a call under way counts as under way without its process saying more: past
/// this its process is taken for dead, and the call as finished then. API calls take
/// seconds; the service has seen a request long before this.
pub(crate) const STALE: Duration = Duration::from_secs(120);
/// How long a call waits for the lock before it goes by its own process's limiter ...
pub(crate) const PATIENCE: Duration = Duration::from_secs(10);
/// ... and, once one has had to, how long the next calls wait for it, until the file
/// works again: time enough for a holder that is running (it holds the lock for well
/// under a millisecond), not enough for calls to pile up behind one that is stopped.
const PATIENCE_FAILING: Duration = Duration::from_millis(100);
/// A larger state is not one this module wrote (1500 calls an hour take about 21 KB).
const MAX_STATE: u64 = 4 << 20;
/// The format's version, in the file as `"mdlr_quotas"`.
const VERSION: u32 = 1;

/// The quotas the file keeps, one part each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Section {
    /// Every API call.
    Api,
    /// Live response session starts.
    Starts,
    /// Investigation package links.
    Packages,
}

/// The file's contents.
#[derive(Debug, Serialize, Deserialize)]
struct State {
    mdlr_quotas: u32,
    #[serde(default)]
    api: Calls,
    #[serde(default)]
    starts: Calls,
    #[serde(default)]
    packages: Calls,
}

impl Default for State {
    fn default() -> State {
        State {
            mdlr_quotas: VERSION,
            api: Calls::default(),
            starts: Calls::default(),
            packages: Calls::default(),
        }
    }
}

impl State {
    fn calls(&mut self, section: Section) -> &mut Calls {
        match section {
            Section::Api => &mut self.api,
            Section::Starts => &mut self.starts,
            Section::Packages => &mut self.packages,
        }
    }
}

/// One quota's calls.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Calls {
    /// When the replies of finished calls arrived (ms since the epoch), oldest first.
    #[serde(default)]
    done: Vec<u64>,
    /// Calls under way: `[since (ms since the epoch), owner, number]`.
    #[serde(default)]
    open: Vec<(u64, String, u64)>,
    /// How long finished calls are kept (ms): the longest window of the clients
    /// sharing the file, so that one with shorter windows (`--api-quota 50/1m`) does
    /// not drop the calls another's hour needs ...
    #[serde(default)]
    keep: u64,
    /// ... as long as a client with that window used the file within it (ms since
    /// the epoch).
    #[serde(default)]
    keep_until: u64,
}

impl Calls {
    /// Brings the calls to `now` (ms since the epoch, rounded up): times in the future
    /// become now, calls under way past [`STALE`] finish then, and finished calls older
    /// than the longest window of the clients using the file (this one's is `keep`)
    /// go. Whether anything changed.
    fn tidy(&mut self, now: u64, keep: Duration) -> bool {
        let mut changed = false;
        let own = millis(keep);
        let others = if self.keep_until > now { self.keep } else { 0 };
        if own >= others {
            changed |= self.keep != own;
            (self.keep, self.keep_until) = (own, now.saturating_add(own));
        }
        let keep = own.max(others);
        for t in self
            .done
            .iter_mut()
            .chain(self.open.iter_mut().map(|(since, _, _)| since))
        {
            if *t > now {
                *t = now;
                changed = true;
            }
        }
        let stale = millis(STALE);
        let before = self.open.len();
        let mut ended = Vec::new();
        self.open.retain(|(since, _, _)| {
            let gone = now - since >= stale;
            if gone {
                ended.push(since + stale);
            }
            !gone
        });
        self.done.extend(ended);
        let count = self.done.len();
        self.done.retain(|t| now - t < keep);
        self.done.sort_unstable();
        changed || self.open.len() != before || self.done.len() != count
    }

    /// What the windows hold at `now` (ms since the epoch, rounded down).
    fn held(&self, now: u64) -> Held {
        Held {
            ages: self
                .done
                .iter()
                .map(|t| Duration::from_millis(now.saturating_sub(*t)))
                .collect(),
            under_way: self.open.len(),
        }
    }
}

/// What one quota's windows hold, seen from now.
#[derive(Debug, Default)]
pub(crate) struct Held {
    /// How long ago the replies of finished calls arrived.
    pub(crate) ages: Vec<Duration>,
    /// Calls under way, in any process.
    pub(crate) under_way: usize,
}

/// What [`QuotaFile::take`] decided.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Turn {
    /// The call may go; with its number in the file, or `None` when the file could not
    /// be used (and the call goes by the process's own limiter).
    Go(Option<u64>),
    /// No room yet: look again after this long.
    Wait(Duration),
}

/// Told what went wrong with the file (its path in the message).
pub(crate) type Reporter = Arc<dyn Fn(&str) + Send + Sync>;

/// The shared state file, its lock and this client's name in it.
pub(crate) struct QuotaFile {
    path: PathBuf,
    temp: PathBuf,
    lock_path: PathBuf,
    /// The open lock file; the mutex keeps this process's threads in turn.
    lock: Mutex<File>,
    /// This client's name on its calls under way.
    owner: String,
    next: AtomicU64,
    patience: Duration,
    report: Option<Reporter>,
    /// Whether the last use failed (so a run of failures is reported once).
    failing: AtomicBool,
}

impl std::fmt::Debug for QuotaFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuotaFile")
            .field("path", &self.path)
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

/// Milliseconds in `d`.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The wall clock in milliseconds since the epoch: (rounded down, rounded up).
fn clock() -> (u64, u64) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let down = millis(now);
    (
        down,
        down + u64::from(!now.subsec_nanos().is_multiple_of(1_000_000)),
    )
}

/// Options creating a file readable by the user only.
fn private(options: &mut OpenOptions) -> &mut OpenOptions {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

impl QuotaFile {
    /// Opens (creating it if need be, mode 600) the lock file beside `path`. The state
    /// itself is read and written at each call.
    pub(crate) fn open(path: PathBuf, report: Option<Reporter>) -> Result<QuotaFile> {
        let Some(name) = path.file_name().map(|n| n.to_os_string()) else {
            return Err(Error::config(format!(
                "shared quota file {}: not a file name",
                path.display()
            )));
        };
        let beside = |suffix: &str| {
            let mut n = name.clone();
            n.push(suffix);
            path.with_file_name(n)
        };
        let (lock_path, temp) = (beside(".lock"), beside(".tmp"));
        let lock = private(
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false),
        )
        .open(&lock_path)
        .map_err(|e| Error::io(&lock_path, "create", e))?;
        Ok(QuotaFile {
            path,
            temp,
            lock_path,
            lock: Mutex::new(lock),
            owner: format!("{:016x}", crate::ids::random_u64()),
            next: AtomicU64::new(0),
            patience: PATIENCE,
            report,
            failing: AtomicBool::new(false),
        })
    }

    fn say(&self, message: &str) {
        if let Some(report) = &self.report {
            report(message);
        }
    }

    /// Notes how a use of the file went: a failure is reported unless the one before
    /// failed too.
    fn outcome<T>(&self, result: std::result::Result<T, String>) -> Option<T> {
        match result {
            Ok(v) => {
                self.failing.store(false, Ordering::Relaxed);
                Some(v)
            }
            Err(why) => {
                if !self.failing.swap(true, Ordering::Relaxed) {
                    self.say(&format!(
                        "{why}; until it works again, this process keeps to the quotas \
                         on its own"
                    ));
                }
                None
            }
        }
    }

    /// Reads the state; a missing file is an empty state, and one that does not parse
    /// is an empty state to write anew (`true`).
    fn read(&self) -> std::result::Result<(State, bool), String> {
        let file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok((State::default(), false));
            }
            Err(e) => return Err(format!("cannot read {}: {e}", self.path.display())),
        };
        let mut bytes = Vec::new();
        file.take(MAX_STATE + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("cannot read {}: {e}", self.path.display()))?;
        match serde_json::from_slice::<State>(&bytes) {
            Ok(state) if state.mdlr_quotas == VERSION && bytes.len() as u64 <= MAX_STATE => {
                Ok((state, false))
            }
            _ => {
                self.say(&format!(
                    "the shared quota state {} was damaged or not mdlr's; started it anew",
                    self.path.display()
                ));
                Ok((State::default(), true))
            }
        }
    }

    /// Writes the state whole to the temporary file and renames it over the state.
    fn write(&self, state: &State) -> std::result::Result<(), String> {
        let bytes = serde_json::to_vec(state).map_err(|e| e.to_string())?;
        let written = private(OpenOptions::new().write(true).create(true).truncate(true))
            .open(&self.temp)
            .and_then(|mut f| f.write_all(&bytes));
        written.map_err(|e| format!("cannot write {}: {e}", self.temp.display()))?;
        std::fs::rename(&self.temp, &self.path)
            .map_err(|e| format!("cannot rename {}: {e}", self.temp.display()))
    }

    /// Under the lock: reads the state, lets `f` change it (given now rounded down and
    /// up), and writes it back when `f` says it changed it or it had to start anew.
    fn update<R>(
        &self,
        f: impl FnOnce(&mut State, (u64, u64)) -> (R, bool),
    ) -> std::result::Result<R, String> {
        let file = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let patience = if self.failing.load(Ordering::Relaxed) {
            self.patience.min(PATIENCE_FAILING)
        } else {
            self.patience
        };
        let began = Instant::now();
        let mut pause = Duration::from_micros(100);
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) if began.elapsed() < patience => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(5));
                }
                Err(TryLockError::WouldBlock) => {
                    return Err(format!(
                        "another process has held {} for over {} s",
                        self.lock_path.display(),
                        patience.as_secs_f64()
                    ));
                }
                Err(TryLockError::Error(e)) => {
                    return Err(format!("cannot lock {}: {e}", self.lock_path.display()));
                }
            }
        }
        let result = self.read().and_then(|(mut state, anew)| {
            let (r, changed) = f(&mut state, clock());
            if changed || anew {
                self.write(&state)?;
            }
            Ok(r)
        });
        // Closing would drop it too; the file stays open for the next call.
        let _ = file.unlock();
        result
    }

    /// Lets a call of `section` through if `decide`, told what the windows hold (calls
    /// of every process), says it need not wait; it is then under way in the file until
    /// [`QuotaFile::release`]. `keep` is the longest window: older calls are dropped.
    pub(crate) fn take(
        &self,
        section: Section,
        keep: Duration,
        decide: impl FnOnce(&Held) -> Duration,
    ) -> Turn {
        let result = self.update(|state, (down, up)| {
            let calls = state.calls(section);
            let changed = calls.tidy(up, keep);
            let wait = decide(&calls.held(down));
            if !wait.is_zero() {
                return (Turn::Wait(wait), changed);
            }
            let number = self.next.fetch_add(1, Ordering::Relaxed);
            calls.open.push((up, self.owner.clone(), number));
            (Turn::Go(Some(number)), true)
        });
        self.outcome(result).unwrap_or(Turn::Go(None))
    }

    /// The reply of a call of `section` arrived: it is finished now. `number` is what
    /// [`QuotaFile::take`] gave it (`None`: the file could not be used then; the call
    /// is recorded now if it can be).
    pub(crate) fn release(&self, section: Section, keep: Duration, number: Option<u64>) {
        let result = self.update(|state, (_, up)| {
            let calls = state.calls(section);
            if let Some(n) = number {
                calls
                    .open
                    .retain(|(_, owner, k)| !(*k == n && *owner == self.owner));
            }
            calls.done.push(up);
            calls.tidy(up, keep);
            ((), true)
        });
        self.outcome(result);
    }

    /// What `section`'s windows hold now, calls of every process included; `None` when
    /// the file cannot be read. Reads without the lock: a rename replaces the state
    /// whole.
    pub(crate) fn held(&self, section: Section, keep: Duration) -> Option<Held> {
        let (down, up) = clock();
        let result = self.read().map(|(mut state, _)| {
            let calls = state.calls(section);
            calls.tidy(up, keep);
            calls.held(down)
        });
        self.outcome(result)
    }

    /// Waits at most `patience` for the lock (tests).
    #[cfg(test)]
    fn with_patience(mut self, patience: Duration) -> QuotaFile {
        self.patience = patience;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::sync::atomic::AtomicUsize;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "mdlr-quota-file-{}-{name}-{:x}",
            std::process::id(),
            crate::ids::random_u64()
        ));
        std::fs::create_dir_all(&dir).expect("scratch directory");
        dir
    }

    fn open(path: &Path) -> QuotaFile {
        QuotaFile::open(path.to_owned(), None).expect("open the quota file")
    }

    /// Lets a call through when fewer than `calls` are in the windows.
    fn room(calls: usize) -> impl Fn(&Held) -> Duration {
        move |held: &Held| {
            if held.ages.len() + held.under_way < calls {
                Duration::ZERO
            } else {
                Duration::from_millis(1)
            }
        }
    }

    #[test]
    fn calls_under_way_and_finished_are_seen_by_another_client() {
        let dir = scratch("seen");
        let path = dir.join("q.json");
        let (a, b) = (open(&path), open(&path));
        let keep = Duration::from_secs(60);
        let Turn::Go(Some(n)) = a.take(Section::Starts, keep, room(2)) else {
            panic!("the first call goes");
        };
        let held = b.held(Section::Starts, keep).expect("readable");
        assert_eq!((held.ages.len(), held.under_way), (0, 1));
        assert_eq!(b.take(Section::Starts, keep, room(2)), Turn::Go(Some(0)));
        assert!(matches!(
            a.take(Section::Starts, keep, room(2)),
            Turn::Wait(_)
        ));
        a.release(Section::Starts, keep, Some(n));
        let held = b.held(Section::Starts, keep).expect("readable");
        assert_eq!((held.ages.len(), held.under_way), (1, 1));
        // Other quotas are apart.
        let api = b.held(Section::Api, keep).expect("readable");
        assert_eq!((api.ages.len(), api.under_way), (0, 0));
        // Private to the user.
        #[cfg(unix)]
        for p in [&path, &dir.join("q.json.lock")] {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(p).expect("exists").permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{}", p.display());
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Threads with clients of their own on one file, as processes would be: no more
    /// than the quota under way or finished in any window, however they interleave.
    #[test]
    fn clients_on_one_file_never_exceed_the_quota_together() {
        let dir = scratch("together");
        let path = dir.join("q.json");
        let keep = Duration::from_secs(3600);
        let quota = 5;
        let granted = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..6)
            .map(|_| {
                let file = open(&path);
                let granted = granted.clone();
                std::thread::spawn(move || {
                    for _ in 0..40 {
                        if let Turn::Go(Some(_)) = file.take(Section::Api, keep, room(quota)) {
                            granted.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("no panic");
        }
        // Nothing finishes: exactly the quota went through, whoever got it.
        assert_eq!(granted.load(Ordering::SeqCst), quota);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_damaged_state_is_started_anew_and_reported() {
        let dir = scratch("damaged");
        let path = dir.join("q.json");
        let reports = Arc::new(Mutex::new(Vec::<String>::new()));
        let sink = reports.clone();
        let report: Reporter = Arc::new(move |m: &str| {
            sink.lock().expect("not poisoned").push(m.to_owned());
        });
        let file = QuotaFile::open(path.clone(), Some(report)).expect("open");
        let keep = Duration::from_secs(60);
        for damaged in [
            &b"{\"mdlr_quotas\":1,\"api\":{\"done\":[1,2"[..],
            b"\0\0\0\0",
            b"{\"mdlr_quotas\":99}",
            b"{\"mdlr_quotas\":1,\"api\":{\"done\":\"x\"}}",
        ] {
            std::fs::write(&path, damaged).expect("write");
            assert!(matches!(
                file.take(Section::Api, keep, room(1)),
                Turn::Go(Some(_))
            ));
            let text = std::fs::read_to_string(&path).expect("rewritten");
            let state: State = serde_json::from_str(&text).expect("whole and valid");
            assert_eq!(state.api.open.len(), 1, "{text}");
            file.release(Section::Api, keep, None);
        }
        // A temporary file left by a writer killed halfway is simply written over.
        std::fs::write(dir.join("q.json.tmp"), b"{\"mdlr_quo").expect("write");
        assert!(matches!(
            file.take(Section::Api, keep, room(10)),
            Turn::Go(Some(_))
        ));
        let seen = reports.lock().expect("not poisoned").clone();
        assert_eq!(seen.len(), 4, "{seen:?}");
        assert!(
            seen.iter().all(|m| m.contains("started it anew")),
            "{seen:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn stale_calls_under_way_and_future_times_are_tidied() {
        let (down, up) = clock();
        let keep = Duration::from_secs(60);
        let mut calls = Calls {
            // One from a clock set back an hour, one just now, one long gone.
            done: vec![up + 3_600_000, down, down - 61_000],
            open: vec![
                (down - millis(STALE) - 1, "dead".into(), 1),
                (down, "alive".into(), 2),
            ],
            ..Calls::default()
        };
        assert!(calls.tidy(up, keep));
        // The dead process's call counts as finished STALE after it began (a
        // millisecond ago); the time from the future as now; the old one is gone.
        assert_eq!(calls.open, vec![(down, "alive".to_owned(), 2)]);
        assert_eq!(calls.done, vec![down - 1, down, up]);
        let held = calls.held(down);
        assert_eq!(held.under_way, 1);
        assert!(
            held.ages.iter().all(|a| *a <= Duration::from_millis(1)),
            "{:?}",
            held.ages
        );
        assert!(!calls.tidy(up, keep), "nothing more to do");
    }

    /// A client with shorter windows keeps the calls another client's longer window
    /// needs, for as long as that window; then its own.
    #[test]
    fn calls_are_kept_for_the_longest_window_of_the_clients() {
        let (hour, minute) = (Duration::from_secs(3600), Duration::from_secs(60));
        let (_, now) = clock();
        let mut calls = Calls {
            done: vec![now - 600_000, now - 1000],
            ..Calls::default()
        };
        // The client of the hour used the file just now.
        calls.tidy(now, hour);
        assert_eq!(calls.done.len(), 2);
        // One of a minute's window does not drop the call of 10 minutes ago ...
        assert!(!calls.tidy(now + 1, minute));
        assert_eq!(calls.done.len(), 2);
        // ... until the hour's client has not been seen for an hour.
        let later = now + 3_600_001;
        calls.done.push(later - 1000);
        calls.tidy(later, minute);
        assert_eq!(calls.done, vec![later - 1000]);
        assert_eq!((calls.keep, calls.keep_until), (60_000, later + 60_000));
    }

    /// `flock -o FILE sleep 30` (the lock held by flock itself, not by sleep), killed:
    /// the kernel drops its lock with it.
    #[test]
    fn a_lock_holder_killed_cannot_block() {
        let dir = scratch("killed");
        let path = dir.join("q.json");
        let file = open(&path).with_patience(Duration::from_millis(300));
        let keep = Duration::from_secs(60);
        let mut holder = std::process::Command::new("flock")
            .arg("-o")
            .arg(dir.join("q.json.lock"))
            .args(["sleep", "30"])
            .spawn()
            .expect("run flock(1) from util-linux");
        // Until it holds the lock, takes go through.
        let began = Instant::now();
        while file.take(Section::Api, keep, room(100)) != Turn::Go(None) {
            assert!(
                began.elapsed() < Duration::from_secs(20),
                "flock never locked"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // A live holder: the call went by the process's own limiter after the patience,
        // and while that lasts the next calls do not wait as long.
        let began = Instant::now();
        assert_eq!(file.take(Section::Api, keep, room(100)), Turn::Go(None));
        assert!(
            began.elapsed() < Duration::from_millis(250),
            "{:?}",
            began.elapsed()
        );
        holder.kill().expect("kill flock");
        holder.wait().expect("reap flock");
        let began = Instant::now();
        assert!(matches!(
            file.take(Section::Api, keep, room(100)),
            Turn::Go(Some(_))
        ));
        assert!(began.elapsed() < Duration::from_millis(100));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
