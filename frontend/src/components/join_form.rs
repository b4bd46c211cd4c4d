//! The first screen: choose a nickname and a room.

use protocol::rules;
use web_sys::HtmlInputElement;
use yew::prelude::*;

#[derive(Properties, PartialEq)]
pub struct JoinFormProps {
    pub nick: String,
    pub room: String,
    /// A problem to show (from the server or from checking the fields).
    #[prop_or_default]
    pub error: Option<String>,
    /// Called with `(nick, room)`, both already checked against the naming rules.
    pub on_join: Callback<(String, String)>,
}

#[function_component(JoinForm)]
pub fn join_form(props: &JoinFormProps) -> Html {
    let nick_ref = use_node_ref();
    let room_ref = use_node_ref();
    let local_error = use_state(|| None::<String>);

    let onsubmit = {
        let (nick_ref, room_ref) = (nick_ref.clone(), room_ref.clone());
        let local_error = local_error.clone();
        let on_join = props.on_join.clone();
        Callback::from(move |event: SubmitEvent| {
            event.prevent_default();
            let value = |node: &NodeRef| {
                node.cast::<HtmlInputElement>().map(|input| input.value()).unwrap_or_default()
            };
            let checked =
                rules::check_nick(&value(&nick_ref), rules::MAX_NICK_CHARS).and_then(|nick| {
                    Ok((nick, rules::check_room(&value(&room_ref), rules::MAX_ROOM_CHARS)?))
                });
            match checked {
                Ok(choice) => {
                    local_error.set(None);
                    on_join.emit(choice);
                }
                Err(error) => local_error.set(Some(error.message)),
            }
        })
    };
    let error = (*local_error).clone().or_else(|| props.error.clone());
    // The cursor starts in the nickname field. `autofocus` alone is applied only at the
    // browser's next rendering step, and only to the first form the page ever shows.
    {
        let nick_ref = nick_ref.clone();
        use_effect_with((), move |_| {
            if let Some(input) = nick_ref.cast::<HtmlInputElement>() {
                // Focusing fails only for a detached element; then there is nothing to focus.
                let _ = input.focus();
            }
            crate::page::mark("chat:join-form");
        });
    }

    html! {
        <main class="join">
            <form class="join-form" {onsubmit} aria-labelledby="join-title">
                <h1 id="join-title">{ "Join the chat" }</h1>
                <label for="join-nick">{ "Nickname" }</label>
                <input id="join-nick" ref={nick_ref} value={props.nick.clone()} autofocus=true
                    maxlength={rules::MAX_NICK_CHARS.to_string()} autocomplete="nickname" required=true />
                <label for="join-room">{ "Room" }</label>
                <input id="join-room" ref={room_ref} value={props.room.clone()}
                    maxlength={rules::MAX_ROOM_CHARS.to_string()} required=true />
                if let Some(error) = error {
                    <p class="error" role="alert">{ error }</p>
                }
                <button type="submit">{ "Join" }</button>
            </form>
        </main>
    }
}
