//! One node's versioned key-value state, as held by any member.
//!
//! Versions are per node and only grow. Every write (a set or a delete)
//! takes the next version; a delete leaves a tombstone, collected after a
//! grace period. A delta covers a version range `(from, to]` and lists
//! every entry of the range that is still current, so a receiver that holds
//! the prefix up to `from` holds the prefix up to `to` after applying it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::wire::{field_len, proto};

/// One key's current entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub value: Bytes,
    pub version: u64,
    /// When the tombstone was created or learnt; `None` for a live value.
    pub deleted_at: Option<Instant>,
    /// The owner's signature of the entry, when it signs (boxed: most
    /// clusters do not, and then it costs a pointer).
    pub sig: Option<Box<Signature>>,
}

/// An Ed25519 signature.
pub(crate) type Signature = [u8; crate::identity::SIGNATURE_LEN];

/// The signature bytes of a wire field, if it is one.
pub(crate) fn signature_of(bytes: &[u8]) -> Option<Box<Signature>> {
    let sig: Signature = bytes.try_into().ok()?;
    Some(Box::new(sig))
}

impl Entry {
    pub fn is_tombstone(&self) -> bool {
        self.deleted_at.is_some()
    }
}

/// A change applied to a node's state, reported so the engine can raise
/// events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    Set {
        key: String,
        value: Bytes,
        version: u64,
    },
    Deleted {
        key: String,
        version: u64,
    },
}

/// Why a delta was not applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeltaRefused {
    /// It starts above our highest version: applying it would leave a gap.
    Gap,
    /// It comes from a peer that has not seen tombstones we know were
    /// collected, and ends below them: it may hold entries those deletions
    /// superseded, which no later delta could ever remove again.
    BeforeCollection,
}

/// States with more entries than this get a key index; smaller ones are
/// scanned (a few cache lines, faster than hashing).
const INDEX_AT: usize = 16;

/// The versioned state of one node.
///
/// Every member holds one of these for every node, so an empty state costs
/// 16 bytes and no allocation; entries live in a boxed body made on the
/// first write.
#[derive(Debug, Default)]
pub(crate) struct NodeState {
    max_version: u64,
    body: Option<Box<Body>>,
}

#[derive(Debug, Default)]
struct Body {
    /// Current entries, each key once, sorted by version.
    list: Vec<Slot>,
    /// Key -> current version, once `list` is longer than [`INDEX_AT`].
    index: Option<HashMap<String, u64>>,
    /// Highest version of a tombstone collected here.
    last_gc_version: u64,
    /// After a reset delta: versions up to this one are not yet confirmed by
    /// the owner's history, and entries found missing from a covering delta
    /// are deleted.
    unverified_until: u64,
    /// The highest head the owner signed that we hold: its version and
    /// signature (signed state only).
    head: Option<(u64, Box<Signature>)>,
}

#[derive(Debug)]
struct Slot {
    key: String,
    entry: Entry,
}

impl Body {
    fn pos_of_version(&self, version: u64) -> Option<usize> {
        self.list
            .binary_search_by_key(&version, |s| s.entry.version)
            .ok()
    }

    fn pos_of(&self, key: &str) -> Option<usize> {
        match &self.index {
            Some(index) => self.pos_of_version(*index.get(key)?),
            None => self.list.iter().position(|s| s.key == key),
        }
    }

    fn get(&self, key: &str) -> Option<&Entry> {
        self.pos_of(key).map(|p| &self.list[p].entry)
    }

    /// Entries with versions in `low..=high`, in version order.
    fn range(&self, low: u64, high: u64) -> &[Slot] {
        let a = self.list.partition_point(|s| s.entry.version < low);
        let b = self.list.partition_point(|s| s.entry.version <= high);
        &self.list[a..b.max(a)]
    }

    fn put(&mut self, key: String, entry: Entry) {
        if let Some(p) = self.pos_of(&key) {
            self.list.remove(p);
        }
        if let Some(index) = &mut self.index {
            index.insert(key.clone(), entry.version);
        }
        let at = self
            .list
            .partition_point(|s| s.entry.version < entry.version);
        if self.list.len() == self.list.capacity() {
            // Grow by half, from one: most states hold a handful of
            // entries, and Vec's own first step would be four 80-byte slots.
            self.list.reserve_exact((self.list.len() / 2).max(1));
        }
        self.list.insert(at, Slot { key, entry });
        if self.index.is_none() && self.list.len() > INDEX_AT {
            self.index = Some(
                self.list
                    .iter()
                    .map(|s| (s.key.clone(), s.entry.version))
                    .collect(),
            );
        }
    }

    fn remove(&mut self, key: &str) -> Option<Entry> {
        let p = self.pos_of(key)?;
        if let Some(index) = &mut self.index {
            index.remove(key);
        }
        Some(self.list.remove(p).entry)
    }
}

impl NodeState {
    pub fn max_version(&self) -> u64 {
        self.max_version
    }

