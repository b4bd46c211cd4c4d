//! The chat server as a library: `main.rs` parses flags and calls [`run`]; tests call the same
//! [`run`] on a listener bound to `127.0.0.1:0`.
//!
//! # Layout
//! - [`api`]: the HTTP API for other systems (post as a bot, history, rooms), with API keys.
//! - [`config`]: every tunable and its default.
//! - [`session`]: `Session`, one actor per WebSocket connection (frames in and out, heartbeat).
//! - [`room`]: `Room`, one actor per room: a thin adapter that applies [`room_state`]'s effects.
//! - [`room_state`]: `RoomState`, a room's rules as plain data: members, nicks, takeover,
//!   de-duplication, messages waiting for the store, presence, history pages (pure).
//! - [`directory`]: the room list, kept sorted as rooms fill and empty (pure).
//! - [`lobby`]: `Lobby`, room name → `Room`, room lifetimes and the room list.
//! - [`inbound`] and [`fragments`]: decoding, validation and reassembly of client frames (pure).
//! - [`outbound`]: encoding of server frames.
//! - [`history`]: a room's retained messages in memory, and pages of them (pure).
//! - [`ids`]: connection, room instance and message ids.
//! - [`db`]: the SQLite database: schema, statements, retention (plain, unit-tested).
//! - [`store`]: the thread that writes the database in batches, trims and sweeps it.
//! - [`backlog`]: what waits for each session, and its bound.
//! - [`names`]: when two nicks are the same nick (look-alikes), and what a nick may hold.
//! - [`policy`]: origin allow-list, connection limits, flood detection (pure).
//! - [`metrics`]: the Prometheus metrics behind `GET /metrics`.
//! - [`tls`]: HTTPS and WSS with certificates reloaded on SIGHUP or file change.
//! - [`ui`]: the web UI built into the binary, or a folder given with `--ui-dir`.

pub mod account_api;
pub mod accounts;
pub mod api;
pub mod auth;
pub mod backlog;
pub mod config;
pub mod db;
pub mod directory;
pub mod fragments;
pub mod going_away;
pub mod history;
pub mod ids;
pub mod inbound;
pub mod lobby;
pub mod metrics;
pub mod names;
pub mod outbound;
pub mod policy;
pub mod proxies;
pub mod redis_accounts;
pub mod redis_bus;
pub mod redis_feed;
pub mod redis_keys;
pub mod redis_log;
pub mod redis_presence;
pub mod room;
pub mod room_state;
pub mod session;
pub mod shared;
pub mod store;
#[cfg(test)]
mod testing;
pub mod throttle;
pub mod tls;
pub mod ui;

use std::net::{IpAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix::Addr;
use actix_web::dev::Server;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, middleware, web};
use actix_web_actors::ws;
use serde::Deserialize;

pub use config::Config;
use lobby::Lobby;
use metrics::Metrics;
use policy::{ConnectionLimits, Refusal};
use session::{Identity, Session};

pub use ids::ConnId;

/// What every HTTP worker shares.
struct AppState {
    config: Arc<Config>,
    lobby: Addr<Lobby>,
    /// Connection ids, shared with the HTTP API (whose calls hold room seats under their own).
    next_conn: Arc<AtomicU64>,
    metrics: Arc<Metrics>,
    limits: Arc<ConnectionLimits>,
    /// The address the server listens on (see [`policy::host_allowed`]).
    bound: IpAddr,
    /// Whether `/metrics` is served on the main address (no `--metrics-address`).
    public_metrics: bool,
    /// When a refused host name was last logged (ms since start), so that anyone sending
    /// requests under foreign names cannot flood the log: at most one line per 10 s.
    host_logged: AtomicU64,
    started: std::time::Instant,
    /// The accounts, for the session cookie of a WebSocket (none with `--ephemeral`).
    accounts: Option<Arc<accounts::Accounts>>,
    /// Who may chat (`--auth`).
    gate: auth::Gate,
    /// Whose forwarding headers are believed (`--trusted-proxy`).
    proxies: proxies::Proxies,
    /// Resolves when the server starts shutting down (every session watches it).
    going_away: going_away::GoingAway,
}

