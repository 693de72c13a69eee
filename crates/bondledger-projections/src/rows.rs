//! From replayed state to read-model rows.

use std::collections::{BTreeMap, HashMap, HashSet};

use bondledger_domain::movement::{Book, ItemNo, Movement};
use bondledger_domain::state::{CarryoverRecord, MaterialFigures};
use bondledger_domain::verify::report_deadline;
use bondledger_domain::{format6, verify, ManualState, RecordedMovement, Replay, VerifyOptions};
use bondledger_store::readmodel::{
    BalanceRow, CarryoverRow, Change, DeadlineRow, ManualAmendment, ManualRow, ManualRows,
    RecordList, SnapshotRecords, SnapshotRow, TimelineRow,
};
use bondledger_store::ReplayEvent;
use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::Serialize;

/// The rows of one manual: its summary, balances, carry-overs, deadlines.
pub fn manual_rows(state: &ManualState) -> ManualRows {
    let mut rows = rows_but_carryovers(state);
    rows.carryovers = state
        .carryovers
        .iter()
        .map(|c| carryover_row(&rows.manual.manual, c))
        .collect();
    rows
}

/// The records of a state's list (carry-overs, sales) added since `written`
/// of them were written, where none of those is gone; `None` where some are.
/// A record is only ever added at the end of its list, so when the record at
/// the place of the last one written is still that one (`is_last_written`),
/// none is gone and the records after it are the new ones.
fn added_since<T>(
    records: &[T],
    written: usize,
    is_last_written: impl Fn(&T) -> bool,
) -> Option<&[T]> {
    if written > 0 && !records.get(written - 1).is_some_and(is_last_written) {
        return None;
    }
    records.get(written..)
}

/// The rows of `state` ([`manual_rows`]) and what changed since `previous`
/// (the rows last written): as [`amendment`], but the carry-over rows of
/// records `previous` holds are taken from it rather than made and compared
/// again ([`added_since`]; a record's row is its own).
pub fn amended_rows(previous: ManualRows, state: &ManualState) -> (ManualAmendment, ManualRows) {
    let mut now = rows_but_carryovers(state);
    let last_written = previous.carryovers.last().map(|row| row.event.as_str());
    let Some(added) = added_since(&state.carryovers, previous.carryovers.len(), |c| {
        Some(c.event.as_str()) == last_written
    }) else {
        now.carryovers = state
            .carryovers
            .iter()
            .map(|c| carryover_row(&now.manual.manual, c))
            .collect();
        return (amendment(&previous, &now), now);
    };
    let ManualRows {
        manual,
        balances,
        carryovers: mut kept,
        deadlines,
    } = previous;
    let mut change = amendment(
        &ManualRows {
            manual,
            balances,
            carryovers: Vec::new(),
            deadlines,
        },
        &now,
    );
    change.carryovers = added
        .iter()
        .map(|c| carryover_row(&now.manual.manual, c))
        .collect();
    kept.extend(change.carryovers.iter().cloned());
    now.carryovers = kept;
    (change, now)
}

fn carryover_row(manual: &str, c: &CarryoverRecord) -> CarryoverRow {
    CarryoverRow {
        manual: manual.to_owned(),
        event: c.event.clone(),
        direction: if c.outgoing { "out" } else { "in" }.to_owned(),
        counterparty_manual: c.counterparty_manual.to_string(),
        batch: c.batch.clone(),
        item: i64::from(c.item.0),
        qty: format6(c.qty),
        business_date: date(c.date),
        moved_on: date(c.moved_on),
    }
}

