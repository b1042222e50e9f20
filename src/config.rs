//! Configuration: plain data with presets.
//!
//! Start from [`Config::lan`], [`Config::wan`] or [`Config::local`], change
//! the fields you need, and let [`Config::validate`] (called by the node at
//! start) refuse nonsense with an error naming the field.

mod cidr;

use std::time::Duration;

pub use cidr::{Cidr, CidrError};

/// Node configuration. Every field documents its unit, range and default
/// (the [`Config::lan`] value).
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Name of this node, unique in the cluster; 1..=255 bytes of UTF-8.
    /// Empty (the default) means "use the gossip address", e.g.
    /// `"127.0.0.1:7946"`.
    pub name: String,
    /// Cluster name. Packets from another cluster are dropped; with
    /// encryption it is also authenticated. Default `"scuttlewire"`.
    pub cluster: String,
    /// Incarnation of this process; must grow across restarts. `None`
    /// (default) uses the start time in Unix milliseconds.
    pub generation: Option<u64>,
    /// Seed of the engine's random number generator. `None` (default) draws
    /// one from the operating system at start; set it for reproducible runs.
    pub rng_seed: Option<u64>,
    /// Time between anti-entropy gossip rounds. Range 1 ms..=60 s.
    /// Default 200 ms (LAN), 500 ms (WAN), 50 ms (local).
    pub gossip_interval: Duration,
    /// Peers contacted per gossip round. Range 1..=16, default 1.
    pub gossip_fanout: usize,
    /// How long a deletion's tombstone is kept before it is collected.
    /// A peer out of touch for longer than this resynchronises that node's
    /// state from scratch. Range 1 s..=7 days; default 5 minutes.
    pub tombstone_grace: Duration,
    /// Longest key accepted by `set`, in bytes. Range 1..=1024, default 256.
    pub max_key_len: usize,
    /// Time between two SWIM probes of this node (each probes one member).
    /// Range 10 ms..=60 s. Default 1 s (LAN), 2 s (WAN), 200 ms (local).
    pub probe_interval: Duration,
    /// Longest wait for a direct probe's ack before indirect probes are
    /// sent; the phi-accrual detector shortens it on quiet links (never
    /// below a tenth). Must be below `probe_interval`. Default 500 ms
    /// (LAN), 1.5 s (WAN), 100 ms (local).
    pub probe_timeout: Duration,
    /// Members asked to probe a silent member on our behalf (`PingReq`).
    /// Range 0..=16, default 3.
    pub indirect_checks: usize,
    /// Suspicion timeout floor, in probe intervals, scaled by log10(N):
    /// `suspicion_mult · max(1, log10 N) · probe_interval`. It is reached
    /// only once independent suspectors confirm (Lifeguard); a lone
    /// suspicion waits `suspicion_max_mult` times longer. Range 1..=32,
    /// default 1 (LAN), 4 (WAN).
    pub suspicion_mult: u32,
    /// Ceiling of the suspicion timeout as a multiple of its floor.
    /// Range 1..=32, default 6.
    pub suspicion_max_mult: u32,
    /// Each rumor (membership change, broadcast) is sent
    /// `retransmit_mult · ceil(log10(N + 1))` times. Range 1..=32, default 4.
    pub retransmit_mult: u32,
    /// Phi at which a probe counts as failed (Hayashibara et al.); 8 means
    /// a one-in-10⁸ delay. Range 1.0..=32.0, default 8.
    pub conviction_threshold: f64,
    /// Highest Lifeguard local-health score: a node that misses nacks or
    /// has to refute suspicions stretches its own probe timing by up to
    /// `1 + awareness_max` times. Range 0..=32, default 8.
    pub awareness_max: u32,
    /// How long a dead or departed member is kept (a dead one is re-probed
    /// with exponential backoff meanwhile, as it may come back) before it
    /// is removed and its state collected. Range 1 s..=1 day; default 60 s.
    pub dead_retention: Duration,
    /// Members a pending rumor is pushed to each gossip round, besides the
    /// piggybacking on probes. Range 1..=16, default 3.
    pub gossip_nodes: usize,
    /// How many packets announce each fresh version lazily (its digest
    /// line piggybacked on packets sent anyway), besides the push of its
    /// entries to the node's children in the change's broadcast tree
    /// (every node forwards each version it learns by a push once), so
    /// updates do not wait for the next gossip round at every hop. Tree
    /// pushes are acknowledged and resent with backoff; announcements
    /// reach members whose view of the tree differs, which pull what the
    /// tree did not bring; anti-entropy repairs whatever both miss.
    /// Range 0..=16 (0 turns pushing off, tree included), default 4.
    pub push_fanout: usize,
    /// How long after a push further fresh changes are batched before the
    /// next one; a change made when nothing was pushed for this long is
    /// pushed at once. Range 0..=1 s. Default 5 ms (LAN), 20 ms (WAN),
    /// 2 ms (local).
    pub push_delay: Duration,
    /// How often this node tries to reach a member it holds dead or has
    /// removed, or a seed that is not an alive member: each interval it
    /// contacts one of them, picked at random, so a cluster split by a
    /// partition merges back once the network heals, however long the
    /// partition lasted (Serf's reconnect). Range 100 ms..=1 hour.
    /// Default 30 s (LAN, WAN), 2 s (local).
    pub reconnect_interval: Duration,
    /// How long after it was declared dead a member is still tried at
    /// `reconnect_interval` (seeds are tried for as long as they are
    /// configured). Range 1 s..=30 days, and at least
    /// `reconnect_interval`. Default 24 hours (LAN, WAN), 10 minutes
    /// (local).
    pub reconnect_timeout: Duration,
    /// Admission by address: a node whose gossip address lies in none of
    /// these networks never becomes a member here (see
    /// `docs/SECURITY.md`, "Admission control"). IPv4 and IPv6 networks
    /// may be mixed; an IPv4 network also holds the IPv4-mapped IPv6 form
    /// of its addresses. Empty (the default) admits every address. At most
    /// 1,024 networks.
    ///
    /// Checked when this node would add a member it has never held, or a
    /// new generation of one (a restart), from a packet, a rumor or a
    /// delta; members already held are not evicted. A refused node's
    /// packets are dropped, its state is not applied, no event is raised;
    /// each refusal is counted (`Metrics::refused`) and the first per
    /// name logged at `warn`. Admission is local: give every node the same
    /// list, or nodes that disagree keep re-offering the refused member to
    /// each other.
    pub allowed_networks: Vec<Cidr>,
    /// Admission by number: the most members this node holds, itself
    /// included, counting dead and departed members until they are
    /// removed (`dead_retention`). A newcomer beyond it is refused as by
    /// `allowed_networks`; a restart replaces its record and is not
    /// capped. 0 (the default) means no limit; otherwise at least 2.
    pub max_members: usize,
    /// Whether this node signs the state it writes and checks the
    /// signatures of the state it receives (see `docs/SECURITY.md`,
    /// "Signed state"). Anything but [`Signatures::Off`] needs an identity
    /// (`NodeBuilder::identity`). Default `Off`.
    pub signatures: Signatures,
}

