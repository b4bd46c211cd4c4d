//! The Redis engine's message log (`server::redis_log`) against a real `redis-server` (Debian's,
//! installed by `scripts/setup --test`), started on a free loopback port with its own folder:
//! the post script's ids, epochs, de-duplication, trimming and publications, its atomicity
//! under concurrent posts, and the check of a Redis's durability settings.

use std::time::Duration;

use testclient::redis::RedisProcess;

use futures::StreamExt;
use server::redis_keys::{Published, channel};
use server::redis_log::{LogLimits, RedisLog, weak_settings};
use tokio::time::Instant;

/// Keeps `retain` messages a room, bytes and rooms without a bound that matters here.
fn limits(retain: usize) -> LogLimits {
    LogLimits { retain, retain_bytes: 1 << 30, max_rooms: 1000, remember_secs: 3600 }
}

async fn log(redis: &RedisProcess, retain: usize) -> RedisLog {
    RedisLog::connect(&redis.url, limits(retain)).await.expect("connected")
}

/// Ids count from 1 in each room, and a room keeps the epoch its first post made: later posts
/// that bring another epoch do not change it.
#[tokio::test]
async fn ids_count_per_room_under_one_epoch() {
    let redis = RedisProcess::start(true);
    let log = log(&redis, 100).await;
    let mut ids = Vec::new();
    for (room, epoch) in [("a", "e1"), ("a", "e2"), ("b", "e3"), ("a", "e4")] {
        let posted = log.post(room, "ann", None, "hi", epoch).await.expect("posted");
        ids.push((room, posted.id, posted.epoch, posted.repeat));
    }
    let expected = [
        ("a", 1, "e1".to_owned(), false),
        ("a", 2, "e1".to_owned(), false),
        ("b", 1, "e3".to_owned(), false),
        ("a", 3, "e1".to_owned(), false),
    ];
    assert_eq!(ids, expected);
    assert_eq!(log.head("a").await.expect("head"), Some(("e1".to_owned(), 3)));
    assert_eq!(log.head("never").await.expect("head"), None);
}

/// A client id is stored once per room and sender: a repeat gets the original id and stores
/// nothing; the same client id from another sender, or in another room, is another message.
#[tokio::test]
async fn a_client_id_is_stored_once_per_room_and_sender() {
    let redis = RedisProcess::start(true);
    let log = log(&redis, 100).await;
    let first = log.post("a", "ann", Some("k1"), "one", "e").await.expect("posted");
    let again = log.post("a", "ann", Some("k1"), "one", "e").await.expect("posted");
    assert_eq!((again.id, again.repeat), (first.id, true));
    let other_sender = log.post("a", "bob", Some("k1"), "two", "e").await.expect("posted");
    let other_room = log.post("b", "ann", Some("k1"), "three", "e").await.expect("posted");
    assert!(!other_sender.repeat && !other_room.repeat);
    let stored = log.after("a", 0, 100).await.expect("read");
    assert_eq!(stored, [(1, "one".to_owned()), (2, "two".to_owned())], "the repeat stored nothing");
}

/// The stream keeps the newest `retain` messages; reading after an id gives what follows it,
/// oldest first.
#[tokio::test]
async fn the_log_keeps_the_newest_and_reads_after_an_id() {
    let redis = RedisProcess::start(true);
    let log = log(&redis, 5).await;
    for i in 1..=8 {
        log.post("r", "ann", None, &format!("m{i}"), "e").await.expect("posted");
    }
    let ids = |page: Vec<(u64, String)>| page.into_iter().map(|(id, _)| id).collect::<Vec<_>>();
    assert_eq!(ids(log.after("r", 0, 100).await.expect("read")), [4, 5, 6, 7, 8]);
    assert_eq!(ids(log.after("r", 6, 100).await.expect("read")), [7, 8]);
    assert_eq!(ids(log.after("r", 4, 2).await.expect("read")), [5, 6]);
    assert!(log.after("r", 8, 100).await.expect("read").is_empty());
}

/// Redis's memory is bounded as the database is: a room keeps its newest messages within the
/// retention in bytes (its newest whatever its size), and past the most rooms a room's first
/// message is refused while rooms with messages go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_and_their_bytes_are_bounded() {
    let redis = RedisProcess::start(true);
    let limits = LogLimits { retain: 100, retain_bytes: 300, max_rooms: 2, remember_secs: 60 };
    let log = RedisLog::connect(&redis.url, limits).await.expect("connected");
    let entry = "x".repeat(100);
    for _ in 0..10 {
        assert!(!log.post("a", "ann", None, &entry, "e").await.expect("posted").refused);
    }
    let kept = log.after("a", 0, 100).await.expect("read");
    let ids: Vec<_> = kept.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, [8, 9, 10], "three entries of 100 bytes within 300");
    let huge = "y".repeat(1000);
    log.post("a", "ann", None, &huge, "e").await.expect("posted");
    let kept = log.after("a", 0, 100).await.expect("read");
    assert_eq!(kept.iter().map(|(id, _)| *id).collect::<Vec<_>>(), [11], "the newest stays");
    assert!(!log.post("b", "ann", None, "hi", "e").await.expect("posted").refused);
    let third = log.post("c", "ann", None, "hi", "e").await.expect("answered");
    assert!(third.refused, "a third room with messages is one too many");
    assert!(log.after("c", 0, 10).await.expect("read").is_empty());
    assert!(!log.post("b", "ann", None, "again", "e").await.expect("posted").refused);
}

