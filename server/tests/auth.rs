//! `--auth` against the binary: with `accounts`, a connection without a session is told
//! `unauthenticated` and closed with 4004, one with a session chats; with `token`, a token the
//! operator's site signed names the person and the rooms they may enter, and every forged,
//! stale or misaimed token is refused the same way; a server asked for a mode it cannot run
//! refuses to start, saying why.

mod common;

use std::process::Command;

use common::{Running, request};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use protocol::{ErrorCode, ServerMessage, close};
use serde_json::json;
use testclient::{Client, url};

const SECRET: &str = "a secret of at least thirty-two bytes, for tests";
const AUDIENCE: &str = "https://chat.example";

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn token(claims: serde_json::Value, secret: &str) -> String {
    let key = EncodingKey::from_secret(secret.as_bytes());
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key).expect("signs")
}

fn good_claims() -> serde_json::Value {
    json!({"sub": "user-42", "name": "Grace", "rooms": ["team", "ops"], "moderates": ["Team"],
           "exp": now() + 300, "aud": AUDIENCE})
}

fn token_server() -> (Running, String) {
    let server = Running::start(
        &["--port", "0", "--auth", "token", "--auth-token-audience", AUDIENCE],
        &[("CHAT_AUTH_TOKEN_SECRET", SECRET)],
    );
    let address = server.address();
    (server, address)
}

/// The refusal a connection gets: the error's code and words, then the close code.
async fn refusal(address: &str, query: &str) -> (ErrorCode, String, u16) {
    let mut client = Client::connect(&url(address, query)).await;
    let (code, message) = match client.recv().await {
        ServerMessage::Error { code, message, .. } => (code, message),
        other => panic!("expected a refusal, got {other:?}"),
    };
    (code, message, client.close_code().await)
}

/// A good token joins under its name, marked signed in, moderating the rooms it names, and
/// only into its rooms: another is `forbidden`, and the room list shows none but its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_names_its_holder_and_their_rooms() {
    let (_server, address) = token_server();
    let good = token(good_claims(), SECRET);
    let query = format!("room=team&nick=someone-else&token={good}");
    let (mut grace, welcome) = Client::join(&url(&address, &query)).await;
    assert_eq!((welcome.nick.as_str(), welcome.signed_in), ("Grace", vec!["Grace".to_owned()]));
    assert_eq!(welcome.role, Some(protocol::Role::Moderator), "her site lets her moderate #team");
    grace.say("hello").await;
    let message = grace.message().await;
    assert!(message.signed_in && message.from == "Grace", "{message:?}");

    let other = json!({"sub": "user-7", "name": "Hal", "exp": now() + 300, "aud": AUDIENCE});
    let (_hal, _) =
        Client::join(&url(&address, &format!("room=elsewhere&token={}", token(other, SECRET))))
            .await;
    let join = json!({"type": "join", "room": "elsewhere", "add": true});
    grace.send_text(&join.to_string()).await;
    match grace.recv().await {
        ServerMessage::Error { code, room, .. } => {
            assert_eq!((code, room.as_deref()), (ErrorCode::Forbidden, Some("elsewhere")));
        }
        other => panic!("expected forbidden, got {other:?}"),
    }
    let listed: Vec<String> = grace.list_rooms().await.into_iter().map(|r| r.name).collect();
    assert_eq!(listed, ["team"], "another room's name is not shown to a token limited to its own");
}

