//! The cases of the contract. Each takes a fresh ledger and says what must hold.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bondledger_store::chain::canonical_json;
use bondledger_store::readmodel::{
    BalanceRow, CarryoverRow, Change, DeadlineRow, ManualAmendment, ManualRow, ManualRows,
    ProjectionBatch, TimelineFilter, TimelineRow,
};
use bondledger_store::tokens::NewToken;
use bondledger_store::{
    Appended, EventMetadata, EventStore, ExpectedVersion, NewEvent, ReplayEvent, StoreError,
    StoredEvent, StreamAppend,
};
use chrono::NaiveDate;
use serde_json::json;
use tokio::sync::Barrier;
use uuid::Uuid;

use crate::harness::{Kind, TestLedger};

/// Long enough for any lock in these cases to be released; a wait past it is a hang.
const LOCK_WAIT: Duration = Duration::from_secs(30);

fn business_date() -> NaiveDate {
    NaiveDate::from_ymd_opt(2024, 3, 15).expect("a valid date")
}

/// A movement-like event; `line` makes payloads differ.
fn event(caller_id: Option<&str>, line: i64) -> NewEvent {
    NewEvent {
        caller_id: caller_id.map(str::to_owned),
        event_type: "MaterialImported".to_owned(),
        schema_version: 1,
        payload: json!({
            "line": line,
            "quantity": "12.500000",
            "item": {"no": 3, "hs": "7208510000", "name": "热轧钢板"},
        })
        .into(),
        metadata: EventMetadata {
            actor: Some("importer".to_owned()),
            correlation_id: Some(Uuid::now_v7()),
            causation_id: None,
        },
        business_date: business_date(),
    }
}

fn events(prefix: &str, count: i64) -> Vec<NewEvent> {
    (1..=count)
        .map(|line| event(Some(&format!("{prefix}-{line}")), line))
        .collect()
}

async fn read_stream_fully(store: &dyn EventStore, stream: &str) -> Vec<StoredEvent> {
    let mut all = Vec::new();
    loop {
        let page = store
            .read_stream(stream, all.len() as i64 + 1, 1_000)
            .await
            .expect("read_stream");
        if page.is_empty() {
            return all;
        }
        all.extend(page);
    }
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

fn versions(events: &[StoredEvent]) -> Vec<i64> {
    events.iter().map(|event| event.version).collect()
}

fn positions(events: &[StoredEvent]) -> Vec<i64> {
    events.iter().map(|event| event.position).collect()
}

pub async fn append_and_read(ledger: TestLedger) {
    let store = ledger.store.as_ref();
    assert_eq!(
        store.backend() == bondledger_store::Backend::Sqlite,
        ledger.kind == Kind::Sqlite
    );
    assert_eq!(store.head_position().await.expect("head"), 0);
    assert_eq!(store.stream_version("manual-A").await.expect("version"), 0);

    let written = events("a", 3);
    let appended = store
        .append("manual-A", ExpectedVersion::Exactly(0), written.clone())
        .await
        .expect("append");
    assert_eq!(
        appended
            .iter()
            .map(|a| (a.version, a.position))
            .collect::<Vec<_>>(),
        vec![(1, 1), (2, 2), (3, 3)]
    );
    assert_eq!(appended[0].caller_id.as_deref(), Some("a-1"));
    assert_eq!(appended[0].stream, "manual-A");
    let appended_b = store
        .append("manual-B", ExpectedVersion::Any, events("b", 2))
        .await
        .expect("append");
    assert_eq!(
        appended_b
            .iter()
            .map(|a| (a.version, a.position))
            .collect::<Vec<_>>(),
        vec![(1, 4), (2, 5)]
    );

    let read = read_stream_fully(store, "manual-A").await;
    assert_eq!(versions(&read), vec![1, 2, 3]);
    for ((stored, sent), appended) in read.iter().zip(&written).zip(&appended) {
        assert_eq!(stored.event_id, appended.event_id);
        assert_eq!(stored.event_id.get_version_num(), 7);
        assert_eq!(stored.caller_id, sent.caller_id);
        assert_eq!(stored.stream, "manual-A");
        assert_eq!(stored.position, appended.position);
        assert_eq!(stored.event_type, sent.event_type);
        assert_eq!(stored.schema_version, sent.schema_version);
        assert_eq!(stored.payload, sent.payload.to_value());
        assert_eq!(stored.metadata, sent.metadata);
        assert_eq!(stored.business_date, sent.business_date);
        assert_eq!(
            stored.recorded_at.timestamp_subsec_nanos() % 1_000,
            0,
            "microsecond precision"
        );
        assert_eq!(stored.hash.len(), 64);
        assert!(stored
            .hash
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)));
    }
    let all = read_all_fully(store).await;
    assert_eq!(positions(&all), vec![1, 2, 3, 4, 5]);
    assert!(all
        .windows(2)
        .all(|pair| pair[0].recorded_at <= pair[1].recorded_at));
    assert_eq!(store.stream_version("manual-A").await.expect("version"), 3);
    assert_eq!(store.stream_version("manual-B").await.expect("version"), 2);
    assert_eq!(store.head_position().await.expect("head"), 5);
    assert!(store
        .read_stream("manual-C", 1, 10)
        .await
        .expect("read")
        .is_empty());
    assert!(store.verify_chain(None).await.expect("verify").is_empty());
}

/// A replay's reads give the same events, pages and order as the whole
/// reads, each with its payload as the canonical text the hash covers.
pub async fn replay_reads_match_whole_reads(ledger: TestLedger) {
    let store = ledger.store.as_ref();
    store
        .append("s", ExpectedVersion::Exactly(0), events("s", 5))
        .await
        .expect("append");
    store
        .append("t", ExpectedVersion::Exactly(0), vec![event(None, 9)])
        .await
        .expect("append");
    store
        .append("s", ExpectedVersion::Exactly(5), events("s2", 2))
        .await
        .expect("append");
    let same = |whole: &StoredEvent, replay: &ReplayEvent| {
        assert_eq!(replay.position, whole.position);
        assert_eq!(replay.stream, whole.stream);
        assert_eq!(replay.version, whole.version);
        assert_eq!(replay.caller_id, whole.caller_id);
        assert_eq!(replay.event_type, whole.event_type);
        assert_eq!(replay.schema_version, whole.schema_version);
        assert_eq!(replay.business_date, whole.business_date);
        assert_eq!(replay.recorded_at, whole.recorded_at);
        assert_eq!(replay.payload_json, canonical_json(&whole.payload));
    };
    for (from_version, limit) in [(1, 100), (1, 3), (4, 3), (7, 3), (8, 3), (2, 0)] {
        let whole = store
            .read_stream("s", from_version, limit)
            .await
            .expect("read_stream");
        let replay = store
            .read_stream_for_replay("s", from_version, limit)
            .await
            .expect("read_stream_for_replay");
        assert_eq!(
            replay.len(),
            whole.len(),
            "from {from_version} limit {limit}"
        );
        whole.iter().zip(&replay).for_each(|(w, r)| same(w, r));
    }
    for (after, limit) in [(0, 100), (0, 4), (4, 4), (8, 4), (-3, 1), (3, usize::MAX)] {
        let whole = store.read_all(after, limit).await.expect("read_all");
        let replay = store
            .read_all_for_replay(after, limit)
            .await
            .expect("read_all_for_replay");
        assert_eq!(replay.len(), whole.len(), "after {after} limit {limit}");
        whole.iter().zip(&replay).for_each(|(w, r)| same(w, r));
    }
    let none_yet = store
        .read_stream_for_replay("nobody", 1, 10)
        .await
        .expect("an unknown stream reads empty");
    assert!(none_yet.is_empty());
}

pub async fn reads_are_paged(ledger: TestLedger) {
    let store = ledger.store.as_ref();
    store
        .append("s", ExpectedVersion::Exactly(0), events("s", 5))
        .await
        .expect("append");
    store
        .append("t", ExpectedVersion::Exactly(0), events("t", 2))
        .await
        .expect("append");

    let pages = [
        (1, 2, vec![1, 2]),
        (3, 2, vec![3, 4]),
        (5, 2, vec![5]),
        (6, 2, vec![]),
        (2, 0, vec![]),
    ];
    for (from_version, limit, expected) in pages {
        let page = store
            .read_stream("s", from_version, limit)
            .await
            .expect("read_stream");
        assert_eq!(
            versions(&page),
            expected,
            "from {from_version} limit {limit}"
        );
    }
    let pages = [
        (0, 3, vec![1, 2, 3]),
        (3, 3, vec![4, 5, 6]),
        (6, 3, vec![7]),
        (7, 3, vec![]),
        (-5, 1, vec![1]),
    ];
    for (after, limit, expected) in pages {
        let page = store.read_all(after, limit).await.expect("read_all");
        assert_eq!(positions(&page), expected, "after {after} limit {limit}");
    }
    let huge = store.read_all(0, usize::MAX).await.expect("read_all");
    assert_eq!(huge.len(), 7, "a huge limit is clamped, not refused");
}

pub async fn stale_expected_version_is_a_conflict_and_writes_nothing(ledger: TestLedger) {
    let store = ledger.store.as_ref();
    store
        .append("s", ExpectedVersion::Exactly(0), events("s", 2))
        .await
        .expect("append");

    let stale = store
        .append("s", ExpectedVersion::Exactly(1), events("late", 2))
        .await;
    assert!(
        matches!(&stale, Err(StoreError::Conflict { stream, expected: 1, actual: 2 }) if stream == "s"),
        "{stale:?}"
    );
    let recreate = store
        .append("s", ExpectedVersion::Exactly(0), vec![event(None, 9)])
        .await;
    assert!(matches!(
        recreate,
        Err(StoreError::Conflict {
            expected: 0,
            actual: 2,
            ..
        })
    ));
    let ahead = store
        .append("new", ExpectedVersion::Exactly(3), vec![event(None, 9)])
        .await;
    assert!(matches!(
        ahead,
        Err(StoreError::Conflict {
            expected: 3,
            actual: 0,
            ..
        })
    ));

    assert_eq!(store.stream_version("s").await.expect("version"), 2);
    assert_eq!(store.stream_version("new").await.expect("version"), 0);
    assert_eq!(store.head_position().await.expect("head"), 2);
    assert!(store
        .find_by_caller_ids(&["late-1".to_owned()])
        .await
        .expect("find")
        .is_empty());

    let next = store
        .append("s", ExpectedVersion::Exactly(2), vec![event(None, 3)])
        .await
        .expect("append");
    assert_eq!(
        (next[0].version, next[0].position),
        (3, 3),
        "a failed append gives its numbers back"
    );
}

