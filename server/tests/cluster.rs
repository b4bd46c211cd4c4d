//! Several server processes sharing rooms through one Redis (`--redis`), each a real process
//! on a free loopback port, with a real `redis-server` (see common/redis.rs): one order and
//! the same ids everywhere, catch-up and repeated client ids across servers, presence and
//! typing across servers, a dead server's members leaving every list, and no acknowledged
//! message lost to `kill -9` of a server or of Redis, nor to killed subscriptions; a Redis
//! that lost its data gives an explicit `reset`; a Redis that may lose data is refused.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::Running;
use protocol::{ErrorCode, MessageId, ServerMessage};
use testclient::redis::{RedisProcess, command_at};
use testclient::{Client, url};

/// How long a dead server's members stay listed in these tests (`--presence-expiry`).
const EXPIRY: &str = "2s";

/// A server sharing rooms through `redis`, and its address.
fn server(redis: &RedisProcess) -> (Running, String) {
    let args = [
        "--port",
        "0",
        "--redis",
        &redis.url,
        "--presence-expiry",
        EXPIRY,
        "--rate-per-second",
        "100000",
        "--rate-burst",
        "100000",
        "--history-len",
        "1000",
    ];
    let running = Running::start(&args, &[]);
    let address = running.address();
    (running, address)
}

/// Joins `room` on `address` as `nick`; the client and its welcome.
async fn join(address: &str, room: &str, nick: &str) -> (Client, testclient::Welcome) {
    Client::join(&url(address, &format!("room={room}&nick={nick}&client=c-{nick}"))).await
}

/// Every chat message `client` receives until it has seen id `last`, as (id, text).
async fn messages_upto(client: &mut Client, last: MessageId) -> Vec<(MessageId, String)> {
    messages_and_acks(client, "", last).await.0
}

/// Every chat message `client` receives until it has seen id `last`, as (id, text), and the
/// acks that came meanwhile (client id → id). Panics if one of `nick`'s own messages (sent
/// with its text as client id) comes before its ack.
async fn messages_and_acks(
    client: &mut Client,
    nick: &str,
    last: MessageId,
) -> (Vec<(MessageId, String)>, BTreeMap<String, MessageId>) {
    let (mut seen, mut acks) = (Vec::new(), BTreeMap::new());
    while seen.last().is_none_or(|(id, _)| *id < last) {
        match client.recv().await {
            ServerMessage::Message(message) => {
                if message.from == nick {
                    assert!(acks.contains_key(&message.text), "{message:?} came before its ack");
                }
                seen.push((message.id, message.text));
            }
            ServerMessage::Ack { client_id, id, .. } => {
                acks.insert(client_id, id);
            }
            _ => {}
        }
    }
    (seen, acks)
}

/// Two servers, one room: messages sent on either arrive on both in one order with the same
/// ids (1, 2, 3... in the room), each once; each sender is acknowledged with that id; the member
/// lists are the union, joins and typing cross servers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_share_one_conversation() {
    let redis = RedisProcess::start(true);
    let (_one, a) = server(&redis);
    let (_two, b) = server(&redis);
    let (mut ann, _) = join(&a, "r", "ann").await;
    let (mut bob, welcome) = join(&b, "r", "bob").await;
    assert_eq!(welcome.members, ["ann", "bob"], "the list is the union over servers");
    let joined = ann
        .recv_until(|m| match m {
            ServerMessage::Joined { nick, .. } => Some(nick),
            _ => None,
        })
        .await;
    assert_eq!(joined, "bob", "a join on the other server is announced");
    bob.send_text(r#"{"type":"typing"}"#).await;
    let typist = ann
        .recv_until(|m| match m {
            ServerMessage::Typing { nick, .. } => Some(nick),
            _ => None,
        })
        .await;
    assert_eq!(typist, "bob", "typing crosses servers");

    const EACH: u64 = 40;
    for i in 0..EACH {
        ann.say_with_id(&format!("a{i}"), &format!("a{i}")).await;
        bob.say_with_id(&format!("b{i}"), &format!("b{i}")).await;
    }
    let (at_ann, mut acks) = messages_and_acks(&mut ann, "ann", 2 * EACH).await;
    let (at_bob, acks_bob) = messages_and_acks(&mut bob, "bob", 2 * EACH).await;
    assert_eq!(at_ann, at_bob, "one order, the same ids, on both servers");
    let ids: Vec<MessageId> = at_ann.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, (1..=2 * EACH).collect::<Vec<_>>(), "each message once, ids count by one");
    // Every send was acknowledged, before its message, with the id it was relayed with.
    acks.extend(acks_bob);
    let relayed: BTreeMap<String, MessageId> =
        at_ann.into_iter().map(|(id, text)| (text, id)).collect();
    assert_eq!(acks, relayed);
}

