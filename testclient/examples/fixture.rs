//! Writes the fixed conversation of the schema-upgrade fixtures into a running server:
//! `cargo run -p testclient --example fixture -- 127.0.0.1:PORT`. Run it against the release
//! whose schema the fixture is to hold (see `server/tests/fixtures/README.md`), then stop that
//! server with SIGTERM so that its database file is complete without its write-ahead log.

use testclient::{Client, url};

/// Room, sender, client id, text: in the order they are sent, so ids are 1, 2, 3, ...
pub const CONVERSATION: [(&str, &str, &str, &str); 12] = [
    ("lobby", "alice", "a-1", "hello, lobby"),
    ("ops", "bob", "b-1", "deploy at 10"),
    ("lobby", "zoë", "z-1", "naïve café ☕"),
    ("quotes", "carol", "c-1", "ACME 101.25"),
    ("ops", "alice", "a-2", "line one\nline two"),
    ("lobby", "bob", "b-2", "hi alice"),
    ("quotes", "carol", "c-2", "ACME 101.50"),
    ("ops", "bob", "b-3", "done"),
    ("lobby", "alice", "a-3", "<b>not bold</b> & co"),
    ("quotes", "carol", "c-3", "ACME 100.75"),
    ("ops", "zoë", "z-2", "👍"),
    ("lobby", "zoë", "z-3", "bye"),
];

#[allow(clippy::print_stdout)] // what it wrote, for the fixture's README
#[tokio::main(flavor = "current_thread")]
async fn main() {
    let address = std::env::args().nth(1).expect("usage: fixture HOST:PORT");
    for (room, nick, client_id, text) in CONVERSATION {
        let query = format!("room={room}&nick={}", percent_encoded(nick));
        let (mut client, _) = Client::join(&url(&address, &query)).await;
        client.say_with_id(text, client_id).await;
        let (acked, id) = client.ack().await;
        assert_eq!(acked, client_id);
        println!("{id}\t{room}\t{nick}\t{client_id}\t{text:?}");
        client.close().await;
    }
}

/// `text` with every byte outside ASCII letters and digits as `%XX`.
fn percent_encoded(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => char::from(byte).to_string(),
            _ => format!("%{byte:02X}"),
        })
        .collect()
}
