//! Makes a cluster CA and node certificates for the QUIC transport.
//!
//! ```text
//! cargo run --example gen_certs -- DIR [--years N] NODE...
//! ```
//!
//! `NODE` is `name` or `name=san,san,...`. A bare name gets the SANs
//! `name`, `localhost`, `127.0.0.1` and `::1` (fine on one machine);
//! for real deployments list the DNS names and IP addresses the node is
//! reached at, e.g. `node-1=node-1.gossip.internal,10.0.0.11`. The name
//! itself is always a SAN, so a node's gossip name can be bound to its
//! certificate.
//!
//! Writes `DIR/ca.pem`, `DIR/ca.key` and `DIR/NAME.pem`, `DIR/NAME.key` per
//! node. If `DIR/ca.key` already exists, that CA signs the new node
//! certificates (add a node without re-issuing the others); otherwise a
//! new CA is made. Keys are written with mode 0600. Validity starts today
//! and lasts 10 years for a CA and 1 year for a node; `--years N` sets
//! both.
//!
//! With `--identity`, it writes signed-state identities instead of TLS
//! certificates: `DIR/NAME.id.key` (an Ed25519 key) and `DIR/NAME.id.pem`
//! (its certificate from the CA, naming the node), for
//! `NodeBuilder::identity` and the agent's `--identity-key` /
//! `--identity-cert` (see `docs/SECURITY.md`, "Signed state").
//!
//! With no arguments it writes the development set committed under
//! `certs/`: `certs node-1 node-2 node-3 --years 10` (and the identities:
//! `certs --identity node-1 node-2 node-3 --years 10`).

// Certificate validity starts today.
#![allow(clippy::disallowed_methods)]

use std::error::Error;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

/// The CA's subject; a reused CA key must come with the same name.
const CA_NAME: &str = "scuttlewire cluster CA";

fn main() -> Result<(), Box<dyn Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() {
        args = ["certs", "node-1", "node-2", "node-3", "--years", "10"]
            .map(String::from)
            .to_vec();
    }
    let mut years: Option<i32> = None;
    let mut identity = false;
    let mut rest = Vec::new();
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        if arg == "--identity" {
            identity = true;
        } else if arg == "--years" {
            years = Some(it.next().ok_or("--years needs a number")?.parse()?);
        } else {
            rest.push(arg);
        }
    }
    let (dir, nodes) = rest
        .split_first()
        .ok_or("usage: gen_certs DIR [--years N] NODE...")?;
    let dir = PathBuf::from(dir);
    fs::create_dir_all(&dir)?;

    let (ca_years, node_years) = years.map_or((10, 1), |y| (y, y));
    let ca_key_path = dir.join("ca.key");
    let ca_key = if ca_key_path.exists() {
        println!("reusing the CA in {}", ca_key_path.display());
        KeyPair::from_pem(&fs::read_to_string(&ca_key_path)?)?
    } else {
        let key = KeyPair::generate()?;
        let cert = ca_params(ca_years)?.self_signed(&key)?;
        write(&dir.join("ca.pem"), &cert.pem(), false)?;
        write(&ca_key_path, &key.serialize_pem(), true)?;
        key
    };
    let issuer = Issuer::new(ca_params(ca_years)?, ca_key);

    for node in nodes {
        let (name, sans) = match node.split_once('=') {
            Some((name, sans)) => {
                let mut all = vec![name.to_owned()];
                all.extend(sans.split(',').filter(|s| !s.is_empty()).map(String::from));
                (name.to_owned(), all)
            }
            None => (
                node.clone(),
                [node.as_str(), "localhost", "127.0.0.1", "::1"]
                    .map(String::from)
                    .to_vec(),
            ),
        };
        let (key, suffix) = if identity {
            (KeyPair::generate_for(&rcgen::PKCS_ED25519)?, ".id")
        } else {
            (KeyPair::generate()?, "")
        };
        let cert = node_params(&name, sans, node_years)?.signed_by(&key, &issuer)?;
        write(&dir.join(format!("{name}{suffix}.pem")), &cert.pem(), false)?;
        write(
            &dir.join(format!("{name}{suffix}.key")),
            &key.serialize_pem(),
            true,
        )?;
    }
    Ok(())
}

fn ca_params(years: i32) -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = named(CA_NAME);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut params, years);
    Ok(params)
}

fn node_params(
    name: &str,
    sans: Vec<String>,
    years: i32,
) -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(sans)?;
    params.distinguished_name = named(name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, years);
    Ok(params)
}

fn named(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}

/// From today (UTC) for `years` years.
fn validity(params: &mut CertificateParams, years: i32) {
    let days = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400) as i64;
    let (y, m, d) = civil_from_days(days);
    params.not_before = rcgen::date_time_ymd(y, m, d);
    // 1 March exists in every year; for other days 29 Feb is the only risk.
    let d_end = if m == 2 && d == 29 { 28 } else { d };
    params.not_after = rcgen::date_time_ymd(y + years, m, d_end);
}

/// Days since 1970-01-01 to (year, month, day) — Howard Hinnant's
/// `civil_from_days`.
fn civil_from_days(z: i64) -> (i32, u8, u8) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let y = (yoe + era * 400 + i64::from(m <= 2)) as i32;
    (y, m, d)
}

fn write(path: &Path, contents: &str, secret: bool) -> std::io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    std::io::Write::write_all(&mut options.open(path)?, contents.as_bytes())?;
    println!("wrote {}", path.display());
    Ok(())
}