/// A client that leaves one server catches up on another from its last id (with its epoch),
/// and a client id it sent on the first is recognised on the second: the original id again,
/// nothing stored twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_up_and_client_ids_work_across_servers() {
    let redis = RedisProcess::start(true);
    let (_one, a) = server(&redis);
    let (_two, b) = server(&redis);
    let (mut ann, welcome) = join(&a, "r", "ann").await;
    let epoch = welcome.epoch.clone();
    assert!(!epoch.is_empty(), "a room has an epoch from its first welcome on");
    ann.say_with_id("first", "k1").await;
    let first = ann.ack_of("k1").await;
    ann.close().await;
    let (mut bob, welcome) = join(&b, "r", "bob").await;
    assert_eq!(welcome.epoch, epoch, "one epoch on every server, kept by the first message");
    assert_eq!(welcome.history.iter().map(|m| m.id).collect::<Vec<_>>(), [first]);
    for i in 0..3 {
        bob.say_with_id(&format!("later {i}"), &format!("b{i}")).await;
        bob.ack_of(&format!("b{i}")).await;
    }
    let query = format!("room=r&nick=ann&client=c-ann&since={first}&epoch={epoch}");
    let (mut ann, welcome) = Client::join(&url(&b, &query)).await;
    let texts: Vec<String> = welcome.history.iter().map(|m| m.text.clone()).collect();
    assert_eq!(texts, ["later 0", "later 1", "later 2"], "exactly what was missed");
    assert_eq!(welcome.since, Some(first));
    ann.say_with_id("first", "k1").await;
    assert_eq!(ann.ack_of("k1").await, first, "the original id, from the other server");
    // Nothing was stored twice: a newcomer sees four messages.
    let (_, welcome) = join(&a, "r", "cy").await;
    assert_eq!(welcome.history.len(), 4);
}

/// Subscriptions killed again and again during a burst (`CLIENT KILL TYPE pubsub`) leave no
/// gap and no repeat: the follower fills holes from the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_subscriptions_leave_no_gap() {
    const BURST: u64 = 300;
    let redis = RedisProcess::start(true);
    let (_one, a) = server(&redis);
    let (_two, b) = server(&redis);
    let (mut ann, _) = join(&a, "r", "ann").await;
    let (mut bob, _) = join(&b, "r", "bob").await;
    let killer = {
        let port = redis.port;
        std::thread::spawn(move || {
            let mut killed = 0;
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline {
                let reply = command_at(port, &["CLIENT", "KILL", "TYPE", "pubsub"]);
                let reply = reply.unwrap_or_default();
                killed += reply.trim_start_matches(':').parse::<u32>().unwrap_or(0);
                std::thread::sleep(Duration::from_millis(30));
            }
            killed
        })
    };
    for i in 0..BURST {
        bob.say(&format!("m{i}")).await;
    }
    let seen = messages_upto(&mut ann, BURST).await;
    let ids: Vec<MessageId> = seen.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, (1..=BURST).collect::<Vec<_>>(), "every message once, in order");
    let killed = killer.join().expect("killer");
    assert!(killed > 0, "subscriptions were killed during the burst");
}

