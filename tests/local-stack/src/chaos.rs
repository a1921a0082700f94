//! `make chaos`: N stack builds, N ECS redeploys and N site deploys at once,
//! under faults drawn from one seed, then a count of what was lost, left
//! stuck, done twice or done out of order.
//!
//! The faults are the local stack's own (docs/local-stack.md, "Faults"):
//! throttles and 5xx on the AWS calls of every function and of the state
//! machine, answers held past ci-dispatch's timeout, crashes at chosen log
//! lines, and a CloudFormation that takes its time. The seed drives the
//! fault engine's RNG and every choice made here, and is printed, so a
//! run can be replayed (`make chaos SEED=…`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use builddao::BuildStatus;
use serde_json::json;

use crate::emulator::{wait_until, Emulator};
use crate::faults::{Caller, FaultKind, FaultRule};
use crate::pipeline::{Pipeline, PipelineOptions};
use crate::sample_repo::SampleRepo;

/// What a chaos run is asked to do.
#[derive(Debug, Clone)]
pub struct ChaosPlan {
    pub seed: u64,
    /// How many builds, ECS events and site deploys each.
    pub count: usize,
    pub profile: String,
    pub log_dir: Option<std::path::PathBuf>,
}

/// ci-dispatch's timeout in the run (the template says 60 s): held answers
/// outlast it.
const DISPATCH_TIMEOUT: Duration = Duration::from_secs(4);
const HELD_ANSWER: Duration = Duration::from_secs(6);
/// How long everything gets to settle after the last trigger.
const SETTLE: Duration = Duration::from_secs(300);

/// The outcome counts of one kind of work.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub outcomes: BTreeMap<String, usize>,
    pub lost: usize,
    pub stuck: usize,
    pub duplicated: usize,
    pub out_of_order: usize,
    /// One line per problem, naming the work item.
    pub problems: Vec<String>,
    /// Why work that failed (as it may under faults) failed.
    pub failures: Vec<String>,
}

impl Tally {
    fn outcome(&mut self, name: &str) {
        *self.outcomes.entry(name.to_owned()).or_insert(0) += 1;
    }
}

/// Everything a run found.
#[derive(Debug, Default)]
pub struct ChaosReport {
    pub seed: u64,
    pub faults: BTreeMap<String, usize>,
    pub builds: Tally,
    pub events: Tally,
    pub sites: Tally,
    /// Invocations Lambda gave up on after its retries (kept, not lost).
    pub dead_letters: usize,
    pub elapsed: Duration,
}

impl ChaosReport {
    pub fn faults_injected(&self) -> usize {
        self.faults.values().sum()
    }

    fn totals(&self) -> [usize; 4] {
        let all = [&self.builds, &self.events, &self.sites];
        [
            all.iter().map(|t| t.lost).sum(),
            all.iter().map(|t| t.stuck).sum(),
            all.iter().map(|t| t.duplicated).sum(),
            all.iter().map(|t| t.out_of_order).sum(),
        ]
    }

    /// True when nothing was lost, stuck, doubled or out of order.
    pub fn clean(&self) -> bool {
        self.totals() == [0; 4]
    }

    /// The tables and the closing line `make chaos` prints.
    pub fn render(&self, count: usize) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "\nfaults injected (seed {}, {:.0} s)\n",
            self.seed,
            self.elapsed.as_secs_f64()
        ));
        out.push_str(&format!("  {:<58} {:>5}\n", "kind", "count"));
        for (kind, n) in &self.faults {
            out.push_str(&format!("  {kind:<58} {n:>5}\n"));
        }
        out.push_str("\noutcomes\n");
        out.push_str(&format!(
            "  {:<12} {:<44} {:>4} {:>5} {:>4} {:>5}\n",
            "work", "ended", "lost", "stuck", "dup", "order"
        ));
        for (name, tally) in [
            ("builds", &self.builds),
            ("ECS events", &self.events),
            ("site deploys", &self.sites),
        ] {
            let ended = tally
                .outcomes
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ");
            out.push_str(&format!(
                "  {name:<12} {ended:<44} {:>4} {:>5} {:>4} {:>5}\n",
                tally.lost, tally.stuck, tally.duplicated, tally.out_of_order
            ));
        }
        for tally in [&self.builds, &self.events, &self.sites] {
            for failure in &tally.failures {
                out.push_str(&format!("  - {failure}\n"));
            }
            for problem in &tally.problems {
                out.push_str(&format!("  ! {problem}\n"));
            }
        }
        out.push_str(&format!(
            "  invocations given up after retries (dead letters): {}\n",
            self.dead_letters
        ));
        let [lost, stuck, duplicated, out_of_order] = self.totals();
        out.push_str(&format!(
            "\nchaos: {} faults injected, {count} builds, {count} events, {count} site deploys; lost {lost}, stuck {stuck}, duplicated {duplicated}, out of order {out_of_order}\n",
            self.faults_injected()
        ));
        out
    }
}