impl AppState {
    /// Who a WebSocket upgrade is, by `--auth`: its session cookie's account (if any), or its
    /// token's subject; refused when the mode needs one and there is none (or not a good one).
    fn identify(&self, req: &HttpRequest, token: Option<&str>, client: Option<String>) -> Identity {
        let mut who = Identity { client, ..Identity::default() };
        let limits = &self.config.limits;
        match &self.gate {
            auth::Gate::Open | auth::Gate::Accounts => {
                let accounts_only = matches!(self.gate, auth::Gate::Accounts);
                // The origin check keeps other sites' pages from riding on the cookie.
                match self.cookie_account(req) {
                    Ok(Some((account, check))) => {
                        who.account = Some(account);
                        who.session = Some(check);
                    }
                    Ok(None) if accounts_only => {
                        let why = "This chat is for signed-in people: log in first.";
                        who.refused = Some(session::Refusal::unauthenticated(why));
                    }
                    // Not the person's fault: they may try again (and are not let in as a
                    // guest meanwhile where only the signed-in may chat).
                    Err(()) if accounts_only => {
                        who.refused =
                            Some(session::Refusal::retry("Sign-ins cannot be checked right now."));
                    }
                    Ok(None) | Err(()) => {}
                }
            }
            auth::Gate::Token(verifier) => {
                let verified = token.map(|token| {
                    verifier.verify(token, limits.max_nick_chars, limits.max_room_chars)
                });
                match verified {
                    Some(Ok(identity)) => {
                        who.account = Some(identity.who);
                        who.rooms = identity.rooms.map(Arc::from);
                    }
                    Some(Err(why)) => who.refused = Some(session::Refusal::unauthenticated(why)),
                    None => {
                        let why = "This chat needs a token from its site.";
                        who.refused = Some(session::Refusal::unauthenticated(why));
                    }
                }
            }
        }
        who
    }

    /// The account of the upgrade's session cookie, if it has a live one; `Err` if the
    /// sessions could not be read.
    fn cookie_account(
        &self,
        req: &HttpRequest,
    ) -> Result<Option<(room_state::SignedIn, session::SessionCheck)>, ()> {
        let (Some(accounts), Some(cookie)) =
            (self.accounts.as_ref(), req.cookie(account_api::SESSION_COOKIE))
        else {
            return Ok(None);
        };
        match accounts.session_account(cookie.value(), outbound::now_millis()) {
            Ok(account) => Ok(account.map(|(nick, since)| {
                let check = session::SessionCheck {
                    accounts: accounts.clone(),
                    token: cookie.value().into(),
                };
                (room_state::SignedIn::account(nick, since), check)
            })),
            Err(error) => {
                redis_keys::warn_now_and_then(
                    || tracing::error!(%error, "could not read a session"),
                );
                Err(())
            }
        }
    }
}

impl AppState {
    /// The refusal (403) of a request whose `Host` a server bound to loopback does not serve
    /// (see [`policy::host_allowed`]), or `None` if it serves it. `what` names the request in
    /// the log, which says so at most every 10 s; the caller counts the refusal.
    fn refuse_foreign_host(&self, req: &HttpRequest, what: &str) -> Option<HttpResponse> {
        let host = req.headers().get(actix_web::http::header::HOST).and_then(|h| h.to_str().ok());
        if policy::host_allowed(host, self.bound, &self.config.abuse.allowed_hosts) {
            return None;
        }
        if self.log_host_refusal() {
            tracing::warn!(
                host,
                what,
                "refused a request under a host name a loopback server does not serve (behind \
                 a reverse proxy, list it with --allowed-host); more are counted in /metrics, \
                 logged at most every 10 s"
            );
        }
        Some(HttpResponse::Forbidden().body("This host name is not served here.\n"))
    }

