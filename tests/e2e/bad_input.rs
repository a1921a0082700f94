//! Bad uploads are rejected with a message naming the key and the rule;
//! nothing is written and the function keeps running.

use deployer_e2e::{s3_put_event, sample_template, TestStack};
use serde_json::{json, Value};

async fn put(stack: &TestStack, key: &str, body: impl Into<Vec<u8>>) {
    stack
        .pipeline
        .s3()
        .put_object()
        .bucket(&stack.pipeline.resources.bucket)
        .key(key)
        .body(body.into().into())
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_uploads_get_clear_errors_and_no_build() {
    let stack = TestStack::start("dev", &[]).await;
    let template = sample_template();
    // Objects the corpus needs (uploaded under names the notification filter
    // ignores or before the trigger, then invoked directly).
    put(
        &stack,
        "shop/main/2.abcd/cloudformation-params.json",
        r#"{"Greeting": "x"}"#,
    )
    .await;
    put(
        &stack,
        "shop/main/3.abcd/cloudformation.template",
        template.clone(),
    )
    .await;
    put(
        &stack,
        "shop/main/4.abcd/cloudformation.template",
        template.clone(),
    )
    .await;
    put(
        &stack,
        "shop/main/5.abcd/cloudformation.template",
        template.clone(),
    )
    .await;
    put(
        &stack,
        "shop/main/6.abcd/cloudformation.template",
        template.clone(),
    )
    .await;
    put(
        &stack,
        "shop/main/6.abcd/cloudformation-params.prod.json",
        r#"{"Greeting": "typo"}"#,
    )
    .await;
    put(
        &stack,
        "shop/main/6.abcd/cloudformation-params.json",
        r#"{"Greeting": "x"}"#,
    )
    .await;
    let huge = json!({"Greeting": "x".repeat(70 * 1024)}).to_string();
    put(&stack, "shop/main/5.abcd/cloudformation-params.json", huge).await;
    put(
        &stack,
        "shop/main/4.abcd/cloudformation-params.json",
        r#"{"Greeting": 42}"#,
    )
    .await;
    put(
        &stack,
        "shop/main/3.abcd/cloudformation-params.json",
        r#"["Greeting"]"#,
    )
    .await;

    let corpus: &[(&str, &[&str])] = &[
        ("shop/main/cloudformation-params.json", &["at least 4"]),
        ("shop/../1.abcd/cloudformation-params.json", &["'..'"]),
        (
            "shop/main/42/cloudformation-params.json",
            &["{build_number}.{commit_hash}"],
        ),
        (
            "shop/main/2.abcd/cloudformation-params.json",
            &[
                "shop/main/2.abcd/cloudformation.template",
                "template is missing",
            ],
        ),
        (
            "shop/main/3.abcd/cloudformation-params.json",
            &["JSON object of string values", "an array"],
        ),
        (
            "shop/main/4.abcd/cloudformation-params.json",
            &["JSON object of string values", "\"Greeting\" is a number"],
        ),
        (
            "shop/main/5.abcd/cloudformation-params.json",
            &["limit is 65536 bytes"],
        ),
        (
            "shop/ma%FFin/1.abcd/cloudformation-params.json",
            &["not valid URL encoding of UTF-8"],
        ),
        (
            "shop/main/6.abcd/cloudformation-params.json",
            &[
                "cloudformation-params.prod.json",
                "unknown environment \"prod\"",
            ],
        ),
    ];
    let pid = {
        // Warm the function so the pid is known.
        stack
            .pipeline
            .s3_trigger
            .invoke(&json!({"Records": []}))
            .await
            .unwrap();
        stack.pipeline.s3_trigger.pid().await
    };
    for (key, expected) in corpus {
        let report: Value = stack
            .pipeline
            .s3_trigger
            .invoke(&s3_put_event(&stack.pipeline.resources.bucket, key))
            .await
            .unwrap_or_else(|e| panic!("{key}: bad input must not be a function error: {e}"));
        let rejected = report["rejected"].as_array().cloned().unwrap_or_default();
        assert_eq!(rejected.len(), 1, "{key}: {report}");
        let error = rejected[0]["error"].as_str().unwrap();
        for fragment in *expected {
            assert!(
                error.contains(fragment),
                "{key}: {error:?} should mention {fragment:?}"
            );
        }
        assert_eq!(report["created"], json!([]), "{key}");
    }
    assert_eq!(
        stack.pipeline.s3_trigger.pid().await,
        pid,
        "no crash, no restart"
    );

    // A malformed record in a batch does not stop the good one next to it.
    put(&stack, "shop/main/7.abcd/cloudformation.template", template).await;
    put(
        &stack,
        "shop/main/7.abcd/cloudformation-params.json",
        r#"{"Greeting": "ok"}"#,
    )
    .await;
    let mut event = s3_put_event(
        &stack.pipeline.resources.bucket,
        "shop/main/7.abcd/cloudformation-params.json",
    );
    let bad = json!({"eventName": "ObjectCreated:Put", "s3": "nonsense"});
    event["Records"].as_array_mut().unwrap().insert(0, bad);
    let report = stack.pipeline.s3_trigger.invoke(&event).await.unwrap();
    assert_eq!(
        report["created"].as_array().map(Vec::len),
        Some(1),
        "{report}"
    );
    assert!(report["rejected"][0]["error"]
        .as_str()
        .unwrap()
        .contains("not an S3 event record"));

    let page = stack.builds().list("shop", "dev", 50, None).await.unwrap();
    let versions: Vec<_> = page.builds.iter().map(|b| b.version.as_str()).collect();
    assert!(
        !versions
            .iter()
            .any(|v| ["2.abcd", "3.abcd", "4.abcd", "5.abcd", "6.abcd"].contains(v)),
        "{versions:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_that_would_deploy_the_install_own_stack_is_refused_and_starts_nothing() {
    let stack = TestStack::start("dev", &[]).await;
    let bucket = stack.pipeline.resources.bucket.clone();
    // Through the real path: S3 notifies s3-trigger of the upload.
    let prefix = stack
        .upload(
            "deployer",
            "main",
            "1.abcd",
            &sample_template(),
            json!({"Greeting": "x"}),
        )
        .await;
    let key = format!("{prefix}cloudformation-params.json");
    // As S3 encodes it in the notification.
    let event_key = key.replace('/', "%2F");
    local_stack::emulator::wait_until(
        "s3-trigger to receive the upload",
        std::time::Duration::from_secs(30),
        || async {
            Ok(stack
                .pipeline
                .delivered
                .events(stack.pipeline.s3_trigger.name())
                .iter()
                .any(|e| e["Records"][0]["s3"]["object"]["key"] == event_key.as_str())
                .then_some(()))
        },
    )
    .await
    .unwrap();
    // The same notification again, to read the function's report.
    let report = stack
        .pipeline
        .s3_trigger
        .invoke(&s3_put_event(&bucket, &event_key))
        .await
        .expect("a refused upload is not a function error");
    assert_eq!(report["created"], json!([]), "{report}");
    assert_eq!(
        report["rejected"],
        json!([{
            "key": event_key,
            "error": format!(
                "key {key:?}: repo \"deployer\" would deploy stack \"dev-deployer\", the stack of this Deployer install itself; uploads for it are refused (use another repo name)"
            ),
        }])
    );

    // Nothing started: no build record, no execution, no stack.
    let page = stack
        .builds()
        .list("deployer", "dev", 50, None)
        .await
        .unwrap();
    assert!(page.builds.is_empty(), "{:?}", page.builds);
    assert!(stack.executions().await.is_empty());
    assert!(stack.stack("dev-deployer").await.is_none());

    // A repo whose name only starts like it is an ordinary build.
    let other = stack.upload_sample("deployer-docs", "1.abcd", "x").await;
    assert_eq!(other.stack_name, "dev-deployer-docs");
}
