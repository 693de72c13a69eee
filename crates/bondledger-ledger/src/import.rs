//! Appending movements: each batch (a file, a request) is decided movement
//! by movement against the state it will commit on, and appended in one
//! transaction, all or nothing.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use bondledger_domain::movement::Movement;
use bondledger_domain::{
    decide, Context, Envelope, ManualNo, ManualState, Mode, RecordedMovement, Replay,
    ReversalTarget, SCHEMA_VERSION,
};
use bondledger_store::{
    AppendSession, Appended, CanonicalJson, EventMetadata, ExpectedVersion, NewEvent, PreparedRuns,
    StoreError, StoredEvent, StreamAppend,
};
use serde_json::Value;
use tracing::Instrument;

use crate::query::AsOf;
use crate::source::{read_lines, read_movements_ahead, Located};
use crate::{Ledger, LedgerError};

/// Movements decided and looked up together: bounds memory on long files.
pub(crate) const CHUNK_MOVEMENTS: usize = 2_000;
/// A batch of at most this many movements (a request, a short text) is
/// appended with the others waiting at the same moment, in one transaction.
pub(crate) const MAX_GROUPED_MOVEMENTS: usize = 1_000;
/// How often a batch is decided again when another writer got in first.
const MAX_ATTEMPTS: u32 = 8;

/// One movement appended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendedMovement {
    pub line: usize,
    pub id: Option<String>,
    pub manual: String,
    pub version: i64,
    pub position: i64,
}

/// Movements listed one by one in an [`ImportOutcome`]; past that only
/// counted, so a file of millions of lines needs no memory per line.
pub const MAX_LISTED_MOVEMENTS: usize = 10_000;

/// What a batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportOutcome {
    pub appended_count: usize,
    /// Movements whose id the ledger already held with the same content.
    pub already_held_count: usize,
    /// The first [`MAX_LISTED_MOVEMENTS`] movements appended.
    pub appended: Vec<AppendedMovement>,
    /// The first [`MAX_LISTED_MOVEMENTS`] movements already held.
    pub already_held: Vec<AppendedMovement>,
    /// Listed movements already held that repeat a movement of this batch not
    /// yet appended: its id → their indexes in `already_held`. They are given
    /// its version and position as it is appended.
    unplaced: HashMap<String, Vec<usize>>,
}

impl ImportOutcome {
    pub(crate) fn append(&mut self, movement: AppendedMovement) {
        let repeats = match &movement.id {
            Some(id) if !self.unplaced.is_empty() => self.unplaced.remove(id),
            _ => None,
        };
        for index in repeats.into_iter().flatten() {
            self.already_held[index].version = movement.version;
            self.already_held[index].position = movement.position;
        }
        self.appended_count += 1;
        if self.appended.len() < MAX_LISTED_MOVEMENTS {
            self.appended.push(movement);
        }
    }

    /// `movement` was already held; version 0 when it repeats one of this
    /// batch not yet appended (see [`IdSeen::Again`]).
    pub(crate) fn held(&mut self, movement: AppendedMovement) {
        self.already_held_count += 1;
        if self.already_held.len() < MAX_LISTED_MOVEMENTS {
            if let (0, Some(id)) = (movement.version, &movement.id) {
                let index = self.already_held.len();
                self.unplaced.entry(id.clone()).or_default().push(index);
            }
            self.already_held.push(movement);
        }
    }
}

/// A manual touched by the batch: its state as the batch evolves it.
#[derive(Clone)]
pub(crate) struct Book {
    pub(crate) state: Option<ManualState>,
    /// The stream version the store holds (this transaction included).
    pub(crate) flushed: i64,
    /// Decided, not yet handed to the store.
    pub(crate) pending: usize,
}

impl Book {
    pub(crate) fn loaded(state: Option<ManualState>) -> Self {
        let flushed = state.as_ref().map_or(0, |s| s.version);
        Book {
            state,
            flushed,
            pending: 0,
        }
    }
}

impl Ledger {
    /// Imports one movement file (interchange §2 `import`): checked whole
    /// first, then decided and appended in one transaction.
    pub async fn import_file(
        &self,
        path: &Path,
        mode: Mode,
        actor: Option<&str>,
    ) -> Result<ImportOutcome, LedgerError> {
        self.import_file_reporting(path, mode, actor, &mut |_| {})
            .await
    }

