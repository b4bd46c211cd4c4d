//! A room's durable messages as the room actor keeps them in memory, and the counter that
//! numbers messages.
//!
//! [`RoomHistory`] mirrors what the store retains for the room: it answers joins (recent
//! messages, or exactly what a reconnecting client missed) and recognises repeated client ids
//! without touching the database. Plain data, no actors, no I/O.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};

use protocol::{ChatMessage, ClientId, MessageId, UnixMillis, rules};

use crate::store::{Loaded, Stored};

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

/// What a joining client is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Catchup {
    pub history: Vec<ChatMessage>,
    /// The `since` honoured (history continues exactly after it), or `None`.
    pub since: Option<MessageId>,
    /// Older messages exist that `history` leaves out.
    pub truncated: bool,
}

/// A room's retained messages, oldest first, with their client ids.
#[derive(Debug)]
pub struct RoomHistory {
    entries: VecDeque<Stored>,
    /// Client id → who sent it (as [`rules::nick_key`]) and the id it was stored under. A client
    /// id only names a message together with its sender: another user's message with the same
    /// client id is a different message.
    by_client: HashMap<ClientId, Vec<(String, MessageId)>>,
    /// The highest id lost to retention (0 if none).
    trimmed_upto: MessageId,
    capacity: usize,
}

impl RoomHistory {
    pub fn new(loaded: Loaded, capacity: usize) -> Self {
        let capacity = capacity.max(1);
        let mut history = RoomHistory {
            entries: VecDeque::new(),
            by_client: HashMap::new(),
            trimmed_upto: loaded.trimmed_upto,
            capacity,
        };
        for stored in loaded.messages {
            history.push(stored);
        }
        history
    }

    /// Adds a durable message, forgetting the oldest past the capacity.
    pub fn push(&mut self, stored: Stored) {
        if self.entries.len() == self.capacity {
            self.forget_oldest();
        }
        if let Some(client_id) = &stored.client_id {
            let sender = rules::nick_key(&stored.message.from);
            self.by_client.entry(client_id.clone()).or_default().push((sender, stored.message.id));
        }
        self.entries.push_back(stored);
    }

    fn forget_oldest(&mut self) {
        if let Some(oldest) = self.entries.pop_front() {
            self.trimmed_upto = self.trimmed_upto.max(oldest.message.id);
            if let Some(client_id) = oldest.client_id
                && let Some(senders) = self.by_client.get_mut(&client_id)
            {
                senders.retain(|(_, id)| *id != oldest.message.id);
                if senders.is_empty() {
                    self.by_client.remove(&client_id);
                }
            }
        }
    }

    /// Forgets messages older than `cutoff`.
    pub fn expire(&mut self, cutoff: UnixMillis) {
        while self.entries.front().is_some_and(|oldest| oldest.message.ts < cutoff) {
            self.forget_oldest();
        }
    }

    /// The id under which the sender `nick_key` stored a retained message with `client_id`.
    pub fn id_for(&self, nick_key: &str, client_id: &str) -> Option<MessageId> {
        let senders = self.by_client.get(client_id)?;
        senders.iter().find(|(sender, _)| sender == nick_key).map(|(_, id)| *id)
    }

    /// The highest id this room has stored (retained or not).
    pub fn last_id(&self) -> MessageId {
        self.entries.back().map_or(0, |newest| newest.message.id).max(self.trimmed_upto)
    }

    /// What a client joining with `since` gets: everything after `since` if the room ever
    /// reached that id, otherwise the newest `recent` messages.
    pub fn catchup(&self, since: Option<MessageId>, recent: usize) -> Catchup {
        match since {
            Some(since) if since <= self.last_id() => {
                let start = self.entries.partition_point(|stored| stored.message.id <= since);
                Catchup {
                    history: self.messages(start),
                    since: Some(since),
                    truncated: self.trimmed_upto > since,
                }
            }
            _ => {
                let start = self.entries.len().saturating_sub(recent);
                Catchup {
                    history: self.messages(start),
                    since: None,
                    truncated: start > 0 || self.trimmed_upto > 0,
                }
            }
        }
    }

    fn messages(&self, start: usize) -> Vec<ChatMessage> {
        self.entries.range(start..).map(|stored| stored.message.clone()).collect()
    }

