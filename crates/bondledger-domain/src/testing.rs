//! A given/when/then harness over an in-memory ledger, so a rule reads as a
//! sentence: *given* these movements, *when* this one, *then* it is
//! recorded, or refused naming this rule.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use crate::decide::{decide, Context, Mode, ReversalTarget};
use crate::event::RecordedMovement;
use crate::movement::{parse_line, ManualNo, Movement};
use crate::rules::{Refusal, RuleId};
use crate::state::ManualState;
use crate::verify::{report_json, verify, VerifyOptions};

/// Manuals and their recorded movements, held in memory.
#[derive(Debug, Default, Clone)]
pub struct MemoryLedger {
    pub states: BTreeMap<ManualNo, ManualState>,
    /// Every recorded movement by its id, with its manual.
    pub events: HashMap<String, (ManualNo, RecordedMovement)>,
    /// Every recorded movement in ledger order.
    pub log: Vec<RecordedMovement>,
}

impl MemoryLedger {
    pub fn new() -> Self {
        MemoryLedger::default()
    }

    /// Decides and, if accepted, records one line. A line whose id is
    /// already held records nothing.
    pub fn record(&mut self, line: Value, mode: Mode) -> Result<Option<RecordedMovement>, Refusal> {
        let envelope =
            parse_line(line).unwrap_or_else(|e| panic!("a test line must be well formed: {e}"));
        if let Some(id) = &envelope.id {
            if self.events.contains_key(id) {
                return Ok(None);
            }
        }
        let target = match &envelope.movement {
            Movement::Reversed(r) => {
                self.events
                    .get(&r.event)
                    .map(|(manual, recorded)| ReversalTarget {
                        manual: manual.clone(),
                        recorded: recorded.clone(),
                    })
            }
            _ => None,
        };
        let counterparty = match &envelope.movement {
            Movement::RemnantOut(r) => self.states.get(&r.to_manual),
            Movement::RemnantIn(r) => self.states.get(&r.from_manual),
            _ => None,
        }
        .map(|s| &s.registration);
        let context = Context {
            mode,
            counterparty,
            reversal_target: target.as_ref(),
        };
        let recorded = decide(self.states.get(&envelope.manual), envelope, &context)?;
        let manual = recorded.envelope.manual.clone();
        let event = recorded
            .envelope
            .id
            .clone()
            .unwrap_or_else(|| format!("#{}", self.log.len() + 1));
        let mut replay = match self.states.remove(&manual) {
            Some(state) => crate::replay::Replay::from_state(state),
            None => crate::replay::Replay::new(),
        };
        replay.apply(&recorded, &event);
        if let Some(state) = replay.into_state() {
            self.states.insert(manual.clone(), state);
        }
        self.events.insert(event, (manual, recorded.clone()));
        self.log.push(recorded.clone());
        Ok(Some(recorded))
    }

    pub fn state(&self, manual: &str) -> &ManualState {
        let manual = ManualNo::try_from(manual.to_owned()).expect("a manual number");
        self.states
            .get(&manual)
            .unwrap_or_else(|| panic!("no manual {manual}"))
    }

    /// The verification report of a manual, as JSON.
    pub fn report(&self, manual: &str) -> Value {
        report_json(&verify(
            self.state(manual),
            &self.states,
            &VerifyOptions::default(),
        ))
    }
}

/// The start of a given/when/then case.
pub fn given(lines: impl IntoIterator<Item = Value>) -> Given {
    let mut ledger = MemoryLedger::new();
    for line in lines {
        let shown = line.to_string();
        if let Err(refusal) = ledger.record(line, Mode::Strict) {
            panic!("given {shown}: refused {refusal}");
        }
    }
    Given { ledger }
}

pub struct Given {
    pub ledger: MemoryLedger,
}

impl Given {
    pub fn when(self, line: Value) -> Then {
        self.when_in(line, Mode::Strict)
    }

    pub fn when_recorded(self, line: Value) -> Then {
        self.when_in(line, Mode::Record)
    }

    fn when_in(mut self, line: Value, mode: Mode) -> Then {
        let outcome = self.ledger.record(line, mode);
        Then {
            ledger: self.ledger,
            outcome,
        }
    }
}

pub struct Then {
    pub ledger: MemoryLedger,
    pub outcome: Result<Option<RecordedMovement>, Refusal>,
}

impl Then {
    /// The movement was recorded with no finding attached.
    pub fn then_accepted(self) -> MemoryLedger {
        match &self.outcome {
            Ok(Some(recorded)) if recorded.findings.is_empty() => self.ledger,
            other => panic!("expected the movement to be accepted, got {other:?}"),
        }
    }

    pub fn then_refused(self, rule: RuleId) -> MemoryLedger {
        match &self.outcome {
            Err(refusal) if refusal.rule == rule => self.ledger,
            other => panic!("expected a refusal by {rule}, got {other:?}"),
        }
    }

    /// Recorded (record mode) with this finding attached.
    pub fn then_recorded_with(self, rule: RuleId) -> MemoryLedger {
        match &self.outcome {
            Ok(Some(recorded)) if recorded.findings.iter().any(|f| f.rule == rule) => self.ledger,
            other => panic!("expected the movement recorded with {rule}, got {other:?}"),
        }
    }
}
