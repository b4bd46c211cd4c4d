//! The server's Prometheus metrics, served at `GET /metrics` in the text format.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use protocol::ErrorCode;

/// An error code, as a label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    pub code: String,
}

/// Why an upgrade was refused, as a label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

/// An HTTP API call and its answer's status, as labels.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabel {
    pub call: String,
    pub status: String,
}

/// Every counter and gauge. Cloning a metric shares it, so actors keep their own handles.
#[derive(Debug, Default)]
pub struct Metrics {
    pub connections: Gauge,
    /// `--max-connections`, so that dashboards and alerts can compare against it.
    pub max_connections: Gauge,
    pub connections_total: Counter,
    pub rooms: Gauge,
    /// Rooms connections are in, summed over connections (a connection may be in several).
    pub memberships: Gauge,
    /// Chat messages accepted from clients.
    pub messages_in: Counter,
    /// Frames queued to clients (chat messages, notices, welcomes).
    pub frames_out: Counter,
    pub bytes_in: Counter,
    pub bytes_out: Counter,
    pub errors: Family<CodeLabel, Counter>,
    pub rate_limited: Counter,
    pub flood_disconnects: Counter,
    pub slow_reader_disconnects: Counter,
    pub refused_upgrades: Family<ReasonLabel, Counter>,
    /// Messages written durably.
    pub messages_stored: Counter,
    /// Transactions the store committed (or tried to).
    pub store_batches: Counter,
    pub store_failures: Counter,
    /// `/metrics` requests refused under a host name a loopback server does not serve.
    pub refused_metrics: Counter,
    /// Rooms with stored messages (see `--max-stored-rooms`).
    pub stored_rooms: Gauge,
    /// Sends refused because too many writes were waiting for the disk.
    pub store_busy: Counter,
    /// Sends recognised as repeats of a stored or pending client id.
    pub duplicates: Counter,
    /// Joins refused because the room could not be opened, by reason (`max_rooms`,
    /// `connection_rate`, `address_rate`), or because the address joins too often
    /// (`address_joins`).
    pub refused_room_opens: Family<ReasonLabel, Counter>,
    /// Moderators' actions on others (delete, kick, mute, ban), by action.
    pub moderation: Family<ReasonLabel, Counter>,
    /// Rooms whose history could not be loaded (their joins were refused).
    pub history_load_failures: Counter,
    /// (`--redis`) Posts to Redis that failed or timed out (refused `unavailable`).
    pub redis_failures: Counter,
    /// (`--redis`) Other calls to Redis that failed or timed out: rooms opened or read again,
    /// catch-ups for joins, presence.
    pub redis_read_failures: Counter,
    /// (`--redis`) Rooms that started over: their history in Redis was another than the one
    /// relayed (Redis lost it, or failed over to a replica without the latest writes).
    pub history_resets: Counter,
    /// `typing` notices not relayed because the member sent one less than 2 s before.
    pub typing_dropped: Counter,
    /// When the TLS certificate presented now expires (Unix seconds); 0 without TLS.
    pub tls_expiry: Gauge,
    /// Certificate reloads that failed (the previous certificate was kept).
    pub tls_reload_failures: Counter,
    /// HTTP API calls by call (method and route) and status.
    pub api_requests: Family<ApiLabel, Counter>,
    /// HTTP API calls refused for want of a valid key.
    pub api_auth_failures: Counter,
}

impl Metrics {
    pub fn error(&self, code: ErrorCode) {
        let code = serde_json::to_value(code)
            .ok()
            .and_then(|value| value.as_str().map(str::to_owned))
            .unwrap_or_else(|| format!("{code:?}"));
        self.errors.get_or_create(&CodeLabel { code }).inc();
    }

    pub fn refused_room_open(&self, reason: &str) {
        self.refused_room_opens.get_or_create(&ReasonLabel { reason: reason.to_owned() }).inc();
    }

    /// Counts an API call: `call` is the method and route, never anything a client chose freely.
    pub fn api_request(&self, call: &str, status: u16) {
        let label = ApiLabel { call: call.to_owned(), status: status.to_string() };
        self.api_requests.get_or_create(&label).inc();
    }

    /// A moderator's `action` (its name in the audit log) on someone else.
    pub fn moderated(&self, action: &str) {
        self.moderation.get_or_create(&ReasonLabel { reason: action.to_owned() }).inc();
    }

    pub fn refused(&self, reason: &str) {
        self.refused_upgrades.get_or_create(&ReasonLabel { reason: reason.to_owned() }).inc();
    }

