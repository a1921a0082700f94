//! A loopback stand-in for the Lambda service API, so functions (and tests)
//! reach the local functions with the real `aws-sdk-lambda` through
//! `AWS_ENDPOINT_URL_LAMBDA`:
//!
//! - `POST /2015-03-31/functions/{name}/invocations` (Invoke):
//!   `X-Amz-Invocation-Type: Event` answers 202 at once and delivers the
//!   payload in the background, in order per function, retrying a failed
//!   invocation twice (as Lambda's asynchronous invocation does, with
//!   shorter waits) before keeping it as a dead letter; `RequestResponse`
//!   (the default) runs the function and answers 200 with its response, or
//!   with `X-Amz-Function-Error: Unhandled` and the error when it fails;
//!   `DryRun` answers 204.
//! - `GET /2021-10-31/functions/{name}/url` (GetFunctionUrlConfig) for
//!   functions that have a URL server.
//!
//! Functions are named as the API allows: name, `name:$LATEST`, partial ARN
//! (`123456789012:function:name`) or full ARN. An unknown function answers
//! 404 `ResourceNotFoundException`, as AWS does.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tracing::warn;

use crate::delivery::{DeadLetters, DeliveryLog};
use crate::runtime::{Function, InvokeError};

/// How long the local stack waits before each retry of a failed
/// asynchronous invocation (× attempt): AWS waits about 1 and 2 minutes.
pub const ASYNC_RETRY_DELAY: Duration = Duration::from_secs(1);

/// Where an accepted asynchronous invocation is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AsyncState {
    Queued,
    Running,
    Succeeded,
    /// Every attempt failed; the event went to the dead letters.
    Failed {
        error: String,
    },
}

/// One `Event` invocation the API accepted.
#[derive(Debug, Clone)]
pub struct AsyncInvocation {
    /// The `x-amzn-RequestId` the caller got with its 202.
    pub request_id: String,
    pub function: String,
    pub payload: Value,
    pub attempts: u32,
    pub state: AsyncState,
}

struct Registered {
    function: Arc<Function>,
    queue: mpsc::UnboundedSender<(usize, Value)>,
    url: Option<UrlConfig>,
}

#[derive(Clone)]
struct UrlConfig {
    url: String,
    created: String,
}

struct ApiState {
    functions: Mutex<HashMap<String, Registered>>,
    /// Access key id -> the actions its identity is allowed (IAM action
    /// patterns, `lambda:*`, `*`). Empty: every caller is let in.
    callers: Mutex<HashMap<String, Vec<String>>>,
    invocations: Mutex<Vec<AsyncInvocation>>,
    changed: Notify,
    log: DeliveryLog,
    dead: DeadLetters,
    retry_delay: Duration,
}

/// The Lambda API on loopback.
#[derive(Clone)]
pub struct LambdaApi {
    /// `http://127.0.0.1:PORT`: what `AWS_ENDPOINT_URL_LAMBDA` is set to.
    pub endpoint: String,
    state: Arc<ApiState>,
    _server: Arc<AbortOnDrop>,
}

