//! The injectable clock. Rules, counters, history and block expiry all read
//! time from one [`Clock`], so tests and the replay can drive time.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of "now".
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Nanoseconds since the Unix epoch.
    fn now_ns(&self) -> i64;
    /// Seconds since the Unix epoch.
    fn now(&self) -> f64 {
        self.now_ns() as f64 / 1e9
    }
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ns(&self) -> i64 {
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
            Err(_) => 0,
        }
    }
}

/// A clock that only moves when told to: for tests and for replay.
#[derive(Debug, Default)]
pub struct ManualClock {
    ns: AtomicI64,
}

impl ManualClock {
    pub fn new(now_ns: i64) -> Self {
        ManualClock {
            ns: AtomicI64::new(now_ns),
        }
    }
    /// Starts at `secs` seconds since the epoch.
    pub fn at_secs(secs: f64) -> Self {
        Self::new((secs * 1e9) as i64)
    }
    pub fn set_ns(&self, ns: i64) {
        self.ns.store(ns, Ordering::SeqCst);
    }
    pub fn set_secs(&self, secs: f64) {
        self.set_ns((secs * 1e9) as i64);
    }
    pub fn advance_secs(&self, secs: f64) {
        self.ns.fetch_add((secs * 1e9) as i64, Ordering::SeqCst);
    }
    /// Moves to `ns` unless that is in the past: time never moves backwards.
    /// Returns the resulting now.
    pub fn advance_to(&self, ns: i64) -> i64 {
        self.ns.fetch_max(ns, Ordering::SeqCst).max(ns)
    }
}

impl Clock for ManualClock {
    fn now_ns(&self) -> i64 {
        self.ns.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_forward_with_advance_to() {
        let c = ManualClock::at_secs(100.0);
        assert_eq!(c.now(), 100.0);
        c.advance_secs(5.5);
        assert_eq!(c.now(), 105.5);
        assert_eq!(c.advance_to(1), 105_500_000_000);
        assert_eq!(c.now(), 105.5);
        c.advance_to(200_000_000_000);
        assert_eq!(c.now(), 200.0);
    }

    #[test]
    fn system_clock_is_after_2020() {
        assert!(SystemClock.now() > 1_577_836_800.0);
    }
}
