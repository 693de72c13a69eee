//! The hash chain: how an event's `hash` is computed, exactly.
//!
//! ```text
//! hash(event)  = SHA-256( previous || encode(event) )
//! previous     = the 32 raw bytes of the previous event's hash in the same stream;
//!                32 zero bytes for version 1
//! encode(event)= text("bondledger.event.v1")
//!             || text(event_id, lowercase hyphenated: 8-4-4-4-12)
//!             || optional(caller_id)
//!             || text(stream)
//!             || i64be(version)
//!             || text(event_type)
//!             || i32be(schema_version)
//!             || text(payload as canonical JSON)
//!             || text(metadata as canonical JSON: {"actor","causation_id","correlation_id"})
//!             || text(business_date as YYYY-MM-DD)
//!             || text(recorded_at as YYYY-MM-DDTHH:MM:SS.ffffffZ, UTC, six fraction digits)
//! text(s)      = u64be(byte length of s) || UTF-8 bytes of s
//! optional(s)  = 0x00 when absent; 0x01 || text(s) when present
//! ```
//!
//! Canonical JSON: no whitespace; object members sorted by key (UTF-8 byte order);
//! strings escaped as `serde_json` escapes them (`"`, `\`, and control characters, the
//! rest literal UTF-8); numbers as `serde_json` prints them. The store keeps payload
//! and metadata as exactly this text, so the bytes hashed are the bytes stored.

use chrono::{DateTime, NaiveDate, Utc};
use sha2::{Digest, Sha256};

use crate::event::EventRow;

/// The domain separator that opens every encoded event; a new encoding gets a new tag.
const ENCODING_TAG: &str = "bondledger.event.v1";

/// The `previous` of a stream's first event.
pub(crate) const GENESIS: [u8; 32] = [0; 32];

/// The text form of `recorded_at` in the hash (and in SQLite's column).
pub(crate) fn format_recorded_at(recorded_at: &DateTime<Utc>) -> String {
    recorded_at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// The text form of `business_date` in the hash (and in SQLite's column).
pub(crate) fn format_business_date(business_date: &NaiveDate) -> String {
    business_date.format("%Y-%m-%d").to_string()
}

/// `value` as canonical JSON text (see the module documentation).
pub fn canonical_json(value: &serde_json::Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match value {
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {
            out.push_str(&value.to_string());
        }
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(members) => {
            // Sorted here rather than trusting the map's order: `preserve_order` may be
            // switched on for serde_json anywhere in the dependency graph.
            let mut sorted: Vec<(&String, &Value)> = members.iter().collect();
            sorted.sort_by(|left, right| left.0.as_bytes().cmp(right.0.as_bytes()));
            out.push('{');
            for (index, (key, member)) in sorted.into_iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(member, out);
            }
            out.push('}');
        }
    }
}

/// The hash of `event` chained to `previous` (see the module documentation).
pub(crate) fn event_hash(previous: &[u8; 32], event: &EventRow) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(previous);
    hasher.update(encode_event(event));
    hasher.finalize().into()
}

fn encode_event(event: &EventRow) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + event.payload_json.len());
    push_text(&mut out, ENCODING_TAG);
    push_text(&mut out, &event.event_id.as_hyphenated().to_string());
    match &event.caller_id {
        None => out.push(0),
        Some(caller_id) => {
            out.push(1);
            push_text(&mut out, caller_id);
        }
    }
    push_text(&mut out, &event.stream);
    out.extend_from_slice(&event.version.to_be_bytes());
    push_text(&mut out, &event.event_type);
    out.extend_from_slice(&event.schema_version.to_be_bytes());
    push_text(&mut out, &event.payload_json);
    push_text(&mut out, &event.metadata_json);
    push_text(&mut out, &format_business_date(&event.business_date));
    push_text(&mut out, &format_recorded_at(&event.recorded_at));
    out
}

fn push_text(out: &mut Vec<u8>, text: &str) {
    // A usize always fits in a u64 on the platforms Rust supports.
    out.extend_from_slice(&(text.len() as u64).to_be_bytes());
    out.extend_from_slice(text.as_bytes());
}

