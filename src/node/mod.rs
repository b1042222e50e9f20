//! The node: a tokio task that owns the [`Engine`] and the transport, and
//! the cheap-to-clone [`Node`] handle the application talks to it with.
//!
//! ```no_run
//! # async fn demo() -> Result<(), scuttlewire::NodeError> {
//! use scuttlewire::{Config, Node};
//! let node = Node::builder(Config::lan().with_name("web-1"))
//!     .seeds(["10.0.0.2:7946".parse().unwrap()])
//!     .initial_state("role", "web")
//!     .start_udp("0.0.0.0:7946".parse().unwrap())
//!     .await?;
//! node.set("load", "0.25").await?;
//! let mut events = node.events();
//! while let Some(event) = events.next().await {
//!     match event {
//!         Ok(event) => println!("{event:?}"),
//!         Err(lagged) => println!("{lagged}: re-read with members() and get()"),
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! # Encrypted UDP and key rotation
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use scuttlewire::seal::{Key, Keyring};
//! use scuttlewire::transport::EncryptionConfig;
//! use scuttlewire::{Config, Node};
//! let key = Key::from_base64("<the cluster key, from Key::generate().to_base64()>")?;
//! let node = Node::builder(Config::lan().with_name("web-1"))
//!     .start_encrypted_udp(
//!         "0.0.0.0:7946".parse()?,
//!         Keyring::new(key),
//!         EncryptionConfig::default(),
//!     )
//!     .await?;
//! // Later, on every member: install, then use once safe, then remove.
//! let new = node.install_key(Key::generate()?).await?;
//! if node.cluster_keys().await?.safe_to_use(new) {
//!     node.use_key(new).await?;
//! }
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! * `driver` — the task that owns the engine and the transport.
//! * `events` — [`EventStream`] and its [`Lagged`] notice.
//! * `encrypted` — starting a node on an [`Encrypted`](crate::transport::Encrypted)
//!   transport.
//! * `keys` — key rotation through the handle and the `__sw.keys` gossip.
//! * `cluster_keys` — [`ClusterKeys`], the cluster-wide view of keys.
//! * `telemetry` — counters, gauges and histograms through the `metrics`
//!   facade, labelled with the node's name (see `docs/METRICS.md`).
//! * `discovery` — optional multicast LAN discovery ([`Discovery`]): nodes
//!   announce themselves and take what they hear as seeds.

// Starting a node reads the clock (generation, first instant) and the OS RNG
// (engine seed); the engine gets all three as arguments.
#![allow(clippy::disallowed_methods)]

mod advertise;
mod cluster_keys;
mod discovery;
mod driver;
mod encrypted;
mod events;
mod keys;
mod seeds;
mod telemetry;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;

pub use cluster_keys::{ClusterKeys, KeyUsage, MemberKeys};
pub use discovery::{Discovery, DiscoveryStats};
pub use events::{EventStream, Lagged};
pub use keys::KEYS_STATE_KEY;
pub use seeds::check_seed_host;

use crate::config::{Config, ConfigError};
use crate::engine::{
    AdmissionCheck, BroadcastError, Engine, EngineError, Member, MemberCounts, Metrics, NodeId,
    SetError,
};
use crate::identity::{Identity, Trust};
use crate::seal::{Keyring, KeyringError};
use crate::transport::{EncryptedStats, EncryptionConfig, Transport, TransportError, Udp};
use encrypted::SealStats;
use keys::KeyPublisher;

