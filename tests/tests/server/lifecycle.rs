//! Connection lifecycle: heartbeat timeouts, abrupt disconnects, and the HTTP side.

use std::time::Duration;

use protocol::{ErrorCode, close};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::util::{Client, TestServer, config, http_get};

/// A client that stops answering pings is dropped after the timeout (its room sees it leave,
/// and it gets close code 4002), while a client that keeps reading stays connected.
#[tokio::test]
async fn silent_client_is_dropped_by_heartbeat() {
    let server = TestServer::with_config(server::Config {
        heartbeat_interval: Duration::from_millis(100).into(),
        client_timeout: Duration::from_millis(1000).into(),
        ..config()
    });
    let (mut watcher, _) = server.join("hb", "watcher").await;
    // The server's clock for `silent` starts when its session starts, so ours starts before.
    let connecting = tokio::time::Instant::now();
    let (mut silent, _) = server.join("hb", "silent").await;
    // `silent` is never read from now on, so it never answers a ping. `watcher` keeps
    // reading (and so answering pings) while it waits for the departure.
    let left = watcher.left().await;
    assert_eq!(left, "silent");
    assert!(connecting.elapsed() >= Duration::from_millis(1000), "not dropped before the timeout");
    assert_eq!(silent.close_code().await, close::HEARTBEAT_TIMEOUT);

    watcher.say("still connected").await;
    assert_eq!(watcher.message().await.text, "still connected");
}

/// A client that vanishes without a close frame is announced as gone, and the others keep
/// chatting undisturbed.
#[tokio::test]
async fn abrupt_disconnect_does_not_disturb_others() {
    let server = TestServer::start();
    let (mut alice, _) = server.join("abrupt", "alice").await;
    let (mut bob, _) = server.join("abrupt", "bob").await;
    let (crasher, _) = server.join("abrupt", "crasher").await;
    alice.say("before").await;
    for client in [&mut alice, &mut bob] {
        assert_eq!(client.message().await.text, "before");
    }
    crasher.abort();
    for client in [&mut alice, &mut bob] {
        let left = client.left().await;
        assert_eq!(left, "crasher");
    }
    bob.say("after").await;
    for client in [&mut alice, &mut bob] {
        assert_eq!(client.message().await.text, "after");
    }
}

/// `GET /healthz` answers for load balancers, and `/` serves the UI folder's index.html.
#[tokio::test]
async fn serves_health_and_ui() {
    let ui = std::env::temp_dir().join(format!("chat-ui-{}", std::process::id()));
    std::fs::create_dir_all(&ui).expect("temp dir");
    std::fs::write(ui.join("index.html"), "<!doctype html><title>chat-ui-marker</title>")
        .expect("write index");
    let server = TestServer::with_config(server::Config { ui_dir: Some(ui.clone()), ..config() });

    let health = http_get(&server, "/healthz").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let index = http_get(&server, "/").await;
    assert!(index.starts_with("HTTP/1.1 200") && index.contains("chat-ui-marker"), "{index}");
    std::fs::remove_dir_all(ui).ok();

    let without_ui = TestServer::start();
    let page = http_get(&without_ui, "/").await;
    assert!(page.starts_with("HTTP/1.1 503") && page.contains("not built"), "{page}");
    let mut client = Client::connect(&without_ui.url("room=r&nick=n")).await;
    assert_eq!(client.welcome().await.nick, "n", "the WebSocket works without a UI");
}

/// A shutdown (what SIGTERM does) tells every client to go away with 1001 and then stops the
/// server within the grace period: in-process, through the shutdown future `run` takes. A
/// connection in no room (its join refused) is told too: no room would tell it, and it held
/// the stopping server until the grace ran out, then lost its connection without a close.
#[tokio::test]
async fn shutdown_tells_clients_to_go_away_then_stops() {
    let mut settings = config();
    settings.shutdown_grace = std::time::Duration::from_secs(1).into();
    let mut server = TestServer::with_config(settings);
    let (mut alice, _) = server.join("bye", "alice").await;
    let (mut bob, _) = server.join("elsewhere", "bob").await;
    let mut carol = Client::connect(&server.url("room=no%20spaces&nick=carol")).await;
    assert_eq!(carol.error().await, ErrorCode::InvalidRoom, "in no room");
    let stopping = server.shut_down();
    let (code_a, code_b, code_c, ()) =
        tokio::join!(alice.close_code(), bob.close_code(), carol.close_code(), stopping);
    assert_eq!((code_a, code_b, code_c), (close::GOING_AWAY, close::GOING_AWAY, close::GOING_AWAY));
    let refused = tokio::net::TcpStream::connect(server.addr).await;
    assert!(refused.is_err(), "a stopped server accepts no connection");
}

