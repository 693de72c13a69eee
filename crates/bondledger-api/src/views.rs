//! Across manuals: the investigator's timeline and the audit of the whole
//! ledger.

use axum::extract::State;
use axum::response::Response;
use axum::Json;
use bondledger_ledger::json::event_json;
use bondledger_store::readmodel::TimelineFilter;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::IntoParams;

use crate::auth::Caller;
use crate::docs::{AuditBody, DeadlineBody, ErrorBody, TimelineEvent};
use crate::error::ApiError;
use crate::manuals::paged;
use crate::query::{after, page_limit, ApiQuery};
use crate::AppState;

/// The timeline's filters (interchange §2 `timeline`); every filter given
/// must hold.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TimelineQuery {
    manual: Option<String>,
    /// The manual's operating or processing enterprise.
    enterprise: Option<String>,
    /// An HS code prefix (1 to 10 digits) of any item the event moves or declares.
    hs: Option<String>,
    declaration: Option<String>,
    /// An enterprise code or manual number the event names as its counterparty.
    counterparty: Option<String>,
    /// Business dates from (inclusive, YYYY-MM-DD).
    from: Option<String>,
    /// Business dates to (inclusive, YYYY-MM-DD).
    to: Option<String>,
    /// The events with ledger positions above this one (the last `position`
    /// of the previous page).
    #[param(minimum = 0)]
    after: Option<i64>,
    /// Events in the page: 100 unless given, at most 1000.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// With `manual`: also the manuals its carry-over chain reaches (the
    /// manuals it carried goods over to, and onward).
    follow_carryover: Option<bool>,
}

impl TimelineQuery {
    fn filter(&self) -> Result<TimelineFilter, ApiError> {
        let date = |field: &str, text: &Option<String>| {
            text.as_deref()
                .map(|t| {
                    bondledger_domain::movement::parse_date(t)
                        .map_err(|error| ApiError::malformed(Some(field), error))
                })
                .transpose()
        };
        if let Some(hs) = &self.hs {
            if hs.is_empty() || hs.len() > 10 || !hs.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ApiError::malformed(
                    Some("hs"),
                    format!("{hs:?} is not an HS code prefix (1 to 10 digits)"),
                ));
            }
        }
        Ok(TimelineFilter {
            manuals: self.manual.iter().cloned().collect(),
            enterprise: self.enterprise.clone(),
            hs_prefix: self.hs.clone(),
            declaration: self.declaration.clone(),
            counterparty: self.counterparty.clone(),
            from: date("from", &self.from)?,
            to: date("to", &self.to)?,
        })
    }
}

