//! The System page (the machine's live figures, the device, the sensors
//! found) and the run page's machine panel: a second chart under the loss
//! with the run's samples and its guard's pauses.

use leptos::prelude::*;

use crate::chart::{ChartPoint, LineChart, Scale, Series};
use crate::layout::{Heading, Page};
use crate::pages::catalog::format_bytes;
use crate::pages::{format_duration, format_optional};
use crate::system_dto::{RunSystem, SystemSample, SystemView};

#[server(prefix = "/fn", endpoint = "system")]
pub async fn load_system() -> Result<SystemView, ServerFnError> {
    Ok(expect_context::<crate::SharedBackend>().system())
}

/// The run chart's lines: (key, label, value of a sample). Every value is
/// a percentage or °C, so they share one axis; live.js's `systemPoints`
/// mirrors it.
/// A line of the run chart: key, label, and its value in a sample.
type SystemLine = (&'static str, &'static str, fn(&SystemSample) -> Option<f64>);

const SYSTEM_SERIES: [SystemLine; 6] = [
    ("cpu-temp", "CPU °C", |s| s.cpu_temp_c),
    ("gpu-temp", "GPU °C", |s| s.gpu_temp_c()),
    ("cpu-util", "CPU %", |s| s.cpu_util_percent),
    ("gpu-util", "GPU %", |s| {
        s.gpus
            .iter()
            .filter_map(|g| g.util_percent)
            .reduce(f64::max)
    }),
    ("gpu-power", "GPU power % of limit", |s| {
        s.gpus
            .iter()
            .filter_map(|g| Some(g.power_w? * 100.0 / g.power_limit_w.filter(|&l| l > 0.0)?))
            .reduce(f64::max)
    }),
    ("memory", "memory %", |s| s.memory_used_percent()),
];

/// The run page's machine panel. `x_of_step` places a step on the loss
/// chart's x axis, so both charts line up.
#[component]
pub fn RunSystemPanel(
    system: RunSystem,
    active: bool,
    x_extent: f64,
    x_axis: crate::axis::Axis,
    x_of_step: Box<dyn Fn(f64) -> f64>,
) -> impl IntoView {
    let mut series: Vec<Series> = SYSTEM_SERIES
        .iter()
        .map(|&(key, label, value)| Series {
            key: key.to_string(),
            label: label.to_string(),
            class: key.to_string(),
            points: system
                .samples
                .iter()
                .filter_map(|(step, sample)| {
                    Some(ChartPoint {
                        step: *step,
                        x: x_of_step(*step as f64),
                        y: value(sample)?,
                    })
                })
                .collect(),
        })
        .filter(|series| !series.points.is_empty())
        .collect();
    if active {
        for &(key, label, value) in &SYSTEM_SERIES {
            if value(&system.now).is_some() && series.iter().all(|series| series.key != key) {
                series.push(Series {
                    key: key.to_string(),
                    label: label.to_string(),
                    class: key.to_string(),
                    points: Vec::new(),
                });
            }
        }
    }
    // Each pause is a vertical line at its step (the run holds there).
    let (low, high) = series
        .iter()
        .flat_map(|series| series.points.iter().map(|point| point.y))
        .fold((0.0f64, 100.0f64), |(low, high), y| {
            (low.min(y), high.max(y))
        });
    series.extend(system.pauses.iter().map(|pause| {
        let x = x_of_step(pause.step as f64);
        let step = pause.step;
        Series {
            key: "pause".into(),
            label: "guard pause".into(),
            class: "pause".into(),
            points: vec![
                ChartPoint { step, x, y: low },
                ChartPoint { step, x, y: high },
            ],
        }
    }));
    let pauses = system
        .pauses
        .iter()
        .map(|pause| {
            let how_long = pause
                .seconds
                .map_or_else(|| "holding".to_string(), |s| format!("for {}", format_duration(s)));
            view! { <li>{format!("Paused at step {} ({}), {how_long}", pause.step, pause.reason)}</li> }
        })
        .collect_view();
    let has_samples = series.iter().any(|series| series.key != "pause");
    view! {
        <section class="panel" id="system">
            <h2>"Machine"</h2>
            <p class="muted" id="guard">{system.guard.clone()}</p>
            {if has_samples || !system.pauses.is_empty() {
                view! { <LineChart id="system-chart" series x_extent x_axis scale=Scale::Linear /> }.into_any()
            } else {
                view! { <p class="muted">"No machine figures for this run yet."</p> }.into_any()
            }}
            {(!system.pauses.is_empty()).then(|| view! { <ul id="pauses">{pauses}</ul> })}
        </section>
    }
}

/// "paused: CPU 97 °C for 2 min 5 s" over a run its guard holds.
#[component]
pub fn PausedBanner(system: RunSystem) -> impl IntoView {
    system.paused.map(|pause| {
        let seconds = pause.seconds.unwrap_or(0.0);
        view! {
            <div class="paused-box" id="paused" role="status">
                <strong>{format!("paused: {}", pause.reason)}</strong>
                {format!(
                    " for {} at step {}; resumes by itself when the machine cools down.",
                    format_duration(seconds),
                    pause.step
                )}
            </div>
        }
    })
}

fn row(label: &'static str, value: Option<String>) -> impl IntoView {
    view! {
        <tr>
            <th>{label}</th>
            <td class="num">{value.unwrap_or_else(|| "–".into())}</td>
        </tr>
    }
}

