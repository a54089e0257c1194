//! The models and datasets this Loralab knows.

use leptos::prelude::*;

use crate::dto::{DatasetSummary, ModelSummary, PullView};
use crate::layout::{Heading, Page};

#[server(prefix = "/fn", endpoint = "models/list")]
pub async fn list_models() -> Result<Vec<ModelSummary>, ServerFnError> {
    let backend = expect_context::<crate::SharedBackend>();
    backend.list_models().map_err(ServerFnError::new)
}

#[server(prefix = "/fn", endpoint = "models/import")]
pub async fn import_model(name: Option<String>, path: String) -> Result<(), ServerFnError> {
    let backend = expect_context::<crate::SharedBackend>();
    backend
        .import_model(name, path)
        .map_err(ServerFnError::new)?;
    backend.redirect("/models");
    Ok(())
}

/// Starts a pull from the Hugging Face Hub and comes back to the page that
/// asked, which shows the pull (live with JavaScript, on reload without):
/// the models page, or the new-run page when `then` is `new-run` (that page
/// picks the model once it is pulled).
#[server(prefix = "/fn", endpoint = "models/pull")]
pub async fn pull_model(
    repo: String,
    revision: Option<String>,
    then: Option<String>,
) -> Result<(), ServerFnError> {
    let backend = expect_context::<crate::SharedBackend>();
    let id = backend
        .start_pull(repo, revision)
        .map_err(ServerFnError::new)?;
    if then.as_deref() == Some("new-run") {
        backend.redirect(&format!("/runs/new?pull={id}"));
    } else {
        backend.redirect(&format!("/models#pull-{id}"));
    }
    Ok(())
}

/// The pulls of this server's lifetime; none for viewers.
#[server(prefix = "/fn", endpoint = "models/pulls")]
pub async fn list_pulls() -> Result<Vec<PullView>, ServerFnError> {
    if !crate::role::current_role().can_manage() {
        return Ok(Vec::new());
    }
    let backend = expect_context::<crate::SharedBackend>();
    Ok(backend.list_pulls())
}

/// Pulls a failed pull's model again, back to the page that asked (see
/// [`pull_model`]).
#[server(prefix = "/fn", endpoint = "models/pulls/retry")]
pub async fn retry_pull(id: u64, then: Option<String>) -> Result<(), ServerFnError> {
    let backend = expect_context::<crate::SharedBackend>();
    let id = backend.retry_pull(id).map_err(ServerFnError::new)?;
    if then.as_deref() == Some("new-run") {
        backend.redirect(&format!("/runs/new?pull={id}"));
    } else {
        backend.redirect(&format!("/models#pull-{id}"));
    }
    Ok(())
}

#[server(prefix = "/fn", endpoint = "models/pulls/dismiss")]
pub async fn dismiss_pull(id: u64, then: Option<String>) -> Result<(), ServerFnError> {
    let backend = expect_context::<crate::SharedBackend>();
    backend.dismiss_pull(id).map_err(ServerFnError::new)?;
    backend.redirect(if then.as_deref() == Some("new-run") {
        "/runs/new"
    } else {
        "/models"
    });
    Ok(())
}

#[server(prefix = "/fn", endpoint = "models/delete")]
pub async fn delete_model(id: i64) -> Result<(), ServerFnError> {
    let backend = expect_context::<crate::SharedBackend>();
    backend.delete_model(id).map_err(ServerFnError::new)?;
    backend.redirect("/models");
    Ok(())
}

#[server(prefix = "/fn", endpoint = "datasets/list")]
pub async fn list_datasets() -> Result<Vec<DatasetSummary>, ServerFnError> {
    let backend = expect_context::<crate::SharedBackend>();
    backend.list_datasets().map_err(ServerFnError::new)
}

/// Bytes as a short human figure (binary units, as file managers show).
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Parameter counts the way model cards write them: 135M, 1.5B.
pub(crate) fn format_parameters(count: u64) -> String {
    match count {
        0..=999_999 => format!("{:.0}K", count as f64 / 1e3),
        1_000_000..=999_999_999 => format!("{:.0}M", count as f64 / 1e6),
        _ => format!("{:.1}B", count as f64 / 1e9),
    }
}

