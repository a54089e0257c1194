//! Start a fine-tune: model, dataset, a preset and the settings that matter.
//! A plain form: it posts to `runs/create` and works without JavaScript.

use leptos::prelude::*;

use crate::dto::{DatasetSummary, ModelSummary, NewRunForm, RunCheck};
use crate::layout::{Heading, Page};
use crate::pages::catalog::{PullFields, PullItem};
use crate::pages::{posted_error, ErrorBox};
use crate::presets::Preset;

#[server(prefix = "/fn", endpoint = "runs/create")]
pub async fn create_run(form: NewRunForm) -> Result<(), ServerFnError> {
    let backend = expect_context::<crate::SharedBackend>();
    let id = backend.create_run(form).map_err(ServerFnError::new)?;
    backend.redirect(&format!("/runs/{id}"));
    Ok(())
}

/// The pickers' choices, and the form filled from an earlier run when
/// cloning.
#[server(prefix = "/fn", endpoint = "runs/choices")]
pub async fn run_choices(
    clone: Option<i64>,
) -> Result<(Vec<ModelSummary>, Vec<DatasetSummary>, Option<NewRunForm>), ServerFnError> {
    let backend = expect_context::<crate::SharedBackend>();
    let models = backend.list_models().map_err(ServerFnError::new)?;
    let datasets = backend.list_datasets().map_err(ServerFnError::new)?;
    let cloned = match clone {
        Some(id) => backend.run_form(id).map_err(ServerFnError::new)?,
        None => None,
    };
    Ok((models, datasets, cloned))
}

/// The form's settings checked without starting anything.
#[server(prefix = "/fn", endpoint = "runs/check")]
pub async fn check_run(form: NewRunForm) -> Result<RunCheck, ServerFnError> {
    let backend = expect_context::<crate::SharedBackend>();
    backend.check_run(form).map_err(ServerFnError::new)
}

/// The form as a "Check" button sent it: the same `form[...]` fields in
/// the URL. `None` when the page was opened plainly.
fn checked_form() -> Option<NewRunForm> {
    leptos_router::hooks::use_query_map()
        .with_untracked(|query| NewRunForm::from_fields(|key| query.get(&format!("form[{key}]"))))
}

fn gigabytes(bytes: u64) -> String {
    format!("{:.2} GB", bytes as f64 / 1e9)
}

/// The memory estimate and the config a checked form would run.
#[component]
fn CheckPanel(check: RunCheck) -> impl IntoView {
    let RunCheck {
        config_yaml,
        memory: check,
    } = check;
    let (verdict, class) = match (check.fits, check.available) {
        (Some(true), Some(available)) => (
            format!("Fits: needs about {} of {} free", gigabytes(check.total), gigabytes(available)),
            "notice fits",
        ),
        (Some(false), Some(available)) => (
            format!(
                "Does not fit: needs about {} but only {} is free. Lower the batch size, the max sequence length or the layers to adapt, or use QLoRA.",
                gigabytes(check.total),
                gigabytes(available)
            ),
            "error-box",
        ),
        _ => (
            format!("Needs about {} (free memory unknown)", gigabytes(check.total)),
            "notice",
        ),
    };
    view! {
        <section class="panel" id="run-check">
            <h2>"Before you start"</h2>
            <div class=class id="memory-verdict">{verdict}</div>
            <table class="compact">
                <tbody>
                    <tr><td>"Base weights"</td><td class="num">{gigabytes(check.weights)}</td></tr>
                    <tr><td>"Adapters, gradients, optimizer"</td><td class="num">{gigabytes(check.adapters)}</td></tr>
                    <tr><td>"Activations (one step)"</td><td class="num">{gigabytes(check.activations)}</td></tr>
                    <tr><td>"Compute"</td><td class="num">{check.compute}</td></tr>
                    <tr id="disk-estimate">
                        <td>"Disk: checkpoints and resume state"</td>
                        <td class="num">
                            {format!(
                                "{} x {} kept (at most) = {}",
                                check.checkpoints_kept,
                                crate::pages::catalog::format_bytes(check.checkpoint_bytes),
                                crate::pages::catalog::format_bytes(check.disk),
                            )}
                        </td>
                    </tr>
                </tbody>
            </table>
            <h3>"The same run headless"</h3>
            <p class="muted small">"Save as run.yaml and run " <code>"loralab train --config run.yaml"</code></p>
            <pre class="log" id="run-config">{config_yaml}</pre>
        </section>
    }
}

