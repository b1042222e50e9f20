//! [`Cidr`]: an IPv4 or IPv6 network in CIDR notation, for
//! [`Config::allowed_networks`](super::Config::allowed_networks).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An IP network: an address and a prefix length, such as `10.0.0.0/8`
/// or `fd00::/8`. Parse one from text with [`str::parse`], or build one
/// with [`Cidr::new`].
///
/// The address is the network's first: host bits must be zero, so
/// `10.0.0.1/8` is refused (naming `10.0.0.0/8`), as a likely typo. A
/// bare address is a network of that one address (`/32` or `/128`).
/// An IPv4 network also contains the IPv4-mapped IPv6 form of its
/// addresses (`::ffff:10.0.0.1` is in `10.0.0.0/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

/// Why a [`Cidr`] was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// The part before `/` is not an IPv4 or IPv6 address.
    #[error("{0:?} is not an IPv4 or IPv6 address")]
    Address(String),
    /// The part after `/` is not a number within the family's range.
    #[error("prefix length {prefix:?} is not a number in 0..={max}")]
    Prefix {
        /// The prefix as given.
        prefix: String,
        /// 32 for IPv4, 128 for IPv6.
        max: u8,
    },
    /// The address has bits set beyond the prefix.
    #[error("{given} has host bits set; the network is {network}")]
    HostBits {
        /// The network as given.
        given: String,
        /// The same prefix with the host bits cleared.
        network: Cidr,
    },
}

impl Cidr {
    /// The network of `prefix` leading bits at `network`. Refused if
    /// `prefix` is over 32 (IPv4) or 128 (IPv6), or `network` has bits
    /// set beyond it.
    pub fn new(network: IpAddr, prefix: u8) -> Result<Cidr, CidrError> {
        let max = max_prefix(network);
        if prefix > max {
            return Err(CidrError::Prefix {
                prefix: prefix.to_string(),
                max,
            });
        }
        let masked = Cidr {
            network: mask(network, prefix),
            prefix,
        };
        if masked.network != network {
            return Err(CidrError::HostBits {
                given: format!("{network}/{prefix}"),
                network: masked,
            });
        }
        Ok(masked)
    }

    /// The network's first address.
    pub fn network(&self) -> IpAddr {
        self.network
    }

    /// How many leading bits every address of the network shares.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` lies in this network. An IPv4-mapped IPv6 address is
    /// taken as the IPv4 address it maps; otherwise an address of the
    /// other family never does.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.network.is_ipv4() && mask(ip, self.prefix) == self.network
    }
}

/// 32 for an IPv4 address, 128 for IPv6.
fn max_prefix(ip: IpAddr) -> u8 {
    if ip.is_ipv4() { 32 } else { 128 }
}

