//! What an append decides before it writes: validation, idempotency, the expected
//! version, and the rows with their versions, positions and hashes. Both backends
//! run [`append_in`]; they differ only in the [`WriteTransaction`] they hand it.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, SubsecRound, Utc};
use uuid::Uuid;

use crate::chain::{self, canonical_json, event_hash};
use crate::event::EventRow;
use crate::{Appended, EventMetadata, ExpectedVersion, NewEvent, StoreError, StoredEvent};

/// At most this many events in one append.
pub const MAX_EVENTS_PER_APPEND: usize = 1_000_000;
/// Caller ids are 1 to this many characters.
pub const MAX_CALLER_ID_CHARS: usize = 64;
/// Stream names and event types are 1 to this many characters.
pub const MAX_NAME_CHARS: usize = 256;
/// One event's canonical payload is at most this many bytes.
pub const MAX_PAYLOAD_BYTES: usize = 1 << 20;

/// The ledger-wide head, read under the append lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LedgerHead {
    pub position: i64,
    pub recorded_at: Option<DateTime<Utc>>,
}

/// A stream's head: version 0 and no hash when the stream does not exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StreamHead {
    pub version: i64,
    pub hash: Option<String>,
}

/// The rows an append writes and the heads it leaves behind.
#[derive(Debug)]
pub(crate) struct AppendPlan {
    pub stream: String,
    pub previous_version: i64,
    pub previous_position: i64,
    pub rows: Vec<EventRow>,
}

impl AppendPlan {
    pub(crate) fn last(&self) -> &EventRow {
        // A plan is only made for at least one event (see `plan_rows`).
        &self.rows[self.rows.len() - 1]
    }
}

/// The transaction an append runs in. Implementations hold the ledger-wide append
/// lock from `lock_ledger_head` until commit or rollback.
#[async_trait]
pub(crate) trait WriteTransaction: Send {
    async fn lock_ledger_head(&mut self) -> Result<LedgerHead, StoreError>;
    async fn rows_by_caller_ids(
        &mut self,
        caller_ids: &[String],
    ) -> Result<Vec<EventRow>, StoreError>;
    async fn stream_head(&mut self, stream: &str) -> Result<StreamHead, StoreError>;
    async fn write(&mut self, plan: &AppendPlan) -> Result<(), StoreError>;
    async fn write_restore(&mut self, plan: &RestorePlan) -> Result<(), StoreError>;
}

/// Appends `events` to `stream` inside `transaction` (see [`crate::EventStore::append`]).
pub(crate) async fn append_in<T>(
    transaction: &mut T,
    stream: &str,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
) -> Result<Vec<Appended>, StoreError>
where
    T: WriteTransaction + ?Sized,
{
    validate_append(stream, expected, &events)?;
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let prepared = prepare_events(events)?;
    // The lock comes first so that everything read below is what the append writes over.
    let ledger_head = transaction.lock_ledger_head().await?;
    let caller_ids = distinct_caller_ids(&prepared);
    let held = transaction.rows_by_caller_ids(&caller_ids).await?;
    let fresh = skip_held(stream, prepared, &held)?;
    if fresh.is_empty() {
        return Ok(Vec::new());
    }
    let stream_head = transaction.stream_head(stream).await?;
    check_expected_version(stream, expected, stream_head.version)?;
    let plan = plan_rows(stream, fresh, &stream_head, ledger_head, Utc::now())?;
    transaction.write(&plan).await?;
    Ok(plan.rows.iter().map(EventRow::appended).collect())
}

/// Writes events exported from another ledger as they were: the same event ids, caller
/// ids, versions, recorded times and so the same hashes. Positions continue this ledger's
/// (in a whole-ledger restore into an empty ledger they come out as they were). Each
/// event must continue its stream here, carry the hash its chain gives it, and be
/// recorded no earlier than the ledger's last event; otherwise nothing is written.
pub(crate) async fn restore_in<T>(
    transaction: &mut T,
    events: Vec<StoredEvent>,
) -> Result<Vec<Appended>, StoreError>
where
    T: WriteTransaction + ?Sized,
{
    if events.len() > MAX_EVENTS_PER_APPEND {
        return Err(StoreError::InvalidInput(format!(
            "one restore holds at most {MAX_EVENTS_PER_APPEND} events, not {}",
            events.len()
        )));
    }
    let ledger_head = transaction.lock_ledger_head().await?;
    // One plan for the whole call, whatever the streams: on a log whose streams
    // interleave, a plan per run of one stream would cost statements per event.
    let mut streams: HashMap<String, StreamHead> = HashMap::new();
    for event in &events {
        if !streams.contains_key(&event.stream) {
            let head = transaction.stream_head(&event.stream).await?;
            streams.insert(event.stream.clone(), head);
        }
    }
    let plan = plan_restore(events, streams, ledger_head)?;
    if plan.rows.is_empty() {
        return Ok(Vec::new());
    }
    transaction.write_restore(&plan).await?;
    Ok(plan.rows.iter().map(EventRow::appended).collect())
}

