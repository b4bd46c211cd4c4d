//! What the parts of the Redis engine (`--redis`) share, below all of them: the names of a
//! room's channels, the form of a publication, how long a call may take, and how often a
//! failing Redis is logged.

use std::time::Duration;

use protocol::MessageId;

/// How long one call to Redis may take before it counts as failed (Redis away).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// A publication, as every server subscribed to the room's channel receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub epoch: String,
    pub id: MessageId,
    pub message: String,
}

impl Published {
    /// Reads a publication's payload (`epoch:id:message`); `None` if it is not one.
    pub fn parse(payload: &str) -> Option<Published> {
        let (epoch, rest) = payload.split_once(':')?;
        let (id, message) = rest.split_once(':')?;
        Some(Published {
            epoch: epoch.to_owned(),
            id: id.parse().ok()?,
            message: message.to_owned(),
        })
    }
}

/// The channel a room's messages are published on.
pub fn channel(room: &str) -> String {
    format!("chat:{{{room}}}")
}

/// The channel a room's events (joins, leaves, typing) are published on.
pub fn events_channel(room: &str) -> String {
    format!("chat:{{{room}}}:events")
}

/// Runs `log` unless a warning was logged through here less than 10 s ago: a Redis that is
/// away fails every post and every room's reads, and one line per failure would flood the
/// log (the metrics count every one).
pub fn warn_now_and_then(log: impl FnOnce()) {
    static REDIS: crate::throttle::Throttle = crate::throttle::Throttle::new();
    REDIS.run(log);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A publication's payload splits at its first two colons: the message may hold more.
    #[test]
    fn publications_parse() {
        let parsed = Published::parse("e1:42:{\"text\":\"a:b\"}").expect("parses");
        assert_eq!(
            parsed,
            Published { epoch: "e1".into(), id: 42, message: "{\"text\":\"a:b\"}".into() }
        );
        assert_eq!(Published::parse("e1:x:m"), None, "the id is a number");
        assert_eq!(Published::parse("no colon"), None);
    }
}
