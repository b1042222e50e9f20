//! What the engine tells the application.

use bytes::Bytes;

use super::membership::MemberStatus;
use super::node_id::NodeId;

/// Something the application may want to react to. Events describe other
/// nodes; the local node's own `set`/`delete` produce none.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A node was heard of for the first time.
    MemberJoined(NodeId),
    /// A node restarted: `new` supersedes `old`, whose state is dropped.
    MemberRestarted {
        /// The superseded incarnation.
        old: NodeId,
        /// The incarnation now in the cluster.
        new: NodeId,
    },
    /// A member's liveness status changed (suspect, alive again, dead, left).
    MemberStatus {
        /// The member.
        node: NodeId,
        /// Its new status.
        status: MemberStatus,
    },
    /// A member was removed from the table and its state collected.
    MemberRemoved(NodeId),
    /// A key of `node` got a new value.
    KeySet {
        /// Owner of the key.
        node: NodeId,
        /// The key.
        key: String,
        /// The new value.
        value: Bytes,
        /// Version of this write in the owner's state.
        version: u64,
    },
    /// A key of `node` was deleted.
    KeyDeleted {
        /// Owner of the key.
        node: NodeId,
        /// The key.
        key: String,
        /// Version of the deletion in the owner's state.
        version: u64,
    },
    /// A broadcast arrived from `origin`.
    Broadcast {
        /// Name of the node that broadcast it.
        origin: String,
        /// The payload.
        payload: Bytes,
    },
}
