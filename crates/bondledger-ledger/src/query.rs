//! Queries by replay: a manual's stream folded into its state, whole or as
//! it stood at a version, a moment of recording, or a business date.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;
use std::sync::Arc;

use async_trait::async_trait;
use bondledger_domain::movement::ItemNo;
use bondledger_domain::state::{MaterialFigures, MaterialItem};
use bondledger_domain::{
    verify, ManualNo, ManualState, RecordedMovement, RecordsApart, Replay, Report, VerifyOptions,
};
use bondledger_projections::Replayed;
use bondledger_store::{EventStore, ReplayEvent, StoreError, StoredEvent, MAX_PAGE_EVENTS};
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use tokio_util::task::AbortOnDropHandle;
use tracing::Instrument;

use crate::{Ledger, LedgerError};

/// Which prefix of a manual's history a query sees (interchange §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsOf {
    Latest,
    /// After the manual's Nth event (its version).
    Version(i64),
    /// The events the ledger held at that moment.
    Recorded(DateTime<Utc>),
    /// The events dated on or before that day, in ledger order.
    Date(NaiveDate),
}

/// How a replay reads a page of a manual's events: whole (for a history,
/// which shows them) or as a replay needs them (for a state).
#[async_trait]
trait ReadForReplay: Replayed + Sized + Send + Sync + 'static {
    fn recorded_at(&self) -> DateTime<Utc>;

    async fn read_page(
        store: &dyn EventStore,
        manual: &str,
        from_version: i64,
        limit: usize,
    ) -> Result<Vec<Self>, StoreError>;
}

#[async_trait]
impl ReadForReplay for StoredEvent {
    fn recorded_at(&self) -> DateTime<Utc> {
        self.recorded_at
    }

    async fn read_page(
        store: &dyn EventStore,
        manual: &str,
        from_version: i64,
        limit: usize,
    ) -> Result<Vec<Self>, StoreError> {
        store.read_stream(manual, from_version, limit).await
    }
}

#[async_trait]
impl ReadForReplay for ReplayEvent {
    fn recorded_at(&self) -> DateTime<Utc> {
        self.recorded_at
    }

    async fn read_page(
        store: &dyn EventStore,
        manual: &str,
        from_version: i64,
        limit: usize,
    ) -> Result<Vec<Self>, StoreError> {
        store
            .read_stream_for_replay(manual, from_version, limit)
            .await
    }
}

/// One event of a manual's history with the balances after it.
#[derive(Debug, Clone)]
pub struct HistoryEntry {
    pub stored: StoredEvent,
    pub recorded: RecordedMovement,
    pub balances: BTreeMap<ItemNo, Decimal>,
}

pub use bondledger_projections::event_reference;

/// Reads a stored event back into the movement it records.
pub(crate) fn decode(stored: &StoredEvent) -> Result<RecordedMovement, LedgerError> {
    bondledger_projections::decode(stored).map_err(LedgerError::from)
}

/// Whether a replay from a snapshot reads the records the snapshot keeps
/// apart from its state (per-sale and carry-over records).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Apart {
    Read,
    /// Left out: the state is complete but for its sales and carry-overs,
    /// which balances do not need.
    Left,
}

/// A manual's balances as of some event ([`Ledger::balances`]): its state,
/// which may lack the per-sale and carry-over records, so it is no ground
/// for verification.
#[derive(Debug, Clone)]
pub struct Balances(ManualState);

impl Balances {
    pub fn manual(&self) -> &ManualNo {
        &self.0.registration.manual
    }

    /// The version of the manual's stream the balances are after.
    pub fn version(&self) -> i64 {
        self.0.version
    }

    /// The registered materials, by item.
    pub fn materials(&self) -> impl Iterator<Item = &MaterialItem> {
        self.0.registration.materials.values()
    }

    /// Every material's figures (domain §3).
    pub fn figures(&self) -> BTreeMap<ItemNo, MaterialFigures> {
        self.0.figures()
    }
}

/// A long replay tells its progress every this many events.
pub const PROGRESS_EVERY_EVENTS: i64 = 10_000;

impl Ledger {
    /// A manual's state as of `as_of`, or `None` if there is no such
    /// manual (then). It starts from the latest usable snapshot and reads
    /// the events after it as a replay needs them (payloads decoded
    /// straight from their text).
    #[tracing::instrument(name = "bondledger.ledger.replay", skip(self))]
    pub async fn replay(
        &self,
        manual: &str,
        as_of: AsOf,
    ) -> Result<Option<ManualState>, LedgerError> {
        self.replay_reading(manual, as_of, Apart::Read, |_| {})
            .await
    }