/// The rows a restore writes, across streams, and each stream's head before and after.
#[derive(Debug)]
pub(crate) struct RestorePlan {
    pub previous_position: i64,
    pub rows: Vec<EventRow>,
    /// (stream, version before, version after, hash after), by stream.
    pub heads: Vec<(String, i64, i64, String)>,
}

fn plan_restore(
    events: Vec<StoredEvent>,
    mut streams: HashMap<String, StreamHead>,
    ledger_head: LedgerHead,
) -> Result<RestorePlan, StoreError> {
    let before: HashMap<String, i64> = streams
        .iter()
        .map(|(stream, head)| (stream.clone(), head.version))
        .collect();
    let mut ledger_head = ledger_head;
    let mut rows = Vec::with_capacity(events.len());
    for event in events {
        let stream_head = streams.get_mut(&event.stream).ok_or_else(|| {
            StoreError::Integrity(format!("stream {}: no head read", event.stream))
        })?;
        let plan = plan_restored_rows(vec![event], stream_head, ledger_head)?;
        let row =
            plan.rows.into_iter().next().ok_or_else(|| {
                StoreError::Integrity("a restore plan without its row".to_owned())
            })?;
        *stream_head = StreamHead {
            version: row.version,
            hash: Some(row.hash.clone()),
        };
        ledger_head = LedgerHead {
            position: row.position,
            recorded_at: Some(row.recorded_at),
        };
        rows.push(row);
    }
    let mut heads: Vec<(String, i64, i64, String)> = streams
        .into_iter()
        .filter_map(|(stream, head)| {
            let previous = before.get(&stream).copied().unwrap_or(0);
            let hash = head.hash?;
            (head.version > previous).then_some((stream, previous, head.version, hash))
        })
        .collect();
    heads.sort();
    Ok(RestorePlan {
        previous_position: rows
            .first()
            .map_or(ledger_head.position, |row| row.position - 1),
        rows,
        heads,
    })
}

fn plan_restored_rows(
    run: Vec<StoredEvent>,
    stream_head: &StreamHead,
    ledger_head: LedgerHead,
) -> Result<AppendPlan, StoreError> {
    let stream = run[0].stream.clone();
    validate_stream_name(&stream)?;
    let mut previous_hash = previous_hash(&stream, stream_head)?;
    let mut previous_recorded_at = ledger_head.recorded_at;
    let mut rows = Vec::with_capacity(run.len());
    for (offset, event) in (1_i64..).zip(run) {
        let version = stream_head.version + offset;
        let refuse = |reason: String| {
            StoreError::InvalidInput(format!(
                "stream {stream} version {}: {reason}",
                event.version
            ))
        };
        if event.version != version {
            return Err(refuse(format!(
                "does not continue the stream, which is at version {}",
                version - 1
            )));
        }
        if let Some(caller_id) = &event.caller_id {
            let id_chars = caller_id.chars().count();
            if id_chars == 0 || id_chars > MAX_CALLER_ID_CHARS {
                return Err(refuse(format!(
                    "a caller id is 1 to {MAX_CALLER_ID_CHARS} characters, not {id_chars}"
                )));
            }
        }
        if previous_recorded_at.is_some_and(|last| event.recorded_at < last) {
            return Err(refuse(
                "recorded before the ledger's last event: positions would not follow time"
                    .to_owned(),
            ));
        }
        let metadata_json = metadata_json(&event.metadata)?;
        let mut row = EventRow {
            position: ledger_head.position + offset,
            event_id: event.event_id,
            caller_id: event.caller_id,
            stream: stream.clone(),
            version,
            event_type: event.event_type,
            schema_version: event.schema_version,
            payload_json: canonical_json(&event.payload),
            metadata_json,
            business_date: event.business_date,
            recorded_at: event.recorded_at,
            hash: String::new(),
        };
        if row.payload_json.len() > MAX_PAYLOAD_BYTES {
            return Err(refuse(format!(
                "an event payload is at most {MAX_PAYLOAD_BYTES} bytes, not {}",
                row.payload_json.len()
            )));
        }
        previous_hash = event_hash(&previous_hash, &row);
        row.hash = hex::encode(previous_hash);
        if row.hash != event.hash {
            return Err(refuse(
                "its hash is not the hash of the event chained to the stream".to_owned(),
            ));
        }
        previous_recorded_at = Some(row.recorded_at);
        rows.push(row);
    }
    Ok(AppendPlan {
        stream,
        previous_version: stream_head.version,
        previous_position: ledger_head.position,
        rows,
    })
}

