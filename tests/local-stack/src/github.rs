//! A loopback GitHub for one repository, backed by a local git repository:
//! the REST API calls site-build makes, and codeload, where tarballs are
//! served from (another origin, as on GitHub).
//!
//! API (`api_url`):
//! - `GET /repos/{owner}/{repo}/tarball/{ref}` → 302 to codeload for the
//!   full commit id (the ref may be a branch, a tag or an abbreviated id);
//! - `GET /repos/{owner}/{repo}/commits/{ref}` → the commit id as text with
//!   `Accept: application/vnd.github.sha`, else `{"sha", ...}`; 422 for an
//!   unknown ref, as GitHub answers;
//! - `POST /repos/{owner}/{repo}/deployments` → 201 with a new id;
//! - `POST /repos/{owner}/{repo}/deployments/{id}/statuses` → 201;
//! - `GET` of either list.
//!
//! With a token configured every API call needs `Authorization: Bearer
//! {token}` (or `token {token}`), else 401 "Bad credentials"; without one,
//! anything is accepted (a public repository). Codeload never needs one:
//! its URLs carry their own. Every request is recorded.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};

use crate::lambda_api::AbortOnDrop;

/// How the double is set up.
#[derive(Debug, Clone)]
pub struct GitHubOptions {
    /// `owner/name` of the one repository it serves.
    pub repository: String,
    /// The git repository behind it; `None`: every ref is unknown.
    pub repo_dir: Option<PathBuf>,
    /// The token API calls must carry; `None`: no authentication.
    pub token: Option<String>,
}

/// One request the double received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    /// Path and query, as sent.
    pub path: String,
    /// Lowercase names.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

/// A deployment status, as posted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentStatus {
    pub id: u64,
    pub deployment_id: u64,
    pub state: String,
    pub environment: String,
    pub environment_url: Option<String>,
    pub log_url: Option<String>,
    pub description: String,
    /// The full body as posted.
    pub body: Value,
}

/// A deployment, as created, with its statuses (oldest first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    pub id: u64,
    /// The ref as posted, and the commit it resolved to (the ref itself
    /// when the repository does not know it).
    pub git_ref: String,
    pub sha: String,
    pub environment: String,
    pub production_environment: bool,
    pub transient_environment: bool,
    pub description: String,
    /// The full body as posted.
    pub body: Value,
    pub statuses: Vec<DeploymentStatus>,
}

#[derive(Default)]
struct Recorded {
    api: Vec<RecordedRequest>,
    codeload: Vec<RecordedRequest>,
    deployments: Vec<Deployment>,
    planted: HashMap<String, Vec<u8>>,
    next_id: u64,
}

struct GitHubState {
    options: GitHubOptions,
    codeload_url: Mutex<String>,
    recorded: Mutex<Recorded>,
}

/// GitHub and codeload on loopback.
#[derive(Clone)]
pub struct GitHubDouble {
    /// What `GITHUB_API_URL` is set to.
    pub api_url: String,
    pub codeload_url: String,
    state: Arc<GitHubState>,
    _servers: Arc<AbortOnDrop>,
}

impl GitHubDouble {
    pub async fn start(options: GitHubOptions) -> anyhow::Result<Self> {
        let state = Arc::new(GitHubState {
            options,
            codeload_url: Mutex::new(String::new()),
            recorded: Mutex::new(Recorded {
                next_id: 1_000_000,
                ..Recorded::default()
            }),
        });
        let codeload = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let codeload_url = format!("http://{}", codeload.local_addr()?);
        *state.codeload_url.lock().expect("github lock") = codeload_url.clone();
        let api = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let api_url = format!("http://{}", api.local_addr()?);
        let codeload_app = Router::new()
            .fallback(serve_codeload)
            .with_state(state.clone());
        let api_app = Router::new().fallback(serve_api).with_state(state.clone());
        let tasks = vec![
            tokio::spawn(async move {
                let _ = axum::serve(codeload, codeload_app).await;
            }),
            tokio::spawn(async move {
                let _ = axum::serve(api, api_app).await;
            }),
        ];
        Ok(Self {
            api_url,
            codeload_url,
            state,
            _servers: Arc::new(AbortOnDrop(tasks)),
        })
    }

