//! One run: live loss chart, figures, checkpoints, log tail, config, actions.

use leptos::prelude::*;
use leptos_router::hooks::use_params_map;

use crate::chart::{LineChart, Series};
use crate::compare_dto::RunEvaluations;
use crate::dto::{RunDetail, TrainPoint};
use crate::layout::{Heading, Page};
use crate::pages::exports::RunExports;
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

/// What the loss chart's x-axis counts.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Axis {
    Step,
    Tokens,
    Epoch,
}

impl Axis {
    const ALL: [Axis; 3] = [Axis::Step, Axis::Tokens, Axis::Epoch];

    fn from_query(value: Option<&str>) -> Self {
        match value {
            Some("tokens") => Axis::Tokens,
            Some("epoch") => Axis::Epoch,
            _ => Axis::Step,
        }
    }

    fn key(self) -> &'static str {
        match self {
            Axis::Step => "step",
            Axis::Tokens => "tokens",
            Axis::Epoch => "epoch",
        }
    }

    fn of(self, point: &TrainPoint) -> f64 {
        match self {
            Axis::Step => point.step as f64,
            Axis::Tokens => point.trained_tokens as f64,
            Axis::Epoch => point.epoch,
        }
    }

    /// x at any step: between two reports linearly, before the first and
    /// after the last at the nearest report's rate. Validation happens at
    /// steps without a report of their own.
    fn at_step(self, step: f64, train: &[TrainPoint]) -> f64 {
        if self == Axis::Step {
            return step;
        }
        let rate = |point: &TrainPoint| self.of(point) / (point.step.max(1) as f64);
        let after = train.iter().position(|point| point.step as f64 >= step);
        match after {
            None => train.last().map_or(step, |last| {
                self.of(last) + (step - last.step as f64) * rate(last)
            }),
            Some(0) => step * rate(&train[0]),
            Some(i) => {
                let (a, b) = (&train[i - 1], &train[i]);
                let span = (b.step - a.step).max(1) as f64;
                self.of(a) + (self.of(b) - self.of(a)) * (step - a.step as f64) / span
            }
        }
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
    let axis = Axis::from_query(
        leptos_router::hooks::use_query_map()
            .with_untracked(|query| query.get("x"))
            .as_deref(),
    );
    let series = vec![
        Series {
            key: "train",
            label: "train loss",
            points: detail
                .train
                .iter()
                .map(|point| (axis.of(point), point.train_loss))
                .collect(),
        },
        Series {
            key: "valid",
            label: "validation loss",
            points: detail
                .valid
                .iter()
                .map(|point| {
                    (
                        axis.at_step(point.step as f64, &detail.train),
                        point.val_loss,
                    )
                })
                .collect(),
        },
    ];
    let x_extent = axis.at_step(summary.total_steps as f64, &detail.train);
    let axis_links = Axis::ALL
        .iter()
        .map(|&choice| {
            let current = (choice == axis).then_some("true");
            view! {
                <a href=format!("?x={}", choice.key()) aria-current=current>{choice.key()}</a>
            }
        })
        .collect_view();
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
            {(can_run && summary.is_resumable()).then(|| view! {
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
        >
            <Heading text=summary.name.clone() />
            <span class=format!("status {}", summary.status) id="run-status">{summary.status.clone()}</span>
            <span class="spacer"></span>
            {actions}
        </div>
        {detail.failure.clone().map(|failure| view! {
            <div class="error-box" id="failure"><strong>"Failed: "</strong>{failure}</div>
        })}
        <p class="muted">{format!("{} on {}", summary.model, summary.dataset)}</p>
        <div class="stats">
            <Stat label="Step" key="step" value=if summary.total_steps == 0 { format!("{}/–", summary.step) } else { format!("{}/{}", summary.step, summary.total_steps) } />
            {summary.phase().map(|phase| view! { <Stat label="Now" key="phase" value=phase.to_string() /> })}
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
                <LineChart id="loss-chart" series x_extent x_axis=axis.key() />
                <nav class="axis-choice muted small">"x-axis: " {axis_links}</nav>
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

#[cfg(test)]
mod tests {
    use super::*;

    fn report(step: u64, trained_tokens: u64, epoch: f64) -> TrainPoint {
        TrainPoint {
            step,
            epoch,
            train_loss: 1.0,
            learning_rate: 1e-4,
            tokens_per_sec: 1.0,
            trained_tokens,
            peak_memory_gb: 1.0,
        }
    }

    #[test]
    fn validation_steps_map_onto_tokens_and_epochs() {
        let train = [report(5, 500, 0.5), report(10, 1100, 1.0)];
        assert_eq!(Axis::Step.at_step(7.0, &train), 7.0);
        assert_eq!(Axis::Tokens.at_step(0.0, &train), 0.0);
        assert_eq!(Axis::Tokens.at_step(4.0, &train), 400.0);
        assert_eq!(Axis::Tokens.at_step(7.5, &train), 800.0);
        assert_eq!(Axis::Tokens.at_step(20.0, &train), 2200.0);
        assert_eq!(Axis::Epoch.at_step(10.0, &train), 1.0);
        assert_eq!(Axis::Epoch.at_step(0.0, &[]), 0.0);
    }
}
