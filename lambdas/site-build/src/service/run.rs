//! Running one deployment: claim it, build, publish, record, report.
//! Whatever goes wrong after the claim ends the record in FAILED with the
//! reason (and the build's log tail); the live deploy is only ever changed
//! by a complete publish.
//!
//! A run holds a lease on its BUILDING record ([`crate::lease`]). A run
//! that finds the record BUILDING under a lease whose attempt is gone (its
//! own request id: Lambda's retry; or an expired lease: the sweep) resumes
//! it from a clean state: a fresh work directory, the partial deploy of the
//! attempt before deleted unless it went live, in which case that publish
//! stands and is recorded. After [`MAX_ATTEMPTS`] interrupted attempts the
//! deployment ends FAILED, and GitHub and Slack are told either way.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{Notice, Outcome};
use sitedao::{
    new_deploy_id, now_epoch, Changes, Deployment, DeploymentAction, DeploymentKey,
    DeploymentStatus, Lease, Phase, PublishTarget, SeenLease, Transition,
};
use tracing::{info, warn};

use super::{ServiceError, SiteService};
use crate::build::SourceError;
use crate::builder::RemoteBuildError;
use crate::github_api::{DeploymentState, GitHubApi};
use crate::lease::{self, Budget, Decision, Interruption, Invocation, MAX_ATTEMPTS};
use crate::publish::{PublishError, Settled};
use crate::trigger::{Branch, Environment, Repository};

/// How a finished run went, before it is written down.
struct Finished {
    status: DeploymentStatus,
    changes: Changes,
    error: Option<String>,
}

impl Finished {
    /// Lost to `newer`: not an error, and nothing of this build went live.
    fn superseded(newer: &str, why: String) -> Self {
        Finished {
            status: DeploymentStatus::Superseded,
            // Not an error of the record: the reason is only reported.
            changes: Changes::default().set("superseded_by", newer),
            error: Some(why),
        }
    }

    fn failed(error: String, log_tail: Vec<String>, changes: Changes) -> Self {
        Finished {
            status: DeploymentStatus::Failed,
            changes: changes.set("error", &error).set("log_tail", &log_tail),
            error: Some(error),
        }
    }
}

/// The longest a prune after a publish may take.
const PRUNE_BUDGET: Duration = Duration::from_secs(30);

/// Newer deployments of a target looked at before resuming an old one.
const NEWER_LOOKED_AT: i32 = 20;

impl SiteService {
    /// Runs a deployment: a QUEUED one from the start, a BUILDING one whose
    /// attempt was interrupted from a clean state (or to its end, when no
    /// attempt is left). Anything else (finished, or BUILDING under a lease
    /// that still holds) is left alone, and the record is returned.
    pub async fn run(
        &self,
        key: &DeploymentKey,
        invocation: &Invocation,
    ) -> Result<Deployment, ServiceError> {
        let deployment = self.current(key).await?;
        let lease = match lease::decide(&deployment, invocation, now_epoch()) {
            Decision::NotRunnable => {
                info!(deployment = %key, status = %deployment.status, "not queued; nothing to run");
                return Ok(deployment);
            }
            Decision::Busy { holder, expires_at } => {
                info!(deployment = %key, holder = %holder, lease_expires_at = expires_at, "another invocation is running it");
                return Ok(deployment);
            }
            Decision::Start => {
                let lease = invocation.lease(1);
                let claimed = self
                    .store
                    .claim_run(key, &lease, Changes::default())
                    .await?;
                if claimed == Transition::Refused {
                    info!(deployment = %key, "another invocation claimed this deployment first");
                    return self.current(key).await;
                }
                lease
            }
            Decision::GiveUp(interruption) => {
                return self.give_up(deployment, interruption, invocation).await
            }
            Decision::Resume(interruption) => {
                match self.resume(&deployment, &interruption, invocation).await? {
                    Ok(lease) => lease,
                    Err(ended) => return Ok(ended),
                }
            }
        };
        let budget = Budget::new(invocation);
        let deployment = self.current(key).await?;
        let work = self
            .fresh_work_dir(&deployment, lease.attempt, &budget)
            .await;
        let finished = match deployment.action {
            DeploymentAction::Build => self.build(&deployment, &lease, &budget, &work).await,
            DeploymentAction::Remove => Some(self.remove(&deployment).await),
            // Recorded PUBLISHED when it happened; there is nothing to run.
            DeploymentAction::Rollback => Some(Finished::failed(
                "a rollback is recorded as it happens and has nothing to run".into(),
                Vec::new(),
                Changes::default(),
            )),
        };
        if let Err(e) = tokio::fs::remove_dir_all(self.work_root(&deployment)).await {
            if e.kind() != std::io::ErrorKind::NotFound {
                warn!(path = %work.display(), error = %e, "could not clean the work directory");
            }
        }
        let Some(finished) = finished else {
            warn!(deployment = %key, attempt = lease.attempt, "this attempt lost its lease to another; it stops here and records nothing");
            return self.current(key).await;
        };
        let deployment = self
            .conclude(key, &lease.seen(), finished, Some(&budget))
            .await?;
        self.prune_quietly(&deployment, &budget).await;
        Ok(deployment)
    }

