//! The command's errors and exit codes.
//!
//! | exit | meaning |
//! |---|---|
//! | 0 | the command completed (a replay that found attacks still exits 0) |
//! | 1 | a run-time failure: reading the log, writing the output, a store or server that did not answer, a live check that found a problem |
//! | 2 | a usage or configuration error: bad arguments, an unreadable or invalid configuration, a `check` that reports an error finding |
//! | 3 | a replay that completed, but store failures decided some outcomes (fail-open / fail-closed decisions, failed block writes): counted in the summary |
//! | 141 | standard output was closed by its reader (`… | head`): the command stopped quietly |

use std::fmt;
use std::path::Path;

use sec_audit_enforce::{BuildError, ConfigError};

/// Exit status of a successful command.
pub const EXIT_OK: u8 = 0;
/// Exit status of a run-time failure (I/O, store, server).
pub const EXIT_RUNTIME: u8 = 1;
/// Exit status of a usage or configuration error.
pub const EXIT_CONFIG: u8 = 2;
/// Exit status when standard output was closed by its reader: 128 +
/// SIGPIPE, what a shell reports for a command line tool stopped by a
/// closed pipe.
pub const EXIT_CLOSED: u8 = 141;
/// Exit status of a replay that completed while store failures decided some
/// of its outcomes (its summary counts them).
pub const EXIT_STORE_FAILURES: u8 = 3;

/// Why a command failed. Its message is one line naming the cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CliError {
    /// Bad usage or a bad configuration (exit 2).
    Config(String),
    /// An I/O, store or server failure (exit 1).
    Runtime(String),
    /// Standard output was closed by its reader: stop quietly (exit 141,
    /// no message).
    Closed,
}

impl CliError {
    pub fn config(msg: impl Into<String>) -> Self {
        CliError::Config(msg.into())
    }
    pub fn runtime(msg: impl Into<String>) -> Self {
        CliError::Runtime(msg.into())
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Config(_) => EXIT_CONFIG,
            CliError::Runtime(_) => EXIT_RUNTIME,
            CliError::Closed => EXIT_CLOSED,
        }
    }

    /// The configuration file failed to load or validate.
    pub fn from_config(path: &Path, e: &ConfigError) -> Self {
        match e {
            // The file's name is already in the message.
            ConfigError::Io { .. } => CliError::Config(e.to_string()),
            // `file:line:column: ...`
            ConfigError::At { at, .. } if at.file.is_some() => {
                CliError::Config(format!("configuration {e}"))
            }
            _ => CliError::Config(format!("configuration {}: {e}", path.display())),
        }
    }

    /// The runtime could not be built from the configuration.
    pub fn from_build(path: &Path, e: &BuildError) -> Self {
        match e {
            BuildError::Config(c) => Self::from_config(path, c),
            other => CliError::Config(format!("configuration {}: {other}", path.display())),
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let msg = match self {
            CliError::Config(m) | CliError::Runtime(m) => m,
            CliError::Closed => "standard output was closed",
        };
        f.write_str(&one_line(msg))
    }
}

impl std::error::Error for CliError {}

/// Collapses a message onto one line.
pub fn one_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for (i, part) in s
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .enumerate()
    {
        if i > 0 {
            out.push_str("; ");
        }
        out.push_str(part);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_one_line_and_codes_follow_the_kind() {
        let e = CliError::config("first\n  second\n\nthird");
        assert_eq!(e.to_string(), "first; second; third");
        assert_eq!(e.exit_code(), 2);
        assert_eq!(CliError::runtime("x").exit_code(), 1);
    }

    #[test]
    fn config_errors_name_the_file_and_key() {
        let e = CliError::from_config(
            Path::new("a.toml"),
            &ConfigError::UnknownKey("enabeld".into()),
        );
        assert_eq!(
            e.to_string(),
            "configuration a.toml: unknown configuration key `enabeld`"
        );
    }

    #[test]
    fn located_config_errors_name_the_file_once() {
        let e = CliError::from_config(
            Path::new("a.toml"),
            &ConfigError::At {
                at: sec_audit_enforce::config::Location {
                    file: Some("a.toml".into()),
                    line: 3,
                    column: 1,
                },
                error: Box::new(ConfigError::UnknownKey("enabeld".into())),
            },
        );
        assert_eq!(
            e.to_string(),
            "configuration a.toml:3:1: unknown configuration key `enabeld`"
        );
    }
}
