//! Start a fine-tune: model, dataset, a preset and the settings that matter.
//! A plain form: it posts to `runs/create` and works without JavaScript.

use leptos::prelude::*;

use crate::dto::{DatasetSummary, ModelSummary, NewRunForm};
use crate::layout::Page;
use crate::pages::{posted_error, ErrorBox};

#[server(prefix = "/fn", endpoint = "runs/create")]
pub async fn create_run(form: NewRunForm) -> Result<(), ServerFnError> {
    let backend = expect_context::<crate::SharedBackend>();
    let id = backend.create_run(form).map_err(ServerFnError::new)?;
    backend.redirect(&format!("/runs/{id}"));
    Ok(())
}

#[server(prefix = "/fn", endpoint = "runs/choices")]
pub async fn run_choices() -> Result<(Vec<ModelSummary>, Vec<DatasetSummary>), ServerFnError> {
    let backend = expect_context::<crate::SharedBackend>();
    let models = backend.list_models().map_err(ServerFnError::new)?;
    let datasets = backend.list_datasets().map_err(ServerFnError::new)?;
    Ok((models, datasets))
}

/// A number field whose empty value means "the preset's".
#[component]
fn NumberField(
    label: &'static str,
    name: &'static str,
    placeholder: &'static str,
    #[prop(optional)] step: Option<&'static str>,
    #[prop(optional)] min: Option<&'static str>,
) -> impl IntoView {
    view! {
        <label>
            <span>{label}</span>
            <input type="number" name=name placeholder=placeholder step=step.unwrap_or("1") min=min />
        </label>
    }
}

#[component]
pub fn NewRunPage() -> impl IntoView {
    let choices = Resource::new_blocking(|| (), |_| run_choices());
    let error = posted_error();
    let can_mutate = crate::role::current_role().can_mutate();
    view! {
        <Page current="/runs/new">
            <h1>"New run"</h1>
            <ErrorBox message=error />
            <Suspense fallback=|| view! { <p class="muted">"Loading..."</p> }>
                {move || Suspend::new(async move {
                    match choices.await {
                        Ok(_) if !can_mutate => view! {
                            <p class="error-box" id="viewer-only">
                                "You are watching as a viewer: only the owner or an operator can start runs."
                            </p>
                        }
                        .into_any(),
                        Ok((models, datasets)) => view! { <NewRunForm models datasets /> }.into_any(),
                        Err(error) => view! {
                            <p class="error-box">{format!("Could not load models and datasets: {error}")}</p>
                        }
                        .into_any(),
                    }
                })}
            </Suspense>
        </Page>
    }
}

#[component]
fn NewRunForm(models: Vec<ModelSummary>, datasets: Vec<DatasetSummary>) -> impl IntoView {
    let model_options = models
        .into_iter()
        .map(|model| {
            let label = model.name.clone();
            view! { <option value=model.name>{label}</option> }
        })
        .collect_view();
    let dataset_options = datasets
        .into_iter()
        .map(|dataset| {
            let label = format!(
                "{} ({} train / {} valid / {} test)",
                dataset.name, dataset.train_count, dataset.valid_count, dataset.test_count
            );
            view! { <option value=dataset.name>{label}</option> }
        })
        .collect_view();
    view! {
        <form class="stacked panel" method="post" action="/fn/runs/create" id="new-run">
            <div class="grid-2">
                <div>
                    <label>
                        <span>"Name (optional)"</span>
                        <input type="text" name="form[name]" placeholder="e.g. pirate-voice" maxlength="100" />
                    </label>
                    <label>
                        <span>"Base model"</span>
                        <select name="form[model]" required>{model_options}</select>
                    </label>
                    <label>
                        <span>"Dataset"</span>
                        <select name="form[dataset]" required>{dataset_options}</select>
                    </label>
                    <label>
                        <span>"Preset"</span>
                        <select name="form[preset]">
                            <option value="quick">"Quick test: 30 steps, to check everything works"</option>
                            <option value="balanced" selected>"Balanced: 300 steps"</option>
                            <option value="thorough">"Thorough: 1000 steps, rank 16, all layers"</option>
                        </select>
                    </label>
                    <label>
                        <span>"Fine-tune type"</span>
                        <select name="form[fine_tune]">
                            <option value="lora" selected>"LoRA"</option>
                            <option value="qlora">"QLoRA (quantized base)"</option>
                        </select>
                    </label>
                    <label>
                        <span>"QLoRA bits"</span>
                        <select name="form[bits]">
                            <option value="4" selected>"4"</option>
                            <option value="8">"8"</option>
                        </select>
                    </label>
                </div>
                <div>
                    <p class="muted">"Leave a field empty to use the preset's value."</p>
                    <NumberField label="Iterations" name="form[iters]" placeholder="preset" min="1" />
                    <NumberField label="Batch size" name="form[batch_size]" placeholder="preset" min="1" />
                    <NumberField label="Learning rate" name="form[learning_rate]" placeholder="preset" step="any" min="0" />
                    <NumberField label="LoRA rank" name="form[rank]" placeholder="preset" min="1" />
                    <NumberField label="Layers to adapt (from the top; -1 = all)" name="form[num_layers]" placeholder="preset" min="-1" />
                    <NumberField label="Max sequence length" name="form[max_seq_length]" placeholder="preset" min="8" />
                    <NumberField label="Validate every N steps" name="form[steps_per_eval]" placeholder="preset" min="1" />
                    <NumberField label="Checkpoint every N steps" name="form[save_every]" placeholder="preset" min="1" />
                    <NumberField label="Seed" name="form[seed]" placeholder="0" min="0" />
                    <label>
                        <span>"Loss on answers only (mask the prompt)"</span>
                        <select name="form[mask_prompt]">
                            <option value="true" selected>"Yes"</option>
                            <option value="false">"No"</option>
                        </select>
                    </label>
                </div>
            </div>
            <button type="submit" class="primary" id="start">"Start fine-tune"</button>
        </form>
    }
}
