//! The connection to the server: opens the WebSocket, forwards what arrives to the reducer as
//! [`Action`]s, sends what the page asks, and reconnects with backoff and jitter when the
//! connection drops, rejoining the room (and nick) it was last welcomed to with the last
//! message id it saw there, so the server sends exactly what was missed.
//!
//! Chat messages go through the [`outbox`](crate::outbox): each is sent with its client id
//! once the connection is welcomed in its room, a few at a time, and again after every
//! reconnect until the server acknowledges it. Other requests made while disconnected wait in
//! the queue and go out once the new connection has heard from the server.

use futures::channel::mpsc;
use futures::future::{self, Either};
use futures::stream::{self, LocalBoxStream};
use futures::{SinkExt, StreamExt};
use gloo_net::websocket::futures::WebSocket;
use gloo_net::websocket::{Message, WebSocketError};
use protocol::{ClientMessage, MessageId, ServerMessage, close};
use yew::Callback;

use crate::backoff;
use crate::outbox::{self, Outbox, Outgoing};
use crate::state::Action;

/// Messages sent and not yet acknowledged, at most, per connection; the rest wait their turn
/// (the server's rate limit allows bursts of 20 frames).
pub const SEND_WINDOW: usize = 8;
/// How long to wait before sending again after a refusal that names no wait.
const RETRY_MS: u32 = 1_000;

/// Who to be and where to go on (re)connecting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub room: String,
    pub nick: String,
    /// This tab's token, so a reconnect can take over its own nick at once.
    pub client: String,
    /// The last message id seen in `room`.
    pub since: Option<MessageId>,
}

impl Target {
    /// Remembers the newest message seen in the target room.
    fn saw(&mut self, message: &ServerMessage) {
        match message {
            ServerMessage::Welcome { room, nick, history, since, .. } => {
                self.room.clone_from(room);
                self.nick.clone_from(nick);
                self.since = history.last().map(|newest| newest.id).or(*since);
            }
            ServerMessage::Message(message) if message.room == self.room => {
                self.since = Some(self.since.map_or(message.id, |seen| seen.max(message.id)));
            }
            _ => {}
        }
    }
}