/// Events across manuals in ledger order (`timeline --format json`), a page
/// at a time. A recorder's token sees its enterprise's manuals only.
#[utoipa::path(
    get,
    path = "/api/v1/timeline",
    tag = "ledger",
    params(TimelineQuery),
    responses(
        (status = 200, description = "A page of events; `x-next-after` is the `after` of the next page when there is one",
            body = [TimelineEvent],
            headers(("x-next-after" = i64, description = "The `after` of the next page"))),
        (status = 400, description = "A malformed filter", body = ErrorBody),
        (status = 401, description = "No token, or an unknown one", body = ErrorBody),
        (status = 403, description = "A filter names another enterprise or its manual", body = ErrorBody),
    ),
)]
pub async fn timeline(
    caller: Caller,
    ApiQuery(query): ApiQuery<TimelineQuery>,
) -> Result<Response, ApiError> {
    let mut filter = query.filter()?;
    if let Some(own) = caller.enterprise() {
        if filter
            .enterprise
            .as_deref()
            .is_some_and(|asked| asked != own)
        {
            return Err(ApiError::forbidden(format!(
                "this token reads the manuals of enterprise {own} only"
            )));
        }
        if let Some(manual) = &query.manual {
            if caller.ledger().manual_owners(manual).await?.is_some() {
                caller.may_read(manual).await?;
            }
        }
        filter.enterprise = Some(own.to_owned());
    }
    if query.follow_carryover == Some(true) {
        let mut manuals = Vec::new();
        for manual in &filter.manuals {
            for reached in caller.ledger().carryover_chain(manual).await? {
                if !manuals.contains(&reached) {
                    manuals.push(reached);
                }
            }
        }
        filter.manuals = manuals;
    }
    let after = after(query.after)?;
    let limit = page_limit(query.limit)?;
    let page = caller.ledger().timeline_page(&filter, after, limit).await?;
    let events: Vec<Value> = page
        .entries
        .iter()
        .map(|stored| Value::Object(event_json(stored)))
        .collect();
    Ok(paged(Value::Array(events), page.next_after))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeadlinesQuery {
    /// One enterprise's manuals only (a recorder's token sees its own anyway).
    enterprise: Option<String>,
}

/// What is due, overdue or expiring (`deadlines`), soonest first, counted
/// from the server's date. A recorder's token sees its enterprise's only.
#[utoipa::path(
    get,
    path = "/api/v1/deadlines",
    tag = "ledger",
    params(DeadlinesQuery),
    responses(
        (status = 200, description = "Every deadline, soonest first", body = [DeadlineBody]),
        (status = 400, description = "A malformed query", body = ErrorBody),
        (status = 401, description = "No token, or an unknown one", body = ErrorBody),
        (status = 403, description = "The query names another enterprise", body = ErrorBody),
    ),
)]
pub async fn deadlines(
    caller: Caller,
    ApiQuery(query): ApiQuery<DeadlinesQuery>,
) -> Result<Json<Value>, ApiError> {
    let mut enterprise = query.enterprise;
    if let Some(own) = caller.enterprise() {
        if enterprise.as_deref().is_some_and(|asked| asked != own) {
            return Err(ApiError::forbidden(format!(
                "this token reads the manuals of enterprise {own} only"
            )));
        }
        enterprise = Some(own.to_owned());
    }
    let today = chrono::Local::now().date_naive();
    let deadlines = caller
        .ledger()
        .deadlines(today, enterprise.as_deref())
        .await?;
    Ok(Json(Value::Array(
        deadlines
            .iter()
            .map(bondledger_ledger::json::deadline_json)
            .collect(),
    )))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Audit one manual only (a recorder's token must name one of its own).
    manual: Option<String>,
}

/// Re-checks the ledger (`audit`): the hash chain of every stream, then that
/// every read model equals a fresh replay.
#[utoipa::path(
    get,
    path = "/api/v1/audit",
    tag = "ledger",
    params(AuditQuery),
    responses(
        (status = 200, description = "Whether the ledger is intact, and every break found", body = AuditBody),
        (status = 400, description = "A malformed query", body = ErrorBody),
        (status = 401, description = "No token, or an unknown one", body = ErrorBody),
        (status = 403, description = "A recorder's token audits one manual of its own only", body = ErrorBody),
        (status = 404, description = "No such manual", body = ErrorBody),
    ),
)]
pub async fn audit(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<Json<Value>, ApiError> {
    let manual = query.manual.as_deref();
    match manual {
        Some(manual) => {
            if state.ledger.manual_owners(manual).await?.is_none() {
                return Err(ApiError::no_such_manual(manual));
            }
            caller.may_read(manual).await?;
        }
        None if !caller.principal.reads_everything() => {
            return Err(ApiError::forbidden(
                "a recorder's token audits one manual of its enterprise: give `manual`",
            ))
        }
        None => {}
    }
    let chain_breaks = state.ledger.store().verify_chain(manual).await?;
    let mut breaks: Vec<Value> = chain_breaks
        .iter()
        .map(|b| {
            json!({"kind": "chain", "manual": b.stream, "version": b.version, "what": b.reason})
        })
        .collect();
    // Read models are not compared with a log that is itself broken.
    if breaks.is_empty() {
        for b in state.ledger.audit_projections(manual).await? {
            breaks.push(json!({"kind": "projection", "projection": b.projection,
                "manual": b.manual, "version": b.version, "what": b.what}));
        }
    }
    Ok(Json(json!({"intact": breaks.is_empty(), "breaks": breaks})))
}
