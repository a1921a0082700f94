//! The gates around a stack deployment (docs/state-machine.md, "Gates"):
//! the bake after the update with automatic rollback, `deployer rollback`,
//! and freeze windows; and around an ECS redeploy: the circuit breaker and
//! deployment alarms, ECS's rollbacks reported, `deployer service rollback`.

use std::time::Duration;

use aws_sdk_cloudwatch::types::{ComparisonOperator, StateValue, Statistic};
use builddao::{Build, BuildStatus, TrackedBuild};
use deployer_e2e::{param, TestStack};
use local_stack::HealthEndpoint;
use serde_json::{json, Value};

/// The sample app with a smoke check: its `SmokeCheckUrl` output is
/// `{SmokeBase}/health/{Greeting}` (the health double fails `…/broken`).
fn app_with_smoke_check() -> String {
    let mut template: Value =
        serde_json::from_str(&deployer_e2e::sample_template()).expect("sample template");
    template["Parameters"]["SmokeBase"] = json!({"Type": "String"});
    template["Outputs"]["SmokeCheckUrl"] =
        json!({"Value": {"Fn::Sub": "${SmokeBase}/health/${Greeting}"}});
    template.to_string()
}

async fn upload_app(stack: &TestStack, version: &str, greeting: &str, smoke: &str) -> Build {
    stack
        .upload(
            "shop",
            "main",
            version,
            &app_with_smoke_check(),
            json!({"Greeting": greeting, "SmokeBase": smoke}),
        )
        .await;
    stack.build_of("shop", version).await
}

fn cloudwatch(stack: &TestStack) -> aws_sdk_cloudwatch::Client {
    aws_sdk_cloudwatch::Client::new(&stack.pipeline.sdk)
}

/// An alarm named after the stack (the default `BakeAlarmPrefix`, `{stack}-`).
async fn put_alarm(stack: &TestStack, name: &str) {
    cloudwatch(stack)
        .put_metric_alarm()
        .alarm_name(name)
        .namespace("Shop")
        .metric_name("Errors")
        .statistic(Statistic::Sum)
        .period(60)
        .evaluation_periods(1)
        .threshold(5.0)
        .comparison_operator(ComparisonOperator::GreaterThanThreshold)
        .send()
        .await
        .expect("PutMetricAlarm");
    set_alarm(stack, name, StateValue::Ok, "quiet").await;
}

async fn set_alarm(stack: &TestStack, name: &str, state: StateValue, reason: &str) {
    cloudwatch(stack)
        .set_alarm_state()
        .alarm_name(name)
        .state_value(state)
        .state_reason(reason)
        .send()
        .await
        .expect("SetAlarmState");
}

async fn tracked(stack: &TestStack, build: &Build) -> TrackedBuild {
    stack
        .builds()
        .get_tracked(&build.key())
        .await
        .expect("builds table")
        .expect("build exists")
}

/// Waits until the build's history says its bake has started.
async fn baking(stack: &TestStack, build: &Build) {
    let builds = stack.builds();
    let key = build.key();
    local_stack::emulator::wait_until("the bake to start", Duration::from_secs(90), || {
        let (builds, key) = (builds.clone(), key.clone());
        async move {
            let t = builds.get_tracked(&key).await?.expect("build");
            assert!(
                !t.build.status.is_terminal(),
                "build ended before its bake: {t:?}"
            );
            Ok(t.transitions
                .iter()
                .any(|c| c.reason.starts_with("baking for"))
                .then_some(()))
        }
    })
    .await
    .unwrap();
}

/// The rollback build the failed build's message names, once it ends.
async fn rollback_of(stack: &TestStack, failed: &Build) -> Build {
    let message = failed.error_msg.clone().unwrap_or_default();
    let sk = message
        .rsplit_once(" as build ")
        .map(|(_, sk)| sk.trim().to_owned())
        .unwrap_or_else(|| panic!("no rollback build named in {message:?}"));
    let key = builddao::BuildKey { sk, ..failed.key() };
    stack.wait_terminal(&key).await
}

/// The parameters the build's execution sent to CreateChangeSet.
async fn change_set_parameters(stack: &TestStack, build: &Build) -> Value {
    let arn = build.execution_arn.clone().expect("the build's execution");
    stack
        .execution_history(&arn)
        .await
        .iter()
        .filter_map(|e| e.task_scheduled_event_details())
        .find(|scheduled| scheduled.resource() == "createChangeSet")
        .map(|scheduled| serde_json::from_str(scheduled.parameters()).expect("JSON parameters"))
        .unwrap_or_else(|| panic!("no CreateChangeSet in the execution of {}", build.sk))
}