/// Errors of the node API.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// A config field is out of range; nothing was started.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The engine could not be built (e.g. the transport's budget is too
    /// small); nothing was started.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The transport failed to start.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// LAN discovery ([`NodeBuilder::discovery`]) could not open its
    /// sockets (the discovery port is taken, the group cannot be joined);
    /// nothing was started.
    #[error("LAN discovery: {0}")]
    Discovery(TransportError),
    /// A write was refused; the state is unchanged.
    #[error(transparent)]
    Set(#[from] SetError),
    /// A key operation on a node started without a keyring (plain
    /// transport and no [`NodeBuilder::keyring`]). Nothing changed.
    #[error("this node has no keyring (it was started without encryption)")]
    NoKeyring,
    /// A keyring change was refused (unknown key id, or removing the
    /// primary). Nothing changed.
    #[error(transparent)]
    Keyring(#[from] KeyringError),
    /// A broadcast was refused; nothing was sent.
    #[error(transparent)]
    Broadcast(#[from] BroadcastError),
    /// The node has shut down.
    #[error("node has shut down")]
    Closed,
}

/// Supplies seed addresses whenever the node knows no peer (like the Go
/// Scuttlebutt library's `SeedCB`). Called from the driver task, at most
/// once a second while it knows nobody; keep it quick.
pub type SeedProvider = Box<dyn FnMut() -> Vec<SocketAddr> + Send>;

pub(crate) enum Command {
    Set(String, Bytes, oneshot::Sender<Result<u64, SetError>>),
    Delete(String, oneshot::Sender<Option<u64>>),
    Get(String, String, oneshot::Sender<Option<Bytes>>),
    Members(oneshot::Sender<Vec<Member>>),
    Entries(String, oneshot::Sender<Option<Entries>>),
    Metrics(oneshot::Sender<NodeMetrics>),
    AddSeeds(Vec<SocketAddr>),
    /// Publish the keyring's ids under `__sw.keys` now (if they changed).
    PublishKeys(oneshot::Sender<Result<(), SetError>>),
    /// Every member with its raw `__sw.keys` value, in one snapshot.
    ClusterKeys(oneshot::Sender<Vec<(Member, Option<Bytes>)>>),
    Broadcast(Bytes, oneshot::Sender<Result<u64, BroadcastError>>),
    /// Leave the cluster, then stop; answers with how many peers were told.
    Leave(oneshot::Sender<usize>),
    Shutdown(oneshot::Sender<()>),
}

/// Counters of a running node: the engine's and the driver's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeMetrics {
    /// Protocol counters (packets, bytes, drops by reason, rounds).
    pub engine: Metrics,
    /// Members by status, this node included.
    pub members: MemberCounts,
    /// Transport errors on send (transient; the node carried on).
    pub send_errors: u64,
    /// Transport errors on receive (transient; the node carried on).
    pub recv_errors: u64,
    /// Datagrams the operating system dropped at the transport's full
    /// receive buffer since it opened, as of the driver's last check
    /// (every 30 s; every 5 s while datagrams pile up unread): a growing
    /// count means the node cannot keep up with what it is sent, and the
    /// node logs a warning (at most every 30 s). `None` when the transport
    /// does not tell (see [`Transport::os_receive_drops`]).
    pub os_receive_drops: Option<u64>,
    /// The encrypted transport's counters (sealed, opened, dropped by
    /// reason), when the node was started with
    /// [`NodeBuilder::start_encrypted_udp`] or
    /// [`NodeBuilder::start_encrypted`]; `None` otherwise.
    pub seal: Option<EncryptedStats>,
    /// LAN discovery's counters (announcements sent, heard, dropped by
    /// reason), when the node was started with
    /// [`NodeBuilder::discovery`]; `None` otherwise.
    pub discovery: Option<DiscoveryStats>,
}

/// Every live key of a node with its value and version, sorted by key (see
/// [`Node::entries`]).
pub type Entries = std::collections::BTreeMap<String, (Bytes, u64)>;

/// Configures and starts a node.
pub struct NodeBuilder {
    config: Config,
    seeds: Vec<SocketAddr>,
    seed_hosts: Vec<String>,
    seed_provider: Option<SeedProvider>,
    initial_state: Vec<(String, Bytes)>,
    advertise: Option<SocketAddr>,
    event_capacity: usize,
    keyring: Option<Keyring>,
    discovery: Option<Discovery>,
    /// The encrypted transport's configuration, set by `start_encrypted`,
    /// so that discovery seals as the transport does.
    encryption: Option<crate::transport::EncryptionConfig>,
    /// The node's signing identity and the trust it checks others' with.
    identity: Option<(Arc<Identity>, Arc<dyn Trust>)>,
    /// The application's admission check, handed to the engine.
    admission: Option<AdmissionCheck>,
}

impl NodeBuilder {
    /// Addresses to contact first to join the cluster.
    pub fn seeds(mut self, seeds: impl IntoIterator<Item = SocketAddr>) -> Self {
        self.seeds.extend(seeds);
        self
    }

    /// Seeds given as `host:port` names (or address literals), resolved by
    /// DNS when the node starts and again every `reconnect_interval`
    /// (every second while the node knows no peer), so a DNS record that
    /// changes — a Kubernetes headless service, say — is followed. A name
    /// that does not resolve is logged and retried; it never stops the
    /// node. One without a port is refused at start, naming `seeds`.
    pub fn seed_hosts<S: Into<String>>(mut self, hosts: impl IntoIterator<Item = S>) -> Self {
        self.seed_hosts.extend(hosts.into_iter().map(Into::into));
        self
    }

    /// A callback asked for seeds whenever the node knows no peer.
    pub fn seed_provider(
        mut self,
        provider: impl FnMut() -> Vec<SocketAddr> + Send + 'static,
    ) -> Self {
        self.seed_provider = Some(Box::new(provider));
        self
    }

    /// A key-value pair set before the node joins, so peers see it from the
    /// first exchange.
    pub fn initial_state(mut self, key: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.initial_state.push((key.into(), value.into()));
        self
    }

    /// The address peers should use for this node, when it differs from
    /// the transport's local address (behind NAT, or to choose among
    /// several interfaces); port 0 means the bound port. Without it, a
    /// node bound to `0.0.0.0` or `::` advertises the host's one private
    /// IPv4 (or global/unique-local IPv6) address, and refuses to start,
    /// naming `advertise`, when there is none or several.
    pub fn advertise(mut self, addr: SocketAddr) -> Self {
        self.advertise = Some(addr);
        self
    }

    /// How many events a slow subscriber may fall behind before it misses
    /// some (and gets [`Lagged`] from its [`EventStream`]). Default 1,024.
    ///
    /// The channel allocates every slot up front (about 144 bytes each),
    /// so this is most of an idle node's memory: 16,384 slots cost 2.3 MiB
    /// per node. A subscriber that keeps reading never lags; one that does
    /// slow work per event in a cluster of thousands (a join is one event
    /// per member, plus one per key) should raise it, or re-read
    /// `members()` and `entries()` when told it lagged.
    pub fn event_capacity(mut self, capacity: usize) -> Self {
        self.event_capacity = capacity.max(1);
        self
    }

    /// The keyring of the encrypted transport given to
    /// [`NodeBuilder::start`], so that the node gossips the ids of its keys
    /// (under [`KEYS_STATE_KEY`]) and [`Node::install_key`] and friends work.
    /// Pass a clone of the very keyring the transport uses. Not needed with
    /// [`NodeBuilder::start_encrypted_udp`] or
    /// [`NodeBuilder::start_encrypted`], which replace it with theirs.
    pub fn keyring(mut self, keyring: Keyring) -> Self {
        self.keyring = Some(keyring);
        self
    }

    /// The node's identity and the trust it checks other members'
    /// identities with, for signed state ([`Config::signatures`] `Sign` or
    /// `Require`, which need one; see `docs/SECURITY.md`, "Signed state").
    /// The identity is published as the node's first entry, under
    /// [`IDENTITY_KEY`](crate::identity::IDENTITY_KEY).
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::sync::Arc;
    /// use scuttlewire::identity::{CaTrust, Identity};
    /// use scuttlewire::{Config, Node, Signatures};
    ///
    /// let identity = Identity::load(
    ///     "certs/node-1.id.key".as_ref(),
    ///     Some("certs/node-1.id.pem".as_ref()),
    /// )?;
    /// let trust = CaTrust::load("certs/ca.pem".as_ref())?;
    /// let mut config = Config::local().with_name("node-1");
    /// config.signatures = Signatures::Require;
    /// let _builder = Node::builder(config).identity(identity, Arc::new(trust));
    /// # Ok(()) }
    /// ```
    pub fn identity(mut self, identity: Identity, trust: Arc<dyn Trust>) -> Self {
        self.identity = Some((Arc::new(identity), trust));
        self
    }

    /// Turns on multicast LAN discovery (off by default): the node
    /// announces itself to the group of `discovery` and takes the nodes it
    /// hears announcing as seeds, so nodes with no seed list find each
    /// other on one link. Seeds given as well are used as usual.
    ///
    /// On an encrypted transport the announcements are sealed with the
    /// transport's keyring, cipher and cluster label
    /// ([`NodeBuilder::start_encrypted_udp`], [`NodeBuilder::start_encrypted`];
    /// for an encrypted transport given to [`NodeBuilder::start`] with
    /// [`NodeBuilder::keyring`], with the default cipher and the cluster
    /// name as label), so only holders of a cluster key are heard. Over
    /// QUIC they are plaintext (TLS cannot cover multicast); a stranger's
    /// announcement then costs a failed handshake at most.
    ///
    /// Starting fails, naming a `discovery.*` field, if `discovery` is
    /// invalid or its group is not of the advertised address's family, and
    /// with [`NodeError::Discovery`] if the discovery port cannot be bound
    /// (one node per host may use it) or the group cannot be joined. See
    /// `docs/PROTOCOL.md` (Discovery) for what it sends and costs.
    pub fn discovery(mut self, discovery: Discovery) -> Self {
        self.discovery = Some(discovery);
        self
    }

    /// The application's say on who may join (memberlist's
    /// `AliveDelegate`): `check` is called with the identity of every node
    /// this node would add as a member, a newcomer or a new generation of
    /// a member (a restart), once `Config::allowed_networks` and
    /// `Config::max_members` let it through. `Err` refuses it, with a
    /// reason that is logged (at `warn`, once per name): the node is not
    /// added, raises no [`Event::MemberJoined`](crate::Event::MemberJoined),
    /// its packets are dropped and its state is not applied, and the
    /// refusal is counted in [`Metrics::refused`].
    ///
    /// It runs on the node's task each time such a node is met (each
    /// packet from it, each rumor or delta about it) until admitted, so
    /// keep it quick and never block in it. Members already admitted are
    /// not asked again at the same generation, nor evicted. Admission is
    /// each node's own decision: give every node the same rule. See
    /// `docs/SECURITY.md` ("Admission control").
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), scuttlewire::NodeError> {
    /// use scuttlewire::{Config, Node};
    /// let node = Node::builder(Config::lan().with_name("web-1"))
    ///     .admit(|id| match id.name.starts_with("web-") {
    ///         true => Ok(()),
    ///         false => Err(format!("{} is not a web node", id.name)),
    ///     })
    ///     .start_udp("0.0.0.0:7946".parse().unwrap())
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn admit(
        mut self,
        check: impl Fn(&NodeId) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.admission = Some(Arc::new(check));
        self
    }

    /// Starts the node on plain UDP bound to `bind` (default 1,400-byte
    /// payload budget).
    pub async fn start_udp(self, bind: SocketAddr) -> Result<Node, NodeError> {
        self.config.validate()?;
        let udp = Udp::bind(bind).await?;
        self.start(udp).await
    }

    /// Starts the node on `transport`; the returned handle is ready at once.
    pub async fn start<T: Transport>(self, transport: T) -> Result<Node, NodeError> {
        self.start_with(transport, None).await
    }

    async fn start_with<T: Transport>(
        self,
        transport: T,
        seal: Option<SealStats>,
    ) -> Result<Node, NodeError> {
        let mut config = self.config;
        config.validate()?;
        if let Some(d) = &self.discovery {
            d.validate()?;
        }
        for name in &self.seed_hosts {
            seeds::check_seed_host(name).map_err(|reason| ConfigError {
                field: "seeds",
                reason,
            })?;
        }
        let addr = advertise::resolve(transport.local_addr(), self.advertise)?;
        if config.name.is_empty() {
            config.name = addr.to_string();
        }
        let generation = config.generation.unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(1, |d| d.as_millis() as u64)
                .max(1)
        });
        let rng_seed = match config.rng_seed {
            Some(s) => s,
            None => {
                let mut b = [0u8; 8];
                getrandom::fill(&mut b).map_err(|e| {
                    TransportError::Setup(format!("no OS randomness for the RNG seed: {e}"))
                })?;
                u64::from_le_bytes(b)
            }
        };
        let id = NodeId::new(config.name.clone(), generation, addr);
        let now = tokio::time::Instant::now().into_std();
        let signatures = config.signatures;
        let mut engine = Engine::new(config, id.clone(), transport.max_payload(), rng_seed, now)?;
        match self.identity {
            Some((identity, trust)) => engine.set_identity(now, identity, trust)?,
            None if signatures.signs() => {
                return Err(ConfigError {
                    field: "signatures",
                    reason: format!("{signatures} needs an identity (NodeBuilder::identity)"),
                }
                .into());
            }
            None => {}
        }
        engine.set_admission_check(self.admission);
        for (k, v) in self.initial_state {
            engine.set(now, &k, v)?;
        }
        let seeds = seeds::Seeds::new(self.seeds, self.seed_hosts);
        seeds.hand_over(&mut engine);
        let mut publisher = self.keyring.clone().map(KeyPublisher::new);
        if let Some(publisher) = publisher.as_mut() {
            publisher.publish(&mut engine, now)?;
        }
        let discovery = match self.discovery {
            Some(d) => {
                let cluster = engine.config().cluster.clone();
                // Sealed as the transport seals (an encrypted transport
                // given to `start` with `.keyring(..)`: as
                // `start_encrypted` would, with the cluster name as label).
                let sealing = self.keyring.clone().map(|k| {
                    let encryption = self
                        .encryption
                        .unwrap_or_else(|| EncryptionConfig::new(cluster.as_str()));
                    (k, encryption)
                });
                let d = discovery::Discoverer::start(d, id.clone(), &cluster, sealing, rng_seed)?;
                Some(d)
            }
            None => None,
        };
        let discovery_stats = discovery.as_ref().map(discovery::Discoverer::stats_reader);
        let telemetry = telemetry::Telemetry::new(&mut engine, seal.clone());
        let (cmd_tx, cmd_rx) = mpsc::channel(1024);
        let (events_tx, _) = broadcast::channel(self.event_capacity);
        let task = tokio::spawn(driver::run(
            engine,
            transport,
            cmd_rx,
            events_tx.clone(),
            seeds,
            self.seed_provider,
            publisher,
            telemetry,
            discovery,
        ));
        Ok(Node {
            inner: Arc::new(Inner {
                id,
                cmd: cmd_tx,
                events: events_tx.downgrade(),
                task: Mutex::new(Some(task)),
                keyring: self.keyring,
                seal,
                discovery: discovery_stats,
            }),
        })
    }
}

