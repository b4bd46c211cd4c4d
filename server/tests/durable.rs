//! The message store, against the real binary: what was acknowledged survives `kill -9`, ids
//! continue after a restart, repeats are still recognised, the room list comes back, and
//! retention applies to what is stored.

mod common;

use std::time::{Duration, Instant};

use common::Running;
use protocol::{MessageId, ServerMessage};
use testclient::{Client, Message, url};

/// The history of the welcome, as (id, text), and whether it was truncated.
async fn welcome(client: &mut Client) -> (Vec<(MessageId, String)>, bool) {
    let welcome = client.welcome().await;
    (welcome.history.into_iter().map(|m| (m.id, m.text)).collect(), welcome.truncated)
}

/// Acknowledged messages survive SIGKILL with their ids, in both sync modes; the next id is higher than any
/// before; a retry of an acknowledged client id is acknowledged again, not stored again; the
/// rooms are listed again.
#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_messages_survive_kill_9() {
    for sync in ["full", "normal"] {
        survives_kill_9(sync).await;
    }
}

async fn survives_kill_9(sync: &str) {
    let data = tempfile::tempdir().expect("temporary data directory");
    let mut acked = Vec::new();
    {
        let server = Running::start_storing(data.path(), &["--port", "0", "--sync", sync]);
        let address = server.address();
        let mut alice = Client::connect(&url(&address, "room=keep&nick=alice")).await;
        welcome(&mut alice).await;
        for i in 0..5 {
            let client_id = format!("k{i}");
            alice.say_with_id(&format!("kept {i}"), &client_id).await;
            acked.push((alice.ack_of(&client_id).await, format!("kept {i}")));
        }
        let mut bob = Client::connect(&url(&address, "room=side&nick=bob")).await;
        welcome(&mut bob).await;
        bob.say_with_id("elsewhere", "s0").await;
        bob.ack_of("s0").await;
        // `server` drops here: SIGKILL, no chance to flush anything.
    }
    let server = Running::start_storing(data.path(), &["--port", "0", "--sync", sync]);
    let address = server.address();
    // Alice again, as her client would come back: a retry is recognised per sender.
    let mut alice_again = Client::connect(&url(&address, "room=keep&nick=alice&since=0")).await;
    let (history, truncated) = welcome(&mut alice_again).await;
    assert_eq!(history, acked, "every acknowledged message, same ids, in order");
    assert!(!truncated);

    alice_again.say_with_id("kept 2", "k2").await;
    assert_eq!(
        alice_again.ack_of("k2").await,
        acked[2].0,
        "a retry after the restart is recognised"
    );
    alice_again.say_with_id("new", "n0").await;
    let new = alice_again.ack_of("n0").await;
    assert!(new > acked[4].0, "ids continue after the restart: {new}");

    let rooms = alice_again.list_rooms().await;
    let names: Vec<(&str, u32)> = rooms.iter().map(|r| (r.name.as_str(), r.members)).collect();
    assert_eq!(names, [("keep", 1), ("side", 0)], "the quiet room is listed again");
}

/// Retention bounds what is stored: after a restart with a smaller bound, only the newest
/// messages come back, and the catch-up says older ones are gone.
#[tokio::test(flavor = "multi_thread")]
async fn retention_bounds_the_stored_history() {
    let data = tempfile::tempdir().expect("temporary data directory");
    let mut ids = Vec::new();
    {
        let server =
            Running::start_storing(data.path(), &["--port", "0", "--retain-messages", "4"]);
        let mut alice = Client::connect(&url(server.address(), "room=small&nick=alice")).await;
        welcome(&mut alice).await;
        for i in 0..12 {
            let client_id = format!("r{i}");
            alice.say_with_id(&format!("m{i}"), &client_id).await;
            ids.push(alice.ack_of(&client_id).await);
        }
    }
    let server = Running::start_storing(data.path(), &["--port", "0", "--retain-messages", "4"]);
    let mut bob =
        Client::connect(&url(server.address(), &format!("room=small&nick=bob&since={}", ids[0])))
            .await;
    let (history, truncated) = welcome(&mut bob).await;
    let got: Vec<MessageId> = history.iter().map(|(id, _)| *id).collect();
    assert_eq!(got, ids[8..], "the newest four");
    assert!(truncated, "messages after `since` were deleted");
}

