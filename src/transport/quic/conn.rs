//! The connection cache of [`Quic`](super::Quic) and the tasks behind it.
//!
//! Each peer address maps to a [`Peer`]: the live connections to it
//! (newest first; the newest carries what we send), an optional dial in
//! progress with a bounded queue, and a back-off after a failed dial.
//!
//! Three kinds of task run per transport, all ending when the transport
//! closes (the `stop` signal, or the endpoint closing under them):
//!
//! * the **accept loop**, which hands each incoming connection to a
//!   handshake task, at most `max_handshakes` at a time;
//! * one **dialer** per peer being connected to, which owns the queue of
//!   datagrams waiting for the handshake, flushes it on success, drops it
//!   (counted) on failure, and ends;
//! * one **reader** per established connection, which feeds its datagrams
//!   into the transport's inbox (with `node_name` set, only those whose
//!   claimed sender is on the connection's certificate: see `binding`) and
//!   closes the connection when it has carried no gossip either way for
//!   `linger`.
//!
//! `send` itself never awaits: it hands a datagram to a live connection
//! (quinn queues it), or to the dialer's queue. A slow or dead peer costs
//! a full queue of its own, never a stalled send to the others. Both
//! queues are dropped when the endpoint closes, so a graceful close first
//! waits for them to drain ([`Shared::flush`]).

// Dial back-off and connection ages are transport-side: the transport reads the clock.
#![allow(clippy::disallowed_methods)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use quinn::{Connection, ConnectionError, Endpoint, Incoming, SendDatagramError, VarInt};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::Instant;

use super::binding::NameBinding;
use super::{QUIC_ALPN, QuicStats};
use crate::transport::TransportError;

/// Application close code: the connection carried nothing for `linger`.
pub(super) const CLOSE_IDLE: u32 = 1;
/// Application close code: the transport was closed or dropped.
pub(super) const CLOSE_SHUTDOWN: u32 = 2;
/// Application close code: closed on request ([`Quic::disconnect`](super::QuicHandle::disconnect)).
pub(super) const CLOSE_REQUESTED: u32 = 3;
/// Application close code: the peer did not negotiate [`QUIC_ALPN`].
const CLOSE_BAD_ALPN: u32 = 4;

/// First back-off after a failed dial; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// Longest back-off after repeated failed dials.
const MAX_BACKOFF: Duration = Duration::from_secs(8);
/// How often [`Shared::flush`] looks whether the queues have drained.
const FLUSH_POLL: Duration = Duration::from_millis(2);
/// At most one refused handshake or forged sender name a second is logged
/// at `warn`; the rest at `debug`, so a scanner cannot flood the logs.
const WARN_EVERY_MS: u64 = 1_000;

/// Settings the tasks need, copied out of [`super::QuicConfig`].
pub(super) struct Settings {
    pub(super) server_name: String,
    pub(super) connect_timeout: Duration,
    pub(super) linger: Duration,
    pub(super) queue_len: usize,
    /// Whether each datagram's claimed sender name must be on the
    /// certificate of its connection (`node_name` is set).
    pub(super) bind_names: bool,
}

/// Everything the transport and its tasks share.
pub(super) struct Shared {
    pub(super) endpoint: Endpoint,
    pub(super) settings: Settings,
    pub(super) inbox: mpsc::Sender<(SocketAddr, Bytes)>,
    pub(super) stop: watch::Sender<bool>,
    pub(super) handshakes: Arc<Semaphore>,
    pub(super) counters: Arc<Counters>,
    peers: Mutex<HashMap<SocketAddr, Peer>>,
    epoch: Instant,
    last_warn_ms: AtomicU64,
}

/// What is known about one peer address.
#[derive(Default)]
struct Peer {
    /// Live connections, newest first; `links[0]` carries our datagrams.
    links: Vec<Arc<Link>>,
    /// The queue of a dial in progress.
    dialing: Option<mpsc::Sender<Bytes>>,
    /// A recent failed dial: sends fail fast until `until`.
    failed: Option<Failure>,
}

struct Failure {
    until: Instant,
    delay: Duration,
    reason: String,
}

/// One established connection and when it last carried a datagram.
pub(super) struct Link {
    pub(super) conn: Connection,
    last_used_ms: AtomicU64,
    /// quinn's datagram send-buffer space while nothing is queued (taken
    /// at adoption, before our first datagram): more queued means less.
    empty_space: usize,
}

