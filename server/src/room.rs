//! `Room`: one actor per chat room, a thin adapter around [`RoomState`], which holds the
//! room's rules. The actor receives joins, posts and the store's answers, hands them to the
//! state, and carries out the effects: frames into members' queues (each broadcast encoded
//! once), messages to the store, notices to sessions and the lobby.
//!
//! Rooms call back up only through recipients of types defined here ([`SessionEvent`],
//! [`RoomEvent`]), so this file imports neither the session nor the lobby.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use futures::FutureExt;
use futures::channel::oneshot;
use futures::future::{self, BoxFuture};
use protocol::{ChatMessage, ClientId, ErrorCode, MessageId, UnixMillis};

use crate::backlog::{BacklogLimit, FrameSender};
use crate::ids::{ConnId, MessageIds, RoomInstance};
use crate::inbound::Rejection;
use crate::metrics::Metrics;
use crate::outbound::{encode, now_millis};
use crate::redis_log::Followed;
use crate::room_state::{Counted, Effect, JoinRequest, PageRequest, RoomRules, RoomState, Ticket};
use crate::shared::{Event, Shared};
use crate::store::{Append, Store, StoreError, Written};

/// Resolves once an earlier instance of the same room has handled its last message.
pub type PreviousClosed = future::Shared<BoxFuture<'static, ()>>;

/// What a room tells a member's session.
#[derive(Debug, Clone, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub enum SessionEvent {
    /// A newer connection of the same client took this connection's seat in the room.
    Replaced { instance: RoomInstance },
    /// The room dropped the session because too many frames were waiting for it: the client
    /// is not reading. Handled only if the client reads again; otherwise the kernel's
    /// stalled-write timeout ends the connection.
    TooSlow { instance: RoomInstance },
    /// The server is shutting down.
    GoingAway,
    /// A moderator removed this connection from the room (a kick or a ban): close, saying
    /// `reason`.
    Removed { instance: RoomInstance, reason: String },
}

/// What a room tells the lobby.
#[derive(Debug, Clone, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub enum RoomEvent {
    /// The room dropped a member that was not reading (it already left the room itself).
    Evicted { room: String, conn: ConnId, instance: RoomInstance },
    /// A room with messages closed (its last member left): list it among the quiet rooms.
    Closed { room: String, last_ts: UnixMillis },
    /// A room became private (left out of room lists) or public again.
    Privacy { room: String, private: bool },
}

/// A chat room: its state, and how to reach its members.
pub struct Room {
    name: String,
    instance: RoomInstance,
    /// The earlier instance of this room, still closing when this one was opened: the history
    /// is loaded only after it stopped, so that its last messages are in the store by then.
    previous: Option<PreviousClosed>,
    state: RoomState,
    /// Each member's session and frame queue.
    links: HashMap<ConnId, Link>,
    ids: Arc<MessageIds>,
    store: Store,
    lobby: Recipient<RoomEvent>,
    metrics: Arc<Metrics>,
    /// What may wait for one member before it is dropped as not reading.
    limit: BacklogLimit,
    /// API posts waiting for their message to be durable, by ticket.
    answers: HashMap<Ticket, oneshot::Sender<Result<ChatMessage, ErrorCode>>>,
    next_ticket: Ticket,
    /// With `--redis`: the shared log and presence the room posts to and follows.
    shared: Option<Shared>,
    /// The follower's stream in this actor (replaced when the room reloads).
    follower: Option<SpawnHandle>,
    /// Presence is synced every so often (started once, with the first follower).
    syncing: bool,
    /// (`--redis`) When the last catch-up read for a join failed (none since worked).
    caught_up: Option<Instant>,
}

struct Link {
    session: Recipient<SessionEvent>,
    frames: FrameSender,
}

/// What a room needs besides its name; the same for every room.
#[derive(Clone)]
pub struct RoomContext {
    pub ids: Arc<MessageIds>,
    pub store: Store,
    pub rules: RoomRules,
    pub lobby: Recipient<RoomEvent>,
    pub metrics: Arc<Metrics>,
    pub limit: BacklogLimit,
    /// With `--redis`: messages go to the shared log instead of the store.
    pub shared: Option<Shared>,
}

impl Room {
    pub fn new(
        name: String,
        instance: RoomInstance,
        previous: Option<PreviousClosed>,
        context: RoomContext,
    ) -> Self {
        let RoomContext { ids, store, rules, lobby, metrics, limit, shared } = context;
        Room {
            state: RoomState::new(name.clone(), rules),
            name,
            instance,
            previous,
            links: HashMap::new(),
            ids,
            store,
            lobby,
            metrics,
            limit,
            answers: HashMap::new(),
            next_ticket: 0,
            shared,
            follower: None,
            syncing: false,
            caught_up: None,
        }
    }

