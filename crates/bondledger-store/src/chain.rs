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

use std::fmt::Write;

use chrono::{DateTime, Datelike, NaiveDate, Timelike, Utc};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::event::EventRow;

/// The domain separator that opens every encoded event; a new encoding gets a new tag.
const ENCODING_TAG: &str = "bondledger.event.v1";

/// The `previous` of a stream's first event.
pub(crate) const GENESIS: [u8; 32] = [0; 32];

/// The text form of `recorded_at` in the hash (and in SQLite's column):
/// `%Y-%m-%dT%H:%M:%S%.6fZ`, written out by hand because it is formatted for
/// every event appended or verified.
pub(crate) fn format_recorded_at(recorded_at: &DateTime<Utc>) -> String {
    let (date, time) = (recorded_at.date_naive(), recorded_at.time());
    // A leap second is kept as a nanosecond count past 10^9; strftime shows it as :60.
    let nanosecond = time.nanosecond();
    let (second, nanosecond) = if nanosecond >= 1_000_000_000 {
        (time.second() + 1, nanosecond - 1_000_000_000)
    } else {
        (time.second(), nanosecond)
    };
    let mut text = String::with_capacity(27);
    push_date(&mut text, &date);
    text.push('T');
    push_digits(&mut text, time.hour(), 2);
    text.push(':');
    push_digits(&mut text, time.minute(), 2);
    text.push(':');
    push_digits(&mut text, second, 2);
    text.push('.');
    push_digits(&mut text, nanosecond / 1_000, 6);
    text.push('Z');
    text
}

/// The text form of `business_date` in the hash (and in SQLite's column): `%Y-%m-%d`.
pub fn format_business_date(business_date: &NaiveDate) -> String {
    let mut text = String::with_capacity(10);
    push_date(&mut text, business_date);
    text
}

fn push_date(text: &mut String, date: &NaiveDate) {
    let year = date.year();
    // strftime's %Y: four digits at least, a sign beyond 9999 and before year 0.
    match u32::try_from(year) {
        Ok(year) if year <= 9999 => push_digits(text, year, 4),
        _ => {
            let _ = write!(text, "{year:+05}");
        }
    }
    text.push('-');
    push_digits(text, date.month(), 2);
    text.push('-');
    push_digits(text, date.day(), 2);
}

/// The last `width` decimal digits of `value`, zeros in front (as `{:0width$}`
/// for a value that fits): dates and times are formatted for every event
/// appended or verified, and the formatting machinery cost more than the rest.
fn push_digits(text: &mut String, value: u32, width: u32) {
    for place in (0..width).rev() {
        let digit = (value / 10_u32.pow(place)) % 10;
        text.push(char::from(b'0' + digit as u8));
    }
}

/// `value` as canonical JSON text (see the module documentation).
pub fn canonical_json(value: &serde_json::Value) -> String {
    let mut out = Vec::with_capacity(256);
    write_canonical(value, &mut out);
    // serde_json writes UTF-8 only, and so does everything pushed here.
    String::from_utf8(out).unwrap_or_else(|_| unreachable!("canonical JSON is UTF-8"))
}

fn write_canonical(value: &serde_json::Value, out: &mut Vec<u8>) {
    use serde_json::Value;
    match value {
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {
            write_scalar(value, out);
        }
        Value::Array(items) => {
            out.push(b'[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        Value::Object(members) => {
            // Sorted here rather than trusting the map's order: `preserve_order` may be
            // switched on for serde_json anywhere in the dependency graph.
            if members
                .keys()
                .is_sorted_by(|left, right| left.as_bytes() <= right.as_bytes())
            {
                write_members(members.iter(), out);
            } else {
                let mut sorted: Vec<(&String, &Value)> = members.iter().collect();
                sorted.sort_by(|left, right| left.0.as_bytes().cmp(right.0.as_bytes()));
                write_members(sorted.into_iter(), out);
            }
        }
    }
}

fn write_members<'a>(
    members: impl Iterator<Item = (&'a String, &'a serde_json::Value)>,
    out: &mut Vec<u8>,
) {
    out.push(b'{');
    for (index, (key, member)) in members.enumerate() {
        if index > 0 {
            out.push(b',');
        }
        write_scalar(key, out);
        out.push(b':');
        write_canonical(member, out);
    }
    out.push(b'}');
}

