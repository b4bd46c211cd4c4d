//! Messages the user sent that the server has not acknowledged yet, and edits and deletions
//! of earlier messages alike (each with a client id of its own). They live in
//! `localStorage`, so neither a dropped connection nor a reload of the page loses them: the
//! connection sends them (again) once it is in their room under their nick, with the same
//! client id, and the server stores each one once however often it arrives.
//!
//! Every change reads the stored list, changes it and writes it back at once, so tabs that share
//! the storage do not overwrite each other's entries.

use protocol::ClientMessage;
use serde::{Deserialize, Serialize};

const STORAGE_KEY: &str = "chat.outbox";
/// Most unacknowledged messages kept; past it the page refuses new ones until some are sent.
pub const MAX_ITEMS: usize = 200;
/// Entries older than this are dropped when the outbox is read (a week, in ms).
const MAX_AGE_MS: u64 = 7 * 24 * 3600 * 1000;

/// One message waiting for its acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outgoing {
    pub client_id: String,
    pub room: String,
    /// Who typed it: it is only ever sent under this nick.
    pub nick: String,
    pub text: String,
    /// When it was typed (Unix ms).
    pub ts: u64,
    /// An edit (to `text`) or, with `delete`, a deletion of this earlier message, rather than
    /// a new message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amends: Option<protocol::MessageId>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub delete: bool,
}

impl Outgoing {
    /// The request for it: a `send`, an `edit` or a `delete`.
    pub fn request(&self) -> ClientMessage {
        let (room, client_id) = (self.room.clone(), Some(self.client_id.clone()));
        match self.amends {
            Some(id) if self.delete => ClientMessage::Delete { room, id, client_id },
            Some(id) => ClientMessage::Edit { room, id, text: self.text.clone(), client_id },
            None => ClientMessage::Send { text: self.text.clone(), client_id, room: Some(room) },
        }
    }
}

/// The stored list, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outbox {
    items: Vec<Outgoing>,
}

/// Why a message could not be queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Full;

impl Outbox {
    /// The outbox from a stored JSON list (unreadable storage counts as empty), without entries
    /// older than a week, and at most [`MAX_ITEMS`] of them (the oldest, as [`Outbox::add`]
    /// would have kept): storage is the user's to edit, and whatever it holds is sent.
    pub fn parse(json: Option<&str>, now: u64) -> Self {
        let mut items: Vec<Outgoing> =
            json.and_then(|json| serde_json::from_str(json).ok()).unwrap_or_default();
        items.retain(|item| now.saturating_sub(item.ts) < MAX_AGE_MS);
        items.truncate(MAX_ITEMS);
        Outbox { items }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.items).unwrap_or_else(|_| "[]".into())
    }

    pub fn add(&mut self, item: Outgoing) -> Result<(), Full> {
        if self.items.iter().any(|queued| queued.client_id == item.client_id) {
            return Ok(());
        }
        if self.items.len() >= MAX_ITEMS {
            return Err(Full);
        }
        self.items.push(item);
        Ok(())
    }

    /// Forgets a message (acknowledged, or refused for good); whether it was there.
    pub fn remove(&mut self, client_id: &str) -> bool {
        let before = self.items.len();
        self.items.retain(|item| item.client_id != client_id);
        self.items.len() != before
    }

    /// The messages `nick` wrote in `room`, oldest first.
    pub fn for_seat<'a>(
        &'a self,
        room: &'a str,
        nick: &'a str,
    ) -> impl Iterator<Item = &'a Outgoing> {
        self.items.iter().filter(move |item| item.room == room && item.nick == nick)
    }

    pub fn items(&self) -> &[Outgoing] {
        &self.items
    }

    /// The stored outbox (empty off the browser or without storage).
    pub fn load() -> Self {
        let stored = storage().and_then(|storage| storage.get_item(STORAGE_KEY).ok().flatten());
        Outbox::parse(stored.as_deref(), crate::page::now())
    }

    /// Changes the stored outbox and writes it back; returns what `change` returned.
    pub fn update<T>(change: impl FnOnce(&mut Outbox) -> T) -> T {
        let mut outbox = Outbox::load();
        let result = change(&mut outbox);
        if let Some(storage) = storage() {
            // Full or disabled storage (private mode): the outbox lasts as long as the page.
            let _ = storage.set_item(STORAGE_KEY, &outbox.to_json());
        }
        result
    }
}

