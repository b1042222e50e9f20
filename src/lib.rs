//! # scuttlewire
//!
//! Cluster membership and state dissemination by gossip, secure by default,
//! over pluggable transports.
//!
//! Every node holds versioned key-value state; Scuttlebutt anti-entropy
//! (digest / delta) spreads it to every member. Messages are Protobuf,
//! packed into datagrams that never exceed the transport's budget, and
//! travel over any [`Transport`](transport::Transport).
//!
//! # Layout
//!
//! * [`wire`] — the protobuf contract (`proto/`), a decoder with size caps,
//!   and the [`Packer`](wire::Packer) that fills one packet to a byte budget.
//! * [`engine`] — the sans-IO protocol state machine: membership table,
//!   versioned state, digests, deltas, timers. No I/O, no clock reads.
//! * [`seal`] — AEAD framing, keyring and replay window for encrypted
//!   transports. Pure, no sockets.
//! * [`transport`] — the [`Transport`](transport::Transport) trait and its
//!   implementations: UDP, in-memory, encrypted decorators.
//! * [`node`] — the tokio driver and the public [`Node`] handle.
//! * [`config`] — [`Config`] with presets and validation.
//! * `sim` (feature `sim`) — a deterministic N-node simulator over the
//!   engine: virtual clock, seeded RNG, latency, loss, partitions.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod config;
pub mod engine;
pub mod node;
pub mod seal;
#[cfg(feature = "sim")]
pub mod sim;
pub mod transport;
pub mod wire;

pub use config::{Config, ConfigError};
pub use engine::{BroadcastError, Engine, Event, Member, MemberStatus, NodeId, SetError};
pub use node::{Node, NodeBuilder, NodeError};
