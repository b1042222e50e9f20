//! The keyring: which keys a node seals with and opens with.
//!
//! One key is *primary* and seals every outbound frame; every installed key
//! (the primary included) opens inbound frames. Rotating a live cluster's key
//! loses no packet if done in three steps, each completed on every member
//! before the next begins:
//!
//! 1. `install(new)` everywhere — everyone can open frames under `new`;
//! 2. `use_key(new.id())` everywhere — senders switch; frames still in
//!    flight under the old key keep opening;
//! 3. `remove(old)` everywhere — frames under the old key are now refused.
//!
//! [`Keyring`] is a cheap cloneable handle: the transport and the node
//! handle share one set of keys, so a rotation takes effect on the next
//! datagram.

use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::key::{Key, KeyHint, KeyId};

/// Why a keyring change was refused. A refused change leaves the keyring as
/// it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyringError {
    /// No installed key has this id.
    #[error("no installed key has id {0}")]
    UnknownKey(KeyId),
    /// The key is the primary; make another key primary first.
    #[error("key {0} is the primary key; use another key before removing it")]
    RemovePrimary(KeyId),
}

/// A shared, thread-safe set of installed keys with one primary.
///
/// Cloning gives another handle to the same keyring.
#[derive(Clone)]
pub struct Keyring {
    inner: Arc<RwLock<State>>,
}

struct State {
    primary: Key,
    /// The other installed keys, oldest first; never contains the primary.
    others: Vec<Key>,
}

impl State {
    fn position(&self, id: KeyId) -> Option<usize> {
        self.others.iter().position(|k| k.id() == id)
    }
}

impl Keyring {
    /// A keyring holding `primary` as its only key.
    pub fn new(primary: Key) -> Keyring {
        Keyring {
            inner: Arc::new(RwLock::new(State {
                primary,
                others: Vec::new(),
            })),
        }
    }

    /// Installs `key` for opening (it does not become primary) and returns
    /// its id. Installing a key that is already installed changes nothing.
    pub fn install(&self, key: Key) -> KeyId {
        let id = key.id();
        let mut state = self.write();
        if state.primary.id() != id && state.position(id).is_none() {
            state.others.push(key);
        }
        id
    }

    /// Makes the installed key `id` the primary: every frame sealed from now
    /// on uses it. The previous primary stays installed for opening.
    pub fn use_key(&self, id: KeyId) -> Result<(), KeyringError> {
        let mut state = self.write();
        if state.primary.id() == id {
            return Ok(());
        }
        let index = state.position(id).ok_or(KeyringError::UnknownKey(id))?;
        let new = state.others.remove(index);
        let old = std::mem::replace(&mut state.primary, new);
        state.others.push(old);
        Ok(())
    }

    /// Uninstalls `id`: frames sealed under it no longer open. Refuses the
    /// primary key and unknown ids.
    pub fn remove(&self, id: KeyId) -> Result<(), KeyringError> {
        let mut state = self.write();
        if state.primary.id() == id {
            return Err(KeyringError::RemovePrimary(id));
        }
        let index = state.position(id).ok_or(KeyringError::UnknownKey(id))?;
        state.others.remove(index);
        Ok(())
    }

    /// The installed keys' ids: the primary first, then the others, oldest
    /// first.
    pub fn list(&self) -> Vec<KeyId> {
        let state = self.read();
        std::iter::once(&state.primary)
            .chain(&state.others)
            .map(Key::id)
            .collect()
    }

    /// The primary key's id.
    pub fn primary(&self) -> KeyId {
        self.read().primary.id()
    }

    /// Whether `id` is installed.
    pub fn contains(&self, id: KeyId) -> bool {
        let state = self.read();
        state.primary.id() == id || state.position(id).is_some()
    }

    /// A copy of the primary key, for sealing.
    pub(crate) fn primary_key(&self) -> Key {
        self.read().primary.clone()
    }

