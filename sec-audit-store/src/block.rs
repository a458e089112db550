//! The block-store contract.

use sec_audit_core::ScopeKey;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A block-store failure. Never swallowed: the ingress check applies the fail
/// mode of the path. The message may hold connection details; emitted events
/// carry only [`StoreError::kind`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("redis: {0}")]
    Redis(String),
    #[error("postgres: {0}")]
    Postgres(String),
    #[error("connection pool: {0}")]
    Pool(String),
    #[error("timed out: {0}")]
    Timeout(String),
    #[error("stored entry could not be decoded: {0}")]
    Decode(String),
    #[error("invalid block request: {0}")]
    Invalid(String),
}

impl StoreError {
    /// A short, stable error kind, safe for `error.type`.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreError::Redis(_) => "redis_error",
            StoreError::Postgres(_) => "postgres_error",
            StoreError::Pool(_) => "pool_error",
            StoreError::Timeout(_) => "timeout",
            StoreError::Decode(_) => "decode_error",
            StoreError::Invalid(_) => "invalid_request",
        }
    }
}

/// A block as stored. Times are seconds since the epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockEntry {
    pub scope_type: String,
    pub scope_value: String,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub rule_name: String,
    #[serde(default = "default_status")]
    pub status_code: u16,
    #[serde(default)]
    pub message: String,
    pub created_at: f64,
    /// `None`: permanent.
    #[serde(default)]
    pub expires_at: Option<f64>,
    #[serde(default)]
    pub revoked_at: Option<f64>,
    #[serde(default)]
    pub metadata: Map<String, Value>,
}

fn default_status() -> u16 {
    429
}

impl BlockEntry {
    pub fn scope(&self) -> ScopeKey {
        ScopeKey::new(&self.scope_type, &self.scope_value)
    }
    pub fn is_permanent(&self) -> bool {
        self.expires_at.is_none()
    }
    /// Active while not revoked and `now < expires_at`.
    pub fn is_active(&self, now: f64) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| now < e)
    }
}

/// One row of a scope's history in the permanent tier (the audit trail):
/// the block as written and, once revoked (`entry.revoked_at`), who revoked
/// it and why.
#[derive(Debug, Clone, PartialEq)]
pub struct TrailRow {
    pub entry: BlockEntry,
    /// Empty while the row is not revoked.
    pub revoked_by: String,
    /// Empty while the row is not revoked.
    pub revoked_reason: String,
}

/// A block to write.
#[derive(Debug, Clone, PartialEq)]
pub struct NewBlock {
    pub scope: ScopeKey,
    pub reason: String,
    pub rule_name: String,
    pub status_code: u16,
    pub message: String,
    /// Seconds; `None`: permanent.
    pub ttl: Option<u64>,
    pub metadata: Map<String, Value>,
}

impl NewBlock {
    /// The entry this request creates at `now`.
    pub fn entry(&self, now: f64) -> BlockEntry {
        BlockEntry {
            scope_type: self.scope.scope().to_string(),
            scope_value: self.scope.value().to_string(),
            reason: self.reason.clone(),
            rule_name: self.rule_name.clone(),
            status_code: self.status_code,
            message: self.message.clone(),
            created_at: now,
            expires_at: self.ttl.map(|t| now + t as f64),
            revoked_at: None,
            metadata: self.metadata.clone(),
        }
    }

    /// Checks what every store requires ([`crate::limits::normalize`]).
    pub fn validate(&self) -> Result<(), StoreError> {
        crate::limits::normalize(self).map(|_| ())
    }

    /// This request as every store writes it: refused when it cannot be
    /// stored, texts bounded ([`crate::limits`]).
    pub fn normalized(&self) -> Result<std::borrow::Cow<'_, NewBlock>, StoreError> {
        crate::limits::normalize(self)
    }
}

/// Where blocks live. Re-blocking a scope replaces its entry (a new TTL for
/// temporary blocks; for permanent blocks the one active entry is updated).
pub trait BlockStore: Send + Sync {
    fn block(&self, new: &NewBlock) -> Result<BlockEntry, StoreError>;
    /// Removes the scope's blocks from every tier; returns how many entries
    /// were removed.
    fn unblock(
        &self,
        scope: &ScopeKey,
        reason: &str,
        revoked_by: &str,
    ) -> Result<usize, StoreError>;
    /// The scope's own active entry: exactly this key (an address's
    /// covering ranges are not consulted; a range value names the range's
    /// own entry).
    fn get_active(&self, scope: &ScopeKey) -> Result<Option<BlockEntry>, StoreError>;
    /// The ingress lookup: the first active entry among `scopes`, in the
    /// given order, where an `ip` candidate holding an address stands for
    /// the address's own entry and then each active range covering it,
    /// longest prefix first ([`crate::ranges`]).
    fn first_active(&self, scopes: &[ScopeKey]) -> Result<Option<BlockEntry>, StoreError>;
    /// Active permanent entries, optionally of one scope type.
    fn active_blocks(&self, scope_type: Option<&str>) -> Result<Vec<BlockEntry>, StoreError>;
    /// Active temporary entries with their expiry, optionally of one scope
    /// type. For operator tooling, never the request path.
    fn active_temp_blocks(&self, scope_type: Option<&str>) -> Result<Vec<BlockEntry>, StoreError>;
    /// The scope's rows in the permanent tier, revoked ones included, newest
    /// first, at most `limit`. `None`: this store keeps no trail (memory,
    /// Redis: a revoked entry is simply gone). For operator tooling.
    fn trail(&self, _scope: &ScopeKey, _limit: usize) -> Result<Option<Vec<TrailRow>>, StoreError> {
        Ok(None)
    }
    /// True when every call answers from process memory, without I/O (an
    /// async caller may then call it inline instead of off its executor).
    fn answers_locally(&self) -> bool {
        false
    }
}
