//! The operator commands end to end: real `scuttlewire agent` processes on
//! loopback (ports chosen by the OS, `--preset local`), each with its
//! control socket in a scratch directory of the test, and the client
//! commands run as processes whose output is checked as an operator would
//! read it.
//!
//! Bounds are generous wall-clock waits (other builds share the machine):
//! the tests check what the commands do, not how fast.

// Tests drive real nodes in real time: deadlines and timings read the clock.
#![allow(clippy::disallowed_methods)]
#![cfg(all(unix, feature = "agent"))]

#[path = "operator/process.rs"]
mod process;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use process::{Agent, Process, Scratch, client, client_with_input, command, eventually};

/// One line of `keys list --json` about key `id`: (installed, primary, healthy).
fn usage(keys: &Value, id: &str) -> Option<(u64, u64, u64)> {
    let key = keys["keys"].as_array()?.iter().find(|k| k["id"] == id)?;
    Some((
        key["installed"].as_u64()?,
        key["primary"].as_u64()?,
        keys["healthy"].as_u64()?,
    ))
}

/// A fresh key from `scuttlewire keygen`.
fn keygen() -> String {
    let mut keygen = Process::spawn(command(&["keygen"], &[]));
    let status = keygen.wait(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "keygen: {}",
        keygen.stderr()
    );
    keygen.stdout().join("")
}