    /// The retention policy, after a publish whose end is already recorded
    /// and reported: bounded by [`PRUNE_BUDGET`] and the invocation's time,
    /// and never an error of the deployment (what is left is pruned after
    /// the next publish).
    async fn prune_quietly(&self, deployment: &Deployment, budget: &Budget) {
        let published = matches!(
            deployment.status,
            DeploymentStatus::Published | DeploymentStatus::Unchanged
        );
        if deployment.action != DeploymentAction::Build || !published {
            return;
        }
        let Ok((_, branch, environment)) = parts(deployment) else {
            return;
        };
        let target = target_of(environment, &branch);
        let limit = PRUNE_BUDGET.min(budget.left().saturating_sub(Duration::from_secs(1)));
        if limit < Duration::from_secs(1) {
            warn!(target = %target, "no time left to prune old deploys; the next publish will");
            return;
        }
        let started = std::time::Instant::now();
        let keep = self.config.keep_deploys;
        match tokio::time::timeout(limit, self.publisher.prune(&target, keep)).await {
            Ok(Ok(outcome)) => info!(
                target = %target,
                keep,
                live = %outcome.live,
                kept = ?outcome.kept,
                pruned = ?outcome.pruned_deploys,
                deleted_objects = outcome.deleted_objects,
                ms = started.elapsed().as_millis() as u64,
                "pruned old deploys"
            ),
            Ok(Err(e)) => {
                warn!(target = %target, error = %e, "pruning old deploys failed; the next publish tries again")
            }
            Err(_) => warn!(
                target = %target,
                limit_ms = limit.as_millis() as u64,
                "pruning old deploys ran out of its time; the next publish goes on"
            ),
        }
    }

    /// Writes a run's end (if the record is still held as `held`), then
    /// tells GitHub, Slack and whoever mailed, within what is left of the
    /// invocation.
    async fn conclude(
        &self,
        key: &DeploymentKey,
        held: &SeenLease,
        finished: Finished,
        budget: Option<&Budget>,
    ) -> Result<Deployment, ServiceError> {
        let written = self
            .store
            .finish(key, held, finished.status, finished.changes)
            .await?;
        let deployment = self.current(key).await?;
        if written == Transition::Refused {
            warn!(deployment = %key, status = %deployment.status, "the record left this run's hands before it ended; nothing reported");
            return Ok(deployment);
        }
        let report = self.report(&deployment, finished.error.as_deref());
        match budget.map(|b| b.left().saturating_sub(Duration::from_secs(1))) {
            Some(left) => {
                if tokio::time::timeout(left, report).await.is_err() {
                    warn!(deployment = %key, "reporting did not finish before the invocation's end");
                }
            }
            None => report.await,
        }
        Ok(deployment)
    }

