//! Replica lag under load: writers append movements to the primary as fast
//! as they can while a sampler takes the primary's log position and times how
//! long the replica takes to replay past it.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bondledger_domain::Mode;
use bondledger_ledger::Ledger;

use crate::data;
use crate::figures::{milliseconds, per_second, percentile, Figure};

/// Between two samples of the lag.
const SAMPLE_EVERY: Duration = Duration::from_millis(50);
/// How often the replica is asked whether it got there.
const POLL: Duration = Duration::from_millis(1);
/// A replica that has not replayed a commit by then is reported as failing.
const GIVE_UP: Duration = Duration::from_secs(60);

pub async fn replica_lag(
    ledger: &Ledger,
    read_url: &str,
    writers: usize,
    batch: usize,
    seconds: u32,
) -> anyhow::Result<Vec<Figure>> {
    let replica = bondledger_store::open_read_replica(read_url)
        .await
        .with_context(|| format!("opening the replica at {read_url}"))?;
    let tag = data::run_tag();
    let mut manuals = Vec::new();
    for writer in 0..writers {
        manuals.push(data::register_for_appends(ledger, &tag, writer).await?);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let appended = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for manual in manuals {
        let (ledger, stop, appended) = (ledger.clone(), stop.clone(), appended.clone());
        tasks.push(tokio::spawn(async move {
            let mut index = 0;
            while !stop.load(Ordering::Relaxed) {
                let lines: Vec<String> = (index..index + batch)
                    .map(|i| data::import_line(&manual, i))
                    .collect();
                ledger
                    .import_text(
                        "replica-lag",
                        &lines.join("\n"),
                        Mode::Strict,
                        Some("bench"),
                    )
                    .await
                    .with_context(|| format!("appending to {manual}"))?;
                index += batch;
                appended.fetch_add(batch, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }

    let mut lag_ms = Vec::new();
    let mut behind_bytes = Vec::new();
    let deadline = started + Duration::from_secs(u64::from(seconds));
    while Instant::now() < deadline {
        let mark = ledger
            .write_mark()
            .await?
            .context("the primary has no write-ahead log: replica lag is PostgreSQL's")?;
        let committed = Instant::now();
        let mut first = true;
        loop {
            let replayed = replica
                .log_mark()
                .await?
                .wal
                .context("the replica's log position")?;
            if first {
                behind_bytes.push(mark.bytes_after(replayed) as f64);
                first = false;
            }
            if replayed >= mark {
                break;
            }
            anyhow::ensure!(
                committed.elapsed() < GIVE_UP,
                "the replica did not replay {mark} within {GIVE_UP:?}"
            );
            tokio::time::sleep(POLL).await;
        }
        lag_ms.push(milliseconds(committed.elapsed()));
        tokio::time::sleep(SAMPLE_EVERY).await;
    }
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.context("a writer stopped")??;
    }
    let elapsed = started.elapsed();
    let movements = appended.load(Ordering::Relaxed);
    let samples = lag_ms.len();
    Ok(vec![
        Figure::new(
            "appends_during_replica_lag",
            per_second(movements, elapsed),
            "movements/s",
            movements,
        ),
        Figure::new(
            "replica_lag_p50",
            percentile(&mut lag_ms, 50.0),
            "ms",
            samples,
        ),
        Figure::new(
            "replica_lag_p99",
            percentile(&mut lag_ms, 99.0),
            "ms",
            samples,
        ),
        Figure::new(
            "replica_lag_max",
            percentile(&mut lag_ms, 100.0),
            "ms",
            samples,
        ),
        Figure::new(
            "replica_behind_p99",
            percentile(&mut behind_bytes, 99.0),
            "bytes",
            samples,
        ),
    ])
}
