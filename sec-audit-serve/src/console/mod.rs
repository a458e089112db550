//! The operator console under `/ui/`: log in with the admin or read token,
//! see the active blocks (by scope and rule), the decisions of the last
//! hour, every block with its Postgres trail, add and revoke blocks, and
//! read the recent enforcement records.
//!
//! Security: every page but the login needs a session (a GET without one
//! is redirected to `/ui/login`, a POST is refused with `403`); every POST
//! form carries the session's CSRF token (the login form a pre-session
//! one, double-submitted in a cookie), compared in constant time, and a
//! POST without it is refused (`403`); a read session changes nothing
//! (`403`); every string is escaped by the templates (askama, no `|safe`
//! anywhere); every answer carries a strict `Content-Security-Policy` and
//! no asset comes from outside the binary (templates and the stylesheet
//! are compiled in; the chart is server-rendered SVG, no script at all).
//! Changes go through the same block API as `POST /v1/blocks` and
//! `DELETE /v1/blocks/…` ([`Runtime::block`], [`Runtime::unblock`]), so
//! the same enforcement records are emitted; the actor is
//! `console:<name>`.

pub mod pages;
pub mod recent;
pub mod session;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use askama::Template;
use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sec_audit_enforce::{BlockEntry, RequestView, Runtime};
use serde::Deserialize;

use crate::auth::Access;
use crate::server::{manual_block, read_body, store_call, text, AppState, CallError};
use pages::{Layout, Page};
use recent::Recent;
use session::{secrets_equal, LoginLimiter, Role, Session, Sessions};

/// The session cookie (path `/ui`).
pub const SESSION_COOKIE: &str = "sec_audit_session";
/// The login form's double-submitted CSRF cookie (path `/ui/login`).
pub const LOGIN_COOKIE: &str = "sec_audit_login";
/// The policy of every console answer: nothing but this origin's
/// stylesheet and images, forms posting only here, no framing.
pub const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
                       frame-ancestors 'none'; base-uri 'none'";
/// Largest form body.
const MAX_FORM_BYTES: usize = 16 << 10;
/// Rows of a trail shown at most.
pub const TRAIL_LIMIT: usize = 100;
/// Blocks per page of `/ui/blocks`.
pub const PAGE_SIZE: usize = 50;
/// Longest operator name.
pub const MAX_NAME_CHARS: usize = 64;

const CSS: &str = include_str!("../../static/console.css");

/// The console's state: sessions, the login limit, the recent records.
pub struct Console {
    pub sessions: Sessions,
    pub logins: LoginLimiter,
    pub recent: Arc<Recent>,
    secure_cookie: bool,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console")
            .field("sessions", &self.sessions.len())
            .finish()
    }
}

impl Console {
    /// A console over `runtime`: subscribes its memory of recent records.
    pub fn new(runtime: &Runtime, secure_cookie: bool) -> Console {
        let recent = Arc::new(Recent::new(
            Arc::clone(runtime.clock()),
            runtime.enforcer().scrubber().clone(),
        ));
        recent.subscribe(runtime.emitter());
        Console {
            sessions: Sessions::default(),
            logins: LoginLimiter::default(),
            recent,
            secure_cookie,
        }
    }

    fn cookie(&self, name: &str, value: &str, path: &str, max_age: u64) -> HeaderValue {
        let secure = if self.secure_cookie { "; Secure" } else { "" };
        HeaderValue::try_from(format!(
            "{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"
        ))
        .unwrap_or_else(|_| HeaderValue::from_static("invalid=1; Max-Age=0"))
    }
}

type Reply = Response;
type St = State<Arc<AppState>>;

/// The console's routes (every one answers `404` when the console is off).
pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/ui", get(bare))
        .route("/ui/", get(overview))
        .route("/ui/login", get(login_form).post(login))
        .route("/ui/logout", axum::routing::post(logout))
        .route("/ui/blocks", get(blocks).post(add_block))
        .route("/ui/blocks/new", get(new_block))
        .route("/ui/block", get(block_page))
        .route("/ui/block/revoke", axum::routing::post(revoke))
        .route("/ui/decisions", get(decisions))
        .route("/ui/static/console.css", get(stylesheet))
        .route("/ui/{*rest}", axum::routing::any(not_found))
        .layer(axum::middleware::map_response(secure_headers))
}

/// The headers of every console answer.
async fn secure_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    r
}

fn see_other(to: &'static str) -> Reply {
    let mut r = StatusCode::SEE_OTHER.into_response();
    r.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static(to));
    r
}