    /// Takes over a deployment whose attempt was interrupted: `Ok(lease)`
    /// to run it again, `Err(record)` when it ended here instead (its
    /// publish had gone live, a newer deployment of its target exists, or
    /// someone else took it over first).
    async fn resume(
        &self,
        deployment: &Deployment,
        interruption: &Interruption,
        invocation: &Invocation,
    ) -> Result<Result<Lease, Deployment>, ServiceError> {
        let key = deployment.key();
        warn!(deployment = %key, %interruption, "resuming an interrupted deployment");
        if let Some(ended) = self.settle_pending(deployment, interruption).await? {
            return Ok(Err(ended));
        }
        if let Some(newer) = self.newer_started(deployment).await? {
            let why = format!(
                "the build was interrupted ({interruption}) and not retried: deployment {} of {} is newer ({})",
                newer.id, newer.target, newer.status
            );
            let finished = Finished::superseded(&newer.id, why);
            return Ok(Err(self
                .conclude(&key, &interruption.seen, finished, None)
                .await?));
        }
        let lease = invocation.lease(interruption.attempt + 1);
        let mut interruptions = deployment.interruptions.clone();
        interruptions.push(interruption.to_string());
        let taken = self
            .store
            .take_over(
                &key,
                &interruption.seen,
                &lease,
                Changes::default().set("interruptions", &interruptions),
            )
            .await?;
        if taken == Transition::Refused {
            info!(deployment = %key, "another invocation took this deployment over first");
            return Ok(Err(self.current(&key).await?));
        }
        info!(deployment = %key, attempt = lease.attempt, "attempt {} of {MAX_ATTEMPTS} starts from a clean state", lease.attempt);
        Ok(Ok(lease))
    }

    /// Ends a deployment whose last allowed attempt was interrupted: FAILED
    /// with what each attempt was doing, unless its publish had gone live.
    async fn give_up(
        &self,
        deployment: Deployment,
        interruption: Interruption,
        invocation: &Invocation,
    ) -> Result<Deployment, ServiceError> {
        let key = deployment.key();
        if let Some(ended) = self.settle_pending(&deployment, &interruption).await? {
            return Ok(ended);
        }
        let error = lease::interrupted_error(&deployment.interruptions, &interruption);
        warn!(deployment = %key, error = %error, "no attempt left; the live deploy is unchanged");
        let mut interruptions = deployment.interruptions.clone();
        interruptions.push(interruption.to_string());
        let finished = Finished::failed(
            error,
            Vec::new(),
            Changes::default().set("interruptions", &interruptions),
        );
        let budget = Budget::new(invocation);
        self.conclude(&key, &interruption.seen, finished, Some(&budget))
            .await
    }

    /// The deploy an interrupted attempt was publishing, settled: if it
    /// went live the deployment ends PUBLISHED here (`Some`); otherwise what
    /// it had uploaded is deleted, so nothing half-published remains.
    async fn settle_pending(
        &self,
        deployment: &Deployment,
        interruption: &Interruption,
    ) -> Result<Option<Deployment>, ServiceError> {
        let Some(pending) = &deployment.pending_deploy_id else {
            return Ok(None);
        };
        let Ok((_, branch, environment)) = parts(deployment) else {
            return Ok(None);
        };
        let target = target_of(environment, &branch);
        let outcome = match self.publisher.settle(&target, pending).await? {
            Settled::Discarded { .. } => return Ok(None),
            Settled::Replaced { live } => {
                info!(deployment = %deployment.key(), deploy = %pending, live = %live, "the interrupted attempt had published; its deploy was replaced since");
                None
            }
            Settled::Live(outcome) => Some(outcome),
        };
        if let (Some(store), Some(_)) = (&self.live_store, &outcome) {
            store.sync(&self.publisher, &target).await?;
        }
        let mut interruptions = deployment.interruptions.clone();
        interruptions.push(interruption.to_string());
        let finished = Finished {
            status: DeploymentStatus::Published,
            changes: Changes::default()
                .set("interruptions", &interruptions)
                .set("deploy_id", pending),
            error: None,
        };
        Ok(Some(
            self.conclude(&deployment.key(), &interruption.seen, finished, None)
                .await?,
        ))
    }

    /// A newer deployment of the same target that has started or changed
    /// what is live: an interrupted older one must not publish over it.
    async fn newer_started(
        &self,
        deployment: &Deployment,
    ) -> Result<Option<Deployment>, ServiceError> {
        let newer = self
            .store
            .newer(&deployment.target, &deployment.id, NEWER_LOOKED_AT)
            .await?;
        Ok(newer.into_iter().rev().find(|d| {
            matches!(
                d.status,
                DeploymentStatus::Building
                    | DeploymentStatus::Published
                    | DeploymentStatus::Unchanged
                    | DeploymentStatus::Removed
            )
        }))
    }

