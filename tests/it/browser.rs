//! Headless Chromium driven over WebDriver (Debian's `chromium` + `chromedriver`), for the pages
//! people see. Every `shoot` saves the page at desktop and phone widths under
//! `target/screenshots/<walk>/` (with an `index.html` to look through them) and checks what a
//! browser can check better than an HTML parser: no sideways scrolling on a phone, every visible
//! field labelled, one `<h1>`.
//!
//! Chromium runs with a fresh profile per walk; chromedriver is started in its own process group
//! and the whole group is ended when the walk ends (passed or panicked), so no browser lingers.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::helpers::{free_port, repo_root, tempdir};

/// Desktop and phone viewports (CSS pixels) every page is shot at.
const DESKTOP: (u32, u32) = (1280, 900);
const PHONE: (u32, u32) = (390, 844);
/// Tallest full-page screenshot.
const MAX_SHOT_HEIGHT: u32 = 4000;

/// The start flags for headless Chromium in this environment.
const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
    "--lang=en-GB",
];

pub(crate) struct Chrome {
    pub(crate) client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
    shots_dir: PathBuf,
    shots: Mutex<Vec<(String, String, String)>>,
    counter: AtomicUsize,
}

impl Drop for Chrome {
    fn drop(&mut self) {
        // chromedriver leads its own process group, Chromium included.
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let _ = self.driver.wait();
    }
}

/// Chromium and chromedriver, installed by tests/e2e/setup.sh (run here once per test process).
fn binary(name: &str) -> String {
    crate::synapse_harness::ensure_installed();
    for dir in ["/usr/bin", "/usr/local/bin", "/usr/lib/chromium"] {
        let path = format!("{dir}/{name}");
        if std::path::Path::new(&path).exists() {
            return path;
        }
    }
    crate::helpers::system_program(name).display().to_string()
}

