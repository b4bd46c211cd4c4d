//! The page around the app: what the address bar asks for, this tab's token, and keeping the
//! address bar shareable (`?room=R&nick=N`).

use web_sys::UrlSearchParams;

const CLIENT_TOKEN_KEY: &str = "chat.client";

/// What the address bar asked for: `?room=R&nick=N`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Requested {
    pub room: Option<String>,
    pub nick: Option<String>,
}

impl Requested {
    /// The room asked for, or the default room.
    pub fn room_or_default(&self) -> String {
        self.room.clone().unwrap_or_else(|| protocol::DEFAULT_ROOM.to_owned())
    }
}

pub fn requested() -> Requested {
    let params = web_sys::window()
        .and_then(|window| window.location().search().ok())
        .and_then(|search| UrlSearchParams::new_with_str(&search).ok());
    let get = |key: &str| {
        params.as_ref().and_then(|p| p.get(key)).filter(|value| !value.trim().is_empty())
    };
    Requested { room: get("room"), nick: get("nick") }
}

/// The WebSocket origin of the server that served this page (`ws://host:port`, or `wss://`
/// behind TLS). Under `trunk serve` this is Trunk's own address, which proxies `/ws`.
pub fn ws_base() -> String {
    let location = web_sys::window().map(|window| window.location());
    let protocol = location.as_ref().and_then(|l| l.protocol().ok()).unwrap_or_default();
    let host = location.as_ref().and_then(|l| l.host().ok()).unwrap_or_default();
    let scheme = if protocol == "https:" { "wss:" } else { "ws:" };
    format!("{scheme}//{host}")
}

/// This tab's client token, kept in `sessionStorage` so it survives reloads of the tab but is
/// not shared with other tabs.
pub fn client_token() -> String {
    let storage = web_sys::window().and_then(|window| window.session_storage().ok().flatten());
    if let Some(token) = storage
        .as_ref()
        .and_then(|s| s.get_item(CLIENT_TOKEN_KEY).ok().flatten())
        .and_then(|token| protocol::rules::check_client_token(&token))
    {
        return token;
    }
    let token = random_token();
    if let Some(storage) = storage {
        // Without storage (private mode limits) the token lasts as long as the page.
        let _ = storage.set_item(CLIENT_TOKEN_KEY, &token);
    }
    token
}

/// 104 random bits as 26 hex digits: tab tokens and message client ids. The bits come from the
/// browser's cryptographic generator (`crypto.getRandomValues`): a token another page could
/// predict would let it take over this tab's nick, and `Math.random` is predictable.
pub fn random_token() -> String {
    let mut bytes = [0u8; 13];
    let filled = web_sys::window()
        .and_then(|window| window.crypto().ok())
        .is_some_and(|crypto| crypto.get_random_values_with_u8_array(&mut bytes).is_ok());
    // Every browser that runs WebAssembly has `crypto.getRandomValues`; without it there is no
    // safe token to make, and a guessable one must not be made in its place.
    assert!(filled, "crypto.getRandomValues is not available");
    hex(&bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Puts `?room=R&nick=N` in the address bar without reloading, so the URL can be shared or
/// reloaded to come back to the same room.
pub fn show_in_address_bar(room: &str, nick: &str) {
    let Some(window) = web_sys::window() else { return };
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("room", room)
        .append_pair("nick", nick)
        .finish();
    if let Ok(history) = window.history() {
        let _ = history.replace_state_with_url(
            &wasm_bindgen::JsValue::NULL,
            "",
            Some(&format!("?{query}")),
        );
    }
}

/// The current time in Unix milliseconds (0 off the browser, where only tests run).
pub fn now() -> u64 {
    if cfg!(target_arch = "wasm32") {
        // Milliseconds since the epoch fit easily in a u64; the float is integral.
        js_sys::Date::now() as u64
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each byte becomes two lowercase hex digits, leading zeros kept: 13 bytes make a valid
    /// 26-character client token.
    #[test]
    fn hex_keeps_every_digit() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
        let token = hex(&[7; 13]);
        assert_eq!(token.len(), 26);
        assert_eq!(protocol::rules::check_client_token(&token), Some(token.clone()));
    }
}
