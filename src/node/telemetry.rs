//! The node's metrics through the [`metrics`] facade: whatever recorder
//! the application installs (a Prometheus exporter, statsd, ...) sees
//! every node's counters, gauges and histograms, labelled `node` = the
//! node's name. With no recorder installed they cost next to nothing.
//!
//! The engine is sans-IO and keeps its own counters ([`Metrics`]); the
//! facade is global state, so only the driver calls it. Once a second
//! ([`REPORT_INTERVAL`]), and once more when the node stops, the driver
//! hands [`Telemetry::report`] the engine's snapshot: counters grow by
//! what the engine counted since the previous report, gauges are set.
//! Histograms come from the engine's [`Observation`]s, drained after
//! every input. `docs/METRICS.md` lists every metric.
//!
//! Install the recorder before starting nodes: what a node reports while
//! no recorder is installed is lost, and the descriptions (HELP lines)
//! are given to the recorder in place when the node starts.

use std::sync::Arc;
use std::time::Duration;

use metrics::{Label, SharedString, Unit};
use tokio::time::{Interval, MissedTickBehavior};

use super::driver::IoCounts;
use super::encrypted::SealStats;
use crate::engine::{Engine, Metrics, Observation, SuspicionOutcome};
use crate::transport::EncryptedStats;

/// How often counters and gauges are reported.
pub(crate) const REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// Counter names, by family.
const PACKETS: &str = "scuttlewire_packets_total";
const BYTES: &str = "scuttlewire_bytes_total";
const MESSAGES: &str = "scuttlewire_messages_total";
const DROPPED: &str = "scuttlewire_dropped_packets_total";
const TRANSPORT_ERRORS: &str = "scuttlewire_transport_errors_total";
const SEALED: &str = "scuttlewire_sealed_packets_total";
const PLAINTEXT: &str = "scuttlewire_plaintext_packets_total";
const GOSSIP_ROUNDS: &str = "scuttlewire_gossip_rounds_total";
const IN_SYNC: &str = "scuttlewire_gossip_in_sync_total";
const DELTA_GAPS: &str = "scuttlewire_delta_gaps_total";
const STALE_GENERATION: &str = "scuttlewire_stale_generation_total";
const SUSPICIONS: &str = "scuttlewire_suspicions_total";
const REFUTATIONS: &str = "scuttlewire_refutations_total";
const DEATHS: &str = "scuttlewire_deaths_total";
const REMOVALS: &str = "scuttlewire_removals_total";
const DEAD_TOLD: &str = "scuttlewire_dead_told_total";
const UNROUTABLE: &str = "scuttlewire_unroutable_ids_total";
const RECONNECTS: &str = "scuttlewire_reconnects_total";
const LIVENESS_MERGED: &str = "scuttlewire_liveness_merged_total";
const PUSHES: &str = "scuttlewire_pushes_total";
const PUSH_RETRIES: &str = "scuttlewire_push_retries_total";
const PUSH_CAPPED: &str = "scuttlewire_push_capped_total";
const PUSH_COPIES: &str = "scuttlewire_push_copies_total";
const PUSH_ACKS_MERGED: &str = "scuttlewire_push_acks_merged_total";
const ANNOUNCEMENTS: &str = "scuttlewire_announcements_total";
const PULLS: &str = "scuttlewire_pulls_total";
const OS_DROPS: &str = "scuttlewire_os_receive_drops_total";
const PUSH_SPURIOUS: &str = "scuttlewire_push_spurious_resends_total";
const SHED_ROUNDS: &str = "scuttlewire_shed_rounds_total";
const SIGNED_REFUSED: &str = "scuttlewire_signed_state_refused_total";
const PUSH_UNACKED: &str = "scuttlewire_push_unacked_total";
const ADMISSION_REFUSED: &str = "scuttlewire_admission_refused_total";

/// Gauge names.
const MEMBERS: &str = "scuttlewire_members";
const QUEUED_RUMORS: &str = "scuttlewire_queued_rumors";
const LARGEST_PACKET: &str = "scuttlewire_largest_packet_bytes";

/// Histogram names.
const PROBE_RTT: &str = "scuttlewire_probe_rtt_seconds";
const SUSPICION: &str = "scuttlewire_suspicion_seconds";
const PUSH_ACK: &str = "scuttlewire_push_ack_seconds";

/// Everything the counters are read from, at one report.
struct Totals {
    engine: Metrics,
    io: IoCounts,
    seal: Option<EncryptedStats>,
}

