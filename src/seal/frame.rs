//! The sealed frame: header, [`Sealer`] and [`Opener`].
//!
//! ```text
//! offset  len  field
//!      0    1  version/cipher  0xC0 | cipher id: 0xC1 AES-256-GCM, 0xC2 ChaCha20-Poly1305,
//!                              0xC3 XChaCha20-Poly1305 (never 0x08, the first byte of a
//!                              plaintext packet)
//!      1    4  key hint        the first 4 bytes of the KeyId of the key the subkey was
//!                              derived from
//!      5    8  session id      the sender's random session (per boot, and per 2^40 frames)
//!     13    5  counter         40-bit big-endian; the nonce; < 2^40 by construction
//!     18    n  ciphertext      same length as the plaintext
//!   18+n   16  tag
//! ```
//!
//! Overhead: 18 + 16 = 34 bytes. Authenticated data: the 18 header bytes
//! followed by the UTF-8 bytes of the cluster label. The subkey is
//! HKDF-SHA256(cluster key, session id, "scuttlewire seal v1" ‖ cipher id);
//! see [`super::cipher`].
//!
//! The header names the key by a 4-byte hint, not its full 8-byte id: the
//! opener tries every installed key whose id starts with the hint (normally
//! exactly one) and the first whose tag verifies opens the frame.

use super::DropReason;
use super::cipher::{Cipher, SessionKey, SessionSecret};
use super::key::{KEY_HINT_LEN, Key, KeyHint, KeyId};
use super::keyring::Keyring;
use super::replay::ReplayWindow;
use super::session::{DEFAULT_MAX_SESSIONS, SESSION_ID_LEN, SessionCache, SessionId};

/// Why sealing a datagram failed. Nothing was produced; the sealer's state
/// is unchanged except where a variant says otherwise.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The plaintext is larger than a sealed frame can carry
    /// (`MAX_FRAME_LEN` minus [`OVERHEAD`]).
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
    /// Longer than any datagram a transport may carry (`MAX_FRAME_LEN`).
    #[error("frame of {len} bytes exceeds the {MAX_FRAME_LEN}-byte maximum")]
    TooLarge {
        /// Length of the datagram.
        len: usize,
    },
    /// The first byte's high nibble is not `VERSION_V1`'s and the byte is
    /// not the plaintext marker: a frame version this build does not know,
    /// or garbage. Carries the whole first byte.
    #[error("unsupported frame version byte {0:#04x}")]
    UnsupportedVersion(u8),
    /// The first byte is a version-1 byte, but its low nibble names no
    /// cipher this build supports. Carries the low nibble.
    #[error("unknown cipher id {0}")]
    UnknownCipher(u8),
    /// The datagram is a plaintext wire packet (first byte
    /// `PLAINTEXT_FIRST_BYTE`) and plaintext is not accepted.
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

/// High nibble of the first byte of every version-1 sealed frame; the low
/// nibble is the cipher id (see [`first_byte`]).
pub const VERSION_V1: u8 = 0xC0;

/// The bits of the first byte that carry the frame version.
const VERSION_MASK: u8 = 0xF0;

/// First byte of every plaintext wire packet (protobuf field 1, varint: the
/// wire version). A sealed frame never starts with it, which is how a
/// receiver in rolling-enablement mode tells the two apart.
pub const PLAINTEXT_FIRST_BYTE: u8 = 0x08;

/// Length of the counter field in bytes.
const COUNTER_LEN: usize = 5;

/// Length of the cleartext header in bytes.
pub const HEADER_LEN: usize = 1 + KEY_HINT_LEN + SESSION_ID_LEN + COUNTER_LEN;

/// Length of the authentication tag in bytes.
pub const TAG_LEN: usize = super::cipher::TAG_LEN;

/// Bytes sealing adds to a plaintext: a sealed frame is exactly
/// `plaintext.len() + OVERHEAD` bytes long.
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;

/// Largest datagram accepted (the IPv4 UDP payload limit, as
/// `transport::MAX_DATAGRAM`).
pub const MAX_FRAME_LEN: usize = 65_507;

