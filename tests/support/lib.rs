//! Support for the end-to-end tests: a fresh ledger on either backend, the
//! real `bondledger` binary run against it, and report comparison.
//!
//! PostgreSQL comes from `BONDLEDGER_TEST_POSTGRES_URL` (default: the local
//! `test` database); every ledger gets a schema of its own. When PostgreSQL
//! cannot be reached, its tests fail under `CI=true` and warn otherwise.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};

use rust_decimal::Decimal;
use serde_json::Value;
use sqlx::Connection;

mod serve;
pub use serve::Server;

const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Generates one test per backend, `sqlite::NAME` and `postgres::NAME`,
/// each calling `NAME(ledger)` on a fresh ledger.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident;)*) => {
        mod sqlite {
            $( #[test] fn $name() { if let Some(ledger) = $crate::TestLedger::new($crate::Backend::Sqlite) { super::$name(ledger) } } )*
        }
        mod postgres {
            $( #[test] fn $name() { if let Some(ledger) = $crate::TestLedger::new($crate::Backend::Postgres) { super::$name(ledger) } } )*
        }
    };
}

/// The `bondledger` binary built beside the tests (`cargo build` first), or
/// `BONDLEDGER_BIN`.
pub fn binary() -> PathBuf {
    if let Ok(path) = std::env::var("BONDLEDGER_BIN") {
        return PathBuf::from(path);
    }
    let test_exe = std::env::current_exe().expect("the test's own path");
    // target/<profile>/deps/<test> → target/<profile>/bondledger
    let profile_dir = test_exe
        .parent()
        .and_then(Path::parent)
        .expect("a target directory");
    let binary = profile_dir.join(format!("bondledger{}", std::env::consts::EXE_SUFFIX));
    assert!(
        binary.exists(),
        "{} is missing: run `cargo build --workspace` first",
        binary.display()
    );
    binary
}

/// The `bondledger-gen` binary built beside `bondledger` (`cargo build
/// --workspace` first), or `BONDLEDGER_GEN_BIN`.
pub fn generator_binary() -> PathBuf {
    if let Ok(path) = std::env::var("BONDLEDGER_GEN_BIN") {
        return PathBuf::from(path);
    }
    let beside = binary().with_file_name(format!("bondledger-gen{}", std::env::consts::EXE_SUFFIX));
    assert!(
        beside.exists(),
        "{} is missing: run `cargo build --workspace` first",
        beside.display()
    );
    beside
}

/// The specification's sample histories and their independently computed
/// reports, kept in the repository (`tests/samples`, as published beside the
/// specification) so that the suite runs from a clone wherever it is.
pub fn samples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("samples")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

/// A ledger of its own for one test.
pub struct TestLedger {
    pub backend: Backend,
    pub url: String,
    /// Where the test may write files; the SQLite ledger lives here too.
    pub dir: tempfile::TempDir,
    postgres: Option<(String, String)>,
}

