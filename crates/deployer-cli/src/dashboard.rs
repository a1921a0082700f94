//! `deployer dashboard`: the ledger as a web page, served on 127.0.0.1
//! with the operator's own AWS credentials; no public endpoint, no new
//! secret.
//!
//! Every request must carry the per-run token printed with the URL (in the
//! query for pages, in the form for approve/reject), and approve/reject are
//! POSTs whose `Origin` must be this server's: another site open in the
//! same browser can neither read the pages nor answer an approval. Pages are
//! HTML and SVG rendered here, every value escaped; the one script (the
//! grid's refresh) is inline and allowed by its nonce alone.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use ledger::{Deployment, Kind, State as DeployState};
use time::{Duration, OffsetDateTime};

use crate::outcome::Outcome;
use crate::records::{group_by_target, recent_per_kind, EnvStatus, Install, TargetStatus};
use crate::table::{ago, duration};

pub struct Options {
    pub port: u16,
    pub refresh_seconds: u64,
}

struct App {
    aws: aws_config::SdkConfig,
    installs: Vec<Install>,
    token: String,
    /// `http://127.0.0.1:PORT`: the only Origin a POST may come from.
    origin: String,
    refresh_seconds: u64,
    /// Who approves from this dashboard (recorded in the build's history).
    operator: String,
}

/// Serves until Ctrl-C.
pub async fn serve(
    aws: &aws_config::SdkConfig,
    installs: Vec<Install>,
    options: Options,
) -> anyhow::Result<Outcome> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", options.port))
        .await
        .with_context(|| format!("binding 127.0.0.1:{}", options.port))?;
    let address = listener.local_addr()?;
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness for the token: {e}"))?;
    let token = hex::encode(bytes);
    let origin = format!("http://{address}");
    let operator = std::env::var("USER").unwrap_or_else(|_| "operator".into());
    println!("dashboard: {origin}/?token={token}");
    use std::io::Write as _;
    std::io::stdout().flush().ok();
    eprintln!(
        "serving {} on loopback only, with your AWS credentials; Ctrl-C stops it",
        installs
            .iter()
            .map(|i| i.env.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let app = Arc::new(App {
        aws: aws.clone(),
        installs,
        token,
        origin,
        refresh_seconds: options.refresh_seconds.max(1),
        operator: format!("{operator} (dashboard)"),
    });
    let router = Router::new()
        .route("/", get(index))
        .route("/grid", get(grid_fragment))
        .route("/target", get(target_page))
        .route("/confirm", get(confirm_page))
        .route("/answer", post(answer))
        .route("/charts", get(charts_page))
        .with_state(app);
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            tokio::signal::ctrl_c().await.ok();
        })
        .await
        .context("serving the dashboard")?;
    Ok(Outcome::Success)
}

type Params = HashMap<String, String>;

fn params_of(query: &[u8]) -> Params {
    form_urlencoded::parse(query).into_owned().collect()
}

/// Text as HTML: `&`, `<`, `>`, `"` and `'` escaped (in content and in
/// attribute values alike).
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `path?k=v&…` with every pair percent-encoded, the token first.
fn link(app: &App, path: &str, pairs: &[(&str, &str)]) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.append_pair("token", &app.token);
    for (k, v) in pairs {
        query.append_pair(k, v);
    }
    format!("{path}?{}", query.finish())
}

/// Constant time, so the token cannot be guessed a byte at a time.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl App {
    fn allowed(&self, params: &Params, field: &str) -> bool {
        params.get(field).is_some_and(|t| same(t, &self.token))
    }

    fn install(&self, env: &str) -> Option<&Install> {
        self.installs.iter().find(|i| i.env == env)
    }
}

fn nonce() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).ok();
    hex::encode(bytes)
}

/// A page: the HTML, with headers that keep it to this origin and out of
/// frames, and the token out of Referer headers sent elsewhere.
fn page(status: StatusCode, title: &str, body: &str, script: Option<&str>) -> Response {
    let nonce = nonce();
    let script = script
        .map(|s| format!("<script nonce=\"{nonce}\">{s}</script>"))
        .unwrap_or_default();
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · Deployer</title><style>{STYLE}</style></head>\
         <body><header><a class=\"brand\" href=\"#\" id=\"home\">Deployer</a> <span>{title}</span></header>\
         <main>{body}</main>{script}</body></html>",
        title = esc(title)
    );
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    let csp = format!(
        "default-src 'none'; style-src 'unsafe-inline'; script-src 'nonce-{nonce}'; \
         connect-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    );
    if let Ok(value) = HeaderValue::from_str(&csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, value);
    }
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Links out (consoles) carry no Referer, so the token stays here;
    // "no-referrer" would also make the browser send `Origin: null` with
    // the page's own approvals.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn refused(why: &str) -> Response {
    page(
        StatusCode::FORBIDDEN,
        "Refused",
        &format!(
            "<p class=\"error\">{}</p><p>Open the URL <code>deployer dashboard</code> printed.</p>",
            esc(why)
        ),
        None,
    )
}