    /// Carries out `effects`, and those of dropping members that are not reading, in order.
    /// With `--redis`, joins, leaves and typing are told to the other servers too.
    fn apply(&mut self, effects: Vec<Effect>, ctx: &mut Context<Self>) {
        self.apply_from(effects, ctx, true);
    }

    /// As [`Room::apply`]; `announce: false` for what came from another server (told already).
    fn apply_from(&mut self, effects: Vec<Effect>, ctx: &mut Context<Self>, announce: bool) {
        let mut events = Vec::new();
        let mut queue: VecDeque<Effect> = effects.into();
        while let Some(effect) = queue.pop_front() {
            match effect {
                Effect::Send { to, message } => {
                    let Some(link) = self.links.get(&to) else { continue };
                    let frame = encode(&message);
                    let length = frame.len() as u64;
                    if link.frames.try_send(frame, self.limit) {
                        self.metrics.frames_out.inc();
                        self.metrics.bytes_out.inc_by(length);
                    } else {
                        queue.extend(self.evict(to));
                    }
                }
                Effect::Broadcast { message, except } => {
                    if announce && let Some(shared) = &self.shared {
                        events.extend(self.event(shared.presence.server(), &message));
                    }
                    // Encoded once: every member's queue shares the same bytes.
                    let frame = encode(&message);
                    let mut sent = 0;
                    let mut stalled = Vec::new();
                    for (conn, link) in &self.links {
                        if Some(*conn) == except {
                            continue;
                        }
                        if link.frames.try_send(frame.clone(), self.limit) {
                            sent += 1;
                        } else {
                            stalled.push(*conn);
                        }
                    }
                    self.metrics.frames_out.inc_by(sent);
                    self.metrics.bytes_out.inc_by(sent * frame.len() as u64);
                    for conn in stalled {
                        queue.extend(self.evict(conn));
                    }
                }
                Effect::Store(stored) if self.shared.is_some() => self.share(stored, ctx),
                Effect::Store(stored) => {
                    let id = stored.message.id;
                    let append = Append {
                        stored,
                        instance: self.instance,
                        notify: ctx.address().recipient(),
                    };
                    if let Err(error) = self.store.append(append) {
                        if matches!(error, StoreError::Busy) {
                            // Counted, not logged per message: under overload that would
                            // flood the log.
                            self.metrics.store_busy.inc();
                        } else {
                            // The storage thread is gone: as bad as a failed write, and alerted
                            // on the same way.
                            self.metrics.store_failures.inc();
                            tracing::error!(%error, room = %self.name, "cannot store messages");
                        }
                        queue.extend(self.state.not_stored(&[id]));
                    }
                }
                Effect::Removed { conn, reason } => {
                    if let Some(link) = self.links.remove(&conn) {
                        let instance = self.instance;
                        link.session.do_send(SessionEvent::Removed { instance, reason });
                    }
                }
                Effect::Sanctioned(record) => self.state.keep_sanction(&record),
                Effect::Privacy { private } => {
                    let room = self.name.clone();
                    self.lobby.do_send(RoomEvent::Privacy { room, private });
                }
                Effect::Replaced { conn } => {
                    if let Some(link) = self.links.remove(&conn) {
                        link.session.do_send(SessionEvent::Replaced { instance: self.instance });
                    }
                }
                Effect::Count(Counted::Duplicate) => {
                    self.metrics.duplicates.inc();
                }
                Effect::Count(Counted::TypingDropped) => {
                    self.metrics.typing_dropped.inc();
                }
                Effect::ReleaseStoredRoom => self.store.rooms.release(),
                Effect::Answer { ticket, outcome } => {
                    // The caller may have given up waiting: nobody to tell then.
                    if let Some(answer) = self.answers.remove(&ticket) {
                        let _ = answer.send(outcome);
                    }
                }
                Effect::Count(Counted::StoredRoomsFull) => {
                    self.metrics.error(ErrorCode::TooManyRooms);
                }
                Effect::Audit(audit) => {
                    self.metrics.moderated(audit.action);
                    self.state.audit(&audit, now_millis());
                }
                Effect::SeatTakenOver { nick } => {
                    if let Some(shared) = &self.shared {
                        let (s, tag) =
                            (shared.presence.server().to_owned(), self.state.local_tag(&nick));
                        events.push(Event::Joined { s, nick, tag });
                    }
                }
            }
        }
        if let Some(shared) = self.shared.clone()
            && !events.is_empty()
        {
            let room = self.name.clone();
            actix_rt::spawn(async move { shared.announce(&room, events).await });
        }
    }