/// Brings the stored outbox from `previous` to `current` (this page's view of it, before and
/// now): what left the list is removed, and what came is added if `ours` says this page typed
/// it (an entry found in storage is never written back: another tab may have delivered and
/// removed it meanwhile). Entries of other tabs stay as they are. Returns whether anything
/// was added (then there is something to send).
pub fn sync(previous: &[Outgoing], current: &[Outgoing], ours: impl Fn(&Outgoing) -> bool) -> bool {
    let (removed, added) = writes(previous, current, ours);
    if removed.is_empty() && added.is_empty() {
        return false;
    }
    Outbox::update(|outbox| {
        for item in &removed {
            outbox.remove(&item.client_id);
        }
        for item in &added {
            // Past the cap the stored list keeps what it has; the page said so already.
            let _ = outbox.add((*item).clone());
        }
    });
    !added.is_empty()
}

/// What [`sync`] writes: the entries that left, and those that came and this page typed.
fn writes<'a>(
    previous: &'a [Outgoing],
    current: &'a [Outgoing],
    ours: impl Fn(&Outgoing) -> bool,
) -> (Vec<&'a Outgoing>, Vec<&'a Outgoing>) {
    let (removed, mut added) = changes(previous, current);
    added.retain(|item| ours(item));
    (removed, added)
}

/// What went from `previous` to `current` (by client id): the entries removed, and the ones
/// added.
fn changes<'a>(
    previous: &'a [Outgoing],
    current: &'a [Outgoing],
) -> (Vec<&'a Outgoing>, Vec<&'a Outgoing>) {
    let within = |list: &[Outgoing], item: &Outgoing| {
        list.iter().any(|other| other.client_id == item.client_id)
    };
    let removed = previous.iter().filter(|item| !within(current, item)).collect();
    let added = current.iter().filter(|item| !within(previous, item)).collect();
    (removed, added)
}

fn storage() -> Option<web_sys::Storage> {
    if !cfg!(target_arch = "wasm32") {
        return None;
    }
    web_sys::window().and_then(|window| window.local_storage().ok().flatten())
}

