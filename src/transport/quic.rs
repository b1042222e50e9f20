//! [`Quic`]: gossip datagrams as QUIC DATAGRAM frames (RFC 9221) over
//! mutually authenticated TLS 1.3, with quinn and rustls (ring only).
//!
//! One quinn endpoint per node both serves and dials, so the address a
//! peer's connection comes from is the address it listens at, and `recv`
//! can report it as the reply address. Datagrams keep UDP's semantics —
//! whole, possibly lost, never retransmitted — while QUIC adds the
//! handshake, encryption, congestion control and keep-alives.
//!
//! # Trust
//!
//! Every node presents a certificate chained to the cluster CA and
//! verifies the other side's: a peer with no certificate, a self-signed
//! one, one from another CA or an expired one fails the handshake, and no
//! datagram of a connection is read before its handshake has succeeded.
//! ALPN is [`QUIC_ALPN`]; 0-RTT is off. See `certs/README.md` for making
//! certificates.
//!
//! A certificate from the cluster CA makes its holder a member, but not
//! any member it likes: with [`QuicConfig::node_name`] set, each node's
//! certificate names the node, and a datagram whose packet claims a sender
//! name (`Packet.from.name`) that is not a subject alternative name of the
//! certificate of the connection it came on is dropped before the node
//! sees it, and counted ([`QuicStats::dropped_name_mismatch`]).
//!
//! # Budget
//!
//! [`Transport::max_payload`] is fixed at [`QuicConfig::max_payload`],
//! default [`QuicConfig::DEFAULT_MAX_PAYLOAD`] = 1,150 bytes: what a
//! DATAGRAM frame can carry in a 1,200-byte QUIC packet (QUIC's minimum
//! and our initial MTU) even with the longest (20-byte) connection IDs.
//! quinn itself reports 1,162 with its 8-byte IDs. Path-MTU discovery may
//! later allow more on a connection, but the engine packs once, under the
//! one budget every connection is guaranteed to carry. Should a
//! connection ever offer less, `send` refuses the payload with
//! [`TransportError::TooLarge`] naming that connection's limit — it never
//! truncates or silently drops it — and the engine packs smaller packets
//! under a smaller [`QuicConfig::max_payload`].
//!
//! # Connections
//!
//! One connection per peer address, dialled on the first send (or taken
//! from the peer's own dial) and again after a loss, closed after
//! [`QuicConfig::linger`] without traffic; keep-alives every
//! [`QuicConfig::keep_alive`] under the [`QuicConfig::idle_timeout`] that
//! declares a silent peer dead.

mod binding;
mod conn;
mod tls;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{Endpoint, IdleTimeout, VarInt};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::sync::mpsc;

use super::{Transport, TransportError};
use conn::{CLOSE_SHUTDOWN, Settings, Shared};

/// The ALPN protocol id every connection must negotiate.
pub const QUIC_ALPN: &[u8] = b"scuttlewire/1";

/// SNI sent when [`QuicConfig::server_name`] is unset. Any valid name
/// does: without a configured name only the chain is checked.
const DEFAULT_SNI: &str = "scuttlewire";

/// Bytes of a 1,200-byte QUIC packet not available to a datagram: short
/// header (1), a connection ID of up to 20, packet number (up to 4),
/// AEAD tag (16), DATAGRAM frame type and length (up to 9).
const PACKET_OVERHEAD: usize = 50;

/// Datagram send and receive buffer per connection, in bytes.
const DATAGRAM_BUFFER: usize = 1 << 20;

/// Datagrams received but not yet taken by `recv`, across all peers.
const INBOX: usize = 4_096;

/// Longest wait in [`Transport::close`] for queued datagrams to go out.
const FLUSH_WAIT: Duration = Duration::from_secs(1);

