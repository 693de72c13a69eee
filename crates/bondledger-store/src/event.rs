//! The values that cross the store's boundary.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{CanonicalJson, StoreError};

/// The database behind a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Who caused an event and why; carried along, never interpreted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EventMetadata {
    pub actor: Option<String>,
    pub correlation_id: Option<Uuid>,
    pub causation_id: Option<Uuid>,
}

/// An event as the caller hands it to [`crate::EventStore::append`].
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// The caller's unique id (1 to 64 characters), unique across the whole ledger;
    /// it makes a retried append harmless.
    pub caller_id: Option<String>,
    pub event_type: String,
    pub schema_version: i32,
    /// In canonical form already: [`CanonicalJson::of`] a typed value, or a
    /// `serde_json::Value` `.into()` one.
    pub payload: CanonicalJson,
    pub metadata: EventMetadata,
    pub business_date: NaiveDate,
}

/// An event as a replay reads it: what a fold needs, the payload left as
/// its stored JSON text (the reader decodes it straight into its own types),
/// without the event id, metadata and hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayEvent {
    pub position: i64,
    pub stream: String,
    pub version: i64,
    pub caller_id: Option<String>,
    pub event_type: String,
    pub schema_version: i32,
    pub business_date: NaiveDate,
    pub recorded_at: DateTime<Utc>,
    pub payload_json: String,
}

/// A query of the columns a [`ReplayEvent`] is read from, in this order.
macro_rules! select_replay_events {
    ($rest:literal) => {
        concat!(
            "SELECT position, stream, version, caller_id, event_type, schema_version, \
             business_date, recorded_at, payload FROM events ",
            $rest
        )
    };
}

/// A page of one stream for a replay: $1 the stream, $2 the first version,
/// $3 the limit. The same text on both backends.
pub(crate) const REPLAY_STREAM_PAGE: &str =
    select_replay_events!("WHERE stream = $1 AND version >= $2 ORDER BY version LIMIT $3");
/// A page of the log for a replay: $1 the position after which, $2 the limit.
pub(crate) const REPLAY_LOG_PAGE: &str =
    select_replay_events!("WHERE position > $1 ORDER BY position LIMIT $2");

/// An event as the ledger holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// UUID v7, made by the store.
    pub event_id: Uuid,
    pub caller_id: Option<String>,
    pub stream: String,
    /// 1, 2, ... within the stream, without gaps.
    pub version: i64,
    /// 1, 2, ... across the ledger, without gaps, in commit order.
    pub position: i64,
    pub event_type: String,
    pub schema_version: i32,
    pub payload: serde_json::Value,
    pub metadata: EventMetadata,
    pub business_date: NaiveDate,
    /// When the ledger recorded the event, at microsecond precision; never decreases
    /// with position.
    pub recorded_at: DateTime<Utc>,
    /// Lowercase hex SHA-256 chaining this event to the previous one of its stream
    /// (see [`crate::chain`]).
    pub hash: String,
}

/// The version a stream must be at for an append to go ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedVersion {
    Any,
    /// `Exactly(0)`: the stream must not exist yet.
    Exactly(i64),
}

/// Where an appended event landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    pub event_id: Uuid,
    pub caller_id: Option<String>,
    pub stream: String,
    pub version: i64,
    pub position: i64,
}

/// The first place a stream's hash chain does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    pub stream: String,
    pub version: i64,
    pub reason: String,
}

/// An event in its stored form: payload and metadata as the canonical JSON text that
/// was hashed. Both backends read and write this; it never leaves the crate.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EventRow {
    pub position: i64,
    pub event_id: Uuid,
    pub caller_id: Option<String>,
    pub stream: String,
    pub version: i64,
    pub event_type: String,
    pub schema_version: i32,
    pub payload_json: String,
    pub metadata_json: String,
    pub business_date: NaiveDate,
    pub recorded_at: DateTime<Utc>,
    pub hash: String,
}

impl EventRow {
    pub(crate) fn into_stored(self) -> Result<StoredEvent, StoreError> {
        let payload = serde_json::from_str(&self.payload_json).map_err(|error| {
            StoreError::Integrity(format!(
                "position {}: the stored payload is not JSON: {error}",
                self.position
            ))
        })?;
        let metadata = serde_json::from_str(&self.metadata_json).map_err(|error| {
            StoreError::Integrity(format!(
                "position {}: the stored metadata is unreadable: {error}",
                self.position
            ))
        })?;
        Ok(StoredEvent {
            event_id: self.event_id,
            caller_id: self.caller_id,
            stream: self.stream,
            version: self.version,
            position: self.position,
            event_type: self.event_type,
            schema_version: self.schema_version,
            payload,
            metadata,
            business_date: self.business_date,
            recorded_at: self.recorded_at,
            hash: self.hash,
        })
    }

    pub(crate) fn appended(&self) -> Appended {
        Appended {
            event_id: self.event_id,
            caller_id: self.caller_id.clone(),
            stream: self.stream.clone(),
            version: self.version,
            position: self.position,
        }
    }
}

pub(crate) fn into_stored_events(rows: Vec<EventRow>) -> Result<Vec<StoredEvent>, StoreError> {
    rows.into_iter().map(EventRow::into_stored).collect()
}
