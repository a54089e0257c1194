//! The frame around every page.

use leptos::prelude::*;

use crate::role::current_role;
use crate::SharedBackend;

/// Pages in the navigation bar: (path, label, only for roles that may mutate).
const NAV: &[(&str, &str, bool)] = &[
    ("/", "Runs", false),
    ("/runs/new", "New run", true),
    ("/models", "Models", false),
    ("/datasets", "Datasets", false),
    ("/compare", "Compare", false),
    ("/exports", "Exports", false),
    // Chatting generates (a post): viewers cannot.
    ("/chat", "Chat", true),
];

#[component]
pub fn Page(current: &'static str, children: Children) -> impl IntoView {
    let health = expect_context::<SharedBackend>().health();
    let role = current_role();
    view! {
        <header class="top">
            <a class="brand" href="/">"Loralab"</a>
            <nav>
                {NAV
                    .iter()
                    .filter(|&&(_, _, mutates)| !mutates || role.can_mutate())
                    .map(|&(href, label, _)| {
                        let aria_current = (href == current).then_some("page");
                        view! {
                            <a href=href aria-current=aria_current>
                                {label}
                            </a>
                        }
                    })
                    .collect_view()}
            </nav>
            <span class="device" title="The device MLX computes on">
                {health.device_description}
            </span>
            <span class=format!("role {}", role.label()) id="role" title="What this browser may do here">
                {role.label()}
            </span>
        </header>
        <main>{children()}</main>
    }
}

#[component]
pub fn NotFound() -> impl IntoView {
    view! {
        <Page current="">
            <h1>"Not found"</h1>
            <p class="muted">"There is no page at this address."</p>
        </Page>
    }
}
