//! Key rotation from the [`Node`] handle, and the gossip of key ids.
//!
//! A node started with a [`Keyring`] (through
//! [`NodeBuilder::start_encrypted_udp`](super::NodeBuilder::start_encrypted_udp),
//! [`NodeBuilder::start_encrypted`](super::NodeBuilder::start_encrypted) or
//! [`NodeBuilder::keyring`](super::NodeBuilder::keyring)) publishes the ids
//! of the keys it holds in its own replicated state, under the reserved key
//! [`KEYS_STATE_KEY`]. Every member therefore learns which member holds
//! which key, and [`Node::cluster_keys`] turns that into the answer a
//! rotation needs: is it safe to switch primary, is it safe to remove the
//! old key (see [`ClusterKeys`]).
//!
//! The value's format is documented once, on [`KEYS_STATE_KEY`].
//!
//! # When the value changes
//!
//! [`Node::install_key`], [`Node::use_key`] and [`Node::remove_key`] change
//! the keyring first and publish at once, so what a node publishes is never
//! ahead of what it does. Changes made directly through a [`Keyring`] clone
//! are noticed and published by the driver within one gossip interval.

use std::time::Instant;

use bytes::Bytes;

use super::cluster_keys::{ClusterKeys, MemberKeys};
use super::{Command, Node, NodeError};
use crate::engine::{Engine, SetError};
use crate::seal::{KEY_ID_LEN, Key, KeyId, Keyring};
use crate::transport::EncryptedStats;

/// The reserved state key under which a node publishes the ids of the
/// encryption keys it holds; [`Node::cluster_keys`] reads them back.
///
/// The value (format version 1):
///
/// ```text
/// byte 0        format version, 0x01
/// bytes 1..9    id of the primary key (8 bytes, as in a frame header)
/// bytes 9..     ids of the other installed keys, 8 bytes each, oldest first
/// ```
///
/// So a node holding one key publishes 9 bytes, and each further key adds
/// 8. A value that is empty, has another version byte, or whose length is
/// not `1 + 8·n` with `n ≥ 1` counts as "publishes no keys": it comes from
/// the network and is never trusted to be well formed.
pub const KEYS_STATE_KEY: &str = "__sw.keys";

/// First byte of a version-1 `__sw.keys` value.
const FORMAT_V1: u8 = 1;

/// Encodes `ids` (primary first) as a `__sw.keys` value.
pub(crate) fn encode_key_ids(ids: &[KeyId]) -> Bytes {
    let mut value = Vec::with_capacity(1 + ids.len() * KEY_ID_LEN);
    value.push(FORMAT_V1);
    for id in ids {
        value.extend_from_slice(&id.to_bytes());
    }
    Bytes::from(value)
}

/// Decodes a `__sw.keys` value into key ids, primary first; `None` if the
/// value is not a well-formed version-1 value with at least one id.
pub(crate) fn decode_key_ids(value: &[u8]) -> Option<Vec<KeyId>> {
    let (&version, ids) = value.split_first()?;
    if version != FORMAT_V1 || ids.is_empty() || ids.len() % KEY_ID_LEN != 0 {
        return None;
    }
    ids.chunks_exact(KEY_ID_LEN)
        .map(|chunk| chunk.try_into().ok().map(KeyId::from_bytes))
        .collect()
}

/// Keeps the engine's `__sw.keys` entry in step with the keyring. Owned by
/// the driver task.
pub(crate) struct KeyPublisher {
    keyring: Keyring,
    /// What was last written to the engine; empty before the first write.
    published: Vec<KeyId>,
}

impl KeyPublisher {
    pub(crate) fn new(keyring: Keyring) -> KeyPublisher {
        KeyPublisher {
            keyring,
            published: Vec::new(),
        }
    }

    /// Writes the keyring's ids to the engine if they changed since the last
    /// write. On error nothing was written and the next call tries again.
    pub(crate) fn publish(&mut self, engine: &mut Engine, now: Instant) -> Result<(), SetError> {
        let ids = self.keyring.list();
        if ids == self.published {
            return Ok(());
        }
        engine.set_reserved(now, KEYS_STATE_KEY, encode_key_ids(&ids))?;
        self.published = ids;
        Ok(())
    }
}

impl Node {
    /// The keyring this node seals and opens with, if it was started with
    /// one. The handle is shared with the transport: a change made through
    /// it applies to the next datagram, and is published to the cluster
    /// within one gossip interval (the `*_key` methods publish at once).
    pub fn keyring(&self) -> Option<&Keyring> {
        self.inner.keyring.as_ref()
    }

    fn require_keyring(&self) -> Result<&Keyring, NodeError> {
        self.keyring().ok_or(NodeError::NoKeyring)
    }

