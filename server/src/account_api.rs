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
use crate::proxies::Proxies;

/// The cookie that carries the session.
pub const SESSION_COOKIE: &str = "chat_session";
/// Attempts (register or log in) an address may make a minute.
const ATTEMPTS_PER_MINUTE_PER_ADDRESS: u32 = 20;
/// Failed logins an account may have a minute from one address; past them its logins from
/// that address wait for the minute to end.
const FAILURES_PER_MINUTE_PER_ACCOUNT_AND_ADDRESS: u32 = 5;
/// Failed logins an account may have a minute from every address together; past them all of
/// its logins wait. Higher than the one address's, so that someone guessing from their own
/// address cannot lock the owner out, while guesses spread over many addresses stay slow.
const FAILURES_PER_MINUTE_PER_ACCOUNT: u32 = 50;
/// The largest body the account calls take (a nick and a password of at most 1,024 bytes).
const MAX_BODY_BYTES: usize = 4096;

/// What the account calls share.
pub struct AccountState {
    /// `None` with `--ephemeral`: accounts need the data folder.
    pub accounts: Option<Arc<Accounts>>,
    pub allowed_origins: Vec<String>,
    pub max_nick_chars: usize,
    /// The cookie is `Secure` (the server speaks HTTPS).
    pub secure: bool,
    /// Guests may chat (`--auth open`); the page offers "Join as guest" only then.
    pub guests: bool,
    /// Whose forwarding headers are believed (`--trusted-proxy`).
    proxies: Proxies,
    attempts: KeyedRate<IpAddr>,
    /// Failed logins per account (by its nick's key) in the current minute.
    failures: std::sync::Mutex<(std::time::Instant, std::collections::HashMap<String, u32>)>,
    /// Password hashes under way, at most one per core: past it a call is refused (503)
    /// rather than queued, so hashing cannot take every core and every blocking thread.
    hashing: Arc<tokio::sync::Semaphore>,
}

impl AccountState {
    pub fn new(
        accounts: Option<Arc<Accounts>>,
        allowed_origins: Vec<String>,
        max_nick_chars: usize,
        secure: bool,
        guests: bool,
        proxies: Proxies,
    ) -> Self {
        AccountState {
            accounts,
            allowed_origins,
            max_nick_chars,
            secure,
            guests,
            proxies,
            attempts: KeyedRate::per_minute(ATTEMPTS_PER_MINUTE_PER_ADDRESS),
            failures: std::sync::Mutex::new((std::time::Instant::now(), Default::default())),
            hashing: Arc::new(tokio::sync::Semaphore::new(crate::config::default_parallelism())),
        }
    }

    /// Forgets addresses that stopped trying (call it now and then: the map would otherwise
    /// keep every address ever seen).
    pub fn forget_quiet(&self) {
        self.attempts.forget_quiet();
    }

    /// The failures counted for `key` this minute (the count starts over every minute).
    fn failures_of(&self, key: &str) -> u32 {
        let mut failures = self.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if failures.0.elapsed() >= std::time::Duration::from_secs(60) {
            *failures = (std::time::Instant::now(), Default::default());
        }
        failures.1.get(key).copied().unwrap_or(0)
    }

    fn fail(&self, key: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *failures.1.entry(key.to_owned()).or_default() += 1;
    }

    /// A place to hash a password, or a refusal when every core is hashing.
    fn hashing(&self) -> Result<tokio::sync::OwnedSemaphorePermit, Refused> {
        self.hashing.clone().try_acquire_owned().map_err(|_| {
            Refused::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "Busy; try again shortly.")
        })
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
    let json = web::JsonConfig::default().limit(MAX_BODY_BYTES).error_handler(|error, _| {
        Refused::new(StatusCode::BAD_REQUEST, "malformed_json", error.to_string()).into()
    });
    config.service(
        web::scope("/account")
            .app_data(json)
            .route("", web::get().to(who))
            .route("/register", web::post().to(register))
            .route("/login", web::post().to(log_in))
            .route("/logout", web::post().to(log_out)),
    );
}

