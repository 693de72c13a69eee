//! Laws of the read models, on SQLite and PostgreSQL: whatever the
//! interleaving of appends across manuals and however a history is split
//! into files, every projection equals a fresh replay, and the balances it
//! keeps are the replayed ones.

use bondledger_domain::{format6, Mode};
use bondledger_ledger::{AsOf, Ledger};
use bondledger_tests::{Backend, TestLedger};
use proptest::prelude::*;
use serde_json::{json, Value};

/// One step of a generated history, on manual `manual` (0..3).
#[derive(Debug, Clone)]
enum Step {
    Import {
        manual: usize,
        material: u32,
        qty: u32,
    },
    Export {
        manual: usize,
        qty: u32,
    },
    Sale {
        manual: usize,
        material: u32,
        qty: u32,
    },
    Ship {
        manual: usize,
        qty: u32,
    },
    Declare {
        manual: usize,
        net_thousandths: u32,
    },
    Reverse {
        manual: usize,
        back: usize,
    },
}

fn manual_no(manual: usize) -> String {
    format!("C4401260{:04}", 100 + manual)
}

fn step() -> impl Strategy<Value = Step> {
    let manual = 0..3usize;
    prop_oneof![
        4 => (manual.clone(), 1..=2u32, 1..500u32).prop_map(|(manual, material, qty)| Step::Import { manual, material, qty }),
        3 => (manual.clone(), 1..200u32).prop_map(|(manual, qty)| Step::Export { manual, qty }),
        1 => (manual.clone(), 1..=2u32, 1..50u32).prop_map(|(manual, material, qty)| Step::Sale { manual, material, qty }),
        1 => (manual.clone(), 1..50u32).prop_map(|(manual, qty)| Step::Ship { manual, qty }),
        1 => (manual.clone(), 500..2000u32).prop_map(|(manual, net_thousandths)| Step::Declare { manual, net_thousandths }),
        1 => (manual, 1..6usize).prop_map(|(manual, back)| Step::Reverse { manual, back }),
    ]
}

