//! A loopback stand-in for one Lambda function URL (auth type `NONE`).
//!
//! Each HTTP request becomes the event Lambda builds for a function URL
//! (payload format 2.0), the function is invoked synchronously, and its
//! result becomes the HTTP response by Lambda's rules: an object with a
//! `statusCode` is an HTTP response (`headers`, `cookies`, `body`,
//! `isBase64Encoded`); any other value is a 200 `application/json` body; a
//! function error is a 502.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::{to_bytes, Body};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode, Version};
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::Engine;
use serde_json::{json, Map, Value};

use crate::lambda_api::AbortOnDrop;
use crate::runtime::{Function, InvokeError};

/// Lambda's limit on a synchronous request payload (6 MB).
const MAX_BODY: usize = 6 * 1024 * 1024;

/// One HTTP request as the function URL received it.
#[derive(Debug, Clone)]
pub struct UrlRequest {
    pub method: String,
    /// Path and query as sent (`/approve?target=production&id=1`).
    pub path_and_query: String,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub source_ip: String,
}

/// The HTTP response Lambda makes of a function's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlResponse {
    pub status: u16,
    /// Lowercase names; `set-cookie` once per cookie.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl UrlResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Identity of the URL in events: `apiId` / `domainPrefix`.
#[derive(Debug, Clone)]
pub struct UrlIdentity {
    pub url_id: String,
    pub account_id: String,
}

/// A function URL on loopback.
#[derive(Clone)]
pub struct FunctionUrlServer {
    /// `http://127.0.0.1:PORT/`, with the trailing `/` AWS's URLs have.
    pub url: String,
    pub url_id: String,
    _server: Arc<AbortOnDrop>,
}

struct UrlState {
    function: Arc<Function>,
    identity: UrlIdentity,
}

impl FunctionUrlServer {
    pub async fn start(function: Arc<Function>) -> anyhow::Result<Self> {
        let url_id = url_id(function.name());
        let state = Arc::new(UrlState {
            function,
            identity: UrlIdentity {
                url_id: url_id.clone(),
                // What Lambda puts in requestContext.accountId for auth type NONE.
                account_id: "anonymous".to_owned(),
            },
        });
        let app = Router::new().fallback(handle).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/", listener.local_addr()?);
        let server = tokio::spawn(async move {
            let _ = axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await;
        });
        Ok(Self {
            url,
            url_id,
            _server: Arc::new(AbortOnDrop(vec![server])),
        })
    }
}

/// A stable 32-character URL id per function name, shaped like AWS's.
fn url_id(name: &str) -> String {
    // FNV-1a, twice with different seeds, as 32 base-36-ish characters.
    let mut out = String::with_capacity(32);
    for seed in [0xcbf2_9ce4_8422_2325u64, 0x8422_2325_cbf2_9ce4u64] {
        let mut hash = seed;
        for byte in name.bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x100_0000_01b3);
        }
        for _ in 0..16 {
            let digit = (hash % 36) as u32;
            out.push(char::from_digit(digit, 36).unwrap_or('0'));
            hash = (hash / 36).wrapping_add(hash.rotate_left(17));
        }
    }
    out
}

async fn handle(
    State(state): State<Arc<UrlState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request<Body>,
) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(body) = to_bytes(body, MAX_BODY).await else {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            "Request must be smaller than 6291456 bytes for the InvokeFunction operation",
        )
            .into_response();
    };
    let request = UrlRequest {
        method: parts.method.to_string(),
        path_and_query: parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| "/".to_owned()),
        version: parts.version,
        headers: parts.headers,
        body: body.to_vec(),
        source_ip: peer.ip().to_string(),
    };
    let event = url_event(&request, &state.identity, time::OffsetDateTime::now_utc());
    let function = state.function.clone();
    // Detached: a client that hangs up does not cut the invocation short.
    let outcome = tokio::spawn(async move { function.invoke(&event).await })
        .await
        .unwrap_or_else(|join| {
            Err(InvokeError::Crashed {
                message: format!("invocation task failed: {join}"),
            })
        });
    if let Err(err) = &outcome {
        tracing::warn!(function = state.function.name(), error = %err, "function URL invocation failed");
    }
    let reply = url_response(outcome);
    let mut headers = HeaderMap::new();
    for (name, value) in &reply.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.append(name, value);
        }
    }
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::BAD_GATEWAY);
    (status, headers, reply.body).into_response()
}

static REQUESTS: AtomicU64 = AtomicU64::new(0);