/// The stages of signed state, in the order a cluster moves through them
/// without downtime: every node to `Sign`, then every node to `Require`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Signatures {
    /// Neither sign nor check: any member holding the cluster key can
    /// write keys in another member's name (the default).
    #[default]
    Off,
    /// Sign our own state and publish our identity; check the state of
    /// every member whose identity we hold, and accept unsigned state only
    /// from members that publish no identity (the rollout stage).
    Sign,
    /// Sign, and accept only state signed by a trusted identity.
    Require,
}

impl Signatures {
    /// Whether this node signs its own state.
    pub fn signs(self) -> bool {
        self != Signatures::Off
    }
}

impl std::fmt::Display for Signatures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Signatures::Off => "off",
            Signatures::Sign => "sign",
            Signatures::Require => "require",
        })
    }
}

impl std::str::FromStr for Signatures {
    type Err = String;

    fn from_str(s: &str) -> Result<Signatures, String> {
        match s {
            "off" => Ok(Signatures::Off),
            "sign" => Ok(Signatures::Sign),
            "require" => Ok(Signatures::Require),
            other => Err(format!("{other:?} is not one of off, sign, require")),
        }
    }
}

/// Most entries of [`Config::allowed_networks`]: each newcomer is matched
/// against every one.
const MAX_ALLOWED_NETWORKS: usize = 1_024;

