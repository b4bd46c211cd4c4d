//! `Lobby`: maps room names to `Room` actors, starts a room on its first join and closes it when
//! its last member leaves, and answers "which rooms exist" (active ones, then recently used
//! ones, which survive restarts through the store).
//!
//! Every join and leave passes through the lobby, so its member sets are the single truth about
//! when a room is empty; chat messages go straight from sessions to rooms.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use futures::FutureExt;
use protocol::{ErrorCode, MessageId, RoomInfo};

use crate::backlog::{BacklogLimit, FrameSender};
use crate::config::Config;
use crate::directory::{Directory, Emptied, Seated};
use crate::ids::{ConnId, MessageIds, RoomInstance};
use crate::inbound::Rejection;
use crate::metrics::Metrics;
use crate::policy::KeyedRate;
use crate::room::{self, PreviousClosed, Room, RoomContext, RoomEvent, SessionEvent};
use crate::room_state::{JoinRequest, RoomRules};
use crate::store::Opened;

pub use crate::directory::MAX_LISTED_ROOMS;

/// How often the room-opening limiters forget connections and addresses that are quiet.
const FORGET_OPENERS_EVERY: Duration = Duration::from_secs(60);
/// How often the private rooms are read again (a room made private on another server while
/// closed here tells this one nothing), and how soon after a failed read.
const PRIVATE_ROOMS_EVERY: Duration = Duration::from_secs(30);

pub struct Lobby {
    /// The open rooms, who sits in each, and the room list.
    rooms: Directory<Addr<Room>>,
    /// Rooms open at once, at most.
    max_rooms: usize,
    /// How fast one connection, and one address, may open rooms.
    opens_by_conn: KeyedRate<ConnId>,
    opens_by_address: KeyedRate<IpAddr>,
    /// How fast the connections of one address may join rooms, all together.
    joins_by_address: KeyedRate<IpAddr>,
    /// Who opened each open room, and how many open rooms each address opened: an address
    /// may keep at most `max_open_per_address` open.
    openers: HashMap<String, IpAddr>,
    opened_by_address: HashMap<IpAddr, usize>,
    max_open_per_address: usize,
    /// What every room is started with.
    context: RoomContext,
    /// Threads the rooms run on, so rooms spread over every core.
    arbiters: Vec<Arbiter>,
    next_arbiter: usize,
    /// Rooms told to close that may still be handling their last messages; a new instance of
    /// the same name loads its history only after the old one is done.
    closing: HashMap<String, (RoomInstance, PreviousClosed)>,
    metrics: Arc<Metrics>,
    /// Private rooms: left out of every room list. `None` until they could be read: then no
    /// room is listed (a room list is a convenience; a private room's name is not).
    private: Option<std::collections::HashSet<String>>,
    /// The rooms' privacy events since the read of the private rooms under way began: the
    /// read may be older than them, so they are applied again on top of it.
    privacy_events: Option<Vec<(String, bool)>>,
    registry: crate::room_state::Registry,
    /// The server is stopping: every member was told to go away, and so is any joiner since.
    stopping: bool,
}