    /// What the other servers are told of a broadcast here, if anything.
    fn event(&self, server: &str, message: &protocol::ServerMessage) -> Option<Event> {
        use protocol::ServerMessage;
        let s = server.to_owned();
        match message {
            ServerMessage::Joined { nick, .. } => {
                Some(Event::Joined { s, nick: nick.clone(), tag: self.state.local_tag(nick) })
            }
            ServerMessage::Left { nick, .. } => Some(Event::Left { s, nick: nick.clone() }),
            ServerMessage::Typing { nick, .. } => Some(Event::Typing { s, nick: nick.clone() }),
            ServerMessage::RoomSettings { private, by, .. } => {
                Some(Event::Configured { s, private: *private, by: by.clone() })
            }
            ServerMessage::Granted { nick, grant, revoke, by, .. } => Some(Event::Granted {
                s,
                nick: nick.clone(),
                grant: *grant,
                revoke: *revoke,
                by: by.clone(),
            }),
            ServerMessage::Moderated { nick, action, by, until, .. } => Some(Event::Moderated {
                s,
                nick: nick.clone(),
                action: *action,
                by: by.clone(),
                until: *until,
            }),
            _ => None,
        }
    }

    /// (`--redis`) Posts a message to the shared log; the answer acknowledges its senders, or
    /// tells them to send it again. Its id in `stored` is the room's ticket for it.
    fn share(&mut self, stored: crate::history::Stored, ctx: &mut Context<Self>) {
        let Some(shared) = self.shared.clone() else { return };
        let ticket = stored.message.id;
        let Some(place) = shared.begin_post() else {
            // Redis does not keep up: refused now rather than queued for seconds.
            self.metrics.store_busy.inc();
            let effects = self.state.not_stored(&[ticket]);
            self.apply(effects, ctx);
            return;
        };
        let room = self.name.clone();
        let answer = ctx.address();
        // A task of its own that answers with a message, not a future in the room's context:
        // actix polls every future of a context at each wake-up, so posts waiting on a slow
        // Redis would make each of the room's messages cost as much as all of them.
        actix_rt::spawn(async move {
            let posted = shared.post(&room, &stored).await;
            drop(place);
            answer.do_send(PostAnswered { ticket, posted });
        });
    }

    /// (`--redis`) Starts following the room's shared log from `start`, and renewing its
    /// presence.
    fn follow(&mut self, start: (Option<String>, MessageId), ctx: &mut Context<Self>) {
        let Some(shared) = self.shared.clone() else { return };
        let (sink, mut feed) = tokio::sync::mpsc::unbounded_channel();
        let (log, room, every) = (shared.log.clone(), self.name.clone(), shared.every);
        // Ends once the room stops (the receiver is dropped).
        actix_rt::spawn(async move { log.follow(&room, start, every, sink).await });
        let follower = ctx.add_stream(futures::stream::poll_fn(move |cx| feed.poll_recv(cx)));
        self.follower = Some(follower);
        if !std::mem::replace(&mut self.syncing, true) {
            ctx.run_interval(every, |room, ctx| room.sync_presence(ctx));
        }
    }

    /// (`--redis`) The room's history in Redis is another than the one it has (a new epoch):
    /// stop following, read the room again, tell every member to start it afresh (`reset`, a
    /// new welcome), and follow from there. Tried again until Redis answers.
    fn reload(&mut self, ctx: &mut Context<Self>) {
        let Some(shared) = self.shared.clone() else { return };
        if let Some(follower) = self.follower.take() {
            ctx.cancel_future(follower);
        }
        let (name, mine) = (self.name.clone(), self.state.local_members());
        let open = async move { shared.open(&name, &mine).await };
        let open = actix_rt::time::timeout(crate::config::STORE_TIMEOUT, open);
        ctx.spawn(open.into_actor(self).map(|opened, room, ctx| match opened {
            Ok(Ok(opening)) => {
                let others = opening.others.into_iter().map(|m| (m.server, m.nick, m.tag));
                let mut effects = room.state.remote_members(others.collect(), now_millis());
                effects.extend(room.state.reset(opening.loaded, opening.epoch));
                room.apply_from(effects, ctx, false);
                room.follow(opening.start, ctx);
            }
            _ => {
                room.metrics.redis_read_failures.inc();
                crate::redis_keys::warn_now_and_then(|| {
                    tracing::warn!(room = %room.name, "could not read a room again from Redis; retrying");
                });
                let every = room.shared.as_ref().map_or(crate::config::STORE_TIMEOUT, |s| s.every);
                ctx.run_later(every, |room, ctx| room.reload(ctx));
            }
        }));
    }

