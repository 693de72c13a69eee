//! The measurements of issue 6 beyond the store's own appends, each on the
//! ledger library (or, for peak memory, the `bondledger` binary).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use bondledger_domain::Mode;
use bondledger_ledger::{AsOf, Ledger};
use bondledger_store::readmodel::TimelineFilter;

use crate::data;
use crate::figures::{latency_figures, milliseconds, per_second, percentile, Figure};
use crate::floor;

/// Timeline queries ask for pages of this many events, as the API does.
pub(crate) const TIMELINE_PAGE_EVENTS: usize = 100;
/// Full timeline queries (every matching event) are slow by nature: a few suffice.
const MAX_FULL_TIMELINE_QUERIES: usize = 20;
/// How often the peak memory of a child process is read.
const MEMORY_POLL: Duration = Duration::from_millis(2);
/// The follower pauses this long when it finds nothing to apply.
const FOLLOWER_IDLE: Duration = Duration::from_millis(5);

/// The manuals a generated import file is spread over unless told.
pub(crate) const IMPORT_MANUALS: u32 = 10;

/// Import throughput: a generated file (or `file`) imported through the
/// ledger library in strict mode, one durable transaction. A generated file
/// over other than [`IMPORT_MANUALS`] manuals names its figures after them
/// (`import_2000_manuals`, …), so both go in one set of results.
pub async fn import(
    ledger: &Ledger,
    url: &str,
    scale: usize,
    file: Option<&Path>,
    manuals: u32,
) -> anyhow::Result<Vec<Figure>> {
    let dir = tempfile::tempdir().context("a temporary directory")?;
    let name = |figure: &str| match file {
        None if manuals != IMPORT_MANUALS => format!("{figure}_{manuals}_manuals"),
        _ => figure.to_owned(),
    };
    let path = match file {
        Some(path) => path.to_owned(),
        None => {
            let path = dir.path().join("import.jsonl");
            let per_manual = (scale as u64).div_ceil(u64::from(manuals));
            data::generate(&path, &data::run_tag(), 1, manuals, per_manual)?;
            path
        }
    };
    let (appended, elapsed) = data::import(ledger, &path).await?;
    anyhow::ensure!(
        appended > 0,
        "{} appended nothing: already held?",
        path.display()
    );
    let through = ledger.store().head_position().await?;
    let copied = floor::import_rows(ledger.store().backend(), through - appended as i64, through);
    let floor = floor::copy_time(url, &copied).await?;
    Ok(vec![
        Figure::new(
            name("import"),
            per_second(appended, elapsed),
            "movements/s",
            appended,
        ),
        Figure::new(
            name("import_wall_time"),
            elapsed.as_secs_f64(),
            "s",
            appended,
        ),
        Figure::new(
            name("import_engine_floor"),
            per_second(appended, floor),
            "movements/s",
            appended,
        ),
    ])
}

