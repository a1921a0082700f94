//! site-build end to end on the local stack: GitHub webhooks on the
//! function URL, SES mail, direct invocations and approval links, through
//! the real `site-build` binary, a GitHub double serving a real git
//! repository, npm, S3 and CloudFront in moto, and the loopback site server
//! standing in for CloudFront's router.

use std::path::PathBuf;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use deployer_e2e::TestStack;
use local_stack::{HostTarget, SampleRepo};
use serde_json::{json, Value};
use site_build::WebhookSecret;

const SENDER: &str = "ana@example.com";
const REPLY_FROM: &str = "deploys@example.com";

struct SiteStack {
    stack: TestStack,
    repo: SampleRepo,
    logs: PathBuf,
    http: reqwest::Client,
}

impl SiteStack {
    async fn start(env: &str) -> Self {
        let repo =
            SampleRepo::create(&deployer_e2e::root(), &std::env::temp_dir()).expect("sample repo");
        let logs =
            std::env::temp_dir().join(format!("site-flow-logs-{env}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&logs);
        std::fs::create_dir_all(&logs).unwrap();
        let (dir, log_dir) = (repo.dir.clone(), logs.clone());
        let stack = TestStack::start_configured(env, &[], move |options| {
            options.site_repo = Some(dir);
            options.email_senders = vec![SENDER.to_owned()];
            options.log_dir = Some(log_dir);
            // The template parameter, so the role may send as it (IAM is enforced).
            options
                .parameters
                .push(("EmailReplyFrom".into(), REPLY_FROM.into()));
        })
        .await;
        // The reply address is a verified SES identity, as it must be in AWS.
        aws_sdk_sesv2::Client::new(&stack.pipeline.sdk)
            .create_email_identity()
            .email_identity(REPLY_FROM)
            .send()
            .await
            .expect("SES identity");
        Self {
            stack,
            repo,
            logs,
            http: reqwest::Client::new(),
        }
    }

    fn pipeline(&self) -> &local_stack::Pipeline {
        &self.stack.pipeline
    }

    fn repository(&self) -> String {
        self.pipeline().site_resources.repository.clone()
    }

    fn secret(&self) -> WebhookSecret {
        WebhookSecret::new(self.pipeline().github_secret.as_bytes().to_vec()).unwrap()
    }

    /// Posts a webhook delivery; `signature` overrides the correct one.
    async fn deliver(
        &self,
        event: &str,
        delivery: &str,
        body: &[u8],
        signature: Option<Option<String>>,
    ) -> (u16, Value) {
        let signature = signature.unwrap_or_else(|| Some(self.secret().sign(body)));
        let mut request = self
            .http
            .post(&self.pipeline().function_url)
            .header("content-type", "application/json")
            .header("x-github-event", event)
            .header("x-github-delivery", delivery)
            .body(body.to_vec());
        if let Some(signature) = signature {
            request = request.header("x-hub-signature-256", signature);
        }
        let response = request.send().await.expect("function URL answers");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    fn push_body(&self, branch: &str, sha: &str) -> Vec<u8> {
        deployer_e2e::github_push(&self.repository(), branch, sha)
            .to_string()
            .into_bytes()
    }

    fn pull_request_body(&self, action: &str, number: u64, branch: &str, sha: &str) -> Vec<u8> {
        deployer_e2e::github_pull_request(&self.repository(), action, number, branch, sha)
            .to_string()
            .into_bytes()
    }

    fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&self.pipeline().sdk)
    }

    /// Every deployment record, oldest first.
    async fn deployments(&self) -> Vec<Value> {
        let out = self
            .dynamodb()
            .scan()
            .table_name(&self.pipeline().site_resources.deployments_table)
            .send()
            .await
            .unwrap();
        let mut records: Vec<Value> = out
            .items
            .unwrap_or_default()
            .into_iter()
            .filter(|item| {
                !item["pk"]
                    .as_s()
                    .map(|pk| pk.starts_with("dedupe#"))
                    .unwrap_or(true)
            })
            .map(|item| serde_dynamo::from_item(item).unwrap())
            .collect();
        records.sort_by(|a, b| a["sk"].as_str().cmp(&b["sk"].as_str()));
        records
    }

    async fn deployment(&self, target: &str, id: &str) -> Value {
        let out = self
            .dynamodb()
            .get_item()
            .table_name(&self.pipeline().site_resources.deployments_table)
            .key("pk", AttributeValue::S(target.into()))
            .key("sk", AttributeValue::S(id.into()))
            .consistent_read(true)
            .send()
            .await
            .unwrap();
        serde_dynamo::from_item(out.item.expect("deployment exists")).unwrap()
    }

    /// Waits until the deployment leaves QUEUED/BUILDING/AWAITING_APPROVAL.
    async fn finished(&self, target: &str, id: &str) -> Value {
        for _ in 0..600 {
            let record = self.deployment(target, id).await;
            match record["status"].as_str().unwrap() {
                "QUEUED" | "BUILDING" => tokio::time::sleep(Duration::from_millis(200)).await,
                _ => return record,
            }
        }
        panic!("deployment {target}/{id} did not finish in 2 minutes");
    }

    /// GET through the site server (CloudFront's stand-in):
    /// (status, content type, cache control, body).
    async fn visit(&self, target: &HostTarget, path: &str) -> (u16, String, String, String) {
        let page = self
            .pipeline()
            .site
            .get(target, path)
            .await
            .expect("site server answers");
        (
            page.status,
            page.content_type.clone().unwrap_or_default(),
            page.cache_control.clone().unwrap_or_default(),
            page.text(),
        )
    }

    fn log(&self) -> String {
        let mut all = String::new();
        for entry in std::fs::read_dir(&self.logs).unwrap() {
            let path = entry.unwrap().path();
            if path.to_string_lossy().contains("site-build") {
                all.push_str(&std::fs::read_to_string(path).unwrap_or_default());
            }
        }
        all
    }

    async fn invoke(&self, payload: Value) -> Value {
        let lambda = self.pipeline().lambda();
        let out = lambda
            .invoke()
            .function_name(&self.pipeline().site_resources.function_name)
            .payload(aws_sdk_lambda::primitives::Blob::new(payload.to_string()))
            .send()
            .await
            .expect("invoke answers");
        let body = out.payload.map(|p| p.into_inner()).unwrap_or_default();
        assert!(
            out.function_error.is_none(),
            "function error: {}",
            String::from_utf8_lossy(&body)
        );
        serde_json::from_slice(&body).unwrap()
    }

    /// Stores a raw message as SES would and invokes the function with the
    /// SES event for it.
    async fn mail(
        &self,
        message_id: &str,
        from: &str,
        body: &str,
        verdicts: &[(&str, &str)],
    ) -> Value {
        let raw = format!(
            "From: {from}\r\nTo: deploy@site.example.com\r\nSubject: deploy\r\nMessage-ID: <{message_id}@example.com>\r\n\
             MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{}",
            body.replace('\n', "\r\n")
        );
        self.pipeline()
            .s3()
            .put_object()
            .bucket(&self.pipeline().site_resources.bucket)
            .key(format!("inbound/{message_id}"))
            .body(raw.into_bytes().into())
            .send()
            .await
            .unwrap();
        let verdict = |name: &str| {
            let status = verdicts
                .iter()
                .find(|(v, _)| *v == name)
                .map(|(_, s)| *s)
                .unwrap_or("PASS");
            json!({"status": status})
        };
        let event = json!({"Records": [{
            "eventSource": "aws:ses",
            "eventVersion": "1.0",
            "ses": {
                "mail": {
                    "timestamp": "2026-11-23T07:00:00.000Z",
                    "source": from,
                    "messageId": message_id,
                    "destination": ["deploy@site.example.com"],
                    "headersTruncated": false,
                    "headers": [
                        {"name": "From", "value": from},
                        {"name": "DKIM-Signature", "value": format!(
                            "v=1; a=rsa-sha256; d={}; s=s1; h=from; bh=x; b=y",
                            from.rsplit('@').next().unwrap_or_default()
                        )},
                    ],
                    "commonHeaders": {
                        "returnPath": from,
                        "from": [from],
                        "date": "Mon, 23 Nov 2026 07:00:00 +0000",
                        "to": ["deploy@site.example.com"],
                        "messageId": format!("<{message_id}@example.com>"),
                        "subject": "deploy",
                    },
                },
                "receipt": {
                    "timestamp": "2026-11-23T07:00:00.000Z",
                    "processingTimeMillis": 400,
                    "recipients": ["deploy@site.example.com"],
                    "spamVerdict": verdict("spam"),
                    "virusVerdict": verdict("virus"),
                    "spfVerdict": verdict("spf"),
                    "dkimVerdict": verdict("dkim"),
                    "dmarcVerdict": verdict("dmarc"),
                    "action": {
                        "type": "Lambda",
                        "functionArn": format!("arn:aws:lambda:us-east-1:123456789012:function:{}", self.pipeline().site_resources.function_name),
                        "invocationType": "Event",
                    },
                },
            },
        }]});
        self.invoke(event).await
    }

    /// Mail SES sent (moto keeps it), as (to, subject, body).
    async fn sent_mail(&self) -> Vec<(String, String, String)> {
        let data: Value = self
            .http
            .get(format!(
                "{}/moto-api/data.json",
                self.pipeline().emulator.endpoint
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        data["ses"]["Message"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|m| {
                (
                    m["destinations"].to_string(),
                    m["subject"].as_str().unwrap_or_default().to_owned(),
                    m["body"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    async fn objects(&self, prefix: &str) -> Vec<String> {
        let out = self
            .pipeline()
            .s3()
            .list_objects_v2()
            .bucket(&self.pipeline().site_resources.bucket)
            .prefix(prefix)
            .send()
            .await
            .unwrap();
        out.contents
            .unwrap_or_default()
            .into_iter()
            .filter_map(|o| o.key)
            .collect()
    }

    async fn invalidated_paths(&self) -> Vec<Vec<String>> {
        let cloudfront = aws_sdk_cloudfront::Client::new(&self.pipeline().sdk);
        let distribution = &self.pipeline().site_resources.distribution_id;
        let list = cloudfront
            .list_invalidations()
            .distribution_id(distribution)
            .send()
            .await
            .unwrap();
        let mut all = Vec::new();
        for summary in list
            .invalidation_list
            .and_then(|l| l.items)
            .unwrap_or_default()
        {
            let out = cloudfront
                .get_invalidation()
                .distribution_id(distribution)
                .id(summary.id)
                .send()
                .await
                .unwrap();
            let paths = out
                .invalidation
                .and_then(|i| i.invalidation_batch)
                .and_then(|b| b.paths)
                .and_then(|p| p.items)
                .unwrap_or_default();
            all.push(paths);
        }
        all
    }
}

/// The first approval link in a text (a Slack payload).
fn approval_link(text: &str) -> Option<String> {
    let at = text.find("/approve?")?;
    let start = text[..at].rfind("http")?;
    let end = text[at..]
        .find(|c: char| c == '"' || c == '|' || c == '>' || c == '\\' || c.is_whitespace())
        .map_or(text.len(), |n| at + n);
    // Slack's mrkdwn escapes `&`; Slack shows (and opens) it unescaped.
    Some(text[start..end].replace("&amp;", "&"))
}

fn only_deployment(answer: &Value) -> (String, String) {
    let deployments = answer["deployments"]
        .as_array()
        .expect("deployments listed");
    assert_eq!(deployments.len(), 1, "{answer}");
    (
        deployments[0]["target"].as_str().unwrap().to_owned(),
        deployments[0]["deployment_id"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn webhook_signatures_are_checked_on_the_raw_body_and_redeliveries_build_nothing() {
    let site = SiteStack::start("sig").await;
    let sha = site.repo.head().unwrap();

    let (status, answer) = site
        .deliver("ping", "d-ping", br#"{"zen":"Keep it simple."}"#, None)
        .await;
    assert_eq!(status, 200, "{answer}");

    let body = site.push_body("main", &sha);
    let (status, answer) = site.deliver("push", "d-1", &body, Some(None)).await;
    assert_eq!(status, 401, "missing signature: {answer}");
    let (status, _) = site
        .deliver(
            "push",
            "d-1",
            &body,
            Some(Some(format!("sha256={}", "0".repeat(64)))),
        )
        .await;
    assert_eq!(status, 401, "wrong signature");
    // Signed over the same JSON re-serialised (pretty-printed): a handler
    // that verifies a re-encoding of the parsed body would accept this.
    let parsed: Value = serde_json::from_slice(&body).unwrap();
    let reserialised = serde_json::to_vec_pretty(&parsed).unwrap();
    let (status, _) = site
        .deliver(
            "push",
            "d-1",
            &body,
            Some(Some(site.secret().sign(&reserialised))),
        )
        .await;
    assert_eq!(status, 401, "signature over re-serialised JSON");
    assert!(site.deployments().await.is_empty(), "nothing recorded");

    let (status, answer) = site.deliver("push", "d-2", &body, None).await;
    assert_eq!(status, 202, "{answer}");
    let (target, id) = only_deployment(&answer);
    assert_eq!(target, "production");
    let (status, again) = site.deliver("push", "d-2", &body, None).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["duplicates"], 1, "{again}");
    let done = site.finished(&target, &id).await;
    assert_eq!(done["status"], "PUBLISHED", "{done}");
    assert_eq!(
        site.deployments().await.len(),
        1,
        "one build for two deliveries"
    );
    let (status, _, _, page) = site.visit(&HostTarget::Production, "/").await;
    assert_eq!(status, 200);
    assert!(page.contains("production"), "{page}");
}

/// The secrets are read by the first request that needs one, not at the
/// cold start, and a failed read is not remembered: with the webhook
/// secret's parameter gone, a `deploys` request is still answered and a
/// webhook gets 503 (the log names the parameter, the answer nothing);
/// once the parameter is back, the next delivery is verified.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn secrets_are_read_when_first_needed_and_a_failed_read_is_tried_again() {
    let site = SiteStack::start("lazy").await;
    let ssm = aws_sdk_ssm::Client::new(&site.pipeline().sdk);
    let name = site.pipeline().site_resources.secret_parameter.clone();
    ssm.delete_parameter().name(&name).send().await.unwrap();

    let answer = site
        .invoke(json!({"deploys": {"environment": "production"}}))
        .await;
    assert_eq!(answer["target"], "production", "{answer}");
    assert_eq!(answer["live"], Value::Null, "{answer}");

    let ping = br#"{"zen":"Keep it simple."}"#;
    let (status, answer) = site.deliver("ping", "d-ping-1", ping, None).await;
    assert_eq!(status, 503, "{answer}");
    let process = site.pipeline().site_build.pid().await;
    assert!(!answer.to_string().contains(&name), "{answer}");
    assert!(
        site.log().contains(&format!(
            "cannot read site-build's secrets: reading SSM parameter {name}"
        )),
        "the log names the parameter"
    );

    ssm.put_parameter()
        .name(&name)
        .value(&site.pipeline().github_secret)
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .send()
        .await
        .unwrap();
    let (status, answer) = site.deliver("ping", "d-ping-2", ping, None).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["pong"], true, "{answer}");
    // The same process read it again: the failure was not remembered.
    assert!(process.is_some());
    assert_eq!(site.pipeline().site_build.environments().await, 1);
    assert_eq!(site.pipeline().site_build.pid().await, process);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pull_request_gets_a_preview_that_follows_it_and_goes_when_it_closes() {
    let site = SiteStack::start("pr").await;
    let branch = "Feature/Login-Ü";
    site.repo.branch(branch).unwrap();
    site.repo
        .write("src/about.html", "<p>About us, first draft.</p>\n")
        .unwrap();
    let first = site.repo.commit("about page").unwrap();

    let (status, answer) = site
        .deliver(
            "pull_request",
            "pr-1",
            &site.pull_request_body("opened", 7, branch, &first),
            None,
        )
        .await;
    assert_eq!(status, 202, "{answer}");
    let (target, id) = only_deployment(&answer);
    let slug = sitedao::PreviewSlug::from_branch(branch);
    assert_eq!(target, format!("preview/{slug}"));
    let done = site.finished(&target, &id).await;
    assert_eq!(done["status"], "PUBLISHED", "{done}");
    let url = site.pipeline().site.preview_url(slug.as_str());
    let preview = HostTarget::Preview(slug.to_string());
    assert_eq!(done["url"], url.as_str());
    assert!(
        done["expires_at"].as_f64().is_some(),
        "previews expire: {done}"
    );
    assert_eq!(done["commit"], first.as_str());

    let (status, content_type, cache, page) = site.visit(&preview, "/about/").await;
    assert_eq!(status, 200);
    assert_eq!(content_type, "text/html; charset=utf-8");
    assert!(
        cache.contains("must-revalidate") || cache.contains("no-cache"),
        "{cache}"
    );
    assert!(
        page.contains("first draft") && page.contains("preview"),
        "{page}"
    );
    let css = page
        .split('"')
        .find(|part| part.starts_with("/assets/app.") && part.ends_with(".css"))
        .expect("the page links its hashed stylesheet")
        .to_owned();
    let (status, content_type, cache, _) = site.visit(&preview, &css).await;
    assert_eq!(status, 200);
    assert_eq!(content_type, "text/css; charset=utf-8");
    assert!(
        cache.contains("immutable") && cache.contains("max-age=31536000"),
        "{cache}"
    );
    // GitHub hears of it, with the preview's URL.
    let statuses = site.pipeline().github.statuses();
    assert!(
        statuses
            .iter()
            .any(|s| s.state == "success" && s.environment_url.as_deref() == Some(url.as_str())),
        "{statuses:?}"
    );
    // So does Slack.
    let slack = site.pipeline().slack.received();
    assert!(
        slack.iter().any(|(_, m)| m.to_string().contains(&url)),
        "{slack:?}"
    );

    // One file changes: one file is uploaded, and nothing is invalidated
    // (the new deploy's cache keys are new; tests/e2e/site_router.rs).
    site.repo
        .write("src/about.html", "<p>About us, second draft.</p>\n")
        .unwrap();
    let second = site.repo.commit("about page, again").unwrap();
    let (status, answer) = site
        .deliver(
            "pull_request",
            "pr-2",
            &site.pull_request_body("synchronize", 7, branch, &second),
            None,
        )
        .await;
    assert_eq!(status, 202, "{answer}");
    let (target, id) = only_deployment(&answer);
    let done = site.finished(&target, &id).await;
    assert_eq!(done["status"], "PUBLISHED", "{done}");
    assert_eq!(
        done["uploaded"], 1,
        "only the changed page is uploaded: {done}"
    );
    assert_eq!(site.invalidated_paths().await, Vec::<Vec<String>>::new());
    let (_, _, _, page) = site.visit(&preview, "/about/").await;
    assert!(page.contains("second draft"), "{page}");

    let (status, answer) = site
        .deliver(
            "pull_request",
            "pr-3",
            &site.pull_request_body("closed", 7, branch, &second),
            None,
        )
        .await;
    assert_eq!(status, 202, "{answer}");
    let (target, id) = only_deployment(&answer);
    let done = site.finished(&target, &id).await;
    assert_eq!(done["status"], "REMOVED", "{done}");
    let (status, _, _, _) = site.visit(&preview, "/about/").await;
    assert_eq!(status, 404);
    assert!(site
        .objects(&format!("deploys/preview/{slug}/"))
        .await
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn production_from_mail_needs_a_single_use_approval() {
    let site = SiteStack::start("prd").await;
    let sha = site.repo.head().unwrap();
    // A push to the production branch deploys without asking.
    let (_, answer) = site
        .deliver("push", "p-1", &site.push_body("main", &sha), None)
        .await;
    let (target, id) = only_deployment(&answer);
    assert_eq!(site.finished(&target, &id).await["status"], "PUBLISHED");

    site.repo
        .write(
            "src/index.html",
            "<p>Hello from the release candidate.</p>\n",
        )
        .unwrap();
    site.repo.commit("release candidate").unwrap();
    let answer = site
        .mail(
            "m-1",
            SENDER,
            "deploy production\n\n> deploy staging\n",
            &[],
        )
        .await;
    assert_eq!(answer["accepted"], 1, "{answer}");
    let records = site.deployments().await;
    let waiting = records.last().unwrap();
    assert_eq!(waiting["status"], "AWAITING_APPROVAL", "{waiting}");
    assert!(waiting.get("approval_token_hash").is_some());
    // The sender is told, clearly, that nothing was deployed.
    let mail = site.sent_mail().await;
    assert!(
        mail.iter().any(|(to, subject, body)| to.contains(SENDER)
            && subject.contains("refused until approved")
            && body.contains("need an approval")),
        "{mail:?}"
    );
    // The approvers got the link.
    let link = site
        .pipeline()
        .slack
        .received()
        .iter()
        .find_map(|(_, m)| approval_link(&m.to_string()))
        .expect("an approval link in Slack");
    assert!(!link.contains(waiting["approval_token_hash"].as_str().unwrap()));

    // Opening the link (as a mail scanner would) approves nothing.
    let page = site.http.get(&link).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 200, "GET {link}");
    assert!(page.text().await.unwrap().contains("<form method=\"post\""));
    let key = (
        waiting["pk"].as_str().unwrap(),
        waiting["sk"].as_str().unwrap(),
    );
    assert_eq!(
        site.deployment(key.0, key.1).await["status"],
        "AWAITING_APPROVAL"
    );

    // The CLI posts the form: approved once, built, published.
    let cli = site.stack.deployer(&["site", "approve", &link]).await;
    assert!(
        cli.status.success(),
        "{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    let done = site.finished(key.0, key.1).await;
    assert_eq!(done["status"], "PUBLISHED", "{done}");
    let (_, _, _, page) = site.visit(&HostTarget::Production, "/").await;
    assert!(page.contains("release candidate"), "{page}");
    // The token works once.
    let again = site
        .http
        .post(link.split('?').next().unwrap())
        .form(
            &reqwest::Url::parse(&link)
                .unwrap()
                .query_pairs()
                .into_owned()
                .collect::<Vec<_>>(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(again.status().as_u16(), 410);
    let cli = site.stack.deployer(&["site", "approve", &link]).await;
    assert_eq!(cli.status.code(), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_build_keeps_the_live_site_and_rollback_needs_no_upload() {
    let site = SiteStack::start("fail").await;
    let first = site.repo.head().unwrap();
    let (_, answer) = site
        .deliver("push", "f-1", &site.push_body("main", &first), None)
        .await;
    let (target, id) = only_deployment(&answer);
    let first_done = site.finished(&target, &id).await;
    assert_eq!(first_done["status"], "PUBLISHED");

    site.repo
        .write("src/index.html", "<p>Second version.</p>\n")
        .unwrap();
    let second = site.repo.commit("second").unwrap();
    let (_, answer) = site
        .deliver("push", "f-2", &site.push_body("main", &second), None)
        .await;
    let (target, id) = only_deployment(&answer);
    assert_eq!(site.finished(&target, &id).await["status"], "PUBLISHED");

    // A build script that fails: FAILED with its log tail, site unchanged.
    site.repo
        .write("build.mjs", "console.log('compiling the site');\nconsole.error('boom: the build broke');\nprocess.exit(3);\n")
        .unwrap();
    let broken = site.repo.commit("broken build").unwrap();
    let (_, answer) = site
        .deliver("push", "f-3", &site.push_body("main", &broken), None)
        .await;
    let (target, id) = only_deployment(&answer);
    let failed = site.finished(&target, &id).await;
    assert_eq!(failed["status"], "FAILED", "{failed}");
    let tail = failed["log_tail"].to_string();
    assert!(tail.contains("boom: the build broke"), "{failed}");
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("exited with status 3"),
        "{failed}"
    );
    let (_, _, _, page) = site.visit(&HostTarget::Production, "/").await;
    assert!(page.contains("Second version"), "{page}");

    // Rollback: the first deploy is back, and nothing new is in the bucket.
    let objects_before = site.objects("deploys/production/").await;
    let cli = site
        .stack
        .deployer(&["site", "rollback", "production"])
        .await;
    assert!(
        cli.status.success(),
        "{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    assert!(
        String::from_utf8_lossy(&cli.stdout).contains(first_done["deploy_id"].as_str().unwrap())
    );
    let (_, _, _, page) = site.visit(&HostTarget::Production, "/").await;
    assert!(!page.contains("Second version"), "{page}");
    assert_eq!(site.objects("deploys/production/").await, objects_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn direct_invocations_answer_with_the_result_and_mail_from_strangers_is_ignored() {
    let site = SiteStack::start("direct").await;
    let request = json!({
        "repository": site.repository(),
        "branch": "main",
        "environment": "staging",
        "session_id": "s-1",
        "triggered_by": "ana",
    });
    let answer = site.invoke(request.clone()).await;
    assert_eq!(answer["status"], "PUBLISHED", "{answer}");
    assert_eq!(answer["url"], site.pipeline().site.staging_url().as_str());
    let (_, _, _, page) = site.visit(&HostTarget::Staging, "/").await;
    assert!(page.contains("staging"), "{page}");
    // The same session asking again gets the same deployment, not a second build.
    let again = site.invoke(request).await;
    assert_eq!(again["deployment_id"], answer["deployment_id"]);
    assert_eq!(site.deployments().await.len(), 1);
    // An approval cannot be claimed by the caller.
    let refused = site
        .invoke(json!({
            "repository": site.repository(), "branch": "main", "environment": "production",
            "triggered_by": "mallory", "approved": true,
        }))
        .await;
    assert_eq!(refused["status"], "REJECTED");
    assert!(
        refused["error"].as_str().unwrap().contains("\"approved\""),
        "{refused}"
    );

    let stranger = site
        .mail("m-2", "mallory@example.net", "deploy staging\n", &[])
        .await;
    assert_eq!(stranger["accepted"], 0);
    let spoofed = site
        .mail("m-3", SENDER, "deploy staging\n", &[("dkim", "FAIL")])
        .await;
    assert_eq!(spoofed["accepted"], 0);
    // A From domain without a DMARC policy proves nothing.
    let unproven = site
        .mail("m-4", SENDER, "deploy staging\n", &[("dmarc", "GRAY")])
        .await;
    assert_eq!(unproven["accepted"], 0);
    assert_eq!(
        site.deployments().await.len(),
        1,
        "nothing recorded for ignored mail"
    );
    let log = site.log();
    assert!(
        log.contains("email ignored") && log.contains("mallory@example.net"),
        "{log}"
    );
    assert!(log.contains("DKIM verdict is FAIL"), "{log}");
    assert!(log.contains("DMARC verdict is GRAY, not PASS"), "{log}");
    assert!(
        site.sent_mail().await.is_empty(),
        "ignored mail is never answered"
    );
}
