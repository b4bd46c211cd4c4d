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

/// Whether an error with this code answers a `join`: the room or nick was refused, the room
/// keeps this person out (private, banned, not among a token's rooms), a rename was refused
/// while muted, the server has no room for another open room, or a newer server refused it
/// for a reason this build does not know (better shown than waited on forever).
pub fn refuses_join(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::NickTaken
            | ErrorCode::InvalidNick
            | ErrorCode::InvalidRoom
            | ErrorCode::TooManyRooms
            | ErrorCode::TooManyJoined
            | ErrorCode::Forbidden
            | ErrorCode::Banned
            | ErrorCode::Muted
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

/// Where scrolling back through a room's history stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Older {
    /// Older messages may exist: scrolling to the top asks for them.
    More,
    /// A page of older messages was asked for and has not arrived.
    Loading,
    /// The list starts at the oldest message the room keeps.
    Beginning,
}

/// One room the page is in (or is joining): its messages, members and what was missed.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomView {
    pub name: String,
    /// The nick the server accepted here (`None` until the room's welcome).
    pub nick: Option<String>,
    pub members: Vec<String>,
    /// Those of `members` signed in to their account (the others are guests).
    pub signed_in: Vec<String>,
    /// What the reader may do here beyond chatting (owner, moderator: delete any message).
    pub role: Option<protocol::Role>,
    /// Only members may join (and the room is left out of lists).
    pub private: bool,
    /// The last invitation code the reader made here (`Some(None)`: all were revoked).
    pub invitation: Option<Option<String>>,
    /// When that code stops working (Unix ms).
    pub invitation_expires: Option<u64>,
    /// The mutes and bans in force here, once a moderator asked (kept up to date by the
    /// room's `moderated` notices from then on).
    pub sanctions: Option<Vec<protocol::SanctionInfo>>,
    /// Shared so that passing the list to a component is cheap and compares by pointer.
    pub entries: Rc<VecDeque<Entry>>,
    /// Who is typing, with when their indication expires (Unix ms).
    pub typing: Vec<(String, u64)>,
    /// Messages that arrived while the room was not in view (another room open, or the tab
    /// hidden).
    pub unread: u32,
    /// How many of those name you (`@nick`).
    pub mentions: u32,
    pub older: Older,
    /// Pages of missed messages are still coming (the welcome said more follow).
    catching_up: bool,
    /// Older pages were loaded: the list may hold up to [`MAX_PAGED_ENTRIES`].
    paged: bool,
    /// The server said the room's history started over: the next welcome says so in the list.
    started_over: bool,
    notices: u64,
}

/// Most entries a room's list holds once the reader has loaded older pages.
pub const MAX_PAGED_ENTRIES: usize = 5_000;

impl RoomView {
    fn new(name: String) -> Self {
        RoomView {
            name,
            nick: None,
            members: Vec::new(),
            signed_in: Vec::new(),
            role: None,
            private: false,
            invitation: None,
            invitation_expires: None,
            sanctions: None,
            entries: Rc::default(),
            typing: Vec::new(),
            unread: 0,
            mentions: 0,
            older: Older::More,
            catching_up: false,
            paged: false,
            started_over: false,
            notices: 0,
        }
    }

    pub fn is_joined(&self) -> bool {
        self.nick.is_some()
    }

    /// The nicks currently typing, in the order they started.
    pub fn typists(&self) -> Vec<String> {
        self.typing.iter().map(|(nick, _)| nick.clone()).collect()
    }

