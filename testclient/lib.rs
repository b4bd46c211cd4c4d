//! The one WebSocket client of the project: the server's integration tests, the cross-component
//! tests, the chaos run and the load generator all speak to the server through [`Client`].
//!
//! Two kinds of method:
//! - fallible ones (`open`, `open_from`, `send_frame`, `next_frame`, `next_message`) for code that
//!   expects connections to fail (chaos, load), and
//! - asserting ones (`connect`, `recv`, `ack`, `error`, `close_code`, ...) for tests: each waits at
//!   most [`DEADLINE`] and panics with a message naming what did not arrive.
//!
//! [`redis::RedisProcess`] starts a `redis-server` of the caller's own, for the Redis engine's
//! tests, its chaos run and its benchmark.

pub mod redis;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use protocol::{ChatMessage, ErrorCode, ServerMessage};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout, timeout_at};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderName;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub use tokio_tungstenite::tungstenite::protocol::CloseFrame;
pub use tokio_tungstenite::tungstenite::{Error, Message};

/// How long any single expectation of a test may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(5);

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The sending half of a [`Client::split`] connection.
pub type Sender = SplitSink<Ws, Message>;
/// The receiving half of a [`Client::split`] connection.
pub type Receiver = SplitStream<Ws>;

/// `ws://{address}/ws?{query}`.
pub fn url(address: impl std::fmt::Display, query: &str) -> String {
    format!("ws://{address}/ws?{query}")
}

/// TLS client settings that trust only the certificate authorities in `ca_pem`.
pub fn tls_config(ca_pem: &str) -> Result<std::sync::Arc<rustls::ClientConfig>, Error> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let certificate = certificate.map_err(|e| Error::Io(std::io::Error::other(e)))?;
        roots.add(certificate).map_err(|e| Error::Io(std::io::Error::other(e)))?;
    }
    let config =
        rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    Ok(std::sync::Arc::new(config))
}

/// The fields of a `welcome` frame.
#[derive(Debug)]
pub struct Welcome {
    pub room: String,
    pub nick: String,
    pub members: Vec<String>,
    /// Those of `members` signed in to an account.
    pub signed_in: Vec<String>,
    pub history: Vec<ChatMessage>,
    pub rooms: Vec<protocol::RoomInfo>,
    pub since: Option<protocol::MessageId>,
    pub truncated: bool,
    pub more: bool,
    pub epoch: String,
    /// What the joiner may do beyond chatting (owner, moderator).
    pub role: Option<protocol::Role>,
    /// Only members may join the room.
    pub private: bool,
}

/// A WebSocket connection speaking the chat protocol.
pub struct Client {
    ws: Ws,
}

impl Client {
    // ----- Fallible: for runs that expect failures -----

    /// Connects to `url`, sending these extra request headers (e.g. `Origin`, or a `Host`
    /// other than the URL's).
    pub async fn open_with(url: &str, headers: &[(&str, &str)]) -> Result<Self, Error> {
        let mut request = url.into_client_request()?;
        for (name, value) in headers {
            let name =
                HeaderName::from_bytes(name.as_bytes()).map_err(|e| Error::HttpFormat(e.into()))?;
            let value = value.parse().map_err(
                |e: tokio_tungstenite::tungstenite::http::header::InvalidHeaderValue| {
                    Error::HttpFormat(e.into())
                },
            )?;
            request.headers_mut().insert(name, value);
        }
        let (ws, _) = tokio_tungstenite::connect_async(request).await?;
        Ok(Client { ws })
    }

    /// Connects to a `wss://` `url`, trusting only the certificate authorities in `ca_pem` (so
    /// the handshake fails unless the server presents a certificate they signed for the URL's
    /// host).
    pub async fn open_tls(url: &str, ca_pem: &str) -> Result<Self, Error> {
        let connector = tokio_tungstenite::Connector::Rustls(tls_config(ca_pem)?);
        let (ws, _) =
            tokio_tungstenite::connect_async_tls_with_config(url, None, false, Some(connector))
                .await?;
        Ok(Client { ws })
    }

    /// Connects to `url`.
    pub async fn open(url: &str) -> Result<Self, Error> {
        Self::open_with(url, &[]).await
    }

