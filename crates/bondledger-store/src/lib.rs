//! The event store of Bondledger: an append-only log of events in streams, on SQLite
//! or PostgreSQL, behind one trait ([`EventStore`]).
//!
//! It guarantees per-stream versions without gaps, ledger-wide positions without gaps in
//! commit order, idempotent appends by caller id, all-or-nothing transactions across
//! streams, and a SHA-256 hash chain per stream that [`EventStore::verify_chain`]
//! re-checks.
//!
//! Architecture invariant: this crate knows SQL and nothing of customs rules. It never
//! interprets a payload (it only canonicalizes, stores and hashes it), never updates or
//! deletes an event, and no other crate writes SQL against its tables.

mod append;
mod canonical;
pub mod chain;
mod error;
mod event;
pub mod package;
mod postgres;
pub mod readmodel;
mod replication;
mod sqlite;
mod sqlite_reads;
mod sqlite_writes;
mod store;
pub mod timeline;
pub mod tokens;
mod url;
mod verify;

use std::sync::Arc;

pub use append::{
    PreparedRuns, StreamAppend, MAX_CALLER_ID_CHARS, MAX_EVENTS_PER_APPEND, MAX_NAME_CHARS,
    MAX_PAYLOAD_BYTES,
};
pub use canonical::CanonicalJson;
pub use error::StoreError;
pub use event::{
    Appended, Backend, ChainBreak, EventMetadata, ExpectedVersion, NewEvent, ReplayEvent,
    StoredEvent,
};
pub use readmodel::ReadModels;
pub use replication::{LogMark, WalPosition};
pub use store::{AppendSession, EventStore, MAX_PAGE_EVENTS};
pub use tokens::TokenStore;

/// Opens the ledger at `url`, creating an SQLite file if needed, and brings its schema
/// up to date. `sqlite://relative/path`, `sqlite:///abs/path`, `postgres://…` or
/// `postgresql://…`. Migrations only ever add: re-opening a ledger never loses data.
#[tracing::instrument(name = "bondledger.store.open", skip_all)]
pub async fn open(url: &str) -> Result<Arc<dyn EventStore>, StoreError> {
    match url::parse_database_url(url)? {
        url::Location::SqliteFile(path) => Ok(Arc::new(sqlite::SqliteStore::open(&path).await?)),
        url::Location::Postgres(url) => Ok(Arc::new(postgres::PostgresStore::connect(&url).await?)),
    }
}

/// Opens a PostgreSQL streaming replica of a ledger for reading: every
/// transaction on it is read-only, no migration runs (the replica replays the
/// primary's), and no connection is made until the first read, so a replica
/// that is down when this is called is only found so then.
#[tracing::instrument(name = "bondledger.store.open_read_replica", skip_all)]
pub async fn open_read_replica(url: &str) -> Result<Arc<dyn EventStore>, StoreError> {
    match url::parse_database_url(url)? {
        url::Location::Postgres(url) => Ok(Arc::new(postgres::PostgresStore::connect_read_only(&url)?)),
        url::Location::SqliteFile(_) => Err(StoreError::InvalidUrl(format!(
            "{url:?}: a read replica is a PostgreSQL streaming replica (postgres://…); SQLite has none"
        ))),
    }
}

/// The last migration this build of the store knows for `backend`: a
/// database whose schema is behind it cannot answer its queries.
pub fn schema_version(backend: Backend) -> i64 {
    match backend {
        Backend::Sqlite => sqlite::schema_version(),
        Backend::Postgres => postgres::schema_version(),
    }
}
