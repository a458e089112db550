//! The in-process block store: the embedded default. Expiry is checked on
//! read; expired entries are purged as the map grows. Range blocks
//! ([`crate::ranges`]) are entries like any other; the store counts them
//! per prefix length, so a lookup checks only the lengths in use.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;
use sec_audit_core::Clock;
use sec_audit_core::ScopeKey;

use crate::block::{BlockEntry, BlockStore, NewBlock, StoreError};
use crate::ranges::{self, Family, LenMask};

/// The entries and, per prefix length, how many of them are ranges
/// (expired ones included until purged: a superset is always safe).
#[derive(Default)]
struct Inner {
    map: HashMap<String, BlockEntry>,
    /// `[0..32)`: IPv4 lengths, `[32..160)`: IPv6 lengths.
    range_counts: Vec<u32>,
    lens: LenMask,
}

fn slot(family: Family, len: u8) -> usize {
    match family {
        Family::V4 => usize::from(len),
        Family::V6 => 32 + usize::from(len),
    }
}

impl Inner {
    fn count(&mut self, key: &str, delta: i32) {
        let Some((scope, value)) = key.split_once(':') else {
            return;
        };
        if scope != ranges::IP_SCOPE {
            return;
        }
        let Some(r) = ranges::IpRange::parse_canonical(value) else {
            return;
        };
        if self.range_counts.is_empty() {
            self.range_counts = vec![0; 160];
        }
        let i = slot(r.family(), r.prefix_len());
        let n = &mut self.range_counts[i];
        *n = n.saturating_add_signed(delta);
        self.lens = LenMask::default();
        for (i, n) in self.range_counts.iter().enumerate() {
            if *n > 0 {
                let (family, len) = if i < 32 {
                    (Family::V4, i as u8)
                } else {
                    (Family::V6, (i - 32) as u8)
                };
                self.lens.insert(family, len);
            }
        }
    }

    fn insert(&mut self, key: String, entry: BlockEntry) {
        let counted = key.contains('/');
        if self.map.insert(key.clone(), entry).is_none() && counted {
            self.count(&key, 1);
        }
    }

    fn remove(&mut self, key: &str) -> Option<BlockEntry> {
        let e = self.map.remove(key)?;
        if key.contains('/') {
            self.count(key, -1);
        }
        Some(e)
    }

    fn purge(&mut self, now: f64) {
        let expired: Vec<String> = self
            .map
            .iter()
            .filter(|(_, e)| !e.is_active(now))
            .map(|(k, _)| k.clone())
            .collect();
        for k in expired {
            self.remove(&k);
        }
    }
}

pub struct MemoryBlockStore {
    clock: Arc<dyn Clock>,
    entries: RwLock<Inner>,
    purge_at: RwLock<usize>,
}

impl std::fmt::Debug for MemoryBlockStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBlockStore")
            .field("entries", &self.entries.read().map.len())
            .finish()
    }
}

impl MemoryBlockStore {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        MemoryBlockStore {
            clock,
            entries: RwLock::new(Inner::default()),
            purge_at: RwLock::new(1024),
        }
    }

    fn list(&self, scope_type: Option<&str>, permanent: bool) -> Vec<BlockEntry> {
        let now = self.clock.now();
        let mut out: Vec<BlockEntry> = self
            .entries
            .read()
            .map
            .values()
            .filter(|e| e.is_active(now) && e.is_permanent() == permanent)
            .filter(|e| scope_type.is_none_or(|t| e.scope_type == t))
            .cloned()
            .collect();
        out.sort_by(|a, b| (&a.scope_type, &a.scope_value).cmp(&(&b.scope_type, &b.scope_value)));
        out
    }

    /// The first active entry among exactly these keys.
    fn first_exact(&self, inner: &Inner, scopes: &[ScopeKey]) -> Option<BlockEntry> {
        // The clock is read only once an entry is found: a clean request
        // (the common case) needs no time.
        let mut now: Option<f64> = None;
        scopes
            .iter()
            .find_map(|s| {
                inner.map.get(s.as_str()).filter(|e| {
                    let now = *now.get_or_insert_with(|| self.clock.now());
                    e.is_active(now)
                })
            })
            .cloned()
    }
}

