//! The home page: every run with its status and progress.

use leptos::prelude::*;

use crate::dto::RunSummary;
use crate::layout::{Heading, Page};
use crate::pages::{format_duration, format_optional};

#[server(prefix = "/fn", endpoint = "runs/list")]
pub async fn list_runs() -> Result<Vec<RunSummary>, ServerFnError> {
    let backend = expect_context::<crate::SharedBackend>();
    backend.list_runs().map_err(ServerFnError::new)
}

#[component]
pub fn RunsPage() -> impl IntoView {
    let runs = Resource::new_blocking(|| (), |_| list_runs());
    view! {
        <Page current="/">
            <div class="toolbar">
                <Heading text="Runs" />
                <span class="spacer"></span>
                {crate::role::current_role().can_run().then(|| view! {
                    <a class="button primary" href="/runs/new">"New run"</a>
                })}
            </div>
            <div class="panel">
                <Suspense fallback=|| view! { <p class="muted">"Loading runs..."</p> }>
                    {move || Suspend::new(async move {
                        match runs.await {
                            Ok(runs) => view! { <RunsTable runs /> }.into_any(),
                            Err(error) => {
                                view! { <p class="error">{format!("Could not load runs: {error}")}</p> }
                                    .into_any()
                            }
                        }
                    })}
                </Suspense>
            </div>
        </Page>
    }
}

#[component]
fn RunsTable(runs: Vec<RunSummary>) -> impl IntoView {
    if runs.is_empty() {
        return view! {
            <p class="empty" id="runs-empty">
                "No runs yet. Start a fine-tune from a model and a dataset."
            </p>
        }
        .into_any();
    }
    let comparable = runs.len() >= crate::run_comparison_dto::MIN_RUNS;
    // A GET form: the ticked runs become `/runs/compare?ids=1&ids=2`, a page
    // to share, with or without JavaScript.
    view! {
        <form method="get" action="/runs/compare" id="compare-runs-form">
        {comparable.then(|| view! {
            <div class="toolbar compare-bar">
                <button type="submit" id="compare-runs">"Compare selected runs"</button>
                <span class="muted small">"Tick 2 to 8 runs."</span>
            </div>
        })}
        <table id="runs" data-live-runs="/api/runs/events">
            <thead>
                <tr>
                    <th><span class="visually-hidden">"Compare"</span></th>
                    <th>"Run"</th>
                    <th>"Status"</th>
                    <th>"Model"</th>
                    <th>"Dataset"</th>
                    <th>"Progress"</th>
                    <th class="num">"Val loss"</th>
                    <th class="num">"Best"</th>
                    <th class="num">"Tokens/s"</th>
                    <th class="num">"ETA"</th>
                    <th>"Started"</th>
                    <th class="num">"Elapsed"</th>
                </tr>
            </thead>
            <tbody>
                {runs.into_iter().map(|run| view! { <RunRow run /> }).collect_view()}
            </tbody>
        </table>
        </form>
    }
    .into_any()
}

#[component]
fn RunRow(run: RunSummary) -> impl IntoView {
    let width = format!("width: {:.1}%", run.progress() * 100.0);
    let steps = format!("{}/{}", run.step, run.total_steps);
    // A run its guard holds is still `running`; the list says why it waits.
    let shown_status = if run.paused {
        "paused".to_string()
    } else {
        run.status.clone()
    };
    let status_class = format!("status {shown_status}");
    let href = format!("/runs/{}", run.id);
    let eta = run
        .eta_seconds()
        .map_or_else(|| "–".to_string(), format_duration);
    let started = run
        .started_at
        .clone()
        .unwrap_or_else(|| run.created_at.clone());
    let started_label = started.clone();
    let RunSummary {
        id,
        name,
        model,
        dataset,
        latest_val_loss,
        best_val_loss,
        tokens_per_sec,
        it_per_sec,
        elapsed_seconds,
        ..
    } = run;
    view! {
        <tr data-run-id=id data-it-per-sec=it_per_sec>
            <td>
                <input type="checkbox" name="ids" value=id aria-label=format!("Compare {name}") />
            </td>
            <td>
                <a href=href>{name}</a>
            </td>
            <td>
                <span class=status_class>{shown_status}</span>
            </td>
            <td>{model}</td>
            <td>{dataset}</td>
            <td>
                <div class="progress" title=steps.clone()>
                    <span style=width></span>
                </div>
                <span class="muted">{steps}</span>
            </td>
            <td class="num">{format_optional(latest_val_loss, 3)}</td>
            <td class="num">{format_optional(best_val_loss, 3)}</td>
            <td class="num">{format_optional(tokens_per_sec, 0)}</td>
            <td class="num" data-eta>{eta}</td>
            <td>
                <time datetime=started>{started_label}</time>
            </td>
            <td class="num">{elapsed_seconds.map_or_else(|| "–".to_string(), format_duration)}</td>
        </tr>
    }
}
