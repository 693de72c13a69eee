//! The SQLite backend: one file in WAL mode, one writer connection (appends run under
//! `BEGIN IMMEDIATE`), a few reader connections that see committed snapshots.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use sqlx::sqlite::{
    Sqlite, SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool,
    SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Transaction};
use uuid::Uuid;

use crate::append::{
    append_in, append_prepared_in, lock_and_look_up_in, may_have_written, refused_commit,
    restore_in, AppendPlan, KeptReads, LedgerHead, StreamHead, WriteTransaction,
};
use crate::chain::{format_business_date, format_recorded_at};
use crate::event::{into_stored_events, EventRow};
use crate::sqlite_reads::{ReplayPage, ReplayReaders};
use crate::store::page_size;
use crate::verify::{verify_ledger, verify_stream};
use crate::{
    AppendSession, Appended, Backend, ChainBreak, EventStore, ExpectedVersion, NewEvent,
    PreparedRuns, ReplayEvent, StoreError, StoredEvent,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");

/// How long a connection waits for another process's write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);
const READER_CONNECTIONS: u32 = 4;
/// 12 parameters a row: 12,000 a statement, well under SQLite's limit of 32,766.
const INSERT_ROWS_PER_STATEMENT: usize = 1_000;
/// Rows the connection's worker thread reads ahead of the caller: with sqlx's
/// default of 50 the two threads wake each other for every few rows.
const ROW_BUFFER_ROWS: usize = 10_000;
const CALLER_IDS_PER_STATEMENT: usize = 1_000;

const EVENT_COLUMNS: &str =
    "position, event_id, caller_id, stream, version, event_type, schema_version, \
                             payload, metadata, business_date, recorded_at, hash";

pub(crate) fn schema_version() -> i64 {
    MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
}

pub(crate) struct SqliteStore {
    writer: SqlitePool,
    readers: SqlitePool,
    /// Replays' page reads (see `sqlite_reads`).
    replay_readers: Arc<ReplayReaders>,
}

impl SqliteStore {
    pub(crate) async fn open(path: &Path) -> Result<Self, StoreError> {
        // Durable by default (docs/adr/0002-durability.md): every commit is fsynced.
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true)
            // A multi-row INSERT keeps a statement journal to undo itself alone; it
            // never outlives the transaction, so memory serves and saves a temporary
            // file's writes. Durability is the WAL's, which this does not touch.
            .pragma("temp_store", "MEMORY")
            .row_buffer_size(ROW_BUFFER_ROWS);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        MIGRATOR.run(&writer).await?;
        let readers = SqlitePoolOptions::new()
            .max_connections(READER_CONNECTIONS)
            .connect_with(options.create_if_missing(false).pragma("query_only", "ON"))
            .await?;
        Ok(Self {
            writer,
            readers,
            replay_readers: ReplayReaders::new(path.to_owned(), BUSY_TIMEOUT),
        })
    }
}

#[async_trait]
impl EventStore for SqliteStore {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    #[tracing::instrument(name = "bondledger.store.begin", skip_all)]
    async fn begin(&self) -> Result<Box<dyn AppendSession>, StoreError> {
        // IMMEDIATE takes the write lock now rather than at the first write, so two
        // sessions never both read and then fail to upgrade.
        let transaction = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        Ok(Box::new(SqliteSession {
            transaction,
            poisoned: false,
            kept: None,
        }))
    }

    #[tracing::instrument(name = "bondledger.store.read_stream", skip(self))]
    async fn read_stream(
        &self,
        stream: &str,
        from_version: i64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let mut connection = self.readers.acquire().await?;
        let rows = select_stream(&mut connection, stream, from_version, page_size(limit)).await?;
        into_stored_events(rows)
    }

    #[tracing::instrument(name = "bondledger.store.read_all", skip(self))]
    async fn read_all(
        &self,
        after_position: i64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let mut connection = self.readers.acquire().await?;
        let rows = select_all(&mut connection, after_position, page_size(limit)).await?;
        into_stored_events(rows)
    }

