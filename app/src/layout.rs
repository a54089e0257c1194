//! The frame around every page.

use leptos::prelude::*;

use crate::role::{current_role, Role};
use crate::SharedBackend;

/// Whether a role may use a page.
type MayUse = fn(Role) -> bool;

/// Pages in the navigation bar: (path, label, who may use it).
const NAV: &[(&str, &str, MayUse)] = &[
    ("/", "Runs", |_| true),
    ("/runs/new", "New run", Role::can_run),
    ("/models", "Models", |_| true),
    ("/datasets", "Datasets", |_| true),
    ("/compare", "Compare", |_| true),
    ("/exports", "Exports", |_| true),
    // Chatting generates (a post) on the owner's machine.
    ("/chat", "Chat", Role::can_manage),
    ("/system", "System", |_| true),
    // Host names and addresses of the owner's network.
    ("/machines", "Machines", Role::can_manage),
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
                    .filter(|&&(_, _, may_use)| may_use(role))
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

/// A page's heading, which is also its `<title>` ("pirate-voice · Loralab"),
/// so tabs and history tell pages apart.
#[component]
pub fn Heading(#[prop(into)] text: String) -> impl IntoView {
    view! {
        <leptos_meta::Title text=format!("{text} · Loralab") />
        <h1>{text}</h1>
    }
}

#[component]
pub fn NotFound() -> impl IntoView {
    view! {
        <Page current="">
            <Heading text="Not found" />
            <p class="muted">"There is no page at this address."</p>
        </Page>
    }
}
