//! A `redis-server` of a test's (or a benchmark's) own (Debian's, installed by
//! `scripts/setup --test`), on a free loopback port with its own folder, killed when dropped;
//! and a few commands spoken to it in plain RESP, so callers need no Redis client of their own.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisProcess {
    child: Child,
    pub port: u16,
    pub url: String,
    durable: bool,
    dir: tempfile::TempDir,
}

impl RedisProcess {
    /// With `durable`, the settings the chat requires (append-only file synced on every write,
    /// no eviction); without, weaker ones for each.
    pub fn start(durable: bool) -> Self {
        // A free port is only free until someone takes it: if the server exits (its port was
        // taken meanwhile), try another.
        for _ in 0..5 {
            let port =
                TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
            let dir = tempfile::tempdir().expect("a folder for redis");
            let child = spawn(port, dir.path(), durable);
            let url = format!("redis://127.0.0.1:{port}/0");
            let mut process = RedisProcess { child, port, url, durable, dir };
            if process.wait_ready() {
                return process;
            }
        }
        panic!("redis-server did not start on any of five free ports");
    }

    /// Whether the server answers (`false`: it exited, its port taken meanwhile).
    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self.child.try_wait().ok().flatten().is_some() {
                return false;
            }
            if self.try_command(&["PING"]).is_some_and(|reply| reply == "+PONG") {
                // Ours, not another test's on a port taken in between: it is still running.
                return self.child.try_wait().ok().flatten().is_none();
            }
            assert!(Instant::now() < deadline, "redis-server did not answer");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's process id (for its CPU time).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `kill -9`: nothing is written on the way out.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port, from its append-only file (`keep_data`) or from
    /// nothing (its folder emptied: a Redis that lost its data).
    pub fn restart(&mut self, keep_data: bool) {
        self.kill();
        if !keep_data {
            self.dir = tempfile::tempdir().expect("a folder for redis");
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            self.child = spawn(self.port, self.dir.path(), self.durable);
            if self.wait_ready() {
                return;
            }
            // The port lingers for a moment after the kill.
            assert!(Instant::now() < deadline, "redis-server did not start again");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends one command; its reply's first line (`+OK`, `:3`, `-ERR ...`, `$5` ...).
    pub fn command(&self, args: &[&str]) -> String {
        self.try_command(args).expect("redis answered")
    }

    fn try_command(&self, args: &[&str]) -> Option<String> {
        command_at(self.port, args)
    }

    /// A command whose reply is a bulk string (`CLIENT LIST`): the string.
    pub fn bulk(&self, args: &[&str]) -> String {
        let mut reader = send(self.port, args).expect("redis answered");
        let mut header = String::new();
        reader.read_line(&mut header).expect("a reply");
        let length: usize = header.trim_end().trim_start_matches('$').parse().expect("bulk");
        let mut body = vec![0; length];
        reader.read_exact(&mut body).expect("its body");
        String::from_utf8_lossy(&body).into_owned()
    }
}

/// Sends one command to the Redis on `port`; its reply's first line, if it answered.
pub fn command_at(port: u16, args: &[&str]) -> Option<String> {
    let mut line = String::new();
    send(port, args)?.read_line(&mut line).ok()?;
    Some(line.trim_end().to_owned())
}

fn send(port: u16, args: &[&str]) -> Option<BufReader<TcpStream>> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut request = format!("*{}\r\n", args.len());
    for arg in args {
        request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    stream.write_all(request.as_bytes()).ok()?;
    Some(BufReader::new(stream))
}

fn spawn(port: u16, dir: &std::path::Path, durable: bool) -> Child {
    let binary = std::env::var("REDIS_SERVER").unwrap_or_else(|_| "/usr/bin/redis-server".into());
    let mut args: Vec<String> = ["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""]
        .iter()
        .map(|arg| (*arg).to_owned())
        .collect();
    args.extend(["--dir".to_owned(), dir.display().to_string()]);
    let settings = if durable {
        ["--appendonly", "yes", "--appendfsync", "always", "--maxmemory-policy", "noeviction"]
    } else {
        ["--appendonly", "no", "--appendfsync", "everysec", "--maxmemory-policy", "allkeys-lru"]
    };
    args.extend(settings.iter().map(|arg| (*arg).to_owned()));
    Command::new(&binary)
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {binary} ({e}): run scripts/setup --test"))
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
