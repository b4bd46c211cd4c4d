//! Accounts against the binary: registering and logging in set an `HttpOnly`, `SameSite=Lax`
//! session cookie (a new one at every login); logging out ends it; other sites' pages cannot
//! call these; logins are slowed per nick; a registered nick is reserved on the WebSocket
//! (guests cannot take it or a look-alike), and a signed-in connection joins under it.

mod common;

use common::{Answer, Running, request};
use protocol::{ErrorCode, ServerMessage};
use testclient::{Client, url};

const PASSWORD: &str = "correct horse battery";

/// A call as the chat's page makes it: a POST with the page's Origin, a GET without one (a
/// browser sends none on a same-origin GET).
fn call(address: &str, method: &str, path: &str, body: &str, cookie: Option<&str>) -> Answer {
    let origin = format!("http://{address}");
    let mut headers = vec![("Content-Type", "application/json")];
    if method != "GET" {
        headers.push(("Origin", origin.as_str()));
    }
    let cookie = cookie.map(|token| format!("chat_session={token}"));
    if let Some(cookie) = &cookie {
        headers.push(("Cookie", cookie.as_str()));
    }
    request(address, method, path, &headers, body)
}

fn credentials(nick: &str, password: &str) -> String {
    serde_json::json!({"nick": nick, "password": password}).to_string()
}

/// The session token a response set, checking the cookie's flags.
fn session_cookie(answer: &Answer) -> String {
    let cookie = answer.header("set-cookie").unwrap_or_else(|| panic!("no cookie: {answer:?}"));
    for flag in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(flag), "{flag} missing from {cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP here: {cookie}");
    let token = cookie.split(';').next().and_then(|pair| pair.strip_prefix("chat_session="));
    token.expect("the session cookie").to_owned()
}

fn server() -> (Running, String, tempfile::TempDir) {
    let data = tempfile::tempdir().expect("data folder");
    let server = Running::start_storing(data.path(), &["--port", "0"]);
    let address = server.address();
    (server, address, data)
}

#[test]
fn register_log_in_and_out() {
    let (_server, address, _data) = server();
    let registered =
        call(&address, "POST", "/account/register", &credentials("alice", PASSWORD), None);
    assert_eq!(registered.status, 201, "{registered:?}");
    let first = session_cookie(&registered);
    let me = call(&address, "GET", "/account", "", Some(&first));
    assert_eq!((me.status, me.json()["nick"].as_str()), (200, Some("alice")));

    let again = call(&address, "POST", "/account/register", &credentials("ALICE", PASSWORD), None);
    assert_eq!((again.status, again.json()["error"].as_str()), (409, Some("nick_taken")));
    let weak = call(&address, "POST", "/account/register", &credentials("bob", "short"), None);
    assert_eq!(weak.status, 400);
    let guest =
        call(&address, "POST", "/account/register", &credentials("guest-1", PASSWORD), None);
    assert_eq!((guest.status, guest.json()["error"].as_str()), (400, Some("invalid_nick")));

    let login = call(&address, "POST", "/account/login", &credentials("Alice", PASSWORD), None);
    assert_eq!(login.status, 200, "{login:?}");
    let second = session_cookie(&login);
    assert_ne!(first, second, "a new session at every login");

    let out = call(&address, "POST", "/account/logout", "", Some(&first));
    assert_eq!(out.status, 204);
    let ended = call(&address, "GET", "/account", "", Some(&first));
    assert_eq!(ended.status, 401, "ended");
    assert!(!ended.body.contains("guests"), "guests chat here: {}", ended.body);
    assert_eq!(call(&address, "GET", "/account", "", Some(&second)).status, 200, "the other");
    let wrong =
        call(&address, "POST", "/account/login", &credentials("alice", "wrong password!"), None);
    assert_eq!((wrong.status, wrong.json()["error"].as_str()), (401, Some("unauthenticated")));
}

/// Another site's page cannot register, log in or out (login CSRF), nor can a request from no
/// page at all.
#[test]
fn only_the_chats_own_page_may_call() {
    let (_server, address, _data) = server();
    let body = credentials("mallory", PASSWORD);
    let foreign = [("Origin", "http://evil.example"), ("Content-Type", "application/json")];
    assert_eq!(request(&address, "POST", "/account/register", &foreign, &body).status, 403);
    let none = [("Content-Type", "application/json")];
    assert_eq!(request(&address, "POST", "/account/login", &none, &body).status, 403);
}

