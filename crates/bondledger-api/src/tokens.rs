//! Access tokens over the API, for an admin's token only: list them, make
//! one (its secret is in the answer, once), revoke one.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use bondledger_ledger::json::{issued_token_json, token_json};
use bondledger_ledger::{Role, TokenInfo};
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::docs::{ErrorBody, IssuedTokenBody, TokenBody};
use crate::error::ApiError;
use crate::AppState;

/// The longest body a token request may have; a real one is far shorter.
const MAX_TOKEN_REQUEST_BYTES: usize = 4096;

/// What token to make.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// `recorder`, `auditor` or `admin`.
    role: String,
    /// A recorder's enterprise (10 characters); no other role has one.
    enterprise: Option<String>,
    /// A note on whom the token is for (at most 200 characters).
    label: Option<String>,
}

fn admin_only(caller: &Caller) -> Result<(), ApiError> {
    if caller.principal.role == Role::Admin {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "tokens are an admin's; this token is a {}'s",
            caller.principal.role
        )))
    }
}

/// Every token made on this ledger, revoked ones too, oldest first; never
/// a secret or a hash.
#[utoipa::path(
    get,
    path = "/api/v1/tokens",
    tag = "tokens",
    responses(
        (status = 200, description = "Every token, oldest first", body = [TokenBody]),
        (status = 401, description = "No token, or an unknown one", body = ErrorBody),
        (status = 403, description = "Not an admin's token", body = ErrorBody),
    ),
)]
pub async fn list_tokens(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    admin_only(&caller)?;
    let tokens = state.ledger.list_tokens().await?;
    Ok(Json(Value::Array(tokens.iter().map(token_json).collect())))
}

/// Makes a token (`token create`); its secret is in this answer and
/// nowhere else, only its hash is kept.
#[utoipa::path(
    post,
    path = "/api/v1/tokens",
    tag = "tokens",
    request_body(content = TokenRequest, description = "The role, and a recorder's enterprise"),
    responses(
        (status = 201, description = "The new token, with its secret shown this once", body = IssuedTokenBody),
        (status = 400, description = "A malformed request: the field is named", body = ErrorBody),
        (status = 401, description = "No token, or an unknown one", body = ErrorBody),
        (status = 403, description = "Not an admin's token", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
    ),
)]
pub async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    admin_only(&caller)?;
    let body = body?;
    if body.len() > MAX_TOKEN_REQUEST_BYTES {
        return Err(ApiError::TooLarge(format!(
            "a token request is at most {MAX_TOKEN_REQUEST_BYTES} bytes"
        )));
    }
    let request: TokenRequest = parse_request(&body)?;
    let role = Role::from_name(&request.role).ok_or_else(|| {
        ApiError::malformed(
            Some("role"),
            format!(
                "{:?} is not a role: recorder, auditor or admin",
                request.role
            ),
        )
    })?;
    let issued = state
        .ledger
        .create_token(
            role,
            request.enterprise.as_deref(),
            request.label.as_deref(),
        )
        .await?;
    tracing::info!(token = %issued.principal.token_id, role = %role, "token made");
    Ok((StatusCode::CREATED, Json(issued_token_json(&issued))))
}

/// Revokes a token: from now on it signs nothing in. It stays listed, with
/// the moment it was revoked; revoking it again changes nothing.
#[utoipa::path(
    delete,
    path = "/api/v1/tokens/{id}",
    tag = "tokens",
    params(("id" = String, Path, description = "The token's id, as listed")),
    responses(
        (status = 200, description = "The token as now held, revoked", body = TokenBody),
        (status = 401, description = "No token, or an unknown one", body = ErrorBody),
        (status = 403, description = "Not an admin's token", body = ErrorBody),
        (status = 404, description = "No such token", body = ErrorBody),
    ),
)]
pub async fn revoke_token(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    admin_only(&caller)?;
    let revoked: Option<TokenInfo> = state.ledger.revoke_token(&id).await?;
    match revoked {
        Some(token) => {
            tracing::info!(token = %id, "token revoked");
            Ok(Json(token_json(&token)))
        }
        None => Err(ApiError::NotFound(format!("no token {id} in this ledger"))),
    }
}

fn parse_request(body: &[u8]) -> Result<TokenRequest, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let request: TokenRequest =
        serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
            let path = error.path().to_string();
            let field = (path != ".").then_some(path);
            ApiError::malformed(field.as_deref(), error.into_inner().to_string())
        })?;
    deserializer
        .end()
        .map_err(|error| ApiError::malformed(None, format!("not one JSON object: {error}")))?;
    Ok(request)
}
