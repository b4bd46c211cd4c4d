//! The join scenario: rooms that already hold a history, and new connections joining them at a
//! fixed rate. Each join is timed from the start of its TCP connect to the upgrade and to the
//! `welcome` frame (a server that sends none, like the peers, is done at the upgrade), and the
//! bytes it received up to the welcome are counted. Each joiner closes right after its welcome,
//! as a page that is reloaded does, so rooms keep their size and the server pays for the leave
//! too.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hdrhistogram::Histogram;
use testclient::{Client, Message};
use tokio::sync::Mutex;

/// What to run.
#[derive(Debug, Clone, clap::Args)]
pub struct Joins {
    /// Rooms joined (in turn); each keeps one member for the whole run.
    #[arg(long, default_value_t = 10)]
    pub rooms: usize,
    /// Messages each room holds before the joins start.
    #[arg(long, default_value_t = 1000)]
    pub history: usize,
    /// Bytes of text per message.
    #[arg(long, default_value_t = 100)]
    pub text_bytes: usize,
    /// Joins per second.
    #[arg(long, default_value_t = 100)]
    pub rate: u32,
    /// How long joins go on.
    #[arg(long, default_value = "10s")]
    pub duration: humantime::Duration,
    /// Each join says it saw the room up to this many messages before its last (`since`), so its
    /// welcome catches up on them; 0 joins without `since` (the welcome has the recent messages).
    #[arg(long, default_value_t = 0)]
    pub missed: usize,
}

/// What one run measured.
#[derive(Debug)]
pub struct JoinOutcome {
    pub joins: u64,
    pub failed: u64,
    /// Microseconds from connect to the completed upgrade.
    pub upgrade: Histogram<u64>,
    /// Microseconds from connect to the welcome.
    pub welcome: Histogram<u64>,
    /// WebSocket payload bytes received up to and including the welcome, over all joins.
    pub bytes: u64,
    /// Messages the welcomes carried, over all joins.
    pub history: u64,
    pub server_cpu: Option<Duration>,
}

impl JoinOutcome {
    pub fn ms(histogram: &Histogram<u64>, q: f64) -> f64 {
        histogram.value_at_quantile(q) as f64 / 1000.0
    }

    pub fn cpu_micros_per_join(&self) -> Option<f64> {
        let cpu = self.server_cpu?;
        (self.joins > 0).then(|| cpu.as_secs_f64() * 1e6 / self.joins as f64)
    }

    pub fn bytes_per_join(&self) -> f64 {
        self.bytes as f64 / self.joins.max(1) as f64
    }

    pub fn history_per_join(&self) -> f64 {
        self.history as f64 / self.joins.max(1) as f64
    }
}

/// The rooms, filled and each with its member: what joins arrive into.
pub struct Filled {
    holders: Vec<Client>,
    /// Per room, the ids of its messages in order (what `since` names).
    ids: Vec<Vec<u64>>,
    addresses: Vec<String>,
}

/// Opens every room with one member who sends it `load.history` messages, and waits until
/// each has come back (so they are stored). `address` may list several servers sharing rooms.
pub async fn fill(address: &str, load: &Joins) -> Result<Filled> {
    let addresses: Vec<String> = address.split(',').map(str::to_owned).collect();
    let text = "x".repeat(load.text_bytes);
    let mut holders = Vec::new();
    let mut ids = Vec::new();
    for room in 0..load.rooms {
        let url = testclient::url(&addresses[0], &format!("room=joins-{room}&nick=holder{room}"));
        let mut holder = Client::open(&url).await.with_context(|| format!("connecting {url}"))?;
        let room_ids = send_history(&mut holder, room, load.history, &text).await?;
        holders.push(holder);
        ids.push(room_ids);
    }
    Ok(Filled { holders, ids, addresses })
}