    /// Whether a refusal under a foreign host name should be logged now.
    fn log_host_refusal(&self) -> bool {
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = self.host_logged.load(Ordering::Relaxed);
        (last == 0 || now.saturating_sub(last) >= 10_000)
            && self
                .host_logged
                .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

/// The query string of `GET /ws`.
#[derive(Debug, Deserialize)]
struct ConnectParams {
    room: Option<String>,
    nick: Option<String>,
    client: Option<String>,
    since: Option<protocol::MessageId>,
    epoch: Option<String>,
    /// With `--auth token`: the token the operator's site signed.
    token: Option<String>,
    /// An invitation code to the private room `room`.
    invite: Option<String>,
}

/// Starts the server on `listener`. Must be called inside an actix system (`#[actix_web::main]`
/// or `actix_rt::System::new().block_on`); the returned future runs the server until `shutdown`
/// resolves (then every client is told to go away, close 1001, and connections get the
/// shutdown grace period to end); it ends once the message store has written what was queued
/// and closed the database. `main` passes [`shutdown_signal`]; tests pass a channel. Fails if
/// the listener or the message database cannot be used.
pub fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + 'static,
) -> std::io::Result<impl Future<Output = std::io::Result<()>>> {
    if config.redis.url.is_some() {
        return Err(std::io::Error::other("with --redis, connect first: use `run_shared`"));
    }
    run_shared(listener, config, None, shutdown)
}

/// Connects to the Redis of `--redis` (if given) and checks it keeps what it acknowledges:
/// what [`run_shared`] takes.
pub async fn connect_shared(
    config: &Config,
) -> Result<Option<shared::Shared>, shared::SharedError> {
    let Some(url) = &config.redis.url else { return Ok(None) };
    // A SIGHUP while Redis is waited for (a certificate renewal's `systemctl reload`) must not
    // end the process, as SIGHUP's default would: once watched, it stays handled for the
    // process's life (and `run_shared` watches it for the reload).
    let _hangup = tls::hangup_signal();
    let storage = config.storage.options();
    // A Redis that is away at start (restarting, failing over) is waited for a while, as it is
    // once running; one that answers with weak settings is refused at once.
    let deadline = std::time::Instant::now() + REDIS_START_WAIT;
    let connected = loop {
        match shared::Shared::connect(&config.redis, &storage).await {
            Ok(connected) => break connected,
            Err(error @ shared::SharedError::Connect { .. })
                if std::time::Instant::now() < deadline =>
            {
                tracing::warn!(%error, "waiting for Redis");
                actix_rt::time::sleep(Duration::from_millis(500)).await;
            }
            Err(error) => return Err(error),
        }
    };
    tracing::info!(
        url = %shared::redacted(url),
        server = connected.presence.server(),
        "sharing rooms through Redis"
    );
    Ok(Some(connected))
}

/// Connections the kernel may hold for the server before it accepts them. std's
/// `TcpListener::bind` asks for 128: when every client of a restarted server reconnects at
/// once, the connections past it were dropped and retried a second later (`bench storm`:
/// 3,250 of 19,000). The kernel caps the number at `net.core.somaxconn` (4,096 by default).
pub const LISTEN_BACKLOG: i32 = 4096;

/// How long a connection whose response is done waits for the client to close first.
const CLIENT_LINGER: Duration = Duration::from_millis(250);

/// Listens on `host:port` with [`LISTEN_BACKLOG`], on the first address the host resolves to
/// that can be bound (as std's `TcpListener::bind`: `localhost` may name `::1` first on a host
/// without IPv6). Warns once if the kernel will cap the backlog lower.
pub fn listen(host: &str, port: u16) -> std::io::Result<std::net::TcpListener> {
    use std::net::ToSocketAddrs;
    listen_first((host, port).to_socket_addrs()?).map_err(|error| match error {
        Some(error) => error,
        None => std::io::Error::new(std::io::ErrorKind::NotFound, format!("{host} has no address")),
    })
}

/// Listens on the first of `addresses` that can be bound; the last error if none can (`None`:
/// there was no address).
fn listen_first(
    addresses: impl IntoIterator<Item = std::net::SocketAddr>,
) -> Result<std::net::TcpListener, Option<std::io::Error>> {
    let mut last_error = None;
    for address in addresses {
        match listen_on(address) {
            Ok(listener) => {
                warn_if_backlog_capped();
                return Ok(listener);
            }
            // Taken, or not ours to take: another address of the name would split the clients
            // between two servers, or bind where the operator did not ask.
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::AddrInUse | std::io::ErrorKind::PermissionDenied
                ) =>
            {
                return Err(Some(error));
            }
            Err(error) => {
                tracing::info!(%address, %error, "cannot listen here; trying the next address");
                last_error = Some(error);
            }
        }
    }
    Err(last_error)
}

