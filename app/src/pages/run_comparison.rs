//! Runs side by side (`/runs/compare?ids=1,2,3`, a URL to share): every
//! run's train and validation loss on one chart (live for runs still
//! training, as the run page is), their final figures, the settings in
//! which they differ, and a link to compare their adapters' outputs.

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;

use crate::axis::Axis;
use crate::chart::{AxisChoice, LineChart, Scale, Series};
use crate::layout::{Heading, Page};
use crate::pages::{format_duration, format_optional, server_error_text};
use crate::run_comparison_dto::{ComparedRun, RunComparison};

#[server(prefix = "/fn", endpoint = "runs/compare")]
pub async fn load_run_comparison(ids: String) -> Result<RunComparison, ServerFnError> {
    let backend = expect_context::<crate::SharedBackend>();
    backend.compare_runs(ids).map_err(ServerFnError::new)
}

#[component]
pub fn RunComparisonPage() -> impl IntoView {
    // `?ids=1,2,3`, or `?ids=1&ids=2` from the runs list's checkboxes.
    let (ids, x, y) = use_query_map().with_untracked(|query| {
        (
            query.get_all("ids").unwrap_or_default().join(","),
            query.get("x"),
            query.get("y"),
        )
    });
    let comparison = Resource::new_blocking(move || ids.clone(), load_run_comparison);
    view! {
        <Page current="/">
            <Suspense fallback=|| view! { <p class="muted">"Loading runs..."</p> }>
                {move || {
                    let (x, y) = (x.clone(), y.clone());
                    Suspend::new(async move {
                        match comparison.await {
                            Ok(comparison) => view! { <ComparisonView comparison x y /> }.into_any(),
                            Err(error) => view! {
                                <Heading text="Compare runs" />
                                <p class="error-box" role="alert" id="compare-runs-error">
                                    {server_error_text(&error.to_string())}
                                </p>
                                <p><a href="/">"Back to the runs list"</a>" to tick the runs to compare."</p>
                            }
                            .into_any(),
                        }
                    })
                }}
            </Suspense>
        </Page>
    }
}

/// The compare form's columns: the base and five adapters.
const ADAPTER_COLUMNS: usize = 5;

/// `/compare` with the base and these runs' adapters in its columns, one
/// link per base model (a comparison generates on one base): its model,
/// address and text.
fn output_links(runs: &[ComparedRun]) -> Vec<(String, String, String)> {
    let mut models: Vec<&str> = Vec::new();
    for run in runs {
        if run.adapter_reference.is_some() && !models.contains(&run.summary.model.as_str()) {
            models.push(&run.summary.model);
        }
    }
    models
        .into_iter()
        .map(|model| {
            let references: Vec<&str> = runs
                .iter()
                .filter(|run| run.summary.model == model)
                .filter_map(|run| run.adapter_reference.as_deref())
                .collect();
            let label = if references.len() > ADAPTER_COLUMNS {
                format!("Compare the first {ADAPTER_COLUMNS} adapters' outputs on {model} (the form has {ADAPTER_COLUMNS} adapter columns)")
            } else {
                format!("Compare their adapters' outputs on {model}")
            };
            let mut query = format!("model={}", encode(model));
            for (slot, reference) in std::iter::once("base")
                .chain(references.into_iter().take(ADAPTER_COLUMNS))
                .enumerate()
            {
                query.push_str(&format!("&column_{}={}", slot + 1, encode(reference)));
            }
            (model.to_string(), format!("/compare?{query}"), label)
        })
        .collect()
}

/// Percent-encodes a query value (model names may hold `/`, `@`, spaces).
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

