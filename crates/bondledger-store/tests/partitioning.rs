//! PostgreSQL's partitioned event log (docs/adr/0003-partitioning.md): a ledger
//! made before partitioning upgrades with every event, id and read model intact,
//! every partition and `event_keys` refuse changes, and two processes making
//! partitions at once do not get in each other's way.
//!
//! PostgreSQL comes from `BONDLEDGER_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`); each test works in schemas of its
//! own, dropped afterwards. When PostgreSQL cannot be reached the tests fail if
//! `CI=true` and otherwise warn loudly and pass, as the contract tests do.

use std::borrow::Cow;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bondledger_store::readmodel::{Change, ProjectionBatch, TimelineRow};
use bondledger_store::{
    open, EventMetadata, EventStore, ExpectedVersion, NewEvent, StoreError, StoredEvent,
};
use chrono::NaiveDate;
use futures::FutureExt;
use serde_json::json;
use sqlx::{Connection, Executor, PgConnection};

const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The migrations a ledger had before its events were partitioned.
const MIGRATIONS_BEFORE_PARTITIONING: usize = 4;

/// Runs `test` with URLs of `schemas` fresh schemas, dropped afterwards.
async fn with_schemas<F, T>(schemas: usize, test: F)
where
    F: FnOnce(Vec<String>) -> T,
    T: Future<Output = ()>,
{
    let base_url = std::env::var("BONDLEDGER_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned());
    let Some(mut admin) = connect_or_skip(&base_url).await else {
        return;
    };
    let names: Vec<String> = (0..schemas)
        .map(|_| format!("partitioning_{}", uuid::Uuid::now_v7().simple()))
        .collect();
    for name in &names {
        admin
            .execute(sqlx::raw_sql(&format!("CREATE SCHEMA {name}")))
            .await
            .expect("a schema for the test");
    }
    let separator = if base_url.contains('?') { '&' } else { '?' };
    let urls = names
        .iter()
        .map(|name| format!("{base_url}{separator}options=-c%20search_path%3D{name}"))
        .collect();
    let outcome = AssertUnwindSafe(test(urls)).catch_unwind().await;
    for name in &names {
        admin
            .execute(sqlx::raw_sql(&format!("DROP SCHEMA {name} CASCADE")))
            .await
            .expect("the test's schema is dropped");
    }
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

async fn connect_or_skip(url: &str) -> Option<PgConnection> {
    let error = match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect(url)).await {
        Ok(Ok(connection)) => return Some(connection),
        Ok(Err(error)) => error.to_string(),
        Err(_) => format!("no answer within {CONNECT_TIMEOUT:?}"),
    };
    if std::env::var("CI").is_ok_and(|value| value == "true") {
        panic!("PostgreSQL at {url} cannot be reached ({error}), and CI=true requires it");
    }
    let warning = format!(
        "\n!! WARNING: PostgreSQL at {url} cannot be reached: {error}\n\
         !! This PostgreSQL partitioning test was NOT run; with CI=true this is a failure.\n"
    );
    let _ = std::io::Write::write_all(&mut std::io::stderr(), warning.as_bytes());
    None
}

async fn execute(url: &str, sql: &str) -> Result<u64, sqlx::Error> {
    let mut connection = PgConnection::connect(url).await?;
    let done = connection.execute(sqlx::raw_sql(sql)).await?;
    connection.close().await?;
    Ok(done.rows_affected())
}

async fn query_strings(url: &str, sql: &str) -> Vec<String> {
    let mut connection = PgConnection::connect(url).await.expect("connect");
    let rows: Vec<(String,)> = sqlx::query_as(sql)
        .fetch_all(&mut connection)
        .await
        .expect("query");
    rows.into_iter().map(|(value,)| value).collect()
}

fn event(caller_id: Option<&str>, line: i64) -> NewEvent {
    NewEvent {
        caller_id: caller_id.map(str::to_owned),
        event_type: "MaterialImported".to_owned(),
        schema_version: 1,
        payload: json!({"line": line, "quantity": "12.500000", "hs": "7208510000"}).into(),
        metadata: EventMetadata::default(),
        business_date: NaiveDate::from_ymd_opt(2024, 3, 15).expect("a valid date"),
    }
}

fn events(prefix: &str, count: i64) -> Vec<NewEvent> {
    (1..=count)
        .map(|line| event(Some(&format!("{prefix}-{line}")), line))
        .collect()
}

async fn read_all_fully(store: &dyn EventStore) -> Vec<StoredEvent> {
    let mut all: Vec<StoredEvent> = Vec::new();
    loop {
        let after = all.last().map_or(0, |event| event.position);
        let page = store.read_all(after, 1_000).await.expect("read_all");
        if page.is_empty() {
            return all;
        }
        all.extend(page);
    }
}

/// A timeline row for each event, as the timeline projection would write them.
fn timeline_batch(all: &[StoredEvent]) -> ProjectionBatch {
    ProjectionBatch {
        projection: "timeline".to_owned(),
        from_position: 0,
        to_position: all.last().map_or(0, |event| event.position),
        changes: all
            .iter()
            .map(|event| {
                Change::Timeline(TimelineRow {
                    position: event.position,
                    manual: event.stream.clone(),
                    version: event.version,
                    event_type: event.event_type.clone(),
                    business_date: "2024-03-15".to_owned(),
                    declaration: Some(format!("D{}", event.position)),
                    hs: vec!["7208510000".to_owned()],
                    counterparties: vec![format!("C{}", event.position % 3)],
                })
            })
            .collect(),
    }
}

/// A ledger written with the schema of migrations 0001–0004: the rows of a
/// ledger made by the store, copied over into tables that migration made.
async fn ledger_before_partitioning(source_url: &str, old_url: &str) {
    let source = open(source_url).await.expect("a source ledger opens");
    source
        .append("m1", ExpectedVersion::Exactly(0), events("m1", 30))
        .await
        .expect("append");
    source
        .append(
            "m2",
            ExpectedVersion::Exactly(0),
            vec![event(None, 1), event(None, 2)],
        )
        .await
        .expect("events without caller ids");
    source
        .append("m2", ExpectedVersion::Exactly(2), events("m2", 10))
        .await
        .expect("append");
    source
        .append("m1", ExpectedVersion::Exactly(30), events("m1-more", 5))
        .await
        .expect("append");
    let all = read_all_fully(source.as_ref()).await;
    source
        .commit_projection(timeline_batch(&all))
        .await
        .expect("timeline rows");

    let migrations_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations/postgres");
    let mut migrator = sqlx::migrate::Migrator::new(migrations_path)
        .await
        .expect("the migrations are read");
    migrator.migrations =
        Cow::Owned(migrator.migrations[..MIGRATIONS_BEFORE_PARTITIONING].to_vec());
    let mut old = PgConnection::connect(old_url).await.expect("connect");
    migrator
        .run(&mut old)
        .await
        .expect("migrations 0001–0004 run");
    old.close().await.expect("close");
    let source_schema = query_strings(source_url, "SELECT current_schema()::text").await;
    let from = &source_schema[0];
    let columns = "position, event_id, caller_id, stream, version, event_type, schema_version, \
                   payload, metadata, business_date, recorded_at, hash";
    execute(
        old_url,
        &format!(
            "INSERT INTO streams SELECT * FROM {from}.streams;
             INSERT INTO events ({columns}) SELECT {columns} FROM {from}.events ORDER BY position;
             UPDATE ledger_head SET position = source.position, recorded_at = source.recorded_at
               FROM {from}.ledger_head source WHERE ledger_head.id = 1;
             INSERT INTO projection_checkpoints SELECT * FROM {from}.projection_checkpoints;"
        ),
    )
    .await
    .expect("the rows are copied into the old schema");
    let old_tables = query_strings(
        old_url,
        "SELECT relkind::text FROM pg_class WHERE relname = 'events' AND relnamespace = current_schema()::regnamespace",
    )
    .await;
    assert_eq!(
        old_tables,
        vec!["r"],
        "before 0005 the events are one plain table"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_ledger_made_before_partitioning_upgrades_with_everything_intact() {
    with_schemas(2, |urls| async move {
        let (source_url, old_url) = (&urls[0], &urls[1]);
        ledger_before_partitioning(source_url, old_url).await;
        let source = open(source_url).await.expect("the source reopens");
        let expected = read_all_fully(source.as_ref()).await;
        let expected_timeline = source.timeline_rows(0, 1_000).await.expect("timeline");
        assert_eq!(expected.len(), 47);
        assert_eq!(expected_timeline.len(), 47);

        let upgraded = open(old_url)
            .await
            .expect("the old ledger opens and migrates");
        assert_eq!(read_all_fully(upgraded.as_ref()).await, expected);
        assert!(upgraded
            .verify_chain(None)
            .await
            .expect("verify")
            .is_empty());
        assert!(upgraded
            .verify_chain(Some("m2"))
            .await
            .expect("verify")
            .is_empty());
        // The timeline is given up by 0012, to be written again in blocks
        // (below, as a rebuild would); the other checkpoints stand.
        assert!(upgraded
            .timeline_rows(0, 1_000)
            .await
            .expect("timeline")
            .is_empty());
        assert_eq!(
            upgraded.checkpoint("timeline").await.expect("checkpoint"),
            0
        );
        assert_eq!(
            query_strings(old_url, "SELECT count(*)::text FROM event_keys").await,
            vec!["47"]
        );
        let bounds = query_strings(
            old_url,
            "SELECT pg_get_expr(relpartbound, oid) FROM pg_class \
             WHERE relname = 'events_legacy' AND relnamespace = current_schema()::regnamespace",
        )
        .await;
        assert_eq!(bounds, vec!["FOR VALUES FROM (MINVALUE) TO ('1000001')"]);

        // Idempotency keys of the old rows are held, and still unique.
        let ids: Vec<String> = ["m1-1", "m2-10", "m1-more-5"].map(str::to_owned).to_vec();
        let found = upgraded.find_by_caller_ids(&ids).await.expect("find");
        let by_source = source.find_by_caller_ids(&ids).await.expect("find");
        assert_eq!(found.len(), 3);
        assert_eq!(found, by_source);
        let retried = upgraded
            .append("m1", ExpectedVersion::Exactly(0), events("m1", 30))
            .await
            .expect("a retry of old events");
        assert!(retried.is_empty(), "the old caller ids are held");
        let other = upgraded
            .append("m2", ExpectedVersion::Any, vec![event(Some("m1-3"), 77)])
            .await;
        assert!(matches!(other, Err(StoreError::IdConflict { caller_id }) if caller_id == "m1-3"));

        // The log goes on from where it was, chained to the old events.
        let next = upgraded
            .append("m2", ExpectedVersion::Exactly(12), events("m2-new", 2))
            .await
            .expect("appends go on");
        assert_eq!((next[0].version, next[0].position), (13, 48));
        assert!(upgraded
            .verify_chain(None)
            .await
            .expect("verify")
            .is_empty());

        // A rebuild clears the partitioned read models and writes them again.
        upgraded.reset_projection("timeline").await.expect("reset");
        assert!(upgraded
            .timeline_rows(0, 1_000)
            .await
            .expect("timeline")
            .is_empty());
        upgraded
            .commit_projection(timeline_batch(&expected))
            .await
            .expect("the timeline written again");
        assert_eq!(
            upgraded.timeline_rows(0, 1_000).await.expect("timeline"),
            expected_timeline
        );

        // The old table, now a partition, still refuses changes.
        for sql in [
            "UPDATE events_legacy SET payload = '{}' WHERE position = 1",
            "DELETE FROM events_legacy WHERE position = 2",
            "TRUNCATE events_legacy",
        ] {
            let refused = execute(old_url, sql).await.expect_err(sql).to_string();
            assert!(refused.contains("append-only"), "{sql}: {refused}");
        }
        assert_eq!(read_all_fully(upgraded.as_ref()).await.len(), 49);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_partition_and_event_keys_refuse_update_delete_and_truncate() {
    with_schemas(1, |urls| async move {
        let url = &urls[0];
        open(url).await.expect("a fresh ledger opens");
        execute(url, "UPDATE event_partitioning SET width = 4")
            .await
            .expect("narrow partitions");
        let store = open(url).await.expect("the ledger reopens");
        store
            .append("s", ExpectedVersion::Exactly(0), events("s", 10))
            .await
            .expect("append");
        let before = read_all_fully(store.as_ref()).await;
        let mut tables = query_strings(
            url,
            "SELECT relid::text FROM pg_partition_tree('events') WHERE isleaf ORDER BY relid::text",
        )
        .await;
        assert!(
            tables
                .iter()
                .filter(|table| table.starts_with("events_from_"))
                .count()
                >= 3,
            "{tables:?}"
        );
        tables.push("event_keys".to_owned());
        for table in &tables {
            for sql in [
                format!("UPDATE {table} SET caller_id = 'x'"),
                format!("UPDATE {table} SET caller_id = 'x' WHERE false"),
                format!("DELETE FROM {table}"),
                format!("DELETE FROM {table} WHERE false"),
                format!("TRUNCATE {table}"),
            ] {
                let refused = execute(url, &sql).await.expect_err(&sql).to_string();
                assert!(refused.contains("append-only"), "{sql}: {refused}");
            }
        }
        assert_eq!(read_all_fully(store.as_ref()).await, before);
        assert!(store.verify_chain(None).await.expect("verify").is_empty());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_making_partitions_at_once_lose_no_event() {
    const WRITERS: usize = 4;
    const APPENDS_PER_WRITER: i64 = 15;
    with_schemas(1, |urls| async move {
        let url = urls[0].clone();
        open(&url).await.expect("a fresh ledger opens");
        execute(&url, "UPDATE event_partitioning SET width = 3")
            .await
            .expect("narrow partitions");
        // Two stores stand for two processes: each keeps its own idea of the partitions.
        let stores: Vec<Arc<dyn EventStore>> = vec![
            open(&url).await.expect("one process"),
            open(&url).await.expect("another process"),
        ];
        let mut writers = Vec::new();
        for writer in 0..WRITERS {
            let store = Arc::clone(&stores[writer % stores.len()]);
            writers.push(tokio::spawn(async move {
                let stream = format!("w{writer}");
                for line in 1..=APPENDS_PER_WRITER {
                    store
                        .append(
                            &stream,
                            ExpectedVersion::Exactly((line - 1) * 2),
                            vec![
                                event(Some(&format!("{stream}-{line}")), line),
                                event(None, line),
                            ],
                        )
                        .await
                        .expect("an append beside another process's");
                }
            }));
        }
        // Someone making partitions by hand meanwhile changes nothing either.
        for upto in [10, 40, 90, 40] {
            execute(
                &url,
                &format!("SELECT bondledger_ensure_event_partitions({upto})"),
            )
            .await
            .expect("partitions made");
        }
        for writer in writers {
            writer.await.expect("the writer ends");
        }
        let total = WRITERS as i64 * APPENDS_PER_WRITER * 2;
        let all = read_all_fully(stores[0].as_ref()).await;
        assert_eq!(
            all.iter().map(|event| event.position).collect::<Vec<_>>(),
            (1..=total).collect::<Vec<_>>()
        );
        assert!(stores[1]
            .verify_chain(None)
            .await
            .expect("verify")
            .is_empty());
        let ends = query_strings(&url, "SELECT partitions_end::text FROM event_partitioning").await;
        let end: i64 = ends[0].parse().expect("a number");
        assert!(
            end > total,
            "partitions end at {end}, past the head {total}"
        );
    })
    .await;
}

/// A commit of many events leaves the event tables' planner statistics fresh:
/// before autovacuum got to them, a replay's page query read and sorted the
/// whole rest of the stream for every page.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bulk_append_leaves_the_planner_statistics_fresh() {
    with_schemas(1, |urls| async move {
        let url = &urls[0];
        let store = open(url).await.expect("a fresh ledger opens");
        let most_rows_counted = || {
            query_strings(
                url,
                "SELECT max(c.reltuples)::bigint::text FROM pg_partition_tree('events') t \
                 JOIN pg_class c ON c.oid = t.relid WHERE t.isleaf",
            )
        };
        store
            .append("small", ExpectedVersion::Exactly(0), events("small", 10))
            .await
            .expect("a small append");
        assert_eq!(
            most_rows_counted().await,
            ["-1"],
            "a small append leaves the statistics to autovacuum"
        );
        store
            .append("bulk", ExpectedVersion::Exactly(0), events("bulk", 10_000))
            .await
            .expect("a bulk append");
        let counted: i64 = most_rows_counted().await[0].parse().expect("a count");
        assert_eq!(
            counted, 10_010,
            "ANALYZE counted every row of the partition"
        );
    })
    .await;
}
