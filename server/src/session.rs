//! `Session`: one actor per WebSocket connection. A thin adapter: it moves frames between the
//! socket and the rooms, keeps the heartbeat, and leaves decoding and policy to `inbound`.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use actix_web_actors::ws::{self, CloseCode, CloseReason};
use bytestring::ByteString;
use litemap::LiteMap;
use protocol::{ErrorCode, ServerMessage, close};

use crate::backlog::{self, BacklogLimit, FrameReceiver, FrameSender};
use crate::config::Config;
use crate::fragments::{Reassembly, Whole};
use crate::going_away::GoingAway;
use crate::ids::{ConnId, RoomInstance};
use crate::inbound::{self, Command, Rejection, Target};
use crate::lobby::{self, Lobby};
use crate::metrics::Metrics;
use crate::outbound::encode;
use crate::policy::{Admission, FrameRate, JoinRate, Permit};
use crate::room::{self, Room, SessionEvent};
use crate::room_state::SignedIn;

/// Who a connection is: its client's token (for takeovers), who it is signed in as (its
/// session cookie's account, or its token's subject), the rooms its token lets it enter, and
/// why it may not chat at all (`--auth accounts` or `token`).
#[derive(Debug, Clone, Default)]
pub struct Identity {
    pub client: Option<String>,
    pub account: Option<SignedIn>,
    /// The only rooms it may enter (`None`: any).
    pub rooms: Option<Arc<[String]>>,
    /// Why it is refused: said and closed as it starts.
    pub refused: Option<Refusal>,
    /// Signed in by a session cookie: the session to check now and then (it may end while
    /// the connection lasts).
    pub session: Option<SessionCheck>,
}

/// A session cookie's session, checked while the connection lasts.
#[derive(Clone)]
pub struct SessionCheck {
    pub accounts: Arc<crate::accounts::Accounts>,
    pub token: String,
}

impl std::fmt::Debug for SessionCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionCheck(..)")
    }
}

/// Why a connection may not chat, as it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// In words for the person (never holding a token).
    pub why: String,
    /// The server could not tell (its database failed): `unavailable` and close 1013, after
    /// which clients reconnect; otherwise `unauthenticated` and close 4004, after which they
    /// do not.
    pub retry: bool,
}

impl Refusal {
    pub fn unauthenticated(why: impl Into<String>) -> Self {
        Refusal { why: why.into(), retry: false }
    }

    pub fn retry(why: impl Into<String>) -> Self {
        Refusal { why: why.into(), retry: true }
    }
}

/// "Try again later" (RFC 6455's registry): the server could not check who the client is.
const TRY_AGAIN_LATER: u16 = 1013;
/// Failed session checks are logged at most every 10 s (every signed-in connection checks).
static SESSION_CHECKS: crate::throttle::Throttle = crate::throttle::Throttle::new();

pub struct Session {
    conn: ConnId,
    /// Where the connection comes from (an IPv6 address's /64).
    address: std::net::IpAddr,
    config: Arc<Config>,
    lobby: Addr<Lobby>,
    /// When the client was last heard from (any frame counts).
    heard: Instant,
    /// Where the connect URL asked to go, and the server's going-away signal; consumed when
    /// the session starts (boxed: the session keeps its place for its whole life).
    initial: Option<Box<Start>>,
    client: Option<String>,
    /// Who the connection is signed in as, if anyone (boxed: a guest's costs 8 bytes, not 80).
    account: Option<Box<SignedIn>>,
    /// The only rooms it may enter (`None`: any).
    only_rooms: Option<Arc<[String]>>,
    /// Why it may not chat (said and closed as it starts). Boxed like `initial`: both are
    /// consumed as the session starts.
    refused: Option<Box<Refusal>>,
    /// The session cookie's session, handed to the check that runs every
    /// `--session-check-interval` as the session starts.
    session_check: Option<Box<SessionCheck>>,
    /// The rooms this connection is in, by name (at most `--max-rooms-per-connection`): a
    /// sorted Vec, a few dozen bytes per room rather than a B-tree node's 900 for the first.
    memberships: LiteMap<String, Membership>,
    /// The nick the last join was admitted under: a join that names none into a room this
    /// connection is not in asks for it.
    nick: Option<String>,
    /// The room a join is under way for, so leaving mid-join still releases the seat.
    joining: Option<String>,
    fragments: Reassembly,
    metrics: Arc<Metrics>,
    /// How fast the client may send frames, and when it is flooding.
    rate: FrameRate,
    /// Joins (room switches and renames): bursts of [`JOIN_BURST`], then one per
    /// `--rename-interval`, so hopping between rooms cannot flood them with presence notices
    /// the way renames in place are kept from it.
    joins: JoinRate,
    /// What may wait for this client in `frames`.
    limit: BacklogLimit,
    /// The queue rooms send this session's frames through (a copy goes to each room joined);
    /// rooms drop the session past the configured bound of what waits there.
    frames: FrameSender,
    /// Its other end, until the session starts writing from it.
    queued: Option<FrameReceiver>,
    /// This connection's place under the connection limits, given back on drop.
    _permit: Permit,
}

