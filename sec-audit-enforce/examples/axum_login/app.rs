//! The example application: a login endpoint behind the sec-audit layer.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use sec_audit_core::AuditEvent;
use sec_audit_enforce::tower::{
    ClientIp, SecAuditLayer, DEFAULT_EGRESS_CAPACITY, DEFAULT_EGRESS_WORKERS,
};
use sec_audit_enforce::{EgressQueue, Runtime};
use serde_json::{json, Value};

/// The only password this demo accepts.
pub const PASSWORD: &str = "correct horse battery staple";

/// The application's routes, wrapped in the sec-audit layer (async ingress
/// check before every handler, every response fed to egress through the
/// layer's bounded queue).
#[allow(dead_code)] // used by tests/tower_e2e.rs, which mounts this module
pub fn router(runtime: Arc<Runtime>) -> Router {
    router_with(runtime).0
}

/// The routes and the layer's egress queue (to drain it on shutdown).
pub fn router_with(runtime: Arc<Runtime>) -> (Router, EgressQueue) {
    let queue = EgressQueue::new(
        Arc::clone(&runtime),
        DEFAULT_EGRESS_CAPACITY,
        DEFAULT_EGRESS_WORKERS,
    );
    let layer = SecAuditLayer::new(Arc::clone(&runtime))
        .with_egress_queue(queue.clone())
        .peer_addr_with(|ext| ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0));
    let router = Router::new()
        .route("/", get(|| async { "hello\n" }))
        .route("/login", post(login))
        .with_state(runtime)
        .layer(layer);
    (router, queue)
}

async fn login(
    State(runtime): State<Arc<Runtime>>,
    Extension(ClientIp(ip)): Extension<ClientIp>,
    Json(form): Json<Value>,
) -> (StatusCode, &'static str) {
    let username = form.get("username").and_then(Value::as_str).unwrap_or("");
    let ok = form.get("password").and_then(Value::as_str) == Some(PASSWORD);
    // The application records its own audit event; the layer's resolved
    // client IP is the one to log, never a raw X-Forwarded-For.
    let event = AuditEvent::from_attributes(
        json!({
            "event_type": if ok { "auth.login.success" } else { "auth.login.failed" },
            "source.address": ip.map(|i| i.to_string()),
            "user.name": username,
        })
        .as_object()
        .cloned()
        .unwrap_or_default(),
    );
    // Egress of the application's own event before it answers (the next
    // request must see a block this one earns), on a blocking thread: with
    // Redis state it does I/O, which must not hold up an executor thread.
    if let Ok(event) = event {
        let rt = Arc::clone(&runtime);
        if tokio::task::spawn_blocking(move || rt.handle_event(&event))
            .await
            .is_err()
        {
            tracing::error!("login egress task failed");
        }
    }
    if ok {
        (StatusCode::OK, "welcome\n")
    } else {
        (StatusCode::UNAUTHORIZED, "wrong username or password\n")
    }
}
