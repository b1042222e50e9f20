//! Signed state against a member that holds the cluster key and a valid
//! identity of its own (node 2) and forges the state of another (node 1)
//! towards a victim (node 0); and the same forgeries with signatures off,
//! where they pass (so these tests bite).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use prost::Message as _;

use super::super::harness::{Harness, addr, id};
use super::super::*;
use crate::config::Signatures;
use crate::identity::{IDENTITY_KEY, Identity, TrustOnFirstUse, entry_message, head_message};
use crate::wire::proto::message::Kind;

const VICTIM: usize = 0;
const OWNER: usize = 1;
const FORGER: usize = 2;

fn config(signatures: Signatures) -> Config {
    Config {
        probe_interval: Duration::from_secs(60),
        probe_timeout: Duration::from_secs(30),
        signatures,
        ..Config::local()
    }
}

/// Three engines that met and converged, each with its own identity when
/// `signatures` signs (`identities[i]` for node `i`), trusting on first use.
fn cluster(signatures: Signatures) -> (Harness, Vec<Arc<Identity>>) {
    cluster_with(config(signatures))
}

/// [`cluster`] with `config`.
fn cluster_with(config: Config) -> (Harness, Vec<Arc<Identity>>) {
    let signatures = config.signatures;
    let mut h = Harness::new(0, config, 1400);
    let mut identities = Vec::new();
    for i in 0..3 {
        let mut e = Engine::new(h.config.clone(), id(i, 1), 1400, i as u64, h.now).unwrap();
        let identity = Arc::new(Identity::generate().unwrap());
        if signatures.signs() {
            e.set_identity(h.now, identity.clone(), Arc::new(TrustOnFirstUse::new()))
                .unwrap();
        }
        identities.push(identity);
        if i > 0 {
            e.add_seeds([addr(0)]);
        }
        h.push(e);
    }
    let now = h.now;
    h.nodes[OWNER].set(now, "role", "db").unwrap();
    let met = h.run_until(Duration::from_secs(10), |h| {
        h.nodes.iter().all(|e| e.member_count() == 3) && h.converged()
    });
    assert!(met, "the cluster never converged");
    (h, identities)
}

/// A packet from the forger carrying `deltas` (as an exchange's `Ack`).
fn from_forger(h: &Harness, deltas: Vec<proto::NodeDelta>) -> Vec<u8> {
    proto::Packet {
        version: wire::PROTOCOL_VERSION,
        cluster: wire::cluster_id(&h.config.cluster),
        from: Some(h.nodes[FORGER].local_id().to_proto()),
        from_key: 0,
        messages: vec![proto::Message {
            kind: Some(Kind::Ack(proto::Ack { deltas, push_id: 0 })),
        }],
    }
    .encode_to_vec()
}

/// The owner's genuine delta from version `from`, as it would send it.
fn genuine(h: &Harness, from: u64) -> proto::NodeDelta {
    let owner = &h.nodes[OWNER];
    let me = owner.members.me();
    owner
        .members
        .get(me)
        .unwrap()
        .state
        .delta(owner.local_id().to_proto(), from, 0, 10_000)
        .unwrap()
}

fn kv(key: &str, value: &str, version: u64) -> proto::KeyValue {
    proto::KeyValue {
        key: key.into(),
        value: Bytes::copy_from_slice(value.as_bytes()),
        version,
        tombstone: false,
        signature: Bytes::new(),
    }
}

