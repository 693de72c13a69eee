//! Read models: tables that projections keep from the event log, each
//! projection's rows and checkpoint written in one transaction, so an event
//! is applied exactly once even across a crash. The rows are plain text and
//! numbers: the store does not interpret them.
//!
//! The SQL is the same on both backends (sqlx numbers `$1` parameters on
//! SQLite too), so it is written once and instantiated for each.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};

use crate::{StoreError, StoredEvent};

/// Timeline keys written by one INSERT: 4 parameters a row keeps a
/// statement well under SQLite's limit of 32,766.
pub const TIMELINE_ROWS_PER_STATEMENT: usize = 2_000;

/// A timeline key row as written: its kind, value and block, and its
/// positions there as text (see `timeline::format_positions`).
pub(crate) type TimelineKeyRow<'a> = (&'static str, &'a str, i64, &'a str);

/// Timeline segments read by one query, for audit.
pub const SEGMENTS_PER_READ: i64 = 64;

/// Blocks a timeline query reads a round at most.
pub const MAX_BLOCKS_A_ROUND: usize = 64;

/// A manual's balance, carry-over or deadline rows written (or their keys
/// deleted) by one statement: 9 parameters a row at most.
pub const MANUAL_ROWS_PER_STATEMENT: usize = 500;

/// Rows returned by one read-model query at most.
pub const MAX_READ_MODEL_ROWS: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManualRow {
    pub manual: String,
    pub trade_mode: String,
    pub book: String,
    pub zone: bool,
    pub enterprise: String,
    pub processing_enterprise: String,
    pub valid_until: String,
    pub version: i64,
    pub status: String,
    pub closed: bool,
    pub findings: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalanceRow {
    pub manual: String,
    pub item: i64,
    pub hs: String,
    pub name: String,
    pub unit: String,
    pub balance: String,
    pub at_contractors: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarryoverRow {
    pub manual: String,
    pub event: String,
    /// `out` or `in`.
    pub direction: String,
    pub counterparty_manual: String,
    pub batch: Option<String>,
    pub item: i64,
    pub qty: String,
    pub business_date: String,
    /// Shipped on (out) or received on (in).
    pub moved_on: String,
}

/// The columns a [`CarryoverRow`] is read from, in the order of
/// [`CarryoverColumns`].
pub(crate) const CARRYOVER_COLUMNS: &str =
    "manual, event, direction, counterparty_manual, batch, item, qty, business_date, moved_on";

/// A row of [`CARRYOVER_COLUMNS`] as the database gives it.
pub(crate) type CarryoverColumns = (
    String,
    String,
    String,
    String,
    Option<String>,
    i64,
    String,
    String,
    String,
);

impl From<CarryoverColumns> for CarryoverRow {
    fn from(r: CarryoverColumns) -> Self {
        CarryoverRow {
            manual: r.0,
            event: r.1,
            direction: r.2,
            counterparty_manual: r.3,
            batch: r.4,
            item: r.5,
            qty: r.6,
            business_date: r.7,
            moved_on: r.8,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadlineRow {
    pub manual: String,
    pub kind: String,
    pub event: String,
    pub due: String,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineRow {
    pub position: i64,
    pub manual: String,
    pub version: i64,
    pub event_type: String,
    pub business_date: String,
    pub declaration: Option<String>,
    /// Registered HS codes of the items the event moves or declares.
    pub hs: Vec<String>,
    /// Enterprises and manuals the event names as counterparties.
    pub counterparties: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRow {
    pub manual: String,
    pub version: i64,
    pub position: i64,
    /// The latest business date among the events the snapshot holds.
    pub max_date: NaiveDate,
    pub recorded_at: DateTime<Utc>,
    pub state: String,
    /// Its per-sale records (JSON texts, in order), where read: none for a
    /// snapshot that holds them in its state.
    pub sales: Vec<String>,
    /// Its carry-over records, likewise.
    pub carryovers: Vec<String>,
}

/// A list of records that snapshots keep apart from their states, each
/// record written once (tables `snapshot_sales`, `snapshot_carryovers`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordList {
    Sales,
    Carryovers,
}

impl RecordList {
    pub fn table(self) -> &'static str {
        match self {
            RecordList::Sales => "snapshot_sales",
            RecordList::Carryovers => "snapshot_carryovers",
        }
    }
}

/// What a snapshot of a manual at `version` changes in one list of its
/// records kept apart: records added, in order (event, record), and events
/// whose records are gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRecords {
    pub list: RecordList,
    pub manual: String,
    pub version: i64,
    pub added: Vec<(String, String)>,
    pub removed: Vec<String>,
}

/// Everything one manual's state-derived rows are replaced with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManualRows {
    pub manual: ManualRow,
    pub balances: Vec<BalanceRow>,
    pub carryovers: Vec<CarryoverRow>,
    pub deadlines: Vec<DeadlineRow>,
}

/// What changed in one manual's rows since they were last written: the
/// summary and the balances whole (one row a manual, one a material), the
/// carry-overs and deadlines by key, so that a manual with many of them is
/// not rewritten whole for each new event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManualAmendment {
    pub manual: ManualRow,
    pub balances: Vec<BalanceRow>,
    /// The events of carry-over rows that are gone.
    pub removed_carryovers: Vec<String>,
    /// Carry-over rows new or changed: each replaces the row of its event.
    pub carryovers: Vec<CarryoverRow>,
    /// The (kind, event) of deadline rows that are gone.
    pub removed_deadlines: Vec<(String, String)>,
    /// Deadline rows new or changed: each replaces the row of its key.
    pub deadlines: Vec<DeadlineRow>,
}

/// One change to the read models.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    ReplaceManual(Box<ManualRows>),
    AmendManual(Box<ManualAmendment>),
    Timeline(TimelineRow),
    Snapshot(SnapshotRow),
    SnapshotRecords(SnapshotRecords),
}

impl Change {
    /// The manual whose summary, balance, carry-over and deadline rows the
    /// change writes, if it writes them.
    pub fn manual_rows_of(&self) -> Option<&str> {
        match self {
            Change::ReplaceManual(rows) => Some(&rows.manual.manual),
            Change::AmendManual(amendment) => Some(&amendment.manual.manual),
            Change::Timeline(_) | Change::Snapshot(_) | Change::SnapshotRecords(_) => None,
        }
    }
}

/// A key of the timeline: the rows of `block` that have it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineKey {
    pub kind: String,
    pub value: String,
    pub block: i64,
    /// Their positions, ascending.
    pub positions: Vec<i64>,
}

