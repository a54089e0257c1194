//! One run: live loss chart, figures, checkpoints, log tail, config, actions.

use leptos::prelude::*;
use leptos_router::hooks::use_params_map;

use crate::axis::Axis;
use crate::chart::{AxisChoice, LineChart, Scale};
use crate::compare_dto::RunEvaluations;
use crate::dto::RunDetail;
use crate::layout::{Heading, Page};
use crate::pages::exports::RunExports;
use crate::pages::system::{PausedBanner, RunSystemPanel};
use crate::pages::{format_duration, format_optional, posted_error, ErrorBox};

#[server(prefix = "/fn", endpoint = "runs/detail")]
pub async fn load_run(id: i64) -> Result<Option<RunDetail>, ServerFnError> {
    let backend = expect_context::<crate::SharedBackend>();
    backend.run_detail(id).map_err(ServerFnError::new)
}

#[server(prefix = "/fn", endpoint = "runs/stop")]
pub async fn stop_run(id: i64) -> Result<(), ServerFnError> {
    let backend = expect_context::<crate::SharedBackend>();
    backend.stop_run(id).map_err(ServerFnError::new)?;
    backend.redirect(&format!("/runs/{id}"));
    Ok(())
}

#[server(prefix = "/fn", endpoint = "runs/resume")]
pub async fn resume_run(id: i64) -> Result<(), ServerFnError> {
    let backend = expect_context::<crate::SharedBackend>();
    backend.resume_run(id).map_err(ServerFnError::new)?;
    backend.redirect(&format!("/runs/{id}"));
    Ok(())
}

#[server(prefix = "/fn", endpoint = "runs/evaluations")]
pub async fn load_run_evaluations(id: i64) -> Result<Option<RunEvaluations>, ServerFnError> {
    let backend = expect_context::<crate::SharedBackend>();
    backend.run_evaluations(id).map_err(ServerFnError::new)
}

/// Evaluates the run's best checkpoint on `split` of its dataset (default
/// test) and comes back to the run page, which lists the result. A plain
/// form post: it waits for the number.
#[server(prefix = "/fn", endpoint = "runs/evaluate")]
pub async fn evaluate_run(id: i64, split: Option<String>) -> Result<(), ServerFnError> {
    let backend = expect_context::<crate::SharedBackend>();
    backend
        .evaluate_run(id, split, None)
        .await
        .map_err(ServerFnError::new)?;
    backend.redirect(&format!("/runs/{id}#evaluations"));
    Ok(())
}

#[server(prefix = "/fn", endpoint = "runs/delete")]
pub async fn delete_run(id: i64) -> Result<(), ServerFnError> {
    let backend = expect_context::<crate::SharedBackend>();
    backend.delete_run(id).map_err(ServerFnError::new)?;
    backend.redirect("/");
    Ok(())
}

#[component]
pub fn RunPage() -> impl IntoView {
    let params = use_params_map();
    let id = params.with_untracked(|params| params.get("id").and_then(|id| id.parse::<i64>().ok()));
    let detail = Resource::new_blocking(
        move || id,
        |id| async move {
            match id {
                Some(id) => load_run(id).await,
                None => Ok(None),
            }
        },
    );
    let evaluations = Resource::new_blocking(
        move || id,
        |id| async move {
            match id {
                Some(id) => load_run_evaluations(id).await,
                None => Ok(None),
            }
        },
    );
    let error = posted_error();
    view! {
        <Page current="/">
            <ErrorBox message=error />
            <Suspense fallback=|| view! { <p class="muted">"Loading run..."</p> }>
                {move || Suspend::new(async move {
                    let evaluations = evaluations.await;
                    match detail.await {
                        Ok(Some(detail)) => view! { <RunView detail evaluations /> }.into_any(),
                        Ok(None) => view! {
                            <Heading text="No such run" />
                            <p class="muted">"It may have been deleted."</p>
                        }
                        .into_any(),
                        Err(error) => view! {
                            <p class="error-box">{format!("Could not load the run: {error}")}</p>
                        }
                        .into_any(),
                    }
                })}
            </Suspense>
        </Page>
    }
}

#[component]
fn Stat(label: &'static str, key: &'static str, value: String) -> impl IntoView {
    view! {
        <div class="stat">
            <div class="label">{label}</div>
            <div class="value" data-stat=key>{value}</div>
        </div>
    }
}

