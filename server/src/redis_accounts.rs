//! The accounts in the Redis every server shares (`--redis`): a nick registered through one
//! server is taken on all, a session made on one opens a WebSocket on another, and roles,
//! bans, mutes, private rooms and the audit log hold everywhere. The rules are
//! `accounts::Accounts`'s; this is only where they are kept.
//!
//! Calls are synchronous, as the database's are (rooms read roles and bans at a join), each on
//! a connection of its own taken from the idle ones (threads do not queue behind each other's
//! round trips), connecting, writing and reading each bounded by [`CALL_TIMEOUT`] (a name to
//! look up in the URL is resolved without a bound: give Redis's address); a failed call
//! drops its connection (a Redis that is away fails reads, which refuse
//! sign-ins as the database's errors do). For [`RETRY_AFTER`] after a failure, calls fail at
//! once without trying: a Redis that does not answer (a partition) would otherwise hold every
//! room thread that asks for [`CALL_TIMEOUT`] in turn.
//!
//! Keys (every one under `chat:`; a room's are tagged `{room}` like its log's):
//! - `chat:accounts:next`: the last account number given (numbers are never reused, so what
//!   still names a deleted account's number names nobody);
//! - `chat:accounts:all`: every account's number, in a sorted set (oldest first);
//! - `chat:account:N`: a hash of `nick`, `password` (Argon2id PHC string), `created`, and the
//!   two forms of `names::Likeness` it holds (`key`, `cased`);
//! - `chat:account-name:FORM`: the account holding that form of a nick;
//! - `chat:session:HASH`: `N:EXPIRES` for a session token's SHA-256, expiring with it;
//!   `chat:account:N:session-ends` the account's session keys by their end (the newest
//!   `accounts::MAX_SESSIONS`);
//! - `chat:account:N:roles`: `ROLE<tab>ROOM` for each role (room empty: every room);
//!   `chat:{R}:owner` the owner's number; `chat:{R}:moderators` and `chat:moderators` sets of
//!   numbers;
//! - `chat:{R}:sanction:ACTION:SUBJECT` and `chat:sanction:ACTION:SUBJECT` (every room): until
//!   when, expiring then; `chat:{R}:sanctioned:ACTION:NICK` the keys imposed on a member (to
//!   lift them); `chat:{R}:sanctions` a set of `ACTION<tab>NICK` (to list them);
//! - `chat:private-rooms`; `chat:{R}:private-members` (numbers); `chat:{R}:invitations` a hash
//!   of invitation code hashes to `EXPIRES:USES` (uses empty: any number);
//! - `chat:audit`: the audit log, newest first, as JSON (the newest [`AUDIT_KEPT`] entries).

use std::sync::Mutex;
use std::time::Duration;

use protocol::{Role, Sanction, SanctionInfo};
use redis::{Commands, Connection, RedisResult};
use serde::{Deserialize, Serialize};

use crate::accounts::{
    AUDIT_KEPT, AccountError, AccountStore, Audit, MAX_CLAIMED_ROOMS, SanctionRecord,
    StoredAccount, StoredInvitation, StoredSession, audit_action, sanction_name,
};
use crate::names::Likeness;

/// How long one call may take (connecting included) before it counts as failed: a room waits
/// for it at a join.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// How long after a failed call the next ones fail without trying.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The most calls to Redis in progress at once, each on one connection (at most
/// [`MAX_IDLE`] more stay open, idle): more calls wait for one to end (at most
/// [`CALL_TIMEOUT`]), then fail without counting Redis as away.
pub const MAX_OPEN: usize = 32;

/// Counts the calls in progress, each holding at most one connection, to [`MAX_OPEN`].
#[derive(Default)]
struct Gate {
    open: Mutex<usize>,
    freed: std::sync::Condvar,
}

/// A call's place in the [`Gate`], given back when dropped.
struct Entered<'a>(&'a Gate);

impl Gate {
    /// A place, waiting at most [`CALL_TIMEOUT`] for one.
    fn enter(&self) -> RedisResult<Entered<'_>> {
        let open = self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (mut open, waited) = self
            .freed
            .wait_timeout_while(open, CALL_TIMEOUT, |open| *open >= MAX_OPEN)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if waited.timed_out() && *open >= MAX_OPEN {
            let busy = (redis::ErrorKind::Client, "too many calls to Redis at once");
            return Err(redis::RedisError::from(busy));
        }
        *open += 1;
        Ok(Entered(self))
    }
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        *self.0.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner) -= 1;
        self.0.freed.notify_one();
    }
}

/// How long a starting server waits for Redis to answer the accounts' first call.
pub const START_WAIT: Duration = Duration::from_secs(10);

/// The most connections kept idle (more are made when more threads call at once, and closed
/// after their call).
const MAX_IDLE: usize = 16;

