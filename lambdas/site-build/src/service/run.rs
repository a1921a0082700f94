//! Running one queued deployment: claim it, build, publish, record, report.
//! Whatever goes wrong after the claim ends the record in FAILED with the
//! reason (and the build's log tail); the live deploy is only ever changed
//! by a complete publish.

use std::path::PathBuf;

use notify::{Notice, Outcome};
use tracing::{info, warn};

use super::{ServiceError, SiteService};
use crate::deployments::{
    now_rfc3339, Changes, Deployment, DeploymentAction, DeploymentKey, DeploymentStatus, Transition,
};
use crate::github_api::DeploymentState;
use crate::publish::{InvalidationStatus, PublishTarget};
use crate::trigger::{Branch, Environment, Repository};

/// How a finished run went, before it is written down.
struct Finished {
    status: DeploymentStatus,
    changes: Changes,
    error: Option<String>,
}

impl SiteService {
    /// Runs a QUEUED deployment. Any other status means another invocation
    /// has it (or had it): nothing is done, and the record is returned.
    pub async fn run(&self, key: &DeploymentKey) -> Result<Deployment, ServiceError> {
        let deployment = self
            .store
            .get(key)
            .await?
            .ok_or_else(|| ServiceError::NotFound(key.clone()))?;
        if deployment.status != DeploymentStatus::Queued {
            info!(deployment = %key, status = %deployment.status, "not queued; nothing to run");
            return Ok(deployment);
        }
        let claimed = self
            .store
            .transition(
                key,
                DeploymentStatus::Queued,
                DeploymentStatus::Building,
                Changes::default(),
                None,
            )
            .await?;
        if claimed == Transition::Refused {
            info!(deployment = %key, "another invocation claimed this deployment first");
            return self.current(key).await;
        }
        let work = PathBuf::from(&self.config.work_dir).join(&deployment.id);
        let finished = match deployment.action {
            DeploymentAction::Build => self.build(&deployment, &work).await,
            DeploymentAction::Remove => self.remove(&deployment).await,
        };
        if let Err(e) = tokio::fs::remove_dir_all(&work).await {
            if e.kind() != std::io::ErrorKind::NotFound {
                warn!(path = %work.display(), error = %e, "could not clean the work directory");
            }
        }
        let status = finished.status;
        let written = self
            .store
            .transition(
                key,
                DeploymentStatus::Building,
                status,
                finished.changes.set("finished_at", now_rfc3339()),
                None,
            )
            .await?;
        if written == Transition::Refused {
            warn!(deployment = %key, "the record left BUILDING while this run worked");
        }
        let deployment = self.current(key).await?;
        self.report(&deployment, finished.error.as_deref()).await;
        Ok(deployment)
    }

    async fn current(&self, key: &DeploymentKey) -> Result<Deployment, ServiceError> {
        self.store
            .get(key)
            .await?
            .ok_or_else(|| ServiceError::NotFound(key.clone()))
    }