/// The rows of a projection over events `(from_position, to_position]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectionBatch {
    pub projection: String,
    pub from_position: i64,
    pub to_position: i64,
    pub changes: Vec<Change>,
}

/// A batch with what its commit does without the database done already:
/// the timeline's segments and keys ([`PreparedBatch::new`]), so that it can
/// be done while the commit before it still runs.
#[derive(Debug)]
pub struct PreparedBatch {
    pub(crate) batch: ProjectionBatch,
    pub(crate) segments: Vec<crate::timeline::Segment>,
    /// (kind, value, block, positions as text), in the order of the keys' index.
    pub(crate) keys: Vec<(&'static str, String, i64, String)>,
}

impl PreparedBatch {
    pub fn new(batch: ProjectionBatch) -> Result<Self, StoreError> {
        let timeline: Vec<&TimelineRow> = batch
            .changes
            .iter()
            .filter_map(|change| match change {
                Change::Timeline(row) => Some(row),
                _ => None,
            })
            .collect();
        let (segments, keys) = crate::timeline::segments(&timeline)?;
        let keys = keys
            .into_iter()
            .map(|(kind, value, block, positions)| {
                let positions = crate::timeline::format_positions(&positions);
                (kind, value.to_owned(), block, positions)
            })
            .collect();
        Ok(PreparedBatch {
            batch,
            segments,
            keys,
        })
    }
}

/// Which events a timeline query returns; every filter given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimelineFilter {
    pub manuals: Vec<String>,
    pub enterprise: Option<String>,
    pub hs_prefix: Option<String>,
    pub declaration: Option<String>,
    pub counterparty: Option<String>,
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
}

/// The smallest string above every string that starts with `prefix`, for a
/// prefix of ASCII digits ("3920" → "3921", "39" → "4"); `None` when there
/// is none ("999").
/// An HS prefix naming more codes than this is searched by walking the
/// timeline in position order rather than code by code.
pub const MAX_PREFIX_CODES: usize = 64;

pub fn prefix_successor(prefix: &str) -> Option<String> {
    let mut digits: Vec<u8> = prefix.bytes().collect();
    while let Some(last) = digits.pop() {
        if last < b'9' {
            digits.push(last + 1);
            return String::from_utf8(digits).ok();
        }
    }
    None
}

/// The tables a projection owns, cleared when it is rebuilt.
pub fn projection_tables(projection: &str) -> &'static [&'static str] {
    match projection {
        "manuals" => &["rm_manuals", "rm_balances", "rm_carryovers", "rm_deadlines"],
        "timeline" => &["rm_timeline_segments", "rm_timeline_keys"],
        "snapshots" => &["snapshots", "snapshot_sales", "snapshot_carryovers"],
        _ => &[],
    }
}

#[async_trait]
pub trait ReadModels: Send + Sync {
    /// The position up to which a projection has applied the log.
    async fn checkpoint(&self, projection: &str) -> Result<i64, StoreError>;

    /// Applies a batch and moves the checkpoint, in one transaction. If the
    /// checkpoint is no longer `from_position` (another runner got there
    /// first) nothing is written and the answer is `Conflict`.
    async fn commit_projection(&self, batch: ProjectionBatch) -> Result<(), StoreError> {
        self.commit_prepared(PreparedBatch::new(batch)?).await
    }

    /// [`ReadModels::commit_projection`] of a batch prepared beforehand.
    async fn commit_prepared(&self, prepared: PreparedBatch) -> Result<(), StoreError>;

    /// Clears a projection's tables and sets its checkpoint to 0.
    async fn reset_projection(&self, projection: &str) -> Result<(), StoreError>;

    /// The manuals' summary rows (one manual's, given one), at most
    /// [`MAX_READ_MODEL_ROWS`].
    async fn manual_rows(&self, manual: Option<&str>) -> Result<Vec<ManualRow>, StoreError>;
    async fn balance_rows(&self, manual: Option<&str>) -> Result<Vec<BalanceRow>, StoreError>;
    async fn carryover_rows(&self, manual: Option<&str>) -> Result<Vec<CarryoverRow>, StoreError>;
    /// Every carry-over row of one manual's own (not those where it is the
    /// counterparty), by event, however many: for the audit.
    async fn own_carryover_rows(&self, manual: &str) -> Result<Vec<CarryoverRow>, StoreError>;
    /// The deadlines, soonest first (one manual's, given one), at most
    /// [`MAX_READ_MODEL_ROWS`].
    async fn deadline_rows(&self, manual: Option<&str>) -> Result<Vec<DeadlineRow>, StoreError>;

    /// The timeline rows with positions in `(after, after + limit…]`, for audit.
    async fn timeline_rows(&self, after: i64, limit: usize)
        -> Result<Vec<TimelineRow>, StoreError>;

    /// The timeline's keys of blocks `first_block ..= last_block`, by
    /// block, kind and value, for audit.
    async fn timeline_block_keys(
        &self,
        first_block: i64,
        last_block: i64,
    ) -> Result<Vec<TimelineKey>, StoreError>;

