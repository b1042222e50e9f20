//! The three AEAD ciphers and the per-session subkey they are keyed with.
//!
//! No cipher is ever keyed with the cluster key itself. Each sender session
//! gets its own subkey:
//!
//! ```text
//! subkey = HKDF-SHA256(ikm  = cluster key,
//!                      salt = session id (8 bytes),
//!                      info = "scuttlewire seal v1" ‖ cipher id (1 byte),
//!                      L    = 32)
//! ```
//!
//! and the nonce is the frame's counter (below 2^40) as 8 bytes big-endian,
//! left-padded with zeros to the cipher's nonce length (12 bytes for
//! AES-256-GCM and ChaCha20-Poly1305, 24 for XChaCha20-Poly1305).
//!
//! All three run on `ring`. XChaCha20-Poly1305 is, by definition
//! (draft-irtf-cfrg-xchacha-03 §2.3), ChaCha20-Poly1305 keyed with
//! HChaCha20(key, first 16 nonce bytes) under the nonce 0^4 ‖ last 8 nonce
//! bytes. A counter nonce's first 16 bytes are always zero, so the HChaCha20
//! step is done once per session, when the subkey is derived, and each frame
//! costs exactly what a ChaCha20-Poly1305 frame costs.

use ring::{aead, hkdf};

use super::key::{KEY_LEN, Key};
use super::session::SessionId;

/// Length of every cipher's authentication tag in bytes.
pub(crate) const TAG_LEN: usize = 16;

/// HKDF `info` prefix; the cipher id follows it.
const SUBKEY_INFO: &[u8] = b"scuttlewire seal v1";

/// An authenticated cipher an encrypted transport seals with.
///
/// All three take a 256-bit key and produce a 128-bit tag, so they have the
/// same overhead and the same [`Key`] works with any of them. A receiver
/// opens frames in any of them (the cipher byte is authenticated, and each
/// is a full-strength choice, so there is nothing weaker to downgrade to).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Cipher {
    /// AES-256 in Galois/Counter Mode (NIST SP 800-38D), from `ring`:
    /// hardware-accelerated on most servers, constant-time everywhere. The
    /// default.
    #[default]
    Aes256Gcm,
    /// ChaCha20-Poly1305 (RFC 8439), from `ring`: fast without AES hardware.
    ChaCha20Poly1305,
    /// XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha): HChaCha20 (`chacha20`) and
    /// `ring`'s ChaCha20-Poly1305. Used with the same counter nonces as the
    /// others (its 192-bit random-nonce property is not needed here).
    XChaCha20Poly1305,
}

impl Cipher {
    /// Every supported cipher.
    pub const ALL: [Cipher; 3] = [
        Cipher::Aes256Gcm,
        Cipher::ChaCha20Poly1305,
        Cipher::XChaCha20Poly1305,
    ];

    /// The cipher's byte in the frame header.
    pub const fn wire_id(self) -> u8 {
        match self {
            Cipher::Aes256Gcm => 1,
            Cipher::ChaCha20Poly1305 => 2,
            Cipher::XChaCha20Poly1305 => 3,
        }
    }

    /// The cipher a header byte names, if any.
    pub const fn from_wire_id(id: u8) -> Option<Cipher> {
        match id {
            1 => Some(Cipher::Aes256Gcm),
            2 => Some(Cipher::ChaCha20Poly1305),
            3 => Some(Cipher::XChaCha20Poly1305),
            _ => None,
        }
    }

    /// The cipher's usual name.
    pub const fn name(self) -> &'static str {
        match self {
            Cipher::Aes256Gcm => "AES-256-GCM",
            Cipher::ChaCha20Poly1305 => "ChaCha20-Poly1305",
            Cipher::XChaCha20Poly1305 => "XChaCha20-Poly1305",
        }
    }
}

