//! `sec-audit blocks list|add|revoke|export|import`: the block management
//! API from the shell, against the stores the configuration names,
//! emitting the same enforcement events.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::path::Path;

use sec_audit_enforce::events::{block_entry_json as entry_json, rfc3339};
use sec_audit_enforce::{BlockApiError, ManualBlock, Runtime, Sink};
use sec_audit_store::{limits, BlockEntry, IpRange};
use serde_json::{Map, Value};

use crate::error::CliError;
use crate::lines::{Line, LineReader};
use crate::out::Format;
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

/// When `blocks list --since` starts: a duration back from now, or a time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Since {
    /// Seconds before now.
    Ago(u64),
    /// Seconds since the epoch.
    At(f64),
}

impl Since {
    /// The time it names, seconds since the epoch.
    pub fn at(&self, now: f64) -> f64 {
        match *self {
            Since::Ago(secs) => now - secs as f64,
            Since::At(t) => t,
        }
    }
}

/// An RFC 3339 time (`2026-05-28T20:31:40Z`, any offset, fractions) as
/// seconds since the epoch.
pub fn parse_time(s: &str) -> Result<f64, String> {
    let t = time::OffsetDateTime::parse(s.trim(), &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("`{s}` is not an RFC 3339 time ({e})"))?;
    Ok(t.unix_timestamp_nanos() as f64 / 1e9)
}

/// `--since`: a duration (`90s`, `15m`, `2h`, `7d`, seconds) or an RFC
/// 3339 time.
pub fn parse_since(s: &str) -> Result<Since, String> {
    if s.contains('-') || s.contains(':') || s.contains('T') {
        return parse_time(s).map(Since::At);
    }
    crate::util::parse_ttl(s)
        .map(Since::Ago)
        .map_err(|_| format!("`{s}` is neither a duration (15m, 2h, 7d) nor an RFC 3339 time"))
}

/// `--contains`: an IP address (canonical: IPv4-mapped IPv6 is IPv4).
pub fn parse_contains(s: &str) -> Result<IpAddr, String> {
    let bad = || format!("`{s}` is not an IP address");
    if s.contains('/') {
        return Err(format!("`{s}`: --contains takes an address, not a range"));
    }
    sec_audit_store::canonical_ip_value(s, sec_audit_core::client_ip::parse_ip_token)
        .ok()
        .and_then(|v| v.parse().ok())
        .ok_or_else(bad)
}

/// Which blocks `blocks list` / `blocks export` select.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub scope: Option<String>,
    /// Only this scope value's own entry (needs `scope`).
    pub value: Option<String>,
    /// Only blocks written for this rule (`manual` for the block API).
    pub rule: Option<String>,
    /// Only blocks created at or after this.
    pub since: Option<Since>,
    /// Only the block of this address and every range covering it (ip
    /// scope), most specific first.
    pub contains: Option<IpAddr>,
}

/// The prefix length an ip entry covers `ip` with (the address's own
/// block: its full length), or `None` when it does not cover it.
fn covers(e: &BlockEntry, ip: IpAddr) -> Option<u8> {
    if e.scope_type != "ip" {
        return None;
    }
    if e.scope_value == ip.to_string() {
        return Some(if ip.is_ipv4() { 32 } else { 128 });
    }
    IpRange::parse_canonical(&e.scope_value)
        .filter(|r| r.contains(ip))
        .map(|r| r.prefix_len())
}

