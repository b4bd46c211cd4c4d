//! `Lobby`: maps room names to `Room` actors, starts a room on its first join and closes it when
//! its last member leaves, and answers "which rooms exist" (active ones, then recently used
//! ones, which survive restarts through the store).
//!
//! Every join and leave passes through the lobby, so its member sets are the single truth about
//! when a room is empty; chat messages go straight from sessions to rooms.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use actix::prelude::*;
use futures::FutureExt;
use protocol::{ErrorCode, MessageId, RoomInfo, UnixMillis};

use crate::ConnId;
use crate::backlog::{BacklogLimit, FrameSender};
use crate::config::Config;
use crate::history::MessageIds;
use crate::inbound::Rejection;
use crate::metrics::Metrics;
use crate::room::{self, PreviousClosed, Room, RoomContext, RoomInstance};
use crate::session::Session;
use crate::store::Opened;

/// How many rooms a room list names at most (the busiest first).
pub const MAX_LISTED_ROOMS: usize = 100;

pub struct Lobby {
    rooms: HashMap<String, ActiveRoom>,
    /// Rooms with messages and no members, by their last message's time (at most
    /// `2 * MAX_LISTED_ROOMS`, the most recent).
    quiet: HashMap<String, UnixMillis>,
    /// What every room is started with.
    context: RoomContext,
    /// Threads the rooms run on, so rooms spread over every core.
    arbiters: Vec<Arbiter>,
    next_arbiter: usize,
    /// The instance number the next room opened gets.
    next_instance: RoomInstance,
    /// Rooms told to close that may still be handling their last messages; a new instance of
    /// the same name loads its history only after the old one is done.
    closing: HashMap<String, (RoomInstance, PreviousClosed)>,
    metrics: Arc<Metrics>,
}

struct ActiveRoom {
    addr: Addr<Room>,
    instance: RoomInstance,
    members: HashSet<ConnId>,
}

impl Lobby {
    /// A lobby over the store in `opened`; ids continue after its last one.
    pub fn start(config: Arc<Config>, metrics: Arc<Metrics>, opened: Opened) -> Addr<Lobby> {
        let threads = config.room_threads.unwrap_or_else(crate::default_parallelism).max(1);
        Lobby::create(move |ctx| {
            let context = RoomContext {
                ids: Arc::new(MessageIds::starting_after(opened.last_id)),
                store: opened.store,
                retention: config.storage.options(),
                recent: config.history_len,
                page_bytes: config.abuse.page_bytes(),
                lobby: ctx.address(),
                metrics: metrics.clone(),
                limit: BacklogLimit {
                    frames: config.abuse.max_queued_frames,
                    bytes: config.abuse.max_queued_bytes,
                },
                rename_interval: *config.abuse.rename_interval,
            };
            Lobby {
                rooms: HashMap::new(),
                quiet: opened.rooms.into_iter().collect(),
                context,
                arbiters: (0..threads).map(|_| Arbiter::new()).collect(),
                next_arbiter: 0,
                next_instance: 1,
                closing: HashMap::new(),
                metrics,
            }
        })
    }

    /// The active rooms, busiest first, then quiet rooms, most recently used first. `moving` is
    /// a connection that is joining `to`: it is counted there only, since it leaves its current
    /// room once the join succeeds.
    fn room_list(&self, moving: Option<(ConnId, &str)>) -> Vec<RoomInfo> {
        let mut rooms: Vec<RoomInfo> = self
            .rooms
            .iter()
            .filter_map(|(name, room)| {
                let mut members = room.members.len();
                if let Some((conn, to)) = moving
                    && name != to
                    && room.members.contains(&conn)
                {
                    members -= 1;
                }
                let members = u32::try_from(members).unwrap_or(u32::MAX);
                (members > 0).then(|| RoomInfo { name: name.clone(), members })
            })
            .collect();
        rooms.sort_by(|a, b| b.members.cmp(&a.members).then_with(|| a.name.cmp(&b.name)));
        if rooms.len() < MAX_LISTED_ROOMS {
            let active = |name: &String| rooms.iter().any(|room| room.name == *name);
            let mut quiet: Vec<(&String, &UnixMillis)> =
                self.quiet.iter().filter(|(name, _)| !active(name)).collect();
            quiet.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
            let quiet: Vec<RoomInfo> = quiet
                .into_iter()
                .map(|(name, _)| RoomInfo { name: name.clone(), members: 0 })
                .collect();
            rooms.extend(quiet);
        }
        rooms.truncate(MAX_LISTED_ROOMS);
        rooms
    }

