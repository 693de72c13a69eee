//! The two traits every backend implements.

use async_trait::async_trait;

use crate::{
    Appended, Backend, ChainBreak, ExpectedVersion, NewEvent, PreparedRuns, ReplayEvent,
    StoreError, StoredEvent, StreamAppend,
};

/// A read returns at most this many events, whatever limit it is given: a page, never
/// a whole history. A shorter page than asked for does not mean the end; an empty one does.
pub const MAX_PAGE_EVENTS: usize = 10_000;

/// The row count a read asks the database for.
pub(crate) fn page_size(limit: usize) -> i64 {
    // MAX_PAGE_EVENTS fits in an i64 whatever the platform.
    limit.min(MAX_PAGE_EVENTS) as i64
}

/// The ledger's event log.
///
/// Holding an [`AppendSession`] holds the ledger's append lock once it has appended
/// (on SQLite, from `begin`): do not append through the store itself while holding a
/// session in the same task, or the two wait on each other.
#[async_trait]
pub trait EventStore: crate::ReadModels + crate::TokenStore + Send + Sync {
    fn backend(&self) -> Backend;

    /// Opens an append transaction: any number of appends to any streams, all or nothing.
    async fn begin(&self) -> Result<Box<dyn AppendSession>, StoreError>;

    /// An append session that reads nothing: it plans on the ledger as this process's
    /// own commits left it (the ledger head, the heads of the streams they read or
    /// wrote) and takes every caller id for new. Its one write is its commit, one
    /// statement that first checks, under the append lock, that the ledger head is
    /// still where the plan says, so that an append costs one round trip. Where the
    /// ledger moved on, an id is held, or the append needs what is not known (another
    /// stream, an id's event, more than one statement), it fails with
    /// [`StoreError::Stale`] and nothing is written: append under the lock instead.
    ///
    /// Unlike a session of [`EventStore::begin`], one whose write succeeded has
    /// committed (rolling it back changes nothing), and any other error of its write
    /// may come after the commit, as a failed commit may. `None` where the backend
    /// has no round trip to save, or the process has not appended yet.
    async fn begin_presumed(&self) -> Option<Box<dyn AppendSession>> {
        None
    }

    /// One transaction for one stream.
    ///
    /// Events whose caller id the ledger already holds with the same content (stream,
    /// event type, business date, payload) are skipped and not returned; the same id with
    /// other content is [`StoreError::IdConflict`]. When every event is already held,
    /// nothing is written and `expected` is not checked, so a retried append succeeds.
    /// Otherwise a stale `expected` is [`StoreError::Conflict`] and nothing is written.
    #[tracing::instrument(name = "bondledger.store.append", skip_all, fields(stream = %stream, events = events.len()))]
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Appended>, StoreError> {
        let mut session = self.begin().await?;
        // On an error the session is dropped, which rolls it back.
        let appended = session.append(stream, expected, events).await?;
        session.commit().await?;
        Ok(appended)
    }

