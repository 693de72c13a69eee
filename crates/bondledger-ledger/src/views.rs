//! Queries answered from read models: the investigator's timeline, the
//! carry-over chain and the deadlines. The projections are brought up to the
//! head of the log first, so an answer is never behind what was appended.

use std::collections::{BTreeMap, BTreeSet};

use bondledger_projections::{ProjectionBreak, ProjectionError, ProjectionStatus, Runner};
use bondledger_store::readmodel::{CarryoverRow, ManualRow, TimelineFilter};
use bondledger_store::{StoreError, StoredEvent, MAX_PAGE_EVENTS};
use chrono::{Duration, NaiveDate};

use crate::{Ledger, LedgerError};

/// Days the receiving side has to declare a carry-over (order 109); 30 where
/// its own book is a zone book (order 126).
const CARRYOVER_RECEIPT_DAYS: i64 = 90;
const ZONE_CARRYOVER_RECEIPT_DAYS: i64 = 30;
/// How often a catch-up starts again after another process moved a
/// checkpoint under it.
const MAX_CATCH_UP_ATTEMPTS: u32 = 8;

/// Something due on a manual.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deadline {
    pub manual: String,
    pub enterprise: String,
    /// `report`, `expiry` or `carryover_receipt`.
    pub kind: String,
    pub event: Option<String>,
    pub due: NaiveDate,
    /// Days from `today` to `due`; negative when overdue.
    pub days_remaining: i64,
    pub detail: String,
}

impl Ledger {
    pub fn runner(&self) -> Runner {
        Runner::new(self.store.clone())
    }

    /// Brings every projection up to the head of the log. Another process
    /// catching up at the same time moves a checkpoint first; then this one
    /// goes on from where that one got.
    pub async fn catch_up(
        &self,
        progress: &mut (dyn FnMut(&str, i64, i64) + Send),
    ) -> Result<(), LedgerError> {
        let _one_at_a_time = self.catching_up.lock().await;
        let mut attempt = 1;
        loop {
            match self.runner().catch_up_all(progress).await {
                Err(ProjectionError::Store(StoreError::Conflict { .. }))
                    if attempt < MAX_CATCH_UP_ATTEMPTS =>
                {
                    attempt += 1;
                }
                other => return Ok(other?),
            }
        }
    }

    /// Brings the projections up to the head before a read of the primary's
    /// read models. A replica's are the primary's as replayed: the primary's
    /// runner keeps them (`serve` catches up in the background, and after each
    /// append it takes), and a read that must see a write waits for it.
    pub(crate) async fn catch_up_before_reading(&self) -> Result<(), LedgerError> {
        if self.reads_replica {
            return Ok(());
        }
        self.catch_up(&mut |_, _, _| {}).await
    }

    pub async fn projection_status(&self) -> Result<Vec<ProjectionStatus>, LedgerError> {
        Ok(self.runner().status().await?)
    }

    pub async fn rebuild(
        &self,
        name: &str,
        progress: &mut (dyn FnMut(&str, i64, i64) + Send),
    ) -> Result<(), LedgerError> {
        Ok(self.runner().rebuild(name, progress).await?)
    }

    /// Rebuilds every projection from position 0, in one pass over the log.
    pub async fn rebuild_all(
        &self,
        progress: &mut (dyn FnMut(&str, i64, i64) + Send),
    ) -> Result<(), LedgerError> {
        Ok(self.runner().rebuild_all(progress).await?)
    }

    pub async fn audit_projections(
        &self,
        manual: Option<&str>,
    ) -> Result<Vec<ProjectionBreak>, LedgerError> {
        self.audit_projections_reporting(manual, &mut |_, _, _| {})
            .await
    }

    /// As [`Ledger::audit_projections`], telling `progress` how far it has
    /// got (see [`bondledger_projections::Runner::audit_reporting`]).
    pub async fn audit_projections_reporting(
        &self,
        manual: Option<&str>,
        progress: &mut (dyn FnMut(&str, i64, i64) + Send),
    ) -> Result<Vec<ProjectionBreak>, LedgerError> {
        Ok(self.runner().audit_reporting(manual, progress).await?)
    }

    pub async fn manuals(&self) -> Result<Vec<ManualRow>, LedgerError> {
        self.catch_up_before_reading().await?;
        Ok(self.reads.manual_rows(None).await?)
    }