/// A string, number, boolean or null exactly as `serde_json` prints it.
fn write_scalar<T: serde::Serialize + ?Sized>(scalar: &T, out: &mut Vec<u8>) {
    // Writing a scalar into a Vec cannot fail.
    serde_json::to_writer(out, scalar)
        .unwrap_or_else(|error| unreachable!("a JSON scalar always serializes: {error}"));
}

/// The hash of `event` chained to `previous` (see the module documentation).
/// The encoding goes into the hasher piece by piece, never whole in memory.
pub(crate) fn event_hash(previous: &[u8; 32], event: &EventRow) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(previous);
    push_text(&mut hasher, ENCODING_TAG);
    let mut event_id = Uuid::encode_buffer();
    push_text(
        &mut hasher,
        event.event_id.as_hyphenated().encode_lower(&mut event_id),
    );
    match &event.caller_id {
        None => hasher.update([0]),
        Some(caller_id) => {
            hasher.update([1]);
            push_text(&mut hasher, caller_id);
        }
    }
    push_text(&mut hasher, &event.stream);
    hasher.update(event.version.to_be_bytes());
    push_text(&mut hasher, &event.event_type);
    hasher.update(event.schema_version.to_be_bytes());
    push_text(&mut hasher, &event.payload_json);
    push_text(&mut hasher, &event.metadata_json);
    push_text(&mut hasher, &format_business_date(&event.business_date));
    push_text(&mut hasher, &format_recorded_at(&event.recorded_at));
    hasher.finalize().into()
}

/// `hash` as the store keeps it: 64 lowercase hex digits.
pub(crate) fn hash_text(hash: &[u8; 32]) -> String {
    let mut text = [0_u8; 64];
    // 64 bytes take 32 exactly.
    hex::encode_to_slice(hash, &mut text)
        .unwrap_or_else(|error| unreachable!("32 bytes are 64 hex digits: {error}"));
    // Hex digits are ASCII.
    String::from_utf8_lossy(&text).into_owned()
}

fn push_text(hasher: &mut Sha256, text: &str) {
    // A usize always fits in a u64 on the platforms Rust supports.
    hasher.update((text.len() as u64).to_be_bytes());
    hasher.update(text.as_bytes());
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
    fn dates_and_times_read_as_strftime_writes_them() {
        let days = [
            (2026, 1, 5),
            (999, 12, 31),
            (0, 1, 1),
            (9999, 12, 31),
            (10_000, 2, 29),
            (-4, 3, 1),
        ];
        for (year, month, day) in days {
            let date = NaiveDate::from_ymd_opt(year, month, day).expect("a valid date");
            assert_eq!(
                format_business_date(&date),
                date.format("%Y-%m-%d").to_string()
            );
        }
        let moments = [
            "2026-03-04T05:06:07.000008Z",
            "2026-12-31T23:59:59.999999Z",
            "2016-12-31T23:59:60.500000Z",
        ];
        for moment in moments {
            let recorded_at = DateTime::parse_from_rfc3339(moment)
                .expect("a valid moment")
                .with_timezone(&Utc);
            assert_eq!(
                format_recorded_at(&recorded_at),
                recorded_at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
            );
            assert_eq!(format_recorded_at(&recorded_at), moment);
        }
    }

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
    fn the_hash_is_the_documented_encoding() {
        // SHA-256 over the bytes the module documentation lists, worked out
        // apart from this code (Python's hashlib and struct).
        assert_eq!(
            hash_text(&event_hash(&GENESIS, &sample_row())),
            "4f819b5b7d852fc82b5ad724fc8180027a604795e91a77b0c839b12e0b5bb393"
        );
        assert_eq!(hash_text(&[0xab; 32]), "ab".repeat(32));
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
