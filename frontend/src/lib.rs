//! The chat's web client: a Yew app that joins rooms over one WebSocket and chats live.
//!
//! # Layout
//! - [`App`] (this file): the root component; wires state, connection and components.
//! - [`state`]: `State` and `Action`, the reducer; the only place state changes.
//! - [`connection`]: the socket, reconnection with backoff, rejoining where it left off.
//! - [`outbox`]: sent messages awaiting their acknowledgement, kept across reloads.
//! - [`backoff`]: reconnection delays (`protocol::backoff`, shared with the load generator).
//! - [`page`]: the address bar and this tab's token.
//! - [`typing`]: when to announce typing, and how to show it.
//! - [`components`]: one component per file, rendering props and raising callbacks.

pub mod account;
pub use protocol::backoff;
pub mod components;
pub mod connection;
pub mod outbox;
pub mod page;
pub mod state;
pub mod timeline;
pub mod typing;

use gloo_timers::callback::Interval;
use protocol::ClientMessage;
use yew::prelude::*;

use crate::components::room_list::JoinedRoom;
use crate::components::{
    Composer, ConnectionBadge, JoinForm, MemberList, MessageList, RoomList, RoomSettings, Settings,
    SignInRequest, TypingIndicator,
};
use crate::connection::{Connection, Target};
use crate::outbox::Outgoing;
use crate::state::{Action, ConnectionState, Older, State};

/// How often the room list is refreshed while online.
pub const ROOM_LIST_REFRESH_MS: u32 = 10_000;
/// How often expired typing indications are cleared while some are showing.
const TYPING_TICK_MS: u32 = 500;

#[derive(Properties, PartialEq, Default)]
pub struct AppProps {
    /// The WebSocket origin to use; defaults to the server that served the page.
    #[prop_or_default]
    pub ws_base: Option<String>,
}