/// [`manual_rows`] with no carry-over rows.
fn rows_but_carryovers(state: &ManualState) -> ManualRows {
    let registration = &state.registration;
    let manual = registration.manual.to_string();
    // Carry-over matching needs the other manual; the summary counts the
    // findings the manual's own history gives.
    let report = verify(state, &Default::default(), &VerifyOptions::default());
    // The report's figures are the state's: they are not worked out twice.
    let figures: BTreeMap<ItemNo, &MaterialFigures> = report
        .materials
        .iter()
        .map(|material| (material.figures.item, &material.figures))
        .collect();
    let balances = registration
        .materials
        .values()
        .map(|m| {
            let f = figures.get(&m.item);
            BalanceRow {
                manual: manual.clone(),
                item: i64::from(m.item.0),
                hs: m.hs.to_string(),
                name: m.name.clone(),
                unit: m.unit.clone(),
                balance: format6(f.map_or(Decimal::ZERO, |f| f.expected_remaining)),
                at_contractors: format6(f.map_or(Decimal::ZERO, |f| f.at_contractors)),
            }
        })
        .collect();
    let mut deadlines = Vec::new();
    if !state.closed {
        deadlines.push(DeadlineRow {
            manual: manual.clone(),
            kind: "expiry".into(),
            event: String::new(),
            due: date(registration.valid_until),
            detail: "the manual's validity ends (有效期)".into(),
        });
        if registration.book == Book::Manual && state.report.is_none() {
            deadlines.push(DeadlineRow {
                manual: manual.clone(),
                kind: "report".into(),
                event: String::new(),
                due: date(report_deadline(state)),
                detail:
                    "report for verification (报核) within 30 days of the last export or expiry"
                        .into(),
            });
        }
    }
    ManualRows {
        manual: ManualRow {
            manual,
            trade_mode: registration.trade_mode.as_str().to_owned(),
            book: match registration.book {
                Book::Manual => "manual",
                Book::AccountBook => "account_book",
            }
            .to_owned(),
            zone: registration.zone,
            enterprise: registration.enterprise.to_string(),
            processing_enterprise: registration.processing_enterprise.to_string(),
            valid_until: date(registration.valid_until),
            version: state.version,
            status: if state.closed {
                "closed".to_owned()
            } else {
                report.status.as_str().to_owned()
            },
            closed: state.closed,
            findings: report.findings.len() as i64,
        },
        balances,
        carryovers: Vec::new(),
        deadlines,
    }
}

fn date(date: NaiveDate) -> String {
    // As strftime's `%Y-%m-%d` writes it, without parsing a format each time
    // (a manual's rows are many dates, written on every page).
    bondledger_store::chain::format_business_date(&date)
}

/// The timeline row of one event. `state` is the manual before the event
/// (none before its registration).
pub fn timeline_row(
    stored: &ReplayEvent,
    recorded: &RecordedMovement,
    state: Option<&ManualState>,
) -> TimelineRow {
    let movement = &recorded.envelope.movement;
    let mut hs: Vec<String> = Vec::new();
    let materials = |items: &mut Vec<String>, numbers: &[ItemNo]| {
        if let Some(state) = state {
            for number in numbers {
                if let Some(item) = state.registration.materials.get(number) {
                    items.push(item.hs.to_string());
                }
            }
        }
    };
    let products = |items: &mut Vec<String>, numbers: &[ItemNo]| {
        if let Some(state) = state {
            for number in numbers {
                if let Some(item) = state.registration.products.get(number) {
                    items.push(item.hs.to_string());
                }
            }
        }
    };
    let (material_items, product_items) = items_named(movement);
    materials(&mut hs, &material_items);
    products(&mut hs, &product_items);
    if let Some(reversed) = &recorded.reverses {
        let (m, p) = items_named(&reversed.movement);
        materials(&mut hs, &m);
        products(&mut hs, &p);
    }
    match movement {
        Movement::ManualRegistered(r) => {
            hs.extend(r.materials.iter().map(|m| m.hs.to_string()));
            hs.extend(r.products.iter().map(|p| p.hs.to_string()));
        }
        Movement::ManualAmended(a) => {
            hs.extend(a.add_materials.iter().map(|m| m.hs.to_string()));
            hs.extend(a.add_products.iter().map(|p| p.hs.to_string()));
        }
        Movement::CarryoverOut(c) => hs.push(c.hs.to_string()),
        _ => {}
    }
    hs.sort();
    hs.dedup();
    let (declaration, parties) = named_parties(movement);
    let mut counterparties: Vec<String> = parties.into_iter().map(str::to_owned).collect();
    counterparties.sort();
    counterparties.dedup();
    TimelineRow {
        position: stored.position,
        manual: stored.stream.clone(),
        version: stored.version,
        event_type: stored.event_type.clone(),
        business_date: date(stored.business_date),
        declaration: declaration.map(str::to_owned),
        hs,
        counterparties,
    }
}

