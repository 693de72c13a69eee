//! The command line of interchange §2 through the real binary, on both
//! databases: exit statuses, refusals and malformed input that change
//! nothing, time travel, history and the audit.

use bondledger_tests::{on_both_backends, Backend, TestLedger};
use serde_json::{json, Value};

const MANUAL: &str = "C31012600042";

fn register() -> Value {
    json!({"id":"r-1","type":"manual_registered","manual":MANUAL,"date":"2026-02-01","trade_mode":"purchased",
        "enterprise":"3101960042","valid_until":"2026-12-31",
        "materials":[{"item":1,"hs":"7408110000","name":"精炼铜线","spec":"Φ2.6mm","unit":"千克","qty":"10000"}],
        "products":[{"item":1,"hs":"8544491900","name":"电源线","spec":"3x1.5mm²","unit":"千克","qty":"9000"}]})
}

fn declare() -> Value {
    json!({"id":"r-2","type":"unit_consumption_declared","manual":MANUAL,"date":"2026-02-02","product":1,
        "lines":[{"material":1,"net":"0.8","loss_rate":"0.2"}]})
}

fn import(id: &str, date: &str, qty: &str) -> Value {
    json!({"id":id,"type":"material_imported","manual":MANUAL,"date":date,"material":1,"qty":qty,
        "declaration":"310120261000010001","mode":"0615"})
}

fn export(id: &str, date: &str, qty: &str) -> Value {
    json!({"id":id,"type":"product_exported","manual":MANUAL,"date":date,"product":1,"qty":qty,
        "declaration":"310120261000020001","mode":"0615"})
}

fn balance(ledger: &TestLedger, extra: &[&str]) -> String {
    let mut args = vec!["balance", MANUAL];
    args.extend(extra);
    ledger.json(&args)["materials"][0]["balance"]
        .as_str()
        .expect("a balance")
        .to_owned()
}

fn event_count(ledger: &TestLedger) -> usize {
    ledger
        .json(&["history", MANUAL])
        .as_array()
        .map_or(0, Vec::len)
}

fn base(ledger: &TestLedger) {
    let file = ledger.file(
        "base.jsonl",
        &[register(), declare(), import("r-3", "2026-02-10", "1000")],
    );
    ledger.expect(&["import", file.to_str().expect("utf-8 path")], 0);
}

fn stderr_of(ledger: &TestLedger, args: &[&str], status: i32) -> String {
    let output = ledger.run(args);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(
        output.status.code(),
        Some(status),
        "bondledger {args:?}: {stderr}"
    );
    stderr
}

fn a_refused_movement_leaves_its_whole_file_out(ledger: TestLedger) {
    base(&ledger);
    // 1000 kg in stock; each product takes 1 kg: 1200 products is 200 kg short.
    let file = ledger.file(
        "exports.jsonl",
        &[
            export("x-1", "2026-03-01", "100"),
            export("x-2", "2026-03-02", "1200"),
        ],
    );
    let path = file.to_str().expect("utf-8 path");
    let stderr = stderr_of(&ledger, &["import", path], 3);
    assert!(
        stderr.contains(&format!("{path}:2: refused: balance.insufficient:")),
        "{stderr}"
    );
    assert_eq!(
        event_count(&ledger),
        3,
        "nothing of the refused file is kept"
    );
    assert_eq!(balance(&ledger, &[]), "1000.000000");
}

fn record_mode_keeps_history_with_its_finding(ledger: TestLedger) {
    base(&ledger);
    let file = ledger.file("history.jsonl", &[export("x-1", "2026-03-01", "1200")]);
    let path = file.to_str().expect("utf-8 path");
    ledger.expect(&["import", "--record", path], 0);
    assert_eq!(
        balance(&ledger, &[]),
        "-200.000000",
        "kept and applied: the balance goes below zero"
    );
    let report = ledger.json(&["verify", MANUAL]);
    let findings = report["findings"].as_array().expect("findings");
    assert!(
        findings
            .iter()
            .any(|f| f["rule"] == "balance.insufficient" && f["event"] == "x-1"),
        "{findings:?}"
    );
}

fn record_mode_still_refuses_what_cannot_be_applied(ledger: TestLedger) {
    base(&ledger);
    let mut line = import("x-1", "2026-03-01", "5");
    line["material"] = json!(9);
    let file = ledger.file("unknown-item.jsonl", &[line]);
    let stderr = stderr_of(
        &ledger,
        &["import", "--record", file.to_str().expect("utf-8 path")],
        3,
    );
    assert!(stderr.contains(":1: refused: item.unknown:"), "{stderr}");
    assert_eq!(event_count(&ledger), 3);
}

