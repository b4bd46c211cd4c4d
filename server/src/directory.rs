//! `Directory`: which rooms are open and who sits in each, as plain data that the lobby owns.
//! Every join and leave passes through it, so it alone knows when a room is empty: it opens a
//! room (a new instance) on the first seat and closes it when the last seat is released. It
//! also keeps the room list: active rooms ordered by member count and quiet rooms (messages,
//! nobody in them) by last activity, each kept sorted as it changes, so answering a join or a
//! `list_rooms` reads at most the first [`MAX_LISTED_ROOMS`] entries instead of sorting every
//! room. No actors: the lobby hands in how to start a room and carries out closes.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap, HashSet};

use protocol::{RoomInfo, UnixMillis};

use crate::ids::{ConnId, RoomInstance};

/// How many rooms a room list names at most (the busiest first).
pub const MAX_LISTED_ROOMS: usize = 100;
/// How many quiet rooms are remembered (the most recently active).
const KEPT_QUIET_ROOMS: usize = 2 * MAX_LISTED_ROOMS;

/// The open rooms, each with a handle of type `T` (the lobby's: the room actor's address), and
/// the room list.
#[derive(Debug)]
pub struct Directory<T> {
    rooms: HashMap<String, Open<T>>,
    list: RoomList,
    /// The instance number the next room opened gets.
    next_instance: RoomInstance,
}

#[derive(Debug)]
struct Open<T> {
    handle: T,
    instance: RoomInstance,
    members: HashSet<ConnId>,
    /// Calls of the HTTP API: they keep the room open but are nobody in it.
    visitors: HashSet<ConnId>,
}

/// Where a connection was seated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seated<T> {
    pub handle: T,
    pub instance: RoomInstance,
    /// It was not seated there already (a member renaming itself is).
    pub newcomer: bool,
}

/// A room whose last member left: its owner closes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emptied<T> {
    pub handle: T,
    pub instance: RoomInstance,
}

impl<T: Clone> Directory<T> {
    /// No room open; the quiet rooms the store knows.
    pub fn new(quiet: impl IntoIterator<Item = (String, UnixMillis)>) -> Self {
        Directory { rooms: HashMap::new(), list: RoomList::new(quiet), next_instance: 1 }
    }

    pub fn is_open(&self, name: &str) -> bool {
        self.rooms.contains_key(name)
    }

    /// How many rooms are open.
    pub fn open_rooms(&self) -> usize {
        self.rooms.len()
    }

    /// The handle of `name`'s open instance.
    pub fn handle(&self, name: &str) -> Option<&T> {
        self.rooms.get(name).map(|open| &open.handle)
    }

    /// Every open room's handle.
    pub fn handles(&self) -> impl Iterator<Item = &T> {
        self.rooms.values().map(|open| &open.handle)
    }

    /// Counts `conn` among `name`'s members, opening the room first (with `start`, given the
    /// new instance's number) if it is not open.
    pub fn seat(
        &mut self,
        name: &str,
        conn: ConnId,
        start: impl FnOnce(RoomInstance) -> T,
    ) -> Seated<T> {
        self.take_seat(name, conn, start, false)
    }

    /// As [`Directory::seat`], for a visitor (an HTTP API call): it keeps the room open until
    /// released, but is not counted among the room's members in the list.
    pub fn visit(
        &mut self,
        name: &str,
        conn: ConnId,
        start: impl FnOnce(RoomInstance) -> T,
    ) -> Seated<T> {
        self.take_seat(name, conn, start, true)
    }

    fn take_seat(
        &mut self,
        name: &str,
        conn: ConnId,
        start: impl FnOnce(RoomInstance) -> T,
        visitor: bool,
    ) -> Seated<T> {
        if !self.rooms.contains_key(name) {
            let instance = self.next_instance;
            self.next_instance += 1;
            let open = Open {
                handle: start(instance),
                instance,
                members: HashSet::new(),
                visitors: HashSet::new(),
            };
            self.rooms.insert(name.to_owned(), open);
        }
        let Some(open) = self.rooms.get_mut(name) else { unreachable!("opened above") };
        let seats = if visitor { &mut open.visitors } else { &mut open.members };
        let newcomer = seats.insert(conn);
        let seated = Seated { handle: open.handle.clone(), instance: open.instance, newcomer };
        let members = open.members.len();
        self.list.set_members(name, members);
        seated
    }

    /// Takes `conn`'s seat in `name` away; if that emptied the room it is no longer open, and
    /// its handle comes back to be closed. Releasing a seat that is not there changes nothing.
    pub fn release(&mut self, name: &str, conn: ConnId) -> Option<Emptied<T>> {
        let open = self.rooms.get_mut(name)?;
        open.members.remove(&conn);
        open.visitors.remove(&conn);
        let members = open.members.len();
        self.list.set_members(name, members);
        if members + open.visitors.len() > 0 {
            return None;
        }
        let open = self.rooms.remove(name)?;
        Some(Emptied { handle: open.handle, instance: open.instance })
    }

    /// As [`Directory::release`], but only if `name`'s open instance is `instance`: news from
    /// an instance that has closed since is stale.
    pub fn release_from(
        &mut self,
        name: &str,
        conn: ConnId,
        instance: RoomInstance,
    ) -> Option<Emptied<T>> {
        if self.rooms.get(name).is_some_and(|open| open.instance == instance) {
            self.release(name, conn)
        } else {
            None
        }
    }

