//! The client-side quotas: a sliding-window limiter over several windows at once,
//! optionally shared with other processes through a [`QuotaFile`].

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::quota_file::{Held, QuotaFile, Section, Turn};

/// A quota: at most `calls` calls in any window of `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimit {
    /// Calls allowed in the window.
    pub calls: u32,
    /// The window.
    pub per: Duration,
}

impl RateLimit {
    /// At most `calls` calls in any window of `per`.
    pub fn new(calls: u32, per: Duration) -> RateLimit {
        RateLimit { calls, per }
    }

    /// The documented quota on live response starts: 10 a minute.
    pub fn start_defaults() -> Vec<RateLimit> {
        vec![RateLimit {
            calls: 10,
            per: Duration::from_secs(60),
        }]
    }

    /// The documented quota on investigation package links (`GetPackageUri`): 2 a
    /// minute and 120 an hour.
    pub fn package_defaults() -> Vec<RateLimit> {
        vec![
            RateLimit {
                calls: 2,
                per: Duration::from_secs(60),
            },
            RateLimit {
                calls: 120,
                per: Duration::from_secs(3600),
            },
        ]
    }

    /// The API's documented quotas: 100 calls a minute and 1500 an hour.
    pub fn defaults() -> Vec<RateLimit> {
        vec![
            RateLimit {
                calls: 100,
                per: Duration::from_secs(60),
            },
            RateLimit {
                calls: 1500,
                per: Duration::from_secs(3600),
            },
        ]
    }
}

/// A sliding-window limiter over several quotas, shared by all clones of a client.
///
/// A call counts from the moment it is let through, and its place in the window is the
/// moment its reply arrived: the service saw it no later than that, so a window that
/// closes by our clock has closed by the service's too, whatever the latency.
///
/// With a [`QuotaFile`], a call must also fit with the calls of every process sharing
/// it, counted the same way; the limiter's own count of this process's calls (on the
/// monotonic clock) still holds too.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    limits: Vec<RateLimit>,
    state: Mutex<LimiterState>,
    freed: Condvar,
    shared: Option<(Arc<QuotaFile>, Section)>,
}

#[derive(Debug, Default)]
struct LimiterState {
    /// When the replies of finished calls arrived, oldest first.
    finished: VecDeque<Instant>,
    /// Calls let through whose reply has not arrived.
    pending: usize,
}

/// A call the limiter let through; dropping it records the reply's arrival.
pub(crate) struct Permit<'a> {
    limiter: &'a RateLimiter,
    /// Its number in the shared file, when it is there.
    shared: Option<u64>,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let limiter = self.limiter;
        if let Some((file, section)) = &limiter.shared {
            file.release(*section, limiter.longest(), self.shared);
        }
        let mut st = limiter.lock();
        st.pending = st.pending.saturating_sub(1);
        st.finished.push_back(Instant::now());
        limiter.freed.notify_all();
    }
}

/// How long until one more call fits in every quota of `limits`, given how long ago
/// the finished calls' replies arrived (`ages`, any order) and how many calls are under
/// way; and whether calls under way fill a window (the wait is then a whole window: a
/// reply, whenever it comes, is what frees a place).
fn wait_for(limits: &[RateLimit], ages: &[Duration], under_way: usize) -> (Duration, bool) {
    let mut wait = Duration::ZERO;
    let mut on_reply = false;
    for limit in limits {
        let mut in_window: Vec<Duration> =
            ages.iter().copied().filter(|a| *a < limit.per).collect();
        // Oldest first.
        in_window.sort_unstable_by(|a, b| b.cmp(a));
        let used = in_window.len() + under_way;
        if used >= limit.calls as usize {
            // This many finished calls must leave the window before one more fits.
            let leave = used - limit.calls as usize + 1;
            match in_window.get(leave - 1) {
                Some(age) => wait = wait.max(limit.per.saturating_sub(*age)),
                None => {
                    wait = wait.max(limit.per);
                    on_reply = true;
                }
            }
        }
    }
    (wait, on_reply)
}

impl RateLimiter {
    /// The quotas it keeps to.
    pub(crate) fn limits(&self) -> &[RateLimit] {
        &self.limits
    }

    pub(crate) fn new(limits: Vec<RateLimit>) -> RateLimiter {
        let limits = limits
            .into_iter()
            .filter(|l| l.calls > 0 && !l.per.is_zero())
            .collect();
        RateLimiter {
            limits,
            state: Mutex::new(LimiterState::default()),
            freed: Condvar::new(),
            shared: None,
        }
    }

    /// Keeps to the quotas together with every process sharing `file`, in its part
    /// `section`. Without quotas there is nothing to share.
    pub(crate) fn share(&mut self, file: Arc<QuotaFile>, section: Section) {
        if !self.limits.is_empty() {
            self.shared = Some((file, section));
        }
    }

