//! The processing-trade domain (加工贸易保税监管): movements, the rules that
//! judge them, each manual's balances and its verification (核销).
//!
//! This crate is pure. It never does IO, never awaits and never reads a
//! clock: it is handed the state and the movement, and decides
//! (`decide`), evolves (`ManualState::apply`) and verifies (`verify`).

pub mod decide;
pub mod decimal;
pub mod event;
pub mod movement;
pub mod replay;
pub mod rules;
pub mod state;
pub mod testing;
pub mod trace;
pub mod verify;

pub use decide::{decide, Context, Mode, ReversalTarget};
pub use decimal::{format6, parse_decimal, round6};
pub use event::{AttachedFinding, RecordedMovement, StoredPayload, SCHEMA_VERSION};
pub use movement::{parse_line, Envelope, Malformed, ManualNo, Movement, MovementKind};
pub use replay::Replay;
pub use rules::{Refusal, RuleId, Severity};
pub use state::{ManualState, RecordsApart};
pub use verify::{report_json, verify, Report, VerifyOptions};