/// A server follows all its rooms on one pub/sub connection (not one per room, which would cost
/// a socket per room on both ends), and unsubscribes from rooms once they close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_subscription_connection_follows_every_room() {
    let redis = RedisProcess::start(true);
    let (_one, a) = server(&redis);
    let mut clients = Vec::new();
    for room in 0..10 {
        clients.push(join(&a, &format!("room{room}"), "ann").await.0);
    }
    // `CLIENT LIST` says how many channels each connection is subscribed to (`sub=N`).
    let channels = || redis.bulk(&["CLIENT", "LIST", "TYPE", "pubsub"]);
    let pubsub_clients = || channels().lines().count();
    let deadline = Instant::now() + Duration::from_secs(10);
    // Each room subscribes to its messages' and its events' channels: `sub=20`.
    while !channels().contains("sub=20 ") {
        assert!(Instant::now() < deadline, "not subscribed to every room: {}", channels());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(pubsub_clients(), 1, "one connection for ten rooms");
    for client in clients {
        client.close().await;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    // Unsubscribed from every channel, the connection leaves pub/sub mode altogether.
    while !(channels().is_empty() || channels().contains("sub=0 ")) {
        assert!(Instant::now() < deadline, "closed rooms stay subscribed: {}", channels());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A server killed mid-burst loses nothing it acknowledged: the other server's newcomer sees
/// every acknowledged message; the dead server's member leaves every list once its presence
/// expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_loses_nothing_acknowledged_and_its_members_leave() {
    let redis = RedisProcess::start(true);
    let (mut one, a) = server(&redis);
    let (_two, b) = server(&redis);
    let (ann, _) = join(&a, "r", "ann").await;
    let (mut bob, _) = join(&b, "r", "bob").await;
    let (mut sender, mut receiver) = {
        let (tx, rx) = ann.split();
        (tx, rx)
    };
    use futures::{SinkExt, StreamExt};
    for i in 0..200 {
        let frame = serde_json::json!({"type": "send", "text": format!("m{i}"), "client_id": format!("k{i}")});
        if sender.send(testclient::Message::text(frame.to_string())).await.is_err() {
            break;
        }
    }
    // Kill as soon as some are acknowledged.
    let mut acked = Vec::new();
    while acked.len() < 20 {
        let Some(Ok(testclient::Message::Text(text))) = receiver.next().await else { break };
        if let Ok(ServerMessage::Ack { id, .. }) = serde_json::from_str(text.as_str()) {
            acked.push(id);
        }
    }
    one.child.kill().expect("kill -9");
    let _ = one.child.wait();
    // What arrived before the kill may hold more acks.
    while let Ok(Some(Ok(testclient::Message::Text(text)))) =
        tokio::time::timeout(Duration::from_millis(200), receiver.next()).await
    {
        if let Ok(ServerMessage::Ack { id, .. }) = serde_json::from_str(text.as_str()) {
            acked.push(id);
        }
    }
    let gone = bob
        .recv_until(|m| match m {
            ServerMessage::Left { nick, .. } if nick == "ann" => Some(nick),
            _ => None,
        })
        .await;
    assert_eq!(gone, "ann", "the dead server's member left the list");
    let (_, welcome) = join(&b, "r", "cy").await;
    assert!(!welcome.members.contains(&"ann".to_owned()), "{:?}", welcome.members);
    let kept: Vec<MessageId> = welcome.history.iter().map(|m| m.id).collect();
    for id in &acked {
        assert!(kept.contains(id), "acknowledged message {id} was lost");
    }
    assert!(acked.len() >= 20);
}

/// `kill -9` of Redis: sends meanwhile are refused with `unavailable` (the client keeps them),
/// the servers recover by themselves once Redis is back from its append-only file, and nothing
/// acknowledged is lost or repeated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted_from_its_file_loses_nothing() {
    let mut redis = RedisProcess::start(true);
    let (_one, a) = server(&redis);
    let (_two, b) = server(&redis);
    let (mut ann, _) = join(&a, "r", "ann").await;
    let (mut bob, _) = join(&b, "r", "bob").await;
    let mut acked = Vec::new();
    for i in 0..30 {
        ann.say_with_id(&format!("m{i}"), &format!("k{i}")).await;
        acked.push(ann.ack_of(&format!("k{i}")).await);
    }
    redis.kill();
    ann.say_with_id("during", "down").await;
    let refused = ann
        .recv_until(|m| match m {
            ServerMessage::Error { code, client_id, .. } => Some((code, client_id)),
            _ => None,
        })
        .await;
    assert_eq!(refused, (ErrorCode::Unavailable, Some("down".to_owned())));
    redis.restart(true);
    // The client sends again, as the web client's outbox does, until it is acknowledged.
    let deadline = Instant::now() + Duration::from_secs(20);
    let recovered = loop {
        assert!(Instant::now() < deadline, "the server did not recover after Redis came back");
        ann.say_with_id("during", "down").await;
        let answer = ann
            .recv_until(|m| match m {
                ServerMessage::Ack { client_id, id, .. } if client_id == "down" => Some(Ok(id)),
                ServerMessage::Error { client_id: Some(c), .. } if c == "down" => Some(Err(())),
                _ => None,
            })
            .await;
        if let Ok(id) = answer {
            break id;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    acked.push(recovered);
    // Bob's server relays everything, once, in order, the retry included.
    let seen = messages_upto(&mut bob, recovered).await;
    let ids: Vec<MessageId> = seen.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, acked, "every acknowledged message, once, in order");
    let (_, welcome) = join(&a, "r", "cy").await;
    let kept: Vec<MessageId> = welcome.history.iter().map(|m| m.id).collect();
    assert_eq!(kept, acked);
}

/// A Redis that lost its data (restarted from nothing) makes the room start over under a new
/// epoch: its members get a `reset` and a fresh welcome, and a client coming back with the old
/// epoch gets a `reset` too, never ids of two histories mixed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_without_its_data_gives_a_reset() {
    let mut redis = RedisProcess::start(true);
    let (_one, a) = server(&redis);
    let (mut ann, _) = join(&a, "r", "ann").await;
    ann.say_with_id("old", "k0").await;
    let old_id = ann.ack_of("k0").await;
    let (_, welcome) = join(&a, "r", "watcher").await;
    let old_epoch = welcome.epoch;
    redis.restart(false);
    // Sends after the restart start the room's new history; the member is told.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut n = 0;
    let new_epoch = loop {
        assert!(Instant::now() < deadline, "no reset after Redis lost its data");
        n += 1;
        ann.say_with_id("new", &format!("n{n}")).await;
        let seen = ann
            .recv_until(|m| match m {
                ServerMessage::Reset { epoch, .. } => Some(Some(epoch)),
                ServerMessage::Ack { .. } | ServerMessage::Error { .. } => Some(None),
                _ => None,
            })
            .await;
        if let Some(epoch) = seen {
            break epoch;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_ne!(new_epoch, old_epoch);
    let query = format!("room=r&nick=bob&since={old_id}&epoch={old_epoch}");
    let mut bob = Client::connect(&url(&a, &query)).await;
    match bob.recv().await {
        ServerMessage::Reset { epoch, .. } => assert_eq!(epoch, new_epoch),
        other => panic!("expected a reset, got {other:?}"),
    }
    let welcome = bob.welcome().await;
    assert_eq!(welcome.since, None, "no catch-up across histories");
    assert!(welcome.history.iter().all(|m| m.text == "new"), "{:?}", welcome.history);
}

/// A Redis whose history of a room went back under the same epoch (what a failover to a
/// replica that lacked the latest writes leaves: the counter and stream of an earlier moment)
/// makes the room start a new epoch: members get a `reset` and the history Redis has; a client
/// coming back with an id of the lost history gets a reset too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_that_went_back_gets_a_new_epoch() {
    let redis = RedisProcess::start(true);
    let (_one, a) = server(&redis);
    let (mut ann, _) = join(&a, "r", "ann").await;
    for i in 1..=5 {
        ann.say_with_id(&format!("m{i}"), &format!("k{i}")).await;
        ann.ack_of(&format!("k{i}")).await;
    }
    let (_, welcome) = join(&a, "r", "watcher").await;
    let old_epoch = welcome.epoch;
    // The replica had only the first three.
    redis.command(&["XTRIM", "chat:{r}:log", "MAXLEN", "5"]);
    assert_eq!(redis.command(&["XDEL", "chat:{r}:log", "4-1", "5-1"]), ":2");
    redis.command(&["HSET", "chat:{r}:meta", "last", "3"]);
    let (epoch, welcome) = loop {
        match ann.recv().await {
            ServerMessage::Reset { epoch, .. } => break (epoch, ann.welcome().await),
            _ => continue,
        }
    };
    assert_ne!(epoch, old_epoch);
    assert_eq!(welcome.epoch, epoch);
    let texts: Vec<&str> = welcome.history.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["m1", "m2", "m3"], "what Redis has, under the new epoch");
    let query = format!("room=r&nick=bob&since=5&epoch={old_epoch}");
    let mut bob = Client::connect(&url(&a, &query)).await;
    assert!(matches!(bob.recv().await, ServerMessage::Reset { .. }));
}

/// `--max-stored-rooms` bounds the rooms Redis keeps, across servers: past it, a room's first
/// message is refused (`too_many_rooms`) while rooms with messages go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rooms_redis_keeps_are_bounded() {
    let redis = RedisProcess::start(true);
    let args = ["--port", "0", "--redis", &redis.url, "--max-stored-rooms", "1"];
    let (one, two) = (Running::start(&args, &[]), Running::start(&args, &[]));
    let (mut ann, _) = join(&one.address(), "first", "ann").await;
    ann.say_with_id("hi", "k1").await;
    ann.ack_of("k1").await;
    let (mut bob, _) = join(&two.address(), "second", "bob").await;
    bob.say_with_id("hi", "k2").await;
    let refused = bob
        .recv_until(|m| match m {
            ServerMessage::Error { code, client_id, .. } => Some((code, client_id)),
            _ => None,
        })
        .await;
    assert_eq!(refused, (ErrorCode::TooManyRooms, Some("k2".to_owned())));
    ann.say_with_id("still", "k3").await;
    ann.ack_of("k3").await;
}

