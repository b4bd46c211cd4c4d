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

use protocol::{Role, Sanction};

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

fn sanction_name(action: Sanction) -> &'static str {
    match action {
        Sanction::Kick => "kick",
        Sanction::Mute => "mute",
        Sanction::Ban => "ban",
    }
}

/// A mute or ban of `subject` (an identity, or a guest's address) in `room` until `until`
/// (Unix ms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SanctionRecord {
    pub room: String,
    pub subject: String,
    pub action: Sanction,
    pub until: u64,
}

/// How the roles table names a room's owner.
const OWNER: &str = "owner";

/// The actions the audit log holds, as `Audit` names them.
const AUDIT_ACTIONS: &[&str] = &[
    "delete",
    "kick",
    "mute",
    "ban",
    "grant-moderator",
    "revoke-moderator",
    "revoke-owner",
    "private",
    "public",
    "add-member",
    "delete-account",
    "reset-password",
];

fn audit_action(stored: &str) -> &'static str {
    AUDIT_ACTIONS.iter().find(|action| **action == stored).copied().unwrap_or("other")
}

/// Argon2id's memory in KiB, passes and lanes (see the module's note).
const ARGON2_MEMORY_KIB: u32 = 19 * 1024;
const ARGON2_PASSES: u32 = 2;
const ARGON2_LANES: u32 = 1;

