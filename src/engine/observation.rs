//! Observations: durations the engine measures in passing — a probe's
//! round trip, how long a suspicion lasted, how long a tree push waited
//! for its acknowledgement — handed to the owner one sample at a time.
//!
//! Counters fit in [`Metrics`](super::Metrics); a distribution does not,
//! so each sample is queued once and the owner drains the queue with
//! [`Engine::poll_observation`](super::Engine::poll_observation) (the node driver turns them into
//! histograms). Every duration is a difference of the `now`s the engine
//! was given: no clock is read here.
//!
//! Recording is off until
//! [`Engine::set_observing`](super::Engine::set_observing) turns it on, so an
//! owner that never drains (the simulator, with thousands of engines)
//! pays nothing. While on, the queue holds at most [`OBSERVATION_CAP`]
//! samples; past that the oldest is dropped.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::suspicion::Suspicion;

/// Samples kept while nobody drains them; the oldest goes first. A driver
/// that drains after every input holds a handful at most.
pub const OBSERVATION_CAP: usize = 4096;

/// One measurement, from [`Engine::poll_observation`](super::Engine::poll_observation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observation {
    /// A direct probe was answered by its target: ping sent to ack
    /// received (an ack relayed by another member is not a sample).
    ProbeRtt(Duration),
    /// A suspicion this node held ended.
    SuspicionEnded {
        /// From the suspicion's start here to its end.
        after: Duration,
        /// How it ended.
        outcome: SuspicionOutcome,
    },
    /// A tree push was acknowledged: from its first send to the
    /// `PushAck`, retries included.
    PushAcked(Duration),
}

/// How a suspicion ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SuspicionOutcome {
    /// The suspect was heard alive at a higher incarnation (it refuted,
    /// or was suspected again at a newer incarnation).
    Refuted,
    /// The suspect was declared dead (here, or by a rumor).
    Dead,
    /// The suspect left gracefully.
    Left,
}

/// The queue behind [`Engine::poll_observation`](super::Engine::poll_observation).
#[derive(Debug, Default)]
pub(super) struct Observations {
    on: bool,
    queue: VecDeque<Observation>,
}

impl Observations {
    /// Turns recording on or off; turning it off discards what is queued.
    pub fn set_on(&mut self, on: bool) {
        self.on = on;
        if !on {
            self.queue = VecDeque::new();
        }
    }

    /// The oldest queued sample.
    pub fn poll(&mut self) -> Option<Observation> {
        self.queue.pop_front()
    }

    /// Queues `o` if recording is on, dropping the oldest past the cap.
    pub fn record(&mut self, o: Observation) {
        if !self.on {
            return;
        }
        if self.queue.len() >= OBSERVATION_CAP {
            self.queue.pop_front();
        }
        self.queue.push_back(o);
    }
}

impl Observation {
    /// The end of suspicion `s` at `now`.
    pub(super) fn suspicion_ended(
        now: Instant,
        s: &Suspicion,
        outcome: SuspicionOutcome,
    ) -> Observation {
        let after = now.saturating_duration_since(s.started());
        Observation::SuspicionEnded { after, outcome }
    }
}

#[cfg(test)]
mod tests;
