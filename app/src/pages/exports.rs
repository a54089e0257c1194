//! Exports: the run page's export form and list, the Exports page (every
//! export) and one export's page (progress, files, the command that uses
//! it, downloads). Forms post to the JSON API, which redirects a browser;
//! `/assets/exports.js` follows running exports over SSE, and without
//! JavaScript the page of a running export refreshes itself.

use leptos::prelude::*;
use leptos_router::hooks::{use_params_map, use_query_map};

use crate::dto::{CheckpointInfo, ExportView};
use crate::layout::{Heading, Page};
use crate::pages::catalog::format_bytes;
use crate::pages::format_duration;

#[server(prefix = "/fn", endpoint = "exports/list")]
pub async fn load_exports() -> Result<Vec<ExportView>, ServerFnError> {
    let backend = expect_context::<crate::SharedBackend>();
    backend.list_exports(None).map_err(ServerFnError::new)
}

#[server(prefix = "/fn", endpoint = "exports/detail")]
pub async fn load_export(id: i64) -> Result<Option<ExportView>, ServerFnError> {
    let backend = expect_context::<crate::SharedBackend>();
    backend.export(id).map_err(ServerFnError::new)
}

fn format_label(view: &ExportView) -> String {
    match view.format.as_str() {
        "hf" => format!("Hugging Face, {}", view.dtype),
        "mlx" => format!("MLX {}-bit", view.bits.unwrap_or(4)),
        "peft" => format!("PEFT adapter, {}", view.dtype),
        "gguf" => format!("GGUF {}", view.quant.as_deref().unwrap_or("f16")),
        "gguf-lora" => format!(
            "GGUF LoRA adapter, {}",
            view.quant.as_deref().unwrap_or("f16")
        ),
        other => other.to_string(),
    }
}

fn running(view: &ExportView) -> bool {
    matches!(view.status.as_str(), "queued" | "running")
}

fn progress_fraction(view: &ExportView) -> f64 {
    if view.status == "done" {
        return 1.0;
    }
    if view.bytes_total == 0 {
        return 0.0;
    }
    (view.bytes_done as f64 / view.bytes_total as f64).clamp(0.0, 1.0)
}

fn progress_text(view: &ExportView) -> String {
    match view.status.as_str() {
        "queued" => "waiting for memory".to_string(),
        "done" => format!(
            "{}, {} tensors",
            format_bytes(view.size_bytes),
            view.tensors_total
        ),
        _ => format!(
            "{} of {} tensors, {} of {}",
            view.tensors_done,
            view.tensors_total,
            format_bytes(view.bytes_done),
            format_bytes(view.bytes_total)
        ),
    }
}

/// A row of an exports table; `with_run` adds the run's name.
fn export_row(view: &ExportView, with_run: bool) -> impl IntoView {
    let id = view.id;
    let checkpoint = view
        .step
        .map_or("latest".to_string(), |s| format!("step {s}"));
    let run = with_run.then(|| {
        let name = view
            .run_name
            .clone()
            .unwrap_or_else(|| "(deleted run)".into());
        let cell = match view.run_id {
            Some(run) => view! { <a href=format!("/runs/{run}")>{name}</a> }.into_any(),
            None => name.into_any(),
        };
        view! { <td>{cell}</td> }
    });
    let downloads = (view.status == "done").then(|| {
        view! {
            <a href=format!("/api/exports/{id}/download?as=zip") download>"zip"</a>
            " "
            <a href=format!("/api/exports/{id}/download?as=tar") download>"tar"</a>
        }
    });
    view! {
        <tr data-export-events=running(view).then(|| format!("/api/exports/{id}/events"))>
            <td><a href=format!("/exports/{id}")>{format!("#{id}")}</a></td>
            {run}
            <td>{format_label(view)}</td>
            <td>{checkpoint}</td>
            <td><span class=format!("status {}", view.status)>{view.status.clone()}</span></td>
            <td class="export-progress">{progress_text(view)}</td>
            <td>{downloads}</td>
        </tr>
    }
}