/// A room has an epoch before its first message (every welcome names one), but the key of a
/// room without messages expires unless renewed (a name joined once costs Redis nothing for
/// long); the first message keeps it for good, under the same epoch.
#[tokio::test]
async fn an_empty_rooms_epoch_lasts_while_renewed() {
    let redis = RedisProcess::start(true);
    let log = log(&redis, 100).await;
    assert_eq!(log.ensure_epoch("q", "e1").await.expect("made"), "e1");
    assert_eq!(log.ensure_epoch("q", "e2").await.expect("kept"), "e1", "made once");
    let ttl = |redis: &RedisProcess| -> i64 {
        redis.command(&["TTL", "chat:{q}:meta"]).trim_start_matches(':').parse().expect("ttl")
    };
    let expiry = i64::try_from(server::redis_log::EMPTY_ROOM_EPOCH_SECS).expect("small");
    assert!((1..=expiry).contains(&ttl(&redis)), "expires while the room has no message");
    let posted = log.post("q", "ann", None, "hi", "e3").await.expect("posted");
    assert_eq!(posted.epoch, "e1", "the first message keeps the room's epoch");
    assert_eq!(ttl(&redis), -1, "and the key for good");
}

/// Every stored post is published on the room's channel with its epoch and id, in id order; a
/// repeat is not published again.
#[tokio::test]
async fn posts_are_published_with_epoch_and_id() {
    let redis = RedisProcess::start(true);
    let log = log(&redis, 100).await;
    let client = redis::Client::open(redis.url.as_str()).expect("client");
    let mut subscriber = client.get_async_pubsub().await.expect("pubsub");
    subscriber.subscribe(channel("r")).await.expect("subscribed");
    log.post("r", "ann", Some("k"), "first", "e").await.expect("posted");
    log.post("r", "ann", Some("k"), "first", "e").await.expect("repeat");
    log.post("r", "bob", None, "second: with a colon", "e").await.expect("posted");
    let mut messages = subscriber.on_message();
    let mut got = Vec::new();
    while got.len() < 2 {
        let message = tokio::time::timeout(Duration::from_secs(5), messages.next())
            .await
            .expect("a publication in time")
            .expect("the subscription is open");
        let payload: String = message.get_payload().expect("text");
        got.push(Published::parse(&payload).expect("a publication"));
    }
    let expected = [
        Published { epoch: "e".into(), id: 1, message: "first".into() },
        Published { epoch: "e".into(), id: 2, message: "second: with a colon".into() },
    ];
    assert_eq!(got, expected);
}

/// Posts racing from several connections get distinct ids with no gap, and the stream holds
/// them in id order: the script runs atomically.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_posts_get_distinct_ids_in_order() {
    let redis = RedisProcess::start(true);
    let mut tasks = Vec::new();
    for sender in 0..4 {
        let log = log(&redis, 1_000).await;
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            let name = format!("s{sender}");
            for i in 0..100 {
                let (text, client_id) = (format!("{sender}-{i}"), format!("c{i}"));
                let posted = log.post("race", &name, Some(&client_id), &text, "e");
                ids.push(posted.await.expect("posted").id);
            }
            ids
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        let ids = task.await.expect("task");
        assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "one sender's ids increase");
        all.extend(ids);
    }
    all.sort_unstable();
    assert_eq!(all, (1..=400).collect::<Vec<_>>());
    let stored = log(&redis, 1_000).await.after("race", 0, 1_000).await.expect("read");
    let ids: Vec<u64> = stored.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, (1..=400).collect::<Vec<_>>());
}

/// A Redis that would lose acknowledged messages is told apart: without an append-only file
/// synced on every write and with eviction allowed, each weak setting is named; with them,
/// none.
#[tokio::test]
async fn weak_durability_settings_are_named() {
    let weak = RedisProcess::start(false);
    let mut connection = log(&weak, 10).await.connection();
    let found = weak_settings(&mut connection).await.expect("config read");
    assert_eq!(found.len(), 3, "{found:?}");
    assert!(found[0].starts_with("appendonly: no"), "{found:?}");

    let durable = RedisProcess::start(true);
    let mut connection = log(&durable, 10).await.connection();
    assert!(weak_settings(&mut connection).await.expect("config read").is_empty());
}

