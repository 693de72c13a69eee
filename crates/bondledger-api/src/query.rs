//! Query strings: read strictly (an unknown parameter is most often a
//! misspelt one), refused as JSON, paged within limits.

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use bondledger_ledger::MAX_PAGE_ENTRIES;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Entries in a page when the caller does not say.
pub const DEFAULT_PAGE_ENTRIES: usize = 100;

/// A query string read into `T`; one that cannot be is a 400 in JSON.
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Query(pairs) = Query::<Vec<(String, String)>>::from_request_parts(parts, state).await?;
        if let Some((name, _)) = pairs
            .iter()
            .find(|(_, value)| value.chars().any(char::is_control))
        {
            return Err(ApiError::malformed(Some(name), "holds a control character"));
        }
        let Query(value) = Query::<T>::from_request_parts(parts, state).await?;
        Ok(ApiQuery(value))
    }
}

/// The size of a page: at least 1; more than [`MAX_PAGE_ENTRIES`] is cut to it.
pub fn page_limit(limit: Option<usize>) -> Result<usize, ApiError> {
    match limit {
        None => Ok(DEFAULT_PAGE_ENTRIES),
        Some(0) => Err(ApiError::malformed(Some("limit"), "must be 1 or more")),
        Some(limit) => Ok(limit.min(MAX_PAGE_ENTRIES)),
    }
}

/// Where a page starts: after this version or position.
pub fn after(after: Option<i64>) -> Result<i64, ApiError> {
    match after {
        Some(after) if after < 0 => Err(ApiError::malformed(
            Some("after"),
            format!("must be 0 or more, not {after}"),
        )),
        Some(after) => Ok(after),
        None => Ok(0),
    }
}
