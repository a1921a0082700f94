//! Two builds of one target racing, through the real binaries: the newer
//! deployment (by push order: deployment ids are KSUIDs) ends live whichever
//! finishes its upload first, the older one ends SUPERSEDED when it comes
//! second, and nobody ends FAILED for losing a race.
//!
//! The builds are direct invocations of staging from two branches: they run
//! side by side, where the local stack delivers asynchronous invocations
//! (webhook runs) one at a time. The fault engine forces the order: a
//! `Delay` on one build's PutObject of its about page (the only plain-text
//! body holding that build's marker: sources and built archives travel
//! gzipped) holds that build's upload, so its switch comes after the
//! other's.

use std::time::{Duration, Instant};

use local_stack::faults::{Caller, FaultKind, FaultRule};
use serde_json::Value;

use crate::site_recovery::Recovery;

/// Adds a rule holding the upload whose body holds `marker` for `hold`.
async fn hold_upload(r: &Recovery, name: &str, marker: &str, hold: Duration) {
    r.stack
        .emulator
        .faults()
        .add(
            FaultRule::new(
                Caller::function(r.function_name()),
                "s3",
                "PutObject",
                FaultKind::Delay(hold),
            )
            .named(name)
            .matching(marker)
            .times(1),
        )
        .await
        .unwrap();
}

