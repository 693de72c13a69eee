//! The stored form of a movement: what goes into an event's payload and how
//! it is read back, by schema version.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::movement::{parse_line, Envelope, Malformed, ManualNo, Movement, MovementKind};
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
        let mut payload = Map::new();
        payload.insert(
            "movement".into(),
            Value::Object(self.envelope.movement.fields()),
        );
        if !self.findings.is_empty() {
            let findings = self
                .findings
                .iter()
                .map(|f| serde_json::json!({"rule": f.rule.as_str(), "message": f.message}))
                .collect();
            payload.insert("findings".into(), Value::Array(findings));
        }
        if let Some(reversed) = &self.reverses {
            payload.insert("reverses".into(), Value::Object(reversed.to_line()));
        }
        Value::Object(payload)
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
