//! Printing for people (aligned tables, Chinese names kept whole) and for
//! programs (JSON, CSV).

use std::io::Write;

use bondledger_domain::trace::TraceRow;
use bondledger_domain::{format6, ManualState, Report};
use bondledger_ledger::json::{balance_json, event_json, history_entry_json};
use bondledger_ledger::{Balances, Deadline, HistoryEntry, TokenInfo};
use bondledger_store::StoredEvent;
use comfy_table::presets::UTF8_BORDERS_ONLY;
use comfy_table::{CellAlignment, ContentArrangement, Table};
use rust_decimal::Decimal;
use serde_json::{json, Value};

use crate::args::Format;

/// Writes one line to stdout (what `outln!` expands to).
pub fn out_line(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if let Err(error) = out.write_fmt(args).and_then(|()| out.write_all(b"\n")) {
        stdout_failed(&error);
    }
}

/// Ends the program when its output cannot be written: quietly when the
/// reader went away (`| head`), with the status a shell gives a program
/// stopped by SIGPIPE; otherwise (a full disk) saying so, with status 1.
pub fn stdout_failed(error: &std::io::Error) -> ! {
    if error.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(141);
    }
    eprintln!("bondledger: cannot write the output: {error}");
    std::process::exit(1);
}

/// As [`stdout_failed`], for a CSV writer's error.
fn csv_failed(error: csv::Error) -> ! {
    match error.into_kind() {
        csv::ErrorKind::Io(error) => stdout_failed(&error),
        other => {
            eprintln!("bondledger: cannot write the output: {other:?}");
            std::process::exit(1);
        }
    }
}

/// Writes one element of a JSON array streamed to stdout: the opening
/// bracket before the first, a comma before the others (`finish` closes it).
fn write_array_element(first: bool, element: &Value) {
    let mut out = std::io::stdout().lock();
    let opening = if first { "[" } else { "," };
    if let Err(error) = write!(out, "{opening}\n{element}") {
        stdout_failed(&error);
    }
}

/// Ends a JSON array streamed by [`write_array_element`].
fn end_array(empty: bool) {
    outln!("{}", if empty { "[]" } else { "\n]" });
}

/// A CSV writer on stdout that has written the events' header.
fn event_csv_writer() -> csv::Writer<std::io::Stdout> {
    let mut writer = csv::Writer::from_writer(std::io::stdout());
    writer
        .write_record(EVENT_CSV_HEADER)
        .unwrap_or_else(|error| csv_failed(error));
    writer
}

pub fn print_json(value: &Value) {
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    outln!("{text}");
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
    outln!(
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
    outln!("{materials}");
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
        outln!("Work orders 工单\n{orders}");
    }
    if report.findings.is_empty() {
        outln!("Findings 问题: none");
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
        outln!("Findings 问题\n{findings}");
    }
}

pub fn print_balance(balances: &Balances, format: Format) {
    match format {
        Format::Json => print_json(&balance_json(balances)),
        Format::Table | Format::Csv => {
            let figures = balances.figures();
            outln!(
                "Manual 手册 {} after event {}",
                balances.manual(),
                balances.version()
            );
            let mut rows = table(&[
                "item",
                "HS",
                "name 品名",
                "unit",
                "balance 结余",
                "at contractors 外发",
            ]);
            for m in balances.materials() {
                let f = figures.get(&m.item);
                rows.add_row(vec![
                    m.item.to_string(),
                    m.hs.to_string(),
                    m.name.clone(),
                    m.unit.clone(),
                    format6(f.map_or(Decimal::ZERO, |f| f.expected_remaining)),
                    format6(f.map_or(Decimal::ZERO, |f| f.at_contractors)),
                ]);
            }
            align_numbers(&mut rows, 4);
            outln!("{rows}");
        }
    }
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
                write_array_element(self.first, &history_entry_json(&entry));
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
            Format::Json => end_array(self.first),
            Format::Table | Format::Csv => {
                if let Some(state) = state {
                    outln!("Manual 手册 {}", state.registration.manual);
                }
                if let Some(table) = self.table {
                    outln!("{table}");
                }
            }
        }
    }
}

