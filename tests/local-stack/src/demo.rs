//! The demo's flows, shared by `deployer-local demo` and the tests that
//! check what an operator sees after them: an image push redeploys an ECS
//! service (and ECS reports the rollout done), a push and a pull request
//! publish the sample site.

use std::time::Duration;

use anyhow::Context;

use crate::emulator::wait_until;
use crate::{HostTarget, Pipeline, SampleRepo};

/// The image digest the demo's ECR push carries.
pub const SAMPLE_IMAGE_DIGEST: &str =
    "sha256:0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

/// ci-dispatch: an image pushed to ECR redeploys its ECS service, and Slack
/// (a local sink here) hears when it starts and when ECS says it completed.
pub async fn redeploy_on_image_push(pipeline: &Pipeline) -> anyhow::Result<()> {
    println!(
        "==> ECS: service app_service_web_{} on cluster app_cluster_{}",
        pipeline.resources.env, pipeline.resources.env
    );
    pipeline.ecs_fixture("app", &[("web", 2)]).await?;
    println!("==> pushing image app_service_web:latest (an ECR PUSH event on EventBridge)");
    pipeline
        .put_events(&[serde_json::json!({
            "source": "aws.ecr",
            "detail-type": "ECR Image Action",
            "detail": {"action-type": "PUSH", "result": "SUCCESS", "repository-name": "app_service_web",
                       "image-digest": SAMPLE_IMAGE_DIGEST, "image-tag": "latest"}
        })])
        .await?;
    let proxy = pipeline.ecs_proxy.clone();
    let call = wait_until("UpdateService", Duration::from_secs(30), || {
        let proxy = proxy.clone();
        async move { Ok(proxy.forwarded("UpdateService").into_iter().next()) }
    })
    .await?;
    println!(
        "    UpdateService {} on {} with {} (forceNewDeployment={})",
        call["service"].as_str().unwrap_or_default(),
        call["cluster"].as_str().unwrap_or_default(),
        call["taskDefinition"].as_str().unwrap_or_default(),
        call["forceNewDeployment"]
    );
    let sink = pipeline.slack.clone();
    let started = wait_until("the Slack message", Duration::from_secs(30), || {
        let sink = sink.clone();
        async move { Ok(sink.received().into_iter().next()) }
    })
    .await?;
    println!(
        "    Slack <- {}",
        started.1["text"]
            .as_str()
            .unwrap_or_default()
            .replace('\n', " | ")
    );

    // ECS reports the rollout; the message that says "deployed" comes from ECS, not from UpdateService.
    let ecs = aws_sdk_ecs::Client::new(&pipeline.sdk);
    let env = &pipeline.resources.env;
    let described = ecs
        .describe_services()
        .cluster(format!("app_cluster_{env}"))
        .services(format!("app_service_web_{env}"))
        .send()
        .await?;
    let deployment_id = described
        .services()
        .first()
        .and_then(|s| s.deployments().first())
        .and_then(|d| d.id())
        .unwrap_or_default()
        .to_owned();
    println!("==> ECS reports deployment {deployment_id} COMPLETED (an ECS Deployment State Change event)");
    pipeline
        .put_events(&[serde_json::json!({
            "source": "aws.ecs",
            "detail-type": "ECS Deployment State Change",
            "resources": [format!("arn:aws:ecs:us-east-1:123456789012:service/app_cluster_{env}/app_service_web_{env}")],
            "detail": {"eventType": "INFO", "eventName": "SERVICE_DEPLOYMENT_COMPLETED", "deploymentId": deployment_id,
                       "reason": "ECS deployment completed."}
        })])
        .await?;
    let sink = pipeline.slack.clone();
    let done = wait_until("the completion message", Duration::from_secs(30), || {
        let sink = sink.clone();
        async move { Ok(sink.received().into_iter().nth(1)) }
    })
    .await?;
    println!(
        "    Slack <- {}",
        done.1["text"]
            .as_str()
            .unwrap_or_default()
            .replace('\n', " | ")
    );
    Ok(())
}

/// The pull request the demo opens.
pub const SAMPLE_BRANCH: &str = "feature/about-page";

