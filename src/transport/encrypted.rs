//! [`Encrypted`]: seals every datagram of another transport.
//!
//! Outbound payloads are sealed with the keyring's primary key into frames
//! [`OVERHEAD`] bytes longer; inbound frames are opened with any installed
//! key, and anything that fails to open — forged, altered, replayed, under
//! an unknown key, or plaintext when plaintext is refused — is counted and
//! dropped, never returned as an error. The format and the threat model are
//! in `docs/SECURITY.md`; the cryptography lives in [`crate::seal`].

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use bytes::Bytes;

use super::{Transport, TransportError};
use crate::seal::{
    Cipher, DEFAULT_MAX_SESSIONS, DropReason, Keyring, OVERHEAD, OpenError, Opener, SealError,
    Sealer, is_plaintext,
};

/// Longest cluster label accepted, in bytes.
pub const MAX_CLUSTER_LABEL: usize = 255;

/// How an [`Encrypted`] transport seals and what it accepts.
///
/// The two plaintext flags exist to move a running plaintext cluster to
/// encryption without downtime (memberlist's `GossipVerifyOutgoing` /
/// `GossipVerifyIncoming`), by rolling restarts through three stages:
///
/// | stage | `send_plaintext` | `accept_plaintext` | sends | accepts |
/// |---|---|---|---|---|
/// | 1 | `true` | `true` | plaintext | both |
/// | 2 | `false` | `true` | sealed | both |
/// | 3 (default) | `false` | `false` | sealed | sealed only |
///
/// Finish each stage on every member before starting the next. Sending
/// plaintext while refusing it is refused by [`EncryptionConfig::validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptionConfig {
    /// Authenticated with every frame: a frame sealed for one label does not
    /// open under another, even with the same key. Any UTF-8 string up to
    /// [`MAX_CLUSTER_LABEL`] bytes; empty is allowed. Default: empty.
    pub cluster_label: String,
    /// The cipher outbound frames are sealed with. Inbound frames are opened
    /// whatever their cipher. Default: [`Cipher::Aes256Gcm`].
    pub cipher: Cipher,
    /// Send plaintext instead of sealing (stage 1 above). Requires
    /// `accept_plaintext`. Default: `false`.
    pub send_plaintext: bool,
    /// Accept plaintext datagrams (first byte `0x08`) as well as sealed
    /// ones (stages 1 and 2 above). Default: `false`.
    pub accept_plaintext: bool,
    /// How many sender sessions the replay protection remembers, at least 2.
    /// Each costs under a kilobyte; a cluster needs about one per member
    /// per key. Default: 4096.
    pub max_sessions: usize,
}

impl Default for EncryptionConfig {
    fn default() -> EncryptionConfig {
        EncryptionConfig {
            cluster_label: String::new(),
            cipher: Cipher::default(),
            send_plaintext: false,
            accept_plaintext: false,
            max_sessions: DEFAULT_MAX_SESSIONS,
        }
    }
}

impl EncryptionConfig {
    /// The default configuration (seal and verify everything) for
    /// `cluster_label`.
    pub fn new(cluster_label: impl Into<String>) -> EncryptionConfig {
        EncryptionConfig {
            cluster_label: cluster_label.into(),
            ..EncryptionConfig::default()
        }
    }

    /// Checks the configuration; the error names the offending field.
    pub fn validate(&self) -> Result<(), TransportError> {
        if self.cluster_label.len() > MAX_CLUSTER_LABEL {
            return Err(TransportError::Setup(format!(
                "encryption: cluster_label is {} bytes, the limit is {MAX_CLUSTER_LABEL}",
                self.cluster_label.len()
            )));
        }
        if self.send_plaintext && !self.accept_plaintext {
            return Err(TransportError::Setup(
                "encryption: send_plaintext requires accept_plaintext \
                 (peers in the same stage would refuse each other)"
                    .to_owned(),
            ));
        }
        if self.max_sessions < 2 {
            return Err(TransportError::Setup(format!(
                "encryption: max_sessions is {}, it must be at least 2",
                self.max_sessions
            )));
        }
        Ok(())
    }
}

/// Counters of an [`Encrypted`] transport since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EncryptedStats {
    /// Datagrams sealed and handed to the inner transport.
    pub sealed: u64,
    /// Datagrams sent in plaintext (`send_plaintext`).
    pub sent_plaintext: u64,
    /// Sealed datagrams that opened and were delivered.
    pub opened: u64,
    /// Plaintext datagrams delivered (`accept_plaintext`).
    pub accepted_plaintext: u64,
    /// Dropped: not a well-formed frame.
    pub dropped_malformed: u64,
    /// Dropped: sealed under a key not installed.
    pub dropped_unknown_key: u64,
    /// Dropped: the tag did not verify.
    pub dropped_auth: u64,
    /// Dropped: replayed, or older than the replay window.
    pub dropped_replay: u64,
    /// Dropped: plaintext while plaintext is refused.
    pub dropped_plaintext: u64,
}