fn previous_hash(stream: &str, stream_head: &StreamHead) -> Result<[u8; 32], StoreError> {
    match &stream_head.hash {
        None if stream_head.version == 0 => Ok(chain::GENESIS),
        Some(hash_hex) if stream_head.version > 0 => {
            chain::decode_hash(hash_hex).ok_or_else(|| {
                StoreError::Integrity(format!(
                    "stream {stream}: the stored head hash is not a SHA-256 hash"
                ))
            })
        }
        _ => Err(StoreError::Integrity(format!(
            "stream {stream}: the head at version {} disagrees with its hash",
            stream_head.version
        ))),
    }
}

/// Refusals are decided before anything is written; any other error may come after a
/// partial write (SQLite keeps a transaction going after a failed statement), so the
/// session must not commit.
pub(crate) fn may_have_written(error: &StoreError) -> bool {
    !matches!(
        error,
        StoreError::Conflict { .. } | StoreError::IdConflict { .. } | StoreError::InvalidInput(_)
    )
}

pub(crate) fn refused_commit() -> StoreError {
    StoreError::Integrity(
        "an append in this session failed after it may have written; the session was rolled back"
            .to_owned(),
    )
}

/// A [`NewEvent`] with its payload and metadata in canonical form.
#[derive(Debug, Clone)]
pub(crate) struct PreparedEvent {
    caller_id: Option<String>,
    event_type: String,
    schema_version: i32,
    payload_json: String,
    metadata_json: String,
    business_date: NaiveDate,
}

pub(crate) fn validate_stream_name(stream: &str) -> Result<(), StoreError> {
    let chars = stream.chars().count();
    if chars == 0 || chars > MAX_NAME_CHARS {
        return Err(StoreError::InvalidInput(format!(
            "a stream name is 1 to {MAX_NAME_CHARS} characters, not {chars}"
        )));
    }
    Ok(())
}

fn validate_append(
    stream: &str,
    expected: ExpectedVersion,
    events: &[NewEvent],
) -> Result<(), StoreError> {
    validate_stream_name(stream)?;
    if let ExpectedVersion::Exactly(version) = expected {
        if version < 0 {
            return Err(StoreError::InvalidInput(format!(
                "an expected version is 0 or more, not {version}"
            )));
        }
    }
    if events.len() > MAX_EVENTS_PER_APPEND {
        return Err(StoreError::InvalidInput(format!(
            "one append holds at most {MAX_EVENTS_PER_APPEND} events, not {}",
            events.len()
        )));
    }
    for event in events {
        let type_chars = event.event_type.chars().count();
        if type_chars == 0 || type_chars > MAX_NAME_CHARS {
            return Err(StoreError::InvalidInput(format!(
                "an event type is 1 to {MAX_NAME_CHARS} characters, not {type_chars}"
            )));
        }
        if let Some(caller_id) = &event.caller_id {
            let id_chars = caller_id.chars().count();
            if id_chars == 0 || id_chars > MAX_CALLER_ID_CHARS {
                return Err(StoreError::InvalidInput(format!(
                    "a caller id is 1 to {MAX_CALLER_ID_CHARS} characters, not {id_chars}"
                )));
            }
        }
    }
    Ok(())
}

fn prepare_events(events: Vec<NewEvent>) -> Result<Vec<PreparedEvent>, StoreError> {
    events.into_iter().map(prepare_event).collect()
}

fn prepare_event(event: NewEvent) -> Result<PreparedEvent, StoreError> {
    let payload_json = canonical_json(&event.payload);
    if payload_json.len() > MAX_PAYLOAD_BYTES {
        return Err(StoreError::InvalidInput(format!(
            "an event payload is at most {MAX_PAYLOAD_BYTES} bytes, not {}",
            payload_json.len()
        )));
    }
    Ok(PreparedEvent {
        caller_id: event.caller_id,
        event_type: event.event_type,
        schema_version: event.schema_version,
        payload_json,
        metadata_json: metadata_json(&event.metadata)?,
        business_date: event.business_date,
    })
}

