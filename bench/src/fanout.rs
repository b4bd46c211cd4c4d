//! The fan-out scenario: R rooms of C clients, S of them sending at a fixed rate. Every client
//! records the latency of every message it receives (the send instant travels in the text),
//! and what should have arrived but did not is counted as lost.

use std::io::{BufRead, BufReader, Write};
use std::ops::Range;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use testclient::{Client, Message};
use tokio::sync::Barrier;

/// What to run.
#[derive(Debug, Clone, clap::Args)]
pub struct Fanout {
    /// Rooms.
    #[arg(long, default_value_t = 1)]
    pub rooms: usize,
    /// Clients per room (senders included).
    #[arg(long, default_value_t = 100)]
    pub clients: usize,
    /// Senders per room.
    #[arg(long, default_value_t = 10)]
    pub senders: usize,
    /// Messages per second each sender sends.
    #[arg(long, default_value_t = 100)]
    pub rate: u32,
    /// How long the senders send.
    #[arg(long, default_value = "5s")]
    pub duration: humantime::Duration,
    /// Load-generator processes the clients are spread over (1: this process only).
    #[arg(long, default_value_t = 1)]
    pub processes: usize,
}

impl Fanout {
    /// Deliveries per second this load asks for (every message goes to every member).
    pub fn offered(&self) -> u64 {
        (self.rooms * self.senders * self.clients) as u64 * u64::from(self.rate)
    }
}

/// What one run measured.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub sent: u64,
    pub delivered: u64,
    pub expected: u64,
    pub elapsed: Duration,
    /// Latency in microseconds.
    pub latency: Histogram<u64>,
    /// CPU time the server used during the run, when the server is a process we started.
    pub server_cpu: Option<Duration>,
    /// Client connections that ended before the run did (the server closed them or failed).
    pub closed: u64,
}

impl Outcome {
    pub fn delivered_per_second(&self) -> f64 {
        self.delivered as f64 / self.elapsed.as_secs_f64()
    }

    pub fn lost(&self) -> u64 {
        self.expected.saturating_sub(self.delivered)
    }

    pub fn percentile_ms(&self, q: f64) -> f64 {
        self.latency.value_at_quantile(q) as f64 / 1000.0
    }

    /// The server's CPU time per delivered message, in microseconds.
    pub fn cpu_micros_per_delivery(&self) -> Option<f64> {
        let cpu = self.server_cpu?;
        (self.delivered > 0).then(|| cpu.as_secs_f64() * 1e6 / self.delivered as f64)
    }
}

/// Latencies from 1 µs to 60 s at 3 significant digits. (An auto-resizing histogram would
/// start at a maximum of 2 and `saturating_record` would clamp every value to it.)
/// A latency histogram in microseconds, up to a minute (every scenario's).
pub fn histogram() -> Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, 60_000_000, 3).context("histogram bounds")
}

/// Runs the scenario against `ws://ADDRESS/ws` (or several comma-separated servers sharing
/// the rooms), in this process or spread over `load.processes` worker processes.
pub async fn run(address: &str, load: &Fanout) -> Result<Outcome> {
    if load.processes > 1 {
        return run_spread(address, load);
    }
    let share = Share::connect(address, load, 0..load.rooms * load.clients).await?;
    let began = Instant::now();
    let result = share.run().await?;
    Ok(result.outcome(load, began.elapsed()))
}

/// What some clients counted.
#[derive(Debug)]
pub struct ShareResult {
    pub sent: u64,
    pub delivered: u64,
    pub latency: Histogram<u64>,
    pub closed: u64,
}

impl ShareResult {
    fn outcome(self, load: &Fanout, elapsed: Duration) -> Outcome {
        let duration = *load.duration;
        Outcome {
            sent: self.sent,
            delivered: self.delivered,
            // Each message goes to every client of its room, the sender included.
            expected: self.sent * load.clients as u64,
            elapsed: duration.max(elapsed.min(duration)),
            latency: self.latency,
            server_cpu: None,
            closed: self.closed,
        }
    }

    /// One line of JSON, for a worker to hand its counts to the parent.
    pub fn to_line(&self) -> String {
        let buckets: Vec<(u64, u64)> = self
            .latency
            .iter_recorded()
            .map(|v| (v.value_iterated_to(), v.count_at_value()))
            .collect();
        let counts = serde_json::json!({
            "sent": self.sent, "delivered": self.delivered, "closed": self.closed, "latency": buckets
        });
        counts.to_string()
    }

