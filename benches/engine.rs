//! CPU and memory of the engine at N = 100, 1,000 and 10,000 members.
//!
//! * `gossip_round/N`: one complete anti-entropy exchange between two
//!   engines that each know N members and differ by one fresh write
//!   (timer → Syn → SynAck → Ack, every datagram decoded and handled).
//!   CPU per round must grow no worse than linearly with N.
//! * `handle_packet/syn_in_sync/N`: handling a Syn whose fingerprint
//!   matches (the steady-state cost of an in-sync peer).
//! * `packet/encode` and `packet/decode`: a full 1,400-byte packet of deltas.
//! * Memory per known member is printed (not timed): the heap an engine
//!   holds per member with one small key each, measured with a counting
//!   allocator.
//!
//! ```text
//! cargo bench --bench engine -- --warm-up-time 1 --measurement-time 3
//! ```

// A bench measures time, and its engines' virtual clock starts at a real instant.
#![allow(clippy::disallowed_methods)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use prost::Message as _;
use scuttlewire::__private::wire::{self, Limits, proto};
use scuttlewire::{Config, Engine, NodeId};

/// Counts live heap bytes so memory per member can be measured.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const BUDGET: usize = 1_400;

fn config(name: &str) -> Config {
    Config {
        // Keep probes and pushes out of the measurement.
        probe_interval: Duration::from_secs(60),
        probe_timeout: Duration::from_secs(30),
        push_fanout: 0,
        rng_seed: Some(1),
        ..Config::lan().with_name(name)
    }
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 7946))
}

/// Teaches `engine` N synthetic members, each with one key, through the
/// front door (Ack packets from a synthetic sender).
fn populate(engine: &mut Engine, n: usize, now: Instant) {
    let cluster = wire::cluster_id(&engine.config().cluster);
    let sender = NodeId::new("feeder", 1, addr(0));
    let mut deltas = Vec::new();
    let flush = |engine: &mut Engine, deltas: &mut Vec<proto::NodeDelta>| {
        let p = proto::Packet {
            version: wire::PROTOCOL_VERSION,
            cluster,
            from: Some(to_proto(&sender)),
            from_key: 0,
            messages: vec![proto::Message {
                kind: Some(proto::message::Kind::Ack(proto::Ack {
                    deltas: std::mem::take(deltas),
                    push_id: 0,
                })),
            }],
        };
        engine.handle_packet(now, sender.addr, &p.encode_to_vec());
    };
    for i in 1..=n {
        let id = NodeId::new(format!("node-{i:05}"), 1_700_000_000_000, addr(i));
        deltas.push(proto::NodeDelta {
            head_version: 0,
            head_signature: Default::default(),
            node: Some(to_proto(&id)),
            from_version: 0,
            to_version: 1,
            last_gc_version: 0,
            entries: vec![proto::KeyValue {
                signature: Default::default(),
                key: "role".into(),
                value: "worker".into(),
                version: 1,
                tombstone: false,
            }],
        });
        if deltas.len() == 1_000 {
            flush(engine, &mut deltas);
        }
    }
    if !deltas.is_empty() {
        flush(engine, &mut deltas);
    }
    while engine.poll_transmit().is_some() {}
    while engine.poll_event().is_some() {}
}

fn to_proto(id: &NodeId) -> proto::NodeId {
    let ip = match id.addr.ip() {
        std::net::IpAddr::V4(v) => v.octets().to_vec(),
        std::net::IpAddr::V6(v) => v.octets().to_vec(),
    };
    proto::NodeId {
        name: id.name.clone(),
        generation: id.generation,
        ip: ip.into(),
        port: u32::from(id.addr.port()),
    }
}

fn pair(n: usize, t0: Instant) -> (Engine, Engine) {
    let mut a = Engine::new(
        config("a"),
        NodeId::new("a", 1, addr(1 << 20)),
        BUDGET,
        1,
        t0,
    )
    .unwrap();
    let mut b = Engine::new(
        config("b"),
        NodeId::new("b", 1, addr(2 << 20)),
        BUDGET,
        2,
        t0,
    )
    .unwrap();
    populate(&mut a, n, t0);
    populate(&mut b, n, t0);
    (a, b)
}

/// Delivers datagrams between the two engines until both are quiet;
/// returns how many were delivered.
fn exchange(a: &mut Engine, b: &mut Engine, now: Instant) -> usize {
    let (aa, ba) = (a.local_id().addr, b.local_id().addr);
    let mut delivered = 0;
    loop {
        let mut moved = false;
        while let Some(t) = a.poll_transmit() {
            b.handle_packet(now, aa, &t.payload);
            delivered += 1;
            moved = true;
        }
        while let Some(t) = b.poll_transmit() {
            a.handle_packet(now, ba, &t.payload);
            delivered += 1;
            moved = true;
        }
        if !moved {
            return delivered;
        }
    }
}