/// What a session starts from: where the connect URL asked to go, and the server's going-away
/// signal.
pub struct Start {
    pub target: Result<Target, Rejection>,
    pub going_away: GoingAway,
}

struct Membership {
    nick: String,
    room: Addr<Room>,
    /// The room instance that admitted this session: news from any other is stale.
    instance: RoomInstance,
}

impl Session {
    pub fn new(
        conn: ConnId,
        config: Arc<Config>,
        lobby: Addr<Lobby>,
        metrics: Arc<Metrics>,
        permit: Permit,
        start: Start,
        who: Identity,
    ) -> Self {
        let Identity { client, account, rooms: only_rooms, refused, session: session_check } = who;
        let abuse = &config.abuse;
        let rate = FrameRate::new(
            abuse.rate_per_second,
            abuse.rate_burst,
            abuse.flood_limit,
            Instant::now(),
        );
        let limit = BacklogLimit { frames: abuse.max_queued_frames, bytes: abuse.max_queued_bytes };
        metrics.connections.inc();
        metrics.connections_total.inc();
        let (frames, queued) = backlog::channel();
        Session {
            metrics,
            rate,
            joins: JoinRate::new(
                *abuse.rename_interval,
                join_burst(abuse.max_rooms_per_connection),
            ),
            limit,
            frames,
            queued: Some(queued),
            address: permit.address(),
            _permit: permit,
            conn,
            config,
            lobby,
            heard: Instant::now(),
            initial: Some(Box::new(start)),
            client,
            account: account.map(Box::new),
            only_rooms,
            refused: refused.map(Box::new),
            session_check: session_check.map(Box::new),
            memberships: LiteMap::new(),
            nick: None,
            joining: None,
            fragments: Reassembly::default(),
        }
    }

    /// Queues a frame of the session's own (an error, the room list) in the same queue as the
    /// rooms' frames, so that everything the client gets comes in one defined order and under
    /// one bound. A client with too much waiting is closed as not reading.
    fn send(&self, ctx: &mut ws::WebsocketContext<Self>, message: &ServerMessage) {
        let frame = encode(message);
        let length = frame.len() as u64;
        if self.frames.try_send(frame, self.limit) {
            self.metrics.frames_out.inc();
            self.metrics.bytes_out.inc_by(length);
        } else {
            self.metrics.slow_reader_disconnects.inc();
            // Freed now; rooms then drop what they send until they hear of the leave, rather
            // than each dropping this session again.
            self.frames.close();
            self.close(ctx, close::SLOW_READER, "too many messages were waiting: not reading");
        }
    }

    fn reject(&self, ctx: &mut ws::WebsocketContext<Self>, rejection: Rejection) {
        tracing::debug!(conn = self.conn, code = ?rejection.code, "request refused");
        self.metrics.error(rejection.code);
        self.send(ctx, &rejection.into_message());
    }

