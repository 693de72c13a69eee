//! `bondledger-crash`: kills `bondledger import` of a large file, and `bondledger serve`
//! during batch POSTs, with SIGKILL at seeded random moments, and after each kill checks:
//!
//! - the ledger holds all of the file (or of each batch) or none of it;
//! - `bondledger audit` passes: every hash chain, and every read model equal to a fresh
//!   replay once the runner has resumed;
//! - running the same import (or the same POSTs) again completes, and every movement is
//!   held exactly once.
//!
//! ```sh
//! cargo build --release --workspace
//! target/release/bondledger-crash --database-url postgres://postgres@127.0.0.1/crash --kills 50
//! ```

mod http;
mod ledger;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
use clap::{Parser, ValueEnum};

use crate::ledger::{Ledger, MovementFile};

/// Kills bondledger at random moments and checks the ledger after each kill.
#[derive(Debug, Parser)]
#[command(name = "bondledger-crash")]
struct Options {
    /// The ledger to run against: sqlite://PATH or postgres://…; what it holds already
    /// is left alone, every round adds manuals of its own.
    #[arg(long, env = "BONDLEDGER_DATABASE_URL")]
    database_url: String,
    /// Kill points per scenario.
    #[arg(long, default_value_t = 50)]
    kills: u32,
    #[arg(long, value_enum, default_value_t = Scenario::Both)]
    scenario: Scenario,
    /// The same seed gives the same files and the same kill moments (as fractions of
    /// the measured run time).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Manuals per generated file.
    #[arg(long, default_value_t = 2)]
    manuals: u32,
    /// Movement lines per manual.
    #[arg(long, default_value_t = 2_000)]
    movements: u32,
    /// Movements per POST.
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// The `bondledger` binary (default: beside this one).
    #[arg(long)]
    bondledger: Option<PathBuf>,
    /// The `bondledger-gen` binary (default: beside this one).
    #[arg(long)]
    generator: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    Import,
    Serve,
    Both,
}

/// The binaries and the ledger a run works with.
struct Harness {
    options: Options,
    bondledger: PathBuf,
    generator: PathBuf,
    work: tempfile::TempDir,
    ledger: Ledger,
    random: SplitMix,
}

/// What one scenario's kills came to.
#[derive(Debug, Default)]
struct Tally {
    survived: u32,
    /// Killed with the file (or a batch) not yet committed: nothing of it held.
    held_none: u32,
    /// Killed after the commit: all of it held.
    held_all: u32,
    /// The process had ended by itself before the moment came.
    finished_first: u32,
    /// Serve only: batches held whole at the kill.
    batches_held: u32,
}

fn main() -> anyhow::Result<()> {
    let options = Options::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let ledger = runtime.block_on(Ledger::open(&options.database_url))?;
    let beside = |name: &str| -> anyhow::Result<PathBuf> {
        let own = std::env::current_exe()?;
        Ok(own.with_file_name(format!("{name}{}", std::env::consts::EXE_SUFFIX)))
    };
    let mut harness = Harness {
        bondledger: options
            .bondledger
            .clone()
            .map_or_else(|| beside("bondledger"), Ok)?,
        generator: options
            .generator
            .clone()
            .map_or_else(|| beside("bondledger-gen"), Ok)?,
        work: tempfile::tempdir()?,
        random: SplitMix(options.seed),
        ledger,
        options,
    };
    let mut failed = false;
    if harness.options.scenario != Scenario::Serve {
        let tally = harness.import_scenario(&runtime)?;
        failed |= harness.report("import", &tally);
    }
    if harness.options.scenario != Scenario::Import {
        let tally = harness.serve_scenario(&runtime)?;
        failed |= harness.report("serve", &tally);
    }
    if failed {
        bail!("a kill point was not survived");
    }
    Ok(())
}

impl Harness {
    fn report(&self, scenario: &str, tally: &Tally) -> bool {
        println!(
            "{scenario}: kill points survived: {} of {} ({} with nothing held, {} with all held, \
             {} after the process had finished{})",
            tally.survived,
            self.options.kills,
            tally.held_none,
            tally.held_all,
            tally.finished_first,
            if scenario == "serve" {
                format!("; {} whole batches held at the kills", tally.batches_held)
            } else {
                String::new()
            }
        );
        tally.survived != self.options.kills
    }

