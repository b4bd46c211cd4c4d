//! The active rooms, with the current one marked, and a field to go to any room by name.

use protocol::RoomInfo;
use protocol::rules;
use web_sys::HtmlInputElement;
use yew::prelude::*;

#[derive(Properties, PartialEq)]
pub struct RoomListProps {
    pub rooms: Vec<RoomInfo>,
    pub current: String,
    /// Called with a room name that passed the naming rules.
    pub on_switch: Callback<String>,
    pub on_invalid: Callback<String>,
}

#[function_component(RoomList)]
pub fn room_list(props: &RoomListProps) -> Html {
    let input_ref = use_node_ref();
    let onsubmit = {
        let input_ref = input_ref.clone();
        let (on_switch, on_invalid) = (props.on_switch.clone(), props.on_invalid.clone());
        Callback::from(move |event: SubmitEvent| {
            event.prevent_default();
            let Some(input) = input_ref.cast::<HtmlInputElement>() else { return };
            match rules::check_room(&input.value(), rules::MAX_ROOM_CHARS) {
                Ok(room) => {
                    input.set_value("");
                    on_switch.emit(room);
                }
                Err(error) => on_invalid.emit(error.message),
            }
        })
    };
    html! {
        <nav class="rooms" aria-labelledby="rooms-title">
            <h2 id="rooms-title">{ "Rooms" }</h2>
            <ul>
                { for props.rooms.iter().map(|room| {
                    let current = room.name == props.current;
                    let onclick = {
                        let (name, on_switch) = (room.name.clone(), props.on_switch.clone());
                        Callback::from(move |_: MouseEvent| on_switch.emit(name.clone()))
                    };
                    html! {
                        <li key={room.name.clone()}>
                            <button type="button" class={classes!("room", current.then_some("current"))}
                                aria-current={current.then_some("true")} disabled={current} {onclick}>
                                { format!("#{}", room.name) }
                                <span class="count">{ room.members }</span>
                            </button>
                        </li>
                    }
                }) }
            </ul>
            <form class="room-form" {onsubmit}>
                <label for="room-input">{ "Go to room" }</label>
                <input id="room-input" ref={input_ref} placeholder="room-name"
                    maxlength={rules::MAX_ROOM_CHARS.to_string()} />
            </form>
        </nav>
    }
}
