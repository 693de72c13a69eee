//! `bondledger-bench COMMAND --database-url URL [--scale N]`: measures
//! Bondledger on one backend (an SQLite file or a PostgreSQL URL). Each
//! command prints one JSON line per figure on stdout
//! (`{"name","value","unit","backend","scale"}`) and a readable summary on
//! stderr. It writes histories of its own (manual numbers and ids tagged per
//! run): run it on a scratch database. `tools/bench/README.md` says what
//! each command measures and how to run the full set.

mod commands;
mod data;
mod figures;
mod floor;
mod growth;
mod replica;
mod store_append;

use std::path::PathBuf;

use anyhow::Context;
use bondledger_ledger::Ledger;
use bondledger_store::Backend;
use clap::{Args, Parser, Subcommand};

/// Replaying and importing allocate and free many small values a page at a
/// time; the system allocator spends much of that time consolidating.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// No command measures over more than this many events, movements or appends.
const MAX_SCALE: usize = 100_000_000;
const MAX_WRITERS: usize = 64;
const MAX_QUERIES: usize = 100_000;

#[derive(Parser)]
#[command(
    name = "bondledger-bench",
    about = "Measures Bondledger on SQLite or PostgreSQL"
)]
struct Arguments {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct Target {
    /// sqlite://PATH (sqlite:///abs/path) or postgres://…; a scratch database.
    #[arg(long, env = "BONDLEDGER_DATABASE_URL")]
    database_url: String,
}

#[derive(Subcommand)]
enum Command {
    /// The event store alone: single-event transactions, then 1,000-event batches.
    Append {
        #[command(flatten)]
        target: Target,
        /// Events appended by each phase.
        #[arg(long, default_value_t = 2_000)]
        events: usize,
    },
    /// Import throughput of a generated movement file (or --file), strict, durable.
    Import {
        #[command(flatten)]
        target: Target,
        /// Movements in the generated file.
        #[arg(long, default_value_t = 1_000_000)]
        scale: usize,
        /// Import this movement file instead of a generated one.
        #[arg(long)]
        file: Option<PathBuf>,
        /// Manuals the generated movements are spread over; other than the
        /// default, the figures' names say how many (`import_2000_manuals`).
        #[arg(long, default_value_t = commands::IMPORT_MANUALS)]
        manuals: u32,
    },
    /// Single-movement durable appends: one writer, then concurrent writers.
    Appends {
        #[command(flatten)]
        target: Target,
        /// Appends per phase.
        #[arg(long, default_value_t = 2_000)]
        scale: usize,
        #[arg(long, default_value_t = 8)]
        writers: usize,
    },
    /// `bondledger verify` of one manual of N events: wall time and peak memory.
    Verify {
        #[command(flatten)]
        target: Target,
        /// Movements of the generated manual.
        #[arg(long, default_value_t = 1_000_000)]
        scale: usize,
        /// Measure this manual, already in the ledger, instead of generating one.
        #[arg(long)]
        manual: Option<String>,
        /// The `bondledger` binary (default: BONDLEDGER_BIN, or beside this one).
        #[arg(long)]
        bondledger: Option<PathBuf>,
    },
    /// The balance as of random positions of one manual of N events: p50, p99.
    AsOf {
        #[command(flatten)]
        target: Target,
        #[arg(long, default_value_t = 1_000_000)]
        scale: usize,
        #[arg(long)]
        manual: Option<String>,
        #[arg(long, default_value_t = 200)]
        queries: usize,
    },
    /// Projections rebuilt from position 0 (events/s), then their lag under steady appends.
    CatchUp {
        #[command(flatten)]
        target: Target,
        /// Events the ledger holds at least (generated and imported where fewer).
        #[arg(long, default_value_t = 1_000_000)]
        scale: usize,
        /// Single-movement appends a second during the lag measurement.
        #[arg(long, default_value_t = 100)]
        rate: u32,
        #[arg(long, default_value_t = 10)]
        seconds: u32,
    },
    /// Replica lag under appends (PostgreSQL): how long the replica takes to
    /// replay a commit (p50, p99, max) while writers append.
    ReplicaLag {
        #[command(flatten)]
        target: Target,
        /// The streaming replica of --database-url.
        #[arg(long, env = "BONDLEDGER_READ_DATABASE_URL")]
        read_database_url: String,
        #[arg(long, default_value_t = 8)]
        writers: usize,
        /// Movements a writer appends at once.
        #[arg(long, default_value_t = 1)]
        batch: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u32,
    },
    /// Timeline queries by HS prefix: p50, p99 (issue 6 asks for 10,000,000 events: --scale 10000000).
    Timeline {
        #[command(flatten)]
        target: Target,
        /// Events the ledger holds at least (generated and imported where fewer).
        #[arg(long, default_value_t = 1_000_000)]
        scale: usize,
        #[arg(long, default_value_t = 200)]
        queries: usize,
    },
    /// Fills the ledger checkpoint by checkpoint (every --step events up to --scale) and
    /// measures at each: single appends, stream page reads, timeline pages by HS prefix.
    Growth {
        #[command(flatten)]
        target: Target,
        /// Events the ledger holds at the last checkpoint.
        #[arg(long, default_value_t = 10_000_000)]
        scale: usize,
        /// Events between checkpoints.
        #[arg(long, default_value_t = 1_000_000)]
        step: usize,
        /// Single-movement appends at each checkpoint.
        #[arg(long, default_value_t = 200)]
        appends: usize,
        /// Stream reads and timeline queries at each checkpoint, each.
        #[arg(long, default_value_t = 200)]
        queries: usize,
    },
}

impl Command {
    fn name(&self) -> &'static str {
        match self {
            Command::Append { .. } => "append",
            Command::Import { .. } => "import",
            Command::Appends { .. } => "appends",
            Command::Verify { .. } => "verify",
            Command::AsOf { .. } => "as-of",
            Command::CatchUp { .. } => "catch-up",
            Command::Timeline { .. } => "timeline",
            Command::ReplicaLag { .. } => "replica-lag",
            Command::Growth { .. } => "growth",
        }
    }

