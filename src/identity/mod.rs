//! Node identities: the Ed25519 keys that sign a node's state, and the
//! trust that binds a public key to a node name.
//!
//! A node that signs ([`Signatures::Sign`](crate::config::Signatures) or
//! `Require`) holds an [`Identity`]: an Ed25519 signing key and, in the
//! strong mode, a certificate for that key issued by the cluster CA with
//! the node's name as a subject alternative name. It publishes the public
//! half under the reserved state key [`IDENTITY_KEY`] and signs every
//! entry it writes and every *head* (its highest version and collected
//! tombstones) with the private half. Receivers take the key from that
//! entry through a [`Trust`] — [`CaTrust`] (the certificate must chain to
//! the cluster CA and name the node) or [`TrustOnFirstUse`] (the first key
//! seen for a name is pinned) — and check every entry and head against it
//! before applying them, whoever relayed them.
//!
//! What is signed ([`entry_message`], [`head_message`]) and what it costs
//! is in `docs/SECURITY.md` ("Signed state"). This layer is pure: ring and
//! webpki, no sockets, no clock except [`CaTrust`]'s certificate-validity
//! check, which can be pinned ([`CaTrust::at`]).

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use ring::rand::SystemRandom;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, TrustAnchor, UnixTime};

/// The reserved state key under which a signing node publishes its
/// identity (see [`Identity::published`]).
pub const IDENTITY_KEY: &str = "__sw.id";

/// Bytes of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;

/// Bytes of an Ed25519 public key.
pub const PUBLIC_KEY_LEN: usize = 32;

/// First byte of a published identity: the format version.
const FORMAT: u8 = 1;
/// Second byte: the identity is a bare public key (trust on first use).
const KIND_KEY: u8 = 0;
/// Second byte: the identity is a DER certificate from the cluster CA.
const KIND_CERT: u8 = 1;

/// The DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): the
/// 32-byte key follows it.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// Domain separation of the two signed messages: a signature over one can
/// never pass as the other.
const ENTRY_DOMAIN: &[u8] = b"scuttlewire/v1 entry\0";
const HEAD_DOMAIN: &[u8] = b"scuttlewire/v1 head\0";
const MEMBER_DOMAIN: &[u8] = b"scuttlewire/v1 member\0";

/// Why an identity could not be made, loaded or trusted.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum IdentityError {
    /// A key or certificate file could not be read.
    #[error("{path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// The private key is not an Ed25519 PKCS#8 key.
    #[error("identity key: {0}")]
    Key(String),
    /// The certificate does not parse, or is not for this key.
    #[error("identity certificate: {0}")]
    Certificate(String),
    /// A published identity is malformed or of an unknown format.
    #[error("published identity is malformed: {0}")]
    Malformed(&'static str),
    /// The certificate does not chain to the cluster CA, has expired, or
    /// does not name the member.
    #[error("identity of {name:?} is not trusted: {reason}")]
    Untrusted {
        /// The member that published it.
        name: String,
        /// Why.
        reason: String,
    },
    /// Trust on first use: the member published a different key before.
    #[error("identity of {name:?} differs from the key pinned on first use")]
    PinMismatch {
        /// The member.
        name: String,
    },
}

