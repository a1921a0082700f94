use std::time::Duration;

use builddao::{Build, BuildStatus};
use deployer_e2e::TestStack;

/// Waits until the build awaits approval with its callback token stored.
async fn awaiting(stack: &TestStack, build: &Build) -> Build {
    let builds = stack.builds();
    let key = build.key();
    local_stack::emulator::wait_until("approval token", Duration::from_secs(60), || {
        let (builds, key) = (builds.clone(), key.clone());
        async move {
            let b = builds.get(&key).await?.expect("build");
            assert!(
                !b.status.is_terminal(),
                "build ended before approval: {b:?}"
            );
            Ok(
                (b.status == BuildStatus::AwaitingApproval && b.approval_token.is_some())
                    .then_some(b),
            )
        }
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_waits_for_approval_then_deploys_or_fails_when_rejected() {
    let stack = TestStack::start("prd", &[("ApprovalTimeoutSeconds", "300")]).await;
    let shop = stack.upload_sample("shop", "1.aaaa", "ship it").await;
    let cart = stack.upload_sample("cart", "1.bbbb", "not yet").await;

    let shop = awaiting(&stack, &shop).await;
    let summary = shop.change_summary.clone().unwrap_or_default();
    assert!(
        summary.contains("GreetingParameter"),
        "change summary lists the changes: {summary}"
    );
    assert!(
        stack
            .stack("prd-shop")
            .await
            .is_none_or(|(s, _)| s != "CREATE_COMPLETE"),
        "nothing deployed before approval"
    );

    let out = stack.deployer(&["approve", "shop", "--by", "alice"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shop = stack.wait_terminal(&shop.key()).await;
    assert_eq!(shop.status, BuildStatus::Success, "{shop:?}");
    assert!(shop.approval_token.is_none());
    assert_eq!(stack.stack("prd-shop").await.unwrap().0, "CREATE_COMPLETE");

    let cart = awaiting(&stack, &cart).await;
    // Watching a build that does not end in time is exit 3.
    let out = stack
        .deployer(&["builds", "watch", "cart", &cart.sk, "--timeout", "0"])
        .await;
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("still AWAITING_APPROVAL"));
    let out = stack
        .deployer(&["reject", "cart", &cart.sk, "--reason", "freeze week"])
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cart = stack.wait_terminal(&cart.key()).await;
    assert_eq!(cart.status, BuildStatus::Failed);
    let reason = cart.error_msg.unwrap();
    assert!(reason.starts_with("rejected: freeze week"), "{reason}");

    // Approving a finished build is refused with a clear message (exit 1:
    // a refusal), and so is approving when nothing awaits approval.
    let out = stack.deployer(&["approve", "cart", &cart.sk]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is FAILED, not AWAITING_APPROVAL"));
    let out = stack.deployer(&["approve", "cart"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("no build of cart in prd is awaiting approval"));
    // A usage error is exit 2.
    let out = stack.deployer(&["approve"]).await;
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_approval_times_out_as_failed() {
    let stack = TestStack::start("prd", &[("ApprovalTimeoutSeconds", "3")]).await;
    let build = stack.upload_sample("shop", "1.aaaa", "hi").await;
    let done = stack.wait_terminal(&build.key()).await;
    assert_eq!(done.status, BuildStatus::Failed);
    assert!(
        done.error_msg
            .as_deref()
            .unwrap_or_default()
            .contains("approval timed out"),
        "{done:?}"
    );
    assert!(done.approval_token.is_none());
}
