//! Measures the cost of calling a rule through the plugin boundary against
//! the same rule compiled natively, side by side (a plugin call must cost little more than a native one).
//!
//! ```text
//! cargo xtask plugins                      # release-built example plugins
//! cargo run --release -p sec-audit-plugin-host --example plugin_overhead [-- <plugins dir>]
//! ```
//!
//! Two measurements per rule: the rule's `evaluate` called directly with a
//! fixed context (the boundary's cost stands out), and a whole
//! `Engine::evaluate` (what a deployment pays per event).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use sec_audit_core::{AuditEvent, ManualClock};
use sec_audit_plugin_host::{load_plugin_rules, PluginSpec};
use sec_audit_rules::{
    Engine, HistoryContext, HistoryQuery, HistoryReader, HistoryStore, Match, MemoryCounters,
    MemoryHistory, Rule, RuleContext, RuleError, ScopeKey,
};
use serde_json::{json, Map, Value};

/// `repeated_not_found`, natively.
struct NativeRepeatedNotFound {
    threshold: i64,
    window: u64,
    types: Vec<String>,
    tags: Vec<String>,
}

impl Rule for NativeRepeatedNotFound {
    fn name(&self) -> &str {
        "repeated_not_found"
    }
    fn severity(&self) -> u8 {
        5
    }
    fn event_types(&self) -> &[String] {
        &self.types
    }
    fn evaluate(
        &self,
        event: &AuditEvent,
        ctx: &RuleContext<'_>,
    ) -> Result<Option<Match>, RuleError> {
        if event.status_code() != 404 {
            return Ok(None);
        }
        let ip = event.srcip();
        let ip = ip.trim();
        if ip.is_empty() {
            return Ok(None);
        }
        let count = ctx
            .counters
            .incr(&format!("repeated_not_found:{ip}"), 1, Some(self.window));
        if count < self.threshold {
            return Ok(None);
        }
        let mut meta = Map::new();
        meta.insert("not_found_count".into(), Value::from(count));
        meta.insert("window_seconds".into(), Value::from(self.window));
        let path = event.path();
        if !path.is_empty() {
            meta.insert("last_path".into(), Value::String(path.into_owned()));
        }
        Ok(Some(
            Match::new(
                self,
                event,
                ctx.now,
                "Repeated 404 responses from one source IP",
            )
            .with_tags(&self.tags)
            .with_metadata(meta),
        ))
    }
}

/// `credential_stuffing`, natively.
struct NativeCredentialStuffing {
    distinct: usize,
    types: Vec<String>,
    history: HistoryContext,
    row_key: String,
}

