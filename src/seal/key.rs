//! Cluster keys and their public names.
//!
//! A [`Key`] is 32 secret bytes shared by every member of a cluster. It is
//! never printed, logged or sent: logs, metrics and the gossiped key lists
//! name a key by its [`KeyId`], the first 8 bytes of a domain-separated
//! SHA-256 of the key. A frame header carries only the id's first 4 bytes,
//! its [`KeyHint`]. Neither says anything useful about the key itself.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::digest;

/// Length of a [`Key`] in bytes (256 bits, for every supported cipher).
pub const KEY_LEN: usize = 32;

/// Length of a [`KeyId`] in bytes.
pub const KEY_ID_LEN: usize = 8;

/// Length of a [`KeyHint`] in bytes: the prefix of the [`KeyId`] a frame
/// header carries.
pub const KEY_HINT_LEN: usize = 4;

/// Domain separation for key ids: the id of a key is a hash no other part of
/// the system computes over the same input.
const KEY_ID_CONTEXT: &[u8] = b"scuttlewire key id v1\0";

/// Largest key file read, in bytes. A base64 key is 44 characters; anything
/// much longer is the wrong file.
const MAX_KEY_FILE: u64 = 1024;

/// Why a key could not be loaded or created. Messages never contain key
/// material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The decoded key is not [`KEY_LEN`] bytes long.
    #[error("a key must be {KEY_LEN} bytes, got {len}")]
    WrongLength {
        /// The length that was given.
        len: usize,
    },
    /// The text is not standard base64 (RFC 4648 alphabet, with `=` padding).
    #[error(
        "key is not valid base64 (expected 44 characters of standard base64 encoding {KEY_LEN} bytes)"
    )]
    InvalidBase64,
    /// The key file could not be read.
    #[error("cannot read key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The key file is larger than any key file can be.
    #[error("key file {path} is larger than {MAX_KEY_FILE} bytes; is it the right file?")]
    FileTooLarge {
        /// The file.
        path: PathBuf,
    },
    /// A key id given as text is not 16 hexadecimal digits.
    #[error("a key id is {} hexadecimal digits", KEY_ID_LEN * 2)]
    InvalidKeyId,
    /// The operating system's random number generator failed.
    #[error("operating system random number generator failed: {0}")]
    Rng(getrandom::Error),
}

/// A 256-bit cluster key.
///
/// `Debug` prints only the [`KeyId`]. The bytes are overwritten when the key
/// is dropped (best effort: copies made by the allocator or the ciphers'
/// key schedules are outside our control).
#[derive(Clone)]
pub struct Key {
    bytes: [u8; KEY_LEN],
    id: KeyId,
}

impl Key {
    /// A fresh random key from the operating system's CSPRNG.
    ///
    /// ```
    /// let key = scuttlewire::seal::Key::generate()?;
    /// let text = key.to_base64(); // give this to every member, secretly
    /// # Ok::<(), scuttlewire::seal::KeyError>(())
    /// ```
    // A key generator must draw from the OS CSPRNG: nothing else is secret.
    #[allow(clippy::disallowed_methods)]
    pub fn generate() -> Result<Key, KeyError> {
        let mut bytes = [0u8; KEY_LEN];
        getrandom::fill(&mut bytes).map_err(KeyError::Rng)?;
        Ok(Key::from_array(bytes))
    }

    /// A key from exactly [`KEY_LEN`] raw bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Key, KeyError> {
        let array: [u8; KEY_LEN] = bytes
            .try_into()
            .map_err(|_| KeyError::WrongLength { len: bytes.len() })?;
        Ok(Key::from_array(array))
    }

    /// A key from standard base64 text (surrounding whitespace is ignored),
    /// e.g. the output of [`Key::to_base64`] or `openssl rand -base64 32`.
    pub fn from_base64(text: &str) -> Result<Key, KeyError> {
        let mut decoded = STANDARD
            .decode(text.trim())
            .map_err(|_| KeyError::InvalidBase64)?;
        let key = Key::from_bytes(&decoded);
        decoded.fill(0);
        key
    }

    /// A key from a file holding its base64 text (a trailing newline is
    /// fine). Raw binary key files are refused: 32 printable characters
    /// would otherwise pass as a key with far less than 256 bits of entropy.
    ///
    /// On Unix a warning is logged if the file is readable by group or
    /// others.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Key, KeyError> {
        let path = path.as_ref();
        let io_err = |source| KeyError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io_err)?;
        warn_if_shared(path, &file);
        let mut text = Vec::new();
        file.take(MAX_KEY_FILE + 1)
            .read_to_end(&mut text)
            .map_err(io_err)?;
        let result = if text.len() as u64 > MAX_KEY_FILE {
            Err(KeyError::FileTooLarge {
                path: path.to_path_buf(),
            })
        } else {
            std::str::from_utf8(&text)
                .map_err(|_| KeyError::InvalidBase64)
                .and_then(Key::from_base64)
        };
        text.fill(0);
        result
    }

    /// The key as standard base64 (44 characters). This is the secret: store
    /// and transmit it accordingly.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.bytes)
    }

    /// The key's public name.
    pub fn id(&self) -> KeyId {
        self.id
    }

    /// The secret bytes, for subkey derivation inside this module.
    pub(crate) fn secret(&self) -> &[u8; KEY_LEN] {
        &self.bytes
    }

    fn from_array(bytes: [u8; KEY_LEN]) -> Key {
        Key {
            id: KeyId::of(&bytes),
            bytes,
        }
    }
}

