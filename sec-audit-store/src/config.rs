//! Connection settings for the Redis and Postgres backends.
//!
//! Building a config or a store from it never opens a connection: stores
//! connect lazily, on their first command, so configuration validation and
//! `check` work while the servers are down.

use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::Duration;

use redis::{ConnectionAddr, IntoConnectionInfo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use crate::block::StoreError;

/// Upper bound on a `tls_ca_file` (a CA bundle is a few hundred kB at most).
pub const MAX_CA_FILE_BYTES: u64 = 4 << 20;

/// The default Redis key namespace.
pub const DEFAULT_KEY_PREFIX: &str = "sec_audit";

/// Redis connection settings. `Debug` masks the URL's password.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// `redis://[user:password@]host[:port][/db]`, `rediss://…` (TLS) or
    /// `redis+unix://…`.
    pub url: String,
    /// Every key this crate writes starts with `{key_prefix}:`.
    pub key_prefix: String,
    /// Bound on opening a connection (TCP connect + handshake), and on how
    /// long a caller waits for a pooled connection.
    pub connect_timeout: Duration,
    /// Read and write timeout of every command on an open connection.
    pub command_timeout: Duration,
    /// Maximum number of pooled connections.
    pub pool_size: u32,
    /// After a failed connect, calls fail at once for this long instead of
    /// each waiting `connect_timeout` (zero: never fail fast).
    pub failure_backoff: Duration,
    /// `rediss://` only: a PEM file of the CA certificate(s) that signed the
    /// server's certificate (a private CA). When set, only these are
    /// trusted; when unset, the Mozilla root store compiled in
    /// (`webpki-roots`), the same on every host.
    pub tls_ca_file: Option<PathBuf>,
}

/// `url` with the password masked (`scheme://user:***@host…`, and any
/// `password=…` parameter), for logs and messages.
///
/// The user information ends at the **last** `@` after `://`, not at the
/// first `/`, `?` or `#`: a password holding one of those unescaped (e.g.
/// `redis://:p/w@h`) is masked whole. An `@` later in the path or query
/// makes it mask more than the password, never less.
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_string();
    if let Some(scheme_end) = out.find("://") {
        let start = scheme_end + 3;
        if let Some(at) = out[start..].rfind('@') {
            // A user name holds no unescaped `:`: the password starts
            // after the first one.
            if let Some(colon) = out[start..start + at].find(':') {
                out.replace_range(start + colon + 1..start + at, "***");
            }
        }
    }
    let mut from = 0;
    while let Some(i) = out[from..].find("password=") {
        let begin = from + i + "password=".len();
        let end = out[begin..]
            .find(['&', ' '])
            .map_or(out.len(), |j| begin + j);
        out.replace_range(begin..end, "***");
        from = begin + 3;
    }
    out
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &redact_url(&self.url))
            .field("key_prefix", &self.key_prefix)
            .field("connect_timeout", &self.connect_timeout)
            .field("command_timeout", &self.command_timeout)
            .field("pool_size", &self.pool_size)
            .field("failure_backoff", &self.failure_backoff)
            .field("tls_ca_file", &self.tls_ca_file)
            .finish()
    }
}

impl std::fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("url", &redact_url(&self.url))
            .field("connect_timeout", &self.connect_timeout)
            .field("statement_timeout", &self.statement_timeout)
            .field("pool_size", &self.pool_size)
            .field("search_path", &self.search_path)
            .field("failure_backoff", &self.failure_backoff)
            .finish()
    }
}

/// Installs rustls' process-wide crypto provider (ring) once. The redis
/// crate's rustls enables none itself.
fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Err only when another provider is already installed: it is used.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

impl RedisConfig {
    /// Defaults: prefix `sec_audit`, connect timeout 1 s, command timeout
    /// 1 s, 16 connections, failure back-off 1 s, no private CA.
    pub fn new(url: impl Into<String>) -> Self {
        RedisConfig {
            url: url.into(),
            key_prefix: DEFAULT_KEY_PREFIX.to_string(),
            connect_timeout: Duration::from_secs(1),
            command_timeout: Duration::from_secs(1),
            pool_size: 16,
            failure_backoff: Duration::from_secs(1),
            tls_ca_file: None,
        }
    }

