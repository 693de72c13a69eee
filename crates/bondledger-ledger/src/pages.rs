//! Queries a page at a time, for callers that answer one request with a
//! bounded piece of a history or timeline (the API).

use std::ops::ControlFlow;

use bondledger_store::readmodel::TimelineFilter;
use bondledger_store::{StoredEvent, MAX_PAGE_EVENTS};

use crate::{AsOf, HistoryEntry, Ledger, LedgerError};

/// The most entries one page holds, whatever the caller asks for.
pub const MAX_PAGE_ENTRIES: usize = 1_000;

/// A page and where the next one starts.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub entries: Vec<T>,
    /// The `after` of the next page; `None` when this page is the last.
    pub next_after: Option<i64>,
}

impl Ledger {
    /// The history entries with versions above `after`, at most `limit`
    /// (and at most [`MAX_PAGE_ENTRIES`]); `None`: no such manual (then).
    ///
    /// Balances need the state before the page: the replay starts from the
    /// latest snapshot at or before `after` and stops once the page is full.
    pub async fn history_page(
        &self,
        manual: &str,
        as_of: AsOf,
        after: i64,
        limit: usize,
    ) -> Result<Option<Page<HistoryEntry>>, LedgerError> {
        let limit = limit.clamp(1, MAX_PAGE_ENTRIES);
        let mut entries = Vec::new();
        let mut more = false;
        let state = self
            .replay_after(manual, as_of, after, |stored, recorded, state| {
                if stored.version <= after {
                    return ControlFlow::Continue(());
                }
                if entries.len() == limit {
                    more = true;
                    return ControlFlow::Break(());
                }
                entries.push(HistoryEntry {
                    stored: stored.clone(),
                    recorded: recorded.clone(),
                    balances: state.balances(),
                });
                ControlFlow::Continue(())
            })
            .await?;
        if state.is_none() {
            return Ok(None);
        }
        let next_after = more
            .then(|| entries.last().map(|e: &HistoryEntry| e.stored.version))
            .flatten();
        Ok(Some(Page {
            entries,
            next_after,
        }))
    }

    /// The events matching `filter` with positions above `after`, in ledger
    /// order, at most `limit` (and at most [`MAX_PAGE_ENTRIES`]).
    pub async fn timeline_page(
        &self,
        filter: &TimelineFilter,
        after: i64,
        limit: usize,
    ) -> Result<Page<StoredEvent>, LedgerError> {
        const _: () = assert!(MAX_PAGE_ENTRIES < MAX_PAGE_EVENTS);
        let limit = limit.clamp(1, MAX_PAGE_ENTRIES);
        self.catch_up_before_reading().await?;
        // One more than asked tells whether another page follows.
        let mut entries = self.reads.timeline(filter, after, limit + 1).await?;
        let more = entries.len() > limit;
        entries.truncate(limit);
        let next_after = more.then(|| entries.last().map(|e| e.position)).flatten();
        Ok(Page {
            entries,
            next_after,
        })
    }
}
