//! The connection to the server: opens the WebSocket, forwards what arrives to the reducer as
//! [`Action`]s, sends what the page asks, and reconnects with backoff and jitter when the
//! connection drops, rejoining the room (and nick) it was last welcomed to with the last
//! message id it saw there, so the server sends exactly what was missed. When that is more
//! than one page, it asks for the rest (`history` after the last id it has) page by page.
//!
//! Close codes decide what follows (docs/PROTOCOL.md): a refusal of what this page sent
//! (1007, 1008, 1009) or a takeover by another tab (4001) ends the connection for good; every
//! other close reconnects, and the backoff only starts over after a connection that stayed
//! healthy for a while, so a server that accepts and closes at once is not hammered.
//!
//! Chat messages go through the [`outbox`](crate::outbox): each is sent with its client id
//! once the connection is welcomed in its room, a few at a time, and again after every
//! reconnect until the server acknowledges it. Other requests made while disconnected wait in
//! the queue and go out once the new connection has heard from the server. A join (or page)
//! refused for now (`rate_limited`, `unavailable`) is sent again after the wait the server
//! names; a join refused for good (the nick was taken meanwhile) leaves the socket without a
//! room, and the page asks the user.
//!
//! [`Link`] holds these rules as plain logic, one frame at a time; the loop here only moves
//! frames and timers.

use std::collections::{HashMap, HashSet, VecDeque};

use futures::channel::mpsc;
use futures::future::{self, Either};
use futures::stream::{self, LocalBoxStream};
use futures::{SinkExt, StreamExt};
use gloo_net::websocket::futures::WebSocket;
use gloo_net::websocket::{Message, WebSocketError};
use protocol::{ClientMessage, ErrorCode, MessageId, ServerMessage, close};
use yew::Callback;

use crate::backoff;
use crate::outbox::Outbox;
use crate::state::{Action, refuses_join};

/// Messages sent and not yet acknowledged, at most, per connection; the rest wait their turn
/// (the server's rate limit allows bursts of 20 frames).
pub const SEND_WINDOW: usize = 8;
/// How long to wait before sending again after a refusal that names no wait.
const RETRY_MS: u32 = 1_000;
/// Outbox messages sent in any one second, at most: under the server's default rate limit (10
/// frames a second, bursts of 20), with room for typing notices, history pages and pongs, so
/// that replaying a full outbox after an outage never runs into the limit, whose refusals add
/// up to a 1008 close.
pub const SENDS_PER_SECOND: usize = 6;

/// Who to be and where to go on (re)connecting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The rooms to be in: the first is the connect URL's, the others are joined (`add`) once
    /// it has welcomed the socket.
    pub seats: Vec<Seat>,
    pub nick: String,
    /// This tab's token, so a reconnect can take over its own nick at once.
    pub client: String,
    /// The sign-in token the operator's site gave the page (`--auth token`), sent with every
    /// connect.
    pub auth: Option<String>,
    /// An invitation code to the first room (private), sent with every connect.
    pub invite: Option<String>,
}

/// One room to be in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seat {
    pub room: String,
    /// The last message id up to which the room was seen without a gap: where a reconnect
    /// resumes.
    pub since: Option<MessageId>,
    /// The epoch `since` belongs to (from the room's welcome).
    pub epoch: Option<String>,
}

impl Target {
    /// To be `nick` in `rooms` (the first through the connect URL).
    pub fn new(rooms: impl IntoIterator<Item = String>, nick: String, client: String) -> Self {
        let mut seats: Vec<Seat> = Vec::new();
        for room in rooms {
            if !seats.iter().any(|seat| seat.room == room) {
                seats.push(Seat { room, since: None, epoch: None });
            }
        }
        Target { seats, nick, client, auth: None, invite: None }
    }

    /// The same, connecting with the sign-in token `auth`.
    pub fn with_auth(self, auth: Option<String>) -> Self {
        Target { auth, ..self }
    }

    /// The same, connecting with the invitation code `invite` to the first room.
    pub fn with_invite(self, invite: Option<String>) -> Self {
        Target { invite, ..self }
    }

    /// The room the connect URL names.
    pub fn first_room(&self) -> &str {
        self.seats.first().map_or(protocol::DEFAULT_ROOM, |seat| seat.room.as_str())
    }

    fn seat(&self, room: &str) -> Option<&Seat> {
        self.seats.iter().find(|seat| seat.room == room)
    }

    fn seat_mut(&mut self, room: &str) -> Option<&mut Seat> {
        self.seats.iter_mut().find(|seat| seat.room == room)
    }

    /// The `join` that the connect URL stands for, as a frame.
    fn join(&self) -> ClientMessage {
        self.join_to(self.first_room(), false)
    }

    /// A `join` of `room`, resuming where this target last saw it.
    fn join_to(&self, room: &str, add: bool) -> ClientMessage {
        let seat = self.seat(room);
        ClientMessage::Join {
            room: room.to_owned(),
            nick: Some(self.nick.clone()),
            since: seat.and_then(|seat| seat.since),
            add,
            epoch: seat.and_then(|seat| seat.epoch.clone()),
        }
    }
}

/// The WebSocket URL for `target` on a server whose WebSocket origin is `base`
/// (`ws://host:port` or `wss://host`).
pub fn ws_url(base: &str, target: &Target) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    query
        .append_pair("room", target.first_room())
        .append_pair("nick", &target.nick)
        .append_pair("client", &target.client);
    if let Some(first) = target.seats.first() {
        if let Some(since) = first.since {
            query.append_pair("since", &since.to_string());
        }
        if let Some(epoch) = &first.epoch {
            query.append_pair("epoch", epoch);
        }
    }
    if let Some(auth) = &target.auth {
        query.append_pair("token", auth);
    }
    if let Some(invite) = &target.invite {
        query.append_pair("invite", invite);
    }
    format!("{base}{}?{}", protocol::WS_PATH, query.finish())
}

/// What the page asks of the connection.
#[derive(Debug)]
enum Request {
    /// Send this as is (join, list rooms, typing).
    Send(ClientMessage),
    /// The outbox changed: send what may be sent.
    Flush,
}

/// A handle to the running connection. Dropping every handle closes the socket.
#[derive(Debug, Clone)]
pub struct Connection {
    requests: mpsc::UnboundedSender<Request>,
}

impl PartialEq for Connection {
    fn eq(&self, other: &Self) -> bool {
        self.requests.same_receiver(&other.requests)
    }
}

impl Connection {
    /// Starts connecting to `base` as `target`; every event is reported through `on_action`,
    /// starting with the messages still waiting in the outbox.
    pub fn open(base: String, target: Target, on_action: Callback<Action>) -> Self {
        for item in Outbox::load().items() {
            on_action.emit(Action::Queued(item.clone()));
        }
        let (requests, queue) = mpsc::unbounded();
        wasm_bindgen_futures::spawn_local(run(base, target, queue, on_action));
        Connection { requests }
    }

    /// Queues a request; it is sent as soon as the connection is up.
    pub fn send(&self, message: ClientMessage) {
        self.request(Request::Send(message));
    }

    /// Sends what the stored outbox holds for the current seat and may be sent now (the page
    /// calls this once it has stored a new message).
    pub fn flush(&self) {
        self.request(Request::Flush);
    }

    fn request(&self, request: Request) {
        // Fails only once the connection gave up for good (another tab replaced it), and the
        // page shows that state already.
        if self.requests.unbounded_send(request).is_err() {
            gloo_console_warn("request dropped: the connection has ended");
        }
    }
}

/// How one connection attempt ended.
enum Ended {
    /// The socket closed with `code` (`None`: it failed or never opened); `healthy` says
    /// whether it had stayed online long enough for the backoff to start over.
    Closed { healthy: bool },
    /// Another connection with this tab's token took the seat: do not reconnect.
    Replaced,
    /// The server closed for a reason that reconnecting cannot fix: do not reconnect.
    Refused { code: u16, reason: String },
    /// Every handle was dropped: the page no longer wants a connection.
    Abandoned,
}

