//! What the compare page and `/api/compare` do to comparisons: create one
//! (checked, saved, then generated), read one, cast a blind vote.

use std::time::{SystemTime, UNIX_EPOCH};

use app::compare_dto::ComparisonView;
use serde::Deserialize;

use super::error::CompareError;
use super::{request, view, CompareRequest};
use crate::state::AppState;

/// Checks, saves and starts a comparison; returns its id.
pub fn create_comparison(state: &AppState, request: &CompareRequest) -> Result<i64, CompareError> {
    let new = request::resolve(state, request)?;
    let id = state.store.insert_comparison(&new)?;
    super::start(state, id);
    Ok(id)
}

pub fn comparison_view(state: &AppState, id: i64) -> Result<ComparisonView, CompareError> {
    let record = state
        .store
        .comparison(id)?
        .ok_or_else(|| CompareError::comparison_not_found(id))?;
    Ok(view::comparison_view(&record))
}

/// A seed for a ballot's order: a new order at every look, so position
/// tells nothing either.
pub fn shuffle_seed() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoteRequest {
    pub prompt: usize,
    pub output: i64,
}

pub fn cast_vote(state: &AppState, id: i64, vote: &VoteRequest) -> Result<(), CompareError> {
    state
        .store
        .comparison(id)?
        .ok_or_else(|| CompareError::comparison_not_found(id))?;
    if !state.store.insert_vote(id, vote.prompt, vote.output)? {
        return Err(CompareError::invalid(
            "output",
            format!(
                "output {} is not an output of prompt {} of comparison {id}",
                vote.output, vote.prompt
            ),
        ));
    }
    Ok(())
}
