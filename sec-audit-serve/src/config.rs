//! The `[serve]` table of the enforcement configuration. The enforcement
//! loader keeps it raw ([`Config::serve`]); it is deserialized here (a serde
//! type, unknown keys refused) so every error names its key as
//! `serve.<key>`, with the line and column it was written at.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use axum::http::HeaderName;
use sec_audit_enforce::{Config, ConfigError};
use sec_audit_rules::config::{millis_in, optional_int_in};
use serde::de::{self, Deserializer};
use serde::Deserialize;

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

/// The `[serve]` table as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServeFile {
    listen: Option<Listen>,
    user_header: Option<Header>,
    session_header: Option<Header>,
    decide_status: Option<DecideStatusName>,
    #[serde(
        default,
        deserialize_with = "optional_int_in::<_, usize, 1024, 1073741824>"
    )]
    max_body_bytes: Option<usize>,
    #[serde(
        default,
        deserialize_with = "optional_int_in::<_, usize, 256, 1073741824>"
    )]
    max_line_bytes: Option<usize>,
    #[serde(
        default,
        deserialize_with = "optional_int_in::<_, usize, 1, 1073741824>"
    )]
    queue_capacity: Option<usize>,
    #[serde(default, deserialize_with = "optional_int_in::<_, usize, 1, 256>")]
    egress_workers: Option<usize>,
    #[serde(default, deserialize_with = "optional_millis::<_, 1, 3600000>")]
    shutdown_timeout_ms: Option<u64>,
    #[serde(default, deserialize_with = "optional_millis::<_, 1, 3600000>")]
    ready_timeout_ms: Option<u64>,
    output: Option<String>,
    console: Option<bool>,
    console_secure_cookie: Option<bool>,
}

fn optional_millis<'de, D: Deserializer<'de>, const LO: u64, const HI: u64>(
    d: D,
) -> Result<Option<u64>, D::Error> {
    millis_in::<D, LO, HI>(d).map(Some)
}

/// `address:port`.
struct Listen(SocketAddr);

impl<'de> Deserialize<'de> for Listen {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.trim().parse().map(Listen).map_err(|_| {
            de::Error::custom(format!(
                "`{s}` is not an address:port (e.g. 127.0.0.1:8787)"
            ))
        })
    }
}

/// A header name.
struct Header(HeaderName);

impl<'de> Deserialize<'de> for Header {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        HeaderName::try_from(s.trim())
            .map(Header)
            .map_err(|_| de::Error::custom(format!("`{s}` is not a valid header name")))
    }
}

/// `decide_status`.
struct DecideStatusName(DecideStatus);

impl<'de> Deserialize<'de> for DecideStatusName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match String::deserialize(d)?.as_str() {
            "forbidden" => Ok(DecideStatusName(DecideStatus::Forbidden)),
            "native" => Ok(DecideStatusName(DecideStatus::Native)),
            s => Err(de::Error::custom(format!(
                "unknown value `{s}` (expected \"forbidden\" or \"native\")"
            ))),
        }
    }
}

impl ServeConfig {
    /// The keys of the `[serve]` table, read from its serde type.
    pub fn keys() -> &'static [&'static str] {
        sec_audit_rules::config::struct_fields::<ServeFile>()
    }

    /// The `[serve]` table of `config` (defaults when it has none). Errors
    /// name the key as `serve.<key>` and where it was written.
    pub fn from_config(config: &Config) -> Result<ServeConfig, ConfigError> {
        let Some(table) = &config.serve else {
            return Ok(ServeConfig::default());
        };
        let f: ServeFile = config.section("serve", table)?;
        let d = ServeConfig::default();
        let max_body_bytes = f.max_body_bytes.unwrap_or(d.max_body_bytes);
        let max_line_bytes = f.max_line_bytes.unwrap_or(d.max_line_bytes);
        if max_line_bytes > max_body_bytes {
            return Err(config.source.locate(ConfigError::Invalid {
                key: "serve.max_line_bytes".into(),
                reason: format!("must not exceed serve.max_body_bytes ({max_body_bytes})"),
            }));
        }
        Ok(ServeConfig {
            listen: f.listen.map_or(d.listen, |l| l.0),
            user_header: f.user_header.map_or(d.user_header, |h| h.0),
            session_header: f.session_header.map_or(d.session_header, |h| h.0),
            decide_status: f.decide_status.map_or(d.decide_status, |s| s.0),
            max_body_bytes,
            max_line_bytes,
            queue_capacity: f.queue_capacity.unwrap_or(d.queue_capacity),
            egress_workers: f.egress_workers.unwrap_or(d.egress_workers),
            shutdown_timeout: f
                .shutdown_timeout_ms
                .map_or(d.shutdown_timeout, Duration::from_millis),
            ready_timeout: f
                .ready_timeout_ms
                .map_or(d.ready_timeout, Duration::from_millis),
            output: f.output.filter(|s| !s.trim().is_empty()).map(PathBuf::from),
            console: f.console.unwrap_or(d.console),
            console_secure_cookie: f.console_secure_cookie.unwrap_or(d.console_secure_cookie),
        })
    }

    /// Parses a `[serve]` table on its own.
    pub fn from_table(t: &toml::Table) -> Result<ServeConfig, ConfigError> {
        ServeConfig::from_config(&Config {
            serve: Some(t.clone()),
            ..Config::default()
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

    #[test]
    fn errors_are_located_and_durations_take_strings() {
        let e = parse("enabled = true\n[serve]\nlisten = \"127.0.0.1:1\"\nqueue_capacity = 0")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "line 4, column 1: configuration key `serve.queue_capacity`: must be 1-1073741824 (got 0)"
        );
        let e = parse("[serve]\n\nlistne = 1").unwrap_err().to_string();
        assert!(
            e.starts_with("line 3, column 1: ") && e.contains("`serve.listne`"),
            "{e}"
        );
        let c = parse("[serve]\nshutdown_timeout_ms = \"2s\"\nready_timeout_ms = 250").unwrap();
        assert_eq!(c.shutdown_timeout, Duration::from_secs(2));
        assert_eq!(c.ready_timeout, Duration::from_millis(250));
        assert!(parse("[serve]\nready_timeout_ms = \"2h\"")
            .unwrap_err()
            .to_string()
            .contains("`serve.ready_timeout_ms`"));
    }
}