/// The event Lambda sends the function for `request` (payload format 2.0).
pub fn url_event(request: &UrlRequest, identity: &UrlIdentity, now: time::OffsetDateTime) -> Value {
    let (raw_path, raw_query) = match request.path_and_query.split_once('?') {
        Some((path, query)) => (path.to_owned(), query.to_owned()),
        None => (request.path_and_query.clone(), String::new()),
    };

    // Headers: lowercase names, repeated headers joined with ','; cookies
    // go to their own list.
    let mut headers = Map::new();
    let mut cookies = Vec::new();
    for name in request.headers.keys() {
        let values: Vec<String> = request
            .headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        if name.as_str() == "cookie" {
            cookies.extend(
                values
                    .iter()
                    .flat_map(|v| v.split(';'))
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned),
            );
            continue;
        }
        headers.insert(name.as_str().to_owned(), json!(values.join(",")));
    }
    let host = headers
        .get("host")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let port = host
        .rsplit_once(':')
        .map(|(_, p)| p.to_owned())
        .unwrap_or_else(|| "80".into());
    let request_id = crate::lambda_api::request_id();
    let n = REQUESTS.fetch_add(1, Ordering::Relaxed);
    let trace = format!(
        "Root=1-{:08x}-{:024x}",
        now.unix_timestamp(),
        (u128::from(n) << 64) | u128::from(now.nanosecond())
    );
    for (name, value) in [
        ("x-forwarded-for", request.source_ip.clone()),
        ("x-forwarded-proto", "http".to_owned()),
        ("x-forwarded-port", port),
        ("x-amzn-trace-id", trace),
    ] {
        headers.entry(name).or_insert(json!(value));
    }

    // Query parameters: decoded, repeated keys joined with ','.
    let mut query = Map::new();
    for (key, value) in form_pairs(&raw_query) {
        match query.get_mut(&key) {
            Some(Value::String(existing)) => {
                existing.push(',');
                existing.push_str(&value);
            }
            _ => {
                query.insert(key, json!(value));
            }
        }
    }

    let content_type = request
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let user_agent = request
        .headers
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let protocol = match request.version {
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        _ => "HTTP/1.1",
    };
    let time_format = time::macros::format_description!(
        "[day]/[month repr:short]/[year]:[hour]:[minute]:[second] +0000"
    );
    let mut event = json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": raw_path,
        "rawQueryString": raw_query,
        "headers": headers,
        "requestContext": {
            "accountId": identity.account_id,
            "apiId": identity.url_id,
            "domainName": if host.is_empty() { format!("{}.lambda-url.{}.on.aws", identity.url_id, crate::account::REGION) } else { host },
            "domainPrefix": identity.url_id,
            "http": {
                "method": request.method,
                "path": raw_path,
                "protocol": protocol,
                "sourceIp": request.source_ip,
                "userAgent": user_agent,
            },
            "requestId": request_id,
            "routeKey": "$default",
            "stage": "$default",
            "time": now.format(&time_format).unwrap_or_default(),
            "timeEpoch": (now.unix_timestamp_nanos() / 1_000_000) as i64,
        },
        "isBase64Encoded": false,
    });
    if !cookies.is_empty() {
        event["cookies"] = json!(cookies);
    }
    if !query.is_empty() {
        event["queryStringParameters"] = Value::Object(query);
    }
    if !request.body.is_empty() {
        match text_body(content_type, &request.body) {
            Some(text) => event["body"] = json!(text),
            None => {
                event["body"] =
                    json!(base64::engine::general_purpose::STANDARD.encode(&request.body));
                event["isBase64Encoded"] = json!(true);
            }
        }
    }
    event
}

/// The body as text when Lambda passes it as text: a textual content type
/// (`text/*`, JSON, XML, JavaScript) and valid UTF-8. Everything else,
/// `application/x-www-form-urlencoded` included, arrives base64-encoded.
fn text_body<'a>(content_type: &str, body: &'a [u8]) -> Option<&'a str> {
    let media = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let textual = media.starts_with("text/")
        || media.contains("json")
        || media.contains("xml")
        || media.contains("javascript");
    if textual {
        std::str::from_utf8(body).ok()
    } else {
        None
    }
}

/// `a=1&b=x%20y&c` as decoded pairs (`+` is a space).
fn form_pairs(query: &str) -> Vec<(String, String)> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(pair), String::new()),
        })
        .collect()
}

