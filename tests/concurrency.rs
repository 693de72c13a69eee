//! Eight writers at once, through the real binary on both databases: four
//! API clients of `bondledger serve` and four `bondledger import` processes,
//! on one shared manual (whose balance allows fewer exports than they try)
//! and on a manual each. Nothing is lost or duplicated, versions and
//! positions have no gaps, no balance ever goes below zero (the rules are
//! checked against the state the append commits on), and a follower of the
//! log sees every event exactly once, in order.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bondledger_tests::{on_both_backends, Server, TestLedger};
use rust_decimal::Decimal;
use serde_json::{json, Value};

const ENTERPRISE: &str = "3101960042";
const SHARED: &str = "C31012600500";
/// What the shared manual imports: exactly this many exports of 1 fit.
const SHARED_STOCK: usize = 60;
const WRITERS: usize = 8;
const ROUNDS: usize = 12;

fn own_manual(writer: usize) -> String {
    format!("C310126006{writer:02}")
}

fn register(manual: &str) -> Value {
    json!({"id": format!("{manual}-reg"), "type": "manual_registered", "manual": manual, "date": "2026-02-01",
        "trade_mode": "purchased", "enterprise": ENTERPRISE, "valid_until": "2026-12-31",
        "materials": [{"item": 1, "hs": "7408110000", "name": "精炼铜线", "spec": "Φ2.6mm", "unit": "千克", "qty": "100000"}],
        "products": [{"item": 1, "hs": "8544491900", "name": "电源线", "spec": "3x1.5mm²", "unit": "千克", "qty": "90000"}]})
}

fn declare(manual: &str) -> Value {
    // 0.8 net at a 20 % loss rate: one product consumes exactly one material.
    json!({"id": format!("{manual}-uc"), "type": "unit_consumption_declared", "manual": manual, "date": "2026-02-02",
        "product": 1, "lines": [{"material": 1, "net": "0.8", "loss_rate": "0.2"}]})
}

fn import(manual: &str, id: &str, qty: usize) -> Value {
    json!({"id": id, "type": "material_imported", "manual": manual, "date": "2026-02-10", "material": 1,
        "qty": qty.to_string(), "declaration": "310120261000010001", "mode": "0615"})
}

fn export(manual: &str, id: &str) -> Value {
    json!({"id": id, "type": "product_exported", "manual": manual, "date": "2026-03-01", "product": 1,
        "qty": "1", "declaration": "310120261000020001", "mode": "0615"})
}

/// How one attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Appended,
    /// Refused by `balance.insufficient`.
    Refused,
}

/// One movement through the API, retried with the same id while the
/// ledger is busy.
fn post(
    http: &reqwest::blocking::Client,
    server: &Server,
    token: &str,
    movement: &Value,
) -> Outcome {
    for _ in 0..50 {
        let answer = http
            .post(server.url("/api/v1/movements"))
            .bearer_auth(token)
            .json(movement)
            .send()
            .expect("the server answers");
        let status = answer.status().as_u16();
        let body: Value = answer.json().unwrap_or(Value::Null);
        match status {
            201 => return Outcome::Appended,
            422 => {
                assert_eq!(body["rule"], "balance.insufficient", "{body}");
                return Outcome::Refused;
            }
            503 => std::thread::sleep(Duration::from_millis(20)),
            other => panic!("{movement}: {other} {body}"),
        }
    }
    panic!("{movement}: the ledger stayed busy");
}

