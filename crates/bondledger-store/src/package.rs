//! The evidence package: a ledger's events (or one stream's) as one JSON Lines file that
//! can be checked with no database (docs/evidence-package.md).
//!
//! ```text
//! line 1      {"header": {"format", "scope", "manual", "ledger_position", "exported_at", "exported_by"}}
//! line 2..n   one event a line: position, stream, version, event_id, caller_id, event_type,
//!             schema_version, business_date, recorded_at, payload, metadata, hash
//! line n+1    {"manifest": {the header's fields, "events", "streams": [{"stream", "version",
//!             "hash", "events"}], "digest": "sha256:HEX of every byte before this line"}}
//! ```
//!
//! Pure: this module encodes lines and checks them; reading and writing files is the
//! caller's. Hashes are re-computed with the store's own chain code ([`crate::chain`]).

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::chain::{canonical_json, format_recorded_at};
use crate::event::EventRow;
use crate::verify::ChainVerifier;
use crate::{EventMetadata, StoredEvent};

/// The format this module writes and reads; another format gets another name.
pub const PACKAGE_FORMAT: &str = "bondledger.evidence.v1";

/// A package line is at most this long: an event's payload is at most 1 MiB
/// ([`crate::MAX_PAYLOAD_BYTES`]), and the rest of an event is small.
pub const MAX_PACKAGE_LINE_BYTES: usize = 4 << 20;

/// At most this many breaks are listed besides the first of each broken stream: a
/// package edited throughout says so without a list as long as itself.
const MAX_LISTED_BREAKS: usize = 1_000;

/// What a package holds: the whole ledger, or one manual's stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Ledger,
    Manual,
}

/// The first line: what the package is, known before any event is written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageHeader {
    pub format: String,
    pub scope: Scope,
    /// The stream exported, for a manual's package.
    pub manual: Option<String>,
    /// The ledger's head when the export began: the package holds no event past it.
    pub ledger_position: i64,
    /// RFC 3339, UTC, microseconds.
    pub exported_at: String,
    /// The program and version that wrote the package.
    pub exported_by: String,
}

/// A stream's chain head in the package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamHead {
    pub stream: String,
    /// The last version in the package.
    pub version: i64,
    /// That event's hash: the chain's tip.
    pub hash: String,
    pub events: i64,
}

/// The last line: the header's fields again, the count and chain head of every stream,
/// and the digest of every byte before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageManifest {
    pub format: String,
    pub scope: Scope,
    pub manual: Option<String>,
    pub ledger_position: i64,
    pub exported_at: String,
    pub exported_by: String,
    pub events: i64,
    /// By stream name.
    pub streams: Vec<StreamHead>,
    /// `sha256:` and the lowercase hex SHA-256 of every byte before the manifest line.
    pub digest: String,
}

/// One event line.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventLine {
    position: i64,
    stream: String,
    version: i64,
    event_id: Uuid,
    caller_id: Option<String>,
    event_type: String,
    schema_version: i32,
    business_date: NaiveDate,
    recorded_at: String,
    payload: serde_json::Value,
    metadata: serde_json::Value,
    hash: String,
}

/// The three kinds of line: a header and a manifest are objects with one member of that
/// name; every other line is an event.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Line {
    Header { header: PackageHeader },
    Manifest { manifest: PackageManifest },
    Event(Box<EventLine>),
}

impl Line {
    /// Parses a line, naming what is wrong with it.
    fn parse(text: &[u8]) -> Result<Line, String> {
        let value: serde_json::Value =
            serde_json::from_slice(text).map_err(|error| format!("not JSON: {error}"))?;
        let serde_json::Value::Object(mut members) = value else {
            return Err("not a JSON object".to_owned());
        };
        if members.len() == 1 {
            if let Some(header) = members.remove("header") {
                return serde_json::from_value(header)
                    .map(|header| Line::Header { header })
                    .map_err(|error| format!("the header: {error}"));
            }
            if let Some(manifest) = members.remove("manifest") {
                return serde_json::from_value(manifest)
                    .map(|manifest| Line::Manifest { manifest })
                    .map_err(|error| format!("the manifest: {error}"));
            }
        }
        serde_json::from_value(serde_json::Value::Object(members))
            .map(|event| Line::Event(Box::new(event)))
            .map_err(|error| format!("an event: {error}"))
    }
}

