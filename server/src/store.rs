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
//! The thread decides when to trim a room (once it has grown an eighth past a bound) and when
//! to sweep messages past their age (once a minute at most); the database itself, its schema
//! and its SQL are [`Db`]'s (db.rs).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures::channel::oneshot;
use protocol::{MessageId, UnixMillis};

use crate::db::Db;
pub use crate::db::{DATABASE_FILE, StoreError, StoreOptions, SyncMode};
use crate::history::{Loaded, Stored, stored_size};
use crate::ids::RoomInstance;
use crate::metrics::Metrics;
use crate::outbound::now_millis;

/// Most appends written in one transaction.
const MAX_BATCH: usize = 4096;
/// How often messages past their age are deleted, at most (a short `retain_for` sweeps more
/// often: four times per retention period).
const AGE_SWEEP_INTERVAL: Duration = Duration::from_secs(60);
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
    /// database holds its maximum of rooms. A room whose first message is not stored gives its
    /// place back ([`StoredRooms::release`]).
    pub fn claim(&self) -> bool {
        self.count
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |count| {
                (count < self.max).then_some(count + 1)
            })
            .is_ok()
    }

    /// Gives back a place claimed for a first message that was not stored.
    pub fn release(&self) {
        let _ = self
            .count
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |count| count.checked_sub(1));
    }
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
    /// The store's epoch (see `db::Start::epoch`).
    pub epoch: String,
}

enum Command {
    Append(Append),
    Load {
        room: String,
        reply: oneshot::Sender<Result<Loaded, StoreError>>,
    },
    /// Write what came before, close the database, then say so.
    Close {
        done: oneshot::Sender<()>,
    },
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
        let max_pending = options.max_pending_writes.max(1);
        let max_stored_rooms = options.max_stored_rooms;
        let (db, start) = Db::open(options, now_millis())?;
        // Bounded: writes the disk cannot keep up with are refused (`unavailable`) rather
        // than piled up in memory.
        let (commands, queue) = mpsc::sync_channel(max_pending);
        let stored = Arc::new(StoredRooms {
            count: AtomicUsize::new(start.with_messages.len()),
            max: max_stored_rooms,
        });
        metrics.stored_rooms.set(i64::try_from(start.with_messages.len()).unwrap_or(i64::MAX));
        let writer = Writer {
            db,
            metrics,
            unpruned: HashMap::new(),
            with_messages: start.with_messages,
            stored: stored.clone(),
        };
        std::thread::Builder::new()
            .name("chat-store".into())
            .spawn(move || writer.run(&queue))
            .map_err(StoreError::Thread)?;
        let store = Store { commands, rooms: stored };
        Ok(Opened { store, last_id: start.last_id, rooms: start.recent_rooms, epoch: start.epoch })
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

    /// Writes everything queued before this call, then closes the database (which moves its
    /// write-ahead log into the database file, so that the file alone holds every message),
    /// waiting at most `limit`. Appends after this are refused with [`StoreError::Stopped`].
    pub async fn close(&self, limit: Duration) {
        let (done, closed) = oneshot::channel();
        let commands = self.commands.clone();
        let closing = async move {
            // Waits for room in the queue without blocking a thread, so the limit holds.
            let mut command = Command::Close { done };
            loop {
                match commands.try_send(command) {
                    Ok(()) => break,
                    Err(mpsc::TrySendError::Full(back)) => command = back,
                    Err(mpsc::TrySendError::Disconnected(_)) => return None,
                }
                actix_rt::time::sleep(Duration::from_millis(10)).await;
            }
            closed.await.ok()
        };
        match actix_rt::time::timeout(limit, closing).await {
            Ok(Some(())) => tracing::info!("message store closed"),
            Ok(None) => tracing::warn!("the message store had already stopped"),
            Err(_) => tracing::warn!(?limit, "the message store did not close in time"),
        }
    }

    /// A room's retained messages, read after every append queued before this call.
    pub async fn load(&self, room: String) -> Result<Loaded, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.queue(Command::Load { room, reply })?;
        answer.await.map_err(|_| StoreError::Stopped)?
    }
}

/// One room instance's appends in a batch.
struct Group<'a> {
    room: &'a str,
    notify: &'a Recipient<Written>,
    ids: Vec<MessageId>,
    /// Their size, as `history::stored_size`.
    bytes: usize,
}

