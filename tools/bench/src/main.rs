//! `bondledger-bench append --database-url URL [--events N]`: measures, on one backend,
//! durable single-event appends (one transaction each, one after another) and appends in
//! batches of 1,000 events. Prints one JSON line per figure on stdout
//! (`{"name","value","unit","backend","scale"}`) and a readable summary on stderr.
//! It appends to streams of its own; run it on a scratch database.

use std::time::{Duration, Instant};

use anyhow::Context;
use bondledger_store::{Backend, EventMetadata, EventStore, ExpectedVersion, NewEvent};
use clap::{Parser, Subcommand};
use serde_json::json;

const BATCH_EVENTS: usize = 1_000;
/// One phase appends at most this many events.
const MAX_EVENTS: usize = 10_000_000;

#[derive(Parser)]
#[command(
    name = "bondledger-bench",
    about = "Measures the Bondledger event store"
)]
struct Arguments {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Append throughput: single-event transactions, then 1,000-event batches.
    Append {
        #[arg(long, env = "BONDLEDGER_DATABASE_URL")]
        database_url: String,
        /// Events appended by each phase.
        #[arg(long, default_value_t = 2_000)]
        events: usize,
    },
}

struct Figure {
    name: &'static str,
    value: f64,
    unit: &'static str,
    scale: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Command::Append {
        database_url,
        events,
    } = Arguments::parse().command;
    anyhow::ensure!(
        (1..=MAX_EVENTS).contains(&events),
        "--events is 1 to {MAX_EVENTS}"
    );
    let store = bondledger_store::open(&database_url)
        .await
        .with_context(|| format!("opening {database_url}"))?;
    let backend = match store.backend() {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    let run = uuid::Uuid::now_v7().simple().to_string();
    let figures = [
        single_event_appends(store.as_ref(), &run, events).await?,
        batched_appends(store.as_ref(), &run, events).await?,
    ];
    for figure in &figures {
        let line = json!({
            "name": figure.name,
            "value": (figure.value * 10.0).round() / 10.0,
            "unit": figure.unit,
            "backend": backend,
            "scale": figure.scale,
        });
        println!("{line}");
    }
    eprintln!("bondledger-bench append on {backend}:");
    for figure in &figures {
        eprintln!(
            "  {:<28} {:>12.1} {} ({} events)",
            figure.name, figure.value, figure.unit, figure.scale
        );
    }
    Ok(())
}

async fn single_event_appends(
    store: &dyn EventStore,
    run: &str,
    events: usize,
) -> anyhow::Result<Figure> {
    let stream = format!("bench-{run}-single");
    let started = Instant::now();
    for index in 0..events {
        store
            .append(
                &stream,
                ExpectedVersion::Exactly(index as i64),
                vec![movement(run, index)],
            )
            .await
            .context("a single-event append")?;
    }
    Ok(Figure {
        name: "single_event_appends",
        value: per_second(events, started.elapsed()),
        unit: "appends/s",
        scale: events,
    })
}

async fn batched_appends(
    store: &dyn EventStore,
    run: &str,
    events: usize,
) -> anyhow::Result<Figure> {
    let stream = format!("bench-{run}-batched");
    // The batches are built before the clock starts: only the store is measured.
    let batches: Vec<Vec<NewEvent>> = (0..events)
        .map(|index| movement(run, events + index))
        .collect::<Vec<_>>()
        .chunks(BATCH_EVENTS)
        .map(<[NewEvent]>::to_vec)
        .collect();
    let started = Instant::now();
    let mut version = 0;
    for batch in batches {
        let appended = store
            .append(&stream, ExpectedVersion::Exactly(version), batch)
            .await
            .context("a batched append")?;
        version += appended.len() as i64;
    }
    Ok(Figure {
        name: "batched_appends_1000",
        value: per_second(events, started.elapsed()),
        unit: "events/s",
        scale: events,
    })
}

fn per_second(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64().max(f64::EPSILON)
}

/// A movement the size of a real one (about 400 bytes of payload).
fn movement(run: &str, index: usize) -> NewEvent {
    NewEvent {
        caller_id: Some(format!("{}-{index}", &run[..16])),
        event_type: "MaterialImported".to_owned(),
        schema_version: 1,
        payload: json!({
            "manual": "C2301A000123",
            "declaration": format!("2024{index:014}"),
            "supervision_mode": "0615",
            "item": 3,
            "hs": "7208510000",
            "name": "热轧钢板",
            "unit": "千克",
            "quantity": "1250.500000",
            "unit_price": "4.350000",
            "currency": "USD",
            "counterparty_enterprise": "3201930123",
            "line": index,
        }),
        metadata: EventMetadata {
            actor: Some("bench".to_owned()),
            correlation_id: None,
            causation_id: None,
        },
        business_date: chrono::NaiveDate::from_ymd_opt(2024, 3, 15).unwrap_or_default(),
    }
}
