//! A room's durable messages as the room actor keeps them in memory, and the counter that
//! numbers messages.
//!
//! [`RoomHistory`] mirrors what the store retains for the room: it answers joins (recent
//! messages, or exactly what a reconnecting client missed) and recognises repeated client ids
//! without touching the database. Plain data, no actors, no I/O.

use std::collections::{HashMap, VecDeque};

use protocol::{ChatMessage, ClientId, MessageId, UnixMillis};

/// A stored message with the client id it was sent with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub message: ChatMessage,
    pub client_id: Option<ClientId>,
}

/// A room's retained messages, oldest first.
#[derive(Debug, Default)]
pub struct Loaded {
    pub messages: Vec<Stored>,
    /// The highest id of this room lost to retention (0 if none).
    pub trimmed_upto: MessageId,
}

/// What a joining client is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Catchup {
    pub history: Vec<ChatMessage>,
    /// The `since` honoured (history continues exactly after it), or `None`.
    pub since: Option<MessageId>,
    /// Older messages exist that `history` leaves out.
    pub truncated: bool,
    /// With `since`: newer messages follow `history` (it is one page of them).
    pub more: bool,
}

/// How much one page of history (a welcome's, or the answer to a `history` request) may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageLimit {
    pub messages: usize,
    /// An upper bound on the page's encoded size; unless `strict`, a page holds at least one
    /// message even if that one alone is larger (so paging always moves on).
    pub bytes: usize,
    /// The bound holds even for the first message: the page may be empty.
    pub strict: bool,
}

/// A page of messages, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub messages: Vec<ChatMessage>,
    /// More messages exist beyond the page in the direction it was taken.
    pub more: bool,
}

/// An upper bound on the bytes `message` takes in a JSON frame: every character of the text
/// and the nick at most doubles when escaped (control characters other than newline and tab,
/// which would take six, are refused by the protocol's rules), plus the fixed fields.
pub fn encoded_bound(message: &ChatMessage) -> usize {
    // The names and the longest values of `type`, `id`, `room`'s and `from`'s quotes, `ts`,
    // `bot`, `signed_in`, `amends`, `edited` and `deleted`: 187 bytes.
    const FIXED: usize = 192;
    2 * (message.text.len() + message.from.len()) + message.room.len() + FIXED
}

/// A room's retained messages, oldest first, with their client ids.
#[derive(Debug)]
pub struct RoomHistory {
    entries: VecDeque<Stored>,
    /// Client id → who sent it (as [`crate::names::nick_key`]) and the id it was stored under. A client
    /// id only names a message together with its sender: another user's message with the same
    /// client id is a different message.
    by_client: HashMap<ClientId, Vec<(String, MessageId)>>,
    /// The highest id lost to retention (0 if none).
    trimmed_upto: MessageId,
    capacity: usize,
    /// The most bytes of text and nicks kept (see [`stored_size`]); the newest message is kept
    /// whatever its size.
    capacity_bytes: usize,
    /// The bytes of text and nicks in `entries`.
    bytes: usize,
}

/// What a message weighs against a room's byte retention: its text and its sender's nick, in
/// bytes of UTF-8. The store trims by the same measure.
pub fn stored_size(message: &ChatMessage) -> usize {
    message.text.len() + message.from.len()
}

impl RoomHistory {
    /// A history of the `loaded` messages that keeps at most `capacity` messages and about
    /// `capacity_bytes` bytes of them.
    pub fn new(loaded: Loaded, capacity: usize, capacity_bytes: usize) -> Self {
        let capacity = capacity.max(1);
        let mut history = RoomHistory {
            entries: VecDeque::new(),
            by_client: HashMap::new(),
            trimmed_upto: loaded.trimmed_upto,
            capacity,
            capacity_bytes,
            bytes: 0,
        };
        for stored in loaded.messages {
            history.push(stored);
        }
        history
    }

    /// Adds a durable message, forgetting the oldest past the capacity in messages or bytes.
    /// An amendment (an edit or a deletion) is kept as an entry of its own and applied to the
    /// message it amends, if retained: that message then holds its current text, or a
    /// tombstone (no text, `deleted`).
    pub fn push(&mut self, stored: Stored) {
        if let Some(target) = stored.message.amends {
            self.apply(target, &stored.message);
        }
        if self.entries.len() == self.capacity {
            self.forget_oldest();
        }
        if let Some(client_id) = &stored.client_id {
            let sender = crate::names::sender_key(&stored.message);
            self.by_client.entry(client_id.clone()).or_default().push((sender, stored.message.id));
        }
        self.bytes += stored_size(&stored.message);
        self.entries.push_back(stored);
        while self.bytes > self.capacity_bytes && self.entries.len() > 1 {
            self.forget_oldest();
        }
    }

