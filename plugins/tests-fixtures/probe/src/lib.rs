//! A rule that reports, in its match metadata, everything it reads through
//! the boundary: the typed accessors, `field`/`text` of configured keys, the
//! body, counter operations, history counts and its own configuration. The
//! host's tests compare it with the native semantics.
//!
//! With `read_undeclared = true` it reads a history scope it did not
//! declare and returns the error.

use sec_audit_plugin_sdk::params::StringList;
use sec_audit_plugin_sdk::serde_json::{json, Map, Value};
use sec_audit_plugin_sdk::{
    export_rules, ConfigError, Context, Event, HistoryContext, HistoryQuery, PluginConfig,
    PluginMatch, PluginRule, RuleError,
};

struct Probe {
    keys: Vec<String>,
    read_undeclared: bool,
    history: HistoryContext,
}

impl PluginRule for Probe {
    fn name(&self) -> &str {
        "probe"
    }
    fn severity(&self) -> u8 {
        3
    }
    fn safe_for_enforcement(&self) -> bool {
        true
    }
    fn history_context(&self) -> Option<&HistoryContext> {
        Some(&self.history)
    }
    fn history_attributes(
        &self,
        event: &Event<'_>,
        _ctx: &Context<'_>,
    ) -> Result<Option<Map<String, Value>>, RuleError> {
        let mut m = Map::new();
        m.insert("path".into(), Value::String(event.path().into_owned()));
        Ok(Some(m))
    }
    fn evaluate(
        &self,
        event: &Event<'_>,
        ctx: &Context<'_>,
    ) -> Result<Option<PluginMatch>, RuleError> {
        if self.read_undeclared {
            ctx.history.count("session", &HistoryQuery::default())?;
        }
        let mut fields = Map::new();
        let mut texts = Map::new();
        for k in &self.keys {
            fields.insert(k.clone(), event.field(k).unwrap_or(Value::Null));
            texts.insert(k.clone(), Value::String(event.text(k).into_owned()));
        }
        let c = &ctx.counters;
        let incr_first = c.incr("probe:k", 2, Some(10));
        let incr_second = c.incr("probe:k", 3, Some(10));
        c.set("probe:s", 7, None);
        let set_read = c.get_int("probe:s", -1);
        c.delete("probe:s");
        let after_delete = c.get_int("probe:s", -1);
        c.expire("probe:k", 100);
        let rows = ctx.history.events("ip", &HistoryQuery::default())?;
        let paths: Vec<Value> = rows
            .iter()
            .map(|r| r.field("rule_attrs.probe.path").unwrap_or(Value::Null))
            .collect();
        let newest_recorded_at = rows.get(0).map(|r| r.recorded_at());
        let types = ["http.response.success"];
        let typed = HistoryQuery {
            event_types: Some(&types),
            limit: Some(1),
            ..Default::default()
        };
        let meta = json!({
            "event_type": event.event_type(),
            "request_id": event.request_id(),
            "srcip": event.srcip(),
            "user_id": event.user_id(),
            "session_id": event.session_id(),
            "method": event.method(),
            "path": event.path(),
            "url": event.url(),
            "route_pattern": event.route_pattern(),
            "route_name": event.route_name(),
            "status_code": event.status_code(),
            "body": event.body().map(Value::Object),
            "body_amount": event.body_field("amount"),
            "fields": fields,
            "texts": texts,
            "now": ctx.now,
            "incr_first": incr_first,
            "incr_second": incr_second,
            "set_read": set_read,
            "after_delete": after_delete,
            "history_ip_count": rows.len(),
            "history_paths": paths,
            "history_newest_recorded_at": newest_recorded_at,
            "history_user_count": ctx.history.count("user", &HistoryQuery::default())?,
            "history_typed_limited": ctx.history.count("ip", &typed)?,
            "config": Value::Object(ctx.config.clone()),
        });
        let Value::Object(meta) = meta else {
            return Err("metadata is not an object".into());
        };
        Ok(Some(
            PluginMatch::new(self, "probe")
                .with_subject("probe-subject")
                .with_tags(["probe"])
                .with_metadata(meta),
        ))
    }
}

/// `[rules.config]`.
#[derive(Default, sec_audit_plugin_sdk::serde::Deserialize)]
#[serde(crate = "sec_audit_plugin_sdk::serde", deny_unknown_fields, default)]
struct Params {
    keys: StringList,
    read_undeclared: bool,
}

fn make_rules(config: &PluginConfig) -> Result<Vec<Box<dyn PluginRule>>, ConfigError> {
    let p: Params = config.deserialize("probe")?;
    let (keys, read_undeclared) = (p.keys.0, p.read_undeclared);
    Ok(vec![Box::new(Probe {
        keys,
        read_undeclared,
        history: HistoryContext::new(["ip", "user"])
            .window_seconds(100.0)
            .max_events(5),
    })])
}

export_rules!(make_rules);
