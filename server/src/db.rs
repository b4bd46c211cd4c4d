//! `Db`: the chat database, its schema and every SQL statement, as a plain synchronous type.
//! The storage thread (store.rs) owns one and decides when to write, trim and sweep; the
//! tests below run it on an in-memory database.
//!
//! Retention: a room keeps its newest `retain_messages` messages within `retain_bytes` of text
//! and nicks (the newest always), and none older than `retain_for`. Each room remembers the
//! highest id it lost to retention, so a client asking for what it missed can be told when
//! some of it is gone.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use protocol::{ChatMessage, MessageId, UnixMillis};
use rusqlite::backup::{Backup, StepResult};
use rusqlite::{
    Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior, params,
};
use rusqlite_migration::{M, Migrations, SchemaVersion};

use crate::history::{Loaded, Stored, stored_size};

/// The database file inside the data directory.
pub const DATABASE_FILE: &str = "chat.sqlite3";
/// Rooms the server lists from the database at start.
const STARTUP_ROOMS: usize = 100;

/// Where and how long messages are kept.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// The data directory; `None` keeps everything in memory (lost on exit).
    pub data_dir: Option<PathBuf>,
    /// Messages each room keeps (at least 1).
    pub retain_messages: usize,
    /// Bytes of messages each room keeps (see [`stored_size`]); the newest
    /// message is kept whatever its size.
    pub retain_bytes: usize,
    /// How long messages are kept; `None` for no age limit.
    pub retain_for: Option<Duration>,
    /// How hard each commit is pushed to the disk.
    pub sync: SyncMode,
    /// Messages (and history loads) that may wait for the storage thread; past it, sends are
    /// refused with `unavailable`.
    pub max_pending_writes: usize,
    /// Rooms with stored messages, at most: a message in a room with none is refused past it.
    pub max_stored_rooms: usize,
}

#[cfg(test)]
impl StoreOptions {
    /// The unit tests' store: in memory, 100 messages a room, at most 10 rooms with messages.
    pub(crate) fn for_tests() -> Self {
        StoreOptions {
            data_dir: None,
            retain_messages: 100,
            retain_bytes: usize::MAX,
            retain_for: None,
            sync: SyncMode::Full,
            max_pending_writes: 16,
            max_stored_rooms: 10,
        }
    }
}

/// When a commit counts as durable: SQLite's `synchronous` setting, in WAL mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SyncMode {
    /// The log is synced to the disk on every commit: a committed message survives a crash of
    /// the process and a crash or power cut of the machine.
    Full,
    /// The log is written on every commit and synced only at checkpoints: a committed message
    /// survives a crash of the process (`kill -9`), not a power cut. Cheaper per commit.
    Normal,
}

impl SyncMode {
    fn pragma(self) -> &'static str {
        match self {
            SyncMode::Full => "FULL",
            SyncMode::Normal => "NORMAL",
        }
    }
}

impl StoreOptions {
    /// The oldest timestamp still within the age limit, if there is one.
    pub fn age_cutoff(&self, now: UnixMillis) -> Option<UnixMillis> {
        let age = self.retain_for?;
        Some(now.saturating_sub(u64::try_from(age.as_millis()).unwrap_or(u64::MAX)))
    }
}

/// Why the store could not do something.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the data directory {path}: {source}")]
    DataDir { path: PathBuf, source: std::io::Error },
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error(
        "the database has schema version {found}, newer than this server knows ({known}): it was \
         written by a newer release; run that release, or restore a backup taken before the upgrade"
    )]
    SchemaTooNew { found: usize, known: usize },
    #[error("API keys live in the data folder: not available with --ephemeral")]
    Ephemeral,
    #[error(
        "the database has schema version {found} and this binary {known}: start this release's \
         server on it first (it upgrades the schema), or use the binary of the running release"
    )]
    SchemaMismatch { found: usize, known: usize },
    #[error("no database at {0}: is --data-dir (CHAT_DATA_DIR) the server's?")]
    NoDatabase(PathBuf),
    #[error("cannot write the backup {path}: {source}")]
    BackupFile { path: PathBuf, source: std::io::Error },
    #[error("the backup would replace the database it copies")]
    BackupOverSource,
    #[error("an API key named {0:?} exists already (revoked keys keep their names)")]
    KeyExists(String),
    #[error("the database stayed locked for {0:?}: try again")]
    BackupBusy(Duration),
    #[error("cannot upgrade the database schema: {0}")]
    Migration(#[from] rusqlite_migration::Error),
    #[error("cannot start the storage thread: {0}")]
    Thread(std::io::Error),
    #[error("the storage thread has stopped")]
    Stopped,
    #[error("the store did not answer in time")]
    TimedOut,
    #[error("too many writes are waiting for the disk")]
    Busy,
    #[error("no random numbers: {0}")]
    Random(String),
}

/// What the database held at start.
#[derive(Debug)]
pub struct Start {
    /// The highest message id ever stored; new ids continue after it.
    pub last_id: MessageId,
    /// Rooms that have messages, most recently active first, with their last activity.
    pub recent_rooms: Vec<(String, UnixMillis)>,
    /// Every room with at least one message.
    pub with_messages: HashSet<String>,
    /// The database's epoch: made at random with a new database (and each start of an
    /// in-memory one), kept in it, so that ids of another database are never taken for its
    /// own.
    pub epoch: String,
}

/// The open database and the retention it applies.
pub struct Db {
    connection: Connection,
    options: StoreOptions,
    /// The bytes of text and nicks stored per room, for the rooms trimmed since start (read
    /// once at a room's first trim, then kept up to date), so that a trim looks at every
    /// message's size only when the room is over its byte bound.
    sizes: HashMap<String, usize>,
}

