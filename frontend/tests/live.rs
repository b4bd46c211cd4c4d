//! The connection module and the whole app against a real server, in the browser.
//!
//! scripts/test starts a server and passes its WebSocket origin at compile time in
//! `CHAT_TEST_SERVER` (e.g. `ws://127.0.0.1:41234`); the browser cannot read the environment.

#![cfg(target_arch = "wasm32")]

mod common;

use std::cell::RefCell;
use std::rc::Rc;

use common::{input, press, root, select, texts, wait_for};
use frontend::connection::{Connection, Target};
use frontend::outbox::{Outbox, Outgoing};
use frontend::state::Action;
use protocol::{ErrorCode, ServerMessage};
use wasm_bindgen_test::*;
use yew::Callback;

wasm_bindgen_test_configure!(run_in_browser);

fn server() -> String {
    // Not `env!`: the crate must still build (for clippy, say) without a server to point at.
    let Some(url) = option_env!("CHAT_TEST_SERVER") else {
        panic!("CHAT_TEST_SERVER is not set: run the browser tests through scripts/test");
    };
    url.to_owned()
}

/// A unique room per test run, so reruns against one server do not see old history.
fn room(name: &str) -> String {
    format!("{name}-{}", (js_sys::Math::random() * 1e9) as u64)
}

/// A connection plus everything it reported.
struct Probe {
    connection: Connection,
    actions: Rc<RefCell<Vec<Action>>>,
}

impl Probe {
    fn open(room: &str, nick: &str, client: &str) -> Self {
        Self::open_at(server(), room, nick, client)
    }

    fn open_at(base: String, room: &str, nick: &str, client: &str) -> Self {
        let actions = Rc::new(RefCell::new(Vec::new()));
        let record = {
            let actions = actions.clone();
            Callback::from(move |action| actions.borrow_mut().push(action))
        };
        let target = Target::new([room.to_owned()], nick.into(), client.into());
        Probe { connection: Connection::open(base, target, record), actions }
    }

    async fn server_message<T>(&self, what: &str, pick: impl Fn(&ServerMessage) -> Option<T>) -> T {
        wait_for(what, || {
            self.actions.borrow().iter().find_map(|action| match action {
                Action::Server(message) => pick(message),
                _ => None,
            })
        })
        .await
    }
}

/// Two connections join a room through the real server and see each other's messages.
#[wasm_bindgen_test]
async fn connection_chats_through_the_server() {
    let room = room("wasm-chat");
    let alice = Probe::open(&room, "alice", "wasm-alice");
    let welcome = alice
        .server_message("alice's welcome", |m| match m {
            ServerMessage::Welcome { nick, .. } => Some(nick.clone()),
            _ => None,
        })
        .await;
    assert_eq!(welcome, "alice");
    let bob = Probe::open(&room, "bob", "wasm-bob");
    bob.server_message("bob's welcome", |m| {
        matches!(m, ServerMessage::Welcome { .. }).then_some(())
    })
    .await;

    let item = outgoing(&room, "alice", "hello from wasm");
    post(&alice, &item);
    wait_for("the sent message reported to the page's state", || {
        alice.actions.borrow().contains(&Action::Queued(item.clone())).then_some(())
    })
    .await;
    let acked = alice
        .server_message("the ack", |m| match m {
            ServerMessage::Ack { client_id, id, .. } if *client_id == item.client_id => Some(*id),
            _ => None,
        })
        .await;
    assert!(acked > 0);
    // Taking it out of the stored outbox is the page state's part (the App test checks it).
    Outbox::update(|outbox| outbox.remove(&item.client_id));
    for probe in [&alice, &bob] {
        let (from, text) = probe
            .server_message("alice's message", |m| match m {
                ServerMessage::Message(m) => Some((m.from.clone(), m.text.clone())),
                _ => None,
            })
            .await;
        assert_eq!((from.as_str(), text.as_str()), ("alice", "hello from wasm"));
    }
}

fn outgoing(room: &str, nick: &str, text: &str) -> Outgoing {
    Outgoing {
        client_id: frontend::outbox::new_client_id(),
        room: room.into(),
        nick: nick.into(),
        text: text.into(),
        ts: js_sys::Date::now() as u64,
        amends: None,
        delete: false,
    }
}

/// Stores a message in the outbox, as the page does, and asks the connection to send it.
fn post(probe: &Probe, item: &Outgoing) {
    Outbox::update(|outbox| outbox.add(item.clone())).expect("the outbox has room");
    probe.connection.flush();
}

fn in_outbox(item: &Outgoing) -> bool {
    Outbox::load().items().iter().any(|queued| queued.client_id == item.client_id)
}

