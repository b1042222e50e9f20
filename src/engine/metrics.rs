//! Counters the engine keeps about what it sent, received and dropped.

use crate::wire::DecodeError;
use crate::wire::proto::message::Kind;

/// Packets dropped, by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Drops {
    /// Zero-length datagrams.
    pub empty: u64,
    /// Datagrams over the decoder's size cap.
    pub oversize: u64,
    /// Bytes that are not a valid packet.
    pub malformed: u64,
    /// Another protocol version.
    pub version: u64,
    /// Another cluster.
    pub cluster: u64,
    /// Valid protobuf breaking a limit or invariant (absurd lengths,
    /// reversed ranges, missing sender).
    pub invalid: u64,
    /// Packets claiming to come from this node's own name.
    pub from_self: u64,
}

impl Drops {
    pub(crate) fn count(&mut self, e: &DecodeError) {
        let c = match e {
            DecodeError::Empty => &mut self.empty,
            DecodeError::Oversize(_) => &mut self.oversize,
            DecodeError::Malformed(_) => &mut self.malformed,
            DecodeError::Version(_) => &mut self.version,
            DecodeError::Cluster { .. } => &mut self.cluster,
            DecodeError::Invalid(_) => &mut self.invalid,
        };
        *c += 1;
    }

    /// All drops added up.
    pub fn total(&self) -> u64 {
        self.empty
            + self.oversize
            + self.malformed
            + self.version
            + self.cluster
            + self.invalid
            + self.from_self
    }
}

/// Refusals to admit a node as a member, by reason (see
/// `Config::allowed_networks`, `Config::max_members` and
/// `NodeBuilder::admit`). Each time a refused node is met counts: a
/// packet from it, a rumor or a delta about it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Refusals {
    /// Its gossip address is in none of `Config::allowed_networks`.
    pub network: u64,
    /// `Config::max_members` members were held already.
    pub capacity: u64,
    /// The application's admission check refused it.
    pub check: u64,
}

impl Refusals {
    /// All refusals added up.
    pub fn total(&self) -> u64 {
        self.network + self.capacity + self.check
    }
}

/// Messages by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KindCounts {
    /// Scuttlebutt digests opening an exchange.
    pub syn: u64,
    /// Digest + deltas answers.
    pub syn_ack: u64,
    /// Delta answers closing an exchange.
    pub ack: u64,
    /// Direct probes.
    pub ping: u64,
    /// Indirect probe requests.
    pub ping_req: u64,
    /// Probe acknowledgements.
    pub ping_ack: u64,
    /// Negative acknowledgements of indirect probes.
    pub ping_nack: u64,
    /// Membership rumors.
    pub member: u64,
    /// User broadcasts.
    pub broadcast: u64,
    /// Acknowledgements of pushes along the broadcast tree.
    pub push_ack: u64,
}

impl KindCounts {
    pub(crate) fn count(&mut self, k: &Kind) {
        let c = match k {
            Kind::Syn(_) => &mut self.syn,
            Kind::SynAck(_) => &mut self.syn_ack,
            Kind::Ack(_) => &mut self.ack,
            Kind::Ping(_) => &mut self.ping,
            Kind::PingReq(_) => &mut self.ping_req,
            Kind::PingAck(_) => &mut self.ping_ack,
            Kind::PingNack(_) => &mut self.ping_nack,
            Kind::Member(_) => &mut self.member,
            Kind::Broadcast(_) => &mut self.broadcast,
            Kind::PushAck(_) => &mut self.push_ack,
        };
        *c += 1;
    }

