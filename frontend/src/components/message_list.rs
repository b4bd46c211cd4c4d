//! The room's messages and notices, oldest first. It follows new messages while the reader is
//! at the bottom; a reader who scrolled up stays put and gets a "new messages" button instead.
//! Scrolling to the top asks for older messages (so does a button there, for the keyboard),
//! until the list says it reached the beginning of the room. Messages that mention the reader
//! are marked. Text is rendered as text: only http(s) links become clickable, nothing else is
//! interpreted.

use std::collections::{BTreeSet, VecDeque};
use std::rc::Rc;

use linkify::{LinkFinder, LinkKind};
use web_sys::Element;
use yew::prelude::*;

use crate::outbox::Outgoing;
use crate::state::{self, Entry, Older};
use crate::timeline::{self, Day, Row};
use protocol::{ChatMessage, MessageId};

/// How close to the bottom (in pixels) still counts as "reading the newest messages".
const STICK_THRESHOLD: i32 = 48;
/// How close to the top (in pixels) asks for older messages.
const OLDER_THRESHOLD: i32 = 80;

#[derive(Properties, PartialEq)]
pub struct MessageListProps {
    pub entries: Rc<VecDeque<Entry>>,
    /// Own messages not yet acknowledged, shown after the others as "sending".
    #[prop_or_default]
    pub pending: Vec<Outgoing>,
    /// The ids of the messages this page sent, shown as "your own".
    #[prop_or_default]
    pub own: Rc<BTreeSet<MessageId>>,
    /// The room shown: a new room starts at its newest messages.
    #[prop_or_default]
    pub room: String,
    /// The reader's nick in the room: messages that mention it are marked.
    #[prop_or_default]
    pub nick: Option<String>,
    /// Whether older messages can be asked for.
    #[prop_or(Older::Beginning)]
    pub older: Older,
    /// Asks for a page of older messages.
    #[prop_or_default]
    pub on_older: Callback<()>,
    /// The reader is signed in: their own messages (signed in, under their nick) offer Edit
    /// and Delete.
    #[prop_or_default]
    pub signed_in: bool,
    /// The reader moderates the room: every message offers Delete.
    #[prop_or_default]
    pub moderator: bool,
    /// Edit the message with this id: its new text (typed in place, changed and not empty).
    #[prop_or_default]
    pub on_edit: Callback<(MessageId, String)>,
    /// Delete the message with this id (the caller asks for confirmation).
    #[prop_or_default]
    pub on_delete: Callback<MessageId>,
}

/// What the reader may do to messages, and where to say so.
struct Powers<'a> {
    nick: Option<&'a str>,
    signed_in: bool,
    moderator: bool,
    on_edit: &'a Callback<(MessageId, String)>,
    on_delete: &'a Callback<MessageId>,
    /// The message being edited in place, if any, and how to start or end that.
    editing: Option<MessageId>,
    set_editing: Callback<Option<MessageId>>,
}