    /// A manual's balances as of `as_of`, or `None` if there is no such
    /// manual (then): as [`Ledger::replay`], but a snapshot's per-sale and
    /// carry-over records, which balances do not need, are not read.
    #[tracing::instrument(name = "bondledger.ledger.balances", skip(self))]
    pub async fn balances(
        &self,
        manual: &str,
        as_of: AsOf,
    ) -> Result<Option<Balances>, LedgerError> {
        let state = self
            .replay_reading(manual, as_of, Apart::Left, |_| {})
            .await?;
        Ok(state.map(Balances))
    }

    /// A replay from the latest usable snapshot, reading the records it
    /// keeps apart or not, handing `seen` the version of each event it
    /// applies.
    async fn replay_reading(
        &self,
        manual: &str,
        as_of: AsOf,
        apart: Apart,
        mut seen: impl FnMut(i64) + Send,
    ) -> Result<Option<ManualState>, LedgerError> {
        let start = self
            .start_from_snapshot(manual, as_of, i64::MAX, apart)
            .await?;
        self.replay_from::<ReplayEvent>(manual, as_of, start, |event, _, _| {
            seen(event.version());
            ControlFlow::Continue(())
        })
        .await
    }

    /// As [`Ledger::replay`], from the latest usable snapshot at or before
    /// `version` (so `each` sees every event after `version`), until `each`
    /// says to stop: a page of a history does not replay what came before it.
    pub(crate) async fn replay_after(
        &self,
        manual: &str,
        as_of: AsOf,
        version: i64,
        each: impl FnMut(&StoredEvent, &RecordedMovement, &ManualState) -> ControlFlow<()> + Send,
    ) -> Result<Option<ManualState>, LedgerError> {
        let start = self
            .start_from_snapshot(manual, as_of, version, Apart::Read)
            .await?;
        self.replay_from(manual, as_of, start, each).await
    }

    /// As [`Ledger::replay`], calling `each` on every event from the first,
    /// each read whole.
    pub async fn replay_every_event(
        &self,
        manual: &str,
        as_of: AsOf,
        mut each: impl FnMut(&StoredEvent, &RecordedMovement, &ManualState) + Send,
    ) -> Result<Option<ManualState>, LedgerError> {
        let replay = match as_of {
            AsOf::Date(date) => Replay::as_of_date(date),
            _ => Replay::new(),
        };
        self.replay_from(manual, as_of, (replay, 1), |stored, recorded, state| {
            each(stored, recorded, state);
            ControlFlow::Continue(())
        })
        .await
    }

    async fn replay_from<E: ReadForReplay>(
        &self,
        manual: &str,
        as_of: AsOf,
        (mut replay, next_version): (Replay, i64),
        mut each: impl FnMut(&E, &RecordedMovement, &ManualState) -> ControlFlow<()> + Send,
    ) -> Result<Option<ManualState>, LedgerError> {
        // The next page is read while this one is folded.
        let mut reading = self.read_page_ahead::<E>(manual, as_of, next_version);
        while let Some(read) = reading.take() {
            let page = read.await.map_err(|error| {
                LedgerError::Store(StoreError::Integrity(format!(
                    "a page read of {manual} stopped: {error}"
                )))
            })??;
            let Some(last) = page.last() else { break };
            reading = self.read_page_ahead::<E>(manual, as_of, last.version() + 1);
            for event in &page {
                let beyond = match as_of {
                    AsOf::Version(version) => event.version() > version,
                    AsOf::Recorded(moment) => event.recorded_at() > moment,
                    AsOf::Latest | AsOf::Date(_) => false,
                };
                if beyond {
                    return Ok(replay.into_state());
                }
                let recorded = event.decode()?;
                if replay.apply(&recorded, &event_reference(event)) {
                    if let Some(state) = replay.state() {
                        if each(event, &recorded, state).is_break() {
                            return Ok(replay.into_state());
                        }
                    }
                }
            }
        }
        Ok(replay.into_state())
    }

    /// Starts reading the page of `manual` from `next_version`, or `None`
    /// when the query sees no event from there. The read stops if the
    /// replay ends first.
    fn read_page_ahead<E: ReadForReplay>(
        &self,
        manual: &str,
        as_of: AsOf,
        next_version: i64,
    ) -> Option<AbortOnDropHandle<Result<Vec<E>, StoreError>>> {
        // As of a version, read no further than it: a page is costly.
        let page_size = match as_of {
            AsOf::Version(version) if version < next_version => return None,
            AsOf::Version(version) => usize::try_from(version - next_version + 1)
                .map_or(MAX_PAGE_EVENTS, |n| n.min(MAX_PAGE_EVENTS)),
            _ => MAX_PAGE_EVENTS,
        };
        let store = Arc::clone(&self.reads);
        let manual = manual.to_owned();
        Some(AbortOnDropHandle::new(tokio::spawn(async move {
            E::read_page(&*store, &manual, next_version, page_size).await
        })))
    }