/// `ip` with every bit after the first `prefix` cleared (`prefix` at most
/// the family's width).
fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let kept = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4((bits & kept).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let kept = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6((bits & kept).into())
        }
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    /// `ADDRESS/PREFIX` (`10.0.0.0/8`, `fd00::/8`) or a bare `ADDRESS`.
    fn from_str(s: &str) -> Result<Cidr, CidrError> {
        let (address, prefix) = match s.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (s, None),
        };
        let network: IpAddr = address
            .parse()
            .map_err(|_| CidrError::Address(address.to_owned()))?;
        let max = max_prefix(network);
        let prefix = match prefix {
            None => max,
            // Digits only: `u8::from_str` would take a leading `+`.
            Some(p) if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse().map_err(|_| CidrError::Prefix {
                    prefix: p.to_owned(),
                    max,
                })?
            }
            Some(p) => {
                return Err(CidrError::Prefix {
                    prefix: p.to_owned(),
                    max,
                });
            }
        };
        Cidr::new(network, prefix).map_err(|e| match e {
            // Name the text as given, not as re-printed.
            CidrError::HostBits { network, .. } => CidrError::HostBits {
                given: s.to_owned(),
                network,
            },
            e => e,
        })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Cidr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv4_networks_contain_their_addresses_only() {
        let net = cidr("10.1.0.0/16");
        assert!(net.contains(ip("10.1.0.0")));
        assert!(net.contains(ip("10.1.255.255")));
        assert!(!net.contains(ip("10.2.0.0")));
        assert!(!net.contains(ip("10.0.255.255")));
        let odd = cidr("192.168.1.128/25");
        assert!(odd.contains(ip("192.168.1.200")));
        assert!(!odd.contains(ip("192.168.1.127")));
        let host = cidr("192.168.1.7");
        assert_eq!(host.prefix(), 32);
        assert!(host.contains(ip("192.168.1.7")));
        assert!(!host.contains(ip("192.168.1.8")));
    }

    #[test]
    fn ipv6_networks_contain_their_addresses_only() {
        let net = cidr("fd00:1234::/32");
        assert!(net.contains(ip("fd00:1234::1")));
        assert!(net.contains(ip("fd00:1234:ffff:ffff:ffff:ffff:ffff:ffff")));
        assert!(!net.contains(ip("fd00:1235::")));
        let odd = cidr("2001:db8::/127");
        assert!(odd.contains(ip("2001:db8::1")));
        assert!(!odd.contains(ip("2001:db8::2")));
        assert_eq!(cidr("::1").prefix(), 128);
    }

    #[test]
    fn zero_prefixes_hold_their_whole_family() {
        let v4 = cidr("0.0.0.0/0");
        assert!(v4.contains(ip("255.255.255.255")));
        assert!(v4.contains(ip("1.2.3.4")));
        assert!(!v4.contains(ip("::1")));
        let v6 = cidr("::/0");
        assert!(v6.contains(ip("ffff::1")));
        assert!(!v6.contains(ip("1.2.3.4")));
    }

    #[test]
    fn families_do_not_mix_except_for_mapped_ipv4() {
        let v4 = cidr("10.0.0.0/8");
        assert!(v4.contains(ip("::ffff:10.9.8.7")));
        assert!(!v4.contains(ip("::ffff:11.0.0.1")));
        assert!(!v4.contains(ip("::a00:1")), "IPv4-compatible is not mapped");
        let v6 = cidr("::ffff:0:0/96");
        // A mapped address is matched as IPv4, so an IPv6 network that
        // spells the mapped range does not hold it.
        assert!(!v6.contains(ip("::ffff:10.0.0.1")));
    }

    #[test]
    fn text_round_trips() {
        for s in [
            "10.0.0.0/8",
            "0.0.0.0/0",
            "1.2.3.4/32",
            "fd00::/8",
            "::/0",
            "::1/128",
        ] {
            assert_eq!(cidr(s).to_string(), s);
        }
        assert_eq!(cidr("10.0.0.1").to_string(), "10.0.0.1/32");
    }

    #[test]
    fn bad_text_is_refused_saying_why() {
        let err = |s: &str| s.parse::<Cidr>().unwrap_err();
        assert!(matches!(err("10.0.0/8"), CidrError::Address(a) if a == "10.0.0"));
        assert!(matches!(err(""), CidrError::Address(_)));
        assert!(matches!(err("/8"), CidrError::Address(_)));
        assert!(matches!(err("example.com/8"), CidrError::Address(_)));
        for (s, max) in [
            ("10.0.0.0/33", 32),
            ("10.0.0.0/", 32),
            ("10.0.0.0/+8", 32),
            ("10.0.0.0/-1", 32),
            ("10.0.0.0/8/8", 32),
            ("10.0.0.0/0008", 32),
            ("fd00::/129", 128),
            ("fd00::/x", 128),
        ] {
            match err(s) {
                CidrError::Prefix { max: m, .. } => assert_eq!(m, max, "{s}"),
                e => panic!("{s}: {e}"),
            }
        }
        let e = err("10.1.2.3/8");
        assert_eq!(
            e.to_string(),
            "10.1.2.3/8 has host bits set; the network is 10.0.0.0/8"
        );
        assert!(
            matches!(err("fd00::1/64"), CidrError::HostBits { network, .. }
            if network == cidr("fd00::/64"))
        );
    }

    #[test]
    fn new_checks_what_parsing_checks() {
        assert!(Cidr::new(ip("10.0.0.0"), 33).is_err());
        assert!(Cidr::new(ip("10.0.0.1"), 31).is_err());
        assert_eq!(Cidr::new(ip("10.0.0.0"), 31).unwrap(), cidr("10.0.0.0/31"));
        assert_eq!(cidr("10.0.0.0/31").network(), ip("10.0.0.0"));
    }
}
