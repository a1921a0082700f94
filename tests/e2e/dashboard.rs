//! `deployer dashboard` in a real browser (headless Chromium through
//! chromedriver) against the local stack, after the demo's flows in prd:
//! the grid shows the sample app's stack, the ECS service and the site
//! targets with their versions; approving a build in the page deploys it;
//! markup in a branch name and in a reason shows as text; the page refuses
//! what does not carry its token or come from its origin. Screenshots of
//! the grid and of a chart are saved under target/.

use std::time::Duration;

use builddao::{Build, BuildStatus};
use deployer_e2e::webdriver::Browser;
use deployer_e2e::{root, sample_template, target_dir, TestStack};
use local_stack::demo::{self, SAMPLE_BRANCH, SAMPLE_IMAGE_DIGEST};
use local_stack::emulator::wait_until;
use local_stack::SampleRepo;
use serde_json::json;
use tokio::io::AsyncBufReadExt;

const HOSTILE_BRANCH: &str = r#"feat/<script>window.__pwned=1</script>"it's""#;
const HOSTILE_REASON: &str = r#"<script>window.__pwned=2</script> "not now", it's frozen"#;

async fn awaiting_with_token(stack: &TestStack, build: &Build) {
    let builds = stack.builds();
    let key = build.key();
    wait_until("approval token", Duration::from_secs(90), || {
        let (builds, key) = (builds.clone(), key.clone());
        async move {
            let b = builds.get(&key).await?.expect("build");
            assert!(!b.status.is_terminal(), "ended before approval: {b:?}");
            Ok(
                (b.status == BuildStatus::AwaitingApproval && b.approval_token.is_some())
                    .then_some(()),
            )
        }
    })
    .await
    .unwrap();
}

/// `deployer dashboard` on a free port, and the URL it printed.
async fn start_dashboard(stack: &TestStack) -> (tokio::process::Child, String) {
    let mut child = tokio::process::Command::new(target_dir().join("debug").join("deployer"))
        .args(["dashboard", "--port", "0", "--refresh", "2"])
        .envs(stack.pipeline.cli_env())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("deployer dashboard starts");
    let stdout = child.stdout.take().unwrap();
    let line = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::io::BufReader::new(stdout).lines().next_line(),
    )
    .await
    .expect("the URL within 30 s")
    .unwrap()
    .expect("a first line");
    let url = line.strip_prefix("dashboard: ").expect(&line).to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    (child, url)
}

