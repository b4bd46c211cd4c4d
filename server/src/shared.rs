//! The Redis engine as the rooms use it (`--redis`): connecting and checking the Redis, the
//! form messages and events take in it, opening a room from it, posting to it, and keeping
//! this server's presence alive. The log's script and the follower are redis_log.rs's, the
//! hole-filling rules redis_feed.rs's, presence redis_presence.rs's.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use protocol::{ChatMessage, ClientId, MessageId, UnixMillis};
use serde::{Deserialize, Serialize};

use crate::config::RedisOptions;
use crate::history::{Loaded, Stored};
use crate::names::sender_key;
use crate::redis_feed::new_epoch;
use crate::redis_keys::{COMMAND_TIMEOUT, warn_now_and_then};
use crate::redis_log::{LogLimits, Posted, RedisLog};
use crate::redis_presence::{Presence, RemoteMember};
use crate::store::StoreOptions;

/// How long a client id is remembered in Redis for de-duplication: a client that resends an
/// acknowledged message later than this (it was offline a whole day with it in its outbox)
/// stores it again.
pub const REMEMBER_CLIENT_IDS: Duration = Duration::from_secs(24 * 3600);

/// Why the server would not start on the Redis it was given.
#[derive(Debug, thiserror::Error)]
pub enum SharedError {
    #[error("cannot reach the Redis at {url}: {source}")]
    Connect { url: String, source: redis::RedisError },
    #[error(
        "cannot read the durability settings of the Redis at {url} ({error}); allow `CONFIG GET` \
         to this server, or start with --redis-accept-weak-durability if you know it keeps an \
         append-only file synced on every write and evicts nothing"
    )]
    Unchecked { url: String, error: String },
    #[error(
        "the Redis at {url} may lose acknowledged messages ({settings}); set `appendonly yes`, \
         `appendfsync always` and `maxmemory-policy noeviction` in its configuration, or start \
         with --redis-accept-weak-durability to accept the loss (see README, \"Several servers\")"
    )]
    Weak { url: String, settings: String },
}

/// What every room of a server sharing one Redis uses; cheap to clone.
#[derive(Clone)]
pub struct Shared {
    pub log: RedisLog,
    pub presence: Presence,
    /// How often each room checks its head and renews its presence.
    pub every: Duration,
    /// Messages a room keeps (the stream's length).
    retain: usize,
    /// Posts sent to Redis and not answered yet, over all rooms, and the most there may be
    /// (`--max-pending-writes`): past it a post is refused at once (`unavailable`) instead of
    /// queueing behind a Redis that does not keep up.
    in_flight: Arc<AtomicUsize>,
    max_in_flight: usize,
}

/// A post counted among those in flight until dropped.
pub struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A stored message as the stream keeps it: the room and id are the stream's.
#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    from: String,
    text: String,
    ts: UnixMillis,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    bot: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    signed_in: bool,
    /// An edit or deletion of this earlier message (the stream's entries never change: a
    /// room's history applies amendments as it reads them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    amends: Option<MessageId>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    deleted: bool,
    /// The client id it was sent with, and who sent it (as `names::sender_key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cid: Option<ClientId>,
}

/// A room's event for the other servers (at most once: a missed one is corrected by the next
/// presence sync, or was only a typing notice).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "e", rename_all = "lowercase")]
pub enum Event {
    Joined {
        s: String,
        nick: String,
        tag: String,
    },
    Left {
        s: String,
        nick: String,
    },
    Typing {
        s: String,
        nick: String,
    },
    /// An owner or moderator gave the account `nick` a place in the room, or took it away: its
    /// server reads its role again, or removes its seats (a member taken away).
    Granted {
        s: String,
        nick: String,
        grant: protocol::Grant,
        revoke: bool,
        by: String,
    },
    /// The room was made private (or public): every server's copy turns with it.
    Configured {
        s: String,
        private: bool,
        by: String,
    },
    /// A moderator kicked, muted or banned `nick`: its server removes or mutes its seats.
    Moderated {
        s: String,
        nick: String,
        action: protocol::Sanction,
        by: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        until: Option<UnixMillis>,
    },
}

/// A room as it opens on this server.
pub struct Opening {
    /// Its retained messages.
    pub loaded: Loaded,
    /// Its epoch (empty: no message yet).
    pub epoch: String,
    /// Where its follower starts: what `loaded` ends with.
    pub start: (Option<String>, MessageId),
    /// Its members on the other servers.
    pub others: Vec<RemoteMember>,
}