    /// The oldest message shown, where scrolling back continues.
    pub fn first_message_id(&self) -> Option<MessageId> {
        self.entries.iter().find_map(|entry| match entry {
            Entry::Message(message) => Some(message.id),
            Entry::Notice { .. } | Entry::Presence { .. } => None,
        })
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

    /// The most entries the list keeps: more once the reader has scrolled back.
    fn capacity(&self) -> usize {
        if self.paged { MAX_PAGED_ENTRIES } else { MAX_ENTRIES }
    }

    fn push(&mut self, entry: Entry) {
        let capacity = self.capacity();
        let entries = Rc::make_mut(&mut self.entries);
        entries.push_back(entry);
        while entries.len() > capacity {
            entries.pop_front();
            // The oldest went: there is something before the list again.
            self.older = Older::More;
        }
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
    /// live ones, or of older ones scrolled back to) among the messages around it. Returns
    /// whether it was added.
    fn merge(&mut self, message: ChatMessage) -> bool {
        if let Some(target) = message.amends {
            // An edit or a deletion: applied to the message it changes, never shown itself.
            self.amend(target, &message);
            return false;
        }
        if self.last_message_id().is_none_or(|last| message.id > last) {
            self.push(Entry::Message(Rc::new(message)));
            return true;
        }
        let Err(at) = self.position(message.id) else { return false };
        if at == 0 && self.entries.len() >= self.capacity() {
            // Older than everything in a full list: there is no room for it.
            return false;
        }
        let capacity = self.capacity();
        let entries = Rc::make_mut(&mut self.entries);
        entries.insert(at, Entry::Message(Rc::new(message)));
        if entries.len() > capacity {
            entries.pop_front();
            self.older = Older::More;
        }
        true
    }

    /// Applies `change` (an edit, or with `deleted` a deletion) to the shown message `target`,
    /// if shown (a page scrolled back to later comes with its messages as they are now).
    fn amend(&mut self, target: MessageId, change: &ChatMessage) {
        let Ok(at) = self.position(target) else { return };
        let entries = Rc::make_mut(&mut self.entries);
        if let Some(Entry::Message(shown)) = entries.get_mut(at)
            && !shown.deleted
        {
            let mut changed = (**shown).clone();
            if change.deleted {
                changed.text.clear();
                changed.deleted = true;
            } else {
                changed.text.clone_from(&change.text);
                changed.edited = true;
            }
            *shown = Rc::new(changed);
        }
    }

    /// The room's welcome: what was missed after what is shown, or (not resumed) the list
    /// starts over with the room's recent messages.
    fn welcome(&mut self, welcome: Welcomed) {
        let Welcomed { nick, members, signed_in, role, private, history, since, truncated, more } =
            welcome;
        let resumed = since.is_some() && self.is_joined();
        if resumed {
            if truncated {
                self.notice("Older messages could not be loaded.".into(), now());
            }
            for message in history {
                self.merge(message);
            }
            self.notice("Reconnected.".into(), now());
        } else {
            self.entries = Rc::default();
            self.paged = false;
            // Without `truncated`, the history is the whole room.
            self.older = if truncated { Older::More } else { Older::Beginning };
            if std::mem::take(&mut self.started_over) {
                let text = format!("The server's history of #{} started over.", self.name);
                self.notice(text, now());
            }
            // The messages come as they are now: the changes among them are already applied
            // (applying an older edit again would bring back an older text).
            let messages: Vec<ChatMessage> =
                history.into_iter().filter(|message| message.amends.is_none()).collect();
            for message in messages.into_iter().rev().take(MAX_ENTRIES - 2).rev() {
                self.push(Entry::Message(Rc::new(message)));
            }
            self.notice(format!("You joined #{} as {nick}.", self.name), now());
        }
        self.catching_up = more;
        self.nick = Some(nick);
        self.members = members;
        self.signed_in = signed_in;
        self.role = role;
        self.private = private;
        self.typing.clear();
    }
}

/// The words for a moderator's action, as a notice: who did what to whom, for how long.
/// Keeps a shown list of mutes and bans up to date with a `moderated` notice: a mute or ban
/// replaces the member's earlier one of the kind, a lifting removes it.
pub fn follow_sanction(
    list: &mut Vec<protocol::SanctionInfo>,
    nick: &str,
    action: protocol::Sanction,
    until: Option<u64>,
) {
    use protocol::Sanction;
    let kind = match action {
        Sanction::Mute | Sanction::Unmute => Sanction::Mute,
        Sanction::Ban | Sanction::Unban => Sanction::Ban,
        Sanction::Kick => return,
    };
    list.retain(|held| !(held.nick == nick && held.action == kind));
    if let (false, Some(until)) = (action.lifts(), until) {
        list.push(protocol::SanctionInfo { nick: nick.to_owned(), action: kind, until });
        list.sort_by(|a, b| a.nick.cmp(&b.nick));
    }
}

/// What a change of someone's place in a room reads as.
pub fn grant_notice(
    nick: &str,
    grant: protocol::Grant,
    revoke: bool,
    by: &str,
    room: &str,
) -> String {
    match (grant, revoke) {
        (protocol::Grant::Moderator, false) => format!("{by} made {nick} a moderator of #{room}."),
        (protocol::Grant::Moderator, true) => {
            format!("{by} took {nick}'s moderator role in #{room} away.")
        }
        (protocol::Grant::Member, false) => format!("{by} made {nick} a member of #{room}."),
        (protocol::Grant::Member, true) => {
            format!("{by} removed {nick} from the members of #{room}.")
        }
    }
}

pub fn moderation_notice(
    nick: &str,
    action: protocol::Sanction,
    by: &str,
    until: Option<u64>,
    now: u64,
) -> String {
    let verb = match action {
        protocol::Sanction::Kick => "removed",
        protocol::Sanction::Mute => "muted",
        protocol::Sanction::Ban => "banned",
        protocol::Sanction::Unmute => return format!("{by} unmuted {nick}."),
        protocol::Sanction::Unban => return format!("{by} lifted the ban on {nick}."),
    };
    match until {
        Some(until) => {
            let minutes = until.saturating_sub(now).div_ceil(60_000);
            let span = match minutes {
                0..=120 => format!("{minutes} minutes"),
                121..=2_880 => format!("{} hours", minutes.div_ceil(60)),
                _ => format!("{} days", minutes.div_ceil(1_440)),
            };
            format!("{by} {verb} {nick} for {span}.")
        }
        None => format!("{by} {verb} {nick}."),
    }
}

/// What a welcome tells a room's view.
struct Welcomed {
    nick: String,
    members: Vec<String>,
    signed_in: Vec<String>,
    role: Option<protocol::Role>,
    private: bool,
    history: Vec<ChatMessage>,
    since: Option<MessageId>,
    truncated: bool,
    more: bool,
}

/// Whether `text` names `nick` as `@nick` (letter case aside, not inside a word or an e-mail
/// address, and not as the start of a longer nick).
pub fn mentions(text: &str, nick: &str) -> bool {
    if nick.is_empty() {
        return false;
    }
    let (text, needle) = (text.to_lowercase(), format!("@{}", nick.to_lowercase()));
    let word = |c: char| c.is_alphanumeric() || c == '_' || c == '-' || c == '.';
    text.match_indices(&needle).any(|(at, found)| {
        let before = text[..at].chars().next_back();
        let after = text[at + found.len()..].chars().next();
        !before.is_some_and(word)
            && !after.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '-')
    })
}

#[derive(Debug, Clone, PartialEq)]
pub struct State {
    pub connection: ConnectionState,
    /// The room shown.
    pub room: String,
    /// The nick the server last accepted (`None` until the first welcome, and again when a
    /// rejoin was refused: the join form shows then).
    pub nick: Option<String>,
    /// The rooms the page is in or joining, in the sidebar's order.
    pub joined: Vec<RoomView>,
    pub rooms: Vec<RoomInfo>,
    /// The last problem the server reported, in words for people.
    pub error: Option<String>,
    /// Messages sent (or typed offline) and not shown as delivered yet, every room's, oldest
    /// first.
    pub pending: Rc<Vec<Outgoing>>,
    /// Pending messages the server acknowledged (room, client id, id): each stays shown as
    /// pending until the message itself arrives (the ack comes first), so it never blinks out
    /// of the list between the two frames.
    acknowledged: Vec<(String, String, u64)>,
    /// The client ids of the messages typed on this page (not those found in storage): only
    /// these are ever written to storage by this page.
    pub posted: Rc<BTreeSet<String>>,
    /// The ids of the messages this page sent, from their acknowledgements: these are "your
    /// own" (a nick says nothing of who sent a message: someone may have held it before).
    pub own: Rc<BTreeSet<MessageId>>,
    /// The nick held before the server refused it on a rejoin, to offer it again in the form.
    pub former_nick: Option<String>,
    /// The tab is hidden: messages in the open room count as unread too.
    pub hidden: bool,
    /// The last message that mentioned the reader while its room was not in view (for a
    /// desktop notification).
    pub last_mention: Option<Rc<ChatMessage>>,
}

impl State {
    /// A page that will show `room`, among `others` (the rooms it was in before a reload).
    pub fn new(room: String) -> Self {
        Self::with_rooms(room, &[])
    }