/// Every forgery the victim should refuse, each a delta about the owner
/// claiming the owner's next version `next`:
fn forgeries(
    h: &Harness,
    identities: &[Arc<Identity>],
    next: u64,
) -> Vec<(&'static str, proto::NodeDelta)> {
    let cluster = wire::cluster_id(&h.config.cluster);
    let owner = h.nodes[OWNER].local_id().clone();
    let real = genuine(h, 0);
    let (head_version, head_signature) = (real.head_version, real.head_signature.clone());
    let base = proto::NodeDelta {
        node: Some(owner.to_proto()),
        from_version: next - 1,
        to_version: next,
        last_gc_version: 0,
        entries: vec![],
        head_version,
        head_signature: head_signature.clone(),
    };
    let forger = &identities[FORGER];
    let signed_by_forger = |mut e: proto::KeyValue| {
        let m = entry_message(
            cluster,
            &owner.name,
            owner.generation,
            &e.key,
            &e.value,
            e.version,
            e.tombstone,
        );
        e.signature = Bytes::copy_from_slice(&forger.sign(&m));
        e
    };
    let forger_head = Bytes::copy_from_slice(&forger.sign(&head_message(
        cluster,
        &owner.name,
        owner.generation,
        next,
    )));
    let role = real
        .entries
        .iter()
        .find(|e| e.key == "role")
        .unwrap()
        .clone();
    vec![
        // A key set in the owner's name, unsigned.
        (
            "unsigned key",
            proto::NodeDelta {
                entries: vec![kv("forged", "x", next)],
                head_version: 0,
                head_signature: Bytes::new(),
                ..base.clone()
            },
        ),
        // The same, signed by the forger's own (valid) key.
        (
            "key signed by another member",
            proto::NodeDelta {
                entries: vec![signed_by_forger(kv("forged", "x", next))],
                head_version: next,
                head_signature: forger_head.clone(),
                ..base.clone()
            },
        ),
        // The owner's genuine signed entry replayed at a new version.
        (
            "genuine entry at a new version",
            proto::NodeDelta {
                entries: vec![proto::KeyValue {
                    version: next,
                    ..role.clone()
                }],
                ..base.clone()
            },
        ),
        // The attack: only the version moves on (no entry), under
        // the owner's genuine head...
        ("version moved past the head", base.clone()),
        // ...or under that head re-labelled with the next version.
        (
            "head re-labelled",
            proto::NodeDelta {
                head_version: next,
                ..base
            },
        ),
    ]
}

/// The first forgery (an unsigned key in the owner's name, at the owner's
/// next version), from the forger to the victim; returns its description
/// and that version.
fn send_unsigned_key(h: &mut Harness, identities: &[Arc<Identity>]) -> (&'static str, u64) {
    let next = genuine(h, 0).to_version + 1;
    let (what, d) = forgeries(h, identities, next).remove(0);
    let packet = from_forger(h, vec![d]);
    h.receive(VICTIM, FORGER, &packet);
    (what, next)
}

/// Signed state and claims refused as forged or unsigned.
fn refused(m: &Metrics) -> u64 {
    m.signatures_invalid + m.unsigned_refused
}

#[test]
fn forged_state_is_refused_and_the_owners_next_write_still_arrives() {
    let (mut h, identities) = cluster(Signatures::Require);
    let owner_name = h.nodes[OWNER].local_id().name.clone();
    let next = genuine(&h, 0).to_version + 1;
    let before = h.nodes[VICTIM].metrics();
    for (what, d) in forgeries(&h, &identities, next) {
        let packet = from_forger(&h, vec![d]);
        h.receive(VICTIM, FORGER, &packet);
        assert_eq!(h.nodes[VICTIM].get(&owner_name, "forged"), None, "{what}");
        assert_eq!(
            h.nodes[VICTIM].get(&owner_name, "role").as_deref(),
            Some(&b"db"[..]),
            "{what}"
        );
        let held = h.nodes[VICTIM]
            .members
            .get(id(OWNER, 1).key())
            .unwrap()
            .state
            .max_version();
        assert_eq!(
            held,
            next - 1,
            "{what}: the victim's version of the owner moved"
        );
    }
    let after = h.nodes[VICTIM].metrics();
    let refused = refused(&after) - refused(&before);
    assert_eq!(refused, 5, "each forgery counted once: {after:?}");
    // The owner's genuine write at the version the forgeries claimed.
    let now = h.now;
    assert_eq!(h.nodes[OWNER].set(now, "after", "1").unwrap(), next);
    let arrived = h.run_until(Duration::from_secs(5), |h| {
        h.nodes[VICTIM].get(&owner_name, "after").is_some()
    });
    assert!(
        arrived,
        "the owner's genuine write never reached the victim"
    );
    assert!(h.run_until(Duration::from_secs(5), Harness::converged));
    assert!(
        !h.events[VICTIM]
            .iter()
            .any(|e| matches!(e, Event::KeySet { key, .. } if key == "forged")),
        "a forged entry reached the application"
    );
}

