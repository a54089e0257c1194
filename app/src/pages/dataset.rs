//! One dataset: its files and splits, every validation problem, token
//! figures and a length histogram against the sequence length, and a few
//! examples rendered with a model's chat template, prompt tokens told apart
//! from trained ones. The settings are a GET form, so links can share a view.

use leptos::prelude::*;
use leptos_router::hooks::{use_params_map, use_query_map};

use crate::dto::{DatasetDetail, DatasetQuery, ExamplePreview, ModelSummary, SplitTokens};
use crate::layout::{Heading, Page};
use crate::pages::catalog::DatasetFiles;
use crate::pages::{posted_error, ErrorBox};

#[server(prefix = "/fn", endpoint = "datasets/detail")]
pub async fn load_dataset(
    id: i64,
    query: DatasetQuery,
) -> Result<(Option<DatasetDetail>, Vec<ModelSummary>), ServerFnError> {
    let backend = expect_context::<crate::SharedBackend>();
    let detail = backend
        .dataset_detail(id, query)
        .map_err(ServerFnError::new)?;
    let models = backend.list_models().map_err(ServerFnError::new)?;
    Ok((detail, models))
}

#[server(prefix = "/fn", endpoint = "datasets/delete")]
pub async fn delete_dataset(id: i64) -> Result<(), ServerFnError> {
    let backend = expect_context::<crate::SharedBackend>();
    backend.delete_dataset(id).map_err(ServerFnError::new)?;
    backend.redirect("/datasets");
    Ok(())
}

/// The page's settings from its URL; anything unreadable takes the default.
fn query_from_url() -> DatasetQuery {
    use_query_map().with_untracked(|query| {
        let text = |key: &str| query.get(key).filter(|value| !value.is_empty());
        DatasetQuery {
            model: text("model"),
            max_seq_length: text("max_seq_length").and_then(|v| v.parse().ok()),
            mask_prompt: text("mask_prompt").map(|v| v == "true"),
            split_fraction: text("split_fraction").and_then(|v| v.parse().ok()),
            seed: text("seed").and_then(|v| v.parse().ok()),
        }
    })
}

#[component]
pub fn DatasetPage() -> impl IntoView {
    let id = use_params_map()
        .with_untracked(|params| params.get("id").and_then(|id| id.parse::<i64>().ok()));
    let query = query_from_url();
    let loaded = Resource::new_blocking(
        move || (id, query.clone()),
        |(id, query)| async move {
            match id {
                Some(id) => load_dataset(id, query).await,
                None => Ok((None, Vec::new())),
            }
        },
    );
    let error = posted_error();
    view! {
        <Page current="/datasets">
            <ErrorBox message=error />
            <Suspense fallback=|| view! { <p class="muted">"Checking the dataset..."</p> }>
                {move || Suspend::new(async move {
                    match loaded.await {
                        Ok((Some(detail), _)) if detail.inspecting.is_some() => {
                            view! { <Inspecting detail /> }.into_any()
                        }
                        Ok((Some(detail), models)) => view! { <DatasetView detail models /> }.into_any(),
                        Ok((None, _)) => view! {
                            <Heading text="No such dataset" />
                            <p class="muted">"It may have been deleted."</p>
                        }
                        .into_any(),
                        Err(error) => view! {
                            <Heading text="Dataset" />
                            <p class="error-box">{format!("Could not check the dataset: {error}")}</p>
                        }
                        .into_any(),
                    }
                })}
            </Suspense>
        </Page>
    }
}