    async fn build(&self, deployment: &Deployment, work: &std::path::Path) -> Finished {
        let failed = |error: String, log_tail: Vec<String>, changes: Changes| {
            warn!(deployment = %deployment.key(), error = %error, "build failed; the live deploy is unchanged");
            Finished {
                status: DeploymentStatus::Failed,
                changes: changes.set("error", &error).set("log_tail", &log_tail),
                error: Some(error),
            }
        };
        let (repository, branch, environment) = match parts(deployment) {
            Ok(parts) => parts,
            Err(error) => return failed(error, Vec::new(), Changes::default()),
        };
        let commit = match &deployment.commit {
            Some(commit) => commit.clone(),
            None => match self.github.branch_head(&repository, &branch).await {
                Ok(commit) => commit,
                Err(e) => {
                    return failed(
                        format!("cannot find the head of branch {branch}: {e}"),
                        Vec::new(),
                        Changes::default(),
                    )
                }
            },
        };
        let mut changes = Changes::default().set("commit", &commit);
        let github_deployment = self
            .github_deployment(&repository, &commit, deployment)
            .await;
        changes = changes.set_some("github_deployment_id", github_deployment);
        info!(deployment = %deployment.key(), commit = %commit, "fetching the source");
        let source = work.join("src");
        if let Err(e) = self
            .fetcher
            .fetch(&repository.to_string(), &commit, &source)
            .await
        {
            return failed(e.to_string(), Vec::new(), changes);
        }
        let built = match self.builder.build(&source, environment.as_str()).await {
            Ok(built) => built,
            Err(failure) => {
                let log_tail = failure.log_tail.clone();
                return failed(failure.to_string(), log_tail, changes);
            }
        };
        info!(
            deployment = %deployment.key(),
            install_ms = built.durations.install.as_millis() as u64,
            build_ms = built.durations.build.as_millis() as u64,
            "built"
        );
        let target = target_of(environment, &branch);
        let outcome = match self.publisher.publish(&target, &built.output_dir).await {
            Ok(outcome) => outcome,
            Err(e) => return failed(e.to_string(), built.log_tail, changes),
        };
        info!(
            deployment = %deployment.key(),
            deploy = %outcome.deploy_id,
            unchanged = outcome.unchanged,
            uploaded = outcome.uploaded,
            copied = outcome.copied,
            "published"
        );
        if let Some(store) = &self.live_store {
            if let Err(e) = store.point(&target.name(), &outcome.deploy_id).await {
                let error = format!(
                    "deploy {} is live in S3, but CloudFront still serves the previous one: {e}; run the build again to retry",
                    outcome.deploy_id
                );
                return failed(
                    error,
                    Vec::new(),
                    changes.set("deploy_id", &outcome.deploy_id),
                );
            }
        }
        let status = if outcome.unchanged {
            DeploymentStatus::Unchanged
        } else {
            DeploymentStatus::Published
        };
        Finished {
            status,
            changes: changes
                .set("deploy_id", &outcome.deploy_id)
                .set("uploaded", outcome.uploaded as u64)
                .set("copied", outcome.copied as u64)
                .set_some("invalidation", invalidation_text(&outcome.invalidation)),
            error: None,
        }
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
        if !self.github.can_report() || deployment.action != DeploymentAction::Build {
            return None;
        }
        let production = deployment.environment == Environment::Production.as_str();
        let environment = if deployment.environment == Environment::Preview.as_str() {
            format!("preview/{}", deployment.branch)
        } else {
            deployment.environment.clone()
        };
        let id = match self
            .github
            .create_deployment(repository, commit, &environment, production)
            .await
        {
            Ok(id) => id,
            Err(e) => {
                warn!(error = %e, "no GitHub deployment: the build goes on without one");
                return None;
            }
        };
        if let Err(e) = self
            .github
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

    /// GitHub deployment status, Slack, and a reply to whoever mailed.
    async fn report(&self, deployment: &Deployment, error: Option<&str>) {
        let succeeded = matches!(
            deployment.status,
            DeploymentStatus::Published | DeploymentStatus::Unchanged | DeploymentStatus::Removed
        );
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
            } else {
                (
                    DeploymentState::Failure,
                    None,
                    error.unwrap_or("Failed").to_owned(),
                )
            };
            if let Err(e) = self
                .github
                .deployment_status(&repository, id, state, url, &description)
                .await
            {
                warn!(error = %e, "could not report the result to GitHub");
            }
        }
        let what = match deployment.action {
            DeploymentAction::Build => format!(
                "{} of {} ({})",
                deployment.target, deployment.site, deployment.branch
            ),
            DeploymentAction::Remove => format!("Removal of {}", deployment.target),
        };
        let mut notice = if succeeded {
            let title = match deployment.status {
                DeploymentStatus::Unchanged => format!("{what} is unchanged"),
                DeploymentStatus::Removed => format!("{what} done"),
                _ => format!("{what} is live"),
            };
            Notice::new(Outcome::Succeeded, title, &deployment.environment)
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

fn invalidation_text(status: &InvalidationStatus) -> Option<String> {
    match status {
        InvalidationStatus::NotNeeded | InvalidationStatus::NotConfigured => None,
        InvalidationStatus::Created { id } => Some(id.clone()),
        InvalidationStatus::Failed { message } => Some(format!("failed: {message}")),
    }
}
