//! The HTTP API of interchange §4 on both databases: every route for every
//! role, the refusals and malformed requests that change nothing, answers
//! equal to what the CLI prints, the OpenAPI document against the routes it
//! describes; and `bondledger serve` and `bondledger token` through the real
//! binary: the sign-in address printed once, tokens kept only as hashes, a
//! graceful shutdown that finishes the append in flight.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use bondledger_ledger::{Ledger, Role};
use bondledger_tests::{binary, on_both_backends, TestLedger};
use serde_json::{json, Value};
use tower::ServiceExt;

/// Operated and processed by enterprise A.
const MANUAL_A: &str = "C31012600042";
const ENTERPRISE_A: &str = "3101960042";
/// Operated and processed by enterprise B.
const MANUAL_B: &str = "C44032600007";
const ENTERPRISE_B: &str = "4403960007";
/// Operated by B, processed by A: both may touch it.
const MANUAL_C: &str = "C44032600008";
/// Well formed, never issued.
const UNKNOWN_TOKEN: &str = "bl_00000000000000000000000000000000000000000000000000000000000000ff";

fn register(manual: &str, id: &str, enterprise: &str, processing: &str) -> Value {
    json!({"id":id,"type":"manual_registered","manual":manual,"date":"2026-02-01","trade_mode":"purchased",
        "enterprise":enterprise,"processing_enterprise":processing,"valid_until":"2026-12-31",
        "materials":[{"item":1,"hs":"7408110000","name":"精炼铜线","spec":"Φ2.6mm","unit":"千克","qty":"100000"}],
        "products":[{"item":1,"hs":"8544491900","name":"电源线","spec":"3x1.5mm²","unit":"千克","qty":"90000"}]})
}

fn declare(manual: &str, id: &str) -> Value {
    json!({"id":id,"type":"unit_consumption_declared","manual":manual,"date":"2026-02-02","product":1,
        "lines":[{"material":1,"net":"0.8","loss_rate":"0.2"}]})
}

fn import(manual: &str, id: &str, date: &str, qty: &str) -> Value {
    json!({"id":id,"type":"material_imported","manual":manual,"date":date,"material":1,"qty":qty,
        "declaration":"310120261000010001","mode":"0615"})
}

fn export(manual: &str, id: &str, date: &str, qty: &str) -> Value {
    json!({"id":id,"type":"product_exported","manual":manual,"date":date,"product":1,"qty":qty,
        "declaration":"310120261000020001","mode":"0615"})
}

/// One answer: status, headers, and the body as JSON.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
    text: String,
}

impl Answer {
    fn expect(self, status: StatusCode, what: &str) -> Self {
        assert_eq!(self.status, status, "{what}: {}", self.text);
        self
    }

    fn array_len(&self) -> usize {
        self.body.as_array().map_or(0, Vec::len)
    }

    fn next_after(&self) -> Option<i64> {
        self.headers
            .get("x-next-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
    }
}

/// The API in-process over a fresh ledger, with a token of each role.
struct Api {
    admin: String,
    auditor: String,
    recorder_a: String,
    recorder_b: String,
    app: axum::Router,
    runtime: tokio::runtime::Runtime,
    /// Last: the database goes after everything that uses it.
    test: TestLedger,
}

impl Api {
    fn new(test: TestLedger) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        let ledger = runtime
            .block_on(Ledger::open(&test.url))
            .expect("the ledger opens");
        let token = |role: Role, enterprise: Option<&str>| {
            runtime
                .block_on(ledger.create_token(role, enterprise, Some("api test")))
                .expect("a token")
                .secret
        };
        Api {
            admin: token(Role::Admin, None),
            auditor: token(Role::Auditor, None),
            recorder_a: token(Role::Recorder, Some(ENTERPRISE_A)),
            recorder_b: token(Role::Recorder, Some(ENTERPRISE_B)),
            app: bondledger_api::router(ledger),
            runtime,
            test,
        }
    }

    fn send(&self, request: Request<Body>) -> Answer {
        let app = self.app.clone();
        self.runtime.block_on(async move {
            let response = app.oneshot(request).await.expect("the router answers");
            let status = response.status();
            let headers = response.headers().clone();
            // An event stream never ends: its status and headers are the answer.
            let streaming = headers
                .get(header::CONTENT_TYPE)
                .and_then(|value| value.to_str().ok())
                .is_some_and(|value| value.starts_with("text/event-stream"));
            if streaming {
                return Answer {
                    status,
                    headers,
                    body: Value::Null,
                    text: String::new(),
                };
            }
            let bytes = axum::body::to_bytes(response.into_body(), 64 << 20)
                .await
                .expect("a body");
            let text = String::from_utf8_lossy(&bytes).into_owned();
            let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            Answer {
                status,
                headers,
                body,
                text,
            }
        })
    }

    fn request(&self, method: Method, path: &str, token: Option<&str>, body: Body) -> Answer {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        self.send(request.body(body).expect("a request"))
    }

    fn get(&self, path: &str, token: &str) -> Answer {
        self.request(Method::GET, path, Some(token), Body::empty())
    }

    fn post(&self, token: &str, body: &Value) -> Answer {
        self.request(
            Method::POST,
            "/api/v1/movements",
            Some(token),
            Body::from(body.to_string()),
        )
    }

    /// Three manuals: A's, B's, and C (B's, processed by A).
    fn seed(&self) {
        let batch = json!([
            register(MANUAL_A, "a-1", ENTERPRISE_A, ENTERPRISE_A),
            declare(MANUAL_A, "a-2"),
            import(MANUAL_A, "a-3", "2026-02-10", "1000"),
            export(MANUAL_A, "a-4", "2026-03-01", "100"),
            register(MANUAL_B, "b-1", ENTERPRISE_B, ENTERPRISE_B),
            import(MANUAL_B, "b-2", "2026-02-11", "500"),
            register(MANUAL_C, "c-1", ENTERPRISE_B, ENTERPRISE_A),
        ]);
        let answer = self
            .post(&self.admin, &batch)
            .expect(StatusCode::CREATED, "seed");
        assert_eq!(answer.body["appended"].as_array().map(Vec::len), Some(7));
    }

    fn events(&self, manual: &str) -> usize {
        self.get(
            &format!("/api/v1/manuals/{manual}/history?limit=1000"),
            &self.admin,
        )
        .expect(StatusCode::OK, "history")
        .array_len()
    }
}

