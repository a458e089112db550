//! What a block may hold, defined once for every store (memory, Redis,
//! Postgres, tiered), so that the same [`NewBlock`] is accepted or refused
//! alike everywhere and stored with the same text.
//!
//! The bounds are the widths of the Postgres columns of `permanent_blocks`,
//! in characters (Postgres `varchar(n)` counts characters).
//!
//! - **Refused** (`StoreError::Invalid`, kind `invalid_request`): an empty
//!   scope type or value, a scope type over [`MAX_SCOPE_TYPE_CHARS`] or a
//!   value over [`MAX_SCOPE_VALUE_CHARS`] characters, a NUL character in
//!   either (Postgres text cannot hold NUL), a TTL of 0, a status code
//!   outside 100–599, an `ip` value with a `/` that is not a canonical
//!   range ([`crate::ranges`]). A scope is the ban key: it is never altered.
//! - **Normalised** (never refused): `reason` and `message` are cut to
//!   [`MAX_REASON_CHARS`] / [`MAX_MESSAGE_CHARS`] characters and
//!   `rule_name` to [`MAX_RULE_NAME_CHARS`], at a character boundary; NUL
//!   characters are removed from them and from every string (keys and
//!   values) of `metadata` (jsonb cannot hold `\u0000`).
//! - Revocation texts (`revoked_by`, the revocation reason) are cut the same
//!   way ([`MAX_REVOKED_BY_CHARS`], [`MAX_REASON_CHARS`]).

use std::borrow::Cow;

use serde_json::{Map, Value};

use crate::block::{NewBlock, StoreError};

/// `scope_type varchar(32)`.
pub const MAX_SCOPE_TYPE_CHARS: usize = 32;
/// `scope_value varchar(255)`.
pub const MAX_SCOPE_VALUE_CHARS: usize = 255;
/// `reason varchar(255)`, `revoked_reason varchar(255)`.
pub const MAX_REASON_CHARS: usize = 255;
/// `message varchar(255)`.
pub const MAX_MESSAGE_CHARS: usize = 255;
/// `rule_name varchar(128)`.
pub const MAX_RULE_NAME_CHARS: usize = 128;
/// `revoked_by varchar(128)`.
pub const MAX_REVOKED_BY_CHARS: usize = 128;

/// Whether a scope can be stored (and so banned) at all.
pub fn check_scope(scope_type: &str, value: &str) -> Result<(), StoreError> {
    if scope_type.is_empty() || value.is_empty() {
        return Err(StoreError::Invalid("empty scope type or value".into()));
    }
    if scope_type.contains('\0') || value.contains('\0') {
        return Err(StoreError::Invalid(
            "scope type or value contains a NUL character".into(),
        ));
    }
    if scope_type.chars().count() > MAX_SCOPE_TYPE_CHARS {
        return Err(StoreError::Invalid(format!(
            "scope type longer than {MAX_SCOPE_TYPE_CHARS} characters"
        )));
    }
    if value.chars().count() > MAX_SCOPE_VALUE_CHARS {
        return Err(StoreError::Invalid(format!(
            "scope value longer than {MAX_SCOPE_VALUE_CHARS} characters"
        )));
    }
    Ok(())
}

/// `s` without NUL characters, cut to at most `max_chars` characters (at a
/// character boundary).
pub fn bounded_text(s: &str, max_chars: usize) -> Cow<'_, str> {
    let cleaned: Cow<'_, str> = if s.contains('\0') {
        Cow::Owned(s.replace('\0', ""))
    } else {
        Cow::Borrowed(s)
    };
    match cleaned.char_indices().nth(max_chars) {
        None => cleaned,
        Some((i, _)) => Cow::Owned(cleaned[..i].to_string()),
    }
}

fn clean_value(v: &Value) -> Value {
    match v {
        Value::String(s) if s.contains('\0') => Value::String(s.replace('\0', "")),
        Value::Array(a) => Value::Array(a.iter().map(clean_value).collect()),
        Value::Object(m) => Value::Object(clean_map(m)),
        other => other.clone(),
    }
}

fn clean_map(m: &Map<String, Value>) -> Map<String, Value> {
    m.iter()
        .map(|(k, v)| (bounded_text(k, usize::MAX).into_owned(), clean_value(v)))
        .collect()
}

fn has_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(a) => a.iter().any(has_nul),
        Value::Object(m) => m.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

