//! Reading from a PostgreSQL streaming replica: appends, tokens and the
//! projections' writes always go to the primary; queries may read a replica.
//!
//! A read that must see a write waits until the replica has replayed the
//! primary's log past that write ([`Ledger::for_reading`]), for at most the
//! replica's wait, and then fails clearly ([`LedgerError::ReplicaBehind`]).
//! A replica that cannot be reached, or whose schema is behind this build,
//! is read around: the primary answers and says so ([`ReadSource::Failover`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bondledger_store::{Backend, EventStore, LogMark, WalPosition};
use chrono::Utc;

use crate::{Ledger, LedgerError};

/// How long a read waits for the replica to replay a write, unless told.
pub const DEFAULT_REPLICA_WAIT: Duration = Duration::from_secs(5);
/// After the replica could not be reached, reads go to the primary this
/// long before the replica is tried again.
const RETRY_REPLICA_AFTER: Duration = Duration::from_secs(5);
const FIRST_PAUSE: Duration = Duration::from_millis(2);
const LONGEST_PAUSE: Duration = Duration::from_millis(50);

/// A replica to read from.
#[derive(Clone)]
pub(crate) struct Replica {
    store: Arc<dyn EventStore>,
    wait: Duration,
    /// Until when the replica is read around, after it could not be reached.
    unreachable_until: Arc<std::sync::Mutex<Option<Instant>>>,
}

/// Where a query's answer was read.
#[derive(Debug, Clone, PartialEq)]
pub enum ReadSource {
    /// The primary: no replica is configured.
    Primary,
    /// The replica, this far behind the primary when the read began.
    Replica(Staleness),
    /// The replica could not be used, for this reason; the primary answered.
    Failover(String),
}

/// How far a replica is behind its primary.
#[derive(Debug, Clone, PartialEq)]
pub struct Staleness {
    /// Events the primary holds that the replica has not replayed yet.
    pub events_behind: i64,
    /// Bytes of write-ahead log not replayed yet (of every database of the
    /// server, not only this ledger's).
    pub wal_bytes_behind: u64,
    /// Seconds since the last transaction the replica replayed was
    /// committed on the primary, when it is behind by an event; else 0.
    pub seconds: f64,
}

impl Ledger {
    /// Reads through `replica` from now on (see [`Ledger::for_reading`]);
    /// a read that must see a write waits at most `wait` for it.
    pub fn with_replica(mut self, replica: Arc<dyn EventStore>, wait: Duration) -> Self {
        self.replica = Some(Replica {
            store: replica,
            wait,
            unreachable_until: Arc::default(),
        });
        self
    }

    /// Opens the ledger at `url` and, given `read_url`, a PostgreSQL
    /// streaming replica of it to read from.
    pub async fn open_with_replica(
        url: &str,
        read_url: Option<&str>,
        wait: Duration,
    ) -> Result<Self, LedgerError> {
        let ledger = Ledger::open(url).await?;
        let Some(read_url) = read_url else {
            return Ok(ledger);
        };
        if ledger.store.backend() != Backend::Postgres {
            return Err(LedgerError::Store(
                bondledger_store::StoreError::InvalidUrl(format!(
                    "a read replica is PostgreSQL's; the ledger at {url} is not"
                )),
            ));
        }
        let replica = bondledger_store::open_read_replica(read_url).await?;
        Ok(ledger.with_replica(replica, wait))
    }

    pub fn has_replica(&self) -> bool {
        self.replica.is_some()
    }

    /// Whether this ledger's queries read a replica.
    pub fn reads_replica(&self) -> bool {
        self.reads_replica
    }

    /// The primary's log position now: a read that waits for it sees every
    /// write committed before this call. None on SQLite.
    pub async fn write_mark(&self) -> Result<Option<WalPosition>, LedgerError> {
        Ok(self.store.log_mark().await?.wal)
    }