/// The active blocks `q` selects: permanent then temporary (with
/// `contains`: most specific first), through the block API.
pub fn select(rt: &Runtime, q: &Query) -> Result<Vec<BlockEntry>, CliError> {
    let scope = match (&q.contains, q.scope.as_deref()) {
        (Some(_), Some(s)) if s != "ip" => {
            return Err(CliError::config(
                "--contains selects ip blocks: drop --scope or use --scope ip",
            ))
        }
        (Some(_), _) => Some("ip"),
        (None, s) => s,
    };
    let mut entries: Vec<BlockEntry> = match (scope, q.value.as_deref()) {
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
    if let Some(rule) = &q.rule {
        entries.retain(|e| &e.rule_name == rule);
    }
    if let Some(since) = q.since {
        let from = since.at(rt.clock().now());
        entries.retain(|e| e.created_at >= from);
    }
    if let Some(ip) = q.contains {
        entries.retain(|e| covers(e, ip).is_some());
        entries.sort_by_key(|e| std::cmp::Reverse(covers(e, ip)));
    }
    Ok(entries)
}

/// `blocks list`: the selected blocks as a table, or (`-o json`) one JSON
/// array of block objects.
pub fn list(config_path: &Path, q: &Query, format: Format) -> Result<(), CliError> {
    let rt = runtime(config_path, Sink::Discard)?;
    let entries = select(&rt, q)?;
    match format {
        Format::Json => {
            let arr: Vec<Value> = entries.iter().map(entry_json).collect();
            let text = serde_json::to_string_pretty(&Value::Array(arr))
                .map_err(|e| CliError::runtime(format!("encoding JSON: {e}")))?;
            crate::outln!("{text}")?;
        }
        Format::Table => crate::out!("{}", render_table(&entries))?,
    }
    Ok(())
}

/// One line of `blocks export`: the block's JSON object (as `list -o
/// json`) plus `ttl_left`, whole seconds left of a temporary block (at
/// least 1; `null` when permanent).
pub fn export_line(e: &BlockEntry, now: f64) -> Value {
    let mut v = entry_json(e);
    let ttl_left = e.expires_at.map(|at| ((at - now).ceil().max(1.0)) as u64);
    if let Value::Object(m) = &mut v {
        m.insert("ttl_left".into(), ttl_left.map_or(Value::Null, Value::from));
    }
    v
}

/// `blocks export`: the selected blocks as JSON lines on standard output,
/// one block per line, everything `blocks import` needs to recreate them.
pub fn export(config_path: &Path, q: &Query) -> Result<(), CliError> {
    let rt = runtime(config_path, Sink::Discard)?;
    let entries = select(&rt, q)?;
    let now = rt.clock().now();
    let mut text = String::new();
    for e in &entries {
        text.push_str(&export_line(e, now).to_string());
        text.push('\n');
    }
    crate::out!("{text}")?;
    crate::errln!(
        "exported {} block{}",
        entries.len(),
        if entries.len() == 1 { "" } else { "s" }
    );
    Ok(())
}

/// Longest accepted line of a `blocks import` input.
pub const MAX_IMPORT_LINE: usize = 1 << 20;

/// The metadata key that keeps a block's actor before an import made the
/// importer its `actor`.
pub const ORIGINAL_ACTOR_KEY: &str = "original_actor";

/// One line of a `blocks import` input: the fields `blocks export` writes.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportLine {
    scope_type: String,
    scope_value: String,
    kind: String,
    reason: String,
    #[serde(default)]
    rule_name: Option<String>,
    #[serde(default)]
    status_code: Option<u16>,
    #[serde(default)]
    message: Option<String>,
    /// Informational (a block gets the time it is written).
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    expires_at: Option<String>,
    #[serde(default)]
    ttl_left: Option<u64>,
    #[serde(default)]
    metadata: Map<String, Value>,
}

/// What an import line asks for.
#[derive(Debug, Clone)]
struct PlannedBlock {
    block: ManualBlock,
    /// Temporary: when it expires (`None`: permanent).
    expires_at: Option<f64>,
    /// Already expired: skipped.
    expired: bool,
}

/// Validates one import line at `now`.
fn plan_line(rt: &Runtime, text: &str, now: f64, actor: &str) -> Result<PlannedBlock, String> {
    // serde's position is within the line: its column is what helps.
    let l: ImportLine = serde_json::from_str(text).map_err(|e| {
        format!("not a block object: {e}").replace(" at line 1 column ", " at column ")
    })?;
    let scope = rt
        .scope_key(&l.scope_type, &l.scope_value)
        .map_err(|e| e.to_string())?;
    if let Some(code) = l.status_code.filter(|c| !(100..=599).contains(c)) {
        return Err(format!("status_code must be 100-599 (got {code})"));
    }
    if let Some(t) = &l.created_at {
        parse_time(t).map_err(|e| format!("created_at: {e}"))?;
    }
    let expires_at = match l.kind.as_str() {
        "permanent" => {
            if l.expires_at.is_some() || l.ttl_left.is_some() {
                return Err("a permanent block has no expires_at or ttl_left".into());
            }
            None
        }
        "temp" => Some(match (&l.expires_at, l.ttl_left) {
            (Some(at), _) => parse_time(at).map_err(|e| format!("expires_at: {e}"))?,
            (None, Some(left)) if left > 0 => now + left as f64,
            _ => return Err("a temp block needs expires_at or a ttl_left above 0".into()),
        }),
        other => return Err(format!("kind must be permanent or temp (got `{other}`)")),
    };
    let mut metadata = l.metadata;
    let previous = metadata
        .get("actor")
        .and_then(Value::as_str)
        .map(str::to_string);
    if let Some(previous) = previous.filter(|p| p != actor) {
        metadata
            .entry(ORIGINAL_ACTOR_KEY)
            .or_insert(Value::String(previous));
    }
    let expired = expires_at.is_some_and(|at| at <= now);
    Ok(PlannedBlock {
        block: ManualBlock {
            scope_type: scope.scope().to_string(),
            value: scope.value().to_string(),
            ttl: expires_at.map(|at| ((at - now).ceil().max(1.0)) as u64),
            reason: l.reason,
            status_code: l.status_code,
            message: l.message,
            metadata: Some(metadata),
            actor: Some(actor.to_string()),
            rule_name: l.rule_name.filter(|r| !r.is_empty()),
        },
        expires_at,
        expired,
    })
}