/// Parses a stored lowercase hex hash back into its 32 bytes.
pub(crate) fn decode_hash(hash_hex: &str) -> Option<[u8; 32]> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(hash_hex, &mut bytes).ok()?;
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_json_sorts_keys_at_every_depth_and_drops_whitespace() {
        let value = json!({"b": 1, "a": {"d": [true, null], "c": "x\"y"}});
        assert_eq!(
            canonical_json(&value),
            r#"{"a":{"c":"x\"y","d":[true,null]},"b":1}"#
        );
    }

    #[test]
    fn canonical_json_is_stable_through_a_round_trip() {
        let value = json!({"quantity": "12.500000", "ratio": 0.1, "big": 18446744073709551615u64, "名": "料件"});
        let text = canonical_json(&value);
        let reparsed: serde_json::Value =
            serde_json::from_str(&text).expect("canonical JSON parses");
        assert_eq!(canonical_json(&reparsed), text);
    }

    fn sample_row() -> EventRow {
        EventRow {
            position: 1,
            event_id: uuid::Uuid::nil(),
            caller_id: Some("line-1".to_owned()),
            stream: "manual-E1".to_owned(),
            version: 1,
            event_type: "Imported".to_owned(),
            schema_version: 1,
            payload_json: r#"{"qty":"1"}"#.to_owned(),
            metadata_json: r#"{"actor":null,"causation_id":null,"correlation_id":null}"#.to_owned(),
            business_date: NaiveDate::from_ymd_opt(2024, 3, 1).expect("valid date"),
            recorded_at: DateTime::from_timestamp_micros(1_700_000_000_123_456)
                .expect("valid time"),
            hash: String::new(),
        }
    }

    #[test]
    fn every_field_changes_the_hash() {
        let base = sample_row();
        let base_hash = event_hash(&GENESIS, &base);
        let variants = vec![
            EventRow {
                caller_id: None,
                ..base.clone()
            },
            EventRow {
                stream: "manual-E2".to_owned(),
                ..base.clone()
            },
            EventRow {
                version: 2,
                ..base.clone()
            },
            EventRow {
                event_type: "Exported".to_owned(),
                ..base.clone()
            },
            EventRow {
                schema_version: 2,
                ..base.clone()
            },
            EventRow {
                payload_json: r#"{"qty":"2"}"#.to_owned(),
                ..base.clone()
            },
            EventRow {
                metadata_json: "{}".to_owned(),
                ..base.clone()
            },
            EventRow {
                business_date: NaiveDate::from_ymd_opt(2024, 3, 2).expect("valid date"),
                ..base.clone()
            },
            EventRow {
                recorded_at: DateTime::from_timestamp_micros(1_700_000_000_123_457)
                    .expect("valid time"),
                ..base.clone()
            },
            EventRow {
                event_id: uuid::Uuid::max(),
                ..base.clone()
            },
        ];
        for variant in &variants {
            assert_ne!(event_hash(&GENESIS, variant), base_hash, "{variant:?}");
        }
        assert_ne!(event_hash(&[1; 32], &base), base_hash);
        // Position is not part of the chain: a stream's chain does not depend on other streams.
        assert_eq!(
            event_hash(
                &GENESIS,
                &EventRow {
                    position: 9,
                    ..base
                }
            ),
            base_hash
        );
    }

    #[test]
    fn recorded_at_keeps_six_fraction_digits() {
        let recorded_at =
            DateTime::from_timestamp_micros(1_700_000_000_000_000).expect("valid time");
        assert_eq!(
            format_recorded_at(&recorded_at),
            "2023-11-14T22:13:20.000000Z"
        );
    }

    #[test]
    fn stored_hashes_decode_and_bad_ones_do_not() {
        assert_eq!(decode_hash(&hex::encode([7u8; 32])), Some([7u8; 32]));
        assert_eq!(decode_hash("zz"), None);
        assert_eq!(decode_hash(&hex::encode([7u8; 31])), None);
    }
}
