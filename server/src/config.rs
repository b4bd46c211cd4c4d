//! Every tunable of the server with its documented default, as command-line flags that can also
//! be set through `CHAT_*` environment variables.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use protocol::rules;

use crate::store::{StoreOptions, SyncMode};

/// How often the server pings each client.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);
/// How long a client may stay silent (no pong, no frame) before the server drops it.
pub const DEFAULT_CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
/// How many recent messages a newcomer to a room is sent.
pub const DEFAULT_HISTORY_LEN: usize = 100;
/// Where the database lives, relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = "data";
/// Messages each room keeps (in the database, and in memory while the room is active).
pub const DEFAULT_RETAIN_MESSAGES: usize = 1000;
/// Bytes of messages (text and nick) each room keeps, in the database and in memory.
pub const DEFAULT_RETAIN_BYTES: usize = 1024 * 1024;
/// Messages that may wait for the disk before sends are refused with `unavailable`.
pub const DEFAULT_MAX_PENDING_WRITES: usize = 10_000;
/// Rooms with stored messages the database holds at most.
pub const DEFAULT_MAX_STORED_ROOMS: usize = 10_000;
/// Joins (the connect URL's included) all connections of one address may make per minute,
/// in bursts of as many: a whole office behind one address reconnecting at once fits, 300
/// pages each coming back to 20 rooms (and no more than the 200 connections an address may
/// hold can make at their own join rate).
pub const DEFAULT_JOINS_PER_MINUTE_PER_ADDRESS: u32 = 6_000;
/// Open rooms that one address (an IPv6 /64) opened and that are still open, at most: as many
/// as its connections could hold when a connection was in one room, so that rooms on several
/// per connection do not let one address take the server's room slots.
pub const DEFAULT_MAX_OPEN_ROOMS_PER_ADDRESS: usize = 200;
/// Rooms open at once (with members); past it, joining a new room is refused.
pub const DEFAULT_MAX_ROOMS: usize = 10_000;
/// Rooms one connection may be in at once.
pub const DEFAULT_MAX_ROOMS_PER_CONNECTION: usize = 20;
/// Rooms one connection may open per minute (joining a room nobody is in opens it).
pub const DEFAULT_ROOM_OPENS_PER_MINUTE: u32 = 20;
/// Rooms one address (an IPv6 /64) may open per minute: many people behind one NAT reopening
/// their rooms after a restart must fit.
pub const DEFAULT_ROOM_OPENS_PER_MINUTE_PER_ADDRESS: u32 = 1_000;
/// Largest single WebSocket frame accepted; a larger one closes the connection with 1009.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 64 * 1024;
/// Largest message reassembled from continuation frames; past it the connection closes with 1009.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// How long a shutdown waits for connections to finish after telling clients to go away.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Frames per second a connection may send on average...
pub const DEFAULT_RATE_PER_SECOND: u32 = 10;
/// ...and in a burst.
pub const DEFAULT_RATE_BURST: u32 = 20;
/// Refused frames within [`FLOOD_WINDOW`] after which a connection is closed with 1008.
pub const DEFAULT_FLOOD_LIMIT: u32 = 50;
/// The window in which refused frames add up to flooding.
pub const FLOOD_WINDOW: Duration = Duration::from_secs(10);
/// Open connections the server accepts in total...
pub const DEFAULT_MAX_CONNECTIONS: usize = 20_000;
/// ...and from one source address.
pub const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS: usize = 200;
/// Frames that may wait for one client before it counts as not reading (close 4003)...
pub const DEFAULT_MAX_QUEUED_FRAMES: usize = 1024;
/// ...and bytes.
pub const DEFAULT_MAX_QUEUED_BYTES: usize = 4 * 1024 * 1024;
/// How long sent data may stay unacknowledged (or unsent behind a zero window) before the
/// kernel drops the connection (`TCP_USER_TIMEOUT`).
pub const DEFAULT_STALLED_WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Least time between two renames of one member of a room.
pub const DEFAULT_RENAME_INTERVAL: Duration = Duration::from_secs(2);
/// How long a room waits for its history from the store before refusing joins.
pub const STORE_TIMEOUT: Duration = Duration::from_secs(4);
/// How long the lobby waits for a room to answer a join (a room answers only after its
/// history is loaded, so this is longer than [`STORE_TIMEOUT`]). A room refuses a join it
/// reaches later than this, so a join the lobby gave up on is never admitted.
pub const ROOM_JOIN_TIMEOUT: Duration = Duration::from_secs(6);
/// How long a session waits for the lobby to answer a join before answering `unavailable`
/// (it reads nothing meanwhile, so this stays well under the default client timeout).
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(8);
/// Origins besides the server's own that may open WebSockets: `trunk serve`'s.
pub const DEFAULT_ALLOWED_ORIGINS: &str = "http://127.0.0.1:8081,http://localhost:8081";

