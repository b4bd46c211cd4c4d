//! One connection in several rooms (docs/PROTOCOL.md, "Several rooms on one connection"):
//! `join` with `add`, `leave`, `send` and `typing` naming their room, the per-connection cap,
//! and the per-connection bounds counted across every room.

use protocol::{ErrorCode, ServerMessage};
use serde_json::json;

use crate::util::{Client, TestServer, config};

async fn add(client: &mut Client, room: &str) {
    client.send_text(&json!({"type": "join", "room": room, "add": true}).to_string()).await;
}

async fn say_in(client: &mut Client, room: &str, text: &str, client_id: &str) {
    let frame = json!({"type": "send", "room": room, "text": text, "client_id": client_id});
    client.send_text(&frame.to_string()).await;
}

/// Adds `room` and waits for its welcome.
async fn enter(client: &mut Client, room: &str) {
    add(client, room).await;
    client.welcome().await;
}

/// The next frame's room and kind, for checking where things go.
async fn next_in(client: &mut Client) -> (String, ServerMessage) {
    let message = client.recv().await;
    let room = match &message {
        ServerMessage::Welcome { room, .. }
        | ServerMessage::Joined { room, .. }
        | ServerMessage::Left { room, .. }
        | ServerMessage::Typing { room, .. }
        | ServerMessage::Ack { room, .. }
        | ServerMessage::History { room, .. } => room.clone(),
        ServerMessage::Message(message) => message.room.clone(),
        other => panic!("a frame of no room: {other:?}"),
    };
    (room, message)
}