    /// Events matching `filter`, positions above `after`, ascending.
    async fn timeline(
        &self,
        filter: &TimelineFilter,
        after: i64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError>;

    /// The latest snapshot of `manual` at or below `max_version` whose
    /// events are all dated on or before `max_date` and were all recorded by
    /// `max_recorded`, where those are given; its records kept apart (sales
    /// and carry-overs) only `with_records` (read in the same read
    /// transaction: a rebuild meanwhile cannot leave a snapshot without them).
    async fn latest_snapshot(
        &self,
        manual: &str,
        max_version: i64,
        max_date: Option<NaiveDate>,
        max_recorded: Option<DateTime<Utc>>,
        with_records: bool,
    ) -> Result<Option<SnapshotRow>, StoreError>;

    /// The events whose records of `list` the latest snapshot of `manual`
    /// holds, in their order.
    async fn standing_snapshot_records(
        &self,
        manual: &str,
        list: RecordList,
    ) -> Result<Vec<String>, StoreError>;
}

/// Implements [`ReadModels`] for a backend; `$write` and `$read` are pools,
/// `$begin` the statement that opens a projection's write transaction and
/// `$lock` one (taking the projection's name) that keeps two processes'
/// runners of one projection apart until commit, where the backend needs it
/// (`BEGIN IMMEDIATE` already holds SQLite's one write lock).
macro_rules! impl_read_models {
    ($store:ty, $db:ty, $write:ident, $read:ident, $begin:expr, $begin_read:expr, $lock:expr) => {
        impl $store {
            /// Inserts timeline key rows by statements of many rows each,
            /// `conflict` after them (an `ON CONFLICT` clause, or nothing).
            async fn insert_timeline_keys(
                tx: &mut sqlx::Transaction<'static, $db>,
                keys: &[$crate::readmodel::TimelineKeyRow<'_>],
                conflict: &str,
            ) -> Result<(), $crate::StoreError> {
                for chunk in keys.chunks($crate::readmodel::TIMELINE_ROWS_PER_STATEMENT) {
                    let mut insert = sqlx::QueryBuilder::<$db>::new("INSERT INTO rm_timeline_keys (kind, value, block, positions) ");
                    insert.push_values(chunk.iter(), |mut row, (kind, value, block, positions)| {
                        row.push_bind(*kind).push_bind(*value).push_bind(*block).push_bind(*positions);
                    });
                    insert.push(conflict);
                    insert.build().execute(&mut **tx).await?;
                }
                Ok(())
            }

            /// Writes the rows of `run`, changes to distinct manuals, a
            /// statement for many manuals at a time: a commit touching
            /// thousands of manuals makes tens of statements, not a few for
            /// each of them.
            async fn write_manual_changes(
                tx: &mut sqlx::Transaction<'static, $db>,
                run: &[&$crate::readmodel::Change],
            ) -> Result<(), $crate::StoreError> {
                use $crate::readmodel::{Change, MANUAL_ROWS_PER_STATEMENT as ROWS};
                let mut replaced: Vec<&str> = Vec::new();
                let mut summaries = Vec::new();
                let mut balances = Vec::new();
                let mut carryovers = Vec::new();
                let mut deadlines = Vec::new();
                // The rows an amendment replaces or removes, by key.
                let mut carryover_keys: Vec<(&str, &str)> = Vec::new();
                let mut deadline_keys: Vec<(&str, &str, &str)> = Vec::new();
                for change in run {
                    match change {
                        Change::ReplaceManual(rows) => {
                            replaced.push(&rows.manual.manual);
                            summaries.push(&rows.manual);
                            balances.extend(&rows.balances);
                            carryovers.extend(&rows.carryovers);
                            deadlines.extend(&rows.deadlines);
                        }
                        Change::AmendManual(amendment) => {
                            let manual = amendment.manual.manual.as_str();
                            carryover_keys.extend(amendment.removed_carryovers.iter()
                                .chain(amendment.carryovers.iter().map(|c| &c.event))
                                .map(|event| (manual, event.as_str())));
                            deadline_keys.extend(amendment.removed_deadlines.iter().map(|(kind, event)| (kind, event))
                                .chain(amendment.deadlines.iter().map(|d| (&d.kind, &d.event)))
                                .map(|(kind, event)| (manual, kind.as_str(), event.as_str())));
                            summaries.push(&amendment.manual);
                            balances.extend(&amendment.balances);
                            carryovers.extend(&amendment.carryovers);
                            deadlines.extend(&amendment.deadlines);
                        }
                        Change::Timeline(_) | Change::Snapshot(_) | Change::SnapshotRecords(_) => {}
                    }
                }
                let manuals: Vec<&str> = summaries.iter().map(|m| m.manual.as_str()).collect();
                let tables: [(&str, &[&str]); 4] = [
                    ("rm_balances", &manuals),
                    ("rm_manuals", &manuals),
                    ("rm_carryovers", &replaced),
                    ("rm_deadlines", &replaced),
                ];
                for (table, of) in tables {
                    for chunk in of.chunks(ROWS) {
                        let mut delete = sqlx::QueryBuilder::<$db>::new(format!("DELETE FROM {table} WHERE manual IN ("));
                        let mut listed = delete.separated(", ");
                        for manual in chunk {
                            listed.push_bind(*manual);
                        }
                        delete.push(")");
                        delete.build().execute(&mut **tx).await?;
                    }
                }
                for chunk in carryover_keys.chunks(ROWS) {
                    let mut delete = sqlx::QueryBuilder::<$db>::new("DELETE FROM rm_carryovers WHERE (manual, event) IN (");
                    delete.push_values(chunk.iter(), |mut row, (manual, event)| {
                        row.push_bind(*manual).push_bind(*event);
                    });
                    delete.push(")");
                    delete.build().execute(&mut **tx).await?;
                }
                for chunk in deadline_keys.chunks(ROWS) {
                    let mut delete = sqlx::QueryBuilder::<$db>::new("DELETE FROM rm_deadlines WHERE (manual, kind, event) IN (");
                    delete.push_values(chunk.iter(), |mut row, (manual, kind, event)| {
                        row.push_bind(*manual).push_bind(*kind).push_bind(*event);
                    });
                    delete.push(")");
                    delete.build().execute(&mut **tx).await?;
                }
                // Many rows to a statement: one round trip each would cost
                // more than the rows themselves.
                for chunk in summaries.chunks(ROWS) {
                    let mut insert = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO rm_manuals (manual, trade_mode, book, zone, enterprise, processing_enterprise, \
                         valid_until, version, status, closed, findings) ",
                    );
                    insert.push_values(chunk.iter(), |mut row, m| {
                        row.push_bind(&m.manual).push_bind(&m.trade_mode).push_bind(&m.book).push_bind(i64::from(m.zone))
                            .push_bind(&m.enterprise).push_bind(&m.processing_enterprise).push_bind(&m.valid_until)
                            .push_bind(m.version).push_bind(&m.status).push_bind(i64::from(m.closed)).push_bind(m.findings);
                    });
                    insert.build().execute(&mut **tx).await?;
                }
                for chunk in balances.chunks(ROWS) {
                    let mut insert = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO rm_balances (manual, item, hs, name, unit, balance, at_contractors) ",
                    );
                    insert.push_values(chunk.iter(), |mut row, b| {
                        row.push_bind(&b.manual).push_bind(b.item).push_bind(&b.hs).push_bind(&b.name)
                            .push_bind(&b.unit).push_bind(&b.balance).push_bind(&b.at_contractors);
                    });
                    insert.build().execute(&mut **tx).await?;
                }
                for chunk in carryovers.chunks(ROWS) {
                    let mut insert = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO rm_carryovers (manual, event, direction, counterparty_manual, batch, item, qty, \
                         business_date, moved_on) ",
                    );
                    insert.push_values(chunk.iter(), |mut row, c| {
                        row.push_bind(&c.manual).push_bind(&c.event).push_bind(&c.direction)
                            .push_bind(&c.counterparty_manual).push_bind(&c.batch).push_bind(c.item)
                            .push_bind(&c.qty).push_bind(&c.business_date).push_bind(&c.moved_on);
                    });
                    insert.build().execute(&mut **tx).await?;
                }
                for chunk in deadlines.chunks(ROWS) {
                    let mut insert = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO rm_deadlines (manual, kind, event, due, detail) ",
                    );
                    insert.push_values(chunk.iter(), |mut row, d| {
                        row.push_bind(&d.manual).push_bind(&d.kind).push_bind(&d.event)
                            .push_bind(&d.due).push_bind(&d.detail);
                    });
                    insert.build().execute(&mut **tx).await?;
                }
                Ok(())
            }