    fn open(&mut self, name: &str) -> &mut ActiveRoom {
        if !self.rooms.contains_key(name) {
            let instance = self.next_instance;
            self.next_instance += 1;
            let previous = self.closing.get(name).map(|(_, closed)| closed.clone());
            let room = Room::new(name.to_owned(), instance, previous, self.context.clone());
            self.metrics.rooms.inc();
            let arbiter = &self.arbiters[self.next_arbiter % self.arbiters.len()];
            self.next_arbiter = self.next_arbiter.wrapping_add(1);
            let addr = Room::start_in_arbiter(&arbiter.handle(), |_| room);
            let active = ActiveRoom { addr, instance, members: HashSet::new() };
            self.rooms.insert(name.to_owned(), active);
        }
        self.rooms.get_mut(name).expect("room was just inserted")
    }

    /// Removes `conn` from `name`'s members, closing the room if that emptied it.
    fn release(&mut self, name: &str, conn: ConnId, ctx: &mut Context<Self>) {
        let Some(room) = self.rooms.get_mut(name) else { return };
        room.members.remove(&conn);
        if room.members.is_empty()
            && let Some(room) = self.rooms.remove(name)
        {
            self.metrics.rooms.dec();
            // Answered once the room has handled everything sent to it before, so every
            // message it accepted is queued in the store by then.
            let closed = room.addr.send(room::Close).map(|_| ()).boxed().shared();
            self.closing.insert(name.to_owned(), (room.instance, closed.clone()));
            let name = name.to_owned();
            ctx.spawn(closed.into_actor(self).map(move |(), lobby, _| {
                if lobby.closing.get(&name).is_some_and(|(closing, _)| *closing == room.instance) {
                    lobby.closing.remove(&name);
                }
            }));
        }
    }
}

impl Actor for Lobby {
    type Context = Context<Self>;

    fn stopped(&mut self, _: &mut Self::Context) {
        for arbiter in &self.arbiters {
            arbiter.stop();
        }
    }
}

/// Put a session in a room, creating the room if needed.
#[derive(Message)]
#[rtype(result = "Result<Joined, Rejection>")]
pub struct Join {
    pub room: String,
    pub conn: ConnId,
    pub nick: Option<String>,
    pub client: Option<String>,
    pub since: Option<MessageId>,
    pub session: Addr<Session>,
    pub frames: FrameSender,
}

/// Where a session landed.
#[derive(Debug)]
pub struct Joined {
    pub room: Addr<Room>,
    pub nick: String,
    pub instance: RoomInstance,
}

impl Handler<Join> for Lobby {
    type Result = ResponseActFuture<Self, Result<Joined, Rejection>>;