pub async fn concurrent_appenders_race_and_one_wins_each_version(ledger: TestLedger) {
    const APPENDERS: usize = 8;
    const ROUNDS: i64 = 5;
    for round in 0..ROUNDS {
        let barrier = Arc::new(Barrier::new(APPENDERS));
        let mut tasks = Vec::new();
        for appender in 0..APPENDERS {
            let store = Arc::clone(&ledger.store);
            let barrier = Arc::clone(&barrier);
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                let caller_id = format!("r{round}-a{appender}");
                store
                    .append(
                        "contended",
                        ExpectedVersion::Exactly(round),
                        vec![event(Some(&caller_id), round)],
                    )
                    .await
            }));
        }
        let mut winners = 0;
        for task in tasks {
            match task.await.expect("the appender task ends") {
                Ok(appended) => {
                    assert_eq!(appended.len(), 1);
                    assert_eq!(appended[0].version, round + 1);
                    winners += 1;
                }
                Err(StoreError::Conflict {
                    expected, actual, ..
                }) => {
                    assert_eq!((expected, actual), (round, round + 1));
                }
                Err(other) => panic!("unexpected error: {other}"),
            }
        }
        assert_eq!(winners, 1, "round {round}");
    }
    let stream = read_stream_fully(ledger.store.as_ref(), "contended").await;
    assert_eq!(versions(&stream), (1..=ROUNDS).collect::<Vec<_>>());
    assert_eq!(positions(&stream), (1..=ROUNDS).collect::<Vec<_>>());
    assert_eq!(ledger.store.head_position().await.expect("head"), ROUNDS);
}

pub async fn same_caller_id_same_content_is_skipped(ledger: TestLedger) {
    let store = ledger.store.as_ref();
    store
        .append("s", ExpectedVersion::Exactly(0), events("id", 2))
        .await
        .expect("append");

    // id-1 is held with the same content: skipped; id-3 is new, appended after the current version.
    let mixed = vec![
        event(Some("id-1"), 1),
        event(Some("id-3"), 3),
        event(Some("id-3"), 3),
    ];
    let appended = store
        .append("s", ExpectedVersion::Exactly(2), mixed)
        .await
        .expect("append");
    assert_eq!(appended.len(), 1);
    assert_eq!(
        (appended[0].caller_id.as_deref(), appended[0].version),
        (Some("id-3"), 3)
    );

    // Metadata is not content: a retry from another actor is the same event.
    let mut retried = event(Some("id-2"), 2);
    retried.metadata.actor = Some("someone else".to_owned());
    let skipped = store
        .append("s", ExpectedVersion::Exactly(0), vec![retried])
        .await
        .expect("append");
    assert!(skipped.is_empty());
    assert_eq!(store.stream_version("s").await.expect("version"), 3);

    let ids: Vec<String> = ["id-3", "missing", "id-1"].map(str::to_owned).to_vec();
    let found = store.find_by_caller_ids(&ids).await.expect("find");
    assert_eq!(
        found
            .iter()
            .map(|e| e.caller_id.as_deref())
            .collect::<Vec<_>>(),
        vec![Some("id-1"), Some("id-3")]
    );
    assert_eq!(found[0].payload, event(None, 1).payload.to_value());
}

pub async fn same_caller_id_other_content_is_an_id_conflict(ledger: TestLedger) {
    let store = ledger.store.as_ref();
    store
        .append("s", ExpectedVersion::Exactly(0), events("id", 2))
        .await
        .expect("append");
    let mut other_date = event(Some("id-1"), 1);
    other_date.business_date = NaiveDate::from_ymd_opt(2024, 3, 16).expect("a valid date");
    let mut other_type = event(Some("id-1"), 1);
    other_type.event_type = "MaterialExported".to_owned();
    let refusals = [
        ("s", vec![event(Some("fresh"), 7), event(Some("id-1"), 99)]),
        ("s", vec![other_date]),
        ("s", vec![other_type]),
        ("elsewhere", vec![event(Some("id-1"), 1)]),
        ("s", vec![event(Some("twice"), 1), event(Some("twice"), 2)]),
    ];
    for (stream, batch) in refusals {
        let refused = store.append(stream, ExpectedVersion::Any, batch).await;
        assert!(
            matches!(&refused, Err(StoreError::IdConflict { .. })),
            "{refused:?}"
        );
    }
    assert_eq!(
        store.head_position().await.expect("head"),
        2,
        "nothing was written"
    );
    let ids = ["fresh", "twice"].map(str::to_owned);
    assert!(store
        .find_by_caller_ids(&ids)
        .await
        .expect("find")
        .is_empty());
    assert_eq!(store.stream_version("elsewhere").await.expect("version"), 0);
}

pub async fn retrying_a_committed_append_succeeds(ledger: TestLedger) {
    let store = ledger.store.as_ref();
    let batch = events("import-7", 4);
    let first = store
        .append("s", ExpectedVersion::Exactly(0), batch.clone())
        .await
        .expect("append");
    assert_eq!(first.len(), 4);
    // The caller did not hear back and retries with the expected version it had then.
    let retry = store
        .append("s", ExpectedVersion::Exactly(0), batch.clone())
        .await
        .expect("retry succeeds");
    assert!(retry.is_empty());
    let retry_any = store
        .append("s", ExpectedVersion::Any, batch)
        .await
        .expect("retry succeeds");
    assert!(retry_any.is_empty());
    assert_eq!(store.head_position().await.expect("head"), 4);
    assert_eq!(
        versions(&read_stream_fully(store, "s").await),
        vec![1, 2, 3, 4]
    );
}

pub async fn a_session_sees_its_own_appends(ledger: TestLedger) {
    let store = ledger.store.as_ref();
    let mut session = store.begin().await.expect("begin");
    session
        .append("s", ExpectedVersion::Exactly(0), events("x", 2))
        .await
        .expect("append");
    assert_eq!(session.stream_version("s").await.expect("version"), 2);
    let held = session
        .find_by_caller_ids(&["x-2".to_owned()])
        .await
        .expect("find");
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].version, 2);
    // Appended earlier in this transaction counts as held.
    let again = session
        .append("s", ExpectedVersion::Exactly(0), events("x", 2))
        .await
        .expect("append");
    assert!(again.is_empty());
    let conflict = session
        .append("s", ExpectedVersion::Any, vec![event(Some("x-1"), 5)])
        .await;
    assert!(matches!(conflict, Err(StoreError::IdConflict { .. })));
    // Not visible outside before commit.
    assert_eq!(store.stream_version("s").await.expect("version"), 0);
    assert!(store
        .find_by_caller_ids(&["x-2".to_owned()])
        .await
        .expect("find")
        .is_empty());
    session.commit().await.expect("commit");
    assert_eq!(store.stream_version("s").await.expect("version"), 2);
    assert_eq!(
        store
            .find_by_caller_ids(&["x-2".to_owned()])
            .await
            .expect("find")
            .len(),
        1
    );
}

async fn append_two_streams(store: &dyn EventStore) -> Box<dyn bondledger_store::AppendSession> {
    let mut session = store.begin().await.expect("begin");
    session
        .append("one", ExpectedVersion::Exactly(0), events("one", 2))
        .await
        .expect("append");
    session
        .append("two", ExpectedVersion::Exactly(0), events("two", 3))
        .await
        .expect("append");
    session
}

async fn assert_ledger_empty(store: &dyn EventStore) {
    assert_eq!(store.head_position().await.expect("head"), 0);
    assert_eq!(store.stream_version("one").await.expect("version"), 0);
    assert_eq!(store.stream_version("two").await.expect("version"), 0);
    assert!(store.read_all(0, 10).await.expect("read_all").is_empty());
}

/// After a session ends without commit, the ledger's lock is free again.
async fn assert_appends_go_on(store: &dyn EventStore) {
    let appended = tokio::time::timeout(
        LOCK_WAIT,
        store.append("one", ExpectedVersion::Exactly(0), events("one", 1)),
    )
    .await
    .expect("the append lock was released")
    .expect("append");
    assert_eq!((appended[0].version, appended[0].position), (1, 1));
}

pub async fn a_rolled_back_session_leaves_nothing(ledger: TestLedger) {
    let store = ledger.store.as_ref();
    append_two_streams(store)
        .await
        .rollback()
        .await
        .expect("rollback");
    assert_ledger_empty(store).await;
    assert_appends_go_on(store).await;
}

pub async fn a_dropped_session_leaves_nothing(ledger: TestLedger) {
    let store = ledger.store.as_ref();
    drop(append_two_streams(store).await);
    assert_appends_go_on(store).await;
    assert_eq!(store.head_position().await.expect("head"), 1);
    assert_eq!(store.stream_version("two").await.expect("version"), 0);
}

pub async fn a_failing_append_in_a_session_leaves_nothing_after_drop(ledger: TestLedger) {
    let store = ledger.store.as_ref();
    let mut session = append_two_streams(store).await;
    let stale = session
        .append("one", ExpectedVersion::Exactly(0), vec![event(None, 3)])
        .await;
    assert!(matches!(
        stale,
        Err(StoreError::Conflict {
            expected: 0,
            actual: 2,
            ..
        })
    ));
    drop(session);
    assert_appends_go_on(store).await;
    assert_eq!(store.stream_version("two").await.expect("version"), 0);
}

