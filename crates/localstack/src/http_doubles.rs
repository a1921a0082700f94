//! Two loopback HTTP servers the local stack puts around the suite:
//!
//! - [`WebhookSink`] receives what the suite posts to Slack or a webhook and
//!   keeps it, and can answer 500 or hang, as real webhooks sometimes do;
//! - [`FaultProxy`] stands in front of one AWS API on the emulator: it
//!   forwards every request, records it, and can answer the first N matching
//!   calls with a throttling or 5xx error instead.

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

/// A fault to answer instead of forwarding.
#[derive(Debug, Clone)]
pub struct Fault {
    /// Matches the `X-Amz-Target` header's operation, e.g. `UpdateService`.
    pub operation: String,
    /// Only calls whose body contains this text (empty: every call).
    pub body_contains: String,
    pub remaining: usize,
    pub status: u16,
    pub code: String,
}

/// One forwarded (or faulted) call.
#[derive(Debug, Clone)]
pub struct Call {
    pub operation: String,
    pub body: Value,
    pub faulted: bool,
}

struct ProxyState {
    upstream: String,
    client: reqwest::Client,
    faults: Mutex<Vec<Fault>>,
    calls: Mutex<Vec<Call>>,
}

#[derive(Clone)]
pub struct FaultProxy {
    pub endpoint: String,
    state: Arc<ProxyState>,
}

impl FaultProxy {
    pub async fn start(upstream: &str) -> anyhow::Result<Self> {
        let state = Arc::new(ProxyState {
            upstream: upstream.trim_end_matches('/').to_owned(),
            client: reqwest::Client::new(),
            faults: Mutex::new(Vec::new()),
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

    /// Answers the next `times` calls of `operation` with `status` and an
    /// AWS JSON error of type `code`.
    pub fn inject(&self, operation: &str, times: usize, status: u16, code: &str) {
        self.inject_matching(operation, "", times, status, code);
    }

    /// Like `inject`, for calls whose body contains `body_contains`.
    pub fn inject_matching(
        &self,
        operation: &str,
        body_contains: &str,
        times: usize,
        status: u16,
        code: &str,
    ) {
        self.state.faults.lock().expect("proxy lock").push(Fault {
            operation: operation.to_owned(),
            body_contains: body_contains.to_owned(),
            remaining: times,
            status,
            code: code.to_owned(),
        });
    }

    pub fn calls(&self) -> Vec<Call> {
        self.state.calls.lock().expect("proxy lock").clone()
    }

    /// Calls of one operation that reached the emulator.
    pub fn forwarded(&self, operation: &str) -> Vec<Value> {
        self.calls()
            .into_iter()
            .filter(|c| c.operation == operation && !c.faulted)
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
    let body_text = String::from_utf8_lossy(&body).into_owned();
    let fault = {
        let mut faults = state.faults.lock().expect("proxy lock");
        faults
            .iter_mut()
            .find(|f| {
                f.operation == operation
                    && f.remaining > 0
                    && (f.body_contains.is_empty() || body_text.contains(&f.body_contains))
            })
            .map(|f| {
                f.remaining -= 1;
                f.clone()
            })
    };
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    state.calls.lock().expect("proxy lock").push(Call {
        operation: operation.clone(),
        body: parsed,
        faulted: fault.is_some(),
    });
    if let Some(fault) = fault {
        let body = serde_json::json!({"__type": fault.code, "message": format!("injected {} by the local stack", fault.code)});
        let status =
            StatusCode::from_u16(fault.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return (
            status,
            [("content-type", "application/x-amz-json-1.1")],
            body.to_string(),
        )
            .into_response();
    }
    let url = format!(
        "{}{}",
        state.upstream,
        uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
    );
    let mut request = state.client.request(method, url).body(body);
    for (name, value) in headers.iter() {
        if name != "host" && name != "content-length" {
            request = request.header(name, value);
        }
    }
    match request.send().await {
        Ok(upstream) => {
            let status = upstream.status();
            let mut out = HeaderMap::new();
            for (name, value) in upstream.headers() {
                if name != "content-length" && name != "transfer-encoding" {
                    out.insert(name.clone(), value.clone());
                }
            }
            let bytes = upstream.bytes().await.unwrap_or_default();
            (status, out, bytes).into_response()
        }
        Err(err) => (StatusCode::BAD_GATEWAY, err.to_string()).into_response(),
    }
}
