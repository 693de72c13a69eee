//! The PostgreSQL backend. Appends serialize on the one-row `ledger_head` table
//! (docs/adr/0001-serialized-appends.md); reads run concurrently at READ COMMITTED.
//! The event log is partitioned by position (docs/adr/0003-partitioning.md): an
//! append makes sure the partitions for its positions exist before it writes.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow, Postgres};
use sqlx::{Row, Transaction};
use uuid::Uuid;

use crate::append::{
    refused_commit, AppendPlan, AppendReads, KeptReads, LastKnown, LedgerHead, StreamHead,
    StreamMove, WriteTransaction,
};
use crate::event::{into_stored_events, EventRow, REPLAY_LOG_PAGE, REPLAY_STREAM_PAGE};
use crate::store::page_size;
use crate::verify::{verify_ledger, verify_stream};
use crate::{AppendSession, Backend, ChainBreak, EventStore, ReplayEvent, StoreError, StoredEvent};

mod copy;
mod presumed;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

const MAX_CONNECTIONS: u32 = 16;
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);
/// SQLSTATE of a table that does not exist (yet, on a replica).
const UNDEFINED_TABLE: &str = "42P01";
const REPLICA_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(1);
/// Rows per INSERT … SELECT FROM UNNEST: bounds one statement's size, not the append's.
const INSERT_ROWS_PER_STATEMENT: usize = 10_000;
const CALLER_IDS_PER_STATEMENT: usize = 10_000;
/// Streams whose heads one statement reads or moves at most.
const STREAMS_PER_STATEMENT: usize = 10_000;

/// READ COMMITTED whatever the server's default: after waiting for the ledger_head lock,
/// each statement must see what the previous appender committed. (Generic plans,
/// `plan_cache_mode = force_generic_plan`, were tried for the small appends' sake and
/// left out: planned while a table is small, a generic plan scans it whole, and the
/// statements of one large import then cost more with every chunk.)
const BEGIN_APPEND: &str = "BEGIN ISOLATION LEVEL READ COMMITTED";
const BEGIN_SNAPSHOT: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";

/// How long making the next partition ahead of need waits for the locks it takes
/// (the partitioned tables, exclusively, for a moment): a long read in the way does
/// not hold up the reads and appends queued behind it for longer than this.
const PARTITION_AHEAD_LOCK_TIMEOUT: &str = "SET LOCAL lock_timeout = '200ms'";
/// After making a partition ahead failed, appends do not try again for this long.
const PARTITION_AHEAD_RETRY: Duration = Duration::from_secs(10);

const EVENT_COLUMNS: &str =
    "position, event_id, caller_id, stream, version, event_type, schema_version, \
                             payload, metadata, business_date, recorded_at, hash";

pub(crate) struct PostgresStore {
    pool: PgPool,
    /// What this process knows of the event partitions; none on a replica,
    /// which takes no appends.
    partitions: Option<Arc<Partitions>>,
    /// A replica's: to tell why no connection could be made when the pool
    /// only says it waited in vain.
    replica_options: Option<PgConnectOptions>,
    /// What this process's appends left the ledger as: what a presumed append plans on.
    last_known: Arc<Mutex<LastKnown>>,
    /// The connection presumed appends are written on.
    appender: presumed::HeldConnection,
}

/// What this process knows of the event log's partitions. Both positions only ever
/// grow, and both are hints: a stale one (another process appended, or made
/// partitions) only sends an append to `bondledger_ensure_event_partitions`, which
/// reads the truth under its own lock.
struct Partitions {
    /// Positions a new partition holds (`event_partitioning.width`).
    width: i64,
    /// The first position with no partition yet.
    end: AtomicI64,
    /// The highest position this process has seen written.
    head: AtomicI64,
    /// No partition is made ahead before this moment (set when an attempt failed).
    quiet_until: Mutex<Option<Instant>>,
}

impl Partitions {
    async fn read(pool: &PgPool) -> Result<Self, StoreError> {
        let row = sqlx::query(
            "SELECT p.width, p.partitions_end, h.position FROM event_partitioning p, ledger_head h \
             WHERE p.id = 1 AND h.id = 1",
        )
        .fetch_one(pool)
        .await?;
        let width: i64 = row.try_get("width")?;
        if width < 1 {
            return Err(StoreError::Integrity(format!(
                "event partitions of {width} positions"
            )));
        }
        Ok(Self {
            width,
            end: AtomicI64::new(row.try_get("partitions_end")?),
            head: AtomicI64::new(row.try_get("position")?),
            quiet_until: Mutex::new(None),
        })
    }

    /// Whether the partition after the head's is still to be made, and now is a time to try.
    fn short_of_spare(&self) -> bool {
        let short =
            self.head.load(Ordering::Relaxed) + self.width >= self.end.load(Ordering::Relaxed);
        short
            && !self
                .quiet_until()
                .is_some_and(|until| Instant::now() < until)
    }

    fn quiet_until(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        lock(&self.quiet_until)
    }