    async fn current(&self, key: &DeploymentKey) -> Result<Deployment, ServiceError> {
        self.store
            .get(key)
            .await?
            .ok_or_else(|| ServiceError::NotFound(key.clone()))
    }

    fn work_root(&self, deployment: &Deployment) -> PathBuf {
        PathBuf::from(&self.config.work_dir).join(&deployment.id)
    }

    /// An empty folder for this attempt. Whatever an earlier attempt of the
    /// deployment left in this environment goes, and so do the folders of
    /// builds older than any invocation can live (killed ones never clean
    /// up, and `/tmp` outlives them).
    async fn fresh_work_dir(
        &self,
        deployment: &Deployment,
        attempt: u32,
        budget: &Budget,
    ) -> PathBuf {
        let root = self.work_root(deployment);
        let _ = tokio::fs::remove_dir_all(&root).await;
        let stale_after = budget.allowed().max(Duration::from_secs(60)) * 2;
        let base = PathBuf::from(&self.config.work_dir);
        let removed = tokio::task::spawn_blocking(move || remove_stale_builds(&base, stale_after))
            .await
            .unwrap_or(0);
        if removed > 0 {
            info!(
                removed,
                "removed work folders of builds that never finished"
            );
        }
        root.join(format!("attempt-{attempt}"))
    }

    /// Records the step the attempt is in; `false` when the attempt lost
    /// its lease and must stop.
    async fn enter(
        &self,
        deployment: &Deployment,
        lease: &Lease,
        phase: Phase,
        changes: Changes,
    ) -> Result<bool, ServiceError> {
        let changes = changes.set("phase", phase.as_str());
        let written = self
            .store
            .progress(&deployment.key(), lease, changes)
            .await?;
        Ok(written == Transition::Done)
    }

    /// Why a push may not deploy `commit`, if it may not. A push deploys
    /// production without approval only while its commit is still the
    /// branch's head: a signed push replayed long after (its claim expired)
    /// or one overtaken by a newer push would otherwise publish old content
    /// over newer. Fails closed when GitHub cannot say.
    async fn push_superseded(
        &self,
        github: &GitHubApi,
        deployment: &Deployment,
        repository: &Repository,
        branch: &Branch,
        commit: &str,
    ) -> Option<Finished> {
        if deployment.origin != super::PUSH_ORIGIN || deployment.environment != "production" {
            return None;
        }
        let head = match github.branch_head(repository, branch).await {
            Ok(head) if head.eq_ignore_ascii_case(commit) => return None,
            Ok(head) => head,
            Err(e) => {
                return Some(Finished::failed(
                    format!("cannot confirm that commit {commit} is still the head of {branch}, so it is not deployed: {e}"),
                    Vec::new(),
                    Changes::default(),
                ))
            }
        };
        let why = no_longer_head(commit, branch, &head);
        // A race, when the head's own deployment is recorded: that one
        // publishes the newer commit. Otherwise (a replayed old push) the
        // refusal is a failure someone should see.
        let newer = self
            .store
            .newer(&deployment.target, &deployment.id, NEWER_LOOKED_AT)
            .await
            .unwrap_or_default()
            .into_iter()
            .rev()
            .find(|d| {
                d.commit
                    .as_deref()
                    .is_some_and(|c| c.eq_ignore_ascii_case(&head))
            });
        Some(match newer {
            Some(newer) => Finished::superseded(
                &newer.id,
                format!("{why}: deployment {} deploys it", newer.id),
            ),
            None => Finished::failed(why, Vec::new(), Changes::default()),
        })
    }

    /// The build of one attempt; `None` when the attempt lost its lease.
    async fn build(
        &self,
        deployment: &Deployment,
        lease: &Lease,
        budget: &Budget,
        work: &Path,
    ) -> Option<Finished> {
        match self.build_steps(deployment, lease, budget, work).await {
            Ok(finished) => finished,
            Err(e) => Some(Finished::failed(
                format!("recording the build's progress failed: {e}"),
                Vec::new(),
                Changes::default(),
            )),
        }
    }

