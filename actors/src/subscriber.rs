//! A subscriber's bounded outbound queue: what the event bus and the room hub push into, and
//! what a WebSocket connection, an SSE stream or a webhook dispatcher drains.
//!
//! Pushing never waits ([`SubscriberQueue::offer`]): a publisher must not slow down because
//! one reader is slow. What happens when the queue is full is the subscriber's policy
//! ([`WhenFull`]): live connections are cut off (the reader then closes with a reason, and
//! the bus stops feeding it), webhooks drop the event and count it as given up.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use tokio::sync::{Notify, mpsc};

use crate::events::PublishedEvent;

/// One item of a subscriber's queue.
#[derive(Debug, Clone)]
pub enum Delivery {
    /// A published event, shared with every other subscriber that receives it.
    Event(Arc<PublishedEvent>),
    /// A ready-made JSON frame (room messages and notices).
    Frame(Arc<str>),
}

/// What to do when a subscriber's queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenFull {
    /// Stop feeding it: the reader learns it was [`cut_off`](SubscriberInbox::cut_off) and
    /// closes its connection. For live clients, whose view would otherwise have a hole.
    Disconnect,
    /// Drop the item and count it ([`dropped`](SubscriberQueue::dropped)). For webhooks,
    /// which report what they could not deliver.
    Drop,
}

/// The outcome of one [`SubscriberQueue::offer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offered {
    Queued,
    /// The queue was full and the item was dropped; the subscriber stays.
    Dropped,
    /// The subscriber is gone (its reader ended, or it overflowed under
    /// [`WhenFull::Disconnect`]) and should be forgotten.
    Gone,
}

/// The sending side of a subscriber's queue; cheap to clone.
#[derive(Debug, Clone)]
pub struct SubscriberQueue {
    tx: mpsc::Sender<Delivery>,
    when_full: WhenFull,
    overflow: Arc<Overflow>,
}

/// What both sides know of the queue's overflows.
#[derive(Debug, Default)]
struct Overflow {
    dropped: AtomicU64,
    /// Signalled when a [`WhenFull::Disconnect`] queue overflows. The reader can't rely on
    /// the channel closing: others (rooms, the connection itself) may hold senders.
    cut_off: Notify,
}

/// The reading side, held by the connection or dispatcher: the queue itself and, apart so
/// both can be awaited at once, what it knows of overflows.
#[derive(Debug)]
pub struct SubscriberInbox {
    pub rx: mpsc::Receiver<Delivery>,
    pub status: InboxStatus,
}

/// The reader's view of its queue's overflows.
#[derive(Debug, Clone)]
pub struct InboxStatus {
    overflow: Arc<Overflow>,
}

impl SubscriberQueue {
    /// A queue holding at most `capacity` items.
    pub fn bounded(capacity: usize, when_full: WhenFull) -> (Self, SubscriberInbox) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let overflow = Arc::new(Overflow::default());
        (
            Self {
                tx,
                when_full,
                overflow: overflow.clone(),
            },
            SubscriberInbox {
                rx,
                status: InboxStatus { overflow },
            },
        )
    }

    /// Pushes without waiting.
    pub fn offer(&self, delivery: Delivery) -> Offered {
        match self.tx.try_send(delivery) {
            Ok(()) => Offered::Queued,
            Err(mpsc::error::TrySendError::Closed(_)) => Offered::Gone,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.overflow.dropped.fetch_add(1, Ordering::Relaxed);
                match self.when_full {
                    WhenFull::Drop => Offered::Dropped,
                    WhenFull::Disconnect => {
                        self.overflow.cut_off.notify_one();
                        Offered::Gone
                    }
                }
            }
        }
    }

    /// Whether the reader has gone away.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

impl InboxStatus {
    /// Completes once a [`WhenFull::Disconnect`] queue has overflowed: the reader fell
    /// behind and should close its client (which can resume from its last `seq`).
    pub async fn cut_off(&self) {
        self.overflow.cut_off.notified().await;
    }

    /// Whether anything was refused because the queue was full.
    pub fn overflowed(&self) -> bool {
        self.dropped() > 0
    }

    /// Items refused because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.overflow.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(text: &str) -> Delivery {
        Delivery::Frame(Arc::from(text))
    }

    #[actix_rt::test]
    async fn a_full_queue_disconnects_or_drops_by_policy() {
        let (live, live_inbox) = SubscriberQueue::bounded(1, WhenFull::Disconnect);
        assert_eq!(live.offer(frame("a")), Offered::Queued);
        assert_eq!(live.offer(frame("b")), Offered::Gone);
        assert!(live_inbox.status.overflowed());
        tokio::time::timeout(
            std::time::Duration::from_secs(1),
            live_inbox.status.cut_off(),
        )
        .await
        .expect("the reader hears it was cut off");

        let (hook, hook_inbox) = SubscriberQueue::bounded(1, WhenFull::Drop);
        assert_eq!(hook.offer(frame("a")), Offered::Queued);
        assert_eq!(hook.offer(frame("b")), Offered::Dropped);
        assert_eq!(hook_inbox.status.dropped(), 1);
    }

    #[test]
    fn a_dropped_reader_is_gone() {
        let (queue, inbox) = SubscriberQueue::bounded(4, WhenFull::Disconnect);
        drop(inbox);
        assert!(queue.is_closed());
        assert_eq!(queue.offer(frame("a")), Offered::Gone);
    }
}