/// A sealer moves to a fresh random session when its counter reaches this
/// value, so every counter it uses fits the 40-bit field; an opener cannot
/// receive a counter at or above it, because the field cannot hold one. At a
/// million frames a second a session lasts 12.7 days.
pub const REKEY_AFTER: u64 = 1 << 40;

// The counter field holds exactly the counters below REKEY_AFTER: every
// counter a sealer uses can be written, and no frame can name a larger one.
const _: () = assert!(REKEY_AFTER == 1 << (8 * COUNTER_LEN));
// The version nibble must never make a frame look like plaintext.
const _: () = assert!(PLAINTEXT_FIRST_BYTE & VERSION_MASK != VERSION_V1);

// Header field offsets.
const HINT_AT: usize = 1;
const SESSION_AT: usize = HINT_AT + KEY_HINT_LEN;
const COUNTER_AT: usize = SESSION_AT + SESSION_ID_LEN;

/// The first byte of a version-1 frame sealed with `cipher`:
/// `VERSION_V1` | `Cipher::wire_id` (`0xC1`, `0xC2` or `0xC3`).
pub const fn first_byte(cipher: Cipher) -> u8 {
    VERSION_V1 | cipher.wire_id()
}

/// Whether `datagram` is a plaintext wire packet rather than a sealed frame.
pub fn is_plaintext(datagram: &[u8]) -> bool {
    datagram.first() == Some(&PLAINTEXT_FIRST_BYTE)
}

/// The parsed cleartext header of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Header {
    cipher: Cipher,
    key_hint: KeyHint,
    session: SessionId,
    counter: u64,
}

impl Header {
    fn encode(&self) -> [u8; HEADER_LEN] {
        debug_assert!(self.counter < REKEY_AFTER, "counter {}", self.counter);
        let mut out = [0u8; HEADER_LEN];
        out[0] = first_byte(self.cipher);
        out[HINT_AT..SESSION_AT].copy_from_slice(&self.key_hint.to_bytes());
        out[SESSION_AT..COUNTER_AT].copy_from_slice(&self.session.to_bytes());
        out[COUNTER_AT..].copy_from_slice(&self.counter.to_be_bytes()[8 - COUNTER_LEN..]);
        out
    }

    /// Parses and checks the header of `frame`, and splits off the
    /// ciphertext and tag. Checks are ordered so the cheapest come first.
    fn parse(frame: &[u8]) -> Result<(Header, &[u8], [u8; TAG_LEN]), OpenError> {
        let len = frame.len();
        if len > MAX_FRAME_LEN {
            return Err(OpenError::TooLarge { len });
        }
        let first = match frame.first() {
            None => return Err(OpenError::TooShort { len }),
            Some(&PLAINTEXT_FIRST_BYTE) => return Err(OpenError::Plaintext),
            Some(&byte) if byte & VERSION_MASK == VERSION_V1 => byte,
            Some(&other) => return Err(OpenError::UnsupportedVersion(other)),
        };
        let too_short = OpenError::TooShort { len };
        let (head, rest) = frame
            .split_first_chunk::<HEADER_LEN>()
            .ok_or(too_short.clone())?;
        let (ciphertext, tag) = rest
            .split_last_chunk::<TAG_LEN>()
            .ok_or(too_short.clone())?;

        let cipher_id = first & !VERSION_MASK;
        let cipher = Cipher::from_wire_id(cipher_id).ok_or(OpenError::UnknownCipher(cipher_id))?;
        let (key_hint, session, counter) = split_fields(head);
        let header = Header {
            cipher,
            key_hint: KeyHint::from_bytes(key_hint),
            session: SessionId::from_bytes(session),
            counter,
        };
        Ok((header, ciphertext, *tag))
    }
}

/// Splits the fixed-size fields out of a header without any fallible
/// indexing. The counter is below [`REKEY_AFTER`] by the field's width.
fn split_fields(head: &[u8; HEADER_LEN]) -> ([u8; KEY_HINT_LEN], [u8; SESSION_ID_LEN], u64) {
    let mut key_hint = [0u8; KEY_HINT_LEN];
    let mut session = [0u8; SESSION_ID_LEN];
    let mut counter = [0u8; 8];
    key_hint.copy_from_slice(&head[HINT_AT..SESSION_AT]);
    session.copy_from_slice(&head[SESSION_AT..COUNTER_AT]);
    counter[8 - COUNTER_LEN..].copy_from_slice(&head[COUNTER_AT..]);
    (key_hint, session, u64::from_be_bytes(counter))
}

