//! TLS against the binary: with `--tls-cert` and `--tls-key` the one port serves `https://` and
//! `wss://` to clients that verify the certificate, and a new certificate is presented after
//! SIGHUP and after its files change, while a broken one is refused and the old one kept.

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Running;
use protocol::ServerMessage;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use testclient::{Client, url};

/// A certificate authority the test makes up: its certificate (PEM), and leaf certificates
/// for 127.0.0.1 signed by it.
struct Authority {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Authority {
    fn new(name: &str) -> Self {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        let pem = params.self_signed(&key).expect("CA certificate").pem();
        Authority { pem, issuer: Issuer::new(params, key) }
    }

    /// Writes a certificate for 127.0.0.1 and its key to `cert` and `key`.
    fn issue(&self, cert: &Path, key: &Path) {
        self.issue_until(cert, key, (4096, 1, 1));
    }

    /// As [`Authority::issue`], valid until midnight (UTC) of `(year, month, day)`.
    fn issue_until(&self, cert: &Path, key: &Path, (year, month, day): (i32, u8, u8)) {
        let leaf_key = KeyPair::generate().expect("leaf key");
        let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).expect("leaf params");
        params.not_after = rcgen::date_time_ymd(year, month, day);
        let leaf = params.signed_by(&leaf_key, &self.issuer).expect("leaf certificate");
        // The key first: a server checking for changes between the two writes sees a pair
        // that does not match and keeps the old one until the certificate follows.
        std::fs::write(key, leaf_key.serialize_pem()).expect("key written");
        std::fs::write(cert, leaf.pem()).expect("certificate written");
    }
}

/// TLS client settings that trust only the authorities in `ca_pem`.
fn client_config(ca_pem: &str) -> Arc<rustls::ClientConfig> {
    testclient::tls_config(ca_pem).expect("CA PEM")
}

/// The body of `GET path` over HTTPS, verifying the server with `ca_pem`; `Err` if the TLS
/// handshake fails.
fn https_get(address: &str, path: &str, ca_pem: &str) -> Result<String, rustls::Error> {
    https_request(address, &format!("GET {path} HTTP/1.1\r\n\r\n"), ca_pem)
}

/// The whole response to `head_and_body` (a request whose head lacks `Host` and `Connection`,
/// which are added) over HTTPS, verifying the server with `ca_pem`.
fn https_request(
    address: &str,
    head_and_body: &str,
    ca_pem: &str,
) -> Result<String, rustls::Error> {
    let config = client_config(ca_pem);
    let host = address.split(':').next().expect("host").to_owned();
    let name = rustls::pki_types::ServerName::try_from(host).expect("server name");
    let connection = rustls::ClientConnection::new(config, name).expect("connection");
    let socket = std::net::TcpStream::connect(address).expect("connect");
    socket.set_read_timeout(Some(common::DEADLINE)).expect("timeout");
    let mut tls = rustls::StreamOwned::new(connection, socket);
    let (request_line, rest) = head_and_body.split_once("\r\n").expect("a request line");
    let request = format!("{request_line}\r\nHost: {address}\r\nConnection: close\r\n{rest}");
    if let Err(error) = tls.write_all(request.as_bytes()) {
        return Err(tls_error(error));
    }
    let mut response = String::new();
    match tls.read_to_string(&mut response) {
        Ok(_) => Ok(response),
        Err(error) => Err(tls_error(error)),
    }
}

/// The TLS error inside an I/O error (a failed handshake surfaces as one).
fn tls_error(error: std::io::Error) -> rustls::Error {
    match error.into_inner().map(|inner| inner.downcast::<rustls::Error>()) {
        Some(Ok(tls)) => *tls,
        other => panic!("not a TLS failure: {other:?}"),
    }
}