pub async fn a_session_goes_on_after_a_refusal(ledger: TestLedger) {
    let store = ledger.store.as_ref();
    let mut session = append_two_streams(store).await;
    let stale = session
        .append("two", ExpectedVersion::Exactly(1), vec![event(None, 9)])
        .await;
    assert!(matches!(stale, Err(StoreError::Conflict { .. })));
    let clash = session
        .append("two", ExpectedVersion::Any, vec![event(Some("one-1"), 9)])
        .await;
    assert!(matches!(clash, Err(StoreError::IdConflict { .. })));
    // Refusals write nothing, so the session can decide again and commit.
    let next = session
        .append("two", ExpectedVersion::Exactly(3), vec![event(None, 4)])
        .await
        .expect("append");
    assert_eq!((next[0].version, next[0].position), (4, 6));
    session.commit().await.expect("commit");
    assert_eq!(
        positions(&read_all_fully(store).await),
        vec![1, 2, 3, 4, 5, 6]
    );
    assert!(store.verify_chain(None).await.expect("verify").is_empty());
}

pub async fn a_failed_write_cannot_be_committed(ledger: TestLedger) {
    // A trigger of the test's own makes the events insert fail after the stream row was written.
    let sql = match ledger.kind {
        Kind::Sqlite => {
            "CREATE TRIGGER poison BEFORE INSERT ON events WHEN NEW.event_type = 'Poison' \
             BEGIN SELECT RAISE(ABORT, 'poisoned insert'); END;"
        }
        Kind::Postgres => {
            "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN RAISE EXCEPTION 'poisoned insert'; END; $$; \
             CREATE TRIGGER poison BEFORE INSERT ON events FOR EACH ROW \
             WHEN (NEW.event_type = 'Poison') EXECUTE FUNCTION poison();"
        }
    };
    ledger
        .execute_raw(sql)
        .await
        .expect("the test trigger is created");
    let store = ledger.store.as_ref();
    let mut session = append_two_streams(store).await;
    let mut poison = event(None, 1);
    poison.event_type = "Poison".to_owned();
    let failed = session
        .append("three", ExpectedVersion::Exactly(0), vec![poison])
        .await;
    // The database's own refusal: sqlx's on PostgreSQL, SQLite's C API's on SQLite.
    assert!(
        matches!(failed, Err(StoreError::Database(_) | StoreError::Sqlite(_))),
        "{failed:?}"
    );
    let commit = session.commit().await;
    assert!(
        matches!(commit, Err(StoreError::Integrity(_))),
        "{commit:?}"
    );
    assert_ledger_empty(store).await;
    assert_eq!(store.stream_version("three").await.expect("version"), 0);
    assert_appends_go_on(store).await;
}

pub async fn a_committed_session_keeps_every_stream(ledger: TestLedger) {
    let store = ledger.store.as_ref();
    append_two_streams(store)
        .await
        .commit()
        .await
        .expect("commit");
    assert_eq!(store.stream_version("one").await.expect("version"), 2);
    assert_eq!(store.stream_version("two").await.expect("version"), 3);
    let all = read_all_fully(store).await;
    assert_eq!(positions(&all), vec![1, 2, 3, 4, 5]);
    assert_eq!(
        all.iter().map(|e| e.stream.as_str()).collect::<Vec<_>>(),
        vec!["one", "one", "two", "two", "two"]
    );
    assert!(store.verify_chain(None).await.expect("verify").is_empty());
}

pub async fn events_refuse_update_and_delete(ledger: TestLedger) {
    let store = ledger.store.as_ref();
    store
        .append("s", ExpectedVersion::Exactly(0), events("s", 3))
        .await
        .expect("append");
    let before = read_all_fully(store).await;
    let mut statements = vec![
        "UPDATE events SET payload = '{}' WHERE version = 2",
        "UPDATE events SET event_type = 'Other'",
        "DELETE FROM events WHERE version = 3",
        "DELETE FROM events",
    ];
    if ledger.kind == Kind::Postgres {
        statements.push("TRUNCATE events");
        statements.push("TRUNCATE streams CASCADE");
        statements.push("UPDATE events SET payload = '{}' WHERE false");
    }
    for sql in statements {
        let refused = ledger.execute_raw(sql).await;
        let message = refused.expect_err(sql).to_string();
        assert!(message.contains("append-only"), "{sql}: {message}");
    }
    assert_eq!(read_all_fully(store).await, before);
    assert!(store.verify_chain(None).await.expect("verify").is_empty());
}

/// Three streams, so a break in one is not blamed on the others.
async fn three_streams(store: &dyn EventStore) {
    store
        .append("s", ExpectedVersion::Exactly(0), events("s", 5))
        .await
        .expect("append");
    store
        .append("t", ExpectedVersion::Exactly(0), events("t", 3))
        .await
        .expect("append");
    store
        .append("u", ExpectedVersion::Exactly(0), events("u", 4))
        .await
        .expect("append");
    store
        .append("s", ExpectedVersion::Exactly(5), events("s2", 1))
        .await
        .expect("append");
    assert!(store.verify_chain(None).await.expect("verify").is_empty());
}

fn named(breaks: &[bondledger_store::ChainBreak]) -> Vec<(&str, i64)> {
    breaks
        .iter()
        .map(|b| (b.stream.as_str(), b.version))
        .collect()
}