    /// The ledger to answer a query with, and where it reads. With a
    /// replica: once the replica has replayed the primary's log up to
    /// `after` (a client's last write, from [`Ledger::write_mark`]), the
    /// replica; when it has not within the replica's wait,
    /// [`LedgerError::ReplicaBehind`]. When the replica cannot be reached or
    /// its schema is behind this build's, the primary, saying why.
    pub async fn for_reading(
        &self,
        after: Option<WalPosition>,
    ) -> Result<(Ledger, ReadSource), LedgerError> {
        let Some(replica) = &self.replica else {
            return Ok((self.clone(), ReadSource::Primary));
        };
        if replica.read_around() {
            return Ok((
                self.clone(),
                ReadSource::Failover("the read replica could not be reached a moment ago".into()),
            ));
        }
        let started = Instant::now();
        let mut pause = FIRST_PAUSE;
        let mark = loop {
            let mark = match replica.store.log_mark().await {
                Ok(mark) => mark,
                Err(error) => {
                    replica.unreachable_for(RETRY_REPLICA_AFTER);
                    let reason = format!("the read replica cannot be reached: {error}");
                    tracing::info!(%error, "the read replica cannot be reached; reading the primary");
                    return Ok((self.clone(), ReadSource::Failover(reason)));
                }
            };
            match (after, mark.wal) {
                (Some(after), Some(replayed)) if replayed < after => {
                    if started.elapsed() >= replica.wait {
                        return Err(LedgerError::ReplicaBehind {
                            after,
                            replayed,
                            waited: replica.wait,
                        });
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(LONGEST_PAUSE);
                }
                _ => break mark,
            }
        };
        // Past the wait, a replica still without this build's schema (it
        // has not replayed the migration, or the ledger's creation) is read
        // around.
        let needed = bondledger_store::schema_version(Backend::Postgres);
        if mark.schema_version < needed {
            let reason = format!(
                "the read replica's schema is at migration {}, behind this build's {needed}",
                mark.schema_version
            );
            tracing::info!(%reason, "reading the primary");
            return Ok((self.clone(), ReadSource::Failover(reason)));
        }
        let primary = self.store.log_mark().await?;
        let reader = Ledger {
            reads: replica.store.clone(),
            reads_replica: true,
            ..self.clone()
        };
        Ok((reader, ReadSource::Replica(staleness(&primary, &mark))))
    }
}

impl Replica {
    fn read_around(&self) -> bool {
        let mut until = self
            .unreachable_until
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match *until {
            Some(moment) if Instant::now() < moment => true,
            Some(_) => {
                *until = None;
                false
            }
            None => false,
        }
    }

    fn unreachable_for(&self, pause: Duration) {
        *self
            .unreachable_until
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Instant::now() + pause);
    }
}

fn staleness(primary: &LogMark, replica: &LogMark) -> Staleness {
    let events_behind = (primary.ledger_position - replica.ledger_position).max(0);
    let wal_bytes_behind = match (primary.wal, replica.wal) {
        (Some(primary), Some(replica)) => primary.bytes_after(replica),
        _ => 0,
    };
    let seconds = match replica.replayed_commit_at {
        Some(moment) if events_behind > 0 => {
            (Utc::now() - moment).num_milliseconds().max(0) as f64 / 1000.0
        }
        _ => 0.0,
    };
    Staleness {
        events_behind,
        wal_bytes_behind,
        seconds,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(position: i64, wal: u64, replayed_seconds_ago: Option<i64>) -> LogMark {
        LogMark {
            wal: Some(WalPosition::new(wal)),
            ledger_position: position,
            is_replica: replayed_seconds_ago.is_some(),
            replayed_commit_at: replayed_seconds_ago
                .map(|s| Utc::now() - chrono::Duration::seconds(s)),
            schema_version: 5,
        }
    }

    #[test]
    fn a_replica_with_every_event_is_not_stale_however_old_its_last_replay() {
        let staleness = staleness(&mark(10, 500, None), &mark(10, 400, Some(3_600)));
        assert_eq!(staleness.events_behind, 0);
        assert_eq!(staleness.wal_bytes_behind, 100);
        assert_eq!(staleness.seconds, 0.0);
    }

    #[test]
    fn a_replica_behind_by_events_is_as_stale_as_its_last_replay() {
        let staleness = staleness(&mark(13, 500, None), &mark(10, 400, Some(7)));
        assert_eq!(staleness.events_behind, 3);
        assert!((7.0..8.0).contains(&staleness.seconds), "{staleness:?}");
    }
}