#[function_component(MessageList)]
pub fn message_list(props: &MessageListProps) -> Html {
    let list_ref = use_node_ref();
    // Whether the reader is at the bottom; updated on scroll, read after each render.
    let stick = use_mut_ref(|| true);
    let unseen = use_state(|| false);
    // The message edited in place (one at a time).
    let editing = use_state(|| None::<MessageId>);

    // The list's height while the reader is scrolled up (updated on scroll and on each
    // render then), and its first entry as last rendered: older messages added above keep
    // what the reader looks at in place. Read only off the path of a reader at the bottom,
    // where each new message would otherwise cost another layout.
    let before = use_mut_ref(|| (0, None::<i128>));

    let onscroll = {
        let (list_ref, stick, unseen) = (list_ref.clone(), stick.clone(), unseen.clone());
        let (older, on_older) = (props.older, props.on_older.clone());
        let before = before.clone();
        Callback::from(move |_: Event| {
            if let Some(list) = list_ref.cast::<Element>() {
                before.borrow_mut().0 = list.scroll_height();
                let at_bottom = is_at_bottom(&list);
                *stick.borrow_mut() = at_bottom;
                if at_bottom && *unseen {
                    unseen.set(false);
                }
                if older == Older::More && list.scroll_top() <= OLDER_THRESHOLD && !at_bottom {
                    on_older.emit(());
                }
            }
        })
    };
    {
        // Another room: start at its newest messages.
        let (stick, unseen) = (stick.clone(), unseen.clone());
        use_effect_with(props.room.clone(), move |_| {
            *stick.borrow_mut() = true;
            unseen.set(false);
        });
    }
    {
        let (list_ref, stick, unseen) = (list_ref.clone(), stick.clone(), unseen.clone());
        let before = before.clone();
        use_effect_with((props.entries.clone(), props.pending.len()), move |(entries, _)| {
            if let Some(list) = list_ref.cast::<Element>() {
                let first = entries.front().map(Entry::key);
                let (height, first_before) = *before.borrow();
                let prepended = first_before.is_some() && first != first_before;
                if *stick.borrow() {
                    list.set_scroll_top(list.scroll_height());
                } else {
                    let now = list.scroll_height();
                    if prepended {
                        list.set_scroll_top(list.scroll_top() + now - height);
                    } else if !entries.is_empty() {
                        unseen.set(true);
                    }
                    before.borrow_mut().0 = now;
                }
                before.borrow_mut().1 = first;
            }
        });
    }
    let load_older = {
        let on_older = props.on_older.clone();
        Callback::from(move |_: MouseEvent| on_older.emit(()))
    };
    let jump = {
        let (list_ref, stick, unseen) = (list_ref.clone(), stick.clone(), unseen.clone());
        Callback::from(move |_: MouseEvent| {
            if let Some(list) = list_ref.cast::<Element>() {
                list.set_scroll_top(list.scroll_height());
            }
            *stick.borrow_mut() = true;
            unseen.set(false);
        })
    };

    let powers = Powers {
        nick: props.nick.as_deref(),
        signed_in: props.signed_in,
        moderator: props.moderator,
        on_edit: &props.on_edit,
        on_delete: &props.on_delete,
        editing: *editing,
        set_editing: {
            let editing = editing.clone();
            Callback::from(move |id| editing.set(id))
        },
    };
    html! {
        <div class="message-pane">
            // Focusable, so the keyboard can scroll it; while it has the keyboard's focus, every
            // time shows its full date (as hovering one does).
            <ol class="messages" ref={list_ref} {onscroll} aria-live="polite" aria-label="Messages"
                tabindex="0">
                <li key="older" class="older">
                    { match props.older {
                        Older::Beginning => html! {
                            <span class="beginning">{ format!("This is the beginning of #{}.", props.room) }</span>
                        },
                        Older::Loading => html! { <span>{ "Loading older messages…" }</span> },
                        Older::More => html! {
                            <button type="button" class="load-older" onclick={load_older}>
                                { "Load older messages" }
                            </button>
                        },
                    } }
                </li>
                { for timeline::rows(props.entries.iter(), local_day).into_iter().map(|row| match row {
                    Row::Day { day, ts } => render_day(day, ts),
                    Row::Entry { entry, grouped } => render(entry, &props.own, grouped, &powers),
                }) }
                { for props.pending.iter().map(render_pending) }
            </ol>
            if *unseen {
                <button type="button" class="new-messages" onclick={jump}>{ "New messages ↓" }</button>
            }
        </div>
    }
}

fn is_at_bottom(list: &Element) -> bool {
    list.scroll_height() - list.scroll_top() - list.client_height() <= STICK_THRESHOLD
}

/// The separator that opens a day: its date, in the reader's language.
fn render_day((year, month, date): Day, ts: u64) -> Html {
    html! {
        <li key={format!("day-{year}-{month}-{date}")} class="day">
            <time datetime={iso_time(ts).chars().take(10).collect::<String>()}>{ long_date(ts) }</time>
        </li>
    }
}