    fn url(&self) -> &str {
        match self {
            Command::Append { target, .. }
            | Command::Import { target, .. }
            | Command::Appends { target, .. }
            | Command::Verify { target, .. }
            | Command::AsOf { target, .. }
            | Command::CatchUp { target, .. }
            | Command::Timeline { target, .. }
            | Command::ReplicaLag { target, .. }
            | Command::Growth { target, .. } => &target.database_url,
        }
    }
}

fn within(name: &str, value: usize, max: usize) -> anyhow::Result<()> {
    anyhow::ensure!((1..=max).contains(&value), "--{name} is 1 to {max}");
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let command = Arguments::parse().command;
    let url = command.url().to_owned();
    let ledger = Ledger::open(&url)
        .await
        .with_context(|| format!("opening {url}"))?;
    let backend = match ledger.store().backend() {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    let name = command.name();
    let figures = match command {
        Command::Append { events, .. } => {
            within("events", events, MAX_SCALE)?;
            store_append::run(ledger.store().as_ref(), events).await?
        }
        Command::Import {
            scale,
            file,
            manuals,
            ..
        } => {
            within("scale", scale, MAX_SCALE)?;
            within("manuals", manuals as usize, 10_000)?;
            commands::import(&ledger, &url, scale, file.as_deref(), manuals).await?
        }
        Command::Appends { scale, writers, .. } => {
            within("scale", scale, MAX_SCALE)?;
            within("writers", writers, MAX_WRITERS)?;
            commands::appends(&ledger, scale, writers).await?
        }
        Command::Verify {
            scale,
            manual,
            bondledger,
            ..
        } => {
            within("scale", scale, MAX_SCALE)?;
            let binary = data::bondledger_binary(bondledger.as_deref())?;
            commands::verify(&ledger, &url, scale, manual, &binary).await?
        }
        Command::AsOf {
            scale,
            manual,
            queries,
            ..
        } => {
            within("scale", scale, MAX_SCALE)?;
            within("queries", queries, MAX_QUERIES)?;
            commands::as_of(&ledger, scale, manual, queries).await?
        }
        Command::CatchUp {
            scale,
            rate,
            seconds,
            ..
        } => {
            within("scale", scale, MAX_SCALE)?;
            within("rate", rate as usize, 10_000)?;
            within("seconds", seconds as usize, 3_600)?;
            commands::catch_up(&ledger, &url, scale, rate, seconds).await?
        }
        Command::Timeline { scale, queries, .. } => {
            within("scale", scale, MAX_SCALE)?;
            within("queries", queries, MAX_QUERIES)?;
            commands::timeline(&ledger, scale, queries).await?
        }
        Command::ReplicaLag {
            read_database_url,
            writers,
            batch,
            seconds,
            ..
        } => {
            within("writers", writers, MAX_WRITERS)?;
            within("batch", batch, 10_000)?;
            within("seconds", seconds as usize, 3_600)?;
            replica::replica_lag(&ledger, &read_database_url, writers, batch, seconds).await?
        }
        Command::Growth {
            scale,
            step,
            appends,
            queries,
            ..
        } => {
            within("scale", scale, MAX_SCALE)?;
            within("step", step, MAX_SCALE)?;
            within("appends", appends, MAX_QUERIES)?;
            within("queries", queries, MAX_QUERIES)?;
            let measures = growth::Measures { appends, queries };
            // Each checkpoint prints its own figures as it is measured.
            growth::growth(&ledger, backend, scale, step, &measures).await?;
            Vec::new()
        }
    };
    figures::print(name, backend, &figures);
    Ok(())
}
