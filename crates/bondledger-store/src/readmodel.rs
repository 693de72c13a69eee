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

/// Timeline rows (or keys) written by one INSERT: 6 parameters a row keeps
/// a statement well under SQLite's limit of 32,766.
pub const TIMELINE_ROWS_PER_STATEMENT: usize = 2_000;

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

/// The rows of a projection over events `(from_position, to_position]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectionBatch {
    pub projection: String,
    pub from_position: i64,
    pub to_position: i64,
    pub changes: Vec<Change>,
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
        "timeline" => &["rm_timeline", "rm_timeline_keys"],
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
    async fn commit_projection(&self, batch: ProjectionBatch) -> Result<(), StoreError>;

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
            /// Inserts a manual's summary and these of its rows.
            async fn insert_manual_rows(
                tx: &mut sqlx::Transaction<'static, $db>,
                m: &$crate::readmodel::ManualRow,
                balances: &[$crate::readmodel::BalanceRow],
                carryovers: &[$crate::readmodel::CarryoverRow],
                deadlines: &[$crate::readmodel::DeadlineRow],
            ) -> Result<(), $crate::StoreError> {
                sqlx::query(
                    "INSERT INTO rm_manuals (manual, trade_mode, book, zone, enterprise, processing_enterprise, \
                     valid_until, version, status, closed, findings) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                )
                .bind(&m.manual).bind(&m.trade_mode).bind(&m.book).bind(i64::from(m.zone))
                .bind(&m.enterprise).bind(&m.processing_enterprise).bind(&m.valid_until)
                .bind(m.version).bind(&m.status).bind(i64::from(m.closed)).bind(m.findings)
                .execute(&mut **tx).await?;
                // Many rows to a statement: one round trip each would cost
                // more than the rows themselves.
                for chunk in balances.chunks($crate::readmodel::MANUAL_ROWS_PER_STATEMENT) {
                    let mut insert = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO rm_balances (manual, item, hs, name, unit, balance, at_contractors) ",
                    );
                    insert.push_values(chunk.iter(), |mut row, b| {
                        row.push_bind(&b.manual).push_bind(b.item).push_bind(&b.hs).push_bind(&b.name)
                            .push_bind(&b.unit).push_bind(&b.balance).push_bind(&b.at_contractors);
                    });
                    insert.build().execute(&mut **tx).await?;
                }
                for chunk in carryovers.chunks($crate::readmodel::MANUAL_ROWS_PER_STATEMENT) {
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
                for chunk in deadlines.chunks($crate::readmodel::MANUAL_ROWS_PER_STATEMENT) {
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

            /// The first `limit` positions above `after` of events keyed by
            /// any of `codes`, ascending: each code's first `limit` from the
            /// index, merged.
            async fn hs_positions(&self, codes: &[String], after: i64, limit: usize) -> Result<Vec<i64>, $crate::StoreError> {
                let mut query = sqlx::QueryBuilder::<$db>::new("SELECT position FROM (");
                for (index, code) in codes.iter().enumerate() {
                    if index > 0 {
                        query.push(" UNION ALL ");
                    }
                    query.push("SELECT position FROM (SELECT position FROM rm_timeline_keys WHERE kind = 'hs' AND value = ");
                    query.push_bind(code.clone());
                    query.push(" AND position > ");
                    query.push_bind(after);
                    query.push(" ORDER BY position LIMIT ");
                    query.push_bind(limit as i64);
                    query.push(") AS c");
                    query.push(index.to_string());
                }
                query.push(") AS candidates GROUP BY position ORDER BY position LIMIT ");
                query.push_bind(limit as i64);
                let rows: Vec<(i64,)> = query.build_query_as().fetch_all(&self.$read).await?;
                Ok(rows.into_iter().map(|(position,)| position).collect())
            }

            /// Events matching `filter` above `after`, ascending, at most
            /// `limit`; with `candidates`, only those positions, which stand
            /// for the HS prefix of the filter.
            async fn timeline_page(
                &self,
                filter: &$crate::readmodel::TimelineFilter,
                after: i64,
                limit: usize,
                candidates: Option<&[i64]>,
            ) -> Result<Vec<$crate::StoredEvent>, $crate::StoreError> {
                let mut query = sqlx::QueryBuilder::<$db>::new(format!(
                    "SELECT {} FROM events e JOIN rm_timeline t ON t.position = e.position WHERE e.position > ",
                    $crate::readmodel::EVENT_COLUMNS_E
                ));
                query.push_bind(after);
                if let Some(candidates) = candidates {
                    query.push(" AND e.position IN (");
                    let mut separated = query.separated(", ");
                    for position in candidates {
                        separated.push_bind(*position);
                    }
                    query.push(")");
                }
                if !filter.manuals.is_empty() {
                    query.push(" AND t.manual IN (");
                    let mut separated = query.separated(", ");
                    for manual in &filter.manuals {
                        separated.push_bind(manual.clone());
                    }
                    query.push(")");
                }
                if let Some(enterprise) = &filter.enterprise {
                    query.push(" AND t.manual IN (SELECT manual FROM rm_manuals WHERE enterprise = ");
                    query.push_bind(enterprise.clone());
                    query.push(" OR processing_enterprise = ");
                    query.push_bind(enterprise.clone());
                    query.push(")");
                }
                if let (Some(prefix), None) = (&filter.hs_prefix, candidates) {
                    // A range over the (kind, value, position) index: every
                    // code that starts with the prefix sorts between it and
                    // the prefix's successor.
                    query.push(" AND t.position IN (SELECT k.position FROM rm_timeline_keys k WHERE k.kind = 'hs' AND k.value >= ");
                    query.push_bind(prefix.clone());
                    if let Some(successor) = $crate::readmodel::prefix_successor(prefix) {
                        query.push(" AND k.value < ");
                        query.push_bind(successor);
                    }
                    query.push(")");
                }
                if let Some(declaration) = &filter.declaration {
                    query.push(" AND t.declaration = ");
                    query.push_bind(declaration.clone());
                }
                if let Some(counterparty) = &filter.counterparty {
                    query.push(" AND t.position IN (SELECT k.position FROM rm_timeline_keys k WHERE k.kind = 'counterparty' AND k.value = ");
                    query.push_bind(counterparty.clone());
                    query.push(")");
                }
                if let Some(from) = filter.from {
                    query.push(" AND t.business_date >= ");
                    query.push_bind($crate::chain::format_business_date(&from));
                }
                if let Some(to) = filter.to {
                    query.push(" AND t.business_date <= ");
                    query.push_bind($crate::chain::format_business_date(&to));
                }
                query.push(" ORDER BY e.position LIMIT ");
                query.push_bind(limit as i64);
                let rows = query.build().fetch_all(&self.$read).await?;
                let rows = rows.iter().map(decode_event).collect::<Result<Vec<_>, _>>()?;
                $crate::event::into_stored_events(rows)
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

            async fn commit_projection(&self, batch: $crate::readmodel::ProjectionBatch) -> Result<(), $crate::StoreError> {
                use $crate::readmodel::Change;
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
                let mut timeline: Vec<&$crate::readmodel::TimelineRow> = Vec::new();
                for change in &batch.changes {
                    match change {
                        Change::ReplaceManual(rows) => {
                            let manual = &rows.manual.manual;
                            for table in ["rm_balances", "rm_carryovers", "rm_deadlines", "rm_manuals"] {
                                sqlx::query(&format!("DELETE FROM {table} WHERE manual = $1")).bind(manual).execute(&mut *tx).await?;
                            }
                            Self::insert_manual_rows(&mut tx, &rows.manual, &rows.balances, &rows.carryovers, &rows.deadlines).await?;
                        }
                        Change::AmendManual(amendment) => {
                            let manual = &amendment.manual.manual;
                            for table in ["rm_balances", "rm_manuals"] {
                                sqlx::query(&format!("DELETE FROM {table} WHERE manual = $1")).bind(manual).execute(&mut *tx).await?;
                            }
                            let carryovers: Vec<&String> = amendment.removed_carryovers.iter()
                                .chain(amendment.carryovers.iter().map(|c| &c.event)).collect();
                            for chunk in carryovers.chunks($crate::readmodel::MANUAL_ROWS_PER_STATEMENT) {
                                let mut delete = sqlx::QueryBuilder::<$db>::new("DELETE FROM rm_carryovers WHERE manual = ");
                                delete.push_bind(manual).push(" AND event IN (");
                                let mut events = delete.separated(", ");
                                for event in chunk {
                                    events.push_bind(*event);
                                }
                                delete.push(")");
                                delete.build().execute(&mut *tx).await?;
                            }
                            let deadlines: Vec<(&String, &String)> = amendment.removed_deadlines.iter().map(|(kind, event)| (kind, event))
                                .chain(amendment.deadlines.iter().map(|d| (&d.kind, &d.event))).collect();
                            for chunk in deadlines.chunks($crate::readmodel::MANUAL_ROWS_PER_STATEMENT) {
                                let mut delete = sqlx::QueryBuilder::<$db>::new("DELETE FROM rm_deadlines WHERE manual = ");
                                delete.push_bind(manual).push(" AND (kind, event) IN (");
                                delete.push_values(chunk.iter(), |mut row, (kind, event)| {
                                    row.push_bind(*kind).push_bind(*event);
                                });
                                delete.push(")");
                                delete.build().execute(&mut *tx).await?;
                            }
                            Self::insert_manual_rows(&mut tx, &amendment.manual, &amendment.balances, &amendment.carryovers, &amendment.deadlines).await?;
                        }
                        Change::Timeline(t) => timeline.push(t),
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
                // Timeline rows go in many to a statement: one round trip each
                // would cost more than the rows themselves.
                for rows in timeline.chunks($crate::readmodel::TIMELINE_ROWS_PER_STATEMENT) {
                    let mut insert = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO rm_timeline (position, manual, version, event_type, business_date, declaration) ",
                    );
                    insert.push_values(rows.iter(), |mut row, t| {
                        row.push_bind(t.position).push_bind(&t.manual).push_bind(t.version)
                            .push_bind(&t.event_type).push_bind(&t.business_date).push_bind(&t.declaration);
                    });
                    insert.build().execute(&mut *tx).await?;
                }
                let keys: Vec<(&str, &String, i64)> = timeline
                    .iter()
                    .flat_map(|t| {
                        t.hs.iter().map(move |v| ("hs", v, t.position))
                            .chain(t.counterparties.iter().map(move |v| ("counterparty", v, t.position)))
                    })
                    .collect();
                for chunk in keys.chunks($crate::readmodel::TIMELINE_ROWS_PER_STATEMENT) {
                    let mut insert = sqlx::QueryBuilder::<$db>::new("INSERT INTO rm_timeline_keys (kind, value, position) ");
                    insert.push_values(chunk.iter(), |mut row, (kind, value, position)| {
                        row.push_bind(*kind).push_bind(*value).push_bind(*position);
                    });
                    insert.push(" ON CONFLICT DO NOTHING");
                    insert.build().execute(&mut *tx).await?;
                }
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
                let limit = limit.min($crate::readmodel::MAX_READ_MODEL_ROWS) as i64;
                let rows: Vec<(i64, String, i64, String, String, Option<String>)> = sqlx::query_as(
                    "SELECT position, manual, version, event_type, business_date, declaration FROM rm_timeline \
                     WHERE position > $1 ORDER BY position LIMIT $2",
                )
                .bind(after)
                .bind(limit)
                .fetch_all(&self.$read)
                .await?;
                let Some(last) = rows.last().map(|r| r.0) else { return Ok(Vec::new()) };
                let keys: Vec<(String, String, i64)> = sqlx::query_as(
                    "SELECT kind, value, position FROM rm_timeline_keys WHERE position > $1 AND position <= $2 \
                     ORDER BY position, kind, value",
                )
                .bind(after)
                .bind(last)
                .fetch_all(&self.$read)
                .await?;
                let mut out: Vec<$crate::readmodel::TimelineRow> = rows
                    .into_iter()
                    .map(|r| $crate::readmodel::TimelineRow {
                        position: r.0, manual: r.1, version: r.2, event_type: r.3, business_date: r.4,
                        declaration: r.5, hs: Vec::new(), counterparties: Vec::new(),
                    })
                    .collect();
                let index: std::collections::HashMap<i64, usize> = out.iter().enumerate().map(|(i, r)| (r.position, i)).collect();
                for (kind, value, position) in keys {
                    if let Some(row) = index.get(&position).and_then(|i| out.get_mut(*i)) {
                        if kind == "hs" { row.hs.push(value) } else { row.counterparties.push(value) }
                    }
                }
                Ok(out)
            }

            async fn timeline(
                &self,
                filter: &$crate::readmodel::TimelineFilter,
                after: i64,
                limit: usize,
            ) -> Result<Vec<$crate::StoredEvent>, $crate::StoreError> {
                let limit = limit.min($crate::MAX_PAGE_EVENTS);
                // An HS prefix names few codes: their positions are read code
                // by code in position order from the keys' index, a page of
                // candidates at a time, and the other filters applied to
                // those. A prefix naming many codes matches densely: walking
                // the timeline in position order finds a page soon.
                let codes = match &filter.hs_prefix {
                    Some(prefix) => self.hs_codes(prefix).await?,
                    None => None,
                };
                let Some(codes) = codes else {
                    return self.timeline_page(filter, after, limit, None).await;
                };
                let mut events = Vec::new();
                let mut cursor = after;
                while events.len() < limit && !codes.is_empty() {
                    let candidates = self.hs_positions(&codes, cursor, limit).await?;
                    let Some(&last) = candidates.last() else { break };
                    let page = self
                        .timeline_page(filter, cursor, limit - events.len(), Some(&candidates))
                        .await?;
                    events.extend(page);
                    if candidates.len() < limit {
                        break;
                    }
                    cursor = last;
                }
                Ok(events)
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