    /// A new movement file of manuals no other round uses.
    fn generate(&mut self, kind: char, round: u32) -> anyhow::Result<MovementFile> {
        let number = self
            .options
            .seed
            .wrapping_mul(1_000)
            .wrapping_add(u64::from(round));
        let tag = format!("{kind}{}", base36(number % 36_u64.pow(7)));
        let path = self.work.path().join(format!("{tag}.jsonl"));
        let output = Command::new(&self.generator)
            .args(["--seed", &number.to_string()])
            .args(["--manuals", &self.options.manuals.to_string()])
            .args(["--movements", &self.options.movements.to_string()])
            .args(["--tag", &tag])
            .arg("--out")
            .arg(&path)
            .output()
            .with_context(|| format!("cannot run {}", self.generator.display()))?;
        ensure!(
            output.status.success(),
            "bondledger-gen failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        MovementFile::read(&path)
    }

    fn bondledger(&self) -> Command {
        let mut command = Command::new(&self.bondledger);
        command
            .arg("--database-url")
            .arg(&self.options.database_url)
            .env_remove("BONDLEDGER_DATABASE_URL")
            .stdin(Stdio::null());
        command
    }

    /// Runs a command to its end; its exit status and output.
    fn run(&self, args: &[&str]) -> anyhow::Result<(i32, String)> {
        let output = self.bondledger().args(args).output()?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        Ok((output.status.code().unwrap_or(-1), text))
    }

    fn audit(&self) -> anyhow::Result<()> {
        let (status, text) = self.run(&["audit"])?;
        ensure!(status == 0, "audit exited {status}: {text}");
        Ok(())
    }

    /// A moment to kill at: anywhere from the start to a little past the expected end.
    fn kill_delay(&mut self, expected: Duration) -> Duration {
        expected.mul_f64(self.random.fraction() * 1.2)
    }

    fn import_scenario(&mut self, runtime: &tokio::runtime::Runtime) -> anyhow::Result<Tally> {
        // One import run to its end: how long the kills should spread over.
        let calibration = self.generate('C', 0)?;
        let started = Instant::now();
        let (status, text) = self.run(&["import", path_text(&calibration.path)?])?;
        ensure!(
            status == 0,
            "the calibration import failed ({status}): {text}"
        );
        let expected = started.elapsed();
        println!(
            "import: {} movements a file, {:.2} s an import",
            calibration.ids.len(),
            expected.as_secs_f64()
        );
        let mut tally = Tally::default();
        for round in 1..=self.options.kills {
            let file = self.generate('I', round)?;
            match self.import_round(runtime, &file, expected, &mut tally) {
                Ok(()) => {
                    tally.survived += 1;
                    eprintln!("import kill {round}: survived");
                }
                Err(error) => eprintln!("import kill {round}: NOT SURVIVED: {error:#}"),
            }
        }
        runtime.block_on(self.ledger.chains_hold())?;
        Ok(tally)
    }

    fn import_round(
        &mut self,
        runtime: &tokio::runtime::Runtime,
        file: &MovementFile,
        expected: Duration,
        tally: &mut Tally,
    ) -> anyhow::Result<()> {
        let before = runtime.block_on(self.ledger.head())?;
        let delay = self.kill_delay(expected);
        let child = self
            .bondledger()
            .args(["import", path_text(&file.path)?])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let finished = kill_after(child, delay)?;
        let held = runtime.block_on(self.ledger.held(file, before))?;
        let movements = file.ids.len() as i64;
        if held == 0 {
            tally.held_none += 1;
        } else if held == movements {
            tally.held_all += 1;
        } else {
            bail!("after a kill at {delay:?} the ledger holds {held} of the file's {movements} movements");
        }
        if finished {
            tally.finished_first += 1;
        }
        self.audit().context("after the kill")?;
        let (status, text) = self.run(&["import", path_text(&file.path)?])?;
        ensure!(status == 0, "the import run again exited {status}: {text}");
        runtime.block_on(self.ledger.held_once(file, before))?;
        Ok(())
    }

    fn serve_scenario(&mut self, runtime: &tokio::runtime::Runtime) -> anyhow::Result<Tally> {
        let (status, token) =
            self.run(&["token", "create", "--role", "admin", "--label", "crash"])?;
        ensure!(status == 0, "token create exited {status}: {token}");
        let token = token
            .lines()
            .next()
            .context("token create printed no token")?
            .trim()
            .to_owned();
        let calibration = self.generate('D', 0)?;
        let server = Server::start(self)?;
        let started = Instant::now();
        let posted = post_batches(server.address, &token, &calibration, self.options.batch);
        let expected = started.elapsed();
        server.stop()?;
        posted
            .all(calibration.batches(self.options.batch).len())
            .context("the calibration POSTs")?;
        println!(
            "serve: {} movements in batches of {}, {:.2} s to post them all",
            calibration.ids.len(),
            self.options.batch,
            expected.as_secs_f64()
        );
        let mut tally = Tally::default();
        for round in 1..=self.options.kills {
            let file = self.generate('S', round)?;
            match self.serve_round(runtime, &file, &token, expected, &mut tally) {
                Ok(()) => {
                    tally.survived += 1;
                    eprintln!("serve kill {round}: survived");
                }
                Err(error) => eprintln!("serve kill {round}: NOT SURVIVED: {error:#}"),
            }
        }
        runtime.block_on(self.ledger.chains_hold())?;
        Ok(tally)
    }

    fn serve_round(
        &mut self,
        runtime: &tokio::runtime::Runtime,
        file: &MovementFile,
        token: &str,
        expected: Duration,
        tally: &mut Tally,
    ) -> anyhow::Result<()> {
        let before = runtime.block_on(self.ledger.head())?;
        let delay = self.kill_delay(expected);
        let server = Server::start(self)?;
        let address = server.address;
        let killer = std::thread::spawn(move || kill_after(server.child, delay));
        // Posts until the server dies under it; the batches it saw acknowledged.
        let posted = post_batches(address, token, file, self.options.batch);
        let finished = killer
            .join()
            .map_err(|_| anyhow::anyhow!("the killer thread panicked"))??;
        let held = runtime.block_on(self.ledger.held(file, before))?;
        let batches = file.batches(self.options.batch);
        let prefix = batches
            .iter()
            .scan(0i64, |sum, batch| {
                *sum += batch.len() as i64;
                Some(*sum)
            })
            .position(|sum| sum == held)
            .map_or(if held == 0 { Some(0) } else { None }, |index| {
                Some(index + 1)
            });
        let Some(whole_batches) = prefix else {
            bail!("after a kill at {delay:?} the ledger holds {held} movements: not whole batches");
        };
        // Every acknowledged batch is held; the one in flight at the kill may be too.
        let acknowledged = posted.acknowledged;
        ensure!(
            whole_batches == acknowledged || whole_batches == acknowledged + 1,
            "{acknowledged} batches were acknowledged (then: {}) but {whole_batches} are held",
            posted.stopped.as_deref().unwrap_or("no failure")
        );
        tally.batches_held += u32::try_from(whole_batches).unwrap_or(u32::MAX);
        if held == 0 {
            tally.held_none += 1;
        } else if whole_batches == batches.len() {
            tally.held_all += 1;
        }
        if finished {
            tally.finished_first += 1;
        }
        self.audit().context("after the kill")?;
        let server = Server::start(self)?;
        let again = post_batches(server.address, token, file, self.options.batch);
        server.stop()?;
        again
            .all(batches.len())
            .context("the POSTs made again after the kill")?;
        runtime.block_on(self.ledger.held_once(file, before))?;
        Ok(())
    }
}

/// Waits `delay`, then kills `child` with SIGKILL (`Child::kill` on Unix). True when it
/// had already ended by itself.
fn kill_after(mut child: Child, delay: Duration) -> anyhow::Result<bool> {
    let deadline = Instant::now() + delay;
    loop {
        if child.try_wait()?.is_some() {
            return Ok(true);
        }
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(2)));
    }
    child.kill()?;
    child.wait()?;
    Ok(false)
}