#[component]
pub fn ModelsPage() -> impl IntoView {
    let models = Resource::new_blocking(|| (), |_| list_models());
    let error = crate::pages::posted_error();
    view! {
        <Page current="/models">
            <Heading text="Models" />
            <crate::pages::ErrorBox message=error />
            <div class="panel">
                <Suspense fallback=|| view! { <p class="muted">"Loading..."</p> }>
                    {move || Suspend::new(async move {
                        match models.await {
                            Ok(models) if models.is_empty() => view! {
                                <p class="empty">"No models yet."</p>
                            }
                            .into_any(),
                            Ok(models) => view! { <ModelsTable models /> }.into_any(),
                            Err(error) => view! {
                                <p class="error-box">{format!("Could not load models: {error}")}</p>
                            }
                            .into_any(),
                        }
                    })}
                </Suspense>
            </div>
            {crate::role::current_role().can_manage().then(|| view! {
                <PullsPanel />
                <PullModelForm />
                <ImportModelForm />
            })}
        </Page>
    }
}

/// Pulls of this server's lifetime: a bar, bytes and speed each, and their
/// files. `/assets/pulls.js` follows running ones over SSE.
#[component]
fn PullsPanel() -> impl IntoView {
    let pulls = Resource::new_blocking(|| (), |_| list_pulls());
    view! {
        <Suspense fallback=|| ()>
            {move || Suspend::new(async move {
                let pulls = pulls.await.unwrap_or_default();
                (!pulls.is_empty()).then(|| {
                    let running = pulls.iter().any(|pull| pull.status == "running");
                    view! {
                        <div class="panel" id="pulls">
                            <h2>"Pulls from the Hub"</h2>
                            // Without JavaScript, the page follows a pull by reloading (to
                            // the bare URL: one with the #pull-N fragment would only scroll).
                            {running.then(|| view! { <noscript><meta http-equiv="refresh" content="3; url=/models" /></noscript> })}
                            {pulls.into_iter().map(|pull| view! { <PullItem pull /> }).collect_view()}
                        </div>
                    }
                })
            })}
        </Suspense>
    }
}

/// "12.5 MiB of 270.0 MiB, 4.2 MiB/s"; the same text pulls.js writes.
pub(crate) fn pull_bytes_text(pull: &PullView) -> String {
    let mut text = format!(
        "{} of {}",
        format_bytes(pull.done_bytes),
        format_bytes(pull.total_bytes)
    );
    if pull.status == "done" && pull.from_cache {
        text.push_str(", all from the cache");
    } else if pull.bytes_per_sec > 0.0 {
        text.push_str(&format!(", {}/s", format_bytes(pull.bytes_per_sec as u64)));
    }
    text
}

/// One pull. `on_new_run`: shown on the new-run page, which picks the
/// pulled model itself.
#[component]
pub(crate) fn PullItem(pull: PullView, #[prop(optional)] on_new_run: bool) -> impl IntoView {
    let width = format!("width: {:.1}%", pull.progress() * 100.0);
    let events =
        (pull.status == "running").then(|| format!("/api/models/pulls/{}/events", pull.id));
    let files = pull
        .files
        .iter()
        .map(|file| {
            let state = if file.cached {
                format!("{}, in the cache", format_bytes(file.size))
            } else {
                format!(
                    "{} of {}",
                    format_bytes(file.done.min(file.size)),
                    format_bytes(file.size)
                )
            };
            view! {
                <li data-file=file.name.clone()>
                    <code>{file.name.clone()}</code>" "<span class="muted file-bytes">{state}</span>
                </li>
            }
        })
        .collect_view();
    let outcome = match pull.status.as_str() {
        "done" if on_new_run => Some(
            view! {
                <p class="pull-outcome">
                    "Registered as "<strong>{pull.spec.clone()}</strong>" and picked as the base model below."
                </p>
            }
            .into_any(),
        ),
        "done" => Some(
            view! {
                <p class="pull-outcome">
                    "Registered as "<strong>{pull.spec.clone()}</strong>": pick it on "
                    <a href="/runs/new">"New run"</a>"."
                </p>
            }
            .into_any(),
        ),
        "failed" => {
            let then = on_new_run.then_some("new-run");
            Some(
                view! {
                    <p class="error-box pull-outcome" role="alert">{pull.error.clone().unwrap_or_default()}</p>
                    <div class="actions pull-actions">
                        <form method="post" action="/fn/models/pulls/retry">
                            <input type="hidden" name="id" value=pull.id />
                            {then.map(|then| view! { <input type="hidden" name="then" value=then /> })}
                            <button type="submit" class="primary pull-retry">"Retry"</button>
                        </form>
                        <form method="post" action="/fn/models/pulls/dismiss">
                            <input type="hidden" name="id" value=pull.id />
                            {then.map(|then| view! { <input type="hidden" name="then" value=then /> })}
                            <button type="submit" class="pull-dismiss">"Dismiss"</button>
                        </form>
                    </div>
                }
                .into_any(),
            )
        }
        _ => None,
    };
    view! {
        <div class="pull" id=format!("pull-{}", pull.id) data-pull-events=events>
            <div class="pull-head">
                <strong>{pull.spec.clone()}</strong>
                <span class=format!("status {}", pull.status)>{pull.status.clone()}</span>
                <span class="muted pull-bytes">{pull_bytes_text(&pull)}</span>
            </div>
            <div class="progress" title=format!("{:.0}%", pull.progress() * 100.0)>
                <span style=width></span>
            </div>
            <ul class="pull-files">{files}</ul>
            {outcome}
        </div>
    }
}

