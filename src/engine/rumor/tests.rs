//! Rumor queues: retransmission limits, priority, replacement.

use super::*;
use crate::engine::{MemberStatus, NodeId};
use crate::wire::proto::MemberState;

fn bc(id: u64) -> proto::Message {
    proto::Message {
        kind: Some(proto::message::Kind::Broadcast(proto::Broadcast {
            origin: "a".into(),
            id,
            payload: vec![0; 10].into(),
        })),
    }
}

fn table() -> (Members, NodeId, NodeId) {
    let me = NodeId::new("me", 1, "127.0.0.1:1".parse().unwrap());
    let x = NodeId::new("x", 1, "127.0.0.1:2".parse().unwrap());
    let mut m = Members::new(me.clone());
    m.insert(x.clone());
    (m, me, x)
}

fn member_update(msg: &proto::Message) -> &proto::MemberUpdate {
    match &msg.kind {
        Some(proto::message::Kind::Member(u)) => u,
        other => panic!("not a member update: {other:?}"),
    }
}

#[test]
fn retransmits_up_to_the_limit_least_sent_first() {
    let (m, ..) = table();
    let mut r = Rumors::default();
    r.push_broadcast(Subject::broadcast("a", 1), &bc(1));
    for _ in 0..3 {
        assert_eq!(r.take(3, None, 10_000, &m).len(), 1);
    }
    assert!(r.is_empty());
    r.push_broadcast(Subject::broadcast("a", 2), &bc(2));
    r.take(3, None, 10_000, &m);
    r.push_broadcast(Subject::broadcast("a", 3), &bc(3));
    // Only room for one: the least-sent rumor wins.
    let one = field_len(prost::Message::encoded_len(&bc(3)));
    let got = r.take(3, None, one, &m);
    assert_eq!(got, vec![bc(3)]);
}

#[test]
fn the_buddy_goes_first_and_a_full_queue_forgets_the_most_sent() {
    let (m, me, x) = table();
    let mut r = Rumors::default();
    r.push_member(&me.name, me.key(), Teller::Member(me.key()));
    r.push_member(&x.name, x.key(), Teller::Member(me.key()));
    let body = MemberRumor {
        key: x.key(),
        from: Teller::Member(me.key()),
    };
    let one = field_len(prost::Message::encoded_len(&body.render(&m).unwrap()));
    let got = r.take(9, Some(&Subject::member("x")), one, &m);
    assert_eq!(got.len(), 1, "room for one rumor only");
    assert_eq!(member_update(&got[0]).node.as_ref().unwrap().name, "x");
    let mut q = Queue::<Bytes>::default();
    for i in 0..5 {
        q.push(Subject::broadcast("a", i), Bytes::new(), 3);
    }
    assert_eq!(q.order.len(), 3);
    assert_eq!(q.index.len(), 3);
}

#[test]
fn a_newer_rumor_replaces_the_older_about_the_same_subject() {
    let (m, _, x) = table();
    let mut r = Rumors::default();
    r.push_member(&x.name, x.key(), Teller::Name("y".into()));
    r.push_member(&x.name, x.key(), Teller::Name("z".into()));
    let got = r.take(5, None, 10_000, &m);
    assert_eq!(got.len(), 1);
    assert_eq!(member_update(&got[0]).from, "z");
}

#[test]
fn a_member_rumor_says_what_the_table_holds_when_it_is_sent() {
    let (mut m, me, x) = table();
    let mut r = Rumors::default();
    r.push_member(&x.name, x.key(), Teller::Member(me.key()));
    m.set_status(x.key(), MemberStatus::Suspect, 3);
    let got = r.take(5, None, 10_000, &m);
    let u = member_update(&got[0]);
    assert_eq!(u.node, Some(x.to_proto()));
    assert_eq!((u.state, u.incarnation), (MemberState::Suspect as i32, 3));
    assert_eq!(u.from, "me");
    // Gone from the table: nothing left to say, the rumor is dropped.
    m.remove(x.key());
    assert!(r.take(5, None, 10_000, &m).is_empty());
    assert!(r.is_empty());
}
