//! `Lobby`: maps room names to `Room` actors, starts a room on its first join and closes it when
//! its last member leaves, and answers "which rooms exist".
//!
//! Every join and leave passes through the lobby, so its member sets are the single truth about
//! when a room is empty; chat messages go straight from sessions to rooms.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use actix::prelude::*;
use protocol::{ErrorCode, RoomInfo};

use crate::ConnId;
use crate::backlog::{Backlog, BacklogLimit};
use crate::config::Config;
use crate::history::{MessageIds, SharedLog};
use crate::inbound::Rejection;
use crate::metrics::Metrics;
use crate::room::{self, Room};
use crate::session::Session;

/// How many rooms a room list names at most (the busiest first).
pub const MAX_LISTED_ROOMS: usize = 100;

pub struct Lobby {
    config: Arc<Config>,
    rooms: HashMap<String, ActiveRoom>,
    /// Logs of emptied rooms, kept for `config.retained_rooms` rooms.
    dormant: HashMap<String, (u64, SharedLog)>,
    /// Emptied rooms by the order they were emptied in, oldest first, to forget them in turn.
    dormant_order: BTreeMap<u64, String>,
    dormant_seq: u64,
    ids: Arc<MessageIds>,
    /// Threads the rooms run on, so rooms spread over every core.
    arbiters: Vec<Arbiter>,
    next_arbiter: usize,
    metrics: Arc<Metrics>,
}

struct ActiveRoom {
    addr: Addr<Room>,
    log: SharedLog,
    members: HashSet<ConnId>,
}

impl Lobby {
    pub fn new(config: Arc<Config>, metrics: Arc<Metrics>) -> Self {
        let threads = config.room_threads.unwrap_or_else(crate::default_parallelism).max(1);
        Lobby {
            config,
            rooms: HashMap::new(),
            dormant: HashMap::new(),
            dormant_order: BTreeMap::new(),
            dormant_seq: 0,
            ids: Arc::default(),
            arbiters: (0..threads).map(|_| Arbiter::new()).collect(),
            next_arbiter: 0,
            metrics,
        }
    }

    /// The active rooms, busiest first. `moving` is a connection that is joining `to`: it is
    /// counted there only, since it leaves its current room once the join succeeds.
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
        rooms.truncate(MAX_LISTED_ROOMS);
        rooms
    }

    fn open(&mut self, name: &str, lobby: Addr<Lobby>) -> &mut ActiveRoom {
        if !self.rooms.contains_key(name) {
            let log = match self.dormant.remove(name) {
                Some((seq, log)) => {
                    self.dormant_order.remove(&seq);
                    log
                }
                None => SharedLog::new(self.config.history_len),
            };
            let room = Room::new(
                name.to_owned(),
                log.clone(),
                self.ids.clone(),
                lobby,
                self.metrics.clone(),
                BacklogLimit {
                    frames: self.config.abuse.max_queued_frames,
                    bytes: self.config.abuse.max_queued_bytes,
                },
            );
            self.metrics.rooms.inc();
            let arbiter = &self.arbiters[self.next_arbiter % self.arbiters.len()];
            self.next_arbiter = self.next_arbiter.wrapping_add(1);
            let addr = Room::start_in_arbiter(&arbiter.handle(), |_| room);
            self.rooms.insert(name.to_owned(), ActiveRoom { addr, log, members: HashSet::new() });
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
            self.retain(name.to_owned(), room.log);
        }
    }

    fn retain(&mut self, name: String, log: SharedLog) {
        if self.config.retained_rooms == 0 {
            return;
        }
        self.dormant_seq += 1;
        self.dormant_order.insert(self.dormant_seq, name.clone());
        self.dormant.insert(name, (self.dormant_seq, log));
        while self.dormant.len() > self.config.retained_rooms {
            let Some((_, oldest)) = self.dormant_order.pop_first() else { break };
            self.dormant.remove(&oldest);
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
    pub session: Addr<Session>,
    pub backlog: Arc<Backlog>,
}

/// Where a session landed.
#[derive(Debug)]
pub struct Joined {
    pub room: Addr<Room>,
    pub nick: String,
}

impl Handler<Join> for Lobby {
    type Result = ResponseActFuture<Self, Result<Joined, Rejection>>;

    fn handle(&mut self, msg: Join, ctx: &mut Self::Context) -> Self::Result {
        let name = msg.room;
        let conn = msg.conn;
        // Count the member before the room answers, so a leave processed meanwhile cannot
        // close the room under the joiner.
        let room = self.open(&name, ctx.address());
        room.members.insert(conn);
        let addr = room.addr.clone();
        let request = room::Join {
            conn,
            nick: msg.nick,
            client: msg.client,
            session: msg.session,
            rooms: self.room_list(Some((conn, &name))),
            backlog: msg.backlog,
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

/// The active rooms, busiest first (at most [`MAX_LISTED_ROOMS`]).
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
