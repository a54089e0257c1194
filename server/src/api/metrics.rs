//! A run's metrics as JSON and CSV: one entry per step. A step reported
//! twice (a run resumed from a checkpoint older than its last report)
//! keeps the newest value. The machine's samples come as they were taken
//! (JSON) and, in the CSV, the last one of each step beside its report.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;
use serde_json::Value;

use super::ApiError;
use crate::state::SharedState;

#[derive(Debug, Serialize)]
pub struct Metrics {
    pub run_id: i64,
    /// `report` events' bodies, by step.
    pub reports: Vec<Value>,
    /// `eval` events' bodies, by step.
    pub evals: Vec<Value>,
    /// `system` samples (see `app::system_dto::SystemSample`) with the
    /// step they were taken at, oldest first.
    pub system: Vec<Value>,
}

fn metrics(state: &SharedState, id: i64) -> Result<Metrics, ApiError> {
    state.store.run(id)?.ok_or(ApiError::run_not_found(id))?;
    let mut reports = BTreeMap::new();
    let mut evals = BTreeMap::new();
    let mut system = Vec::new();
    for event in state.store.events_since(id, 0)? {
        let target = match event.kind.as_str() {
            "report" => &mut reports,
            "eval" => &mut evals,
            "system" => {
                let mut body: Value =
                    serde_json::from_str(&event.body).map_err(anyhow::Error::from)?;
                if let Value::Object(map) = &mut body {
                    map.remove("event");
                    map.insert("step".into(), event.step.unwrap_or(0).into());
                }
                system.push(body);
                continue;
            }
            _ => continue,
        };
        let mut body: Value = serde_json::from_str(&event.body).map_err(anyhow::Error::from)?;
        if let Value::Object(map) = &mut body {
            map.remove("event");
        }
        target.insert(event.step.unwrap_or(0), body);
    }
    Ok(Metrics {
        run_id: id,
        reports: reports.into_values().collect(),
        evals: evals.into_values().collect(),
        system,
    })
}

pub async fn json(
    State(state): State<SharedState>,
    Path(id): Path<i64>,
) -> Result<Json<Metrics>, ApiError> {
    Ok(Json(metrics(&state, id)?))
}

const CSV_COLUMNS: [&str; 8] = [
    "epoch",
    "train_loss",
    "learning_rate",
    "it_per_sec",
    "tokens_per_sec",
    "trained_tokens",
    "peak_memory_gb",
    "val_loss",
];

/// Machine columns of the CSV, from a step's last sample (empty where the
/// machine has no such figure).
const SYSTEM_COLUMNS: [&str; 9] = [
    "cpu_temp_c",
    "gpu_temp_c",
    "cpu_util_percent",
    "gpu_util_percent",
    "gpu_power_w",
    "memory_used_bytes",
    "swap_used_bytes",
    "memory_pressure_some_percent",
    "worker_rss_bytes",
];

/// A sample's `SYSTEM_COLUMNS` (the hottest GPU's figures for the GPU ones).
fn system_columns(body: &Value) -> serde_json::Map<String, Value> {
    let sample: app::system_dto::SystemSample =
        serde_json::from_value(body.clone()).unwrap_or_default();
    let gpu = sample.gpus.iter().max_by(|a, b| {
        a.temp_c
            .unwrap_or(f64::MIN)
            .total_cmp(&b.temp_c.unwrap_or(f64::MIN))
    });
    let values = [
        sample.cpu_temp_c.map(Value::from),
        gpu.and_then(|gpu| gpu.temp_c).map(Value::from),
        sample.cpu_util_percent.map(Value::from),
        gpu.and_then(|gpu| gpu.util_percent).map(Value::from),
        gpu.and_then(|gpu| gpu.power_w).map(Value::from),
        sample.memory_used_bytes.map(Value::from),
        sample.swap_used_bytes.map(Value::from),
        sample.memory_pressure_some_percent.map(Value::from),
        sample.worker_rss_bytes.map(Value::from),
    ];
    SYSTEM_COLUMNS
        .iter()
        .zip(values)
        .filter_map(|(name, value)| Some((name.to_string(), value?)))
        .collect()
}

pub async fn csv(
    State(state): State<SharedState>,
    Path(id): Path<i64>,
) -> Result<impl IntoResponse, ApiError> {
    let metrics = metrics(&state, id)?;
    // One row per step that has a report or an eval.
    let mut rows: BTreeMap<u64, serde_json::Map<String, Value>> = BTreeMap::new();
    for body in metrics.reports.iter().chain(&metrics.evals) {
        if let (Some(step), Value::Object(map)) = (body.get("step").and_then(Value::as_u64), body) {
            rows.entry(step).or_default().extend(map.clone());
        }
    }
    for sample in &metrics.system {
        if let Some(row) = sample
            .get("step")
            .and_then(Value::as_u64)
            .and_then(|step| rows.get_mut(&step))
        {
            row.extend(system_columns(sample));
        }
    }
    let mut text = format!(
        "step,{},{}\n",
        CSV_COLUMNS.join(","),
        SYSTEM_COLUMNS.join(",")
    );
    for (step, row) in rows {
        text.push_str(&step.to_string());
        for column in CSV_COLUMNS.iter().chain(&SYSTEM_COLUMNS) {
            text.push(',');
            match row.get(*column) {
                Some(Value::Number(n)) => text.push_str(&n.to_string()),
                Some(other) if !other.is_null() => text.push_str(&other.to_string()),
                _ => {}
            }
        }
        text.push('\n');
    }
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"run-{id}-metrics.csv\""),
            ),
        ],
        text,
    ))
}
