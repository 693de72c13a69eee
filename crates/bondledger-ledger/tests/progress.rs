//! What the long commands tell their progress bars, on SQLite and
//! PostgreSQL: an import, a manual's verification, the hash chains' check and
//! the read models' audit each report steps that only go forward and end
//! where the work ends.

use bondledger_domain::{Mode, VerifyOptions};
use bondledger_ledger::{AsOf, Ledger, PROGRESS_EVERY_EVENTS};
use bondledger_tests::{Backend, TestLedger};
use serde_json::json;

const MANUAL: &str = "C44012600100";
/// Imports after the registration: enough for several of the import's
/// chunks, two of the verification's reports and three audit pages.
const IMPORTS: usize = 2 * PROGRESS_EVERY_EVENTS as usize + 500;

/// The file's text: a comment, the registration, then the imports, one a line.
fn history() -> String {
    let mut text = String::from("# a long history\n");
    let registration = json!({"id": "reg", "type": "manual_registered", "manual": MANUAL,
        "date": "2026-01-02", "trade_mode": "purchased", "enterprise": "4401900001",
        "valid_until": "2027-12-31",
        "materials": [{"item": 1, "hs": "3901100000", "name": "聚乙烯", "spec": "LD", "unit": "千克", "qty": "100000000"}],
        "products": [{"item": 1, "hs": "3923210000", "name": "袋", "spec": "S", "unit": "千克", "qty": "100000000"}]});
    text.push_str(&format!("{registration}\n"));
    for n in 0..IMPORTS {
        let line = json!({"id": format!("i{n}"), "type": "material_imported", "manual": MANUAL,
            "date": "2026-02-01", "material": 1, "qty": "1", "declaration": "440120261000010001",
            "mode": "0615"});
        text.push_str(&format!("{line}\n"));
    }
    text
}

fn assert_forward(what: &str, reported: &[(i64, i64)], end: i64) {
    assert!(reported.len() >= 3, "{what}: {reported:?}");
    assert!(
        reported.windows(2).all(|pair| pair[0].0 < pair[1].0),
        "{what} goes forward: {reported:?}"
    );
    assert!(
        reported.iter().all(|(done, total)| done <= total),
        "{what} is never past its total: {reported:?}"
    );
    assert_eq!(reported.last().map(|(done, _)| *done), Some(end), "{what}");
}

fn long_commands_report_their_progress(backend: Backend) {
    let Some(test) = TestLedger::new(backend) else {
        return;
    };
    let file = test.file_text("long.jsonl", &history());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let ledger = Ledger::open(&test.url).await.expect("the ledger opens");

        let mut lines = Vec::new();
        let outcome = ledger
            .import_file_reporting(&file, Mode::Strict, None, &mut |line| lines.push(line))
            .await
            .expect("imported");
        assert_eq!(outcome.appended_count, IMPORTS + 1);
        let last_line = IMPORTS + 2;
        let lines: Vec<(i64, i64)> = lines
            .into_iter()
            .map(|line| (line as i64, last_line as i64))
            .collect();
        assert_forward("the import", &lines, last_line as i64);

        let mut replayed = Vec::new();
        let report = ledger
            .verify_reporting(
                MANUAL,
                AsOf::Latest,
                &VerifyOptions::default(),
                &mut |what, done, last| {
                    assert_eq!(what, "replaying");
                    replayed.push((done, last));
                },
            )
            .await
            .expect("verified")
            .expect("the manual is there");
        assert_eq!(report.manual.as_str(), MANUAL);
        let versions = (IMPORTS + 1) as i64;
        let expected: Vec<(i64, i64)> = (1..=versions / PROGRESS_EVERY_EVENTS)
            .map(|n| (n * PROGRESS_EVERY_EVENTS, versions))
            .collect();
        assert_eq!(replayed, expected);

        let mut checked = Vec::new();
        let breaks = ledger
            .store()
            .verify_chain_reporting(None, &mut |position| checked.push((position, versions)))
            .await
            .expect("the chains are checked");
        assert!(breaks.is_empty(), "{breaks:?}");
        assert_forward("the chain check", &checked, versions);
        let mut checked = Vec::new();
        ledger
            .store()
            .verify_chain_reporting(Some(MANUAL), &mut |version| {
                checked.push((version, versions));
            })
            .await
            .expect("the manual's chain is checked");
        assert_forward("the manual's chain check", &checked, versions);

        let mut audited = Vec::new();
        let breaks = ledger
            .audit_projections_reporting(None, &mut |what, done, head| {
                if what == "audit" {
                    audited.push((done, head));
                }
            })
            .await
            .expect("audited");
        assert!(breaks.is_empty(), "{breaks:?}");
        assert_forward("the audit", &audited, versions);
    });
}

#[test]
fn sqlite_long_commands_report_their_progress() {
    long_commands_report_their_progress(Backend::Sqlite);
}

#[test]
fn postgres_long_commands_report_their_progress() {
    long_commands_report_their_progress(Backend::Postgres);
}