/// The counters behind [`QuicStats`].
#[derive(Default)]
pub(super) struct Counters {
    dialed: AtomicU64,
    accepted: AtomicU64,
    dial_failures: AtomicU64,
    handshakes_refused: AtomicU64,
    handshakes_shed: AtomicU64,
    sent: AtomicU64,
    received: AtomicU64,
    dropped_queue_full: AtomicU64,
    dropped_unreachable: AtomicU64,
    too_large: AtomicU64,
    idle_closed: AtomicU64,
    name_mismatch: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    pub(super) fn snapshot(&self) -> QuicStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        QuicStats {
            connections_dialed: get(&self.dialed),
            connections_accepted: get(&self.accepted),
            dial_failures: get(&self.dial_failures),
            handshakes_refused: get(&self.handshakes_refused),
            handshakes_shed: get(&self.handshakes_shed),
            datagrams_sent: get(&self.sent),
            datagrams_received: get(&self.received),
            dropped_queue_full: get(&self.dropped_queue_full),
            dropped_unreachable: get(&self.dropped_unreachable),
            refused_too_large: get(&self.too_large),
            idle_closed: get(&self.idle_closed),
            dropped_name_mismatch: get(&self.name_mismatch),
        }
    }
}

/// Reports an IPv4-mapped IPv6 address as the IPv4 address it stands for,
/// so a peer has one cache entry whichever socket family sees it.
pub(super) fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

impl Shared {
    pub(super) fn new(
        endpoint: Endpoint,
        settings: Settings,
        inbox: mpsc::Sender<(SocketAddr, Bytes)>,
        max_handshakes: usize,
    ) -> Shared {
        Shared {
            endpoint,
            settings,
            inbox,
            stop: watch::Sender::new(false),
            handshakes: Arc::new(Semaphore::new(max_handshakes)),
            counters: Arc::default(),
            peers: Mutex::new(HashMap::new()),
            epoch: Instant::now(),
            last_warn_ms: AtomicU64::new(0),
        }
    }

    fn peers(&self) -> MutexGuard<'_, HashMap<SocketAddr, Peer>> {
        // The map stays consistent under every early return, so a panic
        // elsewhere while it was held leaves nothing half-done.
        self.peers.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    pub(super) fn is_stopped(&self) -> bool {
        *self.stop.borrow()
    }

    /// Sends one datagram, never waiting on the peer: over the newest live
    /// connection, else into the queue of a dial (started if none runs).
    pub(super) fn send(
        self: &Arc<Self>,
        to: SocketAddr,
        payload: Bytes,
    ) -> Result<(), TransportError> {
        let to = canonical(to);
        let mut peers = self.peers();
        let peer = peers.entry(to).or_default();
        peer.links.retain(|l| l.conn.close_reason().is_none());
        if let Some(link) = peer.links.first().cloned() {
            drop(peers);
            return match self.send_on(&link, payload.clone()) {
                // Lost between the check and the send: dial afresh.
                Err(SendDatagramError::ConnectionLost(_)) => {
                    self.forget(&link);
                    self.send(to, payload)
                }
                other => other.map_err(|e| self.send_error(to, payload.len(), e, &link)),
            };
        }
        if let Some(failed) = &peer.failed {
            if Instant::now() < failed.until {
                bump(&self.counters.dropped_unreachable);
                return Err(TransportError::Unreachable {
                    addr: to,
                    reason: failed.reason.clone(),
                });
            }
        }
        if let Some(queue) = &peer.dialing {
            return match queue.try_send(payload) {
                Ok(()) => Ok(()),
                // The dialer retires under this lock, so a queue in the map
                // is always read; full is the only failure left.
                Err(_) => {
                    bump(&self.counters.dropped_queue_full);
                    Err(TransportError::Unreachable {
                        addr: to,
                        reason: format!(
                            "still connecting; {} datagrams already queued, this one dropped",
                            self.settings.queue_len
                        ),
                    })
                }
            };
        }
        let (queue, rx) = mpsc::channel(self.settings.queue_len);
        // A fresh queue with capacity >= 1 has room.
        let _ = queue.try_send(payload);
        peer.dialing = Some(queue);
        drop(peers);
        tokio::spawn(dial(Arc::clone(self), to, rx));
        Ok(())
    }

    fn send_on(&self, link: &Link, payload: Bytes) -> Result<(), SendDatagramError> {
        match link.conn.max_datagram_size() {
            None => return Err(SendDatagramError::UnsupportedByPeer),
            Some(max) if payload.len() > max => return Err(SendDatagramError::TooLarge),
            Some(_) => {}
        }
        link.conn.send_datagram(payload)?;
        link.touch(self.now_ms());
        bump(&self.counters.sent);
        Ok(())
    }