/// The non-comment lines of a key file.
fn keys_in(file: &Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .expect("read the key file")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

#[test]
fn members_state_monitor_metrics_and_leave_on_a_plain_cluster() {
    let scratch = Scratch::new("plain");
    let a = Agent::start(&scratch, "a", None, &["--state", "role=web"]);
    let b = Agent::start(&scratch, "b", Some(&a), &["--state", "role=db"]);
    let mut c = Agent::start(&scratch, "c", Some(&a), &[]);
    eventually("a sees a, b, c alive", || a.sees_alive(&["a", "b", "c"]));

    // The table: every member alive, sorted by name, a column per key.
    let table = a.run(&["members", "--keys", "role,zone"]).ok().stdout;
    let lines: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines[0],
        [
            "NAME",
            "ADDRESS",
            "STATUS",
            "INCARNATION",
            "GENERATION",
            "role",
            "zone"
        ]
    );
    let rows: Vec<(&str, &str, &str, &str)> = lines[1..]
        .iter()
        .map(|r| (r[0], r[1], r[2], r[5]))
        .collect();
    let expected = [
        ("a", a.addr.as_str(), "alive", "web"),
        ("b", b.addr.as_str(), "alive", "db"),
        ("c", c.addr.as_str(), "alive", "-"),
    ];
    assert_eq!(rows, expected, "{table}");

    // A change set on a shows on b: through `get`, `entries` and `monitor`.
    let monitor = Process::spawn(command(
        &[
            "monitor",
            "--json",
            "--control",
            &b.control.to_string_lossy(),
        ],
        &[],
    ));
    let readable = Process::spawn(command(
        &["monitor", "--control", &c.control.to_string_lossy()],
        &[],
    ));
    // The monitors may subscribe after the first changes: set again until
    // both have shown one (each only sees changes made after it subscribed).
    let json_saw = |value: &str| {
        monitor.stdout().iter().any(|line| {
            let json: Value = serde_json::from_str(line).unwrap_or_default();
            json["event"] == "key_set" && json["node"] == "a" && json["value"] == value
        })
    };
    let readable_saw = || {
        readable
            .stdout()
            .iter()
            .any(|l| l.contains("key_set a key=zone value=eu-"))
    };
    let mut seen = (false, false);
    for round in 0..10 {
        let value = format!("eu-{round}");
        a.run(&["set", "zone", &value]).ok();
        let deadline = Instant::now() + Duration::from_secs(2);
        while seen != (true, true) && Instant::now() < deadline {
            seen = (seen.0 || json_saw(&value), seen.1 || readable_saw());
            std::thread::sleep(Duration::from_millis(50));
        }
        if seen == (true, true) {
            break;
        }
    }
    assert!(
        seen.0,
        "the JSON monitor saw no key_set: {:?}",
        monitor.stdout()
    );
    assert!(
        seen.1,
        "the readable monitor saw no key_set: {:?}",
        readable.stdout()
    );
    let zone = |agent: &Agent| agent.run(&["get", "a", "zone"]);
    eventually("b gets a's zone", || zone(&b).stdout.starts_with("eu-"));
    let entries = c.run(&["entries", "a", "--json"]).ok().json();
    let keys: Vec<&str> = entries
        .as_array()
        .map(|e| e.iter().filter_map(|e| e["key"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(keys, ["role", "zone"], "{entries}");
    let table = c.run(&["entries", "a"]).ok().stdout;
    assert!(
        table.starts_with("KEY   VALUE  VERSION\nrole  web    1\n"),
        "{table}"
    );

    // Delete: gone from b's view; `get` then exits 1 with one line.
    a.run(&["delete", "zone"]).ok();
    eventually("b no longer has a's zone", || zone(&b).code == Some(1));
    let line = zone(&b).refused();
    assert!(line.contains("a has no key \"zone\""), "{line}");

    // Counters, both ways.
    let metrics = a.run(&["metrics"]).ok().stdout;
    let counter = |name: &str| {
        metrics.lines().find_map(|l| {
            let (n, v) = l.split_once(' ')?;
            (n == name).then(|| v.trim().parse::<u64>().ok())?
        })
    };
    assert!(
        counter("engine.packets_sent").is_some_and(|n| n > 0),
        "{metrics}"
    );
    assert_eq!(counter("members.alive"), Some(3), "{metrics}");
    let json = a.run(&["metrics", "--json"]).ok().json();
    assert!(
        json["engine.packets_received"]
            .as_u64()
            .is_some_and(|n| n > 0)
    );

    // No encryption: key commands fail with the library's message.
    let line = a.run(&["keys", "list"]).refused();
    assert!(
        line.contains("keys list: this node has no keyring"),
        "{line}"
    );

    // `leave`: c exits 0, its socket is gone, the others report it left.
    let said = c.run(&["leave"]).ok().stdout;
    assert!(said.starts_with("left the cluster"), "{said}");
    let status = c.process.wait(Duration::from_secs(15));
    assert!(
        status.is_some_and(|s| s.success()),
        "c: {status:?} {}",
        c.process.stderr()
    );
    assert!(!c.control.exists(), "c's socket was not removed");
    assert!(
        c.process
            .stdout()
            .iter()
            .any(|l| l.contains(r#""event":"stopped""#))
    );
    eventually("a and b report c left", || {
        [&a, &b].iter().all(|agent| {
            agent
                .statuses()
                .iter()
                .any(|(n, s)| n == "c" && s == "left")
        })
    });
}

#[test]
fn a_key_rotation_across_three_encrypted_agents() {
    let scratch = Scratch::new("rotation");
    let old = keygen();
    let key_file = |name: &str| {
        let path = scratch.path(&format!("{name}.key"));
        std::fs::write(&path, format!("# the cluster key\n{old}\n")).expect("write a key file");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        path
    };
    let files = [key_file("a"), key_file("b"), key_file("c")];
    let flag = |i: usize| {
        [
            "--key-file".to_owned(),
            files[i].to_string_lossy().into_owned(),
        ]
    };
    let (fa, fb, fc) = (flag(0), flag(1), flag(2));
    let a = Agent::start(&scratch, "a", None, &[&fa[0], &fa[1]]);
    let b = Agent::start(&scratch, "b", Some(&a), &[&fb[0], &fb[1]]);
    let mut c = Agent::start(&scratch, "c", Some(&a), &[&fc[0], &fc[1]]);
    let all = [&a, &b, &c];
    eventually("a sees a, b, c alive", || a.sees_alive(&["a", "b", "c"]));
    let old_id = a.keys()["keys"][0]["id"].as_str().unwrap_or("").to_owned();
    eventually("every agent sees the old key on 3/3", || {
        all.iter()
            .all(|x| usage(&x.keys(), &old_id) == Some((3, 3, 3)))
    });

    // Install on a only: using it is refused (b and c would drop a's
    // datagrams), and the refusal says how to go on.
    let new = keygen();
    let installed = a.run(&["keys", "install", &new, "--json"]).ok().json();
    let new_id = installed["id"].as_str().unwrap_or("").to_owned();
    let line = a.run(&["keys", "use", &new_id]).refused();
    assert!(line.contains("not every alive member holds key"), "{line}");
    assert!(line.contains("b, c") && line.contains("--force"), "{line}");

    // Install everywhere (b reads the key from stdin): 3/3 hold it.
    client_with_input(&b.control, &["keys", "install", "-"], &new).ok();
    c.run(&["keys", "install", &new]).ok();
    eventually("every agent sees the new key on 3/3", || {
        all.iter()
            .all(|x| usage(&x.keys(), &new_id) == Some((3, 0, 3)))
    });
    let table = a.run(&["keys", "list"]).ok().stdout;
    assert!(
        table.contains(&format!("{new_id}  3/3        0/3      installed")),
        "{table}"
    );

    // Use it on a: allowed now. Removing the old key is still refused
    // while b and c seal with it.
    a.run(&["keys", "use", &new_id]).ok();
    let line = a.run(&["keys", "remove", &old_id]).refused();
    assert!(line.contains("still the primary key on b, c"), "{line}");
    b.run(&["keys", "use", &new_id]).ok();
    c.run(&["keys", "use", &new_id]).ok();
    for x in all {
        eventually("the new key is primary on 3/3", || {
            usage(&x.keys(), &new_id) == Some((3, 3, 3))
        });
        x.run(&["keys", "remove", &old_id]).ok();
    }
    eventually("every agent lists the new key alone", || {
        all.iter().all(|x| {
            let keys = x.keys();
            keys["keys"].as_array().map(Vec::len) == Some(1)
                && usage(&keys, &new_id) == Some((3, 3, 3))
        })
    });

    // The key files hold the rotated keyring, and it carries the cluster.
    for file in &files {
        assert_eq!(keys_in(file), [new.as_str()], "{}", file.display());
        let mode = std::fs::metadata(file).map(|m| m.permissions().mode() & 0o777);
        assert_eq!(mode.ok(), Some(0o600));
    }
    a.run(&["set", "rotated", "yes"]).ok();
    eventually("c gets a's change under the new key", || {
        c.run(&["get", "a", "rotated"]).stdout == "yes"
    });

    // A restarted agent comes back with the rotated key file.
    c.run(&["leave"]).ok();
    assert!(
        c.process
            .wait(Duration::from_secs(15))
            .is_some_and(|s| s.success())
    );
    let c2 = Agent::start(&scratch, &c.name, Some(&a), &[&fc[0], &fc[1]]);
    eventually("a sees the restarted c alive", || {
        a.statuses().iter().any(|(n, s)| n == "c" && s == "alive")
            && a.run(&["get", "c", "__sw.keys"]).code == Some(0)
    });
    assert_eq!(c2.keys()["keys"].as_array().map(Vec::len), Some(1));
}

#[test]
fn one_agent_per_socket_and_clients_without_an_agent_fail_in_one_line() {
    let scratch = Scratch::new("exclusive");
    let a = Agent::start(&scratch, "a", None, &[]);

    // A second agent on the same control path refuses to start.
    let path = a.control.to_string_lossy().into_owned();
    let args = [
        "agent",
        "--bind",
        "127.0.0.1:0",
        "--preset",
        "local",
        "--control",
        &path,
    ];
    let mut second = Process::spawn(command(&args, &[]));
    let status = second.wait(Duration::from_secs(15));
    assert!(status.is_some_and(|s| !s.success()), "{status:?}");
    let expected = format!("error: --control {path}: another agent is listening there");
    assert_eq!(second.stderr().trim(), expected);
    assert!(a.sees_alive(&["a"]), "the first agent still answers");

    // No socket at all.
    let line = client(&scratch.path("missing.sock"), &["members"]).refused();
    assert!(line.starts_with("error: no agent at "), "{line}");

    // A stale socket: the file of a listener that is gone.
    let stale = scratch.path("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).expect("bind a socket"));
    let line = client(&stale, &["members"]).refused();
    assert!(
        line.contains("no agent at") && line.contains("stale"),
        "{line}"
    );

    // An agent starting there replaces the stale socket; the client finds
    // it through SCUTTLEWIRE_CONTROL, and the socket goes when it leaves.
    let stale_text = stale.to_string_lossy().into_owned();
    let args = [
        "agent",
        "--bind",
        "127.0.0.1:0",
        "--preset",
        "local",
        "--name",
        "s",
    ];
    let mut agent = Process::spawn(command(&args, &[("SCUTTLEWIRE_CONTROL", &stale_text)]));
    eventually("the agent at the stale path answers", || {
        let mut run = Process::spawn(command(
            &["members"],
            &[("SCUTTLEWIRE_CONTROL", &stale_text)],
        ));
        run.wait(Duration::from_secs(10))
            .is_some_and(|s| s.success())
    });
    let mut leave = Process::spawn(command(&["leave"], &[("SCUTTLEWIRE_CONTROL", &stale_text)]));
    assert!(
        leave
            .wait(Duration::from_secs(15))
            .is_some_and(|s| s.success())
    );
    assert!(
        agent
            .wait(Duration::from_secs(15))
            .is_some_and(|s| s.success())
    );
    assert!(!stale.exists(), "the socket file outlived its agent");
}
