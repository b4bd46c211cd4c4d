//! The message log of the Redis engine (`--redis`): what every server sharing one Redis
//! agrees on.
//!
//! One Lua script per post does, atomically in Redis, what the room's `RoomState` and the
//! store do in one process: the de-duplication check on (room, sender, client id), the next id
//! of the room, the append to the room's stream (trimmed to the retention), the publication
//! to the other servers, and the remembering of the client id. Ids count per room, and each
//! room has an *epoch*: a random value made with its counter, so that a Redis that lost its
//! data (and counts again from 1) is told apart from the one the ids came from. The shape
//! follows Centrifugo's `broker_history_add_stream.lua`.
//!
//! Keys share the room's hash tag (`{room}`), so a room's keys stay on one node of a Redis
//! cluster: `chat:{room}:meta` (hash: `epoch`, `last`), `chat:{room}:log` (stream, entry
//! `<id>-1` holding field `m`), `chat:{room}:cid:<sender>:<client id>` (hash: `id`, `epoch`,
//! expiring), the channel `chat:{room}` (messages) and `chat:{room}:events` (joins, leaves,
//! typing: not kept, at most once).

use std::collections::VecDeque;
use std::time::Duration;

use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use tokio::sync::mpsc::UnboundedSender;

use protocol::MessageId;

use crate::redis_bus::{Bus, Heard};
use crate::redis_feed::{RoomFeed, Step};
use crate::redis_keys::{COMMAND_TIMEOUT, channel, events_channel, warn_now_and_then};

/// Appends a message, unless its client id was stored already; publishes it.
///
/// KEYS: meta, log, client-id key (all three in the room's hash slot), the set of rooms with
/// messages. ARGV: an epoch for a room that has none, the message, the retention (messages),
/// how long a client id is remembered (seconds), the channel, `1` if there is a client id
/// (else the third key is not used), the most rooms with messages, the room's name, the
/// retention in bytes (of the stream's entries). Returns
/// `{id, epoch, 1 if it was a repeat}`, or `{0, '', 2}` when the room has no message yet and
/// the most rooms have some (Redis's memory is bounded like the database: rooms times their
/// retention).
///
/// The set of rooms is one key outside the room's hash slot: on a Redis Cluster this script
/// would need a per-slot count instead.
///
/// Scripts are not rolled back: should `XADD` fail after `HINCRBY` (the stream key of another
/// type), the id is skipped, which the followers see as a message lost.
const POST: &str = r#"
local remember = ARGV[6] == '1'
if remember then
  local seen = redis.call('HMGET', KEYS[3], 'id', 'epoch')
  if seen[1] then
    return {tonumber(seen[1]), seen[2], 1}
  end
end
local has_messages = redis.call('HEXISTS', KEYS[1], 'last') == 1
if redis.call('SISMEMBER', KEYS[4], ARGV[8]) == 0 then
  if (not has_messages) and redis.call('SCARD', KEYS[4]) >= tonumber(ARGV[7]) then
    return {0, '', 2}
  end
  redis.call('SADD', KEYS[4], ARGV[8])
end
if not has_messages then
  -- A room opened without messages had an epoch that expires: it has messages now.
  redis.call('PERSIST', KEYS[1])
end
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[1]
  redis.call('HSET', KEYS[1], 'epoch', epoch)
end
local id = redis.call('HINCRBY', KEYS[1], 'last', 1)
redis.call('XADD', KEYS[2], id .. '-1', 'm', ARGV[2])
-- The retention: the newest ARGV[3] messages within ARGV[9] bytes (the newest always kept).
local bytes = redis.call('HINCRBY', KEYS[1], 'bytes', string.len(ARGV[2]))
local count = redis.call('XLEN', KEYS[2])
while count > 1 and (count > tonumber(ARGV[3]) or bytes > tonumber(ARGV[9])) do
  local oldest = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)[1]
  redis.call('XDEL', KEYS[2], oldest[1])
  bytes = redis.call('HINCRBY', KEYS[1], 'bytes', -string.len(oldest[2][2]))
  count = count - 1
