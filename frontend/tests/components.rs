//! Components render the state they are given and report what the user does.

#![cfg(target_arch = "wasm32")]

mod common;

use std::cell::RefCell;
use std::collections::{BTreeSet, VecDeque};
use std::rc::Rc;

use common::{flush, input, press, root, select, select_all, texts};
use frontend::account::SignIn;
use frontend::components::room_list::JoinedRoom;
use frontend::components::{
    Composer, ComposerProps, ConnectionBadge, ConnectionBadgeProps, JoinForm, JoinFormProps,
    MemberList, MemberListProps, MessageList, MessageListProps, RoomList, RoomListProps,
    RoomSettings, RoomSettingsProps, SignInRequest, TypingIndicator, TypingIndicatorProps,
};
use frontend::outbox::Outgoing;
use frontend::state::{ConnectionState, Entry, Older};
use protocol::{ChatMessage, MessageId, RoomInfo};
use wasm_bindgen::JsCast;
use wasm_bindgen_test::*;
use yew::Callback;

wasm_bindgen_test_configure!(run_in_browser);

fn message(id: u64, from: &str, text: &str) -> Entry {
    Entry::Message(Rc::new(ChatMessage {
        id,
        room: "r".into(),
        from: from.into(),
        text: text.into(),
        ts: 0,
        bot: false,
        signed_in: false,
        ..Default::default()
    }))
}

/// A message list of room `r`, read by nobody in particular, at its beginning.
fn list_props(
    entries: Rc<VecDeque<Entry>>,
    pending: Vec<Outgoing>,
    own: Rc<BTreeSet<MessageId>>,
) -> MessageListProps {
    MessageListProps {
        entries,
        pending,
        own,
        room: "r".into(),
        nick: None,
        older: Older::Beginning,
        on_older: Callback::noop(),
        signed_in: false,
        moderator: false,
        on_edit: Callback::noop(),
        on_delete: Callback::noop(),
    }
}

/// Messages render in order with sender and time; own messages (by id) are marked; notices
/// and presence lines differ.
#[wasm_bindgen_test]
async fn message_list_renders_messages_and_notices() {
    let root = root();
    let entries: VecDeque<Entry> = [
        message(1, "alice", "hello"),
        Entry::Notice { seq: 1, text: "bob joined.".into(), ts: 0 },
        message(2, "bob", "hi alice"),
        message(3, "bob", "another bob, earlier"),
        Entry::Presence {
            seq: 2,
            joined: vec!["carol".into(), "dave".into()],
            left: vec!["erin".into()],
            ts: 0,
        },
    ]
    .into();
    let pending = vec![frontend::outbox::Outgoing {
        client_id: "p1".into(),
        room: "r".into(),
        nick: "bob".into(),
        text: "still sending".into(),
        ts: 0,
        amends: None,
        delete: false,
    }];
    let own = Rc::new(BTreeSet::from([2]));
    let props = list_props(Rc::new(entries), pending, own);
    yew::Renderer::<MessageList>::with_root_and_props(root.clone(), props).render();
    flush().await;

    assert_eq!(texts(&root, ".message .from"), ["alice", "bob", "bob", "bob"]);
    assert_eq!(
        texts(&root, ".message .text"),
        ["hello", "hi alice", "another bob, earlier", "still sending"]
    );
    assert_eq!(texts(&root, ".notice .text"), ["bob joined.", "carol, dave joined; erin left."]);
    assert_eq!(
        texts(&root, ".message.own .text"),
        ["hi alice", "still sending"],
        "own by the ids this page sent, not by nick"
    );
    assert_eq!(texts(&root, ".message.pending .status"), ["sending…"], "pending, last");
    assert_eq!(select_all(&root, ".message time, .notice time").len(), 6, "every line has a time");
    assert_eq!(select_all(&root, ".day").len(), 1, "one day, one separator");
    let list = select(&root, "ol.messages").expect("list");
    assert_eq!(list.get_attribute("aria-live").as_deref(), Some("polite"));
}

