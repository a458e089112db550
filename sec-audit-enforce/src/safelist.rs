//! The safelist (`[safelist]`): addresses and networks, users and sessions
//! that are never a ban key.
//!
//! Per scope, not per request: a safelisted `ip` is never looked up at
//! ingress (so an older block on it never denies) and never gets a block,
//! but a request from that address by a blocked *user* is still denied by
//! the user's block. A blocking match whose target is safelisted becomes an
//! `alert` with `enforcement.safelisted = true` (and the target's
//! `scope.type` / `scope.value`), so it stays visible.
//!
//! Addresses match canonically (an IPv4-mapped IPv6 address is its IPv4
//! address), networks by containment: the entries are merged into sorted,
//! disjoint ranges per family and searched by bisection, so a request costs
//! O(log n) whatever the list's length.

use std::cmp::Ordering;
use std::net::IpAddr;

use ipnet::IpNet;
use sec_audit_rules::ScopeKey;

use crate::config::{ConfigError, SafelistConfig};

/// A compiled safelist. Cheap to query; build it once.
#[derive(Debug, Clone)]
pub struct Safelist {
    /// Sorted, disjoint, non-adjacent inclusive ranges (IPv4 addresses as
    /// their 32-bit value).
    v4: Vec<(u128, u128)>,
    v6: Vec<(u128, u128)>,
    /// Sorted by length, then bytes ([`by_len`]): a lookup compares
    /// lengths first, so it rarely reads a string, and never hashes one.
    users: Vec<Box<str>>,
    sessions: Vec<Box<str>>,
    /// The entries as configured (canonical networks), for messages.
    nets: Vec<IpNet>,
    /// Nothing at all is listed (the common case: one branch per request).
    empty: bool,
}

impl Default for Safelist {
    fn default() -> Self {
        Safelist::new(&SafelistConfig::default())
    }
}

/// Checks what the reader cannot: no empty user or session entry (it
/// could never match, so it is a mistake).
pub fn validate(config: &SafelistConfig) -> Result<(), ConfigError> {
    for (key, list) in [
        ("safelist.users", &config.users),
        ("safelist.sessions", &config.sessions),
    ] {
        if list.iter().any(|v| v.trim().is_empty()) {
            return Err(ConfigError::Invalid {
                key: key.into(),
                reason: "entries must not be empty".into(),
            });
        }
    }
    Ok(())
}

/// The address as scope keys hold it: IPv4-mapped IPv6 as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// A network in canonical form: host bits cleared, and an IPv4-mapped IPv6
/// network (`::ffff:10.0.0.0/104`) as its IPv4 network.
fn canonical_net(net: &IpNet) -> IpNet {
    let net = net.trunc();
    if let IpNet::V6(v6) = net {
        if v6.prefix_len() >= 96 {
            if let Some(v4) = v6.network().to_ipv4_mapped() {
                if let Ok(n) = ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96) {
                    return IpNet::V4(n);
                }
            }
        }
    }
    net
}

/// Sorts and merges inclusive ranges (overlapping or adjacent).
fn merge(mut ranges: Vec<(u128, u128)>) -> Vec<(u128, u128)> {
    ranges.sort_unstable();
    let mut out: Vec<(u128, u128)> = Vec::with_capacity(ranges.len());
    for (lo, hi) in ranges {
        match out.last_mut() {
            Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
            _ => out.push((lo, hi)),
        }
    }
    out
}

/// Length first, then bytes: a total order whose comparisons mostly stop
/// at the lengths.
fn by_len(a: &str, b: &str) -> Ordering {
    a.len()
        .cmp(&b.len())
        .then_with(|| a.as_bytes().cmp(b.as_bytes()))
}

/// Whether `x` is in `sorted` (sorted by [`by_len`]).
fn listed(sorted: &[Box<str>], x: &str) -> bool {
    !sorted.is_empty() && sorted.binary_search_by(|e| by_len(e, x)).is_ok()
}

/// Whether `x` falls in one of the sorted disjoint `ranges`.
fn within(ranges: &[(u128, u128)], x: u128) -> bool {
    // The last range starting at or before x.
    let i = ranges.partition_point(|(lo, _)| *lo <= x);
    i > 0 && x <= ranges[i - 1].1
}