    fn apply(&mut self, target: MessageId, change: &ChatMessage) {
        let Ok(at) = self.entries.binary_search_by_key(&target, |stored| stored.message.id) else {
            return;
        };
        let amended = &mut self.entries[at].message;
        if amended.amends.is_some() || amended.deleted {
            return;
        }
        self.bytes -= stored_size(amended);
        if change.deleted {
            amended.text.clear();
            amended.deleted = true;
            self.bytes += stored_size(&self.entries[at].message);
            // Its earlier edits held its text too: nothing of it is served any more.
            for later in self.entries.range_mut(at + 1..) {
                if later.message.amends == Some(target) && !later.message.text.is_empty() {
                    self.bytes -= stored_size(&later.message);
                    later.message.text.clear();
                    self.bytes += stored_size(&later.message);
                }
            }
            return;
        } else {
            amended.text.clone_from(&change.text);
            amended.edited = true;
        }
        self.bytes += stored_size(amended);
    }

    fn forget_oldest(&mut self) {
        if let Some(oldest) = self.entries.pop_front() {
            self.bytes -= stored_size(&oldest.message);
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

    /// Forgets every message up to `upto`, and counts the ids up to it as gone.
    pub fn forget_upto(&mut self, upto: MessageId) {
        while self.entries.front().is_some_and(|oldest| oldest.message.id <= upto) {
            self.forget_oldest();
        }
        self.trimmed_upto = self.trimmed_upto.max(upto);
    }

    /// Forgets messages older than `cutoff`.
    pub fn expire(&mut self, cutoff: UnixMillis) {
        while self.entries.front().is_some_and(|oldest| oldest.message.ts < cutoff) {
            self.forget_oldest();
        }
    }

    /// The id under which the sender `nick_key` ([`crate::names::sender_key`]) stored a
    /// retained message with `client_id`.
    pub fn id_for(&self, nick_key: &str, client_id: &str) -> Option<MessageId> {
        let senders = self.by_client.get(client_id)?;
        senders.iter().find(|(sender, _)| sender == nick_key).map(|(_, id)| *id)
    }

    /// The retained message with `id`.
    pub fn message(&self, id: MessageId) -> Option<&ChatMessage> {
        let at = self.entries.binary_search_by_key(&id, |stored| stored.message.id).ok()?;
        self.entries.get(at).map(|stored| &stored.message)
    }

    /// Whether the room keeps no message (it never had one, or all of them expired).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The highest id this room has stored (retained or not).
    pub fn last_id(&self) -> MessageId {
        self.entries.back().map_or(0, |newest| newest.message.id).max(self.trimmed_upto)
    }

    /// What a client joining with `since` gets: the first page of what follows `since` if the
    /// room ever reached that id (as many as `max_bytes` allow), otherwise the newest `recent`
    /// messages (within `max_bytes` too). `strict`: the bound holds even for the first message
    /// (the page may be empty, with `more` or `truncated` saying what is left out).
    pub fn catchup(
        &self,
        since: Option<MessageId>,
        recent: usize,
        max_bytes: usize,
        strict: bool,
    ) -> Catchup {
        match since {
            Some(since) if since <= self.last_id() => {
                let limit = PageLimit { messages: usize::MAX, bytes: max_bytes, strict };
                let page = self.after(since, limit);
                Catchup {
                    history: page.messages,
                    since: Some(since),
                    truncated: self.trimmed_upto > since,
                    more: page.more,
                }
            }
            _ => {
                let page =
                    self.before(None, PageLimit { messages: recent, bytes: max_bytes, strict });
                Catchup {
                    history: page.messages,
                    since: None,
                    truncated: page.more || self.trimmed_upto > 0,
                    more: false,
                }
            }
        }
    }

    /// The oldest messages after `after`, within `limit`.
    pub fn after(&self, after: MessageId, limit: PageLimit) -> Page {
        let start = self.entries.partition_point(|stored| stored.message.id <= after);
        let mut end = start;
        let mut bytes = 0;
        while let Some(stored) = self.entries.get(end) {
            bytes += encoded_bound(&stored.message);
            if (end > start || limit.strict)
                && (end - start == limit.messages || bytes > limit.bytes)
            {
                break;
            }
            end += 1;
        }
        Page { messages: self.messages(start..end), more: end < self.entries.len() }
    }

    /// The newest messages before `before` (before none: the newest of all), within `limit`.
    pub fn before(&self, before: Option<MessageId>, limit: PageLimit) -> Page {
        let end = before.map_or(self.entries.len(), |before| {
            self.entries.partition_point(|stored| stored.message.id < before)
        });
        let mut start = end;
        let mut bytes = 0;
        while start > 0 {
            bytes += encoded_bound(&self.entries[start - 1].message);
            if (start < end || limit.strict)
                && (end - start == limit.messages || bytes > limit.bytes)
            {
                break;
            }
            start -= 1;
        }
        Page { messages: self.messages(start..end), more: start > 0 }
    }

    fn messages(&self, range: std::ops::Range<usize>) -> Vec<ChatMessage> {
        self.entries.range(range).map(|stored| stored.message.clone()).collect()
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
                bot: false,
                signed_in: false,
                ..Default::default()
            },
            client_id: client_id.map(str::to_owned),
        }
    }