fn listen_on(address: std::net::SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(address),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    // As std does on Unix: a restarted server binds its port again while old connections
    // linger. (Not SO_REUSEPORT: a second server on the same port is still refused.)
    socket.set_reuse_address(true)?;
    socket.bind(&address.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// The kernel silently caps a listen backlog at `net.core.somaxconn` (128 before Linux 5.4,
/// and per network namespace in containers): say so, since reconnects after a restart are then
/// dropped and retried.
fn warn_if_backlog_capped() {
    let text = match std::fs::read_to_string("/proc/sys/net/core/somaxconn") {
        Ok(text) => text,
        // Hidden under systemd's ProcSubset=pid, as in deploy/chat.service.
        Err(error) => {
            tracing::debug!(%error, "cannot read net.core.somaxconn; check it on the host");
            return;
        }
    };
    if let Ok(cap) = text.trim().parse::<i32>()
        && cap < LISTEN_BACKLOG
    {
        tracing::warn!(
            somaxconn = cap,
            wanted = LISTEN_BACKLOG,
            "net.core.somaxconn caps the listen queue: raise it (sysctl) or reconnects after a \
             restart are dropped and retried"
        );
    }
}

/// Settings that cannot run together, said in words before anything is bound or opened.
pub fn check_settings(config: &Config) -> Result<(), String> {
    auth::Gate::from_options(&config.auth)?;
    // actix runs a zero interval over and over within one poll: a worker would spin.
    for (flag, every) in [
        ("--heartbeat-interval", config.heartbeat_interval),
        ("--session-check-interval", config.abuse.session_check_interval),
    ] {
        if every.is_zero() {
            return Err(format!("{flag} must be longer than zero"));
        }
    }
    let accounts_only = config.auth.mode == config::AuthMode::Accounts;
    if accounts_only && config.storage.ephemeral && config.redis.url.is_none() {
        return Err("--auth accounts keeps accounts in the data folder's database (or with \
                    --redis, in Redis): not with --ephemeral alone"
            .into());
    }
    Ok(())
}

/// How long a server starting with `--redis` waits for Redis to answer before giving up.
const REDIS_START_WAIT: Duration = Duration::from_secs(30);

/// As [`run`], with the rooms shared through Redis when `shared` is given (from
/// [`connect_shared`]).
pub fn run_shared(
    listener: TcpListener,
    config: Config,
    shared: Option<shared::Shared>,
    shutdown: impl std::future::Future<Output = ()> + 'static,
) -> std::io::Result<impl Future<Output = std::io::Result<()>>> {
    let config = Arc::new(config);
    let workers = config.workers.unwrap_or_else(config::default_parallelism).max(1);
    // Before anything is opened: settings that cannot run stop the start (`main` checks them
    // before it even binds).
    check_settings(&config).map_err(std::io::Error::other)?;
    let gate = auth::Gate::from_options(&config.auth).map_err(std::io::Error::other)?;
    if matches!(gate, auth::Gate::Token(_)) && config.auth.auth_token_audience.is_none() {
        tracing::warn!(
            "--auth token without --auth-token-audience: any token your site signs with this \
             key and no `aud` lets its holder in; set an audience"
        );
    }
    let metrics = Arc::new(Metrics::default());
    metrics.max_connections.set(i64::try_from(config.abuse.max_connections).unwrap_or(i64::MAX));
    let options = config.storage.options();
    match &options.data_dir {
        Some(dir) => {
            tracing::info!(path = %dir.join(store::DATABASE_FILE).display(), "storing messages")
        }
        None => tracing::warn!("--ephemeral: messages are kept in memory only"),
    }
    // Caught from here on: a reload during a slow start (migrations) must not end the process.
    let hangup = tls::hangup_signal();
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => {
            Some(tls::Certificates::load(cert, key).map_err(std::io::Error::other)?)
        }
        _ => None,
    };
    let data_dir = options.data_dir.clone();
    let opened = store::Store::open(options, metrics.clone()).map_err(std::io::Error::other)?;
    tracing::info!(last_id = opened.last_id, rooms = opened.rooms.len(), "message store opened");
    let store = opened.store.clone();
    if let Some(shared) = shared.clone() {
        actix_rt::spawn(shared.keep_alive());
    }
    // After the store: it made and migrated the database the accounts are read from. With
    // --redis they live in the Redis every server shares (a nick registered through one is
    // taken on all). Not with --auth token: the operator's site says who is who.
    let accounts = match (&config.redis.url, data_dir.as_deref(), &gate) {
        (_, _, auth::Gate::Token(_)) => Ok(None),
        (Some(url), _, _) => redis_accounts::RedisAccounts::connect(url)
            .map(|store| store.counting(metrics.redis_read_failures.clone()))
            .map(|store| accounts::Accounts::over(Box::new(store)).map(Some))
            .map_err(std::io::Error::other)?,
        (None, Some(dir), _) => accounts::Accounts::open(dir).map(Some),
        (None, None, _) => Ok(None),
    };
    let accounts = accounts.map_err(std::io::Error::other)?.map(Arc::new);
    // Where they are, for `server admin` on this data folder.
    if accounts.is_some()
        && data_dir.is_some()
        && let Err(error) = db::Db::open_existing(config.storage.options())
            .and_then(|db| db.note_accounts_in_redis(config.redis.url.is_some()))
    {
        tracing::warn!(%error, "could not note where the accounts are (server admin cannot check)");
    }
    tracing::info!(auth = ?config.auth.mode, "who may chat");
    let registry = room_state::Registry(accounts.clone());
    let account_state = web::Data::new(account_api::AccountState::new(
        accounts.clone(),
        config.abuse.allowed_origins.clone(),
        config.limits.max_nick_chars,
        config.tls_cert.is_some(),
        matches!(gate, auth::Gate::Open),
        proxies::Proxies::new(config.abuse.trusted_proxies.clone()),
    ));
    let lobby = Lobby::start(config.clone(), metrics.clone(), opened, shared, registry);
    let quiet = account_state.clone();
    actix_rt::spawn(async move {
        let mut every = actix_rt::time::interval(Duration::from_secs(60));
        loop {
            every.tick().await;
            quiet.forget_quiet();
        }
    });
    let next_conn = Arc::new(AtomicU64::new(1));
    // After the store: it made and migrated the database the keys are read from.
    let keys = data_dir.map(|dir| db::KeyReader::open(&dir)).transpose();
    let keys = keys.map_err(std::io::Error::other)?;
    let api_state = web::Data::new(api::ApiState {
        lobby: lobby.clone(),
        keys,
        next_conn: next_conn.clone(),
        limits: config.limits.clone(),
        rate: policy::KeyedRate::per_second(config.abuse.rate_per_second, config.abuse.rate_burst),
        failed: policy::KeyedRate::per_minute(api::FAILED_CALLS_PER_MINUTE),
        metrics: metrics.clone(),
        proxies: proxies::Proxies::new(config.abuse.trusted_proxies.clone()),
    });
    let max_api_body = config.limits.max_message_bytes;
    let api_metrics = metrics.clone();
    let address = listener.local_addr()?;
    let abuse = &config.abuse;
    let state_metrics = metrics.clone();
    let (tell_going_away, going_away) = going_away::signal();
    let state = web::Data::new(AppState {
        config: config.clone(),
        lobby: lobby.clone(),
        next_conn: next_conn.clone(),
        metrics,
        limits: ConnectionLimits::new(abuse.max_connections, abuse.max_connections_per_address),
        bound: address.ip(),
        public_metrics: config.metrics_address.is_none(),
        host_logged: AtomicU64::new(0),
        started: std::time::Instant::now(),
        accounts: accounts.clone(),
        gate,
        proxies: proxies::Proxies::new(config.abuse.trusted_proxies.clone()),
        going_away,
    });
    let closing_accounts = accounts;
    if let Some(metrics_address) = &config.metrics_address {
        let metrics_server = metrics_server(metrics_address, state.clone())?;
        actix_rt::spawn(metrics_server);
    }
    let stalled_write_timeout = *abuse.stalled_write_timeout;
    let ui = ui::Source::choose(config.ui_dir.as_deref());
    match &ui {
        ui::Source::Folder(dir) => tracing::info!(ui_dir = %dir.display(), "serving the web UI"),
        ui::Source::Embedded => tracing::info!(
            index = ui::Source::embedded_version().unwrap_or_default(),
            "serving the web UI built into the binary"
        ),
        ui::Source::Missing => match &config.ui_dir {
            Some(dir) => tracing::warn!(
                ui_dir = %dir.display(),
                "no index.html in --ui-dir: serving a page that says so (leave --ui-dir out to \
                 serve the UI built into the binary)"
            ),
            None => tracing::warn!(
                "no web UI: this binary was built before the UI (run scripts/build-ui, then \
                 build the server)"
            ),
        },
    }
    let server = HttpServer::new(move || {
        let app = App::new()
            .app_data(state.clone())
            .route(protocol::WS_PATH, web::get().to(websocket))
            .route("/healthz", web::get().to(|| async { HttpResponse::Ok().body("ok\n") }))
            .route("/metrics", web::get().to(public_metrics_page))
            .app_data(api_state.clone())
            .configure(|api| api::configure(api, max_api_body, api_metrics.clone()))
            .app_data(account_state.clone())
            .configure(account_api::configure);
        match &ui {
            ui::Source::Folder(dir) => app.service(
                web::scope("").wrap(middleware::Compress::default()).service(
                    actix_files::Files::new("/", dir)
                        .index_file("index.html")
                        .use_last_modified(true),
                ),
            ),
            // Compressed once per file, not per request (see `ui::embedded`).
            ui::Source::Embedded => app.default_service(web::to(ui::embedded)),
            ui::Source::Missing => app.default_service(web::to(missing_ui)),
        }
    })
    .workers(workers)
    // After a response (a WebSocket's close included) actix waits for the client to close
    // first, reading and discarding what it still sends, so that closing does not reset a
    // response the client has not read yet. Browsers wait for the server to close a WebSocket
    // (RFC 6455), so every close lasted the whole wait: one second by default, and a restart
    // as long. A quarter of a second still drains a late frame.
    .client_disconnect_timeout(CLIENT_LINGER)
    // Chat frames are small and must go out at once: without this, Nagle's algorithm holds a
    // frame back while an earlier one is unacknowledged.
    .tcp_nodelay(true)
    // A client that stops reading blocks its connection's writes, and actix then stops
    // polling that session altogether; only the kernel can end such a connection. With
    // TCP_USER_TIMEOUT it does once sent data has waited this long, zero window included.
    .on_connect(move |connection, _| {
        type Tcp = actix_web::rt::net::TcpStream;
        type Tls = actix_tls::accept::rustls_0_23::TlsStream<Tcp>;
        let tcp = connection
            .downcast_ref::<Tcp>()
            .or_else(|| connection.downcast_ref::<Tls>().map(|tls| tls.get_ref().0));
        let Some(tcp) = tcp else {
            tracing::warn!("a connection of an unknown kind: TCP_USER_TIMEOUT not set");
            return;
        };
        if let Err(error) =
            socket2::SockRef::from(tcp).set_tcp_user_timeout(Some(stalled_write_timeout))
        {
            tracing::warn!(%error, "could not set TCP_USER_TIMEOUT");
        }
    })
    // Signals are ours (see `shut_down_when`): actix would stop accepting and then wait,
    // while WebSocket clients kept talking to a server that is going away.
    .disable_signals()
    .shutdown_timeout(config.shutdown_grace.as_secs().max(1))
    // TLS handshakes in progress per worker: past this a worker stops accepting, so a client
    // that opens connections and never says hello must not reach it before the connection
    // caps (checked at the upgrade, after the handshake) would; unfinished ones end after 3 s.
    .max_connection_rate(config.abuse.max_connections.max(256))
    .tls_handshake_timeout(Duration::from_secs(3));
    let server = match &tls {
        Some(certificates) => server.listen_rustls_0_23(listener, certificates.server_config())?,
        None => server.listen(listener)?,
    }
    .run();
    let scheme = if tls.is_some() { "https" } else { "http" };
    let tls_metrics = state_metrics.clone();
    actix_rt::spawn(tls::watch(tls, hangup, tls_metrics));
    let grace = *config.shutdown_grace;
    actix_rt::spawn(shut_down_when(shutdown, server.handle(), lobby, tell_going_away, grace));
    if address.ip().is_loopback() {
        tracing::info!(
            allowed_hosts = ?config.abuse.allowed_hosts,
            "listening on a loopback address: only loopback host names (localhost, 127.x, [::1]) \
             and --allowed-host names are served"
        );
    }
    tracing::info!("listening on {scheme}://{address}");
    Ok(async move {
        let stopped = server.await;
        // Rooms may still hold the accounts: their connection goes first, so the store's is
        // the database's last and leaves it in one file.
        if let Some(accounts) = &closing_accounts {
            accounts.close();
        }
        store.close(STORE_CLOSE_LIMIT).await;
        stopped
    })
}

/// How long a stopping server waits for the message store to write what is queued and close.
const STORE_CLOSE_LIMIT: Duration = Duration::from_secs(10);

/// Once `shutdown` resolves: stop accepting, tell every client to go away (close 1001, so the
/// page shows that it is reconnecting), then let connections finish, for at most the shutdown
/// grace period.
async fn shut_down_when(
    shutdown: impl std::future::Future<Output = ()>,
    server: actix_web::dev::ServerHandle,
    lobby: Addr<Lobby>,
    going_away: going_away::TellGoingAway,
    grace: Duration,
) {
    shutdown.await;
    // No new connection first: one accepted while clients are told would join a room that has
    // already said goodbye. (Connections arriving now wait in the listen queue and are reset
    // when the listener closes, at `stop`; the lobby turns away any that got in before the
    // pause.)
    server.pause().await;
    tracing::info!("shutting down: telling clients to go away");
    // Rooms say goodbye to their members, and the lobby refuses joins from here on; every
    // session, in a room or not, then closes with 1001. A room that does not answer (stuck
    // loading) costs at most the grace, not the shutdown.
    // At least a second, as actix's own shutdown timeout: `--shutdown-grace 0s` still lets the
    // rooms say goodbye.
    let grace = grace.max(Duration::from_secs(1));
    match actix_rt::time::timeout(grace, lobby.send(lobby::Shutdown)).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!(%error, "could not reach the lobby to close rooms"),
        Err(_) => tracing::warn!(?grace, "the rooms did not all say goodbye in time"),
    }
    going_away.fire();
    server.stop(true).await;
}

