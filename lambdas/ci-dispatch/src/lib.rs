//! `ci-dispatch`: the suite's EventBridge entry point.
//!
//! Events are parsed at the edge into a [`Trigger`]; each trigger resolves to
//! ECS services and redeploys them, or (ECS and Step Functions status events)
//! only reports and reconciles. Every event id is remembered, so a replay is
//! acknowledged and skipped. Bad input never causes a retry: only AWS
//! trouble that may pass returns an error (and EventBridge/Lambda retry).

pub mod config;
pub mod ecs;
pub mod events;
pub mod memory;
pub mod naming;

use aws_sdk_dynamodb::types::AttributeValue;
use builddao::{BuildKey, BuildStatus, BuildStore, Transition};
use futures::future::join_all;
use notify::{Notice, Notifier, Outcome};
use serde_json::{json, Value};
use tracing::{info, warn, Instrument};

pub use config::Config;
use ecs::{DeployError, Deployed};
use events::{EventError, Trigger};
use memory::{Memory, MemoryError};
use naming::{Resolver, ServiceTarget};

/// Errors that make the invocation fail so Lambda retries the event.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error(transparent)]
    Memory(#[from] MemoryError),
    #[error(transparent)]
    Deploy(DeployError),
    #[error(transparent)]
    Builds(#[from] builddao::StoreError),
    #[error("{0}")]
    Aws(String),
}

impl From<DispatchError> for lambda_runtime::Diagnostic {
    fn from(err: DispatchError) -> Self {
        lambda_runtime::Diagnostic {
            error_type: "Retryable".into(),
            error_message: err.to_string(),
        }
    }
}

/// Everything a dispatch needs, built once per cold start.
pub struct Dispatcher {
    pub config: Config,
    pub ecs: aws_sdk_ecs::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub memory: Memory,
    pub builds: Option<BuildStore>,
    pub notifier: Notifier,
}

/// One service's result within an event.
#[derive(Debug, Clone, serde::Serialize)]
struct ServiceResult {
    service: String,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    deployment_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    task_definition: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl Dispatcher {
    fn resolver(&self) -> Resolver<'_> {
        let c = &self.config;
        Resolver {
            project: &c.project,
            env: &c.env,
            cluster: &c.cluster_pattern,
            service: &c.service_pattern,
            family: &c.family_pattern,
            backend: &c.backend_service_pattern,
            map: &c.service_map,
        }
    }

    /// Handles one EventBridge event.
    pub async fn handle(&self, event: Value) -> Result<Value, DispatchError> {
        let (envelope, trigger) = match events::parse(&event) {
            Ok(parsed) => parsed,
            Err(EventError::Ignored(why)) => {
                info!(%why, "event ignored");
                return Ok(json!({"status": "ignored", "reason": why}));
            }
            Err(err) => {
                warn!(error = %err, "malformed event rejected; it will not be retried");
                return Ok(json!({"status": "rejected", "error": err.to_string()}));
            }
        };
        let span = tracing::info_span!("event", event_id = %envelope.id, source = %envelope.source, env = %self.config.env);
        async move {
            if let Some(disabled) = self.disabled_source(&trigger) {
                info!(
                    source = disabled,
                    "source disabled by configuration; skipped"
                );
                return Ok(json!({"status": "disabled", "source": disabled}));
            }
            let claim = format!("event#{}", envelope.id);
            if !self.memory.claim(&claim).await? {
                info!("event already processed; acknowledged and skipped");
                return Ok(json!({"status": "duplicate", "event_id": envelope.id}));
            }
            let outcome = self.route(&envelope.id, trigger).await;
            if outcome.is_err() {
                // Forget the event so the retry of this invocation runs it again.
                if let Err(err) = self.memory.release(&claim).await {
                    warn!(error = %err, "could not release the event claim");
                }
            }
            outcome
        }
        .instrument(span)
        .await
    }

    fn disabled_source(&self, trigger: &Trigger) -> Option<&'static str> {
        let s = self.config.sources;
        match trigger {
            Trigger::ImagePushed { .. } if !s.ecr => Some("ecr"),
            Trigger::ParameterChanged { .. } if !s.ssm => Some("ssm"),
            Trigger::EnvFileChanged { .. } if !s.s3 => Some("s3"),
            Trigger::Manual { .. } if !s.manual => Some("manual"),
            _ => None,
        }
    }

    async fn route(&self, event_id: &str, trigger: Trigger) -> Result<Value, DispatchError> {
        match trigger {
            Trigger::ImagePushed {
                repository,
                digest,
                tag,
            } => {
                if !self.config.ecr_tags.is_empty()
                    && !tag
                        .as_ref()
                        .is_some_and(|t| self.config.ecr_tags.contains(t))
                {
                    info!(%repository, ?tag, "tag not configured for deploys; skipped");
                    return Ok(json!({"status": "skipped", "reason": "tag not configured"}));
                }
                let Some(name) = self.resolver().service_for_repository(&repository) else {
                    warn!(%repository, "repository does not belong to this project; skipped");
                    return Ok(
                        json!({"status": "skipped", "reason": format!("repository {repository} maps to no service")}),
                    );
                };
                // One image pushed with two tags is two events: deploy once.
                let image = format!("image#{repository}@{digest}");
                if !self.memory.claim(&image).await? {
                    info!(%repository, %digest, "image already deployed for another tag; skipped");
                    return Ok(json!({"status": "duplicate", "image": digest}));
                }
                let reason = format!(
                    "image {repository}:{} pushed ({digest})",
                    tag.as_deref().unwrap_or("untagged")
                );
                let result = self.deploy(event_id, &[name], None, &reason).await;
                if result.is_err() {
                    let _ = self.memory.release(&image).await;
                }
                result
            }
            Trigger::ParameterChanged { name, operation } => {
                let Some(service) = self.resolver().service_for_parameter(&name) else {
                    warn!(parameter = %name, "parameter is not under /{{env}}/{{project}}/{{service}}/; skipped");
                    return Ok(
                        json!({"status": "skipped", "reason": format!("parameter {name} maps to no service")}),
                    );
                };
                self.deploy(
                    event_id,
                    &[service],
                    None,
                    &format!("parameter {name} {operation}"),
                )
                .await
            }
            Trigger::EnvFileChanged {
                bucket,
                key,
                operation,
            } => {
                let users: Vec<String> = self
                    .config
                    .env_files
                    .iter()
                    .filter(|(_, files)| files.iter().any(|f| f.bucket == bucket && f.key == key))
                    .map(|(service, _)| service.clone())
                    .collect();
                if users.is_empty() {
                    info!(%bucket, %key, "no service uses this file; skipped");
                    return Ok(
                        json!({"status": "skipped", "reason": format!("s3://{bucket}/{key} is no service's env file")}),
                    );
                }
                self.deploy(
                    event_id,
                    &users,
                    None,
                    &format!("env file s3://{bucket}/{key} {operation}"),
                )
                .await
            }
            Trigger::Manual {
                service,
                task_definition,
                reason,
            } => {
                let reason = reason.unwrap_or_else(|| "manual deploy".into());
                self.deploy(event_id, &[service], task_definition.as_deref(), &reason)
                    .await
            }
            Trigger::EcsDeployment {
                event_name,
                deployment_id,
                service_arn,
                reason,
            } => {
                self.ecs_status(&event_name, &deployment_id, &service_arn, reason)
                    .await
            }
            Trigger::ExecutionEnded {
                execution_arn,
                state_machine_arn,
                status,
                input,
                error,
                cause,
            } => {
                self.execution_ended(
                    &execution_arn,
                    &state_machine_arn,
                    &status,
                    input,
                    error,
                    cause,
                )
                .await
            }
        }
    }

    /// Redeploys services concurrently; one aggregated result. If some
    /// service fails in a way worth retrying, the event fails and its retry
    /// redeploys only the services not yet deployed for this event.
    async fn deploy(
        &self,
        event_id: &str,
        services: &[String],
        task_definition: Option<&str>,
        reason: &str,
    ) -> Result<Value, DispatchError> {
        let targets: Vec<ServiceTarget> = services
            .iter()
            .map(|s| self.resolver().resolve(s))
            .collect();
        let results = join_all(
            targets
                .iter()
                .map(|target| self.deploy_once(event_id, target, task_definition, reason)),
        )
        .await;
        let mut report = Vec::new();
        for result in results {
            report.push(result?);
        }
        Ok(json!({"status": "done", "dry_run": self.config.dry_run, "services": report}))
    }

    async fn deploy_once(
        &self,
        event_id: &str,
        target: &ServiceTarget,
        task_definition: Option<&str>,
        reason: &str,
    ) -> Result<ServiceResult, DispatchError> {
        let done = format!("deployed#{event_id}#{}#{}", target.cluster, target.service);
        if !self.memory.claim(&done).await? {
            info!(service = %target.service, "already deployed for this event by an earlier attempt");
            return Ok(ServiceResult {
                service: target.service.clone(),
                status: "already_deployed",
                deployment_id: None,
                task_definition: None,
                error: None,
            });
        }
        match self.deploy_one(target, task_definition, reason).await {
            Ok(result) => Ok(result),
            Err(err) => {
                if let Err(release) = self.memory.release(&done).await {
                    warn!(error = %release, "could not release the service claim");
                }
                Err(DispatchError::Deploy(err))
            }
        }
    }

    async fn deploy_one(
        &self,
        target: &ServiceTarget,
        task_definition: Option<&str>,
        reason: &str,
    ) -> Result<ServiceResult, DeployError> {
        let env = &self.config.env;
        let base = |outcome: Outcome, title: String| {
            Notice::new(outcome, title, env.clone())
                .with_service(target.service.clone())
                .with_cluster(target.cluster.clone())
                .with_reason(reason.to_owned())
                .with_dry_run(self.config.dry_run)
                .with_link("ECS service", self.console_service_url(target))
        };
        match ecs::redeploy(&self.ecs, target, task_definition, self.config.dry_run).await {
            Ok(Deployed::Started {
                deployment_id,
                task_definition,
            }) => {
                info!(service = %target.service, cluster = %target.cluster, %deployment_id, %task_definition, "deployment started");
                let context = json!({"service": target.service, "cluster": target.cluster, "task_definition": task_definition, "reason": reason});
                if let Err(err) = self.memory.remember_deploy(&deployment_id, &context).await {
                    warn!(error = %err, "could not remember the deploy; its completion will be reported without context");
                }
                let notice = base(
                    Outcome::Started,
                    format!("Deploying {} to {env}", target.name),
                )
                .with_deployment_id(deployment_id.clone())
                .with_task_definition(task_definition.clone());
                self.notifier.send(&notice).await;
                Ok(ServiceResult {
                    service: target.service.clone(),
                    status: "started",
                    deployment_id: Some(deployment_id),
                    task_definition: Some(task_definition),
                    error: None,
                })
            }
            Ok(Deployed::DryRun { task_definition }) => {
                info!(service = %target.service, %task_definition, "DRY RUN: would deploy");
                let notice = base(
                    Outcome::Info,
                    format!("Would deploy {} to {env}", target.name),
                )
                .with_task_definition(task_definition.clone());
                self.notifier.send(&notice).await;
                Ok(ServiceResult {
                    service: target.service.clone(),
                    status: "dry_run",
                    deployment_id: None,
                    task_definition: Some(task_definition),
                    error: None,
                })
            }
            Err(err) if err.is_retryable() => {
                warn!(service = %target.service, error = %err, "deploy failed; the event will be retried");
                Err(err)
            }
            Err(err) => {
                warn!(service = %target.service, error = %err, "deploy refused; not retried");
                let notice = base(
                    Outcome::Failed,
                    format!("Deploy of {} to {env} failed", target.name),
                )
                .with_reason(format!("{reason}: {err}"));
                self.notifier.send(&notice).await;
                Ok(ServiceResult {
                    service: target.service.clone(),
                    status: "failed",
                    deployment_id: None,
                    task_definition: None,
                    error: Some(err.to_string()),
                })
            }
        }
    }

    fn console_service_url(&self, target: &ServiceTarget) -> String {
        format!(
            "https://{region}.console.aws.amazon.com/ecs/v2/clusters/{cluster}/services/{service}/deployments?region={region}",
            region = self.config.console_region,
            cluster = target.cluster,
            service = target.service
        )
    }

    /// Our clusters: the pattern's (for any name) and the service map's.
    fn owns_service_arn(&self, service_arn: &str) -> Option<(String, String)> {
        let path = service_arn.split(":service/").nth(1)?;
        let (cluster, service) = path.split_once('/')?;
        let c = &self.config;
        let ours = c.cluster_pattern.render(&c.project, &c.env, "") == cluster
            || (c.cluster_pattern.has_name()
                && cluster.starts_with(&c.cluster_pattern.render(&c.project, &c.env, "")))
            || c.service_map
                .values()
                .any(|m| m.cluster.as_deref() == Some(cluster));
        ours.then(|| (cluster.to_owned(), service.to_owned()))
    }

    async fn ecs_status(
        &self,
        event_name: &str,
        deployment_id: &str,
        service_arn: &str,
        reason: Option<String>,
    ) -> Result<Value, DispatchError> {
        let Some((cluster, service)) = self.owns_service_arn(service_arn) else {
            info!(%service_arn, "deployment event for another project's cluster; ignored");
            return Ok(json!({"status": "ignored", "reason": "not this project's cluster"}));
        };
        let outcome = match event_name {
            "SERVICE_DEPLOYMENT_COMPLETED" => Outcome::Succeeded,
            "SERVICE_DEPLOYMENT_FAILED" => Outcome::Failed,
            "SERVICE_DEPLOYMENT_IN_PROGRESS" => {
                return Ok(
                    json!({"status": "ignored", "reason": "in progress was reported when the deploy started"}),
                )
            }
            _ => Outcome::Info,
        };
        let context = self.memory.deploy_context(deployment_id).await?;
        let env = &self.config.env;
        let title = match outcome {
            Outcome::Succeeded => format!("Deployed {service} to {env}"),
            Outcome::Failed => format!("Deployment of {service} to {env} failed"),
            _ => format!("{service} in {env}: {event_name}"),
        };
        let mut notice = Notice::new(outcome, title, env.clone())
            .with_service(service.clone())
            .with_cluster(cluster)
            .with_deployment_id(deployment_id.to_owned());
        let started_by = context
            .as_ref()
            .and_then(|c| c["reason"].as_str())
            .map(str::to_owned);
        if let Some(task_definition) = context.as_ref().and_then(|c| c["task_definition"].as_str())
        {
            notice = notice.with_task_definition(task_definition.to_owned());
        }
        match (reason, started_by) {
            (Some(reason), Some(by)) => {
                notice = notice.with_reason(format!("{reason} (started by: {by})"))
            }
            (Some(reason), None) => notice = notice.with_reason(reason),
            (None, Some(by)) => notice = notice.with_reason(format!("started by: {by}")),
            (None, None) => {}
        }
        self.notifier.send(&notice).await;
        info!(%service, %deployment_id, %event_name, "deployment status reported");
        Ok(json!({"status": "reported", "event": event_name, "deployment_id": deployment_id}))
    }

    /// A deployment execution ended outside the machine's own paths: its
    /// build is marked FAILED (never over a terminal status) and its stack
    /// lock released.
    async fn execution_ended(
        &self,
        execution_arn: &str,
        state_machine_arn: &str,
        status: &str,
        input: Option<Value>,
        error: Option<String>,
        cause: Option<String>,
    ) -> Result<Value, DispatchError> {
        let (Some(builds), Some(ours)) = (&self.builds, &self.config.state_machine_arn) else {
            return Ok(
                json!({"status": "ignored", "reason": "build reconciliation not configured"}),
            );
        };
        if state_machine_arn != ours {
            return Ok(json!({"status": "ignored", "reason": "another state machine"}));
        }
        if !matches!(status, "FAILED" | "TIMED_OUT" | "ABORTED") {
            return Ok(json!({"status": "ignored", "reason": format!("execution {status}")}));
        }
        let build = input.as_ref().and_then(|i| i.get("build"));
        let (Some(pk), Some(sk)) = (
            build.and_then(|b| b["pk"].as_str()),
            build.and_then(|b| b["sk"].as_str()),
        ) else {
            warn!(%execution_arn, "execution input names no build; nothing to reconcile");
            return Ok(
                json!({"status": "rejected", "error": "execution input has no build.pk/build.sk"}),
            );
        };
        let Some((repo, env)) = pk.rsplit_once('/') else {
            return Ok(
                json!({"status": "rejected", "error": format!("build pk {pk:?} is not repo/env")}),
            );
        };
        let key = BuildKey {
            repo: repo.to_owned(),
            env: env.to_owned(),
            sk: sk.to_owned(),
        };
        let mut reason = format!("deployment execution {status}");
        if let Some(error) = &error {
            reason.push_str(&format!(": {error}"));
        }
        if let Some(cause) = &cause {
            reason.push_str(&format!(": {cause}"));
        }
        let now = builddao::now_rfc3339();
        let outcome = builds
            .mark_failed(
                &key,
                &[
                    BuildStatus::Pending,
                    BuildStatus::InProgress,
                    BuildStatus::AwaitingApproval,
                ],
                &reason,
                &now,
            )
            .await?;
        if let (Some(stacks), Some(stack_name)) = (
            &self.config.stacks_table,
            input.as_ref().and_then(|i| i["stack_name"].as_str()),
        ) {
            let released = self
                .dynamodb
                .update_item()
                .table_name(stacks)
                .key("stack_name", AttributeValue::S(stack_name.to_owned()))
                .update_expression("REMOVE holder_sk, holder_execution, lock_expires_at")
                .condition_expression("holder_sk = :sk")
                .expression_attribute_values(":sk", AttributeValue::S(sk.to_owned()))
                .send()
                .await;
            if let Err(err) = released {
                let conditional = err
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception());
                if !conditional {
                    return Err(DispatchError::Aws(format!(
                        "releasing the lock on {stack_name}: {}",
                        aws_sdk_dynamodb::error::DisplayErrorContext(&err)
                    )));
                }
            }
        }
        match outcome {
            Transition::Applied => {
                warn!(build_id = %format!("{repo}/{env}/{sk}"), %reason, "build marked FAILED from execution status");
                let notice = Notice::new(
                    Outcome::Failed,
                    format!("Deployment of {repo} to {env} failed"),
                    env.to_owned(),
                )
                .with_deployment_id(execution_arn.to_owned())
                .with_reason(reason.clone());
                self.notifier.send(&notice).await;
                Ok(json!({"status": "build_failed", "build": format!("{repo}/{env}/{sk}")}))
            }
            Transition::Refused { current } => {
                info!(?current, "build already ended; left unchanged");
                Ok(json!({"status": "unchanged", "current": current.map(|s| s.as_str())}))
            }
        }
    }
}