end
if count == 1 then
  -- Whatever removed entries elsewhere (an operator's XTRIM), the count starts right again.
  redis.call('HSET', KEYS[1], 'bytes', string.len(ARGV[2]))
end
redis.call('PUBLISH', ARGV[5], epoch .. ':' .. id .. ':' .. ARGV[2])
if remember then
  redis.call('HSET', KEYS[3], 'id', id, 'epoch', epoch)
  redis.call('EXPIRE', KEYS[3], ARGV[4])
end
return {id, epoch, 0}
"#;

/// The room's epoch, made now (`ARGV[1]`) if it has none, so that every welcome names one.
/// A room without messages keeps it for `ARGV[2]` seconds after the last call: rooms call this
/// as they open and again every few seconds while open, so such keys are bounded by the rooms
/// open (and those of the last few minutes), not by every name ever joined. KEYS: meta.
const ENSURE_EPOCH: &str = r#"
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[1]
  redis.call('HSET', KEYS[1], 'epoch', epoch)
end
if redis.call('HEXISTS', KEYS[1], 'last') == 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return epoch
"#;

/// How long the epoch of a room without messages outlives the last server that had it open.
pub const EMPTY_ROOM_EPOCH_SECS: u64 = 300;

/// Gives the room a new epoch if it is still at `ARGV[1]` (or has none): the history a
/// server relayed under that epoch is not the one Redis holds. Another server may have done
/// it first; either way the room's epoch now is returned. KEYS: meta. ARGV: the epoch that
/// diverged, a new one, how long the meta of a room without messages is kept.
const RENEW: &str = r#"
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if (not epoch) or epoch == ARGV[1] then
  redis.call('HSET', KEYS[1], 'epoch', ARGV[2])
  if redis.call('HEXISTS', KEYS[1], 'last') == 0 then
    redis.call('EXPIRE', KEYS[1], ARGV[3])
  end
  return ARGV[2]
end
return epoch
"#;

/// Where a post ended up. Epochs are made by the servers (random hex digits: no `:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posted {
    pub id: MessageId,
    /// The room's epoch: ids are comparable only within one epoch.
    pub epoch: String,
    /// The client id was stored already: `id` is the original message's.
    pub repeat: bool,
    /// Not stored: the room had no message and Redis holds the most rooms it may.
    pub refused: bool,
}

/// The settings a Redis must have for acknowledged messages to survive it: an append-only
/// file synced on every write, and no eviction.
pub const DURABLE_SETTINGS: [(&str, &str); 3] =
    [("appendonly", "yes"), ("appendfsync", "always"), ("maxmemory-policy", "noeviction")];

/// The settings of the Redis behind `connection` that fall short of [`DURABLE_SETTINGS`], as
/// `name: found (wanted)`; empty when it keeps what it acknowledges.
pub async fn weak_settings(connection: &mut ConnectionManager) -> redis::RedisResult<Vec<String>> {
    let mut weak = Vec::new();
    for (name, wanted) in DURABLE_SETTINGS {
        let found: Vec<String> =
            redis::cmd("CONFIG").arg("GET").arg(name).query_async(connection).await?;
        let value = found.get(1).cloned().unwrap_or_default();
        if value != wanted {
            weak.push(format!("{name}: {value} ({wanted})"));
        }
    }
    Ok(weak)
}

/// What a follower of a room hands on, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Followed {
    /// A message, each exactly once, in id order.
    Message(MessageId, String),
    /// These ids were gone from the stream before they could be handed on.
    Lost { from: MessageId, to: MessageId },
    /// The room's epoch changed (or its history under one diverged, and it was given a new
    /// one): what was handed on before belongs to another history. The follower ends; the
    /// room reloads and follows again.
    Reset { epoch: String },
    /// A publication on the room's events channel (joins, leaves, typing; at most once).
    Event(String),
    /// The room has this epoch (its first message made it, or the follower started on it).
    Epoch(String),
}

/// A room as [`RedisLog::load`] read it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Loaded {
    /// The room's epoch and last id; `None` for a room that never had a message.
    pub head: Option<(String, MessageId)>,
    /// Its newest messages, oldest first, with their ids.
    pub messages: Vec<(MessageId, String)>,
}

/// The entries of a stream range as (id, message).
fn entries(reply: redis::streams::StreamRangeReply) -> Vec<(MessageId, String)> {
    reply
        .ids
        .into_iter()
        .filter_map(|entry| {
            let id = entry.id.split_once('-')?.0.parse().ok()?;
            let message: String = entry.get("m")?;
            Some((id, message))
        })
        .collect()
}