    async fn build_steps(
        &self,
        deployment: &Deployment,
        lease: &Lease,
        budget: &Budget,
        work: &Path,
    ) -> Result<Option<Finished>, ServiceError> {
        let key = deployment.key();
        let failed = |error: String, log_tail: Vec<String>, changes: Changes| {
            warn!(deployment = %key, error = %error, "build failed; the live deploy is unchanged");
            Some(Finished::failed(error, log_tail, changes))
        };
        let (repository, branch, environment) = match parts(deployment) {
            Ok(parts) => parts,
            Err(error) => return Ok(failed(error, Vec::new(), Changes::default())),
        };
        let secured = match self.secured().await {
            Ok(secured) => secured,
            Err(e) => return Ok(failed(e.to_string(), Vec::new(), Changes::default())),
        };
        // A resumed attempt builds the commit the first one resolved.
        let commit = match &deployment.commit {
            Some(commit) => commit.clone(),
            None => match secured.github.branch_head(&repository, &branch).await {
                Ok(commit) => commit,
                Err(e) => {
                    return Ok(failed(
                        format!("cannot find the head of branch {branch}: {e}"),
                        Vec::new(),
                        Changes::default(),
                    ))
                }
            },
        };
        let github_deployment = match deployment.github_deployment_id {
            Some(id) => {
                self.github_progress(deployment, id, lease).await;
                Some(id)
            }
            None => {
                self.github_deployment(&repository, &commit, deployment)
                    .await
            }
        };
        // Written now, not at the end: whoever resumes an interrupted attempt
        // needs the commit and the GitHub deployment to close.
        let changes = Changes::default()
            .set("commit", &commit)
            .set_some("github_deployment_id", github_deployment);
        if !self.enter(deployment, lease, Phase::Fetch, changes).await? {
            return Ok(None);
        }
        let changes = Changes::default;
        if let Some(refused) = self
            .push_superseded(&secured.github, deployment, &repository, &branch, &commit)
            .await
        {
            warn!(deployment = %key, status = %refused.status, error = ?refused.error, "not the head of its branch; the live deploy is unchanged");
            return Ok(Some(refused));
        }
        let out_of_time = |phase: Phase, log_tail: Vec<String>| {
            let error = budget.out_of_time(phase);
            warn!(deployment = %key, error = %error, "stopping before the function's deadline; the live deploy is unchanged");
            Some(Finished::failed(error, log_tail, changes()))
        };

        info!(deployment = %key, commit = %commit, attempt = lease.attempt, "fetching the source");
        let Some(limit) = budget.step(secured.fetcher.timeout()) else {
            return Ok(out_of_time(Phase::Fetch, Vec::new()));
        };
        let fetched = secured
            .fetcher
            .clone()
            .with_timeout(limit.limit)
            .archive(&repository.to_string(), &commit)
            .await;
        let archive = match fetched {
            Ok(archive) => archive,
            Err(SourceError::TimedOut { .. }) if limit.by_budget => {
                return Ok(out_of_time(Phase::Fetch, Vec::new()))
            }
            Err(e) => return Ok(failed(e.to_string(), Vec::new(), changes())),
        };

        // Repository code runs in the builder function, never here.
        if !self
            .enter(deployment, lease, Phase::Build, changes())
            .await?
        {
            return Ok(None);
        }
        let handoff = format!("{}/attempt-{}", deployment.id, lease.attempt);
        let built = self
            .builder
            .build(
                &handoff,
                &repository.to_string(),
                &commit,
                environment.as_str(),
                archive,
                budget.until(),
                &work.join("site"),
            )
            .await;
        let built = match built {
            Ok(built) => built,
            Err(RemoteBuildError::Failed {
                step,
                out_of_time: true,
                log_tail,
                ..
            }) => {
                let error = format!("{}: {step} was stopped", budget.out_of_time(Phase::Build));
                warn!(deployment = %key, error = %error, "stopping before the function's deadline; the live deploy is unchanged");
                return Ok(Some(Finished::failed(error, log_tail, changes())));
            }
            Err(RemoteBuildError::OutOfTime { .. }) => {
                return Ok(out_of_time(Phase::Build, Vec::new()))
            }
            Err(e) => {
                let log_tail = e.log_tail();
                return Ok(failed(e.to_string(), log_tail, changes()));
            }
        };
        info!(
            deployment = %key,
            files = built.files,
            install_ms = built.install.as_millis() as u64,
            build_ms = built.build.as_millis() as u64,
            "built"
        );

        // The deploy's id is recorded before anything is uploaded: whoever
        // resumes an interrupted publish settles it by that id.
        let deploy_id = new_deploy_id();
        let pending = Changes::default().set("pending_deploy_id", &deploy_id);
        if !self
            .enter(deployment, lease, Phase::Publish, pending)
            .await?
        {
            return Ok(None);
        }
        if budget.step(Duration::MAX).is_none() {
            return Ok(out_of_time(Phase::Publish, built.log_tail));
        }
        // Again at the last moment: main can move on during the build.
        if let Some(mut refused) = self
            .push_superseded(&secured.github, deployment, &repository, &branch, &commit)
            .await
        {
            warn!(deployment = %key, status = %refused.status, error = ?refused.error, "not the head of its branch; the live deploy is unchanged");
            if refused.status == DeploymentStatus::Failed {
                refused.changes = refused.changes.set("log_tail", &built.log_tail);
            }
            return Ok(Some(refused));
        }
        let target = target_of(environment, &branch);
        let until = Some(budget.until());
        let outcome = match self
            .publisher
            .publish_as(
                &target,
                &built.output_dir,
                &deploy_id,
                Some(&deployment.id),
                until,
            )
            .await
        {
            Ok(outcome) => outcome,
            Err(PublishError::OutOfTime { .. }) => {
                return Ok(out_of_time(Phase::Publish, built.log_tail))
            }
            Err(e @ PublishError::Superseded { .. }) => {
                let PublishError::Superseded { newer, .. } = &e else {
                    unreachable!()
                };
                info!(deployment = %key, newer = %newer, "superseded by a newer deployment; the live deploy is the newer one's");
                return Ok(Some(Finished::superseded(newer, e.to_string())));
            }
            Err(e) => return Ok(failed(e.to_string(), built.log_tail, changes())),
        };
        info!(
            deployment = %key,
            deploy = %outcome.deploy_id,
            unchanged = outcome.unchanged,
            uploaded = outcome.uploaded,
            copied = outcome.copied,
            "published"
        );
        if let Some(store) = &self.live_store {
            if let Err(e) = store.sync(&self.publisher, &target).await {
                let error = format!(
                    "deploy {} is live in S3, but CloudFront still serves the previous one: {e}; run the build again to retry",
                    outcome.deploy_id
                );
                return Ok(failed(
                    error,
                    Vec::new(),
                    changes().set("deploy_id", &outcome.deploy_id),
                ));
            }
        }
        let status = if outcome.unchanged {
            DeploymentStatus::Unchanged
        } else {
            DeploymentStatus::Published
        };
        Ok(Some(Finished {
            status,
            changes: changes()
                .set("deploy_id", &outcome.deploy_id)
                .set("uploaded", outcome.uploaded as u64)
                .set("copied", outcome.copied as u64),
            error: None,
        }))
    }

