//! Decoding and validation of what a client sends: plain functions, no actors, no I/O.
//!
//! The session actor hands every complete text message to [`decode`] and either acts on the
//! resulting [`Command`] or sends the [`Rejection`] back as an error frame.

use protocol::rules::{self, RuleError};
use protocol::{ClientMessage, ErrorCode, ServerMessage};

use crate::config::Limits;

/// A validated request from a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Send { text: String },
    Join { room: String, nick: Option<String> },
    ListRooms,
    Typing,
}

/// Why a frame was refused, ready to be sent as an `error` frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub code: ErrorCode,
    pub message: String,
    pub retry_after_ms: Option<u64>,
}

impl Rejection {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Rejection { code, message: message.into(), retry_after_ms: None }
    }

    /// Too fast: the next frame is accepted after `wait`.
    pub fn rate_limited(wait: std::time::Duration) -> Self {
        // Rounded up, so waiting the hinted time is always enough.
        let ms = u64::try_from(wait.as_micros().div_ceil(1000)).unwrap_or(u64::MAX);
        Rejection {
            code: ErrorCode::RateLimited,
            message: format!("You are sending too fast; wait {ms} ms."),
            retry_after_ms: Some(ms),
        }
    }

    pub fn into_message(self) -> ServerMessage {
        ServerMessage::Error {
            code: self.code,
            message: self.message,
            retry_after_ms: self.retry_after_ms,
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
        ClientMessage::Send { text } => {
            rules::check_text(&text, limits.max_text_chars)?;
            Ok(Command::Send { text })
        }
        ClientMessage::Join { room, nick } => {
            let room = rules::check_room(&room, limits.max_room_chars)?;
            let nick =
                nick.map(|nick| rules::check_nick(&nick, limits.max_nick_chars)).transpose()?;
            Ok(Command::Join { room, nick })
        }
        ClientMessage::ListRooms => Ok(Command::ListRooms),
        ClientMessage::Typing => Ok(Command::Typing),
    }
}

/// Validates the room and nick a client names in the connect URL. A missing room means the
/// default room; a missing nick lets the room generate one.
pub fn connect_target(
    room: Option<&str>,
    nick: Option<&str>,
    limits: &Limits,
) -> Result<(String, Option<String>), Rejection> {
    let room = rules::check_room(room.unwrap_or(protocol::DEFAULT_ROOM), limits.max_room_chars)?;
    let nick = match nick {
        Some(nick) if !nick.trim().is_empty() => {
            Some(rules::check_nick(nick, limits.max_nick_chars)?)
        }
        _ => None,
    };
    Ok((room, nick))
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
        Some(kind) if !["send", "join", "list_rooms", "typing"].contains(&kind.as_str()) => {
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
            Ok(Command::Send { text: "hi".into() })
        );
        assert_eq!(
            decode(r#"{"type":"join","room":"Rust","nick":" bob "}"#, &limits()),
            Ok(Command::Join { room: "rust".into(), nick: Some("bob".into()) })
        );
        assert_eq!(decode(r#"{"type":"list_rooms"}"#, &limits()), Ok(Command::ListRooms));
        assert_eq!(decode(r#"{"type":"typing"}"#, &limits()), Ok(Command::Typing));
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
    }

    /// The connect URL's room defaults to `general`; a blank nick means "generate one".
    #[test]
    fn connect_target_defaults_and_checks() {
        let limits = Limits::default();
        assert_eq!(connect_target(None, None, &limits), Ok(("general".into(), None)));
        assert_eq!(connect_target(Some("Dev"), Some(" "), &limits), Ok(("dev".into(), None)));
        assert_eq!(
            connect_target(Some("dev"), Some("ann"), &limits),
            Ok(("dev".into(), Some("ann".into())))
        );
        let bad_room = connect_target(Some("a b"), None, &limits).expect_err("bad room");
        assert_eq!(bad_room.code, ErrorCode::InvalidRoom);
        let bad_nick = connect_target(None, Some("x\ny"), &limits).expect_err("bad nick");
        assert_eq!(bad_nick.code, ErrorCode::InvalidNick);
    }
}