/// Failed logins of one account from one address are counted under either form of its look
/// (5 a minute, then its logins from there wait): a password cannot be guessed faster by
/// writing the nick as a look-alike. Logins that work are not counted.
#[test]
fn failed_logins_are_slowed_per_account() {
    let (_server, address, _data) = server();
    call(&address, "POST", "/account/register", &credentials("carol", PASSWORD), None);
    for _ in 0..3 {
        let right = call(&address, "POST", "/account/login", &credentials("carol", PASSWORD), None);
        assert_eq!(right.status, 200);
    }
    let mut statuses = Vec::new();
    for nick in ["carol", "CAROL", "carol", "caroI", "carol", "carol"] {
        let body = credentials(nick, "not the password");
        statuses.push(call(&address, "POST", "/account/login", &body, None).status);
    }
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429]);
    let right = call(&address, "POST", "/account/login", &credentials("carol", PASSWORD), None);
    assert_eq!(right.status, 429, "the right password waits too");
}

/// Someone guessing a person's password from their own address cannot lock its owner out:
/// failures are counted per account and address (5 a minute), and per account from every
/// address together only past 50 a minute. (Behind a trusted proxy, so that the test can speak
/// from several addresses.)
#[test]
fn a_guesser_does_not_lock_the_owner_out() {
    let data = tempfile::tempdir().expect("data folder");
    let server =
        Running::start_storing(data.path(), &["--port", "0", "--trusted-proxy", "127.0.0.1"]);
    let address = server.address();
    let origin = format!("http://{address}");
    let from = |client: &str, path: &str, password: &str| {
        let headers = [
            ("Origin", origin.as_str()),
            ("Content-Type", "application/json"),
            ("X-Forwarded-For", client),
        ];
        request(&address, "POST", path, &headers, &credentials("dora", password)).status
    };
    assert_eq!(from("203.0.113.9", "/account/register", PASSWORD), 201);
    let guesses: Vec<u16> =
        (0..6).map(|_| from("198.51.100.7", "/account/login", "not the password")).collect();
    assert_eq!(guesses, [401, 401, 401, 401, 401, 429], "the guesser is slowed");
    assert_eq!(from("198.51.100.7", "/account/login", PASSWORD), 429, "even when right");
    assert_eq!(from("203.0.113.9", "/account/login", PASSWORD), 200, "the owner is not");
    // Guesses from ten more addresses take the account past 50 failures: now everyone waits.
    for n in 10..20 {
        for _ in 0..5 {
            from(&format!("198.51.100.{n}"), "/account/login", "not the password");
        }
    }
    assert_eq!(from("203.0.113.9", "/account/login", PASSWORD), 429, "spread guesses slow all");
}

/// Attempts are counted per address too (20 a minute in bursts of 20, registering and logging
/// in alike, right passwords included): guesses spread over many nicks from one address, none
/// tried five times, are refused once the address has used its attempts.
#[test]
fn attempts_are_slowed_per_address() {
    let (_server, address, _data) = server();
    let started = std::time::Instant::now();
    let mut admitted = 0;
    let refused = (0..60).find_map(|n| {
        let answer = match n % 4 {
            0 => call(
                &address,
                "POST",
                "/account/register",
                &credentials(&format!("new{n}"), PASSWORD),
                None,
            ),
            _ => call(
                &address,
                "POST",
                "/account/login",
                &credentials(&format!("guess{n}"), "not it"),
                None,
            ),
        };
        match answer.status {
            429 => Some(answer),
            201 | 401 => {
                admitted += 1;
                None
            }
            other => panic!("attempt {n}: {other} {answer:?}"),
        }
    });
    let refused = refused.expect("an address is slowed within 60 attempts");
    assert_eq!(refused.json()["error"].as_str(), Some("rate_limited"), "{refused:?}");
    assert!(refused.json()["retry_after_ms"].as_u64().is_some_and(|ms| ms > 0), "{refused:?}");
    // A burst of 20, then one more every 3 s.
    let refilled = started.elapsed().as_secs() / 3 + 1;
    assert!(
        (20..=20 + refilled).contains(&admitted),
        "{admitted} attempts admitted in {:?}",
        started.elapsed()
    );
}

