//! A loopback stand-in for the CloudFront KeyValueStore data-plane API
//! (`cloudfront-keyvaluestore`), which moto does not have: one store, the
//! REST paths and JSON shapes of DescribeKeyValueStore, GetKey, PutKey,
//! DeleteKey and ListKeys, writes guarded by the store's ETag (`If-Match`),
//! and requests accepted only when signed as AWS requires: SigV4A
//! (`AWS4-ECDSA-P256-SHA256`) with the caller's registered secret key.
//!
//! The signature is checked by rebuilding the canonical request and the
//! string to sign from the request as received and signing them again
//! with the caller's key: SigV4A signatures are deterministic (RFC 6979),
//! so a correct one matches byte for byte.
//!
//! The SDK's endpoint rules put the ARN's account in front of the host
//! (`https://{account}.cloudfront-kvs.global.api.aws`), a custom endpoint
//! included: `http://x:1` becomes `http://{account}.x:1`. Nothing on
//! loopback answers to `123456789012.127.0.0.1`, so the store's ARN names
//! the account [`LOOPBACK_ACCOUNT`] (`127`) and [`KvsDouble::endpoint_url`]
//! is `http://0.0.1:PORT`, which the rules turn into `http://127.0.0.1:PORT`.
//!
//! Once any caller is given actions ([`KvsDouble::allow`]), each signed
//! request is also checked as IAM would: its access key must be allowed the
//! action (`cloudfront-keyvaluestore:PutKey` …), else `AccessDeniedException`.
//! [`KvsDouble::fault_next`] makes the next request of one method wait or
//! be throttled, as AWS sometimes does.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::body::{to_bytes, Body};
use axum::extract::State;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::lambda_api::AbortOnDrop;

/// The only algorithm the KeyValueStore API accepts.
pub const SIGV4A: &str = "AWS4-ECDSA-P256-SHA256";
/// The signing name in the credential scope.
pub const SERVICE: &str = "cloudfront-keyvaluestore";
/// The account the local store's ARN names (see the module docs).
pub const LOOPBACK_ACCOUNT: &str = "127";
/// How far a request's `X-Amz-Date` may be from now, as on AWS.
const MAX_SKEW: time::Duration = time::Duration::minutes(15);
/// ListKeys' page size when the caller names none, and its limit.
const DEFAULT_PAGE: usize = 10;
const MAX_PAGE: usize = 50;
/// Limits of one key and one value, in bytes.
const MAX_KEY: usize = 1024;
const MAX_VALUE: usize = 1024;

/// Everything but the unreserved characters, as SigV4 encodes.
const SIGV4_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
/// The same, keeping `/` (canonical paths).
const SIGV4_PATH: &AsciiSet = &SIGV4_ENCODE.remove(b'/');

/// A caller's credentials, as its environment holds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

/// One request the double answered.
#[derive(Debug, Clone)]
pub struct KvsCall {
    pub method: String,
    pub path: String,
    /// The `Authorization` header as received.
    pub authorization: Option<String>,
    /// The signing algorithm named in it.
    pub algorithm: Option<String>,
    pub access_key_id: Option<String>,
    pub status: u16,
    /// The error code answered, if any.
    pub error: Option<String>,
}

#[derive(Debug)]
struct Store {
    arn: String,
    items: BTreeMap<String, String>,
    etag: String,
    version: u64,
    created: OffsetDateTime,
    last_modified: OffsetDateTime,
}

impl Store {
    /// A new ETag: the store's version changes on every write.
    fn touch(&mut self) {
        self.version += 1;
        self.etag = format!("KV{:04X}{:08X}", self.version, fastrand::u32(..));
        self.last_modified = OffsetDateTime::now_utc();
    }

    fn size(&self) -> usize {
        self.items.iter().map(|(k, v)| k.len() + v.len()).sum()
    }

    fn counts(&self) -> Value {
        json!({ "ItemCount": self.items.len(), "TotalSizeInBytes": self.size() })
    }
}

/// What [`KvsDouble::fault_next`] does to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvsFault {
    /// Held this long after it arrived, then carried out as usual.
    Hold(std::time::Duration),
    /// Refused with `ThrottlingException` (429), which the SDK retries.
    Throttle,
}