impl FromStr for Key {
    type Err = KeyError;

    /// Parses base64, like [`Key::from_base64`].
    fn from_str(s: &str) -> Result<Key, KeyError> {
        Key::from_base64(s)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        self.bytes.fill(0);
        // Keep the write from being optimised away as a dead store.
        std::hint::black_box(&self.bytes);
    }
}

#[cfg(unix)]
fn warn_if_shared(path: &Path, file: &std::fs::File) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = file.metadata() {
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format_args!("{:o}", mode & 0o777),
                "key file is readable by group or others; chmod 600 it"
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_shared(_path: &Path, _file: &std::fs::File) {}

/// The public name of a [`Key`]: the first [`KEY_ID_LEN`] bytes of
/// SHA-256(`"scuttlewire key id v1\0"` ‖ key). Shown as 16 lowercase hex
/// digits.
///
/// Two different keys share an id with probability 2^-64 per pair; if that
/// ever happened, frames under the "wrong" one would simply fail
/// authentication.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId([u8; KEY_ID_LEN]);

impl KeyId {
    /// The id's 8 bytes (as in the gossiped key lists).
    pub fn to_bytes(self) -> [u8; KEY_ID_LEN] {
        self.0
    }

    /// An id from its 8 bytes.
    pub fn from_bytes(bytes: [u8; KEY_ID_LEN]) -> KeyId {
        KeyId(bytes)
    }

    /// The id's first [`KEY_HINT_LEN`] bytes, as a frame header names the
    /// key.
    pub fn hint(self) -> KeyHint {
        let [a, b, c, d, ..] = self.0;
        KeyHint([a, b, c, d])
    }

    fn of(key: &[u8; KEY_LEN]) -> KeyId {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(KEY_ID_CONTEXT);
        ctx.update(key);
        let hash = ctx.finish();
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&hash.as_ref()[..KEY_ID_LEN]);
        KeyId(id)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        super::write_hex(f, &self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// The first [`KEY_HINT_LEN`] bytes of a [`KeyId`]: how a frame header
/// names the key it was sealed under. Shown as 8 lowercase hex digits (the
/// first 8 digits of the id).
///
/// Two installed keys share a hint with probability 2^-32 per pair. That
/// costs nothing but time: a receiver tries every installed key with the
/// frame's hint, and the first whose tag verifies opens it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyHint([u8; KEY_HINT_LEN]);

impl KeyHint {
    /// The hint as it appears in a frame header.
    pub fn to_bytes(self) -> [u8; KEY_HINT_LEN] {
        self.0
    }

    /// A hint read from a frame header.
    pub fn from_bytes(bytes: [u8; KEY_HINT_LEN]) -> KeyHint {
        KeyHint(bytes)
    }

    /// Whether `id` starts with this hint.
    pub fn matches(self, id: KeyId) -> bool {
        id.hint() == self
    }
}

impl fmt::Display for KeyHint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        super::write_hex(f, &self.0)
    }
}

impl fmt::Debug for KeyHint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyHint({self})")
    }
}

impl FromStr for KeyId {
    type Err = KeyError;

    /// Parses the 16 hex digits printed by `Display`.
    fn from_str(s: &str) -> Result<KeyId, KeyError> {
        let s = s.trim();
        if s.len() != KEY_ID_LEN * 2 || !s.is_ascii() {
            return Err(KeyError::InvalidKeyId);
        }
        let mut id = [0u8; KEY_ID_LEN];
        for (i, out) in id.iter_mut().enumerate() {
            let pair = s.get(2 * i..2 * i + 2).ok_or(KeyError::InvalidKeyId)?;
            *out = u8::from_str_radix(pair, 16).map_err(|_| KeyError::InvalidKeyId)?;
        }
        Ok(KeyId(id))
    }
}