/// Polls until `https_get` with `ca_pem` succeeds, within `limit`.
fn wait_until_trusted(address: &str, ca_pem: &str, limit: Duration) {
    let start = Instant::now();
    while https_get(address, "/healthz", ca_pem).is_err() {
        assert!(start.elapsed() < limit, "the new certificate was not presented within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sets the modification time of `target` to that of `reference` (`touch -r`).
fn touch_like(reference: &Path, target: &Path) {
    let status = Command::new("touch").arg("-r").arg(reference).arg(target).status();
    assert!(status.expect("touch runs").success());
}

/// A TLS client that completes the WebSocket handshake over TLS and then never reads; its
/// receive buffer is small so the stall shows quickly.
fn stalled_tls_client(
    address: &str,
    query: &str,
    ca_pem: &str,
) -> rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream> {
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("server name");
    let connection =
        rustls::ClientConnection::new(client_config(ca_pem), name).expect("connection");
    let mut tls = rustls::StreamOwned::new(connection, common::small_buffer_socket(address));
    common::upgrade(&mut tls, address, query);
    tls
}

fn start(cert: &Path, key: &Path) -> (Running, String) {
    start_with(cert, key, &[])
}

/// `--tls-cert CERT --tls-key KEY`.
fn tls_args<'a>(cert: &'a Path, key: &'a Path) -> [&'a str; 4] {
    ["--tls-cert", cert.to_str().expect("path"), "--tls-key", key.to_str().expect("path")]
}

/// A TLS server with `cert` and `key`, and `extra` flags.
fn start_with(cert: &Path, key: &Path, extra: &[&str]) -> (Running, String) {
    let tls =
        ["--tls-cert", cert.to_str().expect("path"), "--tls-key", key.to_str().expect("path")];
    let args: Vec<&str> =
        ["--port", "0"].into_iter().chain(tls).chain(extra.iter().copied()).collect();
    let server = Running::start(&args, &[]);
    let address = server.tls_address();
    (server, address)
}

/// HTTPS and WSS on one port: a client that verifies the certificate gets `/healthz` and chats
/// over `wss://`; a client that trusts another authority is refused at the handshake.
#[tokio::test(flavor = "multi_thread")]
async fn https_and_wss_share_the_port_and_verify() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let authority = Authority::new("first");
    authority.issue(&cert, &key);
    let (_server, address) = start(&cert, &key);

    let health = https_get(&address, "/healthz", &authority.pem).expect("a verified handshake");
    assert!(health.starts_with("HTTP/1.1 200") && health.ends_with("ok\n"), "{health}");
    let stranger = Authority::new("stranger");
    assert!(https_get(&address, "/healthz", &stranger.pem).is_err(), "verification is real");

    let wss = |query: &str| url(&address, query).replacen("ws://", "wss://", 1);
    let mut alice =
        Client::open_tls(&wss("room=tls&nick=alice"), &authority.pem).await.expect("wss handshake");
    alice.welcome().await;
    let mut bob =
        Client::open_tls(&wss("room=tls&nick=bob"), &authority.pem).await.expect("wss handshake");
    bob.welcome().await;
    alice.say("over tls").await;
    assert_eq!(bob.message().await.text, "over tls");
    assert!(Client::open_tls(&wss("room=tls&nick=eve"), &stranger.pem).await.is_err());
    assert!(Client::open(&url(&address, "room=tls&nick=plain")).await.is_err(), "no plain ws");
}

/// SIGHUP presents a new certificate from the next handshake on; a later change of the files
/// is picked up without a signal; a broken pair is refused, the previous one kept, and the
/// server says so in its log.
#[test]
fn certificates_reload_on_sighup_and_on_change() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let first = Authority::new("first");
    first.issue(&cert, &key);
    let (server, address) = start(&cert, &key);
    https_get(&address, "/healthz", &first.pem).expect("first certificate");

    // New files with the old modification times, so that only the signal can make them count.
    let (cert_stamp, key_stamp) = (dir.path().join("cert.stamp"), dir.path().join("key.stamp"));
    for (file, stamp) in [(&cert, &cert_stamp), (&key, &key_stamp)] {
        std::fs::write(stamp, "").expect("written");
        touch_like(file, stamp);
    }
    let second = Authority::new("second");
    second.issue(&cert, &key);
    touch_like(&cert_stamp, &cert);
    touch_like(&key_stamp, &key);
    server.log_lines();
    let status =
        Command::new("kill").args(["-HUP", &server.pid().to_string()]).status().expect("kill runs");
    assert!(status.success());
    assert_eq!(server.wait_for_log("TLS certificate reloaded"), "trigger=\"SIGHUP\"");
    wait_until_trusted(&address, &second.pem, common::DEADLINE);
    assert!(https_get(&address, "/healthz", &first.pem).is_err(), "the old one is gone");

    // No signal: the change of the files is enough (checked every 2 s).
    let third = Authority::new("third");
    third.issue(&cert, &key);
    wait_until_trusted(&address, &third.pem, common::DEADLINE);

    // A key that does not belong to the certificate: refused, the third one stays, and the
    // failure is counted.
    server.log_lines();
    std::fs::write(&key, KeyPair::generate().expect("key").serialize_pem()).expect("key written");
    server.wait_for_log("TLS certificate not reloaded");
    https_get(&address, "/healthz", &third.pem).expect("the previous certificate is kept");
    let metrics = https_get(&address, "/metrics", &third.pem).expect("metrics");
    assert!(metrics.contains("chat_tls_reload_failures_total 1"), "{metrics}");
}

