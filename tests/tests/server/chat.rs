//! Chatting: delivery, isolation, order, history, presence, nicks and room switching.

use protocol::{ErrorCode, ServerMessage};

use crate::util::{Client, TestServer};

/// Two clients in a room see each other's messages, the sender included, with every field.
#[tokio::test]
async fn two_clients_exchange_messages() {
    let server = TestServer::start();
    let (mut alice, _) = server.join("lobby", "alice").await;
    let (mut bob, _) = server.join("lobby", "bob").await;

    alice.say("hello bob").await;
    for client in [&mut alice, &mut bob] {
        let message = client.message().await;
        assert_eq!((message.room.as_str(), message.from.as_str()), ("lobby", "alice"));
        assert_eq!(message.text, "hello bob");
        assert!(message.ts > 1_600_000_000_000, "ts is Unix milliseconds");
    }
    bob.say("hi alice").await;
    assert_eq!(alice.message().await.text, "hi alice");
    assert_eq!(bob.message().await.from, "bob");
}

/// Messages stay in their room: a member of another room receives none of them.
#[tokio::test]
async fn rooms_are_isolated() {
    let server = TestServer::start();
    let (mut alice, _) = server.join("one", "alice").await;
    let (mut carol, _) = server.join("two", "carol").await;

    alice.say("only for room one").await;
    assert_eq!(alice.message().await.text, "only for room one");
    carol.say("only for room two").await;
    // Carol's first chat message must be her own: nothing from room one got through.
    let first = carol.message().await;
    assert_eq!((first.room.as_str(), first.text.as_str()), ("two", "only for room two"));
}

/// Many messages arrive in the order sent, with strictly increasing ids, for every member.
#[tokio::test]
async fn order_and_ids_are_preserved() {
    let server = TestServer::start();
    let (mut alice, _) = server.join("order", "alice").await;
    let (mut bob, _) = server.join("order", "bob").await;
    for i in 0..200 {
        alice.say(&format!("m{i}")).await;
    }
    for client in [&mut alice, &mut bob] {
        let mut last_id = 0;
        for i in 0..200 {
            let message = client.message().await;
            assert_eq!(message.text, format!("m{i}"));
            assert!(message.id > last_id, "ids strictly increase");
            last_id = message.id;
        }
    }
}

/// A newcomer gets the last `history_len` messages, oldest first, and the history survives
/// the room emptying out.
#[tokio::test]
async fn history_is_replayed_on_join() {
    let server = TestServer::start();
    let (mut alice, welcome) = server.join("hist", "alice").await;
    assert!(welcome.history.is_empty());
    for i in 0..120 {
        alice.say(&format!("h{i}")).await;
    }
    for _ in 0..120 {
        alice.message().await;
    }
    let (bob, welcome) = server.join("hist", "bob").await;
    let texts: Vec<String> = welcome.history.iter().map(|m| m.text.clone()).collect();
    let expected: Vec<String> = (20..120).map(|i| format!("h{i}")).collect();
    assert_eq!(texts, expected, "the last 100 messages, in order");
    assert_eq!((welcome.since, welcome.truncated), (None, true), "20 older ones not sent");

    bob.abort();
    alice.close().await;
    // Everyone left: the room closes, but its history is retained for the next visitor, and
    // the room stays listed, with nobody in it, after the active rooms.
    let (mut watcher, _) = server.join("elsewhere", "watcher").await;
    watcher
        .wait_for_rooms(|rooms| {
            let names: Vec<(&str, u32)> =
                rooms.iter().map(|r| (r.name.as_str(), r.members)).collect();
            names == [("elsewhere", 1), ("hist", 0)]
        })
        .await;
    let mut dave = Client::connect(&server.url("room=hist&nick=dave")).await;
    let welcome = dave.welcome().await;
    assert_eq!(welcome.history.len(), 100);
    assert_eq!(welcome.history.last().map(|m| m.text.as_str()), Some("h119"));
    dave.say("after the break").await;
    let message = dave.message().await;
    assert!(message.id > welcome.history[99].id, "ids keep increasing after the room reopens");
}