fn see_other_dyn(to: String) -> Reply {
    match HeaderValue::try_from(to) {
        Ok(v) => {
            let mut r = StatusCode::SEE_OTHER.into_response();
            r.headers_mut().insert(header::LOCATION, v);
            r
        }
        Err(_) => see_other("/ui/blocks"),
    }
}

fn off() -> Reply {
    text(
        StatusCode::NOT_FOUND,
        "the console is off: set SEC_AUDIT_ADMIN_TOKEN or SEC_AUDIT_READ_TOKEN (and keep serve.console on)\n",
    )
}

/// Renders a page (`500` when rendering fails, which it does not for
/// these templates).
fn html(status: StatusCode, page: &impl Template) -> Reply {
    match page.render() {
        Ok(body) => {
            let mut r = (status, body).into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            r
        }
        Err(_) => {
            tracing::error!("console: a page failed to render");
            text(StatusCode::INTERNAL_SERVER_ERROR, "rendering failed\n")
        }
    }
}

fn error_page(status: StatusCode, layout: Option<Layout>, message: impl Into<String>) -> Reply {
    html(
        status,
        &pages::ErrorPage {
            page: Page::new(layout, "Error"),
            status: status.as_u16(),
            message: message.into(),
        },
    )
}

/// A cookie's value from the request's `Cookie` headers.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// The console and the request's live session.
fn current<'a>(s: &'a AppState, headers: &HeaderMap) -> Option<(&'a Console, Session)> {
    let c = s.console.as_ref()?;
    let id = cookie(headers, SESSION_COOKIE)?;
    let session = c.sessions.get(id, Instant::now())?;
    Some((c, session))
}

/// A GET page's guard: the session, or the answer (login redirect; 404
/// when the console is off).
// The error is the whole answer, returned once per request.
#[allow(clippy::result_large_err)]
fn page_guard<'a>(s: &'a AppState, headers: &HeaderMap) -> Result<(&'a Console, Session), Reply> {
    if s.console.is_none() {
        return Err(off());
    }
    current(s, headers).ok_or_else(|| see_other("/ui/login"))
}

/// Refuses a POST a browser says comes from another site (defence in
/// depth; the CSRF token is the check).
fn cross_site(headers: &HeaderMap) -> bool {
    headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site"))
}

/// A POST's guard: a live session and its CSRF token in the form; for a
/// write, the admin role.
#[allow(clippy::result_large_err)]
fn post_guard<'a>(
    s: &'a AppState,
    headers: &HeaderMap,
    csrf: Option<&str>,
    write: bool,
) -> Result<(&'a Console, Session), Reply> {
    if s.console.is_none() {
        return Err(off());
    }
    if cross_site(headers) {
        return Err(error_page(
            StatusCode::FORBIDDEN,
            None,
            "cross-site form posts are refused",
        ));
    }
    let Some((c, session)) = current(s, headers) else {
        return Err(error_page(
            StatusCode::FORBIDDEN,
            None,
            "no valid session (it may have expired): log in again",
        ));
    };
    if !csrf.is_some_and(|t| secrets_equal(t, &session.csrf)) {
        return Err(error_page(
            StatusCode::FORBIDDEN,
            Some(Layout::of(&session, "")),
            "missing or invalid CSRF token: reload the page and try again",
        ));
    }
    if write && session.role != Role::Admin {
        return Err(error_page(
            StatusCode::FORBIDDEN,
            Some(Layout::of(&session, "")),
            "a read-only session cannot change blocks",
        ));
    }
    Ok((c, session))
}

/// Reads a form body (bounded); `Err` is the answer.
async fn form<T: for<'de> Deserialize<'de>>(
    req: Request,
) -> Result<(HeaderMap, T, Request<()>), Reply> {
    let (parts, body) = req.into_parts();
    let bytes = read_body(&parts.headers, body, MAX_FORM_BYTES).await?;
    let value = serde_urlencoded::from_bytes::<T>(&bytes)
        .map_err(|_| text(StatusCode::BAD_REQUEST, "malformed form body\n"))?;
    let headers = parts.headers.clone();
    Ok((headers, value, Request::from_parts(parts, ())))
}

fn describe(s: &AppState, e: &CallError) -> (StatusCode, String) {
    e.describe(s)
}

// ---------------------------------------------------------------- login

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct LoginForm {
    csrf: Option<String>,
    token: String,
    name: String,
}

