//! The corpus each target starts from: files under `tools/fuzz/corpus/`,
//! kept in the repository, seeded from the demo history and grown with
//! what libFuzzer finds.

use std::path::{Path, PathBuf};

use bondledger_domain::{parse_line, RecordedMovement, SCHEMA_VERSION};
use serde_json::Value;

use crate::{stored_event_selector, TARGETS};

/// The demo history shipped with the binary: the seeds' source.
const DEMO: [&str; 2] = [
    include_str!("../../../crates/bondledger-cli/demo/01-electronics.jsonl"),
    include_str!("../../../crates/bondledger-cli/demo/02-consigned-toys.jsonl"),
];

/// `tools/fuzz/corpus`.
pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus")
}

/// Every input of a target's corpus, in file-name order.
pub fn load(target: &str) -> Result<Vec<Vec<u8>>, String> {
    let dir = dir().join(target);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|error| format!("{}: {error}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.is_file())
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|path| std::fs::read(path).map_err(|error| format!("{}: {error}", path.display())))
        .collect()
}

/// A short, stable name for an input (FNV-1a).
pub fn digest(input: &[u8]) -> u64 {
    input.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Writes the seeds of every target into `dir`; how many.
pub fn write_seeds(dir: &Path) -> Result<usize, String> {
    let lines: Vec<&str> = DEMO
        .iter()
        .flat_map(|file| file.lines())
        .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
        .collect();
    let mut written = 0;
    let mut keep = |target: &str, input: &[u8]| -> Result<(), String> {
        let target_dir = dir.join(target);
        std::fs::create_dir_all(&target_dir).map_err(|e| e.to_string())?;
        let path = target_dir.join(format!("seed-{:016x}", digest(input)));
        std::fs::write(&path, input).map_err(|e| format!("{}: {e}", path.display()))?;
        written += 1;
        Ok(())
    };
    for file in DEMO {
        keep("movement_file", file.as_bytes())?;
    }
    for line in &lines {
        keep(
            "movement_file",
            format!("# one line\n{line}\r\n").as_bytes(),
        )?;
        keep("api_body", line.as_bytes())?;
        let value: Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
        let envelope = parse_line(value).map_err(|e| e.to_string())?;
        let recorded = RecordedMovement::new(envelope);
        let mut input = vec![stored_event_selector(recorded.kind(), SCHEMA_VERSION)];
        input.extend_from_slice(recorded.payload().to_string().as_bytes());
        keep("stored_event", &input)?;
    }
    for batch in lines.chunks(7) {
        keep("api_body", format!("[{}]", batch.join(",")).as_bytes())?;
    }
    for (target, _) in TARGETS {
        keep(target, b"")?;
    }
    Ok(written)
}
