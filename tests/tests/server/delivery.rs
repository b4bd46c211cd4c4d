//! Delivery guarantees at the protocol level: acknowledgements, repeated client ids, and
//! catching up after a reconnect with `since`. (Surviving a crash is tested against the binary,
//! in `server/tests/durable.rs`, and under chaos in `tests/tests/chaos`.)

use protocol::{ErrorCode, ServerMessage};

use crate::util::{Client, TestServer, config};

/// A message with a client id is acknowledged to its sender, before the room sees it, with the
/// id the room then relays it under; without a client id there is no acknowledgement.
#[tokio::test]
async fn sender_gets_an_ack_before_the_message() {
    let server = TestServer::start();
    let (mut alice, _) = server.join("acks", "alice").await;
    let (mut bob, _) = server.join("acks", "bob").await;
    alice.say_with_id("hello", "c-1").await;
    let first = alice
        .recv_until(|m| {
            matches!(m, ServerMessage::Ack { .. } | ServerMessage::Message(_)).then_some(m)
        })
        .await;
    match first {
        ServerMessage::Ack { client_id, id, room } => {
            assert_eq!((client_id.as_str(), room.as_str()), ("c-1", "acks"));
            let relayed = alice.message().await;
            assert_eq!((relayed.id, relayed.text.as_str()), (id, "hello"));
            assert_eq!(bob.message().await.id, id, "bob sees the acknowledged id");
        }
        other => panic!("expected the ack first, got {other:?}"),
    }
    alice.say("no id").await;
    match alice.recv().await {
        ServerMessage::Message(message) => assert_eq!(message.text, "no id"),
        other => panic!("no ack without a client id, got {other:?}"),
    }
}

/// A repeated client id is acknowledged again with the original id and never stored or relayed
/// twice, even from another connection of the same user.
#[tokio::test]
async fn repeated_client_ids_are_stored_once() {
    let server = TestServer::start();
    let (mut alice, _) = server.join("dedupe", "alice").await;
    let (mut bob, _) = server.join("dedupe", "bob").await;
    alice.say_with_id("once", "same").await;
    let (_, first) = alice.ack().await;
    alice.say_with_id("once", "same").await;
    assert_eq!(alice.ack().await, ("same".to_owned(), first), "acknowledged again, same id");

    // A reconnect retrying it (the ack was lost with the old connection).
    alice.abort();
    let (mut again, _) = server.join("dedupe", "alice").await;
    again.say_with_id("once", "same").await;
    assert_eq!(again.ack().await.1, first);

    again.say_with_id("next", "other").await;
    let (_, next) = again.ack().await;
    assert!(next > first);
    assert_eq!(bob.message().await.id, first);
    let after = bob.message().await;
    assert_eq!((after.id, after.text.as_str()), (next, "next"), "no second copy of `once`");
    let (_, late) = server.join("dedupe", "carol").await;
    let texts: Vec<&str> = late.history.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["once", "next"]);
}

/// A client id names a message together with its sender: another user who happens to use the
/// same client id (a naive client counting from 1, say) gets a message of its own, not the ack
/// of someone else's.
#[tokio::test]
async fn client_ids_of_different_senders_do_not_collide() {
    let server = TestServer::start();
    let (mut alice, _) = server.join("collide", "alice").await;
    let (mut bob, _) = server.join("collide", "bob").await;
    alice.say_with_id("from alice", "1").await;
    let (_, alices) = alice.ack().await;
    bob.say_with_id("from bob", "1").await;
    let (_, bobs) = bob.ack().await;
    assert_ne!(alices, bobs, "bob's message was stored, not taken for alice's");
    bob.say_with_id("from bob", "1").await;
    assert_eq!(bob.ack().await.1, bobs, "bob's own repeat is still recognised");
    let (_, late) = server.join("collide", "carol").await;
    let texts: Vec<&str> = late.history.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["from alice", "from bob"]);
}

