//! Group commit: small batches appended at the same moment in this process
//! share one transaction and one commit, so their fsyncs are one.
//!
//! A batch waits in a queue; whoever holds the appender's lock takes every
//! batch waiting and decides them in the order they came, each against the
//! states as the batches before it in the group leave them, each on copies
//! so that a refused one leaves nothing behind. The accepted ones go to the
//! store in one `append_runs` and one commit; then every batch is answered
//! with what it alone would have been answered. Anything unexpected (another
//! process appended, an error of the store) rolls the group back and
//! appends its batches one by one, as a batch alone is appended.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Mutex, PoisonError};

use bondledger_domain::{Context, Envelope, ManualNo, Mode};
use bondledger_store::{
    AppendSession, Appended, EventMetadata, ExpectedVersion, NewEvent, StoreError, StoredEvent,
    StreamAppend,
};
use tokio::sync::oneshot;

use crate::import::{
    counterparty_manual, decide_movement, id_seen, manuals_of, new_event, pending_reversal_target,
    pending_with_id, reversal_target, reversed_id, Book, IdSeen, CHUNK_MOVEMENTS,
};
use crate::source::Located;
use crate::{AppendedMovement, ImportOutcome, Ledger, LedgerError};

/// Movements one group appends at most: a batch larger than what is left
/// waits for the next group (a group holds at least one batch).
const MAX_GROUP_MOVEMENTS: usize = CHUNK_MOVEMENTS;

/// The batches waiting, and the lock whoever appends them holds.
#[derive(Default)]
pub(crate) struct GroupCommit {
    waiting: Mutex<VecDeque<Request>>,
    appender: std::sync::Arc<tokio::sync::Mutex<()>>,
}

type Answer = Result<ImportOutcome, LedgerError>;

/// One caller's batch and where its answer goes.
struct Request {
    movements: Vec<Located>,
    mode: Mode,
    actor: Option<String>,
    source_name: String,
    answer: oneshot::Sender<Answer>,
}

/// The session a group is appended in.
enum Session {
    /// A transaction under the append lock, or why none began.
    Locked(Result<Box<dyn AppendSession>, StoreError>),
    /// One planned on what this process last knew (see
    /// [`bondledger_store::EventStore::begin_presumed`]).
    Presumed(Box<dyn AppendSession>),
}

impl Request {
    /// Whether no movement of the batch reverses another: a reversal decides
    /// on the event it names, which a presumed append does not read.
    fn reverses_nothing(&self) -> bool {
        self.movements
            .iter()
            .all(|located| reversed_id(&located.envelope).is_none())
    }

    fn metadata(&self) -> EventMetadata {
        EventMetadata {
            actor: self.actor.clone(),
            ..EventMetadata::default()
        }
    }

    /// Caller ids the batch's deciding reads: its own and those it reverses.
    fn looked_up_ids(&self) -> impl Iterator<Item = &String> {
        self.movements.iter().flat_map(|located| {
            let envelope = &located.envelope;
            envelope.id.iter().chain(reversed_id(envelope))
        })
    }

    /// Every manual the batch's deciding reads.
    fn manuals(&self) -> impl Iterator<Item = &ManualNo> {
        self.movements
            .iter()
            .flat_map(|located| manuals_of(&located.envelope))
    }
}

/// A batch decided within a group: what it appends, what it found held, and
/// the books it leaves.
struct Decided {
    /// (line, manual, event), in the batch's order.
    pending: Vec<(usize, ManualNo, NewEvent)>,
    outcome: ImportOutcome,
    /// Its copies of the books it read, as it leaves them.
    books: HashMap<ManualNo, Book>,
    /// The caller ids the batch takes.
    ids: Vec<String>,
}

/// How one batch of a group came out of deciding.
enum Verdict {
    Accepted(Decided),
    /// Refused by a rule or an id held with other content: its answer,
    /// unless the group falls back.
    Refused(LedgerError),
}

