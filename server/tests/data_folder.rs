//! The data folder across releases and operations, against the real binary: a folder written
//! by an older schema is upgraded in place with nothing lost, a newer one is refused, a clean
//! stop leaves the database in one file, and `server backup` takes a copy while the server
//! runs that a server can be restored from.

mod common;

use std::path::Path;
use std::process::Command;

use common::Running;
use protocol::{ChatMessage, MessageId};
use testclient::{Client, url};

const DATABASE: &str = "chat.sqlite3";

/// A copy of the fixture `schema-N` (see `tests/fixtures/README.md`) in a new data folder.
fn data_folder_from(fixture: &str) -> tempfile::TempDir {
    let data = tempfile::tempdir().expect("temporary data directory");
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(fixture);
    std::fs::copy(source.join(DATABASE), data.path().join(DATABASE)).expect("fixture copied");
    data
}

/// Joins `room` as `nick` asking for everything since the start; returns the client and the
/// welcome's history (the fixture's rooms are small enough to fit in one page).
async fn join_from_start(address: &str, room: &str, nick: &str) -> (Client, Vec<ChatMessage>) {
    let query = format!("room={room}&nick={nick}&since=0");
    let (client, welcome) = Client::join(&url(address, &query)).await;
    assert!(!welcome.more && !welcome.truncated, "all of {room} in the welcome");
    (client, welcome.history)
}

/// Sends `text` with `client_id` and returns the id it was acknowledged with.
async fn send(client: &mut Client, text: &str, client_id: &str) -> MessageId {
    client.say_with_id(text, client_id).await;
    let (acked, id) = client.ack().await;
    assert_eq!(acked, client_id);
    id
}

fn summary(history: &[ChatMessage]) -> Vec<(MessageId, &str, &str)> {
    history.iter().map(|m| (m.id, m.from.as_str(), m.text.as_str())).collect()
}

/// A data folder written by schema 1 (the first durable release): every room's history comes
/// back with its ids, senders and texts; a client id sent before the upgrade is still
/// recognised (acknowledged with its old id, not stored again); new ids continue after the
/// old ones.
#[tokio::test(flavor = "multi_thread")]
async fn a_schema_1_data_folder_is_upgraded_with_nothing_lost() {
    let data = data_folder_from("schema-1");
    let server = Running::start_storing(data.path(), &["--port", "0"]);
    let address = server.address();
    let (_, lobby) = join_from_start(&address, "lobby", "reader").await;
    assert_eq!(
        summary(&lobby),
        [
            (1, "alice", "hello, lobby"),
            (3, "zoë", "naïve café ☕"),
            (6, "bob", "hi alice"),
            (9, "alice", "<b>not bold</b> & co"),
            (12, "zoë", "bye"),
        ]
    );
    let (_, ops) = join_from_start(&address, "ops", "reader").await;
    assert_eq!(
        summary(&ops),
        [
            (2, "bob", "deploy at 10"),
            (5, "alice", "line one\nline two"),
            (8, "bob", "done"),
            (11, "zoë", "👍"),
        ]
    );
    let (mut carol, quotes) = join_from_start(&address, "quotes", "carol").await;
    assert_eq!(quotes.iter().map(|m| m.id).collect::<Vec<_>>(), [4, 7, 10]);

    assert_eq!(send(&mut carol, "ACME 101.25", "c-1").await, 4, "a retry from before the upgrade");
    assert_eq!(send(&mut carol, "ACME 99.00", "c-4").await, 13, "ids continue");
    let (_, quotes) = join_from_start(&address, "quotes", "reader").await;
    assert_eq!(quotes.iter().map(|m| m.id).collect::<Vec<_>>(), [4, 7, 10, 13]);
}

/// A data folder whose schema is newer than the server knows (written by a later release) is
/// refused at start with a message that says so, and left as it was.
#[test]
fn a_newer_schema_is_refused_at_start() {
    let data = data_folder_from("schema-1");
    let file = data.path().join(DATABASE);
    let set_version = |version: i64| {
        let connection = rusqlite::Connection::open(&file).expect("opens");
        connection.pragma_update(None, "user_version", version).expect("version set");
    };
    set_version(999);
    let mut server = Running::start_storing(data.path(), &["--port", "0"]);
    let exit = server.exit_status();
    assert!(!exit.success(), "exit status {exit}");
    let log = server.log_lines().join("\n");
    assert!(log.contains("schema version 999, newer than this server knows"), "{log}");
    let connection = rusqlite::Connection::open(&file).expect("opens");
    let version: i64 =
        connection.pragma_query_value(None, "user_version", |row| row.get(0)).expect("version");
    assert_eq!(version, 999, "left as it was");
}

