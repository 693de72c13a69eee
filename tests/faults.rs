//! Database faults on PostgreSQL: connections killed from another session
//! (`pg_terminate_backend`) while `serve` takes appends and while `import`
//! runs. The caller gets a clear error that says to retry, nothing is
//! half-written, a retry with the same ids appends each movement once, and
//! `serve` goes on without being restarted. And the server itself
//! restarted under load (`pg_ctlcluster … restart`): the same holds.
//!
//! The tests of this file take turns (one lock): a restart would cut the
//! others' connections too.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bondledger_tests::{Backend, Server, TestLedger};
use serde_json::{json, Value};
use sqlx::Connection;

const ENTERPRISE: &str = "3101960042";
const MANUAL: &str = "C31012600900";
const MOVEMENTS: usize = 40;
/// Between two rounds of killing: long enough for a request to get through.
const KILL_EVERY: Duration = Duration::from_millis(250);

fn register() -> Value {
    json!({"id": "f-reg", "type": "manual_registered", "manual": MANUAL, "date": "2026-02-01",
        "trade_mode": "purchased", "enterprise": ENTERPRISE, "valid_until": "2026-12-31",
        "materials": [{"item": 1, "hs": "7408110000", "name": "精炼铜线", "spec": "Φ2.6mm", "unit": "千克", "qty": "1000000"}],
        "products": [{"item": 1, "hs": "8544491900", "name": "电源线", "spec": "3x1.5mm²", "unit": "千克", "qty": "900000"}]})
}

fn import(id: &str) -> Value {
    json!({"id": id, "type": "material_imported", "manual": MANUAL, "date": "2026-02-10", "material": 1,
        "qty": "1", "declaration": "310120261000010001", "mode": "0615"})
}

/// One test of this file at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn take_turn() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Kills every connection of `application` every few milliseconds until
/// told to stop; how many it killed.
fn killer(
    base: String,
    application: String,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async move {
            let mut admin = sqlx::PgConnection::connect(&base).await.expect("connects");
            let mut killed = 0u64;
            while !stop.load(Ordering::Acquire) {
                let (n,): (i64,) = sqlx::query_as(
                    "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity \
                     WHERE application_name = $1 AND pid <> pg_backend_pid()",
                )
                .bind(&application)
                .fetch_one(&mut admin)
                .await
                .expect("terminates");
                killed += n as u64;
                tokio::time::sleep(KILL_EVERY).await;
            }
            killed
        })
    })
}

/// The test's ledger and the name (`PGAPPNAME`) its binaries' connections
/// go by, so they and no others can be killed.
fn ledger(test_name: &str) -> Option<(TestLedger, String, String)> {
    let test = TestLedger::new(Backend::Postgres)?;
    let application = format!("bondledger_{test_name}_{}", std::process::id());
    let base = std::env::var("BONDLEDGER_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    Some((test, application, base))
}

/// A client of `serve` appending one movement at a time, as a client should
/// when the database fails: the same movement again, with the same id,
/// while the answer is 503.
struct Appender<'a> {
    server: &'a Server,
    token: String,
    http: reqwest::blocking::Client,
}

impl<'a> Appender<'a> {
    fn new(server: &'a Server) -> Self {
        Appender {
            server,
            token: server.sign_in_token().expect("a first token").to_owned(),
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("a client"),
        }
    }

    fn post(&self, movement: &Value) -> reqwest::blocking::Response {
        self.http
            .post(self.server.url("/api/v1/movements"))
            .bearer_auth(&self.token)
            .json(movement)
            .send()
            .expect("the server answers")
    }

    /// Posts `movement` until it is held (201, or 200 when a cut-off attempt
    /// had appended it), at most `attempts` times, `pause` apart; how many
    /// attempts failed with a 503.
    fn until_held(&self, movement: &Value, attempts: u32, pause: Duration) -> u64 {
        let id = movement["id"].as_str().unwrap_or_default();
        let mut failures = 0;
        for _ in 0..attempts {
            let answer = self.post(movement);
            let status = answer.status().as_u16();
            let body: Value = answer.json().unwrap_or(Value::Null);
            match status {
                200 | 201 => return failures,
                503 => {
                    assert!(body["error"].is_string(), "a JSON error: {body}");
                    failures += 1;
                    std::thread::sleep(pause);
                }
                other => panic!("{id}: {other} {body}"),
            }
        }
        panic!("{id} never went through");
    }

    /// The test manual's history as `serve` answers it now.
    fn history(&self, what: &str) -> Vec<Value> {
        let answer = self
            .http
            .get(
                self.server
                    .url(&format!("/api/v1/manuals/{MANUAL}/history?limit=1000")),
            )
            .bearer_auth(&self.token)
            .send()
            .expect("history");
        assert_eq!(answer.status(), 200, "{what}");
        let history: Value = answer.json().expect("JSON");
        history.as_array().cloned().expect("an array")
    }
}

#[test]
fn serve_survives_killed_connections_and_retries_append_once() {
    let _turn = take_turn();
    let Some((test, application, base)) = ledger("serve") else {
        return;
    };
    let server = Server::start_with_env(&test, &[], &[("PGAPPNAME", &application)], "serve.log");
    let appender = Appender::new(&server);
    assert_eq!(appender.post(&register()).status(), 201);

    let stop = Arc::new(AtomicBool::new(false));
    let kills = killer(base, application.clone(), stop.clone());
    let mut failures = 0;
    for n in 0..MOVEMENTS {
        failures += appender.until_held(&import(&format!("f-{n}")), 199, Duration::from_millis(10));
    }
    stop.store(true, Ordering::Release);
    let killed = kills.join().expect("the killer");
    assert!(killed > 0, "connections were killed");
    eprintln!("{killed} connections killed, {failures} requests failed and were retried");

    // serve goes on, unrestarted, and every movement is there once.
    let events = appender.history("serve answers after the kills");
    assert_eq!(events.len(), 1 + MOVEMENTS, "each movement once");
    for (index, event) in events.iter().enumerate() {
        assert_eq!(event["version"], json!(index + 1));
    }
    assert_eq!(
        test.count("SELECT COUNT(DISTINCT caller_id) FROM events"),
        (1 + MOVEMENTS) as i64
    );
    test.expect(&["audit"], 0);
}