/// The WebSocket URL for `target` on a server whose WebSocket origin is `base`
/// (`ws://host:port` or `wss://host`).
pub fn ws_url(base: &str, target: &Target) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    query
        .append_pair("room", &target.room)
        .append_pair("nick", &target.nick)
        .append_pair("client", &target.client);
    if let Some(since) = target.since {
        query.append_pair("since", &since.to_string());
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

    /// Puts a chat message in the outbox; it is sent (and resent) until acknowledged.
    pub fn post(&self, item: Outgoing) -> Result<(), outbox::Full> {
        Outbox::update(|outbox| outbox.add(item))?;
        self.request(Request::Flush);
        Ok(())
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
    /// The socket closed or failed; `welcomed` says whether it had joined a room.
    Closed { welcomed: bool },
    /// Another connection with this tab's token took the seat: do not reconnect.
    Replaced,
    /// Every handle was dropped: the page no longer wants a connection.
    Abandoned,
}

/// What the connection loop reacts to besides the socket.
enum Input {
    Request(Request),
    /// Every handle is gone.
    Abandoned,
}

async fn run(
    base: String,
    mut target: Target,
    queue: mpsc::UnboundedReceiver<Request>,
    on_action: Callback<Action>,
) {
    // Delayed retries of the outbox come back through their own channel, merged with the
    // page's requests; the page's end of the queue still tells when every handle is gone.
    let (retries, retry_queue) = mpsc::unbounded::<()>();
    let requests = queue.map(Input::Request).chain(stream::once(future::ready(Input::Abandoned)));
    let mut inputs: LocalBoxStream<'static, Input> =
        stream::select(requests, retry_queue.map(|()| Input::Request(Request::Flush)))
            .boxed_local();
    let mut attempt: u32 = 0;
    loop {
        on_action.emit(Action::Connecting);
        match connect_once(&base, &mut target, &mut inputs, &retries, &on_action).await {
            Ended::Replaced => return on_action.emit(Action::Replaced),
            Ended::Abandoned => return,
            Ended::Closed { welcomed: true } => attempt = 1,
            Ended::Closed { welcomed: false } => attempt = attempt.saturating_add(1),
        }
        let delay = backoff::delay(attempt, js_sys::Math::random());
        let delay_ms = u32::try_from(delay.as_millis()).unwrap_or(u32::MAX);
        on_action.emit(Action::Disconnected { attempt, delay_ms });
        gloo_timers::future::sleep(delay).await;
    }
}

/// One socket's view of the outbox: what has been sent on it and awaits an acknowledgement.
#[derive(Default)]
struct Sending {
    /// Welcomed in `target.room` and not in the middle of a join: sends go where they belong.
    settled: bool,
    in_flight: Vec<String>,
}

impl Sending {
    /// The next outbox messages for the current seat that are not in flight, up to the window.
    fn next_batch(&mut self, target: &Target) -> Vec<ClientMessage> {
        if !self.settled {
            return Vec::new();
        }
        let outbox = Outbox::load();
        let mut batch = Vec::new();
        for item in outbox.for_seat(&target.room, &target.nick) {
            if self.in_flight.len() >= SEND_WINDOW {
                break;
            }
            if !self.in_flight.contains(&item.client_id) {
                self.in_flight.push(item.client_id.clone());
                batch.push(item.request());
            }
        }
        batch
    }

    /// Updates the outbox for a frame from the server and says what to send next. Chat
    /// messages and notices change nothing, so the stored outbox is not read for them.
    fn on_server(&mut self, message: &ServerMessage) -> Next {
        match message {
            ServerMessage::Welcome { .. } => {
                self.settled = true;
                self.in_flight.clear();
            }
            ServerMessage::Ack { client_id, .. } => {
                Outbox::update(|outbox| outbox.remove(client_id));
                self.in_flight.retain(|id| id != client_id);
            }
            ServerMessage::Error { code, client_id: Some(client_id), retry_after_ms, .. } => {
                self.in_flight.retain(|id| id != client_id);
                if code.is_transient() {
                    return Next::RetryIn(retry_delay(*retry_after_ms));
                }
                Outbox::update(|outbox| outbox.remove(client_id));
            }
            ServerMessage::Error { code, client_id: None, retry_after_ms, .. } => {
                if *code == protocol::ErrorCode::RateLimited {
                    // The refused frame is unknown: send everything in flight again later (the
                    // server recognises the ones it already has).
                    self.in_flight.clear();
                    return Next::RetryIn(retry_delay(*retry_after_ms));
                }
                // A refused join leaves us where we were.
                self.settled = true;
            }
            _ => return Next::Nothing,
        }
        Next::Send
    }
}

/// What a frame from the server means for the outbox.
enum Next {
    /// Nothing changed.
    Nothing,
    /// Room in the window, or a new room: send what may be sent now.
    Send,
    /// Send again after this many milliseconds.
    RetryIn(u32),
}

fn retry_delay(retry_after_ms: Option<u64>) -> u32 {
    retry_after_ms.map_or(RETRY_MS, |ms| u32::try_from(ms).unwrap_or(u32::MAX).max(50))
}

async fn connect_once(
    base: &str,
    target: &mut Target,
    inputs: &mut LocalBoxStream<'static, Input>,
    retries: &mpsc::UnboundedSender<()>,
    on_action: &Callback<Action>,
) -> Ended {
    let Ok(mut socket) = WebSocket::open(&ws_url(base, target)) else {
        return Ended::Closed { welcomed: false };
    };
    let mut welcomed = false;
    let mut sending = Sending::default();
    // The server speaks first (a welcome or an error) as soon as the socket is open; only then
    // is it safe to send, so queued requests wait until a frame has arrived.
    let mut heard = false;
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
                        target.saw(&message);
                        welcomed |= matches!(message, ServerMessage::Welcome { .. });
                        let next = sending.on_server(&message);
                        on_action.emit(Action::Server(message));
                        match next {
                            Next::Nothing => {}
                            Next::Send => outgoing = sending.next_batch(target),
                            Next::RetryIn(delay) => {
                                let retries = retries.clone();
                                wasm_bindgen_futures::spawn_local(async move {
                                    gloo_timers::future::TimeoutFuture::new(delay).await;
                                    let _ = retries.unbounded_send(());
                                });
                            }
                        }
                    }
                    Err(error) => gloo_console_warn(&format!("unreadable frame: {error}")),
                }
            }
            Either::Left(Some(Ok(Message::Bytes(_)))) => heard = true,
            Either::Left(Some(Err(WebSocketError::ConnectionClose(event))))
                if event.code == close::REPLACED =>
            {
                return Ended::Replaced;
            }
            Either::Left(Some(Err(_)) | None) => return Ended::Closed { welcomed },
            Either::Right(Some(Input::Request(Request::Send(request)))) => {
                if matches!(request, ClientMessage::Join { .. }) {
                    // Until the welcome, a send would land in whichever room the server has
                    // us in by then.
                    sending.settled = false;
                }
                outgoing.push(request);
            }
            Either::Right(Some(Input::Request(Request::Flush))) => {
                outgoing = sending.next_batch(target);
            }
            Either::Right(Some(Input::Abandoned) | None) => return Ended::Abandoned,
        }
        for request in outgoing {
            let Ok(json) = serde_json::to_string(&request) else { continue };
            if socket.send(Message::Text(json)).await.is_err() {
                return Ended::Closed { welcomed };
            }
        }
    }
}