    fn from_line(line: &str) -> Result<Self> {
        let value: serde_json::Value = serde_json::from_str(line).context("a worker's result")?;
        let mut latency = histogram()?;
        let buckets = value["latency"].as_array().context("latency buckets")?;
        for bucket in buckets {
            let (Some(micros), Some(count)) = (bucket[0].as_u64(), bucket[1].as_u64()) else {
                bail!("a malformed bucket: {bucket}");
            };
            latency.record_n(micros, count).context("recording a bucket")?;
        }
        Ok(ShareResult {
            sent: value["sent"].as_u64().context("sent")?,
            delivered: value["delivered"].as_u64().context("delivered")?,
            closed: value["closed"].as_u64().context("closed")?,
            latency,
        })
    }
}

/// What one client received: messages, their latencies, and whether its connection ended
/// before the run did.
type ClientCounts = (u64, Histogram<u64>, bool);

/// Some of the clients (global numbers `n`: room `n / clients`, member `n % clients`),
/// connected and waiting for the start.
pub struct Share {
    tasks: Vec<tokio::task::JoinHandle<Result<ClientCounts>>>,
    ready: Arc<Barrier>,
    sent: Arc<AtomicU64>,
}

impl Share {
    /// Connects the clients `clients` to `address`; several comma-separated addresses (servers
    /// sharing rooms) take the clients in turn, so every room has members on each.
    pub async fn connect(address: &str, load: &Fanout, clients: Range<usize>) -> Result<Self> {
        let addresses: Vec<&str> = address.split(',').collect();
        let ready = Arc::new(Barrier::new(clients.len() + 1));
        let sent = Arc::new(AtomicU64::new(0));
        let duration = *load.duration;
        // Readers give up this long after the senders stopped.
        let drain = Duration::from_secs(3);
        let mut tasks = Vec::with_capacity(clients.len());
        for n in clients {
            let (room, client) = (n / load.clients, n % load.clients);
            let address = addresses[n % addresses.len()];
            let url = testclient::url(address, &format!("room=bench-{room}&nick=c{client}"));
            let ws = Client::open(&url).await.with_context(|| format!("connecting to {url}"))?;
            let sender = client < load.senders;
            let (ready, sent, rate) = (ready.clone(), sent.clone(), load.rate);
            tasks.push(tokio::spawn(async move {
                client_task(ws, sender, rate, duration, drain, ready, sent).await
            }));
        }
        Ok(Share { tasks, ready, sent })
    }

    /// Starts every client at once and collects what they counted.
    pub async fn run(self) -> Result<ShareResult> {
        self.ready.wait().await;
        let mut latency = histogram()?;
        let (mut delivered, mut closed) = (0, 0);
        for task in self.tasks {
            let (received, histogram, ended) = task.await.context("client task")??;
            delivered += received;
            closed += u64::from(ended);
            latency.add(&histogram).context("merging histograms")?;
        }
        Ok(ShareResult { sent: self.sent.load(Ordering::Relaxed), delivered, latency, closed })
    }
}

/// The scenario spread over worker processes (`bench fanout-worker`), so the load generator
/// is not one process's event loop: each connects its share, says `ready`, starts on `go`,
/// and prints its counts and latency buckets as one line of JSON.
fn run_spread(address: &str, load: &Fanout) -> Result<Outcome> {
    let exe = std::env::current_exe().context("the bench binary")?;
    let total = load.rooms * load.clients;
    let processes = load.processes.min(total.max(1));
    let mut workers = Vec::new();
    let mut first = 0;
    for worker in 0..processes {
        let count = total / processes + usize::from(worker < total % processes);
        let mut child = Command::new(&exe)
            .args(["fanout-worker", "--address", address])
            .args(["--first", &first.to_string(), "--count", &count.to_string()])
            .args(["--rooms", &load.rooms.to_string(), "--clients", &load.clients.to_string()])
            .args(["--senders", &load.senders.to_string(), "--rate", &load.rate.to_string()])
            .args(["--duration", &load.duration.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting a worker")?;
        let stdout = BufReader::new(child.stdout.take().context("worker stdout")?);
        workers.push((child, stdout));
        first += count;
    }
    for (_, stdout) in &mut workers {
        let mut line = String::new();
        stdout.read_line(&mut line).context("reading a worker")?;
        if line.trim() != "ready" {
            bail!("a worker failed to connect: {line:?}");
        }
    }
    let began = Instant::now();
    for (child, _) in &mut workers {
        let stdin = child.stdin.as_mut().context("worker stdin")?;
        writeln!(stdin, "go").context("starting a worker")?;
    }
    let mut merged = ShareResult { sent: 0, delivered: 0, latency: histogram()?, closed: 0 };
    for (mut child, mut stdout) in workers {
        let mut line = String::new();
        stdout.read_line(&mut line).context("reading a worker's result")?;
        let part = ShareResult::from_line(&line)?;
        merged.sent += part.sent;
        merged.delivered += part.delivered;
        merged.closed += part.closed;
        merged.latency.add(&part.latency).context("merging histograms")?;
        let _ = child.wait();
    }
    Ok(merged.outcome(load, began.elapsed()))
}

/// Microseconds since the Unix epoch: the one clock every worker process shares, so a latency
/// can be measured from a send in one process to a receipt in another.
fn now_micros() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_micros())
}