#[derive(Debug)]
struct KvsState {
    store: Mutex<Store>,
    credentials: Mutex<HashMap<String, Credentials>>,
    calls: Mutex<Vec<KvsCall>>,
    /// Access key id → the IAM actions it is allowed (`*` patterns); empty:
    /// no IAM check.
    allowed: Mutex<HashMap<String, Vec<String>>>,
    /// Faults armed for the next requests of a method, in order.
    faults: Mutex<Vec<(Method, KvsFault)>>,
    /// Requests being held by a [`KvsFault::Hold`] now.
    holding: std::sync::atomic::AtomicUsize,
}

/// The KeyValueStore double: one store, served on a loopback port.
#[derive(Clone)]
pub struct KvsDouble {
    pub port: u16,
    /// The store's ARN (`LIVE_STORE_ARN`).
    pub arn: String,
    state: Arc<KvsState>,
    _server: Arc<AbortOnDrop>,
}

impl KvsDouble {
    /// Starts an empty store named `name` (its ARN's resource id).
    pub async fn start(name: &str) -> anyhow::Result<Self> {
        let arn = format!("arn:aws:cloudfront::{LOOPBACK_ACCOUNT}:key-value-store/{name}");
        let now = OffsetDateTime::now_utc();
        let mut store = Store {
            arn: arn.clone(),
            items: BTreeMap::new(),
            etag: String::new(),
            version: 0,
            created: now,
            last_modified: now,
        };
        store.touch();
        let state = Arc::new(KvsState {
            store: Mutex::new(store),
            credentials: Mutex::new(HashMap::new()),
            calls: Mutex::new(Vec::new()),
            allowed: Mutex::new(HashMap::new()),
            faults: Mutex::new(Vec::new()),
            holding: std::sync::atomic::AtomicUsize::new(0),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let app = Router::new().fallback(serve).with_state(state.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            port,
            arn,
            state,
            _server: Arc::new(AbortOnDrop(vec![server])),
        })
    }

    /// What a client's `AWS_ENDPOINT_URL_CLOUDFRONT_KEYVALUESTORE` must be:
    /// the SDK puts the ARN's account (`127.`) in front of this host.
    pub fn endpoint_url(&self) -> String {
        format!("http://0.0.1:{}", self.port)
    }

    /// Where the requests arrive (the endpoint after the SDK's rules).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Lets `access_key_id` in when it signs with `credentials`.
    pub fn register(&self, access_key_id: &str, credentials: Credentials) {
        self.state
            .credentials
            .lock()
            .expect("kvs lock")
            .insert(access_key_id.to_owned(), credentials);
    }

    /// Allows `access_key_id` the IAM `actions` (patterns such as
    /// `cloudfront-keyvaluestore:*`). From the first call on, every caller
    /// needs its action allowed.
    pub fn allow(&self, access_key_id: &str, actions: Vec<String>) {
        self.state
            .allowed
            .lock()
            .expect("kvs lock")
            .insert(access_key_id.to_owned(), actions);
    }

    /// The next request with `method` (`PUT`, `GET`, `DELETE`) that is
    /// signed and allowed gets `fault`; faults armed for one method apply
    /// in the order they were armed, one request each.
    pub fn fault_next(&self, method: Method, fault: KvsFault) {
        self.state
            .faults
            .lock()
            .expect("kvs lock")
            .push((method, fault));
    }

    /// How many requests a [`KvsFault::Hold`] is holding now.
    pub fn holding(&self) -> usize {
        self.state.holding.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Registers the credentials a process environment holds
    /// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`);
    /// `false` when it holds none.
    pub fn register_env(&self, env: &[(String, String)]) -> bool {
        let var = |name: &str| {
            env.iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .filter(|v| !v.is_empty())
        };
        match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
            (Some(key), Some(secret)) => {
                self.register(
                    &key,
                    Credentials {
                        secret_access_key: secret,
                        session_token: var("AWS_SESSION_TOKEN"),
                    },
                );
                true
            }
            _ => false,
        }
    }

    /// The value of `key`, as the router's `kvs.get` would read it.
    pub fn get(&self, key: &str) -> Option<String> {
        self.lock_store().items.get(key).cloned()
    }

    /// Every key and value.
    pub fn items(&self) -> BTreeMap<String, String> {
        self.lock_store().items.clone()
    }

    /// The store's current ETag.
    pub fn etag(&self) -> String {
        self.lock_store().etag.clone()
    }

    /// Writes `key` directly, as an operator with the console would (a
    /// write like any other: the ETag changes).
    pub fn put_directly(&self, key: &str, value: &str) {
        let mut store = self.lock_store();
        store.items.insert(key.to_owned(), value.to_owned());
        store.touch();
    }

    /// Every request answered so far.
    pub fn calls(&self) -> Vec<KvsCall> {
        self.state.calls.lock().expect("kvs lock").clone()
    }

    fn lock_store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.state.store.lock().expect("kvs lock")
    }
}

