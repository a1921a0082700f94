//! `deployer-local`: the whole pipeline on this machine.
//!
//! `deployer-local demo` starts moto server, creates the pipeline's resources,
//! runs the real function binaries behind a loopback Runtime API, uploads the
//! bundled sample app, follows the build to its end with the `deployer` CLI,
//! redeploys an ECS service on an image push, publishes the sample site with
//! site-build (a git repository of `examples/sample-site` behind the GitHub
//! double; a signed push webhook publishes production, a pull request a
//! preview, both served on loopback), and stops everything it started.
//! `--keep` leaves it running.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use localstack::emulator::wait_until;
use localstack::{Emulator, HostTarget, Pipeline, PipelineOptions, SampleRepo};

/// How long the demo's CloudFormation keeps change sets and stacks in progress.
const DEMO_CLOUDFORMATION_PACE: Duration = Duration::from_millis(1500);

#[derive(Parser)]
#[command(
    name = "deployer-local",
    about = "Run Deployer on this machine against moto server"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Deploy the sample app, redeploy an ECS service, publish the sample site.
    Demo {
        /// Keep the stack running afterwards (Ctrl-C stops it).
        #[arg(long)]
        keep: bool,
        /// Environment of the local pipeline.
        #[arg(long, default_value = "dev")]
        env: String,
        /// Cargo profile the function binaries were built with.
        #[arg(long, default_value = "debug")]
        profile: String,
    },
    /// N builds, N ECS events and N site deploys under randomised faults;
    /// exits 1 if anything was lost, stuck, doubled or out of order.
    Chaos {
        /// Seed of every random choice (default: the clock); printed.
        #[arg(long, env = "SEED")]
        seed: Option<u64>,
        /// How many of each kind of work.
        #[arg(long, default_value_t = 10)]
        count: usize,
        /// Cargo profile the function binaries were built with.
        #[arg(long, default_value = "debug")]
        profile: String,
    },
}

