//! The member table against a plain model: random inserts, restarts,
//! status changes, state writes and removals must leave every index
//! (by key, by name, peers, recency, fingerprint) agreeing with it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use bytes::Bytes;
use proptest::prelude::*;

use super::*;

fn id(name: u8, generation: u64) -> NodeId {
    let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, name)), 7946);
    NodeId::new(format!("m{name}"), generation, addr)
}

#[derive(Debug, Clone)]
enum Op {
    /// Learn `m{name}` at `generation` (a restart if the name is known
    /// at an older one; ignored if known at this one or newer).
    Learn(u8, u64),
    Remove(u8),
    Status(u8, u8),
    Write(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1..40u8, 1..4u64).prop_map(|(n, g)| Op::Learn(n, g)),
        1 => (0..40u8).prop_map(Op::Remove),
        2 => (1..40u8, 0..4u8).prop_map(|(n, s)| Op::Status(n, s)),
        2 => (0..40u8).prop_map(Op::Write),
    ]
}

fn status(s: u8) -> MemberStatus {
    [
        MemberStatus::Alive,
        MemberStatus::Suspect,
        MemberStatus::Dead,
        MemberStatus::Left,
    ][usize::from(s % 4)]
}

/// Model: name -> (key, status, max_version, incarnation).
type Model = BTreeMap<String, (u64, MemberStatus, u64, u64)>;

