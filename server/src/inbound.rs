//! Decoding and validation of what a client sends: plain functions, no actors, no I/O.
//!
//! The session actor hands every complete text message to [`decode`] and either acts on the
//! resulting [`Command`] or sends the [`Rejection`] back as an error frame.

use protocol::rules::{self, RuleError};
use protocol::{ClientId, ClientMessage, ErrorCode, MessageId, ServerMessage};

use crate::config::Limits;

/// A validated request from a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Send {
        text: String,
        client_id: Option<ClientId>,
        /// The room named, normalised; `None`: the connection's one room.
        room: Option<String>,
    },
    Join {
        room: String,
        nick: Option<String>,
        since: Option<MessageId>,
        /// Keep the other rooms (otherwise the join moves the connection).
        add: bool,
        /// The epoch `since` comes from.
        epoch: Option<String>,
    },
    Leave {
        room: String,
    },
    ListRooms,
    Typing {
        room: Option<String>,
    },
    History {
        room: String,
        before: Option<MessageId>,
        after: Option<MessageId>,
        limit: Option<u32>,
    },
    /// A moderator's `kick`, `mute` or `ban` of `nick` in `room`, for `minutes` (checked:
    /// 1 to the protocol's maximum).
    Moderate {
        room: String,
        nick: String,
        action: protocol::Sanction,
        minutes: u32,
    },
    /// Make `room` private or public.
    Configure {
        room: String,
        private: bool,
    },
    /// A new invitation code for `room` working `days` days (checked: 1 to the protocol's
    /// maximum) for `uses` people (checked likewise; `None`: any number), or (`revoke`) every
    /// code revoked.
    Invite {
        room: String,
        revoke: bool,
        days: u32,
        uses: Option<u32>,
    },
    /// The mutes and bans in force in `room`.
    Sanctions {
        room: String,
    },
    /// Give the account `nick` a place in `room` (moderator, member), or take it away.
    Grant {
        room: String,
        nick: String,
        grant: protocol::Grant,
        revoke: bool,
    },
    /// An `edit` (with a text) or a `delete` (without) of message `target` of `room`.
    Amend {
        room: String,
        target: MessageId,
        text: Option<String>,
        client_id: Option<ClientId>,
    },
}

/// Why a frame was refused, ready to be sent as an `error` frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub code: ErrorCode,
    pub message: String,
    pub retry_after_ms: Option<u64>,
    /// The client id of the refused `send`, if it had one.
    pub client_id: Option<ClientId>,
    /// The room the refused request was about, if it named one.
    pub room: Option<String>,
}

impl Rejection {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Rejection {
            code,
            message: message.into(),
            retry_after_ms: None,
            client_id: None,
            room: None,
        }
    }

    /// Too fast: the next frame is accepted after `wait`.
    pub fn rate_limited(wait: std::time::Duration) -> Self {
        Rejection::too_fast(wait, |ms| format!("You are sending too fast; wait {ms} ms."))
    }

    /// Refused as `rate_limited`, possible again after `wait`; `explain` words the refusal
    /// given the wait in whole milliseconds, the same number as `retry_after_ms`.
    pub fn too_fast(wait: std::time::Duration, explain: impl FnOnce(u64) -> String) -> Self {
        // Rounded up, so waiting the hinted time is always enough.
        let ms = u64::try_from(wait.as_micros().div_ceil(1000)).unwrap_or(u64::MAX);
        Rejection {
            code: ErrorCode::RateLimited,
            message: explain(ms),
            retry_after_ms: Some(ms),
            client_id: None,
            room: None,
        }
    }

    /// A rename sooner than the room allows after the last one; possible again after `wait`.
    pub fn rename_too_soon(wait: std::time::Duration) -> Self {
        Rejection::too_fast(wait, |ms| {
            format!("You renamed a moment ago; you can rename again in {ms} ms.")
        })
    }

    /// The same refusal, naming the `send` it refuses.
    pub fn for_client_id(self, client_id: Option<ClientId>) -> Self {
        Rejection { client_id, ..self }
    }

    /// The same refusal, naming the room of the request it refuses.
    pub fn in_room(self, room: &str) -> Self {
        Rejection { room: Some(room.to_owned()), ..self }
    }

    pub fn into_message(self) -> ServerMessage {
        ServerMessage::Error {
            code: self.code,
            message: self.message,
            retry_after_ms: self.retry_after_ms,
            client_id: self.client_id,
            room: self.room,
        }
    }
}

impl From<RuleError> for Rejection {
    fn from(error: RuleError) -> Self {
        Rejection::new(error.code, error.message)
    }
}

