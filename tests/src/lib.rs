//! Test harness: one emulator and one pipeline per test, so tests run in
//! parallel without sharing state.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use builddao::{Build, BuildKey, BuildStatus, BuildStore};
use local_stack::{Emulator, Pipeline, PipelineOptions};
use serde_json::{json, Value};

pub mod webdriver;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the repository root")
        .to_path_buf()
}

/// The target directory holding the function binaries (`target/debug`'s parent).
pub fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    // target/debug/deps/e2e-<hash>
    let exe = std::env::current_exe().expect("test binary path");
    exe.ancestors().nth(3).expect("target dir").to_path_buf()
}

pub struct TestStack {
    pub emulator: Arc<Emulator>,
    pub pipeline: Pipeline,
}

impl TestStack {
    /// A fresh emulator and pipeline for `env`, polling every second.
    pub async fn start(env: &str, parameters: &[(&str, &str)]) -> Self {
        Self::start_with(env, parameters, Vec::new()).await
    }

    pub async fn start_with(
        env: &str,
        parameters: &[(&str, &str)],
        env_overrides: Vec<(String, String, String)>,
    ) -> Self {
        Self::start_configured(env, parameters, |options| {
            options.env_overrides = env_overrides;
        })
        .await
    }

    /// A fresh stack whose site-build publishes `repo` (through the GitHub
    /// double) with the default local secret and token.
    pub async fn start_site(env: &str, repo: &local_stack::SampleRepo) -> Self {
        let dir = repo.dir.clone();
        Self::start_configured(env, &[], move |options| {
            options.site_repo = Some(dir);
        })
        .await
    }

    /// A fresh stack with `configure` applied to its options last.
    pub async fn start_configured(
        env: &str,
        parameters: &[(&str, &str)],
        configure: impl FnOnce(&mut PipelineOptions),
    ) -> Self {
        let emulator = Arc::new(
            Emulator::start(&root(), None)
                .await
                .expect("moto server starts"),
        );
        emulator
            .enable_state_machine_execution()
            .await
            .expect("state machine execution enabled");
        // No bake unless a test asks for one (the template bakes prd 300 s).
        let mut options = PipelineOptions::new(root(), env)
            .parameter("PollIntervalSeconds", "1")
            .parameter("BakeSeconds", "");
        options.target_dir = target_dir();
        for (name, value) in parameters {
            options = options.parameter(name, *value);
        }
        if let Some(dir) = std::env::var_os("DEPLOYER_TEST_LOGS") {
            std::fs::create_dir_all(&dir).ok();
            options.log_dir = Some(PathBuf::from(dir));
        }
        configure(&mut options);
        let pipeline = Pipeline::start(emulator.clone(), options)
            .await
            .expect("pipeline starts");
        Self { emulator, pipeline }
    }

    pub fn env(&self) -> &str {
        &self.pipeline.resources.env
    }

    pub fn builds(&self) -> BuildStore {
        self.pipeline.builds()
    }

    pub fn cfn(&self) -> aws_sdk_cloudformation::Client {
        aws_sdk_cloudformation::Client::new(&self.pipeline.sdk)
    }

    pub fn sfn(&self) -> aws_sdk_sfn::Client {
        aws_sdk_sfn::Client::new(&self.pipeline.sdk)
    }

