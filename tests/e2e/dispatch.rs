//! ci-dispatch against the emulator: events in through EventBridge rules,
//! UpdateService calls observed at a recording proxy in front of ECS, Slack
//! messages at a local sink.

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use builddao::BuildStatus;
use deployer_e2e::{
    api_primary_deployment, ecs_fixture, eventbridge, ledger_build, slack_messages,
    update_service_calls, TestStack,
};
use local_stack::{Caller, FaultKind, FaultRule, InvokeError, SinkMode};
use serde_json::{json, Value};

const ENV_FILES: &str = r#"{"api": [{"bucket": "shop-env", "key": "shared.env"}], "worker": [{"bucket": "shop-env", "key": "shared.env"}, {"bucket": "shop-env", "key": "worker.env"}]}"#;

async fn shop(extra: &[(&str, &str)]) -> TestStack {
    let mut params = vec![
        ("ProjectName", "shop"),
        ("EnvFilesBucket", "shop-env"),
        ("EnvFiles", ENV_FILES),
    ];
    params.extend_from_slice(extra);
    let stack = TestStack::start("dev", &params).await;
    ecs_fixture(&stack).await;
    stack
}

fn ecr_push(repository: &str, digest: &str, tag: &str) -> Value {
    json!({"source": "aws.ecr", "detail-type": "ECR Image Action",
           "detail": {"result": "SUCCESS", "repository-name": repository, "image-digest": digest, "action-type": "PUSH", "image-tag": tag}})
}

fn ssm_change(name: &str) -> Value {
    json!({"source": "aws.ssm", "detail-type": "Parameter Store Change",
           "detail": {"operation": "Update", "name": name, "type": "String", "description": ""}})
}

fn manual(service: &str, extra: Value) -> Value {
    let mut detail = json!({"service": service, "environment": "dev"});
    detail
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().cloned().unwrap_or_default());
    json!({"source": "action.deploy", "detail-type": "DEPLOY", "detail": detail})
}