impl Lobby {
    /// A lobby over the store in `opened`; ids continue after its last one. With `shared`
    /// (`--redis`), rooms keep their messages in Redis instead.
    pub fn start(
        config: Arc<Config>,
        metrics: Arc<Metrics>,
        opened: Opened,
        shared: Option<crate::shared::Shared>,
        registry: crate::room_state::Registry,
    ) -> Addr<Lobby> {
        let threads = config.room_threads.unwrap_or_else(crate::config::default_parallelism).max(1);
        Lobby::create(move |ctx| {
            let context = RoomContext {
                ids: Arc::new(MessageIds::starting_after(opened.last_id)),
                store: opened.store,
                rules: RoomRules {
                    recent: config.history_len,
                    page_bytes: config.abuse.page_bytes(),
                    rename_interval: *config.abuse.rename_interval,
                    retention: config.storage.options(),
                    epoch: opened.epoch.clone(),
                    registry: registry.clone(),
                },
                lobby: ctx.address().recipient(),
                metrics: metrics.clone(),
                limit: BacklogLimit {
                    frames: config.abuse.max_queued_frames,
                    bytes: config.abuse.max_queued_bytes,
                },
                shared,
            };
            let abuse = &config.abuse;
            ctx.run_interval(FORGET_OPENERS_EVERY, |lobby: &mut Lobby, _| {
                lobby.opens_by_conn.forget_quiet();
                lobby.opens_by_address.forget_quiet();
                lobby.joins_by_address.forget_quiet();
            });
            Lobby {
                rooms: Directory::new(opened.rooms),
                max_rooms: abuse.max_rooms,
                opens_by_conn: KeyedRate::per_minute(abuse.room_opens_per_minute),
                opens_by_address: KeyedRate::per_minute(abuse.room_opens_per_minute_per_address),
                joins_by_address: KeyedRate::per_minute(abuse.joins_per_minute_per_address),
                openers: HashMap::new(),
                opened_by_address: HashMap::new(),
                max_open_per_address: abuse.max_open_rooms_per_address,
                context,
                arbiters: (0..threads).map(|_| Arbiter::new()).collect(),
                next_arbiter: 0,
                closing: HashMap::new(),
                metrics,
                private: None,
                privacy_events: None,
                registry,
                stopping: false,
            }
        })
    }

    /// Reads the private rooms on a blocking thread (a store that is slow to answer holds no
    /// join), now and every [`PRIVATE_ROOMS_EVERY`]; a failed read keeps the last set.
    fn read_private_rooms(&mut self, ctx: &mut Context<Self>) {
        let registry = self.registry.clone();
        self.privacy_events = Some(Vec::new());
        let read = actix_web::rt::task::spawn_blocking(move || {
            registry.private_rooms().map(|rooms| rooms.into_iter().collect())
        });
        ctx.spawn(read.into_actor(self).map(|read, lobby, ctx| {
            let events = lobby.privacy_events.take().unwrap_or_default();
            if let Ok(Some(mut private)) = read {
                for (room, is_private) in events {
                    Lobby::note_privacy(&mut private, room, is_private);
                }
                lobby.private = Some(private);
            }
            ctx.run_later(PRIVATE_ROOMS_EVERY, |lobby, ctx| lobby.read_private_rooms(ctx));
        }));
    }

    fn note_privacy(set: &mut std::collections::HashSet<String>, room: String, private: bool) {
        if private {
            set.insert(room);
        } else {
            set.remove(&room);
        }
    }

    /// Whether `conn` from `address` may open a room that is not open: the server has room
    /// for one more, and neither the connection nor its address is opening rooms too fast.
    fn may_open(&self, conn: ConnId, address: IpAddr) -> Result<(), Rejection> {
        if self.rooms.open_rooms() >= self.max_rooms {
            self.metrics.refused_room_open("max_rooms");
            return Err(Rejection::new(
                ErrorCode::TooManyRooms,
                "The server has as many rooms open as it allows; join an open room or try later.",
            ));
        }
        if self.opened_by_address.get(&address).copied().unwrap_or(0) >= self.max_open_per_address {
            self.metrics.refused_room_open("address_rooms");
            return Err(Rejection::new(
                ErrorCode::TooManyRooms,
                "Your address keeps as many rooms open as it may; join an open room or try later.",
            ));
        }
        let checked =
            self.opens_by_conn.admit(&conn).map_err(|wait| ("connection_rate", wait)).and_then(
                |()| self.opens_by_address.admit(&address).map_err(|w| ("address_rate", w)),
            );
        if let Err((reason, wait)) = checked {
            self.metrics.refused_room_open(reason);
            return Err(Rejection::too_fast(wait, |ms| {
                format!("You are opening rooms too fast; wait {ms} ms or join an open one.")
            }));
        }
        Ok(())
    }