/// One counter series: its name, labels beyond `node`, and how to read
/// it (`None`: the node has no such series, e.g. seal counters on a plain
/// transport).
struct Series {
    name: &'static str,
    labels: &'static [(&'static str, &'static str)],
    read: fn(&Totals) -> Option<u64>,
}

const fn series(
    name: &'static str,
    labels: &'static [(&'static str, &'static str)],
    read: fn(&Totals) -> Option<u64>,
) -> Series {
    Series { name, labels, read }
}

/// The seal counter `field` of an encrypted transport.
macro_rules! seal {
    ($field:ident) => {
        |t: &Totals| t.seal.as_ref().map(|s| s.$field)
    };
}

/// Every counter series, in report order.
const COUNTERS: &[Series] = &[
    series(PACKETS, &[("direction", "sent")], |t| {
        Some(t.engine.packets_sent)
    }),
    series(PACKETS, &[("direction", "received")], |t| {
        Some(t.engine.packets_received)
    }),
    series(BYTES, &[("direction", "sent")], |t| {
        Some(t.engine.bytes_sent)
    }),
    series(BYTES, &[("direction", "received")], |t| {
        Some(t.engine.bytes_received)
    }),
    series(MESSAGES, &[("direction", "sent"), ("kind", "syn")], |t| {
        Some(t.engine.sent.syn)
    }),
    series(
        MESSAGES,
        &[("direction", "sent"), ("kind", "syn_ack")],
        |t| Some(t.engine.sent.syn_ack),
    ),
    series(MESSAGES, &[("direction", "sent"), ("kind", "ack")], |t| {
        Some(t.engine.sent.ack)
    }),
    series(MESSAGES, &[("direction", "sent"), ("kind", "ping")], |t| {
        Some(t.engine.sent.ping)
    }),
    series(
        MESSAGES,
        &[("direction", "sent"), ("kind", "ping_req")],
        |t| Some(t.engine.sent.ping_req),
    ),
    series(
        MESSAGES,
        &[("direction", "sent"), ("kind", "ping_ack")],
        |t| Some(t.engine.sent.ping_ack),
    ),
    series(
        MESSAGES,
        &[("direction", "sent"), ("kind", "ping_nack")],
        |t| Some(t.engine.sent.ping_nack),
    ),
    series(
        MESSAGES,
        &[("direction", "sent"), ("kind", "member")],
        |t| Some(t.engine.sent.member),
    ),
    series(
        MESSAGES,
        &[("direction", "sent"), ("kind", "broadcast")],
        |t| Some(t.engine.sent.broadcast),
    ),
    series(
        MESSAGES,
        &[("direction", "sent"), ("kind", "push_ack")],
        |t| Some(t.engine.sent.push_ack),
    ),
    series(
        MESSAGES,
        &[("direction", "received"), ("kind", "syn")],
        |t| Some(t.engine.received.syn),
    ),
    series(
        MESSAGES,
        &[("direction", "received"), ("kind", "syn_ack")],
        |t| Some(t.engine.received.syn_ack),
    ),
    series(
        MESSAGES,
        &[("direction", "received"), ("kind", "ack")],
        |t| Some(t.engine.received.ack),
    ),
    series(
        MESSAGES,
        &[("direction", "received"), ("kind", "ping")],
        |t| Some(t.engine.received.ping),
    ),
    series(
        MESSAGES,
        &[("direction", "received"), ("kind", "ping_req")],
        |t| Some(t.engine.received.ping_req),
    ),
    series(
        MESSAGES,
        &[("direction", "received"), ("kind", "ping_ack")],
        |t| Some(t.engine.received.ping_ack),
    ),
    series(
        MESSAGES,
        &[("direction", "received"), ("kind", "ping_nack")],
        |t| Some(t.engine.received.ping_nack),
    ),
    series(
        MESSAGES,
        &[("direction", "received"), ("kind", "member")],
        |t| Some(t.engine.received.member),
    ),
    series(
        MESSAGES,
        &[("direction", "received"), ("kind", "broadcast")],
        |t| Some(t.engine.received.broadcast),
    ),
    series(
        MESSAGES,
        &[("direction", "received"), ("kind", "push_ack")],
        |t| Some(t.engine.received.push_ack),
    ),
    series(DROPPED, &[("layer", "engine"), ("reason", "empty")], |t| {
        Some(t.engine.drops.empty)
    }),
    series(
        DROPPED,
        &[("layer", "engine"), ("reason", "oversize")],
        |t| Some(t.engine.drops.oversize),
    ),
    series(
        DROPPED,
        &[("layer", "engine"), ("reason", "malformed")],
        |t| Some(t.engine.drops.malformed),
    ),
    series(
        DROPPED,
        &[("layer", "engine"), ("reason", "version")],
        |t| Some(t.engine.drops.version),
    ),
    series(
        DROPPED,
        &[("layer", "engine"), ("reason", "cluster")],
        |t| Some(t.engine.drops.cluster),
    ),
    series(
        DROPPED,
        &[("layer", "engine"), ("reason", "invalid")],
        |t| Some(t.engine.drops.invalid),
    ),
    series(
        DROPPED,
        &[("layer", "engine"), ("reason", "from_self")],
        |t| Some(t.engine.drops.from_self),
    ),
    series(
        DROPPED,
        &[("layer", "seal"), ("reason", "malformed")],
        seal!(dropped_malformed),
    ),
    series(
        DROPPED,
        &[("layer", "seal"), ("reason", "unknown_key")],
        seal!(dropped_unknown_key),
    ),
    series(
        DROPPED,
        &[("layer", "seal"), ("reason", "auth")],
        seal!(dropped_auth),
    ),
    series(
        DROPPED,
        &[("layer", "seal"), ("reason", "replay")],
        seal!(dropped_replay),
    ),
    series(
        DROPPED,
        &[("layer", "seal"), ("reason", "plaintext_refused")],
        seal!(dropped_plaintext),
    ),
    series(SEALED, &[("direction", "sent")], seal!(sealed)),
    series(SEALED, &[("direction", "received")], seal!(opened)),
    series(PLAINTEXT, &[("direction", "sent")], seal!(sent_plaintext)),
    series(
        PLAINTEXT,
        &[("direction", "received")],
        seal!(accepted_plaintext),
    ),
    series(TRANSPORT_ERRORS, &[("direction", "send")], |t| {
        Some(t.io.send_errors)
    }),
    series(TRANSPORT_ERRORS, &[("direction", "receive")], |t| {
        Some(t.io.recv_errors)
    }),
    series(OS_DROPS, &[], |t| t.io.os_receive_drops),
    series(PUSH_SPURIOUS, &[], |t| {
        Some(t.engine.pushes_resent_spuriously)
    }),
    series(SHED_ROUNDS, &[], |t| Some(t.engine.shed_rounds)),
    series(SIGNED_REFUSED, &[("reason", "invalid_signature")], |t| {
        Some(t.engine.signatures_invalid)
    }),
    series(SIGNED_REFUSED, &[("reason", "unsigned")], |t| {
        Some(t.engine.unsigned_refused)
    }),
    series(SIGNED_REFUSED, &[("reason", "identity")], |t| {
        Some(t.engine.identities_refused)
    }),
    series(SIGNED_REFUSED, &[("reason", "unverifiable")], |t| {
        Some(t.engine.deltas_unverifiable)
    }),
    series(GOSSIP_ROUNDS, &[], |t| Some(t.engine.gossip_rounds)),
    series(IN_SYNC, &[], |t| Some(t.engine.in_sync)),
    series(DELTA_GAPS, &[], |t| Some(t.engine.delta_gaps)),
    series(STALE_GENERATION, &[], |t| Some(t.engine.stale_generation)),
    series(SUSPICIONS, &[], |t| Some(t.engine.suspicions_started)),
    series(REFUTATIONS, &[], |t| Some(t.engine.refutations)),
    series(DEATHS, &[], |t| Some(t.engine.deaths_declared)),
    series(REMOVALS, &[], |t| Some(t.engine.members_removed)),
    series(DEAD_TOLD, &[], |t| Some(t.engine.dead_told)),
    series(UNROUTABLE, &[], |t| Some(t.engine.unroutable_ids)),
    series(ADMISSION_REFUSED, &[("reason", "network")], |t| {
        Some(t.engine.refused.network)
    }),
    series(ADMISSION_REFUSED, &[("reason", "capacity")], |t| {
        Some(t.engine.refused.capacity)
    }),
    series(ADMISSION_REFUSED, &[("reason", "check")], |t| {
        Some(t.engine.refused.check)
    }),
    series(RECONNECTS, &[], |t| Some(t.engine.reconnects)),
    series(LIVENESS_MERGED, &[], |t| Some(t.engine.liveness_merged)),
    series(PUSHES, &[], |t| Some(t.engine.pushes_sent)),
    series(PUSH_RETRIES, &[], |t| Some(t.engine.pushes_retried)),
    series(PUSH_CAPPED, &[], |t| Some(t.engine.pushes_capped)),
    series(PUSH_COPIES, &[], |t| Some(t.engine.push_copies)),
    series(PUSH_ACKS_MERGED, &[], |t| Some(t.engine.push_acks_merged)),
    series(ANNOUNCEMENTS, &[], |t| Some(t.engine.announcements_sent)),
    series(PULLS, &[], |t| Some(t.engine.pulls)),
    series(PUSH_UNACKED, &[], |t| Some(t.engine.pushes_unacked)),
];

