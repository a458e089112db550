//! The body of the `client_ip` fuzz target (`fuzz/fuzz_targets/client_ip.rs`),
//! shared with `tests/fuzz_corpus.rs` so that `cargo test` runs every
//! committed corpus file and former crash through the same code.
//!
//! The input is text (invalid UTF-8 is replaced), one field per line:
//!
//! ```text
//! trusted_proxy_count      (a number; anything else means "not set")
//! trusted_proxy_cidrs      (comma-separated; empty means none)
//! peer address
//! X-Forwarded-For          (optional: no fourth line means no header)
//! ```
//!
//! Beyond "no panic", it checks the resolver's contract: a peer that does
//! not parse gives no client; an untrusted peer, or no header, gives the
//! peer; the client is always canonical (no IPv4-mapped IPv6) and is the
//! peer or one of the header's entries; and entries an attacker prepends to
//! a header that already has `trusted_proxy_count` entries change nothing.

use std::net::IpAddr;

use sec_audit_core::client_ip::parse_ip_token;
use sec_audit_core::ClientIpResolver;

/// What a client sends to make its own address up.
const SPOOFS: [&str; 3] = ["6.6.6.6", "10.0.0.1", "::ffff:127.0.0.1"];

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// The fuzz target's body.
pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut fields = text.split('\n');
    let count = fields.next().and_then(|c| c.trim().parse::<usize>().ok());
    let cidrs: Vec<&str> = match fields.next() {
        Some(c) if !c.trim().is_empty() => c.split(',').collect(),
        _ => Vec::new(),
    };
    let peer = fields.next().unwrap_or("");
    let xff = fields.next();

    // Any token: parsing never panics, and a parsed bare address is itself.
    for token in text.split([',', '\n']) {
        if let Some(ip) = parse_ip_token(token) {
            if let Ok(bare) = token.trim().parse::<IpAddr>() {
                assert_eq!(ip, bare, "token {token:?}");
            }
        }
    }

    let resolver = match ClientIpResolver::new(&cidrs, count) {
        Ok(r) => r,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    let trusted = |ip: IpAddr| {
        let ip = canonical(ip);
        cidrs.iter().any(|c| {
            let c = c.trim();
            c.parse::<ipnet::IpNet>()
                .map(|n| n.contains(&ip))
                .or_else(|_| c.parse::<IpAddr>().map(|a| a == ip))
                .unwrap_or(false)
        })
    };

    let client = resolver.resolve(peer, xff);
    let peer_ip = parse_ip_token(peer).map(canonical);
    let Some(peer_ip) = peer_ip else {
        assert_eq!(
            client, None,
            "a peer that is not an address gives no client"
        );
        return;
    };
    let header_used =
        count.is_some() && trusted(peer_ip) && xff.is_some_and(|h| !h.trim().is_empty());
    if !header_used {
        assert_eq!(client, Some(peer_ip), "peer {peer:?} xff {xff:?}");
        assert_eq!(resolver.resolve(peer, None), Some(peer_ip));
        return;
    }
    let header = xff.unwrap_or_default();
    let hops: Vec<IpAddr> = header
        .split(',')
        .filter_map(parse_ip_token)
        .map(canonical)
        .collect();
    if let Some(ip) = client {
        assert_eq!(ip, canonical(ip), "the client is canonical");
        assert!(hops.contains(&ip), "the client {ip} is not in {header:?}");
    }
    // Entries left of the last `count` ones are never read.
    let n = count.unwrap_or(0);
    if header.split(',').count() >= n {
        for spoof in SPOOFS {
            let spoofed = format!("{spoof}, {header}");
            assert_eq!(
                resolver.resolve(peer, Some(&spoofed)),
                client,
                "a prepended {spoof} changed the client of {header:?}"
            );
        }
    }
}
