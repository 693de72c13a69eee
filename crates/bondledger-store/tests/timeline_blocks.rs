//! SQLite's timeline after migration 0012: a ledger whose timeline was
//! written a row an event (the tables of 0002 and 0011) gives it up, with its
//! checkpoint, so that the next catch-up writes it again in blocks; every
//! other read model and checkpoint stays.

use std::borrow::Cow;
use std::path::Path;

use bondledger_store::readmodel::{Change, ProjectionBatch, TimelineFilter, TimelineRow};
use bondledger_store::{open, EventMetadata, ExpectedVersion, NewEvent, StoredEvent};
use chrono::NaiveDate;
use serde_json::json;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{Connection, Executor};

/// The migrations a ledger had before the timeline went into blocks.
const MIGRATIONS_BEFORE_TIMELINE_BLOCKS: usize = 11;

fn events(manual: &str, count: i64) -> Vec<NewEvent> {
    (1..=count)
        .map(|line| NewEvent {
            caller_id: Some(format!("{manual}-{line}")),
            event_type: "MaterialImported".to_owned(),
            schema_version: 1,
            payload: json!({"line": line, "quantity": "12.500000"}).into(),
            metadata: EventMetadata::default(),
            business_date: NaiveDate::from_ymd_opt(2024, 3, 15).expect("a valid date"),
        })
        .collect()
}

/// A timeline row for each event, with two HS codes on every third event and
/// a counterparty on every other, so keys of both kinds interleave.
fn timeline_batch(all: &[StoredEvent]) -> ProjectionBatch {
    ProjectionBatch {
        projection: "timeline".to_owned(),
        from_position: 0,
        to_position: all.last().map_or(0, |event| event.position),
        changes: all
            .iter()
            .map(|event| {
                let mut hs = vec![format!("72085{}0000", event.position % 4)];
                if event.position % 3 == 0 {
                    hs.push("3920100000".to_owned());
                }
                Change::Timeline(TimelineRow {
                    position: event.position,
                    manual: event.stream.clone(),
                    version: event.version,
                    event_type: event.event_type.clone(),
                    business_date: format!("2024-03-{:02}", 1 + event.position % 28),
                    declaration: (event.position % 5 != 0).then(|| format!("D{}", event.position)),
                    hs,
                    counterparties: if event.position % 2 == 0 {
                        vec![format!("C{}", event.position % 3)]
                    } else {
                        Vec::new()
                    },
                })
            })
            .collect(),
    }
}

async fn count(path: &Path, sql: &str) -> i64 {
    let mut connection =
        SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(path))
            .await
            .expect("the ledger opens");
    let (count,): (i64,) = sqlx::query_as(sql)
        .fetch_one(&mut connection)
        .await
        .expect("counted");
    connection.close().await.expect("close");
    count
}

#[tokio::test]
async fn a_timeline_written_a_row_an_event_is_rebuilt_in_blocks() {
    let dir = tempfile::tempdir().expect("a scratch directory");
    let old_path = dir.path().join("old.db");

    // A ledger as migrations 0001–0011 left it, its timeline a row an event.
    let options = SqliteConnectOptions::new()
        .filename(&old_path)
        .create_if_missing(true);
    let mut old = SqliteConnection::connect_with(&options)
        .await
        .expect("the old ledger is made");
    let migrations = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations/sqlite");
    let mut migrator = sqlx::migrate::Migrator::new(migrations)
        .await
        .expect("the migrations are read");
    migrator.migrations =
        Cow::Owned(migrator.migrations[..MIGRATIONS_BEFORE_TIMELINE_BLOCKS].to_vec());
    migrator
        .run(&mut old)
        .await
        .expect("migrations 0001–0011 run");
    old.close().await.expect("close");
    let url = format!("sqlite://{}", old_path.display());
    {
        // The store of today cannot write the old tables: the rows go in by hand.
        let mut old =
            SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(&old_path))
                .await
                .expect("the old ledger opens");
        old.execute(sqlx::raw_sql(
            "INSERT INTO rm_timeline (position, manual, version, event_type, business_date, declaration)
                 VALUES (1, 'm1', 1, 'MaterialImported', '2024-03-01', 'D1');
             INSERT INTO rm_timeline_keys (kind, value, position) VALUES ('hs', '7208500000', 1);
             INSERT INTO projection_checkpoints (name, position) VALUES ('timeline', 1), ('manuals', 1);",
        ))
        .await
        .expect("old timeline rows");
        old.close().await.expect("close");
    }

    // Opening it migrates: the timeline is to be written again from the log.
    let upgraded = open(&url).await.expect("the old ledger opens and migrates");
    assert_eq!(
        upgraded.checkpoint("timeline").await.expect("checkpoint"),
        0
    );
    assert_eq!(upgraded.checkpoint("manuals").await.expect("checkpoint"), 1);
    assert!(upgraded
        .timeline_rows(0, 1_000)
        .await
        .expect("rows")
        .is_empty());
    assert_eq!(
        count(&old_path, "SELECT count(*) FROM sqlite_master WHERE name IN ('rm_timeline', 'rm_timeline_keys', 'rm_timeline_segments')").await,
        2,
        "the row table is gone, the keys' and the segments' are there"
    );

    // Written again, in blocks, it answers from the rows it holds.
    upgraded
        .append("m1", ExpectedVersion::Exactly(0), events("m1", 1_500))
        .await
        .expect("append");
    upgraded
        .append("m2", ExpectedVersion::Exactly(0), events("m2", 25))
        .await
        .expect("append");
    let all = upgraded.read_all(0, 10_000).await.expect("read_all");
    assert_eq!(all.len(), 1_525);
    upgraded
        .commit_projection(timeline_batch(&all))
        .await
        .expect("timeline rows");
    let rows = upgraded.timeline_rows(0, 10_000).await.expect("rows");
    assert_eq!(rows.len(), 1_525);
    let found = upgraded
        .timeline(
            &TimelineFilter {
                manuals: vec!["m2".to_owned()],
                ..TimelineFilter::default()
            },
            0,
            1_000,
        )
        .await
        .expect("timeline");
    assert_eq!(found.len(), 25);
    assert!(found.iter().all(|event| event.stream == "m2"));
    // Two blocks, one segment each.
    assert_eq!(
        count(&old_path, "SELECT count(*) FROM rm_timeline_segments").await,
        2
    );
    assert_eq!(
        count(
            &old_path,
            "SELECT count(*) FROM rm_timeline_keys WHERE kind = 'manual'"
        )
        .await,
        3,
        "m1 in both blocks, m2 in the second"
    );
}
