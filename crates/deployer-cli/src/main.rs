//! `deployer`: what is deployed where, follow builds and answer approvals
//! from a terminal or the loopback dashboard.
//!
//! It talks to whatever endpoint the AWS SDK environment points at
//! (`AWS_ENDPOINT_URL` for the local stack), with the operator's own
//! credentials.

use std::time::Duration;

use anyhow::Context;
use builddao::{Build, BuildKey, BuildStatus, BuildStore, StatusChange, TrackedBuild};
use clap::{Parser, Subcommand};
use outcome::{refused, Outcome};

mod dashboard;
mod invoke;
mod listing;
mod outcome;
mod records;
mod rollback;
mod service;
mod site;
mod table;

#[derive(Parser)]
#[command(
    name = "deployer",
    version,
    about = "Follow Deployer builds, answer approvals, roll stacks, services and the site back"
)]
struct Cli {
    /// Environment (install) to read and act on [default: dev; `status`
    /// and `dashboard` show every one of --envs when it is not given].
    #[arg(long, global = true, env = "DEPLOYER_ENV")]
    env: Option<String>,
    /// Environments `status` and `dashboard` show when --env is not given.
    #[arg(
        long,
        global = true,
        env = "DEPLOYER_ENVS",
        default_value = "dev,stg,prd",
        value_delimiter = ','
    )]
    envs: Vec<String>,
    /// ECS redeploy ledger table (default: {env}-deployer-service-deployments).
    #[arg(long, global = true, env = "DEPLOYER_SERVICE_TABLE")]
    service_table: Option<String>,
    /// The site repository (`owner/name`) whose deployments the site table
    /// holds (default: read from its newest production or staging deployment).
    #[arg(long, global = true, env = "DEPLOYER_SITE_REPOSITORY")]
    site_repository: Option<String>,
    /// Builds table (default: {env}-deployer-builds).
    #[arg(long, global = true, env = "DEPLOYER_BUILDS_TABLE")]
    table: Option<String>,
    /// Stacks table (default: {env}-deployer-stacks).
    #[arg(long, global = true, env = "DEPLOYER_STACKS_TABLE")]
    stacks_table: Option<String>,
    /// Site deployments table (default: {env}-deployer-site-deployments).
    #[arg(long, global = true, env = "DEPLOYER_SITE_TABLE")]
    site_table: Option<String>,
    /// The site-build function (default: {env}-deployer-site-build).
    #[arg(long, global = true, env = "DEPLOYER_SITE_FUNCTION")]
    site_function: Option<String>,
    /// The ci-dispatch function (default: {env}-deployer-ci-dispatch).
    #[arg(long, global = true, env = "DEPLOYER_DISPATCH_FUNCTION")]
    dispatch_function: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// What is live in each environment: every stack, service and site with
    /// its version, since when and by whom, and what is in flight or awaits
    /// approval.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// A target's deployments, newest first: `stack:REPO`, `service:NAME`,
    /// `site:TARGET` (production, staging, preview/SLUG), or the bare name.
    History {
        target: String,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Continue after this deployment id (printed by the previous page).
        #[arg(long)]
        after: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Serve the dashboard on 127.0.0.1 with your AWS credentials: the
    /// environments x targets grid, histories, approvals and charts.
    Dashboard {
        /// Port on 127.0.0.1 (0: any free port).
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Seconds between two refreshes of the grid in the page.
        #[arg(long, default_value_t = 10)]
        refresh: u64,
    },
    /// Inspect builds.
    #[command(subcommand)]
    Builds(BuildsCommand),
    /// The static site: deployments, approvals, rollback.
    #[command(subcommand)]
    Site(site::SiteCommand),
    /// ECS services: roll one back to its previous task definition.
    #[command(subcommand)]
    Service(service::ServiceCommand),
    /// Approve a build that waits for approval (the newest one if no build id is given).
    Approve {
        repo: String,
        build: Option<String>,
        /// Who approves (recorded in the execution).
        #[arg(long, env = "USER", default_value = "unknown")]
        by: String,
    },
    /// Roll a stack back: a new build of an earlier successful build (by
    /// default the newest one of another version before what is deployed),
    /// deployed through the state machine like any other build.
    Rollback {
        repo: String,
        /// The build to go back to (a build id from `deployer builds list`).
        #[arg(long)]
        to: Option<String>,
        #[arg(long, default_value = "rolled back from the command line")]
        reason: String,
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
    /// Follow a build to its end, printing every transition from its
    /// history (also those between two reads). Exits 0 on SUCCESS, 1 when
    /// it ends otherwise, 3 when --timeout passes first.
    Watch {
        repo: String,
        build: Option<String>,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 3600)]
        timeout: u64,
        /// Seconds between two reads of the build.
        #[arg(long, default_value_t = 2)]
        interval: u64,
        /// One JSON object per transition: {"build", "status", "at", "reason"}.
        #[arg(long)]
        json: bool,
    },
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let outcome = match run(cli).await {
        Ok(outcome) => outcome,
        Err(err) => {
            eprintln!("error: {err:#}");
            Outcome::of_error(&err)
        }
    };
    std::process::exit(outcome.code());
}