/// What a close code asks of the client (docs/PROTOCOL.md, "close codes").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseAdvice {
    /// Reconnect with the usual backoff (server restart, heartbeat timeout, network failure).
    Reconnect,
    /// Reconnect, but never as if the connection had been healthy: the server removed us
    /// for not reading (4003), and coming straight back would repeat it.
    ReconnectSlowly,
    /// Another tab or device with this tab's token has the seat now (4001).
    Replaced,
    /// The server refused what this page sent (1007, 1008, 1009) or who it is (4004): the same
    /// page would be refused again, so say so instead of reconnecting.
    Stop,
}

/// The advice for a close `code`.
pub fn close_advice(code: u16) -> CloseAdvice {
    match code {
        close::REPLACED => CloseAdvice::Replaced,
        close::INVALID_PAYLOAD
        | close::POLICY_VIOLATION
        | close::MESSAGE_TOO_BIG
        | close::UNAUTHENTICATED
        | close::REMOVED => CloseAdvice::Stop,
        close::SLOW_READER => CloseAdvice::ReconnectSlowly,
        _ => CloseAdvice::Reconnect,
    }
}

/// The words shown when the server closed the connection for good with `code`.
pub fn refusal_text(code: u16, reason: &str) -> String {
    let why = match (reason.trim(), code) {
        ("", close::INVALID_PAYLOAD) => "it could not read what this page sent",
        ("", close::POLICY_VIOLATION) => "this page sent too much, too fast",
        ("", close::MESSAGE_TOO_BIG) => "this page sent a frame that was too large",
        (reason, close::UNAUTHENTICATED) => {
            // The server's words (expired, no sign-in...), then what to do.
            let why = if reason.is_empty() { String::new() } else { format!(" {reason}") };
            return format!(
                "This chat is only for people signed in.{why} Log in or register, or (if a site \
                 sent you here) go back to it for a fresh link."
            );
        }
        ("", _) => "it refused this page",
        (reason, _) => reason,
    };
    format!("The server closed the connection ({why}). Reload the page to connect again.")
}

/// What the connection loop reacts to besides the socket.
enum Input {
    Request(Request),
    /// A wait asked for by the server is over: send again what it refused.
    Retry,
    /// The pacing's second is over: send what it held back.
    Paced,
    /// Every handle is gone.
    Abandoned,
}

async fn run(
    base: String,
    mut target: Target,
    queue: mpsc::UnboundedReceiver<Request>,
    on_action: Callback<Action>,
) {
    // Delayed retries come back through their own channel, merged with the page's requests;
    // the page's end of the queue still tells when every handle is gone.
    let (retries, retry_queue) = mpsc::unbounded::<Input>();
    let requests = queue.map(Input::Request).chain(stream::once(future::ready(Input::Abandoned)));
    let mut inputs: LocalBoxStream<'static, Input> =
        stream::select(requests, retry_queue).boxed_local();
    let mut attempt: u32 = 0;
    loop {
        on_action.emit(Action::Connecting);
        match connect_once(&base, &mut target, &mut inputs, &retries, &on_action).await {
            Ended::Replaced => return on_action.emit(Action::Replaced),
            Ended::Refused { code, reason } => {
                return on_action.emit(Action::Closed { message: refusal_text(code, &reason) });
            }
            Ended::Abandoned => return,
            Ended::Closed { healthy } => attempt = backoff::next_attempt(attempt, healthy),
        }
        let delay = backoff::delay(attempt, js_sys::Math::random());
        let delay_ms = u32::try_from(delay.as_millis()).unwrap_or(u32::MAX);
        on_action.emit(Action::Disconnected { attempt, delay_ms });
        gloo_timers::future::sleep(delay).await;
    }
}

/// Joins sent to restore the other rooms and not answered yet, at most: the rooms come back
/// one after another, within the pacing of [`SENDS_PER_SECOND`], instead of as one burst.
pub const JOIN_WINDOW: usize = 2;
/// The longest wait between two attempts at something the server keeps refusing for now.
pub const MAX_RETRY_MS: u32 = 30_000;

/// One socket's protocol state: the rooms it is seated in, the joins it awaits, how far each
/// room has caught up with what it missed, and which outbox messages it sent that await their
/// acknowledgement. Plain logic, driven one frame at a time, so the host tests can check it.
///
/// Everything it sends after the first join goes through one pacing (at most
/// [`SENDS_PER_SECOND`] frames a second, nothing while the server asked to wait): the joins
/// that bring the other rooms back, the history pages of a catch-up (one room at a time, one
/// page in flight), and the outbox.
#[derive(Debug)]
pub struct Link {
    /// The rooms welcomed on this socket, with the nick accepted in each.
    seated: HashMap<String, String>,
    /// Joins sent (or, first, the one the URL stands for) and not answered yet, oldest first.
    joining: VecDeque<ClientMessage>,
    /// Joins refused for now, waiting for the end of the wait the server asked for.
    held: Vec<ClientMessage>,
    /// Joins whose wait is over, sent again (resuming where each room was last seen) with the
    /// next batch.
    due: Vec<ClientMessage>,
    /// The first welcome on this socket came: the target's other rooms are joined then.
    restoring: bool,
    /// The target's rooms still to join on this socket, in order.
    restore: VecDeque<String>,
    /// Per room, the id after which pages are still missing while catching up.
    paging: HashMap<String, MessageId>,
    /// The room whose next page was asked for and has not arrived.
    page_out: Option<String>,
    /// Per room, the newest message that arrived live while catching up.
    live: HashMap<String, MessageId>,
    in_flight: Vec<String>,
    /// When the last frames were sent (ms), for [`SENDS_PER_SECOND`].
    sent_at: VecDeque<f64>,
    /// The server refused a frame as too fast: nothing until the retry.
    paused: bool,
    /// How long until the next batch may go, when pacing held something back.
    wait: Option<u32>,
    /// Messages acknowledged or refused for good on this socket: skipped even while the stored
    /// outbox still lists them.
    done: HashSet<String>,
    /// A refusal that names no frame came (the frame rate): every join and page in flight may
    /// have been the refused one, so the retry sends them again. Only then: sending a join
    /// twice would bring a second welcome.
    resend: bool,
    /// Refusals for now in a row, with no progress between them: each doubles the wait.
    strikes: u32,
}

/// What a frame from the server asks the connection to do.
#[derive(Debug, Default, PartialEq)]
pub struct Reaction {
    /// The window or the seats changed: send what may be sent now.
    pub flush: bool,
    /// Call [`Link::retry`], then send what may be sent, after this many milliseconds.
    pub retry_in: Option<u32>,
    /// Send what may be sent after this many milliseconds: a message was refused for now.
    pub flush_in: Option<u32>,
    /// The server refused to seat the socket in this room.
    pub refused: Option<String>,
}

impl Link {
    /// A new socket, opened to join as `target` says.
    pub fn new(target: &Target) -> Self {
        Link {
            seated: HashMap::new(),
            joining: VecDeque::from([target.join()]),
            held: Vec::new(),
            due: Vec::new(),
            restoring: false,
            restore: VecDeque::new(),
            paging: HashMap::new(),
            page_out: None,
            live: HashMap::new(),
            in_flight: Vec::new(),
            sent_at: VecDeque::new(),
            paused: false,
            wait: None,
            resend: false,
            done: HashSet::new(),
            strikes: 0,
        }
    }

    /// Seated in `room` and not in the middle of a join there: its sends go where they
    /// belong.
    fn settled(&self, room: &str) -> bool {
        let mut waiting = self.joining.iter().chain(&self.held).chain(&self.due);
        self.seated.contains_key(room) && !waiting.any(|join| joins(join, room))
    }

