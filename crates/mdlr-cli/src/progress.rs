//! The download progress bar: on stderr, only on a terminal (or with `--progress`),
//! never with `-q`. Redrawn at most ten times a second.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mdlr::{DownloadRequest, Progress};

use crate::args::Global;

const REDRAW: Duration = Duration::from_millis(100);
const WIDTH: usize = 24;

struct State {
    started: Instant,
    last_draw: Option<Instant>,
    drawn: bool,
    /// Recent (time, bytes) samples for the rate.
    samples: std::collections::VecDeque<(Instant, u64)>,
}

/// One bar for one download.
#[derive(Clone)]
pub struct Bar {
    state: Arc<Mutex<State>>,
    label: Arc<str>,
}

/// Whether a bar is shown for these options.
pub fn wanted(global: &Global) -> bool {
    !global.quiet && (global.progress || std::io::stderr().is_terminal())
}

impl Bar {
    pub fn new(label: &str) -> Bar {
        Bar {
            state: Arc::new(Mutex::new(State {
                started: Instant::now(),
                last_draw: None,
                drawn: false,
                samples: std::collections::VecDeque::new(),
            })),
            label: Arc::from(label),
        }
    }

    fn update(&self, p: &Progress) {
        let now = Instant::now();
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let done = p.total.is_some_and(|t| p.received >= t);
        if !done && st.last_draw.is_some_and(|t| now.duration_since(t) < REDRAW) {
            return;
        }
        st.last_draw = Some(now);
        st.samples.push_back((now, p.received));
        while st.samples.len() > 2
            && st
                .samples
                .front()
                .is_some_and(|(t, _)| now.duration_since(*t) > Duration::from_secs(5))
        {
            st.samples.pop_front();
        }
        let rate = match (st.samples.front(), st.samples.back()) {
            (Some((t0, b0)), Some((t1, b1))) if t1 > t0 => {
                (b1.saturating_sub(*b0)) as f64 / t1.duration_since(*t0).as_secs_f64()
            }
            _ => {
                let secs = now.duration_since(st.started).as_secs_f64();
                if secs > 0.0 {
                    p.received.saturating_sub(p.resumed_from) as f64 / secs
                } else {
                    0.0
                }
            }
        };
        let line = render(&self.label, p.received, p.total, rate);
        st.drawn = true;
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r{line}\x1b[K");
        let _ = err.flush();
    }

    /// Clears the bar's line so the next message starts clean.
    pub fn finish(&self) {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.drawn {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[K");
            let _ = err.flush();
        }
    }
}

/// A bar while a download runs: its line is cleared when this is dropped (drop it
/// before printing what the download did).
pub struct Shown(Option<Bar>);

impl Drop for Shown {
    fn drop(&mut self) {
        if let Some(bar) = &self.0 {
            bar.finish();
        }
    }
}

/// `request` reporting to a bar labelled `label` when `show`.
pub fn attach(request: DownloadRequest, show: bool, label: &str) -> (DownloadRequest, Shown) {
    if !show {
        return (request, Shown(None));
    }
    let bar = Bar::new(label);
    let fed = bar.clone();
    (
        request.on_progress(move |p: &Progress| fed.update(p)),
        Shown(Some(bar)),
    )
}

/// `label  42% [=========>              ] 431.2 MiB / 1.0 GiB  98.1 MiB/s  ETA 6 s`
pub fn render(label: &str, received: u64, total: Option<u64>, rate: f64) -> String {
    let speed = format!("{}/s", size(rate as u64));
    match total {
        Some(total) if total > 0 => {
            let fraction = (received as f64 / total as f64).clamp(0.0, 1.0);
            let filled = (fraction * WIDTH as f64) as usize;
            let mut bar = "=".repeat(filled);
            if filled < WIDTH {
                bar.push('>');
                bar.push_str(&" ".repeat(WIDTH - filled - 1));
            }
            let eta = if rate > 0.0 && received < total {
                format!("  ETA {}", eta((total - received) as f64 / rate))
            } else {
                String::new()
            };
            format!(
                "{label} {:>3}% [{bar}] {} / {}  {speed}{eta}",
                (fraction * 100.0) as u32,
                size(received),
                size(total),
            )
        }
        _ => format!("{label} {}  {speed}", size(received)),
    }
}

fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn eta(seconds: f64) -> String {
    let s = seconds.ceil() as u64;
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min {:02} s", s / 60, s % 60),
        _ => format!("{} h {:02} min", s / 3600, s % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bar_shows_percent_sizes_rate_and_eta() {
        let line = render("out.zip", 512 << 20, Some(1 << 30), 100.0 * 1048576.0);
        assert_eq!(
            line,
            "out.zip  50% [============>           ] 512.0 MiB / 1.0 GiB  100.0 MiB/s  ETA 6 s"
        );
        let done = render("x", 10, Some(10), 5.0);
        assert!(done.contains("100% [========================]"), "{done}");
        assert!(!done.contains("ETA"), "{done}");
        assert_eq!(render("x", 2048, None, 1024.0), "x 2.0 KiB  1.0 KiB/s");
        assert_eq!(eta(3_725.0), "1 h 02 min");
        assert_eq!(eta(61.0), "1 min 01 s");
    }
}