    /// Whether the rate limit lets this frame through. A refused frame is answered with
    /// `rate_limited`; a client that keeps flooding is closed with 1008.
    fn admit(&mut self, ctx: &mut ws::WebsocketContext<Self>) -> bool {
        let wait = match self.rate.admit(Instant::now()) {
            Admission::Pass => return true,
            Admission::TooFast(wait) => wait,
            Admission::Flooding => {
                self.metrics.rate_limited.inc();
                self.metrics.flood_disconnects.inc();
                self.close(ctx, close::POLICY_VIOLATION, "flooding: too many frames too fast");
                return false;
            }
        };
        self.metrics.rate_limited.inc();
        self.reject(ctx, Rejection::rate_limited(wait));
        false
    }

    fn close(&self, ctx: &mut ws::WebsocketContext<Self>, code: u16, description: &str) {
        tracing::info!(conn = self.conn, code, description, "closing connection");
        ctx.close(Some(CloseReason {
            code: CloseCode::from(code),
            description: Some(description.to_owned()),
        }));
        ctx.stop();
    }

    /// Closes the connection (4004) once its session cookie's session has ended: logged out
    /// elsewhere, its password reset, its account deleted, or expired. A failed read keeps
    /// it (the next check decides).
    fn check_session(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        let Some(check) = self.session_check.take() else { return };
        ctx.run_interval(*self.config.abuse.session_check_interval, move |session, ctx| {
            let now = crate::outbound::now_millis();
            match check.accounts.session_account(&check.token, now) {
                Ok(Some(_)) => {}
                Ok(None) => {
                    let why = "Your session has ended (logged out, or the password was changed).";
                    session.metrics.error(ErrorCode::Unauthenticated);
                    ctx.text(encode(&ServerMessage::error(ErrorCode::Unauthenticated, why)));
                    session.close(
                        ctx,
                        close::UNAUTHENTICATED,
                        "your session has ended: log in again",
                    );
                }
                // Every signed-in connection checks: during an outage, one line per check
                // would be one per connection a minute.
                Err(error) => SESSION_CHECKS.run(
                    || tracing::warn!(conn = session.conn, %error, "could not check a session"),
                ),
            }
        });
    }

    fn heartbeat(&self, ctx: &mut ws::WebsocketContext<Self>) {
        let timeout = *self.config.client_timeout;
        ctx.run_interval(*self.config.heartbeat_interval, move |session, ctx| {
            if session.heard.elapsed() > timeout {
                session.close(ctx, close::HEARTBEAT_TIMEOUT, "no heartbeat from the client");
            } else {
                ctx.ping(b"");
                session.frames.release_if_empty();
            }
        });
    }

