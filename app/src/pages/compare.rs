//! Compare adapters side by side: the form (`/compare`), a saved comparison
//! (`/compare/:id`, a stable URL to share) and its blind vote
//! (`/compare/:id/vote`). Without JavaScript the form post waits for every
//! output and the page shows them finished; `/assets/compare.js` instead
//! posts to the JSON API and streams the outputs into their columns.
//! A saved comparison also shows each column's loss and perplexity on a
//! chosen dataset split (`/compare/:id?dataset=NAME&split=valid`), and a
//! running one has a Stop button.

use leptos::prelude::*;
use leptos_router::hooks::{use_params_map, use_query_map};
use serde::{Deserialize, Serialize};

use crate::compare_dto::{
    AdapterChoice, Ballot, ColumnView, CompareChoices, ComparisonEvaluations, ComparisonView,
    ImportAdapterForm, NewComparisonForm, PromptView,
};
use crate::dto::DatasetSummary;
use crate::layout::{Heading, Page};
use crate::pages::{format_optional, posted_error, ErrorBox};

/// Column pickers on the form: the "up to 6 adapters".
const COLUMN_SLOTS: usize = 6;

#[server(prefix = "/fn", endpoint = "compare/choices")]
pub async fn comparison_choices() -> Result<CompareChoices, ServerFnError> {
    let backend = expect_context::<crate::SharedBackend>();
    backend.compare_choices().map_err(ServerFnError::new)
}

#[server(prefix = "/fn", endpoint = "compare/create")]
pub async fn create_comparison(form: NewComparisonForm) -> Result<(), ServerFnError> {
    let backend = expect_context::<crate::SharedBackend>();
    let id = backend
        .create_comparison(form)
        .map_err(ServerFnError::new)?;
    // A plain form post cannot stream: answer once every output is there.
    backend.wait_comparison(id).await;
    backend.redirect(&format!("/compare/{id}"));
    Ok(())
}

#[server(prefix = "/fn", endpoint = "compare/detail")]
pub async fn load_comparison(id: i64) -> Result<Option<ComparisonView>, ServerFnError> {
    let backend = expect_context::<crate::SharedBackend>();
    backend.comparison(id).map_err(ServerFnError::new)
}

#[server(prefix = "/fn", endpoint = "compare/ballot")]
pub async fn load_ballot(id: i64, prompt: usize) -> Result<Option<Ballot>, ServerFnError> {
    let backend = expect_context::<crate::SharedBackend>();
    backend.ballot(id, prompt).map_err(ServerFnError::new)
}

#[server(prefix = "/fn", endpoint = "compare/vote")]
pub async fn cast_vote(id: i64, prompt: usize, output: i64) -> Result<(), ServerFnError> {
    let backend = expect_context::<crate::SharedBackend>();
    backend
        .vote(id, prompt, output)
        .map_err(ServerFnError::new)?;
    let prompts = backend
        .comparison(id)
        .map_err(ServerFnError::new)?
        .map_or(0, |c| c.prompts.len());
    if prompt + 1 < prompts {
        backend.redirect(&format!("/compare/{id}/vote?prompt={}", prompt + 1));
    } else {
        backend.redirect(&format!("/compare/{id}?voted=1"));
    }
    Ok(())
}

/// What the comparison page's loss section needs: the datasets to pick
/// from, and each column's stored loss on the chosen one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvaluationChoices {
    pub datasets: Vec<DatasetSummary>,
    pub evaluations: Option<ComparisonEvaluations>,
}

#[server(prefix = "/fn", endpoint = "compare/evaluations")]
pub async fn load_comparison_evaluations(
    id: i64,
    dataset: Option<String>,
    split: Option<String>,
) -> Result<EvaluationChoices, ServerFnError> {
    let backend = expect_context::<crate::SharedBackend>();
    let datasets = backend.list_datasets().map_err(ServerFnError::new)?;
    let evaluations = match dataset.filter(|d| !d.trim().is_empty()) {
        Some(dataset) => Some(
            backend
                .comparison_evaluations(id, dataset, split.unwrap_or_else(|| "valid".into()))
                .map_err(ServerFnError::new)?,
        ),
        None => None,
    };
    Ok(EvaluationChoices {
        datasets,
        evaluations,
    })
}