#[test]
fn an_import_cut_off_by_a_killed_connection_is_run_again_to_the_same_end() {
    let _turn = take_turn();
    let Some((test, application, base)) = ledger("import") else {
        return;
    };
    let mut lines = vec![register()];
    lines.extend((0..3000).map(|n| import(&format!("g-{n}"))));
    let file = test.file("big.jsonl", &lines);
    // The schema is made before any connection is killed.
    test.expect(&["timeline"], 0);
    let path = file.to_str().expect("a UTF-8 path").to_owned();

    let stop = Arc::new(AtomicBool::new(false));
    let kills = killer(base, application.clone(), stop.clone());
    let mut failed_runs = 0;
    for attempt in 0.. {
        assert!(attempt < 50, "the import never completed");
        let output = test.run_with_env(&["import", &path], &[("PGAPPNAME", &application)]);
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        match output.status.code() {
            Some(0) => break,
            Some(1) => {
                failed_runs += 1;
                // All of the file or none of it, after every cut.
                let held = test.count("SELECT COUNT(*) FROM events");
                assert!(
                    held == 0 || held == lines.len() as i64,
                    "{held} events held after a cut"
                );
                assert!(
                    stderr.contains("database") || stderr.contains("connection"),
                    "a clear error: {stderr}"
                );
            }
            other => panic!("import: {other:?}: {stderr}"),
        }
        if failed_runs > 3 {
            // Enough cuts seen: let the next run through.
            stop.store(true, Ordering::Release);
        }
    }
    stop.store(true, Ordering::Release);
    let killed = kills.join().expect("the killer");
    eprintln!("{killed} connections killed, {failed_runs} import runs cut off");
    assert_eq!(
        test.count("SELECT COUNT(*) FROM events"),
        lines.len() as i64
    );
    assert_eq!(
        test.count("SELECT COUNT(DISTINCT caller_id) FROM events"),
        lines.len() as i64
    );
    // Once more: everything is held already, nothing is appended.
    test.expect(&["import", &path], 0);
    assert_eq!(
        test.count("SELECT COUNT(*) FROM events"),
        lines.len() as i64
    );
    test.expect(&["audit"], 0);
}

/// Restarts the local PostgreSQL cluster (Debian's `pg_ctlcluster`, as
/// `tools/test.sh` sets it up), fast: open connections are cut.
fn restart_postgres() {
    let version = std::fs::read_dir("/etc/postgresql")
        .ok()
        .and_then(|mut dirs| dirs.next())
        .and_then(|dir| dir.ok())
        .map(|dir| dir.file_name().to_string_lossy().into_owned())
        .expect("a PostgreSQL cluster under /etc/postgresql");
    let status = std::process::Command::new("pg_ctlcluster")
        .args([
            "--skip-systemctl-redirect",
            &version,
            "main",
            "restart",
            "-m",
            "fast",
        ])
        .status()
        .expect("pg_ctlcluster runs");
    assert!(status.success(), "the cluster restarts");
}

#[test]
fn serve_goes_on_after_the_database_server_restarts_under_load() {
    let _turn = take_turn();
    let Some((test, _, _)) = ledger("restart") else {
        return;
    };
    let server = Server::start(&test, &[], "serve.log");
    let appender = Appender::new(&server);
    assert_eq!(appender.post(&register()).status(), 201);
    let restarted = Arc::new(AtomicBool::new(false));
    let mut failures = 0;
    for n in 0..MOVEMENTS {
        if n == MOVEMENTS / 3 {
            let restarted = restarted.clone();
            std::thread::spawn(move || {
                restart_postgres();
                restarted.store(true, Ordering::Release);
            });
        }
        failures += appender.until_held(&import(&format!("r-{n}")), 599, Duration::from_millis(50));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !restarted.load(Ordering::Acquire) {
        assert!(std::time::Instant::now() < deadline, "the restart finished");
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("{failures} requests failed during the restart and were retried");
    let events = appender.history("serve answers after the restart");
    assert_eq!(events.len(), 1 + MOVEMENTS);
    assert_eq!(
        test.count("SELECT COUNT(DISTINCT caller_id) FROM events"),
        (1 + MOVEMENTS) as i64
    );
    test.expect(&["audit"], 0);
}

#[test]
fn serve_answers_at_once_after_the_database_server_restarted_while_it_was_idle() {
    let _turn = take_turn();
    let Some((test, _, _)) = ledger("idle_restart") else {
        return;
    };
    let server = Server::start(&test, &[], "serve.log");
    let appender = Appender::new(&server);
    assert_eq!(appender.post(&register()).status(), 201);
    assert_eq!(appender.post(&import("i-0")).status(), 201);
    restart_postgres();
    // Long enough idle that every pooled connection, all of them broken by
    // the restart, is checked before it is handed out.
    std::thread::sleep(Duration::from_secs(3));
    let answer = appender.post(&import("i-1"));
    assert_eq!(answer.status(), 201, "{:?}", answer.text());
    assert_eq!(appender.history("serve answers after the restart").len(), 3);
}
