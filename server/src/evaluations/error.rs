//! Why an evaluation was refused or could not run; `api::error` turns
//! these into HTTP answers.

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum EvaluationError {
    /// A request field with a bad value.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// No such run or comparison.
    #[error("{0}")]
    NotFound(String),
    /// It cannot be answered as things stand (the base model is gone, the
    /// run has no checkpoint, the inference worker is busy or failed).
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl EvaluationError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl From<StoreError> for EvaluationError {
    fn from(error: StoreError) -> Self {
        Self::Internal(error.into())
    }
}
