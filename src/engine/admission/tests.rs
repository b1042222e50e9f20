//! Admission control, through engines wired by the [`Harness`]: a node
//! refused by the application's check, by the address allow-list or by
//! the member cap never becomes a member of the node that refuses it (no
//! record, no event, no state), is counted and logged once, while the
//! others join and converge as usual.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::super::harness::{Harness, addr, id};
use super::*;
use crate::engine::{Engine, Event, Refusals};

/// Fast gossip and probes, as in a cluster on one host.
fn config() -> Config {
    Config::local()
}

/// `n` nodes, each seeded with the one before, all with `config` except
/// node 0, which runs `first`.
fn net(n: usize, first: Config) -> Harness {
    let mut net = Harness::new(n, config(), 1400);
    net.nodes[0] = Engine::new(first, id(0, 1), 1400, 0, net.now).unwrap();
    net
}

/// Everything logged at `warn` and above while `run` runs on this thread.
fn logged(run: impl FnOnce()) -> String {
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);
    impl Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, run);
    let bytes = buffer.0.lock().unwrap().clone();
    String::from_utf8(bytes).unwrap()
}

/// Lines of `log` that say `name` was refused admission.
fn refusals_of(log: &str, name: &str) -> usize {
    let quoted = format!("name=\"{name}\"");
    log.lines()
        .filter(|l| l.contains("refused admission") && l.contains(&quoted))
        .count()
}

fn names(e: &Engine) -> Vec<String> {
    e.members().into_iter().map(|m| m.id.name).collect()
}

/// Whether `events` hold a join or restart of `name`.
fn joined(events: &[Event], name: &str) -> bool {
    events.iter().any(|e| match e {
        Event::MemberJoined(n) => n.name == name,
        Event::MemberRestarted { new, .. } => new.name == name,
        _ => false,
    })
}

/// Every node `n{i}` sets its key `owner` to `n{i}`.
fn sets_own_state(net: &mut Harness) {
    let now = net.now;
    for (i, e) in net.nodes.iter_mut().enumerate() {
        e.set(now, "owner", format!("n{i}")).unwrap();
    }
}

#[test]
fn a_node_refused_by_the_check_never_becomes_a_member() {
    let mut net = net(4, config());
    let asked = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&asked);
    net.nodes[0].set_admission_check(Some(Arc::new(move |id: &NodeId| {
        seen.lock().unwrap().push(id.name.clone());
        if id.name == "n3" {
            Err("n3 is not welcome".to_owned())
        } else {
            Ok(())
        }
    })));
    sets_own_state(&mut net);
    let log = logged(|| {
        // n3 joins through n2, and n1 and n2 tell n0 about it again and
        // again (rumors, digests, deltas): refused every time.
        assert!(net.run_until(Duration::from_secs(10), |n| {
            (1..4)
                .all(|i| n.nodes[i].member_count() == 4 && n.nodes[i].get("n3", "owner").is_some())
                && n.nodes[0].get("n2", "owner").is_some()
        }));
        net.run_for(Duration::from_secs(2));
    });
    assert_eq!(names(&net.nodes[0]), ["n0", "n1", "n2"]);
    assert_eq!(net.nodes[0].get("n3", "owner"), None);
    assert_eq!(net.nodes[0].entries("n3"), None);
    assert!(!joined(&net.events[0], "n3"));
    assert!(joined(&net.events[0], "n1") && joined(&net.events[0], "n2"));
    let refused = net.nodes[0].metrics().refused;
    assert!(refused.check > 1, "{refused:?}");
    assert_eq!(refused.total(), refused.check);
    assert_eq!(refusals_of(&log, "n3"), 1, "{log}");
    assert!(log.contains("n3 is not welcome"), "{log}");
    // Asked about newcomers only: each admitted node once.
    let asked = asked.lock().unwrap();
    for name in ["n1", "n2"] {
        assert_eq!(asked.iter().filter(|n| *n == name).count(), 1, "{asked:?}");
    }
    // The others hold everyone.
    for i in 1..4 {
        assert_eq!(names(&net.nodes[i]), ["n0", "n1", "n2", "n3"]);
    }
}

#[test]
fn a_restart_is_admitted_through_the_same_check() {
    let mut net = net(2, config());
    net.nodes[0].set_admission_check(Some(Arc::new(|id: &NodeId| {
        if id.generation > 1 {
            Err(format!("{} may not restart", id.name))
        } else {
            Ok(())
        }
    })));
    assert!(net.run_until(Duration::from_secs(5), |n| {
        n.nodes[0].member_count() == 2
    }));
    // n1 restarts with generation 2 and new state.
    let mut restarted = Engine::new(config(), id(1, 2), 1400, 99, net.now).unwrap();
    restarted.set(net.now, "new", "2").unwrap();
    restarted.add_seeds([addr(0)]);
    net.nodes[1] = restarted;
    let log = logged(|| net.run_for(Duration::from_secs(3)));
    let n1: Vec<_> = net.nodes[0]
        .members()
        .into_iter()
        .filter(|m| m.id.name == "n1")
        .collect();
    assert_eq!(n1.len(), 1);
    assert_eq!(n1[0].id.generation, 1, "the old record stays");
    assert_eq!(net.nodes[0].get("n1", "new"), None);
    assert!(
        !net.events[0]
            .iter()
            .any(|e| matches!(e, Event::MemberRestarted { .. })),
        "{:?}",
        net.events[0]
    );
    assert!(net.nodes[0].metrics().refused.check > 0);
    assert_eq!(refusals_of(&log, "n1"), 1, "{log}");
}

