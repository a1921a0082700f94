//! The Function URL: GitHub webhooks on `POST /`, approval links on
//! `/approve`. Every answer is a Function URL response object; errors are
//! answered, never thrown, so GitHub sees a status and a reason.

use base64::Engine;
use ledger::now_rfc3339;
use serde_json::{json, Value};
use sitedao::{
    now_epoch, Changes, Deployment, DeploymentKey, DeploymentStatus, StoreError, Transition,
};
use tracing::{info, warn};

use super::{Enqueued, ServiceError, SiteService};
use crate::approval::hash_token;
use crate::trigger::github::{self, GitHubPolicy};
use crate::trigger::Command;

/// A request as the Function URL event gives it.
struct Request<'a> {
    method: &'a str,
    path: &'a str,
    event: &'a Value,
    body: Vec<u8>,
}

impl Request<'_> {
    fn header(&self, name: &str) -> Option<String> {
        let name = name.to_ascii_lowercase();
        self.event
            .get("headers")
            .and_then(Value::as_object)?
            .iter()
            .find(|(k, _)| k.to_ascii_lowercase() == name)
            .and_then(|(_, v)| v.as_str())
            .map(str::to_owned)
    }

    fn query(&self, name: &str) -> Option<String> {
        let raw = self.event.get("rawQueryString").and_then(Value::as_str)?;
        form_urlencoded::parse(raw.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    fn form(&self, name: &str) -> Option<String> {
        form_urlencoded::parse(&self.body)
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }
}

/// The answer to a request that failed on this side. The body is generic,
/// with the request id to find the reason in the log: the reason names
/// tables, functions and AWS's error text, which are nobody's business on a
/// public URL. A 503 is worth retrying (an AWS call failed); a 500 is not.
fn failure(error: &ServiceError, request_id: &str) -> Value {
    let (status, text) = match error {
        ServiceError::Store(StoreError::Dynamo { .. })
        | ServiceError::Start { .. }
        | ServiceError::Publish(_)
        | ServiceError::LiveStore(_)
        | ServiceError::Secrets(_)
        | ServiceError::Email { .. } => (503, "Service Unavailable"),
        ServiceError::Store(StoreError::Corrupt { .. })
        | ServiceError::NotFound(_)
        | ServiceError::BadRequest(_)
        | ServiceError::FunctionUrl(_) => (500, "Internal Server Error"),
    };
    respond(status, json!({"error": text, "request_id": request_id}))
}

fn respond(status: u16, body: Value) -> Value {
    json!({
        "statusCode": status,
        "headers": {"content-type": "application/json"},
        "body": body.to_string(),
    })
}

fn page(status: u16, title: &str, body_html: &str) -> Value {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <meta name=\"robots\" content=\"noindex\"><title>{title}</title>\
         <style>body{{font:16px system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem}}\
         dt{{font-weight:600}}button{{font-size:1rem;padding:.5rem 1.5rem}}</style></head>\
         <body><h1>{title}</h1>{body_html}</body></html>",
        title = escape(title)
    );
    json!({
        "statusCode": status,
        "headers": {
            "content-type": "text/html; charset=utf-8",
            "cache-control": "no-store",
            "referrer-policy": "no-referrer",
            "x-frame-options": "DENY",
        },
        "body": html,
    })
}