impl Db {
    /// Opens (or creates) the database `options` name, and reads where it left off as of `now`.
    pub fn open(options: StoreOptions, now: UnixMillis) -> Result<(Db, Start), StoreError> {
        let mut connection = match &options.data_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)
                    .map_err(|source| StoreError::DataDir { path: dir.clone(), source })?;
                open_file(&dir.join(DATABASE_FILE), options.sync)?
            }
            None => Connection::open_in_memory()?,
        };
        let found = migrate(&mut connection, MIGRATIONS)?;
        match (&options.data_dir, found) {
            (Some(dir), 0) => tracing::warn!(
                path = %dir.join(DATABASE_FILE).display(),
                "created a new, empty database (if messages were expected, check --data-dir)"
            ),
            (_, 0) => {}
            (_, found) if found != SCHEMA_VERSION => {
                tracing::info!(from = found, to = SCHEMA_VERSION, "database schema upgraded");
            }
            _ => {}
        }
        let start = Start {
            epoch: read_or_make_epoch(&connection)?,
            last_id: read_last_id(&connection)?,
            recent_rooms: read_rooms(&connection, options.age_cutoff(now))?,
            with_messages: read_rooms_with_messages(&connection)?,
        };
        Ok((Db { connection, options, sizes: HashMap::new() }, start))
    }

    /// Opens the database a server made in `options`' data folder, for `server admin`: it must
    /// exist (no new empty database in a mistyped folder) and be of this binary's schema (no
    /// upgrade behind a running older server's back).
    pub fn open_existing(options: StoreOptions) -> Result<Db, StoreError> {
        let dir = options.data_dir.clone().ok_or(StoreError::Ephemeral)?;
        let path = dir.join(DATABASE_FILE);
        if !path.is_file() {
            return Err(StoreError::NoDatabase(path));
        }
        let connection = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        // Others write now and then (the server's store, its accounts, another admin command).
        connection.busy_timeout(std::time::Duration::from_secs(5))?;
        let found: i64 = connection.pragma_query_value(None, "user_version", |row| row.get(0))?;
        let found = usize::try_from(found).unwrap_or(0);
        if found != SCHEMA_VERSION {
            return Err(StoreError::SchemaMismatch { found, known: SCHEMA_VERSION });
        }
        Ok(Db { connection, options, sizes: HashMap::new() })
    }

    pub fn options(&self) -> &StoreOptions {
        &self.options
    }

    /// Records where the server keeps its accounts (in Redis, or in this database), so that
    /// `server admin` on this data folder finds them where the servers do.
    pub fn note_accounts_in_redis(&self, in_redis: bool) -> Result<(), StoreError> {
        self.connection.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('accounts_in_redis', ?1)",
            [i64::from(in_redis)],
        )?;
        Ok(())
    }

    /// Whether the last server on this data folder kept its accounts in Redis (`None`: no
    /// server has said, as before this was recorded).
    pub fn accounts_in_redis(&self) -> Result<Option<bool>, StoreError> {
        let value: Option<i64> = self
            .connection
            .query_row("SELECT value FROM meta WHERE key = 'accounts_in_redis'", [], |row| {
                row.get(0)
            })
            .optional()?;
        Ok(value.map(|value| value != 0))
    }

    /// Writes `messages` in one transaction (one sync in `--sync full`), and the highest id.
    pub fn write<'a>(
        &mut self,
        messages: impl IntoIterator<Item = &'a Stored>,
    ) -> Result<(), StoreError> {
        let transaction =
            self.connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut last_id = 0;
        {
            let mut insert = transaction.prepare_cached(
                "INSERT INTO messages
                     (id, room, sender, text, ts, client_id, bot, signed_in, amends, deleted)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?;
            let mut amended_size = transaction.prepare_cached(
                "SELECT length(CAST(text AS BLOB)) FROM messages
                 WHERE id = ?1 AND room = ?2 AND amends IS NULL AND deleted = 0",
            )?;
            let mut purge_edits = transaction.prepare_cached(
                "SELECT SUM(length(CAST(text AS BLOB))) FROM messages
                 WHERE amends = ?1 AND room = ?2",
            )?;
            let mut purge = transaction
                .prepare_cached("UPDATE messages SET text = '' WHERE amends = ?1 AND room = ?2")?;
            let mut amend = transaction.prepare_cached(
                "UPDATE messages SET text = ?3, edited = edited OR NOT ?4, deleted = ?4
                 WHERE id = ?1 AND room = ?2 AND amends IS NULL AND deleted = 0",
            )?;
            let mut touch = transaction.prepare_cached(
                "INSERT INTO rooms (name, last_ts) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET last_ts = MAX(last_ts, excluded.last_ts)",
            )?;
            for Stored { message, client_id } in messages {
                if let Some(size) = self.sizes.get_mut(&message.room) {
                    *size += stored_size(message);
                }
                insert.execute(params![
                    to_sql(message.id),
                    message.room,
                    message.from,
                    message.text,
                    to_sql(message.ts),
                    client_id,
                    message.bot,
                    message.signed_in,
                    message.amends.map(to_sql),
                    message.deleted,
                ])?;
                // The amended message holds its current text, or a tombstone (and then its
                // earlier edits lose their text too). The room's size follows the change.
                if let Some(target) = message.amends {
                    let old: Option<i64> = amended_size
                        .query_row(params![to_sql(target), message.room], |row| row.get(0))
                        .optional()?;
                    let changed = amend.execute(params![
                        to_sql(target),
                        message.room,
                        message.text,
                        message.deleted
                    ])?;
                    let mut freed = old.filter(|_| changed > 0).unwrap_or(0);
                    if message.deleted {
                        freed += purge_edits
                            .query_row(params![to_sql(target), message.room], |row| {
                                row.get::<_, Option<i64>>(0)
                            })?
                            .unwrap_or(0);
                        purge.execute(params![to_sql(target), message.room])?;
                    }
                    let added =
                        if changed > 0 && !message.deleted { message.text.len() } else { 0 };
                    if let Some(size) = self.sizes.get_mut(&message.room) {
                        let freed = usize::try_from(freed).unwrap_or(0);
                        *size = (*size + added).saturating_sub(freed);
                    }
                }
                touch.execute(params![message.room, to_sql(message.ts)])?;
                last_id = last_id.max(message.id);
            }
        }
        // Cached like the inserts: at low load a batch holds one or two messages, and parsing
        // this anew for each showed in the profile (BENCHMARKS.md, "CPU per delivery").
        transaction
            .prepare_cached(
                "INSERT INTO meta (key, value) VALUES ('last_id', ?1)
                 ON CONFLICT (key) DO UPDATE SET value = MAX(value, excluded.value)",
            )?
            .execute(params![to_sql(last_id)])?;
        transaction.commit()?;
        Ok(())
    }

    /// Deletes `room`'s messages past its bounds in count and bytes (the newest one stays) and
    /// remembers the highest id deleted.
    pub fn trim_room(&mut self, room: &str) -> Result<(), StoreError> {
        let retain = self.options.retain_messages.max(1);
        let Db { connection, options, sizes } = self;
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let size = match sizes.get(room) {
            Some(size) => *size,
            None => {
                let size: Option<i64> = transaction.query_row(
                    "SELECT SUM(length(CAST(text AS BLOB)) + length(CAST(sender AS BLOB)))
                     FROM messages WHERE room = ?1",
                    [room],
                    |row| row.get(0),
                )?;
                to_size(size)
            }
        };
        let by_count: Option<i64> = transaction
            .query_row(
                "SELECT id FROM messages WHERE room = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2",
                params![room, to_sql(retain as u64)],
                |row| row.get(0),
            )
            .optional()?;
        // The newest message whose running total (newest first) passes the byte bound; the
        // newest message of all stays whatever its size. Sizes as `history::stored_size`.
        // Only looked for when the room is over the bound: it reads every message's size.
        let over = size > options.retain_bytes;
        let by_bytes: Option<i64> = over
            .then(|| {
                transaction.query_row(
                    "SELECT id FROM (
                     SELECT id,
                            ROW_NUMBER() OVER newest_first AS place,
                            SUM(length(CAST(text AS BLOB)) + length(CAST(sender AS BLOB)))
                                OVER newest_first AS total
                     FROM messages WHERE room = ?1
                     WINDOW newest_first AS (ORDER BY id DESC)
                 )
                 WHERE total > ?2 AND place > 1 ORDER BY id DESC LIMIT 1",
                    params![room, to_sql(options.retain_bytes as u64)],
                    |row| row.get(0),
                )
            })
            .transpose()
            .optional()?
            .flatten();
        let cutoff = by_count.max(by_bytes);
        let mut deleted = 0;
        if let Some(cutoff) = cutoff {
            let mut delete = transaction.prepare_cached(
                "DELETE FROM messages WHERE room = ?1 AND id <= ?2
                 RETURNING length(CAST(text AS BLOB)) + length(CAST(sender AS BLOB))",
            )?;
            let sizes = delete.query_map(params![room, cutoff], |row| row.get::<_, i64>(0))?;
            for size in sizes {
                deleted += to_size(Some(size?));
            }
            drop(delete);
            mark_trimmed(&transaction, room, cutoff)?;
        }
        transaction.commit()?;
        sizes.insert(room.to_owned(), size.saturating_sub(deleted));
        Ok(())
    }

    /// Deletes the messages older than `--retain-for` as of `now` and remembers, per room, the
    /// highest id deleted. Returns the rooms left without any message.
    pub fn sweep_by_age(&mut self, now: UnixMillis) -> Result<Vec<String>, StoreError> {
        let Some(cutoff) = self.options.age_cutoff(now) else { return Ok(Vec::new()) };
        let transaction =
            self.connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let expired: Vec<(String, i64)> = {
            let mut statement = transaction
                .prepare("SELECT room, MAX(id) FROM messages WHERE ts < ?1 GROUP BY room")?;
            let rows =
                statement.query_map([to_sql(cutoff)], |row| Ok((row.get(0)?, row.get(1)?)))?;
            rows.collect::<Result<_, _>>()?
        };
        for (room, upto) in &expired {
            mark_trimmed(&transaction, room, *upto)?;
        }
        transaction.execute("DELETE FROM messages WHERE ts < ?1", [to_sql(cutoff)])?;
        // Their sizes are read again at their next trim.
        for (room, _) in &expired {
            self.sizes.remove(room);
        }
        transaction.commit()?;
        // The rooms that kept no message at all.
        let mut still = self
            .connection
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM messages WHERE room = ?1)")?;
        let mut emptied = Vec::new();
        for (room, _) in expired {
            if !still.query_row([&room], |row| row.get::<_, bool>(0))? {
                emptied.push(room);
            }
        }
        Ok(emptied)
    }

    /// A room's retained messages, oldest first, within its bounds (more may be stored until
    /// the next trim: they count as trimmed), and the highest id it lost to retention.
    pub fn load(&self, room: &str) -> Result<Loaded, StoreError> {
        let retain = self.options.retain_messages.max(1);
        let mut statement = self.connection.prepare_cached(
            "SELECT id, sender, text, ts, client_id, bot, signed_in, amends, edited, deleted
             FROM messages
             WHERE room = ?1 ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = statement.query_map(params![room, to_sql(retain as u64 + 1)], |row| {
            Ok(Stored {
                message: ChatMessage {
                    id: to_id(row.get(0)?),
                    room: room.to_owned(),
                    from: row.get(1)?,
                    text: row.get(2)?,
                    ts: to_id(row.get(3)?),
                    bot: row.get(5)?,
                    signed_in: row.get(6)?,
                    amends: row.get::<_, Option<i64>>(7)?.map(to_id),
                    edited: row.get(8)?,
                    deleted: row.get(9)?,
                },
                client_id: row.get(4)?,
            })
        })?;
        let mut messages: Vec<Stored> = rows.collect::<Result<_, _>>()?;
        let recorded: Option<i64> = self
            .connection
            .query_row("SELECT trimmed_upto FROM rooms WHERE name = ?1", [room], |row| row.get(0))
            .optional()?;
        let mut trimmed_upto = to_id(recorded.unwrap_or(0));
        // More than the bounds is stored until the next trim: the surplus counts as trimmed.
        let mut bytes = 0;
        let kept = messages
            .iter()
            .position(|stored| {
                bytes += stored_size(&stored.message);
                bytes > self.options.retain_bytes
            })
            .map_or(retain, |past| past.max(1))
            .min(retain);
        if let Some(surplus) = messages.get(kept) {
            trimmed_upto = trimmed_upto.max(surplus.message.id);
        }
        messages.truncate(kept);
        messages.reverse();
        Ok(Loaded { messages, trimmed_upto })
    }
}

