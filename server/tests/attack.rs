//! Attacks run against the real binary, one test and one server each, with the defaults that
//! matter left as operators get them (but for the frame rate limit, raised so that attackers
//! meet the limits under test). Clients that join a full room and never read, room churn,
//! rename and typing floods, and look-alike nicks each have a test that prints what it measured
//! (the server's memory, what an ordinary member still received) and fails if a bound
//! documented in docs/PROTOCOL.md does not hold or if the server logged a panic. A last test,
//! with a short outgoing queue, has members dropped for asking faster than they read rejoin at
//! once, and checks that they leave no ghost in the room. (A full disk is tried in
//! `durable.rs`, which can limit the server's file size.)

mod common;

use std::time::Instant;

use common::{Running, memory_kib, stalled_client};
use protocol::{ErrorCode, ServerMessage};
use testclient::{Client, Message, url};

/// Stalled readers joining the full room: more than the per-address cap of the old attack
/// (one address may open 200 connections), enough to show any per-connection cost.
const STALLED: usize = 60;
/// Messages posted to fill the room: far more than its byte retention keeps.
const FILL: usize = 1_000;
const TEXT_CHARS: usize = 4_000;

async fn send(client: &mut Client, frame: serde_json::Value) {
    client.send_text(&frame.to_string()).await;
}

/// Fills the client's room with `FILL` long messages, in windows of 100 acknowledged sends.
async fn fill(client: &mut Client) {
    let padding = "x".repeat(TEXT_CHARS);
    for window in 0..FILL / 100 {
        let frames = (window * 100..(window + 1) * 100).map(|i| {
            let frame = serde_json::json!({"type": "send", "text": format!("{i} {padding}"), "client_id": format!("f{i}")});
            Message::text(frame.to_string())
        });
        client.send_burst(frames).await;
        let last = format!("f{}", (window + 1) * 100 - 1);
        while !matches!(client.recv().await, ServerMessage::Ack { client_id, .. } if client_id == last)
        {
        }
    }
}

/// Reads until the message `text` arrives; returns the frames of each kind seen before it.
async fn until_message(client: &mut Client, text: &str) -> (usize, usize, usize) {
    let (mut messages, mut typing, mut presence) = (0, 0, 0);
    loop {
        match client.recv().await {
            ServerMessage::Message(message) if message.text == text => {
                return (messages, typing, presence);
            }
            ServerMessage::Message(_) => messages += 1,
            ServerMessage::Typing { .. } => typing += 1,
            ServerMessage::Joined { .. } | ServerMessage::Left { .. } => presence += 1,
            _ => {}
        }
    }
}

/// Starts the server with every limit at its default but the frame rate limit, which is raised
/// so that the attackers are held by the limits under test, not by the frame rate; `extra`
/// flags are added after these.
fn start(extra: &[&str]) -> Running {
    let mut args = vec!["--port", "0", "--rate-per-second", "100000", "--rate-burst", "100000"];
    args.extend_from_slice(extra);
    Running::start(&args, &[])
}

/// Fails if the server has logged a panic so far.
fn assert_no_panic(server: &Running) {
    assert!(!server.log_lines().iter().any(|line| line.contains("panicked")), "a panic was logged");
}