    /// Where a replay as of `as_of` can start: the latest snapshot that holds
    /// only events the query sees, none after `version_cap`, or the start of
    /// the stream.
    async fn start_from_snapshot(
        &self,
        manual: &str,
        as_of: AsOf,
        version_cap: i64,
        apart: Apart,
    ) -> Result<(Replay, i64), LedgerError> {
        let date_limit = match as_of {
            AsOf::Date(date) => Some(date),
            _ => None,
        };
        let fresh = (date_limit.map_or_else(Replay::new, Replay::as_of_date), 1);
        let (max_version, max_recorded) = match as_of {
            AsOf::Version(version) => (version.min(version_cap), None),
            AsOf::Recorded(moment) => (version_cap, Some(moment)),
            AsOf::Latest | AsOf::Date(_) => (version_cap, None),
        };
        let Some(snapshot) = self
            .reads
            .latest_snapshot(
                manual,
                max_version,
                date_limit,
                max_recorded,
                apart == Apart::Read,
            )
            .await?
        else {
            return Ok(fresh);
        };
        let records = (apart == Apart::Read).then_some(RecordsApart {
            sales: snapshot.sales,
            carryovers: snapshot.carryovers,
        });
        // A snapshot is a cache: one that cannot be read is passed over.
        match ManualState::from_snapshot(&snapshot.state, records.as_ref()) {
            Ok(state) => Ok((Replay::resume(state, date_limit), snapshot.version + 1)),
            Err(error) => {
                tracing::warn!(manual, version = snapshot.version, %error, "snapshot unreadable; replaying from the start");
                Ok(fresh)
            }
        }
    }

    /// The verification report of a manual, or `None` if there is no such
    /// manual (as of then).
    pub async fn verify(
        &self,
        manual: &str,
        as_of: AsOf,
        options: &VerifyOptions,
    ) -> Result<Option<Report>, LedgerError> {
        self.verify_reporting(manual, as_of, options, &mut |_, _, _| {})
            .await
    }

    /// As [`Ledger::verify`], telling `progress` how far the manual's replay
    /// has got ("replaying", the version reached, the manual's last version
    /// the replay can reach) every [`PROGRESS_EVERY_EVENTS`] events.
    pub async fn verify_reporting(
        &self,
        manual: &str,
        as_of: AsOf,
        options: &VerifyOptions,
        progress: &mut (dyn FnMut(&str, i64, i64) + Send),
    ) -> Result<Option<Report>, LedgerError> {
        let last = match (self.reads.stream_version(manual).await?, as_of) {
            (version, AsOf::Version(cap)) => version.min(cap),
            (version, _) => version,
        };
        // The span `replay` opens: this is that replay, telling its progress.
        let replayed = self
            .replay_reading(manual, as_of, Apart::Read, |version| {
                if version % PROGRESS_EVERY_EVENTS == 0 {
                    progress("replaying", version, last);
                }
            })
            .instrument(tracing::info_span!(
                "bondledger.ledger.replay",
                manual,
                ?as_of
            ))
            .await?;
        let Some(state) = replayed else {
            return Ok(None);
        };
        let others: BTreeSet<ManualNo> = state
            .carryovers
            .iter()
            .filter(|c| c.outgoing)
            .map(|c| c.counterparty_manual.clone())
            .collect();
        // The other side is seen as the ledger saw it at the same moment;
        // a version of this manual says nothing of another's.
        let counterpart_as_of = match as_of {
            AsOf::Version(_) => AsOf::Latest,
            other => other,
        };
        let mut counterparties = BTreeMap::new();
        for other in others {
            if let Some(other_state) = self.replay(other.as_str(), counterpart_as_of).await? {
                counterparties.insert(other, other_state);
            }
        }
        Ok(Some(verify(&state, &counterparties, options)))
    }

    /// Every event of a manual with the balances after it, in stream order,
    /// handed to `each` as it is replayed.
    pub async fn history(
        &self,
        manual: &str,
        as_of: AsOf,
        mut each: impl FnMut(HistoryEntry) + Send,
    ) -> Result<Option<ManualState>, LedgerError> {
        self.replay_every_event(manual, as_of, |stored, recorded, state| {
            each(HistoryEntry {
                stored: stored.clone(),
                recorded: recorded.clone(),
                balances: state.balances(),
            })
        })
        .await
    }
}
