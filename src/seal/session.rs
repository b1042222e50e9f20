//! Sender sessions: the random id a sealer picks at boot, and the receiver's
//! bounded cache of per-session state.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;

/// Length of a [`SessionId`] in bytes.
pub(crate) const SESSION_ID_LEN: usize = 8;

/// Default bound on the sender sessions an opener remembers (each costs
/// about 300 bytes: a raw subkey and a replay window).
pub const DEFAULT_MAX_SESSIONS: usize = 4096;

/// A random 64-bit name one sealer picks for itself at creation (that is,
/// at every boot) and again whenever its counter reaches
/// [`REKEY_AFTER`](super::frame::REKEY_AFTER), and carries in every frame. Distinct
/// sessions have distinct subkeys, so counters may restart at zero without
/// reusing a nonce. Two sessions under one key get the same id only by a
/// birthday collision: about one chance in 2^64 / n² after n sessions (see
/// `docs/SECURITY.md`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId([u8; SESSION_ID_LEN]);

impl SessionId {
    /// A fresh id from the operating system's CSPRNG.
    // Fresh OS randomness at every boot is what keeps nonces unique across
    // restarts (docs/SECURITY.md); a seeded RNG passed in could repeat.
    #[allow(clippy::disallowed_methods)]
    pub(crate) fn random() -> Result<SessionId, getrandom::Error> {
        let mut id = [0u8; SESSION_ID_LEN];
        getrandom::fill(&mut id)?;
        Ok(SessionId(id))
    }

    /// The id as it appears in a frame header.
    pub fn to_bytes(self) -> [u8; SESSION_ID_LEN] {
        self.0
    }

    /// An id read from a frame header.
    pub(crate) fn from_bytes(bytes: [u8; SESSION_ID_LEN]) -> SessionId {
        SessionId(bytes)
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        super::write_hex(f, &self.0)
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({self})")
    }
}

/// A map with a hard size bound that forgets the least recently used
/// entries in bulk ("two generations", as in a generational cache): entries
/// live in `young`; when `young` fills up it becomes `old` and the previous
/// `old` is dropped. Looking up an `old` entry moves it back to `young`.
///
/// Every operation is O(1) on average and the total size never exceeds
/// `2 × half`. An entry is forgotten only after at least `half` other
/// entries were inserted since it was last used.
pub(crate) struct SessionCache<K, V> {
    young: HashMap<K, V>,
    old: HashMap<K, V>,
    half: usize,
}

impl<K: Hash + Eq + Copy, V> SessionCache<K, V> {
    /// A cache holding at most `max_entries` (at least 2) entries.
    pub(crate) fn new(max_entries: usize) -> SessionCache<K, V> {
        SessionCache {
            young: HashMap::new(),
            old: HashMap::new(),
            half: (max_entries / 2).max(1),
        }
    }

    pub(crate) fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        if !self.young.contains_key(key) {
            let value = self.old.remove(key)?;
            self.insert(*key, value);
        }
        self.young.get_mut(key)
    }

    pub(crate) fn insert(&mut self, key: K, value: V) {
        if self.young.len() >= self.half && !self.young.contains_key(&key) {
            self.old = std::mem::take(&mut self.young);
        }
        self.old.remove(&key);
        self.young.insert(key, value);
    }

    pub(crate) fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_never_exceeds_its_bound() {
        let mut cache = SessionCache::new(8);
        for i in 0..1000u32 {
            cache.insert(i, i);
            assert!(cache.len() <= 8);
        }
    }

    #[test]
    fn an_entry_in_use_survives_a_flood_of_new_ones() {
        let mut cache = SessionCache::new(8);
        cache.insert(u32::MAX, 7);
        for i in 0..1000u32 {
            cache.insert(i, i);
            assert_eq!(cache.get_mut(&u32::MAX), Some(&mut 7), "after {i}");
        }
    }

    #[test]
    fn an_idle_entry_is_eventually_forgotten() {
        let mut cache = SessionCache::new(8);
        cache.insert(u32::MAX, 7);
        for i in 0..8u32 {
            cache.insert(i, i);
        }
        assert_eq!(cache.get_mut(&u32::MAX), None);
    }

    #[test]
    fn session_ids_are_random() {
        let a = SessionId::random().unwrap();
        let b = SessionId::random().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.to_string().len(), 16);
    }
}
