//! The address a node advertises to its peers.
//!
//! A node bound to `0.0.0.0` or `::` receives on every interface, but its
//! peers need one address to send to; putting the unspecified address into
//! its [`NodeId`](crate::NodeId) would make every peer send to itself. Like
//! memberlist, the node then picks the host's one private IPv4 address (for
//! `0.0.0.0`) or its one global or unique-local IPv6 address (for `::`),
//! and refuses to start, naming `advertise`, when there is none or more
//! than one to choose from.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::config::ConfigError;

/// The address to advertise for a transport bound to `local`, given an
/// explicit `advertise` (whose port 0 means "the bound port").
pub(super) fn resolve(
    local: SocketAddr,
    advertise: Option<SocketAddr>,
) -> Result<SocketAddr, ConfigError> {
    if let Some(mut a) = advertise {
        if a.ip().is_unspecified() {
            return Err(error(format!(
                "{a} is not an address peers can reach; give the host's own address"
            )));
        }
        if a.port() == 0 {
            a.set_port(local.port());
        }
        return Ok(a);
    }
    if !local.ip().is_unspecified() {
        return Ok(local);
    }
    let interfaces = if_addrs::get_if_addrs()
        .map_err(|e| error(format!("cannot list the host's addresses ({e}); set it")))?;
    let addrs: Vec<IpAddr> = interfaces.iter().map(|i| i.ip()).collect();
    let ip = pick(local.ip(), &addrs)?;
    let chosen = SocketAddr::new(ip, local.port());
    tracing::info!(bind = %local, advertise = %chosen, "advertising the host's address");
    Ok(chosen)
}

/// The one candidate among the host's `addrs` for a socket bound to the
/// unspecified address `bind`.
pub(super) fn pick(bind: IpAddr, addrs: &[IpAddr]) -> Result<IpAddr, ConfigError> {
    let mut found: Vec<IpAddr> = addrs
        .iter()
        .copied()
        .filter(|ip| match (bind, ip) {
            (IpAddr::V4(_), IpAddr::V4(v4)) => is_private_v4(*v4),
            (IpAddr::V6(_), IpAddr::V6(v6)) => is_routable_v6(*v6),
            _ => false,
        })
        .collect();
    found.sort();
    found.dedup();
    let kind = if bind.is_ipv4() {
        "private IPv4 address"
    } else {
        "global or unique-local IPv6 address"
    };
    match found.as_slice() {
        [one] => Ok(*one),
        [] => Err(error(format!(
            "bound to {bind} and the host has no {kind} to advertise; set it"
        ))),
        many => {
            let list: Vec<String> = many.iter().map(ToString::to_string).collect();
            Err(error(format!(
                "bound to {bind} and the host has several {kind}es ({}); set which one peers should use",
                list.join(", ")
            )))
        }
    }
}

fn error(reason: String) -> ConfigError {
    ConfigError {
        field: "advertise",
        reason,
    }
}

/// RFC 1918 private ranges and RFC 6598 shared address space (carrier-grade
/// NAT, which cloud networks use too), as memberlist's choice does.
fn is_private_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_private() || (a == 100 && (64..128).contains(&b))
}

/// Global unicast or unique-local (fc00::/7); not loopback, link-local
/// (fe80::/10, which needs a zone), multicast or unspecified.
fn is_routable_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments()[0];
    !(ip.is_loopback() || ip.is_unspecified() || ip.is_multicast() || (s & 0xffc0) == 0xfe80)
        && ip.to_ipv4_mapped().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn picks_the_one_private_ipv4_address() {
        let any4: IpAddr = "0.0.0.0".parse().unwrap();
        let host = ips(&["127.0.0.1", "10.1.2.3", "fe80::1", "2001:db8::5", "8.8.8.8"]);
        assert_eq!(
            pick(any4, &host).unwrap(),
            "10.1.2.3".parse::<IpAddr>().unwrap()
        );
        let cgnat = ips(&["127.0.0.1", "100.72.0.9"]);
        assert_eq!(
            pick(any4, &cgnat).unwrap(),
            "100.72.0.9".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn picks_the_one_routable_ipv6_address() {
        let any6: IpAddr = "::".parse().unwrap();
        let host = ips(&["::1", "fe80::1", "10.0.0.1", "fd00::7"]);
        assert_eq!(
            pick(any6, &host).unwrap(),
            "fd00::7".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn refuses_none_or_several_naming_advertise() {
        let any4: IpAddr = "0.0.0.0".parse().unwrap();
        let none = pick(any4, &ips(&["127.0.0.1", "8.8.8.8"])).unwrap_err();
        assert_eq!(none.field, "advertise");
        assert!(none.to_string().contains("no private IPv4"), "{none}");
        let two = pick(any4, &ips(&["10.0.0.1", "192.168.1.4", "10.0.0.1"])).unwrap_err();
        assert_eq!(two.field, "advertise");
        assert!(two.to_string().contains("10.0.0.1, 192.168.1.4"), "{two}");
    }

    #[test]
    fn an_explicit_address_wins_and_must_be_specified() {
        let bound: SocketAddr = "0.0.0.0:7946".parse().unwrap();
        let given: SocketAddr = "10.9.9.9:0".parse().unwrap();
        assert_eq!(
            resolve(bound, Some(given)).unwrap(),
            "10.9.9.9:7946".parse().unwrap()
        );
        let err = resolve(bound, Some("0.0.0.0:7946".parse().unwrap())).unwrap_err();
        assert_eq!(err.field, "advertise");
        let local: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        assert_eq!(resolve(local, None).unwrap(), local);
    }
}
