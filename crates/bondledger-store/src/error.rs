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

    #[error("migration error: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),

    /// Stored data that cannot be what the store wrote: a broken invariant, an unreadable row.
    #[error("integrity error: {0}")]
    Integrity(String),
}