    /// Notes a request the page sends on this socket.
    pub fn on_request(&mut self, target: &mut Target, request: &ClientMessage) {
        match request {
            ClientMessage::Join { room, add, .. } => {
                if *add && target.seat(room).is_none() {
                    target.seats.push(Seat { room: room.clone(), since: None, epoch: None });
                }
                self.restore.retain(|queued| queued != room);
                self.joining.push_back(request.clone());
            }
            ClientMessage::Leave { room } => {
                // The server answers a join still on its way, then leaves: a welcome for a
                // room that is no seat any more is stale (see `on_server`).
                target.seats.retain(|seat| seat.room != *room);
                self.seated.remove(room);
                self.paging.remove(room);
                self.live.remove(room);
                self.restore.retain(|queued| queued != room);
                self.joining.retain(|join| !joins(join, room));
                self.held.retain(|join| !joins(join, room));
                self.due.retain(|join| !joins(join, room));
                if self.page_out.as_ref() == Some(room) {
                    self.page_out = None;
                }
            }
            _ => {}
        }
    }

    /// Paces one more frame at `now` (ms) under [`SENDS_PER_SECOND`]; `false` (and a wait
    /// noted for [`Link::take_wait`]) if the second is full.
    fn pace(&mut self, now: f64) -> bool {
        while self.sent_at.front().is_some_and(|at| now - at >= 1_000.0) {
            self.sent_at.pop_front();
        }
        if self.sent_at.len() >= SENDS_PER_SECOND {
            let oldest = self.sent_at.front().copied().unwrap_or(now);
            // Rounded up, plus one, so the retry finds the second over.
            self.wait = Some((oldest + 1_000.0 - now).max(0.0) as u32 + 1);
            return false;
        }
        self.sent_at.push_back(now);
        true
    }

    /// What may be sent now, paced under [`SENDS_PER_SECOND`] at `now` (ms): joins refused
    /// for now, the joins that bring back the target's other rooms (a few at a time), the
    /// next history page of a catch-up, then the outbox messages of the rooms the socket is
    /// seated in, up to the window. If pacing held one back, [`Link::take_wait`] says when to
    /// try again.
    pub fn next_batch(&mut self, target: &Target, outbox: &Outbox, now: f64) -> Vec<ClientMessage> {
        if self.paused {
            return Vec::new();
        }
        let mut batch = Vec::new();
        while self.joining.len() < JOIN_WINDOW && !self.due.is_empty() {
            if !self.pace(now) {
                return batch;
            }
            let join = self.due.remove(0);
            let join = match join {
                ClientMessage::Join { room, nick, add, .. } => {
                    let seat = target.seat(&room);
                    let since = seat.and_then(|seat| seat.since);
                    let epoch = seat.and_then(|seat| seat.epoch.clone());
                    ClientMessage::Join { room, nick, since, add, epoch }
                }
                other => other,
            };
            self.joining.push_back(join.clone());
            batch.push(join);
        }
        while self.joining.len() < JOIN_WINDOW
            && let Some(room) = self.restore.front().cloned()
        {
            if !self.pace(now) {
                return batch;
            }
            self.restore.pop_front();
            let join = target.join_to(&room, true);
            self.joining.push_back(join.clone());
            batch.push(join);
        }
        if self.page_out.is_none()
            && let Some((room, after)) = self.next_page(target)
        {
            if !self.pace(now) {
                return batch;
            }
            batch.push(page_after(&room, after));
            self.page_out = Some(room);
        }
        for item in outbox.items() {
            if self.in_flight.len() >= SEND_WINDOW {
                break;
            }
            let seated_as = self.seated.get(&item.room);
            if seated_as != Some(&item.nick) || !self.settled(&item.room) {
                continue;
            }
            if self.in_flight.contains(&item.client_id) || self.done.contains(&item.client_id) {
                continue;
            }
            if !self.pace(now) {
                break;
            }
            self.in_flight.push(item.client_id.clone());
            batch.push(item.request());
        }
        batch
    }

    /// The next room to page through (the target's order) and where its catch-up stands.
    fn next_page(&self, target: &Target) -> Option<(String, MessageId)> {
        target
            .seats
            .iter()
            .find_map(|seat| self.paging.get(&seat.room).map(|after| (seat.room.clone(), *after)))
    }

    /// How long to wait before sending again, if pacing held something back (once).
    pub fn take_wait(&mut self) -> Option<u32> {
        self.wait.take()
    }

    /// A wait the server asked for is over: what it refused for now goes out with the next
    /// batch (the joins, resuming where each room was last seen, and the page in flight).
    pub fn retry(&mut self) {
        self.paused = false;
        self.due.append(&mut self.held);
        if std::mem::take(&mut self.resend) {
            self.due.extend(self.joining.drain(..));
            self.page_out = None;
        }
    }

    /// The wait before trying again after a refusal for now: the server's hint (or a second),
    /// doubled for each refusal in a row, at most [`MAX_RETRY_MS`].
    fn backoff(&mut self, retry_after_ms: Option<u64>) -> u32 {
        let delay = retry_delay(retry_after_ms);
        let doubled = delay.saturating_mul(1 << self.strikes.min(6));
        self.strikes = self.strikes.saturating_add(1);
        doubled.min(MAX_RETRY_MS.max(delay))
    }

