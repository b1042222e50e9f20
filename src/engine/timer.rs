//! The timer table: every deadline the engine keeps, one slot per kind of
//! timer, so [`Engine::poll_timeout`](super::Engine::poll_timeout) is one
//! look over a handful of slots and never a scan of members, relays or
//! pushes. The rooms that own a timer's state keep their own queues
//! ordered by deadline and report their earliest one here after every
//! input; the engine re-arms the table at the end of each call.
//!
//! [`Every`] is the one rate limit of the crate's warnings (the engine's
//! overload warning, the driver's).

use std::time::{Duration, Instant};

/// At most one occasion per period: `due` says yes, then no until the
/// period has passed since.
#[derive(Debug, Default)]
pub(crate) struct Every(Option<Instant>);

impl Every {
    /// Whether an occasion at `now` is due, at most one per `period`.
    pub fn due(&mut self, now: Instant, period: Duration) -> bool {
        if self
            .0
            .is_some_and(|t| now.saturating_duration_since(t) < period)
        {
            return false;
        }
        self.0 = Some(now);
        true
    }
}

/// A kind of timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Timer {
    /// The next gossip round.
    Gossip,
    /// The next tombstone collection.
    Gc,
    /// The next reconnect attempt (partitions heal).
    Reconnect,
    /// The next probe round.
    Probe,
    /// The current probe's direct timeout (then ping-req).
    ProbeTimeout,
    /// The earliest nack or expiry of a ping-req we relay.
    Relay,
    /// The earliest suspicion timeout.
    Suspicion,
    /// The earliest retry of a member held dead.
    DeadRetry,
    /// The end of the push batching delay.
    Push,
    /// The earliest resend of an unacknowledged tree push.
    PushRetry,
    /// The earliest pull of an announced version the tree did not bring.
    Pull,
}

const TIMERS: usize = 11;

impl Timer {
    fn slot(self) -> usize {
        self as usize
    }
}

/// The deadline of each [`Timer`], if armed.
#[derive(Debug, Clone, Default)]
pub(super) struct TimerTable {
    at: [Option<Instant>; TIMERS],
}

impl TimerTable {
    /// Arms `timer` for `at`, or stops it with `None`.
    pub fn set(&mut self, timer: Timer, at: Option<Instant>) {
        self.at[timer.slot()] = at;
    }

    /// The deadline of `timer`, if armed.
    pub fn get(&self, timer: Timer) -> Option<Instant> {
        self.at[timer.slot()]
    }

    /// Whether `timer` is armed and due at `now`.
    pub fn is_due(&self, timer: Timer, now: Instant) -> bool {
        self.get(timer).is_some_and(|t| now >= t)
    }

    /// The earliest armed deadline.
    pub fn next(&self) -> Option<Instant> {
        self.at.iter().flatten().min().copied()
    }
}

#[cfg(test)]
mod tests;
