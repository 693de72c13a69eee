//! The timeline read model in blocks (docs/adr/0010-timeline-blocks.md).
//!
//! The rows of a block of [`TIMELINE_BLOCK_EVENTS`] positions are kept
//! together, as segments: the rows one commit added to the block, in
//! position order, as one JSON text. A key (an event's manual, HS codes,
//! counterparties, declaration) names the blocks holding an event with it,
//! and the positions of those events there. A query by keys reads their
//! positions; one by dates (or by an HS prefix of many codes) reads the
//! segments of the blocks found and keeps the rows that match exactly.
//!
//! Everything here is plain text the projection computed; nothing is
//! interpreted.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::readmodel::{TimelineFilter, TimelineRow};
use crate::StoreError;

/// Positions a block spans: block `b` holds positions `b·N + 1 ..= (b + 1)·N`.
/// It divides a catch-up's page of 10,000 events, so a page writes whole
/// blocks, one segment each.
pub const TIMELINE_BLOCK_EVENTS: i64 = 1_000;

/// The block holding `position` (positions start at 1).
pub fn block_of(position: i64) -> i64 {
    (position - 1).div_euclid(TIMELINE_BLOCK_EVENTS)
}

/// The kinds of key a block is found by.
pub const KEY_MANUAL: &str = "manual";
pub const KEY_HS: &str = "hs";
pub const KEY_COUNTERPARTY: &str = "counterparty";
pub const KEY_DECLARATION: &str = "declaration";

/// One event's row as a segment holds it: a JSON array.
#[derive(Serialize)]
struct EntryRef<'a>(
    i64,
    &'a str,
    i64,
    &'a str,
    &'a str,
    Option<&'a str>,
    &'a [String],
    &'a [String],
);

/// One event's row, read in place from a segment's text where it can be.
#[derive(Deserialize)]
struct EntryView<'a>(
    i64,
    #[serde(borrow)] Cow<'a, str>,
    i64,
    #[serde(borrow)] Cow<'a, str>,
    #[serde(borrow)] Cow<'a, str>,
    #[serde(borrow)] Option<Cow<'a, str>>,
    #[serde(borrow)] Vec<Cow<'a, str>>,
    #[serde(borrow)] Vec<Cow<'a, str>>,
);

impl From<EntryView<'_>> for TimelineRow {
    fn from(e: EntryView<'_>) -> Self {
        let owned = |values: Vec<Cow<'_, str>>| values.into_iter().map(Cow::into_owned).collect();
        TimelineRow {
            position: e.0,
            manual: e.1.into_owned(),
            version: e.2,
            event_type: e.3.into_owned(),
            business_date: e.4.into_owned(),
            declaration: e.5.map(Cow::into_owned),
            hs: owned(e.6),
            counterparties: owned(e.7),
        }
    }
}

/// The rows of a segment's `entries`, read in place.
fn read_entries(entries: &str) -> Result<Vec<EntryView<'_>>, StoreError> {
    serde_json::from_str(entries)
        .map_err(|e| StoreError::Integrity(format!("a timeline segment is not as written: {e}")))
}

/// The rows one commit adds to one block.
#[derive(Debug)]
pub(crate) struct Segment {
    pub block: i64,
    pub first_position: i64,
    pub last_position: i64,
    pub min_date: String,
    pub max_date: String,
    pub entries: String,
}

/// A key row: (kind, value, block) and the positions in the block of the
/// rows with the key, ascending.
pub(crate) type BlockKey<'a> = (&'static str, &'a str, i64, Vec<i64>);

