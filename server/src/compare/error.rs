//! Why a comparison, a vote or an adapter import was refused; each names
//! what to change. `api::error` turns them into HTTP answers.

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    /// A request field with a bad value.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// No such comparison, or no such prompt of it.
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl CompareError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn comparison_not_found(id: i64) -> Self {
        Self::NotFound(format!("comparison {id} does not exist"))
    }
}

impl From<StoreError> for CompareError {
    fn from(error: StoreError) -> Self {
        Self::Internal(error.into())
    }
}
