//! LAN discovery: nodes with no seed list find each other by multicast
//! (Smudge's "multicast announce on startup").
//!
//! Off by default; [`NodeBuilder::discovery`](super::NodeBuilder::discovery)
//! turns it on. The node then sends a small [`Announce`](crate::wire::proto::Announce)
//! — its name, generation and gossip address — to a multicast group on
//! its own UDP port: once at start, every [`Discovery::alone_interval`]
//! while it knows no peer, every [`Discovery::interval`] once joined.
//! What it hears becomes seeds (docs/PROTOCOL.md §5b):
//!
//! * **Alone**, a node collects the announcers it hears and, from one
//!   listening period (1.1 × `alone_interval`) after start, takes the
//!   smallest one (by name) as a seed at each of its announcements; the
//!   engine contacts it at its next gossip round. Nodes booting together
//!   have all heard each other by then and all contact the same node, so
//!   they form one cluster instead of pairing off at random into groups
//!   that would merge only a `reconnect_interval` later.
//! * **Joined**, a node hands a non-member announcer to the engine at once
//!   (contacted every `reconnect_interval` until it is a member: this
//!   merges groups that formed apart anyway), and *answers* it: it sends its
//!   own announcement straight to the announcer's discovery port (each
//!   member with probability `min(1, 3 / alive members)`, at most eight
//!   answers a second), so that a newcomer hears members at once instead of
//!   at their next periodic announcement.
//!
//! On an encrypted transport the announcements travel through the same
//! [`Encrypted`] code path as gossip, with the node's keyring, cipher and
//! cluster label (and its plaintext-migration stage): a node without the
//! key is never heard, and what fails to open is counted in
//! [`DiscoveryStats::dropped_unsealed`].
//!
//! # Sockets
//!
//! Two UDP sockets: one bound to the group's port on every address
//! (`0.0.0.0:7947` or `[::]:7947`), member of the group on the interface
//! that holds the advertised address; and one bound to the advertised
//! address with an OS-chosen port that sends, so that announcements leave
//! through that interface with no multicast route (Linux picks the
//! interface of a bound source address), with a TTL (hop limit) of 1. The
//! listening socket is bound without `SO_REUSEADDR` (std and tokio cannot
//! set it): one node per host may use discovery on a given port, and a
//! second one refuses to start ([`NodeError::Discovery`](super::NodeError::Discovery),
//! naming `discovery.port`) rather than run deaf to its LAN.

// Discovery is driver-side I/O: its announce timers read the clock.
#![allow(clippy::disallowed_methods)]

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6, UdpSocket as StdUdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

use super::seeds::Seeds;
use crate::config::ConfigError;
use crate::engine::{Engine, MemberStatus, NodeId};
use crate::seal::{Keyring, OVERHEAD};
use crate::transport::{Encrypted, EncryptionConfig, Transport, TransportError, Udp, UdpConfig};
use crate::wire::{self, DecodeError, Limits, MAX_ANNOUNCE};

/// Most distinct announcer addresses handed to the engine as seeds; past
/// it, new announcers are still answered but no longer added (a bound on
/// what a noisy LAN can make a node remember).
const MAX_DISCOVERED: usize = 256;

/// Joined members that answer a newcomer's announcement, on average.
const ANSWERS_PER_ANNOUNCEMENT: f64 = 3.0;

/// Shortest time between two answers of one node (eight a second).
const ANSWER_GAP: Duration = Duration::from_millis(125);

/// How long receiving pauses after a socket error, so a persistent one
/// cannot spin the driver.
const RECV_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Multicast LAN discovery settings: plain data, checked by
/// [`Discovery::validate`] (and again when the node starts). Start from
/// [`Discovery::lan`].
///
/// Every node of a cluster must use the same group and port. Both are
/// local to one link: the TTL (IPv4) and hop limit (IPv6) are 1, and the
/// default groups are administratively scoped (IPv4, RFC 2365) and
/// link-local (IPv6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovery {
    /// The multicast group announcements are sent to. `None` (default)
    /// picks by the family of the node's advertised address:
    /// [`Discovery::GROUP_V4`] (`239.255.77.46`) or [`Discovery::GROUP_V6`]
    /// (`ff12::7746`). A group given must be a multicast address of that
    /// same family.
    pub group: Option<IpAddr>,
    /// The UDP port of the group, which every node listens on. Range
    /// 1..=65535, default [`Discovery::PORT`] (7947, next to the usual
    /// gossip port 7946).
    pub port: u16,
    /// Time between announcements while the node knows no peer (and
    /// between the first and the second). Range 100 ms..=1 hour, at most
    /// `interval`. Default 1 s.
    pub alone_interval: Duration,
    /// Time between announcements once the node has a peer. Range
    /// 100 ms..=1 hour, at least `alone_interval`. Default 30 s.
    pub interval: Duration,
}

impl Default for Discovery {
    fn default() -> Discovery {
        Discovery::lan()
    }
}

impl Discovery {
    /// The default IPv4 group: in the organisation-local scope
    /// 239.255.0.0/16 (RFC 2365), so routers at the site's edge drop it.
    pub const GROUP_V4: Ipv4Addr = Ipv4Addr::new(239, 255, 77, 46);
    /// The default IPv6 group: transient (`1`), link-local scope (`2`).
    pub const GROUP_V6: Ipv6Addr = Ipv6Addr::new(0xff12, 0, 0, 0, 0, 0, 0, 0x7746);
    /// The default port of the group.
    pub const PORT: u16 = 7947;

