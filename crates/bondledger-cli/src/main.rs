//! `bondledger`: the command line of interchange §2.
//!
//! This crate turns arguments into calls on the ledger and results into
//! tables, JSON or CSV and exit statuses. It decides nothing itself.

/// `println!` that ends the program quietly when stdout's reader went
/// away (`bondledger history … | head`) instead of panicking.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::output::out_line(format_args!($($arg)*))
    };
}

mod args;
mod output;
mod progress;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context as _;
use bondledger_domain::{report_json, Mode, VerifyOptions};
use bondledger_ledger::{AsOf, EvidenceError, Ledger, LedgerError, ReadSource};
use clap::Parser;

use crate::args::{AsOfArgs, Cli, Command, Format, RoleArg, TokenCommand};

/// Replaying and importing allocate and free many small values a page at a
/// time; the system allocator spends much of that time consolidating.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit statuses of interchange §2.
mod exit {
    pub const OK: u8 = 0;
    pub const FAILURE: u8 = 1;
    pub const MALFORMED: u8 = 2;
    pub const REFUSED: u8 = 3;
    pub const NO_SUCH_MANUAL: u8 = 4;
    pub const BROKEN: u8 = 5;
}

/// The demo history shipped with the binary.
const DEMO_FILES: &[(&str, &str)] = &[
    (
        "demo/01-electronics.jsonl",
        include_str!("../demo/01-electronics.jsonl"),
    ),
    (
        "demo/02-consigned-toys.jsonl",
        include_str!("../demo/02-consigned-toys.jsonl"),
    ),
];

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `serve` logs each request (bondledger_api and tower_http at info);
    // other commands speak only of problems. BONDLEDGER_LOG overrides both.
    let default_filter = match cli.command {
        Command::Serve { .. } => "warn,bondledger_api=info,tower_http=info",
        _ => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("BONDLEDGER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("bondledger: cannot start: {error}");
            return ExitCode::from(exit::FAILURE);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("bondledger: {error:#}");
            ExitCode::from(exit::FAILURE)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<u8> {
    let url = cli.database_url.clone();
    let open = || async {
        Ledger::open(&url)
            .await
            .with_context(|| format!("cannot open the ledger at {url}"))
    };
    let read_url = cli.read_database_url.clone();
    let replica_wait = std::time::Duration::from_secs_f64(cli.replica_wait);
    let open_with_replica = || async {
        Ledger::open_with_replica(&url, read_url.as_deref(), replica_wait)
            .await
            .with_context(|| match &read_url {
                Some(read_url) => {
                    format!("cannot open the ledger at {url} with the replica at {read_url}")
                }
                None => format!("cannot open the ledger at {url}"),
            })
    };
    // A query reads the replica once it holds everything the primary held
    // when the query began: what this user wrote before is in the answer.
    let open_for_query = |read_models: bool| async move {
        let ledger = open_with_replica().await?;
        reader(ledger, read_models).await
    };
    match cli.command {
        Command::Import { record, files } => {
            let ledger = open().await?;
            let mode = if record { Mode::Record } else { Mode::Strict };
            import(&ledger, &files, mode).await
        }
        Command::Verify {
            manual,
            as_of,
            tolerance,
        } => {
            let ledger = open_for_query(false).await?;
            let options = VerifyOptions {
                tolerance: tolerance.map_or(VerifyOptions::default().tolerance, |t| t.value()),
            };
            let mut bar = progress::Bar::new(&format!("verifying {manual}"));
            let report = ledger
                .verify_reporting(&manual, as_of.resolve()?, &options, &mut |_, done, last| {
                    bar.update(done, last.max(done));
                })
                .await?;
            bar.finish();
            let Some(report) = report else {
                return Ok(no_such_manual(&manual));
            };
            match cli.format {
                Format::Json => output::print_json(&report_json(&report)),
                Format::Table | Format::Csv => output::print_report(&report),
            }
            Ok(exit::OK)
        }
        Command::Balance { manual, as_of } => {
            let ledger = open_for_query(false).await?;
            let Some(balances) = ledger.balances(&manual, as_of.resolve()?).await? else {
                return Ok(no_such_manual(&manual));
            };
            output::print_balance(&balances, cli.format);
            Ok(exit::OK)
        }
        Command::History { manual, as_of } => {
            let ledger = open_for_query(false).await?;
            history(&ledger, &manual, as_of, cli.format).await
        }
        Command::Audit { manual } => {
            let ledger = open().await?;
            audit(&ledger, manual.as_deref()).await
        }
        Command::Timeline { filter } => {
            let ledger = open_for_query(true).await?;
            let mut printer = output::EventPrinter::new(cli.format);
            ledger
                .timeline(&filter.filter()?, filter.follow_carryover, |event| {
                    printer.push(event)
                })
                .await?;
            printer.finish();
            Ok(exit::OK)
        }
        Command::Deadlines { enterprise, today } => {
            let ledger = open_for_query(true).await?;
            let today = match today {
                Some(text) => bondledger_domain::movement::parse_date(&text)
                    .map_err(|e| anyhow::anyhow!("--today: {e}"))?,
                None => chrono::Local::now().date_naive(),
            };
            let deadlines = ledger.deadlines(today, enterprise.as_deref()).await?;
            output::print_deadlines(&deadlines, cli.format);
            Ok(exit::OK)
        }
        Command::Rebuild { name } => {
            let ledger = open().await?;
            let what = name.as_deref().unwrap_or("every projection");
            let mut bar = progress::Bar::new(&format!("rebuilding {what}"));
            let mut update = |_: &str, done, head| bar.update(done, head);
            match &name {
                Some(name) => ledger.rebuild(name, &mut update).await?,
                // In one pass over the log.
                None => ledger.rebuild_all(&mut update).await?,
            }
            bar.finish();
            print_status(&ledger).await?;
            Ok(exit::OK)
        }
        Command::Trace { manual, product } => {
            let ledger = open_for_query(false).await?;
            let Some(rows) = ledger.trace(&manual, product).await? else {
                return Ok(no_such_manual(&manual));
            };
            output::print_trace(&rows, cli.format);
            Ok(exit::OK)
        }
        Command::Demo => demo(open().await?).await,
        Command::Serve {
            listen,
            demo,
            request_timeout,
            max_concurrent_requests,
        } => {
            let ledger = open_with_replica().await?;
            if demo {
                if let Err(code) = load_demo(&ledger).await? {
                    return Ok(code);
                }
            }
            let limits = bondledger_api::Limits {
                request_timeout: std::time::Duration::from_secs_f64(request_timeout),
                max_concurrent_requests: usize::from(max_concurrent_requests),
            };
            serve(ledger, listen, limits).await
        }
        Command::Export { manual, file } => {
            let ledger = open().await?;
            export(&ledger, manual.as_deref(), &file, cli.format).await
        }
        Command::VerifyExport { file } => verify_export(&file, cli.format),
        Command::Restore { file } => {
            let ledger = open().await?;
            restore(&ledger, &file, cli.format).await
        }
        Command::Token { command } => {
            let ledger = open().await?;
            match command {
                TokenCommand::Create {
                    role,
                    enterprise,
                    label,
                } => create_token(&ledger, role, enterprise, label, cli.format).await,
                TokenCommand::List => {
                    output::print_tokens(&ledger.list_tokens().await?, cli.format);
                    Ok(exit::OK)
                }
                TokenCommand::Revoke { id } => match ledger.revoke_token(&id).await? {
                    Some(token) => {
                        match cli.format {
                            Format::Json => {
                                output::print_json(&bondledger_ledger::json::token_json(&token))
                            }
                            Format::Table | Format::Csv => {
                                eprintln!("token {id} is revoked; it signs nothing in any more")
                            }
                        }
                        Ok(exit::OK)
                    }
                    None => {
                        eprintln!("bondledger: no token {id} in this ledger (see `token list`)");
                        Ok(exit::MALFORMED)
                    }
                },
            }
        }
    }
}

/// The ledger a query reads: with a replica, the replica once it has
/// replayed the primary's log as it stands now (read models brought up to
/// the head on the primary first where the query reads them); the primary,
/// with a warning, when the replica cannot be used.
async fn reader(ledger: Ledger, read_models: bool) -> anyhow::Result<Ledger> {
    if !ledger.has_replica() {
        return Ok(ledger);
    }
    if read_models {
        ledger.catch_up(&mut |_, _, _| {}).await?;
    }
    let mark = ledger.write_mark().await?;
    let (reader, source) = ledger.for_reading(mark).await?;
    if let ReadSource::Failover(reason) = source {
        eprintln!("bondledger: warning: reading the primary: {reason}");
    }
    Ok(reader)
}

fn no_such_manual(manual: &str) -> u8 {
    eprintln!("bondledger: no manual {manual} in this ledger");
    exit::NO_SUCH_MANUAL
}

/// The exit status and message for a batch that was not taken.
fn report_failure(error: &LedgerError) -> u8 {
    eprintln!("{error}");
    if let LedgerError::Store(store) = error {
        if store.is_transient() {
            eprintln!(
                "bondledger: the database connection failed; run the same import again: \
                 movements already held are not appended twice"
            );
        }
    }
    match error {
        LedgerError::Unreadable { .. }
        | LedgerError::Malformed { .. }
        | LedgerError::IdConflict { .. } => exit::MALFORMED,
        LedgerError::Refused { .. } => exit::REFUSED,
        LedgerError::Corrupt { .. }
        | LedgerError::Contention { .. }
        | LedgerError::ReplicaBehind { .. }
        | LedgerError::Store(_) => exit::FAILURE,
    }
}

async fn import(ledger: &Ledger, files: &[PathBuf], mode: Mode) -> anyhow::Result<u8> {
    for file in files {
        let mut bar = progress::Bar::lines(&format!("importing {}", file.display()));
        // Only a bar on a terminal needs the file's length in lines.
        let lines = if bar.visible() { count_lines(file) } else { 0 };
        let imported = ledger
            .import_file_reporting(file, mode, Some("cli"), &mut |line| {
                let line = line as u64;
                bar.update_unsigned(line, lines.max(line));
            })
            .await;
        bar.finish();
        match imported {
            Ok(outcome) => eprintln!(
                "{}: {} appended, {} already held",
                file.display(),
                outcome.appended_count,
                outcome.already_held_count
            ),
            Err(error) => {
                // What earlier files appended is kept: the read models follow it.
                let code = report_failure(&error);
                catch_up(ledger).await?;
                return Ok(code);
            }
        }
    }
    catch_up(ledger).await?;
    Ok(exit::OK)
}

/// The lines of `file`, as the import numbers them; 0 when it cannot be
/// read (the import then says why).
fn count_lines(file: &Path) -> u64 {
    let Ok(mut reader) = std::fs::File::open(file) else {
        return 0;
    };
    let mut buffer = vec![0u8; 1 << 16];
    let (mut lines, mut last) = (0u64, b'\n');
    loop {
        match std::io::Read::read(&mut reader, &mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(read) => {
                lines += buffer[..read].iter().filter(|&&byte| byte == b'\n').count() as u64;
                last = buffer[read - 1];
            }
        }
    }
    // A last line without its newline is a line too.
    lines + u64::from(last != b'\n')
}

async fn print_status(ledger: &Ledger) -> anyhow::Result<()> {
    for status in ledger.projection_status().await? {
        eprintln!(
            "projection {:<10} at position {:>10} of {:>10} ({} behind)",
            status.name,
            status.checkpoint,
            status.head,
            status.behind()
        );
    }
    Ok(())
}

/// Brings the projections up to date after appends, with a progress bar on
/// a terminal when it takes a while.
async fn catch_up(ledger: &Ledger) -> anyhow::Result<()> {
    let mut bar = progress::Bar::new("updating read models");
    ledger
        .catch_up(&mut |_, done, head| bar.update(done, head))
        .await?;
    bar.finish();
    Ok(())
}

async fn audit(ledger: &Ledger, manual: Option<&str>) -> anyhow::Result<u8> {
    let mut bar = progress::Bar::new("checking hash chains");
    // Only a bar on a terminal needs the chain's length.
    let last = match manual {
        _ if !bar.visible() => 0,
        Some(manual) => ledger.store().stream_version(manual).await?,
        None => ledger.store().head_position().await?,
    };
    let chain_breaks = ledger
        .store()
        .verify_chain_reporting(manual, &mut |done| bar.update(done, last.max(done)))
        .await?;
    bar.finish();
    for broken in &chain_breaks {
        outln!(
            "break: {} version {}: {}",
            broken.stream,
            broken.version,
            broken.reason
        );
    }
    if !chain_breaks.is_empty() {
        // Read models are not compared with a log that is itself broken.
        return Ok(exit::BROKEN);
    }
    let mut updating = Some(progress::Bar::new("updating read models"));
    let mut auditing = progress::Bar::new("auditing read models");
    let projection_breaks = ledger
        .audit_projections_reporting(manual, &mut |what, done, head| {
            if what == "audit" {
                if let Some(bar) = updating.take() {
                    bar.finish();
                }
                auditing.update(done, head);
            } else if let Some(bar) = &mut updating {
                bar.update(done, head);
            }
        })
        .await?;
    if let Some(bar) = updating {
        bar.finish();
    }
    auditing.finish();
    for broken in &projection_breaks {
        let version = broken
            .version
            .map(|v| format!(" version {v}"))
            .unwrap_or_default();
        outln!(
            "break: projection {}: {}{version}: {}",
            broken.projection,
            broken.manual,
            broken.what
        );
    }
    if projection_breaks.is_empty() {
        outln!("intact: every hash chain re-checked, every read model equals a fresh replay");
        Ok(exit::OK)
    } else {
        Ok(exit::BROKEN)
    }
}

async fn export(
    ledger: &Ledger,
    manual: Option<&str>,
    file: &Path,
    format: Format,
) -> anyhow::Result<u8> {
    let started = Instant::now();
    let mut bar = progress::Bar::new("exporting");
    let outcome = ledger
        .export(manual, file, &mut |done, total| {
            bar.update_unsigned(done, total)
        })
        .await;
    bar.finish();
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(error) => return evidence_failure(&error),
    };
    let manifest = &outcome.manifest;
    match format {
        Format::Json => output::print_json(&serde_json::json!({
            "file": file.display().to_string(),
            "events": manifest.events,
            "streams": manifest.streams.len(),
            "ledger_position": manifest.ledger_position,
            "digest": manifest.digest,
            "bytes": outcome.bytes,
        })),
        Format::Table | Format::Csv => outln!(
            "{}: {} events of {} stream(s) up to ledger position {}, {} bytes, {}, in {:.1} s",
            file.display(),
            manifest.events,
            manifest.streams.len(),
            manifest.ledger_position,
            outcome.bytes,
            manifest.digest,
            started.elapsed().as_secs_f64()
        ),
    }
    Ok(exit::OK)
}

/// Checks a package without opening any database.
fn verify_export(file: &Path, format: Format) -> anyhow::Result<u8> {
    let mut bar = progress::Bar::bytes("checking");
    let report = bondledger_ledger::verify_package(file, &mut |done, total| {
        bar.update_unsigned(done, total)
    });
    bar.finish();
    let report = match report {
        Ok(report) => report,
        Err(error) => return evidence_failure(&error),
    };
    match format {
        Format::Json => output::print_json(&package_report_json(file, &report)),
        Format::Table | Format::Csv => {
            for broken in &report.breaks {
                outln!("break: {}: {broken}", file.display());
            }
            if let (true, Some(manifest)) = (report.intact(), &report.manifest) {
                outln!(
                    "intact: {}: {} events of {} stream(s), every hash chain re-computed, \
                     every chain head and the digest as the manifest says ({} up to ledger position {})",
                    file.display(),
                    manifest.events,
                    manifest.streams.len(),
                    manifest
                        .manual
                        .as_deref()
                        .map_or("the whole ledger".to_owned(), |m| format!("manual {m}")),
                    manifest.ledger_position
                );
            }
        }
    }
    Ok(if report.intact() {
        exit::OK
    } else {
        exit::BROKEN
    })
}

fn package_report_json(
    file: &Path,
    report: &bondledger_store::package::PackageReport,
) -> serde_json::Value {
    let breaks: Vec<serde_json::Value> = report
        .breaks
        .iter()
        .map(|broken| {
            serde_json::json!({
                "line": broken.line,
                "stream": broken.stream,
                "version": broken.version,
                "reason": broken.reason,
            })
        })
        .collect();
    serde_json::json!({
        "file": file.display().to_string(),
        "intact": report.intact(),
        "events": report.events,
        "breaks": breaks,
        "manifest": report.manifest.as_ref().map(|manifest| serde_json::json!({
            "scope": manifest.scope,
            "manual": manifest.manual,
            "ledger_position": manifest.ledger_position,
            "exported_at": manifest.exported_at,
            "events": manifest.events,
            "streams": manifest.streams.len(),
            "digest": manifest.digest,
        })),
    })
}

async fn restore(ledger: &Ledger, file: &Path, format: Format) -> anyhow::Result<u8> {
    let started = Instant::now();
    let mut bar = progress::Bar::bytes("restoring");
    let outcome = ledger
        .restore(file, &mut |done, total| bar.update_unsigned(done, total))
        .await;
    bar.finish();
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(error) => return evidence_failure(&error),
    };
    catch_up(ledger).await?;
    match format {
        Format::Json => output::print_json(&serde_json::json!({
            "file": file.display().to_string(),
            "restored": outcome.events,
            "streams": outcome.manifest.streams.len(),
            "ledger_position": outcome.manifest.ledger_position,
        })),
        Format::Table | Format::Csv => outln!(
            "{}: {} events of {} stream(s) restored with their hashes, in {:.1} s",
            file.display(),
            outcome.events,
            outcome.manifest.streams.len(),
            started.elapsed().as_secs_f64()
        ),
    }
    Ok(exit::OK)
}

