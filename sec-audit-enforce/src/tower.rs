//! A tower layer that runs the ingress check before any tower service
//! (axum, hyper, tonic) and, optionally, feeds each response to egress.
//!
//! Put it *inside* the application's authentication layer: the ingress check
//! can only key on a user or session the request already carries. The
//! application tells the layer who the caller is with the [`AuditIdentity`]
//! request extension; the layer tells the application the resolved client
//! IP with the [`ClientIp`] extension (use it in audit events, never a raw
//! `X-Forwarded-For`).
//!
//! The ingress check is [`Runtime::ingress_check_async`]: on memory stores
//! it runs inline (well under a microsecond); on Redis it is one round trip
//! on a multiplexed async connection, so the executor thread serves other
//! requests meanwhile and a frozen or dead Redis costs a request at most the
//! command timeout (then fails fast, per the path's fail mode). Egress goes
//! through an [`EgressQueue`]: the response is never held up by it, and an
//! event the full queue refuses is counted (`EgressQueue::stats().dropped`)
//! and logged (coalesced). At exit, take the queue
//! ([`SecAuditLayer::egress_queue`]) and call `shutdown(deadline)` on it,
//! off the executor: that drains it, joins the workers and flushes the
//! trail. If the last handle is simply dropped (the layer and its clones),
//! the drop does the same with a 2 s deadline, blocking the dropping thread.
//! The layer does not read request bodies: rules on the body run where the
//! application calls [`Runtime::ingress_check_async`] with a parsed body.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{header, HeaderValue, Request, Response, StatusCode};
use sec_audit_core::AuditEvent;
use serde_json::{Map, Value};
use tower::{Layer, Service};

use crate::egress_queue::EgressQueue;
use crate::request::{IngressDecision, RequestView};
use crate::runtime::Runtime;

/// Capacity of the egress queue [`SecAuditLayer::with_egress`] creates.
pub const DEFAULT_EGRESS_CAPACITY: usize = 10_000;
/// Worker threads of that queue.
pub const DEFAULT_EGRESS_WORKERS: usize = 2;

/// Who the caller is, as the application's authentication knows it. Insert
/// it into the request extensions before this layer runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditIdentity {
    pub user_id: Option<String>,
    /// The audit session id (never the raw session cookie).
    pub session_id: Option<String>,
}

/// The TCP peer address, for servers that do not put a `SocketAddr` in the
/// request extensions themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// The client IP the layer resolved (trusted-proxy rules applied), inserted
/// into the request extensions for the application.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub Option<IpAddr>);

type PeerFn = dyn Fn(&http::Extensions) -> Option<SocketAddr> + Send + Sync;

/// The layer. Cheap to clone.
#[derive(Clone)]
pub struct SecAuditLayer {
    runtime: Arc<Runtime>,
    egress: Option<EgressQueue>,
    peer: Arc<PeerFn>,
    /// Drops since the last warning (warnings are coalesced).
    drops_unreported: Arc<AtomicU64>,
}