/// Longest wait after closing the endpoint for the close to reach peers.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// Settings of a [`Quic`] transport: the node's credentials and the
/// connection timings. Build it with [`QuicConfig::from_pem_files`],
/// [`QuicConfig::from_pem`] or [`QuicConfig::new`], then adjust fields.
#[derive(Debug)]
pub struct QuicConfig {
    /// The cluster CA certificate(s): the only trust anchors. At least one.
    pub ca: Vec<CertificateDer<'static>>,
    /// This node's certificate, then any intermediates, leaf first.
    pub cert_chain: Vec<CertificateDer<'static>>,
    /// The private key of the leaf certificate.
    pub key: PrivateKeyDer<'static>,
    /// If set, every dialled peer's certificate must carry this name (DNS
    /// name or IP address) as a subject alternative name. Default `None`:
    /// a chain to the cluster CA is what makes a peer a member, since
    /// peers are dialled by address, not by name.
    pub server_name: Option<String>,
    /// This node's gossip name (`Config::name`), which its own certificate
    /// must carry as a subject alternative name (checked by
    /// [`QuicConfig::validate`]). Setting it also binds every peer's
    /// name to its certificate: a received datagram whose packet names its
    /// sender (`Packet.from.name`) by a name that is not a subject
    /// alternative name of the certificate of the connection it came on is
    /// dropped and counted in [`QuicStats::dropped_name_mismatch`], so a
    /// holder of node-3's certificate cannot speak as node-1. Set it only
    /// once every member's certificate carries that member's gossip name
    /// (`gen_certs` always includes it), and to the same name as the
    /// node's `Config::name`: peers that check drop every packet of a node
    /// whose gossip name is not on its certificate. Default `None`: no
    /// name is checked, and any certificate from the cluster CA may claim
    /// any name.
    ///
    /// Only the sender field of a packet is checked. Datagrams that name
    /// no sender pass to the node: bytes that are not a packet (the node
    /// drops and counts them), and compact headers, which name the sender
    /// by the key of a member the node already holds (so cannot introduce
    /// a member or a new generation of one). What a packet says about
    /// *other* members (rumors, relayed state) is not bound to any
    /// certificate; see `docs/SECURITY.md`.
    pub node_name: Option<String>,
    /// The budget the engine packs under, in bytes: fixed for the life of
    /// the transport. Range 64..=`initial_mtu - 50`; default
    /// [`QuicConfig::DEFAULT_MAX_PAYLOAD`] (1,150).
    pub max_payload: usize,
    /// The QUIC packet size assumed before path-MTU discovery, in bytes.
    /// At least 1,200 (QUIC's minimum); default 1,200. Raise it only on
    /// paths known to carry larger UDP datagrams.
    pub initial_mtu: u16,
    /// A connection on which nothing at all arrives (keep-alives
    /// included) for this long is dead. Default 30 s.
    pub idle_timeout: Duration,
    /// Keep-alive interval on idle connections; must be below
    /// `idle_timeout`. Default 10 s.
    pub keep_alive: Duration,
    /// A connection that carried no gossip datagram in either direction
    /// for this long is closed (keep-alives do not count). At least
    /// 100 ms; default 120 s.
    pub linger: Duration,
    /// Longest wait for a handshake, dialling or accepting. Default 5 s.
    pub connect_timeout: Duration,
    /// Datagrams queued per peer while its connection is being set up;
    /// more are dropped and counted. At least 1; default 64.
    pub queue_len: usize,
    /// Incoming handshakes in progress at once; more are refused. At
    /// least 1; default 64.
    pub max_handshakes: usize,
}

impl Clone for QuicConfig {
    fn clone(&self) -> QuicConfig {
        QuicConfig {
            ca: self.ca.clone(),
            cert_chain: self.cert_chain.clone(),
            key: self.key.clone_key(),
            server_name: self.server_name.clone(),
            node_name: self.node_name.clone(),
            max_payload: self.max_payload,
            initial_mtu: self.initial_mtu,
            idle_timeout: self.idle_timeout,
            keep_alive: self.keep_alive,
            linger: self.linger,
            connect_timeout: self.connect_timeout,
            queue_len: self.queue_len,
            max_handshakes: self.max_handshakes,
        }
    }
}

impl QuicConfig {
    /// Default of [`QuicConfig::max_payload`], in bytes.
    pub const DEFAULT_MAX_PAYLOAD: usize = 1_200 - PACKET_OVERHEAD;

