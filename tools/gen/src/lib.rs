//! `bondledger-gen`: realistic synthetic histories of processing-trade
//! manuals in the interchange format (JSON Lines), valid under every rule of
//! domain §4, with the balances they should leave.
//!
//! The expected balances come from the generator's own arithmetic (domain
//! §3, worked with `rust_decimal`), never from the ledger's replay: this
//! crate must not depend on `bondledger-domain`, so that a test comparing
//! the two compares two independent reckonings.
//!
//! A history is written as it is generated; memory grows with the number of
//! manuals and items, not with the number of movements.

mod book;
mod catalogue;
mod history;
mod modes;
mod options;
mod random;
mod wire;

pub use book::{format6, MaterialExpectation};
pub use catalogue::hs_codes;
pub use history::{generate, Expected};
pub use options::{parse_mix, Kind, Options, KINDS};