/// Brings up a pipeline, arms the faults, runs the three workloads at once
/// and tallies what happened.
pub async fn run(root: &std::path::Path, plan: &ChaosPlan) -> anyhow::Result<ChaosReport> {
    let started = Instant::now();
    let mut rng = fastrand::Rng::with_seed(plan.seed);
    let repo = SampleRepo::create(root, &std::env::temp_dir())?;
    let emulator = Arc::new(
        Emulator::start(
            root,
            plan.log_dir.as_ref().map(|dir| dir.join("chaos-moto.log")),
        )
        .await?,
    );
    emulator.enable_state_machine_execution().await?;
    let mut options = PipelineOptions::new(root.to_path_buf(), "dev")
        .parameter("PollIntervalSeconds", "1")
        .parameter("ProjectName", "shop");
    options.profile = plan.profile.clone();
    options.log_dir = plan.log_dir.clone();
    options.site_repo = Some(repo.dir.clone());
    options.cloudformation_pace = Duration::from_millis(300 + rng.u64(0..700));
    options
        .timeouts
        .push(("CiDispatchFunction".into(), DISPATCH_TIMEOUT));
    options.async_retry_delay = Duration::from_millis(500);
    let pipeline = Pipeline::start(emulator.clone(), options).await?;
    pipeline.ecs_fixture("shop", &[("api", 2)]).await?;
    // The site's first deploy, before the weather turns.
    let first = repo.head()?;
    push_site(&pipeline, &first, "chaos-base").await?;
    wait_site_settled(
        &pipeline,
        std::slice::from_ref(&first),
        Duration::from_secs(120),
    )
    .await?;

    arm_faults(&pipeline, &mut rng, plan).await?;

    let (builds, events, sites) = tokio::join!(
        run_builds(
            &pipeline,
            root,
            plan.log_dir.as_deref(),
            fastrand::Rng::with_seed(rng.u64(..)),
            plan.count
        ),
        run_events(&pipeline, fastrand::Rng::with_seed(rng.u64(..)), plan.count),
        run_sites(
            &pipeline,
            &repo,
            fastrand::Rng::with_seed(rng.u64(..)),
            plan.count
        ),
    );
    let mut report = ChaosReport {
        seed: plan.seed,
        builds: builds?,
        events: events?,
        sites: sites?,
        ..ChaosReport::default()
    };
    for fault in emulator.faults().injected().await? {
        let kind = format!(
            "{} {} {} {}",
            fault.kind,
            caller_name(&fault.caller),
            fault.service,
            fault.operation
        );
        *report.faults.entry(kind).or_insert(0) += 1;
    }
    for (function, crashes) in [
        ("ci-dispatch", pipeline.ci_dispatch.crashes()),
        ("site-build", pipeline.site_build.crashes()),
    ] {
        if crashes > 0 {
            report.faults.insert(
                format!("crash {function} (at a log line)"),
                crashes as usize,
            );
        }
    }
    report.dead_letters = pipeline.dead_letters.all().len();
    report.elapsed = started.elapsed();
    pipeline.stop().await;
    Ok(report)
}

fn caller_name(caller: &str) -> &str {
    match caller {
        crate::faults::STATE_MACHINE_CALLER => "state-machine",
        other => other.strip_prefix("dev-deployer-").unwrap_or(other),
    }
}

