//! Every shared sample imported through the real binary (with `--record`
//! where its first line says `# record`) reproduces its independently
//! computed report for every manual, on SQLite and on PostgreSQL.

use bondledger_tests::{on_both_backends, report_differences, samples_dir, TestLedger};
use serde_json::Value;

fn reproduces(ledger: TestLedger, name: &str) {
    let path = samples_dir().join(format!("{name}.jsonl"));
    let text = std::fs::read_to_string(&path).expect("the sample is readable");
    let path = path.display().to_string();
    let mut args = vec!["import"];
    if text.lines().next() == Some("# record") {
        args.push("--record");
    }
    args.push(&path);
    ledger.expect(&args, 0);
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(samples_dir().join(format!("{name}.expected.json")))
            .expect("expected report"),
    )
    .expect("expected report is JSON");
    let mut problems = Vec::new();
    for (manual, report) in expected.as_object().expect("reports by manual") {
        let actual = ledger.json(&["verify", manual]);
        problems.extend(
            report_differences(report, &actual)
                .into_iter()
                .map(|p| format!("{manual}: {p}")),
        );
    }
    assert!(
        problems.is_empty(),
        "{name} on {:?}:\n{}",
        ledger.backend,
        problems.join("\n")
    );
    // Importing the same file again changes nothing.
    let before: Vec<Value> = expected
        .as_object()
        .into_iter()
        .flatten()
        .map(|(m, _)| ledger.json(&["verify", m]))
        .collect();
    ledger.expect(&args, 0);
    let after: Vec<Value> = expected
        .as_object()
        .into_iter()
        .flatten()
        .map(|(m, _)| ledger.json(&["verify", m]))
        .collect();
    assert_eq!(before, after, "re-importing {name} changed a report");
}

fn plastic_bags(ledger: TestLedger) {
    reproduces(ledger, "plastic-bags");
}
fn furniture_account_book(ledger: TestLedger) {
    reproduces(ledger, "furniture-account-book");
}
fn toys_consigned(ledger: TestLedger) {
    reproduces(ledger, "toys-consigned");
}
fn garments_record(ledger: TestLedger) {
    reproduces(ledger, "garments-record");
}

on_both_backends! {
    plastic_bags;
    furniture_account_book;
    toys_consigned;
    garments_record;
}
