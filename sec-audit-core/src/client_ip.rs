//! Client-IP resolution behind trusted proxies (the ingress
//! step 1).
//!
//! `X-Forwarded-For` is read only when the peer address is inside a trusted
//! CIDR. The chain is walked from the right: every entry a trusted proxy
//! appended is the address *its* peer had, so an entry is believed only while
//! everything to its right is a trusted proxy. The client is the
//! `trusted_proxy_count`-th entry from the right, or the first untrusted entry
//! met before it (that hop connected straight to a trusted proxy, and
//! everything left of it is attacker-controlled). Anything unparseable at the
//! chosen position yields no client IP at all, so no `ip` scope: a spoofed
//! header can never become a block key.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustedProxyError {
    #[error("trusted_proxy_cidrs: `{0}` is not a CIDR or IP address")]
    BadCidr(String),
    #[error("trusted_proxy_cidrs and trusted_proxy_count must be set together (both or neither)")]
    Incomplete,
    #[error("trusted_proxy_count must be at least 1")]
    ZeroCount,
}

/// Resolves the client IP of a request from its peer address and
/// `X-Forwarded-For` header.
#[derive(Debug, Clone, Default)]
pub struct ClientIpResolver {
    trusted: Vec<IpNet>,
    count: usize,
}

/// Parses an address as it appears in a peer address or forwarding header:
/// a bare IPv4/IPv6 address, `ip:port`, `[v6]:port` or `[v6]`; surrounding
/// quotes are ignored.
pub fn parse_ip_token(token: &str) -> Option<IpAddr> {
    // The common case, a bare IPv4 address: nothing to trim, and only the
    // IPv4 grammar can apply (every other form needs a `:` or a bracket).
    if !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return token.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4);
    }
    let t = token.trim().trim_matches(|c| c == '"' || c == '\'');
    if t.is_empty() {
        return None;
    }
    if let Ok(ip) = t.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = t.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    t.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .ok()
}

impl ClientIpResolver {
    /// No trusted proxies: the peer address is always the client.
    pub fn direct() -> Self {
        Self::default()
    }