/// A row of the list. A `grouped` message continues its sender's run: its name is hidden from
/// the eye (screen readers still read it) and it sits closer to the one before.
fn render(entry: &Entry, own: &BTreeSet<MessageId>, grouped: bool, powers: &Powers) -> Html {
    let nick = powers.nick;
    match entry {
        Entry::Message(message) => {
            let mine = own.contains(&message.id);
            let mention = !mine && nick.is_some_and(|nick| state::mentions(&message.text, nick));
            let classes = classes!(
                "message",
                mine.then_some("own"),
                grouped.then_some("grouped"),
                mention.then_some("mention")
            );
            html! {
                <li key={entry.key().to_string()} class={classes} data-id={message.id.to_string()}>
                    { render_time(message.ts) }
                    { sender(&message.from, message.signed_in, message.bot) }
                    if mention {
                        <span class="visually-hidden">{ "mentions you:" }</span>
                    }
                    if message.deleted {
                        <span class="text deleted">{ "message deleted" }</span>
                    } else if powers.editing == Some(message.id) {
                        { editor(message, powers) }
                    } else {
                        <span class="text">{ linkified(&message.text) }</span>
                        if message.edited {
                            <span class="edited">{ "(edited)" }</span>
                        }
                        { actions(message, powers) }
                    }
                </li>
            }
        }
        Entry::Notice { text, ts, .. } => html! {
            <li key={entry.key().to_string()} class="notice">
                { render_time(*ts) }
                <span class="text">{ text }</span>
            </li>
        },
        Entry::Presence { joined, left, ts, .. } => html! {
            <li key={entry.key().to_string()} class="notice presence">
                { render_time(*ts) }
                <span class="text">{ state::describe_presence(joined, left) }</span>
            </li>
        },
    }
}

/// Edit and Delete on the reader's own messages (signed in), Delete on every message for a
/// moderator: buttons, so the keyboard and touch reach them.
fn actions(message: &ChatMessage, powers: &Powers) -> Html {
    let authored = powers.signed_in
        && message.signed_in
        && !message.bot
        && powers.nick == Some(message.from.as_str());
    if !authored && !powers.moderator {
        return Html::default();
    }
    let id = message.id;
    let edit = authored.then(|| powers.set_editing.reform(move |_: MouseEvent| Some(id)));
    let delete = powers.on_delete.reform(move |_: MouseEvent| id);
    html! {
        <span class="actions">
            if let Some(onclick) = edit {
                <button type="button" class="action" {onclick}
                    aria-label={format!("Edit your message {id}")}>{ "Edit" }</button>
            }
            <button type="button" class="action" onclick={delete}
                aria-label={format!("Delete message {id} by {}", message.from)}>{ "Delete" }</button>
        </span>
    }
}

/// The reader's message `message` edited in place.
fn editor(message: &ChatMessage, powers: &Powers) -> Html {
    html! {
        <Editor id={message.id} text={message.text.clone()} on_edit={powers.on_edit.clone()}
            on_done={powers.set_editing.reform(|()| None)} />
    }
}

#[derive(Properties, PartialEq)]
struct EditorProps {
    id: MessageId,
    text: String,
    on_edit: Callback<(MessageId, String)>,
    on_done: Callback<()>,
}

/// A message's text in a field: Enter or Save sends the new text (if it changed and is not
/// empty), Escape or Cancel leaves it as it was. The field takes the keyboard as it appears.
#[function_component(Editor)]
fn edit_in_place(props: &EditorProps) -> Html {
    let field = use_node_ref();
    {
        let field = field.clone();
        use_effect_with(props.id, move |_| {
            if let Some(input) = field.cast::<web_sys::HtmlInputElement>() {
                // Focusing fails only for a detached element: nothing to focus then.
                let _ = input.focus();
            }
        });
    }
    let onsubmit = {
        let (field, on_edit, on_done) =
            (field.clone(), props.on_edit.clone(), props.on_done.clone());
        let (id, original) = (props.id, props.text.clone());
        Callback::from(move |event: SubmitEvent| {
            event.prevent_default();
            let input = field.cast::<web_sys::HtmlInputElement>();
            let text = input.map(|input| input.value()).unwrap_or_default();
            if !text.trim().is_empty() && text != original {
                on_edit.emit((id, text));
            }
            on_done.emit(());
        })
    };
    let cancel = props.on_done.reform(|_: MouseEvent| ());
    let onkeydown = {
        let on_done = props.on_done.clone();
        Callback::from(move |event: KeyboardEvent| {
            if event.key() == "Escape" {
                on_done.emit(());
            }
        })
    };
    let id = props.id;
    html! {
        <form class="edit" {onsubmit}>
            <input type="text" ref={field} value={props.text.clone()} {onkeydown}
                aria-label={format!("New text of your message {id}")}
                maxlength={protocol::rules::MAX_TEXT_CHARS.to_string()} />
            <button type="submit" class="action">{ "Save" }</button>
            <button type="button" class="action" onclick={cancel}>{ "Cancel" }</button>
        </form>
    }
}