/// Where a package does not hold: a line (from 1), and the stream and version where the
/// break is in an event's chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageBreak {
    pub line: Option<u64>,
    pub stream: Option<String>,
    pub version: Option<i64>,
    pub reason: String,
}

impl std::fmt::Display for PackageBreak {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(line) = self.line {
            write!(formatter, "line {line}: ")?;
        }
        if let Some(stream) = &self.stream {
            write!(formatter, "stream {stream} ")?;
            if let Some(version) = self.version {
                write!(formatter, "version {version}: ")?;
            }
        }
        write!(formatter, "{}", self.reason)
    }
}

/// Writes a package's lines, keeping the digest and the chain heads as it goes.
/// Memory grows with the number of streams, never with the number of events.
pub struct PackageWriter {
    header: PackageHeader,
    digest: Sha256,
    heads: BTreeMap<String, StreamHead>,
    events: i64,
}

impl PackageWriter {
    pub fn new(
        scope_manual: Option<&str>,
        ledger_position: i64,
        exported_at: DateTime<Utc>,
    ) -> Self {
        let header = PackageHeader {
            format: PACKAGE_FORMAT.to_owned(),
            scope: if scope_manual.is_some() {
                Scope::Manual
            } else {
                Scope::Ledger
            },
            manual: scope_manual.map(str::to_owned),
            ledger_position,
            exported_at: format_recorded_at(&exported_at),
            exported_by: format!("bondledger {}", env!("CARGO_PKG_VERSION")),
        };
        PackageWriter {
            header,
            digest: Sha256::new(),
            heads: BTreeMap::new(),
            events: 0,
        }
    }

    /// The first line, with its newline.
    pub fn header_line(&mut self) -> String {
        let line = encode_line(&Line::Header {
            header: self.header.clone(),
        });
        self.digest.update(line.as_bytes());
        line
    }

    /// An event's line, with its newline. Events come in position order.
    pub fn event_line(&mut self, event: &StoredEvent) -> String {
        let line = encode_line(&Line::Event(Box::new(EventLine {
            position: event.position,
            stream: event.stream.clone(),
            version: event.version,
            event_id: event.event_id,
            caller_id: event.caller_id.clone(),
            event_type: event.event_type.clone(),
            schema_version: event.schema_version,
            business_date: event.business_date,
            recorded_at: format_recorded_at(&event.recorded_at),
            payload: event.payload.clone(),
            metadata: serde_json::to_value(&event.metadata).unwrap_or(serde_json::Value::Null),
            hash: event.hash.clone(),
        })));
        self.digest.update(line.as_bytes());
        self.events += 1;
        let head = self
            .heads
            .entry(event.stream.clone())
            .or_insert_with(|| StreamHead {
                stream: event.stream.clone(),
                version: 0,
                hash: String::new(),
                events: 0,
            });
        head.version = event.version;
        head.hash = event.hash.clone();
        head.events += 1;
        line
    }

    /// The manifest line, with its newline; the package ends with it.
    pub fn finish(self) -> (String, PackageManifest) {
        let manifest = PackageManifest {
            format: self.header.format,
            scope: self.header.scope,
            manual: self.header.manual,
            ledger_position: self.header.ledger_position,
            exported_at: self.header.exported_at,
            exported_by: self.header.exported_by,
            events: self.events,
            streams: self.heads.into_values().collect(),
            digest: format!("sha256:{}", hex::encode(self.digest.finalize())),
        };
        let line = encode_line(&Line::Manifest {
            manifest: manifest.clone(),
        });
        (line, manifest)
    }
}

fn encode_line(line: &Line) -> String {
    // Serializing plain data with string keys cannot fail.
    let mut text = serde_json::to_string(line).unwrap_or_default();
    text.push('\n');
    text
}

