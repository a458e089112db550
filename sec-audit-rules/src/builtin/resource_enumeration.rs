//! `resource_enumeration`: one source IP touching many distinct paths under
//! one route template (walking `/accounts/{id}/` through ids).
//!
//! The history summary keeps only the collapsed route, so the rule stores
//! its own `{route, path}` with each event through `history_attributes` and
//! counts distinct concrete paths under the same route per IP.

use std::borrow::Cow;

use sec_audit_core::{AuditEvent, RuleAttrs};
use serde_json::{Map, Value};

use serde::Deserialize;

use super::{Common, FromParams, HTTP_RESPONSE_TYPES};
use crate::config::{ConfigError, Decision, Number, Seconds, Severity, StringList};
use crate::history::HistoryQuery;
use crate::rule::{HistoryContext, Match, Rule, RuleContext, RuleError};
use crate::state::HistoryRow;

#[derive(Debug, Clone)]
pub struct ResourceEnumeration {
    common: Common,
    threshold: f64,
    context: HistoryContext,
    event_types: Vec<String>,
}

/// `resource_enumeration`'s parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResourceEnumerationParams {
    pub threshold: Number,
    pub window_seconds: Seconds,
    pub severity: Severity,
    pub message: String,
    pub tags: StringList,
    pub decision: Decision,
}

impl Default for ResourceEnumerationParams {
    fn default() -> Self {
        ResourceEnumerationParams {
            threshold: Number(20.0),
            window_seconds: Seconds(300),
            severity: Severity(7),
            message: "Many distinct resources accessed under one route".into(),
            tags: StringList::of(&["http", "enumeration"]),
            decision: Decision(None),
        }
    }
}

impl FromParams for ResourceEnumeration {
    type Params = ResourceEnumerationParams;
    fn from_params(name: &str, p: ResourceEnumerationParams) -> Result<Self, ConfigError> {
        let threshold = p.threshold.0;
        // Distinct paths are counted over at most the history ceiling's
        // rows: a higher threshold could never be reached (and used to
        // lift the row cap, making every read scan an unbounded history).
        if threshold > HistoryContext::MAX_EVENTS_CEILING as f64 {
            return Err(ConfigError::bad(
                name,
                "threshold",
                format!(
                    "{threshold} can never be reached: distinct paths are counted over at most {} history rows per ip",
                    HistoryContext::MAX_EVENTS_CEILING
                ),
            ));
        }
        let window = p.window_seconds.0;
        // Enough rows to see `threshold` distinct paths (saturating cast).
        let max_events = (threshold.ceil() as usize).max(HistoryContext::DEFAULT_MAX_EVENTS);
        Ok(ResourceEnumeration {
            common: Common::new(name, p.severity, p.message, p.tags, p.decision),
            threshold,
            context: HistoryContext::new(["ip"])
                .event_types(HTTP_RESPONSE_TYPES)
                .window_seconds(window as f64)
                .max_events(max_events),
            event_types: HTTP_RESPONSE_TYPES.iter().map(|t| t.to_string()).collect(),
        })
    }
}

/// This rule's attributes in a history row.
#[inline]
fn attrs_of<'r>(row: &'r HistoryRow, name: &str) -> Option<&'r RuleAttrs> {
    row.rule_attrs(name)
}

/// The number of distinct paths among `path` and the non-empty paths of
/// `rows` (this rule's rows, `name`, on `route`); `None` when it is known
/// to be below `threshold` without counting (fewer candidates than that).
fn distinct_paths<'r>(
    rows: impl Iterator<Item = &'r HistoryRow>,
    name: &str,
    route: &str,
    path: &str,
    threshold: f64,
) -> Option<usize> {
    let mut paths: Vec<&'r str> = Vec::new();
    for row in rows {
        if let Some(a) = attrs_of(row, name) {
            if a.get_str("route") == Some(route) {
                if let Some(p) = a.get_str("path").filter(|p| !p.is_empty()) {
                    paths.push(p);
                }
            }
        }
    }
    // At most one distinct path per row, and the event's own.
    if ((paths.len() + 1) as f64) < threshold {
        return None;
    }
    Some(count_distinct(path, &paths))
}

