//! The load generator. `bench fanout --address HOST:PORT` drives one server; `bench compare`
//! starts our server and the reference peers (`../shared/peers/*/run PORT`) one after the
//! other on free loopback ports, runs the same load against each, and prints one table.
//!
//! Every run is bounded in time and count and only talks to 127.0.0.1.

mod capacity;
mod chart;
mod fanout;
mod idle;
mod joins;
mod storm;
mod usage;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

use crate::capacity::{Best, Search};
use crate::fanout::{Fanout, Outcome};
use crate::idle::{Idle, IdleOutcome};
use crate::joins::{JoinOutcome, Joins};
use crate::storm::{Storm, StormOutcome};

#[derive(Debug, Parser)]
#[command(about = "Load generator for servers speaking the chat's core wire format")]
struct Cli {
    #[command(subcommand)]
    command: Commands,
    /// Run only the servers whose name contains this (e.g. `node`, `ephemeral`).
    #[arg(long, global = true)]
    only: Option<String>,
}

/// Where the contenders come from: our server's binary and the reference peers.
#[derive(Debug, Clone, clap::Args)]
struct Binaries {
    /// Our server's release binary.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/release/server"))]
    server: PathBuf,
    /// The folder holding the reference peers.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/peers"))]
    peers: PathBuf,
}

#[derive(Debug, Subcommand)]
enum Commands {
    /// Run the fan-out scenario against one running server.
    Fanout {
        /// The server's address (loopback only), or several comma-separated (servers sharing
        /// rooms: the clients are split between them).
        #[arg(long)]
        address: String,
        #[command(flatten)]
        load: Fanout,
    },
    /// Raise the fan-out load step by step until p99 passes a limit or deliveries fall behind;
    /// report each server's highest sustained deliveries per second.
    Capacity {
        #[command(flatten)]
        binaries: Binaries,
        #[command(flatten)]
        search: Search,
        /// Also draw p99 against offered load for every server into this SVG file.
        #[arg(long)]
        chart: Option<PathBuf>,
        #[command(flatten)]
        load: Fanout,
    },
    /// Open many idle connections to our server and both peers; compare memory per connection.
    Idle {
        #[command(flatten)]
        binaries: Binaries,
        #[command(flatten)]
        load: Idle,
    },
    /// Fill rooms with history, then join them at a fixed rate; compare the time from connect to
    /// welcome and the server's CPU and bytes per join.
    Joins {
        #[command(flatten)]
        binaries: Binaries,
        #[command(flatten)]
        load: Joins,
    },
    /// Connect many clients to rooms with history, restart the server (SIGTERM, then the same
    /// command on the same port) and time how long until every client, reconnecting on the web
    /// client's backoff, has its welcome from the new server; with the server's peak CPU and
    /// memory meanwhile and every failed attempt by kind.
    Storm {
        #[command(flatten)]
        binaries: Binaries,
        #[command(flatten)]
        load: Storm,
    },
    /// One worker process of a spread fan-out run (started by it): connects its clients,
    /// prints `ready`, starts on a line from stdin, prints its counts as JSON.
    #[command(hide = true)]
    FanoutWorker {
        /// One server, or several comma-separated (servers sharing rooms).
        #[arg(long)]
        address: String,
        #[arg(long)]
        first: usize,
        #[arg(long)]
        count: usize,
        #[command(flatten)]
        load: Fanout,
    },
    /// One worker process of `idle` (started by it).
    #[command(hide = true)]
    IdleWorker {
        #[arg(long)]
        address: SocketAddr,
        #[arg(long)]
        source: std::net::Ipv4Addr,
        #[arg(long)]
        first: usize,
        #[arg(long)]
        count: usize,
        #[arg(long)]
        per_room: usize,
        #[arg(long, default_value_t = 1)]
        rooms: usize,
    },
    /// One worker process of `storm` (started by it): connects its clients, prints
    /// `connected N`, and after a line `restarted KILL EXIT` prints their counts as JSON once
    /// they are back.
    #[command(hide = true)]
    StormWorker {
        #[arg(long)]
        address: SocketAddr,
        #[arg(long)]
        source: std::net::Ipv4Addr,
        #[arg(long)]
        first: usize,
        #[arg(long)]
        count: usize,
        #[arg(long)]
        rooms: usize,
        /// The server welcomes each join (ours); without, a client is in at the upgrade.
        #[arg(long)]
        welcome: bool,
        #[arg(long)]
        deadline: humantime::Duration,
    },
    /// Run the fan-out scenario against our server and both peers, and compare.
    Compare {
        #[command(flatten)]
        binaries: Binaries,
        #[command(flatten)]
        load: Fanout,
    },
}