/// Prints events as they come: one JSON array, CSV rows, or a table.
pub struct EventPrinter {
    format: Format,
    count: usize,
    table: Option<Table>,
    csv: Option<csv::Writer<std::io::Stdout>>,
}

/// The CSV columns of an event: the table's first [`EVENT_COLUMNS`], then
/// when it was recorded and its hash.
const EVENT_CSV_HEADER: [&str; 9] = [
    "position",
    "manual",
    "version",
    "date",
    "type",
    "id",
    "declaration",
    "recorded_at",
    "hash",
];
/// The columns an event shows in a table as in CSV.
const EVENT_COLUMNS: usize = 7;

/// The values of an event's first [`EVENT_COLUMNS`] columns.
fn event_columns(stored: &StoredEvent) -> [String; EVENT_COLUMNS] {
    let declaration = stored
        .payload
        .get("movement")
        .and_then(|m| m.get("declaration"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    [
        stored.position.to_string(),
        stored.stream.clone(),
        stored.version.to_string(),
        stored.business_date.to_string(),
        stored.event_type.clone(),
        stored.caller_id.clone().unwrap_or_default(),
        declaration.to_owned(),
    ]
}

impl EventPrinter {
    pub fn new(format: Format) -> Self {
        EventPrinter {
            format,
            count: 0,
            table: None,
            csv: None,
        }
    }

    pub fn push(&mut self, stored: &StoredEvent) {
        match self.format {
            Format::Json => {
                write_array_element(self.count == 0, &Value::Object(event_json(stored)));
            }
            Format::Csv => {
                let writer = self.csv.get_or_insert_with(event_csv_writer);
                let recorded_at = stored
                    .recorded_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
                writer
                    .write_record(
                        event_columns(stored)
                            .iter()
                            .map(String::as_str)
                            .chain([recorded_at.as_str(), stored.hash.as_str()]),
                    )
                    .unwrap_or_else(|error| csv_failed(error));
            }
            Format::Table => {
                let table = self
                    .table
                    .get_or_insert_with(|| table(&EVENT_CSV_HEADER[..EVENT_COLUMNS]));
                table.add_row(event_columns(stored).to_vec());
            }
        }
        self.count += 1;
    }

    pub fn finish(self) {
        match self.format {
            Format::Json => end_array(self.count == 0),
            Format::Csv => {
                let mut writer = self.csv.unwrap_or_else(event_csv_writer);
                writer.flush().unwrap_or_else(|error| stdout_failed(&error));
            }
            Format::Table => match self.table {
                Some(table) => outln!("{table}\n{} events", self.count),
                None => outln!("no events match"),
            },
        }
    }
}

pub fn print_deadlines(deadlines: &[Deadline], format: Format) {
    let rows: Vec<[String; 7]> = deadlines
        .iter()
        .map(|d| {
            [
                d.due.to_string(),
                d.days_remaining.to_string(),
                d.manual.clone(),
                d.enterprise.clone(),
                d.kind.clone(),
                d.event.clone().unwrap_or_default(),
                d.detail.clone(),
            ]
        })
        .collect();
    let header = [
        "due",
        "days_remaining",
        "manual",
        "enterprise",
        "kind",
        "event",
        "detail",
    ];
    match format {
        Format::Json => print_json(&Value::Array(
            deadlines
                .iter()
                .map(bondledger_ledger::json::deadline_json)
                .collect(),
        )),
        Format::Csv => print_csv(&header, &rows),
        Format::Table => {
            let mut out = table(&[
                "due 期限",
                "days 剩余天数",
                "manual 手册",
                "enterprise",
                "kind",
                "event",
                "detail",
            ]);
            for row in rows {
                out.add_row(row.to_vec());
            }
            outln!("{out}");
        }
    }
}

pub fn print_tokens(tokens: &[TokenInfo], format: Format) {
    let moment =
        |m: &chrono::DateTime<chrono::Utc>| m.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let rows: Vec<[String; 6]> = tokens
        .iter()
        .map(|t| {
            [
                t.principal.token_id.clone(),
                t.principal.role.as_str().to_owned(),
                t.principal.enterprise.clone().unwrap_or_default(),
                t.label.clone().unwrap_or_default(),
                moment(&t.created_at),
                t.revoked_at.as_ref().map(moment).unwrap_or_default(),
            ]
        })
        .collect();
    let header = [
        "id",
        "role",
        "enterprise",
        "label",
        "created_at",
        "revoked_at",
    ];
    match format {
        Format::Json => print_json(&Value::Array(
            tokens
                .iter()
                .map(bondledger_ledger::json::token_json)
                .collect(),
        )),
        Format::Csv => print_csv(&header, &rows),
        Format::Table => {
            let mut out = table(&[
                "id",
                "role 角色",
                "enterprise 企业",
                "label",
                "created 创建",
                "revoked 吊销",
            ]);
            for row in rows {
                out.add_row(row.to_vec());
            }
            outln!("{out}");
        }
    }
}

fn print_csv<const N: usize>(header: &[&str; N], rows: &[[String; N]]) {
    let mut writer = csv::Writer::from_writer(std::io::stdout());
    writer
        .write_record(header)
        .unwrap_or_else(|error| csv_failed(error));
    for row in rows {
        writer
            .write_record(row)
            .unwrap_or_else(|error| csv_failed(error));
    }
    writer.flush().unwrap_or_else(|error| stdout_failed(&error));
}

pub fn print_trace(rows: &[TraceRow], format: Format) {
    let opt_date = |d: Option<chrono::NaiveDate>| d.map(|d| d.to_string()).unwrap_or_default();
    let table_rows: Vec<[String; 10]> = rows
        .iter()
        .map(|r| {
            [
                r.export_date.to_string(),
                r.export_kind.as_str().to_owned(),
                r.export_declaration.clone(),
                format6(r.product_qty),
                r.material.map(|m| m.to_string()).unwrap_or_default(),
                format6(r.material_qty),
                r.import_declaration.clone().unwrap_or_else(|| {
                    if r.is_unconverted() {
                        "(no unit consumption)".into()
                    } else {
                        "(unsourced)".into()
                    }
                }),
                opt_date(r.import_date),
                format6(r.qty),
                r.export_event.clone(),
            ]
        })
        .collect();
    let header = [
        "export_date",
        "export_kind",
        "export_declaration",
        "product_qty",
        "material",
        "material_qty",
        "import_declaration",
        "import_date",
        "qty",
        "export_event",
    ];
    match format {
        Format::Json => print_json(&Value::Array(
            rows.iter()
                .map(|r| {
                    json!({
                        "export_event": r.export_event, "export_kind": r.export_kind.as_str(),
                        "export_declaration": r.export_declaration, "export_date": r.export_date.to_string(),
                        "product": r.product.0, "product_qty": format6(r.product_qty), "uc_version": r.uc_version,
                        "material": r.material.map(|m| m.0), "material_qty": format6(r.material_qty),
                        "import_event": r.import_event, "import_kind": r.import_kind.map(|k| k.as_str()),
                        "import_declaration": r.import_declaration, "import_date": r.import_date.map(|d| d.to_string()),
                        "qty": format6(r.qty),
                    })
                })
                .collect(),
        )),
        Format::Csv => print_csv(&header, &table_rows),
        Format::Table => {
            let mut out = table(&["export date", "movement", "declaration 报关单", "products", "material", "drawn", "import declaration 进口报关单", "import date", "qty", "event"]);
            for row in table_rows {
                out.add_row(row.to_vec());
            }
            align_numbers(&mut out, 8);
            outln!("{out}");
        }
    }
}
