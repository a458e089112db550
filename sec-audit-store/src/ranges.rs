//! IP range blocks: an `ip` block whose value is a canonical CIDR
//! (`10.0.0.0/24`, `2001:db8::/48`) denies every address inside it.
//!
//! **Canonical form** (what every store keys on, and what
//! [`canonical_ip_value`] produces from what an operator writes):
//!
//! - the network address as `std` formats it (IPv6 compressed, lower
//!   case), `/`, the prefix length in decimal without leading zeros;
//! - host bits are zero: a CIDR with host bits set (`10.0.0.5/24`) is
//!   **refused**, never masked, so an operator's typo cannot silently ban a
//!   different network (the error names the network meant). Only the
//!   enforcer masks, when it blocks the covering range of an offending
//!   address ([`IpRange::covering`]);
//! - a `/32` (IPv4) or `/128` (IPv6) is a single address and is written as
//!   the bare address: it is an ordinary single-address block;
//! - an IPv4-mapped IPv6 range inside `::ffff:0:0/96` is the IPv4 range
//!   (`::ffff:10.0.0.0/120` → `10.0.0.0/24`), as IPv4-mapped addresses are
//!   IPv4 addresses everywhere else. An IPv6 range covers IPv6 addresses
//!   only.
//!
//! **Lookup.** For an `ip` candidate holding an address, the candidates
//! are the exact key and then its covering ranges, longest prefix first —
//! but only at the prefix lengths that currently hold a range (a
//! [`LenMask`]), so the work per lookup is bounded by the number of
//! distinct prefix lengths in use (at most 32 for IPv4, 128 for IPv6),
//! whatever the number of blocks or ranges.

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};

use sec_audit_core::ScopeKey;

/// The scope whose values may be ranges.
pub const IP_SCOPE: &str = "ip";

/// An address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    /// The prefix length of a single address (32 or 128).
    pub fn max_len(self) -> u8 {
        match self {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }

    fn of(ip: &IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    fn tag(self) -> char {
        match self {
            Family::V4 => '4',
            Family::V6 => '6',
        }
    }
}

/// A network of prefix length below its family's maximum, host bits zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpRange {
    network: IpAddr,
    len: u8,
}

/// IPv4-mapped IPv6 addresses are IPv4 addresses.
fn canonical_addr(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

fn mask_v4(ip: Ipv4Addr, len: u8) -> Ipv4Addr {
    let bits = u32::from(ip);
    let masked = if len == 0 {
        0
    } else {
        bits & (u32::MAX << (32 - u32::from(len)))
    };
    Ipv4Addr::from(masked)
}

fn mask_v6(ip: Ipv6Addr, len: u8) -> Ipv6Addr {
    let bits = u128::from(ip);
    let masked = if len == 0 {
        0
    } else {
        bits & (u128::MAX << (128 - u32::from(len)))
    };
    Ipv6Addr::from(masked)
}

impl IpRange {
    /// The range of prefix length `len` that covers `ip` (host bits
    /// masked). `None` when `len` is not below the family's maximum (that
    /// is the address itself).
    pub fn covering(ip: IpAddr, len: u8) -> Option<IpRange> {
        let ip = canonical_addr(ip);
        let family = Family::of(&ip);
        if len >= family.max_len() {
            return None;
        }
        let network = match ip {
            IpAddr::V4(v4) => IpAddr::V4(mask_v4(v4, len)),
            IpAddr::V6(v6) => IpAddr::V6(mask_v6(v6, len)),
        };
        Some(IpRange { network, len })
    }

    /// The range a stored `ip` scope value names, when it is one in
    /// canonical form (anything else — an address, a non-canonical CIDR,
    /// text — is `None`).
    pub fn parse_canonical(value: &str) -> Option<IpRange> {
        let (addr, len) = value.split_once('/')?;
        if len.is_empty()
            || len.len() > 3
            || !len.bytes().all(|b| b.is_ascii_digit())
            || (len.len() > 1 && len.starts_with('0'))
        {
            return None;
        }
        let len: u8 = len.parse().ok()?;
        let ip: IpAddr = addr.parse().ok()?;
        let range = IpRange::covering(ip, len)?;
        (range.network == ip && range.to_string() == value).then_some(range)
    }

    pub fn network(&self) -> IpAddr {
        self.network
    }

    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    pub fn family(&self) -> Family {
        Family::of(&self.network)
    }

    /// Whether `ip` lies inside this range (IPv4-mapped addresses count as
    /// IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        IpRange::covering(ip, self.len).is_some_and(|r| r == *self)
    }

    /// The scope key of this range's block.
    pub fn scope_key(&self) -> ScopeKey {
        ScopeKey::new(IP_SCOPE, self.to_string())
    }
}

impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.len)
    }
}

/// Why an `ip` scope value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpValueError {
    #[error("`{0}` is not an IP address or CIDR range")]
    NotAnAddress(String),
    #[error("`{value}` has host bits set: the network is {network}")]
    HostBits { value: String, network: String },
}

/// What an operator wrote for an `ip` scope value (an address, or a CIDR
/// range), in canonical form: the address as the lookup keys it, or the
/// range as [`IpRange`] formats it (a `/32` or `/128` is the address).
/// `parse_address` reads an address token (e.g.
/// `sec_audit_core::client_ip::parse_ip_token`).
pub fn canonical_ip_value(
    value: &str,
    parse_address: impl Fn(&str) -> Option<IpAddr>,
) -> Result<String, IpValueError> {
    let value = value.trim();
    let bad = || IpValueError::NotAnAddress(value.to_string());
    let Some((addr, len)) = value.split_once('/') else {
        return parse_address(value)
            .map(|ip| canonical_addr(ip).to_string())
            .ok_or_else(bad);
    };
    let net: ipnet::IpNet = format!("{}/{}", addr.trim(), len.trim())
        .parse()
        .map_err(|_| bad())?;
    let ip = net.addr();
    let mut len = net.prefix_len();
    let mapped = match ip {
        IpAddr::V6(v6) if len >= 96 => v6.to_ipv4_mapped().map(IpAddr::V4),
        _ => None,
    };
    let ip = match mapped {
        Some(v4) => {
            len -= 96;
            v4
        }
        None => ip,
    };
    if len == Family::of(&ip).max_len() {
        return Ok(ip.to_string());
    }
    // `len` is below the maximum here, so `covering` is `Some`.
    let range = IpRange::covering(ip, len).ok_or_else(bad)?;
    if range.network != ip {
        return Err(IpValueError::HostBits {
            value: value.to_string(),
            network: range.to_string(),
        });
    }
    Ok(range.to_string())
}

/// Whether a scope is a range block's scope.
pub fn range_of(scope: &ScopeKey) -> Option<IpRange> {
    if scope.scope() != IP_SCOPE {
        return None;
    }
    IpRange::parse_canonical(scope.value())
}

/// A set of prefix lengths per family (IPv4 `0..=31`, IPv6 `0..=127`): the
/// lengths at which ranges are checked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LenMask {
    v4: u64,
    v6: u128,
}

impl LenMask {
    /// Every length of both families.
    pub fn all() -> LenMask {
        LenMask {
            v4: (1u64 << 32) - 1,
            v6: u128::MAX,
        }
    }

    pub fn insert(&mut self, family: Family, len: u8) {
        match family {
            Family::V4 if len < 32 => self.v4 |= 1 << len,
            Family::V6 if len < 128 => self.v6 |= 1 << len,
            _ => {}
        }
    }

    pub fn insert_range(&mut self, r: &IpRange) {
        self.insert(r.family(), r.len);
    }

    pub fn contains(&self, family: Family, len: u8) -> bool {
        match family {
            Family::V4 => len < 32 && self.v4 & (1 << len) != 0,
            Family::V6 => len < 128 && self.v6 & (1 << len) != 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.v4 == 0 && self.v6 == 0
    }

    pub fn has(&self, family: Family) -> bool {
        match family {
            Family::V4 => self.v4 != 0,
            Family::V6 => self.v6 != 0,
        }
    }

    /// The lengths of `family`, longest first.
    pub fn lens(&self, family: Family) -> impl Iterator<Item = u8> + '_ {
        (0..family.max_len())
            .rev()
            .filter(move |l| self.contains(family, *l))
    }

    /// Number of lengths of `family`.
    pub fn count(&self, family: Family) -> u32 {
        match family {
            Family::V4 => self.v4.count_ones(),
            Family::V6 => self.v6.count_ones(),
        }
    }

    /// Whether `fresh` holds a length of `family` that `self` lacks.
    pub fn misses(&self, fresh: &LenMask, family: Family) -> bool {
        match family {
            Family::V4 => fresh.v4 & !self.v4 != 0,
            Family::V6 => fresh.v6 & !self.v6 != 0,
        }
    }
}

/// The range index member of a prefix length (`4/24`, `6/48`).
pub(crate) fn index_member(family: Family, len: u8) -> String {
    format!("{}/{len}", family.tag())
}

