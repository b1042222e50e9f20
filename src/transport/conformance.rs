//! A conformance suite for [`Transport`] implementations.
//!
//! Every transport in this crate runs it, and so can yours: call
//! [`run_all`] from a test with a closure that makes a fresh transport bound
//! on loopback, or call the checks one by one. The checks assume a loopback
//! path, where nothing is lost or reordered in small bursts; each one panics
//! with a message naming the check and what went wrong, and every wait is
//! bounded so a broken transport fails instead of hanging. Run them on a
//! runtime with real time (not `start_paused`), since real sockets do not
//! follow a paused clock.
//!
//! ```ignore
//! #[tokio::test]
//! async fn udp_conforms() {
//!     scuttlewire::transport::conformance::run_all(|| async {
//!         Udp::bind("127.0.0.1:0".parse().unwrap()).await.unwrap()
//!     })
//!     .await;
//! }
//! ```

// The suite waits on real sockets, so it reads the clock for its deadlines.
#![allow(clippy::disallowed_methods)]

use std::collections::HashSet;
use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::timeout;

use super::{Transport, TransportError};

/// How long a check waits for a datagram that should arrive.
const PATIENCE: Duration = Duration::from_secs(5);

/// Runs every check, each on fresh transports from `make`.
pub async fn run_all<T, F, Fut>(mut make: F)
where
    T: Transport,
    F: FnMut() -> Fut,
    Fut: Future<Output = T>,
{
    round_trip(&make().await, &make().await).await;
    datagram_boundaries(&make().await, &make().await).await;
    max_payload_is_delivered(&make().await, &make().await).await;
    oversized_payload_is_refused(&make().await, &make().await).await;
    empty_payload(&make().await, &make().await).await;
    recv_is_cancellation_safe(&make().await, &make().await).await;
    many_datagrams_from_two_senders(&make().await, &make().await, &make().await).await;
    let gone = make().await.local_addr();
    send_to_unbound_peer(&make().await, &make().await, gone).await;
}

/// Receives one datagram within [`PATIENCE`], panicking otherwise.
async fn recv_one<T: Transport>(t: &T, check: &str) -> (SocketAddr, Bytes) {
    match timeout(PATIENCE, t.recv()).await {
        Ok(Ok(got)) => got,
        Ok(Err(e)) => panic!("{check}: recv on {} failed: {e}", t.local_addr()),
        Err(_) => panic!(
            "{check}: nothing arrived at {} within {PATIENCE:?}",
            t.local_addr()
        ),
    }
}

async fn send_ok<T: Transport>(t: &T, to: SocketAddr, payload: Bytes, check: &str) {
    let len = payload.len();
    if let Err(e) = t.send(to, payload).await {
        panic!(
            "{check}: send of {len} bytes from {} to {to} failed: {e}",
            t.local_addr()
        );
    }
}

/// Whether `from` is where `sender` can be reached. A transport bound on a
/// wildcard address reports that address, so only the port can match.
fn same_peer(from: SocketAddr, sender: SocketAddr) -> bool {
    if sender.ip().is_unspecified() {
        from.port() == sender.port()
    } else {
        from == sender
    }
}