/// Header bytes followed by the cluster label: the authenticated data.
fn fill_aad(aad: &mut Vec<u8>, header: &[u8; HEADER_LEN], label: &[u8]) {
    aad.clear();
    aad.extend_from_slice(header);
    aad.extend_from_slice(label);
}

/// Seals outbound datagrams for one sender. Create exactly one per process
/// boot and transport, and never clone its state: its session id and
/// counter are what make every nonce unique.
pub struct Sealer {
    cipher: Cipher,
    label: Box<[u8]>,
    session: SessionId,
    /// The counter the next frame gets.
    next: u64,
    /// The subkey of the key last sealed with, under `session`.
    keyed: Option<(KeyId, SessionKey)>,
    aad: Vec<u8>,
}

impl Sealer {
    /// A sealer with a fresh random session for `cluster_label`.
    pub fn new(cipher: Cipher, cluster_label: &str) -> Result<Sealer, SealError> {
        let session = SessionId::random().map_err(SealError::Rng)?;
        Ok(Sealer {
            cipher,
            label: cluster_label.as_bytes().into(),
            session,
            next: 0,
            keyed: None,
            aad: Vec::new(),
        })
    }

    /// The cipher frames are sealed with.
    pub fn cipher(&self) -> Cipher {
        self.cipher
    }

    /// The current session id (changes only after [`REKEY_AFTER`] frames).
    pub fn session(&self) -> SessionId {
        self.session
    }

    /// Seals `plaintext` under `key` (normally the keyring's primary) into a
    /// frame of exactly `plaintext.len() + OVERHEAD` bytes.
    pub fn seal(&mut self, key: &Key, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let max = MAX_FRAME_LEN - OVERHEAD;
        if plaintext.len() > max {
            return Err(SealError::TooLarge {
                len: plaintext.len(),
                max,
            });
        }
        if self.next >= REKEY_AFTER {
            self.session = SessionId::random().map_err(SealError::Rng)?;
            self.next = 0;
            self.keyed = None;
        }
        let subkey = match &self.keyed {
            Some((id, subkey)) if *id == key.id() => subkey,
            _ => {
                let subkey = SessionKey::derive(key, self.cipher, self.session)
                    .map_err(|_| SealError::Crypto)?;
                &self.keyed.insert((key.id(), subkey)).1
            }
        };
        // Consume the counter before using it: even a failed seal never
        // leaves a nonce to be used again.
        let counter = self.next;
        self.next += 1;

        let header = Header {
            cipher: self.cipher,
            key_hint: key.id().hint(),
            session: self.session,
            counter,
        }
        .encode();
        fill_aad(&mut self.aad, &header, &self.label);
        let mut frame = Vec::with_capacity(plaintext.len() + OVERHEAD);
        frame.extend_from_slice(&header);
        frame.extend_from_slice(plaintext);
        // `frame` holds the header and the plaintext: the slice is in range.
        let tag = subkey
            .seal(counter, &self.aad, &mut frame[HEADER_LEN..])
            .map_err(|_| SealError::Crypto)?;
        frame.extend_from_slice(&tag);
        Ok(frame)
    }

