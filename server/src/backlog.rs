//! What waits for one session: the frames rooms have queued for it and it has not written yet,
//! and the bound on them.
//!
//! Rooms hand frames to a session through the session's own queue ([`channel`]) rather than one
//! actix message each: an actix `do_send` allocates an envelope and a queue node per recipient,
//! which are freed on another thread; at a million deliveries a second that was the largest cost
//! of ours in the profile (BENCHMARKS.md). The queue is a `VecDeque` behind a mutex that only
//! the room pushing and the session popping ever touch, so it allocates only when it grows, and
//! the session is woken once however many frames arrive before it runs. It stays small for idle
//! connections: no allocation until the first frame, and a burst's capacity is given back once
//! the queue is empty again.
//!
//! A session whose client stops reading is not polled by actix at all (its writes are blocked),
//! so its queue would grow without bound; rooms check the bound here before queuing and drop
//! the member past it.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use bytestring::ByteString;
use futures::Stream;
use futures::task::AtomicWaker;

/// How much may wait for one session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BacklogLimit {
    pub frames: usize,
    pub bytes: usize,
}

/// Frames kept allocated in an empty queue; past this, the capacity of a burst is given back.
const KEPT_CAPACITY: usize = 16;

/// A session's frame queue: the sending half goes to the rooms it joins, the receiving half is
/// a stream the session writes out.
pub fn channel() -> (FrameSender, FrameReceiver) {
    let shared = Arc::new(Shared::default());
    (FrameSender { shared: shared.clone() }, FrameReceiver { shared })
}

#[derive(Debug, Default)]
struct Shared {
    queue: Mutex<Queue>,
    /// The session's task, woken when a frame arrives.
    waker: AtomicWaker,
}

#[derive(Debug, Default)]
struct Queue {
    frames: VecDeque<ByteString>,
    /// The bytes in `frames`.
    bytes: usize,
    /// The session is gone: frames for it are dropped.
    closed: bool,
}

impl Shared {
    /// The queue, even if a thread panicked while holding it: it is never left half-changed.
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Queues frames for one session; cheap to clone.
#[derive(Debug, Clone)]
pub struct FrameSender {
    shared: Arc<Shared>,
}

impl FrameSender {
    /// Queues `frame` unless that would pass `limit`; `false` means the session is not keeping
    /// up. A single frame larger than the byte limit still goes to a session with nothing
    /// waiting, so a reading client is never dropped for one big message. A session that is
    /// gone counts as keeping up: its room hears of the leave anyway.
    pub fn try_send(&self, frame: ByteString, limit: BacklogLimit) -> bool {
        {
            let mut queue = self.shared.lock();
            if queue.closed {
                return true;
            }
            let too_many = queue.frames.len() >= limit.frames;
            let too_big = queue.bytes > 0 && queue.bytes + frame.len() > limit.bytes;
            if too_many || too_big {
                return false;
            }
            queue.push(frame);
        }
        self.shared.waker.wake();
        true
    }

    /// The bytes that may still be queued for the session under `limit`, beside what waits.
    pub fn room_left(&self, limit: BacklogLimit) -> usize {
        limit.bytes.saturating_sub(self.shared.lock().bytes)
    }

    /// Gives back the queue's memory if nothing waits. Called now and then (each heartbeat), so
    /// an idle session keeps nothing of its last burst; a busy one loses one allocation.
    pub fn release_if_empty(&self) {
        let mut queue = self.shared.lock();
        if queue.frames.is_empty() {
            queue.frames = VecDeque::new();
        }
    }

    /// Frees what waits and drops whatever comes later: the session was dropped as not
    /// reading, and its frames would otherwise stay allocated until the kernel ends its
    /// connection.
    pub fn close(&self) {
        self.shared.lock().close();
    }
}

impl Queue {
    fn close(&mut self) {
        self.closed = true;
        self.frames = VecDeque::new();
        self.bytes = 0;
    }

    fn push(&mut self, frame: ByteString) {
        self.bytes += frame.len();
        self.frames.push_back(frame);
    }