/// What a metric is, for its description.
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Name, kind, unit and HELP text of every metric.
const DESCRIPTIONS: &[(&str, Kind, Unit, &str)] = &[
    (
        PACKETS,
        Kind::Counter,
        Unit::Count,
        "Datagrams the engine queued for sending (direction=sent) or was handed (direction=received)",
    ),
    (
        BYTES,
        Kind::Counter,
        Unit::Bytes,
        "Payload bytes of those datagrams, before sealing",
    ),
    (
        MESSAGES,
        Kind::Counter,
        Unit::Count,
        "Protocol messages sent or received, by kind",
    ),
    (
        DROPPED,
        Kind::Counter,
        Unit::Count,
        "Datagrams dropped before reaching the protocol, by layer (engine: decoding; seal: decryption) and reason",
    ),
    (
        TRANSPORT_ERRORS,
        Kind::Counter,
        Unit::Count,
        "Transient transport errors on send or receive (the node carried on)",
    ),
    (
        SEALED,
        Kind::Counter,
        Unit::Count,
        "Encrypted transport: datagrams sealed and sent, or received and opened",
    ),
    (
        PLAINTEXT,
        Kind::Counter,
        Unit::Count,
        "Encrypted transport: datagrams sent or accepted in plaintext (migration stages)",
    ),
    (
        GOSSIP_ROUNDS,
        Kind::Counter,
        Unit::Count,
        "Anti-entropy gossip rounds started",
    ),
    (
        IN_SYNC,
        Kind::Counter,
        Unit::Count,
        "Digests answered with nothing because the state fingerprints matched",
    ),
    (
        DELTA_GAPS,
        Kind::Counter,
        Unit::Count,
        "Deltas refused because they would leave a version gap or predate collected tombstones",
    ),
    (
        STALE_GENERATION,
        Kind::Counter,
        Unit::Count,
        "Deltas or packets about an older generation of a node",
    ),
    (
        SUSPICIONS,
        Kind::Counter,
        Unit::Count,
        "Members suspected here (by a failed probe or a rumor)",
    ),
    (
        REFUTATIONS,
        Kind::Counter,
        Unit::Count,
        "Times this node raised its incarnation to refute a suspicion or death rumor about itself",
    ),
    (
        DEATHS,
        Kind::Counter,
        Unit::Count,
        "Members declared dead here (a suspicion timed out, or a rumor)",
    ),
    (
        REMOVALS,
        Kind::Counter,
        Unit::Count,
        "Dead or departed members forgotten after their retention",
    ),
    (
        DEAD_TOLD,
        Kind::Counter,
        Unit::Count,
        "Nodes told directly that this node holds them dead (so they can refute)",
    ),
    (
        UNROUTABLE,
        Kind::Counter,
        Unit::Count,
        "Member records refused for an address no peer can send to (0.0.0.0, ::, port 0)",
    ),
    (
        ADMISSION_REFUSED,
        Kind::Counter,
        Unit::Count,
        "Nodes refused membership by admission control, by reason (network: not in allowed_networks; capacity: max_members reached; check: the application's check), each time one is met",
    ),
    (
        RECONNECTS,
        Kind::Counter,
        Unit::Count,
        "Attempts to reach a member held dead or removed, or a seed that is not an alive member",
    ),
    (
        LIVENESS_MERGED,
        Kind::Counter,
        Unit::Count,
        "Membership claims taken from digests that rumors had not delivered",
    ),
    (
        PUSHES,
        Kind::Counter,
        Unit::Count,
        "Broadcast-tree pushes sent (first sends)",
    ),
    (
        PUSH_CAPPED,
        Kind::Counter,
        Unit::Count,
        "Broadcast-tree pushes sent once, untracked, because a peer or this node had too many unacknowledged (overload)",
    ),
    (
        PUSH_COPIES,
        Kind::Counter,
        Unit::Count,
        "Extra copies of pushes sent once along extra broadcast trees because this node measures datagram loss (none on a loss-free network)",
    ),
    (
        PUSH_ACKS_MERGED,
        Kind::Counter,
        Unit::Count,
        "Push acknowledgements that took no datagram of their own: merged with others owed the same peer, or carried by a packet sent to it anyway",
    ),
    (
        ANNOUNCEMENTS,
        Kind::Counter,
        Unit::Count,
        "Lazy announcements of fresh versions piggybacked on packets",
    ),
    (
        PULLS,
        Kind::Counter,
        Unit::Count,
        "Announced versions pulled because the broadcast tree did not bring them in time",
    ),
    (
        SIGNED_REFUSED,
        Kind::Counter,
        Unit::Count,
        "Signed state refused before it was applied, by reason: a signature that does not verify, unsigned state, an untrusted identity, or an owner whose identity is not known yet",
    ),
    (
        SHED_ROUNDS,
        Kind::Counter,
        Unit::Count,
        "Gossip rounds that shed anti-entropy and announcements because the node was overloaded",
    ),
    (
        PUSH_SPURIOUS,
        Kind::Counter,
        Unit::Count,
        "Push resends found spurious: the acknowledgement came sooner after the resend than any round trip (the peer was only slow)",
    ),
    (
        OS_DROPS,
        Kind::Counter,
        Unit::Count,
        "Datagrams the OS dropped at this node's full socket receive buffer (Linux UDP; read every 30 s, every 5 s while datagrams pile up): the node cannot keep up",
    ),
    (
        PUSH_RETRIES,
        Kind::Counter,
        Unit::Count,
        "Broadcast-tree pushes sent again for want of an acknowledgement",
    ),
    (
        PUSH_UNACKED,
        Kind::Counter,
        Unit::Count,
        "Broadcast-tree pushes given up unacknowledged (anti-entropy repairs them)",
    ),
    (
        MEMBERS,
        Kind::Gauge,
        Unit::Count,
        "Members by status as this node sees them, itself included",
    ),
    (
        QUEUED_RUMORS,
        Kind::Gauge,
        Unit::Count,
        "Rumors waiting to be piggybacked: membership (kind=member) or user broadcasts (kind=broadcast)",
    ),
    (
        LARGEST_PACKET,
        Kind::Gauge,
        Unit::Bytes,
        "The largest datagram queued since start (never above the transport's budget)",
    ),
    (
        PROBE_RTT,
        Kind::Histogram,
        Unit::Seconds,
        "Round trip of direct probes answered by their target",
    ),
    (
        SUSPICION,
        Kind::Histogram,
        Unit::Seconds,
        "How long suspicions lasted here, by outcome (refuted, dead, left)",
    ),
    (
        PUSH_ACK,
        Kind::Histogram,
        Unit::Seconds,
        "Broadcast-tree push to its acknowledgement, retries included",
    ),
];

