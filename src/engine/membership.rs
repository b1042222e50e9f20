//! The member table: every node this node knows, its state, its liveness
//! status, and the indexes gossip needs (recency for digests, a rotating
//! cursor, a fingerprint of all versions, random peer choice).

use std::collections::{BTreeSet, HashMap};

use rand::Rng;
use rand::rngs::StdRng;

use super::NodeId;
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
#[derive(Debug)]
pub(crate) struct Known {
    pub id: NodeId,
    pub state: NodeState,
    pub status: MemberStatus,
    pub incarnation: u64,
    /// Position in the recency index (larger = changed more recently).
    pub change_seq: u64,
}

/// The table, keyed by node key (name + generation).
#[derive(Debug, Default)]
pub(crate) struct Members {
    table: HashMap<u64, Known>,
    by_name: HashMap<String, u64>,
    /// Every key, for the digest's rotating window.
    order: BTreeSet<u64>,
    /// (change_seq, key), newest last.
    recency: BTreeSet<(u64, u64)>,
    next_seq: u64,
    /// Healthy peers (not us), for random choice.
    peers: Vec<u64>,
    peer_pos: HashMap<u64, usize>,
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
        self.table.len()
    }

    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    pub fn get(&self, key: u64) -> Option<&Known> {
        self.table.get(&key)
    }

    pub fn key_of(&self, name: &str) -> Option<u64> {
        self.by_name.get(name).copied()
    }

    pub fn by_name(&self, name: &str) -> Option<&Known> {
        self.table.get(self.by_name.get(name)?)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&u64, &Known)> {
        self.table.iter()
    }

    pub fn keys(&self) -> impl Iterator<Item = u64> + '_ {
        self.order.iter().copied()
    }

    /// Keys changed most recently first.
    pub fn recent(&self) -> impl Iterator<Item = u64> + '_ {
        self.recency.iter().rev().map(|(_, k)| *k)
    }

    /// Keys from `start` (inclusive) upwards, wrapping around once.
    pub fn window(&self, start: u64) -> impl Iterator<Item = u64> + '_ {
        self.order
            .range(start..)
            .chain(self.order.range(..start))
            .copied()
    }

    /// Adds a node unknown until now (its name must be free).
    pub fn insert(&mut self, id: NodeId) {
        let key = id.key();
        let seq = self.bump();
        self.by_name.insert(id.name.clone(), key);
        self.order.insert(key);
        self.recency.insert((seq, key));
        // New members are alive, so they count in the fingerprint.
        self.fingerprint ^= mix(key, 0);
        if key != self.me {
            self.add_peer(key);
        }
        self.table.insert(
            key,
            Known {
                id,
                state: NodeState::default(),
                status: MemberStatus::Alive,
                incarnation: 0,
                change_seq: seq,
            },
        );
    }

    /// Removes a node and all its state.
    pub fn remove(&mut self, key: u64) -> Option<Known> {
        let k = self.table.remove(&key)?;
        if self.by_name.get(&k.id.name) == Some(&key) {
            self.by_name.remove(&k.id.name);
        }
        self.order.remove(&key);
        self.recency.remove(&(k.change_seq, key));
        if k.status.is_healthy() {
            self.fingerprint ^= mix(key, k.state.max_version());
        }
        self.remove_peer(key);
        Some(k)
    }

    /// Sets a member's status and incarnation, keeping the peer list and
    /// the fingerprint (which covers healthy members only) right.
    pub fn set_status(&mut self, key: u64, status: MemberStatus, incarnation: u64) {
        let Some(k) = self.table.get_mut(&key) else {
            return;
        };
        k.incarnation = incarnation;
        if k.status.is_healthy() != status.is_healthy() {
            self.fingerprint ^= mix(key, k.state.max_version());
        }
        k.status = status;
        if key != self.me {
            if status.is_healthy() {
                self.add_peer(key);
            } else {
                self.remove_peer(key);
            }
        }
    }

    /// Runs `f` on a node's state, keeping the fingerprint and the recency
    /// index right. Returns `None` if the node is unknown.
    pub fn with_state<R>(&mut self, key: u64, f: impl FnOnce(&mut NodeState) -> R) -> Option<R> {
        let seq = self.next_seq;
        let k = self.table.get_mut(&key)?;
        let before = k.state.max_version();
        let r = f(&mut k.state);
        let after = k.state.max_version();
        if before != after {
            if k.status.is_healthy() {
                self.fingerprint ^= mix(key, before) ^ mix(key, after);
            }
            self.recency.remove(&(k.change_seq, key));
            k.change_seq = seq;
            self.recency.insert((seq, key));
            self.next_seq += 1;
        }
        Some(r)
    }

    /// Number of healthy peers (not counting us).
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// Up to `n` distinct random healthy peers, none of them `except`.
    pub fn random_peers(&self, rng: &mut StdRng, n: usize, except: Option<u64>) -> Vec<u64> {
        let mut out = Vec::with_capacity(n);
        let candidates =
            self.peers.len() - usize::from(except.is_some_and(|e| self.peer_pos.contains_key(&e)));
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

    fn add_peer(&mut self, key: u64) {
        if self.peer_pos.contains_key(&key) {
            return;
        }
        self.peer_pos.insert(key, self.peers.len());
        self.peers.push(key);
    }

    fn remove_peer(&mut self, key: u64) {
        let Some(pos) = self.peer_pos.remove(&key) else {
            return;
        };
        self.peers.swap_remove(pos);
        if let Some(moved) = self.peers.get(pos) {
            self.peer_pos.insert(*moved, pos);
        }
    }
}