#[tokio::main]
async fn main() -> Result<()> {
    // Our server's database for this run, deleted at the end.
    let data = tempfile::tempdir().context("a temporary data directory")?;
    // Every connection is a file, here and in the servers started from here.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let cli = Cli::parse();
    let only = cli.only.as_deref();
    match cli.command {
        Commands::Idle { binaries, load } => {
            let mut rows = Vec::new();
            for (name, command) in contenders(&binaries, data.path(), only)? {
                let Launch::One(command) = command else {
                    continue; // one server's memory per connection: measured alone
                };
                if name == "chat ephemeral" {
                    continue; // storage plays no part in idle connections
                }
                if load.rooms_per_connection > 1 && name != "chat (ours)" {
                    eprintln!("{name}: skipped, one room per connection only");
                    continue;
                }
                let port = free_port()?;
                let process = Peer::start(&command, port)?;
                eprintln!("{name}: opening {} connections", load.connections);
                let address = SocketAddr::from(([127, 0, 0, 1], port));
                let outcome = idle::run(address, process.0.id(), &load)
                    .with_context(|| format!("idle connections to {name}"))?;
                drop(process);
                rows.push((name, outcome));
            }
            print_idle(&load, &rows);
        }
        Commands::IdleWorker { address, source, first, count, per_room, rooms } => {
            if !address.ip().is_loopback() || !source.is_loopback() {
                bail!("the load generator only uses loopback addresses");
            }
            idle::worker(address, source, first, count, per_room, rooms).await?;
        }
        Commands::Storm { binaries, load } => {
            let mut rows = Vec::new();
            for (name, command) in contenders(&binaries, data.path(), only)? {
                let Launch::One(command) = command else {
                    continue; // restarted as one process on its port
                };
                // Only our server welcomes; a peer's client is back at the upgrade.
                let outcome = storm::run(name, &command, name.starts_with("chat"), &load)
                    .await
                    .with_context(|| format!("the reconnect storm against {name}"))?;
                rows.push((name, outcome));
            }
            print_storm(&load, &rows);
        }
        Commands::StormWorker { address, source, first, count, rooms, welcome, deadline } => {
            if !address.ip().is_loopback() || !source.is_loopback() {
                bail!("the load generator only uses loopback addresses");
            }
            let plan = storm::Plan { address, source: source.into(), rooms, welcome };
            storm::worker(plan, first, count, *deadline).await?;
        }
        #[allow(clippy::print_stdout)] // the parent reads the worker's stdout
        Commands::FanoutWorker { address, first, count, load } => {
            loopback_only(&address)?;
            let share =
                fanout::Share::connect(&address.to_string(), &load, first..first + count).await?;
            println!("ready");
            let mut go = String::new();
            tokio::task::spawn_blocking(move || std::io::stdin().read_line(&mut go))
                .await
                .context("waiting for the start")??;
            let result = share.run().await?;
            println!("{}", result.to_line());
        }
        Commands::Fanout { address, load } => {
            loopback_only(&address)?;
            let outcome = fanout::run(&address, &load).await?;
            print_table(&load, &[("server", outcome)]);
        }
        Commands::Capacity { binaries, search, chart, load } => {
            let mut summary = Vec::new();
            let mut series = Vec::new();
            let processes = if search.try_processes.is_empty() {
                vec![load.processes]
            } else {
                search.try_processes.clone()
            };
            for (name, command) in contenders(&binaries, data.path(), only)? {
                let running = command.start()?;
                let address = running.address.clone();
                let mut best = capacity::Found::default();
                for &processes in &processes {
                    let load = Fanout { processes, ..load.clone() };
                    let found = capacity::search(name, &address, &load, &search).await?;
                    // The chart shows the configuration that did best.
                    let better = match (found.best, best.best) {
                        (Some(found), Some(best)) => found.delivered > best.delivered,
                        (Some(_), None) => true,
                        (None, Some(_)) => false,
                        (None, None) => best.steps.is_empty(),
                    };
                    if better {
                        best = found;
                    }
                }
                drop(running);
                summary.push((name, best.best));
                series.push((name, best.steps));
            }
            print_capacity(&load, search.p99_limit_ms, &summary);
            if let Some(path) = chart {
                let title = format!(
                    "p99 latency vs offered load: {} room(s) x {} clients, {} senders",
                    load.rooms, load.clients, load.senders
                );
                chart::write(&path, &title, search.p99_limit_ms, &series)?;
                eprintln!("chart written to {}", path.display());
            }
        }
        Commands::Joins { binaries, load } => {
            let mut rows = Vec::new();
            for (name, command) in contenders(&binaries, data.path(), only)? {
                let running = command.start()?;
                let address = running.address.clone();
                eprintln!("{name}: filling {} rooms with {} messages", load.rooms, load.history);
                let filled = joins::fill(&address, &load)
                    .await
                    .with_context(|| format!("filling rooms of {name}"))?;
                eprintln!("{name}: {} joins/s for {}", load.rate, load.duration);
                let cpu_before = running.cpu_time()?;
                // Only our server welcomes; the peers are done at the upgrade.
                let outcome = joins::run(&filled, &load, name.starts_with("chat")).await;
                let cpu = running.cpu_time()?.saturating_sub(cpu_before);
                filled.close();
                drop(running);
                let outcome = outcome.with_context(|| format!("joins into {name}"))?;
                rows.push((name, JoinOutcome { server_cpu: Some(cpu), ..outcome }));
            }
            print_joins(&load, &rows);
        }
        Commands::Compare { binaries, load } => {
            let mut rows = Vec::new();
            for (name, command) in contenders(&binaries, data.path(), only)? {
                let running = command.start()?;
                let address = running.address.clone();
                eprintln!("{name}: running the load against {address}");
                let cpu_before = running.cpu_time()?;
                let outcome = fanout::run(&address, &load).await;
                let cpu = running.cpu_time()?.saturating_sub(cpu_before);
                running.report_redis();
                drop(running);
                let outcome = outcome.with_context(|| format!("load against {name}"))?;
                rows.push((name, Outcome { server_cpu: Some(cpu), ..outcome }));
            }
            print_table(&load, &rows);
        }
    }
    Ok(())
}