    #[cfg(test)]
    pub(crate) fn set_next_counter(&mut self, next: u64) {
        self.next = next;
    }
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("cipher", &self.cipher)
            .field("session", &self.session)
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

/// What an opener keeps per authenticated sender session.
struct Session {
    subkey: SessionSecret,
    window: ReplayWindow,
}

/// Opens inbound frames: verifies, decrypts, and drops replays.
///
/// State is kept only for sessions that produced at least one authentic
/// frame, and for at most `max_sessions` of them (least recently used are
/// forgotten first), so a flood of forged frames costs one key derivation
/// and one tag check each (per installed key sharing the frame's key hint:
/// normally one) and no memory.
pub struct Opener {
    label: Box<[u8]>,
    /// Keyed by the full id of the key that authenticated the session, not
    /// by the hint in the header: two keys sharing a hint have separate
    /// sessions, subkeys and replay windows. A session holds its raw
    /// subkey (see [`SessionSecret`]: a key schedule per peer would cost
    /// ~560 bytes more) and a 2,048-bit window, ~300 bytes. Boxed: a hash
    /// table keeps up to twice as many slots as entries, so inline it
    /// would cost up to ~600 bytes per peer where the box costs ~300.
    sessions: SessionCache<(KeyId, Cipher, SessionId), Box<Session>>,
    aad: Vec<u8>,
    /// Reused buffer for the installed keys matching a frame's hint; empty
    /// between calls (key copies are wiped when cleared).
    candidates: Vec<Key>,
}

impl Opener {
    /// An opener for `cluster_label` remembering up to
    /// [`DEFAULT_MAX_SESSIONS`] sender sessions.
    pub fn new(cluster_label: &str) -> Opener {
        Opener::with_max_sessions(cluster_label, DEFAULT_MAX_SESSIONS)
    }

    /// An opener remembering up to `max_sessions` (at least 2) sender
    /// sessions. A session forgotten while its sender is still alive is
    /// re-learnt from its next frame; see `docs/SECURITY.md` for what
    /// forgetting means for replay protection.
    pub fn with_max_sessions(cluster_label: &str, max_sessions: usize) -> Opener {
        Opener {
            label: cluster_label.as_bytes().into(),
            sessions: SessionCache::new(max_sessions),
            aad: Vec::new(),
            candidates: Vec::new(),
        }
    }

    /// How many sender sessions are remembered.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Opens one sealed frame with the keys installed in `keyring`.
    ///
    /// Every installed key whose id starts with the frame's key hint is
    /// tried, primary first; the first whose tag verifies opens the frame.
    /// The replay window is consulted only after the tag verified. Never
    /// panics, whatever `frame` holds.
    pub fn open(&mut self, keyring: &Keyring, frame: &[u8]) -> Result<Vec<u8>, OpenError> {
        let (header, ciphertext, tag) = Header::parse(frame)?;
        let mut candidates = std::mem::take(&mut self.candidates);
        keyring.keys_matching(header.key_hint, &mut candidates);
        let opened = self.open_with(&candidates, &header, ciphertext, &tag);
        candidates.clear();
        self.candidates = candidates;
        opened
    }

    /// Tries `keys` in order; the first whose tag verifies wins.
    fn open_with(
        &mut self,
        keys: &[Key],
        header: &Header,
        ciphertext: &[u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<Vec<u8>, OpenError> {
        if keys.is_empty() {
            return Err(OpenError::UnknownKey(header.key_hint));
        }
        fill_aad(&mut self.aad, &header.encode(), &self.label);
        let counter = header.counter;
        let mut plaintext = Vec::with_capacity(ciphertext.len());
        for key in keys {
            // A failed tag check leaves the buffer unspecified: start over.
            plaintext.clear();
            plaintext.extend_from_slice(ciphertext);
            let id = (key.id(), header.cipher, header.session);

            if let Some(session) = self.sessions.get_mut(&id) {
                if session
                    .subkey
                    .open(counter, &self.aad, &mut plaintext, tag)
                    .is_err()
                {
                    continue;
                }
                if !session.window.accept(counter) {
                    return Err(OpenError::Replay { counter });
                }
                return Ok(plaintext);
            }

            // First authentic frame of this session (or first since it was
            // forgotten): derive, verify, and only then remember it.
            let Ok(subkey) = SessionSecret::derive(key, header.cipher, header.session) else {
                continue;
            };
            if subkey
                .open(counter, &self.aad, &mut plaintext, tag)
                .is_err()
            {
                continue;
            }
            let mut window = ReplayWindow::new();
            window.accept(counter);
            self.sessions
                .insert(id, Box::new(Session { subkey, window }));
            return Ok(plaintext);
        }
        Err(OpenError::Auth)
    }
}

impl std::fmt::Debug for Opener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opener")
            .field("sessions", &self.sessions.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
#[path = "frame_tests.rs"]
mod tests;