/// `/metrics` says when the presented certificate expires, and follows a reload.
#[test]
fn the_certificate_expiry_is_a_metric() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let authority = Authority::new("first");
    authority.issue_until(&cert, &key, (2030, 1, 1));
    let (server, address) = start(&cert, &key);
    let expiry = |pem: &str| {
        let metrics = https_get(&address, "/metrics", pem).expect("metrics");
        metrics
            .lines()
            .find_map(|line| line.strip_prefix("chat_tls_certificate_expiry_timestamp_seconds "))
            .map(str::to_owned)
    };
    assert_eq!(expiry(&authority.pem).as_deref(), Some("1893456000"), "2030-01-01");
    authority.issue_until(&cert, &key, (2031, 1, 1));
    let status =
        Command::new("kill").args(["-HUP", &server.pid().to_string()]).status().expect("kill runs");
    assert!(status.success());
    let started = Instant::now();
    while expiry(&authority.pem).as_deref() != Some("1924992000") {
        assert!(started.elapsed() < common::DEADLINE, "the expiry did not follow the reload");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A certificate that cannot be used stops the server at start with a message naming the file.
#[test]
fn an_unusable_certificate_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, "not a certificate").expect("written");
    std::fs::write(&key, KeyPair::generate().expect("key").serialize_pem()).expect("written");
    let mut server = Running::start(&[&["--port", "0"][..], &tls_args(&cert, &key)].concat(), &[]);
    assert!(!server.exit_status().success());
    let log = server.log_lines().join("\n");
    assert!(log.contains("holds no certificate") && log.contains("cert.pem"), "{log}");
}

/// Over TLS too, a client that stops reading leaves its room and its connection is cut off by
/// the kernel once its sent data has waited past `--stalled-write-timeout` (1 s here): the
/// server sets `TCP_USER_TIMEOUT` on the socket under the TLS stream as on a plain one.
#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_tls_client_is_cut_off() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let authority = Authority::new("first");
    authority.issue(&cert, &key);
    let flags = [
        "--max-queued-frames",
        "256",
        "--stalled-write-timeout",
        "1s",
        "--rate-per-second",
        "1000000",
        "--rate-burst",
        "1000000",
    ];
    let (server, address) = start_with(&cert, &key, &flags);
    let wss = url(&address, "room=stall&nick=alice").replacen("ws://", "wss://", 1);
    let mut alice = Client::open_tls(&wss, &authority.pem).await.expect("wss handshake");
    alice.welcome().await;
    let mut stalled = stalled_tls_client(&address, "room=stall&nick=stalled", &authority.pem);
    let text = "x".repeat(2_000);
    let start = Instant::now();
    let mut sent = 0;
    let mut gone = false;
    while !gone {
        // Until the stalled member leaves the room: dropped for not reading, or its connection
        // cut by the kernel, whichever comes first.
        alice.say(&text).await;
        loop {
            match alice.recv().await {
                ServerMessage::Left { nick, .. } if nick == "stalled" => gone = true,
                ServerMessage::Message(_) => break,
                _ => {}
            }
        }
        sent += 1;
        assert!(sent < 20_000, "the stalled client never left");
    }
    stalled.sock.set_write_timeout(Some(Duration::from_secs(1))).expect("timeout");
    let masked_ping = [0x89, 0x80, 0, 0, 0, 0];
    loop {
        match stalled.write_all(&masked_ping).and_then(|()| stalled.flush()) {
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
                ) =>
            {
                break;
            }
            _ => {}
        }
        assert!(start.elapsed() < Duration::from_secs(30), "the stalled TLS connection is open");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(server);
}

/// Served over HTTPS, the session cookie is `Secure` (so a browser never sends it over plain
/// HTTP), besides `HttpOnly` and `SameSite=Lax`.
#[test]
fn the_session_cookie_is_secure_over_https() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let authority = Authority::new("cookies");
    authority.issue(&cert, &key);
    let data = dir.path().join("data");
    let args: Vec<&str> = ["--port", "0"].into_iter().chain(tls_args(&cert, &key)).collect();
    let server = Running::start_storing(&data, &args);
    let address = server.tls_address();
    let body = r#"{"nick":"alice","password":"correct horse battery"}"#;
    let request = format!(
        "POST /account/register HTTP/1.1\r\nOrigin: https://{address}\r\nContent-Type: \
         application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let answer = https_request(&address, &request, &authority.pem).expect("a verified handshake");
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    let cookie = answer
        .lines()
        .find_map(|line| line.strip_prefix("set-cookie: "))
        .unwrap_or_else(|| panic!("no cookie: {answer}"));
    for flag in ["chat_session=", "Secure", "HttpOnly", "SameSite=Lax"] {
        assert!(cookie.contains(flag), "{flag} missing from {cookie}");
    }
}