/// Markup in messages and nicks is shown as text, never parsed into elements.
#[wasm_bindgen_test]
async fn message_list_does_not_interpret_markup() {
    let root = root();
    let hostile = "<img src=x onerror=alert(1)><script>alert(2)</script>**bold**";
    let entries: VecDeque<Entry> = [message(1, "<b>mallory</b>", hostile)].into();
    let props = list_props(Rc::new(entries), Vec::new(), Rc::default());
    yew::Renderer::<MessageList>::with_root_and_props(root.clone(), props).render();
    flush().await;

    assert_eq!(texts(&root, ".message .text"), [hostile]);
    assert_eq!(texts(&root, ".message .from"), ["<b>mallory</b>"]);
    assert!(select(&root, "img, script, b").is_none(), "no element was created from text");
}

/// A bot's message (posted through the HTTP API) carries a visible "bot" mark; a person's
/// does not.
#[wasm_bindgen_test]
async fn bot_messages_are_marked() {
    let root = root();
    let Entry::Message(person) = message(1, "pricebot", "typed") else { unreachable!() };
    let bot = Rc::new(ChatMessage { id: 2, text: "posted".into(), bot: true, ..(*person).clone() });
    let entries: VecDeque<Entry> = [Entry::Message(person), Entry::Message(bot)].into();
    let props = list_props(Rc::new(entries), Vec::new(), Rc::default());
    yew::Renderer::<MessageList>::with_root_and_props(root.clone(), props).render();
    flush().await;

    assert_eq!(texts(&root, ".message .bot"), ["bot"], "one mark, on the bot's message");
    assert_eq!(texts(&root, ".message:last-child .bot"), ["bot"]);
}

/// A signed-in member's message carries a check (and words for screen readers); a guest's
/// name is styled as a guest's and has neither, so a guest cannot pass as the member.
#[wasm_bindgen_test]
async fn signed_in_and_guest_senders_are_told_apart() {
    let root = root();
    let Entry::Message(guest) = message(1, "alice", "a guest") else { unreachable!() };
    let member = Rc::new(ChatMessage { id: 2, signed_in: true, ..(*guest).clone() });
    let entries: VecDeque<Entry> = [Entry::Message(guest), Entry::Message(member)].into();
    let props = list_props(Rc::new(entries), Vec::new(), Rc::default());
    yew::Renderer::<MessageList>::with_root_and_props(root.clone(), props).render();
    flush().await;

    assert_eq!(texts(&root, ".message .from"), ["alice", "alice"], "the same name");
    assert_eq!(texts(&root, "[data-id='1'] .from.guest"), ["alice"]);
    assert!(texts(&root, "[data-id='1'] .signed-in").is_empty());
    assert_eq!(texts(&root, "[data-id='2'] .signed-in"), ["✓(signed in)"]);
    assert!(texts(&root, "[data-id='2'] .guest").is_empty());
}

