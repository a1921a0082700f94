//! The ledger of one install (one environment), read from the records the
//! functions write: stack builds, ECS redeploys, site deployments (see the
//! `ledger` crate). Every listing is newest first.

use std::collections::BTreeMap;

use anyhow::{bail, Context};
use builddao::{BuildKey, BuildStatus, BuildStore, TrackedBuild};
use ledger::{
    parse_time, Change, Deployment, Kind, Link, ServiceDeploymentStore, State, TargetRef,
};
use serde::Serialize;
use sitedao::{
    Deployment as SiteDeployment, DeploymentAction, DeploymentKey, DeploymentStatus,
    DeploymentStore,
};
use time::OffsetDateTime;

/// How many records of each kind `status` and the dashboard read at most
/// (the environment variable `DEPLOYER_RECENT_PER_KIND` sets another cap;
/// what the cap cuts off is said, never dropped silently).
pub const RECENT_PER_KIND: usize = 300;

/// [`RECENT_PER_KIND`], or `DEPLOYER_RECENT_PER_KIND` when set.
pub fn recent_per_kind() -> usize {
    std::env::var("DEPLOYER_RECENT_PER_KIND")
        .ok()
        .and_then(|n| n.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(RECENT_PER_KIND)
}

/// The deployments [`Install::recent`] read, newest first.
pub struct Recent {
    pub deployments: Vec<Deployment>,
    /// True when the cap per kind left older records unread: targets
    /// deployed only before them are missing.
    pub truncated: bool,
}

/// One install's tables.
#[derive(Clone)]
pub struct Install {
    pub env: String,
    pub region: String,
    pub builds: BuildStore,
    pub services: ServiceDeploymentStore,
    pub sites: DeploymentStore,
    /// The site repository (`owner/name`) the install publishes; `None`
    /// until known (see [`Install::site_name`]).
    pub site: Option<String>,
}

/// What one target looks like now.
#[derive(Debug, Clone, Serialize)]
pub struct TargetStatus {
    pub kind: Kind,
    pub target: String,
    /// The deployment whose version runs, if any.
    pub live: Option<Deployment>,
    /// The newest deployment, whatever its state.
    pub latest: Deployment,
    /// Deployments still to end (queued, in flight, awaiting approval).
    pub open: Vec<Deployment>,
}

/// One environment's targets.
#[derive(Debug, Clone, Serialize)]
pub struct EnvStatus {
    pub env: String,
    /// False when the install's builds table does not exist.
    pub installed: bool,
    pub targets: Vec<TargetStatus>,
    /// True when the cap on the records read cut older ones off: a
    /// target deployed only before them is not listed.
    pub truncated: bool,
}

fn missing_table(err: &(dyn std::error::Error + 'static)) -> bool {
    err.to_string().contains("ResourceNotFoundException")
}

impl Install {
    /// The site's name for the site index: as configured, else read from
    /// the newest production or staging deployment.
    async fn site_name(&self) -> anyhow::Result<Option<String>> {
        if self.site.is_some() {
            return Ok(self.site.clone());
        }
        for target in ["production", "staging"] {
            match self.sites.list(target, 1).await {
                Ok(found) => {
                    if let Some(d) = found.into_iter().next() {
                        return Ok(Some(d.site));
                    }
                }
                Err(err) if missing_table(&err) => return Ok(None),
                Err(err) => return Err(err.into()),
            }
        }
        Ok(None)
    }

    /// Whether the install exists (its builds table does).
    pub async fn installed(&self) -> anyhow::Result<bool> {
        match self.builds.list(".", &self.env, 1, None).await {
            Ok(_) => Ok(true),
            Err(err) if missing_table(&err) => Ok(false),
            Err(err) => Err(err.into()),
        }
    }

    /// Every kind's deployments started at or after `since` (all if
    /// `None`), at most `per_kind` of each kind, newest first.
    pub async fn recent(
        &self,
        per_kind: usize,
        since: Option<OffsetDateTime>,
    ) -> anyhow::Result<Recent> {
        let page = per_kind.clamp(1, 100) as i32;
        let mut truncated = false;
        let recent_enough = |d: &Deployment| since.is_none_or(|s| d.started_at >= s);
        let mut all = Vec::new();

        let mut after: Option<BuildKey> = None;
        let mut stacks = Vec::new();
        loop {
            let out = match self.builds.list_env(&self.env, page, after.as_ref()).await {
                Ok(out) => out,
                Err(err) if missing_table(&err) => break,
                Err(err) => return Err(err).context("reading stack builds"),
            };
            let before = stacks.len();
            stacks.extend(
                out.builds
                    .iter()
                    .map(|t| from_build(t, &self.region))
                    .take_while(recent_enough),
            );
            if stacks.len() - before < out.builds.len() {
                break;
            }
            if stacks.len() >= per_kind {
                truncated |= stacks.len() > per_kind || out.next.is_some();
                break;
            }
            match out.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        stacks.truncate(per_kind);
        all.extend(stacks);

        let mut after = None;
        let mut services = Vec::new();
        loop {
            let (records, next) = match self
                .services
                .page_env(&self.env, page, after.as_ref())
                .await
            {
                Ok(out) => out,
                Err(err) if missing_table(&err) => break,
                Err(err) => return Err(err).context("reading service redeploys"),
            };
            let before = services.len();
            services.extend(
                records
                    .iter()
                    .map(|r| with_dispatch_logs(r.to_deployment(), &self.region))
                    .take_while(recent_enough),
            );
            if services.len() - before < records.len() {
                break;
            }
            if services.len() >= per_kind {
                truncated |= services.len() > per_kind || next.is_some();
                break;
            }
            match next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        services.truncate(per_kind);
        all.extend(services);

        if let Some(site) = self.site_name().await? {
            let mut after: Option<DeploymentKey> = None;
            let mut sites = Vec::new();
            loop {
                let (records, next) = match self.sites.page_site(&site, page, after.as_ref()).await
                {
                    Ok(out) => out,
                    Err(err) if missing_table(&err) => break,
                    Err(err) => return Err(err).context("reading site deployments"),
                };
                let before = sites.len();
                sites.extend(
                    records
                        .iter()
                        .map(|d| from_site(d, &self.env, &self.region))
                        .take_while(recent_enough),
                );
                if sites.len() - before < records.len() {
                    break;
                }
                if sites.len() >= per_kind {
                    truncated |= sites.len() > per_kind || next.is_some();
                    break;
                }
                match next {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
            sites.truncate(per_kind);
            all.extend(sites);
        }
        all.sort_by_key(|d| std::cmp::Reverse(d.started_at));
        Ok(Recent {
            deployments: all,
            truncated,
        })
    }

    /// Which kind a target name is: the named one, or the only kind with
    /// deployments of that name.
    pub async fn resolve(&self, target: &TargetRef) -> anyhow::Result<Kind> {
        if let Some(kind) = target.kind {
            return Ok(kind);
        }
        let mut found = Vec::new();
        for kind in Kind::ALL {
            if !self
                .history(kind, &target.name, 1, None)
                .await?
                .0
                .is_empty()
            {
                found.push(kind);
            }
        }
        match found.as_slice() {
            [kind] => Ok(*kind),
            [] => bail!(
                "no deployments of {} in {} (a target is a stack's repo, an ECS service or a site target such as production)",
                target.name,
                self.env
            ),
            kinds => bail!(
                "{} names more than one target in {}: {}; name one",
                target.name,
                self.env,
                kinds
                    .iter()
                    .map(|k| format!("{k}:{}", target.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    /// One target's deployments, newest first, `limit` from after the
    /// deployment id `after`; with the id to continue after.
    pub async fn history(
        &self,
        kind: Kind,
        name: &str,
        limit: usize,
        after: Option<&str>,
    ) -> anyhow::Result<(Vec<Deployment>, Option<String>)> {
        let limit = limit.clamp(1, 1000) as i32;
        Ok(match kind {
            Kind::Stack => {
                let after = after.map(|sk| BuildKey {
                    repo: name.to_owned(),
                    env: self.env.clone(),
                    sk: sk.to_owned(),
                });
                match self
                    .builds
                    .list_tracked(name, &self.env, limit, after.as_ref())
                    .await
                {
                    Ok(page) => (
                        page.builds
                            .iter()
                            .map(|t| from_build(t, &self.region))
                            .collect(),
                        page.next.map(|k| k.sk),
                    ),
                    Err(err) if missing_table(&err) => (Vec::new(), None),
                    Err(err) => return Err(err).context("reading stack builds"),
                }
            }
            Kind::Service => match self.services.page_service(name, limit, after).await {
                Ok((records, next)) => (
                    records
                        .iter()
                        .map(|r| with_dispatch_logs(r.to_deployment(), &self.region))
                        .collect(),
                    next,
                ),
                Err(err) if missing_table(&err) => (Vec::new(), None),
                Err(err) => return Err(err).context("reading service redeploys"),
            },
            Kind::Site => match self.sites.page(name, limit, after).await {
                Ok((records, next)) => (
                    records
                        .iter()
                        .map(|d| from_site(d, &self.env, &self.region))
                        .collect(),
                    next,
                ),
                Err(err) if missing_table(&err) => (Vec::new(), None),
                Err(err) => return Err(err).context("reading site deployments"),
            },
        })
    }

    /// What is live, since when, by whom, and what is open, per target.
    pub async fn status(&self) -> anyhow::Result<EnvStatus> {
        if !self.installed().await? {
            return Ok(EnvStatus {
                env: self.env.clone(),
                installed: false,
                targets: Vec::new(),
                truncated: false,
            });
        }
        let recent = self.recent(recent_per_kind(), None).await?;
        let mut targets = Vec::new();
        for ((kind, target), deployments) in group_by_target(recent.deployments) {
            let mut live = live_of(&deployments);
            if live.is_none() && !deployments.iter().any(|d| d.state == State::Removed) {
                // Older than the window: look further back in its own history.
                let (older, _) = self.history(kind, &target, 200, None).await?;
                live = live_of(&older);
            }
            targets.push(TargetStatus {
                kind,
                target,
                live,
                latest: deployments[0].clone(),
                open: deployments
                    .iter()
                    .filter(|d| d.state.is_open())
                    .cloned()
                    .collect(),
            });
        }
        Ok(EnvStatus {
            env: self.env.clone(),
            installed: true,
            targets,
            truncated: recent.truncated,
        })
    }
}

/// Deployments (newest first) by target, targets in kind then name order.
pub fn group_by_target(recent: Vec<Deployment>) -> BTreeMap<(Kind, String), Vec<Deployment>> {
    let mut by_target: BTreeMap<(Kind, String), Vec<Deployment>> = BTreeMap::new();
    for d in recent {
        by_target
            .entry((d.kind, d.target.clone()))
            .or_default()
            .push(d);
    }
    by_target
}

/// The newest deployment that made something live, unless a removal came
/// after it.
pub fn live_of(newest_first: &[Deployment]) -> Option<Deployment> {
    newest_first
        .iter()
        .find(|d| matches!(d.state, State::Succeeded | State::Removed))
        .filter(|d| d.state == State::Succeeded)
        .cloned()
}

fn time_or_epoch(at: &str) -> OffsetDateTime {
    parse_time(at).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// A stack build as a ledger entry.
pub fn from_build(tracked: &TrackedBuild, region: &str) -> Deployment {
    let build = &tracked.build;
    let state = match build.status {
        BuildStatus::Pending => State::Queued,
        BuildStatus::InProgress => State::InFlight,
        BuildStatus::AwaitingApproval => State::AwaitingApproval,
        BuildStatus::AwaitingWindow => State::AwaitingWindow,
        BuildStatus::Success => State::Succeeded,
        BuildStatus::Failed => State::Failed,
        BuildStatus::Superseded => State::Superseded,
    };
    let started_at = time_or_epoch(&build.created_at);
    let finished_at = match &build.finished_at {
        Some(at) => parse_time(at),
        None if build.status.is_terminal() => parse_time(&build.updated_at),
        None => None,
    };
    let mut transitions: Vec<Change> = tracked
        .transitions
        .iter()
        .filter_map(|c| {
            Some(Change {
                status: c.status.as_str().to_owned(),
                at: parse_time(&c.at)?,
                reason: c.reason.clone(),
            })
        })
        .collect();
    if transitions.is_empty() {
        // Stored before histories were kept: what the fields say.
        transitions.push(Change {
            status: BuildStatus::Pending.as_str().to_owned(),
            at: started_at,
            reason: build.created_change().reason,
        });
        if build.status != BuildStatus::Pending {
            transitions.push(Change {
                status: build.status.as_str().to_owned(),
                at: time_or_epoch(&build.updated_at),
                reason: build.error_msg.clone().unwrap_or_default(),
            });
        }
    }
    let approver = transitions
        .iter()
        .rev()
        .find_map(|c| c.reason.strip_prefix("approved by ").map(str::to_owned));
    let mut links = vec![Link {
        label: "console".into(),
        url: format!(
            "https://{region}.console.aws.amazon.com/cloudformation/home?region={region}#/stacks?filteringText={}",
            build.stack_name
        ),
    }];
    if let Some(arn) = &build.execution_arn {
        links.push(Link {
            label: "execution".into(),
            url: format!(
                "https://{region}.console.aws.amazon.com/states/home?region={region}#/v2/executions/details/{arn}"
            ),
        });
    }
    // The deployment state machine's log group (the template's).
    links.push(Link::logs(
        region,
        &format!("/aws/vendedlogs/states/{}-deployer-deployment", build.env),
    ));
    Deployment {
        kind: Kind::Stack,
        target: build.repo.clone(),
        env: build.env.clone(),
        id: build.sk.clone(),
        version: build.version.clone(),
        status: build.status.as_str().to_owned(),
        state,
        trigger: format!(
            "upload s3://{}/{}",
            build.artifact_bucket, build.artifact_prefix
        ),
        by: approver.or_else(|| build.uploaded_by.clone()),
        branch: Some(build.branch.clone()),
        started_at,
        finished_at,
        duration_seconds: Deployment::duration_of(started_at, finished_at),
        reason: build.error_msg.clone(),
        transitions,
        links,
        parameters: build.parameters.clone(),
        change_summary: build.change_summary.clone(),
    }
}

/// A site deployment as a ledger entry (`env` is the install's).
/// A redeploy with ci-dispatch's log group, where its work is logged.
fn with_dispatch_logs(mut deployment: Deployment, region: &str) -> Deployment {
    let group = format!("/aws/lambda/{}-deployer-ci-dispatch", deployment.env);
    deployment.links.push(Link::logs(region, &group));
    deployment
}

pub fn from_site(d: &SiteDeployment, env: &str, region: &str) -> Deployment {
    let state = match d.status {
        DeploymentStatus::Queued => State::Queued,
        DeploymentStatus::AwaitingApproval => State::AwaitingApproval,
        DeploymentStatus::Building => State::InFlight,
        DeploymentStatus::Published => State::Succeeded,
        DeploymentStatus::Unchanged => State::Unchanged,
        DeploymentStatus::Failed => State::Failed,
        DeploymentStatus::Removed => State::Removed,
        DeploymentStatus::Superseded => State::Superseded,
    };
    let started_at = time_or_epoch(&d.created_at);
    let finished_at = match &d.finished_at {
        Some(at) => parse_time(at),
        None if d.status.is_terminal() => parse_time(&d.updated_at),
        None => None,
    };
    let mut transitions: Vec<Change> = d
        .transitions
        .iter()
        .filter_map(|c| {
            Some(Change {
                status: c.status.as_str().to_owned(),
                at: parse_time(&c.at)?,
                reason: c.reason.clone(),
            })
        })
        .collect();
    if transitions.is_empty() {
        transitions.push(Change {
            status: DeploymentStatus::Queued.as_str().to_owned(),
            at: started_at,
            reason: format!("{} by {}", d.origin, d.triggered_by),
        });
        if d.status != DeploymentStatus::Queued {
            transitions.push(Change {
                status: d.status.as_str().to_owned(),
                at: finished_at.unwrap_or_else(|| time_or_epoch(&d.updated_at)),
                reason: d.error.clone().unwrap_or_default(),
            });
        }
    }
    let commit = d.commit.as_deref().map(|c| c[..c.len().min(12)].to_owned());
    let version = match (d.action, commit) {
        (DeploymentAction::Remove, _) => "(removal)".to_owned(),
        (_, Some(commit)) => commit,
        (_, None) => "-".to_owned(),
    };
    let trigger = match d.action {
        DeploymentAction::Build => d.origin.clone(),
        DeploymentAction::Remove => format!("removal ({})", d.origin),
        DeploymentAction::Rollback => "rollback".to_owned(),
    };
    let label = if d.target.starts_with("preview/") {
        "preview"
    } else {
        "url"
    };
    Deployment {
        kind: Kind::Site,
        target: d.target.clone(),
        env: env.to_owned(),
        id: d.id.clone(),
        version,
        status: d.status.as_str().to_owned(),
        state,
        trigger,
        by: Some(
            d.approved_by
                .clone()
                .unwrap_or_else(|| d.triggered_by.clone()),
        ),
        branch: Some(d.branch.clone()),
        started_at,
        finished_at,
        duration_seconds: Deployment::duration_of(started_at, finished_at),
        reason: d.error.clone(),
        transitions,
        links: vec![
            Link {
                label: label.into(),
                url: d.url.clone(),
            },
            Link::logs(region, &format!("/aws/lambda/{env}-deployer-site-build")),
        ],
        parameters: Default::default(),
        change_summary: None,
    }
}