/// What checking a package found.
#[derive(Debug, Clone)]
pub struct PackageReport {
    pub header: Option<PackageHeader>,
    pub manifest: Option<PackageManifest>,
    /// Event lines read.
    pub events: i64,
    /// Every break found, by line; empty when the package is intact.
    pub breaks: Vec<PackageBreak>,
}

impl PackageReport {
    pub fn intact(&self) -> bool {
        self.breaks.is_empty()
    }
}

/// Checks a package line by line: every stream's hash chain re-computed with the store's
/// own code, positions, the header, the manifest's counts and chain heads, and the
/// digest. Memory grows with the number of streams, never with the number of events.
pub struct PackageVerifier {
    line: u64,
    digest: Sha256,
    header: Option<PackageHeader>,
    manifest: Option<(u64, PackageManifest)>,
    chains: ChainVerifier,
    /// The line of each stream's first chain break.
    chain_break_lines: HashMap<String, u64>,
    counts: BTreeMap<String, i64>,
    last_position: i64,
    events: i64,
    breaks: Vec<PackageBreak>,
}

impl Default for PackageVerifier {
    fn default() -> Self {
        PackageVerifier::new()
    }
}

impl PackageVerifier {
    pub fn new() -> Self {
        PackageVerifier {
            line: 0,
            digest: Sha256::new(),
            header: None,
            manifest: None,
            chains: ChainVerifier::default(),
            chain_break_lines: HashMap::new(),
            counts: BTreeMap::new(),
            last_position: 0,
            events: 0,
            breaks: Vec::new(),
        }
    }

    /// Whether a break has been found so far.
    pub fn broken(&self) -> bool {
        !self.breaks.is_empty() || !self.chain_break_lines.is_empty()
    }

    /// Checks the next line, `raw` as read (with its newline, if it had one). Returns the
    /// event an event line holds, whether or not its chain holds (the caller looks at
    /// [`Self::broken`] or the final report before trusting it).
    pub fn line(&mut self, raw: &[u8]) -> Option<StoredEvent> {
        self.line += 1;
        let line = self.line;
        if let Some((manifest_line, _)) = &self.manifest {
            let reason = format!("the package goes on after its manifest (line {manifest_line})");
            self.push_break(line, reason);
            return None;
        }
        let Some(text) = raw.strip_suffix(b"\n") else {
            self.digest.update(raw);
            self.push_break(
                line,
                "the last line has no newline: the package is cut short".to_owned(),
            );
            return None;
        };
        let parsed = match Line::parse(text) {
            Ok(parsed) => parsed,
            Err(error) => {
                self.digest.update(raw);
                self.push_break(line, format!("not a line of an evidence package: {error}"));
                return None;
            }
        };
        match parsed {
            Line::Header { header } => {
                self.digest.update(raw);
                self.header_line(line, header);
                None
            }
            Line::Manifest { manifest } => {
                self.manifest = Some((line, manifest));
                None
            }
            Line::Event(event) => {
                self.digest.update(raw);
                self.event_line(line, *event)
            }
        }
    }

    /// The next line is longer than [`MAX_PACKAGE_LINE_BYTES`]: the reader stops there.
    pub fn line_too_long(&mut self) {
        self.line += 1;
        let reason =
            format!("the line is longer than {MAX_PACKAGE_LINE_BYTES} bytes; reading stopped");
        self.push_break(self.line, reason);
    }

    fn header_line(&mut self, line: u64, header: PackageHeader) {
        if line != 1 {
            self.push_break(line, "a header after the first line".to_owned());
            return;
        }
        if header.format != PACKAGE_FORMAT {
            let reason = format!(
                "format {:?} is not {PACKAGE_FORMAT:?}, the format this program reads",
                header.format
            );
            self.push_break(line, reason);
        }
        if (header.scope == Scope::Manual) != header.manual.is_some() {
            let reason = "the scope and the manual disagree".to_owned();
            self.push_break(line, reason);
        }
        self.header = Some(header);
    }