#[tokio::main]
async fn main() {
    if let Err(err) = run(Cli::parse()).await {
        eprintln!("deployer-local: {err:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let (keep, env, profile) = match cli.command {
        Command::Demo { keep, env, profile } => (keep, env, profile),
        Command::Chaos {
            seed,
            count,
            profile,
        } => return chaos(seed, count, profile).await,
    };
    let root = std::env::current_dir()?;
    if !root.join("cloudformation.template").is_file() {
        bail!("run deployer-local from the repository root (no cloudformation.template here)");
    }
    let log_dir = root.join("target/local");
    std::fs::create_dir_all(&log_dir)?;
    let repo = SampleRepo::create(&root, &std::env::temp_dir())?;

    println!("==> starting moto server");
    let emulator = Arc::new(Emulator::start(&root, Some(log_dir.join("moto.log"))).await?);
    emulator.enable_state_machine_execution().await?;
    println!("    emulator at {}", emulator.endpoint);

    let mut options =
        PipelineOptions::new(root.clone(), &env).parameter("PollIntervalSeconds", "1");
    options.profile = profile.clone();
    options.log_dir = Some(log_dir.clone());
    options.site_repo = Some(repo.dir.clone());
    // CloudFormation takes its time, as on AWS (a small stack: seconds), so
    // the demo shows the build IN_PROGRESS and the state machine's waits run.
    options.cloudformation_pace = DEMO_CLOUDFORMATION_PACE;
    let pipeline = Pipeline::start(emulator.clone(), options).await?;
    let r = &pipeline.resources;
    println!("==> pipeline {env} is up");
    println!("    artifact bucket  {}", r.bucket);
    println!("    builds table     {}", r.builds_table);
    println!("    state machine    {}", r.state_machine_arn);
    println!("    functions        s3-trigger, trigger-build, ci-dispatch (logs in target/local/)");

    let sample = root.join("examples/sample-app");
    let version = format!("1.{:x}", std::process::id() as u64 * 0x9e37);
    let prefix = format!("sample-app/main/{version}/");
    let files: Vec<(&str, Vec<u8>)> = [
        "cloudformation.template",
        "cloudformation-params.dev.json",
        "cloudformation-params.json",
    ]
    .into_iter()
    .map(|name| std::fs::read(sample.join(name)).map(|bytes| (name, bytes)))
    .collect::<Result<_, _>>()
    .context("reading examples/sample-app")?;
    println!("==> uploading the sample app to s3://{}/{prefix}", r.bucket);
    pipeline.upload(&prefix, &files).await?;

    let builds = pipeline.builds();
    let build = wait_until("the build record", Duration::from_secs(30), || async {
        Ok(builds.latest("sample-app", &env).await?)
    })
    .await?;

    println!(
        "==> following build {} with `deployer builds watch`",
        build.id()
    );
    let cli = root.join("target").join(&profile).join("deployer");
    let status = tokio::process::Command::new(&cli)
        .args([
            "builds",
            "watch",
            "sample-app",
            &build.sk,
            "--timeout",
            "300",
        ])
        .envs(pipeline.cli_env())
        .status()
        .await
        .with_context(|| format!("running {}", cli.display()))?;
    if !status.success() {
        bail!("the sample build did not succeed; see target/local/*.log");
    }
    let done = builds.get(&build.key()).await?.context("build vanished")?;
    println!(
        "==> stack {} deployed with parameters {:?}",
        done.stack_name, done.parameters
    );

    redeploy_on_image_push(&pipeline).await?;
    let preview = publish_sample_site(&pipeline, &repo).await?;

    if keep {
        let exports: Vec<String> = pipeline
            .cli_env()
            .into_iter()
            .map(|(k, v)| format!("export {k}={v}"))
            .collect();
        println!("\nThe local stack keeps running. In another terminal:\n");
        for line in exports {
            println!("  {line}");
        }
        println!("  target/{profile}/deployer builds list sample-app");
        println!("  target/{profile}/deployer builds show sample-app");
        println!(
            "  aws s3 ls s3://{}/ --recursive   # if you have the AWS CLI",
            r.bucket
        );
        println!(
            "\nUpload another version under s3://{}/sample-app/main/2.abcd1234/ to see it deploy.",
            r.bucket
        );
        println!("\nThe sample site (open these in a browser; *.localhost is this machine):");
        println!("  {}", pipeline.site.production_url());
        println!("  {}", pipeline.site.url_of(&preview, "/about/"));
        println!("  target/{profile}/deployer site list preview --branch {SAMPLE_BRANCH}");
        println!(
            "Commit in {} and post a signed webhook to {} to build again.",
            repo.dir.display(),
            pipeline.function_url
        );
        println!("Press Ctrl-C to stop.");
        tokio::signal::ctrl_c().await?;
    }
    println!("==> stopping");
    pipeline.stop().await;
    drop(pipeline);
    drop(emulator);
    Ok(())
}

/// ci-dispatch: an image pushed to ECR redeploys its ECS service, and Slack
/// (a local sink here) hears when it starts and when ECS says it completed.
async fn redeploy_on_image_push(pipeline: &Pipeline) -> anyhow::Result<()> {
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
                       "image-digest": "sha256:0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0", "image-tag": "latest"}
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

async fn chaos(seed: Option<u64>, count: usize, profile: String) -> anyhow::Result<()> {
    let root = std::env::current_dir()?;
    let log_dir = root.join("target/local");
    std::fs::create_dir_all(&log_dir)?;
    let seed = seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs())
    });
    let plan = localstack::chaos::ChaosPlan {
        seed,
        count,
        profile,
        log_dir: Some(log_dir),
    };
    if localstack::chaos::run_and_print(&root, &plan).await? {
        Ok(())
    } else {
        bail!("chaos found work lost, stuck, doubled or out of order (seed {seed})")
    }
}

/// The pull request the demo opens.
const SAMPLE_BRANCH: &str = "feature/about-page";

/// site-build on the local stack: a push publishes the sample site to
/// production, a pull request publishes a preview. Returns the preview.
async fn publish_sample_site(pipeline: &Pipeline, repo: &SampleRepo) -> anyhow::Result<HostTarget> {
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
    let slug = site_build::PreviewSlug::from_branch(SAMPLE_BRANCH).to_string();
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
) -> anyhow::Result<localstack::SitePage> {
    let site = pipeline.site.clone();
    wait_until(
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
    .context("see target/local/*-site-build.log")
}