/// The family and length an index member names.
pub(crate) fn parse_index_member(m: &str) -> Option<(Family, u8)> {
    let (f, l) = m.split_once('/')?;
    let family = match f {
        "4" => Family::V4,
        "6" => Family::V6,
        _ => return None,
    };
    let len: u8 = l.parse().ok()?;
    (len < family.max_len()).then_some((family, len))
}

/// A [`LenMask`] shared by the clones of a store: the lengths its last
/// lookup found in use. Only a guess for the next lookup, which reads the
/// index in the same round trip and looks again when the guess missed a
/// length (see the Redis store).
#[derive(Debug, Default)]
pub(crate) struct SharedLens {
    v4: AtomicU64,
    v6_lo: AtomicU64,
    v6_hi: AtomicU64,
}

impl SharedLens {
    pub(crate) fn load(&self) -> LenMask {
        let lo = u128::from(self.v6_lo.load(Ordering::Relaxed));
        let hi = u128::from(self.v6_hi.load(Ordering::Relaxed));
        LenMask {
            v4: self.v4.load(Ordering::Relaxed),
            v6: lo | (hi << 64),
        }
    }

    pub(crate) fn store(&self, m: &LenMask) {
        self.v4.store(m.v4, Ordering::Relaxed);
        self.v6_lo.store(m.v6 as u64, Ordering::Relaxed);
        self.v6_hi.store((m.v6 >> 64) as u64, Ordering::Relaxed);
    }
}

/// The address of an `ip` candidate (`None` for other scopes, and for an
/// `ip` value that is not a single address, e.g. a range itself).
pub(crate) fn candidate_addr(scope: &ScopeKey) -> Option<IpAddr> {
    if scope.scope() != IP_SCOPE {
        return None;
    }
    scope.value().parse::<IpAddr>().ok().map(canonical_addr)
}

/// The families of the address candidates among `scopes`.
pub(crate) fn families(scopes: &[ScopeKey]) -> impl Iterator<Item = Family> + '_ {
    scopes
        .iter()
        .filter_map(candidate_addr)
        .map(|ip| Family::of(&ip))
}

/// Whether a lookup that checked the lengths `used` must look again,
/// because the index (`fresh`) names a length `used` lacked for the family
/// of one of the address candidates.
pub(crate) fn missed(scopes: &[ScopeKey], used: &LenMask, fresh: &LenMask) -> bool {
    families(scopes).any(|f| used.misses(fresh, f))
}