fn wait_for_port(port: u16, driver: &mut Child) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = driver.try_wait() {
            panic!("chromedriver exited at start: {status}");
        }
        assert!(start.elapsed() < Duration::from_secs(20), "chromedriver did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Chrome {
    /// Starts chromedriver and a headless Chromium; screenshots go to `target/screenshots/<walk>/`.
    pub(crate) async fn start(walk: &str) -> Chrome {
        let port = free_port();
        let mut driver = Command::new(binary("chromedriver"))
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start chromedriver");
        wait_for_port(port, &mut driver);
        let profile = tempdir();
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|s| s.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        args.push(format!("--window-size={},{}", DESKTOP.0, DESKTOP.1));
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert("goog:chromeOptions".into(), json!({ "binary": binary("chromium"), "args": args }));
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .unwrap_or_else(|e| panic!("cannot start a Chromium session: {e}"));
        let shots_dir = repo_root().join("target").join("screenshots").join(walk);
        let _ = std::fs::remove_dir_all(&shots_dir);
        std::fs::create_dir_all(&shots_dir).expect("create the screenshot directory");
        eprintln!("[browser] {walk}: screenshots in {}", shots_dir.display());
        Chrome {
            client,
            driver,
            _profile: profile,
            shots_dir,
            shots: Mutex::new(Vec::new()),
            counter: AtomicUsize::new(0),
        }
    }

    pub(crate) async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap_or_else(|e| panic!("goto {url}: {e}"));
    }

    /// Path and query of the current page.
    pub(crate) async fn path(&self) -> String {
        let url = self.client.current_url().await.expect("current url");
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        }
    }

    pub(crate) async fn url(&self) -> url::Url {
        self.client.current_url().await.expect("current url")
    }

    /// The visible text of the page.
    pub(crate) async fn text(&self) -> String {
        let text = self.client.execute("return document.body.innerText", vec![]).await.expect("innerText");
        text.as_str().unwrap_or_default().to_string()
    }

    pub(crate) async fn fill(&self, css: &str, value: &str) {
        let field = self.find(css).await;
        field.clear().await.unwrap_or_else(|e| panic!("clear {css}: {e}"));
        field.send_keys(value).await.unwrap_or_else(|e| panic!("type into {css}: {e}"));
    }

    pub(crate) async fn find(&self, css: &str) -> fantoccini::elements::Element {
        match self.client.find(Locator::Css(css)).await {
            Ok(e) => e,
            Err(e) => panic!("no {css} on {} ({e}):\n{}", self.path().await, self.text().await),
        }
    }

    /// Clicks and waits until the page it leads to has loaded.
    /// Clicks; when the element is a link or a submit button, waits for the next document. Right
    /// after a click the old document still reads `complete`, so readiness alone would race.
    pub(crate) async fn click(&self, css: &str) {
        let before = self.path().await;
        let element = self.find(css).await;
        let arg = serde_json::to_value(&element).expect("element reference");
        let navigates = self
            .client
            .execute(
                "window.__applianceOldDocument = true; const e = arguments[0]; \
                 return e.matches(\"a[href]:not([href^='#']), button[type=submit], input[type=submit], form button:not([type])\");",
                vec![arg],
            )
            .await
            .is_ok_and(|v| v == Value::Bool(true));
        element.click().await.unwrap_or_else(|e| panic!("click {css} on {before}: {e}"));
        if navigates {
            // A submit that the browser's own validation stops never navigates: give up quietly.
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(20) {
                let old = self.client.execute("return window.__applianceOldDocument === true", vec![]).await;
                if !matches!(old, Ok(Value::Bool(true))) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        self.settle().await;
    }

    /// Waits (on the browser's own navigation, up to 20 s) until the path starts with `prefix`,
    /// then until that page has loaded.
    pub(crate) async fn wait_path(&self, prefix: &str) {
        let start = Instant::now();
        while !self.path().await.starts_with(prefix) {
            if start.elapsed() > Duration::from_secs(20) {
                self.expect_path(prefix).await;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.settle().await;
    }

    /// Waits (up to 20 s) until the page's visible text contains `text`.
    pub(crate) async fn wait_text(&self, text: &str) {
        let start = Instant::now();
        while !self.text().await.contains(text) {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "no {text:?} on {}:\n{}",
                self.path().await,
                self.text().await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Adds Chromium's virtual authenticator (WebDriver `addVirtualAuthenticator`): a platform
    /// authenticator speaking CTAP2 that keeps discoverable credentials and verifies its user.
    pub(crate) async fn add_virtual_authenticator(&self) {
        let options = json!({
            "protocol": "ctap2",
            "transport": "internal",
            "hasResidentKey": true,
            "hasUserVerification": true,
            "isUserConsenting": true,
            "isUserVerified": true,
        });
        self.client
            .issue_cmd(WebDriverPost { path: "webauthn/authenticator", body: options })
            .await
            .unwrap_or_else(|e| panic!("addVirtualAuthenticator: {e}"));
    }

    /// Waits until the document has finished loading.
    pub(crate) async fn settle(&self) {
        let start = Instant::now();
        loop {
            let state = self.client.execute("return document.readyState", vec![]).await;
            if matches!(state, Ok(Value::String(ref s)) if s == "complete") {
                return;
            }
            assert!(start.elapsed() < Duration::from_secs(20), "the page did not finish loading");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Asserts the current path starts with `prefix`; shows the page when it does not.
    pub(crate) async fn expect_path(&self, prefix: &str) {
        let path = self.path().await;
        assert!(path.starts_with(prefix), "expected {prefix}…, the browser is on {path}:\n{}", self.text().await);
    }

    /// Screenshots the page at desktop and phone widths (full height) and checks its layout and
    /// labels. `label` names the files: `03-consent-desktop.png`, `03-consent-phone.png`.
    pub(crate) async fn shoot(&self, label: &str) {
        let n = self.counter.fetch_add(1, Ordering::SeqCst) + 1;
        let path = self.path().await;
        self.check_page(label).await;
        let mut files = Vec::new();
        for (kind, (width, height)) in [("desktop", DESKTOP), ("phone", PHONE)] {
            self.resize(width, height).await;
            // Grow the window until its viewport (smaller than the window by the browser's own
            // frame) holds the whole page; further passes catch a page that reflows (a sticky
            // footer, say) once the window is taller.
            let mut window_height = height;
            for _ in 0..3 {
                let viewport = self.viewport_height().await;
                let page = self.page_height().await;
                if page <= viewport || window_height >= MAX_SHOT_HEIGHT {
                    break;
                }
                window_height = (window_height + page - viewport).min(MAX_SHOT_HEIGHT);
                self.resize(width, window_height).await;
            }
            // A field with autofocus may have scrolled the page while the window was short.
            let _ = self.client.execute("window.scrollTo(0, 0)", vec![]).await;
            if kind == "phone" {
                let overflow = self
                    .client
                    .execute(
                        "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
                        vec![],
                    )
                    .await
                    .ok()
                    .and_then(|v| v.as_i64())
                    .unwrap_or(0);
                assert!(overflow <= 0, "{label} ({path}) scrolls sideways by {overflow}px at {width}px wide");
            }
            let png = self.client.screenshot().await.expect("screenshot");
            let name = format!("{n:02}-{label}-{kind}.png");
            std::fs::write(self.shots_dir.join(&name), &png).expect("write screenshot");
            files.push(name);
        }
        self.resize(DESKTOP.0, DESKTOP.1).await;
        for f in &files {
            eprintln!("[screenshot] {}", self.shots_dir.join(f).display());
        }
        let mut shots = self.shots.lock().unwrap_or_else(|e| e.into_inner());
        shots.push((label.to_string(), files[0].clone(), files[1].clone()));
        self.write_index(&shots);
    }

    /// The height of the viewport, in CSS pixels.
    async fn viewport_height(&self) -> u32 {
        let height = self.client.execute("return window.innerHeight", vec![]).await.ok().and_then(|v| v.as_u64());
        height.and_then(|h| u32::try_from(h).ok()).unwrap_or(0)
    }

    /// The height of the whole document, in CSS pixels.
    async fn page_height(&self) -> u32 {
        let script = "return Math.ceil(Math.max(document.documentElement.scrollHeight, document.body.scrollHeight, \
                      document.body.getBoundingClientRect().bottom + window.scrollY))";
        let height = self.client.execute(script, vec![]).await.ok().and_then(|v| v.as_u64());
        height.and_then(|h| u32::try_from(h).ok()).unwrap_or(MAX_SHOT_HEIGHT)
    }

    /// Resizes the window and waits until the page has laid itself out at the new size.
    async fn resize(&self, width: u32, height: u32) {
        self.client.set_window_size(width, height).await.expect("resize");
        let start = Instant::now();
        loop {
            let size = self.client.execute("return [window.innerWidth, window.innerHeight]", vec![]).await;
            let size = size.ok().and_then(|v| serde_json::from_value::<(u32, u32)>(v).ok());
            // The height may differ by the window's own frame; the width is what layout follows.
            if size.is_some_and(|(w, _)| w == width) || start.elapsed() > Duration::from_secs(2) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // One more frame so layout-dependent measurements see the new size.
        let _ =
            self.client.execute_async("requestAnimationFrame(() => requestAnimationFrame(arguments[0]))", vec![]).await;
    }

    /// What every page must get right: a language, one heading, a label for each visible field,
    /// errors tied to their fields, the focus order of the document, images with `alt`.
    async fn check_page(&self, label: &str) {
        let report = self
            .client
            .execute(
                r#"
const problems = [];
if (!document.documentElement.lang) problems.push("<html> has no lang");
const h1 = document.querySelectorAll("h1").length;
if (h1 !== 1) problems.push(h1 + " <h1> elements");
for (const el of document.querySelectorAll("input, select, textarea")) {
  if (el.type === "hidden" || el.offsetParent === null) continue;
  const named = (el.labels && el.labels.length > 0) || el.getAttribute("aria-label") || el.getAttribute("aria-labelledby");
  if (!named) problems.push("unlabelled field " + (el.name || el.id || el.type));
}
for (const el of document.querySelectorAll("[aria-invalid=true]")) {
  const ids = (el.getAttribute("aria-describedby") || "").split(/\s+/).filter(Boolean);
  if (!ids.some(id => { const d = document.getElementById(id); return d && d.textContent.trim(); }))
    problems.push("invalid field " + (el.name || el.id) + " without a described error");
}
for (const el of document.querySelectorAll("[tabindex]")) {
  if (el.tabIndex > 0) problems.push("positive tabindex breaks the focus order: " + el.outerHTML.slice(0, 80));
}
for (const img of document.querySelectorAll("img")) {
  if (!img.hasAttribute("alt")) problems.push("image without alt: " + img.src);
}
for (const b of document.querySelectorAll("button")) {
  if (!b.textContent.trim() && !b.getAttribute("aria-label")) problems.push("button without a name");
}
return problems;
"#,
                vec![],
            )
            .await
            .expect("page checks");
        let problems: Vec<String> =
            report.as_array().into_iter().flatten().filter_map(|v| v.as_str().map(String::from)).collect();
        assert!(problems.is_empty(), "{label} ({}): {problems:?}", self.path().await);
    }

    fn write_index(&self, shots: &[(String, String, String)]) {
        let mut html = String::from(
            "<!doctype html><meta charset=utf-8><title>Screenshots</title>\
             <style>body{font:14px system-ui;margin:2em}figure{display:inline-block;vertical-align:top;margin:0 1em 2em 0}\
             img{border:1px solid #ccc;max-width:640px}</style>",
        );
        for (label, desktop, phone) in shots {
            let _ = write!(
                html,
                "<h2>{label}</h2><figure><img src=\"{desktop}\" alt=\"{label}, desktop\"><figcaption>desktop</figcaption></figure>\
                 <figure><img src=\"{phone}\" alt=\"{label}, phone\"><figcaption>phone</figcaption></figure>"
            );
        }
        let _ = std::fs::write(self.shots_dir.join("index.html"), html);
    }
}

/// A WebDriver command fantoccini has no method for: `POST /session/{id}/{path}` with `body`.
#[derive(Debug)]
struct WebDriverPost {
    path: &'static str,
    body: Value,
}

impl fantoccini::wd::WebDriverCompatibleCommand for WebDriverPost {
    fn endpoint(&self, base: &url::Url, session: Option<&str>) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/{}", session.unwrap_or_default(), self.path))
    }
    fn method_and_body(&self, _: &url::Url) -> (axum::http::Method, Option<String>) {
        (axum::http::Method::POST, Some(self.body.to_string()))
    }
}

/// A stand-in for an OAuth client's loopback redirect URI: answers every request with a short
/// page and remembers the request targets.
pub(crate) struct Callback {
    pub(crate) port: u16,
    pub(crate) requests: Arc<Mutex<Vec<String>>>,
}

impl Callback {
    pub(crate) fn start() -> Callback {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the callback listener");
        let port = listener.local_addr().expect("callback address").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let seen = seen.clone();
                std::thread::spawn(move || answer(stream, &seen));
            }
        });
        Callback { port, requests }
    }
}

fn answer(mut stream: TcpStream, seen: &Mutex<Vec<String>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = [0u8; 8192];
    let n = stream.read(&mut buf).unwrap_or(0);
    let head = String::from_utf8_lossy(&buf[..n]);
    if let Some(target) = head.lines().next().and_then(|l| l.split_whitespace().nth(1)) {
        seen.lock().unwrap_or_else(|e| e.into_inner()).push(target.to_string());
    }
    let body = "<!doctype html><html lang=en><title>Signed in</title><h1>Signed in</h1><p>The app has its code.</p>";
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
}