/// A message typed while the server cannot be reached waits in localStorage; a page opened
/// later (as after a reload) shows it as queued, sends it once connected, and it arrives once.
#[wasm_bindgen_test]
async fn outbox_survives_a_reload_while_offline() {
    let room = room("wasm-outbox");
    // Nothing listens on port 9 of the loopback: the page stays disconnected.
    let offline = Probe::open_at("ws://127.0.0.1:9".into(), &room, "erin", "wasm-erin");
    let item = outgoing(&room, "erin", "typed while offline");
    post(&offline, &item);
    wait_for("a failed connection attempt", || {
        offline
            .actions
            .borrow()
            .iter()
            .any(|a| matches!(a, Action::Disconnected { .. }))
            .then_some(())
    })
    .await;
    assert!(in_outbox(&item), "kept in localStorage while offline");
    drop(offline);

    let watcher = Probe::open(&room, "fred", "wasm-fred");
    watcher
        .server_message("welcome", |m| matches!(m, ServerMessage::Welcome { .. }).then_some(()))
        .await;
    let reloaded = Probe::open(&room, "erin", "wasm-erin");
    assert!(
        reloaded.actions.borrow().contains(&Action::Queued(item.clone())),
        "the reopened page shows the waiting message"
    );
    reloaded
        .server_message("the ack", |m| match m {
            ServerMessage::Ack { client_id, .. } => (*client_id == item.client_id).then_some(()),
            _ => None,
        })
        .await;
    Outbox::update(|outbox| outbox.remove(&item.client_id));
    let text = watcher
        .server_message("the message", |m| match m {
            ServerMessage::Message(m) if m.from == "erin" => Some(m.text.clone()),
            _ => None,
        })
        .await;
    assert_eq!(text, "typed while offline");
    let copies = watcher
        .actions
        .borrow()
        .iter()
        .filter(|a| matches!(a, Action::Server(ServerMessage::Message(m)) if m.from == "erin"))
        .count();
    assert_eq!(copies, 1);
}

/// A taken nick is reported as an error; a second tab with the same token takes over and the
/// first is told it was replaced (and stops reconnecting).
#[wasm_bindgen_test]
async fn connection_reports_errors_and_replacement() {
    let room = room("wasm-nick");
    let first = Probe::open(&room, "carol", "wasm-tab-1");
    first
        .server_message("welcome", |m| matches!(m, ServerMessage::Welcome { .. }).then_some(()))
        .await;

    let other = Probe::open(&room, "carol", "wasm-tab-2");
    let code = other
        .server_message("nick_taken", |m| match m {
            ServerMessage::Error { code, .. } => Some(*code),
            _ => None,
        })
        .await;
    assert_eq!(code, ErrorCode::NickTaken);

    let _second = Probe::open(&room, "carol", "wasm-tab-1");
    wait_for("the first tab to be replaced", || {
        first.actions.borrow().contains(&Action::Replaced).then_some(())
    })
    .await;
}

/// The whole app: a shared link joins at once, the page goes online, and a message typed and
/// sent with Enter comes back from the server into the list.
#[wasm_bindgen_test]
async fn app_joins_from_link_and_chats() {
    let room = room("wasm-app");
    let window = web_sys::window().expect("window");
    let query = format!("?room={room}&nick=dora");
    window
        .history()
        .expect("history")
        .replace_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some(&query))
        .expect("set the address bar");

    let root = root();
    let props = frontend::AppProps { ws_base: Some(server()) };
    yew::Renderer::<frontend::App>::with_root_and_props(root.clone(), props).render();

    wait_for("the online badge", || select(&root, ".badge.online")).await;
    assert_eq!(texts(&root, ".topbar h1"), [format!("#{room}")]);
    assert_eq!(texts(&root, ".members li.own"), ["dora (you)"]);

    let field = input(&root, "#composer-input");
    field.set_value("typed in the browser");
    press(&field, "Enter");
    wait_for("the message to come back", || {
        texts(&root, ".message .text").contains(&"typed in the browser".to_owned()).then_some(())
    })
    .await;
    assert_eq!(texts(&root, ".message.own .from"), ["dora"]);
    wait_for("the pending copy to go once acknowledged", || {
        select(&root, ".message.pending").is_none().then_some(())
    })
    .await;
    // The page keeps localStorage in step with its state: acknowledged, the message has left
    // the stored outbox.
    wait_for("the stored outbox to let it go", || {
        let stored = Outbox::load();
        (!stored.items().iter().any(|item| item.text == "typed in the browser")).then_some(())
    })
    .await;
    assert!(window.location().search().expect("search").contains("nick=dora"));
}
