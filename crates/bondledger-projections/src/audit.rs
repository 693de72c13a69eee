//! The audit of read models: every projection's rows against a fresh replay
//! of the whole log.

use std::collections::{BTreeMap, BTreeSet};

use bondledger_domain::{ManualState, RecordsApart, Replay};
use bondledger_store::readmodel::{ManualRows, TimelineRow, MAX_READ_MODEL_ROWS};
use bondledger_store::timeline::{block_of, row_keys, TIMELINE_BLOCK_EVENTS};
use bondledger_store::MAX_PAGE_EVENTS;

use crate::{
    decode, event_reference, manual_rows, snapshot_every, timeline_row, ProjectionError, Runner,
};

/// The keys a replay's timeline rows put on their blocks, from the first
/// block not yet compared: (kind, value) → the first event (manual,
/// version) with it.
#[derive(Default)]
struct BlockKeys {
    unchecked: i64,
    blocks: BTreeMap<i64, KeysOfBlock>,
}

/// A block's keys, (kind, value), each with the first event (manual,
/// version) that has it and the positions of all that do.
type KeysOfBlock = BTreeMap<(String, String), ExpectedKey>;

struct ExpectedKey {
    manual: String,
    version: i64,
    positions: Vec<i64>,
}

impl BlockKeys {
    fn expect(&mut self, row: &TimelineRow) {
        let keys = self.blocks.entry(block_of(row.position)).or_default();
        for (kind, value) in row_keys(row) {
            let key = keys
                .entry((kind.to_owned(), value.to_owned()))
                .or_insert_with(|| ExpectedKey {
                    manual: row.manual.clone(),
                    version: row.version,
                    positions: Vec::new(),
                });
            if key.positions.last() != Some(&row.position) {
                key.positions.push(row.position);
            }
        }
    }

    /// The blocks up to `through`, which are compared now.
    fn take_through(&mut self, through: i64) -> BTreeMap<i64, KeysOfBlock> {
        let later = self.blocks.split_off(&(through + 1));
        self.unchecked = through + 1;
        std::mem::replace(&mut self.blocks, later)
    }
}

/// A read-model row that differs from what a replay gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectionBreak {
    pub projection: &'static str,
    pub manual: String,
    /// The event (stream version) the row belongs to, where it is one event's.
    pub version: Option<i64>,
    pub what: String,
}

impl Runner {
    /// Replays the whole log afresh and compares every read model with it.
    /// The projections are brought up to date first.
    pub async fn audit(
        &self,
        manual_filter: Option<&str>,
    ) -> Result<Vec<ProjectionBreak>, ProjectionError> {
        self.audit_reporting(manual_filter, &mut |_, _, _| {}).await
    }

    /// As [`Runner::audit`], telling `progress` how far it has got: the
    /// catch-up's progress first, then ("audit", the position replayed and
    /// compared, the ledger's head when the audit began) a page at a time.
    pub async fn audit_reporting(
        &self,
        manual_filter: Option<&str>,
        progress: &mut (dyn FnMut(&str, i64, i64) + Send),
    ) -> Result<Vec<ProjectionBreak>, ProjectionError> {
        self.catch_up_all(progress).await?;
        let head = self.store.head_position().await?;
        let mut breaks = Vec::new();
        let mut replays: BTreeMap<String, Replay> = BTreeMap::new();
        let wanted = |manual: &str| manual_filter.is_none_or(|m| m == manual);
        let mut after = 0;
        let mut stored_timeline = Vec::new();
        let mut block_keys = BlockKeys::default();
        let every = snapshot_every();
        loop {
            let page = self
                .store
                .read_all_for_replay(after, MAX_PAGE_EVENTS)
                .await?;
            let Some(last) = page.last().map(|e| e.position) else {
                break;
            };
            let rows = self.store.timeline_rows(after, MAX_PAGE_EVENTS).await?;
            stored_timeline.clear();
            stored_timeline.extend(rows.into_iter().map(|row| (row.position, row)));
            let stored_timeline: BTreeMap<_, _> = stored_timeline.drain(..).collect();
            for stored in &page {
                let recorded = decode(stored)?;
                let replay = replays.entry(stored.stream.clone()).or_default();
                if wanted(&stored.stream) {
                    let expected = timeline_row(stored, &recorded, replay.state());
                    block_keys.expect(&expected);
                    match stored_timeline.get(&stored.position) {
                        Some(actual) if *actual == expected => {}
                        Some(actual) => breaks.push(ProjectionBreak {
                            projection: "timeline",
                            manual: stored.stream.clone(),
                            version: Some(stored.version),
                            what: format!("row is {actual:?}, a replay gives {expected:?}"),
                        }),
                        None => breaks.push(ProjectionBreak {
                            projection: "timeline",
                            manual: stored.stream.clone(),
                            version: Some(stored.version),
                            what: "row missing".into(),
                        }),
                    }
                }
                replay.apply(&recorded, &event_reference(stored));
                if wanted(&stored.stream) && stored.version % every == 0 {
                    if let Some(state) = replay.state() {
                        self.check_snapshot(state, stored.version, &mut breaks)
                            .await?;
                    }
                }
            }
            after = last;
            // No later event falls in a block before the next position's.
            let whole = block_of(last + 1) - 1;
            self.check_block_keys(&mut block_keys, whole, manual_filter.is_none(), &mut breaks)
                .await?;
            progress("audit", after, head.max(after));
        }
        self.check_block_keys(
            &mut block_keys,
            block_of(after),
            manual_filter.is_none(),
            &mut breaks,
        )
        .await?;
        let states: BTreeMap<String, ManualState> = replays
            .into_iter()
            .filter(|(manual, _)| wanted(manual))
            .filter_map(|(manual, replay)| replay.into_state().map(|state| (manual, state)))
            .collect();
        self.check_manuals(&states, manual_filter, &mut breaks)
            .await?;
        Ok(breaks)
    }