    /// Every event of a Step Functions execution, oldest first.
    pub async fn execution_history(
        &self,
        execution_arn: &str,
    ) -> Vec<aws_sdk_sfn::types::HistoryEvent> {
        let mut events = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .sfn()
                .get_execution_history()
                .execution_arn(execution_arn)
                .set_next_token(token)
                .send()
                .await
                .expect("GetExecutionHistory");
            events.extend(page.events().iter().cloned());
            token = page.next_token().map(str::to_owned);
            if token.is_none() {
                return events;
            }
        }
    }

    /// Uploads a build of the sample app with the given template and params.
    pub async fn upload(
        &self,
        repo: &str,
        branch: &str,
        version: &str,
        template: &str,
        params: Value,
    ) -> String {
        let prefix = format!("{repo}/{branch}/{version}/");
        self.pipeline
            .upload(
                &prefix,
                &[
                    ("cloudformation.template", template.as_bytes().to_vec()),
                    (
                        "cloudformation-params.json",
                        params.to_string().into_bytes(),
                    ),
                ],
            )
            .await
            .expect("upload");
        prefix
    }

    /// Uploads the sample app as `repo` `version` with `Greeting` and waits
    /// for its build record.
    pub async fn upload_sample(&self, repo: &str, version: &str, greeting: &str) -> Build {
        self.upload(
            repo,
            "main",
            version,
            &sample_template(),
            json!({"Greeting": greeting}),
        )
        .await;
        self.build_of(repo, version).await
    }

    /// The stream record of build `sk`'s INSERT, as trigger-build received it
    /// (waits for its delivery).
    pub async fn delivered_insert(&self, sk: &str) -> Value {
        local_stack::emulator::wait_until(
            &format!("the INSERT of {sk}"),
            Duration::from_secs(30),
            || async {
                Ok(self
                    .pipeline
                    .delivered
                    .events(self.pipeline.trigger_build.name())
                    .iter()
                    .flat_map(|e| e["Records"].as_array().cloned().unwrap_or_default())
                    .find(|r| r["eventName"] == "INSERT" && r["dynamodb"]["Keys"]["sk"]["S"] == sk))
            },
        )
        .await
        .expect("INSERT delivered")
    }

    /// Waits for the build made from `version` of `repo`.
    pub async fn build_of(&self, repo: &str, version: &str) -> Build {
        let builds = self.builds();
        let env = self.env().to_owned();
        local_stack::emulator::wait_until(
            &format!("a build of {repo} {version}"),
            Duration::from_secs(30),
            || {
                let (builds, env) = (builds.clone(), env.clone());
                async move {
                    let page = builds.list(repo, &env, 50, None).await?;
                    Ok(page.builds.into_iter().find(|b| b.version == version))
                }
            },
        )
        .await
        .expect("build created")
    }

    /// Waits until the build reaches `status` (or any terminal status).
    pub async fn wait_for(&self, key: &BuildKey, status: BuildStatus) -> Build {
        let builds = self.builds();
        local_stack::emulator::wait_until(
            &format!("build {} to be {status}", key.sk),
            Duration::from_secs(90),
            || {
                let builds = builds.clone();
                async move {
                    let build = builds.get(key).await?.context("build missing")?;
                    Ok((build.status == status || build.status.is_terminal()).then_some(build))
                }
            },
        )
        .await
        .expect("build reaches the status")
    }

    pub async fn wait_terminal(&self, key: &BuildKey) -> Build {
        self.wait_for(key, BuildStatus::Success).await
    }

    /// Runs the `deployer` CLI against this stack.
    pub async fn deployer(&self, args: &[&str]) -> std::process::Output {
        let cli = target_dir().join("debug").join("deployer");
        tokio::process::Command::new(&cli)
            .args(args)
            .envs(self.pipeline.cli_env())
            .output()
            .await
            .unwrap_or_else(|e| panic!("running {}: {e}", cli.display()))
    }

    /// Status and parameters of a deployed stack.
    pub async fn stack(&self, name: &str) -> Option<(String, Vec<(String, String)>)> {
        describe_stack(&self.cfn(), name).await
    }

    /// Makes change set `by-hand` of `kind` on `stack_name` with `template`
    /// and `Greeting` = `greeting`, as an operator would outside Deployer,
    /// and waits until it can be executed. Returns its id.
    pub async fn change_set_by_hand(
        &self,
        stack_name: &str,
        kind: aws_sdk_cloudformation::types::ChangeSetType,
        template: &str,
        greeting: &str,
    ) -> String {
        let cfn = self.cfn();
        let id = cfn
            .create_change_set()
            .stack_name(stack_name)
            .change_set_name("by-hand")
            .change_set_type(kind)
            .template_body(template)
            .parameters(
                aws_sdk_cloudformation::types::Parameter::builder()
                    .parameter_key("Greeting")
                    .parameter_value(greeting)
                    .build(),
            )
            .send()
            .await
            .unwrap_or_else(|e| panic!("CreateChangeSet {stack_name} by hand: {e:?}"))
            .id()
            .expect("change set id")
            .to_owned();
        local_stack::emulator::wait_until(
            "the change set by hand",
            Duration::from_secs(30),
            || {
                let (cfn, id) = (cfn.clone(), id.clone());
                async move {
                    let described = cfn
                        .describe_change_set()
                        .change_set_name(&id)
                        .send()
                        .await?;
                    Ok(
                        (described.status().map(|s| s.as_str()) == Some("CREATE_COMPLETE"))
                            .then_some(()),
                    )
                }
            },
        )
        .await
        .unwrap();
        id
    }

    /// Executes a change set made by [`Self::change_set_by_hand`].
    pub async fn execute_by_hand(&self, id: &str) {
        self.cfn()
            .execute_change_set()
            .change_set_name(id)
            .send()
            .await
            .expect("ExecuteChangeSet by hand");
    }

    /// Executions of the deployment state machine.
    pub async fn executions(&self) -> Vec<aws_sdk_sfn::types::ExecutionListItem> {
        self.sfn()
            .list_executions()
            .state_machine_arn(&self.pipeline.resources.state_machine_arn)
            .send()
            .await
            .expect("ListExecutions")
            .executions()
            .to_vec()
    }
}

