//! Durable storage of chat messages in SQLite, off the actors' hot path.
//!
//! One thread owns the database. Rooms hand it [`Append`]s and carry on; the thread drains
//! whatever has queued up, writes it in one transaction (one `fsync` for the whole batch),
//! and only then tells each room which of its messages are durable ([`Written`]). Rooms relay
//! and acknowledge a message only after that, so a crash never takes back a message anyone
//! saw. Loading a room's history goes through the same thread and is answered after every
//! append queued before it is written (without cutting a batch short), so a room reopened
//! right after closing sees all of its messages.
//!
//! Retention is applied here too: a room keeps its newest `retain_messages` messages (trimmed
//! in steps, a little over the bound between steps), and messages older than `retain_for` are
//! deleted once a minute. Each room remembers the highest id it lost to retention, so a client
//! asking for what it missed can be told when some of it is gone.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures::channel::oneshot;
use protocol::{ChatMessage, MessageId, UnixMillis};
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::history::{Loaded, Stored, stored_size};
use crate::ids::RoomInstance;
use crate::metrics::Metrics;
use crate::outbound::now_millis;

/// The database file inside the data directory.
pub const DATABASE_FILE: &str = "chat.sqlite3";
/// Most appends written in one transaction.
const MAX_BATCH: usize = 4096;
/// How often messages past their age are deleted, at most (a short `retain_for` sweeps more
/// often: four times per retention period).
const AGE_SWEEP_INTERVAL: Duration = Duration::from_secs(60);
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

/// How many rooms have stored messages, against the most the database may hold: with
/// `--retain-bytes` per room this bounds the database. The storage thread keeps the count;
/// rooms read it before storing the first message of a room.
#[derive(Debug)]
pub struct StoredRooms {
    count: AtomicUsize,
    max: usize,
}

impl StoredRooms {
    /// Takes a place for a room that is about to store its first message; `false` if the
    /// database holds its maximum of rooms. A place taken by a message that then fails to
    /// be stored is given back at the next age sweep or restart.
    pub fn claim(&self) -> bool {
        self.count
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |count| {
                (count < self.max).then_some(count + 1)
            })
            .is_ok()
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
    #[error("cannot start the storage thread: {0}")]
    Thread(std::io::Error),
    #[error("the storage thread has stopped")]
    Stopped,
    #[error("the store did not answer in time")]
    TimedOut,
    #[error("too many writes are waiting for the disk")]
    Busy,
}

/// A message for the store to write.
pub struct Append {
    pub stored: Stored,
    /// The room instance that sent it: the answer goes to that instance alone.
    pub instance: RoomInstance,
    /// Told once the batch holding this message is written (or failed).
    pub notify: Recipient<Written>,
}

/// The store's answer for a room's appends in one batch.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub enum Written {
    /// Every message of this room up to and including `upto` that was handed to the store is
    /// durable.
    Durable { upto: MessageId },
    /// The batch failed: these messages were not stored.
    Failed { ids: Vec<MessageId> },
}

/// What the database held at start.
#[derive(Debug)]
pub struct Opened {
    pub store: Store,
    /// The highest message id ever stored; new ids continue after it.
    pub last_id: MessageId,
    /// Rooms that have messages, most recently active first, with their last activity.
    pub rooms: Vec<(String, UnixMillis)>,
}

enum Command {
    Append(Append),
    Load { room: String, reply: oneshot::Sender<Result<Loaded, StoreError>> },
}

/// A handle to the storage thread; cheap to clone. The thread ends once every handle is gone
/// and what they queued is written.
#[derive(Debug, Clone)]
pub struct Store {
    commands: mpsc::SyncSender<Command>,
    /// Rooms with stored messages, kept by the storage thread.
    pub rooms: Arc<StoredRooms>,
}

