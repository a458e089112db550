//! A rule that panics in `evaluate` (and in `history_attributes`), to prove
//! the host isolates it. With `panic_in_factory = true` the factory itself
//! panics.

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

fn make_rules(config: &PluginConfig) -> Result<Vec<Box<dyn PluginRule>>, ConfigError> {
    let p = config.params("panicking");
    if p.bool("panic_in_factory", false)? {
        panic!("deliberate panic in the factory");
    }
    let event_types = p.string_list("event_types")?.unwrap_or_default();
    p.finish()?;
    Ok(vec![Box::new(Panicking { event_types })])
}

export_rules!(make_rules);
