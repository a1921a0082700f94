//! site-build never strands a deployment. Each test kills or starves the
//! real `site-build` binary with a fault the local stack injects outside its
//! code (a crash at a log line in the Runtime API, a short function timeout,
//! a held S3 call in the emulator), asserts the fault fired, and checks that
//! the deployment ends in the one outcome the test forces: PUBLISHED by a
//! retry from a clean state, or FAILED with the reason. The live site (the
//! site server reading the S3 pointer) never changes before a complete
//! publish, and GitHub's and Slack's last word matches the record.

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use deployer_e2e::TestStack;
use local_stack::faults::{Caller, FaultKind, FaultRule};
use local_stack::{HostTarget, SampleRepo};
use serde_json::{json, Value};

/// Where the sample site's builds are killed: the log line site-build writes
/// as it hands the build to the builder function, as the publish starts
/// uploading, and right after the live pointer moved.
const BUILD_STARTS: &str = "handing the build to the builder";
const UPLOAD_STARTS: &str = "uploading the deploy";
const POINTER_SWITCHED: &str = "live pointer switched";

pub(crate) struct Recovery {
    pub(crate) stack: TestStack,
    pub(crate) repo: SampleRepo,
    /// Where the functions' logs go, with [`Recovery::start_logged`].
    pub(crate) logs: Option<std::path::PathBuf>,
}

impl Drop for Recovery {
    fn drop(&mut self) {
        if let Some(logs) = &self.logs {
            let _ = std::fs::remove_dir_all(logs);
        }
    }
}

impl Recovery {
    pub(crate) async fn start(
        env: &str,
        configure: impl FnOnce(&mut local_stack::PipelineOptions),
    ) -> Self {
        let repo =
            SampleRepo::create(&deployer_e2e::root(), &std::env::temp_dir()).expect("sample repo");
        let dir = repo.dir.clone();
        let stack = TestStack::start_configured(env, &[], move |options| {
            options.site_repo = Some(dir);
            configure(options);
        })
        .await;
        Self {
            stack,
            repo,
            logs: None,
        }
    }

