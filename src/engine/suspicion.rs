//! Lifeguard suspicion: a timeout that starts long and shrinks as
//! independent members confirm the suspicion (Dadgar et al., 2018).
//!
//! `timeout(c) = max(min, max - (max - min) · log(c + 1) / log(k + 1))`
//! where `c` is the number of distinct confirmations so far and `k` the
//! number expected. A lone, possibly mistaken suspector waits `max`; a
//! crash seen by many is declared after `min`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::msg::name_hash;

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
    /// When the suspect is to be declared dead; moves only on a
    /// confirmation.
    deadline: Instant,
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
        let mut s = Suspicion {
            incarnation,
            started,
            min,
            max: max.max(min),
            expected,
            confirmers: vec![name_hash(from)],
            deadline: started,
        };
        s.deadline = s.compute_deadline();
        s
    }

    /// When this node started suspecting.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Records a suspector; true if it is a new, independent one.
    pub fn confirm(&mut self, from: &str) -> bool {
        let h = name_hash(from);
        if self.confirmers.len() as u32 > self.expected || self.confirmers.contains(&h) {
            return false;
        }
        self.confirmers.push(h);
        self.deadline = self.compute_deadline();
        true
    }

    /// When the suspect is to be declared dead, from its confirmations.
    fn compute_deadline(&self) -> Instant {
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

/// The open suspicions, by member key, with their deadlines in order:
/// under heavy loss a node of a large cluster holds hundreds, and the
/// engine asks for the earliest after every datagram.
#[derive(Debug, Default)]
pub(crate) struct Suspicions {
    by_key: BTreeMap<u64, Suspicion>,
    /// (deadline, key) of every entry of `by_key`.
    timers: BTreeSet<(Instant, u64)>,
}

impl Suspicions {
    /// Opens (or replaces) the suspicion of member `key`; returns the one
    /// it replaced.
    pub fn insert(&mut self, key: u64, s: Suspicion) -> Option<Suspicion> {
        let deadline = s.deadline;
        let old = self.by_key.insert(key, s);
        if let Some(old) = &old {
            self.timers.remove(&(old.deadline, key));
        }
        self.timers.insert((deadline, key));
        old
    }

    pub fn remove(&mut self, key: u64) -> Option<Suspicion> {
        let s = self.by_key.remove(&key)?;
        self.timers.remove(&(s.deadline, key));
        Some(s)
    }

    /// Counts `from`'s suspicion of `key`; true if it is a new,
    /// independent confirmation.
    pub fn confirm(&mut self, key: u64, from: &str) -> bool {
        let Some(s) = self.by_key.get_mut(&key) else {
            return false;
        };
        let before = s.deadline;
        if !s.confirm(from) {
            return false;
        }
        if s.deadline != before {
            self.timers.remove(&(before, key));
            self.timers.insert((s.deadline, key));
        }
        true
    }

    /// The earliest deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.first().map(|&(t, _)| t)
    }

    /// Closes every suspicion due at `now`; returns each with its member's
    /// key, by key.
    pub fn take_due(&mut self, now: Instant) -> Vec<(u64, Suspicion)> {
        let mut due = Vec::new();
        while let Some(&(t, key)) = self.timers.first() {
            if t > now {
                break;
            }
            self.timers.pop_first();
            if let Some(s) = self.by_key.remove(&key) {
                due.push((key, s));
            }
        }
        due.sort_unstable_by_key(|d| d.0);
        due
    }

    pub fn clear(&mut self) {
        self.by_key.clear();
        self.timers.clear();
    }
}

#[cfg(test)]
mod tests;
