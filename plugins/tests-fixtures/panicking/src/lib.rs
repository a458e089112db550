//! A rule that panics in `evaluate` (and in `history_attributes`), to prove
//! the host isolates it. With `panic_in_factory = true` the factory itself
//! panics.

use sec_audit_plugin_sdk::params::StringList;
use sec_audit_plugin_sdk::serde_json::{Map, Value};
use sec_audit_plugin_sdk::{
    export_rules, ConfigError, Context, Event, PluginConfig, PluginMatch, PluginRule, RuleError,
};

struct Panicking {
    event_types: Vec<String>,
}

impl PluginRule for Panicking {
    fn name(&self) -> &str {
        "panicking"
    }
    fn severity(&self) -> u8 {
        5
    }
    fn event_types(&self) -> &[String] {
        &self.event_types
    }
    fn evaluate(
        &self,
        event: &Event<'_>,
        _ctx: &Context<'_>,
    ) -> Result<Option<PluginMatch>, RuleError> {
        panic!("deliberate panic in evaluate on {}", event.event_type());
    }
    fn history_attributes(
        &self,
        _event: &Event<'_>,
        _ctx: &Context<'_>,
    ) -> Result<Option<Map<String, Value>>, RuleError> {
        panic!("deliberate panic in history_attributes");
    }
}

/// `[rules.config]`.
#[derive(Default, sec_audit_plugin_sdk::serde::Deserialize)]
#[serde(crate = "sec_audit_plugin_sdk::serde", deny_unknown_fields, default)]
struct Params {
    panic_in_factory: bool,
    event_types: StringList,
}

fn make_rules(config: &PluginConfig) -> Result<Vec<Box<dyn PluginRule>>, ConfigError> {
    let p: Params = config.deserialize("panicking")?;
    if p.panic_in_factory {
        panic!("deliberate panic in the factory");
    }
    let event_types = p.event_types.0;
    Ok(vec![Box::new(Panicking { event_types })])
}

export_rules!(make_rules);
