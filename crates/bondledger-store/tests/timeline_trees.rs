//! SQLite's timeline tables after migration 0011: a ledger whose timeline was
//! written under the tables of 0002 keeps every row, key and checkpoint, and
//! answers the same timeline queries, once the tables are rebuilt with one
//! B-tree fewer each (a rowid position, keys WITHOUT ROWID).

use std::borrow::Cow;
use std::path::Path;

use bondledger_store::readmodel::{Change, ProjectionBatch, TimelineFilter, TimelineRow};
use bondledger_store::{open, EventMetadata, ExpectedVersion, NewEvent, StoredEvent};
use chrono::NaiveDate;
use serde_json::json;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{Connection, Executor};

/// The migrations a ledger had before the timeline's tables were rebuilt.
const MIGRATIONS_BEFORE_TIMELINE_TREES: usize = 10;

fn events(manual: &str, count: i64) -> Vec<NewEvent> {
    (1..=count)
        .map(|line| NewEvent {
            caller_id: Some(format!("{manual}-{line}")),
            event_type: "MaterialImported".to_owned(),
            schema_version: 1,
            payload: json!({"line": line, "quantity": "12.500000"}),
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

async fn schema_sql(path: &Path, table: &str) -> String {
    let mut connection =
        SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(path))
            .await
            .expect("the ledger opens");
    let (sql,): (String,) = sqlx::query_as("SELECT sql FROM sqlite_master WHERE name = ?")
        .bind(table)
        .fetch_one(&mut connection)
        .await
        .expect("the table is there");
    let (indexes,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = ? \
         AND name LIKE 'sqlite_autoindex_%'",
    )
    .bind(table)
    .fetch_one(&mut connection)
    .await
    .expect("its indexes are listed");
    connection.close().await.expect("close");
    format!("{sql} / {indexes} automatic indexes")
}

#[tokio::test]
async fn a_timeline_written_before_0011_is_kept_whole_and_answers_alike() {
    let dir = tempfile::tempdir().expect("a scratch directory");
    let source_path = dir.path().join("source.db");
    let old_path = dir.path().join("old.db");

    // The rows, made by the store as it is now.
    let source_url = format!("sqlite://{}", source_path.display());
    let source = open(&source_url).await.expect("the source ledger opens");
    source
        .append("m1", ExpectedVersion::Exactly(0), events("m1", 40))
        .await
        .expect("append");
    source
        .append("m2", ExpectedVersion::Exactly(0), events("m2", 25))
        .await
        .expect("append");
    let all = source.read_all(0, 1_000).await.expect("read_all");
    assert_eq!(all.len(), 65);
    source
        .commit_projection(timeline_batch(&all))
        .await
        .expect("timeline rows");
    let filters = [
        TimelineFilter {
            hs_prefix: Some("7208".to_owned()),
            ..TimelineFilter::default()
        },
        TimelineFilter {
            hs_prefix: Some("392010".to_owned()),
            ..TimelineFilter::default()
        },
        TimelineFilter {
            counterparty: Some("C1".to_owned()),
            ..TimelineFilter::default()
        },
        TimelineFilter {
            declaration: Some("D12".to_owned()),
            ..TimelineFilter::default()
        },
        TimelineFilter {
            manuals: vec!["m2".to_owned()],
            from: NaiveDate::from_ymd_opt(2024, 3, 10),
            to: NaiveDate::from_ymd_opt(2024, 3, 20),
            ..TimelineFilter::default()
        },
    ];
    let mut expected = Vec::new();
    for filter in &filters {
        let found = source.timeline(filter, 0, 1_000).await.expect("timeline");
        assert!(!found.is_empty(), "{filter:?} finds events to compare");
        expected.push(found);
    }
    let expected_rows = source.timeline_rows(0, 1_000).await.expect("timeline rows");
    assert_eq!(expected_rows.len(), 65);
    drop(source);

    // The same rows under the tables of migrations 0001–0010.
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
        Cow::Owned(migrator.migrations[..MIGRATIONS_BEFORE_TIMELINE_TREES].to_vec());
    migrator
        .run(&mut old)
        .await
        .expect("migrations 0001–0010 run");
    old.execute(sqlx::raw_sql(&format!(
        "ATTACH DATABASE '{}' AS source;
         INSERT INTO streams SELECT * FROM source.streams;
         INSERT INTO events SELECT * FROM source.events ORDER BY position;
         UPDATE ledger_head SET position = (SELECT position FROM source.ledger_head),
                                recorded_at = (SELECT recorded_at FROM source.ledger_head);
         INSERT INTO rm_timeline SELECT * FROM source.rm_timeline;
         INSERT INTO rm_timeline_keys SELECT * FROM source.rm_timeline_keys;
         INSERT INTO projection_checkpoints SELECT * FROM source.projection_checkpoints;
         DETACH DATABASE source;",
        source_path.display()
    )))
    .await
    .expect("the rows are copied into the old tables");
    old.close().await.expect("close");
    let before = schema_sql(&old_path, "rm_timeline_keys").await;
    assert!(!before.contains("WITHOUT ROWID"), "{before}");
    assert!(
        schema_sql(&old_path, "rm_timeline")
            .await
            .ends_with("/ 1 automatic indexes"),
        "before 0011 the timeline's position is an index beside the rowid"
    );

    // Opening it migrates; every answer stands.
    let upgraded = open(&format!("sqlite://{}", old_path.display()))
        .await
        .expect("the old ledger opens and migrates");
    assert_eq!(
        upgraded
            .timeline_rows(0, 1_000)
            .await
            .expect("timeline rows"),
        expected_rows
    );
    assert_eq!(
        upgraded.checkpoint("timeline").await.expect("checkpoint"),
        65
    );
    for (filter, expected) in filters.iter().zip(&expected) {
        assert_eq!(
            &upgraded.timeline(filter, 0, 1_000).await.expect("timeline"),
            expected,
            "{filter:?}"
        );
    }
    drop(upgraded);
    let keys = schema_sql(&old_path, "rm_timeline_keys").await;
    assert!(keys.contains("WITHOUT ROWID"), "{keys}");
    let timeline = schema_sql(&old_path, "rm_timeline").await;
    assert!(
        timeline.contains("position      INTEGER PRIMARY KEY")
            && timeline.ends_with("/ 0 automatic indexes"),
        "{timeline}"
    );
}
