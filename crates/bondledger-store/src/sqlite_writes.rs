//! The SQLite store's append sessions, on a connection of their own driven
//! through SQLite's C API (rusqlite) on tokio's blocking threads, as the
//! replay reads are (`sqlite_reads`). An import writes a million rows in one
//! transaction: sqlx's driver copies every bound value into arguments of its
//! own, hands them to its worker thread, and inserts them as multi-row
//! statements, each of which keeps a statement journal to undo itself alone.
//! Here each row is one step of a prepared single-row insert, bound from the
//! row as it stands (docs/adr/0012-sqlite-appends.md).
//!
//! The session also holds the store's one sqlx writer connection, unused, for
//! as long as it lasts: the read models and the tokens write through it, so
//! within this process nothing waits on SQLite's busy handler for the
//! database's write lock; other processes still do (`busy_timeout`).

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, Row};
use sqlx::pool::PoolConnection;
use sqlx::Sqlite;
use uuid::Uuid;

use crate::append::{
    refused_commit, AppendPlan, KeptReads, LedgerHead, StreamHead, WriteTransaction,
};
use crate::chain::{format_business_date, format_recorded_at};
use crate::event::EventRow;
use crate::sqlite::{parse_business_date, parse_event_id, parse_recorded_at, EVENT_COLUMNS};
use crate::sqlite_reads::open_connection;
use crate::StoreError;

/// The appends' connection, kept open between sessions.
pub(crate) struct Appenders {
    path: PathBuf,
    busy_timeout: Duration,
    idle: Mutex<Option<Connection>>,
}

impl Appenders {
    pub(crate) fn new(path: PathBuf, busy_timeout: Duration) -> Arc<Self> {
        Arc::new(Appenders {
            path,
            busy_timeout,
            idle: Mutex::new(None),
        })
    }

    /// A session under the database's write lock (`BEGIN IMMEDIATE`), holding
    /// `gate`, the store's sqlx writer connection, until it ends.
    pub(crate) async fn begin(
        self: &Arc<Self>,
        gate: PoolConnection<Sqlite>,
    ) -> Result<SqliteSession, StoreError> {
        let appenders = Arc::clone(self);
        let connection = blocking(move || {
            let idle = appenders.idle().take();
            let connection = match idle {
                Some(connection) => connection,
                None => appenders.open()?,
            };
            // IMMEDIATE takes the write lock now rather than at the first
            // write, so two sessions never both read and then fail to upgrade.
            connection.execute_batch("BEGIN IMMEDIATE")?;
            Ok(connection)
        })
        .await?;
        Ok(SqliteSession {
            _gate: gate,
            appenders: Arc::clone(self),
            connection: Some(connection),
            poisoned: false,
            kept: None,
        })
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Option<Connection>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn open(&self) -> Result<Connection, StoreError> {
        let connection = open_connection(&self.path, self.busy_timeout)?;
        // The store's settings, which are each connection's own (the WAL
        // journal is the file's): durable by default, every commit fsynced
        // (docs/adr/0002-durability.md); events checked against their streams.
        connection.pragma_update(None, "synchronous", "FULL")?;
        connection.pragma_update(None, "foreign_keys", "ON")?;
        connection.pragma_update(None, "temp_store", "MEMORY")?;
        // 64 MiB of pages, not SQLite's 2 MiB: appends to many streams touch
        // index pages all over the (stream, version) and caller-id indexes,
        // which a small cache reads again from the WAL and the file for each
        // chunk (a 1M import over 2,000 manuals: 35k -> 51k movements/s).
        connection.pragma_update(None, "cache_size", "-65536")?;
        Ok(connection)
    }

    /// Shelves a connection whose transaction ended.
    fn put_back(&self, connection: Connection) {
        *self.idle() = Some(connection);
    }
}

/// Runs `work` on a blocking thread.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| StoreError::Integrity(format!("an append's statement stopped: {error}")))?
}

pub(crate) struct SqliteSession {
    /// The store's sqlx writer connection, held and not used.
    _gate: PoolConnection<Sqlite>,
    appenders: Arc<Appenders>,
    /// In its transaction; away only while a statement runs. A session
    /// dropped without ending closes it, and closing rolls the transaction
    /// back.
    connection: Option<Connection>,
    /// Set when an append failed after it may have written: the session can only roll back.
    poisoned: bool,
    /// What was read under the write lock, as this session's writes since leave it.
    kept: Option<KeptReads>,
}

