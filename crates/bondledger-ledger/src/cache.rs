//! The states of the manuals this process appended to last, so that an
//! append does not replay its manual's stream again.
//!
//! An entry is a manual's state after version `v` of its stream, put in only
//! once the transaction that wrote up to `v` has committed. It is used only
//! when the store, read inside the next append's transaction, says the
//! stream is still at `v`: whatever another process appended since makes it
//! a miss, never a wrong answer.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use bondledger_domain::{ManualNo, ManualState};

/// Manuals whose states are kept: the least recently used one goes first.
pub(crate) const STATE_CACHE_MANUALS: usize = 1_024;

/// Manual states by manual, least recently used dropped first; shared by the
/// clones of a [`crate::Ledger`].
#[derive(Clone)]
pub(crate) struct StateCache {
    inner: Arc<Mutex<Entries>>,
}

struct Entries {
    capacity: usize,
    /// Manual → (its state, when it was last used).
    states: HashMap<ManualNo, (Arc<ManualState>, u64)>,
    /// When each manual was last used → the manual: the first is the oldest.
    used: BTreeMap<u64, ManualNo>,
    clock: u64,
}

impl StateCache {
    pub(crate) fn new(capacity: usize) -> Self {
        assert!(capacity > 0, "a state cache holds at least one manual");
        StateCache {
            inner: Arc::new(Mutex::new(Entries {
                capacity,
                states: HashMap::new(),
                used: BTreeMap::new(),
                clock: 0,
            })),
        }
    }

    /// The state kept for `manual`, at the version it says: the caller
    /// checks it against the stream and [`StateCache::forget`]s a stale one.
    pub(crate) fn get(&self, manual: &ManualNo) -> Option<Arc<ManualState>> {
        let mut entries = self.lock();
        let (state, last_used) = entries.states.get(manual)?.clone();
        entries.touch(manual, last_used);
        Some(state)
    }

    /// Keeps `state` (after its commit) for `manual`, replacing what was kept.
    pub(crate) fn put(&self, manual: &ManualNo, state: Arc<ManualState>) {
        let mut entries = self.lock();
        entries.remove(manual);
        while entries.states.len() >= entries.capacity {
            let Some((_, oldest)) = entries.used.pop_first() else {
                break;
            };
            entries.states.remove(&oldest);
        }
        entries.clock += 1;
        let now = entries.clock;
        entries.used.insert(now, manual.clone());
        entries.states.insert(manual.clone(), (state, now));
        debug_assert_eq!(entries.states.len(), entries.used.len());
    }

    /// Forgets `manual`: its stream moved in a way this process did not see
    /// committed.
    pub(crate) fn forget(&self, manual: &ManualNo) {
        self.lock().remove(manual);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().states.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // Every change to the entries is made whole before the guard drops:
        // a panic elsewhere leaves them consistent.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Entries {
    fn remove(&mut self, manual: &ManualNo) {
        if let Some((_, last_used)) = self.states.remove(manual) {
            self.used.remove(&last_used);
        }
    }

    fn touch(&mut self, manual: &ManualNo, last_used: u64) {
        self.clock += 1;
        let now = self.clock;
        self.used.remove(&last_used);
        self.used.insert(now, manual.clone());
        if let Some(entry) = self.states.get_mut(manual) {
            entry.1 = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bondledger_domain::{parse_line, Movement};

    fn manual(n: u32) -> ManualNo {
        ManualNo::try_from(format!("C44012600{n:03}")).expect("a manual number")
    }

    fn state(manual: &ManualNo, version: i64) -> Arc<ManualState> {
        let line = serde_json::json!({
            "type": "manual_registered", "manual": manual.as_str(), "date": "2026-01-02",
            "trade_mode": "purchased", "enterprise": "4401900001", "valid_until": "2027-12-31",
            "materials": [{"item": 1, "hs": "3901100000", "name": "聚乙烯", "spec": "LD", "unit": "千克", "qty": "1000"}],
            "products": [{"item": 1, "hs": "3923210000", "name": "袋", "spec": "S", "unit": "千克", "qty": "1000"}]
        });
        let envelope = parse_line(line).expect("a registration");
        let Movement::ManualRegistered(registration) = &envelope.movement else {
            unreachable!("the line registers a manual")
        };
        let mut state = ManualState::registered(&envelope, registration);
        state.version = version;
        Arc::new(state)
    }

    #[test]
    fn a_state_is_kept_at_its_version_until_replaced() {
        let cache = StateCache::new(4);
        let first = manual(1);
        cache.put(&first, state(&first, 3));
        assert_eq!(cache.get(&first).map(|s| s.version), Some(3));
        cache.put(&first, state(&first, 5));
        assert_eq!(cache.get(&first).map(|s| s.version), Some(5));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn the_least_recently_used_manual_goes_first() {
        let cache = StateCache::new(2);
        let (first, second, third) = (manual(1), manual(2), manual(3));
        cache.put(&first, state(&first, 1));
        cache.put(&second, state(&second, 1));
        assert!(cache.get(&first).is_some(), "first is now the most recent");
        cache.put(&third, state(&third, 1));
        assert_eq!(cache.len(), 2);
        assert!(cache.get(&second).is_none(), "second was the oldest");
        assert!(cache.get(&first).is_some());
        assert!(cache.get(&third).is_some());
    }

    #[test]
    fn a_forgotten_manual_is_replayed() {
        let cache = StateCache::new(2);
        let first = manual(1);
        cache.put(&first, state(&first, 2));
        cache.forget(&first);
        assert!(cache.get(&first).is_none());
        assert_eq!(cache.len(), 0);
    }
}
