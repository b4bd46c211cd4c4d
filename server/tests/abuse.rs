//! A bounded abuse run against the real binary: every kind of bad input, floods, and a
//! thousand connections dropped abruptly, six rounds over. Afterwards the server still
//! chats normally, logged no panic, and its memory is back where the first round left it.

mod common;

use std::time::{Duration, Instant};

use common::{Running, get, memory_kib};
use protocol::ServerMessage;
use testclient::{Client, Message, url};

const DROPPED_CONNECTIONS: usize = 1_000;

/// Reads until the server closes; returns its close code (None if it just hung up).
async fn close_code(client: &mut Client) -> Option<u16> {
    client.closed().await.map(|frame| u16::from(frame.code))
}

/// Reads until `n` error frames arrived, skipping presence notices; fails on anything else.
async fn expect_errors(client: &mut Client, n: usize) {
    let mut seen = 0;
    while seen < n {
        match client.recv().await {
            ServerMessage::Error { .. } => seen += 1,
            ServerMessage::Joined { .. } | ServerMessage::Left { .. } => {}
            other => panic!("expected an error frame, got {other:?}"),
        }
    }
}

async fn round(address: &str, round: usize) {
    // Malformed, unknown and binary frames: each answered with an error, connection kept.
    for i in 0..10 {
        let (mut client, _) =
            Client::join(&url(address, &format!("room=abuse&nick=bad{round}-{i}"))).await;
        for frame in ["{nope", "[]", r#"{"type":"dance"}"#, r#"{"type":"send","text":""}"#] {
            client.send_text(frame).await;
        }
        client.send_raw(Message::binary(vec![0u8; 64])).await;
        expect_errors(&mut client, 5).await;
        client.try_send_raw(Message::Close(None)).await;
    }
    // Frames over the limit, and text that is not UTF-8: documented close codes.
    for i in 0..10 {
        let mut client =
            Client::connect(&url(address, &format!("room=abuse&nick=big{round}-{i}"))).await;
        client.try_send_raw(Message::binary(vec![b'x'; 200 * 1024])).await;
        assert_eq!(close_code(&mut client).await, Some(1009));
        let mut client =
            Client::connect(&url(address, &format!("room=abuse&nick=utf{round}-{i}"))).await;
        client.try_send_text_bytes(vec![0xff, 0xfe, 0xfd]).await;
        assert_eq!(close_code(&mut client).await, Some(1007));
    }
    // Floods: cut off with 1008.
    for i in 0..5 {
        let mut client =
            Client::connect(&url(address, &format!("room=abuse&nick=flood{round}-{i}"))).await;
        let flood = (0..300).map(|n| Message::text(format!(r#"{{"type":"send","text":"{n}"}}"#)));
        client.try_send_burst(flood).await;
        assert_eq!(close_code(&mut client).await, Some(1008));
    }
    // A thousand connections, all open at once, then dropped without a close frame.
    let mut open = Vec::with_capacity(DROPPED_CONNECTIONS);
    for i in 0..DROPPED_CONNECTIONS {
        open.push(
            Client::connect(&url(address, &format!("room=crowd-{}&nick=n{i}", i % 20))).await,
        );
    }
    for client in open {
        client.abort();
    }
    // Everything is cleaned up: no connection or room left behind.
    let start = Instant::now();
    loop {
        let metrics = get(address, "/metrics");
        if metrics.contains("\nchat_connections 0\n") && metrics.contains("\nchat_rooms 0\n") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "not cleaned up:\n{metrics}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Six rounds of abuse. The first three warm the allocator up (how RSS settles is in
/// BENCHMARKS.md); over the next three the server's memory may not grow by more than 10%, so
/// per-connection state that outlives its connection would show. Afterwards two clients chat
/// normally and nothing panicked.
#[tokio::test(flavor = "multi_thread")]
async fn server_survives_abuse_and_returns_to_baseline() {
    let server = Running::start(
        &[
            "--port",
            "0",
            "--max-connections-per-address",
            "5000",
            "--room-opens-per-minute-per-address",
            "100000",
            "--joins-per-minute-per-address",
            "100000",
            "--workers",
            "2",
        ],
        &[],
    );
    let address = server.address();
    let fresh = memory_kib(server.pid(), "VmRSS");
    let started = Instant::now();
    let mut after = Vec::new();
    for r in 1..=6 {
        round(&address, r).await;
        after.push(memory_kib(server.pid(), "VmRSS"));
    }
    let (warm, last) = (after[2], after[5]);
    eprintln!(
        "abuse: 6 rounds of {DROPPED_CONNECTIONS}+ connections in {:.1?}; RSS fresh {fresh} KiB, \
         after each round {after:?} KiB, peak {} KiB",
        started.elapsed(),
        memory_kib(server.pid(), "VmHWM")
    );
    assert!(
        (last as f64) <= warm as f64 * 1.10,
        "memory grew from {warm} KiB to {last} KiB over three rounds"
    );

    let (mut alice, _) = Client::join(&url(&address, "room=after&nick=alice")).await;
    let (mut bob, _) = Client::join(&url(&address, "room=after&nick=bob")).await;
    alice.say("all good").await;
    let mut delivered = false;
    for _ in 0..3 {
        if matches!(bob.recv().await, ServerMessage::Message(message) if message.text == "all good")
        {
            delivered = true;
            break;
        }
    }
    assert!(delivered, "the server still relays messages");
    let log = server.log_lines();
    assert!(!log.iter().any(|line| line.contains("panicked")), "a panic was logged");
    let metrics = get(&address, "/metrics");
    for counter in
        ["chat_flood_disconnects_total 30", r#"chat_errors_total{code="malformed_json"} 60"#]
    {
        assert!(metrics.contains(counter), "missing {counter:?}:\n{metrics}");
    }
}
