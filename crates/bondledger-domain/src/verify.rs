//! Verification (核销, domain §3): a manual's figures compared with what the
//! enterprise declared, and every finding of §4 about it.

use std::collections::BTreeMap;

use chrono::{Datelike, Duration, NaiveDate, Weekday};
use rust_decimal::Decimal;
use serde_json::{json, Value};

use crate::decimal::{format6, round6, round_cents};
use crate::movement::{Book, Envelope, ItemNo, ManualNo, Movement, TradeMode};
use crate::rules::{RuleId, Severity};
use crate::state::{EventFinding, ManualState, MaterialFigures};

/// Days to report for verification after the last export or expiry (Art. 30).
pub const REPORT_DEADLINE_DAYS: i64 = 30;
/// Days to declare a carry-over after shipment or receipt (order 109).
pub const CARRYOVER_DEADLINE_DAYS: i64 = 90;
/// The same for a side whose own book is a special-zone book (order 126).
pub const ZONE_CARRYOVER_DEADLINE_DAYS: i64 = 30;
/// Working days to report sealed goods (Art. 41).
pub const SEAL_REPORT_WORKING_DAYS: i64 = 5;
/// Days in the interest year (公告2009年第13号).
pub const INTEREST_YEAR_DAYS: i64 = 360;
/// How far a stated interest may differ from the computed one, in CNY.
pub const INTEREST_TOLERANCE: Decimal = Decimal::from_parts(1, 0, 0, false, 2);
/// Default tolerance of work-order deviation: 2%.
pub const DEFAULT_TOLERANCE: Decimal = Decimal::from_parts(2, 0, 0, false, 2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyOptions {
    /// Work-order deviation tolerated, as a fraction (0.02 = 2%).
    pub tolerance: Decimal,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            tolerance: DEFAULT_TOLERANCE,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Balanced,
    Short,
    Surplus,
    NotReported,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Balanced => "balanced",
            Status::Short => "short",
            Status::Surplus => "surplus",
            Status::NotReported => "not_reported",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct MaterialReport {
    pub figures: MaterialFigures,
    pub hs: String,
    pub name: String,
    pub unit: String,
    pub declared_remaining: Option<Decimal>,
    pub difference: Option<Decimal>,
    pub status: Status,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WorkOrderLine {
    pub product: ItemNo,
    pub material: ItemNo,
    pub completed: Decimal,
    pub issued: Decimal,
    pub actual_unit_consumption: Decimal,
    pub declared_unit_consumption: Option<Decimal>,
    pub deviation: Option<Decimal>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub rule: RuleId,
    pub severity: Severity,
    pub material: Option<ItemNo>,
    pub event: Option<String>,
    pub message: String,
}

impl Finding {
    fn about_material(rule: RuleId, material: ItemNo, message: String) -> Self {
        Finding {
            rule,
            severity: rule.severity(),
            material: Some(material),
            event: None,
            message,
        }
    }
    fn about_event(rule: RuleId, event: &str, message: String) -> Self {
        Finding {
            rule,
            severity: rule.severity(),
            material: None,
            event: Some(event.to_owned()),
            message,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub manual: ManualNo,
    pub trade_mode: TradeMode,
    pub reported: bool,
    pub status: Status,
    pub materials: Vec<MaterialReport>,
    pub work_orders: Vec<WorkOrderLine>,
    pub findings: Vec<Finding>,
}

/// Findings worked out from one movement as it is applied: late carry-over
/// declarations and late reports of sealed goods.
pub fn movement_findings(
    state: &ManualState,
    event: &str,
    envelope: &Envelope,
) -> Vec<EventFinding> {
    let finding = |rule: RuleId, message: String| EventFinding {
        rule,
        event: event.to_owned(),
        message,
    };
    let carryover_limit = if state.registration.zone {
        ZONE_CARRYOVER_DEADLINE_DAYS
    } else {
        CARRYOVER_DEADLINE_DAYS
    };
    let late = |moved_on: NaiveDate, what: &str| {
        let days = (envelope.date - moved_on).num_days();
        (days > carryover_limit).then(|| {
            finding(
                RuleId::CarryoverLate,
                format!("declared {days} days after {what} on {moved_on}; the limit is {carryover_limit}"),
            )
        })
    };
    match &envelope.movement {
        Movement::CarryoverOut(c) => late(c.shipped_on.0, "shipment").into_iter().collect(),
        Movement::CarryoverIn(c) => late(c.received_on.0, "receipt").into_iter().collect(),
        Movement::GoodsSealed(seal) => {
            let days = working_days_between(seal.sealed_on.0, envelope.date);
            (days > SEAL_REPORT_WORKING_DAYS)
                .then(|| {
                    finding(
                        RuleId::SealLateReport,
                        format!(
                            "sealed on {} and reported {days} working days later",
                            seal.sealed_on.0
                        ),
                    )
                })
                .into_iter()
                .collect()
        }
        _ => Vec::new(),
    }
}

/// Working days (Monday to Friday) after `from`, up to and including `to`.
pub fn working_days_between(from: NaiveDate, to: NaiveDate) -> i64 {
    if to <= from {
        return 0;
    }
    let days = (to - from).num_days();
    let whole_weeks = days / 7;
    let mut count = whole_weeks * 5;
    let mut day = from + Duration::days(whole_weeks * 7);
    while day < to {
        day += Duration::days(1);
        if !matches!(day.weekday(), Weekday::Sat | Weekday::Sun) {
            count += 1;
        }
    }
    count
}

/// The verification report of a manual. `counterparties` holds the other
/// manuals its carry-overs name, where the ledger holds them.
pub fn verify(
    state: &ManualState,
    counterparties: &BTreeMap<ManualNo, ManualState>,
    options: &VerifyOptions,
) -> Report {
    let registration = &state.registration;
    let report = state.report.as_ref();
    let mut findings = Vec::new();
    let materials: Vec<MaterialReport> = state
        .figures()
        .into_values()
        .map(|figures| {
            let item = registration.materials.get(&figures.item);
            let declared = report.map(|r| {
                r.declared_remaining
                    .get(&figures.item)
                    .copied()
                    .unwrap_or_default()
            });
            let difference = declared.map(|d| round6(d) - round6(figures.expected_remaining));
            let status = match difference {
                None => Status::NotReported,
                Some(d) if d.is_zero() => Status::Balanced,
                Some(d) if d < Decimal::ZERO => Status::Short,
                Some(_) => Status::Surplus,
            };
            MaterialReport {
                hs: item.map(|m| m.hs.to_string()).unwrap_or_default(),
                name: item.map(|m| m.name.clone()).unwrap_or_default(),
                unit: item.map(|m| m.unit.clone()).unwrap_or_default(),
                declared_remaining: declared,
                difference,
                status,
                figures,
            }
        })
        .collect();

    for m in &materials {
        let item = m.figures.item;
        if let Some(difference) = m.difference {
            let rule = match m.status {
                Status::Short => Some(RuleId::VerificationShort),
                Status::Surplus => Some(RuleId::VerificationSurplus),
                _ => None,
            };
            if let Some(rule) = rule {
                findings.push(Finding::about_material(
                    rule,
                    item,
                    format!(
                        "declared {} against expected {}: difference {}",
                        format6(m.declared_remaining.unwrap_or_default()),
                        format6(m.figures.expected_remaining),
                        format6(difference)
                    ),
                ));
            }
            if round6(m.figures.at_contractors) > Decimal::ZERO {
                findings.push(Finding::about_material(
                    RuleId::OutwardOutstanding,
                    item,
                    format!("{} still at contractors", format6(m.figures.at_contractors)),
                ));
            }
        }
        if round6(m.figures.scrap_disposed) > round6(m.figures.scrap_allowance) {
            findings.push(Finding::about_material(
                RuleId::ScrapExceedsAllowance,
                item,
                format!(
                    "scrap disposed {} exceeds the allowance {}",
                    format6(m.figures.scrap_disposed),
                    format6(m.figures.scrap_allowance)
                ),
            ));
        }
    }

    let work_orders = work_order_lines(state);
    for line in &work_orders {
        if let Some(deviation) = line.deviation {
            if deviation.abs() > options.tolerance {
                findings.push(Finding::about_material(
                    RuleId::WorkOrderDeviation,
                    line.material,
                    format!(
                        "product {}: actual unit consumption {} against declared {} ({} off)",
                        line.product,
                        format6(line.actual_unit_consumption),
                        format6(line.declared_unit_consumption.unwrap_or_default()),
                        format6(deviation)
                    ),
                ));
            }
        }
    }

    if let Some(report) = report {
        for ((product, version), events) in &state.unconverted {
            let version = version
                .as_deref()
                .map(|v| format!(" version {v}"))
                .unwrap_or_default();
            for event in events {
                findings.push(Finding::about_event(
                    RuleId::UnitConsumptionMissing,
                    event,
                    format!("product {product}{version} has no unit consumption"),
                ));
            }
        }
        if registration.book == Book::Manual {
            let deadline = report_deadline(state);
            if report.date > deadline {
                findings.push(Finding::about_event(
                    RuleId::VerificationLate,
                    &report.event,
                    format!("reported on {}, due by {deadline}", report.date),
                ));
            }
        }
    }

    findings.extend(
        state
            .findings
            .iter()
            .map(|f| Finding::about_event(f.rule, &f.event, f.message.clone())),
    );
    findings.extend(interest_findings(state));
    findings.extend(carryover_findings(state, counterparties));

    let status = if report.is_none() {
        Status::NotReported
    } else if materials.iter().any(|m| m.status == Status::Short) {
        Status::Short
    } else if materials.iter().any(|m| m.status == Status::Surplus) {
        Status::Surplus
    } else {
        Status::Balanced
    };
    Report {
        manual: registration.manual.clone(),
        trade_mode: registration.trade_mode,
        reported: report.is_some(),
        status,
        materials,
        work_orders,
        findings,
    }
}

/// The last day a manual may be reported on (Art. 30).
pub fn report_deadline(state: &ManualState) -> NaiveDate {
    let valid_until = state.registration.valid_until;
    let last_export = state.export_dates.keys().next_back().copied();
    let from = last_export.map_or(valid_until, |export| export.min(valid_until));
    from + Duration::days(REPORT_DEADLINE_DAYS)
}

fn work_order_lines(state: &ManualState) -> Vec<WorkOrderLine> {
    state
        .period
        .work_orders
        .iter()
        .filter(|(_, totals)| !totals.completed.is_zero())
        .map(|((product, material), totals)| {
            let actual = totals.issued / totals.completed;
            let declared = state
                .unit_consumptions
                .latest(*product)
                .and_then(|bom| bom.get(material))
                .and_then(|line| line.unit_consumption());
            let deviation = declared.filter(|d| !d.is_zero()).map(|d| (actual - d) / d);
            WorkOrderLine {
                product: *product,
                material: *material,
                completed: totals.completed,
                issued: totals.issued,
                actual_unit_consumption: actual,
                declared_unit_consumption: declared,
                deviation,
            }
        })
        .collect()
}

/// The deferred-duty interest (缓税利息) a sale owes: (duty + VAT) × days ×
/// annual rate ÷ 360, rounded to the fen; None where no start date is known.
pub fn deferred_duty_interest(
    state: &ManualState,
    date: NaiveDate,
    duty_and_vat: Decimal,
    rate_annual: Decimal,
) -> Option<Decimal> {
    let period_start = match state.registration.book {
        Book::AccountBook => state
            .period_closes
            .iter()
            .filter(|close| **close <= date)
            .max()
            .copied(),
        Book::Manual => None,
    };
    let start = period_start.or(state.first_import())?;
    let days = Decimal::from((date - start).num_days());
    let interest = duty_and_vat.checked_mul(days)?.checked_mul(rate_annual)?
        / Decimal::from(INTEREST_YEAR_DAYS);
    Some(round_cents(interest))
}

fn interest_findings(state: &ManualState) -> Vec<Finding> {
    state
        .sales
        .iter()
        .filter_map(|sale| {
            let computed = deferred_duty_interest(
                state,
                sale.date,
                sale.duty_and_vat,
                sale.interest_rate_annual,
            )?;
            ((computed - sale.interest).abs() > INTEREST_TOLERANCE).then(|| {
                Finding::about_event(
                    RuleId::DomesticSaleInterestMismatch,
                    &sale.event,
                    format!(
                        "interest stated {} but computed {computed}",
                        sale.interest.normalize()
                    ),
                )
            })
        })
        .collect()
}

/// `carryover.mismatch` and `carryover.order` on this manual's outgoing
/// carry-overs, where the receiving manual is held.
fn carryover_findings(
    state: &ManualState,
    counterparties: &BTreeMap<ManualNo, ManualState>,
) -> Vec<Finding> {
    let manual = &state.registration.manual;
    let mut findings = Vec::new();
    for out in state.carryovers.iter().filter(|c| c.outgoing) {
        let Some(receiver) = counterparties.get(&out.counterparty_manual) else {
            continue;
        };
        let matched: Vec<_> = receiver
            .carryovers
            .iter()
            .filter(|c| !c.outgoing && c.counterparty_manual == *manual && c.batch == out.batch)
            .collect();
        if matched.is_empty() {
            continue;
        }
        let sent_unit = state
            .registration
            .products
            .get(&out.item)
            .map(|p| p.unit.as_str());
        let sent_hs4 = out.hs.as_ref().map(|hs| &hs.as_str()[..4]);
        let mut problems = Vec::new();
        let received_qty: Decimal = matched.iter().map(|c| c.qty).sum();
        if received_qty != out.qty {
            problems.push(format!(
                "quantity {} sent, {} received",
                out.qty.normalize(),
                received_qty.normalize()
            ));
        }
        for incoming in &matched {
            let material = receiver.registration.materials.get(&incoming.item);
            if material.map(|m| &m.hs.as_str()[..4]) != sent_hs4 {
                problems.push(format!(
                    "HS {} does not match the receiving material's",
                    sent_hs4.unwrap_or("?")
                ));
            }
            if material.map(|m| m.unit.as_str()) != sent_unit {
                problems.push(format!(
                    "unit {} does not match the receiving material's",
                    sent_unit.unwrap_or("?")
                ));
            }
        }
        if !problems.is_empty() {
            problems.dedup();
            findings.push(Finding::about_event(
                RuleId::CarryoverMismatch,
                &out.event,
                problems.join("; "),
            ));
        }
        let received_first = matched.iter().map(|c| c.date).min();
        if let Some(received) = received_first.filter(|received| out.date < *received) {
            findings.push(Finding::about_event(
                RuleId::CarryoverOrder,
                &out.event,
                format!(
                    "sent side declared on {}, before the receiving side on {received}",
                    out.date
                ),
            ));
        }
    }
    findings
}

fn decimal_or_null(value: Option<Decimal>) -> Value {
    value.map_or(Value::Null, |d| Value::from(format6(d)))
}

/// The report as interchange §3 writes it.
pub fn report_json(report: &Report) -> Value {
    let materials: Vec<Value> = report
        .materials
        .iter()
        .map(|m| {
            let f = &m.figures;
            json!({
                "item": f.item.0, "hs": m.hs, "name": m.name, "unit": m.unit,
                "opening": format6(f.opening), "imported": format6(f.imported), "carried_in": format6(f.carried_in),
                "remnant_in": format6(f.remnant_in), "exchanged_in": format6(f.exchanged_in),
                "consumed": format6(f.consumed), "materials_sold_domestic": format6(f.materials_sold_domestic),
                "returned": format6(f.returned), "exchanged_out": format6(f.exchanged_out),
                "remnant_out": format6(f.remnant_out), "abandoned": format6(f.abandoned),
                "destroyed": format6(f.destroyed), "disaster_loss": format6(f.disaster_loss),
                "expected_remaining": format6(f.expected_remaining),
                "declared_remaining": decimal_or_null(m.declared_remaining),
                "difference": decimal_or_null(m.difference),
                "status": m.status.as_str(),
                "scrap_allowance": format6(f.scrap_allowance), "scrap_disposed": format6(f.scrap_disposed),
                "at_contractors": format6(f.at_contractors),
            })
        })
        .collect();
    let work_orders: Vec<Value> = report
        .work_orders
        .iter()
        .map(|w| {
            json!({
                "product": w.product.0, "material": w.material.0,
                "completed": format6(w.completed), "issued": format6(w.issued),
                "actual_unit_consumption": format6(w.actual_unit_consumption),
                "declared_unit_consumption": decimal_or_null(w.declared_unit_consumption),
                "deviation": decimal_or_null(w.deviation),
            })
        })
        .collect();
    let findings: Vec<Value> = report
        .findings
        .iter()
        .map(|f| {
            json!({
                "rule": f.rule.as_str(), "severity": f.severity.as_str(),
                "material": f.material.map(|m| m.0), "event": f.event, "message": f.message,
            })
        })
        .collect();
    json!({
        "manual": report.manual.as_str(),
        "trade_mode": report.trade_mode.as_str(),
        "reported": report.reported,
        "status": report.status.as_str(),
        "materials": materials,
        "work_orders": work_orders,
        "findings": findings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(text: &str) -> NaiveDate {
        crate::movement::parse_date(text).expect("date")
    }

    #[test]
    fn counts_working_days_monday_to_friday() {
        // Friday 2026-05-22 to Wednesday 2026-06-03: 8 working days.
        assert_eq!(
            working_days_between(date("2026-05-22"), date("2026-06-03")),
            8
        );
        assert_eq!(
            working_days_between(date("2026-05-22"), date("2026-05-29")),
            5
        );
        assert_eq!(
            working_days_between(date("2026-05-22"), date("2026-05-24")),
            0
        );
        assert_eq!(
            working_days_between(date("2026-05-22"), date("2026-05-22")),
            0
        );
    }
}
