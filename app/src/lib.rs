//! Loralab's pages. Rendered on the server only: there is no WebAssembly
//! build and no hydration script; forms post to server functions, and the
//! small embedded script (`/assets/live.js`) adds live updates on top.
//!
//! Pages reach the server's state through [`Backend`], provided as Leptos
//! context by the server, so this crate knows nothing of SQLite or MLX.

// Leptos views are nested types; the run page nests deeper than the default allows.
#![recursion_limit = "256"]

mod axis;
pub mod backend;
mod chart;
pub mod compare_dto;
pub mod dto;
mod layout;
pub mod machines_dto;
pub mod pages;
pub mod presets;
pub mod role;
pub mod run_comparison_dto;
pub mod run_form;
pub mod system_dto;

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Title};
use leptos_router::{
    components::{Route, Router, Routes},
    path, SsrMode,
};

pub use backend::{Backend, SharedBackend};
pub use role::Role;

/// The HTML document around every page. No hydration scripts: only our own
/// deferred script, which pages do not need in order to work.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    let _ = options;
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8" />
                <meta name="viewport" content="width=device-width, initial-scale=1" />
                <link rel="stylesheet" href="/assets/app.css" />
                <link rel="icon" href="/assets/icon.svg" type="image/svg+xml" />
                <script src="/assets/live.js" defer></script>
                <script src="/assets/compare.js" defer></script>
                <script src="/assets/pulls.js" defer></script>
                <script src="/assets/exports.js" defer></script>
                <MetaTags />
            </head>
            <body>
                <App />
            </body>
        </html>
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    view! {
        <Title text="Loralab" />
        <Router>
            <Routes fallback=|| view! { <layout::NotFound /> }>
                <Route path=path!("/") view=pages::runs::RunsPage ssr=SsrMode::Async />
                <Route path=path!("/runs/new") view=pages::new_run::NewRunPage ssr=SsrMode::Async />
                <Route path=path!("/runs/compare") view=pages::run_comparison::RunComparisonPage ssr=SsrMode::Async />
                <Route path=path!("/runs/:id") view=pages::run::RunPage ssr=SsrMode::Async />
                <Route path=path!("/models") view=pages::catalog::ModelsPage ssr=SsrMode::Async />
                <Route path=path!("/datasets") view=pages::catalog::DatasetsPage ssr=SsrMode::Async />
                <Route path=path!("/datasets/:id") view=pages::dataset::DatasetPage ssr=SsrMode::Async />
                <Route path=path!("/compare") view=pages::compare::ComparePage ssr=SsrMode::Async />
                <Route path=path!("/compare/:id") view=pages::compare::ComparisonPage ssr=SsrMode::Async />
                <Route path=path!("/compare/:id/vote") view=pages::compare::VotePage ssr=SsrMode::Async />
                <Route path=path!("/chat") view=pages::chat::NewChatPage ssr=SsrMode::Async />
                <Route path=path!("/chat/:id") view=pages::chat::ChatPage ssr=SsrMode::Async />
                <Route path=path!("/exports") view=pages::exports::ExportsPage ssr=SsrMode::Async />
                <Route path=path!("/exports/:id") view=pages::exports::ExportPage ssr=SsrMode::Async />
                <Route path=path!("/system") view=pages::system::SystemPage ssr=SsrMode::Async />
                <Route path=path!("/machines") view=pages::machines::MachinesPage ssr=SsrMode::Async />
            </Routes>
        </Router>
    }
}