    /// As [`Ledger::import_file`], telling `progress` the line number up to
    /// which the file's movements are written (not yet committed: the file
    /// commits whole at its end) as each chunk is. A retry starts again from
    /// the first line.
    pub async fn import_file_reporting(
        &self,
        path: &Path,
        mode: Mode,
        actor: Option<&str>,
        progress: &mut (dyn FnMut(usize) + Send),
    ) -> Result<ImportOutcome, LedgerError> {
        let name = path.display().to_string();
        self.with_retries(mode, actor, &name, || read_movements_ahead(path), progress)
            .await
    }

    /// Imports movement-file text held in memory, named `name` in errors.
    pub async fn import_text(
        &self,
        name: &str,
        text: &str,
        mode: Mode,
        actor: Option<&str>,
    ) -> Result<ImportOutcome, LedgerError> {
        let source = || read_lines(Ok(text.as_bytes()), name.to_owned());
        let mut lines = source();
        let mut movements = Vec::new();
        for located in lines.by_ref().take(MAX_GROUPED_MOVEMENTS + 1) {
            // The first line at fault is what an import reports, whatever comes after.
            movements.push(located?);
        }
        if movements.len() <= MAX_GROUPED_MOVEMENTS {
            return self
                .append_grouped(movements, mode, actor, name.to_owned())
                .await;
        }
        drop(lines);
        self.with_retries(mode, actor, name, source, &mut |_| {})
            .await
    }

    /// Imports movements already read (an API request), all or nothing.
    /// Line numbers are the movements' indexes from 0.
    pub async fn import_envelopes(
        &self,
        envelopes: &[Envelope],
        mode: Mode,
        actor: Option<&str>,
        source_name: &str,
    ) -> Result<ImportOutcome, LedgerError> {
        let source = || {
            envelopes.iter().enumerate().map(|(index, envelope)| {
                Ok(Located {
                    line: index,
                    envelope: envelope.clone(),
                })
            })
        };
        if envelopes.len() <= MAX_GROUPED_MOVEMENTS {
            let movements = source().collect::<Result<Vec<_>, LedgerError>>()?;
            return self
                .append_grouped(movements, mode, actor, source_name.to_owned())
                .await;
        }
        self.with_retries(mode, actor, source_name, source, &mut |_| {})
            .await
    }

    /// Decides and appends the movements of `source` in one pass. A file is
    /// checked whole before anything is written: nothing is committed until
    /// its last line, and when deciding fails, the lines after are still read
    /// so that a malformed line anywhere is what the import reports.
    /// `progress` is told the last line written as each chunk is.
    pub(crate) async fn with_retries<I>(
        &self,
        mode: Mode,
        actor: Option<&str>,
        source_name: &str,
        source: impl Fn() -> I,
        progress: &mut (dyn FnMut(usize) + Send),
    ) -> Result<ImportOutcome, LedgerError>
    where
        I: Iterator<Item = Result<Located, LedgerError>>,
    {
        for attempt in 1..=MAX_ATTEMPTS {
            let mut movements = source();
            match self
                .import_once(mode, actor, source_name, &mut movements, progress)
                .await
            {
                Err(LedgerError::Store(StoreError::Conflict { .. })) => {
                    tracing::info!(attempt, "another writer appended first; deciding again");
                }
                Err(error) if !is_malformed(&error) => {
                    return match movements.find_map(Result::err) {
                        Some(malformed) => Err(malformed),
                        None => Err(error),
                    };
                }
                other => return other,
            }
        }
        Err(LedgerError::Contention {
            attempts: MAX_ATTEMPTS,
        })
    }

