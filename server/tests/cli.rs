//! The server binary as operators run it: its flags, environment variables and log.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{DEADLINE, Running, get};
use testclient::{Client, url};

/// `--help` documents every option with its environment variable.
#[test]
fn help_documents_every_option() {
    let output = Command::new(env!("CARGO_BIN_EXE_server")).arg("--help").output().expect("runs");
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).expect("utf-8 help");
    for (flag, env) in [
        ("--host", "CHAT_HOST"),
        ("--port", "CHAT_PORT"),
        ("--ui-dir", "CHAT_UI_DIR"),
        ("--workers", "CHAT_WORKERS"),
        ("--room-threads", "CHAT_ROOM_THREADS"),
        ("--heartbeat-interval", "CHAT_HEARTBEAT_INTERVAL"),
        ("--client-timeout", "CHAT_CLIENT_TIMEOUT"),
        ("--history-len", "CHAT_HISTORY_LEN"),
        ("--data-dir", "CHAT_DATA_DIR"),
        ("--tls-cert", "CHAT_TLS_CERT"),
        ("--tls-key", "CHAT_TLS_KEY"),
        ("--ephemeral", "CHAT_EPHEMERAL"),
        ("--retain-messages", "CHAT_RETAIN_MESSAGES"),
        ("--retain-for", "CHAT_RETAIN_FOR"),
        ("--sync", "CHAT_SYNC"),
        ("--shutdown-grace", "CHAT_SHUTDOWN_GRACE"),
        ("--max-frame-bytes", "CHAT_MAX_FRAME_BYTES"),
        ("--max-message-bytes", "CHAT_MAX_MESSAGE_BYTES"),
        ("--max-text-chars", "CHAT_MAX_TEXT_CHARS"),
        ("--max-nick-chars", "CHAT_MAX_NICK_CHARS"),
        ("--max-room-chars", "CHAT_MAX_ROOM_CHARS"),
        ("--retain-bytes", "CHAT_RETAIN_BYTES"),
        ("--max-pending-writes", "CHAT_MAX_PENDING_WRITES"),
        ("--max-rooms", "CHAT_MAX_ROOMS"),
        ("--max-rooms-per-connection", "CHAT_MAX_ROOMS_PER_CONNECTION"),
        ("--max-open-rooms-per-address", "CHAT_MAX_OPEN_ROOMS_PER_ADDRESS"),
        ("--room-opens-per-minute", "CHAT_ROOM_OPENS_PER_MINUTE"),
        ("--room-opens-per-minute-per-address", "CHAT_ROOM_OPENS_PER_MINUTE_PER_ADDRESS"),
        ("--rename-interval", "CHAT_RENAME_INTERVAL"),
        ("--joins-per-minute-per-address", "CHAT_JOINS_PER_MINUTE_PER_ADDRESS"),
        ("--max-stored-rooms", "CHAT_MAX_STORED_ROOMS"),
        ("--allowed-host", "CHAT_ALLOWED_HOSTS"),
        ("--metrics-address", "CHAT_METRICS_ADDRESS"),
    ] {
        assert!(help.contains(flag) && help.contains(env), "{flag} / {env} missing from:\n{help}");
    }
}

/// The binary listens where the flags say, logs the address, and answers health checks.
#[test]
fn starts_on_the_requested_port_and_answers() {
    let server = Running::start(&["--host", "127.0.0.1", "--port", "0"], &[]);
    let address = server.address();
    assert!(address.starts_with("127.0.0.1:"), "{address}");
    let response = get(&address, "/healthz");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
}

/// `CHAT_HOST` and `CHAT_PORT` configure the address when no flags are given.
#[test]
fn environment_configures_the_address() {
    let server = Running::start(&[], &[("CHAT_HOST", "127.0.0.1"), ("CHAT_PORT", "0")]);
    let address = server.address();
    assert!(get(&address, "/healthz").starts_with("HTTP/1.1 200"));
}

/// A port that is taken is reported as an error with a non-zero exit, not a panic.
#[test]
fn taken_port_is_a_clear_error() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").expect("hold a port");
    let port = holder.local_addr().expect("address").port().to_string();
    let output =
        Command::new(env!("CARGO_BIN_EXE_server")).args(["--port", &port]).output().expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot listen on 127.0.0.1"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// An interval of zero would spin a worker at the first connection (actix runs a zero
