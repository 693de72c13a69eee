//! Reads from a real PostgreSQL streaming replica (`tools/test.sh` starts
//! one with pg_basebackup on another port): the replica answers as the
//! primary does; a reader sees its own writes however far behind the replica
//! is (it waits, then fails clearly), others see slightly stale data and are
//! told how stale; appends go on while the replica is down, and reads go to
//! the primary with a warning until it is back.
//!
//! The tests of this file take turns (one lock): they pause the replica's
//! replay and stop the replica, which the others would feel.

use std::time::{Duration, Instant};

use bondledger_tests::{replica_control, Backend, Server, TestLedger};
use reqwest::blocking::{Client, Response};
use serde_json::{json, Value};
use sqlx::Connection;

const ENTERPRISE: &str = "3101960042";
const MANUAL: &str = "C31012600901";
const LOAD_MANUAL: &str = "C31012600902";

static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn take_turn() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A PostgreSQL ledger and its replica's URL; None (a warning) outside CI
/// where either is missing.
fn ledger_with_replica() -> Option<(TestLedger, String)> {
    let test = TestLedger::new(Backend::Postgres)?;
    let replica = test.replica_url()?;
    Some((test, replica))
}

fn register(manual: &str, id: &str) -> Value {
    json!({"id": id, "type": "manual_registered", "manual": manual, "date": "2026-02-01",
        "trade_mode": "purchased", "enterprise": ENTERPRISE, "valid_until": "2026-12-31",
        "materials": [{"item": 1, "hs": "7408110000", "name": "精炼铜线", "spec": "Φ2.6mm", "unit": "千克", "qty": "1000000"}],
        "products": [{"item": 1, "hs": "8544491900", "name": "电源线", "spec": "3x1.5mm²", "unit": "千克", "qty": "900000"}]})
}

fn import(manual: &str, id: &str, qty: u32) -> Value {
    json!({"id": id, "type": "material_imported", "manual": manual, "date": "2026-02-10", "material": 1,
        "qty": qty.to_string(), "declaration": "310120261000010001", "mode": "0615"})
}

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("a client")
}

fn get(http: &Client, server: &Server, token: &str, path: &str) -> Response {
    http.get(server.url(path))
        .bearer_auth(token)
        .send()
        .expect("the server answers")
}

fn header(response: &Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .map(|value| value.to_str().expect("a text header").to_owned())
}

/// The bonded balance of material 1 of `manual`, as a read answers it.
fn balance_of(body: &Value) -> String {
    body["materials"][0]["balance"]
        .as_str()
        .unwrap_or_else(|| panic!("a balance: {body}"))
        .to_owned()
}

fn post(http: &Client, server: &Server, token: &str, movements: &Value) -> Response {
    let answer = http
        .post(server.url("/api/v1/movements"))
        .bearer_auth(token)
        .json(movements)
        .send()
        .expect("the server answers");
    assert_eq!(answer.status(), 201, "{movements}");
    answer
}

/// An auditor's token, made on the command line.
fn auditor_token(test: &TestLedger) -> String {
    let made = test.json(&[
        "token",
        "create",
        "--role",
        "auditor",
        "--label",
        "replica reader",
    ]);
    made["token"]
        .as_str()
        .unwrap_or_else(|| panic!("a token: {made}"))
        .to_owned()
}

/// The replica's replay paused until dropped.
struct ReplayPaused {
    replica: String,
}

fn replica_sql(replica: &str, sql: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let mut connection = sqlx::PgConnection::connect(replica)
            .await
            .expect("the replica takes connections");
        sqlx::raw_sql(sql)
            .execute(&mut connection)
            .await
            .unwrap_or_else(|error| panic!("{sql}: {error}"));
        connection.close().await.expect("closes");
    });
}

impl ReplayPaused {
    fn start(replica: &str) -> Self {
        replica_sql(replica, "SELECT pg_wal_replay_pause()");
        ReplayPaused {
            replica: replica.to_owned(),
        }
    }
}

