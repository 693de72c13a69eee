//! Gives each case a fresh ledger on one backend and cleans up after it.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bondledger_store::{open, EventStore};
use futures::FutureExt;
use sqlx::{Connection, Executor};

const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const CASE_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

/// A ledger of the case's own, and raw access to the database under it.
pub struct TestLedger {
    pub store: Arc<dyn EventStore>,
    pub kind: Kind,
    url: String,
}

impl TestLedger {
    /// Closes the store and opens the same database again (migrations run again).
    pub async fn reopen(&mut self) {
        self.store = open(&self.url).await.expect("the ledger reopens");
    }

    /// The same ledger opened again beside this one: another process's store.
    pub async fn open_another(&self) -> Arc<dyn EventStore> {
        open(&self.url)
            .await
            .expect("the ledger opens a second time")
    }

    /// A connection of its own to the PostgreSQL database under the store.
    pub async fn postgres_connection(&self) -> sqlx::PgConnection {
        assert_eq!(self.kind, Kind::Postgres, "a PostgreSQL case");
        sqlx::PgConnection::connect(&self.url)
            .await
            .expect("a connection past the store")
    }

    /// Runs raw SQL on the same database, past the store.
    pub async fn execute_raw(&self, sql: &str) -> Result<u64, sqlx::Error> {
        match self.kind {
            Kind::Sqlite => {
                let path = self.url.trim_start_matches("sqlite://");
                let options = sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(path)
                    .busy_timeout(Duration::from_secs(30));
                let mut connection = sqlx::SqliteConnection::connect_with(&options).await?;
                let done = connection.execute(sqlx::raw_sql(sql)).await?;
                connection.close().await?;
                Ok(done.rows_affected())
            }
            Kind::Postgres => {
                let mut connection = sqlx::PgConnection::connect(&self.url).await?;
                let done = connection.execute(sqlx::raw_sql(sql)).await?;
                connection.close().await?;
                Ok(done.rows_affected())
            }
        }
    }

    pub async fn drop_append_only_triggers(&self) {
        let sql = match self.kind {
            Kind::Sqlite => "DROP TRIGGER events_refuse_update; DROP TRIGGER events_refuse_delete;",
            Kind::Postgres => DROP_POSTGRES_APPEND_ONLY_TRIGGERS,
        };
        self.execute_raw(sql)
            .await
            .expect("the triggers can be dropped");
    }
}

/// Every trigger on the events table and its partitions (a row trigger cloned to a
/// partition goes with its parent's).
const DROP_POSTGRES_APPEND_ONLY_TRIGGERS: &str = "DO $$
DECLARE
    found RECORD;
BEGIN
    FOR found IN SELECT tgname, tgrelid::regclass AS target FROM pg_trigger
                 WHERE tgrelid IN (SELECT relid FROM pg_partition_tree('events'))
                   AND NOT tgisinternal AND tgparentid = 0
    LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', found.tgname, found.target);
    END LOOP;
END;
$$";

pub type Case = fn(TestLedger) -> Pin<Box<dyn Future<Output = ()> + Send>>;

pub async fn run(kind: Kind, case: Case) {
    match kind {
        Kind::Sqlite => run_sqlite(case).await,
        Kind::Postgres => run_postgres(case).await,
    }
}

async fn run_sqlite(case: Case) {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let url = format!("sqlite://{}", directory.path().join("ledger.db").display());
    let store = open(&url).await.expect("a fresh SQLite ledger opens");
    let ledger = TestLedger {
        store,
        kind: Kind::Sqlite,
        url,
    };
    tokio::time::timeout(CASE_TIMEOUT, case(ledger))
        .await
        .expect("the case finishes in time");
}

async fn run_postgres(case: Case) {
    let base_url = std::env::var("BONDLEDGER_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned());
    let Some(mut admin) = connect_or_skip(&base_url).await else {
        return;
    };
    let schema = format!("contract_{}", uuid::Uuid::now_v7().simple());
    admin
        .execute(sqlx::raw_sql(&format!("CREATE SCHEMA {schema}")))
        .await
        .expect("a schema for the case");
    let separator = if base_url.contains('?') { '&' } else { '?' };
    let url = format!("{base_url}{separator}options=-c%20search_path%3D{schema}");
    let outcome = AssertUnwindSafe(async {
        let store = open(&url).await.expect("a fresh PostgreSQL ledger opens");
        let ledger = TestLedger {
            store,
            kind: Kind::Postgres,
            url: url.clone(),
        };
        tokio::time::timeout(CASE_TIMEOUT, case(ledger))
            .await
            .expect("the case finishes in time");
    })
    .catch_unwind()
    .await;
    admin
        .execute(sqlx::raw_sql(&format!("DROP SCHEMA {schema} CASCADE")))
        .await
        .expect("the case's schema is dropped");
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

async fn connect_or_skip(url: &str) -> Option<sqlx::PgConnection> {
    let error = match tokio::time::timeout(CONNECT_TIMEOUT, sqlx::PgConnection::connect(url)).await
    {
        Ok(Ok(connection)) => return Some(connection),
        Ok(Err(error)) => error.to_string(),
        Err(_) => format!("no answer within {CONNECT_TIMEOUT:?}"),
    };
    if std::env::var("CI").is_ok_and(|value| value == "true") {
        panic!("PostgreSQL at {url} cannot be reached ({error}), and CI=true requires it");
    }
    // Written to stderr directly, past the test harness's capture, so it shows.
    let warning = format!(
        "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
         !! WARNING: PostgreSQL at {url} cannot be reached: {error}\n\
         !! This PostgreSQL contract test was NOT run. Start PostgreSQL or set\n\
         !! BONDLEDGER_TEST_POSTGRES_URL; with CI=true this is a failure.\n\
         !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
    );
    let _ = std::io::Write::write_all(&mut std::io::stderr(), warning.as_bytes());
    None
}