pub async fn a_tampered_payload_is_named(ledger: TestLedger) {
    let store = ledger.store.as_ref();
    three_streams(store).await;
    ledger.drop_append_only_triggers().await;
    let changed = ledger
        .execute_raw(r#"UPDATE events SET payload = replace(payload, '"12.500000"', '"13.500000"') WHERE stream = 's' AND version = 3"#)
        .await
        .expect("the update goes through without the triggers");
    assert_eq!(changed, 1);
    let breaks = store.verify_chain(None).await.expect("verify");
    assert_eq!(named(&breaks), vec![("s", 3)], "{breaks:?}");
    assert!(breaks[0].reason.contains("hash"), "{}", breaks[0].reason);
    assert_eq!(
        named(&store.verify_chain(Some("s")).await.expect("verify")),
        vec![("s", 3)]
    );
    assert!(store
        .verify_chain(Some("t"))
        .await
        .expect("verify")
        .is_empty());

    // A forged hash on the tampered event moves the break to the next one.
    let tampered = store.read_stream("s", 3, 1).await.expect("read").remove(0);
    assert_eq!(tampered.payload["quantity"], "13.500000");
    ledger
        .execute_raw("UPDATE events SET hash = 'ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff' WHERE stream = 't' AND version = 1")
        .await
        .expect("the update goes through");
    let breaks = store.verify_chain(None).await.expect("verify");
    assert_eq!(named(&breaks), vec![("s", 3), ("t", 1)]);
}

pub async fn a_deleted_event_is_named(ledger: TestLedger) {
    let store = ledger.store.as_ref();
    three_streams(store).await;
    ledger.drop_append_only_triggers().await;
    let deleted = ledger
        .execute_raw("DELETE FROM events WHERE stream = 't' AND version = 2")
        .await
        .expect("the delete goes through without the triggers");
    assert_eq!(deleted, 1);
    let breaks = store.verify_chain(None).await.expect("verify");
    assert_eq!(named(&breaks), vec![("t", 2)], "{breaks:?}");
    assert!(breaks[0].reason.contains("missing"), "{}", breaks[0].reason);
    assert_eq!(
        named(&store.verify_chain(Some("t")).await.expect("verify")),
        vec![("t", 2)]
    );

    // The last event of a stream: only the stream's head remembers it.
    ledger
        .execute_raw("DELETE FROM events WHERE stream = 'u' AND version = 4")
        .await
        .expect("delete");
    let breaks = store.verify_chain(None).await.expect("verify");
    assert_eq!(named(&breaks), vec![("t", 2), ("u", 4)], "{breaks:?}");
    assert_eq!(
        named(&store.verify_chain(Some("u")).await.expect("verify")),
        vec![("u", 4)]
    );
    assert!(store
        .verify_chain(Some("s"))
        .await
        .expect("verify")
        .is_empty());
}

pub async fn a_follower_sees_every_event_once_in_order(ledger: TestLedger) {
    const WRITERS: usize = 6;
    const APPENDS_PER_WRITER: usize = 40;
    const PAGE: usize = 7;
    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let store = Arc::clone(&ledger.store);
        writers.push(tokio::spawn(async move {
            let mut appended: Vec<Appended> = Vec::new();
            for index in 0..APPENDS_PER_WRITER {
                let stream = format!("manual-{}", (writer + index) % 4);
                let batch = (0..1 + index % 3)
                    .map(|line| event(None, line as i64))
                    .collect();
                let mut session = store.begin().await.expect("begin");
                appended.extend(
                    session
                        .append(&stream, ExpectedVersion::Any, batch)
                        .await
                        .expect("append"),
                );
                if index % 5 == 0 {
                    // Multi-stream transactions take part too.
                    let other = format!("warehouse-{writer}");
                    appended.extend(
                        session
                            .append(&other, ExpectedVersion::Any, vec![event(None, 0)])
                            .await
                            .expect("append"),
                    );
                }
                session.commit().await.expect("commit");
            }
            appended
        }));
    }
    let writers_done = Arc::new(AtomicBool::new(false));
    let follower_store = Arc::clone(&ledger.store);
    let follower_done = Arc::clone(&writers_done);
    let follower = tokio::spawn(async move {
        let mut seen: Vec<StoredEvent> = Vec::new();
        loop {
            // Read before looking at the flag: a page read after the writers ended is the last.
            let finished = follower_done.load(Ordering::SeqCst);
            let after = seen.last().map_or(0, |event| event.position);
            let page = follower_store
                .read_all(after, PAGE)
                .await
                .expect("read_all");
            for (offset, event) in (1..).zip(&page) {
                assert_eq!(
                    event.position,
                    after + offset,
                    "the follower skipped or repeated a position"
                );
            }
            if page.is_empty() {
                if finished {
                    return seen;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            seen.extend(page);
        }
    });
    let mut appended = Vec::new();
    for writer in writers {
        appended.extend(writer.await.expect("the writer ends"));
    }
    writers_done.store(true, Ordering::SeqCst);
    let seen = follower.await.expect("the follower ends");
    let total = appended.len();
    assert_eq!(seen.len(), total);
    assert_eq!(positions(&seen), (1..=total as i64).collect::<Vec<_>>());
    let seen_ids: HashSet<Uuid> = seen.iter().map(|event| event.event_id).collect();
    let appended_ids: HashSet<Uuid> = appended.iter().map(|a| a.event_id).collect();
    assert_eq!(seen_ids.len(), total, "every event once");
    assert_eq!(seen_ids, appended_ids);
    assert!(ledger
        .store
        .verify_chain(None)
        .await
        .expect("verify")
        .is_empty());
}

pub async fn a_hundred_thousand_events_in_one_append(ledger: TestLedger) {
    const COUNT: i64 = 100_000;
    let store = ledger.store.as_ref();
    let batch = events("bulk", COUNT);
    let started = std::time::Instant::now();
    let appended = store
        .append("bulk", ExpectedVersion::Exactly(0), batch.clone())
        .await
        .expect("append");
    eprintln!(
        "{:?}: {COUNT} events in one append took {:?}",
        ledger.kind,
        started.elapsed()
    );
    assert_eq!(appended.len(), COUNT as usize);
    assert_eq!(
        appended.last().map(|a| (a.version, a.position)),
        Some((COUNT, COUNT))
    );
    assert_eq!(store.head_position().await.expect("head"), COUNT);
    assert_eq!(
        versions(
            &store
                .read_stream("bulk", COUNT - 9, 100)
                .await
                .expect("read")
        ),
        (COUNT - 9..=COUNT).collect::<Vec<_>>()
    );
    assert_eq!(
        positions(&store.read_all(50_000, 3).await.expect("read")),
        vec![50_001, 50_002, 50_003]
    );
    let ids: Vec<String> = (1..=COUNT)
        .step_by(997)
        .map(|line| format!("bulk-{line}"))
        .collect();
    assert_eq!(
        store.find_by_caller_ids(&ids).await.expect("find").len(),
        ids.len()
    );
    // The whole batch again: every id is held, so nothing is written.
    let retry = store
        .append("bulk", ExpectedVersion::Exactly(0), batch)
        .await
        .expect("retry");
    assert!(retry.is_empty());
    assert!(store
        .verify_chain(Some("bulk"))
        .await
        .expect("verify")
        .is_empty());
}

pub async fn reopening_keeps_the_ledger(mut ledger: TestLedger) {
    ledger
        .store
        .append("s", ExpectedVersion::Exactly(0), events("s", 3))
        .await
        .expect("append");
    ledger
        .store
        .append("t", ExpectedVersion::Exactly(0), events("t", 1))
        .await
        .expect("append");
    let before = read_all_fully(ledger.store.as_ref()).await;
    ledger.reopen().await;
    ledger.reopen().await;
    assert_eq!(read_all_fully(ledger.store.as_ref()).await, before);
    let next = ledger
        .store
        .append("s", ExpectedVersion::Exactly(3), events("s-more", 1))
        .await
        .expect("append");
    assert_eq!((next[0].version, next[0].position), (4, 5));
    assert!(ledger
        .store
        .verify_chain(None)
        .await
        .expect("verify")
        .is_empty());
    assert!(ledger
        .store
        .append("t", ExpectedVersion::Exactly(1), events("t", 1))
        .await
        .expect("retry")
        .is_empty());
}

pub async fn invalid_input_is_refused(ledger: TestLedger) {
    let store = ledger.store.as_ref();
    let too_long = event(Some(&"x".repeat(65)), 1);
    let empty_id = event(Some(""), 1);
    let mut no_type = event(None, 1);
    no_type.event_type = String::new();
    for (stream, batch) in [
        ("s", vec![too_long]),
        ("s", vec![empty_id]),
        ("s", vec![no_type]),
        ("", vec![event(None, 1)]),
    ] {
        let refused = store.append(stream, ExpectedVersion::Any, batch).await;
        assert!(
            matches!(refused, Err(StoreError::InvalidInput(_))),
            "{refused:?}"
        );
    }
    let negative = store
        .append("s", ExpectedVersion::Exactly(-1), vec![event(None, 1)])
        .await;
    assert!(matches!(negative, Err(StoreError::InvalidInput(_))));
    assert!(store
        .append("s", ExpectedVersion::Exactly(7), Vec::new())
        .await
        .expect("nothing to do")
        .is_empty());
    assert_eq!(store.head_position().await.expect("head"), 0);
    let longest = event(Some(&"料".repeat(64)), 1);
    assert_eq!(
        store
            .append("s", ExpectedVersion::Any, vec![longest])
            .await
            .expect("append")
            .len(),
        1
    );
}

fn token(hash_byte: u8, role: &str, enterprise: Option<&str>) -> NewToken {
    NewToken {
        hash: format!("{hash_byte:02x}").repeat(32),
        role: role.to_owned(),
        enterprise: enterprise.map(str::to_owned),
        label: Some("contract".to_owned()),
    }
}

pub async fn tokens_are_found_by_hash_and_keep_nothing_else(ledger: TestLedger) {
    let store = ledger.store.as_ref();
    assert_eq!(store.token_count().await.expect("count"), 0);
    let kept = store
        .insert_token(token(0xab, "recorder", Some("3101960042")))
        .await
        .expect("a token is kept");
    let found = store
        .token_by_hash(&"ab".repeat(32))
        .await
        .expect("looked up")
        .expect("found");
    assert_eq!(found, kept);
    assert_eq!(found.enterprise.as_deref(), Some("3101960042"));
    assert!(store
        .token_by_hash(&"cd".repeat(32))
        .await
        .expect("looked up")
        .is_none());
    assert!(store
        .token_by_hash("not a hash")
        .await
        .expect("looked up")
        .is_none());
    // A secret passed where its hash goes, a role the schema does not know,
    // a recorder without an enterprise, the same hash twice: refused.
    let secret = NewToken {
        hash: format!("bl_{}", "ab".repeat(32)),
        ..token(0, "admin", None)
    };
    assert!(matches!(
        store.insert_token(secret).await,
        Err(StoreError::InvalidInput(_))
    ));
    for refused in [
        token(0x01, "owner", None),
        token(0x02, "recorder", None),
        token(0x03, "admin", Some("3101960042")),
        token(0xab, "admin", None),
    ] {
        assert!(
            store.insert_token(refused.clone()).await.is_err(),
            "{refused:?}"
        );
    }
    assert_eq!(store.token_count().await.expect("count"), 1);
}

pub async fn tokens_are_listed_and_revoked_without_being_deleted(ledger: TestLedger) {
    let store = ledger.store.as_ref();
    let first = store
        .insert_token(token(0x11, "auditor", None))
        .await
        .expect("kept");
    let second = store
        .insert_token(token(0x22, "recorder", Some("3101960042")))
        .await
        .expect("kept");
    let listed = store.list_tokens().await.expect("listed");
    assert_eq!(listed, vec![first.clone(), second.clone()], "oldest first");
    assert!(listed.iter().all(|t| t.revoked_at.is_none()));

    let at = chrono::DateTime::parse_from_rfc3339("2026-11-23T10:00:00.123456789Z")
        .expect("a moment")
        .with_timezone(&chrono::Utc);
    let revoked = store
        .revoke_token(&first.id, at)
        .await
        .expect("revoked")
        .expect("the token is there");
    assert_eq!(
        revoked.revoked_at.map(|m| m.timestamp_micros()),
        Some(at.timestamp_micros()),
        "kept to the microsecond"
    );
    assert_eq!(revoked.hash, first.hash);
    // Revoking again keeps the first moment; the row is never deleted.
    let later = at + chrono::Duration::hours(1);
    let again = store
        .revoke_token(&first.id, later)
        .await
        .expect("revoked")
        .expect("still there");
    assert_eq!(again.revoked_at, revoked.revoked_at);
    let found = store
        .token_by_hash(&first.hash)
        .await
        .expect("looked up")
        .expect("still held");
    assert_eq!(found.revoked_at, revoked.revoked_at);
    assert_eq!(store.token_count().await.expect("count"), 2);
    let listed = store.list_tokens().await.expect("listed");
    assert_eq!(listed[1], second, "the other token is untouched");
    for unknown in ["0190f0f0-0000-7000-8000-000000000000", "", "x' OR '1'='1"] {
        assert!(
            store
                .revoke_token(unknown, at)
                .await
                .expect("looked up")
                .is_none(),
            "{unknown:?}"
        );
    }
}

pub async fn only_one_first_token_is_kept_whoever_races(ledger: TestLedger) {
    let store = ledger.store.clone();
    let racers = 8u8;
    let barrier = Arc::new(Barrier::new(usize::from(racers)));
    let mut handles = Vec::new();
    for n in 0..racers {
        let store = store.clone();
        let barrier = barrier.clone();
        handles.push(tokio::spawn(async move {
            barrier.wait().await;
            store.insert_first_token(token(n, "admin", None)).await
        }));
    }
    let mut kept = 0;
    for handle in handles {
        match handle.await.expect("joined") {
            Ok(Some(_)) => kept += 1,
            Ok(None) => {}
            // SQLite may refuse a racer whose snapshot went stale; it keeps nothing.
            Err(StoreError::Database(_)) if ledger.kind == Kind::Sqlite => {}
            Err(error) => panic!("{error}"),
        }
    }
    assert_eq!(kept, 1);
    assert_eq!(store.token_count().await.expect("count"), 1);
    assert!(store
        .insert_first_token(token(0xee, "admin", None))
        .await
        .expect("asked")
        .is_none());
}

fn run(stream: &str, expected: ExpectedVersion, events: Vec<NewEvent>) -> StreamAppend {
    StreamAppend {
        stream: stream.to_owned(),
        expected,
        events,
    }
}

/// Runs appended together land as if appended one after another: positions in
/// the order of the runs, each stream's versions and chain going on across runs.
pub async fn runs_append_in_order_across_streams(ledger: TestLedger) {
    let store = ledger.store.as_ref();
    let mut session = store.begin().await.expect("begin");
    let appended = session
        .append_runs(vec![
            run("a", ExpectedVersion::Exactly(0), events("a1", 2)),
            run("b", ExpectedVersion::Exactly(0), events("b1", 1)),
            run("a", ExpectedVersion::Exactly(2), events("a2", 2)),
        ])
        .await
        .expect("append_runs");
    let places: Vec<Vec<(String, i64, i64)>> = appended
        .iter()
        .map(|run| {
            run.iter()
                .map(|e| (e.stream.clone(), e.version, e.position))
                .collect()
        })
        .collect();
    let place = |stream: &str, version, position| (stream.to_owned(), version, position);
    assert_eq!(
        places,
        vec![
            vec![place("a", 1, 1), place("a", 2, 2)],
            vec![place("b", 1, 3)],
            vec![place("a", 3, 4), place("a", 4, 5)],
        ]
    );
    session.commit().await.expect("commit");
    assert_eq!(store.stream_version("a").await.expect("version"), 4);
    assert_eq!(store.stream_version("b").await.expect("version"), 1);
    assert!(store.verify_chain(None).await.expect("verify").is_empty());
    // The chain of "a" runs on across the run of "b" between its two runs.
    let mut more = store.begin().await.expect("begin");
    more.append("a", ExpectedVersion::Exactly(4), vec![event(None, 9)])
        .await
        .expect("append");
    more.commit().await.expect("commit");
    assert!(store
        .verify_chain(Some("a"))
        .await
        .expect("verify")
        .is_empty());
}

/// An id taken by an earlier run is held for a later one; a later run's stale
/// expected version refuses the whole call, and nothing of it is written.
pub async fn runs_are_refused_whole(ledger: TestLedger) {
    let store = ledger.store.as_ref();
    let mut session = store.begin().await.expect("begin");
    let held = session
        .append_runs(vec![
            run("a", ExpectedVersion::Exactly(0), events("x", 2)),
            run(
                "b",
                ExpectedVersion::Exactly(0),
                vec![event(Some("x-1"), 1)],
            ),
        ])
        .await;
    assert!(matches!(held, Err(StoreError::IdConflict { caller_id }) if caller_id == "x-1"));
    let same = session
        .append_runs(vec![
            run("a", ExpectedVersion::Exactly(0), events("x", 2)),
            run("a", ExpectedVersion::Exactly(2), events("x", 1)),
        ])
        .await
        .expect("append_runs");
    assert_eq!(same.iter().map(Vec::len).collect::<Vec<_>>(), vec![2, 0]);
    let stale = session
        .append_runs(vec![
            run("b", ExpectedVersion::Exactly(0), events("y", 1)),
            run("a", ExpectedVersion::Exactly(1), events("z", 1)),
        ])
        .await;
    assert!(matches!(
        stale,
        Err(StoreError::Conflict {
            expected: 1,
            actual: 2,
            ..
        })
    ));
    // The refusal wrote nothing: the session goes on and commits what it had.
    assert_eq!(session.stream_version("b").await.expect("version"), 0);
    session.commit().await.expect("commit");
    assert_eq!(store.stream_version("a").await.expect("version"), 2);
    assert_eq!(store.stream_version("b").await.expect("version"), 0);
    assert_eq!(store.head_position().await.expect("head"), 2);
}

/// Positions past a partition's end go to the next partitions, made as appends
/// need them (PostgreSQL, with partitions of 7 positions here); on SQLite the
/// same appends hold the same guarantees in one table.
pub async fn appends_cross_partition_boundaries(mut ledger: TestLedger) {
    const WIDTH: i64 = 7;
    if ledger.kind == Kind::Postgres {
        let changed = ledger
            .execute_raw(&format!("UPDATE event_partitioning SET width = {WIDTH}"))
            .await
            .expect("a test ledger takes narrow partitions");
        assert_eq!(changed, 1);
        ledger.reopen().await;
    }
    let store = Arc::clone(&ledger.store);
    store
        .append("a", ExpectedVersion::Exactly(0), events("a", 5))
        .await
        .expect("append");
    for line in 1..=4 {
        store
            .append(
                "b",
                ExpectedVersion::Exactly(line - 1),
                vec![event(Some(&format!("b-{line}")), line)],
            )
            .await
            .expect("a single append");
    }
    let mut session = store.begin().await.expect("begin");
    let appended = session
        .append_runs(vec![
            run("a", ExpectedVersion::Exactly(5), events("a-more", 9)),
            run("c", ExpectedVersion::Exactly(0), events("c", 12)),
            run("b", ExpectedVersion::Exactly(4), events("b-more", 3)),
        ])
        .await
        .expect("runs across three partitions");
    assert_eq!(
        appended.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![9, 12, 3]
    );
    session.commit().await.expect("commit");

    // A session that crosses into a partition and rolls back leaves nothing.
    let mut session = store.begin().await.expect("begin");
    session
        .append("d", ExpectedVersion::Exactly(0), events("d", 20))
        .await
        .expect("append");
    session.rollback().await.expect("rollback");

    let all = read_all_fully(store.as_ref()).await;
    assert_eq!(positions(&all), (1..=33).collect::<Vec<_>>());
    assert_eq!(
        versions(&read_stream_fully(store.as_ref(), "a").await),
        (1..=14).collect::<Vec<_>>()
    );
    assert_eq!(
        versions(&read_stream_fully(store.as_ref(), "b").await),
        (1..=7).collect::<Vec<_>>()
    );
    assert_eq!(
        versions(&read_stream_fully(store.as_ref(), "c").await),
        (1..=12).collect::<Vec<_>>()
    );
    assert!(read_stream_fully(store.as_ref(), "d").await.is_empty());
    assert_eq!(store.read_stream("c", 5, 4).await.expect("a page").len(), 4);
    assert!(store.verify_chain(None).await.expect("verify").is_empty());
    assert!(store
        .verify_chain(Some("a"))
        .await
        .expect("verify")
        .is_empty());

    // Caller ids are found, held and refused whichever partition holds them.
    let ids = vec![
        "a-1".to_owned(),
        "c-12".to_owned(),
        "b-3".to_owned(),
        "none".to_owned(),
    ];
    let found = store.find_by_caller_ids(&ids).await.expect("find");
    assert_eq!(
        found
            .iter()
            .map(|e| (e.caller_id.as_deref(), e.position))
            .collect::<Vec<_>>(),
        vec![(Some("a-1"), 1), (Some("b-3"), 8), (Some("c-12"), 30)]
    );
    let retried = store
        .append("a", ExpectedVersion::Exactly(0), events("a", 5))
        .await
        .expect("a retry of events held in the first partition");
    assert!(retried.is_empty());
    let other = store
        .append("c", ExpectedVersion::Any, vec![event(Some("a-2"), 99)])
        .await;
    assert!(matches!(other, Err(StoreError::IdConflict { caller_id }) if caller_id == "a-2"));
    let next = store
        .append("d", ExpectedVersion::Exactly(0), events("d", 1))
        .await
        .expect("appends go on");
    assert_eq!((next[0].version, next[0].position), (1, 34));

    if ledger.kind == Kind::Postgres {
        // Positions 1..=34 in partitions of 7, and the one after made ahead of need.
        let made = ledger
            .execute_raw(
                "DO $$ BEGIN IF (SELECT count(*) FROM pg_partition_tree('events') WHERE isleaf AND relid::text LIKE 'events_from_%') < 5 \
                 THEN RAISE EXCEPTION 'too few partitions'; END IF; END $$",
            )
            .await;
        assert!(made.is_ok(), "{made:?}");
    }
}

pub async fn a_look_up_under_the_lock_serves_the_appends_after_it(ledger: TestLedger) {
    let store = ledger.store.as_ref();
    store
        .append("s", ExpectedVersion::Exactly(0), events("pre", 1))
        .await
        .expect("append");
    let mut session = store.begin().await.expect("begin");
    let ids = ["pre-1".to_owned(), "new-1".to_owned()];
    let (held, versions) = session
        .lock_and_look_up(&ids, &["s", "t"])
        .await
        .expect("lock_and_look_up");
    assert_eq!(versions, vec![1, 0]);
    assert_eq!(held.len(), 1);
    assert_eq!(
        (held[0].caller_id.as_deref(), held[0].version),
        (Some("pre-1"), 1)
    );
    // An append naming only what was looked up, then one after it: the
    // second must see the first's heads, not the look-up's.
    let first = session
        .append_runs(vec![
            run("s", ExpectedVersion::Exactly(1), events("new", 1)),
            run("t", ExpectedVersion::Exactly(0), vec![event(None, 2)]),
        ])
        .await
        .expect("append_runs");
    assert_eq!(first[0][0].version, 2);
    assert_eq!(first[1][0].version, 1);
    // Neither names an id beyond the look-up's: what they read must still
    // be read afresh.
    let stale = session
        .append("t", ExpectedVersion::Exactly(0), vec![event(None, 3)])
        .await;
    assert!(
        matches!(stale, Err(StoreError::Conflict { .. })),
        "{stale:?}"
    );
    let second = session
        .append("s", ExpectedVersion::Exactly(2), vec![event(None, 4)])
        .await
        .expect("append after the first");
    assert_eq!((second[0].version, second[0].position), (3, 4));
    // The id appended after the look-up is held, with its content.
    let (held, versions) = session
        .lock_and_look_up(&["new-1".to_owned()], &["s", "t"])
        .await
        .expect("lock_and_look_up again");
    assert_eq!(versions, vec![3, 1]);
    assert_eq!(held.len(), 1);
    let again = session
        .append("s", ExpectedVersion::Any, events("new", 1))
        .await
        .expect("a repeat");
    assert!(again.is_empty());
    session.commit().await.expect("commit");
    assert_eq!(store.stream_version("s").await.expect("version"), 3);
    assert_eq!(store.stream_version("t").await.expect("version"), 1);
    assert!(store.verify_chain(None).await.expect("verify").is_empty());
}

pub async fn a_look_up_under_the_lock_holds_other_appenders_off(ledger: TestLedger) {
    let store = Arc::clone(&ledger.store);
    let mut session = store.begin().await.expect("begin");
    let (_, versions) = session
        .lock_and_look_up(&[], &["s"])
        .await
        .expect("lock_and_look_up");
    assert_eq!(versions, vec![0]);
    let other = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            store
                .append("s", ExpectedVersion::Any, events("other", 1))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !other.is_finished(),
        "another appender went ahead of the lock"
    );
    session
        .append("s", ExpectedVersion::Exactly(0), events("first", 1))
        .await
        .expect("append under the lock");
    session.commit().await.expect("commit");
    let appended = tokio::time::timeout(LOCK_WAIT, other)
        .await
        .expect("the other appender goes on after the commit")
        .expect("join")
        .expect("append");
    assert_eq!((appended[0].version, appended[0].position), (2, 2));
}

/// A presumed append (PostgreSQL's) plans on what this process's last commit
/// left the ledger as, reads nothing, and commits in its one write. It writes
/// nothing when the ledger is not as planned on: another process appended,
/// an id it took for new is held, a stream was never appended to here.
pub async fn a_presumed_append_plans_on_the_last_commit(ledger: TestLedger) {
    let store = ledger.store.as_ref();
    assert!(
        store.begin_presumed().await.is_none(),
        "nothing is known before this process appends"
    );
    store
        .append("s", ExpectedVersion::Exactly(0), events("a", 2))
        .await
        .expect("append");
    if ledger.kind == Kind::Sqlite {
        assert!(
            store.begin_presumed().await.is_none(),
            "an SQLite append has no round trip to save"
        );
        return;
    }
    let mut session = store.begin_presumed().await.expect("known after a commit");
    let (held, versions) = session
        .lock_and_look_up(&["b-1".to_owned()], &["s"])
        .await
        .expect("presumed, not read");
    assert!(held.is_empty());
    assert_eq!(versions, vec![2]);
    let appended = session
        .append_runs(vec![run("s", ExpectedVersion::Exactly(2), events("b", 1))])
        .await
        .expect("a presumed append");
    assert_eq!((appended[0][0].version, appended[0][0].position), (3, 3));
    session.commit().await.expect("commit");

    // The next plans on what that one left.
    let mut session = store.begin_presumed().await.expect("still known");
    let appended = session
        .append("s", ExpectedVersion::Exactly(3), vec![event(None, 9)])
        .await
        .expect("another presumed append");
    assert_eq!((appended[0].version, appended[0].position), (4, 4));
    session.commit().await.expect("commit");

    // What this process never appended to is not known.
    let mut session = store.begin_presumed().await.expect("a session");
    let unknown = session
        .append("t", ExpectedVersion::Exactly(0), vec![event(None, 1)])
        .await;
    assert!(matches!(unknown, Err(StoreError::Stale(_))), "{unknown:?}");
    drop(session);

    // An id held already was taken for new: the write refuses itself.
    let mut session = store.begin_presumed().await.expect("a session");
    let repeat = session
        .append("s", ExpectedVersion::Any, events("a", 1))
        .await;
    assert!(matches!(repeat, Err(StoreError::Stale(_))), "{repeat:?}");
    drop(session);
    assert_eq!(store.head_position().await.expect("head"), 4);

    // Another process appends: the head is not where this one planned from.
    let other = ledger.open_another().await;
    other
        .append("s", ExpectedVersion::Exactly(4), vec![event(None, 10)])
        .await
        .expect("an append elsewhere");
    let mut session = store.begin_presumed().await.expect("a session");
    let moved = session
        .append("s", ExpectedVersion::Any, events("c", 1))
        .await;
    assert!(matches!(moved, Err(StoreError::Stale(_))), "{moved:?}");
    session.commit().await.expect("nothing to commit");
    assert_eq!(store.head_position().await.expect("head"), 5);
    assert!(store
        .find_by_caller_ids(&["c-1".to_owned()])
        .await
        .expect("find")
        .is_empty());

    // Under the lock it goes in, and what it leaves is known again.
    store
        .append("s", ExpectedVersion::Exactly(5), events("c", 1))
        .await
        .expect("append under the lock");
    let mut session = store.begin_presumed().await.expect("known again");
    let appended = session
        .append("s", ExpectedVersion::Exactly(6), vec![event(None, 12)])
        .await
        .expect("a presumed append");
    assert_eq!((appended[0].version, appended[0].position), (7, 7));
    session.commit().await.expect("commit");
    assert_eq!(read_stream_fully(store, "s").await.len(), 7);
    assert!(store.verify_chain(None).await.expect("verify").is_empty());
}

/// A presumed write whose connection is lost before it answers: the store
/// finds out that it did not commit, says so, and the next one goes in on a
/// new connection.
pub async fn a_presumed_write_cut_off_is_found_not_written(ledger: TestLedger) {
    if ledger.kind == Kind::Sqlite {
        return;
    }
    let store = Arc::clone(&ledger.store);
    store
        .append("s", ExpectedVersion::Exactly(0), events("a", 1))
        .await
        .expect("append");
    // Another connection holds the append lock: the write waits for it.
    let mut blocker = ledger.postgres_connection().await;
    raw(
        &mut blocker,
        "BEGIN; SELECT 1 FROM ledger_head WHERE id = 1 FOR UPDATE",
    )
    .await;
    let blocker_pid = pid_of(&mut blocker, "SELECT pg_backend_pid()", None)
        .await
        .expect("its pid");
    let writing = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            let mut session = store.begin_presumed().await.expect("known after a commit");
            session
                .append("s", ExpectedVersion::Exactly(1), events("b", 1))
                .await
        })
    };
    // Watched from a connection of its own: within the blocker's transaction
    // pg_stat_activity would keep showing what it showed first.
    let mut watcher = ledger.postgres_connection().await;
    let deadline = tokio::time::Instant::now() + LOCK_WAIT;
    let waiting: i32 = loop {
        let found = pid_of(
            &mut watcher,
            "SELECT pid FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))",
            Some(blocker_pid),
        )
        .await;
        if let Some(pid) = found {
            break pid;
        }
        if writing.is_finished() {
            let outcome = writing.await.expect("the writing task");
            panic!("the write did not wait for the lock: {outcome:?}");
        }
        assert!(tokio::time::Instant::now() < deadline, "the write waits");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let ended = pid_of(
        &mut watcher,
        "SELECT pid FROM pg_stat_activity WHERE pg_terminate_backend($1, 5000) AND pid = $1 \
         UNION ALL SELECT $1",
        Some(waiting),
    )
    .await;
    assert_eq!(ended, Some(waiting), "the write's connection ended");
    raw(&mut blocker, "COMMIT").await;
    let cut_off = writing.await.expect("the writing task");
    assert!(
        matches!(&cut_off, Err(StoreError::Stale(message)) if message.contains("lost")),
        "{cut_off:?}"
    );
    assert_eq!(store.head_position().await.expect("head"), 1);
    assert!(store
        .find_by_caller_ids(&["b-1".to_owned()])
        .await
        .expect("find")
        .is_empty());

    let mut session = store.begin_presumed().await.expect("still known");
    let appended = session
        .append("s", ExpectedVersion::Exactly(1), events("b", 1))
        .await
        .expect("on a new connection");
    assert_eq!((appended[0].version, appended[0].position), (2, 2));
    session.commit().await.expect("commit");
    assert!(store.verify_chain(None).await.expect("verify").is_empty());
}

