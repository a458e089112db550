//! The HTTP server: routes, handlers, graceful shutdown.

use std::borrow::Cow;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, get, post};
use axum::Router;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use prost::Message as _;
use sec_audit_core::AuditEvent;
use sec_audit_enforce::egress_queue::EgressQueue;
use sec_audit_enforce::events::block_entry_json as entry_json;
use sec_audit_enforce::{
    BlockApiError, DenyReason, IngressDecision, ManualBlock, RequestView, Runtime,
};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::{Access, Tokens};
use crate::config::{DecideStatus, ServeConfig};
use crate::console::{self, Console};
use crate::ingest::{self, Batch, LineError, MAX_REPORTED_ERRORS};
use crate::metrics::{Metrics, Outcome, Source};

/// The block's own status on a deny.
pub const STATUS_HEADER: &str = "x-sec-audit-status";
/// The client IP `/v1/decide` resolved (trusted-proxy rules applied): what
/// the application should log as `source.address`.
pub const CLIENT_IP_HEADER: &str = "x-sec-audit-client-ip";
/// How long the block API waits for a store call.
pub const BLOCK_API_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest body of `POST /v1/blocks`.
const MAX_BLOCK_BODY: usize = 64 << 10;
/// The actor the JSON block API records.
pub const API_ACTOR: &str = "serve:admin";
/// `Retry-After` of a full queue, seconds.
const QUEUE_FULL_RETRY_AFTER: &str = "1";

/// What shutdown did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Events still queued at the drain deadline (0: nothing lost).
    pub lost: usize,
    /// Events queued when the shutdown signal came.
    pub queued_at_signal: usize,
    pub accepted: u64,
    pub processed: u64,
    pub dropped: u64,
}

pub(crate) struct AppState {
    pub(crate) runtime: Arc<Runtime>,
    pub(crate) queue: EgressQueue,
    pub(crate) config: ServeConfig,
    pub(crate) tokens: Tokens,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) draining: AtomicBool,
    /// The operator console (`None`: off).
    pub(crate) console: Option<Console>,
}

/// One `sec-audit serve` instance over a built runtime.
#[derive(Clone)]
pub struct Server {
    state: Arc<AppState>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("config", &self.state.config)
            .field("tokens", &self.state.tokens)
            .finish()
    }
}

type Reply = Response;