/// Sends `history` messages of `text` through `filler` into its room `room`, in bursts of 100,
/// each waited for so no limit of the server's is in play; the ids of the messages as they came
/// back. (`bench joins` and `bench storm` fill their rooms with it.)
pub async fn send_history(
    filler: &mut Client,
    room: usize,
    history: usize,
    text: &str,
) -> Result<Vec<u64>> {
    let mut ids = Vec::with_capacity(history);
    let deadline = Instant::now() + Duration::from_secs(60);
    while ids.len() < history {
        let burst = (history - ids.len()).min(100);
        for _ in 0..burst {
            let frame = format!(r#"{{"type":"send","text":"{text}"}}"#);
            filler.send_frame(Message::text(frame)).await.context("filling a room")?;
        }
        let target = ids.len() + burst;
        while ids.len() < target {
            let left = deadline.saturating_duration_since(Instant::now());
            let frame = tokio::time::timeout(left, filler.next_frame())
                .await
                .with_context(|| format!("room {room} took over a minute to fill"))?;
            let Some(Ok(frame)) = frame else {
                bail!("the connection filling room {room} ended");
            };
            if let Message::Text(frame) = frame
                && frame.starts_with(r#"{"type":"message""#)
            {
                ids.push(id_of(&frame).context("a message without an id")?);
            }
        }
    }
    Ok(ids)
}

/// The `"id":N` of a message frame.
fn id_of(frame: &str) -> Option<u64> {
    let rest = frame.split("\"id\":").nth(1)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Joins at `load.rate` per second for `load.duration` (each join its own task, so a slow one
/// does not delay the next), then waits for them, at most 10 s past the end. `welcome` says
/// whether the server sends one.
pub async fn run(filled: &Filled, load: &Joins, welcome: bool) -> Result<JoinOutcome> {
    let totals = Arc::new(Mutex::new(JoinOutcome {
        joins: 0,
        failed: 0,
        upgrade: crate::fanout::histogram()?,
        welcome: crate::fanout::histogram()?,
        bytes: 0,
        history: 0,
        server_cpu: None,
    }));
    let count = (load.duration.as_secs_f64() * f64::from(load.rate)).round() as usize;
    let mut tick = tokio::time::interval(Duration::from_secs(1) / load.rate.max(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::with_capacity(count);
    for n in 0..count {
        tick.tick().await;
        let room = n % filled.ids.len().max(1);
        let mut query = format!("room=joins-{room}&nick=j{n}");
        if load.missed > 0 {
            let room_ids = &filled.ids[room];
            let index = room_ids.len().saturating_sub(load.missed + 1);
            if let Some(id) = room_ids.get(index) {
                query.push_str(&format!("&since={id}"));
            }
        }
        let url = testclient::url(&filled.addresses[n % filled.addresses.len()], &query);
        let totals = totals.clone();
        tasks.push(tokio::spawn(async move {
            let timed = tokio::time::timeout(Duration::from_secs(10), join(&url, welcome)).await;
            let mut totals = totals.lock().await;
            match timed {
                Ok(Ok(one)) => {
                    totals.joins += 1;
                    totals.upgrade.saturating_record(one.upgrade);
                    totals.welcome.saturating_record(one.welcome);
                    totals.bytes += one.bytes;
                    totals.history += one.history;
                }
                Ok(Err(_)) | Err(_) => totals.failed += 1,
            }
        }));
    }
    for task in tasks {
        task.await.context("a join task")?;
    }
    let totals = Arc::try_unwrap(totals).map_err(|_| anyhow::anyhow!("a join task remains"))?;
    Ok(totals.into_inner())
}

impl Filled {
    /// Closes the rooms' members.
    pub fn close(self) {
        for holder in self.holders {
            holder.abort();
        }
    }
}

struct OneJoin {
    upgrade: u64,
    welcome: u64,
    bytes: u64,
    history: u64,
}

async fn join(url: &str, welcome: bool) -> Result<OneJoin> {
    let began = Instant::now();
    let mut client = Client::open(url).await?;
    let upgrade = micros(began.elapsed());
    let mut bytes = 0;
    let mut history = 0;
    if welcome {
        loop {
            match client.next_frame().await {
                Some(Ok(Message::Text(frame))) => {
                    bytes += frame.len() as u64;
                    if frame.starts_with(r#"{"type":"welcome""#) {
                        history = frame.matches(r#""from":"#).count() as u64;
                        break;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(error)) => return Err(error.into()),
                None => bail!("the connection ended before its welcome"),
            }
        }
    }
    let welcomed = micros(began.elapsed());
    let _ = client.send_frame(Message::Close(None)).await;
    Ok(OneJoin { upgrade, welcome: welcomed, bytes, history })
}

fn micros(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_read_from_message_frames() {
        let frame = r#"{"type":"message","id":1234,"room":"r","from":"a","text":"t","ts":5}"#;
        assert_eq!(id_of(frame), Some(1234));
        assert_eq!(id_of(r#"{"type":"message"}"#), None);
    }

    /// Against our server started in this process: every join is welcomed, each welcome brings
    /// the room's recent messages (or, with `since`, exactly the missed ones), and the bytes
    /// counted are at least those messages' texts.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn joins_are_timed_to_their_welcome() {
        let address = crate::serve_in_process(server::Config {
            // The rooms are filled in bursts, as `bench` runs our server.
            abuse: server::config::AbuseLimits {
                rate_per_second: 10_000,
                rate_burst: 10_000,
                ..Default::default()
            },
            ..server::Config::default()
        });
        let load = Joins {
            rooms: 2,
            history: 30,
            text_bytes: 50,
            rate: 20,
            duration: Duration::from_millis(500).into(),
            missed: 0,
        };
        let filled = fill(&address, &load).await.expect("rooms filled");
        assert!(filled.ids.iter().all(|ids| ids.len() == 30 && ids.is_sorted()));
        let outcome = run(&filled, &load, true).await.expect("joins run");
        assert_eq!((outcome.joins, outcome.failed), (10, 0));
        assert_eq!(outcome.history_per_join(), 30.0, "recent messages in each welcome");
        assert!(outcome.bytes_per_join() > 30.0 * 50.0, "bytes {}", outcome.bytes_per_join());
        assert!(JoinOutcome::ms(&outcome.welcome, 1.0) >= JoinOutcome::ms(&outcome.upgrade, 0.0));

        let missed = Joins { missed: 5, ..load };
        let outcome = run(&filled, &missed, true).await.expect("joins with since run");
        assert_eq!((outcome.joins, outcome.failed), (10, 0));
        assert_eq!(outcome.history_per_join(), 5.0, "only the missed messages");
        filled.close();
    }
}