    /// Joins `room`; unless `add`, then leaves every other room. Frames that arrive meanwhile
    /// wait (`ctx.wait`), so a `send` right after a `join` goes to the new room.
    fn join(&mut self, target: Target, add: bool, ctx: &mut ws::WebsocketContext<Self>) {
        let Target { room, nick, since, epoch, invite } = target;
        if !may_enter(self.only_rooms.as_deref(), &room) {
            let message = format!("Your token does not let you into #{room}.");
            let rejection = Rejection::new(ErrorCode::Forbidden, message).in_room(&room);
            return self.reject(ctx, rejection);
        }
        let max = self.config.abuse.max_rooms_per_connection;
        if add && !self.memberships.contains_key(&room) && self.memberships.len() >= max {
            let message = format!(
                "You are in {max} rooms, as many as one connection may be; leave one first."
            );
            let rejection = Rejection::new(ErrorCode::TooManyJoined, message).in_room(&room);
            return self.reject(ctx, rejection);
        }
        self.joining = Some(room.clone());
        // A join that names no nick keeps the nick held in that room, or else the last one.
        let nick = nick.or_else(|| {
            let held = self.memberships.get(&room).map(|m| m.nick.clone());
            held.or_else(|| self.nick.clone())
        });
        let leaving: Vec<String> = if add {
            Vec::new()
        } else {
            self.memberships.keys().filter(|name| **name != room).cloned().collect()
        };
        let request = lobby::Join {
            room: room.clone(),
            conn: self.conn,
            nick,
            client: self.client.clone(),
            account: self.account.as_deref().cloned(),
            only_rooms: self.only_rooms.clone(),
            invite,
            since,
            epoch,
            session: ctx.address().recipient(),
            frames: self.frames.clone(),
            address: self.address,
            leaving: leaving.clone(),
            deadline: Instant::now() + crate::config::JOIN_TIMEOUT,
        };
        // Bounded, so a stuck lobby or room costs a refusal, not a frozen session (its
        // heartbeat included: `ctx.wait` holds everything else).
        let request = self.lobby.send(request).timeout(crate::config::JOIN_TIMEOUT);
        let joined = request.into_actor(self).map(move |answer, session, ctx| {
            session.joining = None;
            // While the join was under way the session read nothing, pongs included: the wait
            // is the server's, not a silence of the client's.
            session.heard = Instant::now();
            let joined = match answer {
                Ok(Ok(joined)) => joined,
                Ok(Err(rejection)) => return session.reject(ctx, rejection.in_room(&room)),
                Err(error) => {
                    tracing::error!(conn = session.conn, %error, room = %room, "join unanswered");
                    // The join may still complete after we stopped waiting: undo it then,
                    // unless it was a rename in a room this session is in.
                    if !session.memberships.contains_key(&room) {
                        session.lobby.do_send(lobby::Leave {
                            room: room.clone(),
                            conn: session.conn,
                            farewell: false,
                        });
                    }
                    let message = "The server is not accepting joins right now; try again.";
                    let rejection = Rejection::new(ErrorCode::Unavailable, message).in_room(&room);
                    return session.reject(ctx, rejection);
                }
            };
            tracing::debug!(conn = session.conn, room = %room, nick = %joined.nick, "joined");
            session.nick = Some(joined.nick.clone());
            let now =
                Membership { nick: joined.nick, room: joined.room, instance: joined.instance };
            if session.memberships.is_empty() {
                // Most connections stay in one room: room for one, not the Vec's first four.
                session.memberships = LiteMap::with_capacity(1);
            }
            if session.memberships.insert(room, now).is_none() {
                session.metrics.memberships.inc();
            }
            for name in leaving {
                if session.memberships.remove(&name).is_some() {
                    session.metrics.memberships.dec();
                    session.lobby.do_send(lobby::Leave {
                        room: name,
                        conn: session.conn,
                        farewell: false,
                    });
                }
            }
        });
        ctx.wait(joined);
    }

    /// Leaves `room`, keeping the others. The room itself tells the client it left, after
    /// the last frame it queued for it, so nothing of that room follows the `left`.
    fn leave(&mut self, room: String, ctx: &mut ws::WebsocketContext<Self>) {
        if self.memberships.remove(&room).is_none() {
            let message = format!("You are not in #{room}.");
            return self.reject(ctx, Rejection::new(ErrorCode::NotJoined, message).in_room(&room));
        }
        self.metrics.memberships.dec();
        self.lobby.do_send(lobby::Leave { room, conn: self.conn, farewell: true });
    }

    /// The room a `send`, `typing` or `history` is for: the one named, which this session
    /// must be in, or without a name the one room it is in. `None` (and an error saying what
    /// needs a room) if there is no such room.
    fn room_for(
        &self,
        ctx: &mut ws::WebsocketContext<Self>,
        named: Option<&str>,
        doing: &str,
        client_id: Option<&String>,
    ) -> Option<Addr<Room>> {
        let found = match named {
            Some(name) => self.memberships.get(name),
            None if self.memberships.len() == 1 => self.memberships.values().next(),
            None => None,
        };
        if let Some(membership) = found {
            return Some(membership.room.clone());
        }
        let rejection = match named {
            Some(name) => {
                Rejection::new(ErrorCode::NotJoined, format!("Join #{name} before {doing}."))
                    .in_room(name)
            }
            None if self.memberships.is_empty() => {
                Rejection::new(ErrorCode::NotJoined, format!("Join a room before {doing}."))
            }
            None => Rejection::new(
                ErrorCode::InvalidMessage,
                format!("You are in several rooms: name the room when {doing}."),
            ),
        };
        self.reject(ctx, rejection.for_client_id(client_id.cloned()));
        None
    }

