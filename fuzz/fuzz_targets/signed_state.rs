//! Signed state on hostile input: the published-identity decoder of both
//! trusts, and byte-edited deltas of a signing peer against an engine that
//! requires signatures.
//!
//! Input: the first byte picks a mode, the rest is the data.
//! * mode & 1 == 0: the data is a published identity (the value of
//!   `__sw.id`), given to `TrustOnFirstUse::admit` and `CaTrust::admit`.
//! * mode & 1 == 1: a valid packet the peer sent during the warm-up (picked
//!   by the next byte), edited by the (offset, byte) pairs after, handed
//!   to the engine.
//!
//! Checks: no panic; and the oracle of signed state — every entry the
//! engine holds for the peer is one the peer wrote (same key, value and
//! version), however the packet was edited.
#![no_main]

// The engines' virtual clock starts at a real instant.
#![allow(clippy::disallowed_methods)]

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use scuttlewire::engine::{Engine, NodeId};
use scuttlewire::identity::{CaTrust, Identity, Trust, TrustOnFirstUse};
use scuttlewire::{Config, Signatures};

const BUDGET: usize = 1_400;

fn addr(last: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, last], 7946))
}

/// Two fixed keys, made once (key generation is slow next to a run).
fn keys() -> &'static [Vec<u8>; 2] {
    static KEYS: OnceLock<[Vec<u8>; 2]> = OnceLock::new();
    KEYS.get_or_init(|| {
        let key = || Identity::generate().expect("OS RNG").pkcs8_pem().into_bytes();
        [key(), key()]
    })
}

fn engine(name: &str, last: u8, key: &[u8], now: Instant) -> Engine {
    let mut config = Config::local().with_name(name);
    config.signatures = Signatures::Require;
    let id = NodeId::new(name, 1, addr(last));
    let mut e = Engine::new(config, id, BUDGET, u64::from(last), now).expect("valid engine");
    let identity = Identity::from_pem(key, None).expect("a valid key");
    e.set_identity(now, Arc::new(identity), Arc::new(TrustOnFirstUse::new()))
        .expect("signing config");
    e
}

fn pump(a: &mut Engine, b: &mut Engine, now: Instant, captured: &mut Vec<Vec<u8>>) {
    for _ in 0..8 {
        let mut moved = false;
        while let Some(t) = a.poll_transmit() {
            moved = true;
            b.handle_packet(now, a.local_id().addr, &t.payload);
        }
        while let Some(t) = b.poll_transmit() {
            moved = true;
            captured.push(t.payload.to_vec());
            a.handle_packet(now, b.local_id().addr, &t.payload);
        }
        while a.poll_event().is_some() {}
        while b.poll_event().is_some() {}
        if !moved {
            break;
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, data)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        let _ = TrustOnFirstUse::new().admit("node-1", data);
        static CA: OnceLock<CaTrust> = OnceLock::new();
        let ca = CA.get_or_init(|| {
            CaTrust::from_pem(include_bytes!("../../certs/ca.pem")).expect("the development CA")
        });
        let _ = ca.admit("node-1", data);
        return;
    }
    let start = Instant::now();
    let [ka, kb] = keys();
    let mut a = engine("fuzz", 1, ka, start);
    // The peer's writes during the warm-up; `a` holds some of them when
    // the edited packet arrives.
    let mut b = engine("peer", 2, kb, start);
    // Every (key, value, version) the peer ever wrote.
    let mut written = vec![("__sw.id".to_owned(), b.get("peer", "__sw.id").unwrap_or_default(), 1)];
    let mut set = |b: &mut Engine, now: Instant, key: &str, value: &'static str| {
        if let Ok(v) = b.set(now, key, value) {
            written.push((key.to_owned(), bytes::Bytes::from_static(value.as_bytes()), v));
        }
    };
    set(&mut b, start, "load", "0.25");
    set(&mut b, start, "role", "web");
    a.add_seeds([addr(2)]);
    let mut now = start;
    let mut captured = Vec::new();
    for round in 0..12 {
        now += Duration::from_millis(50);
        if round == 6 {
            set(&mut b, now, "role", "db");
            let _ = b.delete(now, "load");
        }
        a.handle_timeout(now);
        b.handle_timeout(now);
        pump(&mut a, &mut b, now, &mut captured);
    }
    let Some((&pick, edits)) = data.split_first() else {
        return;
    };
    if captured.is_empty() {
        return;
    }
    let mut packet = captured[usize::from(pick) % captured.len()].clone();
    for edit in edits.chunks_exact(3) {
        if packet.is_empty() {
            break;
        }
        let at = usize::from(u16::from_le_bytes([edit[0], edit[1]])) % packet.len();
        packet[at] = edit[2];
    }
    a.handle_packet(now, addr(2), &packet);
    for (key, (value, version)) in a.entries("peer").unwrap_or_default() {
        assert!(
            written.iter().any(|(k, v, ver)| *k == key && *v == value && *ver == version),
            "the engine holds an entry the peer never wrote: {key}={value:?}@{version}"
        );
    }
});
