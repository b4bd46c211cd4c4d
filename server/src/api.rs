//! The HTTP API for other systems (bots, feeds, integrations): post into a room as a named bot,
//! read a room's history in pages, list the rooms. Every call needs an API key
//! (`Authorization: Bearer KEY`), made with `server admin create-key NAME` and stored only as
//! its SHA-256; revoking one takes effect on the next call. The OpenAPI document, generated from
//! the handlers below, is served at `/api/v1/openapi.json`.
//!
//! A post goes through the room like a member's message: it gets the room's next id, is
//! stored, then relayed to the members (marked `bot`), and only then answered. An
//! `Idempotency-Key` works as a client id of the bot under that API key: a repeat (while the
//! message is retained) gets the message first stored.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix::Addr;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use protocol::{ErrorCode, rules};
use serde::{Deserialize, Serialize};
use sha2::Digest;
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::config::Limits;
use crate::db::KeyReader;
use crate::inbound::Rejection;
use crate::lobby::{self, Lobby};
use crate::metrics::Metrics;
use crate::policy::{self, KeyedRate};
use crate::room;

/// Where the API lives.
pub const PREFIX: &str = "/api/v1";
/// How long a call waits for the lobby and then for its room (a post: until stored).
const CALL_TIMEOUT: Duration = Duration::from_secs(8);
/// The prefix of every key, so that keys are recognisable in configuration files.
const KEY_PREFIX: &str = "chat_";

/// What the API's handlers share.
pub struct ApiState {
    pub lobby: Addr<Lobby>,
    /// The keys, read on a connection of their own; `None` with `--ephemeral` (no keys).
    pub keys: Option<KeyReader>,
    /// The connection ids sessions use: a call holds a room seat under one of its own.
    pub next_conn: Arc<AtomicU64>,
    pub limits: Limits,
    /// Calls per key: the same average and burst as a WebSocket client's frames.
    pub rate: KeyedRate<String>,
    /// Calls without a valid key, per address: past it, 429 instead of 401.
    pub failed: KeyedRate<IpAddr>,
    pub metrics: Arc<Metrics>,
    /// Whose forwarding headers are believed (`--trusted-proxy`).
    pub proxies: crate::proxies::Proxies,
}

/// Calls without a valid key one address may make per minute before it gets 429.
pub const FAILED_CALLS_PER_MINUTE: u32 = 60;

/// A message to post.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMessage {
    /// The bot's name, shown as the sender; the message is marked `bot`. A letter or digit,
    /// then at most 31 letters, digits, spaces, `.`, `_` or `-` (trailing spaces are dropped).
    #[schema(example = "pricebot", pattern = "^[A-Za-z0-9][A-Za-z0-9 ._-]{0,31}$")]
    pub from: String,
    /// The text: at most 4,096 characters (by default), not blank, no control characters
    /// other than line breaks and tabs.
    #[schema(
        example = "ACME 101.25",
        min_length = 1,
        max_length = 4096,
        pattern = "^[^\\x00-\\x08\\x0B-\\x1F\\x7F-\\x9F]*[^\\s\\x00-\\x1F\\x7F-\\x9F][^\\x00-\\x08\\x0B-\\x1F\\x7F-\\x9F]*$"
    )]
    pub text: String,
}

/// A stored message.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Message {
    /// Unique and increasing across the server.
    pub id: u64,
    pub room: String,
    pub from: String,
    pub text: String,
    /// Milliseconds since the Unix epoch, when the server accepted it.
    pub ts: u64,
    /// Posted through this API.
    pub bot: bool,
    /// Sent by someone signed in to the account `from` names (false: a guest or a bot).
    pub signed_in: bool,
    /// A change to the earlier message with this id (its new text, or with `deleted` its
    /// removal), not a message of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amends: Option<u64>,
    /// Its text was edited after it was sent.
    #[serde(default)]
    pub edited: bool,
    /// Deleted: `text` is empty (or, on an amendment, the amendment is the deletion).
    #[serde(default)]
    pub deleted: bool,
}