/// Our server as shipped (storing every message durably in `data`), our server keeping
/// messages in memory only (what durability costs is the difference), two of our servers
/// sharing rooms through one Redis (clients split between them), and the two reference peers.
fn contenders(
    binaries: &Binaries,
    data: &std::path::Path,
    only: Option<&str>,
) -> Result<Vec<(&'static str, Launch)>> {
    let Binaries { server, peers } = binaries;
    if !server.is_file() {
        bail!("{} is missing: run `cargo build --release -p server`", server.display());
    }
    let all = [
        ("chat (ours)", Launch::One(ours(server, Some(data)))),
        ("chat ephemeral", Launch::One(ours(server, None))),
        ("chat 2x on Redis", Launch::OnRedis(ours(server, None), 2)),
        ("node-ws-chat", Launch::One(vec![peers.join("node-ws-chat/run").display().to_string()])),
        ("rust-minimal", Launch::One(vec![peers.join("rust-minimal/run").display().to_string()])),
    ];
    Ok(all.into_iter().filter(|(name, _)| only.is_none_or(|only| name.contains(only))).collect())
}

/// How a contender starts: one process taking the port last, or `n` of our servers (the
/// command without `--redis`) sharing one Redis of their own.
enum Launch {
    One(Vec<String>),
    OnRedis(Vec<String>, usize),
}