/// Resolves on SIGINT or SIGTERM (never, if signals cannot be watched): what `main` shuts
/// the server down on.
pub async fn shutdown_signal() {
    match wait_for_signal().await {
        Some(signal) => tracing::info!(signal, "signal received"),
        None => std::future::pending().await,
    }
}

/// Waits for SIGINT or SIGTERM; `None` if signals cannot be watched.
async fn wait_for_signal() -> Option<&'static str> {
    use actix_rt::signal::unix::{SignalKind, signal};
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(terminate) => terminate,
        Err(error) => {
            tracing::warn!(%error, "cannot watch SIGTERM; shutting down on it will be abrupt");
            return None;
        }
    };
    let interrupt = std::pin::pin!(actix_rt::signal::ctrl_c());
    let terminated = std::pin::pin!(terminate.recv());
    match futures::future::select(interrupt, terminated).await {
        futures::future::Either::Left(_) => Some("SIGINT"),
        futures::future::Either::Right(_) => Some("SIGTERM"),
    }
}

/// Upgrades `GET /ws?room=&nick=&client=` to a WebSocket run by a [`Session`].
async fn websocket(
    req: HttpRequest,
    stream: web::Payload,
    state: web::Data<AppState>,
    params: web::Query<ConnectParams>,
) -> actix_web::Result<HttpResponse> {
    let header = |name| req.headers().get(name).and_then(|value| value.to_str().ok());
    let origin = header(actix_web::http::header::ORIGIN);
    let host = header(actix_web::http::header::HOST);
    if let Some(refusal) = state.refuse_foreign_host(&req, "WebSocket") {
        state.metrics.refused("host");
        return Ok(refusal);
    }
    if !policy::origin_allowed(origin, host, &state.config.abuse.allowed_origins) {
        tracing::info!(origin, host, "refused a WebSocket from another site's page");
        state.metrics.refused("origin");
        return Ok(HttpResponse::Forbidden().body("This origin may not open a chat connection.\n"));
    }
    let address = state.proxies.client(&req);
    let permit = match address.map(|ip| state.limits.acquire(ip)) {
        Some(Ok(permit)) => permit,
        refused => {
            let reason = match refused {
                Some(Err(reason)) => reason,
                _ => Refusal::NoPeerAddress,
            };
            tracing::warn!(
                ?address,
                reason = reason.label(),
                open = state.limits.open(),
                "refused a connection"
            );
            state.metrics.refused(reason.label());
            return Ok(match reason {
                Refusal::ServerFull => HttpResponse::ServiceUnavailable()
                    .insert_header(("Retry-After", "5"))
                    .body("The chat is full; try again shortly.\n"),
                Refusal::TooManyFromAddress => HttpResponse::TooManyRequests()
                    .body("Too many connections from your address.\n"),
                Refusal::NoPeerAddress => HttpResponse::BadRequest()
                    .body("The server cannot tell where this connection comes from.\n"),
            });
        }
    };
    let params = params.into_inner();
    let conn = state.next_conn.fetch_add(1, Ordering::Relaxed);
    let limits = &state.config.limits;
    let initial = inbound::connect_target(
        params.room.as_deref(),
        params.nick.as_deref(),
        params.since,
        params.epoch.as_deref(),
        params.invite.as_deref(),
        limits,
    );
    let client = params.client.as_deref().and_then(protocol::rules::check_client_token);
    let who = state.identify(&req, params.token.as_deref(), client);
    let session = Session::new(
        conn,
        state.config.clone(),
        state.lobby.clone(),
        state.metrics.clone(),
        permit,
        session::Start { target: initial, going_away: state.going_away.clone() },
        who,
    );
    ws::WsResponseBuilder::new(session, &req, stream).frame_size(limits.max_frame_bytes).start()
}