/// The accounts, or a refusal when the server keeps none (`--ephemeral`, `--redis`); and,
/// for calls that change something, the origin check.
fn checked<'a>(
    request: &HttpRequest,
    state: &'a AccountState,
) -> Result<&'a Arc<Accounts>, Refused> {
    let header = |name| request.headers().get(name).and_then(|value| value.to_str().ok());
    let origin = header(actix_web::http::header::ORIGIN);
    let host = header(actix_web::http::header::HOST);
    // A browser sends no Origin on a same-origin GET, and another site's page cannot read the
    // answer to its GET: only the calls that change something need one. A POST with no Origin
    // comes from no page: refused too, since only the page calls these.
    let changes = request.method() != actix_web::http::Method::GET;
    if changes
        && (origin.is_none() || !policy::origin_allowed(origin, host, &state.allowed_origins))
    {
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
            "This server keeps no accounts: it runs with --ephemeral and no --redis, or with \
             --auth token, where the site that signs the tokens says who is who.",
        )
    })
}

/// The accounts for a register or log-in call: the origin check, then the address's attempt.
fn attempting<'a>(
    request: &HttpRequest,
    state: &'a AccountState,
) -> Result<&'a Arc<Accounts>, Refused> {
    let accounts = checked(request, state)?;
    attempt(request, state)?;
    Ok(accounts)
}

/// The address's attempt, if it may make one now.
fn attempt(request: &HttpRequest, state: &AccountState) -> Result<(), Refused> {
    let Some(address) = state.proxies.client(request).map(policy::limit_key) else {
        return Ok(());
    };
    state.attempts.admit(&address).map_err(|wait| {
        Refused::too_fast(wait, "Too many attempts from your address; wait a minute.")
    })
}

async fn register(
    request: HttpRequest,
    state: web::Data<AccountState>,
    body: web::Json<Credentials>,
) -> Result<HttpResponse, Refused> {
    let accounts = attempting(&request, &state)?.clone();
    let Credentials { nick, password } = body.into_inner();
    let nick = crate::names::check_nick(&nick, state.max_nick_chars)
        .map_err(|error| Refused::new(StatusCode::BAD_REQUEST, "invalid_nick", error.message))?;
    let now = now_millis();
    let place = state.hashing()?;
    let session = web::block(move || {
        let _place = place;
        accounts.register(&nick, &password, now)
    })
    .await
    .map_err(|_| Refused::unavailable())?
    .map_err(refusal)?;
    Ok(with_cookie(
        HttpResponse::Created(),
        (&state, &request),
        &session.token,
        Some(SESSION_MILLIS),
    )
    .json(Who { nick: session.nick }))
}

/// Whom failed logins are counted against: an IPv4 address, or an IPv6 /48 (one person may
/// hold a /56 or a /48 and speak from any of its /64s).
fn guesser(address: IpAddr) -> IpAddr {
    match policy::limit_key(address) {
        IpAddr::V6(v6) => {
            IpAddr::V6(std::net::Ipv6Addr::from_bits(v6.to_bits() & !(u128::MAX >> 48)))
        }
        v4 => v4,
    }
}