fn manual_routes(manual: &str) -> Vec<String> {
    vec![
        format!("/api/v1/manuals/{manual}/balance"),
        format!("/api/v1/manuals/{manual}/verification"),
        format!("/api/v1/manuals/{manual}/history"),
        format!("/api/v1/timeline?manual={manual}"),
        format!("/api/v1/audit?manual={manual}"),
    ]
}

// ---- access control --------------------------------------------------------

fn no_or_an_unknown_token_is_401_on_every_route(test: TestLedger) {
    let api = Api::new(test);
    api.seed();
    let mut routes = manual_routes(MANUAL_A);
    routes.extend([
        "/api/v1/manuals".into(),
        "/api/v1/timeline".into(),
        "/api/v1/audit".into(),
    ]);
    let presented: [(&str, Option<String>); 5] = [
        ("no header", None),
        ("an unknown token", Some(format!("Bearer {UNKNOWN_TOKEN}"))),
        ("not a token", Some("Bearer hunter2".into())),
        ("another scheme", Some(format!("Basic {}", api.admin))),
        ("no scheme", Some(api.admin.clone())),
    ];
    for (what, authorization) in &presented {
        let build = |method: Method, path: &str, body: Body| {
            let mut request = Request::builder().method(method).uri(path);
            if let Some(value) = authorization {
                request = request.header(header::AUTHORIZATION, value.as_str());
            }
            request.body(body).expect("a request")
        };
        for path in &routes {
            let answer = api.send(build(Method::GET, path, Body::empty()));
            assert_eq!(
                answer.status,
                StatusCode::UNAUTHORIZED,
                "{what}: GET {path}"
            );
            assert_eq!(answer.body["error"], "unauthorized", "{what}: {path}");
            assert_eq!(
                answer
                    .headers
                    .get(header::WWW_AUTHENTICATE)
                    .map(|v| v.as_bytes()),
                Some(&b"Bearer"[..])
            );
        }
        let body = import(MANUAL_A, "x-401", "2026-03-02", "1").to_string();
        let answer = api.send(build(Method::POST, "/api/v1/movements", Body::from(body)));
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{what}: POST");
    }
    assert_eq!(
        api.events(MANUAL_A),
        4,
        "nothing was appended without a token"
    );
}

fn an_auditor_reads_everything_and_appends_nothing(test: TestLedger) {
    let api = Api::new(test);
    api.seed();
    for manual in [MANUAL_A, MANUAL_B, MANUAL_C] {
        for path in manual_routes(manual) {
            api.get(&path, &api.auditor).expect(StatusCode::OK, &path);
        }
    }
    for path in ["/api/v1/audit", "/api/v1/timeline"] {
        api.get(path, &api.auditor).expect(StatusCode::OK, path);
    }
    let listed = api
        .get("/api/v1/manuals", &api.auditor)
        .expect(StatusCode::OK, "manuals");
    assert_eq!(listed.array_len(), 3);
    let answer = api
        .post(&api.auditor, &import(MANUAL_A, "x-1", "2026-03-02", "1"))
        .expect(StatusCode::FORBIDDEN, "an auditor appends");
    assert_eq!(answer.body["error"], "forbidden");
    assert_eq!(api.events(MANUAL_A), 4, "the auditor appended nothing");
}

fn an_admin_does_everything(test: TestLedger) {
    let api = Api::new(test);
    api.seed();
    for manual in [MANUAL_A, MANUAL_B, MANUAL_C] {
        for path in manual_routes(manual) {
            api.get(&path, &api.admin).expect(StatusCode::OK, &path);
        }
    }
    for path in ["/api/v1/audit", "/api/v1/timeline", "/api/v1/manuals"] {
        api.get(path, &api.admin).expect(StatusCode::OK, path);
    }
    for (manual, id) in [(MANUAL_A, "x-a"), (MANUAL_B, "x-b")] {
        api.post(&api.admin, &import(manual, id, "2026-03-02", "1"))
            .expect(StatusCode::CREATED, manual);
    }
    assert_eq!(api.events(MANUAL_B), 3);
}