/// The declaration a movement names, and the enterprises and manuals it
/// names as counterparties: `counterparty_enterprise`, `counterparty_manual`,
/// `contractor`, `from`, `to_manual`, `from_manual` and
/// `counterpart.enterprise` (interchange §3, `timeline --counterparty`).
/// Read from the typed movement, not from its fields as JSON: every event of
/// a catch-up passes here.
fn named_parties(movement: &Movement) -> (Option<&str>, Vec<&str>) {
    use Movement as M;
    match movement {
        M::MaterialImported(m) => (Some(m.declaration.as_str()), Vec::new()),
        M::ProductExported(p) | M::ProductReexported(p) => {
            (Some(p.declaration.as_str()), Vec::new())
        }
        M::ProductReturned(p) => (Some(p.declaration.as_str()), Vec::new()),
        M::CarryoverOut(c) => (
            Some(c.declaration.as_str()),
            vec![
                c.counterparty_enterprise.as_str(),
                c.counterparty_manual.as_str(),
            ],
        ),
        M::CarryoverIn(c) => (
            Some(c.declaration.as_str()),
            vec![
                c.counterparty_enterprise.as_str(),
                c.counterparty_manual.as_str(),
            ],
        ),
        M::RemnantOut(r) => (
            r.declaration.as_ref().map(|d| d.as_str()),
            vec![r.to_manual.as_str()],
        ),
        M::RemnantIn(r) => (
            r.declaration.as_ref().map(|d| d.as_str()),
            vec![r.from_manual.as_str()],
        ),
        M::Substituted(s) => (None, vec![s.counterpart.enterprise.as_str()]),
        M::OutwardShipped(o) => (
            None,
            std::iter::once(o.contractor.as_str())
                .chain(o.from.as_ref().map(|f| f.as_str()))
                .collect(),
        ),
        M::OutwardReturned(o) => (None, vec![o.contractor.as_str()]),
        M::DomesticSale(d) => (Some(d.declaration.as_str()), Vec::new()),
        M::MaterialsReturned(m) => (Some(m.declaration.as_str()), Vec::new()),
        M::MaterialsExchanged(m) => (Some(m.declaration.as_str()), Vec::new()),
        M::ScrapDisposed(s) => (s.declaration.as_ref().map(|d| d.as_str()), Vec::new()),
        M::DefectiveDisposed(d) => (d.declaration.as_ref().map(|d| d.as_str()), Vec::new()),
        M::ManualRegistered(_)
        | M::ManualAmended(_)
        | M::UnitConsumptionDeclared(_)
        | M::Abandoned(_)
        | M::Destroyed(_)
        | M::DisasterLoss(_)
        | M::WorkOrderCompleted(_)
        | M::GoodsSealed(_)
        | M::Reported(_)
        | M::Closed(_)
        | M::PeriodClosed(_)
        | M::Reversed(_) => (None, Vec::new()),
    }
}

/// The material and product items a movement moves or declares.
fn items_named(movement: &Movement) -> (Vec<ItemNo>, Vec<ItemNo>) {
    let mut materials = Vec::new();
    let mut products = Vec::new();
    if let Some((item, _)) = bondledger_domain::state::single_material(movement) {
        materials.push(item);
    }
    products.extend(
        bondledger_domain::state::moved_products(movement)
            .into_iter()
            .map(|(item, _, _)| item),
    );
    match movement {
        Movement::UnitConsumptionDeclared(d) => {
            products.push(d.product);
            materials.extend(d.lines.iter().map(|l| l.material));
        }
        Movement::ManualAmended(a) => {
            for set in &a.set_quantities {
                match set.kind {
                    bondledger_domain::movement::ItemKind::Material => materials.push(set.item),
                    bondledger_domain::movement::ItemKind::Product => products.push(set.item),
                }
            }
        }
        Movement::OutwardShipped(o) => materials.extend(o.materials.iter().map(|m| m.item)),
        Movement::OutwardReturned(o) => materials.extend(o.materials.iter().map(|m| m.item)),
        Movement::DomesticSale(s) => materials.extend(s.materials.iter().map(|m| m.item)),
        Movement::WorkOrderCompleted(w) => {
            products.push(w.product);
            materials.extend(w.issued.iter().map(|i| i.item));
        }
        Movement::Reported(r) => materials.extend(r.declared_remaining.iter().map(|d| d.item)),
        _ => {}
    }
    (materials, products)
}