/// Members see who is there on joining, and live join and leave notices after that.
#[tokio::test]
async fn presence_and_join_leave_notices() {
    let server = TestServer::start();
    let (mut alice, welcome) = server.join("presence", "alice").await;
    assert_eq!(welcome.members, ["alice"]);

    let (bob, welcome) = server.join("presence", "Bob").await;
    assert_eq!(welcome.members, ["alice", "Bob"]);
    match alice.recv().await {
        ServerMessage::Joined { room, nick, .. } => {
            assert_eq!((room, nick), ("presence".into(), "Bob".into()))
        }
        other => panic!("expected joined, got {other:?}"),
    }
    bob.close().await;
    match alice.recv().await {
        ServerMessage::Left { nick, .. } => assert_eq!(nick, "Bob"),
        other => panic!("expected left, got {other:?}"),
    }
}

/// A nick in use in the room (compared case-insensitively) is refused with `nick_taken`, the
/// connection stays open, and joining under another nick then works. Other rooms are unaffected.
#[tokio::test]
async fn nick_collision_is_refused() {
    let server = TestServer::start();
    let (_alice, _) = server.join("nicks", "alice").await;
    let mut second = Client::connect(&server.url("room=nicks&nick=ALICE")).await;
    assert_eq!(second.error().await, ErrorCode::NickTaken);

    second.say("am I in?").await;
    assert_eq!(second.error().await, ErrorCode::NotJoined);
    second.send_text(r#"{"type":"join","room":"nicks","nick":"alice2"}"#).await;
    let welcome = second.welcome().await;
    assert_eq!(welcome.nick, "alice2");
    assert_eq!(welcome.members, ["alice", "alice2"]);

    let (_, elsewhere) = server.join("other", "alice").await;
    assert_eq!(elsewhere.nick, "alice", "nicks are unique per room only");
}

/// Look-alikes of a nick in the room are the same nick: full width, a Cyrillic letter and a
/// styled letter get `nick_taken`; invisible and direction-changing characters get
/// `invalid_nick`, in the connect URL and in a `join` alike.
#[tokio::test]
async fn look_alike_nicks_are_refused() {
    let server = TestServer::start();
    let (_alice, _) = server.join("spoof", "alice").await;
    let join = |nick: &str| {
        let frame = serde_json::json!({"type": "join", "room": "spoof", "nick": nick});
        frame.to_string()
    };
    let mut spoofer = Client::connect(&server.url("room=lobby&nick=mallory")).await;
    spoofer.welcome().await;
    for taken in ["ａｌｉｃｅ", "\u{430}lice", "ali\u{1D41C}e", "AIice"] {
        spoofer.send_text(&join(taken)).await;
        assert_eq!(spoofer.error().await, ErrorCode::NickTaken, "{taken:?}");
    }
    for invalid in ["alice\u{200B}", "\u{202E}ecila", "\u{3164}"] {
        spoofer.send_text(&join(invalid)).await;
        assert_eq!(spoofer.error().await, ErrorCode::InvalidNick, "{invalid:?}");
    }
    let mut direct = Client::connect(&server.url("room=spoof&nick=%D0%B0lice")).await;
    assert_eq!(direct.error().await, ErrorCode::NickTaken, "Cyrillic а in the connect URL");
}

/// A client that gives no nick gets a generated one, unique in the room.
#[tokio::test]
async fn missing_nick_is_generated() {
    let server = TestServer::start();
    let mut first = Client::connect(&server.url("room=anon")).await;
    let mut second = Client::connect(&server.url("")).await;
    let a = first.welcome().await;
    let b = second.welcome().await;
    assert!(a.nick.starts_with("guest-"), "{}", a.nick);
    assert_eq!(b.room, protocol::DEFAULT_ROOM, "no room means the default room");
    assert_ne!(a.nick, b.nick);
}

/// Switching rooms: the new room welcomes with its history and members, the old room sees a
/// leave, and sends go to the new room. The room list reflects both rooms.
#[tokio::test]
async fn switching_rooms() {
    let server = TestServer::start();
    let (mut alice, _) = server.join("first", "alice").await;
    let (mut bob, _) = server.join("first", "bob").await;
    let (mut carol, _) = server.join("second", "carol").await;
    carol.say("earlier in second").await;
    carol.message().await;
    alice.recv().await; // bob joined

    bob.send_text(r#"{"type":"join","room":"second"}"#).await;
    let welcome = bob.welcome().await;
    assert_eq!((welcome.room.as_str(), welcome.nick.as_str()), ("second", "bob"));
    assert_eq!(welcome.members, ["bob", "carol"]);
    assert_eq!(welcome.history.len(), 1);
    let names: Vec<_> = welcome.rooms.iter().map(|r| (r.name.as_str(), r.members)).collect();
    assert_eq!(names, [("second", 2), ("first", 1)], "busiest first, bob counted once");
    match alice.recv().await {
        ServerMessage::Left { room, nick, .. } => {
            assert_eq!((room, nick), ("first".into(), "bob".into()))
        }
        other => panic!("expected left, got {other:?}"),
    }

    bob.say("hello second").await;
    assert_eq!(carol.message().await.text, "hello second");
    alice.say("anyone in first?").await;
    let own = alice.message().await;
    assert_eq!(own.text, "anyone in first?", "alice got nothing from the second room");

    let rooms = bob.list_rooms().await;
    assert_eq!(rooms.len(), 2);
}

/// A reconnecting tab (same client token, same nick) takes over its seat at once, even before
/// the server noticed the old connection die; the old connection is closed with 4001.
#[tokio::test]
async fn same_client_reconnect_takes_over_nick() {
    let server = TestServer::start();
    let (mut alice, _) = server.join("seat", "alice").await;
    let mut bob_old = Client::connect(&server.url("room=seat&nick=bob&client=tab-1")).await;
    bob_old.welcome().await;
    alice.recv().await; // bob joined

    let mut bob_new = Client::connect(&server.url("room=seat&nick=bob&client=tab-1")).await;
    let welcome = bob_new.welcome().await;
    assert_eq!(welcome.nick, "bob");
    assert_eq!(welcome.members, ["alice", "bob"]);
    assert_eq!(bob_old.close_code().await, protocol::close::REPLACED);

    let mut mallory = Client::connect(&server.url("room=seat&nick=bob&client=other")).await;
    assert_eq!(mallory.error().await, ErrorCode::NickTaken, "another client cannot take it");

    bob_new.say("back").await;
    // Alice saw no leave or join for the takeover: the next thing she gets is the message.
    match alice.recv().await {
        ServerMessage::Message(message) => assert_eq!(message.text, "back"),
        other => panic!("expected bob's message, got {other:?}"),
    }
}

/// A typing notice reaches the other members, not the typist, and is refused before joining.
#[tokio::test]
async fn typing_is_relayed_to_the_others() {
    let server = TestServer::start();
    let (mut alice, _) = server.join("typing", "alice").await;
    let (mut bob, _) = server.join("typing", "bob").await;
    alice.recv().await; // bob joined

    bob.send_text(r#"{"type":"typing"}"#).await;
    match alice.recv().await {
        ServerMessage::Typing { room, nick } => {
            assert_eq!((room, nick), ("typing".into(), "bob".into()))
        }
        other => panic!("expected typing, got {other:?}"),
    }
    bob.say("done typing").await;
    // Bob's next frame is his own message: he was not told about his own typing.
    assert!(matches!(bob.recv().await, ServerMessage::Message(m) if m.text == "done typing"));

    let mut outsider = Client::connect(&server.url("room=bad%20room")).await;
    outsider.error().await;
    outsider.send_text(r#"{"type":"typing"}"#).await;
    assert_eq!(outsider.error().await, ErrorCode::NotJoined);
}
