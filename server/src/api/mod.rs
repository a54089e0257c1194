//! The JSON API and its SSE streams (see README.md's JSON API table).

mod adapter;
mod catalog;
mod chat;
mod compare;
mod datasets;
mod error;
mod evaluations;
mod events;
mod exports;
mod metrics;
mod run_comparison;
pub(crate) mod runs;
mod system;

use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use axum::Router;
use serde::Deserialize;

pub use error::ApiError;

use crate::state::SharedState;

/// The `/api/...` routes besides `/api/health`.
pub fn routes() -> Router<SharedState> {
    Router::new()
        .route(
            "/api/models",
            get(catalog::list_models).post(catalog::import_model),
        )
        .route("/api/models/{id}", delete(catalog::delete_model))
        .route("/api/models/pull", post(catalog::start_pull))
        .route("/api/models/pulls", get(catalog::list_pulls))
        .route(
            "/api/models/pulls/{id}",
            get(catalog::show_pull).delete(catalog::dismiss_pull),
        )
        .route("/api/models/pulls/{id}/retry", post(catalog::retry_pull))
        .route("/api/models/pulls/{id}/events", get(catalog::pull_events))
        .route(
            "/api/datasets",
            // The access layer limits uploads (`--max-upload-mb`).
            get(catalog::list_datasets)
                .post(datasets::upload)
                .layer(DefaultBodyLimit::disable()),
        )
        .route(
            "/api/datasets/{id}",
            get(datasets::show).delete(datasets::delete),
        )
        .route("/api/system", get(system::show))
        .route("/api/runs", get(runs::list).post(runs::create))
        .route("/api/runs/estimate", post(runs::estimate))
        .route("/api/runs/events", get(events::runs_stream))
        .route("/api/runs/compare", get(run_comparison::show))
        .route("/api/runs/{id}", get(runs::show).delete(runs::delete))
        .route("/api/runs/{id}/adapter.zip", get(adapter::download))
        .route("/api/runs/{id}/stop", post(runs::stop))
        .route("/api/runs/{id}/exports", post(exports::create))
        .route("/api/exports", get(exports::list))
        .route(
            "/api/exports/{id}",
            get(exports::show).delete(exports::delete),
        )
        .route("/api/exports/{id}/events", get(exports::events))
        .route("/api/exports/{id}/cancel", post(exports::cancel))
        // The export page's delete button: forms cannot send DELETE.
        .route("/api/exports/{id}/delete", post(exports::delete))
        .route("/api/exports/{id}/download", get(exports::download))
        .route("/api/runs/{id}/resume", post(runs::resume))
        .route("/api/runs/{id}/metrics.json", get(metrics::json))
        .route("/api/runs/{id}/metrics.csv", get(metrics::csv))
        .route("/api/runs/{id}/events", get(events::run_stream))
        .route("/api/runs/{id}/evaluate", post(evaluations::evaluate_run))
        .route(
            "/api/runs/{id}/evaluations",
            get(evaluations::run_evaluations),
        )
        .route("/api/compare", get(compare::list).post(compare::create))
        .route("/api/compare/{id}", get(compare::show))
        .route("/api/compare/{id}/events", get(compare::events))
        .route("/api/compare/{id}/ballot", get(compare::ballot))
        .route("/api/compare/{id}/votes", post(compare::vote))
        .route("/api/compare/{id}/cancel", post(compare::cancel))
        .route(
            "/api/compare/{id}/evaluate",
            post(evaluations::evaluate_comparison),
        )
        .route(
            "/api/compare/{id}/evaluations",
            get(evaluations::comparison_evaluations),
        )
        .route(
            "/api/compare/adapters",
            get(compare::list_adapters).post(compare::import_adapter),
        )
        .route("/api/compare/inference", get(compare::inference_stats))
        .route("/api/chat", post(chat::create_chat))
        .route(
            "/api/chat/{id}",
            get(chat::show_chat).patch(chat::update_chat),
        )
        .route("/api/chat/{id}/messages", post(chat::send_chat_message))
        .route("/api/chat/{id}/cancel", post(chat::cancel_chat))
}

/// A JSON body as `T`; a value that does not fit names its path (`body`
/// for the whole).
pub(crate) fn parse_body<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let field = if path == "." { "body".into() } else { path };
        ApiError::invalid(field, error.into_inner().to_string())
    })
}