/// Every token that is not good is refused with `unauthenticated` and close 4004, saying
/// why: none at all, `alg: none`, another key, expired, for another audience, without a
/// subject.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_stale_or_misaimed_tokens_are_refused() {
    let (_server, address) = token_server();
    let unsigned = {
        use base64::Engine;
        let encode = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        format!(
            "{}.{}.",
            encode(br#"{"alg":"none","typ":"JWT"}"#),
            encode(good_claims().to_string().as_bytes())
        )
    };
    let with = |key: &str, value: serde_json::Value| {
        let mut claims = good_claims();
        claims[key] = value;
        token(claims, SECRET)
    };
    let cases = [
        ("room=team".to_owned(), "needs a token"),
        (format!("room=team&token={unsigned}"), "must be signed with HS256"),
        (format!("room=team&token={}", token(good_claims(), &"x".repeat(40))), "signature"),
        (format!("room=team&token={}", with("exp", json!(now() - 600))), "expired"),
        (
            format!("room=team&token={}", with("aud", json!("https://other.example"))),
            "another site",
        ),
        (format!("room=team&token={}", with("sub", json!(""))), "no sub"),
    ];
    for (query, why) in cases {
        let (code, message, closed) = refusal(&address, &query).await;
        assert_eq!((code, closed), (ErrorCode::Unauthenticated, close::UNAUTHENTICATED), "{why}");
        assert!(message.contains(why), "{why}: {message}");
    }
    // With tokens, this server keeps no accounts.
    let origin = format!("http://{address}");
    let body = json!({"nick": "grace", "password": "correct horse battery"}).to_string();
    let headers = [("Origin", origin.as_str()), ("Content-Type", "application/json")];
    let answer = request(&address, "POST", "/account/register", &headers, &body);
    assert_eq!(answer.status, 404, "{answer:?}");
}

/// `--auth accounts`: a guest is refused (4004); the same page signed in chats.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_mode_lets_only_the_signed_in_chat() {
    let data = tempfile::tempdir().expect("data folder");
    let server = Running::start_storing(data.path(), &["--port", "0", "--auth", "accounts"]);
    let address = server.address();
    let (code, _, closed) = refusal(&address, "room=r&nick=guest").await;
    assert_eq!((code, closed), (ErrorCode::Unauthenticated, close::UNAUTHENTICATED));
    // The page learns it before offering "Join as guest".
    let signed_out = request(&address, "GET", "/account", &[], "");
    assert_eq!(signed_out.status, 401);
    assert!(signed_out.body.contains(r#""guests":false"#), "{}", signed_out.body);

    let origin = format!("http://{address}");
    let body = json!({"nick": "ivy", "password": "correct horse battery"}).to_string();
    let headers = [("Origin", origin.as_str()), ("Content-Type", "application/json")];
    let registered = request(&address, "POST", "/account/register", &headers, &body);
    assert_eq!(registered.status, 201, "{registered:?}");
    let cookie = registered.header("set-cookie").expect("cookie").split(';').next().expect("pair");
    let headers = [("Origin", origin.as_str()), ("Cookie", cookie)];
    let mut ivy = Client::open_with(&url(&address, "room=r"), &headers).await.expect("connected");
    assert_eq!(ivy.welcome().await.nick, "ivy");
}

/// A mode the server cannot run is refused at start with words that say what is missing.
#[test]
fn impossible_auth_settings_stop_the_server_at_start() {
    let data = tempfile::tempdir().expect("data folder");
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case; 5] = [
        (&["--auth", "token"], &[], "needs either --auth-token-secret"),
        (&["--auth", "token"], &[("CHAT_AUTH_TOKEN_SECRET", "tiny-secret-xyz")], "at least 32"),
        (&["--auth", "token", "--auth-token-key", "/nonexistent.pem"], &[], "cannot read"),
        (&["--auth", "accounts", "--ephemeral"], &[], "not with --ephemeral"),
        // A key without the mode would leave the chat open to anyone.
        (&[], &[("CHAT_AUTH_TOKEN_SECRET", "tiny-secret-xyz")], "need --auth token"),
    ];
    for (args, envs, says) in cases {
        let output = Command::new(env!("CARGO_BIN_EXE_server"))
            .args(["--port", "0"])
            .args(args)
            .env("CHAT_DATA_DIR", data.path())
            .envs(envs.iter().copied())
            .output()
            .expect("runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} started");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(!stderr.contains("tiny-secret-xyz"), "the secret is never shown: {stderr}");
    }
}