    /// Counts `conn` (from `address`) among `name`'s members, starting the room first if it is
    /// not open.
    fn seat(&mut self, name: &str, conn: ConnId, address: IpAddr) -> Seated<Addr<Room>> {
        self.seat_as(name, conn, address, false)
    }

    /// As [`Lobby::seat`]; a `visitor` (an API call) keeps the room open but is not listed.
    fn seat_as(
        &mut self,
        name: &str,
        conn: ConnId,
        address: IpAddr,
        visitor: bool,
    ) -> Seated<Addr<Room>> {
        let (context, closing) = (&self.context, &self.closing);
        let arbiter = self.arbiters[self.next_arbiter % self.arbiters.len()].handle();
        let metrics = &self.metrics;
        let mut started = false;
        let start = |instance| {
            started = true;
            metrics.rooms.inc();
            let previous = closing.get(name).map(|(_, closed)| closed.clone());
            let room = Room::new(name.to_owned(), instance, previous, context.clone());
            Room::start_in_arbiter(&arbiter, |_| room)
        };
        let seated = if visitor {
            self.rooms.visit(name, conn, start)
        } else {
            self.rooms.seat(name, conn, start)
        };
        if started {
            self.next_arbiter = self.next_arbiter.wrapping_add(1);
            self.openers.insert(name.to_owned(), address);
            *self.opened_by_address.entry(address).or_default() += 1;
        }
        seated
    }

    /// Removes `conn` from `name`'s members, closing the room if that emptied it.
    fn release(&mut self, name: &str, conn: ConnId, ctx: &mut Context<Self>) {
        if let Some(emptied) = self.rooms.release(name, conn) {
            self.close(name, emptied, ctx);
        }
    }

    /// Closes a room that emptied. The close is answered once the room has handled everything
    /// sent to it before, so every message it accepted is queued in the store by then; until
    /// that answer a new instance of the room waits to load its history.
    fn close(&mut self, name: &str, emptied: Emptied<Addr<Room>>, ctx: &mut Context<Self>) {
        self.metrics.rooms.dec();
        if let Some(opener) = self.openers.remove(name)
            && let Some(opened) = self.opened_by_address.get_mut(&opener)
        {
            *opened -= 1;
            if *opened == 0 {
                self.opened_by_address.remove(&opener);
            }
        }
        let Emptied { handle, instance } = emptied;
        // An earlier instance may still be closing too (this one then never loaded, or loaded
        // behind it): the next instance must wait for both, so the answer chains them.
        let earlier = self.closing.get(name).map(|(_, closed)| closed.clone());
        let sent = handle.send(room::Close);
        let closed = async move {
            if let Some(earlier) = earlier {
                earlier.await;
            }
            let _ = sent.await;
        }
        .boxed()
        .shared();
        self.closing.insert(name.to_owned(), (instance, closed.clone()));
        let name = name.to_owned();
        ctx.spawn(closed.into_actor(self).map(move |(), lobby, _| {
            if lobby.closing.get(&name).is_some_and(|(closing, _)| *closing == instance) {
                lobby.closing.remove(&name);
            }
        }));
    }
}

impl Actor for Lobby {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.read_private_rooms(ctx);
    }

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
    /// Who the connection is signed in as, if anyone.
    pub account: Option<crate::room_state::SignedIn>,
    /// The only rooms the connection may enter (its token's): the welcome lists no others.
    pub only_rooms: Option<Arc<[String]>>,
    /// An invitation code to the room, if private.
    pub invite: Option<String>,
    pub since: Option<MessageId>,
    /// The epoch `since` comes from.
    pub epoch: Option<String>,
    pub session: Recipient<SessionEvent>,
    pub frames: FrameSender,
    /// Where the connection comes from, for the limits on opening rooms and joining: already
    /// the key the limits count under (an IPv6 address's /64, see `policy::limit_key`).
    pub address: IpAddr,
    /// The rooms the session is in now and leaves once this join succeeds (none for a join
    /// that adds a room).
    pub leaving: Vec<String>,
    /// When the session stops waiting for the answer.
    pub deadline: std::time::Instant,
}