fn malformed_and_hostile_lines_change_nothing(ledger: TestLedger) {
    base(&ledger);
    let good = import("m-0", "2026-03-01", "1").to_string();
    let with = |field: &str, value: Value| {
        let mut line = import("m-1", "2026-03-01", "1");
        line[field] = value;
        line.to_string()
    };
    let huge = format!(
        "{{\"id\":\"m-9\",\"type\":\"material_imported\",\"pad\":\"{}\"}}",
        "x".repeat(10 * 1024 * 1024)
    );
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "truncated JSON",
            r#"{"id":"m-1","type":"material_imported","manual""#.to_owned(),
            "not JSON",
        ),
        ("a 10 MB line", huge, "longer than"),
        (
            "29 digits",
            with("qty", json!("12345678901234567890123456789")),
            "qty",
        ),
        ("NaN", with("qty", json!("NaN")), "qty"),
        ("negative zero", with("qty", json!("-0")), "qty"),
        ("a number for a decimal", with("qty", json!(5)), "qty"),
        ("an unknown field", with("colour", json!("red")), "colour"),
        (
            "an item that is not an integer",
            with("material", json!("1")),
            "material",
        ),
        (
            "an item that is a float",
            with("material", json!(1.5)),
            "material",
        ),
        ("an unknown type", with("type", json!("teleported")), "type"),
        (
            "a bad manual number",
            with("manual", json!("c-1")),
            "manual",
        ),
        ("a bad date", with("date", json!("2026-02-30")), "date"),
        (
            "a NUL in a text",
            with("declaration", json!("31012026\u{0}1000010001")),
            "declaration",
        ),
        (
            "a control character in an id",
            with("id", json!("m-\u{1b}[2J")),
            "U+001B",
        ),
        ("not an object", "[1,2,3]".to_owned(), "object"),
        (
            "deep nesting",
            format!("{}{}", "[".repeat(5000), "]".repeat(5000)),
            "JSON",
        ),
    ];
    for (what, line, mentions) in cases {
        let file = ledger.file_text("bad.jsonl", &format!("# a comment\n{good}\n{line}\n"));
        let path = file.to_str().expect("utf-8 path");
        let stderr = stderr_of(&ledger, &["import", path], 2);
        assert!(
            stderr.contains(&format!("{path}:3:")),
            "{what}: the file and line are named: {stderr}"
        );
        assert!(
            stderr.contains(mentions),
            "{what}: {mentions:?} is named: {stderr}"
        );
        assert_eq!(event_count(&ledger), 3, "{what}: nothing is appended");
    }
}

fn a_malformed_line_after_a_refusal_is_what_is_reported(ledger: TestLedger) {
    base(&ledger);
    let mut unknown_item = import("r-1", "2026-03-01", "5");
    unknown_item["material"] = json!(9);
    let good = import("r-2", "2026-03-02", "1").to_string();
    let file = ledger.file_text(
        "mixed.jsonl",
        &format!("{unknown_item}\n{good}\n{{\"type\": \"material_imported\"\n"),
    );
    let path = file.to_str().expect("utf-8 path");
    let stderr = stderr_of(&ledger, &["import", path], 2);
    assert!(stderr.contains(&format!("{path}:3:")), "{stderr}");
    assert!(!stderr.contains("item.unknown"), "{stderr}");
    assert_eq!(event_count(&ledger), 3, "nothing is appended");
}

fn unknown_manuals_exit_4(ledger: TestLedger) {
    base(&ledger);
    for command in ["verify", "balance", "history"] {
        ledger.expect(&[command, "C99999999999"], 4);
    }
}

fn the_same_id_with_other_content_is_refused(ledger: TestLedger) {
    base(&ledger);
    let file = ledger.file("again.jsonl", &[import("r-3", "2026-02-10", "999")]);
    let stderr = stderr_of(&ledger, &["import", file.to_str().expect("utf-8 path")], 2);
    assert!(stderr.contains("id"), "{stderr}");
    assert_eq!(balance(&ledger, &[]), "1000.000000");
}