    /// Makes partitions up to `upto` (with `connection`'s transaction, if it is in one).
    async fn ensure(&self, connection: &mut PgConnection, upto: i64) -> Result<(), StoreError> {
        let end: i64 = sqlx::query_scalar("SELECT bondledger_ensure_event_partitions($1)")
            .bind(upto)
            .fetch_one(&mut *connection)
            .await?;
        if end <= upto {
            return Err(StoreError::Integrity(format!(
                "position {upto} has no partition after making them (they end at {end})"
            )));
        }
        self.end.fetch_max(end, Ordering::Relaxed);
        Ok(())
    }

    /// Makes the partition after the head's when it is still to be made (see
    /// [`Partitions::short_of_spare`]), in a short transaction of its own, so
    /// that appends find their partitions made and no append transaction holds the
    /// exclusive locks that making one takes. The function takes the append lock
    /// first (an append holds the partitioned tables, which a new partition locks);
    /// here it is taken without waiting: when an append holds it, or the tables stay
    /// busy, this gives up, and the append that needs the partition makes it.
    async fn make_spare_when_short(&self, pool: &PgPool) {
        if !self.short_of_spare() {
            return;
        }
        let upto = self.head.load(Ordering::Relaxed) + self.width;
        let outcome: Result<bool, StoreError> = async {
            let mut transaction = pool.begin_with(BEGIN_APPEND).await?;
            sqlx::query(PARTITION_AHEAD_LOCK_TIMEOUT)
                .execute(&mut *transaction)
                .await?;
            let locked =
                sqlx::query("SELECT 1 FROM ledger_head WHERE id = 1 FOR UPDATE SKIP LOCKED")
                    .fetch_optional(&mut *transaction)
                    .await?;
            if locked.is_none() {
                return Ok(false);
            }
            self.ensure(&mut transaction, upto).await?;
            transaction.commit().await?;
            Ok(true)
        }
        .await;
        match outcome {
            Ok(true) => {}
            Ok(false) => *self.quiet_until() = Some(Instant::now() + PARTITION_AHEAD_RETRY),
            Err(error) => {
                *self.quiet_until() = Some(Instant::now() + PARTITION_AHEAD_RETRY);
                tracing::warn!(%error, upto, "the next event partition was not made ahead of need");
            }
        }
    }

    /// Called under the append lock, before `rows` are written.
    async fn ensure_for(
        &self,
        connection: &mut PgConnection,
        last_position: i64,
    ) -> Result<(), StoreError> {
        self.head.fetch_max(last_position, Ordering::Relaxed);
        if last_position < self.end.load(Ordering::Relaxed) {
            return Ok(());
        }
        self.ensure(connection, last_position).await
    }
}

impl PostgresStore {
    pub(crate) async fn connect(url: &str) -> Result<Self, StoreError> {
        // The server's synchronous_commit (on by default) is left as it is: durable by default.
        let options = PgConnectOptions::from_str(url)
            .map_err(|error| StoreError::InvalidUrl(error.to_string()))?;
        let pool = pool_options(ACQUIRE_TIMEOUT).connect_with(options).await?;
        MIGRATOR.run(&pool).await?;
        let partitions = Arc::new(Partitions::read(&pool).await?);
        Ok(Self {
            pool,
            partitions: Some(partitions),
            replica_options: None,
            last_known: Arc::default(),
            appender: Arc::default(),
        })
    }

    /// A replica's pool: every transaction read-only, no migration, no
    /// connection made before the first read, and a short wait for one, so
    /// that a replica that is down is found quickly and read around.
    pub(crate) fn connect_read_only(url: &str) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|error| StoreError::InvalidUrl(error.to_string()))?
            .options([("default_transaction_read_only", "on")]);
        let pool = pool_options(REPLICA_ACQUIRE_TIMEOUT).connect_lazy_with(options.clone());
        Ok(Self {
            pool,
            partitions: None,
            replica_options: Some(options),
            last_known: Arc::default(),
            appender: Arc::default(),
        })
    }

    /// A connection of the pool; for a replica that cannot be reached, the
    /// error of one attempt to connect (refused, no such host, …) rather
    /// than the pool's "timed out".
    async fn connection(&self) -> Result<sqlx::pool::PoolConnection<Postgres>, StoreError> {
        match (self.pool.acquire().await, &self.replica_options) {
            (Err(sqlx::Error::PoolTimedOut), Some(options)) => {
                use sqlx::ConnectOptions as _;
                match tokio::time::timeout(REPLICA_ACQUIRE_TIMEOUT, options.connect()).await {
                    Ok(Err(error)) => Err(error.into()),
                    _ => Err(sqlx::Error::PoolTimedOut.into()),
                }
            }
            (connection, _) => Ok(connection?),
        }
    }
}

/// The pool's settings. sqlx pings each connection before it hands it out: one round
/// trip more for every append and read, but a connection the server dropped (killed,
/// restarted) is found and replaced there instead of failing the caller's statement.
/// Pinging only connections idle a while was tried: a read right after connections were
/// killed under load then failed once per dead connection (`tests/faults.rs`).
fn pool_options(acquire_timeout: Duration) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(MAX_CONNECTIONS)
        .acquire_timeout(acquire_timeout)
        .test_before_acquire(true)
}