    fn send_error(
        &self,
        to: SocketAddr,
        len: usize,
        e: SendDatagramError,
        link: &Link,
    ) -> TransportError {
        match e {
            SendDatagramError::TooLarge => {
                bump(&self.counters.too_large);
                TransportError::TooLarge {
                    len,
                    max: link.conn.max_datagram_size().unwrap_or(0),
                }
            }
            e => {
                bump(&self.counters.dropped_unreachable);
                TransportError::Unreachable {
                    addr: to,
                    reason: e.to_string(),
                }
            }
        }
    }

    /// Takes an established connection into the cache (as the newest, so
    /// a restarted peer's fresh connection wins over a stale one) and
    /// starts its reader.
    fn adopt(self: &Arc<Self>, conn: Connection) -> Arc<Link> {
        let addr = canonical(conn.remote_address());
        let link = Arc::new(Link {
            empty_space: conn.datagram_send_buffer_space(),
            conn,
            last_used_ms: AtomicU64::new(self.now_ms()),
        });
        {
            let mut peers = self.peers();
            let peer = peers.entry(addr).or_default();
            peer.links.retain(|l| l.conn.close_reason().is_none());
            peer.links.insert(0, Arc::clone(&link));
            peer.failed = None;
        }
        tokio::spawn(read(Arc::clone(self), Arc::clone(&link)));
        link
    }

    /// Makes sends to `addr` fail fast for a while (doubling on repeated
    /// failures) instead of dialling again at once.
    fn back_off(&self, addr: SocketAddr, reason: String) {
        let mut peers = self.peers();
        let peer = peers.entry(addr).or_default();
        let delay = peer
            .failed
            .as_ref()
            .map_or(FIRST_BACKOFF, |f| (f.delay * 2).min(MAX_BACKOFF));
        peer.failed = Some(Failure {
            until: Instant::now() + delay,
            delay,
            reason,
        });
    }

    /// Drops `link` from the cache, and the peer entry if nothing is left.
    fn forget(&self, link: &Arc<Link>) {
        let addr = canonical(link.conn.remote_address());
        let mut peers = self.peers();
        if let Some(peer) = peers.get_mut(&addr) {
            peer.links.retain(|l| !Arc::ptr_eq(l, link));
            if peer.links.is_empty() && peer.dialing.is_none() && peer.failed.is_none() {
                peers.remove(&addr);
            }
        }
    }

    /// Waits until every datagram `send` accepted has gone out, at most
    /// `wait`: each dial in progress has ended (flushing its queue into its
    /// new connection, or dropping it on failure), and quinn has packed
    /// every datagram queued on a live connection into packets and handed
    /// them to the socket. quinn has no signal for an emptied datagram
    /// queue, so this polls. Returns at once if the transport is already
    /// closed. A link to a dead peer whose congestion window is full, or a
    /// dial that hangs, holds it to `wait`.
    pub(super) async fn flush(&self, wait: Duration) {
        let deadline = Instant::now() + wait;
        while !self.is_stopped() && self.pending() {
            if Instant::now() >= deadline {
                tracing::debug!(?wait, "QUIC close: datagrams still queued, dropped");
                return;
            }
            tokio::time::sleep(FLUSH_POLL).await;
        }
    }

    /// Whether a dial is in progress or a live connection still holds
    /// datagrams quinn has not sent.
    fn pending(&self) -> bool {
        self.peers().values().any(|peer| {
            peer.dialing.is_some()
                || peer.links.iter().any(|l| {
                    l.conn.close_reason().is_none()
                        && l.conn.datagram_send_buffer_space() < l.empty_space
                })
        })
    }

    /// Closes every connection to `addr`; the next send dials afresh.
    pub(super) fn disconnect(&self, addr: SocketAddr) -> usize {
        let links = self
            .peers()
            .get_mut(&canonical(addr))
            .map(|p| std::mem::take(&mut p.links))
            .unwrap_or_default();
        for link in &links {
            link.conn
                .close(VarInt::from_u32(CLOSE_REQUESTED), b"disconnect requested");
        }
        links.len()
    }