/// Passwords are at least this long, in characters, and at most [`MAX_PASSWORD_BYTES`].
pub const MIN_PASSWORD_CHARS: usize = 10;
/// Longer passwords are refused rather than hashed (a hash's cost grows with its input).
pub const MAX_PASSWORD_BYTES: usize = 1024;
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
    #[error("nicks starting with `guest-` are the server's names for guests")]
    GuestNick,
    #[error("wrong nick or password")]
    WrongPassword,
    #[error("the password could not be hashed: {0}")]
    Hash(String),
    #[error(transparent)]
    Store(#[from] StoreError),
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

/// The accounts in the data folder's database.
pub struct Accounts {
    connection: Mutex<Connection>,
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
        let params = Params::new(ARGON2_MEMORY_KIB, ARGON2_PASSES, ARGON2_LANES, None)
            .map_err(|error| StoreError::Random(error.to_string()))?;
        let hasher = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        Ok(Accounts { connection: Mutex::new(connection), hasher })
    }

    /// `password`'s Argon2id hash with a new salt, in the PHC string format. Slow.
    fn hash(&self, password: &str) -> Result<String, AccountError> {
        let salt = new_salt()?;
        let hash = self.hasher.hash_password(password.as_bytes(), &salt);
        Ok(hash.map_err(|error| AccountError::Hash(error.to_string()))?.to_string())
    }

    /// Lets go of the database file (at shutdown, before the store closes it, so that the
    /// store's is the last connection and its write-ahead log is folded into the file): rooms
    /// that still hold the accounts get errors from an empty database after this.
    pub fn close(&self) {
        match Connection::open_in_memory() {
            Ok(empty) => drop(std::mem::replace(&mut *self.connection(), empty)),
            Err(error) => tracing::warn!(%error, "the accounts' connection stays open"),
        }
    }

    fn connection(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.connection.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers `nick` (checked by the caller against the protocol's rules) with `password`,
    /// unless a registered nick looks like it, and logs it in. Slow: run it on a blocking
    /// thread.
    pub fn register(&self, nick: &str, password: &str, now: u64) -> Result<Session, AccountError> {
        check_password(password)?;
        if nick.to_lowercase().starts_with("guest-") {
            return Err(AccountError::GuestNick);
        }
        let likeness = Likeness::of(nick);
        if self.is_registered(&likeness)? {
            return Err(AccountError::Taken);
        }
        let hash = self.hash(password)?;
        // Checked again inside one write transaction: another registration of a look-alike
        // may have come between the first check and the (slow) hash.
        let mut connection = self.connection();
        let transaction =
            connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        if look_alike(&transaction, &likeness)?.is_some() {
            return Err(AccountError::Taken);
        }
        transaction.execute(
            "INSERT INTO accounts (nick, nick_key, nick_cased, password, created)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![nick, likeness.key(), likeness.cased(), hash, to_sql(now)],
        )?;
        let account = transaction.last_insert_rowid();
        let session = start_session(&transaction, account, nick, now)?;
        transaction.commit()?;
        Ok(session)
    }

    /// Whether a registered nick looks like `likeness` (under either of its forms).
    pub fn is_registered(&self, likeness: &Likeness) -> Result<bool, AccountError> {
        Ok(look_alike(&self.connection(), likeness)?.is_some())
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
        let likeness = Likeness::of(nick);
        let found = look_alike(&self.connection(), &likeness)?;
        let Some((account, registered, stored)) = found else {
            // As long as a real check takes.
            if let Ok(salt) = new_salt() {
                let _ = self.hasher.hash_password(password.as_bytes(), &salt);
            }
            return Err(AccountError::WrongPassword);
        };
        let parsed =
            PasswordHash::new(&stored).map_err(|error| AccountError::Hash(error.to_string()))?;
        if self.hasher.verify_password(password.as_bytes(), &parsed).is_err() {
            return Err(AccountError::WrongPassword);
        }
        start_session(&self.connection(), account, &registered, now)
    }

    /// The nick of the account whose unexpired session `token` is.
    pub fn session(&self, token: &str, now: u64) -> Result<Option<String>, AccountError> {
        Ok(self.session_account(token, now)?.map(|(nick, _)| nick))
    }

    /// The role of the account `nick` (as registered) in `room`: owner, or moderator of the
    /// room or of the whole server. With `claim` (the room has no messages) and no owner yet,
    /// the account becomes the room's owner.
    pub fn role(&self, room: &str, nick: &str, claim: bool) -> Result<Option<Role>, AccountError> {
        let held = |connection: &Connection| -> Result<(i64, Option<Role>), AccountError> {
            let Some((account, _, _)) = look_alike(connection, &Likeness::of(nick))? else {
                return Ok((0, None));
            };
            let held: Option<String> = connection
                .prepare_cached(
                    "SELECT role FROM roles WHERE account = ?1 AND room IN (?2, '')
                     ORDER BY role = 'owner' DESC LIMIT 1",
                )?
                .query_row(params![account, room], |row| row.get(0))
                .optional()?;
            let role = held.map(|role| if role == OWNER { Role::Owner } else { Role::Moderator });
            Ok((account, role))
        };
        // A plain read (which never waits for the storage thread's writes, in WAL mode): a
        // write only to claim a room that never had a message.
        let (account, role) = held(&self.connection())?;
        if role.is_some() || !claim || account == 0 {
            return Ok(role);
        }
        let mut connection = self.connection();
        let transaction =
            connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let owned: bool = transaction
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM roles WHERE room = ?1 AND role = 'owner')",
            )?
            .query_row([room], |row| row.get(0))?;
        if owned {
            return Ok(None);
        }
        transaction.execute(
            "INSERT INTO roles (room, account, role, granted) VALUES (?1, ?2, 'owner', ?3)",
            params![room, account, to_sql(crate::outbound::now_millis())],
        )?;
        transaction.commit()?;
        Ok(Some(Role::Owner))
    }

    /// Makes the account `nick` (or a look-alike) a moderator of `room` (`None`: of every
    /// room); its nick as registered, or `None` if there is no such account.
    pub fn grant_moderator(
        &self,
        nick: &str,
        room: Option<&str>,
        now: u64,
    ) -> Result<Option<String>, AccountError> {
        let connection = self.connection();
        let Some((account, registered, _)) = look_alike(&connection, &Likeness::of(nick))? else {
            return Ok(None);
        };
        connection.execute(
            "INSERT INTO roles (room, account, role, granted) VALUES (?1, ?2, 'moderator', ?3)
             ON CONFLICT (room, account) DO NOTHING",
            params![room.unwrap_or(""), account, to_sql(now)],
        )?;
        Ok(Some(registered))
    }

    /// Bans the account `nick` (or a look-alike) from every room until `until`: its nick as
    /// registered, or `None` if there is no such account. Its sessions end too, so its open
    /// connections close within the session check interval.
    pub fn ban_everywhere(&self, nick: &str, until: u64) -> Result<Option<String>, AccountError> {
        let connection = self.connection();
        let Some((account, registered, _)) = look_alike(&connection, &Likeness::of(nick))? else {
            return Ok(None);
        };
        connection.execute(
            "INSERT INTO sanctions (room, subject, action, until) VALUES ('', ?1, 'ban', ?2)
             ON CONFLICT (room, subject, action) DO UPDATE SET until = excluded.until",
            params![format!("id:{registered}"), to_sql(until)],
        )?;
        connection.execute("DELETE FROM sessions WHERE account = ?1", [account])?;
        Ok(Some(registered))
    }

    /// Takes `room`'s owner away (an operator's call: the first signed-in joiner of a new
    /// room owns it); the owner's nick, if there was one.
    pub fn revoke_owner(&self, room: &str) -> Result<Option<String>, AccountError> {
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

    /// Takes the account's moderator role in `room` (`None`: the server-wide one) away;
    /// whether it had it.
    pub fn revoke_moderator(&self, nick: &str, room: Option<&str>) -> Result<bool, AccountError> {
        let connection = self.connection();
        let Some((account, _, _)) = look_alike(&connection, &Likeness::of(nick))? else {
            return Ok(false);
        };
        let deleted = connection.execute(
            "DELETE FROM roles WHERE room = ?1 AND account = ?2 AND role = 'moderator'",
            params![room.unwrap_or(""), account],
        )?;
        Ok(deleted > 0)
    }

    /// Every account: nick, when registered, and its roles as `room:role` (`*` for the whole
    /// server), oldest first.
    pub fn list(&self) -> Result<Vec<(String, u64, Vec<String>)>, AccountError> {
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

    /// Deletes the account `nick` (its sessions and roles go with it; its messages stay, and
    /// its nick is free again); its nick as registered, or `None` if there was none.
    pub fn delete(&self, nick: &str) -> Result<Option<String>, AccountError> {
        let connection = self.connection();
        let Some((account, registered, _)) = look_alike(&connection, &Likeness::of(nick))? else {
            return Ok(None);
        };
        connection.execute("DELETE FROM accounts WHERE id = ?1", [account])?;
        Ok(Some(registered))
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
        let mut connection = self.connection();
        let transaction =
            connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let Some((account, registered, _)) = look_alike(&transaction, &Likeness::of(nick))? else {
            return Ok(None);
        };
        transaction
            .execute("UPDATE accounts SET password = ?1 WHERE id = ?2", params![hash, account])?;
        transaction.execute("DELETE FROM sessions WHERE account = ?1", [account])?;
        transaction.commit()?;
        Ok(Some(registered))
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

    /// Keeps a mute or ban (replacing an earlier one of the same kind).
    pub fn keep_sanction(&self, record: &SanctionRecord) -> Result<(), AccountError> {
        let connection = self.connection();
        // Those that ended go as new ones come: the table holds what is in force.
        connection.execute(
            "DELETE FROM sanctions WHERE until <= ?1",
            [to_sql(crate::outbound::now_millis())],
        )?;
        connection.execute(
            "INSERT INTO sanctions (room, subject, action, until) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (room, subject, action) DO UPDATE SET until = excluded.until",
            params![
                record.room,
                record.subject,
                sanction_name(record.action),
                to_sql(record.until)
            ],
        )?;
        Ok(())
    }

    /// The private rooms.
    pub fn private_rooms(&self) -> Result<Vec<String>, AccountError> {
        let connection = self.connection();
        let mut statement = connection.prepare("SELECT room FROM private_rooms")?;
        let rooms = statement.query_map([], |row| row.get(0))?;
        Ok(rooms.collect::<Result<_, _>>()?)
    }

    /// Whether `room` is private.
    pub fn is_private(&self, room: &str) -> Result<bool, AccountError> {
        Ok(self
            .connection()
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM private_rooms WHERE room = ?1)")?
            .query_row([room], |row| row.get(0))?)
    }

    /// Makes `room` private with the accounts `members` as its members (or public again: its
    /// members and codes are forgotten), in one transaction.
    pub fn set_private(
        &self,
        room: &str,
        private: bool,
        members: &[String],
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
            for nick in members {
                if let Some((account, _, _)) = look_alike(&transaction, &Likeness::of(nick))? {
                    transaction.execute(
                        "INSERT INTO room_members (room, account) VALUES (?1, ?2)
                         ON CONFLICT DO NOTHING",
                        params![room, account],
                    )?;
                }
            }
        } else {
            for table in ["private_rooms", "room_members", "invitations"] {
                transaction.execute(&format!("DELETE FROM {table} WHERE room = ?1"), [room])?;
            }
        }
        transaction.commit()?;
        Ok(())
    }

    /// Whether the account `nick` is a member of the private `room`; with a good invitation
    /// `code` to it, it becomes one.
    pub fn admits(&self, room: &str, nick: &str, code: Option<&str>) -> Result<bool, AccountError> {
        let connection = self.connection();
        let Some((account, _, _)) = look_alike(&connection, &Likeness::of(nick))? else {
            return Ok(false);
        };
        let member: bool = connection
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM room_members WHERE room = ?1 AND account = ?2)",
            )?
            .query_row(params![room, account], |row| row.get(0))?;
        if member {
            return Ok(true);
        }
        let Some(code) = code else { return Ok(false) };
        let invited: bool = connection
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM invitations WHERE hash = ?1 AND room = ?2)",
            )?
            .query_row(params![token_hash(code), room], |row| row.get(0))?;
        if invited {
            connection.execute(
                "INSERT INTO room_members (room, account) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                params![room, account],
            )?;
        }
        Ok(invited)
    }

    /// Makes the account `nick` a member of `room`: its nick as registered, or `None` if
    /// there is no such account.
    pub fn add_member(&self, room: &str, nick: &str) -> Result<Option<String>, AccountError> {
        let connection = self.connection();
        let Some((account, registered, _)) = look_alike(&connection, &Likeness::of(nick))? else {
            return Ok(None);
        };
        connection.execute(
            "INSERT INTO room_members (room, account) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
            params![room, account],
        )?;
        Ok(Some(registered))
    }

    /// A new invitation code to `room` (shown once, kept hashed).
    pub fn new_invitation(&self, room: &str, now: u64) -> Result<String, AccountError> {
        let code: String = new_token()?.chars().take(32).collect();
        self.connection().execute(
            "INSERT INTO invitations (hash, room, created) VALUES (?1, ?2, ?3)",
            params![token_hash(&code), room, to_sql(now)],
        )?;
        Ok(code)
    }

    /// Revokes every invitation code to `room` (its members stay members).
    pub fn revoke_invitations(&self, room: &str) -> Result<(), AccountError> {
        self.connection().execute("DELETE FROM invitations WHERE room = ?1", [room])?;
        Ok(())
    }

    /// Keeps a moderation action in the audit log.
    pub fn audit(&self, audit: &Audit, ts: u64) -> Result<(), AccountError> {
        self.connection().execute(
            "INSERT INTO audit (ts, actor, action, room, subject) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![to_sql(ts), audit.actor, audit.action, audit.room, audit.subject],
        )?;
        Ok(())
    }

    /// The newest `limit` entries of the audit log, newest first: when, who, what, where, to
    /// what.
    pub fn audit_log(&self, limit: u32) -> Result<Vec<(u64, Audit)>, AccountError> {
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

    /// The account (its nick and when it was registered) whose unexpired session `token` is.
    pub fn session_account(
        &self,
        token: &str,
        now: u64,
    ) -> Result<Option<(String, u64)>, AccountError> {
        Ok(self
            .connection()
            .prepare_cached(
                "SELECT accounts.nick, accounts.created
                 FROM sessions JOIN accounts ON accounts.id = sessions.account
                 WHERE sessions.hash = ?1 AND sessions.expires > ?2",
            )?
            .query_row(params![token_hash(token), to_sql(now)], |row| {
                Ok((row.get(0)?, u64::try_from(row.get::<_, i64>(1)?).unwrap_or(0)))
            })
            .optional()?)
    }

    /// Ends the session `token` (logging out); `false` if there was none.
    pub fn log_out(&self, token: &str) -> Result<bool, AccountError> {
        let deleted = self
            .connection()
            .execute("DELETE FROM sessions WHERE hash = ?1", [token_hash(token)])?;
        Ok(deleted > 0)
    }
}

