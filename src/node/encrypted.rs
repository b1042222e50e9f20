//! Starting a node on an [`Encrypted`] transport, with its keyring and its
//! counters reachable from the [`Node`](super::Node) handle.

use std::net::SocketAddr;
use std::sync::{Arc, Weak};

use bytes::Bytes;

use super::{Node, NodeBuilder, NodeError};
use crate::seal::Keyring;
use crate::transport::{
    Encrypted, EncryptedStats, EncryptionConfig, Transport, TransportError, Udp,
};

/// Reads an encrypted transport's counters; `None` once the transport is
/// gone (the node stopped).
pub(crate) type SealStats = Arc<dyn Fn() -> Option<EncryptedStats> + Send + Sync>;

impl NodeBuilder {
    /// Starts the node on encrypted UDP bound to `bind`: every datagram is
    /// sealed under `keyring`'s primary key (see `docs/SECURITY.md`).
    ///
    /// The cluster label: if `encryption.cluster_label` is empty, the
    /// config's `cluster` name is used, so nodes of one cluster agree
    /// without saying it twice; a non-empty label is used as given. Either
    /// way every member must end up with the same label.
    ///
    /// The node keeps `keyring` (see [`Node::keyring`]), gossips the ids of
    /// its keys, and reports the transport's counters in
    /// [`Node::seal_stats`] and [`NodeMetrics::seal`](super::NodeMetrics::seal).
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use scuttlewire::seal::{Key, Keyring};
    /// use scuttlewire::transport::EncryptionConfig;
    /// use scuttlewire::{Config, Node};
    /// let key = Key::from_file("/etc/scuttlewire/cluster.key")?;
    /// let node = Node::builder(Config::lan())
    ///     .start_encrypted_udp(
    ///         "0.0.0.0:7946".parse()?,
    ///         Keyring::new(key),
    ///         EncryptionConfig::default(),
    ///     )
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn start_encrypted_udp(
        self,
        bind: SocketAddr,
        keyring: Keyring,
        encryption: EncryptionConfig,
    ) -> Result<Node, NodeError> {
        self.config.validate()?;
        let encryption = self.label(encryption);
        encryption.validate()?;
        let udp = Udp::bind(bind).await?;
        self.start_encrypted(udp, keyring, encryption).await
    }

    /// Starts the node on `inner` wrapped in [`Encrypted`], as
    /// [`NodeBuilder::start_encrypted_udp`] does for UDP (same cluster-label
    /// rule). Use it for another inner transport, e.g. a `Udp` built with
    /// [`Udp::bind_with`] or [`Udp::from_std`].
    pub async fn start_encrypted<T: Transport>(
        mut self,
        inner: T,
        keyring: Keyring,
        encryption: EncryptionConfig,
    ) -> Result<Node, NodeError> {
        self.config.validate()?;
        let encryption = self.label(encryption);
        // LAN discovery, if on, seals as the transport does.
        self.encryption = Some(encryption.clone());
        let transport = Arc::new(Encrypted::new(inner, keyring.clone(), encryption)?);
        let weak: Weak<Encrypted<T>> = Arc::downgrade(&transport);
        let stats: SealStats = Arc::new(move || weak.upgrade().map(|t| t.stats()));
        self.keyring = Some(keyring);
        self.start_with(Shared(transport), Some(stats)).await
    }

    /// Fills an empty cluster label with the config's cluster name.
    fn label(&self, mut encryption: EncryptionConfig) -> EncryptionConfig {
        if encryption.cluster_label.is_empty() {
            encryption.cluster_label = self.config.cluster.clone();
        }
        encryption
    }
}

/// A transport behind an `Arc`, so the node handle can read its counters
/// (through a `Weak`) while the driver owns it: when the driver stops, the
/// transport and its socket are dropped as usual.
struct Shared<T>(Arc<T>);

impl<T: Transport> Transport for Shared<T> {
    async fn send(&self, to: SocketAddr, payload: Bytes) -> Result<(), TransportError> {
        self.0.send(to, payload).await
    }

    async fn recv(&self) -> Result<(SocketAddr, Bytes), TransportError> {
        self.0.recv().await
    }

    fn max_payload(&self) -> usize {
        self.0.max_payload()
    }

    fn local_addr(&self) -> SocketAddr {
        self.0.local_addr()
    }

    async fn close(&self) {
        self.0.close().await;
    }

    fn os_receive_drops(&self) -> Option<u64> {
        self.0.os_receive_drops()
    }
}