    /// Compares the timeline's keys of the blocks `block_keys` has not
    /// checked, up to `through`, with the keys of the rows a replay gives;
    /// `whole`: every event was replayed, so a key no row gives is a break
    /// too, not only a key missing.
    async fn check_block_keys(
        &self,
        block_keys: &mut BlockKeys,
        through: i64,
        whole: bool,
        breaks: &mut Vec<ProjectionBreak>,
    ) -> Result<(), ProjectionError> {
        let first = block_keys.unchecked;
        if through < first {
            return Ok(());
        }
        let mut stored: BTreeMap<i64, BTreeMap<(String, String), Vec<i64>>> = BTreeMap::new();
        for key in self.store.timeline_block_keys(first, through).await? {
            stored
                .entry(key.block)
                .or_default()
                .insert((key.kind, key.value), key.positions);
        }
        let expected = block_keys.take_through(through);
        let span = |block: i64| {
            format!(
                "positions {} to {}",
                block * TIMELINE_BLOCK_EVENTS + 1,
                (block + 1) * TIMELINE_BLOCK_EVENTS
            )
        };
        // Audited whole, a key lists exactly the rows with it; one manual's,
        // at least that manual's (both ascending).
        let lists = |held: &[i64], expected: &[i64]| {
            if whole {
                held == expected
            } else {
                expected.iter().all(|p| held.binary_search(p).is_ok())
            }
        };
        for (block, keys) in &expected {
            let held = stored.get(block);
            for ((kind, value), key) in keys {
                let what = match held.and_then(|h| h.get(&(kind.clone(), value.clone()))) {
                    None => format!(
                        "the key {kind} {value:?} of its block ({}) is missing: queries by it would not find the event",
                        span(*block)
                    ),
                    Some(positions) if !lists(positions, &key.positions) => {
                        format!(
                            "the key {kind} {value:?} of its block ({}) lists positions {positions:?}, a replay gives {:?}",
                            span(*block),
                            key.positions
                        )
                    }
                    Some(_) => continue,
                };
                breaks.push(ProjectionBreak {
                    projection: "timeline",
                    manual: key.manual.clone(),
                    version: Some(key.version),
                    what,
                });
            }
        }
        if whole {
            for (block, held) in &stored {
                let keys = expected.get(block);
                for (kind, value) in held.keys() {
                    if keys.is_some_and(|k| k.contains_key(&(kind.clone(), value.clone()))) {
                        continue;
                    }
                    let manual = keys
                        .and_then(|k| k.values().next())
                        .map_or_else(|| "-".to_owned(), |key| key.manual.clone());
                    breaks.push(ProjectionBreak {
                        projection: "timeline",
                        manual,
                        version: None,
                        what: format!(
                            "the key {kind} {value:?} of the block of {} is no event's there",
                            span(*block)
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    async fn check_snapshot(
        &self,
        state: &ManualState,
        version: i64,
        breaks: &mut Vec<ProjectionBreak>,
    ) -> Result<(), ProjectionError> {
        let manual = state.registration.manual.to_string();
        let Some(snapshot) = self
            .store
            .latest_snapshot(&manual, version, None, None, true)
            .await?
        else {
            return Ok(());
        };
        if snapshot.version != version {
            return Ok(());
        }
        let apart = RecordsApart {
            sales: snapshot.sales,
            carryovers: snapshot.carryovers,
        };
        let same =
            ManualState::from_snapshot(&snapshot.state, Some(&apart)).is_ok_and(|s| &s == state);
        if !same {
            breaks.push(ProjectionBreak {
                projection: "snapshots",
                manual,
                version: Some(version),
                what: "the snapshot differs from a replay to that version".into(),
            });
        }
        Ok(())
    }

    async fn check_manuals(
        &self,
        states: &BTreeMap<String, ManualState>,
        manual_filter: Option<&str>,
        breaks: &mut Vec<ProjectionBreak>,
    ) -> Result<(), ProjectionError> {
        let manuals = self.store.manual_rows(manual_filter).await?;
        let balances = self.store.balance_rows(manual_filter).await?;
        let carryovers = self.store.carryover_rows(manual_filter).await?;
        let deadlines = self.store.deadline_rows(manual_filter).await?;
        let held: BTreeSet<&str> = manuals.iter().map(|m| m.manual.as_str()).collect();
        for (manual, state) in states {
            let expected: ManualRows = manual_rows(state);
            let mut problems = Vec::new();
            let actual_manual = if manuals.len() < MAX_READ_MODEL_ROWS {
                manuals.iter().find(|m| &m.manual == manual).cloned()
            } else {
                self.store.manual_rows(Some(manual)).await?.pop()
            };
            if actual_manual.as_ref() != Some(&expected.manual) {
                problems.push("summary row");
            }
            // A whole-ledger read stops at MAX_READ_MODEL_ROWS: past it, each manual's
            // rows are read on their own rather than compared with a cut list.
            let actual_balances = if balances.len() < MAX_READ_MODEL_ROWS {
                balances
                    .iter()
                    .filter(|b| &b.manual == manual)
                    .cloned()
                    .collect()
            } else {
                self.store.balance_rows(Some(manual)).await?
            };
            if actual_balances != expected.balances {
                problems.push("balances");
            }
            let mut actual_carryovers: Vec<_> = if carryovers.len() < MAX_READ_MODEL_ROWS {
                carryovers
                    .iter()
                    .filter(|c| &c.manual == manual)
                    .cloned()
                    .collect()
            } else {
                // One manual's rows read with those naming it as counterparty
                // may pass the cap too: its own rows, all of them.
                self.store.own_carryover_rows(manual).await?
            };
            let mut expected_carryovers = expected.carryovers.clone();
            actual_carryovers.sort_by(|a, b| a.event.cmp(&b.event));
            expected_carryovers.sort_by(|a, b| a.event.cmp(&b.event));
            if actual_carryovers != expected_carryovers {
                problems.push("carry-overs");
            }
            let mut actual_deadlines: Vec<_> = if deadlines.len() < MAX_READ_MODEL_ROWS {
                deadlines
                    .iter()
                    .filter(|d| &d.manual == manual)
                    .cloned()
                    .collect()
            } else {
                self.store.deadline_rows(Some(manual)).await?
            };
            let mut expected_deadlines = expected.deadlines.clone();
            actual_deadlines.sort_by(|a, b| (&a.kind, &a.event).cmp(&(&b.kind, &b.event)));
            expected_deadlines.sort_by(|a, b| (&a.kind, &a.event).cmp(&(&b.kind, &b.event)));
            if actual_deadlines != expected_deadlines {
                problems.push("deadlines");
            }
            for problem in problems {
                breaks.push(ProjectionBreak {
                    projection: "manuals",
                    manual: manual.clone(),
                    version: None,
                    what: format!("{problem} differ from a replay"),
                });
            }
        }
        if manual_filter.is_none() && manuals.len() < MAX_READ_MODEL_ROWS {
            for extra in held.iter().filter(|m| !states.contains_key(**m)) {
                breaks.push(ProjectionBreak {
                    projection: "manuals",
                    manual: (*extra).to_owned(),
                    version: None,
                    what: "a manual the log does not hold".into(),
                });
            }
        }
        Ok(())
    }
}