    /// Updates `target` and what this socket has in flight for a frame from the server, and
    /// says what to do next. (The stored outbox is the page state's to change.)
    pub fn on_server(&mut self, target: &mut Target, message: &ServerMessage) -> Reaction {
        let mut reaction = Reaction::default();
        match message {
            ServerMessage::Welcome { room, nick, history, since, more, epoch, .. } => {
                let answered = self.joining.iter().position(|join| joins(join, room));
                let join = answered.and_then(|at| self.joining.remove(at));
                self.held.retain(|held| !joins(held, room));
                self.due.retain(|due| !joins(due, room));
                if join.is_none() && target.seat(room).is_none() {
                    // A room left while its join was on its way: the server leaves it next.
                    return reaction;
                }
                let moved = matches!(join, Some(ClientMessage::Join { add: false, .. }));
                if moved && self.restoring {
                    // A move: the server left every other room.
                    target.seats.retain(|seat| seat.room == *room);
                    self.seated.clear();
                    self.paging.clear();
                    self.live.clear();
                    self.restore.clear();
                    self.page_out = None;
                }
                if target.seat(room).is_none() {
                    target.seats.insert(0, Seat { room: room.clone(), since: None, epoch: None });
                }
                self.strikes = 0;
                target.nick.clone_from(nick);
                self.seated.insert(room.clone(), nick.clone());
                let resume = history.last().map(|newest| newest.id).or(*since);
                if let Some(seat) = target.seat_mut(room) {
                    seat.since = resume;
                    // A server older than epochs sends none: nothing to send back then.
                    seat.epoch = Some(epoch.clone()).filter(|epoch| !epoch.is_empty());
                }
                self.live.remove(room);
                self.paging.remove(room);
                if self.page_out.as_ref() == Some(room) {
                    self.page_out = None;
                }
                if let Some(after) = resume.filter(|_| *more) {
                    self.paging.insert(room.clone(), after);
                }
                if !self.restoring {
                    self.restoring = true;
                    let others = target.seats.iter().filter(|seat| seat.room != *room);
                    self.restore = others.map(|seat| seat.room.clone()).collect();
                }
                reaction.flush = true;
            }
            ServerMessage::Reset { room, epoch } => {
                // What this socket knew of the room is another history's: its welcome (next)
                // starts it afresh.
                if let Some(seat) = target.seat_mut(room) {
                    seat.since = None;
                    seat.epoch = Some(epoch.clone());
                }
                self.paging.remove(room);
                self.live.remove(room);
                if self.page_out.as_ref() == Some(room) {
                    self.page_out = None;
                }
            }
            ServerMessage::Message(message) => {
                let room = &message.room;
                if self.paging.contains_key(room) {
                    // Older stored messages may still be missing: resume from the pages.
                    let live = self.live.entry(room.clone()).or_default();
                    *live = (*live).max(message.id);
                } else if self.seated.contains_key(room)
                    && let Some(seat) = target.seat_mut(room)
                {
                    seat.since = seat.since.max(Some(message.id));
                }
            }
            ServerMessage::History { room, messages, after: Some(after), more, .. }
                if self.paging.get(room) == Some(after) =>
            {
                self.strikes = 0;
                if self.page_out.as_ref() == Some(room) {
                    self.page_out = None;
                }
                let reached = messages.last().map(|newest| newest.id).unwrap_or(*after);
                if *more && !messages.is_empty() {
                    self.paging.insert(room.clone(), reached);
                    if let Some(seat) = target.seat_mut(room) {
                        seat.since = Some(reached);
                    }
                } else {
                    // Caught up: what arrived live meanwhile follows without a gap.
                    self.paging.remove(room);
                    let live = self.live.remove(room);
                    if let Some(seat) = target.seat_mut(room) {
                        seat.since = Some(reached).max(live);
                    }
                }
                reaction.flush = true;
            }
            ServerMessage::Ack { client_id, .. } => {
                // The page's state takes it out of the stored outbox; until that is written,
                // this connection knows not to send it again.
                self.strikes = 0;
                self.done.insert(client_id.clone());
                self.in_flight.retain(|id| id != client_id);
                reaction.flush = true;
            }
            ServerMessage::Error { code, client_id: Some(client_id), retry_after_ms, .. } => {
                self.in_flight.retain(|id| id != client_id);
                if code.is_transient() {
                    reaction.flush_in = Some(self.backoff(*retry_after_ms));
                } else {
                    self.done.insert(client_id.clone());
                    reaction.flush = true;
                }
            }
            ServerMessage::Error {
                code,
                client_id: None,
                retry_after_ms,
                room: Some(room),
                ..
            } if answers_join(*code) && self.joining.iter().any(|join| joins(join, room)) => {
                let at = self.joining.iter().position(|join| joins(join, room));
                let Some(join) = at.and_then(|at| self.joining.remove(at)) else {
                    return reaction;
                };
                let add = matches!(join, ClientMessage::Join { add: true, .. });
                let transient = matches!(code, ErrorCode::RateLimited | ErrorCode::Unavailable);
                if transient || *code == ErrorCode::TooManyRooms && add {
                    // That join, again after the wait (for `too_many_rooms`, when the server
                    // or this address has a place for another open room again).
                    self.held.push(join);
                    reaction.retry_in = Some(self.backoff(*retry_after_ms));
                } else {
                    // Refused for good: the socket stays where it was (a refused rename keeps
                    // the seat); a room it was entering is given up, and the page told.
                    if add && !self.seated.contains_key(room) {
                        target.seats.retain(|seat| seat.room != *room);
                        reaction.refused = Some(room.clone());
                    }
                    reaction.flush = true;
                }
            }
            ServerMessage::Error {
                code,
                client_id: None,
                retry_after_ms,
                room: Some(room),
                ..
            } if code.is_transient() && self.seated.contains_key(room) => {
                // A refusal about a room this socket thinks it is in, with no join of it on its
                // way: the server has left it (a join it gave up waiting for, admitted after
                // all and undone), or a page of it was refused. Join it again; if the server
                // still has the seat, that only brings a welcome that resumes where it was.
                self.seated.remove(room);
                self.paging.remove(room);
                self.live.remove(room);
                if self.page_out.as_ref() == Some(room) {
                    self.page_out = None;
                }
                self.held.push(target.join_to(room, true));
                reaction.retry_in = Some(self.backoff(*retry_after_ms));
            }
            ServerMessage::Error { code, client_id: None, retry_after_ms, room: None, .. }
                if matches!(code, ErrorCode::RateLimited | ErrorCode::Unavailable) =>
            {
                // The refused frame is unknown: send everything in flight again later (the
                // server recognises the messages it already has), and the joins and the page
                // too; nothing meanwhile, or each acknowledgement would send more into the limit.
                self.in_flight.clear();
                self.paused = *code == ErrorCode::RateLimited;
                self.resend = true;
                reaction.retry_in = Some(self.backoff(*retry_after_ms));
            }
            _ => {}
        }
        reaction
    }
}

/// Whether an error with this code can answer a `join`.
fn answers_join(code: ErrorCode) -> bool {
    matches!(code, ErrorCode::RateLimited | ErrorCode::Unavailable) || refuses_join(code)
}

/// Whether `request` is a join of `room`.
fn joins(request: &ClientMessage, room: &str) -> bool {
    matches!(request, ClientMessage::Join { room: joined, .. } if joined == room)
}

fn page_after(room: &str, after: MessageId) -> ClientMessage {
    ClientMessage::History { room: room.to_owned(), before: None, after: Some(after), limit: None }
}

fn retry_delay(retry_after_ms: Option<u64>) -> u32 {
    retry_after_ms.map_or(RETRY_MS, |ms| u32::try_from(ms).unwrap_or(u32::MAX).max(50))
}

async fn connect_once(
    base: &str,
    target: &mut Target,
    inputs: &mut LocalBoxStream<'static, Input>,
    retries: &mpsc::UnboundedSender<Input>,
    on_action: &Callback<Action>,
) -> Ended {
    let Ok(mut socket) = WebSocket::open(&ws_url(base, target)) else {
        return Ended::Closed { healthy: false };
    };
    // When the first welcome arrived (ms since the epoch), to judge the connection's health.
    let mut welcomed_at: Option<f64> = None;
    let healthy = |welcomed_at: Option<f64>| {
        welcomed_at.is_some_and(|at| js_sys::Date::now() - at >= backoff::HEALTHY_MS)
    };
    let mut link = Link::new(target);
    // The server speaks first (a welcome or an error) as soon as the socket is open; only then
    // is it safe to send, so queued requests wait until a frame has arrived.
    let mut heard = false;
    // One timer at a time for each kind of wait: a burst of refusals must not become a burst
    // of retries.
    let (mut retry_armed, mut flush_armed, mut pace_armed) = (false, false, false);
    let arm = |delay: u32, input: Input| {
        let retries = retries.clone();
        wasm_bindgen_futures::spawn_local(async move {
            gloo_timers::future::TimeoutFuture::new(delay).await;
            // Fails only once the connection loop has ended.
            let _ = retries.unbounded_send(input);
        });
    };
    loop {
        let event = if heard {
            match future::select(socket.next(), inputs.next()).await {
                Either::Left((frame, _)) => Either::Left(frame),
                Either::Right((input, _)) => Either::Right(input),
            }
        } else {
            Either::Left(socket.next().await)
        };
        let mut outgoing = Vec::new();
        match event {
            Either::Left(Some(Ok(Message::Text(text)))) => {
                heard = true;
                match serde_json::from_str::<ServerMessage>(&text) {
                    Ok(message) => {
                        if matches!(message, ServerMessage::Welcome { .. }) {
                            welcomed_at.get_or_insert_with(js_sys::Date::now);
                        }
                        let reaction = link.on_server(target, &message);
                        on_action.emit(Action::Server(message));
                        if let Some(room) = reaction.refused {
                            on_action.emit(Action::JoinRefused { room });
                        }
                        if reaction.flush {
                            outgoing = send_outbox(&mut link, target, on_action);
                        }
                        if let Some(delay) = reaction.retry_in.filter(|_| !retry_armed) {
                            retry_armed = true;
                            arm(delay, Input::Retry);
                        }
                        if let Some(delay) = reaction.flush_in.filter(|_| !flush_armed) {
                            flush_armed = true;
                            arm(delay, Input::Request(Request::Flush));
                        }
                    }
                    Err(error) => gloo_console_warn(&format!("unreadable frame: {error}")),
                }
            }
            Either::Left(Some(Ok(Message::Bytes(_)))) => heard = true,
            Either::Left(Some(Err(WebSocketError::ConnectionClose(event)))) => {
                return match close_advice(event.code) {
                    CloseAdvice::Replaced => Ended::Replaced,
                    CloseAdvice::Stop => Ended::Refused { code: event.code, reason: event.reason },
                    CloseAdvice::ReconnectSlowly => Ended::Closed { healthy: false },
                    CloseAdvice::Reconnect => Ended::Closed { healthy: healthy(welcomed_at) },
                };
            }
            Either::Left(Some(Err(_)) | None) => {
                return Ended::Closed { healthy: healthy(welcomed_at) };
            }
            Either::Right(Some(Input::Request(Request::Send(request)))) => {
                link.on_request(target, &request);
                outgoing.push(request);
            }
            Either::Right(Some(Input::Request(Request::Flush))) => {
                flush_armed = false;
                outgoing = send_outbox(&mut link, target, on_action);
            }
            Either::Right(Some(Input::Paced)) => {
                pace_armed = false;
                outgoing = send_outbox(&mut link, target, on_action);
            }
            Either::Right(Some(Input::Retry)) => {
                retry_armed = false;
                link.retry();
                outgoing = send_outbox(&mut link, target, on_action);
            }
            Either::Right(Some(Input::Abandoned) | None) => return Ended::Abandoned,
        }
        if let Some(delay) = link.take_wait().filter(|_| !pace_armed) {
            // Pacing held something back: send it once the second is over.
            pace_armed = true;
            arm(delay, Input::Paced);
        }
        for request in outgoing {
            let Ok(json) = serde_json::to_string(&request) else { continue };
            if socket.send(Message::Text(json)).await.is_err() {
                return Ended::Closed { healthy: healthy(welcomed_at) };
            }
        }
    }
}