/// What a mutex guards here is changed in one call that cannot panic halfway, so
/// what a panicking holder left behind is still sound.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(crate) fn schema_version() -> i64 {
    MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
}

#[async_trait]
impl EventStore for PostgresStore {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    #[tracing::instrument(name = "bondledger.store.begin", skip_all)]
    async fn begin(&self) -> Result<Box<dyn AppendSession>, StoreError> {
        let Some(partitions) = &self.partitions else {
            return Err(StoreError::InvalidInput(
                "a read replica takes no appends; append to the primary".into(),
            ));
        };
        partitions.make_spare_when_short(&self.pool).await;
        let transaction = self.pool.begin_with(BEGIN_APPEND).await?;
        Ok(Box::new(PostgresSession {
            transaction,
            partitions: Arc::clone(partitions),
            poisoned: false,
            written: 0,
            pool: self.pool.clone(),
            kept: None,
            last_known: Arc::clone(&self.last_known),
            holds_lock: false,
            rows_written: HashSet::new(),
            deferred: HashMap::new(),
        }))
    }

    async fn begin_presumed(&self) -> Option<Box<dyn AppendSession>> {
        let partitions = self.partitions.as_ref()?;
        if !lock(&self.last_known).knows_head() {
            return None;
        }
        partitions.make_spare_when_short(&self.pool).await;
        Some(Box::new(presumed::PresumedSession::new(
            &self.pool,
            &self.appender,
            partitions,
            &self.last_known,
        )))
    }

    #[tracing::instrument(name = "bondledger.store.read_stream", skip(self))]
    async fn read_stream(
        &self,
        stream: &str,
        from_version: i64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let mut connection = self.pool.acquire().await?;
        let rows = select_stream(&mut connection, stream, from_version, page_size(limit)).await?;
        into_stored_events(rows)
    }

    #[tracing::instrument(name = "bondledger.store.read_all", skip(self))]
    async fn read_all(
        &self,
        after_position: i64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let mut connection = self.pool.acquire().await?;
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
        let mut connection = self.pool.acquire().await?;
        let rows = sqlx::query(REPLAY_STREAM_PAGE)
            .bind(stream)
            .bind(from_version)
            .bind(page_size(limit))
            .fetch_all(&mut *connection)
            .await?;
        rows.iter().map(decode_replay_event).collect()
    }

    #[tracing::instrument(name = "bondledger.store.read_all_for_replay", skip(self))]
    async fn read_all_for_replay(
        &self,
        after_position: i64,
        limit: usize,
    ) -> Result<Vec<ReplayEvent>, StoreError> {
        let mut connection = self.pool.acquire().await?;
        let rows = sqlx::query(REPLAY_LOG_PAGE)
            .bind(after_position)
            .bind(page_size(limit))
            .fetch_all(&mut *connection)
            .await?;
        rows.iter().map(decode_replay_event).collect()
    }

    #[tracing::instrument(name = "bondledger.store.stream_version", skip(self))]
    async fn stream_version(&self, stream: &str) -> Result<i64, StoreError> {
        let mut connection = self.pool.acquire().await?;
        Ok(select_stream_head(&mut connection, stream).await?.version)
    }

    #[tracing::instrument(name = "bondledger.store.head_position", skip(self))]
    async fn head_position(&self) -> Result<i64, StoreError> {
        let mut connection = self.pool.acquire().await?;
        Ok(select_ledger_head(&mut connection, false).await?.position)
    }

    #[tracing::instrument(name = "bondledger.store.log_mark", skip(self))]
    async fn log_mark(&self) -> Result<crate::LogMark, StoreError> {
        let mut connection = self.connection().await?;
        // On a primary, the log written so far: a commit is in it once
        // committed. On a replica, what it has replayed, and when the last
        // transaction it replayed committed.
        let row = sqlx::query(
            "SELECT pg_is_in_recovery() AS is_replica, \
                    (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() \
                          ELSE pg_current_wal_lsn() END)::text AS wal, \
                    pg_last_xact_replay_timestamp() AS replayed_commit_at",
        )
        .fetch_one(&mut *connection)
        .await?;
        // A replica that has not replayed the ledger's schema yet holds no
        // event and no migration.
        let ledger = sqlx::query(
            "SELECT (SELECT position FROM ledger_head WHERE id = 1) AS position, \
                    (SELECT max(version) FROM _sqlx_migrations WHERE success) AS schema_version",
        )
        .fetch_one(&mut *connection)
        .await;
        let (position, schema_version) = match ledger {
            Ok(ledger) => (
                ledger.try_get("position")?,
                ledger.try_get("schema_version")?,
            ),
            Err(sqlx::Error::Database(error))
                if error.code().as_deref() == Some(UNDEFINED_TABLE) =>
            {
                (0, 0)
            }
            Err(error) => return Err(error.into()),
        };
        let wal: Option<String> = row.try_get("wal")?;
        Ok(crate::LogMark {
            wal: wal.map(|text| text.parse()).transpose()?,
            ledger_position: position,
            is_replica: row.try_get("is_replica")?,
            replayed_commit_at: row.try_get("replayed_commit_at")?,
            schema_version,
        })
    }

