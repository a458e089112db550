//! `sec-audit check`: the configuration check (W001–W005, E001), and with
//! `--live` a probe of the configured Redis and Postgres.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sec_audit_core::SystemClock;
use sec_audit_enforce::check::check_store;
use sec_audit_enforce::{check, Config, Finding, Level, Safelist};
use sec_audit_store::{PostgresBlockStore, PostgresConfig};

use crate::error::{CliError, EXIT_CONFIG, EXIT_OK, EXIT_RUNTIME};
use crate::out::Format;
use crate::util::redact_url;

/// The oldest Redis sec-audit works with: the tiered lookup sends
/// `SMISMEMBER`, new in Redis 6.2.
pub const MIN_REDIS_VERSION: (u32, u32) = (6, 2);

/// `redis_version` from an `INFO server` reply, as (major, minor, patch).
/// Missing parts count as 0 (`7.2` = 7.2.0); `None` when the field is absent
/// or does not start with a number.
pub fn redis_version(info: &str) -> Option<(u32, u32, u32)> {
    let v = info
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:"))?
        .trim();
    let mut parts = v.split('.').map(|p| {
        let digits: String = p.chars().take_while(char::is_ascii_digit).collect();
        digits.parse::<u32>().ok()
    });
    let major = parts.next()??;
    let minor = parts.next().flatten().unwrap_or(0);
    let patch = parts.next().flatten().unwrap_or(0);
    Some((major, minor, patch))
}

/// Whether a server of this version has every command sec-audit sends.
pub fn version_supported(v: (u32, u32, u32)) -> bool {
    (v.0, v.1) >= MIN_REDIS_VERSION
}

/// What an `INFO server` reply says about the version: the text for the
/// live line, and `E002` when the server is older than
/// [`MIN_REDIS_VERSION`].
pub fn version_finding(info: &str, url: &str) -> (String, Option<Finding>) {
    match redis_version(info) {
        Some(v) if version_supported(v) => (format!("version {}.{}.{}", v.0, v.1, v.2), None),
        Some(v) => (
            format!("version {}.{}.{} (too old, E002)", v.0, v.1, v.2),
            Some(Finding {
                id: "E002",
                level: Level::Error,
                message: format!(
                    "redis at {url} is version {}.{}.{}: sec-audit needs Redis {}.{} or newer (the block lookup sends SMISMEMBER)",
                    v.0, v.1, v.2, MIN_REDIS_VERSION.0, MIN_REDIS_VERSION.1
                ),
            }),
        ),
        None => (
            "version unknown (INFO server names no redis_version)".into(),
            None,
        ),
    }
}

/// Reads the server version (`INFO server`); adds `E002` when it is too
/// old. Returns the text for the live line.
fn check_version(conn: &mut redis::Connection, url: &str, findings: &mut Vec<Finding>) -> String {
    let info: redis::RedisResult<String> = redis::cmd("INFO").arg("server").query(conn);
    match info {
        Ok(info) => {
            let (text, finding) = version_finding(&info, url);
            findings.extend(finding);
            text
        }
        Err(e) => format!("version unknown (INFO server: {e})"),
    }
}

/// Eviction policies that may drop keys sec-audit relies on.
pub fn evicting_policy(policy: &str) -> bool {
    policy.starts_with("allkeys-") || policy.starts_with("volatile-")
}

/// One line of the live probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveLine {
    pub ok: bool,
    pub text: String,
}

impl LiveLine {
    fn ok(text: String) -> Self {
        LiveLine { ok: true, text }
    }
    fn err(text: String) -> Self {
        LiveLine { ok: false, text }
    }
}

impl std::fmt::Display for LiveLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tag = if self.ok { "live ok" } else { "live error" };
        write!(f, "{tag}: {}", self.text)
    }
}

fn timeouts(config: &Config) -> (Duration, Duration) {
    (
        Duration::from_millis(config.connect_timeout_ms.max(1)),
        Duration::from_millis(config.command_timeout_ms.max(1)),
    )
}