impl SqliteSession {
    /// Runs `work` on the session's connection, on a blocking thread.
    async fn run<T: Send + 'static>(
        &mut self,
        work: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let connection = self.connection.take().ok_or_else(|| {
            StoreError::Integrity("the append session's connection was lost".to_owned())
        })?;
        let (connection, outcome) = blocking(move || {
            let outcome = work(&connection);
            Ok((connection, outcome))
        })
        .await?;
        self.connection = Some(connection);
        outcome
    }

    /// Ends the transaction with `statement`; the connection is shelved only
    /// when it did.
    async fn end(mut self, statement: &'static str) -> Result<(), StoreError> {
        self.run(move |connection| Ok(connection.execute_batch(statement)?))
            .await?;
        if let Some(connection) = self.connection.take() {
            self.appenders.put_back(connection);
        }
        Ok(())
    }
}

crate::append::impl_locked_append_session!(SqliteSession, {
    #[tracing::instrument(name = "bondledger.store.session.commit", skip_all)]
    async fn commit(self: Box<Self>) -> Result<(), StoreError> {
        if self.poisoned {
            self.end("ROLLBACK").await?;
            return Err(refused_commit());
        }
        self.end("COMMIT").await
    }

    #[tracing::instrument(name = "bondledger.store.session.rollback", skip_all)]
    async fn rollback(self: Box<Self>) -> Result<(), StoreError> {
        self.end("ROLLBACK").await
    }
});

#[async_trait]
impl WriteTransaction for SqliteSession {
    async fn lock_ledger_head(&mut self) -> Result<LedgerHead, StoreError> {
        // BEGIN IMMEDIATE already holds the database's write lock.
        self.run(|connection| {
            let (position, recorded_at): (i64, Option<String>) = connection
                .prepare_cached("SELECT position, recorded_at FROM ledger_head WHERE id = 1")?
                .query_row([], |row| Ok((row.get(0)?, row.get(1)?)))?;
            Ok(LedgerHead {
                position,
                recorded_at: recorded_at.as_deref().map(parse_recorded_at).transpose()?,
            })
        })
        .await
    }

    async fn rows_by_caller_ids(
        &mut self,
        caller_ids: &[String],
    ) -> Result<Vec<EventRow>, StoreError> {
        let caller_ids = caller_ids.to_vec();
        self.run(move |connection| {
            // In process: one indexed look-up a statement step costs no round trip.
            let mut select = connection.prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE caller_id = ?1"
            ))?;
            let mut found = Vec::new();
            for caller_id in &caller_ids {
                if let Some(row) = select
                    .query_row([caller_id], |row| Ok(decode_event(row)))
                    .optional()?
                {
                    found.push(row?);
                }
            }
            found.sort_by_key(|row: &EventRow| row.position);
            found.dedup_by_key(|row| row.position);
            Ok(found)
        })
        .await
    }

    async fn stream_heads(&mut self, streams: &[&str]) -> Result<Vec<StreamHead>, StoreError> {
        let streams: Vec<String> = streams.iter().map(|&stream| stream.to_owned()).collect();
        self.run(move |connection| {
            let mut select = connection
                .prepare_cached("SELECT version, head_hash FROM streams WHERE stream = ?1")?;
            let mut heads = Vec::with_capacity(streams.len());
            for stream in &streams {
                let head = select
                    .query_row([stream], |row| {
                        Ok(StreamHead {
                            version: row.get(0)?,
                            hash: Some(row.get(1)?),
                        })
                    })
                    .optional()?;
                heads.push(head.unwrap_or(StreamHead {
                    version: 0,
                    hash: None,
                }));
            }
            Ok(heads)
        })
        .await
    }

    fn kept_reads(&mut self) -> &mut Option<KeptReads> {
        &mut self.kept
    }

    async fn write_plan(&mut self, plan: &mut AppendPlan) -> Result<(), StoreError> {
        // The plan goes to the blocking thread and comes back whole: what an
        // append returns is read from its rows.
        let mut owned = AppendPlan {
            previous_position: plan.previous_position,
            rows: std::mem::take(&mut plan.rows),
            streams: std::mem::take(&mut plan.streams),
        };
        let (written, outcome) = self
            .run(move |connection| {
                let outcome = write_plan(connection, &owned);
                Ok((
                    (
                        std::mem::take(&mut owned.rows),
                        std::mem::take(&mut owned.streams),
                    ),
                    outcome,
                ))
            })
            .await?;
        (plan.rows, plan.streams) = written;
        outcome
    }
}