    fn event_line(&mut self, line: u64, event: EventLine) -> Option<StoredEvent> {
        self.events += 1;
        let Some(header) = &self.header else {
            if line == 1 {
                self.push_break(
                    line,
                    "the package does not begin with its header".to_owned(),
                );
            }
            return None;
        };
        let mut problems = Vec::new();
        match header.scope {
            Scope::Ledger if event.position != self.last_position + 1 => problems.push(format!(
                "position {} follows position {}: a whole-ledger package has every position",
                event.position, self.last_position
            )),
            Scope::Manual if event.position <= self.last_position => problems.push(format!(
                "position {} does not follow position {}",
                event.position, self.last_position
            )),
            _ => {}
        }
        if event.position > header.ledger_position {
            problems.push(format!(
                "position {} is past the export's ledger position {}",
                event.position, header.ledger_position
            ));
        }
        if let Some(manual) = &header.manual {
            if &event.stream != manual {
                problems.push(format!(
                    "stream {} in a package of manual {manual}",
                    event.stream
                ));
            }
        }
        self.last_position = self.last_position.max(event.position);
        for reason in problems {
            self.push_break(line, reason);
        }
        *self.counts.entry(event.stream.clone()).or_insert(0) += 1;
        let (row, metadata) = match event_row(&event) {
            Ok(decoded) => decoded,
            Err(reason) => {
                self.push_chain_break(line, &event.stream, event.version, reason);
                return None;
            }
        };
        let was_broken = self.chains.is_broken(&row.stream);
        self.chains.observe(&row);
        if !was_broken && self.chains.is_broken(&row.stream) {
            self.chain_break_lines
                .entry(row.stream.clone())
                .or_insert(line);
        }
        Some(stored_event(row, event.payload, metadata))
    }

    fn push_break(&mut self, line: u64, reason: String) {
        if self.breaks.len() < MAX_LISTED_BREAKS {
            self.breaks.push(PackageBreak {
                line: Some(line),
                stream: None,
                version: None,
                reason,
            });
        }
    }

    fn push_chain_break(&mut self, line: u64, stream: &str, version: i64, reason: String) {
        if self.chain_break_lines.contains_key(stream) {
            return;
        }
        self.chain_break_lines.insert(stream.to_owned(), line);
        self.chains.record_break(stream, version, reason);
    }

    /// Ends the check: the manifest against what was read.
    pub fn finish(mut self) -> PackageReport {
        let manifest = self.manifest.take();
        match &manifest {
            None if self.line == 0 => self.breaks.push(PackageBreak {
                line: None,
                stream: None,
                version: None,
                reason: "the package is empty".to_owned(),
            }),
            None => self.breaks.push(PackageBreak {
                line: None,
                stream: None,
                version: None,
                reason: "the package has no manifest: it is cut short".to_owned(),
            }),
            Some((line, manifest)) => self.check_manifest(*line, manifest),
        }
        if self.header.is_none() && self.line > 0 {
            self.push_break(1, "the package does not begin with its header".to_owned());
        }
        let mut breaks = self.breaks;
        for chain_break in self.chains.finish() {
            let line = self.chain_break_lines.get(&chain_break.stream).copied();
            breaks.push(PackageBreak {
                line,
                stream: Some(chain_break.stream),
                version: Some(chain_break.version),
                reason: chain_break.reason,
            });
        }
        breaks.sort_by_key(|found| found.line.unwrap_or(u64::MAX));
        PackageReport {
            header: self.header,
            manifest: manifest.map(|(_, manifest)| manifest),
            events: self.events,
            breaks,
        }
    }

    fn check_manifest(&mut self, line: u64, manifest: &PackageManifest) {
        let digest = format!("sha256:{}", hex::encode(self.digest.clone().finalize()));
        if manifest.digest != digest {
            let reason = format!(
                "the manifest's digest {} is not the digest of the lines before it ({digest}): \
                 a line was changed, added or removed",
                manifest.digest
            );
            self.push_break(line, reason);
        }
        if let Some(header) = &self.header {
            let same = manifest.format == header.format
                && manifest.scope == header.scope
                && manifest.manual == header.manual
                && manifest.ledger_position == header.ledger_position
                && manifest.exported_at == header.exported_at
                && manifest.exported_by == header.exported_by;
            if !same {
                self.push_break(line, "the manifest and the header disagree".to_owned());
            }
        }
        if manifest.events != self.events {
            let reason = format!(
                "the manifest counts {} events, the package holds {}",
                manifest.events, self.events
            );
            self.push_break(line, reason);
        }
        if manifest.scope == Scope::Ledger && self.last_position != manifest.ledger_position {
            let reason = format!(
                "the ledger was at position {} but the package ends at position {}",
                manifest.ledger_position, self.last_position
            );
            self.push_break(line, reason);
        }
        self.check_heads(line, &manifest.streams);
    }