/// The join form joins as a guest without a password; with one, the buttons register or log
/// in (Enter logs in); signed in, it joins under the account and offers to log out.
#[wasm_bindgen_test]
async fn join_form_joins_as_guest_or_signs_in() {
    let joined = Rc::new(RefCell::new(Vec::new()));
    let signed = Rc::new(RefCell::new(Vec::new()));
    let logged_out = Rc::new(RefCell::new(0));
    let props = |account: Option<&str>| {
        let (joined, signed, logged_out) = (joined.clone(), signed.clone(), logged_out.clone());
        JoinFormProps {
            nick: "ann".into(),
            room: "r".into(),
            error: None,
            account: account.map(str::to_owned),
            on_join: Callback::from(move |choice| joined.borrow_mut().push(choice)),
            on_sign_in: Callback::from(move |request| signed.borrow_mut().push(request)),
            on_log_out: Callback::from(move |()| *logged_out.borrow_mut() += 1),
            guests: true,
        }
    };
    let click = |root: &web_sys::Element, css: &str| {
        let button = select(root, css).unwrap_or_else(|| panic!("no {css}"));
        button.dyn_ref::<web_sys::HtmlElement>().expect("html element").click();
    };
    let root = root();
    yew::Renderer::<JoinForm>::with_root_and_props(root.clone(), props(None)).render();
    flush().await;
    assert_eq!(texts(&root, "button"), ["Join as guest", "Log in", "Register"]);
    click(&root, "button");
    flush().await;
    assert_eq!(*joined.borrow(), [("ann".to_owned(), "r".to_owned())]);

    click(&root, ".account-buttons button:last-child");
    flush().await;
    assert_eq!(texts(&root, ".error"), ["Type your password to register or log in."]);
    assert!(signed.borrow().is_empty());
    input(&root, "#join-password").set_value("correct horse battery");
    click(&root, ".account-buttons button:last-child");
    click(&root, "button");
    flush().await;
    let request = |kind| SignInRequest {
        kind,
        nick: "ann".into(),
        password: "correct horse battery".into(),
        room: "r".into(),
    };
    assert_eq!(*signed.borrow(), [request(SignIn::Register), request(SignIn::LogIn)]);
    assert_eq!(joined.borrow().len(), 1, "a typed password never joins as a guest");

    let root = crate::root();
    yew::Renderer::<JoinForm>::with_root_and_props(root.clone(), props(Some("Ann"))).render();
    flush().await;
    assert!(select(&root, "#join-nick").is_none() && select(&root, "#join-password").is_none());
    assert_eq!(texts(&root, ".signed-in-as strong"), ["Ann"]);
    click(&root, "button[type=submit]");
    click(&root, "button.secondary");
    flush().await;
    assert_eq!(joined.borrow().last(), Some(&("Ann".to_owned(), "r".to_owned())));
    assert_eq!(*logged_out.borrow(), 1);

    // Where guests cannot chat: no guest button, and Enter logs in.
    let root = crate::root();
    let only_accounts = JoinFormProps { guests: false, ..props(None) };
    yew::Renderer::<JoinForm>::with_root_and_props(root.clone(), only_accounts).render();
    flush().await;
    assert_eq!(texts(&root, "button"), ["Log in", "Register"]);
    input(&root, "#join-password").set_value("correct horse battery");
    // As Enter in a field does: the form is submitted without a button pressed.
    let init = web_sys::EventInit::new();
    init.set_bubbles(true);
    init.set_cancelable(true);
    let submit = web_sys::Event::new_with_event_init_dict("submit", &init).expect("event");
    select(&root, "form").expect("the form").dispatch_event(&submit).expect("dispatched");
    flush().await;
    assert_eq!(signed.borrow().last(), Some(&request(SignIn::LogIn)));
    assert_eq!(joined.borrow().len(), 2, "never as a guest");
}