/// After SIGTERM the database file alone holds every acknowledged message: no write-ahead log
/// is left beside it, and a server given only that file serves them.
#[tokio::test(flavor = "multi_thread")]
async fn a_clean_stop_leaves_the_database_in_one_file() {
    let data = tempfile::tempdir().expect("temporary data directory");
    let mut server = Running::start_storing(data.path(), &["--port", "0"]);
    let address = server.address();
    let (mut alice, _) = Client::join(&url(&address, "room=stop&nick=alice")).await;
    let id = send(&mut alice, "before the stop", "s-1").await;
    assert!(server.terminate().success());
    let files: Vec<String> = std::fs::read_dir(data.path())
        .expect("lists")
        .map(|entry| entry.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(DATABASE))
        .collect();
    assert_eq!(files, [DATABASE], "nothing beside the database");

    let moved = tempfile::tempdir().expect("temporary data directory");
    std::fs::copy(data.path().join(DATABASE), moved.path().join(DATABASE)).expect("copied");
    let server = Running::start_storing(moved.path(), &["--port", "0"]);
    let (_, history) = join_from_start(&server.address(), "stop", "reader").await;
    assert_eq!(summary(&history), [(id, "alice", "before the stop")]);
}

/// `server backup FILE` copies the database while the server runs and writes to it; a server
/// started on the copy alone (the documented restore) serves the same history and gives ids
/// after the copied ones.
#[tokio::test(flavor = "multi_thread")]
async fn a_backup_taken_while_running_restores() {
    let data = tempfile::tempdir().expect("temporary data directory");
    let server = Running::start_storing(data.path(), &["--port", "0"]);
    let address = server.address();
    let (mut alice, _) = Client::join(&url(&address, "room=kept&nick=alice")).await;
    let (mut bob, _) = Client::join(&url(&address, "room=other&nick=bob")).await;
    let first = send(&mut alice, "one", "k-1").await;
    let second = send(&mut bob, "two", "k-2").await;
    let third = send(&mut alice, "three", "k-3").await;

    let backups = tempfile::tempdir().expect("temporary directory");
    let copy = backups.path().join("chat-backup.sqlite3");
    let output = Command::new(env!("CARGO_BIN_EXE_server"))
        .arg("backup")
        .arg(&copy)
        .arg("--data-dir")
        .arg(data.path())
        .output()
        .expect("backup runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        stdout.contains(&format!("backed up 3 messages in 2 rooms (last id {third})")),
        "{stdout}"
    );
    // Written after the copy: not in it.
    send(&mut alice, "after the backup", "k-4").await;
    drop(server);

    let restored = tempfile::tempdir().expect("temporary data directory");
    std::fs::copy(&copy, restored.path().join(DATABASE)).expect("restored");
    let server = Running::start_storing(restored.path(), &["--port", "0"]);
    let address = server.address();
    let (mut alice, kept) = join_from_start(&address, "kept", "alice").await;
    assert_eq!(summary(&kept), [(first, "alice", "one"), (third, "alice", "three")]);
    let (_, other) = join_from_start(&address, "other", "reader").await;
    assert_eq!(summary(&other), [(second, "bob", "two")]);
    assert_eq!(send(&mut alice, "one", "k-1").await, first, "client ids restored too");
    assert!(send(&mut alice, "after the restore", "k-5").await > third, "ids keep increasing");
}

/// A backup of a folder with no database fails with a message naming it, and writes nothing.
#[test]
fn a_backup_without_a_database_fails_clearly() {
    let empty = tempfile::tempdir().expect("temporary directory");
    let copy = empty.path().join("copy.sqlite3");
    let output = Command::new(env!("CARGO_BIN_EXE_server"))
        .args(["backup"])
        .arg(&copy)
        .env("CHAT_DATA_DIR", empty.path())
        .output()
        .expect("backup runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no database at"), "{stderr}");
    assert!(!copy.exists());
}
