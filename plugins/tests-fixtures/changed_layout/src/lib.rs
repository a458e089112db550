//! A harmless rule built against a build of the SDK whose match type has another layout (feature test-changed-layout). The host must refuse to load it.

use sec_audit_plugin_sdk::{
    export_rules, ConfigError, Context, Event, PluginConfig, PluginMatch, PluginRule, RuleError,
};

struct Harmless;

impl PluginRule for Harmless {
    fn name(&self) -> &str {
        "changed_layout"
    }
    fn severity(&self) -> u8 {
        5
    }
    fn evaluate(
        &self,
        _event: &Event<'_>,
        _ctx: &Context<'_>,
    ) -> Result<Option<PluginMatch>, RuleError> {
        Ok(Some(PluginMatch::new(self, "should never run")))
    }
}

fn make_rules(_config: &PluginConfig) -> Result<Vec<Box<dyn PluginRule>>, ConfigError> {
    Ok(vec![Box::new(Harmless)])
}

export_rules!(make_rules);