/// A node's signing key and what it publishes about it.
pub struct Identity {
    pair: Ed25519KeyPair,
    /// The value of [`IDENTITY_KEY`]: format, kind, key or certificate.
    published: Bytes,
    /// The PKCS#8 document of the key (to save a generated one).
    pkcs8: Vec<u8>,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("public_key", &hex(self.public_key()))
            .field("certified", &self.is_certified())
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// A fresh random key without a certificate (trust on first use).
    /// Save [`pkcs8_pem`](Identity::pkcs8_pem) and load it on restart:
    /// peers that pinned the old key refuse a new one for the same name.
    pub fn generate() -> Result<Identity, IdentityError> {
        // Key generation is the one use of OS randomness here, as for
        // `seal::Key::generate`; nothing in the engine calls it.
        #[allow(clippy::disallowed_methods)]
        let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| IdentityError::Key("no OS randomness to generate a key".into()))?;
        Identity::from_pkcs8(doc.as_ref())
    }

    /// An identity from an Ed25519 private key in PKCS#8 DER (v1 or v2),
    /// without a certificate.
    pub fn from_pkcs8(der: &[u8]) -> Result<Identity, IdentityError> {
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
            .map_err(|e| IdentityError::Key(format!("not an Ed25519 PKCS#8 key ({e})")))?;
        let mut published = vec![FORMAT, KIND_KEY];
        published.extend_from_slice(pair.public_key().as_ref());
        Ok(Identity {
            pair,
            published: published.into(),
            pkcs8: der.to_vec(),
        })
    }

    /// An identity from PEM: a `PRIVATE KEY` (PKCS#8, Ed25519) and,
    /// optionally, the node's certificate from the cluster CA (its first
    /// `CERTIFICATE` block), which must be for that key.
    pub fn from_pem(key_pem: &[u8], cert_pem: Option<&[u8]>) -> Result<Identity, IdentityError> {
        let key = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|e| IdentityError::Key(format!("no PEM private key ({e})")))?;
        let PrivateKeyDer::Pkcs8(der) = key else {
            return Err(IdentityError::Key(
                "not a PKCS#8 `PRIVATE KEY` (Ed25519 keys are PKCS#8)".into(),
            ));
        };
        let id = Identity::from_pkcs8(der.secret_pkcs8_der())?;
        match cert_pem {
            None => Ok(id),
            Some(pem) => {
                let cert = CertificateDer::from_pem_slice(pem)
                    .map_err(|e| IdentityError::Certificate(format!("no PEM certificate ({e})")))?;
                id.with_certificate(cert.as_ref())
            }
        }
    }

    /// [`from_pem`](Identity::from_pem) from files.
    pub fn load(key: &Path, cert: Option<&Path>) -> Result<Identity, IdentityError> {
        let read = |p: &Path| {
            std::fs::read(p).map_err(|e| IdentityError::Read {
                path: p.display().to_string(),
                reason: e.to_string(),
            })
        };
        let key_pem = read(key)?;
        let cert_pem = cert.map(read).transpose()?;
        Identity::from_pem(&key_pem, cert_pem.as_deref())
    }

    /// Attaches the node's certificate (DER), which must carry this key.
    pub fn with_certificate(self, cert_der: &[u8]) -> Result<Identity, IdentityError> {
        let key = certificate_key(cert_der).map_err(IdentityError::Certificate)?;
        if key != self.public_key() {
            return Err(IdentityError::Certificate(
                "the certificate is for another key than the identity key".into(),
            ));
        }
        let mut published = vec![FORMAT, KIND_CERT];
        published.extend_from_slice(cert_der);
        Ok(Identity {
            published: published.into(),
            ..self
        })
    }

    /// The public key.
    pub fn public_key(&self) -> [u8; PUBLIC_KEY_LEN] {
        let mut k = [0u8; PUBLIC_KEY_LEN];
        k.copy_from_slice(self.pair.public_key().as_ref());
        k
    }

    /// Whether a certificate is attached.
    pub fn is_certified(&self) -> bool {
        self.published.get(1) == Some(&KIND_CERT)
    }

    /// The private key as a PKCS#8 PEM document (keep it secret).
    pub fn pkcs8_pem(&self) -> String {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(&self.pkcs8);
        let mut out = String::from("-----BEGIN PRIVATE KEY-----\n");
        for line in b64.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(line).unwrap_or_default());
            out.push('\n');
        }
        out.push_str("-----END PRIVATE KEY-----\n");
        out
    }

    /// The value published under [`IDENTITY_KEY`]: a format byte (1), a
    /// kind byte (0: the 32-byte public key follows; 1: a DER certificate
    /// follows).
    pub fn published(&self) -> Bytes {
        self.published.clone()
    }

    /// Signs `msg`.
    pub fn sign(&self, msg: &[u8]) -> [u8; SIGNATURE_LEN] {
        let mut s = [0u8; SIGNATURE_LEN];
        s.copy_from_slice(self.pair.sign(msg).as_ref());
        s
    }
}