    /// The leaf certificate of the newest live connection to `addr`.
    pub(super) fn peer_certificate(
        &self,
        addr: SocketAddr,
    ) -> Option<rustls::pki_types::CertificateDer<'static>> {
        let link = self
            .peers()
            .get(&canonical(addr))?
            .links
            .iter()
            .find(|l| l.conn.close_reason().is_none())
            .cloned()?;
        leaf_certificate(&link.conn)
    }

    /// The datagram limit quinn reports on the newest connection to `addr`.
    #[cfg(test)]
    pub(super) fn max_datagram_size(&self, addr: SocketAddr) -> Option<usize> {
        self.peers()
            .get(&canonical(addr))?
            .links
            .first()?
            .conn
            .max_datagram_size()
    }

    /// Whether a warning may be logged now: at most one a second, shared
    /// by every kind this transport rate-limits.
    fn warn_due(&self) -> bool {
        let now = self.now_ms().max(WARN_EVERY_MS);
        let last = self.last_warn_ms.load(Ordering::Relaxed);
        now.saturating_sub(last) >= WARN_EVERY_MS
            && self
                .last_warn_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    /// Logs a refused handshake at `warn` at most once a second, else at
    /// `debug`.
    fn log_refused(&self, peer: SocketAddr, error: &dyn std::fmt::Display) {
        if self.warn_due() {
            tracing::warn!(%peer, %error, "QUIC handshake refused");
        } else {
            tracing::debug!(%peer, %error, "QUIC handshake refused");
        }
    }

    /// Logs a datagram dropped for a sender name not on its connection's
    /// certificate, at `warn` at most once a second, else at `debug`.
    fn log_forged(&self, peer: SocketAddr, claimed: &str) {
        // Up to a datagram's worth of the peer's bytes: logged shortened,
        // and escaped (`?`).
        let claimed: String = claimed.chars().take(64).collect();
        if self.warn_due() {
            tracing::warn!(
                %peer,
                claimed = ?claimed,
                "QUIC datagram dropped: its sender name is not on the peer's certificate"
            );
        } else {
            tracing::debug!(%peer, claimed = ?claimed, "QUIC datagram dropped: sender name not on certificate");
        }
    }
}

/// The leaf certificate `conn`'s peer presented in its handshake.
fn leaf_certificate(conn: &Connection) -> Option<rustls::pki_types::CertificateDer<'static>> {
    let identity = conn.peer_identity()?;
    let chain = identity
        .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
        .ok()?;
    chain.first().cloned()
}

impl Link {
    fn touch(&self, now_ms: u64) {
        self.last_used_ms.store(now_ms, Ordering::Relaxed);
    }
}

/// Resolves when the transport closes.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // An error means the sender is gone, which also means stop.
    let _ = stop.wait_for(|s| *s).await;
}

/// Checks that the handshake agreed on [`QUIC_ALPN`] (rustls refuses a
/// mismatch; this also refuses a peer that offered none).
fn check_alpn(conn: &Connection) -> Result<(), String> {
    let alpn = conn
        .handshake_data()
        .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|d| d.protocol);
    if alpn.as_deref() == Some(QUIC_ALPN) {
        Ok(())
    } else {
        conn.close(
            VarInt::from_u32(CLOSE_BAD_ALPN),
            b"ALPN scuttlewire/1 required",
        );
        Err("peer did not negotiate ALPN scuttlewire/1".to_owned())
    }
}

/// Dials `to`, then delivers or drops what queued up meanwhile, and ends.
async fn dial(shared: Arc<Shared>, to: SocketAddr, mut queue: mpsc::Receiver<Bytes>) {
    let mut stop = shared.stop.subscribe();
    let outcome = tokio::select! {
        r = connect(&shared, to) => r,
        () = stopped(&mut stop) => return,
    };
    let link = match outcome {
        Ok(conn) => {
            bump(&shared.counters.dialed);
            tracing::debug!(peer = %to, "QUIC connection established");
            Some(shared.adopt(conn))
        }
        Err(reason) => {
            bump(&shared.counters.dial_failures);
            tracing::debug!(peer = %to, error = %reason, "QUIC dial failed");
            shared.back_off(to, reason);
            None
        }
    };
    // Retire under the lock: from here on `send` starts a new dial rather
    // than filling a queue nobody reads.
    if let Some(peer) = shared.peers().get_mut(&to) {
        peer.dialing = None;
    }
    queue.close();
    while let Ok(payload) = queue.try_recv() {
        let Some(link) = &link else {
            bump(&shared.counters.dropped_unreachable);
            continue;
        };
        let len = payload.len();
        if let Err(e) = shared.send_on(link, payload) {
            let e = shared.send_error(to, len, e, link);
            tracing::debug!(peer = %to, error = %e, "queued datagram dropped");
        }
    }
}

