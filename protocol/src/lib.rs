//! The chat wire format, shared by the server and the web client.
//!
//! Every WebSocket text frame carries one JSON object whose `type` field names the message.
//! [`ClientMessage`] is what a client may send, [`ServerMessage`] what the server sends back.
//! The naming and size rules in [`rules`] are plain functions so that both ends apply the same
//! ones. docs/PROTOCOL.md describes the same format for people who write their own clients.
//!
//! # Layout
//! - [`ClientMessage`], [`ServerMessage`] and the records they carry: this file.
//! - [`rules`]: limits and validation of nicknames, room names and message text.
//! - [`close`]: the WebSocket close codes the server uses.
//! - [`backoff`]: how long a client waits before reconnecting (the web client's schedule, which
//!   `bench storm` follows too).

pub mod backoff;
pub mod close;
pub mod rules;

use serde::{Deserialize, Serialize};

/// Message ids: strictly increasing within a room (one server-wide counter, so not contiguous).
pub type MessageId = u64;

/// Milliseconds since the Unix epoch, UTC.
pub type UnixMillis = u64;

/// The room a connection joins when it names none.
pub const DEFAULT_ROOM: &str = "general";

/// A client's own id for one message it sends: 1 to 64 of `A-Z a-z 0-9 - _`, random and unique
/// per message (at least 64 random bits). See [`ClientMessage::Send`].
pub type ClientId = String;

/// The WebSocket endpoint's path. Connect with
/// `GET /ws?room=ROOM&nick=NICK&client=TOKEN&since=ID`.
pub const WS_PATH: &str = "/ws";

/// What a client sends to the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// Post `text` to `room` (which the connection must be in; without `room`, to the one room
    /// the connection is in). With a `client_id` (see [`ClientId`]) the server answers with a
    /// [`ServerMessage::Ack`] once the message is stored durably, and treats a repeat of the
    /// same id in the same room as the same message: send it again, as often as needed, until
    /// it is acknowledged.
    Send {
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_id: Option<ClientId>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
    },
    /// Enter `room` (created if it does not exist), optionally under another nick. With `add`
    /// the connection keeps the rooms it is in (up to the server's per-connection cap);
    /// without, it moves: on success it leaves every other room. On success the server answers
    /// with a [`ServerMessage::Welcome`] and each room left sees a `left`. `since` is the last
    /// message id this client saw in `room`: the welcome then carries exactly the messages
    /// after it (see [`ServerMessage::Welcome`]). `epoch` is the epoch of the welcome that
    /// `since` comes from: if the room's is another now, `since` means nothing there, and the
    /// server answers with a [`ServerMessage::Reset`] before the welcome.
    Join {
        room: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nick: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<MessageId>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        add: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        epoch: Option<String>,
    },
    /// Leave `room`, keeping the others. The server answers with a [`ServerMessage::Left`]
    /// naming this connection's own nick, as the room's other members see it.
    Leave { room: String },
    /// Ask for the list of active rooms; the server answers with [`ServerMessage::Rooms`].
    ListRooms,
    /// Ask for a page of `room`'s stored messages (you must be in the room): the newest ones
    /// before `before`, or the oldest ones after `after`, or (with neither) the newest ones; at
    /// most `limit` messages and never more than the server's page size. The server answers
    /// with [`ServerMessage::History`].
    History {
        room: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        before: Option<MessageId>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<MessageId>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    /// Change the text of your message `id` in `room` to `text` (signed in, your own
    /// messages only). Like a `send`: with a `client_id` it is acknowledged ([`ServerMessage::Ack`],
    /// naming the edit's own id) and never applied twice; the room sees a [`ChatMessage`]
    /// whose `amends` is `id`.
    Edit {
        room: String,
        id: MessageId,
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_id: Option<ClientId>,
    },
    /// Delete message `id` of `room`: your own (signed in), or anyone's if you moderate the
    /// room. Acknowledged like a `send`; the room sees a [`ChatMessage`] with `amends: id`
    /// and `deleted: true`, and history keeps a tombstone in its place.
    Delete {
        room: String,
        id: MessageId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_id: Option<ClientId>,
    },
    /// Moderate the member `nick` of `room` (you must own or moderate it): `kick` them out (their
    /// connection closes with [`close::REMOVED`]; they may come back), `mute` them (they read
    /// but cannot send) or `ban` them (kicked, and refused when they join again) for `minutes`
    /// (1 to [`MAX_SANCTION_MINUTES`]; without it, [`DEFAULT_SANCTION_MINUTES`]). The room sees
    /// a [`ServerMessage::Moderated`].
    Moderate {
        room: String,
        nick: String,
        action: Sanction,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        minutes: Option<u32>,
    },
    /// Make `room` private (only its members, owner and moderators may join; it is left out
    /// of room lists) or public again. For its owner and moderators; the room is told with
    /// [`ServerMessage::RoomSettings`].
    Configure { room: String, private: bool },
    /// Make an invitation link for `room` (owner and moderators): the answer is a
    /// [`ServerMessage::Invitation`] with a code; whoever signed in connects with `invite=CODE`
    /// in the connect URL becomes a member. With `revoke`, every code of the room stops
    /// working (the answer's `code` is absent).
    Invite {
        room: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        revoke: bool,
        /// How long the code works, in days (1 to [`MAX_INVITATION_DAYS`]; without it,
        /// [`DEFAULT_INVITATION_DAYS`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        days: Option<u32>,
        /// How many people it may make members (1 to [`MAX_INVITATION_USES`]; without it, any
        /// number until it ends).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        uses: Option<u32>,
    },
    /// Ask for the mutes and bans in force in `room` (its owner and moderators): the answer is
    /// a [`ServerMessage::Sanctions`].
    Sanctions { room: String },
    /// Give the account `nick` a place in `room`, or take it away (`revoke`): `moderator` (the
    /// room's owner only) or `member` of a private room (its owner and moderators). The room is
    /// told with [`ServerMessage::Granted`]; a member taken away who is in the room is removed
    /// (close [`close::REMOVED`]), and a new moderator may act at once.
    Grant {
        room: String,
        nick: String,
        grant: Grant,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        revoke: bool,
    },
    /// The user is typing in `room` (without `room`: in the one room the connection is in).
    /// Clients send this at most every [`TYPING_SEND_INTERVAL_MS`] while the user types; the
    /// room tells the other members with [`ServerMessage::Typing`].
    Typing {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
    },
}