    #[tracing::instrument(name = "bondledger.store.read_stream_for_replay", skip(self))]
    async fn read_stream_for_replay(
        &self,
        stream: &str,
        from_version: i64,
        limit: usize,
    ) -> Result<Vec<ReplayEvent>, StoreError> {
        self.replay_readers
            .read(ReplayPage::Stream {
                stream: stream.to_owned(),
                from_version,
                limit: page_size(limit),
            })
            .await
    }

    #[tracing::instrument(name = "bondledger.store.read_all_for_replay", skip(self))]
    async fn read_all_for_replay(
        &self,
        after_position: i64,
        limit: usize,
    ) -> Result<Vec<ReplayEvent>, StoreError> {
        self.replay_readers
            .read(ReplayPage::All {
                after_position,
                limit: page_size(limit),
            })
            .await
    }

    #[tracing::instrument(name = "bondledger.store.stream_version", skip(self))]
    async fn stream_version(&self, stream: &str) -> Result<i64, StoreError> {
        let mut connection = self.readers.acquire().await?;
        Ok(select_stream_head(&mut connection, stream).await?.version)
    }

    #[tracing::instrument(name = "bondledger.store.head_position", skip(self))]
    async fn head_position(&self) -> Result<i64, StoreError> {
        let mut connection = self.readers.acquire().await?;
        Ok(select_ledger_head(&mut connection).await?.position)
    }

    #[tracing::instrument(name = "bondledger.store.log_mark", skip(self))]
    async fn log_mark(&self) -> Result<crate::LogMark, StoreError> {
        let mut connection = self.readers.acquire().await?;
        let row = sqlx::query(
            "SELECT (SELECT position FROM ledger_head WHERE id = 1) AS position, \
                    (SELECT max(version) FROM _sqlx_migrations WHERE success) AS schema_version",
        )
        .fetch_one(&mut *connection)
        .await?;
        Ok(crate::LogMark {
            wal: None,
            ledger_position: row.try_get("position")?,
            is_replica: false,
            replayed_commit_at: None,
            schema_version: row.try_get("schema_version")?,
        })
    }

    #[tracing::instrument(name = "bondledger.store.find_by_caller_ids", skip_all, fields(ids = caller_ids.len()))]
    async fn find_by_caller_ids(
        &self,
        caller_ids: &[String],
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let mut connection = self.readers.acquire().await?;
        into_stored_events(select_by_caller_ids(&mut connection, caller_ids).await?)
    }

    #[tracing::instrument(name = "bondledger.store.verify_chain", skip(self, progress))]
    async fn verify_chain_reporting(
        &self,
        stream: Option<&str>,
        progress: &mut (dyn FnMut(i64) + Send),
    ) -> Result<Vec<ChainBreak>, StoreError> {
        // One read transaction: one snapshot, so appends meanwhile cannot look like breaks.
        let mut transaction = self.readers.begin().await?;
        let breaks = match stream {
            Some(stream) => {
                verify_stream(&mut ChainReads(&mut transaction), stream, progress).await?
            }
            None => verify_ledger(&mut ChainReads(&mut transaction), progress).await?,
        };
        transaction.rollback().await?;
        Ok(breaks)
    }
}

struct SqliteSession {
    transaction: Transaction<'static, Sqlite>,
    /// Set when an append failed after it may have written: the session can only roll back.
    poisoned: bool,
    /// What was read under the write lock, as this session's writes since leave it.
    kept: Option<KeptReads>,
}

