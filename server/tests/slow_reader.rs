//! A client that stops reading must not grow the server's memory without bound nor slow
//! anyone down: the proof, against the real binary.

mod common;

use std::io::{ErrorKind, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{Running, get, memory_kib, stalled_client};
use protocol::ServerMessage;
use testclient::{Client, Message, url};

const MESSAGES: usize = 30_000;
const TEXT_CHARS: usize = 2_000;
/// The sender waits for its own echo every this many messages, as a well-behaved client does,
/// so healthy readers never fall far behind.
const WINDOW: usize = 100;

/// A room with a normal reader (bob), a sender (alice) and a raw client that never reads.
struct Flood {
    server: Running,
    address: String,
    bob: Option<Client>,
    alice: Client,
    stalled: TcpStream,
}

impl Flood {
    async fn start(
        max_queued_frames: &str,
        max_queued_bytes: &str,
        stalled_write_timeout: &str,
    ) -> Self {
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
        let (mut bob, _) = Client::join(&url(&address, "room=flood&nick=bob")).await;
        let stalled = stalled_client(&address, "room=flood&nick=stalled");
        assert!(
            matches!(bob.recv().await, ServerMessage::Joined { nick, .. } if nick == "stalled")
        );
        let (alice, _) = Client::join(&url(&address, "room=flood&nick=alice")).await;
        assert!(matches!(bob.recv().await, ServerMessage::Joined { nick, .. } if nick == "alice"));
        Flood { server, address, bob: Some(bob), alice, stalled }
    }

    /// Alice sends `messages` texts of 2,000 characters, in windows; bob reads them all.
    /// Returns whether bob saw the stalled client leave.
    async fn broadcast(&mut self, messages: usize) -> bool {
        let mut bob = self.bob.take().expect("one broadcast per flood");
        let reader = tokio::spawn(async move {
            let (mut received, mut last_id, mut saw_left) = (0, 0, false);
            while received < messages {
                match bob.recv().await {
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
            let frames = (window * WINDOW..(window + 1) * WINDOW).map(|i| {
                let frame = serde_json::json!({"type": "send", "text": format!("{i}:{padding}")});
                Message::text(frame.to_string())
            });
            self.alice.send_burst(frames).await;
            let last = format!("{}:", (window + 1) * WINDOW - 1);
            while !matches!(self.alice.recv().await, ServerMessage::Message(m) if m.text.starts_with(&last))
            {
            }
        }
        reader.await.expect("bob received every message in order")
    }
}

/// A client that completes the handshake and never reads while 30,000 messages of 2 KB
/// (60 MB) are broadcast to its room: the normal client receives every one in order, the
/// stalled client is dropped from the room once 1,024 frames wait for it, and the server's
/// peak memory stays within 48 MiB of where it started. The stalled-write timeout is set far
/// beyond the run, so only the queue bound can keep the memory down.
#[tokio::test(flavor = "multi_thread")]
async fn stalled_reader_is_dropped_and_memory_stays_bounded() {
    let mut flood = Flood::start("1024", "100000000", "120s").await;
    let baseline = memory_kib(flood.server.pid(), "VmRSS");
    let started = Instant::now();
    let saw_left = flood.broadcast(MESSAGES).await;
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
#[tokio::test(flavor = "multi_thread")]
async fn stalled_connection_is_cut_off() {
    let mut flood = Flood::start("1024", "100000000", "1s").await;
    assert!(flood.broadcast(3_000).await, "the stalled client was dropped from the room");
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
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("slow reader: connection found cut off {:.1?} after the broadcast", ended.elapsed());
}

/// The backlog is bounded in bytes too: with the frame count out of reach, a stalled client is
/// dropped once 512 KiB wait for it.
#[tokio::test(flavor = "multi_thread")]
async fn stalled_reader_is_dropped_by_bytes() {
    let mut flood = Flood::start("100000000", "524288", "120s").await;
    assert!(flood.broadcast(5_000).await, "the stalled client was dropped from the room");
    let metrics = get(&flood.address, "/metrics");
    assert!(metrics.contains("chat_slow_reader_disconnects_total 1"), "{metrics}");
}