    /// The longest window: how long a finished call counts.
    fn longest(&self) -> Duration {
        self.limits.iter().map(|l| l.per).max().unwrap_or_default()
    }

    /// How often to look at the shared file again while calls under way (maybe of
    /// other processes, whose replies wake no one here) fill a window: a fiftieth of
    /// the shortest window, between 1 and 100 ms.
    fn recheck(&self) -> Duration {
        let shortest = self.limits.iter().map(|l| l.per).min().unwrap_or_default();
        (shortest / 50).clamp(Duration::from_millis(1), Duration::from_millis(100))
    }

    /// How long a call must wait for the calls of every process in the shared file.
    fn shared_wait(&self, held: &Held) -> Duration {
        match wait_for(&self.limits, &held.ages, held.under_way) {
            (wait, true) => wait.min(self.recheck()),
            (wait, false) => wait,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LimiterState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How long to wait, by this process's own calls, before a call may go out at
    /// `now`.
    fn local_wait(&self, st: &mut LimiterState, now: Instant) -> Duration {
        let longest = self.longest();
        while st
            .finished
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= longest)
        {
            st.finished.pop_front();
        }
        let ages: Vec<Duration> = st
            .finished
            .iter()
            .map(|t| now.saturating_duration_since(*t))
            .collect();
        wait_for(&self.limits, &ages, st.pending).0
    }

    /// How long to wait before a call may go out at `now`, by this process's calls
    /// only; zero means it was let through (and counted as pending).
    #[cfg(test)]
    fn try_acquire(&self, st: &mut LimiterState, now: Instant) -> Duration {
        let wait = self.local_wait(st, now);
        if wait.is_zero() {
            st.pending += 1;
        }
        wait
    }

    /// Calls whose reply arrived within `within` of now, plus the calls under way: what
    /// a window of that length ending now holds. With a shared file, the calls of every
    /// process sharing it (or this process's, should it count more).
    pub(crate) fn calls_within(&self, within: Duration) -> usize {
        let now = Instant::now();
        let own = {
            let st = self.lock();
            let recent = st
                .finished
                .iter()
                .rev()
                .take_while(|t| now.saturating_duration_since(**t) < within)
                .count();
            recent + st.pending
        };
        let shared = self.shared.as_ref().and_then(|(file, section)| {
            let held = file.held(*section, self.longest())?;
            Some(held.ages.iter().filter(|a| **a < within).count() + held.under_way)
        });
        own.max(shared.unwrap_or(0))
    }

    /// Counts a call made at `at` (before this limiter existed, say) as finished then:
    /// in this process's count only, since a process sharing the file recorded its own
    /// calls there.
    pub(crate) fn record_past(&self, at: Instant) {
        let mut st = self.lock();
        let i = st.finished.partition_point(|t| *t <= at);
        st.finished.insert(i, at);
    }

    /// Blocks until a call fits in every quota, then lets it through; `on_wait` hears
    /// of each wait before it begins. With a shared file, the call must fit with this
    /// process's calls and with those of every process in the file; it is under way in
    /// the file until the permit is dropped.
    pub(crate) fn acquire(&self, on_wait: &dyn Fn(Duration)) -> Permit<'_> {
        let mut st = self.lock();
        loop {
            let mut wait = self.local_wait(&mut st, Instant::now());
            let mut shared = None;
            if wait.is_zero()
                && let Some((file, section)) = &self.shared
            {
                match file.take(*section, self.longest(), |held| self.shared_wait(held)) {
                    Turn::Go(number) => shared = number,
                    Turn::Wait(w) => wait = w,
                }
            }
            if wait.is_zero() {
                st.pending += 1;
                return Permit {
                    limiter: self,
                    shared,
                };
            }
            on_wait(wait);
            st = self
                .freed
                .wait_timeout(st, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lets a call through at `at` and has its reply arrive at once.
    fn call_at(l: &RateLimiter, at: Instant) -> Duration {
        let mut st = l.lock();
        let wait = l.try_acquire(&mut st, at);
        if wait.is_zero() {
            st.pending -= 1;
            st.finished.push_back(at);
        }
        wait
    }

    #[test]
    fn limiter_keeps_every_window() {
        let l = RateLimiter::new(vec![
            RateLimit {
                calls: 2,
                per: Duration::from_secs(10),
            },
            RateLimit {
                calls: 3,
                per: Duration::from_secs(100),
            },
        ]);
        let t0 = Instant::now();
        let s = Duration::from_secs;
        assert_eq!(call_at(&l, t0), Duration::ZERO);
        assert_eq!(call_at(&l, t0 + s(1)), Duration::ZERO);
        // Third call in the 10 s window: wait until the first leaves it.
        assert_eq!(call_at(&l, t0 + s(2)), s(8));
        assert_eq!(call_at(&l, t0 + s(10)), Duration::ZERO);
        // Fourth call: the 100 s window is full until t0 + 100 s.
        assert_eq!(call_at(&l, t0 + s(30)), s(70));
        assert_eq!(call_at(&l, t0 + s(100)), Duration::ZERO);
    }

    #[test]
    fn pending_calls_count_until_their_reply() {
        let l = RateLimiter::new(vec![RateLimit {
            calls: 1,
            per: Duration::from_secs(10),
        }]);
        let t0 = Instant::now();
        let permit = l.acquire(&|_| {});
        // In flight: it holds the only place however long it takes.
        assert_eq!(
            l.try_acquire(&mut l.lock(), t0 + Duration::from_secs(60)),
            Duration::from_secs(10)
        );
        drop(permit);
        // Its reply arrived just now: the window runs from here.
        let wait = l.try_acquire(&mut l.lock(), Instant::now());
        assert!(wait > Duration::from_secs(9), "{wait:?}");
    }

    #[test]
    fn calls_within_a_span_count_pending_ones_too() {
        let l = RateLimiter::new(RateLimit::defaults());
        let now = Instant::now();
        l.record_past(now - Duration::from_secs(50));
        l.record_past(now - Duration::from_secs(10));
        let _permit = l.acquire(&|_| {});
        assert_eq!(l.calls_within(Duration::from_secs(30)), 2);
        assert_eq!(l.calls_within(Duration::from_secs(60)), 3);
        assert_eq!(l.calls_within(Duration::ZERO), 1, "the call under way");
    }

    /// The most of `times` (sorted) within any window of `per`.
    fn busiest(times: &[Instant], per: Duration) -> usize {
        let (mut lo, mut most) = (0, 0);
        for hi in 0..times.len() {
            while times[hi].duration_since(times[lo]) >= per {
                lo += 1;
            }
            most = most.max(hi + 1 - lo);
        }
        most
    }

    /// Three limiters (three processes, as far as they know), each with its own open
    /// state file, calling from threads of their own as fast as they are let: when
    /// each keeps to the quota alone, a window holds three times the quota; when they
    /// share the file, never more than the quota. A call is let through only when the
    /// calls under way and those whose reply came within the window leave room, so no
    /// window of that length ever holds more grants than the quota.
    #[test]
    fn limiters_sharing_a_file_keep_the_quota_together() {
        let dir = std::env::temp_dir().join(format!(
            "mdlr-quota-{}-{:x}",
            std::process::id(),
            crate::ids::random_u64()
        ));
        std::fs::create_dir_all(&dir).expect("scratch directory");
        let quota = RateLimit::new(5, Duration::from_millis(300));
        let run = |shared: bool| -> Vec<Instant> {
            let path = dir.join(format!("shared-{shared}.json"));
            let limiters: Vec<Arc<RateLimiter>> = (0..3)
                .map(|_| {
                    let mut l = RateLimiter::new(vec![quota]);
                    if shared {
                        let file = QuotaFile::open(path.clone(), None).expect("open");
                        l.share(Arc::new(file), Section::Api);
                    }
                    Arc::new(l)
                })
                .collect();
            let threads: Vec<_> = limiters
                .into_iter()
                .flat_map(|l| [l.clone(), l])
                .map(|l| {
                    std::thread::spawn(move || {
                        let mut granted = Vec::new();
                        for _ in 0..5 {
                            let permit = l.acquire(&|_| {});
                            granted.push(Instant::now());
                            std::thread::sleep(Duration::from_millis(2));
                            drop(permit);
                        }
                        granted
                    })
                })
                .collect();
            let mut all: Vec<Instant> = threads
                .into_iter()
                .flat_map(|t| t.join().expect("no panic"))
                .collect();
            all.sort();
            all
        };
        let alone = run(false);
        // Each kept its own 5 (15 at once, unless the threads started far apart).
        assert!(busiest(&alone, quota.per) > 5, "{alone:?}");
        let together = run(true);
        assert_eq!(together.len(), 30);
        assert_eq!(busiest(&together, quota.per), 5);
        // Six windows' worth of calls: at least five windows apart (and no deadlock).
        let span = together[29].duration_since(together[0]);
        assert!(span >= quota.per * 5 && span < quota.per * 30, "{span:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn calls_made_before_count() {
        let l = RateLimiter::new(vec![RateLimit {
            calls: 2,
            per: Duration::from_secs(60),
        }]);
        let t0 = Instant::now();
        let now = t0 + Duration::from_secs(30);
        l.record_past(t0 + Duration::from_secs(20));
        l.record_past(t0);
        assert_eq!(
            l.try_acquire(&mut l.lock(), now),
            Duration::from_secs(30),
            "the older one leaves the window first"
        );
    }
}
