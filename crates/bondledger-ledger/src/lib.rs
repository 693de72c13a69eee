//! Bondledger's application services: a movement enters, the domain decides,
//! the store appends; a query replays a manual's stream into its state.
//!
//! This crate holds no rule of its own (the domain decides) and writes no
//! SQL (the store does). It knows neither HTTP nor terminals: the CLI and the
//! API call it.

pub mod access;
mod cache;
mod evidence;
mod group;
mod import;
pub mod json;
mod pages;
mod query;
mod replica;
mod source;
mod trace;
mod views;

use std::sync::Arc;

use bondledger_domain::{Malformed, RuleId};
use bondledger_store::{EventStore, StoreError};

pub use access::{Access, AccessError, IssuedToken, ManualOwners, Principal, Role, TokenInfo};
pub use bondledger_domain::trace::{Lot, TraceRow, Tracer};
pub use evidence::{verify_package, EvidenceError, ExportOutcome, RestoreOutcome};
pub use import::{AppendedMovement, ImportOutcome, MAX_LISTED_MOVEMENTS};
pub use pages::{Page, MAX_PAGE_ENTRIES};
pub use query::{AsOf, Balances, HistoryEntry, PROGRESS_EVERY_EVENTS};
pub use replica::{ReadSource, Staleness, DEFAULT_REPLICA_WAIT};
pub use source::{read_lines, read_movements, Located, MAX_LINE_BYTES};
pub use views::Deadline;

/// Why a movement or a file was not taken; nothing of it was written.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("{source_name}: cannot be read: {message}")]
    Unreadable {
        source_name: String,
        message: String,
    },
    #[error("{source_name}:{line}: malformed: {malformed}")]
    Malformed {
        source_name: String,
        line: usize,
        malformed: Malformed,
    },
    #[error("{source_name}:{line}: field `id`: {id:?} is already held with other content")]
    IdConflict {
        source_name: String,
        line: usize,
        id: String,
    },
    #[error("{source_name}:{line}: refused: {rule}: {message}")]
    Refused {
        source_name: String,
        line: usize,
        rule: RuleId,
        message: String,
    },
    #[error("event {version} of {stream} cannot be read: {message}")]
    Corrupt {
        stream: String,
        version: i64,
        message: String,
    },
    #[error(
        "the read replica has not replayed this client's last write ({after}) within {:.1} s: \
         it is at {replayed}; try again, or read the primary",
        waited.as_secs_f64()
    )]
    ReplicaBehind {
        after: bondledger_store::WalPosition,
        replayed: bondledger_store::WalPosition,
        waited: std::time::Duration,
    },
    #[error("the ledger kept changing under this import; tried {attempts} times")]
    Contention { attempts: u32 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<bondledger_projections::ProjectionError> for LedgerError {
    fn from(error: bondledger_projections::ProjectionError) -> Self {
        match error {
            bondledger_projections::ProjectionError::Corrupt {
                stream,
                version,
                message,
            } => LedgerError::Corrupt {
                stream,
                version,
                message,
            },
            bondledger_projections::ProjectionError::Store(store) => LedgerError::Store(store),
            unknown @ bondledger_projections::ProjectionError::Unknown(_) => {
                LedgerError::Store(StoreError::InvalidInput(unknown.to_string()))
            }
        }
    }
}

/// The ledger: the store, and the services over it.
#[derive(Clone)]
pub struct Ledger {
    /// The primary: appends, tokens and the projections' writes.
    store: Arc<dyn EventStore>,
    /// Where queries read: the primary, or a replica chosen by
    /// [`Ledger::for_reading`].
    reads: Arc<dyn EventStore>,
    reads_replica: bool,
    replica: Option<replica::Replica>,
    /// One catch-up of the read models at a time in this process: two
    /// would race for the same checkpoint and one would fail.
    catching_up: Arc<tokio::sync::Mutex<()>>,
    /// The states of the manuals appended to last, checked against the
    /// store before each use.
    states: cache::StateCache,
    /// Small batches appended at once, gathered into one transaction.
    group: Arc<group::GroupCommit>,
}

impl Ledger {
    pub fn new(store: Arc<dyn EventStore>) -> Self {
        Ledger {
            reads: store.clone(),
            store,
            reads_replica: false,
            replica: None,
            catching_up: Arc::new(tokio::sync::Mutex::new(())),
            states: cache::StateCache::new(cache::STATE_CACHE_MANUALS),
            group: Arc::new(group::GroupCommit::default()),
        }
    }

    /// Opens (creating and migrating where needed) the ledger at `url`.
    pub async fn open(url: &str) -> Result<Self, LedgerError> {
        Ok(Ledger::new(bondledger_store::open(url).await?))
    }

    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.store
    }
}
