//! Seeds: the addresses a node contacts to join, and to merge back after a
//! partition. Given as socket addresses or as `host:port` names; names are
//! resolved by DNS at start and again every reconnect interval (every
//! second while the node knows no peer), so a Kubernetes headless service
//! or a changed DNS record is followed. A name that does not resolve is
//! logged and tried again later; it never stops the node.

// Re-resolving seed names is driver-side I/O, timed by the driver's clock.
#![allow(clippy::disallowed_methods)]

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::engine::Engine;

/// How long one name may take to resolve.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// How often names are resolved while the node knows no peer.
const ALONE_RETRY: Duration = Duration::from_secs(1);

/// The outcome of resolving every name once: each name with its addresses
/// or the reason it failed.
type Resolution = Vec<(String, Result<Vec<SocketAddr>, String>)>;

/// The driver's seed list: fixed addresses plus the latest resolution of
/// the names, handed to the engine whole whenever it changes.
pub(super) struct Seeds {
    fixed: Vec<SocketAddr>,
    names: Arc<[String]>,
    /// The last addresses each name resolved to.
    resolved: BTreeMap<String, Vec<SocketAddr>>,
    /// Names whose last resolution failed (warned about once per outage).
    failing: HashSet<String>,
    next_resolve: Instant,
    in_flight: bool,
    tx: mpsc::Sender<Resolution>,
    rx: mpsc::Receiver<Resolution>,
}

impl Seeds {
    pub fn new(fixed: Vec<SocketAddr>, names: Vec<String>) -> Seeds {
        let (tx, rx) = mpsc::channel(1);
        Seeds {
            fixed,
            names: names.into(),
            resolved: BTreeMap::new(),
            failing: HashSet::new(),
            next_resolve: Instant::now(),
            in_flight: false,
            tx,
            rx,
        }
    }

    /// Adds fixed addresses (from the handle or the seed provider).
    pub fn add(&mut self, engine: &mut Engine, addrs: Vec<SocketAddr>) {
        for a in addrs {
            if !self.fixed.contains(&a) {
                self.fixed.push(a);
            }
        }
        self.hand_over(engine);
    }

    /// Gives the engine the current list: fixed first, then resolved.
    pub fn hand_over(&self, engine: &mut Engine) {
        let mut all = self.fixed.clone();
        for a in self.resolved.values().flatten() {
            if !all.contains(a) {
                all.push(*a);
            }
        }
        engine.set_seeds(all);
    }

    /// Starts a resolution in the background if one is due.
    pub fn resolve_if_due(&mut self, engine: &Engine) {
        if self.names.is_empty() || self.in_flight || Instant::now() < self.next_resolve {
            return;
        }
        self.in_flight = true;
        let (names, tx) = (self.names.clone(), self.tx.clone());
        tokio::spawn(async move {
            let mut out = Vec::with_capacity(names.len());
            for name in names.iter() {
                out.push((name.clone(), lookup(name).await));
            }
            // The driver may have stopped meanwhile: nothing to do then.
            let _ = tx.send(out).await;
        });
        let wait = if engine.needs_seeds() {
            ALONE_RETRY
        } else {
            engine.config().reconnect_interval
        };
        self.next_resolve = Instant::now() + wait;
    }

    /// When the next resolution is due (for the driver's timer).
    pub fn next_due(&self) -> Option<Instant> {
        (!self.names.is_empty() && !self.in_flight).then_some(self.next_resolve)
    }

    /// The next finished resolution; pending forever while none runs.
    pub async fn resolved(&mut self) -> Resolution {
        match self.rx.recv().await {
            Some(r) => r,
            // Cannot happen (we hold a sender), but never spin if it did.
            None => std::future::pending().await,
        }
    }

    /// Takes a finished resolution: logs what changed, keeps the last
    /// good addresses of a name that failed this time, and hands the list
    /// to the engine.
    pub fn apply(&mut self, engine: &mut Engine, resolution: Resolution) {
        self.in_flight = false;
        for (name, result) in resolution {
            match result {
                Ok(found) => {
                    if self.failing.remove(&name) {
                        tracing::info!(seed = %name, ?found, "seed resolves again");
                    }
                    self.resolved.insert(name, found);
                }
                Err(e) => {
                    if self.failing.insert(name.clone()) {
                        tracing::warn!(seed = %name, error = %e, "seed does not resolve; retrying");
                    } else {
                        tracing::debug!(seed = %name, error = %e, "seed still does not resolve");
                    }
                }
            }
        }
        self.hand_over(engine);
    }
}

async fn lookup(name: &str) -> Result<Vec<SocketAddr>, String> {
    match tokio::time::timeout(LOOKUP_TIMEOUT, tokio::net::lookup_host(name)).await {
        Ok(Ok(found)) => {
            let v: Vec<SocketAddr> = found.collect();
            if v.is_empty() {
                Err("no addresses".into())
            } else {
                Ok(v)
            }
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {LOOKUP_TIMEOUT:?}")),
    }
}

/// Checks a seed's form without resolving it: `name:port`, `ip:port` or
/// `[ipv6]:port`, port 1..=65535. The error says what is wrong, quoting
/// the seed. [`NodeBuilder::seed_hosts`](super::NodeBuilder::seed_hosts)
/// refuses such a seed at start; the agent refuses it as a flag value.
pub fn check_seed_host(seed: &str) -> Result<(), String> {
    let Some((host, port)) = seed.rsplit_once(':') else {
        return Err(format!(
            "{seed:?} has no port; write HOST:PORT, e.g. {seed}:7946"
        ));
    };
    let host_ok = match host.strip_prefix('[') {
        Some(rest) => rest
            .strip_suffix(']')
            .is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok()),
        None => !host.is_empty() && !host.contains(':'),
    };
    if !host_ok {
        return Err(format!(
            "{seed:?} is not HOST:PORT (an IPv6 address goes in brackets: [::1]:7946)"
        ));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(format!("{seed:?} has no valid port (1..=65535)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_need_a_host_and_a_port() {
        for good in ["db-1.internal:7946", "[::1]:7946", "10.0.0.1:7946"] {
            assert!(check_seed_host(good).is_ok(), "{good:?} refused");
        }
        assert!(check_seed_host("db-1").unwrap_err().contains("no port"));
        for bad in [
            "::1:7946",
            "[::1]",
            "[nope]:1",
            ":7946",
            "a:0",
            "a:70000",
            "db-1:http",
        ] {
            assert!(check_seed_host(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[tokio::test]
    async fn names_resolve_and_failures_are_reported() {
        let ok = lookup("127.0.0.1:7946").await.unwrap();
        assert_eq!(ok, vec!["127.0.0.1:7946".parse().unwrap()]);
        let localhost = lookup("localhost:7946").await.unwrap();
        assert!(
            localhost
                .iter()
                .all(|a| a.ip().is_loopback() && a.port() == 7946)
        );
        assert!(lookup("no-such-host.invalid:7946").await.is_err());
    }
}