/// The server's configuration. `Config::default()` equals running with no flags and no
/// environment.
#[derive(Debug, Clone, PartialEq, Parser)]
#[command(
    name = "server",
    version,
    about = "Real-time chat server: WebSocket rooms and the web UI"
)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "CHAT_HOST", default_value = "127.0.0.1")]
    pub host: String,

    /// Port to listen on (0 picks a free one; the log says which).
    #[arg(long, env = "CHAT_PORT", default_value_t = 8080)]
    pub port: u16,

    /// Serve the web UI from this folder instead of the one built into the binary (e.g. the
    /// checkout's `dist/` while working on the UI).
    #[arg(long, env = "CHAT_UI_DIR")]
    pub ui_dir: Option<PathBuf>,

    /// HTTP worker threads (default: one per core).
    #[arg(long, env = "CHAT_WORKERS")]
    pub workers: Option<usize>,

    /// Threads that run room actors (default: one per core).
    #[arg(long, env = "CHAT_ROOM_THREADS")]
    pub room_threads: Option<usize>,

    /// How often to ping each client, e.g. `5s` or `500ms`.
    #[arg(long, env = "CHAT_HEARTBEAT_INTERVAL", default_value_t = DEFAULT_HEARTBEAT_INTERVAL.into())]
    pub heartbeat_interval: humantime::Duration,

    /// Drop a client that has sent nothing (not even a pong) for this long.
    #[arg(long, env = "CHAT_CLIENT_TIMEOUT", default_value_t = DEFAULT_CLIENT_TIMEOUT.into())]
    pub client_timeout: humantime::Duration,

    /// Recent messages a newcomer to a room is sent (a reconnecting client gets everything it
    /// missed, up to the retention).
    #[arg(long, env = "CHAT_HISTORY_LEN", default_value_t = DEFAULT_HISTORY_LEN)]
    pub history_len: usize,

    #[command(flatten)]
    pub storage: Storage,

    #[command(flatten)]
    pub redis: RedisOptions,

    #[command(flatten)]
    pub auth: AuthOptions,

    /// Serve HTTPS and WSS (instead of HTTP and WS) with this PEM certificate chain, leaf
    /// first; needs --tls-key. Reloaded on SIGHUP and when the file changes.
    #[arg(long, env = "CHAT_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The PEM private key of --tls-cert.
    #[arg(long, env = "CHAT_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Serve `/metrics` on this address (e.g. `127.0.0.1:9090`) instead of the public port.
    #[arg(long, env = "CHAT_METRICS_ADDRESS")]
    pub metrics_address: Option<String>,

    /// On SIGINT/SIGTERM, how long to wait for connections to close after telling every client
    /// to go away (close 1001) before exiting anyway. The rooms' goodbye before that is bounded
    /// by the same time, so a stop takes at most twice this (plus closing the database).
    #[arg(long, env = "CHAT_SHUTDOWN_GRACE", default_value_t = DEFAULT_SHUTDOWN_GRACE.into())]
    pub shutdown_grace: humantime::Duration,

    #[command(flatten)]
    pub limits: Limits,

    #[command(flatten)]
    pub abuse: AbuseLimits,

    /// Something to do instead of serving.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Commands besides serving.
