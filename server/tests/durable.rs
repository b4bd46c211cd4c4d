//! The message store, against the real binary: what was acknowledged survives `kill -9`, ids
//! continue after a restart, repeats are still recognised, the room list comes back, and
//! retention applies to what is stored.

mod common;

use common::{Running, Ws, connect, next};
use protocol::{MessageId, ServerMessage};

fn send(ws: &mut Ws, text: &str, client_id: &str) {
    let frame = serde_json::json!({"type": "send", "text": text, "client_id": client_id});
    ws.send(tungstenite::Message::text(frame.to_string())).expect("sent");
}

/// The id the server acknowledged `client_id` with (skipping anything else).
fn ack(ws: &mut Ws, client_id: &str) -> MessageId {
    loop {
        if let ServerMessage::Ack { client_id: acked, id, .. } = next(ws)
            && acked == client_id
        {
            return id;
        }
    }
}

fn welcome(ws: &mut Ws) -> (Vec<(MessageId, String)>, bool) {
    match next(ws) {
        ServerMessage::Welcome { history, truncated, .. } => {
            (history.into_iter().map(|m| (m.id, m.text)).collect(), truncated)
        }
        other => panic!("expected a welcome, got {other:?}"),
    }
}

/// Acknowledged messages survive SIGKILL with their ids, in both sync modes; the next id is higher than any
/// before; a retry of an acknowledged client id is acknowledged again, not stored again; the
/// rooms are listed again.
#[test]
fn acknowledged_messages_survive_kill_9() {
    for sync in ["full", "normal"] {
        survives_kill_9(sync);
    }
}