impl Drop for ReplayPaused {
    fn drop(&mut self) {
        replica_sql(&self.replica, "SELECT pg_wal_replay_resume()");
    }
}

/// The replica stopped until dropped.
struct ReplicaStopped;

impl ReplicaStopped {
    fn start() -> Self {
        replica_control("stop");
        ReplicaStopped
    }
}

impl Drop for ReplicaStopped {
    fn drop(&mut self) {
        replica_control("restart");
    }
}

/// Every manual a ledger's timeline names, in order of first event.
fn manuals(test: &TestLedger) -> Vec<String> {
    let events = test.json(&["timeline"]);
    let mut manuals: Vec<String> = Vec::new();
    for event in events.as_array().expect("an array") {
        let manual = event["manual"].as_str().expect("a manual").to_owned();
        if !manuals.contains(&manual) {
            manuals.push(manual);
        }
    }
    manuals
}

#[test]
fn the_replica_answers_as_the_primary_does() {
    let _turn = take_turn();
    let Some((test, replica)) = ledger_with_replica() else {
        return;
    };
    test.expect(&["demo"], 0);
    let manuals = manuals(&test);
    assert!(manuals.len() >= 2, "{manuals:?}");

    // The command line: every query, from the primary and from the replica.
    let mut queries: Vec<Vec<String>> = vec![
        vec!["timeline".into()],
        vec!["timeline".into(), "--hs".into(), "85".into()],
        vec!["deadlines".into(), "--today".into(), "2026-11-23".into()],
    ];
    for manual in &manuals {
        queries.push(vec!["verify".into(), manual.clone()]);
        queries.push(vec!["balance".into(), manual.clone()]);
        queries.push(vec!["history".into(), manual.clone()]);
        queries.push(vec![
            "balance".into(),
            manual.clone(),
            "--as-of-position".into(),
            "5".into(),
        ]);
    }
    for query in &queries {
        let args: Vec<&str> = query.iter().map(String::as_str).collect();
        let primary = test.json(&args);
        let mut on_replica = args.clone();
        on_replica.extend(["--read-database-url", &replica, "--format", "json"]);
        let output = test.run(&on_replica);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{query:?}: {stderr}");
        assert!(
            !stderr.contains("warning"),
            "{query:?} was read around the replica: {stderr}"
        );
        let answer: Value = serde_json::from_slice(&output.stdout).expect("JSON");
        assert_eq!(answer, primary, "{query:?}");
    }

    // The API: a server reading the replica answers as one reading the primary.
    let with_replica = Server::start(&test, &["--read-database-url", &replica], "replica.log");
    let token = with_replica
        .sign_in_token()
        .expect("a first token")
        .to_owned();
    let primary_only = Server::start(&test, &[], "primary.log");
    let http = client();
    let mut paths = vec![
        "/api/v1/manuals".to_owned(),
        "/api/v1/timeline?limit=1000".to_owned(),
        "/api/v1/deadlines".to_owned(),
    ];
    for manual in &manuals {
        paths.push(format!("/api/v1/manuals/{manual}/balance"));
        paths.push(format!("/api/v1/manuals/{manual}/verification"));
        paths.push(format!("/api/v1/manuals/{manual}/history?limit=1000"));
    }
    for path in &paths {
        let from_replica = get(&http, &with_replica, &token, path);
        assert_eq!(from_replica.status(), 200, "{path}");
        assert_eq!(
            header(&from_replica, "bondledger-read-from").as_deref(),
            Some("replica"),
            "{path}"
        );
        let lag = header(&from_replica, "bondledger-replica-lag").expect("the lag is told");
        assert!(lag.starts_with("events="), "{lag}");
        let from_primary = get(&http, &primary_only, &token, path);
        assert_eq!(from_primary.status(), 200, "{path}");
        assert_eq!(
            header(&from_primary, "bondledger-read-from"),
            None,
            "a server without a replica says nothing of one"
        );
        let replica_body: Value = from_replica.json().expect("JSON");
        let primary_body: Value = from_primary.json().expect("JSON");
        assert_eq!(replica_body, primary_body, "{path}");
    }
}

