//! `Lobby`: maps room names to `Room` actors, starts a room on its first join and closes it when
//! its last member leaves, and answers "which rooms exist" (active ones, then recently used
//! ones, which survive restarts through the store).
//!
//! Every join and leave passes through the lobby, so its member sets are the single truth about
//! when a room is empty; chat messages go straight from sessions to rooms.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use actix::prelude::*;
use protocol::{ErrorCode, MessageId, RoomInfo, UnixMillis};

use crate::ConnId;
use crate::backlog::{BacklogLimit, FrameSender};
use crate::config::Config;
use crate::history::MessageIds;
use crate::inbound::Rejection;
use crate::metrics::Metrics;
use crate::room::{self, Room, RoomContext};
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
    metrics: Arc<Metrics>,
}

struct ActiveRoom {
    addr: Addr<Room>,
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
                lobby: ctx.address(),
                metrics: metrics.clone(),
                limit: BacklogLimit {
                    frames: config.abuse.max_queued_frames,
                    bytes: config.abuse.max_queued_bytes,
                },
            };
            Lobby {
                rooms: HashMap::new(),
                quiet: opened.rooms.into_iter().collect(),
                context,
                arbiters: (0..threads).map(|_| Arbiter::new()).collect(),
                next_arbiter: 0,
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
            let room = Room::new(name.to_owned(), self.context.clone());
            self.metrics.rooms.inc();
            let arbiter = &self.arbiters[self.next_arbiter % self.arbiters.len()];
            self.next_arbiter = self.next_arbiter.wrapping_add(1);
            let addr = Room::start_in_arbiter(&arbiter.handle(), |_| room);
            self.rooms.insert(name.to_owned(), ActiveRoom { addr, members: HashSet::new() });
        }
        self.rooms.get_mut(name).expect("room was just inserted")
    }

    /// Removes `conn` from `name`'s members, closing the room if that emptied it.
    fn release(&mut self, name: &str, conn: ConnId) {
        let Some(room) = self.rooms.get_mut(name) else { return };
        room.members.remove(&conn);
        if room.members.is_empty()
            && let Some(room) = self.rooms.remove(name)
        {
            room.addr.do_send(room::Close);
            self.metrics.rooms.dec();
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
}

impl Handler<Join> for Lobby {
    type Result = ResponseActFuture<Self, Result<Joined, Rejection>>;

    fn handle(&mut self, msg: Join, _: &mut Self::Context) -> Self::Result {
        let name = msg.room;
        let conn = msg.conn;
        // Count the member before the room answers, so a leave processed meanwhile cannot
        // close the room under the joiner.
        let room = self.open(&name);
        room.members.insert(conn);
        let addr = room.addr.clone();
        let request = room::Join {
            conn,
            nick: msg.nick,
            client: msg.client,
            session: msg.session,
            rooms: self.room_list(Some((conn, &name))),
            since: msg.since,
            frames: msg.frames,
        };
        Box::pin(addr.send(request).into_actor(self).map(move |answer, lobby, _| match answer {
            Ok(Ok(admitted)) => {
                if let Some(old) = admitted.replaced {
                    lobby.release(&name, old);
                }
                Ok(Joined { room: addr, nick: admitted.nick })
            }
            Ok(Err(rejection)) => {
                lobby.release(&name, conn);
                Err(rejection)
            }
            Err(error) => {
                tracing::warn!(%error, room = %name, "room did not answer a join");
                lobby.release(&name, conn);
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

    fn handle(&mut self, msg: Leave, _: &mut Self::Context) {
        tracing::debug!(conn = msg.conn, room = %msg.room, "leave");
        if let Some(room) = self.rooms.get(&msg.room) {
            room.addr.do_send(room::Leave { conn: msg.conn });
        }
        self.release(&msg.room, msg.conn);
    }
}

/// A room dropped a member that was not reading (it already left the room itself).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Evicted {
    pub room: String,
    pub conn: ConnId,
}

impl Handler<Evicted> for Lobby {
    type Result = ();

    fn handle(&mut self, msg: Evicted, _: &mut Self::Context) {
        self.release(&msg.room, msg.conn);
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