    /// (`--redis`) Writes this server's members of the room to presence and reads the others'.
    fn sync_presence(&mut self, ctx: &mut Context<Self>) {
        let Some(shared) = self.shared.clone() else { return };
        let (room, mine) = (self.name.clone(), self.state.local_members());
        let renew = self.state.last_id() == 0;
        let sync = async move {
            if renew {
                // Keeps the epoch of a room without messages while it is open here.
                shared.log.ensure_epoch(&room, &crate::redis_feed::new_epoch()).await?;
            }
            shared.presence.sync(&room, &mine).await
        };
        ctx.spawn(sync.into_actor(self).map(|others, room, ctx| match others {
            Ok(others) => {
                let others =
                    others.into_iter().map(|m| (m.server, m.nick, m.tag)).collect::<Vec<_>>();
                let mut effects = room.state.remote_members(others, now_millis());
                // Events cross servers at most once: a room made private elsewhere whose
                // event was missed turns here at the latest now.
                effects.extend(room.state.recheck_privacy(now_millis()));
                room.apply_from(effects, ctx, false);
            }
            Err(error) => {
                room.metrics.redis_read_failures.inc();
                tracing::debug!(%error, room = %room.name, "could not renew the room's presence");
            }
        }));
    }

    /// Drops a member that is not reading: its queue is freed and closed, its session told to
    /// close with 4003, the lobby frees its seat, and the others are told it left (the
    /// effects returned).
    fn evict(&mut self, conn: ConnId) -> Vec<Effect> {
        let Some(link) = self.links.remove(&conn) else { return Vec::new() };
        tracing::warn!(conn, room = %self.name, "dropping a client that is not reading");
        self.metrics.slow_reader_disconnects.inc();
        link.frames.close();
        link.session.do_send(SessionEvent::TooSlow { instance: self.instance });
        let instance = self.instance;
        self.lobby.do_send(RoomEvent::Evicted { room: self.name.clone(), conn, instance });
        self.state.leave(conn, now_millis()).1
    }
}

impl Actor for Room {
    type Context = Context<Self>;

    /// Loads the room's history before handling anything else (`ctx.wait` holds the mailbox),
    /// so the first welcome already carries it.
    fn started(&mut self, ctx: &mut Self::Context) {
        tracing::debug!(room = %self.name, instance = self.instance, "room opened");
        if let Some(shared) = self.shared.clone() {
            let name = self.name.clone();
            let open = async move { shared.open(&name, &[]).await };
            let open = actix_rt::time::timeout(crate::config::STORE_TIMEOUT, open);
            let open = open.into_actor(self).map(|opened, room, ctx| match opened {
                Ok(Ok(opening)) => {
                    room.state.load_shared(opening.loaded, opening.epoch);
                    room.tell_privacy();
                    let others = opening.others.into_iter().map(|m| (m.server, m.nick, m.tag));
                    room.state.remote_members(others.collect(), now_millis());
                    room.follow(opening.start, ctx);
                }
                failed => {
                    room.metrics.history_load_failures.inc();
                    room.metrics.redis_read_failures.inc();
                    let error = match failed {
                        Ok(Err(error)) => error.to_string(),
                        _ => "Redis did not answer in time".to_owned(),
                    };
                    crate::redis_keys::warn_now_and_then(|| {
                        tracing::error!(%error, room = %room.name, "could not open a room in Redis (its joins are refused)");
                    });
                }
            });
            ctx.wait(open);
            return;
        }
        let (store, name, previous) = (self.store.clone(), self.name.clone(), self.previous.take());
        let load = async move {
            if let Some(previous) = previous {
                previous.await;
            }
            store.load(name).await
        };
        // Bounded: joins wait behind the load, and a stuck one must end in refusals.
        let load = actix_rt::time::timeout(crate::config::STORE_TIMEOUT, load)
            .map(|loaded| loaded.unwrap_or(Err(StoreError::TimedOut)));
        let load = load.into_actor(self).map(|loaded, room, _| match loaded {
            Ok(loaded) => {
                room.state.load(loaded);
                room.tell_privacy();
            }
            Err(error) => {
                // Joins are refused until the room closes (its last joiner is refused, so it
                // empties at once) and a later join opens it again, loading afresh.
                room.metrics.history_load_failures.inc();
                tracing::error!(%error, room = %room.name, "could not load the room's history");
            }
        });
        ctx.wait(load);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        tracing::debug!(room = %self.name, "room closed");
        if let Some(last_ts) = self.state.last_ts() {
            self.lobby.do_send(RoomEvent::Closed { room: self.name.clone(), last_ts });
        }
    }
}

