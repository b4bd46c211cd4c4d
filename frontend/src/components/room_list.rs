//! The rooms: the ones you are in (the open one marked, each with its unread count, a mark
//! when you were mentioned, and a button to leave), the active rooms to join, and a field to
//! join any room by name.

use protocol::RoomInfo;
use protocol::rules;
use web_sys::HtmlInputElement;
use yew::prelude::*;

/// A room you are in, as the list shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedRoom {
    pub name: String,
    pub unread: u32,
    pub mentions: u32,
    /// Still being joined (no welcome yet).
    pub joining: bool,
}

#[derive(Properties, PartialEq)]
pub struct RoomListProps {
    pub joined: Vec<JoinedRoom>,
    /// The active rooms (from the server); the ones you are in are left out of that list.
    pub rooms: Vec<RoomInfo>,
    pub current: String,
    /// Show one of your rooms.
    pub on_open: Callback<String>,
    /// Join a room (a name that passed the naming rules).
    pub on_join: Callback<String>,
    pub on_leave: Callback<String>,
    pub on_invalid: Callback<String>,
}

#[function_component(RoomList)]
pub fn room_list(props: &RoomListProps) -> Html {
    let input_ref = use_node_ref();
    let onsubmit = {
        let input_ref = input_ref.clone();
        let (on_join, on_invalid) = (props.on_join.clone(), props.on_invalid.clone());
        Callback::from(move |event: SubmitEvent| {
            event.prevent_default();
            let Some(input) = input_ref.cast::<HtmlInputElement>() else { return };
            match rules::check_room(&input.value(), rules::MAX_ROOM_CHARS) {
                Ok(room) => {
                    input.set_value("");
                    on_join.emit(room);
                }
                Err(error) => on_invalid.emit(error.message),
            }
        })
    };
    let last = props.joined.len() <= 1;
    let others: Vec<&RoomInfo> = props
        .rooms
        .iter()
        .filter(|room| !props.joined.iter().any(|joined| joined.name == room.name))
        .collect();
    html! {
        <nav class="rooms" aria-labelledby="rooms-title">
            <h2 id="rooms-title">{ "Your rooms" }</h2>
            <ul class="joined">
                { for props.joined.iter().map(|room| joined_row(room, &props.current, last, props)) }
            </ul>
            if !others.is_empty() {
                <h2 id="active-title">{ "Active rooms" }</h2>
                <ul class="active" aria-labelledby="active-title">
                    { for others.into_iter().map(|room| {
                        let onclick = {
                            let (name, on_join) = (room.name.clone(), props.on_join.clone());
                            Callback::from(move |_: MouseEvent| on_join.emit(name.clone()))
                        };
                        let label = format!("Join #{} ({} here)", room.name, room.members);
                        html! {
                            <li key={room.name.clone()}>
                                <button type="button" class="room" aria-label={label} {onclick}>
                                    { format!("#{}", room.name) }
                                    <span class="count">{ room.members }</span>
                                </button>
                            </li>
                        }
                    }) }
                </ul>
            }
            <form class="room-form" {onsubmit}>
                <label for="room-input">{ "Join a room" }</label>
                <input id="room-input" ref={input_ref} placeholder="room-name"
                    maxlength={rules::MAX_ROOM_CHARS.to_string()} />
            </form>
        </nav>
    }
}

/// One of your rooms: open it with its button, leave it with the other (not the last room).
fn joined_row(room: &JoinedRoom, current: &str, last: bool, props: &RoomListProps) -> Html {
    let open = room.name == current;
    let onclick = {
        let (name, on_open) = (room.name.clone(), props.on_open.clone());
        Callback::from(move |_: MouseEvent| on_open.emit(name.clone()))
    };
    let leave = {
        let (name, on_leave) = (room.name.clone(), props.on_leave.clone());
        Callback::from(move |_: MouseEvent| on_leave.emit(name.clone()))
    };
    // What a screen reader says for the room: its name, then what is new.
    let mut label = format!("#{}", room.name);
    if room.unread > 0 {
        label.push_str(&format!(", {} unread", room.unread));
    }
    if room.mentions > 0 {
        label.push_str(&format!(", {} mentioning you", room.mentions));
    }
    if room.joining {
        label.push_str(", joining");
    }
    let classes = classes!(
        "room",
        open.then_some("current"),
        (room.unread > 0).then_some("has-unread"),
        room.joining.then_some("joining")
    );
    html! {
        <li key={room.name.clone()} data-room={room.name.clone()}>
            <button type="button" class={classes} aria-current={open.then_some("true")}
                aria-label={label} {onclick}>
                <span class="name">{ format!("#{}", room.name) }</span>
                if room.mentions > 0 {
                    <span class="mention-mark" aria-hidden="true">{ "@" }</span>
                }
                if room.unread > 0 {
                    <span class="unread" aria-hidden="true">{ room.unread }</span>
                }
            </button>
            <button type="button" class="leave" aria-label={format!("Leave #{}", room.name)}
                title={if last { "You are in no other room" } else { "Leave this room" }}
                disabled={last} onclick={leave}>{ "×" }</button>
        </li>
    }
}
