//! The web page's account calls: register, log in, log out, who am I. JSON in and out, the
//! session in an `HttpOnly`, `SameSite=Lax` cookie (`Secure` over HTTPS). Only pages of an
//! allowed origin may call them (the WebSocket's origin rule), so another site cannot log a
//! visitor in or out (login CSRF); attempts are limited per address and per nick.

use std::net::IpAddr;
use std::sync::Arc;

use actix_web::cookie::{Cookie, SameSite, time};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};

use crate::accounts::{AccountError, Accounts, SESSION_MILLIS};
use crate::api::Refused;
use crate::outbound::now_millis;
use crate::policy::{self, KeyedRate};

/// The cookie that carries the session.
pub const SESSION_COOKIE: &str = "chat_session";
/// Attempts (register or log in) an address may make a minute.
const ATTEMPTS_PER_MINUTE_PER_ADDRESS: u32 = 20;
/// Logins a nick may be tried with a minute, from every address together.
const LOGINS_PER_MINUTE_PER_NICK: u32 = 5;

/// What the account calls share.
pub struct AccountState {
    /// `None` with `--ephemeral`: accounts need the data folder.
    pub accounts: Option<Arc<Accounts>>,
    pub allowed_origins: Vec<String>,
    pub max_nick_chars: usize,
    /// The cookie is `Secure` (the server speaks HTTPS).
    pub secure: bool,
    attempts: KeyedRate<IpAddr>,
    logins: KeyedRate<String>,
}

impl AccountState {
    pub fn new(
        accounts: Option<Arc<Accounts>>,
        allowed_origins: Vec<String>,
        max_nick_chars: usize,
        secure: bool,
    ) -> Self {
        AccountState {
            accounts,
            allowed_origins,
            max_nick_chars,
            secure,
            attempts: KeyedRate::per_minute(ATTEMPTS_PER_MINUTE_PER_ADDRESS),
            logins: KeyedRate::per_minute(LOGINS_PER_MINUTE_PER_NICK),
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct Credentials {
    nick: String,
    password: String,
}

#[derive(Debug, Serialize)]
struct Who {
    nick: String,
}

/// The routes, under `/account`.
pub fn configure(config: &mut web::ServiceConfig) {
    config.service(
        web::scope("/account")
            .route("", web::get().to(who))
            .route("/register", web::post().to(register))
            .route("/login", web::post().to(log_in))
            .route("/logout", web::post().to(log_out)),
    );
}

/// The accounts, or a refusal when the server keeps none (`--ephemeral`); and the origin check.
fn checked<'a>(
    request: &HttpRequest,
    state: &'a AccountState,
) -> Result<&'a Arc<Accounts>, Refused> {
    let header = |name| request.headers().get(name).and_then(|value| value.to_str().ok());
    let origin = header(actix_web::http::header::ORIGIN);
    let host = header(actix_web::http::header::HOST);
    // A call with no Origin at all comes from no page: not a browser's cross-site request,
    // but refused too, since only the page calls these.
    if origin.is_none() || !policy::origin_allowed(origin, host, &state.allowed_origins) {
        return Err(Refused::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Accounts are reached from the chat's own page only.",
        ));
    }
    state.accounts.as_ref().ok_or_else(|| {
        Refused::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "This server keeps no accounts (it runs with --ephemeral).",
        )
    })
}

/// The address's attempt, if it may make one now.
fn attempt(request: &HttpRequest, state: &AccountState) -> Result<(), Refused> {
    let address = request.peer_addr().map(|peer| policy::limit_key(peer.ip()));
    let Some(address) = address else { return Ok(()) };
    state.attempts.admit(&address).map_err(|wait| {
        Refused::too_fast(wait, "Too many attempts from your address; wait a minute.")
    })
}