/// A member's verified public key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey([u8; PUBLIC_KEY_LEN]);

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", hex(self.0))
    }
}

impl PublicKey {
    /// The key from its 32 bytes.
    pub fn from_bytes(bytes: [u8; PUBLIC_KEY_LEN]) -> PublicKey {
        PublicKey(bytes)
    }

    /// Its 32 bytes.
    pub fn to_bytes(self) -> [u8; PUBLIC_KEY_LEN] {
        self.0
    }

    /// Whether `signature` is this key's signature of `msg`.
    pub fn verify(&self, msg: &[u8], signature: &[u8]) -> bool {
        signature.len() == SIGNATURE_LEN
            && UnparsedPublicKey::new(&ED25519, &self.0)
                .verify(msg, signature)
                .is_ok()
    }
}

/// Decides whether a member's published identity binds a key to its name.
pub trait Trust: Send + Sync + fmt::Debug {
    /// The key that `published` (the value of the member's
    /// [`IDENTITY_KEY`]) binds to `name`, or why it does not.
    fn admit(&self, name: &str, published: &[u8]) -> Result<PublicKey, IdentityError>;
}

/// Trust in the cluster CA: a member's identity is a certificate for an
/// Ed25519 key that chains to the CA (no intermediates), is valid now,
/// and carries the member's name as a DNS-name or IP-address subject
/// alternative name.
pub struct CaTrust {
    /// The CA certificates (DER), kept to rebuild the trust anchors.
    roots: Vec<CertificateDer<'static>>,
    /// A fixed time to validate certificates at, instead of the system
    /// clock (tests, the simulator).
    at: Option<UnixTime>,
}

impl fmt::Debug for CaTrust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaTrust")
            .field("roots", &self.roots.len())
            .field("at", &self.at.map(|t| t.as_secs()))
            .finish()
    }
}

impl CaTrust {
    /// Trust in the CA certificates of `pem` (every `CERTIFICATE` block).
    pub fn from_pem(pem: &[u8]) -> Result<CaTrust, IdentityError> {
        let roots = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| IdentityError::Certificate(format!("CA PEM: {e}")))?;
        if roots.is_empty() {
            return Err(IdentityError::Certificate(
                "CA PEM: no CERTIFICATE block found".into(),
            ));
        }
        for r in &roots {
            webpki::anchor_from_trusted_cert(r)
                .map_err(|e| IdentityError::Certificate(format!("CA certificate: {e}")))?;
        }
        Ok(CaTrust { roots, at: None })
    }

    /// [`from_pem`](CaTrust::from_pem) from a file.
    pub fn load(path: &Path) -> Result<CaTrust, IdentityError> {
        let pem = std::fs::read(path).map_err(|e| IdentityError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        CaTrust::from_pem(&pem)
    }

    /// Validates certificates at `unix_secs` instead of the system clock.
    pub fn at(mut self, unix_secs: u64) -> CaTrust {
        self.at = Some(UnixTime::since_unix_epoch(std::time::Duration::from_secs(
            unix_secs,
        )));
        self
    }

    fn now(&self) -> UnixTime {
        self.at.unwrap_or_else(|| {
            // The one clock read of this layer: certificate validity.
            #[allow(clippy::disallowed_methods)]
            let now = SystemTime::now();
            UnixTime::since_unix_epoch(now.duration_since(UNIX_EPOCH).unwrap_or_default())
        })
    }
}

