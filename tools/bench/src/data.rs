//! What the benchmarks measure on: generated histories imported through the
//! ledger library, manuals registered for single appends, and the
//! `bondledger` binary for measurements that need a process of their own.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use bondledger_domain::Mode;
use bondledger_gen::Options;
use bondledger_ledger::Ledger;
use serde_json::json;

/// A generated file holds at most this many movements: one import is one
/// transaction, and a bigger one only grows the write-ahead log.
const MOVEMENTS_PER_FILE: u64 = 1_000_000;

/// A tag of 8 of A-Z 0-9, new every millisecond: manual numbers and ids of
/// this run never meet those of an earlier run on the same database.
pub fn run_tag() -> String {
    let hex = uuid::Uuid::now_v7().simple().to_string().to_uppercase();
    hex[4..12].to_owned()
}

/// A tag for the `part`th of several histories of one run.
fn part_tag(tag: &str, part: u64) -> String {
    let letters = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut tag = tag[..6].to_owned();
    tag.push(char::from(letters[(part / 26 % 26) as usize]));
    tag.push(char::from(letters[(part % 26) as usize]));
    tag
}

/// Generates a history of `manuals` manuals × `per_manual` movements into `path`.
pub fn generate(
    path: &Path,
    tag: &str,
    seed: u64,
    manuals: u32,
    per_manual: u64,
) -> anyhow::Result<()> {
    let options = Options {
        seed,
        manuals,
        movements: per_manual,
        tag: tag.to_owned(),
        ..Options::default()
    };
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    bondledger_gen::generate(&options, std::io::BufWriter::with_capacity(1 << 20, file))
        .context("generating a history")?;
    Ok(())
}

/// Imports a movement file in strict mode; returns the movements appended
/// (the ledger's head moved by as many: the benchmarks run alone) and how
/// long the import took.
pub async fn import(ledger: &Ledger, path: &Path) -> anyhow::Result<(usize, Duration)> {
    let head_before = ledger.store().head_position().await?;
    let started = Instant::now();
    ledger
        .import_file(path, Mode::Strict, Some("bench"))
        .await
        .with_context(|| format!("importing {}", path.display()))?;
    let elapsed = started.elapsed();
    let head_after = ledger.store().head_position().await?;
    Ok(((head_after - head_before) as usize, elapsed))
}

/// Generates and imports about `movements` movements over `manuals`
/// manuals, a file of at most a million at a time.
pub async fn fill(ledger: &Ledger, movements: u64, manuals: u32) -> anyhow::Result<usize> {
    let dir = tempfile::tempdir().context("a temporary directory")?;
    let tag = run_tag();
    let mut appended = 0;
    let mut part = 0;
    let mut left = movements;
    while left > 0 {
        let this_file = left.min(MOVEMENTS_PER_FILE);
        let per_manual = this_file.div_ceil(u64::from(manuals)).max(1);
        let path = dir.path().join(format!("part-{part}.jsonl"));
        generate(&path, &part_tag(&tag, part), 1 + part, manuals, per_manual)?;
        appended += import(ledger, &path).await?.0;
        left -= this_file;
        part += 1;
    }
    Ok(appended)
}

/// Generates and imports one manual of `movements` movements; returns its number.
pub async fn one_manual(ledger: &Ledger, movements: u64) -> anyhow::Result<String> {
    let dir = tempfile::tempdir().context("a temporary directory")?;
    let tag = run_tag();
    let path = dir.path().join("one-manual.jsonl");
    generate(&path, &tag, 7, 1, movements)?;
    import(ledger, &path).await?;
    first_manual(&path)
}

/// The manual the first movement of a file names.
fn first_manual(path: &Path) -> anyhow::Result<String> {
    use std::io::BufRead;
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    for line in std::io::BufReader::new(file).lines() {
        let line = line?;
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(&line)?;
        return value["manual"]
            .as_str()
            .map(str::to_owned)
            .context("a movement without a manual");
    }
    anyhow::bail!("{} holds no movement", path.display())
}

/// A manual of one material registered for single appends: `BENCH{tag}{n}`.
pub async fn register_for_appends(
    ledger: &Ledger,
    tag: &str,
    writer: usize,
) -> anyhow::Result<String> {
    let manual = format!("BENCH{tag}{writer:03}");
    let registration = json!({
        "id": format!("{manual}-0"), "type": "manual_registered", "manual": manual,
        "date": "2026-01-05", "trade_mode": "purchased", "enterprise": "3201930123",
        "valid_until": "2027-12-31",
        "materials": [{"item": 1, "hs": "7208510000", "name": "热轧钢板", "spec": "Q235B 12mm",
                        "unit": "千克", "qty": "100000000000"}],
        "products": [{"item": 1, "hs": "9403200000", "name": "钢制货架", "spec": "2000x900x400",
                       "unit": "件", "qty": "100000000"}],
    });
    ledger
        .import_text(
            "registration",
            &registration.to_string(),
            Mode::Strict,
            Some("bench"),
        )
        .await
        .context("registering a manual for appends")?;
    Ok(manual)
}

/// One import declaration (料件进口) on a manual of [`register_for_appends`].
pub fn import_line(manual: &str, index: usize) -> String {
    json!({
        "id": format!("{manual}-{}", index + 1), "type": "material_imported", "manual": manual,
        "date": "2026-03-15", "material": 1, "qty": "1250.5",
        "declaration": format!("2201{:014}", index % 100_000_000_000_000),
        "mode": "0615", "value": "775.31", "currency": "USD",
    })
    .to_string()
}

/// The `bondledger` binary: `--bondledger`, `BONDLEDGER_BIN`, or beside this one.
pub fn bondledger_binary(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = given {
        return Ok(path.to_owned());
    }
    if let Ok(path) = std::env::var("BONDLEDGER_BIN") {
        return Ok(PathBuf::from(path));
    }
    let own = std::env::current_exe().context("this binary's own path")?;
    let beside = own.with_file_name(format!("bondledger{}", std::env::consts::EXE_SUFFIX));
    anyhow::ensure!(
        beside.exists(),
        "{} is missing: build it (`cargo build -p bondledger-cli`) or pass --bondledger",
        beside.display()
    );
    Ok(beside)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_eight_of_a_to_z_and_digits() {
        let tag = run_tag();
        assert_eq!(tag.len(), 8);
        assert!(tag
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()));
        assert_ne!(part_tag(&tag, 0), part_tag(&tag, 1));
        assert_eq!(part_tag(&tag, 27).len(), 8);
    }
}