async fn connect(shared: &Shared, to: SocketAddr) -> Result<Connection, String> {
    let connecting = shared
        .endpoint
        .connect(to, &shared.settings.server_name)
        .map_err(|e| e.to_string())?;
    let conn = tokio::time::timeout(shared.settings.connect_timeout, connecting)
        .await
        .map_err(|_| {
            format!(
                "handshake timed out after {:?}",
                shared.settings.connect_timeout
            )
        })?
        .map_err(|e| e.to_string())?;
    check_alpn(&conn)?;
    Ok(conn)
}

/// Accepts connections until the endpoint closes.
pub(super) async fn accept_loop(shared: Arc<Shared>) {
    let mut stop = shared.stop.subscribe();
    loop {
        let incoming = tokio::select! {
            i = shared.endpoint.accept() => match i {
                Some(i) => i,
                None => return,
            },
            () = stopped(&mut stop) => return,
        };
        match Arc::clone(&shared.handshakes).try_acquire_owned() {
            Ok(permit) => {
                tokio::spawn(handshake(Arc::clone(&shared), incoming, permit));
            }
            Err(_) => {
                bump(&shared.counters.handshakes_shed);
                tracing::debug!(peer = %incoming.remote_address(), "too many QUIC handshakes; refused");
                incoming.refuse();
            }
        }
    }
}

async fn handshake(
    shared: Arc<Shared>,
    incoming: Incoming,
    _permit: tokio::sync::OwnedSemaphorePermit,
) {
    let from = incoming.remote_address();
    let accepted = async {
        let conn = incoming.accept().map_err(|e| e.to_string())?.await;
        let conn = conn.map_err(|e: ConnectionError| e.to_string())?;
        check_alpn(&conn)?;
        Ok::<_, String>(conn)
    };
    let mut stop = shared.stop.subscribe();
    let outcome = tokio::select! {
        r = tokio::time::timeout(shared.settings.connect_timeout, accepted) => r,
        () = stopped(&mut stop) => return,
    };
    match outcome {
        Ok(Ok(conn)) => {
            bump(&shared.counters.accepted);
            tracing::debug!(peer = %from, "QUIC connection accepted");
            shared.adopt(conn);
        }
        Ok(Err(e)) => {
            bump(&shared.counters.handshakes_refused);
            shared.log_refused(from, &e);
        }
        Err(_) => {
            bump(&shared.counters.handshakes_refused);
            shared.log_refused(from, &"handshake timed out");
        }
    }
}

/// Feeds one connection's datagrams into the inbox until it closes;
/// closes it once it has carried nothing either way for `linger`.
async fn read(shared: Arc<Shared>, link: Arc<Link>) {
    let from = canonical(link.conn.remote_address());
    let mut stop = shared.stop.subscribe();
    let linger = shared.settings.linger;
    let mut binding = shared
        .settings
        .bind_names
        .then(|| NameBinding::new(leaf_certificate(&link.conn)));
    let mut tick = tokio::time::interval((linger / 4).max(Duration::from_millis(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            r = link.conn.read_datagram() => match r {
                Ok(bytes) => {
                    link.touch(shared.now_ms());
                    bump(&shared.counters.received);
                    if let Some(Err(claimed)) = binding.as_mut().map(|b| b.check(&bytes)) {
                        bump(&shared.counters.name_mismatch);
                        shared.log_forged(from, &claimed);
                        continue;
                    }
                    if shared.inbox.send((from, bytes)).await.is_err() {
                        break;
                    }
                }
                Err(ConnectionError::ConnectionClosed(close))
                    if (0x100..0x200).contains(&u64::from(close.error_code)) =>
                {
                    // A TLS alert: in TLS 1.3 the client finishes first, so
                    // a peer refusing *our* certificate shows up here, just
                    // after the dial "succeeded". Back off as for a failed
                    // dial rather than redialling on every send.
                    let reason = format!("peer refused the TLS handshake: {close}");
                    shared.log_refused(from, &reason);
                    shared.back_off(from, reason);
                    break;
                }
                Err(e) => {
                    tracing::debug!(peer = %from, reason = %e, "QUIC connection closed");
                    break;
                }
            },
            _ = tick.tick() => {
                let idle = shared.now_ms().saturating_sub(link.last_used_ms.load(Ordering::Relaxed));
                if Duration::from_millis(idle) >= linger {
                    bump(&shared.counters.idle_closed);
                    link.conn.close(VarInt::from_u32(CLOSE_IDLE), b"idle");
                }
            }
            () = stopped(&mut stop) => break,
        }
    }
    shared.forget(&link);
}