/// Stops a spawned server or worker when the last handle goes.
pub(crate) struct AbortOnDrop(pub(crate) Vec<JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

impl LambdaApi {
    /// Starts the API; asynchronous deliveries are recorded in `log`, and
    /// events that ran out of retries go to `dead`.
    pub async fn start(log: DeliveryLog, dead: DeadLetters) -> anyhow::Result<Self> {
        Self::start_with_retry_delay(log, dead, ASYNC_RETRY_DELAY).await
    }

    pub async fn start_with_retry_delay(
        log: DeliveryLog,
        dead: DeadLetters,
        retry_delay: Duration,
    ) -> anyhow::Result<Self> {
        let state = Arc::new(ApiState {
            functions: Mutex::new(HashMap::new()),
            callers: Mutex::new(HashMap::new()),
            invocations: Mutex::new(Vec::new()),
            changed: Notify::new(),
            log,
            dead,
            retry_delay,
        });
        let app = Router::new()
            .route("/2015-03-31/functions/{name}/invocations", post(invoke))
            .route("/2021-10-31/functions/{name}/url", get(get_url_config))
            .fallback(unknown_operation)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            endpoint,
            state,
            _server: Arc::new(AbortOnDrop(vec![server])),
        })
    }

    /// Makes `function` reachable through the API by its name or ARN.
    pub fn register(&self, function: Arc<Function>) {
        let (queue, receiver) = mpsc::unbounded_channel();
        tokio::spawn(run_async_queue(
            Arc::downgrade(&self.state),
            function.clone(),
            receiver,
        ));
        self.state
            .functions
            .lock()
            .expect("lambda api lock")
            .insert(
                function.name().to_owned(),
                Registered {
                    function,
                    queue,
                    url: None,
                },
            );
    }

    /// Lets the identity signing with `access_key_id` perform `actions` (IAM
    /// action patterns such as `lambda:InvokeFunction`, `lambda:*`, `*`).
    /// Once any caller is registered, the API checks every request as IAM
    /// would (actions, not resources): unsigned or unknown keys get
    /// `UnrecognizedClientException`, a missing action
    /// `AccessDeniedException`, both 403.
    pub fn allow(&self, access_key_id: &str, actions: Vec<String>) {
        self.state
            .callers
            .lock()
            .expect("lambda api lock")
            .insert(access_key_id.to_owned(), actions);
    }

    /// Records `url` as the function's URL (what GetFunctionUrlConfig answers).
    pub fn set_function_url(&self, function: &str, url: &str) -> anyhow::Result<()> {
        let mut functions = self.state.functions.lock().expect("lambda api lock");
        let registered = functions
            .get_mut(function)
            .ok_or_else(|| anyhow::anyhow!("{function} is not registered with the Lambda API"))?;
        registered.url = Some(UrlConfig {
            url: url.to_owned(),
            created: now_iso8601(),
        });
        Ok(())
    }

    /// A Lambda client aimed at this API, with `sdk`'s region and credentials.
    pub fn client(&self, sdk: &aws_config::SdkConfig) -> aws_sdk_lambda::Client {
        aws_sdk_lambda::Client::new(&sdk.to_builder().endpoint_url(&self.endpoint).build())
    }

    /// Every asynchronous invocation accepted so far, oldest first.
    pub fn invocations(&self) -> Vec<AsyncInvocation> {
        self.state
            .invocations
            .lock()
            .expect("lambda api lock")
            .clone()
    }

    /// Asynchronous invocations of one function, oldest first.
    pub fn invocations_of(&self, function: &str) -> Vec<AsyncInvocation> {
        self.invocations()
            .into_iter()
            .filter(|i| i.function == function)
            .collect()
    }

    /// Waits until no asynchronous invocation is queued or running.
    pub async fn wait_idle(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let changed = self.state.changed.notified();
            let busy = self
                .invocations()
                .iter()
                .filter(|i| matches!(i.state, AsyncState::Queued | AsyncState::Running))
                .count();
            if busy == 0 {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                anyhow::bail!("{busy} asynchronous invocations still pending after {timeout:?}");
            }
        }
    }
}

/// Delivers one function's asynchronous invocations, in order.
async fn run_async_queue(
    state: std::sync::Weak<ApiState>,
    function: Arc<Function>,
    mut receiver: mpsc::UnboundedReceiver<(usize, Value)>,
) {
    while let Some((index, payload)) = receiver.recv().await {
        let Some(state) = state.upgrade() else { return };
        let mut last_error = String::new();
        let mut succeeded = false;
        // One request id for the invocation and its retries, as Lambda keeps it.
        let request_id = function.new_request_id();
        for attempt in 0..3u32 {
            state.update(index, |i| {
                i.attempts = attempt + 1;
                i.state = AsyncState::Running;
            });
            state.log.record(function.name(), &payload);
            let outcome = {
                let function = function.clone();
                let payload = payload.clone();
                let request_id = request_id.clone();
                tokio::spawn(async move { function.invoke_as(&request_id, &payload).await }).await
            };
            match outcome {
                Ok(Ok(_)) => {
                    succeeded = true;
                    break;
                }
                Ok(Err(err)) => last_error = err.to_string(),
                Err(join) => last_error = format!("invocation task failed: {join}"),
            }
            warn!(function = function.name(), attempt, error = %last_error, "asynchronous invocation failed");
            if attempt < 2 {
                tokio::time::sleep(state.retry_delay * (attempt + 1)).await;
            }
        }
        if succeeded {
            state.update(index, |i| i.state = AsyncState::Succeeded);
        } else {
            state
                .dead
                .push(json!({"function": function.name(), "event": payload}));
            state.update(index, |i| {
                i.state = AsyncState::Failed {
                    error: last_error.clone(),
                }
            });
        }
    }
}

