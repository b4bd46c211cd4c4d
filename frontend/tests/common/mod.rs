//! Helpers for the browser tests: mount a component in a fresh element, query the DOM, and
//! wait for a condition by polling with a deadline.

// Each test binary uses only some of these.
#![allow(dead_code)]

use std::time::Duration;

use wasm_bindgen::JsCast;
use web_sys::{Element, HtmlInputElement};

/// How long any single expectation may take.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// A fresh `<div>` appended to the test page's body.
pub fn root() -> Element {
    let document = document();
    let root = document.create_element("div").expect("create div");
    document.body().expect("body").append_child(&root).expect("append root");
    root
}

pub fn document() -> web_sys::Document {
    web_sys::window().and_then(|w| w.document()).expect("a document")
}

/// Lets Yew finish rendering what was scheduled.
pub async fn flush() {
    yew::scheduler::flush().await;
}

pub fn select(root: &Element, selector: &str) -> Option<Element> {
    root.query_selector(selector).expect("valid selector")
}

pub fn select_all(root: &Element, selector: &str) -> Vec<Element> {
    let list = root.query_selector_all(selector).expect("valid selector");
    (0..list.length())
        .filter_map(|i| list.item(i))
        .filter_map(|node| node.dyn_into::<Element>().ok())
        .collect()
}

pub fn texts(root: &Element, selector: &str) -> Vec<String> {
    select_all(root, selector).iter().map(|e| e.text_content().unwrap_or_default()).collect()
}

pub fn input(root: &Element, selector: &str) -> HtmlInputElement {
    select(root, selector)
        .unwrap_or_else(|| panic!("no {selector}"))
        .dyn_into()
        .expect("an input element")
}

/// Dispatches a `keydown` for `key` on `target`, as a person pressing it would.
pub fn press(target: &Element, key: &str) {
    let init = web_sys::KeyboardEventInit::new();
    init.set_key(key);
    init.set_bubbles(true);
    init.set_cancelable(true);
    let event = web_sys::KeyboardEvent::new_with_keyboard_event_init_dict("keydown", &init)
        .expect("keyboard event");
    target.dispatch_event(&event).expect("dispatched");
}

/// Waits until `check` returns `Some`, polling every few milliseconds; panics with `what` after
/// the deadline.
pub async fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let start = js_sys::Date::now();
    loop {
        flush().await;
        if let Some(found) = check() {
            return found;
        }
        let waited = Duration::from_millis((js_sys::Date::now() - start) as u64);
        assert!(waited < DEADLINE, "timed out waiting for {what}");
        gloo_timers::future::sleep(Duration::from_millis(10)).await;
    }
}