    /// The newest message's time, if any.
    pub fn last_ts(&self) -> Option<UnixMillis> {
        self.entries.back().map(|newest| newest.message.ts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(id: MessageId, client_id: Option<&str>) -> Stored {
        Stored {
            message: ChatMessage {
                id,
                room: "r".into(),
                from: "a".into(),
                text: id.to_string(),
                ts: id * 10,
            },
            client_id: client_id.map(str::to_owned),
        }
    }

    fn history(ids: &[MessageId], capacity: usize) -> RoomHistory {
        let mut history = RoomHistory::new(Loaded::default(), capacity);
        for &id in ids {
            history.push(stored(id, Some(&format!("c{id}"))));
        }
        history
    }

    fn ids(catchup: &Catchup) -> Vec<MessageId> {
        catchup.history.iter().map(|m| m.id).collect()
    }

    /// The history keeps only the newest `capacity` messages and remembers what it dropped.
    #[test]
    fn keeps_the_newest_and_remembers_the_trim() {
        let history = history(&[1, 3, 5, 7, 9], 3);
        let all = history.catchup(Some(0), 100);
        assert_eq!(ids(&all), [5, 7, 9]);
        assert!(all.truncated, "1 and 3 are gone");
        assert_eq!(history.last_id(), 9);
        assert_eq!(history.id_for("a", "c1"), None, "forgotten with its message");
        assert_eq!(history.id_for("a", "c7"), Some(7));
    }

    /// `since` returns exactly what follows it, and says whether anything after it is gone.
    #[test]
    fn catchup_after_since() {
        let history = history(&[1, 3, 5, 7, 9], 3);
        let resumed = history.catchup(Some(5), 1);
        assert_eq!((ids(&resumed), resumed.since, resumed.truncated), (vec![7, 9], Some(5), false));
        let gap = history.catchup(Some(2), 1);
        assert_eq!((ids(&gap), gap.truncated), (vec![5, 7, 9], true), "3 was lost");
        let current = history.catchup(Some(9), 1);
        assert_eq!((ids(&current), current.since), (vec![], Some(9)));
    }

    /// Without `since`, or with one the room never reached (another server's ids), the newest
    /// messages are sent and the client is told to replace what it has.
    #[test]
    fn catchup_without_usable_since() {
        let history = history(&[1, 2, 3, 4], 10);
        let fresh = history.catchup(None, 2);
        assert_eq!((ids(&fresh), fresh.since, fresh.truncated), (vec![3, 4], None, true));
        let unknown = history.catchup(Some(99), 10);
        assert_eq!(
            (ids(&unknown), unknown.since, unknown.truncated),
            (vec![1, 2, 3, 4], None, false)
        );
    }

    /// A loaded history carries the store's trim mark; expiry by age moves it on.
    #[test]
    fn loaded_trim_and_expiry() {
        let loaded = Loaded { messages: vec![stored(8, None), stored(9, None)], trimmed_upto: 6 };
        let mut history = RoomHistory::new(loaded, 10);
        assert!(history.catchup(Some(5), 10).truncated);
        assert!(!history.catchup(Some(6), 10).truncated);
        history.expire(90);
        assert_eq!(ids(&history.catchup(Some(0), 10)), [9]);
        assert!(history.catchup(Some(7), 10).truncated, "8 expired");
    }

    /// A client id names a message only together with its sender (compared as nick keys): the
    /// same client id from someone else is another message.
    #[test]
    fn client_ids_belong_to_their_sender() {
        let mut history = history(&[], 2);
        let mut from = |id: MessageId, nick: &str| {
            let mut message = stored(id, Some("same"));
            message.message.from = nick.into();
            history.push(message);
        };
        from(1, "Alice");
        from(2, "bob");
        assert_eq!(
            (history.id_for("alice", "same"), history.id_for("bob", "same")),
            (Some(1), Some(2))
        );
        assert_eq!(history.id_for("carol", "same"), None);
        history.push(stored(3, None));
        assert_eq!(history.id_for("alice", "same"), None, "alice's message was trimmed");
        assert_eq!(history.id_for("bob", "same"), Some(2), "bob's is still there");
    }

    /// Ids continue after the stored ones and strictly increase.
    #[test]
    fn ids_continue_after_the_last_stored() {
        let ids = MessageIds::starting_after(41);
        assert_eq!((ids.next(), ids.next(), ids.next()), (42, 43, 44));
    }
}
