//! The dashboard in a real browser: headless Chromium driven over WebDriver
//! (`chromedriver`), against `bondledger serve --demo` on each backend.
//! Sign in with the printed address, the manuals, one manual's balances and
//! findings, the time slider, the timeline's filters, the deadlines and a
//! live update. Screenshots go to `target/dashboard-screenshots/`.
//!
//! Without `/usr/bin/chromium` and `/usr/bin/chromedriver` the test fails
//! under `CI=true` and warns otherwise (`tools/test.sh` installs them).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bondledger_tests::{binary, on_both_backends, TestLedger};
use serde_json::{json, Value};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const WAIT: Duration = Duration::from_secs(30);

// ---- a plain HTTP/1.1 exchange -----------------------------------------------

fn http(address: &str, method: &str, path: &str, headers: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(address).expect("the server takes connections");
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .expect("a timeout");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n{headers}\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("the request is sent");
    let raw = read_answer(&mut stream);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_owned()
    };
    (status, format!("{head}\r\n\r\n{body}"))
}

/// The answer's bytes: up to its `Content-Length` where it gives one (a
/// server may keep the connection open), else to the end.
fn read_answer(stream: &mut TcpStream) -> Vec<u8> {
    let mut raw = Vec::new();
    let mut buffer = [0u8; 16384];
    loop {
        let read = stream.read(&mut buffer).expect("an answer");
        if read == 0 {
            return raw;
        }
        raw.extend_from_slice(&buffer[..read]);
        let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
        let length = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .and_then(|n| n.trim().parse::<usize>().ok());
        if let Some(length) = length {
            if raw.len() >= end + 4 + length {
                raw.truncate(end + 4 + length);
                return raw;
            }
        }
    }
}

fn dechunk(mut rest: &str) -> String {
    let mut body = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || after.len() < size {
            break;
        }
        body.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    body
}

fn body_of(answer: &str) -> &str {
    answer.split_once("\r\n\r\n").map_or("", |(_, body)| body)
}

// ---- a WebDriver client, as much as these tests need --------------------------

struct Browser {
    driver: Child,
    address: String,
    session: String,
    profile: tempfile::TempDir,
}