pub(crate) fn text(status: StatusCode, body: impl Into<String>) -> Reply {
    let mut r = (status, body.into()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn json_reply(status: StatusCode, body: &Value) -> Reply {
    let mut r = (status, body.to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn unauthorized() -> Reply {
    let mut r = text(
        StatusCode::UNAUTHORIZED,
        "missing or invalid bearer token\n",
    );
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

fn queue_full(body: Option<Value>) -> Reply {
    let mut r = match body {
        Some(b) => json_reply(StatusCode::SERVICE_UNAVAILABLE, &b),
        None => text(StatusCode::SERVICE_UNAVAILABLE, "egress queue full\n"),
    };
    r.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from_static(QUEUE_FULL_RETRY_AFTER),
    );
    r
}

/// A header as text: `None` when absent, empty or not UTF-8.
fn header_text<'a>(h: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

fn first_header<'a>(h: &'a HeaderMap, names: &[&'static str]) -> Option<Cow<'a, str>> {
    names.iter().find_map(|n| {
        h.get(*n)
            .map(|v| String::from_utf8_lossy(v.as_bytes()))
            .filter(|s| !s.trim().is_empty())
    })
}

/// Reads a body of at most `max` bytes: `Err` is the reply (413 too large,
/// 400 unreadable).
pub(crate) async fn read_body(headers: &HeaderMap, body: Body, max: usize) -> Result<Bytes, Reply> {
    let too_large = || {
        text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body larger than {max} bytes\n"),
        )
    };
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        if len > max as u64 {
            return Err(too_large());
        }
    }
    match Limited::new(body, max).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Err(_) => Err(text(StatusCode::BAD_REQUEST, "could not read the body\n")),
    }
}

impl Server {
    /// A server over `runtime`: starts the egress queue's workers and
    /// subscribes the metrics to the runtime's records and failures.
    pub fn new(runtime: Arc<Runtime>, config: ServeConfig, tokens: Tokens) -> Server {
        let metrics = Arc::new(Metrics::new());
        metrics.subscribe(runtime.emitter());
        metrics.observe_failures(&runtime);
        let queue = EgressQueue::new(
            Arc::clone(&runtime),
            config.queue_capacity,
            config.egress_workers,
        );
        let console = (config.console && tokens.block_api_enabled())
            .then(|| Console::new(&runtime, config.console_secure_cookie));
        Server {
            state: Arc::new(AppState {
                runtime,
                queue,
                config,
                tokens,
                metrics,
                draining: AtomicBool::new(false),
                console,
            }),
        }
    }

    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.state.runtime
    }
    pub fn queue(&self) -> &EgressQueue {
        &self.state.queue
    }
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.state.metrics
    }
    pub fn config(&self) -> &ServeConfig {
        &self.state.config
    }

    /// The routes.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/v1/decide", any(decide))
            .route("/v1/decide/", any(decide))
            .route("/v1/decide/{*rest}", any(decide))
            .route("/v1/events", post(events))
            .route("/v1/logs", post(logs))
            .route("/v1/blocks", get(list_blocks).post(add_block))
            .route("/v1/blocks/{scope}/{value}", delete(revoke_block))
            .route("/metrics", get(metrics))
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .merge(console::routes())
            .fallback(|| async { text(StatusCode::NOT_FOUND, "not found\n") })
            .with_state(Arc::clone(&self.state))
    }

    /// Serves on `listener` until `shutdown` completes, then stops
    /// accepting, waits (up to `shutdown_timeout`) for open requests,
    /// drains the egress queue (up to `shutdown_timeout` again) and flushes
    /// the JSONL trail.
    pub async fn serve<F>(
        self,
        listener: tokio::net::TcpListener,
        shutdown: F,
    ) -> std::io::Result<ShutdownReport>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let state = Arc::clone(&self.state);
        let timeout = state.config.shutdown_timeout;
        let (tx, mut rx) = tokio::sync::watch::channel(false);
        let st = Arc::clone(&state);
        let at_signal = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let at = Arc::clone(&at_signal);
        let signal = async move {
            shutdown.await;
            at.store(st.queue.depth(), Ordering::SeqCst);
            st.draining.store(true, Ordering::SeqCst);
            tracing::info!("shutting down: no new connections, draining");
            let _ = tx.send(true);
        };
        let app = self
            .router()
            .into_make_service_with_connect_info::<SocketAddr>();
        let server = axum::serve(listener, app).with_graceful_shutdown(signal);
        let bounded = async move {
            let _ = rx.wait_for(|v| *v).await;
            tokio::time::sleep(timeout).await;
        };
        tokio::select! {
            r = server => r?,
            () = bounded => tracing::warn!("open connections outlived the shutdown timeout; closing them"),
        }
        let queue = state.queue.clone();
        let lost = tokio::task::spawn_blocking(move || queue.shutdown(timeout))
            .await
            .unwrap_or_else(|_| state.queue.depth());
        state.runtime.flush();
        let stats = state.queue.stats();
        if lost > 0 {
            tracing::error!(lost, "egress queue not drained before the shutdown timeout");
        }
        Ok(ShutdownReport {
            lost,
            queued_at_signal: at_signal.load(Ordering::SeqCst),
            accepted: stats.accepted,
            processed: stats.processed,
            dropped: stats.dropped,
        })
    }
}

/// Completes on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only SIGINT stops the server");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

// ---------------------------------------------------------------- decide

