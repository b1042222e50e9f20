//! Phi-accrual failure detection (Hayashibara et al., 2004) applied to
//! probe round-trip times.
//!
//! The detector keeps a window of recent ack round-trip times. For a probe
//! in flight for `t`, `phi(t) = -log10(P(rtt > t))` under a normal
//! distribution fitted to the window. A probe counts as failed once phi
//! crosses `conviction_threshold` (default 8, i.e. a one-in-10⁸ delay), so
//! the timeout follows the network: a few milliseconds on a quiet LAN,
//! hundreds on a jittery WAN. It is clamped to `[probe_timeout / 10,
//! probe_timeout]` and used only once the window holds enough samples.

use std::collections::VecDeque;
use std::time::Duration;

/// Samples kept.
const WINDOW: usize = 128;
/// Samples needed before the adaptive timeout is used.
const MIN_SAMPLES: usize = 8;

/// Probability that a normal variable exceeds its mean by `y` standard
/// deviations (logistic approximation used by Akka and Cassandra).
fn tail(y: f64) -> f64 {
    1.0 / (1.0 + (y * (1.5976 + 0.070566 * y * y)).exp())
}

/// The phi of a delay `y` standard deviations above the mean.
pub(crate) fn phi_of(y: f64) -> f64 {
    -tail(y).max(f64::MIN_POSITIVE).log10()
}

/// The number of standard deviations above the mean at which phi reaches
/// `threshold` (found by bisection; phi grows with y).
pub(crate) fn sigmas_for(threshold: f64) -> f64 {
    let (mut lo, mut hi) = (0.0f64, 64.0f64);
    for _ in 0..100 {
        let mid = (lo + hi) / 2.0;
        if phi_of(mid) < threshold {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi
}

/// Window of round-trip times and the timeout they imply.
#[derive(Debug)]
pub(crate) struct RttDetector {
    samples: VecDeque<f64>,
    sigmas: f64,
}

impl RttDetector {
    pub fn new(conviction_threshold: f64) -> RttDetector {
        RttDetector {
            samples: VecDeque::with_capacity(WINDOW),
            sigmas: sigmas_for(conviction_threshold),
        }
    }

    pub fn record(&mut self, rtt: Duration) {
        if self.samples.len() == WINDOW {
            self.samples.pop_front();
        }
        self.samples.push_back(rtt.as_secs_f64());
    }

    /// The probe timeout: where phi crosses the threshold, clamped to
    /// `[max / 10, max]`; `max` itself until enough samples exist.
    pub fn timeout(&self, max: Duration) -> Duration {
        let Some((mean, std)) = self.mean_std(MIN_SAMPLES, 4.0) else {
            return max;
        };
        // A floor on the deviation: a perfectly steady link must not turn a
        // tiny hiccup into a failure.
        let std = std.max(0.000_5);
        let t = Duration::from_secs_f64((mean + self.sigmas * std).min(max.as_secs_f64()));
        t.clamp(max / 10, max)
    }

    /// The shortest round trip in the window, if any.
    pub fn min(&self) -> Option<Duration> {
        self.samples
            .iter()
            .copied()
            .reduce(f64::min)
            .map(Duration::from_secs_f64)
    }

    /// Mean and deviation of the samples in seconds, the deviation at least
    /// the mean divided by `floor_div`; `None` with fewer than `min`
    /// samples.
    fn mean_std(&self, min: usize, floor_div: f64) -> Option<(f64, f64)> {
        if self.samples.len() < min.max(1) {
            return None;
        }
        let n = self.samples.len() as f64;
        let mean = self.samples.iter().sum::<f64>() / n;
        let var = self.samples.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / n;
        Some((mean, var.sqrt().max(mean / floor_div)))
    }

    /// How long to wait for the answer to a push before sending it again,
    /// as TCP's retransmission timeout is computed (RFC 6298): the mean
    /// round trip plus four deviations (the deviation at least an eighth
    /// of the mean), within `[floor, max]`; `initial` until the first
    /// sample. The floor is what keeps a busy receiver from being sent
    /// copies it has not had time to answer: on loopback a round trip is
    /// tens of microseconds, and a retry wait of a few of them turned
    /// every scheduling hiccup of a loaded node into resends, which loaded
    /// it further. Each resend then doubles the wait (see `push.rs`).
    pub fn retry_after(&self, floor: Duration, initial: Duration, max: Duration) -> Duration {
        let Some((mean, std)) = self.mean_std(1, 8.0) else {
            return initial.clamp(floor.min(max), max);
        };
        let t = Duration::from_secs_f64((mean + 4.0 * std).min(max.as_secs_f64()));
        t.clamp(floor.min(max), max)
    }
}

#[cfg(test)]
mod tests;