    /// [`Recovery::start`] with the functions' logs written to a folder of
    /// this test's own (removed with it), for [`Recovery::logs_of`].
    pub(crate) async fn start_logged(
        env: &str,
        configure: impl FnOnce(&mut local_stack::PipelineOptions),
    ) -> Self {
        let logs = std::env::temp_dir().join(format!("{env}-logs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&logs);
        std::fs::create_dir_all(&logs).unwrap();
        let dir = logs.clone();
        let mut r = Self::start(env, move |options| {
            options.log_dir = Some(dir);
            configure(options);
        })
        .await;
        r.logs = Some(logs);
        r
    }

    /// Each log file whose name contains `function` (every one for ""),
    /// with its text.
    pub(crate) fn logs_of(&self, function: &str) -> Vec<(String, String)> {
        let logs = self.logs.as_ref().expect("started with start_logged");
        std::fs::read_dir(logs)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.to_string_lossy().contains(function))
            .map(|path| {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                (path.display().to_string(), text)
            })
            .collect()
    }

    pub(crate) fn pipeline(&self) -> &local_stack::Pipeline {
        &self.stack.pipeline
    }

    pub(crate) fn function(&self) -> &local_stack::runtime::Function {
        &self.pipeline().site_build
    }

    pub(crate) fn function_name(&self) -> &str {
        &self.pipeline().site_resources.function_name
    }

    /// A signed push of `main` at `sha` through the function URL: the
    /// deployment it queued (target, id).
    pub(crate) async fn push(&self, delivery: &str, sha: &str) -> (String, String) {
        let push =
            deployer_e2e::github_push(&self.pipeline().site_resources.repository, "main", sha);
        let (status, answer) = self
            .pipeline()
            .github_webhook("push", delivery, &push)
            .await
            .expect("function URL answers");
        assert_eq!(status, 202, "{answer}");
        let answer: Value = serde_json::from_str(&answer).unwrap();
        let deployment = &answer["deployments"][0];
        (
            deployment["target"].as_str().unwrap().to_owned(),
            deployment["deployment_id"].as_str().unwrap().to_owned(),
        )
    }

    pub(crate) fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&self.pipeline().sdk)
    }

    pub(crate) async fn record(&self, target: &str, id: &str) -> Value {
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

    /// Polls the record until it is neither QUEUED nor BUILDING; returns it
    /// and how long that took.
    pub(crate) async fn wait_end(
        &self,
        target: &str,
        id: &str,
        within: Duration,
    ) -> (Value, Duration) {
        let started = Instant::now();
        while started.elapsed() < within {
            let record = self.record(target, id).await;
            match record["status"].as_str().unwrap() {
                "QUEUED" | "BUILDING" => tokio::time::sleep(Duration::from_millis(100)).await,
                _ => return (record, started.elapsed()),
            }
        }
        panic!(
            "{target}/{id} still {} after {within:?}",
            self.record(target, id).await
        );
    }

    /// The deployments listed as BUILDING for the sweep.
    pub(crate) async fn listed_building(&self) -> Vec<String> {
        let out = self
            .dynamodb()
            .query()
            .table_name(&self.pipeline().site_resources.deployments_table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", AttributeValue::S("building".into()))
            .consistent_read(true)
            .send()
            .await
            .unwrap();
        out.items
            .unwrap_or_default()
            .iter()
            .filter_map(|item| item.get("sk")?.as_s().ok().cloned())
            .collect()
    }

    /// The production deploy the site server serves now.
    pub(crate) async fn live_deploy(&self) -> String {
        let page = self
            .pipeline()
            .site
            .get(&HostTarget::Production, "/")
            .await
            .unwrap();
        assert_eq!(page.status, 200, "{}", page.text());
        page.deploy_id.expect("the site server names the deploy")
    }

    pub(crate) async fn pointer(&self) -> Value {
        let out = self
            .pipeline()
            .s3()
            .get_object()
            .bucket(&self.pipeline().site_resources.bucket)
            .key("live/production.json")
            .send()
            .await
            .unwrap();
        serde_json::from_slice(&out.body.collect().await.unwrap().into_bytes()).unwrap()
    }

    /// Deploy ids of production that have a manifest (complete deploys).
    pub(crate) async fn complete_deploys(&self) -> Vec<String> {
        let out = self
            .pipeline()
            .s3()
            .list_objects_v2()
            .bucket(&self.pipeline().site_resources.bucket)
            .prefix("deploys/production/")
            .send()
            .await
            .unwrap();
        out.contents
            .unwrap_or_default()
            .into_iter()
            .filter_map(|o| o.key)
            .filter_map(|key| {
                key.strip_suffix("/.deploy-manifest.json")
                    .and_then(|k| k.strip_prefix("deploys/production/"))
                    .map(str::to_owned)
            })
            .collect()
    }

    /// Publishes the sample site as it is: the deploy now live.
    pub(crate) async fn publish_first(&self) -> String {
        let sha = self.repo.head().unwrap();
        let (target, id) = self.push("d-first", &sha).await;
        let (done, _) = self.wait_end(&target, &id, Duration::from_secs(120)).await;
        assert_eq!(done["status"], "PUBLISHED", "{done}");
        self.live_deploy().await
    }

    /// Commits a changed about page: its commit id.
    pub(crate) fn change(&self, text: &str) -> String {
        self.repo
            .write("src/about.html", &format!("<p>{text}</p>\n"))
            .unwrap();
        self.repo.commit(text).unwrap()
    }

    /// GitHub deployment statuses for `sha`, oldest first: (state, description).
    pub(crate) fn github_statuses(&self, sha: &str) -> Vec<(String, String)> {
        let deployments: Vec<_> = self
            .pipeline()
            .github
            .deployments()
            .into_iter()
            .filter(|d| d.sha == sha)
            .collect();
        assert_eq!(deployments.len(), 1, "one GitHub deployment per build");
        deployments[0]
            .statuses
            .iter()
            .map(|s| (s.state.clone(), s.description.clone()))
            .collect()
    }

    /// Slack messages about deployment `id`.
    pub(crate) fn slack_about(&self, id: &str) -> Vec<String> {
        self.pipeline()
            .slack
            .received()
            .into_iter()
            .map(|(_, body)| body.to_string())
            .filter(|text| text.contains(id))
            .collect()
    }

    /// The asynchronous `{"run": ...}` invocation of deployment `id`.
    /// The asynchronous invocation that ran deployment `id`, once it ended:
    /// the record ends before the invocation returns (GitHub, Slack).
    pub(crate) async fn run_invocation(
        &self,
        id: &str,
    ) -> local_stack::lambda_api::AsyncInvocation {
        self.pipeline()
            .lambda_api
            .wait_idle(Duration::from_secs(60))
            .await
            .expect("the invocations end");
        let runs: Vec<_> = self
            .pipeline()
            .lambda_api
            .invocations_of(self.function_name())
            .into_iter()
            .filter(|i| i.payload["run"]["id"] == id)
            .collect();
        assert_eq!(runs.len(), 1, "{runs:?}");
        runs.into_iter().next().unwrap()
    }

    pub(crate) async fn invoke(&self, payload: Value) -> Result<Value, String> {
        let out = self
            .pipeline()
            .lambda()
            .invoke()
            .function_name(self.function_name())
            .payload(aws_sdk_lambda::primitives::Blob::new(payload.to_string()))
            .send()
            .await
            .expect("invoke answers");
        let body = out.payload.map(|p| p.into_inner()).unwrap_or_default();
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        match out.function_error {
            Some(error) => Err(format!("{error}: {body}")),
            None => Ok(body),
        }
    }

    /// After the end: nothing moves any more, nothing is listed as BUILDING.
    pub(crate) async fn assert_settled(&self, target: &str, id: &str, status: &str) {
        self.pipeline()
            .lambda_api
            .wait_idle(Duration::from_secs(60))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let record = self.record(target, id).await;
        assert_eq!(record["status"], status, "{record}");
        assert!(record.get("lease_expires_at").is_none(), "{record}");
        assert_eq!(self.listed_building().await, Vec::<String>::new());
    }
}

async fn wait_for_crashes(function: &local_stack::runtime::Function, n: u64) -> Duration {
    let started = Instant::now();
    while function.crashes() < n {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{} of {n} crashes",
            function.crashes()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_build_killed_while_the_builder_works_is_retried_from_a_clean_state_and_published() {
    let r = Recovery::start("rec-build", |_| {}).await;
    let first = r.publish_first().await;
    let sha = r.change("Second version");
    r.function().crash_at_log(BUILD_STARTS, 1);

    let (target, id) = r.push("d-second", &sha).await;
    wait_for_crashes(r.function(), 1).await;
    let crashed_at = Instant::now();
    // Killed mid-build: the live site is what it was.
    assert_eq!(r.live_deploy().await, first);

    let (done, _) = r.wait_end(&target, &id, Duration::from_secs(120)).await;
    let recovered_in = crashed_at.elapsed();
    assert_eq!(done["status"], "PUBLISHED", "{done}");
    assert_eq!(done["attempt"], 2, "{done}");
    assert_eq!(done["commit"], sha.as_str());
    assert_eq!(
        done["interruptions"],
        json!(["attempt 1 stopped during the build (Lambda retried the invocation)"]),
        "{done}"
    );
    assert_eq!(r.function().crashes(), 1, "the fault fired once");
    // Lambda retried the same event once; the retry published.
    let run = r.run_invocation(&id).await;
    assert_eq!(run.attempts, 2, "{run:?}");
    assert_eq!(run.state, local_stack::lambda_api::AsyncState::Succeeded);

    let deploy = done["deploy_id"].as_str().unwrap();
    assert_ne!(deploy, first);
    assert_eq!(r.live_deploy().await, deploy);
    let about = r
        .pipeline()
        .site
        .get(&HostTarget::Production, "/about/")
        .await
        .unwrap();
    assert!(about.text().contains("Second version"), "{}", about.text());
    let pointer = r.pointer().await;
    assert_eq!(pointer["previous"], first.as_str(), "{pointer}");

    let states: Vec<String> = r.github_statuses(&sha).into_iter().map(|s| s.0).collect();
    assert_eq!(states, ["in_progress", "in_progress", "success"]);
    let slack = r.slack_about(&id);
    assert!(slack.last().unwrap().contains("is live"), "{slack:?}");
    r.assert_settled(&target, &id, "PUBLISHED").await;
    eprintln!("recovered {recovered_in:?} after the crash (async retry delay 1 s)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_publish_killed_on_every_attempt_ends_failed_and_the_live_site_never_changes() {
    let r = Recovery::start("rec-publish", |_| {}).await;
    let first = r.publish_first().await;
    let sha = r.change("Never live");
    // Every PutObject of site-build is held 2 s in the emulator: a guard
    // that makes the crash at the start of the upload come before the
    // pointer switch even on a slow machine (the kill races nothing else).
    let faults = r.stack.emulator.faults();
    faults
        .add(FaultRule::new(
            Caller::function(r.function_name()),
            "s3",
            "PutObject",
            FaultKind::Delay(Duration::from_secs(2)),
        ))
        .await
        .unwrap();
    r.function().crash_at_log(UPLOAD_STARTS, 2);

    let (target, id) = r.push("d-never", &sha).await;
    wait_for_crashes(r.function(), 2).await;
    assert_eq!(r.live_deploy().await, first, "between the attempts");
    let (done, _) = r.wait_end(&target, &id, Duration::from_secs(120)).await;
    assert_eq!(done["status"], "FAILED", "{done}");
    let error = done["error"].as_str().unwrap();
    assert!(
        error.starts_with(
            "the build was interrupted 2 times: attempt 1 stopped during the publish (Lambda retried the invocation); \
             attempt 2 stopped during the publish (Lambda retried the invocation)"
        ),
        "{error}"
    );
    assert_eq!(r.function().crashes(), 2);
    // The third delivery of the event found no attempt left and said so.
    let run = r.run_invocation(&id).await;
    assert_eq!(run.attempts, 3, "{run:?}");
    assert_eq!(run.state, local_stack::lambda_api::AsyncState::Succeeded);

    // Nothing of the interrupted publishes went live or was completed.
    faults.clear().await.unwrap();
    assert_eq!(r.live_deploy().await, first);
    assert_eq!(r.pointer().await["deploy_id"], first.as_str());
    assert_eq!(r.complete_deploys().await, std::slice::from_ref(&first));

    let statuses = r.github_statuses(&sha);
    let (state, description) = statuses.last().unwrap();
    assert_eq!(state, "failure");
    assert!(
        description.starts_with("the build was interrupted 2 times"),
        "{description}"
    );
    assert!(statuses[..statuses.len() - 1]
        .iter()
        .all(|(s, _)| s == "in_progress"));
    let slack = r.slack_about(&id);
    let last = slack.last().unwrap();
    assert!(
        last.contains("failed") && last.contains("interrupted 2 times"),
        "{slack:?}"
    );
    r.assert_settled(&target, &id, "FAILED").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_publish_killed_after_its_switch_is_recorded_once_not_published_twice() {
    let r = Recovery::start("rec-switch", |_| {}).await;
    let first = r.publish_first().await;
    let sha = r.change("Switched, then killed");
    r.function().crash_at_log(POINTER_SWITCHED, 1);

    let (target, id) = r.push("d-switched", &sha).await;
    wait_for_crashes(r.function(), 1).await;
    // The first attempt's deploy is live (the switch is atomic and done).
    let switched = r.pointer().await["deploy_id"].as_str().unwrap().to_owned();
    assert_ne!(switched, first);

    let (done, _) = r.wait_end(&target, &id, Duration::from_secs(120)).await;
    assert_eq!(done["status"], "PUBLISHED", "{done}");
    // The retry recorded the first attempt's switch instead of building and
    // switching again: one new deploy, and rollback still leads to `first`.
    assert_eq!(done["deploy_id"], switched.as_str(), "{done}");
    assert_eq!(done["attempt"], 1, "no second attempt ran: {done}");
    assert_eq!(
        done["interruptions"],
        json!(["attempt 1 stopped during the publish (Lambda retried the invocation)"]),
        "{done}"
    );
    let pointer = r.pointer().await;
    assert_eq!(pointer["deploy_id"], switched.as_str());
    assert_eq!(pointer["previous"], first.as_str(), "{pointer}");
    let mut deploys = r.complete_deploys().await;
    deploys.sort();
    let mut expected = vec![first.clone(), switched.clone()];
    expected.sort();
    assert_eq!(deploys, expected);
    assert_eq!(r.live_deploy().await, switched);
    assert_eq!(r.function().crashes(), 1);

    let states: Vec<String> = r.github_statuses(&sha).into_iter().map(|s| s.0).collect();
    assert_eq!(states.last().unwrap(), "success", "{states:?}");
    assert!(r.slack_about(&id).last().unwrap().contains("is live"));
    r.assert_settled(&target, &id, "PUBLISHED").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_build_that_runs_out_of_time_fails_before_the_lambda_timeout() {
    let timeout = Duration::from_secs(30);
    let r = Recovery::start("rec-time", move |options| {
        options.timeouts.push(("SiteBuildFunction".into(), timeout));
    })
    .await;
    let first = r.publish_first().await;
    // The next commit's build never ends by itself.
    let package = std::fs::read_to_string(r.repo.dir.join("package.json")).unwrap();
    r.repo
        .write(
            "package.json",
            &package.replace(
                "\"build\": \"node build.mjs\"",
                "\"build\": \"node build.mjs && node -e \\\"setTimeout(() => {}, 600000)\\\"\"",
            ),
        )
        .unwrap();
    let sha = r.repo.commit("a build that hangs").unwrap();

    let started = Instant::now();
    let (target, id) = r.push("d-slow", &sha).await;
    let (done, took) = r.wait_end(&target, &id, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "FAILED", "{done}");
    let error = done["error"].as_str().unwrap();
    assert!(
        error.starts_with("ran out of time during the build (")
            && error.ends_with(" s left of the function's 30 s): npm run build was stopped"),
        "{error}"
    );
    assert!(
        took < timeout && started.elapsed() < timeout + Duration::from_secs(2),
        "recorded after {took:?}"
    );
    assert!(
        done["log_tail"].as_array().unwrap().iter().any(|l| l
            .as_str()
            .unwrap()
            .contains("left for the build; killing it")),
        "{done}"
    );
    // The invocation ended on its own, before Lambda's timeout: no retry.
    r.pipeline()
        .lambda_api
        .wait_idle(Duration::from_secs(30))
        .await
        .unwrap();
    let run = r.run_invocation(&id).await;
    assert_eq!(run.attempts, 1, "{run:?}");
    assert_eq!(run.state, local_stack::lambda_api::AsyncState::Succeeded);
    assert_eq!(done["attempt"], 1);

    assert_eq!(r.live_deploy().await, first);
    assert_eq!(r.complete_deploys().await, std::slice::from_ref(&first));
    let (state, description) = r.github_statuses(&sha).last().unwrap().clone();
    assert_eq!(state, "failure");
    assert!(description.starts_with("ran out of time during the build"));
    let slack = r.slack_about(&id);
    assert!(
        slack.last().unwrap().contains("ran out of time"),
        "{slack:?}"
    );
    r.assert_settled(&target, &id, "FAILED").await;
    eprintln!("out of time recorded {took:?} into a {timeout:?} function");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_direct_build_that_died_with_no_retry_is_found_by_the_sweep_and_published() {
    let timeout = Duration::from_secs(30);
    let r = Recovery::start("rec-sweep", move |options| {
        options.timeouts.push(("SiteBuildFunction".into(), timeout));
    })
    .await;
    r.function().crash_at_log(BUILD_STARTS, 1);
    // A direct (synchronous) invocation: Lambda never retries those.
    let invoked = Instant::now();
    let died = r
        .invoke(json!({
            "repository": r.pipeline().site_resources.repository,
            "branch": "main",
            "environment": "staging",
            "triggered_by": "ana",
        }))
        .await;
    assert!(died.is_err(), "{died:?}");
    assert_eq!(r.function().crashes(), 1);
    let listed = r.listed_building().await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    let (target, id) = listed[0].rsplit_once('/').unwrap();
    let (target, id) = (target.to_owned(), id.to_owned());
    assert_eq!(target, "staging");
    let stranded = r.record(&target, &id).await;
    assert_eq!(stranded["status"], "BUILDING");
    assert_eq!(stranded["phase"], "the build");

    // The scheduled sweep leaves a lease that still holds alone...
    let scheduled: Value = serde_json::from_str(include_str!(
        "../../lambdas/site-build/src/service/fixtures/scheduled_event.json"
    ))
    .unwrap();
    let swept = r.invoke(scheduled.clone()).await.unwrap();
    assert_eq!(swept["swept"]["running"], 1, "{swept}");
    assert_eq!(swept["swept"]["restarted"], json!([]), "{swept}");

    // ...and runs it again once the lease has expired.
    let expires_at = stranded["lease_expires_at"].as_i64().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        expires_at - now <= (timeout.as_secs() + 31) as i64,
        "lease until {expires_at}, now {now}"
    );
    tokio::time::sleep(Duration::from_secs((expires_at - now + 1).max(0) as u64)).await;
    let swept = r.invoke(scheduled).await.unwrap();
    let sweep_at = Instant::now();
    assert_eq!(
        swept["swept"]["restarted"],
        json!([format!("{target}/{id}")]),
        "{swept}"
    );

    let (done, _) = r.wait_end(&target, &id, Duration::from_secs(60)).await;
    let recovered_in = sweep_at.elapsed();
    assert_eq!(done["status"], "PUBLISHED", "{done}");
    assert_eq!(done["attempt"], 2);
    assert_eq!(
        done["interruptions"],
        json!(["attempt 1 stopped during the build (its lease expired with no result)"]),
        "{done}"
    );
    let page = r
        .pipeline()
        .site
        .get(&HostTarget::Staging, "/")
        .await
        .unwrap();
    assert_eq!(page.deploy_id.as_deref(), done["deploy_id"].as_str());
    let sha = r.repo.head().unwrap();
    let states: Vec<String> = r.github_statuses(&sha).into_iter().map(|s| s.0).collect();
    assert_eq!(states, ["in_progress", "in_progress", "success"]);
    r.assert_settled(&target, &id, "PUBLISHED").await;
    eprintln!(
        "stranded {:?} after the direct invocation, published {recovered_in:?} after the sweep",
        invoked.elapsed()
    );
}