struct Inner {
    id: NodeId,
    cmd: mpsc::Sender<Command>,
    /// Weak, so that the stream ends when the driver (the one strong
    /// sender) stops.
    events: broadcast::WeakSender<crate::Event>,
    task: Mutex<Option<JoinHandle<()>>>,
    /// Shared with the transport, when started with one.
    keyring: Option<Keyring>,
    /// Reads the encrypted transport's counters while it exists.
    seal: Option<SealStats>,
    /// Reads LAN discovery's counters, when it is on.
    discovery: Option<discovery::StatsReader>,
}

/// A handle to a running node. Cheap to clone; the node stops when
/// [`Node::shutdown`] is called or the last handle is dropped.
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("id", &self.inner.id).finish()
    }
}

impl Node {
    /// Starts configuring a node.
    pub fn builder(config: Config) -> NodeBuilder {
        NodeBuilder {
            config,
            seeds: Vec::new(),
            seed_hosts: Vec::new(),
            seed_provider: None,
            initial_state: Vec::new(),
            advertise: None,
            event_capacity: 1_024,
            keyring: None,
            discovery: None,
            encryption: None,
            identity: None,
            admission: None,
        }
    }

    /// This node's identity.
    pub fn local_id(&self) -> &NodeId {
        &self.inner.id
    }