#[async_trait]
impl AppendSession for SqliteSession {
    #[tracing::instrument(name = "bondledger.store.session.append", skip_all, fields(stream = %stream, events = events.len()))]
    async fn append(
        &mut self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Appended>, StoreError> {
        let outcome = append_in(&mut *self, stream, expected, events).await;
        if outcome.as_ref().is_err_and(may_have_written) {
            self.poisoned = true;
        }
        outcome
    }

    #[tracing::instrument(name = "bondledger.store.session.append_runs", skip_all, fields(runs = runs.len()))]
    async fn append_prepared(
        &mut self,
        runs: PreparedRuns,
    ) -> Result<Vec<Vec<Appended>>, StoreError> {
        let outcome = append_prepared_in(&mut *self, runs).await;
        if outcome.as_ref().is_err_and(may_have_written) {
            self.poisoned = true;
        }
        outcome
    }

    #[tracing::instrument(name = "bondledger.store.session.find_by_caller_ids", skip_all, fields(ids = caller_ids.len()))]
    async fn find_by_caller_ids(
        &mut self,
        caller_ids: &[String],
    ) -> Result<Vec<StoredEvent>, StoreError> {
        into_stored_events(select_by_caller_ids(&mut self.transaction, caller_ids).await?)
    }

    #[tracing::instrument(name = "bondledger.store.session.stream_versions", skip_all, fields(streams = streams.len()))]
    async fn stream_versions(&mut self, streams: &[&str]) -> Result<Vec<i64>, StoreError> {
        Ok(WriteTransaction::stream_heads(self, streams)
            .await?
            .into_iter()
            .map(|head| head.version)
            .collect())
    }

    #[tracing::instrument(name = "bondledger.store.session.head_position", skip_all)]
    async fn head_position(&mut self) -> Result<i64, StoreError> {
        Ok(self.lock_ledger_head().await?.position)
    }

    #[tracing::instrument(name = "bondledger.store.session.lock_and_look_up", skip_all, fields(ids = caller_ids.len(), streams = streams.len()))]
    async fn lock_and_look_up(
        &mut self,
        caller_ids: &[String],
        streams: &[&str],
    ) -> Result<(Vec<StoredEvent>, Vec<i64>), StoreError> {
        lock_and_look_up_in(self, caller_ids, streams).await
    }

    #[tracing::instrument(name = "bondledger.store.session.restore", skip_all, fields(events = events.len()))]
    async fn restore(&mut self, events: Vec<StoredEvent>) -> Result<Vec<Appended>, StoreError> {
        let outcome = restore_in(&mut *self, events).await;
        if outcome.is_err() {
            // A refusal may come after earlier runs of this call were written.
            self.poisoned = true;
        }
        outcome
    }

    #[tracing::instrument(name = "bondledger.store.session.commit", skip_all)]
    async fn commit(self: Box<Self>) -> Result<(), StoreError> {
        if self.poisoned {
            self.transaction.rollback().await?;
            return Err(refused_commit());
        }
        Ok(self.transaction.commit().await?)
    }

    #[tracing::instrument(name = "bondledger.store.session.rollback", skip_all)]
    async fn rollback(self: Box<Self>) -> Result<(), StoreError> {
        Ok(self.transaction.rollback().await?)
    }
}

#[async_trait]
impl WriteTransaction for SqliteSession {
    async fn lock_ledger_head(&mut self) -> Result<LedgerHead, StoreError> {
        // BEGIN IMMEDIATE already holds the database's write lock.
        select_ledger_head(&mut self.transaction).await
    }

    async fn rows_by_caller_ids(
        &mut self,
        caller_ids: &[String],
    ) -> Result<Vec<EventRow>, StoreError> {
        select_by_caller_ids(&mut self.transaction, caller_ids).await
    }

    async fn stream_heads(&mut self, streams: &[&str]) -> Result<Vec<StreamHead>, StoreError> {
        // In process: a statement each costs no round trip.
        let mut heads = Vec::with_capacity(streams.len());
        for stream in streams {
            heads.push(select_stream_head(&mut self.transaction, stream).await?);
        }
        Ok(heads)
    }

    fn kept_reads(&mut self) -> &mut Option<KeptReads> {
        &mut self.kept
    }

