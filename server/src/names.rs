//! When two nicks are the same nick: the server's uniqueness rule, stricter than the
//! protocol's syntax rules (plain functions, no actors).
//!
//! People read nicks, so nicks that look alike must count as one: `alice`, `ALICE`,
//! full-width `ａｌｉｃｅ`, `аlice` with a Cyrillic `а`, or `alice` with an invisible character
//! inside. Nicks are compared on a key built the way Unicode TR39 detects confusable strings:
//! compatibility normalisation (NFKC: widths, ligatures, styled letters), lower case, then the
//! TR39 *skeleton* (default-ignorable characters removed, each character mapped to its
//! confusable prototype). `unicode-normalization` and `unicode-security` (both unicode-rs, the
//! tables of the Unicode Consortium) do the work; nothing here is a hand-made table.
//!
//! Format characters (general category Cf: zero-width spaces, bidirectional overrides and
//! isolates, tags) are refused outright: they are invisible, and the bidi controls reorder what
//! follows them on screen. The zero-width joiner alone is allowed, since emoji sequences need
//! it. A nick whose key is empty (made only of invisible characters) is refused too.

use protocol::ErrorCode;
use protocol::rules::{self, RuleError};
use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// The zero-width joiner, which emoji sequences need.
const ZERO_WIDTH_JOINER: char = '\u{200D}';

/// Who sent `message`, for client-id de-duplication: its sender's [`nick_key`], kept apart for
/// bots (API posts), so that a bot and a person of the same name never share client ids.
pub fn sender_key(message: &protocol::ChatMessage) -> String {
    let key = nick_key(&message.from);
    // A nick never holds a control character: no person's key can look like this.
    if message.bot { format!("\u{1}bot {key}") } else { key }
}

/// The key that stands for a nick: equal for nicks that differ only by case, width or
/// compatibility forms, invisible characters, or confusable letters. Messages remember their
/// sender by it.
pub fn nick_key(nick: &str) -> String {
    key_of_normal(&nick.nfkc().collect::<String>())
}

/// [`nick_key`] of a nick already in NFKC.
fn key_of_normal(normal: &str) -> String {
    let folded: String = normal.chars().flat_map(char::to_lowercase).collect();
    unicode_security::skeleton(&folded).flat_map(char::to_lowercase).collect()
}

/// How a nick looks, for uniqueness: its [`nick_key`], and the skeleton taken before lower
/// case. TR39 maps capital `I` to `l` (they are drawn alike in many fonts) but lower case
/// turns `I` into `i` first, so `AIice` passes as `Alice` on the key alone; the second form
/// catches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Likeness {
    key: String,
    cased: String,
}

impl Likeness {
    pub fn of(nick: &str) -> Self {
        let normal: String = nick.nfkc().collect();
        let cased = unicode_security::skeleton(&normal).flat_map(char::to_lowercase).collect();
        Likeness { key: key_of_normal(&normal), cased }
    }

    /// Whether two nicks look alike under either form.
    pub fn looks_like(&self, other: &Likeness) -> bool {
        let mine = [&self.key, &self.cased];
        let theirs = [&other.key, &other.cased];
        mine.iter().any(|form| theirs.contains(form))
    }

    /// The nick's [`nick_key`].
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The nick's skeleton taken before lower case (the second form of [`Likeness`]).
    pub fn cased(&self) -> &str {
        &self.cased
    }
}

/// A nick as the server accepts it: the protocol's rules ([`rules::check_nick`]), no format
/// characters but the zero-width joiner, and something visible. Returns the trimmed nick.
pub fn check_nick(nick: &str, max_chars: usize) -> Result<String, RuleError> {
    let nick = rules::check_nick(nick, max_chars)?;
    let invalid =
        |message: &str| RuleError { code: ErrorCode::InvalidNick, message: message.into() };
    if nick
        .chars()
        .any(|c| c != ZERO_WIDTH_JOINER && c.general_category() == GeneralCategory::Format)
    {
        return Err(invalid(
            "A nickname cannot contain invisible formatting or text-direction characters.",
        ));
    }
    if nick_key(&nick).chars().all(char::is_whitespace) {
        return Err(invalid("A nickname needs at least one visible character."));
    }
    Ok(nick)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(nick: &str) -> Option<ErrorCode> {
        check_nick(nick, 32).err().map(|error| error.code)
    }

    /// Look-alikes of `alice` share its key: case, full width, a Cyrillic а, a combining
    /// grapheme joiner, styled mathematical letters.
    #[test]
    fn look_alikes_share_a_key() {
        let alice = nick_key("alice");
        for spoof in ["Alice", "ALICE", "ａｌｉｃｅ", "\u{430}lice", "al\u{34F}ice", "𝐚𝐥𝐢𝐜𝐞"]
        {
            assert_eq!(nick_key(spoof), alice, "{spoof:?}");
        }
        for other in ["alicia", "bob", "alice2", "élice"] {
            assert_ne!(nick_key(other), alice, "{other:?}");
        }
    }

    /// A capital I passes for a small l, as TR39 says, whatever the case around it.
    #[test]
    fn capital_i_looks_like_small_l() {
        let alice = Likeness::of("Alice");
        for spoof in ["AIice", "alice", "ALICE", "\u{430}Iice"] {
            assert!(Likeness::of(spoof).looks_like(&alice), "{spoof:?}");
        }
        for other in ["Alina", "Aiko", "bob"] {
            assert!(!Likeness::of(other).looks_like(&alice), "{other:?}");
        }
    }

    /// Zero-width and direction-changing characters are refused, the joiner of emoji
    /// sequences is not.
    #[test]
    fn format_characters_are_refused() {
        for bad in ["alice\u{200B}", "\u{202E}ecila", "a\u{2066}b\u{2069}", "\u{FEFF}x", "x\u{AD}y"]
        {
            assert_eq!(code(bad), Some(ErrorCode::InvalidNick), "{bad:?}");
        }
        assert_eq!(check_nick("dev 👩\u{200D}💻", 32), Ok("dev 👩\u{200D}💻".to_owned()));
        assert_eq!(check_nick("Zoë", 32), Ok("Zoë".to_owned()));
    }

    /// A nick made only of invisible characters is refused; the protocol's rules still apply.
    #[test]
    fn invisible_nicks_are_refused() {
        assert_eq!(code("\u{3164}"), Some(ErrorCode::InvalidNick), "Hangul filler");
        assert_eq!(code("\u{34F}\u{34F}"), Some(ErrorCode::InvalidNick));
        assert_eq!(code("a\u{7}"), Some(ErrorCode::InvalidNick), "control character");
        assert_eq!(code(&"x".repeat(33)), Some(ErrorCode::InvalidNick));
    }
}