impl std::fmt::Display for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The primitive failed (bad length inside the library, or a tag mismatch
/// when opening). Deliberately carries no detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CryptoFailure;

/// Length of the nonce prefix XChaCha20 feeds to HChaCha20.
const XCHACHA_PREFIX_LEN: usize = 16;

/// A cipher keyed with one session's subkey.
pub(crate) enum SessionKey {
    /// AES-256-GCM or ChaCha20-Poly1305. Boxed: ring's key schedule is
    /// large and one lives per session.
    Ring(Box<aead::LessSafeKey>),
    /// XChaCha20-Poly1305 for the nonces that start with `prefix`:
    /// ChaCha20-Poly1305 keyed with HChaCha20(subkey, `prefix`). Frames
    /// always use the all-zero prefix; the known-answer test another one.
    XChaCha {
        key: Box<aead::LessSafeKey>,
        prefix: [u8; XCHACHA_PREFIX_LEN],
    },
}

impl SessionKey {
    /// Derives the subkey of (`key`, `session`, `cipher`).
    pub(crate) fn derive(
        key: &Key,
        cipher: Cipher,
        session: SessionId,
    ) -> Result<SessionKey, CryptoFailure> {
        let mut subkey = derive_subkey(key, cipher, session)?;
        let keyed = SessionKey::with_raw_key(cipher, &subkey);
        wipe(&mut subkey);
        keyed
    }

    /// Keys `cipher` directly with `raw` (also used by the known-answer
    /// tests, which must reach the primitive without derivation).
    pub(crate) fn with_raw_key(cipher: Cipher, raw: &[u8]) -> Result<SessionKey, CryptoFailure> {
        let ring_alg = match cipher {
            Cipher::Aes256Gcm => &aead::AES_256_GCM,
            Cipher::ChaCha20Poly1305 => &aead::CHACHA20_POLY1305,
            Cipher::XChaCha20Poly1305 => {
                return SessionKey::xchacha(raw, [0; XCHACHA_PREFIX_LEN]);
            }
        };
        let unbound = aead::UnboundKey::new(ring_alg, raw).map_err(|_| CryptoFailure)?;
        Ok(SessionKey::Ring(Box::new(aead::LessSafeKey::new(unbound))))
    }

    /// XChaCha20-Poly1305 keyed with `raw`, for the nonces starting with
    /// `prefix`: HChaCha20 runs here, once, not per frame.
    fn xchacha(raw: &[u8], prefix: [u8; XCHACHA_PREFIX_LEN]) -> Result<SessionKey, CryptoFailure> {
        let raw: &[u8; KEY_LEN] = raw.try_into().map_err(|_| CryptoFailure)?;
        let mut chacha_key = hchacha20(raw, &prefix);
        let unbound = aead::UnboundKey::new(&aead::CHACHA20_POLY1305, &chacha_key);
        wipe(&mut chacha_key);
        let key = Box::new(aead::LessSafeKey::new(unbound.map_err(|_| CryptoFailure)?));
        Ok(SessionKey::XChaCha { key, prefix })
    }

    /// The ring key and nonce for a 24-byte nonce field. A nonce outside an
    /// XChaCha key's prefix is refused, never silently truncated.
    fn ring_parts(
        &self,
        nonce: &[u8; 24],
    ) -> Result<(&aead::LessSafeKey, aead::Nonce), CryptoFailure> {
        match self {
            SessionKey::Ring(key) => Ok((key, ring_nonce(nonce))),
            SessionKey::XChaCha { key, prefix } => {
                let (head, tail) = nonce.split_at(XCHACHA_PREFIX_LEN);
                if head != prefix {
                    return Err(CryptoFailure);
                }
                let mut short = [0u8; aead::NONCE_LEN];
                short[aead::NONCE_LEN - tail.len()..].copy_from_slice(tail);
                Ok((key, aead::Nonce::assume_unique_for_key(short)))
            }
        }
    }

    /// Encrypts `in_out` in place under the nonce made from `counter`;
    /// returns the tag.
    pub(crate) fn seal(
        &self,
        counter: u64,
        aad: &[u8],
        in_out: &mut [u8],
    ) -> Result<[u8; TAG_LEN], CryptoFailure> {
        self.seal_with_nonce(&nonce_bytes(counter), aad, in_out)
    }

    /// Decrypts `in_out` in place if `tag` verifies under the nonce made
    /// from `counter`. On failure the contents of `in_out` are unspecified.
    /// (Openers use [`SessionSecret`]; this is for the tests, which check
    /// one against the other.)
    #[cfg(test)]
    pub(crate) fn open(
        &self,
        counter: u64,
        aad: &[u8],
        in_out: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), CryptoFailure> {
        self.open_with_nonce(&nonce_bytes(counter), aad, in_out, tag)
    }

    /// Encrypts with an explicit 24-byte nonce field; the 96-bit ciphers use
    /// its last 12 bytes, XChaCha20-Poly1305 all 24 (the first 16 must be
    /// the key's prefix).
    pub(crate) fn seal_with_nonce(
        &self,
        nonce: &[u8; 24],
        aad: &[u8],
        in_out: &mut [u8],
    ) -> Result<[u8; TAG_LEN], CryptoFailure> {
        let (key, nonce) = self.ring_parts(nonce)?;
        let tag = key
            .seal_in_place_separate_tag(nonce, aead::Aad::from(aad), in_out)
            .map_err(|_| CryptoFailure)?;
        tag.as_ref().try_into().map_err(|_| CryptoFailure)
    }

    /// Decrypts with an explicit 24-byte nonce field (see
    /// [`SessionKey::seal_with_nonce`]); for the known-answer tests.
    #[cfg(test)]
    pub(crate) fn open_with_nonce(
        &self,
        nonce: &[u8; 24],
        aad: &[u8],
        in_out: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), CryptoFailure> {
        let (key, nonce) = self.ring_parts(nonce)?;
        open_in_place(key, nonce, aad, in_out, tag)
    }
}

/// The subkey of (`key`, `session`, `cipher`): HKDF-SHA256 with the
/// session id as salt and the cipher in the info.
fn derive_subkey(
    key: &Key,
    cipher: Cipher,
    session: SessionId,
) -> Result<[u8; KEY_LEN], CryptoFailure> {
    let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, &session.to_bytes());
    let prk = salt.extract(key.secret());
    let cipher_id = [cipher.wire_id()];
    let info = [SUBKEY_INFO, &cipher_id[..]];
    let mut subkey = [0u8; KEY_LEN];
    prk.expand(&info, hkdf::HKDF_SHA256)
        .and_then(|okm| okm.fill(&mut subkey))
        .map_err(|_| CryptoFailure)?;
    Ok(subkey)
}

