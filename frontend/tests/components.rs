//! Components render the state they are given and report what the user does.

#![cfg(target_arch = "wasm32")]

mod common;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use common::{flush, input, press, root, select, select_all, texts};
use frontend::components::{
    Composer, ComposerProps, ConnectionBadge, ConnectionBadgeProps, MemberList, MemberListProps,
    MessageList, MessageListProps,
};
use frontend::state::{ConnectionState, Entry};
use protocol::ChatMessage;
use wasm_bindgen_test::*;
use yew::Callback;

wasm_bindgen_test_configure!(run_in_browser);

fn message(id: u64, from: &str, text: &str) -> Entry {
    Entry::Message(ChatMessage {
        id,
        room: "r".into(),
        from: from.into(),
        text: text.into(),
        ts: 0,
    })
}

/// Messages render in order with sender and time; own messages are marked; notices differ.
#[wasm_bindgen_test]
async fn message_list_renders_messages_and_notices() {
    let root = root();
    let entries: VecDeque<Entry> = [
        message(1, "alice", "hello"),
        Entry::Notice { seq: 1, text: "bob joined.".into(), ts: 0 },
        message(2, "bob", "hi alice"),
    ]
    .into();
    let props = MessageListProps { entries: Rc::new(entries), own: Some("bob".into()) };
    yew::Renderer::<MessageList>::with_root_and_props(root.clone(), props).render();
    flush().await;

    assert_eq!(texts(&root, ".message .from"), ["alice", "bob"]);
    assert_eq!(texts(&root, ".message .text"), ["hello", "hi alice"]);
    assert_eq!(texts(&root, ".notice .text"), ["bob joined."]);
    assert_eq!(texts(&root, ".message.own .text"), ["hi alice"]);
    assert_eq!(select_all(&root, "time").len(), 3, "every line has a time");
    let list = select(&root, "ol.messages").expect("list");
    assert_eq!(list.get_attribute("aria-live").as_deref(), Some("polite"));
}

/// Markup in messages and nicks is shown as text, never parsed into elements.
#[wasm_bindgen_test]
async fn message_list_does_not_interpret_markup() {
    let root = root();
    let hostile = "<img src=x onerror=alert(1)><script>alert(2)</script>**bold**";
    let entries: VecDeque<Entry> = [message(1, "<b>mallory</b>", hostile)].into();
    let props = MessageListProps { entries: Rc::new(entries), own: None };
    yew::Renderer::<MessageList>::with_root_and_props(root.clone(), props).render();
    flush().await;

    assert_eq!(texts(&root, ".message .text"), [hostile]);
    assert_eq!(texts(&root, ".message .from"), ["<b>mallory</b>"]);
    assert!(select(&root, "img, script, b").is_none(), "no element was created from text");
}

/// The member list shows everyone and marks you.
#[wasm_bindgen_test]
async fn member_list_marks_you() {
    let root = root();
    let props =
        MemberListProps { members: vec!["alice".into(), "bob".into()], own: Some("bob".into()) };
    yew::Renderer::<MemberList>::with_root_and_props(root.clone(), props).render();
    flush().await;

    assert_eq!(select_all(&root, "li").len(), 2);
    assert_eq!(texts(&root, "li.own"), ["bob (you)"]);
    assert_eq!(texts(&root, "h2"), ["Members (2)"]);
}

/// Each connection state has its own visible label and machine-readable state.
#[wasm_bindgen_test]
async fn connection_badge_shows_each_state() {
    let cases = [
        (ConnectionState::Connecting, "connecting", "Connecting…"),
        (ConnectionState::Online, "online", "Online"),
        (
            ConnectionState::Reconnecting { attempt: 3, delay_ms: 2500 },
            "reconnecting",
            "Reconnecting (attempt 3, in 2.5 s)…",
        ),
        (ConnectionState::Replaced, "replaced", "Opened in another tab"),
    ];
    for (state, key, label) in cases {
        let root = root();
        let props = ConnectionBadgeProps { state };
        yew::Renderer::<ConnectionBadge>::with_root_and_props(root.clone(), props).render();
        flush().await;
        let badge = select(&root, ".badge").expect("badge");
        assert_eq!(badge.get_attribute("data-state").as_deref(), Some(key));
        assert_eq!(badge.text_content().as_deref(), Some(label));
    }
}

/// Enter sends the typed text and clears the input; blank text is refused with an explanation
/// instead of being sent; Escape clears without sending.
#[wasm_bindgen_test]
async fn composer_sends_on_enter() {
    let root = root();
    let sent = Rc::new(RefCell::new(Vec::<String>::new()));
    let refused = Rc::new(RefCell::new(Vec::<String>::new()));
    let props = ComposerProps {
        on_send: {
            let sent = sent.clone();
            Callback::from(move |t| sent.borrow_mut().push(t))
        },
        on_invalid: {
            let refused = refused.clone();
            Callback::from(move |m| refused.borrow_mut().push(m))
        },
        error: Some("Too fast.".into()),
        disabled: false,
    };
    yew::Renderer::<Composer>::with_root_and_props(root.clone(), props).render();
    flush().await;

    let field = input(&root, "#composer-input");
    field.set_value("hello there");
    press(&field, "Enter");
    flush().await;
    assert_eq!(*sent.borrow(), ["hello there"]);
    assert_eq!(field.value(), "", "input cleared after sending");

    field.set_value("   ");
    press(&field, "Enter");
    flush().await;
    assert_eq!(sent.borrow().len(), 1, "blank text is not sent");
    assert_eq!(*refused.borrow(), ["A message cannot be empty."]);

    field.set_value("never mind");
    press(&field, "Escape");
    assert_eq!(field.value(), "");
    assert_eq!(sent.borrow().len(), 1);
    assert_eq!(texts(&root, "#composer-error"), ["Too fast."], "errors show beside the input");
}