/// An error answer in the restJson1 shape the SDK parses.
#[derive(Debug)]
struct KvsError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl KvsError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
}

fn error_response(error: &KvsError) -> Response {
    (
        error.status,
        [
            ("x-amzn-errortype", error.code.to_owned()),
            ("content-type", "application/json".to_owned()),
        ],
        json!({ "Message": error.message }).to_string(),
    )
        .into_response()
}

async fn serve(State(state): State<Arc<KvsState>>, request: Request<Body>) -> Response {
    let (parts, body) = request.into_parts();
    let authorization = parts
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut call = KvsCall {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        algorithm: authorization
            .as_deref()
            .and_then(|a| a.split_whitespace().next())
            .map(str::to_owned),
        authorization,
        access_key_id: None,
        status: 0,
        error: None,
    };
    let body = match to_bytes(body, 1 << 20).await {
        Ok(body) => body,
        Err(err) => {
            let error = KvsError::new(
                StatusCode::BAD_REQUEST,
                "ValidationException",
                err.to_string(),
            );
            return record(&state, call, error_response(&error), Some(error.code));
        }
    };
    let outcome = match authenticate(&state, &parts.method, &parts.uri, &parts.headers, &body)
        .and_then(|key| authorize(&state, key, &parts.method, &parts.uri))
    {
        Ok(key) => {
            call.access_key_id = Some(key);
            let fault = {
                let mut faults = state.faults.lock().expect("kvs lock");
                faults
                    .iter()
                    .position(|(method, _)| *method == parts.method)
                    .map(|at| faults.remove(at).1)
            };
            match fault {
                Some(KvsFault::Throttle) => Err(KvsError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "ThrottlingException",
                    "Rate exceeded (a fault armed by the test)".to_owned(),
                )),
                Some(KvsFault::Hold(delay)) => {
                    use std::sync::atomic::Ordering;
                    state.holding.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(delay).await;
                    state.holding.fetch_sub(1, Ordering::SeqCst);
                    operate(&state, &parts.method, &parts.uri, &parts.headers, &body)
                }
                None => operate(&state, &parts.method, &parts.uri, &parts.headers, &body),
            }
        }
        Err(err) => Err(err),
    };
    match outcome {
        Ok(response) => record(&state, call, response, None),
        Err(error) => {
            tracing::info!(code = error.code, message = %error.message, "KeyValueStore double refused a request");
            record(&state, call, error_response(&error), Some(error.code))
        }
    }
}

fn record(
    state: &KvsState,
    mut call: KvsCall,
    response: Response,
    error: Option<&str>,
) -> Response {
    call.status = response.status().as_u16();
    call.error = error.map(str::to_owned);
    state.calls.lock().expect("kvs lock").push(call);
    response
}

/// The parts of a SigV4(A) `Authorization` header.
struct Authorization<'a> {
    algorithm: &'a str,
    access_key_id: &'a str,
    scope: Vec<&'a str>,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

fn parse_authorization(value: &str) -> Option<Authorization<'_>> {
    let (algorithm, rest) = value.split_once(' ')?;
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in rest.split(',') {
        let (name, value) = part.trim().split_once('=')?;
        match name {
            "Credential" => credential = Some(value),
            "SignedHeaders" => signed_headers = Some(value),
            "Signature" => signature = Some(value),
            _ => return None,
        }
    }
    let (access_key_id, scope) = credential?.split_once('/')?;
    Some(Authorization {
        algorithm,
        access_key_id,
        scope: scope.split('/').collect(),
        signed_headers: signed_headers?.split(';').collect(),
        signature: signature?,
    })
}

/// Checks the request's SigV4A signature; the caller's access key id.
/// The IAM action a request asks for.
fn action_of(method: &Method, uri: &axum::http::Uri) -> &'static str {
    let keys = uri.path().split('/').filter(|s| !s.is_empty()).count();
    match (method.as_str(), keys) {
        ("GET", 2) => "DescribeKeyValueStore",
        ("GET", 3) => "ListKeys",
        ("GET", _) => "GetKey",
        ("PUT", _) => "PutKey",
        ("DELETE", _) => "DeleteKey",
        ("POST", _) => "UpdateKeys",
        _ => "Unknown",
    }
}