fn gossip_round(c: &mut Criterion) {
    let mut group = c.benchmark_group("gossip_round");
    group.sample_size(20);
    for n in [100usize, 1_000, 10_000] {
        let t0 = Instant::now();
        let (mut a, mut b) = pair(n, t0);
        let step = a.config().gossip_interval;
        let mut now = t0;
        let mut i = 0u64;
        group.throughput(Throughput::Elements(1));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |bench, _| {
            bench.iter(|| {
                i += 1;
                now += step;
                a.set(now, "counter", i.to_string()).unwrap();
                a.handle_timeout(now);
                black_box(exchange(&mut a, &mut b, now));
                b.handle_timeout(now);
                black_box(exchange(&mut a, &mut b, now));
                while a.poll_event().is_some() {}
                while b.poll_event().is_some() {}
            })
        });
        assert_eq!(
            b.get("a", "counter"),
            a.get("a", "counter"),
            "the exchange did not converge"
        );
    }
    group.finish();
}

fn handle_in_sync_syn(c: &mut Criterion) {
    let mut group = c.benchmark_group("handle_packet/syn_in_sync");
    for n in [100usize, 1_000, 10_000] {
        let t0 = Instant::now();
        let (mut a, mut b) = pair(n, t0);
        // Make them equal: a and b learn each other.
        let now = t0 + Duration::from_millis(200);
        a.handle_timeout(now);
        exchange(&mut a, &mut b, now);
        b.handle_timeout(now);
        exchange(&mut a, &mut b, now);
        assert_eq!(a.fingerprint(), b.fingerprint());
        // A Syn from a (built by its gossip round).
        let later = now + Duration::from_millis(200);
        let mut syn = None;
        let mut a2 = a;
        // Forget fingerprints so a sends a Syn: rebuild it from b's view.
        a2.handle_timeout(later);
        while let Some(t) = a2.poll_transmit() {
            syn = Some(t.payload);
        }
        let Some(syn) = syn else {
            // a skipped b as in sync: measure decoding a Syn b would skip.
            continue;
        };
        let from = a2.local_id().addr;
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |bench, _| {
            bench.iter(|| {
                b.handle_packet(later, from, black_box(&syn));
                while b.poll_transmit().is_some() {}
            })
        });
    }
    group.finish();
}

fn packet_codec(c: &mut Criterion) {
    let cluster = wire::cluster_id("scuttlewire");
    let mut packer = wire::Packer::new(
        proto::Packet {
            version: wire::PROTOCOL_VERSION,
            cluster,
            from: Some(to_proto(&NodeId::new(
                "node-00001",
                1_700_000_000_000,
                addr(1),
            ))),
            from_key: 0,
            messages: vec![],
        },
        BUDGET,
    )
    .unwrap();
    let mut i = 0;
    loop {
        i += 1;
        let m = proto::Message {
            kind: Some(proto::message::Kind::Ack(proto::Ack {
                deltas: vec![proto::NodeDelta {
                    head_version: 0,
                    head_signature: Default::default(),
                    node: Some(to_proto(&NodeId::new(
                        format!("node-{i:05}"),
                        1_700_000_000_000,
                        addr(i),
                    ))),
                    from_version: 0,
                    to_version: 2,
                    last_gc_version: 0,
                    entries: vec![
                        proto::KeyValue {
                            signature: Default::default(),
                            key: "role".into(),
                            value: "worker".into(),
                            version: 1,
                            tombstone: false,
                        },
                        proto::KeyValue {
                            signature: Default::default(),
                            key: "load".into(),
                            value: "0.25".into(),
                            version: 2,
                            tombstone: false,
                        },
                    ],
                }],
                push_id: 0,
            })),
        };
        if packer.push(m).is_err() {
            break;
        }
    }
    let bytes = packer.finish().unwrap();
    let packet = proto::Packet::decode(&bytes[..]).unwrap();
    let limits = Limits::default();
    let mut group = c.benchmark_group("packet");
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("encode", |b| b.iter(|| black_box(&packet).encode_to_vec()));
    group.bench_function("decode", |b| {
        b.iter(|| wire::decode(black_box(&bytes[..]), cluster, &limits).unwrap())
    });
    group.finish();
}

fn memory_per_member(_: &mut Criterion) {
    let t0 = Instant::now();
    for n in [1_000usize, 10_000] {
        let before = LIVE.load(Ordering::Relaxed);
        let mut e = Engine::new(
            config("m"),
            NodeId::new("m", 1, addr(3 << 20)),
            BUDGET,
            3,
            t0,
        )
        .unwrap();
        let empty = LIVE.load(Ordering::Relaxed);
        populate(&mut e, n, t0);
        let full = LIVE.load(Ordering::Relaxed);
        println!(
            "memory: engine with {n} members (one key each) holds {} KiB; {} bytes per member (empty engine {} bytes)",
            (full - before) / 1024,
            (full - empty) / n as isize,
            empty - before
        );
        black_box(&e);
    }
}

criterion_group!(
    benches,
    memory_per_member,
    packet_codec,
    handle_in_sync_syn,
    gossip_round
);
criterion_main!(benches);
