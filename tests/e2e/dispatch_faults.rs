//! ci-dispatch under Lambda faults: an invocation that times out or crashes
//! after UpdateService reached ECS is retried by Lambda under the same
//! request id, and the retry must neither lose the redeploy (a claim left
//! behind answering "duplicate") nor make a second one; a true duplicate
//! deploys nothing. Events arrive through the pipeline's EventBridge path,
//! faults are injected by the emulator's fault engine and the Runtime API,
//! and every test first proves its fault fired.

use std::time::Duration;

use deployer_e2e::{api_primary_deployment, ecs_fixture, eventbridge, slack_messages, TestStack};
use local_stack::faults::{Caller, FaultKind, FaultRule};
use local_stack::InvokeError;
use serde_json::{json, Value};

const FUNCTION: &str = "dev-deployer-ci-dispatch";
/// ci-dispatch's timeout in these tests (the template says 60 s).
const TIMEOUT: Duration = Duration::from_secs(4);
/// How long the emulator holds UpdateService's answer: past the timeout.
const HELD: Duration = Duration::from_secs(8);

/// Project `shop` in `dev` with its ECS estate, ci-dispatch timing out after
/// [`TIMEOUT`] and Lambda retrying after half a second.
async fn shop() -> TestStack {
    let stack = TestStack::start_configured("dev", &[("ProjectName", "shop")], |options| {
        options
            .timeouts
            .push(("CiDispatchFunction".into(), TIMEOUT));
        options.async_retry_delay = Duration::from_millis(500);
    })
    .await;
    ecs_fixture(&stack).await;
    stack
}

fn ecr_push(digest: &str) -> Value {
    json!({"source": "aws.ecr", "detail-type": "ECR Image Action",
           "detail": {"result": "SUCCESS", "repository-name": "shop_service_api", "image-digest": digest,
                      "action-type": "PUSH", "image-tag": "v1"}})
}

fn dispatch() -> Caller {
    Caller::function(FUNCTION)
}

/// Waits until ci-dispatch was invoked `n` times (first attempts and retries).
async fn deliveries(stack: &TestStack, n: usize) -> Vec<Value> {
    let log = stack.pipeline.delivered.clone();
    local_stack::emulator::wait_until(
        &format!("{n} deliveries to ci-dispatch"),
        Duration::from_secs(60),
        || {
            let log = log.clone();
            async move {
                let events = log.events(FUNCTION);
                Ok((events.len() >= n).then_some(events))
            }
        },
    )
    .await
    .expect("deliveries")
}

/// The emulator holds the answer to ci-dispatch's first UpdateService
/// for [`HELD`], past its timeout.
async fn hold_first_update_service(stack: &TestStack) {
    stack
        .emulator
        .faults()
        .add(
            FaultRule::new(
                dispatch(),
                "ecs",
                "UpdateService",
                FaultKind::DelayResponse(HELD),
            )
            .times(1),
        )
        .await
        .unwrap();
}

