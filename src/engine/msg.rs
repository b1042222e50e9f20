//! Message builders and the conversions between the member table's
//! statuses and their wire form. A leaf: every room that says something
//! builds it here, so no room imports another for a constructor.

use super::membership::MemberStatus;
use super::node_id::NodeId;
use crate::wire::proto::{self, MemberState, message::Kind};

/// A membership rumor: `from` says `id` is in `state` at `incarnation`.
pub(super) fn member_update(
    id: &NodeId,
    incarnation: u64,
    state: MemberState,
    from: &str,
) -> proto::MemberUpdate {
    proto::MemberUpdate {
        node: Some(id.to_proto()),
        incarnation,
        state: state as i32,
        from: from.to_owned(),
        signature: bytes::Bytes::new(),
    }
}

/// [`member_update`] as a message.
pub(super) fn update(
    id: &NodeId,
    incarnation: u64,
    state: MemberState,
    from: &str,
) -> proto::Message {
    message(Kind::Member(member_update(id, incarnation, state, from)))
}

/// A ping of sequence number `seq` for the member called `target`
/// (empty: whoever listens at the address), carrying our fingerprint.
pub(super) fn ping(seq: u64, target: &str, fingerprint: u64) -> proto::Message {
    message(Kind::Ping(proto::Ping {
        seq,
        target: target.to_owned(),
        fingerprint,
    }))
}

/// Wraps a message body.
pub(super) fn message(kind: Kind) -> proto::Message {
    proto::Message { kind: Some(kind) }
}

/// The table's status of a wire state.
pub(super) fn status_of(state: MemberState) -> MemberStatus {
    match state {
        MemberState::Alive => MemberStatus::Alive,
        MemberState::Suspect => MemberStatus::Suspect,
        MemberState::Dead => MemberStatus::Dead,
        MemberState::Left => MemberStatus::Left,
    }
}

/// The wire state of a table status.
pub(super) fn state_of(status: MemberStatus) -> MemberState {
    match status {
        MemberStatus::Alive => MemberState::Alive,
        MemberStatus::Suspect => MemberState::Suspect,
        MemberStatus::Dead => MemberState::Dead,
        MemberStatus::Left => MemberState::Left,
    }
}

/// FNV-1a-64 of a member name: how rumors and suspicions name a member
/// in eight bytes.
pub(super) fn name_hash(name: &str) -> u64 {
    crate::wire::fnv1a64(&[name.as_bytes()])
}