/// Registers an account unless a look-alike holds one of its forms, with its first session.
/// KEYS: the two name keys, the account, the set of all, the session, the account's
/// sessions. ARGV: number, nick, password, created, the session's value, its end, the forms.
const CREATE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('EXISTS', KEYS[2]) == 1 then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[3], 'nick', ARGV[2], 'password', ARGV[3], 'created', ARGV[4],
  'key', ARGV[7], 'cased', ARGV[8])
redis.call('ZADD', KEYS[4], ARGV[1], ARGV[1])
redis.call('SET', KEYS[5], ARGV[5], 'PXAT', ARGV[6])
redis.call('ZADD', KEYS[6], ARGV[6], KEYS[5])
return 1
";

/// Adds a session to an account that still exists, forgetting its sessions that expired and,
/// past the most an account keeps, its oldest. KEYS: the account, its sessions, the session.
/// ARGV: the session's value, its end, now, the most kept.
const ADD_SESSION: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[3])
local over = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[4]) + 1
if over > 0 then
  for _, session in ipairs(redis.call('ZRANGE', KEYS[2], 0, over - 1)) do
    redis.call('DEL', session)
  end
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, over - 1)
end
redis.call('SET', KEYS[3], ARGV[1], 'PXAT', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[2], KEYS[3])
return 1
";

/// Ends every session of an account (and, with ARGV[1], sets its password first), at once.
/// KEYS: the account, its sessions.
const END_SESSIONS: &str = r"
if ARGV[1] and redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], 'password', ARGV[1])
end
for _, session in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do redis.call('DEL', session) end
redis.call('DEL', KEYS[2])
return 1
";

/// Takes a room's owner away, and the owner's role entry with it, in one step (an entry left
/// behind would count against the account's claims for good). KEYS: the owner key. ARGV: the
/// role entry, then what comes before and after the number in an account's roles key (see
/// [`roles_key`]: the owner is known only once the key is read). Returns the owner's number,
/// or nil.
const REVOKE_OWNER: &str = r"
local owner = redis.call('GET', KEYS[1])
if not owner then return false end
redis.call('DEL', KEYS[1])
redis.call('SREM', ARGV[2] .. owner .. ARGV[3], ARGV[1])
return owner
";

/// Makes an account a room's owner unless the room has one or the account has claimed its
/// most. KEYS: the owner key, the account's roles. ARGV: the number, the role entry, the most
/// rooms an account claims.
const CLAIM: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local claimed = 0
for _, entry in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if string.sub(entry, 1, 6) == 'owner	' then claimed = claimed + 1 end
end
if claimed >= tonumber(ARGV[3]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SADD', KEYS[2], ARGV[2])
return 1
";

/// Lifts a nick's mutes or bans: deletes only the keys the nick still holds (a key held since
/// for a longer sanction of another nick stays). KEYS: the nick's keys, the room's listed
/// nicks. ARGV: the nick, its listing's entry.
const LIFT_SANCTIONS: &str = r"
local lifted = 0
for _, key in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local held = redis.call('GET', key)
  if held and string.match(held, '^%d+:(.*)$') == ARGV[1] then
    redis.call('DEL', key)
    lifted = lifted + 1
  end
end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[2])
return lifted
";

/// Keeps a mute or ban on a subject (as `UNTIL:NICK`) unless one that ends later holds it,
/// and under the member's nick (to list and lift it): the nick's set of keys lasts as long as
/// the longest of them. KEYS: the subject's key, the nick's keys, the room's listed nicks.
/// ARGV: until when, the listing's entry, now, the nick.
const KEEP_SANCTION: &str = r"
local held = redis.call('GET', KEYS[1])
local ends = held and tonumber(string.match(held, '^(%d+)'))
if ends and ends >= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. ARGV[4], 'PXAT', ARGV[1])
redis.call('SADD', KEYS[2], KEYS[1])
local left = redis.call('PTTL', KEYS[2])
if left < 0 or left < tonumber(ARGV[1]) - tonumber(ARGV[3]) then
  redis.call('PEXPIREAT', KEYS[2], ARGV[1])
end
redis.call('SADD', KEYS[3], ARGV[2])
return 1
";

/// Keeps an invitation code, dropping the room's ended ones and, past the most a room keeps,
/// those that end soonest. KEYS: the room's invitations. ARGV: the code's hash, its value
/// (`EXPIRES:USES`), now, the most kept.
const ADD_INVITATION: &str = r"
local held = redis.call('HGETALL', KEYS[1])
local live = {}
for i = 1, #held, 2 do
  local expires = tonumber(string.match(held[i + 1], '^(%d+):'))
  if not expires or expires <= tonumber(ARGV[3]) then
    redis.call('HDEL', KEYS[1], held[i])
  else
    table.insert(live, {held[i], expires})
  end
end
local most = tonumber(ARGV[4])
if #live >= most then
  table.sort(live, function(a, b) return a[2] < b[2] end)
  for i = 1, #live - most + 1 do redis.call('HDEL', KEYS[1], live[i][1]) end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
