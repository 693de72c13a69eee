//! What the database engine alone takes to store rows the ledger wrote: the
//! same rows copied by one `INSERT … SELECT` a table into empty tables of the
//! same schema, in one durable transaction. Nothing of the client is in it
//! (reading the file, deciding, hashing, binding): it is the rate an import
//! or a catch-up could reach at best with this schema on this machine, and
//! what is left of their own time is the client's.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use bondledger_store::Backend;
use sqlx::postgres::PgConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteSynchronous};
use sqlx::{Connection, Executor};

/// Tables the engine copies, each with the column its rows are chosen by.
pub struct Copied {
    /// The ledger's tables, in the order they are filled, each with the
    /// expression giving a row's position (the first of a block's).
    pub tables: &'static [(&'static str, &'static str)],
    /// Rows whose position lies in `(after, through]` are copied, in the
    /// order of their positions.
    pub after: i64,
    pub through: i64,
}

/// The events an import appended and the keys it wrote with them.
pub fn import_rows(backend: Backend, after: i64, through: i64) -> Copied {
    Copied {
        tables: match backend {
            Backend::Postgres => &[("events", "position"), ("event_keys", "position")],
            Backend::Sqlite => &[("events", "position")],
        },
        after,
        through,
    }
}

// The keys' position expression below names the block's width.
const _: () = assert!(bondledger_store::timeline::TIMELINE_BLOCK_EVENTS == 1_000);

/// The timeline projection's rows.
pub fn timeline_rows(through: i64) -> Copied {
    Copied {
        tables: &[
            ("rm_timeline_segments", "first_position"),
            ("rm_timeline_keys", "block * 1000 + 1"),
        ],
        after: 0,
        through,
    }
}

/// How long the engine takes to copy `copied` from the ledger at `url`.
pub async fn copy_time(url: &str, copied: &Copied) -> anyhow::Result<Duration> {
    match url.strip_prefix("sqlite://") {
        Some(path) => sqlite_copy_time(Path::new(path), copied).await,
        None => postgres_copy_time(url, copied).await,
    }
}

/// Into a new ledger file beside the ledger (the same disk), its schema made
/// by the store's own migrations, opened with the store's durability.
async fn sqlite_copy_time(ledger: &Path, copied: &Copied) -> anyhow::Result<Duration> {
    let beside = ledger
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_owned);
    let dir = tempfile::tempdir_in(&beside)
        .with_context(|| format!("a scratch directory in {}", beside.display()))?;
    let scratch = dir.path().join("floor.db");
    let url = format!("sqlite://{}", scratch.display());
    drop(
        bondledger_store::open(&url)
            .await
            .with_context(|| format!("making the schema in {url}"))?,
    );
    let options = SqliteConnectOptions::new()
        .filename(&scratch)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .pragma("temp_store", "MEMORY");
    let mut connection = SqliteConnection::connect_with(&options).await?;
    sqlx::query("ATTACH DATABASE ? AS ledger")
        .bind(ledger.to_string_lossy())
        .execute(&mut connection)
        .await
        .with_context(|| format!("attaching {}", ledger.display()))?;
    let started = Instant::now();
    connection.execute("BEGIN IMMEDIATE").await?;
    // The events name their streams: the heads come first, as in an append.
    if copied.tables.iter().any(|(table, _)| *table == "events") {
        connection
            .execute("INSERT INTO main.streams SELECT * FROM ledger.streams")
            .await?;
    }
    for (table, position) in copied.tables {
        sqlx::query(&format!(
            "INSERT INTO main.{table} SELECT * FROM ledger.{table} \
             WHERE {position} > ? AND {position} <= ? ORDER BY {position}"
        ))
        .bind(copied.after)
        .bind(copied.through)
        .execute(&mut connection)
        .await
        .with_context(|| format!("copying {table}"))?;
    }
    connection.execute("COMMIT").await?;
    let elapsed = started.elapsed();
    connection.close().await?;
    Ok(elapsed)
}

/// Into tables made `LIKE` the ledger's (columns, constraints and indexes;
/// not partitioned, no triggers), dropped afterwards. A partitioned table's
/// model is the partition the rows are in: its indexes are the ones an insert
/// pays for, some of which (unique ones without the partition key, such as
/// events' stream and version) only a partition has.
async fn postgres_copy_time(url: &str, copied: &Copied) -> anyhow::Result<Duration> {
    let mut connection = PgConnection::connect(url).await?;
    let scratch = |table: &str| format!("bench_floor_{table}");
    for (table, position) in copied.tables {
        let target = scratch(table);
        let model: Option<(String,)> = sqlx::query_as(&format!(
            "SELECT tableoid::regclass::text FROM {table} \
             WHERE {position} > $1 AND {position} <= $2 LIMIT 1"
        ))
        .bind(copied.after)
        .bind(copied.through)
        .fetch_optional(&mut connection)
        .await
        .with_context(|| format!("finding the partition of {table} the rows are in"))?;
        let model = model.map_or_else(|| (*table).to_owned(), |(name,)| name);
        connection
            .execute(
                format!(
                    "DROP TABLE IF EXISTS {target}; \
                     CREATE TABLE {target} (LIKE {model} INCLUDING ALL)"
                )
                .as_str(),
            )
            .await
            .with_context(|| format!("making {target}"))?;
    }
    let started = Instant::now();
    let mut transaction = connection.begin().await?;
    for (table, position) in copied.tables {
        sqlx::query(&format!(
            "INSERT INTO {} SELECT * FROM {table} WHERE {position} > $1 AND {position} <= $2 \
             ORDER BY {position}",
            scratch(table)
        ))
        .bind(copied.after)
        .bind(copied.through)
        .execute(&mut *transaction)
        .await
        .with_context(|| format!("copying {table}"))?;
    }
    transaction.commit().await?;
    let elapsed = started.elapsed();
    for (table, _) in copied.tables {
        connection
            .execute(format!("DROP TABLE {}", scratch(table)).as_str())
            .await?;
    }
    connection.close().await?;
    Ok(elapsed)
}
