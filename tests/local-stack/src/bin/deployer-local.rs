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
use local_stack::demo::{self, SAMPLE_BRANCH};
use local_stack::emulator::wait_until;
use local_stack::{Emulator, Pipeline, PipelineOptions, SampleRepo};

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

    demo::redeploy_on_image_push(&pipeline).await?;
    let preview = demo::publish_sample_site(&pipeline, &repo).await?;

    println!("==> what is deployed where: `deployer status`");
    let status = tokio::process::Command::new(&cli)
        .arg("status")
        .envs(pipeline.cli_env())
        .output()
        .await
        .with_context(|| format!("running {}", cli.display()))?;
    print!("{}", String::from_utf8_lossy(&status.stdout));
    eprint!("{}", String::from_utf8_lossy(&status.stderr));

    if keep {
        let (_dashboard, url) = start_dashboard(&cli, &pipeline).await?;
        println!("==> dashboard (loopback only; the token in the URL is this run's): {url}");
        let exports: Vec<String> = pipeline
            .cli_env()
            .into_iter()
            .map(|(k, v)| format!("export {k}={v}"))
            .collect();
        println!("\nThe local stack keeps running. In another terminal:\n");
        for line in exports {
            println!("  {line}");
        }
        println!("  target/{profile}/deployer status");
        println!("  target/{profile}/deployer history sample-app");
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

/// `deployer dashboard` on a free loopback port, and the URL it printed.
async fn start_dashboard(
    cli: &std::path::Path,
    pipeline: &Pipeline,
) -> anyhow::Result<(tokio::process::Child, String)> {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(cli)
        .args(["dashboard", "--port", "0"])
        .envs(pipeline.cli_env())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {} dashboard", cli.display()))?;
    let stdout = child.stdout.take().context("dashboard stdout")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .context("the dashboard printed no URL in 30 s")??
        .context("the dashboard exited before printing its URL")?;
    let url = line
        .strip_prefix("dashboard: ")
        .with_context(|| format!("unexpected first line from the dashboard: {line}"))?
        .to_owned();
    Ok((child, url))
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
    let plan = local_stack::chaos::ChaosPlan {
        seed,
        count,
        profile,
        log_dir: Some(log_dir),
    };
    if local_stack::chaos::run_and_print(&root, &plan).await? {
        Ok(())
    } else {
        bail!("chaos found work lost, stuck, doubled or out of order (seed {seed})")
    }
}