    async fn write_plan(&mut self, plan: &mut AppendPlan) -> Result<(), StoreError> {
        write_plan(&mut self.transaction, plan).await
    }
}

async fn select_stream(
    connection: &mut SqliteConnection,
    stream: &str,
    from_version: i64,
    limit: i64,
) -> Result<Vec<EventRow>, StoreError> {
    let sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE stream = ? AND version >= ? ORDER BY version LIMIT ?");
    let rows = sqlx::query(&sql)
        .bind(stream)
        .bind(from_version)
        .bind(limit)
        .fetch_all(&mut *connection)
        .await?;
    rows.iter().map(decode_event).collect()
}

async fn select_all(
    connection: &mut SqliteConnection,
    after_position: i64,
    limit: i64,
) -> Result<Vec<EventRow>, StoreError> {
    let sql =
        format!("SELECT {EVENT_COLUMNS} FROM events WHERE position > ? ORDER BY position LIMIT ?");
    let rows = sqlx::query(&sql)
        .bind(after_position)
        .bind(limit)
        .fetch_all(&mut *connection)
        .await?;
    rows.iter().map(decode_event).collect()
}

async fn select_by_caller_ids(
    connection: &mut SqliteConnection,
    caller_ids: &[String],
) -> Result<Vec<EventRow>, StoreError> {
    let mut found = Vec::new();
    for chunk in caller_ids.chunks(CALLER_IDS_PER_STATEMENT) {
        let mut query = QueryBuilder::<Sqlite>::new(format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE caller_id IN ("
        ));
        let mut separated = query.separated(", ");
        for caller_id in chunk {
            separated.push_bind(caller_id.as_str());
        }
        query.push(")");
        let rows = query.build().fetch_all(&mut *connection).await?;
        for row in &rows {
            found.push(decode_event(row)?);
        }
    }
    found.sort_by_key(|row| row.position);
    found.dedup_by_key(|row| row.position);
    Ok(found)
}

async fn select_stream_head(
    connection: &mut SqliteConnection,
    stream: &str,
) -> Result<StreamHead, StoreError> {
    let row = sqlx::query("SELECT version, head_hash FROM streams WHERE stream = ?")
        .bind(stream)
        .fetch_optional(&mut *connection)
        .await?;
    match row {
        None => Ok(StreamHead {
            version: 0,
            hash: None,
        }),
        Some(row) => Ok(StreamHead {
            version: row.try_get("version")?,
            hash: Some(row.try_get("head_hash")?),
        }),
    }
}

async fn select_ledger_head(connection: &mut SqliteConnection) -> Result<LedgerHead, StoreError> {
    let row = sqlx::query("SELECT position, recorded_at FROM ledger_head WHERE id = 1")
        .fetch_one(&mut *connection)
        .await?;
    let recorded_at: Option<String> = row.try_get("recorded_at")?;
    Ok(LedgerHead {
        position: row.try_get("position")?,
        recorded_at: recorded_at.as_deref().map(parse_recorded_at).transpose()?,
    })
}

async fn write_plan(
    connection: &mut SqliteConnection,
    plan: &mut AppendPlan,
) -> Result<(), StoreError> {
    // The stream rows come first: events reference them.
    for moved in &plan.streams {
        if moved.previous_version == 0 {
            sqlx::query("INSERT INTO streams (stream, version, head_hash) VALUES (?, ?, ?)")
                .bind(&moved.stream)
                .bind(moved.version)
                .bind(&moved.hash)
                .execute(&mut *connection)
                .await?;
        } else {
            let updated = sqlx::query(
                "UPDATE streams SET version = ?, head_hash = ? WHERE stream = ? AND version = ?",
            )
            .bind(moved.version)
            .bind(&moved.hash)
            .bind(&moved.stream)
            .bind(moved.previous_version)
            .execute(&mut *connection)
            .await?;
            if updated.rows_affected() != 1 {
                return Err(StoreError::Integrity(format!(
                    "stream {}: its head moved while the ledger was locked",
                    moved.stream
                )));
            }
        }
    }
    for chunk in plan.rows.chunks_mut(INSERT_ROWS_PER_STATEMENT) {
        insert_events(connection, chunk).await?;
    }
    let last = plan.last();
    let updated = sqlx::query(
        "UPDATE ledger_head SET position = ?, recorded_at = ? WHERE id = 1 AND position = ?",
    )
    .bind(last.position)
    .bind(format_recorded_at(&last.recorded_at))
    .bind(plan.previous_position)
    .execute(&mut *connection)
    .await?;
    if updated.rows_affected() != 1 {
        return Err(StoreError::Integrity(
            "the ledger head moved while the ledger was locked".to_owned(),
        ));
    }
    Ok(())
}

/// Inserts `rows`, taking their payload, metadata and hash text (bound as they
/// are, not copied).
async fn insert_events(
    connection: &mut SqliteConnection,
    rows: &mut [EventRow],
) -> Result<(), StoreError> {
    let mut query = QueryBuilder::<Sqlite>::new(format!("INSERT INTO events ({EVENT_COLUMNS}) "));
    // The rows of one append share their recorded time: formatted once.
    let mut recorded_at: Option<(DateTime<Utc>, String)> = None;
    query.push_values(rows, |mut values, row| {
        let recorded_at = match &recorded_at {
            Some((time, text)) if *time == row.recorded_at => text.clone(),
            _ => {
                let text = format_recorded_at(&row.recorded_at);
                recorded_at = Some((row.recorded_at, text.clone()));
                text
            }
        };
        values
            .push_bind(row.position)
            .push_bind(
                row.event_id
                    .as_hyphenated()
                    .encode_lower(&mut Uuid::encode_buffer())
                    .to_owned(),
            )
            .push_bind(row.caller_id.as_deref())
            .push_bind(row.stream.as_str())
            .push_bind(row.version)
            .push_bind(row.event_type.as_str())
            .push_bind(row.schema_version)
            .push_bind(std::mem::take(&mut row.payload_json))
            .push_bind(std::mem::take(&mut row.metadata_json))
            .push_bind(format_business_date(&row.business_date))
            .push_bind(recorded_at)
            .push_bind(std::mem::take(&mut row.hash));
    });
    query.build().execute(&mut *connection).await?;
    Ok(())
}

crate::verify::chain_reads!(SqliteConnection);

fn decode_event(row: &SqliteRow) -> Result<EventRow, StoreError> {
    let position: i64 = row.try_get("position")?;
    let unreadable = |column: &str, error: &dyn std::fmt::Display| {
        StoreError::Integrity(format!("position {position}: unreadable {column}: {error}"))
    };
    let event_id: String = row.try_get("event_id")?;
    let business_date: String = row.try_get("business_date")?;
    let recorded_at: String = row.try_get("recorded_at")?;
    Ok(EventRow {
        position,
        event_id: Uuid::parse_str(&event_id).map_err(|error| unreadable("event_id", &error))?,
        caller_id: row.try_get("caller_id")?,
        stream: row.try_get("stream")?,
        version: row.try_get("version")?,
        event_type: row.try_get("event_type")?,
        schema_version: row.try_get("schema_version")?,
        payload_json: row.try_get("payload")?,
        metadata_json: row.try_get("metadata")?,
        business_date: NaiveDate::parse_from_str(&business_date, "%Y-%m-%d")
            .map_err(|error| unreadable("business_date", &error))?,
        recorded_at: parse_recorded_at(&recorded_at)?,
        hash: row.try_get("hash")?,
    })
}

pub(crate) fn parse_recorded_at(text: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(text)
        .map(|recorded_at| recorded_at.with_timezone(&Utc))
        .map_err(|error| StoreError::Integrity(format!("unreadable recorded_at {text:?}: {error}")))
}

// IMMEDIATE takes the database's write lock before the checkpoint is read, so a
// runner in another process cannot move it between the read and the commit.
crate::readmodel::impl_read_models!(
    SqliteStore,
    sqlx::Sqlite,
    writer,
    readers,
    "BEGIN IMMEDIATE",
    // A reader's transaction sees one snapshot of the WAL from its first read.
    "BEGIN",
    None
);
// One writer connection keeps first-token inserts apart.
crate::tokens::impl_token_store!(SqliteStore, sqlx::Sqlite, writer, readers, None);
