//! Diagnostics that can repeat per request (a store outage under load) are
//! coalesced: at most one line per (message, kind) per second of monotonic
//! time, process-wide, carrying `count` = the occurrences it stands for
//! (itself and those suppressed since the previous line). A kind is a short
//! error kind, never an error message.

use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

/// The coalescing window of log lines.
pub const LOG_WINDOW: Duration = Duration::from_secs(1);

/// The level of a coalesced log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Warn,
    Error,
}

#[derive(Debug)]
struct LogSlot {
    message: &'static str,
    kind: String,
    last: Instant,
    /// Occurrences since the last line.
    pending: u64,
}

static LOG_SLOTS: LazyLock<Mutex<Vec<LogSlot>>> = LazyLock::new(|| Mutex::new(Vec::new()));
/// Distinct (message, kind) pairs remembered; beyond it lines are not
/// coalesced (kinds are a short fixed set, so this is never reached).
const LOG_SLOTS_MAX: usize = 256;

/// How many occurrences the line logged now would stand for, or `None`
/// when it is suppressed (counted for the next line).
fn log_due(message: &'static str, kind: &str, now: Instant) -> Option<u64> {
    let mut slots = LOG_SLOTS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match slots
        .iter_mut()
        .find(|s| s.message == message && s.kind == kind)
    {
        Some(s) => {
            s.pending += 1;
            if now.duration_since(s.last) >= LOG_WINDOW {
                s.last = now;
                Some(std::mem::take(&mut s.pending))
            } else {
                None
            }
        }
        None => {
            if slots.len() < LOG_SLOTS_MAX {
                slots.push(LogSlot {
                    message,
                    kind: kind.to_string(),
                    last: now,
                    pending: 0,
                });
            }
            Some(1)
        }
    }
}

/// A diagnostic that can repeat per request: at most one line per
/// (`message`, `kind`) per second, with `count` = the occurrences it stands
/// for (this one and those suppressed since the last line).
pub fn log_coalesced(level: Level, message: &'static str, kind: &str) {
    let Some(count) = log_due(message, kind, Instant::now()) else {
        return;
    };
    match level {
        Level::Warn => tracing::warn!(kind, count, "{message}"),
        Level::Error => tracing::error!(kind, count, "{message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_are_one_per_message_and_kind_per_second() {
        const MSG: &str = "test line for the coalescer";
        let t0 = Instant::now();
        assert_eq!(log_due(MSG, "k", t0), Some(1));
        assert_eq!(log_due(MSG, "k", t0), None);
        assert_eq!(log_due(MSG, "k", t0 + Duration::from_millis(10)), None);
        assert_eq!(log_due(MSG, "other", t0), Some(1));
        assert_eq!(log_due(MSG, "k", t0 + LOG_WINDOW), Some(3));
    }
}
