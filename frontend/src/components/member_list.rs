//! Who is in the room, you marked.

use yew::prelude::*;

#[derive(Properties, PartialEq)]
pub struct MemberListProps {
    pub members: Vec<String>,
    /// Those of `members` signed in to their account; the others are guests.
    #[prop_or_default]
    pub signed_in: Vec<String>,
    #[prop_or_default]
    pub own: Option<String>,
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
                        </li>
                    }
                }) }
            </ul>
        </section>
    }
}