/// What the stored outbox may send now. Each message sent is also reported to the page's state
/// (`Action::Queued`, ignored if known): the state settles it when its ack or refusal comes, and
/// storage follows the state, so a message another visit or tab stored leaves storage too once
/// this page delivers it.
fn send_outbox(
    link: &mut Link,
    target: &Target,
    on_action: &Callback<Action>,
) -> Vec<ClientMessage> {
    let stored = Outbox::load();
    let batch = link.next_batch(target, &stored, now());
    for request in &batch {
        if let ClientMessage::Send { client_id: Some(id), .. } = request
            && let Some(item) = stored.items().iter().find(|item| item.client_id == *id)
        {
            on_action.emit(Action::Queued(item.clone()));
        }
    }
    batch
}

/// A monotonic clock in milliseconds (`performance.now()`), for pacing: the wall clock can
/// step back and would then hold the outbox for as long.
fn now() -> f64 {
    web_sys::window()
        .and_then(|window| window.performance())
        .map_or_else(js_sys::Date::now, |p| p.now())
}

fn gloo_console_warn(text: &str) {
    web_sys::console::warn_1(&text.into());
}

#[cfg(test)]
mod tests {
    use protocol::ChatMessage;

    use super::*;
    use crate::outbox::Outgoing;

    fn chat(id: MessageId, room: &str) -> ChatMessage {
        let from = "a".into();
        ChatMessage {
            id,
            room: room.into(),
            from,
            text: "t".into(),
            ts: 0,
            bot: false,
            signed_in: false,
            ..Default::default()
        }
    }

    fn message(id: MessageId, room: &str) -> ServerMessage {
        ServerMessage::Message(chat(id, room))
    }

    fn target(room: &str) -> Target {
        Target::new([room.to_owned()], "n".into(), "c".into())
    }

    fn welcome(
        room: &str,
        history: &[MessageId],
        since: Option<MessageId>,
        more: bool,
    ) -> ServerMessage {
        ServerMessage::Welcome {
            room: room.into(),
            nick: "n2".into(),
            members: vec![],
            signed_in: vec![],
            history: history.iter().map(|&id| chat(id, room)).collect(),
            rooms: vec![],
            since,
            truncated: false,
            more,
            epoch: "e1".into(),
            role: None,
            private: false,
        }
    }

    fn page(room: &str, after: MessageId, ids: &[MessageId], more: bool) -> ServerMessage {
        ServerMessage::History {
            room: room.into(),
            messages: ids.iter().map(|&id| chat(id, room)).collect(),
            before: None,
            after: Some(after),
            more,
        }
    }

    fn error(code: ErrorCode, retry_after_ms: Option<u64>) -> ServerMessage {
        ServerMessage::Error {
            code,
            message: "no".into(),
            retry_after_ms,
            client_id: None,
            room: None,
        }
    }

    /// A `join` of `room` from the page, naming no nick and no last id.
    fn join_of(room: &str, add: bool) -> ClientMessage {
        ClientMessage::Join { room: room.into(), nick: None, since: None, add, epoch: None }
    }

    /// A refusal of a request about `room` (a join's, say).
    fn refusal(code: ErrorCode, retry_after_ms: Option<u64>, room: &str) -> ServerMessage {
        let mut refusal = error(code, retry_after_ms);
        if let ServerMessage::Error { room: named, .. } = &mut refusal {
            *named = Some(room.into());
        }
        refusal
    }

    /// What the link sends now (nothing in the outbox).
    fn sends(link: &mut Link, target: &Target, now: f64) -> Vec<ClientMessage> {
        link.next_batch(target, &Outbox::default(), now)
    }

    /// A link welcomed in `room` under the nick `n`.
    fn seated_as_n(room: &str) -> (Target, Link) {
        let mut target = target(room);
        let mut link = Link::new(&target);
        let mut welcome = welcome(room, &[], None, false);
        if let ServerMessage::Welcome { nick, .. } = &mut welcome {
            *nick = "n".into();
        }
        link.on_server(&mut target, &welcome);
        (target, link)
    }

    fn outbox(room: &str, nick: &str) -> Outbox {
        let mut outbox = Outbox::default();
        let item = Outgoing {
            client_id: "x1".into(),
            room: room.into(),
            nick: nick.into(),
            text: "hello".into(),
            ts: 0,
            amends: None,
            delete: false,
        };
        outbox.add(item).expect("room");
        outbox
    }

    /// The last seen id follows the welcome and the target room's messages only.
    #[test]
    fn target_tracks_the_last_seen_id() {
        let mut target = target("a");
        let mut link = Link::new(&target);
        link.on_server(&mut target, &welcome("a", &[3, 5], None, false));
        assert_eq!((target.seats[0].since, target.nick.as_str()), (Some(5), "n2"));
        link.on_server(&mut target, &message(9, "other"));
        link.on_server(&mut target, &message(7, "a"));
        assert_eq!(target.seats[0].since, Some(7));
        link.on_server(&mut target, &welcome("a", &[], Some(7), false));
        assert_eq!(target.seats[0].since, Some(7), "a resumed welcome with nothing new keeps it");
        link.on_server(&mut target, &welcome("a", &[], None, false));
        assert_eq!(target.seats[0].since, None, "a fresh, empty room starts over");
    }

    /// A welcome that says more messages follow is continued page by page with `history
    /// after`, until a page says there are no more. Messages arriving live meanwhile do not move
    /// the resume point past the pages (a reconnect then would skip what they have not
    /// brought yet); once caught up, it is the newest of both.
    #[test]
    fn catches_up_page_by_page() {
        let mut target = target("a");
        let mut link = Link::new(&target);
        assert!(link.on_server(&mut target, &welcome("a", &[41, 42], Some(40), true)).flush);
        assert_eq!(sends(&mut link, &target, 0.0), [page_after("a", 42)]);
        assert!(sends(&mut link, &target, 0.0).is_empty(), "one page in flight");
        assert_eq!(target.seats[0].since, Some(42));

        link.on_server(&mut target, &message(100, "a"));
        assert_eq!(target.seats[0].since, Some(42), "older messages are still missing");

        assert!(link.on_server(&mut target, &page("a", 42, &[43, 44], true)).flush);
        assert_eq!(sends(&mut link, &target, 0.0), [page_after("a", 44)]);
        assert_eq!(target.seats[0].since, Some(44));
        link.on_server(&mut target, &error(ErrorCode::RateLimited, Some(50)));
        assert!(sends(&mut link, &target, 0.0).is_empty(), "nothing until the retry");
        link.retry();
        assert_eq!(sends(&mut link, &target, 0.0), [page_after("a", 44)], "asked again");

        link.on_server(&mut target, &page("a", 44, &[45, 100], false));
        assert!(sends(&mut link, &target, 0.0).is_empty(), "caught up");
        assert_eq!(target.seats[0].since, Some(100));
        link.on_server(&mut target, &message(101, "a"));
        assert_eq!(target.seats[0].since, Some(101), "live messages count again");
        link.retry();
        assert!(sends(&mut link, &target, 0.0).is_empty());
    }

