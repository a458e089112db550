//! One multiplexed async Redis connection per store, shared by every task:
//! a request never waits for a pooled connection, only for its own reply.
//!
//! - Nothing connects at construction; the first command does (one task
//!   connects, the others wait for it).
//! - Every call — connecting included — is bounded by `command_timeout`
//!   (the connection's response timeout, and an outer timer around the
//!   whole call). Connecting alone is also bounded by `connect_timeout`.
//! - A lost connection (server killed or restarted) is dropped and the
//!   command retried once on a fresh one, within the same time bound.
//! - After a failure (cannot connect, timeout, connection lost) the
//!   [`Breaker`] opens for `failure_backoff`: calls fail at once, and one
//!   probe per back-off window finds out whether the server is back.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Cmd, FromRedisValue, Pipeline, RedisError};

use super::breaker::Breaker;
use crate::block::StoreError;
use crate::config::RedisConfig;
use crate::stats::{Counters, StoreStats};

struct Inner {
    client: redis::Client,
    key_prefix: String,
    connect_timeout: Duration,
    command_timeout: Duration,
    conn: Mutex<Option<(u64, MultiplexedConnection)>>,
    next_id: AtomicU64,
    connecting: tokio::sync::Mutex<()>,
    breaker: Breaker,
}

/// A handle on a shared multiplexed connection. Cloning shares the
/// connection and the round-trip counters; [`AsyncRedis::with_own_stats`]
/// shares the connection with fresh counters.
#[derive(Clone)]
pub struct AsyncRedis {
    inner: Arc<Inner>,
    stats: Arc<Counters>,
}

impl std::fmt::Debug for AsyncRedis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncRedis")
            .field("key_prefix", &self.inner.key_prefix)
            .field("stats", &self.stats.snapshot())
            .finish()
    }
}

/// How one attempt failed.
enum Attempt {
    /// Answered with an error reply: the server is fine.
    Reply(RedisError),
    /// The connection is gone (killed, restarted): drop it; retry once.
    Dropped(RedisError),
    /// Timeout, refused connect, other I/O: the server is in trouble.
    Down(StoreError),
}

impl AsyncRedis {
    /// Builds the handle without connecting. Fails only on invalid settings.
    pub fn new(config: &RedisConfig) -> Result<AsyncRedis, StoreError> {
        config.validate()?;
        // The same client the sync pool uses: TLS settings (`tls_ca_file`)
        // included, so the async path verifies the server the same way.
        let client = config.client()?;
        Ok(AsyncRedis {
            inner: Arc::new(Inner {
                client,
                key_prefix: config.key_prefix.clone(),
                connect_timeout: config.connect_timeout,
                command_timeout: config.command_timeout,
                conn: Mutex::new(None),
                next_id: AtomicU64::new(1),
                connecting: tokio::sync::Mutex::new(()),
                breaker: Breaker::new(config.failure_backoff),
            }),
            stats: Counters::new(),
        })
    }

    /// The same connection with its own, zeroed round-trip counters.
    pub fn with_own_stats(&self) -> AsyncRedis {
        AsyncRedis {
            inner: Arc::clone(&self.inner),
            stats: Counters::new(),
        }
    }

    pub fn key_prefix(&self) -> &str {
        &self.inner.key_prefix
    }

    /// The bound on every call.
    pub fn command_timeout(&self) -> Duration {
        self.inner.command_timeout
    }

    /// Round trips sent through this handle (and its clones).
    pub fn stats(&self) -> StoreStats {
        self.stats.snapshot()
    }

    /// True while calls fail fast after a failure.
    pub fn is_failing_fast(&self) -> bool {
        self.inner.breaker.is_open()
    }