";

/// Counts a use of an invitation code that works. KEYS: the room's invitations. ARGV: the
/// code's hash, now.
const USE_INVITATION: &str = r"
local held = redis.call('HGET', KEYS[1], ARGV[1])
if not held then return 0 end
local expires, uses = string.match(held, '^(%d+):(%d*)$')
if not expires or tonumber(expires) <= tonumber(ARGV[2]) then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return 0
end
if uses ~= '' then
  local left = tonumber(uses) - 1
  if left < 0 then redis.call('HDEL', KEYS[1], ARGV[1]) return 0 end
  if left == 0 then
    redis.call('HDEL', KEYS[1], ARGV[1])
  else
    redis.call('HSET', KEYS[1], ARGV[1], expires .. ':' .. left)
  end
end
return 1
";

/// The accounts in a Redis.
pub struct RedisAccounts {
    client: redis::Client,
    /// Connections not in use: each call takes one (or makes one) and gives it back, so
    /// rooms and requests on different threads do not wait for each other's round trips.
    idle: Mutex<Vec<Connection>>,
    /// When the last call failed.
    failed_at: Mutex<Option<std::time::Instant>>,
    /// Counts the calls that found Redis away (`chat_redis_read_failures_total`).
    failures: Option<prometheus_client::metrics::counter::Counter>,
    /// One call is trying a Redis that was found away.
    probing: std::sync::atomic::AtomicBool,
    /// Bounds the connections open at once.
    gate: Gate,
    create: redis::Script,
    add_session: redis::Script,
    end_sessions: redis::Script,
    claim: redis::Script,
    revoke_owner: redis::Script,
    use_invitation: redis::Script,
    keep_sanction: redis::Script,
    lift_sanctions: redis::Script,
    add_invitation: redis::Script,
}

/// An audit log entry as `chat:audit` keeps it.
#[derive(Serialize, Deserialize)]
struct AuditEntry {
    ts: u64,
    actor: String,
    action: String,
    room: String,
    subject: String,
}

impl RedisAccounts {
    /// The accounts in the Redis at `url`, which must answer within [`START_WAIT`] (a blip
    /// as the server starts is waited out).
    pub fn connect(url: &str) -> Result<RedisAccounts, AccountError> {
        let accounts = RedisAccounts {
            client: redis::Client::open(url)?,
            idle: Mutex::new(Vec::new()),
            failed_at: Mutex::new(None),
            failures: None,
            probing: std::sync::atomic::AtomicBool::new(false),
            gate: Gate::default(),
            create: redis::Script::new(CREATE),
            add_session: redis::Script::new(ADD_SESSION),
            end_sessions: redis::Script::new(END_SESSIONS),
            claim: redis::Script::new(CLAIM),
            revoke_owner: redis::Script::new(REVOKE_OWNER),
            use_invitation: redis::Script::new(USE_INVITATION),
            keep_sanction: redis::Script::new(KEEP_SANCTION),
            lift_sanctions: redis::Script::new(LIFT_SANCTIONS),
            add_invitation: redis::Script::new(ADD_INVITATION),
        };
        let deadline = std::time::Instant::now() + START_WAIT;
        loop {
            match accounts.call(|connection| redis::cmd("PING").query::<String>(connection)) {
                Ok(_) => return Ok(accounts),
                Err(_) if std::time::Instant::now() < deadline => std::thread::sleep(RETRY_AFTER),
                Err(error) => return Err(error),
            }
        }
    }

    /// Counts each call that finds Redis away in `failures`.
    pub fn counting(mut self, failures: prometheus_client::metrics::counter::Counter) -> Self {
        self.failures = Some(failures);
        self
    }

    /// Runs `call` on an idle connection (or a new one). A call that fails because its
    /// reused connection turned out closed (Redis restarted since it was last used) never
    /// reached Redis: the other idle connections are as old, so they go, and the call is
    /// made once more on a new connection.
    fn call<T>(&self, call: impl Fn(&mut Connection) -> RedisResult<T>) -> Result<T, AccountError> {
        self.checked(|| match self.attempt(&call, true) {
            (Err(error), true) if error.is_connection_dropped() => {
                self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
                self.attempt(&call, false).0
            }
            (result, _) => result,
        })
    }

    /// As [`RedisAccounts::call`], never made twice: for what must not be done twice, or
    /// whose second answer would be wrong once the first was done (a registration, a claim,
    /// an invitation's use, a lifting, an audit line), its answer lost after Redis did it.
    fn call_once<T>(
        &self,
        call: impl Fn(&mut Connection) -> RedisResult<T>,
    ) -> Result<T, AccountError> {
        self.checked(|| self.attempt(&call, true).0)
    }

