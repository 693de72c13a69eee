//! The caller of a request: the bearer token of its `Authorization` header,
//! looked up by its hash. No token, or one this ledger did not make: 401.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use bondledger_ledger::{Access, Ledger, Principal};

use crate::error::ApiError;
use crate::AppState;

/// The longest `Authorization` header looked at; a token is far shorter.
const MAX_AUTHORIZATION_BYTES: usize = 256;

/// Who the request acts as, and the ledger its reads go to (a replica's,
/// once it holds this token's last write, when `serve` has one). An
/// extractor: a handler that takes it answers 401 before anything else.
pub struct Caller {
    pub principal: Principal,
    reads: Ledger,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let presented = bearer_token(parts)?;
        let Some(principal) = state.ledger.authenticate(presented).await? else {
            return Err(ApiError::Unauthorized(
                "the bearer token is not one of this ledger's".into(),
            ));
        };
        tracing::Span::current().record("token", principal.token_id.as_str());
        let reads = crate::replica::route_reads(state, parts, &principal.token_id).await?;
        Ok(Caller { principal, reads })
    }
}

fn bearer_token(parts: &Parts) -> Result<&str, ApiError> {
    let unauthorized = |message: &str| ApiError::Unauthorized(message.to_owned());
    let header = parts
        .headers
        .get(AUTHORIZATION)
        .ok_or_else(|| unauthorized("no token: send `Authorization: Bearer TOKEN`"))?;
    if header.len() > MAX_AUTHORIZATION_BYTES {
        return Err(unauthorized("the Authorization header is too long"));
    }
    let text = header
        .to_str()
        .map_err(|_| unauthorized("the Authorization header is not text"))?;
    let (scheme, token) = text
        .split_once(' ')
        .ok_or_else(|| unauthorized("the Authorization header is not `Bearer TOKEN`"))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(unauthorized(
            "the Authorization header is not `Bearer TOKEN`",
        ));
    }
    Ok(token.trim())
}

impl Caller {
    /// The ledger this request reads.
    pub fn ledger(&self) -> &Ledger {
        &self.reads
    }

    /// Lets the request read `manual`, or answers 404 (no such manual, for
    /// a token that may not read everything) or 403.
    pub async fn may_read(&self, manual: &str) -> Result<(), ApiError> {
        if self.principal.reads_everything() {
            return Ok(());
        }
        let Some(owners) = self.reads.manual_owners(manual).await? else {
            return Err(ApiError::no_such_manual(manual));
        };
        if self.principal.allows(Access::Read, &owners) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "manual {manual} belongs to enterprise {} (processing {}), not to this token's enterprise",
                owners.enterprise, owners.processing_enterprise
            )))
        }
    }

    /// The recorder's enterprise, for a token bound to one.
    pub fn enterprise(&self) -> Option<&str> {
        if self.principal.reads_everything() {
            None
        } else {
            self.principal.enterprise.as_deref()
        }
    }
}
