//! Order statistics of interleaved rounds and the verdict of a goal.
//!
//! A goal is judged on mdlr's *upper quartile* against the other client's *median*:
//! mdlr has to meet it in three rounds out of four against the other's typical round,
//! so that noise in mdlr's rounds can only turn a verdict into "missed", never into
//! "met", and a good round of mdlr's (or a bad one of the reference's, which the
//! reference's upper quartile would let in) cannot win it.

/// What one run cost.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sample {
    /// Wall time, seconds, measured by the bench around the process.
    pub wall: f64,
    /// User CPU seconds (all processes of a pipeline), when measured.
    pub user: Option<f64>,
    /// System CPU seconds, when measured.
    pub sys: Option<f64>,
    /// Peak resident set of the largest process, KiB, when measured.
    pub max_rss_kib: Option<u64>,
}

/// The order statistics of one client's walls.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub n: usize,
    pub min: f64,
    pub median: f64,
    /// The upper quartile (linear interpolation between order statistics).
    pub p75: f64,
    pub max: f64,
}

impl Spread {
    /// `None` when there is no number among `values`.
    pub fn of(values: &[f64]) -> Option<Spread> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        Some(Spread {
            n: v.len(),
            min: v[0],
            median: quantile(&v, 0.5),
            p75: quantile(&v, 0.75),
            max: v[v.len() - 1],
        })
    }
}

/// The `q` quantile of sorted `v` (non-empty), interpolated between the order
/// statistics around `q·(n−1)` (R's and numpy's default): with 9 rounds the median is
/// the 5th and the upper quartile the 7th round, exactly.
pub fn quantile(v: &[f64], q: f64) -> f64 {
    let at = q.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let low = at.floor() as usize;
    let high = at.ceil() as usize;
    v[low] + (v[high] - v[low]) * (at - low as f64)
}

/// A summary of one client's samples.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub wall: Spread,
    /// Medians of the CPU times.
    pub user: Option<f64>,
    pub sys: Option<f64>,
    /// The largest peak of every round: a peak is a peak.
    pub max_rss_kib: Option<u64>,
}

impl Summary {
    pub fn of(samples: &[Sample]) -> Option<Summary> {
        let walls: Vec<f64> = samples.iter().map(|s| s.wall).collect();
        let user: Vec<f64> = samples.iter().filter_map(|s| s.user).collect();
        let sys: Vec<f64> = samples.iter().filter_map(|s| s.sys).collect();
        Some(Summary {
            wall: Spread::of(&walls)?,
            user: Spread::of(&user).map(|s| s.median),
            sys: Spread::of(&sys).map(|s| s.median),
            max_rss_kib: samples.iter().filter_map(|s| s.max_rss_kib).max(),
        })
    }
}

/// What a goal asks of mdlr's wall against another client's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Goal {
    /// mdlr's wall at most this many times the other's (`≤ 1.0×`).
    AtMost(f64),
    /// mdlr at least this many times as fast as the other (`≥ 3×`): the other's wall
    /// divided by mdlr's.
    FasterBy(f64),
}

/// A goal's verdict from two clients' walls.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    /// The ratio the goal is judged on: mdlr's upper quartile against the other's
    /// median (`AtMost`: mdlr ÷ other; `FasterBy`: other ÷ mdlr).
    pub judged: f64,
    /// The same ratio at both medians, for reference only.
    pub at_medians: f64,
    /// The ratio of mdlr's best round to the other's median: what a verdict taken on
    /// the best round would have said.
    pub best: f64,
    pub met: bool,
}

impl Goal {
    pub fn judge(self, mdlr: &Spread, other: &Spread) -> Verdict {
        match self {
            Goal::AtMost(limit) => {
                let judged = mdlr.p75 / other.median;
                Verdict {
                    judged,
                    at_medians: mdlr.median / other.median,
                    best: mdlr.min / other.median,
                    met: judged <= limit,
                }
            }
            Goal::FasterBy(factor) => {
                let judged = other.median / mdlr.p75;
                Verdict {
                    judged,
                    at_medians: other.median / mdlr.median,
                    best: other.median / mdlr.min,
                    met: judged >= factor,
                }
            }
        }
    }

    /// `≤ 1.0×`, `≥ 3.0×`.
    pub fn describe(self) -> String {
        match self {
            Goal::AtMost(x) => format!("≤ {x:.1}×"),
            Goal::FasterBy(x) => format!("≥ {x:.1}×"),
        }
    }
}

/// The order in which round `round` runs `n` clients: rotated by one each round, so
/// that every client follows every other and a drift of the machine hits them all.
pub fn round_order(n: usize, round: usize) -> Vec<usize> {
    (0..n).map(|k| (round + k) % n.max(1)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles() {
        let nine: Vec<f64> = (1..=9).map(f64::from).collect();
        let s = Spread::of(&nine);
        assert_eq!(
            s,
            Some(Spread {
                n: 9,
                min: 1.0,
                median: 5.0,
                p75: 7.0,
                max: 9.0
            })
        );
        assert_eq!(
            Spread::of(&[4.0, 1.0, 2.0, 3.0]).map(|s| s.median),
            Some(2.5)
        );
        assert!(Spread::of(&[]).is_none());
        assert!(Spread::of(&[f64::NAN]).is_none());
        let four = Spread::of(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(four.map(|s| s.p75), Some(3.25));
        assert_eq!(
            Spread::of(&[2.0]).map(|s| (s.median, s.p75)),
            Some((2.0, 2.0))
        );
    }

    #[test]
    fn a_goal_is_not_won_by_the_best_round() {
        // mdlr's walls: one great round, most rounds slower than the other's median.
        let mdlr = Spread::of(&[0.5, 1.2, 1.3, 1.3, 1.4]);
        let curl = Spread::of(&[1.0, 1.0, 1.1, 1.1, 1.2]);
        let (Some(mdlr), Some(curl)) = (mdlr, curl) else {
            panic!("no spread")
        };
        let v = Goal::AtMost(1.0).judge(&mdlr, &curl);
        assert!(!v.met, "{v:?}");
        assert!(v.best < 1.0, "{v:?}");
        assert!((v.judged - 1.3 / 1.1).abs() < 1e-9, "{v:?}");
        // Faster by: the other's median over mdlr's upper quartile.
        let slow = Spread::of(&[9.0, 9.0, 9.0]);
        let fast = Spread::of(&[2.0, 2.5, 4.0]);
        let (Some(slow), Some(fast)) = (slow, fast) else {
            panic!("no spread")
        };
        let v = Goal::FasterBy(3.0).judge(&fast, &slow);
        assert!(!v.met, "{v:?}"); // 9 / 3.25
        assert!(v.at_medians > 3.0, "{v:?}"); // 9 / 2.5
        assert!(Goal::FasterBy(2.5).judge(&fast, &slow).met);
    }

    #[test]
    fn summaries() {
        let s = |wall, rss| Sample {
            wall,
            user: Some(wall / 2.0),
            sys: None,
            max_rss_kib: Some(rss),
        };
        let sum = Summary::of(&[s(1.0, 100), s(3.0, 300), s(2.0, 200)]);
        assert!(sum.is_some_and(|x| x.wall.median == 2.0
            && x.user == Some(1.0)
            && x.sys.is_none()
            && x.max_rss_kib == Some(300)));
        assert!(Summary::of(&[]).is_none());
    }

    #[test]
    fn rounds_rotate() {
        assert_eq!(round_order(3, 0), [0, 1, 2]);
        assert_eq!(round_order(3, 1), [1, 2, 0]);
        assert_eq!(round_order(3, 5), [2, 0, 1]);
    }
}
