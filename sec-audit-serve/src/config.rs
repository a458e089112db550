//! The `[serve]` table of the enforcement configuration. The enforcement
//! loader keeps it raw ([`Config::serve`]); it is parsed here so every error
//! names its key as `serve.<key>`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use axum::http::HeaderName;
use sec_audit_enforce::{Config, ConfigError};
use toml::Value;

/// What `/v1/decide` answers on a deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecideStatus {
    /// `403` (what every proxy's forward-auth understands), the block's own
    /// status in `X-Sec-Audit-Status`.
    Forbidden,
    /// The block's status itself (e.g. `429`): for Traefik and Envoy, which
    /// pass the auth answer through to the client.
    Native,
}

/// The settings of `sec-audit serve`.
#[derive(Debug, Clone, PartialEq)]
pub struct ServeConfig {
    /// Where to listen (default `127.0.0.1:8787`).
    pub listen: SocketAddr,
    /// The header a proxy puts the authenticated user in.
    pub user_header: HeaderName,
    /// The header a proxy puts the audit session id in.
    pub session_header: HeaderName,
    pub decide_status: DecideStatus,
    /// Largest request body of `/v1/events`, `/v1/logs` and `/v1/blocks`;
    /// larger ones get `413` before anything is parsed.
    pub max_body_bytes: usize,
    /// Largest single JSONL line of `/v1/events`; longer lines are rejected.
    pub max_line_bytes: usize,
    /// Events waiting for egress, at most (a full queue answers `503`).
    pub queue_capacity: usize,
    /// Threads running egress (`Runtime::handle_event`).
    pub egress_workers: usize,
    /// How long shutdown waits for open connections and then for the queue
    /// to drain.
    pub shutdown_timeout: Duration,
    /// How long `/readyz` waits for the block store.
    pub ready_timeout: Duration,
    /// The JSONL trail of enforcement records (appended); `None`: standard
    /// output.
    pub output: Option<PathBuf>,
    /// The operator console under `/ui/` (on by default; it needs the admin
    /// or read token like the block API).
    pub console: bool,
    /// Mark the console's cookies `Secure`: set it when the console is
    /// reached over HTTPS (a TLS-terminating proxy in front of serve, which
    /// itself speaks plain HTTP).
    pub console_secure_cookie: bool,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8787)),
            user_header: HeaderName::from_static("x-audit-user"),
            session_header: HeaderName::from_static("x-audit-session"),
            decide_status: DecideStatus::Forbidden,
            max_body_bytes: 1 << 20,
            max_line_bytes: 64 << 10,
            queue_capacity: 10_000,
            egress_workers: 2,
            shutdown_timeout: Duration::from_secs(10),
            ready_timeout: Duration::from_secs(1),
            output: None,
            console: true,
            console_secure_cookie: false,
        }
    }
}

const KEYS: [&str; 13] = [
    "listen",
    "user_header",
    "session_header",
    "decide_status",
    "max_body_bytes",
    "max_line_bytes",
    "queue_capacity",
    "egress_workers",
    "shutdown_timeout_ms",
    "ready_timeout_ms",
    "output",
    "console",
    "console_secure_cookie",
];

fn key(k: &str) -> String {
    format!("serve.{k}")
}

fn string<'a>(t: &'a toml::Table, k: &str) -> Result<Option<&'a str>, ConfigError> {
    match t.get(k) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ConfigError::WrongType {
            key: key(k),
            expected: "a string",
        }),
    }
}

fn boolean(t: &toml::Table, k: &str, default: bool) -> Result<bool, ConfigError> {
    match t.get(k) {
        None => Ok(default),
        Some(Value::Boolean(b)) => Ok(*b),
        Some(_) => Err(ConfigError::WrongType {
            key: key(k),
            expected: "a boolean",
        }),
    }
}

fn int(t: &toml::Table, k: &str, min: i64, max: i64) -> Result<Option<u64>, ConfigError> {
    match t.get(k) {
        None => Ok(None),
        Some(Value::Integer(i)) if (min..=max).contains(i) => Ok(Some(*i as u64)),
        Some(Value::Integer(i)) => Err(ConfigError::Invalid {
            key: key(k),
            reason: format!("must be {min}-{max} (got {i})"),
        }),
        Some(_) => Err(ConfigError::WrongType {
            key: key(k),
            expected: "an integer",
        }),
    }
}

fn header(t: &toml::Table, k: &str, default: &HeaderName) -> Result<HeaderName, ConfigError> {
    match string(t, k)? {
        None => Ok(default.clone()),
        Some(s) => HeaderName::try_from(s.trim()).map_err(|_| ConfigError::Invalid {
            key: key(k),
            reason: format!("`{s}` is not a valid header name"),
        }),
    }
}

impl ServeConfig {
    /// The `[serve]` table of `config` (defaults when it has none).
    pub fn from_config(config: &Config) -> Result<ServeConfig, ConfigError> {
        config
            .serve
            .as_ref()
            .map_or_else(|| Ok(ServeConfig::default()), ServeConfig::from_table)
    }

