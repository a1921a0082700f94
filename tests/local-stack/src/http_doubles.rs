//! Two loopback HTTP servers the local stack puts around the suite:
//!
//! - [`WebhookSink`] receives what the suite posts to Slack or a webhook and
//!   keeps it, and can answer 500 or hang, as real webhooks sometimes do;
//! - [`RecordingProxy`] stands in front of one AWS API on the emulator: it
//!   forwards every request and records it with the status it got (faults
//!   come from the emulator's fault engine, `crate::faults`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::Value;

/// How the sink answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkMode {
    Accept,
    Fail,
    Hang,
}

struct SinkState {
    mode: Mutex<SinkMode>,
    received: Mutex<Vec<(String, Value)>>,
}

/// A webhook receiver on loopback.
#[derive(Clone)]
pub struct WebhookSink {
    pub url: String,
    state: Arc<SinkState>,
}

impl WebhookSink {
    pub async fn start() -> anyhow::Result<Self> {
        let state = Arc::new(SinkState {
            mode: Mutex::new(SinkMode::Accept),
            received: Mutex::new(Vec::new()),
        });
        let app = Router::new().fallback(sink).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!(
            "http://{}/services/T0LOCAL/B0LOCAL/local-secret",
            listener.local_addr()?
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { url, state })
    }

    pub fn set_mode(&self, mode: SinkMode) {
        *self.state.mode.lock().expect("sink lock") = mode;
    }

    /// Bodies received so far (path, JSON body), oldest first.
    pub fn received(&self) -> Vec<(String, Value)> {
        self.state.received.lock().expect("sink lock").clone()
    }
}

async fn sink(State(state): State<Arc<SinkState>>, uri: Uri, body: Bytes) -> Response {
    let value = serde_json::from_slice(&body)
        .unwrap_or(Value::String(String::from_utf8_lossy(&body).into()));
    state
        .received
        .lock()
        .expect("sink lock")
        .push((uri.path().to_owned(), value));
    let mode = *state.mode.lock().expect("sink lock");
    match mode {
        SinkMode::Accept => (StatusCode::OK, "ok").into_response(),
        SinkMode::Fail => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error").into_response(),
        SinkMode::Hang => {
            tokio::time::sleep(Duration::from_secs(600)).await;
            StatusCode::OK.into_response()
        }
    }
}

/// One call that went through the proxy.
#[derive(Debug, Clone)]
pub struct Call {
    /// The `X-Amz-Target` header's operation, e.g. `UpdateService`.
    pub operation: String,
    pub body: Value,
    /// The status the emulator (or its fault engine) answered; `None`
    /// while the answer is still on its way (held by a fault).
    pub status: Option<u16>,
}

struct ProxyState {
    upstream: String,
    client: reqwest::Client,
    calls: Mutex<Vec<Call>>,
}

#[derive(Clone)]
pub struct RecordingProxy {
    pub endpoint: String,
    state: Arc<ProxyState>,
}

impl RecordingProxy {
    pub async fn start(upstream: &str) -> anyhow::Result<Self> {
        let state = Arc::new(ProxyState {
            upstream: upstream.trim_end_matches('/').to_owned(),
            client: reqwest::Client::new(),
            calls: Mutex::new(Vec::new()),
        });
        let app = Router::new().fallback(forward).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { endpoint, state })
    }

    /// Every call, in the order they were answered.
    pub fn calls(&self) -> Vec<Call> {
        self.state.calls.lock().expect("proxy lock").clone()
    }

    /// Calls of one operation that reached the emulator and were not
    /// refused: answered 2xx, or still waiting for their (held) answer.
    pub fn forwarded(&self, operation: &str) -> Vec<Value> {
        self.calls()
            .into_iter()
            .filter(|c| {
                c.operation == operation && c.status.is_none_or(|s| (200..300).contains(&s))
            })
            .map(|c| c.body)
            .collect()
    }
}

async fn forward(
    State(state): State<Arc<ProxyState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let operation = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.rsplit('.').next())
        .unwrap_or_default()
        .to_owned();
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let index = {
        let mut calls = state.calls.lock().expect("proxy lock");
        calls.push(Call {
            operation,
            body: parsed,
            status: None,
        });
        calls.len() - 1
    };
    let url = format!(
        "{}{}",
        state.upstream,
        uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
    );
    let mut request = state.client.request(method, url).body(body);
    // The Host header goes through unchanged: the caller signed it, and the
    // emulator checks a role session's signature.
    for (name, value) in headers.iter() {
        if name != "content-length" {
            request = request.header(name, value);
        }
    }
    // The call goes on, and its answer is recorded, even when its caller is
    // gone (a function killed while the answer is held).
    let exchange = tokio::spawn(async move {
        let answer = match request.send().await {
            Ok(upstream) => {
                let status = upstream.status();
                let mut out = HeaderMap::new();
                for (name, value) in upstream.headers() {
                    if name != "content-length" && name != "transfer-encoding" {
                        out.insert(name.clone(), value.clone());
                    }
                }
                let bytes = upstream.bytes().await.unwrap_or_default();
                (status, out, bytes)
            }
            Err(err) => (
                StatusCode::BAD_GATEWAY,
                HeaderMap::new(),
                Bytes::from(err.to_string()),
            ),
        };
        state.calls.lock().expect("proxy lock")[index].status = Some(answer.0.as_u16());
        answer
    });
    match exchange.await {
        Ok(answer) => answer.into_response(),
        Err(err) => (StatusCode::BAD_GATEWAY, err.to_string()).into_response(),
    }
}

/// A service's health endpoint on loopback, for bake smoke checks: GET
/// `/health/{anything}` answers 200, except paths with a segment `broken`
/// and every path once [`HealthEndpoint::fail_all`] is called, which answer
/// 500. Every path asked for is kept.
#[derive(Clone)]
pub struct HealthEndpoint {
    pub base: String,
    state: Arc<HealthState>,
}

#[derive(Default)]
struct HealthState {
    asked: Mutex<Vec<String>>,
    failing: std::sync::atomic::AtomicBool,
}

impl HealthEndpoint {
    pub async fn start() -> anyhow::Result<Self> {
        let state = Arc::new(HealthState::default());
        let app = Router::new().fallback(health).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { base, state })
    }

    /// From now on every path answers 500.
    pub fn fail_all(&self) {
        self.state
            .failing
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Paths asked for so far, oldest first.
    pub fn asked(&self) -> Vec<String> {
        self.state.asked.lock().expect("health lock").clone()
    }
}

async fn health(State(state): State<Arc<HealthState>>, uri: Uri) -> Response {
    state
        .asked
        .lock()
        .expect("health lock")
        .push(uri.path().to_owned());
    let failing = state.failing.load(std::sync::atomic::Ordering::SeqCst)
        || uri.path().split('/').any(|segment| segment == "broken");
    if failing {
        (StatusCode::INTERNAL_SERVER_ERROR, "unhealthy").into_response()
    } else {
        (StatusCode::OK, "ok").into_response()
    }
}
