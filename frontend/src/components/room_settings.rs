//! The room's settings, for its owner and moderators: private or public, invitation links
//! (made, shown to copy, revoked), and people by name: moderators (named by the owner) and the
//! members of a private room.

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
    /// Whether you own the room (only the owner names moderators).
    #[prop_or_default]
    pub owner: bool,
    /// Give an account a place (`false`) or take it away (`true`), once confirmed.
    pub on_grant: Callback<(String, protocol::Grant, bool)>,
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
    let person = use_node_ref();
    // Each button acts on the name typed, if any.
    let act = |grant: protocol::Grant, take: bool| {
        let (person, on_grant) = (person.clone(), props.on_grant.clone());
        Callback::from(move |_: MouseEvent| {
            let Some(input) = person.cast::<web_sys::HtmlInputElement>() else { return };
            let nick = input.value().trim().to_owned();
            if !nick.is_empty() {
                on_grant.emit((nick, grant, take));
                input.set_value("");
            }
        })
    };
    let people = props.owner || props.private;
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
            if people {
                <div class="people">
                    <label for="room-person">{ "Someone with an account" }</label>
                    <input id="room-person" type="text" ref={person.clone()} autocomplete="off"
                        placeholder="their nick" />
                    if props.owner {
                        <button type="button" class="secondary"
                            onclick={act(protocol::Grant::Moderator, false)}>{ "Make moderator" }</button>
                        <button type="button" class="secondary"
                            onclick={act(protocol::Grant::Moderator, true)}>{ "Remove moderator" }</button>
                    }
                    if props.private {
                        <button type="button" class="secondary"
                            onclick={act(protocol::Grant::Member, false)}>{ "Add member" }</button>
                        <button type="button" class="secondary"
                            onclick={act(protocol::Grant::Member, true)}>{ "Remove member" }</button>
                    }
                </div>
            }
        </section>
    }
}
