//! The Postgres block store: the durable source of truth for permanent
//! blocks (table `permanent_blocks`).
//!
//! - Table `permanent_blocks`, created by the embedded migrations, which run
//!   only when [`PostgresBlockStore::run_migrations`] is called.
//! - One active row per scope (partial unique index); a ban is an
//!   `INSERT … ON CONFLICT … DO UPDATE` on that index, so concurrent bans of
//!   one scope converge on one row without an error.
//! - Revocation is a soft delete (`revoked_at`, `revoked_by`,
//!   `revoked_reason`); a revoked scope can be banned again.
//! - Connections come from an r2d2 pool that connects lazily; every
//!   connection gets a `statement_timeout` (and optionally a `search_path`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::sql_types::{Array, BigInt, Double, Integer, Jsonb, Nullable, SmallInt, Text};
use diesel::{Connection, QueryableByName, RunQueryDsl};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use sec_audit_core::Clock;
use sec_audit_core::ScopeKey;
use serde_json::{Map, Value};

use crate::block::{BlockEntry, BlockStore, NewBlock, StoreError, TrailRow};
use crate::config::PostgresConfig;
use crate::failfast::FailFast;
use crate::limits::{self, MAX_REASON_CHARS, MAX_REVOKED_BY_CHARS};
use crate::stats::{Counters, StoreStats};

/// The crate's migrations, embedded in the binary.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// Key of the advisory lock that serializes concurrent migration runs.
const MIGRATION_LOCK: i64 = 0x5EC_A0D1_7000;

/// Class of the per-scope advisory locks that serialize every change of a
/// scope (`pg_advisory_xact_lock(class, hashtext(scope key))`). The
/// two-key form is a key space of its own, apart from the migration lock.
const SCOPE_LOCK_CLASS: i32 = 0x5EC_A0D1;

#[derive(Debug)]
struct ManagerError(String);

impl std::fmt::Display for ManagerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ManagerError {}

struct Manager {
    url: String,
    setup_sql: String,
    generation: Arc<AtomicU64>,
}

struct PooledConn {
    conn: PgConnection,
    generation: u64,
    poisoned: bool,
}

impl r2d2::ManageConnection for Manager {
    type Connection = PooledConn;
    type Error = ManagerError;

    fn connect(&self) -> Result<PooledConn, ManagerError> {
        let generation = self.generation.load(Ordering::Acquire);
        let mut conn =
            PgConnection::establish(&self.url).map_err(|e| ManagerError(e.to_string()))?;
        conn.batch_execute(&self.setup_sql)
            .map_err(|e| ManagerError(format!("connection set-up: {e}")))?;
        Ok(PooledConn {
            conn,
            generation,
            poisoned: false,
        })
    }

    /// No I/O: a checkout costs no query.
    fn is_valid(&self, c: &mut PooledConn) -> Result<(), ManagerError> {
        if c.poisoned || c.generation < self.generation.load(Ordering::Acquire) {
            return Err(ManagerError("stale pooled connection".into()));
        }
        Ok(())
    }

    fn has_broken(&self, c: &mut PooledConn) -> bool {
        c.poisoned || c.generation < self.generation.load(Ordering::Acquire)
    }
}

enum Failure {
    Diesel(DieselError),
    Other(String),
    /// The write-through inside a serialized change failed.
    Store(StoreError),
}

impl From<DieselError> for Failure {
    fn from(e: DieselError) -> Self {
        Failure::Diesel(e)
    }
}

impl Failure {
    /// The connection died under us (server restarted or shut down), as
    /// opposed to the statement failing. libpq may hand over the server's
    /// farewell (`FATAL: terminating connection …`, SQLSTATE class 57P)
    /// before it notices the closed socket, and diesel then reports an
    /// unknown error kind: the message tells.
    fn connection_lost(&self) -> bool {
        match self {
            Failure::Diesel(DieselError::DatabaseError(
                DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
                _,
            )) => true,
            Failure::Diesel(DieselError::DatabaseError(_, info)) => {
                let m = info.message();
                [
                    "terminating connection",
                    "server closed the connection",
                    "no connection to the server",
                    "could not receive data from server",
                    "could not send data to server",
                    "the database system is shutting down",
                ]
                .iter()
                .any(|needle| m.contains(needle))
            }
            _ => false,
        }
    }

