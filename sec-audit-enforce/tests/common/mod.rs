//! Shared test fixtures: a runtime on memory stores with a settable clock
//! and a captured JSONL trail.
#![allow(dead_code)]

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use sec_audit_core::{AuditEvent, ManualClock};
use sec_audit_enforce::{Config, Runtime, Sink, Stores};
use sec_audit_rules::{ActionKind, Match, Rule, RuleContext, RuleError, ScopeKey};
use sec_audit_store::{BlockEntry, BlockStore, NewBlock, StoreError};
use serde_json::{Map, Value};

#[derive(Clone, Default)]
pub struct SharedBuf(pub Arc<Mutex<Vec<u8>>>);

impl Write for SharedBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl SharedBuf {
    /// Every record written so far.
    pub fn records(&self) -> Vec<Value> {
        let bytes = self.0.lock().unwrap().clone();
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).expect("every line is JSON"))
            .collect()
    }
    /// Records of one event type.
    pub fn of(&self, event_type: &str) -> Vec<Value> {
        self.records()
            .into_iter()
            .filter(|r| r["body"] == event_type)
            .collect()
    }
    pub fn clear(&self) {
        self.0.lock().unwrap().clear();
    }
}

pub struct Harness {
    pub rt: Runtime,
    pub clock: Arc<ManualClock>,
    pub out: SharedBuf,
}

pub const T0: f64 = 1_780_000_000.0;

impl Harness {
    pub fn new(toml: &str) -> Self {
        Self::with(toml, |b| b)
    }

    pub fn with(
        toml: &str,
        f: impl FnOnce(sec_audit_enforce::RuntimeBuilder) -> sec_audit_enforce::RuntimeBuilder,
    ) -> Self {
        let config = Config::from_toml_str(toml).expect("test config parses");
        let clock = Arc::new(ManualClock::at_secs(T0));
        let out = SharedBuf::default();
        let b = Runtime::builder(config)
            .clock(clock.clone())
            .sink(Sink::Writer(Box::new(out.clone())))
            .stores(Stores::memory(clock.clone()));
        let rt = f(b).build().expect("test runtime builds");
        Harness { rt, clock, out }
    }
}

pub fn event(v: Value) -> AuditEvent {
    AuditEvent::from_attributes(v.as_object().cloned().expect("object")).expect("valid event")
}

/// A configurable rule for tests.
pub struct TestRule {
    pub name: String,
    pub severity: u8,
    pub decision: Option<ActionKind>,
    pub ingress: bool,
    pub metadata: Map<String, Value>,
    pub fail: bool,
    pub panic: bool,
}

impl TestRule {
    pub fn new(name: &str) -> Self {
        TestRule {
            name: name.into(),
            severity: 5,
            decision: None,
            ingress: false,
            metadata: Map::new(),
            fail: false,
            panic: false,
        }
    }
}

impl Rule for TestRule {
    fn name(&self) -> &str {
        &self.name
    }
    fn severity(&self) -> u8 {
        self.severity
    }
    fn safe_for_enforcement(&self) -> bool {
        self.ingress
    }
    fn evaluate(
        &self,
        event: &AuditEvent,
        ctx: &RuleContext<'_>,
    ) -> Result<Option<Match>, RuleError> {
        if self.panic {
            panic!("test rule panics");
        }
        if self.fail {
            return Err(RuleError::Failed("boom with alice@example.com".into()));
        }
        if event.text("trigger") != "yes" && event.path() != "/trigger" {
            return Ok(None);
        }
        Ok(Some(
            Match::new(self, event, ctx.now, format!("{} matched", self.name))
                .with_decision(self.decision)
                .with_metadata(self.metadata.clone()),
        ))
    }
}

/// A block store that always fails, counting calls.
#[derive(Default)]
pub struct DownStore {
    pub calls: AtomicUsize,
}

impl BlockStore for DownStore {
    fn block(&self, _: &NewBlock) -> Result<BlockEntry, StoreError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Err(StoreError::Redis(
            "connection refused to 10.0.0.1 for user alice".into(),
        ))
    }
    fn unblock(&self, _: &ScopeKey, _: &str, _: &str) -> Result<usize, StoreError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Err(StoreError::Redis("down".into()))
    }
    fn get_active(&self, _: &ScopeKey) -> Result<Option<BlockEntry>, StoreError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Err(StoreError::Redis("down".into()))
    }
    fn first_active(&self, _: &[ScopeKey]) -> Result<Option<BlockEntry>, StoreError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Err(StoreError::Redis(
            "connection refused to 10.0.0.1 for user alice".into(),
        ))
    }
    fn active_blocks(&self, _: Option<&str>) -> Result<Vec<BlockEntry>, StoreError> {
        Err(StoreError::Redis("down".into()))
    }
    fn active_temp_blocks(&self, _: Option<&str>) -> Result<Vec<BlockEntry>, StoreError> {
        Err(StoreError::Redis("down".into()))
    }
}

/// Wraps a store and counts `first_active` calls.
pub struct CountingStore<S> {
    pub inner: S,
    pub lookups: AtomicUsize,
}

impl<S: BlockStore> BlockStore for CountingStore<S> {
    fn block(&self, n: &NewBlock) -> Result<BlockEntry, StoreError> {
        self.inner.block(n)
    }
    fn unblock(&self, s: &ScopeKey, r: &str, b: &str) -> Result<usize, StoreError> {
        self.inner.unblock(s, r, b)
    }
    fn get_active(&self, s: &ScopeKey) -> Result<Option<BlockEntry>, StoreError> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        self.inner.get_active(s)
    }
    fn first_active(&self, s: &[ScopeKey]) -> Result<Option<BlockEntry>, StoreError> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        self.inner.first_active(s)
    }
    fn active_blocks(&self, t: Option<&str>) -> Result<Vec<BlockEntry>, StoreError> {
        self.inner.active_blocks(t)
    }
    fn active_temp_blocks(&self, t: Option<&str>) -> Result<Vec<BlockEntry>, StoreError> {
        self.inner.active_temp_blocks(t)
    }
}
