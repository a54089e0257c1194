//! `GET /api/runs/compare?ids=1,2,3`: what the runs comparison page shows.

use app::run_comparison_dto::RunComparison;
use axum::extract::{Query, State};
use axum::Json;

use super::ApiError;
use crate::state::SharedState;

/// `ids` comma-separated or repeated (`?ids=1&ids=2`, a form's checkboxes).
pub async fn show(
    State(state): State<SharedState>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<RunComparison>, ApiError> {
    let values = pairs
        .iter()
        .filter(|(key, _)| key == "ids")
        .map(|(_, value)| value.as_str());
    let ids = crate::run_comparison::parse_ids(values)?;
    Ok(Json(crate::run_comparison::compare_runs(&state, &ids)?))
}
