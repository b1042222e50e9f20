//! Binding gossip node names to certificates: with
//! [`QuicConfig::node_name`](super::QuicConfig::node_name) set, a datagram
//! is delivered only if the sender name its packet claims is a subject
//! alternative name of the certificate of the connection it came on.
//!
//! Without this, any holder of a certificate from the cluster CA could send
//! packets in any member's name. The check reads only the packet's sender
//! field ([`wire::sender_name`]); a datagram that names no sender (not a
//! packet at all, or a compact header naming a member by its key) passes,
//! to be judged by the engine.

use rustls::pki_types::CertificateDer;

use super::tls;
use crate::wire;

/// The name check of one connection, run by its reader task.
pub(super) struct NameBinding {
    /// The peer's leaf certificate; `None` if quinn reports none (never
    /// after a successful handshake, which required one), and then every
    /// claimed name is refused.
    cert: Option<CertificateDer<'static>>,
    /// The last name found on the certificate. A peer names itself the
    /// same way in every packet, so the certificate is parsed once per
    /// connection, not once per datagram.
    verified: Option<String>,
}

impl NameBinding {
    pub(super) fn new(cert: Option<CertificateDer<'static>>) -> NameBinding {
        NameBinding {
            cert,
            verified: None,
        }
    }

    /// Checks one datagram: `Err` with the name it claims if that name is
    /// not on the certificate, `Ok` otherwise (the name is on it, or the
    /// datagram claims none).
    pub(super) fn check(&mut self, datagram: &[u8]) -> Result<(), String> {
        let Some(name) = wire::sender_name(datagram) else {
            return Ok(());
        };
        if self.verified.as_ref() == Some(&name) {
            return Ok(());
        }
        if self
            .cert
            .as_ref()
            .is_some_and(|c| tls::covers_name(c, &name))
        {
            self.verified = Some(name);
            return Ok(());
        }
        Err(name)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use prost::Message as _;

    use super::*;
    use crate::wire::proto;

    fn cert(node: u8) -> CertificateDer<'static> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("certs/node-{node}.pem"));
        let pem = std::fs::read(path).unwrap();
        tls::parse_certs(&pem, "test").unwrap().remove(0)
    }

    fn from(name: &str) -> Vec<u8> {
        proto::Packet {
            version: 1,
            cluster: 1,
            from: Some(proto::NodeId {
                name: name.to_owned(),
                generation: 1,
                ip: vec![127, 0, 0, 1].into(),
                port: 1,
            }),
            from_key: 0,
            messages: Vec::new(),
        }
        .encode_to_vec()
    }

    #[test]
    fn only_names_on_the_certificate_pass() {
        let mut binding = NameBinding::new(Some(cert(3)));
        assert_eq!(binding.check(&from("node-3")), Ok(()));
        assert_eq!(binding.check(&from("node-3")), Ok(()), "remembered");
        assert_eq!(binding.check(&from("node-1")), Err("node-1".to_owned()));
        // Every subject alternative name counts, not only the first.
        assert_eq!(binding.check(&from("localhost")), Ok(()));
        assert_eq!(binding.check(&from("127.0.0.1")), Ok(()));
        // Not a DNS name or an address: on no certificate.
        assert_eq!(binding.check(&from("a b")), Err("a b".to_owned()));
        assert_eq!(binding.check(&from("node-3")), Ok(()));
    }

    #[test]
    fn datagrams_that_name_no_sender_are_left_to_the_engine() {
        let mut binding = NameBinding::new(Some(cert(3)));
        assert_eq!(binding.check(b"not a packet \xff\xff"), Ok(()));
        assert_eq!(binding.check(&from("")), Ok(()));
        let compact = proto::Packet {
            from_key: 42,
            ..proto::Packet::default()
        };
        assert_eq!(binding.check(&compact.encode_to_vec()), Ok(()));
    }

    #[test]
    fn without_a_certificate_every_claimed_name_is_refused() {
        let mut binding = NameBinding::new(None);
        assert_eq!(binding.check(&from("node-3")), Err("node-3".to_owned()));
    }
}