/// Decrypts `in_out` in place with `key` if `tag` verifies.
fn open_in_place(
    key: &aead::LessSafeKey,
    nonce: aead::Nonce,
    aad: &[u8],
    in_out: &mut [u8],
    tag: &[u8; TAG_LEN],
) -> Result<(), CryptoFailure> {
    key.open_in_place_separate_tag(
        nonce,
        aead::Aad::from(aad),
        aead::Tag::from(*tag),
        in_out,
        0..,
    )
    .map(|_| ())
    .map_err(|_| CryptoFailure)
}

/// Overwrites key bytes that are no longer needed.
fn wipe(bytes: &mut [u8; KEY_LEN]) {
    bytes.fill(0);
    // Keep the write from being optimised away as a dead store.
    std::hint::black_box(&bytes);
}

/// One sender session's subkey as an opener keeps it: 32 raw bytes from
/// which the cipher is keyed again for every frame, instead of a
/// [`SessionKey`]. ring's AES-256-GCM key (round keys and GHASH table) is
/// about 560 bytes, kept per peer that would be most of an encrypted
/// node's memory beyond a plain one; keying it again costs about a
/// hundred nanoseconds, a fraction of opening a frame (see
/// `benches/seal.rs`). Frames only ever use the all-zero XChaCha prefix,
/// so for XChaCha20-Poly1305 the bytes kept are the HChaCha20 output for
/// it, and no frame pays for HChaCha20.
///
/// The bytes are overwritten when dropped (best effort, as for [`Key`]).
pub(crate) struct SessionSecret {
    cipher: Cipher,
    /// What the ring cipher is keyed with.
    raw: [u8; KEY_LEN],
}

impl SessionSecret {
    /// Derives the subkey of (`key`, `session`, `cipher`), as
    /// [`SessionKey::derive`] does.
    pub(crate) fn derive(
        key: &Key,
        cipher: Cipher,
        session: SessionId,
    ) -> Result<SessionSecret, CryptoFailure> {
        let mut subkey = derive_subkey(key, cipher, session)?;
        let raw = match cipher {
            Cipher::XChaCha20Poly1305 => hchacha20(&subkey, &[0; XCHACHA_PREFIX_LEN]),
            Cipher::Aes256Gcm | Cipher::ChaCha20Poly1305 => subkey,
        };
        // The copy on the stack: only `raw` keeps the key.
        wipe(&mut subkey);
        Ok(SessionSecret { cipher, raw })
    }