/// How far posting a file's batches got.
struct Posted {
    /// Batches acknowledged (201, or 200 when all were held already), in order.
    acknowledged: usize,
    /// Why it stopped before the last batch: the server died, or answered otherwise.
    stopped: Option<String>,
}

impl Posted {
    /// All batches went through, or why not.
    fn all(self, batches: usize) -> anyhow::Result<()> {
        match self.stopped {
            None if self.acknowledged == batches => Ok(()),
            None => bail!("{} of {batches} batches acknowledged", self.acknowledged),
            Some(why) => bail!(
                "{} of {batches} batches acknowledged, then: {why}",
                self.acknowledged
            ),
        }
    }
}

/// Posts the file's batches in order until one is not acknowledged.
fn post_batches(address: SocketAddr, token: &str, file: &MovementFile, batch: usize) -> Posted {
    let mut acknowledged = 0;
    for body in file.batches(batch) {
        let answer = serde_json::to_vec(&body)
            .map_err(std::io::Error::from)
            .and_then(|body| {
                http::request(address, "POST", "/api/v1/movements", Some(token), &body)
            });
        let stopped = match answer {
            Ok((200 | 201, _)) => None,
            Ok((status, answer)) => Some(format!("POST answered {status}: {answer}")),
            Err(error) => Some(format!("POST failed: {error}")),
        };
        if stopped.is_some() {
            return Posted {
                acknowledged,
                stopped,
            };
        }
        acknowledged += 1;
    }
    Posted {
        acknowledged,
        stopped: None,
    }
}

/// A `bondledger serve` on a free port.
struct Server {
    child: Child,
    address: SocketAddr,
}

impl Server {
    fn start(harness: &Harness) -> anyhow::Result<Server> {
        let address = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let child = harness
            .bondledger()
            .args(["serve", "--listen", &address.to_string()])
            .env("BONDLEDGER_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let mut server = Server { child, address };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok((200, _)) = http::request(address, "GET", "/healthz", None, b"") {
                return Ok(server);
            }
            if let Some(status) = server.child.try_wait()? {
                bail!("serve exited {status} before it answered");
            }
            if Instant::now() > deadline {
                server.child.kill()?;
                bail!("serve did not answer /healthz within a minute");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops it as Ctrl-C would, waiting for its appends to finish.
    fn stop(mut self) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        if !status.success() {
            self.child.kill()?;
        }
        self.child.wait()?;
        Ok(())
    }
}

fn path_text(path: &Path) -> anyhow::Result<&str> {
    path.to_str().context("a non-UTF-8 path")
}

fn base36(mut number: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(number % 36) as usize]);
        number /= 36;
        if number == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// A small seeded generator (SplitMix64): kill moments that a seed repeats.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn fraction(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}