async fn decide(
    State(s): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Reply {
    let started = Instant::now();
    let peer = peer.to_string();
    // Every X-Forwarded-For value in order; bytes that are not UTF-8 stay
    // in place (replaced), so the chain is never shortened and a bad entry
    // at the chosen position yields no ip scope rather than a wrong one.
    let mut xff: Option<String> = None;
    for v in headers.get_all("x-forwarded-for") {
        let v = String::from_utf8_lossy(v.as_bytes());
        match &mut xff {
            Some(s) => {
                s.push_str(", ");
                s.push_str(&v);
            }
            None => xff = Some(v.into_owned()),
        }
    }
    let orig_method = first_header(&headers, &["x-forwarded-method", "x-original-method"])
        .unwrap_or(Cow::Borrowed(method.as_str()));
    // The original URI from the proxy's header; else (Envoy's ext_authz
    // appends it to the path prefix) what follows `/v1/decide`.
    let orig_uri =
        first_header(&headers, &["x-forwarded-uri", "x-original-uri"]).unwrap_or_else(|| {
            let rest = uri.path().strip_prefix("/v1/decide").unwrap_or("");
            Cow::Owned(if rest.is_empty() {
                "/".into()
            } else {
                rest.into()
            })
        });
    let path = orig_uri
        .split(['?', '#'])
        .next()
        .unwrap_or("/")
        .trim()
        .to_string();
    let mut view = RequestView::new(orig_method.trim(), path, peer);
    if let Some(x) = xff {
        view = view.with_forwarded_for(x);
    }
    if let Some(u) = header_text(&headers, &s.config.user_header) {
        view = view.with_user_id(u);
    }
    if let Some(v) = header_text(&headers, &s.config.session_header) {
        view = view.with_session_id(v);
    }
    if let Some(r) = header_text(&headers, &HeaderName::from_static("x-request-id")) {
        view = view.with_request_id(r);
    }
    let decision = s.runtime.ingress_check_async(&view).await;
    let client_ip = s.runtime.client_ip(&view);
    s.metrics.decide_latency(started.elapsed().as_secs_f64());
    let mut reply = match decision {
        IngressDecision::Allow => {
            s.metrics.ingress(Outcome::Allow);
            text(StatusCode::OK, "")
        }
        IngressDecision::Deny {
            status_code,
            message,
            reason,
            retry_after,
        } => {
            s.metrics.ingress(match reason {
                DenyReason::FailClosed | DenyReason::Error => Outcome::FailClosed,
                _ => Outcome::Deny,
            });
            let status = match s.config.decide_status {
                DecideStatus::Forbidden => StatusCode::FORBIDDEN,
                DecideStatus::Native => {
                    StatusCode::from_u16(status_code).unwrap_or(StatusCode::TOO_MANY_REQUESTS)
                }
            };
            let mut r = text(status, message);
            let h = r.headers_mut();
            h.insert(STATUS_HEADER, HeaderValue::from(status_code));
            if let Some(secs) = retry_after {
                h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            r
        }
    };
    let h = reply.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(ip) = client_ip.and_then(|ip| HeaderValue::try_from(ip.to_string()).ok()) {
        h.insert(CLIENT_IP_HEADER, ip);
    }
    reply
}

// ---------------------------------------------------------------- ingest

/// Submits a batch's events; `Err` when the queue had no room for all of
/// them (nothing is submitted then, unless another request raced for the
/// room: what did not fit is returned as dropped lines).
fn submit(s: &AppState, events: Vec<(u64, AuditEvent)>) -> Result<(u64, Vec<u64>), ()> {
    let room = s.config.queue_capacity.saturating_sub(s.queue.depth());
    if events.len() > room {
        return Err(());
    }
    let mut accepted = 0u64;
    let mut dropped = Vec::new();
    for (line, event) in events {
        if !dropped.is_empty() {
            dropped.push(line);
            continue;
        }
        match s.queue.try_submit(event) {
            Ok(()) => accepted += 1,
            Err(_) => dropped.push(line),
        }
    }
    Ok((accepted, dropped))
}

fn ingest_gate(s: &AppState, headers: &HeaderMap) -> Option<Reply> {
    if !s.tokens.ingest_allowed(headers) {
        return Some(unauthorized());
    }
    if s.draining.load(Ordering::SeqCst) {
        let mut r = text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n");
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        return Some(r);
    }
    None
}

fn errors_json(errors: &[LineError]) -> Value {
    Value::Array(
        errors
            .iter()
            .take(MAX_REPORTED_ERRORS)
            .map(|e| json!({"line": e.line, "reason": e.reason}))
            .collect(),
    )
}

async fn events(State(s): State<Arc<AppState>>, req: Request) -> Reply {
    let (parts, body) = req.into_parts();
    if let Some(r) = ingest_gate(&s, &parts.headers) {
        return r;
    }
    let bytes = match read_body(&parts.headers, body, s.config.max_body_bytes).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Batch {
        events,
        rejected,
        mut errors,
    } = ingest::parse_jsonl(&bytes, s.config.max_line_bytes);
    let n = events.len() as u64;
    match submit(&s, events) {
        Err(()) => {
            s.metrics.ingest(Source::Events, 0, rejected, n);
            queue_full(None)
        }
        Ok((accepted, dropped)) => {
            s.metrics
                .ingest(Source::Events, accepted, rejected, dropped.len() as u64);
            if dropped.is_empty() {
                return json_reply(
                    StatusCode::ACCEPTED,
                    &json!({"accepted": accepted, "rejected": rejected, "errors": errors_json(&errors)}),
                );
            }
            for line in &dropped {
                if errors.len() >= MAX_REPORTED_ERRORS {
                    break;
                }
                errors.push(LineError {
                    line: *line,
                    reason: "queue full: not taken, send again".into(),
                });
            }
            queue_full(Some(json!({
                "accepted": accepted,
                "rejected": rejected,
                "dropped": dropped.len(),
                "errors": errors_json(&errors),
            })))
        }
    }
}

fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

async fn logs(State(s): State<Arc<AppState>>, req: Request) -> Reply {
    use opentelemetry_proto::tonic::collector::logs::v1::{
        ExportLogsPartialSuccess, ExportLogsServiceResponse,
    };
    let (parts, body) = req.into_parts();
    if let Some(r) = ingest_gate(&s, &parts.headers) {
        return r;
    }
    let json = match media_type(&parts.headers).as_str() {
        "application/x-protobuf" | "application/protobuf" => false,
        "application/json" => true,
        _ => {
            return text(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "expected application/x-protobuf or application/json\n",
            )
        }
    };
    if parts
        .headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"))
    {
        return text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "compressed bodies are not accepted\n",
        );
    }
    let bytes = match read_body(&parts.headers, body, s.config.max_body_bytes).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let request = match ingest::decode_otlp(&bytes, json) {
        Ok(r) => r,
        Err(reason) => return text(StatusCode::BAD_REQUEST, reason + "\n"),
    };
    let Batch {
        events,
        rejected,
        errors,
    } = ingest::otlp_batch(&request);
    drop(request);
    let n = events.len() as u64;
    let (accepted, dropped) = match submit(&s, events) {
        Err(()) => {
            s.metrics.ingest(Source::Logs, 0, rejected, n);
            return queue_full(None);
        }
        Ok(r) => r,
    };
    s.metrics
        .ingest(Source::Logs, accepted, rejected, dropped.len() as u64);
    if !dropped.is_empty() {
        // OTLP clients retry a 503 whole; what was taken is counted again
        // then (rare: only when requests race for the last room).
        return queue_full(None);
    }
    let partial = (rejected > 0).then(|| ExportLogsPartialSuccess {
        rejected_log_records: i64::try_from(rejected).unwrap_or(i64::MAX),
        error_message: errors
            .iter()
            .map(|e| format!("record {}: {}", e.line, e.reason))
            .collect::<Vec<_>>()
            .join("; "),
    });
    let response = ExportLogsServiceResponse {
        partial_success: partial,
    };
    let (body, ctype) = if json {
        (
            serde_json::to_vec(&response).unwrap_or_else(|_| b"{}".to_vec()),
            "application/json",
        )
    } else {
        (response.encode_to_vec(), "application/x-protobuf")
    };
    let mut r = (StatusCode::OK, body).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    r
}

// ---------------------------------------------------------------- blocks

fn block_gate(s: &AppState, headers: &HeaderMap, write: bool) -> Option<Reply> {
    match s.tokens.block_access(headers) {
        Access::Off => Some(text(
            StatusCode::NOT_FOUND,
            "the block API is off: set SEC_AUDIT_ADMIN_TOKEN or SEC_AUDIT_READ_TOKEN\n",
        )),
        Access::Unauthorized => Some(unauthorized()),
        Access::Read if write => Some(text(
            StatusCode::FORBIDDEN,
            "the read token cannot change blocks\n",
        )),
        Access::Read | Access::Admin => None,
    }
}

/// Why a block API call through the blocking pool failed.
#[derive(Debug)]
pub(crate) enum CallError {
    Api(BlockApiError),
    Panicked,
    TimedOut,
}

impl CallError {
    /// The answer's status and a message safe to show (a store error is
    /// shown by kind only; it is counted and logged by kind here).
    pub(crate) fn describe(&self, s: &AppState) -> (StatusCode, String) {
        match self {
            CallError::Api(BlockApiError::Store(store)) => {
                s.metrics.store_error(store.kind());
                tracing::warn!(kind = store.kind(), "block API: the store failed");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("the block store failed ({})", store.kind()),
                )
            }
            // Well formed, but against the configuration: 409.
            CallError::Api(e @ BlockApiError::Safelisted { .. }) => {
                (StatusCode::CONFLICT, e.to_string())
            }
            CallError::Api(other) => (StatusCode::BAD_REQUEST, other.to_string()),
            CallError::Panicked => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the store call failed".into(),
            ),
            CallError::TimedOut => {
                s.metrics.store_error("timeout");
                (
                    StatusCode::GATEWAY_TIMEOUT,
                    "the block store did not answer in time".into(),
                )
            }
        }
    }
}