/// interval over and over in one poll): refused at start, in words, before anything binds.
#[test]
fn zero_intervals_are_refused_at_start() {
    for flag in ["--heartbeat-interval", "--session-check-interval"] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_server"))
            .args(["--port", "0", "--ephemeral", flag, "0s"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("runs");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while child.try_wait().expect("waits").is_none() {
            if std::time::Instant::now() > deadline {
                child.kill().expect("killed");
                panic!("{flag} 0s: the server started instead of refusing");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let output = child.wait_with_output().expect("ended");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{flag} 0s started: {stderr}");
        assert!(stderr.contains(flag), "{flag}: {stderr}");
        assert!(!stderr.contains("listening on"), "{flag}: {stderr}");
    }
}

/// SIGTERM tells connected clients the server is going away (close 1001) and the process
/// exits 0 well within the grace period instead of lingering with open connections.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_closes_clients_with_1001_and_exits_cleanly() {
    let mut server = Running::start(&["--port", "0", "--shutdown-grace", "5s"], &[]);
    let address = server.address();
    let (mut client, _) = Client::join(&url(&address, "room=bye&nick=ann")).await;

    let started = std::time::Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let code = client.closed().await.map(|frame| u16::from(frame.code));
    assert_eq!(code, Some(protocol::close::GOING_AWAY));
    let exit = loop {
        if let Some(exit) = server.child.try_wait().expect("wait") {
            break exit;
        }
        assert!(started.elapsed() < DEADLINE, "server did not exit");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(exit.success(), "exit status {exit}");
    assert!(started.elapsed() < Duration::from_secs(5), "exited before the grace ran out");
}

/// After its close frame the server ends the TCP connection itself within a quarter second
/// (RFC 6455: the server closes first), rather than lingering up to actix's default second for
/// a client that waits for it, as browsers and tungstenite do. A restarting server then exits, and its
/// clients find the new one, that much sooner (`bench storm`).
#[tokio::test(flavor = "multi_thread")]
async fn a_stopping_server_ends_its_connections_promptly() {
    let mut server = Running::start(&["--port", "0", "--shutdown-grace", "5s"], &[]);
    let address = server.address();
    let (mut client, _) = Client::join(&url(&address, "room=bye&nick=ann")).await;
    let started = std::time::Instant::now();
    let status =
        Command::new("kill").args(["-TERM", &server.pid().to_string()]).status().expect("kill");
    assert!(status.success());
    let code = client.closed().await.map(|frame| u16::from(frame.code));
    assert_eq!(code, Some(protocol::close::GOING_AWAY));
    // The client has answered the close (tungstenite does so by itself); now the end of the
    // stream is the server's FIN.
    let answered = std::time::Instant::now();
    loop {
        let next = tokio::time::timeout(DEADLINE, client.next_frame()).await;
        match next.expect("the connection ended in time") {
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => break,
        }
    }
    let lingered = answered.elapsed();
    assert!(lingered < Duration::from_millis(600), "the server kept the connection {lingered:?}");
    while server.child.try_wait().expect("wait").is_none() {
        assert!(started.elapsed() < DEADLINE, "server did not exit");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// SIGHUP (which operators send to make servers reload) does not stop a server without TLS:
/// it says there is nothing to reload and keeps serving.
#[test]
fn sighup_does_not_stop_the_server() {
    let mut server = Running::start(&["--port", "0"], &[]);
    let address = server.address();
    let status =
        Command::new("kill").args(["-HUP", &server.pid().to_string()]).status().expect("kill runs");
    assert!(status.success());
    server.wait_for_log("nothing to reload");
    assert!(server.child.try_wait().expect("wait").is_none(), "still running");
    assert!(get(&address, "/healthz").ends_with("ok\n"));
}

/// `--metrics-address` serves `/metrics` on its own address and takes it off the public port.
#[test]
fn metrics_can_move_off_the_public_port() {
    let server = Running::start(&["--port", "0", "--metrics-address", "127.0.0.1:0"], &[]);
    let metrics_address = server.wait_for_log("serving metrics on http://");
    let metrics_address = metrics_address.trim_end_matches("/metrics").to_owned();
    let address = server.address();
    let public = get(&address, "/metrics");
    assert!(public.starts_with("HTTP/1.1 404"), "{public}");
    let private = get(&metrics_address, "/metrics");
    assert!(
        private.starts_with("HTTP/1.1 200") && private.contains("chat_connections"),
        "{private}"
    );
}