/// HTML-escapes text shown on a page.
fn escape(text: &str) -> String {
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

const NO_LONGER_VALID: &str =
    "<p>This approval link is no longer valid: it was used already, it expired, \
     or the deployment was decided otherwise. Nothing was changed.</p>";

impl SiteService {
    pub(super) async fn http(&self, event: &Value) -> Value {
        let method = event
            .pointer("/requestContext/http/method")
            .and_then(Value::as_str)
            .unwrap_or("GET");
        let path = event.get("rawPath").and_then(Value::as_str).unwrap_or("/");
        let raw_body = event.get("body").and_then(Value::as_str).unwrap_or("");
        let body = if event.get("isBase64Encoded").and_then(Value::as_bool) == Some(true) {
            match base64::engine::general_purpose::STANDARD.decode(raw_body) {
                Ok(body) => body,
                Err(_) => return respond(400, json!({"error": "the body is not valid base64"})),
            }
        } else {
            raw_body.as_bytes().to_vec()
        };
        let request = Request {
            method,
            path,
            event,
            body,
        };
        let result = match (method, path) {
            ("POST", "/") | ("POST", "/webhook") => self.webhook(&request).await,
            ("GET", "/approve") => self.approval_page(&request).await,
            ("POST", "/approve") => self.approve(&request).await,
            _ => Ok(respond(
                404,
                json!({"error": format!("no route for {} {}", request.method, request.path)}),
            )),
        };
        result.unwrap_or_else(|e| {
            let request_id = event
                .pointer("/requestContext/requestId")
                .and_then(Value::as_str)
                .unwrap_or("-");
            warn!(error = %e, request_id, method, path, "request failed");
            failure(&e, request_id)
        })
    }

    async fn webhook(&self, request: &Request<'_>) -> Result<Value, ServiceError> {
        let policy = GitHubPolicy {
            production_branch: self.config.production_branch.clone(),
            staging_on_pull_request: self.config.staging_on_pull_request,
            repositories: vec![self.config.repository.clone()],
        };
        let secret = &self.secured().await?.secret;
        let commands = match github::parse_webhook(
            &|name| request.header(name),
            &request.body,
            secret,
            &policy,
        ) {
            Ok(commands) => commands,
            Err(e) => {
                warn!(error = %e, status = e.status(), "webhook refused; nothing built");
                return Ok(respond(e.status(), json!({"error": e.to_string()})));
            }
        };
        let mut deployments = Vec::new();
        let mut duplicates = 0;
        let mut ignored = Vec::new();
        for command in &commands {
            match command {
                Command::Pong => return Ok(respond(200, json!({"pong": true}))),
                Command::Ignored { reason } => {
                    info!(reason = %reason, "webhook delivery ignored");
                    ignored.push(reason.clone());
                }
                _ => match self.enqueue(command, None).await? {
                    Some(Enqueued::Queued(d) | Enqueued::AwaitingApproval(d)) => {
                        deployments.push(json!({
                            "deployment_id": d.id, "target": d.target,
                            "status": d.status, "url": d.url,
                        }))
                    }
                    Some(Enqueued::Duplicate(existing)) => {
                        info!(
                            deployment = existing.map(|d| d.key().to_string()).unwrap_or_default(),
                            "redelivered webhook; nothing new is built"
                        );
                        duplicates += 1;
                    }
                    None => ignored.push("nothing to do for this command".into()),
                },
            }
        }
        let status = if deployments.is_empty() { 200 } else { 202 };
        Ok(respond(
            status,
            json!({"deployments": deployments, "duplicates": duplicates, "ignored": ignored}),
        ))
    }

    /// The deployment an approval request names, if its token is the one
    /// it waits for and is still valid.
    async fn awaiting(
        &self,
        target: Option<String>,
        id: Option<String>,
        token: Option<String>,
    ) -> Result<Option<(Deployment, String)>, ServiceError> {
        let (Some(target), Some(id), Some(token)) = (target, id, token) else {
            return Ok(None);
        };
        let Ok(hash) = hash_token(&token) else {
            return Ok(None);
        };
        let key = DeploymentKey { target, id };
        let Some(deployment) = self.store.get(&key).await? else {
            return Ok(None);
        };
        let valid = deployment.status == DeploymentStatus::AwaitingApproval
            && deployment.approval_token_hash.as_deref() == Some(hash.as_str())
            && deployment
                .approval_expires_at
                .is_some_and(|t| t > now_epoch());
        Ok(valid.then_some((deployment, hash)))
    }

    /// GET shows what would be approved and a button; it changes nothing,
    /// so a mail scanner following the link approves nothing.
    async fn approval_page(&self, request: &Request<'_>) -> Result<Value, ServiceError> {
        let found = self
            .awaiting(
                request.query("target"),
                request.query("id"),
                request.query("token"),
            )
            .await?;
        let Some((deployment, _)) = found else {
            return Ok(page(410, "Approval link not valid", NO_LONGER_VALID));
        };
        let hidden = |name: &str, value: &str| {
            format!(
                "<input type=\"hidden\" name=\"{name}\" value=\"{}\">",
                escape(value)
            )
        };
        let body = format!(
            "<dl><dt>Site</dt><dd>{site}</dd><dt>Deploy to</dt><dd>{target}</dd>\
             <dt>Branch</dt><dd>{branch}</dd><dt>Commit</dt><dd>{commit}</dd>\
             <dt>Requested by</dt><dd>{by} ({origin})</dd><dt>Requested at</dt><dd>{at}</dd></dl>\
             <form method=\"post\" action=\"approve\">{t}{i}{k}\
             <button type=\"submit\">Approve and deploy</button></form>",
            site = escape(&deployment.site),
            target = escape(&deployment.url),
            branch = escape(&deployment.branch),
            commit = escape(
                deployment
                    .commit
                    .as_deref()
                    .unwrap_or("the branch's head when it builds")
            ),
            by = escape(&deployment.triggered_by),
            origin = escape(&deployment.origin),
            at = escape(&deployment.created_at),
            t = hidden("target", &deployment.target),
            i = hidden("id", &deployment.id),
            k = hidden(
                "token",
                request.query("token").as_deref().unwrap_or_default()
            ),
        );
        Ok(page(200, "Approve a production deploy?", &body))
    }

    /// POST consumes the token in one conditional write and starts the build.
    async fn approve(&self, request: &Request<'_>) -> Result<Value, ServiceError> {
        let found = self
            .awaiting(
                request.form("target"),
                request.form("id"),
                request.form("token"),
            )
            .await?;
        let Some((deployment, hash)) = found else {
            warn!("approval refused: unknown, used or expired token");
            return Ok(page(410, "Approval link not valid", NO_LONGER_VALID));
        };
        let key = deployment.key();
        let consumed = self
            .store
            .transition(
                &key,
                DeploymentStatus::AwaitingApproval,
                DeploymentStatus::Queued,
                Changes::default()
                    .set("approved_by", "approval link")
                    .set("approved_at", now_rfc3339())
                    .remove("approval_token_hash")
                    .remove("approval_expires_at"),
                Some((
                    "approval_token_hash = :hash AND approval_expires_at > :epoch",
                    vec![
                        (":hash", aws_sdk_dynamodb::types::AttributeValue::S(hash)),
                        (
                            ":epoch",
                            aws_sdk_dynamodb::types::AttributeValue::N(now_epoch().to_string()),
                        ),
                    ],
                )),
            )
            .await?;
        if consumed == Transition::Refused {
            warn!(deployment = %key, "approval lost a race: the token was used already");
            return Ok(page(410, "Approval link not valid", NO_LONGER_VALID));
        }
        info!(deployment = %key, "production deploy approved");
        let mut queued = deployment.clone();
        queued.status = DeploymentStatus::Queued;
        self.start(&queued, None).await?;
        Ok(page(
            200,
            "Approved",
            &format!(
                "<p>Deployment {} of {} is building. It will be live at <a href=\"{url}\">{url}</a>.</p>",
                escape(&deployment.id),
                escape(&deployment.branch),
                url = escape(&deployment.url)
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_answer_generically_with_the_request_id_and_never_the_reason() {
        let throttled = ServiceError::Store(StoreError::Dynamo {
            operation: "TransactWriteItems",
            table: "prd-deployer-site-deployments".into(),
            message: "ThrottlingException: arn:aws:dynamodb:eu-west-1:123456789012:table/x".into(),
        });
        let answer = failure(&throttled, "req-1");
        assert_eq!(answer["statusCode"], 503);
        let body: Value = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
        assert_eq!(
            body,
            json!({"error": "Service Unavailable", "request_id": "req-1"})
        );

        let broken = ServiceError::FunctionUrl("AccessDenied for role x".into());
        let answer = failure(&broken, "req-2");
        assert_eq!(answer["statusCode"], 500);
        assert_eq!(
            answer["body"],
            r#"{"error":"Internal Server Error","request_id":"req-2"}"#
        );
    }

    #[test]
    fn shown_text_is_escaped() {
        assert_eq!(
            escape("<script>\"x\" & 'y'</script>"),
            "&lt;script&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/script&gt;"
        );
    }
}