fn check(m: &Members, model: &Model) {
    assert_eq!(m.len(), model.len());
    let mut fingerprint = 0;
    let mut peers = HashSet::new();
    for (name, &(key, st, version, inc)) in model {
        let k = m.get(key).expect("known by key");
        assert_eq!(&k.id.name, name);
        assert_eq!(k.key, key);
        assert_eq!(k.status, st);
        assert_eq!(k.state.max_version(), version);
        assert_eq!(m.key_of(name), Some(key));
        if st.is_healthy() {
            fingerprint ^= share(key, inc, version);
            if key != m.me() {
                peers.insert(key);
            }
        }
    }
    assert_eq!(m.fingerprint(), fingerprint);
    let listed: HashSet<u64> = m.peers().iter().copied().collect();
    assert_eq!(listed.len(), m.peers().len(), "a peer listed twice");
    assert_eq!(listed, peers);
    let recent: Vec<u64> = m.recent().collect();
    let unique: HashSet<u64> = recent.iter().copied().collect();
    assert_eq!(unique.len(), recent.len(), "recent() repeats a key");
    assert!(recent.iter().all(|k| m.get(*k).is_some()));
    let window: Vec<u64> = m.window(m.len() / 2).map(|(_, k)| k).collect();
    let all: HashSet<u64> = m.keys().collect();
    assert_eq!(window.len(), m.len());
    assert_eq!(window.iter().copied().collect::<HashSet<_>>(), all);
    // In key order, rotated: every prefix is a cyclic key range, which is
    // what a digest page's window claims.
    let mut sorted: Vec<u64> = all.iter().copied().collect();
    sorted.sort_unstable();
    let start = (m.len() / 2) % sorted.len();
    let rotated: Vec<u64> = sorted[start..]
        .iter()
        .chain(&sorted[..start])
        .copied()
        .collect();
    assert_eq!(window, rotated);
    for (i, &first) in sorted.iter().enumerate() {
        for &last in sorted.iter().skip(i / 2) {
            let cyclic = |k: u64| {
                if first <= last {
                    (first..=last).contains(&k)
                } else {
                    k >= first || k <= last
                }
            };
            let mut want: Vec<u64> = sorted.iter().copied().filter(|&k| cyclic(k)).collect();
            let got: Vec<u64> = m.in_range(first, last).collect();
            let mut got_sorted = got.clone();
            got_sorted.sort_unstable();
            want.sort_unstable();
            assert_eq!(got_sorted, want, "in_range({first}, {last})");
            assert_eq!(got.len(), want.len());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn indexes_agree_with_a_model(ops in proptest::collection::vec(op(), 1..200)) {
        let me = id(0, 1);
        let mut m = Members::new(me.clone());
        let mut model = Model::new();
        model.insert(me.name.clone(), (me.key(), MemberStatus::Alive, 0, 0));
        for (i, op) in ops.into_iter().enumerate() {
            match op {
                Op::Learn(n, g) => {
                    let new = id(n, g);
                    match model.get(&new.name).copied() {
                        Some(_) if m.by_name(&new.name).unwrap().id.generation >= g => {}
                        Some((old, ..)) => {
                            m.remove(old);
                            m.insert(new.clone());
                            model.insert(new.name.clone(), (new.key(), MemberStatus::Alive, 0, 0));
                        }
                        None => {
                            m.insert(new.clone());
                            model.insert(new.name.clone(), (new.key(), MemberStatus::Alive, 0, 0));
                        }
                    }
                }
                Op::Remove(n) => {
                    let name = format!("m{n}");
                    if n != 0 {
                        if let Some((key, ..)) = model.remove(&name) {
                            prop_assert!(m.remove(key).is_some());
                        }
                    }
                }
                Op::Status(n, s) => {
                    if let Some(e) = model.get_mut(&format!("m{n}")) {
                        // Incarnations vary too: they count in the fingerprint.
                        m.set_status(e.0, status(s), u64::from(s));
                        e.1 = status(s);
                        e.3 = u64::from(s);
                    }
                }
                Op::Write(n) => {
                    if let Some(e) = model.get_mut(&format!("m{n}")) {
                        m.with_state(e.0, |s| s.set_local("k".into(), Bytes::from_static(b"v")));
                        e.2 += 1;
                    }
                }
            }
            check(&m, &model);
            // Sort now and then, so removals see both a sorted and an
            // unsorted peer list.
            if i % 3 == 0 {
                check_ring(&mut m);
            }
        }
    }

    #[test]
    fn the_broadcast_tree_reaches_every_member_once_in_few_hops(
        n in 1..70usize,
        fanout in 1..6usize,
        root in 0..70usize,
        tree in 0..5usize,
    ) {
        let ids: Vec<NodeId> = (0..n).map(|i| id(i as u8 + 1, 1)).collect();
        let root = ids[root % n].key();
        let mut children: HashMap<u64, Vec<u64>> = HashMap::new();
        for me in &ids {
            let mut m = Members::new(me.clone());
            for other in ids.iter().filter(|o| o.name != me.name) {
                m.insert(other.clone());
            }
            let ring = m.ring();
            let kids: Vec<u64> = match ring.children_in(tree, me.key(), root, fanout) {
                Some(kids) => kids.collect(),
                // A ring this small has fewer trees; tree 0 always exists.
                None => {
                    prop_assert!(tree > 0);
                    return Ok(());
                }
            };

            prop_assert!(kids.len() <= fanout);
            children.insert(me.key(), kids);
        }
        // Walk the tree from the root: everyone once, within the height of
        // a complete `fanout`-ary tree of n nodes.
        let mut seen: HashSet<u64> = HashSet::from([root]);
        let mut level = vec![root];
        let mut depth = 0;
        while !level.is_empty() {
            let mut next = Vec::new();
            for k in level {
                for &c in &children[&k] {
                    prop_assert!(seen.insert(c), "a member reached twice");
                    next.push(c);
                }
            }
            if !next.is_empty() {
                depth += 1;
            }
            level = next;
        }
        prop_assert_eq!(seen.len(), n, "a member left out");
        let (mut height, mut full) = (0, 1);
        while full < n {
            height += 1;
            full += fanout.pow(height as u32);
        }
        prop_assert_eq!(depth, height);
    }
}

/// The ring lists the healthy members, us included, each once, in order.
fn check_ring(m: &mut Members) {
    let mut healthy: Vec<u64> = m
        .iter()
        .filter(|k| k.status.is_healthy() || k.key == m.me())
        .map(|k| k.key)
        .collect();
    healthy.sort_unstable();
    let ring = m.ring();
    let listed: Vec<u64> = (0..ring.len()).map(|i| ring.at(i)).collect();
    assert_eq!(listed, healthy);
    for (i, &k) in listed.iter().enumerate() {
        assert_eq!(ring.position(k), i);
    }
}

#[test]
fn recency_lists_newest_changes_first_within_its_cap() {
    let mut m = Members::new(id(0, 1));
    for n in 1..30 {
        m.insert(id(n, 1));
    }
    // Write to members 5, 3, 5: newest first, each once.
    for n in [5u8, 3, 5] {
        m.with_state(id(n, 1).key(), |s| s.set_local("k".into(), Bytes::new()));
    }
    let recent: Vec<u64> = m.recent().take(3).collect();
    assert_eq!(
        recent,
        vec![id(5, 1).key(), id(3, 1).key(), id(29, 1).key()]
    );
    // Far more changes of one node than the log holds: it stays capped,
    // and the other nodes' recent changes are not crowded out.
    for _ in 0..RECENT_CAP * 3 {
        m.with_state(id(7, 1).key(), |s| s.set_local("k".into(), Bytes::new()));
    }
    assert!(m.recency.len() <= RECENT_CAP);
    let recent: Vec<u64> = m.recent().take(3).collect();
    assert_eq!(recent, vec![id(7, 1).key(), id(5, 1).key(), id(3, 1).key()]);
}

#[test]
fn extra_broadcast_trees_give_most_members_other_parents() {
    let ids: Vec<NodeId> = (0..=255u8).map(|i| id(i, 1)).collect();
    let root = ids[17].key();
    let mut m = Members::new(ids[17].clone());
    for other in ids.iter().filter(|o| o.key() != root) {
        m.insert(other.clone());
    }
    let ring = m.ring();
    let parents = |tree: usize| -> HashMap<u64, u64> {
        let mut p = HashMap::new();
        for node in &ids {
            for child in ring.children_in(tree, node.key(), root, 4).unwrap() {
                assert!(p.insert(child, node.key()).is_none(), "one parent each");
            }
        }
        assert_eq!(
            p.len(),
            255,
            "tree {tree} reaches every member but the root"
        );
        p
    };
    let trees: Vec<HashMap<u64, u64>> = (0..7).map(parents).collect();
    for a in 0..trees.len() {
        for b in a + 1..trees.len() {
            let same = trees[a].iter().filter(|(c, p)| trees[b][*c] == **p).count();
            assert!(same <= 8, "trees {a} and {b} share {same} of 255 parents");
        }
    }
}
