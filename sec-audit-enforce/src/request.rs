//! The framework-neutral request view the ingress check reads, and its
//! verdict.

use std::borrow::Cow;

use serde_json::{Map, Value};

/// What the ingress check needs to know about a request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestView<'a> {
    pub method: Cow<'a, str>,
    pub path: Cow<'a, str>,
    /// The TCP peer address (`ip` or `ip:port`).
    pub peer_addr: Cow<'a, str>,
    /// Every `X-Forwarded-For` header value, joined with `, ` in order.
    pub forwarded_for: Option<Cow<'a, str>>,
    /// The authenticated principal, if the application knows it already.
    pub user_id: Option<Cow<'a, str>>,
    /// The audit session id (never the raw session cookie).
    pub session_id: Option<Cow<'a, str>>,
    pub request_id: Option<Cow<'a, str>>,
    /// The parsed request body, when the application has it.
    pub body: Option<Cow<'a, Map<String, Value>>>,
}

impl<'a> RequestView<'a> {
    pub fn new(
        method: impl Into<Cow<'a, str>>,
        path: impl Into<Cow<'a, str>>,
        peer_addr: impl Into<Cow<'a, str>>,
    ) -> Self {
        RequestView {
            method: method.into(),
            path: path.into(),
            peer_addr: peer_addr.into(),
            ..Default::default()
        }
    }

    /// Takes `X-Forwarded-For` (any case, possibly repeated) from headers.
    pub fn with_headers<I, K, V>(mut self, headers: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut xff: Option<String> = None;
        for (k, v) in headers {
            if k.as_ref().eq_ignore_ascii_case("x-forwarded-for") {
                match &mut xff {
                    Some(s) => {
                        s.push_str(", ");
                        s.push_str(v.as_ref());
                    }
                    None => xff = Some(v.as_ref().to_string()),
                }
            }
        }
        self.forwarded_for = xff.map(Cow::Owned);
        self
    }

    pub fn with_forwarded_for(mut self, xff: impl Into<Cow<'a, str>>) -> Self {
        self.forwarded_for = Some(xff.into());
        self
    }
    pub fn with_user_id(mut self, user_id: impl Into<Cow<'a, str>>) -> Self {
        self.user_id = Some(user_id.into());
        self
    }
    pub fn with_session_id(mut self, session_id: impl Into<Cow<'a, str>>) -> Self {
        self.session_id = Some(session_id.into());
        self
    }
    pub fn with_request_id(mut self, request_id: impl Into<Cow<'a, str>>) -> Self {
        self.request_id = Some(request_id.into());
        self
    }
    /// The parsed body, owned.
    pub fn with_body(mut self, body: Map<String, Value>) -> Self {
        self.body = Some(Cow::Owned(body));
        self
    }
    /// The same view owning all of its data (to move it to another thread).
    pub fn into_owned(self) -> RequestView<'static> {
        fn own(c: Cow<'_, str>) -> Cow<'static, str> {
            Cow::Owned(c.into_owned())
        }
        RequestView {
            method: own(self.method),
            path: own(self.path),
            peer_addr: own(self.peer_addr),
            forwarded_for: self.forwarded_for.map(own),
            user_id: self.user_id.map(own),
            session_id: self.session_id.map(own),
            request_id: self.request_id.map(own),
            body: self.body.map(|b| Cow::Owned(b.into_owned())),
        }
    }

    /// The parsed body, borrowed.
    pub fn with_body_ref(mut self, body: &'a Map<String, Value>) -> Self {
        self.body = Some(Cow::Borrowed(body));
        self
    }
}

/// Why a request was denied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DenyReason {
    /// An active block on this scope (`scope:value`), written by this rule.
    Blocked {
        scope_type: String,
        scope_value: String,
        rule_name: String,
    },
    /// An ingress-safe rule matched and its action blocks.
    RuleMatched { rule_name: String },
    /// The block store could not answer and the path is fail-closed.
    FailClosed,
    /// An unexpected error with `fail_open = false`.
    Error,
}

/// The ingress check's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngressDecision {
    Allow,
    Deny {
        status_code: u16,
        /// Sent as `text/plain`.
        message: String,
        reason: DenyReason,
        /// Whole seconds left (rounded up, at least 1) of the temporary
        /// block that denied — the request's own block, or the one a rule
        /// match just applied. `None` for permanent blocks, matches that
        /// applied no temporary block, and failures.
        retry_after: Option<u64>,
    },
}

impl IngressDecision {
    pub fn is_allow(&self) -> bool {
        matches!(self, IngressDecision::Allow)
    }

    /// The `Retry-After` seconds of a deny by a temporary block.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            IngressDecision::Deny { retry_after, .. } => *retry_after,
            IngressDecision::Allow => None,
        }
    }
}

/// Seconds left until `expires_at` at `now`, rounded up, at least 1.
pub fn seconds_left(expires_at: f64, now: f64) -> u64 {
    let left = (expires_at - now).ceil();
    if left.is_nan() || left < 1.0 {
        1
    } else if left >= u64::MAX as f64 {
        u64::MAX
    } else {
        left as u64
    }
}