/// Two keys whose ids share their first 4 bytes, for tests of what a
/// receiver does with a [`KeyHint`] that matches two installed keys. Found
/// by search over keys whose first 8 bytes are a little-endian counter: the
/// ids are `f1b1390cd997c3de` and `f1b1390c3c02aec9`.
#[cfg(test)]
pub(crate) fn keys_sharing_a_hint() -> (Key, Key) {
    let seeded = |seed: u64| {
        let mut bytes = [0u8; KEY_LEN];
        bytes[..8].copy_from_slice(&seed.to_le_bytes());
        Key::from_array(bytes)
    };
    (seeded(9_647), seeded(64_012))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_and_the_id_is_stable() {
        let key = Key::generate().unwrap();
        let text = key.to_base64();
        assert_eq!(text.len(), 44);
        let back = Key::from_base64(&format!("  {text}\n")).unwrap();
        assert_eq!(back.id(), key.id());
        assert_eq!(back.secret(), key.secret());
        let parsed: Key = text.parse().unwrap();
        assert_eq!(parsed.id(), key.id());
    }

    #[test]
    fn wrong_length_and_encoding_are_refused_with_a_clear_error() {
        let short = STANDARD.encode([7u8; 16]);
        assert!(matches!(
            Key::from_base64(&short),
            Err(KeyError::WrongLength { len: 16 })
        ));
        let long = STANDARD.encode([7u8; 33]);
        assert!(matches!(
            Key::from_base64(&long),
            Err(KeyError::WrongLength { len: 33 })
        ));
        assert!(matches!(
            Key::from_base64("not*base64!"),
            Err(KeyError::InvalidBase64)
        ));
        assert!(matches!(
            Key::from_base64(""),
            Err(KeyError::WrongLength { len: 0 })
        ));
        let message = Key::from_base64(&short).unwrap_err().to_string();
        assert!(message.contains("32 bytes"), "{message}");
    }

    #[test]
    fn debug_never_shows_the_key() {
        let key = Key::from_bytes(&[0xab; KEY_LEN]).unwrap();
        let debug = format!("{key:?}");
        assert!(!debug.contains("abab"), "{debug}");
        assert!(!debug.contains(&key.to_base64()), "{debug}");
        assert!(debug.contains(&key.id().to_string()), "{debug}");
    }

    #[test]
    fn ids_differ_between_keys_and_are_not_a_prefix_of_the_key() {
        let a = Key::from_bytes(&[1; KEY_LEN]).unwrap();
        let b = Key::from_bytes(&[2; KEY_LEN]).unwrap();
        assert_ne!(a.id(), b.id());
        assert_ne!(a.id().to_bytes(), [1; KEY_ID_LEN]);
    }

    #[test]
    fn key_id_text_round_trips() {
        let id = Key::generate().unwrap().id();
        let text = id.to_string();
        assert_eq!(text.len(), 16);
        assert_eq!(text.parse::<KeyId>().unwrap(), id);
        assert!("xyz".parse::<KeyId>().is_err());
        assert!("0123456789abcdeg".parse::<KeyId>().is_err());
        assert!("é123456789abcde".parse::<KeyId>().is_err());
    }

    #[test]
    fn the_hint_is_the_first_four_bytes_of_the_id() {
        let id = KeyId::from_bytes([0xf1, 0xb1, 0x39, 0x0c, 1, 2, 3, 4]);
        assert_eq!(id.hint().to_bytes(), [0xf1, 0xb1, 0x39, 0x0c]);
        assert_eq!(id.hint().to_string(), "f1b1390c");
        assert!(id.to_string().starts_with(&id.hint().to_string()));
        assert!(id.hint().matches(id));
        let other = KeyId::from_bytes([0xf1, 0xb1, 0x39, 0x0d, 1, 2, 3, 4]);
        assert!(!id.hint().matches(other));
        let same_prefix = KeyId::from_bytes([0xf1, 0xb1, 0x39, 0x0c, 9, 9, 9, 9]);
        assert!(id.hint().matches(same_prefix));
    }

    #[test]
    fn the_test_keys_sharing_a_hint_do_share_it() {
        let (a, b) = keys_sharing_a_hint();
        assert_eq!(a.id().hint(), b.id().hint());
        assert_ne!(a.id(), b.id());
        assert_eq!(a.id().to_string(), "f1b1390cd997c3de");
        assert_eq!(b.id().to_string(), "f1b1390c3c02aec9");
    }

    #[test]
    fn keys_load_from_files() {
        let dir = std::env::temp_dir().join(format!("scuttlewire-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = Key::generate().unwrap();

        let good = dir.join("good.key");
        std::fs::write(&good, format!("{}\n", key.to_base64())).unwrap();
        assert_eq!(Key::from_file(&good).unwrap().id(), key.id());

        let raw = dir.join("raw.key");
        std::fs::write(&raw, [b'a'; KEY_LEN]).unwrap();
        assert!(Key::from_file(&raw).is_err());

        let huge = dir.join("huge.key");
        std::fs::write(&huge, vec![b'A'; 4096]).unwrap();
        assert!(matches!(
            Key::from_file(&huge),
            Err(KeyError::FileTooLarge { .. })
        ));

        let missing = dir.join("missing.key");
        let err = Key::from_file(&missing).unwrap_err();
        assert!(matches!(err, KeyError::Io { .. }));
        assert!(err.to_string().contains("missing.key"));

        std::fs::remove_dir_all(&dir).unwrap();
    }
}
