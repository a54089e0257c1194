//! The frame around every page.

use leptos::prelude::*;

use crate::SharedBackend;

/// Pages in the navigation bar: (path, label).
const NAV: &[(&str, &str)] = &[
    ("/", "Runs"),
    ("/runs/new", "New run"),
    ("/models", "Models"),
    ("/datasets", "Datasets"),
    ("/compare", "Compare"),
    ("/chat", "Chat"),
];

#[component]
pub fn Page(current: &'static str, children: Children) -> impl IntoView {
    let health = expect_context::<SharedBackend>().health();
    view! {
        <header class="top">
            <a class="brand" href="/">"Loralab"</a>
            <nav>
                {NAV
                    .iter()
                    .map(|&(href, label)| {
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
