//! The SQLite backend: one file in WAL mode, one writer connection for the read
//! models and tokens, the appends' connection (`sqlite_writes`: under
//! `BEGIN IMMEDIATE`, holding the writer while they run), and a few reader
//! connections that see committed snapshots.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use sqlx::sqlite::{
    Sqlite, SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool,
    SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row};
use uuid::Uuid;

use crate::append::{LedgerHead, StreamHead};
use crate::event::{into_stored_events, EventRow};
use crate::sqlite_reads::{ReplayPage, ReplayReaders};
use crate::sqlite_writes::Appenders;
use crate::store::page_size;
use crate::verify::{verify_ledger, verify_stream};
use crate::{AppendSession, Backend, ChainBreak, EventStore, ReplayEvent, StoreError, StoredEvent};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");

/// How long a connection waits for another process's write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);
const READER_CONNECTIONS: u32 = 4;
/// Rows the connection's worker thread reads ahead of the caller: with sqlx's
/// default of 50 the two threads wake each other for every few rows.
const ROW_BUFFER_ROWS: usize = 10_000;
const CALLER_IDS_PER_STATEMENT: usize = 1_000;

pub(crate) const EVENT_COLUMNS: &str =
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
    /// Appends' connection (see `sqlite_writes`).
    appenders: Arc<Appenders>,
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
            appenders: Appenders::new(path.to_owned(), BUSY_TIMEOUT),
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
        let gate = self.writer.acquire().await?;
        Ok(Box::new(self.appenders.begin(gate).await?))
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

crate::verify::chain_reads!(SqliteConnection);

fn decode_event(row: &SqliteRow) -> Result<EventRow, StoreError> {
    let position: i64 = row.try_get("position")?;
    let event_id: &str = row.try_get("event_id")?;
    let business_date: &str = row.try_get("business_date")?;
    let recorded_at: &str = row.try_get("recorded_at")?;
    Ok(EventRow {
        position,
        event_id: parse_event_id(position, event_id)?,
        caller_id: row.try_get("caller_id")?,
        stream: row.try_get("stream")?,
        version: row.try_get("version")?,
        event_type: row.try_get("event_type")?,
        schema_version: row.try_get("schema_version")?,
        payload_json: row.try_get("payload")?,
        metadata_json: row.try_get("metadata")?,
        business_date: parse_business_date(position, business_date)?,
        recorded_at: parse_recorded_at(recorded_at)?,
        hash: row.try_get("hash")?,
    })
}

/// An event's id as SQLite keeps it: hyphenated text.
pub(crate) fn parse_event_id(position: i64, text: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(text).map_err(|error| unreadable(position, "event_id", &error))
}

/// An event's business date as SQLite keeps it: `YYYY-MM-DD`.
pub(crate) fn parse_business_date(position: i64, text: &str) -> Result<NaiveDate, StoreError> {
    match stored_date(text) {
        Some(date) => Ok(date),
        None => NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .map_err(|error| unreadable(position, "business_date", &error)),
    }
}

/// The whole number written in `digits`, if they are all ASCII digits.
fn digits_value(digits: &[u8]) -> Option<u32> {
    digits.iter().try_fold(0_u32, |number, &digit| {
        digit
            .is_ascii_digit()
            .then(|| number * 10 + u32::from(digit - b'0'))
    })
}

/// A date in the one form the store writes, `YYYY-MM-DD`, read without
/// chrono's general parser (a replay reads one an event); `None` for
/// anything else, which the caller reads the general way to name the fault.
fn stored_date(text: &str) -> Option<NaiveDate> {
    let bytes = text.as_bytes();
    if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return None;
    }
    let year = i32::try_from(digits_value(&bytes[0..4])?).ok()?;
    NaiveDate::from_ymd_opt(
        year,
        digits_value(&bytes[5..7])?,
        digits_value(&bytes[8..10])?,
    )
}

