//! Chaos: clients, each in two rooms over one connection, send messages with client ids to
//! both while their connections are cut at random and the server process is killed with
//! SIGKILL and restarted, several times. The second run does the same with three servers
//! sharing the rooms through one Redis (`--redis`): each connection goes to a server at random
//! (as behind a load balancer), a random server is killed each time, and Redis itself is
//! killed with SIGKILL once and restarted from its append-only file. Each client behaves like the web client: it keeps
//! every unacknowledged message and sends it again after each reconnect, and rejoins each room
//! with the last id it saw there (the first through the connect URL, the second with a `join`
//! that adds it).
//!
//! At the end every client's view of each of its rooms must equal the server's stored history, and
//! every message sent must be in it exactly once, with strictly increasing ids. The run prints
//! sent / acknowledged / delivered / lost / duplicated (also to `target/chaos.txt`) and fails
//! unless lost and duplicated are both zero. `CHAOS_SEED=N` replays a run's random choices
//! (the timing of the machine still varies).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use protocol::{ChatMessage, ErrorCode, MessageId, ServerMessage};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use testclient::{Client, Message};
use tokio::sync::Barrier;
use tokio::time::{Instant, sleep, sleep_until, timeout};

const ROOMS: usize = 3;
const CLIENTS_PER_ROOM: usize = 4;
const MESSAGES_PER_CLIENT: usize = 100;
const KILLS: usize = 4;
/// Messages a client has sent and not had acknowledged, at most, per connection.
const WINDOW: usize = 5;
/// How often an acknowledgement is "lost": the connection is cut as it arrives.
const ACK_LOSS: f64 = 0.1;
/// The whole run must finish within this.
const RUN_LIMIT: Duration = Duration::from_secs(90);

/// The server binary on a fixed port with one data directory, so it can be killed and started
/// again at the same address with the same database.
struct Server {
    binary: PathBuf,
    data: PathBuf,
    port: u16,
    child: Option<Child>,
    log: PathBuf,
    /// `--redis URL`, for servers sharing rooms.
    redis: Option<String>,
}

impl Server {
    fn start(data: &Path, redis: Option<String>) -> Self {
        let exe = std::env::current_exe().expect("test binary path");
        let binary = exe.ancestors().nth(2).expect("target/<profile>").join("server");
        assert!(binary.is_file(), "{} is missing: run `cargo test --workspace`", binary.display());
        let port =
            TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
        let log = exe.ancestors().nth(3).expect("target").join("chaos-server.log");
        let mut server = Server { binary, data: data.to_owned(), port, child: None, log, redis };
        server.restart();
        server
    }

