//! User broadcasts: a short payload delivered once to every healthy
//! member, spread as a rumor on gossip and probe packets (Smudge's
//! broadcasts), deduplicated by (origin, id).

use std::collections::{HashSet, VecDeque};

use bytes::Bytes;

use super::msg::message;
use super::rumor::Subject;
use crate::wire::field_len;
use crate::wire::proto::{self, message::Kind};

/// Broadcast ids remembered per node for deduplication.
const SEEN_BROADCASTS: usize = 8192;

/// The broadcasts this node sent and has seen.
#[derive(Debug, Default)]
pub(super) struct Broadcasts {
    /// Id of our next broadcast.
    next_id: u64,
    /// (origin, id) of the last [`SEEN_BROADCASTS`] broadcasts, in a set
    /// for lookups and in arrival order for forgetting.
    seen: HashSet<(String, u64)>,
    order: VecDeque<(String, u64)>,
}

/// A broadcast to spread as a rumor.
pub(super) struct Outgoing {
    pub subject: Subject,
    pub msg: proto::Message,
}

impl Broadcasts {
    /// Our next broadcast of `payload` as `origin`: its id and the rumor,
    /// or, if its message is larger than `max` bytes encoded, that size.
    pub fn originate(
        &mut self,
        origin: &str,
        payload: Bytes,
        max: usize,
    ) -> Result<(u64, Outgoing), usize> {
        let id = self.next_id;
        let msg = message(Kind::Broadcast(proto::Broadcast {
            origin: origin.to_owned(),
            id,
            payload,
        }));
        let len = field_len(prost::Message::encoded_len(&msg));
        if len > max {
            return Err(len);
        }
        self.next_id += 1;
        self.remember(origin.to_owned(), id);
        let subject = Subject::broadcast(origin, id);
        Ok((id, Outgoing { subject, msg }))
    }

    /// A broadcast from the network: the rumor to pass on, or `None` if it
    /// is ours or was seen already (then it is not delivered again).
    pub fn receive(&mut self, me: &str, b: proto::Broadcast) -> Option<Outgoing> {
        if b.origin == me || !self.remember(b.origin.clone(), b.id) {
            return None;
        }
        let subject = Subject::broadcast(&b.origin, b.id);
        Some(Outgoing {
            subject,
            msg: message(Kind::Broadcast(b)),
        })
    }

    fn remember(&mut self, origin: String, id: u64) -> bool {
        let key = (origin, id);
        if !self.seen.insert(key.clone()) {
            return false;
        }
        self.order.push_back(key);
        if self.order.len() > SEEN_BROADCASTS {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        true
    }
}