    /// Copies of the installed keys whose id starts with `hint`, primary
    /// first, appended to `out` (a buffer the caller reuses, so opening a
    /// frame does not allocate). Normally one key or none; two installed
    /// keys share a hint with probability 2^-32.
    pub(crate) fn keys_matching(&self, hint: KeyHint, out: &mut Vec<Key>) {
        let state = self.read();
        out.extend(
            std::iter::once(&state.primary)
                .chain(&state.others)
                .filter(|k| hint.matches(k.id()))
                .cloned(),
        );
    }

    // A panic in another thread while holding the lock cannot leave `State`
    // half-updated in a way that matters (the primary is always a valid
    // key), so a poisoned lock is safe to keep using.
    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("primary", &self.primary())
            .field("keys", &self.list())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> Key {
        Key::from_bytes(&[byte; 32]).unwrap()
    }

    #[test]
    fn the_first_key_is_primary() {
        let ring = Keyring::new(key(1));
        assert_eq!(ring.primary(), key(1).id());
        assert_eq!(ring.list(), vec![key(1).id()]);
    }

    #[test]
    fn rotation_is_install_use_remove() {
        let ring = Keyring::new(key(1));
        let new = ring.install(key(2));
        assert_eq!(ring.primary(), key(1).id(), "install does not switch");
        assert_eq!(ring.list(), vec![key(1).id(), new]);

        ring.use_key(new).unwrap();
        assert_eq!(ring.primary(), new);
        assert_eq!(ring.list(), vec![new, key(1).id()]);
        assert_eq!(ring.primary_key().id(), new);

        ring.remove(key(1).id()).unwrap();
        assert_eq!(ring.list(), vec![new]);
        assert!(!ring.contains(key(1).id()));
        let mut found = Vec::new();
        ring.keys_matching(key(1).id().hint(), &mut found);
        assert!(found.is_empty());
    }

    #[test]
    fn the_primary_cannot_be_removed() {
        let ring = Keyring::new(key(1));
        assert_eq!(
            ring.remove(key(1).id()),
            Err(KeyringError::RemovePrimary(key(1).id()))
        );
        assert!(ring.contains(key(1).id()));
    }

    #[test]
    fn unknown_ids_are_refused() {
        let ring = Keyring::new(key(1));
        let stranger = key(9).id();
        assert_eq!(
            ring.use_key(stranger),
            Err(KeyringError::UnknownKey(stranger))
        );
        assert_eq!(
            ring.remove(stranger),
            Err(KeyringError::UnknownKey(stranger))
        );
        assert_eq!(ring.primary(), key(1).id());
    }

    #[test]
    fn installing_twice_is_harmless_and_clones_share_state() {
        let ring = Keyring::new(key(1));
        let other = ring.clone();
        other.install(key(2));
        other.install(key(2));
        assert_eq!(ring.list().len(), 2);
    }

    #[test]
    fn keys_matching_a_hint_are_found_primary_first() {
        let (a, b) = crate::seal::key::keys_sharing_a_hint();
        assert_eq!(a.id().hint(), b.id().hint());
        assert_ne!(a.id(), b.id());
        let ring = Keyring::new(key(1));
        ring.install(a.clone());
        ring.install(key(2));
        ring.install(b.clone());

        let ids = |hint| {
            let mut found = Vec::new();
            ring.keys_matching(hint, &mut found);
            found.iter().map(Key::id).collect::<Vec<_>>()
        };
        assert_eq!(ids(a.id().hint()), vec![a.id(), b.id()]);
        assert_eq!(ids(key(2).id().hint()), vec![key(2).id()]);
        assert_eq!(ids(key(9).id().hint()), vec![]);

        ring.use_key(b.id()).unwrap();
        assert_eq!(ids(a.id().hint()), vec![b.id(), a.id()], "primary first");
        ring.remove(a.id()).unwrap();
        assert_eq!(ids(a.id().hint()), vec![b.id()]);
    }

    #[test]
    fn debug_shows_ids_only() {
        let ring = Keyring::new(key(0xcd));
        let debug = format!("{ring:?}");
        assert!(!debug.contains("cdcd"), "{debug}");
        assert!(!debug.contains(&key(0xcd).to_base64()), "{debug}");
    }
}
