//! The page's state and the only place it changes: a reducer over [`Action`]s that come from
//! the connection and from the user.

use std::collections::{BTreeSet, VecDeque};
use std::rc::Rc;

use protocol::{ChatMessage, ErrorCode, MessageId, RoomInfo, ServerMessage};
use yew::Reducible;

use crate::outbox::Outgoing;

/// Most entries the message list holds; older ones are dropped so the DOM stays bounded.
pub const MAX_ENTRIES: usize = 500;
/// Most nicks a presence line names in each of its lists; the rest are counted.
pub const MAX_NAMED: usize = 5;

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
    /// The server closed the connection for a reason reconnecting cannot fix; this page stays
    /// disconnected (the reason is in the list and the error line).
    Closed,
}

/// One line of the message list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// Shared, so that copying the list on each change (the reducer's copy-on-write) copies
    /// pointers, not texts.
    Message(Rc<ChatMessage>),
    /// A status line, numbered locally so the list can key it.
    Notice { seq: u64, text: String, ts: u64 },
    /// Consecutive joins and leaves, as one line: who came (and stayed) and who went, so a
    /// burst of them, or someone renaming over and over, takes one line instead of pushing the
    /// messages off the screen. `ts` is the latest one's.
    Presence { seq: u64, joined: Vec<String>, left: Vec<String>, ts: u64 },
}

impl Entry {
    /// A key unique within the list: message ids are positive, notices count down from -1.
    pub fn key(&self) -> i128 {
        match self {
            Entry::Message(message) => i128::from(message.id),
            Entry::Notice { seq, .. } | Entry::Presence { seq, .. } => -i128::from(*seq) - 1,
        }
    }
}

/// Whether an error with this code answers a `join`: the room or nick was refused, the server
/// has no room for another open room, or a newer server refused it for a reason this build
/// does not know (better shown than waited on forever).
pub fn refuses_join(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::NickTaken
            | ErrorCode::InvalidNick
            | ErrorCode::InvalidRoom
            | ErrorCode::TooManyRooms
            | ErrorCode::Unknown
    )
}

