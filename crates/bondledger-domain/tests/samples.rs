//! Every shared sample, replayed in memory, gives its independently
//! computed report (numbers as decimals, findings as sets).

use bondledger_domain::testing::MemoryLedger;
use bondledger_domain::Mode;
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
    // A state written as a snapshot reads back equal.
    for state in ledger.states.values() {
        let written = serde_json::to_string(state).expect("a state serializes");
        let read: bondledger_domain::ManualState =
            serde_json::from_str(&written).expect("and reads back");
        assert_eq!(
            &read, state,
            "{name}: snapshot round trip of {}",
            state.registration.manual
        );
    }
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
