//! Sealing datagrams: AEAD framing, keyring, anti-replay. Pure: no sockets,
//! no clock, no async.
//!
//! An application needs only the keys: a [`Key`] (32 secret bytes, loaded
//! from base64 or a file, or generated), its public name [`KeyId`], the
//! [`Keyring`] a node seals and opens with (the primary seals, every
//! installed key opens; rotation is install → use → remove) and the
//! [`Cipher`] to seal with. `transport::Encrypted` does the rest.
//!
//! A *sealed frame* is one datagram: an 18-byte header in the clear, the
//! ciphertext, and a 16-byte tag: 34 bytes of [`OVERHEAD`]. The header and the cluster label are the
//! authenticated data, so nothing in a frame can be changed, and a frame
//! sealed for cluster `a` does not open in cluster `b`. `docs/SECURITY.md`
//! gives the format byte by byte and the threat model; this module is its
//! implementation.
//!
//! # Layout
//!
//! * `key` — [`Key`], [`KeyId`] (a public 8-byte name derived from the key)
//!   and [`KeyHint`] (the id's first 4 bytes, which name the key in a frame).
//! * `keyring` — [`Keyring`], the shared set of installed keys.
//! * `cipher` — [`Cipher`] (AES-256-GCM, ChaCha20-Poly1305,
//!   XChaCha20-Poly1305) and the per-session subkey derivation.
//! * `frame` — the header, the `Sealer` (one per process boot), the
//!   `Opener` (one per receiver) and their errors.
//! * `replay` — `ReplayWindow`, the RFC 6479 sliding window.
//! * `session` — the random session ids and the opener's session cache.
//!
//! Only the key types, [`Cipher`], [`OVERHEAD`] and [`DropReason`] are
//! public: the frame machinery is `transport::Encrypted`'s business.
//!
//! # Nonces in one paragraph
//!
//! Every `Sealer` picks a random 64-bit session id when it is created (at
//! every boot) and derives its own subkey with HKDF-SHA256 from the cluster
//! key, the session id and the cipher. The nonce is a 40-bit counter that
//! starts at 0 and only grows; when it reaches 2^40 the sealer picks a fresh
//! session id and starts again at 0. A (subkey, counter) pair is therefore
//! never used twice within a session, and two sessions share a subkey only
//! if two draws of a 64-bit random id under the same key collide: after n
//! sessions per key, a chance of about n² / 2^65 (birthday bound: safe far
//! beyond a million boots, meaningful only near 2^32 sessions per key).
//! `docs/SECURITY.md` gives the full argument.
//!
//! # What the transport does with this
//!
//! `transport::Encrypted` seals every outbound datagram with a `Sealer`,
//! opens every inbound one with an `Opener`, and counts each drop under its
//! [`DropReason`].

mod cipher;
// `pub(crate)`: `crate::__private::seal` re-exports the frame machinery for
// the fuzz target, the bench and the tests.
pub(crate) mod frame;
mod key;
mod keyring;
mod replay;
mod session;

pub use cipher::Cipher;
pub use frame::OVERHEAD;
pub use key::{KEY_HINT_LEN, KEY_ID_LEN, KEY_LEN, Key, KeyError, KeyHint, KeyId};
pub use keyring::{Keyring, KeyringError};

pub(crate) use frame::{OpenError, Opener, SealError, Sealer, is_plaintext};
pub(crate) use session::DEFAULT_MAX_SESSIONS;

/// The buckets inbound drops are counted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Not a well-formed frame: wrong length, unknown version or cipher.
    Malformed,
    /// Sealed under a key the keyring does not hold (no installed key
    /// matches the frame's key hint).
    UnknownKey,
    /// The tag did not verify (tampering, wrong key, wrong cluster label).
    Auth,
    /// Authentic, but already received or older than the replay window.
    Replay,
    /// A plaintext datagram while plaintext is not accepted.
    PlaintextRefused,
}

impl DropReason {
    /// A short lowercase name for logs and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::UnknownKey => "unknown_key",
            DropReason::Auth => "auth",
            DropReason::Replay => "replay",
            DropReason::PlaintextRefused => "plaintext_refused",
        }
    }
}

impl std::fmt::Display for DropReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Writes `bytes` as lowercase hex (how key ids, hints and session ids
/// are shown).
fn write_hex(f: &mut std::fmt::Formatter<'_>, bytes: &[u8]) -> std::fmt::Result {
    bytes.iter().try_for_each(|b| write!(f, "{b:02x}"))
}
