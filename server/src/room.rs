//! `Room`: one actor per chat room. It admits members under unique nicks, numbers messages,
//! has the store write them, and relays each one to every member, serialized once, as soon as
//! it is durable.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytestring::ByteString;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use protocol::{ChatMessage, ClientId, ErrorCode, MessageId, RoomInfo, ServerMessage, rules};

use crate::ConnId;
use crate::backlog::{BacklogLimit, FrameSender};
use crate::history::{MessageIds, PageLimit, RoomHistory};
use crate::inbound::Rejection;
use crate::lobby::{self, Lobby};
use crate::metrics::Metrics;
use crate::names::Likeness;
use crate::outbound::{encode, now_millis};
use crate::session::{GoingAway, Replaced, Session, TooSlow};
use crate::store::{Append, Store, StoreError, StoreOptions, Stored, Written};

/// Tells apart the successive instances of a room (a room closes when its last member leaves
/// and opens again on the next join): unique for the life of the process. Everything a room
/// tells sessions, the lobby and the store carries it, so that news from an instance that has
/// since closed (or that a session has since left) is recognised as stale.
pub type RoomInstance = u64;

/// Resolves once an earlier instance of the same room has handled its last message.
pub type PreviousClosed = Shared<BoxFuture<'static, ()>>;

/// A chat room and its members.
pub struct Room {
    name: String,
    instance: RoomInstance,
    /// The earlier instance of this room, still closing when this one was opened: the history
    /// is loaded only after it stopped, so that its last messages are in the store by then.
    previous: Option<PreviousClosed>,
    /// Whether the history was loaded; until then (and for good if loading failed) joins are
    /// refused with `unavailable`, since an empty history would tell resuming clients that
    /// nothing was said and forget which client ids were stored.
    loaded: bool,
    members: HashMap<ConnId, Member>,
    /// The durable messages (empty until the store has answered the load).
    history: RoomHistory,
    /// Messages handed to the store and not yet durable, in id order.
    pending: VecDeque<Pending>,
    ids: Arc<MessageIds>,
    store: Store,
    retention: StoreOptions,
    /// Messages a newcomer without `since` gets.
    recent: usize,
    /// The most bytes of messages one welcome or history page carries.
    page_bytes: usize,
    lobby: Addr<Lobby>,
    metrics: Arc<Metrics>,
    /// What may wait for one member before it is dropped as not reading.
    limit: BacklogLimit,
    /// Least time between two renames of one member.
    rename_interval: Duration,
}

/// A message waiting to become durable.
struct Pending {
    stored: Stored,
    /// Connections to acknowledge (or tell of a failure): the sender, and any that repeated
    /// its client id meanwhile.
    senders: Vec<ConnId>,
}

struct Member {
    nick: String,
    /// How `nick` looks, for uniqueness (see [`Likeness`]).
    likeness: Likeness,
    client: Option<String>,
    session: Addr<Session>,
    /// The session's frame queue.
    frames: FrameSender,
    /// When the room last relayed this member's `typing`, and when it last renamed.
    typed: Option<Instant>,
    renamed: Option<Instant>,
}

/// What a room needs besides its name; the same for every room.
#[derive(Clone)]
pub struct RoomContext {
    pub ids: Arc<MessageIds>,
    pub store: Store,
    pub retention: StoreOptions,
    pub recent: usize,
    pub page_bytes: usize,
    pub lobby: Addr<Lobby>,
    pub metrics: Arc<Metrics>,
    pub limit: BacklogLimit,
    pub rename_interval: Duration,
}

impl Room {
    pub fn new(
        name: String,
        instance: RoomInstance,
        previous: Option<PreviousClosed>,
        context: RoomContext,
    ) -> Self {
        let RoomContext {
            ids,
            store,
            retention,
            recent,
            page_bytes,
            lobby,
            metrics,
            limit,
            rename_interval,
        } = context;
        Room {
            name,
            instance,
            previous,
            loaded: false,
            rename_interval,
            members: HashMap::new(),
            history: RoomHistory::new(
                Default::default(),
                retention.retain_messages,
                retention.retain_bytes,
            ),
            pending: VecDeque::new(),
            ids,
            store,
            retention,
            recent,
            page_bytes,
            lobby,
            metrics,
            limit,
        }
    }

    /// Sends a frame to one member, dropping the member if its backlog is full.
    fn send_to(&mut self, conn: ConnId, message: &ServerMessage) {
        let Some(member) = self.members.get(&conn) else { return };
        let frame = encode(message);
        let length = frame.len() as u64;
        if member.frames.try_send(frame, self.limit) {
            self.metrics.frames_out.inc();
            self.metrics.bytes_out.inc_by(length);
        } else {
            self.evict(conn);
        }
    }

