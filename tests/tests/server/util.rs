//! Helpers for the server tests: a real server on `127.0.0.1:0` in its own actix system, and a
//! real WebSocket client that waits for what it expects with a deadline instead of sleeping.

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use protocol::{ChatMessage, ErrorCode, ServerMessage};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long any single expectation may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(5);

/// A server running on a free loopback port; stopped when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    system: actix_rt::System,
    /// Resolves the shutdown future the server was started with.
    shutdown: Option<futures::channel::oneshot::Sender<()>>,
    /// Told when the server's run future has ended.
    stopped: std::sync::mpsc::Receiver<()>,
}

impl TestServer {
    /// Starts a server with default settings, one worker and one room thread.
    pub fn start() -> Self {
        Self::with_config(config())
    }

    pub fn with_config(config: server::Config) -> Self {
        // `RUST_LOG=debug cargo test ...` shows the server's log beside a failing test.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free loopback port");
        let addr = listener.local_addr().expect("bound address");
        let (tx, rx) = std::sync::mpsc::channel();
        let (shutdown, shutdown_signal) = futures::channel::oneshot::channel::<()>();
        let (stopped_tx, stopped) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let system = actix_rt::System::new();
            let running = system.block_on(async {
                let on_shutdown = async move {
                    // A dropped sender (the test ended) is no shutdown: the system stops instead.
                    if shutdown_signal.await.is_err() {
                        std::future::pending::<()>().await;
                    }
                };
                let server = server::run(listener, config, on_shutdown).expect("server starts");
                tx.send(actix_rt::System::current()).expect("test is waiting");
                server.await
            });
            running.expect("server ran");
            let _ = stopped_tx.send(());
        });
        let system = rx.recv_timeout(DEADLINE).expect("server started in time");
        TestServer { addr, system, shutdown: Some(shutdown), stopped }
    }

    /// Shuts the server down as a signal would, and waits until it has stopped.
    pub async fn shut_down(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        let deadline = Instant::now() + DEADLINE;
        while self.stopped.try_recv().is_err() {
            assert!(Instant::now() < deadline, "the server did not stop");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    pub fn url(&self, query: &str) -> String {
        format!("ws://{}/ws?{query}", self.addr)
    }

    /// Connects a client with `room` and `nick` and waits for its welcome.
    pub async fn join(&self, room: &str, nick: &str) -> (Client, Welcome) {
        let mut client = Client::connect(&self.url(&format!("room={room}&nick={nick}"))).await;
        let welcome = client.welcome().await;
        (client, welcome)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.system.stop();
    }
}

/// Settings for tests: defaults, but small thread counts, no UI folder, messages kept in
/// memory (the durable store has its own tests, against the binary), and a rate limit high
/// enough for tests that send hundreds of messages at once (the limit has its own tests).
pub fn config() -> server::Config {
    server::Config {
        storage: server::config::Storage { ephemeral: true, ..Default::default() },
        workers: Some(1),
        room_threads: Some(1),
        ui_dir: std::env::temp_dir().join("chat-tests-no-ui"),
        abuse: server::config::AbuseLimits {
            rate_per_second: 1_000_000,
            rate_burst: 1_000_000,
            ..Default::default()
        },
        ..server::Config::default()
    }
}

/// The fields of a `welcome` frame.
#[derive(Debug)]
pub struct Welcome {
    pub room: String,
    pub nick: String,
    pub members: Vec<String>,
    pub history: Vec<ChatMessage>,
    pub rooms: Vec<protocol::RoomInfo>,
    pub since: Option<protocol::MessageId>,
    pub truncated: bool,
    pub more: bool,
}

/// A WebSocket client speaking the chat protocol.
pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Client {
    /// Connects with an `Origin` header (or none); `Err` holds the HTTP status of a refusal.
    pub async fn try_connect(url: &str, origin: Option<&str>) -> Result<Self, u16> {
        let headers: Vec<(&str, &str)> =
            origin.map(|origin| ("Origin", origin)).into_iter().collect();
        Self::try_connect_with(url, &headers).await
    }

    /// Connects with these request headers (e.g. `Origin`, or a `Host` other than the URL's);
    /// `Err` holds the HTTP status of a refusal.
    pub async fn try_connect_with(url: &str, headers: &[(&str, &str)]) -> Result<Self, u16> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        use tokio_tungstenite::tungstenite::http::HeaderName;
        let mut request = url.into_client_request().expect("valid URL");
        for (name, value) in headers {
            let name = HeaderName::from_bytes(name.as_bytes()).expect("header name");
            request.headers_mut().insert(name, value.parse().expect("header value"));
        }
        let attempt = tokio::time::timeout(DEADLINE, tokio_tungstenite::connect_async(request))
            .await
            .expect("answered in time");
        match attempt {
            Ok((ws, _)) => Ok(Client { ws }),
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                Err(response.status().as_u16())
            }
            Err(error) => panic!("connection failed: {error}"),
        }
    }

    pub async fn connect(url: &str) -> Self {
        let (ws, _) = tokio::time::timeout(DEADLINE, tokio_tungstenite::connect_async(url))
            .await
            .expect("connected in time")
            .expect("WebSocket handshake succeeds");
        Client { ws }
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
                history,
                rooms,
                since,
                truncated,
                more,
            } => Welcome { room, nick, members, history, rooms, since, truncated, more },
            other => panic!("expected a welcome, got {other:?}"),
        }
    }

    /// Sends `text` with a client id, for an acknowledgement.
    pub async fn say_with_id(&mut self, text: &str, client_id: &str) {
        let frame = serde_json::json!({"type": "send", "text": text, "client_id": client_id});
        self.send_text(&frame.to_string()).await;
    }

    /// The next acknowledgement's client id and message id (skipping anything else).
    pub async fn ack(&mut self) -> (String, protocol::MessageId) {
        self.recv_until(|m| match m {
            ServerMessage::Ack { client_id, id, .. } => Some((client_id, id)),
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
        while let Ok(Some(Ok(_))) = tokio::time::timeout(DEADLINE, self.ws.next()).await {}
    }

    /// Drops the TCP connection without a close frame, like a crashed browser.
    pub fn abort(self) {
        drop(self.ws);
    }
}

/// A plain `GET` over HTTP/1.1; returns the whole response (status line, headers, body).
pub async fn http_get(server: &TestServer, path: &str) -> String {
    http_get_host(server, path, "localhost").await
}

/// A plain `GET` naming `host` in its `Host` header.
pub async fn http_get_host(server: &TestServer, path: &str, host: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("request sent");
    let mut response = Vec::new();
    tokio::time::timeout(DEADLINE, stream.read_to_end(&mut response))
        .await
        .expect("response in time")
        .expect("response read");
    String::from_utf8_lossy(&response).into_owned()
}
