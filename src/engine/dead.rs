//! Members held dead or left, until their `dead_retention` ends and they
//! are removed: when each went down, and, for the dead (not those that
//! left), when it is next told so, with a doubling backoff — a member that
//! was only cut off refutes as soon as it hears it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

#[derive(Debug)]
struct Dead {
    since: Instant,
    /// `None` for members that left: they are not retried.
    next_retry: Option<Instant>,
    backoff: Duration,
}

/// The table, by member key, with its retries and ages in order.
#[derive(Debug, Default)]
pub(super) struct DeadMembers {
    by_key: BTreeMap<u64, Dead>,
    /// (next retry, key) of every entry that has one.
    retries: BTreeSet<(Instant, u64)>,
    /// (since, key) of every entry.
    ages: BTreeSet<(Instant, u64)>,
}

/// What is due in the table at some instant.
#[derive(Debug, Default)]
pub(super) struct DeadDue {
    /// Members to tell again that they are held dead, by key.
    pub retry: Vec<u64>,
    /// Members whose retention ended, taken out of the table, by key.
    pub remove: Vec<u64>,
}

impl DeadMembers {
    /// Holds member `key` down since `now`; `retry_after` is the wait
    /// before it is first told so (`None`: it left, never retried).
    /// Replaces an older entry.
    pub fn insert(&mut self, key: u64, now: Instant, retry_after: Option<Duration>) {
        self.remove(key);
        let d = Dead {
            since: now,
            next_retry: retry_after.map(|w| now + w),
            backoff: retry_after.unwrap_or_default(),
        };
        if let Some(t) = d.next_retry {
            self.retries.insert((t, key));
        }
        self.ages.insert((now, key));
        self.by_key.insert(key, d);
    }

    /// Forgets member `key` (it is alive again, or removed).
    pub fn remove(&mut self, key: u64) {
        if let Some(d) = self.by_key.remove(&key) {
            if let Some(t) = d.next_retry {
                self.retries.remove(&(t, key));
            }
            self.ages.remove(&(d.since, key));
        }
    }

    /// Forgets everything (the node is leaving).
    pub fn clear(&mut self) {
        *self = DeadMembers::default();
    }

    /// The earliest retry.
    pub fn next_retry(&self) -> Option<Instant> {
        self.retries.first().map(|&(t, _)| t)
    }

    /// What is due at `now`: members down for `retention` or longer are
    /// taken out to be removed; the others whose retry is due are
    /// rescheduled after twice their last wait and listed to be told.
    pub fn due(&mut self, now: Instant, retention: Duration) -> DeadDue {
        let mut due = DeadDue::default();
        while let Some(&(since, key)) = self.ages.first() {
            if now < since + retention {
                break;
            }
            // Popped first, so the loop ends whatever `remove` finds.
            self.ages.pop_first();
            due.remove.push(key);
            self.remove(key);
        }
        while let Some(&(t, key)) = self.retries.first() {
            if now < t {
                break;
            }
            self.retries.pop_first();
            if let Some(d) = self.by_key.get_mut(&key) {
                d.backoff *= 2;
                let next = now + d.backoff;
                d.next_retry = Some(next);
                due.retry.push(key);
            }
        }
        for key in &due.retry {
            if let Some(t) = self.by_key.get(key).and_then(|d| d.next_retry) {
                self.retries.insert((t, *key));
            }
        }
        due.retry.sort_unstable();
        due.remove.sort_unstable();
        due
    }

    /// Members held dead (not left) for less than `timeout`: the ones to
    /// try to reconnect, by key.
    pub fn to_reconnect(&self, now: Instant, timeout: Duration) -> Vec<u64> {
        self.by_key
            .iter()
            .filter(|(_, d)| {
                d.next_retry.is_some() && now.saturating_duration_since(d.since) < timeout
            })
            .map(|(k, _)| *k)
            .collect()
    }
}

#[cfg(test)]
mod tests;
