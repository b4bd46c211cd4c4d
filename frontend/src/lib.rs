//! The chat's web client: a Yew app that joins a room over a WebSocket and chats live.
//!
//! # Layout
//! - [`App`] (this file): the root component; wires state, connection and components.
//! - [`state`]: `State` and `Action`, the reducer; the only place state changes.
//! - [`connection`]: the socket, reconnection with backoff, rejoining where it left off.
//! - [`outbox`]: sent messages awaiting their acknowledgement, kept across reloads.
//! - [`backoff`]: reconnection delays.
//! - [`page`]: the address bar and this tab's token.
//! - [`typing`]: when to announce typing, and how to show it.
//! - [`components`]: one component per file, rendering props and raising callbacks.

pub mod backoff;
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

use crate::components::{
    Composer, ConnectionBadge, JoinForm, MemberList, MessageList, RoomList, TypingIndicator,
};
use crate::connection::{Connection, Target};
use crate::outbox::Outgoing;
use crate::state::{Action, ConnectionState, State};

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
    let state = use_reducer(|| State::new(requested.room_or_default()));
    let connection = use_state(|| None::<Connection>);

    let join = {
        let (state, connection) = (state.clone(), connection.clone());
        let ws_base = props.ws_base.clone();
        Callback::from(move |(nick, room): (String, String)| {
            state.dispatch(Action::Connect { room: room.clone() });
            if let Some(open) = connection.as_ref() {
                // Connected but refused (e.g. nick taken): try again on the same socket.
                open.send(ClientMessage::Join { room, nick: Some(nick), since: None, add: false });
                return;
            }
            let target = Target { room, nick, client: page::client_token(), since: None };
            let base = ws_base.clone().unwrap_or_else(page::ws_base);
            connection.set(Some(Connection::open(base, target, state.dispatcher().to_callback())));
        })
    };

    // A shared link (`?room=R&nick=N`) joins at once.
    {
        let (join, requested) = (join.clone(), requested.clone());
        use_effect_with((), move |_| {
            if let Some(nick) = requested.nick.clone() {
                join.emit((nick, requested.room_or_default()));
            }
        });
    }
    // Keep the address bar pointing at where we are, so it can be shared or reloaded.
    {
        let at = state.nick.clone().map(|nick| (state.room.clone(), nick));
        use_effect_with(at, |at| {
            if let Some((room, nick)) = at {
                page::show_in_address_bar(room, nick);
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
        let typing = !state.typing.is_empty();
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

    let Some(nick) = state.nick.clone() else {
        return html! {
            <>
                <JoinForm nick={state.former_nick.clone().or_else(|| requested.nick.clone()).unwrap_or_default()}
                    room={state.room.clone()}
                    error={state.error.clone()} on_join={join} />
                if state.connection != ConnectionState::Idle {
                    <p class="join-status"><ConnectionBadge state={state.connection} /></p>
                }
            </>
        };
    };

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
            };
            state.dispatch(Action::Post(item));
        })
    };
    let on_typing = {
        let send = send.clone();
        Callback::from(move |()| {
            if throttle.borrow_mut().should_send(state::now()) {
                send.emit(ClientMessage::Typing { room: None });
            }
        })
    };
    let on_switch = {
        let state = state.clone();
        Callback::from(move |room: String| {
            state.dispatch(Action::SwitchRoom { room: room.clone() });
            send.emit(ClientMessage::Join { room, nick: None, since: None, add: false });
        })
    };
    let on_invalid = state.dispatcher().to_callback().reform(Action::LocalError);
    let usable = !matches!(state.connection, ConnectionState::Replaced | ConnectionState::Closed);

    html! {
        <div class="chat">
            <header class="topbar">
                <h1>{ format!("#{}", state.room) }</h1>
                <span class="whoami">{ format!("you are {nick}") }</span>
                <ConnectionBadge state={state.connection} />
            </header>
            <aside class="sidebar">
                <RoomList rooms={state.rooms.clone()} current={state.room.clone()}
                    on_switch={on_switch} on_invalid={on_invalid.clone()} />
                <MemberList members={state.members.clone()} own={Some(nick.clone())} />
            </aside>
            <main class="conversation">
                <MessageList entries={state.entries.clone()} pending={state.pending_here()}
                    own={state.own.clone()} />
                <TypingIndicator typists={state.typists()} />
                <Composer {on_send} {on_invalid} {on_typing} error={state.error.clone()}
                    disabled={!usable} />
            </main>
        </div>
    }
}