async fn log_in(
    request: HttpRequest,
    state: web::Data<AccountState>,
    body: web::Json<Credentials>,
) -> Result<HttpResponse, Refused> {
    let accounts = attempting(&request, &state)?.clone();
    let Credentials { nick, password } = body.into_inner();
    // A nick no one could register is no one's: the same answer as a wrong password.
    let Ok(nick) = crate::names::check_nick(&nick, state.max_nick_chars) else {
        return Err(refusal(AccountError::WrongPassword));
    };
    // Failures are counted per account and address, and per account from every address
    // together (with a higher bound): a guesser is slowed at once, a thousand guessers soon
    // after, and the owner elsewhere is not locked out by either alone. (Both forms of a
    // nick's look count as one account: `AIice` is `Alice`.)
    let likeness = crate::names::Likeness::of(&nick);
    let from = state.proxies.client(&request).map(guesser);
    let mut accounts_keys = vec![likeness.key().to_owned(), likeness.cased().to_owned()];
    accounts_keys.dedup();
    // A nick holds no control character, so no account key is ever one of these.
    let here = |key: &String| format!("{key}\n{from:?}");
    let slowed = accounts_keys.iter().any(|key| {
        state.failures_of(&here(key)) >= FAILURES_PER_MINUTE_PER_ACCOUNT_AND_ADDRESS
            || state.failures_of(key) >= FAILURES_PER_MINUTE_PER_ACCOUNT
    });
    let keys: Vec<String> = accounts_keys.iter().flat_map(|key| [here(key), key.clone()]).collect();
    if slowed {
        return Err(Refused::too_fast(
            std::time::Duration::from_secs(60),
            "Too many failed logins for this nick; wait a minute.",
        ));
    }
    let now = now_millis();
    let place = state.hashing()?;
    let outcome = web::block(move || {
        let _place = place;
        accounts.log_in(&nick, &password, now)
    })
    .await
    .map_err(|_| Refused::unavailable())?;
    let session = match outcome {
        Ok(session) => session,
        Err(error) => {
            if matches!(error, AccountError::WrongPassword) {
                keys.iter().for_each(|key| state.fail(key));
            }
            return Err(refusal(error));
        }
    };
    Ok(with_cookie(HttpResponse::Ok(), (&state, &request), &session.token, Some(SESSION_MILLIS))
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
    Ok(with_cookie(HttpResponse::NoContent(), (&state, &request), "", None).finish())
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
        // The page offers no "Join as guest" where guests cannot chat.
        None if !state.guests => Ok(HttpResponse::Unauthorized().json(serde_json::json!({
            "error": "unauthenticated",
            "message": "Not logged in: only people signed in to an account chat here.",
            "guests": false,
        }))),
        None => Err(Refused::new(StatusCode::UNAUTHORIZED, "unauthenticated", "Not logged in.")),
    }
}

/// `response` setting the session cookie to `token` for `millis` (`None`: removing it).
/// `Secure` when the server speaks HTTPS, or the browser spoke it to a trusted proxy.
fn with_cookie(
    mut response: actix_web::HttpResponseBuilder,
    (state, request): (&AccountState, &HttpRequest),
    token: &str,
    millis: Option<u64>,
) -> actix_web::HttpResponseBuilder {
    let secure = state.secure || state.proxies.https(request);
    let seconds = millis.map_or(0, |millis| i64::try_from(millis / 1000).unwrap_or(i64::MAX));
    let cookie = Cookie::build(SESSION_COOKIE, token.to_owned())
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(secure)
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
        AccountError::GuestNick => {
            Refused::new(StatusCode::BAD_REQUEST, "invalid_nick", error.to_string())
        }
        AccountError::WrongPassword => {
            Refused::new(StatusCode::UNAUTHORIZED, "unauthenticated", "Wrong nick or password.")
        }
        AccountError::Hash(_) | AccountError::Store(_) | AccountError::Shared(_) => {
            // Anyone may call: during an outage, one line per call would be theirs to multiply.
            static FAILED: crate::throttle::Throttle = crate::throttle::Throttle::new();
            FAILED.run(|| {
                tracing::error!(%error, "an account call failed");
            });
            Refused::unavailable()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// IPv4 addresses count alone; an IPv6 address counts as its /48, an IPv4-mapped one as
    /// its IPv4 address.
    #[test]
    fn guessers_are_counted_by_address_or_ipv6_48() {
        let ip = |text: &str| text.parse::<IpAddr>().expect("address");
        assert_eq!(guesser(ip("203.0.113.7")), ip("203.0.113.7"));
        assert_eq!(guesser(ip("2001:db8:1:ff00:1:2:3:4")), ip("2001:db8:1::"));
        assert_eq!(guesser(ip("2001:db8:1:ff00::9")), guesser(ip("2001:db8:1:1::1")));
        assert_ne!(guesser(ip("2001:db8:1::1")), guesser(ip("2001:db8:2::1")));
        assert_eq!(guesser(ip("::ffff:198.51.100.2")), ip("198.51.100.2"));
    }
}