    async fn remove(&self, deployment: &Deployment) -> Finished {
        let failed = |error: String| Finished {
            status: DeploymentStatus::Failed,
            changes: Changes::default().set("error", &error),
            error: Some(error),
        };
        let target = match deployment.branch.parse::<Branch>() {
            Ok(branch) => target_of(Environment::Preview, &branch),
            Err(e) => return failed(format!("the record's branch: {e}")),
        };
        if target.name() != deployment.target {
            return failed(format!(
                "the record's target {} does not match its branch {}",
                deployment.target, deployment.branch
            ));
        }
        if let Some(store) = &self.live_store {
            if let Err(e) = store.forget(&target.name()).await {
                return failed(e.to_string());
            }
        }
        match self.publisher.remove(&target).await {
            Ok(outcome) => {
                info!(target = %target, deleted = outcome.deleted_objects, "preview removed");
                Finished {
                    status: DeploymentStatus::Removed,
                    changes: Changes::default().set_some("deploy_id", outcome.was_live),
                    error: None,
                }
            }
            Err(e) => failed(e.to_string()),
        }
    }

    async fn github_deployment(
        &self,
        repository: &Repository,
        commit: &str,
        deployment: &Deployment,
    ) -> Option<u64> {
        let github = self.github().await?;
        if !github.can_report() || deployment.action != DeploymentAction::Build {
            return None;
        }
        let production = deployment.environment == Environment::Production.as_str();
        let environment = if deployment.environment == Environment::Preview.as_str() {
            format!("preview/{}", deployment.branch)
        } else {
            deployment.environment.clone()
        };
        let id = match github
            .create_deployment(repository, commit, &environment, production)
            .await
        {
            Ok(id) => id,
            Err(e) => {
                warn!(error = %e, "no GitHub deployment: the build goes on without one");
                return None;
            }
        };
        if let Err(e) = github
            .deployment_status(
                repository,
                id,
                DeploymentState::InProgress,
                None,
                "Building",
            )
            .await
        {
            warn!(error = %e, "could not report the build to GitHub");
        }
        Some(id)
    }