/// The events whose records a manual's last snapshot keeps apart, per list,
/// in order.
#[derive(Debug, Default)]
pub(crate) struct WrittenApart {
    pub(crate) sales: Vec<String>,
    pub(crate) carryovers: Vec<String>,
}

/// A snapshot of the state after `stored`, as `replay` holds it, and what
/// it changes in the manual's records kept apart (sales, carry-overs), of
/// which `written` are the events standing as the last snapshot left them,
/// in order (moved on).
pub(crate) fn snapshot(
    stored: &ReplayEvent,
    replay: &mut Replay,
    max_date: NaiveDate,
    written: &mut WrittenApart,
) -> Vec<Change> {
    // A state that cannot be written is simply not cached.
    let Some(Ok(state_text)) = replay.snapshot() else {
        return Vec::new();
    };
    let Some(state) = replay.state() else {
        return Vec::new();
    };
    let Some(sales) = records_since(
        RecordList::Sales,
        stored,
        &state.sales,
        |s| &s.event,
        &mut written.sales,
    ) else {
        return Vec::new();
    };
    let Some(carryovers) = records_since(
        RecordList::Carryovers,
        stored,
        &state.carryovers,
        |c| &c.event,
        &mut written.carryovers,
    ) else {
        return Vec::new();
    };
    let mut changes = vec![Change::Snapshot(SnapshotRow {
        manual: stored.stream.clone(),
        version: stored.version,
        position: stored.position,
        max_date,
        recorded_at: stored.recorded_at,
        state: state_text,
        // Written apart, only what changed (below).
        sales: Vec::new(),
        carryovers: Vec::new(),
    })];
    for records in [sales, carryovers] {
        if !records.added.is_empty() || !records.removed.is_empty() {
            changes.push(Change::SnapshotRecords(records));
        }
    }
    changes
}

/// The records of `list` (`records`, each named by the event `event_of`
/// gives) added and removed since those `written` ([`added_since`]; where
/// some are gone, those not in the list now), which it moves on.
fn records_since<T: Serialize>(
    list: RecordList,
    stored: &ReplayEvent,
    records: &[T],
    event_of: impl Fn(&T) -> &String,
    written: &mut Vec<String>,
) -> Option<SnapshotRecords> {
    let (added, removed) = match added_since(records, written.len(), |record| {
        written.last() == Some(event_of(record))
    }) {
        Some(added) => (added, Vec::new()),
        None => {
            let standing: HashSet<&str> = records.iter().map(|r| event_of(r).as_str()).collect();
            let removed: Vec<String> = written
                .iter()
                .filter(|event| !standing.contains(event.as_str()))
                .cloned()
                .collect();
            let kept: HashSet<&str> = written.iter().map(String::as_str).collect();
            let new_from = records
                .iter()
                .position(|record| !kept.contains(event_of(record).as_str()))
                .unwrap_or(records.len());
            (&records[new_from..], removed)
        }
    };
    let added = added
        .iter()
        .map(|record| {
            Some((
                event_of(record).clone(),
                serde_json::to_string(record).ok()?,
            ))
        })
        .collect::<Option<Vec<_>>>()?;
    if !removed.is_empty() {
        let gone: HashSet<&str> = removed.iter().map(String::as_str).collect();
        written.retain(|event| !gone.contains(event.as_str()));
    }
    written.extend(added.iter().map(|(event, _)| event.clone()));
    Some(SnapshotRecords {
        list,
        manual: stored.stream.clone(),
        version: stored.version,
        added,
        removed,
    })
}

