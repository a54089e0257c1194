//! One error type for every API handler: 4xx with a message the user can act
//! on, 5xx opaque (the detail goes to the server log).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::chat::ChatError;
use crate::compare::CompareError;
use crate::evaluations::EvaluationError;
use crate::run_comparison::RunComparisonError;
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

impl From<CompareError> for ApiError {
    fn from(error: CompareError) -> Self {
        match error {
            CompareError::Invalid { field, message } => Self::Invalid { field, message },
            CompareError::NotFound(message) => Self::NotFound(message),
            CompareError::Internal(error) => Self::Internal(error),
        }
    }
}

impl From<ChatError> for ApiError {
    fn from(error: ChatError) -> Self {
        match error {
            ChatError::Invalid { field, message } => Self::Invalid { field, message },
            not_found @ ChatError::NotFound(_) => Self::NotFound(not_found.to_string()),
            ChatError::Busy(message) => Self::Conflict(message),
            // The worker's reason may name files and internals: logged, not sent.
            ChatError::Generation(message) => Self::Internal(anyhow::anyhow!(message)),
            ChatError::Internal(error) => Self::Internal(error),
        }
    }
}

impl From<EvaluationError> for ApiError {
    fn from(error: EvaluationError) -> Self {
        match error {
            EvaluationError::Invalid { field, message } => Self::Invalid { field, message },
            EvaluationError::NotFound(message) => Self::NotFound(message),
            EvaluationError::Conflict(message) => Self::Conflict(message),
            EvaluationError::Internal(error) => Self::Internal(error),
        }
    }
}

impl From<RunComparisonError> for ApiError {
    fn from(error: RunComparisonError) -> Self {
        match error {
            RunComparisonError::InvalidIds(message) => Self::invalid("ids", message),
            not_found @ RunComparisonError::NotFound(_) => Self::NotFound(not_found.to_string()),
            RunComparisonError::Internal(error) => Self::Internal(error),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn status(error: impl Into<ApiError>) -> StatusCode {
        error.into().into_response().status()
    }

    #[test]
    fn module_errors_answer_with_their_status() {
        assert_eq!(
            status(CompareError::invalid("top_p", "must be in (0, 1]")),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(
            status(CompareError::comparison_not_found(7)),
            StatusCode::NOT_FOUND
        );
        assert_eq!(status(ChatError::NotFound(3)), StatusCode::NOT_FOUND);
        assert_eq!(
            status(ChatError::Busy("trainings hold every slot".into())),
            StatusCode::CONFLICT
        );
        assert_eq!(
            status(ChatError::Generation("cannot read /models/x".into())),
            StatusCode::INTERNAL_SERVER_ERROR,
            "a worker's failure is logged, not sent"
        );
        assert_eq!(
            status(EvaluationError::Conflict("no checkpoint yet".into())),
            StatusCode::CONFLICT
        );
        assert_eq!(
            status(RunComparisonError::NotFound(9)),
            StatusCode::NOT_FOUND
        );
        let ids = ApiError::from(RunComparisonError::InvalidIds("choose 2 to 8 runs".into()));
        assert_eq!(ids.to_string(), "ids: choose 2 to 8 runs");
        assert_eq!(
            ApiError::from(ChatError::NotFound(3)).to_string(),
            "chat 3 does not exist"
        );
    }
}
