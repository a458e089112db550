//! The example application: a login endpoint behind the sec-audit layer.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use sec_audit_core::AuditEvent;
use sec_audit_enforce::tower::{ClientIp, SecAuditLayer};
use sec_audit_enforce::Runtime;
use serde_json::{json, Value};

/// The only password this demo accepts.
pub const PASSWORD: &str = "correct horse battery staple";

/// The application's routes, wrapped in the sec-audit layer (ingress check
/// before every handler, every response fed to egress).
pub fn router(runtime: Arc<Runtime>) -> Router {
    let layer = SecAuditLayer::new(Arc::clone(&runtime))
        .with_egress(true)
        .peer_addr_with(|ext| ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0));
    Router::new()
        .route("/", get(|| async { "hello\n" }))
        .route("/login", post(login))
        .with_state(runtime)
        .layer(layer)
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
    if let Ok(event) = event {
        runtime.handle_event(&event);
    }
    if ok {
        (StatusCode::OK, "welcome\n")
    } else {
        (StatusCode::UNAUTHORIZED, "wrong username or password\n")
    }
}