/// Evaluates every column on a dataset split (through the inference worker
/// that keeps the base loaded), then shows the comparison with the losses.
/// A plain form post: it waits for the numbers.
#[server(prefix = "/fn", endpoint = "compare/evaluate")]
pub async fn evaluate_comparison(
    id: i64,
    dataset: String,
    split: String,
) -> Result<(), ServerFnError> {
    let backend = expect_context::<crate::SharedBackend>();
    let result = backend
        .evaluate_comparison(id, dataset, split)
        .await
        .map_err(ServerFnError::new)?;
    backend.redirect(&format!(
        "/compare/{id}?dataset={}&split={}#losses",
        query_escape(&result.dataset),
        query_escape(&result.split)
    ));
    Ok(())
}

/// Stops a comparison being generated: the output in progress keeps its
/// text, the rest are not generated.
#[server(prefix = "/fn", endpoint = "compare/cancel")]
pub async fn cancel_comparison(id: i64) -> Result<(), ServerFnError> {
    let backend = expect_context::<crate::SharedBackend>();
    backend
        .cancel_comparison(id)
        .await
        .map_err(ServerFnError::new)?;
    backend.redirect(&format!("/compare/{id}"));
    Ok(())
}

/// Percent-encodes a query value (dataset names may hold spaces).
fn query_escape(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[server(prefix = "/fn", endpoint = "compare/import")]
pub async fn import_adapter(form: ImportAdapterForm) -> Result<(), ServerFnError> {
    let backend = expect_context::<crate::SharedBackend>();
    backend.import_adapter(form).map_err(ServerFnError::new)?;
    backend.redirect("/compare?imported=1");
    Ok(())
}

#[component]
pub fn ComparePage() -> impl IntoView {
    let choices = Resource::new_blocking(|| (), |_| comparison_choices());
    let error = posted_error();
    let imported = use_query_map().with_untracked(|q| q.get("imported").is_some());
    view! {
        <Page current="/compare">
            <Heading text="Compare adapters" />
            <ErrorBox message=error />
            <div class="error-box" id="compare-error" role="alert" hidden></div>
            {imported.then(|| view! { <p class="notice" id="imported">"Adapter imported."</p> })}
            <Suspense fallback=|| view! { <p class="muted">"Loading..."</p> }>
                {move || Suspend::new(async move {
                    match choices.await {
                        Ok(_) if !crate::role::current_role().can_manage() => view! {
                            <p class="notice" id="viewer-note">
                                "You are viewing: saved comparisons open from their links; starting one, importing an adapter or voting needs the owner's or an operator's link."
                            </p>
                        }
                        .into_any(),
                        Ok(choices) => view! { <CompareForm choices /> }.into_any(),
                        Err(error) => view! {
                            <p class="error-box">{format!("Could not load the choices: {error}")}</p>
                        }
                        .into_any(),
                    }
                })}
            </Suspense>
        </Page>
    }
}

fn adapter_options(adapters: &[AdapterChoice], selected: Option<&str>) -> impl IntoView {
    let empty_selected = selected.is_none();
    let options = adapters
        .iter()
        .map(|choice| {
            let label = match &choice.model {
                Some(model) => format!("{} · {model}", choice.label),
                None => choice.label.clone(),
            };
            let is_selected = selected == Some(choice.reference.as_str());
            view! { <option value=choice.reference.clone() selected=is_selected>{label}</option> }
        })
        .collect_view();
    view! {
        <option value="" selected=empty_selected>"(none)"</option>
        {options}
    }
}

#[component]
fn CompareForm(choices: CompareChoices) -> impl IntoView {
    // `/compare?model=M&column_1=base&column_2=run:3...` (the runs
    // comparison's link) fills the form in.
    let (prefill_model, prefill_columns) = use_query_map().with_untracked(|query| {
        let columns: Vec<Option<String>> = (1..=COLUMN_SLOTS)
            .map(|slot| {
                query
                    .get(&format!("column_{slot}"))
                    .filter(|c| !c.is_empty())
            })
            .collect();
        (query.get("model"), columns)
    });
    let prefilled = prefill_columns.iter().any(Option::is_some);
    let model_options = choices
        .models
        .iter()
        .map(|m| {
            let selected = prefill_model.as_deref() == Some(m.name.as_str());
            view! { <option value=m.name.clone() selected=selected>{m.name.clone()}</option> }
        })
        .collect_view();
    let import_model_options = choices
        .models
        .iter()
        .map(|m| view! { <option value=m.name.clone()>{m.name.clone()}</option> })
        .collect_view();
    let dataset_options = choices
        .datasets
        .iter()
        .map(|d| {
            let label = format!(
                "{} ({} valid / {} test)",
                d.name, d.valid_count, d.test_count
            );
            view! { <option value=d.name.clone()>{label}</option> }
        })
        .collect_view();
    // The first two pickers start on the base and the newest adapter, the
    // most common comparison.
    let newest = choices
        .adapters
        .iter()
        .find(|a| a.reference != "base")
        .map(|a| a.reference.clone());
    let columns = (1..=COLUMN_SLOTS)
        .map(|slot| {
            let selected = match slot {
                _ if prefilled => prefill_columns[slot - 1].clone(),
                1 => Some("base".to_string()),
                2 => newest.clone(),
                _ => None,
            };
            let name = format!("form[column_{slot}]");
            view! {
                <label>
                    <span>{format!("Column {slot}")}</span>
                    <select name=name id=format!("column-{slot}")>
                        {adapter_options(&choices.adapters, selected.as_deref())}
                    </select>
                </label>
            }
        })
        .collect_view();
    let recent = choices.recent.clone();
    view! {
        <form class="stacked panel" method="post" action="/fn/compare/create" id="compare-form">
            <div class="grid-2">
                <div>
                    <label>
                        <span>"Base model"</span>
                        <select name="form[model]" id="compare-model" required>{model_options}</select>
                    </label>
                    <div class="columns-picker">{columns}</div>
                </div>
                <div>
                    <fieldset>
                        <legend>"Prompts"</legend>
                        <label class="inline">
                            <input type="radio" name="form[source]" value="typed" checked />
                            " A prompt I type"
                        </label>
                        <label>
                            <span>"Prompt"</span>
                            <textarea name="form[prompt]" id="compare-prompt" rows="3" placeholder="Ask something..."></textarea>
                        </label>
                        <label>
                            <span>"System message (optional)"</span>
                            <input type="text" name="form[system]" />
                        </label>
                        <label class="inline">
                            <input type="radio" name="form[source]" value="dataset" id="source-dataset" />
                            " Prompts from a dataset (its reference answers shown)"
                        </label>
                        <label>
                            <span>"Dataset"</span>
                            <select name="form[dataset]" id="compare-dataset">{dataset_options}</select>
                        </label>
                        <label>
                            <span>"Split"</span>
                            <select name="form[split]">
                                <option value="valid" selected>"valid"</option>
                                <option value="test">"test"</option>
                            </select>
                        </label>
                        <label>
                            <span>"How many prompts (the split's first N)"</span>
                            <input type="number" name="form[count]" id="compare-count" value="3" min="1" max="20" />
                        </label>
                    </fieldset>
                    <fieldset>
                        <legend>"Generation (the same for every column)"</legend>
                        <label><span>"Max tokens"</span><input type="number" name="form[max_tokens]" value="128" min="1" max="1024" /></label>
                        <label><span>"Temperature (0 = greedy)"</span><input type="number" name="form[temperature]" value="0" min="0" step="any" /></label>
                        <label><span>"Top-p"</span><input type="number" name="form[top_p]" value="1" min="0" max="1" step="any" /></label>
                        <label><span>"Top-k (0 = off)"</span><input type="number" name="form[top_k]" value="0" min="0" /></label>
                        <label><span>"Repetition penalty (1 = off)"</span><input type="number" name="form[repetition_penalty]" value="1" min="0" step="any" /></label>
                        <label><span>"Seed"</span><input type="number" name="form[seed]" value="0" min="0" /></label>
                    </fieldset>
                </div>
            </div>
            <button type="submit" class="primary" id="compare-start">"Compare"</button>
        </form>
        <h2>"Import an adapter"</h2>
        <form class="stacked panel" method="post" action="/fn/compare/import" id="import-form">
            <p class="muted">"A folder on this machine in mlx-lm's layout: adapters.safetensors and adapter_config.json."</p>
            <div class="grid-2">
                <label><span>"Name"</span><input type="text" name="form[name]" required maxlength="100" /></label>
                <label><span>"Folder"</span><input type="text" name="form[path]" required placeholder="/path/to/adapters" /></label>
                <label>
                    <span>"Trained on"</span>
                    <select name="form[model]">
                        <option value="">"(unknown)"</option>
                        {import_model_options}
                    </select>
                </label>
            </div>
            <button type="submit" id="import-start">"Import"</button>
        </form>
        <h2>"Saved comparisons"</h2>
        <div class="panel">
            {if recent.is_empty() {
                view! { <p class="empty" id="comparisons-empty">"No comparisons yet."</p> }.into_any()
            } else {
                let rows = recent
                    .into_iter()
                    .map(|c| {
                        view! {
                            <tr>
                                <td><a href=format!("/compare/{}", c.id)>{format!("#{}", c.id)}</a></td>
                                <td>{c.model}</td>
                                <td>{c.columns.join(" · ")}</td>
                                <td class="num">{c.prompts}</td>
                                <td><span class=format!("status {}", c.status)>{c.status.clone()}</span></td>
                                <td><time datetime=c.created_at.clone()>{c.created_at.clone()}</time></td>
                            </tr>
                        }
                    })
                    .collect_view();
                view! {
                    <table id="comparisons">
                        <thead><tr><th>"Id"</th><th>"Model"</th><th>"Columns"</th><th class="num">"Prompts"</th><th>"Status"</th><th>"Created"</th></tr></thead>
                        <tbody>{rows}</tbody>
                    </table>
                }
                .into_any()
            }}
        </div>
    }
}

fn route_id() -> Option<i64> {
    use_params_map().with_untracked(|params| params.get("id").and_then(|id| id.parse().ok()))
}

#[component]
pub fn ComparisonPage() -> impl IntoView {
    let id = route_id();
    let detail = Resource::new_blocking(
        move || id,
        |id| async move {
            match id {
                Some(id) => load_comparison(id).await,
                None => Ok(None),
            }
        },
    );
    let (dataset, split) = use_query_map().with_untracked(|q| (q.get("dataset"), q.get("split")));
    let choices = Resource::new_blocking(
        move || (id, dataset.clone(), split.clone()),
        |(id, dataset, split)| async move {
            match id {
                Some(id) => load_comparison_evaluations(id, dataset, split)
                    .await
                    .map(Some),
                None => Ok(None),
            }
        },
    );
    let error = posted_error();
    let voted = use_query_map().with_untracked(|q| q.get("voted").is_some());
    view! {
        <Page current="/compare">
            <ErrorBox message=error />
            {voted.then(|| view! { <p class="notice" id="voted">"Thanks, your votes are in."</p> })}
            <Suspense fallback=|| view! { <p class="muted">"Loading..."</p> }>
                {move || Suspend::new(async move {
                    // A dataset that cannot be evaluated (deleted, renamed)
                    // should not hide the comparison itself.
                    let (choices, choices_error) = match choices.await {
                        Ok(choices) => (choices, None),
                        Err(error) => (None, Some(crate::pages::server_error_text(&error.to_string()))),
                    };
                    match detail.await {
                        Ok(Some(comparison)) => view! {
                            <ErrorBox message=choices_error />
                            <ComparisonBody comparison choices />
                        }
                        .into_any(),
                        Ok(None) => view! { <Heading text="No such comparison" /> }.into_any(),
                        Err(error) => view! {
                            <p class="error-box">{format!("Could not load the comparison: {error}")}</p>
                        }
                        .into_any(),
                    }
                })}
            </Suspense>
        </Page>
    }
}

fn percent(value: Option<f64>) -> String {
    value.map_or_else(|| "–".into(), |v| format!("{:.0}%", v * 100.0))
}

#[component]
fn ColumnsTable(
    columns: Vec<ColumnView>,
    evaluations: Option<ComparisonEvaluations>,
) -> impl IntoView {
    let eval_head = evaluations.as_ref().map(|e| {
        let on = format!("{} · {}", e.dataset, e.split);
        view! {
            <th class="num">{format!("Loss ({on})")}</th>
            <th class="num">{format!("Ppl ({on})")}</th>
        }
    });
    let rows = columns
        .into_iter()
        .map(|c| {
            let label = match c.run_id {
                Some(run) => view! { <a href=format!("/runs/{run}")>{c.label.clone()}</a> }.into_any(),
                None => view! { <span>{c.label.clone()}</span> }.into_any(),
            };
            let eval_cells = evaluations.as_ref().map(|e| {
                let found = e.columns.get(c.position).cloned().flatten();
                let title = found.as_ref().map(|f| {
                    format!("{}: {} tokens in {} batches, {}", f.label, f.tokens, f.batches, f.created_at)
                });
                view! {
                    <td class="num" data-column-eval-loss=c.position title=title.clone()>
                        {format_optional(found.as_ref().map(|f| f.loss), 4)}
                    </td>
                    <td class="num" data-column-eval-ppl=c.position title=title>
                        {format_optional(found.as_ref().map(|f| f.perplexity), 3)}
                    </td>
                }
            });
            view! {
                <tr data-column=c.position>
                    <td>{label}</td>
                    {eval_cells}
                    <td class="num">{format_optional(c.val_loss, 3)}</td>
                    <td class="num">{format_optional(c.val_perplexity, 2)}</td>
                    <td class="num">{format_optional(c.test_loss, 3)}</td>
                    <td class="num">{format_optional(c.test_perplexity, 2)}</td>
                    <td class="num" data-column-speed=c.position>{format_optional(c.tokens_per_sec, 1)}</td>
                    <td class="num" data-column-wins=c.position>{c.wins}</td>
                    <td class="num" data-column-win-rate=c.position>{percent(c.win_rate)}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <table id="columns">
            <thead>
                <tr>
                    <th>"Column"</th>
                    {eval_head}
                    <th class="num">"Val loss"</th>
                    <th class="num">"Val ppl"</th>
                    <th class="num">"Test loss"</th>
                    <th class="num">"Test ppl"</th>
                    <th class="num">"Tokens/s"</th>
                    <th class="num">"Votes won"</th>
                    <th class="num">"Win rate"</th>
                </tr>
            </thead>
            <tbody>{rows}</tbody>
        </table>
    }
}

#[component]
fn PromptBlock(prompt: PromptView, labels: Vec<String>) -> impl IntoView {
    let columns = prompt.outputs.len().max(1);
    let outputs = prompt
        .outputs
        .into_iter()
        .map(|output| {
            let label = labels.get(output.column).cloned().unwrap_or_default();
            let figures = match (output.generated_tokens, output.tokens_per_sec) {
                (Some(0), _) if output.status == "cancelled" => {
                    "stopped before it started".to_string()
                }
                (Some(tokens), Some(speed)) => format!(
                    "{tokens} token{} · {speed:.1} tok/s · {}",
                    if tokens == 1 { "" } else { "s" },
                    output.finish_reason.clone().unwrap_or_default()
                ),
                _ => String::new(),
            };
            view! {
                <div class=format!("output {}", output.status) data-output=output.id data-column=output.column>
                    <div class="output-head">
                        <strong>{label}</strong>
                        <span class="output-status">{output.status.clone()}</span>
                    </div>
                    <pre class="output-text">{output.text.clone()}</pre>
                    {output.error.clone().map(|e| view! { <p class="field-error output-error">{e}</p> })}
                    <div class="output-figures muted">{figures}</div>
                </div>
            }
        })
        .collect_view();
    view! {
        <section class="prompt panel" data-prompt=prompt.position>
            <h3>{format!("Prompt {}", prompt.position + 1)}
                {prompt.origin.clone().map(|o| view! { <span class="muted">{format!(" · {o}")}</span> })}
            </h3>
            <pre class="prompt-text">{prompt.display.clone()}</pre>
            {prompt.reference.clone().map(|r| view! {
                <details class="reference" open>
                    <summary>"Reference answer"</summary>
                    <pre>{r}</pre>
                </details>
            })}
            <div class="outputs" style=format!("grid-template-columns: repeat({columns}, minmax(0, 1fr))")>
                {outputs}
            </div>
        </section>
    }
}

/// Picks a dataset split to compute each column's loss on (a plain form).
/// It starts on the dataset last evaluated, else the comparison's own
/// (its prompts came from it), else the first one runs can use.
#[component]
fn EvaluateForm(id: i64, choices: EvaluationChoices, own_dataset: Option<String>) -> impl IntoView {
    let chosen = choices
        .evaluations
        .as_ref()
        .map(|e| e.dataset.clone())
        .or(own_dataset)
        .or_else(|| {
            choices
                .datasets
                .iter()
                .find(|d| d.problems == 0)
                .map(|d| d.name.clone())
        });
    let chosen_split = choices
        .evaluations
        .as_ref()
        .map_or_else(|| "valid".to_string(), |e| e.split.clone());
    let options = choices
        .datasets
        .iter()
        .map(|d| {
            let selected = chosen.as_deref() == Some(d.name.as_str());
            let label = format!(
                "{} ({} train / {} valid / {} test)",
                d.name, d.train_count, d.valid_count, d.test_count
            );
            view! { <option value=d.name.clone() selected=selected>{label}</option> }
        })
        .collect_view();
    let splits = ["valid", "test", "train"]
        .into_iter()
        .map(|split| {
            view! { <option value=split selected=chosen_split == split>{split}</option> }
        })
        .collect_view();
    view! {
        <form method="post" action="/fn/compare/evaluate" class="inline-form" id="evaluate-form">
            <input type="hidden" name="id" value=id />
            <label>
                <span>"Dataset"</span>
                <select name="dataset" id="evaluate-dataset">{options}</select>
            </label>
            <label>
                <span>"Split"</span>
                <select name="split" id="evaluate-split">{splits}</select>
            </label>
            <button type="submit" id="evaluate-columns">"Loss and perplexity per column"</button>
        </form>
    }
}

#[component]
fn ComparisonBody(comparison: ComparisonView, choices: Option<EvaluationChoices>) -> impl IntoView {
    let id = comparison.id;
    let live = comparison
        .is_running()
        .then(|| format!("/api/compare/{id}/events"));
    let labels: Vec<String> = comparison.columns.iter().map(|c| c.label.clone()).collect();
    let s = &comparison.settings;
    let settings = format!(
        "max {} tokens · temperature {} · top-p {} · top-k {} · repetition penalty {} · seed {}",
        s.max_tokens, s.temperature, s.top_p, s.top_k, s.repetition_penalty, s.seed
    );
    let source = match (&comparison.dataset, &comparison.split) {
        (Some(dataset), Some(split)) => format!("prompts from {dataset} ({split})"),
        _ => "a typed prompt".into(),
    };
    let prompts = comparison
        .prompts
        .clone()
        .into_iter()
        .map(|prompt| view! { <PromptBlock prompt labels=labels.clone() /> })
        .collect_view();
    let can_manage = crate::role::current_role().can_manage();
    let can_vote = !comparison.is_running() && comparison.columns.len() > 1 && can_manage;
    let can_stop = comparison.is_running() && can_manage;
    let evaluations = choices.as_ref().and_then(|c| c.evaluations.clone());
    let evaluate_form = choices.filter(|_| can_manage).map(|choices| {
        let own_dataset = comparison.dataset.clone();
        view! { <EvaluateForm id choices own_dataset /> }
    });
    view! {
        <div class="toolbar" data-live-compare=live>
            <Heading text=format!("Comparison #{id}") />
            <span class=format!("status {}", comparison.status) id="compare-status">{comparison.status.clone()}</span>
            <span class="spacer"></span>
            <div class="actions">
                {can_stop.then(|| view! {
                    <form method="post" action="/fn/compare/cancel" id="compare-stop-form">
                        <input type="hidden" name="id" value=id />
                        <button type="submit" class="danger" id="compare-stop">"Stop"</button>
                    </form>
                })}
                {can_vote.then(|| view! {
                    <a class="button primary" id="vote-link" href=format!("/compare/{id}/vote?prompt=0")>"Blind vote"</a>
                })}
                <a class="button" href="/compare">"New comparison"</a>
            </div>
        </div>
        {comparison.failure.clone().map(|f| view! { <div class="error-box" id="compare-failure">{f}</div> })}
        <p class="muted">{format!("{} on {}, {}; {settings}", labels.join(" vs "), comparison.model, source)}</p>
        <div class="panel" id="losses">
            <ColumnsTable columns=comparison.columns.clone() evaluations />
            <p class="muted" id="vote-count">{format!("{} blind votes", comparison.votes)}</p>
            {evaluate_form}
        </div>
        {prompts}
    }
}

#[component]
pub fn VotePage() -> impl IntoView {
    let id = route_id();
    let prompt = use_query_map().with_untracked(|q| {
        q.get("prompt")
            .and_then(|p| p.parse::<usize>().ok())
            .unwrap_or(0)
    });
    let ballot = Resource::new_blocking(
        move || (id, prompt),
        |(id, prompt)| async move {
            match id {
                Some(id) => load_ballot(id, prompt).await,
                None => Ok(None),
            }
        },
    );
    let error = posted_error();
    view! {
        <Page current="/compare">
            <ErrorBox message=error />
            <Suspense fallback=|| view! { <p class="muted">"Loading..."</p> }>
                {move || Suspend::new(async move {
                    match ballot.await {
                        Ok(Some(ballot)) => view! { <BallotView ballot /> }.into_any(),
                        Ok(None) => view! { <Heading text="Nothing to vote on here" /> }.into_any(),
                        Err(error) => view! {
                            <p class="error-box">{format!("Could not load the outputs: {error}")}</p>
                        }
                        .into_any(),
                    }
                })}
            </Suspense>
        </Page>
    }
}

#[component]
fn BallotView(ballot: Ballot) -> impl IntoView {
    let id = ballot.comparison;
    let prompt = ballot.prompt;
    let columns = ballot.options.len().max(1);
    let can_vote = crate::role::current_role().can_manage();
    let options = ballot
        .options
        .iter()
        .map(|(letter, output, text)| {
            view! {
                <div class="output ballot-option">
                    <div class="output-head"><strong>{format!("Output {letter}")}</strong></div>
                    <pre class="output-text">{text.clone()}</pre>
                    {can_vote.then(|| view! {
                        <form method="post" action="/fn/compare/vote">
                            <input type="hidden" name="id" value=id />
                            <input type="hidden" name="prompt" value=prompt />
                            <input type="hidden" name="output" value=*output />
                            <button type="submit" class="primary" data-vote=letter.clone()>{format!("{letter} is best")}</button>
                        </form>
                    })}
                </div>
            }
        })
        .collect_view();
    view! {
        <Heading text=format!("Blind vote · prompt {} of {}", prompt + 1, ballot.prompts) />
        <p class="muted">"The outputs are shuffled and unlabelled. Pick the one you like best."</p>
        <section class="prompt panel">
            <pre class="prompt-text">{ballot.display.clone()}</pre>
            {ballot.reference.clone().map(|r| view! {
                <details class="reference">
                    <summary>"Reference answer"</summary>
                    <pre>{r}</pre>
                </details>
            })}
            <div class="outputs" style=format!("grid-template-columns: repeat({columns}, minmax(0, 1fr))")>
                {options}
            </div>
        </section>
        <p><a href=format!("/compare/{id}")>"Skip to the results"</a></p>
    }
}
