//! What an append decides before it writes: validation, idempotency, the expected
//! version, and the rows with their versions, positions and hashes. Both backends
//! run [`append_in`]; they differ only in the [`WriteTransaction`] they hand it.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, SubsecRound, Utc};
use uuid::Uuid;

use crate::chain::{self, canonical_json, event_hash};
use crate::event::{into_stored_events, EventRow};
use crate::{
    Appended, CanonicalJson, EventMetadata, ExpectedVersion, NewEvent, StoreError, StoredEvent,
};

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

/// What an append reads before it plans, all under the append lock: the
/// ledger head, the events of the caller ids it names, and the heads of the
/// streams it extends (in the order asked).
#[derive(Debug)]
pub(crate) struct AppendReads {
    pub ledger_head: LedgerHead,
    pub held: Vec<EventRow>,
    pub heads: Vec<StreamHead>,
}

/// Where one stream of an append stood and where it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StreamMove {
    pub stream: String,
    pub previous_version: i64,
    pub version: i64,
    pub hash: String,
}

/// The rows an append writes (in position order) and the heads it leaves behind.
#[derive(Debug)]
pub(crate) struct AppendPlan {
    pub previous_position: i64,
    pub rows: Vec<EventRow>,
    /// Every stream the rows extend, once, in the order first met.
    pub streams: Vec<StreamMove>,
}

impl AppendPlan {
    pub(crate) fn last(&self) -> &EventRow {
        // A plan is only written with at least one row (see `append_runs_in`).
        &self.rows[self.rows.len() - 1]
    }

    /// Moves `planned`'s head, and this plan's move of it, on to `last`.
    fn advance(&mut self, planned: &mut PlannedHead, last: &EventRow) {
        planned.head.version = last.version;
        planned.head.hash = Some(last.hash.clone());
        let moved = &mut self.streams[planned.moved];
        moved.version = last.version;
        moved.hash = last.hash.clone();
    }
}

/// The heads of the streams a plan extends, each with its chain hash: all
/// read from the transaction at once, recorded as a move of the plan when a
/// stream is first met, then moved on by [`AppendPlan::advance`].
struct PlannedHeads {
    met: HashMap<String, PlannedHead>,
    /// Heads read, not yet met.
    read: HashMap<String, StreamHead>,
}

/// A stream's head as the plan leaves it so far.
struct PlannedHead {
    head: StreamHead,
    /// The hash its next event chains to.
    hash: [u8; 32],
    /// Where its move is in the plan's `streams`: an append of thousands of
    /// streams finds it without a search.
    moved: usize,
}

impl PlannedHeads {
    /// The heads read of `streams`, in the order read.
    fn new(streams: &[&str], heads: Vec<StreamHead>) -> Self {
        PlannedHeads {
            met: HashMap::new(),
            read: streams.iter().map(|s| (*s).to_owned()).zip(heads).collect(),
        }
    }

    fn of(&mut self, plan: &mut AppendPlan, stream: &str) -> Result<&mut PlannedHead, StoreError> {
        if !self.met.contains_key(stream) {
            let head = self
                .read
                .remove(stream)
                .unwrap_or_else(|| unreachable!("every stream of the plan was read"));
            let hash = head_hash(stream, &head)?;
            plan.streams.push(StreamMove {
                stream: stream.to_owned(),
                previous_version: head.version,
                version: head.version,
                hash: head.hash.clone().unwrap_or_default(),
            });
            let moved = plan.streams.len() - 1;
            self.met
                .insert(stream.to_owned(), PlannedHead { head, hash, moved });
        }
        Ok(self
            .met
            .get_mut(stream)
            .unwrap_or_else(|| unreachable!("the head was read above")))
    }
}