#[derive(Debug, Clone, PartialEq, clap::Subcommand)]
pub enum Command {
    /// Copy the message database to FILE, also while a server runs on it: one consistent
    /// moment, in a single file. To restore, stop the server, replace the data folder's
    /// `chat.sqlite3` with the copy (and delete `chat.sqlite3-wal` and `chat.sqlite3-shm` if
    /// present), and start it again.
    Backup {
        /// Where to write the copy; an existing file there is replaced once the copy is whole.
        file: PathBuf,
    },
    /// Manage the HTTP API's keys in the data folder (also while a server runs on it).
    Admin {
        #[command(subcommand)]
        action: Admin,
    },
}

/// What `server admin` does.
#[derive(Debug, Clone, PartialEq, clap::Subcommand)]
pub enum Admin {
    /// Make a key for another system; prints it once (only its hash is kept).
    CreateKey {
        /// What the key is for, to list and revoke it by (1–64 of `A-Z a-z 0-9 - _`).
        name: String,
    },
    /// Revoke a key: calls with it are refused from the next one on.
    RevokeKey { name: String },
    /// List the keys: name, when made, whether revoked.
    ListKeys,
    /// List the accounts: nick, when registered, roles (`room:owner`, `room:moderator`, `*`
    /// for every room).
    ListAccounts,
    /// Delete an account: its sessions end and its nick is free again (its messages stay).
    DeleteAccount { nick: String },
    /// Set an account's password (read from standard input, one line) and end its sessions.
    ResetPassword { nick: String },
    /// Let an account delete anyone's messages in ROOM (without --room: in every room). Takes
    /// effect at its next join.
    GrantModerator {
        nick: String,
        #[arg(long)]
        room: Option<String>,
    },
    /// Take a moderator role away (the one of ROOM, or without --room the server-wide one).
    RevokeModerator {
        nick: String,
        #[arg(long)]
        room: Option<String>,
    },
    /// Ban an account from every room for DAYS (default 30): its sessions end (its connections
    /// close within --session-check-interval) and its joins are refused (`banned`).
    Ban {
        nick: String,
        #[arg(long, default_value_t = 30)]
        days: u32,
    },
    /// Lift the bans on NICK (as it was called when banned): those from every room, or with
    /// --room those of that room (from the next join on, also while the room is open).
    Unban {
        nick: String,
        #[arg(long)]
        room: Option<String>,
    },
    /// Make an account a member of the private ROOM (as an invitation would).
    AddMember { room: String, nick: String },
    /// Take an account's membership of the private ROOM away (it is refused from its next
    /// join; a connection in the room now is closed by the room's owner or a moderator).
    RemoveMember { room: String, nick: String },
    /// Take ROOM's owner away (the room is then owned by nobody: only moderators act there).
    RevokeOwner { room: String },
    /// Show the newest moderation actions: when, who, what, where, to what.
    AuditLog {
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
}

/// Who may chat (`--auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum AuthMode {
    /// Anyone: as a guest under a free nick, or signed in to an account.
    #[default]
    Open,
    /// Only people signed in to an account of this server (register and log in from the page).
    Accounts,
    /// Only people the operator's own site signed a token for (a JWT the page passes when
    /// connecting); this server keeps no accounts then.
    Token,
}

/// Who may chat, and how tokens are checked.
#[derive(Debug, Clone, PartialEq, Default, clap::Args)]
pub struct AuthOptions {
    /// Who may chat: `open` (anyone, as a guest or signed in), `accounts` (only people signed
    /// in to an account here), `token` (only people with a token your site signed: see
    /// --auth-token-secret and --auth-token-key).
    #[arg(long = "auth", env = "CHAT_AUTH", value_enum, default_value_t = AuthMode::Open)]
    pub mode: AuthMode,

    /// With --auth token: the HS256 secret tokens are signed with, at least 32 bytes. Prefer the
    /// environment variable: a command line is visible to every user of the machine.
    #[arg(long, env = "CHAT_AUTH_TOKEN_SECRET", hide_env_values = true)]
    pub auth_token_secret: Option<Secret>,

    /// With --auth token: a PEM file holding the Ed25519 public key tokens are signed with
    /// (EdDSA), instead of a secret.
    #[arg(long, env = "CHAT_AUTH_TOKEN_KEY", conflicts_with = "auth_token_secret")]
    pub auth_token_key: Option<PathBuf>,