/// A configuration value out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid config field `{field}`: {reason}")]
pub struct ConfigError {
    /// The offending field.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl Default for Config {
    fn default() -> Self {
        Config::lan()
    }
}

impl Config {
    /// For nodes on one local network: fast gossip.
    pub fn lan() -> Config {
        Config {
            name: String::new(),
            cluster: "scuttlewire".to_owned(),
            generation: None,
            rng_seed: None,
            gossip_interval: Duration::from_millis(200),
            gossip_fanout: 1,
            tombstone_grace: Duration::from_secs(300),
            max_key_len: 256,
            probe_interval: Duration::from_secs(1),
            probe_timeout: Duration::from_millis(500),
            indirect_checks: 3,
            suspicion_mult: 1,
            suspicion_max_mult: 6,
            retransmit_mult: 4,
            conviction_threshold: 8.0,
            awareness_max: 8,
            dead_retention: Duration::from_secs(60),
            gossip_nodes: 3,
            push_fanout: 4,
            push_delay: Duration::from_millis(5),
            reconnect_interval: Duration::from_secs(30),
            reconnect_timeout: Duration::from_secs(24 * 3600),
            signatures: Signatures::Off,
            allowed_networks: Vec::new(),
            max_members: 0,
        }
    }

    /// For nodes across a wide-area network: slower, more tolerant.
    pub fn wan() -> Config {
        Config {
            gossip_interval: Duration::from_millis(500),
            tombstone_grace: Duration::from_secs(900),
            probe_interval: Duration::from_secs(2),
            probe_timeout: Duration::from_millis(1500),
            suspicion_mult: 4,
            dead_retention: Duration::from_secs(300),
            push_delay: Duration::from_millis(20),
            ..Config::lan()
        }
    }

    /// For nodes on one machine (tests, demos): very fast gossip.
    pub fn local() -> Config {
        Config {
            gossip_interval: Duration::from_millis(50),
            tombstone_grace: Duration::from_secs(30),
            probe_interval: Duration::from_millis(200),
            probe_timeout: Duration::from_millis(100),
            dead_retention: Duration::from_secs(10),
            push_delay: Duration::from_millis(2),
            reconnect_interval: Duration::from_secs(2),
            reconnect_timeout: Duration::from_secs(600),
            ..Config::lan()
        }
    }

    /// Sets the node name (builder style).
    pub fn with_name(mut self, name: impl Into<String>) -> Config {
        self.name = name.into();
        self
    }

