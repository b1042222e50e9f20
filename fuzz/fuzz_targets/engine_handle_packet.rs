//! `Engine::handle_packet` on hostile datagrams, from an engine that
//! already knows an honest peer and holds some state.
//!
//! Input: the first byte picks a mode, the rest is the data.
//! * even: the data is one datagram.
//! * odd, mode & 2 == 0: the data is several datagrams, each prefixed by
//!   a one-byte length, with 30 ms of engine time between them.
//! * odd, mode & 2 != 0: a valid packet the peer sent during the warm-up
//!   (picked by the next byte), edited by the (offset, byte) pairs after.
//!
//! Afterwards the engine runs its timers for a few seconds of virtual time,
//! and every packet it sends must fit its budget and decode.
#![no_main]

// The engines' virtual clock starts at a real instant.
#![allow(clippy::disallowed_methods)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use scuttlewire::Config;
use scuttlewire::engine::{Engine, NodeId};
use scuttlewire::__private::wire::{self, Limits};

const BUDGET: usize = 1_400;

fn addr(last: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, last], 7946))
}

fn engine(name: &str, last: u8, seed: u64, now: Instant) -> Engine {
    let config = Config::local().with_name(name);
    let id = NodeId::new(name, 1, addr(last));
    Engine::new(config, id, BUDGET, seed, now).expect("valid engine")
}

/// Delivers every queued packet between the two engines; returns what
/// `b` sent to `a`.
fn pump(a: &mut Engine, b: &mut Engine, now: Instant, captured: &mut Vec<Vec<u8>>) {
    for _ in 0..8 {
        let mut moved = false;
        while let Some(t) = a.poll_transmit() {
            moved = true;
            if t.to == b.local_id().addr {
                b.handle_packet(now, a.local_id().addr, &t.payload);
            }
        }
        while let Some(t) = b.poll_transmit() {
            moved = true;
            if t.to == a.local_id().addr {
                captured.push(t.payload.to_vec());
                a.handle_packet(now, b.local_id().addr, &t.payload);
            }
        }
        while a.poll_event().is_some() {}
        while b.poll_event().is_some() {}
        if !moved {
            break;
        }
    }
}

/// Runs `e`'s timers; checks every packet it sends.
fn settle(e: &mut Engine, mut now: Instant, cluster: u32) {
    for _ in 0..40 {
        now += Duration::from_millis(50);
        e.handle_timeout(now);
        while let Some(t) = e.poll_transmit() {
            assert!(t.payload.len() <= BUDGET, "{} > budget", t.payload.len());
            if let Err(err) = wire::decode(&t.payload[..], cluster, &Limits::default()) {
                panic!("the engine sent a packet that does not decode: {err}");
            }
        }
        while e.poll_event().is_some() {}
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, data)) = data.split_first() else {
        return;
    };
    let start = Instant::now();
    let mut a = engine("fuzz", 1, 1, start);
    let mut b = engine("peer", 2, 2, start);
    let _ = a.set(start, "color", "green");
    let _ = b.set(start, "load", "0.25");
    let _ = b.set(start, "role", "web");
    a.add_seeds([addr(2)]);
    let mut now = start;
    let mut captured = Vec::new();
    for _ in 0..12 {
        now += Duration::from_millis(50);
        a.handle_timeout(now);
        b.handle_timeout(now);
        pump(&mut a, &mut b, now, &mut captured);
    }
    let cluster = wire::cluster_id(&a.config().cluster);
    let peer = addr(2);

    if mode % 2 == 0 {
        a.handle_packet(now, peer, data);
    } else if mode & 2 == 0 {
        let mut rest = data;
        while let Some((&len, tail)) = rest.split_first() {
            let (datagram, tail) = tail.split_at(usize::from(len).min(tail.len()));
            a.handle_packet(now, peer, datagram);
            now += Duration::from_millis(30);
            a.handle_timeout(now);
            rest = tail;
        }
    } else if let Some((&pick, edits)) = data.split_first() {
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
        a.handle_packet(now, peer, &packet);
    }
    settle(&mut a, now, cluster);
});
