//! Regression: a death rumor about us at an incarnation below ours must
//! make us gossip our current incarnation again, or the teller never learns it.

// The engines' virtual clock starts at a real instant.
#![allow(clippy::disallowed_methods)]
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use prost::Message as _;
use scuttlewire::__private::wire::{self, proto};
use scuttlewire::Config;
use scuttlewire::engine::{Engine, NodeId};

fn pid(name: &str, last: u8) -> proto::NodeId {
    proto::NodeId {
        name: name.into(),
        generation: 1,
        ip: vec![10, 0, 0, last].into(),
        port: 7946,
    }
}
fn addr(last: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, last], 7946))
}
fn packet(from: &str, last: u8, kinds: Vec<proto::message::Kind>) -> Vec<u8> {
    proto::Packet {
        version: wire::PROTOCOL_VERSION,
        cluster: wire::cluster_id("scuttlewire"),
        from: Some(pid(from, last)),
        from_key: 0,
        messages: kinds
            .into_iter()
            .map(|k| proto::Message { kind: Some(k) })
            .collect(),
    }
    .encode_to_vec()
}
fn member(
    about: &str,
    last: u8,
    inc: u64,
    state: proto::MemberState,
    by: &str,
) -> proto::message::Kind {
    proto::message::Kind::Member(proto::MemberUpdate {
        signature: Default::default(),
        node: Some(pid(about, last)),
        incarnation: inc,
        state: state as i32,
        from: by.into(),
    })
}

#[test]
fn a_stale_death_rumor_about_us_gets_our_current_incarnation_back() {
    let t0 = Instant::now();
    let mut a = Engine::new(
        Config::local().with_name("a"),
        NodeId::new("a", 1, addr(1)),
        1400,
        1,
        t0,
    )
    .unwrap();
    // c suspects us at incarnation 0: we refute to 1.
    a.handle_packet(
        t0,
        addr(3),
        &packet(
            "c",
            3,
            vec![member("a", 1, 0, proto::MemberState::Suspect, "c")],
        ),
    );
    // Let the refutation rumor run out of retransmissions.
    let mut now = t0;
    for _ in 0..400 {
        now += Duration::from_millis(50);
        a.handle_timeout(now);
        while a.poll_transmit().is_some() {}
        while a.poll_event().is_some() {}
    }
    // b, which was cut off, declared us dead at incarnation 0 and tells us so.
    a.handle_packet(
        now,
        addr(2),
        &packet(
            "b",
            2,
            vec![member("a", 1, 0, proto::MemberState::Dead, "b")],
        ),
    );
    let mut told_b = false;
    for _ in 0..100 {
        while let Some(t) = a.poll_transmit() {
            let p = wire::decode(
                &t.payload[..],
                wire::cluster_id("scuttlewire"),
                &Default::default(),
            )
            .unwrap();
            for m in p.messages {
                if let Some(proto::message::Kind::Member(u)) = m.kind {
                    let about_a = u.node.as_ref().is_some_and(|n| n.name == "a");
                    if t.to == addr(2)
                        && about_a
                        && u.state == proto::MemberState::Alive as i32
                        && u.incarnation >= 1
                    {
                        told_b = true;
                    }
                }
            }
        }
        now += Duration::from_millis(50);
        a.handle_timeout(now);
    }
    let me = a.members().into_iter().find(|m| m.id.name == "a").unwrap();
    eprintln!("a's incarnation: {}", me.incarnation);
    assert!(
        told_b,
        "b still believes a is dead at incarnation 0; nothing tells it about incarnation {}",
        me.incarnation
    );
}
