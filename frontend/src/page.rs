//! The page around the app: what the address bar asks for, this tab's token, keeping the
//! address bar shareable (`?room=R&nick=N`), the rooms to come back to after a reload, the
//! title, whether the tab is visible, and desktop notifications.

use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;
use web_sys::{Notification, NotificationOptions, NotificationPermission, UrlSearchParams};

const CLIENT_TOKEN_KEY: &str = "chat.client";
/// The rooms the page was in, in the sidebar's order (`localStorage`, shared by the tabs).
const ROOMS_KEY: &str = "chat.rooms";
/// Whether the reader asked for notifications of mentions (`localStorage`).
const NOTIFY_KEY: &str = "chat.notify";

fn local_storage() -> Option<web_sys::Storage> {
    web_sys::window().and_then(|window| window.local_storage().ok().flatten())
}

/// The rooms stored by [`store_rooms`], valid names only, at most as many as one connection
/// may be in by default.
pub fn stored_rooms() -> Vec<String> {
    let stored = local_storage().and_then(|storage| storage.get_item(ROOMS_KEY).ok().flatten());
    parse_rooms(stored.as_deref())
}

/// The room names in a stored list; anything unreadable counts as no rooms.
pub fn parse_rooms(stored: Option<&str>) -> Vec<String> {
    let names: Vec<String> =
        stored.and_then(|json| serde_json::from_str(json).ok()).unwrap_or_default();
    let mut rooms: Vec<String> = Vec::new();
    for name in names {
        if let Ok(room) = protocol::rules::check_room(&name, protocol::rules::MAX_ROOM_CHARS)
            && !rooms.contains(&room)
        {
            rooms.push(room);
        }
    }
    rooms.truncate(MAX_STORED_ROOMS);
    rooms
}

/// Rooms a reload brings back, at most: the server's default cap per connection.
pub const MAX_STORED_ROOMS: usize = 20;

pub fn store_rooms(rooms: &[String]) {
    if let (Some(storage), Ok(json)) = (local_storage(), serde_json::to_string(rooms)) {
        // Without storage (private mode limits) a reload starts with one room.
        let _ = storage.set_item(ROOMS_KEY, &json);
    }
}

/// The title: the open room, after the unread count (and mentions) when there are any, so a
/// hidden tab shows what is new.
pub fn title(room: &str, unread: u32, mentions: u32) -> String {
    match (unread, mentions) {
        (0, _) => format!("#{room} · Chat"),
        (unread, 0) => format!("({unread}) #{room} · Chat"),
        (unread, mentions) => format!("({unread}, {mentions} @) #{room} · Chat"),
    }
}

pub fn set_title(title: &str) {
    if let Some(document) = web_sys::window().and_then(|window| window.document()) {
        document.set_title(title);
    }
}

/// Whether the tab is hidden (another tab, minimised).
pub fn is_hidden() -> bool {
    web_sys::window().and_then(|window| window.document()).is_some_and(|document| document.hidden())
}

/// Calls `changed` with [`is_hidden`] whenever the tab is hidden or shown; stops when the
/// returned guard is dropped.
pub fn on_visibility(changed: impl Fn(bool) + 'static) -> impl Drop {
    let document = web_sys::window().and_then(|window| window.document());
    let listener = Closure::<dyn Fn()>::new(move || changed(is_hidden()));
    if let Some(document) = &document {
        let _ = document.add_event_listener_with_callback(
            "visibilitychange",
            listener.as_ref().unchecked_ref(),
        );
    }
    Listening { document, listener }
}

struct Listening {
    document: Option<web_sys::Document>,
    listener: Closure<dyn Fn()>,
}

impl Drop for Listening {
    fn drop(&mut self) {
        if let Some(document) = &self.document {
            let _ = document.remove_event_listener_with_callback(
                "visibilitychange",
                self.listener.as_ref().unchecked_ref(),
            );
        }
    }
}

/// Whether this browser can show desktop notifications at all.
pub fn notifications_supported() -> bool {
    web_sys::window().is_some_and(|window| {
        js_sys::Reflect::has(&window, &"Notification".into()).unwrap_or(false)
    })
}