impl Safelist {
    pub fn new(config: &SafelistConfig) -> Self {
        let nets: Vec<IpNet> = config.ips.iter().map(canonical_net).collect();
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for n in &nets {
            match n {
                IpNet::V4(n) => v4.push((
                    u128::from(u32::from(n.network())),
                    u128::from(u32::from(n.broadcast())),
                )),
                IpNet::V6(n) => v6.push((u128::from(n.network()), u128::from(n.broadcast()))),
            }
        }
        let set = |list: &[String]| -> Vec<Box<str>> {
            let mut v: Vec<Box<str>> = list
                .iter()
                .map(|v| v.trim())
                .filter(|v| !v.is_empty())
                .map(Box::from)
                .collect();
            v.sort_unstable_by(|a, b| by_len(a, b));
            v.dedup();
            v
        };
        let (users, sessions) = (set(&config.users), set(&config.sessions));
        Safelist {
            empty: nets.is_empty() && users.is_empty() && sessions.is_empty(),
            v4: merge(v4),
            v6: merge(v6),
            users,
            sessions,
            nets,
        }
    }

    /// Nothing is safelisted.
    pub fn is_empty(&self) -> bool {
        self.empty
    }

    /// Whether the address (canonically) is in a safelisted network.
    pub fn contains_ip(&self, ip: IpAddr) -> bool {
        match canonical(ip) {
            IpAddr::V4(v4) => !self.v4.is_empty() && within(&self.v4, u128::from(u32::from(v4))),
            IpAddr::V6(v6) => !self.v6.is_empty() && within(&self.v6, u128::from(v6)),
        }
    }

    /// Whether the user id is safelisted (exactly; entries are trimmed,
    /// and so is every scope value).
    pub fn contains_user(&self, user: &str) -> bool {
        listed(&self.users, user)
    }

    /// Whether the session id is safelisted (exactly, as users).
    pub fn contains_session(&self, session: &str) -> bool {
        listed(&self.sessions, session)
    }

    /// Whether a scope key is safelisted: `ip` (its value an address, as
    /// ingress parses one), `user` or `session`. Other scopes never are.
    pub fn contains(&self, key: &ScopeKey) -> bool {
        match key.scope() {
            "ip" => sec_audit_core::client_ip::parse_ip_token(key.value())
                .is_some_and(|ip| self.contains_ip(ip)),
            "user" => self.contains_user(key.value().trim()),
            "session" => self.contains_session(key.value().trim()),
            _ => false,
        }
    }

    /// The entry that safelists `key`, as written in the configuration
    /// (`safelist.ips 192.0.2.0/24`), for messages.
    pub fn entry_for(&self, key: &ScopeKey) -> Option<String> {
        match key.scope() {
            "ip" => {
                let ip = canonical(sec_audit_core::client_ip::parse_ip_token(key.value())?);
                self.nets
                    .iter()
                    .find(|n| n.contains(&ip))
                    .map(|n| format!("safelist.ips {n}"))
            }
            "user" if self.contains_user(key.value().trim()) => {
                Some(format!("safelist.users {}", key.value().trim()))
            }
            "session" if self.contains_session(key.value().trim()) => {
                Some(format!("safelist.sessions {}", key.value().trim()))
            }
            _ => None,
        }
    }

    /// The safelisted networks (canonical).
    pub fn networks(&self) -> &[IpNet] {
        &self.nets
    }
    /// The safelisted users.
    pub fn users(&self) -> impl Iterator<Item = &str> {
        self.users.iter().map(|u| &**u)
    }
    /// The safelisted sessions.
    pub fn sessions(&self) -> impl Iterator<Item = &str> {
        self.sessions.iter().map(|s| &**s)
    }
}