    pub fn repository(&self) -> &str {
        &self.state.options.repository
    }

    pub fn token(&self) -> Option<&str> {
        self.state.options.token.as_deref()
    }

    pub fn repo_dir(&self) -> Option<&std::path::Path> {
        self.state.options.repo_dir.as_deref()
    }

    /// Serves `archive` (gzip-compressed tar bytes) for commit `sha`
    /// instead of `git archive`, as a hostile or stale server would.
    pub fn plant(&self, sha: &str, archive: Vec<u8>) {
        self.recorded().planted.insert(sha.to_owned(), archive);
    }

    /// API requests so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.recorded().api.clone()
    }

    /// Codeload requests so far, oldest first.
    pub fn codeload_requests(&self) -> Vec<RecordedRequest> {
        self.recorded().codeload.clone()
    }

    pub fn forget_requests(&self) {
        let mut recorded = self.recorded();
        recorded.api.clear();
        recorded.codeload.clear();
    }

    /// Deployments created so far, oldest first, with their statuses.
    pub fn deployments(&self) -> Vec<Deployment> {
        self.recorded().deployments.clone()
    }

    /// Every status posted, oldest first.
    pub fn statuses(&self) -> Vec<DeploymentStatus> {
        let mut all: Vec<DeploymentStatus> = self
            .recorded()
            .deployments
            .iter()
            .flat_map(|d| d.statuses.clone())
            .collect();
        all.sort_by_key(|s| s.id);
        all
    }

    fn recorded(&self) -> std::sync::MutexGuard<'_, Recorded> {
        self.state.recorded.lock().expect("github lock")
    }
}

