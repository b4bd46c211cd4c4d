//! The HTTP API against the binary: keys made and revoked with `server admin` while the server
//! runs, posts that reach WebSocket members marked as a bot's, `Idempotency-Key` giving
//! exactly-once posts, history pages and the room list, and typed refusals.

mod common;

use std::path::Path;
use std::process::Command;

use common::{Answer, Running, request};
use testclient::{Client, url};

/// Runs `server admin ARGS` on `data`; returns its standard output.
fn admin(data: &Path, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_server"))
        .arg("--data-dir")
        .arg(data)
        .arg("admin")
        .args(args)
        .output()
        .expect("server admin runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("UTF-8")
}

fn post(address: &str, key: &str, room: &str, body: &str, idempotency: Option<&str>) -> Answer {
    let bearer = format!("Bearer {key}");
    let mut headers =
        vec![("Authorization", bearer.as_str()), ("Content-Type", "application/json")];
    if let Some(idempotency) = idempotency {
        headers.push(("Idempotency-Key", idempotency));
    }
    request(address, "POST", &format!("/api/v1/rooms/{room}/messages"), &headers, body)
}

fn get(address: &str, key: &str, path: &str) -> Answer {
    let bearer = format!("Bearer {key}");
    request(address, "GET", path, &[("Authorization", bearer.as_str())], "")
}

struct Setup {
    data: tempfile::TempDir,
    server: Running,
    address: String,
    key: String,
}

/// A server on a new data folder, and a key made with `server admin` while it runs.
fn setup() -> Setup {
    let data = tempfile::tempdir().expect("temporary data directory");
    let server = Running::start_storing(data.path(), &["--port", "0"]);
    let address = server.address();
    let key = admin(data.path(), &["create-key", "feed"]).trim().to_owned();
    Setup { data, server, address, key }
}

/// A post reaches the room's members at once, from the named bot and marked as a bot's; the
/// answer is the stored message; a later joiner sees it in the history, marked too.
#[tokio::test(flavor = "multi_thread")]
async fn a_post_reaches_members_marked_as_a_bot() {
    let Setup { address, key, server: _server, data: _data } = setup();
    let (mut alice, _) = Client::join(&url(&address, "room=quotes&nick=alice")).await;
    let answer =
        post(&address, &key, "quotes", r#"{"from":"pricebot","text":"ACME 101.25"}"#, None);
    assert_eq!(answer.status, 201, "{answer:?}");
    let stored = answer.json();
    assert_eq!((stored["from"].as_str(), stored["bot"].as_bool()), (Some("pricebot"), Some(true)));
    let relayed = alice.message().await;
    assert_eq!((relayed.from.as_str(), relayed.text.as_str()), ("pricebot", "ACME 101.25"));
    assert!(relayed.bot);
    assert_eq!(Some(relayed.id), stored["id"].as_u64());

    let (_, welcome) = Client::join(&url(&address, "room=quotes&nick=bob")).await;
    assert!(welcome.history.iter().any(|m| m.bot && m.id == relayed.id), "{welcome:?}");
}

/// The same `Idempotency-Key` twice stores one message: the repeat is answered with it, and
/// the members see it once. Another key, or no key, stores another.
#[tokio::test(flavor = "multi_thread")]
async fn an_idempotency_key_stores_once() {
    let Setup { address, key, server: _server, data: _data } = setup();
    let (mut alice, _) = Client::join(&url(&address, "room=once&nick=alice")).await;
    let body = r#"{"from":"pricebot","text":"tick"}"#;
    let first = post(&address, &key, "once", body, Some("tick-1")).json();
    let again = post(&address, &key, "once", body, Some("tick-1")).json();
    assert_eq!(first["id"], again["id"]);
    let other = post(&address, &key, "once", body, Some("tick-2")).json();
    assert_ne!(first["id"], other["id"]);
    let ids = [alice.message().await.id, alice.message().await.id];
    assert_eq!(ids.map(Some), [first["id"].as_u64(), other["id"].as_u64()], "seen once each");
    let page = get(&address, &key, "/api/v1/rooms/once/messages").json();
    assert_eq!(page["messages"].as_array().map(Vec::len), Some(2));
}

/// A bot and a person of the same name keep their client ids apart: the person's `client_id`
/// does not answer the bot's `Idempotency-Key`.
#[tokio::test(flavor = "multi_thread")]
async fn a_bot_and_a_person_of_one_name_do_not_share_keys() {
    let Setup { address, key, server: _server, data: _data } = setup();
    let (mut person, _) = Client::join(&url(&address, "room=names&nick=pricebot")).await;
    person.say_with_id("typed by a person", "k-1").await;
    let (_, person_id) = person.ack().await;
    let answer =
        post(&address, &key, "names", r#"{"from":"pricebot","text":"posted"}"#, Some("k-1"));
    assert_eq!(answer.status, 201);
    assert_ne!(answer.json()["id"].as_u64(), Some(person_id));
}

/// History pages and the room list; a closed room opens for a post and for a read.
#[tokio::test(flavor = "multi_thread")]
async fn history_and_rooms_are_served() {
    let Setup { address, key, server: _server, data: _data } = setup();
    for i in 0..5 {
        let body = format!(r#"{{"from":"feed","text":"m{i}"}}"#);
        assert_eq!(post(&address, &key, "archive", &body, None).status, 201);
    }
    let page = get(&address, &key, "/api/v1/rooms/archive/messages?limit=2").json();
    let texts: Vec<&str> = page["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["text"].as_str())
        .collect();
    assert_eq!((texts, page["more"].as_bool()), (vec!["m3", "m4"], Some(true)));
    let first = page["messages"][0]["id"].as_u64().expect("an id");
    let older =
        get(&address, &key, &format!("/api/v1/rooms/archive/messages?before={first}")).json();
    assert_eq!(older["messages"].as_array().map(Vec::len), Some(3));
    assert_eq!(older["more"].as_bool(), Some(false));
    let rooms = get(&address, &key, "/api/v1/rooms").json();
    let names: Vec<&str> = rooms["rooms"]
        .as_array()
        .expect("rooms")
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert!(names.contains(&"archive"), "{rooms}");
}

/// No key, a wrong key, or a key revoked while the server runs: 401 with `WWW-Authenticate`.
#[tokio::test(flavor = "multi_thread")]
async fn calls_need_a_valid_key() {
    let Setup { data, address, key, server: _server } = setup();
    let anonymous = request(&address, "GET", "/api/v1/rooms", &[], "");
    assert_eq!((anonymous.status, anonymous.header("www-authenticate")), (401, Some("Bearer")));
    assert_eq!(anonymous.json()["error"], "unauthorized");
    let forged = format!("chat_{}", "0".repeat(64));
    assert_eq!(get(&address, &forged, "/api/v1/rooms").status, 401);
    assert_eq!(get(&address, &key, "/api/v1/rooms").status, 200);
    let listed = admin(data.path(), &["list-keys"]);
    assert!(listed.starts_with("feed\tcreated ") && listed.contains("active"), "{listed}");
    admin(data.path(), &["revoke-key", "feed"]);
    assert_eq!(get(&address, &key, "/api/v1/rooms").status, 401, "revoked at once");
    assert!(admin(data.path(), &["list-keys"]).contains("revoked"));
}

/// Bad input gets a typed error with the right status, and stores nothing.
#[tokio::test(flavor = "multi_thread")]
async fn bad_posts_get_typed_errors() {
    let Setup { address, key, server: _server, data: _data } = setup();
    let cases = [
        ("bad room", r#"{"from":"bot","text":"x"}"#, 400, "invalid_room"),
        ("ok", r#"{"from":"","text":"x"}"#, 400, "invalid_nick"),
        ("ok", r#"{"from":"bot","text":"  "}"#, 400, "empty_text"),
        (
            "ok",
            &format!(r#"{{"from":"bot","text":"{}"}}"#, "x".repeat(4_097)),
            400,
            "text_too_long",
        ),
        ("ok", r#"{"from":"bot","text":"bell\u0007"}"#, 400, "invalid_message"),
        ("ok", r#"{"from":"bot"}"#, 400, "malformed_json"),
        ("ok", "{oops", 400, "malformed_json"),
    ];
    for (room, body, status, code) in cases {
        let answer = post(&address, &key, &room.replace(' ', "%20"), body, None);
        assert_eq!(
            (answer.status, answer.json()["error"].as_str()),
            (status, Some(code)),
            "{body}"
        );
    }
    let bad_key = post(&address, &key, "ok", r#"{"from":"bot","text":"x"}"#, Some("no/slash"));
    assert_eq!(bad_key.status, 400);
    let huge = format!(r#"{{"from":"bot","text":"{}"}}"#, "x".repeat(70_000));
    assert_eq!(post(&address, &key, "ok", &huge, None).status, 413);
    let page = get(&address, &key, "/api/v1/rooms/ok/messages").json();
    assert_eq!(page["messages"].as_array().map(Vec::len), Some(0), "nothing stored");
}

/// Each API key has its own idempotency keys: another integration posting as the same bot
/// with the same key does not get (or suppress) the first one's message.
#[tokio::test(flavor = "multi_thread")]
async fn idempotency_keys_belong_to_their_api_key() {
    let Setup { data, address, key, server: _server } = setup();
    let other = admin(data.path(), &["create-key", "other"]).trim().to_owned();
    let body = r#"{"from":"pricebot","text":"ACME 1"}"#;
    let first = post(&address, &key, "shared", body, Some("q-1")).json();
    let intruder =
        post(&address, &other, "shared", r#"{"from":"pricebot","text":"FAKE"}"#, Some("q-1"));
    assert_eq!(intruder.status, 201);
    assert_ne!(intruder.json()["id"], first["id"], "a message of its own");
    assert_eq!(post(&address, &key, "shared", body, Some("q-1")).json()["id"], first["id"]);
}

/// A key gets the rate of a WebSocket client (bursts of 20 here): past it, 429 with
/// `Retry-After`. An address making calls without a valid key gets 429 after 60 a minute.
#[tokio::test(flavor = "multi_thread")]
async fn calls_are_rate_limited_per_key_and_failures_per_address() {
    let Setup { address, key, server: _server, data: _data } = setup();
    let answers: Vec<Answer> = (0..30).map(|_| get(&address, &key, "/api/v1/rooms")).collect();
    let limited = answers.iter().filter(|answer| answer.status == 429).count();
    assert!((1..=10).contains(&limited), "{limited} of 30 limited");
    let refused = answers.iter().find(|answer| answer.status == 429).expect("one");
    assert!(refused.header("retry-after").is_some());
    let wrong = format!("chat_{}", "1".repeat(64));
    let statuses: Vec<u16> =
        (0..61).map(|_| get(&address, &wrong, "/api/v1/rooms").status).collect();
    assert_eq!(statuses[..60], [401; 60]);
    assert_eq!(statuses[60], 429);
    let metrics = common::get(&address, "/metrics");
    assert!(metrics.contains("chat_api_auth_failures_total 61"), "{metrics}");
    assert!(
        metrics.contains(r#"chat_api_requests_total{call="GET /api/v1/rooms",status="401"} 60"#),
        "{metrics}"
    );
}

/// A call is nobody in the room: a room only read through the API is not listed as active,
/// and a room the API posted into is listed with no members.
#[tokio::test(flavor = "multi_thread")]
async fn api_calls_are_not_members() {
    let Setup { address, key, server: _server, data: _data } = setup();
    assert_eq!(get(&address, &key, "/api/v1/rooms/ghost/messages").status, 200);
    assert_eq!(post(&address, &key, "posted", r#"{"from":"bot","text":"x"}"#, None).status, 201);
    // The room closes once the call is over, and is then listed among the quiet rooms.
    let started = std::time::Instant::now();
    let listed = loop {
        let rooms = get(&address, &key, "/api/v1/rooms").json();
        let listed: Vec<(String, u64)> = rooms["rooms"]
            .as_array()
            .expect("rooms")
            .iter()
            .map(|room| {
                let name = room["name"].as_str().unwrap_or("").to_owned();
                (name, room["members"].as_u64().unwrap_or(99))
            })
            .collect();
        if listed.iter().any(|(name, _)| name == "posted") {
            break listed;
        }
        assert!(started.elapsed() < common::DEADLINE, "never listed: {listed:?}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(!listed.iter().any(|(name, _)| name == "ghost"), "{listed:?}");
    assert!(listed.contains(&("posted".to_owned(), 0)), "{listed:?}");
}

/// `server admin` works only on an existing database: a mistyped folder is an error, not a
/// new empty database with a key nobody's server reads.
#[test]
fn admin_needs_the_servers_database() {
    let empty = tempfile::tempdir().expect("temporary directory");
    let output = Command::new(env!("CARGO_BIN_EXE_server"))
        .arg("--data-dir")
        .arg(empty.path())
        .args(["admin", "create-key", "feed"])
        .output()
        .expect("server admin runs");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("no database at"));
    assert_eq!(std::fs::read_dir(empty.path()).expect("lists").count(), 0, "nothing created");
}

/// The OpenAPI document is served without a key and names every call.
#[test]
fn the_openapi_document_is_served() {
    let Setup { address, server: _server, data: _data, .. } = setup();
    let answer = request(&address, "GET", "/api/v1/openapi.json", &[], "");
    assert_eq!(answer.status, 200);
    let document = answer.json();
    assert!(document["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    assert!(document["paths"]["/api/v1/rooms/{room}/messages"]["post"].is_object());
}