const STYLE: &str = "
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:10px 20px}header a{color:#fff;font-weight:600;text-decoration:none;margin-right:12px}
main{padding:16px 20px}h2{font-size:16px;margin:18px 0 8px}
table{border-collapse:collapse;background:#fff}th,td{border:1px solid #dde1e7;padding:6px 10px;text-align:left;vertical-align:top}
th{background:#eef0f4}td small{display:block;color:#5b6476}
td.live{background:#e5f6e9}td.flight{background:#fff4d6}td.waiting{background:#e3ecff}td.failed{background:#fde4e4}td.none{color:#8a93a3}
.badge{display:inline-block;padding:1px 6px;border-radius:8px;font-size:12px;background:#dde1e7}
.s-SUCCEEDED{background:#bfe8c9}.s-FAILED{background:#f6c1c1}.s-IN_FLIGHT,.s-QUEUED{background:#ffe6a3}.s-AWAITING_APPROVAL,.s-AWAITING_WINDOW{background:#c8d8ff}
.error{color:#a01919}code{background:#eef0f4;padding:0 3px}
ol.transitions{margin:4px 0 0 18px;padding:0;color:#3b4354}
.diff-add{color:#17692b}.diff-del{color:#a01919}.diff-chg{color:#8a5a00}
form.inline{display:inline}button{font:inherit;padding:4px 12px;cursor:pointer}
.chart{background:#fff;border:1px solid #dde1e7;margin:0 12px 12px 0;display:inline-block;vertical-align:top}
.metric{display:inline-block;margin-right:24px}.metric b{font-size:20px;display:block}
";

async fn index(State(app): State<Arc<App>>, uri: Uri) -> Response {
    let params = params_of(uri.query().unwrap_or("").as_bytes());
    if !app.allowed(&params, "token") {
        return refused("missing or wrong token");
    }
    let grid = grid_html(&app).await;
    let envs: Vec<&str> = app.installs.iter().map(|i| i.env.as_str()).collect();
    let charts = link(
        &app,
        "/charts",
        &[("env", envs.first().copied().unwrap_or("dev"))],
    );
    let body = format!(
        "<h2>What is live where</h2><p>Refreshes every {}s · <a id=\"charts-link\" href=\"{}\">charts</a></p>\
         <div id=\"grid\">{grid}</div>",
        app.refresh_seconds,
        esc(&charts)
    );
    let refresh = format!(
        "setInterval(function(){{fetch({url}).then(function(r){{return r.ok?r.text():null}})\
         .then(function(h){{if(h!==null){{document.getElementById('grid').innerHTML=h}}}})\
         .catch(function(){{}})}},{ms});",
        url = serde_json::Value::String(link(&app, "/grid", &[])),
        ms = app.refresh_seconds * 1000
    );
    page(StatusCode::OK, "Environments", &body, Some(&refresh))
}

async fn grid_fragment(State(app): State<Arc<App>>, uri: Uri) -> Response {
    let params = params_of(uri.query().unwrap_or("").as_bytes());
    if !app.allowed(&params, "token") {
        return (StatusCode::FORBIDDEN, "missing or wrong token").into_response();
    }
    let mut response = grid_html(&app).await.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The environments x targets grid.
async fn grid_html(app: &App) -> String {
    let now = OffsetDateTime::now_utc();
    let mut statuses: Vec<Result<EnvStatus, String>> = Vec::new();
    for install in &app.installs {
        statuses.push(install.status().await.map_err(|e| format!("{e:#}")));
    }
    let mut targets: BTreeSet<(Kind, String)> = BTreeSet::new();
    for status in statuses.iter().flatten() {
        for t in &status.targets {
            targets.insert((t.kind, t.target.clone()));
        }
    }
    let mut html = String::from("<table id=\"grid-table\"><thead><tr><th>target</th>");
    for install in &app.installs {
        let _ = write!(html, "<th>{}</th>", esc(&install.env));
    }
    html.push_str("</tr></thead><tbody>");
    for (install, status) in app.installs.iter().zip(&statuses) {
        match status {
            Err(error) => {
                let _ = write!(
                    html,
                    "<tr><td colspan=\"{}\" class=\"error\">{}: {}</td></tr>",
                    app.installs.len() + 1,
                    esc(&install.env),
                    esc(error)
                );
            }
            Ok(status) if !status.installed => {
                let _ = write!(
                    html,
                    "<tr><td colspan=\"{}\" class=\"none\">{}: not installed</td></tr>",
                    app.installs.len() + 1,
                    esc(&install.env)
                );
            }
            Ok(status) if status.truncated => {
                let _ = write!(
                    html,
                    "<tr><td colspan=\"{}\" class=\"none truncated\" data-truncated=\"true\">{}</td></tr>",
                    app.installs.len() + 1,
                    esc(&crate::listing::truncated_note(&install.env))
                );
            }
            Ok(_) => {}
        }
    }
    if targets.is_empty() {
        let _ = write!(
            html,
            "<tr><td colspan=\"{}\" class=\"none\" id=\"grid-empty\">nothing deployed yet</td></tr>",
            app.installs.len() + 1
        );
    }
    for (kind, name) in &targets {
        let target = format!("{kind}:{name}");
        let _ = write!(html, "<tr><th>{}</th>", esc(&target));
        for (install, status) in app.installs.iter().zip(&statuses) {
            let found = status.as_ref().ok().and_then(|s| {
                s.targets
                    .iter()
                    .find(|t| t.kind == *kind && &t.target == name)
            });
            html.push_str(&cell(app, &install.env, &target, found, now));
        }
        html.push_str("</tr>");
    }
    html.push_str("</tbody></table>");
    html
}

fn cell(
    app: &App,
    env: &str,
    target: &str,
    status: Option<&TargetStatus>,
    now: OffsetDateTime,
) -> String {
    let Some(t) = status else {
        return format!(
            "<td class=\"none\" data-env=\"{}\" data-target=\"{}\" data-version=\"\">–</td>",
            esc(env),
            esc(target)
        );
    };
    let latest_failed = t.latest.state == DeployState::Failed
        && t.live.as_ref().is_none_or(|l| l.id != t.latest.id);
    let class = if t.open.iter().any(|d| d.state.awaits_a_person()) {
        "waiting"
    } else if !t.open.is_empty() {
        "flight"
    } else if latest_failed {
        "failed"
    } else if t.live.is_some() {
        "live"
    } else {
        "none"
    };
    let history = link(
        app,
        "/target",
        &[("env", env), ("kind", t.kind.as_str()), ("name", &t.target)],
    );
    let mut html = format!(
        "<td class=\"{class}\" data-env=\"{}\" data-target=\"{}\" data-version=\"{}\" data-state=\"{class}\">",
        esc(env),
        esc(target),
        esc(t.live.as_ref().map_or("", |l| l.version.as_str()))
    );
    match &t.live {
        Some(live) => {
            let since = live.finished_at.unwrap_or(live.started_at);
            let _ = write!(
                html,
                "<a class=\"version\" href=\"{}\">{}</a><small title=\"{}\">since {}</small><small>by {}</small>",
                esc(&history),
                esc(&live.version),
                esc(&ledger::rfc3339(since)),
                esc(&ago(now - since)),
                esc(live.by.as_deref().unwrap_or("-"))
            );
        }
        None => {
            let _ = write!(
                html,
                "<a class=\"version\" href=\"{}\">nothing live</a>",
                esc(&history)
            );
        }
    }
    for open in &t.open {
        let _ = write!(
            html,
            "<small class=\"open\"><span class=\"badge s-{}\">{}</span> {}</small>",
            open.state.as_str(),
            open.state.as_str(),
            esc(&open.version)
        );
        if open.state.awaits_a_person() && open.kind == Kind::Stack {
            let approve = link(
                app,
                "/confirm",
                &[
                    ("env", env),
                    ("repo", &open.target),
                    ("build", &open.id),
                    ("action", "approve"),
                ],
            );
            let reject = link(
                app,
                "/confirm",
                &[
                    ("env", env),
                    ("repo", &open.target),
                    ("build", &open.id),
                    ("action", "reject"),
                ],
            );
            let _ = write!(
                html,
                "<small><a class=\"approve\" href=\"{}\">approve</a> · <a class=\"reject\" href=\"{}\">reject</a></small>",
                esc(&approve),
                esc(&reject)
            );
        }
    }
    if latest_failed && t.open.is_empty() {
        let _ = write!(
            html,
            "<small class=\"failure\"><span class=\"badge s-FAILED\">FAILED</span> {}: {}</small>",
            esc(&t.latest.version),
            esc(t.latest.reason.as_deref().unwrap_or("no reason recorded"))
        );
    }
    html.push_str("</td>");
    html
}

async fn target_page(State(app): State<Arc<App>>, uri: Uri) -> Response {
    let params = params_of(uri.query().unwrap_or("").as_bytes());
    if !app.allowed(&params, "token") {
        return refused("missing or wrong token");
    }
    let (env, kind, name) = (
        params.get("env").cloned().unwrap_or_default(),
        params.get("kind").and_then(|k| k.parse::<Kind>().ok()),
        params.get("name").cloned().unwrap_or_default(),
    );
    let (Some(install), Some(kind)) = (app.install(&env), kind) else {
        return page(
            StatusCode::NOT_FOUND,
            "Not found",
            "<p class=\"error\">no such environment or kind</p>",
            None,
        );
    };
    let deployments = match install.history(kind, &name, 50, None).await {
        Ok((deployments, _)) => deployments,
        Err(err) => {
            return page(
                StatusCode::BAD_GATEWAY,
                "Error",
                &format!("<p class=\"error\">{}</p>", esc(&format!("{err:#}"))),
                None,
            )
        }
    };
    let target = format!("{kind}:{name}");
    let mut body = format!(
        "<p><a href=\"{}\">← grid</a> · <a href=\"{}\">charts of this target</a></p><h2>{} in {}</h2>",
        esc(&link(&app, "/", &[])),
        esc(&link(&app, "/charts", &[("env", &env), ("target", &target)])),
        esc(&target),
        esc(&env)
    );
    body.push_str(&history_html(&app, &env, &deployments));
    page(StatusCode::OK, &target, &body, None)
}

/// Each deployment with its transitions, its links, the change set it
/// showed, and the difference of its parameters from the one before it.
fn history_html(app: &App, env: &str, deployments: &[Deployment]) -> String {
    let mut html = String::from(
        "<table id=\"history\"><thead><tr><th>deployment</th><th>state</th><th>version</th>\
         <th>branch</th><th>by</th><th>started</th><th>took</th><th>transitions</th><th>parameters</th></tr></thead><tbody>",
    );
    for (i, d) in deployments.iter().enumerate() {
        let older = deployments.get(i + 1);
        let _ = write!(
            html,
            "<tr data-id=\"{}\"><td><code>{}</code>{}</td><td><span class=\"badge s-{}\">{}</span><small>{}</small></td>\
             <td>{}</td><td class=\"branch\">{}</td><td>{}</td><td>{}</td><td>{}</td><td><ol class=\"transitions\">",
            esc(&d.id),
            esc(&d.id),
            d.links
                .iter()
                .map(|l| format!("<small><a href=\"{}\" rel=\"noreferrer\">{}</a></small>", esc(&l.url), esc(&l.label)))
                .collect::<String>(),
            d.state.as_str(),
            d.state.as_str(),
            esc(&d.status),
            esc(&d.version),
            esc(d.branch.as_deref().unwrap_or("-")),
            esc(d.by.as_deref().unwrap_or("-")),
            esc(&ledger::rfc3339(d.started_at)),
            d.duration_seconds.map_or("-".to_owned(), duration),
        );
        for change in &d.transitions {
            let _ = write!(
                html,
                "<li><code>{}</code> {} <span class=\"reason\">{}</span></li>",
                esc(&ledger::rfc3339(change.at)),
                esc(&change.status),
                esc(&change.reason)
            );
        }
        html.push_str("</ol>");
        if let Some(summary) = &d.change_summary {
            let _ = write!(html, "<small>change set: {}</small>", esc(summary));
        }
        if d.state.awaits_a_person() && d.kind == Kind::Stack {
            let approve = link(
                app,
                "/confirm",
                &[
                    ("env", env),
                    ("repo", &d.target),
                    ("build", &d.id),
                    ("action", "approve"),
                ],
            );
            let reject = link(
                app,
                "/confirm",
                &[
                    ("env", env),
                    ("repo", &d.target),
                    ("build", &d.id),
                    ("action", "reject"),
                ],
            );
            let _ = write!(
                html,
                "<small><a class=\"approve\" href=\"{}\">approve</a> · <a class=\"reject\" href=\"{}\">reject</a></small>",
                esc(&approve),
                esc(&reject)
            );
        }
        html.push_str("</td><td>");
        html.push_str(&parameter_diff(d, older));
        html.push_str("</td></tr>");
    }
    html.push_str("</tbody></table>");
    html
}

/// What changed in the parameters since `older` (all of them when there
/// is no older deployment).
fn parameter_diff(d: &Deployment, older: Option<&Deployment>) -> String {
    if d.kind != Kind::Stack {
        return "-".into();
    }
    let empty = BTreeMap::new();
    let before = older.map_or(&empty, |o| &o.parameters);
    let mut lines = String::new();
    let names: BTreeSet<&String> = d.parameters.keys().chain(before.keys()).collect();
    for name in names {
        match (before.get(name), d.parameters.get(name)) {
            (None, Some(now)) => {
                let _ = write!(
                    lines,
                    "<div class=\"diff-add\">+ {} = {}</div>",
                    esc(name),
                    esc(now)
                );
            }
            (Some(was), None) => {
                let _ = write!(
                    lines,
                    "<div class=\"diff-del\">− {} = {}</div>",
                    esc(name),
                    esc(was)
                );
            }
            (Some(was), Some(now)) if was != now => {
                let _ = write!(
                    lines,
                    "<div class=\"diff-chg\">~ {}: {} → {}</div>",
                    esc(name),
                    esc(was),
                    esc(now)
                );
            }
            _ => {}
        }
    }
    match (lines.is_empty(), older) {
        (true, Some(o)) => format!("<small>same as {}</small>", esc(&o.version)),
        (true, None) => "<small>none</small>".into(),
        (false, Some(o)) => format!("<small>since {}</small>{lines}", esc(&o.version)),
        (false, None) => lines,
    }
}

async fn confirm_page(State(app): State<Arc<App>>, uri: Uri) -> Response {
    let params = params_of(uri.query().unwrap_or("").as_bytes());
    if !app.allowed(&params, "token") {
        return refused("missing or wrong token");
    }
    let get = |k: &str| params.get(k).cloned().unwrap_or_default();
    let (env, repo, build, action) = (get("env"), get("repo"), get("build"), get("action"));
    let approving = match action.as_str() {
        "approve" => true,
        "reject" => false,
        _ => {
            return page(
                StatusCode::BAD_REQUEST,
                "Bad request",
                "<p class=\"error\">action is approve or reject</p>",
                None,
            )
        }
    };
    let Some(install) = app.install(&env) else {
        return page(
            StatusCode::NOT_FOUND,
            "Not found",
            "<p class=\"error\">no such environment</p>",
            None,
        );
    };
    let detail = match crate::awaiting(&install.builds, &repo, &env, Some(&build)).await {
        Ok(b) => format!(
            "<p>Build <code>{}</code> of <b>{}</b> in <b>{}</b>: version <b>{}</b> from branch <b class=\"branch\">{}</b>.</p>{}",
            esc(&b.sk),
            esc(&b.repo),
            esc(&b.env),
            esc(&b.version),
            esc(&b.branch),
            b.change_summary
                .as_ref()
                .map(|s| format!("<p>Change set: {}</p>", esc(s)))
                .unwrap_or_default()
        ),
        Err(err) => {
            return page(
                StatusCode::CONFLICT,
                "Cannot answer",
                &format!("<p class=\"error\">{}</p>", esc(&format!("{err:#}"))),
                None,
            )
        }
    };
    let verb = if approving { "Approve" } else { "Reject" };
    let reason = if approving {
        String::new()
    } else {
        "<p><label>Reason <input name=\"reason\" size=\"60\" required></label></p>".into()
    };
    let body = format!(
        "<h2>{verb} this deployment?</h2>{detail}\
         <form method=\"post\" action=\"/answer\" id=\"confirm-form\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\"><input type=\"hidden\" name=\"env\" value=\"{}\">\
         <input type=\"hidden\" name=\"repo\" value=\"{}\"><input type=\"hidden\" name=\"build\" value=\"{}\">\
         <input type=\"hidden\" name=\"action\" value=\"{}\">{reason}\
         <button type=\"submit\" id=\"confirm\">{verb} as {}</button> <a href=\"{}\">cancel</a></form>",
        esc(&app.token),
        esc(&env),
        esc(&repo),
        esc(&build),
        esc(&action),
        esc(&app.operator),
        esc(&link(&app, "/", &[]))
    );
    page(
        StatusCode::OK,
        &format!("{verb} {repo} in {env}"),
        &body,
        None,
    )
}

async fn answer(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    let form = params_of(&body);
    if !app.allowed(&form, "csrf") {
        return refused("missing or wrong form token");
    }
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    if origin != Some(app.origin.as_str()) {
        return refused(&format!(
            "an approval must come from this dashboard's own page (Origin {} is not {})",
            origin.unwrap_or("missing"),
            app.origin
        ));
    }
    let get = |k: &str| form.get(k).cloned().unwrap_or_default();
    let (env, repo, build, action) = (get("env"), get("repo"), get("build"), get("action"));
    let Some(install) = app.install(&env) else {
        return page(
            StatusCode::NOT_FOUND,
            "Not found",
            "<p class=\"error\">no such environment</p>",
            None,
        );
    };
    let answer = match action.as_str() {
        "approve" => crate::Answer::Approve {
            by: app.operator.clone(),
        },
        "reject" => {
            let reason = get("reason");
            if reason.trim().is_empty() {
                return page(
                    StatusCode::BAD_REQUEST,
                    "Bad request",
                    "<p class=\"error\">a rejection needs a reason</p>",
                    None,
                );
            }
            crate::Answer::Reject {
                reason,
                by: app.operator.clone(),
            }
        }
        _ => {
            return page(
                StatusCode::BAD_REQUEST,
                "Bad request",
                "<p class=\"error\">action is approve or reject</p>",
                None,
            )
        }
    };
    let result = async {
        let build = crate::awaiting(&install.builds, &repo, &env, Some(&build)).await?;
        crate::answer(&app.aws, &build, answer).await
    }
    .await;
    match result {
        Ok(()) => {
            let back = link(
                &app,
                "/target",
                &[("env", &env), ("kind", "stack"), ("name", &repo)],
            );
            let mut response = StatusCode::SEE_OTHER.into_response();
            if let Ok(value) = HeaderValue::from_str(&back) {
                response.headers_mut().insert(header::LOCATION, value);
            }
            response
        }
        Err(err) => page(
            StatusCode::CONFLICT,
            "Not answered",
            &format!("<p class=\"error\">{}</p>", esc(&format!("{err:#}"))),
            None,
        ),
    }
}

/// The four delivery measures of a set of deployments over `days` days.
struct Measures {
    /// Per day, oldest first: (day, deployments that went live).
    frequency: Vec<(String, f64)>,
    /// Per day: mean minutes from upload or push to live.
    lead_minutes: Vec<(String, f64)>,
    /// Per day: failed / (failed + went live), in percent.
    failure_rate: Vec<(String, f64)>,
    /// Per day: mean minutes from a failure to the target's next success.
    restore_minutes: Vec<(String, f64)>,
    live: usize,
    failed: usize,
    mean_lead: Option<f64>,
    mean_restore: Option<f64>,
}

fn measure(deployments: &[Deployment], days: i64, now: OffsetDateTime) -> Measures {
    let day_of = |at: OffsetDateTime| {
        let d = at.to_offset(time::UtcOffset::UTC).date();
        format!("{}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
    };
    let labels: Vec<String> = (0..days)
        .rev()
        .map(|back| day_of(now - Duration::days(back)))
        .collect();
    let mut live: BTreeMap<&str, f64> = BTreeMap::new();
    let mut failed: BTreeMap<&str, f64> = BTreeMap::new();
    let mut lead: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut restore: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let index: HashMap<String, &str> = labels.iter().map(|l| (l.clone(), l.as_str())).collect();
    let (mut all_lead, mut all_restore) = (Vec::new(), Vec::new());
    let (mut live_total, mut failed_total) = (0, 0);
    for d in deployments {
        let Some(end) = d.finished_at else { continue };
        let Some(day) = index.get(&day_of(end)).copied() else {
            continue;
        };
        match d.state {
            DeployState::Succeeded => {
                live_total += 1;
                *live.entry(day).or_default() += 1.0;
                let minutes = (end - d.started_at).as_seconds_f64() / 60.0;
                lead.entry(day).or_default().push(minutes);
                all_lead.push(minutes);
            }
            DeployState::Failed => {
                failed_total += 1;
                *failed.entry(day).or_default() += 1.0;
                // Restored by the target's next deployment that went live.
                let next_live = deployments
                    .iter()
                    .filter(|n| {
                        n.kind == d.kind
                            && n.target == d.target
                            && n.state == DeployState::Succeeded
                    })
                    .filter_map(|n| n.finished_at)
                    .filter(|at| *at > end)
                    .min();
                if let Some(restored) = next_live {
                    let minutes = (restored - end).as_seconds_f64() / 60.0;
                    restore.entry(day).or_default().push(minutes);
                    all_restore.push(minutes);
                }
            }
            _ => {}
        }
    }
    let mean = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
    let series =
        |f: &dyn Fn(&str) -> f64| labels.iter().map(|l| (l.clone(), f(l))).collect::<Vec<_>>();
    Measures {
        frequency: series(&|l| live.get(l).copied().unwrap_or(0.0)),
        lead_minutes: series(&|l| lead.get(l).and_then(|v| mean(v)).unwrap_or(0.0)),
        failure_rate: series(&|l| {
            let (ok, bad) = (
                live.get(l).copied().unwrap_or(0.0),
                failed.get(l).copied().unwrap_or(0.0),
            );
            if ok + bad == 0.0 {
                0.0
            } else {
                100.0 * bad / (ok + bad)
            }
        }),
        restore_minutes: series(&|l| restore.get(l).and_then(|v| mean(v)).unwrap_or(0.0)),
        live: live_total,
        failed: failed_total,
        mean_lead: mean(&all_lead),
        mean_restore: mean(&all_restore),
    }
}

/// A bar chart as inline SVG: one bar per day, the greatest value marked.
fn bar_chart(id: &str, title: &str, unit: &str, bars: &[(String, f64)]) -> String {
    let (width, height, left, bottom, top) = (560.0, 200.0, 44.0, 28.0, 36.0);
    let max = bars.iter().map(|(_, v)| *v).fold(0.0, f64::max);
    let scale = if max > 0.0 {
        (height - bottom - top) / max
    } else {
        0.0
    };
    let slot = (width - left - 8.0) / bars.len().max(1) as f64;
    let mut svg = format!(
        "<svg class=\"chart\" id=\"{}\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         viewBox=\"0 0 {width} {height}\" role=\"img\" aria-label=\"{}\"><title>{}</title>\
         <text x=\"8\" y=\"17\" font-size=\"13\" font-weight=\"600\">{}</text>\
         <line x1=\"{left}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#8a93a3\"/>\
         <text x=\"{}\" y=\"{}\" font-size=\"10\" text-anchor=\"end\">{}</text>\
         <text x=\"{}\" y=\"{}\" font-size=\"10\" text-anchor=\"end\">0</text>",
        esc(id),
        esc(title),
        esc(title),
        esc(title),
        height - bottom,
        width - 8.0,
        height - bottom,
        left - 4.0,
        top + 8.0,
        esc(&round(max)),
        left - 4.0,
        height - bottom,
    );
    let every = (bars.len() / 8).max(1);
    for (i, (label, value)) in bars.iter().enumerate() {
        let h = value * scale;
        let x = left + i as f64 * slot + slot * 0.15;
        let _ = write!(
            svg,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"#3b6fd8\"><title>{}: {} {}</title></rect>",
            height - bottom - h,
            slot * 0.7,
            esc(label),
            round(*value),
            esc(unit)
        );
        if *value > 0.0 {
            let _ = write!(
                svg,
                "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"middle\">{}</text>",
                x + slot * 0.35,
                height - bottom - h - 3.0,
                round(*value)
            );
        }
        if i % every == 0 {
            let _ = write!(
                svg,
                "<text x=\"{:.1}\" y=\"{}\" font-size=\"10\" text-anchor=\"middle\">{}</text>",
                x + slot * 0.35,
                height - bottom + 14.0,
                esc(label.get(5..).unwrap_or(label))
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

fn round(v: f64) -> String {
    if v >= 10.0 || v == v.trunc() {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

async fn charts_page(State(app): State<Arc<App>>, uri: Uri) -> Response {
    let params = params_of(uri.query().unwrap_or("").as_bytes());
    if !app.allowed(&params, "token") {
        return refused("missing or wrong token");
    }
    let env = params
        .get("env")
        .cloned()
        .or_else(|| app.installs.first().map(|i| i.env.clone()))
        .unwrap_or_default();
    let Some(install) = app.install(&env) else {
        return page(
            StatusCode::NOT_FOUND,
            "Not found",
            "<p class=\"error\">no such environment</p>",
            None,
        );
    };
    let days: i64 = params
        .get("days")
        .and_then(|d| d.parse().ok())
        .filter(|d| (1..=366).contains(d))
        .unwrap_or(14);
    let target = params.get("target").cloned().unwrap_or_default();
    let now = OffsetDateTime::now_utc();
    let since = now - Duration::days(days);
    let recent = match install.recent(recent_per_kind(), Some(since)).await {
        Ok(recent) => recent,
        Err(err) => {
            return page(
                StatusCode::BAD_GATEWAY,
                "Error",
                &format!("<p class=\"error\">{}</p>", esc(&format!("{err:#}"))),
                None,
            )
        }
    };
    let truncated = if recent.truncated {
        format!(
            "<p class=\"error\" id=\"charts-truncated\" data-truncated=\"true\">{}</p>",
            esc(&crate::listing::truncated_note(&env))
        )
    } else {
        String::new()
    };
    let recent = recent.deployments;
    let names: Vec<String> = group_by_target(recent.clone())
        .into_keys()
        .map(|(k, n)| format!("{k}:{n}"))
        .collect();
    let chosen: Vec<Deployment> = recent
        .into_iter()
        .filter(|d| target.is_empty() || d.target_name() == target)
        .collect();
    let m = measure(&chosen, days, now);
    let mut form = format!(
        "<form method=\"get\" action=\"/charts\" id=\"chart-form\"><input type=\"hidden\" name=\"token\" value=\"{}\">\
         <label>environment <select name=\"env\">",
        esc(&app.token)
    );
    for i in &app.installs {
        let _ = write!(
            form,
            "<option{}>{}</option>",
            if i.env == env { " selected" } else { "" },
            esc(&i.env)
        );
    }
    form.push_str("</select></label> <label>target <select name=\"target\"><option value=\"\">every target</option>");
    for name in &names {
        let _ = write!(
            form,
            "<option value=\"{}\"{}>{}</option>",
            esc(name),
            if *name == target { " selected" } else { "" },
            esc(name)
        );
    }
    form.push_str("</select></label> <label>period <select name=\"days\">");
    for d in [1, 7, 14, 30, 90] {
        let _ = write!(
            form,
            "<option value=\"{d}\"{}>{d} days</option>",
            if d == days { " selected" } else { "" }
        );
    }
    form.push_str("</select></label> <button type=\"submit\">show</button></form>");
    let minutes = |v: Option<f64>| v.map_or("–".to_owned(), |m| duration((m * 60.0) as i64));
    let rate = if m.live + m.failed == 0 {
        "–".to_owned()
    } else {
        format!(
            "{:.0}%",
            100.0 * m.failed as f64 / (m.live + m.failed) as f64
        )
    };
    let body = format!(
        "<p><a href=\"{}\">← grid</a></p>{form}{truncated}<h2>{} in {}, last {days} days</h2>\
         <p><span class=\"metric\" id=\"m-live\"><b>{}</b>went live</span><span class=\"metric\"><b>{}</b>mean lead time</span>\
         <span class=\"metric\" id=\"m-failures\"><b>{}</b>change failure rate</span><span class=\"metric\"><b>{}</b>mean time to restore</span></p>{}{}{}{}",
        esc(&link(&app, "/", &[])),
        esc(if target.is_empty() { "every target" } else { &target }),
        esc(&env),
        m.live,
        minutes(m.mean_lead),
        rate,
        minutes(m.mean_restore),
        bar_chart("chart-frequency", "Deploy frequency (went live per day)", "deploys", &m.frequency),
        bar_chart("chart-lead", "Lead time, upload or push to live (mean per day)", "min", &m.lead_minutes),
        bar_chart("chart-failures", "Change failure rate (per day)", "%", &m.failure_rate),
        bar_chart("chart-restore", "Time to restore (mean per day)", "min", &m.restore_minutes),
    );
    page(StatusCode::OK, "Charts", &body, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_and_quotes_are_text() {
        assert_eq!(
            esc(r#"feature/<script>alert("x")</script>'"#),
            "feature/&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&#39;"
        );
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same("abcd", "abcd"));
        assert!(!same("abcd", "abce"));
        assert!(!same("abc", "abcd"));
    }

    fn deployment(target: &str, state: DeployState, start_min: i64, end_min: i64) -> Deployment {
        let base = time::macros::datetime!(2026-12-01 08:00 UTC);
        Deployment {
            kind: Kind::Stack,
            target: target.into(),
            env: "prd".into(),
            id: format!("{target}{start_min}"),
            version: "1".into(),
            status: state.as_str().into(),
            state,
            trigger: "upload".into(),
            by: None,
            branch: None,
            started_at: base + Duration::minutes(start_min),
            finished_at: Some(base + Duration::minutes(end_min)),
            duration_seconds: Some((end_min - start_min) * 60),
            reason: None,
            transitions: Vec::new(),
            links: Vec::new(),
            parameters: Default::default(),
            change_summary: None,
        }
    }

    #[test]
    fn measures_count_live_failed_lead_and_restore() {
        let now = time::macros::datetime!(2026-12-01 12:00 UTC);
        let all = vec![
            deployment("shop", DeployState::Succeeded, 100, 110),
            deployment("shop", DeployState::Failed, 20, 30),
            deployment("shop", DeployState::Succeeded, 0, 4),
            deployment("cart", DeployState::Superseded, 0, 1),
        ];
        let m = measure(&all, 2, now);
        assert_eq!((m.live, m.failed), (2, 1));
        assert_eq!(m.frequency.last().unwrap().1, 2.0);
        assert_eq!(m.failure_rate.last().unwrap().1, 100.0 / 3.0);
        assert_eq!(m.mean_lead, Some(7.0));
        assert_eq!(
            m.mean_restore,
            Some(80.0),
            "failed at 30, live again at 110"
        );
        assert_eq!(m.frequency.first().unwrap().1, 0.0, "the day before");
    }
}
