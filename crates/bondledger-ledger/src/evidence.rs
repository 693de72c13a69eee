//! Evidence packages (docs/evidence-package.md): a ledger's events, or one manual's,
//! exported to one JSON Lines file that is checked with no database and restored into
//! an empty ledger with the same hashes. Both directions stream a page at a time.
//!
//! There is deliberately no command that deletes events or manuals: records of a closed
//! manual are kept at least three years after closure (海关对加工贸易货物监管办法 第四十条),
//! and a ledger only ever grows.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use bondledger_store::package::{
    PackageManifest, PackageReport, PackageVerifier, PackageWriter, MAX_PACKAGE_LINE_BYTES,
};
use bondledger_store::{StoreError, StoredEvent, MAX_PAGE_EVENTS};
use chrono::Utc;

use crate::{Ledger, LedgerError};

/// Events a restore hands the store at a time, inside its one transaction.
const RESTORE_CHUNK_EVENTS: usize = 1_000;

/// Why an export, a check or a restore did not go through. A restore that fails writes
/// nothing.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("no manual {0} in this ledger")]
    NoSuchManual(String),
    #[error("{path}: the package is broken ({} break(s) found); nothing was restored", report.breaks.len())]
    Broken {
        path: PathBuf,
        report: Box<PackageReport>,
    },
    #[error(
        "the ledger is not empty (it holds {position} events): a restore goes into an empty ledger only; nothing was restored"
    )]
    NotEmpty { position: i64 },
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn file_error(path: &Path, error: impl std::fmt::Display) -> EvidenceError {
    EvidenceError::File {
        path: path.to_owned(),
        message: error.to_string(),
    }
}

/// What an export wrote.
#[derive(Debug, Clone)]
pub struct ExportOutcome {
    pub manifest: PackageManifest,
    pub bytes: u64,
}

/// What a restore wrote.
#[derive(Debug, Clone)]
pub struct RestoreOutcome {
    pub manifest: PackageManifest,
    pub events: i64,
}

/// Progress of a long run: (done, total), in events for an export, in bytes for a check
/// or a restore.
pub type Progress<'a> = &'a mut (dyn FnMut(u64, u64) + Send);

impl Ledger {
    /// Writes the ledger's events (or `manual`'s stream) as they stand now into a new
    /// package at `path`; events appended meanwhile are not in it. The file appears
    /// under its name only once it is complete and on disk; an existing file is never
    /// overwritten.
    pub async fn export(
        &self,
        manual: Option<&str>,
        path: &Path,
        progress: Progress<'_>,
    ) -> Result<ExportOutcome, EvidenceError> {
        if path.exists() {
            return Err(file_error(
                path,
                "exists already: an export never overwrites a file",
            ));
        }
        let head = self.store.head_position().await?;
        let total = match manual {
            Some(manual) => match self.store.stream_version(manual).await? {
                0 => return Err(EvidenceError::NoSuchManual(manual.to_owned())),
                version => version,
            },
            None => head,
        };
        let partial = partial_path(path);
        let file = File::create(&partial).map_err(|error| file_error(&partial, error))?;
        let mut out = BufWriter::new(file);
        let mut writer = PackageWriter::new(manual, head, Utc::now());
        let mut bytes = 0u64;
        let mut write = |out: &mut BufWriter<File>, line: String| {
            bytes += line.len() as u64;
            out.write_all(line.as_bytes())
                .map_err(|error| file_error(&partial, error))
        };
        write(&mut out, writer.header_line())?;
        let mut written = 0u64;
        let mut pages = EventPages::new(manual, head);
        while let Some(page) = pages.next(self).await? {
            for event in &page {
                write(&mut out, writer.event_line(event))?;
            }
            written += page.len() as u64;
            progress(written, u64::try_from(total).unwrap_or(0));
        }
        let (line, manifest) = writer.finish();
        write(&mut out, line)?;
        let file = out
            .into_inner()
            .map_err(|error| file_error(&partial, error.error()))?;
        file.sync_all()
            .map_err(|error| file_error(&partial, error))?;
        drop(file);
        std::fs::rename(&partial, path).map_err(|error| file_error(path, error))?;
        Ok(ExportOutcome { manifest, bytes })
    }

