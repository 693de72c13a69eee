//! Reading a movement file: JSON Lines, streamed, each line bounded.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use bondledger_domain::{parse_line, Envelope, Malformed};

use crate::LedgerError;

/// The longest line a movement file may hold (interchange §1).
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// One movement with the physical line it came from (from 1).
#[derive(Debug, Clone)]
pub struct Located {
    pub line: usize,
    pub envelope: Envelope,
}

/// Streams the movements of a file; blank lines and `#` comments are
/// passed over but counted, so line numbers are physical.
pub fn read_movements(path: &Path) -> impl Iterator<Item = Result<Located, LedgerError>> {
    let opened = File::open(path)
        .map(BufReader::new)
        .map_err(|e| e.to_string());
    read_lines(opened, path.display().to_string())
}

/// Lines a reading thread hands over at a time.
const AHEAD_BATCH_LINES: usize = 256;
/// Batches a reading thread may be ahead of the importer: memory stays
/// bounded whatever the file's length.
const AHEAD_BATCHES: usize = 16;

/// As [`read_movements`], the lines read and parsed on a thread of their
/// own, up to a few thousand ahead of the caller, while the caller decides
/// and appends what came before. The thread stops when the caller drops
/// the iterator. Where no thread can be started, the caller reads itself.
pub(crate) fn read_movements_ahead(
    path: &Path,
) -> Box<dyn Iterator<Item = Result<Located, LedgerError>> + Send> {
    let (sender, receiver) = std::sync::mpsc::sync_channel(AHEAD_BATCHES);
    let owned = path.to_owned();
    let spawned = std::thread::Builder::new()
        .name("bondledger-read".into())
        .spawn(move || {
            let mut movements = read_movements(&owned);
            loop {
                let batch: Vec<_> = movements.by_ref().take(AHEAD_BATCH_LINES).collect();
                if batch.is_empty() || sender.send(batch).is_err() {
                    break;
                }
            }
        });
    match spawned {
        Ok(_) => Box::new(receiver.into_iter().flatten()),
        Err(error) => {
            tracing::warn!(%error, "no reading thread; reading the file in turn");
            Box::new(read_movements(path))
        }
    }
}

/// Streams the movements of any reader, named `source_name` in errors.
pub fn read_lines<R: BufRead>(
    reader: Result<R, String>,
    source_name: String,
) -> impl Iterator<Item = Result<Located, LedgerError>> {
    let mut reader = reader;
    let mut line = 0usize;
    let mut finished = false;
    std::iter::from_fn(move || loop {
        if finished {
            return None;
        }
        let file = match &mut reader {
            Ok(file) => file,
            Err(error) => {
                finished = true;
                return Some(Err(LedgerError::Unreadable {
                    source_name: source_name.clone(),
                    message: error.clone(),
                }));
            }
        };
        line += 1;
        let mut bytes = Vec::new();
        let limit = (MAX_LINE_BYTES + 2) as u64;
        match file.by_ref().take(limit).read_until(b'\n', &mut bytes) {
            Ok(0) => {
                finished = true;
                return None;
            }
            Ok(_) => {}
            Err(error) => {
                finished = true;
                return Some(Err(LedgerError::Unreadable {
                    source_name: source_name.clone(),
                    message: error.to_string(),
                }));
            }
        }
        let malformed = |message: String| LedgerError::Malformed {
            source_name: source_name.clone(),
            line,
            malformed: Malformed {
                field: None,
                message,
            },
        };
        if bytes.last() == Some(&b'\n') {
            bytes.pop();
            if bytes.last() == Some(&b'\r') {
                bytes.pop();
            }
        }
        if bytes.len() > MAX_LINE_BYTES {
            finished = true;
            return Some(Err(malformed(format!(
                "the line is longer than {MAX_LINE_BYTES} bytes"
            ))));
        }
        let Ok(text) = std::str::from_utf8(&bytes) else {
            finished = true;
            return Some(Err(malformed("the line is not UTF-8".into())));
        };
        let trimmed = text.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let parsed = serde_json::from_str(trimmed)
            .map_err(|e| malformed(format!("not JSON: {e}")))
            .and_then(|value| {
                parse_line(value).map_err(|malformed| LedgerError::Malformed {
                    source_name: source_name.clone(),
                    line,
                    malformed,
                })
            });
        if parsed.is_err() {
            finished = true;
        }
        return Some(parsed.map(|envelope| Located { line, envelope }));
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn movement_line(index: usize) -> String {
        format!(
            r#"{{"id":"m-{index}","type":"material_imported","manual":"C22012600001","date":"2026-01-22","material":1,"qty":"{index}","declaration":"220120261000010001","mode":"0615"}}"#
        )
    }

    fn file_of(lines: &[String]) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().expect("a temporary file");
        for line in lines {
            writeln!(file, "{line}").expect("written");
        }
        file
    }

    fn outcome(item: Result<Located, LedgerError>) -> Result<(usize, Envelope), String> {
        item.map(|located| (located.line, located.envelope))
            .map_err(|error| error.to_string())
    }

    #[test]
    fn a_file_read_ahead_reads_as_a_file_read_in_turn() {
        // Several batches of the reading thread, a comment, a blank line and
        // a malformed line past the first batch.
        let mut lines: Vec<String> = (1..=3 * AHEAD_BATCH_LINES).map(movement_line).collect();
        lines.insert(5, "# a comment".into());
        lines.insert(9, String::new());
        lines.insert(AHEAD_BATCH_LINES + 7, r#"{"type":"nonsense"}"#.into());
        let file = file_of(&lines);
        let in_turn: Vec<_> = read_movements(file.path()).map(outcome).collect();
        let ahead: Vec<_> = read_movements_ahead(file.path()).map(outcome).collect();
        assert_eq!(ahead, in_turn);
        // Reading ends at the malformed line (the file's 264th), after the
        // 261 movements before it.
        assert_eq!(ahead.len(), AHEAD_BATCH_LINES + 6);
        assert!(ahead[..AHEAD_BATCH_LINES + 5].iter().all(Result::is_ok));
        let refused = ahead.last().and_then(|item| item.as_ref().err());
        assert!(
            refused.is_some_and(|e| e.contains(&format!(":{}: malformed", AHEAD_BATCH_LINES + 8))),
            "{refused:?}"
        );
    }

    #[test]
    fn a_file_read_ahead_can_be_left_early_and_a_missing_one_is_named() {
        let lines: Vec<String> = (1..=20 * AHEAD_BATCH_LINES).map(movement_line).collect();
        let file = file_of(&lines);
        let first: Vec<_> = read_movements_ahead(file.path())
            .take(3)
            .map(outcome)
            .collect();
        assert_eq!(first.len(), 3);
        assert_eq!(first[2].as_ref().map(|(line, _)| *line), Ok(3));
        let missing = std::path::Path::new("/nonexistent/bondledger/movements.jsonl");
        let read: Vec<_> = read_movements_ahead(missing).map(outcome).collect();
        assert_eq!(
            read,
            read_movements(missing).map(outcome).collect::<Vec<_>>()
        );
        assert!(read[0]
            .as_ref()
            .is_err_and(|e| e.contains("movements.jsonl")));
    }
}
