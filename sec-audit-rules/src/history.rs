//! The scoped history reader a rule gets: bound to the current event's scope
//! keys and capped by the rule's declared history context.

use std::borrow::Cow;

use crate::rule::{HistoryContext, RuleError};
use crate::scope::ScopeKey;
use crate::state::{HistoryRow, HistoryStore};

/// Optional narrowing of a history read. Every field is intersected with, or
/// capped by, the rule's declared context.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistoryQuery<'q> {
    pub event_types: Option<&'q [String]>,
    /// Only rows with `recorded_at > since`.
    pub since: Option<f64>,
    pub limit: Option<usize>,
    pub window_seconds: Option<f64>,
}

/// What one read asks a store for: rows newer than this, of these types
/// (`None`: all), at most this many.
type Plan<'q> = (f64, Option<Cow<'q, [String]>>, usize);

/// Reads history for the scopes a rule declared, around the current event.
#[derive(Clone, Copy)]
pub struct HistoryReader<'a> {
    store: Option<&'a dyn HistoryStore>,
    keys: &'a [ScopeKey],
    context: Option<&'a HistoryContext>,
    now: f64,
}

impl<'a> HistoryReader<'a> {
    pub fn new(
        store: &'a dyn HistoryStore,
        keys: &'a [ScopeKey],
        context: Option<&'a HistoryContext>,
        now: f64,
    ) -> Self {
        HistoryReader {
            store: Some(store),
            keys,
            context,
            now,
        }
    }

    /// A reader for a rule with no history: every read fails.
    pub fn none(now: f64) -> Self {
        HistoryReader {
            store: None,
            keys: &[],
            context: None,
            now,
        }
    }

    /// What a read of `scope` asks the store for: the bound on
    /// `recorded_at`, the event types and the row limit; `None` when the
    /// read returns nothing.
    fn plan<'q>(&self, scope: &str, q: &'q HistoryQuery<'q>) -> Result<Option<Plan<'q>>, RuleError>
    where
        'a: 'q,
    {
        let ctx = self.context.ok_or(RuleError::NoHistoryContext)?;
        if !ctx.scopes.contains(scope) {
            return Err(RuleError::UndeclaredScope(scope.to_string()));
        }
        if self.store.is_none() {
            return Ok(None);
        }
        let window = q
            .window_seconds
            .filter(|w| *w > 0.0)
            .map_or(ctx.window_seconds, |w| w.min(ctx.window_seconds));
        let since = q
            .since
            .map_or(self.now - window, |s| s.max(self.now - window));
        let limit = q.limit.map_or(ctx.max_events, |l| l.min(ctx.max_events));
        let types: Option<Cow<'q, [String]>> = match (ctx.event_types.as_deref(), q.event_types) {
            (None, t) => t.map(Cow::Borrowed),
            (Some(d), None) => Some(Cow::Borrowed(d)),
            (Some(d), Some(t)) => Some(Cow::Owned(
                t.iter().filter(|x| d.contains(x)).cloned().collect(),
            )),
        };
        if limit == 0 || types.as_ref().is_some_and(|t| t.is_empty()) {
            return Ok(None);
        }
        Ok(Some((since, types, limit)))
    }

    /// Rows of `scope` for the current event, newest first.
    pub fn events(&self, scope: &str, q: &HistoryQuery<'_>) -> Result<Vec<HistoryRow>, RuleError> {
        let (Some((since, types, limit)), Some(store)) = (self.plan(scope, q)?, self.store) else {
            return Ok(Vec::new());
        };
        let types = types.as_deref();
        let mut rows: Vec<HistoryRow> = Vec::new();
        let mut sources = 0;
        for key in self.keys.iter().filter(|k| k.scope() == scope) {
            rows.extend(store.query(key, since, types, limit));
            sources += 1;
        }
        if sources > 1 {
            rows.sort_by(|a, b| recorded_at(b).total_cmp(&recorded_at(a)));
            rows.truncate(limit);
        }
        Ok(rows)
    }

    /// Calls `f` with each row [`HistoryReader::events`] would return, in
    /// the same order, without collecting them (the memory store hands its
    /// rows over in place). `f` must not read history itself.
    pub fn visit(
        &self,
        scope: &str,
        q: &HistoryQuery<'_>,
        f: &mut dyn FnMut(&HistoryRow),
    ) -> Result<(), RuleError> {
        self.visit_all(scope, q, &mut |rows| rows.for_each(&mut *f))
    }

    /// Calls `f` once with the rows [`HistoryReader::events`] would
    /// return, in the same order, all borrowed at once (the memory store
    /// hands its rows over in place). `f` must not read history itself.
    pub fn visit_all(
        &self,
        scope: &str,
        q: &HistoryQuery<'_>,
        f: &mut dyn FnMut(&mut dyn Iterator<Item = &HistoryRow>),
    ) -> Result<(), RuleError> {
        let (Some((since, types, limit)), Some(store)) = (self.plan(scope, q)?, self.store) else {
            f(&mut std::iter::empty());
            return Ok(());
        };
        let mut keys = self.keys.iter().filter(|k| k.scope() == scope);
        match (keys.next(), keys.next()) {
            (None, _) => f(&mut std::iter::empty()),
            (Some(key), None) => store.visit_all(key, since, types.as_deref(), limit, f),
            // Several keys of the scope: rows are merged by time first.
            (Some(_), Some(_)) => {
                let rows = self.events(scope, q)?;
                f(&mut rows.iter());
            }
        }
        Ok(())
    }

    /// The number of rows [`HistoryReader::events`] would return.
    pub fn count(&self, scope: &str, q: &HistoryQuery<'_>) -> Result<usize, RuleError> {
        self.events(scope, q).map(|r| r.len())
    }

    pub fn now(&self) -> f64 {
        self.now
    }
}