fn login_page(
    c: &Console,
    status: StatusCode,
    error: Option<String>,
    name: String,
    csrf: Option<String>,
) -> Reply {
    let Some(csrf) = csrf.or_else(session::random_hex) else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "no random bytes available\n",
        );
    };
    let mut r = html(
        status,
        &pages::Login {
            page: Page::new(None, "Log in"),
            csrf: csrf.clone(),
            error,
            name,
        },
    );
    r.headers_mut().append(
        header::SET_COOKIE,
        c.cookie(LOGIN_COOKIE, &csrf, "/ui/login", 600),
    );
    r
}

async fn login_form(State(s): St, headers: HeaderMap) -> Reply {
    let Some(c) = s.console.as_ref() else {
        return off();
    };
    if current(&s, &headers).is_some() {
        return see_other("/ui/");
    }
    login_page(c, StatusCode::OK, None, String::new(), None)
}

/// The client address a login attempt is counted against (the runtime's
/// trusted-proxy rules: a spoofed `X-Forwarded-For` changes nothing).
fn client_of(s: &AppState, req: &Request<()>) -> Option<IpAddr> {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(a)| *a)?;
    let xff: Vec<String> = req
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    let peer_text = peer.to_string();
    let mut view = RequestView::new("POST", "/ui/login", peer_text.as_str());
    if !xff.is_empty() {
        view.forwarded_for = Some(xff.join(", ").into());
    }
    s.runtime.client_ip(&view).or(Some(peer.ip()))
}

/// An operator name: letters, digits and `. _ @ -`, at most
/// [`MAX_NAME_CHARS`]; empty is allowed.
fn valid_name(name: &str) -> bool {
    name.chars().count() <= MAX_NAME_CHARS
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '-'))
}

async fn login(State(s): St, req: Request) -> Reply {
    let Some(c) = s.console.as_ref() else {
        return off();
    };
    let (headers, f, req) = match form::<LoginForm>(req).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let cookie_token = cookie(&headers, LOGIN_COOKIE).unwrap_or("");
    if cross_site(&headers)
        || !f
            .csrf
            .as_deref()
            .is_some_and(|t| secrets_equal(t, cookie_token))
    {
        return error_page(
            StatusCode::FORBIDDEN,
            None,
            "missing or invalid CSRF token: reload the login page and try again",
        );
    }
    let name = f.name.trim().to_string();
    let now = Instant::now();
    let client = client_of(&s, &req);
    if let Err(wait) = c.logins.check(client, now) {
        let mut r = error_page(
            StatusCode::TOO_MANY_REQUESTS,
            None,
            format!("too many failed logins: try again in {wait} s"),
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(wait));
        return r;
    }
    if !valid_name(&name) {
        return login_page(
            c,
            StatusCode::BAD_REQUEST,
            Some(format!(
                "the name may hold letters, digits and . _ @ - (at most {MAX_NAME_CHARS})"
            )),
            String::new(),
            f.csrf,
        );
    }
    let role = match s.tokens.access_for(Some(f.token.trim().as_bytes())) {
        Access::Admin => Role::Admin,
        Access::Read => Role::Read,
        Access::Off => return off(),
        Access::Unauthorized => {
            c.logins.failed(client, now);
            sec_audit_core::log_coalesce::log_coalesced(
                sec_audit_core::log_coalesce::Level::Warn,
                "console: failed login",
                "unknown_token",
            );
            return login_page(
                c,
                StatusCode::UNAUTHORIZED,
                Some("unknown token".into()),
                name,
                f.csrf,
            );
        }
    };
    let actor = if name.is_empty() {
        format!(
            "console:{}",
            if role == Role::Admin { "admin" } else { "read" }
        )
    } else {
        format!("console:{name}")
    };
    let Some((id, _)) = c.sessions.open(role, actor, now) else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "no random bytes available\n",
        );
    };
    let mut r = see_other("/ui/");
    let h = r.headers_mut();
    h.append(
        header::SET_COOKIE,
        c.cookie(SESSION_COOKIE, &id, "/ui", session::MAX_LIFETIME.as_secs()),
    );
    h.append(
        header::SET_COOKIE,
        c.cookie(LOGIN_COOKIE, "", "/ui/login", 0),
    );
    r
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CsrfForm {
    csrf: Option<String>,
}

async fn logout(State(s): St, req: Request) -> Reply {
    let (headers, f, _) = match form::<CsrfForm>(req).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let (c, _) = match post_guard(&s, &headers, f.csrf.as_deref(), false) {
        Ok(v) => v,
        Err(r) => return r,
    };
    if let Some(id) = cookie(&headers, SESSION_COOKIE) {
        c.sessions.close(id);
    }
    let mut r = see_other("/ui/login");
    r.headers_mut()
        .append(header::SET_COOKIE, c.cookie(SESSION_COOKIE, "", "/ui", 0));
    r
}

