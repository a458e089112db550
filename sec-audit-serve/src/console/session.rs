//! Console sessions and the login rate limit.
//!
//! A session id is 32 random bytes (the OS generator) sent as 64 hex
//! characters in an `HttpOnly`, `SameSite=Strict` cookie; the server keeps
//! only its SHA-256 digest, with the role of the token that opened it, its
//! CSRF token (32 more random bytes), the operator's name and its times.
//! Sessions end after [`IDLE_TIMEOUT`] without a request, after
//! [`MAX_LIFETIME`] in any case, on logout, and when the table is full
//! (the least recently used goes first). Nothing survives a restart.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A session unused for this long ends.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// A session ends this long after login, used or not.
pub const MAX_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at most (then the least recently used is dropped).
pub const MAX_SESSIONS: usize = 256;

/// What a session may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The admin token: read and change blocks.
    Admin,
    /// The read token: read everything, change nothing.
    Read,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Read => "read-only",
        }
    }
}

/// One logged-in operator, as a request sees it.
#[derive(Clone, PartialEq, Eq)]
pub struct Session {
    pub role: Role,
    /// The CSRF token every form of this session carries.
    pub csrf: String,
    /// Recorded as the actor of this session's changes
    /// (`console:<name>`).
    pub actor: String,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("role", &self.role)
            .field("actor", &self.actor)
            .finish_non_exhaustive()
    }
}

struct Stored {
    session: Session,
    created: Instant,
    last_seen: Instant,
}

/// Random bytes as lower-case hex; `None` when the OS generator fails.
pub fn random_hex() -> Option<String> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).ok()?;
    Some(b.iter().map(|x| format!("{x:02x}")).collect())
}

fn key(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

/// Whether two secrets are equal, in time independent of where they differ.
pub fn secrets_equal(a: &str, b: &str) -> bool {
    let (da, db): ([u8; 32], [u8; 32]) = (key(a), key(b));
    bool::from(da.ct_eq(&db)) && !a.is_empty()
}

/// The session table.
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<[u8; 32], Stored>>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sessions")
    }
}

impl Sessions {
    fn lock(&self) -> MutexGuard<'_, HashMap<[u8; 32], Stored>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens a session; returns its id (the cookie value), `None` when no
    /// random bytes could be had.
    pub fn open(&self, role: Role, actor: String, now: Instant) -> Option<(String, Session)> {
        let id = random_hex()?;
        let session = Session {
            role,
            csrf: random_hex()?,
            actor,
        };
        let mut map = self.lock();
        map.retain(|_, s| alive(s, now));
        if map.len() >= MAX_SESSIONS {
            if let Some(oldest) = map.iter().min_by_key(|(_, s)| s.last_seen).map(|(k, _)| *k) {
                map.remove(&oldest);
            }
        }
        map.insert(
            key(&id),
            Stored {
                session: session.clone(),
                created: now,
                last_seen: now,
            },
        );
        Some((id, session))
    }

    /// The live session of a cookie value (touching it), if any.
    pub fn get(&self, id: &str, now: Instant) -> Option<Session> {
        if id.len() != 64 {
            return None;
        }
        let k = key(id);
        let mut map = self.lock();
        match map.get_mut(&k) {
            Some(s) if alive(s, now) => {
                s.last_seen = now;
                Some(s.session.clone())
            }
            Some(_) => {
                map.remove(&k);
                None
            }
            None => None,
        }
    }

    /// Ends a session.
    pub fn close(&self, id: &str) {
        self.lock().remove(&key(id));
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn alive(s: &Stored, now: Instant) -> bool {
    now.saturating_duration_since(s.last_seen) < IDLE_TIMEOUT
        && now.saturating_duration_since(s.created) < MAX_LIFETIME
}

/// Failed logins one client may make in a burst.
pub const LOGIN_BURST: f64 = 10.0;
/// Then one more per this many seconds.
pub const LOGIN_REFILL_SECS: f64 = 30.0;
/// Clients tracked at most; beyond, new clients share one bucket.
pub const LOGIN_CLIENTS: usize = 4096;

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn refill(&mut self, now: Instant) {
        let secs = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + secs / LOGIN_REFILL_SECS).min(LOGIN_BURST);
        self.at = now;
    }
}

/// Bounds failed login attempts per client address (a token bucket of
/// [`LOGIN_BURST`] refilled every [`LOGIN_REFILL_SECS`]). Only failures
/// take from it; a client whose bucket is empty is refused before its
/// token is even compared.
#[derive(Default)]
pub struct LoginLimiter {
    map: Mutex<(HashMap<IpAddr, Bucket>, Option<Bucket>)>,
}