    /// Runs `run` unless a call failed less than [`RETRY_AFTER`] ago, and notes whether it
    /// found Redis away (an answer that is an error, a script's, does not count). Once that
    /// time has passed, one call tries Redis while the others still fail at once, so a Redis
    /// that does not answer holds one thread at a time, not every one.
    fn checked<T>(&self, run: impl FnOnce() -> RedisResult<T>) -> Result<T, AccountError> {
        use std::sync::atomic::Ordering;
        let refused = || {
            let away = (redis::ErrorKind::Io, "Redis failed a moment ago; not tried again yet");
            Err(AccountError::Shared(redis::RedisError::from(away)))
        };
        let failed_at = *self.failed_at.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let probe = match failed_at {
            Some(at) if at.elapsed() < RETRY_AFTER => return refused(),
            Some(_) => {
                if self.probing.swap(true, Ordering::AcqRel) {
                    return refused();
                }
                true
            }
            None => false,
        };
        let result = self.gate.enter().and_then(|_open| run());
        let away = matches!(&result, Err(error)
            if error.is_io_error() || error.is_timeout() || error.is_connection_dropped()
                || error.is_connection_refusal());
        *self.failed_at.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
            away.then(std::time::Instant::now);
        if probe {
            self.probing.store(false, Ordering::Release);
        }
        if away && let Some(failures) = &self.failures {
            failures.inc();
        }
        Ok(result?)
    }

    /// One attempt of `call` on an idle connection (then given back; only with `reuse`) or a
    /// new one (a failed one is dropped: it may be broken, or hold a late answer); whether it
    /// was reused.
    fn attempt<T>(
        &self,
        call: &impl Fn(&mut Connection) -> RedisResult<T>,
        reuse: bool,
    ) -> (RedisResult<T>, bool) {
        let idle = match reuse {
            true => self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop(),
            false => None,
        };
        let reused = idle.is_some();
        let mut connection = match idle {
            Some(connection) => connection,
            None => match self.new_connection() {
                Ok(connection) => connection,
                Err(error) => return (Err(error), false),
            },
        };
        let result = call(&mut connection);
        if result.is_ok() {
            let mut idle = self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if idle.len() < MAX_IDLE {
                idle.push(connection);
            }
        }
        (result, reused)
    }

    /// A new connection, every step bounded by [`CALL_TIMEOUT`].
    fn new_connection(&self) -> RedisResult<Connection> {
        let connection = self.client.get_connection_with_timeout(CALL_TIMEOUT)?;
        connection.set_read_timeout(Some(CALL_TIMEOUT))?;
        connection.set_write_timeout(Some(CALL_TIMEOUT))?;
        Ok(connection)
    }

    /// The account numbered `id`, if it exists.
    fn account(&self, id: i64) -> Result<Option<StoredAccount>, AccountError> {
        let (nick, password, created): (Option<String>, Option<String>, Option<u64>) =
            self.call(|c| c.hmget(account_key(id), &["nick", "password", "created"]))?;
        Ok(match (nick, password) {
            (Some(nick), Some(password)) => {
                Some(StoredAccount { id, nick, password, created: created.unwrap_or(0) })
            }
            _ => None,
        })
    }
}

/// An account's keys start with this and its number (the revoke-owner script builds one).
const ACCOUNT_KEY: &str = "chat:account:";
/// What follows the number in an account's roles key.
const ROLES_KEY_SUFFIX: &str = ":roles";

fn account_key(id: i64) -> String {
    format!("{ACCOUNT_KEY}{id}")
}

fn sessions_key(id: i64) -> String {
    format!("{ACCOUNT_KEY}{id}:session-ends")
}

fn roles_key(id: i64) -> String {
    format!("{ACCOUNT_KEY}{id}{ROLES_KEY_SUFFIX}")
}

fn name_key(form: &str) -> String {
    format!("chat:account-name:{form}")
}

fn session_key(hash: &str) -> String {
    format!("chat:session:{hash}")
}

const ALL: &str = "chat:accounts:all";
const NEXT: &str = "chat:accounts:next";
const PRIVATE: &str = "chat:private-rooms";
const AUDIT: &str = "chat:audit";

/// A key of `room`'s (`""`: of every room).
fn room_key(room: &str, what: &str) -> String {
    if room.is_empty() { format!("chat:{what}") } else { format!("chat:{{{room}}}:{what}") }
}

fn sanction_key(room: &str, action: Sanction, subject: &str) -> String {
    room_key(room, &format!("sanction:{}:{subject}", sanction_name(action)))
}

/// A sanction's key's value (`UNTIL:NICK`): until when, and whose.
fn held_until(held: &str) -> Option<(u64, &str)> {
    let (until, nick) = held.split_once(':')?;
    Some((until.parse().ok()?, nick))
}

/// A role as `chat:account:N:roles` holds it.
fn role_entry(role: &str, room: &str) -> String {
    format!("{role}\t{room}")
}

