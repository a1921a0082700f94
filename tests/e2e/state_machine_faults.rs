//! The deployment state machine under the conditions AWS makes: throttled
//! and failing service integrations, and a CloudFormation that takes its
//! time, so every wait loop runs and every "timed out after N polls" path
//! is reached on purpose.

use std::collections::HashMap;
use std::time::Duration;

use builddao::{Build, BuildStatus};
use deployer_e2e::{broken_template, sample_template, TestStack};
use local_stack::{Caller, FaultKind, FaultRule};
use serde_json::json;

/// How many times each state was entered in the build's execution.
async fn entered_states(stack: &TestStack, build: &Build) -> HashMap<String, usize> {
    let arn = build
        .execution_arn
        .clone()
        .unwrap_or_else(|| panic!("build {} has no execution", build.sk));
    let mut entered = HashMap::new();
    for event in stack.execution_history(&arn).await {
        if let Some(details) = event.state_entered_event_details() {
            *entered.entry(details.name().to_owned()).or_insert(0) += 1;
        }
    }
    entered
}

fn times(entered: &HashMap<String, usize>, state: &str) -> usize {
    entered.get(state).copied().unwrap_or(0)
}

/// Starts an update of `stack_name` by hand, as an operator would, and
/// returns once CloudFormation reports it in progress.
async fn start_update_by_hand(stack: &TestStack, stack_name: &str, greeting: &str) {
    let id = stack
        .change_set_by_hand(
            stack_name,
            aws_sdk_cloudformation::types::ChangeSetType::Update,
            &sample_template(),
            greeting,
        )
        .await;
    stack.execute_by_hand(&id).await;
    let (status, _) = stack.stack(stack_name).await.expect("stack exists");
    assert_eq!(status, "UPDATE_IN_PROGRESS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttles_and_5xx_in_the_state_machine_never_fail_a_build() {
    let stack = TestStack::start_configured("dev", &[], |options| {
        options.cloudformation_pace = Duration::from_millis(1500);
    })
    .await;
    let faults = stack.emulator.faults();
    let injected = [
        ("cloudformation", "DescribeStacks", FaultKind::Throttle, 3),
        (
            "cloudformation",
            "CreateChangeSet",
            FaultKind::ServerError,
            1,
        ),
        (
            "cloudformation",
            "DescribeChangeSet",
            FaultKind::Throttle,
            2,
        ),
        (
            "cloudformation",
            "ExecuteChangeSet",
            FaultKind::ServerError,
            1,
        ),
        ("dynamodb", "UpdateItem", FaultKind::Throttle, 3),
    ];
    for (service, operation, kind, n) in injected {
        faults
            .add(FaultRule::new(Caller::StateMachine, service, operation, kind).times(n))
            .await
            .unwrap();
    }

    let build = stack.upload_sample("shop", "1.abc1234", "hello").await;
    let done = stack.wait_terminal(&build.key()).await;
    assert_eq!(done.status, BuildStatus::Success, "{done:?}");
    assert_eq!(stack.stack("dev-shop").await.unwrap().0, "CREATE_COMPLETE");

    // Every rule fired as often as it was told to, on the state machine only.
    let fired = faults.injected().await.unwrap();
    for (service, operation, _, n) in injected {
        let count = fired
            .iter()
            .filter(|f| f.service == service && f.operation == operation)
            .count();
        assert_eq!(count, n as usize, "{service} {operation}: {fired:?}");
    }
    assert!(fired.iter().all(|f| f.caller == "ak"), "{fired:?}");

    // The first lookup's throttle went to the second chance, which retried
    // the rest; a create change set that met a 5xx was tried again.
    let entered = entered_states(&stack, &done).await;
    assert_eq!(times(&entered, "DescribeStackAgain"), 1, "{entered:?}");
    assert_eq!(times(&entered, "CreateChangeSetAgain"), 1, "{entered:?}");
    assert_eq!(times(&entered, "TaskError"), 0, "{entered:?}");

    // An update under the same weather: throttled polls while it deploys.
    faults
        .add(
            FaultRule::new(
                Caller::StateMachine,
                "cloudformation",
                "DescribeStacks",
                FaultKind::Throttle,
            )
            .after(1)
            .times(2),
        )
        .await
        .unwrap();
    let update = stack
        .upload_sample("shop", "2.def5678", "hello again")
        .await;
    let done = stack.wait_terminal(&update.key()).await;
    assert_eq!(done.status, BuildStatus::Success, "{done:?}");
    let (status, params) = stack.stack("dev-shop").await.unwrap();
    assert_eq!(status, "UPDATE_COMPLETE");
    assert_eq!(
        deployer_e2e::param(&params, "Greeting").as_deref(),
        Some("hello again")
    );
    assert_eq!(faults.injected().await.unwrap().len(), 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_wait_loop_runs_while_cloudformation_takes_its_time() {
    let stack = TestStack::start_configured("dev", &[], |options| {
        options.cloudformation_pace = Duration::from_secs(2);
    })
    .await;

    // A first deploy waits for its change set, then for the create.
    let first = stack.upload_sample("shop", "1.abc1234", "one").await;
    let first = stack.wait_terminal(&first.key()).await;
    assert_eq!(first.status, BuildStatus::Success, "{first:?}");
    let entered = entered_states(&stack, &first).await;
    assert!(times(&entered, "WaitForChangeSet") >= 1, "{entered:?}");
    assert!(times(&entered, "WaitForDeploy") >= 1, "{entered:?}");

    // A stack busy with an update someone started by hand: the build waits
    // for it instead of colliding, then deploys. The hand update is held
    // for 15 s (a pace is fixed when an operation starts), so the build
    // finds the stack busy however slowly it gets there on a loaded machine.
    let faults = stack.emulator.faults();
    faults
        .set_cloudformation_paces(Duration::from_secs(2), Duration::from_secs(15))
        .await
        .unwrap();
    start_update_by_hand(&stack, "dev-shop", "by hand").await;
    faults
        .set_cloudformation_pace(Duration::from_secs(2))
        .await
        .unwrap();
    let second = stack.upload_sample("shop", "2.def5678", "two").await;
    let second = stack.wait_terminal(&second.key()).await;
    assert_eq!(second.status, BuildStatus::Success, "{second:?}");
    let entered = entered_states(&stack, &second).await;
    assert!(times(&entered, "WaitForStack") >= 1, "{entered:?}");
    let (status, params) = stack.stack("dev-shop").await.unwrap();
    assert_eq!(status, "UPDATE_COMPLETE");
    assert_eq!(
        deployer_e2e::param(&params, "Greeting").as_deref(),
        Some("two")
    );

    // A failed first create leaves ROLLBACK_COMPLETE; the next build waits
    // for its delete before creating the stack again.
    stack
        .upload(
            "cart",
            "main",
            "1.abc1234",
            &broken_template(),
            json!({"Greeting": "x"}),
        )
        .await;
    let broken = stack.build_of("cart", "1.abc1234").await;
    let broken = stack.wait_terminal(&broken.key()).await;
    assert_eq!(broken.status, BuildStatus::Failed, "{broken:?}");
    assert_eq!(
        stack.stack("dev-cart").await.unwrap().0,
        "ROLLBACK_COMPLETE"
    );
    let fixed = stack.upload_sample("cart", "2.def5678", "fixed").await;
    let fixed = stack.wait_terminal(&fixed.key()).await;
    assert_eq!(fixed.status, BuildStatus::Success, "{fixed:?}");
    let entered = entered_states(&stack, &fixed).await;
    assert!(times(&entered, "WaitForDelete") >= 1, "{entered:?}");
    assert_eq!(stack.stack("dev-cart").await.unwrap().0, "CREATE_COMPLETE");
}

async fn failed_with(stack: &TestStack, build: Build) -> String {
    let done = stack.wait_terminal(&build.key()).await;
    assert_eq!(done.status, BuildStatus::Failed, "{done:?}");
    done.error_msg.unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_wait_loop_gives_up_after_its_polls() {
    let stack = TestStack::start_configured("dev", &[("PollMaxAttempts", "2")], |_| {}).await;
    let faults = stack.emulator.faults();

    // A change set that stays pending.
    faults
        .set_cloudformation_paces(Duration::from_secs(60), Duration::ZERO)
        .await
        .unwrap();
    let build = stack.upload_sample("shop", "1.abc1234", "x").await;
    let message = failed_with(&stack, build).await;
    assert!(
        message.starts_with("timed out after 2 polls waiting for change set deployer-"),
        "{message}"
    );
    assert!(message.contains("(status CREATE_"), "{message}");

    // A create that stays in progress.
    faults
        .set_cloudformation_paces(Duration::ZERO, Duration::from_secs(60))
        .await
        .unwrap();
    let build = stack.upload_sample("cart", "1.abc1234", "x").await;
    let message = failed_with(&stack, build).await;
    assert_eq!(
        message,
        "timed out after 2 polls waiting for stack dev-cart (last status CREATE_IN_PROGRESS)"
    );

    // The next build of that stack finds it still busy.
    let build = stack.upload_sample("cart", "2.def5678", "x").await;
    let message = failed_with(&stack, build).await;
    assert_eq!(
        message,
        "timed out after 2 polls waiting for stack dev-cart in CREATE_IN_PROGRESS"
    );

    // A ROLLBACK_COMPLETE stack whose delete takes longer than the polls.
    faults
        .set_cloudformation_paces(Duration::ZERO, Duration::ZERO)
        .await
        .unwrap();
    stack
        .upload(
            "bin",
            "main",
            "1.abc1234",
            &broken_template(),
            json!({"Greeting": "x"}),
        )
        .await;
    let broken = stack.build_of("bin", "1.abc1234").await;
    failed_with(&stack, broken).await;
    faults
        .set_cloudformation_paces(Duration::ZERO, Duration::from_secs(60))
        .await
        .unwrap();
    let build = stack.upload_sample("bin", "2.def5678", "x").await;
    let message = failed_with(&stack, build).await;
    assert_eq!(
        message,
        "timed out after 2 polls waiting for stack dev-bin to be deleted"
    );
}