#[test]
fn without_signatures_the_same_forgeries_pass_and_hide_the_owners_write() {
    let (mut h, identities) = cluster(Signatures::Off);
    let owner_name = h.nodes[OWNER].local_id().name.clone();
    let (what, next) = send_unsigned_key(&mut h, &identities);
    assert_eq!(
        h.nodes[VICTIM].get(&owner_name, "forged").as_deref(),
        Some(&b"x"[..]),
        "{what}"
    );
    let now = h.now;
    assert_eq!(h.nodes[OWNER].set(now, "after", "1").unwrap(), next);
    h.run_for(Duration::from_secs(5));
    assert_eq!(
        h.nodes[VICTIM].get(&owner_name, "after"),
        None,
        "unsigned, one forged datagram hides the owner's write at that version for good"
    );
}

#[test]
fn a_delta_is_applied_up_to_its_first_bad_entry() {
    let (mut h, identities) = cluster(Signatures::Require);
    let owner_name = h.nodes[OWNER].local_id().name.clone();
    let now = h.now;
    // Writes the victim does not see yet.
    h.isolated.insert(VICTIM);
    let v1 = h.nodes[OWNER].set(now, "a", "1").unwrap();
    h.nodes[OWNER].set(now, "b", "2").unwrap();
    let mut d = genuine(&h, v1 - 1);
    assert_eq!(d.entries.len(), 2);
    d.entries[1].value = Bytes::from_static(b"forged");
    let packet = from_forger(&h, vec![d]);
    h.receive(VICTIM, FORGER, &packet);
    let victim = &h.nodes[VICTIM];
    assert_eq!(victim.get(&owner_name, "a").as_deref(), Some(&b"1"[..]));
    assert_eq!(victim.get(&owner_name, "b"), None);
    assert_eq!(
        victim
            .members
            .get(id(OWNER, 1).key())
            .unwrap()
            .state
            .max_version(),
        v1
    );
    assert_eq!(victim.metrics().signatures_invalid, 1);
    let _ = identities;
    // The genuine "b" still arrives.
    h.isolated.clear();
    assert!(h.run_until(Duration::from_secs(5), |h| {
        h.nodes[VICTIM].get(&owner_name, "b").as_deref() == Some(&b"2"[..])
    }));
}

#[test]
fn the_rollout_stage_accepts_unsigned_members_and_require_does_not() {
    for (mode, accepted) in [(Signatures::Sign, true), (Signatures::Require, false)] {
        let mut h = Harness::new(0, config(Signatures::Off), 1400);
        let mut checking = Engine::new(config(mode), id(0, 1), 1400, 0, h.now).unwrap();
        checking
            .set_identity(
                h.now,
                Arc::new(Identity::generate().unwrap()),
                Arc::new(TrustOnFirstUse::new()),
            )
            .unwrap();
        h.push(checking);
        let mut unsigned = Engine::new(config(Signatures::Off), id(1, 1), 1400, 1, h.now).unwrap();
        unsigned.add_seeds([addr(0)]);
        unsigned.set(h.now, "role", "old").unwrap();
        h.push(unsigned);
        h.run_for(Duration::from_secs(3));
        let got = h.nodes[0].get("n1", "role").is_some();
        assert_eq!(got, accepted, "{mode}");
        assert_eq!(
            h.nodes[0].metrics().unsigned_refused > 0,
            !accepted,
            "{mode}"
        );
        // Either way the unsigned node takes the checking node's state.
        assert!(h.nodes[1].get("n0", IDENTITY_KEY).is_some(), "{mode}");
    }
}