    fn acknowledge(&mut self, conn: ConnId, client_id: &ClientId, id: MessageId) {
        let ack = ServerMessage::Ack { client_id: client_id.clone(), id, room: self.name.clone() };
        self.send_to(conn, &ack);
    }

    /// A message became durable: acknowledge it to its sender, then relay it to the room.
    fn publish(&mut self, pending: Pending) {
        let Pending { stored, senders } = pending;
        if let Some(client_id) = &stored.client_id {
            for conn in senders {
                self.acknowledge(conn, client_id, stored.message.id);
            }
        }
        let frame = encode(&ServerMessage::Message(stored.message.clone()));
        self.history.push(stored);
        self.broadcast(&frame, None);
    }

    /// Sends an already encoded frame to every member except `skip`; members with too many
    /// frames waiting are dropped instead.
    fn broadcast(&mut self, frame: &ByteString, skip: Option<ConnId>) {
        let mut sent = 0;
        let mut stalled = Vec::new();
        for (conn, member) in &self.members {
            if Some(*conn) == skip {
                continue;
            }
            if member.frames.try_send(frame.clone(), self.limit) {
                sent += 1;
            } else {
                stalled.push(*conn);
            }
        }
        self.metrics.frames_out.inc_by(sent);
        self.metrics.bytes_out.inc_by(sent * frame.len() as u64);
        for conn in stalled {
            self.evict(conn);
        }
    }

    fn announce(&mut self, message: ServerMessage, skip: Option<ConnId>) {
        self.broadcast(&encode(&message), skip);
    }

    /// Drops a member that is not reading: it leaves the room (the others are told), the
    /// lobby frees its seat, and its session is told to close with 4003.
    fn evict(&mut self, conn: ConnId) {
        let Some(member) = self.members.remove(&conn) else { return };
        tracing::warn!(conn, room = %self.name, nick = %member.nick, "dropping a client that is not reading");
        self.metrics.slow_reader_disconnects.inc();
        member.frames.close();
        member.session.do_send(TooSlow { instance: self.instance });
        self.lobby.do_send(lobby::Evicted {
            room: self.name.clone(),
            conn,
            instance: self.instance,
        });
        let ts = now_millis();
        self.announce(ServerMessage::Left { room: self.name.clone(), nick: member.nick, ts }, None);
    }

    fn member_like(&self, likeness: &Likeness) -> Option<(ConnId, &Member)> {
        let alike = |(_, member): &(&ConnId, &Member)| member.likeness.looks_like(likeness);
        self.members.iter().find(alike).map(|(conn, member)| (*conn, member))
    }

    /// The nick a member without one gets: `guest-<connection id>`, made unique if someone
    /// already chose it.
    fn generated_nick(&self, conn: ConnId) -> String {
        let base = format!("guest-{conn}");
        let mut nick = base.clone();
        let mut suffix = 1;
        while self.member_like(&Likeness::of(&nick)).is_some() {
            suffix += 1;
            nick = format!("{base}-{suffix}");
        }
        nick
    }

    /// Forgets messages past `--retain-for`, as the store deletes them, before serving history.
    fn expire_by_age(&mut self) {
        if let Some(cutoff) = self.retention.age_cutoff(now_millis()) {
            self.history.expire(cutoff);
        }
    }

    fn member_nicks(&self) -> Vec<String> {
        let mut nicks: Vec<String> = self.members.values().map(|m| m.nick.clone()).collect();
        nicks.sort_by_key(|nick| rules::nick_key(nick));
        nicks
    }
}

impl Actor for Room {
    type Context = Context<Self>;

    /// Loads the room's history before handling anything else (`ctx.wait` holds the mailbox),
    /// so the first welcome already carries it.
    fn started(&mut self, ctx: &mut Self::Context) {
        tracing::debug!(room = %self.name, instance = self.instance, "room opened");
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
                let retention = &room.retention;
                room.history =
                    RoomHistory::new(loaded, retention.retain_messages, retention.retain_bytes);
                room.loaded = true;
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
        if let Some(last_ts) = self.history.last_ts() {
            self.lobby.do_send(lobby::Closed { room: self.name.clone(), last_ts });
        }
    }
}

/// Admit a session to the room (or re-admit it under another nick).
#[derive(Message)]
#[rtype(result = "Result<Admitted, Rejection>")]
pub struct Join {
    pub conn: ConnId,
    /// The nick asked for; `None` keeps the current one, or generates one for a newcomer.
    pub nick: Option<String>,
    /// The client's token: a newer connection with the same token may take over its nick.
    pub client: Option<String>,
    pub session: Addr<Session>,
    /// The active rooms, for the welcome.
    pub rooms: Vec<RoomInfo>,
    /// The last message id the client saw in this room.
    pub since: Option<MessageId>,
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
    /// An older connection of the same client that this join replaced.
    pub replaced: Option<ConnId>,
    /// The room instance that admitted the session.
    pub instance: RoomInstance,
}