fn files_are_each_all_or_nothing(ledger: TestLedger) {
    base(&ledger);
    let first = ledger.file("first.jsonl", &[import("f-1", "2026-03-01", "10")]);
    let second = ledger.file(
        "second.jsonl",
        &[
            import("f-2", "2026-03-02", "20"),
            export("f-3", "2026-03-03", "100000"),
        ],
    );
    let stderr = stderr_of(
        &ledger,
        &[
            "import",
            first.to_str().expect("utf-8 path"),
            second.to_str().expect("utf-8 path"),
        ],
        3,
    );
    assert!(stderr.contains("second.jsonl:2: refused:"), "{stderr}");
    assert_eq!(
        balance(&ledger, &[]),
        "1010.000000",
        "the first file stays, the second is left out whole"
    );
}

fn time_travel_by_version_date_and_recording(ledger: TestLedger) {
    base(&ledger);
    // Recorded later, dated earlier: an import of 2026-02-05.
    let late = ledger.file(
        "late.jsonl",
        &[
            import("t-1", "2026-02-05", "50"),
            export("t-2", "2026-04-01", "100"),
        ],
    );
    ledger.expect(&["import", late.to_str().expect("utf-8 path")], 0);
    assert_eq!(balance(&ledger, &[]), "950.000000");
    assert_eq!(balance(&ledger, &["--as-of-position", "3"]), "1000.000000");
    assert_eq!(balance(&ledger, &["--as-of-position", "4"]), "1050.000000");
    assert_eq!(balance(&ledger, &["--as-of-position", "99"]), "950.000000");
    // By business date: the late-recorded import of 02-05 counts on 02-06, the 02-10 one does not.
    assert_eq!(
        balance(&ledger, &["--as-of-date", "2026-02-06"]),
        "50.000000"
    );
    assert_eq!(
        balance(&ledger, &["--as-of-date", "2026-03-31"]),
        "1050.000000"
    );
    // By recording: the moment the first event of the second file was recorded.
    let history = ledger.json(&["history", MANUAL]);
    let third = history[2]["recorded_at"]
        .as_str()
        .expect("recorded_at")
        .to_owned();
    assert_eq!(
        balance(&ledger, &["--as-of-recorded", &third]),
        "1000.000000"
    );
    let report = ledger.json(&["verify", MANUAL, "--as-of-position", "2"]);
    assert_eq!(report["materials"][0]["imported"], "0.000000");
}

fn history_lists_every_event_with_balances(ledger: TestLedger) {
    base(&ledger);
    let history = ledger.json(&["history", MANUAL]);
    let events = history.as_array().expect("an array");
    assert_eq!(events.len(), 3);
    for (index, event) in events.iter().enumerate() {
        for field in [
            "manual",
            "version",
            "position",
            "type",
            "date",
            "recorded_at",
            "id",
            "balances",
        ] {
            assert!(
                event.get(field).is_some(),
                "event {index} has {field}: {event}"
            );
        }
        assert_eq!(event["version"], json!(index + 1));
    }
    assert_eq!(
        events[2]["qty"], "1000",
        "the movement's own fields are there"
    );
    assert_eq!(events[2]["balances"][0]["balance"], "1000.000000");
    let table = ledger.expect(&["verify", MANUAL], 0);
    assert!(
        table.contains("精炼铜线"),
        "tables show Chinese names: {table}"
    );
}

fn events_cannot_be_altered_and_tampering_is_found(ledger: TestLedger) {
    base(&ledger);
    ledger.expect(&["audit"], 0);
    let update = ledger.execute_sql("UPDATE events SET payload = '{}' WHERE version = 3");
    assert!(update.is_err(), "UPDATE of an event must fail");
    let delete = ledger.execute_sql("DELETE FROM events");
    assert!(delete.is_err(), "DELETE of events must fail");
    assert_eq!(balance(&ledger, &[]), "1000.000000");
    let drop_triggers = match ledger.backend {
        Backend::Sqlite => "DROP TRIGGER events_refuse_update; DROP TRIGGER events_refuse_delete;",
        // Every partition's too, and the row triggers cloned to them.
        Backend::Postgres => "DO $$ DECLARE found RECORD; BEGIN \
            FOR found IN SELECT tgname, tgrelid::regclass AS target FROM pg_trigger \
                WHERE tgrelid IN (SELECT relid FROM pg_partition_tree('events')) \
                AND NOT tgisinternal AND tgparentid = 0 \
            LOOP EXECUTE format('DROP TRIGGER %I ON %s', found.tgname, found.target); END LOOP; END; $$",
    };
    ledger
        .execute_sql(drop_triggers)
        .expect("someone with database access drops the triggers");
    ledger
        .execute_sql(
            "UPDATE events SET payload = replace(payload, '\"1000\"', '\"10\"') WHERE version = 3",
        )
        .expect("and alters an event");
    let out = ledger.expect(&["audit"], 5);
    assert!(
        out.contains(MANUAL) && out.contains("version 3"),
        "the break is named: {out}"
    );
}

