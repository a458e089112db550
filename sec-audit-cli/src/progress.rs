//! A progress line on standard error while a long replay runs: only when
//! standard error is a terminal, and only once the run has lasted a second
//! (small files never show it).

use std::io::Write;
use std::time::{Duration, Instant};

const SHOW_AFTER: Duration = Duration::from_secs(1);
const REDRAW_EVERY: Duration = Duration::from_millis(200);
const BAR_WIDTH: usize = 30;

pub struct Progress {
    enabled: bool,
    total: Option<u64>,
    start: Instant,
    last_draw: Option<Instant>,
    shown: bool,
}

impl Progress {
    /// `total`: input size in bytes, when known.
    pub fn new(enabled: bool, total: Option<u64>) -> Self {
        Progress {
            enabled,
            total: total.filter(|t| *t > 0),
            start: Instant::now(),
            last_draw: None,
            shown: false,
        }
    }

    /// Called every few thousand lines.
    pub fn update(&mut self, bytes: u64, lines: u64) {
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        if now.duration_since(self.start) < SHOW_AFTER {
            return;
        }
        if self
            .last_draw
            .is_some_and(|t| now.duration_since(t) < REDRAW_EVERY)
        {
            return;
        }
        self.last_draw = Some(now);
        let secs = now.duration_since(self.start).as_secs_f64().max(1e-9);
        let rate = lines as f64 / secs;
        let line = match self.total {
            Some(total) => {
                let frac = (bytes as f64 / total as f64).clamp(0.0, 1.0);
                let filled = (frac * BAR_WIDTH as f64).round() as usize;
                format!(
                    "[{}{}] {:>3.0}%  {:.1}/{:.1} MiB  {lines} lines  {rate:.0} lines/s",
                    "#".repeat(filled),
                    "-".repeat(BAR_WIDTH - filled),
                    frac * 100.0,
                    bytes as f64 / 1_048_576.0,
                    total as f64 / 1_048_576.0,
                )
            }
            None => format!(
                "{:.1} MiB  {lines} lines  {rate:.0} lines/s",
                bytes as f64 / 1_048_576.0
            ),
        };
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{line}");
        let _ = err.flush();
        self.shown = true;
    }

    /// Clears the line.
    pub fn finish(&mut self) {
        if self.shown {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
            self.shown = false;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}