    fn into_store(self) -> StoreError {
        match self {
            Failure::Diesel(e) => {
                let msg = e.to_string();
                if msg.contains("statement timeout") {
                    StoreError::Timeout(format!("postgres: {msg}"))
                } else {
                    StoreError::Postgres(msg)
                }
            }
            Failure::Other(msg) => StoreError::Postgres(msg),
            Failure::Store(e) => e,
        }
    }
}

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = Text)]
    scope_type: String,
    #[diesel(sql_type = Text)]
    scope_value: String,
    #[diesel(sql_type = Text)]
    reason: String,
    #[diesel(sql_type = Text)]
    rule_name: String,
    #[diesel(sql_type = SmallInt)]
    status_code: i16,
    #[diesel(sql_type = Text)]
    message: String,
    #[diesel(sql_type = Jsonb)]
    metadata: Value,
    #[diesel(sql_type = Double)]
    created_at: f64,
    #[diesel(sql_type = Nullable<Double>)]
    expires_at: Option<f64>,
    #[diesel(sql_type = Nullable<Double>)]
    revoked_at: Option<f64>,
}

impl Row {
    fn into_entry(self) -> BlockEntry {
        let metadata = match self.metadata {
            Value::Object(m) => m,
            other => {
                tracing::warn!(scope_type = %self.scope_type, kind = ?other, "permanent block metadata is not an object; ignored");
                Map::new()
            }
        };
        BlockEntry {
            status_code: u16::try_from(self.status_code).unwrap_or(429),
            scope_type: self.scope_type,
            scope_value: self.scope_value,
            reason: self.reason,
            rule_name: self.rule_name,
            message: self.message,
            created_at: self.created_at,
            expires_at: self.expires_at,
            revoked_at: self.revoked_at,
            metadata,
        }
    }
}

#[derive(QueryableByName)]
struct TrailDbRow {
    #[diesel(embed)]
    block: Row,
    #[diesel(sql_type = Text)]
    revoked_by: String,
    #[diesel(sql_type = Text)]
    revoked_reason: String,
}

#[derive(QueryableByName)]
struct KeyRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    scope_type: String,
    #[diesel(sql_type = Text)]
    scope_value: String,
}

const COLS: &str = "scope_type, scope_value, reason, rule_name, status_code, message, metadata, \
    extract(epoch from created_at)::float8 AS created_at, \
    extract(epoch from expires_at)::float8 AS expires_at, \
    extract(epoch from revoked_at)::float8 AS revoked_at";

/// Active = not revoked and not past a (normally absent) `expires_at`.
const ACTIVE: &str = "revoked_at IS NULL AND (expires_at IS NULL OR expires_at > to_timestamp($1))";

/// Takes the advisory lock of `scope` until the end of the transaction.
fn lock_scope(conn: &mut PgConnection, scope: &ScopeKey) -> Result<(), Failure> {
    diesel::sql_query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
        .bind::<Integer, _>(SCOPE_LOCK_CLASS)
        .bind::<Text, _>(scope.as_str())
        .execute(conn)?;
    Ok(())
}

/// A serialized change that failed: the error, and whether its Redis
/// write-through had been attempted (then Redis may hold a change Postgres
/// did not commit — the write-through ran but COMMIT failed, or its reply
/// was lost — and the caller must repair it).
#[derive(Debug)]
pub(crate) struct LockedFailure {
    pub(crate) error: StoreError,
    pub(crate) attempted: bool,
}

impl From<StoreError> for LockedFailure {
    fn from(error: StoreError) -> Self {
        LockedFailure {
            error,
            attempted: false,
        }
    }
}

/// The Postgres tier.
#[derive(Clone)]
pub struct PostgresBlockStore {
    pool: r2d2::Pool<Manager>,
    generation: Arc<AtomicU64>,
    stats: Arc<Counters>,
    clock: Arc<dyn Clock>,
    connect_timeout: Duration,
    down: Arc<FailFast>,
}

impl std::fmt::Debug for PostgresBlockStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresBlockStore")
            .field("stats", &self.stats.snapshot())
            .finish()
    }
}