/// Where a session landed.
#[derive(Debug)]
pub struct Joined {
    pub room: Addr<Room>,
    pub nick: String,
    pub instance: RoomInstance,
}

/// A join's answer from its room, applied by the lobby before the joiner hears it: the seats
/// the room replaced, or the newcomer's seat it refused, are released.
#[derive(Message)]
#[rtype(result = "()")]
struct Settle {
    room: String,
    release: Vec<ConnId>,
}

impl Handler<Settle> for Lobby {
    type Result = ();

    fn handle(&mut self, msg: Settle, ctx: &mut Self::Context) {
        for conn in msg.release {
            self.release(&msg.room, conn, ctx);
        }
    }
}

impl Handler<Join> for Lobby {
    // A task of its own, not a future in the lobby's context: actix polls every future of a
    // context at each of its wake-ups, so thousands of joins waiting on rooms (a restart's
    // reconnects) made each lobby message cost as much as all of them.
    type Result = ResponseFuture<Result<Joined, Rejection>>;

    fn handle(&mut self, msg: Join, ctx: &mut Self::Context) -> Self::Result {
        let name = msg.room;
        let conn = msg.conn;
        if self.stopping {
            // Accepted just before the server stopped accepting: told to go away like the
            // members were, rather than seated in a room that has already said goodbye.
            msg.session.do_send(SessionEvent::GoingAway);
            let refusal = Rejection::new(ErrorCode::Unavailable, "The server is restarting.");
            return Box::pin(std::future::ready(Err(refusal)));
        }
        if let Err(wait) = self.joins_by_address.admit(&msg.address) {
            self.metrics.refused_room_open("address_joins");
            let refusal = Rejection::too_fast(wait, |ms| {
                format!("Too many joins from your address; wait {ms} ms.")
            });
            return Box::pin(std::future::ready(Err(refusal)));
        }
        if !self.rooms.is_open(&name)
            && let Err(rejection) = self.may_open(conn, msg.address)
        {
            return Box::pin(std::future::ready(Err(rejection)));
        }
        // Count the member before the room answers, so a leave processed meanwhile cannot
        // close the room under the joiner. A member renaming itself is counted already; a
        // refusal then must not release the seat it keeps.
        let Seated { handle: addr, instance, newcomer } = self.seat(&name, conn, msg.address);
        let mut leaving = msg.leaving;
        leaving.retain(|leaving| *leaving != name);
        let request = room::Join {
            request: JoinRequest {
                conn,
                nick: msg.nick,
                client: msg.client,
                account: msg.account,
                since: msg.since,
                epoch: msg.epoch,
                rooms: visible(
                    self.rooms.list(&leaving),
                    self.private.as_ref(),
                    msg.only_rooms.as_deref(),
                ),
                address: Some(msg.address),
                invite: msg.invite,
            },
            session: msg.session,
            frames: msg.frames,
            // A little before the lobby or the session gives up, whichever is first, so that
            // a join the room admits is always one they still answer.
            deadline: (std::time::Instant::now() + crate::config::ROOM_JOIN_TIMEOUT)
                .min(msg.deadline)
                - Duration::from_millis(500),
        };
        let answer = addr.send(request).timeout(crate::config::ROOM_JOIN_TIMEOUT);
        let lobby = ctx.address();
        Box::pin(async move {
            let refused = if newcomer { vec![conn] } else { Vec::new() };
            let (release, answer) = match answer.await {
                Ok(Ok(admitted)) => (
                    admitted.replaced,
                    Ok(Joined { room: addr, nick: admitted.nick, instance: admitted.instance }),
                ),
                Ok(Err(rejection)) => (refused, Err(rejection)),
                Err(error) => {
                    tracing::warn!(%error, room = %name, instance, "room did not answer a join");
                    if newcomer {
                        // Should the room admit it after all, it leaves right after.
                        addr.do_send(room::Leave { conn, farewell: false });
                    }
                    let words = "That room is not available; try again.";
                    (refused, Err(Rejection::new(ErrorCode::Unavailable, words)))
                }
            };
            // Before the joiner hears the answer: its next join (a refused nick tried again)
            // must find the seat already released, not released after it was taken again.
            if !release.is_empty() {
                let _ = lobby.send(Settle { room: name, release }).await;
            }
            answer
        })
    }
}

