//! The phi-accrual detector.

use super::*;

#[test]
fn phi_grows_with_delay_and_threshold_eight_is_about_five_sigmas() {
    assert!(phi_of(1.0) < phi_of(2.0));
    let s = sigmas_for(8.0);
    assert!((5.0..6.5).contains(&s), "{s}");
    assert!((phi_of(s) - 8.0).abs() < 1e-6);
}

#[test]
fn timeout_adapts_to_jitter_within_bounds() {
    let max = Duration::from_millis(500);
    let mut lan = RttDetector::new(8.0);
    assert_eq!(lan.timeout(max), max, "no samples: the configured timeout");
    for _ in 0..50 {
        lan.record(Duration::from_micros(300));
    }
    assert_eq!(lan.timeout(max), max / 10, "a quiet LAN hits the floor");

    let mut wan = RttDetector::new(8.0);
    for i in 0..50 {
        wan.record(Duration::from_millis(if i % 2 == 0 { 20 } else { 80 }));
    }
    let t = wan.timeout(max);
    assert!(t > Duration::from_millis(150) && t <= max, "{t:?}");
}

#[test]
fn a_push_waits_a_round_trip_and_four_deviations_within_its_floor_and_cap() {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let (floor, initial, max) = (
        Duration::from_millis(5),
        Duration::from_millis(50),
        Duration::from_millis(500),
    );
    let mut d = RttDetector::new(8.0);
    assert_eq!(d.retry_after(floor, initial, max), initial, "no sample yet");
    d.record(Duration::from_millis(8));
    // No deviation measured: it is floored at an eighth of the mean, so
    // the wait is 8 + 4 x 1 ms.
    assert!((ms(d.retry_after(floor, initial, max)) - 12.0).abs() < 1e-6);
    // A jittery link waits four measured deviations past the mean.
    for _ in 0..3 {
        d.record(Duration::from_millis(8));
    }
    for _ in 0..4 {
        d.record(Duration::from_millis(16));
    }
    assert!((ms(d.retry_after(floor, initial, max)) - 28.0).abs() < 1e-6);
    // Loopback round trips of 100 us: the floor, not 150 us.
    let mut fast = RttDetector::new(8.0);
    fast.record(Duration::from_micros(100));
    assert_eq!(fast.retry_after(floor, initial, max), floor);
    // A slow peer: the cap.
    let mut slow = RttDetector::new(8.0);
    slow.record(Duration::from_secs(1));
    assert_eq!(slow.retry_after(floor, initial, max), max);
}
