//! Printing for people (aligned tables, Chinese names kept whole) and for
//! programs (JSON, CSV).

use std::collections::BTreeMap;
use std::io::Write;

use bondledger_domain::movement::ItemNo;
use bondledger_domain::{format6, ManualState, Report};
use bondledger_ledger::HistoryEntry;
use comfy_table::presets::UTF8_BORDERS_ONLY;
use comfy_table::{CellAlignment, ContentArrangement, Table};
use rust_decimal::Decimal;
use serde_json::{json, Map, Value};

use crate::args::Format;

pub fn print_json(value: &Value) {
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    println!("{text}");
}

fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(UTF8_BORDERS_ONLY)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.to_vec());
    table
}

fn align_numbers(table: &mut Table, from_column: usize) {
    let count = table.column_count();
    for index in from_column..count {
        if let Some(column) = table.column_mut(index) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
}

fn or_dash(value: Option<Decimal>) -> String {
    value.map_or_else(|| "—".to_owned(), format6)
}

pub fn print_report(report: &Report) {
    println!(
        "Manual 手册 {}  ({})  status 核销状态: {}",
        report.manual,
        report.trade_mode.as_str(),
        report.status.as_str()
    );
    let mut materials = table(&[
        "item",
        "HS",
        "name 品名",
        "unit",
        "opening",
        "in",
        "consumed",
        "other out",
        "expected",
        "declared",
        "difference",
        "status",
        "scrap / allowance",
        "at contractors",
    ]);
    for m in &report.materials {
        let f = &m.figures;
        let total_in = f.imported + f.carried_in + f.remnant_in + f.exchanged_in;
        let other_out = f.materials_sold_domestic
            + f.returned
            + f.exchanged_out
            + f.remnant_out
            + f.abandoned
            + f.destroyed
            + f.disaster_loss;
        materials.add_row(vec![
            f.item.to_string(),
            m.hs.clone(),
            m.name.clone(),
            m.unit.clone(),
            format6(f.opening),
            format6(total_in),
            format6(f.consumed),
            format6(other_out),
            format6(f.expected_remaining),
            or_dash(m.declared_remaining),
            or_dash(m.difference),
            m.status.as_str().to_owned(),
            format!(
                "{} / {}",
                format6(f.scrap_disposed),
                format6(f.scrap_allowance)
            ),
            format6(f.at_contractors),
        ]);
    }
    align_numbers(&mut materials, 4);
    println!("{materials}");
    if !report.work_orders.is_empty() {
        let mut orders = table(&[
            "product",
            "material",
            "completed",
            "issued",
            "actual",
            "declared",
            "deviation",
        ]);
        for w in &report.work_orders {
            orders.add_row(vec![
                w.product.to_string(),
                w.material.to_string(),
                format6(w.completed),
                format6(w.issued),
                format6(w.actual_unit_consumption),
                or_dash(w.declared_unit_consumption),
                or_dash(w.deviation),
            ]);
        }
        align_numbers(&mut orders, 2);
        println!("Work orders 工单\n{orders}");
    }
    if report.findings.is_empty() {
        println!("Findings 问题: none");
    } else {
        let mut findings = table(&["severity", "rule", "material", "event", "message"]);
        for f in &report.findings {
            findings.add_row(vec![
                f.severity.as_str().to_owned(),
                f.rule.as_str().to_owned(),
                f.material.map(|m| m.to_string()).unwrap_or_default(),
                f.event.clone().unwrap_or_default(),
                f.message.clone(),
            ]);
        }
        println!("Findings 问题\n{findings}");
    }
}

pub fn balance_json(state: &ManualState) -> Value {
    let figures = state.figures();
    let materials: Vec<Value> = state
        .registration
        .materials
        .values()
        .map(|m| {
            let f = figures.get(&m.item);
            json!({
                "item": m.item.0, "hs": m.hs.as_str(), "name": m.name, "unit": m.unit,
                "balance": format6(f.map_or(Decimal::ZERO, |f| f.expected_remaining)),
                "at_contractors": format6(f.map_or(Decimal::ZERO, |f| f.at_contractors)),
            })
        })
        .collect();
    json!({"manual": state.registration.manual.as_str(), "materials": materials})
}

pub fn print_balance(state: &ManualState, format: Format) {
    match format {
        Format::Json => print_json(&balance_json(state)),
        Format::Table | Format::Csv => {
            let figures = state.figures();
            println!(
                "Manual 手册 {} after event {}",
                state.registration.manual, state.version
            );
            let mut balances = table(&[
                "item",
                "HS",
                "name 品名",
                "unit",
                "balance 结余",
                "at contractors 外发",
            ]);
            for m in state.registration.materials.values() {
                let f = figures.get(&m.item);
                balances.add_row(vec![
                    m.item.to_string(),
                    m.hs.to_string(),
                    m.name.clone(),
                    m.unit.clone(),
                    format6(f.map_or(Decimal::ZERO, |f| f.expected_remaining)),
                    format6(f.map_or(Decimal::ZERO, |f| f.at_contractors)),
                ]);
            }
            align_numbers(&mut balances, 4);
            println!("{balances}");
        }
    }
}

/// The JSON object of one event (interchange §2, `history`).
pub fn event_json(entry: &HistoryEntry) -> Map<String, Value> {
    let stored = &entry.stored;
    let mut object = Map::new();
    object.insert("manual".into(), Value::from(stored.stream.as_str()));
    object.insert("version".into(), Value::from(stored.version));
    object.insert("position".into(), Value::from(stored.position));
    object.insert("type".into(), Value::from(stored.event_type.as_str()));
    object.insert(
        "date".into(),
        Value::from(stored.business_date.format("%Y-%m-%d").to_string()),
    );
    object.insert(
        "recorded_at".into(),
        Value::from(
            stored
                .recorded_at
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        ),
    );
    object.insert(
        "id".into(),
        stored.caller_id.clone().map_or(Value::Null, Value::from),
    );
    object.insert("event_id".into(), Value::from(stored.event_id.to_string()));
    object.insert("hash".into(), Value::from(stored.hash.as_str()));
    for (key, value) in entry.recorded.envelope.movement.fields() {
        object.entry(key).or_insert(value);
    }
    if !entry.recorded.findings.is_empty() {
        let findings = entry
            .recorded
            .findings
            .iter()
            .map(|f| json!({"rule": f.rule.as_str(), "message": f.message}))
            .collect();
        object.insert("findings".into(), Value::Array(findings));
    }
    object
}

fn balances_json(balances: &BTreeMap<ItemNo, Decimal>) -> Value {
    Value::Array(
        balances
            .iter()
            .map(|(item, balance)| json!({"item": item.0, "balance": format6(*balance)}))
            .collect(),
    )
}

/// Prints a history as it is replayed: JSON as one array, streamed.
pub struct HistoryPrinter {
    format: Format,
    first: bool,
    table: Option<Table>,
}

impl HistoryPrinter {
    pub fn new(format: Format) -> Self {
        HistoryPrinter {
            format,
            first: true,
            table: None,
        }
    }

    pub fn push(&mut self, entry: HistoryEntry) {
        match self.format {
            Format::Json => {
                let mut object = event_json(&entry);
                object.insert("balances".into(), balances_json(&entry.balances));
                let text = Value::Object(object).to_string();
                let mut out = std::io::stdout().lock();
                let _ = if self.first {
                    write!(out, "[\n{text}")
                } else {
                    write!(out, ",\n{text}")
                };
                self.first = false;
            }
            Format::Table | Format::Csv => {
                let table = self.table.get_or_insert_with(|| {
                    table(&[
                        "version",
                        "position",
                        "date",
                        "type",
                        "id",
                        "balances after 结余",
                    ])
                });
                let balances: Vec<String> = entry
                    .balances
                    .iter()
                    .map(|(item, balance)| format!("{item}: {}", format6(*balance)))
                    .collect();
                let stored = &entry.stored;
                table.add_row(vec![
                    stored.version.to_string(),
                    stored.position.to_string(),
                    stored.business_date.to_string(),
                    stored.event_type.clone(),
                    stored.caller_id.clone().unwrap_or_default(),
                    balances.join("  "),
                ]);
            }
        }
    }

    pub fn finish(self, state: Option<&ManualState>) {
        match self.format {
            Format::Json => {
                if self.first {
                    println!("[]");
                } else {
                    println!("\n]");
                }
            }
            Format::Table | Format::Csv => {
                if let Some(state) = state {
                    println!("Manual 手册 {}", state.registration.manual);
                }
                if let Some(table) = self.table {
                    println!("{table}");
                }
            }
        }
    }
}
