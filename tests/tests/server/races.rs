//! Membership under unlucky timing: refusals, takeovers racing moves, rooms closing and
//! reopening. Each test names the promise of docs/PROTOCOL.md that the race used to break.

use protocol::{ErrorCode, ServerMessage};

use crate::util::{Client, TestServer};

/// A rename refused with `nick_taken` leaves the member where it was ("you stay where you
/// were"): once everyone else has left, the room is still open and the member's messages are
/// acknowledged and relayed.
#[tokio::test]
async fn refused_rename_keeps_the_seat() {
    let server = TestServer::start();
    let (mut alice, _) = server.join("seat", "alice").await;
    let (bob, _) = server.join("seat", "bob").await;
    alice.recv().await; // bob joined
    alice.send_text(r#"{"type":"join","room":"seat","nick":"Bob"}"#).await;
    assert_eq!(alice.error().await, ErrorCode::NickTaken);
    bob.close().await;
    assert_eq!(alice.left().await, "bob");
    alice.say_with_id("still here", "k1").await;
    let (_, id) = alice.ack().await;
    let message = alice.message().await;
    assert_eq!((message.id, message.text.as_str()), (id, "still here"));
}

/// A takeover by a newer connection of the same tab, racing the old connection's move to
/// another room, never leaves a member that no connection backs: once every connection is
/// closed, no room has members left (and so every nick is free again). Raced many times, in
/// both orders.
#[tokio::test]
async fn takeovers_racing_moves_leave_no_ghosts() {
    let server = TestServer::start();
    let (mut observer, _) = server.join("watch", "observer").await;
    let mut clients = Vec::new();
    for round in 0..60 {
        let seat = format!("room=from-{round}&nick=n{round}&client=tab{round}");
        let mut old = Client::connect(&server.url(&seat)).await;
        old.welcome().await;
        let move_away = format!(r#"{{"type":"join","room":"to-{round}"}}"#);
        let url = server.url(&seat);
        let new = if round % 2 == 0 {
            let (new, ()) = tokio::join!(Client::connect(&url), old.send_text(&move_away));
            new
        } else {
            let (new, ()) = tokio::join!(Client::connect(&url), async {
                tokio::task::yield_now().await;
                old.send_text(&move_away).await;
            });
            new
        };
        clients.push(old);
        clients.push(new);
    }
    for client in clients {
        client.abort();
    }
    observer
        .wait_for_rooms(|rooms| rooms.iter().all(|room| room.name == "watch" || room.members == 0))
        .await;
}

/// A member's `typing` is relayed at most once per 2 s however often it is sent.
#[tokio::test]
async fn typing_floods_are_throttled() {
    let server = TestServer::start();
    let (mut alice, mut bob) = alice_and_bob(&server, "noise").await;
    for _ in 0..20 {
        bob.send_text(r#"{"type":"typing"}"#).await;
    }
    bob.say("the end").await;
    let noise = until_the_end(&mut alice, "bob").await;
    let typing = noise.iter().filter(|m| matches!(m, ServerMessage::Typing { .. })).count();
    assert_eq!(typing, 1, "{noise:?}");
}

/// A rename is announced to the others as the old nick leaving and the new one joining, the
/// renamed member gets a welcome with its new nick, and its later messages carry that nick.
#[tokio::test]
async fn a_rename_is_announced_and_later_messages_carry_the_new_nick() {
    let server = TestServer::start();
    let (mut alice, mut bob) = alice_and_bob(&server, "rename").await;
    bob.send_text(r#"{"type":"join","room":"rename","nick":"robert"}"#).await;
    let (nick, members) = renamed(&mut bob).await;
    assert_eq!(nick, "robert");
    assert!(members.contains(&"robert".to_owned()) && !members.contains(&"bob".to_owned()));
    assert_eq!(alice.left().await, "bob");
    match alice.recv().await {
        ServerMessage::Joined { nick, .. } => assert_eq!(nick, "robert"),
        other => panic!("expected robert to join, got {other:?}"),
    }
    bob.say("renamed").await;
    assert_eq!(alice.message().await.from, "robert");
}

/// Renames within `--rename-interval` are refused with `rate_limited` and a retry hint, and
/// the member keeps the nick of its one accepted rename.
#[tokio::test]
async fn renames_within_the_interval_are_refused() {
    let server = TestServer::start();
    let (mut alice, mut bob) = alice_and_bob(&server, "noise").await;
    bob.send_text(r#"{"type":"join","room":"noise","nick":"bob2"}"#).await;
    let (nick, _) = renamed(&mut bob).await;
    assert_eq!(nick, "bob2");
    for i in 3..13 {
        bob.send_text(&format!(r#"{{"type":"join","room":"noise","nick":"bob{i}"}}"#)).await;
        match bob.recv().await {
            ServerMessage::Error { code: ErrorCode::RateLimited, retry_after_ms, .. } => {
                assert!(retry_after_ms.is_some_and(|ms| ms <= 2_000), "{retry_after_ms:?}");
            }
            other => panic!("expected a refused rename, got {other:?}"),
        }
    }
    bob.say("the end").await;
    // Still named as after the one rename.
    let noise = until_the_end(&mut alice, "bob2").await;
    let presence = noise
        .iter()
        .filter(|m| matches!(m, ServerMessage::Joined { .. } | ServerMessage::Left { .. }));
    assert_eq!(presence.count(), 2, "one rename, announced as a leave and a join: {noise:?}");
}

/// Alice, then Bob, in `room`; Alice has seen Bob join.
async fn alice_and_bob(server: &TestServer, room: &str) -> (Client, Client) {
    let (mut alice, _) = server.join(room, "alice").await;
    let (bob, _) = server.join(room, "bob").await;
    alice.recv().await; // bob joined
    (alice, bob)
}

/// The nick and members of the welcome a rename answers with (after the room's notice of the
/// old nick leaving, which the renamed member sees too).
async fn renamed(client: &mut Client) -> (String, Vec<String>) {
    client
        .recv_until(|m| match m {
            ServerMessage::Welcome { nick, members, .. } => Some((nick, members)),
            _ => None,
        })
        .await
}

/// Everything `client` receives before the message "the end", which must come from `from`.
async fn until_the_end(client: &mut Client, from: &str) -> Vec<ServerMessage> {
    let mut noise = Vec::new();
    loop {
        match client.recv().await {
            ServerMessage::Message(message) if message.text == "the end" => {
                assert_eq!(message.from, from);
                return noise;
            }
            other => noise.push(other),
        }
    }
}

/// Hopping between rooms (a new member in each, so no rename to throttle) is limited per
/// connection: a burst of as many joins as the rooms one connection may be in and 10 more
/// (30), then one per `--rename-interval`, refused with `rate_limited` and a retry hint. (Someone stays in
/// each room, so the hops open no rooms, which are limited on their own.)
#[tokio::test]
async fn room_hopping_is_throttled() {
    let server = TestServer::start();
    let _stay_a = server.join("hop-a", "stay-a").await;
    let _stay_b = server.join("hop-b", "stay-b").await;
    let (mut hopper, _) = server.join("hop-a", "hopper").await; // the connect URL's join is free
    let burst = server::session::join_burst(server::config::DEFAULT_MAX_ROOMS_PER_CONNECTION).get();
    let burst = usize::try_from(burst).expect("a small number");
    let (mut welcomed, mut refused) = (0, 0);
    for i in 0..burst + 10 {
        let room = if i % 2 == 0 { "hop-b" } else { "hop-a" };
        hopper.send_text(&format!(r#"{{"type":"join","room":"{room}"}}"#)).await;
        loop {
            match hopper.recv().await {
                ServerMessage::Welcome { .. } => welcomed += 1,
                ServerMessage::Error { code: ErrorCode::RateLimited, retry_after_ms, .. } => {
                    assert!(retry_after_ms.is_some_and(|ms| ms <= 2_000), "{retry_after_ms:?}");
                    refused += 1;
                }
                _ => continue,
            }
            break;
        }
    }
    assert_eq!((welcomed, refused), (burst, 10));
}