    /// With --auth token: the audience (`aud`) every token must name, e.g. this chat's URL.
    /// Without it, tokens naming any audience are refused.
    #[arg(long, env = "CHAT_AUTH_TOKEN_AUDIENCE")]
    pub auth_token_audience: Option<String>,
}

/// A value never shown in logs or `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Ok(Secret(value.to_owned()))
    }
}

/// Sharing rooms with other servers through one Redis (the Redis engine).
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct RedisOptions {
    /// Share rooms with every server pointed at this Redis (`redis://HOST:PORT/DB`): history,
    /// message ids, repeated client ids, presence and fan-out live in Redis, and the local
    /// database keeps only the HTTP API's keys. Without it the server needs no other service.
    #[arg(long = "redis", env = "CHAT_REDIS", global = true, hide_env_values = true)]
    pub url: Option<String>,

    /// Start even though the Redis of --redis may lose acknowledged messages (no append-only
    /// file, not synced on every write, or evicting keys). A crash of Redis then loses up to a
    /// second of messages (or all of them, without the file), and eviction loses whole rooms;
    /// clients are told to start those rooms over (`reset`).
    #[arg(long, env = "CHAT_REDIS_ACCEPT_WEAK_DURABILITY", requires = "url")]
    pub redis_accept_weak_durability: bool,

    /// With --redis: a server that stops refreshing its presence (it died) has its members
    /// removed from every room's list within this time and a third more.
    #[arg(long, env = "CHAT_PRESENCE_EXPIRY", default_value_t = DEFAULT_PRESENCE_EXPIRY.into())]
    pub presence_expiry: humantime::Duration,
}

/// How often a cookie-signed-in connection checks its session (see
/// `AbuseLimits::session_check_interval`).
pub const DEFAULT_SESSION_CHECK_INTERVAL: Duration = Duration::from_secs(60);

/// How long a server's members outlive its last presence refresh.
pub const DEFAULT_PRESENCE_EXPIRY: Duration = Duration::from_secs(15);

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            url: None,
            redis_accept_weak_durability: false,
            presence_expiry: DEFAULT_PRESENCE_EXPIRY.into(),
        }
    }
}

/// Where messages are stored and for how long.
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct Storage {
    /// Folder for the message database (`chat.sqlite3`), created if missing.
    #[arg(long, env = "CHAT_DATA_DIR", default_value = DEFAULT_DATA_DIR, global = true)]
    pub data_dir: PathBuf,

    /// Keep messages in memory only: nothing is written to disk, and history is lost when the
    /// server stops.
    #[arg(long, env = "CHAT_EPHEMERAL")]
    pub ephemeral: bool,

    /// Messages each room keeps (at least 1); older ones are deleted.
    #[arg(long, env = "CHAT_RETAIN_MESSAGES", default_value_t = DEFAULT_RETAIN_MESSAGES)]
    pub retain_messages: usize,

    /// Bytes of messages (text and nick, UTF-8) each room keeps at most; older ones are
    /// deleted. Bounds a room's memory while it is open and its share of the database.
    #[arg(long, env = "CHAT_RETAIN_BYTES", default_value_t = DEFAULT_RETAIN_BYTES)]
    pub retain_bytes: usize,

    /// Delete messages older than this, e.g. `30days` (default: kept until the count limit).
    #[arg(long, env = "CHAT_RETAIN_FOR")]
    pub retain_for: Option<humantime::Duration>,

    /// When a message counts as stored: `full` syncs the disk on every batch (survives power
    /// cuts); `normal` only writes it (survives a crash of the server, not of the machine;
    /// lower latency).
    #[arg(long, env = "CHAT_SYNC", value_enum, default_value_t = SyncMode::Full)]
    pub sync: SyncMode,

    /// Messages that may wait for the disk (with --redis: for Redis); past it (a disk or a
    /// Redis slower than the traffic), sends are refused with `unavailable` instead of piling
    /// up in memory and in latency.
    #[arg(long, env = "CHAT_MAX_PENDING_WRITES", default_value_t = DEFAULT_MAX_PENDING_WRITES)]
    pub max_pending_writes: usize,

    /// Rooms with stored messages the database holds at most; past it, the first message of
    /// a room without messages is refused (`too_many_rooms`). With `--retain-bytes`, this
    /// bounds the database.
    #[arg(long, env = "CHAT_MAX_STORED_ROOMS", default_value_t = DEFAULT_MAX_STORED_ROOMS)]
    pub max_stored_rooms: usize,
}