    /// The manuals a carry-over chain reaches from `manual`: it, the manuals
    /// it carried over to, and onward.
    pub async fn carryover_chain(&self, manual: &str) -> Result<Vec<String>, LedgerError> {
        let mut chain = vec![manual.to_owned()];
        let mut seen: BTreeSet<String> = chain.iter().cloned().collect();
        let mut index = 0;
        while let Some(current) = chain.get(index).cloned() {
            index += 1;
            for row in self.reads.carryover_rows(Some(&current)).await? {
                if row.manual == current
                    && row.direction == "out"
                    && seen.insert(row.counterparty_manual.clone())
                {
                    chain.push(row.counterparty_manual);
                }
            }
        }
        Ok(chain)
    }

    /// Every event matching `filter`, in ledger order, handed to `each` a
    /// page at a time. With `follow_carryover`, the filter's manuals are
    /// extended along their carry-over chains.
    pub async fn timeline(
        &self,
        filter: &TimelineFilter,
        follow_carryover: bool,
        mut each: impl FnMut(&StoredEvent) + Send,
    ) -> Result<(), LedgerError> {
        self.catch_up_before_reading().await?;
        let mut filter = filter.clone();
        if follow_carryover {
            let mut manuals = Vec::new();
            for manual in &filter.manuals {
                for reached in self.carryover_chain(manual).await? {
                    if !manuals.contains(&reached) {
                        manuals.push(reached);
                    }
                }
            }
            filter.manuals = manuals;
        }
        let mut after = 0;
        loop {
            let page = self.reads.timeline(&filter, after, MAX_PAGE_EVENTS).await?;
            let Some(last) = page.last().map(|e| e.position) else {
                break;
            };
            page.iter().for_each(&mut each);
            after = last;
        }
        Ok(())
    }

    /// What is due, overdue or expiring, across the ledger or for one
    /// enterprise, soonest first. `today` is the caller's clock.
    pub async fn deadlines(
        &self,
        today: NaiveDate,
        enterprise: Option<&str>,
    ) -> Result<Vec<Deadline>, LedgerError> {
        self.catch_up_before_reading().await?;
        let manuals: BTreeMap<String, ManualRow> = self
            .store
            .manual_rows(None)
            .await?
            .into_iter()
            .map(|m| (m.manual.clone(), m))
            .collect();
        let belongs = |manual: &str| {
            enterprise.is_none_or(|code| {
                manuals
                    .get(manual)
                    .is_some_and(|m| m.enterprise == code || m.processing_enterprise == code)
            })
        };
        let parse = |text: &str| NaiveDate::parse_from_str(text, "%Y-%m-%d").ok();
        let mut deadlines = Vec::new();
        for row in self.reads.deadline_rows(None).await? {
            let (Some(due), true) = (parse(&row.due), belongs(&row.manual)) else {
                continue;
            };
            deadlines.push(Deadline {
                enterprise: manuals
                    .get(&row.manual)
                    .map(|m| m.enterprise.clone())
                    .unwrap_or_default(),
                manual: row.manual,
                kind: row.kind,
                event: Some(row.event).filter(|e| !e.is_empty()),
                due,
                days_remaining: (due - today).num_days(),
                detail: row.detail,
            });
        }
        let carryovers = self.reads.carryover_rows(None).await?;
        for out in carryovers.iter().filter(|c| c.direction == "out") {
            let receiver = &out.counterparty_manual;
            let received = carryovers.iter().any(|c: &CarryoverRow| {
                c.direction == "in"
                    && &c.manual == receiver
                    && c.counterparty_manual == out.manual
                    && c.batch == out.batch
            });
            let Some(shipped) = parse(&out.moved_on) else {
                continue;
            };
            if received || !(belongs(receiver) || belongs(&out.manual)) {
                continue;
            }
            let zone = manuals.get(receiver).is_some_and(|m| m.zone);
            let limit = if zone {
                ZONE_CARRYOVER_RECEIPT_DAYS
            } else {
                CARRYOVER_RECEIPT_DAYS
            };
            let due = shipped + Duration::days(limit);
            deadlines.push(Deadline {
                manual: receiver.clone(),
                enterprise: manuals
                    .get(receiver)
                    .map(|m| m.enterprise.clone())
                    .unwrap_or_default(),
                kind: "carryover_receipt".into(),
                event: Some(out.event.clone()),
                due,
                days_remaining: (due - today).num_days(),
                detail: format!(
                    "declare the carry-over in (深加工结转转入) of {} batch {} shipped on {}",
                    out.manual,
                    out.batch.as_deref().unwrap_or("-"),
                    out.moved_on
                ),
            });
        }
        deadlines.sort_by(|a, b| (a.due, &a.manual, &a.kind).cmp(&(b.due, &b.manual, &b.kind)));
        Ok(deadlines)
    }
}