    /// The stream's events with versions `>= from_version`, ascending, at most `limit`
    /// (and at most [`MAX_PAGE_EVENTS`]).
    async fn read_stream(
        &self,
        stream: &str,
        from_version: i64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError>;

    /// The ledger's events with positions `> after_position`, ascending, at most `limit`
    /// (and at most [`MAX_PAGE_EVENTS`]). Positions are gapless and in commit order, so a
    /// follower that asks again after the last position it saw never misses an event.
    async fn read_all(
        &self,
        after_position: i64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError>;

    /// As [`EventStore::read_stream`], each event as a replay reads it: the
    /// payload left as text, no event id, metadata or hash.
    async fn read_stream_for_replay(
        &self,
        stream: &str,
        from_version: i64,
        limit: usize,
    ) -> Result<Vec<ReplayEvent>, StoreError>;

    /// As [`EventStore::read_all`], each event as a replay reads it.
    async fn read_all_for_replay(
        &self,
        after_position: i64,
        limit: usize,
    ) -> Result<Vec<ReplayEvent>, StoreError>;

    /// The stream's version: 0 when it does not exist.
    async fn stream_version(&self, stream: &str) -> Result<i64, StoreError>;

    /// The position of the ledger's last event: 0 when it is empty.
    async fn head_position(&self) -> Result<i64, StoreError>;

    /// Where the database stands now: its write-ahead log (on a replica, how
    /// far it has replayed), its last event and its schema, read at once.
    async fn log_mark(&self) -> Result<crate::LogMark, StoreError>;

    /// The events holding these caller ids, by position; ids not held are left out.
    async fn find_by_caller_ids(
        &self,
        caller_ids: &[String],
    ) -> Result<Vec<StoredEvent>, StoreError>;

    /// Re-checks the hash chain of one stream or of every stream; names the first break
    /// of each broken stream. Runs in one read snapshot.
    async fn verify_chain(&self, stream: Option<&str>) -> Result<Vec<ChainBreak>, StoreError> {
        self.verify_chain_reporting(stream, &mut |_| {}).await
    }

    /// As [`EventStore::verify_chain`], telling `progress` how far the check
    /// has got as each page is checked: the stream's version, or over every
    /// stream the ledger position.
    async fn verify_chain_reporting(
        &self,
        stream: Option<&str>,
        progress: &mut (dyn FnMut(i64) + Send),
    ) -> Result<Vec<ChainBreak>, StoreError>;
}

/// An open append transaction. Dropping it without `commit` rolls it back.
#[async_trait]
pub trait AppendSession: Send {
    /// As [`EventStore::append`], inside this transaction; ids appended earlier in this
    /// transaction count as held.
    async fn append(
        &mut self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Appended>, StoreError>;

    /// Several appends in order, as if each were [`AppendSession::append`]ed in turn
    /// (an id taken by an earlier run counts as held for a later one; a run's expected
    /// version is checked against the stream as the earlier runs leave it), with one
    /// look-up of caller ids and one write for all: the appended events of each run.
    /// On a conflict or a refused input nothing of them is written.
    async fn append_runs(
        &mut self,
        runs: Vec<StreamAppend>,
    ) -> Result<Vec<Vec<Appended>>, StoreError> {
        self.append_prepared(PreparedRuns::new(runs)?).await
    }

    /// As [`AppendSession::append_runs`], of runs made ready beforehand.
    async fn append_prepared(
        &mut self,
        runs: PreparedRuns,
    ) -> Result<Vec<Vec<Appended>>, StoreError>;

    /// Sees what this transaction appended so far too.
    async fn find_by_caller_ids(
        &mut self,
        caller_ids: &[String],
    ) -> Result<Vec<StoredEvent>, StoreError>;

    /// The versions of `streams` in the order asked (0 for a stream not begun), in
    /// one statement where a statement costs a round trip.
    async fn stream_versions(&mut self, streams: &[&str]) -> Result<Vec<i64>, StoreError>;

    async fn stream_version(&mut self, stream: &str) -> Result<i64, StoreError> {
        let mut versions = self.stream_versions(&[stream]).await?;
        Ok(versions.pop().unwrap_or(0))
    }

    /// The position of the ledger's last event, this transaction's included; takes the
    /// append lock, so it cannot change before commit but through this session.
    async fn head_position(&mut self) -> Result<i64, StoreError>;

    /// Takes the append lock, then reads under it what deciding an append needs: the
    /// events of `caller_ids` (as [`AppendSession::find_by_caller_ids`]) and the versions
    /// of `streams` in the order asked (as [`AppendSession::stream_versions`]). Nothing
    /// but this session can change them before it ends; an append of this session that
    /// names no other id or stream reads them from here, where a statement costs a round
    /// trip. The lock is held until commit or rollback.
    async fn lock_and_look_up(
        &mut self,
        caller_ids: &[String],
        streams: &[&str],
    ) -> Result<(Vec<StoredEvent>, Vec<i64>), StoreError>;

    /// Writes events exported from a ledger exactly as they were (event and caller ids,
    /// versions, recorded times, hashes), at this ledger's next positions. Each must
    /// continue its stream with the hash its chain gives it, or nothing is written and
    /// the session can only roll back. For restoring an evidence package.
    async fn restore(&mut self, events: Vec<StoredEvent>) -> Result<Vec<Appended>, StoreError>;

    async fn commit(self: Box<Self>) -> Result<(), StoreError>;

    async fn rollback(self: Box<Self>) -> Result<(), StoreError>;
}