impl PostgresBlockStore {
    /// Builds the store and its pool without connecting. Fails only on
    /// invalid settings.
    pub fn new(config: &PostgresConfig, clock: Arc<dyn Clock>) -> Result<Self, StoreError> {
        config.validate()?;
        let mut setup_sql = format!(
            "SET statement_timeout = {};",
            config.statement_timeout.as_millis().max(1)
        );
        if let Some(schema) = &config.search_path {
            setup_sql.push_str(&format!(" SET search_path TO \"{schema}\";"));
        }
        let generation = Arc::new(AtomicU64::new(0));
        let manager = Manager {
            url: config.libpq_url(),
            setup_sql,
            generation: generation.clone(),
        };
        let pool = r2d2::Pool::builder()
            .max_size(config.pool_size)
            .min_idle(Some(0))
            .connection_timeout(config.connect_timeout)
            .test_on_check_out(true)
            .idle_timeout(Some(Duration::from_secs(300)))
            .max_lifetime(Some(Duration::from_secs(1800)))
            .error_handler(Box::new(r2d2::NopErrorHandler))
            .build_unchecked(manager);
        Ok(PostgresBlockStore {
            pool,
            generation,
            stats: Counters::new(),
            clock,
            connect_timeout: config.connect_timeout,
            down: Arc::new(FailFast::new(config.failure_backoff)),
        })
    }

    /// Queries issued so far.
    pub fn stats(&self) -> StoreStats {
        self.stats.snapshot()
    }

    /// Runs `f` (which issues `queries` queries) on a pooled connection,
    /// retrying once on a fresh connection when the first one was dead
    /// (an idle pooled connection may predate a server restart).
    fn with_conn<T>(
        &self,
        queries: u64,
        f: impl Fn(&mut PgConnection) -> Result<T, Failure>,
    ) -> Result<T, StoreError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            if let Some(last) = self.down.check() {
                return Err(StoreError::Postgres(format!(
                    "unavailable, failing fast: {last}"
                )));
            }
            let mut c = self.pool.get().map_err(|e| {
                let msg = e.to_string();
                let waited = self.connect_timeout.as_millis();
                if msg.contains(": ") || self.pool.state().connections == 0 {
                    let msg = format!("cannot connect within {waited} ms ({msg})");
                    self.down.failed(&msg);
                    StoreError::Postgres(msg)
                } else {
                    StoreError::Pool(format!(
                        "postgres: no pooled connection free within {waited} ms"
                    ))
                }
            })?;
            self.down.succeeded();
            self.stats.postgres(queries);
            match f(&mut c.conn) {
                Ok(v) => return Ok(v),
                Err(failure) => {
                    let lost = failure.connection_lost();
                    // Whatever went wrong in Postgres, do not hand this
                    // connection out again: it may be broken or
                    // mid-transaction. A failed write-through (Redis) was
                    // rolled back cleanly.
                    if !matches!(failure, Failure::Store(_)) {
                        c.poisoned = true;
                    }
                    if lost && attempt == 1 {
                        self.generation.fetch_add(1, Ordering::AcqRel);
                        tracing::debug!(
                            "postgres: pooled connection was dead, retrying on a fresh one"
                        );
                        continue;
                    }
                    return Err(failure.into_store());
                }
            }
        }
    }

    /// Applies the pending embedded migrations (under an advisory lock, so
    /// concurrent callers do not race) and returns the versions applied by
    /// this call. Never called implicitly.
    pub fn run_migrations(&self) -> Result<Vec<String>, StoreError> {
        self.with_conn(1, |conn| {
            conn.batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))?;
            let result = conn
                .run_pending_migrations(MIGRATIONS)
                .map(|v| v.iter().map(|m| m.to_string()).collect::<Vec<_>>())
                .map_err(|e| Failure::Other(format!("migrations: {e}")));
            let unlocked =
                conn.batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"));
            let applied = result?;
            unlocked?;
            Ok(applied)
        })
    }

    /// Every migration version recorded as applied, oldest first.
    pub fn applied_migrations(&self) -> Result<Vec<String>, StoreError> {
        self.with_conn(1, |conn| {
            let mut v: Vec<String> = conn
                .applied_migrations()
                .map_err(|e| Failure::Other(format!("migrations: {e}")))?
                .iter()
                .map(|m| m.to_string())
                .collect();
            v.sort();
            Ok(v)
        })
    }

    /// Names of embedded migrations not yet applied.
    pub fn pending_migrations(&self) -> Result<Vec<String>, StoreError> {
        self.with_conn(1, |conn| {
            Ok(conn
                .pending_migrations(MIGRATIONS)
                .map_err(|e| Failure::Other(format!("migrations: {e}")))?
                .iter()
                .map(|m| m.name().to_string())
                .collect())
        })
    }

    /// Active scope keys (`scope_type:scope_value`) with `id > after`, in id
    /// order, at most `limit`; with the last id seen. For rebuilding the
    /// Redis mirror page by page.
    pub(crate) fn active_keys_page(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<(Vec<String>, Option<i64>), StoreError> {
        let now = self.clock.now();
        let rows: Vec<KeyRow> = self.with_conn(1, |conn| {
            Ok(diesel::sql_query(format!(
                "SELECT id, scope_type, scope_value FROM permanent_blocks WHERE {ACTIVE} AND id > $2 ORDER BY id LIMIT $3"
            ))
            .bind::<Double, _>(now)
            .bind::<BigInt, _>(after)
            .bind::<BigInt, _>(limit)
            .load(conn)?)
        })?;
        let last = rows.last().map(|r| r.id);
        Ok((
            rows.into_iter()
                .map(|r| {
                    ScopeKey::new(r.scope_type, r.scope_value)
                        .as_str()
                        .to_string()
                })
                .collect(),
            last,
        ))
    }
}