/// What changed from `previous` (the rows last written for a manual) to
/// `now`: the summary and balances whole, carry-overs and deadlines by key.
pub fn amendment(previous: &ManualRows, now: &ManualRows) -> ManualAmendment {
    let before: HashMap<&str, &CarryoverRow> = previous
        .carryovers
        .iter()
        .map(|row| (row.event.as_str(), row))
        .collect();
    let kept: HashSet<&str> = now
        .carryovers
        .iter()
        .map(|row| row.event.as_str())
        .collect();
    let due_before: HashMap<(&str, &str), &DeadlineRow> = previous
        .deadlines
        .iter()
        .map(|row| ((row.kind.as_str(), row.event.as_str()), row))
        .collect();
    let due_kept: HashSet<(&str, &str)> = now
        .deadlines
        .iter()
        .map(|row| (row.kind.as_str(), row.event.as_str()))
        .collect();
    ManualAmendment {
        manual: now.manual.clone(),
        balances: now.balances.clone(),
        removed_carryovers: previous
            .carryovers
            .iter()
            .filter(|row| !kept.contains(row.event.as_str()))
            .map(|row| row.event.clone())
            .collect(),
        carryovers: now
            .carryovers
            .iter()
            .filter(|row| before.get(row.event.as_str()) != Some(row))
            .cloned()
            .collect(),
        removed_deadlines: previous
            .deadlines
            .iter()
            .filter(|row| !due_kept.contains(&(row.kind.as_str(), row.event.as_str())))
            .map(|row| (row.kind.clone(), row.event.clone()))
            .collect(),
        deadlines: now
            .deadlines
            .iter()
            .filter(|row| due_before.get(&(row.kind.as_str(), row.event.as_str())) != Some(row))
            .cloned()
            .collect(),
    }
}

#[cfg(test)]
mod amendment_tests {
    use super::*;

    fn carryover(event: &str, qty: &str) -> CarryoverRow {
        CarryoverRow {
            manual: "C1".into(),
            event: event.into(),
            direction: "out".into(),
            counterparty_manual: "C2".into(),
            batch: None,
            item: 1,
            qty: qty.into(),
            business_date: "2026-03-01".into(),
            moved_on: "2026-03-01".into(),
        }
    }

    fn deadline(kind: &str, event: &str, due: &str) -> DeadlineRow {
        DeadlineRow {
            manual: "C1".into(),
            kind: kind.into(),
            event: event.into(),
            due: due.into(),
            detail: String::new(),
        }
    }

    fn rows(carryovers: Vec<CarryoverRow>, deadlines: Vec<DeadlineRow>) -> ManualRows {
        ManualRows {
            manual: ManualRow {
                manual: "C1".into(),
                trade_mode: "purchased".into(),
                book: "manual".into(),
                zone: false,
                enterprise: "E".into(),
                processing_enterprise: "E".into(),
                valid_until: "2026-12-31".into(),
                version: 1,
                status: "open".into(),
                closed: false,
                findings: 0,
            },
            balances: Vec::new(),
            carryovers,
            deadlines,
        }
    }

    #[test]
    fn only_what_changed_is_written_and_what_went_is_named() {
        let previous = rows(
            vec![
                carryover("a", "1"),
                carryover("b", "2"),
                carryover("c", "3"),
            ],
            vec![
                deadline("report", "", "2027-01-31"),
                deadline("carryover_receipt", "a", "2026-06-01"),
            ],
        );
        let now = rows(
            vec![
                carryover("a", "1"),
                carryover("b", "5"),
                carryover("d", "4"),
            ],
            vec![
                deadline("report", "", "2027-02-28"),
                deadline("expiry", "", "2026-12-31"),
            ],
        );
        let change = amendment(&previous, &now);
        assert_eq!(change.removed_carryovers, vec!["c".to_owned()]);
        assert_eq!(
            change.carryovers,
            vec![carryover("b", "5"), carryover("d", "4")]
        );
        assert_eq!(
            change.removed_deadlines,
            vec![("carryover_receipt".to_owned(), "a".to_owned())]
        );
        assert_eq!(
            change.deadlines,
            vec![
                deadline("report", "", "2027-02-28"),
                deadline("expiry", "", "2026-12-31")
            ]
        );
        assert_eq!(change.manual, now.manual);
    }
}

#[cfg(test)]
mod amended_rows_tests {
    use super::*;
    use bondledger_domain::movement::ManualNo;
    use bondledger_domain::testing::MemoryLedger;
    use bondledger_domain::Mode;
    use proptest::prelude::*;