/// A client that reconnects with the last id it saw gets exactly what it missed, then live
/// messages: no gap, no repeat.
#[tokio::test]
async fn reconnect_with_since_gets_exactly_the_missed_messages() {
    let server = TestServer::start();
    let (mut alice, _) = server.join("resume", "alice").await;
    let (mut bob, _) = server.join("resume", "bob").await;
    alice.say("seen").await;
    let seen = bob.message().await.id;
    bob.abort();
    for text in ["missed 1", "missed 2", "missed 3"] {
        alice.say(text).await;
    }
    for _ in 0..3 {
        alice.message().await;
    }
    let mut bob = Client::connect(&server.url(&format!("room=resume&nick=bob&since={seen}"))).await;
    let welcome = bob.welcome().await;
    assert_eq!((welcome.since, welcome.truncated, welcome.more), (Some(seen), false, false));
    let texts: Vec<&str> = welcome.history.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["missed 1", "missed 2", "missed 3"]);
    alice.say("live").await;
    let live = bob.message().await;
    assert_eq!(live.text, "live");
    assert!(live.id > welcome.history[2].id);

    // The same through a `join` on an open connection.
    bob.send_text(&format!(r#"{{"type":"join","room":"resume","since":{}}}"#, live.id)).await;
    let welcome = bob.welcome().await;
    assert_eq!((welcome.since, welcome.history.len()), (Some(live.id), 0));
}

/// Past the retention, the catch-up says that older messages are gone; a `since` the room never
/// reached (another server's ids) gets the recent messages to replace what the client shows.
#[tokio::test]
async fn catchup_beyond_retention_says_so() {
    let mut settings = config();
    settings.storage.retain_messages = 5;
    let server = TestServer::with_config(settings);
    let (mut alice, _) = server.join("short", "alice").await;
    let mut ids = Vec::new();
    for i in 0..10 {
        alice.say(&format!("m{i}")).await;
        ids.push(alice.message().await.id);
    }
    let query = format!("room=short&nick=bob&since={}", ids[1]);
    let mut bob = Client::connect(&server.url(&query)).await;
    let welcome = bob.welcome().await;
    assert_eq!((welcome.since, welcome.truncated), (Some(ids[1]), true), "m2..m4 are gone");
    let got: Vec<u64> = welcome.history.iter().map(|m| m.id).collect();
    assert_eq!(got, ids[5..]);

    let future = ids[9] + 1000;
    let mut carol =
        Client::connect(&server.url(&format!("room=short&nick=carol&since={future}"))).await;
    let welcome = carol.welcome().await;
    assert_eq!((welcome.since, welcome.history.len()), (None, 5));
}

/// A refused send names its client id, so the client can drop it from its outbox.
#[tokio::test]
async fn refusals_name_the_client_id() {
    let server = TestServer::start();
    let (mut alice, _) = server.join("refuse", "alice").await;
    alice.send_text(r#"{"type":"send","text":"   ","client_id":"blank-1"}"#).await;
    match alice.recv().await {
        ServerMessage::Error { code, client_id, .. } => {
            assert_eq!((code, client_id.as_deref()), (ErrorCode::EmptyText, Some("blank-1")));
        }
        other => panic!("expected an error, got {other:?}"),
    }
    alice.send_text(r#"{"type":"send","text":"hi","client_id":"bad id!"}"#).await;
    assert_eq!(alice.error().await, ErrorCode::InvalidMessage);
}

/// The welcome is bounded like every frame: a client resuming far behind gets one page no
/// larger than a quarter of `--max-queued-bytes`, told that more follow, and pages through
/// the rest with `history` `after`: every message once, in order, every page within the bound.
/// Older pages come with `before`, down to the beginning of the room.
#[tokio::test]
async fn catchup_comes_in_bounded_pages() {
    const QUEUED: usize = 64 * 1024;
    let mut settings = config();
    settings.abuse.max_queued_bytes = QUEUED;
    let server = TestServer::with_config(settings);
    let (mut alice, _) = server.join("pages", "alice").await;
    let mut ids = Vec::new();
    for i in 0..60 {
        alice.say(&format!("{i:04} {}", "x".repeat(3_000))).await;
        ids.push(alice.message().await.id);
    }

    let mut bob =
        Client::connect(&server.url(&format!("room=pages&nick=bob&since={}", ids[0]))).await;
    let frame = bob.recv_text().await;
    assert!(frame.len() <= QUEUED / 4, "a welcome of {} bytes", frame.len());
    let ServerMessage::Welcome { mut history, more, since, .. } =
        serde_json::from_str(&frame).expect("a welcome")
    else {
        panic!("expected a welcome, got {frame}")
    };
    assert!(more && !history.is_empty(), "one page of {} and more to come", history.len());
    assert_eq!(since, Some(ids[0]));
    let mut pages = 0;
    loop {
        let after = history.last().map_or(ids[0], |m| m.id);
        bob.send_text(&format!(r#"{{"type":"history","room":"pages","after":{after}}}"#)).await;
        let frame = bob.recv_text().await;
        assert!(frame.len() <= QUEUED / 4, "a page of {} bytes", frame.len());
        let ServerMessage::History { messages, more, after: echoed, .. } =
            serde_json::from_str(&frame).expect("a history page")
        else {
            panic!("expected a history page, got {frame}")
        };
        assert_eq!(echoed, Some(after));
        history.extend(messages);
        pages += 1;
        if !more {
            break;
        }
    }
    let got: Vec<u64> = history.iter().map(|m| m.id).collect();
    assert_eq!(got, ids[1..], "every missed message once, in order ({pages} more pages)");

    // Backwards from the newest: the same messages, then the beginning of the room.
    let mut older: Vec<u64> = Vec::new();
    let mut before: Option<u64> = None;
    loop {
        let bound = before.map_or(String::new(), |id| format!(r#","before":{id}"#));
        bob.send_text(&format!(r#"{{"type":"history","room":"pages","limit":7{bound}}}"#)).await;
        let ServerMessage::History { messages, more, .. } = bob.recv().await else {
            panic!("expected a history page")
        };
        assert!(messages.len() <= 7, "the limit is honoured");
        before = messages.first().map(|m| m.id);
        older.splice(0..0, messages.iter().map(|m| m.id));
        if !more {
            break;
        }
    }
    assert_eq!(older, ids, "back to the first message");

    bob.send_text(r#"{"type":"history","room":"elsewhere"}"#).await;
    assert_eq!(bob.error().await, ErrorCode::NotJoined);
    bob.send_text(r#"{"type":"history","room":"pages","before":5,"after":3}"#).await;
    assert_eq!(bob.error().await, ErrorCode::InvalidMessage);
}

/// A client coming back with a `since` from another history (here: another server whose
/// in-memory store started afresh, as a wiped data folder or a restarted `--ephemeral` server
/// would) gets a `reset` naming the room's epoch, then a welcome that starts over instead of
/// resuming: ids of the two histories are the same numbers for different messages. With the
/// welcome's own epoch it resumes.
#[tokio::test]
async fn a_since_from_another_history_gets_a_reset() {
    use protocol::ServerMessage;
    let first = crate::util::TestServer::start();
    let (mut ann, welcome) = first.join("ep", "ann").await;
    let old_epoch = welcome.epoch;
    assert_eq!(old_epoch.len(), 16, "a welcome names its epoch");
    for i in 0..3 {
        ann.say_with_id(&format!("old {i}"), &format!("k{i}")).await;
        ann.ack().await;
    }

    let second = crate::util::TestServer::start();
    let (mut bob, fresh) = second.join("ep", "bob").await;
    assert_ne!(fresh.epoch, old_epoch, "another store, another epoch");
    for i in 0..5 {
        bob.say_with_id(&format!("new {i}"), &format!("k{i}")).await;
        bob.ack().await;
    }
    let query = format!("room=ep&nick=ann&since=2&epoch={old_epoch}");
    let mut back = crate::util::Client::connect(&second.url(&query)).await;
    match back.recv().await {
        ServerMessage::Reset { room, epoch } => {
            assert_eq!((room, &epoch), ("ep".into(), &fresh.epoch))
        }
        other => panic!("expected a reset, got {other:?}"),
    }
    let welcome = back.welcome().await;
    let texts: Vec<&str> = welcome.history.iter().map(|m| m.text.as_str()).collect();
    assert_eq!((welcome.since, texts.len()), (None, 5), "afresh, not after id 2: {texts:?}");

    let query = format!("room=ep&nick=cy&since=2&epoch={}", fresh.epoch);
    let (_, resumed) = crate::util::Client::join(&second.url(&query)).await;
    assert_eq!((resumed.since, resumed.history.len()), (Some(2), 3), "the same epoch resumes");
}