/// Runs `sql` on `connection`, past the store.
async fn raw(connection: &mut sqlx::PgConnection, sql: &str) {
    use sqlx::Executor as _;
    connection
        .execute(sqlx::raw_sql(sql))
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error}"));
}

/// The first pid `sql` selects (binding `pid` as $1, when given).
async fn pid_of(connection: &mut sqlx::PgConnection, sql: &str, pid: Option<i32>) -> Option<i32> {
    let mut query = sqlx::query_scalar::<_, i32>(sql);
    if let Some(pid) = pid {
        query = query.bind(pid);
    }
    query
        .fetch_optional(connection)
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error}"))
}

/// The timeline row the next case gives the event at `position`: HS codes
/// of several spreads (one in four, one in three, 70 codes under "84", one
/// code on two events only), counterparties, declarations and dates.
fn timeline_row_at(event: &StoredEvent) -> TimelineRow {
    let p = event.position;
    let mut hs = vec![format!("72085{}0000", p % 4)];
    if p % 3 == 0 {
        hs.push("3920100000".to_owned());
    }
    if p % 7 == 0 {
        hs.push(format!("84{:02}000000", p % 70));
    }
    if p == 5 || p == 2_345 {
        hs.push("8501000000".to_owned());
    }
    hs.sort();
    let mut counterparties = Vec::new();
    if p % 2 == 0 {
        counterparties.push(format!("C{}", p % 3));
    }
    if p == 1_999 {
        counterparties.push("RARE".to_owned());
    }
    let date =
        NaiveDate::from_ymd_opt(2024, 1, 1).expect("a date") + chrono::Days::new((p / 30) as u64);
    TimelineRow {
        position: p,
        manual: event.stream.clone(),
        version: event.version,
        event_type: event.event_type.clone(),
        business_date: date.format("%Y-%m-%d").to_string(),
        declaration: (p % 5 != 0).then(|| format!("D{p}")),
        hs,
        counterparties,
    }
}