#[component]
fn RunView(
    detail: RunDetail,
    evaluations: Result<Option<RunEvaluations>, ServerFnError>,
) -> impl IntoView {
    let summary = detail.summary.clone();
    let id = summary.id;
    let last = detail.train.last().cloned();
    let (x_query, y_query) = leptos_router::hooks::use_query_map()
        .with_untracked(|query| (query.get("x"), query.get("y")));
    let axis = Axis::from_query(x_query.as_deref());
    let series = Vec::from(axis.loss_series(&detail.train, &detail.valid, "", "", ""));
    let scale = Scale::from_query(y_query.as_deref(), &series);
    let x_extent = axis.at_step(summary.total_steps as f64, &detail.train);
    let eta = summary
        .eta_seconds()
        .map_or_else(|| "–".to_string(), format_duration);
    // No buttons the server would refuse: viewers get none, an operator
    // only those of running.
    let role = crate::role::current_role();
    let (can_run, can_manage) = (role.can_run(), role.can_manage());
    let actions = view! {
        <div class="actions">
            {(can_run && summary.is_active()).then(|| view! {
                <form method="post" action="/fn/runs/stop">
                    <input type="hidden" name="id" value=id />
                    <button type="submit" id="stop">"Stop"</button>
                </form>
            })}
            {(can_run && (summary.is_resumable() || detail.system.paused.is_some())).then(|| view! {
                <form method="post" action="/fn/runs/resume">
                    <input type="hidden" name="id" value=id />
                    <button type="submit" class="primary" id="resume">"Resume"</button>
                </form>
            })}
            {can_run.then(|| view! {
                <a class="button" href=format!("/runs/new?clone={id}") id="clone">"Clone"</a>
            })}
            {(!detail.checkpoints.is_empty()).then(|| view! {
                <a class="button" href=format!("/api/runs/{id}/adapter.zip") id="download" download>
                    "Download adapter"
                </a>
            })}
        </div>
    };
    let checkpoints = detail
        .checkpoints
        .iter()
        .map(|checkpoint| {
            view! {
                <tr class:best=checkpoint.best data-step=checkpoint.step data-val-loss=checkpoint.val_loss.map(|loss| loss.to_string())>
                    <td class="num">{checkpoint.step}</td>
                    <td class="num">{format_optional(checkpoint.val_loss, 3)}</td>
                    <td>{checkpoint.best.then(|| view! { <span class="status done">"best"</span> })}</td>
                    <td>
                        <a href=format!("/api/runs/{id}/adapter.zip?step={}", checkpoint.step) download>
                            "zip"
                        </a>
                    </td>
                </tr>
            }
        })
        .collect_view();
    let log = detail.log_tail.join("\n");
    view! {
        // Without JavaScript a live run's page refreshes itself; with it,
        // live.js follows the stream and this is inert text.
        {summary.is_active().then(|| view! {
            <noscript><meta http-equiv="refresh" content="5" /></noscript>
        })}
        <div
            class="toolbar"
            data-live-run=format!("/api/runs/{id}/events?after={}", detail.last_event_seq)
            data-run-id=id
            data-total-steps=summary.total_steps
            data-clock=detail.clock_seconds
        >
            <Heading text=summary.name.clone() />
            <span class=format!("status {}", summary.status) id="run-status">{summary.status.clone()}</span>
            <span class="spacer"></span>
            {actions}
        </div>
        {detail.failure.clone().map(|failure| view! {
            <div class="error-box" id="failure"><strong>"Failed: "</strong>{failure}</div>
        })}
        <PausedBanner system=detail.system.clone() />
        {detail.finish_reason.clone().map(|reason| view! {
            <div class="notice" id="finish-reason">
                {format!("Training {reason}; the best checkpoint is the adapter.")}
            </div>
        })}
        <p class="muted">{format!("{} on {}", summary.model, summary.dataset)}</p>
        <div class="stats">
            <Stat label="Step" key="step" value=if summary.total_steps == 0 { format!("{}/–", summary.step) } else { format!("{}/{}", summary.step, summary.total_steps) } />
            {detail.system.paused.as_ref().map(|_| "paused").or(summary.phase()).map(|phase| view! { <Stat label="Now" key="phase" value=phase.to_string() /> })}
            <Stat label="Train loss" key="train_loss" value=format_optional(last.as_ref().map(|p| p.train_loss), 3) />
            <Stat label="Best val loss" key="best_val_loss" value=format_optional(summary.best_val_loss, 3) />
            <Stat label="Tokens/s" key="tokens_per_sec" value=format_optional(last.as_ref().map(|p| p.tokens_per_sec), 0) />
            {(detail.ranks > 1).then(|| {
                // Reports count the tokens of all ranks together.
                let per_rank = last.as_ref().map(|p| p.tokens_per_sec / detail.ranks as f64);
                view! {
                    <Stat label="Ranks" key="ranks" value=detail.ranks.to_string() />
                    <Stat label="Tokens/s per rank" key="tokens_per_sec_per_rank" value=format_optional(per_rank, 0) />
                }
            })}
            <Stat label="Learning rate" key="learning_rate" value=last.as_ref().map_or("–".into(), |p| format!("{:.2e}", p.learning_rate)) />
            <Stat label="Peak memory" key="peak_memory_gb" value=last.as_ref().map_or("–".into(), |p| format!("{:.2} GB", p.peak_memory_gb)) />
            <Stat label="ETA" key="eta" value=eta />
            <Stat label="Test loss" key="test_loss" value=format_optional(detail.test_loss, 3) />
        </div>
        <div class="grid-2">
            <div class="panel">
                <LineChart id="loss-chart" series x_extent x_axis=axis scale />
                <AxisChoice query=String::new() axis scale />
            </div>
            <div class="panel">
                <h2>"Checkpoints"</h2>
                <table id="checkpoints">
                    <thead>
                        <tr><th class="num">"Step"</th><th class="num">"Val loss"</th><th></th><th></th></tr>
                    </thead>
                    <tbody>{checkpoints}</tbody>
                </table>
            </div>
        </div>
        {(!detail.rank_rows.is_empty()).then(|| view! {
            <RanksPanel rows=detail.rank_rows.clone() global=last.as_ref().map(|p| p.tokens_per_sec) />
        })}
        <RunSystemPanel
            system=detail.system.clone()
            active=summary.is_active()
            x_extent
            x_axis=axis
            x_of_step={
                let train = detail.train.clone();
                Box::new(move |step| axis.at_step(step, &train))
            }
        />
        {match evaluations {
            Ok(Some(evaluations)) => view! {
                <EvaluationSection evaluations active=summary.is_active() can_manage />
            }
            .into_any(),
            Ok(None) => ().into_any(),
            Err(error) => view! {
                <p class="error-box">{format!("Could not load the evaluations: {error}")}</p>
            }
            .into_any(),
        }}
        <RunExports run_id=id checkpoints=detail.checkpoints.clone() exports=detail.exports.clone() can_manage />
        <h2>"Log"</h2>
        <pre class="log tail" id="log">{log}</pre>
        <h2>"Configuration"</h2>
        <p class="muted">"Run it headless with " <code>"loralab train --config run.yaml"</code></p>
        <pre class="log" id="config">{detail.config_yaml.clone()}</pre>
        {(can_manage && !summary.is_active()).then(|| view! {
            <details class="danger-zone panel">
                <summary>"Delete this run..."</summary>
                <form method="post" action="/fn/runs/delete">
                    <input type="hidden" name="id" value=id />
                    <p>"Its metrics, checkpoints and adapters are removed for good."</p>
                    <button type="submit" class="danger" id="delete-run">{format!("Delete {}", summary.name)}</button>
                </form>
            </details>
        })}
    }
}

