//! Reads from a PostgreSQL streaming replica, when `serve` has one.
//!
//! Every read (GET) under `/api/v1` is answered from the replica once it has
//! replayed the caller's last write: the server remembers, per token, where
//! the primary's log stood after that token's last append (and a client may
//! name such a point itself, `Bondledger-Read-After`, as an append answered
//! it in `Bondledger-Written-At`). A replica that has not got there within
//! the wait answers 503 `replica_behind`; one that cannot be reached is read
//! around, on the primary. Every read answer says where it was read
//! (`Bondledger-Read-From`) and, from the replica, how stale it may be
//! (`Bondledger-Replica-Lag`); a read around the replica carries
//! `Bondledger-Warning`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use bondledger_ledger::{Ledger, ReadSource};
use bondledger_store::WalPosition;

use crate::error::ApiError;
use crate::AppState;

pub const READ_AFTER: HeaderName = HeaderName::from_static("bondledger-read-after");
pub const WRITTEN_AT: HeaderName = HeaderName::from_static("bondledger-written-at");
pub const READ_FROM: HeaderName = HeaderName::from_static("bondledger-read-from");
pub const REPLICA_LAG: HeaderName = HeaderName::from_static("bondledger-replica-lag");
pub const WARNING: HeaderName = HeaderName::from_static("bondledger-warning");

/// Tokens whose last write is remembered; past this, the oldest marks go
/// (a mark the replica has long replayed says nothing any more).
const MAX_REMEMBERED_WRITERS: usize = 10_000;
/// How often `serve` brings the primary's read models up to the head of the
/// log, so that the replica's copy of them follows.
pub const BACKGROUND_CATCH_UP: Duration = Duration::from_millis(500);

/// Where the primary's log stood after each token's last append.
#[derive(Clone, Default)]
pub(crate) struct Writes {
    marks: Arc<Mutex<HashMap<String, WalPosition>>>,
}

impl Writes {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, WalPosition>> {
        self.marks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn record(&self, token_id: &str, mark: WalPosition) {
        let mut marks = self.lock();
        if marks.len() >= MAX_REMEMBERED_WRITERS && !marks.contains_key(token_id) {
            if let Some(oldest) = marks
                .iter()
                .min_by_key(|(_, mark)| **mark)
                .map(|(t, _)| t.clone())
            {
                marks.remove(&oldest);
            }
        }
        let entry = marks.entry(token_id.to_owned()).or_insert(mark);
        *entry = (*entry).max(mark);
    }

    pub fn last(&self, token_id: &str) -> Option<WalPosition> {
        self.lock().get(token_id).copied()
    }
}

/// Where this request's reads went: filled in by [`route_reads`], put in
/// the answer's headers by [`read_headers`].
#[derive(Clone, Default)]
pub(crate) struct ReadNote(Arc<Mutex<Option<ReadSource>>>);

impl ReadNote {
    fn set(&self, source: ReadSource) {
        *self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(source);
    }

    fn take(&self) -> Option<ReadSource> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }
}

/// The ledger a request of `token_id` reads, waiting for the replica to
/// hold the token's last write (or the one the request names).
pub(crate) async fn route_reads(
    state: &AppState,
    parts: &axum::http::request::Parts,
    token_id: &str,
) -> Result<Ledger, ApiError> {
    if !state.ledger.has_replica() || parts.method != Method::GET {
        return Ok(state.ledger.clone());
    }
    let named = read_after(&parts.headers)?;
    let after = named.max(state.writes.last(token_id));
    let (ledger, source) = state.ledger.for_reading(after).await?;
    if let Some(note) = parts.extensions.get::<ReadNote>() {
        note.set(source);
    }
    Ok(ledger)
}

fn read_after(headers: &HeaderMap) -> Result<Option<WalPosition>, ApiError> {
    let Some(value) = headers.get(READ_AFTER) else {
        return Ok(None);
    };
    let malformed = || {
        ApiError::malformed(
            Some("Bondledger-Read-After"),
            "the header is a write-ahead log position as Bondledger-Written-At gives one (16/B374D848)",
        )
    };
    let text = value.to_str().map_err(|_| malformed())?;
    text.trim().parse().map(Some).map_err(|_| malformed())
}

/// Middleware: with a replica, gives each request a [`ReadNote`] and puts
/// where its reads went into the answer's headers.
pub(crate) async fn read_headers(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    if !state.ledger.has_replica() {
        return next.run(request).await;
    }
    let note = ReadNote::default();
    request.extensions_mut().insert(note.clone());
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    match note.take() {
        None => {}
        Some(ReadSource::Primary) => {
            headers.insert(READ_FROM, HeaderValue::from_static("primary"));
        }
        Some(ReadSource::Replica(staleness)) => {
            headers.insert(READ_FROM, HeaderValue::from_static("replica"));
            let lag = format!(
                "events={}; seconds={:.3}; wal-bytes={}",
                staleness.events_behind, staleness.seconds, staleness.wal_bytes_behind
            );
            if let Ok(value) = HeaderValue::from_str(&lag) {
                headers.insert(REPLICA_LAG, value);
            }
        }
        Some(ReadSource::Failover(reason)) => {
            tracing::warn!(%reason, "read from the primary");
            headers.insert(READ_FROM, HeaderValue::from_static("primary"));
            let warning = format!("read from the primary: {reason}");
            // A reason that is no header text (it quotes a database error)
            // is told in short.
            let value = HeaderValue::from_str(&warning.replace(['\r', '\n'], " ")).unwrap_or(
                HeaderValue::from_static(
                    "read from the primary: the read replica could not be used",
                ),
            );
            headers.insert(WARNING, value);
        }
    }
    response
}

/// With a replica, `serve` keeps the primary's read models at the head of
/// the log in the background: the replica's copy of them follows, and a
/// dashboard reading it sees new events within about this plus the
/// replica's lag.
pub(crate) async fn keep_read_models(ledger: Ledger) {
    let mut ticks = tokio::time::interval(BACKGROUND_CATCH_UP);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Err(error) = ledger.catch_up(&mut |_, _, _| {}).await {
            tracing::warn!(%error, "the read models could not be caught up; trying again");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_keeps_its_latest_write() {
        let writes = Writes::default();
        writes.record("a", WalPosition::new(20));
        writes.record("a", WalPosition::new(10));
        assert_eq!(writes.last("a"), Some(WalPosition::new(20)));
        assert_eq!(writes.last("b"), None);
    }

    #[test]
    fn a_malformed_read_after_is_named() {
        let mut headers = HeaderMap::new();
        headers.insert(READ_AFTER, HeaderValue::from_static("yesterday"));
        let error = read_after(&headers).expect_err("malformed");
        assert_eq!(error.body()["field"], "Bondledger-Read-After");
        headers.insert(READ_AFTER, HeaderValue::from_static("0/3000060"));
        assert_eq!(
            read_after(&headers).expect("valid"),
            Some(WalPosition::new(0x300_0060))
        );
    }
}
