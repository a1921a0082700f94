//! The emulator enforces IAM: each function runs with a session of its own
//! template role, and an action its role does not allow is denied, as on AWS
//! (docs/local-stack.md, "IAM enforcement").

use aws_sdk_dynamodb::types::AttributeValue;
use builddao::BuildStatus;
use deployer_e2e::TestStack;

/// s3-trigger's role allows `dynamodb:GetItem`/`PutItem` on the builds
/// table, `s3:GetObject` on artifacts, nothing on CloudFormation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_role_may_call_what_its_template_role_allows_and_nothing_else() {
    let stack = TestStack::start("dev", &[]).await;
    let resources = &stack.pipeline.resources;
    let sdk = stack
        .pipeline
        .function_sdk_config("S3TriggerFunction")
        .await
        .expect("s3-trigger has a role");
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);

    // Allowed: what s3-trigger does.
    dynamodb
        .get_item()
        .table_name(&resources.builds_table)
        .key("pk", AttributeValue::S("app/dev".into()))
        .key("sk", AttributeValue::S("none".into()))
        .send()
        .await
        .expect("s3-trigger may read a build record");

    // Denied: an action of an allowed service that the role lacks.
    let denied = dynamodb
        .delete_table()
        .table_name(&resources.builds_table)
        .send()
        .await
        .expect_err("s3-trigger may not delete the builds table");
    assert_eq!(
        denied.as_service_error().and_then(|e| e.meta().code()),
        Some("AccessDeniedException"),
        "{denied:?}"
    );

    // Denied: a service the role names nowhere.
    let denied = aws_sdk_cloudformation::Client::new(&sdk)
        .delete_stack()
        .stack_name(format!("{}-anything", resources.env))
        .send()
        .await
        .expect_err("s3-trigger may not delete stacks");
    assert_eq!(
        denied.as_service_error().and_then(|e| e.meta().code()),
        Some("AccessDenied"),
        "{denied:?}"
    );

    // Denied: S3, where the emulator also checks the resource: s3-trigger
    // reads artifacts and never writes them.
    let denied = aws_sdk_s3::Client::new(&sdk)
        .put_object()
        .bucket(&resources.bucket)
        .key("app/main/1.abc/cloudformation-params.json")
        .body(b"{}".to_vec().into())
        .send()
        .await
        .expect_err("s3-trigger may not write artifacts");
    assert_eq!(
        denied.as_service_error().and_then(|e| e.meta().code()),
        Some("AccessDenied"),
        "{denied:?}"
    );

    // The harness's own identity is unrestricted: the table is still there.
    aws_sdk_dynamodb::Client::new(&stack.pipeline.sdk)
        .describe_table()
        .table_name(&resources.builds_table)
        .send()
        .await
        .expect("the builds table survived the denied delete");
}

/// A deploy runs end to end with every function and the state machine
/// acting through their own roles: IAM records each role as used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_runs_through_the_functions_and_state_machine_roles() {
    let stack = TestStack::start("dev", &[]).await;
    let build = stack.upload_sample("app", "1.aaa1111", "hello").await;
    let done = stack.wait_terminal(&build.key()).await;
    assert_eq!(done.status, BuildStatus::Success, "{done:?}");

    for role in ["S3TriggerRole", "TriggerBuildRole", "StateMachineRole"] {
        let name = format!("dev-deployer-{role}");
        let answer = stack
            .emulator
            .query_call(
                "iam",
                &[
                    ("Action", "GetRole"),
                    ("RoleName", &name),
                    ("Version", "2010-05-08"),
                ],
            )
            .await
            .expect("the role exists in the emulator's IAM");
        assert!(
            answer.contains("<LastUsedDate>"),
            "{role} was never used: {answer}"
        );
    }
}
