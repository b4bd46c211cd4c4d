//! The message input: Enter or the button sends, Escape clears; problems show right beside it.

use protocol::rules;
use web_sys::{HtmlInputElement, KeyboardEvent};
use yew::prelude::*;

#[derive(Properties, PartialEq)]
pub struct ComposerProps {
    /// Called with the text to send, already checked against the text rules.
    pub on_send: Callback<String>,
    /// Called with an explanation when the text cannot be sent.
    pub on_invalid: Callback<String>,
    /// Called on every edit of the text (the caller throttles what it announces).
    #[prop_or_default]
    pub on_typing: Callback<()>,
    #[prop_or_default]
    pub error: Option<String>,
    #[prop_or_default]
    pub disabled: bool,
}

#[function_component(Composer)]
pub fn composer(props: &ComposerProps) -> Html {
    let input_ref = use_node_ref();
    let submit = {
        let input_ref = input_ref.clone();
        let (on_send, on_invalid) = (props.on_send.clone(), props.on_invalid.clone());
        move || {
            let Some(input) = input_ref.cast::<HtmlInputElement>() else { return };
            match rules::check_text(&input.value(), rules::MAX_TEXT_CHARS) {
                Ok(()) => {
                    on_send.emit(input.value());
                    input.set_value("");
                }
                Err(error) => on_invalid.emit(error.message),
            }
        }
    };
    let onsubmit = {
        let submit = submit.clone();
        Callback::from(move |event: SubmitEvent| {
            event.prevent_default();
            submit();
        })
    };
    // Enter is handled here (and the browser's own form submission suppressed) so that the
    // key behaves the same everywhere, and Escape can cancel what was typed.
    let onkeydown = {
        let input_ref = input_ref.clone();
        Callback::from(move |event: KeyboardEvent| match event.key().as_str() {
            "Enter" if !event.shift_key() && !event.is_composing() => {
                event.prevent_default();
                submit();
            }
            "Escape" => {
                if let Some(input) = input_ref.cast::<HtmlInputElement>() {
                    input.set_value("");
                }
            }
            _ => {}
        })
    };
    // Put the cursor in the input when the chat appears, so a keyboard user can type at once.
    // (`autofocus` is not applied to elements inserted after the page loaded.)
    {
        let input_ref = input_ref.clone();
        use_effect_with((), move |_| {
            if let Some(input) = input_ref.cast::<HtmlInputElement>() {
                // Focusing fails only for a detached element; then there is nothing to focus.
                let _ = input.focus();
            }
        });
    }
    let oninput = props.on_typing.reform(|_: InputEvent| ());
    html! {
        <form class="composer" {onsubmit}>
            <label for="composer-input" class="visually-hidden">{ "Message" }</label>
            <input id="composer-input" ref={input_ref} placeholder="Write a message…"
                autocomplete="off" disabled={props.disabled} {onkeydown} {oninput}
                aria-describedby="composer-error" />
            <button type="submit" disabled={props.disabled}>{ "Send" }</button>
            <p id="composer-error" class="error" role="alert">
                { props.error.clone().unwrap_or_default() }
            </p>
        </form>
    }
}
