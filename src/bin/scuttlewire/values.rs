//! The values of single flags: `--advertise`, `--seeds`, `--state`,
//! `--report-interval`, `--allow-networks` and `--max-members`, each a
//! clap `value_parser`.
//!
//! Each returns a message saying what is wrong with the text; clap prints
//! it after the flag's name (`error: invalid value 'x' for '--seeds
//! <HOST:PORT,...>': ...`), also when the value came from the environment.
//! Pure functions, tested below without a socket.

use scuttlewire::config::Cidr;
use scuttlewire::node::check_seed_host;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// `--advertise`: an address, or an IP that takes the port of `--bind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Advertise {
    /// `IP:PORT`.
    Addr(SocketAddr),
    /// `IP` alone.
    Ip(IpAddr),
    /// Empty (e.g. `SCUTTLEWIRE_ADVERTISE=` from a template): as if absent.
    Unset,
}

/// One `--seeds` value: its `HOST:PORT` entries, checked but not resolved
/// (the library resolves names at every attempt).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seeds(pub Vec<String>);

/// One `--state` value: its `KEY=VALUE` pairs, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateItems(pub Vec<(String, String)>);

/// One `--allow-networks` value: its networks, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Networks(pub Vec<Cidr>);

/// `--advertise`: `IP`, `IP:PORT`, or `[IPv6]`; an unspecified IP
/// (0.0.0.0, ::) or port 0 is not an address a peer can reach. Empty is
/// [`Advertise::Unset`].
pub fn parse_advertise(text: &str) -> Result<Advertise, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(Advertise::Unset);
    }
    let parsed = if let Ok(addr) = text.parse::<SocketAddr>() {
        if addr.port() == 0 {
            return Err(format!("{text:?} has port 0; give the port peers reach"));
        }
        Advertise::Addr(addr)
    } else {
        let bare = text
            .strip_prefix('[')
            .and_then(|t| t.strip_suffix(']'))
            .unwrap_or(text);
        match bare.parse::<IpAddr>() {
            Ok(ip) => Advertise::Ip(ip),
            Err(_) => return Err(format!("{text:?} is not an IP or IP:PORT")),
        }
    };
    let ip = match parsed {
        Advertise::Addr(addr) => addr.ip(),
        Advertise::Ip(ip) => ip,
        Advertise::Unset => return Ok(parsed),
    };
    if ip.is_unspecified() {
        return Err(format!(
            "{ip} is not an address peers can reach; give this host's address"
        ));
    }
    Ok(parsed)
}

/// `--seeds`: comma-separated `HOST:PORT`; empty entries are skipped.
pub fn parse_seeds(text: &str) -> Result<Seeds, String> {
    let mut seeds = Vec::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        check_seed_host(entry)?;
        seeds.push(entry.to_owned());
    }
    Ok(Seeds(seeds))
}

/// `--state`: comma-separated `KEY=VALUE`; empty entries are skipped, the
/// value is everything after the first `=` (it may be empty).
pub fn parse_state(text: &str) -> Result<StateItems, String> {
    let mut items = Vec::new();
    for item in text.split(',').filter(|i| !i.trim().is_empty()) {
        let Some((key, value)) = item.split_once('=') else {
            return Err(format!("{item:?} is not KEY=VALUE"));
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(format!("{item:?} has an empty key"));
        }
        items.push((key.to_owned(), value.to_owned()));
    }
    Ok(StateItems(items))
}

/// `--allow-networks`: comma-separated networks in CIDR notation
/// (`10.0.0.0/8`, `fd00::/8`) or bare addresses; empty entries are
/// skipped.
pub fn parse_networks(text: &str) -> Result<Networks, String> {
    let mut networks = Vec::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let network = entry.parse::<Cidr>().map_err(|e| e.to_string())?;
        networks.push(network);
    }
    Ok(Networks(networks))
}

/// `--max-members`: a whole number, 0 for no limit, else at least 2 (the
/// count includes this node).
pub fn parse_max_members(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let n: usize = text
        .parse()
        .map_err(|_| format!("{text:?} is not a whole number (0 for no limit)"))?;
    if n == 1 {
        return Err("1 would hold this node alone: give 0 (no limit) or at least 2".to_owned());
    }
    Ok(n)
}