/// A signed-in reader's own messages offer Edit and Delete, others' nothing; a moderator
/// gets Delete on every message; a deleted message is a tombstone without actions, an edited
/// one says so; the buttons report the message (and its text, to edit).
#[wasm_bindgen_test]
async fn message_actions_follow_who_may_do_what() {
    let Entry::Message(mine) = message(1, "ann", "mine") else { unreachable!() };
    let mine = Rc::new(ChatMessage { signed_in: true, edited: true, ..(*mine).clone() });
    let Entry::Message(theirs) = message(2, "bob", "theirs") else { unreachable!() };
    let Entry::Message(gone) = message(3, "bob", "") else { unreachable!() };
    let gone = Rc::new(ChatMessage { deleted: true, ..(*gone).clone() });
    let entries: VecDeque<Entry> =
        [Entry::Message(mine), Entry::Message(theirs), Entry::Message(gone)].into();
    let edits = Rc::new(RefCell::new(Vec::new()));
    let deletes = Rc::new(RefCell::new(Vec::new()));
    let props = |moderator: bool| {
        let (edits, deletes) = (edits.clone(), deletes.clone());
        MessageListProps {
            nick: Some("ann".into()),
            signed_in: true,
            moderator,
            on_edit: Callback::from(move |edit| edits.borrow_mut().push(edit)),
            on_delete: Callback::from(move |id| deletes.borrow_mut().push(id)),
            ..list_props(Rc::new(entries.clone()), Vec::new(), Rc::default())
        }
    };
    let root = root();
    let mut handle =
        yew::Renderer::<MessageList>::with_root_and_props(root.clone(), props(false)).render();
    flush().await;
    assert_eq!(texts(&root, "[data-id='1'] .action"), ["Edit", "Delete"]);
    assert!(texts(&root, "[data-id='2'] .action").is_empty(), "not hers, not a moderator");
    assert_eq!(texts(&root, "[data-id='1'] .edited"), ["(edited)"]);
    assert_eq!(texts(&root, "[data-id='3'] .text.deleted"), ["message deleted"]);
    assert!(texts(&root, "[data-id='3'] .action").is_empty(), "nothing to do to a tombstone");
    for button in select_all(&root, "[data-id='1'] .action") {
        button.dyn_ref::<web_sys::HtmlElement>().expect("html element").click();
    }
    flush().await;
    assert_eq!(*deletes.borrow(), [1]);
    // Edit puts the text in a field in place: unchanged or empty sends nothing, Escape
    // leaves, a new text is sent once.
    let field = input(&root, "[data-id='1'] form.edit input");
    assert_eq!(field.value(), "mine");
    let submit = |root: &web_sys::Element| {
        let init = web_sys::EventInit::new();
        init.set_bubbles(true);
        init.set_cancelable(true);
        let event = web_sys::Event::new_with_event_init_dict("submit", &init).expect("event");
        let form = select(root, "[data-id='1'] form.edit").expect("the editor");
        form.dispatch_event(&event).expect("dispatched");
    };
    submit(&root);
    flush().await;
    assert!(edits.borrow().is_empty(), "unchanged");
    assert!(select(&root, "form.edit").is_none(), "closed");
    let edit_button = || select(&root, "[data-id='1'] .action").expect("Edit");
    edit_button().dyn_ref::<web_sys::HtmlElement>().expect("html element").click();
    flush().await;
    press(&input(&root, "[data-id='1'] form.edit input"), "Escape");
    flush().await;
    assert!(select(&root, "form.edit").is_none(), "Escape leaves");
    edit_button().dyn_ref::<web_sys::HtmlElement>().expect("html element").click();
    flush().await;
    input(&root, "[data-id='1'] form.edit input").set_value("mine, better");
    submit(&root);
    flush().await;
    assert_eq!(*edits.borrow(), [(1, "mine, better".to_owned())]);

    handle.update(props(true));
    flush().await;
    assert_eq!(texts(&root, "[data-id='2'] .action"), ["Delete"], "a moderator deletes any");
}

/// A day separator opens each local day; one sender's consecutive messages are grouped (the
/// name shown once, still there for screen readers); every time has the full date as its
/// tooltip.
#[wasm_bindgen_test]
async fn days_are_separated_and_runs_grouped() {
    let root = root();
    let day = 86_400_000;
    let at = |id: u64, from: &str, ts: u64| {
        let Entry::Message(m) = message(id, from, "t") else { unreachable!() };
        Entry::Message(Rc::new(ChatMessage { ts, ..(*m).clone() }))
    };
    // Noon (UTC) on two days, so the local days differ in any time zone.
    let first = 1_796_169_600_000 + day / 2;
    let entries: VecDeque<Entry> = [
        at(1, "ann", first),
        at(2, "ann", first + 60_000),
        at(3, "bob", first + 120_000),
        at(4, "bob", first + day),
    ]
    .into();
    let props = list_props(Rc::new(entries), Vec::new(), Rc::default());
    yew::Renderer::<MessageList>::with_root_and_props(root.clone(), props).render();
    flush().await;

    let days = texts(&root, ".messages .day");
    assert_eq!(days.len(), 2, "{days:?}");
    assert!(days.iter().all(|day| day.contains("2026")), "{days:?}");
    assert_eq!(texts(&root, ".message.grouped .text").len(), 1, "ann's second message");
    assert_eq!(texts(&root, ".message .from"), ["ann", "ann", "bob", "bob"], "names stay readable");
    let title = select(&root, ".message time")
        .and_then(|time| time.get_attribute("title"))
        .unwrap_or_default();
    assert!(title.contains("2026"), "full date on hover: {title:?}");
}

/// The member list shows everyone, marks you, and tells the signed-in from the guests.
#[wasm_bindgen_test]
async fn member_list_marks_you_and_who_is_signed_in() {
    let root = root();
    let props = MemberListProps {
        members: vec!["alice".into(), "bob".into()],
        signed_in: vec!["alice".into()],
        own: Some("bob".into()),
        moderator: false,
        on_moderate: Callback::noop(),
    };
    yew::Renderer::<MemberList>::with_root_and_props(root.clone(), props).render();
    flush().await;

    assert_eq!(select_all(&root, "li").len(), 2);
    assert_eq!(texts(&root, "li.own"), ["bob (you)"]);
    assert_eq!(texts(&root, "li.guest"), ["bob (you)"]);
    assert_eq!(texts(&root, "li:first-child"), ["alice ✓ (signed in)"]);
    assert_eq!(texts(&root, "h2"), ["Members (2)"]);
}