/// site-build on the local stack: a push publishes the sample site to
/// production, a pull request publishes a preview. Returns the preview.
pub async fn publish_sample_site(
    pipeline: &Pipeline,
    repo: &SampleRepo,
) -> anyhow::Result<HostTarget> {
    let repository = pipeline.site_resources.repository.clone();
    println!(
        "==> site-build: sample site repository at {} (served as {repository} by the GitHub double)",
        repo.dir.display()
    );
    println!("    function URL     {}", pipeline.function_url);
    println!("    production       {}", pipeline.site.production_url());
    println!(
        "    previews         {}",
        pipeline.site.preview_url_template()
    );

    let head = repo.head()?;
    println!("==> GitHub: push to main at {}", &head[..12]);
    let push = serde_json::json!({
        "ref": "refs/heads/main",
        "before": "0".repeat(40),
        "after": head,
        "deleted": false,
        "repository": {"full_name": repository},
        "sender": {"login": "octocat"},
    });
    let (status, answer) = pipeline
        .github_webhook("push", "demo-push-1", &push)
        .await?;
    println!("    function URL answered {status}: {answer}");
    let page = wait_for(pipeline, &HostTarget::Production, "/").await?;
    println!(
        "    {} serves {} bytes of {}",
        pipeline.site.production_url(),
        page.body.len(),
        page.content_type.unwrap_or_default()
    );

    repo.branch(SAMPLE_BRANCH)?;
    repo.write(
        "src/about.html",
        "<h1>About</h1>\n<p>Written on a branch.</p>\n",
    )?;
    let sha = repo.commit("about page")?;
    println!(
        "==> GitHub: pull request #1 opened from {SAMPLE_BRANCH} at {}",
        &sha[..12]
    );
    let pull_request = serde_json::json!({
        "action": "opened",
        "number": 1,
        "pull_request": {
            "number": 1,
            "head": {"ref": SAMPLE_BRANCH, "sha": sha, "repo": {"full_name": repository}},
            "base": {"ref": "main"},
        },
        "repository": {"full_name": repository},
        "sender": {"login": "octocat"},
    });
    let (status, answer) = pipeline
        .github_webhook("pull_request", "demo-pr-1", &pull_request)
        .await?;
    println!("    function URL answered {status}: {answer}");
    let slug = sitedao::PreviewSlug::from_branch(SAMPLE_BRANCH).to_string();
    let preview = HostTarget::Preview(slug);
    wait_for(pipeline, &preview, "/about/").await?;
    println!(
        "==> preview of {SAMPLE_BRANCH} is live at {}",
        pipeline.site.url_of(&preview, "/about/")
    );
    for status in pipeline.github.statuses() {
        println!(
            "    GitHub deployment {} status {} {}",
            status.deployment_id,
            status.state,
            status.environment_url.unwrap_or_default()
        );
    }
    Ok(preview)
}

async fn wait_for(
    pipeline: &Pipeline,
    target: &HostTarget,
    path: &str,
) -> anyhow::Result<crate::SitePage> {
    let site = pipeline.site.clone();
    let page = wait_until(
        &format!("{} to serve {path}", target.name()),
        Duration::from_secs(300),
        || {
            let site = site.clone();
            async move {
                let page = site.get(target, path).await?;
                Ok((page.status == 200).then_some(page))
            }
        },
    )
    .await
    .context("see target/local/*-site-build.log")?;
    // Served once the live pointer moved; the deployment's record says
    // PUBLISHED a moment later, in the write that ends it.
    let store = sitedao::DeploymentStore::new(
        aws_sdk_dynamodb::Client::new(&pipeline.sdk),
        &pipeline.site_resources.deployments_table,
    );
    let name = target.name();
    wait_until(
        &format!("the {name} deployment to be recorded PUBLISHED"),
        Duration::from_secs(60),
        || {
            let (store, name) = (store.clone(), name.clone());
            async move {
                let newest = store.list(&name, 1).await?.into_iter().next();
                Ok(newest
                    .filter(|d| d.status == sitedao::DeploymentStatus::Published)
                    .map(|_| ()))
            }
        },
    )
    .await?;
    Ok(page)
}
