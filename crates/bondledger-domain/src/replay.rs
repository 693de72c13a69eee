//! Replaying a manual's stream into its state, whole or as of a business
//! date (domain §5: the auditor's view of history).

use std::collections::BTreeSet;

use chrono::NaiveDate;

use crate::event::RecordedMovement;
use crate::movement::Movement;
use crate::state::ManualState;

/// Folds recorded movements, in ledger order, into a manual's state.
#[derive(Debug, Clone, Default)]
pub struct Replay {
    state: Option<ManualState>,
    /// Only movements dated on or before this day count.
    date_limit: Option<NaiveDate>,
    /// Movements left out by the date limit: a reversal of one of them is
    /// left out too, since what it reverses never counted.
    skipped: BTreeSet<String>,
}

impl Replay {
    pub fn new() -> Self {
        Replay::default()
    }

    /// A replay of the movements whose own date is on or before `date`.
    pub fn as_of_date(date: NaiveDate) -> Self {
        Replay {
            date_limit: Some(date),
            ..Replay::default()
        }
    }

    /// Continues from a state already replayed (a snapshot or a cache).
    pub fn from_state(state: ManualState) -> Self {
        Replay {
            state: Some(state),
            ..Replay::default()
        }
    }

    /// Continues from a state whose events were all dated on or before
    /// `date_limit` (so none was left out), keeping that limit.
    pub fn resume(state: ManualState, date_limit: Option<NaiveDate>) -> Self {
        Replay {
            state: Some(state),
            date_limit,
            skipped: BTreeSet::new(),
        }
    }

    /// Applies one movement; `event` is its id as findings name it. Returns
    /// whether it counted.
    pub fn apply(&mut self, recorded: &RecordedMovement, event: &str) -> bool {
        let envelope = &recorded.envelope;
        let beyond_date = self.date_limit.is_some_and(|limit| envelope.date > limit);
        let reverses_skipped = match &envelope.movement {
            Movement::Reversed(reversal) => self.skipped.contains(&reversal.event),
            _ => false,
        };
        if beyond_date || reverses_skipped {
            self.skipped.insert(event.to_owned());
            return false;
        }
        match (&mut self.state, &envelope.movement) {
            (None, Movement::ManualRegistered(registration)) => {
                let mut state = ManualState::registered(envelope, registration);
                for finding in &recorded.findings {
                    state.findings.push(crate::state::EventFinding {
                        rule: finding.rule,
                        event: event.to_owned(),
                        message: finding.message.clone(),
                    });
                }
                self.state = Some(state);
                true
            }
            (Some(state), _) => {
                state.apply(recorded, event);
                true
            }
            // A movement before its manual's registration cannot be decided;
            // a stream never holds one.
            (None, _) => false,
        }
    }

    pub fn state(&self) -> Option<&ManualState> {
        self.state.as_ref()
    }

    /// The state's JSON as a snapshot keeps it (see [`ManualState::to_snapshot`]).
    pub fn snapshot(&mut self) -> Option<serde_json::Result<String>> {
        self.state.as_mut().map(ManualState::to_snapshot)
    }

    pub fn into_state(self) -> Option<ManualState> {
        self.state
    }
}
