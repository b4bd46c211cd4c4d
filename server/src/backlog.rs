//! What waits for one session: frames rooms have queued for it that it has not handled yet.
//!
//! A session whose client stops reading is not polled by actix at all (its writes are
//! blocked), and `do_send` ignores mailbox capacity, so rooms check this count before queuing
//! and drop the member past the limit.

use std::sync::atomic::{AtomicUsize, Ordering};

/// How much may wait for one session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BacklogLimit {
    pub frames: usize,
    pub bytes: usize,
}

/// Frames and bytes waiting for one session; shared by the session and its rooms.
#[derive(Debug, Default)]
pub struct Backlog {
    frames: AtomicUsize,
    bytes: AtomicUsize,
}

impl Backlog {
    /// Counts a frame of `len` bytes in, unless that would pass `limit`. A single frame larger
    /// than the byte limit still goes to a session with nothing waiting, so a reading client is
    /// never dropped for one big message.
    pub fn try_push(&self, len: usize, limit: BacklogLimit) -> bool {
        let frames = self.frames.fetch_add(1, Ordering::Relaxed);
        let bytes = self.bytes.fetch_add(len, Ordering::Relaxed);
        if frames >= limit.frames || (bytes > 0 && bytes + len > limit.bytes) {
            self.pop(len);
            return false;
        }
        true
    }

    /// Counts a frame in regardless of the limit (the answer to a join).
    pub fn push(&self, len: usize) {
        self.frames.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(len, Ordering::Relaxed);
    }

    /// The session handled a frame of `len` bytes.
    pub fn pop(&self, len: usize) {
        self.frames.fetch_sub(1, Ordering::Relaxed);
        self.bytes.fetch_sub(len, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: BacklogLimit = BacklogLimit { frames: 3, bytes: 100 };

    /// The frame count is a limit of its own.
    #[test]
    fn frames_are_bounded() {
        let backlog = Backlog::default();
        assert!((0..3).all(|_| backlog.try_push(1, LIMIT)));
        assert!(!backlog.try_push(1, LIMIT));
        backlog.pop(1);
        assert!(backlog.try_push(1, LIMIT), "room again once one was handled");
    }

    /// So is the byte count, except for one big frame when nothing waits.
    #[test]
    fn bytes_are_bounded() {
        let backlog = Backlog::default();
        assert!(backlog.try_push(60, LIMIT));
        assert!(!backlog.try_push(60, LIMIT), "120 bytes would wait");
        assert!(backlog.try_push(40, LIMIT));
        backlog.pop(60);
        backlog.pop(40);
        assert!(backlog.try_push(500, LIMIT), "one big frame to an idle session");
        assert!(!backlog.try_push(1, LIMIT));
    }
}