/// A large dataset read by a model's tokenizer for the first time: how far
/// it is. The page reloads itself until the figures are there (they are
/// stored, so later visits answer at once).
#[component]
fn Inspecting(detail: DatasetDetail) -> impl IntoView {
    let progress = detail.inspecting.unwrap_or(crate::dto::InspectionProgress {
        encoded: 0,
        total: 0,
    });
    let model = detail.query.model.clone().unwrap_or_default();
    let files = detail
        .files
        .iter()
        .map(|(name, bytes)| format!("{name} ({})", crate::pages::catalog::format_bytes(*bytes)))
        .collect::<Vec<_>>()
        .join(" · ");
    view! {
        <meta http-equiv="refresh" content="1" />
        <div class="toolbar">
            <Heading text=detail.summary.name.clone() />
            <span class="status running">"tokenizing"</span>
        </div>
        <section class="panel" id="inspection-progress">
            {if progress.total == 0 {
                // The files are still being read: nothing counted yet.
                view! { <p>{format!("Reading the files for {model}...")}</p> }.into_any()
            } else {
                view! {
                    <p>
                        {format!("Tokenizing with {model}: ")}
                        <progress value=progress.encoded max=progress.total></progress>
                        {format!(
                            " {} of {} examples",
                            group_digits(progress.encoded),
                            group_digits(progress.total),
                        )}
                    </p>
                }
                .into_any()
            }}
            <p class="muted">
                "The first look at a large dataset reads every example once; its figures are then kept, so this page and new runs on it answer at once."
            </p>
        </section>
        <p class="muted small">{files}</p>
    }
}

/// 100000 as "100,000".
fn group_digits(value: u64) -> String {
    let digits = value.to_string();
    let mut grouped = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}

#[component]
fn DatasetView(detail: DatasetDetail, models: Vec<ModelSummary>) -> impl IntoView {
    // Viewers get no actions: the server would refuse their posts.
    let role = crate::role::current_role();
    let summary = detail.summary.clone();
    let query = detail.query.clone();
    let max_seq_length = query.max_seq_length.unwrap_or(2048);
    let train_tokens = detail
        .splits
        .iter()
        .find(|split| split.split == "train")
        .and_then(|split| split.tokens.clone());
    let new_run_href = format!("/runs/new?dataset={}", url_component(&summary.name));
    let status = if detail.problems.is_empty() {
        view! { <span class="status done">"ready"</span> }.into_any()
    } else {
        let count = detail.problems.len();
        view! {
            <span class="status failed">
                {format!("{count} problem{}", if count == 1 { "" } else { "s" })}
            </span>
        }
        .into_any()
    };
    let delete_form = role.can_manage().then(|| {
        view! {
            <details class="danger-zone panel">
                <summary>"Delete this dataset..."</summary>
                <form method="post" action="/fn/datasets/delete">
                    <input type="hidden" name="id" value=summary.id />
                    <p>"Its files are removed from the data dir. Runs that used it keep their results."</p>
                    <button type="submit" class="danger" id="delete-dataset">
                        {format!("Delete {}", summary.name)}
                    </button>
                </form>
            </details>
        }
    });
    view! {
        <div class="toolbar">
            <Heading text=summary.name.clone() />
            {status}
            <span class="muted">{detail.format.clone().unwrap_or_else(|| "format unknown".into())}</span>
            <span class="spacer"></span>
            {(detail.problems.is_empty() && role.can_run()).then(|| view! {
                <a class="button primary" href=new_run_href>"Fine-tune on it"</a>
            })}
        </div>
        <Problems problems=detail.problems.clone() name=summary.name.clone() can_replace=role.can_manage() />
        <div class="grid-2">
            <section class="panel">
                <h2>"Splits"</h2>
                <SplitsTable detail=detail.clone() />
                <p class="muted small">
                    {detail
                        .files
                        .iter()
                        .map(|(name, bytes)| format!("{name} ({})", crate::pages::catalog::format_bytes(*bytes)))
                        .collect::<Vec<_>>()
                        .join(" · ")}
                </p>
            </section>
            <section class="panel">
                <h2>"Settings"</h2>
                <SettingsForm query=query.clone() models />
            </section>
        </div>
        {train_tokens.map(|tokens| view! {
            <section class="panel">
                <h2>"Token lengths (train)"</h2>
                <Histogram tokens max_seq_length />
            </section>
        })}
        <section class="panel">
            <h2>"Examples"</h2>
            <p class="legend small">
                <span class="seg-masked">"prompt (no loss)"</span>
                <span class="seg-trained">"trained"</span>
                <span class="seg-truncated">"cut by max sequence length"</span>
            </p>
            {if detail.previews.is_empty() {
                view! { <p class="muted">"No example could be rendered; see the problems above."</p> }.into_any()
            } else {
                detail.previews.into_iter().map(|preview| view! { <Preview preview /> }).collect_view().into_any()
            }}
        </section>
        {delete_form}
    }
}