/// What a moderator does to a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sanction {
    Kick,
    Mute,
    Ban,
    /// Lifts a mute before it ends (the member need not be in the room).
    Unmute,
    /// Lifts a ban before it ends (the member is not in the room).
    Unban,
}

impl Sanction {
    /// Whether it lifts a mute or ban rather than imposing one.
    pub fn lifts(self) -> bool {
        matches!(self, Sanction::Unmute | Sanction::Unban)
    }
}

/// A mute or ban in force in a room, as [`ServerMessage::Sanctions`] lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SanctionInfo {
    /// The member's nick when it was imposed.
    pub nick: String,
    /// `mute` or `ban`.
    pub action: Sanction,
    /// When it ends (Unix ms).
    pub until: UnixMillis,
}

/// How long an invitation code lasts when its maker names no time: a week.
pub const DEFAULT_INVITATION_DAYS: u32 = 7;
/// The longest an invitation code lasts: 30 days.
pub const MAX_INVITATION_DAYS: u32 = 30;
/// The most joins one invitation code may admit when limited.
pub const MAX_INVITATION_USES: u32 = 1_000;

/// What an owner or moderator gives an account in a room ([`ClientMessage::Grant`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grant {
    /// Moderates the room (given and taken by its owner).
    Moderator,
    /// May join the private room.
    Member,
}

/// How long a mute or ban lasts when the moderator names no time: a day.
pub const DEFAULT_SANCTION_MINUTES: u32 = 24 * 60;
/// The longest mute or ban: 30 days.
pub const MAX_SANCTION_MINUTES: u32 = 30 * 24 * 60;

/// How often, at most, a client says it is typing.
pub const TYPING_SEND_INTERVAL_MS: u64 = 2_000;
/// How long a "typing" indication lasts unless renewed; a bit over two send intervals, so one
/// late notice does not make the indicator flicker.
pub const TYPING_TTL_MS: u64 = 5_000;