/// Admit a session to the room (or re-admit it under another nick).
#[derive(Message)]
#[rtype(result = "Result<Admitted, Rejection>")]
pub struct Join {
    /// Who asks, under which nick, and what it saw last.
    pub request: JoinRequest,
    pub session: Recipient<SessionEvent>,
    /// The session's frame queue.
    pub frames: FrameSender,
    /// When the lobby stops waiting for the answer: a join reached later is refused, since
    /// the session has been told it failed.
    pub deadline: Instant,
}

/// The outcome of a successful [`Join`].
#[derive(Debug)]
pub struct Admitted {
    pub nick: String,
    /// Older connections of the same client whose seats this join took.
    pub replaced: Vec<ConnId>,
    /// The room instance that admitted the session.
    pub instance: RoomInstance,
}

impl Handler<Join> for Room {
    type Result = AtomicResponse<Self, Result<Admitted, Rejection>>;

    /// With `--redis`, a joiner may have seen messages (on another server) that this server has
    /// not relayed yet: the room reads them from Redis first, relaying them to its members, so
    /// that the welcome resumes exactly after the joiner's `since`. The mailbox waits meanwhile
    /// (a leave of the joiner cannot overtake its join).
    fn handle(&mut self, msg: Join, ctx: &mut Self::Context) -> Self::Result {
        let (since, epoch) = (msg.request.since, msg.request.epoch.as_deref());
        // Ahead of this server: a `since` past what it has, or an epoch it has not learnt yet
        // (the room's first messages, relayed elsewhere).
        let ahead = since.is_some_and(|since| since > self.state.last_id())
            || epoch.is_some_and(|epoch| self.state.epoch().is_empty() && !epoch.is_empty());
        // Not again for a while after a read that failed (Redis is away: joins must not hold
        // the room half a second each). A made-up `since` costs one read per join, within the
        // join rate.
        let skip = self.caught_up.is_some_and(|failed| failed.elapsed() < CATCH_UP_PAUSE);
        let shared = self.shared.clone().filter(|_| ahead && !skip && self.state.is_loaded());
        let Some(shared) = shared else {
            let joined = self.admit(msg, ctx);
            return AtomicResponse::new(Box::pin(actix::fut::ready(joined)));
        };
        let (room, after) = (self.name.clone(), self.state.last_id());
        let wanted = since.map_or(0, |since| since.saturating_sub(after));
        let count = usize::try_from(wanted).unwrap_or(usize::MAX).clamp(1, CATCH_UP_READ);
        let read = async move {
            let read = shared.log.head_and_after(&room, after, count);
            actix_rt::time::timeout(CATCH_UP_WAIT, read).await
        };
        AtomicResponse::new(Box::pin(read.into_actor(self).map(move |read, room, ctx| {
            if let Ok(Ok(read)) = read {
                room.caught_up = None;
                room.catch_up(read, ctx);
            } else {
                room.metrics.redis_read_failures.inc();
                room.caught_up = Some(Instant::now());
            }
            room.admit(msg, ctx)
        })))
    }
}

impl Room {
    /// (`--redis`) What a join read from Redis ahead of the follower: the room's epoch if it
    /// had none, and the messages after its last, relayed to its members now (the follower's
    /// copies are then dropped as repeats). Under another epoch than the room's, nothing: the
    /// follower's reset comes.
    fn catch_up(&mut self, read: crate::redis_log::Loaded, ctx: &mut Context<Self>) {
        let Some((epoch, _)) = read.head else { return };
        self.state.adopt_epoch(epoch.clone());
        if epoch != self.state.epoch() {
            return;
        }
        let mut effects = Vec::new();
        for (id, entry) in read.messages {
            if let Some(stored) = crate::shared::decode(&self.name, id, &entry) {
                effects.extend(self.state.followed(stored));
            }
        }
        self.apply_from(effects, ctx, false);
    }
}