/// The lines of a history: three registrations, then the steps. Recorded as
/// history, so a step that breaks a rule is kept with its finding.
fn lines(steps: &[Step]) -> Vec<Value> {
    let mut lines: Vec<Value> = (0..3)
        .map(|m| {
            json!({"id": format!("m{m}-reg"), "type": "manual_registered", "manual": manual_no(m), "date": "2026-01-02",
                "trade_mode": "purchased", "enterprise": format!("44019{m:05}"), "valid_until": "2027-12-31",
                "materials": [
                    {"item": 1, "hs": "3901100000", "name": "聚乙烯", "spec": "LD", "unit": "千克", "qty": "100000000"},
                    {"item": 2, "hs": "3206499000", "name": "色母", "spec": "W", "unit": "千克", "qty": "100000000"}],
                "products": [{"item": 1, "hs": "3923210000", "name": "袋", "spec": "S", "unit": "千克", "qty": "100000000"}]})
        })
        .collect();
    let mut ids: Vec<Vec<String>> = vec![Vec::new(); 3];
    for (n, step) in steps.iter().enumerate() {
        let id = format!("s{n}");
        let line = match step {
            Step::Import {
                manual,
                material,
                qty,
            } => json!({"type": "material_imported", "manual": manual_no(*manual),
                "material": material, "qty": qty.to_string(), "declaration": "440120261000010001", "mode": "0615"}),
            Step::Export { manual, qty } => {
                json!({"type": "product_exported", "manual": manual_no(*manual),
                "product": 1, "qty": qty.to_string(), "declaration": "440120261000020001", "mode": "0615"})
            }
            Step::Sale {
                manual,
                material,
                qty,
            } => json!({"type": "domestic_sale", "manual": manual_no(*manual),
                "approval": "NX-1", "declaration": "440120261000030001", "mode": "0644",
                "materials": [{"item": material, "qty": qty.to_string()}]}),
            Step::Ship { manual, qty } => {
                json!({"type": "outward_shipped", "manual": manual_no(*manual),
                "contractor": "4401990001", "approval": "WF-1", "products": [{"item": 1, "qty": qty.to_string()}]})
            }
            Step::Declare {
                manual,
                net_thousandths,
            } => json!({"type": "unit_consumption_declared", "manual": manual_no(*manual),
                "product": 1, "lines": [{"material": 1, "net": format!("{}.{:03}", net_thousandths / 1000, net_thousandths % 1000),
                "loss_rate": "0.03"}, {"material": 2, "net": "0.02"}]}),
            Step::Reverse { manual, back } => {
                // Each movement is reversed at most once: it leaves the list.
                let earlier = &mut ids[*manual];
                let Some(index) = earlier.len().checked_sub(*back) else {
                    continue;
                };
                let target = earlier.remove(index);
                json!({"type": "reversed", "manual": manual_no(*manual), "event": target, "reason": "correction"})
            }
        };
        let mut line = line;
        line["id"] = json!(id);
        line["date"] = json!(format!("2026-{:02}-{:02}", 2 + n % 10, 1 + n % 28));
        if !matches!(step, Step::Reverse { .. } | Step::Declare { .. }) {
            ids[match step {
                Step::Import { manual, .. }
                | Step::Export { manual, .. }
                | Step::Sale { manual, .. }
                | Step::Ship { manual, .. } => *manual,
                _ => unreachable!("handled above"),
            }]
            .push(id);
        }
        lines.push(line);
    }
    lines
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

/// Imports `lines` split at `cuts` into files, then checks the laws.
fn projections_equal_replay(
    backend: Backend,
    lines: &[Value],
    cuts: &[usize],
) -> Result<(), TestCaseError> {
    let Some(test) = TestLedger::new(backend) else {
        return Ok(());
    };
    let whole = TestLedger::new(backend).expect("a second ledger on the same backend");
    runtime().block_on(async {
        let ledger = Ledger::open(&test.url).await.expect("the ledger opens");
        let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (lines.len() + 1)).collect();
        bounds.push(0);
        bounds.push(lines.len());
        bounds.sort_unstable();
        bounds.dedup();
        for window in bounds.windows(2) {
            let text: String = lines[window[0]..window[1]]
                .iter()
                .map(|l| format!("{l}\n"))
                .collect();
            ledger
                .import_text("part.jsonl", &text, Mode::Record, None)
                .await
                .expect("every part is recorded");
            // Projections follow part by part, as after each import.
            ledger.catch_up(&mut |_, _, _| {}).await.expect("catch up");
        }
        let breaks = ledger.audit_projections(None).await.expect("an audit");
        prop_assert!(breaks.is_empty(), "{breaks:?}");
        let rows = ledger.store().balance_rows(None).await.expect("balances");
        for manual in 0..3 {
            let state = ledger
                .replay(&manual_no(manual), AsOf::Latest)
                .await
                .expect("replay")
                .expect("held");
            for (item, balance) in state.balances() {
                let row = rows
                    .iter()
                    .find(|r| r.manual == manual_no(manual) && r.item == i64::from(item.0));
                prop_assert_eq!(row.map(|r| r.balance.clone()), Some(format6(balance)));
            }
        }
        // The same history as one file gives the same balances.
        let single = Ledger::open(&whole.url).await.expect("the ledger opens");
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        single
            .import_text("whole.jsonl", &text, Mode::Record, None)
            .await
            .expect("recorded whole");
        single.catch_up(&mut |_, _, _| {}).await.expect("catch up");
        prop_assert_eq!(
            single.store().balance_rows(None).await.expect("balances"),
            rows
        );
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn sqlite_projections_equal_a_fresh_replay(steps in prop::collection::vec(step(), 1..40), cuts in prop::collection::vec(0..100usize, 0..4)) {
        projections_equal_replay(Backend::Sqlite, &lines(&steps), &cuts)?;
    }

    #[test]
    fn postgres_projections_equal_a_fresh_replay(steps in prop::collection::vec(step(), 1..40), cuts in prop::collection::vec(0..100usize, 0..4)) {
        projections_equal_replay(Backend::Postgres, &lines(&steps), &cuts)?;
    }
}

/// A runner catching up every projection over a log of several pages, while
/// another runner (another process, say) rebuilds the timeline after the
/// first runner's first page: the first runner finds the timeline's
/// checkpoint moved, drops the page it applied meanwhile, reads its states
/// afresh and goes on, and every projection ends as a fresh replay has it,
/// each event applied once.
fn a_runner_overtaken_goes_on_from_where_the_other_got_to(backend: Backend) {
    let Some(test) = TestLedger::new(backend) else {
        return;
    };
    // Three pages of the log and a part of a fourth.
    let steps: Vec<Step> = (0..3 * bondledger_store::MAX_PAGE_EVENTS + 500)
        .map(|n| Step::Import {
            manual: n % 3,
            material: 1 + (n % 2) as u32,
            qty: 1 + (n % 97) as u32,
        })
        .collect();
    let text: String = lines(&steps).iter().map(|l| format!("{l}\n")).collect();
    let threads = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    threads.block_on(async {
        let ledger = Ledger::open(&test.url).await.expect("the ledger opens");
        ledger
            .import_text("pages.jsonl", &text, Mode::Record, None)
            .await
            .expect("recorded");
        let head = ledger.store().head_position().await.expect("the head");
        let mut reported: Vec<(String, i64)> = Vec::new();
        let mut overtaken = false;
        let mut progress = |name: &str, checkpoint: i64, _head: i64| {
            reported.push((name.to_owned(), checkpoint));
            if !overtaken {
                overtaken = true;
                // The other runner, on a runtime of its own, while this one waits.
                std::thread::scope(|scope| {
                    scope
                        .spawn(|| {
                            runtime().block_on(async {
                                let other = Ledger::open(&test.url).await.expect("a second handle");
                                other
                                    .rebuild("timeline", &mut |_, _, _| {})
                                    .await
                                    .expect("the other runner rebuilds the timeline");
                            });
                        })
                        .join()
                        .expect("the other runner ends");
                });
            }
        };
        ledger
            .catch_up(&mut progress)
            .await
            .expect("the first runner catches up");
        for status in ledger.projection_status().await.expect("the status") {
            assert_eq!(status.checkpoint, head, "{}", status.name);
        }
        let breaks = ledger.audit_projections(None).await.expect("an audit");
        assert!(breaks.is_empty(), "{breaks:?}");
        // The first runner reports every projection after each commit. It
        // saw the timeline jump from its first page to the head, the other
        // runner's doing, no later than the manuals got there: the pages it
        // applied meanwhile went into no timeline commit of its own.
        let rounds: Vec<&[(String, i64)]> = reported.chunks(3).collect();
        let at_head = |projection: &str| {
            rounds.iter().position(|round| {
                round
                    .iter()
                    .any(|(name, checkpoint)| name == projection && *checkpoint == head)
            })
        };
        let timeline: Vec<i64> = reported
            .iter()
            .filter(|(name, _)| name == "timeline")
            .map(|(_, checkpoint)| *checkpoint)
            .collect();
        assert_eq!(
            timeline.first(),
            Some(&(bondledger_store::MAX_PAGE_EVENTS as i64)),
            "{reported:?}"
        );
        assert!(
            timeline.iter().all(|&checkpoint| checkpoint
                == bondledger_store::MAX_PAGE_EVENTS as i64
                || checkpoint == head),
            "{reported:?}"
        );
        assert!(
            matches!((at_head("timeline"), at_head("manuals")), (Some(t), Some(m)) if t <= m),
            "{reported:?}"
        );
    });
}

#[test]
fn sqlite_a_runner_overtaken_goes_on_from_where_the_other_got_to() {
    a_runner_overtaken_goes_on_from_where_the_other_got_to(Backend::Sqlite);
}

#[test]
fn postgres_a_runner_overtaken_goes_on_from_where_the_other_got_to() {
    a_runner_overtaken_goes_on_from_where_the_other_got_to(Backend::Postgres);
}

/// Holds every projection's commit lock from a connection of its own, as a
/// slow commit or another process's runner would: SQLite's write lock, or
/// PostgreSQL's advisory lock per projection.
enum CommitsHeld {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl CommitsHeld {
    async fn take(test: &TestLedger) -> Self {
        use sqlx::Connection;
        match test.backend {
            Backend::Sqlite => {
                let mut connection = sqlx::SqliteConnection::connect(&test.url)
                    .await
                    .expect("a connection of the test's own");
                sqlx::raw_sql("BEGIN IMMEDIATE")
                    .execute(&mut connection)
                    .await
                    .expect("the write lock");
                CommitsHeld::Sqlite(connection)
            }
            Backend::Postgres => {
                let mut connection = sqlx::PgConnection::connect(&test.url)
                    .await
                    .expect("a connection of the test's own");
                sqlx::raw_sql(
                    "BEGIN; SELECT pg_advisory_xact_lock(7310, hashtext(name)) \
                     FROM (VALUES ('manuals'), ('timeline'), ('snapshots')) AS p (name)",
                )
                .execute(&mut connection)
                .await
                .expect("the projections' locks");
                CommitsHeld::Postgres(connection)
            }
        }
    }

    async fn release(self) {
        let released = match self {
            CommitsHeld::Sqlite(mut connection) => sqlx::raw_sql("ROLLBACK")
                .execute(&mut connection)
                .await
                .map(drop),
            CommitsHeld::Postgres(mut connection) => sqlx::raw_sql("ROLLBACK")
                .execute(&mut connection)
                .await
                .map(drop),
        };
        released.expect("the locks released");
    }
}

/// A runner whose commit waits (here on a lock another connection holds)
/// goes on applying the pages after it, and commits what they changed
/// together once that commit stands: fewer commits than pages, the
/// checkpoints at the head, and every projection as a fresh replay has it.
fn a_runner_whose_commit_waits_commits_the_pages_after_it_together(backend: Backend) {
    let Some(test) = TestLedger::new(backend) else {
        return;
    };
    // Three pages of the log and a part of a fourth.
    let pages = 4;
    let steps: Vec<Step> = (0..(pages - 1) * bondledger_store::MAX_PAGE_EVENTS + 500)
        .map(|n| Step::Import {
            manual: n % 3,
            material: 1 + (n % 2) as u32,
            qty: 1 + (n % 89) as u32,
        })
        .collect();
    let text: String = lines(&steps).iter().map(|l| format!("{l}\n")).collect();
    let threads = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    threads.block_on(async {
        let ledger = Ledger::open(&test.url).await.expect("the ledger opens");
        ledger
            .import_text("pages.jsonl", &text, Mode::Record, None)
            .await
            .expect("recorded");
        let head = ledger.store().head_position().await.expect("the head");
        let held = CommitsHeld::take(&test).await;
        let runner = {
            let ledger = ledger.clone();
            tokio::spawn(async move {
                let mut reported: Vec<(String, i64)> = Vec::new();
                ledger
                    .catch_up(&mut |name, checkpoint, _| {
                        reported.push((name.to_owned(), checkpoint));
                    })
                    .await
                    .map(|()| reported)
            })
        };
        // The first page's commit waits meanwhile; the pages after it are
        // applied (a page takes well under a second, even unoptimized).
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        assert!(!runner.is_finished(), "the runner waits for its commit");
        held.release().await;
        let reported = runner
            .await
            .expect("the runner ends")
            .expect("the runner catches up");
        for name in bondledger_projections::PROJECTIONS {
            let commits: Vec<i64> = reported
                .iter()
                .filter(|(reported, _)| reported == name)
                .map(|(_, checkpoint)| *checkpoint)
                .collect();
            assert_eq!(commits.last(), Some(&head), "{name}: {commits:?}");
            assert!(commits.len() < pages, "{name}: {commits:?}");
        }
        let breaks = ledger.audit_projections(None).await.expect("an audit");
        assert!(breaks.is_empty(), "{breaks:?}");
    });
}

#[test]
fn sqlite_a_runner_whose_commit_waits_commits_the_pages_after_it_together() {
    a_runner_whose_commit_waits_commits_the_pages_after_it_together(Backend::Sqlite);
}

#[test]
fn postgres_a_runner_whose_commit_waits_commits_the_pages_after_it_together() {
    a_runner_whose_commit_waits_commits_the_pages_after_it_together(Backend::Postgres);
}