fn record(method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> RecordedRequest {
    RecordedRequest {
        method: method.to_string(),
        path: uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default(),
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.to_vec(),
    }
}

fn github_error(status: StatusCode, message: &str) -> Response {
    (
        status,
        [("content-type", "application/json; charset=utf-8")],
        json!({
            "message": message,
            "documentation_url": "https://docs.github.com/rest",
            "status": status.as_u16().to_string(),
        })
        .to_string(),
    )
        .into_response()
}

fn created(body: Value) -> Response {
    (
        StatusCode::CREATED,
        [("content-type", "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

fn ok_json(body: Value) -> Response {
    (
        StatusCode::OK,
        [("content-type", "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

/// The full commit id `git_ref` names in `repo_dir`, if any.
async fn resolve_ref(repo_dir: Option<&std::path::Path>, git_ref: &str) -> Option<String> {
    let dir = repo_dir?;
    if git_ref.is_empty() || git_ref.starts_with('-') {
        return None;
    }
    for candidate in [
        format!("refs/heads/{git_ref}"),
        format!("refs/tags/{git_ref}"),
        git_ref.to_owned(),
    ] {
        let output = tokio::process::Command::new("git")
            .args(["rev-parse", "--verify", "--quiet"])
            .arg(format!("{candidate}^{{commit}}"))
            .current_dir(dir)
            .stderr(std::process::Stdio::null())
            .output()
            .await
            .ok()?;
        if output.status.success() {
            return Some(String::from_utf8_lossy(&output.stdout).trim().to_owned());
        }
    }
    None
}

async fn serve_api(
    State(state): State<Arc<GitHubState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state
        .recorded
        .lock()
        .expect("github lock")
        .api
        .push(record(&method, &uri, &headers, &body));
    if let Some(token) = &state.options.token {
        let given = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if given != format!("Bearer {token}") && given != format!("token {token}") {
            return github_error(StatusCode::UNAUTHORIZED, "Bad credentials");
        }
    }
    let prefix = format!("/repos/{}/", state.options.repository);
    let Some(rest) = uri.path().strip_prefix(&prefix) else {
        return github_error(StatusCode::NOT_FOUND, "Not Found");
    };
    let rest: Vec<String> = rest
        .split('/')
        .map(|part| {
            percent_encoding::percent_decode_str(part)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let parts: Vec<&str> = rest.iter().map(String::as_str).collect();
    let repo_dir = state.options.repo_dir.as_deref();
    match (method.as_str(), parts.as_slice()) {
        ("GET", ["tarball", git_ref @ ..]) if !git_ref.is_empty() => {
            let git_ref = git_ref.join("/");
            let planted = state
                .recorded
                .lock()
                .expect("github lock")
                .planted
                .contains_key(&git_ref);
            let sha = if planted {
                Some(git_ref.clone())
            } else {
                resolve_ref(repo_dir, &git_ref).await
            };
            let Some(sha) = sha else {
                return github_error(StatusCode::NOT_FOUND, "Not Found");
            };
            let location = format!(
                "{}/{}/legacy.tar.gz/{sha}?token=SHORTLIVED",
                state.codeload_url.lock().expect("github lock"),
                state.options.repository
            );
            (StatusCode::FOUND, [("location", location)]).into_response()
        }
        ("GET", ["commits", git_ref @ ..]) if !git_ref.is_empty() => {
            let git_ref = git_ref.join("/");
            let Some(sha) = resolve_ref(repo_dir, &git_ref).await else {
                return github_error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    &format!("No commit found for SHA: {git_ref}"),
                );
            };
            let accept = headers
                .get("accept")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if accept.contains("application/vnd.github.sha") {
                (
                    StatusCode::OK,
                    [("content-type", "application/vnd.github.sha; charset=utf-8")],
                    sha,
                )
                    .into_response()
            } else {
                ok_json(
                    json!({"sha": sha, "url": format!("/repos/{}/commits/{sha}", state.options.repository)}),
                )
            }
        }
        ("POST", ["deployments"]) => {
            let Ok(posted) = serde_json::from_slice::<Value>(&body) else {
                return github_error(StatusCode::BAD_REQUEST, "Problems parsing JSON");
            };
            let Some(git_ref) = posted.get("ref").and_then(Value::as_str) else {
                return github_error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Invalid request.\n\n\"ref\" wasn't supplied.",
                );
            };
            let sha = resolve_ref(repo_dir, git_ref)
                .await
                .unwrap_or_else(|| git_ref.to_owned());
            let text = |name: &str, default: &str| {
                posted
                    .get(name)
                    .and_then(Value::as_str)
                    .unwrap_or(default)
                    .to_owned()
            };
            let environment = text("environment", "production");
            let production = posted
                .get("production_environment")
                .and_then(Value::as_bool)
                .unwrap_or(environment == "production");
            let transient = posted
                .get("transient_environment")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let mut recorded = state.recorded.lock().expect("github lock");
            recorded.next_id += 1;
            let deployment = Deployment {
                id: recorded.next_id,
                git_ref: git_ref.to_owned(),
                sha,
                environment,
                production_environment: production,
                transient_environment: transient,
                description: text("description", ""),
                body: posted.clone(),
                statuses: Vec::new(),
            };
            let answer = deployment_json(&state.options.repository, &deployment);
            recorded.deployments.push(deployment);
            created(answer)
        }
        ("GET", ["deployments"]) => {
            let recorded = state.recorded.lock().expect("github lock");
            let list: Vec<Value> = recorded
                .deployments
                .iter()
                .rev()
                .map(|d| deployment_json(&state.options.repository, d))
                .collect();
            ok_json(Value::Array(list))
        }
        (verb @ ("POST" | "GET"), ["deployments", id, "statuses"]) => {
            let mut recorded = state.recorded.lock().expect("github lock");
            let next_id = recorded.next_id + 1;
            let Some(deployment) = id
                .parse::<u64>()
                .ok()
                .and_then(|id| recorded.deployments.iter_mut().find(|d| d.id == id))
            else {
                return github_error(StatusCode::NOT_FOUND, "Not Found");
            };
            if verb == "GET" {
                let list: Vec<Value> = deployment.statuses.iter().rev().map(status_json).collect();
                return ok_json(Value::Array(list));
            }
            let Ok(posted) = serde_json::from_slice::<Value>(&body) else {
                return github_error(StatusCode::BAD_REQUEST, "Problems parsing JSON");
            };
            let field = |name: &str| posted.get(name).and_then(Value::as_str).map(str::to_owned);
            let Some(state_name) = field("state").filter(|s| {
                [
                    "error",
                    "failure",
                    "inactive",
                    "in_progress",
                    "queued",
                    "pending",
                    "success",
                ]
                .contains(&s.as_str())
            }) else {
                return github_error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Validation Failed: state is not included in the list",
                );
            };
            let status = DeploymentStatus {
                id: next_id,
                deployment_id: deployment.id,
                state: state_name,
                environment: field("environment").unwrap_or_else(|| deployment.environment.clone()),
                environment_url: field("environment_url"),
                log_url: field("log_url").or_else(|| field("target_url")),
                description: field("description").unwrap_or_default(),
                body: posted.clone(),
            };
            let answer = status_json(&status);
            deployment.statuses.push(status);
            recorded.next_id = next_id;
            created(answer)
        }
        _ => github_error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

fn deployment_json(repository: &str, deployment: &Deployment) -> Value {
    json!({
        "id": deployment.id,
        "url": format!("/repos/{repository}/deployments/{}", deployment.id),
        "sha": deployment.sha,
        "ref": deployment.git_ref,
        "task": "deploy",
        "payload": deployment.body.get("payload").cloned().unwrap_or(json!({})),
        "environment": deployment.environment,
        "original_environment": deployment.environment,
        "description": deployment.description,
        "transient_environment": deployment.transient_environment,
        "production_environment": deployment.production_environment,
        "statuses_url": format!("/repos/{repository}/deployments/{}/statuses", deployment.id),
    })
}

fn status_json(status: &DeploymentStatus) -> Value {
    json!({
        "id": status.id,
        "state": status.state,
        "description": status.description,
        "environment": status.environment,
        "environment_url": status.environment_url.clone().unwrap_or_default(),
        "log_url": status.log_url.clone().unwrap_or_default(),
        "deployment_url": format!("/deployments/{}", status.deployment_id),
    })
}

async fn serve_codeload(
    State(state): State<Arc<GitHubState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    state
        .recorded
        .lock()
        .expect("github lock")
        .codeload
        .push(record(&method, &uri, &headers, &[]));
    let repository = &state.options.repository;
    let prefix = format!("/{repository}/legacy.tar.gz/");
    let Some(sha) = uri.path().strip_prefix(&prefix).map(str::to_owned) else {
        return github_error(StatusCode::NOT_FOUND, "Not Found");
    };
    let planted = state
        .recorded
        .lock()
        .expect("github lock")
        .planted
        .get(&sha)
        .cloned();
    let archive = match planted {
        Some(bytes) => bytes,
        None => {
            let Some(dir) = state.options.repo_dir.as_deref() else {
                return github_error(StatusCode::NOT_FOUND, "Not Found");
            };
            if sha.len() < 7 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
                return github_error(StatusCode::NOT_FOUND, "Not Found");
            }
            let output = tokio::process::Command::new("git")
                .args([
                    "archive",
                    "--format=tar.gz",
                    &format!("--prefix={}-{}/", repository.replace('/', "-"), &sha[..7]),
                    &sha,
                ])
                .current_dir(dir)
                .stderr(std::process::Stdio::null())
                .output()
                .await;
            match output {
                Ok(output) if output.status.success() => output.stdout,
                _ => return github_error(StatusCode::NOT_FOUND, "Not Found"),
            }
        }
    };
    (
        StatusCode::OK,
        [("content-type", "application/x-gzip")],
        archive,
    )
        .into_response()
}
