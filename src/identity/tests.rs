use proptest::prelude::*;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair as RcgenKey, KeyUsagePurpose,
};

use super::*;

/// 2030-01-01, inside the test certificates' validity.
const WHEN: u64 = 1_893_456_000;

struct Ca {
    pem: String,
    issuer: Issuer<'static, RcgenKey>,
}

fn ca(cn: &str) -> Ca {
    let key = RcgenKey::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = rcgen::date_time_ymd(2026, 1, 1);
    params.not_after = rcgen::date_time_ymd(2036, 1, 1);
    let cert = params.self_signed(&key).unwrap();
    Ca {
        pem: cert.pem(),
        issuer: Issuer::new(params, key),
    }
}

/// An Ed25519 identity for `name` with a certificate from `ca` valid
/// until `until_year`.
fn certified(ca: &Ca, name: &str, until_year: i32) -> Identity {
    let key = RcgenKey::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let mut params = CertificateParams::new(vec![name.to_owned()]).unwrap();
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.not_before = rcgen::date_time_ymd(2026, 1, 1);
    params.not_after = rcgen::date_time_ymd(until_year, 1, 1);
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    Identity::from_pem(key.serialize_pem().as_bytes(), Some(cert.pem().as_bytes())).unwrap()
}

#[test]
fn a_certified_identity_is_admitted_under_its_own_name_only() {
    let ca = ca("test CA");
    let trust = CaTrust::from_pem(ca.pem.as_bytes()).unwrap().at(WHEN);
    let id = certified(&ca, "node-1", 2031);
    assert!(id.is_certified());
    let key = trust.admit("node-1", &id.published()).unwrap();
    assert_eq!(key.to_bytes(), id.public_key());
    let other = trust.admit("node-2", &id.published());
    assert!(
        matches!(other, Err(IdentityError::Untrusted { .. })),
        "{other:?}"
    );
}

#[test]
fn a_certificate_from_another_ca_an_expired_one_or_a_bare_key_is_refused() {
    let ca1 = ca("test CA");
    let ca2 = ca("other CA");
    let trust = CaTrust::from_pem(ca1.pem.as_bytes()).unwrap().at(WHEN);
    let foreign = certified(&ca2, "node-1", 2031);
    assert!(trust.admit("node-1", &foreign.published()).is_err());
    let expired = certified(&ca1, "node-1", 2029);
    assert!(trust.admit("node-1", &expired.published()).is_err());
    // The same certificate is fine before it expires.
    let early = CaTrust::from_pem(ca1.pem.as_bytes())
        .unwrap()
        .at(WHEN - 86_400 * 365);
    assert!(early.admit("node-1", &expired.published()).is_ok());
    let bare = Identity::generate().unwrap();
    assert!(trust.admit("node-1", &bare.published()).is_err());
}

#[test]
fn a_certificate_for_another_key_cannot_be_attached() {
    let ca = ca("test CA");
    let certified = certified(&ca, "node-1", 2031);
    let cert = &certified.published()[2..];
    let other = Identity::generate().unwrap();
    let err = other.with_certificate(cert).unwrap_err();
    assert!(matches!(err, IdentityError::Certificate(_)), "{err:?}");
}

#[test]
fn trust_on_first_use_pins_the_first_key_per_name() {
    let trust = TrustOnFirstUse::new();
    let a = Identity::generate().unwrap();
    let b = Identity::generate().unwrap();
    assert_eq!(
        trust.admit("n", &a.published()).unwrap().to_bytes(),
        a.public_key()
    );
    assert!(
        trust.admit("n", &a.published()).is_ok(),
        "the same key again"
    );
    assert_eq!(
        trust.admit("n", &b.published()),
        Err(IdentityError::PinMismatch { name: "n".into() })
    );
    assert!(trust.admit("m", &b.published()).is_ok());
}

#[test]
fn malformed_identities_are_refused() {
    let trust = TrustOnFirstUse::new();
    for bad in [&b""[..], &[9, 0], &[1, 0, 1, 2], &[1, 7, 1], &[1, 1]] {
        assert!(
            matches!(trust.admit("n", bad), Err(IdentityError::Malformed(_))),
            "{bad:?}"
        );
    }
    // A certificate kind whose bytes are no certificate.
    assert!(trust.admit("n", &[1, 1, 0x30, 0x00]).is_err());
}

#[test]
fn a_saved_key_loads_back_as_the_same_identity() {
    let a = Identity::generate().unwrap();
    let b = Identity::from_pem(a.pkcs8_pem().as_bytes(), None).unwrap();
    assert_eq!(a.public_key(), b.public_key());
    assert_eq!(a.published(), b.published());
    assert!(Identity::from_pem(b"not pem", None).is_err());
}

#[test]
fn entry_and_head_messages_are_domain_separated() {
    // A head and an entry with the same numbers never share bytes that a
    // signature could cover twice.
    let e = entry_message(1, "n", 2, "", b"", 3, false);
    let h = head_message(1, "n", 2, 3);
    assert_ne!(e, h);
    assert!(e.starts_with(ENTRY_DOMAIN) && h.starts_with(HEAD_DOMAIN));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// `verify(sign(x))` holds, and flipping any bit of the signed message
    /// or the signature breaks it.
    #[test]
    fn signatures_verify_and_any_flipped_bit_fails(
        cluster: u32,
        name in "[a-z0-9-]{1,16}",
        generation: u64,
        key in "[a-z./]{0,12}",
        value in proptest::collection::vec(any::<u8>(), 0..64),
        version: u64,
        tombstone: bool,
        flip in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let id = Identity::from_pkcs8(FIXED_KEY.get_or_init(fixed_key)).unwrap();
        let public = PublicKey::from_bytes(id.public_key());
        let msg = entry_message(cluster, &name, generation, &key, &value, version, tombstone);
        let sig = id.sign(&msg);
        prop_assert!(public.verify(&msg, &sig));
        let mut bad_msg = msg.clone();
        let i = flip.index(bad_msg.len());
        bad_msg[i] ^= 1 << bit;
        prop_assert!(!public.verify(&bad_msg, &sig));
        let mut bad_sig = sig;
        bad_sig[flip.index(SIGNATURE_LEN)] ^= 1 << bit;
        prop_assert!(!public.verify(&msg, &bad_sig));
        prop_assert!(!public.verify(&msg, &sig[..63]));
        let head = head_message(cluster, &name, generation, version);
        prop_assert!(!public.verify(&head, &sig), "an entry signature never passes as a head's");
    }
}

static FIXED_KEY: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();

#[allow(clippy::disallowed_methods)] // a test key
fn fixed_key() -> Vec<u8> {
    Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
        .unwrap()
        .as_ref()
        .to_vec()
}
