//! An axum application behind the sec-audit tower layer.
//!
//! ```text
//! cargo run -p sec-audit-enforce --example axum_login -- [CONFIG.toml] [EVENTS.jsonl]
//! for i in 1 2 3 4 5; do curl -s -XPOST localhost:3000/login -H 'content-type: application/json' \
//!     -d '{"username":"alice","password":"guess"}'; done
//! curl -i localhost:3000/          # 429 from now on for this address
//! ```
//! Enforcement records go to EVENTS.jsonl (default: standard output).

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
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    eprintln!("listening on http://127.0.0.1:3000");
    axum::serve(
        listener,
        app::router(runtime).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}
