//! The account calls of the chat's own server (docs/PROTOCOL.md, "Accounts"): who this browser
//! is signed in as, registering, logging in and out. The session lives in an `HttpOnly` cookie
//! the page never sees; the WebSocket opened after a sign-in carries it.

use gloo_net::http::{Request, Response};
use serde::{Deserialize, Serialize};

/// What a sign-in asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignIn {
    /// Register the nick with the password (and sign in).
    Register,
    /// Log in to the nick's account.
    LogIn,
}

impl SignIn {
    fn path(self) -> &'static str {
        match self {
            SignIn::Register => "/account/register",
            SignIn::LogIn => "/account/login",
        }
    }
}

#[derive(Serialize)]
struct Credentials<'a> {
    nick: &'a str,
    password: &'a str,
}

#[derive(Deserialize)]
struct Who {
    nick: String,
}

/// Who this browser is, as the page starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Current {
    /// The account it is signed in to, if any.
    pub nick: Option<String>,
    /// Whether guests may chat here (`false` on a server that lets only accounts in).
    pub guests: bool,
}

/// The answer to `GET /account` when not signed in.
#[derive(Deserialize)]
struct SignedOut {
    #[serde(default = "yes")]
    guests: bool,
}

fn yes() -> bool {
    true
}

/// The server's refusal (`{"error": code, "message": ...}`).
#[derive(Deserialize)]
struct Refusal {
    #[serde(default)]
    message: String,
}

/// The account this browser is signed in to, if any, and whether guests may chat. A server
/// without accounts (`--ephemeral`) or out of reach counts as signed out, guests welcome.
pub async fn current() -> Current {
    let open = Current { nick: None, guests: true };
    let Ok(response) = Request::get("/account").send().await else { return open };
    if response.ok() {
        return Current {
            nick: response.json::<Who>().await.ok().map(|who| who.nick),
            guests: true,
        };
    }
    let guests = response.json::<SignedOut>().await.map_or(true, |out| out.guests);
    Current { nick: None, guests }
}

/// Registers or logs in; the answer is the account's nick as registered (the server's
/// spelling, whatever case was typed), or words to show.
pub async fn sign_in(kind: SignIn, nick: &str, password: &str) -> Result<String, String> {
    let request = Request::post(kind.path())
        .json(&Credentials { nick, password })
        .map_err(|error| error.to_string())?;
    let response = request.send().await.map_err(|_| unreachable_words())?;
    if response.ok() {
        return response.json::<Who>().await.map(|who| who.nick).map_err(|e| e.to_string());
    }
    Err(refusal(response).await)
}

/// Ends this browser's session.
pub async fn log_out() -> Result<(), String> {
    let response =
        Request::post("/account/logout").send().await.map_err(|_| unreachable_words())?;
    if response.ok() { Ok(()) } else { Err(refusal(response).await) }
}

async fn refusal(response: Response) -> String {
    let status = response.status();
    match response.json::<Refusal>().await {
        Ok(Refusal { message }) if !message.is_empty() => message,
        _ if status == 404 => "This server keeps no accounts.".into(),
        _ => format!("The server refused (HTTP {status})."),
    }
}

fn unreachable_words() -> String {
    "The server could not be reached; try again.".into()
}
