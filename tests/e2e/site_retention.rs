//! Retention and rollback through the real binaries: site-build prunes
//! after each publish (the template's `SiteKeepDeploys`, read as
//! `SITE_KEEP_DEPLOYS`), `deployer site list` shows what rollback reaches,
//! and `deployer site rollback --to` reaches each kept deploy and refuses a
//! pruned one.

use std::collections::BTreeSet;
use std::time::Duration;

use local_stack::HostTarget;
use serde_json::Value;

use crate::site_recovery::Recovery;

const KEEP: usize = 2;

/// Every deploy id under `deploys/production/`, complete or not.
async fn deploy_prefixes(r: &Recovery) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    let mut pages = r
        .pipeline()
        .s3()
        .list_objects_v2()
        .bucket(&r.pipeline().site_resources.bucket)
        .prefix("deploys/production/")
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        for object in page.unwrap().contents() {
            let key = object.key().unwrap();
            let id = key["deploys/production/".len()..]
                .split('/')
                .next()
                .unwrap();
            ids.insert(id.to_owned());
        }
    }
    ids
}

/// The about page the site server serves for production now.
async fn about(r: &Recovery) -> String {
    let page = r
        .pipeline()
        .site
        .get(&HostTarget::Production, "/about/")
        .await
        .unwrap();
    assert_eq!(page.status, 200, "{}", page.text());
    page.text()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prune_keeps_what_the_policy_says_and_rollback_reaches_each_kept_deploy() {
    let r = Recovery::start("ret-keep", |options| {
        options
            .parameters
            .push(("SiteKeepDeploys".into(), KEEP.to_string()));
    })
    .await;

    // N + 2 publishes, each a new version of the about page.
    let mut deploys = Vec::new();
    for n in 0..KEEP + 2 {
        let sha = r.change(&format!("Version {n}"));
        let (target, id) = r.push(&format!("d-{n}"), &sha).await;
        let (done, _) = r.wait_end(&target, &id, Duration::from_secs(120)).await;
        assert_eq!(done["status"], "PUBLISHED", "{done}");
        deploys.push(done["deploy_id"].as_str().unwrap().to_owned());
    }
    // The prune runs after the record is written: wait for the run to end.
    r.pipeline()
        .lambda_api
        .wait_idle(Duration::from_secs(60))
        .await
        .unwrap();

    // Kept: the live deploy and the KEEP newest others; the oldest is gone,
    // every object of it.
    let kept: BTreeSet<String> = deploys[1..].iter().cloned().collect();
    assert_eq!(deploy_prefixes(&r).await, kept);
    let complete: BTreeSet<String> = r.complete_deploys().await.into_iter().collect();
    assert_eq!(complete, kept);
    assert_eq!(r.live_deploy().await, deploys[3]);

    // `deployer site list` says which deploy rollback reaches, and how.
    let out = r
        .stack
        .deployer(&["site", "list", "production", "--json"])
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rollback_of = |deploy: &str| -> String {
        listed["deployments"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["deploy_id"] == deploy)
            .map(|d| d["rollback"].as_str().unwrap().to_owned())
            .unwrap_or_else(|| panic!("{deploy} is not listed: {listed}"))
    };
    assert_eq!(rollback_of(&deploys[3]), "live");
    assert_eq!(rollback_of(&deploys[2]), "previous");
    assert_eq!(rollback_of(&deploys[1]), "kept");
    assert_eq!(rollback_of(&deploys[0]), "pruned");
    assert_eq!(listed["live"], deploys[3].as_str());
    assert_eq!(
        listed["reachable"],
        serde_json::json!([deploys[1].as_str(), deploys[2].as_str()])
    );
    // The table shows the same.
    let out = r.stack.deployer(&["site", "list", "production"]).await;
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    for (deploy, word) in deploys.iter().zip(["pruned", "kept", "previous", "live"]) {
        let line = table
            .lines()
            .find(|l| l.contains(deploy.as_str()))
            .unwrap_or_else(|| panic!("{deploy} not in\n{table}"));
        assert_eq!(line.split_whitespace().nth(5), Some(word), "{line}");
    }

    // Rollback reaches every kept deploy; nothing is uploaded.
    let objects = deploy_prefixes(&r).await;
    for n in [1, 2, 3] {
        let deploy = &deploys[n];
        let out = r
            .stack
            .deployer(&["site", "rollback", "production", "--to", deploy])
            .await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(r.live_deploy().await, *deploy);
        assert!(about(&r).await.contains(&format!("Version {n}")));
    }
    assert_eq!(deploy_prefixes(&r).await, objects);
    // A plain rollback undoes the last one (back to the newest).
    let out = r.stack.deployer(&["site", "rollback", "production"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(r.live_deploy().await, deploys[2]);

    // The pruned deploy is refused, saying why and what can be reached.
    let out = r
        .stack
        .deployer(&["site", "rollback", "production", "--to", &deploys[0]])
        .await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "cannot roll production back to {}: it is not a kept deploy of production (pruned, or never published)",
            deploys[0]
        )),
        "{stderr}"
    );
    for deploy in [&deploys[1], &deploys[3]] {
        assert!(stderr.contains(deploy.as_str()), "{stderr}");
    }
    assert_eq!(r.live_deploy().await, deploys[2]);
    // Not a deploy id at all: refused before anything is invoked.
    let out = r
        .stack
        .deployer(&["site", "rollback", "production", "--to", "../staging"])
        .await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not a deploy id"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