impl AccountStore for RedisAccounts {
    fn find(&self, likeness: &Likeness) -> Result<Option<StoredAccount>, AccountError> {
        let keys = [name_key(likeness.key()), name_key(likeness.cased())];
        let ids: Vec<Option<i64>> = self.call(|c| c.mget(&keys))?;
        match ids.into_iter().flatten().next() {
            Some(id) => self.account(id),
            None => Ok(None),
        }
    }

    fn create(
        &self,
        nick: &str,
        likeness: &Likeness,
        password: &str,
        session: &StoredSession,
    ) -> Result<bool, AccountError> {
        let id: i64 = self.call_once(|c| c.incr(NEXT, 1))?;
        let key = session_key(&session.hash);
        let created: i64 = self.call_once(|c| {
            self.create
                .key(name_key(likeness.key()))
                .key(name_key(likeness.cased()))
                .key(account_key(id))
                .key(ALL)
                .key(&key)
                .key(sessions_key(id))
                .arg(id)
                .arg(nick)
                .arg(password)
                .arg(session.created)
                .arg(format!("{id}:{}", session.expires))
                .arg(session.expires)
                .arg(likeness.key())
                .arg(likeness.cased())
                .invoke(c)
        })?;
        Ok(created == 1)
    }

    fn add_session(&self, account: i64, session: &StoredSession) -> Result<(), AccountError> {
        let _: i64 = self.call(|c| {
            self.add_session
                .key(account_key(account))
                .key(sessions_key(account))
                .key(session_key(&session.hash))
                .arg(format!("{account}:{}", session.expires))
                .arg(session.expires)
                .arg(session.created)
                .arg(crate::accounts::MAX_SESSIONS)
                .invoke(c)
        })?;
        Ok(())
    }

    fn session(&self, hash: &str, now: u64) -> Result<Option<(String, u64)>, AccountError> {
        let value: Option<String> = self.call(|c| c.get(session_key(hash)))?;
        let parsed = value.as_deref().and_then(|value| {
            let (id, expires) = value.split_once(':')?;
            Some((id.parse::<i64>().ok()?, expires.parse::<u64>().ok()?))
        });
        let Some((id, _)) = parsed.filter(|(_, expires)| *expires > now) else {
            return Ok(None);
        };
        Ok(self.account(id)?.map(|account| (account.nick, account.created)))
    }

    fn end_session(&self, hash: &str) -> Result<bool, AccountError> {
        let key = session_key(hash);
        let value: Option<String> = self.call_once(|c| c.get_del(&key))?;
        let Some(value) = value else { return Ok(false) };
        if let Some(id) = value.split_once(':').and_then(|(id, _)| id.parse::<i64>().ok()) {
            let _: i64 = self.call(|c| c.zrem(sessions_key(id), &key))?;
        }
        Ok(true)
    }

    fn end_sessions(&self, account: i64) -> Result<(), AccountError> {
        let _: i64 = self.call(|c| {
            self.end_sessions.key(account_key(account)).key(sessions_key(account)).invoke(c)
        })?;
        Ok(())
    }

    fn set_password(&self, account: i64, password: &str) -> Result<(), AccountError> {
        let _: i64 = self.call(|c| {
            self.end_sessions
                .key(account_key(account))
                .key(sessions_key(account))
                .arg(password)
                .invoke(c)
        })?;
        Ok(())
    }

    fn delete(&self, account: i64) -> Result<(), AccountError> {
        let (key, cased): (Option<String>, Option<String>) =
            self.call(|c| c.hmget(account_key(account), &["key", "cased"]))?;
        let roles: Vec<String> = self.call(|c| c.smembers(roles_key(account)))?;
        let mut owned = Vec::new();
        for entry in &roles {
            if let Some(room) = entry.strip_prefix("owner\t") {
                let owner: Option<i64> = self.call(|c| c.get(room_key(room, "owner")))?;
                if owner == Some(account) {
                    owned.push(room_key(room, "owner"));
                }
            }
        }
        self.end_sessions(account)?;
        let mut pipe = redis::pipe();
        pipe.atomic();
        for form in key.iter().chain(cased.iter()) {
            pipe.del(name_key(form)).ignore();
        }
        for entry in &roles {
            if let Some(room) = entry.strip_prefix("moderator\t") {
                pipe.srem(room_key(room, "moderators"), account).ignore();
            }
        }
        for owner in owned {
            pipe.del(owner).ignore();
        }
        pipe.del(account_key(account)).ignore();
        pipe.del(roles_key(account)).ignore();
        pipe.zrem(ALL, account).ignore();
        // Private rooms' member sets may still hold the number: numbers are never given
        // again, so it names nobody.
        self.call(|c| pipe.query::<()>(c))
    }