impl BlockStore for MemoryBlockStore {
    fn block(&self, new: &NewBlock) -> Result<BlockEntry, StoreError> {
        let new = new.normalized()?;
        let now = self.clock.now();
        let entry = new.entry(now);
        let mut inner = self.entries.write();
        let mut purge_at = self.purge_at.write();
        if inner.map.len() >= *purge_at {
            inner.purge(now);
            *purge_at = (inner.map.len() * 2).max(1024);
        }
        inner.insert(new.scope.as_str().to_string(), entry.clone());
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
            .map
            .get(scope.as_str())
            .filter(|e| e.is_active(now))
            .cloned())
    }

    /// The candidates, each address followed by its covering ranges at the
    /// prefix lengths that hold a range.
    fn first_active(&self, scopes: &[ScopeKey]) -> Result<Option<BlockEntry>, StoreError> {
        let inner = self.entries.read();
        if inner.lens.is_empty() {
            // No range at all: the candidates as given (the common case).
            return Ok(self.first_exact(&inner, scopes));
        }
        let candidates = ranges::expand(scopes, &inner.lens);
        Ok(self.first_exact(&inner, &candidates))
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

    #[test]
    fn ranges_cover_their_addresses_after_the_exact_key() {
        let clock = Arc::new(ManualClock::at_secs(100.0));
        let s = MemoryBlockStore::new(clock.clone());
        let lookup = |ip: &str| {
            s.first_active(&[ScopeKey::new("user", "u"), ScopeKey::new("ip", ip)])
                .unwrap()
                .map(|e| e.scope_value)
        };
        assert_eq!(lookup("10.0.0.7"), None);
        s.block(&new_block("ip", "10.0.0.0/24", Some(10))).unwrap();
        s.block(&new_block("ip", "10.0.0.0/16", None)).unwrap();
        s.block(&new_block("ip", "2001:db8::/32", None)).unwrap();
        assert_eq!(
            lookup("10.0.0.7").as_deref(),
            Some("10.0.0.0/24"),
            "longest first"
        );
        assert_eq!(lookup("10.0.9.9").as_deref(), Some("10.0.0.0/16"));
        assert_eq!(lookup("10.1.0.1"), None);
        assert_eq!(lookup("2001:db8:1::5").as_deref(), Some("2001:db8::/32"));
        assert_eq!(lookup("2001:db9::5"), None);
        s.block(&new_block("ip", "10.0.0.7", Some(5))).unwrap();
        assert_eq!(
            lookup("10.0.0.7").as_deref(),
            Some("10.0.0.7"),
            "exact first"
        );
        // get_active is the scope's own entry.
        assert!(s
            .get_active(&ScopeKey::new("ip", "10.0.0.8"))
            .unwrap()
            .is_none());
        assert!(s
            .get_active(&ScopeKey::new("ip", "10.0.0.0/24"))
            .unwrap()
            .is_some());
        clock.advance_secs(10.0);
        assert_eq!(
            lookup("10.0.0.8").as_deref(),
            Some("10.0.0.0/16"),
            "/24 expired"
        );
        assert_eq!(
            s.unblock(&ScopeKey::new("ip", "10.0.0.0/16"), "", "")
                .unwrap(),
            1
        );
        assert_eq!(lookup("10.0.0.8"), None);
        assert_eq!(
            s.active_blocks(Some("ip")).unwrap().len(),
            1,
            "the v6 range"
        );
    }

    #[test]
    fn lengths_are_counted_while_entries_exist() {
        let clock = Arc::new(ManualClock::at_secs(100.0));
        let s = MemoryBlockStore::new(clock.clone());
        s.block(&new_block("ip", "10.0.0.0/24", Some(10))).unwrap();
        s.block(&new_block("ip", "10.0.1.0/24", Some(10))).unwrap();
        s.block(&new_block("ip", "10.0.1.0/24", Some(20))).unwrap();
        let lens = |s: &MemoryBlockStore| s.entries.read().lens;
        assert!(lens(&s).contains(Family::V4, 24));
        s.unblock(&ScopeKey::new("ip", "10.0.0.0/24"), "", "")
            .unwrap();
        assert!(lens(&s).contains(Family::V4, 24), "one /24 left");
        s.unblock(&ScopeKey::new("ip", "10.0.1.0/24"), "", "")
            .unwrap();
        assert!(lens(&s).is_empty());
    }

    #[test]
    fn non_canonical_ranges_are_refused() {
        let s = MemoryBlockStore::new(Arc::new(ManualClock::at_secs(0.0)));
        for bad in [
            "10.0.0.5/24",
            "10.0.0.1/32",
            "2001:DB8::/32",
            "10.0.0.0/024",
        ] {
            assert!(
                matches!(
                    s.block(&new_block("ip", bad, None)),
                    Err(StoreError::Invalid(_))
                ),
                "{bad}"
            );
        }
        // Other scopes may hold a slash.
        assert!(s.block(&new_block("user", "a/b", None)).is_ok());
    }
}