/// A moderator's member list offers Mute, Kick and Ban on every other member (not on
/// themselves), and reports which.
#[wasm_bindgen_test]
async fn member_list_offers_moderation_to_moderators() {
    let root = root();
    let asked = Rc::new(RefCell::new(Vec::new()));
    let props = MemberListProps {
        members: vec!["alice".into(), "bob".into()],
        signed_in: vec![],
        own: Some("bob".into()),
        moderator: true,
        on_moderate: {
            let asked = asked.clone();
            Callback::from(move |choice| asked.borrow_mut().push(choice))
        },
    };
    yew::Renderer::<MemberList>::with_root_and_props(root.clone(), props).render();
    flush().await;
    assert_eq!(texts(&root, "li:first-child .action"), ["Mute", "Kick", "Ban"]);
    assert!(texts(&root, "li.own .action").is_empty(), "not on oneself");
    for button in select_all(&root, "li:first-child .action") {
        button.dyn_ref::<web_sys::HtmlElement>().expect("html element").click();
    }
    flush().await;
    use protocol::Sanction::{Ban, Kick, Mute};
    let alice = || "alice".to_owned();
    assert_eq!(*asked.borrow(), [(alice(), Mute), (alice(), Kick), (alice(), Ban)]);
}

/// The room's settings offer moderators by name to the owner only, and members by name in a
/// private room; each button reports the name typed, then clears it.
#[wasm_bindgen_test]
async fn room_settings_name_moderators_and_members() {
    let asked = Rc::new(RefCell::new(Vec::new()));
    let props = |owner: bool, private: bool| RoomSettingsProps {
        room: "r".into(),
        private,
        invitation: None,
        origin: "https://chat.example".into(),
        on_private: Callback::noop(),
        on_invite: Callback::noop(),
        owner,
        on_grant: {
            let asked = asked.clone();
            Callback::from(move |choice| asked.borrow_mut().push(choice))
        },
        expires: None,
        sanctions: None,
        on_sanctions: Callback::noop(),
        on_lift: Callback::noop(),
    };
    let moderator = root();
    yew::Renderer::<RoomSettings>::with_root_and_props(moderator.clone(), props(false, false))
        .render();
    flush().await;
    assert!(select(&moderator, ".people").is_none(), "a moderator of a public room names nobody");

    let owner = root();
    yew::Renderer::<RoomSettings>::with_root_and_props(owner.clone(), props(true, true)).render();
    flush().await;
    assert_eq!(
        texts(&owner, ".people button"),
        ["Make moderator", "Remove moderator", "Add member", "Remove member"]
    );
    let buttons = select_all(&owner, ".people button");
    let click = |at: usize| {
        buttons[at].dyn_ref::<web_sys::HtmlElement>().expect("html element").click();
    };
    click(0);
    assert!(asked.borrow().is_empty(), "no name typed");
    let name = input(&owner, "#room-person");
    name.set_value(" cy ");
    click(0);
    assert_eq!(name.value(), "", "cleared");
    name.set_value("dee");
    click(3);
    use protocol::Grant::{Member, Moderator};
    assert_eq!(
        *asked.borrow(),
        [("cy".to_owned(), Moderator, false), ("dee".into(), Member, true)]
    );
}