impl Shared {
    /// Connects to the Redis of `options` (reconnecting by itself from then on), checks that
    /// it keeps what it acknowledges (unless told to accept less), and names this server.
    pub async fn connect(
        options: &RedisOptions,
        storage: &StoreOptions,
    ) -> Result<Shared, SharedError> {
        let full = options.url.clone().unwrap_or_default();
        // Errors and logs name the URL without its password.
        let url = redacted(&full);
        let connect = |source| SharedError::Connect { url: url.clone(), source };
        let limits = LogLimits {
            retain: storage.retain_messages.max(1),
            retain_bytes: storage.retain_bytes,
            max_rooms: storage.max_stored_rooms,
            remember_secs: REMEMBER_CLIENT_IDS.as_secs(),
        };
        let log = RedisLog::connect(&full, limits).await.map_err(connect)?;
        match crate::redis_log::weak_settings(&mut log.connection()).await {
            Ok(weak) if weak.is_empty() => {}
            Ok(weak) => {
                let settings = weak.join(", ");
                if !options.redis_accept_weak_durability {
                    return Err(SharedError::Weak { url, settings });
                }
                tracing::warn!(
                    %settings,
                    "--redis-accept-weak-durability: a crash of Redis may lose acknowledged \
                     messages"
                );
            }
            // Managed services often refuse CONFIG: the settings cannot be known then.
            Err(error) if error.kind() == redis::ErrorKind::Io => return Err(connect(error)),
            Err(error) if options.redis_accept_weak_durability => {
                tracing::warn!(
                    %error,
                    "--redis-accept-weak-durability: could not read the Redis's settings"
                );
            }
            Err(error) => return Err(SharedError::Unchecked { url, error: error.to_string() }),
        }
        let expiry: Duration = options.presence_expiry.into();
        let expiry = expiry.max(Duration::from_millis(300));
        // Unique to this start of this process, so a restart never brings back the members
        // of its last life (see `Presence::new`).
        let server = format!("{}-{}", std::process::id(), new_epoch());
        let presence = Presence::new(log.connection(), &server, expiry);
        Ok(Shared {
            log,
            presence,
            every: expiry / 3,
            retain: limits.retain,
            in_flight: Arc::new(AtomicUsize::new(0)),
            max_in_flight: storage.max_pending_writes.max(1),
        })
    }

    /// Renews this server's presence for ever (run it as a task).
    pub async fn keep_alive(self) {
        let mut tick = tokio::time::interval(self.every);
        loop {
            tick.tick().await;
            if let Err(error) = self.presence.refresh().await {
                tracing::warn!(%error, "could not renew this server's presence in Redis");
            }
        }
    }

    /// Reads `room` as it is now: its newest messages, its epoch (made now for a room that
    /// has none), and who is in it elsewhere; `mine` are its members here (none for a room
    /// that opens, those it has when it reloads).
    pub async fn open(&self, room: &str, mine: &[(String, String)]) -> redis::RedisResult<Opening> {
        self.log.ensure_epoch(room, &new_epoch()).await?;
        let read = self.log.load(room, self.retain).await?;
        let others = self.presence.sync(room, mine).await?;
        let mut messages = Vec::new();
        for (id, entry) in &read.messages {
            match decode(room, *id, entry) {
                Some(stored) => messages.push(stored),
                None => warn_now_and_then(|| {
                    tracing::warn!(room, id, "a message in Redis that is not ours: skipped");
                }),
            }
        }
        let head_last = read.head.as_ref().map_or(0, |(_, last)| *last);
        let last = read.messages.last().map_or(head_last, |(id, _)| (*id).max(head_last));
        let first = read.messages.first().map_or(last + 1, |(id, _)| *id);
        let epoch = read.head.map(|(epoch, _)| epoch);
        Ok(Opening {
            loaded: Loaded { messages, trimmed_upto: first.saturating_sub(1) },
            epoch: epoch.clone().unwrap_or_default(),
            start: (epoch, last),
            others,
        })
    }

