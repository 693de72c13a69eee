//! Crash safety at CI scale: `bondledger-crash` kills `import` and `serve` with SIGKILL
//! at a handful of seeded random moments per backend, and after each kill checks that
//! the ledger holds all of the file (or of each batch) or none, that `audit` passes, and
//! that running the same import or POSTs again holds every movement exactly once. The
//! long run is the same binary with `--kills 50` (README, "Crash safety").

use std::process::Command;

use bondledger_tests::{binary, generator_binary, on_both_backends, TestLedger};

/// Kill points per scenario (import, serve) and backend.
const KILLS: u32 = 5;

fn import_and_serve_survive_kills(ledger: TestLedger) {
    let harness =
        binary().with_file_name(format!("bondledger-crash{}", std::env::consts::EXE_SUFFIX));
    assert!(
        harness.exists(),
        "{} is missing: run `cargo build --workspace` first",
        harness.display()
    );
    let output = Command::new(&harness)
        .args(["--database-url", &ledger.url])
        .args(["--kills", &KILLS.to_string()])
        .args(["--seed", "20261123"])
        .args(["--manuals", "2", "--movements", "150", "--batch", "60"])
        .arg("--bondledger")
        .arg(binary())
        .arg("--generator")
        .arg(generator_binary())
        .env_remove("BONDLEDGER_DATABASE_URL")
        .output()
        .expect("bondledger-crash runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "bondledger-crash failed\nstdout: {stdout}\nstderr: {stderr}"
    );
    for scenario in ["import", "serve"] {
        let line = format!("{scenario}: kill points survived: {KILLS} of {KILLS}");
        assert!(stdout.contains(&line), "no {line:?} in {stdout}");
    }
    // The harness's last word is the ledger's own: every chain and read model holds.
    ledger.expect(&["audit"], 0);
}

on_both_backends! {
    import_and_serve_survive_kills;
}