    /// Discovery for one LAN: the default group for the node's address
    /// family, port 7947, an announcement a second while alone and every
    /// 30 s once joined.
    pub fn lan() -> Discovery {
        Discovery {
            group: None,
            port: Self::PORT,
            alone_interval: Duration::from_secs(1),
            interval: Duration::from_secs(30),
        }
    }

    /// Uses `group` instead of the default (builder style).
    pub fn with_group(mut self, group: IpAddr) -> Discovery {
        self.group = Some(group);
        self
    }

    /// Uses `port` instead of 7947 (builder style).
    pub fn with_port(mut self, port: u16) -> Discovery {
        self.port = port;
        self
    }

    /// Announces every `interval` once joined (builder style); the
    /// interval while alone is lowered to `interval` if it was longer.
    pub fn with_interval(mut self, interval: Duration) -> Discovery {
        self.interval = interval;
        self.alone_interval = self.alone_interval.min(interval);
        self
    }

    /// Checks every field; the error names the first bad one as
    /// `discovery.<field>`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn bad(field: &'static str, reason: &str) -> Result<(), ConfigError> {
            Err(ConfigError {
                field,
                reason: reason.to_owned(),
            })
        }
        if let Some(group) = self.group {
            if !group.is_multicast() {
                return bad(
                    "discovery.group",
                    "must be a multicast address (224.0.0.0/4 or ff00::/8)",
                );
            }
        }
        if self.port == 0 {
            return bad("discovery.port", "must be within 1..=65535");
        }
        let range = Duration::from_millis(100)..=Duration::from_secs(3600);
        if !range.contains(&self.alone_interval) {
            return bad("discovery.alone_interval", "must be within 100 ms..=1 hour");
        }
        if !range.contains(&self.interval) || self.interval < self.alone_interval {
            return bad(
                "discovery.interval",
                "must be within 100 ms..=1 hour and at least alone_interval",
            );
        }
        Ok(())
    }

    /// The group for a node advertising `advertised`: the configured one,
    /// refused (naming `discovery.group`) if its family differs, or the
    /// default of that family.
    pub fn group_for(&self, advertised: IpAddr) -> Result<IpAddr, ConfigError> {
        match (self.group, advertised) {
            (None, IpAddr::V4(_)) => Ok(IpAddr::V4(Self::GROUP_V4)),
            (None, IpAddr::V6(_)) => Ok(IpAddr::V6(Self::GROUP_V6)),
            (Some(g), a) if g.is_ipv4() == a.is_ipv4() => Ok(g),
            (Some(g), a) => Err(ConfigError {
                field: "discovery.group",
                reason: format!(
                    "{g} is not of the family of the advertised address {a}; \
                     give a group of the same family or none"
                ),
            }),
        }
    }
}

/// Counters of LAN discovery since the node started (see
/// [`NodeMetrics::discovery`](super::NodeMetrics::discovery)). Every
/// datagram that reaches the discovery port is counted exactly once, in
/// `received`, `own` or one of the `dropped_*` counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiscoveryStats {
    /// Announcements sent: to the group, and answers to newcomers.
    pub sent: u64,
    /// Of `sent`, answers sent straight to a newcomer.
    pub answered: u64,
    /// Valid announcements of other nodes of this cluster.
    pub received: u64,
    /// This node's own announcements, looped back by the group and ignored.
    pub own: u64,
    /// Announcers that were not alive members and were handed to the
    /// engine as seeds (each address once).
    pub joined_from: u64,
    /// Dropped: an announcement of another cluster.
    pub dropped_foreign: u64,
    /// Dropped: not a valid announcement (garbage, too large, another
    /// protocol version, an unusable address).
    pub dropped_malformed: u64,
    /// Dropped by the seal layer (encrypted nodes only): sealed under a
    /// key not installed, forged, replayed, or plaintext while plaintext is
    /// refused.
    pub dropped_unsealed: u64,
    /// Announcements that could not be sent (no route to the group, ...).
    pub send_errors: u64,
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    answered: AtomicU64,
    received: AtomicU64,
    own: AtomicU64,
    joined_from: AtomicU64,
    foreign: AtomicU64,
    malformed: AtomicU64,
    send_errors: AtomicU64,
}

fn bump(counter: &AtomicU64) -> u64 {
    counter.fetch_add(1, Ordering::Relaxed) + 1
}

/// Reads a running node's discovery counters from the [`Node`](super::Node)
/// handle, while the driver owns the sockets.
#[derive(Clone)]
pub(crate) struct StatsReader {
    counters: Arc<Counters>,
    sealed: Option<Weak<Encrypted<Udp>>>,
}

impl StatsReader {
    pub(crate) fn stats(&self) -> DiscoveryStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        DiscoveryStats {
            sent: get(&c.sent),
            answered: get(&c.answered),
            received: get(&c.received),
            own: get(&c.own),
            joined_from: get(&c.joined_from),
            dropped_foreign: get(&c.foreign),
            dropped_malformed: get(&c.malformed),
            dropped_unsealed: self
                .sealed
                .as_ref()
                .and_then(Weak::upgrade)
                .map_or(0, |t| t.stats().dropped()),
            send_errors: get(&c.send_errors),
        }
    }
}

/// One discovery socket, plain or through the seal layer.
enum Link {
    Plain(Udp),
    Sealed(Arc<Encrypted<Udp>>),
}

