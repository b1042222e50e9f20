//! Node identity: a name, a generation and a gossip address.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::wire::{self, proto};

/// Identity of one incarnation of a node.
///
/// `name` is unique in the cluster. A restarted process gets a larger
/// `generation` (by default its start time in Unix milliseconds), which
/// supersedes every older generation of the same name: peers drop the old
/// incarnation's state and take the new one's.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    /// Unique name within the cluster.
    pub name: String,
    /// Incarnation of the process; larger supersedes smaller.
    pub generation: u64,
    /// Address peers gossip with this node at.
    pub addr: SocketAddr,
}

impl NodeId {
    /// Creates an id.
    pub fn new(name: impl Into<String>, generation: u64, addr: SocketAddr) -> NodeId {
        NodeId {
            name: name.into(),
            generation,
            addr,
        }
    }

    /// The 64-bit key naming this incarnation in digests.
    pub fn key(&self) -> u64 {
        wire::node_key(&self.name, self.generation)
    }

    pub(crate) fn to_proto(&self) -> proto::NodeId {
        let ip = match self.addr.ip() {
            IpAddr::V4(v4) => v4.octets().to_vec(),
            IpAddr::V6(v6) => v6.octets().to_vec(),
        };
        proto::NodeId {
            name: self.name.clone(),
            generation: self.generation,
            ip: ip.into(),
            port: u32::from(self.addr.port()),
        }
    }

    /// Converts a decoded wire id; `None` if the address is malformed
    /// (the decoder already refuses those, so this is belt and braces).
    pub(crate) fn from_proto(p: &proto::NodeId) -> Option<NodeId> {
        let ip = match p.ip.len() {
            4 => {
                let o: [u8; 4] = p.ip[..].try_into().ok()?;
                IpAddr::V4(Ipv4Addr::from(o))
            }
            16 => {
                let o: [u8; 16] = p.ip[..].try_into().ok()?;
                IpAddr::V6(Ipv6Addr::from(o))
            }
            _ => return None,
        };
        let port = u16::try_from(p.port).ok()?;
        Some(NodeId {
            name: p.name.clone(),
            generation: p.generation,
            addr: SocketAddr::new(ip, port),
        })
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}@{}", self.name, self.generation, self.addr)
    }
}

/// Whether peers can send to `addr`: a node advertising `0.0.0.0`, `::`
/// or port 0 would have every peer send to itself.
pub(super) fn routable(addr: &SocketAddr) -> bool {
    !addr.ip().is_unspecified() && addr.port() != 0
}

#[cfg(test)]
mod tests;