/// Clients that join a room full of long messages asking for everything (`since=0`) and never
/// read cost the server under 4 MiB of resident memory each on average, and do not hold up the
/// room: an ordinary member still receives every message posted after they joined.
#[tokio::test(flavor = "multi_thread")]
async fn stalled_readers_cost_under_4_mib_each_and_hold_up_no_one() {
    let server = start(&[]);
    let address = server.address();
    let pid = server.pid();
    let (mut alice, _) = Client::join(&url(&address, "room=full&nick=alice")).await;
    fill(&mut alice).await;
    let (mut bob, welcome) = Client::join(&url(&address, "room=full&nick=bob")).await;
    let history = welcome.history;
    let kept: usize = history.iter().map(|m| m.text.len()).sum();
    let before = memory_kib(pid, "VmRSS");
    let stalled: Vec<_> = (0..STALLED)
        .map(|i| stalled_client(&address, &format!("room=full&nick=s{i}&since=0")))
        .collect();
    // Every stalled reader is in the room once bob has seen it join.
    let mut joined = 0;
    while joined < STALLED {
        if matches!(bob.recv().await, ServerMessage::Joined { .. }) {
            joined += 1;
        }
    }
    let after = memory_kib(pid, "VmRSS");
    let per_reader = after.saturating_sub(before) as f64 / STALLED as f64;
    // The room goes on: 50 more messages, each to every member, the stalled ones included
    // until they are dropped as not reading.
    for i in 0..50 {
        send(&mut alice, serde_json::json!({"type": "send", "text": format!("after {i}")})).await;
    }
    send(&mut alice, serde_json::json!({"type": "send", "text": "still here"})).await;
    let (received, _, _) = until_message(&mut bob, "still here").await;
    let after_traffic = memory_kib(pid, "VmRSS");
    eprintln!(
        "attack: {FILL} messages of {TEXT_CHARS} chars posted to #full (a newcomer gets the \
         newest {}, {kept} bytes of text); {STALLED} stalled readers joined it with since=0: \
         server RSS {before} -> {after} KiB, {per_reader:.0} KiB per stalled reader (what the \
         kernel buffers for their sockets is not in RSS), {after_traffic} KiB after 51 more \
         messages; bob received {} of 51",
        history.len(),
        received + 1
    );
    assert_eq!(received, 50, "bob received every message");
    assert!(per_reader < 4.0 * 1024.0, "{per_reader:.0} KiB per stalled reader, over 4 MiB");
    drop(stalled);
    assert_no_panic(&server);
}

/// One connection asking for 100 new rooms as fast as it can opens at most 20 of them and is
/// refused (`rate_limited`) the rest. With the defaults the join burst (10) binds before the
/// room-opening allowance (20 a minute per address), whose own test is in
/// `tests/tests/server/bounds.rs`; this one checks that churn is bounded, whichever limit holds.
#[tokio::test(flavor = "multi_thread")]
async fn room_churn_by_one_connection_is_bounded() {
    let server = start(&[]);
    let address = server.address();
    let (mut churner, _) = Client::join(&url(&address, "room=churn-start&nick=churner")).await;
    let (mut opened, mut refused) = (0, 0);
    for i in 0..100 {
        send(&mut churner, serde_json::json!({"type": "join", "room": format!("churn-{i}")})).await;
        loop {
            match churner.recv().await {
                ServerMessage::Welcome { .. } => opened += 1,
                ServerMessage::Error { code: ErrorCode::RateLimited, .. } => refused += 1,
                _ => continue,
            }
            break;
        }
    }
    eprintln!("attack: room churn: 100 new rooms asked for, {opened} opened, {refused} refused");
    assert!(refused > 0 && opened <= 20, "opened {opened} rooms in a burst");
    assert_no_panic(&server);
}

/// 200 typing notices and 200 renames from one member are merged for another member of the
/// room into at most one typing notice and two join/leave notices, and she still chats.
#[tokio::test(flavor = "multi_thread")]
async fn typing_and_rename_floods_are_merged_into_few_notices() {
    let server = start(&[]);
    let address = server.address();
    let (mut flooder, _) = Client::join(&url(&address, "room=calm&nick=flooder")).await;
    let (mut carol, _) = Client::join(&url(&address, "room=calm&nick=carol")).await;
    for i in 0..200 {
        send(&mut flooder, serde_json::json!({"type": "typing"})).await;
        let rename = serde_json::json!({"type": "join", "room": "calm", "nick": format!("f{i}")});
        send(&mut flooder, rename).await;
    }
    send(&mut flooder, serde_json::json!({"type": "send", "text": "flood over"})).await;
    let (_, typing, presence) = until_message(&mut carol, "flood over").await;
    send(&mut carol, serde_json::json!({"type": "send", "text": "carol speaks"})).await;
    until_message(&mut carol, "carol speaks").await;
    eprintln!(
        "attack: 200 typing notices and 200 renames sent: carol saw {typing} typing notices \
         and {presence} join/leave notices, and still chats"
    );
    assert!(typing <= 1 && presence <= 2, "typing {typing}, presence {presence}");
    assert_no_panic(&server);
}

