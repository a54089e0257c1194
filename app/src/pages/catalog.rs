//! The models and datasets this Loralab knows.

use leptos::prelude::*;

use crate::dto::{DatasetSummary, ModelSummary};
use crate::layout::Page;

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
pub(crate) fn format_bytes(bytes: u64) -> String {
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
            <h1>"Models"</h1>
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
            {crate::role::current_role().can_mutate().then(|| view! { <ImportModelForm /> })}
        </Page>
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
    let can_mutate = crate::role::current_role().can_mutate();
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
                        {(can_mutate && !model.builtin).then(|| view! {
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
    // with `?error=` when the files are refused; server functions' own
    // errors come back in `__err`.
    let error = leptos_router::hooks::use_query_map()
        .with_untracked(|query| query.get("error"))
        .or_else(crate::pages::posted_error);
    view! {
        <Page current="/datasets">
            <h1>"Datasets"</h1>
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
            {crate::role::current_role().can_mutate().then(|| view! { <UploadForm /> })}
        </Page>
    }
}

/// A plain multipart form: one JSONL file (valid and test are held out of
/// it), or mlx-lm's train/valid/test files.
#[component]
fn UploadForm() -> impl IntoView {
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
                <input type="text" name="name" required maxlength="64" placeholder="e.g. support-chats" />
            </label>
            <div class="grid-2">
                <label>
                    <span>"One file (valid and test are held out of it)"</span>
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
            <button type="submit" class="primary" id="upload">"Upload and check"</button>
        </form>
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