            /// The distinct HS codes of the timeline's keys that start with
            /// `prefix`, read by skipping from one code to the next in the
            /// keys' index; None when they are more than
            /// [`MAX_PREFIX_CODES`]($crate::readmodel::MAX_PREFIX_CODES) or
            /// the prefix has no successor.
            async fn hs_codes(&self, prefix: &str) -> Result<Option<Vec<String>>, $crate::StoreError> {
                let Some(successor) = $crate::readmodel::prefix_successor(prefix) else { return Ok(None) };
                let codes: Vec<(String,)> = sqlx::query_as(
                    "WITH RECURSIVE codes (value) AS ( \
                       SELECT (SELECT min(value) FROM rm_timeline_keys WHERE kind = 'hs' AND value >= $1 AND value < $2) \
                       UNION ALL \
                       SELECT (SELECT min(k.value) FROM rm_timeline_keys k WHERE k.kind = 'hs' AND k.value > codes.value AND k.value < $2) \
                       FROM codes WHERE codes.value IS NOT NULL) \
                     SELECT value FROM codes WHERE value IS NOT NULL LIMIT $3",
                )
                .bind(prefix)
                .bind(&successor)
                .bind($crate::readmodel::MAX_PREFIX_CODES as i64 + 1)
                .fetch_all(&self.$read)
                .await?;
                if codes.len() > $crate::readmodel::MAX_PREFIX_CODES {
                    return Ok(None);
                }
                Ok(Some(codes.into_iter().map(|(code,)| code).collect()))
            }

            /// The first `limit` blocks from `from_block` on holding a key of
            /// `first`, ascending, each with the positions there of the rows
            /// that also have one key of each of `rest` (none, in a block
            /// where no row has them all): each value's first `limit` blocks
            /// of `first` from the keys' index, merged, the others looked up
            /// for those blocks.
            async fn key_blocks(
                &self,
                first: &$crate::timeline::KeyFilter,
                rest: &[$crate::timeline::KeyFilter],
                from_block: i64,
                limit: usize,
            ) -> Result<Vec<(i64, Vec<i64>)>, $crate::StoreError> {
                use $crate::timeline::parse_positions;
                let mut query = sqlx::QueryBuilder::<$db>::new("SELECT block, positions FROM (");
                for (index, value) in first.values.iter().enumerate() {
                    if index > 0 {
                        query.push(" UNION ALL ");
                    }
                    query.push("SELECT block, positions FROM (SELECT block, positions FROM rm_timeline_keys WHERE kind = ");
                    query.push_bind(first.kind);
                    query.push(" AND value = ");
                    query.push_bind(value.clone());
                    query.push(" AND block >= ");
                    query.push_bind(from_block);
                    query.push(" ORDER BY block LIMIT ");
                    query.push_bind(limit as i64);
                    query.push(") AS c");
                    query.push(index.to_string());
                }
                query.push(") AS candidates");
                let rows: Vec<(i64, String)> = query.build_query_as().fetch_all(&self.$read).await?;
                let mut blocks: std::collections::BTreeMap<i64, Vec<i64>> = std::collections::BTreeMap::new();
                for (block, positions) in rows {
                    blocks.entry(block).or_default().extend(parse_positions(&positions)?);
                }
                let mut blocks: Vec<(i64, Vec<i64>)> = blocks.into_iter().take(limit).collect();
                for (_, positions) in &mut blocks {
                    positions.sort_unstable();
                    positions.dedup();
                }
                for key in rest {
                    let Some(((first_block, _), (last_block, _))) = blocks.first().zip(blocks.last()) else { break };
                    let mut query = sqlx::QueryBuilder::<$db>::new("SELECT block, positions FROM rm_timeline_keys WHERE kind = ");
                    query.push_bind(key.kind);
                    query.push(" AND block >= ").push_bind(*first_block);
                    query.push(" AND block <= ").push_bind(*last_block);
                    query.push(" AND value IN (");
                    let mut values = query.separated(", ");
                    for value in &key.values {
                        values.push_bind(value.clone());
                    }
                    query.push(")");
                    let rows: Vec<(i64, String)> = query.build_query_as().fetch_all(&self.$read).await?;
                    let mut theirs: std::collections::HashMap<i64, std::collections::HashSet<i64>> = std::collections::HashMap::new();
                    for (block, positions) in rows {
                        theirs.entry(block).or_default().extend(parse_positions(&positions)?);
                    }
                    for (block, positions) in &mut blocks {
                        match theirs.get(block) {
                            Some(held) => positions.retain(|p| held.contains(p)),
                            None => positions.clear(),
                        }
                    }
                }
                Ok(blocks)
            }

