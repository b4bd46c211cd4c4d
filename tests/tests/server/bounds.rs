//! What one client can make the server hold: open rooms, rooms opened per minute, and the
//! bytes a room keeps. Each limit is tried with more than it allows.

use protocol::{ErrorCode, ServerMessage};

use crate::util::{Client, TestServer, config, http_get};

/// Past `--max-rooms` open rooms, joining a room that is not open is refused with
/// `too_many_rooms` (the connection stays, and may join an open room); a room that empties
/// makes space again.
#[tokio::test]
async fn open_rooms_are_capped() {
    let mut settings = config();
    settings.abuse.max_rooms = 3;
    let server = TestServer::with_config(settings);
    let mut members = Vec::new();
    for room in ["r1", "r2", "r3"] {
        members.push(server.join(room, "owner").await.0);
    }
    let mut late = Client::connect(&server.url("room=r4&nick=late")).await;
    assert_eq!(late.error().await, ErrorCode::TooManyRooms);
    late.send_text(r#"{"type":"join","room":"r1"}"#).await;
    assert_eq!(late.welcome().await.room, "r1", "open rooms can still be joined");
    members.remove(2).close().await;
    let deadline = tokio::time::Instant::now() + crate::util::DEADLINE;
    loop {
        late.send_text(r#"{"type":"join","room":"r4"}"#).await;
        match late.recv().await {
            ServerMessage::Welcome { room, .. } if room == "r4" => break,
            ServerMessage::Error { code: ErrorCode::TooManyRooms, .. } => {}
            other => panic!("unexpected {other:?}"),
        }
        assert!(tokio::time::Instant::now() < deadline, "r3 never closed");
    }
    let metrics = http_get(&server, "/metrics").await;
    assert!(metrics.contains(r#"chat_refused_room_opens_total{reason="max_rooms"}"#), "{metrics}");
}

/// One connection opening rooms one after another (each new room a fresh actor and a history
/// load) is refused with `rate_limited` past `--room-opens-per-minute`, with a retry hint;
/// joining rooms that are open is not limited.
#[tokio::test]
async fn opening_rooms_is_rate_limited() {
    let mut settings = config();
    settings.abuse.room_opens_per_minute = 5;
    let server = TestServer::with_config(settings);
    let (_keeper, _) = server.join("open", "keeper").await;
    let (mut churner, _) = server.join("start", "churner").await; // opens 1 of 5
    for i in 0..4 {
        churner.send_text(&format!(r#"{{"type":"join","room":"churn-{i}"}}"#)).await;
        churner.recv_until(|m| matches!(m, ServerMessage::Welcome { .. }).then_some(())).await;
    }
    churner.send_text(r#"{"type":"join","room":"churn-9"}"#).await;
    match churner.recv().await {
        ServerMessage::Error { code: ErrorCode::RateLimited, retry_after_ms, .. } => {
            assert!(retry_after_ms.is_some_and(|ms| ms > 1_000), "{retry_after_ms:?}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    churner.send_text(r#"{"type":"join","room":"open"}"#).await;
    let room = churner
        .recv_until(|m| match m {
            ServerMessage::Welcome { room, .. } => Some(room),
            _ => None,
        })
        .await;
    assert_eq!(room, "open");
}

/// A room keeps at most `--retain-bytes` of messages: a newcomer gets only the newest that fit,
/// told that older ones exist, however much was posted.
#[tokio::test]
async fn a_room_keeps_a_bounded_number_of_bytes() {
    let mut settings = config();
    settings.storage.retain_bytes = 10_000;
    let server = TestServer::with_config(settings);
    let (mut alice, _) = server.join("heavy", "alice").await;
    for i in 0..20 {
        alice.say(&format!("{i:02}{}", "x".repeat(2_000))).await;
        alice.message().await;
    }
    let (_, welcome) = server.join("heavy", "bob").await;
    let kept: usize = welcome.history.iter().map(|m| m.text.len() + m.from.len()).sum();
    assert!(kept <= 10_000 && !welcome.history.is_empty(), "{kept} bytes kept");
    assert!(welcome.truncated);
    assert_eq!(welcome.history.last().map(|m| &m.text[..2]), Some("19"), "the newest");
}

/// The database holds messages of at most `--max-stored-rooms` rooms (with `--retain-bytes`
/// each, that bounds it): the first message of one more room is refused with
/// `too_many_rooms`, naming its client id; rooms that have messages go on.
#[tokio::test]
async fn stored_rooms_are_capped() {
    let mut settings = config();
    settings.storage.max_stored_rooms = 2;
    let server = TestServer::with_config(settings);
    for room in ["kept-1", "kept-2"] {
        let (mut writer, _) = server.join(room, "writer").await;
        writer.say_with_id("first", "k1").await;
        writer.ack().await;
    }
    let (mut late, _) = server.join("kept-3", "late").await;
    late.say_with_id("one room too many", "k3").await;
    match late.recv().await {
        ServerMessage::Error { code, client_id, .. } => {
            assert_eq!((code, client_id.as_deref()), (ErrorCode::TooManyRooms, Some("k3")));
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let (mut again, _) = server.join("kept-1", "again").await;
    again.say_with_id("second", "k2").await;
    again.ack().await;
    let metrics = http_get(&server, "/metrics").await;
    assert!(metrics.contains("\nchat_stored_rooms 2\n"), "{metrics}");
}

/// Joins are limited per address too, the connect URL's included: fresh connections cannot
/// hop rooms past the per-connection limit. Past `--joins-per-minute-per-address` a join is
/// refused with `rate_limited` and a retry hint.
#[tokio::test]
async fn joins_are_limited_per_address() {
    let mut settings = config();
    settings.abuse.joins_per_minute_per_address = 5;
    let server = TestServer::with_config(settings);
    let mut clients = Vec::new();
    for i in 0..5 {
        clients.push(server.join("hop", &format!("n{i}")).await.0);
    }
    let mut sixth = Client::connect(&server.url("room=hop&nick=n5")).await;
    match sixth.recv().await {
        ServerMessage::Error { code: ErrorCode::RateLimited, retry_after_ms, .. } => {
            assert!(retry_after_ms.is_some_and(|ms| ms > 1_000), "{retry_after_ms:?}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let metrics = http_get(&server, "/metrics").await;
    assert!(
        metrics.contains(r#"chat_refused_room_opens_total{reason="address_joins"} 1"#),
        "{metrics}"
    );
}