    fn handle(&mut self, msg: Join, _: &mut Self::Context) -> Self::Result {
        let name = msg.room;
        let conn = msg.conn;
        // Count the member before the room answers, so a leave processed meanwhile cannot
        // close the room under the joiner. A member renaming itself is counted already; a
        // refusal then must not release the seat it keeps.
        let room = self.open(&name);
        let newcomer = room.members.insert(conn);
        let (addr, instance) = (room.addr.clone(), room.instance);
        let request = room::Join {
            conn,
            nick: msg.nick,
            client: msg.client,
            session: msg.session,
            rooms: self.room_list(Some((conn, &name))),
            since: msg.since,
            frames: msg.frames,
        };
        let answer = addr.send(request).timeout(crate::config::ROOM_JOIN_TIMEOUT);
        Box::pin(answer.into_actor(self).map(move |answer, lobby, ctx| match answer {
            Ok(Ok(admitted)) => {
                if let Some(old) = admitted.replaced {
                    lobby.release(&name, old, ctx);
                }
                Ok(Joined { room: addr, nick: admitted.nick, instance: admitted.instance })
            }
            Ok(Err(rejection)) => {
                if newcomer {
                    lobby.release(&name, conn, ctx);
                }
                Err(rejection)
            }
            Err(error) => {
                tracing::warn!(%error, room = %name, instance, "room did not answer a join");
                if newcomer {
                    // Should the room admit it after all, it leaves right after.
                    addr.do_send(room::Leave { conn });
                    lobby.release(&name, conn, ctx);
                }
                Err(Rejection::new(
                    ErrorCode::Unavailable,
                    "That room is not available; try again.",
                ))
            }
        }))
    }
}

/// A session left a room (or never finished joining it). Leaving twice is harmless.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Leave {
    pub room: String,
    pub conn: ConnId,
}

impl Handler<Leave> for Lobby {
    type Result = ();

    fn handle(&mut self, msg: Leave, ctx: &mut Self::Context) {
        tracing::debug!(conn = msg.conn, room = %msg.room, "leave");
        if let Some(room) = self.rooms.get(&msg.room) {
            room.addr.do_send(room::Leave { conn: msg.conn });
        }
        self.release(&msg.room, msg.conn, ctx);
    }
}

/// A room dropped a member that was not reading (it already left the room itself).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Evicted {
    pub room: String,
    pub conn: ConnId,
    pub instance: RoomInstance,
}

impl Handler<Evicted> for Lobby {
    type Result = ();

    fn handle(&mut self, msg: Evicted, ctx: &mut Self::Context) {
        if self.rooms.get(&msg.room).is_some_and(|room| room.instance == msg.instance) {
            self.release(&msg.room, msg.conn, ctx);
        }
    }
}

/// A room with messages closed (its last member left): list it among the quiet rooms.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Closed {
    pub room: String,
    pub last_ts: UnixMillis,
}

impl Handler<Closed> for Lobby {
    type Result = ();

    fn handle(&mut self, msg: Closed, _: &mut Self::Context) {
        self.quiet.insert(msg.room, msg.last_ts);
        if self.quiet.len() > 2 * MAX_LISTED_ROOMS {
            let mut by_age: Vec<(UnixMillis, String)> =
                self.quiet.drain().map(|(name, ts)| (ts, name)).collect();
            by_age.sort_unstable_by(|a, b| b.cmp(a));
            by_age.truncate(MAX_LISTED_ROOMS);
            self.quiet = by_age.into_iter().map(|(ts, name)| (name, ts)).collect();
        }
    }
}

/// The room list: active rooms busiest first, then quiet ones (at most [`MAX_LISTED_ROOMS`]).
#[derive(Message)]
#[rtype(result = "Vec<RoomInfo>")]
pub struct ListRooms;

impl Handler<ListRooms> for Lobby {
    type Result = MessageResult<ListRooms>;

    fn handle(&mut self, _: ListRooms, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.room_list(None))
    }
}

/// The server is shutting down: every room tells its members to go away. Answers once every
/// room has queued that, so the caller can then stop the HTTP server.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

impl Handler<Shutdown> for Lobby {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Shutdown, _: &mut Self::Context) -> Self::Result {
        let told: Vec<_> = self.rooms.values().map(|room| room.addr.send(room::Shutdown)).collect();
        Box::pin(async move {
            for result in futures::future::join_all(told).await {
                if let Err(error) = result {
                    tracing::warn!(%error, "a room did not answer the shutdown");
                }
            }
        })
    }
}