    /// Rooms catching up at once are paged one after the other, one page in flight, within
    /// the pacing.
    #[test]
    fn catch_ups_of_several_rooms_take_turns() {
        let mut target = Target::new(["a".into(), "b".into()], "n".into(), "c".into());
        let mut link = Link::new(&target);
        link.on_server(&mut target, &welcome("a", &[5], Some(4), true));
        assert_eq!(sends(&mut link, &target, 0.0).len(), 2, "the join of b and a's page");
        link.on_server(&mut target, &welcome("b", &[9], Some(8), true));
        assert!(sends(&mut link, &target, 0.0).is_empty(), "b waits for a's page");
        link.on_server(&mut target, &page("a", 5, &[6], false));
        assert_eq!(sends(&mut link, &target, 0.0), [page_after("b", 9)]);
    }

    /// A page that does not answer the request in flight (another room, another position, or
    /// after moving to another room) changes nothing and asks for nothing.
    #[test]
    fn stale_pages_are_ignored() {
        let mut target = target("a");
        let mut link = Link::new(&target);
        link.on_server(&mut target, &welcome("a", &[11], Some(10), true));
        assert_eq!(link.on_server(&mut target, &page("b", 11, &[12], true)), Reaction::default());
        assert_eq!(link.on_server(&mut target, &page("a", 5, &[6], true)), Reaction::default());
        assert_eq!(target.seats[0].since, Some(11));

        let move_to_b = join_of("b", false);
        link.on_request(&mut target, &move_to_b);
        link.on_server(&mut target, &welcome("b", &[20], None, false));
        assert_eq!(link.on_server(&mut target, &page("a", 11, &[12], true)), Reaction::default());
        assert_eq!((target.first_room(), target.seats.len()), ("b", 1), "the move left a");
        assert_eq!(target.seats[0].since, Some(20));
        link.on_server(&mut target, &message(21, "b"));
        assert_eq!(target.seats[0].since, Some(21), "not catching up in the new room");
    }

    /// A page that says "more" but brings nothing ends the catch-up instead of asking for the
    /// same page forever.
    #[test]
    fn an_empty_page_ends_the_catch_up() {
        let mut target = target("a");
        let mut link = Link::new(&target);
        link.on_server(&mut target, &welcome("a", &[], Some(10), true));
        assert_eq!(sends(&mut link, &target, 0.0), [page_after("a", 10)]);
        link.on_server(&mut target, &error(ErrorCode::Unavailable, None));
        link.retry();
        assert_eq!(sends(&mut link, &target, 0.0), [page_after("a", 10)]);
        link.on_server(&mut target, &page("a", 10, &[], true));
        assert!(sends(&mut link, &target, 0.0).is_empty());
        link.on_server(&mut target, &error(ErrorCode::Unavailable, None));
        link.retry();
        assert!(sends(&mut link, &target, 0.0).is_empty());
    }

    /// A reconnect refused because the nick was taken meanwhile leaves the socket without a
    /// room: nothing from the outbox is sent (it would only come back as `not_joined`, again
    /// and again), and nothing is retried.
    #[test]
    fn a_refused_rejoin_sends_nothing() {
        let mut target = target("a");
        target.nick = "n".into();
        let outbox = outbox("a", "n");
        let mut link = Link::new(&target);
        let reaction = link.on_server(&mut target, &refusal(ErrorCode::NickTaken, None, "a"));
        assert_eq!((reaction.retry_in, reaction.refused.as_deref()), (None, None), "not given up");
        assert!(link.next_batch(&target, &outbox, 0.0).is_empty());
        link.retry();
        assert!(link.next_batch(&target, &outbox, 0.0).is_empty());

        // A join from the form on the same socket seats it.
        let join = ClientMessage::Join {
            room: "a".into(),
            nick: Some("n".into()),
            since: None,
            add: false,
            epoch: None,
        };
        link.on_request(&mut target, &join);
        let mut welcome = welcome("a", &[], None, false);
        if let ServerMessage::Welcome { nick, .. } = &mut welcome {
            *nick = "n".into();
        }
        assert!(link.on_server(&mut target, &welcome).flush);
        assert_eq!(link.next_batch(&target, &outbox, 0.0), [outbox.items()[0].request()]);
    }

    /// Replaying a full outbox stays under the server's rate limit: at most
    /// [`SENDS_PER_SECOND`] in any second (however fast acknowledgements come back), a wait
    /// that ends when the second is over, and nothing at all after a `rate_limited` until the
    /// retry it asked for.
    #[test]
    fn a_full_outbox_is_paced() {
        let (mut target, mut link) = seated_as_n("a");
        let mut outbox = Outbox::default();
        for i in 0..30 {
            let item = Outgoing {
                client_id: format!("x{i}"),
                room: "a".into(),
                nick: "n".into(),
                text: "hello".into(),
                ts: 0,
                amends: None,
                delete: false,
            };
            outbox.add(item).expect("room");
        }
        let mut sent = 0;
        for step in 0..10 {
            // Every sent message is acknowledged at once, 50 ms apart.
            let batch = link.next_batch(&target, &outbox, f64::from(step) * 50.0);
            for request in &batch {
                let ClientMessage::Send { client_id: Some(id), .. } = request else { continue };
                let ack = ServerMessage::Ack { client_id: id.clone(), id: 1, room: "a".into() };
                link.on_server(&mut target, &ack);
                outbox.remove(id);
            }
            sent += batch.len();
        }
        assert_eq!(sent, SENDS_PER_SECOND, "within the first half second");
        let wait = link.take_wait().expect("told when to go on");
        assert!((500..=1_001).contains(&wait), "{wait} ms");
        assert_eq!(link.next_batch(&target, &outbox, 1_000.0).len(), SENDS_PER_SECOND);

        link.on_server(&mut target, &error(ErrorCode::RateLimited, Some(100)));
        assert!(link.next_batch(&target, &outbox, 5_000.0).is_empty(), "paused until the retry");
        link.retry();
        assert_eq!(link.next_batch(&target, &outbox, 5_000.0).len(), SENDS_PER_SECOND);
    }

    /// A message acknowledged (or refused for good) on this socket is not sent again while
    /// the stored outbox still lists it: the page's state removes it from storage a moment
    /// later, after the reducer has seen the frame.
    #[test]
    fn settled_messages_are_not_sent_again() {
        let (mut target, mut link) = seated_as_n("a");
        let outbox = outbox("a", "n");
        assert_eq!(link.next_batch(&target, &outbox, 0.0).len(), 1);
        let ack = ServerMessage::Ack { client_id: "x1".into(), id: 7, room: "a".into() };
        assert!(link.on_server(&mut target, &ack).flush);
        assert!(link.next_batch(&target, &outbox, 2_000.0).is_empty(), "still stored, not resent");
    }

    /// A refused rename (the nick taken, or the member muted) leaves the seat where it was:
    /// sending goes on, and nothing is reported refused.
    #[test]
    fn a_refused_rename_keeps_the_seat() {
        for code in [ErrorCode::NickTaken, ErrorCode::Muted] {
            let (mut target, mut link) = seated_as_n("a");
            let outbox = outbox("a", "n");
            link.on_request(
                &mut target,
                &ClientMessage::Join {
                    room: "a".into(),
                    nick: Some("taken".into()),
                    since: None,
                    add: false,
                    epoch: None,
                },
            );
            let pending = link.next_batch(&target, &outbox, 0.0);
            assert!(pending.is_empty(), "{code:?}: not while the join is pending");
            let reaction = link.on_server(&mut target, &refusal(code, None, "a"));
            assert_eq!(reaction.refused, None, "{code:?}");
            assert_eq!(link.next_batch(&target, &outbox, 0.0).len(), 1, "{code:?}");
        }
    }