    /// A configuration with default timings from DER-encoded credentials.
    pub fn new(
        ca: Vec<CertificateDer<'static>>,
        cert_chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> QuicConfig {
        QuicConfig {
            ca,
            cert_chain,
            key,
            server_name: None,
            node_name: None,
            max_payload: Self::DEFAULT_MAX_PAYLOAD,
            initial_mtu: 1_200,
            idle_timeout: Duration::from_secs(30),
            keep_alive: Duration::from_secs(10),
            linger: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(5),
            queue_len: 64,
            max_handshakes: 64,
        }
    }

    /// Loads the CA certificate(s), the node certificate chain and its key
    /// from PEM files. A missing or malformed file gives
    /// [`TransportError::Setup`] naming the file.
    pub fn from_pem_files(
        ca: impl AsRef<Path>,
        cert_chain: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<QuicConfig, TransportError> {
        let (ca, cert_chain, key) = (ca.as_ref(), cert_chain.as_ref(), key.as_ref());
        let named = |what: &str, path: &Path| format!("{what} {}", path.display());
        Ok(QuicConfig::new(
            tls::parse_certs(
                &tls::read_pem(ca, "QUIC CA certificate file")?,
                &named("QUIC CA certificate file", ca),
            )?,
            tls::parse_certs(
                &tls::read_pem(cert_chain, "QUIC node certificate file")?,
                &named("QUIC node certificate file", cert_chain),
            )?,
            tls::parse_key(
                &tls::read_pem(key, "QUIC private key file")?,
                &named("QUIC private key file", key),
            )?,
        ))
    }

    /// Like [`QuicConfig::from_pem_files`], from PEM text in memory.
    pub fn from_pem(
        ca: &[u8],
        cert_chain: &[u8],
        key: &[u8],
    ) -> Result<QuicConfig, TransportError> {
        Ok(QuicConfig::new(
            tls::parse_certs(ca, "QUIC CA certificate PEM")?,
            tls::parse_certs(cert_chain, "QUIC node certificate PEM")?,
            tls::parse_key(key, "QUIC private key PEM")?,
        ))
    }

    /// Whether this node's certificate carries `name` (a DNS name or an IP
    /// address) as a subject alternative name, as [`QuicConfig::node_name`]
    /// requires.
    pub fn certificate_names(&self, name: &str) -> bool {
        self.cert_chain
            .first()
            .is_some_and(|c| tls::covers_name(c, name))
    }

    /// Checks every field; the error names the field and its valid range.
    pub fn validate(&self) -> Result<(), TransportError> {
        let fail = |msg: String| Err(TransportError::Setup(format!("QuicConfig.{msg}")));
        let max = usize::from(self.initial_mtu).saturating_sub(PACKET_OVERHEAD);
        if self.ca.is_empty() {
            return fail("ca holds no CA certificate".to_owned());
        }
        if self.cert_chain.is_empty() {
            return fail("cert_chain holds no certificate".to_owned());
        }
        if self.initial_mtu < 1_200 {
            return fail(format!(
                "initial_mtu is {}, must be at least 1200",
                self.initial_mtu
            ));
        }
        if !(64..=max).contains(&self.max_payload) {
            return fail(format!(
                "max_payload is {} bytes, must be in 64..={max} (initial_mtu - {PACKET_OVERHEAD})",
                self.max_payload
            ));
        }
        if self.keep_alive.is_zero() || self.keep_alive >= self.idle_timeout {
            return fail(format!(
                "keep_alive is {:?}, must be above zero and below idle_timeout ({:?})",
                self.keep_alive, self.idle_timeout
            ));
        }
        if IdleTimeout::try_from(self.idle_timeout).is_err() {
            return fail(format!(
                "idle_timeout of {:?} is too long",
                self.idle_timeout
            ));
        }
        if self.linger < Duration::from_millis(100) {
            return fail(format!(
                "linger is {:?}, must be at least 100 ms",
                self.linger
            ));
        }
        if self.connect_timeout.is_zero() {
            return fail("connect_timeout must be above zero".to_owned());
        }
        if self.queue_len == 0 || self.max_handshakes == 0 {
            return fail("queue_len and max_handshakes must be at least 1".to_owned());
        }
        if let Some(name) = &self.server_name {
            if ServerName::try_from(name.as_str()).is_err() {
                return fail(format!(
                    "server_name {name:?} is not a DNS name or IP address"
                ));
            }
        }
        if let Some(name) = &self.node_name {
            let covered = self
                .cert_chain
                .first()
                .is_some_and(|c| tls::covers_name(c, name));
            if !covered {
                return fail(format!(
                    "node_name {name:?} is not a subject alternative name of the node certificate"
                ));
            }
        }
        Ok(())
    }

    fn transport_config(&self) -> Result<quinn::TransportConfig, TransportError> {
        let idle = IdleTimeout::try_from(self.idle_timeout)
            .map_err(|e| TransportError::Setup(format!("QuicConfig.idle_timeout: {e}")))?;
        let mut t = quinn::TransportConfig::default();
        t.max_idle_timeout(Some(idle))
            .keep_alive_interval(Some(self.keep_alive))
            .initial_mtu(self.initial_mtu)
            .datagram_receive_buffer_size(Some(DATAGRAM_BUFFER))
            .datagram_send_buffer_size(DATAGRAM_BUFFER)
            // Gossip uses datagrams only: no streams to open or abuse.
            .max_concurrent_bidi_streams(VarInt::from_u32(0))
            .max_concurrent_uni_streams(VarInt::from_u32(0));
        Ok(t)
    }
}

/// Counters of a [`Quic`] transport since it was bound.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QuicStats {
    /// Connections this node dialled that completed the handshake.
    pub connections_dialed: u64,
    /// Incoming connections that completed the handshake.
    pub connections_accepted: u64,
    /// Dials that failed (refused, timed out, bad certificate either way).
    pub dial_failures: u64,
    /// Incoming handshakes refused (no, untrusted or expired client
    /// certificate, wrong ALPN, timeout).
    pub handshakes_refused: u64,
    /// Incoming handshakes refused because `max_handshakes` were running.
    pub handshakes_shed: u64,
    /// Datagrams handed to quinn for sending.
    pub datagrams_sent: u64,
    /// Datagrams received from authenticated peers.
    pub datagrams_received: u64,
    /// Datagrams dropped because the peer's queue was full while dialling.
    pub dropped_queue_full: u64,
    /// Datagrams dropped because the peer could not be reached.
    pub dropped_unreachable: u64,
    /// Payloads refused because a connection's datagram limit was smaller.
    pub refused_too_large: u64,
    /// Connections closed after `linger` without traffic.
    pub idle_closed: u64,
    /// Datagrams received (and counted in `datagrams_received`) but
    /// dropped because the sender name their packet claims is not a
    /// subject alternative name of the certificate of the connection they
    /// came on. Only with [`QuicConfig::node_name`] set; a growing count
    /// means a holder of a cluster certificate is speaking in another
    /// member's name (or a node's gossip name is missing from its
    /// certificate). Logged at `warn`, at most once a second.
    pub dropped_name_mismatch: u64,
}

/// A [`Transport`] over one QUIC endpoint that serves and dials, carrying
/// each payload as one QUIC DATAGRAM frame over mutually authenticated TLS.
///
/// [`Transport::close`] (which the node calls when it stops) first lets
/// the datagrams already accepted by `send` go out, then closes. Dropping
/// it or [`QuicHandle::close`] closes the endpoint and every connection at
/// once, discarding datagrams still queued, and stops its background tasks.
pub struct Quic {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    max_payload: usize,
    /// Locked only by `recv`; `mpsc::Receiver::recv` is cancellation safe.
    inbox: tokio::sync::Mutex<mpsc::Receiver<(SocketAddr, Bytes)>>,
}

impl std::fmt::Debug for Quic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Quic")
            .field("local_addr", &self.local_addr)
            .field("max_payload", &self.max_payload)
            .finish_non_exhaustive()
    }
}