/// Exactly one redeploy of the api service reached ECS, and Slack heard of
/// it exactly once, naming the deployment ECS has.
async fn assert_one_redeploy_one_message(stack: &TestStack) {
    let p = &stack.pipeline;
    slack_messages(stack, 1).await;
    // Whatever else was coming has had time to arrive.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let messages: Vec<Value> = p.slack.received().into_iter().map(|(_, m)| m).collect();
    assert_eq!(messages.len(), 1, "one Slack message: {messages:#?}");
    let faults = stack.emulator.faults();
    assert_eq!(
        faults
            .calls(&dispatch(), "ecs", "UpdateService")
            .await
            .unwrap(),
        1,
        "one UpdateService call reached ECS"
    );
    assert_eq!(p.ecs_proxy.forwarded("UpdateService").len(), 1);
    let deployment = api_primary_deployment(stack).await;
    let message = messages[0].to_string();
    assert!(message.contains("Deploying"), "{message}");
    assert!(
        message.contains(&deployment),
        "the message names ECS's deployment {deployment}: {message}"
    );
    assert!(
        p.dead_letters.all().is_empty(),
        "{:?}",
        p.dead_letters.all()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_whose_first_invocation_times_out_in_update_service_redeploys_once() {
    let stack = shop().await;
    let p = &stack.pipeline;
    hold_first_update_service(&stack).await;
    let faults = stack.emulator.faults();
    p.put_events(&[ecr_push("sha256:timeout")]).await.unwrap();

    // The first attempt and Lambda's retry of it, under one request id.
    let delivered = deliveries(&stack, 2).await;
    assert_eq!(delivered[0], delivered[1]);
    assert_one_redeploy_one_message(&stack).await;
    let injected = faults.injected().await.unwrap();
    assert_eq!(injected.len(), 1, "{injected:?}");
    assert_eq!(
        (
            injected[0].caller.as_str(),
            injected[0].operation.as_str(),
            injected[0].kind.as_str()
        ),
        (FUNCTION, "UpdateService", "delay_response")
    );
    assert_eq!(p.ci_dispatch.crashes(), 0, "not a crash: a timeout");
    assert_eq!(p.delivered.events(FUNCTION).len(), 2, "no third attempt");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_whose_first_invocation_crashes_right_after_update_service_redeploys_once() {
    let stack = shop().await;
    let p = &stack.pipeline;
    // ci-dispatch writes this line the moment UpdateService returns.
    p.ci_dispatch.crash_at_log("deployment started", 1);
    p.put_events(&[ecr_push("sha256:crash")]).await.unwrap();

    let delivered = deliveries(&stack, 2).await;
    assert_eq!(delivered[0], delivered[1]);
    assert_one_redeploy_one_message(&stack).await;
    assert_eq!(p.ci_dispatch.crashes(), 1, "the crash fired");
    assert!(stack.emulator.faults().injected().await.unwrap().is_empty());
    assert_eq!(p.delivered.events(FUNCTION).len(), 2, "no third attempt");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_event_delivered_again_after_it_completed_deploys_nothing() {
    let stack = shop().await;
    let p = &stack.pipeline;
    p.put_events(&[ecr_push("sha256:twice")]).await.unwrap();
    slack_messages(&stack, 1).await;
    let first = deliveries(&stack, 1).await.remove(0);

    // EventBridge delivers at least once: the same event (same id) again,
    // into the queue its rule targets.
    stack
        .emulator
        .json_call(
            "sqs",
            "AmazonSQS.SendMessage",
            json!({"QueueUrl": p.resources.events_queue_url, "MessageBody": first.to_string()}),
        )
        .await
        .unwrap();
    let delivered = deliveries(&stack, 2).await;
    assert_eq!(delivered[1]["id"], first["id"], "a true duplicate");
    assert_one_redeploy_one_message(&stack).await;
    assert_eq!(p.delivered.events(FUNCTION).len(), 2, "not retried");
}

/// Invoked the way Lambda runs an asynchronous invocation and its retries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_arriving_while_a_timed_out_attempt_holds_its_lease_is_retried_not_acknowledged(
) {
    let stack = shop().await;
    let p = &stack.pipeline;
    hold_first_update_service(&stack).await;
    let faults = stack.emulator.faults();
    let event = eventbridge(
        "lease-1",
        "action.dev",
        "DEPLOY",
        json!({"service": "api", "reason": "lease test"}),
    );
    let first = p.ci_dispatch.new_request_id();
    let duplicate = p.ci_dispatch.new_request_id();

    let outcome = p.ci_dispatch.invoke_as(&first, &event).await;
    assert_eq!(outcome, Err(InvokeError::TimedOut { after: TIMEOUT }));
    assert_eq!(faults.injected().await.unwrap().len(), 1);

    // Another delivery of the event while the timed-out attempt's lease
    // runs: not "duplicate" (nothing is done yet), but a retryable failure.
    match p.ci_dispatch.invoke_as(&duplicate, &event).await {
        Err(InvokeError::Function {
            error_type,
            message,
        }) => {
            assert_eq!(error_type, "Retryable");
            assert!(message.contains("being worked on by request"), "{message}");
            assert!(message.contains(&first), "{message}");
        }
        other => panic!("expected a retryable failure, got {other:?}"),
    }

    // Lambda's retry of the first invocation takes its claims over and
    // finds the deployment its UpdateService started.
    let retried = p.ci_dispatch.invoke_as(&first, &event).await.unwrap();
    assert_eq!(retried["status"], "done", "{retried}");
    assert_eq!(retried["services"][0]["status"], "started", "{retried}");
    assert_eq!(retried["services"][0]["recovered"], true, "{retried}");
    assert_eq!(
        retried["services"][0]["deployment_id"].as_str(),
        Some(api_primary_deployment(&stack).await.as_str())
    );

    // The duplicate's own retry now finds the event done.
    let again = p.ci_dispatch.invoke_as(&duplicate, &event).await.unwrap();
    assert_eq!(again["status"], "duplicate", "{again}");
    assert_one_redeploy_one_message(&stack).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_whose_first_invocation_fails_after_announcing_the_deploy_announces_it_once() {
    let stack = shop().await;
    let p = &stack.pipeline;
    // The first claim marked done is the service's, right after the
    // "Deploying" message: held past the timeout (before it reaches the
    // emulator), so the invocation dies after the message went out.
    stack
        .emulator
        .faults()
        .add(
            FaultRule::new(dispatch(), "dynamodb", "PutItem", FaultKind::Delay(HELD))
                .matching(r#"{"S":"done"}"#)
                .times(1),
        )
        .await
        .unwrap();
    p.put_events(&[ecr_push("sha256:announced")]).await.unwrap();

    let delivered = deliveries(&stack, 2).await;
    assert_eq!(delivered[0], delivered[1], "Lambda retried the same event");
    assert_eq!(
        stack.emulator.faults().injected().await.unwrap().len(),
        1,
        "the first invocation's completion was held past its timeout"
    );
    assert_one_redeploy_one_message(&stack).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_takeover_that_times_out_in_turn_leaves_the_attempt_to_the_next_one() {
    let stack = shop().await;
    let p = &stack.pipeline;
    // The first invocation's UpdateService takes effect, its answer is held
    // past the timeout; the retry takes the claims over and is held in turn
    // while it asks ECS. Only the third finds the deployment. (The first
    // DescribeServices is the first invocation's, reading the deployment
    // configuration before UpdateService.)
    hold_first_update_service(&stack).await;
    stack
        .emulator
        .faults()
        .add(
            FaultRule::new(
                dispatch(),
                "ecs",
                "DescribeServices",
                FaultKind::Delay(HELD),
            )
            .after(1)
            .times(1),
        )
        .await
        .unwrap();
    p.put_events(&[ecr_push("sha256:held-twice")])
        .await
        .unwrap();

    let delivered = deliveries(&stack, 3).await;
    assert!(
        delivered.iter().all(|d| *d == delivered[0]),
        "one event, three attempts"
    );
    assert_eq!(stack.emulator.faults().injected().await.unwrap().len(), 2);
    assert_one_redeploy_one_message(&stack).await;
}
