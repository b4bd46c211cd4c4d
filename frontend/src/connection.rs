//! The connection to the server: opens the WebSocket, forwards what arrives to the reducer as
//! [`Action`]s, sends what the page asks, and reconnects with backoff and jitter when the
//! connection drops, rejoining the room (and nick) it was last welcomed to.
//!
//! Requests made while disconnected wait in the queue and go out once the new connection has
//! heard from the server.

use futures::channel::mpsc;
use futures::future::{self, Either};
use futures::{SinkExt, StreamExt};
use gloo_net::websocket::futures::WebSocket;
use gloo_net::websocket::{Message, WebSocketError};
use protocol::{ClientMessage, ServerMessage, close};
use yew::Callback;

use crate::backoff;
use crate::state::Action;

/// Who to be and where to go on (re)connecting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub room: String,
    pub nick: String,
    /// This tab's token, so a reconnect can take over its own nick at once.
    pub client: String,
}

/// The WebSocket URL for `target` on a server whose WebSocket origin is `base`
/// (`ws://host:port` or `wss://host`).
pub fn ws_url(base: &str, target: &Target) -> String {
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("room", &target.room)
        .append_pair("nick", &target.nick)
        .append_pair("client", &target.client)
        .finish();
    format!("{base}{}?{query}", protocol::WS_PATH)
}

/// A handle to the running connection. Dropping every handle closes the socket.
#[derive(Debug, Clone)]
pub struct Connection {
    requests: mpsc::UnboundedSender<ClientMessage>,
}

impl PartialEq for Connection {
    fn eq(&self, other: &Self) -> bool {
        self.requests.same_receiver(&other.requests)
    }
}

impl Connection {
    /// Starts connecting to `base` as `target`; every event is reported through `on_action`.
    pub fn open(base: String, target: Target, on_action: Callback<Action>) -> Self {
        let (requests, queue) = mpsc::unbounded();
        wasm_bindgen_futures::spawn_local(run(base, target, queue, on_action));
        Connection { requests }
    }

    /// Queues a request; it is sent as soon as the connection is up.
    pub fn send(&self, message: ClientMessage) {
        // Fails only once the connection gave up for good (another tab replaced it), and the
        // page shows that state already.
        if self.requests.unbounded_send(message).is_err() {
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

async fn run(
    base: String,
    mut target: Target,
    mut queue: mpsc::UnboundedReceiver<ClientMessage>,
    on_action: Callback<Action>,
) {
    let mut attempt: u32 = 0;
    loop {
        on_action.emit(Action::Connecting);
        match connect_once(&base, &mut target, &mut queue, &on_action).await {
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

async fn connect_once(
    base: &str,
    target: &mut Target,
    queue: &mut mpsc::UnboundedReceiver<ClientMessage>,
    on_action: &Callback<Action>,
) -> Ended {
    let Ok(mut socket) = WebSocket::open(&ws_url(base, target)) else {
        return Ended::Closed { welcomed: false };
    };
    let mut welcomed = false;
    // The server speaks first (a welcome or an error) as soon as the socket is open; only then
    // is it safe to send, so queued requests wait until a frame has arrived.
    let mut heard = false;
    loop {
        let event = if heard {
            match future::select(socket.next(), queue.next()).await {
                Either::Left((frame, _)) => Either::Left(frame),
                Either::Right((request, _)) => Either::Right(request),
            }
        } else {
            Either::Left(socket.next().await)
        };
        match event {
            Either::Left(Some(Ok(Message::Text(text)))) => {
                heard = true;
                match serde_json::from_str::<ServerMessage>(&text) {
                    Ok(message) => {
                        if let ServerMessage::Welcome { room, nick, .. } = &message {
                            target.room.clone_from(room);
                            target.nick.clone_from(nick);
                            welcomed = true;
                        }
                        on_action.emit(Action::Server(message));
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
            Either::Right(Some(request)) => {
                let Ok(json) = serde_json::to_string(&request) else { continue };
                if socket.send(Message::Text(json)).await.is_err() {
                    return Ended::Closed { welcomed };
                }
            }
            Either::Right(None) => return Ended::Abandoned,
        }
    }
}

fn gloo_console_warn(text: &str) {
    web_sys::console::warn_1(&text.into());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The URL carries room, nick and token, escaped so any nick survives the trip.
    #[test]
    fn url_escapes_every_field() {
        let target =
            Target { room: "general".into(), nick: "a&b c=é".into(), client: "t-1".into() };
        assert_eq!(
            ws_url("ws://127.0.0.1:8080", &target),
            "ws://127.0.0.1:8080/ws?room=general&nick=a%26b+c%3D%C3%A9&client=t-1"
        );
    }
}