impl Store {
    /// Opens (or creates) the database, reads where it left off and starts the storage thread.
    pub fn open(
        options: StoreOptions,
        metrics: std::sync::Arc<Metrics>,
    ) -> Result<Opened, StoreError> {
        let connection = match &options.data_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)
                    .map_err(|source| StoreError::DataDir { path: dir.clone(), source })?;
                open_file(&dir.join(DATABASE_FILE), options.sync)?
            }
            None => Connection::open_in_memory()?,
        };
        create_schema(&connection)?;
        let last_id = read_last_id(&connection)?;
        let rooms = read_rooms(&connection, options.age_cutoff(now_millis()))?;
        // Bounded: writes the disk cannot keep up with are refused (`unavailable`) rather
        // than piled up in memory.
        let (commands, queue) = mpsc::sync_channel(options.max_pending_writes.max(1));
        let with_messages = read_rooms_with_messages(&connection)?;
        let stored = Arc::new(StoredRooms {
            count: AtomicUsize::new(with_messages.len()),
            max: options.max_stored_rooms,
        });
        metrics.stored_rooms.set(i64::try_from(with_messages.len()).unwrap_or(i64::MAX));
        let writer = Writer {
            connection,
            options,
            metrics,
            unpruned: HashMap::new(),
            with_messages,
            stored: stored.clone(),
        };
        std::thread::Builder::new()
            .name("chat-store".into())
            .spawn(move || writer.run(&queue))
            .map_err(StoreError::Thread)?;
        Ok(Opened { store: Store { commands, rooms: stored }, last_id, rooms })
    }

    /// Queues a message to be written; the answer comes to `append.notify` as [`Written`].
    /// Refused at once if the queue is full.
    pub fn append(&self, append: Append) -> Result<(), StoreError> {
        self.queue(Command::Append(append))
    }

    fn queue(&self, command: Command) -> Result<(), StoreError> {
        self.commands.try_send(command).map_err(|error| match error {
            mpsc::TrySendError::Full(_) => StoreError::Busy,
            mpsc::TrySendError::Disconnected(_) => StoreError::Stopped,
        })
    }

    /// A room's retained messages, read after every append queued before this call.
    pub async fn load(&self, room: String) -> Result<Loaded, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.queue(Command::Load { room, reply })?;
        answer.await.map_err(|_| StoreError::Stopped)?
    }
}

fn open_file(path: &Path, sync: SyncMode) -> Result<Connection, StoreError> {
    let connection = Connection::open(path)?;
    // WAL: readers never block the writer, and a commit is one append to the log.
    connection.pragma_update(None, "journal_mode", "WAL")?;
    connection.pragma_update(None, "synchronous", sync.pragma())?;
    Ok(connection)
}

fn create_schema(connection: &Connection) -> Result<(), StoreError> {
    connection.execute_batch(
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
         ) WITHOUT ROWID;
         PRAGMA user_version = 1;",
    )?;
    Ok(())
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