/// A follower hands on every message of a burst from two posters exactly once and in id
/// order, although its pub/sub connection is killed (`CLIENT KILL TYPE pubsub`) again and
/// again during the burst: the holes are filled from the stream, and what was missed at the
/// end is found by the head check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_misses_nothing_when_its_subscription_is_killed() {
    use server::redis_log::Followed;
    const PER_POSTER: u64 = 300;
    let redis = RedisProcess::start(true);
    let follower = log(&redis, 10_000).await;
    let (sink, mut followed) = tokio::sync::mpsc::unbounded_channel();
    let following = tokio::spawn(async move {
        follower.follow("burst", (None, 0), Duration::from_millis(50), sink).await;
    });
    // Wait until the follower is subscribed, so that it starts before the first post.
    let mut admin = log(&redis, 10).await.connection();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, subscribers): (String, u32) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(channel("burst"))
            .query_async(&mut admin)
            .await
            .expect("numsub");
        if subscribers == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the follower never subscribed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let posting = async {
        let posters = (0..2).map(|poster| {
            let url = redis.url.clone();
            tokio::spawn(async move {
                let log = RedisLog::connect(&url, limits(10_000)).await.expect("connected");
                for i in 0..PER_POSTER {
                    let text = format!("{poster}-{i}");
                    log.post("burst", &format!("p{poster}"), None, &text, "e")
                        .await
                        .expect("posted");
                }
            })
        });
        for poster in posters.collect::<Vec<_>>() {
            poster.await.expect("poster");
        }
    };
    let kills = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let killer = {
        let (kills, mut admin) = (kills.clone(), admin.clone());
        tokio::spawn(async move {
            loop {
                let killed: u32 = redis::cmd("CLIENT")
                    .arg("KILL")
                    .arg("TYPE")
                    .arg("pubsub")
                    .query_async(&mut admin)
                    .await
                    .expect("client kill");
                kills.fetch_add(killed, std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    posting.await;
    killer.abort();
    let kills = kills.load(std::sync::atomic::Ordering::Relaxed);
    assert!(kills > 0, "the subscription was killed during the burst");
    eprintln!("{kills} pub/sub connections killed during the burst");

    let mut ids = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while ids.len() < (2 * PER_POSTER) as usize {
        let next = tokio::time::timeout_at(deadline, followed.recv()).await;
        match next.expect("every message in time").expect("the follower runs") {
            Followed::Message(id, _) => ids.push(id),
            // The room's first post made its epoch: told once, before its messages.
            Followed::Epoch(epoch) => assert!(ids.is_empty() && epoch == "e", "{epoch}"),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(ids, (1..=2 * PER_POSTER).collect::<Vec<_>>(), "each once, in order");
    drop(followed);
    following.abort();
}

/// A room's members are the union over the servers that are alive; a leave removes one; the
/// members of a server that stops refreshing (it died) disappear from every list once its
/// expiry passes, and are then removed from the room for good.
#[tokio::test]
async fn presence_is_the_union_of_live_servers() {
    use server::redis_presence::Presence;
    let redis = RedisProcess::start(true);
    // Long enough that a live server's refresh never lapses on a loaded machine.
    let expiry = Duration::from_secs(2);
    let one = Presence::new(log(&redis, 10).await.connection(), "one", expiry);
    let two = Presence::new(log(&redis, 10).await.connection(), "two", expiry);
    for server in [&one, &two] {
        server.refresh().await.expect("refreshed");
    }
    one.join("r", "ann", "").await.expect("joined");
    two.join("r", "bob", "").await.expect("joined");
    two.join("r", "Cy", "").await.expect("joined");
    one.join("elsewhere", "dan", "").await.expect("joined");
    assert_eq!(one.members("r").await.expect("members"), ["ann", "bob", "Cy"]);
    two.leave("r", "bob").await.expect("left");
    two.refresh().await.expect("refreshed");
    assert_eq!(two.members("r").await.expect("members"), ["ann", "Cy"]);

    // Server two dies: it refreshes no more. One goes on.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        one.refresh().await.expect("refreshed");
        if one.members("r").await.expect("members") == ["ann"] {
            break;
        }
        assert!(Instant::now() < deadline, "two's members never went");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut connection = log(&redis, 10).await.connection();
    let fields: u32 = redis::cmd("HLEN")
        .arg("chat:{r}:members")
        .query_async(&mut connection)
        .await
        .expect("hlen");
    assert_eq!(fields, 1, "the dead server's member was removed");
}