/// The room's bans and mutes are asked for with a button, then listed with a way to lift each.
#[wasm_bindgen_test]
async fn room_settings_list_and_lift_bans() {
    use protocol::Sanction::{Ban, Mute, Unban, Unmute};
    let (asked, lifted) = (Rc::new(RefCell::new(0)), Rc::new(RefCell::new(Vec::new())));
    let props = |sanctions| RoomSettingsProps {
        room: "r".into(),
        private: false,
        invitation: None,
        origin: "https://chat.example".into(),
        on_private: Callback::noop(),
        on_invite: Callback::noop(),
        owner: false,
        on_grant: Callback::noop(),
        expires: None,
        sanctions,
        on_sanctions: {
            let asked = asked.clone();
            Callback::from(move |()| *asked.borrow_mut() += 1)
        },
        on_lift: {
            let lifted = lifted.clone();
            Callback::from(move |choice| lifted.borrow_mut().push(choice))
        },
    };
    let before = root();
    yew::Renderer::<RoomSettings>::with_root_and_props(before.clone(), props(None)).render();
    flush().await;
    let show = select(&before, ".sanctions button").expect("a button");
    assert_eq!(show.text_content().as_deref(), Some("Show bans and mutes"));
    show.dyn_ref::<web_sys::HtmlElement>().expect("html element").click();
    assert_eq!(*asked.borrow(), 1);

    let shown = root();
    let list = vec![
        protocol::SanctionInfo { nick: "gus".into(), action: Ban, until: 0 },
        protocol::SanctionInfo { nick: "tr".into(), action: Mute, until: 0 },
    ];
    yew::Renderer::<RoomSettings>::with_root_and_props(shown.clone(), props(Some(list))).render();
    flush().await;
    assert_eq!(texts(&shown, ".sanctions li button"), ["Unban", "Unmute"]);
    for button in select_all(&shown, ".sanctions li button") {
        button.dyn_ref::<web_sys::HtmlElement>().expect("html element").click();
    }
    assert_eq!(*lifted.borrow(), [("gus".to_owned(), Unban), ("tr".into(), Unmute)]);
    let empty = root();
    yew::Renderer::<RoomSettings>::with_root_and_props(empty.clone(), props(Some(vec![]))).render();
    flush().await;
    assert_eq!(texts(&empty, ".sanctions .hint"), ["Nobody is muted or banned here."]);
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
        (ConnectionState::Closed, "closed", "Disconnected"),
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
/// instead of being sent; Escape clears without sending; edits are reported.
#[wasm_bindgen_test]
async fn composer_sends_on_enter() {
    let root = root();
    let sent = Rc::new(RefCell::new(Vec::<String>::new()));
    let refused = Rc::new(RefCell::new(Vec::<String>::new()));
    let typed = Rc::new(RefCell::new(0));
    let props = ComposerProps {
        on_send: {
            let sent = sent.clone();
            Callback::from(move |t| sent.borrow_mut().push(t))
        },
        on_invalid: {
            let refused = refused.clone();
            Callback::from(move |m| refused.borrow_mut().push(m))
        },
        on_typing: {
            let typed = typed.clone();
            Callback::from(move |()| *typed.borrow_mut() += 1)
        },
        error: Some("Too fast.".into()),
        disabled: false,
    };
    yew::Renderer::<Composer>::with_root_and_props(root.clone(), props).render();
    flush().await;

    let field = input(&root, "#composer-input");
    field.set_value("hello there");
    let edit = web_sys::InputEvent::new("input").expect("input event");
    field.dispatch_event(&edit).expect("dispatched");
    assert_eq!(*typed.borrow(), 1, "edits are reported for the typing indicator");
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

/// http(s) links become links that open safely in a new tab; other schemes stay text.
#[wasm_bindgen_test]
async fn links_are_clickable_and_safe() {
    let root = root();
    let text = "see https://example.org/a?b=1 and javascript://alert(1) or www.x.org";
    let entries: VecDeque<Entry> = [message(1, "alice", text)].into();
    let props = list_props(Rc::new(entries), Vec::new(), Rc::default());
    yew::Renderer::<MessageList>::with_root_and_props(root.clone(), props).render();
    flush().await;

    let links = select_all(&root, ".message .text a");
    assert_eq!(links.len(), 1, "only the https link is clickable");
    let link = &links[0];
    assert_eq!(link.get_attribute("href").as_deref(), Some("https://example.org/a?b=1"));
    assert_eq!(link.get_attribute("rel").as_deref(), Some("noopener noreferrer"));
    assert_eq!(link.get_attribute("target").as_deref(), Some("_blank"));
    assert_eq!(texts(&root, ".message .text"), [text], "the text reads exactly as written");
}

/// The typing line names who is typing and is empty otherwise.
#[wasm_bindgen_test]
async fn typing_indicator_names_typists() {
    let root = root();
    let props = TypingIndicatorProps { typists: vec!["bob".into()] };
    let mut handle =
        yew::Renderer::<TypingIndicator>::with_root_and_props(root.clone(), props).render();
    flush().await;
    assert_eq!(texts(&root, ".typing"), ["bob is typing…"]);
    handle.update(TypingIndicatorProps { typists: vec![] });
    flush().await;
    assert_eq!(texts(&root, ".typing"), [""]);
}

/// A reader at the bottom follows new messages; one who scrolled up stays put and gets a
/// "new messages" button that takes them down.
#[wasm_bindgen_test]
async fn new_messages_button_when_scrolled_up() {
    let root = root();
    root.set_attribute("style", "height: 200px; display: flex; flex-direction: column")
        .expect("style");
    let many = |n: u64| -> Rc<VecDeque<Entry>> {
        Rc::new((1..=n).map(|id| message(id, "alice", &format!("line {id}"))).collect())
    };
    let mut handle = yew::Renderer::<MessageList>::with_root_and_props(
        root.clone(),
        list_props(many(60), Vec::new(), Rc::default()),
    )
    .render();
    flush().await;
    let list = select(&root, "ol.messages").expect("list");
    list.set_attribute("style", "overflow-y: auto; height: 150px").expect("style");
    list.set_scroll_top(list.scroll_height());
    handle.update(list_props(many(61), Vec::new(), Rc::default()));
    flush().await;
    let bottom =
        |list: &web_sys::Element| list.scroll_height() - list.scroll_top() - list.client_height();
    assert!(bottom(&list) <= 48, "followed the new message");
    assert!(select(&root, ".new-messages").is_none());

    list.set_scroll_top(0);
    list.dispatch_event(&web_sys::Event::new("scroll").expect("event")).expect("scroll");
    handle.update(list_props(many(62), Vec::new(), Rc::default()));
    flush().await;
    assert_eq!(list.scroll_top(), 0, "a reader who scrolled up is not moved");
    let button = select(&root, ".new-messages").expect("new messages button");
    button.dyn_ref::<web_sys::HtmlElement>().expect("html element").click();
    flush().await;
    assert!(bottom(&list) <= 48, "the button scrolls to the newest");
    assert!(select(&root, ".new-messages").is_none(), "and goes away");
}

/// 10,000 messages arriving one by one through the reducer into the list: the DOM stays at
/// the reducer's bound and the newest are shown. The time it took is logged (run with
/// `--nocapture` to see it; BENCHMARKS.md has the figure), not asserted.
#[wasm_bindgen_test]
async fn ten_thousand_messages_keep_the_dom_bounded() {
    use frontend::state::{Action, MAX_ENTRIES, State};
    use protocol::ServerMessage;
    use yew::Reducible;

    let root = root();
    let welcome = ServerMessage::Welcome {
        room: "r".into(),
        nick: "me".into(),
        members: Vec::new(),
        signed_in: Vec::new(),
        history: Vec::new(),
        rooms: Vec::new(),
        since: None,
        truncated: false,
        more: false,
        epoch: "e1".into(),
        role: None,
        private: false,
    };
    let mut state = Rc::new(State::new("r".into())).reduce(Action::Server(welcome));
    let mut handle = yew::Renderer::<MessageList>::with_root_and_props(
        root.clone(),
        list_props(state.view().entries.clone(), Vec::new(), Rc::default()),
    )
    .render();
    let started = js_sys::Date::now();
    for id in 1..=10_000 {
        let Entry::Message(chat) = message(id, "alice", &format!("message {id}")) else {
            unreachable!("message() builds messages")
        };
        state = state.reduce(Action::Server(ServerMessage::Message((*chat).clone())));
        handle.update(list_props(state.view().entries.clone(), Vec::new(), Rc::default()));
        if id % 100 == 0 {
            flush().await;
        }
    }
    flush().await;
    let elapsed = js_sys::Date::now() - started;
    console_log!("rendered 10,000 messages in {elapsed:.0} ms");
    assert_eq!(select_all(&root, ".message").len(), MAX_ENTRIES);
    assert_eq!(texts(&root, ".message .text").last().map(String::as_str), Some("message 10000"));
}

/// A message naming the reader with `@` is marked (and says so to screen readers); the top of
/// the list offers older messages by a button, or says it is the beginning of the room.
#[wasm_bindgen_test]
async fn mentions_are_marked_and_older_messages_offered() {
    let root = root();
    let entries: VecDeque<Entry> =
        [message(1, "alice", "hi @Bob"), message(2, "alice", "hi everyone")].into();
    let asked = Rc::new(RefCell::new(0));
    let on_older = {
        let asked = asked.clone();
        Callback::from(move |()| *asked.borrow_mut() += 1)
    };
    let props = MessageListProps {
        nick: Some("bob".into()),
        older: Older::More,
        on_older,
        ..list_props(Rc::new(entries.clone()), Vec::new(), Rc::default())
    };
    let mut handle =
        yew::Renderer::<MessageList>::with_root_and_props(root.clone(), props).render();
    flush().await;
    assert_eq!(texts(&root, ".message.mention .text"), ["hi @Bob"]);
    assert_eq!(texts(&root, ".message.mention .visually-hidden"), ["mentions you:"]);
    let button = select(&root, ".older .load-older").expect("load older button");
    button.dyn_ref::<web_sys::HtmlElement>().expect("html element").click();
    flush().await;
    assert_eq!(*asked.borrow(), 1);
    handle.update(list_props(Rc::new(entries), Vec::new(), Rc::default()));
    flush().await;
    assert_eq!(texts(&root, ".older .beginning"), ["This is the beginning of #r."]);
    assert!(select(&root, ".load-older").is_none());
}

/// Your rooms show their unread counts and mentions (in words for screen readers too), the
/// open one is marked, the last room cannot be left; active rooms you are not in can be
/// joined.
#[wasm_bindgen_test]
async fn room_list_shows_unread_rooms_and_joins() {
    let root = root();
    let events = Rc::new(RefCell::new(Vec::<String>::new()));
    let record = |kind: &'static str| {
        let events = events.clone();
        Callback::from(move |room: String| events.borrow_mut().push(format!("{kind} {room}")))
    };
    let room = |name: &str, unread, mentions| JoinedRoom {
        name: name.into(),
        unread,
        mentions,
        joining: false,
    };
    let props = RoomListProps {
        joined: vec![room("a", 0, 0), room("b", 3, 1)],
        rooms: vec![
            RoomInfo { name: "b".into(), members: 4 },
            RoomInfo { name: "c".into(), members: 2 },
        ],
        current: "a".into(),
        on_open: record("open"),
        on_join: record("join"),
        on_leave: record("leave"),
        on_invalid: Callback::noop(),
    };
    let mut handle = yew::Renderer::<RoomList>::with_root_and_props(root.clone(), props).render();
    flush().await;
    assert_eq!(texts(&root, ".joined .name"), ["#a", "#b"]);
    assert_eq!(texts(&root, "li[data-room=b] .unread"), ["3"]);
    assert_eq!(select_all(&root, ".mention-mark").len(), 1);
    let b = select(&root, "li[data-room=b] .room").expect("b");
    assert_eq!(b.get_attribute("aria-label").as_deref(), Some("#b, 3 unread, 1 mentioning you"));
    let a = select(&root, "li[data-room=a] .room").expect("a");
    assert_eq!(a.get_attribute("aria-current").as_deref(), Some("true"));
    assert_eq!(texts(&root, ".active .room"), ["#c2"], "rooms you are in are not offered");
    let click = |css: &str| {
        let element = select(&root, css).expect(css);
        element.dyn_ref::<web_sys::HtmlElement>().expect("html element").click();
    };
    click("li[data-room=b] .room");
    click(".active .room");
    click("li[data-room=b] .leave");
    flush().await;
    assert_eq!(*events.borrow(), ["open b", "join c", "leave b"]);

    handle.update(RoomListProps {
        joined: vec![room("a", 0, 0)],
        rooms: Vec::new(),
        current: "a".into(),
        on_open: Callback::noop(),
        on_join: Callback::noop(),
        on_leave: Callback::noop(),
        on_invalid: Callback::noop(),
    });
    flush().await;
    let leave = select(&root, "li[data-room=a] .leave").expect("leave");
    assert!(leave.has_attribute("disabled"), "the last room cannot be left");
}
