//! Accounts (the first part of "who is who"): a person registers a nick with a password and
//! logs in; the nick is then theirs server-wide. Passwords are kept as Argon2id hashes (the
//! `argon2` crate, RustCrypto's), sessions as SHA-256 hashes of random tokens, both in the data
//! folder's database, through a connection of their own (so logins never queue behind the
//! storage thread's batches, and SQLite's locking orders the rare writes).
//!
//! Argon2id with 19 MiB of memory, 2 passes and 1 lane: the OWASP Password Storage Cheat
//! Sheet's first recommended setting. A hash takes tens of milliseconds of one core: callers run
//! it on a blocking thread, and logins are rate-limited per address and per account above
//! this module.

use std::path::Path;
use std::sync::Mutex;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};

use protocol::{Role, Sanction, SanctionInfo};

use crate::db::{DATABASE_FILE, StoreError};
use crate::names::Likeness;

/// A moderation action, for the audit log: who did what, where, to what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audit {
    pub actor: String,
    pub action: &'static str,
    pub room: String,
    pub subject: String,
}

pub(crate) fn sanction_name(action: Sanction) -> &'static str {
    match action {
        Sanction::Kick => "kick",
        Sanction::Mute => "mute",
        Sanction::Ban => "ban",
        Sanction::Unmute => "unmute",
        Sanction::Unban => "unban",
    }
}

/// A mute or ban of `subject` (an identity, or a guest's address) in `room` until `until`
/// (Unix ms), imposed on the member called `nick` (by which it is listed and lifted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SanctionRecord {
    pub room: String,
    pub subject: String,
    pub action: Sanction,
    pub until: u64,
    pub nick: String,
}

/// An invitation code as a store keeps it: the SHA-256 of the code, until when it works, and
/// how many more people it may make members (`None`: any number).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredInvitation {
    pub hash: String,
    pub expires: u64,
    pub uses: Option<u32>,
}

/// How the roles table names a room's owner.
const OWNER: &str = "owner";

/// The actions the audit log holds, as `Audit` names them.
const AUDIT_ACTIONS: &[&str] = &[
    "delete",
    "kick",
    "mute",
    "ban",
    "unmute",
    "unban",
    "grant-moderator",
    "revoke-moderator",
    "revoke-owner",
    "private",
    "public",
    "add-member",
    "remove-member",
    "delete-account",
    "reset-password",
];

pub(crate) fn audit_action(stored: &str) -> &'static str {
    AUDIT_ACTIONS.iter().find(|action| **action == stored).copied().unwrap_or("other")
}

/// Argon2id's memory in KiB, passes and lanes (see the module's note).
const ARGON2_MEMORY_KIB: u32 = 19 * 1024;
const ARGON2_PASSES: u32 = 2;
const ARGON2_LANES: u32 = 1;

/// How a token's identities are named (the id of a signed-in room member): they have no
/// account here. An account's id is its nick, so no nick that starts with it is registered.
pub const TOKEN_ID: &str = "token:";

/// The most rooms one account owns by claiming them (being the first signed-in joiner of a
/// room with no message): past it, a room the account opens gets no owner. Without it, one
/// account could leave an owner's record in every room name it walks through.
pub const MAX_CLAIMED_ROOMS: u32 = 100;

/// The audit log keeps its newest entries, this many (in the database and in Redis alike).
pub const AUDIT_KEPT: u32 = 100_000;

/// Passwords are at least this long, in characters, and at most [`MAX_PASSWORD_BYTES`].
pub const MIN_PASSWORD_CHARS: usize = 10;
/// Longer passwords are refused rather than hashed (a hash's cost grows with its input).
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// The most invitation codes a room keeps working: making one more ends the one that would
/// end soonest (codes are made over the wire at the frame rate, and last a week).
pub const MAX_INVITATIONS: usize = 100;
/// The most sessions an account keeps: a login past it ends the oldest (logins are limited
/// per address, not per account, and each session is a row or key until it expires).
pub const MAX_SESSIONS: usize = 100;
/// How long a session lasts after login.
pub const SESSION_MILLIS: u64 = 30 * 24 * 3600 * 1000;

/// Why an account call failed.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("someone has registered a nick that looks like this one")]
    Taken,
    #[error(
        "a password has {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_BYTES} bytes' worth of characters"
    )]
    WeakPassword,
    #[error(
        "nicks starting with `guest-` or `{TOKEN_ID}` are the server's names for guests and for \
         people a site signed in"
    )]
    GuestNick,
    #[error("wrong nick or password")]
    WrongPassword,
    #[error("the password could not be hashed: {0}")]
    Hash(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the shared store (Redis) failed: {0}")]
    Shared(#[from] redis::RedisError),
}

impl From<rusqlite::Error> for AccountError {
    fn from(error: rusqlite::Error) -> Self {
        AccountError::Store(StoreError::from(error))
    }
}

/// A session made by a login: the token for the cookie (shown once, stored only hashed) and
/// the account's nick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub token: String,
    pub nick: String,
}

/// An account as a store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAccount {
    /// The store's number for it (never given to another account).
    pub id: i64,
    /// The nick as registered.
    pub nick: String,
    /// Its password's Argon2id hash, in the PHC string format.
    pub password: String,
    /// When it was registered (Unix ms).
    pub created: u64,
}

/// A new session as a store keeps it: the SHA-256 of its token, and when it starts and ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSession {
    pub hash: String,
    pub created: u64,
    pub expires: u64,
}