/// Parses and validates one text frame.
pub fn decode(frame: &str, limits: &Limits) -> Result<Command, Rejection> {
    let message: ClientMessage =
        serde_json::from_str(frame).map_err(|error| classify(frame, &error))?;
    match message {
        ClientMessage::Send { text, client_id, room } => {
            if let Some(client_id) = &client_id {
                rules::check_client_id(client_id)?;
            }
            let refused =
                |error: RuleError| Rejection::from(error).for_client_id(client_id.clone());
            rules::check_text(&text, limits.max_text_chars).map_err(refused)?;
            let room = check_named_room(room, limits).map_err(refused)?;
            Ok(Command::Send { text, client_id, room })
        }
        ClientMessage::Join { room, nick, since, add, epoch } => {
            let room = rules::check_room(&room, limits.max_room_chars)?;
            let nick = nick
                .map(|nick| crate::names::check_nick(&nick, limits.max_nick_chars))
                .transpose()?;
            let epoch = epoch.filter(|epoch| !epoch.is_empty()).map(check_epoch).transpose()?;
            Ok(Command::Join { room, nick, since, add, epoch })
        }
        ClientMessage::Edit { room, id, text, client_id } => {
            if let Some(client_id) = &client_id {
                rules::check_client_id(client_id)?;
            }
            let refused =
                |error: RuleError| Rejection::from(error).for_client_id(client_id.clone());
            rules::check_text(&text, limits.max_text_chars).map_err(refused)?;
            let room = rules::check_room(&room, limits.max_room_chars).map_err(refused)?;
            Ok(Command::Amend { room, target: id, text: Some(text), client_id })
        }
        ClientMessage::Delete { room, id, client_id } => {
            if let Some(client_id) = &client_id {
                rules::check_client_id(client_id)?;
            }
            let room = rules::check_room(&room, limits.max_room_chars)
                .map_err(|error| Rejection::from(error).for_client_id(client_id.clone()))?;
            Ok(Command::Amend { room, target: id, text: None, client_id })
        }
        ClientMessage::Configure { room, private } => Ok(Command::Configure {
            room: rules::check_room(&room, limits.max_room_chars)?,
            private,
        }),
        ClientMessage::Invite { room, revoke, days, uses } => {
            let room = rules::check_room(&room, limits.max_room_chars)?;
            let days = days.unwrap_or(protocol::DEFAULT_INVITATION_DAYS);
            let days_ok = (1..=protocol::MAX_INVITATION_DAYS).contains(&days);
            if !days_ok
                || uses.is_some_and(|uses| !(1..=protocol::MAX_INVITATION_USES).contains(&uses))
            {
                let message = format!(
                    "An invitation works 1 to {} days, for 1 to {} people.",
                    protocol::MAX_INVITATION_DAYS,
                    protocol::MAX_INVITATION_USES
                );
                return Err(Rejection::new(ErrorCode::InvalidMessage, message).in_room(&room));
            }
            Ok(Command::Invite { room, revoke, days, uses })
        }
        ClientMessage::Sanctions { room } => {
            Ok(Command::Sanctions { room: rules::check_room(&room, limits.max_room_chars)? })
        }
        ClientMessage::Grant { room, nick, grant, revoke } => {
            let room = rules::check_room(&room, limits.max_room_chars)?;
            let nick = crate::names::check_nick(&nick, limits.max_nick_chars)
                .map_err(|error| Rejection::from(error).in_room(&room))?;
            Ok(Command::Grant { room, nick, grant, revoke })
        }
        ClientMessage::Moderate { room, nick, action, minutes } => {
            let room = rules::check_room(&room, limits.max_room_chars)?;
            let nick = crate::names::check_nick(&nick, limits.max_nick_chars)?;
            let minutes = minutes.unwrap_or(protocol::DEFAULT_SANCTION_MINUTES);
            if !(1..=protocol::MAX_SANCTION_MINUTES).contains(&minutes) {
                let message =
                    format!("A mute or ban lasts 1 to {} minutes.", protocol::MAX_SANCTION_MINUTES);
                return Err(Rejection::new(ErrorCode::InvalidMessage, message).in_room(&room));
            }
            Ok(Command::Moderate { room, nick, action, minutes })
        }
        ClientMessage::Leave { room } => {
            Ok(Command::Leave { room: rules::check_room(&room, limits.max_room_chars)? })
        }
        ClientMessage::History { room, before, after, limit } => {
            let room = rules::check_room(&room, limits.max_room_chars)?;
            if before.is_some() && after.is_some() {
                let message = "A history request takes `before` or `after`, not both.";
                return Err(Rejection::new(ErrorCode::InvalidMessage, message));
            }
            Ok(Command::History { room, before, after, limit })
        }
        ClientMessage::ListRooms => Ok(Command::ListRooms),
        ClientMessage::Typing { room } => {
            Ok(Command::Typing { room: check_named_room(room, limits)? })
        }
    }
}

/// The longest epoch a client may send back (the server's are 16 hex digits).
const MAX_EPOCH_CHARS: usize = 64;