impl EncryptedStats {
    /// All inbound drops together.
    pub fn dropped(&self) -> u64 {
        self.dropped_malformed
            + self.dropped_unknown_key
            + self.dropped_auth
            + self.dropped_replay
            + self.dropped_plaintext
    }

    /// The drops counted under `reason`.
    pub fn dropped_for(&self, reason: DropReason) -> u64 {
        match reason {
            DropReason::Malformed => self.dropped_malformed,
            DropReason::UnknownKey => self.dropped_unknown_key,
            DropReason::Auth => self.dropped_auth,
            DropReason::Replay => self.dropped_replay,
            DropReason::PlaintextRefused => self.dropped_plaintext,
        }
    }
}

#[derive(Default)]
struct Counters {
    sealed: AtomicU64,
    sent_plaintext: AtomicU64,
    opened: AtomicU64,
    accepted_plaintext: AtomicU64,
    malformed: AtomicU64,
    unknown_key: AtomicU64,
    auth: AtomicU64,
    replay: AtomicU64,
    plaintext: AtomicU64,
}

impl Counters {
    fn drop_counter(&self, reason: DropReason) -> &AtomicU64 {
        match reason {
            DropReason::Malformed => &self.malformed,
            DropReason::UnknownKey => &self.unknown_key,
            DropReason::Auth => &self.auth,
            DropReason::Replay => &self.replay,
            DropReason::PlaintextRefused => &self.plaintext,
        }
    }
}

fn bump(counter: &AtomicU64) -> u64 {
    counter.fetch_add(1, Ordering::Relaxed) + 1
}

/// A [`Transport`] decorator that seals every datagram of `T`.
///
/// `max_payload()` is exactly `inner.max_payload() - OVERHEAD` in every
/// mode (also while sending plaintext, so a later switch to sealing never
/// makes a packed packet too large). `recv` is cancellation safe: it awaits
/// only the inner `recv` and opens the datagram synchronously afterwards.
pub struct Encrypted<T> {
    inner: T,
    keyring: Keyring,
    config: EncryptionConfig,
    sealer: Mutex<Sealer>,
    opener: Mutex<Opener>,
    counters: Counters,
}

impl<T: Transport> Encrypted<T> {
    /// Wraps `inner`. `keyring` is shared: rotate keys through any clone of
    /// it and the next datagram uses the change.
    ///
    /// Fails with [`TransportError::Setup`] if `config` is invalid, if the
    /// inner transport's budget is smaller than the seal overhead, or if the
    /// OS random number generator fails.
    pub fn new(
        inner: T,
        keyring: Keyring,
        config: EncryptionConfig,
    ) -> Result<Encrypted<T>, TransportError> {
        config.validate()?;
        if inner.max_payload() <= OVERHEAD {
            return Err(TransportError::Setup(format!(
                "encryption: the inner transport's max_payload ({}) leaves no room after the \
                 {OVERHEAD}-byte seal overhead",
                inner.max_payload()
            )));
        }
        let sealer = Sealer::new(config.cipher, &config.cluster_label)
            .map_err(|e| TransportError::Setup(format!("encryption: {e}")))?;
        let opener = Opener::with_max_sessions(&config.cluster_label, config.max_sessions);
        Ok(Encrypted {
            inner,
            keyring,
            config,
            sealer: Mutex::new(sealer),
            opener: Mutex::new(opener),
            counters: Counters::default(),
        })
    }

    /// The wrapped transport.
    pub fn inner(&self) -> &T {
        &self.inner
    }

    /// The shared keyring.
    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// The configuration in force.
    pub fn config(&self) -> &EncryptionConfig {
        &self.config
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> EncryptedStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        EncryptedStats {
            sealed: get(&c.sealed),
            sent_plaintext: get(&c.sent_plaintext),
            opened: get(&c.opened),
            accepted_plaintext: get(&c.accepted_plaintext),
            dropped_malformed: get(&c.malformed),
            dropped_unknown_key: get(&c.unknown_key),
            dropped_auth: get(&c.auth),
            dropped_replay: get(&c.replay),
            dropped_plaintext: get(&c.plaintext),
        }
    }

    /// Seals `payload` (synchronously; no lock is held across an await).
    fn seal(&self, payload: &[u8]) -> Result<Bytes, SealError> {
        let key = self.keyring.primary_key();
        let mut sealer = self.sealer.lock().unwrap_or_else(PoisonError::into_inner);
        let frame = sealer.seal(&key, payload)?;
        bump(&self.counters.sealed);
        Ok(Bytes::from(frame))
    }

    /// Turns one inbound datagram into a payload, or counts and logs why
    /// it was dropped.
    fn accept(&self, from: SocketAddr, datagram: &Bytes) -> Option<Bytes> {
        if self.config.accept_plaintext && is_plaintext(datagram) {
            bump(&self.counters.accepted_plaintext);
            return Some(datagram.clone());
        }
        let opened = {
            let mut opener = self.opener.lock().unwrap_or_else(PoisonError::into_inner);
            opener.open(&self.keyring, datagram)
        };
        match opened {
            Ok(payload) => {
                bump(&self.counters.opened);
                Some(Bytes::from(payload))
            }
            Err(error) => {
                self.count_drop(from, datagram.len(), &error);
                None
            }
        }
    }

