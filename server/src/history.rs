//! Recent messages of each room, kept in memory, and the counter that numbers them.
//!
//! A room's log outlives the room actor: the lobby keeps the logs of the most recently emptied
//! rooms (see `Config::retained_rooms`), so people who come back to a quiet room still see what
//! was said and ids keep increasing.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use protocol::{ChatMessage, MessageId};

/// Hands out message ids. One counter serves every room, so a room's ids strictly increase even
/// after its log was forgotten and the room was created again.
#[derive(Debug, Default)]
pub struct MessageIds(AtomicU64);

impl MessageIds {
    pub fn next(&self) -> MessageId {
        self.0.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// The last `capacity` messages of one room, oldest first.
#[derive(Debug)]
pub struct RoomLog {
    entries: VecDeque<ChatMessage>,
    capacity: usize,
}

impl RoomLog {
    pub fn new(capacity: usize) -> Self {
        RoomLog { entries: VecDeque::with_capacity(capacity.min(1024)), capacity }
    }

    pub fn push(&mut self, message: ChatMessage) {
        if self.capacity == 0 {
            return;
        }
        if self.entries.len() == self.capacity {
            self.entries.pop_front();
        }
        self.entries.push_back(message);
    }

    pub fn recent(&self) -> Vec<ChatMessage> {
        self.entries.iter().cloned().collect()
    }
}

/// A log shared by the lobby (which keeps it while the room is empty) and the room actor.
#[derive(Debug, Clone)]
pub struct SharedLog(Arc<Mutex<RoomLog>>);

impl SharedLog {
    pub fn new(capacity: usize) -> Self {
        SharedLog(Arc::new(Mutex::new(RoomLog::new(capacity))))
    }

    /// Locks the log. A panic while holding the lock cannot leave a `RoomLog` half-updated in a
    /// way that matters, so a poisoned lock is used as is.
    pub fn lock(&self) -> MutexGuard<'_, RoomLog> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: MessageId) -> ChatMessage {
        ChatMessage { id, room: "r".into(), from: "a".into(), text: id.to_string(), ts: 0 }
    }

    /// The log keeps only the newest `capacity` messages, in order.
    #[test]
    fn log_keeps_the_newest() {
        let mut log = RoomLog::new(3);
        for id in 1..=5 {
            log.push(message(id));
        }
        let ids: Vec<_> = log.recent().iter().map(|m| m.id).collect();
        assert_eq!(ids, [3, 4, 5]);
    }

    /// Ids start at 1 and strictly increase.
    #[test]
    fn ids_increase() {
        let ids = MessageIds::default();
        assert_eq!((ids.next(), ids.next(), ids.next()), (1, 2, 3));
    }
}
