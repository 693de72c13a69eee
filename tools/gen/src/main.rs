//! `bondledger-gen --out FILE [--expected FILE] [--seed N] [--manuals N]
//! [--materials N] [--products N] [--movements N] [--carryover-share F]
//! [--reversal-share F] [--mix NAME=WEIGHT,…]`: writes a synthetic history
//! that `bondledger import` accepts in strict mode, and its expected balances.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use bondledger_gen::{generate, parse_mix, Options};
use chrono::NaiveDate;
use clap::Parser;

#[derive(Parser)]
#[command(
    name = "bondledger-gen",
    about = "Generates a synthetic processing-trade history (JSON Lines) and its expected balances"
)]
struct Arguments {
    /// The same seed gives the same history.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Manuals; neighbours carry over to each other, pairs share an enterprise.
    #[arg(long, default_value_t = 4)]
    manuals: u32,
    /// Materials per manual (a receiving manual has one more: the carried-in one).
    #[arg(long, default_value_t = 4)]
    materials: u32,
    /// Products per manual.
    #[arg(long, default_value_t = 3)]
    products: u32,
    /// Movement lines per manual (registration, declarations, amendments and the report come on top).
    #[arg(long, default_value_t = 1_000)]
    movements: u64,
    /// Share of steps that are a deep-processing carry-over to the next manual.
    #[arg(long, default_value_t = 0.04)]
    carryover_share: f64,
    /// Share of steps that reverse an earlier movement.
    #[arg(long, default_value_t = 0.02)]
    reversal_share: f64,
    /// Weights of the other movements, e.g. `export=40,outward=0`; see --help-mix.
    #[arg(long, default_value = "")]
    mix: String,
    /// Print the movement names --mix takes, with their default weights, and stop.
    #[arg(long)]
    help_mix: bool,
    /// First business date (registration); movements follow over --days.
    #[arg(long, default_value = "2026-01-05")]
    start: String,
    #[arg(long, default_value_t = 330)]
    days: u32,
    /// Up to 8 of A-Z 0-9 put into every manual number, so that several
    /// histories can be imported into one ledger.
    #[arg(long, default_value = "")]
    tag: String,
    /// Leave out the closing report (报核) of each manual.
    #[arg(long)]
    no_report: bool,
    /// The movement file to write (JSON Lines); `-` for stdout.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Where to write the expected balances (JSON).
    #[arg(long)]
    expected: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let arguments = Arguments::parse();
    if arguments.help_mix {
        for (_, name, weight) in bondledger_gen::KINDS {
            println!("{name:<18} {weight}");
        }
        return Ok(());
    }
    let start = NaiveDate::parse_from_str(&arguments.start, "%Y-%m-%d")
        .with_context(|| format!("--start {:?} is not a date (YYYY-MM-DD)", arguments.start))?;
    let options = Options {
        seed: arguments.seed,
        manuals: arguments.manuals,
        materials: arguments.materials,
        products: arguments.products,
        movements: arguments.movements,
        carryover_share: arguments.carryover_share,
        reversal_share: arguments.reversal_share,
        mix: parse_mix(&arguments.mix).map_err(anyhow::Error::msg)?,
        start,
        days: arguments.days,
        tag: arguments.tag,
        report: !arguments.no_report,
    };
    options.check().map_err(anyhow::Error::msg)?;
    let out = arguments
        .out
        .context("--out FILE is required (`-` for stdout)")?;
    let started = Instant::now();
    let expected = if out.as_os_str() == "-" {
        generate(&options, BufWriter::new(std::io::stdout().lock()))
    } else {
        let file = File::create(&out).with_context(|| format!("creating {}", out.display()))?;
        generate(&options, BufWriter::with_capacity(1 << 20, file))
    }
    .context("writing the history")?;
    if let Some(path) = &arguments.expected {
        let mut file = BufWriter::new(
            File::create(path).with_context(|| format!("creating {}", path.display()))?,
        );
        serde_json::to_writer_pretty(&mut file, &expected.to_json())?;
        file.write_all(b"\n")?;
        file.flush()?;
    }
    eprintln!(
        "bondledger-gen: {} lines ({} movements) on {} manuals in {:.2} s",
        expected.lines,
        expected.movements,
        expected.manuals.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
