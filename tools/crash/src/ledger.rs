//! What the harness reads from the ledger itself, through the store: the head, and which
//! of a file's movements are held.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context as _};
use bondledger_store::EventStore;

/// Caller ids asked for at a time.
const IDS_PER_LOOKUP: usize = 1_000;

/// How long a write still under way at a kill may take to land.
const SETTLE_WITHIN: Duration = Duration::from_secs(10);

/// A generated movement file: its lines, each with its caller id.
pub struct MovementFile {
    pub path: PathBuf,
    pub ids: Vec<String>,
    pub lines: Vec<serde_json::Value>,
}

impl MovementFile {
    pub fn read(path: &Path) -> anyhow::Result<MovementFile> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let mut ids = Vec::new();
        let mut lines = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let value: serde_json::Value = serde_json::from_str(line)
                .with_context(|| format!("{}:{}: not JSON", path.display(), number + 1))?;
            let id = value["id"]
                .as_str()
                .with_context(|| format!("{}:{}: no id", path.display(), number + 1))?;
            ids.push(id.to_owned());
            lines.push(value);
        }
        Ok(MovementFile {
            path: path.to_owned(),
            ids,
            lines,
        })
    }

    /// The movements in batches of at most `size`, in file order.
    pub fn batches(&self, size: usize) -> Vec<&[serde_json::Value]> {
        self.lines.chunks(size.max(1)).collect()
    }
}

pub struct Ledger {
    store: Arc<dyn EventStore>,
}

impl Ledger {
    pub async fn open(url: &str) -> anyhow::Result<Ledger> {
        let store = bondledger_store::open(url)
            .await
            .with_context(|| format!("cannot open the ledger at {url}"))?;
        Ok(Ledger { store })
    }

    pub async fn head(&self) -> anyhow::Result<i64> {
        Ok(self.store.head_position().await?)
    }

    /// How many of the file's movements the ledger holds; checks that nothing else was
    /// appended since the ledger was at `before`.
    ///
    /// A killed client's last statement may still be running on a PostgreSQL server,
    /// and commits there after the kill. So the count is only taken when the head stood
    /// still across it: the look-ups then saw one state of the ledger.
    pub async fn held(&self, file: &MovementFile, before: i64) -> anyhow::Result<i64> {
        let deadline = Instant::now() + SETTLE_WITHIN;
        loop {
            let head = self.head().await?;
            let mut held = 0i64;
            for chunk in file.ids.chunks(IDS_PER_LOOKUP) {
                held += self.store.find_by_caller_ids(chunk).await?.len() as i64;
            }
            if self.head().await? != head && Instant::now() < deadline {
                eprintln!("the ledger moved while it was counted: a write landed after the kill");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            let appended = head - before;
            ensure!(
                appended == held,
                "{appended} events were appended, {held} of them the file's movements"
            );
            return Ok(held);
        }
    }

    /// Every movement of the file is held, once.
    pub async fn held_once(&self, file: &MovementFile, before: i64) -> anyhow::Result<()> {
        let held = self.held(file, before).await?;
        ensure!(
            held == file.ids.len() as i64,
            "after running it again the ledger holds {held} of the file's {} movements",
            file.ids.len()
        );
        Ok(())
    }

    /// Every hash chain of the ledger holds.
    pub async fn chains_hold(&self) -> anyhow::Result<()> {
        let breaks = self.store.verify_chain(None).await?;
        ensure!(breaks.is_empty(), "hash chains broken: {breaks:?}");
        Ok(())
    }
}