/// The HTTP response Lambda makes of an invocation's outcome.
pub fn url_response(outcome: Result<Value, InvokeError>) -> UrlResponse {
    let bad_gateway = || UrlResponse {
        status: 502,
        headers: vec![("content-type".into(), "text/plain".into())],
        body: b"Internal Server Error".to_vec(),
    };
    let json_body = |body: Vec<u8>| UrlResponse {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        body,
    };
    let value = match outcome {
        Ok(value) => value,
        Err(_) => return bad_gateway(),
    };
    let object = match value {
        Value::Object(map) if map.contains_key("statusCode") => map,
        // A string is the body itself; any other value is its JSON.
        Value::String(text) => return json_body(text.into_bytes()),
        other => return json_body(other.to_string().into_bytes()),
    };
    let status = match &object["statusCode"] {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    };
    let Some(status) = status.filter(|s| (100..=599).contains(s)) else {
        return bad_gateway();
    };
    let mut headers: Vec<(String, String)> = Vec::new();
    if let Some(map) = object.get("headers").and_then(Value::as_object) {
        for (name, value) in map {
            let value = match value {
                Value::String(s) => s.clone(),
                Value::Null => continue,
                other => other.to_string(),
            };
            headers.push((name.to_ascii_lowercase(), value));
        }
    }
    if !headers.iter().any(|(k, _)| k == "content-type") {
        headers.push(("content-type".into(), "application/json".into()));
    }
    if let Some(cookies) = object.get("cookies").and_then(Value::as_array) {
        for cookie in cookies.iter().filter_map(Value::as_str) {
            headers.push(("set-cookie".into(), cookie.to_owned()));
        }
    }
    let base64 = object
        .get("isBase64Encoded")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let body = match object.get("body") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(text)) if base64 => {
            match base64::engine::general_purpose::STANDARD.decode(text) {
                Ok(bytes) => bytes,
                Err(_) => return bad_gateway(),
            }
        }
        Some(Value::String(text)) => text.clone().into_bytes(),
        Some(other) => other.to_string().into_bytes(),
    };
    UrlResponse {
        status: status as u16,
        headers,
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> UrlIdentity {
        UrlIdentity {
            url_id: url_id("dev-deployer-site-build"),
            account_id: "anonymous".into(),
        }
    }

    fn request(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> UrlRequest {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        UrlRequest {
            method: method.into(),
            path_and_query: path.into(),
            version: Version::HTTP_11,
            headers: map,
            body: body.to_vec(),
            source_ip: "127.0.0.1".into(),
        }
    }

    fn at() -> time::OffsetDateTime {
        time::macros::datetime!(2026-03-12 19:03:58.390 UTC)
    }

    #[test]
    fn a_webhook_post_becomes_the_format_2_event() {
        let body = br#"{"zen":"Keep it logically awesome."}"#;
        let event = url_event(
            &request(
                "POST",
                "/",
                &[
                    ("Host", "127.0.0.1:4321"),
                    ("Content-Type", "application/json"),
                    ("User-Agent", "GitHub-Hookshot/abc"),
                    ("X-GitHub-Event", "ping"),
                    ("X-Hub-Signature-256", "sha256=00"),
                    ("Accept", "*/*"),
                    ("Accept", "application/json"),
                ],
                body,
            ),
            &identity(),
            at(),
        );
        assert_eq!(event["version"], "2.0");
        assert_eq!(event["routeKey"], "$default");
        assert_eq!(event["rawPath"], "/");
        assert_eq!(event["rawQueryString"], "");
        assert_eq!(event["body"], std::str::from_utf8(body).unwrap());
        assert_eq!(event["isBase64Encoded"], false);
        assert!(event.get("cookies").is_none(), "{event}");
        assert!(event.get("queryStringParameters").is_none(), "{event}");
        let headers = &event["headers"];
        assert_eq!(headers["x-github-event"], "ping");
        assert_eq!(headers["x-hub-signature-256"], "sha256=00");
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(headers["accept"], "*/*,application/json");
        assert_eq!(headers["host"], "127.0.0.1:4321");
        assert_eq!(headers["x-forwarded-proto"], "http");
        assert_eq!(headers["x-forwarded-for"], "127.0.0.1");
        assert_eq!(headers["x-forwarded-port"], "4321");
        assert!(headers["x-amzn-trace-id"]
            .as_str()
            .unwrap()
            .starts_with("Root=1-"));
        assert!(headers
            .as_object()
            .unwrap()
            .keys()
            .all(|k| *k == k.to_ascii_lowercase()));
        let context = &event["requestContext"];
        assert_eq!(context["accountId"], "anonymous");
        assert_eq!(context["apiId"], identity().url_id);
        assert_eq!(context["domainPrefix"], identity().url_id);
        assert_eq!(context["domainName"], "127.0.0.1:4321");
        assert_eq!(context["http"]["method"], "POST");
        assert_eq!(context["http"]["path"], "/");
        assert_eq!(context["http"]["protocol"], "HTTP/1.1");
        assert_eq!(context["http"]["sourceIp"], "127.0.0.1");
        assert_eq!(context["http"]["userAgent"], "GitHub-Hookshot/abc");
        assert_eq!(context["routeKey"], "$default");
        assert_eq!(context["stage"], "$default");
        assert_eq!(context["time"], "12/Mar/2026:19:03:58 +0000");
        assert_eq!(context["timeEpoch"], 1_773_342_238_390i64);
        assert_eq!(context["requestId"].as_str().unwrap().len(), 36);
        assert_eq!(identity().url_id.len(), 32);

        // The handler's own type reads it.
        let parsed: aws_lambda_events::event::lambda_function_urls::LambdaFunctionUrlRequest =
            serde_json::from_value(event.clone()).unwrap();
        assert_eq!(parsed.version.as_deref(), Some("2.0"));
        assert_eq!(parsed.raw_path.as_deref(), Some("/"));
        assert_eq!(parsed.headers["x-github-event"], "ping");
        assert_eq!(parsed.request_context.http.method.as_deref(), Some("POST"));
        assert_eq!(parsed.request_context.time_epoch, 1_773_342_238_390);
        assert_eq!(
            parsed.body.as_deref(),
            Some(std::str::from_utf8(body).unwrap())
        );
        assert!(!parsed.is_base64_encoded);
    }

    #[test]
    fn a_get_with_query_and_cookies_has_no_body() {
        let event = url_event(
            &request(
                "GET",
                "/approve?target=production&id=2abc&token=a%2Bb%3D&x=1&x=2&flag",
                &[
                    ("Host", "127.0.0.1:9"),
                    ("Cookie", "a=1; b=2"),
                    ("Cookie", "c=3"),
                ],
                b"",
            ),
            &identity(),
            at(),
        );
        assert_eq!(event["rawPath"], "/approve");
        assert_eq!(
            event["rawQueryString"],
            "target=production&id=2abc&token=a%2Bb%3D&x=1&x=2&flag"
        );
        assert_eq!(
            event["queryStringParameters"],
            json!({"target": "production", "id": "2abc", "token": "a+b=", "x": "1,2", "flag": ""})
        );
        assert_eq!(event["cookies"], json!(["a=1", "b=2", "c=3"]));
        assert!(event["headers"].get("cookie").is_none());
        assert!(event.get("body").is_none(), "{event}");
        assert_eq!(event["isBase64Encoded"], false);
        assert_eq!(event["requestContext"]["http"]["userAgent"], "");
        let parsed: aws_lambda_events::event::lambda_function_urls::LambdaFunctionUrlRequest =
            serde_json::from_value(event).unwrap();
        assert_eq!(parsed.query_string_parameters["token"], "a+b=");
        assert_eq!(parsed.cookies.unwrap().len(), 3);
    }

    #[test]
    fn forms_and_binary_bodies_arrive_base64_encoded() {
        let form = b"target=production&id=2abc&token=t0k";
        for (content_type, body, base64) in [
            ("application/x-www-form-urlencoded", &form[..], true),
            ("application/octet-stream", &b"\x00\xff"[..], true),
            ("", &b"plain"[..], true),
            ("text/plain; charset=utf-8", &b"caf\xc3\xa9"[..], false),
            ("text/plain", &b"\xff\xfe"[..], true),
            ("application/json", &b"{}"[..], false),
            ("application/vnd.github+json", &b"{}"[..], false),
            ("application/xml", &b"<a/>"[..], false),
        ] {
            let event = url_event(
                &request("POST", "/approve", &[("Content-Type", content_type)], body),
                &identity(),
                at(),
            );
            assert_eq!(event["isBase64Encoded"], base64, "{content_type}");
            let expected = if base64 {
                base64::engine::general_purpose::STANDARD.encode(body)
            } else {
                String::from_utf8(body.to_vec()).unwrap()
            };
            assert_eq!(event["body"], expected, "{content_type}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_url_server_invokes_the_function_over_http() {
        let function = crate::test_function::ScriptFunction::start("dev-url", 2).await;
        let server = FunctionUrlServer::start(function.function.clone())
            .await
            .unwrap();
        assert!(server.url.starts_with("http://127.0.0.1:") && server.url.ends_with('/'));
        let host = server
            .url
            .trim_start_matches("http://")
            .trim_end_matches('/');
        let http = reqwest::Client::new();

        // A JSON post: the function's plain result is a 200 JSON body.
        let reply = http
            .post(format!("{}hook?x=1&x=2", server.url))
            .header("content-type", "application/json")
            .header("x-github-event", "push")
            .body(r#"{"a":1}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 200);
        assert_eq!(reply.headers()["content-type"], "application/json");
        let echoed: Value = reply.json().await.unwrap();
        let event = &echoed["echo"];
        assert_eq!(event["rawPath"], "/hook");
        assert_eq!(event["rawQueryString"], "x=1&x=2");
        assert_eq!(event["queryStringParameters"], json!({"x": "1,2"}));
        assert_eq!(event["headers"]["x-github-event"], "push");
        assert_eq!(event["headers"]["host"], host);
        assert_eq!(event["body"], r#"{"a":1}"#);
        assert_eq!(event["isBase64Encoded"], false);
        assert_eq!(event["requestContext"]["http"]["method"], "POST");
        assert_eq!(event["requestContext"]["http"]["sourceIp"], "127.0.0.1");
        assert_eq!(event["requestContext"]["domainName"], host);
        assert_eq!(event["requestContext"]["apiId"], server.url_id);

        // A form post arrives base64-encoded.
        let reply = http
            .post(format!("{}approve", server.url))
            .form(&[("target", "production"), ("id", "2abc")])
            .send()
            .await
            .unwrap();
        let echoed: Value = reply.json().await.unwrap();
        assert_eq!(echoed["echo"]["isBase64Encoded"], true);
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(echoed["echo"]["body"].as_str().unwrap())
                .unwrap(),
            b"target=production&id=2abc"
        );

        // An HTTP response object.
        let reply = http
            .get(format!("{}respond", server.url))
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 201);
        assert_eq!(reply.headers()["x-made"], "yes");
        assert_eq!(reply.headers()["set-cookie"], "c=1; Path=/");
        assert_eq!(reply.text().await.unwrap(), "made");

        // A function error.
        let reply = http
            .get(format!("{}?fail", server.url))
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 502);
        assert_eq!(reply.text().await.unwrap(), "Internal Server Error");
    }

    #[test]
    fn responses_map_as_lambda_maps_them() {
        // A full HTTP response.
        let reply = url_response(Ok(json!({
            "statusCode": 202,
            "headers": {"Content-Type": "text/plain", "X-Deployment": "2abc"},
            "cookies": ["a=1; Path=/", "b=2"],
            "body": "queued",
        })));
        assert_eq!(reply.status, 202);
        assert_eq!(reply.header("content-type"), Some("text/plain"));
        assert_eq!(reply.header("x-deployment"), Some("2abc"));
        let cookies: Vec<&str> = reply
            .headers
            .iter()
            .filter(|(k, _)| k == "set-cookie")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(cookies, ["a=1; Path=/", "b=2"]);
        assert_eq!(reply.body, b"queued");

        // Base64 bodies are decoded; no content type means JSON.
        let reply = url_response(Ok(json!({
            "statusCode": "401", "body": "AP8=", "isBase64Encoded": true
        })));
        assert_eq!(reply.status, 401);
        assert_eq!(reply.body, vec![0x00, 0xff]);
        assert_eq!(reply.header("content-type"), Some("application/json"));

        // No body.
        let reply = url_response(Ok(json!({"statusCode": 204})));
        assert_eq!((reply.status, reply.body.len()), (204, 0));

        // Anything without a statusCode is a 200 JSON body.
        let reply = url_response(Ok(json!({"status": "QUEUED", "id": 7})));
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("content-type"), Some("application/json"));
        let body: Value = serde_json::from_slice(&reply.body).unwrap();
        assert_eq!(body, json!({"status": "QUEUED", "id": 7}));
        assert_eq!(url_response(Ok(json!([1, 2]))).body, b"[1,2]");
        assert_eq!(url_response(Ok(json!("Hello"))).body, b"Hello");

        // Function errors and unusable responses are 502s.
        for outcome in [
            Err(InvokeError::Function {
                error_type: "Boom".into(),
                message: "x".into(),
            }),
            Err(InvokeError::TimedOut {
                after: std::time::Duration::from_secs(900),
            }),
            Ok(json!({"statusCode": "teapot"})),
            Ok(json!({"statusCode": 200, "body": "%%%", "isBase64Encoded": true})),
        ] {
            let reply = url_response(outcome);
            assert_eq!(reply.status, 502);
            assert_eq!(reply.body, b"Internal Server Error");
        }
    }
}