    fn check_heads(&mut self, line: u64, heads: &[StreamHead]) {
        let mut named = BTreeMap::new();
        for head in heads {
            if named.insert(head.stream.as_str(), head).is_some() {
                self.push_break(
                    line,
                    format!("the manifest names stream {} twice", head.stream),
                );
            }
            // Every stream in a package starts at version 1, so its count is its version.
            let counted = self.counts.get(&head.stream).copied().unwrap_or(0);
            if head.events != counted || head.events != head.version {
                let reason = format!(
                    "the manifest counts {} events to version {} of stream {}, the package holds {counted}",
                    head.events, head.version, head.stream
                );
                self.push_break(line, reason);
            }
            self.chains
                .check_head(&head.stream, head.version, &head.hash);
            if self.chains.is_broken(&head.stream) {
                self.chain_break_lines
                    .entry(head.stream.clone())
                    .or_insert(line);
            }
        }
        let unnamed: Vec<String> = self
            .counts
            .keys()
            .filter(|stream| !named.contains_key(stream.as_str()))
            .cloned()
            .collect();
        for stream in unnamed {
            self.push_break(line, format!("the manifest does not name stream {stream}"));
        }
    }
}

/// The event's stored form, exactly as the store hashes it, and its metadata.
fn event_row(event: &EventLine) -> Result<(EventRow, EventMetadata), String> {
    let metadata: EventMetadata = serde_json::from_value(event.metadata.clone())
        .map_err(|error| format!("unreadable metadata: {error}"))?;
    let recorded_at = DateTime::parse_from_rfc3339(&event.recorded_at)
        .map_err(|error| {
            format!(
                "recorded_at {:?} is not a timestamp: {error}",
                event.recorded_at
            )
        })?
        .with_timezone(&Utc);
    let row = EventRow {
        position: event.position,
        event_id: event.event_id,
        caller_id: event.caller_id.clone(),
        stream: event.stream.clone(),
        version: event.version,
        event_type: event.event_type.clone(),
        schema_version: event.schema_version,
        payload_json: canonical_json(&event.payload),
        metadata_json: canonical_json(&event.metadata),
        business_date: event.business_date,
        recorded_at,
        hash: event.hash.clone(),
    };
    Ok((row, metadata))
}

