//! Small helpers shared by the commands: loading the configuration, output
//! writers that remember their first error, URL redaction, durations and
//! text tables.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use sec_audit_enforce::Config;

use crate::error::CliError;

/// Reads, parses and validates the configuration file (environment
/// overrides applied: `SEC_AUDIT_REDIS_URL`, `DATABASE_URL`).
pub fn load_config(path: &Path) -> Result<Config, CliError> {
    let config = Config::from_file(path).map_err(|e| CliError::from_config(path, &e))?;
    // The command knows only the built-in scopes: an unknown one is an
    // error before anything connects.
    config
        .validate_scopes(&sec_audit_rules::ScopeRegistry::builtin())
        .map_err(|e| CliError::from_config(path, &e))?;
    Ok(config)
}

/// Buffer between the records and the output target.
const OUTPUT_BUFFER: usize = 64 * 1024;

/// The first write error seen by a [`WatchedWriter`], shared with whoever
/// must notice it (the enforcement-record writer swallows errors after
/// logging them).
#[derive(Clone, Default)]
pub struct WriteWatch {
    failed: Arc<AtomicBool>,
    closed: Arc<AtomicBool>,
    first: Arc<Mutex<Option<String>>>,
}

impl WriteWatch {
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    /// Whether the first failure was a closed pipe (the reader went away):
    /// the command then stops quietly.
    pub fn closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    /// The first failure as the command's error: [`CliError::Closed`] for a
    /// closed pipe, else a run-time error naming `target`.
    pub fn to_error(&self, target: &str) -> Option<CliError> {
        if self.closed() {
            return Some(CliError::Closed);
        }
        self.error().map(|e| {
            CliError::runtime(format!(
                "writing enforcement records to {target} failed: {e}"
            ))
        })
    }

    /// The first error, as text.
    pub fn error(&self) -> Option<String> {
        if !self.failed() {
            return None;
        }
        match self.first.lock() {
            Ok(g) => g.clone(),
            Err(_) => Some("write failed".into()),
        }
    }

    fn record(&self, e: &io::Error) {
        if !self.failed.swap(true, Ordering::Relaxed) {
            if crate::out::is_closed(e) {
                self.closed.store(true, Ordering::Relaxed);
            }
            if let Ok(mut g) = self.first.lock() {
                *g = Some(e.to_string());
            }
        }
    }
}

/// A writer that records its first error in a [`WriteWatch`] and refuses
/// further writes after it. A closed pipe is recorded, and that write and
/// every later one are then discarded as written: the reader is gone, and
/// the enforcement-record writer would otherwise log one error per record
/// on the way out.
pub struct WatchedWriter {
    inner: Box<dyn Write + Send>,
    watch: WriteWatch,
}

impl WatchedWriter {
    pub fn new(inner: Box<dyn Write + Send>, watch: WriteWatch) -> Self {
        WatchedWriter { inner, watch }
    }
}

impl WatchedWriter {
    /// What a write returns once the watch has failed.
    fn refused(&self) -> io::Result<()> {
        if self.watch.closed() {
            Ok(())
        } else {
            Err(io::Error::other("an earlier write failed"))
        }
    }

    /// Records `e`; a closed pipe becomes a discarded write.
    fn failed_with(&self, e: io::Error) -> io::Result<()> {
        self.watch.record(&e);
        if self.watch.closed() {
            Ok(())
        } else {
            Err(e)
        }
    }
}

impl Write for WatchedWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.watch.failed() {
            return self.refused().map(|()| buf.len());
        }
        match self.inner.write(buf) {
            Ok(n) => Ok(n),
            Err(e) => self.failed_with(e).map(|()| buf.len()),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        if self.watch.failed() {
            return self.refused();
        }
        match self.inner.write_all(buf) {
            Ok(()) => Ok(()),
            Err(e) => self.failed_with(e),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.watch.failed() {
            return self.refused();
        }
        match self.inner.flush() {
            Ok(()) => Ok(()),
            Err(e) => self.failed_with(e),
        }
    }
}

/// Where enforcement records go: standard output, or a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputTarget {
    Stdout,
    /// Truncated when `append` is false.
    File {
        path: PathBuf,
        append: bool,
    },
}

impl OutputTarget {
    pub fn describe(&self) -> String {
        match self {
            OutputTarget::Stdout => "standard output".into(),
            OutputTarget::File { path, .. } => path.display().to_string(),
        }
    }