    /// Connects to `/ws?{query}` at `address` from the local address `source` (any port), so
    /// that many clients can spread over several loopback addresses.
    pub async fn open_from(
        address: SocketAddr,
        source: IpAddr,
        query: &str,
    ) -> Result<Self, Error> {
        let socket = match source {
            IpAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            IpAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        socket.bind(SocketAddr::new(source, 0))?;
        let stream = socket.connect(address).await?;
        let (ws, _) =
            tokio_tungstenite::client_async(url(address, query), MaybeTlsStream::Plain(stream))
                .await?;
        Ok(Client { ws })
    }

    /// Sends one frame.
    pub async fn send_frame(&mut self, message: Message) -> Result<(), Error> {
        self.ws.send(message).await
    }

    /// The next frame of any kind; `None` once the connection has ended.
    pub async fn next_frame(&mut self) -> Option<Result<Message, Error>> {
        self.ws.next().await
    }

    /// The next server message, skipping pings and pongs; `None` when the connection ends,
    /// closes, fails, or sends something that is not a server message.
    pub async fn next_message(&mut self) -> Option<ServerMessage> {
        loop {
            match self.ws.next().await? {
                Ok(Message::Text(text)) => return serde_json::from_str(&text).ok(),
                Ok(Message::Ping(_) | Message::Pong(_)) => continue,
                Ok(_) | Err(_) => return None,
            }
        }
    }

    /// The two halves, for a client that sends and receives at once.
    pub fn split(self) -> (Sender, Receiver) {
        self.ws.split()
    }

    // ----- Asserting: for tests -----

    /// Connects with these request headers; `Err` holds the HTTP status of a refusal.
    /// Panics if there is no answer within [`DEADLINE`] or the connection fails otherwise.
    pub async fn try_connect_with(url: &str, headers: &[(&str, &str)]) -> Result<Self, u16> {
        match timeout(DEADLINE, Self::open_with(url, headers)).await.expect("answered in time") {
            Ok(client) => Ok(client),
            Err(Error::Http(response)) => Err(response.status().as_u16()),
            Err(error) => panic!("connection to {url} failed: {error}"),
        }
    }

    /// Connects with an `Origin` header (or none); `Err` holds the HTTP status of a refusal.
    pub async fn try_connect(url: &str, origin: Option<&str>) -> Result<Self, u16> {
        let headers: Vec<(&str, &str)> =
            origin.map(|origin| ("Origin", origin)).into_iter().collect();
        Self::try_connect_with(url, &headers).await
    }

    /// Connects, or panics.
    pub async fn connect(url: &str) -> Self {
        timeout(DEADLINE, Self::open(url))
            .await
            .expect("connected in time")
            .unwrap_or_else(|e| panic!("WebSocket handshake with {url} failed: {e}"))
    }

    /// Connects to `url` and waits for the welcome.
    pub async fn join(url: &str) -> (Self, Welcome) {
        let mut client = Self::connect(url).await;
        let welcome = client.welcome().await;
        (client, welcome)
    }

    pub async fn send_raw(&mut self, message: Message) {
        self.ws.send(message).await.expect("frame sent");
    }

    /// Sends a frame if the connection still takes it (the server may be closing it).
    pub async fn try_send_raw(&mut self, message: Message) -> bool {
        self.ws.send(message).await.is_ok()
    }

    pub async fn send_text(&mut self, text: &str) {
        self.send_raw(Message::text(text)).await;
    }

    /// Sends `{"type":"send","text":...}`.
    pub async fn say(&mut self, text: &str) {
        let frame = serde_json::json!({"type": "send", "text": text});
        self.send_text(&frame.to_string()).await;
    }

    /// Sends `text` with a client id, for an acknowledgement.
    pub async fn say_with_id(&mut self, text: &str, client_id: &str) {
        let frame = serde_json::json!({"type": "send", "text": text, "client_id": client_id});
        self.send_text(&frame.to_string()).await;
    }

    /// The next server message; fails on anything that is not one, or after the deadline.
    pub async fn recv(&mut self) -> ServerMessage {
        let text = self.recv_text().await;
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("server sent {text:?}, not a message: {e}"))
    }

    /// The next text frame as sent (pings and pongs skipped), e.g. to measure its size.
    pub async fn recv_text(&mut self) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let frame = timeout_at(deadline, self.ws.next())
                .await
                .expect("a server message arrived in time")
                .expect("connection still open")
                .expect("valid frame");
            match frame {
                Message::Text(text) => return text.as_str().to_owned(),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    /// Skips messages until one matches `pick`, which returns what to keep.
    pub async fn recv_until<T>(&mut self, mut pick: impl FnMut(ServerMessage) -> Option<T>) -> T {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let message =
                timeout_at(deadline, self.recv()).await.expect("expected message in time");
            if let Some(found) = pick(message) {
                return found;
            }
        }
    }

    pub async fn welcome(&mut self) -> Welcome {
        match self.recv().await {
            ServerMessage::Welcome {
                room,
                nick,
                members,
                signed_in,
                history,
                rooms,
                since,
                truncated,
                more,
                epoch,
                role,
                private,
            } => Welcome {
                room,
                nick,
                members,
                signed_in,
                history,
                rooms,
                since,
                truncated,
                more,
                epoch,
                role,
                private,
            },
            other => panic!("expected a welcome, got {other:?}"),
        }
    }