/// Reloads the grid until the cell of `target` in prd satisfies `check`
/// (given its data-version and class); returns them.
async fn cell_until(
    browser: &Browser,
    url: &str,
    target: &str,
    check: impl Fn(&str, &str) -> bool,
) -> (String, String) {
    let css = format!(r#"td[data-env="prd"][data-target="{target}"]"#);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        browser.goto(url).await.unwrap();
        if let Ok(cell) = browser.find(&css).await {
            let version = browser
                .attribute(&cell, "data-version")
                .await
                .unwrap()
                .unwrap_or_default();
            let class = browser
                .attribute(&cell, "class")
                .await
                .unwrap()
                .unwrap_or_default();
            if check(&version, &class) {
                return (version, class);
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{target}: version {version:?}, class {class:?}"
            );
        } else {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{target} never appeared in the grid"
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// After an answer, the page lands on the target's history.
async fn landed_on_history(browser: &Browser) {
    let url = browser.current_url().await.unwrap();
    if !url.contains("/target?") {
        let page = browser
            .text(&browser.find("body").await.unwrap())
            .await
            .unwrap();
        panic!("the answer did not land on the history: {url}\n{page}");
    }
}

async fn not_pwned(browser: &Browser) {
    let pwned = browser
        .script("return window.__pwned === undefined;")
        .await
        .unwrap();
    assert_eq!(
        pwned,
        json!(true),
        "a script from a branch name or a reason ran"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_every_target_approves_in_the_page_and_shows_markup_as_text() {
    let repo = SampleRepo::create(&root(), &std::env::temp_dir()).expect("sample repo");
    let stack = TestStack::start_site("prd", &repo).await;

    // Two prd builds wait for approval: the sample app, and one whose
    // branch name is markup.
    let sample = stack
        .upload_sample("sample-app", "1.aaaa1111", "hello")
        .await;
    stack
        .upload(
            "hostile",
            HOSTILE_BRANCH,
            "1.bbbb2222",
            &sample_template(),
            json!({"Greeting": "hi"}),
        )
        .await;
    let hostile = stack.build_of("hostile", "1.bbbb2222").await;
    assert_eq!(hostile.branch, HOSTILE_BRANCH);
    // The demo's flows: an image push redeploys the ECS service, a push
    // and a pull request publish the sample site.
    demo::redeploy_on_image_push(&stack.pipeline)
        .await
        .expect("ECS flow");
    demo::publish_sample_site(&stack.pipeline, &repo)
        .await
        .expect("site flow");
    awaiting_with_token(&stack, &sample).await;
    awaiting_with_token(&stack, &hostile).await;

    let task_definition = stack.pipeline.ecs_proxy.forwarded("UpdateService")[0]["taskDefinition"]
        .as_str()
        .unwrap()
        .to_owned();
    let task_definition = task_definition
        .rsplit_once("task-definition/")
        .map_or(task_definition.as_str(), |(_, name)| name)
        .to_owned();
    let production_commit = repo.git(&["rev-parse", "main"]).unwrap().trim().to_owned();
    let preview_commit = repo.head().unwrap();
    let preview = format!(
        "site:preview/{}",
        sitedao::PreviewSlug::from_branch(SAMPLE_BRANCH)
    );

    let (_dashboard, url) = start_dashboard(&stack).await;
    let browser = Browser::start().await.expect("headless Chromium");

    // The grid: the service and the site targets with their versions.
    let (version, class) = cell_until(&browser, &url, "service:app_service_web_prd", |_, c| {
        c == "live"
    })
    .await;
    assert_eq!(
        version,
        format!("{task_definition} {}", &SAMPLE_IMAGE_DIGEST[..19]),
        "{class}"
    );
    let (version, _) = cell_until(&browser, &url, "site:production", |_, c| c == "live").await;
    assert_eq!(version, production_commit[..12]);
    let (version, _) = cell_until(&browser, &url, &preview, |_, c| c == "live").await;
    assert_eq!(version, preview_commit[..12]);
    let (version, _) = cell_until(&browser, &url, "stack:sample-app", |_, c| c == "waiting").await;
    assert_eq!(
        version, "",
        "nothing of the sample app is live before approval"
    );

    // Approve in the page: a confirmation step, then the build deploys.
    let approve = browser
        .find(r#"td[data-target="stack:sample-app"] a.approve"#)
        .await
        .unwrap();
    browser.click(&approve).await.unwrap();
    let confirm = browser.find("#confirm").await.unwrap();
    assert!(browser
        .text(&browser.find("main").await.unwrap())
        .await
        .unwrap()
        .contains("1.aaaa1111"));
    assert_eq!(
        stack
            .builds()
            .get(&sample.key())
            .await
            .unwrap()
            .unwrap()
            .status,
        BuildStatus::AwaitingApproval,
        "nothing is approved before the confirmation"
    );
    browser.click(&confirm).await.unwrap();
    landed_on_history(&browser).await;
    // The target's history: the build's parameters (all new: its first
    // build) and the change set it showed.
    let added = browser.find("#history .diff-add").await.unwrap();
    assert_eq!(browser.text(&added).await.unwrap(), "+ Greeting = hello");
    let history = browser
        .text(&browser.find("#history").await.unwrap())
        .await
        .unwrap();
    assert!(history.contains("change set: 2 change(s)"), "{history}");
    let done = stack.wait_terminal(&sample.key()).await;
    assert_eq!(done.status, BuildStatus::Success, "{done:?}");
    let (version, _) = cell_until(&browser, &url, "stack:sample-app", |_, c| c == "live").await;
    assert_eq!(version, "1.aaaa1111");
    let by = browser
        .text(
            &browser
                .find(r#"td[data-target="stack:sample-app"]"#)
                .await
                .unwrap(),
        )
        .await
        .unwrap();
    assert!(by.contains("(dashboard)"), "the approver is shown: {by}");

    // Markup in a branch name and a reason is text.
    cell_until(&browser, &url, "stack:hostile", |_, c| c == "waiting").await;
    let reject = browser
        .find(r#"td[data-target="stack:hostile"] a.reject"#)
        .await
        .unwrap();
    browser.click(&reject).await.unwrap();
    let branch = browser.find("b.branch").await.unwrap();
    assert_eq!(browser.text(&branch).await.unwrap(), HOSTILE_BRANCH);
    not_pwned(&browser).await;
    let reason = browser.find(r#"input[name="reason"]"#).await.unwrap();
    browser.type_text(&reason, HOSTILE_REASON).await.unwrap();
    browser
        .click(&browser.find("#confirm").await.unwrap())
        .await
        .unwrap();
    let rejected = stack.wait_terminal(&hostile.key()).await;
    assert_eq!(rejected.status, BuildStatus::Failed);
    assert!(
        rejected
            .error_msg
            .as_deref()
            .unwrap_or_default()
            .contains(HOSTILE_REASON),
        "{rejected:?}"
    );
    // The history page the rejection landed on shows both as text.
    let history_url = browser.current_url().await.unwrap();
    browser.goto(&history_url).await.unwrap();
    let branch_cell = browser.find("#history td.branch").await.unwrap();
    assert_eq!(browser.text(&branch_cell).await.unwrap(), HOSTILE_BRANCH);
    let history = browser
        .text(&browser.find("#history").await.unwrap())
        .await
        .unwrap();
    assert!(history.contains(HOSTILE_REASON), "{history}");
    not_pwned(&browser).await;
    cell_until(&browser, &url, "stack:hostile", |_, c| c == "failed").await;
    let failure = browser
        .text(
            &browser
                .find(r#"td[data-target="stack:hostile"] .failure"#)
                .await
                .unwrap(),
        )
        .await
        .unwrap();
    assert!(failure.contains(HOSTILE_REASON), "{failure}");
    not_pwned(&browser).await;

    // The grid as a person sees it.
    let grid = browser.find("main").await.unwrap();
    let png = browser.screenshot_of(&grid).await.unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    std::fs::write(target_dir().join("dashboard-grid.png"), &png).unwrap();

    // Charts from the ledger: four deployments went live, one failed.
    let charts = browser.find("#charts-link").await.unwrap();
    let charts = browser.attribute(&charts, "href").await.unwrap().unwrap();
    let origin = url.split_once("/?").unwrap().0;
    browser
        .goto(&format!("{origin}{charts}&days=7"))
        .await
        .unwrap();
    let live = browser
        .text(&browser.find("#m-live b").await.unwrap())
        .await
        .unwrap();
    assert_eq!(
        live, "4",
        "sample-app, the service, production, the preview"
    );
    let rate = browser
        .text(&browser.find("#m-failures b").await.unwrap())
        .await
        .unwrap();
    assert_eq!(rate, "20%");
    let bars = browser.find_all("#chart-frequency rect").await.unwrap();
    assert_eq!(bars.len(), 7, "one bar a day");
    let chart = browser.find("#chart-frequency").await.unwrap();
    let png = browser.screenshot_of(&chart).await.unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    std::fs::write(target_dir().join("dashboard-chart.png"), &png).unwrap();
    browser.quit().await;

    // What the page refuses: no token, a POST from another origin, a form
    // without the token.
    let http = reqwest::Client::new();
    let (base, token) = url.split_once("/?token=").unwrap();
    let status = http.get(format!("{base}/")).send().await.unwrap().status();
    assert_eq!(status, 403);
    let form = [
        ("csrf", token),
        ("env", "prd"),
        ("repo", "sample-app"),
        ("build", &sample.sk),
        ("action", "approve"),
    ];
    let status = http
        .post(format!("{base}/answer"))
        .header("Origin", "http://evil.example")
        .form(&form)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 403);
    let status = http
        .post(format!("{base}/answer"))
        .form(&form)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 403, "no Origin at all");
    let mut forged = form;
    forged[0] = ("csrf", "0123");
    let status = http
        .post(format!("{base}/answer"))
        .header("Origin", base)
        .form(&forged)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 403);
}
