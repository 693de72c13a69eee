//! The stored form of a movement: what goes into an event's payload and how
//! it is read back, by schema version.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::de::{DeserializeSeed, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::movement::{
    parse_line, within_limits_by_length, Envelope, Malformed, ManualNo, Movement, MovementKind,
};
use crate::rules::RuleId;

/// The schema version written with every event today. A payload of an older
/// version is upcast when read, never rewritten.
pub const SCHEMA_VERSION: i32 = 1;

/// A finding attached to a movement when history was imported in record mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachedFinding {
    pub rule: RuleId,
    pub message: String,
}

/// The parts of a stored payload by key, each still JSON text (`null`
/// included, as a JSON tree would hold it).
type PayloadText<'a> = BTreeMap<&'a str, &'a RawValue>;

/// A stored payload's members, read in one pass
/// ([`RecordedMovement::from_payload_in_one_pass`]).
struct PayloadParts<'a> {
    movement: Option<Movement>,
    findings: Option<Vec<AttachedFinding>>,
    reverses: Option<&'a RawValue>,
}

impl<'a> PayloadParts<'a> {
    /// The members of the JSON object `deserializer` reads, the movement
    /// decoded as a `kind`; an error for any other member, or one met twice.
    fn read(
        kind: MovementKind,
        deserializer: &mut serde_json::Deserializer<serde_json::de::StrRead<'a>>,
    ) -> Result<Self, serde_json::Error> {
        deserializer.deserialize_map(PartsVisitor(kind))
    }
}

struct PartsVisitor(MovementKind);

/// The movement member, decoded as it is read.
struct MovementSeed(MovementKind);

impl<'de> DeserializeSeed<'de> for MovementSeed {
    type Value = Movement;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Movement, D::Error> {
        Movement::deserialize_stored_fields(self.0, deserializer)
    }
}

impl<'de> Visitor<'de> for PartsVisitor {
    type Value = PayloadParts<'de>;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("a stored payload")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PayloadParts<'de>, A::Error> {
        let mut parts = PayloadParts {
            movement: None,
            findings: None,
            reverses: None,
        };
        while let Some(key) = map.next_key::<&'de str>()? {
            match key {
                "movement" if parts.movement.is_none() => {
                    parts.movement = Some(map.next_value_seed(MovementSeed(self.0))?);
                }
                "findings" if parts.findings.is_none() => parts.findings = Some(map.next_value()?),
                "reverses" if parts.reverses.is_none() => parts.reverses = Some(map.next_value()?),
                _ => return Err(serde::de::Error::custom("not a payload of today's shape")),
            }
        }
        Ok(parts)
    }
}

/// A movement's event payload (see [`RecordedMovement::stored_payload`]).
#[derive(Debug, Clone, Copy)]
pub struct StoredPayload<'a>(&'a RecordedMovement);

impl Serialize for StoredPayload<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;

        /// A movement's own fields.
        struct Fields<'a>(&'a Movement);
        impl Serialize for Fields<'_> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                self.0.serialize_fields(serializer)
            }
        }

        #[derive(Serialize)]
        struct Finding<'a> {
            rule: &'static str,
            message: &'a str,
        }

        let RecordedMovement {
            envelope,
            findings,
            reverses,
        } = self.0;
        let members = 1 + usize::from(!findings.is_empty()) + usize::from(reverses.is_some());
        let mut payload = serializer.serialize_struct("Payload", members)?;
        payload.serialize_field("movement", &Fields(&envelope.movement))?;
        if !findings.is_empty() {
            let findings: Vec<Finding<'_>> = findings
                .iter()
                .map(|finding| Finding {
                    rule: finding.rule.as_str(),
                    message: &finding.message,
                })
                .collect();
            payload.serialize_field("findings", &findings)?;
        }
        if let Some(reversed) = reverses {
            payload.serialize_field("reverses", &reversed.to_line())?;
        }
        payload.end()
    }
}

/// A movement as the ledger keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedMovement {
    pub envelope: Envelope,
    /// Rules this movement broke, kept because it was history (record mode).
    pub findings: Vec<AttachedFinding>,
    /// For a reversal: the movement it takes out, copied when it was decided,
    /// so a replay never has to look elsewhere.
    pub reverses: Option<Box<Envelope>>,
}

impl RecordedMovement {
    pub fn new(envelope: Envelope) -> Self {
        RecordedMovement {
            envelope,
            findings: Vec::new(),
            reverses: None,
        }
    }

    pub fn kind(&self) -> MovementKind {
        self.envelope.movement.kind()
    }

    /// The event payload: `{"movement": {...}, "findings": [...], "reverses": {...}}`.
    pub fn payload(&self) -> Value {
        serde_json::to_value(self.stored_payload())
            .unwrap_or_else(|error| unreachable!("a payload always serializes: {error}"))
    }

