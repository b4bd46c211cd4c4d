//! "bob is typing…", under the messages.

use yew::prelude::*;

use crate::typing;

#[derive(Properties, PartialEq)]
pub struct TypingIndicatorProps {
    pub typists: Vec<String>,
}

#[function_component(TypingIndicator)]
pub fn typing_indicator(props: &TypingIndicatorProps) -> Html {
    html! {
        <p class="typing" aria-live="polite">{ typing::describe(&props.typists).unwrap_or_default() }</p>
    }
}