    /// Sets the cluster name (builder style).
    pub fn with_cluster(mut self, cluster: impl Into<String>) -> Config {
        self.cluster = cluster.into();
        self
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn bad(field: &'static str, reason: impl Into<String>) -> Result<(), ConfigError> {
            Err(ConfigError {
                field,
                reason: reason.into(),
            })
        }
        if self.name.len() > 255 {
            return bad("name", "longer than 255 bytes");
        }
        if self.cluster.is_empty() || self.cluster.len() > 255 {
            return bad("cluster", "must be 1..=255 bytes");
        }
        if self.generation == Some(0) {
            return bad("generation", "must be at least 1");
        }
        let ms = Duration::from_millis;
        if !(ms(1)..=Duration::from_secs(60)).contains(&self.gossip_interval) {
            return bad("gossip_interval", "must be within 1 ms..=60 s");
        }
        if !(1..=16).contains(&self.gossip_fanout) {
            return bad("gossip_fanout", "must be within 1..=16");
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(7 * 86_400))
            .contains(&self.tombstone_grace)
        {
            return bad("tombstone_grace", "must be within 1 s..=7 days");
        }
        if !(1..=1024).contains(&self.max_key_len) {
            return bad("max_key_len", "must be within 1..=1024");
        }
        if !(ms(10)..=Duration::from_secs(60)).contains(&self.probe_interval) {
            return bad("probe_interval", "must be within 10 ms..=60 s");
        }
        if self.probe_timeout < ms(1) || self.probe_timeout >= self.probe_interval {
            return bad(
                "probe_timeout",
                "must be at least 1 ms and below probe_interval",
            );
        }
        if self.indirect_checks > 16 {
            return bad("indirect_checks", "must be within 0..=16");
        }
        if !(1..=32).contains(&self.suspicion_mult) {
            return bad("suspicion_mult", "must be within 1..=32");
        }
        if !(1..=32).contains(&self.suspicion_max_mult) {
            return bad("suspicion_max_mult", "must be within 1..=32");
        }
        if !(1..=32).contains(&self.retransmit_mult) {
            return bad("retransmit_mult", "must be within 1..=32");
        }
        if !(1.0..=32.0).contains(&self.conviction_threshold) {
            return bad("conviction_threshold", "must be within 1.0..=32.0");
        }
        if self.awareness_max > 32 {
            return bad("awareness_max", "must be within 0..=32");
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(86_400)).contains(&self.dead_retention) {
            return bad("dead_retention", "must be within 1 s..=1 day");
        }
        if !(1..=16).contains(&self.gossip_nodes) {
            return bad("gossip_nodes", "must be within 1..=16");
        }
        if self.push_fanout > 16 {
            return bad("push_fanout", "must be within 0..=16");
        }
        if self.push_delay > Duration::from_secs(1) {
            return bad("push_delay", "must be within 0..=1 s");
        }
        if !(ms(100)..=Duration::from_secs(3600)).contains(&self.reconnect_interval) {
            return bad("reconnect_interval", "must be within 100 ms..=1 hour");
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(30 * 86_400))
            .contains(&self.reconnect_timeout)
            || self.reconnect_timeout < self.reconnect_interval
        {
            return bad(
                "reconnect_timeout",
                "must be within 1 s..=30 days and at least reconnect_interval",
            );
        }
        if self.allowed_networks.len() > MAX_ALLOWED_NETWORKS {
            return bad(
                "allowed_networks",
                format!(
                    "{} networks; at most {MAX_ALLOWED_NETWORKS}",
                    self.allowed_networks.len()
                ),
            );
        }
        if self.max_members == 1 {
            return bad(
                "max_members",
                "counts this node too: must be 0 (no limit) or at least 2",
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid() {
        for c in [Config::lan(), Config::wan(), Config::local()] {
            assert_eq!(c.validate(), Ok(()));
        }
    }

    #[test]
    fn bad_values_name_their_field() {
        let cases: Vec<(Config, &str)> = vec![
            (
                Config {
                    gossip_interval: Duration::ZERO,
                    ..Config::lan()
                },
                "gossip_interval",
            ),
            (
                Config {
                    gossip_fanout: 0,
                    ..Config::lan()
                },
                "gossip_fanout",
            ),
            (
                Config {
                    cluster: String::new(),
                    ..Config::lan()
                },
                "cluster",
            ),
            (
                Config {
                    name: "x".repeat(300),
                    ..Config::lan()
                },
                "name",
            ),
            (
                Config {
                    generation: Some(0),
                    ..Config::lan()
                },
                "generation",
            ),
            (
                Config {
                    max_key_len: 0,
                    ..Config::lan()
                },
                "max_key_len",
            ),
            (
                Config {
                    tombstone_grace: Duration::ZERO,
                    ..Config::lan()
                },
                "tombstone_grace",
            ),
            (
                Config {
                    reconnect_interval: Duration::ZERO,
                    ..Config::lan()
                },
                "reconnect_interval",
            ),
            (
                Config {
                    reconnect_timeout: Duration::from_secs(10),
                    ..Config::lan()
                },
                "reconnect_timeout",
            ),
            (
                Config {
                    max_members: 1,
                    ..Config::lan()
                },
                "max_members",
            ),
            (
                Config {
                    allowed_networks: vec!["10.0.0.0/8".parse().unwrap(); 1_025],
                    ..Config::lan()
                },
                "allowed_networks",
            ),
        ];
        for (c, field) in cases {
            let err = c.validate().unwrap_err();
            assert_eq!(err.field, field);
            assert!(err.to_string().contains(field));
        }
    }

    #[test]
    fn admission_limits_accept_their_documented_range() {
        for max_members in [0, 2, 1_000_000] {
            let c = Config {
                max_members,
                allowed_networks: vec!["10.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()],
                ..Config::lan()
            };
            assert_eq!(c.validate(), Ok(()), "{max_members}");
        }
    }
}