    /// A join answered with `rate_limited` (or `unavailable`) is sent again after the wait the
    /// server named, whether it was a frame or the connect URL's; once welcomed, nothing is.
    #[test]
    fn a_join_refused_for_now_is_retried() {
        let mut target = target("a");
        let mut link = Link::new(&target);
        let reaction = link.on_server(&mut target, &refusal(ErrorCode::Unavailable, None, "a"));
        assert_eq!(reaction.retry_in, Some(RETRY_MS));
        link.retry();
        let again = sends(&mut link, &target, 0.0);
        assert_eq!(again, [target.join()], "the connect URL's join, as a frame");

        link.on_server(&mut target, &welcome("a", &[], None, false));
        let join = join_of("b", false);
        link.on_request(&mut target, &join);
        let reaction = link.on_server(&mut target, &refusal(ErrorCode::RateLimited, Some(87), "b"));
        assert_eq!(reaction.retry_in, Some(87));
        link.retry();
        assert_eq!(sends(&mut link, &target, 0.0), [join]);
        link.on_server(&mut target, &welcome("b", &[], None, false));
        link.retry();
        assert!(sends(&mut link, &target, 0.0).is_empty());
    }

    /// Refusals for now in a row wait longer each time, up to [`MAX_RETRY_MS`]; progress
    /// starts over.
    #[test]
    fn refusals_in_a_row_back_off() {
        let mut target = target("a");
        let mut link = Link::new(&target);
        let mut waits = Vec::new();
        for i in 0..8 {
            let reaction = link.on_server(&mut target, &refusal(ErrorCode::Unavailable, None, "a"));
            waits.push(reaction.retry_in.expect("a retry"));
            link.retry();
            assert_eq!(sends(&mut link, &target, f64::from(i) * 60_000.0), [target.join()]);
        }
        assert_eq!(waits, [1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000]);
        link.on_server(&mut target, &welcome("a", &[], None, false));
        let reaction = link.on_server(&mut target, &error(ErrorCode::RateLimited, Some(100)));
        assert_eq!(reaction.retry_in, Some(100), "a welcome starts over");
    }

    /// Each refusal names its room: with two joins in flight, one refused for now and the
    /// other for good, only the second room is given up, and only the first join is sent
    /// again. A room the server has no place for now comes back later.
    #[test]
    fn refusals_are_told_apart_by_room() {
        let rooms = ["a", "b", "c", "d"].map(String::from);
        let mut target = Target::new(rooms, "n".into(), "c".into());
        let mut link = Link::new(&target);
        link.on_server(&mut target, &welcome("a", &[], None, false));
        assert_eq!(sends(&mut link, &target, 0.0).len(), 2, "joins of b and c");
        link.on_server(&mut target, &refusal(ErrorCode::RateLimited, Some(50), "b"));
        let reaction = link.on_server(&mut target, &refusal(ErrorCode::NickTaken, None, "c"));
        assert_eq!(reaction.refused.as_deref(), Some("c"));
        let rooms: Vec<&str> = target.seats.iter().map(|seat| seat.room.as_str()).collect();
        assert_eq!(rooms, ["a", "b", "d"]);
        let next = sends(&mut link, &target, 0.0);
        assert!(matches!(&next[..], [ClientMessage::Join { room, .. }] if room == "d"));
        link.retry();
        let again = sends(&mut link, &target, 0.0);
        assert!(matches!(&again[..], [ClientMessage::Join { room, .. }] if room == "b"));

        let reaction = link.on_server(&mut target, &refusal(ErrorCode::TooManyRooms, None, "d"));
        assert!(reaction.refused.is_none() && reaction.retry_in.is_some(), "tried again later");
        assert!(target.seat("d").is_some());
        assert!(sends(&mut link, &target, 0.0).is_empty(), "not before the wait");
        link.retry();
        let later = sends(&mut link, &target, 0.0);
        assert!(matches!(&later[..], [ClientMessage::Join { room, .. }] if room == "d"));
    }

    /// A room left while its join was on its way: its welcome (which comes before the server
    /// handles the leave) seats nothing and brings no seat back.
    #[test]
    fn a_room_left_while_joining_stays_left() {
        let (mut target, mut link) = seated_as_n("a");
        let join = join_of("x", true);
        link.on_request(&mut target, &join);
        link.on_request(&mut target, &ClientMessage::Leave { room: "x".into() });
        assert_eq!(
            link.on_server(&mut target, &welcome("x", &[3], None, false)),
            Reaction::default()
        );
        assert!(target.seat("x").is_none());
        let outbox = outbox("x", "n");
        assert!(link.next_batch(&target, &outbox, 0.0).is_empty(), "nothing goes to x");
    }

    /// A message refused for now only brings the outbox back later: a join pending meanwhile
    /// is not sent again (it would bring a second welcome), and neither is it by a retry that
    /// no refusal of its own asked for.
    #[test]
    fn a_refused_message_does_not_send_the_join_again() {
        let mut target = target("a");
        let mut link = Link::new(&target);
        link.on_server(&mut target, &welcome("a", &[], None, false));
        link.on_request(&mut target, &join_of("b", false));
        let refused = ServerMessage::Error {
            code: ErrorCode::Unavailable,
            message: "busy".into(),
            retry_after_ms: None,
            client_id: Some("x1".into()),
            room: None,
        };
        let reaction = link.on_server(&mut target, &refused);
        assert_eq!((reaction.retry_in, reaction.flush_in), (None, Some(RETRY_MS)));
        link.retry();
        assert!(sends(&mut link, &target, 0.0).is_empty(), "the join is still on its way");
    }

    /// Close codes as docs/PROTOCOL.md lists them: the server's refusals and a takeover stop
    /// reconnecting, a removed slow reader backs off, the rest reconnect.
    #[test]
    fn close_codes_decide_whether_to_reconnect() {
        let refusals = [
            close::INVALID_PAYLOAD,
            close::POLICY_VIOLATION,
            close::MESSAGE_TOO_BIG,
            close::UNAUTHENTICATED,
            close::REMOVED,
        ];
        for code in refusals {
            assert_eq!(close_advice(code), CloseAdvice::Stop, "{code}");
        }
        assert_eq!(close_advice(close::REPLACED), CloseAdvice::Replaced);
        assert_eq!(close_advice(close::SLOW_READER), CloseAdvice::ReconnectSlowly);
        for code in [close::NORMAL, close::GOING_AWAY, close::HEARTBEAT_TIMEOUT, 1006] {
            assert_eq!(close_advice(code), CloseAdvice::Reconnect, "{code}");
        }
        assert!(refusal_text(1008, "").contains("too much, too fast"));
        assert!(refusal_text(1009, "frame too large").contains("(frame too large)"));
        let expired =
            refusal_text(close::UNAUTHENTICATED, "The token has expired: get a fresh one.");
        assert!(
            expired.starts_with("This chat is only for people signed in. The token has expired")
        );
    }

    /// The URL carries room, nick, the tab's token and the sign-in token, escaped so any value
    /// survives the trip.
    #[test]
    fn url_escapes_every_field() {
        let mut target = Target::new(["general".into()], "a&b c=é".into(), "t-1".into());
        assert_eq!(
            ws_url("ws://127.0.0.1:8080", &target),
            "ws://127.0.0.1:8080/ws?room=general&nick=a%26b+c%3D%C3%A9&client=t-1"
        );
        target.seats[0].since = Some(42);
        assert!(ws_url("ws://h", &target).ends_with("&client=t-1&since=42"));
        let signed = target.with_auth(Some("a.b+c/d".into())).with_invite(Some("c0de".into()));
        assert!(ws_url("ws://h", &signed).ends_with("&since=42&token=a.b%2Bc%2Fd&invite=c0de"));
    }
    fn welcome_as(room: &str, nick: &str) -> ServerMessage {
        let mut welcome = welcome(room, &[], None, false);
        if let ServerMessage::Welcome { nick: accepted, .. } = &mut welcome {
            *accepted = nick.into();
        }
        welcome
    }

    fn item(id: &str, room: &str) -> Outgoing {
        Outgoing {
            client_id: id.into(),
            room: room.into(),
            nick: "n".into(),
            text: "t".into(),
            ts: 0,
            amends: None,
            delete: false,
        }
    }

