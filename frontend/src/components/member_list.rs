//! Who is in the room, you marked.

use protocol::Sanction;
use yew::prelude::*;

#[derive(Properties, PartialEq)]
pub struct MemberListProps {
    pub members: Vec<String>,
    /// Those of `members` signed in to their account; the others are guests.
    #[prop_or_default]
    pub signed_in: Vec<String>,
    #[prop_or_default]
    pub own: Option<String>,
    /// The reader moderates the room: each other member offers Mute, Kick and Ban.
    #[prop_or_default]
    pub moderator: bool,
    #[prop_or_default]
    pub on_moderate: Callback<(String, Sanction)>,
}

#[function_component(MemberList)]
pub fn member_list(props: &MemberListProps) -> Html {
    html! {
        <section class="members" aria-labelledby="members-title">
            <h2 id="members-title">{ format!("Members ({})", props.members.len()) }</h2>
            <ul>
                { for props.members.iter().map(|member| {
                    let own = props.own.as_deref() == Some(member.as_str());
                    let signed_in = props.signed_in.contains(member);
                    let classes = classes!(own.then_some("own"), (!signed_in).then_some("guest"));
                    let title = if signed_in {
                        "Signed in to this registered name"
                    } else {
                        "A guest: not signed in to an account"
                    };
                    html! {
                        <li key={member.clone()} class={classes} {title}>
                            { member }
                            if signed_in {
                                <span class="signed-in" aria-hidden="true">{ " ✓" }</span>
                                <span class="visually-hidden">{ " (signed in)" }</span>
                            }
                            if own { <span class="you">{ " (you)" }</span> }
                            if props.moderator && !own {
                                <span class="actions">
                                    { for [(Sanction::Mute, "Mute"), (Sanction::Kick, "Kick"), (Sanction::Ban, "Ban")].into_iter().map(|(action, label)| {
                                        let nick = member.clone();
                                        let onclick = props.on_moderate.reform(move |_: MouseEvent| (nick.clone(), action));
                                        html! {
                                            <button type="button" class="action" {onclick}
                                                aria-label={format!("{label} {member}")}>{ label }</button>
                                        }
                                    }) }
                                </span>
                            }
                        </li>
                    }
                }) }
            </ul>
        </section>
    }
}