impl ApiState {
    fn update(&self, index: usize, change: impl FnOnce(&mut AsyncInvocation)) {
        if let Some(invocation) = self
            .invocations
            .lock()
            .expect("lambda api lock")
            .get_mut(index)
        {
            change(invocation);
        }
        self.changed.notify_waiters();
    }

    /// The registered function a name, qualified name or ARN refers to;
    /// else the 404 Lambda answers.
    fn lookup(
        &self,
        reference: &str,
        qualifier: Option<&str>,
    ) -> Result<Arc<Function>, Box<Response>> {
        let (name, embedded) = parse_function_reference(reference);
        let qualifier = qualifier.or(embedded.as_deref());
        let functions = self.functions.lock().expect("lambda api lock");
        match (functions.get(&name), qualifier) {
            (Some(registered), None | Some("$LATEST")) => Ok(registered.function.clone()),
            _ => {
                let mut arn = function_arn(&name);
                if let Some(q) = qualifier {
                    arn = format!("{arn}:{q}");
                }
                Err(Box::new(aws_error(
                    StatusCode::NOT_FOUND,
                    "ResourceNotFoundException",
                    &format!("Function not found: {arn}"),
                )))
            }
        }
    }
}

fn function_arn(name: &str) -> String {
    format!(
        "arn:aws:lambda:{}:{}:function:{name}",
        crate::account::REGION,
        crate::account::ACCOUNT_ID
    )
}

/// Splits a FunctionName parameter into the name and its qualifier.
pub fn parse_function_reference(reference: &str) -> (String, Option<String>) {
    let parts: Vec<&str> = reference.split(':').collect();
    let (name, qualifier) = if reference.starts_with("arn:") {
        // arn:aws:lambda:region:account:function:name[:qualifier]
        (parts.get(6).copied(), parts.get(7).copied())
    } else if parts.get(1) == Some(&"function") {
        // account:function:name[:qualifier]
        (parts.get(2).copied(), parts.get(3).copied())
    } else {
        (parts.first().copied(), parts.get(1).copied())
    };
    (
        name.unwrap_or_default().to_owned(),
        qualifier.map(str::to_owned),
    )
}