    async fn ask<R>(
        &self,
        make: impl FnOnce(oneshot::Sender<R>) -> Command,
    ) -> Result<R, NodeError> {
        let (tx, rx) = oneshot::channel();
        self.inner
            .cmd
            .send(make(tx))
            .await
            .map_err(|_| NodeError::Closed)?;
        answer(rx, &self.inner.cmd).await
    }

    /// Sets `key` of this node to `value`; returns the new version. Refused
    /// if the key is longer than `Config::max_key_len` or the entry could
    /// never fit one packet.
    pub async fn set(
        &self,
        key: impl Into<String>,
        value: impl Into<Bytes>,
    ) -> Result<u64, NodeError> {
        let (key, value) = (key.into(), value.into());
        Ok(self.ask(|tx| Command::Set(key, value, tx)).await??)
    }

    /// Deletes `key` of this node; returns the tombstone's version, or
    /// `None` if it was not set.
    pub async fn delete(&self, key: impl Into<String>) -> Result<Option<u64>, NodeError> {
        let key = key.into();
        self.ask(|tx| Command::Delete(key, tx)).await
    }

    /// The value of `key` in the state of node `name`, as known here.
    pub async fn get(&self, name: &str, key: &str) -> Result<Option<Bytes>, NodeError> {
        let (n, k) = (name.to_owned(), key.to_owned());
        self.ask(|tx| Command::Get(n, k, tx)).await
    }