/// A client that closes and then keeps its TCP connection open is cut off a moment later, each
/// time. The server's wait for the client to hang up (a quarter second) is a timer armed from
/// actix-http's clock, which ticks every half second: half the time the deadline was already
/// past when armed, the timer never woke the connection, and it stayed open until the client
/// went away (a stopping server waited for such connections until its grace ran out: `bench
/// storm`, exit 5.2-6.9 s after SIGTERM). Closes one after another, so that they fall at
/// different points of the clock's tick.
#[tokio::test]
async fn a_client_that_closes_and_holds_the_connection_is_cut_off() {
    let server = TestServer::start();
    for attempt in 0..8 {
        let (mut raw, mut frames) = raw_join(&server, &format!("holder{attempt}")).await;
        read_until(&mut raw, &mut frames, 0x1).await;
        // A masked close frame with an empty body (mask 0), then silence.
        raw.write_all(&[0x88, 0x80, 0, 0, 0, 0]).await.expect("sends a close");
        read_until(&mut raw, &mut frames, 0x8).await;
        let mut chunk = [0u8; 1024];
        let ended = tokio::time::timeout(Duration::from_secs(2), async {
            while read_some(&mut raw, &mut chunk).await > 0 {}
        });
        assert!(
            ended.await.is_ok(),
            "close {attempt}: the server kept the connection 2 s after the client's close"
        );
    }
}

/// A WebSocket joined to `room=held` over a bare TCP stream, and what arrived after the
/// response head.
async fn raw_join(server: &TestServer, nick: &str) -> (tokio::net::TcpStream, Vec<u8>) {
    let mut raw = tokio::net::TcpStream::connect(server.addr).await.expect("connects");
    let request = format!(
        "GET /ws?room=held&nick={nick} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n",
        server.addr
    );
    raw.write_all(request.as_bytes()).await.expect("sends the upgrade");
    let mut read = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = read_some(&mut raw, &mut chunk).await;
        assert!(n > 0, "the server ended the connection before the upgrade");
        read.extend_from_slice(&chunk[..n]);
        if let Some(at) = read.windows(4).position(|w| w == b"\r\n\r\n") {
            assert!(read.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&read));
            return (raw, read.split_off(at + 4));
        }
    }
}

/// Reads whole frames until one with `opcode` has been taken off the front of `frames`.
async fn read_until(raw: &mut tokio::net::TcpStream, frames: &mut Vec<u8>, opcode: u8) {
    let mut chunk = [0u8; 16 * 1024];
    loop {
        while let Some((found, length)) = frame_at(frames) {
            frames.drain(..length);
            if found == opcode {
                return;
            }
        }
        let n = read_some(raw, &mut chunk).await;
        assert!(n > 0, "the connection ended before a frame of opcode {opcode}");
        frames.extend_from_slice(&chunk[..n]);
    }
}

/// Bytes read (0 at the end of the stream, or on a reset), within the client's deadline.
async fn read_some(raw: &mut tokio::net::TcpStream, chunk: &mut [u8]) -> usize {
    let read = tokio::time::timeout(testclient::DEADLINE, raw.read(chunk)).await;
    read.expect("the server answered in time").unwrap_or(0)
}

/// The opcode and whole length of the unmasked frame at the front of `bytes`, once all of it
/// has arrived.
fn frame_at(bytes: &[u8]) -> Option<(u8, usize)> {
    let (&first, &second) = (bytes.first()?, bytes.get(1)?);
    let (payload, header) = match second & 0x7f {
        126 => (usize::from(u16::from_be_bytes([*bytes.get(2)?, *bytes.get(3)?])), 4),
        127 => (usize::try_from(u64::from_be_bytes(bytes.get(2..10)?.try_into().ok()?)).ok()?, 10),
        short => (usize::from(short), 2),
    };
    let length = payload.checked_add(header)?;
    (bytes.len() >= length).then_some((first & 0x0f, length))
}