impl Link {
    async fn send(&self, to: SocketAddr, payload: Bytes) -> Result<(), TransportError> {
        match self {
            Link::Plain(t) => t.send(to, payload).await,
            Link::Sealed(t) => t.send(to, payload).await,
        }
    }

    /// Cancellation safe, as both transports' `recv` are.
    async fn recv(&self) -> Result<(SocketAddr, Bytes), TransportError> {
        match self {
            Link::Plain(t) => t.recv().await,
            Link::Sealed(t) => t.recv().await,
        }
    }

    fn sealed(&self) -> Option<Weak<Encrypted<Udp>>> {
        match self {
            Link::Plain(_) => None,
            Link::Sealed(t) => Some(Arc::downgrade(t)),
        }
    }
}

/// What the discovery port brought.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Heard {
    /// A valid announcement of another node of this cluster.
    Announcer(NodeId),
    /// Our own, looped back.
    Own,
    /// Another cluster's.
    Foreign,
    /// Not a valid announcement.
    Malformed(DecodeError),
}

/// Classifies one (opened) datagram. Pure, so every case is unit-tested.
fn classify(bytes: &[u8], me: &NodeId, cluster_id: u32, limits: &Limits) -> Heard {
    let announce = match wire::decode_announce(bytes, cluster_id, limits) {
        Ok(a) => a,
        Err(DecodeError::Cluster { .. }) => return Heard::Foreign,
        Err(e) => return Heard::Malformed(e),
    };
    let Some(id) = announce.node.as_ref().and_then(NodeId::from_proto) else {
        // `decode_announce` refuses announcements without a usable node.
        return Heard::Malformed(DecodeError::Invalid("announcement without a node"));
    };
    if id.name == me.name && id.generation == me.generation {
        return Heard::Own;
    }
    Heard::Announcer(id)
}

/// The driver's next discovery step.
pub(super) enum Step {
    /// A datagram arrived (and, on an encrypted node, opened).
    Heard(SocketAddr, Bytes),
    /// Time to announce.
    Due,
    /// The socket failed (transiently: UDP errors are); receiving pauses
    /// for a moment.
    Failed(TransportError),
    /// A pause after a failure ended.
    Resume,
    /// The first listening period ended: take a candidate.
    Choose,
}

/// The next step of `discovery`, or never when it is off (for the
/// driver's `select!`; cancellation safe).
pub(super) async fn next(discovery: &mut Option<Discoverer>, alone: bool) -> Step {
    match discovery {
        Some(d) => d.next(alone).await,
        None => std::future::pending().await,
    }
}

/// The running discovery of one node, owned by the driver task.
pub(super) struct Discoverer {
    me: NodeId,
    cluster_id: u32,
    limits: Limits,
    config: Discovery,
    /// Where announcements go: the group and port (with the interface as
    /// scope id, for IPv6).
    group: SocketAddr,
    /// Scope id for answers to link-local IPv6 addresses.
    scope_id: u32,
    listen: Link,
    send: Link,
    counters: Arc<Counters>,
    /// This node's announcement, encoded once (its identity never changes).
    announcement: Bytes,
    last_sent: Option<Instant>,
    /// Spreads the announcements of nodes that started together: each
    /// interval is stretched by this factor, drawn anew after each.
    jitter: f64,
    last_answer: Option<Instant>,
    /// Announcer addresses already handed to the engine.
    discovered: HashSet<SocketAddr>,
    /// Non-members heard while alone, by (name, generation). An alone node
    /// does not contact each announcer as it hears it: nodes booting
    /// together would pair off at random and form separate groups, which
    /// then merge only every `reconnect_interval`. Instead, at each of its
    /// announcements it takes the smallest one heard as a seed, so nodes
    /// that hear the same announcements converge on the same node.
    candidates: BTreeMap<(String, u64), SocketAddr>,
    /// The end of the first listening period: one longest announcement
    /// interval after the socket was bound, by when every node that was
    /// alone and up has announced at least once where we could hear it
    /// (nodes booting together miss each other's first announcement).
    /// No candidate is taken before.
    settle_at: Instant,
    /// Whether `settle_at` has passed and been acted on.
    settled: bool,
    recv_paused_until: Option<Instant>,
    rng: StdRng,
}

impl Discoverer {
    /// Opens the sockets for `me` (whose address family picks the group)
    /// and, when `seal` is given, wraps them in the seal layer with that
    /// keyring and configuration. `rng_seed` makes the jitter and answer
    /// draws reproducible.
    pub(super) fn start(
        config: Discovery,
        me: NodeId,
        cluster: &str,
        seal: Option<(Keyring, EncryptionConfig)>,
        rng_seed: u64,
    ) -> Result<Discoverer, super::NodeError> {
        config.validate()?;
        let group_ip = config.group_for(me.addr.ip())?;
        let failed = super::NodeError::Discovery;
        let sockets = Sockets::open(group_ip, config.port, me.addr.ip()).map_err(failed)?;
        let udp = UdpConfig {
            max_payload: MAX_ANNOUNCE + OVERHEAD,
        };
        let listen = Udp::from_std(sockets.listen, udp.clone()).map_err(failed)?;
        let send = Udp::from_std(sockets.send, udp).map_err(failed)?;
        let (listen, send) = match seal {
            None => (Link::Plain(listen), Link::Plain(send)),
            Some((keyring, encryption)) => {
                let seal = |t| Encrypted::new(t, keyring.clone(), encryption.clone());
                (
                    Link::Sealed(Arc::new(seal(listen).map_err(failed)?)),
                    Link::Sealed(Arc::new(seal(send).map_err(failed)?)),
                )
            }
        };
        tracing::info!(
            group = %sockets.group,
            sealed = matches!(send, Link::Sealed(_)),
            "LAN discovery on"
        );
        Ok(Discoverer::with_links(
            config,
            me,
            wire::cluster_id(cluster),
            (listen, send, sockets.group, sockets.scope_id),
            rng_seed,
        ))
    }

