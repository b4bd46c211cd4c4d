//! The room's settings, for its owner and moderators: private or public, and invitation links
//! (made, shown to copy, revoked).

use yew::prelude::*;

#[derive(Properties, PartialEq)]
pub struct RoomSettingsProps {
    pub room: String,
    pub private: bool,
    /// The last invitation link made here (`Some(None)`: all revoked).
    #[prop_or_default]
    pub invitation: Option<Option<String>>,
    /// The page's own address (`https://host`), to make links with.
    pub origin: String,
    /// Make the room private (`true`) or public.
    pub on_private: Callback<bool>,
    /// Make an invitation link (`false`) or revoke every link (`true`).
    pub on_invite: Callback<bool>,
}

/// The link an invitation code makes: the chat's page opening the room with the code.
pub fn invitation_link(origin: &str, room: &str, code: &str) -> String {
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("room", room)
        .append_pair("invite", code)
        .finish();
    format!("{origin}/?{query}")
}

#[function_component(RoomSettings)]
pub fn room_settings(props: &RoomSettingsProps) -> Html {
    let onchange = props.on_private.reform(|event: Event| {
        event.target_dyn_into::<web_sys::HtmlInputElement>().is_some_and(|input| input.checked())
    });
    let invite = props.on_invite.reform(|_: MouseEvent| false);
    let revoke = props.on_invite.reform(|_: MouseEvent| true);
    html! {
        <section class="room-settings" aria-labelledby="room-settings-title">
            <h2 id="room-settings-title">{ format!("#{} settings", props.room) }</h2>
            <label class="toggle">
                <input type="checkbox" checked={props.private} {onchange} />
                { " Private: only members and invited people may join" }
            </label>
            if props.private {
                <div class="invitations">
                    <button type="button" class="secondary" onclick={invite}>{ "Create invitation link" }</button>
                    <button type="button" class="secondary" onclick={revoke}>{ "Revoke all links" }</button>
                    { match &props.invitation {
                        Some(Some(code)) => {
                            let link = invitation_link(&props.origin, &props.room, code);
                            html! {
                                <label class="invitation">
                                    { "Share this link (whoever opens it and signs in becomes a member):" }
                                    <input type="text" readonly=true value={link} />
                                </label>
                            }
                        }
                        Some(None) => html! { <p class="hint">{ "Every link is revoked; members stay members." }</p> },
                        None => Html::default(),
                    } }
                </div>
            }
        </section>
    }
}