    #[tracing::instrument(name = "bondledger.ledger.import", skip_all, fields(source = %source_name))]
    async fn import_once(
        &self,
        mode: Mode,
        actor: Option<&str>,
        source_name: &str,
        movements: &mut impl Iterator<Item = Result<Located, LedgerError>>,
        progress: &mut (dyn FnMut(usize) + Send),
    ) -> Result<ImportOutcome, LedgerError> {
        let mut session = self.store.begin().await?;
        let mut decider = Decider {
            books: HashMap::new(),
            mode,
            metadata: EventMetadata {
                actor: actor.map(str::to_owned),
                ..EventMetadata::default()
            },
            source_name: source_name.to_owned(),
            outcome: ImportOutcome::default(),
        };
        // Each chunk is decided while the one before it is written, in a
        // task of its own: the append's planning and the store's work go on
        // beside the deciding. Once decided, a chunk is made ready for the
        // store (its payloads put in canonical text) while that append still
        // runs, so that its own append has only the ledger's part left.
        let mut chunk = next_chunk(movements)?;
        let mut ready = decider.ready(Vec::new());
        // What `ready` holds: the ids its movements took.
        let mut taken = HashMap::new();
        let mut waiting = HashMap::new();
        // The last line of the movements `ready` holds.
        let mut ready_through = 0;
        while !chunk.is_empty() {
            let chunk_through = chunk.last().map_or(ready_through, |located| located.line);
            let lookups = decider
                .look_up(self, &mut *session, &chunk, std::mem::take(&mut waiting))
                .await?;
            let Ready { runs, lines } = ready;
            let append = tokio::spawn(
                async move {
                    let appended = append_prepared(&mut *session, runs).await;
                    (session, appended)
                }
                .instrument(tracing::Span::current()),
            );
            let decided = decider.decide_chunk(chunk, &lookups, &taken).await;
            let next = match (decided, next_chunk(movements)) {
                (Ok(decided), Ok(next)) => {
                    waiting = waiting_for(&next, &decided);
                    Ok((next, decided.taken, decider.ready(decided.pending)))
                }
                (Err(error), _) | (_, Err(error)) => Err(error),
            };
            let appended;
            (session, appended) = append.await.unwrap_or_else(|error| {
                // The task is never cancelled: it is awaited right here.
                std::panic::resume_unwind(error.into_panic())
            });
            decider.record(lines, appended?)?;
            progress(ready_through);
            ready_through = chunk_through;
            (chunk, taken, ready) = next?;
        }
        let Ready { runs, lines } = ready;
        let appended = append_prepared(&mut *session, runs).await?;
        decider.record(lines, appended)?;
        progress(ready_through);
        session.commit().await?;
        self.keep_states(decider.books);
        Ok(decider.outcome)
    }

    /// The state of each of `manuals` (distinct), whose streams stand at
    /// `versions`: the cached one when it is at that version; else replayed.
    pub(crate) async fn states_at(
        &self,
        manuals: &[&ManualNo],
        versions: &[i64],
    ) -> Result<Vec<Option<ManualState>>, LedgerError> {
        let mut states = Vec::with_capacity(manuals.len());
        for (manual, version) in manuals.iter().zip(versions) {
            if let Some(cached) = self.states.get(manual) {
                if cached.version == *version {
                    states.push(Some(ManualState::clone(&cached)));
                    continue;
                }
                self.states.forget(manual);
            }
            states.push(self.replay(manual.as_str(), AsOf::Latest).await?);
        }
        Ok(states)
    }

    /// Keeps the states of `books` once their appends have committed.
    pub(crate) fn keep_states(&self, books: HashMap<ManualNo, Book>) {
        for (manual, book) in books {
            debug_assert_eq!(book.pending, 0, "every decided movement was appended");
            match book.state {
                Some(state) if state.version == book.flushed => {
                    self.states.put(&manual, Arc::new(state));
                }
                _ => self.states.forget(&manual),
            }
        }
    }
}

/// Whether an import failed on the text of its source (then no line after
/// it was read).
fn is_malformed(error: &LedgerError) -> bool {
    matches!(
        error,
        LedgerError::Malformed { .. } | LedgerError::Unreadable { .. }
    )
}

/// What a movement's id names already.
pub(crate) enum IdSeen {
    /// Nothing: the movement is new.
    New,
    /// This very movement, held by the store or taken earlier in the batch
    /// (a harmless re-import); version and position 0 for one not yet written,
    /// until its append gives them.
    Again(AppendedMovement),
    /// Another movement: the id is held with other content.
    Conflict,
}

