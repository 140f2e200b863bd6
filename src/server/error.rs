//! The one error type of the HTTP layer, and the one place where errors of
//! the domain become statuses: `{"message": ...}` as Gen3 answers (API.md
//! G4), database detail logged, never returned.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::store::StoreError;

/// An error answered as `{"message": ...}` with a status (API.md G4).
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, message)
    }

    pub fn unauthorized(reason: impl std::fmt::Display) -> Self {
        Self::new(401, format!("Authentication Error: {reason}"))
    }

    pub fn forbidden(detail: &str) -> Self {
        Self::new(
            403,
            format!("You don't have access to this resource: {detail}"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // The request id, so a user's report can be found in the server's log.
        let body = match super::current_request_id() {
            Some(id) => json!({"message": self.message, "request_id": &*id}),
            None => json!({"message": self.message}),
        };
        (self.status, axum::Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(detail) => {
                tracing::warn!(%detail, "database unavailable");
                ApiError::new(503, "The database is unavailable; try again shortly.")
            }
            StoreError::Conflict(detail) => {
                tracing::info!(%detail, "write conflict");
                ApiError::new(
                    409,
                    "Another request changed the same records at the same time; nothing was written. Send it again.",
                )
            }
            StoreError::Invalid(message) => ApiError::bad_request(message),
            StoreError::TimedOut => ApiError::new(
                503,
                "The database took too long to answer; narrow the request or try again later.",
            ),
            StoreError::Other(detail) => {
                tracing::error!(%detail, "database error");
                ApiError::new(500, "internal server error")
            }
        }
    }
}

impl From<crate::submission::SubmissionError> for ApiError {
    fn from(e: crate::submission::SubmissionError) -> Self {
        match e {
            crate::submission::SubmissionError::Invalid(message) => ApiError::bad_request(message),
            crate::submission::SubmissionError::NotFound(message) => ApiError::new(404, message),
            crate::submission::SubmissionError::Store(s) => s.into(),
        }
    }
}