    /// Asks the driver to publish the keyring's ids now.
    async fn publish_keys(&self) -> Result<(), NodeError> {
        Ok(self.ask(Command::PublishKeys).await??)
    }

    /// Rotation step 1: installs `key` for opening (it does not become
    /// primary) and tells the cluster. Returns its id. Installing a key
    /// already installed changes nothing.
    ///
    /// Errors: [`NodeError::NoKeyring`] (nothing changed);
    /// [`NodeError::Set`] if the key ids could not be published (the key
    /// *is* installed; only the announcement failed, and the driver retries
    /// it every gossip interval); [`NodeError::Closed`].
    pub async fn install_key(&self, key: Key) -> Result<KeyId, NodeError> {
        let id = self.require_keyring()?.install(key);
        self.publish_keys().await?;
        Ok(id)
    }

    /// Rotation step 2: makes the installed key `id` the primary, so every
    /// datagram sealed from now on uses it, and tells the cluster. Do this
    /// once [`ClusterKeys::safe_to_use`] holds for `id`.
    ///
    /// Errors: [`NodeError::NoKeyring`] and [`NodeError::Keyring`] (key not
    /// installed) change nothing; [`NodeError::Set`] and
    /// [`NodeError::Closed`] as for [`Node::install_key`].
    pub async fn use_key(&self, id: KeyId) -> Result<(), NodeError> {
        self.require_keyring()?.use_key(id)?;
        self.publish_keys().await
    }

    /// Rotation step 3: uninstalls `id`, so datagrams sealed under it no
    /// longer open, and tells the cluster. Do this once
    /// [`ClusterKeys::safe_to_remove`] holds for `id` (and, to be safe
    /// against datagrams still in flight, a moment later).
    ///
    /// Errors: [`NodeError::NoKeyring`] and [`NodeError::Keyring`] (unknown
    /// id, or the primary key) change nothing; [`NodeError::Set`] and
    /// [`NodeError::Closed`] as for [`Node::install_key`].
    pub async fn remove_key(&self, id: KeyId) -> Result<(), NodeError> {
        self.require_keyring()?.remove(id)?;
        self.publish_keys().await
    }

    /// The ids of this node's installed keys, primary first.
    pub fn list_keys(&self) -> Result<Vec<KeyId>, NodeError> {
        Ok(self.require_keyring()?.list())
    }

    /// Which member holds which key, as known here from the gossiped
    /// `__sw.keys` entries, for every known member (this node included).
    /// Use it to decide when a rotation step is complete everywhere.
    pub async fn cluster_keys(&self) -> Result<ClusterKeys, NodeError> {
        let snapshot = self.ask(Command::ClusterKeys).await?;
        Ok(ClusterKeys::new(
            snapshot
                .into_iter()
                .map(|(member, value)| MemberKeys {
                    node: member.id,
                    status: member.status,
                    keys: value.as_deref().and_then(decode_key_ids),
                })
                .collect(),
        ))
    }

    /// The counters of the encrypted transport (datagrams sealed, opened,
    /// and dropped by reason), if the node was started with
    /// [`NodeBuilder::start_encrypted_udp`](super::NodeBuilder::start_encrypted_udp)
    /// or [`NodeBuilder::start_encrypted`](super::NodeBuilder::start_encrypted)
    /// and is still running. Also in [`Node::metrics`] as `seal`.
    pub fn seal_stats(&self) -> Option<EncryptedStats> {
        self.inner.seal.as_ref().and_then(|stats| stats())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(byte: u8) -> KeyId {
        KeyId::from_bytes([byte; KEY_ID_LEN])
    }

    #[test]
    fn key_ids_round_trip_primary_first() {
        let ids = vec![id(1), id(2), id(3)];
        let value = encode_key_ids(&ids);
        assert_eq!(value.len(), 1 + 3 * KEY_ID_LEN);
        assert_eq!(value[0], FORMAT_V1);
        assert_eq!(&value[1..9], &[1; 8]);
        assert_eq!(decode_key_ids(&value), Some(ids));
    }

    #[test]
    fn malformed_values_publish_no_keys() {
        let good = encode_key_ids(&[id(7)]);
        assert!(decode_key_ids(&[]).is_none());
        assert!(decode_key_ids(&[FORMAT_V1]).is_none(), "no id at all");
        assert!(decode_key_ids(&good[..good.len() - 1]).is_none());
        let mut other_version = good.to_vec();
        other_version[0] = 2;
        assert!(decode_key_ids(&other_version).is_none());
        for len in 0..40 {
            let _ = decode_key_ids(&vec![FORMAT_V1; len]);
        }
    }
}