impl From<protocol::ChatMessage> for Message {
    fn from(message: protocol::ChatMessage) -> Self {
        let protocol::ChatMessage {
            id,
            room,
            from,
            text,
            ts,
            bot,
            signed_in,
            amends,
            edited,
            deleted,
        } = message;
        Message { id, room, from, text, ts, bot, signed_in, amends, edited, deleted }
    }
}

/// A page of a room's history, oldest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Page {
    pub room: String,
    pub messages: Vec<Message>,
    /// Whether there are more messages that way (before the first, or after the last with
    /// `after`).
    pub more: bool,
}

/// Which page of history.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Messages older than this id (the newest of them).
    #[param(minimum = 0, maximum = 9_223_372_036_854_775_807_u64)]
    pub before: Option<u64>,
    /// Messages newer than this id (the oldest of them); with `before` too, the messages between
    /// the two.
    #[param(minimum = 0, maximum = 9_223_372_036_854_775_807_u64)]
    pub after: Option<u64>,
    /// At most this many; the server's page size (100 by default) bounds it further.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// Largest `limit` a history call may ask for.
const MAX_LIMIT: u32 = 1000;

/// The room a call is about (documentation of the path parameter).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct RoomPath {
    /// The room: letters, digits, `-` and `_`, at most 32 (by default); case does not matter.
    #[param(pattern = "^[A-Za-z0-9_-]{1,32}$")]
    pub room: String,
}

/// Request headers of a post (documentation).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Header)]
pub struct PostHeaders {
    /// A repeat with the same key (and the same `from`) gets the message first stored, never a
    /// second one.
    #[param(rename = "Idempotency-Key", pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub idempotency_key: Option<String>,
}

/// A room and how many people are in it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Room {
    pub name: String,
    pub members: u32,
}

/// The rooms: active ones busiest first, then recently used ones.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Rooms {
    pub rooms: Vec<Room>,
}

/// Why a call was refused.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ApiError {
    /// A stable code: `unauthorized`, `malformed_json`, `invalid_message`, `invalid_room`,
    /// `invalid_nick`, `empty_text`, `text_too_long`, `rate_limited`, `too_many_rooms`,
    /// `unavailable`, `not_found`, `method_not_allowed`.
    #[schema(example = "invalid_room")]
    pub error: String,
    /// For people; may change.
    pub message: String,
    /// For `rate_limited`: how long to wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

/// A refusal, as the response it becomes.
#[derive(Debug)]
pub struct Refused {
    status: StatusCode,
    body: ApiError,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.body.error, self.body.message)
    }
}

impl ResponseError for Refused {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        if self.status == StatusCode::UNAUTHORIZED {
            response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        if let Some(ms) = self.body.retry_after_ms {
            response.insert_header((header::RETRY_AFTER, ms.div_ceil(1000).to_string()));
        }
        response.json(&self.body)
    }
}

impl Refused {
    pub(crate) fn new(status: StatusCode, error: &str, message: impl Into<String>) -> Self {
        Refused {
            status,
            body: ApiError { error: error.into(), message: message.into(), retry_after_ms: None },
        }
    }

    fn unauthorized() -> Self {
        Refused::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Send a valid API key as `Authorization: Bearer KEY` (made by `server admin create-key`).",
        )
    }

    pub(crate) fn unavailable() -> Self {
        Refused::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "Try again shortly.")
    }

    /// 429, to be tried again after `wait`.
    pub(crate) fn too_fast(wait: std::time::Duration, message: &str) -> Self {
        let mut refused = Refused::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message);
        refused.body.retry_after_ms = Some(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX));
        refused
    }

    /// The post went to its room, but no answer came in time: it may be stored.
    fn undecided() -> Self {
        Refused::new(
            StatusCode::GATEWAY_TIMEOUT,
            "unavailable",
            "No answer in time: the message may have been stored. Send it again with the same \
             Idempotency-Key to find out without storing it twice.",
        )
    }
}