    fn history(ids: &[MessageId], capacity: usize) -> RoomHistory {
        let mut history = RoomHistory::new(Loaded::default(), capacity, usize::MAX);
        for &id in ids {
            history.push(stored(id, Some(&format!("c{id}"))));
        }
        history
    }

    fn ids(catchup: &Catchup) -> Vec<MessageId> {
        catchup.history.iter().map(|m| m.id).collect()
    }

    /// At most `messages` messages, bytes unbounded.
    fn most(messages: usize) -> PageLimit {
        PageLimit { messages, bytes: usize::MAX, strict: false }
    }

    fn page_ids(page: &Page) -> Vec<MessageId> {
        page.messages.iter().map(|m| m.id).collect()
    }

    /// The history keeps only the newest `capacity` messages and remembers what it dropped.
    #[test]
    fn keeps_the_newest_and_remembers_the_trim() {
        let history = history(&[1, 3, 5, 7, 9], 3);
        let all = history.catchup(Some(0), 100, usize::MAX, false);
        assert_eq!(ids(&all), [5, 7, 9]);
        assert!(all.truncated, "1 and 3 are gone");
        assert_eq!(history.last_id(), 9);
        assert_eq!(history.id_for("a", "c1"), None, "forgotten with its message");
        assert_eq!(history.id_for("a", "c7"), Some(7));
    }

    /// The byte bound forgets the oldest messages too, but never the newest one.
    #[test]
    fn keeps_a_bounded_number_of_bytes() {
        let mut history = RoomHistory::new(Loaded::default(), 100, 25);
        let sized = |id: MessageId, len: usize| {
            let mut stored = stored(id, None);
            stored.message.text = "x".repeat(len);
            stored
        };
        history.push(sized(1, 9)); // 10 bytes with the nick
        history.push(sized(2, 9));
        assert_eq!(ids(&history.catchup(Some(0), 100, usize::MAX, false)), [1, 2]);
        history.push(sized(3, 9));
        let kept = history.catchup(Some(0), 100, usize::MAX, false);
        assert_eq!((ids(&kept), kept.truncated), (vec![2, 3], true), "30 bytes > 25");
        history.push(sized(4, 99));
        assert_eq!(ids(&history.catchup(Some(0), 100, usize::MAX, false)), [4], "the newest stays");
    }

    /// `since` returns exactly what follows it, and says whether anything after it is gone.
    #[test]
    fn catchup_after_since() {
        let history = history(&[1, 3, 5, 7, 9], 3);
        let resumed = history.catchup(Some(5), 10, usize::MAX, false);
        assert_eq!((ids(&resumed), resumed.since, resumed.truncated), (vec![7, 9], Some(5), false));
        assert!(!resumed.more);
        let gap = history.catchup(Some(2), 10, usize::MAX, false);
        assert_eq!((ids(&gap), gap.truncated), (vec![5, 7, 9], true), "3 was lost");
        let current = history.catchup(Some(9), 1, usize::MAX, false);
        assert_eq!((ids(&current), current.since), (vec![], Some(9)));
    }