/// Runs a store call on the blocking pool, bounded by
/// [`BLOCK_API_TIMEOUT`].
pub(crate) async fn store_call<T, F>(s: &Arc<AppState>, f: F) -> Result<T, CallError>
where
    T: Send + 'static,
    F: FnOnce(&Runtime) -> Result<T, BlockApiError> + Send + 'static,
{
    let st = Arc::clone(s);
    let task = tokio::task::spawn_blocking(move || f(&st.runtime));
    match tokio::time::timeout(BLOCK_API_TIMEOUT, task).await {
        Ok(Ok(Ok(v))) => Ok(v),
        Ok(Ok(Err(e))) => Err(CallError::Api(e)),
        Ok(Err(_)) => Err(CallError::Panicked),
        Err(_) => Err(CallError::TimedOut),
    }
}

/// [`store_call`] with a failure as a plain-text answer.
async fn blocking<T, F>(s: &Arc<AppState>, f: F) -> Result<T, Reply>
where
    T: Send + 'static,
    F: FnOnce(&Runtime) -> Result<T, BlockApiError> + Send + 'static,
{
    store_call(s, f).await.map_err(|e| {
        let (status, msg) = e.describe(s);
        text(status, msg + "\n")
    })
}

/// The checks every way of adding a block applies (the JSON API and the
/// console's form), then the request for [`Runtime::block`].
#[allow(clippy::too_many_arguments)]
pub(crate) fn manual_block(
    scope: String,
    value: String,
    ttl: Option<u64>,
    reason: String,
    status_code: Option<u16>,
    message: Option<String>,
    actor: &str,
) -> Result<ManualBlock, String> {
    if reason.trim().is_empty() {
        return Err("`reason` must not be empty".into());
    }
    if ttl == Some(0) {
        return Err("`ttl` must be at least 1 second".into());
    }
    if let Some(code) = status_code.filter(|c| !(100..=599).contains(c)) {
        return Err(format!("`status_code` must be 100-599 (got {code})"));
    }
    Ok(ManualBlock {
        scope_type: scope,
        value,
        ttl,
        reason,
        status_code,
        message,
        actor: Some(actor.to_string()),
        ..ManualBlock::default()
    })
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    scope: Option<String>,
    value: Option<String>,
}