    #[tracing::instrument(name = "bondledger.store.find_by_caller_ids", skip_all, fields(ids = caller_ids.len()))]
    async fn find_by_caller_ids(
        &self,
        caller_ids: &[String],
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let mut connection = self.pool.acquire().await?;
        into_stored_events(select_by_caller_ids(&mut connection, caller_ids).await?)
    }

    #[tracing::instrument(name = "bondledger.store.verify_chain", skip(self, progress))]
    async fn verify_chain_reporting(
        &self,
        stream: Option<&str>,
        progress: &mut (dyn FnMut(i64) + Send),
    ) -> Result<Vec<ChainBreak>, StoreError> {
        // One snapshot, so appends meanwhile cannot look like breaks.
        let mut transaction = self.pool.begin_with(BEGIN_SNAPSHOT).await?;
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

struct PostgresSession {
    transaction: Transaction<'static, Postgres>,
    partitions: Arc<Partitions>,
    /// Set when an append failed after it may have written: the session can only roll back.
    poisoned: bool,
    /// Events this session wrote, and where to refresh the planner's statistics after
    /// a commit of many.
    written: usize,
    pool: PgPool,
    /// What was read under the append lock, as this session's writes since leave it.
    kept: Option<KeptReads>,
    /// Told what was kept once the session commits.
    last_known: Arc<Mutex<LastKnown>>,
    /// Whether the session holds the ledger head's row lock (from its first
    /// write or its locked read on): no other append can then move a stream.
    holds_lock: bool,
    /// The streams whose rows this session has written (begun or moved).
    rows_written: HashSet<String>,
    /// Where the session's later writes left the streams it had written
    /// already, written to `streams` once more, at commit. Each update of a
    /// row leaves a version the transaction cannot prune; a bulk import
    /// moving thousands of streams a chunk made every look-up of a stream walk
    /// hundreds of them (a 1M import over 2,000 manuals ran at 6k movements/s).
    /// A session writing each stream once (a group commit) defers nothing.
    deferred: HashMap<String, StreamHead>,
}

impl PostgresSession {
    /// `heads` of `streams`, as read, moved on to where this session's
    /// deferred writes left them.
    fn with_deferred(&self, streams: &[&str], mut heads: Vec<StreamHead>) -> Vec<StreamHead> {
        for (stream, head) in streams.iter().zip(heads.iter_mut()) {
            if let Some(deferred) = self.deferred.get(*stream) {
                *head = deferred.clone();
            }
        }
        heads
    }

    /// Writes the deferred stream heads.
    async fn write_deferred(&mut self) -> Result<(), StoreError> {
        if self.deferred.is_empty() {
            return Ok(());
        }
        let (mut streams, mut versions, mut hashes) = (Vec::new(), Vec::new(), Vec::new());
        for (stream, head) in &self.deferred {
            streams.push(stream.as_str());
            versions.push(head.version);
            hashes.push(head.hash.as_deref());
        }
        let moved = sqlx::query(
            "UPDATE streams AS s SET version = m.version, head_hash = m.hash \
             FROM UNNEST($1::text[], $2::bigint[], $3::text[]) AS m (stream, version, hash) \
             WHERE s.stream = m.stream",
        )
        .bind(&streams)
        .bind(&versions)
        .bind(&hashes)
        .execute(&mut *self.transaction)
        .await?
        .rows_affected();
        if moved != streams.len() as u64 {
            return Err(StoreError::Integrity(format!(
                "{moved} of the {} streams this session moved were found to move",
                streams.len()
            )));
        }
        Ok(())
    }
}

/// After a commit of at least this many events the planner's statistics of the event
/// tables are refreshed at once. Until autovacuum gets to them, a bulk import leaves
/// estimates of an almost empty table: a replay's page query then reads and sorts the
/// whole rest of the stream for every page (a cold verify of a 1M-event manual took
/// 8 s instead of 2.2 s).
const ANALYZE_AFTER_EVENTS: usize = 10_000;

crate::append::impl_locked_append_session!(PostgresSession, {
    #[tracing::instrument(name = "bondledger.store.session.commit", skip_all)]
    async fn commit(mut self: Box<Self>) -> Result<(), StoreError> {
        if self.poisoned {
            self.transaction.rollback().await?;
            return Err(refused_commit());
        }
        self.write_deferred().await?;
        self.transaction.commit().await?;
        if let Some(kept) = self.kept {
            lock(&self.last_known).committed(kept);
        }
        if self.written >= ANALYZE_AFTER_EVENTS {
            // Statistics only steer plans: the commit stands whatever happens here.
            if let Err(error) = sqlx::query("ANALYZE events, event_keys, streams")
                .execute(&self.pool)
                .await
            {
                tracing::warn!(%error, "statistics not refreshed after a bulk append");
            }
        }
        Ok(())
    }

    #[tracing::instrument(name = "bondledger.store.session.rollback", skip_all)]
    async fn rollback(self: Box<Self>) -> Result<(), StoreError> {
        Ok(self.transaction.rollback().await?)
    }
});

#[async_trait]
impl WriteTransaction for PostgresSession {
    async fn lock_ledger_head(&mut self) -> Result<LedgerHead, StoreError> {
        // The row lock is held until commit or rollback. PostgreSQL makes a commit visible
        // before it releases the transaction's locks, so the next appender's positions are
        // visible only after these are.
        let head = select_ledger_head(&mut self.transaction, true).await?;
        self.holds_lock = true;
        Ok(head)
    }

    async fn rows_by_caller_ids(
        &mut self,
        caller_ids: &[String],
    ) -> Result<Vec<EventRow>, StoreError> {
        select_by_caller_ids(&mut self.transaction, caller_ids).await
    }

    async fn stream_heads(&mut self, streams: &[&str]) -> Result<Vec<StreamHead>, StoreError> {
        let heads = select_stream_heads(&mut self.transaction, streams).await?;
        Ok(self.with_deferred(streams, heads))
    }

    async fn read_under_lock(
        &mut self,
        caller_ids: &[String],
        streams: &[&str],
    ) -> Result<AppendReads, StoreError> {
        let mut reads = select_append_reads(&mut self.transaction, caller_ids, streams).await?;
        self.holds_lock = true;
        reads.heads = self.with_deferred(streams, reads.heads);
        Ok(reads)
    }

    fn kept_reads(&mut self) -> &mut Option<KeptReads> {
        &mut self.kept
    }

    async fn write_plan(&mut self, plan: &mut AppendPlan) -> Result<(), StoreError> {
        self.partitions
            .ensure_for(&mut self.transaction, plan.last().position)
            .await?;
        let copied = plan.rows.len() >= copy::COPY_FROM_ROWS;
        // Under the lock, the streams whose rows this session wrote already
        // are moved in memory; the others by the statement.
        let defer = |stream: &str| self.holds_lock && self.rows_written.contains(stream);
        let deferred: Vec<&StreamMove> = plan
            .streams
            .iter()
            .filter(|moved| moved.previous_version > 0 && defer(&moved.stream))
            .collect();
        write_plan(&mut self.transaction, plan, copied, &defer)
            .await
            .map_err(|error| match is_not_as_planned(&error) {
                // Under the lock nobody else moves them.
                true => StoreError::Integrity(format!(
                    "heads moved while the ledger was locked: {error}"
                )),
                false => error,
            })?;
        self.written += plan.rows.len();
        for moved in deferred {
            self.deferred.insert(
                moved.stream.clone(),
                StreamHead {
                    version: moved.version,
                    hash: Some(moved.hash.clone()),
                },
            );
        }
        for moved in &plan.streams {
            if !self.rows_written.contains(&moved.stream) {
                self.rows_written.insert(moved.stream.clone());
            }
        }
        // The statement took the ledger head's row lock, if it was not held.
        self.holds_lock = true;
        Ok(())
    }
}

/// The ledger head, locked, then the events of `caller_ids` and the heads of `streams`
/// (in the order asked), in one round trip (migration 0008).
async fn select_append_reads(
    connection: &mut PgConnection,
    caller_ids: &[String],
    streams: &[&str],
) -> Result<AppendReads, StoreError> {
    let rows = sqlx::query("SELECT * FROM bondledger_append_reads($1::text[], $2::text[])")
        .bind(caller_ids)
        .bind(streams)
        .fetch_all(&mut *connection)
        .await?;
    let mut ledger_head = None;
    let mut held = Vec::new();
    let mut found: HashMap<String, StreamHead> = HashMap::with_capacity(streams.len());
    for row in &rows {
        match row.try_get::<&str, _>("kind")? {
            "head" => {
                ledger_head = Some(LedgerHead {
                    position: row.try_get("position")?,
                    recorded_at: row.try_get("recorded_at")?,
                })
            }
            "event" => held.push(decode_event(row)?),
            "stream" => {
                let head = StreamHead {
                    version: row.try_get("version")?,
                    hash: Some(row.try_get("hash")?),
                };
                found.insert(row.try_get("stream")?, head);
            }
            other => {
                return Err(StoreError::Integrity(format!(
                    "the append's reads returned a row of kind {other:?}"
                )))
            }
        }
    }
    let ledger_head = ledger_head
        .ok_or_else(|| StoreError::Integrity("the ledger head row is missing".to_owned()))?;
    held.sort_by_key(|row| row.position);
    Ok(AppendReads {
        ledger_head,
        held,
        heads: heads_in_order(streams, &found),
    })
}

async fn select_stream(
    connection: &mut PgConnection,
    stream: &str,
    from_version: i64,
    limit: i64,
) -> Result<Vec<EventRow>, StoreError> {
    let sql =
        format!("SELECT {EVENT_COLUMNS} FROM events WHERE stream = $1 AND version >= $2 ORDER BY version LIMIT $3");
    let rows = sqlx::query(&sql)
        .bind(stream)
        .bind(from_version)
        .bind(limit)
        .fetch_all(&mut *connection)
        .await?;
    rows.iter().map(decode_event).collect()
}

async fn select_all(
    connection: &mut PgConnection,
    after_position: i64,
    limit: i64,
) -> Result<Vec<EventRow>, StoreError> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE position > $1 ORDER BY position LIMIT $2"
    );
    let rows = sqlx::query(&sql)
        .bind(after_position)
        .bind(limit)
        .fetch_all(&mut *connection)
        .await?;
    rows.iter().map(decode_event).collect()
}