/// Waits until the rule `name` has fired (the upload is being held).
async fn wait_held(r: &Recovery, name: &str) {
    let started = Instant::now();
    loop {
        let injected = r.stack.emulator.faults().injected().await.unwrap();
        if injected.iter().any(|f| f.rule == name) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{name} never fired: {injected:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn finished_at(record: &Value) -> &str {
    record["finished_at"].as_str().unwrap()
}

/// Two branches off main whose about pages say `race older` and `race
/// newer`; their head commits.
fn race_branches(r: &Recovery) -> (String, String) {
    let mut shas = Vec::new();
    for name in ["race-older", "race-newer"] {
        r.repo.checkout("main").unwrap();
        r.repo.branch(name).unwrap();
        r.repo
            .write(
                "src/about.html",
                &format!("<p>{}</p>\n", name.replace('-', " ")),
            )
            .unwrap();
        shas.push(r.repo.commit(name).unwrap());
    }
    r.repo.checkout("main").unwrap();
    (shas.remove(0), shas.remove(0))
}

/// A direct invocation building `branch` into staging, started now; its
/// answer when it ends. Direct invocations run side by side (each in an
/// execution environment of its own), where the local stack delivers
/// asynchronous ones (webhook runs) one after another.
fn build_staging(r: &Recovery, branch: &str) -> tokio::task::JoinHandle<Value> {
    let lambda = r.pipeline().lambda();
    let function = r.function_name().to_owned();
    let payload = serde_json::json!({
        "repository": r.pipeline().site_resources.repository,
        "branch": branch,
        "environment": "staging",
        "session_id": format!("race-{branch}"),
        "triggered_by": "race-test",
    });
    tokio::spawn(async move {
        let out = lambda
            .invoke()
            .function_name(function)
            .payload(aws_sdk_lambda::primitives::Blob::new(payload.to_string()))
            .send()
            .await
            .expect("invoke answers");
        assert!(out.function_error.is_none(), "{out:?}");
        serde_json::from_slice(&out.payload.unwrap().into_inner()).unwrap()
    })
}

/// The staging deployment `id`, once recorded (polls until it exists).
async fn wait_recorded(r: &Recovery, session: &str) -> String {
    let started = Instant::now();
    loop {
        let out = r
            .dynamodb()
            .query()
            .table_name(&r.pipeline().site_resources.deployments_table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(
                ":pk",
                aws_sdk_dynamodb::types::AttributeValue::S("staging".into()),
            )
            .consistent_read(true)
            .send()
            .await
            .unwrap();
        let found = out.items().iter().find(|item| {
            item.get("branch")
                .and_then(|b| b.as_s().ok())
                .map(String::as_str)
                == Some(session)
        });
        if let Some(item) = found {
            return item["sk"].as_s().unwrap().clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{session} never recorded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Staging's live pointer.
async fn staging_pointer(r: &Recovery) -> Value {
    let out = r
        .pipeline()
        .s3()
        .get_object()
        .bucket(&r.pipeline().site_resources.bucket)
        .key("live/staging.json")
        .send()
        .await
        .unwrap();
    serde_json::from_slice(&out.body.collect().await.unwrap().into_bytes()).unwrap()
}

/// Staging's about page as the site server serves it: (deploy id, text).
async fn staging_about(r: &Recovery) -> (String, String) {
    let page = r
        .pipeline()
        .site
        .get(&local_stack::HostTarget::Staging, "/about/")
        .await
        .unwrap();
    assert_eq!(page.status, 200, "{}", page.text());
    (page.deploy_id.clone().unwrap(), page.text())
}

/// Deploy ids of staging with a manifest.
async fn staging_deploys(r: &Recovery) -> Vec<String> {
    let out = r
        .pipeline()
        .s3()
        .list_objects_v2()
        .bucket(&r.pipeline().site_resources.bucket)
        .prefix("deploys/staging/")
        .send()
        .await
        .unwrap();
    let mut ids: Vec<String> = out
        .contents()
        .iter()
        .filter_map(|o| o.key())
        .filter_map(|k| k.strip_suffix("/.deploy-manifest.json"))
        .filter_map(|k| k.strip_prefix("deploys/staging/"))
        .map(str::to_owned)
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_older_build_that_finishes_last_is_superseded_and_the_newer_commit_stays_live() {
    let r = Recovery::start("race-old-last", |_| {}).await;
    let (older_sha, newer_sha) = race_branches(&r);

    // The older build: its about page upload is held.
    hold_upload(&r, "hold-older", "race older", Duration::from_secs(25)).await;
    let older_run = build_staging(&r, "race-older");
    let older = wait_recorded(&r, "race-older").await;
    wait_held(&r, "hold-older").await;

    // Meanwhile a newer one builds and publishes.
    let newer_run = build_staging(&r, "race-newer");
    let newer_done = newer_run.await.unwrap();
    assert_eq!(newer_done["status"], "PUBLISHED", "{newer_done}");
    let newer = newer_done["deployment_id"].as_str().unwrap().to_owned();
    assert!(
        newer > older,
        "deployment ids follow the order they came in"
    );
    let newer_deploy = newer_done["deploy_id"].as_str().unwrap().to_owned();
    assert_eq!(staging_about(&r).await.0, newer_deploy);

    // The older one's upload lands after that: it does not switch.
    let older_done = older_run.await.unwrap();
    assert_eq!(older_done["status"], "SUPERSEDED", "{older_done}");
    assert_eq!(older_done["superseded_by"], newer.as_str(), "{older_done}");
    assert!(older_done.get("error").is_none(), "{older_done}");
    let older_record = r.record("staging", &older).await;
    let newer_record = r.record("staging", &newer).await;
    assert!(finished_at(&older_record) > finished_at(&newer_record));
    let (live, page) = staging_about(&r).await;
    assert_eq!(live, newer_deploy);
    assert!(page.contains("race newer"), "{page}");
    let pointer = staging_pointer(&r).await;
    assert_eq!(pointer["deploy_id"], newer_deploy.as_str());
    assert_eq!(pointer["newest_deployment"], newer.as_str());
    // The older build's deploy was deleted.
    assert_eq!(
        staging_deploys(&r).await,
        std::slice::from_ref(&newer_deploy)
    );

    // GitHub and Slack say superseded, not failed.
    let (state, description) = r.github_statuses(&older_sha).last().unwrap().clone();
    assert_eq!(state, "inactive", "{description}");
    assert!(description.contains(&newer), "{description}");
    let slack = r.slack_about(&older);
    assert!(
        slack
            .last()
            .unwrap()
            .contains("superseded by a newer deployment"),
        "{slack:?}"
    );
    assert_eq!(r.github_statuses(&newer_sha).last().unwrap().0, "success");
    r.assert_settled("staging", &older, "SUPERSEDED").await;
    r.assert_settled("staging", &newer, "PUBLISHED").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_newer_build_whose_switch_loses_to_an_older_one_switches_again_and_wins() {
    let r = Recovery::start_logged("race-new-last", |_| {}).await;
    race_branches(&r);

    // Both uploads are held; the newer one longer, so the older one
    // switches first and the newer one's switch meets a moved pointer.
    hold_upload(&r, "hold-older", "race older", Duration::from_secs(15)).await;
    hold_upload(&r, "hold-newer", "race newer", Duration::from_secs(30)).await;
    let older_run = build_staging(&r, "race-older");
    wait_held(&r, "hold-older").await;
    let newer_run = build_staging(&r, "race-newer");
    wait_held(&r, "hold-newer").await;

    let older_done = older_run.await.unwrap();
    assert_eq!(older_done["status"], "PUBLISHED", "{older_done}");
    let older_deploy = older_done["deploy_id"].as_str().unwrap().to_owned();
    let newer_done = newer_run.await.unwrap();
    assert_eq!(newer_done["status"], "PUBLISHED", "{newer_done}");
    let newer = newer_done["deployment_id"].as_str().unwrap().to_owned();
    let newer_deploy = newer_done["deploy_id"].as_str().unwrap().to_owned();

    // The newer one switched over what the older one put live.
    let (live, page) = staging_about(&r).await;
    assert_eq!(live, newer_deploy);
    assert!(page.contains("race newer"), "{page}");
    let pointer = staging_pointer(&r).await;
    assert_eq!(pointer["previous"], older_deploy.as_str());
    assert_eq!(pointer["newest_deployment"], newer.as_str());
    let log: String = r
        .logs_of("site-build")
        .into_iter()
        .map(|(_, text)| text)
        .collect();
    assert!(
        log.contains("the live pointer moved under an older deployment's publish; switching again"),
        "the newer publish never met a moved pointer"
    );
    r.assert_settled("staging", &newer, "PUBLISHED").await;
}