/// The one accept/refuse decision and normalisation every store applies to
/// a block before writing it (see the module documentation).
pub fn normalize(new: &NewBlock) -> Result<Cow<'_, NewBlock>, StoreError> {
    check_scope(new.scope.scope(), new.scope.value())?;
    if new.scope.scope() == crate::ranges::IP_SCOPE
        && new.scope.value().contains('/')
        && crate::ranges::range_of(&new.scope).is_none()
    {
        return Err(StoreError::Invalid(
            "an ip range must be a canonical CIDR (network address, prefix below 32 or 128)".into(),
        ));
    }
    if new.ttl == Some(0) {
        return Err(StoreError::Invalid("ttl must be > 0".into()));
    }
    if !(100..=599).contains(&new.status_code) {
        return Err(StoreError::Invalid("status code outside 100-599".into()));
    }
    let reason = bounded_text(&new.reason, MAX_REASON_CHARS);
    let rule_name = bounded_text(&new.rule_name, MAX_RULE_NAME_CHARS);
    let message = bounded_text(&new.message, MAX_MESSAGE_CHARS);
    let metadata_nul = new
        .metadata
        .iter()
        .any(|(k, v)| k.contains('\0') || has_nul(v));
    if matches!(
        (&reason, &rule_name, &message),
        (Cow::Borrowed(_), Cow::Borrowed(_), Cow::Borrowed(_))
    ) && !metadata_nul
    {
        return Ok(Cow::Borrowed(new));
    }
    Ok(Cow::Owned(NewBlock {
        scope: new.scope.clone(),
        reason: reason.into_owned(),
        rule_name: rule_name.into_owned(),
        status_code: new.status_code,
        message: message.into_owned(),
        ttl: new.ttl,
        metadata: if metadata_nul {
            clean_map(&new.metadata)
        } else {
            new.metadata.clone()
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sec_audit_core::ScopeKey;
    use serde_json::json;

    fn block(value: &str) -> NewBlock {
        NewBlock {
            scope: ScopeKey::new("user", value),
            reason: "r".into(),
            rule_name: "rule".into(),
            status_code: 429,
            message: "m".into(),
            ttl: None,
            metadata: Map::new(),
        }
    }

    #[test]
    fn text_is_cut_at_a_character_boundary_and_loses_nul() {
        assert_eq!(bounded_text("héllo", 2), "hé");
        assert_eq!(bounded_text("abc", 5), "abc");
        assert_eq!(bounded_text("a\0b\0c", 2), "ab");
        assert!(matches!(bounded_text("plain", 10), Cow::Borrowed(_)));
    }

    #[test]
    fn scopes_that_cannot_be_stored_are_refused() {
        let ok = "u".repeat(MAX_SCOPE_VALUE_CHARS);
        assert!(normalize(&block(&ok)).is_ok());
        let multibyte = "é".repeat(MAX_SCOPE_VALUE_CHARS);
        assert!(
            normalize(&block(&multibyte)).is_ok(),
            "characters, not bytes"
        );
        for bad in [
            "u".repeat(MAX_SCOPE_VALUE_CHARS + 1),
            "a\0b".to_string(),
            String::new(),
        ] {
            let e = normalize(&block(&bad)).unwrap_err();
            assert_eq!(e.kind(), "invalid_request", "{bad:?}");
        }
        let mut b = block("u");
        b.scope = ScopeKey::new("t".repeat(MAX_SCOPE_TYPE_CHARS + 1), "u");
        assert!(normalize(&b).is_err());
    }

    #[test]
    fn long_texts_are_truncated_alike() {
        let mut b = block("u");
        b.reason = "r".repeat(300);
        b.message = "é".repeat(300);
        b.rule_name = "n".repeat(200);
        b.metadata
            .insert("k\0".into(), json!(["a\0", {"x": "y\0"}]));
        let n = normalize(&b).unwrap();
        assert_eq!(n.reason.chars().count(), MAX_REASON_CHARS);
        assert_eq!(n.message.chars().count(), MAX_MESSAGE_CHARS);
        assert_eq!(n.rule_name.chars().count(), MAX_RULE_NAME_CHARS);
        assert_eq!(n.metadata["k"], json!(["a", {"x": "y"}]));
        let plain = block("u");
        assert!(matches!(normalize(&plain).unwrap(), Cow::Borrowed(_)));
    }
}