/// Messages read from a room's stream at once while filling a hole.
const FETCH_PAGE: usize = 100;

/// The shared log of the rooms' messages.
#[derive(Clone)]
pub struct RedisLog {
    connection: ConnectionManager,
    /// The server's one pub/sub connection, shared by the rooms it follows.
    bus: Bus,
    limits: LogLimits,
    post: redis::Script,
    renew: redis::Script,
    ensure_epoch: redis::Script,
}

/// What the log keeps: Redis's memory is bounded by rooms times their retention (plus the
/// remembered client ids), as the database is.
#[derive(Debug, Clone, Copy)]
pub struct LogLimits {
    /// Messages a room's stream keeps.
    pub retain: usize,
    /// Bytes of entries a room's stream keeps (its newest message whatever its size).
    pub retain_bytes: usize,
    /// Rooms with messages Redis keeps at most; a room's first message past it is refused.
    pub max_rooms: usize,
    /// How long a client id is remembered, in seconds.
    pub remember_secs: u64,
}

impl RedisLog {
    /// A log in the Redis at `url` (`redis://HOST:PORT/DB`), which reconnects by itself.
    pub async fn connect(url: &str, limits: LogLimits) -> redis::RedisResult<Self> {
        // Keepalive probes and TCP_USER_TIMEOUT end a connection to a Redis that vanished (a
        // failover, a host gone) within about 15 s; the connection manager and the bus then
        // connect again, to wherever the URL's name points now.
        let keepalive = redis::io::tcp::socket2::TcpKeepalive::new()
            .with_time(Duration::from_secs(5))
            .with_interval(Duration::from_secs(2))
            .with_retries(3);
        let tcp = redis::io::tcp::TcpSettings::default()
            .set_nodelay(true)
            .set_keepalive(keepalive)
            .set_user_timeout(Duration::from_secs(15));
        let info = redis::IntoConnectionInfo::into_connection_info(url)?.set_tcp_settings(tcp);
        let client = redis::Client::open(info)?;
        // Calls fail after COMMAND_TIMEOUT instead of waiting on a Redis that stalled, and
        // reconnecting tries at least every second, so the server recovers soon after Redis.
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_response_timeout(Some(COMMAND_TIMEOUT))
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_max_delay(Duration::from_secs(1));
        let connection = client.get_connection_manager_with_config(config).await?;
        Ok(RedisLog {
            bus: Bus::start(client),
            connection,
            limits: LogLimits { retain: limits.retain.max(1), ..limits },
            post: redis::Script::new(POST),
            renew: redis::Script::new(RENEW),
            ensure_epoch: redis::Script::new(ENSURE_EPOCH),
        })
    }

    /// The connection, for the checks and commands around the log.
    pub fn connection(&self) -> ConnectionManager {
        self.connection.clone()
    }

    /// Posts `message` to `room` for `sender` (the key its nick is compared by), once per
    /// `client_id`; `new_epoch` becomes the room's epoch if it has none.
    pub async fn post(
        &self,
        room: &str,
        sender: &str,
        client_id: Option<&str>,
        message: &str,
        new_epoch: &str,
    ) -> redis::RedisResult<Posted> {
        // Without a client id the third key is a placeholder in the same hash slot: a cluster
        // refuses a script whose keys span slots.
        let remembered = format!("chat:{{{room}}}:cid:{sender}:{}", client_id.unwrap_or("-"));
        let (id, epoch, outcome): (MessageId, String, u8) = self
            .post
            .key(meta_key(room))
            .key(log_key(room))
            .key(remembered)
            .key(ROOMS_KEY)
            .arg(new_epoch)
            .arg(message)
            .arg(self.limits.retain)
            .arg(self.limits.remember_secs)
            .arg(channel(room))
            .arg(if client_id.is_some() { "1" } else { "0" })
            .arg(self.limits.max_rooms)
            .arg(room)
            .arg(self.limits.retain_bytes)
            .invoke_async(&mut self.connection.clone())
            .await?;
        Ok(Posted { id, epoch, repeat: outcome == 1, refused: outcome == 2 })
    }

