//! Evaluations over the JSON API: a run's checkpoint on a split of its
//! dataset, and every column of a comparison on a chosen dataset.

use app::compare_dto::{ComparisonEvaluations, EvaluationView};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::Json;
use serde::Deserialize;

use super::parse_body;
use super::ApiError;
use crate::evaluations;
use crate::state::SharedState;

/// `POST /api/runs/{id}/evaluate`'s body (may be empty).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunEvaluateRequest {
    /// `train`, `valid` or `test` (default).
    #[serde(default)]
    pub split: Option<String>,
    /// A checkpoint's step; default: the best checkpoint.
    #[serde(default)]
    pub step: Option<i64>,
}

pub async fn evaluate_run(
    State(state): State<SharedState>,
    Path(id): Path<i64>,
    body: Bytes,
) -> Result<Json<EvaluationView>, ApiError> {
    let request: RunEvaluateRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RunEvaluateRequest::default()
    } else {
        parse_body(&body)?
    };
    let evaluation =
        evaluations::evaluate_run(&state, id, request.split.as_deref(), request.step).await?;
    Ok(Json(evaluation))
}

pub async fn run_evaluations(
    State(state): State<SharedState>,
    Path(id): Path<i64>,
) -> Result<Json<Vec<EvaluationView>>, ApiError> {
    let section =
        evaluations::run_evaluations(&state, id)?.ok_or_else(|| ApiError::run_not_found(id))?;
    Ok(Json(section.evaluations))
}

/// `POST /api/compare/{id}/evaluate`'s body, and the query of its `GET`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComparisonEvaluateRequest {
    pub dataset: String,
    /// `valid` (default), `test` or `train`.
    #[serde(default)]
    pub split: Option<String>,
}

pub async fn evaluate_comparison(
    State(state): State<SharedState>,
    Path(id): Path<i64>,
    body: Bytes,
) -> Result<Json<ComparisonEvaluations>, ApiError> {
    let request: ComparisonEvaluateRequest = parse_body(&body)?;
    let split = request.split.as_deref().unwrap_or("valid");
    Ok(Json(
        evaluations::evaluate_comparison(&state, id, &request.dataset, split).await?,
    ))
}

pub async fn comparison_evaluations(
    State(state): State<SharedState>,
    Path(id): Path<i64>,
    Query(query): Query<ComparisonEvaluateRequest>,
) -> Result<Json<ComparisonEvaluations>, ApiError> {
    let split = query.split.as_deref().unwrap_or("valid");
    Ok(Json(evaluations::comparison_evaluations(
        &state,
        id,
        &query.dataset,
        split,
    )?))
}
