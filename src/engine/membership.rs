//! The member table: every node this node knows, its state, its liveness
//! status, and the indexes gossip needs (recency for digests, a rotating
//! window, a fingerprint of all versions, random peer choice).

use std::collections::VecDeque;
use std::hash::{BuildHasher, RandomState};

use hashbrown::HashTable;
use hashbrown::hash_table::Entry;

use rand::Rng;
use rand::rngs::StdRng;

use super::node_id::NodeId;
use super::state::NodeState;

/// Liveness status of a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MemberStatus {
    /// Answers probes (or has not been found failing).
    Alive,
    /// Failed a probe; will be declared dead unless it refutes in time.
    Suspect,
    /// Declared failed. Still probed with backoff for a while.
    Dead,
    /// Left the cluster on purpose.
    Left,
}

impl MemberStatus {
    /// Alive or suspect: still a member gossip talks to.
    pub fn is_healthy(self) -> bool {
        matches!(self, MemberStatus::Alive | MemberStatus::Suspect)
    }
}

/// A member as reported by [`crate::Engine::members`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its identity.
    pub id: NodeId,
    /// Its liveness status.
    pub status: MemberStatus,
    /// Its SWIM incarnation (raised to refute suspicion).
    pub incarnation: u64,
}

/// Everything known of one node.
///
/// A cluster of N nodes holds N² of these, so the record is kept small:
/// the node key is stored once (not recomputed by hashing the name), the
/// state is 16 bytes until the node has entries, and the indexes of the
/// table below point at records by slot number instead of copying keys
/// or names.
#[derive(Debug)]
pub(crate) struct Known {
    pub id: NodeId,
    pub key: u64,
    pub state: NodeState,
    pub incarnation: u64,
    /// Position in the recency log (larger = changed more recently).
    pub change_seq: u64,
    pub status: MemberStatus,
    /// The state fingerprint this member last reported to us (0: none yet).
    pub fingerprint: u64,
    /// The signed claim behind the current status and incarnation (signed
    /// membership), passed on with every rumor about the member.
    pub claim: Option<Box<Claim>>,
}

/// A membership claim's signature and signer: the member itself for alive
/// and left, the accuser for suspect and dead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Claim {
    pub signature: super::state::Signature,
    pub signer: Box<str>,
}

/// How many recent changes the recency log remembers. A digest gives
/// recently changed nodes at most half its page (~60 lines), so older
/// entries would never be read.
const RECENT_CAP: usize = 128;

/// The table: records in a dense slab, found by node key or by name
/// through hash tables of slot numbers.
#[derive(Debug, Default)]
pub(crate) struct Members {
    slots: Vec<Known>,
    /// Slot of each node key.
    by_key: HashTable<u32>,
    /// Slot of the newest generation known of each name.
    by_name: HashTable<u32>,
    hasher: RandomState,
    /// (change_seq, key) of recent changes, oldest first; entries whose
    /// record has changed again since are skipped when read.
    recency: VecDeque<(u64, u64)>,
    next_seq: u64,
    /// Healthy peers (not us), for random choice and the broadcast tree;
    /// sorted by key when `peers_sorted` (see [`Members::ring`]).
    peers: Vec<u64>,
    peers_sorted: bool,
    /// Every key, sorted: digest windows walk it, so each page lists a
    /// contiguous range of keys (see [`Members::in_range`]).
    sorted: Vec<u64>,
    fingerprint: u64,
    me: u64,
}