/// A stack's status and parameters from DescribeStacks (None if it does not exist).
pub async fn describe_stack(
    cfn: &aws_sdk_cloudformation::Client,
    name: &str,
) -> Option<(String, Vec<(String, String)>)> {
    let out = cfn.describe_stacks().stack_name(name).send().await.ok()?;
    let stack = out.stacks().first()?;
    let params = stack
        .parameters()
        .iter()
        .map(|p| {
            (
                p.parameter_key().unwrap_or_default().to_owned(),
                p.parameter_value().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    Some((stack.stack_status()?.as_str().to_owned(), params))
}

/// A build record of repo `ledger` in `dev` that no upload made.
pub fn ledger_build(n: u64, bucket: &str) -> builddao::NewBuild {
    builddao::NewBuild {
        repo: "ledger".into(),
        env: "dev".into(),
        branch: "main".into(),
        version: format!("{n}.abcd"),
        build_number: n,
        commit_hash: "abcd".into(),
        artifact_bucket: bucket.into(),
        artifact_prefix: format!("ledger/main/{n}.abcd/"),
        parameters: Default::default(),
        uploaded_unix_ms: (1_800_000_000 + n as i64) * 1000,
        origin: format!("upload-{n}").into_bytes(),
        uploaded_by: None,
    }
}

/// The sample app's template.
pub fn sample_template() -> String {
    std::fs::read_to_string(root().join("examples/sample-app/cloudformation.template"))
        .expect("sample template")
}

/// A template whose queue CloudFormation refuses to create (invalid name).
pub fn broken_template() -> String {
    json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Parameters": {"Greeting": {"Type": "String"}},
        "Resources": {
            "GreetingParameter": {
                "Type": "AWS::SSM::Parameter",
                "Properties": {"Name": {"Fn::Sub": "/${AWS::StackName}/greeting"}, "Type": "String", "Value": {"Ref": "Greeting"}}
            },
            "BrokenQueue": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "not a valid name!"}}
        }
    })
    .to_string()
}

pub fn param(params: &[(String, String)], name: &str) -> Option<String> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
}

/// An S3 ObjectCreated:Put notification as S3 sends it, for `encoded_key`
/// (already URL-encoded the way S3 encodes keys in events).
pub fn s3_put_event(bucket: &str, encoded_key: &str) -> Value {
    let record = json!({
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": "2026-11-23T10:00:00.000Z",
        "eventName": "ObjectCreated:Put",
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "test",
            "bucket": {"name": bucket, "arn": format!("arn:aws:s3:::{bucket}")},
            "object": {"key": encoded_key, "size": 10, "eTag": "0123456789abcdef0123456789abcdef"}
        }
    });
    json!({"Records": [local_stack::delivery::complete_s3_record(record)]})
}

/// ECS resources of project `shop` in `dev`, named by the default patterns:
/// cluster `shop_cluster_dev`; services api, worker and the backend; the
/// api family has revisions 1..=10 so 9 and 10 coexist.
pub async fn ecs_fixture(stack: &TestStack) {
    stack
        .pipeline
        .ecs_fixture("shop", &[("api", 10), ("worker", 2), ("backend", 3)])
        .await
        .expect("ECS fixture");
}

/// The [`ecs_fixture`]'s api service's PRIMARY deployment id, as ECS
/// reports it now.
pub async fn api_primary_deployment(stack: &TestStack) -> String {
    aws_sdk_ecs::Client::new(&stack.pipeline.sdk)
        .describe_services()
        .cluster("shop_cluster_dev")
        .services("shop_service_api_dev")
        .send()
        .await
        .unwrap()
        .services()[0]
        .deployments()
        .iter()
        .find(|d| d.status() == Some("PRIMARY"))
        .and_then(|d| d.id())
        .unwrap()
        .to_owned()
}