/// Nicks that only look like a member's (a Cyrillic letter, full-width letters, a zero-width
/// space, capitals) are refused in her room, as taken or invalid.
#[tokio::test(flavor = "multi_thread")]
async fn look_alike_nicks_are_refused() {
    let server = start(&[]);
    let address = server.address();
    let (_carol, _) = Client::join(&url(&address, "room=calm&nick=carol")).await;
    for spoof in ["\u{441}arol", "ｃａｒｏｌ", "carol\u{200B}", "CAROL"] {
        let mut spoofer =
            Client::connect(&url(&address, &format!("room=calm&nick={}", encode(spoof)))).await;
        match spoofer.recv().await {
            ServerMessage::Error { code, .. } => {
                assert!(matches!(code, ErrorCode::NickTaken | ErrorCode::InvalidNick), "{spoof:?}");
            }
            other => panic!("{spoof:?} was let in: {other:?}"),
        }
    }
    eprintln!("attack: 4 look-alikes of 'carol' refused");
    assert_no_panic(&server);
}

/// Percent-encodes a nick for the connect URL.
fn encode(nick: &str) -> String {
    nick.bytes().map(|b| format!("%{b:02X}")).collect()
}

/// A member that asks for history faster than the server can write it out is dropped from its
/// room; a `join` it sent right behind those requests, which the room admits after dropping it,
/// must not leave a member that no connection backs once the connection is gone: the room ends
/// up with its one real member.
#[tokio::test(flavor = "multi_thread")]
async fn an_evicted_member_that_rejoins_leaves_no_ghost() {
    let server = start(&["--max-queued-frames", "16"]);
    let address = server.address();
    let (mut observer, _) = Client::join(&url(&address, "room=haunt&nick=observer")).await;
    send(&mut observer, serde_json::json!({"type": "send", "text": "something to page"})).await;
    while !matches!(observer.recv().await, ServerMessage::Message(_)) {}
    let mut evicted = 0;
    for round in 0..10 {
        let (mut greedy, _) =
            Client::join(&url(&address, &format!("room=haunt&nick=greedy{round}"))).await;
        let request = r#"{"type":"history","room":"haunt","limit":1}"#;
        let requests = std::iter::repeat_n(Message::text(request), 400);
        greedy
            .send_burst(requests.chain([Message::text(r#"{"type":"join","room":"haunt"}"#)]))
            .await;
        // It reads on, as a client does, until the server closes it (or falls silent for
        // `common::DEADLINE`, as a member that was never dropped does).
        loop {
            match tokio::time::timeout(common::DEADLINE, greedy.next_frame()).await {
                Ok(Some(Ok(Message::Close(frame)))) => {
                    evicted += usize::from(frame.is_some_and(|f| u16::from(f.code) == 4003));
                    break;
                }
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(_)) | None) | Err(_) => break,
            }
        }
    }
    assert!(evicted > 0, "no greedy member was dropped: the test tried nothing");
    // The room's own member list (a newcomer's welcome), not only the lobby's count.
    let deadline = Instant::now() + common::DEADLINE;
    loop {
        let (witness, welcome) = Client::join(&url(&address, "room=haunt&nick=witness")).await;
        let members = welcome.members;
        if members == ["observer", "witness"] {
            eprintln!("attack: {evicted} of 10 greedy members dropped (4003), none left behind");
            break;
        }
        assert!(Instant::now() < deadline, "members left behind in #haunt: {members:?}");
        witness.close().await;
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