impl PostgresBlockStore {
    /// Runs `change` and then `through` (the Redis write-through) in one
    /// transaction holding the scope's advisory lock, so that changes of one
    /// scope — from any process — reach Postgres and Redis in the same
    /// order. `through` runs before COMMIT: when it fails, the change is
    /// rolled back. Whenever `through` was attempted and the whole fails
    /// (COMMIT failed, or `through`'s reply was lost), the failure says
    /// `attempted` and the caller repairs Redis.
    fn serialized<T, R>(
        &self,
        scope: &ScopeKey,
        queries: u64,
        change: impl Fn(&mut PgConnection, f64) -> Result<T, Failure>,
        through: impl Fn(&T) -> Result<R, StoreError>,
    ) -> Result<(T, R), LockedFailure> {
        let attempted = std::cell::Cell::new(false);
        self.with_conn(queries, |conn| {
            conn.transaction::<_, Failure, _>(|conn| {
                lock_scope(conn, scope)?;
                // The clock is read under the lock: the holder after us
                // reads a later time (on this host).
                let t = change(conn, self.clock.now())?;
                attempted.set(true);
                let r = through(&t).map_err(Failure::Store)?;
                Ok((t, r))
            })
        })
        .map_err(|error| LockedFailure {
            error,
            attempted: attempted.get(),
        })
    }

    /// A permanent ban, serialized per scope, with `through` (the Redis
    /// write-through) run before COMMIT (see [`Self::serialized`]). A
    /// re-ban replaces the active row's fields, `created_at` included.
    pub(crate) fn block_serialized<R>(
        &self,
        new: &NewBlock,
        through: impl Fn(&BlockEntry) -> Result<R, StoreError>,
    ) -> Result<(BlockEntry, R), LockedFailure> {
        let new = new.normalized()?;
        if new.ttl.is_some() {
            return Err(StoreError::Invalid("postgres stores permanent blocks only".into()).into());
        }
        let metadata = Value::Object(new.metadata.clone());
        let status = i16::try_from(new.status_code)
            .map_err(|_| StoreError::Invalid("status code".into()))?;
        let upsert = |conn: &mut PgConnection, now: f64| -> Result<BlockEntry, Failure> {
            let row: Row = diesel::sql_query(format!(
                "INSERT INTO permanent_blocks \
                   (scope_type, scope_value, reason, rule_name, status_code, message, metadata, created_at, expires_at) \
                 VALUES ($2, $3, $4, $5, $6, $7, $8, to_timestamp($1), NULL) \
                 ON CONFLICT (scope_type, scope_value) WHERE revoked_at IS NULL DO UPDATE SET \
                   reason = EXCLUDED.reason, rule_name = EXCLUDED.rule_name, \
                   status_code = EXCLUDED.status_code, message = EXCLUDED.message, \
                   metadata = EXCLUDED.metadata, created_at = EXCLUDED.created_at, expires_at = NULL \
                 RETURNING {COLS}"
            ))
            .bind::<Double, _>(now)
            .bind::<Text, _>(new.scope.scope())
            .bind::<Text, _>(new.scope.value())
            .bind::<Text, _>(&new.reason)
            .bind::<Text, _>(&new.rule_name)
            .bind::<SmallInt, _>(status)
            .bind::<Text, _>(&new.message)
            .bind::<Jsonb, _>(&metadata)
            .get_result(conn)?;
            Ok(row.into_entry())
        };
        // BEGIN, lock, upsert, COMMIT.
        self.serialized(&new.scope, 4, upsert, through)
    }

