//! Differential check of the SDK's test host (`sec_audit_plugin_sdk::testing`)
//! against the real host: the same plugin, loaded from its `.so` into a real
//! engine and built in-process from the same source into a `TestHost`, fed
//! the same events at the same times, must return the same matches (and
//! fail on the same events). A test host that disagreed with the host would
//! let an author's unit tests pass for a rule that behaves otherwise in
//! production.

#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use sec_audit_core::{AuditEvent, ManualClock};
use sec_audit_plugin_host::{load_plugin_rules, PluginSpec};
use sec_audit_plugin_sdk::testing::TestHost;
use sec_audit_plugin_sdk::{ConfigError, Decision, PluginConfig, PluginMatch, PluginRule};
use sec_audit_rules::{ActionKind, Engine, Match};
use serde_json::{json, Map, Value};

/// One step: the time, the event, and whether it is an ingress pass.
pub struct Step {
    pub at: f64,
    pub event: Value,
    pub ingress: bool,
}

/// What a pass returned, comparably: the matches' rule-side fields, or a
/// failure.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Matches(Vec<Value>),
    Failed,
}

fn decision_name(d: Option<Decision>) -> Value {
    match d {
        None => Value::Null,
        Some(Decision::Observe) => json!("observe"),
        Some(Decision::Alert) => json!("alert"),
        Some(Decision::TempBlock) => json!("temp_block"),
        Some(Decision::PersistBlock) => json!("persist_block"),
        Some(Decision::Block) => json!("block"),
    }
}

fn from_plugin(m: &PluginMatch) -> Value {
    json!({"rule": m.rule_name, "severity": m.severity, "message": m.message,
           "decision": decision_name(m.decision), "subject": m.subject,
           "tags": m.tags, "metadata": Value::Object(m.metadata.clone())})
}

fn from_native(m: &Match) -> Value {
    json!({"rule": m.rule_name, "severity": m.severity, "message": m.message,
           "decision": m.decision.map(ActionKind::as_str), "subject": m.subject,
           "tags": m.tags, "metadata": Value::Object((*m.metadata).clone())})
}

/// Runs `steps` through the loaded library at `so` and through a test host
/// built by `factory`, both with `config`; returns both outcome lists.
pub fn run_both<F>(
    so: &Path,
    factory: F,
    config: Value,
    steps: &[Step],
) -> (Vec<Outcome>, Vec<Outcome>)
where
    F: FnOnce(&PluginConfig) -> Result<Vec<Box<dyn PluginRule>>, ConfigError>,
{
    let Value::Object(table) = config.clone() else {
        panic!("config is not an object");
    };
    let rules = load_plugin_rules(&PluginSpec::new(so).with_config(table))
        .unwrap_or_else(|e| panic!("{e}"));
    let clock = Arc::new(ManualClock::at_secs(steps.first().map_or(0.0, |s| s.at)));
    let mut builder = Engine::builder().clock(clock.clone());
    for r in rules {
        builder = builder.rule(r);
    }
    let engine = builder.build().unwrap_or_else(|e| panic!("{e}"));
    let mut host = TestHost::from_factory(factory, config).unwrap_or_else(|e| panic!("{e}"));

    let mut native = Vec::with_capacity(steps.len());
    let mut harness = Vec::with_capacity(steps.len());
    for step in steps {
        clock.set_secs(step.at);
        host.set_now(step.at);
        let attrs: Map<String, Value> = match &step.event {
            Value::Object(m) => m
                .get("attributes")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_else(|| m.clone()),
            other => panic!("not an object: {other}"),
        };
        let event = AuditEvent::from_attributes(attrs).unwrap_or_else(|e| panic!("{e}"));
        let failures = engine.rule_failures();
        let m = engine
            .evaluate(&event, step.ingress)
            .unwrap_or_else(|e| panic!("{e}"));
        native.push(if engine.rule_failures() > failures {
            Outcome::Failed
        } else {
            Outcome::Matches(m.iter().map(from_native).collect())
        });
        let h = if step.ingress {
            host.evaluate_ingress(&step.event)
        } else {
            host.evaluate(&step.event)
        };
        harness.push(match h {
            Ok(m) => Outcome::Matches(m.iter().map(from_plugin).collect()),
            Err(_) => Outcome::Failed,
        });
        // History as stored: the same scope keys, the same summaries.
        for key in engine.scopes().extract(&event) {
            let stored: Vec<Value> = engine
                .history()
                .query(&key, f64::NEG_INFINITY, None, usize::MAX)
                .iter()
                .map(|row| row.to_json_value())
                .collect();
            let kept: Vec<Value> = host
                .history(key.scope(), key.value())
                .into_iter()
                .map(Value::Object)
                .collect();
            assert_eq!(
                stored, kept,
                "history of {key} differs after {}",
                step.event
            );
        }
    }
    (native, harness)
}

/// Asserts both lists are equal, naming the first step that differs.
pub fn assert_same(native: &[Outcome], harness: &[Outcome], steps: &[Step]) {
    assert_eq!(native.len(), harness.len());
    for (i, (n, h)) in native.iter().zip(harness).enumerate() {
        assert_eq!(
            n, h,
            "step {i} differs ({}):\n  host:      {n:?}\n  test host: {h:?}",
            steps[i].event
        );
    }
}

/// The sample audit log's events, each at its record's time (seconds).
pub fn sample_steps(limit: usize) -> Vec<Step> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let text = std::fs::read_to_string(root.join("examples/sample-audit.jsonl"))
        .unwrap_or_else(|e| panic!("cannot read the sample log: {e}"));
    let mut now = 0.0f64;
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| {
            v.get("attributes")
                .and_then(|a| a.get("event_type"))
                .and_then(Value::as_str)
                .is_some_and(|t| !t.trim().is_empty())
        })
        .take(limit)
        .map(|v| {
            let t = v["timestamp"].as_i64().unwrap_or(0) as f64 / 1e9;
            now = now.max(t);
            Step {
                at: now,
                event: v,
                ingress: false,
            }
        })
        .collect()
}