    /// A catch-up holds one page: the oldest messages after `since`, and says more follow.
    #[test]
    fn catchup_is_one_page() {
        let history = history(&[1, 2, 3, 4, 5], 10);
        let two = 2 * encoded_bound(&stored(1, None).message);
        let first = history.catchup(Some(1), 1, two, false);
        assert_eq!((ids(&first), first.since, first.more), (vec![2, 3], Some(1), true));
        let last = history.catchup(Some(3), 1, two, false);
        assert_eq!((ids(&last), last.more), (vec![4, 5], false));
        let fresh = history.catchup(None, 10, two, false);
        assert_eq!((ids(&fresh), fresh.truncated), (vec![4, 5], true), "the newest that fit");
    }

    /// Pages run backwards with `before` and forwards with `after`, say whether more exist in
    /// their direction, and stop at the byte bound, though never below one message.
    #[test]
    fn pages_in_both_directions_within_bounds() {
        let history = history(&[1, 2, 3, 4, 5, 6], 10);
        let newest = history.before(None, most(2));
        assert_eq!((page_ids(&newest), newest.more), (vec![5, 6], true));
        let older = history.before(Some(5), most(3));
        assert_eq!((page_ids(&older), older.more), (vec![2, 3, 4], true));
        let oldest = history.before(Some(2), most(3));
        assert_eq!((page_ids(&oldest), oldest.more), (vec![1], false));
        let after = history.after(4, most(5));
        assert_eq!((page_ids(&after), after.more), (vec![5, 6], false));
        assert_eq!(page_ids(&history.after(6, most(5))), Vec::<MessageId>::new());

        let one = encoded_bound(&stored(1, None).message);
        let two = PageLimit { messages: 100, bytes: 2 * one, strict: false };
        assert_eq!(page_ids(&history.after(0, two)), [1, 2], "two fit the bytes");
        assert_eq!(page_ids(&history.before(None, two)), [5, 6]);
        let tiny = PageLimit { messages: 100, bytes: 1, strict: false };
        assert_eq!(page_ids(&history.after(0, tiny)), [1], "never less than one message");
        assert_eq!(page_ids(&history.before(None, tiny)), [6]);
        let strict = PageLimit { strict: true, ..tiny };
        let (after, before) = (history.after(0, strict), history.before(None, strict));
        assert_eq!((page_ids(&after), after.more), (vec![], true), "strict: none fits");
        assert_eq!((page_ids(&before), before.more), (vec![], true));
        let empty = history.catchup(None, 10, 1, true);
        assert!(empty.history.is_empty() && empty.truncated, "a welcome that says more exist");
    }

    /// The size bound holds for the worst message: quotes and backslashes, which JSON doubles,
    /// the longest numbers, every mark and the id an amendment names.
    #[test]
    fn encoded_bound_covers_escaping() {
        let mut message = stored(1, None).message;
        message.text = "\"\\\n\t".repeat(500);
        message.from = "\"".repeat(32);
        // The longest fixed fields: the largest ids and times, every mark, and the largest id
        // an amendment can name.
        (message.id, message.ts, message.bot, message.signed_in) = (u64::MAX, u64::MAX, true, true);
        (message.amends, message.edited, message.deleted) = (Some(u64::MAX), true, true);
        let encoded = serde_json::to_string(&protocol::ServerMessage::Message(message.clone()))
            .expect("encodes");
        assert!(encoded.len() <= encoded_bound(&message), "{} bytes", encoded.len());
    }

    /// Without `since`, or with one the room never reached (another server's ids), the newest
    /// messages are sent and the client is told to replace what it has.
    #[test]
    fn catchup_without_usable_since() {
        let history = history(&[1, 2, 3, 4], 10);
        let fresh = history.catchup(None, 2, usize::MAX, false);
        assert_eq!((ids(&fresh), fresh.since, fresh.truncated), (vec![3, 4], None, true));
        let unknown = history.catchup(Some(99), 10, usize::MAX, false);
        assert_eq!(
            (ids(&unknown), unknown.since, unknown.truncated),
            (vec![1, 2, 3, 4], None, false)
        );
    }

    /// A loaded history carries the store's trim mark; expiry by age moves it on.
    #[test]
    fn loaded_trim_and_expiry() {
        let loaded = Loaded { messages: vec![stored(8, None), stored(9, None)], trimmed_upto: 6 };
        let mut history = RoomHistory::new(loaded, 10, usize::MAX);
        assert!(history.catchup(Some(5), 10, usize::MAX, false).truncated);
        assert!(!history.catchup(Some(6), 10, usize::MAX, false).truncated);
        history.expire(90);
        assert_eq!(ids(&history.catchup(Some(0), 10, usize::MAX, false)), [9]);
        assert!(history.catchup(Some(7), 10, usize::MAX, false).truncated, "8 expired");
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
}