    /// Acts on one whole text message (already admitted by the rate limit).
    fn on_text(&mut self, text: &str, ctx: &mut ws::WebsocketContext<Self>) {
        self.metrics.bytes_in.inc_by(text.len() as u64);
        match inbound::decode(text, &self.config.limits) {
            Err(rejection) => self.reject(ctx, rejection),
            Ok(Command::Send { text, client_id, room }) => {
                let doing = "sending messages";
                if let Some(room) = self.room_for(ctx, room.as_deref(), doing, client_id.as_ref()) {
                    self.metrics.messages_in.inc();
                    room.do_send(room::Post { conn: self.conn, text, client_id });
                }
            }
            Ok(Command::Configure { room, private }) => {
                if let Some(room) = self.room_for(ctx, Some(&room), "changing it", None) {
                    room.do_send(room::Configure { conn: self.conn, private });
                }
            }
            Ok(Command::Invite { room, revoke, days, uses }) => {
                if let Some(room) = self.room_for(ctx, Some(&room), "inviting to it", None) {
                    room.do_send(room::Invite { conn: self.conn, revoke, days, uses });
                }
            }
            Ok(Command::Sanctions { room }) => {
                if let Some(room) = self.room_for(ctx, Some(&room), "moderating", None) {
                    room.do_send(room::Sanctions { conn: self.conn });
                }
            }
            Ok(Command::Grant { room, nick, grant, revoke }) => {
                if let Some(room) = self.room_for(ctx, Some(&room), "changing it", None) {
                    room.do_send(room::Grant { conn: self.conn, nick, grant, revoke });
                }
            }
            Ok(Command::Moderate { room, nick, action, minutes }) => {
                if let Some(room) = self.room_for(ctx, Some(&room), "moderating", None) {
                    room.do_send(room::Moderate { conn: self.conn, nick, action, minutes });
                }
            }
            Ok(Command::Amend { room, target, text, client_id }) => {
                let doing = if text.is_some() { "editing messages" } else { "deleting messages" };
                if let Some(room) = self.room_for(ctx, Some(&room), doing, client_id.as_ref()) {
                    self.metrics.messages_in.inc();
                    room.do_send(room::Amend { conn: self.conn, target, text, client_id });
                }
            }
            Ok(Command::Typing { room }) => {
                if let Some(room) = self.room_for(ctx, room.as_deref(), "typing", None) {
                    room.do_send(room::Typing { conn: self.conn });
                }
            }
            Ok(Command::Leave { room }) => self.leave(room, ctx),
            Ok(Command::Join { room, nick, since, add, epoch }) => match self.joins.admit() {
                Ok(()) => self.join(Target { room, nick, since, epoch, invite: None }, add, ctx),
                Err(wait) => {
                    let rejection = Rejection::too_fast(wait, |ms| {
                        format!("You are switching rooms too fast; wait {ms} ms.")
                    });
                    self.reject(ctx, rejection.in_room(&room));
                }
            },
            Ok(Command::History { room, before, after, limit }) => {
                let doing = "asking for its history";
                if let Some(room) = self.room_for(ctx, Some(&room), doing, None) {
                    room.do_send(room::History { conn: self.conn, before, after, limit });
                }
            }
            Ok(Command::ListRooms) => {
                let only_rooms = self.only_rooms.clone();
                let list = self.lobby.send(lobby::ListRooms { only_rooms }).into_actor(self).map(
                    |answer, session, ctx| match answer {
                        Ok(rooms) => session.send(ctx, &ServerMessage::Rooms { rooms }),
                        Err(error) => {
                            tracing::error!(conn = session.conn, %error, "lobby did not answer");
                        }
                    },
                );
                ctx.spawn(list);
            }
        }
    }

    fn on_whole(&mut self, whole: Whole, ctx: &mut ws::WebsocketContext<Self>) {
        match whole {
            Whole::Text(bytes) => match std::str::from_utf8(&bytes) {
                Ok(text) => self.on_text(text, ctx),
                Err(_) => {
                    self.close(ctx, close::INVALID_PAYLOAD, "text message is not valid UTF-8")
                }
            },
            Whole::Binary(_) => self.reject(ctx, binary_unsupported()),
        }
    }
}