/// The segments and block keys of `rows`, which are in position order; the
/// keys in the order of the keys' index.
pub(crate) fn segments<'a>(
    rows: &[&'a TimelineRow],
) -> Result<(Vec<Segment>, Vec<BlockKey<'a>>), StoreError> {
    let mut segments = Vec::new();
    // Each key's places (block, position), ascending as the rows come. Only
    // the distinct keys are then put in order, compared as text once each
    // rather than once for each of their places (a manual or an HS code
    // has thousands in a page).
    let mut places: HashMap<(&'static str, &'a str), Vec<(i64, i64)>> = HashMap::new();
    for run in rows.chunk_by(|a, b| block_of(a.position) == block_of(b.position)) {
        let (Some(first), Some(last)) = (run.first(), run.last()) else {
            continue;
        };
        let block = block_of(first.position);
        let entries: Vec<EntryRef<'_>> = run
            .iter()
            .map(|r| {
                EntryRef(
                    r.position,
                    &r.manual,
                    r.version,
                    &r.event_type,
                    &r.business_date,
                    r.declaration.as_deref(),
                    &r.hs,
                    &r.counterparties,
                )
            })
            .collect();
        let entries = serde_json::to_string(&entries)
            .map_err(|e| StoreError::Integrity(format!("a timeline segment: {e}")))?;
        let mut min_date = first.business_date.as_str();
        let mut max_date = min_date;
        for &row in run {
            min_date = min_date.min(&row.business_date);
            max_date = max_date.max(&row.business_date);
            for key in row_keys(row) {
                places.entry(key).or_default().push((block, row.position));
            }
        }
        segments.push(Segment {
            block,
            first_position: first.position,
            last_position: last.position,
            min_date: min_date.to_owned(),
            max_date: max_date.to_owned(),
            entries,
        });
    }
    let mut places: Vec<_> = places.into_iter().collect();
    places.sort_unstable_by_key(|(key, _)| *key);
    let mut keys: Vec<BlockKey<'a>> = Vec::new();
    for ((kind, value), mut found) in places {
        // A row naming one key twice counts once.
        found.dedup();
        for run in found.chunk_by(|a, b| a.0 == b.0) {
            let block = run[0].0;
            keys.push((kind, value, block, run.iter().map(|&(_, p)| p).collect()));
        }
    }
    Ok((segments, keys))
}

/// Positions as a key row holds them: ascending, comma-separated.
pub(crate) fn format_positions(positions: &[i64]) -> String {
    use std::fmt::Write;
    let mut text = String::with_capacity(positions.len() * 8);
    for (index, position) in positions.iter().enumerate() {
        let separator = if index > 0 { "," } else { "" };
        // Writing to a String cannot fail.
        let _ = write!(text, "{separator}{position}");
    }
    text
}

/// The positions of a key row.
pub fn parse_positions(text: &str) -> Result<Vec<i64>, StoreError> {
    text.split(',')
        .map(|p| {
            p.parse().map_err(|_| {
                StoreError::Integrity(format!(
                    "a timeline key's positions are not as written: {p:?}"
                ))
            })
        })
        .collect()
}

/// The rows of a segment's `entries`.
pub(crate) fn decode_entries(entries: &str) -> Result<Vec<TimelineRow>, StoreError> {
    Ok(read_entries(entries)?
        .into_iter()
        .map(TimelineRow::from)
        .collect())
}

/// The keys `row` puts on its block, as [`segments`] writes them.
pub fn row_keys(row: &TimelineRow) -> impl Iterator<Item = (&'static str, &str)> {
    std::iter::once((KEY_MANUAL, row.manual.as_str()))
        .chain(
            row.declaration
                .iter()
                .map(|d| (KEY_DECLARATION, d.as_str())),
        )
        .chain(row.hs.iter().map(|v| (KEY_HS, v.as_str())))
        .chain(
            row.counterparties
                .iter()
                .map(|v| (KEY_COUNTERPARTY, v.as_str())),
        )
}

/// The values of one kind of key a block must hold one of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyFilter {
    pub kind: &'static str,
    pub values: Vec<String>,
}

/// A [`TimelineFilter`] made ready to test rows: the manuals of its
/// enterprise found, its dates written as the rows write them.
#[derive(Debug, Clone)]
pub(crate) struct RowFilter {
    manuals: Option<HashSet<String>>,
    enterprise_manuals: Option<HashSet<String>>,
    hs_prefix: Option<String>,
    declaration: Option<String>,
    counterparty: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

impl RowFilter {
    /// `enterprise_manuals`: the manuals the filter's enterprise operates or
    /// processes for, when it names one.
    pub fn new(filter: &TimelineFilter, enterprise_manuals: Option<Vec<String>>) -> Self {
        RowFilter {
            manuals: (!filter.manuals.is_empty()).then(|| filter.manuals.iter().cloned().collect()),
            enterprise_manuals: enterprise_manuals.map(|m| m.into_iter().collect()),
            hs_prefix: filter.hs_prefix.clone(),
            declaration: filter.declaration.clone(),
            counterparty: filter.counterparty.clone(),
            from: filter.from.as_ref().map(crate::chain::format_business_date),
            to: filter.to.as_ref().map(crate::chain::format_business_date),
        }
    }

    /// Whether no row can match (an enterprise with no manual, or no manual
    /// both named and the enterprise's).
    pub fn matches_nothing(&self) -> bool {
        match (&self.manuals, &self.enterprise_manuals) {
            (_, Some(of_enterprise)) if of_enterprise.is_empty() => true,
            (Some(named), Some(of_enterprise)) => named.is_disjoint(of_enterprise),
            _ => false,
        }
    }

