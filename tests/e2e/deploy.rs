use builddao::BuildStatus;
use deployer_e2e::{broken_template, param, sample_template, TestStack};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_becomes_a_deployed_stack_with_merged_parameters() {
    let stack = TestStack::start("dev", &[]).await;
    let prefix = "shop/feature/login/1.abc1234/";
    stack
        .pipeline
        .upload(
            prefix,
            &[
                ("cloudformation.template", sample_template().into_bytes()),
                (
                    "cloudformation-params.dev.json",
                    br#"{"Greeting": "hello dev"}"#.to_vec(),
                ),
                (
                    "cloudformation-params.prd.json",
                    br#"{"Greeting": "hello prd"}"#.to_vec(),
                ),
                (
                    "cloudformation-params.json",
                    br#"{"Greeting": "hello base", "QueueRetentionSeconds": "600"}"#.to_vec(),
                ),
            ],
        )
        .await
        .unwrap();

    let build = stack.build_of("shop", "1.abc1234").await;
    assert_eq!(build.branch, "feature/login");
    assert_eq!(build.build_number, 1);
    assert_eq!(build.commit_hash, "abc1234");
    assert_eq!(build.stack_name, "dev-shop");
    assert_eq!(build.parameters["Greeting"], "hello dev");
    assert_eq!(build.parameters["QueueRetentionSeconds"], "600");

    let inserted = stack.delivered_insert(&build.sk).await;
    assert_eq!(
        inserted["dynamodb"]["NewImage"]["status"]["S"], "PENDING",
        "written PENDING"
    );
    let in_progress = stack.wait_for(&build.key(), BuildStatus::InProgress).await;
    let done = stack.wait_terminal(&build.key()).await;
    assert_eq!(done.status, BuildStatus::Success, "{done:?}");
    let arn = in_progress
        .execution_arn
        .or(done.execution_arn.clone())
        .expect("execution ARN recorded");
    assert!(
        arn.contains(":execution:dev-deployer-deployment:shop-dev-"),
        "{arn}"
    );
    assert!(done.finished_at.is_some());

    let (status, params) = stack.stack("dev-shop").await.expect("stack exists");
    assert_eq!(status, "CREATE_COMPLETE");
    assert_eq!(param(&params, "Greeting").as_deref(), Some("hello dev"));
    assert_eq!(
        param(&params, "QueueRetentionSeconds").as_deref(),
        Some("600")
    );

    // The CLI sees the same build.
    let out = stack
        .deployer(&["builds", "show", "shop", &build.sk, "--json"])
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["status"], "SUCCESS");
    assert!(shown.get("approval_token").is_none());
    // One time format, whoever wrote the time (the state machine's
    // `$$.State.EnteredTime` on the emulator is `…+00:00` in microseconds).
    let mut times = vec![
        &shown["created_at"],
        &shown["updated_at"],
        &shown["finished_at"],
    ];
    times.extend(
        shown["transitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| &c["at"]),
    );
    assert!(times.len() >= 6, "{shown}");
    for at in times {
        let at = at.as_str().unwrap();
        assert!(
            at.len() == 20
                && at.ends_with('Z')
                && time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
                    .is_ok(),
            "{at} is not RFC 3339 UTC to the second"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_version_updates_the_stack_and_identical_reupload_is_a_no_change_success() {
    let stack = TestStack::start("dev", &[]).await;
    let first = stack.upload_sample("shop", "1.aaaa", "one").await;
    assert_eq!(
        stack.wait_terminal(&first.key()).await.status,
        BuildStatus::Success
    );

    let second = stack.upload_sample("shop", "2.bbbb", "two").await;
    let second = stack.wait_terminal(&second.key()).await;
    assert_eq!(second.status, BuildStatus::Success, "{second:?}");
    assert_ne!(second.no_changes, Some(true));
    let (status, params) = stack.stack("dev-shop").await.unwrap();
    assert_eq!(status, "UPDATE_COMPLETE");
    assert_eq!(param(&params, "Greeting").as_deref(), Some("two"));

    // Same template and parameters again, as a new upload (new build).
    let third = stack.upload_sample("shop", "3.cccc", "two").await;
    let third = stack.wait_terminal(&third.key()).await;
    assert_eq!(third.status, BuildStatus::Success, "{third:?}");
    assert_eq!(third.no_changes, Some(true));

    let out = stack.deployer(&["builds", "list", "shop"]).await;
    let listing = String::from_utf8_lossy(&out.stdout);
    let order: Vec<&str> = ["3.cccc", "2.bbbb", "1.aaaa"]
        .into_iter()
        .filter(|v| listing.contains(v))
        .collect();
    assert_eq!(order.len(), 3, "{listing}");
    assert!(
        listing.find("3.cccc") < listing.find("1.aaaa"),
        "newest first: {listing}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_first_deploy_names_the_resource_and_the_next_build_replaces_the_stack() {
    let stack = TestStack::start("dev", &[]).await;
    stack
        .upload(
            "shop",
            "main",
            "1.dead",
            &broken_template(),
            json!({"Greeting": "x"}),
        )
        .await;
    let broken = stack.build_of("shop", "1.dead").await;
    let broken = stack.wait_terminal(&broken.key()).await;
    assert_eq!(broken.status, BuildStatus::Failed);
    let reason = broken.error_msg.clone().unwrap();
    assert!(
        reason.contains("BrokenQueue"),
        "reason names the failing resource: {reason}"
    );
    assert!(reason.contains("AWS::SQS::Queue"), "{reason}");
    assert_eq!(
        stack.stack("dev-shop").await.unwrap().0,
        "ROLLBACK_COMPLETE"
    );

    // `deployer builds watch` exits non-zero and prints the reason.
    let out = stack
        .deployer(&["builds", "watch", "shop", &broken.sk])
        .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("BrokenQueue"));

    let fixed = stack.upload_sample("shop", "2.beef", "fixed").await;
    let fixed = stack.wait_terminal(&fixed.key()).await;
    assert_eq!(fixed.status, BuildStatus::Success, "{fixed:?}");
    let (status, params) = stack.stack("dev-shop").await.unwrap();
    assert_eq!(status, "CREATE_COMPLETE");
    assert_eq!(param(&params, "Greeting").as_deref(), Some("fixed"));
}