impl From<Rejection> for Refused {
    fn from(rejection: Rejection) -> Self {
        let status = match rejection.code {
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Unavailable | ErrorCode::TooManyRooms => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        };
        Refused {
            status,
            body: ApiError {
                error: code_name(rejection.code),
                message: rejection.message,
                retry_after_ms: rejection.retry_after_ms,
            },
        }
    }
}

impl From<rules::RuleError> for Refused {
    fn from(error: rules::RuleError) -> Self {
        Rejection::from(error).into()
    }
}

impl From<ErrorCode> for Refused {
    fn from(code: ErrorCode) -> Self {
        let message = match code {
            ErrorCode::TooManyRooms => "This server keeps as many rooms as it allows.",
            _ => "The message could not be stored; try again with the same Idempotency-Key.",
        };
        Rejection::new(code, message).into()
    }
}

fn code_name(code: ErrorCode) -> String {
    serde_json::to_value(code)
        .ok()
        .and_then(|value| value.as_str().map(str::to_owned))
        .unwrap_or_else(|| "unknown".into())
}

/// The OpenAPI description of this API.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Chat HTTP API",
        description = "Post into rooms as a named bot, read history, list rooms. Every call needs an API key: `Authorization: Bearer KEY`."
    ),
    paths(post_message, get_messages, list_rooms),
    components(schemas(NewMessage, Message, Page, Room, Rooms, ApiError)),
    modifiers(&BearerKey)
)]
pub struct ApiDoc;

struct BearerKey;

impl utoipa::Modify for BearerKey {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
        };
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        openapi.security = Some(vec![SecurityRequirement::new("api_key", Vec::<String>::new())]);
    }
}

/// The API's routes, under [`PREFIX`].
pub fn configure(config: &mut web::ServiceConfig, max_body: usize, metrics: Arc<Metrics>) {
    let json = web::JsonConfig::default().limit(max_body).error_handler(|error, _| {
        let refused = match &error {
            actix_web::error::JsonPayloadError::OverflowKnownLength { .. }
            | actix_web::error::JsonPayloadError::Overflow { .. } => Refused::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_message",
                "The body is larger than the server takes.",
            ),
            actix_web::error::JsonPayloadError::ContentType => Refused::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "malformed_json",
                "Send the body as `Content-Type: application/json`.",
            ),
            error => Refused::new(StatusCode::BAD_REQUEST, "malformed_json", error.to_string()),
        };
        refused.into()
    });
    let query = web::QueryConfig::default().error_handler(|error, _| {
        Refused::new(StatusCode::BAD_REQUEST, "invalid_message", error.to_string()).into()
    });
    let path = web::PathConfig::default().error_handler(|error, _| {
        Refused::new(StatusCode::BAD_REQUEST, "invalid_room", error.to_string()).into()
    });
    config.service(
        web::scope(PREFIX)
            .wrap_fn(move |request, service| {
                use actix_web::dev::Service;
                // Bounded labels: the route's pattern and a known method, never client text.
                let method = match *request.method() {
                    actix_web::http::Method::GET => "GET",
                    actix_web::http::Method::POST => "POST",
                    _ => "other",
                };
                let route = request.match_pattern().unwrap_or_else(|| "unmatched".into());
                let call = format!("{method} {route}");
                let metrics = metrics.clone();
                let answered = service.call(request);
                async move {
                    let response = answered.await?;
                    metrics.api_request(&call, response.status().as_u16());
                    Ok(response)
                }
            })
            .app_data(json)
            .app_data(query)
            .app_data(path)
            .service(
                web::resource("/openapi.json")
                    .get(openapi)
                    .default_service(web::to(not_allowed("GET"))),
            )
            .service(
                web::resource("/rooms")
                    .get(list_rooms)
                    .default_service(web::to(not_allowed("GET"))),
            )
            .service(
                web::resource("/rooms/{room}/messages")
                    .get(get_messages)
                    .post(post_message)
                    .default_service(web::to(not_allowed("GET, POST"))),
            )
            .default_service(web::to(|| async {
                Refused::new(StatusCode::NOT_FOUND, "not_found", "No such API call.")
                    .error_response()
            })),
    );
}

