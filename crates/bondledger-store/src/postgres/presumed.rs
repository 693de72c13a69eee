//! Presumed appends (docs/adr/0008-presumed-appends.md): planned on what this
//! process's own commits left the ledger as, with nothing read before the
//! write, and written and committed in one statement that first checks, under
//! the append lock, that the ledger still stands where the plan says.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnection, PgPool};
use sqlx::Connection as _;
use uuid::Uuid;

use super::{is_not_as_planned, lock, write_plan, Partitions, INSERT_ROWS_PER_STATEMENT};
use crate::append::{
    append_in, append_prepared_in, lock_and_look_up_in, AppendPlan, AppendReads, KeptReads,
    LastKnown, LedgerHead, StreamHead, WriteTransaction,
};
use crate::event::EventRow;
use crate::{
    AppendSession, Appended, ExpectedVersion, NewEvent, PreparedRuns, StoreError, StoredEvent,
};

/// Past this long unused, the appender's connection is pinged before a write:
/// one the server dropped meanwhile (a restart) is then replaced unseen.
const IDLE_BEFORE_PING: Duration = Duration::from_secs(1);
/// How long finding out whether a write cut off with its connection committed
/// waits for the server to end that connection's backend.
const TERMINATE_TIMEOUT_MS: i64 = 5_000;

/// The connection presumed appends are written on, held by the store rather
/// than taken from the pool for each: the pool pings a connection as it hands
/// it out and again as it takes it back, and each ping is a round trip as long
/// as the append's own. It is made by the pool and detached from it.
pub(super) struct AppenderConnection {
    connection: PgConnection,
    /// Its server process, told apart from a later one with the same pid.
    backend: (i32, DateTime<Utc>),
    used: Instant,
}

/// The appender's connection, when one is open.
pub(super) type HeldConnection = Arc<tokio::sync::Mutex<Option<AppenderConnection>>>;

impl AppenderConnection {
    async fn open(pool: &PgPool) -> Result<Self, StoreError> {
        let mut connection = pool.acquire().await?.detach();
        let (pid, started): (i32, DateTime<Utc>) = sqlx::query_as(
            "SELECT pid, backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()",
        )
        .fetch_one(&mut connection)
        .await?;
        Ok(AppenderConnection {
            connection,
            backend: (pid, started),
            used: Instant::now(),
        })
    }

    /// `held`, pinged first when it has been idle a while; a new one when
    /// there was none or the ping failed.
    async fn ready(held: Option<Self>, pool: &PgPool) -> Result<Self, StoreError> {
        match held {
            Some(held) if held.used.elapsed() < IDLE_BEFORE_PING => Ok(held),
            Some(mut held) => match held.connection.ping().await {
                Ok(()) => Ok(held),
                Err(error) => {
                    tracing::info!(%error, "the appender's connection was lost while idle");
                    Self::open(pool).await
                }
            },
            None => Self::open(pool).await,
        }
    }
}

/// What the server said in refusing a statement, unless the refusal is of
/// the connection itself (it is ending, or the server is): a statement then
/// cut off may have committed.
fn refused_by_server(error: &StoreError) -> Option<String> {
    match error {
        StoreError::Database(sqlx::Error::Database(refused)) if !error.is_transient() => {
            Some(refused.message().to_owned())
        }
        _ => None,
    }
}

/// Whether a write whose connection was lost before its answer committed.
/// The connection's server process is ended first, if it still runs: from
/// then on the write has committed or never will. Then the first event it
/// wrote is looked for. An error when either cannot be done.
async fn committed_after_all(
    pool: &PgPool,
    (pid, started): (i32, DateTime<Utc>),
    event_id: Uuid,
) -> Result<bool, StoreError> {
    let mut connection = pool.acquire().await?;
    let ended: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid, $3) FROM pg_stat_activity \
         WHERE pid = $1 AND backend_start = $2",
    )
    .bind(pid)
    .bind(started)
    .bind(TERMINATE_TIMEOUT_MS)
    .fetch_all(&mut *connection)
    .await?;
    if ended.contains(&false) {
        return Err(StoreError::Integrity(format!(
            "the server process {pid} of a lost append did not end"
        )));
    }
    Ok(
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM event_keys WHERE event_id = $1)")
            .bind(event_id)
            .fetch_one(&mut *connection)
            .await?,
    )
}

pub(super) struct PresumedSession {
    pool: PgPool,
    connection: HeldConnection,
    partitions: Arc<Partitions>,
    last_known: Arc<Mutex<LastKnown>>,
    /// The ledger head this session's reads presumed.
    presumed_at: Option<i64>,
    kept: Option<KeptReads>,
    /// Whether its one write was made, and so committed.
    written: bool,
}

impl PresumedSession {
    pub(super) fn new(
        pool: &PgPool,
        connection: &HeldConnection,
        partitions: &Arc<Partitions>,
        last_known: &Arc<Mutex<LastKnown>>,
    ) -> Self {
        PresumedSession {
            pool: pool.clone(),
            connection: Arc::clone(connection),
            partitions: Arc::clone(partitions),
            last_known: Arc::clone(last_known),
            presumed_at: None,
            kept: None,
            written: false,
        }
    }