    /// Trust only the CA certificate(s) in this PEM file (`rediss://`).
    pub fn with_tls_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.tls_ca_file = Some(path.into());
        self
    }

    /// Whether the URL asks for TLS (`rediss://`).
    pub fn is_tls(&self) -> bool {
        matches!(
            self.url
                .as_str()
                .into_connection_info()
                .map(|i| i.addr().clone()),
            Ok(ConnectionAddr::TcpTls { .. })
        )
    }

    /// The `redis::Client` for these settings, TLS included (`rediss://`
    /// with rustls, the private CA of `tls_ca_file`). Opens no connection
    /// (it reads `tls_ca_file`). The blocking pool uses it; an async
    /// connection (the redis crate's `tokio-rustls-comp`) can be opened from
    /// the same client and then verifies the server the same way.
    ///
    /// Errors never contain the URL (it may hold a password).
    pub fn client(&self) -> Result<redis::Client, StoreError> {
        let info = self
            .url
            .as_str()
            .into_connection_info()
            .map_err(|e| StoreError::Invalid(format!("redis url: {e}")))?;
        let tls = match info.addr() {
            ConnectionAddr::TcpTls { insecure: true, .. } => {
                return Err(StoreError::Invalid(
                    "redis url: `#insecure` (TLS without certificate verification) is not supported; trust a private CA with tls_ca_file".into(),
                ))
            }
            ConnectionAddr::TcpTls { .. } => true,
            _ => false,
        };
        if tls {
            install_crypto_provider();
        }
        match (&self.tls_ca_file, tls) {
            (None, _) => redis::Client::open(info)
                .map_err(|e| StoreError::Invalid(format!("redis url: {e}"))),
            (Some(_), false) => Err(StoreError::Invalid(
                "redis tls_ca_file is set but the url is not rediss:// (TLS)".into(),
            )),
            (Some(path), true) => {
                let pem = read_ca_file(path).map_err(|reason| {
                    StoreError::Invalid(format!("redis tls_ca_file {}: {reason}", path.display()))
                })?;
                redis::Client::build_with_tls(
                    info,
                    redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(pem),
                    },
                )
                .map_err(|e| {
                    StoreError::Invalid(format!("redis tls_ca_file {}: {e}", path.display()))
                })
            }
        }
    }

    pub fn with_failure_backoff(mut self, backoff: Duration) -> Self {
        self.failure_backoff = backoff;
        self
    }

    pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    pub fn with_command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }

    pub fn with_pool_size(mut self, size: u32) -> Self {
        self.pool_size = size;
        self
    }

    /// Checks the settings without connecting.
    pub fn validate(&self) -> Result<(), StoreError> {
        if self.key_prefix.is_empty() {
            return Err(StoreError::Invalid(
                "redis key_prefix must not be empty".into(),
            ));
        }
        check_common(
            self.connect_timeout,
            self.command_timeout,
            self.pool_size,
            "redis",
        )?;
        self.client().map(|_| ())
    }
}

/// Reads a PEM CA file, bounded in size ([`MAX_CA_FILE_BYTES`]), holding
/// at least one certificate. The error is the reason, without the path.
fn read_ca_file(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| e.kind().to_string())?;
    let mut pem = Vec::new();
    file.take(MAX_CA_FILE_BYTES + 1)
        .read_to_end(&mut pem)
        .map_err(|e| e.kind().to_string())?;
    if pem.len() as u64 > MAX_CA_FILE_BYTES {
        return Err(format!("larger than {MAX_CA_FILE_BYTES} bytes"));
    }
    let mut certs = 0usize;
    for cert in CertificateDer::pem_slice_iter(&pem) {
        cert.map_err(|e| format!("not a PEM certificate file ({e})"))?;
        certs += 1;
    }
    if certs == 0 {
        return Err("holds no PEM certificate".into());
    }
    Ok(pem)
}

/// Checks a `tls_ca_file` without connecting: readable, bounded, at least
/// one PEM certificate. The error is the reason (without the path).
pub fn check_tls_ca_file(path: &Path) -> Result<(), String> {
    read_ca_file(path).map(|_| ())
}