/// A fresh random id for a message (26 hex digits, 104 random bits).
pub fn new_client_id() -> String {
    crate::page::random_token()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The page's view of the outbox, before and after a change, says what to write: the
    /// entries that left and the ones that came, nothing about the rest.
    #[test]
    fn changes_between_two_views() {
        let item = |id: &str| Outgoing {
            client_id: id.into(),
            room: "r".into(),
            nick: "n".into(),
            text: "t".into(),
            ts: 0,
            amends: None,
            delete: false,
        };
        let (before, after) = ([item("a"), item("b")], [item("b"), item("c")]);
        let (removed, added) = changes(&before, &after);
        assert_eq!((removed, added), (vec![&before[0]], vec![&after[1]]));
        let (removed, added) = changes(&after, &after);
        assert!(removed.is_empty() && added.is_empty());
        // Found in storage, not typed here: never written back (another tab may have
        // delivered it and taken it out meanwhile); leaving is written whoever typed it.
        let (removed, added) = writes(&before, &after, |item| item.client_id != "c");
        assert_eq!((removed, added), (vec![&before[0]], Vec::<&Outgoing>::new()));
    }

    fn item(id: &str, room: &str, nick: &str, ts: u64) -> Outgoing {
        Outgoing {
            client_id: id.into(),
            room: room.into(),
            nick: nick.into(),
            text: format!("text {id}"),
            ts,
            amends: None,
            delete: false,
        }
    }

    /// What is stored comes back in order; week-old entries and garbage are dropped.
    #[test]
    fn survives_a_round_trip_through_storage() {
        let mut outbox = Outbox::default();
        for (id, ts) in [("a", 1), ("b", MAX_AGE_MS + 5), ("c", MAX_AGE_MS + 6)] {
            outbox.add(item(id, "r", "ann", ts)).expect("room");
        }
        let read = Outbox::parse(Some(&outbox.to_json()), MAX_AGE_MS + 10);
        let ids: Vec<&str> = read.items().iter().map(|i| i.client_id.as_str()).collect();
        assert_eq!(ids, ["b", "c"], "a is over a week old");
        assert_eq!(Outbox::parse(Some("{oops"), 0), Outbox::default());
        assert_eq!(Outbox::parse(None, 0), Outbox::default());
    }

    /// A stored list longer than the cap (edited, or written by another version) is read back
    /// cut to the cap, oldest first.
    /// Edits and deletions wait like messages and are sent as what they are, with their
    /// client ids; an outbox stored before they existed still reads.
    #[test]
    fn edits_and_deletions_are_requests_of_their_own() {
        let edit = Outgoing { amends: Some(7), ..item("e", "r", "ann", 1) };
        let delete = Outgoing { delete: true, ..edit.clone() };
        assert_eq!(
            edit.request(),
            ClientMessage::Edit {
                room: "r".into(),
                id: 7,
                text: edit.text.clone(),
                client_id: Some("e".into())
            }
        );
        assert_eq!(
            delete.request(),
            ClientMessage::Delete { room: "r".into(), id: 7, client_id: Some("e".into()) }
        );
        let mut outbox = Outbox::default();
        outbox.add(delete.clone()).expect("room");
        let stored = outbox.to_json();
        assert_eq!(Outbox::parse(Some(&stored), 1).items(), [delete]);
        let older = r#"[{"client_id":"m","room":"r","nick":"ann","text":"hi","ts":1}]"#;
        let read = Outbox::parse(Some(older), 1);
        assert!(matches!(read.items()[0].request(), ClientMessage::Send { .. }));
    }

    #[test]
    fn reading_applies_the_cap() {
        let items: Vec<Outgoing> =
            (0..MAX_ITEMS + 50).map(|n| item(&n.to_string(), "r", "ann", 1)).collect();
        let json = serde_json::to_string(&items).expect("serialisable");
        let read = Outbox::parse(Some(&json), 2);
        assert_eq!(read.items().len(), MAX_ITEMS);
        assert_eq!(read.items()[0].client_id, "0");
        assert_eq!(read.items()[MAX_ITEMS - 1].client_id, (MAX_ITEMS - 1).to_string());
    }

    /// Adding twice keeps one entry, removing says whether it removed, and the bound holds.
    #[test]
    fn add_remove_and_bound() {
        let mut outbox = Outbox::default();
        outbox.add(item("a", "r", "ann", 1)).expect("room");
        outbox.add(item("a", "r", "ann", 1)).expect("same id again is fine");
        assert_eq!(outbox.items().len(), 1);
        assert!(outbox.remove("a"));
        assert!(!outbox.remove("a"));
        for n in 0..MAX_ITEMS {
            outbox.add(item(&n.to_string(), "r", "ann", 1)).expect("room");
        }
        assert_eq!(outbox.add(item("over", "r", "ann", 1)), Err(Full));
    }

    /// Only the messages typed under this nick in this room are sent from this seat.
    #[test]
    fn seat_filters_room_and_nick() {
        let mut outbox = Outbox::default();
        for entry in [item("1", "r", "ann", 1), item("2", "s", "ann", 1), item("3", "r", "bob", 1)]
        {
            outbox.add(entry).expect("room");
        }
        let ids: Vec<&str> = outbox.for_seat("r", "ann").map(|i| i.client_id.as_str()).collect();
        assert_eq!(ids, ["1"]);
        assert_eq!(
            outbox.items()[0].request(),
            ClientMessage::Send {
                text: "text 1".into(),
                client_id: Some("1".into()),
                room: Some("r".into())
            }
        );
    }
}