/// Mixes a node key and a version into a well-spread 64-bit value
/// (splitmix64 finaliser), so that the XOR of all of them changes whenever
/// any version does.
pub(crate) fn mix(key: u64, version: u64) -> u64 {
    let mut z = key ^ version.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A healthy member's share of the fingerprint: its version, and its
/// incarnation too, so that two nodes that disagree on whether a member
/// refuted a suspicion see different fingerprints and reconcile. At
/// incarnation 0 this is `mix(key, version)`.
pub(crate) fn share(key: u64, incarnation: u64, version: u64) -> u64 {
    mix(
        key ^ incarnation.wrapping_mul(0xd6e8_feb8_6659_fd93),
        version,
    )
}

impl Members {
    pub fn new(me: NodeId) -> Members {
        let mut m = Members {
            me: me.key(),
            ..Members::default()
        };
        m.insert(me);
        m
    }

    pub fn me(&self) -> u64 {
        self.me
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Makes room for `additional` more members at once (exactly, where a
    /// one-by-one growth would overshoot by up to 2x).
    #[cfg(feature = "sim")]
    pub fn reserve(&mut self, additional: usize) {
        self.slots.reserve_exact(additional);
        self.peers.reserve_exact(additional);
        self.sorted.reserve_exact(additional);
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.by_key
            .reserve(additional, |&i| hasher.hash_one(slots[i as usize].key));
        self.by_name.reserve(additional, |&i| {
            hasher.hash_one(slots[i as usize].id.name.as_str())
        });
    }

    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    fn slot_of(&self, key: u64) -> Option<usize> {
        let slots = &self.slots;
        self.by_key
            .find(self.hasher.hash_one(key), |&i| slots[i as usize].key == key)
            .map(|&i| i as usize)
    }

    pub fn get(&self, key: u64) -> Option<&Known> {
        self.slot_of(key).map(|i| &self.slots[i])
    }

    pub fn key_of(&self, name: &str) -> Option<u64> {
        self.by_name(name).map(|k| k.key)
    }

    pub fn by_name(&self, name: &str) -> Option<&Known> {
        let slots = &self.slots;
        self.by_name
            .find(self.hasher.hash_one(name), |&i| {
                slots[i as usize].id.name == name
            })
            .map(|&i| &slots[i as usize])
    }

    /// Every record, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = &Known> {
        self.slots.iter()
    }

    pub fn keys(&self) -> impl Iterator<Item = u64> + '_ {
        self.slots.iter().map(|k| k.key)
    }

    /// Keys changed most recently first (each at most once).
    pub fn recent(&self) -> impl Iterator<Item = u64> + '_ {
        self.recency
            .iter()
            .rev()
            .filter(|(seq, key)| self.get(*key).is_some_and(|k| k.change_seq == *seq))
            .map(|(_, k)| *k)
    }

    /// `(position, key)` in key order from position `start` upwards,
    /// wrapping around once: a window that rotates over every member as
    /// `start` moves on, and whose every prefix is a contiguous (cyclic)
    /// range of keys.
    pub fn window(&self, start: usize) -> impl Iterator<Item = (usize, u64)> + '_ {
        let start = if start < self.sorted.len() { start } else { 0 };
        let (low, high) = self.sorted.split_at(start);
        high.iter()
            .enumerate()
            .map(move |(i, &k)| (start + i, k))
            .chain(low.iter().enumerate().map(|(i, &k)| (i, k)))
    }

    /// The keys in the cyclic range from `first` to `last`, both included
    /// (wrapping past the largest key when `last < first`).
    pub fn in_range(&self, first: u64, last: u64) -> impl Iterator<Item = u64> + '_ {
        let from = self.sorted.partition_point(|&k| k < first);
        let to = self.sorted.partition_point(|&k| k <= last);
        let (a, b): (&[u64], &[u64]) = if first <= last {
            (&self.sorted[from..to], &[])
        } else {
            (&self.sorted[from..], &self.sorted[..to])
        };
        a.iter().chain(b).copied()
    }

    /// Adds a node unknown until now (its key must be new; a name already
    /// known is taken over by this newer generation).
    pub fn insert(&mut self, id: NodeId) {
        let key = id.key();
        let seq = self.bump();
        // 2^32 records would take over 400 GiB: allocation fails first.
        let slot = self.slots.len() as u32;
        self.note_change(seq, key);
        // New members are alive, so they count in the fingerprint.
        self.fingerprint ^= share(key, 0, 0);
        let name_hash = self.hasher.hash_one(id.name.as_str());
        if self.slots.len() == self.slots.capacity() {
            // Grow by half rather than double: every engine holds a slab
            // of N records, so the slack is paid N times over.
            self.slots.reserve_exact((self.slots.len() / 2).max(4));
        }
        self.slots.push(Known {
            id,
            key,
            state: NodeState::default(),
            incarnation: 0,
            change_seq: seq,
            status: MemberStatus::Alive,
            fingerprint: 0,
            claim: None,
        });
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.by_key.insert_unique(hasher.hash_one(key), slot, |&i| {
            hasher.hash_one(slots[i as usize].key)
        });
        let name = slots[slot as usize].id.name.as_str();
        match self.by_name.entry(
            name_hash,
            |&i| slots[i as usize].id.name == name,
            |&i| hasher.hash_one(slots[i as usize].id.name.as_str()),
        ) {
            Entry::Occupied(mut e) => *e.get_mut() = slot,
            Entry::Vacant(e) => {
                e.insert(slot);
            }
        }
        let at = self.sorted.partition_point(|&k| k < key);
        self.sorted.insert(at, key);
        if key != self.me {
            self.add_peer(key);
        }
    }

    /// Removes a node and all its state.
    pub fn remove(&mut self, key: u64) -> Option<Known> {
        let slot = self.slot_of(key)?;
        if self.slots[slot].status.is_healthy() {
            self.remove_peer(key);
        }
        let hasher = &self.hasher;
        let slots = &self.slots;
        let k = &slots[slot];
        if let Ok(e) = self
            .by_key
            .find_entry(hasher.hash_one(key), |&i| i as usize == slot)
        {
            e.remove();
        }
        let name = k.id.name.as_str();
        if let Ok(e) = self
            .by_name
            .find_entry(hasher.hash_one(name), |&i| i as usize == slot)
        {
            e.remove();
        }
        // Move the last record into the hole and repoint its indexes.
        let last = slots.len() - 1;
        if slot != last {
            let moved = &slots[last];
            let (to, from) = (slot as u32, last as u32);
            if let Some(i) = self
                .by_key
                .find_mut(hasher.hash_one(moved.key), |&i| i == from)
            {
                *i = to;
            }
            if let Some(i) = self
                .by_name
                .find_mut(hasher.hash_one(moved.id.name.as_str()), |&i| i == from)
            {
                *i = to;
            }
        }
        let k = self.slots.swap_remove(slot);
        if let Ok(at) = self.sorted.binary_search(&key) {
            self.sorted.remove(at);
        }
        if k.status.is_healthy() {
            self.fingerprint ^= share(key, k.incarnation, k.state.max_version());
        }
        Some(k)
    }

    /// Sets a member's status and incarnation, keeping the peer list and
    /// the fingerprint (which covers healthy members only) right.
    pub fn set_status(&mut self, key: u64, status: MemberStatus, incarnation: u64) {
        let Some(slot) = self.slot_of(key) else {
            return;
        };
        let k = &mut self.slots[slot];
        let version = k.state.max_version();
        let was = k.status.is_healthy();
        if was {
            self.fingerprint ^= share(key, k.incarnation, version);
        }
        if status.is_healthy() {
            self.fingerprint ^= share(key, incarnation, version);
        }
        k.incarnation = incarnation;
        k.status = status;
        k.claim = None;
        if was != status.is_healthy() && key != self.me {
            if was {
                self.remove_peer(key);
            } else {
                self.add_peer(key);
            }
        }
    }

    /// Keeps the signed claim behind a member's current status (after
    /// [`set_status`](Members::set_status), which forgets the last one).
    pub fn set_claim(&mut self, key: u64, claim: Option<Box<Claim>>) {
        if let Some(slot) = self.slot_of(key) {
            self.slots[slot].claim = claim;
        }
    }

    /// Runs `f` on a node's state, keeping the fingerprint and the recency
    /// log right. Returns `None` if the node is unknown.
    pub fn with_state<R>(&mut self, key: u64, f: impl FnOnce(&mut NodeState) -> R) -> Option<R> {
        let slot = self.slot_of(key)?;
        let seq = self.next_seq;
        let k = &mut self.slots[slot];
        let before = k.state.max_version();
        let r = f(&mut k.state);
        let after = k.state.max_version();
        if before != after {
            if k.status.is_healthy() {
                let inc = k.incarnation;
                self.fingerprint ^= share(key, inc, before) ^ share(key, inc, after);
            }
            k.change_seq = seq;
            self.next_seq += 1;
            self.note_change(seq, key);
        }
        Some(r)
    }

    /// Records the fingerprint member `key` reported.
    pub fn heard_fingerprint(&mut self, key: u64, fingerprint: u64) {
        if let Some(slot) = self.slot_of(key) {
            self.slots[slot].fingerprint = fingerprint;
        }
    }

    /// Number of healthy peers (not counting us).
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// Up to `n` distinct random healthy peers, none of them `except`.
    pub fn random_peers(&self, rng: &mut StdRng, n: usize, except: Option<u64>) -> Vec<u64> {
        let mut out = Vec::with_capacity(n);
        let except_is_peer = except
            .filter(|&e| e != self.me)
            .and_then(|e| self.get(e))
            .is_some_and(|k| k.status.is_healthy());
        let candidates = self.peers.len() - usize::from(except_is_peer);
        let want = n.min(candidates);
        let mut tries = 0;
        while out.len() < want && tries < want * 8 + 16 {
            tries += 1;
            let key = self.peers[rng.random_range(0..self.peers.len())];
            if Some(key) != except && !out.contains(&key) {
                out.push(key);
            }
        }
        out
    }

    /// Healthy peer keys, not us.
    pub fn peers(&self) -> &[u64] {
        &self.peers
    }

    fn bump(&mut self) -> u64 {
        let s = self.next_seq;
        self.next_seq += 1;
        s
    }

    /// Logs a change. When the log is full, entries superseded by a later
    /// change of the same node are dropped, then the oldest until a
    /// quarter is free, so a node that changes often cannot crowd the
    /// others out and readers skip few stale entries (amortised O(1)).
    fn note_change(&mut self, seq: u64, key: u64) {
        if self.recency.len() >= RECENT_CAP {
            let mut log = std::mem::take(&mut self.recency);
            log.retain(|&(s, k)| self.get(k).is_some_and(|r| r.change_seq == s));
            while log.len() > RECENT_CAP * 3 / 4 {
                log.pop_front();
            }
            self.recency = log;
        }
        self.recency.push_back((seq, key));
    }

    fn add_peer(&mut self, key: u64) {
        if self.peers.last().is_some_and(|&last| last > key) {
            self.peers_sorted = false;
        }
        self.peers.push(key);
    }

    fn remove_peer(&mut self, key: u64) {
        let pos = if self.peers_sorted {
            self.peers.binary_search(&key).ok()
        } else {
            self.peers.iter().position(|&p| p == key)
        };
        if let Some(pos) = pos {
            // `remove`, not `swap_remove`: keeps a sorted list sorted.
            self.peers.remove(pos);
        }
    }

    /// The healthy members (us included) in key order: the ring the
    /// broadcast tree is laid over. Sorts the peer list if a change left
    /// it unsorted (new members are appended; a bulk load sorts once).
    pub fn ring(&mut self) -> Ring<'_> {
        if !self.peers_sorted {
            // The stable sort finds runs: a sorted list with a few members
            // appended is merged in linear time.
            self.peers.sort();
            self.peers_sorted = true;
        }
        Ring {
            peers: &self.peers,
            me: self.me,
            my_pos: self.peers.partition_point(|&p| p < self.me),
        }
    }
}