/// `/metrics` on the main address: only without `--metrics-address`, and only under a host name
/// this server serves.
async fn public_metrics_page(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if !state.public_metrics {
        return HttpResponse::NotFound().body("Metrics are served on --metrics-address.\n");
    }
    if let Some(refusal) = state.refuse_foreign_host(&req, "/metrics") {
        state.metrics.refused_metrics.inc();
        return refusal;
    }
    metrics_page(state).await
}

/// Serves `/metrics` alone on `address` (`--metrics-address`), off the public port.
fn metrics_server(address: &str, state: web::Data<AppState>) -> std::io::Result<Server> {
    let server = HttpServer::new(move || {
        App::new().app_data(state.clone()).route("/metrics", web::get().to(metrics_page))
    })
    .workers(1)
    .disable_signals()
    .bind(address)?;
    for bound in server.addrs() {
        tracing::info!("serving metrics on http://{bound}/metrics");
    }
    Ok(server.run())
}

async fn metrics_page(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(state.metrics.render())
}

async fn missing_ui() -> HttpResponse {
    HttpResponse::ServiceUnavailable().content_type("text/html; charset=utf-8").body(
        "<!doctype html><title>Chat</title><h1>The web UI is not built</h1>\
         <p>Either the server was started with <code>--ui-dir</code> naming a folder without an \
         <code>index.html</code>, or this binary was built before the UI was. Run \
         <code>scripts/run</code> from the repository (it builds the UI, then the server with \
         the UI inside), or point <code>--ui-dir</code> at a built <code>dist/</code> folder. \
         The WebSocket endpoint <code>/ws</code> works regardless.</p>",
    )
}