/// What `id` (the id of `envelope`, on `line`) names among the events the
/// store `held` and `taken`, the movement of this batch that took it earlier.
pub(crate) fn id_seen(
    line: usize,
    id: &str,
    envelope: &Envelope,
    held: &HashMap<String, StoredEvent>,
    taken: Option<&Envelope>,
) -> IdSeen {
    let (same, manual, version, position) = match (held.get(id), taken) {
        (Some(stored), _) => (
            same_movement(stored, envelope),
            stored.stream.clone(),
            stored.version,
            stored.position,
        ),
        (None, Some(earlier)) => (earlier == envelope, envelope.manual.to_string(), 0, 0),
        (None, None) => return IdSeen::New,
    };
    if !same {
        return IdSeen::Conflict;
    }
    IdSeen::Again(AppendedMovement {
        line,
        id: Some(id.to_owned()),
        manual,
        version,
        position,
    })
}

/// Whether a held event is this very movement (a harmless re-import).
pub(crate) fn same_movement(stored: &StoredEvent, envelope: &Envelope) -> bool {
    stored.stream == envelope.manual.as_str()
        && stored.event_type == envelope.movement.kind().as_str()
        && stored.business_date == envelope.date
        && stored.payload.get("movement") == Some(&Value::Object(envelope.movement.fields()))
}

/// The state of a batch being decided, apart from the session it is
/// written in (so that a chunk is decided while the one before is written).
struct Decider {
    books: HashMap<ManualNo, Book>,
    mode: Mode,
    metadata: EventMetadata,
    source_name: String,
    outcome: ImportOutcome,
}

/// Movements decided and not yet handed to the store.
struct Decided {
    /// (line, manual, event), in the order they came.
    pending: Vec<(usize, ManualNo, NewEvent)>,
    /// The ids they take, with the movements that took them.
    taken: HashMap<String, Envelope>,
}

/// Decided movements made ready for the store: their runs, and the lines of
/// each run.
struct Ready {
    runs: Result<PreparedRuns, StoreError>,
    lines: Vec<(ManualNo, Vec<usize>)>,
}

/// What deciding a chunk looks up in the store, read before it starts.
struct Lookups {
    /// The events the store holds under the ids the chunk names.
    held: HashMap<String, StoredEvent>,
    /// Events the chunk may reverse that were decided before it and are not
    /// yet in the store: (line, manual, event).
    waiting: HashMap<String, (usize, ManualNo, NewEvent)>,
}

impl Lookups {
    /// The event `id` names, as a reversal of it sees it: decided before this
    /// chunk and not yet written, or held by the store.
    fn reversal_target(&self, id: &str) -> Result<Option<ReversalTarget>, LedgerError> {
        if let Some((line, manual, event)) = self.waiting.get(id) {
            return pending_reversal_target(*line, manual, event).map(Some);
        }
        self.held.get(id).map(reversal_target).transpose()
    }
}

/// The next [`CHUNK_MOVEMENTS`] movements of `movements` (fewer at its end).
fn next_chunk(
    movements: &mut impl Iterator<Item = Result<Located, LedgerError>>,
) -> Result<Vec<Located>, LedgerError> {
    let mut chunk = Vec::with_capacity(CHUNK_MOVEMENTS);
    for located in movements.by_ref().take(CHUNK_MOVEMENTS) {
        chunk.push(located?);
    }
    Ok(chunk)
}

async fn append_prepared(
    session: &mut dyn AppendSession,
    runs: Result<PreparedRuns, StoreError>,
) -> Result<Vec<Vec<Appended>>, LedgerError> {
    let runs = runs?;
    if runs.is_empty() {
        return Ok(Vec::new());
    }
    Ok(session.append_prepared(runs).await?)
}

/// The events of `decided` (not yet in the store) that `chunk` reverses.
fn waiting_for(
    chunk: &[Located],
    decided: &Decided,
) -> HashMap<String, (usize, ManualNo, NewEvent)> {
    let mut waiting = HashMap::new();
    for id in chunk
        .iter()
        .filter_map(|located| reversed_id(&located.envelope))
    {
        if let Some(found) = pending_with_id(&decided.pending, &decided.taken, id) {
            waiting.insert(id.clone(), found.clone());
        }
    }
    waiting
}

