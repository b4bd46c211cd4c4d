//! The ids the server hands out: connections, room instances and messages.

use std::sync::atomic::{AtomicU64, Ordering};

use protocol::MessageId;

/// Identifies one WebSocket connection for the lifetime of the process (and in logs).
pub type ConnId = u64;

/// Tells apart the successive instances of a room (a room closes when its last member leaves
/// and opens again on the next join): unique for the life of the process. Everything a room
/// tells sessions, the lobby and the store carries it, so that news from an instance that has
/// since closed (or that a session has since left) is recognised as stale.
pub type RoomInstance = u64;

/// Hands out message ids. One counter serves every room, so a room's ids strictly increase even
/// after the room was closed and opened again; it starts after the highest id ever stored, so
/// ids never repeat across restarts either.
#[derive(Debug, Default)]
pub struct MessageIds(AtomicU64);

impl MessageIds {
    /// Ids continue after `last`.
    pub fn starting_after(last: MessageId) -> Self {
        MessageIds(AtomicU64::new(last))
    }

    pub fn next(&self) -> MessageId {
        self.0.fetch_add(1, Ordering::Relaxed) + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ids continue after the stored ones and strictly increase.
    #[test]
    fn ids_continue_after_the_last_stored() {
        let ids = MessageIds::starting_after(41);
        assert_eq!((ids.next(), ids.next(), ids.next()), (42, 43, 44));
    }
}