    /// Trusted proxies: both lists set, or neither (then XFF is never read).
    pub fn new<I>(cidrs: I, count: Option<usize>) -> Result<Self, TrustedProxyError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let trusted = cidrs
            .into_iter()
            .map(|c| {
                let c = c.as_ref().trim();
                c.parse::<IpNet>()
                    .or_else(|_| c.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| TrustedProxyError::BadCidr(c.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        match (trusted.is_empty(), count) {
            (true, None) => Ok(Self::direct()),
            (false, Some(0)) => Err(TrustedProxyError::ZeroCount),
            (false, Some(n)) => Ok(ClientIpResolver { trusted, count: n }),
            _ => Err(TrustedProxyError::Incomplete),
        }
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.trusted.iter().any(|n| n.contains(&ip))
    }

    /// The client IP, or `None` when it cannot be known.
    pub fn resolve(&self, peer: &str, forwarded_for: Option<&str>) -> Option<IpAddr> {
        let peer_ip = canonical(parse_ip_token(peer)?);
        if self.count == 0 || !self.is_trusted(peer_ip) {
            return Some(peer_ip);
        }
        let header = match forwarded_for {
            Some(h) if !h.trim().is_empty() => h,
            _ => return Some(peer_ip),
        };
        let hops: Vec<&str> = header.split(',').map(str::trim).collect();
        let mut chosen: Option<&str> = None;
        for (i, hop) in hops.iter().rev().enumerate() {
            chosen = Some(hop);
            if i + 1 == self.count {
                break;
            }
            match parse_ip_token(hop) {
                Some(ip) if self.is_trusted(ip) => continue,
                _ => break,
            }
        }
        chosen.and_then(parse_ip_token).map(canonical)
    }
}

/// IPv4-mapped IPv6 addresses are the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn without_trusted_proxies_xff_is_never_read() {
        let r = ClientIpResolver::direct();
        assert_eq!(r.resolve("203.0.113.5", Some("1.2.3.4")), ip("203.0.113.5"));
        assert_eq!(r.resolve("203.0.113.5:4431", None), ip("203.0.113.5"));
        assert_eq!(r.resolve("[2001:db8::1]:443", None), ip("2001:db8::1"));
        assert_eq!(r.resolve("::ffff:10.0.0.1", None), ip("10.0.0.1"));
    }

    #[test]
    fn untrusted_peer_with_spoofed_xff_is_the_client() {
        let r = ClientIpResolver::new(["10.0.0.0/8"], Some(1)).unwrap();
        assert_eq!(
            r.resolve("203.0.113.5", Some("198.51.100.7")),
            ip("203.0.113.5")
        );
    }

    #[test]
    fn trusted_peer_takes_the_nth_entry_from_the_right() {
        let r = ClientIpResolver::new(["10.0.0.0/8"], Some(1)).unwrap();
        // The attacker prepended a fake hop; the proxy appended the real one.
        assert_eq!(
            r.resolve("10.0.0.2", Some("6.6.6.6, 198.51.100.7")),
            ip("198.51.100.7")
        );
        let r2 = ClientIpResolver::new(["10.0.0.0/8"], Some(2)).unwrap();
        assert_eq!(
            r2.resolve("10.0.0.2", Some("6.6.6.6, 198.51.100.7, 10.1.1.1")),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn an_untrusted_hop_between_stops_the_walk() {
        let r = ClientIpResolver::new(["10.0.0.0/8"], Some(3)).unwrap();
        // 198.51.100.7 connected directly to a trusted proxy; what is left of
        // it is whatever it claimed.
        assert_eq!(
            r.resolve("10.0.0.2", Some("1.1.1.1, 6.6.6.6, 198.51.100.7")),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn short_chain_takes_the_leftmost_believed_entry() {
        let r = ClientIpResolver::new(["10.0.0.0/8"], Some(2)).unwrap();
        assert_eq!(
            r.resolve("10.0.0.2", Some("198.51.100.7")),
            ip("198.51.100.7")
        );
        assert_eq!(r.resolve("10.0.0.2", Some("")), ip("10.0.0.2"));
        assert_eq!(r.resolve("10.0.0.2", None), ip("10.0.0.2"));
    }

    #[test]
    fn garbage_yields_no_client_ip() {
        let r = ClientIpResolver::new(["10.0.0.0/8"], Some(1)).unwrap();
        assert_eq!(r.resolve("not-an-ip", Some("1.2.3.4")), None);
        assert_eq!(r.resolve("10.0.0.2", Some("1.2.3.4, evil")), None);
        assert_eq!(r.resolve("10.0.0.2", Some("☃☃☃")), None);
        assert_eq!(r.resolve("10.0.0.2", Some(&"9".repeat(5000))), None);
        assert_eq!(r.resolve("", None), None);
        assert_eq!(r.resolve("10.0.0.2", Some(" , ,")), None);
    }

    #[test]
    fn configuration_must_be_both_or_neither() {
        assert_eq!(
            ClientIpResolver::new(["10.0.0.0/8"], None).unwrap_err(),
            TrustedProxyError::Incomplete
        );
        assert_eq!(
            ClientIpResolver::new([] as [&str; 0], Some(1)).unwrap_err(),
            TrustedProxyError::Incomplete
        );
        assert_eq!(
            ClientIpResolver::new(["10.0.0.0/8"], Some(0)).unwrap_err(),
            TrustedProxyError::ZeroCount
        );
        assert!(matches!(
            ClientIpResolver::new(["10.0.0.0/33"], Some(1)),
            Err(TrustedProxyError::BadCidr(_))
        ));
        assert!(ClientIpResolver::new(["192.0.2.1", "2001:db8::/32"], Some(1)).is_ok());
    }

    #[test]
    fn ip_tokens_in_odd_shapes() {
        assert_eq!(parse_ip_token("\"[2001:db8::1]:80\""), ip("2001:db8::1"));
        assert_eq!(parse_ip_token("[2001:db8::1]"), ip("2001:db8::1"));
        assert_eq!(parse_ip_token("'1.2.3.4'"), ip("1.2.3.4"));
        assert_eq!(parse_ip_token("unknown"), None);
    }
}