    fn pop(&mut self) -> Option<ByteString> {
        let frame = self.frames.pop_front()?;
        self.bytes -= frame.len();
        if self.frames.is_empty() && self.frames.capacity() > KEPT_CAPACITY {
            self.frames.shrink_to(KEPT_CAPACITY);
        }
        Some(frame)
    }
}

/// The frames queued for one session, in order, as a stream the session registers with its
/// context. It never ends: a session with no room simply gets nothing.
#[derive(Debug)]
pub struct FrameReceiver {
    shared: Arc<Shared>,
}

impl Stream for FrameReceiver {
    type Item = ByteString;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ByteString>> {
        if let Some(frame) = self.shared.lock().pop() {
            return Poll::Ready(Some(frame));
        }
        // Registered before looking again, so a frame queued in between still wakes us.
        self.shared.waker.register(cx.waker());
        match self.shared.lock().pop() {
            Some(frame) => Poll::Ready(Some(frame)),
            None => Poll::Pending,
        }
    }
}

impl Drop for FrameReceiver {
    /// Frames already queued, and any a room sends before it hears of the leave, are freed now
    /// rather than with the last room's sender.
    fn drop(&mut self) {
        self.shared.lock().close();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    const LIMIT: BacklogLimit = BacklogLimit { frames: 3, bytes: 100 };

    fn frame(len: usize) -> ByteString {
        "x".repeat(len).into()
    }

    /// The next frame, if one is waiting.
    fn next(receiver: &mut FrameReceiver) -> Option<String> {
        let waker = futures::task::noop_waker();
        match Pin::new(receiver).poll_next(&mut Context::from_waker(&waker)) {
            Poll::Ready(Some(frame)) => Some(frame.to_string()),
            _ => None,
        }
    }

    /// The frame count is a limit of its own; what was written out no longer counts.
    #[test]
    fn frames_are_bounded() {
        let (sender, mut receiver) = channel();
        assert!((0..3).all(|_| sender.try_send(frame(1), LIMIT)));
        assert!(!sender.try_send(frame(1), LIMIT));
        assert!(next(&mut receiver).is_some());
        assert!(sender.try_send(frame(1), LIMIT), "room again once one was written out");
    }

    /// So is the byte count, except for one big frame when nothing waits.
    #[test]
    fn bytes_are_bounded() {
        let (sender, mut receiver) = channel();
        assert!(sender.try_send(frame(60), LIMIT));
        assert!(!sender.try_send(frame(60), LIMIT), "120 bytes would wait");
        assert!(sender.try_send(frame(40), LIMIT));
        while next(&mut receiver).is_some() {}
        assert!(sender.try_send(frame(500), LIMIT), "one big frame to an idle session");
        assert!(!sender.try_send(frame(1), LIMIT));
    }

    /// Frames come out in the order they were queued.
    #[test]
    fn in_order() {
        let (sender, mut receiver) = channel();
        let limit = BacklogLimit { frames: 3, bytes: 100 };
        for frame in ["a", "b", "c"] {
            assert!(sender.try_send(frame.into(), limit));
        }
        let got: Vec<Option<String>> = (0..4).map(|_| next(&mut receiver)).collect();
        let want = [Some("a"), Some("b"), Some("c"), None];
        assert_eq!(got, want.map(|frame| frame.map(str::to_owned)));
    }

    /// A queue closed by its room (the session was dropped as not reading) frees what waited
    /// and keeps nothing sent later.
    #[test]
    fn a_queue_closed_by_its_room_frees_its_frames() {
        let (sender, mut receiver) = channel();
        assert!(sender.try_send(frame(50), LIMIT));
        sender.close();
        assert!(sender.try_send(frame(10), LIMIT), "not counted as a slow reader again");
        assert_eq!(next(&mut receiver), None);
        let queue = sender.shared.lock();
        assert_eq!((queue.frames.len(), queue.bytes), (0, 0));
    }

    /// A waiting session is woken by the next frame, once, however many follow before it runs.
    #[test]
    fn a_frame_wakes_the_session() {
        let (sender, mut receiver) = channel();
        let (waker, wakes) = counting_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(Pin::new(&mut receiver).poll_next(&mut cx).is_pending());
        assert!(sender.try_send(frame(1), LIMIT));
        assert!(sender.try_send(frame(1), LIMIT));
        assert_eq!(wakes.load(Ordering::SeqCst), 1);
        assert!(Pin::new(&mut receiver).poll_next(&mut cx).is_ready());
    }

    /// An idle queue gives its memory back when asked; one with frames waiting keeps them.
    #[test]
    fn an_empty_queue_releases_its_memory() {
        let (sender, mut receiver) = channel();
        let limit = BacklogLimit { frames: 100, bytes: 10_000 };
        assert!((0..10).all(|_| sender.try_send(frame(1), limit)));
        sender.release_if_empty();
        assert_eq!(sender.shared.lock().frames.len(), 10, "nothing dropped");
        while next(&mut receiver).is_some() {}
        assert!(sender.shared.lock().frames.capacity() > 0, "a burst's capacity is kept");
        sender.release_if_empty();
        assert_eq!(sender.shared.lock().frames.capacity(), 0);
        assert!(sender.try_send(frame(1), limit));
        assert_eq!(next(&mut receiver).as_deref(), Some("x"));
    }

    /// Once the session is gone, frames for it are dropped instead of kept.
    #[test]
    fn a_closed_queue_keeps_nothing() {
        let (sender, receiver) = channel();
        assert!(sender.try_send(frame(10), LIMIT));
        drop(receiver);
        assert!(sender.try_send(frame(10), LIMIT), "not counted as a slow reader");
        let queue = sender.shared.lock();
        assert_eq!((queue.frames.len(), queue.bytes), (0, 0));
    }

    /// A waker that counts how often it was woken.
    fn counting_waker() -> (std::task::Waker, Arc<AtomicUsize>) {
        struct Counter(Arc<AtomicUsize>);
        impl futures::task::ArcWake for Counter {
            fn wake_by_ref(counter: &Arc<Self>) {
                counter.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let wakes = Arc::new(AtomicUsize::new(0));
        (futures::task::waker(Arc::new(Counter(wakes.clone()))), wakes)
    }
}
