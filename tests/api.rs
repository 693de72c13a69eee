//! The HTTP API of interchange §4 on both databases: every route for every
//! role, the refusals and malformed requests that change nothing, answers
//! equal to what the CLI prints, the OpenAPI document against the routes it
//! describes; and `bondledger serve` and `bondledger token` through the real
//! binary: the sign-in address printed once, tokens kept only as hashes, a
//! graceful shutdown that finishes the append in flight.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use bondledger_ledger::{Ledger, Role};
use bondledger_tests::{on_both_backends, Server, TestLedger};
use rust_decimal::Decimal;
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

    /// One more auditor's token, for a request that revokes it.
    fn auditor_to_revoke(&self) -> bondledger_ledger::IssuedToken {
        self.runtime
            .block_on(async {
                let ledger = Ledger::open(&self.test.url).await?;
                ledger
                    .create_token(Role::Auditor, None, Some("to revoke"))
                    .await
            })
            .expect("a token to revoke")
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

/// A batch longer than a chunk is decided chunk by chunk, each while the
/// one before it is written: a movement repeated from the chunk being
/// written, a reversal of one of its movements and of one written earlier,
/// and a refusal in the last chunk all come out as they would one by one.
fn a_long_batch_is_decided_while_its_earlier_chunks_are_written(test: TestLedger) {
    let api = Api::new(test);
    api.seed();
    let material_balance = |api: &Api| -> Decimal {
        let answer = api
            .get(&format!("/api/v1/manuals/{MANUAL_A}/balance"), &api.admin)
            .expect(StatusCode::OK, "balance");
        answer.body["materials"][0]["balance"]
            .as_str()
            .and_then(|text| text.parse().ok())
            .expect("a balance")
    };
    let reversal = |id: &str, of: &str| json!({"id":id,"type":"reversed","manual":MANUAL_A,"date":"2026-03-06","event":of,"reason":"录入错误"});
    let line = |n: usize| import(MANUAL_A, &format!("l-{n}"), "2026-03-05", "1");
    // The first chunk: l-0 … l-1999 (versions 5 … 2004 of the manual).
    let mut batch: Vec<Value> = (0..2_000).map(line).collect();
    // The second: l-1999 again, a reversal of l-1998, l-2000 twice.
    batch.extend([
        line(1_999),
        reversal("v-1", "l-1998"),
        line(2_000),
        line(2_000),
    ]);
    batch.extend((2_001..4_000).map(line));
    // The third: a reversal of l-10, long written.
    batch.push(reversal("v-2", "l-10"));
    batch.extend((4_000..4_500).map(line));
    let before = material_balance(&api);
    let answer = api
        .post(&api.admin, &Value::Array(batch.clone()))
        .expect(StatusCode::CREATED, "a long batch");
    let appended = answer.body["appended"].as_array().expect("appended");
    assert_eq!(appended.len(), 4_502, "4,500 imports and 2 reversals");
    let position_of = |id: &str| {
        appended
            .iter()
            .find(|movement| movement["id"] == id)
            .map(|movement| (movement["version"].clone(), movement["position"].clone()))
            .expect("appended")
    };
    assert_eq!(position_of("l-1999").0, json!(2_004));
    assert_eq!(position_of("v-1").0, json!(2_005));
    assert_eq!(position_of("l-2000").0, json!(2_006));
    let held: Vec<(Value, (Value, Value))> = answer.body["already_held"]
        .as_array()
        .expect("already held")
        .iter()
        .map(|h| {
            (
                h["id"].clone(),
                (h["version"].clone(), h["position"].clone()),
            )
        })
        .collect();
    assert_eq!(
        held,
        vec![
            (json!("l-1999"), position_of("l-1999")),
            (json!("l-2000"), position_of("l-2000")),
        ],
        "a repeat is listed with the version and position of what it repeats"
    );
    let after = material_balance(&api);
    assert_eq!(after - before, Decimal::from(4_498), "two imports reversed");

    // Once more, and the last movement refused: nothing of it is kept.
    let mut again: Vec<Value> = (10_000..14_000).map(line).collect();
    again.push(export(MANUAL_A, "x-1", "2026-03-07", "1000000"));
    let answer = api
        .post(&api.admin, &Value::Array(again))
        .expect(StatusCode::UNPROCESSABLE_ENTITY, "a refusal at the end");
    assert_eq!(answer.body["index"], 4_000, "{}", answer.text);
    assert_eq!(material_balance(&api), after, "nothing of it is kept");
    let repeated = api
        .post(&api.admin, &Value::Array(batch))
        .expect(StatusCode::OK, "the first batch again");
    assert_eq!(repeated.body["appended"], json!([]));
    assert_eq!(
        repeated.body["already_held"].as_array().map(Vec::len),
        Some(4_504)
    );
    assert_eq!(material_balance(&api), after);
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
    // An HS prefix read code by code, a few candidates at a time, with a
    // filter that passes over most of them: pages still hold every match.
    let later: Vec<Value> = (0..5)
        .map(|n| import(MANUAL_A, &format!("p-late-{n}"), "2026-03-06", "1"))
        .collect();
    api.post(&api.admin, &Value::Array(later))
        .expect(StatusCode::CREATED, "later");
    let (matching, _) = pages("/api/v1/timeline?hs=7408&from=2026-03-06", "position");
    assert_eq!(matching.len(), 5);
    assert_eq!(
        Value::Array(matching),
        api.test
            .json(&["timeline", "--hs", "7408", "--from", "2026-03-06"])
    );
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
        (
            "/api/v1/tokens".to_owned(),
            BTreeSet::from(["get".to_owned(), "post".to_owned()]),
        ),
        (
            "/api/v1/tokens/{id}".to_owned(),
            BTreeSet::from(["delete".to_owned()]),
        ),
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
    let victim = api.auditor_to_revoke();
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
            let url = path
                .replace("{manual}", MANUAL_A)
                .replace("{id}", &victim.principal.token_id);
            let answer = match (method.as_str(), path.as_str()) {
                ("post", "/api/v1/movements") => api.post(
                    &api.admin,
                    &json!([import(MANUAL_A, "o-1", "2026-03-02", "1")]),
                ),
                ("post", _) => api.request(
                    Method::POST,
                    &url,
                    Some(&api.admin),
                    Body::from(json!({"role": "auditor"}).to_string()),
                ),
                ("delete", _) => api.request(Method::DELETE, &url, Some(&api.admin), Body::empty()),
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

/// History pages start from the latest snapshot before them and stop when
/// full; what they hold equals a replay from the start, as of any point.
fn history_pages_from_snapshots_equal_a_whole_replay(test: TestLedger) {
    let server = Server::start_with_env(
        &test,
        &[],
        &[("BONDLEDGER_SNAPSHOT_EVERY", "4")],
        "serve-snapshots.log",
    );
    let token = server.sign_in_token().expect("a sign-in token").to_owned();
    let http = reqwest::blocking::Client::new();
    let mut movements = vec![
        register(MANUAL_A, "h-0", ENTERPRISE_A, ENTERPRISE_A),
        declare(MANUAL_A, "h-1"),
    ];
    for n in 0..26 {
        let date = format!("2026-03-{:02}", 2 + n % 20);
        movements.push(if n % 3 == 2 {
            export(MANUAL_A, &format!("h-{}", n + 2), &date, "5")
        } else {
            import(MANUAL_A, &format!("h-{}", n + 2), &date, "20")
        });
    }
    let appended = http
        .post(server.url("/api/v1/movements"))
        .bearer_auth(&token)
        .json(&movements)
        .send()
        .expect("appended");
    assert_eq!(appended.status(), 201);
    for (query, flags) in [
        ("", vec![]),
        ("as_of_position=17", vec!["--as-of-position", "17"]),
        ("as_of_date=2026-03-09", vec!["--as-of-date", "2026-03-09"]),
    ] {
        let mut paged = Vec::new();
        let mut after = 0;
        loop {
            let url = server.url(&format!(
                "/api/v1/manuals/{MANUAL_A}/history?limit=5&after={after}&{query}"
            ));
            let answer = http.get(url).bearer_auth(&token).send().expect("a page");
            assert_eq!(answer.status(), 200);
            let next = answer
                .headers()
                .get("x-next-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<i64>().ok());
            let page: Value = answer.json().expect("JSON");
            paged.extend(page.as_array().cloned().unwrap_or_default());
            match next {
                Some(next) => after = next,
                None => break,
            }
        }
        let mut args = vec!["history", MANUAL_A];
        args.extend(flags);
        let whole = test.json(&args);
        assert!(!paged.is_empty(), "{query}");
        assert_eq!(Value::Array(paged), whole, "as of {query:?}");
        let cached = test.count("SELECT COUNT(*) FROM snapshots");
        assert!(cached >= 6, "snapshots every 4 events were taken: {cached}");
    }
}

// ---- hostile input ----------------------------------------------------------

/// Every byte but letters and digits percent-encoded, as a client sends it.
fn percent_encoded(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// SQL injection, path traversal, wildcards and control characters in every
/// query parameter and path segment: a clear 4xx or an empty answer, never
/// a server error, never a wildcard match, and the ledger unchanged.
fn hostile_parameters_are_refused_or_match_nothing(test: TestLedger) {
    let api = Api::new(test);
    api.seed();
    let hostile = [
        "' OR '1'='1",
        "1; DROP TABLE events; --",
        "C31012600042' --",
        "\" OR \"\"=\"",
        "../../../../etc/passwd",
        "..\\..\\windows\\win.ini",
        "%",
        "_",
        "*",
        "%00",
        "\u{0}",
        "\n\r",
        "<script>alert(1)</script>",
        "${jndi:ldap://x}",
        "9999999999999999999999999",
        "-1",
        "💥",
    ];
    let mut problems = Vec::new();
    for value in hostile {
        let v = percent_encoded(value);
        let mut paths = vec![
            format!("/api/v1/manuals/{v}/balance"),
            format!("/api/v1/manuals/{v}/verification"),
            format!("/api/v1/manuals/{v}/history"),
            format!("/api/v1/deadlines?enterprise={v}"),
            format!("/api/v1/audit?manual={v}"),
            format!("/assets/{v}"),
        ];
        for param in ["as_of_position", "as_of_recorded", "as_of_date"] {
            paths.push(format!("/api/v1/manuals/{MANUAL_A}/balance?{param}={v}"));
        }
        for param in ["after", "limit"] {
            paths.push(format!("/api/v1/manuals/{MANUAL_A}/history?{param}={v}"));
        }
        for param in [
            "manual",
            "enterprise",
            "hs",
            "declaration",
            "counterparty",
            "from",
            "to",
            "after",
            "limit",
            "follow_carryover",
        ] {
            paths.push(format!("/api/v1/timeline?{param}={v}"));
        }
        for path in paths {
            for token in [&api.admin, &api.recorder_a] {
                let answer = api.get(&path, token);
                let status = answer.status.as_u16();
                if !matches!(status, 200 | 400 | 403 | 404) {
                    problems.push(format!("{value:?}: GET {path}: {status} {}", answer.text));
                }
                if status != 200 && !answer.body["error"].is_string() {
                    problems.push(format!(
                        "{value:?}: GET {path}: no JSON error: {}",
                        answer.text
                    ));
                }
                // Accepted, a filter matches what it says, not a pattern.
                if status == 200 && path.starts_with("/api/v1/timeline") && answer.array_len() > 0 {
                    let kept = ["after", "limit", "follow_carryover"]
                        .iter()
                        .any(|p| path.contains(&format!("?{p}=")));
                    if !kept {
                        problems.push(format!(
                            "{value:?}: GET {path} matched {}",
                            answer.array_len()
                        ));
                    }
                }
                if path.starts_with("/assets/") && status == 200 {
                    problems.push(format!("{value:?}: {path} served a file"));
                }
            }
        }
        let revoked = api.request(
            Method::DELETE,
            &format!("/api/v1/tokens/{v}"),
            Some(&api.admin),
            Body::empty(),
        );
        if revoked.status != StatusCode::NOT_FOUND {
            problems.push(format!("{value:?}: DELETE token: {}", revoked.status));
        }
    }
    for path in [
        "/assets/../../Cargo.toml",
        "/assets/%2e%2e/%2e%2e/Cargo.toml",
        "/assets/..%2f..%2fCargo.toml",
        "/assets//etc/passwd",
    ] {
        let answer = api.get(path, &api.admin);
        if answer.status != StatusCode::NOT_FOUND {
            problems.push(format!("{path}: {}", answer.status));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert_eq!(api.events(MANUAL_A), 4, "the ledger is unchanged");
    let audit = api
        .get("/api/v1/audit", &api.admin)
        .expect(StatusCode::OK, "the audit");
    assert_eq!(audit.body["intact"], true, "{}", audit.text);
}

/// A request over its time is answered 503 `timeout`. An append it began
/// still finishes (the server tracks it), one cut off before it began never
/// happens: either way the same batch sent again leaves each movement held
/// once.
fn a_request_over_its_time_is_503_and_a_retry_holds_each_movement_once(test: TestLedger) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let ledger = runtime
        .block_on(Ledger::open(&test.url))
        .expect("the ledger opens");
    let admin = runtime
        .block_on(ledger.create_token(Role::Admin, None, None))
        .expect("a token")
        .secret;
    let hurried = bondledger_api::router_with_limits(
        ledger.clone(),
        bondledger_api::Limits {
            request_timeout: Duration::from_millis(1),
            max_concurrent_requests: 1,
        },
    );
    let patient = bondledger_api::router(ledger);
    let mut batch = vec![register(MANUAL_A, "t-0", ENTERPRISE_A, ENTERPRISE_A)];
    batch.extend((1..5000).map(|n| import(MANUAL_A, &format!("t-{n}"), "2026-02-10", "1")));
    let body = Value::Array(batch).to_string();
    let send = |app: &axum::Router| {
        let request = Request::builder()
            .method(Method::POST)
            .uri("/api/v1/movements")
            .header(header::AUTHORIZATION, format!("Bearer {admin}"))
            .body(Body::from(body.clone()))
            .expect("a request");
        let app = app.clone();
        runtime.block_on(async move {
            let response = app.oneshot(request).await.expect("an answer");
            let status = response.status();
            let bytes = axum::body::to_bytes(response.into_body(), 64 << 20)
                .await
                .expect("a body");
            (
                status,
                serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null),
            )
        })
    };
    let (status, answer) = send(&hurried);
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert_eq!(answer["error"], "timeout", "{answer}");
    let held = test.count("SELECT COUNT(*) FROM events");
    assert!(
        held == 0 || held == 5000,
        "all of the batch or none of it: {held}"
    );
    let (status, answer) = send(&patient);
    assert!(
        status == StatusCode::CREATED || status == StatusCode::OK,
        "the retry: {status} {answer}"
    );
    let appended = answer["appended"].as_array().map_or(0, Vec::len);
    let already = answer["already_held"].as_array().map_or(0, Vec::len);
    assert_eq!(appended + already, 5000, "{answer}");
    drop(runtime);
    assert_eq!(test.count("SELECT COUNT(*) FROM events"), 5000);
    assert_eq!(
        test.count("SELECT COUNT(DISTINCT caller_id) FROM events"),
        5000
    );
}

// ---- the role × route matrix ----------------------------------------------

/// Who presents what: no token, an unknown one, and a token of each role.
const CALLERS: [&str; 6] = [
    "nobody",
    "unknown",
    "recorder A",
    "recorder B",
    "auditor",
    "admin",
];

/// A request of the matrix: its route as documented, the request itself
/// (`{n}` in a body becomes the caller's number, so ids differ), and the
/// status each of `CALLERS` gets.
struct Case {
    route: (&'static str, &'static str),
    method: Method,
    path: String,
    body: Option<String>,
    statuses: [u16; 6],
}

fn every_route_answers_every_role_as_it_should(test: TestLedger) {
    let api = Api::new(test);
    api.seed();
    let victim = api
        .runtime
        .block_on(async {
            let ledger = Ledger::open(&api.test.url).await?;
            ledger
                .create_token(Role::Auditor, None, Some("to revoke"))
                .await
        })
        .expect("a token to revoke");
    let get = |route: &'static str, path: String, statuses: [u16; 6]| Case {
        route: ("get", route),
        method: Method::GET,
        path,
        body: None,
        statuses,
    };
    let own = [401, 401, 200, 403, 200, 200];
    let everyone = [401, 401, 200, 200, 200, 200];
    let mut cases = vec![
        get("/api/v1/manuals", "/api/v1/manuals".into(), everyone),
        get("/api/v1/timeline", "/api/v1/timeline".into(), everyone),
        get(
            "/api/v1/timeline",
            format!("/api/v1/timeline?manual={MANUAL_A}&follow_carryover=true"),
            own,
        ),
        get(
            "/api/v1/timeline",
            format!("/api/v1/timeline?enterprise={ENTERPRISE_A}"),
            own,
        ),
        get("/api/v1/deadlines", "/api/v1/deadlines".into(), everyone),
        get(
            "/api/v1/deadlines",
            format!("/api/v1/deadlines?enterprise={ENTERPRISE_A}"),
            own,
        ),
        get(
            "/api/v1/audit",
            "/api/v1/audit".into(),
            [401, 401, 403, 403, 200, 200],
        ),
        get(
            "/api/v1/audit",
            format!("/api/v1/audit?manual={MANUAL_A}"),
            own,
        ),
        get("/api/v1/events", "/api/v1/events".into(), everyone),
        get(
            "/api/v1/tokens",
            "/api/v1/tokens".into(),
            [401, 401, 403, 403, 403, 200],
        ),
        get(
            "/api/v1/openapi.json",
            "/api/v1/openapi.json".into(),
            [200; 6],
        ),
        get("/healthz", "/healthz".into(), [200; 6]),
        Case {
            route: ("post", "/api/v1/tokens"),
            method: Method::POST,
            path: "/api/v1/tokens".into(),
            body: Some(json!({"role": "auditor", "label": "matrix {n}"}).to_string()),
            statuses: [401, 401, 403, 403, 403, 201],
        },
        Case {
            route: ("delete", "/api/v1/tokens/{id}"),
            method: Method::DELETE,
            path: format!("/api/v1/tokens/{}", victim.principal.token_id),
            body: None,
            statuses: [401, 401, 403, 403, 403, 200],
        },
    ];
    for (manual, statuses) in [
        (MANUAL_A, own),
        (MANUAL_B, [401, 401, 403, 200, 200, 200]),
        (MANUAL_C, everyone),
        ("C31012600777", [401, 401, 404, 404, 404, 404]),
    ] {
        for part in ["balance", "verification", "history"] {
            let route = match part {
                "balance" => "/api/v1/manuals/{manual}/balance",
                "verification" => "/api/v1/manuals/{manual}/verification",
                _ => "/api/v1/manuals/{manual}/history",
            };
            cases.push(get(
                route,
                format!("/api/v1/manuals/{manual}/{part}"),
                statuses,
            ));
        }
    }
    for (manual, statuses) in [
        (MANUAL_A, [401, 401, 201, 403, 403, 201]),
        (MANUAL_B, [401, 401, 403, 201, 403, 201]),
        (MANUAL_C, [401, 401, 201, 201, 403, 201]),
    ] {
        let movement = import(manual, "matrix-{n}", "2026-03-05", "1");
        cases.push(Case {
            route: ("post", "/api/v1/movements"),
            method: Method::POST,
            path: "/api/v1/movements".into(),
            body: Some(
                movement
                    .to_string()
                    .replace("matrix-{n}", &format!("matrix-{manual}-{{n}}")),
            ),
            statuses,
        });
    }

    // Every documented route is in the matrix.
    let document = serde_json::to_value(bondledger_api::openapi()).expect("the document");
    let documented: BTreeSet<(String, String)> = documented_routes(&document)
        .into_iter()
        .flat_map(|(path, methods)| methods.into_iter().map(move |m| (m, path.clone())))
        .collect();
    let tried: BTreeSet<(String, String)> = cases
        .iter()
        .map(|c| (c.route.0.to_owned(), c.route.1.to_owned()))
        .collect();
    assert_eq!(
        tried, documented,
        "the matrix covers every documented route"
    );

    let tokens = [
        None,
        Some(UNKNOWN_TOKEN),
        Some(api.recorder_a.as_str()),
        Some(api.recorder_b.as_str()),
        Some(api.auditor.as_str()),
        Some(api.admin.as_str()),
    ];
    let mut wrong = Vec::new();
    for case in &cases {
        for (n, (caller, token)) in CALLERS.iter().zip(tokens).enumerate() {
            let body = case.body.as_ref().map_or_else(Body::empty, |b| {
                Body::from(b.replace("{n}", &n.to_string()))
            });
            let answer = api.request(case.method.clone(), &case.path, token, body);
            if answer.status.as_u16() != case.statuses[n] {
                wrong.push(format!(
                    "{} {} as {caller}: {} instead of {}: {}",
                    case.method, case.path, answer.status, case.statuses[n], answer.text
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // What the allowed appends left: one movement per caller allowed.
    assert_eq!(api.events(MANUAL_A), 4 + 2);
    assert_eq!(api.events(MANUAL_B), 2 + 2);
    assert_eq!(api.events(MANUAL_C), 1 + 3);
}

/// A recorder following a carry-over into another enterprise's manual
/// sees its own side only; the deadlines it reads are its enterprise's.
fn a_recorder_sees_only_its_side_of_a_carryover_chain(test: TestLedger) {
    let api = Api::new(test);
    api.seed();
    let out = json!({"id":"co-1","type":"carryover_out","manual":MANUAL_A,"date":"2026-03-10","product":1,
        "qty":"10","declaration":"310120261000030001","mode":"0654","counterparty_manual":MANUAL_B,
        "counterparty_enterprise":ENTERPRISE_B,"hs":"7408110000","shipped_on":"2026-03-10"});
    let into = json!({"id":"ci-1","type":"carryover_in","manual":MANUAL_B,"date":"2026-03-11","material":1,
        "qty":"10","declaration":"440320261000030001","mode":"0654","counterparty_manual":MANUAL_A,
        "counterparty_enterprise":ENTERPRISE_A,"received_on":"2026-03-11"});
    api.post(&api.admin, &json!([out, into]))
        .expect(StatusCode::CREATED, "the carry-over");
    let manuals_of = |answer: &Answer| -> BTreeSet<String> {
        answer
            .body
            .as_array()
            .map(|all| {
                all.iter()
                    .filter_map(|e| e["manual"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let path = format!("/api/v1/timeline?manual={MANUAL_A}&follow_carryover=true&limit=1000");
    let followed = api.get(&path, &api.admin).expect(StatusCode::OK, "admin");
    assert_eq!(
        manuals_of(&followed),
        BTreeSet::from([MANUAL_A.to_owned(), MANUAL_B.to_owned()]),
        "the chain reaches B"
    );
    let followed = api
        .get(&path, &api.recorder_a)
        .expect(StatusCode::OK, "recorder A");
    assert_eq!(
        manuals_of(&followed),
        BTreeSet::from([MANUAL_A.to_owned()]),
        "B's events stay B's: {}",
        followed.text
    );
    api.get(
        &format!("/api/v1/timeline?manual={MANUAL_B}&follow_carryover=true"),
        &api.recorder_a,
    )
    .expect(StatusCode::FORBIDDEN, "following from B's manual");
    let deadlines = api
        .get("/api/v1/deadlines", &api.recorder_a)
        .expect(StatusCode::OK, "deadlines");
    let seen = manuals_of(&deadlines);
    assert!(!seen.is_empty(), "A has deadlines: {}", deadlines.text);
    assert!(
        seen.iter().all(|m| m == MANUAL_A || m == MANUAL_C),
        "only its enterprise's deadlines: {seen:?}"
    );
    let all = api
        .get("/api/v1/deadlines", &api.auditor)
        .expect(StatusCode::OK, "deadlines");
    assert!(manuals_of(&all).contains(MANUAL_B), "{}", all.text);
}

/// Tokens over the API: an admin makes one (its secret shown once), lists
/// them without secrets or hashes, revokes one, which then signs nothing in.
fn an_admin_makes_lists_and_revokes_tokens(test: TestLedger) {
    let api = Api::new(test);
    api.seed();
    let request = |method: Method, path: &str, token: &str, body: Value| {
        api.request(method, path, Some(token), Body::from(body.to_string()))
    };
    let made = request(
        Method::POST,
        "/api/v1/tokens",
        &api.admin,
        json!({"role": "recorder", "enterprise": ENTERPRISE_A, "label": "line 3"}),
    )
    .expect(StatusCode::CREATED, "a recorder's token");
    let secret = made.body["token"].as_str().unwrap_or_default().to_owned();
    let id = made.body["id"].as_str().unwrap_or_default().to_owned();
    assert!(secret.starts_with("bl_"), "{}", made.text);
    assert_eq!(made.body["role"], "recorder");
    assert_eq!(made.body["enterprise"], ENTERPRISE_A);
    api.post(&secret, &import(MANUAL_A, "t-1", "2026-03-05", "1"))
        .expect(StatusCode::CREATED, "the new token appends");
    api.post(&secret, &import(MANUAL_B, "t-2", "2026-03-05", "1"))
        .expect(StatusCode::FORBIDDEN, "to its enterprise's manuals only");

    let listed = api
        .get("/api/v1/tokens", &api.admin)
        .expect(StatusCode::OK, "the list");
    assert_eq!(listed.array_len(), 5, "four made by the test, one here");
    let hash = bondledger_ledger::access::token_hash(&secret);
    assert!(
        !listed.text.contains(&secret[3..]) && !listed.text.contains(&hash),
        "no secret or hash listed: {}",
        listed.text
    );
    let entry = listed
        .body
        .as_array()
        .and_then(|all| all.iter().find(|t| t["id"] == id.as_str()))
        .cloned()
        .expect("the new token is listed");
    assert_eq!(entry["label"], "line 3");
    assert_eq!(entry["revoked_at"], Value::Null);

    // Malformed requests name the field and make nothing.
    for (body, field) in [
        (json!({"role": "owner"}), Some("role")),
        (json!({"role": "auditor", "scope": "all"}), None),
        (json!({"role": "recorder"}), None),
        (json!({"role": "auditor", "enterprise": ENTERPRISE_A}), None),
        (json!({"label": "no role"}), None),
        (json!({"role": 7}), Some("role")),
    ] {
        let answer = request(Method::POST, "/api/v1/tokens", &api.admin, body.clone())
            .expect(StatusCode::BAD_REQUEST, &body.to_string());
        if let Some(field) = field {
            assert_eq!(answer.body["field"], field, "{}", answer.text);
        }
        assert!(answer.body["error"].is_string(), "{}", answer.text);
    }
    api.request(
        Method::POST,
        "/api/v1/tokens",
        Some(&api.admin),
        Body::from("{\"role\": \"auditor\"} trailing"),
    )
    .expect(StatusCode::BAD_REQUEST, "trailing text");
    assert_eq!(
        api.get("/api/v1/tokens", &api.admin).array_len(),
        5,
        "no malformed request made a token"
    );

    // Revoked: it signs nothing in, and stays listed with the moment.
    let revoked = request(
        Method::DELETE,
        &format!("/api/v1/tokens/{id}"),
        &api.admin,
        Value::Null,
    )
    .expect(StatusCode::OK, "revoked");
    let moment = revoked.body["revoked_at"].clone();
    assert!(moment.is_string(), "{}", revoked.text);
    api.post(&secret, &import(MANUAL_A, "t-3", "2026-03-06", "1"))
        .expect(StatusCode::UNAUTHORIZED, "a revoked token appends");
    api.get("/api/v1/manuals", &secret)
        .expect(StatusCode::UNAUTHORIZED, "a revoked token reads");
    let again = request(
        Method::DELETE,
        &format!("/api/v1/tokens/{id}"),
        &api.admin,
        Value::Null,
    )
    .expect(StatusCode::OK, "revoked again");
    assert_eq!(
        again.body["revoked_at"], moment,
        "the first revocation stands"
    );
    for unknown in [
        "0190f0f0-0000-7000-8000-000000000000",
        "not-an-id",
        "%27%20OR%201%3D1",
    ] {
        request(
            Method::DELETE,
            &format!("/api/v1/tokens/{unknown}"),
            &api.admin,
            Value::Null,
        )
        .expect(StatusCode::NOT_FOUND, unknown);
    }
    assert_eq!(
        api.events(MANUAL_A),
        5,
        "one append by the token before revocation"
    );
}

/// `token list` and `token revoke` through the binary.
fn tokens_are_listed_and_revoked_from_the_command_line(test: TestLedger) {
    let made = test.json(&[
        "token",
        "create",
        "--role",
        "auditor",
        "--label",
        "audit 2026",
    ]);
    let secret = made["token"].as_str().unwrap_or_default().to_owned();
    let id = made["id"].as_str().unwrap_or_default().to_owned();
    test.json(&[
        "token",
        "create",
        "--role",
        "recorder",
        "--enterprise",
        ENTERPRISE_A,
    ]);
    let listed = test.json(&["token", "list"]);
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["label"], "audit 2026");
    assert_eq!(listed[1]["enterprise"], ENTERPRISE_A);
    assert!(
        !listed.to_string().contains(&secret[3..]),
        "no secret listed"
    );
    let table = test.expect(&["token", "list"], 0);
    assert!(table.contains(&id) && table.contains("auditor"), "{table}");

    let revoked = test.json(&["token", "revoke", &id]);
    assert!(revoked["revoked_at"].is_string(), "{revoked}");
    test.expect(
        &["token", "revoke", "0190f0f0-0000-7000-8000-000000000000"],
        2,
    );
    let listed = test.json(&["token", "list"]);
    assert!(listed[0]["revoked_at"].is_string());
    assert_eq!(listed[1]["revoked_at"], Value::Null);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let ledger = runtime.block_on(Ledger::open(&test.url)).expect("opens");
    assert!(
        runtime
            .block_on(ledger.authenticate(&secret))
            .expect("looked up")
            .is_none(),
        "a revoked token signs nothing in"
    );
}

// ---- the binary: serve and token -------------------------------------------

fn serve_signs_in_once_and_finishes_the_append_in_flight(test: TestLedger) {
    let server = Server::start(&test, &[], "serve-1.log");
    let token = server
        .sign_in_token()
        .unwrap_or_else(|| panic!("a sign-in address with a token: {:?}", server.first_line))
        .to_owned();
    assert!(token.starts_with("bl_"), "{token}");
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("a client");
    let health = http.get(server.url("/healthz")).send().expect("healthz");
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().expect("a body"), r#"{"status":"ok"}"#);
    let anonymous = http
        .get(server.url("/api/v1/manuals"))
        .send()
        .expect("manuals");
    assert_eq!(anonymous.status(), 401);
    // The sign-in address as a browser opens it: the token in the query.
    let page = http
        .get(server.sign_in().expect("the sign-in address"))
        .send()
        .expect("the page");
    assert_eq!(page.status(), 200);
    let registration = json!([register(MANUAL_A, "s-0", ENTERPRISE_A, ENTERPRISE_A)]);
    let registered = http
        .post(server.url("/api/v1/movements"))
        .bearer_auth(&token)
        .json(&registration)
        .send()
        .expect("registered");
    assert_eq!(registered.status(), 201, "{:?}", registered.text());

    // The biggest batch there is, then the signal while it is being appended.
    let batch: Vec<Value> = (0..bondledger_api::MAX_BATCH_MOVEMENTS)
        .map(|n| import(MANUAL_A, &format!("s-{}", n + 1), "2026-02-10", "1"))
        .collect();
    let in_flight = {
        let request = http
            .post(server.url("/api/v1/movements"))
            .bearer_auth(&token)
            .json(&batch);
        std::thread::spawn(move || {
            let answer = request.send().expect("the batch is answered");
            (answer.status(), answer.text().unwrap_or_default())
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    server.terminate();
    let (status, answer) = in_flight.join().expect("the client thread");
    assert_eq!(status, 201, "the append in flight finished: {answer}");
    let answer: Value = serde_json::from_str(&answer).expect("JSON");
    assert_eq!(
        answer["appended"].as_array().map(Vec::len),
        Some(bondledger_api::MAX_BATCH_MOVEMENTS)
    );
    assert_eq!(server.wait(), Some(0), "a clean exit after the signal");
    // The log shows the signal came while the batch was being appended,
    // and never the token (sent as a header, and as a sign-in query).
    let log = std::fs::read_to_string(test.dir.path().join("serve-1.log")).expect("the log");
    assert!(!log.contains(&token[3..]), "a token in the log:\n{log}");
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
    let again = Server::start(&test, &[], "serve-2.log");
    assert!(
        !again.first_line.contains("token"),
        "{:?}",
        again.first_line
    );
    let signed_in = http
        .get(again.url("/api/v1/manuals"))
        .bearer_auth(&token)
        .send()
        .expect("manuals");
    assert_eq!(signed_in.status(), 200, "the first token still signs in");
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
    a_long_batch_is_decided_while_its_earlier_chunks_are_written;
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
    every_route_answers_every_role_as_it_should;
    a_recorder_sees_only_its_side_of_a_carryover_chain;
    an_admin_makes_lists_and_revokes_tokens;
    tokens_are_listed_and_revoked_from_the_command_line;
    history_pages_from_snapshots_equal_a_whole_replay;
    hostile_parameters_are_refused_or_match_nothing;
    a_request_over_its_time_is_503_and_a_retry_holds_each_movement_once;
}
