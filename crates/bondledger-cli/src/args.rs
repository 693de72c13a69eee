//! The arguments of interchange §2.

use std::path::PathBuf;

use anyhow::bail;
use bondledger_domain::decimal::Dec;
use bondledger_ledger::AsOf;
use chrono::{DateTime, NaiveDate, Utc};
use clap::{Args, Parser, Subcommand, ValueEnum};

/// Bondledger: an event-sourced ledger of bonded goods under processing-trade
/// supervision (加工贸易保税监管).
#[derive(Debug, Parser)]
#[command(name = "bondledger", version, about)]
pub struct Cli {
    /// Where the ledger is: sqlite://PATH (sqlite:///abs/path) or postgres://…
    #[arg(
        long,
        global = true,
        env = "BONDLEDGER_DATABASE_URL",
        default_value = "sqlite://bondledger.db"
    )]
    pub database_url: String,

    /// A PostgreSQL streaming replica of the ledger for the queries (verify,
    /// balance, history, timeline, deadlines, trace) and `serve`'s reads to
    /// read; appends, tokens and read-model upkeep stay on --database-url.
    #[arg(long, global = true, env = "BONDLEDGER_READ_DATABASE_URL")]
    pub read_database_url: Option<String>,

    /// Seconds a read waits for the replica to replay the writes it must
    /// see before it fails.
    #[arg(long, global = true, default_value_t = 5.0, value_parser = positive_seconds)]
    pub replica_wait: f64,

    /// table for people, json for programs, csv where a command says so.
    #[arg(long, global = true, value_enum, default_value_t = Format::Table)]
    pub format: Format,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
    Csv,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Appends the movements of each file, each file all or nothing.
    Import {
        /// History that already happened: keep rule-breaking movements with their findings.
        #[arg(long)]
        record: bool,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// The verification report (核销) of a manual.
    Verify {
        manual: String,
        #[command(flatten)]
        as_of: AsOfArgs,
        /// Work-order deviation tolerated, as a fraction (default 0.02).
        #[arg(long, value_parser = parse_dec)]
        tolerance: Option<Dec>,
    },
    /// Every material's balance and what is at contractors.
    Balance {
        manual: String,
        #[command(flatten)]
        as_of: AsOfArgs,
    },
    /// Every event of a manual in order, with the balances after each.
    History {
        manual: String,
        #[command(flatten)]
        as_of: AsOfArgs,
    },
    /// Re-checks the hash chain of every stream (or one manual's).
    Audit {
        #[arg(long)]
        manual: Option<String>,
    },
    /// Events across manuals, filtered; every filter given must hold.
    Timeline {
        #[command(flatten)]
        filter: TimelineArgs,
    },
    /// What is due, overdue or expiring, across the ledger or for one enterprise.
    Deadlines {
        #[arg(long)]
        enterprise: Option<String>,
        /// Count days from this date instead of today (YYYY-MM-DD).
        #[arg(long)]
        today: Option<String>,
    },
    /// Rebuilds a projection (or all) from position 0, showing progress.
    Rebuild {
        /// manuals, timeline or snapshots; all when left out.
        name: Option<String>,
    },
    /// Which import declarations a product's exports draw on (单耗追溯), first in, first out.
    Trace {
        manual: String,
        #[arg(long)]
        product: u32,
    },
    /// Loads the demo history into this ledger and verifies its manuals.
    Demo,
    /// The HTTP API (interchange §4), until Ctrl-C or SIGTERM. On a ledger
    /// with no access token yet, makes an admin token and prints a sign-in
    /// address with it, once.
    Serve {
        /// Address and port to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// First load the demo history (as `bondledger demo`; what is held
        /// already is not appended again).
        #[arg(long)]
        demo: bool,
        /// Seconds a request may take before it is answered 503 (an append
        /// it began still finishes).
        #[arg(long, default_value_t = 120.0, value_parser = positive_seconds)]
        request_timeout: f64,
        /// Requests served at once; more wait their turn.
        #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..))]
        max_concurrent_requests: u16,
    },
    /// Writes an evidence package: the events with their hashes, and a manifest with
    /// each stream's chain head and the ledger's position (docs/evidence-package.md).
    Export {
        /// Only this manual's events (a partial ledger when restored alone).
        #[arg(long)]
        manual: Option<String>,
        /// The package to write; an existing file is never overwritten.
        file: PathBuf,
    },
    /// Checks an evidence package offline, with no database: every hash chain, the
    /// counts, the chain heads and the digest of the manifest.
    VerifyExport { file: PathBuf },
    /// Restores an evidence package into an empty ledger, with the same hashes.
    /// There is no command that deletes records: closed manuals' records are kept
    /// at least three years (第四十条).
    Restore { file: PathBuf },
    /// Access tokens of the HTTP API.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Makes a token and prints it once; only its hash is kept.
    Create {
        #[arg(long, value_enum)]
        role: RoleArg,
        /// The enterprise code whose manuals a recorder appends to and reads.
        #[arg(long, required_if_eq("role", "recorder"))]
        enterprise: Option<String>,
        /// A note on whom the token is for.
        #[arg(long)]
        label: Option<String>,
    },
    /// Lists every token made on this ledger, revoked ones too (never a
    /// secret).
    List,
    /// Revokes a token by its id: from now on it signs nothing in. The
    /// token stays listed, as the events it appended name it.
    Revoke {
        /// The token's id, as `token list` shows it.
        id: String,
    },
}