    /// Parses a `[serve]` table.
    pub fn from_table(t: &toml::Table) -> Result<ServeConfig, ConfigError> {
        if let Some(k) = t.keys().find(|k| !KEYS.contains(&k.as_str())) {
            return Err(ConfigError::UnknownKey(key(k)));
        }
        let d = ServeConfig::default();
        let listen = match string(t, "listen")? {
            None => d.listen,
            Some(s) => s.trim().parse().map_err(|_| ConfigError::Invalid {
                key: key("listen"),
                reason: format!("`{s}` is not an address:port (e.g. 127.0.0.1:8787)"),
            })?,
        };
        let decide_status = match string(t, "decide_status")? {
            None => d.decide_status,
            Some("forbidden") => DecideStatus::Forbidden,
            Some("native") => DecideStatus::Native,
            Some(s) => {
                return Err(ConfigError::Invalid {
                    key: key("decide_status"),
                    reason: format!("unknown value `{s}` (expected \"forbidden\" or \"native\")"),
                })
            }
        };
        let size = |k: &str, default: usize, min: i64| -> Result<usize, ConfigError> {
            Ok(int(t, k, min, 1 << 30)?.map_or(default, |v| v as usize))
        };
        let ms = |k: &str, default: Duration| -> Result<Duration, ConfigError> {
            Ok(int(t, k, 1, 3_600_000)?.map_or(default, Duration::from_millis))
        };
        let max_body_bytes = size("max_body_bytes", d.max_body_bytes, 1024)?;
        let max_line_bytes = size("max_line_bytes", d.max_line_bytes, 256)?;
        if max_line_bytes > max_body_bytes {
            return Err(ConfigError::Invalid {
                key: key("max_line_bytes"),
                reason: format!("must not exceed serve.max_body_bytes ({max_body_bytes})"),
            });
        }
        Ok(ServeConfig {
            listen,
            user_header: header(t, "user_header", &d.user_header)?,
            session_header: header(t, "session_header", &d.session_header)?,
            decide_status,
            max_body_bytes,
            max_line_bytes,
            queue_capacity: size("queue_capacity", d.queue_capacity, 1)?,
            egress_workers: int(t, "egress_workers", 1, 256)?
                .map_or(d.egress_workers, |v| v as usize),
            shutdown_timeout: ms("shutdown_timeout_ms", d.shutdown_timeout)?,
            ready_timeout: ms("ready_timeout_ms", d.ready_timeout)?,
            output: string(t, "output")?
                .filter(|s| !s.trim().is_empty())
                .map(PathBuf::from),
            console: boolean(t, "console", d.console)?,
            console_secure_cookie: boolean(t, "console_secure_cookie", d.console_secure_cookie)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ServeConfig, ConfigError> {
        ServeConfig::from_config(&Config::from_toml_str(text)?)
    }

    #[test]
    fn defaults() {
        let c = parse("").unwrap();
        assert_eq!(c, ServeConfig::default());
        assert_eq!(c.listen.to_string(), "127.0.0.1:8787");
        assert_eq!(c.user_header.as_str(), "x-audit-user");
        assert_eq!(c.session_header.as_str(), "x-audit-session");
        assert_eq!(c.decide_status, DecideStatus::Forbidden);
    }

    #[test]
    fn a_full_table_parses() {
        let c = parse(
            "[serve]\nlisten = \"127.0.0.1:9000\"\nuser_header = \"X-User\"\n\
             session_header = \"X-Sess\"\ndecide_status = \"native\"\nmax_body_bytes = 4096\n\
             max_line_bytes = 1024\nqueue_capacity = 5\negress_workers = 3\n\
             shutdown_timeout_ms = 200\nready_timeout_ms = 300\noutput = \"trail.jsonl\"\n\
             console = false\nconsole_secure_cookie = true",
        )
        .unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.user_header.as_str(), "x-user");
        assert_eq!(c.decide_status, DecideStatus::Native);
        assert_eq!((c.max_body_bytes, c.max_line_bytes), (4096, 1024));
        assert_eq!((c.queue_capacity, c.egress_workers), (5, 3));
        assert_eq!(c.shutdown_timeout, Duration::from_millis(200));
        assert_eq!(c.ready_timeout, Duration::from_millis(300));
        assert_eq!(c.output, Some(PathBuf::from("trail.jsonl")));
        assert!(!c.console && c.console_secure_cookie);
    }

    #[test]
    fn errors_name_the_key() {
        let err = |t: &str| parse(t).unwrap_err().to_string();
        assert!(err("[serve]\nlistne = 1").contains("`serve.listne`"));
        assert!(err("[serve]\nlisten = \"nowhere\"").contains("`serve.listen`"));
        assert!(err("[serve]\nlisten = 8787").contains("`serve.listen`"));
        assert!(err("[serve]\ndecide_status = \"teapot\"").contains("`serve.decide_status`"));
        assert!(err("[serve]\nuser_header = \"a b\"").contains("`serve.user_header`"));
        assert!(err("[serve]\nqueue_capacity = 0").contains("`serve.queue_capacity`"));
        assert!(err("[serve]\negress_workers = 0").contains("`serve.egress_workers`"));
        assert!(err("[serve]\nconsole = \"yes\"").contains("`serve.console`"));
        assert!(err("[serve]\nmax_body_bytes = 2000\nmax_line_bytes = 4000")
            .contains("`serve.max_line_bytes`"));
    }
}
