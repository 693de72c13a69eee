//! Appending movements: each batch (a file, a request) is decided movement
//! by movement against the state it will commit on, and appended in one
//! transaction, all or nothing.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use bondledger_domain::movement::Movement;
use bondledger_domain::{
    decide, Context, Envelope, ManualNo, ManualState, Mode, RecordedMovement, Replay,
    ReversalTarget, SCHEMA_VERSION,
};
use bondledger_store::{
    AppendSession, EventMetadata, ExpectedVersion, NewEvent, StoreError, StoredEvent, StreamAppend,
};
use serde_json::Value;

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
}

impl ImportOutcome {
    pub(crate) fn append(&mut self, movement: AppendedMovement) {
        self.appended_count += 1;
        if self.appended.len() < MAX_LISTED_MOVEMENTS {
            self.appended.push(movement);
        }
    }

    pub(crate) fn held(&mut self, movement: AppendedMovement) {
        self.already_held_count += 1;
        if self.already_held.len() < MAX_LISTED_MOVEMENTS {
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
        let name = path.display().to_string();
        self.import_source(&name, mode, actor, || read_movements_ahead(path))
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
        self.import_source(name, mode, actor, source).await
    }

    async fn import_source<I>(
        &self,
        name: &str,
        mode: Mode,
        actor: Option<&str>,
        source: impl Fn() -> I,
    ) -> Result<ImportOutcome, LedgerError>
    where
        I: Iterator<Item = Result<Located, LedgerError>>,
    {
        self.with_retries(mode, actor, name, source).await
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
        self.with_retries(mode, actor, source_name, source).await
    }

    /// Decides and appends the movements of `source` in one pass. A file is
    /// checked whole before anything is written: nothing is committed until
    /// its last line, and when deciding fails, the lines after are still read
    /// so that a malformed line anywhere is what the import reports.
    pub(crate) async fn with_retries<I>(
        &self,
        mode: Mode,
        actor: Option<&str>,
        source_name: &str,
        source: impl Fn() -> I,
    ) -> Result<ImportOutcome, LedgerError>
    where
        I: Iterator<Item = Result<Located, LedgerError>>,
    {
        for attempt in 1..=MAX_ATTEMPTS {
            let mut movements = source();
            match self
                .import_once(mode, actor, source_name, &mut movements)
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
    ) -> Result<ImportOutcome, LedgerError> {
        let mut batch = Batch {
            ledger: self,
            session: self.store.begin().await?,
            books: HashMap::new(),
            mode,
            metadata: EventMetadata {
                actor: actor.map(str::to_owned),
                ..EventMetadata::default()
            },
            source_name: source_name.to_owned(),
            outcome: ImportOutcome::default(),
            pending: Vec::new(),
        };
        let mut chunk = Vec::with_capacity(CHUNK_MOVEMENTS);
        for located in movements {
            chunk.push(located?);
            if chunk.len() == CHUNK_MOVEMENTS {
                batch.decide_chunk(std::mem::take(&mut chunk)).await?;
            }
        }
        batch.decide_chunk(chunk).await?;
        let Batch {
            session,
            outcome,
            books,
            ..
        } = batch;
        session.commit().await?;
        self.keep_states(books);
        Ok(outcome)
    }

    /// A manual's state as the store holds it now: the cached one when the
    /// stream, read in `session`, is still at its version; else replayed.
    /// On PostgreSQL the stream may move between this read and the append;
    /// the append's expected version then makes it a conflict.
    pub(crate) async fn current_state(
        &self,
        session: &mut dyn AppendSession,
        manual: &ManualNo,
    ) -> Result<Option<ManualState>, LedgerError> {
        let mut states = self.current_states(session, &[manual]).await?;
        Ok(states.pop().flatten())
    }

    /// As [`Ledger::current_state`] for each of `manuals` (distinct), the
    /// versions of those kept read in one statement.
    pub(crate) async fn current_states(
        &self,
        session: &mut dyn AppendSession,
        manuals: &[&ManualNo],
    ) -> Result<Vec<Option<ManualState>>, LedgerError> {
        let cached: Vec<Option<Arc<ManualState>>> = manuals
            .iter()
            .map(|manual| self.states.get(manual))
            .collect();
        let kept: Vec<&str> = manuals
            .iter()
            .zip(&cached)
            .filter(|(_, state)| state.is_some())
            .map(|(manual, _)| manual.as_str())
            .collect();
        let mut versions = session.stream_versions(&kept).await?.into_iter();
        let mut states = Vec::with_capacity(manuals.len());
        for (manual, cached) in manuals.iter().zip(cached) {
            if let Some(cached) = cached {
                if versions.next() == Some(cached.version) {
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

struct Batch<'a> {
    ledger: &'a Ledger,
    session: Box<dyn AppendSession>,
    books: HashMap<ManualNo, Book>,
    mode: Mode,
    metadata: EventMetadata,
    source_name: String,
    outcome: ImportOutcome,
    /// Decided movements in the order they came: (line, manual, event).
    pending: Vec<(usize, ManualNo, NewEvent)>,
}

/// What a movement's id names already.
pub(crate) enum IdSeen {
    /// Nothing: the movement is new.
    New,
    /// This very movement, held by the store or taken earlier in the batch
    /// (a harmless re-import); version and position 0 for one not yet written.
    Again(AppendedMovement),
    /// Another movement: the id is held with other content.
    Conflict,
}

/// What `id` (the id of `envelope`, on `line`) names among the events the
/// store `held` and the movements `taken` earlier in this batch.
pub(crate) fn id_seen(
    line: usize,
    id: &str,
    envelope: &Envelope,
    held: &HashMap<String, StoredEvent>,
    taken: &HashMap<String, Envelope>,
) -> IdSeen {
    let (same, manual, version, position) = match (held.get(id), taken.get(id)) {
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

impl Batch<'_> {
    async fn decide_chunk(&mut self, chunk: Vec<Located>) -> Result<(), LedgerError> {
        if chunk.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = chunk.iter().filter_map(|l| l.envelope.id.clone()).collect();
        let mut held: HashMap<String, StoredEvent> = HashMap::new();
        for stored in self.session.find_by_caller_ids(&ids).await? {
            if let Some(id) = stored.caller_id.clone() {
                held.insert(id, stored);
            }
        }
        // Ids taken earlier in this chunk, not yet visible to the store.
        let mut taken: HashMap<String, Envelope> = HashMap::new();
        for Located { line, envelope } in chunk {
            if let Some(id) = &envelope.id {
                match id_seen(line, id, &envelope, &held, &taken) {
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
                taken.insert(id.clone(), envelope.clone());
            }
            self.decide_one(line, envelope).await?;
        }
        self.flush().await
    }

    async fn decide_one(&mut self, line: usize, envelope: Envelope) -> Result<(), LedgerError> {
        let target = match &envelope.movement {
            Movement::Reversed(reversal) => {
                // The event reversed may wait in this batch, not yet handed
                // to the store.
                let waiting = self
                    .pending
                    .iter()
                    .rev()
                    .find(|(_, _, event)| event.caller_id.as_ref() == Some(&reversal.event));
                match waiting {
                    Some((line, manual, event)) => {
                        Some(pending_reversal_target(*line, manual, event)?)
                    }
                    None => {
                        let found = self
                            .session
                            .find_by_caller_ids(std::slice::from_ref(&reversal.event))
                            .await?;
                        match found.into_iter().next() {
                            Some(stored) => Some(reversal_target(&stored)?),
                            None => None,
                        }
                    }
                }
            }
            _ => None,
        };
        let counterparty_manual = match &envelope.movement {
            Movement::RemnantOut(r) => Some(&r.to_manual),
            Movement::RemnantIn(r) => Some(&r.from_manual),
            _ => None,
        };
        let counterparty = match counterparty_manual {
            Some(other) => self
                .book(other)
                .await?
                .state
                .as_ref()
                .map(|state| state.registration.clone()),
            None => None,
        };
        let manual = envelope.manual.clone();
        self.book(&manual).await?;
        let book = self
            .books
            .get_mut(&manual)
            .unwrap_or_else(|| unreachable!("the book was loaded above"));
        let context = Context {
            mode: self.mode,
            counterparty: counterparty.as_ref(),
            reversal_target: target.as_ref(),
        };
        let recorded = decide_movement(book, envelope, &context, line, &self.source_name)?;
        self.pending
            .push((line, manual, new_event(&recorded, &self.metadata)));
        Ok(())
    }

    /// A manual's book, its state replayed from the store when the batch
    /// first meets it. Whatever another writer appends to it later makes
    /// this batch's append a conflict, and the batch is decided again.
    async fn book(&mut self, manual: &ManualNo) -> Result<&Book, LedgerError> {
        if !self.books.contains_key(manual) {
            let state = self
                .ledger
                .current_state(&mut *self.session, manual)
                .await?;
            self.books.insert(manual.clone(), Book::loaded(state));
        }
        Ok(self
            .books
            .get(manual)
            .unwrap_or_else(|| unreachable!("the book was inserted above")))
    }

    /// Hands the decided movements to the store in the order they came, so
    /// ledger positions follow the batch: one run per stretch of movements
    /// of the same manual, all runs in one append.
    async fn flush(&mut self) -> Result<(), LedgerError> {
        let mut runs: Vec<StreamAppend> = Vec::new();
        let mut run_lines: Vec<(ManualNo, Vec<usize>)> = Vec::new();
        // Where each manual's next run starts: after the earlier runs of this flush.
        let mut expected: HashMap<ManualNo, i64> = HashMap::new();
        for (line, manual, event) in std::mem::take(&mut self.pending) {
            let version = match expected.get_mut(&manual) {
                Some(version) => version,
                None => {
                    let flushed = self
                        .books
                        .get(&manual)
                        .unwrap_or_else(|| unreachable!("every decided manual has a book"))
                        .flushed;
                    expected.entry(manual.clone()).or_insert(flushed)
                }
            };
            match (runs.last_mut(), run_lines.last_mut()) {
                (Some(run), Some((_, lines))) if run.stream == manual.as_str() => {
                    run.events.push(event);
                    lines.push(line);
                }
                _ => {
                    runs.push(StreamAppend {
                        stream: manual.to_string(),
                        expected: ExpectedVersion::Exactly(*version),
                        events: vec![event],
                    });
                    run_lines.push((manual, vec![line]));
                }
            }
            *version += 1;
        }
        if runs.is_empty() {
            return Ok(());
        }
        let appended = self.session.append_runs(runs).await?;
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
    let recorded = RecordedMovement::from_stored(
        &event.event_type,
        event.schema_version,
        manual.as_str(),
        event.business_date,
        event.caller_id.clone(),
        &event.payload,
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
        payload: recorded.payload(),
        metadata: metadata.clone(),
        business_date: recorded.envelope.date,
    }
}
