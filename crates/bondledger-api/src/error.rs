//! Every answer that is not a success, as interchange §4 writes it:
//! `{"error": CODE, "message": …}`, or `{"rule", "message", "index"}` for a
//! refusal.

use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bondledger_ledger::{AccessError, LedgerError};
use bondledger_store::StoreError;
use serde_json::{Map, Value};

/// Why a request was not answered with what it asked for.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No token, or one this ledger did not make (401).
    #[error("{0}")]
    Unauthorized(String),
    /// The token does not allow it (403); `index` is the movement at fault.
    #[error("{message}")]
    Forbidden {
        message: String,
        index: Option<usize>,
    },
    #[error("{0}")]
    NotFound(String),
    /// The request cannot be read (400), naming the field and the movement
    /// at fault where there is one.
    #[error("{message}")]
    Malformed {
        message: String,
        field: Option<String>,
        index: Option<usize>,
    },
    /// A movement's `id` is held with other content (400).
    #[error("{message}")]
    IdConflict { message: String, index: usize },
    /// A body or batch over its limit (413).
    #[error("{0}")]
    TooLarge(String),
    /// A movement the rules refuse (422); nothing of its batch was appended.
    #[error("{rule}: {message}")]
    Refused {
        rule: String,
        message: String,
        index: usize,
    },
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The ledger is too busy to take it now; worth trying again (503).
    #[error("{0}")]
    Busy(String),
    /// The request took longer than the server gives one (503).
    #[error("{0}")]
    Timeout(String),
    /// The read replica has not replayed the caller's last write in time
    /// (503); the primary holds it.
    #[error("{0}")]
    ReplicaBehind(String),
    /// Something failed that the caller cannot mend; logged in full, told
    /// in short (500).
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn malformed(field: Option<&str>, message: impl Into<String>) -> Self {
        ApiError::Malformed {
            message: message.into(),
            field: field.map(str::to_owned),
            index: None,
        }
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        ApiError::Forbidden {
            message: message.into(),
            index: None,
        }
    }

    pub fn no_such_manual(manual: &str) -> Self {
        ApiError::NotFound(format!("no manual {manual} in this ledger"))
    }

    fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Malformed { .. } | ApiError::IdConflict { .. } => StatusCode::BAD_REQUEST,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Refused { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Busy(_) | ApiError::Timeout(_) | ApiError::ReplicaBehind(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden { .. } => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::Malformed { .. } => "malformed",
            ApiError::IdConflict { .. } => "id_conflict",
            ApiError::TooLarge(_) => "too_large",
            ApiError::Refused { .. } => "refused",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::Busy(_) => "busy",
            ApiError::Timeout(_) => "timeout",
            ApiError::ReplicaBehind(_) => "replica_behind",
            ApiError::Internal(_) => "internal",
        }
    }

    /// The JSON body of the answer.
    pub fn body(&self) -> Value {
        let mut body = Map::new();
        match self {
            ApiError::Refused {
                rule,
                message,
                index,
            } => {
                body.insert("rule".into(), Value::from(rule.as_str()));
                body.insert("message".into(), Value::from(message.as_str()));
                body.insert("index".into(), Value::from(*index));
                return Value::Object(body);
            }
            _ => {
                body.insert("error".into(), Value::from(self.code()));
                body.insert("message".into(), Value::from(self.to_string()));
            }
        }
        match self {
            ApiError::Malformed { field, index, .. } => {
                if let Some(field) = field {
                    body.insert("field".into(), Value::from(field.as_str()));
                }
                if let Some(index) = index {
                    body.insert("index".into(), Value::from(*index));
                }
            }
            ApiError::IdConflict { index, .. } => {
                body.insert("field".into(), Value::from("id"));
                body.insert("index".into(), Value::from(*index));
            }
            ApiError::Forbidden {
                index: Some(index), ..
            } => {
                body.insert("index".into(), Value::from(*index));
            }
            _ => {}
        }
        Value::Object(body)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        // An internal failure was logged in full where it was met.
        if status.is_server_error() && !matches!(self, ApiError::Internal(_)) {
            tracing::warn!(status = status.as_u16(), error = %self, "request not served");
        }
        let mut response = (status, Json(self.body())).into_response();
        if matches!(self, ApiError::ReplicaBehind(_)) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

/// What the caller may be told of a failure inside the ledger: the detail
/// goes to the log, where it cannot leak what another token may not read.
fn internal(error: &dyn std::fmt::Display) -> ApiError {
    tracing::error!(%error, "the ledger failed");
    ApiError::Internal("the ledger could not answer; the server's log says why".into())
}

impl From<LedgerError> for ApiError {
    fn from(error: LedgerError) -> Self {
        match error {
            LedgerError::Unreadable { message, .. } => ApiError::malformed(None, message),
            LedgerError::Malformed {
                line, malformed, ..
            } => ApiError::Malformed {
                message: malformed.to_string(),
                field: malformed.field,
                index: Some(line),
            },
            LedgerError::IdConflict { line, id, .. } => ApiError::IdConflict {
                message: format!("field `id`: {id:?} is already held with other content"),
                index: line,
            },
            LedgerError::Refused {
                line,
                rule,
                message,
                ..
            } => ApiError::Refused {
                rule: rule.as_str().to_owned(),
                message,
                index: line,
            },
            LedgerError::Contention { .. } => ApiError::Busy(error.to_string()),
            LedgerError::ReplicaBehind { .. } => ApiError::ReplicaBehind(error.to_string()),
            LedgerError::Store(store) if store.is_transient() => {
                tracing::warn!(error = %store, "the database failed; the caller may retry");
                ApiError::Busy(
                    "the database could not be reached or was busy; try again with the same ids: \
                     a movement already held is not appended twice"
                        .into(),
                )
            }
            LedgerError::Store(StoreError::InvalidInput(message)) => {
                ApiError::malformed(None, message)
            }
            LedgerError::Corrupt { .. } | LedgerError::Store(_) => internal(&error),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        LedgerError::Store(error).into()
    }
}

impl From<AccessError> for ApiError {
    fn from(error: AccessError) -> Self {
        match error {
            AccessError::Denied { index, message } => ApiError::Forbidden { message, index },
            AccessError::InvalidToken(message) => ApiError::malformed(None, message),
            AccessError::NoRandomness(_) => internal(&error),
            AccessError::Ledger(error) => error.into(),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::malformed(None, rejection.body_text())
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge(format!("the body is over {} bytes", crate::MAX_BODY_BYTES))
        } else {
            ApiError::malformed(None, rejection.body_text())
        }
    }
}