/// One movement as a file through `bondledger import`, retried while the
/// ledger is busy (exit 1 naming contention).
fn import_file(test: &TestLedger, name: &str, movement: &Value) -> Outcome {
    let path = test.file(name, std::slice::from_ref(movement));
    let path = path.to_str().expect("a UTF-8 path");
    for _ in 0..50 {
        let output = test.run(&["import", path]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        match output.status.code() {
            Some(0) => return Outcome::Appended,
            Some(3) => {
                assert!(stderr.contains("balance.insufficient"), "{stderr}");
                return Outcome::Refused;
            }
            Some(1)
                if stderr.contains("kept changing")
                    || stderr.contains("busy")
                    || stderr.contains("locked") =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => panic!("import {name}: {other:?}: {stderr}"),
        }
    }
    panic!("import {name}: the ledger stayed busy");
}

fn eight_writers_lose_nothing_and_never_overdraw(test: TestLedger) {
    let server = Server::start(&test, &[], "serve.log");
    let token = server.sign_in_token().expect("a first token").to_owned();
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("a client");
    let mut setup = vec![
        register(SHARED),
        declare(SHARED),
        import(SHARED, "shared-stock", SHARED_STOCK),
    ];
    for writer in 0..WRITERS {
        setup.push(register(&own_manual(writer)));
    }
    let answer = http
        .post(server.url("/api/v1/movements"))
        .bearer_auth(&token)
        .json(&setup)
        .send()
        .expect("the setup is answered");
    assert_eq!(answer.status(), 201, "{:?}", answer.text());
    let before = setup.len();

    // A follower of the whole log, reading while the writers write.
    let done = Arc::new(AtomicBool::new(false));
    let follower = {
        let url = test.url.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async move {
                let store = bondledger_store::open(&url).await.expect("the store opens");
                let mut seen = Vec::new();
                let mut after = 0;
                loop {
                    let finished = done.load(Ordering::Acquire);
                    let page = store.read_all(after, 100).await.expect("a page");
                    if let Some(last) = page.last() {
                        after = last.position;
                    }
                    let empty = page.is_empty();
                    seen.extend(page.into_iter().map(|e| (e.position, e.event_id)));
                    if finished && empty {
                        return seen;
                    }
                    if empty {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            })
        })
    };

    let test = Arc::new(test);
    let server = Arc::new(server);
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let (test, server, http, token) =
                (test.clone(), server.clone(), http.clone(), token.clone());
            std::thread::spawn(move || {
                let mut exports = Vec::new();
                for round in 0..ROUNDS {
                    let shared = export(SHARED, &format!("x-{writer}-{round}"));
                    let own = import(&own_manual(writer), &format!("i-{writer}-{round}"), 1);
                    if writer % 2 == 0 {
                        exports.push(post(&http, &server, &token, &shared));
                        assert_eq!(post(&http, &server, &token, &own), Outcome::Appended);
                    } else {
                        exports.push(import_file(
                            &test,
                            &format!("x-{writer}-{round}.jsonl"),
                            &shared,
                        ));
                        let own_file = format!("i-{writer}-{round}.jsonl");
                        assert_eq!(import_file(&test, &own_file, &own), Outcome::Appended);
                    }
                }
                exports
            })
        })
        .collect();
    let outcomes: Vec<Outcome> = writers
        .into_iter()
        .flat_map(|w| w.join().expect("a writer"))
        .collect();
    done.store(true, Ordering::Release);
    let seen = follower.join().expect("the follower");

    // Exactly as many exports as the stock allows, the rest refused.
    let appended = outcomes.iter().filter(|o| **o == Outcome::Appended).count();
    assert_eq!(outcomes.len(), WRITERS * ROUNDS);
    assert_eq!(appended, SHARED_STOCK, "exports appended");

    // The shared manual: versions without gaps, never below zero.
    let history = test.history(SHARED);
    let events = history.as_array().expect("an array");
    assert_eq!(events.len(), 3 + SHARED_STOCK);
    for (index, event) in events.iter().enumerate() {
        assert_eq!(event["version"], json!(index + 1), "versions without gaps");
        for balance in event["balances"].as_array().into_iter().flatten() {
            let figure: Decimal = balance["balance"]
                .as_str()
                .and_then(|b| b.parse().ok())
                .expect("a balance");
            assert!(figure >= Decimal::ZERO, "below zero after {event}");
        }
    }
    let last = &events[events.len() - 1]["balances"][0]["balance"];
    assert_eq!(
        last.as_str().and_then(|b| b.parse::<Decimal>().ok()),
        Some(Decimal::ZERO)
    );
    for writer in 0..WRITERS {
        let own = test.history(&own_manual(writer));
        assert_eq!(
            own.as_array().map(Vec::len),
            Some(1 + ROUNDS),
            "writer {writer}"
        );
    }

    // The log: every event once, positions without gaps, seen so by the follower.
    let total = before + SHARED_STOCK + WRITERS * ROUNDS;
    assert_eq!(test.count("SELECT COUNT(*) FROM events"), total as i64);
    assert_eq!(test.count("SELECT MAX(position) FROM events"), total as i64);
    assert_eq!(
        test.count("SELECT COUNT(DISTINCT caller_id) FROM events"),
        total as i64
    );
    assert_eq!(seen.len(), total, "the follower saw every event once");
    let positions: Vec<i64> = seen.iter().map(|(p, _)| *p).collect();
    assert_eq!(
        positions,
        (1..=total as i64).collect::<Vec<_>>(),
        "in order, without gaps"
    );
    let ids: HashSet<_> = seen.iter().map(|(_, id)| *id).collect();
    assert_eq!(ids.len(), total);
    test.expect(&["audit"], 0);
}

on_both_backends! {
    eight_writers_lose_nothing_and_never_overdraw;
}