/// A method the call does not have: 405, with the methods it has.
fn not_allowed(allow: &'static str) -> impl Fn() -> std::future::Ready<HttpResponse> + Clone {
    move || {
        let mut response = Refused::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("This call takes {allow} (see /api/v1/openapi.json)."),
        )
        .error_response();
        response.headers_mut().insert(header::ALLOW, HeaderValue::from_static(allow));
        std::future::ready(response)
    }
}

/// The OpenAPI document, made once.
async fn openapi() -> HttpResponse {
    static DOCUMENT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let document = DOCUMENT.get_or_init(|| ApiDoc::openapi().to_json().unwrap_or_default());
    HttpResponse::Ok().content_type("application/json").body(document.as_str())
}

/// The name of the key the request carries; refused if there is none or it is not valid
/// (401, or 429 once its address has made too many such calls).
async fn authorize(state: &ApiState, request: &HttpRequest) -> Result<String, Refused> {
    let key = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|key| key.starts_with(KEY_PREFIX) && key.len() <= 128);
    let name = match (key, &state.keys) {
        (Some(key), Some(keys)) => keys.name(&key_hash(key)).map_err(|error| {
            tracing::error!(%error, "could not read the API keys");
            Refused::unavailable()
        })?,
        _ => None,
    };
    let Some(name) = name else {
        state.metrics.api_auth_failures.inc();
        if let Err(wait) = state.failed.admit(&caller(state, request)?) {
            return Err(Refused::from(Rejection::too_fast(wait, |ms| {
                format!("Too many calls without a valid key from your address; wait {ms} ms.")
            })));
        }
        return Err(Refused::unauthorized());
    };
    state.rate.admit(&name).map_err(|wait| {
        Refused::from(Rejection::too_fast(wait, |ms| {
            format!("This key is calling too often; wait {ms} ms.")
        }))
    })?;
    Ok(name)
}

fn checked_room(room: &str, limits: &Limits) -> Result<String, Refused> {
    Ok(rules::check_room(room, limits.max_room_chars)?)
}

/// The caller's address as the limits on opening rooms count it.
fn caller(state: &ApiState, request: &HttpRequest) -> Result<IpAddr, Refused> {
    state.proxies.client(request).map(policy::limit_key).ok_or_else(Refused::unavailable)
}

/// A seat held in a room for one call; given back when dropped, whatever happened (a late
/// or cancelled `Visit` included: the lobby handles messages in order, and leaving twice, or
/// without a seat, is harmless).
struct Seat {
    lobby: Addr<Lobby>,
    room: String,
    conn: u64,
}

impl Drop for Seat {
    fn drop(&mut self) {
        self.lobby.do_send(lobby::Leave {
            room: std::mem::take(&mut self.room),
            conn: self.conn,
            farewell: false,
        });
    }
}

/// Asks `room` `message`, with a seat held for the call, so the room is open (and its history
/// loaded) meanwhile; the seat is given back whatever happens. `late` is the answer when the
/// room does not reply in time.
async fn ask_room<M, T>(
    state: &ApiState,
    request: &HttpRequest,
    room: &str,
    message: M,
    late: Refused,
) -> Result<T, Refused>
where
    M: actix::Message<Result = Result<T, ErrorCode>> + Send + 'static,
    T: Send + 'static,
    room::Room: actix::Handler<M>,
{
    let conn = state.next_conn.fetch_add(1, Ordering::Relaxed);
    let visit = lobby::Visit { room: room.to_owned(), conn, address: caller(state, request)? };
    let _seat = Seat { lobby: state.lobby.clone(), room: room.to_owned(), conn };
    let addr = match state.lobby.send(visit).timeout(CALL_TIMEOUT).await {
        Ok(seated) => seated.map_err(Refused::from)?,
        Err(_) => return Err(Refused::unavailable()),
    };
    match addr.send(message).timeout(CALL_TIMEOUT).await {
        Ok(answer) => answer.map_err(Refused::from),
        Err(_) => Err(late),
    }
}

