//! Re-checking hash chains: the walk through a stream or the whole log, on
//! what a backend reads ([`ChainRows`]), and the check itself, which is pure.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;

use crate::append::{validate_stream_name, StreamHead};
use crate::chain::{self, event_hash};
use crate::event::EventRow;
use crate::{ChainBreak, StoreError};

/// Rows or stream heads a chain check reads at a time.
const VERIFY_PAGE_ROWS: i64 = 1_000;

/// What a chain check reads, all in one read snapshot of a backend.
#[async_trait]
pub(crate) trait ChainRows: Send {
    /// Up to `limit` events of `stream` from `from_version`, in version order.
    async fn stream_page(
        &mut self,
        stream: &str,
        from_version: i64,
        limit: i64,
    ) -> Result<Vec<EventRow>, StoreError>;
    /// Up to `limit` events after `after_position`, in position order.
    async fn log_page(
        &mut self,
        after_position: i64,
        limit: i64,
    ) -> Result<Vec<EventRow>, StoreError>;
    async fn stream_head(&mut self, stream: &str) -> Result<StreamHead, StoreError>;
    /// Up to `limit` streams named after `after_stream`, in name order: each
    /// with its head's version and hash.
    async fn heads_page(
        &mut self,
        after_stream: &str,
        limit: i64,
    ) -> Result<Vec<(String, i64, String)>, StoreError>;
}

/// A backend's [`ChainRows`], `ChainReads`, over a connection of type
/// `$connection` in the read transaction `verify_chain_reporting` holds: the
/// module's own `select_stream`, `select_all` and `select_stream_head`.
macro_rules! chain_reads {
    ($connection:ty) => {
        struct ChainReads<'c>(&'c mut $connection);

        #[async_trait::async_trait]
        impl $crate::verify::ChainRows for ChainReads<'_> {
            async fn stream_page(
                &mut self,
                stream: &str,
                from_version: i64,
                limit: i64,
            ) -> Result<Vec<EventRow>, StoreError> {
                select_stream(self.0, stream, from_version, limit).await
            }

            async fn log_page(
                &mut self,
                after_position: i64,
                limit: i64,
            ) -> Result<Vec<EventRow>, StoreError> {
                select_all(self.0, after_position, limit).await
            }

            async fn stream_head(&mut self, stream: &str) -> Result<StreamHead, StoreError> {
                select_stream_head(self.0, stream).await
            }

            async fn heads_page(
                &mut self,
                after_stream: &str,
                limit: i64,
            ) -> Result<Vec<(String, i64, String)>, StoreError> {
                Ok(sqlx::query_as(
                    "SELECT stream, version, head_hash FROM streams \
                     WHERE stream > $1 ORDER BY stream LIMIT $2",
                )
                .bind(after_stream)
                .bind(limit)
                .fetch_all(&mut *self.0)
                .await?)
            }
        }
    };
}
pub(crate) use chain_reads;

/// Re-checks one stream's chain, telling `progress` the version reached.
pub(crate) async fn verify_stream(
    rows: &mut impl ChainRows,
    stream: &str,
    progress: &mut (dyn FnMut(i64) + Send),
) -> Result<Vec<ChainBreak>, StoreError> {
    validate_stream_name(stream)?;
    let mut verifier = ChainVerifier::default();
    let mut from_version = 1;
    loop {
        let page = rows
            .stream_page(stream, from_version, VERIFY_PAGE_ROWS)
            .await?;
        let Some(last) = page.last() else { break };
        from_version = last.version + 1;
        page.iter().for_each(|row| verifier.observe(row));
        progress(last.version);
    }
    let head = rows.stream_head(stream).await?;
    if let Some(head_hash) = &head.hash {
        verifier.check_head(stream, head.version, head_hash);
    }
    Ok(verifier.finish())
}

