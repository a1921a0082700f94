//! Just enough of a WebDriver client to drive headless Chromium from a
//! test: chromedriver (Debian's `chromium-driver`) spoken to over HTTP with
//! reqwest, the W3C protocol's JSON as is. No browser crate: the handful
//! of commands a test needs are one request each.

use std::time::Duration;

use anyhow::{bail, Context};
use base64::Engine;
use serde_json::{json, Value};

/// The W3C name of an element reference in a command's answer.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A headless Chromium driven through its chromedriver.
pub struct Browser {
    http: reqwest::Client,
    session: String,
    driver: tokio::process::Child,
}

/// The first of `names` on PATH.
fn find_program(names: &[&str]) -> Option<String> {
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
            .map(|p| p.display().to_string())
    })
}

impl Browser {
    /// chromedriver on a free loopback port, and a headless session in it.
    pub async fn start() -> anyhow::Result<Self> {
        let driver_bin = find_program(&["chromedriver"]).context(
            "chromedriver is not installed (make setup installs chromium and chromium-driver)",
        )?;
        let chromium = find_program(&["chromium", "chromium-browser", "google-chrome"])
            .context("chromium is not installed (make setup installs it)")?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let driver = tokio::process::Command::new(&driver_bin)
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {driver_bin}"))?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()?;
        let base = format!("http://127.0.0.1:{port}");
        local_stack::emulator::wait_until("chromedriver", Duration::from_secs(30), || {
            let (http, base) = (http.clone(), base.clone());
            async move {
                let ready = http
                    .get(format!("{base}/status"))
                    .send()
                    .await
                    .ok()
                    .map(|r| r.status().is_success())
                    .unwrap_or(false);
                Ok(ready.then_some(()))
            }
        })
        .await?;
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,900", "--hide-scrollbars"]
            }
        }}});
        let answer: Value = http
            .post(format!("{base}/session"))
            .json(&capabilities)
            .send()
            .await?
            .json()
            .await?;
        let session = answer["value"]["sessionId"]
            .as_str()
            .with_context(|| format!("chromedriver started no session: {answer}"))?
            .to_owned();
        Ok(Self {
            http,
            session: format!("{base}/session/{session}"),
            driver,
        })
    }

    async fn command(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut request = self.http.request(method, format!("{}{path}", self.session));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("WebDriver {path}"))?;
        let status = response.status();
        let answer: Value = response
            .json()
            .await
            .with_context(|| format!("WebDriver {path}: not JSON"))?;
        if !status.is_success() {
            bail!(
                "WebDriver {path}: {} {}",
                answer["value"]["error"].as_str().unwrap_or("error"),
                answer["value"]["message"].as_str().unwrap_or_default()
            );
        }
        Ok(answer["value"].clone())
    }

    pub async fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.command(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await
            .map(|_| ())
    }

    pub async fn current_url(&self) -> anyhow::Result<String> {
        Ok(self
            .command(reqwest::Method::GET, "/url", None)
            .await?
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    /// The elements matching a CSS selector, in document order.
    pub async fn find_all(&self, css: &str) -> anyhow::Result<Vec<String>> {
        let found = self
            .command(
                reqwest::Method::POST,
                "/elements",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await?;
        Ok(found
            .as_array()
            .map(|list| {
                list.iter()
                    .filter_map(|e| e[ELEMENT].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// The one element matching a CSS selector.
    pub async fn find(&self, css: &str) -> anyhow::Result<String> {
        let found = self
            .command(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await
            .with_context(|| format!("finding {css}"))?;
        Ok(found[ELEMENT]
            .as_str()
            .context("no element reference")?
            .to_owned())
    }

    /// An element's rendered text.
    pub async fn text(&self, element: &str) -> anyhow::Result<String> {
        Ok(self
            .command(
                reqwest::Method::GET,
                &format!("/element/{element}/text"),
                None,
            )
            .await?
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    pub async fn attribute(&self, element: &str, name: &str) -> anyhow::Result<Option<String>> {
        Ok(self
            .command(
                reqwest::Method::GET,
                &format!("/element/{element}/attribute/{name}"),
                None,
            )
            .await?
            .as_str()
            .map(str::to_owned))
    }

    pub async fn click(&self, element: &str) -> anyhow::Result<()> {
        self.command(
            reqwest::Method::POST,
            &format!("/element/{element}/click"),
            Some(json!({})),
        )
        .await
        .map(|_| ())
    }

    pub async fn type_text(&self, element: &str, text: &str) -> anyhow::Result<()> {
        self.command(
            reqwest::Method::POST,
            &format!("/element/{element}/value"),
            Some(json!({"text": text})),
        )
        .await
        .map(|_| ())
    }

    /// Runs `script` (a function body) in the page; its return value.
    pub async fn script(&self, script: &str) -> anyhow::Result<Value> {
        self.command(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
        .await
    }

    /// A PNG of one element.
    pub async fn screenshot_of(&self, element: &str) -> anyhow::Result<Vec<u8>> {
        let encoded = self
            .command(
                reqwest::Method::GET,
                &format!("/element/{element}/screenshot"),
                None,
            )
            .await?;
        Ok(base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().unwrap_or_default())?)
    }

    /// Ends the session (and its browser), then the driver.
    pub async fn quit(mut self) {
        let _ = self.http.delete(&self.session).send().await;
        let _ = self.driver.kill().await;
    }
}