/// Joins one connection may make at once before they are spaced by `--rename-interval`: enough
/// to enter as many rooms as it may be in (a page restoring its rooms after a reload), and 10
/// more for the joins refused on the way (a join uses its place before the lobby's limits
/// answer) and renames.
pub fn join_burst(max_rooms_per_connection: usize) -> NonZeroU32 {
    let rooms = u32::try_from(max_rooms_per_connection).unwrap_or(u32::MAX);
    NonZeroU32::new(rooms.saturating_add(10)).unwrap_or(NonZeroU32::MIN)
}

/// Whether a connection allowed only `only` may enter `room`.
pub fn may_enter(only: Option<&[String]>, room: &str) -> bool {
    only.is_none_or(|rooms| rooms.iter().any(|allowed| allowed == room))
}

fn binary_unsupported() -> Rejection {
    Rejection::new(
        ErrorCode::BinaryUnsupported,
        "Binary frames are not supported; send JSON in text frames.",
    )
}

/// The close reason when the server shuts down.
const GOING_AWAY_REASON: &str = "the server is restarting; reconnect shortly";

impl Actor for Session {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        tracing::info!(conn = self.conn, "connected");
        if let Some(Refusal { why, retry }) = self.refused.take().map(|refused| *refused) {
            // Written at once, ahead of the close (the queue is not read yet): nothing else
            // was sent. The close's reason repeats the words (within the 123 bytes a reason
            // may take), for clients that show only the close.
            let (code, close_code) = match retry {
                true => (ErrorCode::Unavailable, TRY_AGAIN_LATER),
                false => (ErrorCode::Unauthenticated, close::UNAUTHENTICATED),
            };
            self.metrics.error(code);
            tracing::debug!(conn = self.conn, why, "refused: no identity this server accepts");
            ctx.text(encode(&ServerMessage::error(code, why.clone())));
            let mut reason = why;
            while reason.len() > 120 {
                reason.pop();
            }
            ctx.close(Some(CloseReason {
                code: CloseCode::from(close_code),
                description: Some(reason),
            }));
            return ctx.stop();
        }
        self.heartbeat(ctx);
        self.check_session(ctx);
        if let Some(queued) = self.queued.take() {
            ctx.add_stream(queued);
        }
        let Some(start) = self.initial.take().map(|start| *start) else { return };
        // Every session closes with 1001 when the server starts shutting down. Rooms tell their
        // members too; a connection in no room (its join refused, or it left its last room)
        // would otherwise hold a stopping server until the shutdown grace runs out.
        let going_away = fut::wrap_future::<_, Self>(start.going_away.watch());
        ctx.spawn(going_away.map(|(), session, ctx| {
            if ctx.state() == ActorState::Running {
                session.close(ctx, close::GOING_AWAY, GOING_AWAY_REASON);
            }
        }));
        match start.target {
            Ok(target) => self.join(target, false, ctx),
            Err(rejection) => self.reject(ctx, rejection),
        }
    }
}

