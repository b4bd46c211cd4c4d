//! What an idle WebSocket costs the server in resident memory. The patched actix-http (see
//! `vendor/README.md`) releases a parked connection's empty read and write buffers; without
//! it every connection keeps two 8 KiB buffers and this test fails. `bench idle` measures the
//! same thing at 19,000 connections against the peers.

mod common;

use std::time::{Duration, Instant};

use common::{Running, Ws, connect, get, memory_kib};

const CONNECTIONS: usize = 2_000;
/// The product's target. Measured here (debug build, messages in memory): 4.4 KiB with the
/// patch, 15.9 KiB without it; `bench idle` at 19,000: 9.4 KiB and 21.4 KiB.
const MAX_KIB_PER_CONNECTION: f64 = 10.0;

/// Waits until the server reports `count` open connections.
fn wait_for_connections(address: &str, count: usize) {
    let start = Instant::now();
    let line = format!("\nchat_connections {count}\n");
    while !get(address, "/metrics").contains(&line) {
        assert!(start.elapsed() < Duration::from_secs(30), "never reached {count} connections");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Resident memory once it has stopped moving (two readings 200 ms apart within 1%).
fn settled_rss(pid: u32) -> u64 {
    let start = Instant::now();
    let mut last = memory_kib(pid, "VmRSS");
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let now = memory_kib(pid, "VmRSS");
        if now.abs_diff(last) * 100 <= last || start.elapsed() > Duration::from_secs(10) {
            return now;
        }
        last = now;
    }
}

#[test]
fn idle_connections_cost_little_resident_memory() {
    let server = Running::start(
        &[
            "--port",
            "0",
            "--max-connections-per-address",
            "100000",
            "--joins-per-minute-per-address",
            "100000",
        ],
        &[],
    );
    let address = server.address();
    // Warm up: the worker threads, the room arbiters and the allocator's first arenas.
    let warm: Vec<Ws> =
        (0..20).map(|i| connect(&address, &format!("room=warm-{}&nick=w{i}", i % 2))).collect();
    wait_for_connections(&address, warm.len());
    let before = settled_rss(server.pid());

    let mut idle: Vec<Ws> = Vec::with_capacity(CONNECTIONS);
    for i in 0..CONNECTIONS {
        let mut ws = connect(&address, &format!("room=idle-{}&nick=n{i}", i / 10));
        ws.read().expect("welcome");
        idle.push(ws);
    }
    wait_for_connections(&address, CONNECTIONS + warm.len());
    let after = settled_rss(server.pid());

    let per_connection = after.saturating_sub(before) as f64 / CONNECTIONS as f64;
    eprintln!(
        "idle: {CONNECTIONS} connections, RSS {before} -> {after} KiB, {per_connection:.1} KiB each"
    );
    assert!(
        per_connection <= MAX_KIB_PER_CONNECTION,
        "{per_connection:.1} KiB per idle connection (at most {MAX_KIB_PER_CONNECTION})"
    );
}
