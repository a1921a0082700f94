//! The state machine updates or deletes only stacks it created: a stack named
//! `{env}-{repo}` that someone else made is left alone, and the build fails
//! naming it.

use aws_sdk_cloudformation::types::{Parameter, Tag};

use builddao::BuildStatus;
use deployer_e2e::{broken_template, param, sample_template, TestStack};

const OWNER_TAG: &str = "deployer:managed-by";

/// Creates `name` directly with the emulator's CloudFormation, as someone
/// outside Deployer would, and returns its status once created.
async fn create_outside_deployer(
    stack: &TestStack,
    name: &str,
    template: &str,
    tags: &[(&str, &str)],
) -> String {
    stack
        .cfn()
        .create_stack()
        .stack_name(name)
        .template_body(template)
        .parameters(
            Parameter::builder()
                .parameter_key("Greeting")
                .parameter_value("made by hand")
                .build(),
        )
        .set_tags(Some(
            tags.iter()
                .map(|(k, v)| Tag::builder().key(*k).value(*v).build())
                .collect(),
        ))
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateStack {name}: {e:?}"));
    stack.stack(name).await.expect("stack exists").0
}

/// Starts creating `name` through a CREATE change set made by hand, as an
/// operator would; executes it when `execute`, else leaves the stack in
/// REVIEW_IN_PROGRESS. Returns the stack's status.
async fn change_set_outside_deployer(
    stack: &TestStack,
    name: &str,
    template: &str,
    execute: bool,
) -> String {
    let id = stack
        .change_set_by_hand(
            name,
            aws_sdk_cloudformation::types::ChangeSetType::Create,
            template,
            "made by hand",
        )
        .await;
    if execute {
        stack.execute_by_hand(&id).await;
    }
    stack.stack(name).await.expect("stack exists").0
}

async fn tags_of(stack: &TestStack, name: &str) -> Vec<(String, String)> {
    let out = stack
        .cfn()
        .describe_stacks()
        .stack_name(name)
        .send()
        .await
        .expect("DescribeStacks");
    out.stacks()[0]
        .tags()
        .iter()
        .map(|t| {
            (
                t.key().unwrap_or_default().to_owned(),
                t.value().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

async fn change_sets_of(stack: &TestStack, name: &str) -> usize {
    stack
        .cfn()
        .list_change_sets()
        .stack_name(name)
        .send()
        .await
        .expect("ListChangeSets")
        .summaries()
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stacks_deployer_did_not_create_are_refused_by_name_and_left_untouched() {
    let stack = TestStack::start("dev", &[]).await;
    let sample = sample_template();
    // A working stack; a stack a failed create left in ROLLBACK_COMPLETE and
    // one whose CREATE change set was never executed (REVIEW_IN_PROGRESS),
    // both of which Deployer deletes and recreates when they are its own; and
    // a stack tagged by another install.
    assert_eq!(
        create_outside_deployer(&stack, "dev-foo", &sample, &[]).await,
        "CREATE_COMPLETE"
    );
    assert_eq!(
        change_set_outside_deployer(&stack, "dev-bar", &broken_template(), true).await,
        "ROLLBACK_COMPLETE"
    );
    assert_eq!(
        change_set_outside_deployer(&stack, "dev-qux", &sample, false).await,
        "REVIEW_IN_PROGRESS"
    );
    assert_eq!(
        create_outside_deployer(&stack, "dev-baz", &sample, &[(OWNER_TAG, "stg-deployer")]).await,
        "CREATE_COMPLETE"
    );

    for (repo, version, status_before) in [
        ("foo", "1.aaaa", "CREATE_COMPLETE"),
        ("bar", "1.bbbb", "ROLLBACK_COMPLETE"),
        ("baz", "1.cccc", "CREATE_COMPLETE"),
        ("qux", "1.dddd", "REVIEW_IN_PROGRESS"),
    ] {
        let name = format!("dev-{repo}");
        let change_sets_before = change_sets_of(&stack, &name).await;
        let build = stack.upload_sample(repo, version, "from deployer").await;
        let done = stack.wait_terminal(&build.key()).await;
        assert_eq!(done.status, BuildStatus::Failed, "{name}: {done:?}");
        let reason = done.error_msg.clone().unwrap_or_default();
        assert_eq!(
            reason,
            format!(
                "stack {name} was not created by this Deployer (no {OWNER_TAG}=dev-deployer tag); refusing to update or delete it"
            ),
            "{name}"
        );
        // Untouched: same status, same parameters, no change set made on it.
        let (status, params) = stack.stack(&name).await.expect("stack still exists");
        assert_eq!(status, status_before, "{name}");
        if status_before == "CREATE_COMPLETE" {
            assert_eq!(
                param(&params, "Greeting").as_deref(),
                Some("made by hand"),
                "{name}"
            );
        }
        assert_eq!(
            change_sets_of(&stack, &name).await,
            change_sets_before,
            "{name}"
        );
    }
    assert_eq!(
        tags_of(&stack, "dev-baz").await,
        [(OWNER_TAG.to_owned(), "stg-deployer".to_owned())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stacks_deployer_creates_carry_its_tag_through_updates() {
    let stack = TestStack::start("dev", &[]).await;
    let first = stack.upload_sample("shop", "1.aaaa", "one").await;
    assert_eq!(
        stack.wait_terminal(&first.key()).await.status,
        BuildStatus::Success
    );
    let owner = vec![(OWNER_TAG.to_owned(), "dev-deployer".to_owned())];
    assert_eq!(tags_of(&stack, "dev-shop").await, owner);

    let second = stack.upload_sample("shop", "2.bbbb", "two").await;
    let second = stack.wait_terminal(&second.key()).await;
    assert_eq!(second.status, BuildStatus::Success, "{second:?}");
    let (status, params) = stack.stack("dev-shop").await.unwrap();
    assert_eq!(status, "UPDATE_COMPLETE");
    assert_eq!(param(&params, "Greeting").as_deref(), Some("two"));
    assert_eq!(tags_of(&stack, "dev-shop").await, owner);
}