/// The most messages a join reads from Redis to catch up with its joiner.
const CATCH_UP_READ: usize = 1000;
/// How long a join waits for that read (it is welcomed from what the room has after it).
const CATCH_UP_WAIT: std::time::Duration = std::time::Duration::from_millis(500);
/// After a catch-up read failed, joins do not try again for this long.
const CATCH_UP_PAUSE: std::time::Duration = std::time::Duration::from_secs(5);

impl Room {
    fn admit(&mut self, msg: Join, ctx: &mut Context<Self>) -> Result<Admitted, Rejection> {
        let now = Instant::now();
        if now >= msg.deadline {
            return Err(Rejection::new(ErrorCode::Unavailable, "The room answered too late."));
        }
        let conn = msg.request.conn;
        // What the welcome may take: no more than fits beside what already waits for this
        // session (the welcomes of its other rooms, their live messages).
        let space = msg.frames.room_left(self.limit);
        let (joined, effects) = self.state.join(msg.request, space, now, now_millis());
        let joined = joined?;
        // The link first: the welcome among the effects goes through it.
        self.links.insert(conn, Link { session: msg.session, frames: msg.frames });
        self.apply(effects, ctx);
        Ok(Admitted { nick: joined.nick, replaced: joined.replaced, instance: self.instance })
    }
}

/// A member left: closed, timed out or moved to another room.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Leave {
    pub conn: ConnId,
    /// Tell the member too (it asked to leave, and stays connected).
    pub farewell: bool,
}

impl Handler<Leave> for Room {
    type Result = ();

    fn handle(&mut self, msg: Leave, ctx: &mut Self::Context) {
        // A farewell goes to the leaver with the others' notice, then its link goes: nothing
        // of this room follows it into the member's queue.
        if !msg.farewell {
            self.links.remove(&msg.conn);
        }
        let (_, effects) = self.state.leave(msg.conn, now_millis());
        self.apply(effects, ctx);
        self.links.remove(&msg.conn);
    }
}

/// A member said something.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Post {
    pub conn: ConnId,
    pub text: String,
    pub client_id: Option<ClientId>,
}

impl Handler<Post> for Room {
    type Result = ();

    fn handle(&mut self, msg: Post, ctx: &mut Self::Context) {
        let (rooms, shared) = (&self.store.rooms, self.shared.is_some());
        // With `--redis`, the database holds no messages: nothing to claim there.
        let claim = || shared || rooms.claim();
        let effects =
            self.state.post(msg.conn, msg.text, msg.client_id, &self.ids, now_millis(), claim);
        self.apply(effects, ctx);
    }
}

/// A member makes the room private or public.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Configure {
    pub conn: ConnId,
    pub private: bool,
}

impl Handler<Configure> for Room {
    type Result = ();

    fn handle(&mut self, msg: Configure, ctx: &mut Self::Context) {
        let effects = self.state.configure(msg.conn, msg.private, now_millis());
        self.apply(effects, ctx);
    }
}

/// A member asks for an invitation code (or revokes every code).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Invite {
    pub conn: ConnId,
    pub revoke: bool,
    pub days: u32,
    pub uses: Option<u32>,
}

impl Handler<Invite> for Room {
    type Result = ();

    fn handle(&mut self, msg: Invite, ctx: &mut Self::Context) {
        let effects = self.state.invite(msg.conn, msg.revoke, msg.days, msg.uses, now_millis());
        self.apply(effects, ctx);
    }
}

/// A moderator asks for the room's mutes and bans.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Sanctions {
    pub conn: ConnId,
}

impl Handler<Sanctions> for Room {
    type Result = ();

    fn handle(&mut self, msg: Sanctions, ctx: &mut Self::Context) {
        let effects = self.state.sanctions(msg.conn, now_millis());
        self.apply(effects, ctx);
    }
}

/// An owner or moderator gives an account a place in the room (moderator, member), or takes
/// it away.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Grant {
    pub conn: ConnId,
    pub nick: String,
    pub grant: protocol::Grant,
    pub revoke: bool,
}

impl Handler<Grant> for Room {
    type Result = ();

    fn handle(&mut self, msg: Grant, ctx: &mut Self::Context) {
        let effects = self.state.grant(msg.conn, &msg.nick, msg.grant, msg.revoke, now_millis());
        self.apply(effects, ctx);
    }
}

/// A member moderates another: kick, mute or ban for `minutes`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Moderate {
    pub conn: ConnId,
    pub nick: String,
    pub action: protocol::Sanction,
    pub minutes: u32,
}

impl Handler<Moderate> for Room {
    type Result = ();