impl Quic {
    /// Binds a QUIC endpoint at `addr` (port 0 lets the OS pick) that
    /// serves and dials with `config`. Fails with [`TransportError::Setup`]
    /// on an invalid config, unusable certificate or key, or bind failure.
    /// Must be called inside a tokio runtime.
    pub async fn bind(addr: SocketAddr, config: QuicConfig) -> Result<Quic, TransportError> {
        config.validate()?;
        let transport = Arc::new(config.transport_config()?);
        let setup = |what: &str, e: &dyn std::fmt::Display| {
            TransportError::Setup(format!("QUIC {what}: {e}"))
        };
        let server_tls = QuicServerConfig::try_from(tls::server_config(&config)?)
            .map_err(|e| setup("server TLS", &e))?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(server_tls));
        server.transport_config(Arc::clone(&transport));
        // A peer is known by the address it listens at; it does not move.
        server.migration(false);
        let client_tls = QuicClientConfig::try_from(tls::client_config(&config)?)
            .map_err(|e| setup("client TLS", &e))?;
        let mut client = quinn::ClientConfig::new(Arc::new(client_tls));
        client.transport_config(transport);

        let mut endpoint =
            Endpoint::server(server, addr).map_err(|e| setup(&format!("bind {addr}"), &e))?;
        endpoint.set_default_client_config(client);
        let local_addr = endpoint
            .local_addr()
            .map_err(|e| setup("local address", &e))?;
        let (inbox_tx, inbox_rx) = mpsc::channel(INBOX);
        let settings = Settings {
            server_name: config
                .server_name
                .clone()
                .unwrap_or_else(|| DEFAULT_SNI.to_owned()),
            connect_timeout: config.connect_timeout,
            linger: config.linger,
            queue_len: config.queue_len,
            bind_names: config.node_name.is_some(),
        };
        let shared = Arc::new(Shared::new(
            endpoint,
            settings,
            inbox_tx,
            config.max_handshakes,
        ));
        tokio::spawn(conn::accept_loop(Arc::clone(&shared)));
        Ok(Quic {
            shared,
            local_addr,
            max_payload: config.max_payload,
            inbox: tokio::sync::Mutex::new(inbox_rx),
        })
    }

    /// A handle for counters, certificates and connection control that
    /// stays usable after the transport moves into a node.
    pub fn handle(&self) -> QuicHandle {
        QuicHandle {
            shared: Arc::downgrade(&self.shared),
            counters: Arc::clone(&self.shared.counters),
        }
    }
}