/// Whether `current` already is what `want` would write (so re-importing
/// the same file changes nothing): same kind and texts, the same metadata
/// but for `actor`, and a temporary block's expiry within 2 s.
fn unchanged(current: &BlockEntry, want: &PlannedBlock, rt: &Runtime) -> bool {
    let b = &want.block;
    let expiry_same = match (current.expires_at, want.expires_at) {
        (None, None) => true,
        (Some(a), Some(b)) => (a - b).abs() <= 2.0,
        _ => false,
    };
    let strip = |m: &Map<String, Value>| {
        let mut m = m.clone();
        m.remove("actor");
        m
    };
    // Compared as the stores keep them (texts bounded: `limits`).
    let same = |stored: &str, asked: &str, max: usize| stored == limits::bounded_text(asked, max);
    let message = b
        .message
        .clone()
        .unwrap_or_else(|| rt.config().message.clone());
    expiry_same
        && same(&current.reason, &b.reason, limits::MAX_REASON_CHARS)
        && same(
            &current.rule_name,
            b.rule_name.as_deref().unwrap_or("manual"),
            limits::MAX_RULE_NAME_CHARS,
        )
        && same(&current.message, &message, limits::MAX_MESSAGE_CHARS)
        && current.status_code == b.status_code.unwrap_or(rt.config().status_code)
        && strip(&current.metadata) == strip(b.metadata.as_ref().unwrap_or(&Map::new()))
}

/// What `blocks import` did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub imported: usize,
    pub unchanged: usize,
    pub expired: usize,
}

/// `blocks import`: reads JSON lines (as `blocks export` writes them) from
/// `input` (a file, or `-` for standard input), validates every line first
/// — any bad line (named by its number) and nothing is imported — then
/// writes each block through the block API (its `block_applied` record to
/// `output`, the importer as `actor`), skipping blocks already as the line
/// says (re-importing is a no-op) and temporary blocks already expired.
pub fn import(
    config_path: &Path,
    input: &str,
    output: &OutputTarget,
    actor: &str,
) -> Result<ImportReport, CliError> {
    let reader: Box<dyn BufRead> = if input == "-" {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        let f = File::open(input)
            .map_err(|e| CliError::runtime(format!("cannot open {input}: {e}")))?;
        Box::new(BufReader::new(f))
    };
    let name = if input == "-" {
        "standard input"
    } else {
        input
    };
    let watch = WriteWatch::default();
    let rt = runtime(config_path, output_sink(output, &watch)?)?;
    let now = rt.clock().now();
    let mut lines = LineReader::new(reader, MAX_IMPORT_LINE);
    let mut planned: Vec<(usize, PlannedBlock)> = Vec::new();
    let mut bad: Vec<String> = Vec::new();
    let mut n = 0usize;
    while let Some(line) = lines
        .next_line()
        .map_err(|e| CliError::runtime(format!("reading {name}: {e}")))?
    {
        n += 1;
        let text = match line {
            Line::TooLong(len) => {
                bad.push(format!(
                    "line {n}: {len} bytes, longer than {MAX_IMPORT_LINE}"
                ));
                continue;
            }
            Line::Text(t) => match std::str::from_utf8(t) {
                Ok(t) => t,
                Err(_) => {
                    bad.push(format!("line {n}: not UTF-8"));
                    continue;
                }
            },
        };
        if text.trim().is_empty() {
            continue;
        }
        match plan_line(&rt, text, now, actor) {
            Ok(p) => planned.push((n, p)),
            Err(e) => bad.push(format!("line {n}: {}", crate::error::one_line(&e))),
        }
    }
    if !bad.is_empty() {
        for b in bad.iter().take(100) {
            crate::errln!("{b}");
        }
        if bad.len() > 100 {
            crate::errln!("… and {} more", bad.len() - 100);
        }
        return Err(CliError::config(format!(
            "{name}: {} bad line{}: nothing imported",
            bad.len(),
            if bad.len() == 1 { "" } else { "s" }
        )));
    }
    let mut report = ImportReport::default();
    for (line, p) in &planned {
        if p.expired {
            report.expired += 1;
            continue;
        }
        let current = rt
            .is_blocked(&p.block.scope_type, &p.block.value)
            .map_err(|e| progress_error(e, *line, &report))?;
        if current.is_some_and(|c| unchanged(&c, p, &rt)) {
            report.unchanged += 1;
            continue;
        }
        rt.block(&p.block)
            .map_err(|e| progress_error(e, *line, &report))?;
        report.imported += 1;
    }
    rt.flush();
    drop(rt);
    check_output(output, &watch)?;
    crate::errln!(
        "imported {} block{} from {name} ({} unchanged, {} expired and skipped) by {actor}",
        report.imported,
        if report.imported == 1 { "" } else { "s" },
        report.unchanged,
        report.expired
    );
    Ok(report)
}

fn progress_error(e: BlockApiError, line: usize, r: &ImportReport) -> CliError {
    let cause = api_error(e);
    let msg = match &cause {
        CliError::Config(m) | CliError::Runtime(m) => m.clone(),
        CliError::Closed => String::new(),
    };
    CliError::runtime(format!(
        "line {line}: {msg} (after importing {}; importing again is safe: blocks already there are skipped)",
        r.imported
    ))
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
