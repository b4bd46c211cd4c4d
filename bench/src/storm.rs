//! The reconnect storm: many clients sit in rooms that hold a history, the server is restarted
//! as a deploy does it (SIGTERM, wait for the exit, start the same command on the same port),
//! and every client comes back on its own, on the web client's schedule: it waits
//! [`backoff::delay`] (equal jitter, 0.25–0.5 s doubling to 15 s) after each connection that
//! ended, and rejoins with the last message id it saw (`since`) and the history's `epoch`, so
//! our server's welcome carries exactly what it missed. What is measured: the time from the
//! kill until each client has its welcome from the new server (a peer sends none: its client
//! is back at the upgrade), how many attempts that took and why the failed ones failed, and
//! the new server's peak CPU and resident memory while they pour back in.
//!
//! The clients live in worker processes (this binary, `bench storm-worker`), each binding its
//! connections to its own loopback source address (127.0.0.2, 127.0.0.3, ...), as in
//! `bench idle`: one process may hold at most 20,000 open files here, and each source address
//! has only so many ephemeral ports. The parent and a worker speak in lines: the worker prints
//! `connected N` once its clients are in, the parent writes `restarted KILL EXIT` (microseconds
//! since the Unix epoch of the SIGTERM and of the old process's exit) once the new server
//! listens, the worker prints its counts as one line of JSON once its clients are all back (or
//! at the deadline), and closes them when its standard input closes.
//!
//! A client counts as back only on a connection upgraded after the old process had exited: a
//! server that keeps accepting while it shuts down may welcome a client that is then closed
//! again, and that welcome is counted apart (`stale`), not as being back.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use protocol::backoff;
use testclient::{Client, Message};

use crate::Peer;
use crate::usage::{cpu_time, machine_ticks, rss_kib};

/// What to run.
#[derive(Debug, Clone, clap::Args)]
pub struct Storm {
    /// Clients connected when the server restarts.
    #[arg(long, default_value_t = 19_000)]
    pub clients: usize,
    /// Rooms the clients are spread over (client n is in room n % rooms).
    #[arg(long, default_value_t = 200)]
    pub rooms: usize,
    /// Messages each room holds before the restart.
    #[arg(long, default_value_t = 100)]
    pub history: usize,
    /// Worker processes the clients are spread over, each from its own source address.
    #[arg(long, default_value_t = 4)]
    pub processes: usize,
    /// How long after the kill the clients may take to come back before the run gives up on
    /// the rest.
    #[arg(long, default_value = "60s")]
    pub deadline: humantime::Duration,
}

/// Bytes of text in each history message (as `bench joins` sends by default).
const TEXT_BYTES: usize = 100;
/// How long a stopping server may take to exit before it is killed (a deploy's patience).
const STOP_WAIT: Duration = Duration::from_secs(30);
/// How long the restarted server may take to listen.
const START_WAIT: Duration = Duration::from_secs(60);
/// How long the workers may take to connect (and welcome) all their clients before the restart.
const CONNECT_WAIT: Duration = Duration::from_secs(300);
/// How often the new server's CPU time and memory are read.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// How often the parent tries the port while the new server starts: the restart gap is
/// measured to about this.
const LISTEN_POLL: Duration = Duration::from_millis(2);
/// How often a worker counts its clients that are back.
const COUNT_EVERY: Duration = Duration::from_millis(20);
/// One attempt's TCP connect and upgrade, at most (a browser waits about as long for a SYN
/// that is never answered), and then its welcome.
const ATTEMPT_WAIT: Duration = Duration::from_secs(30);
/// Connections one client opens at most over a run (each after a wait of at least 0.25 s, so
/// the time limits end a run long before).
const MAX_CONNECTIONS: usize = 10_000;
/// How long a worker waits, its clients connected, for word of the restart: the other
/// workers' connecting, the parent's wait for the old process to exit and for the new one to
/// listen, and a margin.
const RESTART_WAIT: Duration =
    Duration::from_secs(CONNECT_WAIT.as_secs() + STOP_WAIT.as_secs() + START_WAIT.as_secs() + 60);
/// How long a worker keeps its clients connected after its result, waiting for the parent to
/// close its standard input.
const HOLD: Duration = Duration::from_secs(120);
/// A join refused for now (`rate_limited`, `unavailable`) is sent again after the server's
/// `retry_after_ms`, or this long without one, doubled for each refusal in a row up to
/// [`MAX_RETRY_MS`]: the web client's rule (`frontend/src/connection.rs`).
const RETRY_MS: u64 = 1_000;
const MAX_RETRY_MS: u64 = 30_000;

/// What one run measured.
#[derive(Debug, Clone)]
pub struct StormOutcome {
    pub clients: usize,
    /// Per client back, microseconds from the kill to its welcome on the new server, sorted.
    pub back: Vec<u64>,
    /// Connection attempts after the kill, over all clients.
    pub attempts: u64,
    /// Failed attempts (and refused joins) by kind.
    pub failures: BTreeMap<String, u64>,
    /// Welcomes from the stopping server (clients it let in while shutting down).
    pub stale: u64,
    /// Welcomes from the new server that resumed after the client's `since`.
    pub resumed: u64,
    /// Messages those welcomes carried (what the clients had missed: none was sent).
    pub caught_up: u64,
    /// From the SIGTERM to the old process's exit.
    pub stopped: Duration,
    /// From the SIGTERM to the new process accepting connections.
    pub listening: Duration,
    /// The new server's busiest [`SAMPLE_EVERY`] window, in cores.
    pub peak_cores: f64,
    pub peak_rss_kib: u64,
    /// The old server's resident memory with every client connected, before the kill.
    pub rss_before_kib: u64,
    /// Per client, microseconds from the kill until its first connection ended, sorted: how
    /// soon the stopping server let its clients go.
    pub dropped: Vec<u64>,
    /// Connections the kernel dropped meanwhile because an accept queue was full (each costs
    /// its client a retransmitted SYN, a second or more later).
    pub listen_overflows: Option<u64>,
    /// The worker processes' CPU time from the kill until they reported, and that wall time:
    /// on a small machine the load generator shares the server's cores.
    pub generator_cpu: Duration,
    pub generator_wall: Duration,
}

impl StormOutcome {
    pub fn never_back(&self) -> usize {
        self.clients.saturating_sub(self.back.len())
    }

    /// From the kill until the last client was back; `None` if some never were.
    pub fn all_back(&self) -> Option<Duration> {
        if self.never_back() > 0 {
            return None;
        }
        self.back.last().map(|&micros| Duration::from_micros(micros))
    }

    /// From the new server accepting connections until the last client was back.
    pub fn all_back_from_listening(&self) -> Option<Duration> {
        self.all_back().map(|all| all.saturating_sub(self.listening))
    }

