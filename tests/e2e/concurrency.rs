//! One deployment per stack at a time; the newest build wins.

use builddao::BuildStatus;
use deployer_e2e::{param, TestStack};

/// The span an execution held the stack lock: its last AcquireLock until
/// ReleaseLock's end (or None if it never released one, i.e. never held it).
async fn lock_span(stack: &TestStack, execution_arn: &str) -> Option<(f64, f64)> {
    let history = stack
        .sfn()
        .get_execution_history()
        .execution_arn(execution_arn)
        .max_results(1000)
        .send()
        .await
        .expect("history");
    let events = history.events();
    let name_of = |e: &aws_sdk_sfn::types::HistoryEvent| {
        e.state_exited_event_details().map(|d| d.name().to_owned())
    };
    let seconds = |e: &aws_sdk_sfn::types::HistoryEvent| e.timestamp().as_secs_f64();
    let acquired = events
        .iter()
        .find(|e| name_of(e).as_deref() == Some("AcquireLock"))
        .map(seconds)?;
    let released = events
        .iter()
        .rev()
        .find(|e| name_of(e).is_some_and(|n| n.starts_with("ReleaseLock")))
        .map(seconds)?;
    Some((acquired, released))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_builds_of_one_stack_never_deploy_at_once_and_the_newer_wins() {
    let stack = TestStack::start("dev", &[]).await;
    let older = stack.upload_sample("shop", "1.aaaa", "older").await;
    // Seconds apart: a later upload time gives a later build key.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let newer = stack.upload_sample("shop", "2.bbbb", "newer").await;

    assert!(newer.sk > older.sk);
    let older = stack.wait_terminal(&older.key()).await;
    let newer = stack.wait_terminal(&newer.key()).await;
    assert_eq!(newer.status, BuildStatus::Success, "{newer:?}");
    assert!(
        matches!(older.status, BuildStatus::Success | BuildStatus::Superseded),
        "the older build deploys first or is superseded, never fails on a busy stack: {older:?}"
    );

    let spans: Vec<(f64, f64)> = {
        let mut spans = Vec::new();
        for build in [&older, &newer] {
            if let Some(span) = lock_span(&stack, build.execution_arn.as_ref().unwrap()).await {
                spans.push(span);
            }
        }
        spans
    };
    if let [a, b] = spans.as_slice() {
        assert!(a.1 <= b.0 || b.1 <= a.0, "lock spans overlap: {a:?} {b:?}");
    }
    let (_, params) = stack.stack("dev-shop").await.unwrap();
    assert_eq!(
        param(&params, "Greeting").as_deref(),
        Some("newer"),
        "stack ends on the newer version"
    );
}