#[allow(clippy::too_many_arguments)]
async fn client_task(
    ws: Client,
    sender: bool,
    rate: u32,
    duration: Duration,
    drain: Duration,
    ready: Arc<Barrier>,
    sent: Arc<AtomicU64>,
) -> Result<ClientCounts> {
    let (mut sink, mut stream) = ws.split();
    let mut histogram = histogram()?;
    ready.wait().await;
    let began = Instant::now();
    let stop_sending = began + duration;
    let give_up = stop_sending + drain;
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate.max(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut received = 0;
    // A connection the server closes (or that fails) ends this client: what it would have
    // received counts as lost, and the run still ends on time.
    let mut closed = false;
    loop {
        tokio::select! {
            _ = tick.tick(), if sender && Instant::now() < stop_sending => {
                let micros = now_micros();
                let frame = format!(r#"{{"type":"send","text":"t{micros}"}}"#);
                if sink.send(Message::text(frame)).await.is_err() {
                    closed = true;
                    break;
                }
                sent.fetch_add(1, Ordering::Relaxed);
            }
            frame = tokio::time::timeout_at(give_up.into(), stream.next()) => {
                let text = match frame {
                    Err(_) => break,
                    Ok(Some(Ok(Message::Text(text)))) => text,
                    Ok(Some(Ok(_))) => continue,
                    Ok(None | Some(Err(_))) => {
                        closed = true;
                        break;
                    }
                };
                // The text is "t<micros>"; other frames (welcome, presence) do not count.
                if let Some(micros) = text.split("\"text\":\"t").nth(1)
                    .and_then(|rest| rest.split('"').next())
                    .and_then(|m| m.parse::<u128>().ok())
                {
                    let now = now_micros();
                    histogram.saturating_record(u64::try_from(now.saturating_sub(micros)).unwrap_or(u64::MAX));
                    received += 1;
                }
            }
        }
    }
    Ok((received, histogram, closed))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Smoke run (about four seconds) against our server started in this process: every
    /// message sent reaches every member, and latencies were recorded for each delivery.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn smoke_run_counts_every_delivery() {
        let address = crate::serve_in_process(server::Config::default());
        let load = Fanout {
            rooms: 2,
            clients: 4,
            senders: 2,
            rate: 5,
            duration: Duration::from_millis(600).into(),
            processes: 1,
        };
        let outcome = run(&address, &load).await.expect("the run completes");
        assert!(outcome.sent >= 8, "senders sent: {}", outcome.sent);
        assert_eq!(outcome.lost(), 0);
        assert_eq!(outcome.delivered, outcome.sent * 4, "every member got every message");
        assert_eq!(outcome.latency.len(), outcome.delivered);
        // A loopback hop through a server takes more than 10 µs and, unloaded, less than 1 s.
        assert!(outcome.latency.min() >= 10, "min {} µs", outcome.latency.min());
        assert!(outcome.latency.max() < 1_000_000, "max {} µs", outcome.latency.max());
        assert_eq!(outcome.closed, 0);
    }

    /// A server that closes every connection right after the handshake: the run still ends on
    /// time and says the connections were closed. (It once spun forever on the ended streams,
    /// so the run gets a thread of its own that the test can give up on.)
    #[test]
    fn connections_the_server_closes_end_the_run() {
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().expect("a runtime");
            let outcome = runtime.block_on(async {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                let address = listener.local_addr()?.to_string();
                tokio::spawn(async move {
                    while let Ok((stream, _)) = listener.accept().await {
                        tokio::spawn(async move {
                            if let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await {
                                let _ = ws.close(None).await;
                            }
                        });
                    }
                });
                let load = Fanout {
                    rooms: 1,
                    clients: 3,
                    senders: 1,
                    rate: 50,
                    duration: Duration::from_millis(300).into(),
                    processes: 1,
                };
                run(&address, &load).await
            });
            let _ = done.send(outcome);
        });
        let outcome = finished.recv_timeout(Duration::from_secs(20)).expect("the run ends in time");
        let outcome = outcome.expect("the run completes");
        assert_eq!((outcome.closed, outcome.delivered), (3, 0));
    }
}