impl Drop for Quic {
    fn drop(&mut self) {
        close(&self.shared);
    }
}

fn close(shared: &Shared) {
    shared.stop.send_replace(true);
    shared
        .endpoint
        .close(VarInt::from_u32(CLOSE_SHUTDOWN), b"shutting down");
}

/// Closes the endpoint now and waits (at most [`CLOSE_WAIT`]) for the
/// close to reach the peers. Holds the endpoint, not `shared`, while it
/// waits.
async fn close_and_wait(shared: Arc<Shared>) {
    close(&shared);
    let endpoint = shared.endpoint.clone();
    drop(shared);
    let _ = tokio::time::timeout(CLOSE_WAIT, endpoint.wait_idle()).await;
}

/// A cheap, cloneable handle to a [`Quic`] transport (see [`Quic::handle`]).
///
/// It does not keep the transport alive: once the transport is dropped,
/// [`QuicHandle::stats`] still reports the final counters and the other
/// methods find no connection.
#[derive(Clone)]
pub struct QuicHandle {
    shared: Weak<Shared>,
    counters: Arc<conn::Counters>,
}

impl std::fmt::Debug for QuicHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuicHandle").finish_non_exhaustive()
    }
}

impl QuicHandle {
    /// A snapshot of the transport's counters.
    pub fn stats(&self) -> QuicStats {
        self.counters.snapshot()
    }

    /// Closes every connection to `addr` and returns how many there were.
    /// The next datagram to or from `addr` opens a new one.
    pub fn disconnect(&self, addr: SocketAddr) -> usize {
        self.shared.upgrade().map_or(0, |s| s.disconnect(addr))
    }

    /// Whether the certificate of the live connection to `addr` carries
    /// `name` (a DNS name or IP address) as a subject alternative name;
    /// `None` when no connection to `addr` is up. With
    /// [`QuicConfig::node_name`] set the transport makes this check itself
    /// on every datagram's claimed sender.
    pub fn peer_has_name(&self, addr: SocketAddr, name: &str) -> Option<bool> {
        let cert = self.shared.upgrade()?.peer_certificate(addr)?;
        Some(tls::covers_name(&cert, name))
    }

    /// Closes the endpoint and every connection now; later sends and
    /// receives return [`TransportError::Closed`]. Waits (at most a
    /// second) for the close to reach the peers.
    pub async fn close(&self) {
        if let Some(shared) = self.shared.upgrade() {
            close_and_wait(shared).await;
        }
    }
}