    /// Tells GitHub a resumed attempt is building again.
    async fn github_progress(&self, deployment: &Deployment, id: u64, lease: &Lease) {
        let Ok(repository) = deployment.site.parse::<Repository>() else {
            return;
        };
        let description = format!(
            "Building again (attempt {} of {MAX_ATTEMPTS})",
            lease.attempt
        );
        let Some(github) = self.github().await else {
            return;
        };
        if let Err(e) = github
            .deployment_status(
                &repository,
                id,
                DeploymentState::InProgress,
                None,
                &description,
            )
            .await
        {
            warn!(error = %e, "could not report the retry to GitHub");
        }
    }

    /// GitHub deployment status, Slack, and a reply to whoever mailed.
    async fn report(&self, deployment: &Deployment, error: Option<&str>) {
        let succeeded = matches!(
            deployment.status,
            DeploymentStatus::Published | DeploymentStatus::Unchanged | DeploymentStatus::Removed
        );
        let superseded = deployment.status == DeploymentStatus::Superseded;
        if let (Some(id), Ok(repository)) = (
            deployment.github_deployment_id,
            deployment.site.parse::<Repository>(),
        ) {
            let (state, url, description) = if succeeded {
                (
                    DeploymentState::Success,
                    Some(deployment.url.as_str()),
                    "Published".to_owned(),
                )
            } else if superseded {
                // GitHub's word for a deployment another one replaced.
                (
                    DeploymentState::Inactive,
                    None,
                    format!(
                        "Superseded by the newer deployment {}; not published",
                        deployment.superseded_by.as_deref().unwrap_or("?")
                    ),
                )
            } else {
                (
                    DeploymentState::Failure,
                    None,
                    error.unwrap_or("Failed").to_owned(),
                )
            };
            if let Some(github) = self.github().await {
                if let Err(e) = github
                    .deployment_status(&repository, id, state, url, &description)
                    .await
                {
                    warn!(error = %e, "could not report the result to GitHub");
                }
            }
        }
        let what = match deployment.action {
            DeploymentAction::Build => format!(
                "{} of {} ({})",
                deployment.target, deployment.site, deployment.branch
            ),
            DeploymentAction::Remove => format!("Removal of {}", deployment.target),
            DeploymentAction::Rollback => format!("Rollback of {}", deployment.target),
        };
        let mut notice = if succeeded {
            let title = match deployment.status {
                DeploymentStatus::Unchanged => format!("{what} is unchanged"),
                DeploymentStatus::Removed => format!("{what} done"),
                _ => format!("{what} is live"),
            };
            Notice::new(Outcome::Succeeded, title, &deployment.environment)
        } else if superseded {
            Notice::new(
                Outcome::Info,
                format!("{what} was superseded by a newer deployment"),
                &deployment.environment,
            )
            .with_reason(
                error
                    .unwrap_or("a newer deployment went live first")
                    .to_owned(),
            )
        } else {
            let mut reason = error.unwrap_or("failed").to_owned();
            if let Some(last) = deployment.log_tail.last() {
                reason.push_str(&format!(" (last log line: {last})"));
            }
            Notice::new(
                Outcome::Failed,
                format!("{what} failed"),
                &deployment.environment,
            )
            .with_reason(reason)
        }
        .with_deployment_id(&deployment.id);
        if succeeded && deployment.action == DeploymentAction::Build {
            notice = notice.with_link("Open", &deployment.url);
        }
        self.notify(&notice).await;
        if let Some(to) = &deployment.reply_to {
            let text = if succeeded {
                format!(
                    "{what}: {}.\n\n{}\n\nDeployment {}.",
                    deployment.status, deployment.url, deployment.id
                )
            } else if superseded {
                format!(
                    "{what} was superseded: {}\nThe live site is the newer deployment's.\n\nDeployment {}.",
                    error.unwrap_or("a newer deployment went live first"),
                    deployment.id
                )
            } else {
                let mut text = format!(
                    "{what} failed: {}\nThe live site was not changed.\n",
                    error.unwrap_or("unknown error")
                );
                if !deployment.log_tail.is_empty() {
                    text.push_str("\nLast lines of the build log:\n");
                    for line in &deployment.log_tail {
                        text.push_str(&format!("  {line}\n"));
                    }
                }
                text
            };
            self.reply(
                to,
                &format!("[deployer] {what}: {}", deployment.status),
                &text,
            )
            .await;
        }
    }
}