/// Reads `maxmemory-policy`: `CONFIG GET`, else `INFO memory` (managed
/// Redis often disables CONFIG).
fn maxmemory_policy(conn: &mut redis::Connection) -> Result<String, String> {
    let by_config: redis::RedisResult<Vec<String>> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory-policy")
        .query(conn);
    if let Ok(v) = by_config {
        if let Some(p) = v.get(1) {
            return Ok(p.clone());
        }
    }
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query(conn)
        .map_err(|e| format!("INFO memory: {e}"))?;
    info.lines()
        .find_map(|l| l.strip_prefix("maxmemory_policy:"))
        .map(|p| p.trim().to_string())
        .ok_or_else(|| "the server reports no maxmemory_policy".into())
}

/// Probes Redis: reachability (PING, over TLS for `rediss://`), the server
/// version and the eviction policy.
fn probe_redis(config: &Config, findings: &mut Vec<Finding>) -> LiveLine {
    let url = redact_url(&config.redis_url);
    let (connect, command) = timeouts(config);
    let client = match sec_audit_enforce::stores::redis_config(config).client() {
        Ok(c) => c,
        Err(e) => return LiveLine::err(format!("redis settings for {url}: {e}")),
    };
    let started = Instant::now();
    let mut conn = match client.get_connection_with_timeout(connect) {
        Ok(c) => c,
        Err(e) => return LiveLine::err(format!("redis not reachable at {url}: {e}")),
    };
    let _ = conn.set_read_timeout(Some(command));
    let _ = conn.set_write_timeout(Some(command));
    let pong: redis::RedisResult<String> = redis::cmd("PING").query(&mut conn);
    if let Err(e) = pong {
        return LiveLine::err(format!("redis at {url} does not answer PING: {e}"));
    }
    let rtt = started.elapsed().as_secs_f64() * 1000.0;
    let version = check_version(&mut conn, &url, findings);
    match maxmemory_policy(&mut conn) {
        Ok(policy) => {
            if evicting_policy(&policy) {
                findings.push(Finding {
                    id: "W004",
                    level: Level::Warning,
                    message: format!(
                        "redis maxmemory-policy is {policy}: under memory pressure Redis evicts keys, and every sec-audit key has a TTL, so blocks and counters can vanish early; use noeviction"
                    ),
                });
            }
            LiveLine::ok(format!(
                "redis reachable at {url} (connect + PING {rtt:.1} ms), {version}, maxmemory-policy {policy}"
            ))
        }
        Err(e) => LiveLine::ok(format!(
            "redis reachable at {url} (connect + PING {rtt:.1} ms), {version}; maxmemory-policy unknown: {e}"
        )),
    }
}

/// Probes Postgres: reachability and migration state.
fn probe_postgres(config: &Config) -> LiveLine {
    let url = redact_url(&config.database_url);
    let (connect, command) = timeouts(config);
    let pg = PostgresConfig::new(config.database_url.clone())
        .with_connect_timeout(connect)
        .with_statement_timeout(command.max(Duration::from_secs(2)))
        .with_pool_size(1)
        .with_failure_backoff(Duration::ZERO);
    let store = match PostgresBlockStore::new(&pg, Arc::new(SystemClock)) {
        Ok(s) => s,
        Err(e) => return LiveLine::err(format!("postgres settings for {url}: {e}")),
    };
    let applied = match store.applied_migrations() {
        Ok(a) => a,
        Err(e) => return LiveLine::err(format!("postgres at {url}: {e}")),
    };
    let pending = match store.pending_migrations() {
        Ok(p) => p,
        Err(e) => return LiveLine::err(format!("postgres at {url}: {e}")),
    };
    let tier = if config.permanent_tier_enabled {
        ""
    } else {
        " (permanent_tier_enabled = false: not used for blocks)"
    };
    if pending.is_empty() {
        LiveLine::ok(format!(
            "postgres reachable at {url}, migrations up to date ({} applied){tier}",
            applied.len()
        ))
    } else {
        LiveLine::err(format!(
            "postgres reachable at {url} but {} migration(s) pending: {} (run `sec-audit migrate`){tier}",
            pending.len(),
            pending.join(", ")
        ))
    }
}