/// Reports one node's metrics; owned by its driver.
pub(crate) struct Telemetry {
    /// The `node` label's value.
    node: SharedString,
    seal: Option<SealStats>,
    /// The counters' values at the previous report, in [`COUNTERS`] order.
    last: Vec<u64>,
    ticker: Interval,
}

impl Telemetry {
    /// Telemetry for the node that owns `engine`, whose encrypted
    /// transport's counters `seal` reads (if any). Turns the engine's
    /// observations on and describes every metric to the recorder.
    pub fn new(engine: &mut Engine, seal: Option<SealStats>) -> Telemetry {
        engine.set_observing(true);
        describe();
        let node = SharedString::from_shared(Arc::from(engine.local_id().name.as_str()));
        let mut ticker = tokio::time::interval(REPORT_INTERVAL);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Telemetry {
            node,
            seal,
            last: vec![0; COUNTERS.len()],
            ticker,
        }
    }

    /// Resolves when the next report is due (at once the first time).
    pub async fn due(&mut self) {
        self.ticker.tick().await;
    }

    /// Counters grow by what `engine` (and the transport) counted since
    /// the last report; gauges take their current values.
    pub fn report(&mut self, engine: &Engine, io: IoCounts) {
        let totals = Totals {
            engine: engine.metrics(),
            io,
            seal: self.seal.as_ref().and_then(|read| read()),
        };
        for (series, last) in COUNTERS.iter().zip(self.last.iter_mut()) {
            let Some(value) = (series.read)(&totals) else {
                continue;
            };
            // Increment even by 0, so every series shows from the start.
            metrics::counter!(series.name, labels(&self.node, series.labels))
                .increment(value.saturating_sub(*last));
            *last = value;
        }
        let members = engine.member_counts();
        for (status, n) in [
            ("alive", members.alive),
            ("suspect", members.suspect),
            ("dead", members.dead),
            ("left", members.left),
        ] {
            metrics::gauge!(MEMBERS, labels(&self.node, &[("status", status)])).set(n as f64);
        }
        let m = &totals.engine;
        for (kind, n) in [
            ("member", m.member_rumors_queued),
            ("broadcast", m.broadcasts_queued),
        ] {
            metrics::gauge!(QUEUED_RUMORS, labels(&self.node, &[("kind", kind)])).set(n as f64);
        }
        metrics::gauge!(LARGEST_PACKET, labels(&self.node, &[])).set(m.largest_packet_sent as f64);
    }