/// A new session of `account` (called `nick`), from `now` for [`SESSION_MILLIS`]; expired
/// sessions of every account are deleted on the way.
fn start_session(
    connection: &Connection,
    account: i64,
    nick: &str,
    now: u64,
) -> Result<Session, AccountError> {
    let token = new_token()?;
    connection.execute("DELETE FROM sessions WHERE expires <= ?1", [to_sql(now)])?;
    connection.execute(
        "INSERT INTO sessions (hash, account, created, expires) VALUES (?1, ?2, ?3, ?4)",
        params![token_hash(&token), account, to_sql(now), to_sql(now + SESSION_MILLIS)],
    )?;
    Ok(Session { token, nick: nick.to_owned() })
}

/// The registered account that looks like `likeness`: its id, nick and password hash.
fn look_alike(
    connection: &Connection,
    likeness: &Likeness,
) -> Result<Option<(i64, String, String)>, AccountError> {
    Ok(connection
        .prepare_cached(
            "SELECT id, nick, password FROM accounts
             WHERE nick_key IN (?1, ?2) OR nick_cased IN (?1, ?2) LIMIT 1",
        )?
        .query_row([likeness.key(), likeness.cased()], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
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
fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes()).iter().map(|byte| format!("{byte:02x}")).collect()
}

fn to_sql(millis: u64) -> i64 {
    i64::try_from(millis).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accounts() -> Accounts {
        let mut connection = Connection::open_in_memory().expect("in memory");
        crate::db::migrate_for_tests(&mut connection).expect("migrated");
        Accounts::with(connection).expect("accounts")
    }

    /// A registered nick logs in with its password, under the nick as registered, and gets a
    /// new session each time; a wrong password and an unknown nick get the same answer.
    #[test]
    fn register_and_log_in() {
        let accounts = accounts();
        let registered =
            accounts.register("Alice", "correct horse battery", 1).expect("registered");
        assert_eq!(accounts.session(&registered.token, 1).expect("read"), Some("Alice".into()));
        let first = accounts.log_in("alice", "correct horse battery", 2).expect("logged in");
        assert_eq!(first.nick, "Alice");
        let second = accounts.log_in("Alice", "correct horse battery", 3).expect("logged in");
        assert_ne!(first.token, second.token, "a new session every login");
        assert!(matches!(
            accounts.log_in("Alice", "wrong horse battery", 4),
            Err(AccountError::WrongPassword)
        ));
        assert!(matches!(
            accounts.log_in("nobody", "correct horse battery", 4),
            Err(AccountError::WrongPassword)
        ));
        assert_eq!(accounts.session(&first.token, 5).expect("read"), Some("Alice".into()));
        assert_eq!(accounts.session("not a token", 5).expect("read"), None);
    }

    /// A nick that looks like a registered one (case, confusable letters) cannot be registered
    /// again, and the password rules hold.
    #[test]
    fn look_alikes_and_weak_passwords_are_refused() {
        let accounts = accounts();
        accounts.register("alice", "correct horse battery", 1).expect("registered");
        for look_alike in ["ALICE", "aIice", "аlice"] {
            assert!(
                matches!(
                    accounts.register(look_alike, "another good password", 2),
                    Err(AccountError::Taken)
                ),
                "{look_alike}"
            );
        }
        assert!(matches!(accounts.register("bob", "short", 2), Err(AccountError::WeakPassword)));
        assert!(matches!(
            accounts.register("Guest-7", "correct horse battery", 2),
            Err(AccountError::GuestNick)
        ));
        let huge = "x".repeat(MAX_PASSWORD_BYTES + 1);
        assert!(matches!(accounts.register("bob", &huge, 2), Err(AccountError::WeakPassword)));
        assert!(accounts.is_registered(&Likeness::of("ALICE")).expect("read"));
        assert!(!accounts.is_registered(&Likeness::of("bob")).expect("read"));
    }

    /// A session ends at logout and at its expiry; the database keeps only hashes.
    #[test]
    fn sessions_end() {
        let accounts = accounts();
        accounts.register("cy", "correct horse battery", 1).expect("registered");
        let session = accounts.log_in("cy", "correct horse battery", 2).expect("logged in");
        let stored: String = accounts
            .connection()
            .query_row("SELECT hash FROM sessions", [], |row| row.get(0))
            .expect("one session");
        assert_ne!(stored, session.token, "the token itself is not stored");
        assert_eq!(accounts.session(&session.token, 2 + SESSION_MILLIS).expect("read"), None);
        assert!(accounts.log_out(&session.token).expect("logged out"));
        assert!(!accounts.log_out(&session.token).expect("once"));
    }
}