impl Launch {
    fn start(&self) -> Result<Running> {
        match self {
            Launch::One(command) => {
                let port = free_port()?;
                let process = Peer::start(command, port)?;
                Ok(Running {
                    address: format!("127.0.0.1:{port}"),
                    processes: vec![process],
                    redis: None,
                })
            }
            Launch::OnRedis(command, servers) => {
                let redis = testclient::redis::RedisProcess::start(true);
                let mut command = command.clone();
                let port_flag = command.pop().context("the command ends with --port")?;
                command.extend(["--redis".to_owned(), redis.url.clone(), port_flag]);
                let mut processes = Vec::new();
                let mut addresses = Vec::new();
                for _ in 0..*servers {
                    let port = free_port()?;
                    processes.push(Peer::start(&command, port)?);
                    addresses.push(format!("127.0.0.1:{port}"));
                }
                Ok(Running { address: addresses.join(","), processes, redis: Some(redis) })
            }
        }
    }
}

/// A started contender: its address (or addresses) and processes, stopped when dropped.
struct Running {
    address: String,
    processes: Vec<Peer>,
    redis: Option<testclient::redis::RedisProcess>,
}

impl Running {
    /// The CPU time its processes have used, Redis included.
    fn cpu_time(&self) -> Result<Duration> {
        let mut total = Duration::ZERO;
        for process in &self.processes {
            total += usage::cpu_time(process.0.id())?;
        }
        if let Some(redis) = &self.redis {
            total += usage::cpu_time(redis.pid())?;
        }
        Ok(total)
    }
}

impl Running {
    /// Where Redis spent its time (its own CPU and the commands' cost per call, from `INFO`),
    /// to stderr, for a contender on Redis.
    fn report_redis(&self) {
        let Some(redis) = &self.redis else { return };
        if let Ok(cpu) = usage::cpu_time(redis.pid()) {
            eprintln!("redis-server CPU over the whole run: {:.2} s", cpu.as_secs_f64());
        }
        let stats = redis.bulk(&["INFO", "commandstats"]);
        for line in stats.lines().filter(|line| {
            ["evalsha", "eval:", "xrange", "xrevrange", "publish", "hmget", "hset", "hgetall"]
                .iter()
                .any(|command| line.starts_with(&format!("cmdstat_{command}")))
        }) {
            eprintln!("redis {line}");
        }
    }
}

/// Refuses an address list with anything but loopback addresses.
fn loopback_only(addresses: &str) -> Result<()> {
    for address in addresses.split(',') {
        let address: SocketAddr = address.parse().with_context(|| format!("address {address}"))?;
        if !address.ip().is_loopback() {
            bail!("the load generator only targets loopback addresses");
        }
    }
    Ok(())
}