    /// Records every observation the engine has queued.
    pub fn drain(&self, engine: &mut Engine) {
        while let Some(o) = engine.poll_observation() {
            self.observe(o);
        }
    }

    fn observe(&self, o: Observation) {
        match o {
            Observation::ProbeRtt(d) => {
                metrics::histogram!(PROBE_RTT, labels(&self.node, &[])).record(d)
            }
            Observation::PushAcked(d) => {
                metrics::histogram!(PUSH_ACK, labels(&self.node, &[])).record(d)
            }
            Observation::SuspicionEnded { after, outcome } => {
                let outcome = match outcome {
                    SuspicionOutcome::Refuted => "refuted",
                    SuspicionOutcome::Dead => "dead",
                    SuspicionOutcome::Left => "left",
                };
                metrics::histogram!(SUSPICION, labels(&self.node, &[("outcome", outcome)]))
                    .record(after);
            }
        }
    }
}

/// `node` and then `extra`.
fn labels(node: &SharedString, extra: &[(&'static str, &'static str)]) -> Vec<Label> {
    let mut labels = Vec::with_capacity(1 + extra.len());
    labels.push(Label::new("node", node.clone()));
    labels.extend(extra.iter().map(|&(k, v)| Label::from_static_parts(k, v)));
    labels
}

