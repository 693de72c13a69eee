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