/// The repo id and revision fields of a pull form.
#[component]
pub(crate) fn PullFields() -> impl IntoView {
    view! {
        <div class="grid-2">
            <label>
                <span>"Repo id"</span>
                <input type="text" name="repo" required placeholder="HuggingFaceTB/SmolLM2-135M-Instruct" />
            </label>
            <label>
                <span>"Revision (optional: main)"</span>
                <input type="text" name="revision" placeholder="main" />
            </label>
        </div>
    }
}

/// Starts a background pull from the Hugging Face Hub.
#[component]
fn PullModelForm() -> impl IntoView {
    view! {
        <form class="stacked panel" method="post" action="/fn/models/pull" id="pull-model">
            <h2>"Pull from the Hugging Face Hub"</h2>
            <p class="muted">
                "A repo id, e.g. "<code>"HuggingFaceTB/SmolLM2-135M-Instruct"</code>": its config, tokenizer "
                "and safetensors weights are fetched. For a GGUF repo, name one file: "
                <code>"org/name/model-Q4_0.gguf"</code>". Files go to the Hugging Face cache "
                "(HF_HUB_CACHE or ~/.cache/huggingface/hub), shared with mlx-lm and transformers; "
                "what is already there is not downloaded again. Private and gated repos need HF_TOKEN."
            </p>
            <PullFields />
            <button type="submit" class="primary" id="pull">"Pull"</button>
        </form>
    }
}

/// Registers a model file or folder that is already on this machine.
#[component]
fn ImportModelForm() -> impl IntoView {
    view! {
        <form class="stacked panel" method="post" action="/fn/models/import" id="import-model">
            <h2>"Add a model from this machine"</h2>
            <p class="muted">
                "A GGUF file (F32, F16, BF16, Q8_0, Q4_0, Q4_1, K-quants) or a Hugging Face folder "
                "(config.json, safetensors, tokenizer.json). Its files stay where they are."
            </p>
            <label>
                <span>"Path"</span>
                <input type="text" name="path" required placeholder="/home/me/models/Qwen2.5-0.5B-Instruct-Q4_0.gguf" />
            </label>
            <label>
                <span>"Name (optional: the file or folder name)"</span>
                <input type="text" name="name" maxlength="100" />
            </label>
            <button type="submit" class="primary" id="import">"Add model"</button>
        </form>
    }
}

