//! The in-process block store: the embedded default. Expiry is checked on
//! read; expired entries are purged as the map grows.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;
use sec_audit_core::Clock;
use sec_audit_rules::ScopeKey;

use crate::block::{BlockEntry, BlockStore, NewBlock, StoreError};

pub struct MemoryBlockStore {
    clock: Arc<dyn Clock>,
    entries: RwLock<HashMap<String, BlockEntry>>,
    purge_at: RwLock<usize>,
}

impl std::fmt::Debug for MemoryBlockStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBlockStore")
            .field("entries", &self.entries.read().len())
            .finish()
    }
}

impl MemoryBlockStore {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        MemoryBlockStore {
            clock,
            entries: RwLock::new(HashMap::new()),
            purge_at: RwLock::new(1024),
        }
    }

    fn list(&self, scope_type: Option<&str>, permanent: bool) -> Vec<BlockEntry> {
        let now = self.clock.now();
        let mut out: Vec<BlockEntry> = self
            .entries
            .read()
            .values()
            .filter(|e| e.is_active(now) && e.is_permanent() == permanent)
            .filter(|e| scope_type.is_none_or(|t| e.scope_type == t))
            .cloned()
            .collect();
        out.sort_by(|a, b| (&a.scope_type, &a.scope_value).cmp(&(&b.scope_type, &b.scope_value)));
        out
    }
}

impl BlockStore for MemoryBlockStore {
    fn block(&self, new: &NewBlock) -> Result<BlockEntry, StoreError> {
        let new = new.normalized()?;
        let now = self.clock.now();
        let entry = new.entry(now);
        let mut map = self.entries.write();
        let mut purge_at = self.purge_at.write();
        if map.len() >= *purge_at {
            map.retain(|_, e| e.is_active(now));
            *purge_at = (map.len() * 2).max(1024);
        }
        map.insert(new.scope.as_str().to_string(), entry.clone());
        Ok(entry)
    }

    fn unblock(
        &self,
        scope: &ScopeKey,
        _reason: &str,
        _revoked_by: &str,
    ) -> Result<usize, StoreError> {
        crate::limits::check_scope(scope.scope(), scope.value())?;
        let now = self.clock.now();
        Ok(match self.entries.write().remove(scope.as_str()) {
            Some(e) if e.is_active(now) => 1,
            _ => 0,
        })
    }

    fn get_active(&self, scope: &ScopeKey) -> Result<Option<BlockEntry>, StoreError> {
        let now = self.clock.now();
        Ok(self
            .entries
            .read()
            .get(scope.as_str())
            .filter(|e| e.is_active(now))
            .cloned())
    }

    fn first_active(&self, scopes: &[ScopeKey]) -> Result<Option<BlockEntry>, StoreError> {
        // The clock is read only once an entry is found: a clean request
        // (the common case) needs no time.
        let mut now: Option<f64> = None;
        let map = self.entries.read();
        Ok(scopes
            .iter()
            .find_map(|s| {
                map.get(s.as_str()).filter(|e| {
                    let now = *now.get_or_insert_with(|| self.clock.now());
                    e.is_active(now)
                })
            })
            .cloned())
    }

    fn active_blocks(&self, scope_type: Option<&str>) -> Result<Vec<BlockEntry>, StoreError> {
        Ok(self.list(scope_type, true))
    }

    fn active_temp_blocks(&self, scope_type: Option<&str>) -> Result<Vec<BlockEntry>, StoreError> {
        Ok(self.list(scope_type, false))
    }

    fn answers_locally(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sec_audit_core::ManualClock;
    use serde_json::Map;

    fn new_block(scope: &str, value: &str, ttl: Option<u64>) -> NewBlock {
        NewBlock {
            scope: ScopeKey::new(scope, value),
            reason: "r".into(),
            rule_name: "rule".into(),
            status_code: 429,
            message: "m".into(),
            ttl,
            metadata: Map::new(),
        }
    }

    #[test]
    fn keeps_no_trail() {
        let s = MemoryBlockStore::new(Arc::new(ManualClock::at_secs(100.0)));
        assert_eq!(s.trail(&ScopeKey::new("user", "u"), 10), Ok(None));
    }

    #[test]
    fn temp_blocks_expire_at_exactly_expires_at() {
        let clock = Arc::new(ManualClock::at_secs(100.0));
        let s = MemoryBlockStore::new(clock.clone());
        s.block(&new_block("ip", "1.1.1.1", Some(10))).unwrap();
        let k = ScopeKey::new("ip", "1.1.1.1");
        assert!(s.get_active(&k).unwrap().is_some());
        clock.advance_secs(9.999);
        assert!(s.get_active(&k).unwrap().is_some());
        clock.advance_secs(0.001);
        assert!(s.get_active(&k).unwrap().is_none());
    }

    #[test]
    fn first_active_respects_order_and_reblock_replaces() {
        let clock = Arc::new(ManualClock::at_secs(100.0));
        let s = MemoryBlockStore::new(clock.clone());
        s.block(&new_block("ip", "1.1.1.1", Some(10))).unwrap();
        s.block(&new_block("user", "u", None)).unwrap();
        let order = [ScopeKey::new("user", "u"), ScopeKey::new("ip", "1.1.1.1")];
        assert_eq!(s.first_active(&order).unwrap().unwrap().scope_type, "user");
        clock.advance_secs(5.0);
        s.block(&new_block("ip", "1.1.1.1", Some(10))).unwrap();
        clock.advance_secs(7.0);
        assert!(
            s.get_active(&ScopeKey::new("ip", "1.1.1.1"))
                .unwrap()
                .is_some(),
            "new TTL from the re-block"
        );
        assert_eq!(s.active_blocks(None).unwrap().len(), 1);
        assert_eq!(s.active_temp_blocks(Some("ip")).unwrap().len(), 1);
        assert_eq!(s.active_temp_blocks(Some("user")).unwrap().len(), 0);
        assert_eq!(s.unblock(&ScopeKey::new("user", "u"), "", "").unwrap(), 1);
        assert_eq!(s.unblock(&ScopeKey::new("user", "u"), "", "").unwrap(), 0);
        assert!(s.first_active(&order).unwrap().unwrap().scope_type == "ip");
    }

    #[test]
    fn invalid_requests_are_refused() {
        let s = MemoryBlockStore::new(Arc::new(ManualClock::at_secs(0.0)));
        assert!(matches!(
            s.block(&new_block("ip", "", None)),
            Err(StoreError::Invalid(_))
        ));
        assert!(matches!(
            s.block(&new_block("ip", "x", Some(0))),
            Err(StoreError::Invalid(_))
        ));
    }
}
