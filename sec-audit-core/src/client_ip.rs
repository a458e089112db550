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
    match parse_bare_ipv4(token.as_bytes()) {
        Bare::Ipv4(ip) => return Some(IpAddr::V4(ip)),
        Bare::NotAnAddress => return None,
        Bare::OtherForm => {}
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

/// What [`parse_bare_ipv4`] found.
enum Bare {
    /// Digits and dots only, an IPv4 address.
    Ipv4(std::net::Ipv4Addr),
    /// Digits and dots only, but not an IPv4 address (`999.1.1.1`, a
    /// leading zero, five parts): no other grammar applies either.
    NotAnAddress,
    /// Something else than digits and dots (or empty): another form.
    OtherForm,
}

/// One pass over `b`: the IPv4 address `Ipv4Addr::from_str` accepts (four
/// decimal octets of at most 255, no leading zeros) when `b` holds only
/// digits and dots. About a fifth of the instructions of the standard
/// parser, which is the ingress check's largest single cost.
fn parse_bare_ipv4(b: &[u8]) -> Bare {
    if b.is_empty() {
        return Bare::OtherForm;
    }
    // An octet is valid with 1 to 3 digits, at most 255, and no leading
    // zero unless it is "0" itself; checked at each dot and at the end.
    let valid = |value: u32, digits: u32, first: u8| {
        (1..=3).contains(&digits) && value <= 255 && (first != b'0' || digits == 1)
    };
    let mut octets = [0u8; 4];
    let mut part = 0usize;
    let (mut value, mut digits, mut first) = (0u32, 0u32, 0u8);
    let mut ok = true;
    for &c in b {
        if c.is_ascii_digit() {
            if digits == 0 {
                first = c;
            }
            // Wrapping: a value this long is invalid (more than 3 digits).
            value = value.wrapping_mul(10).wrapping_add(u32::from(c - b'0'));
            digits = digits.saturating_add(1);
        } else if c == b'.' {
            ok &= part < 3 && valid(value, digits, first);
            if part < 3 {
                octets[part] = value as u8;
            }
            part += 1;
            value = 0;
            digits = 0;
        } else {
            return Bare::OtherForm;
        }
    }
    if !(ok && part == 3 && valid(value, digits, first)) {
        return Bare::NotAnAddress;
    }
    octets[3] = value as u8;
    Bare::Ipv4(std::net::Ipv4Addr::from(octets))
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

    /// The one-pass IPv4 parser accepts exactly what the standard parser
    /// accepts, over every digits-and-dots string of a seeded random set
    /// and the edge cases.
    #[test]
    fn bare_ipv4_agrees_with_the_standard_parser() {
        let std_parse = |t: &str| t.parse::<std::net::Ipv4Addr>().ok();
        let fast = |t: &str| match parse_bare_ipv4(t.as_bytes()) {
            Bare::Ipv4(ip) => Some(ip),
            _ => None,
        };
        let fixed = [
            "0.0.0.0",
            "255.255.255.255",
            "256.1.1.1",
            "1.2.3",
            "1.2.3.4.5",
            "01.2.3.4",
            "1.2.3.04",
            "1.2.3.0",
            "10.0.0.1",
            "1..2.3",
            ".1.2.3",
            "1.2.3.",
            "1.2.3.4.",
            "999.1.1.1",
            "203.0.113.014",
            "0000.1.1.1",
            "1.2.3.99999999999999999999",
            "...",
            ".",
            "1",
            "100.200.250.255",
            "300.0.0.0",
        ];
        for t in fixed {
            assert_eq!(fast(t), std_parse(t), "{t}");
        }
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = 1 + (x % 16) as usize;
            let mut t = String::new();
            let mut y = x;
            for _ in 0..len {
                y = y
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let r = (y >> 33) % 13;
                t.push(match r {
                    0..=2 => '.',
                    3..=5 => '0',
                    6 => '1',
                    7 => '2',
                    8 => '5',
                    _ => char::from(b'0' + ((y >> 40) % 10) as u8),
                });
            }
            assert_eq!(fast(&t), std_parse(&t), "{t}");
            assert!(
                !matches!(parse_bare_ipv4(t.as_bytes()), Bare::OtherForm),
                "{t}"
            );
        }
    }

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