    /// A page that will show `room`, in the sidebar among `rooms` (where it goes first if it
    /// is not one of them).
    pub fn with_rooms(room: String, rooms: &[String]) -> Self {
        let mut joined: Vec<RoomView> = Vec::new();
        if !rooms.contains(&room) {
            joined.push(RoomView::new(room.clone()));
        }
        for name in rooms {
            if !joined.iter().any(|view| view.name == *name) {
                joined.push(RoomView::new(name.clone()));
            }
        }
        State {
            connection: ConnectionState::Idle,
            room,
            nick: None,
            joined,
            rooms: Vec::new(),
            error: None,
            posted: Rc::default(),
            pending: Rc::default(),
            acknowledged: Vec::new(),
            own: Rc::default(),
            former_nick: None,
            hidden: false,
            last_mention: None,
        }
    }

    /// The room shown. (There is always one: the last room cannot be left.)
    pub fn view(&self) -> &RoomView {
        self.view_of(&self.room).unwrap_or_else(|| &self.joined[0])
    }

    pub fn view_of(&self, room: &str) -> Option<&RoomView> {
        self.joined.iter().find(|view| view.name == room)
    }

    fn view_mut(&mut self, room: &str) -> Option<&mut RoomView> {
        self.joined.iter_mut().find(|view| view.name == room)
    }

    /// The names of the rooms the page is in, in the sidebar's order (what a reload restores).
    pub fn room_names(&self) -> Vec<String> {
        self.joined.iter().map(|view| view.name.clone()).collect()
    }

    /// Unread messages in every room, and how many of them mention you (for the title).
    pub fn unread(&self) -> (u32, u32) {
        self.joined.iter().fold((0, 0), |(unread, mentions), view| {
            (unread.saturating_add(view.unread), mentions.saturating_add(view.mentions))
        })
    }

    /// What the stored outbox holds as far as this page knows: the pending messages not
    /// acknowledged yet (an acknowledged one stays shown until the message itself arrives, but
    /// must not be sent again). The page keeps `localStorage` in step with this list (lib.rs),
    /// and the connection sends from it: acknowledgements and refusals are the reducer's to
    /// apply, once, here.
    pub fn outbox(&self) -> Vec<Outgoing> {
        let acknowledged = |item: &&Outgoing| {
            self.acknowledged.iter().any(|(_, client_id, _)| *client_id == item.client_id)
        };
        self.pending.iter().filter(|item| !acknowledged(item)).cloned().collect()
    }

    /// The pending messages to show: the open room's, typed under its nick (not edits and
    /// deletions: those show when the room relays them).
    pub fn pending_here(&self) -> Vec<Outgoing> {
        let nick = self.view().nick.as_deref().or(self.nick.as_deref()).unwrap_or_default();
        self.pending
            .iter()
            .filter(|item| item.room == self.room && item.nick == nick && item.amends.is_none())
            .cloned()
            .collect()
    }

    fn settle(&mut self, client_id: &str) {
        if self.pending.iter().any(|item| item.client_id == client_id) {
            Rc::make_mut(&mut self.pending).retain(|item| item.client_id != client_id);
        }
    }

    /// The server stored a pending message as `id`: it goes once its room shows that message.
    fn acknowledge(&mut self, client_id: String, id: u64, room: String) {
        Rc::make_mut(&mut self.own).insert(id);
        let waiting = self.view_of(&room).is_some_and(|view| !view.is_shown(id));
        // An edit or deletion is not a message of the list: done once acknowledged.
        let message = |item: &Outgoing| item.client_id == client_id && item.amends.is_none();
        if waiting && self.pending.iter().any(message) {
            self.acknowledged.push((room, client_id, id));
        } else {
            self.settle(&client_id);
        }
    }

    /// Settles the acknowledged messages of `room` its list now shows (`all`: every one,
    /// because the list was just rebuilt from the server's history).
    fn settle_shown(&mut self, room: &str, all: bool) {
        let acknowledged = std::mem::take(&mut self.acknowledged);
        let view = self.view_of(room);
        let (shown, waiting) = acknowledged.into_iter().partition(|(of, _, id)| {
            of == room && (all || view.is_none_or(|view| view.is_shown(*id)))
        });
        self.acknowledged = waiting;
        for (_, client_id, _) in shown {
            self.settle(&client_id);
        }
    }

    pub fn is_joined(&self) -> bool {
        self.nick.is_some()
    }

    /// Whether `room`'s messages are being read now (open, in a visible tab).
    fn in_view(&self, room: &str) -> bool {
        room == self.room && !self.hidden
    }

    /// Shows `room`: its unread messages count as read.
    fn open(&mut self, room: String) {
        self.room = room;
        let hidden = self.hidden;
        if let Some(view) = self.view_mut_open()
            && !hidden
        {
            view.unread = 0;
            view.mentions = 0;
        }
    }

