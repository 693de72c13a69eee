//! Re-checking hash chains. Pure: the backends feed it rows and stream heads.

use std::collections::{BTreeMap, HashMap};

use crate::chain::{self, event_hash};
use crate::event::EventRow;
use crate::ChainBreak;

/// How far a stream's chain has been checked.
struct Progress {
    version: i64,
    hash: [u8; 32],
}

/// Follows the events of one or many streams in version order within each stream
/// and remembers the first break of each. Memory grows with the number of streams,
/// never with the number of events.
#[derive(Default)]
pub(crate) struct ChainVerifier {
    progress: HashMap<String, Progress>,
    breaks: BTreeMap<String, ChainBreak>,
}

impl ChainVerifier {
    pub(crate) fn observe(&mut self, row: &EventRow) {
        if self.breaks.contains_key(&row.stream) {
            return;
        }
        let (previous_version, previous_hash) = match self.progress.get(&row.stream) {
            Some(progress) => (progress.version, progress.hash),
            None => (0, chain::GENESIS),
        };
        let expected_version = previous_version + 1;
        if row.version != expected_version {
            let reason = format!(
                "version {expected_version} is missing: the next stored event is version {}",
                row.version
            );
            self.record_break(&row.stream, expected_version, reason);
            return;
        }
        let recomputed = event_hash(&previous_hash, row);
        if hex::encode(recomputed) != row.hash {
            let reason = "the stored hash differs from the hash of the stored event".to_owned();
            self.record_break(&row.stream, row.version, reason);
            return;
        }
        self.progress.insert(
            row.stream.clone(),
            Progress {
                version: row.version,
                hash: recomputed,
            },
        );
    }

    /// Compares a stream's recorded head (from the streams table) with its last event,
    /// which finds events deleted from the end of a stream.
    pub(crate) fn check_head(&mut self, stream: &str, head_version: i64, head_hash: &str) {
        if self.breaks.contains_key(stream) {
            return;
        }
        let (last_version, last_hash) = match self.progress.get(stream) {
            Some(progress) => (progress.version, progress.hash),
            None => (0, chain::GENESIS),
        };
        if last_version < head_version {
            let reason = format!(
                "version {} is missing: the stream's head is at version {head_version}",
                last_version + 1
            );
            self.record_break(stream, last_version + 1, reason);
        } else if last_version > head_version {
            let reason =
                format!("the stream's head says version {head_version}, but the events go on");
            self.record_break(stream, head_version + 1, reason);
        } else if hex::encode(last_hash) != head_hash {
            let reason = "the stream's head hash differs from its last event's hash".to_owned();
            self.record_break(stream, last_version, reason);
        }
    }

    pub(crate) fn is_broken(&self, stream: &str) -> bool {
        self.breaks.contains_key(stream)
    }

    pub(crate) fn record_break(&mut self, stream: &str, version: i64, reason: String) {
        self.breaks.entry(stream.to_owned()).or_insert(ChainBreak {
            stream: stream.to_owned(),
            version,
            reason,
        });
    }

    /// The first break of each broken stream, by stream name.
    pub(crate) fn finish(self) -> Vec<ChainBreak> {
        self.breaks.into_values().collect()
    }
}
