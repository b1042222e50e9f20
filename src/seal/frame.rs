//! The sealed frame: header, [`Sealer`] and [`Opener`].
//!
//! ```text
//! offset  len  field
//!      0    1  magic/version  0xC1 (never 0x08, the first byte of a plaintext packet)
//!      1    1  cipher id      1 = AES-256-GCM, 2 = ChaCha20-Poly1305, 3 = XChaCha20-Poly1305
//!      2    8  key id         KeyId of the key the subkey was derived from
//!     10   16  session id     the sender's random per-boot session
//!     26    8  counter        u64 big-endian; the nonce; < 2^60
//!     34    n  ciphertext     same length as the plaintext
//!   34+n   16  tag
//! ```
//!
//! Authenticated data: the 34 header bytes followed by the UTF-8 bytes of the
//! cluster label. The subkey is HKDF-SHA256(cluster key, session id,
//! "scuttlewire seal v1" ‖ cipher id); see [`super::cipher`].

use super::cipher::{Cipher, SessionKey};
use super::key::{KEY_ID_LEN, Key, KeyId};
use super::keyring::Keyring;
use super::replay::ReplayWindow;
use super::session::{DEFAULT_MAX_SESSIONS, SESSION_ID_LEN, SessionCache, SessionId};
use super::{OpenError, SealError};

/// First byte of every version-1 sealed frame.
pub const MAGIC_V1: u8 = 0xC1;

/// First byte of every plaintext wire packet (protobuf field 1, varint: the
/// wire version). A sealed frame never starts with it, which is how a
/// receiver in rolling-enablement mode tells the two apart.
pub const PLAINTEXT_FIRST_BYTE: u8 = 0x08;

/// Length of the cleartext header in bytes.
pub const HEADER_LEN: usize = 2 + KEY_ID_LEN + SESSION_ID_LEN + 8;

/// Length of the authentication tag in bytes.
pub const TAG_LEN: usize = super::cipher::TAG_LEN;

/// Bytes sealing adds to a plaintext: a sealed frame is exactly
/// `plaintext.len() + OVERHEAD` bytes long.
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;

/// Largest datagram accepted (the IPv4 UDP payload limit, as
/// `transport::MAX_DATAGRAM`).
pub const MAX_FRAME_LEN: usize = 65_507;

/// A sealer moves to a fresh session when its counter reaches this value,
/// and an opener refuses any counter at or above it. At a million packets a
/// second it takes 36,000 years to get there: the point is that the counter
/// provably never wraps.
pub const REKEY_AFTER: u64 = 1 << 60;

// Header field offsets.
const CIPHER_AT: usize = 1;
const KEY_ID_AT: usize = 2;
const SESSION_AT: usize = KEY_ID_AT + KEY_ID_LEN;
const COUNTER_AT: usize = SESSION_AT + SESSION_ID_LEN;

/// Whether `datagram` is a plaintext wire packet rather than a sealed frame.
pub fn is_plaintext(datagram: &[u8]) -> bool {
    datagram.first() == Some(&PLAINTEXT_FIRST_BYTE)
}

/// The parsed cleartext header of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Header {
    cipher: Cipher,
    key_id: KeyId,
    session: SessionId,
    counter: u64,
}

