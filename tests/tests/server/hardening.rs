//! Abuse from one client never costs the others: rate limits, flood cut-off, connection caps,
//! origin checks, and the metrics that show it happening.

use protocol::{ErrorCode, ServerMessage, close};

use crate::util::{Client, TestServer, config, http_get, http_get_host};

/// Default limits (10 frames/s, burst 20), for the tests of the limits themselves.
fn limited() -> server::Config {
    server::Config { abuse: server::config::AbuseLimits::default(), ..config() }
}

/// Past the burst, frames are refused with `rate_limited` and a retry hint; the connection
/// stays, the others see exactly the accepted messages, and their own sends are unaffected.
#[tokio::test]
async fn rate_limit_refuses_excess_with_a_retry_hint() {
    let server = TestServer::with_config(limited());
    let (mut observer, _) = server.join("rate", "observer").await;
    let (mut eager, _) = server.join("rate", "eager").await;
    observer.recv().await; // eager joined

    // 40 at once: the burst of 20 passes, and refilling at 10/s cannot cover the other 20
    // unless sending them took two seconds.
    for i in 0..40 {
        eager.say(&format!("m{i}")).await;
    }
    let (mut accepted, mut refused) = (Vec::new(), 0);
    while accepted.len() + refused < 40 {
        match eager.recv().await {
            ServerMessage::Message(message) => accepted.push(message.text),
            ServerMessage::Error { code: ErrorCode::RateLimited, retry_after_ms, .. } => {
                let wait = retry_after_ms.expect("a retry hint");
                assert!((1..=100).contains(&wait), "about one token's time: {wait} ms");
                refused += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(accepted.len() >= 20 && refused >= 1, "accepted {accepted:?}, refused {refused}");
    let burst: Vec<String> = (0..20).map(|i| format!("m{i}")).collect();
    assert_eq!(accepted[..20], burst, "the burst passes whole, in order");
    // The others see exactly the accepted messages, in the same order, and nothing else:
    // their own next message comes right after.
    observer.say("unaffected").await;
    let mut seen = Vec::new();
    loop {
        let text = observer.message().await.text;
        if text == "unaffected" {
            break;
        }
        seen.push(text);
    }
    assert_eq!(seen, accepted, "the others see exactly the accepted messages");
}

/// A client that keeps going after being refused is closed with 1008; the room carries on.
#[tokio::test]
async fn flooding_closes_with_1008() {
    let server = TestServer::with_config(limited());
    let (mut observer, _) = server.join("flood", "observer").await;
    let (mut flooder, _) = server.join("flood", "flooder").await;
    observer.recv().await; // flooder joined
    for i in 0..200 {
        flooder.say(&format!("spam {i}")).await;
    }
    assert_eq!(flooder.close_code().await, close::POLICY_VIOLATION);
    assert_eq!(observer.left().await, "flooder");
    observer.say("quiet again").await;
    // The flooder's accepted messages may still be on their way to the disk, and arrive after
    // its departure; then the observer's own.
    loop {
        let text = observer.message().await.text;
        if text == "quiet again" {
            break;
        }
        assert!(text.starts_with("spam "), "only the accepted spam is ahead: {text}");
    }
}

/// Every frame counts against the rate limit, whatever its kind: a flood of pongs, or of
/// fragments of a message that never ends, is cut off with 1008 like a flood of messages.
#[tokio::test]
async fn pongs_and_fragments_count_against_the_rate_limit() {
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    let server = TestServer::with_config(limited());
    let (mut ponger, _) = server.join("frames", "ponger").await;
    for _ in 0..200 {
        if !ponger.try_send_raw(Message::Pong(Vec::new().into())).await {
            break;
        }
    }
    assert_eq!(ponger.close_code().await, close::POLICY_VIOLATION, "pongs");

    let (mut fragments, _) = server.join("frames", "fragments").await;
    let first = Frame::message(b"{".to_vec(), OpCode::Data(Data::Text), false);
    fragments.send_raw(Message::Frame(first)).await;
    for _ in 0..200 {
        let more = Frame::message(b" ".to_vec(), OpCode::Data(Data::Continue), false);
        if !fragments.try_send_raw(Message::Frame(more)).await {
            break;
        }
    }
    assert_eq!(fragments.close_code().await, close::POLICY_VIOLATION, "fragments");
}

/// Pages from other sites cannot open a WebSocket (403); the server's own origin, the
/// configured development origin and non-browser clients can. Refusals are counted.
#[tokio::test]
async fn foreign_origins_are_refused() {
    let server = TestServer::start();
    let url = server.url("room=o&nick=a");
    assert_eq!(Client::try_connect(&url, Some("https://evil.example")).await.err(), Some(403));
    let own = format!("http://{}", server.addr);
    assert!(Client::try_connect(&url, Some(&own)).await.is_ok(), "same origin");
    let url = server.url("room=o&nick=b");
    assert!(Client::try_connect(&url, Some("http://127.0.0.1:8081")).await.is_ok(), "trunk serve");
    let url = server.url("room=o&nick=c");
    assert!(Client::try_connect(&url, None).await.is_ok(), "no Origin: not a browser");
    let metrics = http_get(&server, "/metrics").await;
    assert!(metrics.contains(r#"chat_refused_upgrades_total{reason="origin"} 1"#), "{metrics}");
}

/// A page on another site whose name resolves to 127.0.0.1 (DNS rebinding) names its own host
/// in both `Host` and `Origin`, so the origin check alone lets it in: a server bound to
/// loopback refuses host names that are not loopback (403), for `/metrics` too.
#[tokio::test]
async fn rebound_host_names_are_refused() {
    let server = TestServer::start();
    let url = server.url("room=rebind&nick=a");
    let port = server.addr.port();
    let evil_host = format!("rebind.example:{port}");
    let evil_origin = format!("http://rebind.example:{port}");
    let attempt = [("Host", evil_host.as_str()), ("Origin", evil_origin.as_str())];
    assert_eq!(Client::try_connect_with(&url, &attempt).await.err(), Some(403));
    let own = [("Host", "localhost"), ("Origin", "http://localhost")];
    assert!(Client::try_connect_with(&url, &own).await.is_ok(), "localhost is loopback");
    let metrics = http_get_host(&server, "/metrics", &evil_host).await;
    assert!(metrics.starts_with("HTTP/1.1 403"), "{metrics}");
    let metrics = http_get(&server, "/metrics").await;
    assert!(metrics.contains(r#"chat_refused_upgrades_total{reason="host"} 1"#), "{metrics}");
    assert!(metrics.contains("chat_refused_metrics_requests_total 1"), "{metrics}");
}

/// Connections beyond `--max-connections-per-address` from one address are refused with 429,
/// and the place comes back once a connection has ended.
#[tokio::test]
async fn connections_per_address_are_capped_with_429() {
    let server = TestServer::with_config(caps(100, 2));
    let url = server.url("room=caps");
    let first = Client::try_connect(&url, None).await.expect("first");
    let _second = Client::try_connect(&url, None).await.expect("second");
    assert_eq!(Client::try_connect(&url, None).await.err(), Some(429));
    first.close().await;
    // The place comes back once the server has dropped the session.
    let deadline = tokio::time::Instant::now() + crate::util::DEADLINE;
    while Client::try_connect(&url, None).await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "the place never came back");
        tokio::task::yield_now().await;
    }
}

/// Connections beyond `--max-connections` are refused with 503 and counted in `/metrics`.
#[tokio::test]
async fn connections_beyond_the_server_cap_are_refused_with_503() {
    let server = TestServer::with_config(caps(1, 10));
    let url = server.url("room=caps");
    let _only = Client::try_connect(&url, None).await.expect("first");
    assert_eq!(Client::try_connect(&url, None).await.err(), Some(503));
    let metrics = http_get(&server, "/metrics").await;
    assert!(
        metrics.contains(r#"chat_refused_upgrades_total{reason="server_full"} 1"#),
        "{metrics}"
    );
}

/// Test settings with these connection caps.
fn caps(total: usize, per_address: usize) -> server::Config {
    server::Config {
        abuse: server::config::AbuseLimits {
            max_connections: total,
            max_connections_per_address: per_address,
            ..config().abuse
        },
        ..config()
    }
}

/// `/metrics` reports connections, rooms, messages, bytes and errors by code.
#[tokio::test]
async fn metrics_count_what_happens() {
    let server = TestServer::start();
    let (mut alice, _) = server.join("metrics", "alice").await;
    let (_bob, _) = server.join("metrics", "bob").await;
    alice.say("one").await;
    alice.message().await;
    alice.send_text("{broken").await;
    assert_eq!(alice.error().await, ErrorCode::MalformedJson);

    let text = http_get(&server, "/metrics").await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    for line in [
        "chat_connections 2",
        "chat_connections_accepted_total 2",
        "chat_rooms 1",
        "chat_messages_in_total 1",
        r#"chat_errors_total{code="malformed_json"} 1"#,
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    // Welcomes (2), bob's join notice to alice (1), the message to both (2), the error (1).
    assert!(text.contains("chat_frames_out_total 6"), "{text}");
}

/// A fragmented message that passes `--max-message-bytes` closes with 1009 as documented,
/// even when the fragment that passes it is also one too many for the rate limit.
#[tokio::test]
async fn an_oversized_message_closes_with_1009_even_when_rate_limited() {
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    let mut settings = limited();
    settings.limits.max_message_bytes = 100;
    let server = TestServer::with_config(settings);
    let (mut client, _) = server.join("big", "fragments").await;
    // The burst of 20 frames: the first fragment and 19 more, 80 bytes in all.
    let first = Frame::message(b"{\"t".to_vec(), OpCode::Data(Data::Text), false);
    client.send_raw(Message::Frame(first)).await;
    for _ in 0..19 {
        let more = Frame::message(b"xxxx".to_vec(), OpCode::Data(Data::Continue), false);
        client.send_raw(Message::Frame(more)).await;
    }
    // The 21st frame is refused by the rate limit and takes the message past 100 bytes.
    let last = Frame::message(vec![b'x'; 40], OpCode::Data(Data::Continue), false);
    client.try_send_raw(Message::Frame(last)).await;
    assert_eq!(client.close_code().await, close::MESSAGE_TOO_BIG);
}
