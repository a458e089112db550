//! `sec-audit blocks list|add|revoke`: the block management API
//! from the shell, against the stores the configuration
//! names, emitting the same enforcement events.

use std::path::Path;

use sec_audit_enforce::events::{block_entry_json as entry_json, rfc3339};
use sec_audit_enforce::{BlockApiError, ManualBlock, Runtime, Sink};
use sec_audit_store::BlockEntry;
use serde_json::Value;

use crate::error::CliError;
use crate::util::{ellipsize, load_config, table, OutputTarget, WatchedWriter, WriteWatch};

/// A runtime on the configured stores with the system clock.
fn runtime(config_path: &Path, sink: Sink) -> Result<Runtime, CliError> {
    let config = load_config(config_path)?;
    if config.redis_url.trim().is_empty() {
        crate::errln!(
            "note: {} names no redis_url: blocks live in this process's memory only and are gone when the command exits",
            config_path.display()
        );
    }
    Runtime::builder(config)
        .sink(sink)
        .build()
        .map_err(|e| CliError::from_build(config_path, &e))
}

fn api_error(e: BlockApiError) -> CliError {
    match e {
        BlockApiError::Store(s) => CliError::runtime(format!("block store: {s}")),
        other => CliError::config(other.to_string()),
    }
}

fn output_sink(output: &OutputTarget, watch: &WriteWatch) -> Result<Sink, CliError> {
    let w: WatchedWriter = output.open(watch)?;
    Ok(Sink::Writer(Box::new(w)))
}

fn check_output(output: &OutputTarget, watch: &WriteWatch) -> Result<(), CliError> {
    match watch.to_error(&output.describe()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn describe_expiry(e: &BlockEntry) -> String {
    match e.expires_at {
        Some(t) => format!("temporary, expires {}", rfc3339(t)),
        None => "permanent".into(),
    }
}

/// What `blocks add` was asked.
#[derive(Debug, Clone)]
pub struct AddRequest {
    pub scope: String,
    pub value: String,
    pub ttl: Option<u64>,
    pub reason: String,
    pub actor: String,
    pub status_code: Option<u16>,
    pub message: Option<String>,
}

/// `blocks add`.
pub fn add(config_path: &Path, output: &OutputTarget, req: &AddRequest) -> Result<(), CliError> {
    let watch = WriteWatch::default();
    let rt = runtime(config_path, output_sink(output, &watch)?)?;
    let entry = rt
        .block(&ManualBlock {
            scope_type: req.scope.clone(),
            value: req.value.clone(),
            ttl: req.ttl,
            reason: req.reason.clone(),
            status_code: req.status_code,
            message: req.message.clone(),
            metadata: None,
            actor: Some(req.actor.clone()),
            rule_name: None,
        })
        .map_err(api_error)?;
    rt.flush();
    drop(rt);
    check_output(output, &watch)?;
    crate::errln!(
        "blocked {}:{} ({}) by {}",
        entry.scope_type,
        entry.scope_value,
        describe_expiry(&entry),
        req.actor
    );
    Ok(())
}

/// `blocks revoke`.
pub fn revoke(
    config_path: &Path,
    output: &OutputTarget,
    scope: &str,
    value: &str,
    reason: &str,
    revoked_by: &str,
) -> Result<(), CliError> {
    let watch = WriteWatch::default();
    let rt = runtime(config_path, output_sink(output, &watch)?)?;
    let removed = rt
        .unblock(scope, value, reason, revoked_by)
        .map_err(api_error)?;
    rt.flush();
    drop(rt);
    check_output(output, &watch)?;
    if removed == 0 {
        crate::errln!("no active block on {scope}:{value}: nothing revoked");
    } else {
        crate::errln!(
            "revoked {removed} entr{} for {scope}:{value} by {revoked_by}",
            if removed == 1 { "y" } else { "ies" }
        );
    }
    Ok(())
}

fn entry_row(e: &BlockEntry) -> Vec<String> {
    let actor = e
        .metadata
        .get("actor")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    vec![
        e.scope_type.clone(),
        ellipsize(&e.scope_value, 40),
        if e.is_permanent() {
            "permanent"
        } else {
            "temp"
        }
        .into(),
        e.expires_at.map_or_else(|| "-".to_string(), rfc3339),
        e.rule_name.clone(),
        e.status_code.to_string(),
        rfc3339(e.created_at),
        actor,
        ellipsize(&e.reason, 48),
    ]
}

/// Renders entries as the readable table.
pub fn render_table(entries: &[BlockEntry]) -> String {
    if entries.is_empty() {
        return "no active blocks\n".into();
    }
    let rows: Vec<Vec<String>> = entries.iter().map(entry_row).collect();
    table(
        &[
            "scope", "value", "kind", "expires", "rule", "status", "created", "actor", "reason",
        ],
        &rows,
        &[],
    )
}

/// `blocks list`: permanent then temporary blocks (or one scope's entry
/// with `--value`), as a table or JSON.
pub fn list(
    config_path: &Path,
    scope: Option<&str>,
    value: Option<&str>,
    as_json: bool,
) -> Result<(), CliError> {
    let rt = runtime(config_path, Sink::Discard)?;
    let entries: Vec<BlockEntry> = match (scope, value) {
        (Some(scope), Some(value)) => rt
            .is_blocked(scope, value)
            .map_err(api_error)?
            .into_iter()
            .collect(),
        (None, Some(_)) => return Err(CliError::config("--value needs --scope")),
        (scope, None) => {
            let mut all = rt.list_active_blocks(scope).map_err(api_error)?;
            all.extend(rt.list_temp_blocks(scope).map_err(api_error)?);
            all
        }
    };
    if as_json {
        let arr: Vec<Value> = entries.iter().map(entry_json).collect();
        let text = serde_json::to_string_pretty(&Value::Array(arr))
            .map_err(|e| CliError::runtime(format!("encoding JSON: {e}")))?;
        crate::outln!("{text}")?;
    } else {
        crate::out!("{}", render_table(&entries))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

    fn entry(permanent: bool) -> BlockEntry {
        let mut metadata = Map::new();
        metadata.insert("actor".into(), serde_json::json!("cli:alice"));
        BlockEntry {
            scope_type: "ip".into(),
            scope_value: "203.0.113.9".into(),
            reason: "scanner".into(),
            rule_name: "manual".into(),
            status_code: 429,
            message: "blocked".into(),
            created_at: 1_780_000_000.0,
            expires_at: (!permanent).then_some(1_780_000_300.0),
            revoked_at: None,
            metadata,
        }
    }

    #[test]
    fn table_and_json_show_kind_expiry_and_actor() {
        let t = render_table(&[entry(true), entry(false)]);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("scope  value"), "{t}");
        assert!(
            lines[1].contains("permanent") && lines[1].contains("cli:alice"),
            "{t}"
        );
        assert!(lines[2].contains("2026-05-28T20:31:40.000Z"), "{t}");
        let j = entry_json(&entry(false));
        assert_eq!(j["kind"], "temp");
        assert_eq!(j["expires_at"], "2026-05-28T20:31:40.000Z");
        assert_eq!(entry_json(&entry(true))["expires_at"], Value::Null);
        assert_eq!(render_table(&[]), "no active blocks\n");
    }
}