/// The message and exit status of an export, a check or a restore that did not go
/// through.
fn evidence_failure(error: &EvidenceError) -> anyhow::Result<u8> {
    eprintln!("bondledger: {error}");
    Ok(match error {
        EvidenceError::File { .. } => exit::MALFORMED,
        EvidenceError::NoSuchManual(_) => exit::NO_SUCH_MANUAL,
        EvidenceError::Broken { path, report } => {
            for broken in &report.breaks {
                eprintln!("break: {}: {broken}", path.display());
            }
            exit::BROKEN
        }
        EvidenceError::NotEmpty { .. } | EvidenceError::Ledger(_) | EvidenceError::Store(_) => {
            exit::FAILURE
        }
    })
}

async fn history(
    ledger: &Ledger,
    manual: &str,
    as_of: AsOfArgs,
    format: Format,
) -> anyhow::Result<u8> {
    let mut printer = output::HistoryPrinter::new(format);
    let state = ledger
        .history(manual, as_of.resolve()?, |entry| printer.push(entry))
        .await?;
    if state.is_none() {
        return Ok(no_such_manual(manual));
    }
    printer.finish(state.as_ref());
    Ok(exit::OK)
}

async fn demo(ledger: Ledger) -> anyhow::Result<u8> {
    let manuals = match load_demo(&ledger).await? {
        Ok(manuals) => manuals,
        Err(code) => return Ok(code),
    };
    for manual in manuals {
        if let Some(report) = ledger
            .verify(&manual, AsOf::Latest, &VerifyOptions::default())
            .await?
        {
            output::print_report(&report);
            outln!("");
        }
    }
    Ok(exit::OK)
}