    fn matches_view(&self, row: &EntryView<'_>) -> bool {
        let manual: &str = &row.1;
        self.manuals.as_ref().is_none_or(|m| m.contains(manual))
            && self
                .enterprise_manuals
                .as_ref()
                .is_none_or(|m| m.contains(manual))
            && self
                .hs_prefix
                .as_ref()
                .is_none_or(|p| row.6.iter().any(|code| code.starts_with(p.as_str())))
            && self
                .declaration
                .as_ref()
                .is_none_or(|d| row.5.as_deref() == Some(d.as_str()))
            && self
                .counterparty
                .as_ref()
                .is_none_or(|c| row.7.iter().any(|v| v == c))
            && self.from.as_deref().is_none_or(|f| &*row.4 >= f)
            && self.to.as_deref().is_none_or(|t| &*row.4 <= t)
    }

    /// Adds to `positions` those of the rows in a segment's `entries` above
    /// `after` that match, until it holds `limit`; whether it does. The rows
    /// are read in place, not copied out.
    pub fn matching_positions(
        &self,
        entries: &str,
        after: i64,
        limit: usize,
        positions: &mut Vec<i64>,
    ) -> Result<bool, StoreError> {
        for entry in read_entries(entries)?.iter().filter(|e| e.0 > after) {
            if positions.len() >= limit {
                break;
            }
            if self.matches_view(entry) {
                positions.push(entry.0);
            }
        }
        Ok(positions.len() >= limit)
    }

    /// Whether the positions of `keys` (as [`Self::key_filters`] gives
    /// them) are the matches, with no row to read: no dates to test, and an
    /// HS prefix, if any, among them as its codes.
    pub fn keys_suffice(&self, keys: &[KeyFilter]) -> bool {
        self.from.is_none()
            && self.to.is_none()
            && (self.hs_prefix.is_none() || keys.iter().any(|k| k.kind == KEY_HS))
    }

    /// The first business date a matching row may have, as rows write it.
    pub fn from(&self) -> Option<&str> {
        self.from.as_deref()
    }

    /// The last business date a matching row may have, as rows write it.
    pub fn to(&self) -> Option<&str> {
        self.to.as_deref()
    }