/// One stream's events within [`crate::AppendSession::append_runs`].
#[derive(Debug, Clone)]
pub struct StreamAppend {
    pub stream: String,
    pub expected: ExpectedVersion,
    pub events: Vec<NewEvent>,
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
    /// The heads of `streams`, in the order asked.
    async fn stream_heads(&mut self, streams: &[&str]) -> Result<Vec<StreamHead>, StoreError>;
    /// Takes the lock, then reads the rows of `caller_ids` and the heads of
    /// `streams` (in the order asked) from the database. A backend where a
    /// statement costs a round trip reads them in one.
    async fn read_under_lock(
        &mut self,
        caller_ids: &[String],
        streams: &[&str],
    ) -> Result<AppendReads, StoreError> {
        let ledger_head = self.lock_ledger_head().await?;
        let held = self.rows_by_caller_ids(caller_ids).await?;
        let heads = self.stream_heads(streams).await?;
        Ok(AppendReads {
            ledger_head,
            held,
            heads,
        })
    }
    /// What this transaction has read under the lock, as its writes since
    /// leave it (see [`KeptReads`]).
    fn kept_reads(&mut self) -> &mut Option<KeptReads>;
    /// Writes `plan`. It may take the text of the rows' payload, metadata and
    /// hash as it goes: what an append returns does not need them.
    async fn write_plan(&mut self, plan: &mut AppendPlan) -> Result<(), StoreError>;
}

/// Reads made under the append lock, which the transaction holds until it
/// ends: every appender takes the lock before it reads or writes events, keys
/// or streams, so only the transaction's own writes can change what was read,
/// and each of them is applied here ([`KeptReads::wrote`]). An append that
/// names nothing beyond them reads nothing again.
#[derive(Debug)]
pub(crate) struct KeptReads {
    ledger_head: LedgerHead,
    /// The ledger head's position when the first of them was read.
    read_at: i64,
    /// Each id read, with its event when one holds it.
    caller_ids: HashMap<String, Option<EventRow>>,
    heads: HashMap<String, StreamHead>,
}

/// Ids a transaction keeps the reads of, at most: past it, the next read starts afresh.
const REMEMBERED_CALLER_IDS: usize = 20_000;

impl KeptReads {
    /// Takes in what one read found.
    fn add(&mut self, caller_ids: &[String], streams: &[&str], reads: &AppendReads) {
        if self.caller_ids.len() + caller_ids.len() > REMEMBERED_CALLER_IDS {
            self.caller_ids.clear();
        }
        self.ledger_head = reads.ledger_head;
        for id in caller_ids {
            self.caller_ids.insert(id.clone(), None);
        }
        for row in &reads.held {
            if let Some(id) = &row.caller_id {
                self.caller_ids.insert(id.clone(), Some(row.clone()));
            }
        }
        for (stream, head) in streams.iter().zip(&reads.heads) {
            self.heads.insert((*stream).to_owned(), head.clone());
        }
    }

    /// The reads of `caller_ids` and `streams`, if every one of them is known.
    fn answer(&self, caller_ids: &[String], streams: &[&str]) -> Option<AppendReads> {
        let heads = streams
            .iter()
            .map(|stream| self.heads.get(*stream).cloned())
            .collect::<Option<Vec<_>>>()?;
        let mut held = Vec::new();
        for id in caller_ids {
            if let Some(row) = self.caller_ids.get(id)? {
                held.push(row.clone());
            }
        }
        held.sort_by_key(|row| row.position);
        held.dedup_by_key(|row| row.position);
        Some(AppendReads {
            ledger_head: self.ledger_head,
            held,
            heads,
        })
    }

    /// Applies a write of the transaction: the heads move to where it leaves
    /// them, and the ids it wrote are forgotten (their events are read again
    /// when asked for).
    fn wrote(&mut self, plan: &AppendPlan) {
        for row in &plan.rows {
            if let Some(id) = &row.caller_id {
                self.caller_ids.remove(id);
            }
        }
        for moved in &plan.streams {
            self.heads.insert(
                moved.stream.clone(),
                StreamHead {
                    version: moved.version,
                    hash: Some(moved.hash.clone()),
                },
            );
        }
        let last = plan.last();
        self.ledger_head = LedgerHead {
            position: last.position,
            recorded_at: Some(last.recorded_at),
        };
    }
}