fn stored_event(row: EventRow, payload: serde_json::Value, metadata: EventMetadata) -> StoredEvent {
    StoredEvent {
        event_id: row.event_id,
        caller_id: row.caller_id,
        stream: row.stream,
        version: row.version,
        position: row.position,
        event_type: row.event_type,
        schema_version: row.schema_version,
        payload,
        metadata,
        business_date: row.business_date,
        recorded_at: row.recorded_at,
        hash: row.hash,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::{event_hash, GENESIS};

    /// Events of two interleaved streams, chained as the store chains them.
    fn events() -> Vec<StoredEvent> {
        let mut previous: HashMap<&str, [u8; 32]> = HashMap::new();
        let mut versions: HashMap<&str, i64> = HashMap::new();
        let mut out = Vec::new();
        for (index, stream) in ["A", "B", "A", "A", "B"].into_iter().enumerate() {
            let position = index as i64 + 1;
            let version = versions.entry(stream).or_insert(0);
            *version += 1;
            let mut row = EventRow {
                position,
                event_id: Uuid::now_v7(),
                caller_id: Some(format!("line-{position}")),
                stream: stream.to_owned(),
                version: *version,
                event_type: "material_imported".to_owned(),
                schema_version: 1,
                payload_json: format!(r#"{{"movement":{{"qty":"{position}.5"}}}}"#),
                metadata_json: r#"{"actor":"cli","causation_id":null,"correlation_id":null}"#
                    .to_owned(),
                business_date: NaiveDate::from_ymd_opt(2026, 3, 1).expect("a date"),
                recorded_at: DateTime::from_timestamp_micros(1_790_000_000_000_000 + position)
                    .expect("a time"),
                hash: String::new(),
            };
            let hash = event_hash(previous.get(stream).unwrap_or(&GENESIS), &row);
            previous.insert(stream, hash);
            row.hash = hex::encode(hash);
            out.push(row.into_stored().expect("a stored event"));
        }
        out
    }

    fn package(events: &[StoredEvent]) -> Vec<String> {
        let head = events.last().map_or(0, |event| event.position);
        let mut writer = PackageWriter::new(None, head, Utc::now());
        let mut lines = vec![writer.header_line()];
        lines.extend(events.iter().map(|event| writer.event_line(event)));
        lines.push(writer.finish().0);
        lines
    }

    fn check(lines: &[String]) -> PackageReport {
        let mut verifier = PackageVerifier::new();
        for line in lines {
            verifier.line(line.as_bytes());
        }
        verifier.finish()
    }

    #[test]
    fn a_package_as_written_is_intact_and_gives_back_its_events() {
        let events = events();
        let lines = package(&events);
        let mut verifier = PackageVerifier::new();
        let restored: Vec<StoredEvent> = lines
            .iter()
            .filter_map(|line| verifier.line(line.as_bytes()))
            .collect();
        let report = verifier.finish();
        assert!(report.intact(), "{:?}", report.breaks);
        assert_eq!(restored, events);
        let manifest = report.manifest.expect("a manifest");
        assert_eq!(manifest.events, 5);
        assert_eq!(
            manifest
                .streams
                .iter()
                .map(|head| (head.stream.as_str(), head.version))
                .collect::<Vec<_>>(),
            vec![("A", 3), ("B", 2)]
        );
    }

    #[test]
    fn a_changed_quantity_is_named_by_stream_and_version() {
        let mut lines = package(&events());
        lines[4] = lines[4].replace("4.5", "40.5");
        let report = check(&lines);
        let chain_break = report
            .breaks
            .iter()
            .find(|found| found.stream.is_some())
            .expect("a chain break");
        assert_eq!(chain_break.stream.as_deref(), Some("A"));
        assert_eq!(chain_break.version, Some(3));
        assert_eq!(chain_break.line, Some(5));
        assert!(report
            .breaks
            .iter()
            .any(|found| found.reason.contains("digest")));
    }

    #[test]
    fn swapped_lines_a_cut_and_a_missing_manifest_are_breaks() {
        let lines = package(&events());
        let mut swapped = lines.clone();
        swapped.swap(1, 3);
        assert!(!check(&swapped).intact());
        let mut cut = lines.clone();
        cut.truncate(4);
        let report = check(&cut);
        assert!(report
            .breaks
            .iter()
            .any(|found| found.reason.contains("no manifest")));
        let mut half = lines.clone();
        let last = half.len() - 1;
        half[last] = half[last][..half[last].len() / 2].to_owned();
        assert!(!check(&half).intact());
        assert!(!check(&[]).intact());
    }

    #[test]
    fn a_manifest_naming_another_head_is_a_break_in_that_stream() {
        let mut lines = package(&events());
        let last = lines.len() - 1;
        let mut manifest: serde_json::Value =
            serde_json::from_str(&lines[last]).expect("a manifest");
        manifest["manifest"]["streams"][1]["version"] = serde_json::json!(1);
        manifest["manifest"]["streams"][1]["events"] = serde_json::json!(1);
        lines[last] = format!("{manifest}\n");
        let report = check(&lines);
        assert!(
            report
                .breaks
                .iter()
                .any(|found| found.stream.as_deref() == Some("B") && found.version == Some(2)),
            "{:?}",
            report.breaks
        );
    }
}
