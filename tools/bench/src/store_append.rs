//! `append`: the event store alone. Durable single-event appends (one
//! transaction each, one after another), then appends in batches of 1,000
//! events, on streams of its own.

use std::time::Instant;

use anyhow::Context;
use bondledger_store::{EventMetadata, EventStore, ExpectedVersion, NewEvent};
use serde_json::json;

use crate::figures::{per_second, Figure};

const BATCH_EVENTS: usize = 1_000;

pub async fn run(store: &dyn EventStore, events: usize) -> anyhow::Result<Vec<Figure>> {
    let run = uuid::Uuid::now_v7().simple().to_string();
    Ok(vec![
        single_event_appends(store, &run, events).await?,
        batched_appends(store, &run, events).await?,
    ])
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
    Ok(Figure::new(
        "single_event_appends",
        per_second(events, started.elapsed()),
        "appends/s",
        events,
    ))
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
    Ok(Figure::new(
        "batched_appends_1000",
        per_second(events, started.elapsed()),
        "events/s",
        events,
    ))
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
        })
        .into(),
        metadata: EventMetadata {
            actor: Some("bench".to_owned()),
            correlation_id: None,
            causation_id: None,
        },
        business_date: chrono::NaiveDate::from_ymd_opt(2024, 3, 15).unwrap_or_default(),
    }
}