    /// The `q` quantile of the clients' times back, from the kill (of those that came back).
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        quantile(&self.back, q)
    }

    /// The `q` quantile of the times the first connections ended, from the kill.
    pub fn dropped_quantile(&self, q: f64) -> Option<Duration> {
        quantile(&self.dropped, q)
    }

    /// Failures whose kind starts with one of `prefixes`.
    pub fn failed(&self, prefixes: &[&str]) -> u64 {
        self.failures
            .iter()
            .filter(|(kind, _)| prefixes.iter().any(|prefix| kind.starts_with(prefix)))
            .map(|(_, count)| count)
            .sum()
    }

    pub fn attempts_per_client(&self) -> f64 {
        self.attempts as f64 / self.clients.max(1) as f64
    }
}

/// The `q` quantile of `sorted` microseconds.
fn quantile(sorted: &[u64], q: f64) -> Option<Duration> {
    let last = sorted.len().checked_sub(1)?;
    let index = ((last as f64) * q.clamp(0.0, 1.0)).round() as usize;
    sorted.get(index.min(last)).map(|&micros| Duration::from_micros(micros))
}

/// Failure kinds, as the table groups them.
pub const REFUSED: &str = "refused";
pub const HTTP: &str = "http ";
pub const IO: &str = "io ";
pub const HANDSHAKE: &str = "handshake";
pub const CLOSED: &str = "closed before welcome";
pub const NO_WELCOME: &str = "no welcome";
pub const JOIN_REFUSED: &str = "join refused";

/// Runs the storm against `command PORT` on a free loopback port: starts it, fills its rooms,
/// connects the clients, restarts it, and waits for them. `welcome` says whether the server
/// sends one (ours) or a client is in at the upgrade (the peers).
pub async fn run(
    name: &str,
    command: &[String],
    welcome: bool,
    load: &Storm,
) -> Result<StormOutcome> {
    let port = crate::free_port()?;
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let mut server = Peer::start(command, port)?;
    eprintln!("{name}: filling {} rooms with {} messages", load.rooms, load.history);
    let fillers = fill(address, load.rooms, load.history).await?;
    eprintln!("{name}: connecting {} clients from {} processes", load.clients, load.processes);
    let mut workers = Workers::start(address, welcome, load)?;
    workers.wait_connected()?;
    for filler in fillers {
        filler.abort();
    }
    let rss_before_kib = rss_kib(server.0.id())?;
    let overflows_before = listen_overflows();
    let generator_before = workers.cpu_time();

    // The restart, as a deploy does it.
    let machine_before = machine_ticks().ok();
    let killed = Instant::now();
    let kill_us = now_micros();
    let stop = terminate(&mut server.0)?;
    if stop.killed {
        eprintln!("{name}: did not exit within {STOP_WAIT:?} of SIGTERM: killed");
    }
    let exit_us = now_micros();
    let stopped = killed.elapsed();
    // Who had the CPU while the old server closed its connections.
    let cores = |cpu: Duration| cpu.as_secs_f64() / stopped.as_secs_f64().max(1e-3);
    let workers_then = cores(workers.cpu_time().saturating_sub(generator_before));
    let busy = machine_before.zip(machine_ticks().ok()).map(|((busy, all), (busy2, all2))| {
        (busy2 - busy) as f64 / (all2 - all).max(1) as f64 * 100.0
    });
    eprintln!(
        "{name}: while it stopped: old server {:.2} cores, workers {workers_then:.2} cores, the \
         machine {} busy",
        stop.cpu.map_or(0.0, cores),
        busy.map_or("?".into(), |busy| format!("{busy:.0}%")),
    );
    let mut server = Peer::spawn(command, port)?;
    let mut sampler = Sampler::new(server.0.id());
    while !listens(address) {
        if killed.elapsed() > stopped + START_WAIT {
            bail!("{name} did not listen again within {START_WAIT:?}");
        }
        if let Some(status) = server.0.try_wait().context("watching the new server")? {
            bail!("{name} exited ({status}) instead of listening again");
        }
        sampler.sample();
        std::thread::sleep(LISTEN_POLL);
    }
    let listening = killed.elapsed();
    eprintln!(
        "{name}: exited {:.2} s after SIGTERM, listening again after {:.2} s",
        stopped.as_secs_f64(),
        listening.as_secs_f64()
    );
    workers.tell(&format!("restarted {kill_us} {exit_us}"))?;

    // Until every worker has reported, reading the server every SAMPLE_EVERY.
    let give_up = killed + *load.deadline + Duration::from_secs(30);
    let mut merged = ShareResult::default();
    let mut reported = 0;
    while reported < workers.count() {
        if Instant::now() > give_up {
            bail!("the workers did not report within 30 s of the deadline");
        }
        sampler.sample();
        match workers.lines.recv_timeout(SAMPLE_EVERY) {
            Ok((worker, Some(line))) => {
                let part = ShareResult::from_line(&line)
                    .with_context(|| format!("worker {worker}'s result"))?;
                merged.add(part);
                reported += 1;
            }
            Ok((worker, None)) => bail!("worker {worker} ended without its result"),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => bail!("the workers are gone"),
        }
    }
    sampler.sample();
    // The new server's whole CPU time so far: its start and every welcome (the workers report
    // once their last client is back, so this is read a moment after).
    if let Ok(cpu) = cpu_time(server.0.id()) {
        eprintln!(
            "{name}: the new server used {:.2} s of CPU until all were back",
            cpu.as_secs_f64()
        );
    }
    let listen_overflows = listen_overflows()
        .zip(overflows_before)
        .map(|(after, before)| after.saturating_sub(before));
    let generator_cpu = workers.cpu_time().saturating_sub(generator_before);
    let generator_wall = killed.elapsed();
    // The clients first, or they would come back to a dying server.
    drop(workers);
    drop(server);
    merged.back.sort_unstable();
    merged.dropped.sort_unstable();
    Ok(StormOutcome {
        clients: load.clients,
        back: merged.back,
        dropped: merged.dropped,
        attempts: merged.attempts,
        failures: merged.failures,
        stale: merged.stale,
        resumed: merged.resumed,
        caught_up: merged.caught_up,
        stopped,
        listening,
        peak_cores: sampler.peak_cores,
        peak_rss_kib: sampler.peak_rss_kib,
        rss_before_kib,
        listen_overflows,
        generator_cpu,
        generator_wall,
    })
}

/// Whether something listens on `address`. A connect that is refused says no; one that
/// completes says yes, and so does one that gets no answer within 20 ms: on loopback a port
/// nobody listens on refuses at once, so the SYN was dropped by a listener whose accept queue
/// is full (the clients got there first). Waiting for the retransmitted SYN instead would put a
/// second into the restart gap.
fn listens(address: SocketAddr) -> bool {
    match TcpStream::connect_timeout(&address, Duration::from_millis(20)) {
        Ok(_) => true,
        Err(error) => error.kind() == std::io::ErrorKind::TimedOut,
    }
}

