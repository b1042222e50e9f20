//! # scuttlewire
//!
//! Cluster membership and state dissemination by gossip, secure by default,
//! over pluggable transports.
//!
//! Every node holds versioned key-value state; Scuttlebutt anti-entropy
//! (digest / delta) and eager pushes spread it to every member. SWIM probes
//! with Lifeguard and a phi-accrual probe timeout find failed members.
//! Messages are Protobuf, packed into datagrams that never exceed the
//! transport's budget, and travel over any [`Transport`](transport::Transport).
//! The protocol is described in `docs/PROTOCOL.md`, the wire in
//! `docs/WIRE.md`, the encryption in `docs/SECURITY.md`.
//!
//! # Encrypted UDP on a LAN
//!
//! Two nodes on loopback sealing every datagram with AES-256-GCM under a
//! shared cluster key; one writes, the other reads.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use scuttlewire::seal::{Key, Keyring};
//! use scuttlewire::transport::EncryptionConfig;
//! use scuttlewire::{Config, Node};
//!
//! let key = Key::generate()?; // share it: key.to_base64(), Key::from_base64(..)
//! let any = "127.0.0.1:0".parse()?;
//! let a = Node::builder(Config::local().with_name("a"))
//!     .start_encrypted_udp(any, Keyring::new(key.clone()), EncryptionConfig::default())
//!     .await?;
//! let b = Node::builder(Config::local().with_name("b"))
//!     .seeds([a.local_id().addr])
//!     .start_encrypted_udp(any, Keyring::new(key), EncryptionConfig::default())
//!     .await?;
//! b.set("role", "db").await?;
//! while a.get("b", "role").await?.is_none() {
//!     tokio::time::sleep(Duration::from_millis(10)).await;
//! }
//! a.shutdown().await;
//! b.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # QUIC across a WAN
//!
//! Mutual TLS against a cluster CA (here the development certificates in
//! `certs/`, which must never be used in production); gossip travels as
//! QUIC datagrams.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use scuttlewire::transport::{Quic, QuicConfig};
//! use scuttlewire::{Config, Node};
//!
//! let tls = |n: &str| {
//!     QuicConfig::from_pem_files("certs/ca.pem", format!("certs/{n}.pem"), format!("certs/{n}.key"))
//! };
//! let any = "127.0.0.1:0".parse()?;
//! let a = Node::builder(Config::local().with_name("node-1"))
//!     .start(Quic::bind(any, tls("node-1")?).await?)
//!     .await?;
//! let b = Node::builder(Config::local().with_name("node-2"))
//!     .seeds([a.local_id().addr])
//!     .initial_state("region", "eu-west")
//!     .start(Quic::bind(any, tls("node-2")?).await?)
//!     .await?;
//! while a.get("node-2", "region").await?.is_none() {
//!     tokio::time::sleep(Duration::from_millis(10)).await;
//! }
//! a.shutdown().await;
//! b.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # A custom transport
//!
//! Anything that moves whole datagrams can carry the cluster. This one is an
//! in-process bus of channels; `transport::conformance` (feature `testing`)
//! checks an implementation against everything the trait promises.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::collections::HashMap;
//! use std::net::SocketAddr;
//! use std::sync::{Arc, Mutex};
//! use std::time::Duration;
//! use bytes::Bytes;
//! use scuttlewire::transport::{Transport, TransportError};
//! use scuttlewire::{Config, Node};
//! use tokio::sync::mpsc;
//!
//! type Inboxes = Arc<Mutex<HashMap<SocketAddr, mpsc::Sender<(SocketAddr, Bytes)>>>>;
//!
//! struct Bus {
//!     addr: SocketAddr,
//!     inboxes: Inboxes,
//!     inbox: tokio::sync::Mutex<mpsc::Receiver<(SocketAddr, Bytes)>>,
//! }
//!
//! impl Bus {
//!     fn attach(inboxes: &Inboxes, host: u8) -> Bus {
//!         let addr = SocketAddr::from(([10, 0, 0, host], 7946));
//!         let (tx, rx) = mpsc::channel(1024);
//!         inboxes.lock().unwrap().insert(addr, tx);
//!         Bus { addr, inboxes: inboxes.clone(), inbox: tokio::sync::Mutex::new(rx) }
//!     }
//! }
//!
//! impl Transport for Bus {
//!     async fn send(&self, to: SocketAddr, payload: Bytes) -> Result<(), TransportError> {
//!         if payload.len() > self.max_payload() {
//!             return Err(TransportError::TooLarge { len: payload.len(), max: self.max_payload() });
//!         }
//!         let peer = self.inboxes.lock().unwrap().get(&to).cloned();
//!         if let Some(peer) = peer {
//!             let _ = peer.try_send((self.addr, payload)); // full or gone: dropped, like UDP
//!         }
//!         Ok(())
//!     }
//!     async fn recv(&self) -> Result<(SocketAddr, Bytes), TransportError> {
//!         self.inbox.lock().await.recv().await.ok_or(TransportError::Closed)
//!     }
//!     fn max_payload(&self) -> usize {
//!         1_400
//!     }
//!     fn local_addr(&self) -> SocketAddr {
//!         self.addr
//!     }
//! }
//!
//! let inboxes = Inboxes::default();
//! let a = Node::builder(Config::local().with_name("a")).start(Bus::attach(&inboxes, 1)).await?;
//! let b = Node::builder(Config::local().with_name("b"))
//!     .seeds([a.local_id().addr])
//!     .start(Bus::attach(&inboxes, 2))
//!     .await?;
//! b.set("hello", "bus").await?;
//! while a.get("b", "hello").await?.is_none() {
//!     tokio::time::sleep(Duration::from_millis(10)).await;
//! }
//! a.shutdown().await;
//! b.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! * `wire` (internal) — the protobuf contract (`proto/`), a decoder with
//!   size caps, and the `Packer` that fills one packet to a byte budget.
//! * [`engine`] — the sans-IO protocol state machine: membership table,
//!   versioned state, digests, deltas, pushes, SWIM probes, suspicion,
//!   rumors, timers. No I/O, no clock reads.
//! * [`seal`] — AEAD framing, keyring and replay window for encrypted
//!   transports. Pure, no sockets. Public: the keys, the keyring and the
//!   cipher choice; the framing is internal.
//! * [`transport`] — the [`Transport`](transport::Transport) trait and its
//!   implementations: UDP, encrypted decorator, QUIC, in-memory, chaos.
//! * [`node`] — the tokio driver and the public [`Node`] handle.
//! * [`config`] — [`Config`] with presets and validation.
//! * `sim` (feature `sim`) — a deterministic N-node simulator over the
//!   engine: virtual clock, seeded RNG, latency, loss, partitions.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod config;
pub mod engine;
pub mod identity;
pub mod node;
pub mod seal;
#[cfg(feature = "sim")]
pub mod sim;
pub mod transport;
mod wire;

/// Largest datagram any transport may carry, and so the largest packet the
/// decoder looks at (the IPv4 UDP payload limit). Receivers treat anything
/// larger as hostile and drop it.
pub const MAX_DATAGRAM: usize = 65_507;

pub use config::{Config, ConfigError, Signatures};
pub use engine::{BroadcastError, Engine, Event, Member, MemberStatus, NodeId, SetError};
pub use node::{Entries, Lagged, Node, NodeBuilder, NodeError};

/// Internals that the fuzz targets (`fuzz/`), the benches and the
/// wire-level tests drive directly. Not part of the API: no stability
/// promise, may change in any release.
#[doc(hidden)]
pub mod __private {
    /// The wire codec: the generated protobuf types, the capped decoder and
    /// the packer.
    pub mod wire {
        pub use crate::wire::{
            DecodeError, Limits, MAX_PACKET, PROTOCOL_VERSION, Packer, PackerError, cluster_id,
            decode, proto,
        };
    }

    /// The sealed frame under `transport::Encrypted`: sealer, opener and
    /// their errors.
    pub mod seal {
        pub use crate::seal::frame::{OpenError, Opener, SealError, Sealer, first_byte};
    }
}