async fn register(
    request: HttpRequest,
    state: web::Data<AccountState>,
    body: web::Json<Credentials>,
) -> Result<HttpResponse, Refused> {
    let accounts = checked(&request, &state)?.clone();
    attempt(&request, &state)?;
    let Credentials { nick, password } = body.into_inner();
    let nick = crate::names::check_nick(&nick, state.max_nick_chars)
        .map_err(|error| Refused::new(StatusCode::BAD_REQUEST, "invalid_nick", error.message))?;
    let now = now_millis();
    let registered = nick.clone();
    let session = web::block(move || {
        accounts.register(&registered, &password, now)?;
        accounts.log_in(&registered, &password, now)
    })
    .await
    .map_err(|_| Refused::unavailable())?
    .map_err(refusal)?;
    Ok(with_cookie(HttpResponse::Created(), &state, &session.token, Some(SESSION_MILLIS))
        .json(Who { nick: session.nick }))
}

async fn log_in(
    request: HttpRequest,
    state: web::Data<AccountState>,
    body: web::Json<Credentials>,
) -> Result<HttpResponse, Refused> {
    let accounts = checked(&request, &state)?.clone();
    attempt(&request, &state)?;
    let Credentials { nick, password } = body.into_inner();
    let key = crate::names::Likeness::of(&nick).key().to_owned();
    // Slowed per nick, from every address together: guessing one person's password is as slow
    // from a thousand addresses as from one.
    if let Err(wait) = state.logins.admit(&key) {
        return Err(Refused::too_fast(wait, "Too many logins for this nick; wait a minute."));
    }
    let now = now_millis();
    let session = web::block(move || accounts.log_in(&nick, &password, now))
        .await
        .map_err(|_| Refused::unavailable())?
        .map_err(refusal)?;
    Ok(with_cookie(HttpResponse::Ok(), &state, &session.token, Some(SESSION_MILLIS))
        .json(Who { nick: session.nick }))
}

async fn log_out(
    request: HttpRequest,
    state: web::Data<AccountState>,
) -> Result<HttpResponse, Refused> {
    let accounts = checked(&request, &state)?;
    if let Some(cookie) = request.cookie(SESSION_COOKIE) {
        accounts.log_out(cookie.value()).map_err(refusal)?;
    }
    Ok(with_cookie(HttpResponse::NoContent(), &state, "", None).finish())
}

async fn who(
    request: HttpRequest,
    state: web::Data<AccountState>,
) -> Result<HttpResponse, Refused> {
    let accounts = checked(&request, &state)?;
    let nick = match request.cookie(SESSION_COOKIE) {
        Some(cookie) => accounts.session(cookie.value(), now_millis()).map_err(refusal)?,
        None => None,
    };
    match nick {
        Some(nick) => Ok(HttpResponse::Ok().json(Who { nick })),
        None => Err(Refused::new(StatusCode::UNAUTHORIZED, "unauthenticated", "Not logged in.")),
    }
}

/// `response` setting the session cookie to `token` for `millis` (`None`: removing it).
fn with_cookie(
    mut response: actix_web::HttpResponseBuilder,
    state: &AccountState,
    token: &str,
    millis: Option<u64>,
) -> actix_web::HttpResponseBuilder {
    let seconds = millis.map_or(0, |millis| i64::try_from(millis / 1000).unwrap_or(i64::MAX));
    let cookie = Cookie::build(SESSION_COOKIE, token.to_owned())
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(state.secure)
        .max_age(time::Duration::seconds(seconds))
        .finish();
    response.cookie(cookie);
    response
}

fn refusal(error: AccountError) -> Refused {
    match error {
        AccountError::Taken => Refused::new(
            StatusCode::CONFLICT,
            "nick_taken",
            "Someone has registered a nick that looks like this one.",
        ),
        AccountError::WeakPassword => {
            Refused::new(StatusCode::BAD_REQUEST, "weak_password", error.to_string())
        }
        AccountError::WrongPassword => {
            Refused::new(StatusCode::UNAUTHORIZED, "unauthenticated", "Wrong nick or password.")
        }
        AccountError::Hash(_) | AccountError::Store(_) => {
            tracing::error!(%error, "an account call failed");
            Refused::unavailable()
        }
    }
}