/// The roles of interchange §2 `token create`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    /// Appends to and reads the manuals of its enterprise.
    Recorder,
    /// Reads everything, appends nothing.
    Auditor,
    /// Everything.
    Admin,
}

impl RoleArg {
    pub fn role(self) -> bondledger_ledger::Role {
        match self {
            RoleArg::Recorder => bondledger_ledger::Role::Recorder,
            RoleArg::Auditor => bondledger_ledger::Role::Auditor,
            RoleArg::Admin => bondledger_ledger::Role::Admin,
        }
    }
}

/// The timeline's filters (interchange §2).
#[derive(Debug, Clone, Args)]
pub struct TimelineArgs {
    #[arg(long)]
    pub manual: Option<String>,
    /// The manual's operating or processing enterprise.
    #[arg(long)]
    pub enterprise: Option<String>,
    /// An HS code prefix: of any item the event moves or declares.
    #[arg(long)]
    pub hs: Option<String>,
    #[arg(long)]
    pub declaration: Option<String>,
    /// An enterprise code or manual number the event names as its counterparty.
    #[arg(long)]
    pub counterparty: Option<String>,
    /// Business dates from (inclusive, YYYY-MM-DD).
    #[arg(long)]
    pub from: Option<String>,
    /// Business dates to (inclusive, YYYY-MM-DD).
    #[arg(long)]
    pub to: Option<String>,
    /// Follow --manual along its carry-over chain into the receiving manuals.
    #[arg(long, requires = "manual")]
    pub follow_carryover: bool,
}

impl TimelineArgs {
    pub fn filter(&self) -> anyhow::Result<bondledger_store::readmodel::TimelineFilter> {
        let date = |flag: &str, text: &Option<String>| -> anyhow::Result<Option<NaiveDate>> {
            text.as_deref()
                .map(|t| {
                    bondledger_domain::movement::parse_date(t)
                        .map_err(|e| anyhow::anyhow!("--{flag}: {e}"))
                })
                .transpose()
        };
        if let Some(hs) = &self.hs {
            if hs.is_empty() || hs.len() > 10 || !hs.bytes().all(|b| b.is_ascii_digit()) {
                bail!("--hs {hs:?} is not an HS code prefix (1 to 10 digits)");
            }
        }
        Ok(bondledger_store::readmodel::TimelineFilter {
            manuals: self.manual.iter().cloned().collect(),
            enterprise: self.enterprise.clone(),
            hs_prefix: self.hs.clone(),
            declaration: self.declaration.clone(),
            counterparty: self.counterparty.clone(),
            from: date("from", &self.from)?,
            to: date("to", &self.to)?,
        })
    }
}

fn parse_dec(text: &str) -> Result<Dec, String> {
    bondledger_domain::parse_decimal(text)
        .map(Dec)
        .map_err(|e| e.to_string())
}

/// One of the three time-travel options (interchange §2).
#[derive(Debug, Clone, Args)]
#[group(multiple = false)]
pub struct AsOfArgs {
    /// The manual as it stood after its Nth event.
    #[arg(long)]
    pub as_of_position: Option<i64>,
    /// The events the ledger held at that moment (RFC 3339).
    #[arg(long)]
    pub as_of_recorded: Option<String>,
    /// The events dated on or before that day (YYYY-MM-DD).
    #[arg(long)]
    pub as_of_date: Option<String>,
}

impl AsOfArgs {
    pub fn resolve(&self) -> anyhow::Result<AsOf> {
        if let Some(position) = self.as_of_position {
            if position < 0 {
                bail!("--as-of-position must be 0 or more, not {position}");
            }
            return Ok(AsOf::Version(position));
        }
        if let Some(moment) = &self.as_of_recorded {
            let parsed = DateTime::parse_from_rfc3339(moment).map_err(|e| {
                anyhow::anyhow!("--as-of-recorded {moment:?} is not an RFC 3339 timestamp: {e}")
            })?;
            return Ok(AsOf::Recorded(parsed.with_timezone(&Utc)));
        }
        if let Some(date) = &self.as_of_date {
            let parsed: NaiveDate = bondledger_domain::movement::parse_date(date)
                .map_err(|e| anyhow::anyhow!("--as-of-date: {e}"))?;
            return Ok(AsOf::Date(parsed));
        }
        Ok(AsOf::Latest)
    }
}

/// A number of seconds above zero, up to a day.
fn positive_seconds(text: &str) -> Result<f64, String> {
    let seconds: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if seconds > 0.0 && seconds <= 86_400.0 {
        Ok(seconds)
    } else {
        Err(format!("{text} s: give more than 0 and at most 86400"))
    }
}