    /// The metrics in Prometheus' text exposition format.
    pub fn render(&self) -> String {
        let mut registry = Registry::with_prefix("chat");
        registry.register("connections", "Open WebSocket connections", self.connections.clone());
        registry.register(
            "memberships",
            "Rooms the open connections are in, summed over connections",
            self.memberships.clone(),
        );
        registry.register(
            "max_connections",
            "Open connections allowed (--max-connections)",
            self.max_connections.clone(),
        );
        registry.register(
            "connections_accepted",
            "WebSocket connections accepted since start",
            self.connections_total.clone(),
        );
        registry.register("rooms", "Rooms with at least one member", self.rooms.clone());
        registry.register("messages_in", "Chat messages accepted", self.messages_in.clone());
        registry.register("frames_out", "Frames queued to clients", self.frames_out.clone());
        registry.register("bytes_in", "Bytes of text received from clients", self.bytes_in.clone());
        registry.register("bytes_out", "Bytes of frames queued to clients", self.bytes_out.clone());
        registry.register("errors", "Error frames sent, by code", self.errors.clone());
        registry.register(
            "rate_limited",
            "Frames refused by the rate limit",
            self.rate_limited.clone(),
        );
        registry.register(
            "messages_stored",
            "Messages written durably",
            self.messages_stored.clone(),
        );
        registry.register("store_batches", "Store transactions", self.store_batches.clone());
        registry.register(
            "store_failures",
            "Store transactions that failed",
            self.store_failures.clone(),
        );
        registry.register("stored_rooms", "Rooms with stored messages", self.stored_rooms.clone());
        registry.register(
            "refused_metrics_requests",
            "Requests for /metrics refused under a foreign host name",
            self.refused_metrics.clone(),
        );
        registry.register(
            "store_busy",
            "Sends refused: too many writes waiting for the disk",
            self.store_busy.clone(),
        );
        registry.register(
            "duplicate_sends",
            "Sends recognised as repeats of a client id",
            self.duplicates.clone(),
        );
        registry.register(
            "moderation_actions",
            "Moderators' actions on other people (delete, kick, mute, ban), by action",
            self.moderation.clone(),
        );
        registry.register(
            "refused_room_opens",
            "Joins refused: too many rooms open, or rooms opened too fast, by reason",
            self.refused_room_opens.clone(),
        );
        registry.register(
            "history_load_failures",
            "Rooms whose history could not be loaded (store failing, busy or too slow)",
            self.history_load_failures.clone(),
        );
        registry.register(
            "redis_failures",
            "Posts to Redis that failed or timed out (refused unavailable); --redis only",
            self.redis_failures.clone(),
        );
        registry.register(
            "redis_read_failures",
            "Other calls to Redis that failed or timed out (room reads, catch-ups, presence, accounts)",
            self.redis_read_failures.clone(),
        );
        registry.register(
            "history_resets",
            "Rooms that started over under a new epoch: Redis lost or rewound their history",
            self.history_resets.clone(),
        );
        registry.register(
            "typing_dropped",
            "Typing notices not relayed: sent again within 2 s",
            self.typing_dropped.clone(),
        );
        registry.register(
            "flood_disconnects",
            "Connections closed for flooding (1008)",
            self.flood_disconnects.clone(),
        );
        registry.register(
            "slow_reader_disconnects",
            "Sessions dropped for not reading (4003)",
            self.slow_reader_disconnects.clone(),
        );
        registry.register(
            "tls_certificate_expiry_timestamp_seconds",
            "When the TLS certificate presented now expires, in Unix seconds (0 without TLS)",
            self.tls_expiry.clone(),
        );
        registry.register(
            "tls_reload_failures",
            "TLS certificate reloads that failed (the previous certificate is kept)",
            self.tls_reload_failures.clone(),
        );
        registry.register(
            "api_requests",
            "HTTP API calls, by call and status",
            self.api_requests.clone(),
        );
        registry.register(
            "api_auth_failures",
            "HTTP API calls refused for want of a valid key",
            self.api_auth_failures.clone(),
        );
        registry.register(
            "refused_upgrades",
            "WebSocket upgrades refused, by reason",
            self.refused_upgrades.clone(),
        );
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counters and labelled families appear in the text format under the `chat_` prefix.
    #[test]
    fn renders_prometheus_text() {
        let metrics = Metrics::default();
        metrics.connections_total.inc();
        metrics.error(ErrorCode::NickTaken);
        metrics.refused("origin");
        let text = metrics.render();
        assert!(text.contains("chat_connections_accepted_total 1"), "{text}");
        assert!(text.contains(r#"chat_errors_total{code="nick_taken"} 1"#), "{text}");
        assert!(text.contains(r#"chat_refused_upgrades_total{reason="origin"} 1"#), "{text}");
        assert!(text.trim_end().ends_with("# EOF"), "{text}");
    }
}