impl Cli {
    fn env(&self) -> &str {
        self.env.as_deref().unwrap_or("dev")
    }

    /// The environments `status` and the dashboard show.
    fn shown_envs(&self) -> Vec<String> {
        match &self.env {
            Some(env) => vec![env.clone()],
            None => self.envs.clone(),
        }
    }

    /// One install's tables: the names given on the command line for the
    /// --env install, `{env}-deployer-*` otherwise.
    fn install(&self, aws: &aws_config::SdkConfig, env: &str) -> records::Install {
        let given = self.env.as_deref() == Some(env);
        let name = |explicit: &Option<String>, suffix: &str| match explicit {
            Some(table) if given => table.clone(),
            _ => format!("{env}-deployer-{suffix}"),
        };
        let dynamodb = aws_sdk_dynamodb::Client::new(aws);
        records::Install {
            env: env.to_owned(),
            region: aws
                .region()
                .map_or_else(|| "us-east-1".to_owned(), |r| r.to_string()),
            builds: BuildStore::new(dynamodb.clone(), name(&self.table, "builds")),
            services: ledger::ServiceDeploymentStore::new(
                dynamodb.clone(),
                name(&self.service_table, "service-deployments"),
            ),
            sites: sitedao::DeploymentStore::new(
                dynamodb,
                name(&self.site_table, "site-deployments"),
            ),
            site: self
                .site_repository
                .clone()
                .filter(|_| given || self.env.is_none()),
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<Outcome> {
    let aws = aws_config::load_from_env().await;
    let table = cli
        .table
        .clone()
        .unwrap_or_else(|| format!("{}-deployer-builds", cli.env()));
    let store = BuildStore::new(aws_sdk_dynamodb::Client::new(&aws), table);
    let env = cli.env();
    match &cli.command {
        Command::Status { json } => {
            let installs: Vec<_> = cli
                .shown_envs()
                .iter()
                .map(|env| cli.install(&aws, env))
                .collect();
            listing::status(&installs, *json).await
        }
        Command::History {
            target,
            limit,
            after,
            json,
        } => {
            let install = cli.install(&aws, env);
            listing::history(&install, target, *limit, after.as_deref(), *json).await
        }
        Command::Dashboard { port, refresh } => {
            let installs: Vec<_> = cli
                .shown_envs()
                .iter()
                .map(|env| cli.install(&aws, env))
                .collect();
            dashboard::serve(
                &aws,
                installs,
                dashboard::Options {
                    port: *port,
                    refresh_seconds: *refresh,
                },
            )
            .await
        }
        Command::Site(command) => {
            let context = site::SiteContext {
                env: env.to_owned(),
                table: cli.site_table.clone(),
                function: cli.site_function.clone(),
            };
            site::run(&aws, context, command.clone()).await
        }
        Command::Service(command) => {
            let context = service::ServiceContext {
                env: env.to_owned(),
                ledger: cli.install(&aws, env).services,
                function: cli
                    .dispatch_function
                    .clone()
                    .unwrap_or_else(|| format!("{env}-deployer-ci-dispatch")),
            };
            service::run(&aws, context, command.clone()).await
        }
        Command::Builds(BuildsCommand::List {
            repo,
            limit,
            after,
            json,
        }) => {
            let page = store.list(repo, env, *limit, after.as_deref()).await?;
            if *json {
                let view = BuildPage {
                    builds: page.builds.iter().map(BuildView::of).collect(),
                    next: page.next.clone(),
                };
                println!("{}", serde_json::to_string(&view)?);
            } else {
                let now = time::OffsetDateTime::now_utc();
                let person = listing::for_a_person();
                let mut rows = table::Table::new(&[
                    "BUILD", "STATUS", "VERSION", "BRANCH", "CREATED", "STACK",
                ]);
                for build in &page.builds {
                    let created = ledger::parse_time(&build.created_at).map_or_else(
                        || build.created_at.clone(),
                        |at| table::when(at, now, person),
                    );
                    rows.row(vec![
                        build.sk.clone(),
                        build.status.as_str().to_owned(),
                        build.version.clone(),
                        build.branch.clone(),
                        created,
                        build.stack_name.clone(),
                    ]);
                }
                print!("{}", rows.render());
                if let Some(next) = page.next {
                    eprintln!("more: deployer builds list {repo} --env {env} --after {next}");
                }
            }
            Ok(Outcome::Success)
        }
        Command::Builds(BuildsCommand::Show { repo, build, json }) => {
            let build = find(&store, repo, env, build.as_deref()).await?;
            let tracked = store
                .get_tracked(&build.key())
                .await?
                .unwrap_or(TrackedBuild {
                    build,
                    transitions: Vec::new(),
                });
            if *json {
                let mut view = BuildView::of(&tracked.build);
                let transitions: Vec<StatusChange> = tracked
                    .transitions
                    .iter()
                    .map(|c| StatusChange {
                        at: display_time(&c.at),
                        ..c.clone()
                    })
                    .collect();
                view.transitions = Some(transitions);
                println!("{}", serde_json::to_string_pretty(&view)?);
            } else {
                print_build(&tracked);
            }
            Ok(Outcome::Success)
        }
        Command::Builds(BuildsCommand::Watch {
            repo,
            build,
            timeout,
            interval,
            json,
        }) => {
            let build = find(&store, repo, env, build.as_deref()).await?;
            let every = Duration::from_secs((*interval).max(1));
            watch(
                &store,
                build.key(),
                Duration::from_secs(*timeout),
                every,
                *json,
            )
            .await
        }
        Command::Approve { repo, build, by } => {
            let build = awaiting(&store, repo, env, build.as_deref()).await?;
            answer(&aws, &build, Answer::Approve { by: by.clone() }).await?;
            println!(
                "approved {} ({} {})",
                build.id(),
                build.stack_name,
                build.version
            );
            Ok(Outcome::Success)
        }
        Command::Rollback {
            repo,
            to,
            reason,
            by,
        } => {
            let stacks_table = cli
                .stacks_table
                .clone()
                .unwrap_or_else(|| format!("{env}-deployer-stacks"));
            let (build, target) = rollback::request(
                &store,
                &aws_sdk_dynamodb::Client::new(&aws),
                &stacks_table,
                rollback::Request {
                    repo,
                    env,
                    to: to.as_deref(),
                    reason,
                    by,
                },
            )
            .await?;
            println!(
                "rollback build {} redeploys version {} (build {}) on {}",
                build.id(),
                target.version,
                target.sk,
                build.stack_name
            );
            eprintln!(
                "follow it: deployer builds watch {} {} --env {env}",
                build.repo, build.sk
            );
            Ok(Outcome::Success)
        }
        Command::Reject {
            repo,
            build,
            reason,
            by,
        } => {
            let build = awaiting(&store, repo, env, build.as_deref()).await?;
            answer(
                &aws,
                &build,
                Answer::Reject {
                    reason: reason.clone(),
                    by: by.clone(),
                },
            )
            .await?;
            println!(
                "rejected {} ({} {})",
                build.id(),
                build.stack_name,
                build.version
            );
            Ok(Outcome::Success)
        }
    }
}

pub enum Answer {
    Approve { by: String },
    Reject { reason: String, by: String },
}

/// Completes the approval task the build's execution waits on.
pub async fn answer(
    aws: &aws_config::SdkConfig,
    build: &Build,
    answer: Answer,
) -> anyhow::Result<()> {
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

pub async fn find(
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

/// The named build, or the newest one awaiting approval (or held by a
/// freeze window: an approval lets it through).
pub async fn awaiting(
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
                .find(|b| b.status.awaits_a_person())
                .ok_or_else(|| {
                    refused(format!("no build of {repo} in {env} is awaiting approval"))
                })?
        }
    };
    if !build.status.awaits_a_person() {
        return Err(refused(format!(
            "build {} is {}, not AWAITING_APPROVAL or AWAITING_WINDOW",
            build.id(),
            build.status
        )));
    }
    Ok(build)
}

async fn watch(
    store: &BuildStore,
    key: BuildKey,
    timeout: Duration,
    every: Duration,
    json: bool,
) -> anyhow::Result<Outcome> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut watcher = Watcher::default();
    loop {
        let tracked = store
            .get_tracked(&key)
            .await?
            .with_context(|| format!("build {}/{}/{} disappeared", key.repo, key.env, key.sk))?;
        let build = &tracked.build;
        for change in watcher.news(&tracked) {
            if json {
                let line = WatchLine {
                    build: build.id().to_string(),
                    status: change.status,
                    at: display_time(&change.at),
                    reason: &change.reason,
                };
                println!("{}", serde_json::to_string(&line)?);
            } else {
                println!(
                    "{}  {}  {:<17} {}",
                    display_time(&change.at),
                    build.id(),
                    change.status,
                    change.reason
                );
            }
        }
        if watcher.hint_approval(build) {
            let waiting = if build.status == BuildStatus::AwaitingWindow {
                "held by a freeze window"
            } else {
                "waiting for approval"
            };
            eprintln!(
                "{waiting}: deployer approve {} {} --env {}   (or: deployer reject ...)",
                build.repo, build.sk, build.env
            );
        }
        if build.status.is_terminal() {
            return Ok(if build.status == BuildStatus::Success {
                Outcome::Success
            } else {
                Outcome::Failure
            });
        }
        if tokio::time::Instant::now() > deadline {
            return Err(outcome::TimedOut(format!(
                "build {} still {} after {:?}",
                build.id(),
                build.status,
                timeout
            ))
            .into());
        }
        tokio::time::sleep(every).await;
    }
}

/// One transition as `builds watch --json` prints it.
#[derive(serde::Serialize)]
struct WatchLine<'a> {
    build: String,
    status: BuildStatus,
    at: String,
    reason: &'a str,
}

/// What `watch` has printed of a build so far.
#[derive(Debug, Default)]
struct Watcher {
    /// Entries of the build's history already printed.
    printed: usize,
    /// The last status printed (for builds without a history).
    last: Option<BuildStatus>,
    approval_hinted: bool,
}

impl Watcher {
    /// The transitions not printed yet: the build's history past what was
    /// printed, so none is lost between two reads. A build stored before
    /// histories were kept has none; its status fields stand in for it,
    /// and only the statuses seen at a read can be shown.
    fn news(&mut self, tracked: &TrackedBuild) -> Vec<StatusChange> {
        let build = &tracked.build;
        if tracked.transitions.is_empty() {
            let mut news = Vec::new();
            if self.last.is_none() && build.status != BuildStatus::Pending {
                news.push(StatusChange {
                    status: BuildStatus::Pending,
                    at: build.created_at.clone(),
                    reason: String::new(),
                });
            }
            if self.last != Some(build.status) {
                news.push(StatusChange {
                    status: build.status,
                    at: build.updated_at.clone(),
                    reason: legacy_reason(build),
                });
                self.last = Some(build.status);
            }
            return news;
        }
        let mut news: Vec<StatusChange> = tracked
            .transitions
            .iter()
            .skip(self.printed)
            .cloned()
            .collect();
        if self.printed == 0 {
            // The history started after the status was last read from
            // the fields (a build in flight when histories began): skip
            // what was already shown.
            while self.last.is_some() && news.first().map(|c| c.status) == self.last {
                news.remove(0);
            }
        }
        self.printed = tracked.transitions.len();
        if let Some(change) = news.last() {
            self.last = Some(change.status);
        }
        news
    }

