//! Read models through the binary, on both databases: the timeline's
//! filters on the sample, time travel equal to a replay of each prefix (with
//! and without snapshots), and an audit that finds a tampered read-model row
//! and survives a rebuild killed half way.

use std::time::Duration;

use bondledger_tests::{binary, on_both_backends, samples_dir, TestLedger};
use serde_json::{json, Value};

fn import_sample(ledger: &TestLedger) -> String {
    let path = samples_dir()
        .join("plastic-bags.jsonl")
        .display()
        .to_string();
    ledger.expect(&["import", &path], 0);
    path
}

fn ids(events: &Value) -> Vec<String> {
    events
        .as_array()
        .expect("an array")
        .iter()
        .map(|e| e["id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn timeline(ledger: &TestLedger, filters: &[&str]) -> Vec<String> {
    let mut args = vec!["timeline"];
    args.extend(filters);
    ids(&ledger.json(&args))
}

fn timeline_filters_return_exactly_their_events(ledger: TestLedger) {
    import_sample(&ledger);
    let expect = |filters: &[&str], expected: &[&str]| {
        assert_eq!(timeline(&ledger, filters), expected, "timeline {filters:?}");
    };
    expect(&["--manual", "C22012600007"], &["pb-002", "pb-014"]);
    expect(&["--enterprise", "3202960002"], &["pb-002", "pb-014"]);
    expect(
        &["--hs", "3920"],
        &[
            "pb-001", "pb-002", "pb-004", "pb-012", "pb-013", "pb-014", "pb-015", "pb-017",
        ],
    );
    expect(
        &["--declaration", "220120261000010001"],
        &["pb-005", "pb-006"],
    );
    expect(&["--counterparty", "3202990031"], &["pb-010", "pb-012"]);
    expect(&["--counterparty", "C22012600007"], &["pb-015"]);
    expect(
        &[
            "--manual",
            "C22012600001",
            "--from",
            "2026-03-01",
            "--to",
            "2026-03-31",
        ],
        &["pb-011", "pb-012", "pb-013", "pb-015"],
    );
    expect(
        &["--hs", "3901", "--declaration", "220120261000030044"],
        &["pb-011"],
    );
    expect(&["--hs", "9999"], &[]);
    let own = timeline(&ledger, &["--manual", "C22012600001"]);
    assert_eq!(own.len(), 19);
    let followed = timeline(&ledger, &["--manual", "C22012600001", "--follow-carryover"]);
    assert_eq!(
        followed.len(),
        21,
        "the carry-over chain reaches C22012600007"
    );
    let csv = ledger.expect(
        &["timeline", "--manual", "C22012600007", "--format", "csv"],
        0,
    );
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(lines[0].starts_with("position,manual,version"), "{csv}");
    assert!(
        lines[2].contains("pb-014") && lines[2].contains("carryover_in"),
        "{csv}"
    );
}

fn as_of_each_version_equals_a_replay_of_the_prefix(ledger: TestLedger) {
    let path = import_sample(&ledger);
    let text = std::fs::read_to_string(&path).expect("sample");
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with('{')).collect();
    let manual = "C22012600001";
    let own: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.contains(&format!("\"manual\":\"{manual}\"")))
        .map(|(i, _)| i)
        .collect();
    let mut answers = Vec::new();
    for (index, line_index) in own.iter().enumerate() {
        let version = (index + 1).to_string();
        let as_of = ledger.json(&["verify", manual, "--as-of-position", &version]);
        let prefix = TestLedger::new(ledger.backend).expect("a second ledger on the same backend");
        let file = prefix.file_text("prefix.jsonl", &(lines[..=*line_index].join("\n") + "\n"));
        prefix.expect(&["import", file.to_str().expect("utf-8 path")], 0);
        let replayed = prefix.json(&["verify", manual]);
        assert_eq!(as_of, replayed, "{manual} as of version {version}");
        answers.push(as_of);
    }
    // Snapshots are a cache: with one every 3 events, then none, every answer is the same.
    let with_snapshots = |ledger: &TestLedger| -> Vec<Value> {
        (1..=own.len())
            .map(|version| {
                ledger.json(&["verify", manual, "--as-of-position", &version.to_string()])
            })
            .collect()
    };
    let snapshot_every_3 = |ledger: &TestLedger| {
        let output = ledger.run_with_env(
            &["rebuild", "snapshots"],
            &[("BONDLEDGER_SNAPSHOT_EVERY", "3")],
        );
        assert_eq!(
            output.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    snapshot_every_3(&ledger);
    // 19 events of one manual and 2 of the other: 6 snapshots at every third version.
    assert_eq!(ledger.count("SELECT COUNT(*) FROM snapshots"), 6);
    assert_eq!(with_snapshots(&ledger), answers, "answers with snapshots");
    for date in ["2026-01-25", "2026-03-10", "2026-06-30"] {
        let dated = ledger.json(&["balance", manual, "--as-of-date", date]);
        ledger
            .execute_sql("DELETE FROM snapshots")
            .expect("snapshots can be dropped");
        assert_eq!(
            ledger.json(&["balance", manual, "--as-of-date", date]),
            dated,
            "as of {date}"
        );
        snapshot_every_3(&ledger);
    }
    ledger
        .execute_sql("DELETE FROM snapshots")
        .expect("snapshots can be dropped");
    assert_eq!(
        with_snapshots(&ledger),
        answers,
        "answers without snapshots"
    );
}

/// A snapshot keeps the state's per-sale records apart, each written once: a
/// verify resumed from one still checks every sale's interest (and no longer
/// a reversed one's), and a balance, which leaves them unread, answers as a
/// replay from the start does.
fn snapshots_keep_the_sales_a_verify_checks(ledger: TestLedger) {
    let sample = samples_dir().join("furniture-account-book.jsonl");
    let text = std::fs::read_to_string(sample).expect("sample");
    // fa-24 states its interest wrong (only its sale record can tell), and
    // is reversed the next day.
    let reversal = r#"{"id":"fa-24-rev","type":"reversed","manual":"E44192600310","date":"2026-09-02","event":"fa-24","reason":"录入错误"}"#;
    let mut lines = Vec::new();
    for line in text.lines() {
        lines.push(line.replace("\"interest\":\"8.53\"", "\"interest\":\"1.00\""));
        if line.contains("\"id\":\"fa-24\"") {
            lines.push(reversal.to_owned());
        }
    }
    assert!(lines.iter().any(|l| l.contains("\"interest\":\"1.00\"")));
    let file = ledger.file_text("sales.jsonl", &(lines.join("\n") + "\n"));
    ledger.expect(&["import", file.to_str().expect("utf-8 path")], 0);
    let manual = "E44192600310";
    let last = ledger.count(&format!(
        "SELECT version FROM streams WHERE stream = '{manual}'"
    ));
    let answers = |ledger: &TestLedger| -> Vec<(Value, Value)> {
        (1..=last)
            .map(|version| {
                let version = version.to_string();
                (
                    ledger.json(&["verify", manual, "--as-of-position", &version]),
                    ledger.json(&["balance", manual, "--as-of-position", &version]),
                )
            })
            .collect()
    };
    let output = ledger.run_with_env(
        &["rebuild", "snapshots"],
        &[("BONDLEDGER_SNAPSHOT_EVERY", "1")],
    );
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert_eq!(
        ledger.count(
            "SELECT COUNT(*) FROM snapshot_sales WHERE event = 'fa-24' AND removed_at IS NOT NULL"
        ),
        1,
        "the sale's record, written once, gone with its reversal"
    );
    assert_eq!(
        ledger.count("SELECT COUNT(*) FROM snapshots WHERE state LIKE '%duty_and_vat%'"),
        0,
        "no sale is in a snapshot's state"
    );
    let with_snapshots = answers(&ledger);
    let mismatch = |report: &Value| {
        report["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .any(|f| f["rule"] == "domestic_sale.interest_mismatch" && f["event"] == "fa-24")
    };
    assert!(
        with_snapshots.iter().any(|(report, _)| mismatch(report)),
        "the sale's interest is found wrong while it stands"
    );
    let (last_report, _) = with_snapshots.last().expect("events");
    assert!(!mismatch(last_report), "{last_report}");
    ledger
        .execute_sql("DELETE FROM snapshots")
        .expect("snapshots can be dropped");
    assert_eq!(
        answers(&ledger),
        with_snapshots,
        "answers without snapshots"
    );
}

/// A snapshot keeps the state's carry-over records apart too, each written
/// once: verifications (which match each carry-over with its other side) and
/// balances resumed from a snapshot at every version answer as replays from
/// the start do, also after a carry-over is reversed, and the read models
/// built on snapshots pass the audit.
fn snapshots_keep_the_carryovers_apart(ledger: TestLedger) {
    let sample = samples_dir().join("plastic-bags.jsonl");
    let text = std::fs::read_to_string(sample).expect("sample");
    let reversal = r#"{"id":"pb-015-rev","type":"reversed","manual":"C22012600001","date":"2026-03-20","event":"pb-015","reason":"录入错误"}"#;
    let mut lines = Vec::new();
    for line in text.lines() {
        lines.push(line.to_owned());
        if line.contains("\"id\":\"pb-015\"") {
            lines.push(reversal.to_owned());
        }
    }
    assert!(lines.iter().any(|l| l.contains("pb-015-rev")));
    let file = ledger.file_text("carryovers.jsonl", &(lines.join("\n") + "\n"));
    ledger.expect(&["import", file.to_str().expect("utf-8 path")], 0);
    let manuals = ["C22012600001", "C22012600007"];
    let answers = |ledger: &TestLedger| -> Vec<(Value, Value)> {
        let mut answers = Vec::new();
        for manual in manuals {
            let last = ledger.count(&format!(
                "SELECT version FROM streams WHERE stream = '{manual}'"
            ));
            for version in 1..=last {
                let version = version.to_string();
                answers.push((
                    ledger.json(&["verify", manual, "--as-of-position", &version]),
                    ledger.json(&["balance", manual, "--as-of-position", &version]),
                ));
            }
        }
        answers
    };
    let output = ledger.run_with_env(
        &["rebuild", "snapshots"],
        &[("BONDLEDGER_SNAPSHOT_EVERY", "1")],
    );
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert_eq!(
        ledger.count(
            "SELECT COUNT(*) FROM snapshot_carryovers WHERE event = 'pb-015' AND removed_at IS NOT NULL"
        ),
        1,
        "the carry-over's record, written once, gone with its reversal"
    );
    assert_eq!(
        ledger.count(
            "SELECT COUNT(*) FROM snapshot_carryovers WHERE event = 'pb-014' AND removed_at IS NULL"
        ),
        1,
        "the other side's record, written once, standing"
    );
    assert_eq!(
        ledger.count("SELECT COUNT(*) FROM snapshots WHERE state LIKE '%counterparty_manual\"%'"),
        0,
        "no carry-over is in a snapshot's state"
    );
    let out = ledger.expect(&["audit"], 0);
    assert!(out.contains("intact"), "{out}");
    let with_snapshots = answers(&ledger);
    ledger
        .execute_sql("DELETE FROM snapshots")
        .expect("snapshots can be dropped");
    assert_eq!(
        answers(&ledger),
        with_snapshots,
        "answers without snapshots"
    );
}

fn audit_finds_a_tampered_read_model_row(ledger: TestLedger) {
    import_sample(&ledger);
    let out = ledger.expect(&["audit"], 0);
    assert!(out.contains("intact"), "{out}");
    ledger
        .execute_sql("UPDATE rm_balances SET balance = '99999.000000' WHERE manual = 'C22012600001' AND item = 1")
        .expect("a read-model row can be changed");
    let out = ledger.expect(&["audit"], 5);
    assert!(
        out.contains("projection manuals")
            && out.contains("C22012600001")
            && out.contains("balances"),
        "{out}"
    );
    // The rows of the block holding position 5.
    found_then_mended(
        &ledger,
        "DELETE FROM rm_timeline_segments WHERE first_position <= 5 AND last_position >= 5",
        &["projection timeline: C22012600001 version", "row missing"],
    );
    // A key gone: the rows are whole, but a query by it would miss them.
    found_then_mended(
        &ledger,
        "DELETE FROM rm_timeline_keys WHERE kind = 'manual' AND value = 'C22012600001'",
        &[
            "projection timeline: C22012600001 version",
            "the key manual \"C22012600001\"",
        ],
    );
    // A key no event has.
    found_then_mended(
        &ledger,
        "INSERT INTO rm_timeline_keys (kind, value, block, positions) VALUES ('hs', '0101210010', 0, '5')",
        &[
            "projection timeline:",
            "the key hs \"0101210010\" of the block of positions 1 to 1000 is no event's there",
        ],
    );
    // A key that lists fewer events than have it.
    found_then_mended(
        &ledger,
        "UPDATE rm_timeline_keys SET positions = '1' WHERE kind = 'manual' AND value = 'C22012600001'",
        &[
            "projection timeline: C22012600001 version",
            "the key manual \"C22012600001\" of its block (positions 1 to 1000) lists positions [1], a replay gives [",
        ],
    );
}

/// Tampers with a read model by `sql`: `audit` must find it (exit 5) and say
/// each of `said`, and a `rebuild` must mend it.
fn found_then_mended(ledger: &TestLedger, sql: &str, said: &[&str]) {
    ledger
        .execute_sql(sql)
        .unwrap_or_else(|error| panic!("{sql}: {error}"));
    let out = ledger.expect(&["audit"], 5);
    for needle in said {
        assert!(out.contains(needle), "{needle:?} not in {out}");
    }
    ledger.expect(&["rebuild"], 0);
    ledger.expect(&["audit"], 0);
}

/// The events the timeline holds, asked through the binary.
fn timeline_events(ledger: &TestLedger) -> usize {
    let out = ledger.expect(&["timeline", "--format", "json"], 0);
    let events: serde_json::Value = serde_json::from_str(&out).expect("timeline JSON");
    events.as_array().expect("a JSON array").len()
}

/// Catching up all projections is one pass from the earliest checkpoint:
/// a projection cleared by hand comes back whole from position 0 while the
/// others, already at the head, take nothing twice.
fn projections_at_different_checkpoints_catch_up_in_one_pass(ledger: TestLedger) {
    let every = [("BONDLEDGER_SNAPSHOT_EVERY", "2")];
    let run = |args: &[&str]| {
        let output = ledger.run_with_env(args, &every);
        assert_eq!(output.status.code(), Some(0), "{args:?}: {output:?}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let sample = samples_dir().join("plastic-bags.jsonl");
    run(&["import", &sample.display().to_string()]);
    let events = ledger.count("SELECT count(*) FROM events");
    let timeline_rows = timeline_events(&ledger) as i64;
    let snapshot_rows = ledger.count("SELECT count(*) FROM snapshots");
    assert_eq!(timeline_rows, events, "a timeline row an event");
    assert!(snapshot_rows > 0, "snapshots every second event");
    let clear: [(&str, &[&str]); 2] = [
        ("timeline", &["rm_timeline_keys", "rm_timeline_segments"]),
        (
            "snapshots",
            &["snapshot_sales", "snapshot_carryovers", "snapshots"],
        ),
    ];
    for (projection, tables) in clear {
        let mut sql: Vec<String> = tables.iter().map(|t| format!("DELETE FROM {t}")).collect();
        sql.push(format!(
            "DELETE FROM projection_checkpoints WHERE name = '{projection}'"
        ));
        ledger
            .execute_sql(&sql.join("; "))
            .expect("a projection can be cleared");
        // The audit catches up first, then compares every row with a replay.
        let out = run(&["audit"]);
        assert!(out.contains("intact"), "after clearing {projection}: {out}");
        assert_eq!(timeline_events(&ledger) as i64, timeline_rows);
        assert_eq!(
            ledger.count("SELECT count(*) FROM snapshots"),
            snapshot_rows
        );
        let behind = ledger.count("SELECT count(*) FROM projection_checkpoints WHERE position <> (SELECT max(position) FROM events)");
        assert_eq!(behind, 0, "every projection at the head");
    }
}

fn a_rebuild_killed_half_way_resumes_without_applying_anything_twice(ledger: TestLedger) {
    let manual = "C33012600900";
    let mut lines = vec![
        json!({"id":"k-0","type":"manual_registered","manual":manual,"date":"2026-01-02",
        "trade_mode":"purchased","enterprise":"3301960900","valid_until":"2027-12-31",
        "materials":[{"item":1,"hs":"7601100000","name":"铝锭","spec":"A00","unit":"千克","qty":"100000000"}],
        "products":[{"item":1,"hs":"7606123000","name":"铝板","spec":"1mm","unit":"千克","qty":"100000000"}]}),
    ];
    for n in 1..=30_000 {
        lines.push(json!({"id":format!("k-{n}"),"type":"material_imported","manual":manual,"date":"2026-02-01",
            "material":1,"qty":"1.5","declaration":"330120261000010001","mode":"0615"}));
    }
    let file = ledger.file("many.jsonl", &lines);
    ledger.expect(&["import", file.to_str().expect("utf-8 path")], 0);
    for delay_ms in [150, 400] {
        let mut child = std::process::Command::new(binary())
            .args(["rebuild", "--database-url", &ledger.url])
            .current_dir(ledger.dir.path())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("the rebuild starts");
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
    }
    let out = ledger.expect(&["audit"], 0);
    assert!(out.contains("intact"), "{out}");
    let balance = ledger.json(&["balance", manual]);
    assert_eq!(balance["materials"][0]["balance"], "45000.000000");
    assert_eq!(
        timeline(
            &ledger,
            &[
                "--manual",
                manual,
                "--from",
                "2026-01-01",
                "--to",
                "2026-01-31"
            ]
        ),
        ["k-0"]
    );
}

fn deadlines_show_what_is_due(ledger: TestLedger) {
    import_sample(&ledger);
    let deadlines = ledger.json(&["deadlines", "--today", "2026-06-01"]);
    let rows = deadlines.as_array().expect("an array");
    // C22012600001 was reported: no report deadline; C22012600007 was not,
    // and has had no export: due 30 days after its expiry.
    assert!(
        rows.iter().any(|d| d["manual"] == "C22012600007"
            && d["kind"] == "report"
            && d["due"] == "2027-01-30"),
        "{rows:?}"
    );
    assert!(
        !rows
            .iter()
            .any(|d| d["manual"] == "C22012600001" && d["kind"] == "report"),
        "{rows:?}"
    );
    let expiry = rows
        .iter()
        .find(|d| d["manual"] == "C22012600001" && d["kind"] == "expiry")
        .expect("an expiry");
    assert_eq!(expiry["due"], "2026-12-31");
    assert_eq!(expiry["days_remaining"], 213);
    let mine = ledger.json(&[
        "deadlines",
        "--today",
        "2026-06-01",
        "--enterprise",
        "3202960002",
    ]);
    assert!(
        mine.as_array()
            .expect("an array")
            .iter()
            .all(|d| d["manual"] == "C22012600007"),
        "{mine}"
    );
}

fn trace_draws_import_declarations_first_in_first_out(ledger: TestLedger) {
    import_sample(&ledger);
    // Product 2 uses 0.98 ÷ (1 − 0.02) = 1 kg of LDPE (material 1). The first
    // import (24000 kg, 2026-01-22) has given 8000 × 0.92 ÷ 0.95 = 7747.368421
    // kg to product 1 when 5000 kg of film are carried over: they come from
    // it; the 12000 products 1 exported next use 11621.052632 kg, more than
    // the first import has left, so the 2960 kg exported on 2026-04-09 come
    // from the second import.
    let rows = ledger.json(&["trace", "C22012600001", "--product", "2"]);
    let material_1: Vec<(String, String, String)> = rows
        .as_array()
        .expect("an array")
        .iter()
        .filter(|r| r["material"] == 1)
        .map(|r| {
            (
                r["export_event"].as_str().unwrap_or_default().to_owned(),
                r["import_declaration"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                r["qty"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        material_1,
        [
            (
                "pb-015".to_owned(),
                "220120261000010001".to_owned(),
                "5000.000000".to_owned()
            ),
            (
                "pb-017".to_owned(),
                "220120261000030044".to_owned(),
                "2960.000000".to_owned()
            ),
        ]
    );
    ledger.expect(&["trace", "C99999999999", "--product", "1"], 4);
}

on_both_backends! {
    trace_draws_import_declarations_first_in_first_out;
    timeline_filters_return_exactly_their_events;
    as_of_each_version_equals_a_replay_of_the_prefix;
    snapshots_keep_the_sales_a_verify_checks;
    snapshots_keep_the_carryovers_apart;
    audit_finds_a_tampered_read_model_row;
    a_rebuild_killed_half_way_resumes_without_applying_anything_twice;
    projections_at_different_checkpoints_catch_up_in_one_pass;
    deadlines_show_what_is_due;
}
