//! The SQLite store's replay reads, on connections of their own run on
//! tokio's blocking threads. A replay reads many thousands of rows a page;
//! sqlx's SQLite driver copies every value of every row on its worker thread
//! and hands the row over a channel, which costs more than SQLite's own read
//! of it (docs/adr/0004-replay-reads.md). These connections only ever read.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, Row, ToSql};

use crate::event::{ReplayEvent, REPLAY_LOG_PAGE, REPLAY_STREAM_PAGE};
use crate::StoreError;

/// Connections kept open between reads; more are opened while more readers
/// run at once, and closed when they come back to a full shelf.
const IDLE_CONNECTIONS: usize = 4;

/// What a page is selected by.
#[derive(Debug, Clone)]
pub(crate) enum ReplayPage {
    Stream {
        stream: String,
        from_version: i64,
        limit: i64,
    },
    All {
        after_position: i64,
        limit: i64,
    },
}

pub(crate) struct ReplayReaders {
    path: PathBuf,
    busy_timeout: Duration,
    idle: Mutex<Vec<Connection>>,
}

impl ReplayReaders {
    pub(crate) fn new(path: PathBuf, busy_timeout: Duration) -> Arc<Self> {
        Arc::new(ReplayReaders {
            path,
            busy_timeout,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// The events of `page`, in stream or ledger order.
    pub(crate) async fn read(
        self: &Arc<Self>,
        page: ReplayPage,
    ) -> Result<Vec<ReplayEvent>, StoreError> {
        let readers = Arc::clone(self);
        tokio::task::spawn_blocking(move || readers.read_now(&page))
            .await
            .map_err(|error| StoreError::Integrity(format!("a replay read stopped: {error}")))?
    }

    fn read_now(&self, page: &ReplayPage) -> Result<Vec<ReplayEvent>, StoreError> {
        let connection = match self.idle_connection() {
            Some(connection) => connection,
            None => self.open()?,
        };
        let events = select(&connection, page);
        // A connection that failed may be in any state: not kept.
        if events.is_ok() {
            let mut idle = self
                .idle
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if idle.len() < IDLE_CONNECTIONS {
                idle.push(connection);
            }
        }
        events
    }

    fn idle_connection(&self) -> Option<Connection> {
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop()
    }

    fn open(&self) -> Result<Connection, StoreError> {
        // Read-write as SQLite opens a WAL database for readers, but every
        // statement refused a write (`query_only`).
        let connection = open_connection(&self.path, self.busy_timeout)?;
        connection.pragma_update(None, "query_only", "ON")?;
        Ok(connection)
    }
}

/// A connection of the store's own to the ledger file at `path`, used by one
/// thread at a time.
pub(crate) fn open_connection(
    path: &Path,
    busy_timeout: Duration,
) -> Result<Connection, StoreError> {
    let connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    connection.busy_timeout(busy_timeout)?;
    Ok(connection)
}

fn select(connection: &Connection, page: &ReplayPage) -> Result<Vec<ReplayEvent>, StoreError> {
    // SQLite numbers `$1`, `$2`, … in the order they first appear, which is
    // their order here: positional parameters bind to them.
    let (sql, params): (&str, Vec<&dyn ToSql>) = match page {
        ReplayPage::Stream {
            stream,
            from_version,
            limit,
        } => (REPLAY_STREAM_PAGE, vec![stream, from_version, limit]),
        ReplayPage::All {
            after_position,
            limit,
        } => (REPLAY_LOG_PAGE, vec![after_position, limit]),
    };
    let mut statement = connection.prepare_cached(sql)?;
    let mut rows = statement.query(params.as_slice())?;
    let mut events = Vec::new();
    while let Some(row) = rows.next()? {
        events.push(decode(row)?);
    }
    Ok(events)
}

/// A row of [`REPLAY_STREAM_PAGE`] or [`REPLAY_LOG_PAGE`].
fn decode(row: &Row<'_>) -> Result<ReplayEvent, StoreError> {
    let position: i64 = row.get(0)?;
    let business_date = row.get_ref(6)?.as_str().map_err(rusqlite::Error::from)?;
    let recorded_at = row.get_ref(7)?.as_str().map_err(rusqlite::Error::from)?;
    Ok(ReplayEvent {
        position,
        stream: row.get(1)?,
        version: row.get(2)?,
        caller_id: row.get(3)?,
        event_type: row.get(4)?,
        schema_version: row.get(5)?,
        business_date: crate::sqlite::parse_business_date(position, business_date)?,
        recorded_at: crate::sqlite::parse_recorded_at(recorded_at)?,
        payload_json: row.get(8)?,
    })
}