/// Holds a seat in `room` for a call of the HTTP API, opening the room if it is closed (within
/// the limits on opening rooms), so that the room stays open until the caller's [`Leave`].
#[derive(Message)]
#[rtype(result = "Result<Addr<Room>, Rejection>")]
pub struct Visit {
    pub room: String,
    /// A connection id of its own, which the caller's `Leave` names.
    pub conn: ConnId,
    /// The caller's address (its limit key), for the limits on opening rooms.
    pub address: IpAddr,
}

impl Handler<Visit> for Lobby {
    type Result = Result<Addr<Room>, Rejection>;

    fn handle(&mut self, msg: Visit, _: &mut Self::Context) -> Self::Result {
        if !self.rooms.is_open(&msg.room) {
            self.may_open(msg.conn, msg.address)?;
        }
        Ok(self.seat_as(&msg.room, msg.conn, msg.address, true).handle)
    }
}

/// A session left a room (or never finished joining it). Leaving twice is harmless.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Leave {
    pub room: String,
    pub conn: ConnId,
    /// The client asked to leave (and keeps its other rooms): the room tells it too.
    pub farewell: bool,
}

impl Handler<Leave> for Lobby {
    type Result = ();

    fn handle(&mut self, msg: Leave, ctx: &mut Self::Context) {
        tracing::debug!(conn = msg.conn, room = %msg.room, "leave");
        if let Some(room) = self.rooms.handle(&msg.room) {
            room.do_send(room::Leave { conn: msg.conn, farewell: msg.farewell });
        }
        self.release(&msg.room, msg.conn, ctx);
    }
}

impl Handler<RoomEvent> for Lobby {
    type Result = ();

    fn handle(&mut self, event: RoomEvent, ctx: &mut Self::Context) {
        match event {
            RoomEvent::Evicted { room, conn, instance } => {
                if let Some(emptied) = self.rooms.release_from(&room, conn, instance) {
                    self.close(&room, emptied, ctx);
                }
            }
            RoomEvent::Closed { room, last_ts } => self.rooms.closed(room, last_ts),
            RoomEvent::Privacy { room, private } => {
                // Kept for the read under way, if any (it takes milliseconds).
                if let Some(events) = self.privacy_events.as_mut() {
                    events.push((room.clone(), private));
                }
                if let Some(set) = self.private.as_mut() {
                    Lobby::note_privacy(set, room, private);
                }
            }
        }
    }
}

/// The room list: active rooms busiest first, then quiet ones (at most [`MAX_LISTED_ROOMS`]).
#[derive(Message)]
#[rtype(result = "Vec<RoomInfo>")]
pub struct ListRooms {
    /// The only rooms the asker may enter (its token's): no others are listed.
    pub only_rooms: Option<Arc<[String]>>,
}

impl Handler<ListRooms> for Lobby {
    type Result = MessageResult<ListRooms>;

    fn handle(&mut self, msg: ListRooms, _: &mut Self::Context) -> Self::Result {
        let list = self.rooms.list(&[]);
        MessageResult(visible(list, self.private.as_ref(), msg.only_rooms.as_deref()))
    }
}

/// The rooms of `list` that a connection allowed only `only` may see: never the `private`
/// ones, and none while those are not known.
fn visible(
    mut list: Vec<RoomInfo>,
    private: Option<&std::collections::HashSet<String>>,
    only: Option<&[String]>,
) -> Vec<RoomInfo> {
    let Some(private) = private else { return Vec::new() };
    list.retain(|room| !private.contains(&room.name));
    if let Some(only) = only {
        list.retain(|room| only.contains(&room.name));
    }
    list
}