    /// A room with messages closed: list it among the quiet rooms.
    pub fn closed(&mut self, name: String, last_ts: UnixMillis) {
        self.list.closed(name, last_ts);
    }

    /// The room list (see [`RoomList::list`]).
    pub fn list(&self, leaving: &[String]) -> Vec<RoomInfo> {
        self.list.list(leaving)
    }
}

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
    /// [`MAX_LISTED_ROOMS`]. `leaving` are the rooms a joining connection is about to leave:
    /// each is counted one member short, since the joiner counts in its new room already.
    pub fn list(&self, leaving: &[String]) -> Vec<RoomInfo> {
        // One more than needed: the room counted short may drop a place or out of the list.
        let mut rooms: Vec<RoomInfo> = self
            .active
            .iter()
            .take(MAX_LISTED_ROOMS + 1)
            .filter_map(|(Reverse(members), name)| {
                let members = members - usize::from(leaving.contains(name));
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

    /// The first seat opens a room (a new instance each time), the last release closes it;
    /// a seat taken twice (a rename) is not a newcomer, and releasing it once empties the room.
    #[test]
    fn seats_open_and_close_rooms() {
        let mut directory: Directory<RoomInstance> = Directory::new([]);
        let first = directory.seat("r", 1, |instance| instance);
        assert_eq!(first, Seated { handle: 1, instance: 1, newcomer: true });
        assert!(directory.seat("r", 2, |_| unreachable!("open already")).newcomer);
        assert!(!directory.seat("r", 1, |_| unreachable!("open already")).newcomer, "a rename");
        assert_eq!(directory.release("r", 1), None);
        assert_eq!(directory.release("r", 9), None, "not seated: nothing changes");
        assert_eq!(directory.release("r", 2), Some(Emptied { handle: 1, instance: 1 }));
        assert!(!directory.is_open("r"));
        assert_eq!(directory.seat("r", 3, |instance| instance).instance, 2, "a new instance");
    }

    /// A release from an instance that has closed since (a stale eviction) changes nothing.
    #[test]
    fn stale_releases_are_ignored() {
        let mut directory: Directory<()> = Directory::new([]);
        directory.seat("r", 1, |_| ());
        directory.release("r", 1);
        directory.seat("r", 1, |_| ());
        assert_eq!(directory.release_from("r", 1, 1), None, "instance 1 is gone");
        assert!(directory.is_open("r"));
        assert!(directory.release_from("r", 1, 2).is_some());
    }

    /// The room list follows the seats.
    #[test]
    fn the_list_follows_the_seats() {
        let mut directory: Directory<()> = Directory::new([("quiet".to_owned(), 5)]);
        directory.seat("a", 1, |_| ());
        directory.seat("a", 2, |_| ());
        directory.seat("b", 3, |_| ());
        assert_eq!(names(&directory.list(&[])), [("a", 2), ("b", 1), ("quiet", 0)]);
        assert_eq!(names(&directory.list(&["b".into()])), [("a", 2), ("quiet", 0)]);
        directory.release("a", 1);
        assert_eq!(directory.open_rooms(), 2);
        assert_eq!(names(&directory.list(&[])), [("a", 1), ("b", 1), ("quiet", 0)]);
    }

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
            names(&list.list(&[])),
            [("c", 3), ("a", 2), ("b", 2), ("old", 1), ("recent", 0)]
        );
        list.set_members("c", 1);
        list.set_members("a", 0);
        list.closed("a".to_owned(), 9);
        assert_eq!(
            names(&list.list(&[])),
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
        assert_eq!(names(&list.list(&["from".into()])), [("alone", 1), ("from", 1), ("to", 1)]);
        assert_eq!(names(&list.list(&["alone".into()])), [("from", 2), ("to", 1)]);
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
        let rooms = list.list(&[]);
        assert_eq!(rooms.len(), MAX_LISTED_ROOMS);
        assert_eq!((rooms[0].name.as_str(), rooms[0].members), ("busy-149", 150));
        assert_eq!(list.quiet.len(), KEPT_QUIET_ROOMS);
        assert_eq!(list.active(), 150);
        for i in 0..150 {
            list.set_members(&format!("busy-{i:03}"), 0);
        }
        let rooms = list.list(&[]);
        assert_eq!(rooms.first().map(|room| room.name.as_str()), Some("quiet-499"));
        assert_eq!(rooms.len(), MAX_LISTED_ROOMS);
    }

    /// A visitor keeps a room open without being listed as a member of it.
    #[test]
    fn visitors_keep_a_room_open_but_are_nobody_in_it() {
        let mut rooms: Directory<u64> = Directory::new([]);
        let visited = rooms.visit("r", 7, |instance| instance);
        assert!(visited.newcomer && rooms.is_open("r"));
        assert!(rooms.list(&[]).iter().all(|room| room.name != "r"), "not active");
        rooms.seat("r", 1, |_| unreachable!("open already"));
        assert_eq!(rooms.list(&[])[0].members, 1, "the visitor is not counted");
        assert_eq!(rooms.release("r", 1), None, "the visitor keeps it open");
        assert!(rooms.release("r", 7).is_some(), "the last one out closes it");
        assert!(!rooms.is_open("r"));
    }
}