/// The kernel's count of connections dropped because a listener's accept queue was full
/// (`ListenOverflows` in `/proc/net/netstat`, for the whole network namespace).
fn listen_overflows() -> Option<u64> {
    let netstat = std::fs::read_to_string("/proc/net/netstat").ok()?;
    let mut lines = netstat.lines().filter(|line| line.starts_with("TcpExt:"));
    let (names, values) = (lines.next()?, lines.next()?);
    let at = names.split_whitespace().position(|name| name == "ListenOverflows")?;
    values.split_whitespace().nth(at)?.parse().ok()
}

/// Sends SIGTERM to `child` and waits for it to exit, at most [`STOP_WAIT`], then kills it.
/// Says whether it had to be killed.
fn terminate(child: &mut Child) -> Result<Stop> {
    let raw = i32::try_from(child.id()).context("a process id past i32")?;
    let pid = rustix::process::Pid::from_raw(raw).context("process id 0")?;
    let before = cpu_time(child.id()).ok();
    let mut last = before;
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).context("sending SIGTERM")?;
    let began = Instant::now();
    let mut polls = 0_u32;
    while child.try_wait().context("waiting for the server")?.is_none() {
        if began.elapsed() > STOP_WAIT {
            child.kill().context("killing the server")?;
            child.wait().context("waiting for the killed server")?;
            return Ok(Stop { killed: true, cpu: None });
        }
        // Its CPU time every 10 ms, the last read before it is gone standing for all of it.
        polls += 1;
        if polls.is_multiple_of(10) {
            last = cpu_time(child.id()).ok().or(last);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let cpu = before.zip(last).map(|(before, last)| last.saturating_sub(before));
    Ok(Stop { killed: false, cpu })
}

/// How a server's stop went: whether it had to be killed, and the CPU time it used from
/// SIGTERM to (about 10 ms before) its exit, if that could be read.
struct Stop {
    killed: bool,
    cpu: Option<Duration>,
}

/// The new server's peak CPU (over windows of [`SAMPLE_EVERY`]) and resident memory, read from
/// `/proc` (a read that fails, the process starting or gone, is skipped).
struct Sampler {
    pid: u32,
    last: Option<(Instant, Duration)>,
    peak_cores: f64,
    peak_rss_kib: u64,
}

impl Sampler {
    fn new(pid: u32) -> Self {
        Sampler { pid, last: None, peak_cores: 0.0, peak_rss_kib: 0 }
    }

    /// Reads the process if a window has passed since the last read.
    fn sample(&mut self) {
        let now = Instant::now();
        if self.last.is_some_and(|(at, _)| now - at < SAMPLE_EVERY) {
            return;
        }
        let Ok(cpu) = cpu_time(self.pid) else { return };
        if let Some((at, before)) = self.last {
            let cores = cpu.saturating_sub(before).as_secs_f64() / (now - at).as_secs_f64();
            self.peak_cores = self.peak_cores.max(cores);
        }
        self.last = Some((now, cpu));
        if let Ok(rss) = rss_kib(self.pid) {
            self.peak_rss_kib = self.peak_rss_kib.max(rss);
        }
    }
}

/// One member per room, who sent it `history` messages and waited for each to come back (our
/// server echoes a message once it is stored). The peers keep no history; they are filled all
/// the same, so every server does the same work. Eight rooms at a time.
async fn fill(address: SocketAddr, rooms: usize, history: usize) -> Result<Vec<Client>> {
    let text = "x".repeat(TEXT_BYTES);
    futures::stream::iter(0..rooms)
        .map(|room| fill_room(address, room, history, &text))
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

async fn fill_room(address: SocketAddr, room: usize, history: usize, text: &str) -> Result<Client> {
    let url = testclient::url(address, &format!("room=storm-{room}&nick=f{room}"));
    let mut filler = Client::open(&url).await.with_context(|| format!("connecting {url}"))?;
    crate::joins::send_history(&mut filler, room, history, text).await?;
    Ok(filler)
}

/// The worker processes, as the parent sees them: their standard inputs, and their output
/// lines (`None` once one's output ended) from a reading thread each.
struct Workers {
    children: Vec<(Child, Option<ChildStdin>)>,
    lines: mpsc::Receiver<(usize, Option<String>)>,
}

impl Workers {
    fn start(address: SocketAddr, welcome: bool, load: &Storm) -> Result<Self> {
        let exe = std::env::current_exe().context("the bench binary")?;
        let processes = load.processes.clamp(1, 250).min(load.clients.max(1));
        let (sender, lines) = mpsc::channel();
        let mut children = Vec::new();
        let mut first = 0;
        for worker in 0..processes {
            let count = load.clients / processes + usize::from(worker < load.clients % processes);
            let source = Ipv4Addr::new(127, 0, 0, u8::try_from(worker + 2).unwrap_or(u8::MAX));
            let mut command = Command::new(&exe);
            command
                .args(["storm-worker", "--address", &address.to_string()])
                .args(["--source", &source.to_string()])
                .args(["--first", &first.to_string(), "--count", &count.to_string()])
                .args(["--rooms", &load.rooms.to_string()])
                .args(["--deadline", &load.deadline.to_string()]);
            if welcome {
                command.arg("--welcome");
            }
            let mut child = command
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .context("starting a worker")?;
            let stdout = child.stdout.take().context("worker stdout")?;
            let sender = sender.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if sender.send((worker, Some(line))).is_err() {
                        return;
                    }
                }
                let _ = sender.send((worker, None));
            });
            let stdin = child.stdin.take();
            children.push((child, stdin));
            first += count;
        }
        Ok(Workers { children, lines })
    }

    fn count(&self) -> usize {
        self.children.len()
    }

    /// The CPU time the workers have used (one that cannot be read counts none).
    fn cpu_time(&self) -> Duration {
        self.children.iter().filter_map(|(child, _)| cpu_time(child.id()).ok()).sum()
    }

    /// Waits for every worker's `connected`.
    fn wait_connected(&mut self) -> Result<()> {
        let give_up = Instant::now() + CONNECT_WAIT;
        for _ in 0..self.count() {
            let left = give_up.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((_, Some(line))) if line.starts_with("connected") => {}
                Ok((worker, line)) => bail!("worker {worker} failed to connect: {line:?}"),
                Err(_) => bail!("the workers did not connect within {CONNECT_WAIT:?}"),
            }
        }
        Ok(())
    }

    /// Writes `line` to every worker.
    fn tell(&mut self, line: &str) -> Result<()> {
        for (_, stdin) in &mut self.children {
            let stdin = stdin.as_mut().context("worker stdin")?;
            writeln!(stdin, "{line}").context("writing to a worker")?;
        }
        Ok(())
    }
}

