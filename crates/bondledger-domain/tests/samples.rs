//! Every shared sample, replayed in memory, gives its independently
//! computed report (numbers as decimals, findings as sets).

use bondledger_domain::testing::MemoryLedger;
use bondledger_domain::{ManualState, Mode, RecordsApart};
use bondledger_tests::{report_differences, samples_dir};
use serde_json::Value;

fn load(name: &str) -> MemoryLedger {
    let text =
        std::fs::read_to_string(samples_dir().join(format!("{name}.jsonl"))).expect("sample");
    let mode = if text.lines().next() == Some("# record") {
        Mode::Record
    } else {
        Mode::Strict
    };
    let mut ledger = MemoryLedger::new();
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let value: Value = serde_json::from_str(line).expect("json");
        if let Err(refusal) = ledger.record(value, mode) {
            panic!("{name}:{}: refused {refusal}", number + 1);
        }
    }
    ledger
}

fn check(name: &str) {
    let ledger = load(name);
    let text = std::fs::read_to_string(samples_dir().join(format!("{name}.expected.json")))
        .expect("expected");
    let expected: Value = serde_json::from_str(&text).expect("expected json");
    let mut problems = Vec::new();
    for (manual, report) in expected.as_object().expect("object by manual") {
        let actual = ledger.report(manual);
        problems.extend(
            report_differences(report, &actual)
                .into_iter()
                .map(|p| format!("{manual}: {p}")),
        );
    }
    assert!(problems.is_empty(), "{name}:\n{}", problems.join("\n"));
    for state in ledger.states.values() {
        snapshot_round_trip(name, state);
    }
}

/// A state written as a snapshot, its sales and carry-overs apart, reads back
/// equal; without them it is equal but for them; a snapshot written whole
/// (before they were kept apart) reads back equal too, and so does one that
/// keeps only its sales apart (before the carry-overs were).
fn snapshot_round_trip(name: &str, state: &ManualState) {
    let manual = &state.registration.manual;
    let mut copy = state.clone();
    let text = copy.to_snapshot().expect("a state serializes");
    assert_eq!(
        &copy, state,
        "{name}: writing a snapshot leaves {manual} as it was"
    );
    let apart = RecordsApart {
        sales: records(&state.sales),
        carryovers: records(&state.carryovers),
    };
    let read = ManualState::from_snapshot(&text, Some(&apart)).expect("reads back");
    assert_eq!(&read, state, "{name}: snapshot round trip of {manual}");
    let without = ManualState::from_snapshot(&text, None).expect("reads back");
    assert!(without.sales.is_empty(), "{name}: {manual}");
    assert!(without.carryovers.is_empty(), "{name}: {manual}");
    assert_eq!(
        ManualState {
            sales: state.sales.clone(),
            carryovers: state.carryovers.clone(),
            ..without
        },
        *state,
        "{name}: {manual} without its records apart"
    );
    let whole = serde_json::to_string(state).expect("a state serializes");
    for apart in [None, Some(&RecordsApart::default())] {
        let read = ManualState::from_snapshot(&whole, apart).expect("an older snapshot reads");
        assert_eq!(&read, state, "{name}: older snapshot of {manual}");
    }
    let mut sales_only = state.clone();
    sales_only.sales.clear();
    let sales_apart = serde_json::to_string(&sales_only).expect("a state serializes");
    let apart = RecordsApart {
        sales: records(&state.sales),
        carryovers: Vec::new(),
    };
    let read = ManualState::from_snapshot(&sales_apart, Some(&apart)).expect("reads");
    assert_eq!(
        &read, state,
        "{name}: snapshot of {manual} with its sales apart"
    );
}

fn records<T: serde::Serialize>(records: &[T]) -> Vec<String> {
    records
        .iter()
        .map(|record| serde_json::to_string(record).expect("a record serializes"))
        .collect()
}

#[test]
fn plastic_bags() {
    check("plastic-bags");
}

#[test]
fn furniture_account_book() {
    check("furniture-account-book");
}

#[test]
fn toys_consigned() {
    check("toys-consigned");
}

#[test]
fn garments_record() {
    check("garments-record");
}
