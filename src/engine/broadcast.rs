//! User broadcasts: a short payload delivered once to every healthy
//! member, spread as a rumor on gossip and probe packets (Smudge's
//! broadcasts), deduplicated by (origin, id).

use bytes::Bytes;

use super::rumor::Subject;
use super::{BroadcastError, Engine, Event};
use crate::wire::proto::{self, message::Kind};

/// Broadcast ids remembered per node for deduplication.
const SEEN_BROADCASTS: usize = 8192;

impl Engine {
    /// Sends `payload` to every healthy member, each delivering it once as
    /// [`Event::Broadcast`]. It rides on gossip and probe packets.
    pub fn broadcast(&mut self, payload: impl Into<Bytes>) -> Result<u64, BroadcastError> {
        let payload = payload.into();
        let id = self.swim.broadcast_seq;
        let msg = proto::Message {
            kind: Some(Kind::Broadcast(proto::Broadcast {
                origin: self.me.name.clone(),
                id,
                payload,
            })),
        };
        let len = crate::wire::field_len(prost::Message::encoded_len(&msg));
        let max = self.outbox.max_entry();
        if len > max {
            return Err(BroadcastError::TooLarge { len, max });
        }
        self.swim.broadcast_seq += 1;
        self.remember_broadcast(self.me.name.clone(), id);
        self.swim
            .rumors
            .push_broadcast(Subject::broadcast(&self.me.name, id), &msg);
        Ok(id)
    }

    fn remember_broadcast(&mut self, origin: String, id: u64) -> bool {
        let key = (origin, id);
        if !self.swim.seen.insert(key.clone()) {
            return false;
        }
        self.swim.seen_order.push_back(key);
        if self.swim.seen_order.len() > SEEN_BROADCASTS {
            if let Some(old) = self.swim.seen_order.pop_front() {
                self.swim.seen.remove(&old);
            }
        }
        true
    }

    pub(super) fn on_broadcast(&mut self, b: proto::Broadcast) {
        if b.origin == self.me.name || !self.remember_broadcast(b.origin.clone(), b.id) {
            return;
        }
        self.events.push_back(Event::Broadcast {
            origin: b.origin.clone(),
            payload: b.payload.clone(),
        });
        let subject = Subject::broadcast(&b.origin, b.id);
        let msg = proto::Message {
            kind: Some(Kind::Broadcast(b)),
        };
        self.swim.rumors.push_broadcast(subject, &msg);
    }
}