    fn with_links(
        config: Discovery,
        me: NodeId,
        cluster_id: u32,
        (listen, send, group, scope_id): (Link, Link, SocketAddr, u32),
        rng_seed: u64,
    ) -> Discoverer {
        let announcement = wire::encode_announce(cluster_id, me.to_proto());
        let mut rng = StdRng::seed_from_u64(rng_seed ^ 0xd15c_0fe2_d15c_0fe2);
        let jitter = rng.random_range(0.9..1.1);
        let settle_at = Instant::now() + config.alone_interval.mul_f64(1.1);
        Discoverer {
            me,
            cluster_id,
            limits: Limits::default(),
            config,
            group,
            scope_id,
            listen,
            send,
            counters: Arc::default(),
            announcement,
            last_sent: None,
            jitter,
            last_answer: None,
            discovered: HashSet::new(),
            candidates: BTreeMap::new(),
            settle_at,
            settled: false,
            recv_paused_until: None,
            rng,
        }
    }

    /// A reader of the counters for the node handle.
    pub(crate) fn stats_reader(&self) -> StatsReader {
        StatsReader {
            counters: Arc::clone(&self.counters),
            sealed: self.listen.sealed(),
        }
    }

    /// When the next announcement is due: at once if none was sent yet.
    fn due(&self, alone: bool) -> Instant {
        let Some(last) = self.last_sent else {
            return Instant::now();
        };
        let interval = if alone {
            self.config.alone_interval
        } else {
            self.config.interval
        };
        last + interval.mul_f64(self.jitter)
    }

    /// The next step: a datagram, the announcement timer, or (alone, once)
    /// the end of the first listening period. `alone`: whether the node
    /// knows no peer. Cancellation safe.
    pub(super) async fn next(&mut self, alone: bool) -> Step {
        let due = self.due(alone);
        let choose = (alone && !self.settled && !self.candidates.is_empty())
            .then_some(self.settle_at)
            .filter(|t| *t < due);
        let timer = choose.unwrap_or(due);
        let fired = || match choose {
            Some(_) if Instant::now() < due => Step::Choose,
            _ => Step::Due,
        };
        if let Some(until) = self.recv_paused_until.filter(|t| *t > Instant::now()) {
            tokio::time::sleep_until(until.min(timer)).await;
            return if Instant::now() >= timer {
                fired()
            } else {
                Step::Resume
            };
        }
        tokio::select! {
            r = self.listen.recv() => match r {
                Ok((from, bytes)) => Step::Heard(from, bytes),
                Err(e) => Step::Failed(e),
            },
            () = tokio::time::sleep_until(timer) => fired(),
        }
    }

    /// Carries out `step`: announces, or judges what was heard, handing
    /// new announcers to the engine through `seeds`.
    pub(super) async fn handle(&mut self, step: Step, engine: &mut Engine, seeds: &mut Seeds) {
        match step {
            Step::Due => self.announce(engine, seeds).await,
            Step::Choose => self.choose(engine, seeds),
            Step::Heard(from, bytes) => self.heard(from, &bytes, engine, seeds).await,
            Step::Failed(e) => {
                tracing::debug!(error = %e, "discovery: receive failed");
                self.recv_paused_until = Some(Instant::now() + RECV_ERROR_PAUSE);
            }
            Step::Resume => {}
        }
    }

    /// Announces this node to the group; while alone, first takes the
    /// smallest announcer heard so far as a seed.
    async fn announce(&mut self, engine: &mut Engine, seeds: &mut Seeds) {
        if engine.needs_seeds() {
            self.choose(engine, seeds);
        }
        self.last_sent = Some(Instant::now());
        self.jitter = self.rng.random_range(0.9..1.1);
        self.send_announcement(self.group).await;
    }

    async fn send_announcement(&self, to: SocketAddr) -> bool {
        match self.send.send(to, self.announcement.clone()).await {
            Ok(()) => {
                bump(&self.counters.sent);
                true
            }
            Err(e) => {
                let n = bump(&self.counters.send_errors);
                if n == 1 {
                    tracing::warn!(%to, error = %e, "discovery: cannot send announcements");
                } else if n.is_power_of_two() {
                    tracing::debug!(%to, error = %e, failures = n, "discovery: send failed");
                }
                false
            }
        }
    }