/// What this process's commits left the ledger as, as far as their
/// transactions read it under the append lock: the ledger head and the heads
/// of the streams read or written since anyone else last appended. It stays
/// true for as long as nobody else appends; a presumed append plans on it,
/// and the database checks that it still is.
#[derive(Debug, Default)]
pub(crate) struct LastKnown {
    known: Option<Known>,
}

#[derive(Debug)]
struct Known {
    ledger_head: LedgerHead,
    heads: HashMap<String, StreamHead>,
}

/// Stream heads [`LastKnown`] keeps at most: past it, it starts afresh from
/// the last commit's.
const REMEMBERED_STREAMS: usize = 10_000;

impl LastKnown {
    /// Takes in what a transaction kept under the lock, as its writes left
    /// it, once it has committed.
    pub(crate) fn committed(&mut self, kept: KeptReads) {
        match &mut self.known {
            // Nobody appended between the two: both hold.
            Some(known)
                if known.ledger_head.position == kept.read_at
                    && known.heads.len() + kept.heads.len() <= REMEMBERED_STREAMS =>
            {
                known.ledger_head = kept.ledger_head;
                known.heads.extend(kept.heads);
            }
            // A later commit of this process was told first.
            Some(known) if known.ledger_head.position > kept.read_at => {}
            _ => {
                self.known = Some(Known {
                    ledger_head: kept.ledger_head,
                    heads: kept.heads,
                })
            }
        }
    }

    /// Whether anything is known: this process has committed an append.
    pub(crate) fn knows_head(&self) -> bool {
        self.known.is_some()
    }