/// An epoch a client sends back: short, and of the characters epochs are made of; anything
/// else is no epoch of any server's. (An empty one, as a server older than epochs gave, is
/// taken as none before this.)
fn check_epoch(epoch: String) -> Result<String, Rejection> {
    let valid = !epoch.is_empty()
        && epoch.len() <= MAX_EPOCH_CHARS
        && epoch.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid {
        Ok(epoch)
    } else {
        Err(Rejection::new(ErrorCode::InvalidMessage, "An epoch is 1 to 64 of A-Z a-z 0-9 - _."))
    }
}

/// A room a `send` or `typing` may name, normalised.
fn check_named_room(room: Option<String>, limits: &Limits) -> Result<Option<String>, RuleError> {
    room.map(|room| rules::check_room(&room, limits.max_room_chars)).transpose()
}

/// Where a connect URL (or a `join`) asks to go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub room: String,
    pub nick: Option<String>,
    /// The last message id the client saw in `room`.
    pub since: Option<MessageId>,
    /// The epoch `since` comes from.
    pub epoch: Option<String>,
    /// (The connect URL only) An invitation code to a private `room`.
    pub invite: Option<String>,
}

/// Validates the room and nick a client names in the connect URL. A missing room means the
/// default room; a missing nick lets the room generate one.
pub fn connect_target(
    room: Option<&str>,
    nick: Option<&str>,
    since: Option<MessageId>,
    epoch: Option<&str>,
    invite: Option<&str>,
    limits: &Limits,
) -> Result<Target, Rejection> {
    let room = rules::check_room(room.unwrap_or(protocol::DEFAULT_ROOM), limits.max_room_chars)?;
    let nick = match nick {
        Some(nick) if !nick.trim().is_empty() => {
            Some(crate::names::check_nick(nick, limits.max_nick_chars)?)
        }
        _ => None,
    };
    let epoch = epoch
        .filter(|epoch| !epoch.is_empty())
        .map(|epoch| check_epoch(epoch.to_owned()))
        .transpose()?;
    // A code is 32 hex digits (see `accounts::new_invitation`); anything else can match none.
    let invite = invite.filter(|code| code.len() <= 64).map(str::to_owned);
    Ok(Target { room, nick, since, epoch, invite })
}