/// The server is shutting down: every room tells its members to go away. Answers once every
/// room has queued that, so the caller can then stop the HTTP server.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

impl Handler<Shutdown> for Lobby {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Shutdown, _: &mut Self::Context) -> Self::Result {
        self.stopping = true;
        let told: Vec<_> = self.rooms.handles().map(|room| room.send(room::Shutdown)).collect();
        Box::pin(async move {
            for result in futures::future::join_all(told).await {
                if let Err(error) = result {
                    tracing::warn!(%error, "a room did not answer the shutdown");
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::store::{Store, StoreOptions};
    use crate::testing::Collect;

    fn join(conn: ConnId, session: Recipient<SessionEvent>) -> Join {
        Join {
            room: "r".into(),
            conn,
            nick: Some(format!("n{conn}")),
            client: None,
            account: None,
            only_rooms: None,
            invite: None,
            since: None,
            epoch: None,
            session,
            frames: crate::backlog::channel().0,
            address: IpAddr::from([127, 0, 0, 1]),
            leaving: Vec::new(),
            deadline: std::time::Instant::now() + Duration::from_secs(5),
        }
    }

    /// Room lists leave out the private rooms, and a token's holder sees only its rooms;
    /// while the private rooms cannot be read (the store away at start), nothing is listed.
    #[test]
    fn lists_leave_out_private_rooms_and_fail_closed() {
        let room = |name: &str| RoomInfo { name: name.into(), members: 1 };
        let list = vec![room("open"), room("hidden"), room("team")];
        let private: std::collections::HashSet<String> = ["hidden".to_owned()].into();
        let names = |list: Vec<RoomInfo>| list.into_iter().map(|r| r.name).collect::<Vec<_>>();
        assert_eq!(names(visible(list.clone(), Some(&private), None)), ["open", "team"]);
        let only = ["team".to_owned(), "hidden".to_owned()];
        assert_eq!(names(visible(list.clone(), Some(&private), Some(&only))), ["team"]);
        assert!(visible(list, None, None).is_empty(), "not known: nothing listed");
    }

    /// A join that reaches the lobby after the shutdown began (accepted just before the server
    /// stopped accepting) is turned away with `unavailable`, and its session told to go away,
    /// rather than seated in a room that has already said goodbye; one that came before was
    /// seated and is told to go away by its room.
    #[test]
    fn a_join_after_the_shutdown_is_turned_away() {
        actix_rt::System::new().block_on(async {
            let metrics = Arc::new(Metrics::default());
            let opened = Store::open(StoreOptions::for_tests(), metrics.clone())
                .expect("an in-memory store");
            let config = Arc::new(Config::default());
            let registry = crate::room_state::Registry(None);
            let lobby = Lobby::start(config, metrics, opened, None, registry);
            let (early, late) =
                (Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(Vec::new())));
            let early_session = Collect(early.clone()).start().recipient();
            let late_session = Collect(late.clone()).start().recipient();

            let seated = lobby.send(join(1, early_session)).await.expect("the lobby answers");
            assert!(seated.is_ok(), "before the shutdown: seated");
            lobby.send(Shutdown).await.expect("the rooms said goodbye");
            let refused = lobby.send(join(2, late_session)).await.expect("the lobby answers");
            let refused = refused.err().map(|rejection| rejection.code);
            assert_eq!(refused, Some(ErrorCode::Unavailable), "after it: turned away");

            let heard = |events: &Arc<Mutex<Vec<SessionEvent>>>| {
                events.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
            };
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while heard(&early).is_empty() || heard(&late).is_empty() {
                assert!(std::time::Instant::now() < deadline, "a session was not told");
                actix_rt::task::yield_now().await;
            }
            assert_eq!(
                (heard(&early), heard(&late)),
                (vec![SessionEvent::GoingAway], vec![SessionEvent::GoingAway])
            );
        });
    }
}
