//! Sealing datagrams: AEAD framing, keyring, anti-replay. Pure: no sockets,
//! no clock, no async.
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
//! * [`key`] — [`Key`] (32 secret bytes, loaded from base64 or a file, or
//!   generated), [`KeyId`] (a public 8-byte name derived from the key) and
//!   [`KeyHint`] (the id's first 4 bytes, which name the key in a frame).
//! * [`keyring`] — [`Keyring`], the shared set of installed keys: the primary
//!   seals, every installed key opens; rotation is install → use → remove.
//! * [`cipher`] — [`Cipher`] (AES-256-GCM, ChaCha20-Poly1305,
//!   XChaCha20-Poly1305) and the per-session subkey derivation.
//! * [`frame`] — the header, [`Sealer`] (one per process boot) and
//!   [`Opener`] (one per receiver).
//! * [`replay`] — [`ReplayWindow`], the RFC 6479 sliding window.
//!
//! # Nonces in one paragraph
//!
//! Every [`Sealer`] picks a random 64-bit session id when it is created (at
//! every boot) and derives its own subkey with HKDF-SHA256 from the cluster
//! key, the session id and the cipher. The nonce is a 40-bit counter that
//! starts at 0 and only grows; when it reaches [`REKEY_AFTER`] (2^40) the
//! sealer picks a fresh session id and starts again at 0. A (subkey,
//! counter) pair is therefore never used twice within a session, and two
//! sessions share a subkey only if two draws of a 64-bit random id under the
//! same key collide: after n sessions per key, a chance of about n² / 2^65
//! (birthday bound: safe far beyond a million boots, meaningful only near
//! 2^32 sessions per key). `docs/SECURITY.md` gives the full argument.
//!
//! # What the transport does with this
//!
//! `transport::Encrypted` seals every outbound datagram with a [`Sealer`],
//! opens every inbound one with an [`Opener`], and counts each drop under its
//! [`DropReason`].

pub mod cipher;
pub mod frame;
pub mod key;
pub mod keyring;
pub mod replay;
mod session;

pub use cipher::Cipher;
pub use frame::{
    HEADER_LEN, MAX_FRAME_LEN, OVERHEAD, Opener, PLAINTEXT_FIRST_BYTE, REKEY_AFTER, Sealer,
    TAG_LEN, VERSION_V1, first_byte, is_plaintext,
};
pub use key::{KEY_HINT_LEN, KEY_ID_LEN, KEY_LEN, Key, KeyError, KeyHint, KeyId};
pub use keyring::{Keyring, KeyringError};
pub use replay::{REPLAY_WINDOW, ReplayWindow};
pub use session::{DEFAULT_MAX_SESSIONS, SessionId};

/// Why sealing a datagram failed. Nothing was produced; the sealer's state
/// is unchanged except where a variant says otherwise.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The plaintext is larger than a sealed frame can carry
    /// ([`MAX_FRAME_LEN`] minus [`OVERHEAD`]).
    #[error("plaintext of {len} bytes exceeds the sealing limit of {max} bytes")]
    TooLarge {
        /// Size of the refused plaintext.
        len: usize,
        /// The largest plaintext that can be sealed.
        max: usize,
    },
    /// The operating system's random number generator failed while picking a
    /// session id. Without a fresh session id the sealer cannot guarantee
    /// unique nonces, so it refuses to seal.
    #[error("operating system random number generator failed: {0}")]
    Rng(getrandom::Error),
    /// Deriving or using the session subkey failed inside the cryptographic
    /// library. Not expected to happen; reported rather than panicking.
    #[error("cryptographic primitive failed")]
    Crypto,
}

/// Why an inbound datagram was dropped by [`Opener::open`].
///
/// Every variant means the datagram was discarded and the opener's state
/// (sessions, replay windows) did not change, except that a frame which
/// authenticated may have refreshed its session's position in the cache.
/// [`OpenError::reason`] groups the variants into the buckets a node counts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Shorter than a header plus a tag (this includes the empty datagram).
    #[error("frame of {len} bytes is shorter than the {OVERHEAD}-byte minimum")]
    TooShort {
        /// Length of the datagram.
        len: usize,
    },
    /// Longer than any datagram a transport may carry ([`MAX_FRAME_LEN`]).
    #[error("frame of {len} bytes exceeds the {MAX_FRAME_LEN}-byte maximum")]
    TooLarge {
        /// Length of the datagram.
        len: usize,
    },
    /// The first byte's high nibble is not [`VERSION_V1`]'s and the byte is
    /// not the plaintext marker: a frame version this build does not know,
    /// or garbage. Carries the whole first byte.
    #[error("unsupported frame version byte {0:#04x}")]
    UnsupportedVersion(u8),
    /// The first byte is a version-1 byte, but its low nibble names no
    /// cipher this build supports. Carries the low nibble.
    #[error("unknown cipher id {0}")]
    UnknownCipher(u8),
    /// The datagram is a plaintext wire packet (first byte
    /// [`PLAINTEXT_FIRST_BYTE`]) and plaintext is not accepted.
    #[error("plaintext datagram refused")]
    Plaintext,
    /// No installed key's id starts with the key hint in the header (the
    /// key was never installed, or was already removed). Carries the hint,
    /// the first 4 bytes of the sealing key's [`KeyId`].
    #[error("no installed key has an id starting with {0}")]
    UnknownKey(KeyHint),
    /// The tag did not verify under any installed key matching the key
    /// hint: the frame was altered, sealed under another key whose id
    /// shares the hint, or sealed for another cluster label.
    #[error("authentication failed")]
    Auth,
    /// The frame authenticated but its counter was already seen in this
    /// session, or is older than the replay window.
    #[error("replayed or too old (counter {counter})")]
    Replay {
        /// The frame's counter.
        counter: u64,
    },
}

impl OpenError {
    /// The counting bucket this drop belongs to.
    pub fn reason(&self) -> DropReason {
        match self {
            OpenError::TooShort { .. }
            | OpenError::TooLarge { .. }
            | OpenError::UnsupportedVersion(_)
            | OpenError::UnknownCipher(_) => DropReason::Malformed,
            OpenError::Plaintext => DropReason::PlaintextRefused,
            OpenError::UnknownKey(_) => DropReason::UnknownKey,
            OpenError::Auth => DropReason::Auth,
            OpenError::Replay { .. } => DropReason::Replay,
        }
    }
}

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