/// Messages older than `--retain-for` disappear from the catch-up at once and from the database
/// within a sweep, even while nothing else is written; the room then reports what it lost.
#[tokio::test(flavor = "multi_thread")]
async fn old_messages_expire_by_age() {
    let data = tempfile::tempdir().expect("temporary data directory");
    let server = Running::start_storing(data.path(), &["--port", "0", "--retain-for", "1s"]);
    let address = server.address();
    let mut alice = Client::connect(&url(&address, "room=brief&nick=alice")).await;
    welcome(&mut alice).await;
    alice.say_with_id("short-lived", "e0").await;
    let id = alice.ack_of("e0").await;

    let database = rusqlite::Connection::open(data.path().join("chat.sqlite3")).expect("open");
    let stored = || -> i64 {
        database.query_row("SELECT COUNT(*) FROM messages", [], |row| row.get(0)).expect("count")
    };
    assert_eq!(stored(), 1);
    let deadline = Instant::now() + common::DEADLINE;
    while stored() > 0 {
        assert!(Instant::now() < deadline, "the message was never deleted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut bob = Client::connect(&url(&address, "room=brief&nick=bob&since=0")).await;
    let (history, truncated) = welcome(&mut bob).await;
    assert!(history.is_empty(), "expired: {history:?}");
    assert!(truncated, "message {id} was lost to retention");
}

/// A room whose history cannot be loaded refuses joins with `unavailable` instead of opening
/// empty (which would tell a resuming client that nothing was said, and forget which client
/// ids were stored); once the store works again, the next join loads everything, and repeats
/// are still recognised.
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_history_load_refuses_joins_until_it_works() {
    let data = tempfile::tempdir().expect("temporary data directory");
    let server = Running::start_storing(data.path(), &["--port", "0"]);
    let address = server.address();
    let mut alice = Client::connect(&url(&address, "room=vault&nick=alice")).await;
    welcome(&mut alice).await;
    let mut acked = Vec::new();
    for i in 0..3 {
        alice.say_with_id(&format!("m{i}"), &format!("v{i}")).await;
        acked.push((alice.ack_of(&format!("v{i}")).await, format!("m{i}")));
    }
    alice.send_raw(Message::Close(None)).await;
    let deadline = Instant::now() + common::DEADLINE;
    while !common::get(&address, "/metrics").contains("\nchat_rooms 0\n") {
        assert!(Instant::now() < deadline, "the room never closed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The store breaks: its messages table is gone (as after a corrupted or unreadable file).
    let database = rusqlite::Connection::open(data.path().join("chat.sqlite3")).expect("open");
    database.execute_batch("ALTER TABLE messages RENAME TO hidden").expect("hide the table");
    let mut bob = Client::connect(&url(&address, "room=vault&nick=bob&since=0")).await;
    match bob.recv().await {
        ServerMessage::Error { code, .. } => assert_eq!(code, protocol::ErrorCode::Unavailable),
        other => panic!("expected unavailable, got {other:?}"),
    }

    database.execute_batch("ALTER TABLE hidden RENAME TO messages").expect("restore the table");
    bob.send_text(r#"{"type":"join","room":"vault","since":0}"#).await;
    let (history, _) = welcome(&mut bob).await;
    assert_eq!(history, acked, "everything, once the store works again");
    let mut alice = Client::connect(&url(&address, "room=vault&nick=alice")).await;
    welcome(&mut alice).await;
    alice.say_with_id("m1", "v1").await;
    assert_eq!(alice.ack_of("v1").await, acked[1].0, "repeats are still recognised");
}

/// The answer to the `send` with `client_id`: its id once stored, or the error code it was
/// refused with (skipping everything else).
async fn answer(client: &mut Client, client_id: &str) -> Result<MessageId, protocol::ErrorCode> {
    client
        .recv_until(|m| match m {
            ServerMessage::Ack { client_id: acked, id, .. } if acked == client_id => Some(Ok(id)),
            ServerMessage::Error { code, client_id: Some(refused), .. } if refused == client_id => {
                Some(Err(code))
            }
            _ => None,
        })
        .await
}

/// A full disk refuses sends with `unavailable` (nothing is acknowledged that is not stored),
/// keeps serving what is stored (catch-up, the room list), and recovers by itself once space
/// returns: the refused message, sent again with its client id, is stored once.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_refuses_sends_serves_reads_and_recovers() {
    let data = tempfile::tempdir().expect("temporary data directory");
    let server = Running::start_with_small_disk(data.path(), &["--port", "0"], 512);
    let address = server.address();
    let mut alice = Client::connect(&url(&address, "room=disk&nick=alice")).await;
    welcome(&mut alice).await;
    let text = "x".repeat(4_000);
    let mut stored = Vec::new();
    let mut full = None;
    for i in 0..1_000 {
        let client_id = format!("d{i}");
        alice.say_with_id(&format!("{i} {text}"), &client_id).await;
        match answer(&mut alice, &client_id).await {
            Ok(id) => stored.push(id),
            Err(code) => {
                full = Some((i, code));
                break;
            }
        }
    }
    let (refused, code) = full.expect("the disk filled up");
    assert_eq!(code, protocol::ErrorCode::Unavailable);
    assert!(!stored.is_empty(), "something was stored before the disk filled");

    let mut carol =
        Client::connect(&url(&address, &format!("room=disk&nick=carol&since={}", stored[0]))).await;
    let (history, _) = welcome(&mut carol).await;
    let ids: Vec<MessageId> = history.iter().map(|(id, _)| *id).collect();
    assert!(!ids.is_empty() && stored[1..].starts_with(&ids), "reads go on: {ids:?}");
    carol.list_rooms().await;

    let lifted = std::process::Command::new("prlimit")
        .args(["--pid", &server.pid().to_string(), "--fsize=unlimited"])
        .status()
        .expect("prlimit runs");
    assert!(lifted.success(), "the file size limit was lifted");
    let client_id = format!("d{refused}");
    let deadline = Instant::now() + common::DEADLINE;
    let id = loop {
        alice.say_with_id(&format!("{refused} {text}"), &client_id).await;
        match answer(&mut alice, &client_id).await {
            Ok(id) => break id,
            Err(code) => assert_eq!(code, protocol::ErrorCode::Unavailable),
        }
        assert!(Instant::now() < deadline, "the store never recovered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(id > *stored.last().expect("stored"), "stored after the others");
    let relayed = carol.message().await;
    assert_eq!((relayed.id, relayed.text), (id, format!("{refused} {text}")), "once, to the room");
}