impl SecAuditLayer {
    /// Ingress check only; the peer address comes from a [`PeerAddr`] or a
    /// `SocketAddr` request extension.
    pub fn new(runtime: Arc<Runtime>) -> Self {
        SecAuditLayer {
            runtime,
            egress: None,
            peer: Arc::new(|ext| {
                ext.get::<PeerAddr>()
                    .map(|p| p.0)
                    .or_else(|| ext.get::<SocketAddr>().copied())
            }),
            drops_unreported: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Also feed every response to egress as an `http.response.*` event,
    /// through a new [`EgressQueue`] of [`DEFAULT_EGRESS_CAPACITY`] events
    /// and [`DEFAULT_EGRESS_WORKERS`] threads (`false`: no egress). Take it
    /// with [`SecAuditLayer::egress_queue`] to shut it down (drain) on exit.
    pub fn with_egress(mut self, egress: bool) -> Self {
        self.egress = egress.then(|| {
            EgressQueue::new(
                Arc::clone(&self.runtime),
                DEFAULT_EGRESS_CAPACITY,
                DEFAULT_EGRESS_WORKERS,
            )
        });
        self
    }

    /// Feed every response to egress through `queue` (shared, e.g. with the
    /// application's own events and the shutdown hook).
    pub fn with_egress_queue(mut self, queue: EgressQueue) -> Self {
        self.egress = Some(queue);
        self
    }

    /// The egress queue, when egress is on.
    pub fn egress_queue(&self) -> Option<&EgressQueue> {
        self.egress.as_ref()
    }

    /// How to find the peer address in the request extensions (for axum:
    /// `ConnectInfo<SocketAddr>`).
    pub fn peer_addr_with<F>(mut self, f: F) -> Self
    where
        F: Fn(&http::Extensions) -> Option<SocketAddr> + Send + Sync + 'static,
    {
        self.peer = Arc::new(f);
        self
    }
}

impl<S> Layer<S> for SecAuditLayer {
    type Service = SecAuditService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        SecAuditService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service the layer wraps around `S`.
#[derive(Clone)]
pub struct SecAuditService<S> {
    inner: S,
    layer: SecAuditLayer,
}

fn deny_response<B: From<String>>(status: u16, message: String) -> Response<B> {
    let mut res = Response::new(B::from(message));
    *res.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::TOO_MANY_REQUESTS);
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
}

fn response_kind(status: u16) -> &'static str {
    match status {
        0..=299 => "http.response.success",
        300..=399 => "http.response.redirect",
        400..=499 => "http.response.client_error",
        _ => "http.response.server_error",
    }
}

struct EgressContext {
    method: String,
    path: String,
    ip: Option<String>,
    identity: AuditIdentity,
    request_id: Option<String>,
}

impl EgressContext {
    fn event(&self, status: u16) -> Option<AuditEvent> {
        let mut a = Map::new();
        let mut put = |k: &str, v: Option<&str>| {
            if let Some(v) = v.filter(|v| !v.is_empty()) {
                a.insert(k.into(), Value::String(v.into()));
            }
        };
        put("http.request.method", Some(&self.method));
        put("url.path", Some(&self.path));
        put("source.address", self.ip.as_deref());
        put("user.id", self.identity.user_id.as_deref());
        put("session.id", self.identity.session_id.as_deref());
        put("request_id", self.request_id.as_deref());
        a.insert("http.response.status_code".into(), Value::from(status));
        AuditEvent::new(response_kind(status), a).ok()
    }
}

/// Hands a response event to the queue; a refusal is counted by the
/// queue and logged here at most once per 1 000 drops.
fn submit(queue: &EgressQueue, unreported: &AtomicU64, event: AuditEvent) {
    if queue.try_submit(event).is_err() {
        let n = unreported.fetch_add(1, Ordering::Relaxed);
        if n.is_multiple_of(1000) {
            tracing::warn!(
                dropped_total = queue.stats().dropped,
                "egress queue full: response events dropped"
            );
        }
    }
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for SecAuditService<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResB: From<String> + Send + 'static,
    ReqB: Send + 'static,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqB>) -> Self::Future {
        let runtime = Arc::clone(&self.layer.runtime);
        let peer = (self.layer.peer)(req.extensions())
            .map(|p| p.to_string())
            .unwrap_or_default();
        let identity = req
            .extensions()
            .get::<AuditIdentity>()
            .cloned()
            .unwrap_or_default();
        let xff: Vec<&str> = req
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        let xff = (!xff.is_empty()).then(|| xff.join(", "));
        let request_id = req
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let method = req.method().as_str().to_string();
        let path = req.uri().path().to_string();
        let egress = self.layer.egress.clone();
        let unreported = Arc::clone(&self.layer.drops_unreported);
        // The service made ready by `poll_ready` is the one to call; a clone
        // stays behind for the next request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let mut view = RequestView::new(method.as_str(), path.as_str(), peer.as_str());
            if let Some(x) = xff.as_deref() {
                view = view.with_forwarded_for(x);
            }
            if let Some(u) = identity.user_id.as_deref() {
                view = view.with_user_id(u);
            }
            if let Some(s) = identity.session_id.as_deref() {
                view = view.with_session_id(s);
            }
            if let Some(r) = request_id.as_deref() {
                view = view.with_request_id(r);
            }
            let decision = runtime.ingress_check_async(&view).await;
            let ip = runtime.client_ip(&view);
            drop(view);
            if let IngressDecision::Deny {
                status_code,
                message,
                retry_after,
                ..
            } = decision
            {
                let mut res = deny_response(status_code, message);
                if let Some(secs) = retry_after {
                    res.headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
                }
                return Ok(res);
            }
            req.extensions_mut().insert(ClientIp(ip));
            let res = inner.call(req).await?;
            if let Some(queue) = egress {
                let ctx = EgressContext {
                    method,
                    path,
                    ip: ip.map(|ip| ip.to_string()),
                    identity,
                    request_id,
                };
                if let Some(event) = ctx.event(res.status().as_u16()) {
                    submit(&queue, &unreported, event);
                }
            }
            Ok(res)
        })
    }
}