    /// The exact keys a matching row's block holds, the likely fewest blocks
    /// first: a declaration is one event's, a counterparty a few manuals',
    /// manuals many blocks'. `hs_codes` are the codes the HS prefix names,
    /// when they are few enough to look up one by one.
    pub fn key_filters(&self, hs_codes: Option<Vec<String>>) -> Vec<KeyFilter> {
        let mut keys = Vec::new();
        if let Some(declaration) = &self.declaration {
            keys.push(KeyFilter {
                kind: KEY_DECLARATION,
                values: vec![declaration.clone()],
            });
        }
        if let Some(counterparty) = &self.counterparty {
            keys.push(KeyFilter {
                kind: KEY_COUNTERPARTY,
                values: vec![counterparty.clone()],
            });
        }
        let manuals: Option<Vec<String>> = match (&self.manuals, &self.enterprise_manuals) {
            (Some(named), Some(of_enterprise)) => {
                Some(named.intersection(of_enterprise).cloned().collect())
            }
            (Some(m), None) | (None, Some(m)) => Some(m.iter().cloned().collect()),
            (None, None) => None,
        };
        if let Some(mut manuals) = manuals {
            manuals.sort();
            keys.push(KeyFilter {
                kind: KEY_MANUAL,
                values: manuals,
            });
        }
        if let Some(codes) = hs_codes {
            keys.push(KeyFilter {
                kind: KEY_HS,
                values: codes,
            });
        }
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn row(position: i64, manual: &str, date: &str) -> TimelineRow {
        TimelineRow {
            position,
            manual: manual.into(),
            version: position,
            event_type: "materials_imported".into(),
            business_date: date.into(),
            declaration: Some(format!("D{position}")),
            hs: vec!["3920100000".into()],
            counterparties: vec![],
        }
    }

    #[test]
    fn blocks_start_after_each_thousandth_position() {
        assert_eq!(block_of(1), 0);
        assert_eq!(block_of(1_000), 0);
        assert_eq!(block_of(1_001), 1);
        assert_eq!(block_of(2_000), 1);
    }

    #[test]
    fn a_segment_is_the_rows_of_one_block_and_reads_back_as_written() {
        let rows = [
            row(999, "M1", "2026-03-02"),
            row(1_000, "M2", "2026-03-01"),
            row(1_001, "M1", "2026-03-04"),
        ];
        let refs: Vec<&TimelineRow> = rows.iter().collect();
        let (segments, keys) = segments(&refs).expect("segments");
        assert_eq!(segments.len(), 2);
        assert_eq!(
            (
                segments[0].block,
                segments[0].first_position,
                segments[0].last_position
            ),
            (0, 999, 1_000)
        );
        assert_eq!(
            (segments[0].min_date.as_str(), segments[0].max_date.as_str()),
            ("2026-03-01", "2026-03-02")
        );
        assert_eq!(
            decode_entries(&segments[0].entries).expect("decoded"),
            rows[..2]
        );
        assert_eq!(
            decode_entries(&segments[1].entries).expect("decoded"),
            rows[2..]
        );
        assert!(keys.contains(&(KEY_MANUAL, "M2", 0, vec![1_000])));
        assert!(keys.contains(&(KEY_MANUAL, "M1", 0, vec![999])));
        assert!(keys.contains(&(KEY_MANUAL, "M1", 1, vec![1_001])));
        assert!(keys.contains(&(KEY_DECLARATION, "D1001", 1, vec![1_001])));
        assert!(keys.contains(&(KEY_HS, "3920100000", 0, vec![999, 1_000])));
        assert_eq!(keys.iter().filter(|k| k.0 == KEY_HS).count(), 2);
        let order: Vec<(&str, &str, i64)> = keys.iter().map(|k| (k.0, k.1, k.2)).collect();
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(order, sorted, "keys come in the order of their index");
        let positions = [3, 17, 1_000];
        assert_eq!(
            parse_positions(&format_positions(&positions)).expect("read back"),
            positions
        );
        assert!(parse_positions("3,x").is_err());
    }

    #[test]
    fn a_key_named_twice_by_a_row_holds_its_position_once() {
        let mut twice = row(7, "M1", "2026-03-02");
        twice.hs = vec![
            "3920100000".into(),
            "3920100000".into(),
            "3901100000".into(),
        ];
        let rows = [
            row(5, "M1", "2026-03-01"),
            twice,
            row(1_002, "M1", "2026-03-03"),
        ];
        let refs: Vec<&TimelineRow> = rows.iter().collect();
        let (_, keys) = segments(&refs).expect("segments");
        let hs: Vec<_> = keys.iter().filter(|k| k.0 == KEY_HS).cloned().collect();
        assert_eq!(
            hs,
            [
                (KEY_HS, "3901100000", 0, vec![7]),
                (KEY_HS, "3920100000", 0, vec![5, 7]),
                (KEY_HS, "3920100000", 1, vec![1_002]),
            ]
        );
    }

    /// The positions of `rows` that `filter` keeps, read from their segments.
    fn kept(filter: &RowFilter, rows: &[TimelineRow]) -> Vec<i64> {
        let refs: Vec<&TimelineRow> = rows.iter().collect();
        let (segments, _) = segments(&refs).expect("segments");
        let mut positions = Vec::new();
        for segment in &segments {
            filter
                .matching_positions(&segment.entries, 0, 10, &mut positions)
                .expect("read");
        }
        positions
    }

    #[test]
    fn a_row_matches_only_when_every_filter_holds() {
        let rows = [
            row(1, "M1", "2026-03-02"),
            row(2, "M1", "2026-03-01"),
            row(3, "M2", "2026-03-02"),
        ];
        let filter = TimelineFilter {
            hs_prefix: Some("3920".into()),
            from: NaiveDate::from_ymd_opt(2026, 3, 2),
            ..TimelineFilter::default()
        };
        assert_eq!(kept(&RowFilter::new(&filter, None), &rows), [1, 3]);
        let other = RowFilter::new(
            &TimelineFilter {
                hs_prefix: Some("3921".into()),
                ..TimelineFilter::default()
            },
            None,
        );
        assert!(kept(&other, &rows).is_empty());
        let of_enterprise = RowFilter::new(&TimelineFilter::default(), Some(vec!["M2".into()]));
        assert_eq!(kept(&of_enterprise, &rows), [3]);
        let declared = RowFilter::new(
            &TimelineFilter {
                declaration: Some("D2".into()),
                ..TimelineFilter::default()
            },
            None,
        );
        assert_eq!(kept(&declared, &rows), [2]);
        assert!(RowFilter::new(&TimelineFilter::default(), Some(vec![])).matches_nothing());
    }
}