fn target(call: &Value) -> (String, String, String, bool) {
    (
        call["cluster"].as_str().unwrap_or_default().to_owned(),
        call["service"].as_str().unwrap_or_default().to_owned(),
        call["taskDefinition"]
            .as_str()
            .unwrap_or_default()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned(),
        call["forceNewDeployment"].as_bool().unwrap_or(false),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_source_redeploys_exactly_the_mapped_service_with_the_newest_revision() {
    let stack = shop(&[]).await;
    let p = &stack.pipeline;
    let expect = |call: &Value, service: &str, revision: &str| {
        assert_eq!(
            target(call),
            (
                "shop_cluster_dev".into(),
                service.into(),
                revision.into(),
                true
            ),
            "{call}"
        );
    };

    p.put_events(&[ecr_push("shop_service_api", "sha256:aaa", "v1")])
        .await
        .unwrap();
    let calls = update_service_calls(&stack, 1).await;
    expect(&calls[0], "shop_service_api_dev", "shop_service_api_dev:10");

    p.put_events(&[ssm_change("/dev/shop/worker/QUEUE_URL")])
        .await
        .unwrap();
    let calls = update_service_calls(&stack, 2).await;
    expect(
        &calls[1],
        "shop_service_worker_dev",
        "shop_service_worker_dev:2",
    );

    // CloudTrail PutObject of an env file two services read: both, at once.
    let cloudtrail = json!({"source": "aws.s3", "detail-type": "AWS API Call via CloudTrail",
        "detail": {"eventSource": "s3.amazonaws.com", "eventName": "PutObject",
                   "requestParameters": {"bucketName": "shop-env", "key": "shared.env"}}});
    p.put_events(&[cloudtrail]).await.unwrap();
    let calls = update_service_calls(&stack, 4).await;
    let mut services: Vec<String> = calls[2..].iter().map(|c| target(c).1).collect();
    services.sort();
    assert_eq!(
        services,
        ["shop_service_api_dev", "shop_service_worker_dev"]
    );

    // An explicit task definition is honoured.
    p.put_events(&[manual(
        "api",
        json!({"task_definition": "shop_service_api_dev:3", "reason": "roll back"}),
    )])
    .await
    .unwrap();
    let calls = update_service_calls(&stack, 5).await;
    expect(&calls[4], "shop_service_api_dev", "shop_service_api_dev:3");

    // The backend service from ECR, SSM and a manual event.
    p.put_events(&[ecr_push("shop_backend", "sha256:bbb", "v1")])
        .await
        .unwrap();
    update_service_calls(&stack, 6).await;
    p.put_events(&[ssm_change("/dev/shop/backend/DATABASE_URL")])
        .await
        .unwrap();
    update_service_calls(&stack, 7).await;
    p.put_events(&[
        json!({"source": "action.dev", "detail-type": "DEPLOY", "detail": {"service": "backend"}}),
    ])
    .await
    .unwrap();
    let calls = update_service_calls(&stack, 8).await;
    for call in &calls[5..8] {
        expect(call, "shop_backend_dev", "shop_backend_dev:3");
    }

    // Other projects and environments never reach the function's deploys.
    p.put_events(&[
        ecr_push("other_service_api", "sha256:ccc", "v1"),
        ssm_change("/prd/shop/api/X"),
    ])
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(p.ecs_proxy.forwarded("UpdateService").len(), 8);

    // ECS reports the rollout COMPLETED: the loop closes with the context.
    let deployment = api_primary_deployment(&stack).await;
    let before = p.slack.received().len();
    p.put_events(&[json!({"source": "aws.ecs", "detail-type": "ECS Deployment State Change",
        "resources": ["arn:aws:ecs:us-east-1:123456789012:service/shop_cluster_dev/shop_service_api_dev"],
        "detail": {"eventType": "INFO", "eventName": "SERVICE_DEPLOYMENT_COMPLETED", "deploymentId": deployment,
                   "updatedAt": "2026-11-23T10:05:00Z", "reason": "ECS deployment completed."}})])
    .await
    .unwrap();
    let messages = slack_messages(&stack, before + 1).await;
    let done = messages.last().unwrap().to_string();
    assert!(
        done.contains("Deployed shop_service_api_dev to dev"),
        "{done}"
    );
    assert!(done.contains(&deployment), "{done}");
    assert!(done.contains("#2EB67D"), "green for success: {done}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_event_or_a_second_tag_of_one_image_deploys_once() {
    let stack = shop(&[]).await;
    let p = &stack.pipeline;
    let event = eventbridge(
        "replayed-1",
        "aws.ssm",
        "Parameter Store Change",
        json!({"operation": "Update", "name": "/dev/shop/api/X"}),
    );
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(p.ci_dispatch.invoke(&event).await.unwrap()["status"].clone());
    }
    assert_eq!(
        statuses,
        [json!("done"), json!("duplicate"), json!("duplicate")]
    );

    p.put_events(&[
        ecr_push("shop_service_worker", "sha256:same", "v2"),
        ecr_push("shop_service_worker", "sha256:same", "latest"),
    ])
    .await
    .unwrap();
    update_service_calls(&stack, 2).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let calls = p.ecs_proxy.forwarded("UpdateService");
    assert_eq!(
        calls.len(),
        2,
        "one for the replayed event, one for the image: {calls:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_and_5xx_are_retried_but_an_unknown_service_is_reported_once() {
    let stack = shop(&[]).await;
    let p = &stack.pipeline;
    let faults = stack.emulator.faults();
    let ci_dispatch = Caller::function(p.ci_dispatch.name());
    faults
        .add(
            FaultRule::new(
                ci_dispatch.clone(),
                "ecs",
                "UpdateService",
                FaultKind::Throttle,
            )
            .times(2),
        )
        .await
        .unwrap();
    faults
        .add(
            FaultRule::new(
                ci_dispatch,
                "ecs",
                "DescribeTaskDefinition",
                FaultKind::ServerError,
            )
            .times(1),
        )
        .await
        .unwrap();
    let result = p
        .ci_dispatch
        .invoke(&eventbridge(
            "t-1",
            "action.dev",
            "DEPLOY",
            json!({"service": "api"}),
        ))
        .await
        .unwrap();
    assert_eq!(result["services"][0]["status"], "started", "{result}");
    let attempts = p
        .ecs_proxy
        .calls()
        .into_iter()
        .filter(|c| c.operation == "UpdateService")
        .count();
    assert_eq!(attempts, 3, "two throttled attempts, then success");
    assert_eq!(p.ecs_proxy.forwarded("UpdateService").len(), 1);

    let before = p.slack.received().len();
    let result = p
        .ci_dispatch
        .invoke(&eventbridge(
            "t-2",
            "action.dev",
            "DEPLOY",
            json!({"service": "ghost", "task_definition": "shop_service_ghost_dev:1"}),
        ))
        .await
        .unwrap();
    assert_eq!(result["services"][0]["status"], "failed", "{result}");
    assert!(
        result["services"][0]["error"].as_str().unwrap().contains(
            "service shop_service_ghost_dev not found in cluster shop_cluster_dev (ECS: MISSING)"
        ),
        "{result}"
    );
    // Refused when its deployment configuration is read, before any
    // UpdateService; not retried.
    let ghost_calls = |operation: &'static str| {
        p.ecs_proxy
            .calls()
            .into_iter()
            .filter(|c| {
                c.operation == operation && c.body.to_string().contains("shop_service_ghost_dev")
            })
            .count()
    };
    assert_eq!(ghost_calls("DescribeServices"), 1, "not retried");
    assert_eq!(ghost_calls("UpdateService"), 0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let failures: Vec<_> = p.slack.received()[before..]
        .iter()
        .filter(|(_, body)| body.to_string().contains("ghost"))
        .cloned()
        .collect();
    assert_eq!(failures.len(), 1, "reported once: {failures:?}");
    // The same event again is a duplicate, not a second report.
    let again = p
        .ci_dispatch
        .invoke(&eventbridge(
            "t-2",
            "action.dev",
            "DEPLOY",
            json!({"service": "ghost"}),
        ))
        .await
        .unwrap();
    assert_eq!(again["status"], "duplicate");

    // The ledger: one record per redeploy whatever the retries; the one
    // ECS refused is FAILED with ECS's reason.
    let history = |service: &'static str| {
        let stack = &stack;
        async move {
            let out = stack
                .deployer(&["history", &format!("service:{service}"), "--json"])
                .await;
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            serde_json::from_slice::<Value>(&out.stdout).unwrap()["deployments"].clone()
        }
    };
    let api = history("shop_service_api_dev").await;
    assert_eq!(api.as_array().unwrap().len(), 1, "{api}");
    assert_eq!(
        api[0]["state"], "IN_FLIGHT",
        "ECS has not reported the rollout: {api}"
    );
    assert_eq!(api[0]["by"], "action.dev");
    assert_eq!(
        link(&api[0], "logs"),
        "https://us-east-1.console.aws.amazon.com/cloudwatch/home?region=us-east-1#logsV2:log-groups/log-group/$252Faws$252Flambda$252Fdev-deployer-ci-dispatch",
        "a redeploy links to ci-dispatch's log group"
    );
    let ghost = history("shop_service_ghost_dev").await;
    assert_eq!(ghost.as_array().unwrap().len(), 1, "{ghost}");
    assert_eq!(ghost[0]["state"], "FAILED");
    assert!(
        ghost[0]["reason"]
            .as_str()
            .unwrap()
            .contains("not found in cluster shop_cluster_dev"),
        "{ghost}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_deploy_reaches_only_the_environment_it_names() {
    let stack = shop(&[]).await;
    let p = &stack.pipeline;
    let deploy = |source: &str, detail: Value| json!({"source": source, "detail-type": "DEPLOY", "detail": detail});
    // The dev install's rule matches none of these.
    p.put_events(&[
        deploy("action.deploy", json!({"service": "api"})),
        deploy(
            "action.deploy",
            json!({"service": "api", "environment": "prd"}),
        ),
        deploy("action.prd", json!({"service": "api"})),
    ])
    .await
    .unwrap();
    p.put_events(&[deploy(
        "action.deploy",
        json!({"service": "worker", "environment": "dev"}),
    )])
    .await
    .unwrap();
    let calls = update_service_calls(&stack, 1).await;
    assert_eq!(target(&calls[0]).1, "shop_service_worker_dev");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(p.ecs_proxy.forwarded("UpdateService").len(), 1);

    // Delivered anyway (another rule, a direct invoke): the function refuses too.
    let other = p
        .ci_dispatch
        .invoke(&eventbridge(
            "env-1",
            "action.prd",
            "DEPLOY",
            json!({"service": "api"}),
        ))
        .await
        .unwrap();
    assert_eq!(other["status"], "ignored", "{other}");
    assert_eq!(
        other["reason"],
        "manual deploy is for environment prd; this install deploys dev"
    );
    let unnamed = p
        .ci_dispatch
        .invoke(&eventbridge(
            "env-2",
            "action.deploy",
            "DEPLOY",
            json!({"service": "api"}),
        ))
        .await
        .unwrap();
    assert_eq!(unnamed["status"], "rejected", "{unnamed}");
    assert_eq!(
        unnamed["error"],
        "manual deploy names no environment: send source action.{env} or detail.environment with action.deploy"
    );
    let conflicting = p
        .ci_dispatch
        .invoke(&eventbridge(
            "env-3",
            "action.dev",
            "DEPLOY",
            json!({"service": "api", "environment": "prd"}),
        ))
        .await
        .unwrap();
    assert_eq!(conflicting["status"], "rejected", "{conflicting}");
    assert_eq!(
        conflicting["error"],
        "manual deploy source action.dev is for dev but detail.environment is prd"
    );
    assert_eq!(p.ecs_proxy.forwarded("UpdateService").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_definition_of_another_family_is_refused_naming_both_and_reported_once() {
    let stack = shop(&[]).await;
    let p = &stack.pipeline;
    let foreign = [
        (
            "f-1",
            "shop_service_worker_dev:2",
            "shop_service_worker_dev",
        ),
        (
            "f-2",
            "arn:aws:ecs:us-east-1:123456789012:task-definition/other_service_api_dev:1",
            "other_service_api_dev",
        ),
    ];
    for (id, task_definition, family) in foreign {
        let result = p
            .ci_dispatch
            .invoke(&eventbridge(
                id,
                "action.dev",
                "DEPLOY",
                json!({"service": "api", "task_definition": task_definition}),
            ))
            .await
            .unwrap();
        assert_eq!(result["status"], "rejected", "{result}");
        assert_eq!(
            result["error"],
            format!("task definition {task_definition} is of family {family}, not shop_service_api_dev, the family of service shop_service_api_dev; nothing deployed")
        );
    }
    let messages = slack_messages(&stack, 2).await;
    for (message, (_, _, family)) in messages.iter().zip(foreign) {
        let text = message.to_string();
        assert!(text.contains("Deploy of api to dev refused"), "{text}");
        assert!(
            text.contains(family) && text.contains("shop_service_api_dev"),
            "{text}"
        );
    }
    // Replayed: a duplicate, not a second report.
    let again = p
        .ci_dispatch
        .invoke(&eventbridge(
            "f-1",
            "action.dev",
            "DEPLOY",
            json!({"service": "api", "task_definition": "shop_service_worker_dev:2"}),
        ))
        .await
        .unwrap();
    assert_eq!(again["status"], "duplicate", "{again}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(p.slack.received().len(), 2);
    assert!(p.ecs_proxy.forwarded("UpdateService").is_empty());
    assert!(p
        .ecs_proxy
        .calls()
        .iter()
        .all(|c| c.operation != "UpdateService"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_env_file_event_redeploys_only_the_services_not_yet_deployed() {
    let stack = shop(&[]).await;
    let p = &stack.pipeline;
    // The worker's ECS calls keep failing past the client's retries.
    stack
        .emulator
        .faults()
        .add(
            FaultRule::new(
                Caller::function(p.ci_dispatch.name()),
                "ecs",
                "UpdateService",
                FaultKind::ServerError,
            )
            .matching("shop_service_worker_dev")
            .times(5),
        )
        .await
        .unwrap();
    let event = eventbridge(
        "r-1",
        "aws.s3",
        "AWS API Call via CloudTrail",
        json!({"eventSource": "s3.amazonaws.com", "eventName": "PutObject",
               "requestParameters": {"bucketName": "shop-env", "key": "shared.env"}}),
    );
    let first = p.ci_dispatch.invoke(&event).await;
    assert!(
        matches!(first, Err(InvokeError::Function { .. })),
        "retryable failure fails the invocation: {first:?}"
    );
    // Lambda retries the same event.
    let second = p.ci_dispatch.invoke(&event).await.unwrap();
    let statuses: Vec<(String, String)> = second["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["service"].as_str().unwrap().to_owned(),
                s["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        statuses.contains(&("shop_service_api_dev".into(), "already_deployed".into())),
        "{second}"
    );
    assert!(
        statuses.contains(&("shop_service_worker_dev".into(), "started".into())),
        "{second}"
    );
    let deployed: Vec<String> = p
        .ecs_proxy
        .forwarded("UpdateService")
        .iter()
        .map(|c| target(c).1)
        .collect();
    assert_eq!(
        deployed
            .iter()
            .filter(|s| *s == "shop_service_api_dev")
            .count(),
        1,
        "api deployed once: {deployed:?}"
    );
    assert_eq!(
        deployed
            .iter()
            .filter(|s| *s == "shop_service_worker_dev")
            .count(),
        1,
        "{deployed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_calls_no_update_service_and_says_dry_run() {
    let stack = shop(&[("DryRun", "true")]).await;
    let p = &stack.pipeline;
    let result = p
        .ci_dispatch
        .invoke(&eventbridge(
            "d-1",
            "action.dev",
            "DEPLOY",
            json!({"service": "api"}),
        ))
        .await
        .unwrap();
    assert_eq!(result["services"][0]["status"], "dry_run", "{result}");
    assert_eq!(
        result["services"][0]["task_definition"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next(),
        Some("shop_service_api_dev:10")
    );
    assert!(p.ecs_proxy.forwarded("UpdateService").is_empty());
    let message = slack_messages(&stack, 1).await[0].clone();
    assert!(
        message["text"].as_str().unwrap().contains("DRY RUN"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_gets_the_reason_intact_and_a_broken_webhook_never_stops_a_deploy() {
    let stack = shop(&[]).await;
    let p = &stack.pipeline;
    let reason = "hotfix \"payments\" <urgent> & safe\nsecond line";
    p.ci_dispatch
        .invoke(&eventbridge(
            "s-1",
            "action.dev",
            "DEPLOY",
            json!({"service": "api", "reason": reason}),
        ))
        .await
        .unwrap();
    let message = slack_messages(&stack, 1).await[0].clone();
    assert!(
        message["text"].as_str().unwrap().contains(reason),
        "raw reason in the fallback text: {message}"
    );
    let blocks = message["attachments"][0]["blocks"].to_string();
    assert!(
        blocks.contains("hotfix \\\"payments\\\" &lt;urgent&gt; &amp; safe\\nsecond line"),
        "escaped for mrkdwn: {blocks}"
    );

    p.slack.set_mode(SinkMode::Fail);
    let result = p
        .ci_dispatch
        .invoke(&eventbridge(
            "s-2",
            "action.dev",
            "DEPLOY",
            json!({"service": "worker"}),
        ))
        .await
        .unwrap();
    assert_eq!(result["services"][0]["status"], "started");
    p.slack.set_mode(SinkMode::Hang);
    let result = p
        .ci_dispatch
        .invoke(&eventbridge(
            "s-3",
            "action.dev",
            "DEPLOY",
            json!({"service": "backend"}),
        ))
        .await
        .unwrap();
    assert_eq!(result["services"][0]["status"], "started");
    assert_eq!(p.ecs_proxy.forwarded("UpdateService").len(), 3);
}

/// The Slack URL is a secret read by the first notification, not at the
/// cold start. A parameter that cannot be read (here: not created yet)
/// never stops a deploy, and is read again by the next notification.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slack_parameter_that_cannot_be_read_never_stops_a_deploy_and_is_read_again() {
    let parameter = "/shop/dev/slack-webhook";
    let stack = shop(&[("SlackWebhookParameter", parameter)]).await;
    let p = &stack.pipeline;
    let deploy = |id: &str, service: &str| {
        eventbridge(id, "action.dev", "DEPLOY", json!({"service": service}))
    };

    let result = p.ci_dispatch.invoke(&deploy("s-1", "api")).await.unwrap();
    assert_eq!(result["services"][0]["status"], "started", "{result}");
    assert_eq!(p.ecs_proxy.forwarded("UpdateService").len(), 1);
    assert!(p.slack.received().is_empty(), "nothing could be posted");
    let process = p.ci_dispatch.pid().await;

    aws_sdk_ssm::Client::new(&p.sdk)
        .put_parameter()
        .name(parameter)
        .value(&p.slack.url)
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .send()
        .await
        .unwrap();
    let result = p
        .ci_dispatch
        .invoke(&deploy("s-2", "worker"))
        .await
        .unwrap();
    assert_eq!(result["services"][0]["status"], "started", "{result}");
    let messages = slack_messages(&stack, 1).await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    // The same process read it: the failure was not remembered.
    assert!(process.is_some());
    assert_eq!(p.ci_dispatch.environments().await, 1);
    assert_eq!(p.ci_dispatch.pid().await, process);
    assert!(
        messages[0]["text"].as_str().unwrap().contains("worker"),
        "{}",
        messages[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_execution_fails_its_build_but_never_a_finished_one() {
    let stack = shop(&[]).await;
    let p = &stack.pipeline;
    let store = stack.builds();
    let mut keys = Vec::new();
    for (n, status) in [(1u64, BuildStatus::InProgress), (2, BuildStatus::Success)] {
        let mut build = ledger_build(n, &p.resources.bucket).into_build(ledger::now_rfc3339());
        build.status = status;
        store.create(&build).await.unwrap();
        keys.push(build);
    }
    for build in &keys {
        let input =
            json!({"build": {"pk": build.pk, "sk": build.sk}, "stack_name": build.stack_name});
        p.put_events(&[json!({"source": "aws.states", "detail-type": "Step Functions Execution Status Change",
            "detail": {"executionArn": format!("arn:aws:states:us-east-1:123456789012:execution:dev-deployer-deployment:{}", build.sk),
                       "stateMachineArn": p.resources.state_machine_arn, "status": "FAILED",
                       "input": input.to_string(), "error": "States.Runtime", "cause": "An error occurred while executing the state 'DescribeStack'"}})])
        .await
        .unwrap();
    }
    let failed = stack.wait_terminal(&keys[0].key()).await;
    assert_eq!(failed.status, BuildStatus::Failed);
    let reason = failed.error_msg.unwrap();
    assert!(
        reason.contains("execution FAILED")
            && reason.contains("while executing the state 'DescribeStack'"),
        "{reason}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let untouched = store.get(&keys[1].key()).await.unwrap().unwrap();
    assert_eq!(untouched.status, BuildStatus::Success);
    assert_eq!(untouched.error_msg, None);
}

/// "Step Functions Execution Status Change" as EventBridge sends it when the
/// input was too large to include (`input: null`, `inputDetails.included`
/// false); a hand-started execution looks the same.
fn execution_ended_without_input(
    state_machine_arn: &str,
    name: &str,
    status: &str,
) -> (String, Value) {
    let arn = format!(
        "{}:{name}",
        state_machine_arn.replacen(":stateMachine:", ":execution:", 1)
    );
    let event = json!({"source": "aws.states", "detail-type": "Step Functions Execution Status Change",
        "resources": [arn],
        "detail": {"executionArn": arn, "stateMachineArn": state_machine_arn, "name": name, "status": status,
                   "startDate": 1_800_000_000_000u64, "stopDate": 1_800_000_090_000u64,
                   "input": null, "output": null, "inputDetails": {"included": false}, "outputDetails": null,
                   "error": null, "cause": null}});
    (arn, event)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_execution_event_without_input_still_fails_its_build_and_releases_its_stack_lock() {
    let stack = shop(&[]).await;
    let p = &stack.pipeline;
    let store = stack.builds();
    let dynamodb = aws_sdk_dynamodb::Client::new(&p.sdk);
    let sm = p.resources.state_machine_arn.clone();
    let lock_holder = |stack_name: &str| {
        let dynamodb = dynamodb.clone();
        let table = p.resources.stacks_table.clone();
        let stack_name = stack_name.to_owned();
        async move {
            dynamodb
                .get_item()
                .table_name(table)
                .key("stack_name", AttributeValue::S(stack_name))
                .consistent_read(true)
                .send()
                .await
                .unwrap()
                .item
                .and_then(|item| item.get("holder_sk").and_then(|v| v.as_s().ok()).cloned())
        }
    };

    // One build named by its execution's name, `{repo}-{env}-{sk}`; one whose
    // repo is too long for the 80-character name (found by its stored ARN).
    let long_repo = "payments-reconciliation-service-with-a-rather-long-name";
    let mut cases = Vec::new();
    for (n, repo, status) in [(1u64, "ledger", "TIMED_OUT"), (2, long_repo, "ABORTED")] {
        let mut upload = ledger_build(n, &p.resources.bucket);
        upload.repo = repo.into();
        let mut build = upload.into_build(ledger::now_rfc3339());
        build.status = BuildStatus::InProgress;
        let full_name = format!("{repo}-dev-{}", build.sk);
        let name: String = if full_name.len() > 80 {
            format!("{}-dev-{}", &repo[..80 - 5 - build.sk.len()], build.sk)
        } else {
            full_name
        };
        let (arn, event) = execution_ended_without_input(&sm, &name, status);
        build.execution_arn = Some(arn.clone());
        store.create(&build).await.unwrap();
        dynamodb
            .put_item()
            .table_name(&p.resources.stacks_table)
            .item("stack_name", AttributeValue::S(build.stack_name.clone()))
            .item("holder_sk", AttributeValue::S(build.sk.clone()))
            .item("holder_execution", AttributeValue::S(arn))
            .item(
                "lock_expires_at",
                AttributeValue::S("2099-01-01T00:00:00Z".into()),
            )
            .item("last_started_sk", AttributeValue::S(build.sk.clone()))
            .send()
            .await
            .unwrap();
        cases.push((build, event, status));
    }
    assert!(
        long_repo.len() + "-dev-".len() + cases[1].0.sk.len() > 80,
        "the long repo's execution name is cut"
    );

    for (build, event, status) in &cases {
        assert_eq!(
            lock_holder(&build.stack_name).await.as_deref(),
            Some(build.sk.as_str())
        );
        p.put_events(std::slice::from_ref(event)).await.unwrap();
        let failed = stack.wait_terminal(&build.key()).await;
        assert_eq!(failed.status, BuildStatus::Failed, "{}", build.repo);
        let reason = failed.error_msg.unwrap();
        assert_eq!(reason, format!("deployment execution {status}"));
        local_stack::emulator::wait_until(
            &format!("the lock on {} released", build.stack_name),
            Duration::from_secs(10),
            || async { Ok(lock_holder(&build.stack_name).await.is_none().then_some(())) },
        )
        .await
        .unwrap();
    }
    assert!(
        p.dead_letters.all().is_empty(),
        "{:?}",
        p.dead_letters.all()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_events_are_rejected_without_a_retry_and_bad_config_fails_cold_start_listing_all()
{
    let stack = shop(&[]).await;
    let p = &stack.pipeline;
    let cases = [
        (
            json!({"id": "m-1", "source": "aws.ssm", "detail-type": "Parameter Store Change"}),
            "detail is missing",
        ),
        (
            eventbridge("m-2", "aws.health", "AWS Health Event", json!({})),
            "no route for source",
        ),
        (
            eventbridge(
                "m-3",
                "action.deploy",
                "DEPLOY",
                json!({"service": ["api"]}),
            ),
            "detail.service must be a string",
        ),
        (
            eventbridge(
                "m-4",
                "aws.ecr",
                "ECR Image Action",
                json!({"action-type": "PUSH", "result": "SUCCESS", "repository-name": 7}),
            ),
            "repository-name must be a string",
        ),
        (json!("not an event"), "must be a JSON object"),
    ];
    p.ci_dispatch.invoke(&json!({})).await.ok();
    let pid = p.ci_dispatch.pid().await;
    for (event, expected) in cases {
        let result = p
            .ci_dispatch
            .invoke(&event)
            .await
            .expect("bad input is not a function error");
        assert_eq!(result["status"], "rejected", "{result}");
        assert!(
            result["error"].as_str().unwrap().contains(expected),
            "{result}"
        );
    }
    assert_eq!(p.ci_dispatch.pid().await, pid, "no panic, no restart");
    assert!(p.ecs_proxy.forwarded("UpdateService").is_empty());

    let mut spec = p.function_specs[2].clone();
    spec.env
        .retain(|(k, _)| !matches!(k.as_str(), "PROJECT" | "DISPATCH_TABLE"));
    spec.env
        .push(("SERVICE_PATTERN".into(), "{project}_{cluster}".into()));
    spec.env.push(("DRY_RUN".into(), "perhaps".into()));
    let broken = local_stack::Function::serve(spec, "us-east-1")
        .await
        .unwrap();
    match broken.invoke(&json!({})).await {
        // main returns the configuration error before the runtime starts:
        // the process exits and the error is its last output, as in Lambda.
        Err(InvokeError::Crashed { message }) => {
            for fragment in [
                "PROJECT is required",
                "DISPATCH_TABLE is required",
                "unknown placeholder {cluster}",
                "DRY_RUN must be true or false",
            ] {
                assert!(
                    message.contains(fragment),
                    "{fragment:?} missing from: {message}"
                );
            }
        }
        other => panic!("expected the cold start to fail, got {other:?}"),
    }
}

/// The URL of a ledger record's link labelled `label`.
fn link<'a>(record: &'a Value, label: &str) -> &'a str {
    record["links"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["label"] == label)
        .and_then(|l| l["url"].as_str())
        .unwrap_or_else(|| panic!("no {label} link: {record}"))
}
