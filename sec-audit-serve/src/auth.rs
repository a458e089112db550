//! Bearer tokens of the HTTP surfaces. Tokens are kept only as SHA-256
//! digests and compared in constant time; they never appear in a log line,
//! an emitted event or a `Debug` output.

use axum::http::{header, HeaderMap};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Read and write access to the block API.
pub const ENV_ADMIN_TOKEN: &str = "SEC_AUDIT_ADMIN_TOKEN";
/// Read-only access to the block API.
pub const ENV_READ_TOKEN: &str = "SEC_AUDIT_READ_TOKEN";
/// When set, required on `/v1/events` and `/v1/logs`.
pub const ENV_INGEST_TOKEN: &str = "SEC_AUDIT_INGEST_TOKEN";
/// Shorter tokens are refused at startup (they can be guessed).
pub const MIN_TOKEN_LEN: usize = 16;

/// A token configuration problem (the message never contains the token).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("{0} is shorter than {MIN_TOKEN_LEN} characters")]
    TooShort(&'static str),
    #[error("{0} contains whitespace or control characters")]
    BadCharacters(&'static str),
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct Digest32([u8; 32]);

fn digest(token: &[u8]) -> Digest32 {
    Digest32(Sha256::digest(token).into())
}

/// The configured tokens (digests only).
#[derive(Clone, Default)]
pub struct Tokens {
    admin: Option<Digest32>,
    read: Option<Digest32>,
    ingest: Option<Digest32>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("admin", &self.admin.is_some())
            .field("read", &self.read.is_some())
            .field("ingest", &self.ingest.is_some())
            .finish()
    }
}

/// What a request's bearer token grants on the block API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No token configured at all: the block API is off.
    Off,
    /// Missing or unknown token.
    Unauthorized,
    Read,
    Admin,
}

fn check(name: &'static str, value: Option<String>) -> Result<Option<Digest32>, TokenError> {
    let Some(v) = value.filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if v.chars().count() < MIN_TOKEN_LEN {
        return Err(TokenError::TooShort(name));
    }
    if v.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(TokenError::BadCharacters(name));
    }
    Ok(Some(digest(v.as_bytes())))
}

fn matches(expected: Option<Digest32>, given: Option<Digest32>) -> bool {
    match (expected, given) {
        (Some(e), Some(g)) => bool::from(e.0.ct_eq(&g.0)),
        _ => false,
    }
}

impl Tokens {
    /// The tokens from `SEC_AUDIT_ADMIN_TOKEN`, `SEC_AUDIT_READ_TOKEN` and
    /// `SEC_AUDIT_INGEST_TOKEN` (unset or empty: not configured).
    pub fn from_env() -> Result<Tokens, TokenError> {
        Self::new(
            std::env::var(ENV_ADMIN_TOKEN).ok(),
            std::env::var(ENV_READ_TOKEN).ok(),
            std::env::var(ENV_INGEST_TOKEN).ok(),
        )
    }

    /// Tokens given in code (`None` or empty: not configured).
    pub fn new(
        admin: Option<String>,
        read: Option<String>,
        ingest: Option<String>,
    ) -> Result<Tokens, TokenError> {
        Ok(Tokens {
            admin: check(ENV_ADMIN_TOKEN, admin)?,
            read: check(ENV_READ_TOKEN, read)?,
            ingest: check(ENV_INGEST_TOKEN, ingest)?,
        })
    }

    /// Whether the block API is on (some admin or read token is set).
    pub fn block_api_enabled(&self) -> bool {
        self.admin.is_some() || self.read.is_some()
    }

    /// Whether ingest needs a token.
    pub fn ingest_required(&self) -> bool {
        self.ingest.is_some()
    }

    /// The access the request's `Authorization: Bearer` grants.
    pub fn block_access(&self, headers: &HeaderMap) -> Access {
        self.access_for(bearer(headers))
    }

    /// The access a token grants (the console's login form).
    pub fn access_for(&self, token: Option<&[u8]>) -> Access {
        if !self.block_api_enabled() {
            return Access::Off;
        }
        let given = token.filter(|t| !t.is_empty()).map(digest);
        // Both comparisons always run: the time taken does not tell which
        // token (if any) matched.
        let admin = matches(self.admin, given);
        let read = matches(self.read, given);
        if admin {
            Access::Admin
        } else if read {
            Access::Read
        } else {
            Access::Unauthorized
        }
    }

    /// Whether the request may ingest (always, when no ingest token is set).
    pub fn ingest_allowed(&self, headers: &HeaderMap) -> bool {
        self.ingest.is_none() || matches(self.ingest, bearer(headers).map(digest))
    }
}

/// The bearer token of an `Authorization` header, as bytes.
fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let v = headers.get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, rest) = (v.get(..7)?, v.get(7..)?);
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    const ADMIN: &str = "admin-token-0123456789";
    const READ: &str = "read-token-0123456789";

    fn headers(auth: &[u8]) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_bytes(auth).unwrap(),
        );
        h
    }

    #[test]
    fn access_levels() {
        let t = Tokens::new(Some(ADMIN.into()), Some(READ.into()), None).unwrap();
        assert_eq!(
            t.block_access(&headers(format!("Bearer {ADMIN}").as_bytes())),
            Access::Admin
        );
        assert_eq!(
            t.block_access(&headers(format!("bearer  {READ} ").as_bytes())),
            Access::Read
        );
        assert_eq!(
            t.block_access(&headers(b"Bearer wrong-token-0123456789")),
            Access::Unauthorized
        );
        assert_eq!(t.block_access(&headers(b"Basic abc")), Access::Unauthorized);
        assert_eq!(t.block_access(&headers(b"\xff\xfe")), Access::Unauthorized);
        assert_eq!(t.block_access(&HeaderMap::new()), Access::Unauthorized);
        assert!(t.ingest_allowed(&HeaderMap::new()));
        let off = Tokens::new(None, Some(String::new()), None).unwrap();
        assert_eq!(off.block_access(&headers(b"Bearer x")), Access::Off);
    }

    #[test]
    fn ingest_token() {
        let t = Tokens::new(None, None, Some("ingest-token-0123456789".into())).unwrap();
        assert!(!t.ingest_allowed(&HeaderMap::new()));
        assert!(!t.ingest_allowed(&headers(b"Bearer ingest-token-012345678")));
        assert!(t.ingest_allowed(&headers(b"Bearer ingest-token-0123456789")));
    }

    #[test]
    fn weak_tokens_are_refused_and_never_shown() {
        let e = Tokens::new(Some("xyz42".into()), None, None).unwrap_err();
        assert!(!e.to_string().contains("xyz42"));
        assert!(Tokens::new(None, Some("has a space 0123456789".into()), None).is_err());
        let t = Tokens::new(Some(ADMIN.into()), None, None).unwrap();
        assert!(!format!("{t:?}").contains(ADMIN));
    }
}