#[test]
fn in_the_rollout_stage_unsigned_state_of_a_signing_member_is_refused() {
    let (mut h, identities) = cluster(Signatures::Sign);
    let owner_name = h.nodes[OWNER].local_id().name.clone();
    send_unsigned_key(&mut h, &identities);
    assert_eq!(h.nodes[VICTIM].get(&owner_name, "forged"), None);
    assert_eq!(h.nodes[VICTIM].metrics().unsigned_refused, 1);
}

#[test]
fn a_restart_with_another_key_is_refused_under_trust_on_first_use() {
    let (mut h, _) = cluster(Signatures::Require);
    let mut restarted = Engine::new(h.config.clone(), id(OWNER, 2), 1400, 9, h.now).unwrap();
    restarted
        .set_identity(
            h.now,
            Arc::new(Identity::generate().unwrap()),
            Arc::new(TrustOnFirstUse::new()),
        )
        .unwrap();
    restarted.add_seeds([addr(0)]);
    let now = h.now;
    restarted.set(now, "role", "impostor").unwrap();
    h.nodes[OWNER] = restarted;
    h.run_for(Duration::from_secs(3));
    let victim = &h.nodes[VICTIM];
    assert_ne!(victim.get("n1", "role").as_deref(), Some(&b"impostor"[..]));
    assert!(victim.metrics().identities_refused > 0);
}

#[test]
fn signed_entries_fit_the_budget() {
    let (mut h, _) = cluster(Signatures::Require);
    let now = h.now;
    // The largest value `set` takes under signing is smaller than without.
    let largest = |e: &mut Engine| {
        (1..1400)
            .rev()
            .find(|&n| e.check_entry("big", n).is_ok())
            .unwrap()
    };
    let signed_max = largest(&mut h.nodes[OWNER]);
    let mut plain = Engine::new(config(Signatures::Off), id(7, 1), 1400, 7, now).unwrap();
    assert_eq!(
        largest(&mut plain),
        signed_max + 66 + 77,
        "an entry's signature costs 66 bytes, its delta's signed head 77"
    );
    h.nodes[OWNER]
        .set(now, "big", vec![7u8; signed_max])
        .unwrap();
    // The harness checks every datagram against the budget on the way.
    assert!(h.run_until(Duration::from_secs(5), |h| {
        h.nodes[VICTIM]
            .get("n1", "big")
            .is_some_and(|v| v.len() == signed_max)
    }));
}

// ----- membership claims -------------------------------------------------

/// A membership claim about node `about` sent by the forger, with `from`
/// as the accuser, signed by `signer` if any (as `signer` would sign it).
fn claim(
    h: &Harness,
    about: usize,
    incarnation: u64,
    state: proto::MemberState,
    from: &str,
    signer: Option<&Identity>,
) -> Vec<u8> {
    let subject = h.nodes[about].local_id().clone();
    let mut u = super::super::msg::member_update(&subject, incarnation, state, from);
    if let Some(signer) = signer {
        let signed_by = match state {
            proto::MemberState::Alive | proto::MemberState::Left => subject.name.as_str(),
            _ => from,
        };
        let m = crate::identity::member_message(
            wire::cluster_id(&h.config.cluster),
            &subject.name,
            subject.generation,
            incarnation,
            state as u8,
            signed_by,
        );
        u.signature = Bytes::copy_from_slice(&signer.sign(&m));
    }
    proto::Packet {
        version: wire::PROTOCOL_VERSION,
        cluster: wire::cluster_id(&h.config.cluster),
        from: Some(h.nodes[FORGER].local_id().to_proto()),
        from_key: 0,
        messages: vec![proto::Message {
            kind: Some(Kind::Member(u)),
        }],
    }
    .encode_to_vec()
}