/// Looks API keys up on a connection of its own (read-only), so that checking keys never
/// waits behind, nor takes room from, the writes of the storage thread.
pub struct KeyReader {
    connection: std::sync::Mutex<Connection>,
}

impl KeyReader {
    /// A reader of the database in `data_dir` (the server has opened and migrated it).
    pub fn open(data_dir: &Path) -> Result<KeyReader, StoreError> {
        let connection = Connection::open_with_flags(
            data_dir.join(DATABASE_FILE),
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        Ok(KeyReader { connection: std::sync::Mutex::new(connection) })
    }

    /// The name of the key with this hash, if it exists and is not revoked: read now, so a
    /// key revoked a moment ago is refused.
    pub fn name(&self, hash: &str) -> Result<Option<String>, StoreError> {
        let connection = self.connection.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(connection
            .prepare_cached("SELECT name FROM api_keys WHERE hash = ?1 AND revoked IS NULL")?
            .query_row([hash], |row| row.get(0))
            .optional()?)
    }
}

/// An API key as `server admin list-keys` shows it (the key itself is never stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyInfo {
    pub name: String,
    pub created: UnixMillis,
    pub revoked: Option<UnixMillis>,
}

impl Db {
    /// Records a key under `name` by its hash; fails if the name is taken (even by a revoked
    /// key: names identify keys in the log and in `list-keys`).
    pub fn create_key(&self, name: &str, hash: &str, now: UnixMillis) -> Result<(), StoreError> {
        let inserted = self.connection.execute(
            "INSERT INTO api_keys (name, hash, created) VALUES (?1, ?2, ?3)
             ON CONFLICT (name) DO NOTHING",
            params![name, hash, to_sql(now)],
        )?;
        if inserted == 0 {
            return Err(StoreError::KeyExists(name.to_owned()));
        }
        Ok(())
    }

    /// Revokes the key `name`; `false` if there is no such key or it was revoked already.
    pub fn revoke_key(&self, name: &str, now: UnixMillis) -> Result<bool, StoreError> {
        let changed = self.connection.execute(
            "UPDATE api_keys SET revoked = ?2 WHERE name = ?1 AND revoked IS NULL",
            params![name, to_sql(now)],
        )?;
        Ok(changed > 0)
    }

    /// Every key, oldest first.
    pub fn list_keys(&self) -> Result<Vec<ApiKeyInfo>, StoreError> {
        let mut statement = self
            .connection
            .prepare("SELECT name, created, revoked FROM api_keys ORDER BY created, name")?;
        let keys = statement.query_map([], |row| {
            Ok(ApiKeyInfo {
                name: row.get(0)?,
                created: to_id(row.get(1)?),
                revoked: row.get::<_, Option<i64>>(2)?.map(to_id),
            })
        })?;
        Ok(keys.collect::<Result<_, _>>()?)
    }
}

