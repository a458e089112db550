//! `sec-audit check`: the configuration check (enforcement.md), and with
//! `--live` a probe of the configured Redis and Postgres.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sec_audit_core::SystemClock;
use sec_audit_enforce::{check, Config, Finding, Level};
use sec_audit_store::{PostgresBlockStore, PostgresConfig};

use crate::error::{CliError, EXIT_CONFIG, EXIT_OK, EXIT_RUNTIME};
use crate::util::redact_url;

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

/// Probes Redis: reachability (PING) and the eviction policy.
fn probe_redis(config: &Config, findings: &mut Vec<Finding>) -> LiveLine {
    let url = redact_url(&config.redis_url);
    let (connect, command) = timeouts(config);
    let client = match redis::Client::open(config.redis_url.as_str()) {
        Ok(c) => c,
        Err(e) => return LiveLine::err(format!("redis url {url} is invalid: {e}")),
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
                "redis reachable at {url} (connect + PING {rtt:.1} ms), maxmemory-policy {policy}"
            ))
        }
        Err(e) => LiveLine::ok(format!(
            "redis reachable at {url} (connect + PING {rtt:.1} ms); maxmemory-policy unknown: {e}"
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
/// not answer (or Postgres lacks its migrations), since the replay itself
/// would fail open on every event and report nothing useful.
pub fn preflight(config: &Config) -> Result<(), CliError> {
    let mut ignored = Vec::new();
    if !config.redis_url.trim().is_empty() {
        let l = probe_redis(config, &mut ignored);
        if !l.ok {
            return Err(CliError::runtime(l.text));
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

/// Runs `sec-audit check`; returns the exit status.
pub fn run(config_path: &Path, live: bool) -> Result<u8, CliError> {
    let config = match crate::util::load_config(config_path) {
        Ok(c) => c,
        Err(e) => {
            crate::outln!("E001 error: {e}")?;
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
    }
    findings.sort_by(|a, b| b.level.cmp(&a.level).then(a.id.cmp(b.id)));
    for f in &findings {
        crate::outln!("{}", crate::error::one_line(&f.to_string()))?;
    }
    for l in &live_lines {
        crate::outln!("{}", crate::error::one_line(&l.to_string()))?;
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
    crate::errln!("{summary}");
    Ok(if errors > 0 {
        EXIT_CONFIG
    } else if live_errors > 0 {
        EXIT_RUNTIME
    } else {
        EXIT_OK
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eviction_policies() {
        assert!(evicting_policy("allkeys-lru"));
        assert!(evicting_policy("volatile-ttl"));
        assert!(!evicting_policy("noeviction"));
    }
}