/// What the server sends to a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// Sent once the connection has joined a room: who you are, who is there, what was said.
    Welcome {
        room: String,
        /// The nick the server accepted (generated when the client gave none).
        nick: String,
        /// Everyone in the room, you included, sorted case-insensitively.
        members: Vec<String>,
        /// Those of `members` who are signed in to an account (the others are guests), in the
        /// same order. Absent when none are.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        signed_in: Vec<String>,
        /// Messages, oldest first: every stored message after `since` when `since` is set,
        /// otherwise the room's most recent ones.
        history: Vec<ChatMessage>,
        /// The active and recently used rooms at the time of joining.
        rooms: Vec<RoomInfo>,
        /// Echoes the `since` of the join when the server could honour it: `history` then
        /// continues exactly after that id, so a client adds it to what it has. `None` when the
        /// join named no `since`, or one this room never reached (the client should then
        /// replace what it shows with `history`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<MessageId>,
        /// Older messages exist that `history` leaves out: with `since`, some messages after
        /// it are past the room's retention ("older messages not loaded"); without, the room
        /// has more than the recent ones sent.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        truncated: bool,
        /// With `since`: the welcome carries one page, and newer stored messages follow it.
        /// Ask for them with [`ClientMessage::History`] `after` the last id of `history` (or
        /// after `since` if it is empty) until a page says `more: false`.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        more: bool,
        /// The history the ids belong to: when the server's store starts over (a new database,
        /// `--ephemeral` restarted), ids count again from the start under a new epoch. Keep it
        /// with `since` and send both back on the next join. Empty from servers older than it.
        #[serde(default)]
        epoch: String,
        /// What you may do in this room beyond chatting: `owner` or `moderator` (delete
        /// anyone's messages). Absent: a member like any other.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        role: Option<Role>,
        /// Only its members may join the room (and it is left out of room lists).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        private: bool,
    },
    /// Sent before a welcome when the join's `epoch` is not the room's any more: what the
    /// client shows of `room` belongs to a history the server no longer has. Forget it (and
    /// its last id); the welcome that follows carries the room's recent messages afresh.
    Reset { room: String, epoch: String },
    /// A page of stored messages, oldest first, in answer to [`ClientMessage::History`]. It
    /// echoes the request's `before` or `after`; `more` says that further messages exist in
    /// that direction (older ones for `before` or no bound, newer ones for `after`).
    History {
        room: String,
        messages: Vec<ChatMessage>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        before: Option<MessageId>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<MessageId>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        more: bool,
    },
    /// A chat message, sent to every member of its room, the sender included. Messages are
    /// only sent once stored durably.
    Message(ChatMessage),
    /// Sent to the sender only, before the room sees the message: the message with
    /// `client_id` is stored durably under `id`. Sent again for a repeated `client_id`.
    Ack { client_id: ClientId, id: MessageId, room: String },
    /// Someone entered the room. `signed_in`: under their account (absent: as a guest).
    Joined {
        room: String,
        nick: String,
        ts: UnixMillis,
        #[serde(default, skip_serializing_if = "is_false")]
        signed_in: bool,
    },
    /// Someone left the room (closed, switched rooms, or timed out). Also sent to the
    /// connection that left with [`ClientMessage::Leave`], naming its own nick.
    Left { room: String, nick: String, ts: UnixMillis },
    /// A moderator (`by`) kicked, muted or banned `nick` in `room`; a mute or ban lasts `until`
    /// (Unix ms). Sent to everyone in the room; a member kicked or banned may not get it before
    /// their connection closes with [`close::REMOVED`], whose reason says who and where.
    Moderated {
        room: String,
        nick: String,
        action: Sanction,
        by: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        until: Option<UnixMillis>,
    },
    /// `room` became private (or public again), by `by`'s choice.
    RoomSettings { room: String, private: bool, by: String },
    /// `by` gave the account `nick` the place `grant` in `room`, or took it away (`revoke`).
    /// Sent to everyone in the room.
    Granted {
        room: String,
        nick: String,
        grant: Grant,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        revoke: bool,
        by: String,
    },
    /// The mutes and bans in force in `room`, in answer to [`ClientMessage::Sanctions`],
    /// sorted by nick.
    Sanctions { room: String, sanctions: Vec<SanctionInfo> },
    /// The answer to an `invite`: the new invitation `code` for `room`, or (absent) every code
    /// revoked.
    Invitation {
        room: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<String>,
        /// When the code stops working (Unix ms).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires: Option<UnixMillis>,
        /// How many people it may still make members (absent: any number).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        uses: Option<u32>,
    },
    /// Someone in the room is typing (never sent to the typist). Show it until a message from
    /// them arrives, they leave, or [`TYPING_TTL_MS`] pass without another one.
    Typing { room: String, nick: String },
    /// The active rooms, in answer to [`ClientMessage::ListRooms`].
    Rooms { rooms: Vec<RoomInfo> },
    /// A request was refused; the connection stays open.
    Error {
        code: ErrorCode,
        message: String,
        /// For `rate_limited`: how long to wait before sending again.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
        /// The `client_id` of the `send` that was refused, when it had one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_id: Option<ClientId>,
        /// The room the refused request was about (a `join`, `leave`, `history`, or a `send`
        /// or `typing` naming a room), when it named one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
    },
}

