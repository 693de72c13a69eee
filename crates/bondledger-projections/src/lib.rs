//! Read models kept from the event log: a runner that follows `read_all`
//! from each projection's checkpoint, writing the rows of a batch and the new
//! checkpoint in one transaction (so every event is applied exactly once,
//! also across a crash); rebuilds from position 0; and the audit that
//! compares every read model with a fresh replay.
//!
//! This crate never writes SQL (the store does) and never decides anything
//! (the domain does): it turns replayed state into rows.

mod audit;
mod rows;

use std::collections::HashMap;
use std::sync::Arc;

use bondledger_domain::{ManualState, RecordedMovement, RecordsApart, Replay};
use bondledger_store::readmodel::{Change, ManualRows, PreparedBatch, ProjectionBatch, RecordList};
use bondledger_store::{EventStore, ReplayEvent, StoreError, StoredEvent, MAX_PAGE_EVENTS};
use chrono::NaiveDate;
use tokio_util::task::AbortOnDropHandle;

pub use audit::ProjectionBreak;
use rows::WrittenApart;
pub use rows::{amended_rows, amendment, manual_rows, timeline_row};

/// The projections, in the order they are brought up to date.
pub const PROJECTIONS: &[&str] = &["manuals", "timeline", "snapshots"];

/// A manual's state is kept as a snapshot every this many events, unless
/// `BONDLEDGER_SNAPSHOT_EVERY` says otherwise (a tuning knob; snapshots are
/// a cache and change no answer).
pub const SNAPSHOT_EVERY_EVENTS: i64 = 1_000;

/// At most this many applied events wait for the commit before theirs; then
/// the runner waits for it (the changes waiting are held in memory).
const PENDING_EVENTS_AT_MOST: usize = 50_000;

/// The first page a manual is loaded with when a follower first meets it.
const FIRST_LOAD_PAGE_EVENTS: usize = 100;

/// The snapshot interval in force.
pub fn snapshot_every() -> i64 {
    std::env::var("BONDLEDGER_SNAPSHOT_EVERY")
        .ok()
        .and_then(|text| text.parse::<i64>().ok())
        .filter(|every| *every >= 1)
        .unwrap_or(SNAPSHOT_EVERY_EVENTS)
}

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("event {version} of {stream} cannot be read: {message}")]
    Corrupt {
        stream: String,
        version: i64,
        message: String,
    },
    #[error("no projection named {0:?} (there are: manuals, timeline, snapshots)")]
    Unknown(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a replay reads of an event, whether it was read whole
/// ([`StoredEvent`]) or for replay ([`ReplayEvent`]).
pub trait Replayed {
    fn stream(&self) -> &str;
    fn version(&self) -> i64;
    fn caller_id(&self) -> Option<&str>;
    /// The movement the event records.
    fn decode(&self) -> Result<RecordedMovement, ProjectionError>;
}

impl Replayed for StoredEvent {
    fn stream(&self) -> &str {
        &self.stream
    }

    fn version(&self) -> i64 {
        self.version
    }

    fn caller_id(&self) -> Option<&str> {
        self.caller_id.as_deref()
    }

    fn decode(&self) -> Result<RecordedMovement, ProjectionError> {
        RecordedMovement::from_stored(
            &self.event_type,
            self.schema_version,
            &self.stream,
            self.business_date,
            self.caller_id.clone(),
            &self.payload,
        )
        .map_err(|malformed| corrupt(self, &malformed))
    }
}

impl Replayed for ReplayEvent {
    fn stream(&self) -> &str {
        &self.stream
    }

    fn version(&self) -> i64 {
        self.version
    }

    fn caller_id(&self) -> Option<&str> {
        self.caller_id.as_deref()
    }

    fn decode(&self) -> Result<RecordedMovement, ProjectionError> {
        RecordedMovement::from_stored_text(
            &self.event_type,
            self.schema_version,
            &self.stream,
            self.business_date,
            self.caller_id.clone(),
            &self.payload_json,
        )
        .map_err(|malformed| corrupt(self, &malformed))
    }
}

fn corrupt(event: &impl Replayed, malformed: &impl std::fmt::Display) -> ProjectionError {
    ProjectionError::Corrupt {
        stream: event.stream().to_owned(),
        version: event.version(),
        message: malformed.to_string(),
    }
}

/// How findings and reversals name an event: its caller id, or else its
/// place in its stream.
pub fn event_reference(event: &impl Replayed) -> String {
    match event.caller_id() {
        Some(id) => id.to_owned(),
        None => format!("{}@{}", event.stream(), event.version()),
    }
}

/// Reads an event back into the movement it records.
pub fn decode(event: &impl Replayed) -> Result<RecordedMovement, ProjectionError> {
    event.decode()
}

/// Where a projection stands against the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectionStatus {
    pub name: &'static str,
    pub checkpoint: i64,
    pub head: i64,
}