fn write_plan(connection: &Connection, plan: &AppendPlan) -> Result<(), StoreError> {
    // The stream rows come first: events reference them.
    for moved in &plan.streams {
        if moved.previous_version == 0 {
            connection
                .prepare_cached(
                    "INSERT INTO streams (stream, version, head_hash) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![moved.stream, moved.version, moved.hash])?;
        } else {
            let updated = connection
                .prepare_cached(
                    "UPDATE streams SET version = ?1, head_hash = ?2 \
                     WHERE stream = ?3 AND version = ?4",
                )?
                .execute(params![
                    moved.version,
                    moved.hash,
                    moved.stream,
                    moved.previous_version
                ])?;
            if updated != 1 {
                return Err(StoreError::Integrity(format!(
                    "stream {}: its head moved while the ledger was locked",
                    moved.stream
                )));
            }
        }
    }
    let mut insert = connection.prepare_cached(&format!(
        "INSERT INTO events ({EVENT_COLUMNS}) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
    ))?;
    // The rows of one append share their recorded time and mostly their
    // date: each formatted once for a run of rows with the same.
    let mut recorded_at = Formatted::new(format_recorded_at);
    let mut business_date = Formatted::new(format_business_date);
    let mut event_id = Uuid::encode_buffer();
    for row in &plan.rows {
        insert.execute(params![
            row.position,
            &*row.event_id.as_hyphenated().encode_lower(&mut event_id),
            row.caller_id,
            row.stream,
            row.version,
            row.event_type,
            row.schema_version,
            row.payload_json,
            row.metadata_json,
            business_date.of(row.business_date),
            recorded_at.of(row.recorded_at),
            row.hash,
        ])?;
    }
    let last = plan.last();
    let updated = connection
        .prepare_cached(
            "UPDATE ledger_head SET position = ?1, recorded_at = ?2 WHERE id = 1 AND position = ?3",
        )?
        .execute(params![
            last.position,
            recorded_at.of(last.recorded_at),
            plan.previous_position
        ])?;
    if updated != 1 {
        return Err(StoreError::Integrity(
            "the ledger head moved while the ledger was locked".to_owned(),
        ));
    }
    Ok(())
}

/// The text of the value last formatted, kept while rows repeat the value.
struct Formatted<T> {
    format: fn(&T) -> String,
    last: Option<(T, String)>,
}

impl<T: PartialEq + Copy> Formatted<T> {
    fn new(format: fn(&T) -> String) -> Self {
        Formatted { format, last: None }
    }

    fn of(&mut self, value: T) -> &str {
        let format = self.format;
        let (last, text) = self.last.get_or_insert_with(|| (value, format(&value)));
        if *last != value {
            *last = value;
            *text = format(&value);
        }
        text
    }
}

/// A row of `SELECT {EVENT_COLUMNS}`.
fn decode_event(row: &Row<'_>) -> Result<EventRow, StoreError> {
    let position: i64 = row.get(0)?;
    let text = |index: usize| -> Result<&str, StoreError> {
        Ok(row
            .get_ref(index)?
            .as_str()
            .map_err(rusqlite::Error::from)?)
    };
    Ok(EventRow {
        position,
        event_id: parse_event_id(position, text(1)?)?,
        caller_id: row.get(2)?,
        stream: row.get(3)?,
        version: row.get(4)?,
        event_type: row.get(5)?,
        schema_version: row.get(6)?,
        payload_json: row.get(7)?,
        metadata_json: row.get(8)?,
        business_date: parse_business_date(position, text(9)?)?,
        recorded_at: parse_recorded_at(text(10)?)?,
        hash: row.get(11)?,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::tokens::NewToken;

    /// The read models and tokens write on the store's sqlx connection, the
    /// appends on a connection of their own: a write of the one made while a
    /// session of the other is open neither fails nor slips in under its
    /// lock, but waits for it to end.
    #[tokio::test]
    async fn a_token_written_while_an_append_session_is_open_waits_and_is_then_kept() {
        let dir = tempfile::tempdir().expect("a scratch directory");
        let url = format!("sqlite://{}", dir.path().join("ledger.db").display());
        let store = crate::open(&url).await.expect("opened");
        let session = store.begin().await.expect("a session");
        let other = store.clone();
        let waiting = tokio::spawn(async move {
            other
                .insert_token(NewToken {
                    hash: "ab".repeat(32),
                    role: "auditor".to_owned(),
                    enterprise: None,
                    label: None,
                })
                .await
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            !waiting.is_finished(),
            "the token was written under the session's lock"
        );
        session.rollback().await.expect("rolled back");
        waiting
            .await
            .expect("joined")
            .expect("the token is kept once the session ended");
        assert_eq!(store.token_count().await.expect("counted"), 1);
    }
}
