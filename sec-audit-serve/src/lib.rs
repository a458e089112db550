//! `sec-audit serve`: the enforcement runtime as an HTTP service for any
//! stack. A reverse proxy asks `/v1/decide` before each request
//! (forward-auth); the application reports its audit events to
//! `/v1/events` (JSONL) or `/v1/logs` (OTLP/HTTP); operators use the block
//! API and `/metrics`. See the crate README for the endpoints and
//! configuration.

pub mod auth;
pub mod config;
pub mod console;
pub mod ingest;
pub mod metrics;
pub mod server;

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use sec_audit_enforce::{BuildError, Config, ConfigError, Runtime, Sink};

pub use auth::{Access, TokenError, Tokens};
pub use config::{DecideStatus, ServeConfig};
pub use metrics::Metrics;
pub use server::{shutdown_signal, Server, ShutdownReport};

/// Why the server could not start (or run).
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("token: {0}")]
    Token(#[from] TokenError),
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

impl ServeError {
    /// Whether the error is in the configuration (as opposed to the
    /// machine: a port in use, an unwritable trail).
    pub fn is_config(&self) -> bool {
        matches!(self, ServeError::Config(_) | ServeError::Token(_))
            || matches!(self, ServeError::Build(BuildError::Config(_)))
    }
}

/// Runs `sec-audit serve` on a loaded configuration until SIGTERM or
/// SIGINT: builds the runtime (records appended to `output`, else the
/// `[serve] output` file, else standard output), binds `[serve] listen`,
/// prints `listening on ADDR` on standard error, serves, then drains.
pub fn run(config: Config, output: Option<PathBuf>) -> Result<ShutdownReport, ServeError> {
    let serve = ServeConfig::from_config(&config)?;
    let tokens = Tokens::from_env()?;
    let sink = match output.as_ref().or(serve.output.as_ref()) {
        Some(path) => Sink::file(path).map_err(|source| ServeError::Io {
            what: format!("cannot open the output {}", path.display()),
            source,
        })?,
        None => Sink::Stdout,
    };
    if !config.enabled {
        tracing::warn!("enabled = false: every request is allowed and ingested events do nothing");
    }
    let runtime = Arc::new(Runtime::builder(config).sink(sink).build()?);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("sec-audit-serve")
        .build()
        .map_err(|source| ServeError::Io {
            what: "cannot start the async runtime".into(),
            source,
        })?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(serve.listen)
            .await
            .map_err(|source| ServeError::Io {
                what: format!("cannot listen on {}", serve.listen),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| ServeError::Io {
            what: "cannot read the listening address".into(),
            source,
        })?;
        let server = Server::new(runtime, serve, tokens);
        tracing::info!(%addr, "sec-audit serve listening");
        let mut err = std::io::stderr();
        let _ = writeln!(err, "sec-audit serve: listening on {addr}");
        let _ = err.flush();
        let report = server
            .serve(listener, shutdown_signal())
            .await
            .map_err(|source| ServeError::Io {
                what: "serving failed".into(),
                source,
            })?;
        let _ = writeln!(
            err,
            "sec-audit serve: stopped; {} events were queued at the signal, {} handled in all, {} lost",
            report.queued_at_signal, report.processed, report.lost
        );
        Ok(report)
    })
}
