//! site-build treats what it is sent and what a build writes as hostile:
//! each test forces one attack through the real binary and checks the
//! refusal, its message, and that production did not change.

use std::time::Duration;

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