impl Trust for CaTrust {
    fn admit(&self, name: &str, published: &[u8]) -> Result<PublicKey, IdentityError> {
        let untrusted = |reason: String| IdentityError::Untrusted {
            name: name.to_owned(),
            reason,
        };
        let der = match parse_published(published)? {
            Published::Key(_) => {
                return Err(untrusted(
                    "a bare key, and this node trusts only the cluster CA".into(),
                ));
            }
            Published::Cert(der) => der,
        };
        let cert_der = CertificateDer::from(der);
        let cert = webpki::EndEntityCert::try_from(&cert_der)
            .map_err(|e| untrusted(format!("certificate does not parse ({e})")))?;
        let anchors: Vec<TrustAnchor<'_>> = self
            .roots
            .iter()
            .filter_map(|r| webpki::anchor_from_trusted_cert(r).ok())
            .collect();
        cert.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &anchors,
            &[],
            self.now(),
            webpki::KeyUsage::client_auth(),
            None,
            None,
        )
        .map_err(|e| untrusted(format!("certificate not from the cluster CA ({e})")))?;
        let server_name = ServerName::try_from(name)
            .map_err(|_| untrusted("the name is not a DNS name or IP address".into()))?;
        cert.verify_is_valid_for_subject_name(&server_name)
            .map_err(|_| untrusted("the certificate does not carry the member's name".into()))?;
        certificate_key(der).map(PublicKey).map_err(untrusted)
    }
}

/// Trust on first use: the first key a member name publishes is pinned,
/// and a later, different one is refused. Weaker than [`CaTrust`]: whoever
/// speaks first for a name owns it, and a node that loses its key file
/// must take a new name. Certificates are accepted for their key alone.
#[derive(Debug, Default)]
pub struct TrustOnFirstUse {
    pins: Mutex<HashMap<String, PublicKey>>,
}

impl TrustOnFirstUse {
    /// An empty pin table.
    pub fn new() -> TrustOnFirstUse {
        TrustOnFirstUse::default()
    }

    /// Pins `key` for `name` ahead of time (a known member).
    pub fn pin(&self, name: &str, key: PublicKey) {
        if let Ok(mut pins) = self.pins.lock() {
            pins.insert(name.to_owned(), key);
        }
    }
}

impl Trust for TrustOnFirstUse {
    fn admit(&self, name: &str, published: &[u8]) -> Result<PublicKey, IdentityError> {
        let key = match parse_published(published)? {
            Published::Key(k) => PublicKey(k),
            Published::Cert(der) => {
                PublicKey(
                    certificate_key(der).map_err(|reason| IdentityError::Untrusted {
                        name: name.to_owned(),
                        reason,
                    })?,
                )
            }
        };
        let mut pins = self
            .pins
            .lock()
            .map_err(|_| IdentityError::Malformed("pin table poisoned"))?;
        match pins.get(name) {
            Some(pinned) if *pinned != key => Err(IdentityError::PinMismatch {
                name: name.to_owned(),
            }),
            Some(_) => Ok(key),
            None => {
                pins.insert(name.to_owned(), key);
                Ok(key)
            }
        }
    }
}

enum Published<'a> {
    Key([u8; PUBLIC_KEY_LEN]),
    Cert(&'a [u8]),
}

fn parse_published(published: &[u8]) -> Result<Published<'_>, IdentityError> {
    match published {
        [FORMAT, KIND_KEY, key @ ..] => {
            let key: [u8; PUBLIC_KEY_LEN] = key
                .try_into()
                .map_err(|_| IdentityError::Malformed("a key identity is not 32 bytes"))?;
            Ok(Published::Key(key))
        }
        [FORMAT, KIND_CERT, der @ ..] if !der.is_empty() => Ok(Published::Cert(der)),
        [FORMAT, ..] => Err(IdentityError::Malformed("unknown identity kind")),
        _ => Err(IdentityError::Malformed("unknown identity format")),
    }
}