impl TestLedger {
    /// A fresh, empty ledger; `None` where PostgreSQL is out of reach
    /// outside CI (the test then only warns).
    pub fn new(backend: Backend) -> Option<Self> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        match backend {
            Backend::Sqlite => {
                let url = format!("sqlite://{}", dir.path().join("ledger.db").display());
                Some(TestLedger {
                    backend,
                    url,
                    dir,
                    postgres: None,
                })
            }
            Backend::Postgres => {
                let base = std::env::var("BONDLEDGER_TEST_POSTGRES_URL")
                    .unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned());
                static COUNTER: AtomicU64 = AtomicU64::new(0);
                let schema = format!(
                    "e2e_{}_{}_{}",
                    std::process::id(),
                    COUNTER.fetch_add(1, Ordering::Relaxed),
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.subsec_nanos())
                );
                let created = runtime().block_on(async {
                    let mut admin = sqlx::PgConnection::connect(&base).await?;
                    sqlx::raw_sql(&format!("CREATE SCHEMA {schema}"))
                        .execute(&mut admin)
                        .await?;
                    admin.close().await
                });
                if let Err(error) = created {
                    if std::env::var("CI").is_ok_and(|v| v == "true") {
                        panic!("PostgreSQL at {base} cannot be reached ({error}), and CI=true requires it");
                    }
                    eprintln!("WARNING: PostgreSQL at {base} cannot be reached ({error}); this test is not run");
                    return None;
                }
                let separator = if base.contains('?') { '&' } else { '?' };
                let url = format!("{base}{separator}options=-c%20search_path%3D{schema}");
                Some(TestLedger {
                    backend,
                    url,
                    dir,
                    postgres: Some((base, schema)),
                })
            }
        }
    }

    /// Runs the binary against this ledger, in the test's directory.
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_with_env(args, &[])
    }

    /// Runs the binary with extra environment variables.
    pub fn run_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        Command::new(binary())
            .args(args)
            .envs(env.iter().copied())
            .arg("--database-url")
            .arg(&self.url)
            .current_dir(self.dir.path())
            .env_remove("BONDLEDGER_DATABASE_URL")
            .output()
            .expect("the binary runs")
    }

    /// Runs and expects this exit status; returns stdout.
    pub fn expect(&self, args: &[&str], status: i32) -> String {
        let output = self.run(args);
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert_eq!(
            output.status.code(),
            Some(status),
            "bondledger {args:?}\nstdout: {stdout}\nstderr: {stderr}"
        );
        stdout
    }

    /// Runs and parses stdout as JSON (exit 0 expected).
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--format", "json"]);
        let stdout = self.expect(&all, 0);
        serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("bondledger {args:?} printed no JSON ({e}): {stdout}"))
    }

    /// Writes a movement file into the test's directory.
    pub fn file(&self, name: &str, lines: &[Value]) -> PathBuf {
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        self.file_text(name, &text)
    }

    pub fn file_text(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("a test file is written");
        path
    }

    /// Runs raw SQL against the ledger's database, bypassing the binary:
    /// what someone with database access could do.
    pub fn execute_sql(&self, sql: &str) -> Result<(), String> {
        runtime().block_on(async {
            match self.backend {
                Backend::Sqlite => {
                    let path = self.dir.path().join("ledger.db");
                    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(path);
                    let mut connection = sqlx::SqliteConnection::connect_with(&options)
                        .await
                        .map_err(|e| e.to_string())?;
                    sqlx::raw_sql(sql)
                        .execute(&mut connection)
                        .await
                        .map_err(|e| e.to_string())?;
                    connection.close().await.map_err(|e| e.to_string())
                }
                Backend::Postgres => {
                    let mut connection = sqlx::PgConnection::connect(&self.url)
                        .await
                        .map_err(|e| e.to_string())?;
                    sqlx::raw_sql(sql)
                        .execute(&mut connection)
                        .await
                        .map_err(|e| e.to_string())?;
                    connection.close().await.map_err(|e| e.to_string())
                }
            }
        })
    }

    /// The one number a query selects (e.g. a count), straight from the database.
    pub fn count(&self, sql: &str) -> i64 {
        runtime().block_on(async {
            match self.backend {
                Backend::Sqlite => {
                    let options = sqlx::sqlite::SqliteConnectOptions::new()
                        .filename(self.dir.path().join("ledger.db"));
                    let mut connection = sqlx::SqliteConnection::connect_with(&options)
                        .await
                        .expect("connects");
                    let (count,): (i64,) = sqlx::query_as(sql)
                        .fetch_one(&mut connection)
                        .await
                        .expect("a count");
                    count
                }
                Backend::Postgres => {
                    let mut connection = sqlx::PgConnection::connect(&self.url)
                        .await
                        .expect("connects");
                    let (count,): (i64,) = sqlx::query_as(sql)
                        .fetch_one(&mut connection)
                        .await
                        .expect("a count");
                    count
                }
            }
        })
    }

    /// This ledger on the run's streaming replica of PostgreSQL
    /// (`BONDLEDGER_TEST_REPLICA_URL`: the replica's address of the run's
    /// database, which `tools/test.sh` starts). None on SQLite, and where
    /// there is no replica outside CI (the test then only warns).
    pub fn replica_url(&self) -> Option<String> {
        let (_, schema) = self.postgres.as_ref()?;
        let Ok(base) = std::env::var("BONDLEDGER_TEST_REPLICA_URL") else {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("BONDLEDGER_TEST_REPLICA_URL is not set, and CI=true requires a replica (tools/test.sh starts one)");
            }
            eprintln!(
                "WARNING: no streaming replica (BONDLEDGER_TEST_REPLICA_URL); this test is not run"
            );
            return None;
        };
        let separator = if base.contains('?') { '&' } else { '?' };
        Some(format!(
            "{base}{separator}options=-c%20search_path%3D{schema}"
        ))
    }

    /// The whole ledger as `history --format json` sees every manual.
    pub fn history(&self, manual: &str) -> Value {
        self.json(&["history", manual])
    }
}