/// Before a replay on Redis/Postgres: fails when a configured server does
/// not answer, Redis is older than [`MIN_REDIS_VERSION`] (or Postgres lacks
/// its migrations), since the replay itself would fail open on every event
/// and report nothing useful.
pub fn preflight(config: &Config) -> Result<(), CliError> {
    let mut found = Vec::new();
    if !config.redis_url.trim().is_empty() {
        let l = probe_redis(config, &mut found);
        if !l.ok {
            return Err(CliError::runtime(l.text));
        }
        if let Some(f) = found.iter().find(|f| f.level == Level::Error) {
            return Err(CliError::runtime(f.message.clone()));
        }
    }
    if !config.redis_url.trim().is_empty()
        && config.permanent_tier_enabled
        && !config.database_url.trim().is_empty()
    {
        let l = probe_postgres(config);
        if !l.ok {
            return Err(CliError::runtime(l.text));
        }
    }
    Ok(())
}

/// `W006`: safelisted subjects that have an active block in the configured
/// Redis/Postgres stores. Memory stores hold nothing between processes:
/// nothing to look at.
fn probe_safelist(config: &Config, findings: &mut Vec<Finding>) -> Option<LiveLine> {
    if config.redis_url.trim().is_empty() || Safelist::new(&config.safelist).is_empty() {
        return None;
    }
    let stores = match sec_audit_enforce::stores::from_config(config, Arc::new(SystemClock)) {
        Ok(s) => s,
        Err(e) => return Some(LiveLine::err(format!("safelist check: {e}"))),
    };
    Some(match check_store(config, stores.blocks.as_ref()) {
        Ok(found) => {
            let n = found.len();
            findings.extend(found);
            LiveLine::ok(format!(
                "safelist checked against the block store: {n} safelisted subject{} blocked",
                if n == 1 { "" } else { "s" }
            ))
        }
        Err(e) => LiveLine::err(format!(
            "safelist check: the block store could not list blocks ({})",
            e.kind()
        )),
    })
}

fn level_name(l: Level) -> &'static str {
    match l {
        Level::Warning => "warning",
        Level::Error => "error",
    }
}

/// The JSON document of `check -o json`: `findings` (`id`, `level`
/// `warning`|`error`, `message`), `live` (`ok`, `text`; empty without
/// `--live`), the counts `errors`, `warnings`, `live_problems`, and
/// `exit_status` (what the command exits with).
pub fn report_json(findings: &[Finding], live: &[LiveLine], exit_status: u8) -> serde_json::Value {
    let errors = findings.iter().filter(|f| f.level == Level::Error).count();
    serde_json::json!({
        "findings": findings
            .iter()
            .map(|f| serde_json::json!({"id": f.id, "level": level_name(f.level), "message": f.message}))
            .collect::<Vec<_>>(),
        "live": live
            .iter()
            .map(|l| serde_json::json!({"ok": l.ok, "text": l.text}))
            .collect::<Vec<_>>(),
        "errors": errors,
        "warnings": findings.len() - errors,
        "live_problems": live.iter().filter(|l| !l.ok).count(),
        "exit_status": exit_status,
    })
}

fn print_json(findings: &[Finding], live: &[LiveLine], exit_status: u8) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(&report_json(findings, live, exit_status))
        .map_err(|e| CliError::runtime(format!("encoding JSON: {e}")))?;
    crate::outln!("{text}")
}

