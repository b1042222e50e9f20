//! The event stream handed out by [`crate::Node::events`].

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use crate::Event;

/// A stream of the engine's [`Event`]s, as `Result<Event, Lagged>`. Each
/// subscriber gets every event from the moment it subscribed; one that falls
/// too far behind (see
/// [`NodeBuilder::event_capacity`](crate::NodeBuilder::event_capacity)) gets
/// one `Err(Lagged)` in place of what it missed, and the stream goes on
/// with the oldest event still held. Ends when the node shuts down.
///
/// This is how tokio's `broadcast::Receiver::recv` and `tokio_stream`'s
/// `BroadcastStream` report lag. A lag is not the end of the stream: a loop
/// written `while let Some(Ok(event))` would stop at the first lag, so match
/// the `Err` instead.
///
/// ```no_run
/// # async fn demo(node: scuttlewire::Node) {
/// use scuttlewire::Event;
/// use scuttlewire::node::Lagged;
///
/// let mut events = node.events();
/// while let Some(item) = events.next().await {
///     match item {
///         Ok(Event::MemberJoined(id)) => println!("{id} joined"),
///         Ok(_) => {}
///         // Some events are lost: re-read what matters.
///         Err(Lagged { missed }) => println!("missed {missed} events"),
///     }
/// }
/// # }
/// ```
pub struct EventStream {
    inner: BroadcastStream<Event>,
}

/// The subscriber fell behind and `missed` events were dropped for it. The
/// stream goes on after it; re-read what you need with
/// [`Node::members`](crate::Node::members) and [`Node::get`](crate::Node::get).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the event stream fell behind and missed {missed} events")]
pub struct Lagged {
    /// How many events were skipped.
    pub missed: u64,
}

impl EventStream {
    pub(crate) fn new(rx: broadcast::Receiver<Event>) -> EventStream {
        EventStream {
            inner: BroadcastStream::new(rx),
        }
    }

    /// The next event, `Err(Lagged)` if some were missed just before it,
    /// or `None` once the node has shut down.
    pub async fn next(&mut self) -> Option<Result<Event, Lagged>> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }
}

impl Stream for EventStream {
    type Item = Result<Event, Lagged>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.inner).poll_next(cx).map(|item| {
            item.map(|r| r.map_err(|BroadcastStreamRecvError::Lagged(missed)| Lagged { missed }))
        })
    }
}