/// Posts waiting for Redis are bounded (`--max-pending-writes`): past it a send is refused at
/// once with `unavailable` (and counted as busy) instead of queueing; what was acknowledged is
/// stored, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posts_waiting_for_redis_are_bounded() {
    let redis = RedisProcess::start(true);
    let args = ["--port", "0", "--redis", &redis.url, "--max-pending-writes", "1"];
    let args = [&args[..], &["--rate-per-second", "100000", "--rate-burst", "100000"]].concat();
    let one = Running::start(&args, &[]);
    let address = one.address();
    let (mut ann, _) = join(&address, "r", "ann").await;
    const BURST: usize = 200;
    for i in 0..BURST {
        ann.say_with_id(&format!("m{i}"), &format!("k{i}")).await;
    }
    let (mut acked, mut refused) = (Vec::new(), 0);
    while acked.len() + refused < BURST {
        match ann.recv().await {
            ServerMessage::Ack { id, .. } => acked.push(id),
            ServerMessage::Error { code: ErrorCode::Unavailable, client_id: Some(_), .. } => {
                refused += 1
            }
            _ => {}
        }
    }
    assert!(refused > 0, "a burst of {BURST} with one place: some refused");
    let busy = common::get(&address, "/metrics");
    assert!(busy.lines().any(|l| l.starts_with("chat_store_busy_total") && !l.ends_with(" 0")));
    let (_, welcome) = join(&address, "r", "cy").await;
    let kept: Vec<MessageId> = welcome.history.iter().map(|m| m.id).collect();
    acked.sort_unstable();
    assert_eq!(kept, acked, "exactly the acknowledged ones are stored");
}

