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
fn a_push_is_resent_a_quarter_round_trip_late_on_a_steady_link() {
    let max = Duration::from_millis(50);
    let mut d = RttDetector::new(8.0);
    assert_eq!(d.retry_after(max), max, "no sample: the fallback");
    d.record(Duration::from_millis(8));
    // No deviation measured: it is floored at an eighth of the mean.
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    assert!((ms(d.retry_after(max)) - 10.0).abs() < 1e-6);
    // A jittery link waits two measured deviations past the mean.
    for _ in 0..3 {
        d.record(Duration::from_millis(8));
    }
    for _ in 0..4 {
        d.record(Duration::from_millis(16));
    }
    assert!((ms(d.retry_after(max)) - 20.0).abs() < 1e-6);
    // Never below a millisecond, never above the fallback.
    let mut fast = RttDetector::new(8.0);
    fast.record(Duration::from_micros(100));
    assert_eq!(fast.retry_after(max), Duration::from_millis(1));
    let mut slow = RttDetector::new(8.0);
    slow.record(Duration::from_secs(1));
    assert_eq!(slow.retry_after(max), max);
}
