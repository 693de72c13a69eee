//! Evidence packages through the real binary: export, the offline check, and restore
//! into an empty ledger of the other backend (SQLite → PostgreSQL, PostgreSQL → SQLite)
//! with every answer the same; tampered packages named and refused; a ledger that is
//! not empty left as it was.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use bondledger_tests::{binary, on_both_backends, samples_dir, Backend, TestLedger};
use serde_json::Value;

/// The samples, each imported as its first line says (strict or record).
fn import_samples(ledger: &TestLedger) {
    for name in [
        "plastic-bags.jsonl",
        "toys-consigned.jsonl",
        "furniture-account-book.jsonl",
        "garments-record.jsonl",
    ] {
        let path = samples_dir().join(name);
        let text = std::fs::read_to_string(&path).expect("a sample");
        let path = path.to_str().expect("a UTF-8 path");
        if text.starts_with("# record") {
            ledger.expect(&["import", "--record", path], 0);
        } else {
            ledger.expect(&["import", path], 0);
        }
    }
}

fn path_text(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

/// A fresh ledger on the other backend, or `None` where PostgreSQL is out of reach.
fn other_backend(ledger: &TestLedger) -> Option<TestLedger> {
    TestLedger::new(match ledger.backend {
        Backend::Sqlite => Backend::Postgres,
        Backend::Postgres => Backend::Sqlite,
    })
}

/// Runs the binary with no database at all: `verify-export` must not need one.
fn verify_export(package: &Path) -> (i32, String) {
    let output = std::process::Command::new(binary())
        .args(["verify-export", path_text(package)])
        .arg("--database-url")
        .arg("postgres://nobody@127.0.0.1:1/none")
        .output()
        .expect("the binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    (output.status.code().unwrap_or(-1), stdout)
}

fn manuals(ledger: &TestLedger) -> BTreeSet<String> {
    ledger
        .json(&["timeline"])
        .as_array()
        .expect("a list of events")
        .iter()
        .filter_map(|event| event["manual"].as_str().map(str::to_owned))
        .collect()
}

/// Every answer the ledger gives about `manual`, as JSON.
fn answers(ledger: &TestLedger, manual: &str) -> Vec<Value> {
    vec![
        ledger.json(&["verify", manual]),
        ledger.json(&["balance", manual]),
        ledger.json(&["history", manual]),
        ledger.json(&["timeline", "--manual", manual]),
        ledger.json(&["balance", manual, "--as-of-position", "3"]),
    ]
}

fn event_count(ledger: &TestLedger) -> i64 {
    ledger.count("SELECT COUNT(*) FROM events")
}

fn export(ledger: &TestLedger, name: &str, extra: &[&str]) -> PathBuf {
    let package = ledger.dir.path().join(name);
    let mut args = vec!["export"];
    args.extend(extra);
    args.push(path_text(&package));
    ledger.expect(&args, 0);
    package
}

fn a_restored_ledger_answers_as_the_original(ledger: TestLedger) {
    import_samples(&ledger);
    let package = export(&ledger, "ledger.evidence.jsonl", &[]);
    let (status, stdout) = verify_export(&package);
    assert_eq!(status, 0, "{stdout}");
    assert!(stdout.starts_with("intact:"), "{stdout}");

    let Some(restored) = other_backend(&ledger) else {
        return;
    };
    restored.expect(&["restore", path_text(&package)], 0);
    restored.expect(&["audit"], 0);
    assert_eq!(event_count(&restored), event_count(&ledger));
    let names = manuals(&ledger);
    assert!(
        names.len() >= 5,
        "the samples hold several manuals: {names:?}"
    );
    assert_eq!(manuals(&restored), names);
    for manual in &names {
        assert_eq!(
            answers(&restored, manual),
            answers(&ledger, manual),
            "{manual}"
        );
    }
    assert_eq!(
        restored.json(&["timeline"]),
        ledger.json(&["timeline"]),
        "the same events at the same positions"
    );

    // The restored ledger exports the same package, but for the time of the export.
    let again = export(&restored, "again.evidence.jsonl", &[]);
    let lines = |path: &Path| -> Vec<String> {
        let text = std::fs::read_to_string(path).expect("a package");
        text.lines().map(str::to_owned).collect()
    };
    let (first, second) = (lines(&package), lines(&again));
    assert_eq!(first.len(), second.len());
    assert_eq!(first[1..first.len() - 1], second[1..second.len() - 1]);
    let streams = |line: &str| {
        let manifest: Value = serde_json::from_str(line).expect("a manifest line");
        manifest["manifest"]["streams"].clone()
    };
    assert_eq!(
        streams(&first[first.len() - 1]),
        streams(&second[second.len() - 1]),
        "the same chain heads"
    );
}

/// The package's lines, edited by `edit`, written beside it as `name`.
fn tampered(package: &Path, name: &str, edit: impl FnOnce(&mut Vec<String>)) -> PathBuf {
    let text = std::fs::read_to_string(package).expect("a package");
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    edit(&mut lines);
    let path = package.with_file_name(name);
    let mut out = lines.join("\n");
    out.push('\n');
    std::fs::write(&path, out).expect("a tampered package is written");
    path
}

/// The line (0-based) of the first event that moves a quantity, and its stream and version.
fn a_quantity_line(lines: &[String]) -> (usize, String, i64) {
    lines
        .iter()
        .enumerate()
        .find_map(|(index, line)| {
            let event: Value = serde_json::from_str(line).ok()?;
            event["payload"]["movement"]["qty"].as_str()?;
            Some((
                index,
                event["stream"].as_str()?.to_owned(),
                event["version"].as_i64()?,
            ))
        })
        .expect("an event with a quantity")
}

fn tampered_packages_are_named_and_refused(ledger: TestLedger) {
    import_samples(&ledger);
    let package = export(&ledger, "ledger.evidence.jsonl", &[]);
    let text = std::fs::read_to_string(&package).expect("a package");
    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let (index, stream, version) = a_quantity_line(&lines);

    let changed_quantity = tampered(&package, "quantity.jsonl", |lines| {
        let mut event: Value = serde_json::from_str(&lines[index]).expect("an event");
        event["payload"]["movement"]["qty"] = Value::String("999999".to_owned());
        lines[index] = event.to_string();
    });
    let deleted_line = tampered(&package, "deleted.jsonl", |lines| {
        lines.remove(index);
    });
    let edited_manifest = tampered(&package, "manifest.jsonl", |lines| {
        let last = lines.len() - 1;
        let mut manifest: Value = serde_json::from_str(&lines[last]).expect("a manifest");
        manifest["manifest"]["streams"][0]["hash"] = Value::String("0".repeat(64));
        lines[last] = manifest.to_string();
    });
    let truncated = package.with_file_name("truncated.jsonl");
    std::fs::write(&truncated, &text.as_bytes()[..text.len() * 2 / 3]).expect("written");

    let expected_break = format!("stream {stream} version {version}:");
    for (path, must_name) in [
        (&changed_quantity, Some(expected_break.as_str())),
        (&deleted_line, Some(expected_break.as_str())),
        (&edited_manifest, Some("the stream's head hash differs")),
        (&truncated, Some("cut short")),
    ] {
        let (status, stdout) = verify_export(path);
        assert_eq!(status, 5, "{}: {stdout}", path.display());
        assert!(stdout.starts_with("break:"), "{stdout}");
        if let Some(must_name) = must_name {
            assert!(stdout.contains(must_name), "{}: {stdout}", path.display());
        }
        if let Some(target) = other_backend(&ledger) {
            let output = target.run(&["restore", path_text(path)]);
            assert_eq!(output.status.code(), Some(5), "{}", path.display());
            assert_eq!(
                event_count(&target),
                0,
                "nothing restored from {}",
                path.display()
            );
        }
    }
    let (status, _) = verify_export(&package);
    assert_eq!(status, 0, "the original is untouched");
}

fn a_ledger_that_is_not_empty_is_left_as_it_was(ledger: TestLedger) {
    import_samples(&ledger);
    let package = export(&ledger, "ledger.evidence.jsonl", &[]);
    let before = event_count(&ledger);
    let manual = manuals(&ledger).into_iter().next().expect("a manual");
    let answers_before = answers(&ledger, &manual);
    let output = ledger.run(&["restore", path_text(&package)]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not empty"), "{stderr}");
    assert_eq!(event_count(&ledger), before);
    assert_eq!(answers(&ledger, &manual), answers_before);
    ledger.expect(&["audit"], 0);
}

fn a_manual_package_holds_that_manual_only(ledger: TestLedger) {
    import_samples(&ledger);
    let names = manuals(&ledger);
    let manual = names.iter().next().expect("a manual").clone();
    let package = export(&ledger, "manual.evidence.jsonl", &["--manual", &manual]);
    let (status, stdout) = verify_export(&package);
    assert_eq!(status, 0, "{stdout}");
    assert!(stdout.contains(&format!("manual {manual}")), "{stdout}");
    let text = std::fs::read_to_string(&package).expect("a package");
    let streams: BTreeSet<String> = text
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter_map(|event| event["stream"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(streams, BTreeSet::from([manual.clone()]));

    let Some(restored) = other_backend(&ledger) else {
        return;
    };
    restored.expect(&["restore", path_text(&package)], 0);
    restored.expect(&["audit"], 0);
    assert_eq!(manuals(&restored), BTreeSet::from([manual.clone()]));
    let history = |l: &TestLedger| {
        let mut events = l.json(&["history", &manual]);
        // Positions are the restored ledger's own: a manual's package is a partial ledger.
        for event in events.as_array_mut().expect("events") {
            event["position"] = Value::Null;
        }
        events
    };
    assert_eq!(history(&restored), history(&ledger));
    assert_eq!(
        restored.json(&["balance", &manual]),
        ledger.json(&["balance", &manual])
    );

    // A manual's package does not hold another manual's events.
    let other = names.iter().nth(1).expect("a second manual");
    let mut edited: Vec<String> = text.lines().map(str::to_owned).collect();
    let mut event: Value = serde_json::from_str(&edited[1]).expect("an event");
    event["stream"] = Value::String(other.clone());
    edited[1] = event.to_string();
    let path = tampered(&package, "other-stream.jsonl", |lines| *lines = edited);
    let (status, stdout) = verify_export(&path);
    assert_eq!(status, 5, "{stdout}");
    assert!(stdout.contains(&format!("stream {other} in a package of manual {manual}")));
}

fn exports_refuse_what_they_cannot_do(ledger: TestLedger) {
    import_samples(&ledger);
    let package = export(&ledger, "ledger.evidence.jsonl", &[]);
    let before = std::fs::read(&package).expect("a package");
    // An existing file is never overwritten.
    ledger.expect(&["export", path_text(&package)], 2);
    assert_eq!(std::fs::read(&package).expect("a package"), before);
    let missing = ledger.dir.path().join("missing.jsonl");
    ledger.expect(
        &["export", "--manual", "C99999999999", path_text(&missing)],
        4,
    );
    assert!(!missing.exists());
    let (status, _) = verify_export(&missing);
    assert_eq!(status, 2, "an unreadable package is malformed input");
    ledger.expect(&["restore", path_text(&missing)], 2);
}

on_both_backends! {
    a_restored_ledger_answers_as_the_original;
    tampered_packages_are_named_and_refused;
    a_ledger_that_is_not_empty_is_left_as_it_was;
    a_manual_package_holds_that_manual_only;
    exports_refuse_what_they_cannot_do;
}
