//! The dashboard in a real browser: headless Chromium driven over WebDriver
//! (`chromedriver`, through fantoccini), against `bondledger serve --demo`
//! on each backend. Sign in with the printed address, the manuals, one
//! manual's balances and findings, the time slider, the timeline's filters,
//! the deadlines and a live update. Screenshots go to
//! `target/dashboard-screenshots/`.
//!
//! Without `/usr/bin/chromium` and `/usr/bin/chromedriver` the test fails
//! under `CI=true` and warns otherwise (`tools/test.sh` installs them).

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bondledger_tests::{on_both_backends, Server, TestLedger};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const WAIT: Duration = Duration::from_secs(30);

// ---- the browser --------------------------------------------------------------

/// Headless Chromium in a profile of its own, driven through chromedriver.
struct Browser {
    client: Client,
}

/// The chromedriver behind a [`Browser`] and the browser's profile: kept
/// by [`with_browser`] until the session has ended, so that chromedriver
/// closes Chromium before it is stopped (stopped first, it leaves Chromium
/// running).
struct Driver {
    process: Child,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

impl Browser {
    async fn start() -> (Browser, Driver) {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let deadline = Instant::now() + WAIT;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                let _ = driver.kill();
                panic!("chromedriver does not listen");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().expect("a profile directory");
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".into(), json!("chrome"));
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--no-first-run", "--window-size=1400,1100", "--lang=zh-CN",
                    format!("--user-data-dir={}", profile.path().display())],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .unwrap_or_else(|error| {
                let _ = driver.kill();
                panic!("no WebDriver session: {error}")
            });
        (
            Browser { client },
            Driver {
                process: driver,
                _profile: profile,
            },
        )
    }

    async fn url(&self) -> String {
        self.client
            .current_url()
            .await
            .expect("the address")
            .to_string()
    }

    async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("the page opens");
    }

    /// Runs `script` (a function body) in the page; what it returns.
    async fn run(&self, script: &str) -> Value {
        self.client
            .execute(script, Vec::new())
            .await
            .unwrap_or_else(|error| panic!("the script failed ({error}): {script}"))
    }

    /// Waits until `script` returns something truthy while the page is not
    /// busy loading; that value.
    async fn wait_for(&self, what: &str, script: &str) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let value = self.run(script).await;
            let truthy = match &value {
                Value::Null | Value::Bool(false) => false,
                Value::String(s) => !s.is_empty(),
                Value::Number(n) => n.as_f64().is_some_and(|n| n != 0.0),
                Value::Array(a) => !a.is_empty(),
                _ => true,
            };
            let idle = self
                .run("return document.body.dataset.busy !== 'true';")
                .await
                == json!(true);
            if truthy && idle {
                return value;
            }
            if Instant::now() > deadline {
                let page = self.run("return document.body.innerText;").await;
                panic!("waited in vain for {what}; the page shows:\n{page}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|error| panic!("no element {css}: {error}"))
            .click()
            .await
            .unwrap_or_else(|error| panic!("{css} cannot be clicked: {error}"));
    }

    async fn type_into(&self, css: &str, text: &str) {
        let element = self
            .client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|error| panic!("no element {css}: {error}"));
        element.clear().await.expect("the field clears");
        element.send_keys(text).await.expect("the text is typed");
    }

    /// The text of every element `css` selects.
    async fn texts(&self, css: &str) -> Vec<String> {
        let script = format!(
            "return [...document.querySelectorAll({})].map(e => e.textContent.trim());",
            json!(css)
        );
        match self.run(&script).await {
            Value::Array(values) => values
                .iter()
                .map(|v| v.as_str().unwrap_or_default().to_owned())
                .collect(),
            other => panic!("no texts for {css}: {other}"),
        }
    }

    async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("a screenshot");
        assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("the screenshot directory");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("the screenshot is written");
        path
    }
}

/// `target/dashboard-screenshots` of the workspace (or of `CARGO_TARGET_DIR`).
fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    );
    target.join("dashboard-screenshots")
}

/// Whether the browser is here; without it, a failure under CI and a
/// warning otherwise.
fn browser_installed() -> bool {
    if Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists() {
        return true;
    }
    let message = format!(
        "{CHROMIUM} or {CHROMEDRIVER} is missing: `apt-get install chromium chromium-driver`"
    );
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{message}");
    eprintln!("warning: the dashboard is not tested: {message}");
    false
}