    /// The room's epoch, made now from `new` if it has none (see [`ENSURE_EPOCH`]).
    pub async fn ensure_epoch(&self, room: &str, new: &str) -> redis::RedisResult<String> {
        self.ensure_epoch
            .key(meta_key(room))
            .arg(new)
            .arg(EMPTY_ROOM_EPOCH_SECS)
            .invoke_async(&mut self.connection.clone())
            .await
    }

    /// Starts a new epoch for `room` if it is still at `diverged` (see [`Step::Diverged`]);
    /// returns the room's epoch now.
    pub async fn renew_epoch(
        &self,
        room: &str,
        diverged: &str,
        new: &str,
    ) -> redis::RedisResult<String> {
        self.renew
            .key(meta_key(room))
            .arg(diverged)
            .arg(new)
            .arg(EMPTY_ROOM_EPOCH_SECS)
            .invoke_async(&mut self.connection.clone())
            .await
    }

    /// The room's epoch and last id (`None` for a room that never had a message).
    pub async fn head(&self, room: &str) -> redis::RedisResult<Option<(String, MessageId)>> {
        let mut connection = self.connection.clone();
        let (epoch, last): (Option<String>, Option<MessageId>) = redis::cmd("HMGET")
            .arg(meta_key(room))
            .arg("epoch")
            .arg("last")
            .query_async(&mut connection)
            .await?;
        Ok(epoch.map(|epoch| (epoch, last.unwrap_or(0))))
    }

    /// The room's epoch and last id (`None`: no message yet) and its newest `count` messages,
    /// oldest first, read at one moment (a post cannot land between the two reads).
    pub async fn load(&self, room: &str, count: usize) -> redis::RedisResult<Loaded> {
        let mut connection = self.connection.clone();
        let ((epoch, last), newest): (
            (Option<String>, Option<MessageId>),
            redis::streams::StreamRangeReply,
        ) = redis::pipe()
            .atomic()
            .cmd("HMGET")
            .arg(meta_key(room))
            .arg("epoch")
            .arg("last")
            .cmd("XREVRANGE")
            .arg(log_key(room))
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(count.max(1))
            .query_async(&mut connection)
            .await?;
        let mut messages = entries(newest);
        messages.reverse();
        Ok(Loaded { head: epoch.map(|epoch| (epoch, last.unwrap_or(0))), messages })
    }

    /// The room's head and at most `count` of its messages after `after`, read at one moment.
    pub async fn head_and_after(
        &self,
        room: &str,
        after: MessageId,
        count: usize,
    ) -> redis::RedisResult<Loaded> {
        let mut connection = self.connection.clone();
        type Reply = ((Option<String>, Option<MessageId>), redis::streams::StreamRangeReply);
        let ((epoch, last), page): Reply = redis::pipe()
            .atomic()
            .cmd("HMGET")
            .arg(meta_key(room))
            .arg("epoch")
            .arg("last")
            .cmd("XRANGE")
            .arg(log_key(room))
            .arg(format!("({after}-1"))
            .arg("+")
            .arg("COUNT")
            .arg(count.max(1))
            .query_async(&mut connection)
            .await?;
        Ok(Loaded { head: epoch.map(|epoch| (epoch, last.unwrap_or(0))), messages: entries(page) })
    }

    /// At most `count` messages of `room` after id `after`, oldest first, with their ids.
    pub async fn after(
        &self,
        room: &str,
        after: MessageId,
        count: usize,
    ) -> redis::RedisResult<Vec<(MessageId, String)>> {
        let mut connection = self.connection.clone();
        let reply: redis::streams::StreamRangeReply =
            connection.xrange_count(log_key(room), format!("({after}-1"), "+", count).await?;
        Ok(entries(reply))
    }

    /// Publishes `event` on `room`'s events channel (at most once, to the servers following
    /// the room now).
    pub async fn publish_event(&self, room: &str, event: &str) -> redis::RedisResult<()> {
        redis::cmd("PUBLISH")
            .arg(events_channel(room))
            .arg(event)
            .query_async(&mut self.connection.clone())
            .await
    }
}