impl Handler<Join> for Room {
    type Result = Result<Admitted, Rejection>;

    fn handle(&mut self, msg: Join, _: &mut Self::Context) -> Self::Result {
        if Instant::now() >= msg.deadline {
            return Err(Rejection::new(ErrorCode::Unavailable, "The room answered too late."));
        }
        if !self.loaded {
            return Err(Rejection::new(
                ErrorCode::Unavailable,
                format!("The history of #{} could not be loaded; try again shortly.", self.name),
            ));
        }
        let now = Instant::now();
        let current = self.members.get(&msg.conn);
        let previous = current.map(|member| member.nick.clone());
        let nick = match (msg.nick, &previous) {
            (Some(nick), _) => nick,
            (None, Some(current)) => current.clone(),
            (None, None) => self.generated_nick(msg.conn),
        };
        let likeness = Likeness::of(&nick);
        let renaming = current.is_some_and(|member| member.nick != nick);
        let (typed, mut renamed) = current.map_or((None, None), |m| (m.typed, m.renamed));
        if renaming {
            let wait = renamed.map_or(Duration::ZERO, |at| {
                (at + self.rename_interval).saturating_duration_since(now)
            });
            if !wait.is_zero() {
                return Err(Rejection::rename_too_soon(wait));
            }
            renamed = Some(now);
        }

        let mut replaced = None;
        if let Some((holder, member)) = self.member_like(&likeness) {
            let same_client = msg.client.is_some() && member.client == msg.client;
            if holder != msg.conn && !same_client {
                return Err(Rejection::new(
                    ErrorCode::NickTaken,
                    format!("Someone in #{} is already called {nick}.", self.name),
                ));
            }
            if holder != msg.conn {
                // The same browser tab reconnected before we noticed its old connection die:
                // hand the seat to the new connection without announcing a leave and a join.
                member.session.do_send(Replaced { instance: self.instance });
                self.members.remove(&holder);
                replaced = Some(holder);
            }
        }

        let ts = now_millis();
        match previous {
            Some(old) if old != nick => {
                self.announce(ServerMessage::Left { room: self.name.clone(), nick: old, ts }, None);
                self.announce(
                    ServerMessage::Joined { room: self.name.clone(), nick: nick.clone(), ts },
                    Some(msg.conn),
                );
            }
            None if replaced.is_none() => self.announce(
                ServerMessage::Joined { room: self.name.clone(), nick: nick.clone(), ts },
                Some(msg.conn),
            ),
            _ => {}
        }
        let frames = msg.frames;
        self.members.insert(
            msg.conn,
            Member {
                nick: nick.clone(),
                likeness,
                client: msg.client,
                session: msg.session,
                frames: frames.clone(),
                typed,
                renamed,
            },
        );

        self.expire_by_age();
        let catchup = self.history.catchup(msg.since, self.recent, self.page_bytes);
        let welcome = ServerMessage::Welcome {
            room: self.name.clone(),
            nick: nick.clone(),
            members: self.member_nicks(),
            history: catchup.history,
            rooms: msg.rooms,
            since: catchup.since,
            truncated: catchup.truncated,
            more: catchup.more,
        };
        // The welcome counts against the session's bound like any frame: a session with too
        // much waiting already is dropped as not reading.
        self.send_to(msg.conn, &welcome);
        Ok(Admitted { nick, replaced, instance: self.instance })
    }
}

/// A member left: closed, timed out or moved to another room.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Leave {
    pub conn: ConnId,
}

impl Handler<Leave> for Room {
    type Result = ();

