//! At-least-once delivery: replays create nothing twice; one bad record
//! fails alone; start failures end the build, late retries change nothing.

use builddao::BuildStatus;
use deployer_e2e::TestStack;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_notifications_and_stream_batches_create_one_build_and_one_execution() {
    let stack = TestStack::start("dev", &[]).await;
    let build = stack.upload_sample("shop", "1.aaaa", "hi").await;
    stack.wait_terminal(&build.key()).await;

    // The S3 notification as delivered, twice more (three in all).
    let s3_event = stack
        .pipeline
        .delivered
        .events(stack.pipeline.s3_trigger.name())[0]
        .clone();
    for _ in 0..2 {
        let report = stack.pipeline.s3_trigger.invoke(&s3_event).await.unwrap();
        assert_eq!(
            report["replayed"],
            json!([build.id().to_string()]),
            "{report}"
        );
    }
    let page = stack.builds().list("shop", "dev", 50, None).await.unwrap();
    assert_eq!(page.builds.len(), 1, "one build after three deliveries");

    // The stream batch holding its INSERT, twice more.
    let batch = json!({"Records": [stack.delivered_insert(&build.sk).await]});
    for _ in 0..2 {
        let response = stack.pipeline.trigger_build.invoke(&batch).await.unwrap();
        assert_eq!(response["batchItemFailures"], json!([]), "{response}");
    }
    let executions = stack.executions().await;
    assert_eq!(executions.len(), 1, "one execution after three deliveries");
    let done = stack.builds().get(&build.key()).await.unwrap().unwrap();
    assert_eq!(
        done.status,
        BuildStatus::Success,
        "replays did not disturb the finished build"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_record_fails_alone_and_its_batch_mates_start() {
    let stack = TestStack::start("dev", &[]).await;
    let shop = stack.upload_sample("shop", "1.aaaa", "a").await;
    let cart = stack.upload_sample("cart", "1.bbbb", "b").await;
    stack.wait_terminal(&shop.key()).await;
    stack.wait_terminal(&cart.key()).await;

    let shop_insert = stack.delivered_insert(&shop.sk).await;
    let cart_insert = stack.delivered_insert(&cart.sk).await;
    let mut poison = shop_insert.clone();
    poison["dynamodb"]["SequenceNumber"] = json!("4200000000000000000001");
    poison["dynamodb"]["NewImage"] =
        json!({"pk": {"S": "shop/dev"}, "sk": {"S": "x"}, "status": {"N": "7"}});
    let batch = json!({"Records": [shop_insert, poison, cart_insert]});
    let response = stack.pipeline.trigger_build.invoke(&batch).await.unwrap();
    assert_eq!(
        response["batchItemFailures"],
        json!([{"itemIdentifier": "4200000000000000000001"}]),
        "{response}"
    );
    assert_eq!(
        stack.executions().await.len(),
        2,
        "the good records' executions, once each"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_failure_fails_the_build_and_a_late_retry_never_overwrites_success() {
    let missing = "arn:aws:states:us-east-1:123456789012:stateMachine:no-such-machine";
    let stack = TestStack::start_with(
        "dev",
        &[],
        vec![(
            "TriggerBuildFunction".into(),
            "STATE_MACHINE_ARN".into(),
            missing.into(),
        )],
    )
    .await;
    let build = stack.upload_sample("shop", "1.aaaa", "a").await;
    let failed = stack.wait_terminal(&build.key()).await;
    assert_eq!(failed.status, BuildStatus::Failed);
    let reason = failed.error_msg.clone().unwrap();
    assert!(reason.contains("no-such-machine"), "{reason}");
    assert!(
        reason.contains("could not start deployment execution"),
        "{reason}"
    );

    // A build that already succeeded, then a late redelivery of the INSERT
    // that created it PENDING; the start fails again (the machine is gone).
    let store = stack.builds();
    let mut done = build.clone();
    done.sk = format!("{}x", &done.sk[..26]);
    done.pk = format!("{}/{}", done.repo, done.env);
    done.status = BuildStatus::Success;
    done.error_msg = None;
    store.create(&done).await.unwrap();
    let mut batch = json!({"Records": [stack.delivered_insert(&build.sk).await]});
    let record = &mut batch["Records"][0]["dynamodb"];
    record["NewImage"]["sk"] = json!({"S": done.sk});
    record["Keys"]["sk"] = json!({"S": done.sk});
    record["NewImage"]["status"] = json!({"S": "PENDING"});
    record["NewImage"]
        .as_object_mut()
        .unwrap()
        .remove("error_msg");
    record["SequenceNumber"] = json!("4200000000000000000002");
    let response = stack.pipeline.trigger_build.invoke(&batch).await.unwrap();
    assert_eq!(
        response["batchItemFailures"],
        json!([]),
        "a start failure is handled, not retried: {response}"
    );
    let after = store.get(&done.key()).await.unwrap().unwrap();
    assert_eq!(
        after.status,
        BuildStatus::Success,
        "late retry left SUCCESS alone: {after:?}"
    );
    assert_eq!(after.error_msg, None);
}