    /// Every known member, this node included, with its status.
    pub async fn members(&self) -> Result<Vec<Member>, NodeError> {
        self.ask(Command::Members).await
    }

    /// The members that are alive or suspect (not yet found dead), this
    /// node included: the ones to route work to (Smudge's `HealthyNodes`).
    pub async fn healthy_members(&self) -> Result<Vec<Member>, NodeError> {
        let mut members = self.members().await?;
        members.retain(|m| m.status.is_healthy());
        Ok(members)
    }

    /// Every live key of node `name` as known here, with its value and
    /// version, sorted by key; `None` if the node is unknown.
    pub async fn entries(&self, name: &str) -> Result<Option<Entries>, NodeError> {
        let name = name.to_owned();
        self.ask(|tx| Command::Entries(name, tx)).await
    }

    /// A snapshot of the node's counters.
    pub async fn metrics(&self) -> Result<NodeMetrics, NodeError> {
        let mut metrics = self.ask(Command::Metrics).await?;
        metrics.seal = self.seal_stats();
        metrics.discovery = self.inner.discovery.as_ref().map(|d| d.stats());
        Ok(metrics)
    }

    /// Adds seed addresses at run time.
    pub async fn add_seeds(&self, seeds: Vec<SocketAddr>) -> Result<(), NodeError> {
        self.inner
            .cmd
            .send(Command::AddSeeds(seeds))
            .await
            .map_err(|_| NodeError::Closed)
    }