/// Whether the reader turned notifications of mentions on (and the browser still allows
/// them).
pub fn notifications_on() -> bool {
    let asked = local_storage()
        .and_then(|storage| storage.get_item(NOTIFY_KEY).ok().flatten())
        .is_some_and(|value| value == "on");
    asked
        && notifications_supported()
        && Notification::permission() == NotificationPermission::Granted
}

/// Turns notifications of mentions on or off. Turning them on asks the browser's permission
/// (only ever from the reader's click); `done` hears whether they are on afterwards.
pub fn set_notifications(on: bool, done: impl FnOnce(bool) + 'static) {
    let remember = |on: bool| {
        if let Some(storage) = local_storage() {
            let _ = storage.set_item(NOTIFY_KEY, if on { "on" } else { "off" });
        }
    };
    if !on || !notifications_supported() {
        remember(false);
        return done(false);
    }
    let Ok(asked) = Notification::request_permission() else {
        remember(false);
        return done(false);
    };
    wasm_bindgen_futures::spawn_local(async move {
        let granted = wasm_bindgen_futures::JsFuture::from(asked)
            .await
            .ok()
            .and_then(|answer| answer.as_string())
            .is_some_and(|answer| answer == "granted");
        remember(granted);
        done(granted);
    });
}

/// Shows a desktop notification (if they are on): someone mentioned the reader.
pub fn notify(title: &str, body: &str) {
    if !notifications_on() {
        return;
    }
    let options = NotificationOptions::new();
    options.set_body(body);
    options.set_tag("chat-mention");
    let _ = Notification::new_with_options(title, &options);
}

/// What the address bar asked for: `?room=R&nick=N`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Requested {
    pub room: Option<String>,
    pub nick: Option<String>,
    /// An invitation code to the private `room` (`?invite=`), sent with the connect URL.
    pub invite: Option<String>,
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
    Requested { room: get("room"), nick: get("nick"), invite: get("invite") }
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

/// The sign-in token the operator's site put in the page's address (`#token=...`, for
/// `--auth token`), kept in `sessionStorage` for reloads of the tab. Taken out of the address
/// bar at once, so the link shown, shared or screenshotted does not carry it.
pub fn auth_token() -> Option<String> {
    let window = web_sys::window()?;
    let storage = window.session_storage().ok().flatten();
    let hash = window.location().hash().ok().unwrap_or_default();
    let given = form_urlencoded::parse(hash.trim_start_matches('#').as_bytes())
        .find(|(key, _)| key == "token")
        .map(|(_, value)| value.into_owned())
        .filter(|token| !token.is_empty());
    if let Some(token) = given {
        if let Some(storage) = &storage {
            let _ = storage.set_item(AUTH_TOKEN_KEY, &token);
        }
        let search = window.location().search().ok().unwrap_or_default();
        if let Ok(history) = window.history() {
            let _ = history.replace_state_with_url(
                &wasm_bindgen::JsValue::NULL,
                "",
                Some(&format!("{}{search}", window.location().pathname().unwrap_or_default())),
            );
        }
        return Some(token);
    }
    storage.and_then(|storage| storage.get_item(AUTH_TOKEN_KEY).ok().flatten())
}

const AUTH_TOKEN_KEY: &str = "chat:auth-token";

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

/// Loads the page afresh at `?room=R` (no nick: after logging out, the page starts at the
/// join form rather than rejoining under the account's nick as a guest).
pub fn reload_at(room: &str) {
    let Some(window) = web_sys::window() else { return };
    let query = form_urlencoded::Serializer::new(String::new()).append_pair("room", room).finish();
    let _ = window.location().set_href(&format!("?{query}"));
}

/// Marks a moment of the page's life in the browser's performance timeline (User Timing), so
/// that load times can be measured from outside: `chat:join-form` when the join form can be
/// typed into, `chat:first-message` when the first message is shown.
pub fn mark(name: &str) {
    if let Some(performance) = web_sys::window().and_then(|window| window.performance()) {
        let _ = performance.mark(name);
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