/// Probabilistic rules for every caller, plus crashes at chosen lines.
async fn arm_faults(
    pipeline: &Pipeline,
    rng: &mut fastrand::Rng,
    plan: &ChaosPlan,
) -> anyhow::Result<()> {
    let faults = pipeline.emulator.faults();
    faults.seed(plan.seed).await?;
    let function = |short: &str| Caller::function(format!("dev-deployer-{short}"));
    let rules = [
        (
            Caller::StateMachine,
            "cloudformation",
            "DescribeStacks",
            FaultKind::Throttle,
            0.15,
        ),
        (
            Caller::StateMachine,
            "cloudformation",
            "DescribeChangeSet",
            FaultKind::Throttle,
            0.15,
        ),
        (
            Caller::StateMachine,
            "cloudformation",
            "CreateChangeSet",
            FaultKind::ServerError,
            0.1,
        ),
        (
            Caller::StateMachine,
            "cloudformation",
            "ExecuteChangeSet",
            FaultKind::ServerError,
            0.1,
        ),
        (
            Caller::StateMachine,
            "dynamodb",
            "UpdateItem",
            FaultKind::Throttle,
            0.1,
        ),
        (
            Caller::StateMachine,
            "dynamodb",
            "GetItem",
            FaultKind::Throttle,
            0.1,
        ),
        (
            function("s3-trigger"),
            "dynamodb",
            "*",
            FaultKind::Throttle,
            0.1,
        ),
        (
            function("s3-trigger"),
            "s3",
            "GetObject",
            FaultKind::ServerError,
            0.1,
        ),
        (
            function("trigger-build"),
            "states",
            "StartExecution",
            FaultKind::Throttle,
            0.15,
        ),
        (
            function("trigger-build"),
            "dynamodb",
            "UpdateItem",
            FaultKind::Throttle,
            0.1,
        ),
        (
            function("ci-dispatch"),
            "ecs",
            "UpdateService",
            FaultKind::Throttle,
            0.1,
        ),
        (
            function("ci-dispatch"),
            "ecs",
            "DescribeTaskDefinition",
            FaultKind::ServerError,
            0.1,
        ),
        (
            function("ci-dispatch"),
            "dynamodb",
            "*",
            FaultKind::Throttle,
            0.1,
        ),
        (
            function("site-build"),
            "dynamodb",
            "*",
            FaultKind::Throttle,
            0.05,
        ),
        (
            function("site-build"),
            "s3",
            "PutObject",
            FaultKind::Throttle,
            0.05,
        ),
    ];
    for (caller, service, operation, kind, p) in rules {
        faults
            .add(FaultRule::new(caller, service, operation, kind).probability(p))
            .await?;
    }
    // Answers held past ci-dispatch's timeout: the redeploy happened, the
    // invocation never learns it and is retried.
    faults
        .add(
            FaultRule::new(
                function("ci-dispatch"),
                "ecs",
                "UpdateService",
                FaultKind::DelayResponse(HELD_ANSWER),
            )
            .probability(0.3)
            .times(1 + rng.u32(0..2)),
        )
        .await?;
    // Crashes right after a redeploy, and in the middle of site builds.
    pipeline
        .ci_dispatch
        .crash_at_log("deployment started", 1 + rng.u32(0..2));
    pipeline
        .site_build
        .crash_at_log("npm run build starts", 1 + rng.u32(0..2));
    pipeline
        .site_build
        .crash_at_log("uploading the deploy", rng.u32(0..2));
    Ok(())
}

// ---------------------------------------------------------------- builds