/// Where accounts, sessions, roles, bans and private rooms are kept: the data folder's
/// database ([`SqliteAccounts`]), or with `--redis` the Redis every server shares
/// (`redis_accounts`), so that a nick registered through one server is taken on all. The
/// rules (passwords, look-alikes, who may do what) are [`Accounts`]'s, over either.
pub trait AccountStore: Send + Sync {
    /// The account whose nick looks like `likeness` (under either of its forms).
    fn find(&self, likeness: &Likeness) -> Result<Option<StoredAccount>, AccountError>;
    /// Registers `nick` with the hash `password` and its first `session`, unless a nick that
    /// looks like it is registered (checked in the same write); whether it was registered.
    fn create(
        &self,
        nick: &str,
        likeness: &Likeness,
        password: &str,
        session: &StoredSession,
    ) -> Result<bool, AccountError>;
    /// Adds a session to the account `account` (expired sessions may go on the way).
    fn add_session(&self, account: i64, session: &StoredSession) -> Result<(), AccountError>;
    /// The account (nick as registered, when registered) of the session `hash`, if it has not
    /// expired by `now`.
    fn session(&self, hash: &str, now: u64) -> Result<Option<(String, u64)>, AccountError>;
    /// Ends the session `hash`; whether there was one.
    fn end_session(&self, hash: &str) -> Result<bool, AccountError>;
    /// Ends every session of `account`.
    fn end_sessions(&self, account: i64) -> Result<(), AccountError>;
    /// Sets `account`'s password hash and ends its sessions.
    fn set_password(&self, account: i64, password: &str) -> Result<(), AccountError>;
    /// Deletes `account` with its sessions and roles.
    fn delete(&self, account: i64) -> Result<(), AccountError>;
    /// Every account, oldest first: nick, when registered, roles as `room:role` (`*`: every
    /// room).
    fn list(&self) -> Result<Vec<(String, u64, Vec<String>)>, AccountError>;
    /// `account`'s role in `room` (owner before moderator; room `""` is every room).
    fn role(&self, room: &str, account: i64) -> Result<Option<Role>, AccountError>;
    /// Makes `account` the owner of `room` unless it has one; whether it did.
    fn claim(&self, room: &str, account: i64, now: u64) -> Result<bool, AccountError>;
    /// Makes `account` a moderator of `room` (`""`: of every room).
    fn grant_moderator(&self, account: i64, room: &str, now: u64) -> Result<(), AccountError>;
    /// Takes `account`'s moderator role in `room` away; whether it had it.
    fn revoke_moderator(&self, account: i64, room: &str) -> Result<bool, AccountError>;
    /// Takes `room`'s owner away; the owner's nick, if it had one.
    fn revoke_owner(&self, room: &str) -> Result<Option<String>, AccountError>;
    /// The latest end of `action` on `subject` in `room` or in every room (`""`), if later
    /// than `now`.
    fn sanction_until(
        &self,
        room: &str,
        subject: &str,
        action: Sanction,
        now: u64,
    ) -> Result<Option<u64>, AccountError>;
    /// Keeps a mute or ban; an earlier one of the same kind on the same subject that ends
    /// later holds (a ban of a puppet nick on the same address must not shorten the ban).
    fn keep_sanction(&self, record: &SanctionRecord, now: u64) -> Result<(), AccountError>;
    /// Lifts every `action` (mute or ban) imposed on the member `nick` in `room` (`""`: the
    /// server-wide ones); how many records went.
    fn lift_sanctions(
        &self,
        room: &str,
        nick: &str,
        action: Sanction,
    ) -> Result<usize, AccountError>;
    /// The mutes and bans in force in `room` at `now`, one per member and kind (the latest
    /// end), sorted by nick.
    fn sanctions(&self, room: &str, now: u64) -> Result<Vec<SanctionInfo>, AccountError>;
    /// The private rooms.
    fn private_rooms(&self) -> Result<Vec<String>, AccountError>;
    /// Whether `room` is private.
    fn is_private(&self, room: &str) -> Result<bool, AccountError>;
    /// Makes `room` private with `members` (account numbers) as members, or public again (its
    /// members and invitations forgotten), in one write.
    fn set_private(
        &self,
        room: &str,
        private: bool,
        members: &[i64],
        now: u64,
    ) -> Result<(), AccountError>;
    /// Whether `account` is a member of `room`.
    fn is_member(&self, room: &str, account: i64) -> Result<bool, AccountError>;
    /// Makes `account` a member of `room`.
    fn add_member(&self, room: &str, account: i64) -> Result<(), AccountError>;
    /// Takes `account`'s membership of `room` away; whether it had one.
    fn remove_member(&self, room: &str, account: i64) -> Result<bool, AccountError>;
    /// Whether `hash` is a code to `room` that works at `now` (not expired, uses left); a
    /// use is counted (in the same write).
    fn use_invitation(&self, room: &str, hash: &str, now: u64) -> Result<bool, AccountError>;
    /// Keeps an invitation code to `room` (codes that ended may go on the way).
    fn add_invitation(
        &self,
        room: &str,
        invitation: &StoredInvitation,
        now: u64,
    ) -> Result<(), AccountError>;
    /// Forgets every invitation code to `room`.
    fn revoke_invitations(&self, room: &str) -> Result<(), AccountError>;
    /// Appends to the audit log.
    fn audit(&self, audit: &Audit, ts: u64) -> Result<(), AccountError>;
    /// The newest `limit` entries of the audit log, newest first.
    fn audit_log(&self, limit: u32) -> Result<Vec<(u64, Audit)>, AccountError>;
    /// Lets go of what the store holds open (at shutdown).
    fn close(&self) {}
}

/// The accounts: the rules of registering, logging in and roles, over a store.
pub struct Accounts {
    store: Box<dyn AccountStore>,
    hasher: Argon2<'static>,
}

impl Accounts {
    /// The accounts of the database in `data_dir` (the server has opened and migrated it).
    pub fn open(data_dir: &Path) -> Result<Accounts, StoreError> {
        let connection = Connection::open(data_dir.join(DATABASE_FILE))?;
        Self::with(connection)
    }

    /// Over `connection`, whose schema is migrated (tests: an in-memory database).
    pub fn with(connection: Connection) -> Result<Accounts, StoreError> {
        connection.busy_timeout(std::time::Duration::from_secs(5))?;
        connection.pragma_update(None, "foreign_keys", "ON")?;
        Self::over(Box::new(SqliteAccounts { connection: Mutex::new(connection) }))
    }

    /// Over any store.
    pub fn over(store: Box<dyn AccountStore>) -> Result<Accounts, StoreError> {
        let params = Params::new(ARGON2_MEMORY_KIB, ARGON2_PASSES, ARGON2_LANES, None)
            .map_err(|error| StoreError::Random(error.to_string()))?;
        let hasher = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        Ok(Accounts { store, hasher })
    }

    /// `password`'s Argon2id hash with a new salt, in the PHC string format. Slow.
    fn hash(&self, password: &str) -> Result<String, AccountError> {
        let salt = new_salt()?;
        let hash = self.hasher.hash_password(password.as_bytes(), &salt);
        Ok(hash.map_err(|error| AccountError::Hash(error.to_string()))?.to_string())
    }

    /// Lets go of the store (at shutdown: for the database, before the message store closes
    /// it, so that the message store's is the last connection and its write-ahead log is
    /// folded into the file); rooms that still hold the accounts get errors after this.
    pub fn close(&self) {
        self.store.close();
    }

    /// The account that looks like `nick`.
    fn find(&self, nick: &str) -> Result<Option<StoredAccount>, AccountError> {
        self.store.find(&Likeness::of(nick))
    }

    /// Registers `nick` (checked by the caller against the protocol's rules) with `password`,
    /// unless a registered nick looks like it, and logs it in. Slow: run it on a blocking
    /// thread.
    pub fn register(&self, nick: &str, password: &str, now: u64) -> Result<Session, AccountError> {
        check_password(password)?;
        let lower = nick.to_lowercase();
        if lower.starts_with("guest-") || lower.starts_with(TOKEN_ID) {
            return Err(AccountError::GuestNick);
        }
        let likeness = Likeness::of(nick);
        if self.is_registered(&likeness)? {
            return Err(AccountError::Taken);
        }
        let hash = self.hash(password)?;
        // Checked again by the store in the same write: another registration of a look-alike
        // may have come between the first check and the (slow) hash.
        let (token, session) = new_session(now)?;
        if !self.store.create(nick, &likeness, &hash, &session)? {
            return Err(AccountError::Taken);
        }
        Ok(Session { token, nick: nick.to_owned() })
    }

    /// Whether a registered nick looks like `likeness` (under either of its forms).
    pub fn is_registered(&self, likeness: &Likeness) -> Result<bool, AccountError> {
        Ok(self.store.find(likeness)?.is_some())
    }

    /// Logs `nick` in with `password`: a new session (a new token every time, so a token
    /// planted before the login is worth nothing). The same answer for an unknown nick as for
    /// a wrong password, and a hash computed either way, so a login does not tell which nicks
    /// are registered (registering one, or joining under it, does). Slow: run it on a
    /// blocking thread.
    pub fn log_in(&self, nick: &str, password: &str, now: u64) -> Result<Session, AccountError> {
        if password.len() > MAX_PASSWORD_BYTES {
            return Err(AccountError::WrongPassword);
        }
        let Some(account) = self.find(nick)? else {
            // As long as a real check takes.
            if let Ok(salt) = new_salt() {
                let _ = self.hasher.hash_password(password.as_bytes(), &salt);
            }
            return Err(AccountError::WrongPassword);
        };
        let parsed = PasswordHash::new(&account.password)
            .map_err(|error| AccountError::Hash(error.to_string()))?;
        if self.hasher.verify_password(password.as_bytes(), &parsed).is_err() {
            return Err(AccountError::WrongPassword);
        }
        let (token, session) = new_session(now)?;
        self.store.add_session(account.id, &session)?;
        Ok(Session { token, nick: account.nick })
    }

