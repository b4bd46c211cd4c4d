//! Limits and naming rules both ends apply: the server enforces them, the client uses them to
//! explain a problem before sending.
//!
//! Each check returns the value to use (trimmed, normalised) or a [`RuleError`] that names the
//! [`ErrorCode`] the server reports for it.

use crate::ErrorCode;

/// Default longest message text, in characters (Unicode scalar values).
pub const MAX_TEXT_CHARS: usize = 4096;
/// Longest nick, in characters.
pub const MAX_NICK_CHARS: usize = 32;
/// Longest room name, in characters.
pub const MAX_ROOM_CHARS: usize = 32;
/// Longest client token (see docs/PROTOCOL.md, "Reconnecting").
pub const MAX_CLIENT_TOKEN_CHARS: usize = 64;

/// A value that broke a rule, with the reason in words a person understands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    pub code: ErrorCode,
    pub message: String,
}

impl RuleError {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        RuleError { code, message: message.into() }
    }
}

/// A message text: not blank, at most `max_chars` characters, no control characters but line
/// breaks and tabs. The text is kept as typed (leading spaces and line breaks may matter to the
/// author). Other control characters show as nothing or as garbage, can move a terminal's
/// cursor in clients that print messages, and cost six bytes each once escaped in JSON.
pub fn check_text(text: &str, max_chars: usize) -> Result<(), RuleError> {
    if text.trim().is_empty() {
        return Err(RuleError::new(ErrorCode::EmptyText, "A message cannot be empty."));
    }
    if exceeds(text, max_chars) {
        return Err(RuleError::new(
            ErrorCode::TextTooLong,
            format!("A message can be at most {max_chars} characters long."),
        ));
    }
    if text.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(RuleError::new(
            ErrorCode::InvalidMessage,
            "A message cannot contain control characters other than line breaks and tabs.",
        ));
    }
    Ok(())
}

/// A nick: 1 to `max_chars` characters after trimming, no control characters. Returns the
/// trimmed nick. Any other character is allowed; clients must display nicks as plain text.
pub fn check_nick(nick: &str, max_chars: usize) -> Result<String, RuleError> {
    let nick = nick.trim();
    if nick.is_empty() {
        return Err(RuleError::new(ErrorCode::InvalidNick, "A nickname cannot be empty."));
    }
    if exceeds(nick, max_chars) {
        return Err(RuleError::new(
            ErrorCode::InvalidNick,
            format!("A nickname can be at most {max_chars} characters long."),
        ));
    }
    if nick.chars().any(char::is_control) {
        return Err(RuleError::new(
            ErrorCode::InvalidNick,
            "A nickname cannot contain control characters.",
        ));
    }
    Ok(nick.to_owned())
}

/// Nicks in case-insensitive order (`members` lists are sorted by it). The server compares
/// nicks for uniqueness on a stricter key that also catches look-alikes.
pub fn nick_key(nick: &str) -> String {
    nick.to_lowercase()
}

/// A room name: 1 to `max_chars` of `a-z`, `0-9`, `-` and `_` after trimming and lowercasing, so
/// it fits in a URL unescaped and `General` is the same room as `general`.
pub fn check_room(room: &str, max_chars: usize) -> Result<String, RuleError> {
    let room = room.trim().to_ascii_lowercase();
    if room.is_empty() {
        return Err(RuleError::new(ErrorCode::InvalidRoom, "A room name cannot be empty."));
    }
    if exceeds(&room, max_chars) {
        return Err(RuleError::new(
            ErrorCode::InvalidRoom,
            format!("A room name can be at most {max_chars} characters long."),
        ));
    }
    if !room.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        return Err(RuleError::new(
            ErrorCode::InvalidRoom,
            "A room name can only use letters a-z, digits, '-' and '_'.",
        ));
    }
    Ok(room)
}