    fn count_drop(&self, from: SocketAddr, len: usize, error: &OpenError) {
        let reason = error.reason();
        let count = bump(self.counters.drop_counter(reason));
        // Rate limit without a clock: the first 16 drops of each reason,
        // then every power of two.
        if count <= 16 || count.is_power_of_two() {
            tracing::debug!(
                %from,
                len,
                %reason,
                %error,
                dropped = count,
                "dropped inbound datagram"
            );
        }
    }
}

impl<T: Transport> Transport for Encrypted<T> {
    /// Seals and sends one datagram (or sends it in plaintext with
    /// `send_plaintext`). Refuses payloads over [`Transport::max_payload`]
    /// with [`TransportError::TooLarge`].
    async fn send(&self, to: SocketAddr, payload: Bytes) -> Result<(), TransportError> {
        TransportError::check_len(payload.len(), self.max_payload())?;
        let datagram = if self.config.send_plaintext {
            bump(&self.counters.sent_plaintext);
            payload
        } else {
            self.seal(&payload).map_err(|e| match e {
                SealError::TooLarge { len, max } => TransportError::TooLarge { len, max },
                other => TransportError::Io(std::io::Error::other(other)),
            })?
        };
        self.inner.send(to, datagram).await
    }

    /// Receives the next datagram that opens. Datagrams that do not open are
    /// counted in [`Encrypted::stats`], logged at debug level and skipped;
    /// only the inner transport's errors are returned.
    async fn recv(&self) -> Result<(SocketAddr, Bytes), TransportError> {
        loop {
            let (from, datagram) = self.inner.recv().await?;
            if let Some(payload) = self.accept(from, &datagram) {
                return Ok((from, payload));
            }
        }
    }

    fn max_payload(&self) -> usize {
        self.inner.max_payload().saturating_sub(OVERHEAD)
    }

    fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr()
    }

    /// Closes the inner transport (datagrams are sealed before they reach
    /// it, so there is nothing of our own to flush).
    async fn close(&self) {
        self.inner.close().await;
    }

    fn os_receive_drops(&self) -> Option<u64> {
        self.inner.os_receive_drops()
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Encrypted<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encrypted")
            .field("inner", &self.inner)
            .field("keyring", &self.keyring)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seal::Key;
    use crate::transport::{MemoryNetwork, Udp, conformance};

    fn keyring() -> Keyring {
        Keyring::new(Key::from_bytes(&[7; 32]).unwrap())
    }

    #[test]
    fn config_validation_names_the_problem() {
        assert!(EncryptionConfig::default().validate().is_ok());
        let bad = EncryptionConfig {
            send_plaintext: true,
            ..EncryptionConfig::default()
        };
        let message = bad.validate().unwrap_err().to_string();
        assert!(message.contains("send_plaintext"), "{message}");
        let long = EncryptionConfig::new("x".repeat(MAX_CLUSTER_LABEL + 1));
        assert!(
            long.validate()
                .unwrap_err()
                .to_string()
                .contains("cluster_label")
        );
        let tiny = EncryptionConfig {
            max_sessions: 1,
            ..EncryptionConfig::default()
        };
        assert!(tiny.validate().is_err());
    }

    #[tokio::test]
    async fn max_payload_is_the_inner_budget_minus_the_exact_overhead() {
        let net = MemoryNetwork::new(1);
        let a = Encrypted::new(net.bind(), keyring(), EncryptionConfig::new("c")).unwrap();
        let b = net.bind();
        assert_eq!(a.max_payload(), a.inner().max_payload() - OVERHEAD);

        // A payload of exactly max_payload seals to exactly the inner budget.
        let payload = Bytes::from(vec![1u8; a.max_payload()]);
        a.send(b.local_addr(), payload).await.unwrap();
        let (_, wire) = b.recv().await.unwrap();
        assert_eq!(wire.len(), a.inner().max_payload());

        let too_big = Bytes::from(vec![1u8; a.max_payload() + 1]);
        assert!(matches!(
            a.send(b.local_addr(), too_big).await,
            Err(TransportError::TooLarge { .. })
        ));
    }

    #[tokio::test]
    async fn encrypted_memory_conforms() {
        let net = MemoryNetwork::new(2);
        let ring = keyring();
        conformance::run_all(|| {
            let t = Encrypted::new(net.bind(), ring.clone(), EncryptionConfig::new("c"));
            async move { t.unwrap() }
        })
        .await;
    }

    #[tokio::test]
    async fn encrypted_udp_conforms() {
        let ring = keyring();
        conformance::run_all(|| {
            let ring = ring.clone();
            async move {
                let udp = Udp::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
                Encrypted::new(udp, ring, EncryptionConfig::new("c")).unwrap()
            }
        })
        .await;
    }
}