/// A presence line in words: "alice, bob joined; carol left." Past [`MAX_NAMED`] nicks a list
/// is cut short with a count ("… and 12 others joined").
pub fn describe_presence(joined: &[String], left: &[String]) -> String {
    let list = |nicks: &[String], verb: &str| {
        let named = nicks.iter().take(MAX_NAMED).cloned().collect::<Vec<_>>().join(", ");
        match nicks.len().saturating_sub(MAX_NAMED) {
            0 => format!("{named} {verb}"),
            1 => format!("{named} and 1 other {verb}"),
            others => format!("{named} and {others} others {verb}"),
        }
    };
    let parts: Vec<String> = [(joined, "joined"), (left, "left")]
        .into_iter()
        .filter(|(nicks, _)| !nicks.is_empty())
        .map(|(nicks, verb)| list(nicks, verb))
        .collect();
    format!("{}.", parts.join("; "))
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
    /// The client ids of the messages typed on this page (not those found in storage): only
    /// these are ever written to storage by this page.
    pub posted: Rc<BTreeSet<String>>,
    /// The ids of the messages this page sent, from their acknowledgements: these are "your
    /// own" (a nick says nothing of who sent a message: someone may have held it before).
    pub own: Rc<BTreeSet<MessageId>>,
    /// Pages of missed messages are still coming (the welcome said more follow).
    catching_up: bool,
    /// The nick held before the server refused it on a rejoin, to offer it again in the form.
    pub former_nick: Option<String>,
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
            posted: Rc::default(),
            pending: Rc::default(),
            acknowledged: Vec::new(),
            own: Rc::default(),
            catching_up: false,
            former_nick: None,
            notices: 0,
        }
    }

    /// What the stored outbox holds as far as this page knows: the pending messages not
    /// acknowledged yet (an acknowledged one stays shown until the message itself arrives, but
    /// must not be sent again). The page keeps `localStorage` in step with this list (lib.rs),
    /// and the connection sends from it: acknowledgements and refusals are the reducer's to
    /// apply, once, here.
    pub fn outbox(&self) -> Vec<Outgoing> {
        let acknowledged = |item: &&Outgoing| {
            self.acknowledged.iter().any(|(client_id, _)| *client_id == item.client_id)
        };
        self.pending.iter().filter(|item| !acknowledged(item)).cloned().collect()
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
        Rc::make_mut(&mut self.own).insert(id);
        let shown = self.is_shown(id);
        if room == self.room && !shown && self.pending.iter().any(|i| i.client_id == client_id) {
            self.acknowledged.push((client_id, id));
        } else {
            self.settle(&client_id);
        }
    }

    /// Settles the acknowledged messages the list now shows (`all`: every one, because the
    /// list was just rebuilt from the server's history).
    fn settle_shown(&mut self, all: bool) {
        let (shown, waiting) = std::mem::take(&mut self.acknowledged)
            .into_iter()
            .partition(|&(_, id)| all || self.is_shown(id));
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

    /// Whether message `id` is in the list, or never will be (older than the newest shown,
    /// and no pages of missed messages are coming).
    fn is_shown(&self, id: MessageId) -> bool {
        let last = self.last_message_id().is_some_and(|last| last >= id);
        last && (!self.catching_up || self.position(id).is_ok())
    }

    fn notice(&mut self, text: String, ts: u64) {
        self.notices += 1;
        self.push(Entry::Notice { seq: self.notices, text, ts });
    }

    /// Adds a join (`joined`) or leave of `nick` to the presence line the list ends with, or
    /// starts one. Coming and going within one burst cancel out.
    fn presence(&mut self, nick: String, joined: bool, ts: u64) {
        let entries = Rc::make_mut(&mut self.entries);
        if let Some(Entry::Presence { joined: came, left: went, ts: last_ts, .. }) =
            entries.back_mut()
        {
            let (add, undo) =
                if joined { (&mut *came, &mut *went) } else { (&mut *went, &mut *came) };
            match undo.iter().position(|other| *other == nick) {
                Some(at) => {
                    undo.remove(at);
                }
                None if !add.contains(&nick) => add.push(nick),
                None => {}
            }
            *last_ts = ts;
            if came.is_empty() && went.is_empty() {
                entries.pop_back();
            }
            return;
        }
        self.notices += 1;
        let (came, went) = if joined { (vec![nick], vec![]) } else { (vec![], vec![nick]) };
        self.push(Entry::Presence { seq: self.notices, joined: came, left: went, ts });
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
            Entry::Notice { .. } | Entry::Presence { .. } => None,
        })
    }

    /// Where message `id` is in the list (`Ok`), or the index just after the newest message
    /// older than it, where it belongs (`Err`).
    fn position(&self, id: MessageId) -> Result<usize, usize> {
        for (at, entry) in self.entries.iter().enumerate().rev() {
            if let Entry::Message(shown) = entry {
                if shown.id == id {
                    return Ok(at);
                }
                if shown.id < id {
                    return Err(at + 1);
                }
            }
        }
        Err(0)
    }

    /// Adds a message of this room where its id belongs, unless it is shown already: newer
    /// than everything at the end, an older one (a page of missed messages arriving after
    /// live ones) among the messages around it. Returns whether it was added.
    fn merge(&mut self, message: ChatMessage) -> bool {
        if self.last_message_id().is_none_or(|last| message.id > last) {
            self.push(Entry::Message(Rc::new(message)));
            return true;
        }
        let Err(at) = self.position(message.id) else { return false };
        let entries = Rc::make_mut(&mut self.entries);
        entries.insert(at, Entry::Message(Rc::new(message)));
        if entries.len() > MAX_ENTRIES {
            entries.pop_front();
        }
        true
    }

    fn on_server(&mut self, message: ServerMessage) {
        match message {
            ServerMessage::Welcome {
                room,
                nick,
                members,
                history,
                rooms,
                since,
                truncated,
                more,
            } => {
                let resumed = since.is_some() && room == self.room && self.is_joined();
                if resumed {
                    // What was missed while away, after what is shown.
                    if truncated {
                        self.notice("Older messages could not be loaded.".into(), now());
                    }
                    for message in history {
                        self.merge(message);
                    }
                    self.notice("Reconnected.".into(), now());
                } else {
                    let sent: BTreeSet<MessageId> =
                        history.iter().map(|m| m.id).filter(|id| self.own.contains(id)).collect();
                    self.own = Rc::new(sent);
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
                self.catching_up = more;
                self.room = room;
                self.nick = Some(nick);
                self.former_nick = None;
                self.members = members;
                self.rooms = rooms;
                self.error = None;
                self.typing.clear();
                self.settle_shown(true);
            }
            ServerMessage::Message(message) => {
                // Frames from a room we just left, or repeats, are not shown.
                if message.room == self.room {
                    let from = message.from.clone();
                    if self.merge(message) {
                        self.stop_typing(&from);
                        self.settle_shown(false);
                    }
                }
            }
            ServerMessage::History { room, messages, after, more, .. } => {
                // Pages for a room the page has left are of no use any more.
                if room == self.room && self.is_joined() {
                    for message in messages {
                        self.merge(message);
                    }
                    if after.is_some() && !more {
                        self.catching_up = false;
                    }
                    self.settle_shown(false);
                }
            }
            ServerMessage::Joined { room, nick, ts } if room == self.room => {
                self.presence(nick.clone(), true, ts);
                if !self.members.contains(&nick) {
                    self.members.push(nick);
                    self.members.sort_by_key(|nick| nick.to_lowercase());
                }
            }
            ServerMessage::Left { room, nick, ts } if room == self.room => {
                self.presence(nick.clone(), false, ts);
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
                    // Rejoining after an outage, the nick (or room) was refused: the socket
                    // has no room now, so ask the user instead of showing a dead chat.
                    None if refuses_join(code) && self.connection != ConnectionState::Online => {
                        if let Some(nick) = self.nick.take() {
                            self.former_nick = Some(nick);
                        }
                    }
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
    /// The server closed the connection for good; `message` says why, for people.
    Closed {
        message: String,
    },
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
    /// A message found waiting in the stored outbox (another visit's, or another tab's).
    Queued(Outgoing),
    /// The user sent a message: it waits in the outbox for its acknowledgement (refused if
    /// too many wait already).
    Post(Outgoing),
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
            Action::Closed { message } => {
                state.connection = ConnectionState::Closed;
                state.notice(message.clone(), now());
                state.error = Some(message);
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
            Action::Post(item) => {
                Rc::make_mut(&mut state.posted).insert(item.client_id.clone());
                if state.outbox().len() >= crate::outbox::MAX_ITEMS {
                    state.error = Some(format!(
                        "{} messages are still waiting to be sent; wait until they are.",
                        crate::outbox::MAX_ITEMS
                    ));
                } else if !state.pending.iter().any(|queued| queued.client_id == item.client_id) {
                    Rc::make_mut(&mut state.pending).push(item);
                }
            }
        }
        Rc::new(state)
    }
}

pub use crate::page::now;

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: u64, room: &str, text: &str) -> ChatMessage {
        ChatMessage {
            id,
            room: room.into(),
            from: "alice".into(),
            text: text.into(),
            ts: 1,
            bot: false,
        }
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
            more: false,
        })
    }

    fn notices(state: &State) -> Vec<String> {
        state
            .entries
            .iter()
            .filter_map(|e| match e {
                Entry::Notice { text, .. } => Some(text.clone()),
                Entry::Presence { joined, left, .. } => Some(describe_presence(joined, left)),
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
    /// The state owns the outbox: a posted message is in it until acknowledged (then it stays
    /// shown as pending but leaves the outbox, so it is not sent again) or refused for good;
    /// past the cap a post is refused with an explanation.
    #[test]
    fn the_outbox_is_a_projection_of_the_state() {
        let item = |id: &str| Outgoing {
            client_id: id.into(),
            room: "a".into(),
            nick: "bob".into(),
            text: id.into(),
            ts: 1,
        };
        let state = reduce(Rc::new(State::new("a".into())), [welcome("a", vec![])]);
        let state = reduce(state, [Action::Post(item("x")), Action::Post(item("y"))]);
        let ids = |state: &State| -> Vec<String> {
            state.outbox().into_iter().map(|item| item.client_id).collect()
        };
        assert_eq!(ids(&state), ["x", "y"]);
        let ack = ServerMessage::Ack { client_id: "x".into(), id: 5, room: "a".into() };
        let state = reduce(state, [Action::Server(ack)]);
        assert_eq!(ids(&state), ["y"], "acknowledged: not to be sent again");
        assert_eq!(state.pending_here().len(), 2, "but shown until the message arrives");
        let refused = ServerMessage::Error {
            code: protocol::ErrorCode::TextTooLong,
            message: "Too long.".into(),
            retry_after_ms: None,
            client_id: Some("y".into()),
        };
        let state = reduce(state, [Action::Server(refused)]);
        assert!(ids(&state).is_empty());

        let posts = (0..crate::outbox::MAX_ITEMS).map(|i| Action::Post(item(&format!("m{i}"))));
        let full = reduce(Rc::new(State::new("a".into())), posts);
        let full = reduce(full, [Action::Post(item("one-too-many"))]);
        assert_eq!(full.outbox().len(), crate::outbox::MAX_ITEMS);
        assert!(full.error.as_deref().is_some_and(|e| e.contains("still waiting")));
    }

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
                Entry::Notice { .. } | Entry::Presence { .. } => None,
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
        assert_eq!(notices(&state)[1..], ["Carol joined; alice left."], "one line for the burst");
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

    fn page(room: &str, after: u64, history: Vec<ChatMessage>, more: bool) -> Action {
        Action::Server(ServerMessage::History {
            room: room.into(),
            messages: history,
            before: None,
            after: Some(after),
            more,
        })
    }

    fn live(id: u64, room: &str) -> Action {
        Action::Server(ServerMessage::Message(message(id, room, &id.to_string())))
    }

    fn ids(state: &State) -> Vec<u64> {
        state
            .entries
            .iter()
            .filter_map(|e| match e {
                Entry::Message(m) => Some(m.id),
                Entry::Notice { .. } | Entry::Presence { .. } => None,
            })
            .collect()
    }

    /// Pages of missed messages join the list in id order around messages that arrived live
    /// meanwhile, with nothing twice; the missed ones come before the "Reconnected." line.
    #[test]
    fn pages_merge_in_id_order() {
        let state =
            reduce(Rc::new(State::new("a".into())), [welcome("a", vec![message(1, "a", "1")])]);
        let mut more =
            resumed("a", vec![message(2, "a", "2"), message(3, "a", "3")], Some(1), false);
        if let Action::Server(ServerMessage::Welcome { more, .. }) = &mut more {
            *more = true;
        }
        let state = reduce(state, [more, live(10, "a"), live(10, "a")]);
        assert_eq!(ids(&state), [1, 2, 3, 10]);
        let state = reduce(
            state,
            [
                page("a", 3, vec![message(3, "a", "3"), message(4, "a", "4")], true),
                live(11, "a"),
                page(
                    "a",
                    4,
                    vec![message(5, "a", "5"), message(10, "a", "10"), message(11, "a", "11")],
                    false,
                ),
            ],
        );
        assert_eq!(ids(&state), [1, 2, 3, 4, 5, 10, 11]);
        let reconnected = state
            .entries
            .iter()
            .position(|e| matches!(e, Entry::Notice { text, .. } if text == "Reconnected."));
        let five = state.entries.iter().position(|e| e.key() == 5);
        assert!(five < reconnected, "missed messages come before the line saying we are back");
        let state = reduce(state, [page("b", 11, vec![message(12, "b", "other room")], false)]);
        assert_eq!(ids(&state), [1, 2, 3, 4, 5, 10, 11], "a page for another room is ignored");
    }

    /// While pages are still coming, an acknowledged message older than the newest live one
    /// stays pending until its page brings it.
    #[test]
    fn acknowledged_messages_wait_for_their_page() {
        let item = Outgoing {
            client_id: "x".into(),
            room: "a".into(),
            nick: "bob".into(),
            text: "x".into(),
            ts: 1,
        };
        let state =
            reduce(Rc::new(State::new("a".into())), [welcome("a", vec![message(1, "a", "1")])]);
        let mut more = resumed("a", vec![], Some(1), false);
        if let Action::Server(ServerMessage::Welcome { more, .. }) = &mut more {
            *more = true;
        }
        let ack = ServerMessage::Ack { client_id: "x".into(), id: 5, room: "a".into() };
        let state = reduce(state, [Action::Queued(item), more, live(9, "a"), Action::Server(ack)]);
        assert_eq!(state.pending_here().len(), 1, "5 is not shown yet");
        let state = reduce(state, [page("a", 1, vec![message(5, "a", "x")], false)]);
        assert!(state.pending_here().is_empty());
        assert!(state.own.contains(&5));
    }

    /// "Your own" messages are the ones this page sent (their acks name them), not whichever
    /// carry the page's nick: someone else may have used it before.
    #[test]
    fn own_messages_are_the_acknowledged_ones() {
        let from = |id: u64, nick: &str| {
            let mut m = message(id, "a", "t");
            m.from = nick.into();
            Action::Server(ServerMessage::Message(m))
        };
        let ack = ServerMessage::Ack { client_id: "x".into(), id: 7, room: "a".into() };
        let state = reduce(
            Rc::new(State::new("a".into())),
            [
                welcome("a", vec![]),
                from(6, "bob"),
                Action::Server(ack),
                from(7, "bob"),
                from(8, "alice"),
            ],
        );
        assert_eq!(state.nick.as_deref(), Some("bob"));
        assert_eq!(state.own.iter().copied().collect::<Vec<_>>(), [7]);
        let state = reduce(state, [welcome("a", vec![message(7, "a", "t")])]);
        assert!(state.own.contains(&7), "still ours in a rebuilt list");
        let state = reduce(state, [welcome("b", vec![])]);
        assert!(state.own.is_empty(), "forgotten with the list");
    }

    /// A rejoin after an outage refused because the nick was taken meanwhile shows the join
    /// form with the reason (and the old nick to edit); a refused rename while online stays
    /// where it was.
    #[test]
    fn a_refused_rejoin_asks_for_another_nick() {
        let taken = || {
            Action::Server(ServerMessage::error(protocol::ErrorCode::NickTaken, "bob is taken."))
        };
        let online = reduce(Rc::new(State::new("a".into())), [welcome("a", vec![])]);
        let state = reduce(online.clone(), [taken()]);
        assert_eq!(state.nick.as_deref(), Some("bob"), "a refused rename keeps the seat");

        let state = reduce(
            online,
            [Action::Disconnected { attempt: 1, delay_ms: 300 }, Action::Connecting, taken()],
        );
        assert!(!state.is_joined(), "the join form shows");
        assert_eq!(state.former_nick.as_deref(), Some("bob"));
        assert_eq!(state.error.as_deref(), Some("bob is taken."));
        let state = reduce(state, [welcome("a", vec![])]);
        assert_eq!((state.is_joined(), state.former_nick.clone()), (true, None));
    }

    /// A burst of joins and leaves is one line; someone renaming over and over shows as where
    /// they started and where they ended; a message starts a new line.
    #[test]
    fn presence_bursts_collapse_into_one_line() {
        let joined = |nick: &str| {
            Action::Server(ServerMessage::Joined { room: "a".into(), nick: nick.into(), ts: 2 })
        };
        let left = |nick: &str| {
            Action::Server(ServerMessage::Left { room: "a".into(), nick: nick.into(), ts: 3 })
        };
        let mut actions = vec![welcome("a", vec![]), left("x")];
        for n in 0..100 {
            actions.push(joined(&format!("x{n}")));
            actions.push(left(&format!("x{n}")));
        }
        actions.push(joined("x100"));
        let state = reduce(Rc::new(State::new("a".into())), actions);
        assert_eq!(notices(&state)[1..], ["x100 joined; x left."]);
        assert_eq!(state.entries.len(), 2, "the welcome line and one presence line");

        let state = reduce(state, [live(5, "a"), joined("carol"), joined("dave"), left("x100")]);
        assert_eq!(notices(&state)[2..], ["carol, dave joined; x100 left."]);
        let state = reduce(state, [joined("x100"), left("carol"), left("dave")]);
        assert_eq!(notices(&state).len(), 2, "a burst that changed nothing leaves no line");
    }

    /// Long lists name a few and count the rest.
    #[test]
    fn presence_lines_name_a_few() {
        let nicks = |n: usize| (0..n).map(|i| format!("n{i}")).collect::<Vec<_>>();
        assert_eq!(describe_presence(&nicks(1), &[]), "n0 joined.");
        assert_eq!(describe_presence(&[], &nicks(2)), "n0, n1 left.");
        assert_eq!(
            describe_presence(&nicks(6), &nicks(8)),
            "n0, n1, n2, n3, n4 and 1 other joined; n0, n1, n2, n3, n4 and 3 others left."
        );
    }

    /// A close that reconnecting cannot fix leaves the page disconnected, saying why.
    #[test]
    fn closed_by_the_server_says_why() {
        let state = reduce(
            Rc::new(State::new("a".into())),
            [welcome("a", vec![]), Action::Closed { message: "Too fast.".into() }],
        );
        assert_eq!(state.connection, ConnectionState::Closed);
        assert_eq!(state.error.as_deref(), Some("Too fast."));
        assert_eq!(notices(&state).last().map(String::as_str), Some("Too fast."));
    }
}
