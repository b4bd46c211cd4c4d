//! What an idle WebSocket costs the server in resident memory. The patched actix-http (see
//! `vendor/README.md`) releases a parked connection's empty read and write buffers; without
//! it every connection keeps two 8 KiB buffers and this test fails. `bench idle` measures the
//! same thing at 19,000 connections against the peers.

mod common;

use std::time::{Duration, Instant};

use common::{Running, get, memory_kib};
use testclient::{Client, url};

const CONNECTIONS: usize = 2_000;
/// The product's target. Measured here (debug build, messages in memory): 4.4 KiB with the
/// patch, 15.9 KiB without it; `bench idle` at 19,000: 9.4 KiB and 21.4 KiB.
const MAX_KIB_PER_CONNECTION: f64 = 10.0;

/// Waits until the server reports `count` open connections.
async fn wait_for_connections(address: &str, count: usize) {
    let start = Instant::now();
    let line = format!("\nchat_connections {count}\n");
    while !get(address, "/metrics").contains(&line) {
        assert!(start.elapsed() < Duration::from_secs(30), "never reached {count} connections");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Resident memory once it has stopped moving (two readings 200 ms apart within 1%).
async fn settled_rss(pid: u32) -> u64 {
    let start = Instant::now();
    let mut last = memory_kib(pid, "VmRSS");
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = memory_kib(pid, "VmRSS");
        if now.abs_diff(last) * 100 <= last || start.elapsed() > Duration::from_secs(10) {
            return now;
        }
        last = now;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_connections_cost_little_resident_memory() {
    let server = Running::start(
        &[
            "--port",
            "0",
            "--max-connections-per-address",
            "100000",
            "--joins-per-minute-per-address",
            "100000",
            // A room of ten per ten connections, all opened from this one address.
            "--max-open-rooms-per-address",
            "100000",
        ],
        &[],
    );
    let address = server.address();
    // Warm up: the worker threads, the room arbiters and the allocator's first arenas.
    let mut warm = Vec::new();
    for i in 0..20 {
        warm.push(Client::connect(&url(&address, &format!("room=warm-{}&nick=w{i}", i % 2))).await);
    }
    wait_for_connections(&address, warm.len()).await;
    let before = settled_rss(server.pid()).await;

    // Opened one after another, each kept open (and never read again) until the test ends.
    let mut idle = Vec::with_capacity(CONNECTIONS);
    for i in 0..CONNECTIONS {
        let query = format!("room=idle-{}&nick=n{i}", i / 10);
        let (client, _) = Client::join(&url(&address, &query)).await;
        idle.push(client);
    }
    wait_for_connections(&address, CONNECTIONS + warm.len()).await;
    let after = settled_rss(server.pid()).await;

    let per_connection = after.saturating_sub(before) as f64 / CONNECTIONS as f64;
    eprintln!(
        "idle: {CONNECTIONS} connections, RSS {before} -> {after} KiB, {per_connection:.1} KiB each"
    );
    assert!(
        per_connection <= MAX_KIB_PER_CONNECTION,
        "{per_connection:.1} KiB per idle connection (at most {MAX_KIB_PER_CONNECTION})"
    );
}