impl Storage {
    pub fn options(&self) -> StoreOptions {
        StoreOptions {
            data_dir: (!self.ephemeral).then(|| self.data_dir.clone()),
            retain_messages: self.retain_messages.max(1),
            retain_bytes: self.retain_bytes,
            retain_for: self.retain_for.map(Into::into),
            sync: self.sync,
            max_pending_writes: self.max_pending_writes,
            max_stored_rooms: self.max_stored_rooms,
        }
    }
}

impl Default for Storage {
    fn default() -> Self {
        Storage {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            ephemeral: false,
            retain_messages: DEFAULT_RETAIN_MESSAGES,
            retain_bytes: DEFAULT_RETAIN_BYTES,
            retain_for: None,
            sync: SyncMode::Full,
            max_pending_writes: DEFAULT_MAX_PENDING_WRITES,
            max_stored_rooms: DEFAULT_MAX_STORED_ROOMS,
        }
    }
}

/// Limits that keep one client from hurting the others.
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct AbuseLimits {
    /// Frames per second one connection may send on average (token bucket).
    #[arg(long, env = "CHAT_RATE_PER_SECOND", default_value_t = DEFAULT_RATE_PER_SECOND)]
    pub rate_per_second: u32,

    /// Frames one connection may send in a burst.
    #[arg(long, env = "CHAT_RATE_BURST", default_value_t = DEFAULT_RATE_BURST)]
    pub rate_burst: u32,

    /// Rate-limited frames within 10 s after which the connection is closed (1008).
    #[arg(long, env = "CHAT_FLOOD_LIMIT", default_value_t = DEFAULT_FLOOD_LIMIT)]
    pub flood_limit: u32,

    /// Open connections accepted in total; past it upgrades get HTTP 503.
    #[arg(long, env = "CHAT_MAX_CONNECTIONS", default_value_t = DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,

    /// Open connections accepted from one IP address; past it upgrades get HTTP 429.
    #[arg(long, env = "CHAT_MAX_CONNECTIONS_PER_ADDRESS", default_value_t = DEFAULT_MAX_CONNECTIONS_PER_ADDRESS)]
    pub max_connections_per_address: usize,

    /// Frames that may wait for one client; past it the client leaves its room and is
    /// closed with 4003 (it is not reading).
    #[arg(long, env = "CHAT_MAX_QUEUED_FRAMES", default_value_t = DEFAULT_MAX_QUEUED_FRAMES)]
    pub max_queued_frames: usize,

    /// Bytes of frames that may wait for one client (same consequence as the frame count).
    #[arg(long, env = "CHAT_MAX_QUEUED_BYTES", default_value_t = DEFAULT_MAX_QUEUED_BYTES)]
    pub max_queued_bytes: usize,

    /// Rooms open at once; joining a room that is not open is refused past it
    /// (`too_many_rooms`).
    #[arg(long, env = "CHAT_MAX_ROOMS", default_value_t = DEFAULT_MAX_ROOMS)]
    pub max_rooms: usize,

    /// Rooms one connection may be in at once; a `join` with `add` past it is refused
    /// (`too_many_joined`). A connection may also join this many rooms in one burst.
    #[arg(long, env = "CHAT_MAX_ROOMS_PER_CONNECTION", default_value_t = DEFAULT_MAX_ROOMS_PER_CONNECTION)]
    pub max_rooms_per_connection: usize,

    /// Open rooms one address (an IPv6 /64) may have opened and keep open; joining a room
    /// nobody is in is refused past it (`too_many_rooms`).
    #[arg(long, env = "CHAT_MAX_OPEN_ROOMS_PER_ADDRESS", default_value_t = DEFAULT_MAX_OPEN_ROOMS_PER_ADDRESS)]
    pub max_open_rooms_per_address: usize,

    /// Rooms one connection may open per minute (in bursts of as many); past it, joining a
    /// room that is not open is refused with `rate_limited`.
    #[arg(long, env = "CHAT_ROOM_OPENS_PER_MINUTE", default_value_t = DEFAULT_ROOM_OPENS_PER_MINUTE)]
    pub room_opens_per_minute: u32,

    /// Rooms one address (an IPv6 /64) may open per minute, all its connections together.
    #[arg(long, env = "CHAT_ROOM_OPENS_PER_MINUTE_PER_ADDRESS", default_value_t = DEFAULT_ROOM_OPENS_PER_MINUTE_PER_ADDRESS)]
    pub room_opens_per_minute_per_address: u32,

    /// Joins all connections of one address (an IPv6 /64) may make per minute, the connect
    /// URL's included; past it `rate_limited`. Fresh connections cannot then hop rooms past
    /// the per-connection join limit.
    #[arg(long, env = "CHAT_JOINS_PER_MINUTE_PER_ADDRESS", default_value_t = DEFAULT_JOINS_PER_MINUTE_PER_ADDRESS)]
    pub joins_per_minute_per_address: u32,

    /// Least time between two renames of one member (a rename sooner is refused with
    /// `rate_limited`), so that nobody floods a room with leave and join notices.
    #[arg(long, env = "CHAT_RENAME_INTERVAL", default_value_t = DEFAULT_RENAME_INTERVAL.into())]
    pub rename_interval: humantime::Duration,

    /// Drop a connection whose sent data stays unacknowledged this long (TCP_USER_TIMEOUT).
    #[arg(long, env = "CHAT_STALLED_WRITE_TIMEOUT", default_value_t = DEFAULT_STALLED_WRITE_TIMEOUT.into())]
    pub stalled_write_timeout: humantime::Duration,

    /// How often a connection signed in by a session cookie checks that its session still
    /// holds: once it ended (logout, password reset, account deleted, expiry) the connection
    /// is closed (4004) within this time.
    #[arg(long, env = "CHAT_SESSION_CHECK_INTERVAL", default_value_t = DEFAULT_SESSION_CHECK_INTERVAL.into())]
    pub session_check_interval: humantime::Duration,

    /// Reverse proxies (addresses or networks, like 10.0.0.0/8) whose `X-Forwarded-For` and
    /// `X-Forwarded-Proto` are believed: behind them, limits, bans and mutes hold for the
    /// client's address instead of the proxy's, and the session cookie is `Secure` when the
    /// browser spoke HTTPS to the proxy. From other peers these headers are ignored.
    #[arg(long = "trusted-proxy", env = "CHAT_TRUSTED_PROXIES", value_delimiter = ',', value_parser = crate::proxies::parse_trusted)]
    pub trusted_proxies: Vec<ipnet::IpNet>,

    /// Origins (scheme://host:port) allowed to open WebSockets besides the server's own;
    /// others get 403. `*` allows any (unsafe on the internet).
    #[arg(long = "allowed-origin", env = "CHAT_ALLOWED_ORIGINS", value_delimiter = ',', default_value = DEFAULT_ALLOWED_ORIGINS)]
    pub allowed_origins: Vec<String>,

    /// Host names (without port) a server bound to a loopback address answers to besides
    /// `localhost` and loopback addresses (DNS-rebinding protection); e.g. the name a local
    /// reverse proxy forwards. Ignored when bound to any other address.
    #[arg(long = "allowed-host", env = "CHAT_ALLOWED_HOSTS", value_delimiter = ',')]
    pub allowed_hosts: Vec<String>,
}