    async fn heard(
        &mut self,
        from: SocketAddr,
        bytes: &[u8],
        engine: &mut Engine,
        seeds: &mut Seeds,
    ) {
        let id = match classify(bytes, &self.me, self.cluster_id, &self.limits) {
            Heard::Announcer(id) => id,
            Heard::Own => {
                bump(&self.counters.own);
                return;
            }
            Heard::Foreign => {
                let n = bump(&self.counters.foreign);
                if n <= 4 || n.is_power_of_two() {
                    tracing::debug!(%from, dropped = n, "discovery: another cluster's announcement");
                }
                return;
            }
            Heard::Malformed(error) => {
                let n = bump(&self.counters.malformed);
                if n <= 16 || n.is_power_of_two() {
                    tracing::debug!(%from, %error, len = bytes.len(), dropped = n, "discovery: dropped datagram");
                }
                return;
            }
        };
        bump(&self.counters.received);
        let alive = engine
            .members()
            .iter()
            .any(|m| m.id == id && m.status == MemberStatus::Alive);
        if alive {
            return;
        }
        if engine.needs_seeds() {
            // Alone: the next announcement takes the smallest announcer
            // heard (see `Discoverer::candidates`).
            if !self.discovered.contains(&id.addr) && self.candidates.len() < MAX_DISCOVERED {
                self.candidates.insert((id.name, id.generation), id.addr);
            }
            return;
        }
        self.candidates.clear();
        self.hand_over(&id.name, id.generation, id.addr, engine, seeds);
        self.answer(&id, engine.member_counts().alive).await;
    }

    /// Takes the smallest announcer heard (and not taken yet) as a seed —
    /// once the first listening period is over (see
    /// `Discoverer::settle_at`).
    fn choose(&mut self, engine: &mut Engine, seeds: &mut Seeds) {
        if Instant::now() < self.settle_at {
            return;
        }
        self.settled = true;
        while let Some(((name, generation), addr)) = self.candidates.pop_first() {
            if self.hand_over(&name, generation, addr, engine, seeds) {
                break;
            }
        }
    }

    /// Gives an announcer's address to the engine as a seed, unless it was
    /// given before (or too many were); returns whether it was given.
    fn hand_over(
        &mut self,
        name: &str,
        generation: u64,
        addr: SocketAddr,
        engine: &mut Engine,
        seeds: &mut Seeds,
    ) -> bool {
        if self.discovered.contains(&addr) || self.discovered.len() >= MAX_DISCOVERED {
            return false;
        }
        self.discovered.insert(addr);
        bump(&self.counters.joined_from);
        tracing::info!(node = name, generation, %addr, "discovered on the LAN; a seed from now on");
        seeds.add(engine, vec![addr]);
        true
    }

    /// Answers a non-member's announcement with ours, sent to its
    /// discovery port, so that it (if alone) contacts us at once.
    async fn answer(&mut self, to: &NodeId, alive: usize) {
        let now = Instant::now();
        if self.last_answer.is_some_and(|t| now < t + ANSWER_GAP) {
            return;
        }
        let chance = (ANSWERS_PER_ANNOUNCEMENT / alive.max(1) as f64).min(1.0);
        if !self.rng.random_bool(chance) {
            return;
        }
        self.last_answer = Some(now);
        let addr = match to.addr.ip() {
            IpAddr::V6(ip) if ip.is_unicast_link_local() => {
                SocketAddr::V6(SocketAddrV6::new(ip, self.config.port, 0, self.scope_id))
            }
            ip => SocketAddr::new(ip, self.config.port),
        };
        if self.send_announcement(addr).await {
            bump(&self.counters.answered);
        }
    }
}

/// The two std sockets of discovery, configured and bound.
struct Sockets {
    listen: StdUdpSocket,
    send: StdUdpSocket,
    /// Where to send announcements.
    group: SocketAddr,
    /// The interface index of the advertised address (IPv6), else 0.
    scope_id: u32,
}

impl Sockets {
    fn open(group: IpAddr, port: u16, advertised: IpAddr) -> Result<Sockets, TransportError> {
        let setup = |what: String, e: std::io::Error| TransportError::Setup(format!("{what}: {e}"));
        let any = match group {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        let listen_at = SocketAddr::new(any, port);
        let listen = StdUdpSocket::bind(listen_at).map_err(|e| {
            let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
                " (discovery.port is taken: by another node with discovery on this \
                 host? one node per host may use a discovery port)"
            } else {
                ""
            };
            setup(format!("bind {listen_at}{hint}"), e)
        })?;
        // A send socket bound to the advertised address makes announcements
        // leave through its interface; if it is not a local address (NAT),
        // the routing table chooses.
        let send = StdUdpSocket::bind(SocketAddr::new(advertised, 0))
            .or_else(|e| {
                tracing::debug!(%advertised, error = %e, "discovery: sending from any address");
                StdUdpSocket::bind(SocketAddr::new(any, 0))
            })
            .map_err(|e| setup(format!("bind {any}:0"), e))?;
        match (group, advertised) {
            (IpAddr::V4(g), IpAddr::V4(a)) => {
                listen
                    .join_multicast_v4(&g, &a)
                    .or_else(|e| {
                        tracing::debug!(interface = %a, error = %e, "discovery: joining on the default interface");
                        listen.join_multicast_v4(&g, &Ipv4Addr::UNSPECIFIED)
                    })
                    .map_err(|e| setup(format!("join {g}"), e))?;
                send.set_multicast_ttl_v4(1)
                    .map_err(|e| setup("multicast TTL".into(), e))?;
                send.set_multicast_loop_v4(true)
                    .map_err(|e| setup("multicast loop".into(), e))?;
                Ok(Sockets {
                    listen,
                    send,
                    group: SocketAddr::new(group, port),
                    scope_id: 0,
                })
            }
            (IpAddr::V6(g), IpAddr::V6(a)) => {
                let index = interface_index(IpAddr::V6(a)).unwrap_or(0);
                listen
                    .join_multicast_v6(&g, index)
                    .map_err(|e| setup(format!("join {g} on interface {index}"), e))?;
                // The hop limit stays at the default of 1 (RFC 3493).
                send.set_multicast_loop_v6(true)
                    .map_err(|e| setup("multicast loop".into(), e))?;
                Ok(Sockets {
                    listen,
                    send,
                    group: SocketAddr::V6(SocketAddrV6::new(g, port, 0, index)),
                    scope_id: index,
                })
            }
            // `Discovery::group_for` matched the families.
            _ => Err(TransportError::Setup(format!(
                "group {group} and address {advertised} differ in family"
            ))),
        }
    }
}