    /// The reads a presumed append makes of `streams` (see
    /// [`crate::EventStore::begin_presumed`]): the ledger head and the stream
    /// heads as last known, and none of `caller_ids` held. `at` is the head
    /// the session's first reads presumed: later ones must presume the same.
    pub(crate) fn presume(
        &self,
        at: &mut Option<i64>,
        streams: &[&str],
    ) -> Result<AppendReads, StoreError> {
        let known = self
            .known
            .as_ref()
            .ok_or_else(|| StoreError::Stale("this process has not appended yet".to_owned()))?;
        match *at {
            Some(position) if position != known.ledger_head.position => {
                return Err(StoreError::Stale(
                    "this process appended again while the append was being planned".to_owned(),
                ))
            }
            _ => *at = Some(known.ledger_head.position),
        }
        let heads = streams
            .iter()
            .map(|stream| {
                known.heads.get(*stream).cloned().ok_or_else(|| {
                    StoreError::Stale(format!("stream {stream} has not been appended to here"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(AppendReads {
            ledger_head: known.ledger_head,
            held: Vec::new(),
            heads,
        })
    }
}

/// What `transaction` holds under the lock of `caller_ids` and `streams`:
/// from its kept reads when they know every one, else read and kept.
async fn read_locked<T>(
    transaction: &mut T,
    caller_ids: &[String],
    streams: &[&str],
) -> Result<AppendReads, StoreError>
where
    T: WriteTransaction + ?Sized,
{
    if let Some(reads) = transaction
        .kept_reads()
        .as_ref()
        .and_then(|kept| kept.answer(caller_ids, streams))
    {
        return Ok(reads);
    }
    let reads = transaction.read_under_lock(caller_ids, streams).await?;
    transaction
        .kept_reads()
        .get_or_insert_with(|| KeptReads {
            ledger_head: reads.ledger_head,
            read_at: reads.ledger_head.position,
            caller_ids: HashMap::new(),
            heads: HashMap::new(),
        })
        .add(caller_ids, streams, &reads);
    Ok(reads)
}

/// Writes `plan` in `transaction`, moving its kept reads on with it; when the
/// write fails they are dropped, and the next append reads afresh.
async fn write<T>(transaction: &mut T, plan: &mut AppendPlan) -> Result<(), StoreError>
where
    T: WriteTransaction + ?Sized,
{
    let kept = transaction.kept_reads().take();
    transaction.write_plan(plan).await?;
    if let Some(mut kept) = kept {
        kept.wrote(plan);
        *transaction.kept_reads() = Some(kept);
    }
    Ok(())
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
    let run = StreamAppend {
        stream: stream.to_owned(),
        expected,
        events,
    };
    let runs = PreparedRuns::new(vec![run])?;
    let mut appended = append_prepared_in(transaction, runs).await?;
    Ok(appended.pop().unwrap_or_default())
}

/// Appends made ready ahead of the session that writes them: checked, and each
/// event's payload and metadata put in canonical text. Making them reads nothing,
/// so it can go on beside another append of the same session (a file import
/// prepares its next chunk while the chunk before is written); what is left for
/// [`crate::AppendSession::append_prepared`] is what needs the ledger: the look-up,
/// the hashes and the write.
#[derive(Debug)]
pub struct PreparedRuns {
    runs: Vec<(String, ExpectedVersion, Vec<PreparedEvent>)>,
    event_count: usize,
}

impl PreparedRuns {
    /// `runs` made ready, or why the store refuses them (nothing is written then).
    pub fn new(runs: Vec<StreamAppend>) -> Result<PreparedRuns, StoreError> {
        let mut event_count = 0_usize;
        for run in &runs {
            validate_append(&run.stream, run.expected, &run.events)?;
            event_count += run.events.len();
        }
        if event_count > MAX_EVENTS_PER_APPEND {
            return Err(StoreError::InvalidInput(format!(
                "one append holds at most {MAX_EVENTS_PER_APPEND} events, not {event_count}"
            )));
        }
        let mut prepared = Vec::with_capacity(runs.len());
        let mut last_metadata = None;
        for run in runs {
            let events = prepare_events(run.events, &mut last_metadata)?;
            prepared.push((run.stream, run.expected, events));
        }
        Ok(PreparedRuns {
            runs: prepared,
            event_count,
        })
    }

    /// How many runs there are.
    pub fn len(&self) -> usize {
        self.runs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }
}

/// Appends `runs` in order inside `transaction`, as if each were appended in turn, with
/// one look-up of caller ids and one write for all (see
/// [`crate::AppendSession::append_runs`]). On an error nothing of them is written
/// unless [`may_have_written`] says so.
pub(crate) async fn append_prepared_in<T>(
    transaction: &mut T,
    runs: PreparedRuns,
) -> Result<Vec<Vec<Appended>>, StoreError>
where
    T: WriteTransaction + ?Sized,
{
    let PreparedRuns {
        runs: prepared,
        event_count,
    } = runs;
    if event_count == 0 {
        return Ok(prepared.iter().map(|_| Vec::new()).collect());
    }
    // The lock comes first so that everything read is what the append writes over.
    let caller_ids = distinct_caller_ids(prepared.iter().flat_map(|(_, _, events)| events));
    let streams = distinct_streams(prepared.iter().map(|(stream, _, _)| stream.as_str()));
    let AppendReads {
        ledger_head,
        held,
        heads,
    } = read_locked(transaction, &caller_ids, &streams).await?;
    let mut heads = PlannedHeads::new(&streams, heads);
    let mut seen = SeenIds::new(&held);
    let mut fresh = Vec::with_capacity(prepared.len());
    for (stream, _, events) in &prepared {
        fresh.push(seen.fresh(stream, events)?);
    }
    drop(seen);
    let mut plan = AppendPlan {
        previous_position: ledger_head.position,
        rows: Vec::with_capacity(event_count),
        streams: Vec::new(),
    };
    let recorded_at = recorded_at(ledger_head, Utc::now());
    let mut run_lengths = Vec::with_capacity(prepared.len());
    for ((stream, expected, events), fresh) in prepared.into_iter().zip(fresh) {
        let fresh = keep_fresh(events, fresh);
        run_lengths.push(fresh.len());
        if fresh.is_empty() {
            continue;
        }
        let planned = heads.of(&mut plan, &stream)?;
        check_expected_version(&stream, expected, planned.head.version)?;
        let first_position = ledger_head.position + plan.rows.len() as i64 + 1;
        let rows = plan_rows(
            &stream,
            fresh,
            planned.head.version,
            &mut planned.hash,
            first_position,
            recorded_at,
        );
        let last = rows
            .last()
            .unwrap_or_else(|| unreachable!("a run has rows"));
        plan.advance(planned, last);
        plan.rows.extend(rows);
    }
    if !plan.rows.is_empty() {
        write(transaction, &mut plan).await?;
    }
    let mut rows = plan.rows.iter();
    Ok(run_lengths
        .into_iter()
        .map(|length| rows.by_ref().take(length).map(EventRow::appended).collect())
        .collect())
}

/// [`crate::AppendSession::lock_and_look_up`] in `transaction`: the events of
/// `caller_ids` and the versions of `streams`, read under the lock by
/// [`read_locked`].
pub(crate) async fn lock_and_look_up_in<T>(
    transaction: &mut T,
    caller_ids: &[String],
    streams: &[&str],
) -> Result<(Vec<StoredEvent>, Vec<i64>), StoreError>
where
    T: WriteTransaction + ?Sized,
{
    let AppendReads { held, heads, .. } = read_locked(transaction, caller_ids, streams).await?;
    Ok((
        into_stored_events(held)?,
        heads.into_iter().map(|head| head.version).collect(),
    ))
}

/// Each of `streams` once, in the order first met.
fn distinct_streams<'a>(streams: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut met = std::collections::HashSet::new();
    streams.filter(|stream| met.insert(*stream)).collect()
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
    if events.is_empty() {
        return Ok(Vec::new());
    }
    // One plan for the whole call, whatever the streams: on a log whose streams
    // interleave, a plan per run of one stream would cost statements per event.
    let streams = distinct_streams(events.iter().map(|event| event.stream.as_str()));
    let AppendReads {
        ledger_head, heads, ..
    } = read_locked(transaction, &[], &streams).await?;
    let mut heads = PlannedHeads::new(&streams, heads);
    let mut plan = AppendPlan {
        previous_position: ledger_head.position,
        rows: Vec::with_capacity(events.len()),
        streams: Vec::new(),
    };
    let mut previous_recorded_at = ledger_head.recorded_at;
    for event in events {
        let stream = event.stream.clone();
        validate_stream_name(&stream)?;
        let planned = heads.of(&mut plan, &stream)?;
        let position = ledger_head.position + plan.rows.len() as i64 + 1;
        let row = restored_row(
            event,
            planned.head.version + 1,
            position,
            &mut planned.hash,
            previous_recorded_at,
        )?;
        plan.advance(planned, &row);
        previous_recorded_at = Some(row.recorded_at);
        plan.rows.push(row);
    }
    write(transaction, &mut plan).await?;
    Ok(plan.rows.iter().map(EventRow::appended).collect())
}

/// The row of one restored event at `version` and `position`, chained to
/// `previous_hash` (moved on to its hash), or why it cannot be restored.
fn restored_row(
    event: StoredEvent,
    version: i64,
    position: i64,
    previous_hash: &mut [u8; 32],
    previous_recorded_at: Option<DateTime<Utc>>,
) -> Result<EventRow, StoreError> {
    let stream = event.stream.clone();
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
            "recorded before the ledger's last event: positions would not follow time".to_owned(),
        ));
    }
    let metadata_json = metadata_json(&event.metadata)?;
    let mut row = EventRow {
        position,
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
    *previous_hash = event_hash(previous_hash, &row);
    row.hash = chain::hash_text(previous_hash);
    if row.hash != event.hash {
        return Err(refuse(
            "its hash is not the hash of the event chained to the stream".to_owned(),
        ));
    }
    Ok(row)
}

/// Refusals are decided before anything is written; any other error may come after a
/// partial write (SQLite keeps a transaction going after a failed statement), so the
/// session must not commit.
pub(crate) fn may_have_written(error: &StoreError) -> bool {
    !matches!(
        error,
        StoreError::Conflict { .. }
            | StoreError::IdConflict { .. }
            | StoreError::InvalidInput(_)
            | StoreError::Stale(_)
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

/// The metadata of the event prepared last, and its canonical text: the events of
/// one append mostly share their metadata, so it is encoded once.
type LastMetadata = Option<(EventMetadata, String)>;

fn prepare_events(
    events: Vec<NewEvent>,
    last_metadata: &mut LastMetadata,
) -> Result<Vec<PreparedEvent>, StoreError> {
    let mut prepared = Vec::with_capacity(events.len());
    for event in events {
        let metadata_json = match last_metadata {
            Some((metadata, json)) if *metadata == event.metadata => json.clone(),
            _ => {
                let json = metadata_json(&event.metadata)?;
                *last_metadata = Some((event.metadata.clone(), json.clone()));
                json
            }
        };
        prepared.push(prepare_event(event, metadata_json)?);
    }
    Ok(prepared)
}

fn prepare_event(event: NewEvent, metadata_json: String) -> Result<PreparedEvent, StoreError> {
    let payload_json = event.payload.into_string();
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
        metadata_json,
        business_date: event.business_date,
    })
}

fn metadata_json(metadata: &EventMetadata) -> Result<String, StoreError> {
    CanonicalJson::of(metadata)
        .map(CanonicalJson::into_string)
        .map_err(|error| StoreError::InvalidInput(format!("unserializable metadata: {error}")))
}

fn distinct_caller_ids<'a>(events: impl Iterator<Item = &'a PreparedEvent>) -> Vec<String> {
    let mut caller_ids: Vec<String> = events.filter_map(|event| event.caller_id.clone()).collect();
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

/// The caller ids an append must not take again: those the ledger holds, and those
/// taken earlier in the same append.
struct SeenIds<'a> {
    held: HashMap<&'a str, Content<'a>>,
    batch: HashMap<&'a str, Content<'a>>,
}

impl<'a> SeenIds<'a> {
    fn new(held: &'a [EventRow]) -> Self {
        let held = held
            .iter()
            .filter_map(|row| {
                let caller_id = row.caller_id.as_deref()?;
                let content = Content {
                    stream: &row.stream,
                    event_type: &row.event_type,
                    business_date: row.business_date,
                    payload_json: &row.payload_json,
                };
                Some((caller_id, content))
            })
            .collect();
        SeenIds {
            held,
            batch: HashMap::new(),
        }
    }

    /// Which of `events`, appended to `stream`, are new: not those the ledger (or
    /// this append) already holds with the same content. The same caller id with
    /// different content is an [`StoreError::IdConflict`].
    fn fresh(
        &mut self,
        stream: &'a str,
        events: &'a [PreparedEvent],
    ) -> Result<Vec<bool>, StoreError> {
        let mut fresh = Vec::with_capacity(events.len());
        for event in events {
            let Some(caller_id) = event.caller_id.as_deref() else {
                fresh.push(true);
                continue;
            };
            let content = Content {
                stream,
                event_type: &event.event_type,
                business_date: event.business_date,
                payload_json: &event.payload_json,
            };
            let earlier = self
                .held
                .get(caller_id)
                .or_else(|| self.batch.get(caller_id));
            match earlier {
                Some(earlier) if *earlier == content => fresh.push(false),
                Some(_) => {
                    return Err(StoreError::IdConflict {
                        caller_id: caller_id.to_owned(),
                    })
                }
                None => {
                    self.batch.insert(caller_id, content);
                    fresh.push(true);
                }
            }
        }
        Ok(fresh)
    }
}

/// `events` without those `fresh` (from [`SeenIds::fresh`]) says are held already.
fn keep_fresh(events: Vec<PreparedEvent>, fresh: Vec<bool>) -> Vec<PreparedEvent> {
    events
        .into_iter()
        .zip(fresh)
        .filter_map(|(event, fresh)| fresh.then_some(event))
        .collect()
}

/// Drops the events `held` (or this batch) holds already; see [`SeenIds::fresh`].
#[cfg(test)]
fn skip_held(
    stream: &str,
    events: Vec<PreparedEvent>,
    held: &[EventRow],
) -> Result<Vec<PreparedEvent>, StoreError> {
    let fresh = SeenIds::new(held).fresh(stream, &events)?;
    Ok(keep_fresh(events, fresh))
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

/// The hash a stream's next event chains to.
fn head_hash(stream: &str, head: &StreamHead) -> Result<[u8; 32], StoreError> {
    match &head.hash {
        None if head.version == 0 => Ok(chain::GENESIS),
        Some(hash_hex) if head.version > 0 => chain::decode_hash(hash_hex).ok_or_else(|| {
            StoreError::Integrity(format!(
                "stream {stream}: the stored head hash is not a SHA-256 hash"
            ))
        }),
        _ => Err(StoreError::Integrity(format!(
            "stream {stream}: the head at version {} disagrees with its hash",
            head.version
        ))),
    }
}

/// The recording time of an append: `now` truncated to microseconds, never below the
/// last recorded time, so `recorded_at` follows position order.
fn recorded_at(ledger_head: LedgerHead, now: DateTime<Utc>) -> DateTime<Utc> {
    let now = now.trunc_subsecs(6);
    match ledger_head.recorded_at {
        Some(last) if last > now => last,
        _ => now,
    }
}

/// Numbers, stamps and chains the fresh events of one stream, from `version` and
/// `previous_hash` (left at the last event's hash) and ledger position `first_position`.
fn plan_rows(
    stream: &str,
    events: Vec<PreparedEvent>,
    version: i64,
    previous_hash: &mut [u8; 32],
    first_position: i64,
    recorded_at: DateTime<Utc>,
) -> Vec<EventRow> {
    let mut rows = Vec::with_capacity(events.len());
    for (offset, event) in (0_i64..).zip(events) {
        let mut row = EventRow {
            position: first_position + offset,
            event_id: Uuid::now_v7(),
            caller_id: event.caller_id,
            stream: stream.to_owned(),
            version: version + offset + 1,
            event_type: event.event_type,
            schema_version: event.schema_version,
            payload_json: event.payload_json,
            metadata_json: event.metadata_json,
            business_date: event.business_date,
            recorded_at,
            hash: String::new(),
        };
        *previous_hash = event_hash(previous_hash, &row);
        row.hash = chain::hash_text(previous_hash);
        rows.push(row);
    }
    rows
}

/// [`crate::AppendSession`] for a session under the append lock whose reads
/// and writes are its [`WriteTransaction`]'s, and which has a `poisoned`
/// flag: set when an append failed after it may have written, so that the
/// session can only roll back. Every method but the two that end the
/// session, which each backend gives after the type.
macro_rules! impl_locked_append_session {
    ($session:ty, { $($end:tt)* }) => {
        #[async_trait::async_trait]
        impl $crate::AppendSession for $session {
            #[tracing::instrument(name = "bondledger.store.session.append", skip_all, fields(stream = %stream, events = events.len()))]
            async fn append(
                &mut self,
                stream: &str,
                expected: $crate::ExpectedVersion,
                events: Vec<$crate::NewEvent>,
            ) -> Result<Vec<$crate::Appended>, $crate::StoreError> {
                let outcome = $crate::append::append_in(&mut *self, stream, expected, events).await;
                if outcome.as_ref().is_err_and($crate::append::may_have_written) {
                    self.poisoned = true;
                }
                outcome
            }

            #[tracing::instrument(name = "bondledger.store.session.append_runs", skip_all, fields(runs = runs.len()))]
            async fn append_prepared(
                &mut self,
                runs: $crate::PreparedRuns,
            ) -> Result<Vec<Vec<$crate::Appended>>, $crate::StoreError> {
                let outcome = $crate::append::append_prepared_in(&mut *self, runs).await;
                if outcome.as_ref().is_err_and($crate::append::may_have_written) {
                    self.poisoned = true;
                }
                outcome
            }

            #[tracing::instrument(name = "bondledger.store.session.find_by_caller_ids", skip_all, fields(ids = caller_ids.len()))]
            async fn find_by_caller_ids(
                &mut self,
                caller_ids: &[String],
            ) -> Result<Vec<$crate::StoredEvent>, $crate::StoreError> {
                $crate::event::into_stored_events(
                    $crate::append::WriteTransaction::rows_by_caller_ids(self, caller_ids).await?,
                )
            }

            #[tracing::instrument(name = "bondledger.store.session.stream_versions", skip_all, fields(streams = streams.len()))]
            async fn stream_versions(
                &mut self,
                streams: &[&str],
            ) -> Result<Vec<i64>, $crate::StoreError> {
                Ok($crate::append::WriteTransaction::stream_heads(self, streams)
                    .await?
                    .into_iter()
                    .map(|head| head.version)
                    .collect())
            }

            #[tracing::instrument(name = "bondledger.store.session.head_position", skip_all)]
            async fn head_position(&mut self) -> Result<i64, $crate::StoreError> {
                Ok($crate::append::WriteTransaction::lock_ledger_head(self).await?.position)
            }

            #[tracing::instrument(name = "bondledger.store.session.lock_and_look_up", skip_all, fields(ids = caller_ids.len(), streams = streams.len()))]
            async fn lock_and_look_up(
                &mut self,
                caller_ids: &[String],
                streams: &[&str],
            ) -> Result<(Vec<$crate::StoredEvent>, Vec<i64>), $crate::StoreError> {
                $crate::append::lock_and_look_up_in(self, caller_ids, streams).await
            }

            #[tracing::instrument(name = "bondledger.store.session.restore", skip_all, fields(events = events.len()))]
            async fn restore(
                &mut self,
                events: Vec<$crate::StoredEvent>,
            ) -> Result<Vec<$crate::Appended>, $crate::StoreError> {
                let outcome = $crate::append::restore_in(&mut *self, events).await;
                if outcome.is_err() {
                    // A refusal may come after earlier runs of this call were written.
                    self.poisoned = true;
                }
                outcome
            }

            $($end)*
        }
    };
}
pub(crate) use impl_locked_append_session;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn date() -> NaiveDate {
        NaiveDate::from_ymd_opt(2024, 5, 1).expect("valid date")
    }

    fn event(caller_id: Option<&str>, payload: serde_json::Value) -> PreparedEvent {
        let mut prepared = prepare_events(
            vec![NewEvent {
                caller_id: caller_id.map(str::to_owned),
                event_type: "Imported".to_owned(),
                schema_version: 1,
                payload: payload.into(),
                metadata: EventMetadata::default(),
                business_date: date(),
            }],
            &mut None,
        )
        .expect("a valid event");
        prepared.pop().expect("one event prepared")
    }

    /// The rows of a first append to stream `s` on a ledger at position 10.
    fn plan(events: Vec<PreparedEvent>) -> Vec<EventRow> {
        plan_rows("s", events, 0, &mut chain::GENESIS.clone(), 11, Utc::now())
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
        let held = plan(vec![event(Some("a"), json!({"x": 1}))]);
        let same =
            skip_held("s", vec![event(Some("a"), json!({"x": 1}))], &held).expect("same content");
        assert!(same.is_empty());
        let elsewhere = skip_held("t", vec![event(Some("a"), json!({"x": 1}))], &held);
        assert!(matches!(elsewhere, Err(StoreError::IdConflict { .. })));
    }

    #[test]
    fn rows_continue_the_stream_and_the_ledger() {
        let rows = plan(vec![event(None, json!(1)), event(None, json!(2))]);
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
        assert_eq!(recorded_at(ledger, Utc::now()), later);
    }

    #[test]
    fn a_head_without_its_hash_is_refused() {
        let head = StreamHead {
            version: 3,
            hash: None,
        };
        assert!(matches!(
            head_hash("s", &head),
            Err(StoreError::Integrity(_))
        ));
        let fresh = StreamHead {
            version: 0,
            hash: None,
        };
        assert_eq!(
            head_hash("s", &fresh).expect("a new stream"),
            chain::GENESIS
        );
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
            payload: json!(null).into(),
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