fn manual_row(manual: &str, enterprise: &str, processing: &str) -> ManualRows {
    ManualRows {
        manual: ManualRow {
            manual: manual.to_owned(),
            trade_mode: "consigned".to_owned(),
            book: "manual".to_owned(),
            zone: false,
            enterprise: enterprise.to_owned(),
            processing_enterprise: processing.to_owned(),
            valid_until: "2026-12-31".to_owned(),
            version: 1,
            status: "open".to_owned(),
            closed: false,
            findings: 0,
        },
        balances: Vec::new(),
        carryovers: Vec::new(),
        deadlines: Vec::new(),
    }
}

/// What a timeline query must answer, found row by row.
fn expected_positions(
    rows: &[TimelineRow],
    filter: &TimelineFilter,
    enterprise_manuals: &[&str],
    after: i64,
    limit: usize,
) -> Vec<i64> {
    let date = |d: &Option<NaiveDate>| d.map(|d| d.format("%Y-%m-%d").to_string());
    let (from, to) = (date(&filter.from), date(&filter.to));
    rows.iter()
        .filter(|r| r.position > after)
        .filter(|r| filter.manuals.is_empty() || filter.manuals.contains(&r.manual))
        .filter(|r| filter.enterprise.is_none() || enterprise_manuals.contains(&r.manual.as_str()))
        .filter(|r| {
            filter
                .hs_prefix
                .as_ref()
                .is_none_or(|p| r.hs.iter().any(|c| c.starts_with(p.as_str())))
        })
        .filter(|r| filter.declaration.is_none() || r.declaration == filter.declaration)
        .filter(|r| {
            filter
                .counterparty
                .as_ref()
                .is_none_or(|c| r.counterparties.contains(c))
        })
        .filter(|r| from.as_ref().is_none_or(|f| r.business_date >= *f))
        .filter(|r| to.as_ref().is_none_or(|t| r.business_date <= *t))
        .map(|r| r.position)
        .take(limit)
        .collect()
}