fn percent(value: Option<f64>) -> Option<String> {
    value.map(|value| format!("{value:.1} %"))
}

#[component]
pub fn SystemPage() -> impl IntoView {
    let view = Resource::new_blocking(|| (), |_| load_system());
    view! {
        <Page current="/system">
            // The figures are read every 10 s when idle, every second while
            // a run trains; the page follows with or without JavaScript.
            <meta http-equiv="refresh" content="5" />
            <Heading text="System" />
            <Suspense fallback=|| view! { <p>"Loading…"</p> }>
                {move || view.get().map(|view| match view {
                    Ok(view) => system_view(view).into_any(),
                    Err(error) => view! { <p class="error-box">{error.to_string()}</p> }.into_any(),
                })}
            </Suspense>
        </Page>
    }
}

fn system_view(view: SystemView) -> impl IntoView {
    let sample = view.sample;
    let sensors = if sample.sensors.is_empty() {
        view! { <p id="no-sensor">"No temperature sensor found."</p> }.into_any()
    } else {
        let rows = sample
            .sensors
            .iter()
            .map(|sensor| {
                view! {
                    <tr>
                        <td>{sensor.source.clone()}</td>
                        <td>{sensor.name.clone()}</td>
                        <td>{sensor.label.clone()}</td>
                        <td class="num">{format!("{:.1} °C", sensor.celsius)}</td>
                        <td>{sensor.cpu.then_some("CPU")}</td>
                    </tr>
                }
            })
            .collect_view();
        view! {
            <table id="sensors">
                <thead><tr><th>"Source"</th><th>"Chip"</th><th>"Sensor"</th><th class="num">"Now"</th><th></th></tr></thead>
                <tbody>{rows}</tbody>
            </table>
        }
        .into_any()
    };
    let gpus = sample
        .gpus
        .iter()
        .map(|gpu| {
            let memory = gpu
                .memory_used_bytes
                .zip(gpu.memory_total_bytes)
                .map(|(used, total)| format!("{} / {}", format_bytes(used), format_bytes(total)));
            let power = gpu.power_w.map(|power| match gpu.power_limit_w {
                Some(limit) => format!("{power:.0} W of {limit:.0} W"),
                None => format!("{power:.0} W"),
            });
            let clocks = gpu
                .graphics_clock_mhz
                .map(|graphics| match gpu.memory_clock_mhz {
                    Some(memory) => format!("{graphics} / {memory} MHz"),
                    None => format!("{graphics} MHz"),
                });
            view! {
                <tr>
                    <td>{format!("{} {}", gpu.index, gpu.name.clone().unwrap_or_default())}</td>
                    <td class="num">{format_optional(gpu.util_percent, 0)}</td>
                    <td class="num">{gpu.temp_c.map_or("–".into(), |t| format!("{t:.0} °C"))}</td>
                    <td class="num">{memory.unwrap_or_else(|| "–".into())}</td>
                    <td class="num">{power.unwrap_or_else(|| "–".into())}</td>
                    <td class="num">{clocks.unwrap_or_else(|| "–".into())}</td>
                    <td>{gpu.throttle_reasons.join(", ")}</td>
                </tr>
            }
        })
        .collect_view();
    let memory = sample
        .memory_used_bytes
        .zip(sample.memory_total_bytes)
        .map(|(used, total)| format!("{} of {}", format_bytes(used), format_bytes(total)));
    let swap = sample
        .swap_used_bytes
        .zip(sample.swap_total_bytes)
        .map(|(used, total)| format!("{} of {}", format_bytes(used), format_bytes(total)));
    let has_gpus = !sample.gpus.is_empty();
    view! {
        <p class="muted">
            "Device: " <strong id="system-device">{view.device}</strong>
            {(view.root != "/").then(|| format!(" · sensors read under {}", view.root))}
        </p>
        <p class="muted" id="guard">{view.guard}</p>
        <div class="grid-2">
            <div class="panel">
                <h2>"CPU and memory"</h2>
                <table id="figures">
                    <tbody>
                        {row("CPU temperature", sample.cpu_temp_c.map(|t| format!("{t:.1} °C")))}
                        {row("CPU use", percent(sample.cpu_util_percent))}
                        {row("CPU frequency", sample.cpu_freq_mhz.map(|f| format!("{f:.0} MHz")))}
                        {row("Memory used", memory)}
                        {row("Memory available", sample.memory_available_bytes.map(format_bytes))}
                        {row("Swap used", swap)}
                        {row("Memory pressure (some, 10 s)", percent(sample.memory_pressure_some_percent))}
                        {row("Memory pressure (full, 10 s)", percent(sample.memory_pressure_full_percent))}
                    </tbody>
                </table>
            </div>
            <div class="panel">
                <h2>"Temperature sensors"</h2>
                {sensors}
            </div>
        </div>
        <div class="panel">
            <h2>"GPUs"</h2>
            {if has_gpus {
                view! {
                    <table id="gpus">
                        <thead><tr><th>"GPU"</th><th class="num">"Use %"</th><th class="num">"Temp"</th><th class="num">"Memory"</th><th class="num">"Power"</th><th class="num">"Clocks"</th><th>"Throttling"</th></tr></thead>
                        <tbody>{gpus}</tbody>
                    </table>
                }
                .into_any()
            } else {
                view! { <p class="muted" id="no-gpu">"No NVIDIA GPU (NVML) found."</p> }.into_any()
            }}
        </div>
    }
}