    /// Soft-revokes the scope's active row, serialized per scope, with
    /// `through` run before COMMIT (see [`Self::serialized`]). `revoked_at`
    /// is never earlier than the row's `created_at`, whatever the clocks of
    /// the processes involved.
    pub(crate) fn unblock_serialized<R>(
        &self,
        scope: &ScopeKey,
        reason: &str,
        revoked_by: &str,
        through: impl Fn(&usize) -> Result<R, StoreError>,
    ) -> Result<(usize, R), LockedFailure> {
        limits::check_scope(scope.scope(), scope.value())?;
        let reason = limits::bounded_text(reason, MAX_REASON_CHARS);
        let revoked_by = limits::bounded_text(revoked_by, MAX_REVOKED_BY_CHARS);
        let revoke = |conn: &mut PgConnection, now: f64| -> Result<usize, Failure> {
            Ok(diesel::sql_query(
                "UPDATE permanent_blocks SET revoked_at = GREATEST(to_timestamp($1), created_at), \
                   revoked_by = $4, revoked_reason = $5 \
                 WHERE scope_type = $2 AND scope_value = $3 AND revoked_at IS NULL",
            )
            .bind::<Double, _>(now)
            .bind::<Text, _>(scope.scope())
            .bind::<Text, _>(scope.value())
            .bind::<Text, _>(&*revoked_by)
            .bind::<Text, _>(&*reason)
            .execute(conn)?)
        };
        self.serialized(scope, 4, revoke, through)
    }

    /// Reads the scope's active row under its advisory lock and hands it to
    /// `through` before the lock is released: for repairing Redis after a
    /// failed change, with no change of the scope able to interleave.
    pub(crate) fn read_serialized<R>(
        &self,
        scope: &ScopeKey,
        through: impl Fn(&Option<BlockEntry>) -> Result<R, StoreError>,
    ) -> Result<(Option<BlockEntry>, R), LockedFailure> {
        limits::check_scope(scope.scope(), scope.value())?;
        let read = |conn: &mut PgConnection, now: f64| -> Result<Option<BlockEntry>, Failure> {
            let rows: Vec<Row> = diesel::sql_query(format!(
                "SELECT {COLS} FROM permanent_blocks WHERE {ACTIVE} AND scope_type = $2 AND scope_value = $3"
            ))
            .bind::<Double, _>(now)
            .bind::<Text, _>(scope.scope())
            .bind::<Text, _>(scope.value())
            .load(conn)?;
            Ok(rows.into_iter().next().map(Row::into_entry))
        };
        self.serialized(scope, 4, read, through)
    }
}

impl PostgresBlockStore {
    /// The first active row among exactly these scopes, in order: one
    /// query.
    pub(crate) fn first_exact(
        &self,
        scopes: &[ScopeKey],
    ) -> Result<Option<BlockEntry>, StoreError> {
        if scopes.is_empty() {
            return Ok(None);
        }
        // A scope that cannot be stored cannot be banned (and a NUL would
        // make the query fail): it is not asked about.
        let storable: Vec<&ScopeKey> = scopes
            .iter()
            .filter(|s| limits::check_scope(s.scope(), s.value()).is_ok())
            .collect();
        if storable.is_empty() {
            return Ok(None);
        }
        let now = self.clock.now();
        let types: Vec<&str> = storable.iter().map(|s| s.scope()).collect();
        let values: Vec<&str> = storable.iter().map(|s| s.value()).collect();
        let rows: Vec<Row> = self.with_conn(1, |conn| {
            Ok(diesel::sql_query(format!(
                "SELECT {COLS} FROM permanent_blocks WHERE {ACTIVE} \
                 AND (scope_type, scope_value) IN (SELECT * FROM unnest($2::text[], $3::text[]))"
            ))
            .bind::<Double, _>(now)
            .bind::<Array<Text>, _>(&types)
            .bind::<Array<Text>, _>(&values)
            .load(conn)?)
        })?;
        let mut entries: Vec<BlockEntry> = rows.into_iter().map(Row::into_entry).collect();
        Ok(scopes.iter().find_map(|s| {
            let i = entries
                .iter()
                .position(|e| e.scope_type == s.scope() && e.scope_value == s.value())?;
            Some(entries.swap_remove(i))
        }))
    }
}

