//! `deployer`: follow builds and answer approvals from a terminal.
//!
//! It talks to whatever endpoint the AWS SDK environment points at
//! (`AWS_ENDPOINT_URL` for the local stack).

use std::time::Duration;

use anyhow::{bail, Context};
use builddao::{Build, BuildKey, BuildStatus, BuildStore};
use clap::{Parser, Subcommand};

mod site;

#[derive(Parser)]
#[command(
    name = "deployer",
    version,
    about = "Follow Deployer builds, answer approvals, roll the site back"
)]
struct Cli {
    /// Environment the builds deploy to.
    #[arg(long, global = true, env = "DEPLOYER_ENV", default_value = "dev")]
    env: String,
    /// Builds table (default: {env}-deployer-builds).
    #[arg(long, global = true, env = "DEPLOYER_BUILDS_TABLE")]
    table: Option<String>,
    /// Site deployments table (default: {env}-deployer-site-deployments).
    #[arg(long, global = true, env = "DEPLOYER_SITE_TABLE")]
    site_table: Option<String>,
    /// The site-build function (default: {env}-deployer-site-build).
    #[arg(long, global = true, env = "DEPLOYER_SITE_FUNCTION")]
    site_function: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Inspect builds.
    #[command(subcommand)]
    Builds(BuildsCommand),
    /// The static site: deployments, approvals, rollback.
    #[command(subcommand)]
    Site(site::SiteCommand),
    /// Approve a build that waits for approval (the newest one if no build id is given).
    Approve {
        repo: String,
        build: Option<String>,
        /// Who approves (recorded in the execution).
        #[arg(long, env = "USER", default_value = "unknown")]
        by: String,
    },
    /// Reject a build that waits for approval; it ends FAILED.
    Reject {
        repo: String,
        build: Option<String>,
        #[arg(long, default_value = "rejected from the command line")]
        reason: String,
        #[arg(long, env = "USER", default_value = "unknown")]
        by: String,
    },
}

#[derive(Subcommand)]
enum BuildsCommand {
    /// Builds of a repo, newest first.
    List {
        repo: String,
        #[arg(long, default_value_t = 20)]
        limit: i32,
        /// Continue after this build id (printed as "next" by the previous page).
        #[arg(long)]
        after: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// One build in full (the newest if no build id is given).
    Show {
        repo: String,
        build: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Follow a build to its end, printing each transition. Exits 0 on SUCCESS.
    Watch {
        repo: String,
        build: Option<String>,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 3600)]
        timeout: u64,
    },
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::exit(2);
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<i32> {
    let aws = aws_config::load_from_env().await;
    let table = cli
        .table
        .clone()
        .unwrap_or_else(|| format!("{}-deployer-builds", cli.env));
    let store = BuildStore::new(aws_sdk_dynamodb::Client::new(&aws), table);
    let env = cli.env.as_str();
    match cli.command {
        Command::Site(command) => {
            let context = site::SiteContext {
                env: cli.env.clone(),
                table: cli.site_table.clone(),
                function: cli.site_function.clone(),
            };
            site::run(&aws, context, command).await
        }
        Command::Builds(BuildsCommand::List {
            repo,
            limit,
            after,
            json,
        }) => {
            let page = store.list(&repo, env, limit, after.as_deref()).await?;
            if json {
                let builds: Vec<_> = page.builds.iter().map(public_view).collect();
                println!(
                    "{}",
                    serde_json::json!({"builds": builds, "next": page.next})
                );
            } else {
                println!(
                    "{:<28} {:<18} {:<20} {:<24} STACK",
                    "BUILD", "STATUS", "VERSION", "BRANCH"
                );
                for build in &page.builds {
                    println!(
                        "{:<28} {:<18} {:<20} {:<24} {}",
                        build.sk, build.status, build.version, build.branch, build.stack_name
                    );
                }
                if let Some(next) = page.next {
                    println!("more: deployer builds list {repo} --env {env} --after {next}");
                }
            }
            Ok(0)
        }
        Command::Builds(BuildsCommand::Show { repo, build, json }) => {
            let build = find(&store, &repo, env, build.as_deref()).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&public_view(&build))?);
            } else {
                print_build(&build);
            }
            Ok(0)
        }
        Command::Builds(BuildsCommand::Watch {
            repo,
            build,
            timeout,
        }) => {
            let build = find(&store, &repo, env, build.as_deref()).await?;
            watch(&store, build.key(), Duration::from_secs(timeout)).await
        }
        Command::Approve { repo, build, by } => {
            let build = awaiting(&store, &repo, env, build.as_deref()).await?;
            answer(&aws, &build, Answer::Approve { by }).await?;
            println!(
                "approved {} ({} {})",
                build.id(),
                build.stack_name,
                build.version
            );
            Ok(0)
        }
        Command::Reject {
            repo,
            build,
            reason,
            by,
        } => {
            let build = awaiting(&store, &repo, env, build.as_deref()).await?;
            answer(&aws, &build, Answer::Reject { reason, by }).await?;
            println!(
                "rejected {} ({} {})",
                build.id(),
                build.stack_name,
                build.version
            );
            Ok(0)
        }
    }
}

