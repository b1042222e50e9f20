//! Lifeguard suspicion: a timeout that starts long and shrinks as
//! independent members confirm the suspicion (Dadgar et al., 2018).
//!
//! `timeout(c) = max(min, max - (max - min) · log(c + 1) / log(k + 1))`
//! where `c` is the number of distinct confirmations so far and `k` the
//! number expected. A lone, possibly mistaken suspector waits `max`; a
//! crash seen by many is declared after `min`.

use std::time::{Duration, Instant};

use super::rumor::name_hash;

#[derive(Debug)]
pub(crate) struct Suspicion {
    pub incarnation: u64,
    started: Instant,
    min: Duration,
    max: Duration,
    expected: u32,
    /// Name hashes of the distinct suspectors, at most `expected + 1`
    /// (every member under heavy loss holds hundreds of suspicions).
    confirmers: Vec<u64>,
}

impl Suspicion {
    pub fn new(
        incarnation: u64,
        from: &str,
        started: Instant,
        min: Duration,
        max: Duration,
        expected: u32,
    ) -> Suspicion {
        Suspicion {
            incarnation,
            started,
            min,
            max: max.max(min),
            expected,
            confirmers: vec![name_hash(from)],
        }
    }

    /// Records a suspector; true if it is a new, independent one.
    pub fn confirm(&mut self, from: &str) -> bool {
        let h = name_hash(from);
        if self.confirmers.len() as u32 > self.expected || self.confirmers.contains(&h) {
            return false;
        }
        self.confirmers.push(h);
        true
    }

    /// When the suspect is to be declared dead.
    pub fn deadline(&self) -> Instant {
        let c = self.confirmers.len().saturating_sub(1) as f64;
        let k = f64::from(self.expected);
        if k < 1.0 {
            return self.started + self.min;
        }
        let frac = ((c + 1.0).ln() / (k + 1.0).ln()).min(1.0);
        let span = self.max.as_secs_f64() - self.min.as_secs_f64();
        let t = (self.max.as_secs_f64() - span * frac).max(self.min.as_secs_f64());
        self.started + Duration::from_secs_f64(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirmations_shrink_the_timeout_to_its_floor() {
        let t0 = Instant::now();
        let (min, max) = (Duration::from_secs(2), Duration::from_secs(12));
        let mut s = Suspicion::new(1, "a", t0, min, max, 3);
        assert_eq!(s.deadline(), t0 + max);
        assert!(s.confirm("b"));
        let one = s.deadline();
        assert!(one < t0 + max && one > t0 + min);
        assert!(
            !s.confirm("b"),
            "the same suspector twice is not independent"
        );
        s.confirm("c");
        s.confirm("d");
        assert_eq!(s.deadline(), t0 + min);
    }
}
