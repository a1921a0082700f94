//! A hostile repository, built for real: its `postinstall` leaves a
//! `setsid()` daemon behind, its build reads every `/proc/*/environ`,
//! probes every loopback listener for a Lambda Runtime API, calls AWS with
//! every credential it finds (and with the builder's own, as if it had
//! stolen them), and publishes its loot as `loot.json` in the preview. The
//! test asserts that none of it reached anything privileged.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};

use site_build::builder::isolated::{processes_of_user, uid_of};

use super::site_recovery::Recovery;

const TOKEN: &str = "ghp_hostilebuildtesttoken0123456789abcdef";
const BRANCH: &str = "feature/innocent";

/// The environment a function of the pipeline was started with.
fn spec_env(r: &Recovery, name: &str) -> BTreeMap<String, String> {
    r.pipeline()
        .function_specs
        .iter()
        .find(|spec| spec.name == name)
        .unwrap_or_else(|| panic!("no function {name}"))
        .env
        .iter()
        .cloned()
        .collect()
}

/// A pull request of `BRANCH` at `sha`: (target, deployment id).
async fn pull_request(r: &Recovery, action: &str, delivery: &str, sha: &str) -> (String, String) {
    let event = deployer_e2e::github_pull_request(
        &r.pipeline().site_resources.repository,
        action,
        7,
        BRANCH,
        sha,
    );
    let (status, answer) = r
        .pipeline()
        .github_webhook("pull_request", delivery, &event)
        .await
        .unwrap();
    assert_eq!(status, 202, "{answer}");
    let answer: Value = serde_json::from_str(&answer).unwrap();
    let deployment = &answer["deployments"][0];
    (
        deployment["target"].as_str().unwrap().to_owned(),
        deployment["deployment_id"].as_str().unwrap().to_owned(),
    )
}

