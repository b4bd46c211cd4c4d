//! A price feed for the chat: posts simulated quotes into a room every second through the HTTP
//! API, as the bot `pricebot`. Start the chat (`scripts/run`), then in another terminal:
//!
//! ```sh
//! scripts/price-bot                    # quotes into #quotes of http://127.0.0.1:8080
//! scripts/price-bot --room markets --count 60
//! ```
//!
//! The API key comes from `CHAT_API_KEY`, or else from `<data-dir>/price-bot.key`, which the
//! bot makes on its first run with the same code as `server admin create-key` (so it must run
//! where the server's data folder is, `data/` by default). Each quote carries an
//! `Idempotency-Key` and is retried with it while the server is away, so it is stored once;
//! a refused key ends the bot.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

struct Options {
    /// `host:port` of the chat server (plain HTTP).
    address: String,
    room: String,
    data_dir: PathBuf,
    /// Quotes to post before stopping; none: until stopped.
    count: Option<u64>,
}

fn options() -> Result<Options, String> {
    let mut options = Options {
        address: "127.0.0.1:8080".into(),
        room: "quotes".into(),
        data_dir: PathBuf::from("data"),
        count: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--address" => options.address = value()?,
            "--room" => options.room = value()?,
            "--data-dir" => options.data_dir = PathBuf::from(value()?),
            "--count" => {
                options.count = Some(value()?.parse().map_err(|e| format!("--count: {e}"))?)
            }
            other => {
                return Err(format!(
                    "unknown {other}; flags: --address HOST:PORT --room NAME --data-dir DIR --count N"
                ));
            }
        }
    }
    Ok(options)
}

/// `CHAT_API_KEY`, or the key kept in the data folder (made there on the first run).
fn api_key(data_dir: &Path) -> Result<String, String> {
    if let Ok(key) = std::env::var("CHAT_API_KEY") {
        return Ok(key);
    }
    let file = data_dir.join("price-bot.key");
    match std::fs::read_to_string(&file) {
        Ok(key) => return Ok(key.trim().to_owned()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(format!("{}: {error}", file.display())),
    }
    let options =
        server::config::Storage { data_dir: data_dir.to_owned(), ..Default::default() }.options();
    // The server's database, as it made it: start the chat first.
    let db = server::db::Db::open_existing(options).map_err(|e| e.to_string())?;
    let key = server::api::new_key().map_err(|e| e.to_string())?;
    // The file first: a key must never exist that nobody holds.
    let mut kept = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&file)
            .map_err(|e| format!("{}: {e}", file.display()))?
    };
    let made = writeln!(kept, "{key}").map_err(|e| e.to_string()).and_then(|()| {
        let now = server::outbound::now_millis();
        let name = format!("price-bot-{now}");
        db.create_key(&name, &server::api::key_hash(&key), now).map_err(|e| e.to_string())?;
        eprintln!("made the API key {name:?}, kept in {}", file.display());
        Ok(())
    });
    if made.is_err() {
        let _ = std::fs::remove_file(&file);
    }
    made.map(|()| key)
}

/// POSTs `body` with these headers; returns the status and the body of the answer.
fn post(
    address: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> std::io::Result<(u16, String)> {
    let target = address
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other("the address names no host"))?;
    let mut stream = TcpStream::connect_timeout(&target, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes())?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let status = answer.split_whitespace().nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    let body = answer.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default();
    Ok((status, body))
}

/// A small, seeded random walk (xorshift): no dependency for a demo's noise.
struct Walk(u64);

impl Walk {
    fn step(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % 2001) as f64 / 1000.0 - 1.0
    }
}

#[allow(clippy::print_stdout)] // what it posted, as it goes
fn main() -> Result<(), String> {
    let options = options()?;
    let key = api_key(&options.data_dir)?;
    let bearer = format!("Bearer {key}");
    let path = format!("/api/v1/rooms/{}/messages", options.room);
    let started = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let mut walk = Walk(started | 1);
    let mut prices = [("ACME", 101.25), ("GLOBEX", 47.80), ("INITECH", 12.05)];
    let mut next = Instant::now();
    let mut posted = 0;
    while options.count.is_none_or(|count| posted < count) {
        let (symbol, price) = &mut prices[(posted % 3) as usize];
        let change = (walk.step() * 50.0).round() / 100.0;
        *price = (*price + change).max(0.01);
        let arrow = if change >= 0.0 { "▲" } else { "▼" };
        let text = format!("{symbol} {price:.2} {arrow}{:.2}", change.abs());
        let body = serde_json::json!({"from": "pricebot", "text": text}).to_string();
        let idempotency = format!("q-{started}-{posted}");
        let headers =
            [("Authorization", bearer.as_str()), ("Idempotency-Key", idempotency.as_str())];
        // A quote is retried (same Idempotency-Key: stored once) while the server is away or
        // busy, waiting longer each time; a refusal of the key ends the bot.
        let mut wait = Duration::from_secs(1);
        loop {
            match post(&options.address, &path, &headers, &body) {
                Ok((201, _)) => {
                    println!("#{} {text}", options.room);
                    break;
                }
                Ok((401, answer)) => return Err(format!("the API key was refused: {answer}")),
                Ok((status, answer)) if status < 500 && status != 429 => {
                    eprintln!("refused ({status}), skipped: {answer}");
                    break;
                }
                Ok((status, _)) => eprintln!("answered {status}; trying again in {wait:?}"),
                Err(error) => {
                    eprintln!(
                        "cannot reach {}: {error}; trying again in {wait:?}",
                        options.address
                    );
                }
            }
            std::thread::sleep(wait);
            wait = (wait * 2).min(Duration::from_secs(30));
        }
        posted += 1;
        // One quote a second, without a burst to catch up after an outage.
        next = (next + Duration::from_secs(1)).max(Instant::now());
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    Ok(())
}
