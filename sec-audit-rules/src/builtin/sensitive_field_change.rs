//! `sensitive_field_change`: a model update that changed one of the
//! configured sensitive fields (an email, a role, a payout account).

use std::borrow::Cow;

use sec_audit_core::event::value_text;
use sec_audit_core::AuditEvent;
use serde_json::{Map, Value};

use serde::Deserialize;

use super::{Common, FromParams};
use crate::config::{ConfigError, Decision, Severity, StringList};
use crate::rule::{Match, Rule, RuleContext, RuleError};

#[derive(Debug, Clone)]
pub struct SensitiveFieldChange {
    common: Common,
    /// Lower-cased.
    fields: Vec<String>,
    /// Lower-cased; empty = every model.
    model_labels: Vec<String>,
    event_types: Vec<String>,
}

/// `sensitive_field_change`'s parameters (`fields` is required).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SensitiveFieldChangeParams {
    pub fields: Option<StringList>,
    pub model_labels: Option<StringList>,
    pub severity: Severity,
    pub message: String,
    pub tags: StringList,
    pub decision: Decision,
}

impl Default for SensitiveFieldChangeParams {
    fn default() -> Self {
        SensitiveFieldChangeParams {
            fields: None,
            model_labels: None,
            severity: Severity(7),
            message: "Sensitive model fields were changed".into(),
            tags: StringList::of(&["model", "sensitive-change"]),
            decision: Decision(None),
        }
    }
}

/// A list of non-blank strings, lower-cased.
fn lowered(rule: &str, key: &str, list: Vec<String>) -> Result<Vec<String>, ConfigError> {
    if list.iter().any(|s| s.trim().is_empty()) {
        return Err(ConfigError::bad(rule, key, "must not contain empty names"));
    }
    let mut out: Vec<String> = list.iter().map(|s| s.trim().to_lowercase()).collect();
    out.sort();
    out.dedup();
    Ok(out)
}

impl FromParams for SensitiveFieldChange {
    type Params = SensitiveFieldChangeParams;
    fn from_params(name: &str, p: SensitiveFieldChangeParams) -> Result<Self, ConfigError> {
        let fields = match p.fields {
            None => {
                return Err(ConfigError::MissingParameter {
                    rule: name.to_string(),
                    key: "fields".into(),
                })
            }
            Some(list) if list.0.is_empty() => {
                return Err(ConfigError::bad(
                    name,
                    "fields",
                    "must list at least one field",
                ))
            }
            Some(list) => lowered(name, "fields", list.0)?,
        };
        let model_labels = match p.model_labels {
            None => Vec::new(),
            Some(list) => lowered(name, "model_labels", list.0)?,
        };
        Ok(SensitiveFieldChange {
            common: Common::new(name, p.severity, p.message, p.tags, p.decision),
            fields,
            model_labels,
            event_types: vec!["model.update".into()],
        })
    }
}

impl SensitiveFieldChange {
    fn is_sensitive(&self, name: &str) -> bool {
        let name = name.trim();
        !name.is_empty() && self.fields.iter().any(|f| eq_lowered(name, f))
    }

    fn label_allowed(&self, label: &str) -> bool {
        self.model_labels.is_empty()
            || self
                .model_labels
                .iter()
                .any(|l| eq_lowered(label.trim(), l))
    }
}

/// Whether `text`, lower-cased, equals `lower` (already lower-cased),
/// without allocating.
fn eq_lowered(text: &str, lower: &str) -> bool {
    text.chars().flat_map(char::to_lowercase).eq(lower.chars())
}

impl Rule for SensitiveFieldChange {
    fn name(&self) -> &str {
        &self.common.name
    }
    fn severity(&self) -> u8 {
        self.common.severity
    }
    fn event_types(&self) -> &[String] {
        &self.event_types
    }