impl Drop for Workers {
    /// Closes the workers' inputs (they close their connections and exit); kills one that has
    /// not exited within 10 s. Also on an error, so no worker outlives the run.
    fn drop(&mut self) {
        for (_, stdin) in &mut self.children {
            drop(stdin.take());
        }
        let give_up = Instant::now() + Duration::from_secs(10);
        for (child, _) in &mut self.children {
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < give_up {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Microseconds since the Unix epoch: the clock the parent and the workers share.
fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX))
}

/// The worker: connects clients `first..first + count` from `source`, prints `connected N`,
/// and once told when the server was killed and had exited, waits until they are all back
/// (or `deadline` after the kill) and prints their counts as JSON. Holds the connections
/// until its standard input closes.
#[allow(clippy::print_stdout)] // the parent reads the worker's stdout
pub async fn worker(plan: Plan, first: usize, count: usize, deadline: Duration) -> Result<()> {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let mut lines = stdin_lines();
    let clients = Clients::connect(Arc::new(plan), first..first + count, deadline).await?;
    println!("connected {count}");
    let restart = tokio::time::timeout(RESTART_WAIT, lines.recv())
        .await
        .context("no word of the restart")?
        .context("the parent closed our input before the restart")?;
    let restart = Restart::parse(&restart)?;
    let result = clients.wait_back(restart, deadline).await;
    println!("{}", result.to_line());
    // Hold until the parent closes our input.
    let _ = tokio::time::timeout(HOLD, async { while lines.recv().await.is_some() {} }).await;
    clients.close();
    Ok(())
}

/// Lines of standard input, read on a thread of their own (a blocked read there does not keep
/// the process from exiting, as one on tokio's blocking pool would); the channel closes at
/// the end of the input.
fn stdin_lines() -> tokio::sync::mpsc::UnboundedReceiver<String> {
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    receiver
}

/// When the server was killed and when its process had exited, in microseconds since the
/// Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Restart {
    pub kill_us: u64,
    pub exit_us: u64,
}

impl Restart {
    /// From the parent's `restarted KILL EXIT`.
    fn parse(line: &str) -> Result<Self> {
        let mut words = line.split_whitespace();
        if words.next() != Some("restarted") {
            bail!("expected `restarted KILL EXIT`, got {line:?}");
        }
        let mut number = || -> Result<u64> {
            words.next().and_then(|word| word.parse().ok()).context("a time in `restarted`")
        };
        Ok(Restart { kill_us: number()?, exit_us: number()? })
    }
}

/// Where a worker's clients connect and how they know they are in.
#[derive(Debug, Clone)]
pub struct Plan {
    pub address: SocketAddr,
    pub source: IpAddr,
    pub rooms: usize,
    /// The server sends a welcome (ours); otherwise a client is in at the upgrade.
    pub welcome: bool,
}

/// What a client knows of its room, sent back when it reconnects as the web client does:
/// the highest message id it saw (`since`) and the epoch of the history it came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Seen {
    room: String,
    last_id: Option<u64>,
    epoch: Option<String>,
}

/// What a frame meant to the client reading it.
#[derive(Debug, PartialEq, Eq)]
enum Frame {
    /// Its welcome: whether it resumed after the client's `since`, and the messages it carried.
    Welcome {
        resumed: bool,
        history: u64,
    },
    /// A refusal of a request (before the welcome: of the join).
    Refused {
        code: String,
        retry_after_ms: Option<u64>,
    },
    Other,
}

impl Seen {
    fn new(room: String) -> Self {
        Seen { room, last_id: None, epoch: None }
    }

    /// The connect URL's query for `nick`: the room, and where the client left off.
    fn query(&self, nick: &str) -> String {
        let mut query = format!("room={}&nick={nick}", self.room);
        if let Some(since) = self.last_id {
            query.push_str(&format!("&since={since}"));
        }
        if let Some(epoch) = &self.epoch {
            query.push_str("&epoch=");
            query.push_str(&percent_encoded(epoch));
        }
        query
    }

    /// The join frame sent again after a refusal for now.
    fn join(&self, nick: &str) -> String {
        let join = serde_json::json!({
            "type": "join", "room": self.room, "nick": nick, "since": self.last_id,
            "epoch": self.epoch,
        });
        join.to_string()
    }