/// The fixed files, uploaded under the dataset's name: a dataset with
/// problems is replaced in place (the same page, the same id).
#[component]
fn ReplaceForm(name: String) -> impl IntoView {
    view! {
        <form class="stacked" method="post" action="/api/datasets" enctype="multipart/form-data" id="replace-dataset">
            <input type="hidden" name="name" value=name />
            <DatasetFiles one_file="The fixed file (valid and test are held out of it)" />
            <button type="submit" class="primary" id="replace">"Replace with the fixed files"</button>
        </form>
    }
}

#[component]
fn Problems(
    problems: Vec<crate::dto::DatasetProblem>,
    /// The dataset's name, which a replacing upload keeps.
    name: String,
    can_replace: bool,
) -> impl IntoView {
    (!problems.is_empty()).then(|| {
        let items = problems
            .into_iter()
            .map(|problem| {
                let place = match problem.line {
                    Some(line) => format!("{}:{line}", problem.file),
                    None => problem.file,
                };
                view! {
                    <li>
                        <code>{place}</code>
                        {problem.field.map(|field| view! { " " <code class="field">{field}</code> })}
                        ": " {problem.message}
                    </li>
                }
            })
            .collect_view();
        view! {
            <section class="panel problems" role="alert">
                <h2>"Problems to fix"</h2>
                <p class="muted">"Fix these lines and upload the files again under this name (below): the dataset keeps its name and page. A run needs a dataset without problems."</p>
                <ul id="problems">{items}</ul>
                {can_replace.then(|| view! { <ReplaceForm name /> })}
            </section>
        }
    })
}