impl Browser {
    fn start() -> Browser {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let address = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + WAIT;
        while TcpStream::connect(&address).is_err() {
            assert!(Instant::now() < deadline, "chromedriver does not listen");
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = tempfile::tempdir().expect("a profile directory");
        let mut browser = Browser {
            driver,
            address,
            session: String::new(),
            profile,
        };
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--no-first-run", "--window-size=1400,1100", "--lang=zh-CN",
                    format!("--user-data-dir={}", browser.profile.path().display())],
            }
        }}});
        let answer = browser.command("POST", "/session", &capabilities);
        browser.session = answer["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {answer}"))
            .to_owned();
        browser
    }

    /// One WebDriver command; its `value`.
    fn command(&self, method: &str, path: &str, body: &Value) -> Value {
        let body = if method == "GET" {
            String::new()
        } else {
            body.to_string()
        };
        let (status, answer) = http(&self.address, method, path, "", &body);
        let parsed: Value = serde_json::from_str(body_of(&answer))
            .unwrap_or_else(|e| panic!("WebDriver {path} answered no JSON ({e}): {answer}"));
        assert_eq!(status, 200, "WebDriver {method} {path}: {parsed}");
        parsed["value"].clone()
    }

    fn session_command(&self, method: &str, path: &str, body: &Value) -> Value {
        self.command(method, &format!("/session/{}{path}", self.session), body)
    }

    fn goto(&self, url: &str) {
        self.session_command("POST", "/url", &json!({"url": url}));
    }

    fn url(&self) -> String {
        self.session_command("GET", "/url", &Value::Null)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Runs `script` (a function body) in the page; what it returns.
    fn run(&self, script: &str) -> Value {
        self.session_command(
            "POST",
            "/execute/sync",
            &json!({"script": script, "args": []}),
        )
    }

    /// Waits until `script` returns something truthy; that value.
    fn wait_for(&self, what: &str, script: &str) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let value = self.run(script);
            let truthy = match &value {
                Value::Null | Value::Bool(false) => false,
                Value::String(s) => !s.is_empty(),
                Value::Number(n) => n.as_f64().is_some_and(|n| n != 0.0),
                Value::Array(a) => !a.is_empty(),
                _ => true,
            };
            let idle = self.run("return document.body.dataset.busy !== 'true';") == json!(true);
            if truthy && idle {
                return value;
            }
            if Instant::now() > deadline {
                let page = self.run("return document.body.innerText;");
                panic!("waited in vain for {what}; the page shows:\n{page}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn element(&self, css: &str) -> String {
        let found = self.session_command(
            "POST",
            "/element",
            &json!({"using": "css selector", "value": css}),
        );
        found
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element {css}: {found}"))
            .to_owned()
    }

    fn click(&self, css: &str) {
        let id = self.element(css);
        self.session_command("POST", &format!("/element/{id}/click"), &json!({}));
    }

    fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css);
        self.session_command("POST", &format!("/element/{id}/clear"), &json!({}));
        self.session_command(
            "POST",
            &format!("/element/{id}/value"),
            &json!({"text": text}),
        );
    }

    fn screenshot(&self, name: &str) -> PathBuf {
        let encoded = self.session_command("GET", "/screenshot", &Value::Null);
        let png = base64_decode(encoded.as_str().unwrap_or_default());
        assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("the screenshot directory");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("the screenshot is written");
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let path = format!("/session/{}", self.session);
            let _ = http(&self.address, "DELETE", &path, "", "");
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let sextets: Vec<u8> = text.bytes().filter_map(value).collect();
    let mut out = Vec::with_capacity(sextets.len() * 3 / 4);
    for chunk in sextets.chunks(4) {
        let mut n = 0u32;
        for (i, s) in chunk.iter().enumerate() {
            n |= u32::from(*s) << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
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

// ---- the server -------------------------------------------------------------

struct Server {
    child: Child,
    sign_in: String,
    address: String,
}

impl Server {
    fn start(test: &TestLedger) -> Server {
        let log = std::fs::File::create(test.dir.path().join("serve.log")).expect("a log file");
        let mut child = Command::new(binary())
            .args(["serve", "--listen", "127.0.0.1:0", "--demo"])
            .args(["--database-url", &test.url])
            .current_dir(test.dir.path())
            .env_remove("BONDLEDGER_DATABASE_URL")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("the binary starts");
        let stdout = child.stdout.take().expect("stdout");
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = sender.send(line);
        });
        let line = receiver
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_default();
        let sign_in = line
            .split_whitespace()
            .find(|word| word.starts_with("http://"))
            .unwrap_or_default()
            .to_owned();
        assert!(
            sign_in.contains("/?token=bl_"),
            "serve --demo printed a sign-in address: {line:?}"
        );
        let address = sign_in
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        Server {
            child,
            sign_in,
            address,
        }
    }

    fn token(&self) -> &str {
        self.sign_in.split("?token=").nth(1).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn texts(browser: &Browser, css: &str) -> Vec<String> {
    let script = format!(
        "return [...document.querySelectorAll({})].map(e => e.textContent.trim());",
        json!(css)
    );
    match browser.run(&script) {
        Value::Array(values) => values
            .iter()
            .map(|v| v.as_str().unwrap_or_default().to_owned())
            .collect(),
        other => panic!("no texts for {css}: {other}"),
    }
}

// ---- the tests ---------------------------------------------------------------

const MANUAL: &str = "C51012600101";

fn the_dashboard_signs_in_shows_manuals_and_travels_in_time(test: TestLedger) {
    if !browser_installed() {
        return;
    }
    let server = Server::start(&test);
    let prefix = format!("{:?}", test.backend).to_lowercase();

    // The page and its files come without a token, with their security headers.
    let (status, page) = http(&server.address, "GET", "/", "", "");
    assert_eq!(status, 200, "{page}");
    let head = page.to_ascii_lowercase();
    for header in [
        "content-security-policy: default-src 'self'",
        "frame-ancestors 'none'",
        "x-content-type-options: nosniff",
        "referrer-policy: no-referrer",
    ] {
        assert!(head.contains(header), "{header} missing: {page}");
    }
    let (status, _) = http(&server.address, "GET", "/assets/app.js", "", "");
    assert_eq!(status, 200);
    let (status, _) = http(&server.address, "GET", "/api/v1/manuals", "", "");
    assert_eq!(status, 401, "the data still needs a token");

    let browser = Browser::start();

    // Without a token: the sign-in form.
    browser.goto(&format!("http://{}/", server.address));
    browser.wait_for(
        "the sign-in form",
        "return !document.getElementById('signin').hidden;",
    );

    // The printed address signs in; the token leaves the address bar.
    browser.goto(&server.sign_in);
    let rows = browser.wait_for(
        "the demo manuals",
        "return document.querySelectorAll('#manuals tbody tr').length;",
    );
    assert!(rows.as_u64().unwrap_or(0) >= 2, "demo manuals: {rows}");
    let url = browser.url();
    assert!(!url.contains("token"), "the token left the address: {url}");
    assert_eq!(
        browser.run("return sessionStorage.getItem('bondledger.token');"),
        json!(server.token()),
        "the token is kept in the session"
    );
    let manuals = texts(&browser, "#manuals tbody tr td:first-child");
    assert!(manuals.contains(&MANUAL.to_owned()), "{manuals:?}");
    let modes = texts(&browser, "#manuals tbody tr td:nth-child(2)").join(" ");
    assert!(
        modes.contains("进料加工 purchased") && modes.contains("来料加工 consigned"),
        "trade modes: {modes}"
    );
    browser.screenshot(&format!("{prefix}-01-manuals"));

    // One manual: balances as a table and a chart, the report's findings.
    browser.click(&format!("a[href='#/manual/{MANUAL}']"));
    browser.wait_for(
        "the balance table",
        "return document.querySelectorAll('#balance-table tbody tr').length;",
    );
    assert_eq!(
        browser.run("return !!document.querySelector('#balance-chart') && !!window.Chart;"),
        json!(true),
        "the chart is drawn"
    );
    let latest = texts(&browser, "#balance-table td.balance");
    assert!(latest.len() >= 3, "materials: {latest:?}");
    let findings = browser
        .run("return document.querySelector('#findings-table, #no-findings')?.textContent || '';");
    assert!(
        findings.as_str().is_some_and(|f| !f.is_empty()),
        "the findings are shown"
    );
    let chain = texts(&browser, "#carryover-chain a");
    assert!(
        chain.first() == Some(&MANUAL.to_owned()) && chain.len() >= 2,
        "the carry-over chain from {MANUAL}: {chain:?}"
    );
    browser.screenshot(&format!("{prefix}-02-manual"));

    // The time slider: early in the manual's history the balances differ.
    let max = browser.run("return Number(document.getElementById('as-of-version').max);");
    assert!(max.as_i64().unwrap_or(0) > 5, "versions: {max}");
    browser.run(
        "const s = document.getElementById('as-of-version'); s.value = '3'; \
         s.dispatchEvent(new Event('input')); return true;",
    );
    browser.wait_for(
        "the manual as of version 3",
        "return document.getElementById('as-of-label').textContent.startsWith('3 /') \
         && document.querySelectorAll('#balance-table tbody tr').length > 0;",
    );
    browser.wait_for(
        "the balances as of version 3",
        &format!(
            "return JSON.stringify([...document.querySelectorAll('#balance-table td.balance')]\
             .map(e => e.textContent.trim())) !== {};",
            json!(serde_json::to_string(&latest).unwrap_or_default())
        ),
    );
    let early = texts(&browser, "#balance-table td.balance");
    assert_ne!(early, latest, "the slider changes the numbers");
    browser.screenshot(&format!("{prefix}-03-manual-as-of-3"));

    // The date picker: the manual as of a business date.
    browser.run(
        "const d = document.getElementById('as-of-date'); d.value = '2026-03-16'; \
         d.dispatchEvent(new Event('change')); return true;",
    );
    browser.wait_for(
        "the manual as of 2026-03-16",
        "return document.getElementById('as-of-label').textContent.includes('2026-03-16') \
         && document.querySelectorAll('#history-table tbody tr').length > 0;",
    );
    let dated = texts(&browser, "#balance-table td.balance");
    assert_ne!(dated, latest, "the date changes the numbers");
    assert_eq!(
        browser.run("return document.getElementById('error').hidden;"),
        json!(true),
        "no error shown"
    );

    // The timeline, then narrowed to an HS prefix.
    browser.click("#nav-timeline");
    let all = browser.wait_for(
        "the timeline",
        "return document.querySelectorAll('#timeline tbody tr').length;",
    );
    let all = all.as_u64().unwrap_or(0);
    assert!(all >= 20, "the demo's events: {all}");
    browser.type_into("#filter-hs", "8542");
    browser.click("#filter-apply");
    let narrowed = browser.wait_for(
        "the timeline filtered by HS 8542",
        &format!(
            "const n = document.querySelectorAll('#timeline tbody tr').length; \
             return n > 0 && n < {all} ? n : 0;"
        ),
    );
    let narrowed = narrowed.as_u64().unwrap_or(0);
    assert!(narrowed > 0 && narrowed < all, "{narrowed} of {all}");
    browser.screenshot(&format!("{prefix}-04-timeline-hs-8542"));

    // The deadlines.
    browser.click("#nav-deadlines");
    browser.wait_for(
        "the deadlines",
        "return document.querySelectorAll('#deadlines tbody tr').length;",
    );
    browser.screenshot(&format!("{prefix}-05-deadlines"));

    // A live update: a movement appended elsewhere shows up on the timeline.
    browser.click("#nav-timeline");
    browser.wait_for(
        "the live stream",
        "return document.getElementById('live').dataset.position;",
    );
    let before = browser.wait_for(
        "the timeline again",
        "return document.querySelectorAll('#timeline tbody tr').length;",
    );
    let movement = json!({"id": "dashboard-live-1", "type": "material_imported", "manual": "C51012600188",
        "date": "2026-05-30", "material": 2, "qty": "100", "declaration": "510120261000059999",
        "mode": "0615", "value": "38", "currency": "USD"});
    let (status, answer) = http(
        &server.address,
        "POST",
        "/api/v1/movements",
        &format!("Authorization: Bearer {}\r\n", server.token()),
        &movement.to_string(),
    );
    assert!(status == 200 || status == 201, "the append: {answer}");
    browser.wait_for(
        "the appended movement on the timeline",
        &format!("return document.querySelectorAll('#timeline tbody tr').length > {before};"),
    );

    // Signing out forgets the token.
    browser.click("#signout");
    browser.wait_for(
        "the sign-in form after signing out",
        "return !document.getElementById('signin').hidden \
         && sessionStorage.getItem('bondledger.token') === null;",
    );
}

on_both_backends! {
    the_dashboard_signs_in_shows_manuals_and_travels_in_time;
}
