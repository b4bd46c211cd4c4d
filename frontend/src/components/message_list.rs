//! The room's messages and notices, oldest first, following new messages unless the reader
//! has scrolled up. Text is rendered as text: nothing in a message or nick is interpreted.

use std::collections::VecDeque;
use std::rc::Rc;

use web_sys::Element;
use yew::prelude::*;

use crate::state::Entry;

/// How close to the bottom (in pixels) still counts as "reading the newest messages".
const STICK_THRESHOLD: i32 = 48;

#[derive(Properties, PartialEq)]
pub struct MessageListProps {
    pub entries: Rc<VecDeque<Entry>>,
    #[prop_or_default]
    pub own: Option<String>,
}

#[function_component(MessageList)]
pub fn message_list(props: &MessageListProps) -> Html {
    let list_ref = use_node_ref();
    // Whether the reader is at the bottom; updated on scroll, read after each render.
    let stick = use_mut_ref(|| true);

    let onscroll = {
        let (list_ref, stick) = (list_ref.clone(), stick.clone());
        Callback::from(move |_: Event| {
            if let Some(list) = list_ref.cast::<Element>() {
                let from_bottom = list.scroll_height() - list.scroll_top() - list.client_height();
                *stick.borrow_mut() = from_bottom <= STICK_THRESHOLD;
            }
        })
    };
    {
        let (list_ref, stick) = (list_ref.clone(), stick.clone());
        use_effect_with(props.entries.clone(), move |_| {
            if *stick.borrow()
                && let Some(list) = list_ref.cast::<Element>()
            {
                list.set_scroll_top(list.scroll_height());
            }
        });
    }

    html! {
        <ol class="messages" ref={list_ref} {onscroll} aria-live="polite" aria-label="Messages">
            { for props.entries.iter().map(|entry| render(entry, props.own.as_deref())) }
        </ol>
    }
}

fn render(entry: &Entry, own: Option<&str>) -> Html {
    match entry {
        Entry::Message(message) => {
            let mine = own == Some(message.from.as_str());
            html! {
                <li key={entry.key().to_string()} class={classes!("message", mine.then_some("own"))}
                    data-id={message.id.to_string()}>
                    <time datetime={iso_time(message.ts)}>{ local_time(message.ts) }</time>
                    <span class="from">{ &message.from }</span>
                    <span class="text">{ &message.text }</span>
                </li>
            }
        }
        Entry::Notice { text, ts, .. } => html! {
            <li key={entry.key().to_string()} class="notice">
                <time datetime={iso_time(*ts)}>{ local_time(*ts) }</time>
                <span class="text">{ text }</span>
            </li>
        },
    }
}

/// `HH:MM` in the reader's time zone.
fn local_time(ts: u64) -> String {
    let date = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(ts as f64));
    format!("{:02}:{:02}", date.get_hours(), date.get_minutes())
}

fn iso_time(ts: u64) -> String {
    let date = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(ts as f64));
    date.to_iso_string().into()
}