/// One chat message as stored and relayed.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ChatMessage {
    pub id: MessageId,
    pub room: String,
    pub from: String,
    pub text: String,
    pub ts: UnixMillis,
    /// Posted by another system through the HTTP API (as a named bot), not by a person in the
    /// room. Sent only when true; absent means false.
    #[serde(default, skip_serializing_if = "is_false")]
    pub bot: bool,
    /// Sent by someone signed in to the account `from` names (absent means false: a guest, or
    /// a bot). Only accounts carry it, so a guest cannot pass as a registered member.
    #[serde(default, skip_serializing_if = "is_false")]
    pub signed_in: bool,
    /// This entry is not a message but a change to the earlier message `amends`: its new
    /// `text` (an edit by its author, `from`), or with `deleted` its removal (by its author or
    /// a moderator, `from`). Apply it to that message if you show it; never show it as a
    /// message of its own. It has its own `id` in the room's order, like any message, so
    /// catch-up after `since` brings the changes too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amends: Option<MessageId>,
    /// On a message: its text was edited after it was sent (`text` is the latest).
    #[serde(default, skip_serializing_if = "is_false")]
    pub edited: bool,
    /// On a message: it was deleted, and `text` is empty (a tombstone: show "message
    /// deleted"). On an amendment: the amendment is the deletion.
    #[serde(default, skip_serializing_if = "is_false")]
    pub deleted: bool,
}

/// What someone may do in a room beyond chatting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Made the room (the first signed-in person in it before it had messages): moderates it.
    Owner,
    /// Named by the operator (`server admin grant-moderator`): deletes anyone's messages.
    Moderator,
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// A room and how many people are in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomInfo {
    pub name: String,
    pub members: u32,
}

/// Why the server refused a request. Clients match on these; the `message` beside them is for
/// people and may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame was not valid JSON.
    MalformedJson,
    /// The JSON had a `type` this server does not know.
    UnknownType,
    /// The `type` was known but its fields were missing or of the wrong kind.
    InvalidMessage,
    /// Binary frames are not part of the protocol.
    BinaryUnsupported,
    /// The text was empty or only white space.
    EmptyText,
    /// The text was longer than the server accepts.
    TextTooLong,
    /// The room name broke the naming rules.
    InvalidRoom,
    /// The nick broke the naming rules.
    InvalidNick,
    /// Someone else in that room already uses the nick.
    NickTaken,
    /// The connection has not joined a room yet, so it cannot send.
    NotJoined,
    /// The server could not do what was asked; trying again later may work.
    Unavailable,
    /// The server has as many rooms open as it allows: join a room that is open, or try later.
    TooManyRooms,
    /// The connection is in as many rooms as one connection may be: leave one first.
    TooManyJoined,
    /// Too many frames too fast; `retry_after_ms` says when the next one will be accepted.
    /// A client that keeps going is closed with [`close::POLICY_VIOLATION`].
    RateLimited,
    /// This server lets only signed-in people chat (`--auth accounts`), or only those its
    /// operator's site signed a token for (`--auth token`), and the connection is neither (or
    /// its token is expired, forged or for another site). Sent before the server closes with
    /// [`close::UNAUTHENTICATED`]: sign in, or get a fresh token, and connect again.
    Unauthenticated,
    /// The connection may not do this: its token names the rooms it may enter, and this is
    /// not one of them; or it edits or deletes a message that is not its own without
    /// moderating the room.
    Forbidden,
    /// The message an `edit` or `delete` names is not in the room's retained history (never
    /// was, was trimmed, or is deleted already); or the member a `moderate` names is not in
    /// the room.
    NotFound,
    /// A moderator muted you in this room: you cannot send (or edit) there until
    /// `retry_after_ms` have passed.
    Muted,
    /// A moderator banned you from this room: you cannot join it until `retry_after_ms` have
    /// passed.
    Banned,
    /// A code this build does not know (sent by a newer server): treat it as a refusal of the
    /// request, and show the `message`. The server never sends it.
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// Whether sending the same request again later may succeed (`rate_limited`,
    /// `unavailable`, `not_joined`); the others refuse the request itself.
    pub fn is_transient(self) -> bool {
        matches!(self, ErrorCode::RateLimited | ErrorCode::Unavailable | ErrorCode::NotJoined)
    }
}