    /// True once per approval wait, when the build waits for one.
    fn hint_approval(&mut self, build: &Build) -> bool {
        let waiting = build.status.awaits_a_person();
        let hint = waiting && !self.approval_hinted;
        self.approval_hinted = waiting;
        hint
    }
}

/// What the status fields say about a build without a history.
fn legacy_reason(build: &Build) -> String {
    let reason = match build.status {
        BuildStatus::InProgress => build
            .execution_arn
            .as_ref()
            .map(|a| format!("execution {a}")),
        BuildStatus::AwaitingApproval => build.change_summary.clone(),
        BuildStatus::Success if build.no_changes == Some(true) => Some("no changes".to_owned()),
        _ => build.error_msg.clone(),
    };
    reason.unwrap_or_default()
}

/// An RFC 3339 time as UTC (`2026-11-23T10:00:00Z`), whatever precision
/// and offset it was written with; as written if it does not parse.
fn display_time(at: &str) -> String {
    ledger::parse_time(at).map_or_else(|| at.to_owned(), ledger::rfc3339)
}

/// A build as `builds list --json` and `builds show --json` print it: the
/// fields it names, so a field added to `Build` (the approval task token is
/// a credential) is not shown until it is named here; its times in the one
/// format every listing uses.
#[derive(serde::Serialize)]
struct BuildView<'a> {
    pk: &'a str,
    sk: &'a str,
    repo: &'a str,
    env: &'a str,
    branch: &'a str,
    version: &'a str,
    build_number: u64,
    commit_hash: &'a str,
    status: BuildStatus,
    stack_name: &'a str,
    artifact_bucket: &'a str,
    artifact_prefix: &'a str,
    parameters: &'a std::collections::BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    execution_arn: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_msg: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    no_changes: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    change_summary: Option<&'a str>,
    created_at: String,
    updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    finished_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uploaded_by: Option<&'a str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    policy_warnings: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    rollback: Option<&'a builddao::Rollback>,
    /// `builds show` only: the build's history.
    #[serde(skip_serializing_if = "Option::is_none")]
    transitions: Option<Vec<StatusChange>>,
}