/// Active blocks (temporary and permanent) on safelisted subjects in
/// `store`: what `check` warns about. Reads every active `ip` block (a SCAN
/// on Redis: operator tooling, never the request path) and looks users and
/// sessions up one by one.
pub fn blocked_entries(
    safelist: &Safelist,
    store: &dyn sec_audit_store::BlockStore,
) -> Result<Vec<sec_audit_store::BlockEntry>, sec_audit_store::StoreError> {
    let mut out = Vec::new();
    if !safelist.v4.is_empty() || !safelist.v6.is_empty() {
        let mut ips = store.active_blocks(Some("ip"))?;
        ips.extend(store.active_temp_blocks(Some("ip"))?);
        out.extend(ips.into_iter().filter(|e| safelist.contains(&e.scope())));
    }
    let mut names: Vec<ScopeKey> = safelist
        .users()
        .map(|u| ScopeKey::new("user", u))
        .chain(safelist.sessions().map(|s| ScopeKey::new("session", s)))
        .collect();
    names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    for key in names {
        out.extend(store.get_active(&key)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(ips: &[&str], users: &[&str], sessions: &[&str]) -> Safelist {
        Safelist::new(&SafelistConfig {
            ips: ips
                .iter()
                .map(|s| {
                    s.parse::<IpNet>()
                        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                        .unwrap()
                })
                .collect(),
            users: users.iter().map(|s| s.to_string()).collect(),
            sessions: sessions.iter().map(|s| s.to_string()).collect(),
        })
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn addresses_and_networks_match_by_containment_canonically() {
        let s = list(
            &[
                "192.0.2.214",
                "10.0.0.0/8",
                "10.1.0.0/16",
                "2001:db8::/32",
                "::ffff:198.51.100.0/120",
                "172.16.5.9/12",
            ],
            &[],
            &[],
        );
        for yes in [
            "192.0.2.214",
            "::ffff:192.0.2.214",
            "10.0.0.0",
            "10.255.255.255",
            "10.1.2.3",
            "2001:db8::1",
            "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
            "198.51.100.7",
            "::ffff:198.51.100.255",
            "172.31.0.1",
            "172.16.0.0",
        ] {
            assert!(s.contains_ip(ip(yes)), "{yes}");
        }
        for no in [
            "192.0.2.213",
            "192.0.2.215",
            "11.0.0.0",
            "9.255.255.255",
            "2001:db9::1",
            "2001:db7:ffff::1",
            "198.51.101.0",
            "172.32.0.0",
            "::1",
            "0.0.0.0",
            "255.255.255.255",
        ] {
            assert!(!s.contains_ip(ip(no)), "{no}");
        }
        // Host bits are cleared and the mapped network is IPv4.
        let nets: Vec<String> = s.networks().iter().map(ToString::to_string).collect();
        assert!(nets.contains(&"172.16.0.0/12".to_string()), "{nets:?}");
        assert!(nets.contains(&"198.51.100.0/24".to_string()), "{nets:?}");
        // Overlapping entries are merged into disjoint ranges.
        assert_eq!(s.v4.len(), 4, "{:?}", s.v4);
    }

    #[test]
    fn the_whole_space_and_its_edges() {
        let s = list(&["0.0.0.0/0", "::/0"], &[], &[]);
        for a in [
            "0.0.0.0",
            "255.255.255.255",
            "::",
            "ffff::1",
            "::ffff:1.2.3.4",
        ] {
            assert!(s.contains_ip(ip(a)), "{a}");
        }
        let adjacent = list(&["10.0.0.0/25", "10.0.0.128/25"], &[], &[]);
        assert_eq!(adjacent.v4, vec![(0x0a00_0000, 0x0a00_00ff)]);
    }

    #[test]
    fn scope_keys_users_and_sessions() {
        let s = list(&["192.0.2.0/24"], &["ops", " monitor "], &["sess-1"]);
        assert!(s.contains(&ScopeKey::new("ip", "192.0.2.9")));
        assert!(!s.contains(&ScopeKey::new("ip", "192.0.3.9")));
        assert!(!s.contains(&ScopeKey::new("ip", "not an address")));
        assert!(s.contains(&ScopeKey::new("user", "ops")));
        assert!(s.contains(&ScopeKey::new("user", "monitor")));
        assert!(!s.contains(&ScopeKey::new("user", "Ops")), "exact ids");
        assert!(s.contains(&ScopeKey::new("session", "sess-1")));
        assert!(!s.contains(&ScopeKey::new("session", "ops")));
        assert!(!s.contains(&ScopeKey::new("route", "ops")));
        assert_eq!(
            s.entry_for(&ScopeKey::new("ip", "::ffff:192.0.2.9"))
                .as_deref(),
            Some("safelist.ips 192.0.2.0/24")
        );
        assert_eq!(
            s.entry_for(&ScopeKey::new("user", "ops")).as_deref(),
            Some("safelist.users ops")
        );
        assert_eq!(s.entry_for(&ScopeKey::new("user", "alice")), None);
        assert!(!s.is_empty());
        assert!(Safelist::default().is_empty());
        assert!(!Safelist::default().contains_ip(ip("1.2.3.4")));
    }

    #[test]
    fn ids_of_every_length_are_found_exactly() {
        let ids = [
            "b", "aa", "a", "ccc", "ab", "a", "zz", "1042", "10420", "ünï",
        ];
        let s = list(&[], &ids, &ids);
        for id in ids {
            assert!(s.contains_user(id) && s.contains_session(id), "{id}");
        }
        for id in ["", "c", "ba", "abc", "104", "1043", "104200", "ün", "A"] {
            assert!(!s.contains_user(id) && !s.contains_session(id), "{id}");
        }
        assert_eq!(s.users().count(), 9, "deduplicated");
    }

    #[test]
    fn empty_entries_are_refused() {
        let mut c = SafelistConfig {
            users: vec!["ok".into(), " ".into()],
            ..SafelistConfig::default()
        };
        assert!(validate(&c)
            .unwrap_err()
            .to_string()
            .contains("safelist.users"));
        c.users = vec!["ok".into()];
        c.sessions = vec![String::new()];
        assert!(validate(&c)
            .unwrap_err()
            .to_string()
            .contains("safelist.sessions"));
        c.sessions.clear();
        assert!(validate(&c).is_ok());
    }
}