fn gloo_console_warn(text: &str) {
    web_sys::console::warn_1(&text.into());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: MessageId, room: &str) -> ServerMessage {
        ServerMessage::Message(protocol::ChatMessage {
            id,
            room: room.into(),
            from: "a".into(),
            text: "t".into(),
            ts: 0,
        })
    }

    /// The last seen id follows the welcome and the target room's messages only.
    #[test]
    fn target_tracks_the_last_seen_id() {
        let mut target =
            Target { room: "a".into(), nick: "n".into(), client: "c".into(), since: None };
        let welcome = |history: Vec<MessageId>, since| ServerMessage::Welcome {
            room: "a".into(),
            nick: "n2".into(),
            members: vec![],
            history: history
                .into_iter()
                .map(|id| match message(id, "a") {
                    ServerMessage::Message(m) => m,
                    _ => unreachable!("message() builds messages"),
                })
                .collect(),
            rooms: vec![],
            since,
            truncated: false,
        };
        target.saw(&welcome(vec![3, 5], None));
        assert_eq!((target.since, target.nick.as_str()), (Some(5), "n2"));
        target.saw(&message(9, "other"));
        target.saw(&message(7, "a"));
        assert_eq!(target.since, Some(7));
        target.saw(&welcome(vec![], Some(7)));
        assert_eq!(target.since, Some(7), "a resumed welcome with nothing new keeps it");
        target.saw(&welcome(vec![], None));
        assert_eq!(target.since, None, "a fresh, empty room starts over");
    }

    /// The URL carries room, nick and token, escaped so any nick survives the trip.
    #[test]
    fn url_escapes_every_field() {
        let mut target = Target {
            room: "general".into(),
            nick: "a&b c=é".into(),
            client: "t-1".into(),
            since: None,
        };
        assert_eq!(
            ws_url("ws://127.0.0.1:8080", &target),
            "ws://127.0.0.1:8080/ws?room=general&nick=a%26b+c%3D%C3%A9&client=t-1"
        );
        target.since = Some(42);
        assert!(ws_url("ws://h", &target).ends_with("&client=t-1&since=42"));
    }
}
