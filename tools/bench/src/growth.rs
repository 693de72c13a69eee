//! How appends and reads keep their speed as the ledger grows: the ledger is
//! filled checkpoint by checkpoint (generated histories imported through the
//! ledger library), and at each the same measurements are taken, so the
//! figures of a 1,000,000-event ledger sit next to those of a 10,000,000-event
//! one. Figures print as each checkpoint is measured: a long run that stops
//! early keeps what it measured. Only the timeline projection, which its
//! queries read, is kept up; the others can be rebuilt afterwards.

use std::time::{Duration, Instant};

use anyhow::Context;
use bondledger_ledger::Ledger;

use crate::commands::{append_one, fill_to, hs4_filters, Mixer, TIMELINE_PAGE_EVENTS};
use crate::data;
use crate::figures::{self, latency_figures, per_second, Figure};

/// A stream read asks for a page of this many events, as a history page does.
const STREAM_PAGE_EVENTS: usize = 100;

/// What one checkpoint measures.
pub struct Measures {
    /// Single-movement appends, each decided and committed alone.
    pub appends: usize,
    /// Stream reads and timeline queries each.
    pub queries: usize,
}

/// Fills the ledger to `step`, `2 × step`, … `scale` events and measures at each.
pub async fn growth(
    ledger: &Ledger,
    backend: &str,
    scale: usize,
    step: usize,
    measures: &Measures,
) -> anyhow::Result<()> {
    let tag = data::run_tag();
    let append_manual = data::register_for_appends(ledger, &tag, 0).await?;
    let mut appended = 0;
    let mut checkpoint = step.min(scale);
    loop {
        fill_to(ledger, checkpoint).await?;
        ledger
            .runner()
            .catch_up("timeline", &mut |_, _, _| {})
            .await?;
        let head = ledger.store().head_position().await? as usize;
        let mut measured = Vec::new();
        measured
            .push(single_appends(ledger, &append_manual, appended, measures.appends, head).await?);
        appended += measures.appends;
        measured.extend(stream_reads(ledger, measures.queries, head).await?);
        measured.extend(timeline_pages(ledger, measures.queries, head).await?);
        figures::print("growth", backend, &measured);
        if checkpoint >= scale {
            return Ok(());
        }
        checkpoint = (checkpoint + step).min(scale);
    }
}

async fn single_appends(
    ledger: &Ledger,
    manual: &str,
    first_index: usize,
    count: usize,
    head: usize,
) -> anyhow::Result<Figure> {
    let started = Instant::now();
    for index in first_index..first_index + count {
        append_one(ledger, manual, index).await?;
    }
    Ok(Figure::new(
        "growth_single_movement_appends",
        per_second(count, started.elapsed()),
        "appends/s",
        head,
    ))
}

/// A page of the stream of the event at a random position, from that
/// event's version: an index probe per partition the page spans, and the page.
async fn stream_reads(ledger: &Ledger, queries: usize, head: usize) -> anyhow::Result<Vec<Figure>> {
    anyhow::ensure!(head > 0, "the ledger holds no event to read");
    let mut random = Mixer(head as u64 ^ 0x5EED);
    let mut samples: Vec<Duration> = Vec::with_capacity(queries);
    for _ in 0..queries {
        let after = random.below(head) as i64;
        let rows = ledger.store().timeline_rows(after, 1).await?;
        let row = rows
            .first()
            .with_context(|| format!("no timeline row after position {after}"))?;
        let started = Instant::now();
        let page = ledger
            .store()
            .read_stream(&row.manual, row.version, STREAM_PAGE_EVENTS)
            .await
            .with_context(|| format!("reading {} from version {}", row.manual, row.version))?;
        samples.push(started.elapsed());
        anyhow::ensure!(
            !page.is_empty(),
            "{} has no version {}",
            row.manual,
            row.version
        );
    }
    Ok(latency_figures(
        "growth_read_stream_page_100",
        &samples,
        head,
    ))
}

/// The first page of a random 4-digit HS prefix, as the store answers the API.
async fn timeline_pages(
    ledger: &Ledger,
    queries: usize,
    head: usize,
) -> anyhow::Result<Vec<Figure>> {
    let mut random = Mixer(head as u64);
    let mut samples = Vec::with_capacity(queries);
    for filter in hs4_filters(&mut random, queries) {
        let started = Instant::now();
        ledger
            .store()
            .timeline(&filter, 0, TIMELINE_PAGE_EVENTS)
            .await?;
        samples.push(started.elapsed());
    }
    Ok(latency_figures(
        "growth_timeline_hs4_page_100",
        &samples,
        head,
    ))
}