impl ServerMessage {
    /// An error frame with a human-readable explanation.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        ServerMessage::Error {
            code,
            message: message.into(),
            retry_after_ms: None,
            client_id: None,
            room: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T>(value: &T) -> T
    where
        T: Serialize + for<'de> Deserialize<'de>,
    {
        let json = serde_json::to_string(value).expect("serializes");
        serde_json::from_str(&json).expect("deserializes what it serialized")
    }

    fn sample_message() -> ChatMessage {
        ChatMessage {
            id: 7,
            room: "general".into(),
            from: "alice".into(),
            text: "hi <b>there</b> \u{1f44b}".into(),
            ts: 1_700_000_000_123,
            bot: false,
            signed_in: false,
            ..Default::default()
        }
    }

    /// Every client message survives serialization unchanged.
    #[test]
    fn client_messages_round_trip() {
        let all = [
            ClientMessage::Send { text: "hello\nworld".into(), client_id: None, room: None },
            ClientMessage::Send {
                text: "hi".into(),
                client_id: Some("c-1".into()),
                room: Some("rust".into()),
            },
            ClientMessage::Join {
                room: "rust".into(),
                nick: None,
                since: None,
                add: false,
                epoch: None,
            },
            ClientMessage::Join {
                room: "rust".into(),
                nick: Some("bob".into()),
                since: Some(9),
                add: true,
                epoch: Some("0123456789abcdef".into()),
            },
            ClientMessage::Leave { room: "rust".into() },
            ClientMessage::Typing { room: Some("rust".into()) },
            ClientMessage::ListRooms,
            ClientMessage::Typing { room: None },
            ClientMessage::History {
                room: "rust".into(),
                before: Some(9),
                after: None,
                limit: None,
            },
            ClientMessage::History {
                room: "rust".into(),
                before: None,
                after: Some(3),
                limit: Some(5),
            },
        ];
        for message in all {
            assert_eq!(round_trip(&message), message);
        }
    }

    /// An error code from a newer server parses as `Unknown` instead of failing the frame.
    #[test]
    fn unknown_error_codes_still_parse() {
        let frame = r#"{"type":"error","code":"from_the_future","message":"new"}"#;
        let parsed: ServerMessage = serde_json::from_str(frame).expect("parses");
        assert_eq!(parsed, ServerMessage::error(ErrorCode::Unknown, "new"));
    }