fn recorded_at(row: &HistoryRow) -> f64 {
    row.recorded_at()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{HistoryRetention, MemoryHistory};
    use serde_json::{json, Map, Value};
    use std::sync::Arc;

    fn row(t: f64, ty: &str) -> HistoryRow {
        let mut m = Map::new();
        m.insert("event_type".into(), json!(ty));
        m.insert("recorded_at".into(), Value::from(t));
        Arc::new(m.into())
    }

    fn fixture() -> (MemoryHistory, Vec<ScopeKey>) {
        let h = MemoryHistory::new();
        let ip = ScopeKey::new("ip", "1.1.1.1");
        let user = ScopeKey::new("user", "u");
        let ret = HistoryRetention {
            window_seconds: 10_000.0,
            max_events_per_key: 1000,
        };
        for i in 0..50 {
            let t = 1000.0 + i as f64 * 10.0;
            let ty = if i % 2 == 0 { "a" } else { "b" };
            h.append(&[ip.clone(), user.clone()], t, row(t, ty), &ret);
        }
        (h, vec![ip, user])
    }

    #[test]
    fn undeclared_scope_and_missing_context_are_errors() {
        let (h, keys) = fixture();
        let ctx = HistoryContext::new(["ip"]);
        let r = HistoryReader::new(&h, &keys, Some(&ctx), 1500.0);
        assert_eq!(
            r.events("user", &HistoryQuery::default()),
            Err(RuleError::UndeclaredScope("user".into()))
        );
        let r = HistoryReader::new(&h, &keys, None, 1500.0);
        assert_eq!(
            r.count("ip", &HistoryQuery::default()),
            Err(RuleError::NoHistoryContext)
        );
        assert_eq!(
            HistoryReader::none(0.0).count("ip", &HistoryQuery::default()),
            Err(RuleError::NoHistoryContext)
        );
    }

    #[test]
    fn window_limit_and_types_are_capped_by_the_declared_context() {
        let (h, keys) = fixture();
        // Rows at 1000..=1490 step 10; now = 1500.
        let ctx = HistoryContext::new(["ip"])
            .window_seconds(100.0)
            .max_events(3)
            .event_types(["a"]);
        let r = HistoryReader::new(&h, &keys, Some(&ctx), 1500.0);
        let rows = r.events("ip", &HistoryQuery::default()).unwrap();
        // Type-a rows newer than 1400 are 1420..1480 (four); the limit caps at 3.
        assert_eq!(rows.len(), 3);
        assert!(rows
            .iter()
            .all(|r| r.get("event_type") == Some(&json!("a"))));
        assert_eq!(rows[0].get("recorded_at"), Some(&json!(1480.0)));
        // A wider window or larger limit asked for is capped by the context.
        let wide = HistoryQuery {
            window_seconds: Some(10_000.0),
            limit: Some(1000),
            ..Default::default()
        };
        assert_eq!(r.count("ip", &wide).unwrap(), 3);
        let narrow = HistoryQuery {
            window_seconds: Some(40.0),
            ..Default::default()
        };
        // since = 1460 and rows must be strictly newer: only 1480.
        assert_eq!(r.count("ip", &narrow).unwrap(), 1);
        let types_b = ["b".to_string()];
        let q = HistoryQuery {
            event_types: Some(&types_b),
            ..Default::default()
        };
        assert_eq!(r.count("ip", &q).unwrap(), 0);
        let since = HistoryQuery {
            since: Some(1470.0),
            ..Default::default()
        };
        assert_eq!(r.count("ip", &since).unwrap(), 1);
    }
}