// ---------------------------------------------------------------- pages

async fn bare(State(s): St) -> Reply {
    if s.console.is_none() {
        return off();
    }
    see_other("/ui/")
}

async fn stylesheet(State(s): St) -> Reply {
    if s.console.is_none() {
        return off();
    }
    let mut r = (StatusCode::OK, CSS).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=300"),
    );
    r
}

async fn not_found(State(s): St, headers: HeaderMap) -> Reply {
    let (_, session) = match page_guard(&s, &headers) {
        Ok(v) => v,
        Err(r) => return r,
    };
    error_page(
        StatusCode::NOT_FOUND,
        Some(Layout::of(&session, "")),
        "no such page",
    )
}

/// Every active block (permanent, then temporary).
async fn all_blocks(
    s: &Arc<AppState>,
    scope: Option<String>,
) -> Result<Vec<BlockEntry>, CallError> {
    store_call(s, move |rt| {
        let mut all = rt.list_active_blocks(scope.as_deref())?;
        all.extend(rt.list_temp_blocks(scope.as_deref())?);
        Ok(all)
    })
    .await
}

fn now_secs(s: &AppState) -> f64 {
    s.runtime.clock().now()
}

async fn overview(State(s): St, headers: HeaderMap) -> Reply {
    let (c, session) = match page_guard(&s, &headers) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let (blocks, error) = match all_blocks(&s, None).await {
        Ok(b) => (b, None),
        Err(e) => (Vec::new(), Some(describe(&s, &e).1)),
    };
    let page = pages::Overview::build(
        Page::new(Some(Layout::of(&session, "overview")), "Overview"),
        &blocks,
        error,
        &c.recent.last_hour(),
    );
    html(StatusCode::OK, &page)
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct BlocksQuery {
    pub scope: String,
    pub value: String,
    pub rule: String,
    pub kind: String,
    pub page: Option<usize>,
}

async fn blocks(
    State(s): St,
    headers: HeaderMap,
    query: Result<Query<BlocksQuery>, QueryRejection>,
) -> Reply {
    let (_, session) = match page_guard(&s, &headers) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let layout = Layout::of(&session, "blocks");
    let Ok(Query(q)) = query else {
        return error_page(StatusCode::BAD_REQUEST, Some(layout), "bad query string");
    };
    let scope = Some(q.scope.trim().to_string()).filter(|v| !v.is_empty());
    let (entries, error) = match all_blocks(&s, scope).await {
        Ok(b) => (b, None),
        Err(e) => (Vec::new(), Some(describe(&s, &e).1)),
    };
    let scopes = block_scopes(&s.runtime);
    let page = pages::Blocks::build(
        Page::new(Some(layout), "Blocks"),
        entries,
        &q,
        error,
        scopes,
        now_secs(&s),
    );
    html(StatusCode::OK, &page)
}

/// The scope names blocks may be written for.
fn block_scopes(rt: &Runtime) -> Vec<String> {
    let reg = rt.engine().scopes();
    reg.names()
        .filter(|n| reg.is_block_eligible(n))
        .map(str::to_string)
        .collect()
}

async fn new_block(State(s): St, headers: HeaderMap) -> Reply {
    let (_, session) = match page_guard(&s, &headers) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let layout = Layout::of(&session, "new");
    if session.role != Role::Admin {
        return error_page(
            StatusCode::FORBIDDEN,
            Some(layout),
            "a read-only session cannot add blocks",
        );
    }
    html(
        StatusCode::OK,
        &pages::NewBlock::blank(
            Page::new(Some(layout), "Add a block"),
            block_scopes(&s.runtime),
        ),
    )
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct AddForm {
    pub csrf: Option<String>,
    pub scope: String,
    pub value: String,
    /// `temp` or `permanent`.
    pub duration: String,
    pub ttl: String,
    pub reason: String,
    pub status_code: String,
    pub message: String,
}

async fn add_block(State(s): St, req: Request) -> Reply {
    let (headers, f, _) = match form::<AddForm>(req).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let (_, session) = match post_guard(&s, &headers, f.csrf.as_deref(), true) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let layout = Layout::of(&session, "new");
    let scopes = block_scopes(&s.runtime);
    let invalid = |s: &str, f: AddForm| {
        html(
            StatusCode::BAD_REQUEST,
            &pages::NewBlock::refill(
                Page::new(Some(layout.clone()), "Add a block"),
                scopes.clone(),
                f,
                s.to_string(),
            ),
        )
    };
    let ttl = if f.duration == "permanent" {
        None
    } else {
        match f.ttl.trim().parse::<u64>() {
            Ok(t) => Some(t),
            Err(_) => return invalid("the TTL must be a whole number of seconds", f),
        }
    };
    let status_code = match f.status_code.trim() {
        "" => None,
        t => match t.parse::<u16>() {
            Ok(c) => Some(c),
            Err(_) => return invalid("the status code must be a number (100-599)", f),
        },
    };
    let message = Some(f.message.trim().to_string()).filter(|m| !m.is_empty());
    let manual = match manual_block(
        f.scope.trim().to_string(),
        f.value.trim().to_string(),
        ttl,
        f.reason.trim().to_string(),
        status_code,
        message,
        &session.actor,
    ) {
        Ok(m) => m,
        Err(reason) => return invalid(&reason, f),
    };
    match store_call(&s, move |rt| rt.block(&manual)).await {
        Ok(entry) => see_other_dyn(pages::block_href(&entry.scope_type, &entry.scope_value)),
        Err(e) => {
            let (status, msg) = describe(&s, &e);
            if status == StatusCode::BAD_REQUEST {
                invalid(&msg, f)
            } else {
                error_page(status, Some(layout.clone()), msg)
            }
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SubjectQuery {
    scope: String,
    value: String,
    revoked: Option<usize>,
}

async fn block_page(
    State(s): St,
    headers: HeaderMap,
    query: Result<Query<SubjectQuery>, QueryRejection>,
) -> Reply {
    let (c, session) = match page_guard(&s, &headers) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let layout = Layout::of(&session, "blocks");
    let Ok(Query(q)) = query else {
        return error_page(StatusCode::BAD_REQUEST, Some(layout), "bad query string");
    };
    let (scope, value) = (q.scope.clone(), q.value.clone());
    let result = store_call(&s, move |rt| {
        let active = rt.is_blocked(&scope, &value)?;
        let trail = rt.block_trail(&scope, &value, TRAIL_LIMIT)?;
        Ok((active, trail))
    })
    .await;
    let (active, trail, error) = match result {
        Ok((a, t)) => (a, t, None),
        Err(CallError::Api(e)) if !matches!(e, sec_audit_enforce::BlockApiError::Store(_)) => {
            return error_page(StatusCode::BAD_REQUEST, Some(layout), e.to_string());
        }
        Err(e) => (None, Some(Vec::new()), Some(describe(&s, &e).1)),
    };
    let page = pages::BlockDetail::build(
        Page::new(Some(layout), "Block"),
        &q.scope,
        &q.value,
        active,
        trail,
        &c.recent.records(),
        error,
        q.revoked,
        session.role == Role::Admin,
        now_secs(&s),
    );
    html(StatusCode::OK, &page)
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RevokeForm {
    csrf: Option<String>,
    scope: String,
    value: String,
    reason: String,
}

async fn revoke(State(s): St, req: Request) -> Reply {
    let (headers, f, _) = match form::<RevokeForm>(req).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let (_, session) = match post_guard(&s, &headers, f.csrf.as_deref(), true) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let layout = Layout::of(&session, "blocks");
    let reason = f.reason.trim().to_string();
    if reason.is_empty() {
        return error_page(
            StatusCode::BAD_REQUEST,
            Some(layout),
            "a revocation needs a reason",
        );
    }
    let (scope, value, actor) = (f.scope.clone(), f.value.clone(), session.actor.clone());
    match store_call(&s, move |rt| rt.unblock(&scope, &value, &reason, &actor)).await {
        Ok(n) => see_other_dyn(format!(
            "{}&revoked={n}",
            pages::block_href(&f.scope, &f.value)
        )),
        Err(e) => {
            let (status, msg) = describe(&s, &e);
            error_page(status, Some(layout), msg)
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct DecisionsQuery {
    #[serde(rename = "type")]
    pub event_type: String,
    pub rule: String,
}

async fn decisions(
    State(s): St,
    headers: HeaderMap,
    query: Result<Query<DecisionsQuery>, QueryRejection>,
) -> Reply {
    let (c, session) = match page_guard(&s, &headers) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let layout = Layout::of(&session, "decisions");
    let Ok(Query(q)) = query else {
        return error_page(StatusCode::BAD_REQUEST, Some(layout), "bad query string");
    };
    let page = pages::Decisions::build(
        Page::new(Some(layout), "Recent decisions"),
        &c.recent.records(),
        &q,
    );
    html(StatusCode::OK, &page)
}