fn metadata_json(metadata: &EventMetadata) -> Result<String, StoreError> {
    let value = serde_json::to_value(metadata)
        .map_err(|error| StoreError::InvalidInput(format!("unserializable metadata: {error}")))?;
    Ok(canonical_json(&value))
}

fn distinct_caller_ids(events: &[PreparedEvent]) -> Vec<String> {
    let mut caller_ids: Vec<String> = events
        .iter()
        .filter_map(|event| event.caller_id.clone())
        .collect();
    caller_ids.sort_unstable();
    caller_ids.dedup();
    caller_ids
}

/// What makes two events with one caller id "the same event".
#[derive(Debug, PartialEq, Eq)]
struct Content<'a> {
    stream: &'a str,
    event_type: &'a str,
    business_date: NaiveDate,
    payload_json: &'a str,
}

/// Drops the events the ledger (or this batch) already holds with the same content;
/// the same caller id with different content is an [`StoreError::IdConflict`].
fn skip_held(
    stream: &str,
    events: Vec<PreparedEvent>,
    held: &[EventRow],
) -> Result<Vec<PreparedEvent>, StoreError> {
    let held_content: HashMap<String, Content<'_>> = held
        .iter()
        .filter_map(|row| {
            let caller_id = row.caller_id.clone()?;
            let content = Content {
                stream: &row.stream,
                event_type: &row.event_type,
                business_date: row.business_date,
                payload_json: &row.payload_json,
            };
            Some((caller_id, content))
        })
        .collect();
    let mut batch_content: HashMap<String, (String, NaiveDate, String)> = HashMap::new();
    let mut fresh = Vec::with_capacity(events.len());
    for event in events {
        let Some(caller_id) = event.caller_id.clone() else {
            fresh.push(event);
            continue;
        };
        let content = Content {
            stream,
            event_type: &event.event_type,
            business_date: event.business_date,
            payload_json: &event.payload_json,
        };
        if let Some(existing) = held_content.get(&caller_id) {
            if *existing != content {
                return Err(StoreError::IdConflict { caller_id });
            }
            continue;
        }
        if let Some((event_type, business_date, payload_json)) = batch_content.get(&caller_id) {
            let earlier = Content {
                stream,
                event_type,
                business_date: *business_date,
                payload_json,
            };
            if earlier != content {
                return Err(StoreError::IdConflict { caller_id });
            }
            continue;
        }
        batch_content.insert(
            caller_id,
            (
                event.event_type.clone(),
                event.business_date,
                event.payload_json.clone(),
            ),
        );
        fresh.push(event);
    }
    Ok(fresh)
}

fn check_expected_version(
    stream: &str,
    expected: ExpectedVersion,
    actual: i64,
) -> Result<(), StoreError> {
    match expected {
        ExpectedVersion::Any => Ok(()),
        ExpectedVersion::Exactly(expected) if expected == actual => Ok(()),
        ExpectedVersion::Exactly(expected) => Err(StoreError::Conflict {
            stream: stream.to_owned(),
            expected,
            actual,
        }),
    }
}