    fn restart(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("server log file");
        let child = Command::new(&self.binary)
            .args(["--port", &self.port.to_string(), "--ui-dir", "/nonexistent", "--data-dir"])
            .arg(&self.data)
            .args(["--heartbeat-interval", "1s", "--client-timeout", "3s"])
            // Faster than a person types, so that writes are always under way when it dies.
            .args(["--rate-per-second", "100", "--rate-burst", "200"])
            // Every client reconnects every second or two, joining two rooms each time.
            .args(["--joins-per-minute-per-address", "100000"])
            .args(self.redis.iter().flat_map(|url| ["--redis", url, "--presence-expiry", "2s"]))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("server starts");
        self.child = Some(child);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let start = std::time::Instant::now();
        while TcpStream::connect(addr).is_err() {
            assert!(start.elapsed() < Duration::from_secs(20), "server did not listen again");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL, and wait until the process is gone.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL sent");
            child.wait().expect("server reaped");
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What one client saw and did.
#[derive(Debug, Default)]
struct ClientRun {
    /// Its rooms: the first is the connect URL's, the second is added by a `join`.
    rooms: [String; 2],
    nick: String,
    /// Its view of each room: every message it received there, by id.
    views: BTreeMap<String, BTreeMap<MessageId, (String, String)>>,
    /// Client id → the id it was acknowledged with.
    acked: HashMap<String, MessageId>,
    /// What it sent: client id, room, text.
    sent: Vec<(String, String, String)>,
    attempts: usize,
    connections: usize,
    cuts: usize,
    /// Acknowledgements it pretended not to receive (cutting the connection instead).
    lost_acks: usize,
    /// Messages received that it already had (a gap-free, repeat-free catch-up has none).
    repeats: usize,
    /// Messages received with an id not above the previous one on the same connection.
    out_of_order: usize,
    /// A client id acknowledged with two different ids.
    conflicting_acks: usize,
    /// Welcomes that did not resume from the `since` asked for.
    not_resumed: usize,
}

impl ClientRun {
    /// Adds a message to its room's view; `last` holds the newest id per room on this
    /// connection.
    fn record(&mut self, message: ChatMessage, last: &mut HashMap<String, MessageId>) {
        let newest = last.entry(message.room.clone()).or_default();
        if message.id <= *newest {
            self.out_of_order += 1;
        }
        *newest = message.id;
        let view = self.views.entry(message.room).or_default();
        if view.insert(message.id, (message.from, message.text)).is_some() {
            self.repeats += 1;
        }
    }

    fn since(&self, room: &str) -> MessageId {
        self.views.get(room).and_then(|view| view.keys().next_back().copied()).unwrap_or(0)
    }
}

/// Connects to one of `ports`, chosen at random (a load balancer's choice).
async fn connect_any(
    ports: &[u16],
    rng: &mut StdRng,
    room: &str,
    nick: &str,
    since: MessageId,
) -> Option<Client> {
    connect(ports[rng.random_range(0..ports.len())], room, nick, since).await
}

async fn connect(port: u16, room: &str, nick: &str, since: MessageId) -> Option<Client> {
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let url =
        testclient::url(address, &format!("room={room}&nick={nick}&client=t-{nick}&since={since}"));
    match timeout(Duration::from_secs(2), Client::open(&url)).await {
        Ok(Ok(ws)) => Some(ws),
        _ => None,
    }
}

async fn send(ws: &mut Client, room: &str, client_id: &str, text: &str) -> bool {
    let frame =
        serde_json::json!({"type": "send", "room": room, "text": text, "client_id": client_id});
    ws.send_frame(Message::text(frame.to_string())).await.is_ok()
}

/// Adds `room` to the connection, resuming after `since`.
async fn add_room(ws: &mut Client, room: &str, since: MessageId) -> bool {
    let frame = serde_json::json!({"type": "join", "room": room, "since": since, "add": true});
    ws.send_frame(Message::text(frame.to_string())).await.is_ok()
}

/// One client: types its messages at a human pace, keeps the unacknowledged ones, and sends
/// them again after every reconnect; cuts its own connection now and then.
async fn client(
    ports: Vec<u16>,
    rooms: [String; 2],
    nick: String,
    seed: u64,
    stop: Instant,
    all_sent: Arc<Barrier>,
) -> ClientRun {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut run = ClientRun { rooms: rooms.clone(), nick: nick.clone(), ..Default::default() };
    run.sent = (0..MESSAGES_PER_CLIENT)
        .map(|i| (format!("{nick}-{i}"), rooms[i % 2].clone(), format!("{nick} says {i}")))
        .collect();
    let mut typed = 0;
    while run.acked.len() < MESSAGES_PER_CLIENT && Instant::now() < stop {
        let since = run.since(&rooms[0]);
        let Some(mut ws) = connect_any(&ports, &mut rng, &rooms[0], &nick, since).await else {
            sleep(Duration::from_millis(rng.random_range(20..120))).await;
            continue;
        };
        run.connections += 1;
        // Where each room should resume on this connection.
        let asked: HashMap<String, MessageId> =
            rooms.iter().map(|room| (room.clone(), run.since(room))).collect();
        let cut_at = Instant::now() + Duration::from_millis(rng.random_range(300..2500));
        let mut in_flight: HashSet<String> = HashSet::new();
        // The rooms welcomed on this connection; sends go only to those.
        let mut welcomed: HashSet<String> = HashSet::new();
        let mut last_on_connection = asked.clone();
        let mut next_tick = Instant::now();
        loop {
            tokio::select! {
                frame = ws.next_frame() => {
                    let Some(Ok(Message::Text(text))) = frame else {
                        if matches!(frame, Some(Ok(_))) { continue; }
                        break;
                    };
                    let message: ServerMessage =
                        serde_json::from_str(&text).expect("the server speaks the protocol");
                    match message {
                        ServerMessage::Welcome { room, history, since, more, .. } => {
                            // The run's messages are short: every catch-up fits the one page
                            // a welcome carries (paging has its own test in tests/server).
                            assert!(!more, "{nick}: a catch-up larger than one page");
                            if since != asked.get(&room).copied() {
                                run.not_resumed += 1;
                            }
                            for message in history {
                                run.record(message, &mut last_on_connection);
                            }
                            if room == rooms[0] && !welcomed.contains(&rooms[1])
                                && !add_room(&mut ws, &rooms[1], asked[&rooms[1]]).await
                            {
                                break;
                            }
                            welcomed.insert(room);
                        }
                        ServerMessage::Message(message) => {
                            run.record(message, &mut last_on_connection);
                        }
                        ServerMessage::Ack { .. } if rng.random_bool(ACK_LOSS) => {
                            // The connection drops before the acknowledgement arrives: the
                            // message must be sent again, and must not be stored twice.
                            run.lost_acks += 1;
                            run.cuts += 1;
                            break;
                        }
                        ServerMessage::Ack { client_id, id, .. } => {
                            in_flight.remove(&client_id);
                            if run.acked.insert(client_id, id).is_some_and(|old| old != id) {
                                run.conflicting_acks += 1;
                            }
                        }
                        ServerMessage::Error { code: ErrorCode::RateLimited, .. } => {
                            in_flight.clear();
                        }
                        ServerMessage::Error { code, client_id: Some(client_id), .. }
                            if code.is_transient() =>
                        {
                            in_flight.remove(&client_id);
                        }
                        // A room that could not open (Redis is away): try again later.
                        ServerMessage::Error { code, client_id: None, .. }
                            if code.is_transient() =>
                        {
                            run.cuts += 1;
                            break;
                        }
                        ServerMessage::Error { code, message, .. } => {
                            panic!("{nick}: unexpected error {code:?}: {message}");
                        }
                        _ => {}
                    }
                    if run.acked.len() == MESSAGES_PER_CLIENT {
                        break;
                    }
                }
                () = sleep_until(next_tick) => {
                    next_tick = Instant::now() + Duration::from_millis(rng.random_range(10..60));
                    if welcomed.is_empty() {
                        continue;
                    }
                    typed = (typed + 1).min(MESSAGES_PER_CLIENT);
                    let waiting: Vec<(String, String, String)> = run.sent[..typed]
                        .iter()
                        .filter(|(id, room, _)| {
                            welcomed.contains(room)
                                && !run.acked.contains_key(id)
                                && !in_flight.contains(id)
                        })
                        .take(WINDOW.saturating_sub(in_flight.len()))
                        .cloned()
                        .collect();
                    for (client_id, room, text) in waiting {
                        run.attempts += 1;
                        in_flight.insert(client_id.clone());
                        if !send(&mut ws, &room, &client_id, &text).await {
                            break;
                        }
                    }
                }
                () = sleep_until(cut_at) => {
                    run.cuts += 1;
                    break;
                }
            }
        }
        // Dropping the client closes the TCP connection without a close frame.
        drop(ws);
    }
    // Once every client is done, a last catch-up in each room: the views should then hold
    // the whole rooms. Bounded: a client that failed (panicked) never arrives, and the run
    // must then fail on its panic rather than wait for it forever.
    let _ = timeout(RUN_LIMIT + Duration::from_secs(30), all_sent.wait()).await;
    for room in &rooms {
        let stop = Instant::now() + Duration::from_secs(20);
        while Instant::now() < stop {
            let since = run.since(room);
            if let Some(mut ws) = connect_any(&ports, &mut rng, room, &nick, since).await {
                let mut last = HashMap::from([(room.clone(), run.since(room))]);
                if let Ok(Some(Ok(Message::Text(text)))) =
                    timeout(Duration::from_secs(2), ws.next_frame()).await
                    && let Ok(ServerMessage::Welcome { history, .. }) = serde_json::from_str(&text)
                {
                    for message in history {
                        run.record(message, &mut last);
                    }
                    let _ = ws.send_frame(Message::Close(None)).await;
                    break;
                }
            }
            sleep(Duration::from_millis(50)).await;
        }
    }
    run
}

/// The whole stored history of `room`, through a fresh connection asking for everything.
async fn stored_history(port: u16, room: &str) -> Vec<ChatMessage> {
    let mut ws = connect(port, room, "auditor", 0).await.expect("auditor connects");
    loop {
        let frame =
            timeout(Duration::from_secs(5), ws.next_frame()).await.expect("welcome in time");
        if let Some(Ok(Message::Text(text))) = frame
            && let Ok(ServerMessage::Welcome { history, truncated, .. }) =
                serde_json::from_str(&text)
        {
            assert!(!truncated, "retention must hold the whole run");
            return history;
        }
    }
}

/// The two runs take turns: each loads both cores.
static ONE_RUN_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_acknowledged_is_lost_or_duplicated_under_chaos() {
    let _turn = ONE_RUN_AT_A_TIME.lock().await;
    chaos(1, false).await;
}

/// Three servers on one Redis: connections land on any of them, servers are killed in turn,
/// and Redis is killed once and restarted from its append-only file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_acknowledged_is_lost_or_duplicated_across_servers_under_chaos() {
    let _turn = ONE_RUN_AT_A_TIME.lock().await;
    chaos(3, true).await;
}

async fn chaos(servers: usize, shared: bool) {
    let seed = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or_else(|| rand::rng().random::<u64>());
    let mut rng = StdRng::seed_from_u64(seed);
    let mut redis = shared.then(|| testclient::redis::RedisProcess::start(true));
    let url = redis.as_ref().map(|redis| redis.url.clone());
    let data: Vec<_> =
        (0..servers).map(|_| tempfile::tempdir().expect("temporary data directory")).collect();
    let mut cluster: Vec<Server> =
        data.iter().map(|dir| Server::start(dir.path(), url.clone())).collect();
    let ports: Vec<u16> = cluster.iter().map(|server| server.port).collect();
    let stop = Instant::now() + RUN_LIMIT;

    let mut clients = Vec::new();
    let all_sent = Arc::new(Barrier::new(ROOMS * CLIENTS_PER_ROOM));
    for room in 0..ROOMS {
        for member in 0..CLIENTS_PER_ROOM {
            // Each client's second room is the next one's first.
            let rooms = [format!("chaos{room}"), format!("chaos{}", (room + 1) % ROOMS)];
            let nick = format!("c{room}x{member}");
            let run = client(ports.clone(), rooms, nick, rng.random(), stop, all_sent.clone());
            clients.push(tokio::spawn(run));
        }
    }
    for kill in 0..KILLS {
        sleep(Duration::from_millis(rng.random_range(500..1200))).await;
        let victim = rng.random_range(0..cluster.len());
        cluster[victim].kill();
        sleep(Duration::from_millis(rng.random_range(50..500))).await;
        cluster[victim].restart();
        if kill == KILLS / 2
            && let Some(redis) = redis.as_mut()
        {
            redis.kill();
            sleep(Duration::from_millis(rng.random_range(200..600))).await;
            redis.restart(true);
        }
    }
    let mut runs = Vec::new();
    for client in clients {
        runs.push(client.await.expect("client task finished"));
    }

    let name = if shared {
        format!("{servers} servers on one Redis (killed once)")
    } else {
        "one server".to_owned()
    };
    let mut report = Report { seed, setup: name, ..Report::default() };
    for room in 0..ROOMS {
        let room = format!("chaos{room}");
        let stored = stored_history(ports[0], &room).await;
        // Every server must serve the same history.
        for port in &ports[1..] {
            if stored_history(*port, &room).await != stored {
                report.problems.push(format!("#{room}: the servers hold different histories"));
            }
        }
        report.check_room(&room, &stored, runs.iter().filter(|run| run.rooms.contains(&room)));
    }
    report.print(&runs);
    assert!(
        runs.iter().all(|run| run.acked.len() == MESSAGES_PER_CLIENT),
        "every message was acknowledged within {RUN_LIMIT:?}"
    );
    assert_eq!((report.lost, report.duplicated), (0, 0), "{}", report.problems.join("\n"));
    assert!(report.problems.is_empty(), "{}", report.problems.join("\n"));
}

#[derive(Debug, Default)]
struct Report {
    seed: u64,
    /// What ran: one server, or several on Redis.
    setup: String,
    sent: usize,
    acknowledged: usize,
    delivered: usize,
    lost: usize,
    duplicated: usize,
    problems: Vec<String>,
}

impl Report {
    fn check_room<'a>(
        &mut self,
        room: &str,
        stored: &[ChatMessage],
        runs: impl Iterator<Item = &'a ClientRun>,
    ) {
        if !stored.windows(2).all(|pair| pair[0].id < pair[1].id) {
            self.problems.push(format!("#{room}: stored ids do not strictly increase"));
        }
        let mut copies: HashMap<&str, Vec<MessageId>> = HashMap::new();
        for message in stored {
            copies.entry(message.text.as_str()).or_default().push(message.id);
        }
        let server_view: BTreeMap<MessageId, (String, String)> =
            stored.iter().map(|m| (m.id, (m.from.clone(), m.text.clone()))).collect();
        for run in runs {
            for (client_id, _, text) in run.sent.iter().filter(|(_, to, _)| to == room) {
                self.sent += 1;
                let found = copies.get(text.as_str()).map_or(&[][..], Vec::as_slice);
                match (found, run.acked.get(client_id)) {
                    ([], _) => {
                        self.lost += 1;
                        self.problems.push(format!("#{room}: {client_id} is not stored"));
                    }
                    ([only], Some(acked)) if only != acked => self.problems.push(format!(
                        "#{room}: {client_id} acknowledged as {acked}, stored as {only}"
                    )),
                    ([_], _) => {}
                    (many, _) => {
                        self.duplicated += many.len() - 1;
                        self.problems
                            .push(format!("#{room}: {client_id} stored {} times", many.len()));
                    }
                }
            }
            let view = run.views.get(room).cloned().unwrap_or_default();
            let acked_here =
                run.sent.iter().filter(|(id, to, _)| to == room && run.acked.contains_key(id));
            self.acknowledged += acked_here.count();
            self.delivered += view.len();
            if run.rooms[0] == room {
                // Counted once per client, not once per room.
                self.duplicated += run.repeats + run.conflicting_acks;
            }
            if view != server_view {
                let missing = server_view.keys().filter(|id| !view.contains_key(id)).count();
                let extra = view.keys().filter(|id| !server_view.contains_key(id)).count();
                self.lost += missing;
                self.duplicated += extra;
                self.problems.push(format!(
                    "#{room}: {}'s view differs: {missing} missing, {extra} not stored",
                    run.nick
                ));
            }
            if run.out_of_order > 0 || run.not_resumed > 0 {
                self.problems.push(format!(
                    "#{room}: {} saw {} out of order and {} welcomes that did not resume",
                    run.nick, run.out_of_order, run.not_resumed
                ));
            }
        }
    }

    fn print(&self, runs: &[ClientRun]) {
        let attempts: usize = runs.iter().map(|run| run.attempts).sum();
        let connections: usize = runs.iter().map(|run| run.connections).sum();
        let cuts: usize = runs.iter().map(|run| run.cuts).sum();
        let lost_acks: usize = runs.iter().map(|run| run.lost_acks).sum();
        let table = format!(
            "chaos, {} (seed {}): {ROOMS} rooms x {CLIENTS_PER_ROOM} clients (each in 2 rooms on one \
             connection) x {MESSAGES_PER_CLIENT} messages, {KILLS} SIGKILL restarts, {cuts} connections cut ({lost_acks} as an ack \
             arrived), {connections} connections\n\
             {:>6} {:>9} {:>13} {:>10} {:>5} {:>11}\n\
             {:>6} {:>9} {:>13} {:>10} {:>5} {:>11}\n",
            self.setup,
            self.seed,
            "sent",
            "attempts",
            "acknowledged",
            "delivered",
            "lost",
            "duplicated",
            self.sent,
            attempts,
            self.acknowledged,
            self.delivered,
            self.lost,
            self.duplicated,
        );
        eprint!("{table}");
        let exe = std::env::current_exe().expect("test binary path");
        if let Some(target) = exe.ancestors().nth(3) {
            // Both runs' tables, one after the other (scripts/test empties it first).
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(target.join("chaos.txt"));
            if let Ok(mut file) = file {
                let _ = std::io::Write::write_all(&mut file, table.as_bytes());
            }
        }
    }
}