async fn run_builds(
    pipeline: &Pipeline,
    root: &std::path::Path,
    log_dir: Option<&std::path::Path>,
    mut rng: fastrand::Rng,
    count: usize,
) -> anyhow::Result<Tally> {
    let template = std::fs::read(root.join("examples/sample-app/cloudformation.template"))
        .context("reading the sample app's template")?;
    let repos = ["alpha", "beta"];
    let mut uploaded: Vec<(String, u64, String)> = Vec::new();
    let mut numbers: HashMap<&str, u64> = HashMap::new();
    for i in 0..count {
        let repo = repos[rng.usize(0..repos.len())];
        let number = numbers.entry(repo).or_insert(0);
        *number += 1;
        let version = format!("{number}.{:07x}", rng.u32(..) & 0xfff_ffff);
        let prefix = format!("{repo}/main/{version}/");
        let params = json!({"Greeting": version}).to_string().into_bytes();
        pipeline
            .upload(
                &prefix,
                &[
                    ("cloudformation.template", template.clone()),
                    ("cloudformation-params.json", params),
                ],
            )
            .await
            .with_context(|| format!("upload {i}"))?;
        uploaded.push((repo.to_owned(), *number, version));
        // Some uploads land in the same second as the one before.
        if rng.f32() < 0.6 {
            tokio::time::sleep(Duration::from_millis(rng.u64(200..1500))).await;
        }
    }

    let store = pipeline.builds();
    let deadline = Instant::now() + SETTLE;
    let mut tally = Tally::default();
    let mut all = Vec::new();
    loop {
        all.clear();
        for repo in repos {
            all.extend(store.list(repo, "dev", 100, None).await?.builds);
        }
        let settled = uploaded.iter().all(|(repo, _, version)| {
            all.iter()
                .any(|b| &b.repo == repo && &b.version == version && b.status.is_terminal())
        });
        if settled || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    for (repo, _, version) in &uploaded {
        let records: Vec<_> = all
            .iter()
            .filter(|b| &b.repo == repo && &b.version == version)
            .collect();
        match records.as_slice() {
            [] => {
                tally.lost += 1;
                tally
                    .problems
                    .push(format!("build {repo} {version}: no build record"));
            }
            [build] if !build.status.is_terminal() => {
                tally.stuck += 1;
                tally.problems.push(format!(
                    "build {repo} {version}: still {} after {} s",
                    build.status,
                    SETTLE.as_secs()
                ));
            }
            [build] => {
                tally.outcome(build.status.as_str());
                if build.status == BuildStatus::Failed {
                    tally.failures.push(format!(
                        "build {repo} {version} FAILED: {}",
                        build.error_msg.as_deref().unwrap_or("no reason recorded")
                    ));
                }
            }
            more => {
                tally.duplicated += more.len() - 1;
                tally.problems.push(format!(
                    "build {repo} {version}: {} build records",
                    more.len()
                ));
            }
        }
    }
    // The newest successful version of each stack is the one deployed, and
    // nothing newer than it was superseded.
    let cfn = aws_sdk_cloudformation::Client::new(&pipeline.sdk);
    for repo in repos {
        let mine: Vec<_> = all.iter().filter(|b| b.repo == repo).collect();
        let Some(newest_ok) = mine
            .iter()
            .filter(|b| b.status == BuildStatus::Success)
            .max_by_key(|b| b.build_number)
        else {
            continue;
        };
        let deployed = stack_parameter(&cfn, &format!("dev-{repo}"), "Greeting").await;
        if deployed.as_deref() != Some(newest_ok.version.as_str()) {
            tally.out_of_order += 1;
            let mut builds: Vec<_> = mine.iter().collect();
            builds.sort_by_key(|b| b.sk.clone());
            let history: Vec<String> = builds
                .iter()
                .map(|b| {
                    format!(
                        "{} {}{} at {}",
                        b.version,
                        b.status,
                        if b.no_changes == Some(true) {
                            " (no changes)"
                        } else {
                            ""
                        },
                        b.finished_at.as_deref().unwrap_or("-")
                    )
                })
                .collect();
            tally.problems.push(format!(
                "stack dev-{repo} runs {deployed:?}, the newest successful build is {}; its builds by key: {}",
                newest_ok.version,
                history.join(", ")
            ));
            if let Err(err) = diagnose(pipeline, log_dir, repo, &builds).await {
                tally.problems.push(format!(
                    "could not write the diagnosis of dev-{repo}: {err:#}"
                ));
            }
        }
        let newest = mine.iter().max_by_key(|b| b.build_number);
        if let Some(newest) = newest.filter(|b| b.status == BuildStatus::Superseded) {
            tally.out_of_order += 1;
            tally.problems.push(format!(
                "build {repo} {}: the newest upload was superseded",
                newest.version
            ));
        }
    }
    Ok(tally)
}

/// Writes what the pipeline knows about a stack that ended out of order
/// (its builds with their histories, its lock item, each execution's
/// states in order) to `chaos-diagnosis-{repo}.json` in the log folder.
async fn diagnose(
    pipeline: &Pipeline,
    dir: Option<&std::path::Path>,
    repo: &str,
    builds: &[&&builddao::Build],
) -> anyhow::Result<()> {
    let Some(dir) = dir else {
        return Ok(());
    };
    let store = pipeline.builds();
    let sfn = aws_sdk_sfn::Client::new(&pipeline.sdk);
    let mut out = Vec::new();
    for build in builds {
        let tracked = store.get_tracked(&build.key()).await?;
        let mut states = Vec::new();
        if let Some(arn) = &build.execution_arn {
            let history = sfn
                .get_execution_history()
                .execution_arn(arn)
                .max_results(1000)
                .send()
                .await?;
            for event in history.events() {
                let name = event
                    .state_entered_event_details()
                    .map(|d| d.name().to_owned())
                    .unwrap_or_default();
                states.push(format!("{} {:?} {name}", event.timestamp(), event.r#type()));
            }
        }
        out.push(json!({"build": format!("{tracked:?}"), "states": states}));
    }
    let lock = aws_sdk_dynamodb::Client::new(&pipeline.sdk)
        .get_item()
        .table_name(&pipeline.resources.stacks_table)
        .key(
            "stack_name",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("dev-{repo}")),
        )
        .send()
        .await?;
    let stacks = aws_sdk_cloudformation::Client::new(&pipeline.sdk)
        .describe_stacks()
        .send()
        .await?;
    let report = json!({
        "builds": out,
        "lock": format!("{:?}", lock.item()),
        "stacks": format!("{:?}", stacks.stacks()),
    });
    std::fs::write(
        dir.join(format!("chaos-diagnosis-{repo}.json")),
        serde_json::to_string_pretty(&report)?,
    )?;
    Ok(())
}

/// A deployed stack's parameter value (None: no such stack or parameter).
async fn stack_parameter(
    cfn: &aws_sdk_cloudformation::Client,
    stack: &str,
    name: &str,
) -> Option<String> {
    let described = cfn.describe_stacks().stack_name(stack).send().await.ok()?;
    described
        .stacks()
        .first()?
        .parameters()
        .iter()
        .find(|p| p.parameter_key() == Some(name))
        .and_then(|p| p.parameter_value())
        .map(str::to_owned)
}

// ---------------------------------------------------------------- events

async fn run_events(
    pipeline: &Pipeline,
    mut rng: fastrand::Rng,
    count: usize,
) -> anyhow::Result<Tally> {
    let digests: Vec<String> = (0..count)
        .map(|_| {
            format!(
                "sha256:{:016x}{:016x}{:016x}{:016x}",
                rng.u64(..),
                rng.u64(..),
                rng.u64(..),
                rng.u64(..)
            )
        })
        .collect();
    for digest in &digests {
        pipeline
            .put_events(&[json!({
                "source": "aws.ecr",
                "detail-type": "ECR Image Action",
                "detail": {"action-type": "PUSH", "result": "SUCCESS", "repository-name": "shop_service_api",
                           "image-digest": digest, "image-tag": "latest"}
            })])
            .await?;
        tokio::time::sleep(Duration::from_millis(rng.u64(100..800))).await;
    }
    let announced = |digest: &str| -> usize {
        pipeline
            .slack
            .received()
            .iter()
            .filter(|(_, body)| {
                body.to_string().contains(digest) && body.to_string().contains("Deploying")
            })
            .count()
    };
    let _ = wait_until("every ECR push redeployed", SETTLE, || async {
        Ok(digests.iter().all(|d| announced(d) > 0).then_some(()))
    })
    .await;
    // Let late retries show themselves before counting.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut tally = Tally::default();
    for digest in &digests {
        match announced(digest) {
            0 => {
                tally.lost += 1;
                tally
                    .problems
                    .push(format!("ECR push {digest}: never redeployed"));
            }
            1 => tally.outcome("redeployed once"),
            n => {
                tally.duplicated += n - 1;
                tally
                    .problems
                    .push(format!("ECR push {digest}: announced {n} times"));
            }
        }
    }
    // Redeploys that took effect: the UpdateService calls that reached ECS
    // and were not refused (answered 2xx, or answered late by a held fault).
    let effective = pipeline.ecs_proxy.forwarded("UpdateService").len();
    if effective > count {
        tally.duplicated += effective - count;
        tally.problems.push(format!(
            "{effective} UpdateService calls took effect for {count} pushes"
        ));
    }
    Ok(tally)
}

// ----------------------------------------------------------------- sites

async fn push_site(pipeline: &Pipeline, commit: &str, delivery: &str) -> anyhow::Result<()> {
    let push = json!({
        "ref": "refs/heads/main",
        "before": "0".repeat(40),
        "after": commit,
        "deleted": false,
        "repository": {"full_name": pipeline.site_resources.repository},
        "sender": {"login": "chaos"},
    });
    let (status, answer) = pipeline.github_webhook("push", delivery, &push).await?;
    anyhow::ensure!(
        status == 202 || status == 200,
        "the webhook for {commit} was answered {status}: {answer}"
    );
    Ok(())
}

fn site_store(pipeline: &Pipeline) -> sitedao::DeploymentStore {
    sitedao::DeploymentStore::new(
        aws_sdk_dynamodb::Client::new(&pipeline.sdk),
        &pipeline.site_resources.deployments_table,
    )
}

async fn wait_site_settled(
    pipeline: &Pipeline,
    commits: &[String],
    within: Duration,
) -> anyhow::Result<Vec<sitedao::Deployment>> {
    let store = site_store(pipeline);
    let deadline = Instant::now() + within;
    loop {
        let deployments = store.list("production", 200).await?;
        let settled = commits.iter().all(|c| {
            let mine: Vec<_> = deployments
                .iter()
                .filter(|d| d.commit.as_deref() == Some(c.as_str()))
                .collect();
            !mine.is_empty() && mine.iter().all(|d| d.status.is_terminal())
        });
        if settled || Instant::now() > deadline {
            return Ok(deployments);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn run_sites(
    pipeline: &Pipeline,
    repo: &SampleRepo,
    mut rng: fastrand::Rng,
    count: usize,
) -> anyhow::Result<Tally> {
    let mut commits = Vec::new();
    for i in 0..count {
        repo.write(
            "src/index.html",
            &format!("<h1>Hello</h1>\n<p>chaos deploy {i}</p>\n"),
        )?;
        let commit = repo.commit(&format!("chaos deploy {i}"))?;
        push_site(pipeline, &commit, &format!("chaos-push-{i}")).await?;
        commits.push(commit);
        // One deploy at a time: racing builds of one target are not this
        // issue's (the later pointer switch fails by design).
        wait_site_settled(pipeline, &commits[i..], Duration::from_secs(120)).await?;
        tokio::time::sleep(Duration::from_millis(rng.u64(0..500))).await;
    }
    let deployments = wait_site_settled(pipeline, &commits, SETTLE).await?;
    let mut tally = Tally::default();
    let mut newest_published = None;
    for (i, commit) in commits.iter().enumerate() {
        let mine: Vec<_> = deployments
            .iter()
            .filter(|d| d.commit.as_deref() == Some(commit.as_str()))
            .collect();
        if mine.is_empty() {
            tally.lost += 1;
            tally
                .problems
                .push(format!("site push {i} ({}): no deployment", &commit[..12]));
            continue;
        }
        let published = mine
            .iter()
            .filter(|d| d.status.as_str() == "PUBLISHED")
            .count();
        if published > 1 {
            tally.duplicated += published - 1;
            tally
                .problems
                .push(format!("site push {i}: published {published} times"));
        }
        if published > 0 {
            newest_published = Some(i);
        }
        for deployment in &mine {
            if deployment.status.is_terminal() {
                tally.outcome(deployment.status.as_str());
                if deployment.status.as_str() == "FAILED" {
                    tally.failures.push(format!(
                        "site push {i} FAILED: {}",
                        deployment.error.as_deref().unwrap_or("no reason recorded")
                    ));
                }
            } else {
                tally.stuck += 1;
                tally.problems.push(format!(
                    "site push {i}: still {} (deployment {})",
                    deployment.status, deployment.id
                ));
            }
        }
    }
    if let Some(newest) = newest_published {
        let page = pipeline
            .site
            .get(&crate::HostTarget::Production, "/")
            .await?;
        let marker = format!("chaos deploy {newest}");
        if !page.text().contains(&marker) {
            tally.out_of_order += 1;
            tally.problems.push(format!(
                "production does not serve push {newest}, the newest published one"
            ));
        }
    }
    Ok(tally)
}

/// Runs a chaos plan and prints its report; false when anything was lost,
/// stuck, doubled or out of order.
pub async fn run_and_print(root: &std::path::Path, plan: &ChaosPlan) -> anyhow::Result<bool> {
    println!(
        "chaos: seed {} ({} builds, {} ECS events, {} site deploys; replay with make chaos SEED={})",
        plan.seed, plan.count, plan.count, plan.count, plan.seed
    );
    let report = run(root, plan).await?;
    print!("{}", report.render(plan.count));
    Ok(report.clean())
}