/// A registered nick is reserved: a guest asking for it (or a look-alike) is refused; a
/// connection with the session cookie joins under it, whatever nick it asks for, and is marked
/// signed in where others see it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_nick_is_reserved_on_the_websocket() {
    let (_server, address, _data) = server();
    let registered =
        call(&address, "POST", "/account/register", &credentials("dana", PASSWORD), None);
    let token = session_cookie(&registered);
    let mut guest = Client::connect(&url(&address, "room=r&nick=DANA")).await;
    match guest.recv().await {
        ServerMessage::Error { code, .. } => assert_eq!(code, ErrorCode::NickTaken),
        other => panic!("expected a refusal, got {other:?}"),
    }
    let origin = format!("http://{address}");
    let cookie = format!("chat_session={token}");
    let headers = [("Origin", origin.as_str()), ("Cookie", cookie.as_str())];
    let mut dana = Client::open_with(&url(&address, "room=r&nick=someone"), &headers)
        .await
        .expect("connected");
    let welcome = dana.welcome().await;
    assert_eq!((welcome.nick.as_str(), welcome.signed_in), ("dana", vec!["dana".to_owned()]));

    // The others see who is signed in: on the join, in a welcome's list and on each message;
    // a guest's carry no mark.
    let (mut other, welcome) = Client::join(&url(&address, "room=r&nick=erin")).await;
    assert_eq!(
        (welcome.members, welcome.signed_in),
        (vec!["dana".into(), "erin".into()], vec!["dana".into()])
    );
    let joined = dana
        .recv_until(|m| match m {
            ServerMessage::Joined { nick, signed_in, .. } => Some((nick, signed_in)),
            _ => None,
        })
        .await;
    assert_eq!(joined, ("erin".to_owned(), false));
    dana.say("from dana").await;
    let message = other.message().await;
    assert_eq!((message.from.as_str(), message.signed_in), ("dana", true));
    other.say("from erin").await;
    let message = other.message().await;
    assert_eq!((message.from.as_str(), message.signed_in), ("erin", false));
}

/// With `--ephemeral` there is no database to keep accounts in: the calls say so.
#[test]
fn an_ephemeral_server_keeps_no_accounts() {
    let server = Running::start(&["--port", "0"], &[]);
    let address = server.address();
    let answer = call(&address, "POST", "/account/register", &credentials("erin", PASSWORD), None);
    assert_eq!(answer.status, 404, "{answer:?}");
}

/// Logging out ends the session everywhere: a WebSocket signed in with it is closed (4004)
/// within the session check interval, saying why; another session of the account is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logging_out_closes_the_sessions_websockets() {
    let data = tempfile::tempdir().expect("data folder");
    let server =
        Running::start_storing(data.path(), &["--port", "0", "--session-check-interval", "200ms"]);
    let address = server.address();
    let first = session_cookie(&call(
        &address,
        "POST",
        "/account/register",
        &credentials("gil", PASSWORD),
        None,
    ));
    let second = session_cookie(&call(
        &address,
        "POST",
        "/account/login",
        &credentials("gil", PASSWORD),
        None,
    ));
    let origin = format!("http://{address}");
    let connect = |token: &str| {
        let cookie = format!("chat_session={token}");
        let origin = origin.clone();
        let address = address.clone();
        async move {
            let headers = [("Origin", origin.as_str()), ("Cookie", cookie.as_str())];
            let mut client =
                Client::open_with(&url(&address, "room=r"), &headers).await.expect("connected");
            client.welcome().await;
            client
        }
    };
    let mut ended = connect(&first).await;
    let mut kept = connect(&second).await;
    assert_eq!(call(&address, "POST", "/account/logout", "", Some(&first)).status, 204);
    match ended.recv().await {
        ServerMessage::Error { code, .. } => assert_eq!(code, ErrorCode::Unauthenticated),
        other => panic!("expected unauthenticated, got {other:?}"),
    }
    assert_eq!(ended.close_code().await, protocol::close::UNAUTHENTICATED);
    kept.say("still here").await;
    assert_eq!(kept.message().await.text, "still here", "the other session is kept");
}