/// Re-checks every stream's chain, telling `progress` the position reached.
pub(crate) async fn verify_ledger(
    rows: &mut impl ChainRows,
    progress: &mut (dyn FnMut(i64) + Send),
) -> Result<Vec<ChainBreak>, StoreError> {
    let mut verifier = ChainVerifier::default();
    let mut after_position = 0;
    loop {
        let page = rows.log_page(after_position, VERIFY_PAGE_ROWS).await?;
        let Some(last) = page.last() else { break };
        after_position = last.position;
        page.iter().for_each(|row| verifier.observe(row));
        progress(after_position);
    }
    let mut after_stream = String::new();
    loop {
        let heads = rows.heads_page(&after_stream, VERIFY_PAGE_ROWS).await?;
        let Some((last, _, _)) = heads.last() else {
            break;
        };
        after_stream = last.clone();
        for (stream, version, head_hash) in &heads {
            verifier.check_head(stream, *version, head_hash);
        }
    }
    Ok(verifier.finish())
}

/// How far a stream's chain has been checked.
struct Progress {
    version: i64,
    hash: [u8; 32],
}

/// Follows the events of one or many streams in version order within each stream
/// and remembers the first break of each. Memory grows with the number of streams,
/// never with the number of events.
#[derive(Default)]
pub(crate) struct ChainVerifier {
    progress: HashMap<String, Progress>,
    breaks: BTreeMap<String, ChainBreak>,
}

impl ChainVerifier {
    pub(crate) fn observe(&mut self, row: &EventRow) {
        if self.breaks.contains_key(&row.stream) {
            return;
        }
        let (previous_version, previous_hash) = match self.progress.get(&row.stream) {
            Some(progress) => (progress.version, progress.hash),
            None => (0, chain::GENESIS),
        };
        let expected_version = previous_version + 1;
        if row.version != expected_version {
            let reason = format!(
                "version {expected_version} is missing: the next stored event is version {}",
                row.version
            );
            self.record_break(&row.stream, expected_version, reason);
            return;
        }
        let recomputed = event_hash(&previous_hash, row);
        if chain::hash_text(&recomputed) != row.hash {
            let reason = "the stored hash differs from the hash of the stored event".to_owned();
            self.record_break(&row.stream, row.version, reason);
            return;
        }
        self.progress.insert(
            row.stream.clone(),
            Progress {
                version: row.version,
                hash: recomputed,
            },
        );
    }

    /// Compares a stream's recorded head (from the streams table) with its last event,
    /// which finds events deleted from the end of a stream.
    pub(crate) fn check_head(&mut self, stream: &str, head_version: i64, head_hash: &str) {
        if self.breaks.contains_key(stream) {
            return;
        }
        let (last_version, last_hash) = match self.progress.get(stream) {
            Some(progress) => (progress.version, progress.hash),
            None => (0, chain::GENESIS),
        };
        if last_version < head_version {
            let reason = format!(
                "version {} is missing: the stream's head is at version {head_version}",
                last_version + 1
            );
            self.record_break(stream, last_version + 1, reason);
        } else if last_version > head_version {
            let reason =
                format!("the stream's head says version {head_version}, but the events go on");
            self.record_break(stream, head_version + 1, reason);
        } else if chain::hash_text(&last_hash) != head_hash {
            let reason = "the stream's head hash differs from its last event's hash".to_owned();
            self.record_break(stream, last_version, reason);
        }
    }

    pub(crate) fn is_broken(&self, stream: &str) -> bool {
        self.breaks.contains_key(stream)
    }

    pub(crate) fn record_break(&mut self, stream: &str, version: i64, reason: String) {
        self.breaks.entry(stream.to_owned()).or_insert(ChainBreak {
            stream: stream.to_owned(),
            version,
            reason,
        });
    }

    /// The first break of each broken stream, by stream name.
    pub(crate) fn finish(self) -> Vec<ChainBreak> {
        self.breaks.into_values().collect()
    }
}