impl std::fmt::Debug for LoginLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LoginLimiter")
    }
}

impl LoginLimiter {
    /// `Err(seconds to wait)` when `client` has no attempt left.
    pub fn check(&self, client: Option<IpAddr>, now: Instant) -> Result<(), u64> {
        let mut g = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let (map, overflow) = &mut *g;
        let tracked = client.is_some_and(|c| map.contains_key(&c));
        let bucket = match client {
            Some(c) if tracked => map.get_mut(&c),
            // Never failed yet, with room to be tracked: not limited.
            Some(_) if map.len() < LOGIN_CLIENTS => return Ok(()),
            _ => overflow.as_mut(),
        };
        let Some(bucket) = bucket else {
            return Ok(());
        };
        bucket.refill(now);
        if bucket.tokens >= 1.0 {
            Ok(())
        } else {
            Err(((1.0 - bucket.tokens) * LOGIN_REFILL_SECS).ceil().max(1.0) as u64)
        }
    }

    /// Counts a failed attempt of `client`.
    pub fn failed(&self, client: Option<IpAddr>, now: Instant) {
        let mut g = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let (map, overflow) = &mut *g;
        if map.len() >= LOGIN_CLIENTS {
            // Forget clients whose bucket is full again.
            map.retain(|_, b| {
                b.refill(now);
                b.tokens < LOGIN_BURST
            });
        }
        let fresh = || Bucket {
            tokens: LOGIN_BURST,
            at: now,
        };
        let bucket = match client {
            Some(c) if map.contains_key(&c) || map.len() < LOGIN_CLIENTS => {
                map.entry(c).or_insert_with(fresh)
            }
            _ => overflow.get_or_insert_with(fresh),
        };
        bucket.refill(now);
        bucket.tokens = (bucket.tokens - 1.0).max(0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_open_expire_and_close() {
        let s = Sessions::default();
        let t0 = Instant::now();
        let (id, sess) = s.open(Role::Read, "console:ann".into(), t0).unwrap();
        assert_eq!(id.len(), 64);
        assert_eq!(sess.csrf.len(), 64);
        assert_ne!(id, sess.csrf);
        assert_eq!(s.get(&id, t0), Some(sess.clone()));
        assert_eq!(s.get("x", t0), None);
        assert_eq!(s.get(&"0".repeat(64), t0), None);
        // Used within the idle timeout: kept, up to the lifetime.
        let mut t = t0;
        while t.duration_since(t0) + IDLE_TIMEOUT / 2 < MAX_LIFETIME {
            t += IDLE_TIMEOUT / 2;
            assert!(s.get(&id, t).is_some());
        }
        assert!(s.get(&id, t0 + MAX_LIFETIME).is_none());
        let (id, _) = s.open(Role::Admin, "console:bob".into(), t0).unwrap();
        assert!(s.get(&id, t0 + IDLE_TIMEOUT).is_none(), "idle");
        let (id, _) = s.open(Role::Admin, "console:bob".into(), t0).unwrap();
        s.close(&id);
        assert!(s.get(&id, t0).is_none());
    }

    #[test]
    fn the_table_is_bounded() {
        let s = Sessions::default();
        let t0 = Instant::now();
        let (first, _) = s.open(Role::Read, String::new(), t0).unwrap();
        for i in 1..=MAX_SESSIONS as u32 {
            s.open(
                Role::Read,
                String::new(),
                t0 + Duration::from_millis(i.into()),
            )
            .unwrap();
        }
        assert_eq!(s.len(), MAX_SESSIONS);
        assert!(s.get(&first, t0 + Duration::from_secs(1)).is_none());
    }

    #[test]
    fn secrets_compare() {
        assert!(secrets_equal("abc", "abc"));
        assert!(!secrets_equal("abc", "abd"));
        assert!(!secrets_equal("", ""));
    }

    #[test]
    fn failed_logins_are_bounded_per_client() {
        let l = LoginLimiter::default();
        let t0 = Instant::now();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..LOGIN_BURST as usize {
            assert!(l.check(Some(a), t0).is_ok());
            l.failed(Some(a), t0);
        }
        let wait = l.check(Some(a), t0).unwrap_err();
        assert_eq!(wait, LOGIN_REFILL_SECS as u64);
        assert!(
            l.check(Some(b), t0).is_ok(),
            "another client is not limited"
        );
        let later = t0 + Duration::from_secs_f64(LOGIN_REFILL_SECS);
        assert!(l.check(Some(a), later).is_ok(), "refilled");
    }
}