    fn handle(&mut self, msg: Moderate, ctx: &mut Self::Context) {
        let Moderate { conn, nick, action, minutes } = msg;
        let effects = self.state.moderate(conn, &nick, action, minutes, now_millis());
        self.apply(effects, ctx);
    }
}

/// A member edits (`text`) or deletes (`None`) the message `target`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Amend {
    pub conn: ConnId,
    pub target: MessageId,
    pub text: Option<String>,
    pub client_id: Option<ClientId>,
}

impl Handler<Amend> for Room {
    type Result = ();

    fn handle(&mut self, msg: Amend, ctx: &mut Self::Context) {
        let Amend { conn, target, text, client_id } = msg;
        let effects = self.state.amend(conn, target, text, client_id, &self.ids, now_millis());
        self.apply(effects, ctx);
    }
}

impl Handler<Written> for Room {
    type Result = ();

    fn handle(&mut self, msg: Written, ctx: &mut Self::Context) {
        let effects = match msg {
            Written::Durable { upto } => self.state.durable(upto),
            Written::Failed { ids } => self.state.not_stored(&ids),
        };
        self.apply(effects, ctx);
    }
}

/// (`--redis`) What the follower of the room's shared log hands on.
impl StreamHandler<Followed> for Room {
    fn handle(&mut self, followed: Followed, ctx: &mut Self::Context) {
        let ts = now_millis();
        let effects = match followed {
            Followed::Message(id, entry) => match crate::shared::decode(&self.name, id, &entry) {
                Some(stored) => self.state.followed(stored),
                None => {
                    crate::redis_keys::warn_now_and_then(|| {
                        tracing::warn!(room = %self.name, id, "a message in Redis that is not ours: skipped");
                    });
                    Vec::new()
                }
            },
            Followed::Lost { from, to } => {
                tracing::warn!(room = %self.name, from, to, "messages left Redis before relayed");
                self.state.lost(to);
                Vec::new()
            }
            Followed::Reset { epoch } => {
                // A room without messages whose epoch lapsed lost nothing: reloaded quietly.
                if self.state.last_id() > 0 {
                    tracing::warn!(room = %self.name, %epoch, "the room started over in Redis");
                    self.metrics.history_resets.inc();
                }
                self.reload(ctx);
                Vec::new()
            }
            Followed::Epoch(epoch) => {
                self.state.adopt_epoch(epoch);
                Vec::new()
            }
            Followed::Event(event) => match serde_json::from_str::<Event>(&event) {
                Ok(event) => self.remote_event(event, ts),
                Err(_) => Vec::new(),
            },
        };
        self.apply_from(effects, ctx, false);
    }

    /// The follower ends only when the room stops.
    fn finished(&mut self, _: &mut Self::Context) {}
}

impl Room {
    /// Tells the lobby whether the room is private, as it was read at its opening: another
    /// server may have made it so since this one listed its private rooms.
    fn tell_privacy(&self) {
        if let Some(private) = self.state.privacy() {
            self.lobby.do_send(RoomEvent::Privacy { room: self.name.clone(), private });
        }
    }

    /// The effects of another server's event (this server's own are skipped).
    fn remote_event(&mut self, event: Event, ts: UnixMillis) -> Vec<Effect> {
        let Some(shared) = &self.shared else { return Vec::new() };
        let own = shared.presence.server();
        match event {
            Event::Joined { s, nick, tag } if s != own => {
                self.state.remote_joined(s, nick, tag, ts)
            }
            Event::Left { s, nick } if s != own => self.state.remote_left(&s, &nick, ts),
            Event::Typing { s, nick } if s != own => self.state.remote_typing(&nick),
            Event::Configured { s, private, by } if s != own => {
                self.state.remote_configured(private, &by, ts)
            }
            Event::Granted { s, nick, grant, revoke, by } if s != own => {
                self.state.remote_granted(&nick, grant, revoke, &by, ts)
            }
            Event::Moderated { s, nick, action, by, until } if s != own => {
                self.state.remote_moderated(&nick, action, &by, until, ts)
            }
            _ => Vec::new(),
        }
    }
}

/// A member asks for a page of the room's history.
#[derive(Message)]
#[rtype(result = "()")]
pub struct History {
    pub conn: ConnId,
    pub before: Option<MessageId>,
    pub after: Option<MessageId>,
    /// At most this many messages (the room's page size if larger or absent).
    pub limit: Option<u32>,
}

impl Handler<History> for Room {
    type Result = ();