#[component]
fn SplitsTable(detail: DatasetDetail) -> impl IntoView {
    let rows = detail
        .splits
        .into_iter()
        .map(|split| {
            let tokens = split.tokens.clone();
            let figure = move |pick: fn(&SplitTokens) -> u64| {
                tokens
                    .as_ref()
                    .map_or("–".to_string(), |t| pick(t).to_string())
            };
            view! {
                <tr>
                    <td>{split.split.clone()}</td>
                    <td class="muted">{split.source}</td>
                    <td class="num">{split.examples}</td>
                    <td class="num">{figure(|t| t.tokens)}</td>
                    <td class="num">{figure(|t| t.trained_tokens)}</td>
                    <td class="num">{figure(|t| t.max_length)}</td>
                    <td class="num">{figure(|t| t.truncated_examples)}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <table id="splits">
            <thead>
                <tr>
                    <th>"Split"</th><th>"From"</th><th class="num">"Examples"</th>
                    <th class="num">"Tokens"</th><th class="num">"Trained"</th>
                    <th class="num">"Longest"</th><th class="num">"Truncated"</th>
                </tr>
            </thead>
            <tbody>{rows}</tbody>
        </table>
    }
}

#[component]
fn SettingsForm(query: DatasetQuery, models: Vec<ModelSummary>) -> impl IntoView {
    let chosen = query.model.clone().unwrap_or_default();
    let options = models
        .into_iter()
        .map(|model| {
            let selected = model.name == chosen;
            let label = model.name.clone();
            view! { <option value=model.name selected=selected>{label}</option> }
        })
        .collect_view();
    let mask = query.mask_prompt.unwrap_or(true);
    view! {
        <form class="stacked" method="get" id="dataset-settings">
            <label>
                <span>"Model (tokenizer and chat template)"</span>
                <select name="model">{options}</select>
            </label>
            <label>
                <span>"Max sequence length"</span>
                <input type="number" name="max_seq_length" min="8" value=query.max_seq_length />
            </label>
            <label>
                <span>"Loss on answers only (mask the prompt)"</span>
                <select name="mask_prompt">
                    <option value="true" selected=mask>"Yes"</option>
                    <option value="false" selected=!mask>"No"</option>
                </select>
            </label>
            <label>
                <span>"Held out for valid and for test, when one file is given"</span>
                <input type="number" name="split_fraction" min="0" max="0.5" step="any" value=query.split_fraction />
            </label>
            <label>
                <span>"Split seed"</span>
                <input type="number" name="seed" min="0" value=query.seed />
            </label>
            <button type="submit">"Apply"</button>
        </form>
    }
}

/// Bars of the token-length counts, with the max sequence length marked:
/// what lies right of the line is cut.
#[component]
fn Histogram(tokens: SplitTokens, max_seq_length: usize) -> impl IntoView {
    const WIDTH: f64 = 640.0;
    const HEIGHT: f64 = 160.0;
    const BOTTOM: f64 = 20.0;
    let width = tokens.histogram_bucket_width.max(1) as f64;
    let extent = tokens.histogram.len() as f64 * width;
    // A limit far right of every length would squeeze the bars into a
    // corner: then it is left out and the caption says all fit.
    let limit_shown = (max_seq_length as f64) < extent * 2.0;
    let span = if limit_shown {
        extent.max(max_seq_length as f64 * 1.05)
    } else {
        extent
    };
    let x_of = |length: f64| length / span * WIDTH;
    let highest = tokens.histogram.iter().copied().max().unwrap_or(1).max(1) as f64;
    let bars = tokens
        .histogram
        .iter()
        .enumerate()
        .filter(|(_, count)| **count > 0)
        .map(|(i, &count)| {
            let height = count as f64 / highest * (HEIGHT - BOTTOM - 8.0);
            let x = x_of(i as f64 * width);
            let title = format!(
                "{count} example(s) of {}-{} tokens",
                i as u64 * tokens.histogram_bucket_width,
                (i as u64 + 1) * tokens.histogram_bucket_width - 1
            );
            view! {
                <rect class="bar" x=format!("{x:.1}") y=format!("{:.1}", HEIGHT - BOTTOM - height)
                    width=format!("{:.1}", (x_of(width) - 1.0).max(1.0)) height=format!("{height:.1}")>
                    <title>{title}</title>
                </rect>
            }
        })
        .collect_view();
    let limit_x = x_of(max_seq_length as f64);
    let limit = limit_shown.then(|| {
        view! {
            <line class="limit" x1=format!("{limit_x:.1}") x2=format!("{limit_x:.1}") y1="0" y2=format!("{}", HEIGHT - BOTTOM) />
            <text class="axis" x=format!("{:.1}", (limit_x - 4.0).max(60.0)) y="12" text-anchor="end">
                {format!("max {max_seq_length}")}
            </text>
        }
    });
    let summary = format!(
        "{} examples, {}-{} tokens; {} longer than {max_seq_length} lose {} tokens",
        tokens.histogram.iter().sum::<u64>(),
        tokens.min_length,
        tokens.max_length,
        tokens.truncated_examples,
        tokens.truncated_tokens
    );
    view! {
        <svg class="histogram" viewBox=format!("0 0 {WIDTH} {HEIGHT}") role="img" aria-label=summary.clone()>
            {bars}
            {limit}
            <text class="axis" x="0" y=format!("{}", HEIGHT - 4.0)>"0"</text>
            <text class="axis" x=format!("{WIDTH}") y=format!("{}", HEIGHT - 4.0) text-anchor="end">
                {format!("{} tokens", span.round())}
            </text>
        </svg>
        <p class="muted small">{summary}</p>
    }
}

#[component]
fn Preview(preview: ExamplePreview) -> impl IntoView {
    let segments = preview
        .segments
        .into_iter()
        .map(|segment| {
            let class = format!("seg-{}", segment.kind);
            let title = format!("{} token(s), {}", segment.tokens, segment.kind);
            view! { <span class=class title=title>{segment.text}</span> }
        })
        .collect_view();
    view! {
        <figure class="preview">
            <figcaption class="muted small">{format!("{}:{}", preview.file, preview.line)}</figcaption>
            <pre>{segments}</pre>
        </figure>
    }
}

/// Percent-encodes a value for a query string.
fn url_component(value: &str) -> String {
    value
        .bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(super::url_component("my data/1+2"), "my%20data%2F1%2B2");
    }
}
