//! Live updates: a stream of Server-Sent Events announcing the ledger's
//! head position whenever it moves, so a page can refresh what it shows.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::stream::{self, Stream};

use crate::auth::Caller;
use crate::docs::{ErrorBody, HeadBody};
use crate::error::ApiError;
use crate::AppState;

/// Live streams open at once; one more is answered 503.
pub const MAX_LIVE_STREAMS: usize = 32;
/// How often the head position is looked at.
const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Counts a stream open while it lives.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(open: &Arc<AtomicUsize>) -> Option<Slot> {
        open.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < MAX_LIVE_STREAMS).then_some(n + 1)
        })
        .ok()
        .map(|_| Slot(open.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Server-Sent Events: `head` with `{"position": N}` at once and whenever
/// the ledger's head position changes (looked at every second).
#[utoipa::path(
    get,
    path = "/api/v1/events",
    tag = "ledger",
    responses(
        (status = 200, description = "A `text/event-stream` of `head` events, each `{\"position\": N}` (HeadBody)",
            content_type = "text/event-stream", body = HeadBody),
        (status = 401, description = "No token, or an unknown one", body = ErrorBody),
        (status = 503, description = "Too many live streams open", body = ErrorBody),
    ),
)]
pub async fn events(State(state): State<AppState>, _caller: Caller) -> Result<Response, ApiError> {
    let Some(slot) = Slot::take(&state.live_streams) else {
        return Err(ApiError::Busy(format!(
            "{MAX_LIVE_STREAMS} live streams are open already"
        )));
    };
    Ok(Sse::new(heads(state, slot))
        .keep_alive(KeepAlive::default())
        .into_response())
}

fn heads(state: AppState, slot: Slot) -> impl Stream<Item = Result<Event, Infallible>> {
    stream::unfold(
        (state, slot, None::<i64>),
        |(state, slot, last)| async move {
            loop {
                if last.is_some() {
                    tokio::time::sleep(POLL_INTERVAL).await;
                }
                match state.ledger.store().head_position().await {
                    Ok(position) if Some(position) != last => {
                        let event = Event::default()
                            .event("head")
                            .data(format!("{{\"position\":{position}}}"));
                        return Some((Ok(event), (state, slot, Some(position))));
                    }
                    Ok(_) => {}
                    Err(error) => {
                        tracing::warn!(%error, "the head position cannot be read");
                        if last.is_none() {
                            tokio::time::sleep(POLL_INTERVAL).await;
                        }
                    }
                }
            }
        },
    )
}