    /// The target's other rooms are joined (with `add`) once the first welcome came, at most
    /// [`JOIN_WINDOW`] at a time; a room the server refuses is given up and reported.
    #[test]
    fn other_rooms_are_restored_after_the_first_welcome() {
        let rooms = ["a", "b", "c", "d"].map(String::from);
        let mut target = Target::new(rooms, "n".into(), "c".into());
        let mut link = Link::new(&target);
        let empty = Outbox::default();
        assert!(link.next_batch(&target, &empty, 0.0).is_empty(), "not before the welcome");
        assert!(link.on_server(&mut target, &welcome_as("a", "n")).flush);
        let add = |room: &str| ClientMessage::Join {
            room: room.into(),
            nick: Some("n".into()),
            since: None,
            add: true,
            epoch: None,
        };
        assert_eq!(link.next_batch(&target, &empty, 0.0), [add("b"), add("c")]);
        assert!(link.next_batch(&target, &empty, 0.0).is_empty(), "two joins in flight");
        link.on_server(&mut target, &welcome_as("b", "n"));
        assert_eq!(link.next_batch(&target, &empty, 0.0), [add("d")]);
        let reaction = link.on_server(&mut target, &refusal(ErrorCode::TooManyJoined, None, "c"));
        assert_eq!(reaction.refused.as_deref(), Some("c"));
        let rooms: Vec<&str> = target.seats.iter().map(|seat| seat.room.as_str()).collect();
        assert_eq!(rooms, ["a", "b", "d"]);
        link.on_server(&mut target, &welcome_as("d", "n"));
        assert!(link.next_batch(&target, &empty, 0.0).is_empty());
    }

    /// A room the server keeps this socket out of (private, banned, not in the token's rooms)
    /// is given up and reported like any other refusal, and frees its place in the join
    /// window. (Forbidden and banned answers were once not taken for a join's: the join stayed
    /// in the window for good.)
    #[test]
    fn rooms_refused_by_moderation_are_given_up() {
        for code in [ErrorCode::Forbidden, ErrorCode::Banned] {
            let rooms = ["a", "b", "c", "d"].map(String::from);
            let mut target = Target::new(rooms, "n".into(), "c".into());
            let mut link = Link::new(&target);
            let empty = Outbox::default();
            link.on_server(&mut target, &welcome_as("a", "n"));
            assert_eq!(link.next_batch(&target, &empty, 0.0).len(), 2, "b and c");
            let reaction = link.on_server(&mut target, &refusal(code, None, "b"));
            assert_eq!(reaction.refused.as_deref(), Some("b"), "{code:?}");
            let rooms: Vec<&str> = target.seats.iter().map(|seat| seat.room.as_str()).collect();
            assert_eq!(rooms, ["a", "c", "d"], "{code:?}");
            let next = link.next_batch(&target, &empty, 0.0);
            assert!(
                next.iter().any(|join| joins(join, "d")),
                "{code:?}: the refused join's place in the window goes to d, got {next:?}"
            );
        }
    }

    /// Outbox messages go to the rooms the socket is seated in, naming their room, once each
    /// room's welcome came; a room left takes its messages with it.
    #[test]
    fn the_outbox_sends_to_each_seated_room() {
        let mut target = Target::new(["a".into(), "b".into()], "n".into(), "c".into());
        let mut link = Link::new(&target);
        let mut outbox = Outbox::default();
        for (id, room) in [("x1", "a"), ("x2", "b"), ("x3", "b")] {
            outbox.add(item(id, room)).expect("room");
        }
        link.on_server(&mut target, &welcome_as("a", "n"));
        let batch = link.next_batch(&target, &outbox, 0.0);
        assert_eq!(batch.len(), 2, "the join of b and the message to a");
        assert!(matches!(&batch[1], ClientMessage::Send { room: Some(room), .. } if room == "a"));
        link.on_server(&mut target, &welcome_as("b", "n"));
        let batch = link.next_batch(&target, &outbox, 0.0);
        assert_eq!(batch, [outbox.items()[1].request(), outbox.items()[2].request()]);

        link.on_request(&mut target, &ClientMessage::Leave { room: "b".into() });
        assert_eq!(target.seats.len(), 1);
        link.on_server(&mut target, &error(ErrorCode::Unavailable, None));
        link.retry();
        let batch = link.next_batch(&target, &outbox, 5_000.0);
        assert_eq!(batch, [outbox.items()[0].request()], "b's messages wait: b was left");
    }

    /// Each room resumes from its own last id: a message in one room moves only its `since`,
    /// and the restoring joins carry each room's.
    #[test]
    fn each_room_resumes_from_its_own_last_id() {
        let mut target = Target::new(["a".into(), "b".into()], "n".into(), "c".into());
        let mut link = Link::new(&target);
        link.on_server(&mut target, &welcome("a", &[5], None, false));
        link.on_server(&mut target, &welcome("b", &[7], None, false));
        link.on_server(&mut target, &message(9, "b"));
        let since: Vec<Option<MessageId>> = target.seats.iter().map(|seat| seat.since).collect();
        assert_eq!(since, [Some(5), Some(9)]);
        let mut again = Link::new(&target);
        again.on_server(&mut target, &welcome("a", &[6], Some(5), false));
        let joins = again.next_batch(&target, &Outbox::default(), 0.0);
        assert!(
            matches!(&joins[..], [ClientMessage::Join { room, since: Some(9), add: true, .. }] if room == "b")
        );
    }

    /// A refusal about a room the socket thinks it is in, with no join of it on its way (a
    /// join the server gave up waiting for but its room admitted, then undid; a page of a room
    /// the server no longer has it in): the room is joined again after the wait, and nothing
    /// goes there meanwhile, the page in flight included.
    #[test]
    fn a_room_the_server_left_is_joined_again() {
        let (mut target, mut link) = seated_as_n("a");
        let join = join_of("b", true);
        link.on_request(&mut target, &join);
        let mut welcome = welcome("b", &[4], Some(3), true);
        if let ServerMessage::Welcome { nick, .. } = &mut welcome {
            *nick = "n".into();
        }
        link.on_server(&mut target, &welcome);
        assert_eq!(sends(&mut link, &target, 0.0), [page_after("b", 4)]);
        let reaction = link.on_server(&mut target, &refusal(ErrorCode::NotJoined, None, "b"));
        assert!(reaction.retry_in.is_some());
        let outbox = outbox("b", "n");
        assert!(link.next_batch(&target, &outbox, 0.0).is_empty(), "nothing to b meanwhile");
        link.retry();
        let again = link.next_batch(&target, &outbox, 0.0);
        assert!(
            matches!(&again[..], [ClientMessage::Join { room, since: Some(4), add: true, .. }] if room == "b"),
            "{again:?}"
        );
        link.on_server(&mut target, &welcome_as("b", "n"));
        assert_eq!(link.next_batch(&target, &outbox, 0.0), [outbox.items()[0].request()]);
    }

    /// The welcome's epoch goes with the room's last id into the next join (and the connect
    /// URL); a `reset` forgets the last id, so the join after it starts the room afresh.
    #[test]
    fn the_epoch_goes_back_and_a_reset_forgets_the_last_id() {
        let mut target = Target::new(["a".into(), "b".into()], "n".into(), "c".into());
        let mut link = Link::new(&target);
        link.on_server(&mut target, &welcome("a", &[5], None, false));
        link.on_server(&mut target, &welcome("b", &[8], None, false));
        assert!(ws_url("ws://h", &target).ends_with("&since=5&epoch=e1"));
        let join = target.join_to("b", true);
        assert!(
            matches!(join, ClientMessage::Join { since: Some(8), epoch: Some(ref e), .. } if e == "e1")
        );

        let reset = ServerMessage::Reset { room: "b".into(), epoch: "e2".into() };
        link.on_server(&mut target, &reset);
        let seat = target.seat("b").expect("still a seat");
        assert_eq!((seat.since, seat.epoch.as_deref()), (None, Some("e2")));
        assert_eq!(target.seat("a").and_then(|seat| seat.since), Some(5), "a is untouched");
    }
}