impl<'a> BuildView<'a> {
    fn of(build: &'a Build) -> Self {
        Self {
            pk: &build.pk,
            sk: &build.sk,
            repo: &build.repo,
            env: &build.env,
            branch: &build.branch,
            version: &build.version,
            build_number: build.build_number,
            commit_hash: &build.commit_hash,
            status: build.status,
            stack_name: &build.stack_name,
            artifact_bucket: &build.artifact_bucket,
            artifact_prefix: &build.artifact_prefix,
            parameters: &build.parameters,
            execution_arn: build.execution_arn.as_deref(),
            error_msg: build.error_msg.as_deref(),
            no_changes: build.no_changes,
            change_summary: build.change_summary.as_deref(),
            created_at: display_time(&build.created_at),
            updated_at: display_time(&build.updated_at),
            finished_at: build.finished_at.as_deref().map(display_time),
            uploaded_by: build.uploaded_by.as_deref(),
            policy_warnings: &build.policy_warnings,
            rollback: build.rollback.as_ref(),
            transitions: None,
        }
    }
}

/// `builds list --json`.
#[derive(serde::Serialize)]
struct BuildPage<'a> {
    builds: Vec<BuildView<'a>>,
    next: Option<String>,
}

fn print_build(tracked: &TrackedBuild) {
    let build = &tracked.build;
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
    println!("created     {}", display_time(&build.created_at));
    println!("updated     {}", display_time(&build.updated_at));
    if let Some(finished) = &build.finished_at {
        println!("finished    {}", display_time(finished));
    }
    for (name, value) in &build.parameters {
        println!("param       {name}={value}");
    }
    for change in &tracked.transitions {
        println!(
            "history     {}  {:<17} {}",
            display_time(&change.at),
            change.status,
            change.reason
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(status: BuildStatus) -> Build {
        let new = builddao::NewBuild {
            repo: "shop".into(),
            env: "prd".into(),
            branch: "main".into(),
            version: "1.abcd".into(),
            build_number: 1,
            commit_hash: "abcd".into(),
            artifact_bucket: "b".into(),
            artifact_prefix: "shop/main/1.abcd/".into(),
            parameters: Default::default(),
            uploaded_unix_ms: 1_800_000_000_000,
            origin: b"x".to_vec(),
            uploaded_by: None,
        };
        let mut build = new.into_build("2027-01-15T08:00:00Z".into());
        build.status = status;
        build
    }

    fn change(status: BuildStatus, reason: &str) -> StatusChange {
        StatusChange {
            status,
            at: "2027-01-15T08:00:01Z".into(),
            reason: reason.into(),
        }
    }

    fn statuses(changes: &[StatusChange]) -> Vec<BuildStatus> {
        changes.iter().map(|c| c.status).collect()
    }

    #[test]
    fn transitions_between_two_reads_are_all_printed_once() {
        use BuildStatus::*;
        let mut watcher = Watcher::default();
        let mut tracked = TrackedBuild {
            build: build(AwaitingApproval),
            transitions: vec![
                change(Pending, "uploaded"),
                change(InProgress, "started"),
                change(AwaitingApproval, "3 changes"),
            ],
        };
        assert_eq!(
            statuses(&watcher.news(&tracked)),
            [Pending, InProgress, AwaitingApproval]
        );
        assert!(
            watcher.news(&tracked).is_empty(),
            "nothing new, nothing printed"
        );
        // Approved and deployed before the next read: the status went
        // AWAITING_APPROVAL -> SUCCESS, the history says how.
        tracked.build.status = Success;
        tracked.transitions.push(change(InProgress, "approved"));
        tracked.transitions.push(change(Success, "deployed"));
        let news = watcher.news(&tracked);
        assert_eq!(statuses(&news), [InProgress, Success]);
        assert_eq!(news[0].reason, "approved");
    }

    #[test]
    fn builds_without_history_are_followed_by_their_status() {
        use BuildStatus::*;
        let mut watcher = Watcher::default();
        let mut tracked = TrackedBuild {
            build: build(InProgress),
            transitions: Vec::new(),
        };
        tracked.build.execution_arn = Some("arn:x".into());
        let news = watcher.news(&tracked);
        assert_eq!(statuses(&news), [Pending, InProgress]);
        assert_eq!(news[1].reason, "execution arn:x");
        assert!(watcher.news(&tracked).is_empty());
        // The machine's next write starts the history mid-flight.
        tracked.build.status = Failed;
        tracked.transitions = vec![
            change(InProgress, "waiting for the lock"),
            change(Failed, "boom"),
        ];
        assert_eq!(statuses(&watcher.news(&tracked)), [Failed]);
    }

    #[test]
    fn the_json_view_of_a_build_names_its_fields_and_never_the_token() {
        let mut waiting = build(BuildStatus::AwaitingApproval);
        waiting.approval_token = Some("secret-token".into());
        waiting.created_at = "2027-01-15T08:00:00.123456+00:00".into();
        let view = serde_json::to_value(BuildView::of(&waiting)).unwrap();
        let stored = serde_json::to_value(&waiting).unwrap();
        assert!(view.get("approval_token").is_none());
        assert!(!view.to_string().contains("secret-token"));
        assert_eq!(view["created_at"], "2027-01-15T08:00:00Z");
        // Every other field of the record is shown under its own name.
        for (name, value) in stored.as_object().unwrap() {
            if !matches!(name.as_str(), "approval_token" | "created_at") {
                assert_eq!(&view[name], value, "{name}");
            }
        }
    }

    #[test]
    fn the_approval_hint_is_given_once_per_wait() {
        let mut watcher = Watcher::default();
        let waiting = build(BuildStatus::AwaitingApproval);
        assert!(watcher.hint_approval(&waiting));
        assert!(!watcher.hint_approval(&waiting));
        assert!(!watcher.hint_approval(&build(BuildStatus::InProgress)));
        assert!(watcher.hint_approval(&waiting));
    }
}