    /// Opens the target (creating the file) behind a watched writer, with
    /// a 64 KiB buffer: records reach the target in large writes, not one
    /// system call per line. A failed write is seen when the buffer goes
    /// out (at the latest on the final flush), and the run stops there.
    pub fn open(&self, watch: &WriteWatch) -> Result<WatchedWriter, CliError> {
        let inner: Box<dyn Write + Send> = match self {
            OutputTarget::Stdout => Box::new(io::stdout()),
            OutputTarget::File { path, append } => {
                let mut opts = std::fs::OpenOptions::new();
                opts.create(true);
                if *append {
                    opts.append(true);
                } else {
                    opts.write(true).truncate(true);
                }
                let f = opts.open(path).map_err(|e| {
                    CliError::runtime(format!("cannot open output {}: {e}", path.display()))
                })?;
                Box::new(f)
            }
        };
        let buffered: Box<dyn Write + Send> =
            Box::new(io::BufWriter::with_capacity(OUTPUT_BUFFER, inner));
        Ok(WatchedWriter::new(buffered, watch.clone()))
    }
}

/// A URL with its password (and any `password=` value) replaced by `***`,
/// safe to print: the store's [`sec_audit_store::redact_url`] (robust to a
/// password holding an unescaped `/`, `?`, `#` or `@`).
pub fn redact_url(url: &str) -> String {
    sec_audit_store::redact_url(url)
}

/// Parses a TTL: whole seconds, or a number with `s`, `m`, `h` or `d` —
/// the duration syntax of the configuration file
/// ([`sec_audit_rules::config::parse_duration_secs`]).
pub fn parse_ttl(s: &str) -> Result<u64, String> {
    let secs = sec_audit_rules::config::parse_duration_secs(s)?;
    if secs == 0 {
        return Err("must be greater than 0 (omit --ttl for a permanent block)".into());
    }
    Ok(secs)
}

/// A left-aligned text table; the last column is not padded.
pub fn table(header: &[&str], rows: &[Vec<String>], right_align: &[usize]) -> String {
    let cols = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate().take(cols) {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i > 0 {
                l.push_str("  ");
            }
            let pad = widths[i].saturating_sub(c.chars().count());
            if right_align.contains(&i) {
                l.push_str(&" ".repeat(pad));
                l.push_str(c);
            } else {
                l.push_str(c);
                if i + 1 < cells.len() {
                    l.push_str(&" ".repeat(pad));
                }
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
    out
}

/// Cuts `s` to at most `max` characters, marking the cut with `…`.
pub fn ellipsize(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The name of whoever runs the command, for `--actor` / `--revoked-by`
/// defaults.
pub fn default_actor() -> String {
    ["SUDO_USER", "USER", "LOGNAME"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()))
        .map_or_else(|| "sec-audit-cli".to_string(), |u| format!("cli:{u}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_passwords() {
        assert_eq!(
            redact_url("redis://:s3cret@host:6379/0"),
            "redis://:***@host:6379/0"
        );
        assert_eq!(
            redact_url("postgres://app:pw@db/x?sslmode=require"),
            "postgres://app:***@db/x?sslmode=require"
        );
        assert_eq!(
            redact_url("postgres://postgres@127.0.0.1:5432/test"),
            "postgres://postgres@127.0.0.1:5432/test"
        );
        assert_eq!(
            redact_url("redis://:p/w@host:6379/0"),
            "redis://:***@host:6379/0"
        );
        assert_eq!(
            redact_url("host=db password=pw dbname=x"),
            "host=db password=*** dbname=x"
        );
    }

    #[test]
    fn ttls_parse_with_units() {
        assert_eq!(parse_ttl("300"), Ok(300));
        assert_eq!(parse_ttl("90s"), Ok(90));
        assert_eq!(parse_ttl("15m"), Ok(900));
        assert_eq!(parse_ttl("2h"), Ok(7200));
        assert_eq!(parse_ttl("7D"), Ok(604_800));
        assert!(parse_ttl("0").is_err());
        assert!(parse_ttl("abc").is_err());
        assert!(parse_ttl("5w").is_err());
        assert!(parse_ttl("-5").is_err());
    }

    #[test]
    fn tables_align() {
        let t = table(
            &["a", "count", "z"],
            &[vec!["long-name".into(), "5".into(), "x".into()]],
            &[1],
        );
        assert_eq!(t, "a          count  z\nlong-name      5  x\n");
    }

    #[test]
    fn watched_writer_remembers_the_first_error() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::new(io::ErrorKind::BrokenPipe, "pipe closed"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let watch = WriteWatch::default();
        let mut w = WatchedWriter::new(Box::new(Broken), watch.clone());
        assert!(!watch.failed());
        // A closed pipe: recorded, and the writes discarded quietly (the
        // record writer would log every one of them otherwise).
        assert!(w.write_all(b"x").is_ok());
        assert!(watch.failed());
        assert_eq!(watch.error().as_deref(), Some("pipe closed"));
        assert!(watch.closed());
        assert!(w.write_all(b"y").is_ok());
        assert_eq!(watch.to_error("out"), Some(CliError::Closed));

        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let watch = WriteWatch::default();
        let mut w = WatchedWriter::new(Box::new(Full), watch.clone());
        assert!(w.write_all(b"x").is_err());
        assert!(w.write_all(b"x").is_err());
        assert!(!watch.closed());
        assert!(matches!(watch.to_error("out"), Some(CliError::Runtime(_))));
    }
}
