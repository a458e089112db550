//! Every step of the engine (`docs/rules.md`, "How rules run"), with test rules.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use sec_audit_core::{AuditEvent, ManualClock};
use sec_audit_rules::engine::IGNORED_PREFIXES;
use sec_audit_rules::{
    Engine, EngineError, EngineOptions, HistoryContext, HistoryQuery, Match, Rule, RuleContext,
    RuleError, ScopeDef, ScopeKey, ScopeRegistry,
};
use serde_json::{json, Map, Value};

#[derive(Default)]
struct Probe {
    name: String,
    severity: u8,
    types: Vec<String>,
    ingress: bool,
    context: Option<HistoryContext>,
    behavior: Behavior,
    calls: AtomicUsize,
    attrs: AttrBehavior,
}

#[derive(Default, Clone, Copy, PartialEq)]
enum Behavior {
    #[default]
    Match,
    Error,
    Panic,
    WrongName,
    BadSeverity,
    ReadUndeclared,
    CountHistory,
}

#[derive(Default, Clone, Copy, PartialEq)]
enum AttrBehavior {
    #[default]
    None,
    Some,
    Error,
    Panic,
}

impl Probe {
    fn new(name: &str, behavior: Behavior) -> Self {
        Probe {
            name: name.into(),
            severity: 5,
            behavior,
            ..Default::default()
        }
    }
}

impl Rule for Probe {
    fn name(&self) -> &str {
        &self.name
    }
    fn severity(&self) -> u8 {
        self.severity
    }
    fn event_types(&self) -> &[String] {
        &self.types
    }
    fn safe_for_enforcement(&self) -> bool {
        self.ingress
    }
    fn history_context(&self) -> Option<&HistoryContext> {
        self.context.as_ref()
    }
    fn evaluate(
        &self,
        event: &AuditEvent,
        ctx: &RuleContext<'_>,
    ) -> Result<Option<Match>, RuleError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let mut m = Match::new(self, event, ctx.now, format!("{} matched", self.name));
        match self.behavior {
            Behavior::Match => Ok(Some(m)),
            Behavior::Error => Err(RuleError::Failed("boom".into())),
            Behavior::Panic => panic!("probe panics"),
            Behavior::WrongName => {
                m.rule_name = "brute_force_login".into();
                Ok(Some(m))
            }
            Behavior::BadSeverity => {
                m.severity = 0;
                Ok(Some(m))
            }
            Behavior::ReadUndeclared => ctx
                .history
                .count("user", &HistoryQuery::default())
                .map(|_| Some(m)),
            Behavior::CountHistory => {
                let n = ctx.history.count("ip", &HistoryQuery::default())?;
                let mut meta = Map::new();
                meta.insert("seen".into(), Value::from(n));
                Ok(Some(m.with_metadata(meta)))
            }
        }
    }
    fn history_attributes(
        &self,
        _e: &AuditEvent,
        _c: &RuleContext<'_>,
    ) -> Result<Option<Map<String, Value>>, RuleError> {
        match self.attrs {
            AttrBehavior::None => Ok(None),
            AttrBehavior::Some => {
                let mut m = Map::new();
                m.insert("k".into(), json!("v"));
                Ok(Some(m))
            }
            AttrBehavior::Error => Err(RuleError::Failed("attrs".into())),
            AttrBehavior::Panic => panic!("attrs panic"),
        }
    }
}

fn ev(v: Value) -> AuditEvent {
    AuditEvent::from_attributes(v.as_object().cloned().unwrap()).unwrap()
}

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::at_secs(1000.0))
}

fn names(ms: &[Match]) -> Vec<&str> {
    ms.iter().map(|m| m.rule_name.as_str()).collect()
}