    /// A new stream of events from now on (member joined, key set, ...),
    /// with a [`Lagged`] in place of any this subscriber was too slow for.
    /// It ends when the node shuts down (at once, if it already has).
    pub fn events(&self) -> EventStream {
        let rx = match self.inner.events.upgrade() {
            Some(tx) => tx.subscribe(),
            None => {
                // Already stopped: a receiver whose sender is gone.
                let (tx, rx) = broadcast::channel(1);
                drop(tx);
                rx
            }
        };
        EventStream::new(rx)
    }

    /// Sends `payload` to every healthy member; each delivers it once as
    /// [`crate::Event::Broadcast`]. Refused if it could never fit one
    /// packet. Returns the broadcast's sequence number.
    pub async fn broadcast(&self, payload: impl Into<Bytes>) -> Result<u64, NodeError> {
        let payload = payload.into();
        Ok(self.ask(|tx| Command::Broadcast(payload, tx)).await??)
    }

    /// Leaves the cluster gracefully: tells a few members at once (the news
    /// then spreads as a rumor, and others report this node *left*, not
    /// dead), waits until those datagrams are sent (five seconds at most,
    /// should the transport stall), and stops the node.
    /// Returns how many members were told directly.
    pub async fn leave(&self) -> Result<usize, NodeError> {
        let told = self.ask(Command::Leave).await?;
        self.shutdown().await;
        Ok(told)
    }

