//! From replayed state to read-model rows.

use std::collections::{HashMap, HashSet};

use bondledger_domain::movement::{Book, ItemNo, Movement};
use bondledger_domain::verify::report_deadline;
use bondledger_domain::{format6, verify, ManualState, RecordedMovement, Replay, VerifyOptions};
use bondledger_store::readmodel::{
    BalanceRow, CarryoverRow, Change, DeadlineRow, ManualAmendment, ManualRow, ManualRows,
    SnapshotRow, SnapshotSales, TimelineRow,
};
use bondledger_store::ReplayEvent;
use chrono::NaiveDate;
use rust_decimal::Decimal;

/// The rows of one manual: its summary, balances, carry-overs, deadlines.
pub fn manual_rows(state: &ManualState) -> ManualRows {
    let registration = &state.registration;
    let manual = registration.manual.to_string();
    // Carry-over matching needs the other manual; the summary counts the
    // findings the manual's own history gives.
    let report = verify(state, &Default::default(), &VerifyOptions::default());
    let figures = state.figures();
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
    let carryovers = state
        .carryovers
        .iter()
        .map(|c| CarryoverRow {
            manual: manual.clone(),
            event: c.event.clone(),
            direction: if c.outgoing { "out" } else { "in" }.to_owned(),
            counterparty_manual: c.counterparty_manual.to_string(),
            batch: c.batch.clone(),
            item: i64::from(c.item.0),
            qty: format6(c.qty),
            business_date: date(c.date),
            moved_on: date(c.moved_on),
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
        carryovers,
        deadlines,
    }
}

fn date(date: NaiveDate) -> String {
    date.format("%Y-%m-%d").to_string()
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
    let fields = movement.fields();
    let text = |key: &str| fields.get(key).and_then(|v| v.as_str()).map(str::to_owned);
    let mut counterparties: Vec<String> = [
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
    if let Movement::Substituted(s) = movement {
        counterparties.push(s.counterpart.enterprise.to_string());
    }
    counterparties.sort();
    counterparties.dedup();
    TimelineRow {
        position: stored.position,
        manual: stored.stream.clone(),
        version: stored.version,
        event_type: stored.event_type.clone(),
        business_date: date(stored.business_date),
        declaration: text("declaration"),
        hs,
        counterparties,
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

/// A snapshot of the state after `stored`, as `replay` holds it, and what
/// it changes in the manual's per-sale records, of which `written` are the
/// events standing as the last snapshot left them (moved on).
pub(crate) fn snapshot(
    stored: &ReplayEvent,
    replay: &mut Replay,
    max_date: NaiveDate,
    written: &mut HashSet<String>,
) -> Vec<Change> {
    // A state that cannot be written is simply not cached.
    let Some(Ok(state_text)) = replay.snapshot() else {
        return Vec::new();
    };
    let Some(state) = replay.state() else {
        return Vec::new();
    };
    let Some(sales) = sales_since(stored, state, written) else {
        return Vec::new();
    };
    let mut changes = vec![Change::Snapshot(SnapshotRow {
        manual: stored.stream.clone(),
        version: stored.version,
        position: stored.position,
        max_date,
        recorded_at: stored.recorded_at,
        state: state_text,
    })];
    if !sales.added.is_empty() || !sales.removed.is_empty() {
        changes.push(Change::SnapshotSales(sales));
    }
    changes
}

/// The per-sale records of `state` added and removed since those `written`,
/// which it moves on. A sale is only ever added at the end of the list, so
/// the new ones are those after the last one written; any written one not
/// before it is gone (reversed, or a period closed).
fn sales_since(
    stored: &ReplayEvent,
    state: &ManualState,
    written: &mut HashSet<String>,
) -> Option<SnapshotSales> {
    let sales = &state.sales;
    let new_from = sales
        .iter()
        .rposition(|sale| written.contains(&sale.event))
        .map_or(0, |last| last + 1);
    let removed: Vec<String> = if new_from == written.len() {
        Vec::new()
    } else {
        let standing: HashSet<&str> = sales[..new_from].iter().map(|s| s.event.as_str()).collect();
        written
            .iter()
            .filter(|event| !standing.contains(event.as_str()))
            .cloned()
            .collect()
    };
    let mut added = Vec::with_capacity(sales.len() - new_from);
    for sale in &sales[new_from..] {
        added.push((sale.event.clone(), serde_json::to_string(sale).ok()?));
    }
    for event in &removed {
        written.remove(event);
    }
    written.extend(added.iter().map(|(event, _)| event.clone()));
    Some(SnapshotSales {
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