impl Drop for Session {
    /// Leaves the room here rather than in `stopping`: when a write fails because the peer is
    /// gone, actix-http drops the response body and actix-web-actors drops the actor with it,
    /// without running `stopping` or `stopped`. `Drop` runs on every path.
    fn drop(&mut self) {
        let rooms = std::mem::take(&mut self.memberships).into_iter().map(|(room, _)| room);
        tracing::info!(conn = self.conn, rooms = rooms.len(), "disconnected");
        self.metrics.memberships.dec_by(i64::try_from(rooms.len()).unwrap_or(i64::MAX));
        for room in rooms.chain(self.joining.take()) {
            self.lobby.do_send(lobby::Leave { room, conn: self.conn, farewell: false });
        }
        self.metrics.connections.dec();
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for Session {
    fn handle(&mut self, item: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        let message = match item {
            Ok(message) => message,
            Err(ws::ProtocolError::Overflow) => {
                let limit = self.config.limits.max_frame_bytes;
                return self.close(
                    ctx,
                    close::MESSAGE_TOO_BIG,
                    &format!("frame over {limit} bytes"),
                );
            }
            Err(ws::ProtocolError::Io(error)) => {
                // actix-web-actors reports text frames that are not UTF-8 this way; a broken
                // connection also lands here, where the close frame simply goes nowhere.
                tracing::debug!(conn = self.conn, %error, "stream error");
                return self.close(
                    ctx,
                    close::INVALID_PAYLOAD,
                    "invalid frame data or broken stream",
                );
            }
            Err(error) => {
                tracing::debug!(conn = self.conn, %error, "protocol error");
                return self.close(ctx, close::POLICY_VIOLATION, "WebSocket protocol error");
            }
        };
        self.heard = Instant::now();
        // Every frame counts against the rate limit, whatever its kind: fragments and pongs
        // cost the server as much to read as whole messages.
        let admitted = matches!(message, ws::Message::Close(_)) || self.admit(ctx);
        match message {
            // A refused fragment still counts for its message's sequence and size, and the
            // message it belongs to is dropped.
            ws::Message::Continuation(item) => {
                match self.fragments.push(item, self.config.limits.max_message_bytes) {
                    Ok(Some(whole)) if admitted => self.on_whole(whole, ctx),
                    Ok(_) if !admitted => self.fragments.drop_current(),
                    Ok(_) => {}
                    Err(error @ crate::fragments::FragmentError::TooBig { .. }) => {
                        self.close(ctx, close::MESSAGE_TOO_BIG, &error.to_string());
                    }
                    Err(error) => self.close(ctx, close::POLICY_VIOLATION, &error.to_string()),
                }
            }
            _ if !admitted => {}
            ws::Message::Text(text) => self.on_text(&text, ctx),
            ws::Message::Binary(_) => self.reject(ctx, binary_unsupported()),
            ws::Message::Ping(payload) => ctx.pong(&payload),
            ws::Message::Pong(_) | ws::Message::Nop => {}
            ws::Message::Close(reason) => {
                tracing::debug!(conn = self.conn, ?reason, "client closed");
                ctx.close(reason);
                ctx.stop();
            }
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        // The client went away without a close frame.
        ctx.stop();
    }
}

/// Frames from the rooms, already encoded and shared between all recipients.
impl StreamHandler<ByteString> for Session {
    fn handle(&mut self, frame: ByteString, ctx: &mut Self::Context) {
        ctx.text(frame);
    }

    /// Not reached: the frame queue never ends (the default would stop the session).
    fn finished(&mut self, _: &mut Self::Context) {}
}

impl Session {
    /// Whether news from `instance` is about a room this session is in now. A room's message
    /// can cross the session's move to another room; acting on it then would drop the new
    /// membership and leave a member there that no connection backs.
    fn is_current(&self, instance: RoomInstance) -> bool {
        let current = self.memberships.values().any(|m| m.instance == instance);
        if !current {
            tracing::debug!(conn = self.conn, instance, "stale news from a room this session left");
        }
        current
    }
}

/// What the rooms tell this session.
impl Handler<SessionEvent> for Session {
    type Result = ();

    fn handle(&mut self, event: SessionEvent, ctx: &mut Self::Context) {
        match event {
            SessionEvent::Removed { instance, reason } => {
                if !self.is_current(instance) {
                    return;
                }
                self.close(ctx, close::REMOVED, &reason);
            }
            SessionEvent::Replaced { instance } => {
                if !self.is_current(instance) {
                    return;
                }
                // The membership is kept: `Drop` still leaves the room, which is harmless if
                // the room has already dropped this connection, and removes it if a join of
                // this connection crossed the notice and was admitted again.
                let reason = "replaced by a newer connection of the same client";
                self.close(ctx, close::REPLACED, reason);
            }
            // Closes the connection even if the notice is stale (the session has moved to
            // another room since): the room closed the session's one frame queue, which every
            // room shares, so the session could not be told anything anywhere. The membership
            // is kept for `Drop`, as for `Replaced`.
            SessionEvent::TooSlow { instance } => {
                tracing::info!(conn = self.conn, instance, "dropped as not reading");
                let reason = "too many messages were waiting: not reading";
                self.close(ctx, close::SLOW_READER, reason);
            }
            SessionEvent::GoingAway => self.close(ctx, close::GOING_AWAY, GOING_AWAY_REASON),
        }
    }
}
