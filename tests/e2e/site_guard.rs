//! site-build treats what it is sent and what a build writes as hostile:
//! each test forces one attack through the real binary and checks the
//! refusal, its message, and that production did not change.

use std::time::Duration;

use local_stack::faults::{Caller, FaultKind, FaultRule};
use serde_json::{json, Value};

use super::site_recovery::Recovery;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_build_that_writes_symlinks_fails_naming_them_and_production_stays() {
    let r = Recovery::start("guard-links", |_| {}).await;
    let first = r.publish_first().await;
    let build = std::fs::read_to_string(r.repo.dir.join("build.mjs")).unwrap();
    r.repo
        .write(
            "build.mjs",
            &format!(
                "{build}\nimport {{ symlink }} from \"node:fs/promises\";\n\
                 await symlink(\"/proc/self/environ\", join(dist, \"x\"));\n\
                 await symlink(\"../../etc/passwd\", join(dist, \"y\"));\n"
            ),
        )
        .unwrap();
    let sha = r.repo.commit("a build that links out").unwrap();

    let (target, id) = r.push("d-links", &sha).await;
    let (done, _) = r.wait_end(&target, &id, Duration::from_secs(120)).await;
    assert_eq!(done["status"], "FAILED", "{done}");
    let error = done["error"].as_str().unwrap();
    assert!(
        error.contains(
            "the publisher follows no links: \
             x is a symlink to /proc/self/environ (outside the output directory); \
             y is a symlink to ../../etc/passwd (outside the output directory)"
        ),
        "{error}"
    );
    assert_eq!(r.live_deploy().await, first);
    assert_eq!(r.complete_deploys().await, std::slice::from_ref(&first));
    let (state, description) = r.github_statuses(&sha).last().unwrap().clone();
    assert_eq!(state, "failure");
    assert!(description.contains("x is a symlink"), "{description}");
    r.assert_settled(&target, &id, "FAILED").await;
}

/// Sends a signed push of `main` at `sha` under `delivery`: the status and
/// the answer.
async fn send_push(r: &Recovery, delivery: &str, sha: &str) -> (u16, Value) {
    let pipeline = r.pipeline();
    let push = deployer_e2e::github_push(&pipeline.site_resources.repository, "main", sha);
    let (status, answer) = pipeline
        .github_webhook("push", delivery, &push)
        .await
        .expect("function URL answers");
    (status, serde_json::from_str(&answer).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_push_replayed_under_a_new_delivery_id_builds_nothing() {
    let r = Recovery::start("guard-replay", |_| {}).await;
    let old = r.repo.head().unwrap();
    let first = r.publish_first().await;
    let newer = r.change("newer content");
    let (target, id) = r.push("d-newer", &newer).await;
    let (done, _) = r.wait_end(&target, &id, Duration::from_secs(120)).await;
    assert_eq!(done["status"], "PUBLISHED", "{done}");
    let live = r.live_deploy().await;
    assert_ne!(live, first);

    // The first push's signed body, captured and sent again under fresh
    // delivery ids: answered like a redelivery, nothing queued.
    for delivery in ["d-replay-1", "7f3a9c2e-0000-4000-8000-000000000001"] {
        let (status, answer) = send_push(&r, delivery, &old).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["duplicates"], 1, "{answer}");
        assert_eq!(answer["deployments"], serde_json::json!([]), "{answer}");
    }
    r.pipeline()
        .lambda_api
        .wait_idle(Duration::from_secs(30))
        .await
        .unwrap();
    let runs = r
        .pipeline()
        .lambda_api
        .invocations_of(r.function_name())
        .into_iter()
        .filter(|i| i.payload.get("run").is_some())
        .count();
    assert_eq!(runs, 2, "one run per real push");
    assert_eq!(r.live_deploy().await, live);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_push_whose_commit_is_no_longer_the_head_fails_and_production_stays() {
    let r = Recovery::start("guard-head", |_| {}).await;
    let first = r.publish_first().await;
    let pushed = r.change("pushed");
    let head = r.change("pushed again before the first build ran");

    let (target, id) = r.push("d-stale", &pushed).await;
    let (done, _) = r.wait_end(&target, &id, Duration::from_secs(120)).await;
    assert_eq!(done["status"], "FAILED", "{done}");
    let error = done["error"].as_str().unwrap();
    assert!(
        error.starts_with(&format!(
            "commit {pushed} is no longer the head of main (now {head})"
        )),
        "{error}"
    );
    assert_eq!(r.live_deploy().await, first);
    assert_eq!(r.complete_deploys().await, std::slice::from_ref(&first));
    let (state, description) = r.github_statuses(&pushed).last().unwrap().clone();
    assert_eq!(state, "failure");
    assert!(description.contains("no longer the head"), "{description}");
    r.assert_settled(&target, &id, "FAILED").await;

    // The head itself deploys.
    let (target, id) = r.push("d-head", &head).await;
    let (done, _) = r.wait_end(&target, &id, Duration::from_secs(120)).await;
    assert_eq!(done["status"], "PUBLISHED", "{done}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_function_url_failure_answers_generically_and_logs_the_reason_under_the_request_id() {
    let r = Recovery::start_logged("guard-errors", |_| {}).await;
    r.stack
        .emulator
        .faults()
        .add(FaultRule::new(
            Caller::function(r.function_name()),
            "dynamodb",
            "TransactWriteItems",
            FaultKind::ServerError,
        ))
        .await
        .unwrap();

    let sha = r.repo.head().unwrap();
    let (status, answer) = send_push(&r, "d-unlucky", &sha).await;
    assert_eq!(status, 503, "{answer}");
    let request_id = answer["request_id"].as_str().unwrap().to_owned();
    assert!(!request_id.is_empty() && request_id != "-", "{answer}");
    assert_eq!(
        answer,
        json!({"error": "Service Unavailable", "request_id": request_id})
    );

    let log: String = r
        .logs_of("site-build")
        .into_iter()
        .map(|(_, text)| text)
        .collect();
    let line = log
        .lines()
        .find(|line| line.contains("request failed") && line.contains(&request_id))
        .unwrap_or_else(|| panic!("no log line names {request_id}:\n{log}"));
    assert!(
        line.contains("DynamoDB TransactWriteItems on table"),
        "{line}"
    );
}
