//! A client that stops reading must not grow the server's memory without bound nor slow
//! anyone down: the proof, against the real binary.

mod common;

use std::io::{ErrorKind, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{Running, Ws, connect, get, memory_kib, next, stalled_client};
use protocol::ServerMessage;
use tungstenite::Message;

const MESSAGES: usize = 30_000;
const TEXT_CHARS: usize = 2_000;
/// The sender waits for its own echo every this many messages, as a well-behaved client does,
/// so healthy readers never fall far behind.
const WINDOW: usize = 100;

/// A room with a normal reader (bob), a sender (alice) and a raw client that never reads.
struct Flood {
    server: Running,
    address: String,
    bob: Option<Ws>,
    alice: Ws,
    stalled: TcpStream,
}

impl Flood {
    fn start(max_queued_frames: &str, max_queued_bytes: &str, stalled_write_timeout: &str) -> Self {
        let server = Running::start(
            &[
                "--port",
                "0",
                "--max-queued-frames",
                max_queued_frames,
                "--max-queued-bytes",
                max_queued_bytes,
                "--stalled-write-timeout",
                stalled_write_timeout,
                "--rate-per-second",
                "1000000",
                "--rate-burst",
                "1000000",
                "--heartbeat-interval",
                "60s",
                "--client-timeout",
                "120s",
            ],
            &[],
        );
        let address = server.address();
        let mut bob = connect(&address, "room=flood&nick=bob");
        assert!(matches!(next(&mut bob), ServerMessage::Welcome { .. }));
        let stalled = stalled_client(&address, "room=flood&nick=stalled");
        assert!(matches!(next(&mut bob), ServerMessage::Joined { nick, .. } if nick == "stalled"));
        let mut alice = connect(&address, "room=flood&nick=alice");
        assert!(matches!(next(&mut alice), ServerMessage::Welcome { .. }));
        assert!(matches!(next(&mut bob), ServerMessage::Joined { nick, .. } if nick == "alice"));
        Flood { server, address, bob: Some(bob), alice, stalled }
    }

    /// Alice sends `messages` texts of 2,000 characters, in windows; bob reads them all.
    /// Returns whether bob saw the stalled client leave.
    fn broadcast(&mut self, messages: usize) -> bool {
        let mut bob = self.bob.take().expect("one broadcast per flood");
        let reader = std::thread::spawn(move || {
            let (mut received, mut last_id, mut saw_left) = (0, 0, false);
            while received < messages {
                match next(&mut bob) {
                    ServerMessage::Message(message) => {
                        let index = message.text.split(':').next().and_then(|i| i.parse().ok());
                        assert_eq!(index, Some(received), "in order, none missing");
                        assert!(message.id > last_id);
                        last_id = message.id;
                        received += 1;
                    }
                    ServerMessage::Left { nick, .. } => saw_left |= nick == "stalled",
                    _ => {}
                }
            }
            saw_left
        });
        let padding = "x".repeat(TEXT_CHARS);
        for window in 0..messages / WINDOW {
            for i in window * WINDOW..(window + 1) * WINDOW {
                let frame = serde_json::json!({"type": "send", "text": format!("{i}:{padding}")});
                self.alice.write(Message::text(frame.to_string())).expect("queued");
            }
            self.alice.flush().expect("sent");
            let last = format!("{}:", (window + 1) * WINDOW - 1);
            while !matches!(next(&mut self.alice), ServerMessage::Message(m) if m.text.starts_with(&last))
            {
            }
        }
        reader.join().expect("bob received every message in order")
    }
}

/// A client that completes the handshake and never reads while 30,000 messages of 2 KB
/// (60 MB) are broadcast to its room: the normal client receives every one in order, the
/// stalled client is dropped from the room once 1,024 frames wait for it, and the server's
/// peak memory stays within 48 MiB of where it started. The stalled-write timeout is set far
/// beyond the run, so only the queue bound can keep the memory down.
#[test]
fn stalled_reader_is_dropped_and_memory_stays_bounded() {
    let mut flood = Flood::start("1024", "100000000", "120s");
    let baseline = memory_kib(flood.server.pid(), "VmRSS");
    let started = Instant::now();
    let saw_left = flood.broadcast(MESSAGES);
    let peak = memory_kib(flood.server.pid(), "VmHWM");
    let growth_mib = peak.saturating_sub(baseline) as f64 / 1024.0;
    eprintln!(
        "slow reader: {MESSAGES} messages of {TEXT_CHARS} chars in {:.2?}; server RSS {baseline} \
         KiB before, peak {peak} KiB (+{growth_mib:.1} MiB)",
        started.elapsed()
    );
    assert!(saw_left, "the stalled client was dropped from the room");
    assert!(growth_mib < 48.0, "server memory grew by {growth_mib:.1} MiB");
    let metrics = get(&flood.address, "/metrics");
    assert!(metrics.contains("chat_slow_reader_disconnects_total 1"), "{metrics}");
    assert!(!flood.server.log_lines().iter().any(|line| line.contains("panicked")));
}

/// Once its sent data has waited past the stalled-write timeout (1 s here), the kernel ends the
/// stalled client's connection: writing to it from the client side then fails.
#[test]
fn stalled_connection_is_cut_off() {
    let mut flood = Flood::start("1024", "100000000", "1s");
    assert!(flood.broadcast(3_000), "the stalled client was dropped from the room");
    let ended = Instant::now();
    flood.stalled.set_write_timeout(Some(Duration::from_secs(1))).expect("timeout");
    let masked_ping = [0x89, 0x80, 0, 0, 0, 0];
    loop {
        match flood.stalled.write_all(&masked_ping) {
            Err(e) if matches!(e.kind(), ErrorKind::BrokenPipe | ErrorKind::ConnectionReset) => {
                break;
            }
            _ => {}
        }
        assert!(ended.elapsed() < Duration::from_secs(30), "the stalled connection is still open");
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("slow reader: connection found cut off {:.1?} after the broadcast", ended.elapsed());
}

/// The backlog is bounded in bytes too: with the frame count out of reach, a stalled client is
/// dropped once 512 KiB wait for it.
#[test]
fn stalled_reader_is_dropped_by_bytes() {
    let mut flood = Flood::start("100000000", "524288", "120s");
    assert!(flood.broadcast(5_000), "the stalled client was dropped from the room");
    let metrics = get(&flood.address, "/metrics");
    assert!(metrics.contains("chat_slow_reader_disconnects_total 1"), "{metrics}");
}