/// Movements decided between two looks at whether the append of the chunk
/// before has finished.
const DECIDED_BETWEEN_POLLS: usize = 32;

/// The manual on the other side of a remnant carry-over, whose registration
/// deciding `envelope` reads.
pub(crate) fn counterparty_manual(envelope: &Envelope) -> Option<&ManualNo> {
    match &envelope.movement {
        Movement::RemnantOut(remnant) => Some(&remnant.to_manual),
        Movement::RemnantIn(remnant) => Some(&remnant.from_manual),
        _ => None,
    }
}

/// Every manual deciding `envelope` reads: its own and its counterparty's.
pub(crate) fn manuals_of(envelope: &Envelope) -> impl Iterator<Item = &ManualNo> {
    std::iter::once(&envelope.manual).chain(counterparty_manual(envelope))
}

/// The caller id of the event `envelope` reverses, when it is a reversal.
pub(crate) fn reversed_id(envelope: &Envelope) -> Option<&String> {
    match &envelope.movement {
        Movement::Reversed(reversal) => Some(&reversal.event),
        _ => None,
    }
}

/// The latest of `pending` (decided, not yet in the store) under caller id
/// `id`. `taken` holds the ids `pending` took (each with the movement that
/// took it): the events are searched only when the id is among them, since
/// most reversals name an event already further on.
pub(crate) fn pending_with_id<'a>(
    pending: &'a [(usize, ManualNo, NewEvent)],
    taken: &HashMap<String, Envelope>,
    id: &str,
) -> Option<&'a (usize, ManualNo, NewEvent)> {
    if !taken.contains_key(id) {
        return None;
    }
    pending
        .iter()
        .rev()
        .find(|(_, _, event)| event.caller_id.as_deref() == Some(id))
}

impl Decider {
    /// Reads what deciding `chunk` needs from the store: the events its ids
    /// and reversals name, and the state of each manual the batch meets for
    /// the first time. `waiting` is what the chunk reverses of the movements
    /// being written meanwhile, which are not in the store yet.
    async fn look_up(
        &mut self,
        ledger: &Ledger,
        session: &mut dyn AppendSession,
        chunk: &[Located],
        waiting: HashMap<String, (usize, ManualNo, NewEvent)>,
    ) -> Result<Lookups, LedgerError> {
        let reversed: Vec<&String> = chunk
            .iter()
            .filter_map(|located| reversed_id(&located.envelope))
            .collect();
        let mut ids: Vec<String> = chunk
            .iter()
            .filter_map(|located| located.envelope.id.as_ref())
            .chain(reversed.iter().copied())
            .cloned()
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let mut met = HashSet::new();
        let manuals: Vec<&ManualNo> = chunk
            .iter()
            .flat_map(|located| manuals_of(&located.envelope))
            .filter(|manual| !self.books.contains_key(*manual) && met.insert(*manual))
            .collect();
        let streams: Vec<&str> = manuals.iter().map(|manual| manual.as_str()).collect();
        // Under the append lock, which the import's first write would take
        // anyway: the append of these movements reads nothing of this again.
        let (held, versions) = session.lock_and_look_up(&ids, &streams).await?;
        let held: HashMap<String, StoredEvent> = held
            .into_iter()
            .filter_map(|stored| Some((stored.caller_id.clone()?, stored)))
            .collect();
        let states = ledger.states_at(&manuals, &versions).await?;
        for (manual, state) in manuals.into_iter().zip(states) {
            self.books.insert(manual.clone(), Book::loaded(state));
        }
        Ok(Lookups { held, waiting })
    }

