//! Checks that keep a configuration from silently disarming enforcement:
//! scope names that exist, URLs that parse (found without connecting, and
//! never echoing a password), and a bounded configuration file.

use std::io::Read;
use std::path::Path;

use sec_audit_rules::ScopeRegistry;

use crate::config::{Config, ConfigError};

/// The largest configuration file read (`check --config /dev/zero` ends at
/// once instead of growing to gigabytes).
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Schemes `redis_url` may use.
const REDIS_SCHEMES: [&str; 6] = ["redis", "rediss", "valkey", "valkeys", "redis+unix", "unix"];
/// Schemes `database_url` may use (or a libpq `key=value` string).
const POSTGRES_SCHEMES: [&str; 2] = ["postgres", "postgresql"];

/// Reads a configuration file of at most [`MAX_CONFIG_BYTES`].
pub fn read_bounded(path: &Path) -> Result<String, ConfigError> {
    let io = |reason: String| ConfigError::Io {
        path: path.display().to_string(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| io(e.kind().to_string()))?;
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| io(e.kind().to_string()))?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(io(format!(
            "larger than {} KiB: not a configuration file",
            MAX_CONFIG_BYTES / 1024
        )));
    }
    String::from_utf8(bytes).map_err(|_| io("not UTF-8 text".into()))
}

fn scheme_of(url: &str) -> Option<&str> {
    let (scheme, _) = url.split_once("://")?;
    let ok = !scheme.is_empty()
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-' || b == b'.');
    ok.then_some(scheme)
}

/// The `host[:port]` part of a URL after its scheme, without user info.
fn host_port(rest: &str) -> &str {
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    authority.rsplit_once('@').map_or(authority, |(_, hp)| hp)
}

/// Checks the port of `host[:port]` (IPv6 hosts in brackets).
fn port_ok(hp: &str) -> bool {
    let port = if let Some(rest) = hp.strip_prefix('[') {
        match rest.split_once(']') {
            Some((_, after)) => after.strip_prefix(':'),
            None => return false,
        }
    } else {
        hp.rsplit_once(':').map(|(_, p)| p)
    };
    port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0))
}

/// Why `redis_url` is invalid, in words that never repeat the URL (it may
/// carry a password).
fn redis_url_problem(url: &str) -> Option<String> {
    if url.chars().any(char::is_whitespace) {
        return Some("must not contain spaces".into());
    }
    let Some(scheme) = scheme_of(url) else {
        return Some("is not a URL (expected redis://host:port[/db])".into());
    };
    if !REDIS_SCHEMES.contains(&scheme) {
        return Some(format!(
            "scheme `{scheme}` is not a Redis scheme (expected redis://, rediss:// or redis+unix://)"
        ));
    }
    let rest = &url[scheme.len() + 3..];
    if scheme.ends_with("unix") {
        return rest.is_empty().then(|| "names no socket path".to_string());
    }
    let hp = host_port(rest);
    if hp.is_empty() || hp.starts_with(':') {
        return Some("names no host".into());
    }
    if !port_ok(hp) {
        return Some("has an invalid port".into());
    }
    let path = rest
        .find('/')
        .map(|i| &rest[i + 1..])
        .map(|p| p.split(['?', '#']).next().unwrap_or(""));
    if let Some(db) = path.filter(|p| !p.is_empty()) {
        if db.parse::<u32>().is_err() {
            return Some("database (the path) must be a number".into());
        }
    }
    // What the Redis client itself parses (it opens nothing here). TLS
    // schemes are left to the pool, which knows whether TLS is built in.
    let tls = scheme == "rediss" || scheme == "valkeys";
    if !tls && sec_audit_store::RedisConfig::new(url).validate().is_err() {
        return Some("is not a valid Redis URL".into());
    }
    None
}

/// Why `database_url` is invalid (never repeating the URL).
fn postgres_url_problem(url: &str) -> Option<String> {
    match scheme_of(url) {
        Some(scheme) if POSTGRES_SCHEMES.contains(&scheme) => {
            if url.chars().any(char::is_whitespace) {
                return Some("must not contain spaces".into());
            }
            let hp = host_port(&url[scheme.len() + 3..]);
            (!port_ok(hp)).then(|| "has an invalid port".to_string())
        }
        Some(scheme) => Some(format!(
            "scheme `{scheme}` is not a PostgreSQL scheme (expected postgres:// or postgresql://)"
        )),
        // A libpq key/value string: `host=db user=app dbname=x`.
        None if url.contains('=') => None,
        None => Some("is not a URL (expected postgres://user@host:port/db)".into()),
    }
}

impl Config {
    /// `redis_url` and `database_url`, when set, parse with a scheme their
    /// store accepts; checked without connecting. The error names the key
    /// and never the URL (it may carry a password).
    pub fn validate_urls(&self) -> Result<(), ConfigError> {
        if !self.redis_url.trim().is_empty() {
            if let Some(reason) = redis_url_problem(self.redis_url.trim()) {
                return Err(ConfigError::Invalid {
                    key: "redis_url".into(),
                    reason,
                });
            }
        }
        if !self.database_url.trim().is_empty() {
            if let Some(reason) = postgres_url_problem(self.database_url.trim()) {
                return Err(ConfigError::Invalid {
                    key: "database_url".into(),
                    reason,
                });
            }
        }
        Ok(())
    }