    /// Takes `room` out of the sidebar; if it was open, the first room left opens.
    fn forget_room(&mut self, room: &str) {
        self.joined.retain(|view| view.name != room);
        if self.room == room
            && let Some(first) = self.joined.first().map(|view| view.name.clone())
        {
            self.open(first);
        }
    }

    fn view_mut_open(&mut self) -> Option<&mut RoomView> {
        let room = self.room.clone();
        self.view_mut(&room)
    }

    fn on_server(&mut self, message: ServerMessage) {
        match message {
            ServerMessage::Welcome {
                room,
                nick,
                members,
                signed_in,
                history,
                rooms,
                since,
                truncated,
                more,
                role,
                private,
                ..
            } => {
                if self.view_of(&room).is_none() {
                    // A room the page left while its join was on its way (the server leaves it
                    // next): not shown again.
                    return;
                }
                let welcomed = Welcomed {
                    nick: nick.clone(),
                    members,
                    signed_in,
                    role,
                    private,
                    history,
                    since,
                    truncated,
                    more,
                };
                if let Some(view) = self.view_mut(&room) {
                    view.welcome(welcomed);
                }
                self.connection = ConnectionState::Online;
                self.nick = Some(nick);
                self.former_nick = None;
                self.rooms = rooms;
                self.error = None;
                if self.view_of(&self.room).is_none() {
                    self.open(room.clone());
                }
                self.settle_shown(&room, true);
            }
            ServerMessage::Message(message) => {
                let in_view = self.in_view(&message.room);
                let own = self.own.contains(&message.id);
                let room = message.room.clone();
                // Frames from a room the page has left, and repeats, are not shown.
                let Some(view) = self.view_mut(&room).filter(|view| view.is_joined()) else {
                    return;
                };
                let from = message.from.clone();
                let mention =
                    view.nick.as_deref().is_some_and(|nick| mentions(&message.text, nick));
                let noted = (mention && !in_view && !own).then(|| Rc::new(message.clone()));
                if view.merge(message) {
                    view.stop_typing(&from);
                    if !in_view && !own {
                        view.unread = view.unread.saturating_add(1);
                        view.mentions = view.mentions.saturating_add(u32::from(mention));
                    }
                    if noted.is_some() {
                        self.last_mention = noted;
                    }
                    self.settle_shown(&room, false);
                }
            }
            ServerMessage::History { room, messages, after, more, .. } => {
                // Pages for a room the page has left are of no use any more.
                let Some(view) = self.view_mut(&room).filter(|view| view.is_joined()) else {
                    return;
                };
                let older = after.is_none();
                if older {
                    // A page scrolled back to: the list may grow for it.
                    view.paged = true;
                }
                for message in messages {
                    // An older page's messages are as they are now, and its changes older than
                    // ones already applied: only pages of newer messages bring changes to apply.
                    if !(older && message.amends.is_some()) {
                        view.merge(message);
                    }
                }
                if older {
                    view.older = if more { Older::More } else { Older::Beginning };
                } else if !more {
                    view.catching_up = false;
                }
                self.settle_shown(&room, false);
            }
            ServerMessage::Joined { room, nick, ts, signed_in } => {
                if let Some(view) = self.view_mut(&room).filter(|view| view.is_joined()) {
                    view.presence(nick.clone(), true, ts);
                    view.signed_in.retain(|member| *member != nick);
                    if signed_in {
                        view.signed_in.push(nick.clone());
                    }
                    if !view.members.contains(&nick) {
                        view.members.push(nick);
                        view.members.sort_by_key(|nick| nick.to_lowercase());
                    }
                }
            }
            ServerMessage::Left { room, nick, ts } => {
                if let Some(view) = self.view_mut(&room).filter(|view| view.is_joined()) {
                    view.presence(nick.clone(), false, ts);
                    view.stop_typing(&nick);
                    view.members.retain(|member| *member != nick);
                    view.signed_in.retain(|member| *member != nick);
                }
            }
            ServerMessage::RoomSettings { room, private, by } => {
                if let Some(view) = self.view_mut(&room).filter(|view| view.is_joined()) {
                    view.private = private;
                    // Links made before belong to the room's former state.
                    view.invitation = None;
                    let what = if private { "private: only members may join" } else { "public" };
                    view.notice(format!("{by} made #{room} {what}."), now());
                }
            }
            ServerMessage::Granted { room, nick, grant, revoke, by } => {
                if let Some(view) = self.view_mut(&room).filter(|view| view.is_joined()) {
                    // Your own place changed: the page offers what you may do now (an owner
                    // stays owner).
                    if grant == protocol::Grant::Moderator
                        && view.nick.as_ref() == Some(&nick)
                        && view.role != Some(protocol::Role::Owner)
                    {
                        view.role = (!revoke).then_some(protocol::Role::Moderator);
                    }
                    view.notice(grant_notice(&nick, grant, revoke, &by, &room), now());
                }
            }
            ServerMessage::Invitation { room, code, expires, .. } => {
                if let Some(view) = self.view_mut(&room) {
                    view.invitation = Some(code);
                    view.invitation_expires = expires;
                }
            }
            ServerMessage::Sanctions { room, sanctions } => {
                if let Some(view) = self.view_mut(&room) {
                    view.sanctions = Some(sanctions);
                }
            }
            ServerMessage::Moderated { room, nick, action, by, until } => {
                if let Some(view) = self.view_mut(&room).filter(|view| view.is_joined()) {
                    let ts = now();
                    if let Some(list) = &mut view.sanctions {
                        follow_sanction(list, &nick, action, until);
                    }
                    view.notice(moderation_notice(&nick, action, &by, until, ts), ts);
                }
            }
            ServerMessage::Typing { room, nick } => {
                if let Some(view) = self.view_mut(&room)
                    && view.nick.as_ref() != Some(&nick)
                {
                    let expires = now() + protocol::TYPING_TTL_MS;
                    match view.typing.iter_mut().find(|(typist, _)| *typist == nick) {
                        Some(entry) => entry.1 = expires,
                        None => view.typing.push((nick, expires)),
                    }
                }
            }
            ServerMessage::Rooms { rooms } => self.rooms = rooms,
            ServerMessage::Reset { room, .. } => {
                // The server's history started over (a new store): what the page shows of the
                // room is of another history, and ids of the two may be the same numbers.
                if let Some(view) = self.view_mut(&room) {
                    view.entries = Rc::default();
                    view.nick = None;
                    view.started_over = true;
                }
                self.own = Rc::default();
                self.acknowledged.retain(|(of, _, _)| *of != room);
            }
            ServerMessage::Ack { client_id, id, room } => self.acknowledge(client_id, id, room),
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
        self.count_joined_rooms();
    }

    /// The room list comes from the server now and then; the counts of the rooms the page is
    /// in are known live from their member lists, so keep those entries exact in between.
    fn count_joined_rooms(&mut self) {
        for view in self.joined.iter().filter(|view| view.is_joined()) {
            let members = u32::try_from(view.members.len()).unwrap_or(u32::MAX);
            match self.rooms.iter_mut().find(|room| room.name == view.name) {
                Some(room) => room.members = members,
                None => self.rooms.push(RoomInfo { name: view.name.clone(), members }),
            }
        }
    }

    /// The socket is gone: every room is rejoined on the next one; an older page asked for
    /// on it will not come.
    fn disconnected(&mut self) {
        for view in &mut self.joined {
            if view.older == Older::Loading {
                view.older = Older::More;
            }
            if view.is_joined() {
                view.notice("Connection lost; reconnecting…".into(), now());
            }
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
    /// The user asked to join a room (or to open one the page is in); the welcome confirms
    /// it.
    JoinRoom {
        room: String,
    },
    /// The server refused to seat the page in `room` (the error frame says why).
    JoinRefused {
        room: String,
    },
    /// The user left a room.
    LeaveRoom {
        room: String,
    },
    /// The user opened another of the rooms the page is in.
    Open {
        room: String,
    },
    /// The tab was hidden or shown again.
    Visibility {
        hidden: bool,
    },
    /// A page of older messages of `room` was asked for.
    LoadingOlder {
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
                if state.view_of(&room).is_none() {
                    state.joined.insert(0, RoomView::new(room.clone()));
                }
                state.open(room);
                state.connection = ConnectionState::Connecting;
                state.error = None;
            }
            Action::Connecting => state.connection = ConnectionState::Connecting,
            Action::Server(message) => state.on_server(message),
            Action::Disconnected { attempt, delay_ms } => {
                if state.connection == ConnectionState::Online {
                    state.disconnected();
                }
                state.connection = ConnectionState::Reconnecting { attempt, delay_ms };
            }
            Action::Replaced => {
                state.connection = ConnectionState::Replaced;
                if let Some(view) = state.view_mut_open() {
                    let text = "This chat was opened in another tab; this one is paused.";
                    view.notice(text.into(), now());
                }
            }
            Action::Closed { message } => {
                state.connection = ConnectionState::Closed;
                if let Some(view) = state.view_mut_open() {
                    view.notice(message.clone(), now());
                }
                state.error = Some(message);
            }
            Action::JoinRoom { room } => {
                state.error = None;
                if state.view_of(&room).is_none() {
                    let mut view = RoomView::new(room.clone());
                    view.notice(format!("Joining #{room}…"), now());
                    state.joined.push(view);
                }
                state.open(room);
            }
            Action::JoinRefused { room } => {
                // The connection gave the room up (it never got in, or could not get back in
                // after a reconnect): it goes from the sidebar (the error says why). A refused
                // rename is not reported: the room stays.
                if state.view_of(&room).is_some() && state.joined.len() > 1 {
                    state.forget_room(&room);
                }
            }
            Action::LeaveRoom { room } => {
                if state.joined.len() > 1 {
                    state.forget_room(&room);
                    state.acknowledged.retain(|(of, _, _)| *of != room);
                    // What was still waiting to be sent there never will be.
                    if state.pending.iter().any(|item| item.room == room) {
                        Rc::make_mut(&mut state.pending).retain(|item| item.room != room);
                    }
                }
            }
            Action::Open { room } => {
                if state.view_of(&room).is_some() {
                    state.error = None;
                    state.open(room);
                }
            }
            Action::Visibility { hidden } => {
                state.hidden = hidden;
                let room = state.room.clone();
                state.open(room);
            }
            Action::LoadingOlder { room } => {
                if let Some(view) = state.view_mut(&room) {
                    view.older = Older::Loading;
                }
            }
            Action::DismissError => state.error = None,
            Action::LocalError(message) => state.error = Some(message),
            Action::Tick { now } => {
                for view in &mut state.joined {
                    view.typing.retain(|(_, expires)| *expires > now);
                }
            }
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
            signed_in: false,
            ..Default::default()
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
            signed_in: vec!["alice".into()],
            history,
            rooms: vec![RoomInfo { name: room.into(), members: 2 }],
            since,
            truncated,
            more: false,
            epoch: "e1".into(),
            role: None,
            private: false,
        })
    }