/// A server started while its Redis is away waits for it (logging so), survives a SIGHUP
/// meanwhile (a certificate renewal's reload), and serves once Redis is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_waits_for_redis_at_start_through_a_sighup() {
    let mut redis = RedisProcess::start(true);
    redis.kill();
    let server = Running::start(&["--port", "0", "--redis", &redis.url], &[]);
    server.wait_for_log("waiting for Redis");
    let pid = server.pid().to_string();
    let status = std::process::Command::new("kill").args(["-HUP", &pid]).status().expect("kill");
    assert!(status.success());
    redis.restart(true);
    let (_ann, welcome) = join(&server.address(), "r", "ann").await;
    assert_eq!(welcome.nick, "ann");
}

/// With --redis, a Redis that may lose acknowledged messages is refused at start, by name;
/// `--redis-accept-weak-durability` starts anyway. Without --redis, nothing connects to Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_may_lose_messages_is_refused() {
    let weak = RedisProcess::start(false);
    let mut refused = Running::start(&["--port", "0", "--redis", &weak.url], &[]);
    let status = refused.exit_status();
    assert!(!status.success());
    let log = refused.log_lines().join("\n");
    for setting in ["appendonly", "appendfsync", "maxmemory-policy"] {
        assert!(log.contains(setting), "the refusal names {setting}: {log}");
    }
    let accepted = Running::start(
        &["--port", "0", "--redis", &weak.url, "--redis-accept-weak-durability"],
        &[],
    );
    let address = accepted.address();
    let (_ann, welcome) = join(&address, "r", "ann").await;
    assert_eq!(welcome.nick, "ann");
    let clients = |redis: &RedisProcess| redis.bulk(&["CLIENT", "LIST"]).lines().count();
    // Without --redis: chatting on a server leaves Redis with no more clients than before.
    let durable = RedisProcess::start(true);
    let before = clients(&durable);
    let plain = Running::start(&["--port", "0"], &[("CHAT_REDIS_UNUSED", &durable.url)]);
    let (mut cy, _) = join(&plain.address(), "r", "cy").await;
    cy.say_with_id("hi", "h").await;
    cy.ack_of("h").await;
    assert_eq!(clients(&durable), before);
}