    /// The nick of the account whose unexpired session `token` is.
    pub fn session(&self, token: &str, now: u64) -> Result<Option<String>, AccountError> {
        Ok(self.session_account(token, now)?.map(|(nick, _)| nick))
    }

    /// The account (its nick and when it was registered) whose unexpired session `token` is.
    pub fn session_account(
        &self,
        token: &str,
        now: u64,
    ) -> Result<Option<(String, u64)>, AccountError> {
        self.store.session(&token_hash(token), now)
    }

    /// Ends the session `token` (logging out); `false` if there was none.
    pub fn log_out(&self, token: &str) -> Result<bool, AccountError> {
        self.store.end_session(&token_hash(token))
    }

    /// The role of the account `nick` (as registered) in `room`: owner, or moderator of the
    /// room or of the whole server. With `claim` (the room has no messages) and no owner yet,
    /// the account becomes the room's owner.
    pub fn role(&self, room: &str, nick: &str, claim: bool) -> Result<Option<Role>, AccountError> {
        let Some(account) = self.find(nick)? else { return Ok(None) };
        let role = self.store.role(room, account.id)?;
        if role.is_some() || !claim {
            return Ok(role);
        }
        let now = crate::outbound::now_millis();
        Ok(self.store.claim(room, account.id, now)?.then_some(Role::Owner))
    }

    /// Makes the account `nick` (or a look-alike) a moderator of `room` (`None`: of every
    /// room); its nick as registered, or `None` if there is no such account.
    pub fn grant_moderator(
        &self,
        nick: &str,
        room: Option<&str>,
        now: u64,
    ) -> Result<Option<String>, AccountError> {
        let Some(account) = self.find(nick)? else { return Ok(None) };
        self.store.grant_moderator(account.id, room.unwrap_or(""), now)?;
        Ok(Some(account.nick))
    }

    /// Bans the account `nick` (or a look-alike) from every room until `until`: its nick as
    /// registered, or `None` if there is no such account. Its sessions end too, so its open
    /// connections close within the session check interval.
    pub fn ban_everywhere(&self, nick: &str, until: u64) -> Result<Option<String>, AccountError> {
        let Some(account) = self.find(nick)? else { return Ok(None) };
        let record = SanctionRecord {
            room: String::new(),
            subject: format!("id:{}", account.nick),
            action: Sanction::Ban,
            until,
            nick: account.nick.clone(),
        };
        self.store.keep_sanction(&record, crate::outbound::now_millis())?;
        self.store.end_sessions(account.id)?;
        Ok(Some(account.nick))
    }

    /// Takes `room`'s owner away (an operator's call: the first signed-in joiner of a new
    /// room owns it); the owner's nick, if there was one.
    pub fn revoke_owner(&self, room: &str) -> Result<Option<String>, AccountError> {
        let owner = self.store.revoke_owner(room)?;
        // As for a former moderator: the codes the owner made end too.
        if owner.is_some() {
            self.store.revoke_invitations(room)?;
        }
        Ok(owner)
    }

    /// Takes the account's moderator role in `room` (`None`: the server-wide one) away: its
    /// nick as registered if it had it.
    pub fn revoke_moderator(
        &self,
        nick: &str,
        room: Option<&str>,
    ) -> Result<Option<String>, AccountError> {
        let Some(account) = self.find(nick)? else { return Ok(None) };
        let had = self.store.revoke_moderator(account.id, room.unwrap_or(""))?;
        // The invitation codes a former moderator made would let them (or anyone they gave
        // them to) in: the room's codes end with the role. (A server-wide moderator's codes,
        // spread over rooms, are not found this way.)
        if let (true, Some(room)) = (had, room) {
            self.store.revoke_invitations(room)?;
        }
        Ok(had.then_some(account.nick))
    }

    /// Every account: nick, when registered, and its roles as `room:role` (`*` for the whole
    /// server), oldest first.
    pub fn list(&self) -> Result<Vec<(String, u64, Vec<String>)>, AccountError> {
        self.store.list()
    }

    /// Deletes the account `nick` (its sessions and roles go with it; its messages stay, and
    /// its nick is free again); its nick as registered, or `None` if there was none.
    pub fn delete(&self, nick: &str) -> Result<Option<String>, AccountError> {
        let Some(account) = self.find(nick)? else { return Ok(None) };
        self.store.delete(account.id)?;
        Ok(Some(account.nick))
    }

    /// Sets a new password for `nick` and ends its sessions; its nick as registered, or `None`.
    /// Slow (a hash): run it off the async runtime.
    pub fn reset_password(
        &self,
        nick: &str,
        password: &str,
    ) -> Result<Option<String>, AccountError> {
        check_password(password)?;
        let hash = self.hash(password)?;
        let Some(account) = self.find(nick)? else { return Ok(None) };
        self.store.set_password(account.id, &hash)?;
        Ok(Some(account.nick))
    }

    /// Until when `subject` is under `action` in `room` (or in every room: the operator's
    /// server-wide bans, room `''`), if later than `now`.
    pub fn sanction_until(
        &self,
        room: &str,
        subject: &str,
        action: Sanction,
        now: u64,
    ) -> Result<Option<u64>, AccountError> {
        self.store.sanction_until(room, subject, action, now)
    }

    /// Keeps a mute or ban (one of the same kind on the subject that ends later holds).
    pub fn keep_sanction(&self, record: &SanctionRecord) -> Result<(), AccountError> {
        self.store.keep_sanction(record, crate::outbound::now_millis())
    }

    /// Lifts the mutes (`Unmute`) or bans (`Unban`, or `Ban`) imposed on `nick` in `room`
    /// (`None`: the server-wide ones): whether there were any.
    pub fn lift_sanctions(
        &self,
        room: Option<&str>,
        nick: &str,
        action: Sanction,
    ) -> Result<bool, AccountError> {
        let action = match action {
            Sanction::Unmute | Sanction::Mute => Sanction::Mute,
            _ => Sanction::Ban,
        };
        Ok(self.store.lift_sanctions(room.unwrap_or(""), nick, action)? > 0)
    }

    /// The mutes and bans in force in `room` (`None`: the server-wide bans).
    pub fn sanctions(
        &self,
        room: Option<&str>,
        now: u64,
    ) -> Result<Vec<SanctionInfo>, AccountError> {
        self.store.sanctions(room.unwrap_or(""), now)
    }

    /// The private rooms.
    pub fn private_rooms(&self) -> Result<Vec<String>, AccountError> {
        self.store.private_rooms()
    }

    /// Whether `room` is private.
    pub fn is_private(&self, room: &str) -> Result<bool, AccountError> {
        self.store.is_private(room)
    }

    /// Makes `room` private with the accounts `members` as its members (or public again: its
    /// members and codes are forgotten), in one write.
    pub fn set_private(
        &self,
        room: &str,
        private: bool,
        members: &[String],
        now: u64,
    ) -> Result<(), AccountError> {
        let mut accounts = Vec::new();
        if private {
            for nick in members {
                accounts.extend(self.find(nick)?.map(|account| account.id));
            }
        }
        self.store.set_private(room, private, &accounts, now)
    }

    /// Whether the account `nick` is a member of the private `room`; with a good invitation
    /// `code` to it, it becomes one.
    pub fn admits(&self, room: &str, nick: &str, code: Option<&str>) -> Result<bool, AccountError> {
        let Some(account) = self.find(nick)? else { return Ok(false) };
        if self.store.is_member(room, account.id)? {
            return Ok(true);
        }
        let Some(code) = code else { return Ok(false) };
        let now = crate::outbound::now_millis();
        let invited = self.store.use_invitation(room, &token_hash(code), now)?;
        if invited {
            self.store.add_member(room, account.id)?;
        }
        Ok(invited)
    }