/// What a backup holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupSummary {
    pub messages: u64,
    pub rooms: u64,
    /// The highest message id given so far: a server started on the copy continues after it.
    pub last_id: MessageId,
}

/// How long a backup waits for a database that a writer holds locked.
const BACKUP_BUSY_LIMIT: Duration = Duration::from_secs(10);

/// Copies the database in `data_dir` to `file`, also while a server is writing to it: SQLite's
/// online backup, in one step, so the copy is one consistent moment of the database (in WAL
/// mode the writer is not held up meanwhile). The copy is written beside `file` and renamed over
/// it once complete and synced, so `file` is always a whole database; it is a single file (no
/// write-ahead log), ready to be put in a data folder as `chat.sqlite3`.
pub fn backup(data_dir: &Path, file: &Path) -> Result<BackupSummary, StoreError> {
    let source_path = data_dir.join(DATABASE_FILE);
    match std::fs::metadata(&source_path) {
        Ok(metadata) if metadata.is_file() => {}
        Ok(_) => return Err(StoreError::NoDatabase(source_path)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Err(StoreError::NoDatabase(source_path));
        }
        Err(source) => return Err(StoreError::DataDir { path: source_path, source }),
    }
    let file_error = |source| StoreError::BackupFile { path: file.to_owned(), source };
    if let (Ok(source), Ok(target)) = (source_path.canonicalize(), file.canonicalize())
        && source == target
    {
        return Err(StoreError::BackupOverSource);
    }
    let name = file.file_name().ok_or_else(|| {
        file_error(std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file name"))
    })?;
    let partial = file.with_file_name(format!(".{}.partial", name.to_string_lossy()));
    let _ = std::fs::remove_file(&partial);
    // Created here, readable by its owner only: it holds every message.
    {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&partial)
            .map_err(file_error)?;
    }
    let copied = copy_database(&source_path, &partial);
    let copied = copied.and_then(|summary| {
        std::fs::File::open(&partial).and_then(|copy| copy.sync_all()).map_err(file_error)?;
        std::fs::rename(&partial, file).map_err(file_error)?;
        // The rename itself is durable once the folder is synced.
        if let Some(folder) = file.parent().filter(|folder| !folder.as_os_str().is_empty()) {
            std::fs::File::open(folder).and_then(|folder| folder.sync_all()).map_err(file_error)?;
        }
        Ok(summary)
    });
    if copied.is_err() {
        // A half-written copy must not fill the disk it may have filled.
        let _ = std::fs::remove_file(&partial);
    }
    copied
}

/// Copies the database at `source_path` into the (empty) file `target_path`; the copy is named
/// in errors about it.
fn copy_database(source_path: &Path, target_path: &Path) -> Result<BackupSummary, StoreError> {
    let target_error = |error: rusqlite::Error| StoreError::BackupFile {
        path: target_path.to_owned(),
        source: std::io::Error::other(error),
    };
    // Read-write (a WAL reader takes locks), never create: the database must exist.
    let source = Connection::open_with_flags(
        source_path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    let mut target = Connection::open(target_path).map_err(target_error)?;
    {
        let backup = Backup::new(&source, &mut target)?;
        let deadline = std::time::Instant::now() + BACKUP_BUSY_LIMIT;
        // -1: every page in one step, under one read transaction.
        while backup.step(-1)? != StepResult::Done {
            if std::time::Instant::now() >= deadline {
                return Err(StoreError::BackupBusy(BACKUP_BUSY_LIMIT));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    target.pragma_update(None, "journal_mode", "DELETE").map_err(target_error)?;
    // A copy is another history once served: the live database goes on after it, so a server
    // restored from it would give ids the live one already gave. A new epoch makes the clients
    // that saw those start over (a `reset`) instead of resuming after an id that names another
    // message there.
    target
        .execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('epoch', ?1)",
            params![random_epoch()?],
        )
        .map_err(target_error)?;
    let (messages, rooms): (i64, i64) = target.query_row(
        "SELECT (SELECT COUNT(*) FROM messages), (SELECT COUNT(*) FROM rooms)",
        [],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?;
    Ok(BackupSummary {
        messages: to_id(messages),
        rooms: to_id(rooms),
        last_id: read_last_id(&target)?,
    })
}

fn open_file(path: &Path, sync: SyncMode) -> Result<Connection, StoreError> {
    let connection = Connection::open(path)?;
    // Other connections write now and then (accounts, `server admin`): wait for them briefly
    // rather than fail a batch of messages.
    connection.busy_timeout(std::time::Duration::from_secs(5))?;
    // WAL: readers never block the writer, and a commit is one append to the log.
    connection.pragma_update(None, "journal_mode", "WAL")?;
    connection.pragma_update(None, "synchronous", sync.pragma())?;
    Ok(connection)
}

/// The schema, as the migrations that build it: migration `n` takes a database from version
/// `n - 1` to `n`, and SQLite's `user_version` says which version a file is at. Append only:
/// a migration that has shipped is never edited, since data folders out there ran it.
const MIGRATIONS: &[&str] = &[
    // 1: messages, rooms and the highest id ever given (the schema of the first durable
    // release, which set `user_version = 1` itself).
    "CREATE TABLE IF NOT EXISTS messages (
         id        INTEGER PRIMARY KEY,
         room      TEXT NOT NULL,
         sender    TEXT NOT NULL,
         text      TEXT NOT NULL,
         ts        INTEGER NOT NULL,
         client_id TEXT
     );
     CREATE INDEX IF NOT EXISTS messages_by_room ON messages (room, id);
     CREATE INDEX IF NOT EXISTS messages_by_age ON messages (ts);
     CREATE TABLE IF NOT EXISTS rooms (
         name         TEXT PRIMARY KEY,
         last_ts      INTEGER NOT NULL,
         trimmed_upto INTEGER NOT NULL DEFAULT 0
     ) WITHOUT ROWID;
     CREATE TABLE IF NOT EXISTS meta (
         key   TEXT PRIMARY KEY,
         value INTEGER NOT NULL
     ) WITHOUT ROWID;",
    // 2: messages posted through the HTTP API are marked as a bot's; the API's keys, stored
    // as SHA-256 hashes, revocable.
    "ALTER TABLE messages ADD COLUMN bot INTEGER NOT NULL DEFAULT 0;
     CREATE TABLE api_keys (
         name    TEXT PRIMARY KEY,
         hash    TEXT NOT NULL UNIQUE,
         created INTEGER NOT NULL,
         revoked INTEGER
     ) WITHOUT ROWID;",
    // 3: accounts (a registered nick, unique by how it looks under both forms of
    // `names::Likeness`, with its Argon2id hash) and
    // their sessions (SHA-256 hashes of the tokens in the cookies).
    "CREATE TABLE accounts (
         id       INTEGER PRIMARY KEY,
         nick     TEXT NOT NULL,
         nick_key TEXT NOT NULL UNIQUE,
         nick_cased TEXT NOT NULL,
         password TEXT NOT NULL,
         created  INTEGER NOT NULL
     );
     CREATE TABLE sessions (
         hash    TEXT PRIMARY KEY,
         account INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
         created INTEGER NOT NULL,
         expires INTEGER NOT NULL
     ) WITHOUT ROWID;
     CREATE INDEX accounts_by_cased ON accounts (nick_cased);
     CREATE INDEX sessions_by_account ON sessions (account);",
    // 4: messages sent by someone signed in to the account their sender names are marked so.
    "ALTER TABLE messages ADD COLUMN signed_in INTEGER NOT NULL DEFAULT 0;",
    // 5: edits and deletions (entries amending an earlier message, which then holds its
    // current text or a tombstone); who owns or moderates which room (room '' for the whole
    // server); the audit log of moderation.
    "ALTER TABLE messages ADD COLUMN amends INTEGER;
     ALTER TABLE messages ADD COLUMN edited INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE messages ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0;
     CREATE TABLE roles (
         room    TEXT NOT NULL,
         account INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
         role    TEXT NOT NULL,
         granted INTEGER NOT NULL,
         PRIMARY KEY (room, account)
     ) WITHOUT ROWID;
     CREATE INDEX roles_by_account ON roles (account);
     CREATE TABLE audit (
         id      INTEGER PRIMARY KEY,
         ts      INTEGER NOT NULL,
         actor   TEXT NOT NULL,
         action  TEXT NOT NULL,
         room    TEXT NOT NULL,
         subject TEXT NOT NULL
     );",
    // 6: mutes and bans by room and subject (an identity, or a guest's address), until when.
    "CREATE TABLE sanctions (
         room    TEXT NOT NULL,
         subject TEXT NOT NULL,
         action  TEXT NOT NULL,
         until   INTEGER NOT NULL,
         PRIMARY KEY (room, subject, action)
     ) WITHOUT ROWID;",
    // 7: private rooms, their members (accounts), and invitation codes (stored hashed).
    "CREATE TABLE private_rooms (
         room  TEXT PRIMARY KEY,
         since INTEGER NOT NULL
     ) WITHOUT ROWID;
     CREATE TABLE room_members (
         room    TEXT NOT NULL,
         account INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
         PRIMARY KEY (room, account)
     ) WITHOUT ROWID;
     CREATE INDEX room_members_by_account ON room_members (account);
     CREATE TABLE invitations (
         hash    TEXT PRIMARY KEY,
         room    TEXT NOT NULL,
         created INTEGER NOT NULL
     ) WITHOUT ROWID;
     CREATE INDEX invitations_by_room ON invitations (room);",
    // 8: whom a mute or ban was imposed on (by nick, to list and lift it); when an invitation
    // code stops working and how many more it may admit (NULL: codes made before, which have
    // neither).
    "ALTER TABLE sanctions ADD COLUMN nick TEXT NOT NULL DEFAULT '';
     ALTER TABLE invitations ADD COLUMN expires INTEGER;
     ALTER TABLE invitations ADD COLUMN uses_left INTEGER;",
    // 9: the mutes and bans of accounts kept before 8 name their member by nick (their
    // subject is `id:` and the nick), so they can be listed and lifted; a guest's (by address)
    // did not keep its nick and stays unnamed until it ends.
    "UPDATE sanctions SET nick = substr(subject, 4) WHERE nick = '' AND subject LIKE 'id:%';",
    // 10: what is pruned by its end is found by an index (a login, a new invitation and a
    // join's ban check each deleted the ended rows by scanning the whole table); invitation
    // codes made before 8 end a week after they were made, as every code does now; the audit
    // log keeps its newest 100,000 entries (from here on trimmed at each entry).
    "CREATE INDEX sessions_by_end ON sessions (expires);
     CREATE INDEX invitations_by_end ON invitations (expires);
     CREATE INDEX sanctions_by_end ON sanctions (until);
     UPDATE invitations SET expires = created + 7 * 86400000 WHERE expires IS NULL;
     DELETE FROM audit WHERE id <= (SELECT MAX(id) FROM audit) - 100000;",
];