/// Appends the demo history (what is held already is not appended again)
/// and brings the read models up to date: the demo's manuals, or the exit
/// status of a refusal.
async fn load_demo(ledger: &Ledger) -> anyhow::Result<Result<Vec<String>, u8>> {
    let mut manuals = Vec::new();
    for (name, text) in DEMO_FILES {
        match ledger
            .import_text(name, text, Mode::Strict, Some("demo"))
            .await
        {
            Ok(outcome) => eprintln!(
                "{name}: {} appended, {} already held",
                outcome.appended_count, outcome.already_held_count
            ),
            Err(error) => return Ok(Err(report_failure(&error))),
        }
        for located in
            bondledger_ledger::read_lines(Ok(text.as_bytes()), (*name).to_owned()).flatten()
        {
            if located.envelope.movement.kind() == bondledger_domain::MovementKind::ManualRegistered
            {
                manuals.push(located.envelope.manual.to_string());
            }
        }
    }
    catch_up(ledger).await?;
    Ok(Ok(manuals))
}

/// Serves the API until Ctrl-C or SIGTERM; on a ledger with no token yet,
/// first makes an admin token and prints the sign-in address, once.
async fn serve(
    ledger: Ledger,
    listen: std::net::SocketAddr,
    limits: bondledger_api::Limits,
) -> anyhow::Result<u8> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let address = listener.local_addr()?;
    match ledger.create_first_admin_token("made by serve").await? {
        Some(token) => outln!(
            "sign in (admin; shown this once): http://{address}/?token={}",
            token.secret
        ),
        None => outln!("serving on http://{address}"),
    }
    bondledger_api::serve_listener(ledger, listener, limits, shutdown_signal()).await?;
    Ok(exit::OK)
}

