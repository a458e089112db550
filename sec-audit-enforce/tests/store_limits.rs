//! A block the stores refuse (a scope value that cannot be stored) is a
//! failure the enforcer reports — `Applied::errors`, kind
//! `invalid_request` — never a silent success; the other scopes of the
//! match are still blocked.

mod common;

use common::{event, Harness};
use sec_audit_enforce::{BlockApiError, ManualBlock};
use serde_json::json;

const SENSITIVE: &str =
    "enabled = true\n[[rules]]\nbuiltin = \"sensitive_field_change\"\nfields = [\"password\"]";

#[test]
fn a_user_id_that_cannot_be_stored_is_a_counted_block_failure() {
    let h = Harness::new(SENSITIVE);
    for bad in ["u".repeat(256), "evil\0user".to_string()] {
        let ev = event(
            json!({"event_type": "model.update", "changed_fields": ["password"],
            "model_label": "auth.user", "user.id": bad, "session.id": "s7", "source.address": "192.0.2.7"}),
        );
        let matches = h.rt.engine().evaluate(&ev, false).expect("evaluate");
        assert_eq!(matches.len(), 1);
        let subject = h.rt.engine().scopes().extract(&ev);
        let applied = h.rt.enforcer().apply(&matches[0], &subject);
        let kinds: Vec<&str> = applied.errors.iter().map(|e| e.kind()).collect();
        assert_eq!(kinds, vec!["invalid_request"], "{bad:?}");
        let blocked: Vec<&str> = applied
            .blocks
            .iter()
            .map(|b| b.scope_type.as_str())
            .collect();
        assert_eq!(
            blocked,
            vec!["session"],
            "the storable scope is still blocked"
        );
    }
    // The limit itself is accepted.
    let ok = "u".repeat(255);
    let ev = event(
        json!({"event_type": "model.update", "changed_fields": ["password"],
        "model_label": "auth.user", "user.id": ok, "session.id": "s8"}),
    );
    assert_eq!(h.rt.handle_event(&ev), 2);

    // The block API refuses it alike.
    let err =
        h.rt.block(&ManualBlock {
            scope_type: "user".into(),
            value: "u".repeat(256),
            reason: "r".into(),
            ..ManualBlock::default()
        })
        .expect_err("refused");
    match err {
        BlockApiError::Store(e) => assert_eq!(e.kind(), "invalid_request"),
        other => panic!("{other:?}"),
    }
}