/// Runs `sec-audit check`; returns the exit status.
pub fn run(config_path: &Path, live: bool, format: Format) -> Result<u8, CliError> {
    let config = match crate::util::load_config(config_path) {
        Ok(c) => c,
        Err(e) => {
            let f = Finding {
                id: "E001",
                level: Level::Error,
                message: e.to_string(),
            };
            match format {
                Format::Table => crate::outln!("E001 error: {e}")?,
                Format::Json => print_json(&[f], &[], EXIT_CONFIG)?,
            }
            crate::errln!("check: 1 error, 0 warnings");
            return Ok(EXIT_CONFIG);
        }
    };
    let mut findings = check(&config);
    let mut live_lines = Vec::new();
    if live {
        if config.redis_url.trim().is_empty() {
            live_lines.push(LiveLine::ok(
                "redis not configured (redis_url is empty): memory stores, nothing to probe".into(),
            ));
        } else {
            live_lines.push(probe_redis(&config, &mut findings));
        }
        if config.database_url.trim().is_empty() {
            live_lines.push(LiveLine::ok(
                "postgres not configured (database_url is empty): nothing to probe".into(),
            ));
        } else {
            live_lines.push(probe_postgres(&config));
        }
        if live_lines.iter().all(|l| l.ok) {
            live_lines.extend(probe_safelist(&config, &mut findings));
        }
    }
    findings.sort_by(|a, b| b.level.cmp(&a.level).then(a.id.cmp(b.id)));
    if format == Format::Table {
        for f in &findings {
            crate::outln!("{}", crate::error::one_line(&f.to_string()))?;
        }
        for l in &live_lines {
            crate::outln!("{}", crate::error::one_line(&l.to_string()))?;
        }
    }
    let errors = findings.iter().filter(|f| f.level == Level::Error).count();
    let warnings = findings.len() - errors;
    let live_errors = live_lines.iter().filter(|l| !l.ok).count();
    let mut summary = format!(
        "check: {errors} error{}, {warnings} warning{}",
        if errors == 1 { "" } else { "s" },
        if warnings == 1 { "" } else { "s" }
    );
    if live {
        summary.push_str(&format!(
            ", {live_errors} live problem{}",
            if live_errors == 1 { "" } else { "s" }
        ));
    }
    let status = if errors > 0 {
        EXIT_CONFIG
    } else if live_errors > 0 {
        EXIT_RUNTIME
    } else {
        EXIT_OK
    };
    if format == Format::Json {
        print_json(&findings, &live_lines, status)?;
    }
    crate::errln!("{summary}");
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_versions() {
        let info = |v: &str| format!("# Server\r\nredis_version:{v}\r\nredis_mode:standalone\r\n");
        assert_eq!(redis_version(&info("7.0.15")), Some((7, 0, 15)));
        assert_eq!(redis_version(&info("6.2.0")), Some((6, 2, 0)));
        assert_eq!(redis_version(&info("6.2")), Some((6, 2, 0)));
        assert_eq!(redis_version(&info("7.4.0-rc1")), Some((7, 4, 0)));
        assert_eq!(redis_version(&info("unknown")), None);
        assert_eq!(redis_version("# Server\r\nredis_mode:standalone\r\n"), None);
        assert!(version_supported((6, 2, 0)));
        assert!(version_supported((6, 2, 14)));
        assert!(version_supported((7, 0, 0)));
        assert!(version_supported((10, 0, 0)));
        assert!(!version_supported((6, 0, 20)));
        assert!(!version_supported((6, 1, 99)));
        assert!(!version_supported((5, 9, 9)));
        assert!(!version_supported((2, 8, 0)));
        let (text, f) = version_finding(&info("6.0.9"), "redis://h:6379");
        let f = f.expect("a finding for 6.0.9");
        assert_eq!((f.id, f.level), ("E002", Level::Error));
        assert!(
            f.message.contains("6.0.9") && f.message.contains("6.2"),
            "{}",
            f.message
        );
        assert!(text.contains("too old"));
        assert_eq!(
            version_finding(&info("6.2.0"), "redis://h"),
            ("version 6.2.0".to_string(), None)
        );
        assert!(version_finding("", "redis://h").1.is_none());
    }

    #[test]
    fn eviction_policies() {
        assert!(evicting_policy("allkeys-lru"));
        assert!(evicting_policy("volatile-ttl"));
        assert!(!evicting_policy("noeviction"));
    }
}
