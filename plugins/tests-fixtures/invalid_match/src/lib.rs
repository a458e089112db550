//! Rules that return invalid matches (severity 0, an empty rule name,
//! another rule's name), plus — with `export_empty_name = true` — a rule
//! whose own name is empty. One library exporting several rules, so it also
//! serves the `rule = "..."` selection tests.

use sec_audit_plugin_sdk::{
    export_rules, ConfigError, Context, Event, PluginConfig, PluginMatch, PluginRule, RuleError,
};

#[derive(Clone, Copy)]
enum Kind {
    SeverityZero,
    EmptyMatchName,
    WrongMatchName,
    EmptyRuleName,
}

struct Invalid {
    name: &'static str,
    kind: Kind,
}

impl PluginRule for Invalid {
    fn name(&self) -> &str {
        self.name
    }
    fn severity(&self) -> u8 {
        5
    }
    fn evaluate(
        &self,
        _event: &Event<'_>,
        _ctx: &Context<'_>,
    ) -> Result<Option<PluginMatch>, RuleError> {
        let m = PluginMatch::new(self, "invalid on purpose");
        Ok(Some(match self.kind {
            Kind::SeverityZero => m.with_severity(0),
            Kind::EmptyMatchName => PluginMatch {
                rule_name: String::new(),
                ..m
            },
            Kind::WrongMatchName => PluginMatch {
                rule_name: "brute_force_login".into(),
                ..m
            },
            Kind::EmptyRuleName => m,
        }))
    }
}

/// `[rules.config]`.
#[derive(Default, sec_audit_plugin_sdk::serde::Deserialize)]
#[serde(crate = "sec_audit_plugin_sdk::serde", deny_unknown_fields, default)]
struct Params {
    export_empty_name: bool,
}

fn make_rules(config: &PluginConfig) -> Result<Vec<Box<dyn PluginRule>>, ConfigError> {
    let p: Params = config.deserialize("invalid_match")?;
    let export_empty_name = p.export_empty_name;
    let mut rules: Vec<Box<dyn PluginRule>> = Vec::new();
    for (name, kind) in [
        ("severity_zero", Kind::SeverityZero),
        ("empty_match_name", Kind::EmptyMatchName),
        ("wrong_match_name", Kind::WrongMatchName),
    ] {
        if config.wants(name) {
            rules.push(Box::new(Invalid { name, kind }));
        }
    }
    if export_empty_name {
        rules.push(Box::new(Invalid {
            name: "",
            kind: Kind::EmptyRuleName,
        }));
    }
    Ok(rules)
}

export_rules!(make_rules);