/// Every object of one deploy of `target`, by key.
async fn published(r: &Recovery, target: &str, deploy: &str) -> BTreeMap<String, Vec<u8>> {
    let s3 = r.pipeline().s3();
    let bucket = &r.pipeline().site_resources.bucket;
    let listed = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(format!("deploys/{target}/{deploy}/"))
        .send()
        .await
        .unwrap();
    let mut files = BTreeMap::new();
    for object in listed.contents.unwrap_or_default() {
        let key = object.key.unwrap();
        let body = s3
            .get_object()
            .bucket(bucket)
            .key(&key)
            .send()
            .await
            .unwrap();
        files.insert(key, body.body.collect().await.unwrap().to_vec());
    }
    assert!(files.len() > 2, "{:?}", files.keys());
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hostile_build_reaches_no_secret_no_credential_and_nothing_live() {
    assert!(
        local_stack::Sandbox::available(),
        "the local stack isolates the builder only when it runs as root (as CI does)"
    );
    let r = Recovery::start_logged("hostile", |options| {
        options.github_token = Some(TOKEN.to_owned());
    })
    .await;
    let first = r.publish_first().await;
    let pipeline = r.pipeline();
    let site_build = spec_env(&r, &pipeline.site_resources.function_name);
    let builder_name = pipeline.site_resources.builder_name.clone();
    let builder = spec_env(&r, &builder_name);

    // An approval waiting in production: the build will try to approve it.
    let waiting = r
        .invoke(json!({
            "repository": pipeline.site_resources.repository,
            "branch": "main",
            "environment": "production",
            "triggered_by": "ana",
        }))
        .await
        .unwrap();
    assert_eq!(waiting["status"], "AWAITING_APPROVAL", "{waiting}");
    let approval = (
        waiting["target"].as_str().unwrap().to_owned(),
        waiting["deployment_id"].as_str().unwrap().to_owned(),
    );

    // The hostile commit, on a same-repository pull request.
    let heartbeat = std::env::temp_dir().join(format!("hostile-beat-{}", std::process::id()));
    std::fs::create_dir_all(&heartbeat).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&heartbeat, std::fs::Permissions::from_mode(0o777)).unwrap();
    let targets = json!({
        "bucket": pipeline.site_resources.bucket,
        "table": pipeline.site_resources.deployments_table,
        "secret_parameter": pipeline.site_resources.secret_parameter,
        "approval": {"pk": approval.0, "sk": approval.1},
        "endpoint": pipeline.emulator.endpoint,
        "lambda_endpoint": pipeline.lambda_api.endpoint,
        "site_build": pipeline.site_resources.function_name,
        "repository": pipeline.site_resources.repository,
        "heartbeat": heartbeat,
        // As if it had read them: the builder's own credentials.
        "stolen": {
            "AWS_ACCESS_KEY_ID": builder["AWS_ACCESS_KEY_ID"],
            "AWS_SECRET_ACCESS_KEY": builder["AWS_SECRET_ACCESS_KEY"],
            "AWS_SESSION_TOKEN": builder.get("AWS_SESSION_TOKEN"),
            "AWS_ENDPOINT_URL": builder["AWS_ENDPOINT_URL"],
        },
    });
    let package = std::fs::read_to_string(r.repo.dir.join("package.json")).unwrap();
    let hostile_package = package.replace(
        "\"build\": \"node build.mjs\"",
        "\"build\": \"node build.mjs && node hostile.mjs build\",\n    \"postinstall\": \"node hostile.mjs install\"",
    );
    assert_ne!(hostile_package, package);
    r.repo.branch(BRANCH).unwrap();
    r.repo.write("package.json", &hostile_package).unwrap();
    r.repo
        .write("hostile.mjs", include_str!("fixtures/hostile.mjs"))
        .unwrap();
    r.repo.write("targets.json", &targets.to_string()).unwrap();
    let sha = r.repo.commit("an innocent change").unwrap();

    let (target, id) = pull_request(&r, "opened", "d-hostile", &sha).await;
    let (done, _) = r.wait_end(&target, &id, Duration::from_secs(180)).await;
    assert_eq!(done["status"], "PUBLISHED", "{done}");
    let deploy = done["deploy_id"].as_str().unwrap().to_owned();
    let files = published(&r, &target, &deploy).await;
    let loot: Value = serde_json::from_slice(
        files
            .iter()
            .find(|(key, _)| key.ends_with("/loot.json"))
            .expect("the loot was published")
            .1,
    )
    .unwrap();

    // Its own environment: no credential, no secret, nothing of ours.
    let own = loot["own_env"].as_object().unwrap();
    for name in own.keys() {
        assert!(
            !name.starts_with("AWS_") && !name.starts_with("GITHUB") && !name.contains("SLACK"),
            "{name} reached the build: {own:?}"
        );
    }
    // Nothing readable is anything but the build's own processes: not the
    // builder that started it (same user, but not dumpable), not site-build.
    for process in loot["readable"].as_array().unwrap() {
        let env = process["env"].as_object().unwrap();
        assert!(
            !env.contains_key("AWS_LAMBDA_FUNCTION_NAME") && !env.contains_key("AWS_ACCESS_KEY_ID"),
            "a function's environment was readable: {process}"
        );
    }
    let site_build_pid = pipeline.site_build.pid().await.expect("site-build runs");
    let denied: Vec<u64> = loot["denied"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_u64().unwrap())
        .collect();
    assert!(denied.contains(&(site_build_pid as u64)), "{denied:?}");
    let builder_pid = pipeline.site_builder.pid().await.expect("the builder ran");
    assert!(denied.contains(&(builder_pid as u64)), "{denied:?}");

    // Every AWS call was denied by IAM, with the builder's credentials or
    // none: S3 put to production, approving in DynamoDB, reading the
    // webhook secret from SSM (GetParameter and GetParameters), invoking
    // site-build.
    let calls = loot["aws"].as_array().unwrap();
    let with_builder_keys: Vec<&Value> = calls
        .iter()
        .filter(|c| c["from"] == builder["AWS_ACCESS_KEY_ID"].as_str())
        .collect();
    assert_eq!(with_builder_keys.len(), 5, "{calls:?}");
    eprintln!("the build's AWS calls: {calls:#?}");
    for call in calls {
        let status = call["status"].as_u64().unwrap();
        assert!((400..500).contains(&status), "{call}");
    }
    for call in with_builder_keys {
        // Each service answers a denial as AWS does: S3 403 AccessDenied,
        // the JSON services 400 AccessDeniedException, Lambda 403 with the
        // error code in a header and the reason in the body.
        let what = call["what"].as_str().unwrap();
        let (status, says) = match what.split(' ').next().unwrap() {
            "s3" => (403, "AccessDenied"),
            "dynamodb" => (400, "AccessDeniedException"),
            "ssm" => (400, "AccessDeniedException"),
            "lambda" => (403, "is not authorized to perform: lambda:InvokeFunction"),
            other => panic!("unexpected attack {other}"),
        };
        assert_eq!(call["status"], status, "{call}");
        assert!(
            call["answer"].as_str().unwrap().contains(says),
            "denied by IAM, not by a bad signature: {call}"
        );
    }

    // No Runtime API answered it but, at most, its own sandbox's.
    let runtime = loot["runtime"].as_array().unwrap();
    assert!(
        runtime.iter().all(|p| p["request_id"].is_null()),
        "an invocation was taken: {runtime:?}"
    );
    for endpoint in pipeline.site_build.runtime_endpoints().await {
        let port: u64 = endpoint.rsplit(':').next().unwrap().parse().unwrap();
        let probe = runtime
            .iter()
            .find(|p| p["port"] == port)
            .unwrap_or_else(|| panic!("site-build's Runtime API {endpoint} was not probed"));
        assert_eq!(probe["status"], 403, "{probe}");
    }

    // The daemon it left ran, and was stopped with the build.
    let beat = heartbeat.join("beat");
    assert!(beat.exists(), "the lingering process never ran");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = std::fs::read_to_string(&beat).unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        std::fs::read_to_string(&beat).unwrap(),
        before,
        "the lingering process outlived its build"
    );
    let builder_uid = uid_of(builder_pid).expect("the builder runs");
    assert_ne!(builder_uid, 0);
    assert_eq!(processes_of_user(builder_uid), vec![builder_pid]);

    // The next build in the same sandbox meets none of it.
    r.repo.write("package.json", &package).unwrap();
    std::fs::remove_file(r.repo.dir.join("hostile.mjs")).unwrap();
    let clean = r.repo.commit("clean again").unwrap();
    let (target, id) = pull_request(&r, "synchronize", "d-clean", &clean).await;
    let (done, _) = r.wait_end(&target, &id, Duration::from_secs(180)).await;
    assert_eq!(done["status"], "PUBLISHED", "{done}");
    let clean_deploy = done["deploy_id"].as_str().unwrap().to_owned();
    for (key, body) in published(&r, &target, &clean_deploy).await {
        assert!(
            !String::from_utf8_lossy(&body).contains("INFECTED"),
            "{key} was poisoned by the earlier build"
        );
    }

    // Links out of dist/ are refused, naming each; the preview stays.
    r.repo.write("package.json", &hostile_package).unwrap();
    r.repo
        .write("hostile.mjs", include_str!("fixtures/hostile.mjs"))
        .unwrap();
    r.repo.write("links", "yes\n").unwrap();
    let linked = r.repo.commit("links").unwrap();
    let (target, id) = pull_request(&r, "synchronize", "d-links", &linked).await;
    let (done, _) = r.wait_end(&target, &id, Duration::from_secs(180)).await;
    assert_eq!(done["status"], "FAILED", "{done}");
    let error = done["error"].as_str().unwrap();
    assert!(
        error.contains(
            "the publisher follows no links: \
             environ is a symlink to /proc/self/environ (outside the output directory); \
             package.json is a symlink to ../package.json (outside the output directory); \
             passwd is a symlink to /etc/passwd (outside the output directory)"
        ),
        "{error}"
    );
    let preview = pipeline
        .site
        .get(
            &local_stack::HostTarget::Preview(
                sitedao::PreviewSlug::from_branch(BRANCH).to_string(),
            ),
            "/",
        )
        .await
        .unwrap();
    assert_eq!(preview.deploy_id.as_deref(), Some(clean_deploy.as_str()));

    // Production and the approval are as they were.
    assert_eq!(r.live_deploy().await, first);
    assert_eq!(r.complete_deploys().await, std::slice::from_ref(&first));
    let still = r.record(&approval.0, &approval.1).await;
    assert_eq!(still["status"], "AWAITING_APPROVAL", "{still}");
    let staging = pipeline
        .site
        .get(&local_stack::HostTarget::Staging, "/")
        .await
        .unwrap();
    assert_eq!(staging.status, 404, "the build deployed itself to staging");

    // No secret or privileged credential anywhere it could travel: the
    // published files, the functions' logs, GitHub statuses, Slack.
    let mut secrets = vec![
        ("webhook secret", pipeline.github_secret.clone()),
        ("GitHub token", TOKEN.to_owned()),
        (
            "site-build's secret key",
            site_build["AWS_SECRET_ACCESS_KEY"].clone(),
        ),
    ];
    if let Some(token) = site_build.get("AWS_SESSION_TOKEN") {
        secrets.push(("site-build's session token", token.clone()));
    }
    let mut places: Vec<(String, String)> = files
        .iter()
        .map(|(key, body)| (key.clone(), String::from_utf8_lossy(body).into_owned()))
        .collect();
    places.extend(r.logs_of(""));
    for deployment in pipeline.github.deployments() {
        for status in deployment.statuses {
            places.push(("a GitHub status".into(), status.description));
        }
    }
    for (_, body) in pipeline.slack.received() {
        places.push(("Slack".into(), body.to_string()));
    }
    for (what, secret) in &secrets {
        assert!(secret.len() >= 8, "{what} is too short to search for");
        for (place, text) in &places {
            assert!(!text.contains(secret.as_str()), "{what} reached {place}");
        }
    }
    r.pipeline().stop().await;
    let _ = std::fs::remove_dir_all(&heartbeat);
}
