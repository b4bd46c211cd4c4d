//! The room list as the lobby keeps it: active rooms ordered by member count and quiet rooms
//! (messages, nobody in them) by last activity, each kept sorted as it changes. Answering a
//! join or a `list_rooms` then reads at most the first [`MAX_LISTED_ROOMS`] entries instead of
//! sorting every room. Plain data, no actors.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};

use protocol::{RoomInfo, UnixMillis};

/// How many rooms a room list names at most (the busiest first).
pub const MAX_LISTED_ROOMS: usize = 100;
/// How many quiet rooms are remembered (the most recently active).
const KEPT_QUIET_ROOMS: usize = 2 * MAX_LISTED_ROOMS;

#[derive(Debug, Default)]
pub struct RoomList {
    /// Active rooms, busiest first, then by name.
    active: BTreeSet<(Reverse<usize>, String)>,
    members: HashMap<String, usize>,
    /// Rooms with messages, most recently active first, then by name.
    quiet: BTreeSet<(Reverse<UnixMillis>, String)>,
    last_ts: HashMap<String, UnixMillis>,
}

impl RoomList {
    /// A list that knows these quiet rooms (from the store, at start).
    pub fn new(quiet: impl IntoIterator<Item = (String, UnixMillis)>) -> Self {
        let mut list = RoomList::default();
        for (name, last_ts) in quiet {
            list.closed(name, last_ts);
        }
        list
    }

    /// `name` now has `members` members; 0 means it is no longer active.
    pub fn set_members(&mut self, name: &str, members: usize) {
        if let Some(old) = self.members.remove(name) {
            self.active.remove(&(Reverse(old), name.to_owned()));
        }
        if members > 0 {
            self.members.insert(name.to_owned(), members);
            self.active.insert((Reverse(members), name.to_owned()));
        }
    }

    /// A room with messages closed: list it among the quiet rooms (the most recent ones only).
    pub fn closed(&mut self, name: String, last_ts: UnixMillis) {
        if let Some(old) = self.last_ts.insert(name.clone(), last_ts) {
            self.quiet.remove(&(Reverse(old), name.clone()));
        }
        self.quiet.insert((Reverse(last_ts), name));
        while self.quiet.len() > KEPT_QUIET_ROOMS {
            if let Some((_, oldest)) = self.quiet.pop_last() {
                self.last_ts.remove(&oldest);
            }
        }
    }

    /// The active rooms, busiest first, then quiet rooms, most recently used first; at most
    /// [`MAX_LISTED_ROOMS`]. `leaving` is a room that a joining connection is about to leave:
    /// it is counted one member short, since the joiner counts in its new room already.
    pub fn list(&self, leaving: Option<&str>) -> Vec<RoomInfo> {
        // One more than needed: the room counted short may drop a place or out of the list.
        let mut rooms: Vec<RoomInfo> = self
            .active
            .iter()
            .take(MAX_LISTED_ROOMS + 1)
            .filter_map(|(Reverse(members), name)| {
                let members = members - usize::from(leaving == Some(name.as_str()));
                let members = u32::try_from(members).unwrap_or(u32::MAX);
                (members > 0).then(|| RoomInfo { name: name.clone(), members })
            })
            .collect();
        rooms.sort_by(|a, b| b.members.cmp(&a.members).then_with(|| a.name.cmp(&b.name)));
        rooms.truncate(MAX_LISTED_ROOMS);
        let room_left = MAX_LISTED_ROOMS - rooms.len();
        let quiet = self
            .quiet
            .iter()
            .filter(|(_, name)| !rooms.iter().any(|room| room.name == *name))
            .take(room_left)
            .map(|(_, name)| RoomInfo { name: name.clone(), members: 0 })
            .collect::<Vec<_>>();
        rooms.extend(quiet);
        rooms
    }

    /// How many rooms are active.
    pub fn active(&self) -> usize {
        self.members.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(rooms: &[RoomInfo]) -> Vec<(&str, u32)> {
        rooms.iter().map(|room| (room.name.as_str(), room.members)).collect()
    }

    /// Active rooms come busiest first (ties by name), then quiet ones by recency; a room that
    /// is active again is listed once, as active.
    #[test]
    fn busiest_then_most_recent() {
        let mut list = RoomList::new([("old".to_owned(), 1), ("recent".to_owned(), 5)]);
        list.set_members("b", 2);
        list.set_members("a", 2);
        list.set_members("c", 3);
        list.set_members("old", 1);
        assert_eq!(
            names(&list.list(None)),
            [("c", 3), ("a", 2), ("b", 2), ("old", 1), ("recent", 0)]
        );
        list.set_members("c", 1);
        list.set_members("a", 0);
        list.closed("a".to_owned(), 9);
        assert_eq!(
            names(&list.list(None)),
            [("b", 2), ("c", 1), ("old", 1), ("a", 0), ("recent", 0)]
        );
    }

    /// The room a joiner leaves counts one short, and drops out if the joiner was alone.
    #[test]
    fn the_room_being_left_counts_short() {
        let mut list = RoomList::default();
        list.set_members("from", 2);
        list.set_members("to", 1);
        list.set_members("alone", 1);
        assert_eq!(names(&list.list(Some("from"))), [("alone", 1), ("from", 1), ("to", 1)]);
        assert_eq!(names(&list.list(Some("alone"))), [("from", 2), ("to", 1)]);
    }

    /// At most a hundred rooms are listed, and only the newest quiet rooms are remembered.
    #[test]
    fn bounded() {
        let mut list = RoomList::default();
        for i in 0..150 {
            list.set_members(&format!("busy-{i:03}"), 1 + i);
        }
        for ts in 0..500 {
            list.closed(format!("quiet-{ts:03}"), ts);
        }
        let rooms = list.list(None);
        assert_eq!(rooms.len(), MAX_LISTED_ROOMS);
        assert_eq!((rooms[0].name.as_str(), rooms[0].members), ("busy-149", 150));
        assert_eq!(list.quiet.len(), KEPT_QUIET_ROOMS);
        assert_eq!(list.active(), 150);
        for i in 0..150 {
            list.set_members(&format!("busy-{i:03}"), 0);
        }
        let rooms = list.list(None);
        assert_eq!(rooms.first().map(|room| room.name.as_str()), Some("quiet-499"));
        assert_eq!(rooms.len(), MAX_LISTED_ROOMS);
    }
}