    /// Every server message survives serialization unchanged.
    #[test]
    fn server_messages_round_trip() {
        let rooms = vec![RoomInfo { name: "general".into(), members: 2 }];
        let all = [
            ServerMessage::Welcome {
                room: "general".into(),
                nick: "alice".into(),
                members: vec!["alice".into(), "bob".into()],
                signed_in: vec!["bob".into()],
                history: vec![
                    sample_message(),
                    ChatMessage { signed_in: true, ..sample_message() },
                ],
                rooms: rooms.clone(),
                since: None,
                truncated: false,
                more: false,
                epoch: "0123456789abcdef".into(),
                role: None,
                private: false,
            },
            ServerMessage::Welcome {
                room: "general".into(),
                nick: "alice".into(),
                members: vec![],
                signed_in: vec![],
                history: vec![],
                rooms: vec![],
                since: Some(6),
                truncated: true,
                more: true,
                epoch: "0123456789abcdef".into(),
                role: None,
                private: false,
            },
            ServerMessage::History {
                room: "general".into(),
                messages: vec![sample_message()],
                before: Some(8),
                after: None,
                more: true,
            },
            ServerMessage::Message(sample_message()),
            ServerMessage::Ack { client_id: "c-1".into(), id: 7, room: "general".into() },
            ServerMessage::Joined {
                room: "general".into(),
                nick: "bob".into(),
                ts: 1,
                signed_in: false,
            },
            ServerMessage::Joined {
                room: "general".into(),
                nick: "ann".into(),
                ts: 1,
                signed_in: true,
            },
            ServerMessage::Left { room: "general".into(), nick: "bob".into(), ts: 2 },
            ServerMessage::Rooms { rooms },
            ServerMessage::Reset { room: "general".into(), epoch: "0123456789abcdef".into() },
            ServerMessage::Typing { room: "general".into(), nick: "bob".into() },
            ServerMessage::error(ErrorCode::NickTaken, "taken"),
            ServerMessage::Error {
                code: ErrorCode::RateLimited,
                message: "slow down".into(),
                retry_after_ms: Some(250),
                client_id: Some("c-2".into()),
                room: Some("general".into()),
            },
        ];
        for message in all {
            assert_eq!(round_trip(&message), message);
        }
    }

    /// The core shapes other tools depend on are exactly as documented.
    #[test]
    fn core_wire_shapes_are_fixed() {
        let send: ClientMessage =
            serde_json::from_str(r#"{"type":"send","text":"hi"}"#).expect("core send parses");
        assert_eq!(send, ClientMessage::Send { text: "hi".into(), client_id: None, room: None });
        // The one-room forms of `typing` and `join` stay exactly as they were: a room named on
        // neither, `add` left out.
        let old: ServerMessage = serde_json::from_str(
            r#"{"type":"welcome","room":"r","nick":"n","members":[],"history":[],"rooms":[]}"#,
        )
        .expect("a welcome from a server older than epochs parses");
        assert!(matches!(old, ServerMessage::Welcome { epoch, .. } if epoch.is_empty()));
        let typing: ClientMessage = serde_json::from_str(r#"{"type":"typing"}"#).expect("parses");
        assert_eq!(typing, ClientMessage::Typing { room: None });
        assert_eq!(serde_json::to_string(&typing).expect("json"), r#"{"type":"typing"}"#);
        let join = ClientMessage::Join {
            room: "r".into(),
            nick: None,
            since: None,
            add: false,
            epoch: None,
        };
        assert_eq!(serde_json::to_string(&join).expect("json"), r#"{"type":"join","room":"r"}"#);

        let json = serde_json::to_value(ServerMessage::Message(sample_message())).expect("json");
        assert_eq!(
            json,
            serde_json::json!({
                "type": "message", "id": 7, "room": "general", "from": "alice",
                "text": "hi <b>there</b> \u{1f44b}", "ts": 1_700_000_000_123_u64
            })
        );

        let error = serde_json::to_value(ServerMessage::error(ErrorCode::MalformedJson, "bad"))
            .expect("json");
        assert_eq!(
            error,
            serde_json::json!({"type": "error", "code": "malformed_json", "message": "bad"})
        );
        assert_eq!(
            serde_json::to_value(ClientMessage::ListRooms).expect("json"),
            serde_json::json!({"type": "list_rooms"})
        );
    }

    /// Unknown fields are ignored so that newer clients still talk to older servers, but a
    /// missing `type` or a missing required field is refused.
    #[test]
    fn extra_fields_are_ignored_missing_ones_refused() {
        let extra = serde_json::from_str::<ClientMessage>(r#"{"type":"send","text":"a","x":1}"#);
        assert_eq!(
            extra.expect("extra field ignored"),
            ClientMessage::Send { text: "a".into(), client_id: None, room: None }
        );
        assert!(serde_json::from_str::<ClientMessage>(r#"{"type":"send","txt":"a"}"#).is_err());
        assert!(serde_json::from_str::<ClientMessage>(r#"{"text":"a"}"#).is_err());
    }
}