async fn greeting(stack: &TestStack) -> Option<String> {
    let (status, params) = stack.stack("dev-shop").await.expect("stack dev-shop");
    assert!(status.ends_with("_COMPLETE"), "{status}");
    param(&params, "Greeting")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarm_during_the_bake_rolls_back_to_the_previous_version() {
    let stack = TestStack::start(
        "dev",
        &[("BakeSeconds", "dev=4"), ("BakeIntervalSeconds", "1")],
    )
    .await;
    let health = HealthEndpoint::start().await.unwrap();
    put_alarm(&stack, "dev-shop-errors").await;

    // A clean bake: SUCCESS only after it, having checked all along.
    let one = upload_app(&stack, "1.aaaa", "one", &health.base).await;
    let one = stack.wait_terminal(&one.key()).await;
    assert_eq!(one.status, BuildStatus::Success, "{one:?}");
    let history = tracked(&stack, &one).await.transitions;
    let note = history
        .iter()
        .find(|c| c.reason.starts_with("baking for"))
        .expect("the bake is in the history");
    assert!(
        note.reason.contains("alarms dev-shop-errors")
            && note
                .reason
                .contains(&format!("GET {}/health/one", health.base)),
        "{note:?}"
    );
    let done = history.last().unwrap();
    assert!(done.reason.ends_with("; baked 4 s"), "{done:?}");
    let checks = health
        .asked()
        .iter()
        .filter(|p| *p == "/health/one")
        .count();
    assert_eq!(checks, 4, "one smoke check per second of the bake");
    // The alarm went to CloudFormation too, as a rollback trigger of the
    // change set (moto stores no RollbackConfiguration: the parameters the
    // state machine sent are read from its history).
    let sent = change_set_parameters(&stack, &one).await;
    assert_eq!(
        sent["RollbackConfiguration"]["RollbackTriggers"],
        json!([{"Arn": "arn:aws:cloudwatch:us-east-1:123456789012:alarm:dev-shop-errors", "Type": "AWS::CloudWatch::Alarm"}]),
        "{sent}"
    );

    let two = upload_app(&stack, "2.bbbb", "two", &health.base).await;
    baking(&stack, &two).await;
    assert_eq!(greeting(&stack).await.as_deref(), Some("two"));
    set_alarm(&stack, "dev-shop-errors", StateValue::Alarm, "Errors > 5").await;
    let two = stack.wait_terminal(&two.key()).await;
    // The rollback's own bake must see the alarm quiet again.
    set_alarm(&stack, "dev-shop-errors", StateValue::Ok, "quiet").await;
    assert_eq!(two.status, BuildStatus::Failed, "{two:?}");
    let message = two.error_msg.clone().unwrap();
    assert!(
        message.starts_with(&format!(
            "rolled back: alarm dev-shop-errors in ALARM (Errors > 5); redeploying version 1.aaaa (build {})",
            one.sk
        )),
        "{message}"
    );

    let rollback = rollback_of(&stack, &two).await;
    assert_eq!(rollback.status, BuildStatus::Success, "{rollback:?}");
    let record = rollback.rollback.clone().expect("a rollback build");
    assert_eq!((record.of, record.to), (two.sk.clone(), one.sk.clone()));
    assert!(record.automatic);
    assert_eq!(rollback.version, "1.aaaa");
    assert_eq!(greeting(&stack).await.as_deref(), Some("one"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_smoke_check_rolls_back_and_a_failing_rollback_is_not_rolled_back_again() {
    let stack = TestStack::start(
        "dev",
        &[("BakeSeconds", "dev=2"), ("BakeIntervalSeconds", "1")],
    )
    .await;
    let health = HealthEndpoint::start().await.unwrap();
    let one = upload_app(&stack, "1.aaaa", "one", &health.base).await;
    assert_eq!(
        stack.wait_terminal(&one.key()).await.status,
        BuildStatus::Success
    );

    let two = upload_app(&stack, "2.bbbb", "broken", &health.base).await;
    let two = stack.wait_terminal(&two.key()).await;
    assert_eq!(two.status, BuildStatus::Failed, "{two:?}");
    let message = two.error_msg.clone().unwrap();
    assert!(
        message.starts_with(&format!(
            "rolled back: smoke check GET {}/health/broken answered 500 Internal Server Error; redeploying version 1.aaaa",
            health.base
        )),
        "{message}"
    );
    let rollback = rollback_of(&stack, &two).await;
    assert_eq!(rollback.status, BuildStatus::Success, "{rollback:?}");
    assert_eq!(greeting(&stack).await.as_deref(), Some("one"));

    // When the service stays unhealthy, the rollback's own bake fails too:
    // it ends FAILED and is not rolled back again.
    health.fail_all();
    let three = upload_app(&stack, "3.cccc", "three", &health.base).await;
    let three = stack.wait_terminal(&three.key()).await;
    assert_eq!(three.status, BuildStatus::Failed);
    assert!(
        three
            .error_msg
            .as_deref()
            .unwrap_or_default()
            .starts_with(&format!(
                "rolled back: smoke check GET {}/health/three answered 500",
                health.base
            )),
        "{three:?}"
    );
    let again = rollback_of(&stack, &three).await;
    assert_eq!(again.status, BuildStatus::Failed, "{again:?}");
    let message = again.error_msg.clone().unwrap_or_default();
    assert!(
        message.starts_with(&format!(
            "bake failed: smoke check GET {}/health/one answered 500 Internal Server Error; not rolled back again: this build is itself a rollback of build {}",
            health.base, three.sk
        )),
        "{message}"
    );
    let newest = stack.builds().latest("shop", "dev").await.unwrap().unwrap();
    assert_eq!(newest.sk, again.sk, "no further rollback build");
    assert_eq!(greeting(&stack).await.as_deref(), Some("one"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployer_rollback_redeploys_an_earlier_build() {
    let stack = TestStack::start("dev", &[]).await;
    let one = stack.upload_sample("shop", "1.aaaa", "one").await;
    let one = stack.wait_terminal(&one.key()).await;
    let two = stack.upload_sample("shop", "2.bbbb", "two").await;
    let two = stack.wait_terminal(&two.key()).await;
    assert_eq!(
        (one.status, two.status),
        (BuildStatus::Success, BuildStatus::Success)
    );
    assert_eq!(greeting(&stack).await.as_deref(), Some("two"));

    let out = stack
        .deployer(&[
            "rollback",
            "shop",
            "--by",
            "carol",
            "--reason",
            "checkout broke",
        ])
        .await;
    let stdout = deployer_e2e::succeeded(&out);
    assert!(
        stdout.contains(&format!("redeploys version 1.aaaa (build {})", one.sk)),
        "{stdout}"
    );
    let sk = stdout
        .split_whitespace()
        .nth(2)
        .and_then(|id| id.rsplit('/').next())
        .expect("build id printed")
        .to_owned();
    let back = stack
        .wait_terminal(&builddao::BuildKey { sk, ..one.key() })
        .await;
    assert_eq!(back.status, BuildStatus::Success, "{back:?}");
    assert_eq!(back.uploaded_by.as_deref(), Some("carol"));
    let record = back.rollback.clone().expect("a rollback build");
    assert_eq!((record.of, record.to), (two.sk.clone(), one.sk.clone()));
    assert!(!record.automatic);
    assert_eq!(record.reason, "checkout broke");
    assert_eq!(greeting(&stack).await.as_deref(), Some("one"));

    // Only a build that deployed can be gone back to.
    stack
        .upload(
            "shop",
            "main",
            "3.cccc",
            &deployer_e2e::broken_template(),
            json!({"Greeting": "x"}),
        )
        .await;
    let three = stack.build_of("shop", "3.cccc").await;
    let three = stack.wait_terminal(&three.key()).await;
    assert_eq!(three.status, BuildStatus::Failed);
    let out = stack
        .deployer(&["rollback", "shop", "--to", &three.sk])
        .await;
    // A refusal: exit 1, as for `site rollback` and `service rollback`.
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("is FAILED: only a build that deployed successfully can be rolled back to"),
        "{stderr}"
    );
}

/// Waits until the wall clock's second within a half minute is in `range`.
async fn at_second(range: std::ops::Range<u64>) {
    loop {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        if range.contains(&(now % 30)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_during_a_freeze_waits_then_deploys_when_the_window_ends() {
    // Windows open at seconds 0 and 30 of each minute, for 20 s.
    let stack = TestStack::start("dev", &[("FreezeWindows", "dev|*/30 * * * * *|20s|UTC")]).await;
    at_second(0..1).await;
    let build = stack.upload_sample("shop", "1.aaaa", "frozen").await;
    let waiting = stack
        .wait_for(&build.key(), BuildStatus::AwaitingWindow)
        .await;
    assert_eq!(waiting.status, BuildStatus::AwaitingWindow, "{waiting:?}");
    assert!(
        stack.stack("dev-shop").await.is_none(),
        "nothing deploys during the freeze"
    );
    let done = stack.wait_terminal(&build.key()).await;
    assert_eq!(done.status, BuildStatus::Success, "{done:?}");
    let history = tracked(&stack, &done).await.transitions;
    let reasons: Vec<&str> = history.iter().map(|c| c.reason.as_str()).collect();
    let wait = history
        .iter()
        .position(|c| c.status == BuildStatus::AwaitingWindow)
        .expect("AWAITING_WINDOW in the history");
    assert!(
        history[wait].reason.starts_with(
            "waiting: environment dev is in freeze window \"*/30 * * * * *\" (UTC, 20s) until"
        ),
        "{reasons:?}"
    );
    assert!(
        history[wait + 1]
            .reason
            .starts_with("freeze window ended at"),
        "{reasons:?}"
    );
    assert_eq!(greeting(&stack).await.as_deref(), Some("frozen"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_lets_a_build_through_a_freeze_and_names_the_approver() {
    // Open every day from midnight for 24 h: always frozen.
    let stack = TestStack::start("dev", &[("FreezeWindows", "dev|0 0 * * *|24h|UTC")]).await;
    let build = stack.upload_sample("shop", "1.aaaa", "urgent").await;
    let waiting = stack
        .wait_for(&build.key(), BuildStatus::AwaitingWindow)
        .await;
    assert_eq!(waiting.status, BuildStatus::AwaitingWindow);
    let builds = stack.builds();
    local_stack::emulator::wait_until("the window's token", Duration::from_secs(30), || {
        let (builds, key) = (builds.clone(), build.key());
        async move { Ok(builds.get(&key).await?.and_then(|b| b.approval_token)) }
    })
    .await
    .unwrap();
    let out = stack.deployer(&["approve", "shop", "--by", "dana"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let done = stack.wait_terminal(&build.key()).await;
    assert_eq!(done.status, BuildStatus::Success, "{done:?}");
    let history = tracked(&stack, &done).await.transitions;
    assert!(
        history
            .iter()
            .any(|c| c.reason == "freeze window overridden: approved by dana"),
        "{history:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_freeze_fails_the_build_at_once() {
    let stack = TestStack::start("dev", &[("FreezeWindows", "dev|0 0 * * *|24h|UTC|refuse")]).await;
    let build = stack.upload_sample("shop", "1.aaaa", "no").await;
    let done = stack.wait_terminal(&build.key()).await;
    assert_eq!(done.status, BuildStatus::Failed);
    let message = done.error_msg.unwrap_or_default();
    assert!(
        message.starts_with(
            "refused: environment dev is in freeze window \"0 0 * * *\" (UTC, 24h) until"
        ),
        "{message}"
    );
    assert!(stack.stack("dev-shop").await.is_none());
}

/// The sample app with `extra` resources added.
fn sample_with(extra: Value) -> String {
    let mut template: Value =
        serde_json::from_str(&deployer_e2e::sample_template()).expect("sample template");
    for (id, resource) in extra.as_object().expect("resources") {
        template["Resources"][id] = resource.clone();
    }
    template.to_string()
}

async fn change_set_names(stack: &TestStack, stack_name: &str) -> Vec<String> {
    stack
        .cfn()
        .list_change_sets()
        .stack_name(stack_name)
        .send()
        .await
        .expect("ListChangeSets")
        .summaries()
        .iter()
        .filter_map(|s| s.change_set_name().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_stops_broken_templates_records_warnings_and_takes_operator_rules() {
    let stack = TestStack::start("dev", &[]).await;

    // A WARN rule: deployed, the warning recorded on the build.
    let logs = json!({"AppLogs": {
        "Type": "AWS::Logs::LogGroup",
        "Properties": {"LogGroupName": {"Fn::Sub": "/${AWS::StackName}/app"}}
    }});
    stack
        .upload(
            "shop",
            "main",
            "1.aaaa",
            &sample_with(logs),
            json!({"Greeting": "one"}),
        )
        .await;
    let one = stack.build_of("shop", "1.aaaa").await;
    let one = stack.wait_terminal(&one.key()).await;
    assert_eq!(one.status, BuildStatus::Success, "{one:?}");
    assert_eq!(one.policy_warnings.len(), 1, "{one:?}");
    assert!(
        one.policy_warnings[0].starts_with(
            "rule log_group_retention: resource AppLogs: the log group has no RetentionInDays"
        ),
        "{:?}",
        one.policy_warnings
    );
    let history = tracked(&stack, &one).await.transitions;
    assert!(
        history
            .iter()
            .any(|c| c.reason.starts_with("policy passed with 1 warning(s)")),
        "{history:?}"
    );

    // A FAIL rule: wildcard IAM. FAILED, naming rule and resource; no
    // change set was made.
    let wildcard = json!({"AppRole": {
        "Type": "AWS::IAM::Role",
        "Properties": {
            "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                "Action": "sts:AssumeRole"}]},
            "Policies": [{"PolicyName": "everything", "PolicyDocument": {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}}]
        }
    }});
    stack
        .upload(
            "shop",
            "main",
            "2.bbbb",
            &sample_with(wildcard),
            json!({"Greeting": "two"}),
        )
        .await;
    let two = stack.build_of("shop", "2.bbbb").await;
    let two = stack.wait_terminal(&two.key()).await;
    assert_eq!(two.status, BuildStatus::Failed, "{two:?}");
    let message = two.error_msg.clone().unwrap_or_default();
    assert!(
        message.starts_with("policy: rule iam_no_wildcard_action_resource: resource AppRole: "),
        "{message}"
    );
    let change_sets = change_set_names(&stack, "dev-shop").await;
    assert!(
        !change_sets.contains(&format!("deployer-{}", two.sk)),
        "{change_sets:?}"
    );
    assert!(change_sets.contains(&format!("deployer-{}", one.sk)));
    assert_eq!(greeting(&stack).await.as_deref(), Some("one"));

    // The operator's rule from the artifact bucket blocks a template the
    // defaults pass.
    let rule = "let queues = Resources.*[ Type == 'AWS::SQS::Queue' ]\n\
                rule sqs_queue_encrypted when %queues !empty {\n\
                    %queues.Properties.KmsMasterKeyId exists\n\
                    <<queues must be encrypted: set KmsMasterKeyId>>\n\
                }\n";
    stack
        .pipeline
        .s3()
        .put_object()
        .bucket(&stack.pipeline.resources.bucket)
        .key("_deployer/policy/dev/sqs_queue_encrypted.guard")
        .body(rule.as_bytes().to_vec().into())
        .send()
        .await
        .expect("PutObject rule");
    let three = stack.upload_sample("shop", "3.cccc", "three").await;
    let three = stack.wait_terminal(&three.key()).await;
    assert_eq!(three.status, BuildStatus::Failed, "{three:?}");
    let message = three.error_msg.clone().unwrap_or_default();
    assert_eq!(
        message,
        "policy: rule sqs_queue_encrypted: resource WorkQueue: queues must be encrypted: set KmsMasterKeyId"
    );
    assert_eq!(greeting(&stack).await.as_deref(), Some("one"));
}

// ECS: the deployment circuit breaker and deployment alarms on every
// redeploy, an ECS rollback reported as a failed deploy naming the task
// definition it went back to, and `deployer service rollback`.

const CLUSTER: &str = "shop_cluster_dev";
const API: &str = "shop_service_api_dev";

async fn shop_services(extra: &[(&str, &str)]) -> TestStack {
    let mut params = vec![("ProjectName", "shop")];
    params.extend_from_slice(extra);
    let stack = TestStack::start("dev", &params).await;
    deployer_e2e::ecs_fixture(&stack).await;
    stack
}

fn manual_deploy(task_definition: &str) -> Value {
    json!({"source": "action.dev", "detail-type": "DEPLOY",
           "detail": {"service": "api", "task_definition": task_definition, "reason": "release"}})
}

/// Sends `event`, waits for the `n`th UpdateService call and answers it.
async fn redeploy(stack: &TestStack, event: Value, n: usize) -> Value {
    stack.pipeline.put_events(&[event]).await.unwrap();
    deployer_e2e::update_service_calls(stack, n).await[n - 1].clone()
}

async fn end_rollout(stack: &TestStack, outcome: local_stack::RolloutEnd) -> Value {
    stack
        .emulator
        .end_ecs_rollout(CLUSTER, API, outcome)
        .await
        .expect("the emulator ends the rollout")
}

async fn api_history(stack: &TestStack) -> Vec<Value> {
    let out = stack
        .deployer(&["history", &format!("service:{API}"), "--json"])
        .await;
    serde_json::from_str::<Value>(&deployer_e2e::succeeded(&out)).unwrap()["deployments"]
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ecs_rollback_is_reported_as_a_failed_deploy_naming_the_task_definition_it_went_back_to()
{
    let stack = shop_services(&[]).await;

    // The first redeploy turns the circuit breaker on, with rollback.
    let first = redeploy(&stack, manual_deploy("shop_service_api_dev:9"), 1).await;
    assert_eq!(
        first["deploymentConfiguration"]["deploymentCircuitBreaker"],
        json!({"enable": true, "rollback": true}),
        "{first}"
    );
    deployer_e2e::slack_saying(&stack, "Deploying api to dev").await;
    end_rollout(&stack, local_stack::RolloutEnd::Completed).await;
    deployer_e2e::slack_saying(&stack, "Deployed shop_service_api_dev to dev").await;

    // The next finds it on and sends no configuration.
    let push = json!({"source": "aws.ecr", "detail-type": "ECR Image Action",
        "detail": {"result": "SUCCESS", "repository-name": "shop_service_api", "image-digest": "sha256:bad", "action-type": "PUSH", "image-tag": "v2"}});
    let second = redeploy(&stack, push, 2).await;
    assert!(second.get("deploymentConfiguration").is_none(), "{second}");
    assert!(
        second["taskDefinition"]
            .as_str()
            .unwrap()
            .ends_with("shop_service_api_dev:10"),
        "{second}"
    );

    // Its tasks fail: ECS fails it and rolls back to the :9 deployment.
    let ended = end_rollout(&stack, local_stack::RolloutEnd::Failed).await;
    let names: Vec<&str> = ended["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["eventName"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "SERVICE_DEPLOYMENT_FAILED",
            "SERVICE_DEPLOYMENT_IN_PROGRESS"
        ]
    );
    let rollback_id = ended["events"][1]["deploymentId"].as_str().unwrap();
    let message = deployer_e2e::slack_saying(&stack, "ECS rolled it back to").await;
    assert!(
        message.contains(
            "Deployment of shop_service_api_dev to dev failed: ECS rolled it back to shop_service_api_dev:9"
        ),
        "{message}"
    );
    assert!(
        message.contains("of shop_service_api_dev:10 failed"),
        "names the deployment that failed: {message}"
    );
    assert!(
        message.contains("image shop_service_api:v2 pushed"),
        "{message}"
    );
    assert!(message.contains("#E01E5A"), "red: {message}");

    // The ledger: the :10 redeploy FAILED, rolled back to :9; the rollback
    // is a redeploy of its own, by ECS, closed when ECS completes it.
    end_rollout(&stack, local_stack::RolloutEnd::Completed).await;
    let done = deployer_e2e::slack_saying(&stack, "Rolled back shop_service_api_dev in dev").await;
    assert!(done.contains("to shop_service_api_dev:9"), "{done}");
    assert!(done.contains(rollback_id), "{done}");
    let history = api_history(&stack).await;
    assert_eq!(history.len(), 3, "{history:#?}");
    let (rollback, failed) = (&history[0], &history[1]);
    assert_eq!(rollback["state"], "SUCCEEDED", "{rollback}");
    assert_eq!(rollback["by"], "aws.ecs");
    assert!(rollback["version"]
        .as_str()
        .unwrap()
        .starts_with("shop_service_api_dev:9"));
    assert_eq!(failed["state"], "FAILED", "{failed}");
    let reason = failed["reason"].as_str().unwrap();
    assert!(
        reason.contains("ECS rolled back to shop_service_api_dev:9"),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_breaker_without_rollback_is_honoured_and_configured_alarms_are_added() {
    let stack = shop_services(&[("DeploymentAlarms", r#"{"api": ["shop-api-5xx"]}"#)]).await;
    // The operator's own choice: fail deployments, roll nothing back.
    aws_sdk_ecs::Client::new(&stack.pipeline.sdk)
        .update_service()
        .cluster(CLUSTER)
        .service(API)
        .deployment_configuration(
            aws_sdk_ecs::types::DeploymentConfiguration::builder()
                .maximum_percent(150)
                .minimum_healthy_percent(50)
                .deployment_circuit_breaker(
                    aws_sdk_ecs::types::DeploymentCircuitBreaker::builder()
                        .enable(true)
                        .rollback(false)
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();

    let call = redeploy(&stack, manual_deploy("shop_service_api_dev:9"), 1).await;
    let sent = &call["deploymentConfiguration"];
    assert_eq!(
        sent["deploymentCircuitBreaker"],
        json!({"enable": true, "rollback": false}),
        "{call}"
    );
    assert_eq!(
        sent["alarms"],
        json!({"alarmNames": ["shop-api-5xx"], "enable": true, "rollback": true})
    );
    assert_eq!(
        (&sent["maximumPercent"], &sent["minimumHealthyPercent"]),
        (&json!(150), &json!(50)),
        "the rest of the service's configuration is kept"
    );
    end_rollout(&stack, local_stack::RolloutEnd::Completed).await;
    deployer_e2e::slack_saying(&stack, "Deployed shop_service_api_dev to dev").await;
    redeploy(&stack, manual_deploy("shop_service_api_dev:10"), 2).await;

    let ended = end_rollout(&stack, local_stack::RolloutEnd::Failed).await;
    assert_eq!(ended["events"].as_array().unwrap().len(), 1, "{ended}");
    let message =
        deployer_e2e::slack_saying(&stack, "Deployment of shop_service_api_dev to dev failed")
            .await;
    assert!(
        message.contains("ECS deployment circuit breaker: tasks failed to start."),
        "{message}"
    );
    assert!(!message.contains("rolled"), "{message}");
    let history = api_history(&stack).await;
    assert_eq!(history[0]["state"], "FAILED");
    assert!(history[0]["version"]
        .as_str()
        .unwrap()
        .starts_with("shop_service_api_dev:10"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployer_service_rollback_redeploys_the_previous_task_definition() {
    let stack = shop_services(&[]).await;
    redeploy(&stack, manual_deploy("shop_service_api_dev:9"), 1).await;
    end_rollout(&stack, local_stack::RolloutEnd::Completed).await;
    deployer_e2e::slack_saying(&stack, "Deployed shop_service_api_dev to dev").await;
    redeploy(&stack, manual_deploy("shop_service_api_dev:10"), 2).await;
    end_rollout(&stack, local_stack::RolloutEnd::Completed).await;
    let history = local_stack::emulator::wait_until(
        "the :10 redeploy to succeed in the ledger",
        Duration::from_secs(30),
        || {
            let stack = &stack;
            async move {
                let history = api_history(stack).await;
                Ok((history[0]["state"] == "SUCCEEDED").then_some(history))
            }
        },
    )
    .await
    .unwrap();
    assert_eq!(history.len(), 2);

    let out = stack
        .deployer(&[
            "service",
            "rollback",
            "api",
            "--by",
            "erin",
            "--reason",
            "checkout broke",
        ])
        .await;
    let stdout = deployer_e2e::succeeded(&out);
    assert!(
        stdout.contains(
            "rolling shop_service_api_dev back from shop_service_api_dev:10 to shop_service_api_dev:9"
        ),
        "{stdout}"
    );
    let calls = deployer_e2e::update_service_calls(&stack, 3).await;
    assert_eq!(calls.len(), 3, "one UpdateService for the rollback");
    assert_eq!(calls[2]["taskDefinition"], "shop_service_api_dev:9");
    let message = deployer_e2e::slack_saying(&stack, "rollback from shop_service_api_dev:10").await;
    assert!(
        message.contains("to shop_service_api_dev:9 by erin: checkout broke"),
        "{message}"
    );

    // A task definition of another family is refused; nothing deployed.
    let out = stack
        .deployer(&[
            "service",
            "rollback",
            API,
            "--to",
            "shop_service_worker_dev:1",
        ])
        .await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("is of family shop_service_worker_dev, not shop_service_api_dev"),
        "{stderr}"
    );
    assert_eq!(stack.pipeline.ecs_proxy.forwarded("UpdateService").len(), 3);
}