/// The healthy members in key order, us included (see [`Members::ring`]).
pub(crate) struct Ring<'a> {
    peers: &'a [u64],
    me: u64,
    my_pos: usize,
}

impl Ring<'_> {
    pub fn len(&self) -> usize {
        self.peers.len() + 1
    }

    /// Position of `key` in the ring; for a key not in it, the position it
    /// would take.
    pub fn position(&self, key: u64) -> usize {
        if key == self.me {
            return self.my_pos;
        }
        let p = self.peers.partition_point(|&k| k < key);
        if key > self.me { p + 1 } else { p }
    }

    /// The member at `pos` (taken modulo the ring's length).
    pub fn at(&self, pos: usize) -> u64 {
        let pos = pos % self.len();
        match pos.cmp(&self.my_pos) {
            std::cmp::Ordering::Less => self.peers[pos],
            std::cmp::Ordering::Equal => self.me,
            std::cmp::Ordering::Greater => self.peers[pos - 1],
        }
    }

    /// The children of `node` in broadcast tree number `tree` of updates
    /// to `root`'s state, us excluded, or `None` if a ring this small has
    /// no such tree.
    ///
    /// Tree 0 is the ring, rotated to start at `root`, read as a complete
    /// `fanout`-ary tree in heap order (the node `r` places after the root
    /// has children `r·fanout + 1 ..= r·fanout + fanout`). Every member
    /// that holds the same ring computes the same tree, so a change
    /// reaches each healthy member once, in about log_fanout(N) hops.
    ///
    /// Tree `j` reads the rotated ring in steps of the `j`-th multiplier
    /// coprime to its length (the ring backwards, then steps of 2, 3, 5,
    /// ...), so the trees give most members different parents: a member
    /// that one tree's lost push misses is likely reached by another's.
    pub fn children_in(
        &self,
        tree: usize,
        node: u64,
        root: u64,
        fanout: usize,
    ) -> Option<impl Iterator<Item = u64> + '_> {
        let n = self.len();
        let step = tree_step(n, tree)?;
        let back = inverse_mod(step, n)?;
        let base = self.position(root) % n;
        let rel = (self.position(node) % n + n - base) % n;
        // The node's place in this tree's order, and its children's.
        let t = mul_mod(rel, back, n);
        let first = t.saturating_mul(fanout).saturating_add(1);
        Some(
            (first..first.saturating_add(fanout))
                .take_while(move |&c| c < n)
                .map(move |c| self.at(base + mul_mod(c, step, n)))
                .filter(move |&k| k != self.me),
        )
    }
}