/// A number field whose empty value means the preset's, which its
/// placeholder shows (live.js follows the preset choice).
#[component]
fn PresetField(
    label: &'static str,
    field: &'static str,
    preset: &'static Preset,
    #[prop(optional)] step: Option<&'static str>,
    #[prop(optional)] min: Option<&'static str>,
    value: Option<String>,
) -> impl IntoView {
    view! {
        <label>
            <span>{label}</span>
            <input
                type="number"
                name=format!("form[{field}]")
                data-preset-field=field
                placeholder=preset.value_of(field)
                step=step.unwrap_or("1")
                min=min
                value=value
            />
        </label>
    }
}

#[component]
pub fn NewRunPage() -> impl IntoView {
    // `?clone=ID` fills the form from a run; `?dataset=NAME` picks a
    // dataset; `?pull=ID` follows a pull from the Hub started here, and picks
    // its model once it is registered.
    let (clone, dataset, pull_id) = leptos_router::hooks::use_query_map().with_untracked(|query| {
        (
            query.get("clone").and_then(|id| id.parse::<i64>().ok()),
            query.get("dataset"),
            query.get("pull").and_then(|id| id.parse::<u64>().ok()),
        )
    });
    let choices = Resource::new_blocking(move || clone, run_choices);
    let pull = Resource::new_blocking(
        move || pull_id,
        |id| async move {
            let id = id?;
            let pulls = crate::pages::catalog::list_pulls().await.ok()?;
            pulls.into_iter().find(|pull| pull.id == id)
        },
    );
    let checked = checked_form();
    let check = Resource::new_blocking(
        {
            let checked = checked.clone();
            move || checked.clone()
        },
        |form| async move {
            match form {
                Some(form) => Some(check_run(form).await.map_err(|error| error.to_string())),
                None => None,
            }
        },
    );
    let error = posted_error();
    let can_run = crate::role::current_role().can_run();
    view! {
        <Page current="/runs/new">
            <Heading text="New run" />
            <ErrorBox message=error />
            <Suspense fallback=|| view! { <p class="muted">"Loading..."</p> }>
                {move || {
                    let dataset = dataset.clone();
                    let checked = checked.clone();
                    Suspend::new(async move {
                    let pull = pull.await;
                    let pulled_model = pull
                        .as_ref()
                        .filter(|pull| pull.status == "done")
                        .map(|pull| pull.spec.clone());
                    let pull_panel = pull.map(|pull| {
                        let refresh = (pull.status == "running").then(|| {
                            let url = format!("3; url=/runs/new?pull={}", pull.id);
                            view! { <noscript><meta http-equiv="refresh" content=url /></noscript> }
                        });
                        view! {
                            <div class="panel" id="pulls">
                                {refresh}
                                <PullItem pull on_new_run=true />
                            </div>
                        }
                    });
                    let form = match choices.await {
                        Ok(_) if !can_run => view! {
                            <p class="error-box" id="viewer-only">
                                "You are watching as a viewer: only the owner or an operator can start runs."
                            </p>
                        }
                        .into_any(),
                        Ok((models, datasets, cloned)) => {
                            // The owner's sets; nobody else sees their hosts.
                            let machine_sets: Vec<String> = crate::pages::machines::list_machine_sets()
                                .await
                                .map(|sets| sets.into_iter().map(|set| set.name).collect())
                                .unwrap_or_default();
                            let initial = checked.clone().or(cloned).unwrap_or_else(|| NewRunForm {
                                model: pulled_model.unwrap_or_default(),
                                dataset: dataset.clone().unwrap_or_default(),
                                ..NewRunForm::default()
                            });
                            view! { <NewRunForm models datasets machine_sets initial /> <PullOnNewRun /> }.into_any()
                        }
                        Err(error) => view! {
                            <p class="error-box">{format!("Could not load models and datasets: {error}")}</p>
                        }
                        .into_any(),
                    };
                    view! { {pull_panel} {form} }
                })}}
            </Suspense>
            <Suspense fallback=|| ()>
                {move || Suspend::new(async move {
                    match check.await {
                        Some(Ok(check)) => view! { <CheckPanel check /> }.into_any(),
                        Some(Err(error)) => view! {
                            <div class="error-box" id="check-error">{crate::pages::server_error_text(&error)}</div>
                        }
                        .into_any(),
                        None => ().into_any(),
                    }
                })}
            </Suspense>
        </Page>
    }
}

/// A base model that is not here yet, pulled from the Hub without leaving
/// the page (a form of its own: forms do not nest).
#[component]
fn PullOnNewRun() -> impl IntoView {
    view! {
        <details class="panel" id="pull-on-new-run">
            <summary>"Base model not listed? Pull it from the Hugging Face Hub"</summary>
            <form class="stacked" method="post" action="/fn/models/pull">
                <input type="hidden" name="then" value="new-run" />
                <PullFields />
                <button type="submit" id="pull">"Pull"</button>
            </form>
        </details>
    }
}