/// A message's sender, marked: signed in to the account the name belongs to (a check, and
/// "signed in" for screen readers), a bot posting through the HTTP API, or a guest (anyone
/// can pick a free name: shown in a muted style, without the check).
fn sender(from: &str, signed_in: bool, bot: bool) -> Html {
    if bot {
        // Posted through the HTTP API: not a person in the room.
        html! {
            <>
                <span class="from">{ from }</span>
                <span class="bot" title="Posted by another system, not a person">{ "bot" }</span>
            </>
        }
    } else if signed_in {
        html! {
            <>
                <span class="from">{ from }</span>
                <span class="signed-in" title="Signed in to this registered name">
                    <span aria-hidden="true">{ "✓" }</span>
                    <span class="visually-hidden">{ "(signed in)" }</span>
                </span>
            </>
        }
    } else {
        html! {
            <span class="from guest" title="A guest: not signed in to an account">{ from }</span>
        }
    }
}

fn render_pending(item: &Outgoing) -> Html {
    html! {
        <li key={format!("pending-{}", item.client_id)} class="message own pending"
            title="Not delivered yet: it is sent as soon as the connection allows.">
            <time datetime={iso_time(item.ts)}>{ local_time(item.ts) }</time>
            <span class="from">{ &item.nick }</span>
            <span class="text">{ linkified(&item.text) }</span>
            <span class="status">{ "sending…" }</span>
        </li>
    }
}

/// The text with its http(s) links made clickable; everything else stays plain text. Links
/// open in a new tab without giving it a handle on this page.
fn linkified(text: &str) -> Html {
    let mut finder = LinkFinder::new();
    finder.kinds(&[LinkKind::Url]);
    finder
        .spans(text)
        .map(|span| {
            let part = span.as_str();
            let web = part.starts_with("https://") || part.starts_with("http://");
            if span.kind().is_some() && web {
                html! { <a href={part.to_owned()} target="_blank" rel="noopener noreferrer">{ part }</a> }
            } else {
                html! { { part } }
            }
        })
        .collect()
}

/// A row's time: `HH:MM`, with the full date on hover (its title) and, while the list has
/// the keyboard's focus, beside it.
fn render_time(ts: u64) -> Html {
    let full = full_time(ts);
    html! {
        <time datetime={iso_time(ts)} title={full.clone()}>
            { local_time(ts) }
            <span class="full-date" aria-hidden="true">{ format!(" · {full}") }</span>
        </time>
    }
}

/// `HH:MM` in the reader's time zone.
fn local_time(ts: u64) -> String {
    let date = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(ts as f64));
    format!("{:02}:{:02}", date.get_hours(), date.get_minutes())
}

/// The local calendar day of `ts`.
fn local_day(ts: u64) -> Day {
    let date = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(ts as f64));
    (date.get_full_year() as i32, date.get_month(), date.get_date())
}

/// `ts` as a long local date, e.g. "Tuesday, December 1, 2026" (in the reader's language).
fn long_date(ts: u64) -> String {
    let date = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(ts as f64));
    let options = js_sys::Object::new();
    for (key, value) in
        [("weekday", "long"), ("year", "numeric"), ("month", "long"), ("day", "numeric")]
    {
        let _ = js_sys::Reflect::set(&options, &key.into(), &value.into());
    }
    date.to_locale_date_string("default", &options).into()
}

/// `ts` as the full local date and time, for the tooltip of a time.
fn full_time(ts: u64) -> String {
    let date = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(ts as f64));
    date.to_locale_string("default", &js_sys::Object::new()).into()
}

fn iso_time(ts: u64) -> String {
    let date = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(ts as f64));
    date.to_iso_string().into()
}