    /// Decrypts `in_out` in place if `tag` verifies under the nonce a
    /// [`SessionKey`] of this session sealed the frame with (the one made
    /// from `counter`). On failure the contents of `in_out` are
    /// unspecified.
    pub(crate) fn open(
        &self,
        counter: u64,
        aad: &[u8],
        in_out: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), CryptoFailure> {
        let alg = match self.cipher {
            Cipher::Aes256Gcm => &aead::AES_256_GCM,
            // XChaCha with the all-zero prefix is ChaCha20-Poly1305 under
            // the HChaCha20 key and the nonce's last 8 bytes, zero-padded:
            // the same 12 bytes as the 96-bit ciphers' nonce.
            Cipher::ChaCha20Poly1305 | Cipher::XChaCha20Poly1305 => &aead::CHACHA20_POLY1305,
        };
        let key = aead::LessSafeKey::new(
            aead::UnboundKey::new(alg, &self.raw).map_err(|_| CryptoFailure)?,
        );
        open_in_place(&key, ring_nonce(&nonce_bytes(counter)), aad, in_out, tag)
    }
}

impl Drop for SessionSecret {
    fn drop(&mut self) {
        wipe(&mut self.raw);
    }
}

/// HChaCha20 (draft-irtf-cfrg-xchacha-03 §2.2), from the RustCrypto
/// `chacha20` crate (the one `chacha20poly1305`'s XChaCha builds on).
fn hchacha20(key: &[u8; KEY_LEN], input: &[u8; XCHACHA_PREFIX_LEN]) -> [u8; KEY_LEN] {
    use chacha20::cipher::consts::U10;
    let out = chacha20::hchacha::<U10>(key.into(), input.into());
    out.into()
}

/// The counter as a 24-byte nonce field: 16 zero bytes, then the counter
/// big-endian. 96-bit ciphers take the last 12 bytes (4 zeros ‖ counter).
fn nonce_bytes(counter: u64) -> [u8; 24] {
    let mut nonce = [0u8; 24];
    nonce[16..].copy_from_slice(&counter.to_be_bytes());
    nonce
}

fn ring_nonce(nonce: &[u8; 24]) -> aead::Nonce {
    let mut short = [0u8; aead::NONCE_LEN];
    short.copy_from_slice(&nonce[24 - aead::NONCE_LEN..]);
    aead::Nonce::assume_unique_for_key(short)
}

#[cfg(test)]
mod tests {
    //! Known-answer tests: the primitives we call reproduce published
    //! vectors, byte for byte, through the same code path frames use.
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn nonce24(short_or_long: &[u8]) -> [u8; 24] {
        let mut n = [0u8; 24];
        n[24 - short_or_long.len()..].copy_from_slice(short_or_long);
        n
    }

    fn check_vector(
        cipher: Cipher,
        key: &str,
        nonce: &str,
        aad: &str,
        pt: &[u8],
        ct: &str,
        tag: &str,
    ) {
        let nonce = nonce24(&hex(nonce));
        let keyed = match cipher {
            // Frames key XChaCha with the all-zero prefix; the vector's
            // nonce has another, so key the same code path with it.
            Cipher::XChaCha20Poly1305 => {
                let prefix = nonce[..XCHACHA_PREFIX_LEN].try_into().unwrap();
                SessionKey::xchacha(&hex(key), prefix).unwrap()
            }
            _ => SessionKey::with_raw_key(cipher, &hex(key)).unwrap(),
        };
        let aad = hex(aad);
        let mut buf = pt.to_vec();
        let got_tag = keyed.seal_with_nonce(&nonce, &aad, &mut buf).unwrap();
        assert_eq!(buf, hex(ct), "{cipher} ciphertext");
        assert_eq!(got_tag.to_vec(), hex(tag), "{cipher} tag");

        keyed
            .open_with_nonce(&nonce, &aad, &mut buf, &got_tag)
            .unwrap();
        assert_eq!(buf, pt, "{cipher} decrypts");

        let mut bad = hex(ct);
        bad[0] ^= 1;
        assert!(
            keyed
                .open_with_nonce(&nonce, &aad, &mut bad, &got_tag)
                .is_err()
        );
    }