/// Runs `steps` in a browser on a runtime of their own, and ends the
/// browser's session whether they pass or panic.
fn with_browser<F, Fut>(steps: F)
where
    F: FnOnce(Browser) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let (browser, driver) = Browser::start().await;
        let client = browser.client.clone();
        let outcome = tokio::spawn(steps(browser)).await;
        // The session ends (Chromium with it) before chromedriver stops.
        let _ = client.close().await;
        drop(driver);
        if let Err(error) = outcome {
            if error.is_panic() {
                std::panic::resume_unwind(error.into_panic());
            }
            panic!("the browser steps stopped: {error}");
        }
    });
}

// ---- the tests ---------------------------------------------------------------

const MANUAL: &str = "C51012600101";

fn the_dashboard_signs_in_shows_manuals_and_travels_in_time(test: TestLedger) {
    if !browser_installed() {
        return;
    }
    let server = Server::start(&test, &["--demo"], "serve.log");
    let sign_in = server
        .sign_in()
        .expect("serve --demo printed a sign-in address")
        .to_owned();
    let token = server.sign_in_token().unwrap_or_default().to_owned();
    assert!(token.starts_with("bl_"), "{sign_in}");
    let address = server.address.clone();
    let prefix = format!("{:?}", test.backend).to_lowercase();

    // The page and its files come without a token, with their security headers.
    let http = reqwest::blocking::Client::new();
    let page = http.get(server.url("/")).send().expect("the page");
    assert_eq!(page.status(), 200);
    let headers = page.headers();
    for (name, wanted) in [
        ("content-security-policy", "default-src 'self'"),
        ("content-security-policy", "frame-ancestors 'none'"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
    ] {
        let value = headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(
            value.contains(wanted),
            "{name}: {wanted} missing: {headers:?}"
        );
    }
    let script = http
        .get(server.url("/assets/app.js"))
        .send()
        .expect("app.js");
    assert_eq!(script.status(), 200);
    let data = http
        .get(server.url("/api/v1/manuals"))
        .send()
        .expect("manuals");
    assert_eq!(data.status(), 401, "the data still needs a token");

    with_browser(move |browser| async move {
        let server_url = |path: &str| format!("http://{address}{path}");
        // Without a token: the sign-in form.
        browser.goto(&server_url("/")).await;
        browser
            .wait_for(
                "the sign-in form",
                "return !document.getElementById('signin').hidden;",
            )
            .await;

        // The printed address signs in; the token leaves the address bar.
        browser.goto(&sign_in).await;
        let rows = browser
            .wait_for(
                "the demo manuals",
                "return document.querySelectorAll('#manuals tbody tr').length;",
            )
            .await;
        assert!(rows.as_u64().unwrap_or(0) >= 2, "demo manuals: {rows}");
        let url = browser.url().await;
        assert!(!url.contains("token"), "the token left the address: {url}");
        assert_eq!(
            browser
                .run("return sessionStorage.getItem('bondledger.token');")
                .await,
            json!(token),
            "the token is kept in the session"
        );
        let manuals = browser.texts("#manuals tbody tr td:first-child").await;
        assert!(manuals.contains(&MANUAL.to_owned()), "{manuals:?}");
        let modes = browser
            .texts("#manuals tbody tr td:nth-child(2)")
            .await
            .join(" ");
        assert!(
            modes.contains("进料加工 purchased") && modes.contains("来料加工 consigned"),
            "trade modes: {modes}"
        );
        browser.screenshot(&format!("{prefix}-01-manuals")).await;

        // One manual: balances as a table and a chart, the report's findings.
        browser.click(&format!("a[href='#/manual/{MANUAL}']")).await;
        browser
            .wait_for(
                "the balance table",
                "return document.querySelectorAll('#balance-table tbody tr').length;",
            )
            .await;
        assert_eq!(
            browser
                .run("return !!document.querySelector('#balance-chart') && !!window.Chart;")
                .await,
            json!(true),
            "the chart is drawn"
        );
        let latest = browser.texts("#balance-table td.balance").await;
        assert!(latest.len() >= 3, "materials: {latest:?}");
        let findings = browser.run(
            "return document.querySelector('#findings-table, #no-findings')?.textContent || '';",
            )
            .await;
        assert!(
            findings.as_str().is_some_and(|f| !f.is_empty()),
            "the findings are shown"
        );
        let chain = browser.texts("#carryover-chain a").await;
        assert!(
            chain.first() == Some(&MANUAL.to_owned()) && chain.len() >= 2,
            "the carry-over chain from {MANUAL}: {chain:?}"
        );
        browser.screenshot(&format!("{prefix}-02-manual")).await;

        // The time slider: early in the manual's history the balances differ.
        let max = browser
            .run("return Number(document.getElementById('as-of-version').max);")
            .await;
        assert!(max.as_i64().unwrap_or(0) > 5, "versions: {max}");
        browser
            .run(
                "const s = document.getElementById('as-of-version'); s.value = '3'; \
         s.dispatchEvent(new Event('input')); return true;",
            )
            .await;
        browser
            .wait_for(
                "the manual as of version 3",
                "return document.getElementById('as-of-label').textContent.startsWith('3 /') \
         && document.querySelectorAll('#balance-table tbody tr').length > 0;",
            )
            .await;
        browser
            .wait_for(
                "the balances as of version 3",
                &format!(
            "return JSON.stringify([...document.querySelectorAll('#balance-table td.balance')]\
             .map(e => e.textContent.trim())) !== {};",
            json!(serde_json::to_string(&latest).unwrap_or_default())
        ),
            )
            .await;
        let early = browser.texts("#balance-table td.balance").await;
        assert_ne!(early, latest, "the slider changes the numbers");
        browser
            .screenshot(&format!("{prefix}-03-manual-as-of-3"))
            .await;

        // The date picker: the manual as of a business date.
        browser
            .run(
                "const d = document.getElementById('as-of-date'); d.value = '2026-03-16'; \
         d.dispatchEvent(new Event('change')); return true;",
            )
            .await;
        browser
            .wait_for(
                "the manual as of 2026-03-16",
                "return document.getElementById('as-of-label').textContent.includes('2026-03-16') \
         && document.querySelectorAll('#history-table tbody tr').length > 0;",
            )
            .await;
        let dated = browser.texts("#balance-table td.balance").await;
        assert_ne!(dated, latest, "the date changes the numbers");
        assert_eq!(
            browser
                .run("return document.getElementById('error').hidden;")
                .await,
            json!(true),
            "no error shown"
        );

        // The timeline, then narrowed to an HS prefix.
        browser.click("#nav-timeline").await;
        let all = browser
            .wait_for(
                "the timeline",
                "return document.querySelectorAll('#timeline tbody tr').length;",
            )
            .await;
        let all = all.as_u64().unwrap_or(0);
        assert!(all >= 20, "the demo's events: {all}");
        browser.type_into("#filter-hs", "8542").await;
        browser.click("#filter-apply").await;
        let narrowed = browser
            .wait_for(
                "the timeline filtered by HS 8542",
                &format!(
                    "const n = document.querySelectorAll('#timeline tbody tr').length; \
             return n > 0 && n < {all} ? n : 0;"
                ),
            )
            .await;
        let narrowed = narrowed.as_u64().unwrap_or(0);
        assert!(narrowed > 0 && narrowed < all, "{narrowed} of {all}");
        browser
            .screenshot(&format!("{prefix}-04-timeline-hs-8542"))
            .await;

        // The deadlines.
        browser.click("#nav-deadlines").await;
        browser
            .wait_for(
                "the deadlines",
                "return document.querySelectorAll('#deadlines tbody tr').length;",
            )
            .await;
        browser.screenshot(&format!("{prefix}-05-deadlines")).await;

        // A live update: a movement appended elsewhere shows up on the timeline.
        browser.click("#nav-timeline").await;
        browser
            .wait_for(
                "the live stream",
                "return document.getElementById('live').dataset.position;",
            )
            .await;
        let before = browser
            .wait_for(
                "the timeline again",
                "return document.querySelectorAll('#timeline tbody tr').length;",
            )
            .await;
        let movement = json!({"id": "dashboard-live-1", "type": "material_imported", "manual": "C51012600188",
        "date": "2026-05-30", "material": 2, "qty": "100", "declaration": "510120261000059999",
        "mode": "0615", "value": "38", "currency": "USD"});
        let answer = reqwest::Client::new()
            .post(server_url("/api/v1/movements"))
            .bearer_auth(&token)
            .json(&movement)
            .send()
            .await
            .expect("the append is answered");
        assert_eq!(
            answer.status(),
            201,
            "the append: {:?}",
            answer.text().await
        );
        browser
            .wait_for(
                "the appended movement on the timeline",
                &format!(
                    "return document.querySelectorAll('#timeline tbody tr').length > {before};"
                ),
            )
            .await;

        // Signing out forgets the token.
        browser.click("#signout").await;
        browser
            .wait_for(
                "the sign-in form after signing out",
                "return !document.getElementById('signin').hidden \
         && sessionStorage.getItem('bondledger.token') === null;",
            )
            .await;
    });
}

on_both_backends! {
    the_dashboard_signs_in_shows_manuals_and_travels_in_time;
}
