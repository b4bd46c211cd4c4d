//! Helpers for the server tests: a real server on `127.0.0.1:0` in its own actix system. The
//! WebSocket client is the shared [`testclient::Client`], which waits for what it expects with a
//! deadline instead of sleeping.

use std::net::{SocketAddr, TcpListener};

use tokio::net::TcpStream;
use tokio::time::Instant;

pub use testclient::{Client, DEADLINE, Welcome};

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
        testclient::url(self.addr, query)
    }

    /// Connects a client with `room` and `nick` and waits for its welcome.
    pub async fn join(&self, room: &str, nick: &str) -> (Client, Welcome) {
        Client::join(&self.url(&format!("room={room}&nick={nick}"))).await
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
        ui_dir: Some(std::env::temp_dir().join("chat-tests-no-ui")),
        abuse: server::config::AbuseLimits {
            rate_per_second: 1_000_000,
            rate_burst: 1_000_000,
            ..Default::default()
        },
        ..server::Config::default()
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