/// Every event names a stream the ledger holds, and no stream is removed or
/// renamed, even by someone with database access (docs/adr/0006-stream-check.md).
fn events_name_only_streams_the_ledger_holds(ledger: TestLedger) {
    base(&ledger);
    let row = |position: i64, stream: &str, version: i64| {
        format!(
            "({position}, '00000000-0000-7000-8000-{position:012}', NULL, '{stream}', {version}, \
             'material_imported', 1, '{{}}', '{{}}', '2026-02-10', '2026-02-10T00:00:00.000000Z', '{}')",
            "0".repeat(64)
        )
    };
    let insert = |table: &str, rows: &[String]| {
        format!(
            "INSERT INTO {table} (position, event_id, caller_id, stream, version, event_type, \
             schema_version, payload, metadata, business_date, recorded_at, hash) VALUES {}",
            rows.join(", ")
        )
    };
    let unknown = "C99999999999";
    let mut refused_statements = vec![
        insert("events", &[row(4, unknown, 1)]),
        // One row of the statement is enough to refuse it whole.
        insert("events", &[row(4, MANUAL, 4), row(5, unknown, 1)]),
        "DELETE FROM streams".to_owned(),
        format!("UPDATE streams SET stream = 'C99999999998' WHERE stream = '{MANUAL}'"),
    ];
    if ledger.backend == Backend::Postgres {
        // Straight into a partition: its own statement trigger checks it.
        refused_statements.push(insert("events_from_1", &[row(4, unknown, 1)]));
        refused_statements.push("TRUNCATE streams CASCADE".to_owned());
    }
    for sql in &refused_statements {
        let refused = ledger.execute_sql(sql);
        assert!(refused.is_err(), "{sql}: must be refused");
    }
    assert_eq!(event_count(&ledger), 3, "nothing was inserted");
    assert_eq!(balance(&ledger, &[]), "1000.000000");
    ledger.expect(&["audit"], 0);
}

/// A reader that stops early (`| head`) ends the output quietly, with the
/// status of a program stopped by SIGPIPE; output that cannot be written
/// for another reason is named, with status 1.
fn output_that_cannot_be_written_ends_the_command_cleanly(ledger: TestLedger) {
    use std::io::Read;
    use std::process::{Command, Stdio};

    base(&ledger);
    let imports: Vec<Value> = (0..2_000)
        .map(|n| import(&format!("p-{n}"), "2026-02-11", "1"))
        .collect();
    let file = ledger.file("many.jsonl", &imports);
    ledger.expect(&["import", file.to_str().expect("utf-8 path")], 0);
    let mut child = Command::new(bondledger_tests::binary())
        .args([
            "--database-url",
            &ledger.url,
            "history",
            MANUAL,
            "--format",
            "json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let mut first = [0_u8; 100];
    child
        .stdout
        .take()
        .expect("stdout")
        .read_exact(&mut first)
        .expect("the history begins");
    // The pipe's reader is gone: the rest (about a megabyte) cannot be written.
    let output = child.wait_with_output().expect("the binary ends");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(141), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(first.starts_with(b"["));

    if std::path::Path::new("/dev/full").exists() {
        let full = std::fs::File::create("/dev/full").expect("/dev/full opens");
        let output = Command::new(bondledger_tests::binary())
            .args(["--database-url", &ledger.url, "verify", MANUAL])
            .stdout(full)
            .output()
            .expect("the binary runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("cannot write the output"), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

on_both_backends! {
    a_refused_movement_leaves_its_whole_file_out;
    record_mode_keeps_history_with_its_finding;
    record_mode_still_refuses_what_cannot_be_applied;
    malformed_and_hostile_lines_change_nothing;
    a_malformed_line_after_a_refusal_is_what_is_reported;
    unknown_manuals_exit_4;
    the_same_id_with_other_content_is_refused;
    files_are_each_all_or_nothing;
    time_travel_by_version_date_and_recording;
    history_lists_every_event_with_balances;
    events_cannot_be_altered_and_tampering_is_found;
    events_name_only_streams_the_ledger_holds;
    output_that_cannot_be_written_ends_the_command_cleanly;
}