/// The ranks of a run on several: where each trains, its own tokens/s and
/// peak memory in the latest report, and the scaling: the run's tokens/s
/// (all ranks) against one rank's (their mean).
#[component]
fn RanksPanel(rows: Vec<crate::dto::RankRow>, global: Option<f64>) -> impl IntoView {
    let rates: Vec<f64> = rows.iter().filter_map(|row| row.tokens_per_sec).collect();
    let one_rank = (!rates.is_empty()).then(|| rates.iter().sum::<f64>() / rates.len() as f64);
    let scaling = match (global, one_rank) {
        (Some(global), Some(one)) if one > 0.0 => format!(
            "{:.2}x one rank's tokens/s ({global:.0} against {one:.0}; {} ranks)",
            global / one,
            rows.len()
        ),
        _ => "– (after the first report)".to_string(),
    };
    let body = rows
        .into_iter()
        .map(|row| {
            view! {
                <tr data-rank=row.rank>
                    <td class="num">{row.rank}</td>
                    <td data-figure="place">{row.place}</td>
                    <td class="num" data-figure="tokens_per_sec">{format_optional(row.tokens_per_sec, 0)}</td>
                    <td class="num" data-figure="peak_memory_gb">{row.peak_memory_gb.map_or("–".into(), |gb| format!("{gb:.2} GB"))}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <div class="panel" id="ranks-panel">
            <h2>"Ranks"</h2>
            <p>"Scaling: " <span data-stat="scaling">{scaling}</span></p>
            <table id="ranks">
                <thead>
                    <tr><th class="num">"Rank"</th><th>"Where"</th><th class="num">"Tokens/s"</th><th class="num">"Peak memory"</th></tr>
                </thead>
                <tbody>{body}</tbody>
            </table>
        </div>
    }
}

/// A button that evaluates the run on one split (a plain form post).
fn evaluate_form(
    id: i64,
    split: &'static str,
    label: &'static str,
    primary: bool,
) -> impl IntoView {
    view! {
        <form method="post" action="/fn/runs/evaluate">
            <input type="hidden" name="id" value=id />
            <input type="hidden" name="split" value=split />
            <button type="submit" class:primary=primary id=format!("evaluate-{split}")>{label}</button>
        </form>
    }
}

/// "Evaluate on test split" and the evaluations stored for this run: the
/// loss of its best checkpoint on a split of its dataset, computed by the
/// inference worker as training's validation computes it.
#[component]
fn EvaluationSection(evaluations: RunEvaluations, active: bool, can_manage: bool) -> impl IntoView {
    let id = evaluations.run_id;
    let dataset = evaluations
        .dataset
        .clone()
        .unwrap_or_else(|| "(deleted)".into());
    let has_test = evaluations.has_split("test");
    let has_valid = evaluations.has_split("valid");
    let ready = evaluations.has_checkpoint && !active && evaluations.dataset.is_some();
    let note = if active {
        Some(
            "Evaluate once the run has stopped or finished: the worker slot is busy training."
                .to_string(),
        )
    } else if !evaluations.has_checkpoint {
        Some("Nothing to evaluate before the first checkpoint.".to_string())
    } else if evaluations.dataset.is_none() {
        Some("The run's dataset was deleted: nothing to evaluate on.".to_string())
    } else {
        None
    };
    let no_test = (evaluations.dataset.is_some() && !has_test).then(|| {
        let offer = if has_valid {
            " Evaluate on the valid split instead, or upload a test.jsonl with a new dataset."
        } else {
            ""
        };
        view! {
            <p class="notice" id="no-test-split">
                {format!("The run's dataset {dataset} has no test split.{offer}")}
            </p>
        }
    });
    let buttons = (can_manage && ready).then(|| {
        view! {
            <div class="actions">
                {has_test.then(|| evaluate_form(id, "test", "Evaluate on test split", true))}
                {has_valid.then(|| evaluate_form(id, "valid", "Evaluate on valid split", !has_test))}
            </div>
        }
    });
    let rows = evaluations
        .evaluations
        .iter()
        .map(|e| {
            view! {
                <tr data-evaluation=e.id data-split=e.split.clone()>
                    <td><time datetime=e.created_at.clone()>{e.created_at.clone()}</time></td>
                    <td class="num">{e.step.map_or_else(|| "–".to_string(), |s| s.to_string())}</td>
                    <td>{format!("{} · {}", e.dataset, e.split)}</td>
                    <td class="num" data-eval="loss">{format!("{:.4}", e.loss)}</td>
                    <td class="num" data-eval="perplexity">{format!("{:.3}", e.perplexity)}</td>
                    <td class="num" data-eval="tokens">{e.tokens}</td>
                </tr>
            }
        })
        .collect_view();
    let empty = evaluations.evaluations.is_empty();
    view! {
        <section class="panel" id="evaluations">
            <div class="toolbar">
                <h2>"Evaluations"</h2>
                <span class="spacer"></span>
                {buttons}
            </div>
            <p class="muted small">
                "The best checkpoint's loss on a split of the run's dataset, with the run's own batches and masking (as its validation loss is computed); perplexity = exp(loss)."
            </p>
            {no_test}
            {note.map(|note| view! { <p class="muted" id="evaluate-note">{note}</p> })}
            {if empty {
                view! { <p class="empty" id="evaluations-empty">"No evaluations yet."</p> }.into_any()
            } else {
                view! {
                    <table id="evaluations-table">
                        <thead>
                            <tr>
                                <th>"When"</th>
                                <th class="num">"Step"</th>
                                <th>"Dataset"</th>
                                <th class="num">"Loss"</th>
                                <th class="num">"Perplexity"</th>
                                <th class="num">"Tokens"</th>
                            </tr>
                        </thead>
                        <tbody>{rows}</tbody>
                    </table>
                }
                .into_any()
            }}
        </section>
    }
}