    /// The event payload to serialize straight into text: the members of
    /// [`RecordedMovement::payload`], without making a JSON tree of them.
    pub fn stored_payload(&self) -> StoredPayload<'_> {
        StoredPayload(self)
    }

    /// [`RecordedMovement::from_stored_text`] in one pass over a payload of
    /// today's schema that reads as it should (its members `movement`,
    /// `findings` and `reverses`, each at most once, the movement decoded as
    /// it is met); `None` for anything else, which is then read the ways
    /// that name what is at fault.
    fn from_payload_in_one_pass(
        kind_name: &str,
        schema_version: i32,
        manual: &str,
        date: NaiveDate,
        id: &Option<String>,
        payload: &str,
    ) -> Option<Self> {
        if schema_version != SCHEMA_VERSION || !within_limits_by_length(payload) {
            return None;
        }
        let kind = MovementKind::from_name(kind_name)?;
        let mut deserializer = serde_json::Deserializer::from_str(payload);
        let parts = PayloadParts::read(kind, &mut deserializer).ok()?;
        deserializer.end().ok()?;
        Self::from_read_members(
            manual,
            date,
            id,
            parts.movement?,
            parts.findings.unwrap_or_default(),
            parts.reverses,
        )
    }

    /// The recorded movement a quick read of a payload's members gives;
    /// `None` where the manual number, or the line a reversal copied, does
    /// not read as it should.
    fn from_read_members(
        manual: &str,
        date: NaiveDate,
        id: &Option<String>,
        movement: Movement,
        findings: Vec<AttachedFinding>,
        reverses: Option<&RawValue>,
    ) -> Option<Self> {
        let reverses = match reverses {
            None => None,
            Some(raw) => Some(Box::new(
                parse_line(serde_json::from_str(raw.get()).ok()?).ok()?,
            )),
        };
        Some(RecordedMovement {
            envelope: Envelope {
                manual: ManualNo::try_from(manual.to_owned()).ok()?,
                date,
                id: id.clone(),
                movement,
            },
            findings,
            reverses,
        })
    }

    /// As [`RecordedMovement::from_stored`], from the payload's JSON text:
    /// decoded straight into the movement's type, without building a JSON
    /// tree first, when it reads as it should; anything else is read the
    /// long way, so that what is at fault is named alike.
    pub fn from_stored_text(
        kind_name: &str,
        schema_version: i32,
        manual: &str,
        date: NaiveDate,
        id: Option<String>,
        payload: &str,
    ) -> Result<Self, Malformed> {
        if let Some(recorded) =
            Self::from_payload_in_one_pass(kind_name, schema_version, manual, date, &id, payload)
        {
            return Ok(recorded);
        }
        let quick = || -> Option<Self> {
            if schema_version != SCHEMA_VERSION {
                return None;
            }
            let parts: PayloadText<'_> = serde_json::from_str(payload).ok()?;
            let kind = MovementKind::from_name(kind_name)?;
            let movement = Movement::from_stored_text(kind, parts.get("movement")?.get()).ok()?;
            let findings = match parts.get("findings") {
                None => Vec::new(),
                Some(raw) => serde_json::from_str(raw.get()).ok()?,
            };
            Self::from_read_members(
                manual,
                date,
                &id,
                movement,
                findings,
                parts.get("reverses").copied(),
            )
        };
        if let Some(recorded) = quick() {
            return Ok(recorded);
        }
        let value: Value = serde_json::from_str(payload).map_err(|error| Malformed {
            field: None,
            message: format!("the payload is not JSON: {error}"),
        })?;
        Self::from_stored(kind_name, schema_version, manual, date, id, &value)
    }

    /// Reads an event back. `kind_name`, `manual`, `date` and `id` are the
    /// store's columns; the payload carries the rest.
    pub fn from_stored(
        kind_name: &str,
        schema_version: i32,
        manual: &str,
        date: NaiveDate,
        id: Option<String>,
        payload: &Value,
    ) -> Result<Self, Malformed> {
        let malformed = |message: String| Malformed {
            field: None,
            message,
        };
        if schema_version != SCHEMA_VERSION {
            return Err(malformed(format!(
                "unknown schema version {schema_version} of {kind_name}"
            )));
        }
        let kind = MovementKind::from_name(kind_name)
            .ok_or_else(|| malformed(format!("unknown event type {kind_name:?}")))?;
        let movement = match payload.get("movement") {
            Some(fields @ Value::Object(_)) => Movement::from_stored_fields(kind, fields)?,
            _ => return Err(malformed("payload has no movement".into())),
        };
        let manual = ManualNo::try_from(manual.to_owned()).map_err(malformed)?;
        let findings = match payload.get("findings") {
            None => Vec::new(),
            Some(value) => Vec::<AttachedFinding>::deserialize(value)
                .map_err(|e| malformed(format!("findings: {e}")))?,
        };
        let reverses = match payload.get("reverses") {
            None => None,
            Some(line) => Some(Box::new(parse_line(line.clone())?)),
        };
        Ok(RecordedMovement {
            envelope: Envelope {
                manual,
                date,
                id,
                movement,
            },
            findings,
            reverses,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A payload read from its text and from its JSON tree (none where the
    /// text is no JSON), each as text or the refusal's message.
    fn read_both_text(
        text: &str,
    ) -> (
        Result<RecordedMovement, String>,
        Result<RecordedMovement, String>,
    ) {
        let date = NaiveDate::from_ymd_opt(2026, 3, 1).expect("a date");
        let from_tree = serde_json::from_str::<Value>(text)
            .map_err(|e| e.to_string())
            .and_then(|tree| {
                RecordedMovement::from_stored(
                    "material_imported",
                    SCHEMA_VERSION,
                    "C22012600001",
                    date,
                    Some("id-1".into()),
                    &tree,
                )
                .map_err(|e| e.to_string())
            });
        let from_text = RecordedMovement::from_stored_text(
            "material_imported",
            SCHEMA_VERSION,
            "C22012600001",
            date,
            Some("id-1".into()),
            text,
        );
        (from_text.map_err(|e| e.to_string()), from_tree)
    }

    fn read_both(
        payload: &Value,
    ) -> (
        Result<RecordedMovement, String>,
        Result<RecordedMovement, String>,
    ) {
        read_both_text(&payload.to_string())
    }

    /// Texts a JSON tree cannot tell apart from others, each read from its
    /// text as from its tree: the one-pass read takes none of them unless it
    /// reads them as the tree does.
    #[test]
    fn a_payload_text_of_any_shape_reads_as_its_tree() {
        let movement =
            r#"{"material":1,"qty":"24000","declaration":"220120261000010001","mode":"0615"}"#;
        let other = r#"{"material":2,"qty":"5","declaration":"220120261000010002","mode":"0615"}"#;
        let texts = [
            format!(r#"{{"movement":{movement}}}"#),
            format!(r#"{{"movement":{movement},"findings":[]}}"#),
            format!(r#" {{ "findings" : [ ] , "movement" : {movement} }} "#),
            // The tree keeps the last of a member met twice.
            format!(r#"{{"movement":{movement},"movement":{other}}}"#),
            format!(r#"{{"movement":{movement},"kept":true}}"#),
            format!(r#"{{"movem\u0065nt":{movement}}}"#),
            // A struct read from an array is no movement: a tree has none.
            r#"{"movement":[1,"24000","220120261000010001","0615"]}"#.to_owned(),
            format!(r#"{{"movement":{movement}}} trailing"#),
            format!(
                r#"{{"movement":{movement},"findings":[{{"rule":"balance.insufficient","message":"short"}}]}}"#
            ),
        ];
        for text in &texts {
            let (from_text, from_tree) = read_both_text(text);
            match (&from_text, &from_tree) {
                // Text that is no JSON has no tree to compare with.
                (Err(_), Err(_)) if serde_json::from_str::<Value>(text).is_err() => {}
                _ => assert_eq!(from_text, from_tree, "{text}"),
            }
        }
        let (last, _) = read_both_text(&texts[3]);
        assert!(
            matches!(&last, Ok(r) if matches!(&r.envelope.movement, Movement::MaterialImported(m) if m.material.0 == 2)),
            "{last:?}"
        );
        let (escaped, _) = read_both_text(&texts[5]);
        assert!(escaped.is_ok(), "{escaped:?}");
    }

    #[test]
    fn a_payload_reads_alike_from_text_and_from_a_json_tree() {
        let movement =
            json!({"material":1,"qty":"24000","declaration":"220120261000010001","mode":"0615"});
        let reversed_line = json!({"id":"x-1","type":"material_imported","manual":"C22012600001",
            "date":"2026-01-22","material":1,"qty":"5","declaration":"220120261000010002","mode":"0615"});
        let cases = [
            json!({"movement": movement}),
            json!({"movement": movement, "findings": [{"rule": "balance.insufficient", "message": "short"}]}),
            json!({"movement": movement, "reverses": reversed_line}),
            json!({"movement": movement, "findings": null}),
            json!({"movement": movement, "findings": [{"rule": "no.such.rule", "message": "?"}]}),
            json!({"movement": movement, "reverses": {"type": "nonsense"}}),
            json!({"movement": null}),
            json!({"findings": []}),
            json!([movement]),
        ];
        for payload in &cases {
            let (from_text, from_tree) = read_both(payload);
            assert_eq!(from_text, from_tree, "{payload}");
        }
        assert!(read_both(&cases[2])
            .0
            .expect("a reversal")
            .reverses
            .is_some());
        assert!(
            read_both(&cases[3]).0.is_err(),
            "findings null is malformed"
        );
    }
}