/// Postgres connection settings. `Debug` masks the URL's password.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresConfig {
    /// A libpq connection string: `postgres://user@host:port/db?…` or
    /// `host=… dbname=…`. `connect_timeout` and `tcp_user_timeout` are added
    /// when absent.
    pub url: String,
    /// Bound on opening a connection (libpq rounds it up to whole seconds,
    /// 2 s at least) and on how long a caller waits for a pooled connection.
    pub connect_timeout: Duration,
    /// `statement_timeout` set on every connection.
    pub statement_timeout: Duration,
    /// Maximum number of pooled connections.
    pub pool_size: u32,
    /// When set, `SET search_path TO …` on every connection (the table and
    /// diesel's migration bookkeeping then live in that schema).
    pub search_path: Option<String>,
    /// After a failed connect, calls fail at once for this long instead of
    /// each waiting `connect_timeout` (zero: never fail fast).
    pub failure_backoff: Duration,
}

impl PostgresConfig {
    /// Defaults: connect timeout 2 s, statement timeout 2 s, 8 connections,
    /// the server's search path, failure back-off 1 s.
    pub fn new(url: impl Into<String>) -> Self {
        PostgresConfig {
            url: url.into(),
            connect_timeout: Duration::from_secs(2),
            statement_timeout: Duration::from_secs(2),
            pool_size: 8,
            search_path: None,
            failure_backoff: Duration::from_secs(1),
        }
    }

    pub fn with_failure_backoff(mut self, backoff: Duration) -> Self {
        self.failure_backoff = backoff;
        self
    }

    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    pub fn with_statement_timeout(mut self, timeout: Duration) -> Self {
        self.statement_timeout = timeout;
        self
    }

    pub fn with_pool_size(mut self, size: u32) -> Self {
        self.pool_size = size;
        self
    }

    pub fn with_search_path(mut self, schema: impl Into<String>) -> Self {
        self.search_path = Some(schema.into());
        self
    }

    /// Checks the settings without connecting.
    pub fn validate(&self) -> Result<(), StoreError> {
        if self.url.trim().is_empty() {
            return Err(StoreError::Invalid("postgres url must not be empty".into()));
        }
        check_common(
            self.connect_timeout,
            self.statement_timeout,
            self.pool_size,
            "postgres",
        )?;
        if let Some(s) = &self.search_path {
            if s.is_empty() || s.contains('"') || s.contains('\0') {
                return Err(StoreError::Invalid(
                    "postgres search_path: empty or contains a quote".into(),
                ));
            }
        }
        Ok(())
    }

    /// The URL with `connect_timeout` added when it names none.
    pub(crate) fn libpq_url(&self) -> String {
        let secs = self.connect_timeout.as_secs_f64().ceil().max(1.0) as u64;
        // Unacknowledged data (a partitioned network) closes the connection
        // instead of blocking a caller.
        let user_ms = self.connect_timeout.max(self.statement_timeout).as_millis() + 1000;
        let mut params = Vec::new();
        if !self.url.contains("connect_timeout") {
            params.push(format!("connect_timeout={secs}"));
        }
        if !self.url.contains("tcp_user_timeout") {
            params.push(format!("tcp_user_timeout={user_ms}"));
        }
        let url = self.url.trim();
        if params.is_empty() {
            return url.to_string();
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let sep = if url.contains('?') { '&' } else { '?' };
            format!("{url}{sep}{}", params.join("&"))
        } else {
            format!("{url} {}", params.join(" "))
        }
    }
}

fn check_common(
    connect: Duration,
    command: Duration,
    pool_size: u32,
    what: &str,
) -> Result<(), StoreError> {
    if connect.is_zero() || command.is_zero() {
        return Err(StoreError::Invalid(format!("{what} timeouts must be > 0")));
    }
    if pool_size == 0 {
        return Err(StoreError::Invalid(format!("{what} pool_size must be > 0")));
    }
    Ok(())
}

/// Settings of the tiered store's Redis side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TieredOptions {
    /// TTL (seconds) of a permanent entry cached in Redis.
    pub permanent_cache_ttl: u64,
    /// TTL (seconds) of the mirror of active permanent bans. When it lapses
    /// the next lookup rebuilds the mirror from Postgres.
    pub mirror_ttl: u64,
}