impl ProjectionStatus {
    /// Events of the log the projection has not applied yet.
    pub fn behind(&self) -> i64 {
        self.head - self.checkpoint
    }
}

/// A manual followed by a projection: its state and the latest business date
/// among its events (what a snapshot must record).
struct Followed {
    replay: Replay,
    max_date: Option<NaiveDate>,
    /// The manual's rows as this runner last committed them (`manuals`):
    /// the next page writes only what changed since.
    written: Option<ManualRows>,
    /// The events whose records the manual's last snapshot keeps apart, in
    /// order (`snapshots`): the next snapshot writes only what changed since.
    written_apart: WrittenApart,
    /// Whether events of the manual wait to be committed (it is then among
    /// [`Pending::touched`]).
    pending: bool,
}

impl Followed {
    /// A manual met by the runner, its state `replay`, with nothing of it written yet.
    fn new(replay: Replay, max_date: Option<NaiveDate>) -> Self {
        Followed {
            replay,
            max_date,
            written: None,
            written_apart: WrittenApart::default(),
            pending: false,
        }
    }
}

/// What was applied since the last commit began, waiting to be committed.
struct Pending {
    /// Each projection's changes, in the order of the runner's names.
    changes: Vec<Vec<Change>>,
    /// The manuals whose events were applied, in the order first met.
    touched: Vec<String>,
    /// How many events were applied.
    events: usize,
}

impl Pending {
    fn new(projections: usize) -> Self {
        Pending {
            changes: (0..projections).map(|_| Vec::new()).collect(),
            touched: Vec::new(),
            events: 0,
        }
    }
}

/// A page of the log being read.
type PageRead = AbortOnDropHandle<Result<Vec<ReplayEvent>, StoreError>>;
/// A page's commits under way: each projection's index and its commit's task.
type PageCommit = Vec<(usize, AbortOnDropHandle<Result<(), StoreError>>)>;

/// Follows the log for the projections.
#[derive(Clone)]
pub struct Runner {
    store: Arc<dyn EventStore>,
}

impl Runner {
    pub fn new(store: Arc<dyn EventStore>) -> Self {
        Runner { store }
    }

    pub async fn status(&self) -> Result<Vec<ProjectionStatus>, ProjectionError> {
        let head = self.store.head_position().await?;
        let mut statuses = Vec::new();
        for name in PROJECTIONS {
            statuses.push(ProjectionStatus {
                name,
                checkpoint: self.store.checkpoint(name).await?,
                head,
            });
        }
        Ok(statuses)
    }

    /// Brings every projection up to the head of the log, in one pass: each
    /// page is read, decoded and applied once for all of them.
    pub async fn catch_up_all(
        &self,
        progress: &mut (dyn FnMut(&str, i64, i64) + Send),
    ) -> Result<(), ProjectionError> {
        self.catch_up_together(PROJECTIONS, progress).await
    }

    /// Clears a projection and applies the log again from position 0. The
    /// ledger keeps taking appends meanwhile; the projection ends at the head
    /// it finds when it gets there.
    pub async fn rebuild(
        &self,
        name: &str,
        progress: &mut (dyn FnMut(&str, i64, i64) + Send),
    ) -> Result<(), ProjectionError> {
        let name = known(name)?;
        self.store.reset_projection(name).await?;
        self.catch_up(name, progress).await
    }