            /// The segments of `blocks` (or, with none given, the first `limit`
            /// that start after position `past`) holding positions above
            /// `after` and dates `rows` can match, in position order: their
            /// first positions and entries.
            async fn timeline_segments(
                &self,
                blocks: Option<&[i64]>,
                past: i64,
                after: i64,
                limit: usize,
                rows: &$crate::timeline::RowFilter,
            ) -> Result<Vec<(i64, String)>, $crate::StoreError> {
                let mut query = sqlx::QueryBuilder::<$db>::new(
                    "SELECT first_position, entries FROM rm_timeline_segments WHERE last_position > ",
                );
                query.push_bind(after);
                // A segment wholly outside the dates is not read.
                if let Some(from) = rows.from() {
                    query.push(" AND max_date >= ").push_bind(from.to_owned());
                }
                if let Some(to) = rows.to() {
                    query.push(" AND min_date <= ").push_bind(to.to_owned());
                }
                match blocks {
                    Some(blocks) => {
                        query.push(" AND block IN (");
                        let mut separated = query.separated(", ");
                        for block in blocks {
                            separated.push_bind(*block);
                        }
                        query.push(") ORDER BY first_position");
                    }
                    None => {
                        query.push(" AND first_position > ");
                        query.push_bind(past);
                        query.push(" ORDER BY first_position LIMIT ");
                        query.push_bind(limit as i64);
                    }
                }
                Ok(query.build_query_as().fetch_all(&self.$read).await?)
            }

            /// The events at `positions`, ascending.
            async fn events_at(&self, positions: &[i64]) -> Result<Vec<$crate::StoredEvent>, $crate::StoreError> {
                let mut rows = Vec::with_capacity(positions.len());
                for chunk in positions.chunks($crate::readmodel::MAX_READ_MODEL_ROWS) {
                    let mut query = sqlx::QueryBuilder::<$db>::new(format!(
                        "SELECT {} FROM events e WHERE e.position IN (",
                        $crate::readmodel::EVENT_COLUMNS_E
                    ));
                    let mut separated = query.separated(", ");
                    for position in chunk {
                        separated.push_bind(*position);
                    }
                    query.push(") ORDER BY e.position");
                    for row in query.build().fetch_all(&self.$read).await? {
                        rows.push(decode_event(&row)?);
                    }
                }
                $crate::event::into_stored_events(rows)
            }