/// Our server, with the per-client protections opened up: the load generator is one address
/// sending far faster than a person. Messages go to a database in `data`, or stay in memory.
fn ours(server: &std::path::Path, data: Option<&std::path::Path>) -> Vec<String> {
    let mut command = vec![server.display().to_string()];
    match data {
        Some(dir) => command.extend(["--data-dir".to_owned(), dir.display().to_string()]),
        None => command.push("--ephemeral".to_owned()),
    }
    for flag in [
        "--rate-per-second",
        "--rate-burst",
        "--max-connections-per-address",
        "--joins-per-minute-per-address",
        "--room-opens-per-minute-per-address",
        "--max-open-rooms-per-address",
    ] {
        command.extend([flag.to_owned(), "100000000".to_owned()]);
    }
    command.extend(["--ui-dir".to_owned(), "/nonexistent".to_owned(), "--port".to_owned()]);
    command
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A server process, killed when dropped.
struct Peer(Child);

impl Peer {
    /// Starts `command PORT` and waits until it accepts connections (a peer may build itself
    /// on first use, so this waits up to five minutes).
    fn start(command: &[String], port: u16) -> Result<Self> {
        let peer = Self::spawn(command, port)?;
        let program = command.first().map_or("", String::as_str);
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if started.elapsed() > Duration::from_secs(300) {
                bail!("{program} did not listen on port {port}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(peer)
    }

    /// Starts `command PORT` without waiting for it to listen (`bench storm` times that).
    fn spawn(command: &[String], port: u16) -> Result<Self> {
        let (program, args) = command.split_first().context("empty command")?;
        let child = Command::new(program)
            .args(args)
            .arg(port.to_string())
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {program}"))?;
        Ok(Peer(child))
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The reference peers' figures in a table, to print every row as a ratio of them.
struct Peers {
    node: Option<f64>,
    minimal: Option<f64>,
}

impl Peers {
    /// The peers' `value` in `rows` (absent if a peer did not run or has no value).
    fn of<T>(rows: &[(&str, T)], value: impl Fn(&T) -> Option<f64>) -> Self {
        let find = |peer: &str| {
            rows.iter().find(|(name, _)| *name == peer).and_then(|(_, row)| value(row))
        };
        Peers { node: find("node-ws-chat"), minimal: find("rust-minimal") }
    }

    /// `value` against Node's and against rust-minimal's, as "1.23x" (or "-").
    fn ratios(&self, value: f64) -> (String, String) {
        let ratio =
            |base: Option<f64>| base.map_or("-".to_owned(), |b| format!("{:.2}x", value / b));
        (ratio(self.node), ratio(self.minimal))
    }
}

#[allow(clippy::print_stdout)]
fn print_idle(load: &Idle, rows: &[(&str, IdleOutcome)]) {
    println!(
        "idle: {} connections in rooms of {}, {} room(s) each, from {} processes on 127.0.0.2..; server RSS from /proc",
        load.connections, load.per_room, load.rooms_per_connection, load.processes
    );
    println!(
        "{:<16} {:>11} {:>10} {:>10} {:>10} {:>9} {:>14} {:>9} {:>12}",
        "server",
        "connections",
        "connect/s",
        "RSS0 MiB",
        "RSS MiB",
        "KiB/conn",
        "1M conns GiB",
        "vs node",
        "vs rust-min"
    );
    let peers = Peers::of(rows, |outcome| Some(outcome.kib_per_connection()));
    for (name, outcome) in rows {
        let each = outcome.kib_per_connection();
        let (vs_node, vs_minimal) = peers.ratios(each);
        println!(
            "{:<16} {:>11} {:>10.0} {:>10.1} {:>10.1} {:>9.2} {:>14.1} {:>9} {:>12}",
            name,
            outcome.connections,
            outcome.connects_per_second(),
            outcome.rss_before_kib as f64 / 1024.0,
            outcome.rss_after_kib as f64 / 1024.0,
            each,
            // One million connections at this cost, on top of the baseline.
            (outcome.rss_before_kib as f64 + each * 1e6) / 1024.0 / 1024.0,
            vs_node,
            vs_minimal,
        );
    }
}

#[allow(clippy::print_stdout)]
fn print_joins(load: &Joins, rows: &[(&str, JoinOutcome)]) {
    let since = match load.missed {
        0 => "without since".to_owned(),
        n => format!("since {n} messages back"),
    };
    println!(
        "joins: {} rooms of {} messages ({} bytes of text each), {} joins/s for {}, {since}; \
         timed from connect (peers send no welcome: theirs is the upgrade)",
        load.rooms, load.history, load.text_bytes, load.rate, load.duration
    );
    println!(
        "{:<16} {:>6} {:>6} {:>12} {:>9} {:>9} {:>10} {:>9} {:>12} {:>11} {:>11} {:>9} {:>9}",
        "server",
        "joins",
        "failed",
        "upgrade p99",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "p99 vs node",
        "p99 vs min",
        "CPU us/join",
        "CPU vs min",
        "KB/join",
        "msgs/join"
    );
    let p99 = Peers::of(rows, |row| Some(JoinOutcome::ms(&row.welcome, 0.99)));
    let cpu = Peers::of(rows, JoinOutcome::cpu_micros_per_join);
    for (name, row) in rows {
        let welcome_p99 = JoinOutcome::ms(&row.welcome, 0.99);
        let (vs_node, vs_minimal) = p99.ratios(welcome_p99);
        let per_join = row.cpu_micros_per_join();
        let cpu_vs_minimal = per_join.map_or("-".into(), |c| cpu.ratios(c).1);
        println!(
            "{:<16} {:>6} {:>6} {:>12.2} {:>9.2} {:>9.2} {:>10.2} {:>11} {:>12} {:>11} {:>11} {:>9.1} {:>9.1}",
            name,
            row.joins,
            row.failed,
            JoinOutcome::ms(&row.upgrade, 0.99),
            JoinOutcome::ms(&row.welcome, 0.5),
            welcome_p99,
            JoinOutcome::ms(&row.welcome, 0.999),
            vs_node,
            vs_minimal,
            per_join.map_or("-".into(), |c| format!("{c:.0}")),
            cpu_vs_minimal,
            row.bytes_per_join() / 1000.0,
            row.history_per_join(),
        );
    }
}

#[allow(clippy::print_stdout)]
fn print_storm(load: &Storm, rows: &[(&str, StormOutcome)]) {
    println!(
        "storm: {} clients in {} rooms of {} messages, from {} processes on 127.0.0.2..; the \
         server restarted (SIGTERM, exit, same command on the same port); clients reconnect on \
         the web client's backoff (equal jitter, 0.25-0.5 s doubling to 15 s) with since; times \
         to the welcome from the new server (peers: to the upgrade); deadline {}",
        load.clients, load.rooms, load.history, load.processes, load.deadline
    );
    println!(
        "{:<16} {:>7} {:>6} {:>10} {:>11} {:>7} {:>7} {:>8} {:>6} {:>8} {:>7} {:>7} {:>6} {:>9} {:>8} {:>7} {:>8}",
        "server",
        "clients",
        "back",
        "all back s",
        "from listen",
        "p50 s",
        "p99 s",
        "attempts",
        "/client",
        "refused",
        "http/hs",
        "closed",
        "never",
        "CPU cores",
        "RSS MiB",
        "gap s",
        "vs node"
    );
    let peers = Peers::of(rows, |row| row.all_back().map(|all| all.as_secs_f64()));
    let seconds =
        |value: Option<Duration>| value.map_or("-".into(), |v| format!("{:.2}", v.as_secs_f64()));
    for (name, row) in rows {
        let vs_node = row.all_back().map_or("-".into(), |all| peers.ratios(all.as_secs_f64()).0);
        println!(
            "{:<16} {:>7} {:>6} {:>10} {:>11} {:>7} {:>7} {:>8} {:>6.2} {:>8} {:>7} {:>7} {:>6} {:>9.2} {:>8.1} {:>7.2} {:>8}",
            name,
            row.clients,
            row.back.len(),
            seconds(row.all_back()),
            seconds(row.all_back_from_listening()),
            seconds(row.quantile(0.5)),
            seconds(row.quantile(0.99)),
            row.attempts,
            row.attempts_per_client(),
            row.failed(&[storm::REFUSED]),
            row.failed(&[storm::HTTP, storm::IO, storm::HANDSHAKE]),
            row.failed(&[storm::CLOSED, storm::NO_WELCOME]),
            row.never_back(),
            row.peak_cores,
            row.peak_rss_kib as f64 / 1024.0,
            row.listening.as_secs_f64(),
            vs_node,
        );
    }
    for (name, row) in rows {
        let failures: Vec<String> =
            row.failures.iter().map(|(kind, count)| format!("{kind} {count}")).collect();
        println!(
            "{name}: exited {:.2} s after SIGTERM, its clients' connections ended {} s (p50) and \
             {} s (last) after it; RSS {:.1} MiB before it; failed attempts and refused joins: \
             {}; {} connections dropped on a full accept queue; {} welcomed by the stopping \
             server; {} welcomes resumed after since, carrying {} messages; load generator CPU \
             {:.2} cores over {:.1} s",
            row.stopped.as_secs_f64(),
            seconds(row.dropped_quantile(0.5)),
            seconds(row.dropped_quantile(1.0)),
            row.rss_before_kib as f64 / 1024.0,
            if failures.is_empty() { "none".to_owned() } else { failures.join(", ") },
            row.listen_overflows.map_or("?".into(), |n| n.to_string()),
            row.stale,
            row.resumed,
            row.caught_up,
            row.generator_cpu.as_secs_f64() / row.generator_wall.as_secs_f64().max(1e-9),
            row.generator_wall.as_secs_f64(),
        );
    }
}

#[allow(clippy::print_stdout)]
fn print_capacity(load: &Fanout, p99_limit_ms: f64, rows: &[(&str, Option<Best>)]) {
    println!(
        "capacity: {} room(s) x {} clients, {} senders; highest load with p99 <= {p99_limit_ms} ms, \
         >= 95% delivered and nothing lost, {} per step",
        load.rooms, load.clients, load.senders, load.duration
    );
    println!(
        "{:<16} {:>16} {:>14} {:>10} {:>14} {:>10}",
        "server", "offered/s", "delivered/s", "vs node", "vs rust-min", "gen procs"
    );
    let peers = Peers::of(rows, |best| best.map(|best| best.delivered));
    for (name, best) in rows {
        let Some(best) = best else {
            println!("{name:<16} {:>16} {:>14}", "-", "below the first step");
            continue;
        };
        let (vs_node, vs_minimal) = peers.ratios(best.delivered);
        println!(
            "{name:<16} {:>16} {:>14.0} {vs_node:>10} {vs_minimal:>14} {:>10}",
            best.offered, best.delivered, best.processes
        );
    }
}

#[allow(clippy::print_stdout)]
fn print_table(load: &Fanout, rows: &[(&str, Outcome)]) {
    println!(
        "fan-out: {} room(s) x {} clients, {} senders x {} msg/s each = {} deliveries/s offered, for {}",
        load.rooms,
        load.clients,
        load.senders,
        load.rate,
        load.offered(),
        load.duration
    );
    println!(
        "{:<16} {:>8} {:>12} {:>8} {:>8} {:>9} {:>8} {:>10} {:>12} {:>11} {:>11} {:>12}",
        "server",
        "sent",
        "delivered/s",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "lost",
        "vs node",
        "vs rust-min",
        "CPU us/msg",
        "CPU vs node",
        "CPU vs min"
    );
    let peers = Peers::of(rows, |outcome| Some(outcome.delivered_per_second()));
    let cpu_peers = Peers::of(rows, Outcome::cpu_micros_per_delivery);
    for (name, outcome) in rows {
        let (vs_node, vs_minimal) = peers.ratios(outcome.delivered_per_second());
        let cpu = outcome.cpu_micros_per_delivery();
        let (cpu_vs_node, cpu_vs_minimal) =
            cpu.map_or(("-".into(), "-".into()), |cpu| cpu_peers.ratios(cpu));
        println!(
            "{:<16} {:>8} {:>12.0} {:>8.2} {:>8.2} {:>9.2} {:>8} {:>10} {:>12} {:>11} {:>11} {:>12}",
            name,
            outcome.sent,
            outcome.delivered_per_second(),
            outcome.percentile_ms(0.5),
            outcome.percentile_ms(0.99),
            outcome.percentile_ms(0.999),
            outcome.lost(),
            vs_node,
            vs_minimal,
            cpu.map_or("-".into(), |cpu| format!("{cpu:.2}")),
            cpu_vs_node,
            cpu_vs_minimal,
        );
    }
    for (name, outcome) in rows.iter().filter(|(_, outcome)| outcome.closed > 0) {
        println!("{name}: {} client connections were closed before the run ended", outcome.closed);
    }
}

/// Starts our server in this process on a free loopback port, for the scenarios' smoke tests:
/// `config` with one worker, one room thread and no store; its address.
#[cfg(test)]
fn serve_in_process(config: server::Config) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
    let address = listener.local_addr().expect("address").to_string();
    let config = server::Config {
        workers: Some(1),
        room_threads: Some(1),
        storage: server::config::Storage { ephemeral: true, ..Default::default() },
        ..config
    };
    std::thread::spawn(move || {
        actix_rt::System::new().block_on(async {
            let server = server::run(listener, config, std::future::pending());
            server.expect("server starts").await.expect("runs");
        });
    });
    address
}
