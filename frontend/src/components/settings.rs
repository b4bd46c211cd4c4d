//! Settings: desktop notifications when someone mentions you. The browser is asked for its
//! permission only when the reader turns them on, never on load.

use yew::prelude::*;

use crate::page;

#[function_component(Settings)]
pub fn settings() -> Html {
    let on = use_state(page::notifications_on);
    let supported = page::notifications_supported();
    let onchange = {
        let on = on.clone();
        Callback::from(move |event: Event| {
            let wanted = event
                .target_dyn_into::<web_sys::HtmlInputElement>()
                .is_some_and(|input| input.checked());
            let on = on.clone();
            page::set_notifications(wanted, move |granted| on.set(granted));
        })
    };
    html! {
        <section class="settings" aria-labelledby="settings-title">
            <h2 id="settings-title">{ "Settings" }</h2>
            <label class="toggle">
                <input type="checkbox" checked={*on} disabled={!supported} {onchange} />
                { " Notify me when someone mentions me" }
            </label>
            if !supported {
                <p class="hint">{ "This browser cannot show notifications." }</p>
            }
        </section>
    }
}