    fn list(&self) -> Result<Vec<(String, u64, Vec<String>)>, AccountError> {
        let ids: Vec<i64> = self.call(|c| c.zrange(ALL, 0, -1))?;
        let mut listed = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(account) = self.account(id)? else { continue };
            let entries: Vec<String> = self.call(|c| c.smembers(roles_key(id)))?;
            let mut roles: Vec<String> = entries
                .iter()
                .filter_map(|entry| entry.split_once('\t'))
                .map(|(role, room)| format!("{}:{role}", if room.is_empty() { "*" } else { room }))
                .collect();
            roles.sort();
            listed.push((account.nick, account.created, roles));
        }
        Ok(listed)
    }

    fn role(&self, room: &str, account: i64) -> Result<Option<Role>, AccountError> {
        let (owner, moderates_room, moderates_all): (Option<i64>, bool, bool) = self.call(|c| {
            redis::pipe()
                .get(room_key(room, "owner"))
                .sismember(room_key(room, "moderators"), account)
                .sismember(room_key("", "moderators"), account)
                .query(c)
        })?;
        Ok(if owner == Some(account) {
            Some(Role::Owner)
        } else if moderates_room || moderates_all {
            Some(Role::Moderator)
        } else {
            None
        })
    }

    fn claim(&self, room: &str, account: i64, _now: u64) -> Result<bool, AccountError> {
        let claimed: i64 = self.call_once(|c| {
            self.claim
                .key(room_key(room, "owner"))
                .key(roles_key(account))
                .arg(account)
                .arg(role_entry("owner", room))
                .arg(MAX_CLAIMED_ROOMS)
                .invoke(c)
        })?;
        Ok(claimed == 1)
    }

    fn grant_moderator(&self, account: i64, room: &str, _now: u64) -> Result<(), AccountError> {
        self.call(|c| {
            redis::pipe()
                .atomic()
                .sadd(room_key(room, "moderators"), account)
                .ignore()
                .sadd(roles_key(account), role_entry("moderator", room))
                .ignore()
                .query::<()>(c)
        })
    }

    fn revoke_moderator(&self, account: i64, room: &str) -> Result<bool, AccountError> {
        let (removed, _): (i64, i64) = self.call(|c| {
            redis::pipe()
                .atomic()
                .srem(room_key(room, "moderators"), account)
                .srem(roles_key(account), role_entry("moderator", room))
                .query(c)
        })?;
        Ok(removed > 0)
    }

    fn revoke_owner(&self, room: &str) -> Result<Option<String>, AccountError> {
        let owner: Option<i64> = self.call_once(|c| {
            self.revoke_owner
                .key(room_key(room, "owner"))
                .arg(role_entry("owner", room))
                .arg(ACCOUNT_KEY)
                .arg(ROLES_KEY_SUFFIX)
                .invoke(c)
        })?;
        let Some(owner) = owner else { return Ok(None) };
        Ok(self.account(owner)?.map(|account| account.nick))
    }

    fn sanction_until(
        &self,
        room: &str,
        subject: &str,
        action: Sanction,
        now: u64,
    ) -> Result<Option<u64>, AccountError> {
        let keys = [sanction_key(room, action, subject), sanction_key("", action, subject)];
        let held: Vec<Option<String>> = self.call(|c| c.mget(&keys))?;
        let until =
            held.iter().flatten().filter_map(|held| held_until(held)).map(|(until, _)| until);
        Ok(until.max().filter(|until| *until > now))
    }

    fn keep_sanction(&self, record: &SanctionRecord, now: u64) -> Result<(), AccountError> {
        let name = sanction_name(record.action);
        // Gone from Redis when it ends (PXAT): the keys hold what is in force.
        let _: i64 = self.call(|c| {
            self.keep_sanction
                .key(sanction_key(&record.room, record.action, &record.subject))
                .key(room_key(&record.room, &format!("sanctioned:{name}:{}", record.nick)))
                .key(room_key(&record.room, "sanctions"))
                .arg(record.until)
                .arg(format!("{name}\t{}", record.nick))
                .arg(now)
                .arg(&record.nick)
                .invoke(c)
        })?;
        Ok(())
    }

    fn lift_sanctions(
        &self,
        room: &str,
        nick: &str,
        action: Sanction,
    ) -> Result<usize, AccountError> {
        let name = sanction_name(action);
        let lifted: usize = self.call_once(|c| {
            self.lift_sanctions
                .key(room_key(room, &format!("sanctioned:{name}:{nick}")))
                .key(room_key(room, "sanctions"))
                .arg(nick)
                .arg(format!("{name}\t{nick}"))
                .invoke(c)
        })?;
        Ok(lifted)
    }

    fn sanctions(&self, room: &str, now: u64) -> Result<Vec<SanctionInfo>, AccountError> {
        let key = room_key(room, "sanctions");
        let fields: Vec<String> = self.call(|c| c.smembers(&key))?;
        let mut listed = Vec::new();
        let mut ended = Vec::new();
        for field in fields {
            let Some((action, nick)) = field.split_once('\t') else { continue };
            // The latest end among the keys still held for the member (they expire).
            let imposed = room_key(room, &format!("sanctioned:{action}:{nick}"));
            let keys: Vec<String> = self.call(|c| c.smembers(&imposed))?;
            let held: Vec<Option<String>> =
                if keys.is_empty() { Vec::new() } else { self.call(|c| c.mget(&keys))? };
            // Only the keys still this member's (another's longer sanction may hold one now).
            let until = held
                .iter()
                .flatten()
                .filter_map(|held| held_until(held))
                .filter(|(_, holder)| *holder == nick)
                .map(|(until, _)| until);
            match until.max().filter(|until| *until > now) {
                Some(until) => {
                    let action = if action == "mute" { Sanction::Mute } else { Sanction::Ban };
                    listed.push(SanctionInfo { nick: nick.to_owned(), action, until });
                }
                None => ended.push(field.clone()),
            }
        }
        if !ended.is_empty() {
            let _: i64 = self.call(|c| c.srem(&key, &ended))?;
        }
        listed.sort_by(|a, b| {
            (&a.nick, sanction_name(a.action)).cmp(&(&b.nick, sanction_name(b.action)))
        });
        Ok(listed)
    }

    fn private_rooms(&self) -> Result<Vec<String>, AccountError> {
        self.call(|c| c.smembers(PRIVATE))
    }

    fn is_private(&self, room: &str) -> Result<bool, AccountError> {
        self.call(|c| c.sismember(PRIVATE, room))
    }

    fn set_private(
        &self,
        room: &str,
        private: bool,
        members: &[i64],
        _now: u64,
    ) -> Result<(), AccountError> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        if private {
            pipe.sadd(PRIVATE, room).ignore();
            if !members.is_empty() {
                pipe.sadd(room_key(room, "private-members"), members).ignore();
            }
        } else {
            pipe.srem(PRIVATE, room).ignore();
            pipe.del(room_key(room, "private-members")).ignore();
            pipe.del(room_key(room, "invitations")).ignore();
        }
        self.call(|c| pipe.query::<()>(c))
    }

    fn is_member(&self, room: &str, account: i64) -> Result<bool, AccountError> {
        self.call(|c| c.sismember(room_key(room, "private-members"), account))
    }

    fn add_member(&self, room: &str, account: i64) -> Result<(), AccountError> {
        let _: i64 = self.call(|c| c.sadd(room_key(room, "private-members"), account))?;
        Ok(())
    }

    fn remove_member(&self, room: &str, account: i64) -> Result<bool, AccountError> {
        let removed: i64 = self.call(|c| c.srem(room_key(room, "private-members"), account))?;
        Ok(removed > 0)
    }

    fn use_invitation(&self, room: &str, hash: &str, now: u64) -> Result<bool, AccountError> {
        let used: i64 = self.call_once(|c| {
            self.use_invitation.key(room_key(room, "invitations")).arg(hash).arg(now).invoke(c)
        })?;
        Ok(used == 1)
    }

    fn add_invitation(
        &self,
        room: &str,
        invitation: &StoredInvitation,
        now: u64,
    ) -> Result<(), AccountError> {
        let uses = invitation.uses.map(|uses| uses.to_string()).unwrap_or_default();
        let value = format!("{}:{uses}", invitation.expires);
        let _: i64 = self.call(|c| {
            self.add_invitation
                .key(room_key(room, "invitations"))
                .arg(&invitation.hash)
                .arg(&value)
                .arg(now)
                .arg(crate::accounts::MAX_INVITATIONS)
                .invoke(c)
        })?;
        Ok(())
    }

    fn revoke_invitations(&self, room: &str) -> Result<(), AccountError> {
        let _: i64 = self.call(|c| c.del(room_key(room, "invitations")))?;
        Ok(())
    }

    fn audit(&self, audit: &Audit, ts: u64) -> Result<(), AccountError> {
        let entry = AuditEntry {
            ts,
            actor: audit.actor.clone(),
            action: audit.action.to_owned(),
            room: audit.room.clone(),
            subject: audit.subject.clone(),
        };
        let json = serde_json::to_string(&entry).unwrap_or_default();
        // The newest entries are kept (the store must not grow without end under the
        // `noeviction` policy Redis runs with here).
        self.call_once(|c| {
            redis::pipe()
                .atomic()
                .lpush(AUDIT, &json)
                .ignore()
                .ltrim(AUDIT, 0, isize::try_from(AUDIT_KEPT).unwrap_or(isize::MAX) - 1)
                .ignore()
                .query::<()>(c)
        })?;
        Ok(())
    }

    fn audit_log(&self, limit: u32) -> Result<Vec<(u64, Audit)>, AccountError> {
        let last = isize::try_from(limit).unwrap_or(isize::MAX).saturating_sub(1);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let entries: Vec<String> = self.call(|c| c.lrange(AUDIT, 0, last))?;
        Ok(entries
            .iter()
            .filter_map(|json| serde_json::from_str::<AuditEntry>(json).ok())
            .map(|entry| {
                let audit = Audit {
                    actor: entry.actor,
                    action: audit_action(&entry.action),
                    room: entry.room,
                    subject: entry.subject,
                };
                (entry.ts, audit)
            })
            .collect())
    }

    fn close(&self) {
        self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::Accounts;

    /// The accounts' contract, as the database keeps it, holds in Redis too.
    #[test]
    fn redis_keeps_the_accounts_contract() {
        let redis = testclient::redis::RedisProcess::start(false);
        let store = RedisAccounts::connect(&redis.url).expect("connected");
        let accounts = Accounts::over(Box::new(store)).expect("accounts");
        crate::accounts::tests::contract(&accounts);
        // Only hashes of the session tokens are kept.
        let session = accounts
            .log_in("Alice", crate::accounts::tests::PASSWORD, crate::outbound::now_millis())
            .expect("logged in");
        let client = redis::Client::open(redis.url.as_str()).expect("url");
        let keys: Vec<String> =
            client.get_connection().expect("connected").keys("chat:session:*").expect("keys");
        assert!(keys.iter().all(|key| !key.contains(&session.token)), "{keys:?}");
        let hash = crate::accounts::token_hash(&session.token);
        assert!(keys.contains(&format!("chat:session:{hash}")), "{keys:?}");
    }

    /// Four threads call at once, each waiting a fifth of a second on an answer that blocks
    /// only its own connection (a `BLPOP` of an empty list).
    fn four_slow_calls_at_once(store: &std::sync::Arc<RedisAccounts>) {
        let start = std::sync::Arc::new(std::sync::Barrier::new(4));
        let threads: Vec<_> = (0..4)
            .map(|n| {
                let (store, start) = (store.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    let popped: Option<(String, String)> =
                        store.call(|c| c.blpop(format!("chat:test:{n}"), 0.2)).expect("answered");
                    popped
                })
            })
            .collect();
        for thread in threads {
            assert_eq!(thread.join().expect("finished"), None);
        }
    }

    /// Threads calling at once each get a connection of their own: one waiting on a slow
    /// answer holds up nobody else.
    #[test]
    fn concurrent_calls_do_not_queue_behind_each_other() {
        let redis = testclient::redis::RedisProcess::start(false);
        let store = std::sync::Arc::new(RedisAccounts::connect(&redis.url).expect("connected"));
        four_slow_calls_at_once(&store);
        let idle = store.idle.lock().expect("not poisoned").len();
        assert_eq!(idle, 4, "one connection per concurrent call, kept for the next calls");
    }

    /// Idle connections made before a Redis restart are all closed: the first call after it
    /// drops them and succeeds on a new one, rather than failing on each in turn.
    #[test]
    fn idle_connections_from_before_a_restart_do_not_refuse_calls() {
        let mut redis = testclient::redis::RedisProcess::start(true);
        let store = std::sync::Arc::new(RedisAccounts::connect(&redis.url).expect("connected"));
        four_slow_calls_at_once(&store);
        assert_eq!(store.idle.lock().expect("not poisoned").len(), 4);
        redis.kill();
        redis.restart(true);
        let pong: String = store.call(|c| redis::cmd("PING").query(c)).expect("answered at once");
        assert_eq!(pong, "PONG");
        assert_eq!(store.idle.lock().expect("not poisoned").len(), 1, "the old ones went");
    }

    /// A Redis that goes away fails calls (refusing, as a database error does); one that comes
    /// back is used again without a restart.
    #[test]
    fn a_redis_that_comes_back_is_used_again() {
        let mut redis = testclient::redis::RedisProcess::start(true);
        let failures = prometheus_client::metrics::counter::Counter::default();
        let store =
            RedisAccounts::connect(&redis.url).expect("connected").counting(failures.clone());
        let accounts = Accounts::over(Box::new(store)).expect("accounts");
        accounts.register("bob", crate::accounts::tests::PASSWORD, 1).expect("registered");
        redis.kill();
        assert!(matches!(
            accounts.is_registered(&Likeness::of("bob")),
            Err(AccountError::Shared(_))
        ));
        assert_eq!(failures.get(), 1, "counted once Redis was found away");
        // Right after a failure, calls fail without waiting on Redis.
        let at_once = accounts.is_registered(&Likeness::of("bob"));
        assert!(
            matches!(&at_once, Err(error) if error.to_string().contains("not tried again yet")),
            "{at_once:?}"
        );
        assert_eq!(failures.get(), 1, "a call not tried is not counted");
        redis.restart(true);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match accounts.is_registered(&Likeness::of("bob")) {
                Ok(registered) => break assert!(registered, "read again"),
                Err(error) => assert!(std::time::Instant::now() < deadline, "{error}"),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