/// Ctrl-C, or SIGTERM where there is one.
async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            eprintln!("bondledger: cannot watch Ctrl-C: {error}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                eprintln!("bondledger: cannot watch SIGTERM: {error}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
    eprintln!("bondledger: shutting down; finishing the requests in flight");
}

/// Prints a new token once: the secret alone on stdout for a table (so a
/// script can take it), the whole of it for JSON.
async fn create_token(
    ledger: &Ledger,
    role: RoleArg,
    enterprise: Option<String>,
    label: Option<String>,
    format: Format,
) -> anyhow::Result<u8> {
    let issued = match ledger
        .create_token(role.role(), enterprise.as_deref(), label.as_deref())
        .await
    {
        Ok(issued) => issued,
        Err(bondledger_ledger::AccessError::InvalidToken(message)) => {
            eprintln!("bondledger: {message}");
            return Ok(exit::MALFORMED);
        }
        Err(error) => return Err(error.into()),
    };
    let principal = &issued.principal;
    match format {
        Format::Json => output::print_json(&bondledger_ledger::json::issued_token_json(&issued)),
        Format::Table | Format::Csv => {
            outln!("{}", issued.secret);
            let bound = principal
                .enterprise
                .as_deref()
                .map(|code| format!(" of enterprise {code}"))
                .unwrap_or_default();
            eprintln!(
                "token {} ({}{bound}); it is shown this once, only its hash is kept",
                principal.token_id, principal.role
            );
        }
    }
    Ok(exit::OK)
}
