//! The manuals: the list a token may read, and one manual's balance,
//! verification report and history, as they stand now or as of a version, a
//! moment of recording or a business date (interchange §2).

use axum::extract::Path;
use axum::http::{HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bondledger_domain::{report_json, ManualNo, VerifyOptions};
use bondledger_ledger::json::{balance_json, history_entry_json, manual_json};
use bondledger_ledger::AsOf;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;
use utoipa::IntoParams;

use crate::auth::Caller;
use crate::docs::{Balance, ErrorBody, HistoryEvent, ManualSummary, VerificationReport};
use crate::error::ApiError;
use crate::query::{page_limit, ApiQuery};

/// The header that tells where the next page starts, when there is one.
pub const NEXT_AFTER: HeaderName = HeaderName::from_static("x-next-after");

/// Which prefix of the manual's history the answer sees; at most one.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AsOfQuery {
    /// The manual as it stood after its Nth event (its `version`).
    #[param(minimum = 0)]
    as_of_position: Option<i64>,
    /// The events the ledger held at that moment (RFC 3339).
    as_of_recorded: Option<String>,
    /// The manual's events dated on or before that day (YYYY-MM-DD).
    as_of_date: Option<String>,
}

/// As [`AsOfQuery`], with the work-order tolerance of `verify`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct VerificationQuery {
    #[param(minimum = 0)]
    as_of_position: Option<i64>,
    as_of_recorded: Option<String>,
    as_of_date: Option<String>,
    /// Work-order deviation tolerated, as a decimal fraction (default "0.02").
    tolerance: Option<String>,
}

/// As [`AsOfQuery`], with paging.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    #[param(minimum = 0)]
    as_of_position: Option<i64>,
    as_of_recorded: Option<String>,
    as_of_date: Option<String>,
    /// The events with versions above this one (the last `version` of the
    /// previous page).
    #[param(minimum = 0)]
    after: Option<i64>,
    /// Events in the page: 100 unless given, at most 1000.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

fn as_of(
    position: Option<i64>,
    recorded: Option<&str>,
    date: Option<&str>,
) -> Result<AsOf, ApiError> {
    let given = [position.is_some(), recorded.is_some(), date.is_some()];
    if given.iter().filter(|g| **g).count() > 1 {
        return Err(ApiError::malformed(
            None,
            "give at most one of as_of_position, as_of_recorded and as_of_date",
        ));
    }
    if let Some(position) = position {
        if position < 0 {
            return Err(ApiError::malformed(
                Some("as_of_position"),
                format!("must be 0 or more, not {position}"),
            ));
        }
        return Ok(AsOf::Version(position));
    }
    if let Some(moment) = recorded {
        let parsed = DateTime::parse_from_rfc3339(moment).map_err(|error| {
            ApiError::malformed(
                Some("as_of_recorded"),
                format!("{moment:?} is not an RFC 3339 timestamp: {error}"),
            )
        })?;
        return Ok(AsOf::Recorded(parsed.with_timezone(&Utc)));
    }
    if let Some(date) = date {
        let parsed = bondledger_domain::movement::parse_date(date)
            .map_err(|error| ApiError::malformed(Some("as_of_date"), error))?;
        return Ok(AsOf::Date(parsed));
    }
    Ok(AsOf::Latest)
}

/// A manual named in a path: one that cannot be a manual number is no manual.
fn manual_number(manual: &str) -> Result<(), ApiError> {
    ManualNo::try_from(manual.to_owned())
        .map(drop)
        .map_err(|_| ApiError::no_such_manual(manual))
}

/// The manuals the token may read, with trade mode, enterprises, validity
/// and status.
#[utoipa::path(
    get,
    path = "/api/v1/manuals",
    tag = "manuals",
    responses(
        (status = 200, description = "The manuals the token may read, by number", body = [ManualSummary]),
        (status = 401, description = "No token, or an unknown one", body = ErrorBody),
    ),
)]
pub async fn list_manuals(caller: Caller) -> Result<Json<Value>, ApiError> {
    let rows = caller.ledger().manuals().await?;
    let enterprise = caller.enterprise();
    let readable = rows.iter().filter(|row| {
        enterprise.is_none_or(|code| row.enterprise == code || row.processing_enterprise == code)
    });
    Ok(Json(Value::Array(readable.map(manual_json).collect())))
}