fn status(h: &Harness, at: usize, of: usize) -> (MemberStatus, u64) {
    let k = h.nodes[at].members.get(id(of, 1).key()).unwrap();
    (k.status, k.incarnation)
}

#[test]
fn forged_deaths_and_departures_in_another_members_name_are_refused() {
    use proto::MemberState::{Dead, Left, Suspect};
    let (mut h, identities) = cluster(Signatures::Require);
    let forger = &*identities[FORGER];
    let owner = h.nodes[OWNER].local_id().name.clone();
    let before = h.nodes[VICTIM].metrics();
    let forgeries = [
        ("left, unsigned", claim(&h, OWNER, 1, Left, &owner, None)),
        (
            "left, signed by the forger",
            claim(&h, OWNER, 1, Left, &owner, Some(forger)),
        ),
        (
            "dead in the owner's own name",
            claim(&h, OWNER, 0, Dead, &owner, Some(forger)),
        ),
        (
            "suspect in the victim's name",
            claim(&h, OWNER, 0, Suspect, "n0", Some(forger)),
        ),
        ("dead, unsigned", claim(&h, OWNER, 0, Dead, "n2", None)),
    ];
    for (what, packet) in &forgeries {
        h.receive(VICTIM, FORGER, packet);
        assert_eq!(
            status(&h, VICTIM, OWNER),
            (MemberStatus::Alive, 0),
            "{what}"
        );
    }
    let after = h.nodes[VICTIM].metrics();
    let refused = refused(&after) - refused(&before);
    assert_eq!(refused, forgeries.len() as u64);
    assert_eq!(after.deaths_declared, before.deaths_declared);
}

#[test]
fn a_members_own_accusation_stands_until_the_accused_refutes_it_signed() {
    let (mut h, identities) = cluster(Signatures::Require);
    // The forger accuses in its own name: a member may, and signs it.
    let packet = claim(
        &h,
        OWNER,
        0,
        proto::MemberState::Dead,
        "n2",
        Some(&identities[FORGER]),
    );
    h.receive(VICTIM, FORGER, &packet);
    assert_eq!(status(&h, VICTIM, OWNER).0, MemberStatus::Dead);
    // The victim passes the accusation on; the owner refutes it, signed.
    let refuted = h.run_until(Duration::from_secs(10), |h| {
        status(h, VICTIM, OWNER).0 == MemberStatus::Alive
    });
    assert!(refuted, "the owner's signed alive never reached the victim");
    assert!(
        status(&h, VICTIM, OWNER).1 > 0,
        "refuted at a higher incarnation"
    );
    assert!(h.nodes[OWNER].metrics().refutations > 0);
}

/// Probing fast enough to find a crash in a few virtual seconds.
fn probing(signatures: Signatures) -> Config {
    Config {
        signatures,
        ..Config::local()
    }
}

#[test]
fn a_forged_refutation_for_a_crashed_member_is_refused_and_passes_unsigned() {
    for signatures in [Signatures::Require, Signatures::Off] {
        let (mut h, identities) = cluster_with(probing(signatures));
        // The owner crashes; the others find it dead.
        h.isolated.insert(OWNER);
        let dead = h.run_until(Duration::from_secs(60), |h| {
            status(h, VICTIM, OWNER).0 == MemberStatus::Dead
        });
        assert!(dead, "{signatures}: the crash was never detected");
        let (_, inc) = status(&h, VICTIM, OWNER);
        // "I am alive", at a higher incarnation, in the owner's name.
        let unsigned = claim(&h, OWNER, inc + 1, proto::MemberState::Alive, "n1", None);
        let by_forger = claim(
            &h,
            OWNER,
            inc + 2,
            proto::MemberState::Alive,
            "n1",
            Some(&identities[FORGER]),
        );
        h.receive(VICTIM, FORGER, &unsigned);
        h.receive(VICTIM, FORGER, &by_forger);
        let revived = status(&h, VICTIM, OWNER).0 == MemberStatus::Alive;
        assert_eq!(revived, signatures == Signatures::Off, "{signatures}");
    }
}