/// Single-movement durable appends through the ledger (each decided against
/// its manual's state and committed alone): one writer, then `writers`
/// writers at once, each on a manual of its own.
pub async fn appends(ledger: &Ledger, scale: usize, writers: usize) -> anyhow::Result<Vec<Figure>> {
    let tag = data::run_tag();
    let manual = data::register_for_appends(ledger, &tag, 0).await?;
    let started = Instant::now();
    for index in 0..scale {
        append_one(ledger, &manual, index).await?;
    }
    let single = per_second(scale, started.elapsed());

    let per_writer = scale.div_ceil(writers).max(1);
    let mut manuals = Vec::new();
    for writer in 1..=writers {
        manuals.push(data::register_for_appends(ledger, &tag, writer).await?);
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for manual in manuals {
        let ledger = ledger.clone();
        tasks.push(tokio::spawn(async move {
            for index in 0..per_writer {
                append_one(&ledger, &manual, index).await?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await.context("a writer stopped")??;
    }
    let concurrent = per_second(per_writer * writers, started.elapsed());
    Ok(vec![
        Figure::new("single_movement_appends", single, "appends/s", scale),
        Figure::new(
            format!("single_movement_appends_{writers}_writers"),
            concurrent,
            "appends/s",
            per_writer * writers,
        ),
    ])
}

pub(crate) async fn append_one(ledger: &Ledger, manual: &str, index: usize) -> anyhow::Result<()> {
    let line = data::import_line(manual, index);
    ledger
        .import_text("append", &line, Mode::Strict, Some("bench"))
        .await
        .with_context(|| format!("appending movement {index} to {manual}"))?;
    Ok(())
}

/// `bondledger verify` of one manual of `scale` events, as a process of its
/// own: wall time and peak memory, replayed from the start (no snapshot
/// yet), then again once the projections have written snapshots.
pub async fn verify(
    ledger: &Ledger,
    url: &str,
    scale: usize,
    manual: Option<String>,
    binary: &Path,
) -> anyhow::Result<Vec<Figure>> {
    let manual = match manual {
        Some(manual) => manual,
        None => data::one_manual(ledger, scale as u64).await?,
    };
    let events = ledger.store().stream_version(&manual).await? as usize;
    anyhow::ensure!(events > 0, "no manual {manual} in the ledger");
    eprintln!("bondledger-bench: measured manual {manual} ({events} events)");
    let (cold_time, cold_peak) = measure_verify(binary, url, &manual)?;
    ledger.catch_up(&mut |_, _, _| {}).await?;
    let (warm_time, warm_peak) = measure_verify(binary, url, &manual)?;
    Ok(vec![
        Figure::new("verify_wall_time", cold_time.as_secs_f64(), "s", events),
        Figure::new("verify_peak_rss", cold_peak, "MiB", events),
        Figure::new(
            "verify_from_snapshot_wall_time",
            warm_time.as_secs_f64(),
            "s",
            events,
        ),
        Figure::new("verify_from_snapshot_peak_rss", warm_peak, "MiB", events),
    ])
}

/// Runs `bondledger verify MANUAL`; its wall time and peak resident memory
/// (VmHWM, read from /proc while it runs) in MiB.
fn measure_verify(binary: &Path, url: &str, manual: &str) -> anyhow::Result<(Duration, f64)> {
    let started = Instant::now();
    let mut child = Command::new(binary)
        .args(["--database-url", url, "verify", manual, "--format", "json"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0_u64;
    let status = loop {
        if let Some(kib) = std::fs::read_to_string(&status_path)
            .ok()
            .as_deref()
            .and_then(high_water_mark_kib)
        {
            peak_kib = peak_kib.max(kib);
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
        std::thread::sleep(MEMORY_POLL);
    };
    let elapsed = started.elapsed();
    let output = child.wait_with_output()?;
    anyhow::ensure!(
        status.success(),
        "bondledger verify {manual} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    anyhow::ensure!(
        peak_kib > 0,
        "the peak memory of the verify process could not be read"
    );
    Ok((elapsed, peak_kib as f64 / 1024.0))
}

/// The `VmHWM` line of /proc/PID/status, in KiB.
fn high_water_mark_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The balance as of a random position of one manual of `scale` events,
/// through `Ledger::balances` with snapshots present: p50 and p99.
pub async fn as_of(
    ledger: &Ledger,
    scale: usize,
    manual: Option<String>,
    queries: usize,
) -> anyhow::Result<Vec<Figure>> {
    let manual = match manual {
        Some(manual) => manual,
        None => data::one_manual(ledger, scale as u64).await?,
    };
    ledger.catch_up(&mut |_, _, _| {}).await?;
    let events = ledger.store().stream_version(&manual).await?;
    anyhow::ensure!(events > 0, "no manual {manual} in the ledger");
    let mut random = Mixer(events as u64);
    let mut samples = Vec::with_capacity(queries);
    for _ in 0..queries {
        let position = 1 + (random.next() % events as u64) as i64;
        let started = Instant::now();
        let balances = ledger
            .balances(&manual, AsOf::Version(position))
            .await?
            .context("the manual vanished")?;
        let balance = bondledger_ledger::json::balance_json(&balances);
        samples.push(started.elapsed());
        anyhow::ensure!(
            balance["materials"].is_array(),
            "a balance without materials"
        );
    }
    Ok(latency_figures("as_of_balance", &samples, events as usize))
}

/// Projection catch-up from position 0 over a ledger of at least `scale`
/// events (filled with generated histories where it holds fewer), then the
/// lag of a follower while `rate` single movements a second are appended
/// for `seconds`.
pub async fn catch_up(
    ledger: &Ledger,
    url: &str,
    scale: usize,
    rate: u32,
    seconds: u32,
) -> anyhow::Result<Vec<Figure>> {
    fill_to(ledger, scale).await?;
    let head = ledger.store().head_position().await? as usize;
    let mut figures = Vec::new();
    for status in ledger.projection_status().await? {
        let started = Instant::now();
        ledger.rebuild(status.name, &mut |_, _, _| {}).await?;
        figures.push(Figure::new(
            format!("catch_up_{}", status.name),
            per_second(head, started.elapsed()),
            "events/s",
            head,
        ));
        if status.name == "timeline" {
            let floor = floor::copy_time(url, &floor::timeline_rows(head as i64)).await?;
            figures.push(Figure::new(
                "catch_up_timeline_engine_floor",
                per_second(head, floor),
                "events/s",
                head,
            ));
        }
    }
    // All of them at once, in one pass over the log.
    let started = Instant::now();
    ledger.rebuild_all(&mut |_, _, _| {}).await?;
    figures.push(Figure::new(
        "catch_up_all",
        per_second(head, started.elapsed()),
        "events/s",
        head,
    ));
    figures.extend(lag_under_load(ledger, rate, seconds).await?);
    Ok(figures)
}

async fn lag_under_load(ledger: &Ledger, rate: u32, seconds: u32) -> anyhow::Result<Vec<Figure>> {
    let manual = data::register_for_appends(ledger, &data::run_tag(), 0).await?;
    ledger.catch_up(&mut |_, _, _| {}).await?;
    let appends = (rate * seconds) as usize;
    let interval = Duration::from_secs(1) / rate;
    let appender = {
        let ledger = ledger.clone();
        tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            for index in 0..appends {
                tokio::time::sleep_until(started + interval * index as u32).await;
                append_one(&ledger, &manual, index).await?;
            }
            anyhow::Ok(started.elapsed())
        })
    };
    let mut lags = Vec::new();
    while !appender.is_finished() {
        let behind = ledger
            .projection_status()
            .await?
            .iter()
            .map(|s| s.behind())
            .max()
            .unwrap_or(0);
        lags.push(behind as f64);
        ledger.catch_up(&mut |_, _, _| {}).await?;
        if behind == 0 {
            tokio::time::sleep(FOLLOWER_IDLE).await;
        }
    }
    let elapsed = appender.await.context("the appender stopped")??;
    let samples = lags.len();
    Ok(vec![
        Figure::new(
            "appends_during_lag",
            per_second(appends, elapsed),
            "appends/s",
            appends,
        ),
        Figure::new(
            "projection_lag_p50",
            percentile(&mut lags, 50.0),
            "events",
            samples,
        ),
        Figure::new(
            "projection_lag_p99",
            percentile(&mut lags, 99.0),
            "events",
            samples,
        ),
        Figure::new(
            "projection_lag_max",
            percentile(&mut lags, 100.0),
            "events",
            samples,
        ),
    ])
}

/// Timeline queries by HS prefix over a ledger of at least `scale` events:
/// the first page of a 4-digit prefix (what the API answers), and every
/// event of one 10-digit code.
pub async fn timeline(
    ledger: &Ledger,
    scale: usize,
    queries: usize,
) -> anyhow::Result<Vec<Figure>> {
    fill_to(ledger, scale).await?;
    ledger.catch_up(&mut |_, _, _| {}).await?;
    let head = ledger.store().head_position().await? as usize;
    let codes = bondledger_gen::hs_codes();
    let mut random = Mixer(head as u64);
    let mut pages = Vec::with_capacity(queries);
    for filter in hs4_filters(&mut random, queries) {
        let started = Instant::now();
        ledger
            .timeline_page(&filter, 0, TIMELINE_PAGE_EVENTS)
            .await?;
        pages.push(started.elapsed());
    }
    let mut full = Vec::new();
    let mut matched = 0_usize;
    for _ in 0..queries.min(MAX_FULL_TIMELINE_QUERIES) {
        let filter = TimelineFilter {
            hs_prefix: Some(codes[random.below(codes.len())].to_owned()),
            ..TimelineFilter::default()
        };
        let started = Instant::now();
        ledger.timeline(&filter, false, |_| matched += 1).await?;
        full.push(started.elapsed());
    }
    let mut figures = latency_figures("timeline_hs4_page_100", &pages, head);
    figures.extend(latency_figures("timeline_hs10_all", &full, head));
    let mean = matched as f64 / full.len().max(1) as f64;
    figures.push(Figure::new(
        "timeline_hs10_all_matches_mean",
        mean,
        "events",
        head,
    ));
    Ok(figures)
}

/// Fills the ledger with generated histories until it holds `scale` events.
pub(crate) async fn fill_to(ledger: &Ledger, scale: usize) -> anyhow::Result<()> {
    let head = ledger.store().head_position().await? as usize;
    if head < scale {
        let started = Instant::now();
        let appended = data::fill(ledger, (scale - head) as u64, 10).await?;
        eprintln!(
            "bondledger-bench: imported {appended} generated movements in {:.0} ms first",
            milliseconds(started.elapsed())
        );
    }
    Ok(())
}

/// `count` timeline filters, each by a random 4-digit prefix of the
/// generator's HS codes.
pub(crate) fn hs4_filters(random: &mut Mixer, count: usize) -> Vec<TimelineFilter> {
    let codes = bondledger_gen::hs_codes();
    let mut prefixes: Vec<&str> = codes.iter().map(|code| &code[..4]).collect();
    prefixes.dedup();
    (0..count)
        .map(|_| TimelineFilter {
            hs_prefix: Some(prefixes[random.below(prefixes.len())].to_owned()),
            ..TimelineFilter::default()
        })
        .collect()
}

/// A SplitMix64 stream for picking positions and prefixes.
pub(crate) struct Mixer(pub u64);

impl Mixer {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub(crate) fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound.max(1) as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_high_water_mark_is_read_in_kib() {
        let status =
            "Name:\tbondledger\nVmPeak:\t  20000 kB\nVmHWM:\t   12345 kB\nVmRSS:\t 1000 kB\n";
        assert_eq!(high_water_mark_kib(status), Some(12_345));
        assert_eq!(high_water_mark_kib("Name:\tzombie\n"), None);
    }
}