/// `--report-interval`: an integer with a unit (`ms`, `s`, `m`, `h`), or
/// `0` or empty (which turn reports off, see `AgentArgs::report_every`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text == "0" || text.is_empty() {
        return Ok(Duration::ZERO);
    }
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let bad = || format!("{text:?} is not a duration like 500ms, 1s, 2m or 1h");
    let n: u64 = number.parse().map_err(|_| bad())?;
    let millis = match unit {
        "ms" => Some(n),
        "s" => n.checked_mul(1_000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        _ => return Err(bad()),
    }
    .ok_or_else(|| format!("{text:?} is too long"))?;
    Ok(Duration::from_millis(millis))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_a_unit_and_zero_turns_reports_off() {
        let ms = |n| Ok(Duration::from_millis(n));
        assert_eq!(parse_duration("1s"), ms(1_000));
        assert_eq!(parse_duration("500ms"), ms(500));
        assert_eq!(parse_duration("2m"), ms(120_000));
        assert_eq!(parse_duration("1h"), ms(3_600_000));
        assert_eq!(parse_duration("0"), ms(0));
        assert_eq!(parse_duration("0s"), ms(0));
        assert_eq!(parse_duration(""), ms(0));
        for bad in [
            "1",
            "s",
            "1.5s",
            "-1s",
            "1 s",
            "1d",
            "99999999999999999999h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn state_is_key_value_pairs_in_order() {
        let items = parse_state("role=web,zone=eu-1,,url=http://x/?a=b,empty=").unwrap();
        let pairs: Vec<(&str, &str)> = items
            .0
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("role", "web"),
                ("zone", "eu-1"),
                ("url", "http://x/?a=b"),
                ("empty", "")
            ]
        );
        assert!(parse_state("role").unwrap_err().contains("KEY=VALUE"));
        assert!(parse_state("=web").unwrap_err().contains("empty key"));
        assert_eq!(parse_state(""), Ok(StateItems(vec![])));
    }

    #[test]
    fn seeds_are_host_port_entries_and_empty_ones_are_skipped() {
        let seeds = parse_seeds("10.0.0.1:7946, node-2.lan:7946,,[::1]:7000,").unwrap();
        assert_eq!(seeds.0, ["10.0.0.1:7946", "node-2.lan:7946", "[::1]:7000"]);
        assert_eq!(parse_seeds(""), Ok(Seeds(vec![])));
        assert!(parse_seeds("10.0.0.1").unwrap_err().contains("no port"));
        assert!(parse_seeds("node-2").unwrap_err().contains("no port"));
        for bad in [
            "::1:7946", "[::1]", "[nope]:1", ":7946", "a:0", "a:70000", "a:x",
        ] {
            assert!(parse_seeds(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn networks_are_cidr_entries_and_bad_ones_are_named() {
        let nets = parse_networks("10.0.0.0/8, fd00::/8,,192.168.1.7").unwrap();
        let text: Vec<String> = nets.0.iter().map(ToString::to_string).collect();
        assert_eq!(text, ["10.0.0.0/8", "fd00::/8", "192.168.1.7/32"]);
        assert_eq!(parse_networks(""), Ok(Networks(vec![])));
        let err = parse_networks("10.0.0.0/8,10.1.2.3/16").unwrap_err();
        assert!(err.contains("10.1.0.0/16"), "{err}");
        for bad in [
            "10.0.0/8",
            "10.0.0.0/33",
            "fd00::/129",
            "host/8",
            "10.0.0.0/x",
        ] {
            assert!(parse_networks(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn max_members_is_zero_or_at_least_two() {
        assert_eq!(parse_max_members("0"), Ok(0));
        assert_eq!(parse_max_members("2"), Ok(2));
        assert_eq!(parse_max_members(" 500 "), Ok(500));
        assert!(parse_max_members("1").unwrap_err().contains("at least 2"));
        for bad in ["", "-1", "1.5", "ten"] {
            assert!(parse_max_members(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn advertise_is_an_ip_with_or_without_a_port() {
        assert_eq!(
            parse_advertise("10.0.0.1:7000"),
            Ok(Advertise::Addr("10.0.0.1:7000".parse().unwrap()))
        );
        assert_eq!(
            parse_advertise("10.0.0.1"),
            Ok(Advertise::Ip("10.0.0.1".parse().unwrap()))
        );
        assert_eq!(
            parse_advertise("[fd00::1]"),
            Ok(Advertise::Ip("fd00::1".parse().unwrap()))
        );
        assert_eq!(
            parse_advertise("fd00::1"),
            Ok(Advertise::Ip("fd00::1".parse().unwrap()))
        );
        assert_eq!(parse_advertise(""), Ok(Advertise::Unset));
        for bad in [
            "0.0.0.0",
            "0.0.0.0:7946",
            "[::]:7946",
            "::",
            "10.0.0.1:0",
            "host",
        ] {
            assert!(parse_advertise(bad).is_err(), "{bad:?} accepted");
        }
    }
}