enum Answer {
    Approve { by: String },
    Reject { reason: String, by: String },
}

/// Completes the approval task the build's execution waits on.
async fn answer(aws: &aws_config::SdkConfig, build: &Build, answer: Answer) -> anyhow::Result<()> {
    let token = build
        .approval_token
        .clone()
        .context("build has no approval token yet; try again in a moment")?;
    let sfn = aws_sdk_sfn::Client::new(aws);
    match answer {
        Answer::Approve { by } => sfn
            .send_task_success()
            .task_token(token)
            .output(serde_json::json!({"approved_by": by}).to_string())
            .send()
            .await
            .map(|_| ())
            .context("sending the approval to Step Functions"),
        Answer::Reject { reason, by } => sfn
            .send_task_failure()
            .task_token(token)
            .error("Rejected")
            .cause(format!("{reason} (by {by})"))
            .send()
            .await
            .map(|_| ())
            .context("sending the rejection to Step Functions"),
    }
}

async fn find(
    store: &BuildStore,
    repo: &str,
    env: &str,
    sk: Option<&str>,
) -> anyhow::Result<Build> {
    match sk {
        Some(sk) => store
            .get(&BuildKey {
                repo: repo.to_owned(),
                env: env.to_owned(),
                sk: sk.to_owned(),
            })
            .await?
            .with_context(|| format!("no build {repo}/{env}/{sk} in {}", store.table())),
        None => store
            .latest(repo, env)
            .await?
            .with_context(|| format!("no builds of {repo} in {env} (table {})", store.table())),
    }
}

/// The named build, or the newest one awaiting approval.
async fn awaiting(
    store: &BuildStore,
    repo: &str,
    env: &str,
    sk: Option<&str>,
) -> anyhow::Result<Build> {
    let build = match sk {
        Some(_) => find(store, repo, env, sk).await?,
        None => {
            let page = store.list(repo, env, 50, None).await?;
            page.builds
                .into_iter()
                .find(|b| b.status == BuildStatus::AwaitingApproval)
                .with_context(|| format!("no build of {repo} in {env} is awaiting approval"))?
        }
    };
    if build.status != BuildStatus::AwaitingApproval {
        bail!(
            "build {} is {}, not AWAITING_APPROVAL",
            build.id(),
            build.status
        );
    }
    Ok(build)
}

async fn watch(store: &BuildStore, key: BuildKey, timeout: Duration) -> anyhow::Result<i32> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last: Option<BuildStatus> = None;
    loop {
        let build = store
            .get(&key)
            .await?
            .with_context(|| format!("build {}/{}/{} disappeared", key.repo, key.env, key.sk))?;
        if last.is_none() && build.status != BuildStatus::Pending {
            // Every build starts PENDING; show it even if it was brief.
            println!("{}  {}  {:<17}", build.created_at, build.id(), "PENDING");
        }
        if last != Some(build.status) {
            let detail = match build.status {
                BuildStatus::InProgress => build
                    .execution_arn
                    .clone()
                    .map(|a| format!("execution {a}")),
                BuildStatus::AwaitingApproval => Some(format!(
                    "run: deployer approve {} {} --env {}   (or: deployer reject ...)",
                    build.repo, build.sk, build.env
                )),
                BuildStatus::Success if build.no_changes == Some(true) => {
                    Some("no changes".to_owned())
                }
                _ => build.error_msg.clone(),
            };
            println!(
                "{}  {}  {:<17} {}",
                build.updated_at,
                build.id(),
                build.status.as_str(),
                detail.unwrap_or_default()
            );
            last = Some(build.status);
        }
        if build.status.is_terminal() {
            return Ok(if build.status == BuildStatus::Success {
                0
            } else {
                1
            });
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "build {} still {} after {:?}",
                build.id(),
                build.status,
                timeout
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A build without its task token (the token is a credential).
fn public_view(build: &Build) -> serde_json::Value {
    let mut value = serde_json::to_value(build).unwrap_or_default();
    if let Some(map) = value.as_object_mut() {
        map.remove("approval_token");
    }
    value
}

fn print_build(build: &Build) {
    println!("build       {}", build.id());
    println!("status      {}", build.status);
    println!("stack       {}", build.stack_name);
    println!(
        "version     {} (build {}, commit {})",
        build.version, build.build_number, build.commit_hash
    );
    println!("branch      {}", build.branch);
    println!(
        "artifacts   s3://{}/{}",
        build.artifact_bucket, build.artifact_prefix
    );
    if let Some(arn) = &build.execution_arn {
        println!("execution   {arn}");
    }
    if let Some(error) = &build.error_msg {
        println!("error       {error}");
    }
    if let Some(summary) = &build.change_summary {
        println!("changes     {summary}");
    }
    if build.no_changes == Some(true) {
        println!("result      no changes");
    }
    println!("created     {}", build.created_at);
    println!("updated     {}", build.updated_at);
    if let Some(finished) = &build.finished_at {
        println!("finished    {finished}");
    }
    for (name, value) in &build.parameters {
        println!("param       {name}={value}");
    }
}