    const SUNSCREEN: &[u8] = b"Ladies and Gentlemen of the class of '99: If I could offer you \
        only one tip for the future, sunscreen would be it.";

    /// RFC 8439 §2.8.2.
    #[test]
    fn chacha20_poly1305_rfc8439_2_8_2() {
        check_vector(
            Cipher::ChaCha20Poly1305,
            "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f",
            "070000004041424344454647",
            "50515253c0c1c2c3c4c5c6c7",
            SUNSCREEN,
            "d31a8d34648e60db7b86afbc53ef7ec2 a4aded51296e08fea9e2b5a736ee62d6
             3dbea45e8ca9671282fafb69da92728b 1a71de0a9e060b2905d6a5b67ecd3b36
             92ddbd7f2d778b8c9803aee328091b58 fab324e4fad675945585808b4831d7bc
             3ff4def08e4b7a9de576d26586cec64b 6116",
            "1ae10b594f09e26a7e902ecbd0600691",
        );
    }

    /// draft-irtf-cfrg-xchacha-03 §A.3.1.
    #[test]
    fn xchacha20_poly1305_draft_a_3_1() {
        check_vector(
            Cipher::XChaCha20Poly1305,
            "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f",
            "404142434445464748494a4b4c4d4e4f5051525354555657",
            "50515253c0c1c2c3c4c5c6c7",
            SUNSCREEN,
            "bd6d179d3e83d43b9576579493c0e939 572a1700252bfaccbed2902c21396cbb
             731c7f1b0b4aa6440bf3a82f4eda7e39 ae64c6708c54c216cb96b72e1213b452
             2f8c9ba40db5d945b11b69b982c1bb9e 3f3fac2bc369488f76b2383565d3fff9
             21f9664c97637da9768812f615c68b13 b52e",
            "c0875924c1c7987947deafd8780acf49",
        );
    }

    /// McGrew & Viega, "The Galois/Counter Mode of Operation", Test Case 16
    /// (AES-256, 60-byte plaintext, 20-byte AAD).
    #[test]
    fn aes_256_gcm_mcgrew_viega_test_case_16() {
        check_vector(
            Cipher::Aes256Gcm,
            "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
            "cafebabefacedbaddecaf888",
            "feedfacedeadbeeffeedfacedeadbeefabaddad2",
            &hex(
                "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72
                 1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
            ),
            "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa
             8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
            "76fc6ece0f4e1768cddf8853bb2d551b",
        );
    }

    /// draft-irtf-cfrg-xchacha-03 §2.2.1.
    #[test]
    fn hchacha20_draft_2_2_1() {
        let key: [u8; 32] =
            hex("000102030405060708090a0b0c0d0e0f 101112131415161718191a1b1c1d1e1f")
                .try_into()
                .unwrap();
        let input: [u8; 16] = hex("000000090000004a0000000031415927").try_into().unwrap();
        assert_eq!(
            hchacha20(&key, &input).to_vec(),
            hex("82413b4227b27bfed30e42508a877d73 a0f9e4d58a74a853c12ec41326d3ecdc")
        );
    }

    /// Our XChaCha20-Poly1305 (HChaCha20 once per key, then ring) gives
    /// the same bytes as the `chacha20poly1305` crate's, which runs
    /// HChaCha20 on every call, for the nonces frames use.
    #[test]
    fn xchacha_matches_the_chacha20poly1305_crate_on_counter_nonces() {
        use chacha20poly1305::XChaCha20Poly1305;
        use chacha20poly1305::aead::{AeadInPlace, KeyInit};
        for seed in 0u8..8 {
            let raw: Vec<u8> = (0..32u8)
                .map(|i| i.wrapping_mul(seed).wrapping_add(seed))
                .collect();
            let ours = SessionKey::with_raw_key(Cipher::XChaCha20Poly1305, &raw).unwrap();
            let theirs = XChaCha20Poly1305::new_from_slice(&raw).unwrap();
            for counter in [0, 1, 0x01_0203_0405, (1 << 40) - 1, u64::MAX] {
                let aad = [seed; 21];
                let plaintext: Vec<u8> = (0..usize::from(seed) * 37).map(|i| i as u8).collect();
                let mut a = plaintext.clone();
                let tag_a = ours.seal(counter, &aad, &mut a).unwrap();
                let mut b = plaintext.clone();
                let tag_b = theirs
                    .encrypt_in_place_detached((&nonce_bytes(counter)).into(), &aad, &mut b)
                    .unwrap();
                assert_eq!(a, b, "ciphertext, seed {seed}, counter {counter}");
                assert_eq!(
                    tag_a,
                    <[u8; 16]>::from(tag_b),
                    "tag, seed {seed}, counter {counter}"
                );
                ours.open(counter, &aad, &mut a, &tag_a).unwrap();
                assert_eq!(a, plaintext);
            }
        }
    }

