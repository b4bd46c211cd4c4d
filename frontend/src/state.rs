//! The page's state and the only place it changes: a reducer over [`Action`]s that come from
//! the connection and from the user.

use std::collections::VecDeque;
use std::rc::Rc;

use protocol::{ChatMessage, RoomInfo, ServerMessage};
use yew::Reducible;

use crate::outbox::Outgoing;

/// Most entries the message list holds; older ones are dropped so the DOM stays bounded.
pub const MAX_ENTRIES: usize = 500;

/// Where the connection to the server stands, as the page shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionState {
    /// No connection was asked for yet (the join form is showing).
    Idle,
    /// Opening the socket and joining.
    Connecting,
    /// Joined and live.
    Online,
    /// The connection dropped; the next attempt starts in `delay_ms`.
    Reconnecting { attempt: u32, delay_ms: u32 },
    /// Another tab with the same identity took over; this one stays disconnected.
    Replaced,
}

/// One line of the message list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// Shared, so that copying the list on each change (the reducer's copy-on-write) copies
    /// pointers, not texts.
    Message(Rc<ChatMessage>),
    /// A presence or status line, numbered locally so the list can key it.
    Notice { seq: u64, text: String, ts: u64 },
}

impl Entry {
    /// A key unique within the list: message ids are positive, notices count down from -1.
    pub fn key(&self) -> i128 {
        match self {
            Entry::Message(message) => i128::from(message.id),
            Entry::Notice { seq, .. } => -i128::from(*seq) - 1,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct State {
    pub connection: ConnectionState,
    /// The room joined, or being joined.
    pub room: String,
    /// The nick the server accepted (`None` until the first welcome).
    pub nick: Option<String>,
    pub members: Vec<String>,
    /// Shared so that passing the list to a component is cheap and compares by pointer.
    pub entries: Rc<VecDeque<Entry>>,
    pub rooms: Vec<RoomInfo>,
    /// The last problem the server reported, in words for people.
    pub error: Option<String>,
    /// Who is typing in the room, with when their indication expires (Unix ms).
    pub typing: Vec<(String, u64)>,
    /// Messages sent (or typed offline) and not shown as delivered yet, every room's, oldest
    /// first.
    pub pending: Rc<Vec<Outgoing>>,
    /// Pending messages the server acknowledged, with their ids: each stays shown as pending
    /// until the message itself arrives (the ack comes first), so it never blinks out of the
    /// list between the two frames.
    acknowledged: Vec<(String, u64)>,
    notices: u64,
}

impl State {
    pub fn new(room: String) -> Self {
        State {
            connection: ConnectionState::Idle,
            room,
            nick: None,
            members: Vec::new(),
            entries: Rc::default(),
            rooms: Vec::new(),
            error: None,
            typing: Vec::new(),
            pending: Rc::default(),
            acknowledged: Vec::new(),
            notices: 0,
        }
    }

    /// The pending messages to show: this room's, typed under the current nick.
    pub fn pending_here(&self) -> Vec<Outgoing> {
        let nick = self.nick.as_deref().unwrap_or_default();
        self.pending
            .iter()
            .filter(|item| item.room == self.room && item.nick == nick)
            .cloned()
            .collect()
    }

    fn settle(&mut self, client_id: &str) {
        if self.pending.iter().any(|item| item.client_id == client_id) {
            Rc::make_mut(&mut self.pending).retain(|item| item.client_id != client_id);
        }
    }

    /// The server stored a pending message as `id`: it goes once the list shows that message.
    fn acknowledge(&mut self, client_id: String, id: u64, room: &str) {
        let shown = self.last_message_id().is_some_and(|last| last >= id);
        if room == self.room && !shown && self.pending.iter().any(|i| i.client_id == client_id) {
            self.acknowledged.push((client_id, id));
        } else {
            self.settle(&client_id);
        }
    }

    /// Settles the acknowledged messages the list now shows (`all`: every one, because the
    /// list was just rebuilt from the server's history).
    fn settle_shown(&mut self, all: bool) {
        let last = self.last_message_id().unwrap_or(0);
        let (shown, waiting) = std::mem::take(&mut self.acknowledged)
            .into_iter()
            .partition(|&(_, id)| all || id <= last);
        self.acknowledged = waiting;
        for (client_id, _) in shown {
            self.settle(&client_id);
        }
    }

    pub fn is_joined(&self) -> bool {
        self.nick.is_some()
    }

    /// The nicks currently typing, in the order they started.
    pub fn typists(&self) -> Vec<String> {
        self.typing.iter().map(|(nick, _)| nick.clone()).collect()
    }

    fn stop_typing(&mut self, nick: &str) {
        self.typing.retain(|(typist, _)| typist != nick);
    }

    fn notice(&mut self, text: String, ts: u64) {
        self.notices += 1;
        self.push(Entry::Notice { seq: self.notices, text, ts });
    }

    fn push(&mut self, entry: Entry) {
        let entries = Rc::make_mut(&mut self.entries);
        if entries.len() == MAX_ENTRIES {
            entries.pop_front();
        }
        entries.push_back(entry);
    }

    fn last_message_id(&self) -> Option<u64> {
        self.entries.iter().rev().find_map(|entry| match entry {
            Entry::Message(message) => Some(message.id),
            Entry::Notice { .. } => None,
        })
    }

    fn on_server(&mut self, message: ServerMessage) {
        match message {
            ServerMessage::Welcome { room, nick, members, history, rooms, since, truncated } => {
                let resumed = since.is_some() && room == self.room && self.is_joined();
                if resumed {
                    // What was missed while away, after what is shown.
                    let last = self.last_message_id().unwrap_or(0);
                    if truncated {
                        self.notice("Older messages could not be loaded.".into(), now());
                    }
                    for message in history.into_iter().filter(|message| message.id > last) {
                        self.push(Entry::Message(Rc::new(message)));
                    }
                    self.notice("Reconnected.".into(), now());
                } else {
                    self.entries = Rc::default();
                    if truncated {
                        self.notice("Earlier messages are not shown.".into(), now());
                    }
                    for message in history.into_iter().rev().take(MAX_ENTRIES - 2).rev() {
                        self.push(Entry::Message(Rc::new(message)));
                    }
                    self.notice(format!("You joined #{room} as {nick}."), now());
                }
                self.connection = ConnectionState::Online;
                self.room = room;
                self.nick = Some(nick);
                self.members = members;
                self.rooms = rooms;
                self.error = None;
                self.typing.clear();
                self.settle_shown(true);
            }
            ServerMessage::Message(message) => {
                // Frames from a room we just left, or repeats, are not shown.
                let fresh = self.last_message_id().is_none_or(|last| message.id > last);
                if message.room == self.room && fresh {
                    self.stop_typing(&message.from);
                    self.push(Entry::Message(Rc::new(message)));
                    self.settle_shown(false);
                }
            }
            ServerMessage::Joined { room, nick, ts } if room == self.room => {
                self.notice(format!("{nick} joined."), ts);
                if !self.members.contains(&nick) {
                    self.members.push(nick);
                    self.members.sort_by_key(|nick| nick.to_lowercase());
                }
            }
            ServerMessage::Left { room, nick, ts } if room == self.room => {
                self.notice(format!("{nick} left."), ts);
                self.stop_typing(&nick);
                self.members.retain(|member| *member != nick);
            }
            ServerMessage::Typing { room, nick } if room == self.room => {
                if self.nick.as_ref() != Some(&nick) {
                    let expires = now() + protocol::TYPING_TTL_MS;
                    match self.typing.iter_mut().find(|(typist, _)| *typist == nick) {
                        Some(entry) => entry.1 = expires,
                        None => self.typing.push((nick, expires)),
                    }
                }
            }
            ServerMessage::Joined { .. }
            | ServerMessage::Left { .. }
            | ServerMessage::Typing { .. } => {}
            ServerMessage::Rooms { rooms } => self.rooms = rooms,
            ServerMessage::Ack { client_id, id, room } => self.acknowledge(client_id, id, &room),
            ServerMessage::Error { code, message, client_id, .. } => {
                match client_id {
                    // Will be sent again: nothing for the reader to do.
                    Some(_) if code.is_transient() => return,
                    Some(client_id) => self.settle(&client_id),
                    None => {}
                }
                self.error = Some(message);
            }
        }
        self.count_current_room();
    }

    /// The room list comes from the server now and then; the current room's count is known
    /// live from its member list, so keep that entry exact in between.
    fn count_current_room(&mut self) {
        if !self.is_joined() {
            return;
        }
        let members = u32::try_from(self.members.len()).unwrap_or(u32::MAX);
        match self.rooms.iter_mut().find(|room| room.name == self.room) {
            Some(room) => room.members = members,
            None => self.rooms.push(RoomInfo { name: self.room.clone(), members }),
        }
    }
}

/// Everything that can change the state.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// The user chose a nick and room; the connection is being opened.
    Connect {
        room: String,
    },
    /// The socket is being opened (first time or again).
    Connecting,
    Server(ServerMessage),
    /// The socket closed; another attempt follows after the delay.
    Disconnected {
        attempt: u32,
        delay_ms: u32,
    },
    Replaced,
    /// The user asked to move to another room; the welcome confirms it.
    SwitchRoom {
        room: String,
    },
    /// The user saw (or fixed) the last error.
    DismissError,
    /// The page refused input before sending it (same words as the server would use).
    LocalError(String),
    /// Time passed: typing indications older than their expiry (Unix ms `now`) go away.
    Tick {
        now: u64,
    },
    /// A message is in the outbox, waiting for its acknowledgement.
    Queued(Outgoing),
}

impl Reducible for State {
    type Action = Action;

    fn reduce(self: Rc<Self>, action: Action) -> Rc<Self> {
        let mut state = Rc::unwrap_or_clone(self);
        match action {
            Action::Connect { room } => {
                state.room = room;
                state.connection = ConnectionState::Connecting;
                state.error = None;
            }
            Action::Connecting => state.connection = ConnectionState::Connecting,
            Action::Server(message) => state.on_server(message),
            Action::Disconnected { attempt, delay_ms } => {
                if state.connection == ConnectionState::Online {
                    state.notice("Connection lost; reconnecting…".into(), now());
                }
                state.connection = ConnectionState::Reconnecting { attempt, delay_ms };
            }
            Action::Replaced => {
                state.connection = ConnectionState::Replaced;
                state.notice(
                    "This chat was opened in another tab; this one is paused.".into(),
                    now(),
                );
            }
            Action::SwitchRoom { room } => {
                state.error = None;
                // The welcome for the new room replaces the list; until then say what happens.
                state.notice(format!("Moving to #{room}…"), now());
            }
            Action::DismissError => state.error = None,
            Action::LocalError(message) => state.error = Some(message),
            Action::Tick { now } => state.typing.retain(|(_, expires)| *expires > now),
            Action::Queued(item) => {
                if !state.pending.iter().any(|queued| queued.client_id == item.client_id) {
                    Rc::make_mut(&mut state.pending).push(item);
                }
            }
        }
        Rc::new(state)
    }
}

/// The current time in Unix milliseconds (0 off the browser, where only tests run).
pub fn now() -> u64 {
    if cfg!(target_arch = "wasm32") {
        // Milliseconds since the epoch fit easily in a u64; the float is integral.
        js_sys::Date::now() as u64
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: u64, room: &str, text: &str) -> ChatMessage {
        ChatMessage { id, room: room.into(), from: "alice".into(), text: text.into(), ts: 1 }
    }

    fn welcome(room: &str, history: Vec<ChatMessage>) -> Action {
        resumed(room, history, None, false)
    }

    fn resumed(
        room: &str,
        history: Vec<ChatMessage>,
        since: Option<u64>,
        truncated: bool,
    ) -> Action {
        Action::Server(ServerMessage::Welcome {
            room: room.into(),
            nick: "bob".into(),
            members: vec!["alice".into(), "bob".into()],
            history,
            rooms: vec![RoomInfo { name: room.into(), members: 2 }],
            since,
            truncated,
        })
    }

    fn notices(state: &State) -> Vec<String> {
        state
            .entries
            .iter()
            .filter_map(|e| match e {
                Entry::Notice { text, .. } => Some(text.clone()),
                Entry::Message(_) => None,
            })
            .collect()
    }

    /// A resumed welcome adds exactly what was missed after what is shown, and says when older
    /// messages are gone; a fresh one replaces the list.
    #[test]
    fn resumed_welcome_adds_what_was_missed() {
        let state = reduce(
            Rc::new(State::new("a".into())),
            [welcome("a", vec![message(1, "a", "one"), message(2, "a", "two")])],
        );
        let state = reduce(
            state,
            [resumed("a", vec![message(2, "a", "two"), message(4, "a", "four")], Some(1), false)],
        );
        assert_eq!(texts(&state), ["one", "two", "four"], "2 was already shown");
        assert_eq!(notices(&state).last().map(String::as_str), Some("Reconnected."));
        let state = reduce(state, [resumed("a", vec![message(9, "a", "nine")], Some(4), true)]);
        assert_eq!(texts(&state), ["one", "two", "four", "nine"]);
        assert!(notices(&state).iter().any(|n| n == "Older messages could not be loaded."));
        let state = reduce(state, [welcome("a", vec![message(3, "a", "other server")])]);
        assert_eq!(texts(&state), ["other server"], "not resumed: replaced");
    }

    /// Pending messages show until acknowledged or refused for good; a transient refusal keeps
    /// them (they are sent again) and is not shown as an error.
    #[test]
    fn pending_until_acknowledged() {
        let item = |id: &str| Outgoing {
            client_id: id.into(),
            room: "a".into(),
            nick: "bob".into(),
            text: id.into(),
            ts: 1,
        };
        let state = reduce(
            Rc::new(State::new("a".into())),
            [welcome("a", vec![]), Action::Queued(item("x")), Action::Queued(item("y"))],
        );
        let state = reduce(state, [Action::Queued(item("x"))]);
        assert_eq!(state.pending_here().len(), 2, "queued once");
        let ack = ServerMessage::Ack { client_id: "x".into(), id: 5, room: "a".into() };
        let state = reduce(state, [Action::Server(ack)]);
        assert_eq!(state.pending_here(), [item("x"), item("y")], "shown until the message is");
        let state = reduce(state, [Action::Server(ServerMessage::Message(message(4, "a", "e")))]);
        assert_eq!(state.pending_here().len(), 2, "an earlier message settles nothing");
        let state = reduce(state, [Action::Server(ServerMessage::Message(message(5, "a", "x")))]);
        assert_eq!(state.pending_here(), [item("y")]);
        assert_eq!(texts(&state), ["e", "x"], "the message replaced its pending line");
        let transient = ServerMessage::Error {
            code: protocol::ErrorCode::Unavailable,
            message: "try again".into(),
            retry_after_ms: None,
            client_id: Some("y".into()),
        };
        let state = reduce(state, [Action::Server(transient)]);
        assert_eq!((state.pending_here().len(), state.error.clone()), (1, None));
        let refused = ServerMessage::Error {
            code: protocol::ErrorCode::TextTooLong,
            message: "Too long.".into(),
            retry_after_ms: None,
            client_id: Some("y".into()),
        };
        let state = reduce(state, [Action::Server(refused)]);
        assert!(state.pending_here().is_empty());
        assert_eq!(state.error.as_deref(), Some("Too long."));
    }

    /// An acknowledged message whose frame was lost with the connection goes when the next
    /// welcome rebuilds the list (its history has it); one acknowledged after the page moved
    /// to another room goes at once.
    #[test]
    fn acknowledged_messages_settle_on_welcome_or_elsewhere() {
        let item = |id: &str, room: &str| Outgoing {
            client_id: id.into(),
            room: room.into(),
            nick: "bob".into(),
            text: id.into(),
            ts: 1,
        };
        let state = reduce(
            Rc::new(State::new("a".into())),
            [welcome("a", vec![]), Action::Queued(item("x", "a")), Action::Queued(item("y", "a"))],
        );
        let ack = |id: &str, n: u64| {
            Action::Server(ServerMessage::Ack { client_id: id.into(), id: n, room: "a".into() })
        };
        let state = reduce(state, [ack("x", 7)]);
        assert_eq!(state.pending_here().len(), 2);
        let state = reduce(state, [welcome("a", vec![message(7, "a", "x")])]);
        assert_eq!(state.pending_here(), [item("y", "a")]);
        let state = reduce(state, [welcome("b", vec![]), ack("y", 8)]);
        assert!(state.pending.is_empty(), "acknowledged for a room no longer shown");
    }

    fn reduce(state: Rc<State>, actions: impl IntoIterator<Item = Action>) -> Rc<State> {
        actions.into_iter().fold(state, Reducible::reduce)
    }

    fn texts(state: &State) -> Vec<String> {
        state
            .entries
            .iter()
            .filter_map(|e| match e {
                Entry::Message(m) => Some(m.text.clone()),
                Entry::Notice { .. } => None,
            })
            .collect()
    }

    /// A welcome puts the page online with the room's history and members.
    #[test]
    fn welcome_goes_online_with_history() {
        let state = Rc::new(State::new("general".into()));
        let state = reduce(state, [Action::Connect { room: "general".into() }]);
        assert_eq!(state.connection, ConnectionState::Connecting);
        let state = reduce(state, [welcome("general", vec![message(1, "general", "old")])]);
        assert_eq!(state.connection, ConnectionState::Online);
        assert_eq!(state.nick.as_deref(), Some("bob"));
        assert_eq!(state.members, ["alice", "bob"]);
        assert_eq!(texts(&state), ["old"]);
    }

    /// Messages for another room and repeated ids are not shown.
    #[test]
    fn foreign_and_repeated_messages_are_dropped() {
        let state = reduce(
            Rc::new(State::new("a".into())),
            [
                welcome("a", vec![message(5, "a", "five")]),
                Action::Server(ServerMessage::Message(message(6, "b", "other room"))),
                Action::Server(ServerMessage::Message(message(5, "a", "repeat"))),
                Action::Server(ServerMessage::Message(message(7, "a", "seven"))),
            ],
        );
        assert_eq!(texts(&state), ["five", "seven"]);
    }

    /// Joins and leaves update the member list and add notices.
    #[test]
    fn presence_updates_members() {
        let state = reduce(
            Rc::new(State::new("a".into())),
            [
                welcome("a", vec![]),
                Action::Server(ServerMessage::Joined {
                    room: "a".into(),
                    nick: "Carol".into(),
                    ts: 2,
                }),
                Action::Server(ServerMessage::Left {
                    room: "a".into(),
                    nick: "alice".into(),
                    ts: 3,
                }),
                Action::Server(ServerMessage::Joined {
                    room: "z".into(),
                    nick: "zed".into(),
                    ts: 4,
                }),
            ],
        );
        assert_eq!(state.members, ["bob", "Carol"]);
        assert_eq!(state.rooms, [RoomInfo { name: "a".into(), members: 2 }], "count kept live");
        let notices = state.entries.iter().filter(|e| matches!(e, Entry::Notice { .. })).count();
        assert_eq!(notices, 3, "welcome, Carol joined, alice left");
    }

    /// The list never grows past `MAX_ENTRIES`; the oldest go first.
    #[test]
    fn entries_are_bounded() {
        let mut state = reduce(Rc::new(State::new("a".into())), [welcome("a", vec![])]);
        for id in 1..=(MAX_ENTRIES as u64 + 50) {
            state = state.reduce(Action::Server(ServerMessage::Message(message(id, "a", "x"))));
        }
        assert_eq!(state.entries.len(), MAX_ENTRIES);
        assert_eq!(state.last_message_id(), Some(MAX_ENTRIES as u64 + 50));
    }

    /// Typing indications appear for others only, end with the typist's message or departure,
    /// and expire by themselves.
    #[test]
    fn typing_indications_come_and_go() {
        let typing = |nick: &str| {
            Action::Server(ServerMessage::Typing { room: "a".into(), nick: nick.into() })
        };
        let state = reduce(
            Rc::new(State::new("a".into())),
            [welcome("a", vec![]), typing("alice"), typing("carol"), typing("bob")],
        );
        assert_eq!(state.typists(), ["alice", "carol"], "bob is us");
        let state = reduce(state, [Action::Server(ServerMessage::Message(message(9, "a", "hi")))]);
        assert_eq!(state.typists(), ["carol"], "alice's message ends her typing");
        let state = reduce(state, [Action::Tick { now: protocol::TYPING_TTL_MS - 1 }]);
        assert_eq!(state.typists(), ["carol"]);
        let state = reduce(state, [Action::Tick { now: protocol::TYPING_TTL_MS }]);
        assert!(state.typists().is_empty(), "expired");
    }

    /// Losing the connection while online says so and shows the retry; errors are kept for
    /// display until dismissed.
    #[test]
    fn disconnect_and_errors() {
        let state = reduce(Rc::new(State::new("a".into())), [welcome("a", vec![])]);
        let state = reduce(state, [Action::Disconnected { attempt: 1, delay_ms: 500 }]);
        assert_eq!(state.connection, ConnectionState::Reconnecting { attempt: 1, delay_ms: 500 });
        let error = ServerMessage::error(protocol::ErrorCode::TextTooLong, "Too long.");
        let state = reduce(state, [Action::Server(error)]);
        assert_eq!(state.error.as_deref(), Some("Too long."));
        let state = reduce(state, [Action::DismissError]);
        assert_eq!(state.error, None);
    }
}