/// The number of distinct texts among `first` and `rest`, by sorting
/// references to them (no copy; paths are attacker-chosen, so no hash
/// whose collisions could be crafted: at most `n log n` comparisons for the
/// at most 1 000 rows a read returns).
fn count_distinct<'a>(first: &'a str, rest: &[&'a str]) -> usize {
    if rest.is_empty() {
        return 1;
    }
    let mut all: Vec<&str> = Vec::with_capacity(rest.len() + 1);
    all.push(first);
    all.extend_from_slice(rest);
    all.sort_unstable();
    all.dedup();
    all.len()
}

/// The route template (`route_pattern`, else `route`) and the concrete
/// path, when the event has both.
fn route_and_path(event: &AuditEvent) -> Option<(Cow<'_, str>, Cow<'_, str>)> {
    let mut route = event.text("route_pattern");
    if route.is_empty() {
        route = event.text("route");
    }
    if route.is_empty() {
        return None;
    }
    let path = event.path();
    if path.is_empty() {
        return None;
    }
    // History keeps these for every response: bound them (distinct values
    // stay distinct).
    Some((bounded(route), bounded(path)))
}

/// [`super::bounded_text`] of a text that may borrow from the event,
/// keeping the borrow (no copy) when the text is short.
fn bounded(text: Cow<'_, str>) -> Cow<'_, str> {
    match text {
        Cow::Borrowed(s) => super::bounded_text(s),
        Cow::Owned(s) => match super::bounded_text(&s) {
            Cow::Borrowed(_) => Cow::Owned(s),
            Cow::Owned(b) => Cow::Owned(b),
        },
    }
}

impl Rule for ResourceEnumeration {
    fn name(&self) -> &str {
        &self.common.name
    }
    fn severity(&self) -> u8 {
        self.common.severity
    }
    fn event_types(&self) -> &[String] {
        &self.event_types
    }
    fn history_context(&self) -> Option<&HistoryContext> {
        Some(&self.context)
    }

    fn evaluate(
        &self,
        event: &AuditEvent,
        ctx: &RuleContext<'_>,
    ) -> Result<Option<Match>, RuleError> {
        let Some((route, path)) = route_and_path(event) else {
            return Ok(None);
        };
        // Earlier rows of this rule on this route from this IP, looked at
        // in place (all at once: their paths are counted without copies).
        let name = self.common.name.as_str();
        let mut count = None;
        ctx.history
            .visit_all("ip", &HistoryQuery::default(), &mut |rows| {
                count = distinct_paths(rows, name, &route, &path, self.threshold);
            })?;
        let Some(count) = count.filter(|c| (*c as f64) >= self.threshold) else {
            return Ok(None);
        };
        let mut meta = Map::new();
        meta.insert("distinct_paths".into(), Value::from(count));
        meta.insert("route".into(), Value::String(route.into_owned()));
        Ok(Some(self.common.matched(self, event, ctx.now, meta)))
    }

    fn history_attributes(
        &self,
        event: &AuditEvent,
        _ctx: &RuleContext<'_>,
    ) -> Result<Option<Map<String, Value>>, RuleError> {
        let Some((route, path)) = route_and_path(event) else {
            return Ok(None);
        };
        let mut attrs = Map::new();
        attrs.insert("route".into(), Value::String(route.into_owned()));
        attrs.insert("path".into(), Value::String(path.into_owned()));
        Ok(Some(attrs))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::Kit;
    use crate::policy::ActionKind;
    use serde_json::{json, Value};

    const ROUTE: &str = "/api/accounts/{id}/";

    fn hit(ip: &str, route: &str, path: &str) -> Value {
        json!({"event_type": "http.response.success", "source.address": ip,
               "http.route": route, "url.path": path, "http.response.status_code": 200})
    }

    fn account(i: usize) -> String {
        format!("/api/accounts/{i}/")
    }

    #[test]
    fn twenty_distinct_paths_under_one_route_fire() {
        let kit = Kit::new(&[json!({"builtin": "resource_enumeration"})]);
        for i in 1..=19 {
            assert!(
                kit.eval(&hit("1.1.1.1", ROUTE, &account(i))).is_empty(),
                "{i} distinct paths"
            );
        }
        let m = kit.eval(&hit("1.1.1.1", ROUTE, &account(20)));
        assert_eq!(m.len(), 1, "the 20th distinct path, this event included");
        assert_eq!(m[0].rule_name, "resource_enumeration");
        assert_eq!(m[0].severity, 7);
        assert_eq!(m[0].metadata["distinct_paths"], json!(20));
        assert_eq!(m[0].metadata["route"], json!(ROUTE));
        assert_eq!(m[0].decision, None);
        assert_eq!(
            m[0].tags,
            vec!["http".to_string(), "enumeration".to_string()]
        );
        let m = kit.eval(&hit("1.1.1.1", ROUTE, &account(21)));
        assert_eq!(
            m[0].metadata["distinct_paths"],
            json!(21),
            "above the threshold"
        );
        let m = kit.eval(&hit("1.1.1.1", ROUTE, &account(3)));
        assert_eq!(
            m[0].metadata["distinct_paths"],
            json!(21),
            "a repeated path adds nothing"
        );
    }

    #[test]
    fn repeating_one_path_does_not_fire() {
        let kit = Kit::new(&[json!({"builtin": "resource_enumeration"})]);
        for _ in 0..60 {
            assert!(kit.eval(&hit("1.1.1.1", ROUTE, &account(7))).is_empty());
        }
        for i in 1..=18 {
            kit.eval(&hit("1.1.1.1", ROUTE, &account(i)));
        }
        // 18 distinct so far (7 among them); one more new path makes 19.
        assert!(kit.eval(&hit("1.1.1.1", ROUTE, &account(100))).is_empty());
        assert_eq!(kit.eval(&hit("1.1.1.1", ROUTE, &account(101))).len(), 1);
    }

    #[test]
    fn other_routes_other_ips_and_types_do_not_count() {
        let kit = Kit::new(&[json!({"builtin": "resource_enumeration", "threshold": 5})]);
        for i in 0..4 {
            kit.eval(&hit("1.1.1.1", ROUTE, &account(i)));
        }
        for i in 0..4 {
            assert!(kit
                .eval(&hit(
                    "1.1.1.1",
                    "/api/orders/{id}/",
                    &format!("/api/orders/{i}/")
                ))
                .is_empty());
        }
        for i in 0..10 {
            let other_ip = kit.eval(&hit("2.2.2.2", ROUTE, &format!("/api/accounts/x{i}/")));
            assert_eq!(
                other_ip.len(),
                usize::from(i >= 4),
                "2.2.2.2 counts only its own paths"
            );
            let login = json!({"event_type": "auth.login.failed", "srcip": "1.1.1.1",
                               "http.route": ROUTE, "url.path": format!("/api/accounts/y{i}/")});
            assert!(kit.eval(&login).is_empty(), "not an http.response event");
        }
        let m = kit.eval(&hit("1.1.1.1", ROUTE, &account(4)));
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].metadata["distinct_paths"], json!(5));
        let m = kit.eval(&hit("1.1.1.1", "/api/orders/{id}/", "/api/orders/99/"));
        assert_eq!(m[0].metadata["distinct_paths"], json!(5));
        assert_eq!(m[0].metadata["route"], json!("/api/orders/{id}/"));
    }

    #[test]
    fn every_response_type_counts_and_raw_route_keys_work() {
        let kit = Kit::new(&[json!({"builtin": "resource_enumeration", "threshold": 4})]);
        let types = [
            "http.response.success",
            "http.response.redirect",
            "http.response.client_error",
        ];
        for (i, t) in types.iter().enumerate() {
            kit.eval(&json!({"event_type": t, "srcip": "1.1.1.1", "route_pattern": ROUTE, "path": account(i)}));
        }
        let m = kit.eval(
            &json!({"event_type": "http.response.server_error", "srcip": "1.1.1.1",
                                 "route": ROUTE, "path": account(3)}),
        );
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn window_expiry_drops_old_rows() {
        let kit = Kit::new(&[
            json!({"builtin": "resource_enumeration", "threshold": 3, "window_seconds": 60}),
        ]);
        kit.eval(&hit("1.1.1.1", ROUTE, &account(1)));
        kit.clock.advance_secs(30.0);
        kit.eval(&hit("1.1.1.1", ROUTE, &account(2)));
        kit.clock.advance_secs(30.0);
        // The row from t0 is exactly `window` old: outside (recorded_at > now - window).
        assert!(kit.eval(&hit("1.1.1.1", ROUTE, &account(3))).is_empty());
        assert_eq!(kit.eval(&hit("1.1.1.1", ROUTE, &account(4))).len(), 1);
        kit.clock.advance_secs(61.0);
        assert!(
            kit.eval(&hit("1.1.1.1", ROUTE, &account(5))).is_empty(),
            "everything older expired"
        );
    }

    #[test]
    fn distinct_paths_are_counted_as_a_set_counts_them() {
        use std::collections::HashSet;
        let texts = ["/a/1", "/a/2", "", "/a/1", "é", "/a/2", "/a/10", "é", "/a/"];
        for first in texts {
            for len in 0..=texts.len() {
                let rest = &texts[..len];
                let set: HashSet<&str> =
                    std::iter::once(first).chain(rest.iter().copied()).collect();
                assert_eq!(
                    super::count_distinct(first, rest),
                    set.len(),
                    "{first} {rest:?}"
                );
            }
        }
    }

    #[test]
    fn events_without_route_or_path_are_ignored_and_not_recorded() {
        let kit = Kit::new(&[json!({"builtin": "resource_enumeration", "threshold": 2})]);
        let no_route =
            json!({"event_type": "http.response.success", "srcip": "1.1.1.1", "url.path": "/a"});
        let no_path =
            json!({"event_type": "http.response.success", "srcip": "1.1.1.1", "http.route": ROUTE});
        for _ in 0..3 {
            assert!(kit.eval(&no_route).is_empty());
            assert!(kit.eval(&no_path).is_empty());
        }
        assert!(kit.eval(&hit("1.1.1.1", ROUTE, &account(1))).is_empty());
        assert_eq!(kit.eval(&hit("1.1.1.1", ROUTE, &account(2))).len(), 1);
    }

    #[test]
    fn a_threshold_above_the_history_ceiling_is_an_error_naming_it() {
        use crate::rule::HistoryContext;
        let over = HistoryContext::MAX_EVENTS_CEILING + 1;
        let table = json!({"builtin": "resource_enumeration", "threshold": over});
        let err = crate::builtin::build(table.as_object().unwrap())
            .err()
            .expect("an unreachable threshold is refused");
        let text = err.to_string();
        assert!(
            text.contains("`threshold`") && text.contains("never be reached"),
            "{text}"
        );
        // At the ceiling it builds, and its rows stay within the ceiling.
        let table = json!({"builtin": "resource_enumeration",
                           "threshold": HistoryContext::MAX_EVENTS_CEILING});
        let rule = crate::builtin::build(table.as_object().unwrap()).unwrap();
        assert_eq!(
            rule.history_context().unwrap().max_events,
            HistoryContext::MAX_EVENTS_CEILING
        );
    }

    #[test]
    fn history_context_decision_and_attributes() {
        let kit = Kit::new(&[
            json!({"builtin": "resource_enumeration", "threshold": 250, "window_seconds": 120,
                                    "decision": "temp_block"}),
        ]);
        let rule = kit.engine.rules().next().unwrap().clone();
        let ctx = rule.history_context().unwrap();
        assert!(ctx.scopes.contains("ip") && ctx.scopes.len() == 1);
        assert_eq!(ctx.window_seconds, 120.0);
        assert_eq!(ctx.max_events, 250);
        assert_eq!(ctx.event_types.as_ref().unwrap().len(), 4);

        let kit = Kit::new(&[
            json!({"builtin": "resource_enumeration", "threshold": 1, "decision": "temp_block"}),
        ]);
        let m = kit.eval(&hit("1.1.1.1", ROUTE, &account(1)));
        assert_eq!(m[0].decision, Some(ActionKind::TempBlock));
        let rows = kit.engine.history().query(
            &crate::scope::ScopeKey::new("ip", "1.1.1.1"),
            0.0,
            None,
            10,
        );
        assert_eq!(rows.len(), 1);
        assert_eq!(
            rows[0]
                .get("rule_attrs")
                .map(|a| &a["resource_enumeration"]),
            Some(&json!({"route": ROUTE, "path": "/api/accounts/1/"}))
        );
    }
}
