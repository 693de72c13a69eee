//! The one error type at the store's boundary.

/// Everything the store can refuse or fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The stream was not at the version the caller expected; nothing was written.
    #[error("stream {stream}: expected version {expected}, but it is at version {actual}")]
    Conflict {
        stream: String,
        expected: i64,
        actual: i64,
    },

    /// The caller id is already held by an event with different content.
    #[error("caller id {caller_id} is already held by an event with different content")]
    IdConflict { caller_id: String },

    /// The request itself is malformed (a limit exceeded, an empty name, ...).
    #[error("invalid input: {0}")]
    InvalidInput(String),

    #[error("invalid database url: {0}")]
    InvalidUrl(String),

    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),

    /// A statement on the SQLite store's own connections: its replay reads
    /// and its appends.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),

    #[error("migration error: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),

    /// Stored data that cannot be what the store wrote: a broken invariant, an unreadable row.
    #[error("integrity error: {0}")]
    Integrity(String),

    /// An append planned on what this process last knew of the ledger (see
    /// [`crate::EventStore::begin_presumed`]) found it otherwise: another
    /// process appended since, an id it presumed new is held, or the append is
    /// more than one statement writes. Nothing was written; appended under
    /// the lock, it may well succeed.
    #[error("the ledger is not as this process last knew it: {0}")]
    Stale(String),
}

/// SQLSTATEs and SQLite codes of failures that say nothing about the request:
/// the connection went away or the server is restarting (PostgreSQL class
/// 08, 57P01–57P03), a serialization failure or deadlock (40001, 40P01), a
/// busy or locked SQLite database (5, 6).
const TRANSIENT_CODES: [&str; 12] = [
    "08000", "08001", "08003", "08004", "08006", "57P01", "57P02", "57P03", "40001", "40P01", "5",
    "6",
];

impl StoreError {
    /// The same failure for another caller (several callers' appends may
    /// share one transaction): the same message and the same
    /// [`StoreError::is_transient`], the variant kept where it can be copied.
    pub fn told_again(&self) -> StoreError {
        match self {
            StoreError::Conflict {
                stream,
                expected,
                actual,
            } => StoreError::Conflict {
                stream: stream.clone(),
                expected: *expected,
                actual: *actual,
            },
            StoreError::IdConflict { caller_id } => StoreError::IdConflict {
                caller_id: caller_id.clone(),
            },
            StoreError::InvalidInput(message) => StoreError::InvalidInput(message.clone()),
            StoreError::InvalidUrl(message) => StoreError::InvalidUrl(message.clone()),
            StoreError::Integrity(message) => StoreError::Integrity(message.clone()),
            StoreError::Stale(message) => StoreError::Stale(message.clone()),
            transient if transient.is_transient() => StoreError::Database(sqlx::Error::Io(
                std::io::Error::new(std::io::ErrorKind::ConnectionAborted, transient.to_string()),
            )),
            other => StoreError::Integrity(other.to_string()),
        }
    }

    /// Whether the same request, tried again, may well succeed: the
    /// database connection was lost, the server is restarting, or it was
    /// busy. A transaction cut off this way is rolled back by the database;
    /// one cut off at its commit may have committed, which a retry with the
    /// same caller ids finds harmlessly.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Database(error) => match error {
                sqlx::Error::Io(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed
                | sqlx::Error::Protocol(_) => true,
                sqlx::Error::Database(database) => database
                    .code()
                    .is_some_and(|code| TRANSIENT_CODES.contains(&code.as_ref())),
                _ => false,
            },
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(failure, _)) => matches!(
                failure.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_told_again_keeps_its_message_and_transience() {
        let lost = StoreError::Database(sqlx::Error::PoolTimedOut);
        let again = lost.told_again();
        assert!(again.is_transient());
        assert!(again.to_string().contains(&lost.to_string()));
        let broken = StoreError::Database(sqlx::Error::RowNotFound);
        assert!(!broken.told_again().is_transient());
        let conflict = StoreError::IdConflict {
            caller_id: "a".to_owned(),
        };
        assert!(matches!(
            conflict.told_again(),
            StoreError::IdConflict { caller_id } if caller_id == "a"
        ));
    }
}
