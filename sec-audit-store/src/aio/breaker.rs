//! A circuit breaker for the async Redis connection.
//!
//! After a failure (connect refused or timed out, command timed out,
//! connection lost) the breaker is *open* for `backoff`: every call fails at
//! once. When the window has passed, exactly one call is let through as a
//! probe (*half-open*); the others keep failing at once until it succeeds.
//! So a dead or frozen server costs one caller at most the command timeout
//! per `backoff`, and everyone else nothing. A probe whose future is dropped
//! (its request was cancelled) hands the probe to the next call.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

static START: LazyLock<Instant> = LazyLock::new(Instant::now);

fn now_ms() -> u64 {
    u64::try_from(START.elapsed().as_millis()).unwrap_or(u64::MAX)
}

#[derive(Debug)]
pub(crate) struct Breaker {
    backoff: Duration,
    /// Monotonic ms until which calls fail at once; 0: closed (healthy).
    until: AtomicU64,
    /// A probe is in flight (half-open).
    probing: AtomicBool,
    last: Mutex<String>,
}

/// A call the breaker let through. Dropping it without [`Pass::succeeded`]
/// or [`Pass::failed`] (cancellation) releases the probe slot.
pub(crate) struct Pass<'a> {
    breaker: &'a Breaker,
    probe: bool,
    done: bool,
}

impl Breaker {
    pub(crate) fn new(backoff: Duration) -> Breaker {
        Breaker {
            backoff,
            until: AtomicU64::new(0),
            probing: AtomicBool::new(false),
            last: Mutex::new(String::new()),
        }
    }

    /// Lets a call through, or returns the last failure when it must fail
    /// fast. One atomic load on the healthy path.
    pub(crate) fn admit(&self) -> Result<Pass<'_>, String> {
        let until = self.until.load(Ordering::Acquire);
        if until == 0 {
            return Ok(Pass {
                breaker: self,
                probe: false,
                done: false,
            });
        }
        if now_ms() >= until
            && self
                .probing
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            return Ok(Pass {
                breaker: self,
                probe: true,
                done: false,
            });
        }
        Err(self.last.lock().clone())
    }

    /// True while calls fail fast.
    pub(crate) fn is_open(&self) -> bool {
        self.until.load(Ordering::Acquire) != 0
    }

    fn open(&self, msg: &str) {
        if self.backoff.is_zero() {
            return;
        }
        *self.last.lock() = msg.to_string();
        let ms = u64::try_from(self.backoff.as_millis()).unwrap_or(u64::MAX);
        self.until
            .store(now_ms().saturating_add(ms).max(1), Ordering::Release);
    }

    fn close(&self) {
        if self.until.load(Ordering::Relaxed) != 0 {
            self.until.store(0, Ordering::Release);
        }
    }
}

impl Pass<'_> {
    pub(crate) fn succeeded(mut self) {
        self.done = true;
        self.breaker.close();
        if self.probe {
            self.breaker.probing.store(false, Ordering::Release);
        }
    }

    pub(crate) fn failed(mut self, msg: &str) {
        self.done = true;
        self.breaker.open(msg);
        if self.probe {
            self.breaker.probing.store(false, Ordering::Release);
        }
    }
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        if self.probe && !self.done {
            self.breaker.probing.store(false, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_half_open_closed() {
        let b = Breaker::new(Duration::from_millis(40));
        b.admit().expect("closed").failed("refused");
        assert_eq!(b.admit().err().as_deref(), Some("refused"));
        std::thread::sleep(Duration::from_millis(50));
        let probe = b.admit().expect("one probe after the back-off");
        assert!(b.admit().is_err(), "only one probe at a time");
        probe.failed("again");
        assert_eq!(b.admit().err().as_deref(), Some("again"));
        std::thread::sleep(Duration::from_millis(50));
        let probe = b.admit().expect("probe");
        drop(probe); // cancelled: the next call probes
        let probe = b.admit().expect("probe handed on");
        probe.succeeded();
        assert!(!b.is_open());
        b.admit().expect("closed").succeeded();
        b.admit().expect("closed again");
    }

    #[test]
    fn zero_backoff_never_opens() {
        let b = Breaker::new(Duration::ZERO);
        b.admit().expect("closed").failed("x");
        assert!(b.admit().is_ok());
    }
}