/// The `Qualifier` query parameter, if any.
fn qualifier(uri: &Uri) -> Option<String> {
    uri.query()?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == "Qualifier").then(|| {
            percent_encoding::percent_decode_str(value)
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

/// An AWS REST-JSON error as Lambda sends it.
fn aws_error(status: StatusCode, code: &str, message: &str) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert("x-amzn-errortype", header(code));
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    headers.insert("x-amzn-requestid", header(&request_id()));
    (
        status,
        headers,
        json!({"Type": "User", "Message": message}).to_string(),
    )
        .into_response()
}

fn header(value: &str) -> HeaderValue {
    HeaderValue::from_str(value).unwrap_or(HeaderValue::from_static(""))
}

async fn unknown_operation() -> Response {
    aws_error(
        StatusCode::NOT_FOUND,
        "UnknownOperationException",
        "the local Lambda API implements Invoke and GetFunctionUrlConfig only",
    )
}

/// The access key id of a SigV4 `Authorization` header.
fn access_key_id(headers: &HeaderMap) -> Option<String> {
    let authorization = headers.get("authorization")?.to_str().ok()?;
    let credential = authorization.split("Credential=").nth(1)?;
    Some(credential.split('/').next()?.to_owned())
}

impl ApiState {
    /// `None` when the caller may perform `action` on `function`.
    fn refuse(&self, headers: &HeaderMap, action: &str, function: &str) -> Option<Response> {
        let callers = self.callers.lock().expect("lambda api lock");
        if callers.is_empty() {
            return None;
        }
        let Some(key) = access_key_id(headers) else {
            return Some(aws_error(
                StatusCode::FORBIDDEN,
                "MissingAuthenticationTokenException",
                "Missing Authentication Token",
            ));
        };
        let Some(allowed) = callers.get(&key) else {
            return Some(aws_error(
                StatusCode::FORBIDDEN,
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            ));
        };
        if allowed
            .iter()
            .any(|p| crate::iam::action_matches(p, action))
        {
            return None;
        }
        Some(aws_error(
            StatusCode::FORBIDDEN,
            "AccessDeniedException",
            &format!(
                "User: {key} is not authorized to perform: {action} on resource: {} because no identity-based policy allows the {action} action",
                function_arn(function)
            ),
        ))
    }
}

async fn invoke(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let function = match state.lookup(&name, qualifier(&uri).as_deref()) {
        Ok(function) => function,
        Err(response) => return *response,
    };
    if let Some(refused) = state.refuse(&headers, "lambda:InvokeFunction", function.name()) {
        return refused;
    }
    let payload: Value = if body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(&body) {
            Ok(value) => value,
            Err(err) => {
                return aws_error(
                    StatusCode::BAD_REQUEST,
                    "InvalidRequestContentException",
                    &format!("Could not parse request body into json: {err}"),
                )
            }
        }
    };
    let invocation_type = headers
        .get("x-amz-invocation-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("RequestResponse");
    let request_id = request_id();
    let mut out = HeaderMap::new();
    out.insert("x-amzn-requestid", header(&request_id));
    match invocation_type {
        "Event" => {
            let index = {
                let mut invocations = state.invocations.lock().expect("lambda api lock");
                invocations.push(AsyncInvocation {
                    request_id,
                    function: function.name().to_owned(),
                    payload: payload.clone(),
                    attempts: 0,
                    state: AsyncState::Queued,
                });
                invocations.len() - 1
            };
            let queued = state
                .functions
                .lock()
                .expect("lambda api lock")
                .get(function.name())
                .map(|r| r.queue.send((index, payload)).is_ok())
                .unwrap_or(false);
            if !queued {
                return aws_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "ServiceException",
                    "the local asynchronous queue is gone",
                );
            }
            state.changed.notify_waiters();
            (StatusCode::ACCEPTED, out).into_response()
        }
        "DryRun" => (StatusCode::NO_CONTENT, out).into_response(),
        "RequestResponse" => {
            out.insert("content-type", HeaderValue::from_static("application/json"));
            out.insert(
                "x-amz-executed-version",
                HeaderValue::from_static("$LATEST"),
            );
            // Run detached: a caller that hangs up does not cut the
            // invocation short (Lambda finishes it anyway).
            let outcome = tokio::spawn(async move { function.invoke(&payload).await })
                .await
                .unwrap_or_else(|join| {
                    Err(InvokeError::Crashed {
                        message: format!("invocation task failed: {join}"),
                    })
                });
            match outcome {
                Ok(value) => (StatusCode::OK, out, value.to_string()).into_response(),
                Err(err) => {
                    out.insert(
                        "x-amz-function-error",
                        HeaderValue::from_static("Unhandled"),
                    );
                    (StatusCode::OK, out, function_error_body(&err).to_string()).into_response()
                }
            }
        }
        other => aws_error(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValueException",
            &format!("invalid X-Amz-Invocation-Type {other:?}"),
        ),
    }
}

/// The payload Lambda answers a failed synchronous invocation with.
pub fn function_error_body(err: &InvokeError) -> Value {
    match err {
        InvokeError::Function {
            error_type,
            message,
        } => json!({"errorType": error_type, "errorMessage": message}),
        InvokeError::Init { message } => {
            json!({"errorType": "Runtime.InitError", "errorMessage": message})
        }
        InvokeError::TimedOut { .. } => {
            json!({"errorType": "Sandbox.Timedout", "errorMessage": err.to_string()})
        }
        InvokeError::Crashed { message } => {
            json!({"errorType": "Runtime.ExitError", "errorMessage": message})
        }
    }
}