fn pattern(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Sends `marker` from `a` to `b` and checks it is the next thing `b`
/// receives: proof that nothing else arrived before it.
async fn expect_only_marker<T: Transport>(a: &T, b: &T, check: &str) {
    let marker = Bytes::from_static(b"conformance marker");
    send_ok(a, b.local_addr(), marker.clone(), check).await;
    let (_, got) = recv_one(b, check).await;
    assert!(
        got == marker,
        "{check}: expected only the marker, but a {}-byte datagram arrived first",
        got.len()
    );
}

/// One datagram arrives with its exact bytes and a source address that
/// reaches the sender when replied to.
pub async fn round_trip<T: Transport>(a: &T, b: &T) {
    const CHECK: &str = "round_trip";
    let ping = pattern(100.min(a.max_payload()), 1);
    send_ok(a, b.local_addr(), ping.clone(), CHECK).await;
    let (from, got) = recv_one(b, CHECK).await;
    assert!(got == ping, "{CHECK}: bytes changed in transit");
    assert!(
        same_peer(from, a.local_addr()),
        "{CHECK}: source {from} is not the sender's address {}",
        a.local_addr()
    );
    let pong = pattern(50.min(b.max_payload()), 2);
    send_ok(b, from, pong.clone(), CHECK).await;
    let (back_from, back) = recv_one(a, CHECK).await;
    assert!(back == pong, "{CHECK}: reply bytes changed in transit");
    assert!(
        same_peer(back_from, b.local_addr()),
        "{CHECK}: reply source {back_from} is not {}",
        b.local_addr()
    );
}

/// Three datagrams of different sizes arrive as three datagrams with the
/// same bytes: no merging, splitting or truncation. Order is not checked.
pub async fn datagram_boundaries<T: Transport>(a: &T, b: &T) {
    const CHECK: &str = "datagram_boundaries";
    let max = a.max_payload();
    let mut sent: Vec<Bytes> = [1, max / 2, max]
        .iter()
        .zip(10..)
        .map(|(&len, seed)| pattern(len, seed))
        .collect();
    for payload in &sent {
        send_ok(a, b.local_addr(), payload.clone(), CHECK).await;
    }
    let mut got = Vec::new();
    for _ in 0..sent.len() {
        got.push(recv_one(b, CHECK).await.1);
    }
    sent.sort();
    got.sort();
    let lens = |v: &[Bytes]| v.iter().map(Bytes::len).collect::<Vec<_>>();
    assert!(
        got == sent,
        "{CHECK}: sent datagrams of {:?} bytes, received {:?} bytes (or different contents)",
        lens(&sent),
        lens(&got)
    );
}

/// A payload of exactly `max_payload()` bytes is accepted and delivered.
pub async fn max_payload_is_delivered<T: Transport>(a: &T, b: &T) {
    const CHECK: &str = "max_payload_is_delivered";
    let payload = pattern(a.max_payload(), 3);
    send_ok(a, b.local_addr(), payload.clone(), CHECK).await;
    let (_, got) = recv_one(b, CHECK).await;
    assert!(
        got == payload,
        "{CHECK}: sent {} bytes, received {} (or different contents)",
        payload.len(),
        got.len()
    );
}

/// A payload of `max_payload() + 1` bytes is refused with
/// [`TransportError::TooLarge`] and nothing arrives.
pub async fn oversized_payload_is_refused<T: Transport>(a: &T, b: &T) {
    const CHECK: &str = "oversized_payload_is_refused";
    let limit = a.max_payload();
    match a.send(b.local_addr(), pattern(limit + 1, 4)).await {
        Err(TransportError::TooLarge { len, max }) => {
            assert_eq!(len, limit + 1, "{CHECK}: TooLarge reports the wrong length");
            assert!(
                max <= limit,
                "{CHECK}: TooLarge reports a limit of {max}, above max_payload {limit}"
            );
        }
        Err(e) => panic!("{CHECK}: expected TooLarge, got {e}"),
        Ok(()) => panic!(
            "{CHECK}: a payload of max_payload + 1 = {} was accepted",
            limit + 1
        ),
    }
    expect_only_marker(a, b, CHECK).await;
}

/// An empty payload is either delivered as an empty datagram, or refused
/// with a transient error and not delivered. `Udp` and `Memory` deliver it,
/// as UDP does; the engine never sends empty packets, so a transport that
/// cannot frame them may refuse them.
pub async fn empty_payload<T: Transport>(a: &T, b: &T) {
    const CHECK: &str = "empty_payload";
    match a.send(b.local_addr(), Bytes::new()).await {
        Ok(()) => {
            let (from, got) = recv_one(b, CHECK).await;
            assert!(
                got.is_empty(),
                "{CHECK}: sent an empty datagram, received {} bytes",
                got.len()
            );
            assert!(
                same_peer(from, a.local_addr()),
                "{CHECK}: wrong source {from}"
            );
        }
        Err(e) => {
            assert!(
                e.is_transient(),
                "{CHECK}: refusal must be transient, got {e}"
            );
            expect_only_marker(a, b, CHECK).await;
        }
    }
}

/// Dropping a pending `recv` loses nothing: neither a `recv` cancelled by a
/// timeout before the datagram was sent, nor one polled once and dropped
/// while datagrams are waiting.
pub async fn recv_is_cancellation_safe<T: Transport>(a: &T, b: &T) {
    const CHECK: &str = "recv_is_cancellation_safe";
    if let Ok(got) = timeout(Duration::from_millis(50), b.recv()).await {
        panic!("{CHECK}: recv returned {got:?} before anything was sent");
    }
    let first = pattern(64.min(a.max_payload()), 5);
    send_ok(a, b.local_addr(), first.clone(), CHECK).await;
    let (_, got) = recv_one(b, CHECK).await;
    assert!(
        got == first,
        "{CHECK}: datagram lost or changed after a cancelled recv"
    );

    // Poll each recv future once and drop it whether or not it finished.
    let sent: Vec<Bytes> = (0..20).map(|i| Bytes::from(vec![i; 8])).collect();
    for payload in &sent {
        send_ok(a, b.local_addr(), payload.clone(), CHECK).await;
    }
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while got.len() < sent.len() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{CHECK}: only {} of {} datagrams arrived while recv was being cancelled",
            got.len(),
            sent.len()
        );
        let polled = {
            let mut fut = pin!(b.recv());
            poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await
        };
        match polled {
            Poll::Ready(Ok((_, bytes))) => got.push(bytes),
            Poll::Ready(Err(e)) => panic!("{CHECK}: recv failed: {e}"),
            Poll::Pending => tokio::time::sleep(Duration::from_millis(1)).await,
        }
    }
    got.sort();
    assert!(
        got == sent,
        "{CHECK}: datagrams lost, duplicated or changed"
    );
}