    /// Restores a package into this ledger, which must hold no event: checks the whole
    /// package first, then writes every event as it was (same ids, recorded times and
    /// hashes) in one transaction, checking it again as it goes. A broken package, a
    /// non-empty ledger or any failure writes nothing.
    pub async fn restore(
        &self,
        path: &Path,
        progress: Progress<'_>,
    ) -> Result<RestoreOutcome, EvidenceError> {
        let checked = verify_package(path, &mut *progress)?;
        if !checked.intact() {
            return Err(EvidenceError::Broken {
                path: path.to_owned(),
                report: Box::new(checked),
            });
        }
        let mut session = self.store.begin().await?;
        let position = session.head_position().await?;
        if position != 0 {
            session.rollback().await?;
            return Err(EvidenceError::NotEmpty { position });
        }
        let mut lines = PackageLines::open(path)?;
        let mut verifier = PackageVerifier::new();
        let mut chunk: Vec<StoredEvent> = Vec::with_capacity(RESTORE_CHUNK_EVENTS);
        let mut restored = 0i64;
        // Read again rather than trusted from the first pass: the file may have changed.
        while let Some(line) = lines.next_line(&mut verifier)? {
            if let Some(event) = verifier.line(line) {
                chunk.push(event);
            }
            if verifier.broken() {
                break;
            }
            if chunk.len() == RESTORE_CHUNK_EVENTS {
                restored += chunk.len() as i64;
                session.restore(std::mem::take(&mut chunk)).await?;
                progress(lines.read_bytes, lines.total_bytes);
            }
        }
        if !chunk.is_empty() && !verifier.broken() {
            restored += chunk.len() as i64;
            session.restore(chunk).await?;
        }
        let report = verifier.finish();
        let Some(manifest) = report.manifest.clone().filter(|_| report.intact()) else {
            session.rollback().await?;
            return Err(EvidenceError::Broken {
                path: path.to_owned(),
                report: Box::new(report),
            });
        };
        session.commit().await?;
        progress(lines.total_bytes, lines.total_bytes);
        Ok(RestoreOutcome {
            manifest,
            events: restored,
        })
    }
}

/// Checks a package at `path` with no database: every stream's hash chain, positions,
/// counts, chain heads and the digest. `Err` only when the file cannot be read; a
/// broken package is an `Ok` report that lists its breaks.
pub fn verify_package(path: &Path, progress: Progress<'_>) -> Result<PackageReport, EvidenceError> {
    let mut lines = PackageLines::open(path)?;
    let mut verifier = PackageVerifier::new();
    let mut since_progress = 0usize;
    while let Some(line) = lines.next_line(&mut verifier)? {
        verifier.line(line);
        since_progress += 1;
        if since_progress == RESTORE_CHUNK_EVENTS {
            since_progress = 0;
            progress(lines.read_bytes, lines.total_bytes);
        }
    }
    progress(lines.total_bytes, lines.total_bytes);
    Ok(verifier.finish())
}

/// `FILE.partial`, beside `FILE`.
fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    path.with_file_name(name)
}

/// The pages of events an export writes: the whole log, or one stream, up to `head`.
struct EventPages<'a> {
    manual: Option<&'a str>,
    head: i64,
    /// The last position (whole log) or version (one stream) written.
    after: i64,
    done: bool,
}

impl<'a> EventPages<'a> {
    fn new(manual: Option<&'a str>, head: i64) -> Self {
        EventPages {
            manual,
            head,
            after: 0,
            done: false,
        }
    }

    async fn next(&mut self, ledger: &Ledger) -> Result<Option<Vec<StoredEvent>>, StoreError> {
        if self.done {
            return Ok(None);
        }
        let mut page = match self.manual {
            Some(manual) => {
                ledger
                    .store
                    .read_stream(manual, self.after + 1, MAX_PAGE_EVENTS)
                    .await?
            }
            None => ledger.store.read_all(self.after, MAX_PAGE_EVENTS).await?,
        };
        let before = page.len();
        page.retain(|event| event.position <= self.head);
        if page.is_empty() {
            self.done = true;
            return Ok(None);
        }
        if page.len() < before {
            self.done = true;
        }
        self.after = match self.manual {
            Some(_) => page.last().map_or(self.after, |event| event.version),
            None => page.last().map_or(self.after, |event| event.position),
        };
        Ok(Some(page))
    }
}

/// A package's lines, each with its newline, bounded in length.
struct PackageLines {
    path: PathBuf,
    reader: BufReader<File>,
    buffer: Vec<u8>,
    read_bytes: u64,
    total_bytes: u64,
    finished: bool,
}

impl PackageLines {
    fn open(path: &Path) -> Result<Self, EvidenceError> {
        let file = File::open(path).map_err(|error| file_error(path, error))?;
        let total_bytes = file
            .metadata()
            .map_err(|error| file_error(path, error))?
            .len();
        Ok(PackageLines {
            path: path.to_owned(),
            reader: BufReader::with_capacity(1 << 20, file),
            buffer: Vec::new(),
            read_bytes: 0,
            total_bytes,
            finished: false,
        })
    }

    /// The next line, or `None` at the end or after a line too long (which the verifier
    /// is told of).
    fn next_line(
        &mut self,
        verifier: &mut PackageVerifier,
    ) -> Result<Option<&[u8]>, EvidenceError> {
        if self.finished {
            return Ok(None);
        }
        self.buffer.clear();
        let limit = (MAX_PACKAGE_LINE_BYTES + 1) as u64;
        let read = (&mut self.reader)
            .take(limit)
            .read_until(b'\n', &mut self.buffer)
            .map_err(|error| file_error(&self.path, error))?;
        self.read_bytes += read as u64;
        if read == 0 {
            self.finished = true;
            return Ok(None);
        }
        if self.buffer.len() > MAX_PACKAGE_LINE_BYTES {
            self.finished = true;
            verifier.line_too_long();
            return Ok(None);
        }
        Ok(Some(&self.buffer))
    }
}