async fn get_url_config(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let function = match state.lookup(&name, qualifier(&uri).as_deref()) {
        Ok(function) => function,
        Err(response) => return *response,
    };
    if let Some(refused) = state.refuse(&headers, "lambda:GetFunctionUrlConfig", function.name()) {
        return refused;
    }
    let config = state
        .functions
        .lock()
        .expect("lambda api lock")
        .get(function.name())
        .and_then(|r| r.url.clone());
    let Some(config) = config else {
        return aws_error(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            "The resource you requested does not exist.",
        );
    };
    let body = json!({
        "FunctionUrl": config.url,
        "FunctionArn": function.arn(),
        "AuthType": "NONE",
        "CreationTime": config.created,
        "LastModifiedTime": config.created,
        "InvokeMode": "BUFFERED",
    });
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    headers.insert("x-amzn-requestid", header(&request_id()));
    (StatusCode::OK, headers, body.to_string()).into_response()
}

/// A request id shaped like Lambda's (a UUID), unique in this process.
pub(crate) fn request_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        (nanos >> 32) as u32,
        (nanos >> 16) as u16,
        std::process::id() & 0xfff,
        nanos & 0xfff,
        n & 0xffff_ffff_ffff
    )
}

/// Now as Lambda writes configuration times: `2026-01-02T03:04:05.678+0000`.
fn now_iso8601() -> String {
    let now = time::OffsetDateTime::now_utc();
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]+0000"
    );
    now.format(&format).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_references_name_the_function_and_qualifier() {
        let cases = [
            ("site", ("site", None)),
            ("site:$LATEST", ("site", Some("$LATEST"))),
            ("123456789012:function:site", ("site", None)),
            ("123456789012:function:site:live", ("site", Some("live"))),
            (
                "arn:aws:lambda:us-east-1:123456789012:function:site",
                ("site", None),
            ),
            (
                "arn:aws:lambda:us-east-1:123456789012:function:site:$LATEST",
                ("site", Some("$LATEST")),
            ),
        ];
        for (reference, (name, qualifier)) in cases {
            assert_eq!(
                parse_function_reference(reference),
                (name.to_owned(), qualifier.map(str::to_owned)),
                "{reference}"
            );
        }
    }

    use aws_sdk_lambda::primitives::Blob;
    use aws_sdk_lambda::types::InvocationType;

    use crate::test_function::ScriptFunction;

    fn client(api: &LambdaApi) -> aws_sdk_lambda::Client {
        client_as(api, "testing")
    }

    fn client_as(api: &LambdaApi, key: &str) -> aws_sdk_lambda::Client {
        let config = aws_sdk_lambda::Config::builder()
            .behavior_version(aws_sdk_lambda::config::BehaviorVersion::latest())
            .region(aws_sdk_lambda::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_lambda::config::Credentials::new(
                key, "testing", None, None, "test",
            ))
            .endpoint_url(&api.endpoint)
            .build();
        aws_sdk_lambda::Client::from_conf(config)
    }

    async fn api_with(function: &ScriptFunction) -> (LambdaApi, DeliveryLog, DeadLetters) {
        let log = DeliveryLog::default();
        let dead = DeadLetters::default();
        let api =
            LambdaApi::start_with_retry_delay(log.clone(), dead.clone(), Duration::from_millis(20))
                .await
                .unwrap();
        api.register(function.function.clone());
        (api, log, dead)
    }

    fn payload_json(payload: Option<&Blob>) -> Value {
        serde_json::from_slice(payload.expect("a payload").as_ref()).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn once_callers_are_registered_only_those_allowed_the_action_get_in() {
        let function = ScriptFunction::start("dev-guarded", 1).await;
        let (api, _, _) = api_with(&function).await;
        api.allow(
            "invoker",
            vec!["logs:PutLogEvents".into(), "lambda:Invoke*".into()],
        );
        api.allow("logger", vec!["logs:*".into()]);
        let invoke = |key: &'static str| {
            let lambda = client_as(&api, key);
            async move {
                lambda
                    .invoke()
                    .function_name("dev-guarded")
                    .payload(Blob::new("{}"))
                    .send()
                    .await
            }
        };
        assert_eq!(invoke("invoker").await.unwrap().status_code(), 200);
        for (key, code, message) in [
            (
                "logger",
                "AccessDeniedException",
                "User: logger is not authorized to perform: lambda:InvokeFunction on resource: arn:aws:lambda:us-east-1:123456789012:function:dev-guarded",
            ),
            (
                "stranger",
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            ),
        ] {
            let error = invoke(key).await.unwrap_err();
            let error = error.into_service_error();
            assert_eq!(error.meta().code(), Some(code), "{key}");
            assert!(
                error.meta().message().unwrap_or_default().starts_with(message),
                "{key}: {error:?}"
            );
        }
        let url = client_as(&api, "invoker")
            .get_function_url_config()
            .function_name("dev-guarded")
            .send()
            .await
            .unwrap_err();
        assert_eq!(
            url.into_service_error().meta().code(),
            Some("AccessDeniedException")
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn request_response_answers_with_the_function_result_or_its_error() {
        let function = ScriptFunction::start("dev-echo", 1).await;
        let (api, _, _) = api_with(&function).await;
        let lambda = client(&api);

        let out = lambda
            .invoke()
            .function_name("dev-echo")
            .payload(Blob::new(r#"{"hello":"world"}"#))
            .send()
            .await
            .unwrap();
        assert_eq!(out.status_code(), 200);
        assert_eq!(out.function_error(), None);
        assert_eq!(out.executed_version(), Some("$LATEST"));
        assert_eq!(
            payload_json(out.payload()),
            json!({"echo": {"hello": "world"}})
        );

        // By ARN, qualified with $LATEST, and with no payload at all ({}).
        let out = lambda
            .invoke()
            .function_name(function.function.arn())
            .qualifier("$LATEST")
            .send()
            .await
            .unwrap();
        assert_eq!(payload_json(out.payload()), json!({"echo": {}}));

        // A handler error: 200, Unhandled, the error as the payload.
        let out = lambda
            .invoke()
            .function_name("123456789012:function:dev-echo")
            .payload(Blob::new(r#"{"fail":true}"#))
            .send()
            .await
            .unwrap();
        assert_eq!(out.status_code(), 200);
        assert_eq!(out.function_error(), Some("Unhandled"));
        assert_eq!(
            payload_json(out.payload()),
            json!({"errorType": "Boom", "errorMessage": "asked to fail"})
        );

        // DryRun.
        let out = lambda
            .invoke()
            .function_name("dev-echo")
            .invocation_type(InvocationType::DryRun)
            .send()
            .await
            .unwrap();
        assert_eq!(out.status_code(), 204);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unknown_functions_and_qualifiers_are_resource_not_found() {
        let function = ScriptFunction::start("dev-known", 1).await;
        let (api, _, _) = api_with(&function).await;
        let lambda = client(&api);
        for (name, qualifier) in [("dev-unknown", None), ("dev-known", Some("7"))] {
            let err = lambda
                .invoke()
                .function_name(name)
                .set_qualifier(qualifier.map(str::to_owned))
                .send()
                .await
                .unwrap_err()
                .into_service_error();
            assert!(err.is_resource_not_found_exception(), "{err:?}");
            let message = err.meta().message().unwrap_or_default().to_owned();
            assert!(
                message.starts_with(&format!(
                    "Function not found: arn:aws:lambda:us-east-1:123456789012:function:{name}"
                )),
                "{message}"
            );
        }
        let err = lambda
            .get_function_url_config()
            .function_name("dev-unknown")
            .send()
            .await
            .unwrap_err()
            .into_service_error();
        assert!(err.is_resource_not_found_exception(), "{err:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn events_are_accepted_at_once_and_delivered_in_order_with_retries() {
        let function = ScriptFunction::start("dev-async", 1).await;
        let (api, log, dead) = api_with(&function).await;
        let lambda = client(&api);
        let payloads = [
            json!({"n": 1}),
            json!({"n": 2, "flaky": true}),
            json!({"n": 3, "fail": true}),
            json!({"n": 4}),
        ];
        for payload in &payloads {
            let out = lambda
                .invoke()
                .function_name("dev-async")
                .invocation_type(InvocationType::Event)
                .payload(Blob::new(payload.to_string()))
                .send()
                .await
                .unwrap();
            assert_eq!(out.status_code(), 202);
            assert!(out.payload().is_none_or(|p| p.as_ref().is_empty()));
        }
        api.wait_idle(Duration::from_secs(30)).await.unwrap();

        let invocations = api.invocations_of("dev-async");
        let summary: Vec<(u32, AsyncState)> = invocations
            .iter()
            .map(|i| (i.attempts, i.state.clone()))
            .collect();
        assert_eq!(
            summary,
            [
                (1, AsyncState::Succeeded),
                (3, AsyncState::Succeeded),
                (
                    3,
                    AsyncState::Failed {
                        error: "Boom: asked to fail".into()
                    }
                ),
                (1, AsyncState::Succeeded),
            ]
        );
        assert!(invocations.iter().all(|i| i.request_id.len() == 36));
        // In order: each retry before the next event.
        let received: Vec<i64> = function
            .events()
            .iter()
            .map(|e| e["n"].as_i64().unwrap())
            .collect();
        assert_eq!(received, [1, 2, 2, 2, 3, 3, 3, 4]);
        assert_eq!(log.events("dev-async").len(), 8);
        assert_eq!(
            dead.all(),
            [json!({"function": "dev-async", "event": payloads[2]})]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn get_function_url_config_answers_for_functions_with_a_url() {
        let function = ScriptFunction::start("dev-site", 1).await;
        let (api, _, _) = api_with(&function).await;
        let lambda = client(&api);
        let err = lambda
            .get_function_url_config()
            .function_name("dev-site")
            .send()
            .await
            .unwrap_err()
            .into_service_error();
        assert!(err.is_resource_not_found_exception(), "{err:?}");

        api.set_function_url("dev-site", "http://127.0.0.1:9/")
            .unwrap();
        let config = lambda
            .get_function_url_config()
            .function_name(function.function.arn())
            .send()
            .await
            .unwrap();
        assert_eq!(config.function_url(), "http://127.0.0.1:9/");
        assert_eq!(
            config.function_arn(),
            "arn:aws:lambda:us-east-1:123456789012:function:dev-site"
        );
        assert_eq!(
            config.auth_type(),
            &aws_sdk_lambda::types::FunctionUrlAuthType::None
        );
        assert_eq!(
            config.invoke_mode(),
            Some(&aws_sdk_lambda::types::InvokeMode::Buffered)
        );
        let created = config.creation_time();
        assert_eq!(
            created.len(),
            "2026-01-02T03:04:05.678+0000".len(),
            "{created}"
        );
        assert_eq!(config.last_modified_time(), created);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 3)]
    async fn a_scaled_function_runs_concurrent_invocations_side_by_side() {
        let function = ScriptFunction::start("dev-scaled", 2).await;
        let (one, two) = (json!({"sleep": 1}), json!({"sleep": 2}));
        let started = std::time::Instant::now();
        let (a, b) = tokio::join!(
            function.function.invoke(&one),
            function.function.invoke(&two),
        );
        assert_eq!((a.unwrap(), b.unwrap()), (json!("slept"), json!("slept")));
        assert!(
            started.elapsed() < Duration::from_millis(1900),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(function.function.environments().await, 2);

        // One environment: the second waits for the first.
        let single = ScriptFunction::start("dev-single", 1).await;
        let started = std::time::Instant::now();
        let (a, b) = tokio::join!(single.function.invoke(&one), single.function.invoke(&two));
        assert!(a.is_ok() && b.is_ok());
        assert!(started.elapsed() >= Duration::from_secs(2));
        assert_eq!(single.function.environments().await, 1);
    }

    #[test]
    fn request_ids_are_distinct_uuids() {
        let a = request_id();
        let b = request_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36, "{a}");
        assert_eq!(a.matches('-').count(), 4, "{a}");
    }
}