impl Transport for Quic {
    /// Hands one datagram to the peer's connection without waiting on the
    /// peer. Before the first connection to `to` is up, datagrams queue
    /// (up to [`QuicConfig::queue_len`]); after a failed dial, sends fail
    /// fast with [`TransportError::Unreachable`] for a short back-off.
    async fn send(&self, to: SocketAddr, payload: Bytes) -> Result<(), TransportError> {
        TransportError::check_len(payload.len(), self.max_payload)?;
        if self.shared.is_stopped() {
            return Err(TransportError::Closed);
        }
        self.shared.send(to, payload)
    }

    /// Cancellation safe: datagrams wait in a channel until taken.
    async fn recv(&self) -> Result<(SocketAddr, Bytes), TransportError> {
        let mut stop = self.shared.stop.subscribe();
        let mut inbox = self.inbox.lock().await;
        tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => Err(TransportError::Closed),
            got = inbox.recv() => got.ok_or(TransportError::Closed),
        }
    }

    fn max_payload(&self) -> usize {
        self.max_payload
    }

    fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Waits (at most a second) until every datagram `send` accepted has
    /// been handed to the socket — the queues of dials in progress
    /// included — then closes the endpoint and every connection and waits
    /// (at most another second) for the close to reach the peers. Later
    /// sends and receives return [`TransportError::Closed`].
    async fn close(&self) {
        self.shared.flush(FLUSH_WAIT).await;
        close_and_wait(Arc::clone(&self.shared)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev_config() -> QuicConfig {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("certs");
        QuicConfig::from_pem_files(
            dir.join("ca.pem"),
            dir.join("node-1.pem"),
            dir.join("node-1.key"),
        )
        .expect("dev certificates in certs/")
    }

    /// The budget fits what quinn allows at the initial 1,200-byte MTU
    /// (and path-MTU discovery only ever raises that).
    #[tokio::test]
    async fn budget_fits_the_datagram_limit_at_the_initial_mtu() {
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let mut config = dev_config();
        config.initial_mtu = 1_200;
        let a = Quic::bind(any, config.clone()).await.unwrap();
        let b = Quic::bind(any, config).await.unwrap();
        a.send(b.local_addr(), Bytes::from_static(b"hi"))
            .await
            .unwrap();
        let (from, _) = b.recv().await.unwrap();
        let limit = b.shared.max_datagram_size(from).unwrap();
        // 1,162 at exactly 1,200 bytes with quinn's 8-byte connection IDs;
        // more once path-MTU discovery has raised the MTU.
        assert!(limit >= 1_162, "{limit}");
        assert!(QuicConfig::DEFAULT_MAX_PAYLOAD <= limit);
    }

    #[test]
    fn missing_file_is_named() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("certs");
        let err = QuicConfig::from_pem_files(
            dir.join("nope.pem"),
            dir.join("node-1.pem"),
            dir.join("node-1.key"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("nope.pem"), "{err}");
    }

    #[test]
    fn malformed_file_is_named() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("certs");
        // A key file where a certificate belongs has no CERTIFICATE block.
        let err = QuicConfig::from_pem_files(
            dir.join("ca.pem"),
            dir.join("node-1.key"),
            dir.join("node-1.key"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("node-1.key"), "{err}");
        let err = QuicConfig::from_pem_files(
            dir.join("ca.pem"),
            dir.join("node-1.pem"),
            dir.join("ca.pem"),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("ca.pem") && err.to_string().contains("private key"),
            "{err}"
        );
    }

    #[test]
    fn config_checks_name_the_field() {
        type Spoil = fn(&mut QuicConfig);
        let cases: [(&str, Spoil); 5] = [
            ("max_payload", |c| c.max_payload = 1_151),
            ("max_payload", |c| c.max_payload = 63),
            ("initial_mtu", |c| c.initial_mtu = 1_000),
            ("keep_alive", |c| c.keep_alive = c.idle_timeout),
            ("node_name", |c| c.node_name = Some("node-2".into())),
        ];
        for (field, spoil) in cases {
            let mut config = dev_config();
            spoil(&mut config);
            let err = config.validate().unwrap_err();
            assert!(err.to_string().contains(field), "{field}: {err}");
        }
        let mut config = dev_config();
        config.node_name = Some("node-1".into());
        config.initial_mtu = 1_400;
        config.max_payload = 1_350;
        config.validate().unwrap();
    }
}