/// Post a message into a room as a bot.
#[utoipa::path(
    post,
    path = "/api/v1/rooms/{room}/messages",
    params(RoomPath, PostHeaders),
    request_body = NewMessage,
    responses(
        (status = 201, description = "Stored and relayed", body = Message),
        (status = 400, description = "Invalid room, name, text or key", body = ApiError),
        (status = 401, description = "No valid API key", body = ApiError),
        (status = 413, description = "Body too large", body = ApiError),
        (status = 415, description = "Not JSON", body = ApiError),
        (status = 429, description = "Too many calls", body = ApiError),
        (status = 503, description = "Not stored (try again with the same Idempotency-Key)", body = ApiError),
        (status = 504, description = "No answer in time: may be stored (send again with the same Idempotency-Key)", body = ApiError),
    ),
    security(("api_key" = []))
)]
pub async fn post_message(
    state: web::Data<ApiState>,
    request: HttpRequest,
    room: web::Path<String>,
    body: web::Json<NewMessage>,
) -> Result<HttpResponse, Refused> {
    let key_name = authorize(&state, &request).await?;
    let room = checked_room(&room, &state.limits)?;
    let NewMessage { from, text } = body.into_inner();
    if !is_bot_name(&from) {
        return Err(Refused::new(
            StatusCode::BAD_REQUEST,
            "invalid_nick",
            "A bot's name is a letter or digit, then at most 31 letters, digits, spaces, '.', '_' \
             or '-'.",
        ));
    }
    let nick = crate::names::check_nick(&from, state.limits.max_nick_chars)?;
    rules::check_text(&text, state.limits.max_text_chars)?;
    let idempotency_key = match request.headers().get("idempotency-key").map(HeaderValue::to_str) {
        None => None,
        Some(Ok(key)) => {
            rules::check_client_id(key)?;
            // Each API key has keys of its own: another integration cannot take them first.
            // (`.` never occurs in a client id, so these cannot meet a person's.)
            Some(format!("{key_name}.{key}"))
        }
        Some(Err(_)) => {
            return Err(Refused::new(
                StatusCode::BAD_REQUEST,
                "invalid_message",
                "An Idempotency-Key must be 1 to 64 letters, digits, '-' or '_'.",
            ));
        }
    };
    let post = room::ApiPost { nick, text, idempotency_key };
    let message = ask_room(&state, &request, &room, post, Refused::undecided()).await?;
    state.metrics.messages_in.inc();
    tracing::debug!(key = %key_name, room = %message.room, id = message.id, "API post");
    Ok(HttpResponse::Created().json(Message::from(message)))
}