fn a_recorder_touches_only_its_enterprise_manuals(test: TestLedger) {
    let api = Api::new(test);
    api.seed();
    // Its own manual, and the one it processes for B.
    for manual in [MANUAL_A, MANUAL_C] {
        for path in manual_routes(manual) {
            api.get(&path, &api.recorder_a)
                .expect(StatusCode::OK, &path);
        }
    }
    for path in manual_routes(MANUAL_B) {
        let answer = api
            .get(&path, &api.recorder_a)
            .expect(StatusCode::FORBIDDEN, &path);
        assert_eq!(answer.body["error"], "forbidden", "{path}");
    }
    let listed = api
        .get("/api/v1/manuals", &api.recorder_a)
        .expect(StatusCode::OK, "manuals");
    let manuals: BTreeSet<&str> = listed
        .body
        .as_array()
        .map(|all| all.iter().filter_map(|m| m["manual"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(manuals, BTreeSet::from([MANUAL_A, MANUAL_C]));
    // Its timeline holds its manuals' events only.
    let timeline = api
        .get("/api/v1/timeline", &api.recorder_a)
        .expect(StatusCode::OK, "timeline");
    let seen: BTreeSet<&str> = timeline
        .body
        .as_array()
        .map(|all| all.iter().filter_map(|e| e["manual"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(seen, BTreeSet::from([MANUAL_A, MANUAL_C]));
    api.get(
        &format!("/api/v1/timeline?enterprise={ENTERPRISE_B}"),
        &api.recorder_a,
    )
    .expect(StatusCode::FORBIDDEN, "another enterprise's timeline");
    api.get("/api/v1/audit", &api.recorder_a)
        .expect(StatusCode::FORBIDDEN, "the whole ledger's audit");

    // Appends: to its own manuals, never to another enterprise's.
    api.post(
        &api.recorder_a,
        &import(MANUAL_A, "ra-1", "2026-03-02", "5"),
    )
    .expect(StatusCode::CREATED, "its own manual");
    api.post(
        &api.recorder_a,
        &import(MANUAL_C, "ra-2", "2026-03-02", "5"),
    )
    .expect(StatusCode::CREATED, "the manual it processes");
    let mixed = json!([
        import(MANUAL_A, "ra-3", "2026-03-03", "5"),
        import(MANUAL_B, "ra-4", "2026-03-03", "5"),
    ]);
    let answer = api.post(&api.recorder_a, &mixed).expect(
        StatusCode::FORBIDDEN,
        "another enterprise's manual in a batch",
    );
    assert_eq!(answer.body["index"], 1, "{}", answer.text);
    assert!(answer.text.contains(MANUAL_B), "{}", answer.text);
    let answer = api
        .post(
            &api.recorder_a,
            &register("C31012600099", "ra-5", ENTERPRISE_B, ENTERPRISE_B),
        )
        .expect(
            StatusCode::FORBIDDEN,
            "registering a manual for another enterprise",
        );
    assert_eq!(answer.body["index"], 0);
    api.post(
        &api.recorder_a,
        &import("C31012600098", "ra-6", "2026-03-03", "5"),
    )
    .expect(StatusCode::FORBIDDEN, "a manual not registered");
    assert_eq!(
        api.events(MANUAL_A),
        5,
        "nothing of the refused batch is kept"
    );
    assert_eq!(api.events(MANUAL_B), 2);
    // A new manual of its own, then movements on it in the same batch.
    let own = json!([
        register("C31012600097", "ra-7", ENTERPRISE_A, ENTERPRISE_A),
        import("C31012600097", "ra-8", "2026-03-03", "5"),
    ]);
    api.post(&api.recorder_a, &own).expect(
        StatusCode::CREATED,
        "a manual of its own, registered in the batch",
    );
    // And B's recorder is kept out of A's.
    api.get(
        &format!("/api/v1/manuals/{MANUAL_A}/balance"),
        &api.recorder_b,
    )
    .expect(StatusCode::FORBIDDEN, "B reads A");
    api.post(
        &api.recorder_b,
        &import(MANUAL_A, "rb-1", "2026-03-03", "5"),
    )
    .expect(StatusCode::FORBIDDEN, "B appends to A");
    api.post(
        &api.recorder_b,
        &import(MANUAL_B, "rb-2", "2026-03-03", "5"),
    )
    .expect(StatusCode::CREATED, "B appends to B");
}

// ---- appending -------------------------------------------------------------

fn a_batch_is_appended_whole_and_in_order(test: TestLedger) {
    let api = Api::new(test);
    let batch = json!([
        register(MANUAL_A, "a-1", ENTERPRISE_A, ENTERPRISE_A),
        declare(MANUAL_A, "a-2"),
        import(MANUAL_A, "a-3", "2026-02-10", "1000"),
    ]);
    let answer = api
        .post(&api.admin, &batch)
        .expect(StatusCode::CREATED, "a batch");
    let appended = answer.body["appended"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let places: Vec<(Value, Value, Value, Value)> = appended
        .iter()
        .map(|a| {
            (
                a["index"].clone(),
                a["id"].clone(),
                a["version"].clone(),
                a["position"].clone(),
            )
        })
        .collect();
    assert_eq!(
        places,
        vec![
            (json!(0), json!("a-1"), json!(1), json!(1)),
            (json!(1), json!("a-2"), json!(2), json!(2)),
            (json!(2), json!("a-3"), json!(3), json!(3)),
        ]
    );
    assert!(appended.iter().all(|a| a["manual"] == MANUAL_A));
    // One movement alone, without an id.
    let mut lone = import(MANUAL_A, "unused", "2026-02-11", "10");
    lone.as_object_mut().map(|line| line.remove("id"));
    let answer = api
        .post(&api.admin, &lone)
        .expect(StatusCode::CREATED, "one movement");
    assert_eq!(answer.body["appended"][0]["id"], Value::Null);
    assert_eq!(answer.body["appended"][0]["version"], 4);
    let balance = api
        .get(&format!("/api/v1/manuals/{MANUAL_A}/balance"), &api.auditor)
        .expect(StatusCode::OK, "balance");
    assert_eq!(balance.body["materials"][0]["balance"], "1010.000000");
}

fn a_refused_movement_leaves_its_whole_batch_out(test: TestLedger) {
    let api = Api::new(test);
    api.seed();
    // 1000 kg in, 100 products out (100 kg); 1200 more products is short.
    let batch = json!([
        export(MANUAL_A, "x-1", "2026-03-02", "100"),
        export(MANUAL_A, "x-2", "2026-03-03", "1200"),
        export(MANUAL_A, "x-3", "2026-03-04", "1"),
    ]);
    let answer = api
        .post(&api.recorder_a, &batch)
        .expect(StatusCode::UNPROCESSABLE_ENTITY, "a refusal");
    assert_eq!(
        answer.body["rule"], "balance.insufficient",
        "{}",
        answer.text
    );
    assert_eq!(answer.body["index"], 1, "{}", answer.text);
    assert!(answer.body["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
    assert!(
        answer.body.get("error").is_none(),
        "a refusal names its rule instead"
    );
    assert_eq!(api.events(MANUAL_A), 4, "nothing of the batch is kept");
    let balance = api
        .get(&format!("/api/v1/manuals/{MANUAL_A}/balance"), &api.admin)
        .expect(StatusCode::OK, "balance");
    assert_eq!(balance.body["materials"][0]["balance"], "900.000000");
}

fn a_malformed_request_names_its_field_and_changes_nothing(test: TestLedger) {
    let api = Api::new(test);
    api.seed();
    let with = |field: &str, value: Value| {
        let mut line = import(MANUAL_A, "m-1", "2026-03-02", "1");
        line[field] = value;
        line
    };
    let cases = [
        ("a number for a decimal", with("qty", json!(5)), Some("qty")),
        (
            "an unknown field",
            with("colour", json!("red")),
            Some("colour"),
        ),
        (
            "an unknown type",
            with("type", json!("teleported")),
            Some("type"),
        ),
        (
            "a bad date",
            with("date", json!("2026-02-30")),
            Some("date"),
        ),
        (
            "a bad manual number",
            with("manual", json!("c-1")),
            Some("manual"),
        ),
        (
            "an item that is a float",
            with("material", json!(1.5)),
            Some("material"),
        ),
    ];
    for (what, line, field) in cases {
        let batch = json!([import(MANUAL_A, "m-0", "2026-03-02", "1"), line]);
        let answer = api
            .post(&api.admin, &batch)
            .expect(StatusCode::BAD_REQUEST, what);
        assert_eq!(answer.body["error"], "malformed", "{what}");
        assert_eq!(
            answer.body["field"].as_str(),
            field,
            "{what}: {}",
            answer.text
        );
        assert_eq!(answer.body["index"], 1, "{what}");
    }
    let raw_cases: [(&str, String); 5] = [
        (
            "truncated JSON",
            r#"[{"type":"material_imported","manual""#.into(),
        ),
        ("not an object", "42".into()),
        ("an array of numbers", "[1, 2]".into()),
        ("an empty body", String::new()),
        (
            "deep nesting",
            format!("{}{}", "[".repeat(5000), "]".repeat(5000)),
        ),
    ];
    for (what, body) in raw_cases {
        let answer = api
            .request(
                Method::POST,
                "/api/v1/movements",
                Some(&api.admin),
                Body::from(body),
            )
            .expect(StatusCode::BAD_REQUEST, what);
        assert_eq!(answer.body["error"], "malformed", "{what}");
    }
    let conflict = json!([import(MANUAL_A, "a-3", "2026-02-10", "999")]);
    let answer = api
        .post(&api.admin, &conflict)
        .expect(StatusCode::BAD_REQUEST, "an id held with other content");
    assert_eq!(answer.body["error"], "id_conflict");
    assert_eq!(answer.body["field"], "id");
    assert_eq!(
        api.events(MANUAL_A),
        4,
        "no malformed request appended anything"
    );
}

fn a_batch_already_held_answers_200(test: TestLedger) {
    let api = Api::new(test);
    api.seed();
    let batch = json!([
        import(MANUAL_A, "h-1", "2026-03-02", "1"),
        import(MANUAL_A, "h-2", "2026-03-03", "1"),
    ]);
    api.post(&api.admin, &batch)
        .expect(StatusCode::CREATED, "first");
    let again = api.post(&api.admin, &batch).expect(StatusCode::OK, "again");
    assert_eq!(again.body["appended"], json!([]));
    let held: Vec<(Value, Value)> = again.body["already_held"]
        .as_array()
        .map(|all| {
            all.iter()
                .map(|h| (h["id"].clone(), h["version"].clone()))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        held,
        vec![(json!("h-1"), json!(5)), (json!("h-2"), json!(6))]
    );
    let mixed = json!([
        import(MANUAL_A, "h-2", "2026-03-03", "1"),
        import(MANUAL_A, "h-3", "2026-03-04", "1"),
    ]);
    let answer = api
        .post(&api.admin, &mixed)
        .expect(StatusCode::CREATED, "mixed");
    assert_eq!(answer.body["appended"][0]["id"], "h-3");
    assert_eq!(answer.body["already_held"][0]["id"], "h-2");
    assert_eq!(api.events(MANUAL_A), 7);
}

fn bodies_and_batches_over_their_limits_are_413(test: TestLedger) {
    let api = Api::new(test);
    api.seed();
    let too_many: Vec<Value> = (0..=bondledger_api::MAX_BATCH_MOVEMENTS)
        .map(|n| import(MANUAL_A, &format!("l-{n}"), "2026-03-02", "1"))
        .collect();
    let answer = api
        .post(&api.admin, &Value::Array(too_many))
        .expect(StatusCode::PAYLOAD_TOO_LARGE, "a batch too large");
    assert_eq!(answer.body["error"], "too_large");
    let huge = format!("[\"{}\"]", "x".repeat(bondledger_api::MAX_BODY_BYTES));
    let answer = api
        .request(
            Method::POST,
            "/api/v1/movements",
            Some(&api.admin),
            Body::from(huge),
        )
        .expect(StatusCode::PAYLOAD_TOO_LARGE, "a body too large");
    assert_eq!(answer.body["error"], "too_large");
    assert_eq!(api.events(MANUAL_A), 4);
}

// ---- reading ---------------------------------------------------------------

fn answers_equal_what_the_cli_prints(test: TestLedger) {
    let api = Api::new(test);
    api.seed();
    let cli = |args: &[&str]| api.test.json(args);
    let pairs: Vec<(String, Vec<&str>)> = vec![
        (
            format!("/api/v1/manuals/{MANUAL_A}/balance"),
            vec!["balance", MANUAL_A],
        ),
        (
            format!("/api/v1/manuals/{MANUAL_A}/balance?as_of_position=2"),
            vec!["balance", MANUAL_A, "--as-of-position", "2"],
        ),
        (
            format!("/api/v1/manuals/{MANUAL_A}/balance?as_of_date=2026-02-28"),
            vec!["balance", MANUAL_A, "--as-of-date", "2026-02-28"],
        ),
        (
            format!("/api/v1/manuals/{MANUAL_A}/verification"),
            vec!["verify", MANUAL_A],
        ),
        (
            format!("/api/v1/manuals/{MANUAL_A}/verification?as_of_position=3"),
            vec!["verify", MANUAL_A, "--as-of-position", "3"],
        ),
        (
            format!("/api/v1/manuals/{MANUAL_A}/history?limit=1000"),
            vec!["history", MANUAL_A],
        ),
        (
            format!("/api/v1/manuals/{MANUAL_A}/history?as_of_date=2026-02-10&limit=1000"),
            vec!["history", MANUAL_A, "--as-of-date", "2026-02-10"],
        ),
        ("/api/v1/timeline?limit=1000".into(), vec!["timeline"]),
        (
            format!("/api/v1/timeline?enterprise={ENTERPRISE_B}&limit=1000"),
            vec!["timeline", "--enterprise", ENTERPRISE_B],
        ),
        (
            "/api/v1/timeline?hs=7408&from=2026-02-10&to=2026-02-28".into(),
            vec![
                "timeline",
                "--hs",
                "7408",
                "--from",
                "2026-02-10",
                "--to",
                "2026-02-28",
            ],
        ),
        (
            "/api/v1/timeline?declaration=310120261000020001".into(),
            vec!["timeline", "--declaration", "310120261000020001"],
        ),
    ];
    for (path, args) in pairs {
        let answer = api.get(&path, &api.auditor).expect(StatusCode::OK, &path);
        assert_eq!(
            answer.body,
            cli(&args),
            "{path} answers as `bondledger {}`",
            args.join(" ")
        );
    }
    // A later request, then the manual as the ledger held it before.
    api.post(&api.admin, &import(MANUAL_A, "a-5", "2026-03-10", "50"))
        .expect(StatusCode::CREATED, "a later import");
    let history = api.test.json(&["history", MANUAL_A]);
    let seeded = history[3]["recorded_at"]
        .as_str()
        .expect("recorded_at")
        .to_owned();
    let path = format!(
        "/api/v1/manuals/{MANUAL_A}/balance?as_of_recorded={}",
        seeded.replace('+', "%2B")
    );
    let answer = api.get(&path, &api.admin).expect(StatusCode::OK, &path);
    assert_eq!(
        answer.body,
        cli(&["balance", MANUAL_A, "--as-of-recorded", &seeded])
    );
    assert_eq!(answer.body["materials"][0]["balance"], "900.000000");
    let now = api
        .get(&format!("/api/v1/manuals/{MANUAL_A}/balance"), &api.admin)
        .expect(StatusCode::OK, "now");
    assert_eq!(now.body["materials"][0]["balance"], "950.000000");
}

fn unknown_manuals_are_404(test: TestLedger) {
    let api = Api::new(test);
    api.seed();
    for token in [&api.admin, &api.auditor, &api.recorder_a] {
        for part in ["balance", "verification", "history"] {
            for manual in ["C99999999999", "not-a-manual"] {
                let path = format!("/api/v1/manuals/{manual}/{part}");
                let answer = api.get(&path, token).expect(StatusCode::NOT_FOUND, &path);
                assert_eq!(answer.body["error"], "not_found");
            }
        }
    }
    // Before its registration's date, a manual did not exist yet.
    api.get(
        &format!("/api/v1/manuals/{MANUAL_A}/balance?as_of_date=2026-01-01"),
        &api.admin,
    )
    .expect(StatusCode::NOT_FOUND, "before the registration");
    api.get("/api/v1/audit?manual=C99999999999", &api.admin)
        .expect(StatusCode::NOT_FOUND, "audit of no manual");
}

fn malformed_queries_are_400(test: TestLedger) {
    let api = Api::new(test);
    api.seed();
    let balance = format!("/api/v1/manuals/{MANUAL_A}/balance");
    let history = format!("/api/v1/manuals/{MANUAL_A}/history");
    let cases = [
        (format!("{balance}?as_of_position=two"), None),
        (
            format!("{balance}?as_of_position=-1"),
            Some("as_of_position"),
        ),
        (
            format!("{balance}?as_of_date=2026-02-30"),
            Some("as_of_date"),
        ),
        (
            format!("{balance}?as_of_recorded=yesterday"),
            Some("as_of_recorded"),
        ),
        (
            format!("{balance}?as_of_position=1&as_of_date=2026-02-01"),
            None,
        ),
        (format!("{balance}?as_of_postion=1"), None),
        (
            format!("/api/v1/manuals/{MANUAL_A}/verification?tolerance=much"),
            Some("tolerance"),
        ),
        (format!("{history}?limit=0"), Some("limit")),
        (format!("{history}?after=-5"), Some("after")),
        ("/api/v1/timeline?hs=74a".to_owned(), Some("hs")),
        ("/api/v1/timeline?from=March".to_owned(), Some("from")),
        ("/api/v1/timeline?colour=red".to_owned(), None),
    ];
    for (path, field) in cases {
        let answer = api
            .get(&path, &api.admin)
            .expect(StatusCode::BAD_REQUEST, &path);
        assert_eq!(answer.body["error"], "malformed", "{path}");
        assert_eq!(
            answer.body["field"].as_str(),
            field,
            "{path}: {}",
            answer.text
        );
    }
}

fn history_and_timeline_come_in_pages(test: TestLedger) {
    let api = Api::new(test);
    api.seed();
    let batch: Vec<Value> = (0..7)
        .map(|n| import(MANUAL_A, &format!("p-{n}"), "2026-03-05", "1"))
        .collect();
    api.post(&api.admin, &Value::Array(batch))
        .expect(StatusCode::CREATED, "more");
    let pages = |base: &str, key: &str| -> (Vec<Value>, usize) {
        let mut all = Vec::new();
        let mut after = 0;
        let mut count = 0;
        loop {
            let separator = if base.contains('?') { '&' } else { '?' };
            let path = format!("{base}{separator}limit=3&after={after}");
            let answer = api.get(&path, &api.auditor).expect(StatusCode::OK, &path);
            count += 1;
            assert!(
                answer.array_len() <= 3,
                "{path}: a page holds at most its limit"
            );
            let last = answer
                .body
                .as_array()
                .and_then(|a| a.last())
                .map(|e| e[key].clone());
            all.extend(answer.body.as_array().cloned().unwrap_or_default());
            match answer.next_after() {
                Some(next) => {
                    assert_eq!(
                        last,
                        Some(json!(next)),
                        "{path}: the next page follows the last entry"
                    );
                    after = next;
                }
                None => break,
            }
            assert!(count < 20, "paging ends");
        }
        (all, count)
    };
    let (history, count) = pages(&format!("/api/v1/manuals/{MANUAL_A}/history"), "version");
    assert_eq!(count, 4, "11 events in pages of 3");
    assert_eq!(Value::Array(history), api.test.json(&["history", MANUAL_A]));
    let (timeline, _) = pages("/api/v1/timeline", "position");
    assert_eq!(Value::Array(timeline), api.test.json(&["timeline"]));
    let capped = api
        .get(
            &format!("/api/v1/manuals/{MANUAL_A}/history?limit=1000000"),
            &api.admin,
        )
        .expect(StatusCode::OK, "a limit over the cap is cut to it");
    assert_eq!(capped.array_len(), 11);
}

fn the_audit_finds_a_break(test: TestLedger) {
    let api = Api::new(test);
    api.seed();
    let answer = api
        .get("/api/v1/audit", &api.auditor)
        .expect(StatusCode::OK, "audit");
    assert_eq!(answer.body, json!({"intact": true, "breaks": []}));
    api.test
        .execute_sql(&format!(
            "UPDATE rm_balances SET balance = '1.000000' WHERE manual = '{MANUAL_B}'"
        ))
        .expect("a read model row is tampered with");
    let answer = api
        .get("/api/v1/audit", &api.auditor)
        .expect(StatusCode::OK, "audit");
    assert_eq!(answer.body["intact"], false, "{}", answer.text);
    let breaks = answer.body["breaks"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        breaks
            .iter()
            .any(|b| b["kind"] == "projection" && b["manual"] == MANUAL_B),
        "{breaks:?}"
    );
    let one = api
        .get(&format!("/api/v1/audit?manual={MANUAL_A}"), &api.recorder_a)
        .expect(StatusCode::OK, "A's audit");
    assert_eq!(
        one.body["intact"], true,
        "A's manual is intact: {}",
        one.text
    );
}

fn readers_and_writers_at_once_all_get_answers(test: TestLedger) {
    let api = Api::new(test);
    api.seed();
    let requests: Vec<Request<Body>> = (0..6)
        .flat_map(|n| {
            let manual = format!("C3101260010{n}");
            let batch = json!([
                register(&manual, &format!("k-{n}-1"), ENTERPRISE_A, ENTERPRISE_A),
                import(&manual, &format!("k-{n}-2"), "2026-02-10", "10"),
            ]);
            let post = Request::post("/api/v1/movements")
                .header(header::AUTHORIZATION, format!("Bearer {}", api.recorder_a))
                .body(Body::from(batch.to_string()));
            let manuals = Request::get("/api/v1/manuals")
                .header(header::AUTHORIZATION, format!("Bearer {}", api.auditor))
                .body(Body::empty());
            let timeline = Request::get("/api/v1/timeline?limit=1000")
                .header(header::AUTHORIZATION, format!("Bearer {}", api.auditor))
                .body(Body::empty());
            [post, manuals, timeline]
        })
        .map(|request| request.expect("a request"))
        .collect();
    let statuses: Vec<StatusCode> = api.runtime.block_on(async {
        let handles: Vec<_> = requests
            .into_iter()
            .map(|request| tokio::spawn(api.app.clone().oneshot(request)))
            .collect();
        let mut statuses = Vec::new();
        for handle in handles {
            let response = handle.await.expect("joined").expect("answered");
            statuses.push(response.status());
        }
        statuses
    });
    assert!(statuses.iter().all(StatusCode::is_success), "{statuses:?}");
    let listed = api
        .get("/api/v1/manuals", &api.auditor)
        .expect(StatusCode::OK, "manuals");
    assert_eq!(listed.array_len(), 9, "3 seeded and 6 appended at once");
}

fn unknown_routes_and_methods_answer_in_json(test: TestLedger) {
    let api = Api::new(test);
    let answer = api
        .get("/api/v1/nothing", &api.admin)
        .expect(StatusCode::NOT_FOUND, "route");
    assert_eq!(answer.body["error"], "not_found");
    let answer = api
        .request(
            Method::DELETE,
            "/api/v1/movements",
            Some(&api.admin),
            Body::empty(),
        )
        .expect(StatusCode::METHOD_NOT_ALLOWED, "method");
    assert_eq!(answer.body["error"], "method_not_allowed");
    let health = api
        .request(Method::GET, "/healthz", None, Body::empty())
        .expect(StatusCode::OK, "liveness needs no token");
    assert_eq!(health.body, json!({"status": "ok"}));
}

// ---- the OpenAPI document --------------------------------------------------

/// The routes of interchange §4, by path and method.
fn contract_routes() -> BTreeMap<String, BTreeSet<String>> {
    let get = |path: &str| (path.to_owned(), BTreeSet::from(["get".to_owned()]));
    BTreeMap::from([
        (
            "/api/v1/movements".to_owned(),
            BTreeSet::from(["post".to_owned()]),
        ),
        get("/api/v1/manuals"),
        get("/api/v1/manuals/{manual}/balance"),
        get("/api/v1/manuals/{manual}/verification"),
        get("/api/v1/manuals/{manual}/history"),
        get("/api/v1/timeline"),
        get("/api/v1/audit"),
        get("/api/v1/deadlines"),
        get("/api/v1/events"),
        get("/api/v1/openapi.json"),
        get("/healthz"),
    ])
}

fn documented_routes(document: &Value) -> BTreeMap<String, BTreeSet<String>> {
    let methods = [
        "get", "put", "post", "delete", "patch", "head", "options", "trace",
    ];
    document["paths"]
        .as_object()
        .map(|paths| {
            paths
                .iter()
                .map(|(path, item)| {
                    let verbs = methods
                        .iter()
                        .filter(|m| item.get(**m).is_some())
                        .map(|m| (*m).to_owned())
                        .collect();
                    (path.clone(), verbs)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Problems of `value` against a schema of the document: missing required
/// properties, wrong types, properties a closed schema does not list.
fn conform(document: &Value, schema: &Value, value: &Value, at: &str, problems: &mut Vec<String>) {
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        let name = reference.trim_start_matches("#/components/schemas/");
        let target = &document["components"]["schemas"][name];
        if target.is_null() {
            problems.push(format!("{at}: {reference} resolves to nothing"));
        } else {
            conform(document, target, value, at, problems);
        }
        return;
    }
    if let Some(options) = schema.get("oneOf").and_then(Value::as_array) {
        let matching = options
            .iter()
            .filter(|option| {
                let mut found = Vec::new();
                conform(document, option, value, at, &mut found);
                found.is_empty()
            })
            .count();
        if matching != 1 {
            problems.push(format!("{at}: matches {matching} of oneOf, not 1"));
        }
        return;
    }
    let types: Vec<&str> = match schema.get("type") {
        Some(Value::String(one)) => vec![one.as_str()],
        Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let is = |kind: &str| match kind {
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        "null" => value.is_null(),
        _ => false,
    };
    if !types.is_empty() && !types.iter().any(|kind| is(kind)) {
        problems.push(format!("{at}: {value} is not {types:?}"));
        return;
    }
    match value {
        Value::Object(object) => {
            for required in schema["required"].as_array().into_iter().flatten() {
                let name = required.as_str().unwrap_or_default();
                if !object.contains_key(name) {
                    problems.push(format!("{at}: `{name}` is required"));
                }
            }
            let closed = schema.get("additionalProperties") == Some(&Value::Bool(false));
            for (key, field) in object {
                match schema["properties"].get(key) {
                    Some(property) => {
                        conform(document, property, field, &format!("{at}.{key}"), problems)
                    }
                    None if closed => problems.push(format!("{at}: `{key}` is not documented")),
                    None => {}
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (index, item) in items.iter().enumerate() {
                    conform(
                        document,
                        item_schema,
                        item,
                        &format!("{at}[{index}]"),
                        problems,
                    );
                }
            }
        }
        _ => {}
    }
}

fn every_ref(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(object) => {
            for (key, inner) in object {
                match (key.as_str(), inner) {
                    ("$ref", Value::String(reference)) => found.push(reference.clone()),
                    _ => every_ref(inner, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| every_ref(item, found)),
        _ => {}
    }
}

fn the_openapi_document_is_valid_and_covers_every_route(test: TestLedger) {
    let api = Api::new(test);
    api.seed();
    let answer = api
        .request(Method::GET, "/api/v1/openapi.json", None, Body::empty())
        .expect(StatusCode::OK, "the document needs no token");
    let document = answer.body.clone();
    oas3::from_json(&answer.text).expect("the document parses as OpenAPI 3.1");
    assert!(
        document["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.")),
        "{}",
        document["openapi"]
    );
    assert!(document["info"]["title"].is_string() && document["info"]["version"].is_string());
    assert_eq!(
        documented_routes(&document),
        contract_routes(),
        "every route, no other"
    );
    assert_eq!(
        document,
        serde_json::to_value(bondledger_api::openapi()).expect("json")
    );

    let mut references = Vec::new();
    every_ref(&document, &mut references);
    assert!(!references.is_empty());
    for reference in references {
        let name = reference.trim_start_matches("#/components/schemas/");
        assert!(
            document["components"]["schemas"].get(name).is_some(),
            "{reference} resolves"
        );
    }
    let mut operation_ids = BTreeSet::new();
    for (path, methods) in documented_routes(&document) {
        for method in methods {
            let operation = &document["paths"][&path][&method];
            let id = operation["operationId"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            assert!(
                operation_ids.insert(id),
                "{method} {path}: a unique operationId"
            );
            let documented: BTreeSet<String> = operation["responses"]
                .as_object()
                .map(|r| r.keys().cloned().collect())
                .unwrap_or_default();
            let url = path.replace("{manual}", MANUAL_A);
            let answer = match method.as_str() {
                "post" => api.post(
                    &api.admin,
                    &json!([import(MANUAL_A, "o-1", "2026-03-02", "1")]),
                ),
                _ => api.get(&url, &api.admin),
            };
            assert_ne!(
                answer.status,
                StatusCode::NOT_FOUND,
                "{method} {path} answers"
            );
            assert!(
                documented.contains(answer.status.as_str()),
                "{method} {path}: {} is documented ({documented:?})",
                answer.status
            );
            let schema = &operation["responses"][answer.status.as_str()]["content"]
                ["application/json"]["schema"];
            let mut problems = Vec::new();
            conform(
                &document,
                schema,
                &answer.body,
                &format!("{method} {path}"),
                &mut problems,
            );
            assert!(problems.is_empty(), "{problems:#?}\n{}", answer.text);
            // Every error documented for the route is answered in its shape too.
            let unauthorized = api.request(
                Method::from_bytes(method.to_uppercase().as_bytes()).expect("a method"),
                &url,
                Some(UNKNOWN_TOKEN),
                Body::from("[]"),
            );
            if operation.get("security") != Some(&json!([{}])) {
                assert_eq!(
                    unauthorized.status,
                    StatusCode::UNAUTHORIZED,
                    "{method} {path}"
                );
                let schema =
                    &operation["responses"]["401"]["content"]["application/json"]["schema"];
                let mut problems = Vec::new();
                conform(&document, schema, &unauthorized.body, &path, &mut problems);
                assert!(problems.is_empty(), "{problems:#?}");
            }
        }
    }
    // The shapes of a refusal and of a malformed batch.
    let movements = &document["paths"]["/api/v1/movements"]["post"]["responses"];
    let refusal = api.post(&api.admin, &export(MANUAL_A, "o-2", "2026-03-03", "99999"));
    let malformed = api.post(&api.admin, &json!({"type": "material_imported"}));
    for (answer, status) in [(refusal, "422"), (malformed, "400")] {
        assert_eq!(answer.status.as_str(), status, "{}", answer.text);
        let mut problems = Vec::new();
        let schema = &movements[status]["content"]["application/json"]["schema"];
        conform(&document, schema, &answer.body, status, &mut problems);
        assert!(problems.is_empty(), "{problems:#?}");
    }
}

// ---- the binary: serve and token -------------------------------------------

/// A request over a plain socket, as any client would send it.
fn http(address: &str, method: &str, path: &str, token: Option<&str>, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(address).expect("the server takes connections");
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .expect("a timeout");
    let authorization = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n{authorization}\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("the request is sent");
    read_answer(stream)
}

fn read_answer(mut stream: TcpStream) -> (u16, String) {
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("an answer");
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// `bondledger serve` on a free port, and the first line it prints.
struct Server {
    child: Child,
    first_line: String,
    address: String,
}

impl Server {
    fn start(test: &TestLedger, log: &str) -> Server {
        let log_file = std::fs::File::create(test.dir.path().join(log)).expect("a log file");
        let mut child = Command::new(binary())
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--database-url",
                &test.url,
            ])
            .current_dir(test.dir.path())
            .env_remove("BONDLEDGER_DATABASE_URL")
            .env("BONDLEDGER_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .expect("the binary starts");
        let stdout = child.stdout.take().expect("stdout");
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = sender.send(line);
        });
        let first_line = receiver
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_default();
        let address = first_line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split(['/', ' ', '\n']).next())
            .unwrap_or_default()
            .to_owned();
        assert!(
            !address.is_empty(),
            "serve printed an address: {first_line:?}"
        );
        Server {
            child,
            first_line,
            address,
        }
    }

    fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// Waits for the server to stop by itself; its exit status.
    fn wait(mut self) -> Option<i32> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the server did not stop");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn serve_signs_in_once_and_finishes_the_append_in_flight(test: TestLedger) {
    let server = Server::start(&test, "serve-1.log");
    let token = server
        .first_line
        .split("?token=")
        .nth(1)
        .map(str::trim)
        .unwrap_or_default()
        .to_owned();
    assert!(
        token.starts_with("bl_"),
        "a sign-in address with a token: {:?}",
        server.first_line
    );
    let address = server.address.clone();
    let (status, body) = http(&address, "GET", "/healthz", None, "");
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));
    let (status, _) = http(&address, "GET", "/api/v1/manuals", None, "");
    assert_eq!(status, 401);
    let registration = json!([register(MANUAL_A, "s-0", ENTERPRISE_A, ENTERPRISE_A)]).to_string();
    let (status, body) = http(
        &address,
        "POST",
        "/api/v1/movements",
        Some(&token),
        &registration,
    );
    assert_eq!(status, 201, "{body}");

    // The biggest batch there is, then the signal while it is being appended.
    let batch: Vec<Value> = (0..bondledger_api::MAX_BATCH_MOVEMENTS)
        .map(|n| import(MANUAL_A, &format!("s-{}", n + 1), "2026-02-10", "1"))
        .collect();
    let body = Value::Array(batch).to_string();
    let mut stream = TcpStream::connect(&address).expect("connects");
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .expect("a timeout");
    write!(
        stream,
        "POST /api/v1/movements HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\
         Authorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("sent");
    std::thread::sleep(Duration::from_millis(200));
    server.terminate();
    let (status, answer) = read_answer(stream);
    assert_eq!(status, 201, "the append in flight finished: {answer}");
    let answer: Value = serde_json::from_str(&answer).expect("JSON");
    assert_eq!(
        answer["appended"].as_array().map(Vec::len),
        Some(bondledger_api::MAX_BATCH_MOVEMENTS)
    );
    assert_eq!(server.wait(), Some(0), "a clean exit after the signal");
    // The log shows the signal came while the batch was being appended.
    let log = std::fs::read_to_string(test.dir.path().join("serve-1.log")).expect("the log");
    let signalled = log.find("shutting down").expect("the signal is logged");
    let finished = log
        .rfind("finished processing request")
        .expect("requests are logged");
    assert!(
        signalled < finished,
        "the batch was in flight at the signal:\n{log}"
    );
    let history = test.json(&["history", MANUAL_A]);
    assert_eq!(
        history.as_array().map(Vec::len),
        Some(bondledger_api::MAX_BATCH_MOVEMENTS + 1)
    );

    // Started again, it has a token already: no new sign-in address.
    let again = Server::start(&test, "serve-2.log");
    assert!(
        !again.first_line.contains("token"),
        "{:?}",
        again.first_line
    );
    let (status, _) = http(&again.address, "GET", "/api/v1/manuals", Some(&token), "");
    assert_eq!(status, 200, "the first token still signs in");
    again.terminate();
    assert_eq!(again.wait(), Some(0));
    assert_eq!(test.count("SELECT COUNT(*) FROM access_tokens"), 1);
}

fn tokens_are_printed_once_and_kept_as_hashes(test: TestLedger) {
    let output = test.run(&[
        "token",
        "create",
        "--role",
        "recorder",
        "--enterprise",
        ENTERPRISE_A,
        "--label",
        "line 2",
    ]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let secret = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    assert!(secret.starts_with("bl_") && secret.len() == 67, "{secret}");
    let hash = bondledger_ledger::access::token_hash(&secret);
    assert_eq!(
        test.count(&format!(
            "SELECT COUNT(*) FROM access_tokens WHERE hash = '{hash}' AND role = 'recorder' \
             AND enterprise = '{ENTERPRISE_A}' AND label = 'line 2'"
        )),
        1,
        "the token is kept by its hash"
    );
    let hex = &secret[3..];
    assert_eq!(
        test.count(&format!(
            "SELECT COUNT(*) FROM access_tokens WHERE (id || hash || role || COALESCE(enterprise, '') \
             || COALESCE(label, '') || created_at) LIKE '%{hex}%'"
        )),
        0,
        "the secret is nowhere in the database"
    );
    let json_output = test.json(&["token", "create", "--role", "auditor"]);
    assert!(json_output["token"]
        .as_str()
        .is_some_and(|t| t.starts_with("bl_")));
    assert_eq!(json_output["role"], "auditor");
    assert_eq!(json_output["enterprise"], Value::Null);
    for refused in [
        vec!["token", "create", "--role", "recorder"],
        vec![
            "token",
            "create",
            "--role",
            "recorder",
            "--enterprise",
            "not a code",
        ],
        vec![
            "token",
            "create",
            "--role",
            "admin",
            "--enterprise",
            ENTERPRISE_A,
        ],
        vec!["token", "create", "--role", "owner"],
    ] {
        test.expect(&refused, 2);
    }
    assert_eq!(test.count("SELECT COUNT(*) FROM access_tokens"), 2);

    // The printed token signs in, with its role.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let ledger = runtime.block_on(Ledger::open(&test.url)).expect("opens");
    let principal = runtime
        .block_on(ledger.authenticate(&secret))
        .expect("looked up")
        .expect("known");
    assert_eq!(principal.role, Role::Recorder);
    assert_eq!(principal.enterprise.as_deref(), Some(ENTERPRISE_A));
    let mut wrong = secret.clone();
    wrong.replace_range(10..11, if &secret[10..11] == "0" { "1" } else { "0" });
    assert!(runtime
        .block_on(ledger.authenticate(&wrong))
        .expect("looked up")
        .is_none());
}

on_both_backends! {
    no_or_an_unknown_token_is_401_on_every_route;
    an_auditor_reads_everything_and_appends_nothing;
    an_admin_does_everything;
    a_recorder_touches_only_its_enterprise_manuals;
    a_batch_is_appended_whole_and_in_order;
    a_refused_movement_leaves_its_whole_batch_out;
    a_malformed_request_names_its_field_and_changes_nothing;
    a_batch_already_held_answers_200;
    bodies_and_batches_over_their_limits_are_413;
    answers_equal_what_the_cli_prints;
    unknown_manuals_are_404;
    malformed_queries_are_400;
    history_and_timeline_come_in_pages;
    the_audit_finds_a_break;
    readers_and_writers_at_once_all_get_answers;
    unknown_routes_and_methods_answer_in_json;
    the_openapi_document_is_valid_and_covers_every_route;
    serve_signs_in_once_and_finishes_the_append_in_flight;
    tokens_are_printed_once_and_kept_as_hashes;
}
