//! Where a database's write-ahead log stands: what reading from a PostgreSQL
//! streaming replica needs to know whether the replica holds a write yet.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};

use crate::StoreError;

/// A point in PostgreSQL's write-ahead log (an LSN): later points compare
/// greater. Written as PostgreSQL writes it, `16/B374D848`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WalPosition(u64);

impl WalPosition {
    pub fn new(value: u64) -> Self {
        WalPosition(value)
    }

    pub fn value(self) -> u64 {
        self.0
    }

    /// Bytes of log from `earlier` to here; 0 when `earlier` is not earlier.
    pub fn bytes_after(self, earlier: WalPosition) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

impl fmt::Display for WalPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl FromStr for WalPosition {
    type Err = StoreError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || {
            StoreError::InvalidInput(format!(
                "{text:?} is not a write-ahead log position (two hexadecimal numbers as in 16/B374D848)"
            ))
        };
        let (high, low) = text.split_once('/').ok_or_else(invalid)?;
        let part = |digits: &str| {
            if digits.is_empty() || digits.len() > 8 {
                return Err(invalid());
            }
            u32::from_str_radix(digits, 16).map_err(|_| invalid())
        };
        Ok(WalPosition(
            (u64::from(part(high)?) << 32) | u64::from(part(low)?),
        ))
    }
}

/// Where a database stands now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogMark {
    /// On a primary, the end of the log written so far (past every commit
    /// made); on a replica, how far it has replayed. None on SQLite, which
    /// has no log to replicate.
    pub wal: Option<WalPosition>,
    /// The position of the last event the database holds.
    pub ledger_position: i64,
    /// Whether the database is a replica in recovery (reads only).
    pub is_replica: bool,
    /// A replica: when the last transaction it replayed committed on the
    /// primary.
    pub replayed_commit_at: Option<DateTime<Utc>>,
    /// The last migration the database holds.
    pub schema_version: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_read_and_write_as_postgres_writes_them() {
        for text in ["0/0", "0/3000060", "16/B374D848", "FFFFFFFF/FFFFFFFF"] {
            let position: WalPosition = text.parse().expect("valid");
            assert_eq!(position.to_string(), text);
        }
        let earlier: WalPosition = "0/FFFFFFFF".parse().expect("valid");
        let later: WalPosition = "1/0".parse().expect("valid");
        assert!(earlier < later);
        assert_eq!(later.bytes_after(earlier), 1);
        assert_eq!(earlier.bytes_after(later), 0);
    }

    #[test]
    fn other_texts_are_refused() {
        for text in [
            "",
            "0",
            "/1",
            "1/",
            "G/0",
            "0/123456789",
            "-1/0",
            "0/3000060 ",
        ] {
            assert!(text.parse::<WalPosition>().is_err(), "{text:?}");
        }
    }
}