    /// The next acknowledgement's client id and message id (skipping anything else).
    pub async fn ack(&mut self) -> (String, protocol::MessageId) {
        self.recv_until(|m| match m {
            ServerMessage::Ack { client_id, id, .. } => Some((client_id, id)),
            _ => None,
        })
        .await
    }

    /// The id `client_id` was acknowledged with (skipping anything else).
    pub async fn ack_of(&mut self, client_id: &str) -> protocol::MessageId {
        self.recv_until(|m| match m {
            ServerMessage::Ack { client_id: acked, id, .. } if acked == client_id => Some(id),
            _ => None,
        })
        .await
    }

    /// The next chat message (skipping presence notices).
    pub async fn message(&mut self) -> ChatMessage {
        self.recv_until(|m| match m {
            ServerMessage::Message(message) => Some(message),
            _ => None,
        })
        .await
    }

    /// The next error frame's code.
    pub async fn error(&mut self) -> ErrorCode {
        match self.recv().await {
            ServerMessage::Error { code, message, .. } => {
                assert!(!message.is_empty(), "errors explain themselves");
                code
            }
            other => panic!("expected an error, got {other:?}"),
        }
    }

    /// The next error frame's code, skipping anything else.
    pub async fn error_skipping(&mut self) -> ErrorCode {
        self.recv_until(|m| match m {
            ServerMessage::Error { code, .. } => Some(code),
            _ => None,
        })
        .await
    }

    /// Reads until the server closes; returns its close frame (if it sent one).
    pub async fn closed(&mut self) -> Option<CloseFrame> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            match timeout_at(deadline, self.ws.next()).await.expect("server closed in time") {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    }

    /// The close code the server ended the connection with.
    pub async fn close_code(&mut self) -> u16 {
        let frame = self.closed().await.expect("server sent a close frame");
        frame.code.into()
    }

    /// Sends `list_rooms` and returns the answer (skipping anything else that arrives).
    pub async fn list_rooms(&mut self) -> Vec<protocol::RoomInfo> {
        self.send_text(r#"{"type":"list_rooms"}"#).await;
        self.recv_until(|m| match m {
            ServerMessage::Rooms { rooms } => Some(rooms),
            _ => None,
        })
        .await
    }

    /// The nick in the next `left` notice (skipping anything else that arrives).
    pub async fn left(&mut self) -> String {
        self.recv_until(|m| match m {
            ServerMessage::Left { nick, .. } => Some(nick),
            _ => None,
        })
        .await
    }

    /// Asks for the room list until `done` accepts it (rooms open and close asynchronously).
    pub async fn wait_for_rooms(&mut self, mut done: impl FnMut(&[protocol::RoomInfo]) -> bool) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let rooms = self.list_rooms().await;
            if done(&rooms) {
                return;
            }
            assert!(Instant::now() < deadline, "room list never matched: {rooms:?}");
            tokio::task::yield_now().await;
        }
    }

    /// Sends a close frame and waits for the server's answer.
    pub async fn close(mut self) {
        self.ws.close(None).await.expect("close sent");
        while let Ok(Some(Ok(_))) = timeout(DEADLINE, self.ws.next()).await {}
    }

    /// Drops the TCP connection without a close frame, like a crashed browser.
    pub fn abort(self) {
        drop(self.ws);
    }

    /// Queues `frames` and sends them with one flush, as a client writing a burst does.
    pub async fn send_burst(&mut self, frames: impl IntoIterator<Item = Message>) {
        let mut frames = futures::stream::iter(frames.into_iter().map(Ok));
        self.ws.send_all(&mut frames).await.expect("burst sent");
    }

    /// Sends a burst as [`Client::send_burst`] does, as far as the connection still takes it
    /// (the server may be closing it); `false` if it stopped taking frames.
    pub async fn try_send_burst(&mut self, frames: impl IntoIterator<Item = Message>) -> bool {
        let mut frames = futures::stream::iter(frames.into_iter().map(Ok));
        self.ws.send_all(&mut frames).await.is_ok()
    }

    /// Sends one final text frame carrying `payload` as it is, UTF-8 or not (which no valid
    /// client sends), if the connection still takes it.
    pub async fn try_send_text_bytes(&mut self, payload: Vec<u8>) -> bool {
        use tokio_tungstenite::tungstenite::protocol::frame::Frame;
        use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
        let frame = Frame::message(payload, OpCode::Data(Data::Text), true);
        self.try_send_raw(Message::Frame(frame)).await
    }
}
