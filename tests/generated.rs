//! The generator and the ledger agree. A history from `bondledger-gen` is
//! accepted whole in strict mode, and every figure the ledger replays equals
//! the one the generator worked out by its own arithmetic (domain §3); the
//! closing report declares those figures, so every manual verifies balanced
//! and with no finding: the history is valid under every rule.

use std::path::{Path, PathBuf};
use std::process::Command;

use bondledger_tests::{generator_binary, on_both_backends, TestLedger};
use rust_decimal::Decimal;
use serde_json::Value;

/// Generates a history into the ledger's directory: (movement file, expected balances).
/// Runs bondledger-gen with `args`, the history written to `history`.
fn run_generator(history: &Path, args: &[&str]) {
    let output = Command::new(generator_binary())
        .args(args)
        .arg("--out")
        .arg(history)
        .output()
        .expect("bondledger-gen runs");
    assert!(
        output.status.success(),
        "bondledger-gen failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn generate(ledger: &TestLedger, seed: u64, extra: &[&str]) -> (PathBuf, Value) {
    let history = ledger.dir.path().join(format!("generated-{seed}.jsonl"));
    let expected = ledger.dir.path().join(format!("expected-{seed}.json"));
    let seed = seed.to_string();
    let mut args = vec!["--seed", &seed, "--manuals", "3", "--movements", "300"];
    args.extend(extra);
    args.extend(["--expected", expected.to_str().expect("a UTF-8 path")]);
    run_generator(&history, &args);
    let text = std::fs::read_to_string(&expected).expect("the expected balances are written");
    let expected: Value = serde_json::from_str(&text).expect("the expected balances are JSON");
    (history, expected)
}

fn decimal(value: &Value, what: &str) -> Decimal {
    value
        .as_str()
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| panic!("{what} is a decimal string, not {value}"))
}

/// The entry of `list` whose `item` is `item`.
fn by_item<'a>(list: &'a Value, item: &Value) -> &'a Value {
    list.as_array()
        .and_then(|entries| entries.iter().find(|e| &e["item"] == item))
        .unwrap_or_else(|| panic!("no item {item} in {list}"))
}

fn imported_and_agreed(ledger: &TestLedger, seed: u64, extra: &[&str]) {
    let (history, expected) = generate(ledger, seed, extra);
    let path = history.to_str().expect("a UTF-8 path");
    ledger.expect(&["import", path], 0);

    let manuals = expected["manuals"].as_array().expect("a list of manuals");
    assert_eq!(manuals.len(), 3, "three manuals were asked for");
    let mut materials_compared = 0;
    for manual in manuals {
        let number = manual["manual"].as_str().expect("a manual number");
        let balance = ledger.json(&["balance", number]);
        let report = ledger.json(&["verify", number]);
        let expected_materials = manual["materials"].as_array().expect("materials");
        assert_eq!(
            balance["materials"].as_array().map(Vec::len),
            Some(expected_materials.len()),
            "{number}: the same materials"
        );
        for want in expected_materials {
            let item = &want["item"];
            let got = by_item(&balance["materials"], item);
            let figures = by_item(&report["materials"], item);
            for (field, actual) in [
                ("balance", &got["balance"]),
                ("at_contractors", &got["at_contractors"]),
                ("imported", &figures["imported"]),
                ("consumed", &figures["consumed"]),
            ] {
                assert_eq!(
                    decimal(actual, field),
                    decimal(&want[field], field),
                    "{number} material {item}: {field} (seed {seed})"
                );
            }
            materials_compared += 1;
        }
        assert_eq!(report["status"], "balanced", "{number}: {report}");
        assert_eq!(
            report["findings"].as_array().map(Vec::len),
            Some(0),
            "{number}: a generated history breaks no rule: {}",
            report["findings"]
        );
    }
    assert!(
        materials_compared >= 12,
        "every manual has materials to compare"
    );
}

fn seed_1(ledger: TestLedger) {
    imported_and_agreed(&ledger, 1, &[]);
}

fn seed_2_with_many_carryovers_and_reversals(ledger: TestLedger) {
    imported_and_agreed(
        &ledger,
        2,
        &["--carryover-share", "0.2", "--reversal-share", "0.15"],
    );
}

fn seed_3_with_more_items_and_outward_processing(ledger: TestLedger) {
    imported_and_agreed(
        &ledger,
        3,
        &[
            "--materials",
            "7",
            "--products",
            "5",
            "--mix",
            "outward=20,domestic_sale=10,remnant=5",
        ],
    );
}

/// A manual whose carry-over rows, with those that name it as the
/// counterparty, pass the read models' 10,000-row cap is audited whole: the
/// audit used to read it cut at the cap and report a false break.
fn a_manual_past_the_read_cap_is_audited_whole(ledger: TestLedger) {
    let history = ledger.dir.path().join("carryovers.jsonl");
    run_generator(
        &history,
        &[
            "--seed",
            "4",
            "--manuals",
            "3",
            "--movements",
            "6500",
            "--carryover-share",
            "0.9",
            "--reversal-share",
            "0.01",
        ],
    );
    ledger.expect(&["import", history.to_str().expect("a UTF-8 path")], 0);
    let widest = ledger.count(
        "SELECT max(n) FROM (SELECT m.manual, (SELECT count(*) FROM rm_carryovers c \
         WHERE c.manual = m.manual OR c.counterparty_manual = m.manual) AS n FROM rm_manuals m) w",
    );
    assert!(widest > 10_000, "a manual past the cap: {widest} rows");
    let audit = ledger.expect(&["audit"], 0);
    assert!(audit.contains("intact"), "{audit}");
}

on_both_backends! {
    a_manual_past_the_read_cap_is_audited_whole;
    seed_1;
    seed_2_with_many_carryovers_and_reversals;
    seed_3_with_more_items_and_outward_processing;
}

/// A seed gives the same history byte for byte; another seed another.
#[test]
fn a_seed_gives_the_same_history() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let write = |seed: &str, name: &str| {
        let path = dir.path().join(name);
        let status = Command::new(generator_binary())
            .args([
                "--seed",
                seed,
                "--manuals",
                "2",
                "--movements",
                "200",
                "--out",
            ])
            .arg(&path)
            .status()
            .expect("bondledger-gen runs");
        assert!(status.success());
        std::fs::read(&path).expect("the history is written")
    };
    let first = write("9", "a.jsonl");
    assert!(first.len() > 10_000, "a history of 400 movements");
    assert_eq!(first, write("9", "b.jsonl"));
    assert_ne!(first, write("10", "c.jsonl"));
}