/// The schema version this server writes: the number of migrations it knows.
pub const SCHEMA_VERSION: usize = MIGRATIONS.len();

/// Brings an in-memory database to this release's schema (for other modules' tests).
#[cfg(test)]
pub fn migrate_for_tests(connection: &mut Connection) -> Result<usize, StoreError> {
    migrate(connection, MIGRATIONS)
}

/// `sql`, one migration each, as rusqlite_migration runs them.
fn migrations_of(sql: &[&'static str]) -> Migrations<'static> {
    Migrations::new(sql.iter().map(|sql| M::up(sql)).collect())
}

/// Brings the database up to the last of `migrations`, every missing one in one transaction
/// (a failure leaves the file as it was); refuses a database from a newer release. Returns the
/// version the file was at.
fn migrate(connection: &mut Connection, migrations: &[&'static str]) -> Result<usize, StoreError> {
    let known = migrations.len();
    let migrations = migrations_of(migrations);
    let found = migrations.current_version(connection)?;
    if let SchemaVersion::Outside(found) = found {
        return Err(StoreError::SchemaTooNew { found: found.get(), known });
    }
    migrations.to_latest(connection)?;
    Ok(usize::from(found))
}

/// The database's epoch (see [`Start::epoch`]) as 16 hex digits, made on first use: a random
/// positive number in the `meta` table (whose values are integers).
fn read_or_make_epoch(connection: &Connection) -> Result<String, StoreError> {
    connection
        .prepare_cached("INSERT OR IGNORE INTO meta (key, value) VALUES ('epoch', ?1)")?
        .execute(params![random_epoch()?])?;
    let epoch: i64 =
        connection.query_row("SELECT value FROM meta WHERE key = 'epoch'", [], |row| row.get(0))?;
    Ok(format!("{epoch:016x}"))
}

/// A new epoch: a random positive number.
fn random_epoch() -> Result<i64, StoreError> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(|error| StoreError::Random(error.to_string()))?;
    Ok(i64::from_le_bytes(bytes) & i64::MAX)
}

fn read_last_id(connection: &Connection) -> Result<MessageId, StoreError> {
    let recorded: Option<i64> = connection
        .query_row("SELECT value FROM meta WHERE key = 'last_id'", [], |row| row.get(0))
        .optional()?;
    let stored: Option<i64> =
        connection.query_row("SELECT MAX(id) FROM messages", [], |row| row.get(0))?;
    Ok(to_id(recorded.unwrap_or(0).max(stored.unwrap_or(0))))
}

/// Rooms that have messages: one index lookup per known room rather than a scan of every
/// message.
fn read_rooms_with_messages(connection: &Connection) -> Result<HashSet<String>, StoreError> {
    let mut statement = connection.prepare(
        "SELECT name FROM rooms WHERE EXISTS (SELECT 1 FROM messages WHERE room = rooms.name)",
    )?;
    let rooms = statement.query_map([], |row| row.get::<_, String>(0))?;
    Ok(rooms.collect::<Result<_, _>>()?)
}

fn read_rooms(
    connection: &Connection,
    cutoff: Option<UnixMillis>,
) -> Result<Vec<(String, UnixMillis)>, StoreError> {
    let mut statement = connection.prepare(
        "SELECT name, last_ts FROM rooms WHERE last_ts >= ?1 ORDER BY last_ts DESC LIMIT ?2",
    )?;
    let rows = statement
        .query_map(params![to_sql(cutoff.unwrap_or(0)), to_sql(STARTUP_ROOMS as u64)], |row| {
            Ok((row.get::<_, String>(0)?, to_id(row.get(1)?)))
        })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// SQLite integers are signed; ids and timestamps stay far below `i64::MAX`.
fn to_sql(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn to_size(value: Option<i64>) -> usize {
    usize::try_from(value.unwrap_or(0)).unwrap_or(0)
}

fn to_id(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

fn mark_trimmed(transaction: &Transaction<'_>, room: &str, upto: i64) -> Result<(), StoreError> {
    transaction.execute(
        "UPDATE rooms SET trimmed_upto = MAX(trimmed_upto, ?2) WHERE name = ?1",
        params![room, upto],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message of `room` weighing 10 bytes (a 9-byte text, a 1-byte nick), at `ts`.
    fn stored(id: MessageId, room: &str, ts: UnixMillis, client_id: Option<&str>) -> Stored {
        let message = ChatMessage {
            id,
            room: room.into(),
            from: "a".into(),
            text: "x".repeat(9),
            ts,
            bot: false,
            signed_in: false,
            ..Default::default()
        };
        Stored { message, client_id: client_id.map(str::to_owned) }
    }

    fn ids(loaded: &Loaded) -> Vec<MessageId> {
        loaded.messages.iter().map(|stored| stored.message.id).collect()
    }

    /// What is written loads back per room, oldest first, with its client ids.
    #[test]
    fn written_messages_load_back() {
        let (mut db, start) = Db::open(StoreOptions::for_tests(), 0).expect("opens");
        assert_eq!((start.last_id, start.recent_rooms.len()), (0, 0));
        let batch =
            [stored(1, "a", 10, Some("k1")), stored(2, "b", 11, None), stored(3, "a", 12, None)];
        db.write(&batch).expect("writes");
        let loaded = db.load("a").expect("loads");
        assert_eq!((ids(&loaded), loaded.trimmed_upto), (vec![1, 3], 0));
        assert_eq!(loaded.messages[0], batch[0]);
        assert!(db.load("nowhere").expect("loads").messages.is_empty());
    }

    /// A room is trimmed to its bounds in count and bytes, keeping the newest (never fewer
    /// than one), and remembers what it lost; a load honours the bounds even before a trim.
    #[test]
    fn rooms_are_trimmed_to_their_bounds() {
        let mut db = Db::open(StoreOptions { retain_bytes: 25, ..StoreOptions::for_tests() }, 0)
            .expect("opens")
            .0;
        let batch: Vec<Stored> = (1..=5).map(|id| stored(id, "r", id, None)).collect();
        db.write(&batch).expect("writes");
        let loaded = db.load("r").expect("loads");
        assert_eq!((ids(&loaded), loaded.trimmed_upto), (vec![4, 5], 3), "before the trim");
        db.trim_room("r").expect("trims");
        let count: i64 = db
            .connection
            .query_row("SELECT COUNT(*) FROM messages", [], |row| row.get(0))
            .expect("count");
        assert_eq!(count, 2, "the database holds what the room keeps");
        assert_eq!(db.sizes.get("r"), Some(&20), "the room's size is kept up to date");
        db.write(&[stored(6, "r", 6, None)]).expect("writes");
        assert_eq!(db.sizes.get("r"), Some(&30), "and grows with what is written");
        db.options.retain_bytes = usize::MAX;
        db.options.retain_messages = 1;
        db.trim_room("r").expect("trims");
        let loaded = db.load("r").expect("loads");
        assert_eq!((ids(&loaded), loaded.trimmed_upto), (vec![6], 5), "by count too");
        assert_eq!(db.sizes.get("r"), Some(&10));
    }

    /// Messages past their age are deleted; rooms left without any are named, and remember
    /// what they lost.
    #[test]
    fn the_age_sweep_names_emptied_rooms() {
        let options = StoreOptions {
            retain_for: Some(Duration::from_millis(100)),
            ..StoreOptions::for_tests()
        };
        let mut db = Db::open(options, 0).expect("opens").0;
        db.write(&[stored(1, "old", 1_000, None), stored(2, "mixed", 1_000, None)])
            .expect("writes");
        db.write(&[stored(3, "mixed", 1_950, None)]).expect("writes");
        let emptied = db.sweep_by_age(2_000).expect("sweeps");
        assert_eq!(emptied, ["old"]);
        let mixed = db.load("mixed").expect("loads");
        assert_eq!((ids(&mixed), mixed.trimmed_upto), (vec![3], 2));
        assert_eq!(db.load("old").expect("loads").trimmed_upto, 1);
    }

    /// Reopened, the database says where it left off: the last id (also past deleted
    /// messages), the rooms by recency, and which rooms have messages.
    #[test]
    fn a_reopened_database_starts_where_it_left_off() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let options =
            StoreOptions { data_dir: Some(dir.path().to_owned()), ..StoreOptions::for_tests() };
        {
            let mut db = Db::open(options.clone(), 0).expect("opens").0;
            db.write(&[stored(7, "a", 10, None), stored(9, "b", 20, None)]).expect("writes");
            db.connection.execute("DELETE FROM messages WHERE id = 9", []).expect("deletes");
        }
        let (_, start) = Db::open(options, 0).expect("reopens");
        assert_eq!(start.last_id, 9, "ids never go back");
        assert_eq!(start.recent_rooms, [("b".to_owned(), 20), ("a".to_owned(), 10)]);
        assert_eq!(start.with_messages, HashSet::from(["a".to_owned()]));
    }

    /// A database keeps its epoch across reopening; another database, or an in-memory one
    /// opened again, has another.
    #[test]
    fn the_epoch_is_the_databases() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let on_file =
            StoreOptions { data_dir: Some(dir.path().to_owned()), ..StoreOptions::for_tests() };
        let first = Db::open(on_file.clone(), 0).expect("opens").1.epoch;
        let again = Db::open(on_file, 0).expect("reopens").1.epoch;
        assert_eq!((first.len(), &again), (16, &first), "16 hex digits, kept");
        let other = tempfile::tempdir().expect("temporary directory");
        let elsewhere =
            StoreOptions { data_dir: Some(other.path().to_owned()), ..StoreOptions::for_tests() };
        assert_ne!(Db::open(elsewhere, 0).expect("opens").1.epoch, first);
        let memory = |_| Db::open(StoreOptions::for_tests(), 0).expect("opens").1.epoch;
        assert_ne!(memory(1), memory(2), "each in-memory start is a new history");
    }

    fn user_version(connection: &Connection) -> usize {
        let version: i64 = connection
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .expect("a version");
        usize::try_from(version).expect("a small version")
    }

    /// A new database is built by the migrations and says the version it is at.
    #[test]
    fn a_new_database_is_at_the_latest_version() {
        let (db, _) = Db::open(StoreOptions::for_tests(), 0).expect("opens");
        let version = user_version(&db.connection);
        assert_eq!(version, SCHEMA_VERSION);
    }

    /// A file written by a newer release is refused with a message that says so, and is left
    /// as it was.
    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let options =
            StoreOptions { data_dir: Some(dir.path().to_owned()), ..StoreOptions::for_tests() };
        let newer = SCHEMA_VERSION + 1;
        {
            let (db, _) = Db::open(options.clone(), 0).expect("opens");
            let newer_sql = i64::try_from(newer).expect("a small version");
            db.connection.pragma_update(None, "user_version", newer_sql).expect("sets the version");
        }
        let error = Db::open(options, 0).err().expect("refused");
        assert!(
            matches!(error, StoreError::SchemaTooNew { found, known }
            if found == newer && known == SCHEMA_VERSION),
            "{error:?}"
        );
        assert!(error.to_string().contains("newer release"), "{error}");
        let connection = Connection::open(dir.path().join(DATABASE_FILE)).expect("opens");
        let version = user_version(&connection);
        assert_eq!(version, newer);
    }

    /// A database one version behind is upgraded in place, its rows kept.
    #[test]
    fn an_older_database_is_upgraded_in_place() {
        let mut db = Db::open(StoreOptions::for_tests(), 0).expect("opens").0;
        db.write(&[stored(1, "a", 10, Some("c1"))]).expect("writes");
        let next =
            [MIGRATIONS, &["ALTER TABLE messages ADD COLUMN extra INTEGER NOT NULL DEFAULT 7"]]
                .concat();
        assert_eq!(migrate(&mut db.connection, &next).expect("upgrades"), SCHEMA_VERSION);
        let row: (String, i64) = db
            .connection
            .query_row("SELECT client_id, extra FROM messages WHERE id = 1", [], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .expect("the message is still there");
        assert_eq!(row, ("c1".to_owned(), 7));
        assert_eq!(ids(&db.load("a").expect("loads")), [1]);
    }

    /// Every missing migration runs in one transaction: when a later one fails, the earlier
    /// ones are undone too and the file stays at its version.
    #[test]
    fn a_failed_upgrade_leaves_the_database_as_it_was() {
        let mut db = Db::open(StoreOptions::for_tests(), 0).expect("opens").0;
        db.write(&[stored(1, "a", 10, None)]).expect("writes");
        let next = [
            MIGRATIONS,
            &["ALTER TABLE messages ADD COLUMN extra INTEGER", "CREATE TABLE broken (oops"],
        ]
        .concat();
        assert!(matches!(migrate(&mut db.connection, &next), Err(StoreError::Migration(_))));
        let version = user_version(&db.connection);
        assert_eq!(version, SCHEMA_VERSION);
        let columns: i64 = db
            .connection
            .query_row(
                "SELECT COUNT(*) FROM pragma_table_info('messages') WHERE name = 'extra'",
                [],
                |row| row.get(0),
            )
            .expect("table info");
        assert_eq!(columns, 0, "the first new migration was undone");
        assert_eq!(ids(&db.load("a").expect("loads")), [1]);
    }

    /// Mutes and bans kept before schema 8 named nobody: an account's get its nick from its
    /// subject (to be listed and lifted), a guest's address keeps none.
    #[test]
    fn older_sanctions_get_their_accounts_nick() {
        let mut connection = Connection::open_in_memory().expect("in memory");
        migrate(&mut connection, &MIGRATIONS[..8]).expect("schema 8");
        for subject in ["id:bob", "addr:10.0.0.1"] {
            connection
                .execute(
                    "INSERT INTO sanctions (room, subject, action, until) VALUES ('r', ?1, 'ban', 9)",
                    [subject],
                )
                .expect("kept");
        }
        migrate(&mut connection, MIGRATIONS).expect("upgraded");
        let mut named: Vec<(String, String)> = connection
            .prepare("SELECT subject, nick FROM sanctions ORDER BY subject")
            .expect("statement")
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("read");
        named.sort();
        assert_eq!(
            named,
            [("addr:10.0.0.1".to_owned(), String::new()), ("id:bob".into(), "bob".into())]
        );
    }

    /// Invitation codes made before schema 8 had no end and worked for good: after the upgrade
    /// they end a week after they were made, like every code; newer codes keep their own end.
    /// Ended sessions are found through an index, and a long audit log is trimmed to its
    /// newest 100,000 entries in the upgrade (not by the first entry after it).
    #[test]
    fn older_invitations_end_a_week_after_they_were_made() {
        let mut connection = Connection::open_in_memory().expect("in memory");
        migrate(&mut connection, &MIGRATIONS[..9]).expect("schema 9");
        connection
            .execute_batch(
                "INSERT INTO invitations (hash, room, created) VALUES ('old', 'r', 1000);
                 INSERT INTO invitations (hash, room, created, expires, uses_left)
                     VALUES ('new', 'r', 2000, 5000, 3);
                 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100002)
                 INSERT INTO audit (ts, actor, action, room, subject)
                     SELECT i, 'mo', 'kick', 'r', 'x' FROM n;",
            )
            .expect("kept");
        migrate(&mut connection, MIGRATIONS).expect("upgraded");
        let ends: Vec<(String, i64)> = connection
            .prepare("SELECT hash, expires FROM invitations ORDER BY hash")
            .expect("statement")
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("read");
        assert_eq!(ends, [("new".to_owned(), 5000), ("old".to_owned(), 1000 + 7 * 86_400_000)]);
        let plan: String = connection
            .query_row("EXPLAIN QUERY PLAN DELETE FROM sessions WHERE expires <= 5", [], |row| {
                row.get(3)
            })
            .expect("plan");
        assert!(plan.contains("sessions_by_end"), "ended sessions are found by index: {plan}");
        let (count, oldest): (i64, i64) = connection
            .query_row("SELECT COUNT(*), MIN(ts) FROM audit", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("counted");
        assert_eq!((count, oldest), (100_000, 3), "the audit log trimmed once, in the upgrade");
    }

    /// The migrations are well formed (rusqlite_migration checks them on an empty database).
    #[test]
    fn the_migrations_are_valid() {
        migrations_of(MIGRATIONS).validate().expect("valid migrations");
    }

    /// A backup taken while the database is open and its latest writes are still in the
    /// write-ahead log holds them, in one file; a server opened on it continues the ids, under
    /// an epoch of its own (the live database went on after the copy).
    #[test]
    fn a_backup_of_an_open_database_holds_its_latest_writes() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let options =
            StoreOptions { data_dir: Some(dir.path().to_owned()), ..StoreOptions::for_tests() };
        let (mut live, live_start) = Db::open(options.clone(), 0).expect("opens");
        live.write(&[stored(1, "a", 10, Some("c1")), stored(2, "b", 20, None)]).expect("writes");
        let wal = dir.path().join(format!("{DATABASE_FILE}-wal"));
        assert!(std::fs::metadata(&wal).expect("a log").len() > 0, "the writes are in the log");
        let copy_dir = tempfile::tempdir().expect("temporary directory");
        let copy = copy_dir.path().join(DATABASE_FILE);
        let summary = backup(dir.path(), &copy).expect("backs up");
        assert_eq!(summary, BackupSummary { messages: 2, rooms: 2, last_id: 2 });
        assert_eq!(std::fs::read_dir(copy_dir.path()).expect("lists").count(), 1, "one file");
        live.write(&[stored(3, "a", 30, None)]).expect("the live database still takes writes");
        let restored = StoreOptions { data_dir: Some(copy_dir.path().to_owned()), ..options };
        let (db, start) = Db::open(restored, 0).expect("the copy opens");
        assert_eq!(start.last_id, 2);
        assert_ne!(start.epoch, live_start.epoch, "a restored copy is another history");
        let loaded = db.load("a").expect("loads");
        assert_eq!(ids(&loaded), [1]);
        assert_eq!(loaded.messages[0].client_id.as_deref(), Some("c1"));
    }

    /// A backup needs a database to copy and will not write over it.
    #[test]
    fn a_backup_refuses_a_missing_source_and_its_own_source() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let elsewhere = dir.path().join("copy.sqlite3");
        assert!(matches!(backup(dir.path(), &elsewhere), Err(StoreError::NoDatabase(_))));
        let options =
            StoreOptions { data_dir: Some(dir.path().to_owned()), ..StoreOptions::for_tests() };
        drop(Db::open(options, 0).expect("opens"));
        let itself = dir.path().join(DATABASE_FILE);
        assert!(matches!(backup(dir.path(), &itself), Err(StoreError::BackupOverSource)));
    }

    /// Keys are found by their hash until revoked; names are unique, revoked ones included.
    #[test]
    fn api_keys_are_found_by_hash_until_revoked() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let options =
            StoreOptions { data_dir: Some(dir.path().to_owned()), ..StoreOptions::for_tests() };
        let db = Db::open(options.clone(), 0).expect("opens").0;
        db.create_key("feed", "h1", 5).expect("created");
        assert!(matches!(db.create_key("feed", "h2", 6), Err(StoreError::KeyExists(_))));
        let keys = KeyReader::open(dir.path()).expect("reader");
        assert_eq!(keys.name("h1").expect("reads"), Some("feed".to_owned()));
        assert_eq!(keys.name("h2").expect("reads"), None);
        assert!(db.revoke_key("feed", 7).expect("revokes"));
        assert!(!db.revoke_key("feed", 8).expect("revokes"), "once");
        assert_eq!(keys.name("h1").expect("reads"), None, "revoked: refused at once");
        let listed = db.list_keys().expect("lists");
        assert_eq!(listed, [ApiKeyInfo { name: "feed".into(), created: 5, revoked: Some(7) }]);
    }

    /// `server admin` opens only an existing database of this binary's schema.
    #[test]
    fn admin_opens_only_an_existing_database_of_this_schema() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let options =
            StoreOptions { data_dir: Some(dir.path().to_owned()), ..StoreOptions::for_tests() };
        assert!(matches!(Db::open_existing(options.clone()), Err(StoreError::NoDatabase(_))));
        assert!(!dir.path().join(DATABASE_FILE).exists(), "nothing created");
        let db = Db::open(options.clone(), 0).expect("opens").0;
        Db::open_existing(options.clone()).expect("this schema");
        db.connection.pragma_update(None, "user_version", 1).expect("older");
        assert!(matches!(
            Db::open_existing(options),
            Err(StoreError::SchemaMismatch { found: 1, .. })
        ));
    }

    /// A bot's message and a signed-in member's keep their marks through the database.
    #[test]
    fn the_bot_and_signed_in_marks_are_stored() {
        let mut db = Db::open(StoreOptions::for_tests(), 0).expect("opens").0;
        let mut bot = stored(1, "a", 10, None);
        bot.message.bot = true;
        let mut member = stored(3, "a", 30, None);
        member.message.signed_in = true;
        db.write(&[bot, stored(2, "a", 20, None), member]).expect("writes");
        let loaded = db.load("a").expect("loads");
        let marks: Vec<(bool, bool)> =
            loaded.messages.iter().map(|s| (s.message.bot, s.message.signed_in)).collect();
        assert_eq!(marks, [(true, false), (false, false), (false, true)]);
    }

    /// An edit and a deletion are kept as entries of their own, and the messages they amend
    /// hold their current text, or a tombstone, when loaded again.
    #[test]
    fn amendments_change_the_stored_message() {
        let mut db = Db::open(StoreOptions::for_tests(), 0).expect("opens").0;
        let change = |id, target, text: &str, deleted| {
            let mut stored = stored(id, "a", id * 10, None);
            stored.message.amends = Some(target);
            stored.message.text = text.into();
            stored.message.deleted = deleted;
            stored
        };
        db.write(&[stored(1, "a", 10, None), stored(2, "a", 20, None)]).expect("writes");
        db.write(&[change(3, 1, "edited", false), change(4, 2, "", true)]).expect("writes");
        let loaded = db.load("a").expect("loads");
        let shown: Vec<(u64, &str, bool, bool, Option<u64>)> = loaded
            .messages
            .iter()
            .map(|s| {
                let m = &s.message;
                (m.id, m.text.as_str(), m.edited, m.deleted, m.amends)
            })
            .collect();
        assert_eq!(
            shown,
            [
                (1, "edited", true, false, None),
                (2, "", false, true, None),
                (3, "edited", false, false, Some(1)),
                (4, "", false, true, Some(2)),
            ]
        );
        // Deleting an edited message leaves none of its texts, the edits' included.
        db.write(&[change(5, 1, "", true)]).expect("writes");
        let texts: Vec<String> =
            db.load("a").expect("loads").messages.into_iter().map(|s| s.message.text).collect();
        assert!(texts.iter().all(String::is_empty), "{texts:?}");
    }

    /// The copy is readable by its owner only; a copy that cannot be written names the place
    /// it was going and leaves nothing behind.
    #[test]
    fn a_backup_is_private_and_a_failed_one_names_its_target() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("temporary directory");
        let options =
            StoreOptions { data_dir: Some(dir.path().to_owned()), ..StoreOptions::for_tests() };
        drop(Db::open(options, 0).expect("opens"));
        let copy = dir.path().join("copy.sqlite3");
        backup(dir.path(), &copy).expect("backs up");
        let mode = std::fs::metadata(&copy).expect("metadata").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        let nowhere = dir.path().join("missing-folder").join("copy.sqlite3");
        let error = backup(dir.path(), &nowhere).expect_err("fails");
        assert!(error.to_string().contains("missing-folder"), "{error}");
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .expect("lists")
            .map(|entry| entry.expect("entry").file_name())
            .filter(|name| name.to_string_lossy().contains("partial"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
}
