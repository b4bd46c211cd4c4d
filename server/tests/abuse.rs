//! A bounded abuse run against the real binary: every kind of bad input, floods, and a
//! thousand connections dropped abruptly, six rounds over. Afterwards the server still
//! chats normally, logged no panic, and its memory is back where the first round left it.

mod common;

use std::time::{Duration, Instant};

use common::{Running, Ws, connect, get, memory_kib};
use tungstenite::Message;
use tungstenite::protocol::frame::Frame;
use tungstenite::protocol::frame::coding::{Data, OpCode};

const DROPPED_CONNECTIONS: usize = 1_000;

/// Reads until the server closes; returns its close code (None if it just hung up).
fn close_code(ws: &mut Ws) -> Option<u16> {
    loop {
        match ws.read() {
            Ok(Message::Close(frame)) => return frame.map(|f| u16::from(f.code)),
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
}

/// Reads until `n` error frames arrived, skipping presence notices; fails on anything else.
fn expect_errors(ws: &mut Ws, n: usize) {
    let mut seen = 0;
    while seen < n {
        match ws.read().expect("an answer in time") {
            Message::Text(text) if text.contains(r#""type":"error""#) => seen += 1,
            Message::Text(text)
                if text.contains(r#""type":"joined""#) || text.contains(r#""type":"left""#) => {}
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("expected an error frame, got {other:?}"),
        }
    }
}

fn round(address: &str, round: usize) {
    // Malformed, unknown and binary frames: each answered with an error, connection kept.
    for i in 0..10 {
        let mut ws = connect(address, &format!("room=abuse&nick=bad{round}-{i}"));
        ws.read().expect("welcome");
        for frame in ["{nope", "[]", r#"{"type":"dance"}"#, r#"{"type":"send","text":""}"#] {
            ws.send(Message::text(frame)).expect("sent");
        }
        ws.send(Message::binary(vec![0u8; 64])).expect("sent");
        expect_errors(&mut ws, 5);
        ws.close(None).ok();
    }
    // Frames over the limit, and text that is not UTF-8: documented close codes.
    for i in 0..10 {
        let mut ws = connect(address, &format!("room=abuse&nick=big{round}-{i}"));
        ws.send(Message::binary(vec![b'x'; 200 * 1024])).ok();
        assert_eq!(close_code(&mut ws), Some(1009));
        let mut ws = connect(address, &format!("room=abuse&nick=utf{round}-{i}"));
        let invalid = Frame::message(vec![0xff, 0xfe, 0xfd], OpCode::Data(Data::Text), true);
        ws.send(Message::Frame(invalid)).ok();
        assert_eq!(close_code(&mut ws), Some(1007));
    }
    // Floods: cut off with 1008.
    for i in 0..5 {
        let mut ws = connect(address, &format!("room=abuse&nick=flood{round}-{i}"));
        for n in 0..300 {
            if ws.write(Message::text(format!(r#"{{"type":"send","text":"{n}"}}"#))).is_err() {
                break;
            }
        }
        ws.flush().ok();
        assert_eq!(close_code(&mut ws), Some(1008));
    }
    // A thousand connections, all open at once, then dropped without a close frame.
    let open: Vec<Ws> = (0..DROPPED_CONNECTIONS)
        .map(|i| connect(address, &format!("room=crowd-{}&nick=n{i}", i % 20)))
        .collect();
    for ws in open {
        if let tungstenite::stream::MaybeTlsStream::Plain(stream) = ws.get_ref() {
            stream.shutdown(std::net::Shutdown::Both).ok();
        }
    }
    // Everything is cleaned up: no connection or room left behind.
    let start = Instant::now();
    loop {
        let metrics = get(address, "/metrics");
        if metrics.contains("\nchat_connections 0\n") && metrics.contains("\nchat_rooms 0\n") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "not cleaned up:\n{metrics}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Six rounds of abuse. The first three warm the allocator up (how RSS settles is in
/// BENCHMARKS.md); over the next three the server's memory may not grow by more than 10%, so
/// per-connection state that outlives its connection would show. Afterwards two clients chat
/// normally and nothing panicked.
#[test]
fn server_survives_abuse_and_returns_to_baseline() {
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
        round(&address, r);
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

    let mut alice = connect(&address, "room=after&nick=alice");
    let mut bob = connect(&address, "room=after&nick=bob");
    alice.read().expect("welcome");
    bob.read().expect("welcome");
    alice.send(Message::text(r#"{"type":"send","text":"all good"}"#)).expect("sent");
    let delivered = (0..3).any(|_| match bob.read() {
        Ok(Message::Text(text)) => text.contains(r#""text":"all good""#),
        _ => false,
    });
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