/// Numbers, stamps and chains the fresh events. `now` is truncated to microseconds and
/// never goes below the last recorded time, so `recorded_at` follows position order.
fn plan_rows(
    stream: &str,
    events: Vec<PreparedEvent>,
    stream_head: &StreamHead,
    ledger_head: LedgerHead,
    now: DateTime<Utc>,
) -> Result<AppendPlan, StoreError> {
    assert!(
        !events.is_empty(),
        "an append plan is made for at least one event"
    );
    let mut previous_hash = previous_hash(stream, stream_head)?;
    let now = now.trunc_subsecs(6);
    let recorded_at = match ledger_head.recorded_at {
        Some(last) if last > now => last,
        _ => now,
    };
    let mut rows = Vec::with_capacity(events.len());
    for (offset, event) in (1_i64..).zip(events) {
        let mut row = EventRow {
            position: ledger_head.position + offset,
            event_id: Uuid::now_v7(),
            caller_id: event.caller_id,
            stream: stream.to_owned(),
            version: stream_head.version + offset,
            event_type: event.event_type,
            schema_version: event.schema_version,
            payload_json: event.payload_json,
            metadata_json: event.metadata_json,
            business_date: event.business_date,
            recorded_at,
            hash: String::new(),
        };
        previous_hash = event_hash(&previous_hash, &row);
        row.hash = hex::encode(previous_hash);
        rows.push(row);
    }
    Ok(AppendPlan {
        stream: stream.to_owned(),
        previous_version: stream_head.version,
        previous_position: ledger_head.position,
        rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn date() -> NaiveDate {
        NaiveDate::from_ymd_opt(2024, 5, 1).expect("valid date")
    }

    fn event(caller_id: Option<&str>, payload: serde_json::Value) -> PreparedEvent {
        prepare_event(NewEvent {
            caller_id: caller_id.map(str::to_owned),
            event_type: "Imported".to_owned(),
            schema_version: 1,
            payload,
            metadata: EventMetadata::default(),
            business_date: date(),
        })
        .expect("a valid event")
    }

    fn plan(events: Vec<PreparedEvent>) -> AppendPlan {
        let head = StreamHead {
            version: 0,
            hash: None,
        };
        let ledger = LedgerHead {
            position: 10,
            recorded_at: None,
        };
        plan_rows("s", events, &head, ledger, Utc::now()).expect("a plan")
    }

    #[test]
    fn a_batch_repeating_a_caller_id_with_the_same_content_keeps_one() {
        let fresh = skip_held(
            "s",
            vec![event(Some("a"), json!(1)), event(Some("a"), json!(1))],
            &[],
        )
        .expect("no conflict");
        assert_eq!(fresh.len(), 1);
    }

    #[test]
    fn a_batch_repeating_a_caller_id_with_other_content_is_refused() {
        let outcome = skip_held(
            "s",
            vec![event(Some("a"), json!(1)), event(Some("a"), json!(2))],
            &[],
        );
        assert!(matches!(outcome, Err(StoreError::IdConflict { caller_id }) if caller_id == "a"));
    }

    #[test]
    fn a_held_event_is_the_same_only_on_the_same_stream() {
        let held = plan(vec![event(Some("a"), json!({"x": 1}))]).rows;
        let same =
            skip_held("s", vec![event(Some("a"), json!({"x": 1}))], &held).expect("same content");
        assert!(same.is_empty());
        let elsewhere = skip_held("t", vec![event(Some("a"), json!({"x": 1}))], &held);
        assert!(matches!(elsewhere, Err(StoreError::IdConflict { .. })));
    }

    #[test]
    fn rows_continue_the_stream_and_the_ledger() {
        let rows = plan(vec![event(None, json!(1)), event(None, json!(2))]).rows;
        assert_eq!(
            rows.iter().map(|row| row.version).collect::<Vec<_>>(),
            vec![1, 2]
        );
        assert_eq!(
            rows.iter().map(|row| row.position).collect::<Vec<_>>(),
            vec![11, 12]
        );
        let first = event_hash(&chain::GENESIS, &rows[0]);
        assert_eq!(rows[0].hash, hex::encode(first));
        assert_eq!(rows[1].hash, hex::encode(event_hash(&first, &rows[1])));
    }

    #[test]
    fn recorded_at_never_goes_back() {
        let later = Utc::now() + chrono::Duration::hours(1);
        let ledger = LedgerHead {
            position: 0,
            recorded_at: Some(later),
        };
        let head = StreamHead {
            version: 0,
            hash: None,
        };
        let rows = plan_rows("s", vec![event(None, json!(1))], &head, ledger, Utc::now())
            .expect("a plan")
            .rows;
        assert_eq!(rows[0].recorded_at, later);
    }

    #[test]
    fn a_stale_expected_version_is_a_conflict() {
        assert!(check_expected_version("s", ExpectedVersion::Exactly(2), 2).is_ok());
        assert!(check_expected_version("s", ExpectedVersion::Any, 7).is_ok());
        let conflict = check_expected_version("s", ExpectedVersion::Exactly(1), 2);
        assert!(matches!(
            conflict,
            Err(StoreError::Conflict {
                expected: 1,
                actual: 2,
                ..
            })
        ));
    }

    #[test]
    fn limits_are_enforced() {
        let new_event = |caller_id: Option<String>, event_type: &str| NewEvent {
            caller_id,
            event_type: event_type.to_owned(),
            schema_version: 1,
            payload: json!(null),
            metadata: EventMetadata::default(),
            business_date: date(),
        };
        let too_long = vec![new_event(Some("x".repeat(MAX_CALLER_ID_CHARS + 1)), "T")];
        assert!(validate_append("s", ExpectedVersion::Any, &too_long).is_err());
        let longest = vec![new_event(Some("料".repeat(MAX_CALLER_ID_CHARS)), "T")];
        assert!(validate_append("s", ExpectedVersion::Any, &longest).is_ok());
        assert!(validate_append("", ExpectedVersion::Any, &[]).is_err());
        assert!(validate_append("s", ExpectedVersion::Exactly(-1), &[]).is_err());
        assert!(validate_append("s", ExpectedVersion::Any, &[new_event(None, "")]).is_err());
    }
}