/// The index of the interface holding `ip`, if any.
fn interface_index(ip: IpAddr) -> Option<u32> {
    if_addrs::get_if_addrs()
        .ok()?
        .into_iter()
        .find(|i| i.ip() == ip)
        .and_then(|i| i.index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::seal::Key;

    fn id(name: &str, generation: u64, addr: &str) -> NodeId {
        NodeId::new(name, generation, addr.parse().unwrap())
    }

    const CLUSTER: &str = "test";

    fn announcement(of: &NodeId, cluster: &str) -> Bytes {
        wire::encode_announce(wire::cluster_id(cluster), of.to_proto())
    }

    fn classify_for(me: &NodeId, bytes: &[u8]) -> Heard {
        classify(bytes, me, wire::cluster_id(CLUSTER), &Limits::default())
    }

    #[test]
    fn the_lan_defaults_are_valid_and_bad_values_name_their_field() {
        assert_eq!(Discovery::lan().validate(), Ok(()));
        assert_eq!(Discovery::default(), Discovery::lan());
        let ms = Duration::from_millis;
        let cases = [
            (
                Discovery::lan().with_group("10.0.0.1".parse().unwrap()),
                "discovery.group",
            ),
            (Discovery::lan().with_port(0), "discovery.port"),
            (
                Discovery {
                    alone_interval: ms(10),
                    ..Discovery::lan()
                },
                "discovery.alone_interval",
            ),
            (
                Discovery {
                    interval: ms(500),
                    ..Discovery::lan()
                },
                "discovery.interval",
            ),
            (
                Discovery::lan().with_interval(Duration::from_secs(7200)),
                "discovery.interval",
            ),
        ];
        for (d, field) in cases {
            let err = d.validate().unwrap_err();
            assert_eq!(err.field, field, "{d:?}");
            assert!(err.to_string().contains(field));
        }
        // A short interval lowers the interval while alone with it.
        let fast = Discovery::lan().with_interval(ms(200));
        assert_eq!((fast.alone_interval, fast.interval), (ms(200), ms(200)));
        assert_eq!(fast.validate(), Ok(()));
    }

    #[test]
    fn the_group_follows_the_advertised_family() {
        let v4: IpAddr = "10.0.0.1".parse().unwrap();
        let v6: IpAddr = "fd00::1".parse().unwrap();
        let d = Discovery::lan();
        assert_eq!(d.group_for(v4), Ok(IpAddr::V4(Discovery::GROUP_V4)));
        assert_eq!(d.group_for(v6), Ok(IpAddr::V6(Discovery::GROUP_V6)));
        assert_eq!(d.group_for(v4).unwrap().to_string(), "239.255.77.46");
        assert_eq!(d.group_for(v6).unwrap().to_string(), "ff12::7746");
        let other: IpAddr = "239.1.2.3".parse().unwrap();
        assert_eq!(d.clone().with_group(other).group_for(v4), Ok(other));
        let err = d.with_group(other).group_for(v6).unwrap_err();
        assert_eq!(err.field, "discovery.group");
    }

    #[test]
    fn own_foreign_and_malformed_announcements_are_told_apart() {
        let me = id("a", 7, "10.0.0.1:7946");
        let b = id("b", 9, "10.0.0.2:7946");
        assert_eq!(
            classify_for(&me, &announcement(&b, CLUSTER)),
            Heard::Announcer(b)
        );
        assert_eq!(classify_for(&me, &announcement(&me, CLUSTER)), Heard::Own);
        // Our name with another generation is another incarnation, not us.
        let twin = id("a", 8, "10.0.0.1:7946");
        assert_eq!(
            classify_for(&me, &announcement(&twin, CLUSTER)),
            Heard::Announcer(twin)
        );
        assert_eq!(
            classify_for(&me, &announcement(&me, "other")),
            Heard::Foreign
        );
        for garbage in [&b""[..], b"\x00", b"hello", &[0xff; 600]] {
            assert!(
                matches!(classify_for(&me, garbage), Heard::Malformed(_)),
                "{garbage:?}"
            );
        }
    }

    /// A node's discovery over unicast loopback sockets (it "announces" to
    /// `to`, another peer's listening socket), with its own engine.
    struct Peer {
        d: Discoverer,
        engine: Engine,
        seeds: Seeds,
    }

    impl Peer {
        async fn new(name: &str, seal: Option<&Keyring>, to: SocketAddr) -> Peer {
            let udp = || async {
                Udp::bind_with(
                    "127.0.0.1:0".parse().unwrap(),
                    UdpConfig {
                        max_payload: MAX_ANNOUNCE + OVERHEAD,
                    },
                )
                .await
                .unwrap()
            };
            let (listen, send) = (udp().await, udp().await);
            let me = id(name, 1, &listen.local_addr().to_string());
            let (listen, send) = match seal {
                None => (Link::Plain(listen), Link::Plain(send)),
                Some(k) => {
                    let wrap = |t| {
                        let config = EncryptionConfig::new(CLUSTER);
                        Link::Sealed(Arc::new(Encrypted::new(t, k.clone(), config).unwrap()))
                    };
                    (wrap(listen), wrap(send))
                }
            };
            let config = Config::local().with_cluster(CLUSTER).with_name(name);
            let now = std::time::Instant::now();
            let engine = Engine::new(config, me.clone(), 1400, 1, now).unwrap();
            let cluster = wire::cluster_id(CLUSTER);
            let links = (listen, send, to, 0);
            let mut d = Discoverer::with_links(Discovery::lan(), me, cluster, links, 1);
            // Most tests are about what comes after the first listening period.
            d.settle_at = Instant::now();
            Peer {
                d,
                engine,
                seeds: Seeds::new(Vec::new(), Vec::new()),
            }
        }

        fn addr(&self) -> SocketAddr {
            self.d.me.addr
        }

        async fn announce(&mut self) {
            self.d.announce(&mut self.engine, &mut self.seeds).await;
        }

        /// Handles steps (announcing when due) until a datagram is heard;
        /// `false` if none comes within a second.
        async fn hear_one(&mut self) -> bool {
            let deadline = Instant::now() + Duration::from_secs(1);
            loop {
                let alone = self.engine.needs_seeds();
                let Ok(step) = tokio::time::timeout_at(deadline, self.d.next(alone)).await else {
                    return false;
                };
                let heard = matches!(step, Step::Heard(..));
                self.d.handle(step, &mut self.engine, &mut self.seeds).await;
                if heard {
                    return true;
                }
            }
        }

        fn stats(&self) -> DiscoveryStats {
            self.d.stats_reader().stats()
        }
    }

    const NOWHERE: &str = "127.0.0.1:9";

    #[tokio::test]
    async fn a_sealed_announcement_is_heard_and_a_wrong_keys_is_dropped_and_counted() {
        let key = Keyring::new(Key::from_bytes(&[1; 32]).unwrap());
        let wrong = Keyring::new(Key::from_bytes(&[2; 32]).unwrap());
        let mut b = Peer::new("b", Some(&key), NOWHERE.parse().unwrap()).await;
        let mut a = Peer::new("a", Some(&key), b.addr()).await;
        let mut x = Peer::new("x", Some(&wrong), b.addr()).await;
        let mut plain = Peer::new("p", None, b.addr()).await;
        b.d.last_sent = Some(Instant::now()); // as if it had announced

        // The intruder's, then a plaintext one: both dropped by the seal
        // layer (`next` does not even return them), then a's.
        x.announce().await;
        plain.announce().await;
        a.announce().await;
        assert!(b.hear_one().await, "a's announcement did not arrive");
        assert!(!b.hear_one().await, "only a's announcement opens");
        let stats = b.stats();
        assert_eq!(stats.dropped_unsealed, 2, "{stats:?}");
        assert_eq!(stats.received, 1, "{stats:?}");
        assert_eq!(x.stats().sent, 1);
        // b is alone: a becomes a seed at b's next announcement.
        b.announce().await;
        assert_eq!(b.engine.seeds(), &[a.addr()]);
        assert_eq!(b.stats().joined_from, 1);

        // A second announcement is heard, but adds no seed.
        a.announce().await;
        assert!(b.hear_one().await);
        b.announce().await;
        let stats = b.stats();
        assert_eq!((stats.received, stats.joined_from), (2, 1), "{stats:?}");
        assert_eq!(b.engine.seeds(), &[a.addr()]);
    }

    #[tokio::test]
    async fn a_plain_node_counts_foreign_own_and_garbage() {
        let mut b = Peer::new("b", None, NOWHERE.parse().unwrap()).await;
        b.d.last_sent = Some(Instant::now()); // no announcement in between
        let raw = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let other = id("o", 1, "127.0.0.1:7000");
        for datagram in [
            announcement(&other, "another cluster"),
            announcement(&b.d.me, CLUSTER),
            Bytes::from_static(b"\xff\xff garbage"),
            announcement(&other, CLUSTER),
        ] {
            raw.send_to(&datagram, b.addr()).unwrap();
            assert!(b.hear_one().await, "nothing arrived");
        }
        b.announce().await;
        let stats = b.stats();
        assert_eq!(
            stats,
            DiscoveryStats {
                sent: 1,
                received: 1,
                own: 1,
                joined_from: 1,
                dropped_foreign: 1,
                dropped_malformed: 1,
                ..DiscoveryStats::default()
            }
        );
        assert_eq!(b.engine.seeds(), &[other.addr]);
    }

    #[tokio::test]
    async fn an_alone_node_takes_the_smallest_announcer_first_one_per_announcement() {
        let mut b = Peer::new("b", None, NOWHERE.parse().unwrap()).await;
        b.d.last_sent = Some(Instant::now());
        let raw = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let (n3, n1, n2) = (
            id("node-3", 1, "127.0.0.1:7003"),
            id("node-1", 1, "127.0.0.1:7001"),
            id("node-2", 1, "127.0.0.1:7002"),
        );
        for n in [&n3, &n1, &n2] {
            raw.send_to(&announcement(n, CLUSTER), b.addr()).unwrap();
            assert!(b.hear_one().await);
        }
        assert!(
            b.engine.seeds().is_empty(),
            "nothing before an announcement"
        );
        b.announce().await;
        assert_eq!(b.engine.seeds(), &[n1.addr]);
        b.announce().await;
        assert_eq!(b.engine.seeds(), &[n1.addr, n2.addr]);
        b.announce().await;
        b.announce().await;
        assert_eq!(b.engine.seeds(), &[n1.addr, n2.addr, n3.addr]);
        assert_eq!(b.stats().joined_from, 3);
    }

    #[tokio::test]
    async fn an_alone_node_takes_no_seed_in_its_first_listening_period() {
        let mut b = Peer::new("b", None, NOWHERE.parse().unwrap()).await;
        b.d.settle_at = Instant::now() + Duration::from_millis(300);
        b.d.last_sent = Some(Instant::now());
        let raw = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let a = id("a", 1, "127.0.0.1:7001");
        raw.send_to(&announcement(&a, CLUSTER), b.addr()).unwrap();
        assert!(b.hear_one().await);
        b.announce().await;
        assert!(b.engine.seeds().is_empty(), "taken before the period ended");
        // The period's end is a step of its own, before the next
        // announcement is due.
        let step = tokio::time::timeout(Duration::from_millis(500), b.d.next(true))
            .await
            .expect("no step at the end of the period");
        assert!(matches!(step, Step::Choose));
        b.d.handle(step, &mut b.engine, &mut b.seeds).await;
        assert_eq!(b.engine.seeds(), &[a.addr]);
    }

    /// Makes `p`'s engine a member of a two-node cluster with a node at
    /// `at`, by handing it that node's join Syn.
    fn join(p: &mut Peer, at: SocketAddr) {
        let config = Config::local().with_cluster(CLUSTER).with_name("m");
        let now = std::time::Instant::now();
        let mut m = Engine::new(config, id("m", 1, &at.to_string()), 1400, 2, now).unwrap();
        m.add_seeds([p.addr()]);
        m.handle_timeout(now + Duration::from_secs(1));
        while let Some(t) = m.poll_transmit() {
            p.engine
                .handle_packet(now + Duration::from_secs(1), at, &t.payload);
        }
        assert!(!p.engine.needs_seeds(), "the join did not take");
    }

    #[tokio::test]
    async fn a_joined_node_takes_a_newcomer_at_once_and_answers_it() {
        let mut newcomer = Peer::new("n", None, NOWHERE.parse().unwrap()).await;
        let mut b = Peer::new("b", None, newcomer.addr()).await;
        join(&mut b, "127.0.0.1:7010".parse().unwrap());
        // Answers go to the announcer's address on the discovery port.
        b.d.config.port = newcomer.addr().port();
        b.d.last_sent = Some(Instant::now());
        newcomer.d.last_sent = Some(Instant::now());

        let raw = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let heard = announcement(&newcomer.d.me, CLUSTER);
        raw.send_to(&heard, b.addr()).unwrap();
        assert!(b.hear_one().await);
        assert_eq!(b.engine.seeds(), &[newcomer.addr()], "at once");
        let stats = b.stats();
        assert_eq!((stats.answered, stats.sent), (1, 1), "{stats:?}");

        // The newcomer hears the answer and takes b at its next announcement.
        assert!(newcomer.hear_one().await, "no answer arrived");
        newcomer.announce().await;
        assert_eq!(newcomer.engine.seeds(), &[b.addr()]);

        // Answers are rate-limited: an immediate second one is not sent.
        raw.send_to(&heard, b.addr()).unwrap();
        assert!(b.hear_one().await);
        assert_eq!(b.stats().answered, 1);
    }

    #[tokio::test]
    async fn a_taken_discovery_port_refuses_the_start_naming_it() {
        let taken = StdUdpSocket::bind("0.0.0.0:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let me = id("a", 1, "127.0.0.1:7946");
        let err = Discoverer::start(Discovery::lan().with_port(port), me, CLUSTER, None, 1)
            .err()
            .expect("a second bind of the port succeeded");
        let text = err.to_string();
        assert!(
            matches!(err, super::super::NodeError::Discovery(_)),
            "{text}"
        );
        assert!(text.contains("discovery.port"), "{text}");
        // A bad setting is refused before any socket, naming its field.
        let me = id("a", 1, "[fd00::1]:7946");
        let v4 = Discovery::lan().with_group("239.1.2.3".parse().unwrap());
        match Discoverer::start(v4, me, CLUSTER, None, 1) {
            Err(super::super::NodeError::Config(e)) => assert_eq!(e.field, "discovery.group"),
            other => panic!("{:?}", other.err()),
        }
    }

    #[tokio::test]
    async fn the_first_announcement_is_due_at_once_then_by_interval() {
        let mut p = Peer::new("d", None, NOWHERE.parse().unwrap()).await;
        let start = Instant::now();
        assert!(p.d.due(true) <= Instant::now());
        p.announce().await;
        let alone = p.d.due(true) - start;
        let joined = p.d.due(false) - start;
        assert!(
            alone >= Duration::from_millis(900) && alone <= Duration::from_millis(1100),
            "{alone:?}"
        );
        assert!(
            joined >= Duration::from_secs(27) && joined <= Duration::from_secs(33),
            "{joined:?}"
        );
        assert_eq!(p.stats().sent, 1);
    }
}