impl Header {
    fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0] = MAGIC_V1;
        out[CIPHER_AT] = self.cipher.wire_id();
        out[KEY_ID_AT..SESSION_AT].copy_from_slice(&self.key_id.to_bytes());
        out[SESSION_AT..COUNTER_AT].copy_from_slice(&self.session.to_bytes());
        out[COUNTER_AT..].copy_from_slice(&self.counter.to_be_bytes());
        out
    }

    /// Parses and checks the header of `frame`, and splits off the
    /// ciphertext and tag. Checks are ordered so the cheapest come first.
    fn parse(frame: &[u8]) -> Result<(Header, &[u8], [u8; TAG_LEN]), OpenError> {
        let len = frame.len();
        if len > MAX_FRAME_LEN {
            return Err(OpenError::TooLarge { len });
        }
        match frame.first() {
            None => return Err(OpenError::TooShort { len }),
            Some(&PLAINTEXT_FIRST_BYTE) => return Err(OpenError::Plaintext),
            Some(&MAGIC_V1) => {}
            Some(&other) => return Err(OpenError::UnsupportedVersion(other)),
        }
        let too_short = OpenError::TooShort { len };
        let (head, rest) = frame
            .split_first_chunk::<HEADER_LEN>()
            .ok_or(too_short.clone())?;
        let (ciphertext, tag) = rest
            .split_last_chunk::<TAG_LEN>()
            .ok_or(too_short.clone())?;

        let cipher_id = head[CIPHER_AT];
        let cipher = Cipher::from_wire_id(cipher_id).ok_or(OpenError::UnknownCipher(cipher_id))?;
        let (key_id, session, counter) = split_fields(head);
        if counter >= REKEY_AFTER {
            return Err(OpenError::CounterOutOfRange(counter));
        }
        let header = Header {
            cipher,
            key_id: KeyId::from_bytes(key_id),
            session: SessionId::from_bytes(session),
            counter,
        };
        Ok((header, ciphertext, *tag))
    }
}

/// Splits the fixed-size fields out of a header without any fallible
/// indexing.
fn split_fields(head: &[u8; HEADER_LEN]) -> ([u8; KEY_ID_LEN], [u8; SESSION_ID_LEN], u64) {
    let mut key_id = [0u8; KEY_ID_LEN];
    let mut session = [0u8; SESSION_ID_LEN];
    let mut counter = [0u8; 8];
    key_id.copy_from_slice(&head[KEY_ID_AT..SESSION_AT]);
    session.copy_from_slice(&head[SESSION_AT..COUNTER_AT]);
    counter.copy_from_slice(&head[COUNTER_AT..]);
    (key_id, session, u64::from_be_bytes(counter))
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
            key_id: key.id(),
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
    subkey: SessionKey,
    window: ReplayWindow,
}

/// Opens inbound frames: verifies, decrypts, and drops replays.
///
/// State is kept only for sessions that produced at least one authentic
/// frame, and for at most `max_sessions` of them (least recently used are
/// forgotten first), so a flood of forged frames costs one key derivation
/// and one tag check each and no memory.
pub struct Opener {
    label: Box<[u8]>,
    sessions: SessionCache<(KeyId, Cipher, SessionId), Session>,
    aad: Vec<u8>,
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
        }
    }

    /// How many sender sessions are remembered.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Opens one sealed frame with the keys installed in `keyring`.
    ///
    /// The replay window is consulted only after the tag verified. Never
    /// panics, whatever `frame` holds.
    pub fn open(&mut self, keyring: &Keyring, frame: &[u8]) -> Result<Vec<u8>, OpenError> {
        let (header, ciphertext, tag) = Header::parse(frame)?;
        let Some(key) = keyring.get(header.key_id) else {
            return Err(OpenError::UnknownKey(header.key_id));
        };
        fill_aad(&mut self.aad, &header.encode(), &self.label);
        let mut plaintext = ciphertext.to_vec();
        let counter = header.counter;
        let id = (header.key_id, header.cipher, header.session);

        if let Some(session) = self.sessions.get_mut(&id) {
            session
                .subkey
                .open(counter, &self.aad, &mut plaintext, &tag)
                .map_err(|_| OpenError::Auth)?;
            if !session.window.accept(counter) {
                return Err(OpenError::Replay { counter });
            }
            return Ok(plaintext);
        }

        // First authentic frame of this session (or first since it was
        // forgotten): derive, verify, and only then remember it.
        let subkey =
            SessionKey::derive(&key, header.cipher, header.session).map_err(|_| OpenError::Auth)?;
        subkey
            .open(counter, &self.aad, &mut plaintext, &tag)
            .map_err(|_| OpenError::Auth)?;
        let mut window = ReplayWindow::new();
        window.accept(counter);
        self.sessions.insert(id, Session { subkey, window });
        Ok(plaintext)
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