async fn list_blocks(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Reply {
    if let Some(r) = block_gate(&s, &headers, false) {
        return r;
    }
    let Ok(Query(q)) = query else {
        return text(StatusCode::BAD_REQUEST, "bad query string\n");
    };
    let scope = q.scope.filter(|v| !v.is_empty());
    let value = q.value.filter(|v| !v.is_empty());
    let result = match (scope, value) {
        (None, Some(_)) => return text(StatusCode::BAD_REQUEST, "`value` needs `scope`\n"),
        (Some(scope), Some(value)) => {
            blocking(&s, move |rt| {
                Ok(rt
                    .is_blocked(&scope, &value)?
                    .into_iter()
                    .collect::<Vec<_>>())
            })
            .await
        }
        (scope, None) => {
            blocking(&s, move |rt| {
                let mut all = rt.list_active_blocks(scope.as_deref())?;
                all.extend(rt.list_temp_blocks(scope.as_deref())?);
                Ok(all)
            })
            .await
        }
    };
    match result {
        Ok(entries) => json_reply(
            StatusCode::OK,
            &json!({"blocks": entries.iter().map(entry_json).collect::<Vec<_>>()}),
        ),
        Err(r) => r,
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AddBody {
    scope: String,
    value: String,
    ttl: Option<u64>,
    reason: String,
    status_code: Option<u16>,
    message: Option<String>,
}

async fn add_block(State(s): State<Arc<AppState>>, req: Request) -> Reply {
    let (parts, body) = req.into_parts();
    if let Some(r) = block_gate(&s, &parts.headers, true) {
        return r;
    }
    let bytes = match read_body(&parts.headers, body, MAX_BLOCK_BODY).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let b: AddBody = match serde_json::from_slice(&bytes) {
        Ok(b) => b,
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!(
                    "expected JSON {{scope, value, ttl?, reason, status_code?, message?}}: {}\n",
                    e
                ),
            )
        }
    };
    let manual = match manual_block(
        b.scope,
        b.value,
        b.ttl,
        b.reason,
        b.status_code,
        b.message,
        API_ACTOR,
    ) {
        Ok(m) => m,
        Err(reason) => return text(StatusCode::BAD_REQUEST, reason + "\n"),
    };
    match blocking(&s, move |rt| rt.block(&manual)).await {
        Ok(entry) => json_reply(StatusCode::CREATED, &entry_json(&entry)),
        Err(r) => r,
    }
}

#[derive(Debug, Deserialize)]
struct RevokeQuery {
    reason: Option<String>,
}

async fn revoke_block(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<RevokeQuery>, QueryRejection>,
) -> Reply {
    if let Some(r) = block_gate(&s, &headers, true) {
        return r;
    }
    let Ok(Path((scope, value))) = path else {
        return text(StatusCode::BAD_REQUEST, "bad scope or value\n");
    };
    let reason = query
        .ok()
        .and_then(|Query(q)| q.reason)
        .filter(|r| !r.trim().is_empty());
    let Some(reason) = reason else {
        return text(StatusCode::BAD_REQUEST, "`?reason=` is required\n");
    };
    match blocking(&s, move |rt| rt.unblock(&scope, &value, &reason, API_ACTOR)).await {
        Ok(removed) => json_reply(StatusCode::OK, &json!({"removed": removed})),
        Err(r) => r,
    }
}

// ---------------------------------------------------------------- probes

async fn metrics(State(s): State<Arc<AppState>>) -> Reply {
    let stats = s.queue.stats();
    let body = s
        .metrics
        .render(s.queue.depth(), s.config.queue_capacity, stats.processed);
    let mut r = (StatusCode::OK, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

async fn healthz() -> Reply {
    text(StatusCode::OK, "ok\n")
}

/// Ready when the block store answers an ingress lookup
/// (`Runtime::stores_ready_async`: async, bounded like every ingress
/// lookup) within `ready_timeout`.
async fn readyz(State(s): State<Arc<AppState>>) -> Reply {
    if s.draining.load(Ordering::SeqCst) {
        return text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n");
    }
    match tokio::time::timeout(s.config.ready_timeout, s.runtime.stores_ready_async()).await {
        Ok(Ok(())) => text(StatusCode::OK, "ready\n"),
        Ok(Err(e)) => {
            s.metrics.store_error(e.kind());
            text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("block store failed ({})\n", e.kind()),
            )
        }
        Err(_) => {
            s.metrics.store_error("timeout");
            text(
                StatusCode::SERVICE_UNAVAILABLE,
                "block store did not answer in time\n",
            )
        }
    }
}
