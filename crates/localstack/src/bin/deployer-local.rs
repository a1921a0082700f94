//! `deployer-local`: the whole pipeline on this machine.
//!
//! `deployer-local demo` starts moto server, creates the pipeline's resources,
//! runs the real function binaries behind a loopback Runtime API, uploads the
//! bundled sample app, follows the build to its end with the `deployer` CLI,
//! and stops everything it started. `--keep` leaves it running.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use localstack::{Emulator, Pipeline, PipelineOptions};

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
    /// Upload the sample app and follow its build to SUCCESS.
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
}

#[tokio::main]
async fn main() {
    if let Err(err) = run(Cli::parse()).await {
        eprintln!("deployer-local: {err:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let Command::Demo { keep, env, profile } = cli.command;
    let root = std::env::current_dir()?;
    if !root.join("cloudformation.template").is_file() {
        bail!("run deployer-local from the repository root (no cloudformation.template here)");
    }
    let log_dir = root.join("target/local");
    std::fs::create_dir_all(&log_dir)?;

    println!("==> starting moto server");
    let emulator = Arc::new(Emulator::start(&root, Some(log_dir.join("moto.log"))).await?);
    emulator.enable_state_machine_execution().await?;
    println!("    emulator at {}", emulator.endpoint);

    let mut options =
        PipelineOptions::new(root.clone(), &env).parameter("PollIntervalSeconds", "1");
    options.profile = profile.clone();
    options.log_dir = Some(log_dir.clone());
    let pipeline = Pipeline::start(emulator.clone(), options).await?;
    let r = &pipeline.resources;
    println!("==> pipeline {env} is up");
    println!("    artifact bucket  {}", r.bucket);
    println!("    builds table     {}", r.builds_table);
    println!("    state machine    {}", r.state_machine_arn);
    println!("    functions        s3-trigger, trigger-build (logs in target/local/)");

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
    let build =
        localstack::emulator::wait_until("the build record", Duration::from_secs(30), || async {
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
        println!("Press Ctrl-C to stop.");
        tokio::signal::ctrl_c().await?;
    }
    println!("==> stopping");
    pipeline.stop().await;
    drop(pipeline);
    drop(emulator);
    Ok(())
}