/// Gives every metric's unit and HELP text to the installed recorder.
fn describe() {
    for (name, kind, unit, help) in DESCRIPTIONS {
        let (name, unit, help) = (*name, *unit, *help);
        match kind {
            Kind::Counter => metrics::describe_counter!(name, unit, help),
            Kind::Gauge => metrics::describe_gauge!(name, unit, help),
            Kind::Histogram => metrics::describe_histogram!(name, unit, help),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_described_once_and_named_by_convention() {
        let mut names: Vec<&str> = COUNTERS.iter().map(|s| s.name).collect();
        names.extend([MEMBERS, QUEUED_RUMORS, LARGEST_PACKET]);
        names.extend([PROBE_RTT, SUSPICION, PUSH_ACK]);
        names.sort_unstable();
        names.dedup();
        let mut described: Vec<&str> = DESCRIPTIONS.iter().map(|d| d.0).collect();
        described.sort_unstable();
        let before = described.len();
        described.dedup();
        assert_eq!(described.len(), before, "a metric described twice");
        assert_eq!(names, described);
        for (name, kind, unit, _) in DESCRIPTIONS {
            assert!(name.starts_with("scuttlewire_"), "{name}");
            match kind {
                Kind::Counter => assert!(name.ends_with("_total"), "{name}"),
                _ => assert!(!name.ends_with("_total"), "{name}"),
            }
            match unit {
                Unit::Seconds => assert!(name.ends_with("_seconds"), "{name}"),
                Unit::Bytes if !name.ends_with("_total") => {
                    assert!(name.ends_with("_bytes"), "{name}")
                }
                _ => {}
            }
        }
        // Every counter series is distinct.
        let mut series: Vec<(&str, &[(&str, &str)])> =
            COUNTERS.iter().map(|s| (s.name, s.labels)).collect();
        series.sort_unstable();
        let n = series.len();
        series.dedup();
        assert_eq!(series.len(), n, "a counter series listed twice");
    }
}
