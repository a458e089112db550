//! An axum application behind the sec-audit tower layer.
//!
//! ```text
//! cargo run -p sec-audit-enforce --example axum_login -- [CONFIG.toml] [EVENTS.jsonl]
//! for i in 1 2 3 4 5; do curl -s -XPOST localhost:3000/login -H 'content-type: application/json' \
//!     -d '{"username":"alice","password":"guess"}'; done
//! curl -i localhost:3000/          # 429 from now on for this address
//! ```
//! Enforcement records go to EVENTS.jsonl (default: standard output).
//!
//! Stores: as the configuration names them; `SEC_AUDIT_REDIS_URL` (and
//! `DATABASE_URL`) override it, e.g. `SEC_AUDIT_REDIS_URL=redis://127.0.0.1:6379`
//! for the Redis stores. `SEC_AUDIT_EXAMPLE_LISTEN` sets the address
//! (default `127.0.0.1:3000`). Ctrl-C drains the egress queue and exits.

mod app;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use sec_audit_enforce::{Config, Runtime, Sink};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let config_path = args.next().map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/axum_login/sec-audit.toml"
        ))
    });
    let config = Config::from_file(&config_path)?;
    let sink = match args.next() {
        Some(path) => Sink::file(&PathBuf::from(path))?,
        None => Sink::Stdout,
    };
    let runtime = Arc::new(Runtime::builder(config).sink(sink).build()?);
    let listen =
        std::env::var("SEC_AUDIT_EXAMPLE_LISTEN").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    eprintln!("listening on http://{listen}");
    let (router, queue) = app::router_with(runtime);
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    let left = queue.shutdown(std::time::Duration::from_secs(5));
    let stats = queue.stats();
    eprintln!(
        "egress: {} accepted, {} dropped, {} processed, {left} left",
        stats.accepted, stats.dropped, stats.processed
    );
    Ok(())
}