/// Every material's balance and what is at contractors (`balance --format json`).
#[utoipa::path(
    get,
    path = "/api/v1/manuals/{manual}/balance",
    tag = "manuals",
    params(("manual" = String, Path, description = "The manual number"), AsOfQuery),
    responses(
        (status = 200, description = "The balances", body = Balance),
        (status = 400, description = "A malformed query", body = ErrorBody),
        (status = 401, description = "No token, or an unknown one", body = ErrorBody),
        (status = 403, description = "The manual is another enterprise's", body = ErrorBody),
        (status = 404, description = "No such manual (then)", body = ErrorBody),
    ),
)]
pub async fn balance(
    caller: Caller,
    Path(manual): Path<String>,
    ApiQuery(query): ApiQuery<AsOfQuery>,
) -> Result<Json<Value>, ApiError> {
    let as_of = readable_as_of(
        &caller,
        &manual,
        query.as_of_position,
        query.as_of_recorded.as_deref(),
        query.as_of_date.as_deref(),
    )
    .await?;
    let balances = caller.ledger().balances(&manual, as_of).await?;
    let balances = balances.ok_or_else(|| ApiError::no_such_manual(&manual))?;
    Ok(Json(balance_json(&balances)))
}

/// The verification report (核销, `verify --format json`).
#[utoipa::path(
    get,
    path = "/api/v1/manuals/{manual}/verification",
    tag = "manuals",
    params(("manual" = String, Path, description = "The manual number"), VerificationQuery),
    responses(
        (status = 200, description = "The report of interchange §3", body = VerificationReport),
        (status = 400, description = "A malformed query", body = ErrorBody),
        (status = 401, description = "No token, or an unknown one", body = ErrorBody),
        (status = 403, description = "The manual is another enterprise's", body = ErrorBody),
        (status = 404, description = "No such manual (then)", body = ErrorBody),
    ),
)]
pub async fn verification(
    caller: Caller,
    Path(manual): Path<String>,
    ApiQuery(query): ApiQuery<VerificationQuery>,
) -> Result<Json<Value>, ApiError> {
    let as_of = readable_as_of(
        &caller,
        &manual,
        query.as_of_position,
        query.as_of_recorded.as_deref(),
        query.as_of_date.as_deref(),
    )
    .await?;
    let mut options = VerifyOptions::default();
    if let Some(text) = &query.tolerance {
        options.tolerance = bondledger_domain::parse_decimal(text)
            .map_err(|error| ApiError::malformed(Some("tolerance"), error.to_string()))?;
    }
    let report = caller.ledger().verify(&manual, as_of, &options).await?;
    let report = report.ok_or_else(|| ApiError::no_such_manual(&manual))?;
    Ok(Json(report_json(&report)))
}

/// Every event of the manual in order with the balances after it
/// (`history --format json`), a page at a time.
#[utoipa::path(
    get,
    path = "/api/v1/manuals/{manual}/history",
    tag = "manuals",
    params(("manual" = String, Path, description = "The manual number"), HistoryQuery),
    responses(
        (status = 200, description = "A page of the history; `x-next-after` is the `after` of the next page when there is one",
            body = [HistoryEvent],
            headers(("x-next-after" = i64, description = "The `after` of the next page"))),
        (status = 400, description = "A malformed query", body = ErrorBody),
        (status = 401, description = "No token, or an unknown one", body = ErrorBody),
        (status = 403, description = "The manual is another enterprise's", body = ErrorBody),
        (status = 404, description = "No such manual (then)", body = ErrorBody),
    ),
)]
pub async fn history(
    caller: Caller,
    Path(manual): Path<String>,
    ApiQuery(query): ApiQuery<HistoryQuery>,
) -> Result<Response, ApiError> {
    let as_of = readable_as_of(
        &caller,
        &manual,
        query.as_of_position,
        query.as_of_recorded.as_deref(),
        query.as_of_date.as_deref(),
    )
    .await?;
    let after = crate::query::after(query.after)?;
    let limit = page_limit(query.limit)?;
    let page = caller
        .ledger()
        .history_page(&manual, as_of, after, limit)
        .await?
        .ok_or_else(|| ApiError::no_such_manual(&manual))?;
    let entries: Vec<Value> = page.entries.iter().map(history_entry_json).collect();
    Ok(paged(Value::Array(entries), page.next_after))
}

/// A page as the answer's body, and where the next one starts as a header.
pub fn paged(body: Value, next_after: Option<i64>) -> Response {
    let mut response = Json(body).into_response();
    if let Some(next) = next_after {
        response
            .headers_mut()
            .insert(NEXT_AFTER, HeaderValue::from(next));
    }
    response
}

/// What every per-manual read checks first: a well-formed manual number the
/// caller may read, and the point of its history asked for.
async fn readable_as_of(
    caller: &Caller,
    manual: &str,
    position: Option<i64>,
    recorded: Option<&str>,
    date: Option<&str>,
) -> Result<AsOf, ApiError> {
    manual_number(manual)?;
    caller.may_read(manual).await?;
    as_of(position, recorded, date)
}