fn fingerprint(username: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in username.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

impl Rule for NativeCredentialStuffing {
    fn name(&self) -> &str {
        "credential_stuffing"
    }
    fn severity(&self) -> u8 {
        8
    }
    fn event_types(&self) -> &[String] {
        &self.types
    }
    fn history_context(&self) -> Option<&HistoryContext> {
        Some(&self.history)
    }
    fn history_attributes(
        &self,
        event: &AuditEvent,
        _ctx: &RuleContext<'_>,
    ) -> Result<Option<Map<String, Value>>, RuleError> {
        let name = event.text("user.name");
        if name.trim().is_empty() {
            return Ok(None);
        }
        let mut m = Map::new();
        m.insert("user_fp".into(), Value::String(fingerprint(name.trim())));
        Ok(Some(m))
    }
    fn evaluate(
        &self,
        event: &AuditEvent,
        ctx: &RuleContext<'_>,
    ) -> Result<Option<Match>, RuleError> {
        if event.srcip().trim().is_empty() {
            return Ok(None);
        }
        let name = event.text("user.name");
        let name = name.trim();
        if name.is_empty() {
            return Ok(None);
        }
        let mut seen = BTreeSet::new();
        seen.insert(fingerprint(name));
        let rows = ctx.history.events("ip", &HistoryQuery::default())?;
        for row in &rows {
            if let Some(Value::String(fp)) = row.lookup(&self.row_key) {
                seen.insert(fp.clone());
            }
        }
        if seen.len() < self.distinct {
            return Ok(None);
        }
        let mut meta = Map::new();
        meta.insert("distinct_usernames".into(), Value::from(seen.len()));
        meta.insert("failures_seen".into(), Value::from(rows.len() + 1));
        Ok(Some(
            Match::new(self, event, ctx.now, "Many distinct usernames").with_metadata(meta),
        ))
    }
}

fn ev(v: Value) -> Result<AuditEvent, String> {
    match v {
        Value::Object(m) => AuditEvent::from_attributes(m).map_err(|e| e.to_string()),
        _ => Err("not an object".into()),
    }
}

/// ns per call of `f` over `events`, best of `rounds`; the clock moves 601 s
/// between rounds, so counter windows restart.
fn time_per_call(
    rounds: usize,
    events: &[AuditEvent],
    clock: &ManualClock,
    mut f: impl FnMut(&AuditEvent),
) -> f64 {
    let mut best = f64::INFINITY;
    for _ in 0..rounds {
        clock.advance_secs(601.0);
        let start = Instant::now();
        for e in events {
            f(e);
        }
        let ns = start.elapsed().as_nanos() as f64 / events.len() as f64;
        best = best.min(ns);
    }
    best
}

fn direct(rule: &Arc<dyn Rule>, events: &[AuditEvent], history_rows: bool) -> f64 {
    let clock = Arc::new(ManualClock::at_secs(1_000_000.0));
    let counters = MemoryCounters::new(clock.clone());
    let history = MemoryHistory::new();
    let keys = [ScopeKey::new("ip", "203.0.113.1")];
    if history_rows {
        // 20 earlier failures from the IP, 5 distinct usernames.
        let retention = sec_audit_rules::HistoryRetention::default();
        for i in 0..20 {
            let mut row = Map::new();
            row.insert("event_type".into(), json!("auth.login.failed"));
            row.insert("recorded_at".into(), json!(999_900.0 + i as f64));
            row.insert(
                "rule_attrs".into(),
                json!({"credential_stuffing": {"user_fp": fingerprint(&format!("user{}", i % 5))}}),
            );
            history.append(
                &keys,
                999_900.0 + i as f64,
                Arc::new(row.into()),
                &retention,
            );
        }
    }
    let config = Map::new();
    let ctx = RuleContext {
        now: 1_000_000.0,
        counters: &counters,
        history: HistoryReader::new(&history, &keys, rule.history_context(), 1_000_000.0),
        config: &config,
    };
    time_per_call(5, events, &clock, |e| {
        let _ = std::hint::black_box(rule.evaluate(e, &ctx));
    })
}

fn through_engine(rule: &Arc<dyn Rule>, events: &[AuditEvent]) -> Result<f64, String> {
    let clock = Arc::new(ManualClock::at_secs(1_000_000.0));
    let engine = Engine::builder()
        .clock(clock.clone())
        .rule(Arc::clone(rule))
        .build()
        .map_err(|e| e.to_string())?;
    Ok(time_per_call(5, events, &clock, |e| {
        let _ = std::hint::black_box(engine.evaluate(e, false));
    }))
}

/// Runs `measure` on native and plugin alternately, three times each, and
/// reports the best of each (the machine's noise affects both alike).
fn compare(
    name: &str,
    what: &str,
    mut measure: impl FnMut(bool) -> Result<f64, String>,
) -> Result<(), String> {
    let (mut native, mut plugin) = (f64::INFINITY, f64::INFINITY);
    // One discarded pair warms the allocator and the caches.
    measure(false)?;
    measure(true)?;
    for _ in 0..3 {
        native = native.min(measure(false)?);
        plugin = plugin.min(measure(true)?);
    }
    report(name, what, native, plugin);
    Ok(())
}

fn report(name: &str, what: &str, native: f64, plugin: f64) {
    println!(
        "{name:<22} {what:<16} native {native:>8.0} ns   plugin {plugin:>8.0} ns   ratio {:.2}",
        plugin / native
    );
}

fn main() -> Result<(), String> {
    let dir = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/plugins"));
    let lib = |name: &str| {
        dir.join(format!(
            "{}{name}{}",
            std::env::consts::DLL_PREFIX,
            std::env::consts::DLL_SUFFIX
        ))
    };

    // repeated_not_found: realistic traffic — 99% of the 404s from 49 500
    // distinct benign IPs (2 each: never matching), 1% from 5 scanners (200
    // each: matching from their 10th on). The window restarts every round.
    let rnf_plugin = load_plugin_rules(&PluginSpec::new(lib("repeated_not_found")))
        .map_err(|e| e.to_string())?;
    let rnf_plugin = rnf_plugin.into_iter().next().ok_or("no rule")?;
    let rnf_native: Arc<dyn Rule> = Arc::new(NativeRepeatedNotFound {
        threshold: 10,
        window: 60,
        types: vec!["http.response.client_error".into()],
        tags: vec!["http".into(), "scan".into()],
    });
    let events: Vec<AuditEvent> = (0..100_000u32)
        .map(|i| {
            let ip = if i % 100 == 0 {
                format!("198.51.100.{}", (i / 100) % 5)
            } else {
                format!(
                    "10.{}.{}.{}",
                    (i / 2) / 62_500,
                    ((i / 2) / 250) % 250,
                    (i / 2) % 250
                )
            };
            ev(
                json!({"event_type": "http.response.client_error", "source.address": ip,
                      "http.response.status_code": 404, "url.path": format!("/missing/{i}")}),
            )
        })
        .collect::<Result<_, _>>()?;
    compare("repeated_not_found", "rule (mixed)", |p| {
        Ok(direct(
            if p { &rnf_plugin } else { &rnf_native },
            &events,
            false,
        ))
    })?;
    let quiet_plugin = load_plugin_rules(
        &PluginSpec::new(lib("repeated_not_found")).with_config(
            json!({"threshold": 1_000_000})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        ),
    )
    .map_err(|e| e.to_string())?
    .into_iter()
    .next()
    .ok_or("no rule")?;
    let quiet_native: Arc<dyn Rule> = Arc::new(NativeRepeatedNotFound {
        threshold: 1_000_000,
        window: 60,
        types: vec!["http.response.client_error".into()],
        tags: vec!["http".into(), "scan".into()],
    });
    compare("repeated_not_found", "rule (no match)", |p| {
        Ok(direct(
            if p { &quiet_plugin } else { &quiet_native },
            &events,
            false,
        ))
    })?;
    compare("repeated_not_found", "engine (mixed)", |p| {
        through_engine(if p { &rnf_plugin } else { &rnf_native }, &events)
    })?;

    // credential_stuffing: failed logins against 20 history rows.
    let cs_plugin = load_plugin_rules(&PluginSpec::new(lib("credential_stuffing")))
        .map_err(|e| e.to_string())?;
    let cs_plugin = cs_plugin.into_iter().next().ok_or("no rule")?;
    let cs_native: Arc<dyn Rule> = Arc::new(NativeCredentialStuffing {
        distinct: 10,
        types: vec!["auth.login.failed".into()],
        history: HistoryContext::new(["ip"])
            .event_types(["auth.login.failed"])
            .window_seconds(600.0),
        row_key: "rule_attrs.credential_stuffing.user_fp".into(),
    });
    let logins: Vec<AuditEvent> = (0..20_000)
        .map(|i| {
            ev(
                json!({"event_type": "auth.login.failed", "source.address": "203.0.113.1",
                      "user.name": format!("user{}", i % 5)}),
            )
        })
        .collect::<Result<_, _>>()?;
    compare("credential_stuffing", "rule", |p| {
        Ok(direct(
            if p { &cs_plugin } else { &cs_native },
            &logins,
            true,
        ))
    })?;
    let spread: Vec<AuditEvent> = (0..20_000)
        .map(|i| {
            ev(json!({"event_type": "auth.login.failed", "source.address": format!("10.1.{}.{}", (i / 250) % 40, i % 250),
                      "user.name": format!("user{}", i % 13)}))
        })
        .collect::<Result<_, _>>()?;
    compare("credential_stuffing", "engine", |p| {
        through_engine(if p { &cs_plugin } else { &cs_native }, &spread)
    })?;
    Ok(())
}