#[test]
fn step1_enforcement_and_rule_events_return_nothing() {
    let p = Arc::new(Probe::new("p", Behavior::Match));
    let e = Engine::builder().rule(p.clone()).build().unwrap();
    for prefix in IGNORED_PREFIXES {
        assert!(e
            .evaluate(&ev(json!({"event_type": format!("{prefix}x")})), false)
            .unwrap()
            .is_empty());
    }
    assert_eq!(p.calls.load(Ordering::SeqCst), 0);
    assert_eq!(
        e.evaluate(&ev(json!({"event_type": "audit.other"})), false)
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn step2_summary_failure_fails_open_or_fails() {
    let mut scopes = ScopeRegistry::builtin();
    scopes
        .add(ScopeDef::custom("tenant", false, |_| {
            panic!("extractor bug")
        }))
        .unwrap();
    let open = Engine::builder()
        .scopes(scopes.clone())
        .rule(Arc::new(Probe::new("p", Behavior::Match)))
        .build()
        .unwrap();
    assert!(open
        .evaluate(&ev(json!({"event_type": "x"})), false)
        .unwrap()
        .is_empty());
    let closed = Engine::builder()
        .scopes(scopes)
        .options(EngineOptions {
            fail_open: false,
            ..EngineOptions::default()
        })
        .rule(Arc::new(Probe::new("p", Behavior::Match)))
        .build()
        .unwrap();
    assert_eq!(
        closed.evaluate(&ev(json!({"event_type": "x"})), false),
        Err(EngineError::SummaryFailed)
    );
}

#[test]
fn step3_filters_by_ingress_safety_and_event_types_in_registration_order() {
    let mut typed = Probe::new("typed", Behavior::Match);
    typed.types = vec!["auth.login.failed".into()];
    let mut safe = Probe::new("safe", Behavior::Match);
    safe.ingress = true;
    let e = Engine::builder()
        .rule(Arc::new(Probe::new("first", Behavior::Match)))
        .rule(Arc::new(typed))
        .rule(Arc::new(safe))
        .build()
        .unwrap();
    let login = ev(json!({"event_type": "auth.login.failed"}));
    assert_eq!(
        names(&e.evaluate(&login, false).unwrap()),
        vec!["first", "typed", "safe"]
    );
    assert_eq!(
        names(
            &e.evaluate(&ev(json!({"event_type": "other"})), false)
                .unwrap()
        ),
        vec!["first", "safe"]
    );
    assert_eq!(names(&e.evaluate(&login, true).unwrap()), vec!["safe"]);
}

#[test]
fn event_types_match_the_same_whether_interned_or_not() {
    // Contract types only (matched by id), a custom type, and a mix.
    let lists: [&[&str]; 4] = [
        &["auth.login.failed", "model.update"],
        &["custom.thing"],
        &["custom.thing", "model.update"],
        &[],
    ];
    let events = [
        "auth.login.failed",
        "model.update",
        "model.create",
        "custom.thing",
        "custom.other",
        "auth.login.failed ",
    ];
    let mut b = Engine::builder();
    for (i, list) in lists.iter().enumerate() {
        let mut p = Probe::new(&format!("p{i}"), Behavior::Match);
        p.types = list.iter().map(|t| t.to_string()).collect();
        b = b.rule(Arc::new(p));
    }
    let e = b.build().unwrap();
    for t in events {
        let want: Vec<String> = lists
            .iter()
            .enumerate()
            .filter(|(_, l)| l.is_empty() || l.contains(&t))
            .map(|(i, _)| format!("p{i}"))
            .collect();
        let matches = e.evaluate(&ev(json!({ "event_type": t })), false).unwrap();
        assert_eq!(names(&matches), want, "{t}");
    }
}

#[test]
fn step3_errors_panics_and_invalid_matches_are_isolated_and_counted() {
    let e = Engine::builder()
        .rule(Arc::new(Probe::new("err", Behavior::Error)))
        .rule(Arc::new(Probe::new("panics", Behavior::Panic)))
        .rule(Arc::new(Probe::new("impersonates", Behavior::WrongName)))
        .rule(Arc::new(Probe::new("zero", Behavior::BadSeverity)))
        .rule(Arc::new(Probe::new("undeclared", Behavior::ReadUndeclared)))
        .rule(Arc::new(Probe::new("ok", Behavior::Match)))
        .build()
        .unwrap();
    let out = e
        .evaluate(&ev(json!({"event_type": "x", "srcip": "1.1.1.1"})), false)
        .unwrap();
    assert_eq!(names(&out), vec!["ok"]);
    assert_eq!(e.rule_failures(), 5);
}

#[test]
fn step3_rule_failure_on_the_ingress_pass_follows_fail_open() {
    let mut bad = Probe::new("bad", Behavior::Panic);
    bad.ingress = true;
    let bad = Arc::new(bad);
    let open = Engine::builder().rule(bad.clone()).build().unwrap();
    assert!(open
        .evaluate(&ev(json!({"event_type": "x"})), true)
        .unwrap()
        .is_empty());
    let closed = Engine::builder()
        .rule(bad)
        .options(EngineOptions {
            fail_open: false,
            ..EngineOptions::default()
        })
        .build()
        .unwrap();
    assert!(matches!(
        closed.evaluate(&ev(json!({"event_type": "x"})), true),
        Err(EngineError::RuleFailed { ref rule, kind: "rule_panicked" }) if rule == "bad"
    ));
    // On egress a failure never fails the pass, whatever fail_open says.
    assert!(closed
        .evaluate(&ev(json!({"event_type": "x"})), false)
        .is_ok());
}

#[test]
fn step3_history_attribute_failures_never_drop_the_match() {
    let mut a = Probe::new("a", Behavior::Match);
    a.attrs = AttrBehavior::Error;
    a.context = Some(HistoryContext::new(["ip"]));
    let mut b = Probe::new("b", Behavior::Match);
    b.attrs = AttrBehavior::Panic;
    let e = Engine::builder()
        .rule(Arc::new(a))
        .rule(Arc::new(b))
        .build()
        .unwrap();
    assert_eq!(
        names(
            &e.evaluate(&ev(json!({"event_type": "x", "srcip": "1.1.1.1"})), false)
                .unwrap()
        ),
        vec!["a", "b"]
    );
}

#[test]
fn step4_egress_appends_summary_with_rule_attrs_and_ingress_does_not() {
    let c = clock();
    let mut counter = Probe::new("counter", Behavior::CountHistory);
    counter.context = Some(HistoryContext::new(["ip"]).window_seconds(60.0));
    counter.attrs = AttrBehavior::Some;
    counter.ingress = true;
    let e = Engine::builder()
        .clock(c.clone())
        .rule(Arc::new(counter))
        .build()
        .unwrap();
    let event =
        ev(json!({"event_type": "x", "srcip": "1.1.1.1", "password": "p", "request_id": "r1"}));
    let seen = |ms: Vec<Match>| ms[0].metadata["seen"].as_u64().unwrap();
    assert_eq!(
        seen(e.evaluate(&event, false).unwrap()),
        0,
        "the current event is appended after rules ran"
    );
    assert_eq!(seen(e.evaluate(&event, false).unwrap()), 1);
    assert_eq!(seen(e.evaluate(&event, true).unwrap()), 2);
    assert_eq!(
        seen(e.evaluate(&event, true).unwrap()),
        2,
        "the ingress pass never appends"
    );
    let rows = e
        .history()
        .query(&ScopeKey::new("ip", "1.1.1.1"), 0.0, None, 10);
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["rule_attrs"], json!({"counter": {"k": "v"}}));
    assert_eq!(rows[0]["recorded_at"], json!(1000.0));
    assert_eq!(rows[0]["request_id"], json!("r1"));
    assert!(rows[0].get("password").is_none());
    c.advance_secs(60.0);
    assert_eq!(
        seen(e.evaluate(&event, false).unwrap()),
        0,
        "rows at or before now - window are not returned"
    );
}

#[test]
fn builder_rejects_bad_registrations() {
    let dup = Engine::builder()
        .rule(Arc::new(Probe::new("a", Behavior::Match)))
        .rule(Arc::new(Probe::new("a", Behavior::Match)))
        .build();
    assert_eq!(dup.unwrap_err(), EngineError::DuplicateRule("a".into()));
    assert_eq!(
        Engine::builder()
            .rule(Arc::new(Probe::new("", Behavior::Match)))
            .build()
            .unwrap_err(),
        EngineError::EmptyRuleName
    );
    let mut sev = Probe::new("s", Behavior::Match);
    sev.severity = 11;
    assert!(matches!(
        Engine::builder().rule(Arc::new(sev)).build(),
        Err(EngineError::BadSeverity { .. })
    ));
    let mut ctx = Probe::new("c", Behavior::Match);
    ctx.context = Some(HistoryContext::new(["nope"]));
    assert!(matches!(
        Engine::builder().rule(Arc::new(ctx)).build(),
        Err(EngineError::BadHistoryContext { .. })
    ));
    let mut zero = Probe::new("z", Behavior::Match);
    zero.context = Some(HistoryContext::new(["ip"]).window_seconds(0.0));
    assert!(matches!(
        Engine::builder().rule(Arc::new(zero)).build(),
        Err(EngineError::BadHistoryContext { .. })
    ));
    // Rows per history key have a hard ceiling whatever a rule asks.
    let mut huge = Probe::new("h", Behavior::Match);
    huge.context =
        Some(HistoryContext::new(["ip"]).max_events(HistoryContext::MAX_EVENTS_CEILING + 1));
    let err = Engine::builder().rule(Arc::new(huge)).build().unwrap_err();
    assert!(
        matches!(err, EngineError::BadHistoryContext { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("ceiling"), "{err}");
    let mut at = Probe::new("a", Behavior::Match);
    at.context = Some(HistoryContext::new(["ip"]).max_events(HistoryContext::MAX_EVENTS_CEILING));
    assert!(Engine::builder().rule(Arc::new(at)).build().is_ok());
}

#[test]
fn engine_is_shareable_across_threads() {
    let e = Arc::new(
        Engine::builder()
            .rule(Arc::new(Probe::new("p", Behavior::Match)))
            .build()
            .unwrap(),
    );
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let e = e.clone();
            std::thread::spawn(move || {
                for _ in 0..500 {
                    let out = e
                        .evaluate(
                            &ev(json!({"event_type": "x", "srcip": format!("10.0.0.{i}")})),
                            false,
                        )
                        .unwrap();
                    assert_eq!(out.len(), 1);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

/// Records what the engine reports, in order.
#[derive(Default)]
struct Seen(std::sync::Mutex<Vec<String>>);

impl sec_audit_rules::EvaluationObserver for Seen {
    fn pass_started(&self, event: &AuditEvent, enforcement_only: bool) {
        self.push(format!(
            "pass {} ingress={enforcement_only}",
            event.event_type()
        ));
    }
    fn rule_skipped(&self, rule: &str, reason: sec_audit_rules::SkipReason) {
        self.push(format!("skip {rule} {reason:?}"));
    }
    fn rule_started(&self, rule: &str) {
        self.push(format!("start {rule}"));
    }
    fn rule_finished(&self, rule: &str, outcome: sec_audit_rules::RuleOutcome<'_>) {
        let o = match outcome {
            sec_audit_rules::RuleOutcome::Matched(m) => format!("matched {}", m.rule_name),
            sec_audit_rules::RuleOutcome::NoMatch => "no match".into(),
            sec_audit_rules::RuleOutcome::Failed(kind) => format!("failed {kind}"),
        };
        self.push(format!("finish {rule} {o}"));
    }
}

impl Seen {
    fn push(&self, s: String) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(s);
    }
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

#[test]
fn an_observer_sees_every_rule_skipped_run_matched_or_failed_in_order() {
    let seen = Arc::new(Seen::default());
    let mut typed = Probe::new("typed", Behavior::Match);
    typed.types = vec!["other.type".into()];
    let mut ingress = Probe::new("ingress", Behavior::Match);
    ingress.ingress = true;
    let engine = Engine::builder()
        .clock(Arc::new(ManualClock::new(0)))
        .rule(Arc::new(Probe::new("matches", Behavior::Match)))
        .rule(Arc::new(typed))
        .rule(Arc::new(Probe::new("fails", Behavior::Error)))
        .rule(Arc::new(Probe::new("panics", Behavior::Panic)))
        .rule(Arc::new(ingress))
        .observer(seen.clone())
        .build()
        .expect("engine builds");
    let event = AuditEvent::new("some.type", Map::new()).expect("event");
    let matches = engine.evaluate(&event, false).expect("egress pass");
    assert_eq!(matches.len(), 2);
    assert_eq!(
        seen.take(),
        [
            "pass some.type ingress=false",
            "start matches",
            "finish matches matched matches",
            "skip typed EventType",
            "start fails",
            "finish fails failed rule_failed",
            "start panics",
            "finish panics failed rule_panicked",
            "start ingress",
            "finish ingress matched ingress",
        ]
    );
    engine.evaluate(&event, true).expect("ingress pass");
    assert_eq!(
        seen.take(),
        [
            "pass some.type ingress=true",
            "skip matches NotIngressSafe",
            "skip typed NotIngressSafe",
            "skip fails NotIngressSafe",
            "skip panics NotIngressSafe",
            "start ingress",
            "finish ingress matched ingress",
        ]
    );
    // Ignored event types start no pass.
    let own = AuditEvent::new(format!("{}x", IGNORED_PREFIXES[1]), Map::new()).expect("event");
    engine.evaluate(&own, false).expect("ignored");
    assert!(seen.take().is_empty());
}