    /// Takes in a text frame: the ids of this room's messages (live, or in a welcome's
    /// history), the epoch a welcome names, a `reset` that makes both void.
    fn read(&mut self, text: &str) -> Frame {
        // Every join and leave is announced to the room: thousands of frames a second in the
        // storm, which the load generator (on the server's cores) must not spend its time
        // parsing. Servers put the tag first (serde's, and the peers'), so those frames are
        // known by their start; a frame not starting with a tag is parsed.
        const READ: [&str; 4] = ["welcome", "message", "reset", "error"];
        if let Some(rest) = text.strip_prefix(r#"{"type":""#)
            && !READ.iter().any(|kind| rest.starts_with(kind))
        {
            return Frame::Other;
        }
        let Ok(frame) = serde_json::from_str::<serde_json::Value>(text) else {
            return Frame::Other;
        };
        // Frames naming another room say nothing about this one (a server without rooms in
        // its frames has only one room per connection).
        let ours = frame["room"].as_str().is_none_or(|room| room == self.room);
        match frame["type"].as_str() {
            Some("welcome") if ours => {
                let since = frame["since"].as_u64();
                let resumed = since.is_some() && since == self.last_id;
                if let Some(epoch) = frame["epoch"].as_str().filter(|epoch| !epoch.is_empty()) {
                    self.epoch = Some(epoch.to_owned());
                }
                let history = frame["history"].as_array().map_or(&[][..], Vec::as_slice);
                for message in history {
                    self.saw(message["id"].as_u64());
                }
                Frame::Welcome { resumed, history: history.len() as u64 }
            }
            Some("message") if ours => {
                self.saw(frame["id"].as_u64());
                Frame::Other
            }
            Some("reset") if ours => {
                // The history the ids came from is gone: the welcome that follows starts over.
                self.last_id = None;
                self.epoch = None;
                Frame::Other
            }
            Some("error") if ours => Frame::Refused {
                code: frame["code"].as_str().unwrap_or("").to_owned(),
                retry_after_ms: frame["retry_after_ms"].as_u64(),
            },
            _ => Frame::Other,
        }
    }

    fn saw(&mut self, id: Option<u64>) {
        if id.is_some() {
            self.last_id = self.last_id.max(id);
        }
    }
}

/// `value` with everything but `A-Z a-z 0-9 - _ . ~` percent-encoded, for a query string.
fn percent_encoded(value: &str) -> String {
    let mut encoded = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// The random numbers of one client's jitter: splitmix64, seeded from the client's number and
/// the clock, so that clients draw different delays as browsers with their own `Math.random`
/// do (no crate for a few draws per client).
struct Jitter(u64);

impl Jitter {
    fn new(client: usize, clock: u64) -> Self {
        Jitter((client as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ clock)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`, as `Math.random` is: the top 53 bits over 2^53.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A client's reconnection schedule, the web client's (`frontend/src/connection.rs`): after a
/// connection ends, the attempt number starts over if it had been welcomed at least
/// [`backoff::HEALTHY_MS`] before, and grows by one otherwise (a failed attempt included);
/// the wait is [`backoff::delay`] of it.
struct Reconnects {
    attempt: u32,
    jitter: Jitter,
}

impl Reconnects {
    fn new(jitter: Jitter) -> Self {
        Reconnects { attempt: 0, jitter }
    }

    /// The wait before the next attempt, after a connection (or attempt) that ended.
    fn next(&mut self, healthy: bool) -> Duration {
        self.attempt = backoff::next_attempt(self.attempt, healthy);
        backoff::delay(self.attempt, self.jitter.unit())
    }
}

/// The wait before sending a join refused for now again, the web client's: the server's hint
/// (or [`RETRY_MS`]), doubled for each refusal in a row before it.
fn retry_wait(retry_after_ms: Option<u64>, strikes: u32) -> Duration {
    let delay = retry_after_ms.map_or(RETRY_MS, |ms| ms.max(50));
    let doubled = delay.saturating_mul(1 << strikes.min(6));
    Duration::from_millis(doubled.min(MAX_RETRY_MS.max(delay)))
}

/// One client, as its task keeps it for the worker to count.
#[derive(Debug, Default)]
struct Record {
    /// The connection open now, once it was welcomed: when its upgrade completed and when the
    /// welcome came (microseconds since the Unix epoch).
    welcomed: Option<(u64, u64)>,
    /// Whether that welcome resumed after the client's `since`, and the messages it carried.
    resumed: bool,
    caught_up: u64,
    /// Connection attempts since the first connection ended.
    attempts: u64,
    failures: BTreeMap<String, u64>,
    /// When each welcomed reconnection was upgraded.
    reconnected: Vec<u64>,
    /// When the first connection ended.
    dropped: Option<u64>,
}

impl Record {
    /// Back after `restart`: welcomed on a connection upgraded after the old server exited.
    fn back(&self, restart: Restart) -> Option<(u64, u64)> {
        self.welcomed.filter(|&(upgraded, _)| upgraded >= restart.exit_us)
    }

    fn failed(&mut self, kind: String) {
        *self.failures.entry(kind).or_default() += 1;
    }
}

/// A record shared between a client's task and its worker.
type Shared = Arc<Mutex<Record>>;

fn lock(record: &Shared) -> std::sync::MutexGuard<'_, Record> {
    // A task that panicked while holding it left plain counters: still worth reading.
    record.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Some clients, connected and welcomed, each reconnecting by itself whenever its connection
/// ends.
pub struct Clients {
    records: Vec<Shared>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Clients {
    /// Connects the clients `numbers` (client n to room `storm-{n % rooms}` as `s{n}`), 64 at a
    /// time, each read from as soon as it is in (reading answers the server's pings). They
    /// reconnect for as long as a run with this `deadline` may last.
    pub async fn connect(
        plan: Arc<Plan>,
        numbers: std::ops::Range<usize>,
        deadline: Duration,
    ) -> Result<Self> {
        // Nothing of a client outlives a whole worker: connecting, the restart, the deadline
        // after it, and holding the connections until the parent closes them.
        let end = tokio::time::Instant::now() + CONNECT_WAIT + RESTART_WAIT + deadline + HOLD;
        let opened = futures::stream::iter(numbers)
            .map(|n| {
                let plan = plan.clone();
                async move {
                    let nick = format!("s{n}");
                    let mut seen = Seen::new(format!("storm-{}", n % plan.rooms.max(1)));
                    let query = seen.query(&nick);
                    let mut ws = Client::open_from(plan.address, plan.source, &query)
                        .await
                        .with_context(|| format!("connecting client {n}"))?;
                    if plan.welcome {
                        first_welcome(&mut ws, &mut seen)
                            .await
                            .with_context(|| format!("client {n}'s first join"))?;
                    }
                    let record = Shared::default();
                    let task = tokio::spawn(client(n, plan, ws, seen, record.clone(), end));
                    Ok::<_, anyhow::Error>((record, task))
                }
            })
            .buffer_unordered(64)
            .collect::<Vec<_>>();
        let opened = tokio::time::timeout(CONNECT_WAIT, opened)
            .await
            .context("the clients took too long to connect")?;
        let mut clients = Clients { records: Vec::new(), tasks: Vec::new() };
        for one in opened {
            let (record, task) = one?;
            clients.records.push(record);
            clients.tasks.push(task);
        }
        Ok(clients)
    }

    /// How many clients are back after `restart`.
    fn count_back(&self, restart: Restart) -> usize {
        self.records.iter().filter(|record| lock(record).back(restart).is_some()).count()
    }

    /// Waits until every client is back after `restart`, or until `deadline` after the kill,
    /// and says how it went.
    pub async fn wait_back(&self, restart: Restart, deadline: Duration) -> ShareResult {
        let give_up =
            restart.kill_us.saturating_add(u64::try_from(deadline.as_micros()).unwrap_or(u64::MAX));
        let mut tick = tokio::time::interval(COUNT_EVERY);
        while self.count_back(restart) < self.records.len() && now_micros() < give_up {
            tick.tick().await;
        }
        self.result(restart)
    }

    fn result(&self, restart: Restart) -> ShareResult {
        let mut result = ShareResult { clients: self.records.len() as u64, ..Default::default() };
        for record in &self.records {
            let record = lock(record);
            if let Some((_, welcomed)) = record.back(restart) {
                result.back.push(welcomed.saturating_sub(restart.kill_us));
                result.resumed += u64::from(record.resumed);
                result.caught_up += record.caught_up;
            }
            if let Some(dropped) = record.dropped {
                result.dropped.push(dropped.saturating_sub(restart.kill_us));
            }
            result.attempts += record.attempts;
            for (kind, count) in &record.failures {
                *result.failures.entry(kind.clone()).or_default() += count;
            }
            result.stale +=
                record.reconnected.iter().filter(|&&upgraded| upgraded < restart.exit_us).count()
                    as u64;
        }
        result
    }

    /// Ends every client (their connections drop).
    pub fn close(self) {
        for task in self.tasks {
            task.abort();
        }
    }
}

/// Reads until the first welcome, within [`ATTEMPT_WAIT`].
async fn first_welcome(ws: &mut Client, seen: &mut Seen) -> Result<()> {
    let by = tokio::time::Instant::now() + ATTEMPT_WAIT;
    loop {
        let frame = tokio::time::timeout_at(by, ws.next_frame()).await.context("no welcome")?;
        match frame {
            Some(Ok(Message::Text(text))) => match seen.read(&text) {
                Frame::Welcome { .. } => return Ok(()),
                Frame::Refused { code, .. } => bail!("join refused: {code}"),
                Frame::Other => {}
            },
            Some(Ok(_)) => {}
            Some(Err(error)) => return Err(error.into()),
            None => bail!("closed before its welcome"),
        }
    }
}

/// One client after its first welcome: reads its connection until it ends, then reconnects on
/// the web client's schedule, again and again, until `end` (or [`MAX_CONNECTIONS`]).
async fn client(
    n: usize,
    plan: Arc<Plan>,
    ws: Client,
    mut seen: Seen,
    record: Shared,
    end: tokio::time::Instant,
) {
    let nick = format!("s{n}");
    let mut schedule = Reconnects::new(Jitter::new(n, now_micros()));
    let mut open = Some((ws, Instant::now()));
    for _ in 0..MAX_CONNECTIONS {
        let healthy = match open.take() {
            Some((ws, welcomed_at)) => {
                let _ = tokio::time::timeout_at(end, read_until_end(ws, &mut seen)).await;
                let mut record = lock(&record);
                record.dropped.get_or_insert_with(now_micros);
                record.welcomed = None;
                record.resumed = false;
                record.caught_up = 0;
                welcomed_at.elapsed().as_secs_f64() * 1000.0 >= backoff::HEALTHY_MS
            }
            None => false,
        };
        let wait = schedule.next(healthy);
        if tokio::time::Instant::now() + wait >= end {
            return;
        }
        tokio::time::sleep(wait).await;
        lock(&record).attempts += 1;
        match attempt(&plan, &nick, &mut seen, &record).await {
            Attempt::Welcomed(ws) => open = Some((*ws, Instant::now())),
            Attempt::Failed(kind) => lock(&record).failed(kind),
            Attempt::GaveUp(kind) => {
                // Refused for good: the web client asks its user; nobody here will.
                lock(&record).failed(kind);
                return;
            }
        }
    }
}

/// Reads frames (answering pings) until the connection ends.
async fn read_until_end(mut ws: Client, seen: &mut Seen) {
    while let Some(Ok(frame)) = ws.next_frame().await {
        if let Message::Text(text) = frame {
            seen.read(&text);
        }
    }
}

/// How one connection attempt went.
enum Attempt {
    /// Boxed: a connection is large beside a failure's kind.
    Welcomed(Box<Client>),
    Failed(String),
    GaveUp(String),
}

/// Connects, rejoining where the client left off, and waits for the welcome (a server that
/// sends none: the upgrade); a join refused for now is sent again on the web client's
/// schedule. The welcome is noted in `record`.
async fn attempt(plan: &Plan, nick: &str, seen: &mut Seen, record: &Shared) -> Attempt {
    let query = seen.query(nick);
    let opened =
        tokio::time::timeout(ATTEMPT_WAIT, Client::open_from(plan.address, plan.source, &query));
    let mut ws = match opened.await {
        Ok(Ok(ws)) => ws,
        Ok(Err(error)) => return Attempt::Failed(failure_kind(&error)),
        Err(_) => return Attempt::Failed(format!("{HANDSHAKE} timed out")),
    };
    let upgraded = now_micros();
    let welcomed = |resumed: bool, history: u64| {
        let mut record = lock(record);
        record.welcomed = Some((upgraded, now_micros()));
        record.resumed = resumed;
        record.caught_up = history;
        record.reconnected.push(upgraded);
    };
    if !plan.welcome {
        welcomed(false, 0);
        return Attempt::Welcomed(Box::new(ws));
    }
    let by = tokio::time::Instant::now() + ATTEMPT_WAIT;
    let mut retry: Option<tokio::time::Instant> = None;
    let mut strikes = 0;
    // Bounded by `by`; each turn takes a frame or the one retry timer.
    loop {
        tokio::select! {
            frame = tokio::time::timeout_at(by, ws.next_frame()) => {
                let text = match frame {
                    Err(_) => return Attempt::Failed(format!("{NO_WELCOME} in {ATTEMPT_WAIT:?}")),
                    Ok(None | Some(Err(_))) => return Attempt::Failed(CLOSED.to_owned()),
                    Ok(Some(Ok(Message::Text(text)))) => text,
                    Ok(Some(Ok(_))) => continue,
                };
                match seen.read(&text) {
                    Frame::Welcome { resumed, history } => {
                        welcomed(resumed, history);
                        return Attempt::Welcomed(Box::new(ws));
                    }
                    Frame::Refused { code, retry_after_ms }
                        if code == "rate_limited" || code == "unavailable" =>
                    {
                        lock(record).failed(format!("{JOIN_REFUSED} {code}"));
                        retry = Some(tokio::time::Instant::now() + retry_wait(retry_after_ms, strikes));
                        strikes += 1;
                    }
                    Frame::Refused { code, .. } => {
                        return Attempt::GaveUp(format!("{JOIN_REFUSED} {code} (for good)"));
                    }
                    Frame::Other => {}
                }
            }
            () = tokio::time::sleep_until(retry.unwrap_or(by)), if retry.is_some() => {
                retry = None;
                if ws.send_frame(Message::text(seen.join(nick))).await.is_err() {
                    return Attempt::Failed(CLOSED.to_owned());
                }
            }
        }
    }
}

/// The kind of a failed connect or upgrade, as counted.
fn failure_kind(error: &testclient::Error) -> String {
    match error {
        testclient::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            REFUSED.to_owned()
        }
        testclient::Error::Io(io) => format!("{IO}{:?}", io.kind()),
        testclient::Error::Http(response) => format!("{HTTP}{}", response.status().as_u16()),
        other => {
            let mut text = format!("{HANDSHAKE} {other}");
            text.truncate(60);
            text
        }
    }
}

/// What some clients counted, as a worker hands it to the parent.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ShareResult {
    pub clients: u64,
    /// Per client back: microseconds from the kill to its welcome on the new server.
    pub back: Vec<u64>,
    /// Per client whose first connection ended: microseconds from the kill until it did.
    pub dropped: Vec<u64>,
    pub attempts: u64,
    pub failures: BTreeMap<String, u64>,
    pub stale: u64,
    pub resumed: u64,
    pub caught_up: u64,
}

impl ShareResult {
    fn add(&mut self, other: ShareResult) {
        self.clients += other.clients;
        self.back.extend(other.back);
        self.dropped.extend(other.dropped);
        self.attempts += other.attempts;
        for (kind, count) in other.failures {
            *self.failures.entry(kind).or_default() += count;
        }
        self.stale += other.stale;
        self.resumed += other.resumed;
        self.caught_up += other.caught_up;
    }

    /// One line of JSON.
    pub fn to_line(&self) -> String {
        serde_json::json!({
            "clients": self.clients, "back": self.back, "dropped": self.dropped,
            "attempts": self.attempts,
            "failures": self.failures, "stale": self.stale, "resumed": self.resumed,
            "caught_up": self.caught_up,
        })
        .to_string()
    }

    fn from_line(line: &str) -> Result<Self> {
        let value: serde_json::Value = serde_json::from_str(line).context("a worker's result")?;
        let number = |field: &str| value[field].as_u64().with_context(|| format!("no {field}"));
        let times = |field: &str| -> Result<Vec<u64>> {
            value[field]
                .as_array()
                .with_context(|| format!("no {field}"))?
                .iter()
                .map(|micros| micros.as_u64().with_context(|| format!("a {field} time")))
                .collect()
        };
        let failures = value["failures"]
            .as_object()
            .context("no failures")?
            .iter()
            .map(|(kind, count)| Ok((kind.clone(), count.as_u64().context("a failure count")?)))
            .collect::<Result<_>>()?;
        Ok(ShareResult {
            clients: number("clients")?,
            back: times("back")?,
            dropped: times("dropped")?,
            attempts: number("attempts")?,
            failures,
            stale: number("stale")?,
            resumed: number("resumed")?,
            caught_up: number("caught_up")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ids come from this room's live messages and from a welcome's history, never go down,
    /// and go with the welcome's epoch into the next connect URL; a `reset` forgets both.
    #[test]
    fn the_last_id_and_epoch_are_tracked() {
        let mut seen = Seen::new("storm-3".into());
        assert_eq!(seen.query("s3"), "room=storm-3&nick=s3");
        let welcome = r#"{"type":"welcome","room":"storm-3","nick":"s3","members":[],"rooms":[],
            "history":[{"id":4,"from":"f","text":"a","ts":1},{"id":9,"from":"f","text":"b","ts":2}],
            "epoch":"e+1"}"#;
        assert_eq!(seen.read(welcome), Frame::Welcome { resumed: false, history: 2 });
        assert_eq!((seen.last_id, seen.epoch.as_deref()), (Some(9), Some("e+1")));
        seen.read(r#"{"type":"message","id":12,"room":"storm-3","from":"f","text":"t","ts":3}"#);
        seen.read(r#"{"type":"message","id":40,"room":"storm-4","from":"f","text":"t","ts":3}"#);
        seen.read(r#"{"type":"message","id":11,"room":"storm-3","from":"f","text":"t","ts":3}"#);
        assert_eq!(seen.last_id, Some(12), "another room's ids and older ids are ignored");
        assert_eq!(seen.query("s3"), "room=storm-3&nick=s3&since=12&epoch=e%2B1");
        let join: serde_json::Value = serde_json::from_str(&seen.join("s3")).expect("json");
        assert_eq!((join["since"].as_u64(), join["epoch"].as_str()), (Some(12), Some("e+1")));

        // A welcome that resumes after the since, carrying what was missed.
        let resumed = r#"{"type":"welcome","room":"storm-3","since":12,"epoch":"e+1",
            "history":[{"id":15,"from":"f","text":"c","ts":4}]}"#;
        assert_eq!(seen.read(resumed), Frame::Welcome { resumed: true, history: 1 });
        assert_eq!(seen.last_id, Some(15));

        // A peer's frames have no room and peers send no welcome: their ids count.
        let mut peer = Seen::new("storm-0".into());
        peer.read(r#"{"type":"message","id":7,"from":"f","text":"t","ts":3}"#);
        assert_eq!(peer.last_id, Some(7));

        assert_eq!(seen.read(r#"{"type":"reset","room":"storm-3","epoch":"e2"}"#), Frame::Other);
        assert_eq!((seen.last_id, seen.epoch.as_deref()), (None, None));
        let refusal = r#"{"type":"error","code":"rate_limited","message":"m","retry_after_ms":300,
            "room":"storm-3"}"#;
        assert_eq!(
            seen.read(refusal),
            Frame::Refused { code: "rate_limited".into(), retry_after_ms: Some(300) }
        );
        assert_eq!(seen.read("not json"), Frame::Other);
        // Presence frames are passed over unparsed; an untagged start is parsed all the same.
        seen.read(r#"{"type":"message","id":20,"room":"storm-3","from":"f","text":"t","ts":3}"#);
        assert_eq!(seen.read(r#"{"type":"joined","room":"storm-3","nick":"s7"}"#), Frame::Other);
        seen.read(r#"{"room":"storm-3","id":21,"type":"message","from":"f","text":"t","ts":3}"#);
        assert_eq!(seen.last_id, Some(21));
    }

    /// The schedule is the web client's: the first reconnect after a connection that had been
    /// up waits 0.25–0.5 s, each failure doubles the band up to the cap, and only a connection
    /// that stayed up starts it over; the jitter is spread over the band and differs between
    /// clients.
    #[test]
    fn reconnects_follow_the_web_clients_backoff() {
        let mut schedule = Reconnects::new(Jitter::new(7, 12345));
        let first = schedule.next(true);
        assert!(first >= Duration::from_millis(250) && first <= Duration::from_millis(500));
        for attempt in 2..=8 {
            let wait = schedule.next(false);
            assert_eq!(schedule.attempt, attempt);
            assert!(wait >= backoff::delay(attempt, 0.0) && wait <= backoff::delay(attempt, 1.0));
        }
        assert!(schedule.next(false) >= backoff::MAX / 2, "capped, not reset, by failures");
        assert!(schedule.next(true) <= Duration::from_millis(500), "a healthy connection resets");

        let mut jitter = Jitter::new(1, 99);
        let draws: Vec<f64> = (0..10_000).map(|_| jitter.unit()).collect();
        assert!(draws.iter().all(|&x| (0.0..1.0).contains(&x)));
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        assert!((0.47..0.53).contains(&mean), "mean {mean}");
        let below_tenth = draws.iter().filter(|&&x| x < 0.1).count();
        assert!((800..1200).contains(&below_tenth), "{below_tenth} below 0.1");
        let (mut a, mut b) = (Jitter::new(1, 99), Jitter::new(2, 99));
        assert_ne!(a.next_u64(), b.next_u64(), "neighbouring clients draw differently");

        assert_eq!(retry_wait(None, 0), Duration::from_secs(1));
        assert_eq!(retry_wait(Some(300), 2), Duration::from_millis(1200));
        assert_eq!(retry_wait(Some(10), 0), Duration::from_millis(50));
        assert_eq!(retry_wait(None, 20), Duration::from_secs(30));
    }

    /// What a worker prints is what the parent reads, and merged results add up.
    #[test]
    fn worker_results_round_trip() {
        let part = ShareResult {
            clients: 3,
            back: vec![310_000, 1_200_000],
            dropped: vec![2_000, 3_000, 90_000],
            attempts: 7,
            failures: BTreeMap::from([(REFUSED.to_owned(), 3), (format!("{HTTP}503"), 1)]),
            stale: 1,
            resumed: 2,
            caught_up: 0,
        };
        let line = part.to_line();
        assert!(!line.contains('\n'));
        assert_eq!(ShareResult::from_line(&line).expect("parsed"), part);
        assert!(ShareResult::from_line(r#"{"clients":1}"#).is_err());

        let mut merged = ShareResult::default();
        merged.add(part.clone());
        merged.add(part);
        assert_eq!((merged.clients, merged.back.len(), merged.attempts), (6, 4, 14));
        assert_eq!(merged.dropped.len(), 6);
        assert_eq!(merged.failures[REFUSED], 6);
        assert_eq!(
            Restart::parse("restarted 10 20").expect("parsed"),
            Restart { kill_us: 10, exit_us: 20 }
        );
        assert!(Restart::parse("go").is_err());
    }

    /// The outcome's figures: all back is the slowest client, and only when none is missing.
    #[test]
    fn outcome_figures() {
        let outcome = StormOutcome {
            clients: 4,
            back: vec![400_000, 500_000, 900_000, 2_000_000],
            attempts: 9,
            failures: BTreeMap::from([
                (REFUSED.to_owned(), 3),
                (format!("{HTTP}503"), 1),
                (format!("{IO}ConnectionReset"), 1),
            ]),
            stale: 0,
            resumed: 4,
            caught_up: 0,
            stopped: Duration::from_millis(200),
            listening: Duration::from_millis(700),
            peak_cores: 1.5,
            peak_rss_kib: 1,
            rss_before_kib: 1,
            dropped: vec![1_000, 2_000, 3_000, 4_000],
            listen_overflows: Some(0),
            generator_cpu: Duration::ZERO,
            generator_wall: Duration::from_secs(2),
        };
        assert_eq!(outcome.all_back(), Some(Duration::from_secs(2)));
        assert_eq!(outcome.all_back_from_listening(), Some(Duration::from_millis(1300)));
        assert_eq!(outcome.quantile(0.5), Some(Duration::from_millis(900)));
        assert_eq!(outcome.failed(&[HTTP, IO]), 2);
        assert_eq!(outcome.dropped_quantile(1.0), Some(Duration::from_millis(4)));
        let missing = StormOutcome { clients: 5, ..outcome };
        assert_eq!((missing.never_back(), missing.all_back()), (1, None));
    }

    /// A port with a listener listens, even one whose accept queue is full (it drops SYNs); a
    /// closed port does not. The kernel's overflow counter can be read.
    #[test]
    fn listening_is_told_from_refusing() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
        let address = listener.local_addr().expect("address");
        assert!(listens(address));
        drop(listener);
        assert!(!listens(address));
        assert!(listen_overflows().is_some());
    }

    /// Our server in this process, on `listener`, storing in `data`; stops (telling clients to
    /// go away, as on SIGTERM) when the sender is used or dropped.
    fn serve(
        listener: std::net::TcpListener,
        data: &std::path::Path,
    ) -> (tokio::sync::oneshot::Sender<()>, std::thread::JoinHandle<()>) {
        let config = server::Config {
            workers: Some(1),
            room_threads: Some(1),
            storage: server::config::Storage { data_dir: data.to_owned(), ..Default::default() },
            shutdown_grace: Duration::from_secs(1).into(),
            ..server::Config::default()
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            actix_rt::System::new().block_on(async {
                let shutdown = async {
                    let _ = stopped.await;
                };
                let server = server::run(listener, config, shutdown);
                server.expect("server starts").await.expect("runs");
            });
        });
        (stop, thread)
    }

    /// A small storm against our durable server in this process: 40 clients in 4 rooms of 10
    /// messages; the server is stopped as on SIGTERM and started again on the same port and
    /// database. Every client comes back, on a connection to the new server, no sooner than
    /// its first backoff wait, with a welcome that resumed exactly after the last id it had
    /// (nothing missed, nothing repeated).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_client_comes_back_resumed_after_a_restart() {
        let data = tempfile::tempdir().expect("a data directory");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
        let address = listener.local_addr().expect("address");
        let (stop, thread) = serve(listener, data.path());
        let fillers = fill(address, 4, 10).await.expect("rooms filled");
        let plan = Plan { address, source: IpAddr::from([127, 0, 0, 1]), rooms: 4, welcome: true };
        let clients = Clients::connect(Arc::new(plan), 0..40, Duration::from_secs(20))
            .await
            .expect("clients in");
        for filler in fillers {
            filler.abort();
        }

        let kill_us = now_micros();
        let _ = stop.send(());
        let joined = tokio::task::spawn_blocking(move || thread.join());
        tokio::time::timeout(Duration::from_secs(30), joined)
            .await
            .expect("the server stops in time")
            .expect("joined")
            .expect("the server thread ended cleanly");
        let restart = Restart { kill_us, exit_us: now_micros() };
        assert_eq!(clients.count_back(restart), 0, "nobody is back before the new server");
        let listener = std::net::TcpListener::bind(address).expect("the same port again");
        let (_stop, _thread) = serve(listener, data.path());

        let result = clients.wait_back(restart, Duration::from_secs(20)).await;
        assert_eq!((result.clients, result.back.len()), (40, 40), "{result:?}");
        assert!(result.back.iter().all(|&micros| micros >= 250_000), "{:?}", result.back);
        assert!(result.attempts >= 40);
        assert_eq!(result.resumed, 40, "every welcome resumed after its since");
        assert_eq!(result.caught_up, 0, "nothing was sent meanwhile: nothing to catch up");
        assert_eq!(result.dropped.len(), 40, "every first connection ended");
        let (last_dropped, first_back) = (result.dropped.iter().max(), result.back.iter().min());
        assert!(last_dropped < first_back, "{last_dropped:?} {first_back:?}");
        // Clients try while no server listens (refused, or reset by the stopping one); none is
        // turned away by a limit, nor by the server once it is back.
        let turned_away = |kind: &String| kind.starts_with(HTTP) || kind.starts_with(JOIN_REFUSED);
        assert!(!result.failures.keys().any(turned_away), "{:?}", result.failures);
        clients.close();
    }
}