    fn handle(&mut self, msg: Leave, _: &mut Self::Context) {
        if let Some(member) = self.members.remove(&msg.conn) {
            let ts = now_millis();
            self.announce(
                ServerMessage::Left { room: self.name.clone(), nick: member.nick, ts },
                None,
            );
        }
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
        let Some(member) = self.members.get(&msg.conn) else {
            // The session moved on while this was in flight; the text was meant for a room it
            // no longer is in.
            tracing::debug!(conn = msg.conn, room = %self.name, "post from a non-member dropped");
            return;
        };
        if let Some(client_id) = &msg.client_id {
            // A repeat from the same sender (the client did not see the acknowledgement):
            // acknowledge again, or once the original is durable; never store it twice.
            if let Some(id) = self.history.id_for(member.likeness.key(), client_id) {
                self.metrics.duplicates.inc();
                return self.acknowledge(msg.conn, client_id, id);
            }
            let same = |pending: &&mut Pending| {
                pending.stored.client_id.as_ref() == Some(client_id)
                    && crate::names::nick_key(&pending.stored.message.from) == member.likeness.key()
            };
            if let Some(pending) = self.pending.iter_mut().find(same) {
                self.metrics.duplicates.inc();
                pending.senders.push(msg.conn);
                return;
            }
        }
        if self.history.is_empty() && self.pending.is_empty() && self.store.rooms.full() {
            let refusal = ServerMessage::Error {
                code: ErrorCode::TooManyRooms,
                message: "This server keeps as many rooms as it allows: write in a room that \
                          already has messages."
                    .into(),
                retry_after_ms: None,
                client_id: msg.client_id,
            };
            self.metrics.error(ErrorCode::TooManyRooms);
            return self.send_to(msg.conn, &refusal);
        }
        let message = ChatMessage {
            id: self.ids.next(),
            room: self.name.clone(),
            from: member.nick.clone(),
            text: msg.text,
            ts: now_millis(),
        };
        let stored = Stored { message, client_id: msg.client_id };
        let append = Append {
            stored: stored.clone(),
            instance: self.instance,
            notify: ctx.address().recipient(),
        };
        if let Err(error) = self.store.append(append) {
            if matches!(error, StoreError::Busy) {
                // Counted, not logged per message: under overload that would flood the log.
                self.metrics.store_busy.inc();
            } else {
                tracing::error!(%error, room = %self.name, "cannot store messages");
            }
            let refusal = store_refusal(stored.client_id);
            return self.send_to(msg.conn, &refusal);
        }
        self.pending.push_back(Pending { stored, senders: vec![msg.conn] });
    }
}

/// The error a sender gets when its message could not be stored.
fn store_refusal(client_id: Option<ClientId>) -> ServerMessage {
    ServerMessage::Error {
        code: ErrorCode::Unavailable,
        message: "Your message could not be stored; send it again.".into(),
        retry_after_ms: None,
        client_id,
    }
}

impl Handler<Written> for Room {
    type Result = ();

    fn handle(&mut self, msg: Written, _: &mut Self::Context) {
        match msg {
            Written::Durable { upto } => {
                while self.pending.front().is_some_and(|p| p.stored.message.id <= upto) {
                    if let Some(pending) = self.pending.pop_front() {
                        self.publish(pending);
                    }
                }
            }
            Written::Failed { ids } => {
                let (failed, kept): (Vec<Pending>, Vec<Pending>) =
                    std::mem::take(&mut self.pending)
                        .into_iter()
                        .partition(|p| ids.contains(&p.stored.message.id));
                self.pending = kept.into();
                for pending in failed {
                    let refusal = store_refusal(pending.stored.client_id);
                    for conn in pending.senders {
                        self.send_to(conn, &refusal);
                    }
                }
            }
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

    /// Answers with one page, queued like every frame within the member's bound: a client
    /// that asks for pages and does not read them is dropped as not reading.
    fn handle(&mut self, msg: History, _: &mut Self::Context) {
        if !self.members.contains_key(&msg.conn) {
            return;
        }
        self.expire_by_age();
        let most = self.retention.retain_messages.max(1);
        let messages = msg.limit.map_or(self.recent, |limit| limit as usize).clamp(1, most);
        let limit = PageLimit { messages, bytes: self.page_bytes };
        let page = match msg.after {
            Some(after) => self.history.after(after, limit),
            None => self.history.before(msg.before, limit),
        };
        let answer = ServerMessage::History {
            room: self.name.clone(),
            messages: page.messages,
            before: msg.before,
            after: msg.after,
            more: page.more,
        };
        self.send_to(msg.conn, &answer);
    }
}

/// Least time between two `typing` notices of one member that the room relays.
pub const TYPING_INTERVAL: Duration = Duration::from_millis(protocol::TYPING_SEND_INTERVAL_MS);

/// A member is typing; the others are told (nothing is stored).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Typing {
    pub conn: ConnId,
}

impl Handler<Typing> for Room {
    type Result = ();

    /// Relays at most one notice per member per [`TYPING_INTERVAL`]: the web client sends no
    /// more, and a client that does would only push messages off everyone's screen.
    fn handle(&mut self, msg: Typing, _: &mut Self::Context) {
        let now = Instant::now();
        let Some(member) = self.members.get_mut(&msg.conn) else { return };
        if member.typed.is_some_and(|at| now.duration_since(at) < TYPING_INTERVAL) {
            self.metrics.typing_dropped.inc();
            return;
        }
        member.typed = Some(now);
        let notice = ServerMessage::Typing { room: self.name.clone(), nick: member.nick.clone() };
        self.announce(notice, Some(msg.conn));
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
        for member in self.members.values() {
            member.session.do_send(GoingAway);
        }
    }
}