    #[test]
    fn an_xchacha_key_refuses_a_nonce_outside_its_prefix() {
        let key = SessionKey::with_raw_key(Cipher::XChaCha20Poly1305, &[3; 32]).unwrap();
        let mut nonce = nonce_bytes(7);
        let mut buf = *b"payload";
        let tag = key.seal_with_nonce(&nonce, b"", &mut buf).unwrap();
        nonce[15] = 1;
        assert!(key.seal_with_nonce(&nonce, b"", &mut [0u8; 4]).is_err());
        assert!(key.open_with_nonce(&nonce, b"", &mut buf, &tag).is_err());
    }

    #[test]
    fn the_nonce_is_the_counter_zero_padded() {
        let n = nonce_bytes(0x0102_0304_0506_0708);
        assert_eq!(&n[..16], &[0u8; 16]);
        assert_eq!(&n[16..], &[1, 2, 3, 4, 5, 6, 7, 8]);
    }

    #[test]
    fn subkeys_differ_per_session_and_cipher() {
        let key = Key::from_bytes(&[9; KEY_LEN]).unwrap();
        let s1 = SessionId::from_bytes([1; 8]);
        let s2 = SessionId::from_bytes([2; 8]);
        let seal = |cipher, session| {
            let k = SessionKey::derive(&key, cipher, session).unwrap();
            let mut buf = [0u8; 16];
            k.seal(0, b"", &mut buf).unwrap();
            buf
        };
        // Same plaintext, same counter: different keystreams.
        assert_ne!(seal(Cipher::Aes256Gcm, s1), seal(Cipher::Aes256Gcm, s2));
        assert_ne!(
            seal(Cipher::ChaCha20Poly1305, s1),
            seal(Cipher::XChaCha20Poly1305, s1)
        );
        assert_eq!(seal(Cipher::Aes256Gcm, s1), seal(Cipher::Aes256Gcm, s1));
    }

    #[test]
    fn an_opener_secret_opens_what_the_session_key_sealed_and_nothing_else() {
        let key = Key::from_bytes(&[7; KEY_LEN]).unwrap();
        let session = SessionId::from_bytes([5; 8]);
        for cipher in Cipher::ALL {
            let sealer = SessionKey::derive(&key, cipher, session).unwrap();
            let secret = SessionSecret::derive(&key, cipher, session).unwrap();
            let plain = *b"the state of node-1";
            let mut buf = plain;
            let tag = sealer.seal(42, b"aad", &mut buf).unwrap();
            assert_ne!(buf, plain, "{cipher}: encrypted");

            let mut opened = buf;
            secret.open(42, b"aad", &mut opened, &tag).unwrap();
            assert_eq!(opened, plain, "{cipher}");

            // Another counter, other associated data, another session or
            // cipher: the tag does not verify.
            assert!(secret.open(43, b"aad", &mut buf.clone(), &tag).is_err());
            assert!(secret.open(42, b"aab", &mut buf.clone(), &tag).is_err());
            let other = SessionSecret::derive(&key, cipher, SessionId::from_bytes([6; 8])).unwrap();
            assert!(other.open(42, b"aad", &mut buf.clone(), &tag).is_err());
            for wrong in Cipher::ALL.into_iter().filter(|&c| c != cipher) {
                let s = SessionSecret::derive(&key, wrong, session).unwrap();
                assert!(
                    s.open(42, b"aad", &mut buf.clone(), &tag).is_err(),
                    "{wrong}"
                );
            }
        }
    }

    #[test]
    fn wire_ids_round_trip() {
        for c in Cipher::ALL {
            assert_eq!(Cipher::from_wire_id(c.wire_id()), Some(c));
        }
        assert_eq!(Cipher::from_wire_id(0), None);
        assert_eq!(Cipher::from_wire_id(4), None);
    }
}