    /// Clears every projection and applies the log again from position 0,
    /// in one pass (see [`Runner::catch_up_all`]).
    pub async fn rebuild_all(
        &self,
        progress: &mut (dyn FnMut(&str, i64, i64) + Send),
    ) -> Result<(), ProjectionError> {
        for name in PROJECTIONS {
            self.store.reset_projection(name).await?;
        }
        self.catch_up_all(progress).await
    }

    /// Applies the events after the projection's checkpoint, a page at a
    /// time; `progress(name, checkpoint, head)` after each page.
    pub async fn catch_up(
        &self,
        name: &str,
        progress: &mut (dyn FnMut(&str, i64, i64) + Send),
    ) -> Result<(), ProjectionError> {
        let name = known(name)?;
        self.catch_up_together(&[name], progress).await
    }

    /// Applies the events after each of `names`' checkpoints, a page at a
    /// time, from the earliest of them: an event is decoded and applied to its
    /// manual's state once, and each projection takes the changes of the
    /// events past its own checkpoint. Each projection's changes of a page
    /// are committed with its checkpoint, while the next page is read and
    /// applied (pages are committed in order, each once the one before it
    /// has been); `progress(name, checkpoint, head)` after each commit.
    #[tracing::instrument(name = "bondledger.projections.catch_up", skip(self, progress))]
    async fn catch_up_together(
        &self,
        names: &[&'static str],
        progress: &mut (dyn FnMut(&str, i64, i64) + Send),
    ) -> Result<(), ProjectionError> {
        let mut committing = None;
        let outcome = self.follow(names, progress, &mut committing).await;
        if let (Err(_), Some(commit)) = (&outcome, committing) {
            // What was applied before the failure is committed, as it would
            // have been had the pages gone one after the other.
            for (_, projection) in commit {
                let _ = projection.await;
            }
        }
        outcome
    }

    /// [`Self::catch_up_together`], with the commit under way in `committing`.
    async fn follow(
        &self,
        names: &[&'static str],
        progress: &mut (dyn FnMut(&str, i64, i64) + Send),
        committing: &mut Option<PageCommit>,
    ) -> Result<(), ProjectionError> {
        // Where each projection stands once the commits under way are done.
        let mut checkpoints = Vec::with_capacity(names.len());
        for name in names {
            checkpoints.push(self.store.checkpoint(name).await?);
        }
        let index_of = |projection: &str| names.iter().position(|name| *name == projection);
        let (timeline, snapshots) = (index_of("timeline"), index_of("snapshots"));
        // The position every followed state stands at.
        let mut from = checkpoints.iter().copied().min().unwrap_or(0);
        let mut followed: HashMap<String, Followed> = HashMap::new();
        let every = snapshot_every();
        // The next page is read while this one is applied and committed.
        let mut ahead: Option<(i64, PageRead)> = None;
        // What was applied since the last commit began: its changes, the
        // manuals it touched and how many events it holds.
        let mut pending = Pending::new(names.len());
        loop {
            let page = match ahead.take() {
                Some((after, read)) if after == from => read.await.map_err(|error| {
                    StoreError::Integrity(format!("a page read of the log stopped: {error}"))
                })??,
                _ => {
                    self.store
                        .read_all_for_replay(from, MAX_PAGE_EVENTS)
                        .await?
                }
            };
            let Some(last) = page.last().map(|e| e.position) else {
                // The log ends here, unless the last commit found another
                // runner ahead: then go on from where it got to.
                if let Some(restart) = self
                    .committed(names, committing.take(), &mut checkpoints, progress)
                    .await?
                {
                    followed.clear();
                    pending = Pending::new(names.len());
                    from = restart;
                    continue;
                }
                if pending.events == 0 {
                    break;
                }
                // What waited for that commit is committed, and the log is
                // read once more for what came meanwhile.
                *committing = Some(self.commit_pending(
                    names,
                    &mut pending,
                    &mut followed,
                    &mut checkpoints,
                    from,
                ));
                continue;
            };
            ahead = Some((last, self.read_after(last)));
            let changes = &mut pending.changes;
            let past = |index: Option<usize>, position: i64| {
                index.filter(|&index| position > checkpoints[index])
            };
            for stored in &page {
                if !followed.contains_key(&stored.stream) {
                    let mut loaded = self.load(&stored.stream, from).await?;
                    if snapshots.is_some() {
                        let standing =
                            |list| self.store.standing_snapshot_records(&stored.stream, list);
                        loaded.written_apart = WrittenApart {
                            sales: standing(RecordList::Sales).await?,
                            carryovers: standing(RecordList::Carryovers).await?,
                        };
                    }
                    followed.insert(stored.stream.clone(), loaded);
                }
                let Some(manual) = followed.get_mut(&stored.stream) else {
                    continue;
                };
                let recorded = decode(stored)?;
                if let Some(index) = past(timeline, stored.position) {
                    // The registration as it stood before the event names the
                    // items' HS codes; a registration names its own.
                    let state = manual.replay.state();
                    changes[index].push(Change::Timeline(timeline_row(stored, &recorded, state)));
                }
                manual.replay.apply(&recorded, &event_reference(stored));
                manual.max_date = Some(
                    manual
                        .max_date
                        .map_or(stored.business_date, |d| d.max(stored.business_date)),
                );
                if let Some(index) = past(snapshots, stored.position) {
                    if let (0, Some(max_date)) = (stored.version % every, manual.max_date) {
                        changes[index].extend(rows::snapshot(
                            stored,
                            &mut manual.replay,
                            max_date,
                            &mut manual.written_apart,
                        ));
                    }
                }
                if !manual.pending {
                    manual.pending = true;
                    pending.touched.push(stored.stream.clone());
                }
            }
            pending.events += page.len();
            from = last;
            // While the commit before is under way, the next pages are
            // applied and their changes wait to go in one commit with these
            // (up to a bound): a commit costs a transaction and its sync
            // however little it holds, and applying a page is quicker than
            // committing it.
            let under_way = committing
                .as_ref()
                .is_some_and(|commit| commit.iter().any(|(_, task)| !task.is_finished()));
            // Behind the log (the page came full), past the first commit, they
            // gather up to the bound whether or not a commit is under way:
            // each commit makes the rows of every manual touched since the one
            // before, and on a log of thousands of manuals a commit a page
            // made them all each page.
            let behind = page.len() == MAX_PAGE_EVENTS && committing.is_some();
            if (under_way || behind) && pending.events < PENDING_EVENTS_AT_MOST {
                continue;
            }
            // The commit before this one must stand before this one begins;
            // meanwhile this one is made ready for it (its rows encoded).
            let batches = self.take_batches(names, &mut pending, &mut followed, &checkpoints, last);
            let preparing = prepare_batches(batches);
            if let Some(restart) = self
                .committed(names, committing.take(), &mut checkpoints, progress)
                .await?
            {
                // What was made ready is dropped: it follows states read afresh.
                followed.clear();
                pending = Pending::new(names.len());
                from = restart;
                continue;
            }
            let prepared = preparing.await.map_err(|error| {
                StoreError::Integrity(format!("making a projection commit ready stopped: {error}"))
            })?;
            *committing = Some(self.start_commits(prepared, &mut checkpoints, last)?);
        }
        Ok(())
    }

    /// Starts the commits of what is `pending` (applied up to position
    /// `last`), each projection's beside the others' (on PostgreSQL, each on
    /// a connection of its own; SQLite's one writer takes them in turn), and
    /// moves `checkpoints` to `last`; `pending` is left empty.
    fn commit_pending(
        &self,
        names: &[&'static str],
        pending: &mut Pending,
        followed: &mut HashMap<String, Followed>,
        checkpoints: &mut [i64],
        last: i64,
    ) -> PageCommit {
        let batches = self.take_batches(names, pending, followed, checkpoints, last);
        for (index, _) in &batches {
            checkpoints[*index] = last;
        }
        batches
            .into_iter()
            .map(|(index, batch)| {
                let store = Arc::clone(&self.store);
                let commit = tokio::spawn(async move { store.commit_projection(batch).await });
                (index, AbortOnDropHandle::new(commit))
            })
            .collect()
    }

    /// Starts the commits of batches `prepared` (applied up to position
    /// `last`), as [`Self::commit_pending`] does.
    fn start_commits(
        &self,
        prepared: Vec<(usize, Result<PreparedBatch, StoreError>)>,
        checkpoints: &mut [i64],
        last: i64,
    ) -> Result<PageCommit, StoreError> {
        // None starts unless all were made ready.
        let prepared: Vec<(usize, PreparedBatch)> = prepared
            .into_iter()
            .map(|(index, batch)| batch.map(|batch| (index, batch)))
            .collect::<Result<_, _>>()?;
        let mut commits = Vec::with_capacity(prepared.len());
        for (index, batch) in prepared {
            checkpoints[index] = last;
            let store = Arc::clone(&self.store);
            let commit = tokio::spawn(async move { store.commit_prepared(batch).await });
            commits.push((index, AbortOnDropHandle::new(commit)));
        }
        Ok(commits)
    }

    /// Each projection's batch of what is `pending` (applied up to position
    /// `last`), for the projections whose `checkpoints` stand before it;
    /// `pending` is left empty, and the manuals' rows are taken as written.
    fn take_batches(
        &self,
        names: &[&'static str],
        pending: &mut Pending,
        followed: &mut HashMap<String, Followed>,
        checkpoints: &[i64],
        last: i64,
    ) -> Vec<(usize, ProjectionBatch)> {
        let Pending {
            mut changes,
            touched,
            ..
        } = std::mem::replace(pending, Pending::new(names.len()));
        let manuals = names
            .iter()
            .position(|name| *name == "manuals")
            .filter(|&index| last > checkpoints[index]);
        for stream in &touched {
            let Some(manual) = followed.get_mut(stream) else {
                continue;
            };
            manual.pending = false;
            if let Some(index) = manuals {
                let Some(state) = manual.replay.state() else {
                    continue;
                };
                // The next commit amends these rows. Should this one not
                // stand, every manual is read afresh.
                let (change, rows) = match manual.written.take() {
                    Some(previous) => {
                        let (change, rows) = amended_rows(previous, state);
                        (Change::AmendManual(Box::new(change)), rows)
                    }
                    None => {
                        let rows = manual_rows(state);
                        (Change::ReplaceManual(Box::new(rows.clone())), rows)
                    }
                };
                changes[index].push(change);
                manual.written = Some(rows);
            }
        }
        let mut batches = Vec::new();
        for (index, changes) in changes.into_iter().enumerate() {
            if last <= checkpoints[index] {
                continue;
            }
            batches.push((
                index,
                ProjectionBatch {
                    projection: names[index].to_owned(),
                    from_position: checkpoints[index],
                    to_position: last,
                    changes,
                },
            ));
        }
        batches
    }

    /// Waits for `commit` (when there is one) and takes in how it went.
    /// When another runner (another process) had applied some of its events
    /// first, its rows stand: those projections' `checkpoints` are read
    /// afresh, and the answer is the position to go on from (the earliest
    /// checkpoint), with every state read afresh.
    async fn committed(
        &self,
        names: &[&'static str],
        commit: Option<PageCommit>,
        checkpoints: &mut [i64],
        progress: &mut (dyn FnMut(&str, i64, i64) + Send),
    ) -> Result<Option<i64>, ProjectionError> {
        let Some(commit) = commit else {
            return Ok(None);
        };
        // Every commit of the page ends before any outcome is taken in.
        let mut outcomes = Vec::with_capacity(commit.len());
        for (index, projection) in commit {
            let outcome = projection.await.unwrap_or_else(|error| {
                Err(StoreError::Integrity(format!(
                    "a projection commit stopped: {error}"
                )))
            });
            outcomes.push((index, outcome));
        }
        let mut moved_elsewhere = false;
        for (index, outcome) in outcomes {
            match outcome {
                Ok(()) => {}
                Err(StoreError::Conflict { .. }) => {
                    checkpoints[index] = self.store.checkpoint(names[index]).await?;
                    moved_elsewhere = true;
                    tracing::debug!(
                        projection = names[index],
                        checkpoint = checkpoints[index],
                        "another runner moved the checkpoint"
                    );
                }
                Err(error) => return Err(error.into()),
            }
        }
        let head = self.store.head_position().await?;
        for (name, checkpoint) in names.iter().zip(checkpoints.iter()) {
            progress(name, *checkpoint, head);
        }
        Ok(moved_elsewhere
            .then(|| checkpoints.iter().copied().min())
            .flatten())
    }

    /// Starts reading the page of the log after `position`; the read stops
    /// if the handle is dropped.
    fn read_after(&self, position: i64) -> PageRead {
        let store = Arc::clone(&self.store);
        AbortOnDropHandle::new(tokio::spawn(async move {
            store.read_all_for_replay(position, MAX_PAGE_EVENTS).await
        }))
    }

    /// A manual's state as of global position `position`: from its latest
    /// usable snapshot, then its stream.
    async fn load(&self, manual: &str, position: i64) -> Result<Followed, ProjectionError> {
        let mut replay = Replay::new();
        let mut max_date = None;
        let mut next_version = 1;
        if position == 0 {
            // Nothing stands before the log's first position: a rebuild meets
            // each of thousands of manuals without reading anything of it.
            return Ok(Followed::new(replay, max_date));
        }
        if let Some(snapshot) = self
            .store
            .latest_snapshot(manual, i64::MAX, None, None, true)
            .await?
        {
            if snapshot.position <= position {
                let apart = RecordsApart {
                    sales: snapshot.sales,
                    carryovers: snapshot.carryovers,
                };
                if let Ok(state) = ManualState::from_snapshot(&snapshot.state, Some(&apart)) {
                    replay = Replay::from_state(state);
                    max_date = Some(snapshot.max_date);
                    next_version = snapshot.version + 1;
                }
            }
        }
        // Pages grow from a small one: a follower that starts from an early
        // checkpoint mostly finds the stream's first event already beyond it.
        let mut page_events = FIRST_LOAD_PAGE_EVENTS;
        loop {
            let page = self
                .store
                .read_stream_for_replay(manual, next_version, page_events)
                .await?;
            page_events = (page_events * 4).min(MAX_PAGE_EVENTS);
            let Some(last) = page.last().map(|e| e.version) else {
                break;
            };
            next_version = last + 1;
            for stored in page.iter().filter(|e| e.position <= position) {
                replay.apply(&decode(stored)?, &event_reference(stored));
                max_date = Some(max_date.map_or(stored.business_date, |d: NaiveDate| {
                    d.max(stored.business_date)
                }));
            }
            if page.iter().any(|e| e.position > position) {
                break;
            }
        }
        Ok(Followed::new(replay, max_date))
    }
}

/// Makes `batches` ready for their commits on a thread that may block; the
/// work stops if the handle is dropped before it starts.
fn prepare_batches(
    batches: Vec<(usize, ProjectionBatch)>,
) -> AbortOnDropHandle<Vec<(usize, Result<PreparedBatch, StoreError>)>> {
    AbortOnDropHandle::new(tokio::task::spawn_blocking(move || {
        batches
            .into_iter()
            .map(|(index, batch)| (index, PreparedBatch::new(batch)))
            .collect()
    }))
}

fn known(name: &str) -> Result<&'static str, ProjectionError> {
    PROJECTIONS
        .iter()
        .copied()
        .find(|p| *p == name)
        .ok_or_else(|| ProjectionError::Unknown(name.to_owned()))
}