/// The run page's section: the export form and this run's exports.
#[component]
pub fn RunExports(
    run_id: i64,
    checkpoints: Vec<CheckpointInfo>,
    exports: Vec<ExportView>,
    can_manage: bool,
) -> impl IntoView {
    let query = use_query_map();
    let error = query.with_untracked(|q| q.get("export_error"));
    let steps = checkpoints
        .iter()
        .map(|c| {
            let label = match (c.best, c.val_loss) {
                (true, Some(loss)) => format!("step {} (best, val {loss:.3})", c.step),
                (false, Some(loss)) => format!("step {} (val {loss:.3})", c.step),
                _ => format!("step {}", c.step),
            };
            view! { <option value=c.step.to_string()>{label}</option> }
        })
        .collect_view();
    let form = (can_manage && !checkpoints.is_empty()).then(|| {
        view! {
            <form method="post" action=format!("/api/runs/{run_id}/exports") class="export-form" id="export-form">
                <label>"Format "
                    <select name="format" id="export-format">
                        <option value="hf">"Hugging Face folder (fused; transformers, vLLM, mlx-lm)"</option>
                        <option value="mlx">"MLX quantized folder (fused; mlx-lm)"</option>
                        <option value="peft">"PEFT adapter (not fused; peft on the base)"</option>
                        <option value="gguf">"GGUF (fused; llama.cpp, Ollama, LM Studio)"</option>
                        <option value="gguf-lora">"GGUF LoRA adapter (not fused; llama.cpp --lora)"</option>
                    </select>
                </label>
                <label>"Dtype "
                    <select name="dtype" id="export-dtype">
                        <option value="">"default (bf16; f32 for PEFT)"</option>
                        <option value="bf16">"bf16"</option>
                        <option value="f16">"f16"</option>
                        <option value="f32">"f32"</option>
                    </select>
                </label>
                <label>"MLX bits "
                    <select name="bits" id="export-bits">
                        <option value="4">"4"</option>
                        <option value="8">"8"</option>
                    </select>
                </label>
                <label>"GGUF quant "
                    <select name="quant" id="export-quant">
                        <option value="">"default (f16)"</option>
                        <option value="q4_k_m">"q4_k_m"</option>
                        <option value="q5_k_m">"q5_k_m"</option>
                        <option value="q6_k">"q6_k"</option>
                        <option value="q8_0">"q8_0"</option>
                        <option value="f16">"f16"</option>
                        <option value="bf16">"bf16"</option>
                        <option value="f32">"f32"</option>
                        <option value="same">"same as a GGUF base (unchanged tensors copied)"</option>
                    </select>
                </label>
                <label>"Checkpoint "
                    <select name="step" id="export-step">
                        <option value="">"best"</option>
                        {steps}
                    </select>
                </label>
                <button type="submit" class="primary" id="export-start">"Export"</button>
            </form>
        }
    });
    let rows = exports.iter().map(|v| export_row(v, false)).collect_view();
    let empty = exports.is_empty();
    view! {
        <section class="panel" id="export">
            <h2>"Export"</h2>
            {error.map(|message| view! { <p class="error-box" id="export-error">{message}</p> })}
            {checkpoints.is_empty().then(|| view! {
                // live.js reloads the page at the first checkpoint, which brings the form.
                <p class="muted" data-reload-on-checkpoint="">"An export needs a checkpoint: the first is saved during training."</p>
            })}
            {form}
            {if empty {
                view! { <p class="empty" id="exports-empty">"No exports of this run yet."</p> }.into_any()
            } else {
                view! {
                    <table id="run-exports">
                        <thead><tr><th>"Export"</th><th>"Format"</th><th>"Checkpoint"</th><th>"Status"</th><th>"Progress"</th><th>"Download"</th></tr></thead>
                        <tbody>{rows}</tbody>
                    </table>
                }
                .into_any()
            }}
        </section>
    }
}

#[component]
pub fn ExportsPage() -> impl IntoView {
    let exports = Resource::new_blocking(|| (), |_| load_exports());
    view! {
        <Page current="/exports">
            <Heading text="Exports" />
            <p class="muted">"Fine-tunes taken out of Loralab. Start one from a run's page."</p>
            <Suspense fallback=|| view! { <p class="muted">"Loading exports..."</p> }>
                {move || Suspend::new(async move {
                    match exports.await {
                        Ok(list) if list.is_empty() => view! {
                            <p class="empty" id="exports-empty">"No exports yet."</p>
                        }
                        .into_any(),
                        Ok(list) => {
                            let live = list.iter().any(running);
                            let rows = list.iter().map(|v| export_row(v, true)).collect_view();
                            view! {
                                {live.then(|| view! { <noscript><meta http-equiv="refresh" content="3" /></noscript> })}
                                <table id="exports">
                                    <thead><tr><th>"Export"</th><th>"Run"</th><th>"Format"</th><th>"Checkpoint"</th><th>"Status"</th><th>"Progress"</th><th>"Download"</th></tr></thead>
                                    <tbody>{rows}</tbody>
                                </table>
                            }
                            .into_any()
                        }
                        Err(error) => view! {
                            <p class="error-box">{format!("Could not load the exports: {error}")}</p>
                        }
                        .into_any(),
                    }
                })}
            </Suspense>
        </Page>
    }
}