    /// The first manual of the plastic-bags sample as its history leaves it.
    fn sample_state() -> ManualState {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/samples/plastic-bags.jsonl"
        );
        let text = std::fs::read_to_string(path).expect("the sample");
        let mut ledger = MemoryLedger::new();
        for line in text.lines().filter(|l| l.starts_with('{')) {
            let value = serde_json::from_str(line).expect("json");
            ledger
                .record(value, Mode::Strict)
                .expect("the sample is accepted");
        }
        let manual = ManualNo::try_from("C22012600001".to_owned()).expect("a manual number");
        ledger.states.get(&manual).expect("the manual").clone()
    }

    fn record(number: usize) -> CarryoverRecord {
        let date = NaiveDate::from_ymd_opt(2026, 3, 1).expect("a date")
            + chrono::Days::new(number as u64 % 200);
        CarryoverRecord {
            event: format!("co-{number}"),
            outgoing: number.is_multiple_of(2),
            item: ItemNo(1 + (number % 3) as u32),
            qty: Decimal::new(number as i64 * 125, 2),
            counterparty_manual: ManualNo::try_from("C22012600007".to_owned())
                .expect("a manual number"),
            batch: number.is_multiple_of(4).then(|| format!("B{number}")),
            hs: None,
            date,
            moved_on: date,
        }
    }

    /// What one page does to the carry-over records: new ones at the end,
    /// some gone (a reversal), or all gone (a period closed).
    #[derive(Debug, Clone)]
    enum Step {
        Add(usize),
        Remove(usize),
        Clear,
    }

    impl Step {
        /// Does this step to `list`, new records made by `make` from the
        /// `next` number on.
        fn apply<T>(&self, list: &mut Vec<T>, next: &mut usize, make: impl Fn(usize) -> T) {
            match *self {
                Step::Add(count) => {
                    for _ in 0..count {
                        list.push(make(*next));
                        *next += 1;
                    }
                }
                Step::Remove(at) if !list.is_empty() => {
                    let at = at % list.len();
                    list.remove(at);
                }
                Step::Remove(_) => {}
                Step::Clear => list.clear(),
            }
        }
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            6 => (0_usize..5).prop_map(Step::Add),
            3 => (0_usize..100).prop_map(Step::Remove),
            1 => Just(Step::Clear),
        ]
    }

    /// Rows with an amendment applied as the store applies it.
    fn applied(previous: &ManualRows, change: &ManualAmendment) -> ManualRows {
        let gone: HashSet<&str> = change
            .removed_carryovers
            .iter()
            .chain(change.carryovers.iter().map(|c| &c.event))
            .map(String::as_str)
            .collect();
        let mut carryovers: Vec<CarryoverRow> = previous
            .carryovers
            .iter()
            .filter(|c| !gone.contains(c.event.as_str()))
            .cloned()
            .collect();
        carryovers.extend(change.carryovers.iter().cloned());
        ManualRows {
            manual: change.manual.clone(),
            balances: change.balances.clone(),
            carryovers,
            deadlines: previous.deadlines.clone(),
        }
    }

    fn sorted(mut rows: Vec<CarryoverRow>) -> Vec<CarryoverRow> {
        rows.sort_by(|a, b| a.event.cmp(&b.event));
        rows
    }

    proptest! {
        /// Page after page, the rows kept are those made afresh, in order,
        /// and the amendment takes the rows written to them.
        #[test]
        fn amended_rows_are_the_rows_made_afresh(steps in proptest::collection::vec(step(), 1..30)) {
            let mut state = sample_state();
            state.carryovers.clear();
            let mut written = manual_rows(&state);
            let mut next = 0_usize;
            for step in steps {
                step.apply(&mut state.carryovers, &mut next, record);
                let (change, rows) = amended_rows(written.clone(), &state);
                let fresh = manual_rows(&state);
                prop_assert_eq!(&rows, &fresh);
                prop_assert_eq!(
                    sorted(applied(&written, &change).carryovers),
                    sorted(fresh.carryovers.clone())
                );
                written = rows;
            }
        }
    }

    fn sale(number: usize) -> bondledger_domain::state::SaleRecord {
        bondledger_domain::state::SaleRecord {
            event: format!("sale-{number}"),
            date: NaiveDate::from_ymd_opt(2026, 3, 1).expect("a date")
                + chrono::Days::new(number as u64 % 200),
            duty_and_vat: Decimal::new(number as i64 * 301, 2),
            interest_rate_annual: Decimal::new(35, 4),
            interest: Decimal::new(number as i64, 2),
        }
    }

    fn stored_at(version: i64) -> ReplayEvent {
        ReplayEvent {
            position: version,
            stream: "C22012600001".into(),
            version,
            caller_id: None,
            event_type: "domestic_sale".into(),
            schema_version: 1,
            business_date: NaiveDate::from_ymd_opt(2026, 3, 1).expect("a date"),
            recorded_at: chrono::DateTime::UNIX_EPOCH,
            payload_json: "{}".into(),
        }
    }

    proptest! {
        /// Snapshot after snapshot, the sale records written, with those
        /// marked removed taken out, are the state's sales, in order.
        #[test]
        fn sales_written_apart_are_the_state_s_sales(steps in proptest::collection::vec(step(), 1..30)) {
            let mut state = sample_state();
            state.sales.clear();
            let mut written = Vec::new();
            let mut table: Vec<(String, String)> = Vec::new();
            let mut next = 0_usize;
            for (version, step) in steps.into_iter().enumerate() {
                step.apply(&mut state.sales, &mut next, sale);
                let change = records_since(
                    RecordList::Sales,
                    &stored_at(version as i64 + 1),
                    &state.sales,
                    |s| &s.event,
                    &mut written,
                )
                .expect("sales serialize");
                table.retain(|(event, _)| !change.removed.contains(event));
                table.extend(change.added);
                let records: Vec<String> = state
                    .sales
                    .iter()
                    .map(|s| serde_json::to_string(s).expect("a sale serializes"))
                    .collect();
                let events: Vec<String> = state.sales.iter().map(|s| s.event.clone()).collect();
                prop_assert_eq!(table.iter().map(|(_, r)| r.clone()).collect::<Vec<_>>(), records);
                prop_assert_eq!(&written, &events);
            }
        }
    }
}

