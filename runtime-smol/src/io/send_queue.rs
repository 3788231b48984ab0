//! The queue from a machine to one connection's writer, bounded in messages and in bytes,
//! per connection and over the whole process.
//!
//! A machine fills it without waiting (`try_send`) and closes the connection when it is
//! full: a remote that asks for more than it reads (a flood of `GetManifest` on a
//! connection it never reads, say) costs at most [`SEND_QUEUE_BYTES_MAX`], and all such
//! remotes together at most [`SEND_QUEUE_BYTES_TOTAL_MAX`]. Bytes count as encoded on the
//! wire, though a manifest or a block is shared, not copied, while it waits.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use p2p_core::Message;
use p2p_core::wire::FRAME_LEN_MAX;
use smol::channel::{Receiver, Sender, TrySendError};

/// Messages queued for one connection. The core bounds what it sends (pieces in flight
/// per connection, requests in flight per peer), so a queue this long is only full when
/// the remote stopped reading.
pub const SEND_QUEUE_MAX: usize = 4096;
/// Bytes queued for one connection: the largest frame and a few blocks besides. A
/// message into an empty queue is always taken, whatever its size.
pub const SEND_QUEUE_BYTES_MAX: usize = FRAME_LEN_MAX as usize + 8 * 1024 * 1024;
/// Bytes queued over every connection of the process.
pub const SEND_QUEUE_BYTES_TOTAL_MAX: usize = 256 * 1024 * 1024;

/// Bytes queued over a set of queues (the process's, or a test's own).
pub struct Budget {
    queued: AtomicUsize,
    max: usize,
}

impl Budget {
    pub const fn new(max: usize) -> Budget {
        Budget {
            queued: AtomicUsize::new(0),
            max,
        }
    }

    #[cfg(test)]
    fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }
}

/// The process's budget.
pub static PROCESS_BUDGET: Budget = Budget::new(SEND_QUEUE_BYTES_TOTAL_MAX);

/// The bytes one queue holds, counted in its budget too; what is still queued when the
/// last end of the queue goes is given back.
struct Counter {
    queued: AtomicUsize,
    max: usize,
    budget: &'static Budget,
}

impl Counter {
    fn take(&self, bytes: usize) -> Result<(), &'static str> {
        let before = self.queued.fetch_add(bytes, Ordering::Relaxed);
        let total = self.budget.queued.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if before > 0 && before + bytes > self.max {
            self.give_back(bytes);
            return Err("send queue full: the remote is not reading");
        }
        if total > self.budget.max {
            self.give_back(bytes);
            return Err("send queues of the process full: remotes are not reading");
        }
        Ok(())
    }

    fn give_back(&self, bytes: usize) {
        self.queued.fetch_sub(bytes, Ordering::Relaxed);
        self.budget.queued.fetch_sub(bytes, Ordering::Relaxed);
    }
}

impl Drop for Counter {
    fn drop(&mut self) {
        let left = *self.queued.get_mut();
        self.budget.queued.fetch_sub(left, Ordering::Relaxed);
    }
}

/// A message and the bytes it was counted for.
struct Queued {
    message: Message,
    bytes: usize,
}

/// The machine's end.
pub struct SendQueue {
    tx: Sender<Queued>,
    counter: Arc<Counter>,
    /// Closed with the queue, so the writer hears of it while it is blocked writing.
    closing: Sender<()>,
}

/// The writer's end.
pub struct SendQueueRx {
    rx: Receiver<Queued>,
    counter: Arc<Counter>,
    closing: Receiver<()>,
}

/// A queue for one connection, in the process's budget.
pub fn send_queue() -> (SendQueue, SendQueueRx) {
    send_queue_in(SEND_QUEUE_BYTES_MAX, &PROCESS_BUDGET)
}

fn send_queue_in(max: usize, budget: &'static Budget) -> (SendQueue, SendQueueRx) {
    let (tx, rx) = smol::channel::bounded(SEND_QUEUE_MAX);
    let counter = Arc::new(Counter {
        queued: AtomicUsize::new(0),
        max,
        budget,
    });
    let (closing, closing_rx) = smol::channel::bounded(1);
    let rx = SendQueueRx {
        rx,
        counter: counter.clone(),
        closing: closing_rx,
    };
    let tx = SendQueue {
        tx,
        counter,
        closing,
    };
    (tx, rx)
}

impl SendQueue {
    /// Queues a message. `Err` when the queue is full (the remote is not reading) or the
    /// writer is gone: the caller closes the connection.
    pub fn try_send(&self, message: Message) -> Result<(), &'static str> {
        let bytes = message.encoded_len_estimate();
        self.counter.take(bytes)?;
        match self.tx.try_send(Queued { message, bytes }) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.counter.give_back(bytes);
                Err(match e {
                    TrySendError::Full(_) => "send queue full: the remote is not reading",
                    TrySendError::Closed(_) => "connection already closed",
                })
            }
        }
    }

    /// No more messages: the writer ends once the queue is empty.
    pub fn close(&self) {
        self.tx.close();
        self.closing.close();
    }
}

impl SendQueueRx {
    /// The next message; `None` once the queue is closed and empty.
    pub async fn recv(&self) -> Option<Message> {
        let queued = self.rx.recv().await.ok()?;
        Some(self.taken(queued))
    }

    /// The next message if one is queued.
    pub fn try_recv(&self) -> Option<Message> {
        let queued = self.rx.try_recv().ok()?;
        Some(self.taken(queued))
    }

    /// Resolves once the machine has closed the queue (messages may still be queued).
    pub async fn closed(&self) {
        // Nothing is ever sent on it: `recv` returns when it is closed.
        let _ = self.closing.recv().await;
    }

    fn taken(&self, queued: Queued) -> Message {
        self.counter.give_back(queued.bytes);
        queued.message
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use p2p_core::ContentId;

    use super::*;

    fn block(len: usize) -> Message {
        Message::Piece {
            content_id: ContentId([1; 32]),
            chunk_index: 0,
            offset: 0,
            data: Bytes::from(vec![0; len]),
        }
    }

    #[test]
    fn a_queue_is_bounded_in_bytes_and_a_first_message_always_fits() {
        static BUDGET: Budget = Budget::new(usize::MAX);
        let (tx, rx) = send_queue_in(100_000, &BUDGET);
        // Larger than the queue's bound, but the queue is empty.
        tx.try_send(block(150_000)).unwrap();
        assert!(tx.try_send(block(10)).is_err());
        assert!(BUDGET.queued() >= 150_000);
        assert!(rx.try_recv().is_some());
        assert_eq!(BUDGET.queued(), 0);
        tx.try_send(block(60_000)).unwrap();
        assert!(tx.try_send(block(60_000)).is_err(), "over the bound");
        tx.try_send(block(30_000)).unwrap();
        // What is still queued when both ends are gone goes back to the budget.
        drop((tx, rx));
        assert_eq!(BUDGET.queued(), 0);
    }

    #[test]
    fn the_budget_bounds_every_queue_together() {
        static BUDGET: Budget = Budget::new(250_000);
        let queues: Vec<_> = (0..4).map(|_| send_queue_in(1 << 30, &BUDGET)).collect();
        for (tx, _) in &queues[..2] {
            tx.try_send(block(100_000)).unwrap();
        }
        let (third, _) = &queues[2];
        let refused = third.try_send(block(100_000));
        assert_eq!(
            refused,
            Err("send queues of the process full: remotes are not reading")
        );
        drop(queues);
        assert_eq!(BUDGET.queued(), 0);
    }
}