fn to_id(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

struct Writer {
    connection: Connection,
    options: StoreOptions,
    metrics: std::sync::Arc<Metrics>,
    /// Messages and bytes written per room since its last trim.
    unpruned: HashMap<String, (usize, usize)>,
    /// The rooms with stored messages, and their count as rooms read it.
    with_messages: HashSet<String>,
    stored: Arc<StoredRooms>,
}

impl Writer {
    fn run(mut self, queue: &mpsc::Receiver<Command>) {
        let mut batch = Vec::new();
        let mut swept = Instant::now();
        let sweep_every = self.options.retain_for.map_or(AGE_SWEEP_INTERVAL, |age| {
            (age / 4).clamp(Duration::from_millis(100), AGE_SWEEP_INTERVAL)
        });
        loop {
            // Wakes up to sweep even when nothing is written.
            let first = match queue.recv_timeout(sweep_every) {
                Ok(command) => Some(command),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            let mut next = first;
            let mut loads = Vec::new();
            // At most one batch's worth of commands per round, so loads (and the rooms waiting
            // for `Written`) are answered within a batch even while appends keep coming.
            let mut taken = 0;
            while taken < MAX_BATCH
                && let Some(command) = next.take().or_else(|| queue.try_recv().ok())
            {
                taken += 1;
                match command {
                    Command::Append(append) => {
                        batch.push(append);
                        if batch.len() >= MAX_BATCH {
                            self.flush(&mut batch);
                        }
                    }
                    // Answered once the batch holding every earlier append is written.
                    Command::Load { room, reply } => loads.push((room, reply)),
                }
            }
            self.flush(&mut batch);
            for (room, reply) in loads {
                // A room that stopped waiting (it timed out) needs no answer.
                if !reply.is_canceled() {
                    let _ = reply.send(self.load(&room));
                }
            }
            if swept.elapsed() >= sweep_every {
                swept = Instant::now();
                if let Err(error) = self.sweep_by_age() {
                    tracing::error!(%error, "could not delete messages past their age");
                }
            }
        }
        tracing::debug!("storage thread stopped");
    }

    /// Writes `batch` in one transaction and tells each room how it went.
    fn flush(&mut self, batch: &mut Vec<Append>) {
        if batch.is_empty() {
            return;
        }
        let outcome = self.write(batch);
        self.metrics.store_batches.inc();
        // Per room instance: the notify address and its highest id (or its ids, on failure).
        let mut rooms: HashMap<RoomInstance, (&Recipient<Written>, Vec<MessageId>)> =
            HashMap::new();
        for append in batch.iter() {
            rooms
                .entry(append.instance)
                .or_insert_with(|| (&append.notify, Vec::new()))
                .1
                .push(append.stored.message.id);
        }
        match outcome {
            Ok(()) => {
                self.metrics.messages_stored.inc_by(batch.len() as u64);
                // Rooms claimed their place before storing their first message; this only
                // remembers which rooms have messages, for the sweep.
                for append in batch.iter() {
                    if !self.with_messages.contains(&append.stored.message.room) {
                        self.with_messages.insert(append.stored.message.room.clone());
                    }
                }
                let count = self.stored.count.load(Ordering::Relaxed);
                self.metrics.stored_rooms.set(i64::try_from(count).unwrap_or(i64::MAX));
                for (notify, ids) in rooms.into_values() {
                    let upto = ids.into_iter().max().unwrap_or(0);
                    notify.do_send(Written::Durable { upto });
                }
            }
            Err(error) => {
                tracing::error!(%error, messages = batch.len(), "could not store messages");
                self.metrics.store_failures.inc();
                for (notify, ids) in rooms.into_values() {
                    notify.do_send(Written::Failed { ids });
                }
            }
        }
        let mut written = Vec::new();
        for append in batch.drain(..) {
            let size = stored_size(&append.stored.message);
            let room = append.stored.message.room;
            let unpruned = self.unpruned.entry(room.clone()).or_default();
            *unpruned = (unpruned.0 + 1, unpruned.1 + size);
            written.push(room);
        }
        written.sort_unstable();
        written.dedup();
        self.trim_rooms(&written);
    }

    fn write(&mut self, batch: &[Append]) -> Result<(), StoreError> {
        let transaction = self.connection.transaction()?;
        let mut last_id = 0;
        {
            let mut insert = transaction.prepare_cached(
                "INSERT INTO messages (id, room, sender, text, ts, client_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            let mut touch = transaction.prepare_cached(
                "INSERT INTO rooms (name, last_ts) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET last_ts = MAX(last_ts, excluded.last_ts)",
            )?;
            for Stored { message, client_id } in batch.iter().map(|append| &append.stored) {
                insert.execute(params![
                    to_sql(message.id),
                    message.room,
                    message.from,
                    message.text,
                    to_sql(message.ts),
                    client_id,
                ])?;
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

    /// Trims the rooms of `written` that have grown an eighth past one of their bounds since
    /// their last trim. (Only rooms just written to can have grown, so the check costs per
    /// batch what the batch holds, not per room ever written.)
    fn trim_rooms(&mut self, written: &[String]) {
        let retain = self.options.retain_messages.max(1);
        let step = retain / 8 + 1;
        let byte_step = self.options.retain_bytes / 8 + 1;
        let due: Vec<String> = written
            .iter()
            .filter(|room| {
                self.unpruned
                    .get(room.as_str())
                    .is_some_and(|(messages, bytes)| *messages >= step || *bytes >= byte_step)
            })
            .cloned()
            .collect();
        for room in due {
            self.unpruned.remove(&room);
            if let Err(error) = self.trim_room(&room, retain) {
                tracing::error!(%error, room, "could not trim a room's history");
            }
        }
    }

    fn trim_room(&mut self, room: &str, retain: usize) -> Result<(), StoreError> {
        let transaction = self.connection.transaction()?;
        let by_count: Option<i64> = transaction
            .query_row(
                "SELECT id FROM messages WHERE room = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2",
                params![room, to_sql(retain as u64)],
                |row| row.get(0),
            )
            .optional()?;
        // The newest message whose running total (newest first) passes the byte bound; the
        // newest message of all stays whatever its size. Sizes as `history::stored_size`.
        let by_bytes: Option<i64> = transaction
            .query_row(
                "SELECT id FROM (
                     SELECT id,
                            ROW_NUMBER() OVER newest_first AS place,
                            SUM(length(CAST(text AS BLOB)) + length(CAST(sender AS BLOB)))
                                OVER newest_first AS total
                     FROM messages WHERE room = ?1
                     WINDOW newest_first AS (ORDER BY id DESC)
                 )
                 WHERE total > ?2 AND place > 1 ORDER BY id DESC LIMIT 1",
                params![room, to_sql(self.options.retain_bytes as u64)],
                |row| row.get(0),
            )
            .optional()?;
        let cutoff = by_count.max(by_bytes);
        if let Some(cutoff) = cutoff {
            transaction.execute(
                "DELETE FROM messages WHERE room = ?1 AND id <= ?2",
                params![room, cutoff],
            )?;
            mark_trimmed(&transaction, room, cutoff)?;
        }
        transaction.commit()?;
        Ok(())
    }

    fn sweep_by_age(&mut self) -> Result<(), StoreError> {
        let Some(cutoff) = self.options.age_cutoff(now_millis()) else { return Ok(()) };
        let transaction = self.connection.transaction()?;
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
        transaction.commit()?;
        if !expired.is_empty() {
            // Rooms whose every message expired no longer count against the maximum; the
            // count starts again from what is stored (places claimed and never used return).
            let mut still = self
                .connection
                .prepare_cached("SELECT EXISTS (SELECT 1 FROM messages WHERE room = ?1)")?;
            for (room, _) in &expired {
                if !still.query_row([room], |row| row.get::<_, bool>(0))? {
                    self.with_messages.remove(room);
                }
            }
            let count = self.with_messages.len();
            self.stored.count.store(count, Ordering::Relaxed);
            self.metrics.stored_rooms.set(i64::try_from(count).unwrap_or(i64::MAX));
        }
        Ok(())
    }

    fn load(&self, room: &str) -> Result<Loaded, StoreError> {
        let retain = self.options.retain_messages.max(1);
        let mut statement = self.connection.prepare_cached(
            "SELECT id, sender, text, ts, client_id FROM messages
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

fn mark_trimmed(transaction: &Transaction<'_>, room: &str, upto: i64) -> Result<(), StoreError> {
    transaction.execute(
        "UPDATE rooms SET trimmed_upto = MAX(trimmed_upto, ?2) WHERE name = ?1",
        params![room, upto],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Collects what the store tells one room instance.
    struct Instance(Arc<Mutex<Vec<Written>>>);

    impl Actor for Instance {
        type Context = Context<Self>;
    }

    impl Handler<Written> for Instance {
        type Result = ();

        fn handle(&mut self, written: Written, _: &mut Self::Context) {
            self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(written);
        }
    }

    fn writer() -> Writer {
        let options = StoreOptions {
            data_dir: None,
            retain_messages: 100,
            retain_bytes: usize::MAX,
            max_pending_writes: 16,
            max_stored_rooms: 10,
            retain_for: None,
            sync: SyncMode::Full,
        };
        let connection = Connection::open_in_memory().expect("in-memory database");
        create_schema(&connection).expect("schema");
        let stored = Arc::new(StoredRooms { count: AtomicUsize::new(0), max: 10 });
        Writer {
            connection,
            options,
            metrics: Default::default(),
            unpruned: HashMap::new(),
            with_messages: HashSet::new(),
            stored,
        }
    }

    fn append(id: MessageId, instance: RoomInstance, notify: &Addr<Instance>) -> Append {
        let message =
            ChatMessage { id, room: "r".into(), from: "a".into(), text: "t".into(), ts: id };
        Append {
            stored: Stored { message, client_id: None },
            instance,
            notify: notify.clone().recipient(),
        }
    }

    /// Two instances of one room (the closing one and its successor) in one batch: each is
    /// told about its own messages, none is left waiting.
    #[test]
    fn each_room_instance_hears_of_its_own_appends() {
        actix_rt::System::new().block_on(async {
            let (old, new) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(Vec::new())));
            let old_room = Instance(old.clone()).start();
            let new_room = Instance(new.clone()).start();
            let mut writer = writer();
            let mut batch =
                vec![append(1, 1, &old_room), append(2, 2, &new_room), append(3, 1, &old_room)];
            writer.flush(&mut batch);
            let told = |seen: &Arc<Mutex<Vec<Written>>>| {
                seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len()
            };
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while told(&old) + told(&new) < 2 {
                assert!(std::time::Instant::now() < deadline, "a room instance was not told");
                actix_rt::task::yield_now().await;
            }
            let only = |seen: &Arc<Mutex<Vec<Written>>>| {
                let seen = seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                match seen.as_slice() {
                    [Written::Durable { upto }] => *upto,
                    other => panic!("expected one durable notice, got {other:?}"),
                }
            };
            assert_eq!((only(&old), only(&new)), (3, 2));
        });
    }

    /// The byte bound trims the database like the room's memory: the newest messages that fit,
    /// never fewer than one, and a load honours it even before the next trim.
    #[test]
    fn rooms_are_trimmed_to_their_bytes() {
        let mut writer = writer();
        writer.options.retain_bytes = 25;
        actix_rt::System::new().block_on(async {
            let room = Instance(Arc::new(Mutex::new(Vec::new()))).start();
            // Each message weighs 10 bytes: a 9-byte text and a 1-byte nick.
            let mut batch: Vec<Append> = (1..=5)
                .map(|id| {
                    let mut append = append(id, 1, &room);
                    append.stored.message.text = "x".repeat(9);
                    append
                })
                .collect();
            writer.flush(&mut batch);
        });
        let loaded = writer.load("r").expect("loads");
        let ids: Vec<MessageId> = loaded.messages.iter().map(|s| s.message.id).collect();
        assert_eq!((ids, loaded.trimmed_upto), (vec![4, 5], 3));
        writer.trim_room("r", 100).expect("trims");
        let stored: i64 = writer
            .connection
            .query_row("SELECT COUNT(*) FROM messages", [], |row| row.get(0))
            .expect("count");
        assert_eq!(stored, 2, "the database holds what the room keeps");
        writer.options.retain_bytes = 1;
        writer.trim_room("r", 100).expect("trims");
        assert_eq!(writer.load("r").expect("loads").messages.len(), 1, "the newest stays");
    }

    /// Past `max_pending_writes` waiting commands, appends are refused at once (`Busy`), so a
    /// disk slower than the traffic costs refusals, not memory.
    #[test]
    fn a_full_queue_refuses_appends() {
        actix_rt::System::new().block_on(async {
            let (commands, _queue) = mpsc::sync_channel(2);
            let rooms = Arc::new(StoredRooms { count: AtomicUsize::new(0), max: 10 });
            let store = Store { commands, rooms };
            let room = Instance(Arc::new(Mutex::new(Vec::new()))).start();
            assert!(store.append(append(1, 1, &room)).is_ok());
            assert!(store.append(append(2, 1, &room)).is_ok());
            assert!(matches!(store.append(append(3, 1, &room)), Err(StoreError::Busy)));
        });
    }

    /// A load sees every message appended before it, and appends after it are written too.
    #[test]
    fn loads_see_earlier_appends() {
        let mut writer = writer();
        actix_rt::System::new().block_on(async {
            let room = Instance(Arc::new(Mutex::new(Vec::new()))).start();
            let mut batch = vec![append(1, 1, &room), append(2, 1, &room)];
            writer.flush(&mut batch);
        });
        let loaded = writer.load("r").expect("loads");
        let ids: Vec<MessageId> = loaded.messages.iter().map(|s| s.message.id).collect();
        assert_eq!(ids, [1, 2]);
    }
}
