//! The idle-connections scenario: open N WebSocket connections that then say nothing, and read
//! what they cost the server in resident memory (`VmRSS` from `/proc/PID/status`, before and
//! after) and how fast they were accepted.
//!
//! One process may hold at most 20,000 open files here, so the connections are spread over
//! several worker processes (this binary, `bench idle-worker`), each binding its connections to
//! its own loopback source address (127.0.0.2, 127.0.0.3, ...) so ephemeral ports never run
//! short. Members are spread over small rooms: every join is announced to the room, and idle
//! memory, not join fan-out, is what this measures.

use std::io::{BufRead, BufReader, Read};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use testclient::Client;

use crate::usage::rss_kib;

/// What to run.
#[derive(Debug, Clone, clap::Args)]
pub struct Idle {
    /// Connections to open.
    #[arg(long, default_value_t = 19_000)]
    pub connections: usize,
    /// Members per room.
    #[arg(long, default_value_t = 10)]
    pub per_room: usize,
    /// Worker processes the connections are spread over.
    #[arg(long, default_value_t = 4)]
    pub processes: usize,
    /// Rooms each connection is in (ours only: the peers know one room per connection); the
    /// others are added with `join` and `add` once the first welcome came.
    #[arg(long, default_value_t = 1)]
    pub rooms_per_connection: usize,
}

/// What one run measured.
#[derive(Debug, Clone)]
pub struct IdleOutcome {
    pub connections: usize,
    pub connect_time: Duration,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
}

impl IdleOutcome {
    pub fn kib_per_connection(&self) -> f64 {
        self.rss_after_kib.saturating_sub(self.rss_before_kib) as f64 / self.connections as f64
    }

    pub fn connects_per_second(&self) -> f64 {
        self.connections as f64 / self.connect_time.as_secs_f64()
    }
}

/// The resident size once it has stopped moving (two reads 500 ms apart within 1%, or 10 s).
fn settled_rss_kib(pid: u32) -> Result<u64> {
    let start = Instant::now();
    let mut last = rss_kib(pid)?;
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let now = rss_kib(pid)?;
        if now.abs_diff(last) * 100 <= last || start.elapsed() > Duration::from_secs(10) {
            return Ok(now);
        }
        last = now;
    }
}

/// Runs the scenario against the server process `pid` listening on `address`.
pub fn run(address: SocketAddr, pid: u32, load: &Idle) -> Result<IdleOutcome> {
    let processes = load.processes.clamp(1, 250);
    let rss_before_kib = settled_rss_kib(pid)?;
    let exe = std::env::current_exe().context("the bench binary")?;
    let started = Instant::now();
    let mut workers = Vec::new();
    let mut first = 0;
    for worker in 0..processes {
        let count =
            load.connections / processes + usize::from(worker < load.connections % processes);
        let source = Ipv4Addr::new(127, 0, 0, u8::try_from(worker + 2).unwrap_or(u8::MAX));
        let child = Command::new(&exe)
            .args(["idle-worker", "--address", &address.to_string(), "--source"])
            .arg(source.to_string())
            .args(["--first", &first.to_string(), "--count", &count.to_string()])
            .args(["--per-room", &load.per_room.to_string()])
            .args(["--rooms", &load.rooms_per_connection.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting a worker")?;
        workers.push(child);
        first += count;
    }
    // Each worker prints one line once all its connections are open.
    for worker in &mut workers {
        let stdout = worker.stdout.take().context("worker stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).context("reading a worker")?;
        if !line.starts_with("connected") {
            bail!("a worker failed: {line:?}");
        }
    }
    let connect_time = started.elapsed();
    let rss_after_kib = settled_rss_kib(pid)?;
    for mut worker in workers {
        // Closing stdin tells the worker to close its connections and exit.
        drop(worker.stdin.take());
        let _ = worker.wait();
    }
    Ok(IdleOutcome { connections: load.connections, connect_time, rss_before_kib, rss_after_kib })
}

/// The worker: opens `count` connections from `source`, answers pings, prints `connected` once
/// all are open, and holds them until its standard input closes.
pub async fn worker(
    address: SocketAddr,
    source: Ipv4Addr,
    first: usize,
    count: usize,
    per_room: usize,
    rooms: usize,
) -> Result<()> {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    // Each connection is read from as soon as it is open: reading answers the server's pings
    // (it drops clients that stay silent) and notices closes.
    let holders = futures::stream::iter(first..first + count)
        .map(|n| async move {
            let ws = open(address, source, n, per_room.max(1), rooms.max(1)).await?;
            Ok::<_, anyhow::Error>(tokio::spawn(async move {
                let (_sink, mut stream) = ws.split();
                while stream.next().await.is_some() {}
            }))
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>>>()?;
    #[allow(clippy::print_stdout)]
    {
        println!("connected {count}");
    }
    // Hold until the parent closes our stdin.
    tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
    })
    .await
    .context("waiting for stdin")?;
    for holder in holders {
        holder.abort();
    }
    Ok(())
}

async fn open(
    address: SocketAddr,
    source: Ipv4Addr,
    n: usize,
    per_room: usize,
    rooms: usize,
) -> Result<Client> {
    let query = format!("room=idle-{}&nick=i{n}", n / per_room);
    let mut ws = Client::open_from(address, IpAddr::V4(source), &query)
        .await
        .with_context(|| format!("connecting {n} from {source}"))?;
    if rooms > 1 {
        // One room at a time, each after the welcome of the one before.
        for extra in 0..rooms {
            if extra > 0 {
                let room = format!("idle-{}-{extra}", n / per_room);
                let join = serde_json::json!({"type": "join", "room": room, "add": true});
                ws.send_frame(testclient::Message::text(join.to_string())).await?;
            }
            loop {
                match ws.next_message().await {
                    Some(protocol::ServerMessage::Welcome { .. }) => break,
                    Some(protocol::ServerMessage::Error { message, .. }) => {
                        bail!("refused: {message}")
                    }
                    Some(_) => continue,
                    None => bail!("connection {n} closed while joining"),
                }
            }
        }
    }
    Ok(ws)
}