    /// `PING` (readiness checks).
    pub async fn ping(&self) -> Result<(), StoreError> {
        let pong: String = self.query(&redis::cmd("PING")).await?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(StoreError::Redis("unexpected PING reply".into()))
        }
    }

    /// One `GET` of `key`, taken as given (no prefix): the reference cost of
    /// a round trip on this connection.
    pub async fn get_raw(&self, key: &str) -> Result<Option<String>, StoreError> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(key);
        self.query(&cmd).await
    }

    pub(crate) async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, StoreError> {
        self.exec(|mut c| async move { cmd.query_async(&mut c).await })
            .await
    }

    pub(crate) async fn pipeline<T: FromRedisValue>(
        &self,
        pipe: &Pipeline,
    ) -> Result<T, StoreError> {
        self.exec(|mut c| async move { pipe.query_async(&mut c).await })
            .await
    }

    fn current(&self) -> Option<(u64, MultiplexedConnection)> {
        self.inner.conn.lock().clone()
    }

    /// Forgets connection `id` (if it is still the current one).
    fn discard(&self, id: u64) {
        let mut slot = self.inner.conn.lock();
        if slot.as_ref().is_some_and(|(i, _)| *i == id) {
            *slot = None;
        }
    }

    async fn connection(&self) -> Result<(u64, MultiplexedConnection), Attempt> {
        if let Some(c) = self.current() {
            return Ok(c);
        }
        let _one_at_a_time = self.inner.connecting.lock().await;
        if let Some(c) = self.current() {
            return Ok(c);
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.inner.connect_timeout))
            .set_response_timeout(Some(self.inner.command_timeout));
        let connect = self
            .inner
            .client
            .get_multiplexed_async_connection_with_config(&config);
        let waited = self.inner.connect_timeout.as_millis();
        match tokio::time::timeout(self.inner.connect_timeout, connect).await {
            Ok(Ok(conn)) => {
                let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
                *self.inner.conn.lock() = Some((id, conn.clone()));
                Ok((id, conn))
            }
            Ok(Err(e)) if e.is_timeout() => Err(Attempt::Down(StoreError::Timeout(format!(
                "redis: cannot connect within {waited} ms"
            )))),
            Ok(Err(e)) => Err(Attempt::Down(StoreError::Redis(format!(
                "cannot connect: {e}"
            )))),
            Err(_) => Err(Attempt::Down(StoreError::Timeout(format!(
                "redis: cannot connect within {waited} ms"
            )))),
        }
    }

    async fn attempt<T, F, Fut>(&self, f: &F) -> Result<T, Attempt>
    where
        F: Fn(MultiplexedConnection) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        let (id, conn) = self.connection().await?;
        self.stats.redis(1);
        match f(conn).await {
            Ok(v) => Ok(v),
            Err(e) if e.is_timeout() => Err(Attempt::Down(StoreError::Timeout(format!(
                "redis: no reply within {} ms",
                self.inner.command_timeout.as_millis()
            )))),
            Err(e) if e.is_connection_dropped() || e.is_unrecoverable_error() => {
                self.discard(id);
                Err(Attempt::Dropped(e))
            }
            Err(e) if e.is_io_error() => {
                self.discard(id);
                Err(Attempt::Down(StoreError::Redis(e.to_string())))
            }
            Err(e) => Err(Attempt::Reply(e)),
        }
    }

    /// One command (or pipeline) within `command_timeout`, through the
    /// breaker, retried once on a fresh connection when the current one
    /// turns out to be gone.
    async fn exec<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        F: Fn(MultiplexedConnection) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        let pass = match self.inner.breaker.admit() {
            Ok(p) => p,
            Err(last) => {
                return Err(StoreError::Redis(format!(
                    "unavailable, failing fast: {last}"
                )))
            }
        };
        let limit = self.inner.command_timeout;
        let call = async {
            match self.attempt(&f).await {
                Err(Attempt::Dropped(e)) => {
                    tracing::debug!(error = %e, "redis: async connection was lost, retrying on a fresh one");
                    self.attempt(&f).await
                }
                other => other,
            }
        };
        let outcome = match tokio::time::timeout(limit, call).await {
            Ok(r) => r,
            Err(_) => Err(Attempt::Down(StoreError::Timeout(format!(
                "redis: no reply within {} ms",
                limit.as_millis()
            )))),
        };
        match outcome {
            Ok(v) => {
                pass.succeeded();
                Ok(v)
            }
            Err(Attempt::Reply(e)) => {
                pass.succeeded();
                Err(if e.is_timeout() {
                    StoreError::Timeout(format!("redis: {e}"))
                } else {
                    StoreError::Redis(e.to_string())
                })
            }
            Err(Attempt::Dropped(e)) => {
                let err = StoreError::Redis(e.to_string());
                pass.failed(&err.to_string());
                Err(err)
            }
            Err(Attempt::Down(err)) => {
                pass.failed(&err.to_string());
                Err(err)
            }
        }
    }
}