#[component]
fn ComparisonView(
    comparison: RunComparison,
    x: Option<String>,
    y: Option<String>,
) -> impl IntoView {
    let axis = Axis::from_query(x.as_deref());
    let runs = comparison.runs;
    let ids = runs
        .iter()
        .map(|run| run.summary.id.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let series: Vec<Series> = runs
        .iter()
        .enumerate()
        .flat_map(|(index, run)| {
            axis.loss_series(
                &run.train,
                &run.valid,
                &format!("run-{}-", run.summary.id),
                &format!("{} ", run.summary.name),
                &format!("run-{index}"),
            )
        })
        .collect();
    let scale = Scale::from_query(y.as_deref(), &series);
    let x_extent = runs
        .iter()
        .map(|run| axis.at_step(run.summary.total_steps as f64, &run.train))
        .fold(0.0, f64::max);
    let title = format!(
        "Compare runs {}",
        runs.iter()
            .map(|run| run.summary.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let links = output_links(&runs);
    let figure_rows = runs
        .iter()
        .enumerate()
        .map(|(index, run)| {
            let summary = &run.summary;
            let figures = &run.figures;
            let live = summary
                .is_active()
                .then(|| format!("/api/runs/{}/events?after={}", summary.id, run.last_event_seq));
            view! {
                <tr
                    data-run-id=summary.id
                    data-live-events=live
                    data-series-prefix=format!("run-{}-", summary.id)
                    data-clock=run.clock_seconds
                >
                    <td>
                        <span class=format!("swatch-dot run-{index}") aria-hidden="true"></span>
                        <a href=format!("/runs/{}", summary.id)>{summary.name.clone()}</a>
                    </td>
                    <td><span class=format!("status {}", figures.status) data-figure="status">{figures.status.clone()}</span></td>
                    <td class="num" data-figure="best_val_loss">{format_optional(figures.best_val_loss, 3)}</td>
                    <td class="num" data-figure="last_val_loss">{format_optional(figures.last_val_loss, 3)}</td>
                    <td class="num" data-figure="test_loss">{format_optional(figures.test_loss, 3)}</td>
                    <td class="num" data-figure="test_perplexity">{format_optional(figures.test_perplexity, 2)}</td>
                    <td class="num" data-figure="tokens_per_sec">{format_optional(figures.tokens_per_sec, 0)}</td>
                    <td class="num" data-figure="peak_memory_gb">{figures.peak_memory_gb.map_or("–".into(), |gb| format!("{gb:.2} GB"))}</td>
                    <td class="num" data-figure="duration">{figures.duration_seconds.map_or_else(|| "–".to_string(), format_duration)}</td>
                </tr>
            }
        })
        .collect_view();
    let names = runs
        .iter()
        .map(|run| view! { <th>{run.summary.name.clone()}</th> })
        .collect_view();
    let differences = comparison.differences;
    let same = differences.is_empty();
    let difference_rows = differences
        .into_iter()
        .map(|difference| {
            let values = difference
                .values
                .into_iter()
                .map(|value| match value {
                    Some(value) => view! { <td><code>{value}</code></td> }.into_any(),
                    None => view! { <td class="muted">"(not set)"</td> }.into_any(),
                })
                .collect_view();
            view! {
                <tr data-key=difference.key.clone()>
                    <th scope="row"><code>{difference.key.clone()}</code></th>
                    {values}
                </tr>
            }
        })
        .collect_view();
    let any_active = runs.iter().any(|run| run.summary.is_active());
    view! {
        {any_active.then(|| view! { <noscript><meta http-equiv="refresh" content="5" /></noscript> })}
        <Heading text=title />
        <p class="muted">
            {format!("{} runs · ", runs.len())}
            <a href="/">"choose other runs"</a>
        </p>
        <div class="panel" id="compare-runs" data-live-compare="">
            <LineChart id="loss-chart" series x_extent x_axis=axis scale />
            <AxisChoice query=format!("ids={ids}&") axis scale />
        </div>
        <h2>"Final figures"</h2>
        <div class="panel">
            <table id="figures">
                <thead>
                    <tr>
                        <th>"Run"</th>
                        <th>"Status"</th>
                        <th class="num">"Best val loss"</th>
                        <th class="num">"Last val loss"</th>
                        <th class="num">"Test loss"</th>
                        <th class="num">"Test perplexity"</th>
                        <th class="num">"Tokens/s"</th>
                        <th class="num">"Peak memory"</th>
                        <th class="num">"Duration"</th>
                    </tr>
                </thead>
                <tbody>{figure_rows}</tbody>
            </table>
            <p class="muted small">"Tokens/s is the mean over the run's reports; test figures come from the run's own test evaluation or its newest \"Evaluate on test split\"."</p>
        </div>
        <h2>"Settings that differ"</h2>
        <div class="panel">
            {if same {
                view! { <p class="empty" id="config-same">"These runs have the same settings."</p> }.into_any()
            } else {
                view! {
                    <table id="config-diff">
                        <thead><tr><th>"Setting"</th>{names}</tr></thead>
                        <tbody>{difference_rows}</tbody>
                    </table>
                }
                .into_any()
            }}
        </div>
        <h2>"Outputs"</h2>
        <div class="panel" id="compare-outputs">
            {if links.is_empty() {
                view! { <p class="muted">"None of these runs has an adapter yet (the first checkpoint makes one)."</p> }.into_any()
            } else {
                links
                    .into_iter()
                    .map(|(model, href, label)| view! {
                        <p><a class="button" href=href data-compare-outputs=model>{label}</a></p>
                    })
                    .collect_view()
                    .into_any()
            }}
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(encode("run:3"), "run:3");
        assert_eq!(encode("org/name@main x"), "org%2Fname%40main%20x");
    }
}
