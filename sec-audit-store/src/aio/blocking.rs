//! A bounded pool for the synchronous work an async caller cannot avoid
//! (a Postgres read, a rule pass on Redis counters): it runs on tokio's
//! blocking threads, at most `size` at a time, and the caller waits at most
//! `timeout` in total — for a permit *and* for the work. Nothing runs on a
//! tokio worker thread.
//!
//! Work that overruns the timeout keeps its permit until it ends (a thread
//! cannot be cancelled), so a stuck backend fills the pool and later calls
//! time out waiting for a permit instead of piling up threads.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::block::StoreError;

/// Why blocking work did not produce a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockingError {
    /// No permit and result within the pool's timeout.
    #[error("blocking work did not finish within {0} ms")]
    Timeout(u128),
    /// The work panicked (isolated; the panic does not reach the caller).
    #[error("blocking work panicked")]
    Panicked,
    /// Called outside a tokio runtime.
    #[error("no tokio runtime to run blocking work on")]
    NoRuntime,
}

impl BlockingError {
    /// A short, stable kind, safe for `error.type`.
    pub fn kind(&self) -> &'static str {
        match self {
            BlockingError::Timeout(_) => "timeout",
            BlockingError::Panicked => "panic",
            BlockingError::NoRuntime => "no_runtime",
        }
    }
}

impl From<BlockingError> for StoreError {
    fn from(e: BlockingError) -> StoreError {
        match e {
            BlockingError::Timeout(_) => StoreError::Timeout(e.to_string()),
            BlockingError::Panicked | BlockingError::NoRuntime => StoreError::Pool(e.to_string()),
        }
    }
}

/// The pool. Cheap to clone (clones share the permits).
#[derive(Debug, Clone)]
pub struct BlockingPool {
    permits: Arc<Semaphore>,
    size: usize,
    timeout: Duration,
}

impl BlockingPool {
    /// At most `size` (at least 1) tasks at a time; a caller waits at most
    /// `timeout` for a permit and the result together.
    pub fn new(size: usize, timeout: Duration) -> BlockingPool {
        let size = size.clamp(1, Semaphore::MAX_PERMITS);
        BlockingPool {
            permits: Arc::new(Semaphore::new(size)),
            size,
            timeout,
        }
    }

    pub fn size(&self) -> usize {
        self.size
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Tasks running now (permits taken).
    pub fn busy(&self) -> usize {
        self.size.saturating_sub(self.permits.available_permits())
    }

    /// Runs `work` on a blocking thread under a permit.
    pub async fn run<T, F>(&self, work: F) -> Result<T, BlockingError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return Err(BlockingError::NoRuntime);
        };
        let permits = Arc::clone(&self.permits);
        let job = async move {
            let Ok(permit) = permits.acquire_owned().await else {
                // The semaphore is never closed.
                return Err(BlockingError::Panicked);
            };
            let task = handle.spawn_blocking(move || {
                let _permit = permit;
                work()
            });
            task.await.map_err(|_| BlockingError::Panicked)
        };
        match tokio::time::timeout(self.timeout, job).await {
            Ok(r) => r,
            Err(_) => Err(BlockingError::Timeout(self.timeout.as_millis())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn results_and_panics() {
        let pool = BlockingPool::new(1, Duration::from_secs(10));
        assert_eq!(pool.run(|| 7).await, Ok(7));
        assert_eq!(
            pool.run(|| -> u8 { panic!("boom") }).await,
            Err(BlockingError::Panicked)
        );
        assert_eq!(pool.run(|| 8).await, Ok(8), "the permit came back");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_timeout_covers_the_wait_for_a_permit() {
        let pool = BlockingPool::new(1, Duration::from_millis(100));
        // One slow task holds the only permit past the timeout...
        let slow = pool.run(|| std::thread::sleep(Duration::from_millis(800)));
        assert!(matches!(slow.await, Err(BlockingError::Timeout(_))));
        assert_eq!(pool.busy(), 1);
        // ...so the next caller times out waiting for the permit, long
        // before the slow task ends.
        let t = std::time::Instant::now();
        assert!(matches!(
            pool.run(|| 1).await,
            Err(BlockingError::Timeout(_))
        ));
        assert!(
            t.elapsed() < Duration::from_millis(600),
            "{:?}",
            t.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(900)).await;
        assert_eq!(pool.busy(), 0);
        assert_eq!(pool.run(|| 2).await, Ok(2));
    }

    #[test]
    fn works_on_a_current_thread_runtime() {
        let pool = BlockingPool::new(1, Duration::from_millis(500));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("rt");
        assert_eq!(rt.block_on(pool.run(|| 3)), Ok(3));
    }
}