/// 200 datagrams from two senders all arrive at one receiver, each with its
/// sender's address. Sent in rounds of 50 so a default socket buffer holds
/// a whole round.
pub async fn many_datagrams_from_two_senders<T: Transport>(rx: &T, s1: &T, s2: &T) {
    const CHECK: &str = "many_datagrams_from_two_senders";
    const PER_SENDER: u16 = 100;
    const ROUND: u16 = 25;
    let senders = [s1, s2];
    for start in (0..PER_SENDER).step_by(usize::from(ROUND)) {
        let mut missing = HashSet::new();
        for seq in start..start + ROUND {
            for (id, s) in (0u8..).zip(senders) {
                let mut payload = vec![id];
                payload.extend_from_slice(&seq.to_be_bytes());
                payload.resize(64.min(s.max_payload()).max(3), 0);
                send_ok(s, rx.local_addr(), payload.into(), CHECK).await;
                missing.insert((id, seq));
            }
        }
        while !missing.is_empty() {
            let Ok(got) = timeout(PATIENCE, rx.recv()).await else {
                panic!(
                    "{CHECK}: {} datagrams of seq {start}..{} never arrived",
                    missing.len(),
                    start + ROUND
                );
            };
            let (from, bytes) = got.unwrap_or_else(|e| panic!("{CHECK}: recv failed: {e}"));
            let Some(&[id, hi, lo]) = bytes.first_chunk::<3>() else {
                panic!(
                    "{CHECK}: a {}-byte datagram that was never sent",
                    bytes.len()
                );
            };
            let sender = senders.get(usize::from(id)).map(|s| s.local_addr());
            assert!(
                sender.is_some_and(|s| same_peer(from, s)),
                "{CHECK}: datagram claiming sender {id} came from {from}"
            );
            missing.remove(&(id, u16::from_be_bytes([hi, lo])));
        }
    }
}

/// Sending to an address where nothing listens returns `Ok` or a transient
/// error, and afterwards the transport still sends and receives (a stray
/// ICMP "port unreachable" may surface as one transient error on either).
pub async fn send_to_unbound_peer<T: Transport>(a: &T, b: &T, gone: SocketAddr) {
    const CHECK: &str = "send_to_unbound_peer";
    for _ in 0..3 {
        if let Err(e) = a.send(gone, Bytes::from_static(b"anyone?")).await {
            assert!(
                e.is_transient(),
                "{CHECK}: send to unbound {gone} must be Ok or transient, got {e}"
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let hello = Bytes::from_static(b"still working");
    let mut attempts = 0;
    while let Err(e) = a.send(b.local_addr(), hello.clone()).await {
        attempts += 1;
        assert!(
            e.is_transient() && attempts < 3,
            "{CHECK}: send keeps failing after a send to an unbound peer: {e}"
        );
    }
    let (_, got) = recv_one(b, CHECK).await;
    assert!(got == hello, "{CHECK}: wrong datagram after unbound send");
    send_ok(b, a.local_addr(), hello.clone(), CHECK).await;
    for attempt in 1.. {
        match timeout(PATIENCE, a.recv()).await {
            Ok(Ok((_, got))) if got == hello => break,
            Ok(Ok(_)) => panic!("{CHECK}: unexpected datagram at {}", a.local_addr()),
            Ok(Err(e)) if e.is_transient() && attempt < 3 => continue,
            Ok(Err(e)) => panic!("{CHECK}: recv keeps failing after an unbound send: {e}"),
            Err(_) => panic!("{CHECK}: reply never arrived at {}", a.local_addr()),
        }
    }
}