/// A client token: an opaque id a client keeps per tab, 1 to [`MAX_CLIENT_TOKEN_CHARS`] of
/// ASCII letters, digits, `-` and `_`. Invalid tokens are treated as absent.
pub fn check_client_token(token: &str) -> Option<String> {
    let valid = !token.is_empty()
        && token.len() <= MAX_CLIENT_TOKEN_CHARS
        && token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    valid.then(|| token.to_owned())
}

/// A message's client id ([`crate::ClientId`]): the same alphabet and length as a client
/// token. Unlike a token, a bad one is refused (`invalid_message`), since the client relies on
/// the acknowledgement it asked for.
pub fn check_client_id(id: &str) -> Result<(), RuleError> {
    if check_client_token(id).is_none() {
        return Err(RuleError::new(
            ErrorCode::InvalidMessage,
            format!(
                "A client_id must be 1 to {MAX_CLIENT_TOKEN_CHARS} letters, digits, '-' or '_'."
            ),
        ));
    }
    Ok(())
}

/// Whether `s` has more than `max` characters, without counting past `max + 1`.
fn exceeds(s: &str, max: usize) -> bool {
    s.chars().nth(max).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Blank and over-long texts are refused with their own codes; the limit counts characters.
    #[test]
    fn text_rules() {
        assert_eq!(check_text("  \n\t", 10).map_err(|e| e.code), Err(ErrorCode::EmptyText));
        assert_eq!(check_text("", 10).map_err(|e| e.code), Err(ErrorCode::EmptyText));
        assert_eq!(check_text("héllo", 5), Ok(()));
        assert_eq!(check_text("héllo!", 5).map_err(|e| e.code), Err(ErrorCode::TextTooLong));
        assert_eq!(check_text(" indented\nsecond line\twith a tab", 100), Ok(()));
        for control in ["bell\u{7}", "esc\u{1b}[2J", "cr\r", "nul\0", "del\u{7f}", "c1\u{85}"] {
            assert_eq!(
                check_text(control, 100).map_err(|e| e.code),
                Err(ErrorCode::InvalidMessage),
                "{control:?}"
            );
        }
    }

    /// Nicks are trimmed, bounded and free of control characters; other characters pass.
    #[test]
    fn nick_rules() {
        assert_eq!(check_nick("  alice ", 32), Ok("alice".to_owned()));
        assert_eq!(check_nick("<script>", 32), Ok("<script>".to_owned()));
        assert_eq!(check_nick("élodie", 6), Ok("élodie".to_owned()));
        for bad in ["", "   ", "a\u{0}b", "tab\there", "new\nline", "sevenchars"] {
            assert_eq!(
                check_nick(bad, 6).map_err(|e| e.code),
                Err(ErrorCode::InvalidNick),
                "{bad:?}"
            );
        }
        assert_eq!(nick_key("ALice"), nick_key("alice"));
    }

    /// Room names are lowercased and limited to URL-safe characters.
    #[test]
    fn room_rules() {
        assert_eq!(check_room(" General ", 32), Ok("general".to_owned()));
        assert_eq!(check_room("rust-lang_2", 32), Ok("rust-lang_2".to_owned()));
        for bad in ["", "  ", "two words", "a/b", "café", "x".repeat(33).as_str()] {
            assert_eq!(
                check_room(bad, 32).map_err(|e| e.code),
                Err(ErrorCode::InvalidRoom),
                "{bad:?}"
            );
        }
    }

    /// Client tokens outside the allowed alphabet or length are dropped, not trusted.
    #[test]
    fn client_token_rules() {
        assert_eq!(check_client_token("abc-123_X"), Some("abc-123_X".to_owned()));
        assert_eq!(check_client_token(""), None);
        assert_eq!(check_client_token("has space"), None);
        assert_eq!(check_client_token(&"a".repeat(65)), None);
        assert_eq!(check_client_id("k2-x_9"), Ok(()));
        let refused = check_client_id("no/slash").expect_err("bad alphabet");
        assert_eq!(refused.code, ErrorCode::InvalidMessage);
    }
}