#[test]
fn a_reader_sees_its_own_writes_and_others_are_told_how_stale() {
    let _turn = take_turn();
    let Some((test, replica)) = ledger_with_replica() else {
        return;
    };
    let server = Server::start(
        &test,
        &["--read-database-url", &replica, "--replica-wait", "2"],
        "serve.log",
    );
    let writer = server.sign_in_token().expect("a first token").to_owned();
    let auditor = auditor_token(&test);
    let http = client();
    post(
        &http,
        &server,
        &writer,
        &json!([
            register(MANUAL, "r-reg"),
            register(LOAD_MANUAL, "r-load-reg")
        ]),
    );

    // Under a steady load of batches by another client, each of 40 writes is
    // in the writer's very next read.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        let url = server.url("/api/v1/movements");
        let token = writer.clone();
        std::thread::spawn(move || {
            let http = client();
            let mut batches = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let batch: Vec<Value> = (0..50)
                    .map(|i| import(LOAD_MANUAL, &format!("r-load-{batches}-{i}"), 1))
                    .collect();
                let answer = http
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&batch)
                    .send()
                    .expect("the server answers");
                assert_eq!(answer.status(), 201);
                batches += 1;
            }
            batches
        })
    };
    let mut behind = 0;
    for i in 1..=40u32 {
        let written = post(
            &http,
            &server,
            &writer,
            &import(MANUAL, &format!("r-{i}"), 1),
        );
        assert!(header(&written, "bondledger-written-at").is_some());
        let read = get(
            &http,
            &server,
            &writer,
            &format!("/api/v1/manuals/{MANUAL}/balance"),
        );
        assert_eq!(read.status(), 200);
        assert_eq!(
            header(&read, "bondledger-read-from").as_deref(),
            Some("replica")
        );
        let lag = header(&read, "bondledger-replica-lag").expect("a lag");
        if !lag.starts_with("events=0;") {
            behind += 1;
        }
        let body: Value = read.json().expect("JSON");
        assert_eq!(
            balance_of(&body),
            format!("{i}.000000"),
            "write {i} not seen"
        );
        if i % 10 == 0 {
            // The read models too: the timeline answers from them.
            let path = format!("/api/v1/timeline?manual={MANUAL}&limit=1000");
            let read = get(&http, &server, &writer, &path);
            assert_eq!(read.status(), 200);
            let events: Value = read.json().expect("JSON");
            let events = events.as_array().expect("an array");
            assert_eq!(
                events.len(),
                i as usize + 1,
                "write {i} not in the timeline"
            );
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let batches = load.join().expect("the load ran");
    assert!(batches > 0);
    eprintln!("40 reads after writes, under {batches} batches of load: {behind} answered while the replica was behind the primary");

    // With the replica's replay paused, the writer's read waits, then fails
    // clearly; another reader gets the stale answer at once, told how stale.
    let paused = ReplayPaused::start(&replica);
    let written = post(&http, &server, &writer, &import(MANUAL, "r-paused", 5));
    let written_at = header(&written, "bondledger-written-at").expect("a position");
    let started = Instant::now();
    let read = get(
        &http,
        &server,
        &writer,
        &format!("/api/v1/manuals/{MANUAL}/balance"),
    );
    let waited = started.elapsed();
    assert_eq!(read.status(), 503);
    assert_eq!(header(&read, "retry-after").as_deref(), Some("1"));
    let body: Value = read.json().expect("JSON");
    assert_eq!(body["error"], "replica_behind", "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains(&written_at),
        "{body}"
    );
    assert!(
        waited >= Duration::from_secs(2),
        "answered after {waited:?}"
    );

    let stale = get(
        &http,
        &server,
        &auditor,
        &format!("/api/v1/manuals/{MANUAL}/balance"),
    );
    assert_eq!(stale.status(), 200);
    let lag = header(&stale, "bondledger-replica-lag").expect("a lag");
    assert!(
        !lag.starts_with("events=0;"),
        "the replica is behind: {lag}"
    );
    let body: Value = stale.json().expect("JSON");
    assert_eq!(balance_of(&body), "40.000000", "the stale answer");

    // Another client of the same writer names the write it must see.
    let named = http
        .get(server.url(&format!("/api/v1/manuals/{MANUAL}/balance")))
        .bearer_auth(&auditor)
        .header("Bondledger-Read-After", &written_at)
        .send()
        .expect("answers");
    assert_eq!(named.status(), 503);
    let malformed = http
        .get(server.url(&format!("/api/v1/manuals/{MANUAL}/balance")))
        .bearer_auth(&auditor)
        .header("Bondledger-Read-After", "yesterday")
        .send()
        .expect("answers");
    assert_eq!(malformed.status(), 400);

    // The command line waits for what the primary holds, then fails clearly.
    let output = test.run(&[
        "balance",
        MANUAL,
        "--read-database-url",
        &replica,
        "--replica-wait",
        "1",
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("has not replayed"), "{stderr}");

    // A read that is waiting when the replay resumes gets the write.
    let waiting = {
        let url = server.url(&format!("/api/v1/manuals/{MANUAL}/balance"));
        let token = writer.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            let answer = client()
                .get(&url)
                .bearer_auth(&token)
                .send()
                .expect("answers");
            (
                answer.status().as_u16(),
                answer.json::<Value>().expect("JSON"),
                started.elapsed(),
            )
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    drop(paused);
    let (status, body, waited) = waiting.join().expect("the read ran");
    assert_eq!(status, 200, "{body}");
    assert_eq!(balance_of(&body), "45.000000");
    assert!(
        waited >= Duration::from_millis(400),
        "it waited: {waited:?}"
    );
}

#[test]
fn appends_go_on_without_the_replica_and_reads_go_to_the_primary() {
    let _turn = take_turn();
    let Some((test, replica)) = ledger_with_replica() else {
        return;
    };
    let server = Server::start(&test, &["--read-database-url", &replica], "serve.log");
    let token = server.sign_in_token().expect("a first token").to_owned();
    let http = client();
    post(&http, &server, &token, &json!([register(MANUAL, "d-reg")]));
    let path = format!("/api/v1/manuals/{MANUAL}/balance");

    let stopped = ReplicaStopped::start();
    for i in 1..=10u32 {
        post(
            &http,
            &server,
            &token,
            &import(MANUAL, &format!("d-{i}"), 2),
        );
    }
    let read = get(&http, &server, &token, &path);
    assert_eq!(read.status(), 200);
    assert_eq!(
        header(&read, "bondledger-read-from").as_deref(),
        Some("primary")
    );
    let warning = header(&read, "bondledger-warning").expect("a warning");
    assert!(warning.contains("replica"), "{warning}");
    let body: Value = read.json().expect("JSON");
    assert_eq!(balance_of(&body), "20.000000");

    let output = test.run(&[
        "balance",
        MANUAL,
        "--read-database-url",
        &replica,
        "--format",
        "json",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("warning: reading the primary"), "{stderr}");
    let answer: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(balance_of(&answer), "20.000000");

    // Back: once the replica takes connections again, reads go to it.
    drop(stopped);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let read = get(&http, &server, &token, &path);
        assert_eq!(read.status(), 200);
        if header(&read, "bondledger-read-from").as_deref() == Some("replica") {
            let body: Value = read.json().expect("JSON");
            assert_eq!(balance_of(&body), "20.000000");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "reads never went back to the replica"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let log = std::fs::read_to_string(test.dir.path().join("serve.log")).expect("a log");
    assert!(
        log.contains("read from the primary"),
        "the server logged the failover"
    );
}