/// Why a group gives up.
enum FallBack {
    /// A presumed append found the ledger otherwise than this process last
    /// knew it: the group is appended again under the lock.
    Relock(&'static str),
    /// Its batches are appended one by one.
    OneByOne(&'static str),
}

impl Ledger {
    /// Appends one small batch, all or nothing, in the same transaction as
    /// the other batches waiting at this moment; answered exactly as the
    /// batch appended alone would be.
    pub(crate) async fn append_grouped(
        &self,
        movements: Vec<Located>,
        mode: Mode,
        actor: Option<&str>,
        source_name: String,
    ) -> Answer {
        let (answer, mut answered) = oneshot::channel();
        self.waiting().push_back(Request {
            movements,
            mode,
            actor: actor.map(str::to_owned),
            source_name,
            answer,
        });
        loop {
            let appender = std::sync::Arc::clone(&self.group.appender);
            let guard = tokio::select! {
                biased;
                answer = &mut answered => return answer.unwrap_or_else(|_| Err(stopped())),
                guard = appender.lock_owned() => guard,
            };
            match answered.try_recv() {
                Ok(answer) => return answer,
                Err(oneshot::error::TryRecvError::Closed) => return Err(stopped()),
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
            // This batch still waits, so nobody is appending: append every
            // batch waiting, on a task of its own so that this caller going
            // away does not cut the others' appends short.
            let ledger = self.clone();
            tokio::spawn(async move {
                ledger.append_waiting().await;
                drop(guard);
            });
        }
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, VecDeque<Request>> {
        // The queue is changed only by whole pushes and pops.
        self.group
            .waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends groups until no batch waits. The caller holds the appender's lock.
    async fn append_waiting(&self) {
        let mut carried: VecDeque<Request> = VecDeque::new();
        loop {
            // The callers answered a moment ago come back with their next
            // batches while this task yields and a transaction under the lock
            // begins: the group is drawn after, so they join it rather than
            // wait for the next one. A group reversing nothing is planned on
            // what this process last knew, where the store can (a presumed
            // append: no read before the write).
            tokio::task::yield_now().await;
            if carried.is_empty() && self.waiting().is_empty() {
                return;
            }
            let left = match self.store.begin_presumed().await {
                Some(session) => {
                    let group = self.next_group(&mut carried);
                    match group.iter().all(Request::reverses_nothing) {
                        true => self.append_group(Session::Presumed(session), group).await,
                        false => {
                            let session = self.store.begin().await;
                            self.append_group(Session::Locked(session), group).await
                        }
                    }
                }
                None => {
                    let session = self.store.begin().await;
                    let group = self.next_group(&mut carried);
                    self.append_group(Session::Locked(session), group).await
                }
            };
            for request in left.into_iter().rev() {
                carried.push_front(request);
            }
        }
    }

    /// The batches carried over from the last group, then those waiting, in
    /// the order they came, up to [`MAX_GROUP_MOVEMENTS`] movements.
    fn next_group(&self, carried: &mut VecDeque<Request>) -> Vec<Request> {
        let mut waiting = self.waiting();
        let mut group = Vec::new();
        let mut movements = 0;
        loop {
            let next = carried.front().or_else(|| waiting.front());
            let Some(next) = next else { break };
            let size = next.movements.len();
            if !group.is_empty() && movements + size > MAX_GROUP_MOVEMENTS {
                break;
            }
            movements += size;
            let request = match carried.pop_front() {
                Some(request) => request,
                None => waiting
                    .pop_front()
                    .unwrap_or_else(|| unreachable!("a batch was waiting")),
            };
            group.push(request);
        }
        group
    }

    /// Appends one group in `session`; returns the batches cut off from it (one that
    /// reads an id an earlier batch of the group takes, and all after it),
    /// to go first into the next group.
    #[tracing::instrument(name = "bondledger.ledger.append_group", skip_all, fields(batches = group.len()))]
    async fn append_group(&self, session: Session, mut group: Vec<Request>) -> Vec<Request> {
        debug_assert!(!group.is_empty(), "a group holds at least one batch");
        let tried = match self.try_group(session, &group).await {
            Err(FallBack::Relock(reason)) => {
                tracing::debug!(reason, "appending a group again under the lock");
                let session = Session::Locked(self.store.begin().await);
                self.try_group(session, &group).await
            }
            tried => tried,
        };
        let answers = match tried {
            Ok(answers) => answers,
            Err(FallBack::Relock(reason) | FallBack::OneByOne(reason)) => {
                tracing::info!(reason, "appending the batches of a group one by one");
                self.one_by_one(&group).await
            }
        };
        let decided = answers.len();
        for (request, answer) in group.drain(..decided).zip(answers) {
            // A caller that went away is not waiting for its answer.
            let _ = request.answer.send(answer);
        }
        group
    }

    /// Appends each batch of `group` alone, as a batch is appended alone.
    async fn one_by_one(&self, group: &[Request]) -> Vec<Answer> {
        let mut answers = Vec::with_capacity(group.len());
        for request in group.iter() {
            let source = || request.movements.iter().cloned().map(Ok);
            answers.push(
                self.with_retries(
                    request.mode,
                    request.actor.as_deref(),
                    &request.source_name,
                    source,
                    &mut |_| {},
                )
                .await,
            );
        }
        answers
    }

    /// Decides, appends and commits as many batches of `group` as go
    /// together; their answers, in order. The session is gone whatever the
    /// outcome, so that a fall back can begin its own.
    async fn try_group(
        &self,
        session: Session,
        group: &[Request],
    ) -> Result<Vec<Answer>, FallBack> {
        let (mut session, presumed) = match session {
            Session::Locked(session) => (
                session.map_err(|_| FallBack::OneByOne("no transaction"))?,
                false,
            ),
            Session::Presumed(session) => (session, true),
        };
        let (mut verdicts, books) = self.decide_group(&mut *session, group).await?;
        // A presumed group's answers stand on the states it presumed, which
        // only its write confirms: with nothing to write, every one of them
        // (a refusal, say) may be of a state since moved on.
        let writes = verdicts.iter().any(
            |verdict| matches!(verdict, Verdict::Accepted(decided) if !decided.pending.is_empty()),
        );
        if presumed && !writes {
            return Err(FallBack::Relock(
                "nothing to write confirms the states presumed",
            ));
        }
        let appended = append_accepted(&mut *session, &mut verdicts, books).await;
        let commit = match appended {
            Ok(books) => session.commit().await.map(|()| books),
            Err(Failed::FallBack(fall_back)) => return Err(fall_back),
            // A presumed append's write is its commit; a refused input is
            // refused before anything is sent.
            Err(Failed::Store(error))
                if presumed && !matches!(error, StoreError::InvalidInput(_)) =>
            {
                Err(error)
            }
            Err(Failed::Store(_)) => return Err(FallBack::OneByOne("the append failed")),
        };
        let books = match commit {
            Ok(books) => books,
            Err(error) => {
                // The commit may or may not have happened: every caller hears
                // so, and retries with its ids.
                tracing::warn!(%error, "the commit of a group failed");
                return Ok(verdicts
                    .iter()
                    .map(|_| Err(LedgerError::Store(copy_of(&error))))
                    .collect());
            }
        };
        self.keep_states(books);
        Ok(verdicts
            .into_iter()
            .map(|verdict| match verdict {
                Verdict::Accepted(decided) => Ok(decided.outcome),
                Verdict::Refused(error) => Err(error),
            })
            .collect())
    }

    /// Decides the batches of `group` in order, up to the first that reads
    /// an id an earlier accepted batch takes (that one must see it held, with
    /// the position the store gives it, or reverse it as stored).
    async fn decide_group(
        &self,
        session: &mut dyn AppendSession,
        group: &[Request],
    ) -> Result<(Vec<Verdict>, HashMap<ManualNo, Book>), FallBack> {
        let ids: Vec<String> = group
            .iter()
            .flat_map(Request::looked_up_ids)
            .cloned()
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let mut met = HashSet::new();
        let manuals: Vec<&ManualNo> = group
            .iter()
            .flat_map(Request::manuals)
            .filter(|manual| met.insert(*manual))
            .collect();
        let streams: Vec<&str> = manuals.iter().map(|manual| manual.as_str()).collect();
        // Under the append lock from here on: the append reads nothing again.
        let (held, versions) = session
            .lock_and_look_up(&ids, &streams)
            .await
            .map_err(|error| match error {
                StoreError::Stale(_) => FallBack::Relock("a manual not appended to here"),
                _ => FallBack::OneByOne("caller ids and manuals not looked up"),
            })?;
        let held: HashMap<String, StoredEvent> = held
            .into_iter()
            .filter_map(|stored| Some((stored.caller_id.clone()?, stored)))
            .collect();
        let states = self
            .states_at(&manuals, &versions)
            .await
            .map_err(|_| FallBack::OneByOne("a manual not loaded"))?;
        let mut books: HashMap<ManualNo, Book> = manuals
            .into_iter()
            .cloned()
            .zip(states.into_iter().map(Book::loaded))
            .collect();
        let mut taken: HashSet<String> = HashSet::new();
        let mut verdicts = Vec::with_capacity(group.len());
        for request in group {
            if request.looked_up_ids().any(|id| taken.contains(id)) {
                break;
            }
            match decide_batch(request, &books, &held) {
                Ok(mut decided) => {
                    taken.extend(decided.ids.iter().cloned());
                    books.extend(decided.books.drain());
                    verdicts.push(Verdict::Accepted(decided));
                }
                Err(error @ (LedgerError::Refused { .. } | LedgerError::IdConflict { .. })) => {
                    verdicts.push(Verdict::Refused(error))
                }
                Err(_) => return Err(FallBack::OneByOne("a batch failed other than by a refusal")),
            }
        }
        Ok((verdicts, books))
    }
}

/// Decides one batch against copies of the group's `books`, with `held` the
/// events of the ids it reads as the store holds them.
fn decide_batch(
    request: &Request,
    books: &HashMap<ManualNo, Book>,
    held: &HashMap<String, StoredEvent>,
) -> Result<Decided, LedgerError> {
    let metadata = request.metadata();
    let mut own: HashMap<ManualNo, Book> = HashMap::new();
    let mut pending: Vec<(usize, ManualNo, NewEvent)> = Vec::new();
    let mut outcome = ImportOutcome::default();
    // Ids taken earlier in this batch, not yet visible to the store.
    let mut taken: HashMap<String, Envelope> = HashMap::new();
    for Located { line, envelope } in request.movements.iter().cloned() {
        if let Some(id) = &envelope.id {
            match id_seen(line, id, &envelope, held, taken.get(id)) {
                IdSeen::Again(movement) => {
                    outcome.held(movement);
                    continue;
                }
                IdSeen::Conflict => {
                    return Err(LedgerError::IdConflict {
                        source_name: request.source_name.clone(),
                        line,
                        id: id.clone(),
                    });
                }
                IdSeen::New => {}
            }
        }
        let target = match reversed_id(&envelope) {
            Some(id) => match (pending_with_id(&pending, &taken, id), held.get(id)) {
                (Some((line, manual, event)), _) => {
                    Some(pending_reversal_target(*line, manual, event)?)
                }
                (None, Some(stored)) => Some(reversal_target(stored)?),
                (None, None) => None,
            },
            None => None,
        };
        let counterparty = match counterparty_manual(&envelope) {
            Some(other) => book_of(&mut own, books, other)
                .state
                .as_ref()
                .map(|state| state.registration.clone()),
            None => None,
        };
        let manual = envelope.manual.clone();
        let book = book_of(&mut own, books, &manual);
        let context = Context {
            mode: request.mode,
            counterparty: counterparty.as_ref(),
            reversal_target: target.as_ref(),
        };
        let recorded = decide_movement(book, envelope, &context, line, &request.source_name)?;
        pending.push((line, manual, new_event(&recorded, &metadata)));
        // The movement as decided is the one its id names from now on.
        if let Some(id) = &recorded.envelope.id {
            taken.insert(id.clone(), recorded.envelope);
        }
    }
    Ok(Decided {
        ids: taken.into_keys().collect(),
        pending,
        outcome,
        books: own,
    })
}

/// The batch's own copy of a manual's book, made from the group's when the
/// batch first meets the manual.
fn book_of<'a>(
    own: &'a mut HashMap<ManualNo, Book>,
    books: &HashMap<ManualNo, Book>,
    manual: &ManualNo,
) -> &'a mut Book {
    own.entry(manual.clone()).or_insert_with(|| {
        books
            .get(manual)
            .unwrap_or_else(|| unreachable!("every manual of the group was loaded"))
            .clone()
    })
}

/// How handing a group's events to the store failed.
enum Failed {
    FallBack(FallBack),
    /// An error of the store's own, which after a presumed append's write
    /// may come after its commit.
    Store(StoreError),
}

/// Hands the events of the accepted batches to the store in one
/// `append_runs`, in the order the batches came; fills in each batch's
/// outcome and returns the group's `books` as the append leaves them.
async fn append_accepted(
    session: &mut dyn AppendSession,
    verdicts: &mut [Verdict],
    mut books: HashMap<ManualNo, Book>,
) -> Result<HashMap<ManualNo, Book>, Failed> {
    let mut runs: Vec<StreamAppend> = Vec::new();
    // Per run: the manual, and (batch, line) of each of its events.
    let mut run_lines: Vec<(ManualNo, Vec<(usize, usize)>)> = Vec::new();
    let mut expected: HashMap<ManualNo, i64> = HashMap::new();
    for (index, verdict) in verdicts.iter_mut().enumerate() {
        let Verdict::Accepted(decided) = verdict else {
            continue;
        };
        for (line, manual, event) in std::mem::take(&mut decided.pending) {
            // Deciding leaves a book's stream version as it was loaded.
            let flushed = books
                .get(&manual)
                .unwrap_or_else(|| unreachable!("every decided manual has a book"))
                .flushed;
            let version = expected.entry(manual.clone()).or_insert(flushed);
            match (runs.last_mut(), run_lines.last_mut()) {
                (Some(run), Some((_, lines))) if run.stream == manual.as_str() => {
                    run.events.push(event);
                    lines.push((index, line));
                }
                _ => {
                    runs.push(StreamAppend {
                        stream: manual.to_string(),
                        expected: ExpectedVersion::Exactly(*version),
                        events: vec![event],
                    });
                    run_lines.push((manual, vec![(index, line)]));
                }
            }
            *version += 1;
        }
    }
    if runs.is_empty() {
        return Ok(books);
    }
    let appended: Vec<Vec<Appended>> =
        session
            .append_runs(runs)
            .await
            .map_err(|error| match error {
                StoreError::Conflict { .. } | StoreError::IdConflict { .. } => {
                    Failed::FallBack(FallBack::OneByOne("another writer appended first"))
                }
                StoreError::Stale(_) => Failed::FallBack(FallBack::Relock(
                    "another writer appended first, or an id was held",
                )),
                other => Failed::Store(other),
            })?;
    // Ids were looked up before deciding; fewer appended means another
    // process committed some of them since.
    let complete = run_lines
        .iter()
        .zip(&appended)
        .all(|((_, lines), events)| lines.len() == events.len());
    if !complete {
        return Err(Failed::FallBack(FallBack::OneByOne(
            "another writer took some of these ids",
        )));
    }
    for ((manual, lines), events) in run_lines.into_iter().zip(appended) {
        let book = books
            .get_mut(&manual)
            .unwrap_or_else(|| unreachable!("every appended manual has a book"));
        for ((index, line), event) in lines.into_iter().zip(events) {
            book.flushed = event.version;
            book.pending -= 1;
            let Verdict::Accepted(decided) = &mut verdicts[index] else {
                unreachable!("only accepted batches append")
            };
            decided.outcome.append(AppendedMovement {
                line,
                id: event.caller_id,
                manual: event.stream,
                version: event.version,
                position: event.position,
            });
        }
    }
    Ok(books)
}

/// The answer of a caller whose group stopped before answering (a panic).
fn stopped() -> LedgerError {
    LedgerError::Store(StoreError::Integrity(
        "the append stopped before answering; its ids make a retry harmless".to_owned(),
    ))
}

/// One failed commit told to each caller of its group: the same message,
/// and transient when it was (a retry with the same ids is then harmless).
fn copy_of(error: &StoreError) -> StoreError {
    error.told_again()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::AsOf;
    use crate::source::read_lines;
    use bondledger_tests::{Backend, TestLedger};
    use serde_json::{json, Value};

    const FIRST: &str = "C44012600001";
    const SECOND: &str = "C44012600002";

    fn registration(id: &str, manual: &str) -> Value {
        json!({"id": id, "type": "manual_registered", "manual": manual, "date": "2026-01-02",
            "trade_mode": "purchased", "enterprise": "4401900001", "valid_until": "2027-12-31",
            "materials": [{"item": 1, "hs": "3901100000", "name": "聚乙烯", "spec": "LD", "unit": "千克", "qty": "100000"}],
            "products": [{"item": 1, "hs": "3923210000", "name": "袋", "spec": "S", "unit": "千克", "qty": "100000"}]})
    }

    fn import(id: Option<&str>, manual: &str, material: u32, qty: &str) -> Value {
        let mut line = json!({"type": "material_imported", "manual": manual, "date": "2026-02-03",
            "material": material, "qty": qty, "declaration": "440120261000010001", "mode": "0615"});
        if let Some(id) = id {
            line["id"] = json!(id);
        }
        line
    }

    fn reversal(id: &str, manual: &str, event: &str) -> Value {
        json!({"id": id, "type": "reversed", "manual": manual, "date": "2026-02-04",
            "event": event, "reason": "correction"})
    }

    fn text(lines: &[Value]) -> String {
        lines.iter().map(|line| format!("{line}\n")).collect()
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime")
    }

    /// A batch appended the way a batch was appended before groups: alone.
    async fn alone(ledger: &Ledger, text: &str) -> Answer {
        ledger
            .with_retries(
                Mode::Strict,
                Some("test"),
                "request",
                || read_lines(Ok(text.as_bytes()), "request".to_owned()),
                &mut |_| {},
            )
            .await
    }

    /// The answer as a comparable text: an outcome, or the error's message.
    fn shown(answer: &Answer) -> String {
        match answer {
            Ok(outcome) => format!("{outcome:?}"),
            Err(error) => format!("error: {error}"),
        }
    }

    /// Every event as the ledger holds it, but for what differs between two
    /// ledgers given the same history (event ids, times, hashes).
    async fn log(ledger: &Ledger) -> Vec<String> {
        let events = ledger.store().read_all(0, 10_000).await.expect("the log");
        events
            .iter()
            .map(|e| {
                format!(
                    "{} {} {} {:?} {} {} {}",
                    e.position,
                    e.stream,
                    e.version,
                    e.caller_id,
                    e.event_type,
                    e.business_date,
                    e.payload
                )
            })
            .collect()
    }

    async fn set_up(ledger: &Ledger) {
        let history = text(&[
            registration("reg-1", FIRST),
            registration("reg-2", SECOND),
            import(Some("held-1"), FIRST, 1, "10"),
        ]);
        alone(ledger, &history)
            .await
            .expect("the history is appended");
    }

    /// Batches that arrive together: some appended, some refused by a
    /// rule, some already held, some conflicting with a held id, some
    /// reading an id an earlier batch of the group takes.
    fn batches() -> Vec<String> {
        vec![
            text(&[import(Some("a0"), FIRST, 1, "1")]),
            text(&[import(Some("a1"), SECOND, 1, "2")]),
            text(&[import(Some("r2"), FIRST, 9, "1")]),
            text(&[import(Some("held-1"), FIRST, 1, "10")]),
            text(&[import(Some("held-1"), FIRST, 1, "11")]),
            text(&[
                import(Some("a5"), SECOND, 1, "3"),
                import(Some("r5"), SECOND, 9, "3"),
            ]),
            text(&[import(None, FIRST, 1, "4")]),
            text(&[
                import(Some("a7"), FIRST, 1, "5"),
                import(Some("b7"), SECOND, 1, "5"),
                import(Some("a7"), FIRST, 1, "5"),
            ]),
            text(&[import(Some("a0"), FIRST, 1, "1")]),
            text(&[reversal("v9", SECOND, "a1")]),
            text(&[reversal("v10", FIRST, "nothing")]),
            text(&[import(Some("a5"), SECOND, 1, "3")]),
        ]
    }

    /// Queues `batches` in order while holding the appender's lock, so that
    /// they are appended as groups, then answers them.
    async fn grouped(ledger: &Ledger, batches: Vec<String>) -> Vec<Answer> {
        let appender = std::sync::Arc::clone(&ledger.group.appender);
        let guard = appender.lock_owned().await;
        let mut tasks = Vec::new();
        for (index, batch) in batches.into_iter().enumerate() {
            let appending = ledger.clone();
            tasks.push(tokio::spawn(async move {
                appending
                    .import_text("request", &batch, Mode::Strict, Some("test"))
                    .await
            }));
            while ledger.waiting().len() <= index {
                tokio::task::yield_now().await;
            }
        }
        drop(guard);
        let mut answers = Vec::new();
        for task in tasks {
            answers.push(task.await.expect("an append task"));
        }
        answers
    }

    /// Appends `batches` as one group to `ledger` and one by one to
    /// `one_by_one` (both set up alike) and checks the answers and the logs
    /// are the same, and the cache is what a replay gives.
    async fn answered_as_alone(ledger: &Ledger, one_by_one: &Ledger, batches: Vec<String>) {
        let answers = grouped(ledger, batches.clone()).await;
        let mut expected = Vec::new();
        for batch in &batches {
            expected.push(alone(one_by_one, batch).await);
        }
        let answers: Vec<String> = answers.iter().map(shown).collect();
        let expected: Vec<String> = expected.iter().map(shown).collect();
        assert_eq!(answers, expected);
        assert!(answers[2].contains("refused"), "{}", answers[2]);
        assert!(answers[4].contains("other content"), "{}", answers[4]);
        assert_eq!(log(ledger).await, log(one_by_one).await);

        // The first eight batches were one transaction: one recording time.
        let events = ledger.store().read_all(3, 5).await.expect("the log");
        assert_eq!(events.len(), 5);
        let first = events[0].recorded_at;
        assert!(events.iter().all(|event| event.recorded_at == first));

        // What the cache keeps is what a replay gives, refusals left out.
        for manual in [FIRST, SECOND] {
            let manual_no = ManualNo::try_from(manual.to_owned()).expect("a manual");
            let cached = ledger.states.get(&manual_no).expect("a cached state");
            let replayed = ledger
                .replay(manual, AsOf::Latest)
                .await
                .expect("a replay")
                .expect("a manual");
            assert_eq!(*cached, replayed);
        }
    }

    fn a_group_answers_each_batch_as_alone(backend: Backend) {
        group_answers_as_alone(backend, batches());
    }

    /// Once this process has appended, a group reversing nothing is planned
    /// on what it last knew (PostgreSQL: written with no read first; a held
    /// id repeated makes it be appended again under the lock) and answered
    /// as alone.
    fn a_group_planned_on_the_last_commit_answers_each_batch_as_alone(backend: Backend) {
        let reversing_nothing: Vec<String> = batches()
            .into_iter()
            .filter(|batch| !batch.contains("\"reversed\""))
            .collect();
        group_answers_as_alone(backend, reversing_nothing);
    }

    /// [`answered_as_alone`] on two fresh ledgers set up alike; on
    /// PostgreSQL, a group reversing nothing after it is written unread.
    fn group_answers_as_alone(backend: Backend, batches: Vec<String>) {
        let (Some(group_ledger), Some(alone_ledger)) =
            (TestLedger::new(backend), TestLedger::new(backend))
        else {
            return;
        };
        runtime().block_on(async {
            let ledger = Ledger::open(&group_ledger.url).await.expect("a ledger");
            let one_by_one = Ledger::open(&alone_ledger.url).await.expect("a ledger");
            set_up(&ledger).await;
            set_up(&one_by_one).await;
            answered_as_alone(&ledger, &one_by_one, batches).await;
            if backend == Backend::Postgres {
                the_write_waits_for_the_lock_unread(&ledger, &group_ledger.url).await;
            }
        });
    }

    /// With another connection holding the append lock, what waits for it
    /// is the write of the next append itself: nothing was read first.
    async fn the_write_waits_for_the_lock_unread(ledger: &Ledger, url: &str) {
        use sqlx::{Connection as _, Executor as _};
        let mut blocker = sqlx::PgConnection::connect(url)
            .await
            .expect("a connection");
        blocker
            .execute(sqlx::raw_sql(
                "BEGIN; SELECT 1 FROM ledger_head WHERE id = 1 FOR UPDATE",
            ))
            .await
            .expect("the lock taken");
        let blocker_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut blocker)
            .await
            .expect("its pid");
        let appending = {
            let ledger = ledger.clone();
            tokio::spawn(async move {
                let batch = text(&[import(Some("p1"), FIRST, 1, "1")]);
                ledger
                    .import_text("request", &batch, Mode::Strict, Some("test"))
                    .await
            })
        };
        // Watched from a connection of its own: within the blocker's
        // transaction pg_stat_activity would keep showing what it showed first.
        let mut watcher = sqlx::PgConnection::connect(url)
            .await
            .expect("a connection");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let waiting = loop {
            let query: Option<String> = sqlx::query_scalar(
                "SELECT query FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))",
            )
            .bind(blocker_pid)
            .fetch_optional(&mut watcher)
            .await
            .expect("what waits");
            if let Some(query) = query {
                break query;
            }
            if appending.is_finished() {
                let outcome = appending.await.expect("the append task");
                panic!("the append did not wait for the lock: {outcome:?}");
            }
            assert!(std::time::Instant::now() < deadline, "the append waits");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        };
        assert!(waiting.starts_with("WITH planned"), "{waiting}");
        blocker
            .execute(sqlx::raw_sql("COMMIT"))
            .await
            .expect("the lock released");
        let outcome = appending.await.expect("the append task").expect("appended");
        assert_eq!(outcome.appended_count, 1);
        assert!(ledger
            .store()
            .verify_chain(None)
            .await
            .expect("verify")
            .is_empty());
    }

    fn a_state_cached_here_is_checked_against_another_process(backend: Backend) {
        let Some(test) = TestLedger::new(backend) else {
            return;
        };
        runtime().block_on(async {
            let here = Ledger::open(&test.url).await.expect("a ledger");
            let elsewhere = Ledger::open(&test.url).await.expect("a second ledger");
            let manual = ManualNo::try_from(FIRST.to_owned()).expect("a manual");
            let history = text(&[
                registration("reg-1", FIRST),
                import(Some("a1"), FIRST, 1, "1"),
            ]);
            here.import_text("history", &history, Mode::Strict, None)
                .await
                .expect("appended");
            let cached = here.states.get(&manual).expect("cached after the commit");
            assert_eq!(cached.version, 2);

            // Another process adds a material this one's cached state lacks.
            let amendment = json!({"id": "am", "type": "manual_amended", "manual": FIRST,
                "date": "2026-02-01", "add_materials": [{"item": 2, "hs": "3206499000",
                "name": "色母", "spec": "W", "unit": "千克", "qty": "100"}]});
            elsewhere
                .import_text("amendment", &text(&[amendment]), Mode::Strict, None)
                .await
                .expect("amended elsewhere");

            let outcome = here
                .import_text(
                    "request",
                    &text(&[import(Some("a2"), FIRST, 2, "5")]),
                    Mode::Strict,
                    None,
                )
                .await
                .expect("the new material is known: the stale state was not used");
            assert_eq!(outcome.appended[0].version, 4);
            let cached = here.states.get(&manual).expect("cached again");
            let replayed = here
                .replay(FIRST, AsOf::Latest)
                .await
                .expect("a replay")
                .expect("a manual");
            assert_eq!(*cached, replayed);
        });
    }

    fn a_refused_batch_leaves_the_cache_as_committed(backend: Backend) {
        let Some(test) = TestLedger::new(backend) else {
            return;
        };
        runtime().block_on(async {
            let ledger = Ledger::open(&test.url).await.expect("a ledger");
            let manual = ManualNo::try_from(FIRST.to_owned()).expect("a manual");
            let history = text(&[registration("reg-1", FIRST)]);
            ledger
                .import_text("history", &history, Mode::Strict, None)
                .await
                .expect("appended");
            let refused = text(&[
                import(Some("a1"), FIRST, 1, "1"),
                import(Some("r1"), FIRST, 9, "1"),
            ]);
            let answer = ledger
                .import_text("request", &refused, Mode::Strict, None)
                .await;
            assert!(
                matches!(answer, Err(LedgerError::Refused { line: 2, .. })),
                "{answer:?}"
            );
            let cached = ledger.states.get(&manual).expect("cached");
            assert_eq!(
                cached.version, 1,
                "the refused batch's first movement is not kept"
            );
            let outcome = ledger
                .import_text(
                    "request",
                    &text(&[import(Some("a1"), FIRST, 1, "1")]),
                    Mode::Strict,
                    None,
                )
                .await
                .expect("appended");
            assert_eq!(outcome.appended[0].version, 2);
        });
    }

    macro_rules! on_both_backends {
        ($($name:ident),* $(,)?) => {
            mod sqlite {
                $( #[test] fn $name() { super::$name(super::Backend::Sqlite) } )*
            }
            mod postgres {
                $( #[test] fn $name() { super::$name(super::Backend::Postgres) } )*
            }
        };
    }

    on_both_backends!(
        a_group_answers_each_batch_as_alone,
        a_group_planned_on_the_last_commit_answers_each_batch_as_alone,
        a_state_cached_here_is_checked_against_another_process,
        a_refused_batch_leaves_the_cache_as_committed,
    );
}