#[component]
fn ModelsTable(models: Vec<ModelSummary>) -> impl IntoView {
    let can_manage = crate::role::current_role().can_manage();
    let rows = models
        .into_iter()
        .map(|model| {
            view! {
                <tr>
                    <td>{model.name}</td>
                    <td>{model.source}</td>
                    <td>{model.architecture.unwrap_or_else(|| "–".into())}</td>
                    <td class="num">{model.parameters.map_or("–".into(), format_parameters)}</td>
                    <td>{model.quantization.unwrap_or_else(|| "–".into())}</td>
                    <td class="num">{model.size_bytes.map_or("–".into(), format_bytes)}</td>
                    <td class="muted"><code>{model.location}</code></td>
                    <td>
                        {(can_manage && !model.builtin).then(|| view! {
                            <details class="inline-confirm">
                                <summary>"Remove"</summary>
                                <form method="post" action="/fn/models/delete">
                                    <input type="hidden" name="id" value=model.id />
                                    <button type="submit" class="danger">"Remove from the list (files stay)"</button>
                                </form>
                            </details>
                        })}
                    </td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <table id="models">
            <thead>
                <tr>
                    <th>"Name"</th><th>"Source"</th><th>"Architecture"</th>
                    <th class="num">"Parameters"</th><th>"Quantization"</th>
                    <th class="num">"Size"</th><th>"Location"</th><th></th>
                </tr>
            </thead>
            <tbody>{rows}</tbody>
        </table>
    }
}

#[component]
pub fn DatasetsPage() -> impl IntoView {
    let datasets = Resource::new_blocking(|| (), |_| list_datasets());
    // The upload posts to the JSON API, which redirects a browser back here
    // with `?error=` when the files are refused, as server functions' do.
    let error = crate::pages::posted_error();
    view! {
        <Page current="/datasets">
            <Heading text="Datasets" />
            <crate::pages::ErrorBox message=error />
            <div class="panel">
                <Suspense fallback=|| view! { <p class="muted">"Loading..."</p> }>
                    {move || Suspend::new(async move {
                        match datasets.await {
                            Ok(datasets) if datasets.is_empty() => view! {
                                <p class="empty">"No datasets yet: upload one below."</p>
                            }
                            .into_any(),
                            Ok(datasets) => view! { <DatasetsTable datasets /> }.into_any(),
                            Err(error) => view! {
                                <p class="error-box">{format!("Could not load datasets: {error}")}</p>
                            }
                            .into_any(),
                        }
                    })}
                </Suspense>
            </div>
            {crate::role::current_role().can_manage().then(|| view! { <UploadForm /> })}
        </Page>
    }
}

/// A plain multipart form: one JSONL file (valid and test are held out of
/// it), or mlx-lm's train/valid/test files.
#[component]
fn UploadForm() -> impl IntoView {
    // A refused upload comes back with the name it had (`?name=`).
    let name = leptos_router::hooks::use_query_map().with_untracked(|query| query.get("name"));
    view! {
        <form class="stacked panel" method="post" action="/api/datasets" enctype="multipart/form-data" id="upload-dataset">
            <h2>"Upload a dataset"</h2>
            <p class="muted">
                "JSON Lines in one of mlx-lm's formats: chat ("<code>"{\"messages\": [...]}"</code>
                "), completions ("<code>"{\"prompt\": ..., \"completion\": ...}"</code>") or text ("
                <code>"{\"text\": ...}"</code>"). Every problem is listed with its line."
            </p>
            <label>
                <span>"Name"</span>
                <input type="text" name="name" required maxlength="64" placeholder="e.g. support-chats" value=name />
            </label>
            <DatasetFiles one_file="One file (valid and test are held out of it)" />
            <button type="submit" class="primary" id="upload">"Upload and check"</button>
        </form>
    }
}

/// An upload's file fields: one file, or mlx-lm's train/valid/test files.
#[component]
pub(crate) fn DatasetFiles(one_file: &'static str) -> impl IntoView {
    view! {
        <div class="grid-2">
            <label>
                <span>{one_file}</span>
                <input type="file" name="file" accept=".jsonl,.json,application/jsonl" />
            </label>
            <div>
                <label>
                    <span>"Or: train.jsonl"</span>
                    <input type="file" name="train" accept=".jsonl,.json" />
                </label>
                <label>
                    <span>"valid.jsonl (optional)"</span>
                    <input type="file" name="valid" accept=".jsonl,.json" />
                </label>
                <label>
                    <span>"test.jsonl (optional)"</span>
                    <input type="file" name="test" accept=".jsonl,.json" />
                </label>
            </div>
        </div>
    }
}

#[component]
fn DatasetsTable(datasets: Vec<DatasetSummary>) -> impl IntoView {
    let rows = datasets
        .into_iter()
        .map(|dataset| {
            let href = format!("/datasets/{}", dataset.id);
            let status = match dataset.problems {
                0 => view! { <span class="status done">"ready"</span> }.into_any(),
                n => view! {
                    <span class="status failed">{format!("{n} problem{}", if n == 1 { "" } else { "s" })}</span>
                }
                .into_any(),
            };
            view! {
                <tr>
                    <td><a href=href>{dataset.name}</a>{dataset.builtin.then(|| view! { " " <span class="muted small">"(sample)"</span> })}</td>
                    <td>{status}</td>
                    <td>{dataset.format.unwrap_or_else(|| "–".into())}</td>
                    <td class="num">{dataset.train_count}</td>
                    <td class="num">{dataset.valid_count}</td>
                    <td class="num">{dataset.test_count}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <table id="datasets">
            <thead>
                <tr>
                    <th>"Name"</th><th>"Status"</th><th>"Format"</th><th class="num">"Train"</th>
                    <th class="num">"Valid"</th><th class="num">"Test"</th>
                </tr>
            </thead>
            <tbody>{rows}</tbody>
        </table>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_counts_read_like_model_cards() {
        assert_eq!(format_bytes(512), "512 B");
        assert_eq!(format_bytes(97_000_000), "92.5 MiB");
        assert_eq!(format_parameters(134_515_008), "135M");
        assert_eq!(format_parameters(1_540_000_000), "1.5B");
    }
}