    /// Decides `chunk` against the books, `earlier` the ids taken by the
    /// movements decided before it and not yet written. Yields now and then,
    /// so that the append it runs beside moves on where the runtime has a
    /// single thread.
    async fn decide_chunk(
        &mut self,
        chunk: Vec<Located>,
        lookups: &Lookups,
        earlier: &HashMap<String, Envelope>,
    ) -> Result<Decided, LedgerError> {
        // Sized for the whole chunk: growing them would move every
        // movement decided so far, and they are large.
        let mut decided = Decided {
            pending: Vec::with_capacity(chunk.len()),
            taken: HashMap::with_capacity(chunk.len()),
        };
        for (index, Located { line, envelope }) in chunk.into_iter().enumerate() {
            if index % DECIDED_BETWEEN_POLLS == DECIDED_BETWEEN_POLLS - 1 {
                tokio::task::yield_now().await;
            }
            if let Some(id) = &envelope.id {
                let taken = decided.taken.get(id).or_else(|| earlier.get(id));
                match id_seen(line, id, &envelope, &lookups.held, taken) {
                    IdSeen::Again(movement) => {
                        self.outcome.held(movement);
                        continue;
                    }
                    IdSeen::Conflict => {
                        return Err(LedgerError::IdConflict {
                            source_name: self.source_name.clone(),
                            line,
                            id: id.clone(),
                        });
                    }
                    IdSeen::New => {}
                }
            }
            let (event, envelope) = self.decide_one(line, envelope, lookups, &decided)?;
            if let Some(id) = &envelope.id {
                decided.taken.insert(id.clone(), envelope);
            }
            decided.pending.push(event);
        }
        Ok(decided)
    }

    fn decide_one(
        &mut self,
        line: usize,
        envelope: Envelope,
        lookups: &Lookups,
        decided: &Decided,
    ) -> Result<((usize, ManualNo, NewEvent), Envelope), LedgerError> {
        let target = match reversed_id(&envelope) {
            // The event reversed may be in this chunk, decided before it.
            Some(id) => match pending_with_id(&decided.pending, &decided.taken, id) {
                Some((line, manual, event)) => Some(pending_reversal_target(*line, manual, event)?),
                None => lookups.reversal_target(id)?,
            },
            None => None,
        };
        let counterparty = counterparty_manual(&envelope)
            .and_then(|other| self.book(other).state.as_ref())
            .map(|state| state.registration.clone());
        let manual = envelope.manual.clone();
        let context = Context {
            mode: self.mode,
            counterparty: counterparty.as_ref(),
            reversal_target: target.as_ref(),
        };
        let book = self
            .books
            .get_mut(&manual)
            .unwrap_or_else(|| unreachable!("every manual of a chunk is looked up"));
        let recorded = decide_movement(book, envelope, &context, line, &self.source_name)?;
        let event = new_event(&recorded, &self.metadata);
        // The movement as decided is the one its id names from now on.
        Ok(((line, manual, event), recorded.envelope))
    }

    fn book(&self, manual: &ManualNo) -> &Book {
        self.books
            .get(manual)
            .unwrap_or_else(|| unreachable!("every manual of a chunk is looked up"))
    }

    /// `pending` (decided, in order) as runs for the store, one per stretch of
    /// the same manual, made ready; and the lines of each run. The movements
    /// of the chunk before may still be being written: a manual's first run
    /// expects its stream past them too.
    fn ready(&self, pending: Vec<(usize, ManualNo, NewEvent)>) -> Ready {
        let mut in_this: HashMap<&ManualNo, usize> = HashMap::new();
        for (_, manual, _) in &pending {
            *in_this.entry(manual).or_default() += 1;
        }
        // Where each manual's next run starts: after what the store holds,
        // what is being written, and the earlier runs of these.
        let mut expected: HashMap<ManualNo, i64> = in_this
            .into_iter()
            .map(|(manual, count)| {
                let book = self.book(manual);
                let before = book.pending - count;
                (manual.clone(), book.flushed + before as i64)
            })
            .collect();
        let mut runs: Vec<StreamAppend> = Vec::new();
        let mut lines: Vec<(ManualNo, Vec<usize>)> = Vec::new();
        for (line, manual, event) in pending {
            let version = expected
                .get_mut(&manual)
                .unwrap_or_else(|| unreachable!("every manual of `pending` was counted"));
            match (runs.last_mut(), lines.last_mut()) {
                (Some(run), Some((_, run_lines))) if run.stream == manual.as_str() => {
                    run.events.push(event);
                    run_lines.push(line);
                }
                _ => {
                    runs.push(StreamAppend {
                        stream: manual.to_string(),
                        expected: ExpectedVersion::Exactly(*version),
                        events: vec![event],
                    });
                    lines.push((manual, vec![line]));
                }
            }
            *version += 1;
        }
        Ready {
            runs: PreparedRuns::new(runs),
            lines,
        }
    }

