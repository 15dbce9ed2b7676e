//! The client-side quotas: a sliding-window limiter over several windows at once.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

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
#[derive(Debug)]
pub(crate) struct RateLimiter {
    limits: Vec<RateLimit>,
    state: Mutex<LimiterState>,
    freed: Condvar,
}

#[derive(Debug, Default)]
struct LimiterState {
    /// When the replies of finished calls arrived, oldest first.
    finished: VecDeque<Instant>,
    /// Calls let through whose reply has not arrived.
    pending: usize,
}

/// A call the limiter let through; dropping it records the reply's arrival.
pub(crate) struct Permit<'a>(&'a RateLimiter);

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let mut st = self.0.lock();
        st.pending = st.pending.saturating_sub(1);
        st.finished.push_back(Instant::now());
        self.0.freed.notify_all();
    }
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
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LimiterState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How long to wait before a call may go out at `now`; zero means it was let
    /// through (and counted as pending).
    fn try_acquire(&self, st: &mut LimiterState, now: Instant) -> Duration {
        let longest = self.limits.iter().map(|l| l.per).max().unwrap_or_default();
        while st
            .finished
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= longest)
        {
            st.finished.pop_front();
        }
        let mut wait = Duration::ZERO;
        for limit in &self.limits {
            let in_window: Vec<Instant> = st
                .finished
                .iter()
                .copied()
                .filter(|t| now.saturating_duration_since(*t) < limit.per)
                .collect();
            let used = in_window.len() + st.pending;
            if used >= limit.calls as usize {
                // This many finished calls must leave the window before one more fits.
                let leave = used - limit.calls as usize + 1;
                wait = wait.max(match in_window.get(leave - 1) {
                    Some(t) => limit.per.saturating_sub(now.saturating_duration_since(*t)),
                    // Pending calls fill it: wait for a reply, then look again.
                    None => limit.per,
                });
            }
        }
        if wait.is_zero() {
            st.pending += 1;
        }
        wait
    }

    /// Calls whose reply arrived within `within` of now, plus the calls under way: what
    /// a window of that length ending now holds.
    pub(crate) fn calls_within(&self, within: Duration) -> usize {
        let now = Instant::now();
        let st = self.lock();
        let recent = st
            .finished
            .iter()
            .rev()
            .take_while(|t| now.saturating_duration_since(**t) < within)
            .count();
        recent + st.pending
    }

    /// Counts a call made at `at` (before this limiter existed, say) as finished then.
    pub(crate) fn record_past(&self, at: Instant) {
        let mut st = self.lock();
        let i = st.finished.partition_point(|t| *t <= at);
        st.finished.insert(i, at);
    }

    /// Blocks until a call fits in every quota, then lets it through; `on_wait` hears
    /// of each wait before it begins.
    pub(crate) fn acquire(&self, on_wait: &dyn Fn(Duration)) -> Permit<'_> {
        let mut st = self.lock();
        loop {
            let wait = self.try_acquire(&mut st, Instant::now());
            if wait.is_zero() {
                return Permit(self);
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