    /// Writes `plan` in one statement on the appender's connection: whether
    /// it committed, or the error that says it did not. An error other than
    /// [`StoreError::Stale`] leaves it unknown.
    async fn write_on_connection(&mut self, plan: &AppendPlan) -> Result<(), StoreError> {
        let mut held = self.connection.lock().await;
        let mut connection = AppenderConnection::ready(held.take(), &self.pool)
            .await
            .map_err(|error| StoreError::Stale(format!("no connection: {error}")))?;
        let refused = match write_plan(&mut connection.connection, plan, false, &|_| false).await {
            Ok(()) => None,
            Err(error) => match (is_not_as_planned(&error), refused_by_server(&error)) {
                // The server refused the statement: it was rolled back, its
                // own transaction, and the connection is as good as before.
                (true, _) => Some(StoreError::Stale(
                    "another process appended since this one last did".to_owned(),
                )),
                (false, Some(message)) => Some(StoreError::Stale(message)),
                // The connection went, or is going: the commit may have come first.
                (false, None) => {
                    let backend = connection.backend;
                    drop(connection);
                    return self.after_losing(error, backend, plan).await;
                }
            },
        };
        connection.used = Instant::now();
        *held = Some(connection);
        refused.map_or(Ok(()), Err)
    }

    /// The outcome of a write whose connection was lost: done, or
    /// [`StoreError::Stale`] when it did not commit; `lost` itself when that
    /// cannot be told.
    async fn after_losing(
        &self,
        lost: StoreError,
        backend: (i32, DateTime<Utc>),
        plan: &AppendPlan,
    ) -> Result<(), StoreError> {
        let first = plan.rows[0].event_id;
        match committed_after_all(&self.pool, backend, first).await {
            Ok(true) => {
                tracing::info!(%lost, "an append whose connection was lost had committed");
                Ok(())
            }
            Ok(false) => Err(StoreError::Stale(format!(
                "the connection was lost before the append committed: {lost}"
            ))),
            Err(error) => {
                tracing::warn!(%error, %lost, "whether a lost append committed is not known");
                Err(lost)
            }
        }
    }
}

fn reads_nothing() -> StoreError {
    StoreError::Stale("a presumed append reads nothing from the database".to_owned())
}

#[async_trait]
impl AppendSession for PresumedSession {
    #[tracing::instrument(name = "bondledger.store.presumed.append", skip_all, fields(stream = %stream, events = events.len()))]
    async fn append(
        &mut self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Appended>, StoreError> {
        append_in(&mut *self, stream, expected, events).await
    }

    #[tracing::instrument(name = "bondledger.store.presumed.append_runs", skip_all, fields(runs = runs.len()))]
    async fn append_prepared(
        &mut self,
        runs: PreparedRuns,
    ) -> Result<Vec<Vec<Appended>>, StoreError> {
        append_prepared_in(&mut *self, runs).await
    }

    async fn find_by_caller_ids(
        &mut self,
        _caller_ids: &[String],
    ) -> Result<Vec<StoredEvent>, StoreError> {
        Err(reads_nothing())
    }

    async fn stream_versions(&mut self, _streams: &[&str]) -> Result<Vec<i64>, StoreError> {
        Err(reads_nothing())
    }

    async fn head_position(&mut self) -> Result<i64, StoreError> {
        Err(reads_nothing())
    }

    /// The streams' versions as last known, and no event held for any of
    /// `caller_ids`: presumed, and checked by the write.
    async fn lock_and_look_up(
        &mut self,
        caller_ids: &[String],
        streams: &[&str],
    ) -> Result<(Vec<StoredEvent>, Vec<i64>), StoreError> {
        lock_and_look_up_in(self, caller_ids, streams).await
    }

    async fn restore(&mut self, _events: Vec<StoredEvent>) -> Result<Vec<Appended>, StoreError> {
        Err(StoreError::Stale(
            "a restore checks the ledger under the lock".to_owned(),
        ))
    }

    /// The write committed already: what it leaves is now what this process knows.
    async fn commit(self: Box<Self>) -> Result<(), StoreError> {
        if let (true, Some(kept)) = (self.written, self.kept) {
            lock(&self.last_known).committed(kept);
        }
        Ok(())
    }

    async fn rollback(self: Box<Self>) -> Result<(), StoreError> {
        Ok(())
    }
}

#[async_trait]
impl WriteTransaction for PresumedSession {
    async fn lock_ledger_head(&mut self) -> Result<LedgerHead, StoreError> {
        Err(reads_nothing())
    }

    async fn rows_by_caller_ids(
        &mut self,
        _caller_ids: &[String],
    ) -> Result<Vec<EventRow>, StoreError> {
        Err(reads_nothing())
    }

    async fn stream_heads(&mut self, _streams: &[&str]) -> Result<Vec<StreamHead>, StoreError> {
        Err(reads_nothing())
    }

    /// Ids not held; the ledger head and the heads of `streams` as last known.
    async fn read_under_lock(
        &mut self,
        _caller_ids: &[String],
        streams: &[&str],
    ) -> Result<AppendReads, StoreError> {
        lock(&self.last_known).presume(&mut self.presumed_at, streams)
    }

    fn kept_reads(&mut self) -> &mut Option<KeptReads> {
        &mut self.kept
    }

    /// One statement, committed as it ends (see
    /// [`PresumedSession::write_on_connection`]).
    async fn write_plan(&mut self, plan: &mut AppendPlan) -> Result<(), StoreError> {
        let last = plan.last().position;
        if self.written {
            return Err(StoreError::Stale(
                "a presumed append writes once".to_owned(),
            ));
        }
        if plan.rows.len() > INSERT_ROWS_PER_STATEMENT {
            return Err(StoreError::Stale(format!(
                "{} events are more than one statement writes",
                plan.rows.len()
            )));
        }
        if last >= self.partitions.end.load(Ordering::Relaxed) {
            return Err(StoreError::Stale(format!(
                "position {last} needs a partition made first"
            )));
        }
        self.write_on_connection(plan).await?;
        self.written = true;
        self.partitions.head.fetch_max(last, Ordering::Relaxed);
        Ok(())
    }
}