/// The timeline answers every filter with exactly the rows that match it,
/// whatever the commits that wrote them (whole blocks, parts of blocks, one
/// event at a time), and reads its rows and keys back as written.
pub async fn timeline_queries_find_exactly_the_matching_rows(ledger: TestLedger) {
    let store = ledger.store.as_ref();
    // 2,600 events in runs of 100, the three manuals taking turns.
    let manuals = ["m1", "m2", "m3"];
    for run in 0..26 {
        let manual = manuals[run % 3];
        store
            .append(
                manual,
                ExpectedVersion::Any,
                events(&format!("{manual}-{run}"), 100),
            )
            .await
            .expect("append");
    }
    let all = read_all_fully(store).await;
    assert_eq!(all.len(), 2_600);
    let rows: Vec<TimelineRow> = all.iter().map(timeline_row_at).collect();
    let mut from = 0;
    let mut bounds: Vec<i64> = vec![700, 1_700];
    bounds.extend(1_701..=1_710);
    bounds.push(2_600);
    for to in bounds {
        store
            .commit_projection(ProjectionBatch {
                projection: "timeline".to_owned(),
                from_position: from,
                to_position: to,
                changes: rows[from as usize..to as usize]
                    .iter()
                    .cloned()
                    .map(Change::Timeline)
                    .collect(),
            })
            .await
            .expect("timeline rows");
        from = to;
    }
    store
        .commit_projection(ProjectionBatch {
            projection: "manuals".to_owned(),
            from_position: 0,
            to_position: 2_600,
            changes: vec![
                Change::ReplaceManual(Box::new(manual_row("m1", "E1", "E1"))),
                Change::ReplaceManual(Box::new(manual_row("m2", "E2", "E1"))),
                Change::ReplaceManual(Box::new(manual_row("m3", "E3", "E3"))),
            ],
        })
        .await
        .expect("manual rows");

    assert_eq!(store.timeline_rows(0, 10_000).await.expect("rows"), rows);
    assert_eq!(
        store.timeline_rows(1_234, 10).await.expect("rows"),
        rows[1_234..1_244]
    );
    let keys = store.timeline_block_keys(2, 2).await.expect("keys");
    let key = |kind: &str, value: &str| {
        keys.iter()
            .find(|k| k.kind == kind && k.value == value)
            .map(|k| k.positions.clone())
    };
    assert!(keys.iter().all(|k| k.block == 2));
    assert_eq!(key("declaration", "D2346"), Some(vec![2_346]));
    assert_eq!(key("hs", "8501000000"), Some(vec![2_345]));
    assert_eq!(
        key("declaration", "D2000"),
        None,
        "position 2,000 is block 1's"
    );
    // Block 1 was written by many commits (1,700, then one event at a
    // time, then the rest): its keys list every position, in order.
    let block_1 = store.timeline_block_keys(1, 1).await.expect("keys");
    let manuals: Vec<i64> = block_1
        .iter()
        .filter(|k| k.kind == "manual")
        .flat_map(|k| k.positions.clone())
        .collect::<std::collections::BTreeSet<i64>>()
        .into_iter()
        .collect();
    assert_eq!(manuals, (1_001..=2_000).collect::<Vec<i64>>());
    for k in &block_1 {
        assert!(k.positions.windows(2).all(|w| w[0] < w[1]), "{k:?}");
        let expected: Vec<i64> = rows[1_000..2_000]
            .iter()
            .filter(|r| {
                bondledger_store::timeline::row_keys(r)
                    .any(|(kind, value)| kind == k.kind && value == k.value)
            })
            .map(|r| r.position)
            .collect();
        assert_eq!(k.positions, expected, "{k:?}");
    }

    let day = |d: u32| NaiveDate::from_ymd_opt(2024, 2, d);
    let filters: Vec<(TimelineFilter, &[&str])> = vec![
        (TimelineFilter::default(), &[]),
        (
            TimelineFilter {
                hs_prefix: Some("7208".into()),
                ..Default::default()
            },
            &[],
        ),
        (
            TimelineFilter {
                hs_prefix: Some("720851".into()),
                ..Default::default()
            },
            &[],
        ),
        (
            TimelineFilter {
                hs_prefix: Some("8501".into()),
                ..Default::default()
            },
            &[],
        ),
        (
            TimelineFilter {
                hs_prefix: Some("84".into()),
                ..Default::default()
            },
            &[],
        ),
        (
            TimelineFilter {
                hs_prefix: Some("9".into()),
                ..Default::default()
            },
            &[],
        ),
        (
            TimelineFilter {
                counterparty: Some("RARE".into()),
                ..Default::default()
            },
            &[],
        ),
        (
            TimelineFilter {
                counterparty: Some("C1".into()),
                hs_prefix: Some("392".into()),
                ..Default::default()
            },
            &[],
        ),
        (
            TimelineFilter {
                declaration: Some("D1703".into()),
                ..Default::default()
            },
            &[],
        ),
        (
            TimelineFilter {
                declaration: Some("D1705".into()),
                ..Default::default()
            },
            &[],
        ),
        (
            TimelineFilter {
                manuals: vec!["m2".into()],
                from: day(10),
                to: day(20),
                ..Default::default()
            },
            &[],
        ),
        (
            TimelineFilter {
                from: day(10),
                to: day(12),
                ..Default::default()
            },
            &[],
        ),
        (
            TimelineFilter {
                manuals: vec!["m1".into(), "m3".into()],
                hs_prefix: Some("84".into()),
                ..Default::default()
            },
            &[],
        ),
        (
            TimelineFilter {
                enterprise: Some("E1".into()),
                ..Default::default()
            },
            &["m1", "m2"],
        ),
        (
            TimelineFilter {
                enterprise: Some("E1".into()),
                manuals: vec!["m3".into()],
                ..Default::default()
            },
            &["m1", "m2"],
        ),
        (
            TimelineFilter {
                enterprise: Some("E9".into()),
                ..Default::default()
            },
            &[],
        ),
    ];
    for (filter, of_enterprise) in &filters {
        for (after, limit) in [(0, 10_000), (0, 1), (999, 7), (1_500, 1_000), (2_599, 10)] {
            let found: Vec<i64> = store
                .timeline(filter, after, limit)
                .await
                .expect("timeline")
                .iter()
                .map(|e| e.position)
                .collect();
            assert_eq!(
                found,
                expected_positions(&rows, filter, of_enterprise, after, limit),
                "{filter:?} after {after}, {limit} at most"
            );
        }
        // Page by page, the same as at once.
        let mut paged = Vec::new();
        let mut after = 0;
        loop {
            let page = store.timeline(filter, after, 37).await.expect("timeline");
            let Some(last) = page.last() else { break };
            after = last.position;
            paged.extend(page);
        }
        let whole = store.timeline(filter, 0, 10_000).await.expect("timeline");
        assert_eq!(paged, whole, "{filter:?} paged");
        for event in &whole {
            assert_eq!(Some(event), all.get(event.position as usize - 1));
        }
    }
}

/// A session's append of many events (on PostgreSQL, copied rather than
/// inserted) stores every field as given: ids with and without, dates on
/// both sides of 2000-01-01, texts of every kind, two runs on two streams,
/// one of them already begun. The chain check re-hashes what was stored.
pub async fn a_large_append_stores_every_field_as_given(ledger: TestLedger) {
    const PER_RUN: i64 = 300;
    let store = ledger.store.as_ref();
    store
        .append("x", ExpectedVersion::Exactly(0), events("x-first", 2))
        .await
        .expect("append");
    let varied = |prefix: &str| -> Vec<NewEvent> {
        (1..=PER_RUN)
            .map(|line| {
                let mut event = event(
                    (line % 3 != 0)
                        .then(|| format!("{prefix}-{line}"))
                        .as_deref(),
                    line,
                );
                event.business_date = NaiveDate::from_ymd_opt(1999, 12, 31)
                    .and_then(|day| day.checked_add_days(chrono::Days::new(line as u64 * 37)))
                    .expect("a valid date");
                let mut payload = event.payload.to_value();
                payload["note"] = json!(format!("“{prefix}” \\ \"{line}\"\n\t€"));
                event.payload = payload.into();
                event.schema_version = (line % 2 + 1) as i32;
                event.metadata.causation_id = (line % 5 == 0).then(Uuid::now_v7);
                event
            })
            .collect()
    };
    let given: Vec<(&str, Vec<NewEvent>)> = vec![("y", varied("y")), ("x", varied("x"))];
    let mut session = store.begin().await.expect("begin");
    let appended = session
        .append_runs(
            given
                .iter()
                .map(|(stream, events)| {
                    let expected = ExpectedVersion::Exactly(if *stream == "x" { 2 } else { 0 });
                    run(stream, expected, events.clone())
                })
                .collect(),
        )
        .await
        .expect("the large append");
    session.commit().await.expect("commit");

    let stored = read_all_fully(store).await;
    assert_eq!(stored.len() as i64, 2 + 2 * PER_RUN);
    let written = given
        .iter()
        .flat_map(|(stream, events)| events.iter().map(move |e| (*stream, e)));
    assert_eq!(
        appended.iter().map(Vec::len).sum::<usize>(),
        stored.len() - 2
    );
    let answered = appended.iter().flatten();
    for ((stream, event), (answer, row)) in written.zip(answered.zip(&stored[2..])) {
        let place = format!("position {}", row.position);
        assert_eq!(row.event_id, answer.event_id, "{place}");
        assert_eq!(
            (row.version, row.position),
            (answer.version, answer.position)
        );
        assert_eq!(row.stream, stream, "{place}");
        assert_eq!(row.caller_id, event.caller_id, "{place}");
        assert_eq!(row.event_type, event.event_type, "{place}");
        assert_eq!(row.schema_version, event.schema_version, "{place}");
        assert_eq!(row.payload, event.payload.to_value(), "{place}");
        assert_eq!(row.metadata, event.metadata, "{place}");
        assert_eq!(row.business_date, event.business_date, "{place}");
    }
    assert!(stored
        .windows(2)
        .all(|pair| pair[0].recorded_at <= pair[1].recorded_at));
    assert_eq!(
        stored[2..]
            .iter()
            .map(|e| e.recorded_at)
            .collect::<HashSet<_>>()
            .len(),
        1,
        "one append, one recorded time"
    );
    let ids: Vec<String> = stored.iter().filter_map(|e| e.caller_id.clone()).collect();
    let found = store.find_by_caller_ids(&ids).await.expect("find");
    assert_eq!(found.len(), ids.len());
    assert!(found.iter().all(|e| e.caller_id.is_some()));
    assert!(store.verify_chain(None).await.expect("verify").is_empty());
    // The replays read the same rows back.
    let replayed = store
        .read_all_for_replay(0, usize::MAX)
        .await
        .expect("replay read");
    assert_eq!(replayed.len(), stored.len());
    for (replay, whole) in replayed.iter().zip(&stored) {
        assert_eq!(replay.business_date, whole.business_date);
        assert_eq!(replay.recorded_at, whole.recorded_at);
        assert_eq!(replay.payload_json, canonical_json(&whole.payload));
    }
}