    /// A place among the posts in flight, or `None` if Redis has the most it may waiting.
    pub fn begin_post(&self) -> Option<InFlight> {
        let max = self.max_in_flight;
        self.in_flight
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| (n < max).then_some(n + 1))
            .ok()
            .map(|_| InFlight(self.in_flight.clone()))
    }

    /// Posts `stored` (its id is the room's ticket, not sent) to `room`, once per client id.
    pub async fn post(&self, room: &str, stored: &Stored) -> redis::RedisResult<Posted> {
        let entry = encode(stored);
        let sender = sender_key(&stored.message);
        // Taken only by a room without an epoch: always a new one, never the room's last (a
        // Redis that lost the room must not give the new history the old epoch).
        let epoch = new_epoch();
        let client_id = stored.client_id.as_deref();
        let post = self.log.post(room, &sender, client_id, &entry, &epoch);
        tokio::time::timeout(COMMAND_TIMEOUT, post).await.unwrap_or_else(|_| {
            Err(redis::RedisError::from((redis::ErrorKind::Io, "Redis did not answer in time")))
        })
    }

    /// Tells the other servers of `events` in `room`, in order, and keeps this server's part
    /// of the room's presence up to date with them.
    pub async fn announce(&self, room: &str, events: Vec<Event>) {
        for event in events {
            let written = match &event {
                Event::Joined { nick, tag, .. } => self.presence.join(room, nick, tag).await,
                Event::Left { nick, .. } => self.presence.leave(room, nick).await,
                Event::Typing { .. }
                | Event::Moderated { .. }
                | Event::Granted { .. }
                | Event::Configured { .. } => Ok(()),
            };
            let published = match serde_json::to_string(&event) {
                Ok(event) => self.log.publish_event(room, &event).await,
                Err(_) => Ok(()),
            };
            if let Err(error) = written.and(published) {
                // The next presence sync puts the lists right.
                tracing::debug!(%error, room, "could not tell the other servers of an event");
            }
        }
    }
}

/// A Redis URL without its password (`redis://user:***@host`), for errors and the log.
pub fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            let user = credentials.split_once(':').map_or("", |(user, _)| user);
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// The stream's form of a message.
fn encode(stored: &Stored) -> String {
    let message = &stored.message;
    let entry = Entry {
        from: message.from.clone(),
        text: message.text.clone(),
        ts: message.ts,
        bot: message.bot,
        signed_in: message.signed_in,
        amends: message.amends,
        deleted: message.deleted,
        cid: stored.client_id.clone(),
    };
    serde_json::to_string(&entry).unwrap_or_default()
}

/// A message of `room`'s stream; `None` if it is not in our form.
pub fn decode(room: &str, id: MessageId, entry: &str) -> Option<Stored> {
    let Entry { from, text, ts, bot, signed_in, amends, deleted, cid } =
        serde_json::from_str(entry).ok()?;
    let room = room.to_owned();
    let message =
        ChatMessage { id, room, from, text, ts, bot, signed_in, amends, deleted, edited: false };
    Some(Stored { message, client_id: cid })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message goes into the stream and comes back the same, with the room and the id the
    /// stream gives it; a bot flag and a client id survive; something else is refused.
    #[test]
    fn entries_round_trip() {
        let message = ChatMessage {
            id: 7,
            room: "r".into(),
            from: "ann".into(),
            text: "a \"quoted\" : text".into(),
            ts: 42,
            bot: true,
            signed_in: true,
            ..Default::default()
        };
        let stored = Stored { message, client_id: Some("c1".into()) };
        let entry = encode(&stored);
        assert_eq!(decode("r", 7, &entry), Some(stored));
        assert_eq!(decode("r", 7, "not json"), None);
    }

    /// A password never reaches the log.
    #[test]
    fn urls_are_redacted() {
        assert_eq!(redacted("redis://:secret@h:6379/0"), "redis://:***@h:6379/0");
        assert_eq!(redacted("redis://user:secret@h/0"), "redis://user:***@h/0");
        assert_eq!(redacted("redis://h:6379/0"), "redis://h:6379/0");
    }

    /// Events keep their form on the wire between servers.
    #[test]
    fn events_are_tagged() {
        let event = Event::Joined { s: "a".into(), nick: "ann".into(), tag: "t".into() };
        let wire = serde_json::to_string(&event).expect("encodes");
        assert_eq!(wire, r#"{"e":"joined","s":"a","nick":"ann","tag":"t"}"#);
        assert_eq!(serde_json::from_str::<Event>(&wire).expect("decodes"), event);
    }
}