/// The candidates with each address followed by its covering ranges at the
/// lengths of `mask`, longest prefix first; borrowed unchanged when there
/// is nothing to add (no address candidate, or no length of its family).
pub(crate) fn expand<'a>(scopes: &'a [ScopeKey], mask: &LenMask) -> Cow<'a, [ScopeKey]> {
    if mask.is_empty() || !families(scopes).any(|f| mask.has(f)) {
        return Cow::Borrowed(scopes);
    }
    let mut out = Vec::with_capacity(scopes.len() + 4);
    for s in scopes {
        out.push(s.clone());
        if let Some(ip) = candidate_addr(s) {
            for len in mask.lens(Family::of(&ip)) {
                if let Some(r) = IpRange::covering(ip, len) {
                    out.push(r.scope_key());
                }
            }
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(v: &str) -> Result<String, IpValueError> {
        canonical_ip_value(v, |t| t.parse().ok())
    }

    #[test]
    fn canonical_values() {
        assert_eq!(canon("10.0.0.0/24").unwrap(), "10.0.0.0/24");
        assert_eq!(canon(" 10.0.0.0/24 ").unwrap(), "10.0.0.0/24");
        assert_eq!(canon("10.0.0.1/32").unwrap(), "10.0.0.1");
        assert_eq!(canon("10.0.0.1").unwrap(), "10.0.0.1");
        assert_eq!(canon("0.0.0.0/0").unwrap(), "0.0.0.0/0");
        assert_eq!(canon("2001:DB8:0:0::/48").unwrap(), "2001:db8::/48");
        assert_eq!(canon("2001:db8::1/128").unwrap(), "2001:db8::1");
        assert_eq!(canon("::ffff:10.0.0.0/120").unwrap(), "10.0.0.0/24");
        assert_eq!(canon("::ffff:10.0.0.7/128").unwrap(), "10.0.0.7");
        assert_eq!(canon("::ffff:1.2.3.4").unwrap(), "1.2.3.4");
        assert_eq!(
            canon("10.0.0.5/24").unwrap_err(),
            IpValueError::HostBits {
                value: "10.0.0.5/24".into(),
                network: "10.0.0.0/24".into()
            }
        );
        for bad in [
            "10.0.0.0/33",
            "10.0.0.0/",
            "/24",
            "10.0.0/24",
            "2001:db8::/129",
            "x/1",
            "10.0.0.0/24/1",
            "",
        ] {
            assert!(
                matches!(canon(bad), Err(IpValueError::NotAnAddress(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn only_canonical_text_is_a_stored_range() {
        for ok in [
            "10.0.0.0/24",
            "0.0.0.0/0",
            "2001:db8::/48",
            "::/0",
            "10.0.0.0/31",
        ] {
            let r = IpRange::parse_canonical(ok).unwrap_or_else(|| panic!("{ok}"));
            assert_eq!(r.to_string(), ok);
        }
        for not in [
            "10.0.0.1",
            "10.0.0.1/32",
            "10.0.0.5/24",
            "10.0.0.0/024",
            "2001:DB8::/48",
            "::ffff:10.0.0.0/120",
            "10.0.0.0/+24",
            "abc",
        ] {
            assert_eq!(IpRange::parse_canonical(not), None, "{not}");
        }
    }

    #[test]
    fn covering_ranges_and_containment() {
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(
            IpRange::covering(ip, 24).unwrap().to_string(),
            "10.1.2.0/24"
        );
        assert_eq!(IpRange::covering(ip, 0).unwrap().to_string(), "0.0.0.0/0");
        assert_eq!(IpRange::covering(ip, 32), None);
        let v6: IpAddr = "2001:db8:aa:bb::1".parse().unwrap();
        assert_eq!(
            IpRange::covering(v6, 48).unwrap().to_string(),
            "2001:db8:aa::/48"
        );
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        assert_eq!(
            IpRange::covering(mapped, 16).unwrap().to_string(),
            "10.1.0.0/16"
        );
        let r = IpRange::parse_canonical("10.1.0.0/16").unwrap();
        assert!(r.contains(ip) && r.contains(mapped));
        assert!(!r.contains("10.2.0.0".parse().unwrap()));
        assert!(!r.contains(v6));
    }

    #[test]
    fn expansion_follows_the_mask_longest_first() {
        let scopes = [
            ScopeKey::new("user", "u"),
            ScopeKey::new("ip", "10.1.2.3"),
            ScopeKey::new("session", "s"),
        ];
        assert!(matches!(
            expand(&scopes, &LenMask::default()),
            Cow::Borrowed(_)
        ));
        let mut v6_only = LenMask::default();
        v6_only.insert(Family::V6, 48);
        assert!(matches!(expand(&scopes, &v6_only), Cow::Borrowed(_)));
        let mut m = LenMask::default();
        m.insert(Family::V4, 16);
        m.insert(Family::V4, 24);
        m.insert(Family::V6, 48);
        let e: Vec<String> = expand(&scopes, &m).iter().map(|k| k.to_string()).collect();
        assert_eq!(
            e,
            [
                "user:u",
                "ip:10.1.2.3",
                "ip:10.1.2.0/24",
                "ip:10.1.0.0/16",
                "session:s"
            ]
        );
        assert_eq!(expand(&scopes, &LenMask::all()).len(), 3 + 32);
        let fresh = {
            let mut f = m;
            f.insert(Family::V4, 8);
            f
        };
        assert!(missed(&scopes, &m, &fresh));
        assert!(!missed(&scopes, &fresh, &m));
        let mut f6 = m;
        f6.insert(Family::V6, 32);
        assert!(!missed(&scopes, &m, &f6), "no IPv6 candidate");
    }

    #[test]
    fn index_members_round_trip_and_shared_masks_hold_every_bit() {
        assert_eq!(index_member(Family::V6, 127), "6/127");
        assert_eq!(parse_index_member("4/31"), Some((Family::V4, 31)));
        assert_eq!(parse_index_member("4/32"), None);
        assert_eq!(parse_index_member("#warm"), None);
        let shared = SharedLens::default();
        let mut m = LenMask::default();
        m.insert(Family::V6, 0);
        m.insert(Family::V6, 127);
        m.insert(Family::V6, 64);
        m.insert(Family::V4, 31);
        shared.store(&m);
        assert_eq!(shared.load(), m);
        assert_eq!(m.lens(Family::V6).collect::<Vec<_>>(), [127, 64, 0]);
    }
}