    fn evaluate(
        &self,
        event: &AuditEvent,
        ctx: &RuleContext<'_>,
    ) -> Result<Option<Match>, RuleError> {
        let label = event.text("model_label");
        if !self.label_allowed(&label) {
            return Ok(None);
        }
        let mut changed: Vec<Cow<'_, str>> = Vec::new();
        match event.field("changed_fields") {
            Some(Value::String(s)) if self.is_sensitive(s) => {
                changed.push(Cow::Borrowed(s.as_str()))
            }
            Some(Value::Array(items)) => {
                for item in items {
                    let name = value_text(Some(item));
                    if self.is_sensitive(&name) {
                        changed.push(name);
                    }
                }
            }
            _ => {}
        }
        if changed.is_empty() {
            return Ok(None);
        }
        changed.sort();
        changed.dedup();
        let mut meta = Map::new();
        meta.insert(
            "changed_fields".into(),
            Value::Array(
                changed
                    .into_iter()
                    .map(|c| Value::String(c.into_owned()))
                    .collect(),
            ),
        );
        meta.insert("model_label".into(), Value::String(label.into_owned()));
        let mut m = self.common.matched(self, event, ctx.now, meta);
        let object_id = event.text("object_id");
        if !object_id.trim().is_empty() {
            m = m.with_subject(object_id.into_owned());
        }
        Ok(Some(m))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::Kit;
    use crate::policy::ActionKind;
    use serde_json::{json, Value};

    fn update(label: &str, changed: Value) -> Value {
        json!({"event_type": "model.update", "model_label": label, "object_id": 42,
               "changed_fields": changed, "user.id": "7", "source.address": "1.1.1.1"})
    }

    #[test]
    fn matches_when_a_sensitive_field_changed() {
        let kit = Kit::new(&[
            json!({"builtin": "sensitive_field_change", "fields": ["email", "is_superuser"]}),
        ]);
        assert!(kit
            .eval(&update("auth.user", json!(["first_name"])))
            .is_empty());
        let m = kit.eval(&update(
            "auth.user",
            json!(["is_superuser", "first_name", "email"]),
        ));
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].rule_name, "sensitive_field_change");
        assert_eq!(m[0].severity, 7);
        assert_eq!(
            m[0].metadata["changed_fields"],
            json!(["email", "is_superuser"]),
            "sorted, sensitive only"
        );
        assert_eq!(m[0].metadata["model_label"], json!("auth.user"));
        assert_eq!(m[0].subject.as_deref(), Some("42"));
        assert_eq!(m[0].decision, None);
        assert_eq!(m[0].user_id, "7");
        assert_eq!(m[0].message, "Sensitive model fields were changed");
        assert_eq!(
            m[0].tags,
            vec!["model".to_string(), "sensitive-change".to_string()]
        );
    }

    #[test]
    fn comparison_is_case_insensitive_and_one_string_is_accepted() {
        let kit = Kit::new(&[
            json!({"builtin": "sensitive_field_change", "fields": ["Email", "RÔLE"],
                                    "model_labels": ["Auth.User"]}),
        ]);
        let m = kit.eval(&update("AUTH.USER", json!("EMAIL")));
        assert_eq!(m.len(), 1);
        assert_eq!(
            m[0].metadata["changed_fields"],
            json!(["EMAIL"]),
            "as given in the event"
        );
        assert_eq!(m[0].metadata["model_label"], json!("AUTH.USER"));
        let m = kit.eval(&update("auth.user", json!(["rôle", "email", "email"])));
        assert_eq!(
            m[0].metadata["changed_fields"],
            json!(["email", "rôle"]),
            "deduplicated"
        );
        assert!(kit.eval(&update("auth.user", json!("name"))).is_empty());
    }

    #[test]
    fn model_labels_restrict_and_absent_means_every_model() {
        let kit = Kit::new(&[
            json!({"builtin": "sensitive_field_change", "fields": "email",
                                    "model_labels": ["auth.user", "billing.account"]}),
        ]);
        assert_eq!(
            kit.eval(&update("billing.account", json!(["email"]))).len(),
            1
        );
        assert!(kit.eval(&update("blog.post", json!(["email"]))).is_empty());
        let no_label = json!({"event_type": "model.update", "changed_fields": ["email"]});
        assert!(
            kit.eval(&no_label).is_empty(),
            "a label list requires a label"
        );

        let any = Kit::new(&[
            json!({"builtin": "sensitive_field_change", "fields": ["email"], "model_labels": []}),
        ]);
        assert_eq!(any.eval(&update("blog.post", json!(["email"]))).len(), 1);
        let m = any.eval(&no_label);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].subject, None, "no object_id, no subject");
        assert_eq!(m[0].metadata["model_label"], json!(""));
    }

    #[test]
    fn only_model_updates_and_odd_changed_fields() {
        let kit = Kit::new(&[
            json!({"builtin": "sensitive_field_change", "fields": ["email", "1"],
                                    "decision": "persist_block"}),
        ]);
        let create = json!({"event_type": "model.create", "changed_fields": ["email"]});
        assert!(kit.eval(&create).is_empty());
        for odd in [
            json!(null),
            json!({"email": true}),
            json!([]),
            json!([null, {"a": 1}, ["email"]]),
            json!(5),
        ] {
            assert!(kit.eval(&update("x", odd.clone())).is_empty(), "{odd}");
        }
        let m = kit.eval(&update("x", json!([1, "Email"])));
        assert_eq!(m[0].metadata["changed_fields"], json!(["1", "Email"]));
        assert_eq!(m[0].decision, Some(ActionKind::PersistBlock));
    }
}