#[function_component(App)]
pub fn app(props: &AppProps) -> Html {
    let requested = use_memo((), |_| page::requested());
    // `--auth token`: the token the operator's site gave this page, if any.
    let auth_token = use_memo((), |_| page::auth_token());
    let state = use_reducer(|| {
        let room = requested.room_or_default();
        State::with_rooms(room, &page::stored_rooms())
    });
    let connection = use_state(|| None::<Connection>);
    // The drawer of rooms and members, on narrow screens.
    let drawer = use_state(|| false);
    // The account this browser is signed in to (its session cookie), asked once.
    let account = use_state(|| None::<String>);
    // Whether guests may chat here (the join form offers "Join as guest" only then).
    let guests = use_state(|| true);
    {
        let (account, guests) = (account.clone(), guests.clone());
        use_effect_with((), move |_| {
            wasm_bindgen_futures::spawn_local(async move {
                let current = account::current().await;
                guests.set(current.guests);
                if let Some(nick) = current.nick {
                    account.set(Some(nick));
                }
            });
        });
    }

    // Joins as `(nick, room)`; with `fresh`, on a new socket (one opened after a sign-in
    // carries the session cookie, an older one does not).
    let connect = {
        let (state, connection) = (state.clone(), connection.clone());
        let ws_base = props.ws_base.clone();
        let auth_token = auth_token.clone();
        let invite = requested.invite.clone();
        Callback::from(move |(nick, room, fresh): (String, String, bool)| {
            state.dispatch(Action::Connect { room: room.clone() });
            // A socket the server closed for good cannot carry a join: open another.
            let ended = matches!(state.connection, ConnectionState::Closed);
            if let Some(open) = connection.as_ref().filter(|_| !fresh && !ended) {
                // Connected but refused (e.g. nick taken): try again on the same socket.
                let join = ClientMessage::Join {
                    room,
                    nick: Some(nick),
                    since: None,
                    add: false,
                    epoch: None,
                };
                open.send(join);
                return;
            }
            // The room asked for first (the connect URL's), then the others the page was in.
            let rooms = std::iter::once(room).chain(state.room_names());
            let target = Target::new(rooms, nick, page::client_token())
                .with_auth((*auth_token).clone())
                .with_invite(invite.clone());
            let base = ws_base.clone().unwrap_or_else(page::ws_base);
            connection.set(Some(Connection::open(base, target, state.dispatcher().to_callback())));
        })
    };
    let join = connect.reform(|(nick, room): (String, String)| (nick, room, false));
    let sign_in = {
        let (account, state) = (account.clone(), state.clone());
        Callback::from(move |request: SignInRequest| {
            let (account, state, connect) = (account.clone(), state.clone(), connect.clone());
            state.dispatch(Action::DismissError);
            wasm_bindgen_futures::spawn_local(async move {
                let SignInRequest { kind, nick, password, room } = request;
                match account::sign_in(kind, &nick, &password).await {
                    Ok(nick) => {
                        account.set(Some(nick.clone()));
                        connect.emit((nick, room, true));
                    }
                    Err(words) => state.dispatch(Action::LocalError(words)),
                }
            });
        })
    };
    let log_out = {
        let state = state.clone();
        Callback::from(move |()| {
            let state = state.clone();
            wasm_bindgen_futures::spawn_local(async move {
                match account::log_out().await {
                    Ok(()) => page::reload_at(&state.room),
                    Err(words) => state.dispatch(Action::LocalError(words)),
                }
            });
        })
    };

    // A shared link (`?room=R&nick=N`) joins at once, as does a page given a sign-in token
    // (the server names its holder, whatever nick is asked for).
    {
        let (join, requested) = (join.clone(), requested.clone());
        let signed = auth_token.is_some();
        use_effect_with((), move |_| {
            let nick = requested.nick.clone().or_else(|| signed.then(|| "member".to_owned()));
            if let Some(nick) = nick {
                join.emit((nick, requested.room_or_default()));
            }
        });
    }
    // Keep the address bar pointing at where we are, so it can be shared or reloaded, and
    // the rooms stored, so a reload brings them back.
    {
        let at = state.nick.clone().map(|nick| (state.room.clone(), nick, state.room_names()));
        use_effect_with(at, |at| {
            if let Some((room, nick, rooms)) = at {
                page::show_in_address_bar(room, nick);
                page::store_rooms(rooms);
            }
        });
    }
    // The title says what is unread (a hidden tab shows it in its tab).
    {
        let (unread, mentions) = state.unread();
        use_effect_with((state.room.clone(), unread, mentions), |(room, unread, mentions)| {
            page::set_title(&page::title(room, *unread, *mentions));
        });
    }
    // Hidden or shown: messages in the open room count as unread while hidden.
    {
        let dispatcher = state.dispatcher();
        use_effect_with((), move |_| {
            dispatcher.dispatch(Action::Visibility { hidden: page::is_hidden() });
            let listening = page::on_visibility(move |hidden| {
                dispatcher.dispatch(Action::Visibility { hidden });
            });
            move || drop(listening)
        });
    }
    // A mention while its room is not in view: a desktop notification, if they are on.
    {
        let mention = state.last_mention.clone();
        use_effect_with(mention.as_ref().map(|m| m.id), move |_| {
            if let Some(message) = mention {
                let title = format!("{} mentioned you in #{}", message.from, message.room);
                page::notify(&title, &message.text);
            }
        });
    }
    // The stored outbox follows the state's (`State::outbox`): what the reducer adds is
    // written, what it settles (acknowledged, refused for good) is removed, and other tabs'
    // entries stay. Something new to send is flushed once it is stored.
    {
        let synced = use_mut_ref(Vec::<Outgoing>::new);
        let connection = connection.clone();
        let posted = state.posted.clone();
        use_effect_with(state.outbox(), move |outbox| {
            let ours = |item: &Outgoing| posted.contains(&item.client_id);
            let added = outbox::sync(&synced.borrow(), outbox, ours);
            synced.borrow_mut().clone_from(outbox);
            if added && let Some(connection) = connection.as_ref() {
                connection.flush();
            }
        });
    }
    // Refresh the room list while online.
    {
        let online = state.connection == ConnectionState::Online;
        use_effect_with((connection.clone(), online), |(connection, online)| {
            let refresh = match (connection.as_ref(), online) {
                (Some(connection), true) => {
                    let connection = connection.clone();
                    Some(Interval::new(ROOM_LIST_REFRESH_MS, move || {
                        connection.send(ClientMessage::ListRooms);
                    }))
                }
                _ => None,
            };
            move || drop(refresh)
        });
    }

    // Let typing indications expire while there are any.
    {
        let typing = state.joined.iter().any(|view| !view.typing.is_empty());
        let dispatcher = state.dispatcher();
        use_effect_with(typing, move |typing| {
            let tick = typing.then(|| {
                Interval::new(TYPING_TICK_MS, move || {
                    dispatcher.dispatch(Action::Tick { now: state::now() });
                })
            });
            move || drop(tick)
        });
    }
    let throttle = use_mut_ref(typing::Throttle::default);
    // The first message on screen, for load-time measurements (BENCHMARKS.md).
    {
        let shown = state.is_joined()
            && state.view().entries.iter().any(|entry| matches!(entry, state::Entry::Message(_)));
        let marked = use_mut_ref(|| false);
        use_effect_with(shown, move |shown| {
            if *shown && !std::mem::replace(&mut *marked.borrow_mut(), true) {
                page::mark("chat:first-message");
            }
        });
    }

    if state.nick.is_none() {
        return html! {
            <>
                <JoinForm nick={state.former_nick.clone().or_else(|| requested.nick.clone()).unwrap_or_default()}
                    room={state.room.clone()} account={(*account).clone()} guests={*guests}
                    error={state.error.clone()} on_join={join} on_sign_in={sign_in} on_log_out={log_out} />
                if state.connection != ConnectionState::Idle {
                    <p class="join-status"><ConnectionBadge state={state.connection} /></p>
                }
            </>
        };
    }
    let view = state.view().clone();
    let nick = view.nick.clone().or_else(|| state.nick.clone()).unwrap_or_default();

    let send = {
        let connection = connection.clone();
        Callback::from(move |message: ClientMessage| {
            if let Some(connection) = connection.as_ref() {
                connection.send(message);
            }
        })
    };
    let on_send = {
        let (connection, state, throttle) = (connection.clone(), state.clone(), throttle.clone());
        let nick = nick.clone();
        Callback::from(move |text: String| {
            if connection.is_none() {
                return;
            }
            // The cap counts every tab's messages, as they are stored.
            if outbox::Outbox::load().items().len() >= outbox::MAX_ITEMS {
                state.dispatch(Action::LocalError(format!(
                    "{} messages are still waiting to be sent; wait until they are.",
                    outbox::MAX_ITEMS
                )));
                return;
            }
            state.dispatch(Action::DismissError);
            throttle.borrow_mut().reset();
            let item = Outgoing {
                client_id: outbox::new_client_id(),
                room: state.room.clone(),
                nick: nick.clone(),
                text,
                ts: state::now(),
                amends: None,
                delete: false,
            };
            state.dispatch(Action::Post(item));
        })
    };
    let on_typing = {
        let send = send.clone();
        let room = state.room.clone();
        Callback::from(move |()| {
            if throttle.borrow_mut().should_send(state::now()) {
                send.emit(ClientMessage::Typing { room: Some(room.clone()) });
            }
        })
    };
    let on_open = {
        let (state, drawer) = (state.clone(), drawer.clone());
        Callback::from(move |room: String| {
            state.dispatch(Action::Open { room });
            drawer.set(false);
        })
    };
    let on_join = {
        let (state, send, drawer) = (state.clone(), send.clone(), drawer.clone());
        Callback::from(move |room: String| {
            drawer.set(false);
            if state.view_of(&room).is_some() {
                return state.dispatch(Action::Open { room });
            }
            if state.joined.len() >= page::MAX_STORED_ROOMS {
                let message = format!(
                    "You are in {} rooms, as many as one page may be; leave one first.",
                    page::MAX_STORED_ROOMS
                );
                return state.dispatch(Action::LocalError(message));
            }
            state.dispatch(Action::JoinRoom { room: room.clone() });
            send.emit(ClientMessage::Join {
                room,
                nick: None,
                since: None,
                add: true,
                epoch: None,
            });
        })
    };
    let on_leave = {
        let (state, send) = (state.clone(), send.clone());
        Callback::from(move |room: String| {
            if state.joined.len() > 1 {
                state.dispatch(Action::LeaveRoom { room: room.clone() });
                send.emit(ClientMessage::Leave { room });
            }
        })
    };
    let on_older = {
        let (state, send) = (state.clone(), send.clone());
        let (room, first) = (view.name.clone(), view.first_message_id());
        Callback::from(move |()| {
            if state.view_of(&room).is_some_and(|view| view.older == Older::More) {
                state.dispatch(Action::LoadingOlder { room: room.clone() });
                // Before the oldest shown, or (nothing shown: the welcome had no room for a
                // message) the newest.
                let (before, limit) = (first, Some(OLDER_PAGE));
                send.emit(ClientMessage::History {
                    room: room.clone(),
                    before,
                    after: None,
                    limit,
                });
            }
        })
    };
    // Edit: the new text asked for in the browser's own dialog (keyboard and touch alike);
    // delete: confirmed first.
    // Edits and deletions wait in the outbox like messages (a client id each), so a dropped
    // connection sends them again and the server applies each once.
    let amend = {
        let (state, nick, room) = (state.clone(), nick.clone(), view.name.clone());
        Callback::from(move |(id, text, delete): (protocol::MessageId, String, bool)| {
            state.dispatch(Action::Post(Outgoing {
                client_id: outbox::new_client_id(),
                room: room.clone(),
                nick: nick.clone(),
                text,
                ts: state::now(),
                amends: Some(id),
                delete,
            }));
        })
    };
    let on_edit = amend.reform(|(id, text): (protocol::MessageId, String)| (id, text, false));
    let on_delete = Callback::from(move |id: protocol::MessageId| {
        let Some(window) = web_sys::window() else { return };
        let sure = "Delete this message? Everyone in the room will see it removed.";
        if window.confirm_with_message(sure).unwrap_or(false) {
            amend.emit((id, String::new(), true));
        }
    });
    // Mute for an hour; kick, or ban for a day, once confirmed.
    let on_moderate = {
        let (send, room) = (send.clone(), view.name.clone());
        Callback::from(move |(nick, action): (String, protocol::Sanction)| {
            use protocol::Sanction;
            let Some(window) = web_sys::window() else { return };
            let question = match action {
                Sanction::Mute | Sanction::Unmute | Sanction::Unban => None,
                Sanction::Kick => Some(format!("Remove {nick} from #{room}? They may come back.")),
                Sanction::Ban => Some(format!("Ban {nick} from #{room} for a day?")),
            };
            if question.is_some_and(|q| !window.confirm_with_message(&q).unwrap_or(false)) {
                return;
            }
            let minutes = (action == Sanction::Mute).then_some(60);
            send.emit(ClientMessage::Moderate { room: room.clone(), nick, action, minutes });
        })
    };
    // Either way the room's privacy changes for everyone in it, confirmed first.
    let on_private = {
        let (send, room) = (send.clone(), view.name.clone());
        Callback::from(move |private: bool| {
            let Some(window) = web_sys::window() else { return };
            let question = if private {
                format!(
                    "Make #{room} private? Guests here now are removed, and only members and \
                     invited people may join."
                )
            } else {
                format!(
                    "Make #{room} public? Anyone may join and read it, and its member list and \
                     invitation links are forgotten."
                )
            };
            if window.confirm_with_message(&question).unwrap_or(false) {
                send.emit(ClientMessage::Configure { room: room.clone(), private });
            }
        })
    };
    // A new link at once; revoking every link, confirmed first.
    let on_invite = {
        let (send, room) = (send.clone(), view.name.clone());
        Callback::from(move |revoke: bool| {
            let Some(window) = web_sys::window() else { return };
            let question = format!(
                "Revoke every invitation link to #{room}? Links not used yet stop working; \
                 members stay members."
            );
            if revoke && !window.confirm_with_message(&question).unwrap_or(false) {
                return;
            }
            // A week, for anyone who has the link.
            send.emit(ClientMessage::Invite { room: room.clone(), revoke, days: None, uses: None });
        })
    };
    let on_sanctions = {
        let (send, room) = (send.clone(), view.name.clone());
        Callback::from(move |()| send.emit(ClientMessage::Sanctions { room: room.clone() }))
    };
    let on_lift = {
        let (send, room) = (send.clone(), view.name.clone());
        Callback::from(move |(nick, action): (String, protocol::Sanction)| {
            send.emit(ClientMessage::Moderate { room: room.clone(), nick, action, minutes: None });
        })
    };
    // Taking a place away is confirmed first.
    let on_grant = {
        let (send, room) = (send.clone(), view.name.clone());
        Callback::from(move |(nick, grant, revoke): (String, protocol::Grant, bool)| {
            let Some(window) = web_sys::window() else { return };
            if revoke {
                let question = match grant {
                    protocol::Grant::Moderator => format!("Stop {nick} moderating #{room}?"),
                    protocol::Grant::Member => {
                        format!("Remove {nick} from the members of #{room}? They leave it now.")
                    }
                };
                if !window.confirm_with_message(&question).unwrap_or(false) {
                    return;
                }
            }
            send.emit(ClientMessage::Grant { room: room.clone(), nick, grant, revoke });
        })
    };
    let origin = web_sys::window().and_then(|w| w.location().origin().ok()).unwrap_or_default();
    let on_invalid = state.dispatcher().to_callback().reform(Action::LocalError);
    let toggle_drawer = {
        let drawer = drawer.clone();
        Callback::from(move |_: MouseEvent| drawer.set(!*drawer))
    };
    // Escape closes the drawer, as it closes any panel.
    let onkeydown = {
        let drawer = drawer.clone();
        Callback::from(move |event: KeyboardEvent| {
            if *drawer && event.key() == "Escape" {
                drawer.set(false);
            }
        })
    };
    let usable = !matches!(state.connection, ConnectionState::Replaced | ConnectionState::Closed);
    let joined: Vec<JoinedRoom> = state
        .joined
        .iter()
        .map(|view| JoinedRoom {
            name: view.name.clone(),
            unread: view.unread,
            mentions: view.mentions,
            joining: !view.is_joined(),
        })
        .collect();
    let (unread, mentions) = state.unread();
    let unread_elsewhere = unread.saturating_sub(view.unread);

    html! {
        <div class={classes!("chat", drawer.then_some("drawer-open"))} {onkeydown}>
            <header class="topbar">
                <button type="button" class="drawer-toggle" onclick={toggle_drawer}
                    aria-expanded={drawer.to_string()} aria-controls="sidebar">
                    { "Rooms" }
                    if unread_elsewhere > 0 {
                        <span class="unread" aria-label={format!("{unread_elsewhere} unread elsewhere")}>
                            { if mentions > 0 { format!("{unread_elsewhere} @") } else { unread_elsewhere.to_string() } }
                        </span>
                    }
                </button>
                <h1>
                    { format!("#{}", state.room) }
                    if view.private {
                        <span class="private" title="Only members may join">{ " · private" }</span>
                    }
                </h1>
                <span class="whoami">
                    { format!("you are {nick}") }
                    if view.signed_in.contains(&nick) {
                        <span class="signed-in" title="Signed in to this registered name">
                            <span aria-hidden="true">{ " ✓" }</span>
                            <span class="visually-hidden">{ " (signed in)" }</span>
                        </span>
                    }
                    // Signed in with this server's session cookie (not a site's token).
                    if account.as_deref() == Some(nick.as_str()) {
                        <button type="button" class="secondary log-out" onclick={log_out.reform(|_: MouseEvent| ())}>
                            { "Log out" }
                        </button>
                    }
                </span>
                <ConnectionBadge state={state.connection} />
            </header>
            <aside class="sidebar" id="sidebar">
                <RoomList {joined} rooms={state.rooms.clone()} current={state.room.clone()}
                    {on_open} {on_join} {on_leave} on_invalid={on_invalid.clone()} />
                <MemberList members={view.members.clone()} signed_in={view.signed_in.clone()}
                    own={Some(nick.clone())} moderator={view.role.is_some()} {on_moderate} />
                // Accounts' roles: a room's owner and moderators configure it.
                if view.role.is_some() && account.is_some() {
                    <RoomSettings room={view.name.clone()} private={view.private}
                        invitation={view.invitation.clone()} {origin} {on_private} {on_invite}
                        owner={view.role == Some(protocol::Role::Owner)} {on_grant}
                        expires={view.invitation_expires} sanctions={view.sanctions.clone()}
                        {on_sanctions} {on_lift} />
                }
                <Settings />
            </aside>
            <main class="conversation">
                <MessageList entries={view.entries.clone()} pending={state.pending_here()}
                    own={state.own.clone()} room={view.name.clone()} nick={view.nick.clone()}
                    older={view.older} {on_older} signed_in={view.signed_in.contains(&nick)}
                    moderator={view.role.is_some()} {on_edit} {on_delete} />
                <TypingIndicator typists={view.typists()} />
                <Composer {on_send} {on_invalid} {on_typing} error={state.error.clone()}
                    disabled={!usable} />
            </main>
        </div>
    }
}

/// Older messages asked for at once when scrolling back.
pub const OLDER_PAGE: u32 = 50;
