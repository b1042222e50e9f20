//! Mutual TLS for [`Quic`](super::Quic): PEM loading, the rustls server and
//! client configurations, and certificate name checks.
//!
//! Trust is membership: every node holds a certificate signed by the
//! cluster CA, and both ends of every connection verify the other's chain
//! against that CA alone — the server with rustls' [`WebPkiClientVerifier`]
//! (a client certificate is mandatory), the client with
//! [`ClusterServerVerifier`]. Only the ring provider is used, passed
//! explicitly; the process-default provider is never consulted.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::{QUIC_ALPN, QuicConfig};
use crate::transport::TransportError;

/// The one crypto provider this transport uses.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn setup(msg: impl fmt::Display) -> TransportError {
    TransportError::Setup(msg.to_string())
}

/// Reads a PEM file; the error names `what` and the path.
pub(super) fn read_pem(path: &Path, what: &str) -> Result<Vec<u8>, TransportError> {
    std::fs::read(path).map_err(|e| setup(format_args!("{what} {}: {e}", path.display())))
}

/// Every `CERTIFICATE` block of `pem`; at least one. `origin` names the
/// source in errors (a file path or "CA certificate PEM").
pub(super) fn parse_certs(
    pem: &[u8],
    origin: &str,
) -> Result<Vec<CertificateDer<'static>>, TransportError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| setup(format_args!("{origin}: malformed PEM: {e}")))?;
    if certs.is_empty() {
        return Err(setup(format_args!("{origin}: no CERTIFICATE block found")));
    }
    Ok(certs)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) of `pem`.
pub(super) fn parse_key(
    pem: &[u8],
    origin: &str,
) -> Result<PrivateKeyDer<'static>, TransportError> {
    PrivateKeyDer::from_pem_slice(pem)
        .map_err(|e| setup(format_args!("{origin}: no usable private key: {e}")))
}

/// Checks the certificates themselves before any socket exists, so a bad
/// file fails [`Quic::bind`](super::Quic::bind) instead of every handshake.
fn roots(config: &QuicConfig) -> Result<Arc<RootCertStore>, TransportError> {
    let mut roots = RootCertStore::empty();
    for (i, ca) in config.ca.iter().enumerate() {
        roots
            .add(ca.clone())
            .map_err(|e| setup(format_args!("QUIC CA certificate #{i}: {e}")))?;
    }
    if roots.is_empty() {
        return Err(setup("QuicConfig.ca holds no CA certificate"));
    }
    Ok(Arc::new(roots))
}

/// The rustls server half: presents the node certificate, requires and
/// verifies a client certificate, speaks only TLS 1.3 and [`QUIC_ALPN`].
pub(super) fn server_config(config: &QuicConfig) -> Result<rustls::ServerConfig, TransportError> {
    let provider = provider();
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(config)?, provider.clone())
        .build()
        .map_err(|e| setup(format_args!("QUIC client verifier: {e}")))?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| setup(format_args!("QUIC TLS versions: {e}")))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(config.cert_chain.clone(), config.key.clone_key())
        .map_err(|e| setup(format_args!("QUIC node certificate or key: {e}")))?;
    tls.alpn_protocols = vec![QUIC_ALPN.to_vec()];
    // No 0-RTT: early data would reach us before the client is verified.
    tls.max_early_data_size = 0;
    Ok(tls)
}

/// The rustls client half: presents the node certificate and verifies the
/// server's chain against the cluster CA (and its name, if configured).
pub(super) fn client_config(config: &QuicConfig) -> Result<rustls::ClientConfig, TransportError> {
    let provider = provider();
    let verifier = Arc::new(ClusterServerVerifier {
        roots: roots(config)?,
        provider: provider.clone(),
        check_name: config.server_name.is_some(),
    });
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| setup(format_args!("QUIC TLS versions: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(config.cert_chain.clone(), config.key.clone_key())
        .map_err(|e| setup(format_args!("QUIC node certificate or key: {e}")))?;
    tls.alpn_protocols = vec![QUIC_ALPN.to_vec()];
    tls.enable_early_data = false;
    Ok(tls)
}

/// Whether `cert` carries `name` (a DNS name or an IP address) as a subject
/// alternative name. `false` for a certificate that does not parse.
pub(super) fn covers_name(cert: &CertificateDer<'_>, name: &str) -> bool {
    let (Ok(parsed), Ok(name)) = (
        ParsedCertificate::try_from(cert),
        ServerName::try_from(name),
    ) else {
        return false;
    };
    rustls::client::verify_server_name(&parsed, &name).is_ok()
}

/// Verifies a server's certificate chain against the cluster CA, the way
/// [`WebPkiClientVerifier`] verifies a client's. The name the dialler
/// asked for is checked only when [`QuicConfig::server_name`] is set: a
/// gossip peer is dialled by address, and holding a certificate from the
/// cluster CA is what makes it a member.
#[derive(Debug)]
struct ClusterServerVerifier {
    roots: Arc<RootCertStore>,
    provider: Arc<CryptoProvider>,
    check_name: bool,
}

impl ServerCertVerifier for ClusterServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        if self.check_name {
            rustls::client::verify_server_name(&cert, server_name)?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
