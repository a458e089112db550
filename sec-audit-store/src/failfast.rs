//! Fail fast while a backend is known to be down.
//!
//! Without this, every call during an outage would wait the full connect
//! timeout for a pooled connection. After a failed connect, calls within
//! `backoff` fail at once with the last error; the first call after it tries
//! again (and the pool keeps reconnecting in the background), so a server
//! that comes back is used again within `backoff`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

static START: LazyLock<Instant> = LazyLock::new(Instant::now);

fn now_ms() -> u64 {
    u64::try_from(START.elapsed().as_millis()).unwrap_or(u64::MAX)
}

#[derive(Debug)]
pub(crate) struct FailFast {
    backoff: Duration,
    /// Monotonic ms until which calls fail at once (0: not down).
    until: AtomicU64,
    last: Mutex<String>,
}

impl FailFast {
    pub(crate) fn new(backoff: Duration) -> Self {
        FailFast {
            backoff,
            until: AtomicU64::new(0),
            last: Mutex::new(String::new()),
        }
    }

    /// The last failure when still inside the back-off window. One atomic
    /// load on the healthy path.
    pub(crate) fn check(&self) -> Option<String> {
        let until = self.until.load(Ordering::Acquire);
        if until == 0 || now_ms() >= until {
            return None;
        }
        Some(self.last.lock().clone())
    }

    pub(crate) fn failed(&self, msg: &str) {
        if self.backoff.is_zero() {
            return;
        }
        *self.last.lock() = msg.to_string();
        let ms = u64::try_from(self.backoff.as_millis()).unwrap_or(u64::MAX);
        self.until
            .store(now_ms().saturating_add(ms).max(1), Ordering::Release);
    }

    pub(crate) fn succeeded(&self) {
        if self.until.load(Ordering::Relaxed) != 0 {
            self.until.store(0, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_opens_and_closes() {
        let f = FailFast::new(Duration::from_millis(50));
        assert!(f.check().is_none());
        f.failed("refused");
        assert_eq!(f.check().as_deref(), Some("refused"));
        std::thread::sleep(Duration::from_millis(60));
        assert!(f.check().is_none());
        f.failed("again");
        f.succeeded();
        assert!(f.check().is_none());
        let off = FailFast::new(Duration::ZERO);
        off.failed("x");
        assert!(off.check().is_none());
    }
}