/// `key` back when IAM allows it the request's action (or nobody was
/// given any actions), else `AccessDeniedException` as AWS words it.
fn authorize(
    state: &KvsState,
    key: String,
    method: &Method,
    uri: &axum::http::Uri,
) -> Result<String, KvsError> {
    let allowed = state.allowed.lock().expect("kvs lock");
    if allowed.is_empty() {
        return Ok(key);
    }
    let action = format!("{SERVICE}:{}", action_of(method, uri));
    let arn = state.store.lock().expect("kvs lock").arn.clone();
    if allowed.get(&key).is_some_and(|patterns| {
        patterns
            .iter()
            .any(|p| crate::iam::action_matches(p, &action))
    }) {
        return Ok(key);
    }
    Err(KvsError::new(
        StatusCode::FORBIDDEN,
        "AccessDeniedException",
        format!("User: {key} is not authorized to perform: {action} on resource: {arn} because no identity-based policy allows the {action} action"),
    ))
}

fn authenticate(
    state: &KvsState,
    method: &Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<String, KvsError> {
    let forbidden = |code, message: String| KvsError::new(StatusCode::FORBIDDEN, code, message);
    let incomplete =
        |message: String| KvsError::new(StatusCode::BAD_REQUEST, "IncompleteSignature", message);
    let Some(value) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return Err(forbidden(
            "MissingAuthenticationToken",
            format!("Missing Authentication Token: the request has no Authorization header; this API takes {SIGV4A} (SigV4A) signed requests only"),
        ));
    };
    let algorithm = value.split_whitespace().next().unwrap_or_default();
    if algorithm != SIGV4A {
        return Err(forbidden(
            "InvalidSignatureException",
            format!("The request is signed with {algorithm}; the CloudFront KeyValueStore API accepts only {SIGV4A} (SigV4A) signatures"),
        ));
    }
    let auth = parse_authorization(value).ok_or_else(|| {
        incomplete(format!(
            "Authorization header is not `{SIGV4A} Credential=..., SignedHeaders=..., Signature=...`: {value}"
        ))
    })?;
    debug_assert_eq!(auth.algorithm, SIGV4A);
    // SigV4A scopes have no region: {date}/{service}/aws4_request.
    let [date, service, "aws4_request"] = auth.scope[..] else {
        return Err(incomplete(format!(
            "Credential scope must be {{date}}/{SERVICE}/aws4_request for {SIGV4A}, got {}",
            auth.scope.join("/")
        )));
    };
    if service != SERVICE {
        return Err(incomplete(format!(
            "Credential should be scoped to the service '{SERVICE}', not '{service}'"
        )));
    }
    for required in ["host", "x-amz-date", "x-amz-region-set"] {
        if !auth.signed_headers.contains(&required) {
            return Err(incomplete(format!(
                "SignedHeaders must include {required} (signed: {})",
                auth.signed_headers.join(";")
            )));
        }
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let amz_date = header("x-amz-date").unwrap_or_default();
    let signed_at = time::PrimitiveDateTime::parse(
        amz_date,
        time::macros::format_description!("[year][month][day]T[hour][minute][second]Z"),
    )
    .map(|t| t.assume_utc())
    .map_err(|_| incomplete(format!("X-Amz-Date is not YYYYMMDDTHHMMSSZ: {amz_date:?}")))?;
    if !amz_date.starts_with(date) {
        return Err(incomplete(format!(
            "the credential scope's date {date} is not X-Amz-Date's {amz_date}"
        )));
    }
    if (OffsetDateTime::now_utc() - signed_at).abs() > MAX_SKEW {
        return Err(forbidden(
            "InvalidSignatureException",
            format!("Signature expired: {amz_date} is more than 15 minutes from now"),
        ));
    }
    let Some(credentials) = state
        .credentials
        .lock()
        .expect("kvs lock")
        .get(auth.access_key_id)
        .cloned()
    else {
        return Err(forbidden(
            "UnrecognizedClientException",
            format!(
                "The security token included in the request is invalid (unknown access key id {})",
                auth.access_key_id
            ),
        ));
    };
    if let Some(token) = &credentials.session_token {
        if header("x-amz-security-token") != Some(token.as_str())
            || !auth.signed_headers.contains(&"x-amz-security-token")
        {
            return Err(forbidden(
                "UnrecognizedClientException",
                "The security token included in the request is invalid (X-Amz-Security-Token missing, unsigned or not this key's)".to_owned(),
            ));
        }
    }
    let string_to_sign =
        string_to_sign(method, uri, headers, body, &auth, amz_date, date).map_err(incomplete)?;
    let key = aws_sigv4::sign::v4a::generate_signing_key(
        auth.access_key_id,
        &credentials.secret_access_key,
    );
    let expected = aws_sigv4::sign::v4a::calculate_signature(key, string_to_sign.as_bytes());
    if expected != auth.signature {
        return Err(forbidden(
            "InvalidSignatureException",
            format!(
                "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. The String-to-Sign should have been\n{string_to_sign}"
            ),
        ));
    }
    Ok(auth.access_key_id.to_owned())
}

/// The SigV4A string to sign for the request as received.
fn string_to_sign(
    method: &Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    body: &[u8],
    auth: &Authorization<'_>,
    amz_date: &str,
    date: &str,
) -> Result<String, String> {
    let mut canonical_headers = String::new();
    for name in &auth.signed_headers {
        let values: Vec<&str> = headers
            .get_all(*name)
            .iter()
            .map(|v| {
                v.to_str()
                    .map_err(|_| format!("header {name} is not ASCII"))
            })
            .collect::<Result<_, _>>()?;
        if values.is_empty() {
            return Err(format!("signed header {name} is not in the request"));
        }
        let values: Vec<String> = values.iter().map(|v| collapse_spaces(v)).collect();
        canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    let payload_hash = hex::encode(Sha256::digest(body));
    if let Some(claimed) = headers.get("x-amz-content-sha256") {
        if claimed.as_bytes() != payload_hash.as_bytes() {
            return Err("X-Amz-Content-Sha256 is not the SHA-256 of the body".to_owned());
        }
    }
    let canonical_request = format!(
        "{method}\n{}\n{}\n{canonical_headers}\n{}\n{payload_hash}",
        canonical_path(uri.path()),
        canonical_query(uri.query().unwrap_or_default()),
        auth.signed_headers.join(";"),
    );
    Ok(format!(
        "{SIGV4A}\n{amz_date}\n{date}/{SERVICE}/aws4_request\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    ))
}

/// Leading and trailing spaces trimmed, runs of spaces made one.
fn collapse_spaces(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for word in value.split(' ').filter(|w| !w.is_empty()) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// The canonical URI of a service other than S3: dot segments removed,
/// then the (already encoded) path encoded once more.
fn canonical_path(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/').skip(1) {
        match segment {
            "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    let normalized = format!("/{}", segments.join("/"));
    utf8_percent_encode(&normalized, SIGV4_PATH).to_string()
}

/// Query parameters decoded, encoded as SigV4 encodes, sorted.
fn canonical_query(query: &str) -> String {
    let decode = |s: &str| {
        percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    let mut params: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (
                utf8_percent_encode(&decode(k), SIGV4_ENCODE).to_string(),
                utf8_percent_encode(&decode(v), SIGV4_ENCODE).to_string(),
            )
        })
        .collect();
    params.sort();
    params
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// The operation a (signed) request asks for, on the store.
fn operate(
    state: &KvsState,
    method: &Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, KvsError> {
    let not_found =
        |what: String| KvsError::new(StatusCode::NOT_FOUND, "ResourceNotFoundException", what);
    let invalid =
        |what: String| KvsError::new(StatusCode::BAD_REQUEST, "ValidationException", what);
    let segments: Vec<String> = uri
        .path()
        .split('/')
        .skip(1)
        .map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let (arn, rest) = match segments[..] {
        ["key-value-stores", arn, ref rest @ ..] => (arn, rest),
        _ => {
            return Err(not_found(format!(
                "no such operation: {method} {}",
                uri.path()
            )))
        }
    };
    let mut store = state.store.lock().expect("kvs lock");
    if arn != store.arn {
        return Err(not_found(format!(
            "no key value store {arn} (this account has {})",
            store.arn
        )));
    }
    let if_match = || {
        headers
            .get("if-match")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| {
                invalid("If-Match is required: the store's ETag from DescribeKeyValueStore".into())
            })
    };
    let check_etag = |store: &Store, given: &str| {
        if given == store.etag {
            Ok(())
        } else {
            Err(KvsError::new(
                StatusCode::CONFLICT,
                "ConflictException",
                format!(
                    "Pre-Condition failed: If-Match {given} is not the store's current ETag {}",
                    store.etag
                ),
            ))
        }
    };
    let with_etag = |etag: &str, body: Value| {
        (
            StatusCode::OK,
            [
                ("etag", etag.to_owned()),
                ("content-type", "application/json".to_owned()),
            ],
            body.to_string(),
        )
            .into_response()
    };
    let check_key = |key: &str| {
        if key.is_empty() || key.len() > MAX_KEY {
            Err(invalid(format!(
                "Key must be 1 to {MAX_KEY} bytes, got {}",
                key.len()
            )))
        } else {
            Ok(())
        }
    };
    match (method.as_str(), rest) {
        ("GET", []) => {
            let body = json!({
                "KvsARN": store.arn,
                "Created": store.created.unix_timestamp(),
                "LastModified": store.last_modified.unix_timestamp(),
                "ItemCount": store.items.len(),
                "TotalSizeInBytes": store.size(),
                "Status": "READY",
            });
            Ok(with_etag(&store.etag, body))
        }
        ("GET", ["keys"]) => {
            let query: HashMap<String, String> = uri
                .query()
                .unwrap_or_default()
                .split('&')
                .filter_map(|p| p.split_once('='))
                .map(|(k, v)| {
                    (
                        k.to_owned(),
                        percent_decode_str(v).decode_utf8_lossy().into_owned(),
                    )
                })
                .collect();
            let page = match query.get("MaxResults") {
                None => DEFAULT_PAGE,
                Some(n) => n
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE).contains(n))
                    .ok_or_else(|| {
                        invalid(format!("MaxResults must be 1 to {MAX_PAGE}, got {n}"))
                    })?,
            };
            let after = query.get("NextToken");
            let mut items = store
                .items
                .iter()
                .filter(|(k, _)| after.is_none_or(|after| k.as_str() > after.as_str()));
            let listed: Vec<Value> = items
                .by_ref()
                .take(page)
                .map(|(k, v)| json!({ "Key": k, "Value": v }))
                .collect();
            let mut body = json!({ "Items": listed });
            if items.next().is_some() {
                if let Some(last) = listed.last() {
                    body["NextToken"] = last["Key"].clone();
                }
            }
            Ok((
                StatusCode::OK,
                [("content-type", "application/json")],
                body.to_string(),
            )
                .into_response())
        }
        ("GET", ["keys", key]) => {
            let value = store
                .items
                .get(*key)
                .ok_or_else(|| not_found(format!("Key {key} not found in {}", store.arn)))?;
            let mut body = store.counts();
            body["Key"] = json!(key);
            body["Value"] = json!(value);
            Ok((
                StatusCode::OK,
                [("content-type", "application/json")],
                body.to_string(),
            )
                .into_response())
        }
        ("PUT", ["keys", key]) => {
            check_key(key)?;
            let given = if_match()?;
            let value = serde_json::from_slice::<Value>(body)
                .ok()
                .and_then(|v| v.get("Value").and_then(Value::as_str).map(str::to_owned))
                .ok_or_else(|| invalid("the body must be {\"Value\": \"...\"}".into()))?;
            if value.len() > MAX_VALUE {
                return Err(invalid(format!(
                    "Value must be at most {MAX_VALUE} bytes, got {}",
                    value.len()
                )));
            }
            check_etag(&store, &given)?;
            store.items.insert((*key).to_owned(), value);
            store.touch();
            Ok(with_etag(&store.etag, store.counts()))
        }
        ("DELETE", ["keys", key]) => {
            check_key(key)?;
            let given = if_match()?;
            check_etag(&store, &given)?;
            if !store.items.contains_key(*key) {
                return Err(not_found(format!("Key {key} not found in {}", store.arn)));
            }
            store.items.remove(*key);
            store.touch();
            Ok(with_etag(&store.etag, store.counts()))
        }
        _ => Err(not_found(format!(
            "no such operation: {method} {}",
            uri.path()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_paths_and_queries_encode_as_sigv4_does() {
        assert_eq!(
            canonical_path("/key-value-stores/arn%3Aaws%3Acloudfront%3A%3A127%3Akey-value-store%2Fx/keys/preview%2Fa"),
            "/key-value-stores/arn%253Aaws%253Acloudfront%253A%253A127%253Akey-value-store%252Fx/keys/preview%252Fa"
        );
        assert_eq!(canonical_path("/a/./b/../c"), "/a/c");
        assert_eq!(
            canonical_query("NextToken=a%2Fb&MaxResults=5"),
            "MaxResults=5&NextToken=a%2Fb"
        );
        assert_eq!(collapse_spaces("  a   b "), "a b");
    }
}