    /// Stops the node's task and waits for it. Idempotent.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.inner.cmd.send(Command::Shutdown(tx)).await.is_ok() {
            let _ = answer(rx, &self.inner.cmd).await;
        }
        let task = self
            .inner
            .task
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

/// Awaits the driver's answer to a command the channel took: the answer,
/// or [`NodeError::Closed`] once the driver has stopped without giving it.
///
/// Not `rx.await` alone. A command sent as the driver stops can outlive
/// it: tokio's channel drains its queue once, when the receiver is
/// dropped, and a sender that had its slot before the close but queued
/// after the drain leaves its command (and so `rx`'s sender) in the
/// channel until the last sender goes: with this node's handles alive,
/// never. `rx` then neither answers nor fails. `leave` met this: its
/// `Shutdown` raced the driver's exit, and an agent hung after `leaving`.
async fn answer<R>(
    mut rx: oneshot::Receiver<R>,
    cmd: &mpsc::Sender<Command>,
) -> Result<R, NodeError> {
    tokio::select! {
        biased;
        answered = &mut rx => answered.map_err(|_| NodeError::Closed),
        // The driver answers before it drops the receiver, so an answer
        // given is here by now, though it may have come after `rx` was
        // polled above.
        () = cmd.closed() => rx.try_recv().map_err(|_| NodeError::Closed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// The interleaving that hung `leave`: the command takes its slot, the
    /// driver stops (receiver dropped: close, then drain), and only then is
    /// the command queued.
    #[tokio::test]
    async fn a_command_queued_after_the_driver_stopped_is_answered_closed() {
        let (cmd, driver) = mpsc::channel(4);
        let slot = cmd.reserve().await.unwrap();
        drop(driver);
        let (tx, mut rx) = oneshot::channel();
        slot.send(Command::Shutdown(tx));
        // tokio keeps the stranded command, and with it the reply's sender:
        // `rx` alone would wait for ever.
        assert_eq!(rx.try_recv(), Err(oneshot::error::TryRecvError::Empty));
        let answered = tokio::time::timeout(Duration::from_secs(10), answer(rx, &cmd)).await;
        assert!(
            matches!(answered, Ok(Err(NodeError::Closed))),
            "{answered:?}"
        );
    }

    #[tokio::test]
    async fn an_answer_given_before_the_driver_stopped_is_kept() {
        let (cmd, mut driver) = mpsc::channel(4);
        let (tx, rx) = oneshot::channel();
        cmd.send(Command::Leave(tx)).await.unwrap();
        let Some(Command::Leave(reply)) = driver.recv().await else {
            panic!("the command was not queued");
        };
        reply.send(3).unwrap();
        drop(driver);
        assert!(matches!(answer(rx, &cmd).await, Ok(3)));
    }
}