/// Tells a syntax error apart from a well-formed object of an unknown or malformed kind. Only
/// runs on the error path, so valid traffic is parsed once.
fn classify(frame: &str, error: &serde_json::Error) -> Rejection {
    if error.is_syntax() || error.is_eof() {
        return Rejection::new(ErrorCode::MalformedJson, "That was not valid JSON.");
    }
    let kind = serde_json::from_str::<serde_json::Value>(frame)
        .ok()
        .and_then(|value| value.get("type").and_then(|kind| kind.as_str().map(str::to_owned)));
    match kind {
        Some(kind)
            if ![
                "send",
                "join",
                "leave",
                "list_rooms",
                "typing",
                "history",
                "edit",
                "delete",
                "moderate",
                "configure",
                "invite",
            ]
            .contains(&kind.as_str()) =>
        {
            Rejection::new(ErrorCode::UnknownType, format!("Unknown message type {kind:?}."))
        }
        _ => Rejection::new(ErrorCode::InvalidMessage, format!("Invalid message: {error}.")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits { max_text_chars: 10, ..Limits::default() }
    }

    fn code(frame: &str) -> ErrorCode {
        decode(frame, &limits()).expect_err("frame should be refused").code
    }

    /// Well-formed requests decode to their commands, with names normalised.
    #[test]
    fn valid_frames_decode() {
        assert_eq!(
            decode(r#"{"type":"send","text":"hi"}"#, &limits()),
            Ok(Command::Send { text: "hi".into(), client_id: None, room: None })
        );
        assert_eq!(
            decode(r#"{"type":"send","text":"hi","client_id":"k-1","room":"Dev"}"#, &limits()),
            Ok(Command::Send {
                text: "hi".into(),
                client_id: Some("k-1".into()),
                room: Some("dev".into())
            })
        );
        assert_eq!(
            decode(r#"{"type":"join","room":"Rust","nick":" bob ","since":12}"#, &limits()),
            Ok(Command::Join {
                room: "rust".into(),
                nick: Some("bob".into()),
                since: Some(12),
                add: false,
                epoch: None
            })
        );
        assert_eq!(
            decode(r#"{"type":"join","room":"rust","add":true}"#, &limits()),
            Ok(Command::Join {
                room: "rust".into(),
                nick: None,
                since: None,
                add: true,
                epoch: None
            })
        );
        assert_eq!(
            decode(r#"{"type":"leave","room":"Rust"}"#, &limits()),
            Ok(Command::Leave { room: "rust".into() })
        );
        assert_eq!(decode(r#"{"type":"list_rooms"}"#, &limits()), Ok(Command::ListRooms));
        assert_eq!(decode(r#"{"type":"typing"}"#, &limits()), Ok(Command::Typing { room: None }));
        assert_eq!(
            decode(r#"{"type":"typing","room":"a"}"#, &limits()),
            Ok(Command::Typing { room: Some("a".into()) })
        );
    }

    /// Each kind of bad frame gets its own error code.
    #[test]
    fn bad_frames_are_classified() {
        assert_eq!(code("{not json"), ErrorCode::MalformedJson);
        assert_eq!(code(""), ErrorCode::MalformedJson);
        assert_eq!(code(r#"{"type":"send","text":"hi"} trailing"#), ErrorCode::MalformedJson);
        assert_eq!(code(r#"{"type":"dance"}"#), ErrorCode::UnknownType);
        assert_eq!(code(r#"{"type":"send"}"#), ErrorCode::InvalidMessage);
        assert_eq!(code(r#"{"type":"send","text":5}"#), ErrorCode::InvalidMessage);
        assert_eq!(code(r#"{"text":"no type"}"#), ErrorCode::InvalidMessage);
        assert_eq!(code(r#"[1,2]"#), ErrorCode::InvalidMessage);
        assert_eq!(code(r#"{"type":"send","text":"   "}"#), ErrorCode::EmptyText);
        assert_eq!(code(r#"{"type":"send","text":"eleven char"}"#), ErrorCode::TextTooLong);
        assert_eq!(code(r#"{"type":"join","room":"no spaces"}"#), ErrorCode::InvalidRoom);
        assert_eq!(code(r#"{"type":"join","room":"ok","nick":"a\u0007"}"#), ErrorCode::InvalidNick);
        assert_eq!(
            code(r#"{"type":"send","text":"a","client_id":"a b"}"#),
            ErrorCode::InvalidMessage
        );
        assert_eq!(code(r#"{"type":"join","room":"ok","since":-1}"#), ErrorCode::InvalidMessage);
        assert_eq!(code(r#"{"type":"leave"}"#), ErrorCode::InvalidMessage);
        assert_eq!(code(r#"{"type":"join","room":"a","epoch":"a b"}"#), ErrorCode::InvalidMessage);
        let empty = decode(r#"{"type":"join","room":"a","epoch":""}"#, &limits());
        assert!(matches!(empty, Ok(Command::Join { epoch: None, .. })), "empty is none");
        assert_eq!(code(r#"{"type":"leave","room":"a b"}"#), ErrorCode::InvalidRoom);
        assert_eq!(code(r#"{"type":"typing","room":"a b"}"#), ErrorCode::InvalidRoom);
        assert_eq!(code(r#"{"type":"send","text":"a","room":"a b"}"#), ErrorCode::InvalidRoom);
    }

    /// A refused `send` names its client id, so the client knows which message failed.
    #[test]
    fn refused_send_names_its_client_id() {
        let refused = decode(r#"{"type":"send","text":"eleven char","client_id":"k9"}"#, &limits())
            .expect_err("too long");
        assert_eq!(
            (refused.code, refused.client_id.as_deref()),
            (ErrorCode::TextTooLong, Some("k9"))
        );
    }

    /// The connect URL's room defaults to `general`; a blank nick means "generate one".
    #[test]
    fn connect_target_defaults_and_checks() {
        let limits = Limits::default();
        let target = |room: &str, nick: Option<&str>| Target {
            room: room.into(),
            nick: nick.map(str::to_owned),
            since: None,
            epoch: None,
            invite: None,
        };
        assert_eq!(
            connect_target(None, None, None, None, None, &limits),
            Ok(target("general", None))
        );
        assert_eq!(
            connect_target(Some("Dev"), Some(" "), None, None, None, &limits),
            Ok(target("dev", None))
        );
        assert_eq!(
            connect_target(Some("dev"), Some("ann"), Some(4), None, None, &limits),
            Ok(Target { since: Some(4), ..target("dev", Some("ann")) })
        );
        let bad_room =
            connect_target(Some("a b"), None, None, None, None, &limits).expect_err("bad room");
        assert_eq!(bad_room.code, ErrorCode::InvalidRoom);
        let bad_nick =
            connect_target(None, Some("x\ny"), None, None, None, &limits).expect_err("bad nick");
        let with_epoch =
            connect_target(None, None, Some(4), Some("e-1"), None, &limits).expect("valid");
        assert_eq!(with_epoch.epoch.as_deref(), Some("e-1"));
        let bad_epoch =
            connect_target(None, None, None, Some("é"), None, &limits).expect_err("bad epoch");
        assert_eq!(bad_epoch.code, ErrorCode::InvalidMessage);
        assert_eq!(bad_nick.code, ErrorCode::InvalidNick);
    }
}
