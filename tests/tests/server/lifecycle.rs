//! Connection lifecycle: heartbeat timeouts, abrupt disconnects, and the HTTP side.

use std::time::Duration;

use protocol::close;

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
/// server within the grace period: in-process, through the shutdown future `run` takes.
#[tokio::test]
async fn shutdown_tells_clients_to_go_away_then_stops() {
    let mut settings = config();
    settings.shutdown_grace = std::time::Duration::from_secs(1).into();
    let mut server = TestServer::with_config(settings);
    let (mut alice, _) = server.join("bye", "alice").await;
    let (mut bob, _) = server.join("elsewhere", "bob").await;
    let stopping = server.shut_down();
    let (code_a, code_b, ()) = tokio::join!(alice.close_code(), bob.close_code(), stopping);
    assert_eq!((code_a, code_b), (close::GOING_AWAY, close::GOING_AWAY));
    let refused = tokio::net::TcpStream::connect(server.addr).await;
    assert!(refused.is_err(), "a stopped server accepts no connection");
}