    /// Every kind's name (snake_case, as metrics and reports spell it)
    /// with its count, always in this order.
    pub fn by_kind(&self) -> [(&'static str, u64); 10] {
        [
            ("syn", self.syn),
            ("syn_ack", self.syn_ack),
            ("ack", self.ack),
            ("ping", self.ping),
            ("ping_req", self.ping_req),
            ("ping_ack", self.ping_ack),
            ("ping_nack", self.ping_nack),
            ("member", self.member),
            ("broadcast", self.broadcast),
            ("push_ack", self.push_ack),
        ]
    }
}

/// A snapshot of the engine's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metrics {
    /// Datagrams handed to the engine.
    pub packets_received: u64,
    /// Their bytes.
    pub bytes_received: u64,
    /// Datagrams the engine queued for sending.
    pub packets_sent: u64,
    /// Their bytes.
    pub bytes_sent: u64,
    /// The largest datagram queued, in bytes (never above the budget).
    pub largest_packet_sent: usize,
    /// Datagrams dropped before reaching the protocol, by reason.
    pub drops: Drops,
    /// Messages received, by kind.
    pub received: KindCounts,
    /// Messages sent, by kind.
    pub sent: KindCounts,
    /// Gossip rounds started.
    pub gossip_rounds: u64,
    /// Syns answered with nothing because the fingerprints matched.
    pub in_sync: u64,
    /// Deltas refused because they would leave a version gap, or because
    /// they predate tombstone collections this node already knows of.
    pub delta_gaps: u64,
    /// Deltas or packets about an older generation of a node.
    pub stale_generation: u64,
    /// Deltas about this node's own state sent by someone else (ignored).
    pub deltas_about_self: u64,
    /// Signed state (see `docs/SECURITY.md`): entries or heads whose
    /// signature does not verify under the owner's identity (forged,
    /// altered, or replayed at another version). Each is dropped, with
    /// the rest of its delta from it on.
    pub signatures_invalid: u64,
    /// Signed state: unsigned entries or deltas refused, because this node
    /// requires signatures or holds the owner's identity.
    pub unsigned_refused: u64,
    /// Signed state: published identities refused by the trust (a
    /// certificate not from the cluster CA, for another name, expired, or
    /// a key other than the one pinned on first use).
    pub identities_refused: u64,
    /// Signed state: signed deltas dropped because the owner's identity is
    /// not known here yet (anti-entropy sends it with the state later).
    pub deltas_unverifiable: u64,
    /// Times this node raised its incarnation to refute a suspicion or
    /// death rumor about itself.
    pub refutations: u64,
    /// Members suspected here (by a failed probe or a rumor).
    pub suspicions_started: u64,
    /// Members declared dead here (a suspicion timed out, or a rumor).
    pub deaths_declared: u64,
    /// Dead or departed members forgotten after their retention.
    pub members_removed: u64,
    /// Nodes told that they are held dead, here or by a peer (so they
    /// can refute).
    pub dead_told: u64,
    /// Nodes refused membership by admission control, by reason.
    pub refused: Refusals,
    /// Member records refused because their address is unspecified
    /// (`0.0.0.0`, `::`) or has port 0, which no peer could send to: a
    /// packet's sender (the packet is dropped), a delta, a rumor or a
    /// probe target. A node misconfigured to advertise such an address
    /// shows up here on its peers.
    pub unroutable_ids: u64,
    /// Attempts to reach a member held dead or removed, or a seed that is
    /// not an alive member, made every `reconnect_interval`.
    pub reconnects: u64,
    /// Differences in membership found in digests (a newer incarnation or
    /// status than ours, or a member a peer holds down that we hold up),
    /// i.e. what rumors alone failed to settle.
    pub liveness_merged: u64,
    /// Pushes along the broadcast tree sent (first sends; resends are
    /// [`pushes_retried`](Self::pushes_retried)).
    pub pushes_sent: u64,
    /// Pushes along the broadcast tree sent again for want of a PushAck.
    pub pushes_retried: u64,
    /// Tree pushes sent once, untracked, because the peer or this node had
    /// too many unacknowledged: a sign of overload.
    pub pushes_capped: u64,
    /// Extra copies of pushes sent once along extra broadcast trees, beyond the
    /// tree, because this node measures datagram loss (none without loss).
    pub push_copies: u64,
    /// Push acknowledgements that did not take a datagram of their own:
    /// sent in one packet with others owed the same peer, or carried by a
    /// packet sent to that peer anyway (`sent.push_ack` counts every
    /// `PushAck`).
    pub push_acks_merged: u64,
    /// Lazy announcements (fresh versions' digest lines) piggybacked.
    pub announcements_sent: u64,
    /// Announced versions pulled because the tree did not bring them in
    /// time.
    pub pulls: u64,
    /// Resent tree pushes whose acknowledgement came sooner after the
    /// resend than any measured round trip: the peer was only slow, and
    /// answered the earlier send (the wait then learns that delay).
    pub pushes_resent_spuriously: u64,
    /// Gossip rounds that shed their anti-entropy packets (and lazy
    /// announcements) because the node was overloaded (see
    /// [`Engine::note_overload`](super::Engine::note_overload)).
    pub shed_rounds: u64,
    /// Pushes along the broadcast tree given up after every retry went
    /// unanswered (the child is down, or the link is very lossy);
    /// anti-entropy repairs what they carried.
    pub pushes_unacked: u64,
    /// Membership rumors waiting to be piggybacked (a gauge, read when
    /// the snapshot is taken).
    pub member_rumors_queued: usize,
    /// User broadcasts waiting to be piggybacked (a gauge).
    pub broadcasts_queued: usize,
}

/// How many members are in each status (this node included).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemberCounts {
    /// Alive members.
    pub alive: usize,
    /// Suspected members.
    pub suspect: usize,
    /// Members declared dead and not yet removed.
    pub dead: usize,
    /// Members that left and are not yet removed.
    pub left: usize,
}
