//! The first screen: choose a nickname and a room, as a guest or signed in to an account.

use protocol::rules;
use web_sys::HtmlInputElement;
use yew::prelude::*;

use crate::account::SignIn;

/// A sign-in the user asked for: register or log in to `nick` with `password`, then join
/// `room`.
#[derive(Clone, PartialEq, Eq)]
pub struct SignInRequest {
    pub kind: SignIn,
    pub nick: String,
    pub password: String,
    pub room: String,
}

/// Without the password: a request may end up in a log.
impl std::fmt::Debug for SignInRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let SignInRequest { kind, nick, room, .. } = self;
        write!(f, "SignInRequest({kind:?}, {nick:?}, password, {room:?})")
    }
}

#[derive(Properties, PartialEq)]
pub struct JoinFormProps {
    pub nick: String,
    pub room: String,
    /// A problem to show (from the server or from checking the fields).
    #[prop_or_default]
    pub error: Option<String>,
    /// The account this browser is signed in to: the form joins under it.
    #[prop_or_default]
    pub account: Option<String>,
    /// Called with `(nick, room)`, both already checked against the naming rules.
    pub on_join: Callback<(String, String)>,
    /// Register or log in (the nick and room checked, the password not empty).
    #[prop_or_default]
    pub on_sign_in: Callback<SignInRequest>,
    #[prop_or_default]
    pub on_log_out: Callback<()>,
    /// Whether guests may chat here: without, the form only logs in and registers.
    #[prop_or(true)]
    pub guests: bool,
}

/// Which of the form's buttons was pressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Choice {
    Guest,
    Account(SignIn),
}

#[function_component(JoinForm)]
pub fn join_form(props: &JoinFormProps) -> Html {
    let nick_ref = use_node_ref();
    let room_ref = use_node_ref();
    let password_ref = use_node_ref();
    let local_error = use_state(|| None::<String>);
    // The button pressed (Enter in a field presses the first, "Join as guest").
    let choice = use_mut_ref(|| None::<Choice>);

    let onsubmit = {
        let (nick_ref, room_ref, password_ref) =
            (nick_ref.clone(), room_ref.clone(), password_ref.clone());
        let (local_error, choice) = (local_error.clone(), choice.clone());
        let (on_join, on_sign_in) = (props.on_join.clone(), props.on_sign_in.clone());
        let (account, guests) = (props.account.clone(), props.guests);
        Callback::from(move |event: SubmitEvent| {
            event.prevent_default();
            let value = |node: &NodeRef| {
                node.cast::<HtmlInputElement>().map(|input| input.value()).unwrap_or_default()
            };
            let password = value(&password_ref);
            // With a password typed, joining means logging in (Enter included), and so does
            // Enter where guests cannot chat.
            let first = if guests { Choice::Guest } else { Choice::Account(SignIn::LogIn) };
            let pressed = match choice.borrow_mut().take().unwrap_or(first) {
                Choice::Guest if !password.is_empty() => Choice::Account(SignIn::LogIn),
                pressed => pressed,
            };
            let nick = account.clone().unwrap_or_else(|| value(&nick_ref));
            let checked = rules::check_nick(&nick, rules::MAX_NICK_CHARS).and_then(|nick| {
                Ok((nick, rules::check_room(&value(&room_ref), rules::MAX_ROOM_CHARS)?))
            });
            let (nick, room) = match checked {
                Ok(choice) => choice,
                Err(error) => return local_error.set(Some(error.message)),
            };
            match pressed {
                Choice::Guest => {
                    local_error.set(None);
                    on_join.emit((nick, room));
                }
                Choice::Account(_) if password.is_empty() => {
                    local_error.set(Some("Type your password to register or log in.".into()));
                }
                Choice::Account(kind) => {
                    local_error.set(None);
                    on_sign_in.emit(SignInRequest { kind, nick, password, room });
                }
            }
        })
    };
    let press = |pressed: Choice| {
        let choice = choice.clone();
        Callback::from(move |_: MouseEvent| *choice.borrow_mut() = Some(pressed))
    };
    let log_out = props.on_log_out.reform(|_: MouseEvent| ());
    let error = (*local_error).clone().or_else(|| props.error.clone());
    // The cursor starts in the first field. `autofocus` alone is applied only at the
    // browser's next rendering step, and only to the first form the page ever shows.
    {
        let (nick_ref, room_ref) = (nick_ref.clone(), room_ref.clone());
        use_effect_with((), move |_| {
            let first = nick_ref.cast::<HtmlInputElement>().or_else(|| room_ref.cast());
            if let Some(input) = first {
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
                if let Some(account) = &props.account {
                    <p class="signed-in-as">
                        { "Signed in as " }<strong>{ account }</strong>
                        <span class="signed-in" aria-hidden="true">{ " ✓" }</span>
                    </p>
                } else {
                    <label for="join-nick">{ "Nickname" }</label>
                    <input id="join-nick" ref={nick_ref} value={props.nick.clone()} autofocus=true
                        maxlength={rules::MAX_NICK_CHARS.to_string()} autocomplete="username" required=true />
                }
                <label for="join-room">{ "Room" }</label>
                <input id="join-room" ref={room_ref} value={props.room.clone()}
                    maxlength={rules::MAX_ROOM_CHARS.to_string()} required=true />
                if props.account.is_none() {
                    <label for="join-password">{ "Password " }<span class="hint">{ "(only to register or log in)" }</span></label>
                    <input id="join-password" ref={password_ref} type="password"
                        autocomplete="current-password" aria-describedby="join-password-help" />
                    <p id="join-password-help" class="hint">
                        if props.guests {
                            { "Without a password you join as a guest. Registering keeps the nickname yours: nobody else can use it." }
                        } else {
                            { "Only people with an account chat here: log in, or register a nickname." }
                        }
                    </p>
                }
                if let Some(error) = error {
                    <p class="error" role="alert">{ error }</p>
                }
                if props.account.is_some() {
                    <button type="submit" onclick={press(Choice::Guest)}>{ "Join" }</button>
                    <button type="button" class="secondary" onclick={log_out}>{ "Log out" }</button>
                } else {
                    if props.guests {
                        <button type="submit" onclick={press(Choice::Guest)}>{ "Join as guest" }</button>
                    }
                    <div class="account-buttons">
                        <button type="submit" class="secondary" onclick={press(Choice::Account(SignIn::LogIn))}>{ "Log in" }</button>
                        <button type="submit" class="secondary" onclick={press(Choice::Account(SignIn::Register))}>{ "Register" }</button>
                    </div>
                }
            </form>
        </main>
    }
}