    /// Makes the account `nick` a member of `room`: its nick as registered, or `None` if
    /// there is no such account.
    pub fn add_member(&self, room: &str, nick: &str) -> Result<Option<String>, AccountError> {
        let Some(account) = self.find(nick)? else { return Ok(None) };
        self.store.add_member(room, account.id)?;
        Ok(Some(account.nick))
    }

    /// Takes the account `nick`'s membership of `room` away: its nick as registered if it was
    /// a member, else `None`. The room's invitation codes end too: one the member still holds
    /// would make them a member again.
    pub fn remove_member(&self, room: &str, nick: &str) -> Result<Option<String>, AccountError> {
        let Some(account) = self.find(nick)? else { return Ok(None) };
        // Codes first: one used between the two steps would make the member anew.
        self.store.revoke_invitations(room)?;
        Ok(self.store.remove_member(room, account.id)?.then_some(account.nick))
    }

    /// The nick as registered of the account that looks like `nick`, if any.
    pub fn registered_nick(&self, nick: &str) -> Result<Option<String>, AccountError> {
        Ok(self.find(nick)?.map(|account| account.nick))
    }

    /// A new invitation code to `room` (shown once, kept hashed), working until `expires` for
    /// `uses` people (`None`: any number).
    pub fn new_invitation(
        &self,
        room: &str,
        now: u64,
        expires: u64,
        uses: Option<u32>,
    ) -> Result<String, AccountError> {
        let code: String = new_token()?.chars().take(32).collect();
        let invitation = StoredInvitation { hash: token_hash(&code), expires, uses };
        self.store.add_invitation(room, &invitation, now)?;
        Ok(code)
    }

    /// Revokes every invitation code to `room` (its members stay members).
    pub fn revoke_invitations(&self, room: &str) -> Result<(), AccountError> {
        self.store.revoke_invitations(room)
    }

    /// Keeps a moderation action in the audit log.
    pub fn audit(&self, audit: &Audit, ts: u64) -> Result<(), AccountError> {
        self.store.audit(audit, ts)
    }

    /// The newest `limit` entries of the audit log, newest first: when, who, what, where, to
    /// what.
    pub fn audit_log(&self, limit: u32) -> Result<Vec<(u64, Audit)>, AccountError> {
        self.store.audit_log(limit)
    }
}

/// A new session from `now` for [`SESSION_MILLIS`]: its token (for the cookie) and what the
/// store keeps of it.
fn new_session(now: u64) -> Result<(String, StoredSession), AccountError> {
    let token = new_token()?;
    let session = StoredSession {
        hash: token_hash(&token),
        created: now,
        expires: now.saturating_add(SESSION_MILLIS),
    };
    Ok((token, session))
}

/// The accounts in the data folder's database, through a connection of their own.
pub struct SqliteAccounts {
    connection: Mutex<Connection>,
}