struct Writer {
    db: Db,
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
        let sweep_every = self.db.options().retain_for.map_or(AGE_SWEEP_INTERVAL, |age| {
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
            let mut closing = None;
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
                    Command::Close { done } => {
                        closing = Some(done);
                        break;
                    }
                }
            }
            self.flush(&mut batch);
            for (room, reply) in loads {
                // A room that stopped waiting (it timed out) needs no answer.
                if !reply.is_canceled() {
                    let _ = reply.send(self.db.load(&room));
                }
            }
            if let Some(done) = closing {
                drop(self);
                let _ = done.send(());
                return;
            }
            if swept.elapsed() >= sweep_every {
                swept = Instant::now();
                self.sweep();
            }
        }
        tracing::debug!("storage thread stopped");
    }

    /// Writes `batch` in one transaction and tells each room how it went.
    fn flush(&mut self, batch: &mut Vec<Append>) {
        if batch.is_empty() {
            return;
        }
        let outcome = self.db.write(batch.iter().map(|append| &append.stored));
        self.metrics.store_batches.inc();
        // Per room instance: its room, the notify address, its ids, and the bytes written.
        let mut rooms: HashMap<RoomInstance, Group<'_>> = HashMap::new();
        for append in batch.iter() {
            let group = rooms.entry(append.instance).or_insert_with(|| Group {
                room: &append.stored.message.room,
                notify: &append.notify,
                ids: Vec::new(),
                bytes: 0,
            });
            group.ids.push(append.stored.message.id);
            group.bytes += stored_size(&append.stored.message);
        }
        let stored = outcome.is_ok();
        match outcome {
            Ok(()) => {
                self.metrics.messages_stored.inc_by(batch.len() as u64);
                let count = self.stored.count.load(Ordering::Relaxed);
                self.metrics.stored_rooms.set(i64::try_from(count).unwrap_or(i64::MAX));
            }
            Err(error) => {
                tracing::error!(%error, messages = batch.len(), "could not store messages");
                self.metrics.store_failures.inc();
            }
        }
        let mut written: Vec<String> = Vec::new();
        for group in rooms.into_values() {
            if !stored {
                group.notify.do_send(Written::Failed { ids: group.ids });
                continue;
            }
            let upto = group.ids.iter().copied().max().unwrap_or(0);
            group.notify.do_send(Written::Durable { upto });
            // Rooms claimed their place before storing their first message; this only
            // remembers which rooms have messages, for the sweep.
            if !self.with_messages.contains(group.room) {
                self.with_messages.insert(group.room.to_owned());
            }
            let unpruned = match self.unpruned.get_mut(group.room) {
                Some(unpruned) => unpruned,
                None => self.unpruned.entry(group.room.to_owned()).or_default(),
            };
            *unpruned = (unpruned.0 + group.ids.len(), unpruned.1 + group.bytes);
            if !written.iter().any(|room| room == group.room) {
                written.push(group.room.to_owned());
            }
        }
        batch.clear();
        self.trim_rooms(&written);
    }

    /// Trims the rooms of `written` that have grown an eighth past one of their bounds since
    /// their last trim. (Only rooms just written to can have grown, so the check costs per
    /// batch what the batch holds, not per room ever written.)
    fn trim_rooms(&mut self, written: &[String]) {
        let step = self.db.options().retain_messages.max(1) / 8 + 1;
        let byte_step = self.db.options().retain_bytes / 8 + 1;
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
            if let Err(error) = self.db.trim_room(&room) {
                tracing::error!(%error, room, "could not trim a room's history");
            }
        }
    }

    /// Deletes messages past their age; rooms left without any no longer count against the
    /// maximum (the count starts again from what is stored: places claimed and never used
    /// return).
    fn sweep(&mut self) {
        match self.db.sweep_by_age(now_millis()) {
            Ok(emptied) if !emptied.is_empty() => {
                for room in &emptied {
                    self.with_messages.remove(room);
                }
                let count = self.with_messages.len();
                self.stored.count.store(count, Ordering::Relaxed);
                self.metrics.stored_rooms.set(i64::try_from(count).unwrap_or(i64::MAX));
            }
            Ok(_) => {}
            Err(error) => tracing::error!(%error, "could not delete messages past their age"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::testing::Collect;

    fn writer() -> Writer {
        let (db, _) = Db::open(StoreOptions::for_tests(), 0).expect("in-memory database");
        let stored = Arc::new(StoredRooms { count: AtomicUsize::new(0), max: 10 });
        Writer {
            db,
            metrics: Default::default(),
            unpruned: HashMap::new(),
            with_messages: HashSet::new(),
            stored,
        }
    }

    fn append(id: MessageId, instance: RoomInstance, notify: &Addr<Collect<Written>>) -> Append {
        let message = protocol::ChatMessage {
            id,
            room: "r".into(),
            from: "a".into(),
            text: "t".into(),
            ts: id,
            bot: false,
            signed_in: false,
            ..Default::default()
        };
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
            let old_room = Collect(old.clone()).start();
            let new_room = Collect(new.clone()).start();
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

    /// Past `max_pending_writes` waiting commands, appends are refused at once (`Busy`), so a
    /// disk slower than the traffic costs refusals, not memory.
    #[test]
    fn a_full_queue_refuses_appends() {
        actix_rt::System::new().block_on(async {
            let (commands, _queue) = mpsc::sync_channel(2);
            let rooms = Arc::new(StoredRooms { count: AtomicUsize::new(0), max: 10 });
            let store = Store { commands, rooms };
            let room = Collect(Arc::new(Mutex::new(Vec::new()))).start();
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
            let room = Collect(Arc::new(Mutex::new(Vec::new()))).start();
            let mut batch = vec![append(1, 1, &room), append(2, 1, &room)];
            writer.flush(&mut batch);
        });
        let loaded = writer.db.load("r").expect("loads");
        let ids: Vec<MessageId> = loaded.messages.iter().map(|s| s.message.id).collect();
        assert_eq!(ids, [1, 2]);
    }
}