#[cfg(test)]
mod named_parties_tests {
    use super::*;
    use bondledger_domain::movement::{parse_line, MovementKind};
    use std::collections::BTreeSet;

    /// The same as read from the movement's fields as JSON, by the names
    /// interchange §3 gives.
    fn from_fields(movement: &Movement) -> (Option<String>, BTreeSet<String>) {
        let fields = movement.fields();
        let text = |key: &str| fields.get(key).and_then(|v| v.as_str()).map(str::to_owned);
        let mut parties: BTreeSet<String> = [
            "counterparty_enterprise",
            "counterparty_manual",
            "contractor",
            "from",
            "to_manual",
            "from_manual",
        ]
        .iter()
        .filter_map(|key| text(key))
        .collect();
        if let Some(enterprise) = fields
            .get("counterpart")
            .and_then(|c| c.get("enterprise"))
            .and_then(|e| e.as_str())
        {
            parties.insert(enterprise.to_owned());
        }
        (text("declaration"), parties)
    }

    #[test]
    fn every_sample_movement_names_the_parties_its_fields_name() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/samples");
        let mut kinds = BTreeSet::new();
        let mut files = 0;
        for entry in std::fs::read_dir(dir).expect("the samples") {
            let path = entry.expect("an entry").path();
            if path.extension().and_then(|e| e.to_str()) != Some("jsonl") {
                continue;
            }
            files += 1;
            let text = std::fs::read_to_string(&path).expect("a sample");
            for line in text.lines().filter(|l| l.starts_with('{')) {
                let value = serde_json::from_str(line).expect("json");
                let Ok(envelope) = parse_line(value) else {
                    continue;
                };
                let movement = &envelope.movement;
                let (declaration, parties) = named_parties(movement);
                let expected = from_fields(movement);
                assert_eq!(
                    (
                        declaration.map(str::to_owned),
                        parties.into_iter().map(str::to_owned).collect()
                    ),
                    expected,
                    "{line}"
                );
                kinds.insert(movement.kind());
            }
        }
        assert!(files >= 4, "the samples are there");
        // Every kind of movement is met.
        for kind in MovementKind::ALL {
            assert!(kinds.contains(kind), "{kind} is in the samples");
        }
    }
}