impl AbuseLimits {
    /// The most bytes of messages one welcome or history page carries: a quarter of what may
    /// wait for a client, so that a page always fits beside what is already queued for one
    /// that reads.
    pub fn page_bytes(&self) -> usize {
        (self.max_queued_bytes / 4).max(1)
    }
}

impl Default for AbuseLimits {
    fn default() -> Self {
        AbuseLimits {
            rate_per_second: DEFAULT_RATE_PER_SECOND,
            rate_burst: DEFAULT_RATE_BURST,
            flood_limit: DEFAULT_FLOOD_LIMIT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_address: DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
            max_queued_frames: DEFAULT_MAX_QUEUED_FRAMES,
            max_queued_bytes: DEFAULT_MAX_QUEUED_BYTES,
            stalled_write_timeout: DEFAULT_STALLED_WRITE_TIMEOUT.into(),
            session_check_interval: DEFAULT_SESSION_CHECK_INTERVAL.into(),
            rename_interval: DEFAULT_RENAME_INTERVAL.into(),
            max_rooms: DEFAULT_MAX_ROOMS,
            max_rooms_per_connection: DEFAULT_MAX_ROOMS_PER_CONNECTION,
            max_open_rooms_per_address: DEFAULT_MAX_OPEN_ROOMS_PER_ADDRESS,
            room_opens_per_minute: DEFAULT_ROOM_OPENS_PER_MINUTE,
            room_opens_per_minute_per_address: DEFAULT_ROOM_OPENS_PER_MINUTE_PER_ADDRESS,
            joins_per_minute_per_address: DEFAULT_JOINS_PER_MINUTE_PER_ADDRESS,
            allowed_origins: DEFAULT_ALLOWED_ORIGINS.split(',').map(str::to_owned).collect(),
            trusted_proxies: Vec::new(),
            allowed_hosts: Vec::new(),
        }
    }
}