    /// Every scope named in `block_precedence` and `rule_actions.*.scopes`
    /// exists in `scopes` and may be blocked. An unknown name (`usr`) would
    /// otherwise turn blocking off for that rule without a word.
    pub fn validate_scopes(&self, scopes: &ScopeRegistry) -> Result<(), ConfigError> {
        self.check_scopes(scopes).map_err(|e| self.source.locate(e))
    }

    fn check_scopes(&self, scopes: &ScopeRegistry) -> Result<(), ConfigError> {
        let problem = |name: &str| -> Option<String> {
            match scopes.get(name) {
                None => Some(format!(
                    "unknown scope `{name}` (known: {})",
                    scopes.names().collect::<Vec<_>>().join(", ")
                )),
                Some(d) if !d.block_eligible() => Some(format!("scope `{name}` cannot be blocked")),
                Some(_) => None,
            }
        };
        for name in &self.block_precedence {
            if let Some(reason) = problem(name) {
                return Err(ConfigError::Invalid {
                    key: "block_precedence".into(),
                    reason,
                });
            }
        }
        for (rule, spec) in &self.rule_actions {
            for name in spec.scopes.iter().flatten() {
                if let Some(reason) = problem(name) {
                    return Err(ConfigError::Invalid {
                        key: format!("rule_actions.{rule}.scopes"),
                        reason,
                    });
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_urls() {
        for ok in [
            "redis://127.0.0.1:6379",
            "redis://127.0.0.1:6379/2",
            "redis://:pw@host",
            "redis://user:pw@[::1]:6380/0",
            "rediss://managed.example:6380",
            "redis+unix:///run/redis.sock",
        ] {
            assert_eq!(redis_url_problem(ok), None, "{ok}");
        }
        for bad in [
            "127.0.0.1:6379",
            "http://127.0.0.1:6379",
            "postgres://h/db",
            "redis://",
            "redis://:6379",
            "redis://host:99999",
            "redis://host:port",
            "redis://host/abc",
            "redis://ho st",
            "redis+unix://",
        ] {
            assert!(redis_url_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn postgres_urls() {
        for ok in [
            "postgres://postgres@127.0.0.1:5432/test",
            "postgresql://app:pw@db/x?sslmode=require",
            "postgres:///db",
            "host=db user=app password=pw dbname=x",
        ] {
            assert_eq!(postgres_url_problem(ok), None, "{ok}");
        }
        for bad in ["redis://h", "mysql://h/db", "just text", "postgres://h:0/x"] {
            assert!(postgres_url_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn unknown_or_unblockable_scopes_are_errors_naming_the_key() {
        let err = |toml: &str| {
            Config::from_toml_str(toml)
                .unwrap()
                .validate_scopes(&ScopeRegistry::builtin())
                .unwrap_err()
                .to_string()
        };
        let e = err("[rule_actions]\nbrute_force_login = { scopes = [\"usr\"] }");
        assert!(
            e.contains("`rule_actions.brute_force_login.scopes`") && e.contains("`usr`"),
            "{e}"
        );
        let e = err("block_precedence = [\"ip\", \"sesion\"]");
        assert!(
            e.contains("`block_precedence`") && e.contains("`sesion`"),
            "{e}"
        );
        let e = err("[rule_actions]\nx = { action = \"temp_block\", scopes = [\"route\"] }");
        assert!(e.contains("cannot be blocked"), "{e}");
        let ok = Config::from_toml_str(
            "block_precedence = [\"session\"]\n[rule_actions]\nbrute_force_login = { scopes = [\"ip\", \"user\"] }",
        )
        .unwrap();
        assert!(ok.validate_scopes(&ScopeRegistry::builtin()).is_ok());
        // A custom scope is known to the registry that has it.
        let mut custom = ScopeRegistry::builtin();
        custom
            .add(sec_audit_rules::ScopeDef::custom(
                "tenant",
                true,
                |_| vec![],
            ))
            .unwrap();
        let c =
            Config::from_toml_str("[rule_actions]\nbrute_force_login = { scopes = [\"tenant\"] }")
                .unwrap();
        assert!(c.validate_scopes(&custom).is_ok());
        assert!(c.validate_scopes(&ScopeRegistry::builtin()).is_err());
    }

    #[test]
    fn the_configuration_file_is_read_with_a_bound() {
        let started = std::time::Instant::now();
        let e = Config::from_file(Path::new("/dev/zero")).unwrap_err();
        assert!(matches!(e, ConfigError::Io { .. }), "{e}");
        assert!(e.to_string().contains("larger than"), "{e}");
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
    }

    #[test]
    fn url_errors_never_echo_the_password() {
        for (redis, db) in [
            ("http://:s3cret@host:6379", ""),
            ("redis://:s3cret@host:99999", ""),
            ("redis://:s3cret@host/xyz", ""),
            ("", "mysql://app:s3cret@db/x"),
            ("", "postgres://app:s3cret@db:70000/x"),
        ] {
            let c = Config {
                redis_url: redis.into(),
                database_url: db.into(),
                ..Config::default()
            };
            let e = c.validate_urls().expect_err("invalid").to_string();
            assert!(!e.contains("s3cret"), "{e}");
            assert!(e.contains("redis_url") || e.contains("database_url"), "{e}");
        }
    }
}