/// An EventBridge event as AWS delivers it to a target.
pub fn eventbridge(id: &str, source: &str, detail_type: &str, detail: Value) -> Value {
    json!({
        "version": "0",
        "id": id,
        "detail-type": detail_type,
        "source": source,
        "account": "123456789012",
        "time": "2026-11-23T10:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": detail
    })
}

/// Waits until `n` UpdateService calls reached the emulator, then returns them.
pub async fn update_service_calls(stack: &TestStack, n: usize) -> Vec<Value> {
    let proxy = stack.pipeline.ecs_proxy.clone();
    local_stack::emulator::wait_until(
        &format!("{n} UpdateService calls"),
        Duration::from_secs(30),
        || {
            let proxy = proxy.clone();
            async move {
                let calls = proxy.forwarded("UpdateService");
                Ok((calls.len() >= n).then_some(calls))
            }
        },
    )
    .await
    .expect("UpdateService calls")
}

/// The stdout of a command that must have succeeded (its exit status,
/// stdout and stderr in the panic otherwise).
pub fn succeeded(out: &std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "exit {:?}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Waits for a Slack message containing `text`; answers it whole.
pub async fn slack_saying(stack: &TestStack, text: &str) -> String {
    let sink = stack.pipeline.slack.clone();
    local_stack::emulator::wait_until(
        &format!("a Slack message saying {text:?}"),
        Duration::from_secs(30),
        || {
            let sink = sink.clone();
            async move {
                Ok(sink
                    .received()
                    .into_iter()
                    .map(|(_, body)| body.to_string())
                    .find(|m| m.contains(text)))
            }
        },
    )
    .await
    .expect("the Slack message")
}

/// Waits until the Slack sink holds `n` messages, then returns them.
pub async fn slack_messages(stack: &TestStack, n: usize) -> Vec<Value> {
    let sink = stack.pipeline.slack.clone();
    local_stack::emulator::wait_until(
        &format!("{n} Slack messages"),
        Duration::from_secs(30),
        || {
            let sink = sink.clone();
            async move {
                let got: Vec<Value> = sink.received().into_iter().map(|(_, body)| body).collect();
                Ok((got.len() >= n).then_some(got))
            }
        },
    )
    .await
    .expect("Slack messages")
}

// ------------------------------------------------------------------ site

/// A `push` delivery of `branch` at commit `after`, as GitHub sends it
/// (the fields site-build reads, and a few around them).
pub fn github_push(repository: &str, branch: &str, after: &str) -> Value {
    json!({
        "ref": format!("refs/heads/{branch}"),
        "before": "0000000000000000000000000000000000000000",
        "after": after,
        "created": false,
        "deleted": false,
        "forced": false,
        "repository": {"full_name": repository, "name": repository.rsplit('/').next(), "private": false},
        "pusher": {"name": "octocat", "email": "octocat@example.com"},
        "sender": {"login": "octocat"},
        "head_commit": {"id": after, "message": "a change"}
    })
}

/// A `pull_request` delivery (`opened`, `synchronize`, `closed`, ...) of
/// `branch` at `sha` in `repository` itself (not a fork).
pub fn github_pull_request(
    repository: &str,
    action: &str,
    number: u64,
    branch: &str,
    sha: &str,
) -> Value {
    json!({
        "action": action,
        "number": number,
        "pull_request": {
            "number": number,
            "state": if action == "closed" { "closed" } else { "open" },
            "merged": false,
            "head": {"ref": branch, "sha": sha, "repo": {"full_name": repository}},
            "base": {"ref": "main", "repo": {"full_name": repository}}
        },
        "repository": {"full_name": repository},
        "sender": {"login": "octocat"}
    })
}

/// Waits until `target` serves `path` with a body containing `text`.
pub async fn wait_for_page(
    stack: &TestStack,
    target: &local_stack::HostTarget,
    path: &str,
    text: &str,
) -> local_stack::SitePage {
    let site = stack.pipeline.site.clone();
    local_stack::emulator::wait_until(
        &format!("{} {path} to contain {text:?}", target.name()),
        Duration::from_secs(180),
        || {
            let site = site.clone();
            async move {
                let page = site.get(target, path).await?;
                Ok((page.status == 200 && page.text().contains(text)).then_some(page))
            }
        },
    )
    .await
    .expect("the page is served")
}