/// A connection that adds a room keeps the first: it hears both, posts to each by name, and
/// each room sees only its own messages.
#[tokio::test]
async fn a_connection_follows_several_rooms() {
    let server = TestServer::start();
    let (mut alice, _) = server.join("a", "alice").await;
    add(&mut alice, "b").await;
    let welcome = alice.welcome().await;
    assert_eq!((welcome.room.as_str(), welcome.nick.as_str()), ("b", "alice"));
    let (mut bob, _) = server.join("a", "bob").await;
    let (mut carol, _) = server.join("b", "carol").await;
    assert_eq!(next_in(&mut alice).await.0, "a", "bob joined a");
    assert_eq!(next_in(&mut alice).await.0, "b", "carol joined b");

    say_in(&mut alice, "b", "to b", "k1").await;
    say_in(&mut alice, "a", "to a", "k2").await;
    assert_eq!(carol.message().await.text, "to b");
    assert_eq!(bob.message().await.text, "to a");
    bob.say("from bob").await;
    let heard = alice.recv_until(|m| match m {
        ServerMessage::Message(m) if m.from == "bob" => Some(m),
        _ => None,
    });
    assert_eq!(heard.await.room, "a");

    // Without a room, a send is ambiguous now: refused, naming its client id.
    alice.say_with_id("where?", "k3").await;
    let refusal = alice
        .recv_until(|m| match m {
            ServerMessage::Error { code, client_id, .. } => Some((code, client_id)),
            _ => None,
        })
        .await;
    assert_eq!(refusal, (ErrorCode::InvalidMessage, Some("k3".to_owned())));
    // Typing names its room too, and reaches that room only.
    alice.send_text(r#"{"type":"typing","room":"b"}"#).await;
    let typing = carol.recv_until(|m| match m {
        ServerMessage::Typing { room, nick } => Some((room, nick)),
        _ => None,
    });
    assert_eq!(typing.await, ("b".to_owned(), "alice".to_owned()));
    bob.say("after typing").await;
    let seen = bob
        .recv_until(|m| match m {
            ServerMessage::Typing { .. } => Some(false),
            ServerMessage::Message(m) if m.text == "after typing" => Some(true),
            _ => None,
        })
        .await;
    assert!(seen, "no typing reached a");
}

/// A `join` without `add` moves the connection: every other room it was in sees it leave, and
/// a send without a room goes to the one room left.
#[tokio::test]
async fn a_join_without_add_leaves_every_other_room() {
    let server = TestServer::start();
    let (mut watcher_a, _) = server.join("a", "wa").await;
    let (mut watcher_b, _) = server.join("b", "wb").await;
    let (mut alice, _) = server.join("a", "alice").await;
    enter(&mut alice, "b").await;
    alice.send_text(r#"{"type":"join","room":"c"}"#).await;
    assert_eq!(alice.welcome().await.room, "c");
    for watcher in [&mut watcher_a, &mut watcher_b] {
        let left = watcher.left().await;
        assert_eq!(left, "alice");
    }
    alice.say_with_id("in c", "k1").await;
    let (_, id) = alice.ack().await;
    assert_eq!(alice.message().await.id, id);
}

/// `leave` takes the connection out of one room and keeps the others: the leaver hears its own
/// `left` (and nothing of that room after it), the room's members hear it too, and the room
/// then refuses the leaver's sends with `not_joined`.
#[tokio::test]
async fn leave_keeps_the_other_rooms() {
    let server = TestServer::start();
    let (mut alice, _) = server.join("a", "alice").await;
    enter(&mut alice, "b").await;
    let (mut bob, _) = server.join("a", "bob").await;
    assert_eq!(next_in(&mut alice).await.0, "a", "bob joined");

    alice.send_text(r#"{"type":"leave","room":"a"}"#).await;
    let (room, left) = next_in(&mut alice).await;
    assert_eq!(room, "a");
    assert!(matches!(left, ServerMessage::Left { nick, .. } if nick == "alice"));
    assert_eq!(bob.left().await, "alice");

    say_in(&mut alice, "a", "gone", "k1").await;
    assert_eq!(alice.error().await, ErrorCode::NotJoined);
    alice.send_text(r#"{"type":"leave","room":"a"}"#).await;
    assert_eq!(alice.error().await, ErrorCode::NotJoined);
    // In one room again: a send needs no room.
    alice.say_with_id("still in b", "k2").await;
    let (_, id) = alice.ack().await;
    let message = alice.message().await;
    assert_eq!((message.id, message.room.as_str()), (id, "b"));
}

/// A connection may be in `--max-rooms-per-connection` rooms: one more `add` is refused with
/// `too_many_joined` and the connection stays in the rooms it has; leaving one makes room, and
/// a move (no `add`) is always possible.
#[tokio::test]
async fn rooms_per_connection_are_capped() {
    let mut settings = config();
    settings.abuse.max_rooms_per_connection = 3;
    let server = TestServer::with_config(settings);
    let (mut alice, _) = server.join("r0", "alice").await;
    for room in ["r1", "r2"] {
        enter(&mut alice, room).await;
    }
    add(&mut alice, "r3").await;
    assert_eq!(alice.error().await, ErrorCode::TooManyJoined);
    // Joining a room it is in again is no new room: a rename there passes.
    alice.send_text(r#"{"type":"join","room":"r2","nick":"alice2","add":true}"#).await;
    let renamed = alice.recv_until(|m| match m {
        ServerMessage::Welcome { nick, .. } => Some(nick),
        _ => None,
    });
    assert_eq!(renamed.await, "alice2");
    alice.send_text(r#"{"type":"leave","room":"r0"}"#).await;
    assert!(matches!(alice.recv().await, ServerMessage::Left { .. }));
    add(&mut alice, "r3").await;
    assert_eq!(alice.welcome().await.room, "r3");
    alice.send_text(r#"{"type":"join","room":"r9"}"#).await;
    assert_eq!(alice.welcome().await.room, "r9");
    let rooms = alice.list_rooms().await;
    let mine: Vec<&str> = rooms.iter().filter(|r| r.members > 0).map(|r| r.name.as_str()).collect();
    assert_eq!(mine, ["r9"], "the move left r1, r2 and r3");
}

/// Client ids are told apart per room: the same id in two rooms is two messages, and a repeat
/// in one room is acknowledged with that room's original id. A reconnecting client catches up
/// in each room from its own `since`.
#[tokio::test]
async fn client_ids_and_catch_up_are_per_room() {
    let server = TestServer::start();
    let url = server.url("room=a&nick=alice&client=tab");
    let (mut alice, _) = Client::join(&url).await;
    enter(&mut alice, "b").await;
    say_in(&mut alice, "a", "one", "same").await;
    let (_, in_a) = alice.ack().await;
    say_in(&mut alice, "b", "two", "same").await;
    let (_, in_b) = alice.ack().await;
    assert_ne!(in_a, in_b, "two rooms, two messages");
    say_in(&mut alice, "a", "one", "same").await;
    assert_eq!(alice.ack().await.1, in_a, "a repeat in a");
    alice.close().await;

    let (mut bob, _) = server.join("a", "bob").await;
    bob.say("missed in a").await;
    let (mut carol, _) = server.join("b", "carol").await;
    carol.say("missed in b").await;
    carol.message().await;
    bob.message().await;

    let (mut alice, _) =
        Client::join(&server.url(&format!("room=a&nick=alice&since={in_a}"))).await;
    let frame = json!({"type": "join", "room": "b", "add": true, "since": in_b});
    alice.send_text(&frame.to_string()).await;
    let welcome = alice.welcome().await;
    let texts: Vec<&str> = welcome.history.iter().map(|m| m.text.as_str()).collect();
    assert_eq!((welcome.since, texts), (Some(in_b), vec!["missed in b"]));
}

/// The frame rate is the connection's, whatever room each frame names: a burst spread over two
/// rooms is limited as one.
#[tokio::test]
async fn the_rate_limit_counts_every_room() {
    let mut settings = config();
    settings.abuse.rate_per_second = 1;
    settings.abuse.rate_burst = 6;
    settings.abuse.flood_limit = 1_000;
    let server = TestServer::with_config(settings);
    let (mut alice, _) = server.join("a", "alice").await;
    add(&mut alice, "b").await; // frame 1
    alice.welcome().await;
    for i in 0..5 {
        let room = if i % 2 == 0 { "a" } else { "b" };
        say_in(&mut alice, room, "x", &format!("k{i}")).await; // frames 2 to 6
    }
    say_in(&mut alice, "b", "one too many", "k9").await;
    assert_eq!(alice.error_skipping().await, ErrorCode::RateLimited);
}

/// Welcomes of many full rooms asked for at once (twelve pages' worth against a bound of four)
/// reach a client that reads, none dropped as not reading. End to end only: whether a welcome
/// had to be cut depends on how fast the socket drains; `room_state`'s
/// `the_welcome_fits_beside_what_waits` checks the cut itself.
#[tokio::test]
async fn welcomes_of_many_rooms_fit_the_per_client_bound() {
    let mut settings = config();
    settings.abuse.max_queued_bytes = 64 * 1024;
    settings.abuse.max_rooms_per_connection = 20;
    let server = TestServer::with_config(settings);
    let rooms: Vec<String> = (0..12).map(|i| format!("full-{i}")).collect();
    let mut writers = Vec::new();
    for room in &rooms {
        let (mut writer, _) = server.join(room, "writer").await;
        // About a page (16 KiB) of history in each room.
        for i in 0..16 {
            writer.say_with_id(&"x".repeat(1_000), &format!("k{i}")).await;
            writer.ack().await;
        }
        writers.push(writer);
    }
    let (mut reader, _) = server.join("lobby", "reader").await;
    let joins = rooms.iter().map(|room| {
        testclient::Message::text(json!({"type": "join", "room": room, "add": true}).to_string())
    });
    reader.send_burst(joins).await;
    let mut welcomed = Vec::new();
    while welcomed.len() < rooms.len() {
        if let ServerMessage::Welcome { room, .. } = reader.recv().await {
            welcomed.push(room);
        }
    }
    welcomed.sort();
    let mut expected = rooms.clone();
    expected.sort();
    assert_eq!(welcomed, expected);
}

/// One address keeps at most `--max-open-rooms-per-address` rooms it opened open, however many
/// rooms its connections may be in: past it, opening another is refused with `too_many_rooms`
/// (naming the room), joining an open room still works, and a room that closes frees its
/// place.
#[tokio::test]
async fn open_rooms_are_capped_per_address() {
    let mut settings = config();
    settings.abuse.max_open_rooms_per_address = 3;
    let server = TestServer::with_config(settings);
    let (mut opener, _) = server.join("o1", "opener").await;
    for room in ["o2", "o3"] {
        enter(&mut opener, room).await;
    }
    add(&mut opener, "o4").await;
    let refusal = opener
        .recv_until(|m| match m {
            ServerMessage::Error { code, room, .. } => Some((code, room)),
            _ => None,
        })
        .await;
    assert_eq!(refusal, (ErrorCode::TooManyRooms, Some("o4".to_owned())));
    // Another connection of the address joins a room that is open.
    let (other, _) = server.join("o2", "other").await;
    opener.send_text(r#"{"type":"leave","room":"o3"}"#).await;
    let left = opener.recv_until(|m| match m {
        ServerMessage::Left { room, nick, .. } => Some((room, nick)),
        _ => None,
    });
    assert_eq!(left.await, ("o3".to_owned(), "opener".to_owned()));
    add(&mut opener, "o4").await;
    let welcome = opener.recv_until(|m| match m {
        ServerMessage::Welcome { room, .. } => Some(room),
        _ => None,
    });
    assert_eq!(welcome.await, "o4", "o3 closed, which freed a place");
    other.close().await;
}

/// `/metrics` counts the rooms connections are in (`chat_memberships`): up with each room a
/// connection enters, down with each it leaves or closes.
#[tokio::test]
async fn memberships_are_counted_in_metrics() {
    let server = TestServer::start();
    let memberships = || async {
        let metrics = crate::util::http_get(&server, "/metrics").await;
        metrics
            .lines()
            .find_map(|line| line.strip_prefix("chat_memberships "))
            .and_then(|value| value.trim().parse::<i64>().ok())
            .expect("chat_memberships in /metrics")
    };
    let wait_for = |want: i64| async move {
        let deadline = tokio::time::Instant::now() + crate::util::DEADLINE;
        loop {
            let got = memberships().await;
            if got == want {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "chat_memberships {got}, not {want}");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    let (mut alice, _) = server.join("m1", "alice").await;
    enter(&mut alice, "m2").await;
    enter(&mut alice, "m3").await;
    wait_for(3).await;
    alice.send_text(r#"{"type":"leave","room":"m2"}"#).await;
    wait_for(2).await;
    alice.send_text(r#"{"type":"join","room":"m9"}"#).await;
    wait_for(1).await;
    alice.close().await;
    wait_for(0).await;
}