    pub fn last_gc_version(&self) -> u64 {
        self.body.as_ref().map_or(0, |b| b.last_gc_version)
    }

    fn unverified_until(&self) -> u64 {
        self.body.as_ref().map_or(0, |b| b.unverified_until)
    }

    fn body_mut(&mut self) -> &mut Body {
        self.body.get_or_insert_with(Box::default)
    }

    fn slots(&self) -> &[Slot] {
        self.body.as_ref().map_or(&[], |b| &b.list)
    }

    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.body.as_ref()?.get(key)
    }

    /// The owner's signed head we hold: its version and signature.
    pub fn head(&self) -> Option<(u64, &Signature)> {
        let (v, sig) = self.body.as_ref()?.head.as_ref()?;
        Some((*v, sig))
    }

    /// Keeps the owner's signed head at `version` if it is newer than the
    /// one held.
    pub fn set_head(&mut self, version: u64, sig: Box<Signature>) {
        let body = self.body_mut();
        if body.head.as_ref().is_none_or(|(v, _)| *v < version) {
            body.head = Some((version, sig));
        }
    }

    /// Attaches the owner's signature to the current entry of `key`.
    pub fn sign_entry(&mut self, key: &str, sig: Signature) {
        if let Some(body) = self.body.as_mut() {
            if let Some(p) = body.pos_of(key) {
                body.list[p].entry.sig = Some(Box::new(sig));
            }
        }
    }

    /// Live (non-tombstone) entries.
    pub fn live(&self) -> impl Iterator<Item = (&String, &Entry)> {
        self.slots()
            .iter()
            .filter(|s| !s.entry.is_tombstone())
            .map(|s| (&s.key, &s.entry))
    }

    /// Every entry, tombstones included, in version order.
    #[cfg(test)]
    pub fn all(&self) -> impl Iterator<Item = (&String, &Entry)> {
        self.slots().iter().map(|s| (&s.key, &s.entry))
    }

    /// Local write of the owner: takes the next version.
    pub fn set_local(&mut self, key: String, value: Bytes) -> u64 {
        let version = self.max_version + 1;
        self.put(key, value, version, None, None);
        self.max_version = version;
        version
    }

    /// Local delete of the owner; `None` if the key is absent or deleted.
    pub fn delete_local(&mut self, key: &str, now: Instant) -> Option<u64> {
        if self.get(key).is_none_or(Entry::is_tombstone) {
            return None;
        }
        let version = self.max_version + 1;
        self.put(key.to_owned(), Bytes::new(), version, Some(now), None);
        self.max_version = version;
        Some(version)
    }

    fn put(
        &mut self,
        key: String,
        value: Bytes,
        version: u64,
        deleted_at: Option<Instant>,
        sig: Option<Box<Signature>>,
    ) {
        self.body_mut().put(
            key,
            Entry {
                value,
                version,
                deleted_at,
                sig,
            },
        );
    }

    fn remove(&mut self, key: &str) -> Option<Entry> {
        self.body.as_mut()?.remove(key)
    }

    /// Applies a delta received from a peer, pushing what changed to `out`.
    pub fn apply(
        &mut self,
        delta: &proto::NodeDelta,
        now: Instant,
        out: &mut Vec<Change>,
    ) -> Result<(), DeltaRefused> {
        let (from, to) = (delta.from_version, delta.to_version);
        if from > self.max_version {
            return Err(DeltaRefused::Gap);
        }
        let last_gc = self.last_gc_version();
        if to <= self.max_version && delta.last_gc_version <= last_gc {
            // Nothing new (a duplicate or an overlapping older delta).
            if self.unverified_until() == 0 {
                return Ok(());
            }
        }
        if delta.last_gc_version < last_gc && to < last_gc {
            // Only the owner's history since the collection (which we are
            // being reset to) can say what is current below it.
            return Err(DeltaRefused::BeforeCollection);
        }
        let reset = from == 0 && delta.last_gc_version > last_gc;
        if reset {
            // The sender collected tombstones we may never have seen: our
            // whole history is suspect until covering deltas confirm it.
            let max = self.max_version;
            let body = self.body_mut();
            body.unverified_until = body.unverified_until.max(max);
        }
        let unverified_until = self.unverified_until();
        if unverified_until > from {
            // Entries of ours inside the covered range that the sender no
            // longer has were deleted there and their tombstones collected.
            let upto = to.min(unverified_until);
            // A key listed at a newer version was overwritten, not deleted:
            // the loop below replaces it.
            let listed: std::collections::HashSet<&str> =
                delta.entries.iter().map(|e| e.key.as_str()).collect();
            let stale: Vec<(u64, String)> = self
                .body
                .as_ref()
                .map_or(&[][..], |b| b.range(from + 1, upto))
                .iter()
                .filter(|s| !listed.contains(s.key.as_str()))
                .map(|s| (s.entry.version, s.key.clone()))
                .collect();
            for (v, key) in stale {
                if let Some(e) = self.remove(&key) {
                    if !e.is_tombstone() {
                        out.push(Change::Deleted { key, version: v });
                    }
                }
            }
            if to >= unverified_until {
                self.body_mut().unverified_until = 0;
            }
        }
        for kv in &delta.entries {
            let current = self.get(&kv.key);
            if current.is_some_and(|e| e.version >= kv.version) {
                continue;
            }
            let was_live = current.is_some_and(|e| !e.is_tombstone());
            let sig = signature_of(&kv.signature);
            if kv.tombstone {
                self.put(kv.key.clone(), Bytes::new(), kv.version, Some(now), sig);
                if was_live {
                    out.push(Change::Deleted {
                        key: kv.key.clone(),
                        version: kv.version,
                    });
                }
            } else {
                self.put(kv.key.clone(), kv.value.clone(), kv.version, None, sig);
                out.push(Change::Set {
                    key: kv.key.clone(),
                    value: kv.value.clone(),
                    version: kv.version,
                });
            }
        }
        self.max_version = if reset { to } else { self.max_version.max(to) };
        if delta.last_gc_version > last_gc {
            self.body_mut().last_gc_version = delta.last_gc_version;
        }
        if let Some(sig) = signature_of(&delta.head_signature) {
            self.set_head(delta.head_version, sig);
        }
        Ok(())
    }

    /// Builds the delta for a peer that holds versions up to `from`, with
    /// entries in version order while they fit in `room` encoded bytes.
    /// Returns `None` if the peer is up to date or not one entry fits.
    pub fn delta(
        &self,
        node: proto::NodeId,
        peer_version: u64,
        peer_gc: u64,
        room: usize,
    ) -> Option<proto::NodeDelta> {
        if peer_version >= self.max_version {
            return None;
        }
        // A peer below our collected tombstones cannot learn those deletions
        // from a delta: send it our state from the start.
        let last_gc = self.last_gc_version();
        let from = if last_gc > peer_version && peer_gc < last_gc {
            0
        } else {
            peer_version
        };
        let mut delta = proto::NodeDelta {
            node: Some(node),
            from_version: from,
            to_version: self.max_version,
            last_gc_version: last_gc,
            entries: Vec::new(),
            head_version: 0,
            head_signature: Bytes::new(),
        };
        if let Some((version, sig)) = self.head() {
            delta.head_version = version;
            delta.head_signature = Bytes::copy_from_slice(sig);
        }
        // Conservative header size: to_version may shrink when truncated.
        let mut used = prost::Message::encoded_len(&delta);
        if used >= room {
            return None;
        }
        // Not above `max_version`: after a reset page, entries above it are
        // leftovers not yet confirmed, and a delta never reaches past `to`.
        let slots = self
            .body
            .as_ref()
            .map_or(&[][..], |b| b.range(from + 1, self.max_version));
        for s in slots {
            let kv = proto::KeyValue {
                key: s.key.clone(),
                value: s.entry.value.clone(),
                version: s.entry.version,
                tombstone: s.entry.is_tombstone(),
                signature: s
                    .entry
                    .sig
                    .as_deref()
                    .map_or_else(Bytes::new, |sig| Bytes::copy_from_slice(sig)),
            };
            let cost = field_len(prost::Message::encoded_len(&kv));
            if used + cost > room {
                delta.to_version = delta.entries.last().map(|l| l.version)?;
                return Some(delta);
            }
            used += cost;
            delta.entries.push(kv);
        }
        // Possibly empty: if only collected tombstones lie above the peer,
        // the empty range still moves its version forward.
        Some(delta)
    }

    /// An empty delta that only introduces the node (for a peer that never
    /// heard of it, when there is no state to send or none fits).
    pub fn introduction(&self, node: proto::NodeId) -> proto::NodeDelta {
        proto::NodeDelta {
            node: Some(node),
            from_version: 0,
            to_version: 0,
            last_gc_version: 0,
            entries: Vec::new(),
            head_version: 0,
            head_signature: Bytes::new(),
        }
    }

    /// Collects tombstones older than `grace`; returns how many.
    pub fn collect_tombstones(&mut self, now: Instant, grace: Duration) -> usize {
        let Some(body) = self.body.as_mut() else {
            return 0;
        };
        let old: Vec<String> = body
            .list
            .iter()
            .filter(|s| {
                s.entry
                    .deleted_at
                    .is_some_and(|t| now.saturating_duration_since(t) >= grace)
            })
            .map(|s| s.key.clone())
            .collect();
        for key in &old {
            if let Some(e) = body.remove(key) {
                body.last_gc_version = body.last_gc_version.max(e.version);
            }
        }
        old.len()
    }

    /// Whether any tombstone waits for collection (cheap pre-check).
    pub fn has_tombstones(&self) -> bool {
        self.slots().iter().any(|s| s.entry.is_tombstone())
    }
}

#[cfg(test)]
mod tests;