/// A page of a room's stored history, oldest first.
#[utoipa::path(
    get,
    path = "/api/v1/rooms/{room}/messages",
    params(RoomPath, PageQuery),
    responses(
        (status = 200, description = "The page", body = Page),
        (status = 400, description = "Invalid room or query", body = ApiError),
        (status = 401, description = "No valid API key", body = ApiError),
        (status = 429, description = "Too many calls", body = ApiError),
        (status = 503, description = "The room could not be opened or loaded", body = ApiError),
    ),
    security(("api_key" = []))
)]
pub async fn get_messages(
    state: web::Data<ApiState>,
    request: HttpRequest,
    room: web::Path<String>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, Refused> {
    authorize(&state, &request).await?;
    let room = checked_room(&room, &state.limits)?;
    let PageQuery { before, after, limit } = query.into_inner();
    // Ids are stored as SQLite's signed integers: anything larger names no message.
    if [before, after].into_iter().flatten().any(|id| i64::try_from(id).is_err()) {
        return Err(Refused::new(
            StatusCode::BAD_REQUEST,
            "invalid_message",
            "`before` and `after` are message ids, at most 2^63 - 1.",
        ));
    }
    if limit.is_some_and(|limit| !(1..=MAX_LIMIT).contains(&limit)) {
        return Err(Refused::new(
            StatusCode::BAD_REQUEST,
            "invalid_message",
            format!("`limit` is 1 to {MAX_LIMIT}."),
        ));
    }
    let ask = room::ApiHistory { before, after, limit };
    let (messages, more) = ask_room(&state, &request, &room, ask, Refused::unavailable()).await?;
    let messages = messages.into_iter().map(Message::from).collect();
    Ok(HttpResponse::Ok().json(Page { room, messages, more }))
}

/// The rooms: active ones busiest first, then recently used ones (at most 100).
#[utoipa::path(
    get,
    path = "/api/v1/rooms",
    responses(
        (status = 200, description = "The rooms", body = Rooms),
        (status = 401, description = "No valid API key", body = ApiError),
        (status = 429, description = "Too many calls", body = ApiError),
        (status = 503, description = "Keys could not be read", body = ApiError),
    ),
    security(("api_key" = []))
)]
pub async fn list_rooms(
    state: web::Data<ApiState>,
    request: HttpRequest,
) -> Result<HttpResponse, Refused> {
    authorize(&state, &request).await?;
    let list = lobby::ListRooms { only_rooms: None };
    let rooms = state.lobby.send(list).await.map_err(|_| Refused::unavailable())?;
    let rooms = rooms.into_iter().map(|room| Room { name: room.name, members: room.members });
    Ok(HttpResponse::Ok().json(Rooms { rooms: rooms.collect() }))
}

/// Whether `name` may name a bot: `^[A-Za-z0-9][A-Za-z0-9 ._-]{0,31}$`, as the schema says.
/// Plainer than a person's nick: a bot cannot pass for anyone through look-alike letters.
fn is_bot_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|first| first.is_ascii_alphanumeric())
        && name.chars().count() <= 32
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | '.' | '_' | '-'))
}

/// A new API key: `chat_` and 64 hex digits from the OS's random generator.
pub fn new_key() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(format!("{KEY_PREFIX}{}", hex(&bytes)))
}

/// What the database keeps of a key: its SHA-256, in hex. (Keys are 256 random bits, so a fast
/// hash is enough; a password hash would only slow every call.)
pub fn key_hash(key: &str) -> String {
    hex(&sha2::Sha256::digest(key.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bot_names_are_plain() {
        for good in ["pricebot", "Feed 2", "a", "x.y_z-1", &"b".repeat(32)] {
            assert!(is_bot_name(good), "{good}");
        }
        for bad in ["", " bot", "-bot", "bøt", "b\u{430}t", "bot!", &"b".repeat(33)] {
            assert!(!is_bot_name(bad), "{bad}");
        }
    }

    #[test]
    fn keys_are_random_and_only_their_hash_is_kept() {
        let (one, two) = (new_key().expect("random"), new_key().expect("random"));
        assert_ne!(one, two);
        assert!(one.starts_with(KEY_PREFIX) && one.len() == KEY_PREFIX.len() + 64);
        assert_eq!(key_hash(&one), key_hash(&one));
        assert_ne!(key_hash(&one), key_hash(&two));
        assert!(!key_hash(&one).contains(&one[KEY_PREFIX.len()..]));
    }

    #[test]
    fn the_document_describes_every_call() {
        let document = serde_json::to_value(ApiDoc::openapi()).expect("serializes");
        let paths = document["paths"].as_object().expect("paths");
        assert!(paths.contains_key("/api/v1/rooms"));
        let messages = &paths["/api/v1/rooms/{room}/messages"];
        assert!(messages["post"].is_object() && messages["get"].is_object());
        assert_eq!(
            document["components"]["securitySchemes"]["api_key"]["scheme"],
            serde_json::json!("bearer")
        );
    }
}