/// A time recorded in the one form the store writes,
/// `YYYY-MM-DDTHH:MM:SS.ffffffZ`, read as [`stored_date`] reads a date.
fn stored_recorded_at(text: &str) -> Option<DateTime<Utc>> {
    let bytes = text.as_bytes();
    if bytes.len() != 27
        || bytes[10] != b'T'
        || bytes[13] != b':'
        || bytes[16] != b':'
        || bytes[19] != b'.'
        || bytes[26] != b'Z'
    {
        return None;
    }
    let date = stored_date(text.get(0..10)?)?;
    let time = chrono::NaiveTime::from_hms_micro_opt(
        digits_value(&bytes[11..13])?,
        digits_value(&bytes[14..16])?,
        digits_value(&bytes[17..19])?,
        digits_value(&bytes[20..26])?,
    )?;
    Some(date.and_time(time).and_utc())
}

fn unreadable(position: i64, column: &str, error: &dyn std::fmt::Display) -> StoreError {
    StoreError::Integrity(format!("position {position}: unreadable {column}: {error}"))
}

pub(crate) fn parse_recorded_at(text: &str) -> Result<DateTime<Utc>, StoreError> {
    if let Some(recorded_at) = stored_recorded_at(text) {
        return Ok(recorded_at);
    }
    DateTime::parse_from_rfc3339(text)
        .map(|recorded_at| recorded_at.with_timezone(&Utc))
        .map_err(|error| StoreError::Integrity(format!("unreadable recorded_at {text:?}: {error}")))
}

impl SqliteStore {
    /// Inserts the key rows of blocks no earlier commit wrote into: as any
    /// key rows, with no clause for a key already there.
    async fn insert_new_timeline_keys(
        tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
        keys: &[crate::readmodel::TimelineKeyRow<'_>],
    ) -> Result<(), StoreError> {
        Self::insert_timeline_keys(tx, keys, "").await
    }
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

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Duration, NaiveDate, Utc};

    use super::{parse_business_date, parse_recorded_at, stored_date, stored_recorded_at};
    use crate::chain::{format_business_date, format_recorded_at};

    /// What the store writes reads back by the short way as by chrono's
    /// general parsers, over dates and times spread across centuries.
    #[test]
    fn stored_dates_and_times_read_as_chrono_reads_them() {
        let mut recorded_at = DateTime::parse_from_rfc3339("1970-01-01T00:00:00.000000Z")
            .expect("a time")
            .with_timezone(&Utc);
        for step in 0..20_000_i64 {
            let text = format_recorded_at(&recorded_at);
            let general = DateTime::parse_from_rfc3339(&text)
                .expect("rfc 3339")
                .with_timezone(&Utc);
            assert_eq!(stored_recorded_at(&text), Some(general), "{text}");
            assert_eq!(parse_recorded_at(&text).expect("read"), general, "{text}");
            let date = recorded_at.date_naive();
            let date_text = format_business_date(&date);
            assert_eq!(stored_date(&date_text), Some(date), "{date_text}");
            assert_eq!(
                date_text.parse::<NaiveDate>().expect("a date"),
                date,
                "{date_text}"
            );
            recorded_at += Duration::days(3) + Duration::microseconds(step * 7_919_311 + 1);
        }
    }

    /// Anything else is left to the general parsers, which name the fault.
    #[test]
    fn other_texts_are_left_to_the_general_parsers() {
        for text in [
            "2026-02-30",
            "2026-13-01",
            "2026-1-011",
            "2026/01/01",
            "20260101xx",
            "２０２６-01-01",
        ] {
            assert_eq!(stored_date(text), None, "{text}");
            assert!(parse_business_date(7, text).is_err(), "{text}");
        }
        for text in [
            "2026-01-01T24:00:00.000000Z",
            "2026-01-01T23:59:60.000000Z",
            "2026-01-01T10:00:00.000000+08:00",
            "2026-01-01 10:00:00.000000Z",
            "2026-01-01T10:00:00.00000xZ",
        ] {
            assert_eq!(stored_recorded_at(text), None, "{text}");
        }
        // An offset the store never writes still reads, the general way.
        assert_eq!(
            parse_recorded_at("2026-01-01T10:00:00.000001+08:00").expect("read"),
            DateTime::parse_from_rfc3339("2026-01-01T02:00:00.000001Z")
                .expect("rfc 3339")
                .with_timezone(&Utc)
        );
    }
}