fn balance(manual: &str, item: i64, balance: &str) -> BalanceRow {
    BalanceRow {
        manual: manual.to_owned(),
        item,
        hs: "7208510000".to_owned(),
        name: "热轧钢板".to_owned(),
        unit: "kg".to_owned(),
        balance: balance.to_owned(),
        at_contractors: "0".to_owned(),
    }
}

fn carryover(manual: &str, event: &str, qty: &str) -> CarryoverRow {
    CarryoverRow {
        manual: manual.to_owned(),
        event: event.to_owned(),
        direction: "out".to_owned(),
        counterparty_manual: "C0".to_owned(),
        batch: None,
        item: 1,
        qty: qty.to_owned(),
        business_date: "2024-03-15".to_owned(),
        moved_on: "2024-03-15".to_owned(),
    }
}

fn deadline(manual: &str, kind: &str, event: &str, due: &str) -> DeadlineRow {
    DeadlineRow {
        manual: manual.to_owned(),
        kind: kind.to_owned(),
        event: event.to_owned(),
        due: due.to_owned(),
        detail: String::new(),
    }
}

/// A manual's rows as a replacement gives them: a balance a material, a
/// carry-over and a deadline of each event in `events`.
fn whole_manual(manual: &str, version: i64, events: &[&str]) -> ManualRows {
    let mut rows = manual_row(manual, "E1", "E1");
    rows.manual.version = version;
    rows.balances = (1..=3)
        .map(|item| balance(manual, item, &format!("{version}.{item}")))
        .collect();
    rows.carryovers = events.iter().map(|e| carryover(manual, e, "1")).collect();
    rows.deadlines = events
        .iter()
        .map(|e| deadline(manual, "outward_return", e, "2024-06-01"))
        .collect();
    rows
}

/// Commits of the manuals' rows touching many manuals at once, a manual
/// replaced, then amended in the same commit, others amended beside it:
/// each manual's rows end as its changes say in their order, and no
/// manual's rows are touched by another's.
pub async fn manual_rows_are_written_as_each_change_says(ledger: TestLedger) {
    let store = ledger.store.as_ref();
    store
        .append("m0", ExpectedVersion::Any, events("rows", 3))
        .await
        .expect("append");
    // 1,200 manuals: more than a statement's rows.
    let names: Vec<String> = (0..1_200).map(|n| format!("M{n:04}")).collect();
    let first: Vec<Change> = names
        .iter()
        .map(|m| Change::ReplaceManual(Box::new(whole_manual(m, 1, &["a", "b"]))))
        .collect();
    store
        .commit_projection(ProjectionBatch {
            projection: "manuals".to_owned(),
            from_position: 0,
            to_position: 1,
            changes: first,
        })
        .await
        .expect("the first commit");
    // Every even manual amended: carry-over "a" gone, "b" changed, "c" new;
    // deadline "a" gone, "c" new; its balances whole. M0001 is replaced,
    // then amended in the same commit.
    let amend = |m: &str| ManualAmendment {
        manual: {
            let mut row = manual_row(m, "E1", "E1").manual;
            row.version = 2;
            row
        },
        balances: vec![balance(m, 1, "2.1"), balance(m, 4, "2.4")],
        removed_carryovers: vec!["a".to_owned()],
        carryovers: vec![carryover(m, "b", "2"), carryover(m, "c", "3")],
        removed_deadlines: vec![("outward_return".to_owned(), "a".to_owned())],
        deadlines: vec![deadline(m, "outward_return", "c", "2024-07-01")],
    };
    let mut second: Vec<Change> = names
        .iter()
        .step_by(2)
        .map(|m| Change::AmendManual(Box::new(amend(m))))
        .collect();
    second.insert(
        10,
        Change::ReplaceManual(Box::new(whole_manual("M0001", 5, &["x"]))),
    );
    second.push(Change::AmendManual(Box::new(amend("M0001"))));
    store
        .commit_projection(ProjectionBatch {
            projection: "manuals".to_owned(),
            from_position: 1,
            to_position: 2,
            changes: second,
        })
        .await
        .expect("the second commit");

    let manuals = store.manual_rows(None).await.expect("manuals");
    assert_eq!(manuals.len(), names.len());
    for (index, name) in names.iter().enumerate() {
        let amended = index % 2 == 0 || name == "M0001";
        let summary = manuals
            .iter()
            .find(|m| &m.manual == name)
            .expect("a summary");
        assert_eq!(summary.version, if amended { 2 } else { 1 }, "{name}");
        let balances: Vec<(i64, String)> = store
            .balance_rows(Some(name))
            .await
            .expect("balances")
            .into_iter()
            .map(|b| (b.item, b.balance))
            .collect();
        let mut carryovers: Vec<(String, String)> = store
            .carryover_rows(Some(name))
            .await
            .expect("carry-overs")
            .into_iter()
            .map(|c| (c.event, c.qty))
            .collect();
        carryovers.sort();
        let mut deadlines: Vec<(String, String)> = store
            .deadline_rows(Some(name))
            .await
            .expect("deadlines")
            .into_iter()
            .map(|d| (d.event, d.due))
            .collect();
        deadlines.sort();
        let pair = |a: &str, b: &str| (a.to_owned(), b.to_owned());
        if name == "M0001" {
            // Replaced with "x" alone, then amended.
            assert_eq!(balances, [(1, "2.1".into()), (4, "2.4".into())]);
            assert_eq!(
                carryovers,
                [pair("b", "2"), pair("c", "3"), pair("x", "1")],
                "{name}"
            );
            assert_eq!(
                deadlines,
                [pair("c", "2024-07-01"), pair("x", "2024-06-01")],
                "{name}"
            );
        } else if amended {
            assert_eq!(balances, [(1, "2.1".into()), (4, "2.4".into())], "{name}");
            assert_eq!(carryovers, [pair("b", "2"), pair("c", "3")], "{name}");
            assert_eq!(
                deadlines,
                [pair("b", "2024-06-01"), pair("c", "2024-07-01")],
                "{name}"
            );
        } else {
            assert_eq!(
                balances,
                [(1, "1.1".into()), (2, "1.2".into()), (3, "1.3".into())],
                "{name}"
            );
            assert_eq!(carryovers, [pair("a", "1"), pair("b", "1")], "{name}");
            assert_eq!(
                deadlines,
                [pair("a", "2024-06-01"), pair("b", "2024-06-01")],
                "{name}"
            );
        }
    }
}

/// A session that moves the same streams again and again (as a bulk import
/// does, a chunk at a time) sees each where its last append left it, others
/// see none of it until the commit, and after the commit every stream's head
/// (version and hash) is where the session left it: the next append outside
/// extends it and the chain holds.
pub async fn a_session_moving_streams_again_and_again_leaves_their_heads_at_commit(
    ledger: TestLedger,
) {
    let store = ledger.store.as_ref();
    store
        .append("a", ExpectedVersion::Exactly(0), events("a0", 1))
        .await
        .expect("append");
    let mut session = store.begin().await.expect("begin");
    for round in 1..=5 {
        session
            .append("a", ExpectedVersion::Any, events(&format!("a{round}"), 2))
            .await
            .expect("append a");
        session
            .append(
                "b",
                ExpectedVersion::Exactly(3 * (round - 1)),
                events(&format!("b{round}"), 3),
            )
            .await
            .expect("append b");
        assert_eq!(
            session.stream_version("a").await.expect("version"),
            1 + 2 * round
        );
        assert_eq!(
            session.stream_version("b").await.expect("version"),
            3 * round
        );
    }
    let stale = session
        .append("a", ExpectedVersion::Exactly(3), events("stale", 1))
        .await;
    assert!(
        matches!(stale, Err(StoreError::Conflict { .. })),
        "{stale:?}"
    );
    session.rollback().await.expect("rollback");
    assert_eq!(store.stream_version("a").await.expect("version"), 1);
    assert_eq!(store.stream_version("b").await.expect("version"), 0);

    let mut session = store.begin().await.expect("begin");
    for round in 1..=5 {
        session
            .append(
                "a",
                ExpectedVersion::Exactly(2 * round - 1),
                events(&format!("a{round}"), 2),
            )
            .await
            .expect("append a");
        session
            .append("b", ExpectedVersion::Any, events(&format!("b{round}"), 3))
            .await
            .expect("append b");
    }
    assert_eq!(store.stream_version("a").await.expect("version"), 1);
    session.commit().await.expect("commit");
    assert_eq!(store.stream_version("a").await.expect("version"), 11);
    assert_eq!(store.stream_version("b").await.expect("version"), 15);
    let next = store
        .append("a", ExpectedVersion::Exactly(11), events("after", 1))
        .await
        .expect("the next append extends the head the session left");
    assert_eq!(next[0].version, 12);
    store
        .append("b", ExpectedVersion::Exactly(15), events("after-b", 1))
        .await
        .expect("and so for b");
    assert!(store.verify_chain(None).await.expect("verify").is_empty());
}
