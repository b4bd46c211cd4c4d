//! "bob is typing…": when to tell the server, and how to say it.

use protocol::TYPING_SEND_INTERVAL_MS;

/// Decides when to send a `typing` notice: at most one per [`TYPING_SEND_INTERVAL_MS`], so
/// typing a paragraph costs a handful of frames, not one per key.
#[derive(Debug, Default)]
pub struct Throttle {
    last_sent: Option<u64>,
}

impl Throttle {
    /// Whether a key pressed at `now` (Unix ms) should be announced; records it if so.
    pub fn should_send(&mut self, now: u64) -> bool {
        let due =
            self.last_sent.is_none_or(|last| now.saturating_sub(last) >= TYPING_SEND_INTERVAL_MS);
        if due {
            self.last_sent = Some(now);
        }
        due
    }

    /// After sending a message, the next key announces typing again at once.
    pub fn reset(&mut self) {
        self.last_sent = None;
    }
}

/// The line shown under the messages, or `None` when nobody is typing.
pub fn describe(nicks: &[String]) -> Option<String> {
    match nicks {
        [] => None,
        [one] => Some(format!("{one} is typing…")),
        [one, two] => Some(format!("{one} and {two} are typing…")),
        many => Some(format!("{} people are typing…", many.len())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// At most one notice per interval, and one at once after a reset.
    #[test]
    fn throttle_limits_notices() {
        let mut throttle = Throttle::default();
        assert!(throttle.should_send(10_000));
        assert!(!throttle.should_send(10_500));
        assert!(!throttle.should_send(11_999));
        assert!(throttle.should_send(12_000));
        throttle.reset();
        assert!(throttle.should_send(12_001));
    }

    /// The wording names up to two people, then counts.
    #[test]
    fn describes_typists() {
        let nicks = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(describe(&[]), None);
        assert_eq!(describe(&nicks(&["bob"])).as_deref(), Some("bob is typing…"));
        assert_eq!(describe(&nicks(&["a", "b"])).as_deref(), Some("a and b are typing…"));
        assert_eq!(describe(&nicks(&["a", "b", "c"])).as_deref(), Some("3 people are typing…"));
    }
}