impl RedisLog {
    /// Follows `room` from `start` (the epoch and last id of what the caller already has, as
    /// [`RedisLog::load`] read it): hands on every message posted to it after that, in id
    /// order, each once, into `sink`, however often the subscription drops (pub/sub delivers at
    /// most once: [`RoomFeed`] finds the holes and fills them from the stream), and checks the
    /// room's head every `every` for what was missed at the end. Listens on the server's one
    /// [`Bus`] and reads the head each time the bus says it subscribed (again). The room's
    /// events are handed on as they come ([`Followed::Event`]). Returns once the sink is closed.
    pub async fn follow(
        &self,
        room: &str,
        start: (Option<String>, MessageId),
        every: Duration,
        sink: UnboundedSender<Followed>,
    ) {
        let mut feed = RoomFeed::start(start.0, start.1);
        let mut heard = self.bus.listen(room);
        let mut tick = tokio::time::interval(every);
        loop {
            let steps = tokio::select! {
                heard = heard.recv() => match heard {
                    // Subscribed (again): what was published before is read from the head.
                    Some(Heard::Subscribed) => match self.head(room).await {
                        Ok(head) => feed.checked(head),
                        Err(_) => Vec::new(),
                    },
                    // The bus is gone (it cannot be while this log is): the head checks go
                    // on alone.
                    None => {
                        tokio::time::sleep(every).await;
                        continue;
                    }
                    Some(Heard::Published(published)) => {
                        feed.published(&published.epoch, published.id, published.message)
                    }
                    Some(Heard::Event(event)) => {
                        if sink.send(Followed::Event(event)).is_err() {
                            return;
                        }
                        continue;
                    }
                },
                _ = tick.tick() => match self.head(room).await {
                    Ok(head) => feed.checked(head),
                    Err(_) => Vec::new(),
                },
                // Nobody listens any more (a quiet room would otherwise never notice).
                () = sink.closed() => return,
            };
            if !self.carry_out(room, &mut feed, steps, &sink).await {
                return;
            }
        }
    }

    /// Carries out the feed's steps (fetching until its holes are filled); `false` once the
    /// sink is closed or the follower must end (a reset).
    async fn carry_out(
        &self,
        room: &str,
        feed: &mut RoomFeed,
        steps: Vec<Step>,
        sink: &UnboundedSender<Followed>,
    ) -> bool {
        // An epoch first learnt (a reset, among the steps, says so itself).
        if let Some(epoch) = feed.first_epoch()
            && sink.send(Followed::Epoch(epoch)).is_err()
        {
            return false;
        }
        let mut steps: VecDeque<Step> = steps.into();
        while let Some(step) = steps.pop_front() {
            let handed = match step {
                Step::Relay(messages) => messages
                    .into_iter()
                    .all(|(id, message)| sink.send(Followed::Message(id, message)).is_ok()),
                Step::Lost { from, to } => sink.send(Followed::Lost { from, to }).is_ok(),
                // The room reloads itself from Redis and follows again from there: this
                // follower ends.
                Step::Reset { epoch } => {
                    let _ = sink.send(Followed::Reset { epoch });
                    return false;
                }
                Step::Diverged { epoch } => {
                    let fresh = crate::redis_feed::new_epoch();
                    let epoch = match self.renew_epoch(room, &epoch, &fresh).await {
                        Ok(now) => now,
                        // Reloading under the same epoch still resets the members.
                        Err(_) => epoch,
                    };
                    let _ = sink.send(Followed::Reset { epoch });
                    return false;
                }
                Step::Fetch { after } => loop {
                    match self.after(room, after, FETCH_PAGE).await {
                        Ok(page) => {
                            let full = page.len() == FETCH_PAGE;
                            steps.extend(feed.fetched(after, page, full));
                            break !sink.is_closed();
                        }
                        // Redis is away: try again, unless nobody listens any more.
                        Err(error) if !sink.is_closed() => {
                            warn_now_and_then(|| {
                                tracing::warn!(%error, room, "cannot read a room's messages from Redis; retrying");
                            });
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        Err(_) => break false,
                    }
                },
            };
            if !handed {
                return false;
            }
        }
        true
    }
}

/// The set of rooms that have messages (see [`POST`]).
const ROOMS_KEY: &str = "chat:rooms";

fn meta_key(room: &str) -> String {
    format!("chat:{{{room}}}:meta")
}

fn log_key(room: &str) -> String {
    format!("chat:{{{room}}}:log")
}