fn survives_kill_9(sync: &str) {
    let data = tempfile::tempdir().expect("temporary data directory");
    let mut acked = Vec::new();
    {
        let server = Running::start_storing(data.path(), &["--port", "0", "--sync", sync]);
        let address = server.address();
        let mut alice = connect(&address, "room=keep&nick=alice");
        welcome(&mut alice);
        for i in 0..5 {
            let client_id = format!("k{i}");
            send(&mut alice, &format!("kept {i}"), &client_id);
            acked.push((ack(&mut alice, &client_id), format!("kept {i}")));
        }
        let mut bob = connect(&address, "room=side&nick=bob");
        welcome(&mut bob);
        send(&mut bob, "elsewhere", "s0");
        ack(&mut bob, "s0");
        // `server` drops here: SIGKILL, no chance to flush anything.
    }
    let server = Running::start_storing(data.path(), &["--port", "0", "--sync", sync]);
    let address = server.address();
    // Alice again, as her client would come back: a retry is recognised per sender.
    let mut alice_again = connect(&address, "room=keep&nick=alice&since=0");
    let (history, truncated) = welcome(&mut alice_again);
    assert_eq!(history, acked, "every acknowledged message, same ids, in order");
    assert!(!truncated);

    send(&mut alice_again, "kept 2", "k2");
    assert_eq!(ack(&mut alice_again, "k2"), acked[2].0, "a retry after the restart is recognised");
    send(&mut alice_again, "new", "n0");
    let new = ack(&mut alice_again, "n0");
    assert!(new > acked[4].0, "ids continue after the restart: {new}");

    alice_again.send(tungstenite::Message::text(r#"{"type":"list_rooms"}"#)).expect("sent");
    let rooms = loop {
        if let ServerMessage::Rooms { rooms } = next(&mut alice_again) {
            break rooms;
        }
    };
    let names: Vec<(&str, u32)> = rooms.iter().map(|r| (r.name.as_str(), r.members)).collect();
    assert_eq!(names, [("keep", 1), ("side", 0)], "the quiet room is listed again");
}

/// Retention bounds what is stored: after a restart with a smaller bound, only the newest
/// messages come back, and the catch-up says older ones are gone.
#[test]
fn retention_bounds_the_stored_history() {
    let data = tempfile::tempdir().expect("temporary data directory");
    let mut ids = Vec::new();
    {
        let server =
            Running::start_storing(data.path(), &["--port", "0", "--retain-messages", "4"]);
        let mut alice = connect(&server.address(), "room=small&nick=alice");
        welcome(&mut alice);
        for i in 0..12 {
            let client_id = format!("r{i}");
            send(&mut alice, &format!("m{i}"), &client_id);
            ids.push(ack(&mut alice, &client_id));
        }
    }
    let server = Running::start_storing(data.path(), &["--port", "0", "--retain-messages", "4"]);
    let mut bob = connect(&server.address(), &format!("room=small&nick=bob&since={}", ids[0]));
    let (history, truncated) = welcome(&mut bob);
    let got: Vec<MessageId> = history.iter().map(|(id, _)| *id).collect();
    assert_eq!(got, ids[8..], "the newest four");
    assert!(truncated, "messages after `since` were deleted");
}

/// Messages older than `--retain-for` disappear from the catch-up at once and from the database
/// within a sweep, even while nothing else is written; the room then reports what it lost.
#[test]
fn old_messages_expire_by_age() {
    let data = tempfile::tempdir().expect("temporary data directory");
    let server = Running::start_storing(data.path(), &["--port", "0", "--retain-for", "1s"]);
    let address = server.address();
    let mut alice = connect(&address, "room=brief&nick=alice");
    welcome(&mut alice);
    send(&mut alice, "short-lived", "e0");
    let id = ack(&mut alice, "e0");

    let database = rusqlite::Connection::open(data.path().join("chat.sqlite3")).expect("open");
    let stored = || -> i64 {
        database.query_row("SELECT COUNT(*) FROM messages", [], |row| row.get(0)).expect("count")
    };
    assert_eq!(stored(), 1);
    let deadline = std::time::Instant::now() + common::DEADLINE;
    while stored() > 0 {
        assert!(std::time::Instant::now() < deadline, "the message was never deleted");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let mut bob = connect(&address, "room=brief&nick=bob&since=0");
    let (history, truncated) = welcome(&mut bob);
    assert!(history.is_empty(), "expired: {history:?}");
    assert!(truncated, "message {id} was lost to retention");
}

/// A room whose history cannot be loaded refuses joins with `unavailable` instead of opening
/// empty (which would tell a resuming client that nothing was said, and forget which client
/// ids were stored); once the store works again, the next join loads everything, and repeats
/// are still recognised.
#[test]
fn a_failed_history_load_refuses_joins_until_it_works() {
    let data = tempfile::tempdir().expect("temporary data directory");
    let server = Running::start_storing(data.path(), &["--port", "0"]);
    let address = server.address();
    let mut alice = connect(&address, "room=vault&nick=alice");
    welcome(&mut alice);
    let mut acked = Vec::new();
    for i in 0..3 {
        send(&mut alice, &format!("m{i}"), &format!("v{i}"));
        acked.push((ack(&mut alice, &format!("v{i}")), format!("m{i}")));
    }
    alice.close(None).expect("close sent");
    let deadline = std::time::Instant::now() + common::DEADLINE;
    while !common::get(&address, "/metrics").contains("\nchat_rooms 0\n") {
        assert!(std::time::Instant::now() < deadline, "the room never closed");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }

    // The store breaks: its messages table is gone (as after a corrupted or unreadable file).
    let database = rusqlite::Connection::open(data.path().join("chat.sqlite3")).expect("open");
    database.execute_batch("ALTER TABLE messages RENAME TO hidden").expect("hide the table");
    let mut bob = connect(&address, "room=vault&nick=bob&since=0");
    match next(&mut bob) {
        ServerMessage::Error { code, .. } => assert_eq!(code, protocol::ErrorCode::Unavailable),
        other => panic!("expected unavailable, got {other:?}"),
    }

    database.execute_batch("ALTER TABLE hidden RENAME TO messages").expect("restore the table");
    bob.send(tungstenite::Message::text(r#"{"type":"join","room":"vault","since":0}"#))
        .expect("sent");
    let (history, _) = welcome(&mut bob);
    assert_eq!(history, acked, "everything, once the store works again");
    let mut alice = connect(&address, "room=vault&nick=alice");
    welcome(&mut alice);
    send(&mut alice, "m1", "v1");
    assert_eq!(ack(&mut alice, "v1"), acked[1].0, "repeats are still recognised");
}

/// The answer to the `send` with `client_id`: its id once stored, or the error code it was
/// refused with (skipping everything else).
fn answer(ws: &mut Ws, client_id: &str) -> Result<MessageId, protocol::ErrorCode> {
    loop {
        match next(ws) {
            ServerMessage::Ack { client_id: acked, id, .. } if acked == client_id => return Ok(id),
            ServerMessage::Error { code, client_id: Some(refused), .. } if refused == client_id => {
                return Err(code);
            }
            _ => {}
        }
    }
}

/// A full disk refuses sends with `unavailable` (nothing is acknowledged that is not stored),
/// keeps serving what is stored (catch-up, the room list), and recovers by itself once space
/// returns: the refused message, sent again with its client id, is stored once.
#[test]
fn a_full_disk_refuses_sends_serves_reads_and_recovers() {
    let data = tempfile::tempdir().expect("temporary data directory");
    let server = Running::start_with_small_disk(data.path(), &["--port", "0"], 512);
    let address = server.address();
    let mut alice = connect(&address, "room=disk&nick=alice");
    welcome(&mut alice);
    let text = "x".repeat(4_000);
    let mut stored = Vec::new();
    let (refused, code) = (0..1_000)
        .find_map(|i| {
            let client_id = format!("d{i}");
            send(&mut alice, &format!("{i} {text}"), &client_id);
            match answer(&mut alice, &client_id) {
                Ok(id) => {
                    stored.push(id);
                    None
                }
                Err(code) => Some((i, code)),
            }
        })
        .expect("the disk filled up");
    assert_eq!(code, protocol::ErrorCode::Unavailable);
    assert!(!stored.is_empty(), "something was stored before the disk filled");

    let mut carol = connect(&address, &format!("room=disk&nick=carol&since={}", stored[0]));
    let (history, _) = welcome(&mut carol);
    let ids: Vec<MessageId> = history.iter().map(|(id, _)| *id).collect();
    assert!(!ids.is_empty() && stored[1..].starts_with(&ids), "reads go on: {ids:?}");
    carol.send(tungstenite::Message::text(r#"{"type":"list_rooms"}"#)).expect("sent");
    while !matches!(next(&mut carol), ServerMessage::Rooms { .. }) {}

    let lifted = std::process::Command::new("prlimit")
        .args(["--pid", &server.pid().to_string(), "--fsize=unlimited"])
        .status()
        .expect("prlimit runs");
    assert!(lifted.success(), "the file size limit was lifted");
    let client_id = format!("d{refused}");
    let deadline = std::time::Instant::now() + common::DEADLINE;
    let id = loop {
        send(&mut alice, &format!("{refused} {text}"), &client_id);
        match answer(&mut alice, &client_id) {
            Ok(id) => break id,
            Err(code) => assert_eq!(code, protocol::ErrorCode::Unavailable),
        }
        assert!(std::time::Instant::now() < deadline, "the store never recovered");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(id > *stored.last().expect("stored"), "stored after the others");
    let relayed = loop {
        if let ServerMessage::Message(message) = next(&mut carol) {
            break message;
        }
    };
    assert_eq!((relayed.id, relayed.text), (id, format!("{refused} {text}")), "once, to the room");
}
