//! Transports move datagrams: bytes and a [`SocketAddr`], nothing more.
//!
//! The engine never sees a socket. It asks the transport how large a datagram
//! may be ([`Transport::max_payload`]) and packs every packet under that
//! budget; the transport sends and receives those bytes. Decorators such as
//! the encrypted transport wrap another transport and report a smaller
//! budget, so the whole stack still never exceeds the wire MTU.
//!
//! Implementations here:
//!
//! * [`Udp`] — plain UDP, IPv4 and IPv6.
//! * [`Memory`] — an in-process network with per-link MTU, loss, partitions
//!   and counters, for tests and examples.
//! * [`Encrypted`] — a decorator that seals every datagram of another
//!   transport (AEAD, keyring, anti-replay; see [`crate::seal`]).
//! * [`Quic`] — datagrams over QUIC connections with mutual TLS.
//! * [`Chaos`] — a decorator that loses, delays, duplicates and reorders
//!   another transport's datagrams and cuts its links, controlled at run
//!   time, for fault-injection tests on real sockets.
//!
//! Your own transport plugs in the same way: implement [`Transport`] and
//! check it with the conformance suite (`conformance`, behind the
//! `testing` feature).

mod chaos;
#[cfg(any(test, feature = "testing"))]
pub mod conformance;
mod encrypted;
mod memory;
mod quic;
mod udp;

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use bytes::Bytes;

pub use chaos::{Chaos, ChaosConfig, ChaosControl, ChaosStats};
pub use encrypted::{Encrypted, EncryptedStats, EncryptionConfig, MAX_CLUSTER_LABEL};
pub use memory::{LinkStats, Memory, MemoryNetwork};
pub use quic::{QUIC_ALPN, Quic, QuicConfig, QuicHandle, QuicStats};
pub use udp::{Udp, UdpConfig};

pub use crate::MAX_DATAGRAM;

/// Errors a transport reports.
///
/// The driver treats [`TransportError::Io`], [`TransportError::TooLarge`] and
/// [`TransportError::Unreachable`] as transient: it counts them and carries on.
/// Only [`TransportError::Closed`] stops a node.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The payload is larger than [`Transport::max_payload`] (or the peer's
    /// current limit). Nothing was sent.
    #[error("payload of {len} bytes exceeds the transport limit of {max} bytes")]
    TooLarge {
        /// Size of the refused payload.
        len: usize,
        /// The limit that applies.
        max: usize,
    },
    /// The destination cannot be reached right now (no route, refused,
    /// handshake failed). Nothing was sent; a later send may succeed.
    #[error("peer {addr} unreachable: {reason}")]
    Unreachable {
        /// The destination.
        addr: SocketAddr,
        /// Why, for logs.
        reason: String,
    },
    /// The transport was closed; no further send or receive will succeed.
    #[error("transport closed")]
    Closed,
    /// An I/O error from the operating system, usually transient
    /// (e.g. `ECONNREFUSED` surfaced by a previous ICMP message).
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    /// A setup error: bad bind address, bad certificate, bad key.
    #[error("transport setup: {0}")]
    Setup(String),
}

impl TransportError {
    /// `Err(TooLarge)` if a payload of `len` bytes exceeds `max`: the check
    /// every `send` makes before anything leaves.
    pub fn check_len(len: usize, max: usize) -> Result<(), TransportError> {
        if len > max {
            return Err(TransportError::TooLarge { len, max });
        }
        Ok(())
    }

    /// Whether the node should keep running after this error.
    pub fn is_transient(&self) -> bool {
        !matches!(self, TransportError::Closed | TransportError::Setup(_))
    }
}

/// A datagram transport.
///
/// # What an implementation must guarantee
///
/// * **Datagram semantics.** One `send` of `n` bytes is delivered as one
///   `recv` of exactly those `n` bytes, or not at all. Loss, duplication and
///   reordering are allowed (the protocol tolerates them); truncation,
///   merging or splitting are not.
/// * **`max_payload`.** The largest payload `send` accepts. It must not
///   change while the transport is in use except to grow (for example after
///   path-MTU discovery); a decorator reports its inner transport's budget
///   minus its own overhead. `send` of a larger payload returns
///   [`TransportError::TooLarge`] and sends nothing.
/// * **Errors.** `send` and `recv` errors other than
///   [`TransportError::Closed`] are transient: the caller logs, counts and
///   calls again. A transient error must not make later calls fail.
/// * **No long blocking.** `send` may wait for local buffer space but must
///   not wait on a slow or dead peer; queue or drop instead, so one peer
///   never stalls gossip to the others.
/// * **Cancellation safety.** `recv` is used inside `tokio::select!`: if its
///   future is dropped before completing, no datagram may be lost.
/// * **Source addresses.** `recv` returns the address the peer can be
///   reached at with `send`.
pub trait Transport: Send + Sync + 'static {
    /// Sends one datagram to `to`.
    fn send(
        &self,
        to: SocketAddr,
        payload: Bytes,
    ) -> impl Future<Output = Result<(), TransportError>> + Send;

    /// Receives the next datagram and the address it came from.
    fn recv(&self) -> impl Future<Output = Result<(SocketAddr, Bytes), TransportError>> + Send;

    /// The largest payload `send` accepts, in bytes.
    fn max_payload(&self) -> usize;

    /// The address peers reach this transport at.
    fn local_addr(&self) -> SocketAddr;

    /// Flushes what `send` already accepted (waiting a bounded time, about
    /// a second at most) and releases the transport. The driver calls it
    /// once at most, when the node stops, so that a node's last words (a
    /// graceful leave) reach its peers. It gives the last sends and `close`
    /// five seconds in all, then drops `close`'s future (and does not call
    /// it if the sends took them all). After it, `send` and `recv` may fail
    /// with [`TransportError::Closed`].
    ///
    /// The default does nothing: right for a transport whose `send` hands
    /// each datagram to the kernel (or the receiver) before it returns,
    /// such as [`Udp`] and [`Memory`]. A transport that queues datagrams
    /// for a background task must wait for that queue here, and a
    /// decorator must forward the call to the transport it wraps.
    fn close(&self) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// Datagrams the operating system dropped before this transport could
    /// receive them (its socket's receive buffer was full), since the
    /// socket was opened; `None` when the platform does not tell. A
    /// growing count means the node cannot keep up with what it is sent:
    /// the driver logs it (rate-limited) and reports it in
    /// [`NodeMetrics`](crate::node::NodeMetrics).
    ///
    /// [`Udp`] reads it on Linux (the `drops` column of its socket's row
    /// in `/proc/net/udp`); the default says `None`. A decorator forwards
    /// the call to the transport it wraps.
    fn os_receive_drops(&self) -> Option<u64> {
        None
    }
}
