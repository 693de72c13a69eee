//! Fuzz targets: each takes any bytes, must return without panicking,
//! hanging or holding memory beyond the input's limits, and checks what
//! must hold of whatever it accepts. The same functions run under
//! libFuzzer (`tools/fuzz/libfuzzer`, nightly Rust, coverage-guided) and
//! under [`mutate`]'s seeded runner (stable Rust, in the tests and by hand).
//!
//! - `movement_file`: a movement file as `bondledger import` streams it —
//!   lines, UTF-8, JSON, the movement format. A movement read is written
//!   back as a line and read again to the same movement.
//! - `stored_event`: an event's payload as the store hands it to the
//!   decoder, for every event type and schema version (older versions are
//!   upcast). A decoded event encodes to a payload that decodes to itself.
//! - `api_body`: a `POST /api/v1/movements` body; what it accepts is what
//!   the same movements as lines of a file give.

pub mod corpus;
pub mod mutate;

/// The byte that starts a `stored_event` input: `kind` at `schema_version`.
pub fn stored_event_selector(kind: MovementKind, schema_version: i32) -> u8 {
    let index = MovementKind::ALL
        .iter()
        .position(|k| *k == kind)
        .unwrap_or_default();
    ((schema_version.clamp(0, 3) as u8) << 6) | (index as u8 & 0x3f)
}

use std::io::Cursor;

use bondledger_domain::movement::MovementKind;
use bondledger_domain::{parse_line, RecordedMovement};
use bondledger_store::chain::canonical_json;
use bondledger_store::CanonicalJson;
use chrono::NaiveDate;
use serde_json::Value;

/// A fuzz target: any bytes in, a panic on anything that must not happen.
pub type Target = fn(&[u8]);

/// The targets by name, as the runner and libFuzzer know them.
pub const TARGETS: [(&str, Target); 3] = [
    ("movement_file", movement_file),
    ("stored_event", stored_event),
    ("api_body", api_body),
];

/// The target called `name`.
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

pub fn movement_file(data: &[u8]) {
    let lines = bondledger_ledger::read_lines(Ok(Cursor::new(data)), "fuzz.jsonl".into());
    for read in lines {
        let Ok(located) = read else {
            continue;
        };
        let line = Value::Object(located.envelope.to_line());
        let again = parse_line(line.clone()).unwrap_or_else(|error| {
            panic!("a movement read is written back readably: {error}: {line}")
        });
        assert_eq!(again, located.envelope, "read, written, read again: {line}");
    }
}

pub fn stored_event(data: &[u8]) {
    // The first byte picks the event type (its low six bits) and the schema
    // version (its top two); the rest is the payload as stored.
    let Some((&selector, payload)) = data.split_first() else {
        return;
    };
    let kinds = MovementKind::ALL;
    let kind = kinds[usize::from(selector & 0x3f) % kinds.len()];
    let schema_version = i32::from(selector >> 6);
    let Ok(text) = std::str::from_utf8(payload) else {
        return;
    };
    let Ok(payload) = serde_json::from_str::<Value>(text) else {
        return;
    };
    let date = NaiveDate::from_ymd_opt(2026, 3, 1).unwrap_or_default();
    let decoded = RecordedMovement::from_stored(
        kind.as_str(),
        schema_version,
        "C31012600042",
        date,
        Some("fuzz-1".into()),
        &payload,
    );
    // Read from its text (as replays read), the payload gives the same
    // movement, or the same refusal.
    let from_text = RecordedMovement::from_stored_text(
        kind.as_str(),
        schema_version,
        "C31012600042",
        date,
        Some("fuzz-1".into()),
        text,
    );
    assert_eq!(
        from_text.as_ref().map_err(ToString::to_string),
        decoded.as_ref().map_err(ToString::to_string),
        "read from text and from a JSON tree: {text}"
    );
    let Ok(decoded) = decoded else {
        return;
    };
    let encoded = decoded.payload();
    // What an append stores, written straight from the movement, is the
    // canonical text of that tree.
    let stored = CanonicalJson::of(&decoded.stored_payload())
        .unwrap_or_else(|error| panic!("a decoded event serializes: {error}: {encoded}"));
    assert_eq!(
        stored.as_str(),
        canonical_json(&encoded),
        "written straight and through a JSON tree"
    );
    let again = RecordedMovement::from_stored(
        kind.as_str(),
        bondledger_domain::SCHEMA_VERSION,
        "C31012600042",
        date,
        Some("fuzz-1".into()),
        &encoded,
    )
    .unwrap_or_else(|error| panic!("an encoded event decodes: {error}: {encoded}"));
    assert_eq!(again, decoded, "decoded, encoded, decoded again: {encoded}");
}

pub fn api_body(data: &[u8]) {
    let Ok(envelopes) = bondledger_api::parse_movements_body(data) else {
        return;
    };
    assert!(envelopes.len() <= bondledger_api::MAX_BATCH_MOVEMENTS);
    // The same movements as lines of a file read the same.
    let mut file = Vec::new();
    for envelope in &envelopes {
        file.extend_from_slice(Value::Object(envelope.to_line()).to_string().as_bytes());
        file.push(b'\n');
    }
    let read: Vec<_> = bondledger_ledger::read_lines(Ok(Cursor::new(file)), "body.jsonl".into())
        .map(|r| r.map(|located| located.envelope))
        .collect::<Result<_, _>>()
        .unwrap_or_else(|error| panic!("accepted movements read as a file: {error}"));
    assert_eq!(read, envelopes);
}