            /// The manuals `enterprise` operates or processes for.
            async fn enterprise_manuals(&self, enterprise: &str) -> Result<Vec<String>, $crate::StoreError> {
                let rows: Vec<(String,)> = sqlx::query_as(
                    "SELECT manual FROM rm_manuals WHERE enterprise = $1 OR processing_enterprise = $1",
                )
                .bind(enterprise)
                .fetch_all(&self.$read)
                .await?;
                Ok(rows.into_iter().map(|(manual,)| manual).collect())
            }
        }

        #[async_trait::async_trait]
        impl $crate::readmodel::ReadModels for $store {
            async fn checkpoint(&self, projection: &str) -> Result<i64, $crate::StoreError> {
                let row: Option<(i64,)> = sqlx::query_as("SELECT position FROM projection_checkpoints WHERE name = $1")
                    .bind(projection)
                    .fetch_optional(&self.$read)
                    .await?;
                Ok(row.map_or(0, |(position,)| position))
            }

            async fn commit_prepared(&self, prepared: $crate::readmodel::PreparedBatch) -> Result<(), $crate::StoreError> {
                use $crate::readmodel::Change;
                // The timeline's segments and keys were made before (see
                // `PreparedBatch`), without the write connection.
                let $crate::readmodel::PreparedBatch { batch, segments, keys } = prepared;
                let keys: Vec<$crate::readmodel::TimelineKeyRow<'_>> = keys.iter()
                    .map(|(kind, value, block, positions)| (*kind, value.as_str(), *block, positions.as_str()))
                    .collect();
                let mut tx = self.$write.begin_with($begin).await?;
                let lock: Option<&str> = $lock;
                if let Some(lock) = lock {
                    sqlx::query(lock).bind(&batch.projection).execute(&mut *tx).await?;
                }
                let current: Option<(i64,)> = sqlx::query_as("SELECT position FROM projection_checkpoints WHERE name = $1")
                    .bind(&batch.projection)
                    .fetch_optional(&mut *tx)
                    .await?;
                let current = current.map_or(0, |(position,)| position);
                if current != batch.from_position {
                    return Err($crate::StoreError::Conflict {
                        stream: format!("projection {}", batch.projection),
                        expected: batch.from_position,
                        actual: current,
                    });
                }
                // Changes to manuals' rows are written a run of distinct
                // manuals at a time; a manual met again ends the run, so
                // each manual's changes still go in their order.
                let mut run: Vec<&Change> = Vec::new();
                let mut in_run: std::collections::HashSet<&str> = std::collections::HashSet::new();
                for change in &batch.changes {
                    if let Some(manual) = change.manual_rows_of() {
                        if !in_run.insert(manual) {
                            Self::write_manual_changes(&mut tx, &run).await?;
                            run.clear();
                            in_run.clear();
                            in_run.insert(manual);
                        }
                        run.push(change);
                        continue;
                    }
                    match change {
                        Change::ReplaceManual(_) | Change::AmendManual(_) | Change::Timeline(_) => {}
                        Change::Snapshot(s) => {
                            sqlx::query(
                                "INSERT INTO snapshots (manual, version, position, max_date, recorded_at, state) \
                                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (manual, version) DO NOTHING",
                            )
                            .bind(&s.manual).bind(s.version).bind(s.position)
                            .bind($crate::chain::format_business_date(&s.max_date))
                            .bind($crate::chain::format_recorded_at(&s.recorded_at))
                            .bind(&s.state)
                            .execute(&mut *tx).await?;
                        }
                        Change::SnapshotRecords(records) => {
                            let table = records.list.table();
                            let added: Vec<(usize, &(String, String))> = records.added.iter().enumerate().collect();
                            for chunk in added.chunks($crate::readmodel::MANUAL_ROWS_PER_STATEMENT) {
                                let mut insert = sqlx::QueryBuilder::<$db>::new(format!(
                                    "INSERT INTO {table} (manual, event, added_at, ordinal, record) ",
                                ));
                                insert.push_values(chunk.iter(), |mut row, (ordinal, (event, record))| {
                                    row.push_bind(&records.manual).push_bind(event).push_bind(records.version)
                                        .push_bind(*ordinal as i64).push_bind(record);
                                });
                                insert.push(" ON CONFLICT (manual, event) DO NOTHING");
                                insert.build().execute(&mut *tx).await?;
                            }
                            for chunk in records.removed.chunks($crate::readmodel::MANUAL_ROWS_PER_STATEMENT) {
                                let mut update = sqlx::QueryBuilder::<$db>::new(format!("UPDATE {table} SET removed_at = "));
                                update.push_bind(records.version).push(" WHERE manual = ").push_bind(&records.manual)
                                    .push(" AND removed_at IS NULL AND event IN (");
                                let mut events = update.separated(", ");
                                for event in chunk {
                                    events.push_bind(event);
                                }
                                update.push(")");
                                update.build().execute(&mut *tx).await?;
                            }
                        }
                    }
                }
                Self::write_manual_changes(&mut tx, &run).await?;
                // A block's rows go in as one segment, and its keys once.
                for segment in &segments {
                    sqlx::query(
                        "INSERT INTO rm_timeline_segments (first_position, block, last_position, min_date, max_date, entries) \
                         VALUES ($1, $2, $3, $4, $5, $6)",
                    )
                    .bind(segment.first_position).bind(segment.block).bind(segment.last_position)
                    .bind(&segment.min_date).bind(&segment.max_date).bind(&segment.entries)
                    .execute(&mut *tx).await?;
                }
                // Only the block the checkpoint stands in can have keys of
                // an earlier commit (the lock holds it there): a key it
                // already has gets these later positions after its own. The
                // blocks after it are new, and their keys simply go in.
                let open_block = $crate::timeline::block_of(current);
                let (new_keys, shared_keys): (Vec<_>, Vec<_>) =
                    keys.into_iter().partition(|(_, _, block, _)| *block > open_block);
                Self::insert_new_timeline_keys(&mut tx, &new_keys).await?;
                Self::insert_timeline_keys(
                    &mut tx,
                    &shared_keys,
                    " ON CONFLICT (kind, value, block) DO UPDATE \
                     SET positions = rm_timeline_keys.positions || ',' || excluded.positions",
                )
                .await?;
                sqlx::query(
                    "INSERT INTO projection_checkpoints (name, position) VALUES ($1, $2) \
                     ON CONFLICT (name) DO UPDATE SET position = excluded.position",
                )
                .bind(&batch.projection)
                .bind(batch.to_position)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn reset_projection(&self, projection: &str) -> Result<(), $crate::StoreError> {
                let tables = $crate::readmodel::projection_tables(projection);
                if tables.is_empty() {
                    return Err($crate::StoreError::InvalidInput(format!("no projection named {projection:?}")));
                }
                let mut tx = self.$write.begin_with($begin).await?;
                let lock: Option<&str> = $lock;
                if let Some(lock) = lock {
                    sqlx::query(lock).bind(projection).execute(&mut *tx).await?;
                }
                for table in tables {
                    sqlx::query(&format!("DELETE FROM {table}")).execute(&mut *tx).await?;
                }
                sqlx::query("DELETE FROM projection_checkpoints WHERE name = $1").bind(projection).execute(&mut *tx).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn manual_rows(&self, manual: Option<&str>) -> Result<Vec<$crate::readmodel::ManualRow>, $crate::StoreError> {
                let rows: Vec<(String, String, String, i64, String, String, String, i64, String, i64, i64)> = sqlx::query_as(
                    "SELECT manual, trade_mode, book, zone, enterprise, processing_enterprise, valid_until, version, status, \
                     closed, findings FROM rm_manuals WHERE ($1 IS NULL OR manual = $1) ORDER BY manual LIMIT $2",
                )
                .bind(manual)
                .bind($crate::readmodel::MAX_READ_MODEL_ROWS as i64)
                .fetch_all(&self.$read)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|r| $crate::readmodel::ManualRow {
                        manual: r.0, trade_mode: r.1, book: r.2, zone: r.3 != 0, enterprise: r.4,
                        processing_enterprise: r.5, valid_until: r.6, version: r.7, status: r.8,
                        closed: r.9 != 0, findings: r.10,
                    })
                    .collect())
            }

            async fn balance_rows(&self, manual: Option<&str>) -> Result<Vec<$crate::readmodel::BalanceRow>, $crate::StoreError> {
                let rows: Vec<(String, i64, String, String, String, String, String)> = sqlx::query_as(
                    "SELECT manual, item, hs, name, unit, balance, at_contractors FROM rm_balances \
                     WHERE ($1 IS NULL OR manual = $1) ORDER BY manual, item LIMIT $2",
                )
                .bind(manual)
                .bind($crate::readmodel::MAX_READ_MODEL_ROWS as i64)
                .fetch_all(&self.$read)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|r| $crate::readmodel::BalanceRow {
                        manual: r.0, item: r.1, hs: r.2, name: r.3, unit: r.4, balance: r.5, at_contractors: r.6,
                    })
                    .collect())
            }

            async fn own_carryover_rows(&self, manual: &str) -> Result<Vec<$crate::readmodel::CarryoverRow>, $crate::StoreError> {
                let rows: Vec<$crate::readmodel::CarryoverColumns> = sqlx::query_as(&format!(
                    "SELECT {} FROM rm_carryovers WHERE manual = $1 ORDER BY event",
                    $crate::readmodel::CARRYOVER_COLUMNS,
                ))
                .bind(manual)
                .fetch_all(&self.$read)
                .await?;
                Ok(rows.into_iter().map($crate::readmodel::CarryoverRow::from).collect())
            }

            async fn carryover_rows(&self, manual: Option<&str>) -> Result<Vec<$crate::readmodel::CarryoverRow>, $crate::StoreError> {
                let rows: Vec<$crate::readmodel::CarryoverColumns> = sqlx::query_as(&format!(
                    "SELECT {} FROM rm_carryovers WHERE ($1 IS NULL OR manual = $1 OR counterparty_manual = $1) \
                     ORDER BY business_date, manual, event LIMIT $2",
                    $crate::readmodel::CARRYOVER_COLUMNS,
                ))
                .bind(manual)
                .bind($crate::readmodel::MAX_READ_MODEL_ROWS as i64)
                .fetch_all(&self.$read)
                .await?;
                Ok(rows.into_iter().map($crate::readmodel::CarryoverRow::from).collect())
            }

            async fn deadline_rows(&self, manual: Option<&str>) -> Result<Vec<$crate::readmodel::DeadlineRow>, $crate::StoreError> {
                let rows: Vec<(String, String, String, String, String)> = sqlx::query_as(
                    "SELECT manual, kind, event, due, detail FROM rm_deadlines WHERE ($1 IS NULL OR manual = $1) \
                     ORDER BY due, manual, kind LIMIT $2",
                )
                .bind(manual)
                .bind($crate::readmodel::MAX_READ_MODEL_ROWS as i64)
                .fetch_all(&self.$read)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|r| $crate::readmodel::DeadlineRow { manual: r.0, kind: r.1, event: r.2, due: r.3, detail: r.4 })
                    .collect())
            }

            async fn timeline_rows(&self, after: i64, limit: usize) -> Result<Vec<$crate::readmodel::TimelineRow>, $crate::StoreError> {
                let limit = limit.min($crate::readmodel::MAX_READ_MODEL_ROWS);
                let mut rows = Vec::new();
                let mut cursor = after;
                // Segments of a few rows each (a follower's) may be many a block.
                while rows.len() < limit {
                    let segments: Vec<(i64, String)> = sqlx::query_as(
                        "SELECT last_position, entries FROM rm_timeline_segments WHERE last_position > $1 \
                         ORDER BY first_position LIMIT $2",
                    )
                    .bind(cursor)
                    .bind($crate::readmodel::SEGMENTS_PER_READ)
                    .fetch_all(&self.$read)
                    .await?;
                    let Some(last) = segments.last().map(|(last, _)| *last) else { break };
                    for (_, entries) in &segments {
                        rows.extend(
                            $crate::timeline::decode_entries(entries)?
                                .into_iter()
                                .filter(|row| row.position > cursor),
                        );
                    }
                    cursor = last;
                }
                rows.truncate(limit);
                Ok(rows)
            }

            async fn timeline_block_keys(&self, first_block: i64, last_block: i64) -> Result<Vec<$crate::readmodel::TimelineKey>, $crate::StoreError> {
                let rows: Vec<(String, String, i64, String)> = sqlx::query_as(
                    "SELECT kind, value, block, positions FROM rm_timeline_keys WHERE block >= $1 AND block <= $2 \
                     ORDER BY block, kind, value",
                )
                .bind(first_block)
                .bind(last_block)
                .fetch_all(&self.$read)
                .await?;
                rows.into_iter()
                    .map(|(kind, value, block, positions)| {
                        Ok($crate::readmodel::TimelineKey {
                            kind,
                            value,
                            block,
                            positions: $crate::timeline::parse_positions(&positions)?,
                        })
                    })
                    .collect()
            }

            async fn timeline(
                &self,
                filter: &$crate::readmodel::TimelineFilter,
                after: i64,
                limit: usize,
            ) -> Result<Vec<$crate::StoredEvent>, $crate::StoreError> {
                use $crate::timeline::{block_of, RowFilter};
                let limit = limit.min($crate::MAX_PAGE_EVENTS);
                let enterprise_manuals = match &filter.enterprise {
                    Some(enterprise) => Some(self.enterprise_manuals(enterprise).await?),
                    None => None,
                };
                let rows = RowFilter::new(filter, enterprise_manuals);
                if rows.matches_nothing() || limit == 0 {
                    return Ok(Vec::new());
                }
                // An HS prefix naming few codes is looked up code by code; one
                // naming many matches densely, and is only tested row by row.
                let codes = match &filter.hs_prefix {
                    Some(prefix) => self.hs_codes(prefix).await?,
                    None => None,
                };
                let keys = rows.key_filters(codes);
                if keys.iter().any(|key| key.values.is_empty()) {
                    return Ok(Vec::new());
                }
                let mut positions = Vec::new();
                // Where the search goes on: the first block to look up by key,
                // or the last segment read when walking them all.
                let mut from_block = block_of(after.saturating_add(1)).max(0);
                let mut past = i64::MIN;
                // Blocks (or segments) read a round: one at first (a page is
                // often found in one), more while the matches are sparse.
                let mut a_round = 1usize;
                let keys_suffice = rows.keys_suffice(&keys);
                'search: loop {
                    let Some((first, rest)) = keys.split_first() else {
                        // No key: every segment in order.
                        let segments = self.timeline_segments(None, past, after, a_round, &rows).await?;
                        for (_, entries) in &segments {
                            if rows.matching_positions(entries, after, limit, &mut positions)? {
                                break 'search;
                            }
                        }
                        match segments.last() {
                            Some((first_position, _)) if segments.len() == a_round => past = *first_position,
                            _ => break,
                        }
                        a_round = (a_round * 2).min($crate::readmodel::MAX_BLOCKS_A_ROUND);
                        continue;
                    };
                    let blocks = self.key_blocks(first, rest, from_block, a_round).await?;
                    if keys_suffice {
                        for (_, held) in &blocks {
                            for position in held.iter().filter(|p| **p > after) {
                                positions.push(*position);
                                if positions.len() == limit {
                                    break 'search;
                                }
                            }
                        }
                    } else {
                        // The dates (or a prefix of many codes) are the rows'.
                        let found: Vec<i64> = blocks.iter().filter(|(_, held)| !held.is_empty()).map(|(block, _)| *block).collect();
                        if !found.is_empty() {
                            let segments = self.timeline_segments(Some(&found), past, after, a_round, &rows).await?;
                            for (_, entries) in &segments {
                                if rows.matching_positions(entries, after, limit, &mut positions)? {
                                    break 'search;
                                }
                            }
                        }
                    }
                    match blocks.last() {
                        Some((last, _)) if blocks.len() == a_round => from_block = last + 1,
                        _ => break,
                    }
                    a_round = (a_round * 2).min($crate::readmodel::MAX_BLOCKS_A_ROUND);
                }
                self.events_at(&positions).await
            }

            async fn latest_snapshot(
                &self,
                manual: &str,
                max_version: i64,
                max_date: Option<NaiveDate>,
                max_recorded: Option<DateTime<Utc>>,
                with_records: bool,
            ) -> Result<Option<$crate::readmodel::SnapshotRow>, $crate::StoreError> {
                let mut tx = self.$read.begin_with($begin_read).await?;
                let row: Option<(String, i64, i64, String, String, String)> = sqlx::query_as(
                    "SELECT manual, version, position, max_date, recorded_at, state FROM snapshots \
                     WHERE manual = $1 AND version <= $2 AND ($3 IS NULL OR max_date <= $3) AND ($4 IS NULL OR recorded_at <= $4) \
                     ORDER BY version DESC LIMIT 1",
                )
                .bind(manual)
                .bind(max_version)
                .bind(max_date.as_ref().map($crate::chain::format_business_date))
                .bind(max_recorded.as_ref().map($crate::chain::format_recorded_at))
                .fetch_optional(&mut *tx)
                .await?;
                let Some(r) = row else { return Ok(None) };
                let mut apart = Vec::new();
                for list in [$crate::readmodel::RecordList::Sales, $crate::readmodel::RecordList::Carryovers] {
                    let records: Vec<(String,)> = if with_records {
                        sqlx::query_as(&format!(
                            "SELECT record FROM {} \
                             WHERE manual = $1 AND added_at <= $2 AND (removed_at IS NULL OR removed_at > $2) \
                             ORDER BY added_at, ordinal",
                            list.table()
                        ))
                        .bind(manual)
                        .bind(r.1)
                        .fetch_all(&mut *tx)
                        .await?
                    } else {
                        Vec::new()
                    };
                    apart.push(records.into_iter().map(|(record,)| record).collect::<Vec<String>>());
                }
                let carryovers = apart.pop().unwrap_or_default();
                let sales = apart.pop().unwrap_or_default();
                tx.commit().await?;
                let integrity = |what: &str| $crate::StoreError::Integrity(format!("snapshot of {manual}: bad {what}"));
                Ok(Some($crate::readmodel::SnapshotRow {
                    manual: r.0,
                    version: r.1,
                    position: r.2,
                    max_date: NaiveDate::parse_from_str(&r.3, "%Y-%m-%d").map_err(|_| integrity("max_date"))?,
                    recorded_at: DateTime::parse_from_rfc3339(&r.4).map_err(|_| integrity("recorded_at"))?.with_timezone(&Utc),
                    state: r.5,
                    sales,
                    carryovers,
                }))
            }

            async fn standing_snapshot_records(
                &self,
                manual: &str,
                list: $crate::readmodel::RecordList,
            ) -> Result<Vec<String>, $crate::StoreError> {
                let rows: Vec<(String,)> = sqlx::query_as(&format!(
                    "SELECT event FROM {} WHERE manual = $1 AND removed_at IS NULL \
                     ORDER BY added_at, ordinal",
                    list.table()
                ))
                .bind(manual)
                .fetch_all(&self.$read)
                .await?;
                Ok(rows.into_iter().map(|(event,)| event).collect())
            }
        }
    };
}

pub(crate) use impl_read_models;

/// The event columns, qualified for a join.
pub(crate) const EVENT_COLUMNS_E: &str =
    "e.position, e.event_id, e.caller_id, e.stream, e.version, e.event_type, \
     e.schema_version, e.payload, e.metadata, e.business_date, e.recorded_at, e.hash";

#[cfg(test)]
mod tests {
    use super::prefix_successor;

    #[test]
    fn a_prefix_successor_bounds_every_code_with_the_prefix() {
        assert_eq!(prefix_successor("3920").as_deref(), Some("3921"));
        assert_eq!(prefix_successor("3929").as_deref(), Some("393"));
        assert_eq!(prefix_successor("39").as_deref(), Some("4"));
        assert_eq!(prefix_successor("999"), None);
        for code in ["3920109090", "3920000000", "3920999999"] {
            assert!(("3920".."3921").contains(&code));
        }
        assert!("3921000000" >= "3921");
    }
}