impl Default for TieredOptions {
    /// `permanent_cache_ttl` 3600 s, `mirror_ttl` 86 400 s.
    fn default() -> Self {
        TieredOptions {
            permanent_cache_ttl: 3600,
            mirror_ttl: 86_400,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_validate_without_connecting() {
        assert!(RedisConfig::new("redis://127.0.0.1:1").validate().is_ok());
        assert!(RedisConfig::new("nope://x").validate().is_err());
        assert!(RedisConfig::new("redis://x")
            .with_key_prefix("")
            .validate()
            .is_err());
        assert!(RedisConfig::new("redis://x")
            .with_pool_size(0)
            .validate()
            .is_err());
        assert!(RedisConfig::new("redis://x")
            .with_command_timeout(Duration::ZERO)
            .validate()
            .is_err());
        assert!(PostgresConfig::new("postgres://u@h/db").validate().is_ok());
        assert!(PostgresConfig::new("").validate().is_err());
        assert!(PostgresConfig::new("postgres://h")
            .with_search_path("a\"b")
            .validate()
            .is_err());
    }

    #[test]
    fn debug_output_masks_passwords() {
        assert_eq!(
            redact_url("rediss://:s3cret@h:6380/0"),
            "rediss://:***@h:6380/0"
        );
        assert_eq!(redact_url("redis://app:s3cret@h"), "redis://app:***@h");
        assert_eq!(redact_url("redis://h:6379"), "redis://h:6379");
        assert_eq!(
            redact_url("host=db password=pw dbname=x"),
            "host=db password=*** dbname=x"
        );
        assert_eq!(
            redact_url("postgres://u@db/x?password=pw&sslmode=require"),
            "postgres://u@db/x?password=***&sslmode=require"
        );
        // Unescaped `/`, `?`, `#`, `@` in the password: masked whole.
        for (url, want) in [
            ("redis://:p/w@h", "redis://:***@h"),
            ("redis://:p/w@h:6379/0", "redis://:***@h:6379/0"),
            ("redis://u:p?w@h/0", "redis://u:***@h/0"),
            ("rediss://:p#w@h:6380", "rediss://:***@h:6380"),
            ("redis://u:p@w@h", "redis://u:***@h"),
            (
                "postgres://u:a/b?c#d@db:5432/x",
                "postgres://u:***@db:5432/x",
            ),
        ] {
            assert_eq!(redact_url(url), want, "{url}");
        }
        // No user information: unchanged, even with an `@` in the query.
        assert_eq!(redact_url("redis://h/0?x=a@b"), "redis://h/0?x=a@b");
        let r = format!("{:?}", RedisConfig::new("rediss://:p/s3cret@h:6380"));
        assert!(!r.contains("s3cret"), "{r}");
        let r = format!("{:?}", RedisConfig::new("rediss://u:s3cret@h:6380"));
        assert!(!r.contains("s3cret") && r.contains("u:***@h"), "{r}");
        let p = format!("{:?}", PostgresConfig::new("postgres://u:s3cret@db/x"));
        assert!(!p.contains("s3cret"), "{p}");
    }

    #[test]
    fn connect_timeout_is_added_to_the_url() {
        let c = PostgresConfig::new("postgres://u@h/db")
            .with_connect_timeout(Duration::from_millis(1500));
        assert_eq!(
            c.libpq_url(),
            "postgres://u@h/db?connect_timeout=2&tcp_user_timeout=3000"
        );
        let c = PostgresConfig::new("postgres://u@h/db?sslmode=disable");
        assert_eq!(
            c.libpq_url(),
            "postgres://u@h/db?sslmode=disable&connect_timeout=2&tcp_user_timeout=3000"
        );
        let c = PostgresConfig::new("host=h dbname=d");
        assert_eq!(
            c.libpq_url(),
            "host=h dbname=d connect_timeout=2 tcp_user_timeout=3000"
        );
        let c = PostgresConfig::new("postgres://h/d?connect_timeout=9&tcp_user_timeout=5");
        assert_eq!(
            c.libpq_url(),
            "postgres://h/d?connect_timeout=9&tcp_user_timeout=5"
        );
    }
}
