//! `bondledger-fuzz`: runs a fuzz target under the seeded mutation runner
//! (stable Rust), and writes the seed corpus from the demo history.
//!
//! ```sh
//! cargo run --release -p bondledger-fuzz -- run movement_file --seconds 3600
//! cargo run --release -p bondledger-fuzz -- run all --executions 100000
//! cargo run -p bondledger-fuzz -- seed     # rewrites tools/fuzz/corpus from the demo files
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bondledger_fuzz::mutate::{self, Failure};
use bondledger_fuzz::{corpus, TARGETS};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "bondledger-fuzz",
    about = "Fuzz Bondledger's readers of outside input"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs a target (or `all`) on its corpus, then on mutations of it.
    Run {
        /// movement_file, stored_event, api_body, or all.
        target: String,
        /// Stop after this many inputs per target.
        #[arg(long, default_value_t = u64::MAX)]
        executions: u64,
        /// Stop after this many seconds per target.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// The seed of the mutations: the same seed tries the same inputs.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Writes the seed corpus (`tools/fuzz/corpus/TARGET/`) from the demo files.
    Seed,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Seed => match corpus::write_seeds(&corpus::dir()) {
            Ok(count) => {
                println!(
                    "{count} seed inputs written under {}",
                    corpus::dir().display()
                );
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("bondledger-fuzz: {error}");
                ExitCode::FAILURE
            }
        },
        Command::Run {
            target,
            executions,
            seconds,
            seed,
        } => {
            let chosen: Vec<_> = TARGETS
                .iter()
                .filter(|(name, _)| target == "all" || *name == target)
                .collect();
            if chosen.is_empty() {
                eprintln!("bondledger-fuzz: no target {target:?}: movement_file, stored_event, api_body or all");
                return ExitCode::from(2);
            }
            for (name, function) in chosen {
                let inputs = match corpus::load(name) {
                    Ok(inputs) => inputs,
                    Err(error) => {
                        eprintln!("bondledger-fuzz: {error}");
                        return ExitCode::FAILURE;
                    }
                };
                let budget = Duration::from_secs(seconds);
                match mutate::run(*function, &inputs, seed, executions, budget) {
                    Ok(summary) => println!(
                        "{name}: {} executions in {:.1} s ({:.0}/s), {} corpus inputs, seed {seed}: no failure",
                        summary.executions,
                        summary.elapsed.as_secs_f64(),
                        summary.executions as f64 / summary.elapsed.as_secs_f64().max(1e-9),
                        inputs.len()
                    ),
                    Err(failure) => {
                        report(name, &failure);
                        return ExitCode::FAILURE;
                    }
                }
            }
            ExitCode::SUCCESS
        }
    }
}

/// Prints a failure and keeps its input under `tools/fuzz/artifacts/`.
fn report(name: &str, failure: &Failure) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("artifacts")
        .join(name);
    let path = dir.join(format!("crash-{:016x}", corpus::digest(&failure.input)));
    let kept = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, &failure.input));
    eprintln!("{name}: FAILED: {}", failure.message);
    eprintln!("input: {:?}", String::from_utf8_lossy(&failure.input));
    match kept {
        Ok(()) => eprintln!("kept as {}", path.display()),
        Err(error) => eprintln!("could not keep it: {error}"),
    }
}