#[component]
pub fn ExportPage() -> impl IntoView {
    let params = use_params_map();
    let id = params.with_untracked(|p| p.get("id").and_then(|id| id.parse::<i64>().ok()));
    let export = Resource::new_blocking(
        move || id,
        |id| async move {
            match id {
                Some(id) => load_export(id).await,
                None => Ok(None),
            }
        },
    );
    view! {
        <Page current="/exports">
            <Suspense fallback=|| view! { <p class="muted">"Loading the export..."</p> }>
                {move || Suspend::new(async move {
                    match export.await {
                        Ok(Some(view)) => view! { <ExportDetail view /> }.into_any(),
                        Ok(None) => view! { <Heading text="No such export" /> }.into_any(),
                        Err(error) => view! {
                            <p class="error-box">{format!("Could not load the export: {error}")}</p>
                        }
                        .into_any(),
                    }
                })}
            </Suspense>
        </Page>
    }
}

#[component]
fn ExportDetail(view: ExportView) -> impl IntoView {
    let id = view.id;
    let can_manage = crate::role::current_role().can_manage();
    let live = running(&view);
    let percent = format!("width: {:.1}%", progress_fraction(&view) * 100.0);
    let files = view
        .files
        .iter()
        .map(|(name, size)| view! { <li><code>{name.clone()}</code>" "<span class="muted">{format_bytes(*size)}</span></li> })
        .collect_view();
    let source = match (view.run_id, &view.run_name) {
        (Some(run), Some(name)) => {
            view! { <a href=format!("/runs/{run}")>{name.clone()}</a> }.into_any()
        }
        _ => "an imported adapter".into_any(),
    };
    let checkpoint = view.step.map_or("its latest weights".to_string(), |s| {
        format!("checkpoint step {s}")
    });
    view! {
        {live.then(|| view! { <noscript><meta http-equiv="refresh" content="3" /></noscript> })}
        <div class="toolbar" data-export-events=live.then(|| format!("/api/exports/{id}/events"))>
            <Heading text=format!("Export #{id}") />
            <span class=format!("status {}", view.status) id="export-status">{view.status.clone()}</span>
            <span class="spacer"></span>
            {(view.status == "done").then(|| view! {
                <a class="button primary" href=format!("/api/exports/{id}/download?as=zip") id="download-zip" download>"Download zip"</a>
                <a class="button" href=format!("/api/exports/{id}/download?as=tar") id="download-tar" download>"Download tar"</a>
            })}
            {(can_manage && live).then(|| view! {
                <form method="post" action=format!("/api/exports/{id}/cancel")>
                    <button type="submit" id="export-cancel">"Cancel"</button>
                </form>
            })}
        </div>
        <p class="muted">
            {format_label(&view)} " of " {source} ", " {checkpoint} ", on " <code>{view.model.clone()}</code>
        </p>
        <div class="progress" title="bytes written"><span style=percent></span></div>
        <p class="export-progress" id="export-progress">{progress_text(&view)}
            {(view.elapsed_seconds > 0.0).then(|| format!(" in {}", format_duration(view.elapsed_seconds)))}
        </p>
        {view.error.clone().map(|error| view! { <div class="error-box" id="export-failure"><strong>"Failed: "</strong>{error}</div> })}
        {(view.status == "done").then(|| view! {
            <h2>"Use it"</h2>
            <pre class="log" id="export-usage">{view.usage.clone()}</pre>
            <p class="muted">"In " <code id="export-path">{view.path.clone().unwrap_or_default()}</code>
                {view.fused.map(|n| format!(", {n} tensors fused with the adapter"))}
                {view.copied.filter(|&n| n > 0).map(|n| format!(
                    ", {n} copied byte for byte from the base, {} quantized again",
                    view.requantized.unwrap_or(0)
                ))}
            </p>
            <h2>"Files"</h2>
            <ul id="export-files">{files}</ul>
        })}
        {(can_manage && !live).then(|| view! {
            <details class="danger-zone panel">
                <summary>"Delete this export..."</summary>
                <form method="post" action=format!("/api/exports/{id}/delete")>
                    <p>"Its folder is removed for good."</p>
                    <button type="submit" class="danger" id="delete-export">"Delete"</button>
                </form>
            </details>
        })}
    }
}