/// The Ed25519 key a DER certificate carries.
fn certificate_key(der: &[u8]) -> Result<[u8; PUBLIC_KEY_LEN], String> {
    let cert_der = CertificateDer::from(der);
    let cert = webpki::EndEntityCert::try_from(&cert_der)
        .map_err(|e| format!("certificate does not parse ({e})"))?;
    let spki = cert.subject_public_key_info();
    let key = spki
        .as_ref()
        .strip_prefix(&ED25519_SPKI_PREFIX[..])
        .ok_or("the certificate's key is not Ed25519")?;
    key.try_into()
        .map_err(|_| "the certificate's Ed25519 key is not 32 bytes".to_owned())
}

/// What a node signs for one entry it writes: the cluster, its name and
/// generation, the key, the value, the version and whether it is a
/// tombstone, each length-prefixed after a domain tag.
pub fn entry_message(
    cluster: u32,
    name: &str,
    generation: u64,
    key: &str,
    value: &[u8],
    version: u64,
    tombstone: bool,
) -> Vec<u8> {
    let mut m = Vec::with_capacity(
        ENTRY_DOMAIN.len() + 4 + 8 + 8 + 1 + 2 + name.len() + 2 + key.len() + 4 + value.len(),
    );
    m.extend_from_slice(ENTRY_DOMAIN);
    m.extend_from_slice(&cluster.to_be_bytes());
    m.extend_from_slice(&generation.to_be_bytes());
    m.extend_from_slice(&version.to_be_bytes());
    m.push(u8::from(tombstone));
    push_str16(&mut m, name.as_bytes());
    push_str16(&mut m, key.as_bytes());
    m.extend_from_slice(&(value.len() as u32).to_be_bytes());
    m.extend_from_slice(value);
    m
}

/// What a node signs for its head: the cluster, its name and generation,
/// and its highest version. A head bounds what any delta of the node may
/// claim: no relay can move a receiver past the owner's last write.
pub fn head_message(cluster: u32, name: &str, generation: u64, max_version: u64) -> Vec<u8> {
    let mut m = Vec::with_capacity(HEAD_DOMAIN.len() + 4 + 16 + 2 + name.len());
    m.extend_from_slice(HEAD_DOMAIN);
    m.extend_from_slice(&cluster.to_be_bytes());
    m.extend_from_slice(&generation.to_be_bytes());
    m.extend_from_slice(&max_version.to_be_bytes());
    push_str16(&mut m, name.as_bytes());
    m
}

/// What a membership claim's signer signs: the cluster, the member's
/// name and generation, the incarnation, the state (0 alive, 1 suspect,
/// 2 dead, 3 left, as on the wire) and the signer's name — the member
/// itself for alive and left, the accuser for suspect and dead.
pub fn member_message(
    cluster: u32,
    name: &str,
    generation: u64,
    incarnation: u64,
    state: u8,
    signer: &str,
) -> Vec<u8> {
    let mut m = Vec::with_capacity(MEMBER_DOMAIN.len() + 4 + 17 + 4 + name.len() + signer.len());
    m.extend_from_slice(MEMBER_DOMAIN);
    m.extend_from_slice(&cluster.to_be_bytes());
    m.extend_from_slice(&generation.to_be_bytes());
    m.extend_from_slice(&incarnation.to_be_bytes());
    m.push(state);
    push_str16(&mut m, name.as_bytes());
    push_str16(&mut m, signer.as_bytes());
    m
}

fn push_str16(m: &mut Vec<u8>, s: &[u8]) {
    // Names and keys are capped far below 64 KiB before they get here.
    let len = u16::try_from(s.len()).unwrap_or(u16::MAX);
    m.extend_from_slice(&len.to_be_bytes());
    m.extend_from_slice(&s[..usize::from(len)]);
}

fn hex(bytes: impl AsRef<[u8]>) -> String {
    bytes.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;