async fn select_by_caller_ids(
    connection: &mut PgConnection,
    caller_ids: &[String],
) -> Result<Vec<EventRow>, StoreError> {
    // The keys first, alone: most ids an append looks up are new, and planning a join with
    // every partition of `events` costs several times what the probe of `event_keys` does.
    // The events of the ids found are then read by position, each from its partition.
    let mut positions: Vec<i64> = Vec::new();
    for chunk in caller_ids.chunks(CALLER_IDS_PER_STATEMENT) {
        let found: Vec<i64> =
            sqlx::query_scalar("SELECT position FROM event_keys WHERE caller_id = ANY($1::text[])")
                .bind(chunk)
                .fetch_all(&mut *connection)
                .await?;
        positions.extend(found);
    }
    positions.sort_unstable();
    positions.dedup();
    let sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE position = ANY($1::bigint[])");
    let mut found = Vec::with_capacity(positions.len());
    for chunk in positions.chunks(CALLER_IDS_PER_STATEMENT) {
        let rows = sqlx::query(&sql)
            .bind(chunk)
            .fetch_all(&mut *connection)
            .await?;
        for row in &rows {
            found.push(decode_event(row)?);
        }
    }
    found.sort_by_key(|row| row.position);
    Ok(found)
}

async fn select_stream_head(
    connection: &mut PgConnection,
    stream: &str,
) -> Result<StreamHead, StoreError> {
    let row = sqlx::query("SELECT version, head_hash FROM streams WHERE stream = $1")
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

/// The heads of `streams` in the order asked, a statement for up to
/// [`STREAMS_PER_STATEMENT`] of them.
async fn select_stream_heads(
    connection: &mut PgConnection,
    streams: &[&str],
) -> Result<Vec<StreamHead>, StoreError> {
    let mut found: HashMap<String, StreamHead> = HashMap::with_capacity(streams.len());
    for chunk in streams.chunks(STREAMS_PER_STATEMENT) {
        let rows = sqlx::query(
            "SELECT stream, version, head_hash FROM streams WHERE stream = ANY($1::text[])",
        )
        .bind(chunk)
        .fetch_all(&mut *connection)
        .await?;
        for row in &rows {
            let head = StreamHead {
                version: row.try_get("version")?,
                hash: Some(row.try_get("head_hash")?),
            };
            found.insert(row.try_get("stream")?, head);
        }
    }
    Ok(heads_in_order(streams, &found))
}

/// The heads of `streams` in the order asked, from those `found`: version 0 and no
/// hash for a stream not begun.
fn heads_in_order(streams: &[&str], found: &HashMap<String, StreamHead>) -> Vec<StreamHead> {
    streams
        .iter()
        .map(|stream| {
            found.get(*stream).cloned().unwrap_or(StreamHead {
                version: 0,
                hash: None,
            })
        })
        .collect()
}

async fn select_ledger_head(
    connection: &mut PgConnection,
    lock: bool,
) -> Result<LedgerHead, StoreError> {
    let sql = if lock {
        "SELECT position, recorded_at FROM ledger_head WHERE id = 1 FOR UPDATE"
    } else {
        "SELECT position, recorded_at FROM ledger_head WHERE id = 1"
    };
    let row = sqlx::query(sql).fetch_one(&mut *connection).await?;
    Ok(LedgerHead {
        position: row.try_get("position")?,
        recorded_at: row.try_get("recorded_at")?,
    })
}

/// The plan in as few statements as its size allows: the first writes the stream heads,
/// the ledger head and the first [`INSERT_ROWS_PER_STATEMENT`] events (a small append is
/// one round trip); each further one more events. The first refuses itself, writing
/// nothing, unless the ledger head and the streams stood where the plan says
/// ([`is_not_as_planned`]). When `copied` (a large append under the lock), the first
/// writes the heads alone and the rows are copied after it (see `copy`). The heads of
/// the streams `deferred` names are left for the session to write at commit.
async fn write_plan(
    connection: &mut PgConnection,
    plan: &AppendPlan,
    copied: bool,
    deferred: &(dyn Fn(&str) -> bool + Sync),
) -> Result<(), StoreError> {
    let last = plan.last();
    let (created, mut moved): (Vec<&StreamMove>, Vec<&StreamMove>) = plan
        .streams
        .iter()
        .partition(|moved| moved.previous_version == 0);
    moved.retain(|moved| !deferred(&moved.stream));
    let mut chunks = plan.rows.chunks(INSERT_ROWS_PER_STATEMENT);
    // Copied rows go in after the statement has moved the heads on (the
    // streams they name are then held).
    let first = match copied {
        true => &[],
        false => chunks
            .next()
            .unwrap_or_else(|| unreachable!("a plan is written with rows")),
    };
    let columns = EventColumns::of(first);
    columns
        .bind(sqlx::query(WRITE_FIRST_STATEMENT))
        .bind(
            created
                .iter()
                .map(|m| m.stream.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(created.iter().map(|m| m.version).collect::<Vec<_>>())
        .bind(created.iter().map(|m| m.hash.as_str()).collect::<Vec<_>>())
        .bind(moved.iter().map(|m| m.stream.as_str()).collect::<Vec<_>>())
        .bind(moved.iter().map(|m| m.version).collect::<Vec<_>>())
        .bind(moved.iter().map(|m| m.hash.as_str()).collect::<Vec<_>>())
        .bind(moved.iter().map(|m| m.previous_version).collect::<Vec<_>>())
        .bind(last.position)
        .bind(last.recorded_at)
        .bind(plan.previous_position)
        .bind(moved.len() as i64)
        .execute(&mut *connection)
        .await?;
    if copied {
        return copy::copy_rows(connection, &plan.rows).await;
    }
    for chunk in chunks {
        EventColumns::of(chunk)
            .bind(sqlx::query(INSERT_EVENTS_STATEMENT))
            .execute(&mut *connection)
            .await?;
    }
    Ok(())
}

/// SQLSTATE `bondledger_append_stands` (migration 0009) raises when the ledger head or a
/// stream was not where an append planned from.
const NOT_AS_PLANNED: &str = "BL409";

/// Whether `error` is the first statement of [`write_plan`] refusing itself: the ledger
/// head or a stream was not where the plan says, and nothing of the statement stands.
fn is_not_as_planned(error: &StoreError) -> bool {
    matches!(
        error,
        StoreError::Database(sqlx::Error::Database(database))
            if database.code().is_some_and(|code| code == NOT_AS_PLANNED)
    )
}

/// The events of a statement's rows as its first twelve parameters: UNNEST turns them
/// into rows (those for which `$gate` holds), which go to the events and their ids to
/// `event_keys`, where a taken event or caller id is refused.
macro_rules! events_from_parameters {
    ($gate:literal) => {
        concat!(
            "rows AS ( \
                 SELECT * FROM UNNEST($1::bigint[], $2::uuid[], $3::text[], $4::text[], $5::bigint[], \
                                      $6::text[], $7::integer[], $8::text[], $9::text[], $10::date[], \
                                      $11::timestamptz[], $12::text[]) \
                      AS rows (position, event_id, caller_id, stream, version, event_type, schema_version, \
                               payload, metadata, business_date, recorded_at, hash) ",
            $gate,
            " ), keys AS ( \
                 INSERT INTO event_keys (event_id, caller_id, position) \
                 SELECT event_id, caller_id, position FROM rows \
             )"
        )
    };
}

macro_rules! insert_events_from_rows {
    () => {
        "INSERT INTO events (position, event_id, caller_id, stream, version, event_type, schema_version, \
                             payload, metadata, business_date, recorded_at, hash) \
         SELECT position, event_id, caller_id, stream, version, event_type, schema_version, \
                payload, metadata, business_date, recorded_at, hash \
         FROM rows"
    };
}

const INSERT_EVENTS_STATEMENT: &str = concat!(
    "WITH ",
    events_from_parameters!(""),
    " ",
    insert_events_from_rows!()
);

/// Events as [`INSERT_EVENTS_STATEMENT`]; streams begun ($13–$15: stream, version,
/// hash) and moved on ($16–$19: stream, version, hash, the version it was at); the
/// ledger head to $20 and $21 from $22. Every write waits for `planned`: the ledger
/// head locked where it stands at $22 (under the lock already, or taking it here for a
/// presumed append), and nothing is written when it stands elsewhere.
/// `bondledger_append_stands` then raises unless the head and all $23 streams moved
/// on. Streams begun here are seen by the check that the events' streams are held,
/// which runs at the statement's end (migration 0007).
const WRITE_FIRST_STATEMENT: &str = concat!(
    "WITH planned AS ( \
         SELECT 1 FROM ledger_head WHERE id = 1 AND position = $22 FOR UPDATE \
     ), ",
    events_from_parameters!("WHERE EXISTS (SELECT FROM planned)"),
    ", created AS ( \
         INSERT INTO streams (stream, version, head_hash) \
         SELECT * FROM UNNEST($13::text[], $14::bigint[], $15::text[]) \
         WHERE EXISTS (SELECT FROM planned) \
     ), moved AS ( \
         UPDATE streams AS s SET version = m.version, head_hash = m.hash \
         FROM UNNEST($16::text[], $17::bigint[], $18::text[], $19::bigint[]) \
              AS m (stream, version, hash, previous) \
         WHERE s.stream = m.stream AND s.version = m.previous AND EXISTS (SELECT FROM planned) \
         RETURNING 1 \
     ), head AS ( \
         UPDATE ledger_head SET position = $20, recorded_at = $21 \
         WHERE id = 1 AND position = $22 AND EXISTS (SELECT FROM planned) \
         RETURNING 1 \
     ), inserted AS (",
    insert_events_from_rows!(),
    ") SELECT bondledger_append_stands((SELECT count(*) FROM head), (SELECT count(*) FROM moved), $23)"
);

/// The columns of some events, each an array.
struct EventColumns<'a> {
    positions: Vec<i64>,
    event_ids: Vec<Uuid>,
    caller_ids: Vec<Option<&'a str>>,
    streams: Vec<&'a str>,
    versions: Vec<i64>,
    event_types: Vec<&'a str>,
    schema_versions: Vec<i32>,
    payloads: Vec<&'a str>,
    metadata: Vec<&'a str>,
    business_dates: Vec<NaiveDate>,
    recorded_ats: Vec<DateTime<Utc>>,
    hashes: Vec<&'a str>,
}

impl<'a> EventColumns<'a> {
    fn of(rows: &'a [EventRow]) -> Self {
        EventColumns {
            positions: rows.iter().map(|row| row.position).collect(),
            event_ids: rows.iter().map(|row| row.event_id).collect(),
            caller_ids: rows.iter().map(|row| row.caller_id.as_deref()).collect(),
            streams: rows.iter().map(|row| row.stream.as_str()).collect(),
            versions: rows.iter().map(|row| row.version).collect(),
            event_types: rows.iter().map(|row| row.event_type.as_str()).collect(),
            schema_versions: rows.iter().map(|row| row.schema_version).collect(),
            payloads: rows.iter().map(|row| row.payload_json.as_str()).collect(),
            metadata: rows.iter().map(|row| row.metadata_json.as_str()).collect(),
            business_dates: rows.iter().map(|row| row.business_date).collect(),
            recorded_ats: rows.iter().map(|row| row.recorded_at).collect(),
            hashes: rows.iter().map(|row| row.hash.as_str()).collect(),
        }
    }

    /// `query` with these columns bound as its parameters $1 to $12.
    fn bind<'q>(
        self,
        query: sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>
    where
        'a: 'q,
    {
        query
            .bind(self.positions)
            .bind(self.event_ids)
            .bind(self.caller_ids)
            .bind(self.streams)
            .bind(self.versions)
            .bind(self.event_types)
            .bind(self.schema_versions)
            .bind(self.payloads)
            .bind(self.metadata)
            .bind(self.business_dates)
            .bind(self.recorded_ats)
            .bind(self.hashes)
    }
}

crate::verify::chain_reads!(PgConnection);

fn decode_event(row: &PgRow) -> Result<EventRow, StoreError> {
    Ok(EventRow {
        position: row.try_get("position")?,
        event_id: row.try_get::<Uuid, _>("event_id")?,
        caller_id: row.try_get("caller_id")?,
        stream: row.try_get("stream")?,
        version: row.try_get("version")?,
        event_type: row.try_get("event_type")?,
        schema_version: row.try_get("schema_version")?,
        payload_json: row.try_get("payload")?,
        metadata_json: row.try_get("metadata")?,
        business_date: row.try_get::<NaiveDate, _>("business_date")?,
        recorded_at: row.try_get::<DateTime<Utc>, _>("recorded_at")?,
        hash: row.try_get("hash")?,
    })
}

/// A row of [`REPLAY_STREAM_PAGE`] or [`REPLAY_LOG_PAGE`], read by index.
fn decode_replay_event(row: &PgRow) -> Result<ReplayEvent, StoreError> {
    Ok(ReplayEvent {
        position: row.try_get(0)?,
        stream: row.try_get(1)?,
        version: row.try_get(2)?,
        caller_id: row.try_get(3)?,
        event_type: row.try_get(4)?,
        schema_version: row.try_get(5)?,
        business_date: row.try_get::<NaiveDate, _>(6)?,
        recorded_at: row.try_get::<DateTime<Utc>, _>(7)?,
        payload_json: row.try_get(8)?,
    })
}

impl PostgresStore {
    /// Inserts the key rows of blocks no earlier commit wrote into: copied
    /// when there are many, as appends copy their events.
    async fn insert_new_timeline_keys(
        tx: &mut Transaction<'static, Postgres>,
        keys: &[crate::readmodel::TimelineKeyRow<'_>],
    ) -> Result<(), StoreError> {
        if keys.len() < copy::COPY_FROM_ROWS {
            return Self::insert_timeline_keys(tx, keys, "").await;
        }
        copy::copy_new_timeline_keys(tx, keys).await
    }
}

crate::readmodel::impl_read_models!(
    PostgresStore,
    sqlx::Postgres,
    pool,
    pool,
    "BEGIN",
    BEGIN_SNAPSHOT,
    // A transaction-scoped advisory lock per projection: a second runner
    // (another process) waits, then finds the checkpoint moved.
    Some("SELECT pg_advisory_xact_lock(7310, hashtext($1))")
);
crate::tokens::impl_token_store!(
    PostgresStore,
    sqlx::Postgres,
    pool,
    pool,
    // Conflicts with itself: a second first-token insert waits, then sees the first.
    Some("LOCK TABLE access_tokens IN SHARE ROW EXCLUSIVE MODE")
);