    /// Takes in what the store appended of `runs`.
    fn record(
        &mut self,
        run_lines: Vec<(ManualNo, Vec<usize>)>,
        appended: Vec<Vec<Appended>>,
    ) -> Result<(), LedgerError> {
        // Ids were checked against the store before deciding; fewer appended
        // means another writer committed some of these ids since. Decide the
        // file again (this transaction is rolled back): it will find them held.
        for ((manual, lines), events) in run_lines.iter().zip(&appended) {
            if events.len() != lines.len() {
                return Err(LedgerError::Store(StoreError::Conflict {
                    stream: manual.to_string(),
                    expected: lines.len() as i64,
                    actual: events.len() as i64,
                }));
            }
        }
        for ((manual, lines), events) in run_lines.into_iter().zip(appended) {
            let book = self
                .books
                .get_mut(&manual)
                .unwrap_or_else(|| unreachable!("every decided manual has a book"));
            for (line, event) in lines.into_iter().zip(events) {
                book.flushed = event.version;
                book.pending -= 1;
                self.outcome.append(AppendedMovement {
                    line,
                    id: event.caller_id,
                    manual: event.stream,
                    version: event.version,
                    position: event.position,
                });
            }
        }
        Ok(())
    }
}
/// Decides one movement against `book`, its manual's state as the batch
/// leaves it, and evolves the book as a replay of the stored event would.
pub(crate) fn decide_movement(
    book: &mut Book,
    envelope: Envelope,
    context: &Context,
    line: usize,
    source_name: &str,
) -> Result<RecordedMovement, LedgerError> {
    let manual = envelope.manual.clone();
    let recorded =
        decide(book.state.as_ref(), envelope, context).map_err(|refusal| LedgerError::Refused {
            source_name: source_name.to_owned(),
            line,
            rule: refusal.rule,
            message: refusal.message,
        })?;
    let reference = recorded
        .envelope
        .id
        .clone()
        .unwrap_or_else(|| format!("{manual}@{}", book.flushed + book.pending as i64 + 1));
    match book.state.take() {
        Some(mut state) => {
            state.apply(&recorded, &reference);
            book.state = Some(state);
        }
        None => {
            // A replay registers a manual with the findings of its event:
            // so does the batch, and a cached state equals a replayed one.
            let mut replay = Replay::new();
            let counted = replay.apply(&recorded, &reference);
            assert!(
                counted,
                "decide refuses a movement on a manual not registered"
            );
            book.state = replay.into_state();
        }
    }
    book.pending += 1;
    Ok(recorded)
}

pub(crate) fn reversal_target(stored: &StoredEvent) -> Result<ReversalTarget, LedgerError> {
    let recorded = crate::query::decode(stored)?;
    Ok(ReversalTarget {
        manual: recorded.envelope.manual.clone(),
        recorded,
    })
}

/// The target of a reversal decided earlier in the same batch, read back as
/// it will be stored.
pub(crate) fn pending_reversal_target(
    line: usize,
    manual: &ManualNo,
    event: &NewEvent,
) -> Result<ReversalTarget, LedgerError> {
    let recorded = RecordedMovement::from_stored_text(
        &event.event_type,
        event.schema_version,
        manual.as_str(),
        event.business_date,
        event.caller_id.clone(),
        event.payload.as_str(),
    )
    // Not yet in the store, so without a version of its own.
    .map_err(|malformed| LedgerError::Corrupt {
        stream: manual.to_string(),
        version: 0,
        message: format!("the movement of line {line} does not read back: {malformed}"),
    })?;
    Ok(ReversalTarget {
        manual: manual.clone(),
        recorded,
    })
}

pub(crate) fn new_event(recorded: &RecordedMovement, metadata: &EventMetadata) -> NewEvent {
    NewEvent {
        caller_id: recorded.envelope.id.clone(),
        event_type: recorded.kind().as_str().to_owned(),
        schema_version: SCHEMA_VERSION,
        payload: CanonicalJson::of(&recorded.stored_payload())
            .unwrap_or_else(|error| unreachable!("a payload always serializes: {error}")),
        metadata: metadata.clone(),
        business_date: recorded.envelope.date,
    }
}
