//! Cost of signed state on one core.
//!
//! * `identity/sign_entry`: signing one entry (an 8-byte key, a 16-byte
//!   value) as its owner does on every write, message building included.
//! * `identity/verify_entry`: checking that signature as every receiver
//!   does once per new entry.
//! * `identity/admit_certificate`: checking a published identity against
//!   the cluster CA (chain, validity, name), once per member generation.
//!
//! ```text
//! cargo bench --bench identity -- --warm-up-time 1 --measurement-time 3
//! ```

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use scuttlewire::identity::{CaTrust, Identity, PublicKey, Trust, entry_message};

fn identity(c: &mut Criterion) {
    let id = Identity::load(
        "certs/node-1.id.key".as_ref(),
        Some("certs/node-1.id.pem".as_ref()),
    )
    .expect("the development identity");
    let public = PublicKey::from_bytes(id.public_key());
    let msg = |v: u64| {
        entry_message(
            0x5ca1_ab1e,
            "node-1",
            1,
            "role/key",
            b"0123456789abcdef",
            v,
            false,
        )
    };
    let mut group = c.benchmark_group("identity");
    group.bench_function("sign_entry", |b| {
        let mut v = 0;
        b.iter(|| {
            v += 1;
            black_box(id.sign(&msg(v)))
        })
    });
    let m = msg(7);
    let sig = id.sign(&m);
    group.bench_function("verify_entry", |b| {
        b.iter(|| assert!(public.verify(black_box(&m), black_box(&sig))))
    });
    let trust = CaTrust::load("certs/ca.pem".as_ref()).expect("the development CA");
    let published = id.published();
    group.bench_function("admit_certificate", |b| {
        b.iter(|| black_box(trust.admit("node-1", &published).expect("trusted")))
    });
    group.finish();
}

criterion_group!(benches, identity);
criterion_main!(benches);