impl BlockStore for PostgresBlockStore {
    /// Permanent blocks only: a block with a TTL is refused. Serialized per
    /// scope with the other changes of that scope (an advisory lock).
    fn block(&self, new: &NewBlock) -> Result<BlockEntry, StoreError> {
        self.block_serialized(new, |_| Ok(()))
            .map(|(e, ())| e)
            .map_err(|f| f.error)
    }

    /// Soft-revokes the active row; returns 1 when one was revoked.
    fn unblock(
        &self,
        scope: &ScopeKey,
        reason: &str,
        revoked_by: &str,
    ) -> Result<usize, StoreError> {
        self.unblock_serialized(scope, reason, revoked_by, |_| Ok(()))
            .map(|(n, ())| n)
            .map_err(|f| f.error)
    }

    fn get_active(&self, scope: &ScopeKey) -> Result<Option<BlockEntry>, StoreError> {
        self.first_exact(std::slice::from_ref(scope))
    }

    /// One query over every candidate, an address's covering ranges at
    /// every prefix length included (Postgres keeps no index of the lengths
    /// in use; the ranges are exact lookups on the active-scope index).
    fn first_active(&self, scopes: &[ScopeKey]) -> Result<Option<BlockEntry>, StoreError> {
        self.first_exact(&crate::ranges::expand(
            scopes,
            &crate::ranges::LenMask::all(),
        ))
    }

    fn active_blocks(&self, scope_type: Option<&str>) -> Result<Vec<BlockEntry>, StoreError> {
        let now = self.clock.now();
        let rows: Vec<Row> = self.with_conn(1, |conn| {
            Ok(diesel::sql_query(format!(
                "SELECT {COLS} FROM permanent_blocks WHERE {ACTIVE} \
                 AND ($2::text IS NULL OR scope_type = $2) ORDER BY scope_type, scope_value"
            ))
            .bind::<Double, _>(now)
            .bind::<Nullable<Text>, _>(scope_type)
            .load(conn)?)
        })?;
        Ok(rows.into_iter().map(Row::into_entry).collect())
    }

    /// Postgres holds no temporary blocks.
    fn active_temp_blocks(&self, _scope_type: Option<&str>) -> Result<Vec<BlockEntry>, StoreError> {
        Ok(Vec::new())
    }

    /// Every row of the scope (revocation is a soft delete, so the table is
    /// the trail), newest first.
    fn trail(&self, scope: &ScopeKey, limit: usize) -> Result<Option<Vec<TrailRow>>, StoreError> {
        if limits::check_scope(scope.scope(), scope.value()).is_err() {
            return Ok(Some(Vec::new()));
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows: Vec<TrailDbRow> = self.with_conn(1, |conn| {
            Ok(diesel::sql_query(format!(
                "SELECT {COLS}, revoked_by, revoked_reason FROM permanent_blocks \
                 WHERE scope_type = $1 AND scope_value = $2 ORDER BY created_at DESC, id DESC LIMIT $3"
            ))
            .bind::<Text, _>(scope.scope())
            .bind::<Text, _>(scope.value())
            .bind::<BigInt, _>(limit)
            .load(conn)?)
        })?;
        Ok(Some(
            rows.into_iter()
                .map(|r| TrailRow {
                    entry: r.block.into_entry(),
                    revoked_by: r.revoked_by,
                    revoked_reason: r.revoked_reason,
                })
                .collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn building_the_store_does_not_connect() {
        let s = PostgresBlockStore::new(
            &PostgresConfig::new("postgres://nobody@127.0.0.1:1/none"),
            Arc::new(sec_audit_core::SystemClock),
        )
        .unwrap();
        assert_eq!(s.stats(), StoreStats::default());
        let ttl = NewBlock {
            scope: ScopeKey::new("ip", "1.1.1.1"),
            reason: String::new(),
            rule_name: String::new(),
            status_code: 429,
            message: String::new(),
            ttl: Some(5),
            metadata: Map::new(),
        };
        assert!(matches!(s.block(&ttl), Err(StoreError::Invalid(_))));
        assert_eq!(s.stats().postgres_queries, 0);
    }
}