fn no_longer_head(commit: &str, branch: &Branch, head: &str) -> String {
    format!("commit {commit} is no longer the head of {branch} (now {head}); a push deploys only its branch's head")
}

fn parts(deployment: &Deployment) -> Result<(Repository, Branch, Environment), String> {
    let repository = deployment
        .site
        .parse()
        .map_err(|e| format!("the record's site: {e}"))?;
    let branch = deployment
        .branch
        .parse()
        .map_err(|e| format!("the record's branch: {e}"))?;
    let environment = deployment
        .environment
        .parse()
        .map_err(|e| format!("the record's environment: {e}"))?;
    Ok((repository, branch, environment))
}

pub(super) fn target_of(environment: Environment, branch: &Branch) -> PublishTarget {
    match environment {
        Environment::Production => PublishTarget::Production,
        Environment::Staging => PublishTarget::Staging,
        Environment::Preview => PublishTarget::preview(branch.as_str()),
    }
}

/// Removes the work folders (named by deployment id) under `base` not
/// touched for `stale_after`; returns how many went.
fn remove_stale_builds(base: &Path, stale_after: Duration) -> usize {
    let Ok(entries) = std::fs::read_dir(base) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let is_build = name
            .to_str()
            .is_some_and(|n| n.len() == 27 && n.bytes().all(|b| b.is_ascii_alphanumeric()));
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|at| at.elapsed().ok())
            .is_some_and(|age| age > stale_after);
        if is_build && stale && std::fs::remove_dir_all(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_build_folders_older_than_the_limit_are_removed() {
        let base = std::env::temp_dir().join(format!("site-build-stale-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let old_build = base.join("2qAbcdefghijklmnopqrstuvwxy");
        let cache = base.join("npm-cache");
        std::fs::create_dir_all(old_build.join("attempt-1/src")).unwrap();
        std::fs::create_dir_all(&cache).unwrap();
        let hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
        for dir in [&old_build, &cache] {
            std::fs::File::open(dir)
                .unwrap()
                .set_modified(hour_ago)
                .unwrap();
        }
        let new_build = base.join("2qZbcdefghijklmnopqrstuvwxy");
        std::fs::create_dir_all(&new_build).unwrap();

        assert_eq!(remove_stale_builds(&base, Duration::from_secs(2 * 3600)), 0);
        // An hour old: that build goes; the cache (not a build) and the
        // recent build stay.
        assert_eq!(remove_stale_builds(&base, Duration::from_secs(1800)), 1);
        assert!(!old_build.exists());
        assert!(cache.exists() && new_build.exists());
        std::fs::remove_dir_all(&base).unwrap();
    }
}