impl Drop for TestLedger {
    fn drop(&mut self) {
        if let Some((base, schema)) = &self.postgres {
            let _ = runtime().block_on(async {
                let mut admin = sqlx::PgConnection::connect(base).await?;
                // A connection a failed test left in a transaction must not hang
                // the clean-up; the run's database is dropped whole at the end.
                let drop =
                    format!("SET lock_timeout = '5s'; DROP SCHEMA IF EXISTS {schema} CASCADE");
                sqlx::raw_sql(&drop).execute(&mut admin).await?;
                admin.close().await
            });
        }
    }
}

/// Stops (`stop`) or starts again (`restart`) the run's streaming replica,
/// through `tools/replica.sh` and `BONDLEDGER_TEST_REPLICA_DIR`.
pub fn replica_control(action: &str) {
    let dir = std::env::var("BONDLEDGER_TEST_REPLICA_DIR")
        .expect("BONDLEDGER_TEST_REPLICA_DIR names the replica's data directory");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tools/replica.sh");
    let status = Command::new("bash")
        .arg(script)
        .args([action, &dir])
        .status()
        .expect("tools/replica.sh runs");
    assert!(
        status.success(),
        "tools/replica.sh {action} {dir}: {status}"
    );
}

/// How `../shared/README.md` keys a finding: by material for findings about
/// a material's totals, by movement otherwise.
pub fn finding_key(finding: &Value) -> (String, String) {
    let rule = finding["rule"].as_str().unwrap_or_default().to_owned();
    let by_material = [
        "verification.short",
        "verification.surplus",
        "scrap.exceeds_allowance",
        "outward.outstanding",
        "work_order.deviation",
    ];
    let key = if by_material.contains(&rule.as_str()) {
        finding["material"].to_string()
    } else {
        finding["event"].to_string()
    };
    (rule, key)
}

/// Differences between an expected and an actual report: numbers compared
/// as decimals, findings as sets. Empty when they agree.
pub fn report_differences(expected: &Value, actual: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    for field in [
        "manual",
        "trade_mode",
        "reported",
        "status",
        "materials",
        "work_orders",
    ] {
        same(&expected[field], &actual[field], field, &mut problems);
    }
    let keys = |report: &Value| {
        let mut keys: Vec<_> = report["findings"]
            .as_array()
            .map(|f| f.iter().map(finding_key).collect())
            .unwrap_or_default();
        keys.sort();
        keys
    };
    let (want, got) = (keys(expected), keys(actual));
    if want != got {
        problems.push(format!("findings: expected {want:?}, got {got:?}"));
    }
    problems
}

fn same(expected: &Value, actual: &Value, path: &str, problems: &mut Vec<String>) {
    match (expected, actual) {
        (Value::String(e), Value::String(a)) => {
            match (e.parse::<Decimal>(), a.parse::<Decimal>()) {
                (Ok(e), Ok(a)) if e == a => {}
                (Ok(e), Ok(a)) => problems.push(format!("{path}: expected {e}, got {a}")),
                _ if e != a => problems.push(format!("{path}: expected {e:?}, got {a:?}")),
                _ => {}
            }
        }
        (Value::Object(e), Value::Object(a)) => {
            for (key, value) in e {
                same(
                    value,
                    a.get(key).unwrap_or(&Value::Null),
                    &format!("{path}.{key}"),
                    problems,
                );
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            if e.len() != a.len() {
                problems.push(format!(
                    "{path}: expected {} entries, got {}",
                    e.len(),
                    a.len()
                ));
            }
            for (index, (e, a)) in e.iter().zip(a).enumerate() {
                same(e, a, &format!("{path}[{index}]"), problems);
            }
        }
        (e, a) if e != a => problems.push(format!("{path}: expected {e}, got {a}")),
        _ => {}
    }
}