/// The step of broadcast tree `tree` over a ring of `n`: 1 for tree 0,
/// `n - 1` (the ring backwards) for tree 1, and for tree `j` the first
/// step at or after `n · frac(j · φ)` that is coprime to `n` and unused:
/// steps spread over the ring, so that no two trees share much of their
/// structure (small steps would: a step of 3 gives a quarter of the
/// members tree 0's parent). `None` if a ring this small has no such
/// step.
fn tree_step(n: usize, tree: usize) -> Option<usize> {
    if n < 2 {
        return (tree == 0).then_some(1);
    }
    let mut used = vec![1];
    for j in 1..=tree {
        let start = if j == 1 {
            n - 1
        } else {
            // frac(j · φ) in 64-bit fixed point, times n.
            let frac = (j as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            ((u128::from(frac) * n as u128) >> 64) as usize
        };
        let step = (0..n)
            .map(|k| (start + k) % n)
            .find(|&s| s > 1 && gcd(s, n) == 1 && !used.contains(&s))?;
        used.push(step);
    }
    used.last().copied()
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// `a · b mod n`, without overflow.
fn mul_mod(a: usize, b: usize, n: usize) -> usize {
    ((a as u128 * b as u128) % n as u128) as usize
}

/// The inverse of `a` modulo `n` (extended Euclid), if they are coprime.
fn inverse_mod(a: usize, n: usize) -> Option<usize> {
    if n == 1 {
        return Some(0);
    }
    let (mut r0, mut r1) = (n as i128, (a % n) as i128);
    let (mut t0, mut t1) = (0i128, 1i128);
    while r1 != 0 {
        let q = r0 / r1;
        (r0, r1) = (r1, r0 - q * r1);
        (t0, t1) = (t1, t0 - q * t1);
    }
    (r0 == 1).then(|| t0.rem_euclid(n as i128) as usize)
}

#[cfg(test)]
mod tests;
