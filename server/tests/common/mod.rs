//! Helpers for tests of the server binary: start it as operators do, find its address in its
//! log, read its memory use, and speak HTTP to it. Tests speak WebSocket to it through the
//! shared [`testclient::Client`].

// Each test binary uses only some of these.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub const DEADLINE: Duration = Duration::from_secs(10);

/// A server process that is killed when the test ends, however it ends.
pub struct Running {
    pub child: Child,
    lines: mpsc::Receiver<String>,
}

impl Running {
    /// Starts the binary with messages kept in memory (tests of the store use
    /// [`Running::start_storing`]), so no test writes into the source tree.
    pub fn start(args: &[&str], envs: &[(&str, &str)]) -> Self {
        let mut envs = envs.to_vec();
        envs.push(("CHAT_EPHEMERAL", "true"));
        Self::spawn(args, &envs)
    }

    /// Starts the binary storing messages under `data_dir`.
    pub fn start_storing(data_dir: &std::path::Path, args: &[&str]) -> Self {
        let dir = data_dir.to_str().expect("UTF-8 temporary path");
        Self::spawn(args, &[("CHAT_DATA_DIR", dir)])
    }

    /// Starts the binary storing messages under `data_dir`, allowed to write files of at most
    /// `max_file_kib` KiB (a soft `ulimit -f`, with SIGXFSZ ignored, so a write past it fails the
    /// way a write to a full disk does). `prlimit --pid` lifts the limit later.
    pub fn start_with_small_disk(
        data_dir: &std::path::Path,
        args: &[&str],
        max_file_kib: u32,
    ) -> Self {
        let dir = data_dir.to_str().expect("UTF-8 temporary path");
        let script = format!("trap '' XFSZ; ulimit -S -f {max_file_kib}; exec \"$0\" \"$@\"");
        let mut command = Command::new("bash");
        command.arg("-c").arg(script).arg(env!("CARGO_BIN_EXE_server")).args(args);
        Self::spawn_command(command, &[("CHAT_DATA_DIR", dir)])
    }

    fn spawn(args: &[&str], envs: &[(&str, &str)]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_server"));
        command.args(args);
        Self::spawn_command(command, envs)
    }

    fn spawn_command(mut command: Command, envs: &[(&str, &str)]) -> Self {
        command.env("RUST_LOG", "info").env("NO_COLOR", "1");
        for (key, value) in envs {
            command.env(key, value);
        }
        let mut child = command.stderr(Stdio::piped()).spawn().expect("server starts");
        let stderr = child.stderr.take().expect("stderr piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running { child, lines }
    }

    /// Waits for the log line that says where the server listens; returns `host:port`.
    pub fn address(&self) -> String {
        self.wait_for_log("listening on http://")
    }

    /// Waits for the log line that says where the server listens with TLS; returns `host:port`.
    pub fn tls_address(&self) -> String {
        self.wait_for_log("listening on https://")
    }

    /// Waits for a log line holding `marker`; returns the word that follows it.
    pub fn wait_for_log(&self, marker: &str) -> String {
        loop {
            let line = self.lines.recv_timeout(DEADLINE).expect("server logged the line");
            if let Some((_, rest)) = line.split_once(marker) {
                return rest.split_whitespace().next().expect("a word after the marker").into();
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP/1.1 answer: status, headers (names in lower case) and body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }
}

/// One HTTP/1.1 request (`Connection: close`) with these extra headers and body.
pub fn request(
    address: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    let mut stream = TcpStream::connect(address).expect("connect");
    stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).expect("request");
    stream.write_all(body.as_bytes()).expect("body");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    let (head, body) = response.split_once("\r\n\r\n").expect("a head and a body");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    Answer { status, headers, body: body.to_owned() }
}

pub fn get(address: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(address).expect("connect");
    stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n")
        .expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    response
}

impl Running {
    /// Sends SIGTERM and waits (at most [`DEADLINE`]) for the process to exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "SIGTERM sent");
        self.exit_status()
    }

    /// Waits (at most [`DEADLINE`]) for the process to exit by itself.
    pub fn exit_status(&mut self) -> std::process::ExitStatus {
        let started = std::time::Instant::now();
        loop {
            if let Some(exit) = self.child.try_wait().expect("wait") {
                return exit;
            }
            assert!(started.elapsed() < DEADLINE, "the server did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Lines the server has logged so far (without waiting).
    pub fn log_lines(&self) -> Vec<String> {
        self.lines.try_iter().collect()
    }
}

/// A field of `/proc/PID/status` in KiB: `VmRSS` (resident now) or `VmHWM` (peak resident).
pub fn memory_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("process status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// A raw TCP client that completes the WebSocket handshake and then never reads. Its receive
/// buffer is kept small so the stall shows quickly.
pub fn stalled_client(address: &str, query: &str) -> TcpStream {
    let mut stream = small_buffer_socket(address);
    upgrade(&mut stream, address, query);
    stream
}

/// A TCP connection to `address` with a small (8 KiB) receive buffer.
pub fn small_buffer_socket(address: &str) -> TcpStream {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(8 * 1024).expect("small receive buffer");
    let target: std::net::SocketAddr = address.parse().expect("server address");
    socket.connect(&target.into()).expect("connect");
    socket.into()
}

/// Sends the WebSocket upgrade for `/ws?{query}` over `stream` and reads the `101` answer.
pub fn upgrade(stream: &mut (impl Read + Write), address: &str, query: &str) {
    write!(
        stream,
        "GET /ws?{query} HTTP/1.1\r\nHost: {address}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    )
    .expect("handshake sent");
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).expect("handshake answer");
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
}