/// Registers `nick` on `address` with a good password: the answer's status and, on success,
/// the session cookie (`chat_session=...`).
fn register(address: &str, nick: &str) -> (u16, Option<String>) {
    let origin = format!("http://{address}");
    let headers = [("Origin", origin.as_str()), ("Content-Type", "application/json")];
    let body = serde_json::json!({"nick": nick, "password": "correct horse battery"});
    let answer = common::request(address, "POST", "/account/register", &headers, &body.to_string());
    let cookie = answer.header("set-cookie").map(|c| c.split(';').next().unwrap_or("").to_owned());
    (answer.status, cookie)
}

/// `server admin --redis URL ...`: its output.
fn admin(redis: &RedisProcess, args: &[&str]) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_server"))
        .args(["--redis", &redis.url, "admin"])
        .args(args)
        .output()
        .expect("runs");
    assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Accounts live in the shared Redis: a nick registered through one server is taken on the
/// other, its session cookie opens a WebSocket on the other, its role there is the same, the
/// signed-in mark crosses servers, and a moderator on one server bans a member connected to
/// the other (closed with 4005, its address refused on either server); `server admin --redis`
/// reads and changes the same accounts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_and_moderation_are_shared() {
    let redis = RedisProcess::start(true);
    let (_one, a) = server(&redis);
    let (_two, b) = server(&redis);
    let (status, cookie) = register(&a, "olga");
    assert_eq!(status, 201);
    assert_eq!(register(&b, "OLGA").0, 409, "taken through the other server");
    let cookie = cookie.expect("a session cookie");
    let origin = format!("http://{b}");
    let headers = [("Origin", origin.as_str()), ("Cookie", cookie.as_str())];
    let mut olga = Client::open_with(&url(&b, "room=den"), &headers).await.expect("connected");
    let welcome = olga.welcome().await;
    assert_eq!(welcome.nick, "olga", "signed in on the other server");
    assert_eq!(welcome.role, Some(protocol::Role::Owner), "the first signed-in joiner");

    let mut guest = Client::connect(&url(&a, "room=den&nick=Olga")).await;
    assert_eq!(guest.error_skipping().await, ErrorCode::NickTaken);
    let (mut troll, welcome) = join(&a, "den", "troll").await;
    assert_eq!(welcome.signed_in, ["olga"], "marked on the other server too");
    let joined = olga
        .recv_until(|m| match m {
            ServerMessage::Joined { nick, signed_in, .. } => Some((nick, signed_in)),
            _ => None,
        })
        .await;
    assert_eq!(joined, ("troll".to_owned(), false));

    let ban = serde_json::json!({
        "type": "moderate", "room": "den", "nick": "troll", "action": "ban", "minutes": 60
    });
    olga.send_text(&ban.to_string()).await;
    let closed = troll.closed().await.expect("a close frame");
    assert_eq!(u16::from(closed.code), protocol::close::REMOVED);
    assert_eq!(closed.reason.as_str(), "olga banned you from #den");
    for address in [&a, &b] {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // The ban is written by the server that held the seat, after the close.
            let mut back = Client::connect(&url(address, "room=den&nick=troll2")).await;
            match back.recv().await {
                ServerMessage::Error { code: ErrorCode::Banned, .. } => break,
                other => assert!(Instant::now() < deadline, "{address}: {other:?}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // Lifted on her server, the ban ends on the other too.
    let unban =
        serde_json::json!({"type": "moderate", "room": "den", "nick": "troll", "action": "unban"});
    olga.send_text(&unban.to_string()).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut guest = loop {
        let mut guest = Client::connect(&url(&a, "room=den&nick=visitor")).await;
        match guest.recv().await {
            ServerMessage::Welcome { .. } => break guest,
            other => assert!(Instant::now() < deadline, "{other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // The owner makes the room private on her server: the guest on the other server leaves,
    // and that server refuses guests and leaves it out of its lists from then on.
    let private = serde_json::json!({"type": "configure", "room": "den", "private": true});
    olga.send_text(&private.to_string()).await;
    assert_eq!(guest.close_code().await, protocol::close::REMOVED, "removed on the other server");
    let mut late = Client::connect(&url(&a, "room=den&nick=late")).await;
    assert_eq!(late.error_skipping().await, ErrorCode::Forbidden);
    let (mut lister, _) = join(&a, "lobby", "lister").await;
    let listed: Vec<String> = lister.list_rooms().await.into_iter().map(|r| r.name).collect();
    assert!(!listed.contains(&"den".to_owned()), "{listed:?}");

    let listed = admin(&redis, &["list-accounts"]);
    assert!(listed.starts_with("olga\t") && listed.contains("den:owner"), "{listed}");
    admin(&redis, &["revoke-owner", "den"]);
    let log = admin(&redis, &["audit-log"]);
    assert!(log.contains("olga\tban\tden\ttroll until"), "{log}");
    assert!(log.contains("admin\trevoke-owner\tden\tolga"), "{log}");
}

/// `server admin` on the data folder of a server that keeps its accounts in Redis refuses to
/// work without that Redis (an operator's shell without the unit's CHAT_REDIS would otherwise
/// read and change a database no server reads); given `--redis` (after the command too) it
/// finds them.
#[test]
fn admin_finds_the_accounts_where_the_server_keeps_them() {
    let redis = RedisProcess::start(true);
    let data = tempfile::tempdir().expect("data folder");
    let server = Running::start_storing(data.path(), &["--port", "0", "--redis", &redis.url]);
    let address = server.address();
    assert_eq!(register(&address, "olga").0, 201);
    let run = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_server"))
            .arg("--data-dir")
            .arg(data.path())
            .arg("admin")
            .args(args)
            .env_remove("CHAT_REDIS")
            .output()
            .expect("runs");
        let said = [output.stdout, output.stderr].concat();
        (output.status.success(), String::from_utf8_lossy(&said).into_owned())
    };
    let (done, said) = run(&["list-accounts"]);
    assert!(!done && said.contains("keeps its accounts in Redis"), "{said}");
    let (done, said) = run(&["list-accounts", "--redis", &redis.url]);
    assert!(done && said.contains("olga"), "{said}");
}