#[component]
fn NewRunForm(
    models: Vec<ModelSummary>,
    datasets: Vec<DatasetSummary>,
    machine_sets: Vec<String>,
    initial: NewRunForm,
) -> impl IntoView {
    let chosen_set = initial.machine_set.clone().unwrap_or_default();
    let machine_set_field = (!machine_sets.is_empty()).then(|| {
        let options = machine_sets
            .into_iter()
            .map(|set| {
                let selected = set == chosen_set;
                let label = format!("machine set {set} (one rank per host, over ssh)");
                view! { <option value=set selected=selected>{label}</option> }
            })
            .collect_view();
        view! {
            <label>
                <span>"Where (a machine set of the Machines page, checked first)"</span>
                <select name="form[machine_set]">
                    <option value="" selected=chosen_set.is_empty()>"this machine"</option>
                    {options}
                </select>
            </label>
        }
    });
    let model_options = models
        .into_iter()
        .map(|model| {
            let label = model.name.clone();
            let selected = model.name == initial.model;
            view! { <option value=model.name selected=selected>{label}</option> }
        })
        .collect_view();
    let dataset_options = datasets
        .into_iter()
        .map(|dataset| {
            let label = if dataset.problems > 0 {
                format!(
                    "{} ({} problems: fix them first)",
                    dataset.name, dataset.problems
                )
            } else {
                format!(
                    "{} ({} train / {} valid / {} test)",
                    dataset.name, dataset.train_count, dataset.valid_count, dataset.test_count
                )
            };
            let selected = dataset.name == initial.dataset;
            let has_problems = dataset.problems > 0;
            view! {
                <option value=dataset.name selected=selected disabled=has_problems>
                    {label}
                </option>
            }
        })
        .collect_view();
    // A checked form keeps its preset; otherwise "balanced".
    let preset =
        crate::presets::preset(initial.preset.as_deref()).unwrap_or(&crate::presets::PRESETS[1]);
    let preset_options = crate::presets::PRESETS
        .iter()
        .map(|choice| {
            // The values live.js puts in the placeholders on a change.
            // Keys and values are plain words and numbers: no escaping.
            let values = choice
                .field_values()
                .map(|(key, value)| format!("\"{key}\":\"{value}\""))
                .join(",");
            view! {
                <option value=choice.key selected=choice.key == preset.key data-values=format!("{{{values}}}")>
                    {choice.label}
                </option>
            }
        })
        .collect_view();
    let qlora = initial.fine_tune.as_deref() == Some("qlora");
    let dora = initial.fine_tune.as_deref() == Some("dora");
    let full = initial.fine_tune.as_deref() == Some("full");
    let eight_bits = initial.bits.as_deref() == Some("8");
    let unmasked = initial.mask_prompt.as_deref() == Some("false");
    let recompute = initial.grad_checkpoint.as_deref() == Some("true");
    let unguarded = initial.guard.as_deref() == Some("false");
    view! {
        <form class="stacked panel" method="post" action="/fn/runs/create" id="new-run">
            {initial.clone_of.clone().map(|id| view! { <input type="hidden" name="form[clone_of]" value=id /> })}
            <div class="grid-2">
                <div>
                    <label>
                        <span>"Name (optional)"</span>
                        <input type="text" name="form[name]" placeholder="e.g. pirate-voice" maxlength="100" value=initial.name />
                    </label>
                    <label>
                        <span>"Base model"</span>
                        <select name="form[model]" required>{model_options}</select>
                    </label>
                    <p class="muted field-note">
                        <a href="#pull-on-new-run">"Not listed? Pull it from the Hugging Face Hub"</a>
                    </p>
                    <label>
                        <span>"Dataset"</span>
                        <select name="form[dataset]" required>{dataset_options}</select>
                    </label>
                    <label>
                        <span>"Preset"</span>
                        <select name="form[preset]" id="preset">{preset_options}</select>
                    </label>
                    <label>
                        <span>"Fine-tune type"</span>
                        <select name="form[fine_tune]">
                            <option value="lora" selected=!qlora && !dora && !full>"LoRA"</option>
                            <option value="qlora" selected=qlora>"QLoRA (quantized base)"</option>
                            <option value="dora" selected=dora>"DoRA (LoRA plus a learned magnitude per row)"</option>
                            // A quantized base's trained layers are dequantized on load.
                            <option value="full" selected=full>"Full (the top layers' own weights train; far more memory)"</option>
                        </select>
                    </label>
                    // Shown only while QLoRA is chosen (CSS :has, no script needed).
                    <label class="qlora-bits">
                        <span>"QLoRA bits"</span>
                        <select name="form[bits]">
                            <option value="4" selected=!eight_bits>"4"</option>
                            <option value="8" selected=eight_bits>"8"</option>
                        </select>
                    </label>
                </div>
                <div>
                    <p class="muted">"Leave a field empty to use the preset's value."</p>
                    <PresetField label="Iterations" field="iters" preset min="1" value=initial.iters.clone() />
                    <PresetField label="Batch size" field="batch_size" preset min="1" value=initial.batch_size.clone() />
                    <PresetField label="Learning rate" field="learning_rate" preset step="any" min="0" value=initial.learning_rate.clone() />
                    <PresetField label="LoRA rank" field="rank" preset min="1" value=initial.rank.clone() />
                    <PresetField label="Layers to adapt (from the top; -1 = all)" field="num_layers" preset min="-1" value=initial.num_layers.clone() />
                    <PresetField label="Max sequence length" field="max_seq_length" preset min="8" value=initial.max_seq_length.clone() />
                    <PresetField label="Validate every N steps" field="steps_per_eval" preset min="1" value=initial.steps_per_eval.clone() />
                    <PresetField label="Checkpoint every N steps" field="save_every" preset min="1" value=initial.save_every.clone() />
                    <PresetField label="Stop early after N validations without improvement (0 = never)" field="patience" preset min="0" value=initial.patience.clone() />
                    <PresetField label="Improvement that counts (validation loss)" field="min_delta" preset step="any" min="0" value=initial.min_delta.clone() />
                    <PresetField label="Checkpoints to keep: the N best and the latest (0 = all)" field="keep_checkpoints" preset min="0" value=initial.keep_checkpoints.clone() />
                    <label>
                        <span>"Seed"</span>
                        <input type="number" name="form[seed]" placeholder="0" min="0" step="1" value=initial.seed.clone() />
                    </label>
                    <label>
                        <span>"GPUs (data-parallel ranks; on the CPU, processes sharing the cores)"</span>
                        <input type="number" name="form[gpus]" placeholder="1" min="1" step="1" value=initial.gpus.clone() />
                    </label>
                    {machine_set_field}
                    <label>
                        <span>"Loss on answers only (mask the prompt)"</span>
                        <select name="form[mask_prompt]">
                            <option value="true" selected=!unmasked>"Yes"</option>
                            <option value="false" selected=unmasked>"No"</option>
                        </select>
                    </label>
                    <label>
                        <span>"Activations (gradient checkpointing)"</span>
                        <select name="form[grad_checkpoint]">
                            <option value="false" selected=!recompute>"Keep: faster"</option>
                            <option value="true" selected=recompute>
                                "Recompute: less memory, about a third slower"
                            </option>
                        </select>
                    </label>
                    <label>
                        <span>"Thermal guard (pause at a checkpoint when too hot or short of memory)"</span>
                        <select name="form[guard]">
                            <option value="true" selected=!unguarded>"On"</option>
                            <option value="false" selected=unguarded>"Off"</option>
                        </select>
                    </label>
                    <label>
                        <span>"Pause above (°C CPU)"</span>
                        <input type="number" name="form[guard_cpu_c]" placeholder="95" min="30" max="150" step="any" value=initial.guard_cpu_c.clone() />
                    </label>
                    <label>
                        <span>"Pause above (°C GPU)"</span>
                        <input type="number" name="form[guard_gpu_c]" placeholder="85" min="30" max="150" step="any" value=initial.guard_gpu_c.clone() />
                    </label>
                    <label>
                        <span>"Resume this far below (°C)"</span>
                        <input type="number" name="form[guard_resume_c]" placeholder="10" min="0" max="30" step="any" value=initial.guard_resume_c.clone() />
                    </label>
                </div>
            </div>
            <label class="inline">
                <input type="checkbox" name="form[tensorboard]" value="true" id="tensorboard" checked=initial.tensorboard.as_deref() == Some("true") />
                "Write TensorBoard event files (the run folder's tensorboard/; nothing leaves this machine)"
            </label>
            <label class="inline">
                <input type="checkbox" name="form[force]" value="true" id="force" checked=initial.force.as_deref() == Some("true") />
                "Start even if the memory estimate is over what this machine has (it then trains alone)"
            </label>
            <div class="actions">
                <button type="submit" class="primary" id="start">"Start fine-tune"</button>
                <button type="submit" formmethod="get" formaction="/runs/new#run-check" id="check">
                    "Check memory and config"
                </button>
            </div>
        </form>
    }
}