impl SqliteAccounts {
    fn connection(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.connection.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl AccountStore for SqliteAccounts {
    fn find(&self, likeness: &Likeness) -> Result<Option<StoredAccount>, AccountError> {
        look_alike(&self.connection(), likeness)
    }

    fn create(
        &self,
        nick: &str,
        likeness: &Likeness,
        password: &str,
        session: &StoredSession,
    ) -> Result<bool, AccountError> {
        let mut connection = self.connection();
        let transaction =
            connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        if look_alike(&transaction, likeness)?.is_some() {
            return Ok(false);
        }
        transaction.execute(
            "INSERT INTO accounts (nick, nick_key, nick_cased, password, created)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![nick, likeness.key(), likeness.cased(), password, to_sql(session.created)],
        )?;
        let account = transaction.last_insert_rowid();
        insert_session(&transaction, account, session)?;
        transaction.commit()?;
        Ok(true)
    }

    fn add_session(&self, account: i64, session: &StoredSession) -> Result<(), AccountError> {
        insert_session(&self.connection(), account, session)
    }

    fn session(&self, hash: &str, now: u64) -> Result<Option<(String, u64)>, AccountError> {
        Ok(self
            .connection()
            .prepare_cached(
                "SELECT accounts.nick, accounts.created
                 FROM sessions JOIN accounts ON accounts.id = sessions.account
                 WHERE sessions.hash = ?1 AND sessions.expires > ?2",
            )?
            .query_row(params![hash, to_sql(now)], |row| {
                Ok((row.get(0)?, u64::try_from(row.get::<_, i64>(1)?).unwrap_or(0)))
            })
            .optional()?)
    }

    fn end_session(&self, hash: &str) -> Result<bool, AccountError> {
        let deleted = self.connection().execute("DELETE FROM sessions WHERE hash = ?1", [hash])?;
        Ok(deleted > 0)
    }

    fn end_sessions(&self, account: i64) -> Result<(), AccountError> {
        self.connection().execute("DELETE FROM sessions WHERE account = ?1", [account])?;
        Ok(())
    }

    fn set_password(&self, account: i64, password: &str) -> Result<(), AccountError> {
        let mut connection = self.connection();
        let transaction =
            connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        transaction.execute(
            "UPDATE accounts SET password = ?1 WHERE id = ?2",
            params![password, account],
        )?;
        transaction.execute("DELETE FROM sessions WHERE account = ?1", [account])?;
        transaction.commit()?;
        Ok(())
    }

    fn delete(&self, account: i64) -> Result<(), AccountError> {
        self.connection().execute("DELETE FROM accounts WHERE id = ?1", [account])?;
        Ok(())
    }

    fn list(&self) -> Result<Vec<(String, u64, Vec<String>)>, AccountError> {
        let connection = self.connection();
        let mut statement = connection.prepare(
            "SELECT accounts.nick, accounts.created,
                    group_concat(CASE roles.room WHEN '' THEN '*' ELSE roles.room END
                                 || ':' || roles.role, ' ')
             FROM accounts LEFT JOIN roles ON roles.account = accounts.id
             GROUP BY accounts.id ORDER BY accounts.id",
        )?;
        let rows = statement.query_map([], |row| {
            let roles: Option<String> = row.get(2)?;
            let roles = roles.map(|r| r.split(' ').map(str::to_owned).collect());
            Ok((
                row.get(0)?,
                u64::try_from(row.get::<_, i64>(1)?).unwrap_or(0),
                roles.unwrap_or_default(),
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn role(&self, room: &str, account: i64) -> Result<Option<Role>, AccountError> {
        // A plain read (which never waits for the storage thread's writes, in WAL mode).
        let held: Option<String> = self
            .connection()
            .prepare_cached(
                "SELECT role FROM roles WHERE account = ?1 AND room IN (?2, '')
                 ORDER BY role = 'owner' DESC LIMIT 1",
            )?
            .query_row(params![account, room], |row| row.get(0))
            .optional()?;
        Ok(held.map(|role| if role == OWNER { Role::Owner } else { Role::Moderator }))
    }

    fn claim(&self, room: &str, account: i64, now: u64) -> Result<bool, AccountError> {
        let mut connection = self.connection();
        let transaction =
            connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let owned: bool = transaction
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM roles WHERE room = ?1 AND role = 'owner')",
            )?
            .query_row([room], |row| row.get(0))?;
        let claimed: u32 = transaction
            .prepare_cached("SELECT COUNT(*) FROM roles WHERE account = ?1 AND role = 'owner'")?
            .query_row([account], |row| row.get(0))?;
        if owned || claimed >= MAX_CLAIMED_ROOMS {
            return Ok(false);
        }
        transaction.execute(
            "INSERT INTO roles (room, account, role, granted) VALUES (?1, ?2, 'owner', ?3)
             ON CONFLICT (room, account) DO UPDATE SET role = 'owner'",
            params![room, account, to_sql(now)],
        )?;
        transaction.commit()?;
        Ok(true)
    }

    fn grant_moderator(&self, account: i64, room: &str, now: u64) -> Result<(), AccountError> {
        self.connection().execute(
            "INSERT INTO roles (room, account, role, granted) VALUES (?1, ?2, 'moderator', ?3)
             ON CONFLICT (room, account) DO NOTHING",
            params![room, account, to_sql(now)],
        )?;
        Ok(())
    }

    fn revoke_moderator(&self, account: i64, room: &str) -> Result<bool, AccountError> {
        let deleted = self.connection().execute(
            "DELETE FROM roles WHERE room = ?1 AND account = ?2 AND role = 'moderator'",
            params![room, account],
        )?;
        Ok(deleted > 0)
    }

    fn revoke_owner(&self, room: &str) -> Result<Option<String>, AccountError> {
        let connection = self.connection();
        let owner: Option<String> = connection
            .prepare_cached(
                "SELECT accounts.nick FROM roles JOIN accounts ON accounts.id = roles.account
                 WHERE roles.room = ?1 AND roles.role = 'owner'",
            )?
            .query_row([room], |row| row.get(0))
            .optional()?;
        connection.execute("DELETE FROM roles WHERE room = ?1 AND role = 'owner'", [room])?;
        Ok(owner)
    }

    fn sanction_until(
        &self,
        room: &str,
        subject: &str,
        action: Sanction,
        now: u64,
    ) -> Result<Option<u64>, AccountError> {
        let until: Option<i64> = self
            .connection()
            .prepare_cached(
                "SELECT MAX(until) FROM sanctions
                 WHERE room IN (?1, '') AND subject = ?2 AND action = ?3 AND until > ?4",
            )?
            .query_row(params![room, subject, sanction_name(action), to_sql(now)], |row| row.get(0))
            .optional()?
            .flatten();
        Ok(until.and_then(|until| u64::try_from(until).ok()))
    }

    fn keep_sanction(&self, record: &SanctionRecord, now: u64) -> Result<(), AccountError> {
        let connection = self.connection();
        // Those that ended go as new ones come: the table holds what is in force.
        connection.execute("DELETE FROM sanctions WHERE until <= ?1", [to_sql(now)])?;
        connection.execute(
            "INSERT INTO sanctions (room, subject, action, until, nick) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (room, subject, action) DO UPDATE
             SET nick = CASE WHEN excluded.until >= until THEN excluded.nick ELSE nick END,
                 until = max(until, excluded.until)",
            params![
                record.room,
                record.subject,
                sanction_name(record.action),
                to_sql(record.until),
                record.nick
            ],
        )?;
        Ok(())
    }

    fn lift_sanctions(
        &self,
        room: &str,
        nick: &str,
        action: Sanction,
    ) -> Result<usize, AccountError> {
        Ok(self.connection().execute(
            "DELETE FROM sanctions WHERE room = ?1 AND nick = ?2 AND action = ?3",
            params![room, nick, sanction_name(action)],
        )?)
    }

    fn sanctions(&self, room: &str, now: u64) -> Result<Vec<SanctionInfo>, AccountError> {
        let connection = self.connection();
        let mut statement = connection.prepare_cached(
            "SELECT nick, action, MAX(until) FROM sanctions
             WHERE room = ?1 AND until > ?2 AND nick <> ''
             GROUP BY nick, action ORDER BY nick, action",
        )?;
        let rows = statement.query_map(params![room, to_sql(now)], |row| {
            let action: String = row.get(1)?;
            Ok(SanctionInfo {
                nick: row.get(0)?,
                action: if action == "mute" { Sanction::Mute } else { Sanction::Ban },
                until: u64::try_from(row.get::<_, i64>(2)?).unwrap_or(0),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn private_rooms(&self) -> Result<Vec<String>, AccountError> {
        let connection = self.connection();
        let mut statement = connection.prepare("SELECT room FROM private_rooms")?;
        let rooms = statement.query_map([], |row| row.get(0))?;
        Ok(rooms.collect::<Result<_, _>>()?)
    }

    fn is_private(&self, room: &str) -> Result<bool, AccountError> {
        Ok(self
            .connection()
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM private_rooms WHERE room = ?1)")?
            .query_row([room], |row| row.get(0))?)
    }

    fn set_private(
        &self,
        room: &str,
        private: bool,
        members: &[i64],
        now: u64,
    ) -> Result<(), AccountError> {
        let mut connection = self.connection();
        let transaction =
            connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        if private {
            transaction.execute(
                "INSERT INTO private_rooms (room, since) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                params![room, to_sql(now)],
            )?;
            for account in members {
                transaction.execute(
                    "INSERT INTO room_members (room, account) VALUES (?1, ?2)
                     ON CONFLICT DO NOTHING",
                    params![room, account],
                )?;
            }
        } else {
            for table in ["private_rooms", "room_members", "invitations"] {
                transaction.execute(&format!("DELETE FROM {table} WHERE room = ?1"), [room])?;
            }
        }
        transaction.commit()?;
        Ok(())
    }

    fn is_member(&self, room: &str, account: i64) -> Result<bool, AccountError> {
        Ok(self
            .connection()
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM room_members WHERE room = ?1 AND account = ?2)",
            )?
            .query_row(params![room, account], |row| row.get(0))?)
    }

    fn add_member(&self, room: &str, account: i64) -> Result<(), AccountError> {
        self.connection().execute(
            "INSERT INTO room_members (room, account) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
            params![room, account],
        )?;
        Ok(())
    }

    fn remove_member(&self, room: &str, account: i64) -> Result<bool, AccountError> {
        let deleted = self.connection().execute(
            "DELETE FROM room_members WHERE room = ?1 AND account = ?2",
            params![room, account],
        )?;
        Ok(deleted > 0)
    }

    fn use_invitation(&self, room: &str, hash: &str, now: u64) -> Result<bool, AccountError> {
        // Codes made before they had an end or a count (schema 7) have neither.
        let used = self.connection().execute(
            "UPDATE invitations SET uses_left = uses_left - 1
             WHERE hash = ?1 AND room = ?2 AND (expires IS NULL OR expires > ?3)
               AND (uses_left IS NULL OR uses_left > 0)",
            params![hash, room, to_sql(now)],
        )?;
        Ok(used > 0)
    }

    fn add_invitation(
        &self,
        room: &str,
        invitation: &StoredInvitation,
        now: u64,
    ) -> Result<(), AccountError> {
        let mut connection = self.connection();
        let transaction =
            connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        // Two statements, so that the ended ones are found through their index.
        transaction.execute("DELETE FROM invitations WHERE expires <= ?1", [to_sql(now)])?;
        transaction.execute("DELETE FROM invitations WHERE uses_left <= 0", [])?;
        transaction.execute(
            "INSERT INTO invitations (hash, room, created, expires, uses_left)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                invitation.hash,
                room,
                to_sql(now),
                to_sql(invitation.expires),
                invitation.uses
            ],
        )?;
        // Past the most a room keeps, the others that would end soonest go (codes from before
        // they had an end, last); never the one just made.
        transaction.execute(
            "DELETE FROM invitations WHERE room = ?1 AND hash <> ?3 AND hash NOT IN (
                 SELECT hash FROM invitations WHERE room = ?1 AND hash <> ?3
                 ORDER BY coalesce(expires, 9223372036854775807) DESC LIMIT ?2)",
            params![room, i64::try_from(MAX_INVITATIONS - 1).unwrap_or(i64::MAX), invitation.hash],
        )?;
        transaction.commit()?;
        Ok(())
    }

    fn revoke_invitations(&self, room: &str) -> Result<(), AccountError> {
        self.connection().execute("DELETE FROM invitations WHERE room = ?1", [room])?;
        Ok(())
    }

    fn audit(&self, audit: &Audit, ts: u64) -> Result<(), AccountError> {
        let connection = self.connection();
        connection.execute(
            "INSERT INTO audit (ts, actor, action, room, subject) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![to_sql(ts), audit.actor, audit.action, audit.room, audit.subject],
        )?;
        // Ids only grow: the newest AUDIT_KEPT are the last ids (a range of the primary key).
        connection.execute(
            "DELETE FROM audit WHERE id <= last_insert_rowid() - ?1",
            [i64::from(AUDIT_KEPT)],
        )?;
        Ok(())
    }

    fn audit_log(&self, limit: u32) -> Result<Vec<(u64, Audit)>, AccountError> {
        let connection = self.connection();
        let mut statement = connection.prepare(
            "SELECT ts, actor, action, room, subject FROM audit ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = statement.query_map([limit], |row| {
            let action: String = row.get(2)?;
            Ok((
                u64::try_from(row.get::<_, i64>(0)?).unwrap_or(0),
                Audit {
                    actor: row.get(1)?,
                    action: audit_action(&action),
                    room: row.get(3)?,
                    subject: row.get(4)?,
                },
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn close(&self) {
        match Connection::open_in_memory() {
            Ok(empty) => drop(std::mem::replace(&mut *self.connection(), empty)),
            Err(error) => tracing::warn!(%error, "the accounts' connection stays open"),
        }
    }
}

/// Keeps `session` of `account`; expired sessions of every account are deleted on the way.
fn insert_session(
    connection: &Connection,
    account: i64,
    session: &StoredSession,
) -> Result<(), AccountError> {
    connection.execute("DELETE FROM sessions WHERE expires <= ?1", [to_sql(session.created)])?;
    connection.execute(
        "INSERT INTO sessions (hash, account, created, expires) VALUES (?1, ?2, ?3, ?4)",
        params![session.hash, account, to_sql(session.created), to_sql(session.expires)],
    )?;
    connection.execute(
        "DELETE FROM sessions WHERE account = ?1 AND hash NOT IN (
             SELECT hash FROM sessions WHERE account = ?1 ORDER BY expires DESC LIMIT ?2)",
        params![account, i64::try_from(MAX_SESSIONS).unwrap_or(i64::MAX)],
    )?;
    Ok(())
}

/// The registered account that looks like `likeness`.
fn look_alike(
    connection: &Connection,
    likeness: &Likeness,
) -> Result<Option<StoredAccount>, AccountError> {
    Ok(connection
        .prepare_cached(
            "SELECT id, nick, password, created FROM accounts
             WHERE nick_key IN (?1, ?2) OR nick_cased IN (?1, ?2) LIMIT 1",
        )?
        .query_row([likeness.key(), likeness.cased()], |row| {
            Ok(StoredAccount {
                id: row.get(0)?,
                nick: row.get(1)?,
                password: row.get(2)?,
                created: u64::try_from(row.get::<_, i64>(3)?).unwrap_or(0),
            })
        })
        .optional()?)
}

fn check_password(password: &str) -> Result<(), AccountError> {
    if password.chars().count() < MIN_PASSWORD_CHARS || password.len() > MAX_PASSWORD_BYTES {
        return Err(AccountError::WeakPassword);
    }
    Ok(())
}

/// A salt: 16 random bytes from the OS.
fn new_salt() -> Result<SaltString, AccountError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)
        .map_err(|error| AccountError::Store(StoreError::Random(error.to_string())))?;
    SaltString::encode_b64(&bytes).map_err(|error| AccountError::Hash(error.to_string()))
}

/// A session token: 32 random bytes from the OS, in hex.
fn new_token() -> Result<String, AccountError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|error| AccountError::Store(StoreError::Random(error.to_string())))?;
    Ok(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
}

/// What the database keeps of a token: its SHA-256, in hex (a stolen database opens no
/// session).
pub(crate) fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes()).iter().map(|byte| format!("{byte:02x}")).collect()
}

fn to_sql(millis: u64) -> i64 {
    i64::try_from(millis).unwrap_or(i64::MAX)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A password that passes the rules.
    pub const PASSWORD: &str = "correct horse battery";

    fn accounts() -> Accounts {
        let mut connection = Connection::open_in_memory().expect("in memory");
        crate::db::migrate_for_tests(&mut connection).expect("migrated");
        Accounts::with(connection).expect("accounts")
    }

    /// What every store must keep, run over the database here and over Redis in
    /// redis_accounts.rs: registering and look-alikes, sessions, roles, bans, private rooms,
    /// deletion and the audit log. Times are real and spans long: Redis lets keys expire by
    /// the clock, and a run takes seconds.
    pub fn contract(accounts: &Accounts) {
        let now = crate::outbound::now_millis();
        // Registering, look-alikes, logging in.
        let registered = accounts.register("Alice", PASSWORD, now).expect("registered");
        assert_eq!(accounts.session(&registered.token, now).expect("read"), Some("Alice".into()));
        for look_alike in ["ALICE", "aIice", "аlice"] {
            let again = accounts.register(look_alike, "another good password", now);
            assert!(matches!(again, Err(AccountError::Taken)), "{look_alike}");
        }
        assert!(accounts.is_registered(&Likeness::of("ALICE")).expect("read"));
        let first = accounts.log_in("alice", PASSWORD, now).expect("logged in");
        assert_eq!(first.nick, "Alice", "the nick as registered");
        assert_ne!(first.token, registered.token, "a new session every login");
        assert_eq!(
            accounts.session_account(&first.token, now + 1).expect("read"),
            Some(("Alice".into(), now))
        );
        assert_eq!(accounts.session(&first.token, now + SESSION_MILLIS).expect("read"), None);
        assert!(matches!(
            accounts.log_in("Alice", "wrong horse battery", now),
            Err(AccountError::WrongPassword)
        ));
        assert!(matches!(
            accounts.log_in("nobody", PASSWORD, now),
            Err(AccountError::WrongPassword)
        ));
        // An account keeps its newest sessions: logging in without end cannot grow it.
        let oldest = accounts.log_in("alice", PASSWORD, now).expect("logged in");
        for n in 0..MAX_SESSIONS {
            let (_, session) = new_session(now + 1 + n as u64).expect("made");
            let alice = accounts.find("alice").expect("read").expect("alice").id;
            accounts.store.add_session(alice, &session).expect("kept");
        }
        assert_eq!(
            accounts.session(&oldest.token, now + 1).expect("read"),
            None,
            "the oldest went"
        );
        assert_eq!(accounts.session(&first.token, now + 1).expect("read"), None, "so did this");
        let kept = accounts.log_in("alice", PASSWORD, now + 200).expect("logged in");
        let first = accounts.log_in("alice", PASSWORD, now + 201).expect("logged in");
        assert!(accounts.log_out(&first.token).expect("logged out"));
        assert!(!accounts.log_out(&first.token).expect("once"));
        assert_eq!(accounts.session(&first.token, now).expect("read"), None);
        assert_eq!(accounts.session(&kept.token, now).expect("read"), Some("Alice".into()));

        // Roles: the first claim owns a room, moderators by room and everywhere.
        accounts.register("bob", PASSWORD, now).expect("registered");
        assert_eq!(accounts.role("r1", "alice", false).expect("read"), None, "no claim");
        assert_eq!(accounts.role("r1", "alice", true).expect("read"), Some(Role::Owner));
        assert_eq!(accounts.role("r1", "bob", true).expect("read"), None, "owned already");
        assert_eq!(accounts.role("r2", "ALICE", false).expect("read"), None);
        assert_eq!(
            accounts.grant_moderator("BOB", Some("r2"), now).expect("granted"),
            Some("bob".into())
        );
        assert_eq!(accounts.grant_moderator("nobody", None, now).expect("read"), None);
        assert_eq!(accounts.role("r2", "bob", false).expect("read"), Some(Role::Moderator));
        assert_eq!(accounts.role("r1", "bob", false).expect("read"), None);
        accounts.grant_moderator("bob", None, now).expect("granted");
        assert_eq!(accounts.role("r1", "bob", false).expect("read"), Some(Role::Moderator));
        let listed = accounts.list().expect("listed");
        let names: Vec<&str> = listed.iter().map(|(nick, _, _)| nick.as_str()).collect();
        assert_eq!(names, ["Alice", "bob"], "oldest first");
        let mut roles = listed[1].2.clone();
        roles.sort();
        assert_eq!(roles, ["*:moderator", "r2:moderator"]);
        assert_eq!(listed[0].2, ["r1:owner"]);
        assert_eq!(accounts.revoke_moderator("BOB", None).expect("revoked"), Some("bob".into()));
        assert_eq!(accounts.revoke_moderator("bob", None).expect("once"), None);
        assert_eq!(accounts.role("r1", "bob", false).expect("read"), None);
        assert_eq!(accounts.revoke_owner("r1").expect("revoked"), Some("Alice".into()));
        assert_eq!(accounts.revoke_owner("r1").expect("revoked"), None);
        assert_eq!(accounts.role("r1", "bob", true).expect("read"), Some(Role::Owner));

        // Mutes and bans: by room, everywhere, until when.
        let ban = |room: &str, until| SanctionRecord {
            room: room.into(),
            subject: "id:bob".into(),
            action: Sanction::Ban,
            until,
            nick: "bob".into(),
        };
        accounts.keep_sanction(&ban("r1", now + 3_600_000)).expect("kept");
        let until =
            |room| accounts.sanction_until(room, "id:bob", Sanction::Ban, now).expect("read");
        assert_eq!(until("r1"), Some(now + 3_600_000));
        assert_eq!(until("r2"), None);
        let muted = accounts.sanction_until("r1", "id:bob", Sanction::Mute, now).expect("read");
        assert_eq!(muted, None, "a ban is not a mute");
        accounts.keep_sanction(&ban("r1", now + 1_800_000)).expect("kept");
        assert_eq!(until("r1"), Some(now + 3_600_000), "a shorter one does not shorten it");
        let later = accounts.sanction_until("r1", "id:bob", Sanction::Ban, now + 3_600_000);
        assert_eq!(later.expect("read"), None, "ended");
        // Listed by nick and kind, and lifted by nick: every subject held for it (its
        // identity and its addresses) goes.
        let address =
            SanctionRecord { subject: "addr:10.0.0.9".into(), ..ban("r1", now + 1_200_000) };
        accounts.keep_sanction(&address).expect("kept");
        let gus = SanctionRecord {
            subject: "addr:10.0.0.7".into(),
            action: Sanction::Mute,
            nick: "gus".into(),
            ..ban("r1", now + 600_000)
        };
        accounts.keep_sanction(&gus).expect("kept");
        let listed: Vec<(String, Sanction, u64)> = accounts
            .sanctions(Some("r1"), now)
            .expect("read")
            .into_iter()
            .map(|held| (held.nick, held.action, held.until))
            .collect();
        assert_eq!(
            listed,
            [
                ("bob".into(), Sanction::Ban, now + 3_600_000),
                ("gus".into(), Sanction::Mute, now + 600_000)
            ]
        );
        assert!(accounts.sanctions(Some("r2"), now).expect("read").is_empty());
        assert!(!accounts.lift_sanctions(Some("r1"), "bob", Sanction::Unmute).expect("lifted"));
        assert!(accounts.lift_sanctions(Some("r1"), "bob", Sanction::Unban).expect("lifted"));
        assert_eq!(until("r1"), None);
        let by_address = accounts.sanction_until("r1", "addr:10.0.0.9", Sanction::Ban, now);
        assert_eq!(by_address.expect("read"), None, "its address too");
        assert!(!accounts.lift_sanctions(Some("r1"), "bob", Sanction::Unban).expect("once"));
        assert_eq!(accounts.sanctions(Some("r1"), now).expect("read").len(), 1, "gus's mute");
        // A subject banned for one nick, then longer for another, is the other's: lifting the
        // first nick's bans leaves it held.
        let hal = SanctionRecord {
            subject: "addr:10.0.0.8".into(),
            nick: "hal".into(),
            ..ban("r1", now + 300_000)
        };
        accounts.keep_sanction(&hal).expect("kept");
        let longer = SanctionRecord { nick: "ivo".into(), until: now + 900_000, ..hal.clone() };
        accounts.keep_sanction(&longer).expect("kept");
        assert!(!accounts.lift_sanctions(Some("r1"), "hal", Sanction::Unban).expect("lifted"));
        let held = accounts.sanction_until("r1", "addr:10.0.0.8", Sanction::Ban, now);
        assert_eq!(held.expect("read"), Some(now + 900_000), "ivo's holds");
        let listed: Vec<String> = accounts
            .sanctions(Some("r1"), now)
            .expect("read")
            .into_iter()
            .map(|s| s.nick)
            .collect();
        assert_eq!(listed, ["gus", "ivo"]);
        assert!(accounts.lift_sanctions(Some("r1"), "ivo", Sanction::Unban).expect("lifted"));
        let bob = accounts.log_in("bob", PASSWORD, now).expect("logged in");
        assert_eq!(
            accounts.ban_everywhere("Bob", now + 7_200_000).expect("banned"),
            Some("bob".into())
        );
        assert_eq!(until("r2"), Some(now + 7_200_000), "every room");
        assert_eq!(accounts.session(&bob.token, now).expect("read"), None, "sessions ended");
        assert_eq!(accounts.sanctions(None, now).expect("read").len(), 1, "listed everywhere");
        assert!(accounts.lift_sanctions(None, "bob", Sanction::Unban).expect("lifted"));
        assert_eq!(until("r2"), None, "lifted everywhere");

        // Private rooms: members, invitation codes, public again.
        accounts.register("cy", PASSWORD, now).expect("registered");
        accounts.set_private("p", true, &["alice".into(), "nobody".into()], now).expect("set");
        assert!(accounts.is_private("p").expect("read"));
        assert_eq!(accounts.private_rooms().expect("read"), ["p"]);
        assert!(accounts.admits("p", "Alice", None).expect("read"));
        assert!(!accounts.admits("p", "cy", None).expect("read"));
        let week = now + 7 * 86_400_000;
        let code = accounts.new_invitation("p", now, week, None).expect("made");
        assert!(!accounts.admits("q", "cy", Some(&code)).expect("read"), "another room's");
        assert!(!accounts.admits("p", "cy", Some("not a code")).expect("read"));
        assert!(accounts.admits("p", "cy", Some(&code)).expect("read"));
        assert!(accounts.admits("p", "cy", None).expect("read"), "a member for good");
        let held = accounts.new_invitation("p", now, week, None).expect("made");
        assert_eq!(accounts.remove_member("p", "CY").expect("removed"), Some("cy".into()));
        assert!(!accounts.admits("p", "cy", Some(&held)).expect("read"), "codes end with it");
        assert_eq!(accounts.remove_member("p", "cy").expect("removed"), None);
        assert!(!accounts.admits("p", "cy", None).expect("read"));
        accounts.revoke_invitations("p").expect("revoked");
        assert!(!accounts.admits("p", "cy", Some(&code)).expect("read"), "revoked");
        assert_eq!(accounts.add_member("p", "cy").expect("added"), Some("cy".into()));
        assert!(accounts.admits("p", "cy", None).expect("read"));
        // Codes end, and admit as many people as they were made for.
        accounts.register("dee", PASSWORD, now).expect("registered");
        accounts.register("eve", PASSWORD, now).expect("registered");
        let once = accounts.new_invitation("p", now, week, Some(1)).expect("made");
        assert!(accounts.admits("p", "dee", Some(&once)).expect("read"));
        assert!(!accounts.admits("p", "eve", Some(&once)).expect("read"), "used up");
        let ended = accounts.new_invitation("p", now, now - 1, None).expect("made");
        assert!(!accounts.admits("p", "eve", Some(&ended)).expect("read"), "expired");
        // A room keeps the newest codes working, so many made cannot grow without end.
        let first = accounts.new_invitation("p", now, week, None).expect("made");
        for n in 0..MAX_INVITATIONS {
            accounts.new_invitation("p", now, week + 1 + n as u64, None).expect("made");
        }
        assert!(!accounts.admits("p", "eve", Some(&first)).expect("read"), "the oldest went");
        let short = accounts.new_invitation("p", now, now + 3_600_000, None).expect("made");
        assert!(accounts.admits("p", "eve", Some(&short)).expect("read"), "never the new one");
        // Codes end with their makers' roles in the room.
        accounts.grant_moderator("dee", Some("p"), now).expect("granted");
        let made = accounts.new_invitation("p", now, week, None).expect("made");
        assert_eq!(
            accounts.revoke_moderator("dee", Some("p")).expect("revoked"),
            Some("dee".into())
        );
        accounts.register("fay", PASSWORD, now).expect("registered");
        assert!(!accounts.admits("p", "fay", Some(&made)).expect("read"), "ended with the role");
        let code = accounts.new_invitation("p", now, week, None).expect("made");
        accounts.set_private("p", false, &[], now).expect("public");
        assert!(!accounts.is_private("p").expect("read"));
        accounts.set_private("p", true, &[], now).expect("private again");
        assert!(!accounts.admits("p", "cy", None).expect("read"), "members forgotten");
        assert!(!accounts.admits("p", "bob", Some(&code)).expect("read"), "codes forgotten");

        // A password reset ends the sessions; a deleted account frees its nick.
        let cy = accounts.log_in("cy", PASSWORD, now).expect("logged in");
        assert_eq!(
            accounts.reset_password("cy", "a new good password").expect("reset"),
            Some("cy".into())
        );
        assert_eq!(accounts.session(&cy.token, now).expect("read"), None);
        assert!(matches!(accounts.log_in("cy", PASSWORD, now), Err(AccountError::WrongPassword)));
        let cy = accounts.log_in("cy", "a new good password", now).expect("logged in");
        accounts.grant_moderator("cy", Some("r3"), now).expect("granted");
        assert_eq!(accounts.role("r4", "cy", true).expect("read"), Some(Role::Owner));
        assert_eq!(accounts.delete("CY").expect("deleted"), Some("cy".into()));
        assert_eq!(accounts.delete("cy").expect("deleted"), None);
        assert_eq!(accounts.session(&cy.token, now).expect("read"), None);
        assert!(!accounts.is_registered(&Likeness::of("cy")).expect("read"));
        accounts.register("cy", PASSWORD, now).expect("free again");
        assert_eq!(accounts.role("r3", "cy", false).expect("read"), None, "roles went");
        assert_eq!(accounts.role("r4", "cy", false).expect("read"), None);
        assert_eq!(accounts.role("r4", "alice", true).expect("read"), Some(Role::Owner));
        assert!(!accounts.admits("p", "cy", None).expect("read"));

        // The audit log, newest first.
        for (n, action) in ["kick", "ban", "delete-account"].into_iter().enumerate() {
            let audit = Audit {
                actor: "alice".into(),
                action,
                room: "r1".into(),
                subject: format!("bob {n}"),
            };
            accounts.audit(&audit, now + n as u64).expect("kept");
        }
        let log = accounts.audit_log(2).expect("read");
        let read: Vec<(u64, &str, &str)> =
            log.iter().map(|(ts, a)| (*ts - now, a.action, a.subject.as_str())).collect();
        assert_eq!(read, [(2, "delete-account", "bob 2"), (1, "ban", "bob 1")]);

        // An account claims at most MAX_CLAIMED_ROOMS rooms; past them, rooms stay unowned.
        accounts.register("walker", PASSWORD, now).expect("registered");
        for n in 0..MAX_CLAIMED_ROOMS {
            let role = accounts.role(&format!("walk-{n}"), "walker", true).expect("read");
            assert_eq!(role, Some(Role::Owner), "room {n}");
        }
        assert_eq!(accounts.role("walk-past", "walker", true).expect("read"), None, "past it");
        // A room taken away gives its claim back (the role entry goes with the owner).
        assert_eq!(accounts.revoke_owner("walk-0").expect("revoked"), Some("walker".into()));
        assert_eq!(
            accounts.role("walk-one-more", "walker", true).expect("read"),
            Some(Role::Owner)
        );
        accounts.register("carl", PASSWORD, now).expect("registered");
        assert_eq!(accounts.role("walk-past", "carl", true).expect("read"), Some(Role::Owner));
    }

    #[test]
    fn the_database_keeps_the_contract() {
        contract(&accounts());
    }

    /// The database keeps the newest AUDIT_KEPT entries of the audit log, as Redis does: a log
    /// written for years (or by a flood of actions) does not grow without end.
    #[test]
    fn the_audit_log_keeps_its_newest_entries() {
        let mut connection = Connection::open_in_memory().expect("in memory");
        crate::db::migrate_for_tests(&mut connection).expect("migrated");
        connection
            .execute(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
                 INSERT INTO audit (ts, actor, action, room, subject)
                 SELECT i, 'mo', 'kick', 'r', 'x' FROM n",
                [i64::from(AUDIT_KEPT) - 1],
            )
            .expect("filled");
        let store = SqliteAccounts { connection: Mutex::new(connection) };
        let entry =
            Audit { actor: "mo".into(), action: "ban", room: "r".into(), subject: "troll".into() };
        for ts in [200_000, 200_001, 200_002] {
            store.audit(&entry, ts).expect("written");
        }
        let (count, oldest): (i64, i64) = store
            .connection()
            .query_row("SELECT COUNT(*), MIN(ts) FROM audit", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("counted");
        assert_eq!((count, oldest), (i64::from(AUDIT_KEPT), 3), "the two oldest went");
        assert_eq!(store.audit_log(1).expect("read")[0].0, 200_002);
    }

    /// The store is given a token's hash, never the token.
    #[test]
    fn sessions_are_kept_hashed() {
        let (token, session) = new_session(5).expect("made");
        assert_eq!(session.hash, token_hash(&token));
        assert_ne!(session.hash, token);
        assert_eq!((session.created, session.expires), (5, 5 + SESSION_MILLIS));
    }

    /// The password rules hold before anything is stored.
    #[test]
    fn weak_passwords_and_guest_nicks_are_refused() {
        let accounts = accounts();
        assert!(matches!(accounts.register("bob", "short", 2), Err(AccountError::WeakPassword)));
        assert!(matches!(accounts.register("Guest-7", PASSWORD, 2), Err(AccountError::GuestNick)));
        // An account named like a token's identity would be taken for one (its role never
        // read again, no configure).
        assert!(matches!(accounts.register("Token:7", PASSWORD, 2), Err(AccountError::GuestNick)));
        let huge = "x".repeat(MAX_PASSWORD_BYTES + 1);
        assert!(matches!(accounts.register("bob", &huge, 2), Err(AccountError::WeakPassword)));
        assert!(matches!(accounts.log_in("bob", &huge, 2), Err(AccountError::WrongPassword)));
        assert!(!accounts.is_registered(&Likeness::of("bob")).expect("read"));
    }
}