#[test]
fn a_node_outside_the_allowed_networks_never_becomes_a_member() {
    // Harness node i is at 10.0.0.(i + 1): n3 at 10.0.0.4 is outside.
    let mut allowing = config();
    allowing.allowed_networks = vec!["10.0.0.0/30".parse().unwrap(), "fd00::/8".parse().unwrap()];
    let mut net = net(4, allowing);
    sets_own_state(&mut net);
    let log = logged(|| {
        assert!(net.run_until(Duration::from_secs(10), |n| {
            (1..4)
                .all(|i| n.nodes[i].member_count() == 4 && n.nodes[i].get("n3", "owner").is_some())
                && n.nodes[0].get("n2", "owner").is_some()
        }));
        net.run_for(Duration::from_secs(2));
    });
    assert_eq!(names(&net.nodes[0]), ["n0", "n1", "n2"]);
    assert_eq!(net.nodes[0].entries("n3"), None);
    assert!(!joined(&net.events[0], "n3"));
    let refused = net.nodes[0].metrics().refused;
    assert!(refused.network > 1, "{refused:?}");
    assert_eq!(refused.total(), refused.network);
    assert_eq!(refusals_of(&log, "n3"), 1, "{log}");
    assert!(log.contains("allowed_networks"), "{log}");
    for i in 1..4 {
        assert_eq!(net.nodes[i].member_count(), 4);
    }
}

#[test]
fn members_beyond_the_cap_are_refused() {
    let mut capped = config();
    capped.max_members = 3;
    let mut net = net(5, capped);
    sets_own_state(&mut net);
    let log = logged(|| {
        assert!(net.run_until(Duration::from_secs(10), |n| {
            (1..5).all(|i| n.nodes[i].member_count() == 5)
        }));
        net.run_for(Duration::from_secs(2));
    });
    let held = names(&net.nodes[0]);
    assert_eq!(held.len(), 3, "{held:?}");
    let refused: Vec<String> = (1..5)
        .map(|i| format!("n{i}"))
        .filter(|n| !held.contains(n))
        .collect();
    assert_eq!(refused.len(), 2);
    for name in &refused {
        assert_eq!(net.nodes[0].entries(name), None);
        assert!(!joined(&net.events[0], name));
        assert_eq!(refusals_of(&log, name), 1, "{name}: {log}");
    }
    // The admitted ones are members as usual: their state arrived.
    for name in held.iter().filter(|n| *n != "n0") {
        assert_eq!(
            net.nodes[0].get(name, "owner").as_deref(),
            Some(name.as_bytes())
        );
    }
    let counted = net.nodes[0].metrics().refused;
    assert!(counted.capacity >= 2, "{counted:?}");
    assert_eq!(counted.total(), counted.capacity);
}

#[test]
fn judge_checks_networks_then_the_cap_then_the_application() {
    let v4 = |s: &str| NodeId::new("x", 1, s.parse::<SocketAddr>().unwrap());
    let mut a = Admission::new(&Config {
        allowed_networks: vec!["10.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()],
        max_members: 2,
        ..config()
    });
    assert_eq!(a.judge(&v4("10.1.2.3:1"), 1, true), Ok(()));
    assert_eq!(a.judge(&v4("[fd00::1]:1"), 1, true), Ok(()));
    assert_eq!(a.judge(&v4("[::ffff:10.0.0.1]:1"), 1, true), Ok(()));
    assert_eq!(a.judge(&v4("11.0.0.1:1"), 1, true), Err(Refusal::Network));
    assert_eq!(a.judge(&v4("[fe80::1]:1"), 1, true), Err(Refusal::Network));
    assert_eq!(
        a.judge(&v4("10.0.0.1:1"), 2, true),
        Err(Refusal::Capacity(2))
    );
    // A new generation replaces a record: not capped.
    assert_eq!(a.judge(&v4("10.0.0.1:1"), 2, false), Ok(()));
    // The application is asked last, only about those that pass.
    a.set_check(Some(Arc::new(|_: &NodeId| Err("no".to_owned()))));
    assert_eq!(a.judge(&v4("11.0.0.1:1"), 1, true), Err(Refusal::Network));
    assert_eq!(
        a.judge(&v4("10.0.0.1:1"), 1, true),
        Err(Refusal::Check("no".to_owned()))
    );
    // No limits: everyone.
    let open = Admission::new(&config());
    assert_eq!(open.judge(&v4("192.0.2.1:1"), 1_000_000, true), Ok(()));
}

#[test]
fn each_name_is_noticed_once_and_the_memory_of_names_is_bounded() {
    let mut a = Admission::new(&config());
    assert_eq!(a.notice("x"), Notice::First);
    assert_eq!(a.notice("x"), Notice::Quiet);
    a.admitted("x");
    assert_eq!(a.notice("x"), Notice::First, "news again after admission");
    for i in 0..MAX_LOGGED * 2 {
        a.notice(&format!("flood-{i}"));
    }
    assert_eq!(a.logged.len(), MAX_LOGGED);
    assert_eq!(a.notice("late"), Notice::Quiet);
    let mut b = Admission::new(&config());
    for i in 0..MAX_LOGGED {
        assert_eq!(b.notice(&format!("n{i}")), Notice::First);
    }
    assert_eq!(b.notice("one more"), Notice::Overflow);
    assert_eq!(b.notice("and another"), Notice::Quiet);
}

#[test]
fn refusals_add_up() {
    let r = Refusals {
        network: 1,
        capacity: 2,
        check: 3,
    };
    assert_eq!(r.total(), 6);
}
