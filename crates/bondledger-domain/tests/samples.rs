//! Every shared sample, replayed in memory, gives its independently
//! computed report (numbers as decimals, findings as sets).

use std::path::PathBuf;

use bondledger_domain::testing::MemoryLedger;
use bondledger_domain::Mode;
use rust_decimal::Decimal;
use serde_json::Value;

fn samples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/samples")
}

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

fn finding_key(finding: &Value) -> (String, String) {
    let rule = finding["rule"].as_str().unwrap_or_default().to_owned();
    let by_material = [
        "verification.short",
        "verification.surplus",
        "scrap.exceeds_allowance",
        "outward.outstanding",
        "work_order.deviation",
    ];
    let key = if by_material.contains(&rule.as_str()) {
        finding["material"].to_string()
    } else {
        finding["event"].to_string()
    };
    (rule, key)
}

fn same(expected: &Value, actual: &Value, path: &str, problems: &mut Vec<String>) {
    match (expected, actual) {
        (Value::String(e), Value::String(a)) => {
            if let (Ok(e), Ok(a)) = (e.parse::<Decimal>(), a.parse::<Decimal>()) {
                if e != a {
                    problems.push(format!("{path}: expected {e}, got {a}"));
                }
            } else if e != a {
                problems.push(format!("{path}: expected {e:?}, got {a:?}"));
            }
        }
        (Value::Object(e), Value::Object(a)) => {
            for (key, value) in e {
                same(
                    value,
                    a.get(key).unwrap_or(&Value::Null),
                    &format!("{path}.{key}"),
                    problems,
                );
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            if e.len() != a.len() {
                problems.push(format!(
                    "{path}: expected {} entries, got {}",
                    e.len(),
                    a.len()
                ));
            }
            for (index, (e, a)) in e.iter().zip(a).enumerate() {
                same(e, a, &format!("{path}[{index}]"), problems);
            }
        }
        (e, a) if e != a => problems.push(format!("{path}: expected {e}, got {a}")),
        _ => {}
    }
}

fn check(name: &str) {
    let ledger = load(name);
    let text = std::fs::read_to_string(samples_dir().join(format!("{name}.expected.json")))
        .expect("expected");
    let expected: Value = serde_json::from_str(&text).expect("expected json");
    let mut problems = Vec::new();
    for (manual, report) in expected.as_object().expect("object by manual") {
        let actual = ledger.report(manual);
        for field in [
            "manual",
            "trade_mode",
            "reported",
            "status",
            "materials",
            "work_orders",
        ] {
            same(
                &report[field],
                &actual[field],
                &format!("{manual}.{field}"),
                &mut problems,
            );
        }
        let mut want: Vec<_> = report["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .map(finding_key)
            .collect();
        let mut got: Vec<_> = actual["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .map(finding_key)
            .collect();
        want.sort();
        got.sort();
        if want != got {
            problems.push(format!("{manual}.findings: expected {want:?}, got {got:?}"));
        }
    }
    assert!(problems.is_empty(), "{name}:\n{}", problems.join("\n"));
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
