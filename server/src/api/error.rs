//! One error type for every API handler: 4xx with a message the user can act
//! on, 5xx opaque (the detail goes to the server log).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::store::StoreError;
use crate::supervisor::SupervisorError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// Not for this role (403).
    #[error("{0}")]
    Forbidden(String),
    /// A body over its limit (413).
    #[error("{0}")]
    TooLarge(String),
    /// A request field with a bad value (422).
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn run_not_found(id: i64) -> Self {
        Self::NotFound(format!("run {id} does not exist"))
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        Self::Internal(error.into())
    }
}

impl From<SupervisorError> for ApiError {
    fn from(error: SupervisorError) -> Self {
        match error {
            SupervisorError::NotFound(id) => Self::run_not_found(id),
            conflict @ SupervisorError::Conflict { .. } => Self::Conflict(conflict.to_string()),
            SupervisorError::Store(error) => error.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = match &self {
            Self::NotFound(message) => (StatusCode::NOT_FOUND, json!({ "error": message })),
            Self::Conflict(message) => (StatusCode::CONFLICT, json!({ "error": message })),
            Self::Forbidden(message) => (StatusCode::FORBIDDEN, json!({ "error": message })),
            Self::TooLarge(message) => (StatusCode::PAYLOAD_TOO_LARGE, json!({ "error": message })),
            Self::Invalid { field, message } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({ "error": format!("{field}: {message}"), "field": field }),
            ),
            Self::Internal(error) => {
                tracing::error!(error = format!("{error:#}"), "API request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({ "error": "internal error; see the server log" }),
                )
            }
        };
        (status, Json(body)).into_response()
    }
}