    /// Answers with one page, queued like every frame within the member's bound, and no
    /// larger than what may still wait for the member (a client catching up in several rooms
    /// at once gets shorter pages): a client that asks for pages and does not read them is
    /// dropped as not reading.
    fn handle(&mut self, msg: History, ctx: &mut Self::Context) {
        let Some(link) = self.links.get(&msg.conn) else { return };
        let space = link.frames.room_left(self.limit);
        let request = PageRequest { before: msg.before, after: msg.after, limit: msg.limit };
        let effects = self.state.history_page(msg.conn, request, space, now_millis());
        self.apply(effects, ctx);
    }
}

/// A member is typing; the others are told (nothing is stored).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Typing {
    pub conn: ConnId,
}

impl Handler<Typing> for Room {
    type Result = ();

    fn handle(&mut self, msg: Typing, ctx: &mut Self::Context) {
        let effects = self.state.typing(msg.conn, Instant::now(), now_millis());
        self.apply(effects, ctx);
    }
}

/// The lobby closes the room: its last member left.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Close;

impl Handler<Close> for Room {
    type Result = ();

    fn handle(&mut self, _: Close, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

/// The server is shutting down: tell every member to go away.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

impl Handler<Shutdown> for Room {
    type Result = ();

    fn handle(&mut self, _: Shutdown, _: &mut Self::Context) {
        for link in self.links.values() {
            link.session.do_send(SessionEvent::GoingAway);
        }
    }
}

/// Another system posts into the room through the HTTP API, as the bot `nick`. Answered with
/// the message once it is durable (and relayed), or why it was not stored. The lobby holds a
/// seat for the caller meanwhile, so the room stays open until then.
#[derive(Message)]
#[rtype(result = "Result<ChatMessage, ErrorCode>")]
pub struct ApiPost {
    pub nick: String,
    pub text: String,
    pub idempotency_key: Option<ClientId>,
}

impl Handler<ApiPost> for Room {
    type Result = ResponseFuture<Result<ChatMessage, ErrorCode>>;

    fn handle(&mut self, msg: ApiPost, ctx: &mut Self::Context) -> Self::Result {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        let (answer, answered) = oneshot::channel();
        self.answers.insert(ticket, answer);
        let (rooms, shared) = (&self.store.rooms, self.shared.is_some());
        let claim = || shared || rooms.claim();
        let effects = self.state.post_bot(
            ticket,
            msg.nick,
            msg.text,
            msg.idempotency_key,
            &self.ids,
            now_millis(),
            claim,
        );
        self.apply(effects, ctx);
        Box::pin(async move { answered.await.unwrap_or(Err(ErrorCode::Unavailable)) })
    }
}

/// A page of the room's history for the HTTP API: the messages and whether there are more.
#[derive(Message)]
#[rtype(result = "Result<(Vec<ChatMessage>, bool), ErrorCode>")]
pub struct ApiHistory {
    pub before: Option<MessageId>,
    pub after: Option<MessageId>,
    pub limit: Option<u32>,
}

impl Handler<ApiHistory> for Room {
    type Result = Result<(Vec<ChatMessage>, bool), ErrorCode>;

    fn handle(&mut self, msg: ApiHistory, _: &mut Self::Context) -> Self::Result {
        if !self.state.is_loaded() {
            return Err(ErrorCode::Unavailable);
        }
        let request = PageRequest { before: msg.before, after: msg.after, limit: msg.limit };
        Ok(self.state.page(request, usize::MAX, now_millis()))
    }
}

/// (`--redis`) Redis's answer to a post of the room's.
#[derive(Message)]
#[rtype(result = "()")]
struct PostAnswered {
    ticket: Ticket,
    posted: redis::RedisResult<crate::redis_log::Posted>,
}

impl Handler<PostAnswered> for Room {
    type Result = ();

    fn handle(&mut self, msg: PostAnswered, ctx: &mut Self::Context) {
        let PostAnswered { ticket, posted } = msg;
        let effects = match posted {
            Ok(posted) if posted.refused => self.state.room_refused(ticket),
            Ok(posted) => {
                if posted.repeat {
                    self.metrics.duplicates.inc();
                } else {
                    self.metrics.messages_stored.inc();
                }
                self.state.posted(ticket, posted.id)
            }
            Err(error) => {
                self.metrics.redis_failures.inc();
                crate::redis_keys::warn_now_and_then(|| {
                    tracing::warn!(%error, room = %self.name, "could not post to Redis (sends are refused with `unavailable`; more failures are counted in chat_redis_failures_total)");
                });
                self.state.not_stored(&[ticket])
            }
        };
        self.apply(effects, ctx);
    }
}