    fn notices(state: &State) -> Vec<String> {
        state
            .view()
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
            amends: None,
            delete: false,
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
            room: None,
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
            amends: None,
            delete: false,
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
            room: None,
        };
        let state = reduce(state, [Action::Server(transient)]);
        assert_eq!((state.pending_here().len(), state.error.clone()), (1, None));
        let refused = ServerMessage::Error {
            code: protocol::ErrorCode::TextTooLong,
            message: "Too long.".into(),
            retry_after_ms: None,
            client_id: Some("y".into()),
            room: None,
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
            amends: None,
            delete: false,
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
        let state = reduce(state, [Action::JoinRoom { room: "b".into() }, welcome("b", vec![])]);
        let state = reduce(state, [Action::Open { room: "a".into() }, ack("y", 8)]);
        assert_eq!(state.pending_here(), [item("y", "a")], "a is still shown");
        let state = reduce(state, [Action::LeaveRoom { room: "a".into() }]);
        assert!(state.pending.is_empty(), "nothing waits for a room the page left");
    }

    fn reduce(state: Rc<State>, actions: impl IntoIterator<Item = Action>) -> Rc<State> {
        actions.into_iter().fold(state, Reducible::reduce)
    }

    fn texts(state: &State) -> Vec<String> {
        state
            .view()
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
        assert_eq!(state.view().members, ["alice", "bob"]);
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

    /// Edits and deletions change the message they amend in place (a tombstone for a
    /// deletion), are never shown as messages, count as nothing unread, and a change to a
    /// message not shown is ignored; in a welcome's history they apply to what precedes them.
    #[test]
    fn amendments_change_messages_in_place() {
        let change = |id, target, text: &str, deleted| {
            let message = ChatMessage { amends: Some(target), deleted, ..message(id, "a", text) };
            Action::Server(ServerMessage::Message(message))
        };
        let state = reduce(
            Rc::new(State::new("a".into())),
            [
                welcome("a", vec![message(1, "a", "one"), message(2, "a", "two")]),
                Action::Visibility { hidden: true },
                change(3, 1, "one, edited", false),
                change(4, 2, "", true),
                change(5, 99, "nothing to change", false),
            ],
        );
        assert_eq!(texts(&state), ["one, edited", ""]);
        let flags: Vec<(bool, bool)> = state
            .view()
            .entries
            .iter()
            .filter_map(|e| match e {
                Entry::Message(m) => Some((m.edited, m.deleted)),
                _ => None,
            })
            .collect();
        assert_eq!(flags, [(true, false), (false, true)]);
        assert_eq!(state.view().unread, 0, "changes are not new messages");

        // A fresh welcome and an older page bring messages as they are now: their changes are
        // not applied again (an older edit would bring back an older text).
        let history = vec![
            ChatMessage { edited: true, ..message(1, "a", "v2") },
            ChatMessage { amends: Some(1), ..message(2, "a", "v1") },
        ];
        let state = reduce(Rc::new(State::new("a".into())), [welcome("a", history.clone())]);
        assert_eq!(texts(&state), ["v2"]);
        let page = ServerMessage::History {
            room: "a".into(),
            messages: history,
            before: Some(3),
            after: None,
            more: false,
        };
        let state = reduce(
            Rc::new(State::new("a".into())),
            [welcome("a", vec![message(3, "a", "three")]), Action::Server(page)],
        );
        assert_eq!(texts(&state), ["v2", "three"]);
        // A deleted message takes no edit.
        let state = reduce(
            Rc::new(State::new("a".into())),
            [
                welcome("a", vec![ChatMessage { deleted: true, ..message(1, "a", "") }]),
                change(2, 1, "back from the dead", false),
            ],
        );
        assert_eq!(texts(&state), [""]);
    }

    /// A room made private says so (and the view knows); the last invitation code made is
    /// kept for its room, and a revocation replaces it.
    #[test]
    fn privacy_and_invitations() {
        let state = reduce(
            Rc::new(State::new("a".into())),
            [
                welcome("a", vec![]),
                Action::Server(ServerMessage::RoomSettings {
                    room: "a".into(),
                    private: true,
                    by: "olga".into(),
                }),
                Action::Server(ServerMessage::Invitation {
                    room: "a".into(),
                    code: Some("c0de".into()),
                    expires: Some(7),
                    uses: None,
                }),
            ],
        );
        assert!(state.view().private);
        assert_eq!(state.view().invitation, Some(Some("c0de".to_owned())));
        assert_eq!(state.view().invitation_expires, Some(7));
        assert_eq!(
            notices(&state).last().map(String::as_str),
            Some("olga made #a private: only members may join.")
        );
        let revoked = reduce(
            state,
            [Action::Server(ServerMessage::Invitation {
                room: "a".into(),
                code: None,
                expires: None,
                uses: None,
            })],
        );
        assert_eq!(revoked.view().invitation, Some(None));
    }

    /// A new moderator learns it at once (the page then offers moderation), a former one
    /// loses it; an owner stays owner; the room reads each change as a sentence.
    #[test]
    fn granted_roles_change_the_view() {
        use protocol::{Grant, Role};
        let granted = |nick: &str, grant, revoke| {
            Action::Server(ServerMessage::Granted {
                room: "a".into(),
                nick: nick.into(),
                grant,
                revoke,
                by: "olga".into(),
            })
        };
        let state = reduce(
            Rc::new(State::new("a".into())),
            [welcome("a", vec![]), granted("bob", Grant::Moderator, false)],
        );
        assert_eq!(state.view().role, Some(Role::Moderator));
        assert_eq!(
            notices(&state).last().map(String::as_str),
            Some("olga made bob a moderator of #a.")
        );
        let state = reduce(state, [granted("other", Grant::Moderator, true)]);
        assert_eq!(state.view().role, Some(Role::Moderator), "someone else's");
        let state = reduce(state, [granted("bob", Grant::Moderator, true)]);
        assert_eq!(state.view().role, None);
        let state = reduce(state, [granted("cy", Grant::Member, true)]);
        assert_eq!(
            notices(&state).last().map(String::as_str),
            Some("olga removed cy from the members of #a.")
        );
    }

    /// An edit waits in the outbox but is not shown as a message being sent; its
    /// acknowledgement settles it at once (it is no entry of the list to wait for).
    #[test]
    fn edits_wait_unseen_and_settle_on_their_ack() {
        let edit = Outgoing {
            client_id: "e1".into(),
            room: "a".into(),
            nick: "bob".into(),
            text: "better".into(),
            ts: 1,
            amends: Some(1),
            delete: false,
        };
        let state = reduce(Rc::new(State::new("a".into())), [welcome("a", vec![])]);
        let state = reduce(state, [Action::Post(edit.clone())]);
        assert_eq!(state.outbox(), [edit]);
        assert!(state.pending_here().is_empty());
        let state = reduce(
            state,
            [Action::Server(ServerMessage::Ack {
                client_id: "e1".into(),
                id: 9,
                room: "a".into(),
            })],
        );
        assert!(state.outbox().is_empty());
        assert!(state.pending.is_empty());
    }

    /// A shown list of bans and mutes follows the room's notices: a new ban replaces the
    /// earlier one, a lifting removes it, a kick changes nothing.
    #[test]
    fn shown_sanctions_follow_the_notices() {
        use protocol::Sanction::{Ban, Kick, Mute, Unban, Unmute};
        let moderated = |nick: &str, action, until| {
            Action::Server(ServerMessage::Moderated {
                room: "a".into(),
                nick: nick.into(),
                action,
                by: "olga".into(),
                until,
            })
        };
        let state = reduce(
            Rc::new(State::new("a".into())),
            [welcome("a", vec![]), moderated("tr", Ban, Some(5))],
        );
        assert_eq!(state.view().sanctions, None, "not asked for");
        let listed = |state: &State| {
            let list = state.view().sanctions.clone().unwrap_or_default();
            list.into_iter().map(|s| (s.nick, s.action, s.until)).collect::<Vec<_>>()
        };
        let state = reduce(
            state,
            [
                Action::Server(ServerMessage::Sanctions {
                    room: "a".into(),
                    sanctions: vec![protocol::SanctionInfo {
                        nick: "tr".into(),
                        action: Ban,
                        until: 5,
                    }],
                }),
                moderated("tr", Mute, Some(9)),
                moderated("al", Ban, Some(7)),
                moderated("tr", Ban, Some(6)),
                moderated("al", Kick, None),
            ],
        );
        assert_eq!(
            listed(&state),
            [("al".into(), Ban, 7), ("tr".into(), Mute, 9), ("tr".into(), Ban, 6)]
        );
        let state = reduce(state, [moderated("tr", Unban, None), moderated("tr", Unmute, None)]);
        assert_eq!(listed(&state), [("al".into(), Ban, 7)]);
        assert_eq!(notices(&state).last().map(String::as_str), Some("olga unmuted tr."));
    }

    /// A moderator's action reads as a sentence, with how long a mute or ban lasts.
    #[test]
    fn moderation_notices() {
        use protocol::Sanction::{Ban, Kick, Mute};
        assert_eq!(moderation_notice("tr", Kick, "ann", None, 0), "ann removed tr.");
        assert_eq!(
            moderation_notice("tr", Mute, "ann", Some(600_000), 0),
            "ann muted tr for 10 minutes."
        );
        assert_eq!(
            moderation_notice("tr", Ban, "ann", Some(86_400_000), 0),
            "ann banned tr for 24 hours."
        );
        assert_eq!(
            moderation_notice("tr", Ban, "ann", Some(7 * 86_400_000), 0),
            "ann banned tr for 7 days."
        );
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
                    signed_in: true,
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
                    signed_in: false,
                }),
            ],
        );
        assert_eq!(state.view().members, ["bob", "Carol"]);
        assert_eq!(state.view().signed_in, ["Carol"], "alice's mark left with her");
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
        assert_eq!(state.view().entries.len(), MAX_ENTRIES);
        assert_eq!(state.view().last_message_id(), Some(MAX_ENTRIES as u64 + 50));
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
        assert_eq!(state.view().typists(), ["alice", "carol"], "bob is us");
        let state = reduce(state, [Action::Server(ServerMessage::Message(message(9, "a", "hi")))]);
        assert_eq!(state.view().typists(), ["carol"], "alice's message ends her typing");
        let state = reduce(state, [Action::Tick { now: protocol::TYPING_TTL_MS - 1 }]);
        assert_eq!(state.view().typists(), ["carol"]);
        let state = reduce(state, [Action::Tick { now: protocol::TYPING_TTL_MS }]);
        assert!(state.view().typists().is_empty(), "expired");
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
            .view()
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
            .view()
            .entries
            .iter()
            .position(|e| matches!(e, Entry::Notice { text, .. } if text == "Reconnected."));
        let five = state.view().entries.iter().position(|e| e.key() == 5);
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
            amends: None,
            delete: false,
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
            Action::Server(ServerMessage::Joined {
                room: "a".into(),
                nick: nick.into(),
                ts: 2,
                signed_in: false,
            })
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
        assert_eq!(state.view().entries.len(), 2, "the welcome line and one presence line");

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
    fn said(id: u64, room: &str, from: &str, text: &str) -> Action {
        let mut m = message(id, room, text);
        m.from = from.into();
        Action::Server(ServerMessage::Message(m))
    }

    /// Messages in a room out of view (another room open, or the tab hidden) count as unread,
    /// and those that mention you as mentions; opening the room, or showing the tab, reads
    /// them. Your own messages never count.
    #[test]
    fn unread_and_mentions_count_what_is_out_of_view() {
        let state = reduce(
            Rc::new(State::with_rooms("a".into(), &["a".into(), "b".into()])),
            [welcome("a", vec![]), welcome("b", vec![])],
        );
        assert_eq!(state.room, "a", "the first room stays open");
        let ack = ServerMessage::Ack { client_id: "x".into(), id: 3, room: "b".into() };
        let state = reduce(
            state,
            [
                said(1, "b", "alice", "hi all"),
                said(2, "b", "alice", "hey @Bob, look"),
                Action::Server(ack),
                said(3, "b", "bob", "mine"),
                said(4, "a", "alice", "in view"),
            ],
        );
        let b = state.view_of("b").expect("in b");
        assert_eq!((b.unread, b.mentions), (2, 1));
        assert_eq!(state.view_of("a").map(|a| a.unread), Some(0));
        assert_eq!(state.last_mention.as_ref().map(|m| m.id), Some(2));
        assert_eq!(state.unread(), (2, 1));

        let state =
            reduce(state, [Action::Visibility { hidden: true }, said(5, "a", "alice", "@bob")]);
        assert_eq!(state.view().unread, 1, "hidden: the open room counts too");
        assert_eq!(state.last_mention.as_ref().map(|m| m.id), Some(5));
        let state = reduce(state, [Action::Visibility { hidden: false }]);
        assert_eq!(state.view().unread, 0, "shown again: read");
        let state = reduce(state, [Action::Open { room: "b".into() }]);
        assert_eq!((state.view().unread, state.view().mentions, state.unread()), (0, 0, (0, 0)));
    }

    /// `@nick` counts as a mention in any case, but not inside a word, an address or a
    /// longer nick.
    #[test]
    fn mentions_need_the_whole_nick() {
        for text in ["@bob", "hi @Bob!", "@BOB, look", "(@bob)", "x @bob\n"] {
            assert!(mentions(text, "bob"), "{text:?}");
        }
        for text in ["bob", "mail bob@bob.example", "@bobby", "@bob_2", "@bob-x", "a@bob"] {
            assert!(!mentions(text, "bob"), "{text:?}");
        }
        assert!(mentions("hey @Zoë", "zoë"));
        assert!(!mentions("@", ""));
    }

    fn older_page(
        room: &str,
        before: u64,
        ids: std::ops::RangeInclusive<u64>,
        more: bool,
    ) -> Action {
        let messages = ids.map(|id| message(id, room, &id.to_string())).collect();
        Action::Server(ServerMessage::History {
            room: room.into(),
            messages,
            before: Some(before),
            after: None,
            more,
        })
    }

    /// Scrolling back: a welcome that left older messages out offers more; pages of older
    /// messages go in front, past the usual bound, until one says it reached the beginning.
    #[test]
    fn older_pages_reach_the_beginning() {
        let recent: Vec<ChatMessage> = (901..=1000).map(|id| message(id, "a", "r")).collect();
        let state = reduce(Rc::new(State::new("a".into())), [resumed("a", recent, None, true)]);
        assert_eq!(state.view().older, Older::More);
        assert_eq!(state.view().first_message_id(), Some(901));
        let mut state = reduce(state, [Action::LoadingOlder { room: "a".into() }]);
        assert_eq!(state.view().older, Older::Loading);
        let mut before: u64 = 901;
        while before > 1 {
            let from = before.saturating_sub(100).max(1);
            state = reduce(state, [older_page("a", before, from..=before - 1, from > 1)]);
            before = from;
        }
        assert_eq!(state.view().older, Older::Beginning);
        assert_eq!(ids(&state), (1..=1000).collect::<Vec<_>>());
        let fresh =
            reduce(Rc::new(State::new("a".into())), [welcome("a", vec![message(1, "a", "1")])]);
        assert_eq!(fresh.view().older, Older::Beginning, "the whole room came in the welcome");
    }

    /// Leaving a room takes it out of the sidebar and opens another; the last room stays. A
    /// room the server refused to seat the page in goes too.
    #[test]
    fn leaving_and_refused_rooms() {
        let state = reduce(
            Rc::new(State::new("a".into())),
            [welcome("a", vec![]), Action::JoinRoom { room: "b".into() }],
        );
        assert_eq!((state.room.as_str(), state.room_names()), ("b", vec!["a".into(), "b".into()]));
        let refused = reduce(state.clone(), [Action::JoinRefused { room: "b".into() }]);
        assert_eq!((refused.room.as_str(), refused.room_names()), ("a", vec!["a".to_owned()]));
        let state = reduce(state, [welcome("b", vec![]), Action::JoinRefused { room: "b".into() }]);
        assert_eq!(state.room_names(), ["a"], "a room not got back after a reconnect goes too");
        let state = reduce(state, [Action::JoinRoom { room: "b".into() }, welcome("b", vec![])]);
        let state = reduce(state, [Action::LeaveRoom { room: "b".into() }]);
        assert_eq!((state.room.as_str(), state.room_names()), ("a", vec!["a".to_owned()]));
        let state = reduce(state, [Action::LeaveRoom { room: "a".into() }, said(9, "a", "x", "y")]);
        assert_eq!(texts(&state).last().map(String::as_str), Some("y"), "the last room stays");
    }

    /// The rooms of a reload come back in their order, the room asked for first if new.
    #[test]
    fn rooms_come_back_in_order() {
        let state = State::with_rooms("c".into(), &["a".into(), "b".into()]);
        assert_eq!(
            (state.room.as_str(), state.room_names()),
            ("c", vec!["c".into(), "a".into(), "b".into()])
        );
        let state = State::with_rooms("b".into(), &["a".into(), "b".into()]);
        assert_eq!(state.room_names(), ["a", "b"]);
    }

    /// A reset says the room's history started over: the list and "your own" ids go (ids of the
    /// new history are the same numbers), and the welcome after it fills the list afresh.
    #[test]
    fn a_reset_starts_the_room_afresh() {
        let ack = ServerMessage::Ack { client_id: "x".into(), id: 2, room: "a".into() };
        let state = reduce(
            Rc::new(State::new("a".into())),
            [welcome("a", vec![message(1, "a", "old")]), Action::Server(ack)],
        );
        assert!(state.own.contains(&2));
        let reset = ServerMessage::Reset { room: "a".into(), epoch: "e2".into() };
        let state = reduce(state, [Action::Server(reset)]);
        assert!(texts(&state).is_empty() && state.own.is_empty());
        let state = reduce(state, [welcome("a", vec![message(1, "a", "new")])]);
        assert_eq!(texts(&state), ["new"]);
        assert_eq!(notices(&state)[0], "The server's history of #a started over.", "said once");
        let state = reduce(state, [welcome("a", vec![message(1, "a", "new")])]);
        assert!(!notices(&state).iter().any(|n| n.contains("started over")), "not again");
    }
}