/// Size and naming limits applied to what clients send.
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct Limits {
    /// Largest WebSocket frame in bytes; larger closes the connection with code 1009.
    #[arg(long, env = "CHAT_MAX_FRAME_BYTES", default_value_t = DEFAULT_MAX_FRAME_BYTES)]
    pub max_frame_bytes: usize,

    /// Largest message reassembled from continuation frames, in bytes (close 1009 past it).
    #[arg(long, env = "CHAT_MAX_MESSAGE_BYTES", default_value_t = DEFAULT_MAX_MESSAGE_BYTES)]
    pub max_message_bytes: usize,

    /// Longest message text in characters.
    #[arg(long, env = "CHAT_MAX_TEXT_CHARS", default_value_t = rules::MAX_TEXT_CHARS)]
    pub max_text_chars: usize,

    /// Longest nick in characters.
    #[arg(long, env = "CHAT_MAX_NICK_CHARS", default_value_t = rules::MAX_NICK_CHARS)]
    pub max_nick_chars: usize,

    /// Longest room name in characters.
    #[arg(long, env = "CHAT_MAX_ROOM_CHARS", default_value_t = rules::MAX_ROOM_CHARS)]
    pub max_room_chars: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            host: "127.0.0.1".into(),
            port: 8080,
            ui_dir: None,
            workers: None,
            room_threads: None,
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL.into(),
            client_timeout: DEFAULT_CLIENT_TIMEOUT.into(),
            history_len: DEFAULT_HISTORY_LEN,
            storage: Storage::default(),
            redis: RedisOptions::default(),
            auth: AuthOptions::default(),
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE.into(),
            metrics_address: None,
            tls_cert: None,
            tls_key: None,
            limits: Limits::default(),
            abuse: AbuseLimits::default(),
            command: None,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            max_text_chars: rules::MAX_TEXT_CHARS,
            max_nick_chars: rules::MAX_NICK_CHARS,
            max_room_chars: rules::MAX_ROOM_CHARS,
        }
    }
}

/// One per core, the default for worker and room threads.
pub fn default_parallelism() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The flags' defaults and `Config::default()` agree, field for field, so tests see what
    /// operators get.
    #[test]
    fn flag_defaults_match_default() {
        let parsed = Config::try_parse_from(["server"]).expect("no flags parse");
        assert_eq!(parsed, Config::default());
    }

    /// Durations accept human units, so tests and operators can write `200ms`.
    #[test]
    fn durations_parse_human_units() {
        let parsed = Config::try_parse_from(["server", "--heartbeat-interval", "200ms"])
            .expect("duration flag parses");
        assert_eq!(*parsed.heartbeat_interval, Duration::from_millis(200));
    }
}