#[cfg(test)]
mod tests {
    use std::net::TcpStream;
    use std::time::Duration;

    /// A burst of connections the server has not accepted yet waits in the kernel's queue:
    /// 300 connects to a listener that accepts none all complete at once. (With std's backlog
    /// of 128 the connects past it are dropped and retried a second later, so they time out.)
    #[test]
    fn the_listen_queue_holds_a_reconnect_burst() {
        let listener = super::listen("127.0.0.1", 0).expect("listens");
        let address = listener.local_addr().expect("an address");
        let failed = (0..300)
            .map(|_| TcpStream::connect_timeout(&address, Duration::from_millis(100)))
            .filter(Result::is_err)
            .count();
        assert_eq!(failed, 0, "connects dropped by a full listen queue");
    }

    /// A host name whose first address cannot be bound here (`localhost` as `::1` on a host
    /// without IPv6) still listens on the next one. 192.0.2.1 (TEST-NET-1) is on no interface
    /// of this machine; binding it fails without sending anything.
    #[test]
    fn listening_falls_back_to_the_next_address() {
        let unbindable = std::net::SocketAddr::from(([192, 0, 2, 1], 0));
        let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        assert!(super::listen_first([unbindable]).is_err_and(|error| error.is_some()));
        let listener = super::listen_first([unbindable, loopback]).expect("the second binds");
        let bound = listener.local_addr().expect("an address");
        assert_eq!(bound.ip(), loopback.ip());
        assert!(matches!(super::listen_first([]), Err(None)));
        // A port another server holds is not traded for the next address: that would split the
        // clients between two servers.
        let taken = std::net::SocketAddr::from(([127, 0, 0, 1], bound.port()));
        let other = std::net::SocketAddr::from(([127, 0, 0, 2], 0));
        let refused = super::listen_first([taken, other]).expect_err("the port is taken");
        assert_eq!(refused.map(|error| error.kind()), Some(std::io::ErrorKind::AddrInUse));
    }
}
