//! [`NodeMetrics`] as a flat list of named counters, for the `metrics`
//! control command: `engine.packets_sent`, `engine.drops.malformed`,
//! `members.alive`, `seal.dropped_auth`, ...
//!
//! Names are the library's field names joined by dots, so a counter is
//! found in the rustdoc by its name; they are part of the control
//! protocol's contract (`docs/OPERATIONS.md`). The `seal.*` counters exist
//! only on an agent with `--key-file`.

use scuttlewire::engine::Metrics;
use scuttlewire::node::NodeMetrics;

/// Every counter of `metrics` as `(name, value)`, grouped as the library
/// groups them.
pub fn flatten(metrics: &NodeMetrics) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    engine(&metrics.engine, &mut out);
    let m = &metrics.members;
    for (name, value) in [
        ("alive", m.alive),
        ("suspect", m.suspect),
        ("dead", m.dead),
        ("left", m.left),
    ] {
        out.push((format!("members.{name}"), value as u64));
    }
    out.push(("send_errors".into(), metrics.send_errors));
    out.push(("recv_errors".into(), metrics.recv_errors));
    if let Some(n) = metrics.os_receive_drops {
        out.push(("os_receive_drops".into(), n));
    }
    if let Some(s) = &metrics.seal {
        for (name, value) in [
            ("sealed", s.sealed),
            ("sent_plaintext", s.sent_plaintext),
            ("opened", s.opened),
            ("accepted_plaintext", s.accepted_plaintext),
            ("dropped", s.dropped()),
            ("dropped_malformed", s.dropped_malformed),
            ("dropped_unknown_key", s.dropped_unknown_key),
            ("dropped_auth", s.dropped_auth),
            ("dropped_replay", s.dropped_replay),
            ("dropped_plaintext", s.dropped_plaintext),
        ] {
            out.push((format!("seal.{name}"), value));
        }
    }
    out
}

fn engine(e: &Metrics, out: &mut Vec<(String, u64)>) {
    let mut put = |name: &str, value: u64| out.push((format!("engine.{name}"), value));
    for (name, value) in [
        ("packets_received", e.packets_received),
        ("bytes_received", e.bytes_received),
        ("packets_sent", e.packets_sent),
        ("bytes_sent", e.bytes_sent),
        ("largest_packet_sent", e.largest_packet_sent as u64),
        ("gossip_rounds", e.gossip_rounds),
        ("in_sync", e.in_sync),
        ("delta_gaps", e.delta_gaps),
        ("stale_generation", e.stale_generation),
        ("deltas_about_self", e.deltas_about_self),
        ("signatures_invalid", e.signatures_invalid),
        ("unsigned_refused", e.unsigned_refused),
        ("identities_refused", e.identities_refused),
        ("deltas_unverifiable", e.deltas_unverifiable),
        ("refutations", e.refutations),
        ("suspicions_started", e.suspicions_started),
        ("deaths_declared", e.deaths_declared),
        ("members_removed", e.members_removed),
        ("dead_told", e.dead_told),
        ("unroutable_ids", e.unroutable_ids),
        ("reconnects", e.reconnects),
        ("liveness_merged", e.liveness_merged),
        ("pushes_sent", e.pushes_sent),
        ("pushes_retried", e.pushes_retried),
        ("pushes_resent_spuriously", e.pushes_resent_spuriously),
        ("shed_rounds", e.shed_rounds),
        ("pushes_capped", e.pushes_capped),
        ("push_copies", e.push_copies),
        ("push_acks_merged", e.push_acks_merged),
        ("announcements_sent", e.announcements_sent),
        ("pulls", e.pulls),
        ("pushes_unacked", e.pushes_unacked),
        ("member_rumors_queued", e.member_rumors_queued as u64),
        ("broadcasts_queued", e.broadcasts_queued as u64),
    ] {
        put(name, value);
    }
    let d = &e.drops;
    for (name, value) in [
        ("total", d.total()),
        ("empty", d.empty),
        ("oversize", d.oversize),
        ("malformed", d.malformed),
        ("version", d.version),
        ("cluster", d.cluster),
        ("invalid", d.invalid),
        ("from_self", d.from_self),
    ] {
        put(&format!("drops.{name}"), value);
    }
    let r = &e.refused;
    for (name, value) in [
        ("total", r.total()),
        ("network", r.network),
        ("capacity", r.capacity),
        ("check", r.check),
    ] {
        put(&format!("refused.{name}"), value);
    }
    for (direction, kinds) in [("received", &e.received), ("sent", &e.sent)] {
        for (name, value) in kinds.by_kind() {
            put(&format!("{direction}.{name}"), value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scuttlewire::engine::MemberCounts;
    use scuttlewire::transport::EncryptedStats;

    fn value(counters: &[(String, u64)], name: &str) -> Option<u64> {
        counters.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
    }

    #[test]
    fn counters_are_named_by_their_field_paths() {
        let mut metrics = NodeMetrics {
            members: MemberCounts {
                alive: 3,
                ..MemberCounts::default()
            },
            ..NodeMetrics::default()
        };
        metrics.engine.packets_sent = 12;
        metrics.engine.drops.malformed = 2;
        metrics.engine.received.ping_ack = 5;
        metrics.engine.refused.network = 7;
        let c = flatten(&metrics);
        assert_eq!(value(&c, "engine.packets_sent"), Some(12));
        assert_eq!(value(&c, "engine.drops.malformed"), Some(2));
        assert_eq!(value(&c, "engine.drops.total"), Some(2));
        assert_eq!(value(&c, "engine.received.ping_ack"), Some(5));
        assert_eq!(value(&c, "engine.refused.network"), Some(7));
        assert_eq!(value(&c, "engine.refused.total"), Some(7));
        assert_eq!(value(&c, "members.alive"), Some(3));
        assert_eq!(
            value(&c, "seal.sealed"),
            None,
            "no seal counters without encryption"
        );
        let mut names: Vec<&str> = c.iter().map(|(n, _)| n.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), c.len(), "every name once");

        metrics.seal = Some(EncryptedStats {
            dropped_auth: 4,
            ..EncryptedStats::default()
        });
        let c = flatten(&metrics);
        assert_eq!(value(&c, "seal.dropped_auth"), Some(4));
        assert_eq!(value(&c, "seal.dropped"), Some(4));
    }
}
