//! `ci-dispatch`: the suite's EventBridge entry point.
//!
//! Events are parsed at the edge into a [`Trigger`]; each trigger resolves to
//! ECS services and redeploys them, or (ECS and Step Functions status events)
//! only reports and reconciles. Every event is claimed before it is worked on
//! and remembered as done after (see [`memory`]): a replay of a completed
//! event is acknowledged and skipped, one that arrives while the event is
//! being worked on fails so Lambda retries it later, and the retry of an
//! invocation that timed out or crashed takes its claim over. Bad input
//! never causes a retry: only AWS trouble that may pass returns an error (and
//! EventBridge/Lambda retry).

pub mod config;
pub mod ecs;
pub mod events;
pub mod executions;
pub mod memory;
pub mod naming;

use aws_sdk_dynamodb::types::AttributeValue;
use builddao::{BuildStatus, BuildStore, Transition};
use futures::future::join_all;
use ledger::short_task_definition;
use notify::{Notice, Notifier, Outcome};
use serde_json::{json, Value};
use tracing::{info, warn, Instrument};

pub use config::Config;
use ecs::DeployError;
use events::{EventError, ExecutionEnded, Trigger};
use memory::{Attempt, Claim, DeployContext, Lease, Memory, MemoryError};
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
    #[error(transparent)]
    Ledger(#[from] ledger::LedgerError),
    #[error("{0}")]
    Aws(String),
    /// Another invocation holds the claim and may still be running: this
    /// one fails so Lambda retries it after that invocation ended.
    #[error(
        "{claim} is being worked on by request {holder} (lease until {until_ms} ms); retry later"
    )]
    Busy {
        claim: String,
        holder: String,
        until_ms: u64,
    },
    /// The claim was taken over by another invocation while this one held it.
    #[error("{claim} was taken over by another invocation; nothing started")]
    LeaseLost { claim: String },
}

impl From<DispatchError> for lambda_runtime::Diagnostic {
    fn from(err: DispatchError) -> Self {
        lambda_runtime::Diagnostic {
            error_type: "Retryable".into(),
            error_message: err.to_string(),
        }
    }
}

/// What starting one service's deployment came to.
enum Started {
    Deployment {
        deployment_id: String,
        task_definition: String,
        /// Found: an earlier attempt's UpdateService had started it.
        recovered: bool,
        /// When the attempt that called UpdateService started (Unix ms).
        started_ms: u64,
    },
    DryRun {
        task_definition: String,
    },
}

/// Why a deployment did not start: ECS's answer (reported or retried), or
/// the dispatch table's.
enum StartFailure {
    Ecs(DeployError),
    Dispatch(DispatchError),
}

impl From<DeployError> for StartFailure {
    fn from(err: DeployError) -> Self {
        StartFailure::Ecs(err)
    }
}

impl From<MemoryError> for StartFailure {
    fn from(err: MemoryError) -> Self {
        StartFailure::Dispatch(DispatchError::Memory(err))
    }
}

/// Everything a dispatch needs, built once per cold start.
pub struct Dispatcher {
    pub config: Config,
    pub ecs: aws_sdk_ecs::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub memory: Memory,
    pub builds: Option<BuildStore>,
    /// The redeploy ledger; `None` records nothing.
    pub ledger: Option<ledger::ServiceDeploymentStore>,
    pub notifier: Notifier,
}

/// What set a redeploy off, as the ledger records it.
struct Cause<'a> {
    reason: &'a str,
    /// The event's source (`aws.ecr`, `action.deploy`, …).
    source: &'a str,
    image_digest: Option<&'a str>,
}

/// An ECS rollback as its SERVICE_DEPLOYMENT_IN_PROGRESS event tells it.
#[derive(Clone, Copy)]
struct EcsRollback<'a> {
    cluster: &'a str,
    service: &'a str,
    /// The rollback's own deployment.
    deployment_id: &'a str,
    /// The deployment it goes back to.
    to: &'a str,
    reason: &'a str,
    updated_at: Option<&'a str>,
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
    /// The deployment was started by an earlier attempt that timed out or
    /// crashed after UpdateService; this one found it instead of deploying again.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    recovered: bool,
}

impl ServiceResult {
    fn new(service: &str, status: &'static str) -> Self {
        Self {
            service: service.to_owned(),
            status,
            deployment_id: None,
            task_definition: None,
            error: None,
            recovered: false,
        }
    }
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

    /// Handles one EventBridge event for the invocation holding `lease`.
    pub async fn handle(&self, event: Value, lease: &Lease) -> Result<Value, DispatchError> {
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
            if let Trigger::Manual { environment, .. } = &trigger {
                if environment != &self.config.env {
                    let why = format!(
                        "manual deploy is for environment {environment}; this install deploys {}",
                        self.config.env
                    );
                    info!(%why, "event ignored");
                    return Ok(json!({"status": "ignored", "reason": why}));
                }
            }
            let claim = format!("event#{}", envelope.id);
            match self.memory.claim(&claim, lease).await? {
                Claim::Done => {
                    info!("event already processed; acknowledged and skipped");
                    return Ok(json!({"status": "duplicate", "event_id": envelope.id}));
                }
                Claim::Busy { holder, until_ms } => {
                    info!(%holder, until_ms, "event being processed by another invocation; retry later");
                    return Err(DispatchError::Busy {
                        claim,
                        holder,
                        until_ms,
                    });
                }
                Claim::Claimed { previous } => {
                    if let Some(previous) = previous {
                        info!(holder = ?previous.holder, "taking over the event from an attempt that did not finish");
                    }
                }
            }
            let outcome = self
                .route(&envelope.id, &envelope.source, trigger, lease)
                .await;
            self.settle(&claim, lease, outcome).await
        }
        .instrument(span)
        .await
    }

    /// Marks a claim done after its work succeeded, or gives it up after a
    /// failure (so the retry runs the work again).
    async fn settle<T>(
        &self,
        claim: &str,
        lease: &Lease,
        outcome: Result<T, DispatchError>,
    ) -> Result<T, DispatchError> {
        match outcome {
            Ok(value) => {
                if !self.memory.complete(claim, lease).await? {
                    warn!(%claim, "claim was taken over before it was marked done");
                }
                Ok(value)
            }
            Err(err) => {
                if let Err(release) = self.memory.abandon(claim, lease, None).await {
                    warn!(%claim, error = %release, "could not release the claim; it frees itself when its lease ends");
                }
                Err(err)
            }
        }
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

    async fn route(
        &self,
        event_id: &str,
        source: &str,
        trigger: Trigger,
        lease: &Lease,
    ) -> Result<Value, DispatchError> {
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
                match self.memory.claim(&image, lease).await? {
                    Claim::Done => {
                        info!(%repository, %digest, "image already deployed for another tag; skipped");
                        return Ok(json!({"status": "duplicate", "image": digest}));
                    }
                    Claim::Busy { holder, until_ms } => {
                        info!(%repository, %digest, %holder, "image being deployed for another tag; retry later");
                        return Err(DispatchError::Busy {
                            claim: image,
                            holder,
                            until_ms,
                        });
                    }
                    Claim::Claimed { .. } => {}
                }
                let reason = format!(
                    "image {repository}:{} pushed ({digest})",
                    tag.as_deref().unwrap_or("untagged")
                );
                let cause = Cause {
                    reason: &reason,
                    source,
                    image_digest: Some(&digest),
                };
                let result = self.deploy(event_id, &[name], None, &cause, lease).await;
                self.settle(&image, lease, result).await
            }
            Trigger::ParameterChanged { name, operation } => {
                let Some(service) = self.resolver().service_for_parameter(&name) else {
                    warn!(parameter = %name, "parameter is not under /{{env}}/{{project}}/{{service}}/; skipped");
                    return Ok(
                        json!({"status": "skipped", "reason": format!("parameter {name} maps to no service")}),
                    );
                };
                let reason = format!("parameter {name} {operation}");
                let cause = Cause {
                    reason: &reason,
                    source,
                    image_digest: None,
                };
                self.deploy(event_id, &[service], None, &cause, lease).await
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
                let reason = format!("env file s3://{bucket}/{key} {operation}");
                let cause = Cause {
                    reason: &reason,
                    source,
                    image_digest: None,
                };
                self.deploy(event_id, &users, None, &cause, lease).await
            }
            Trigger::Manual {
                service,
                task_definition,
                reason,
                ..
            } => {
                let reason = reason.unwrap_or_else(|| "manual deploy".into());
                if let Some(task_definition) = &task_definition {
                    let target = self.resolver().resolve(&service);
                    if let Some(refused) = self
                        .refuse_foreign_family(&target, task_definition, &reason)
                        .await
                    {
                        return Ok(refused);
                    }
                }
                let cause = Cause {
                    reason: &reason,
                    source,
                    image_digest: None,
                };
                self.deploy(
                    event_id,
                    &[service],
                    task_definition.as_deref(),
                    &cause,
                    lease,
                )
                .await
            }
            Trigger::EcsDeployment {
                event_name,
                deployment_id,
                service_arn,
                reason,
                updated_at,
            } => {
                self.ecs_status(
                    &event_name,
                    &deployment_id,
                    &service_arn,
                    reason,
                    updated_at.as_deref(),
                )
                .await
            }
            Trigger::ExecutionEnded(ended) => self.execution_ended(ended).await,
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
        cause: &Cause<'_>,
        lease: &Lease,
    ) -> Result<Value, DispatchError> {
        let targets: Vec<ServiceTarget> = services
            .iter()
            .map(|s| self.resolver().resolve(s))
            .collect();
        let results = join_all(
            targets
                .iter()
                .map(|target| self.deploy_once(event_id, target, task_definition, cause, lease)),
        )
        .await;
        let mut report = Vec::new();
        for result in results {
            report.push(result?);
        }
        Ok(json!({"status": "done", "dry_run": self.config.dry_run, "services": report}))
    }

    /// Redeploys one service for one event, at most once whatever happens to
    /// the invocations doing it.
    ///
    /// The service's claim records each attempt before UpdateService. An
    /// invocation that times out or crashes after UpdateService reached ECS
    /// leaves that attempt on its claim; the retry taking the claim over
    /// looks for the deployment the attempt created before deploying again.
    async fn deploy_once(
        &self,
        event_id: &str,
        target: &ServiceTarget,
        task_definition: Option<&str>,
        cause: &Cause<'_>,
        lease: &Lease,
    ) -> Result<ServiceResult, DispatchError> {
        let claim = format!("deployed#{event_id}#{}#{}", target.cluster, target.service);
        let previous = match self.memory.claim(&claim, lease).await? {
            Claim::Done => {
                info!(service = %target.service, "already deployed for this event by an earlier attempt");
                return Ok(ServiceResult::new(&target.service, "already_deployed"));
            }
            Claim::Busy { holder, until_ms } => {
                return Err(DispatchError::Busy {
                    claim,
                    holder,
                    until_ms,
                })
            }
            Claim::Claimed { previous } => previous.and_then(|p| p.attempt),
        };
        let mut attempt = previous.clone();
        let result = self
            .deploy_one(
                &claim,
                target,
                task_definition,
                cause,
                lease,
                previous,
                &mut attempt,
            )
            .await;
        match result {
            Ok(result) => {
                if !self.memory.complete(&claim, lease).await? {
                    warn!(%claim, "service claim was taken over before it was marked done");
                }
                Ok(result)
            }
            Err(err) => {
                if let Err(release) = self.memory.abandon(&claim, lease, attempt.as_ref()).await {
                    warn!(error = %release, "could not release the service claim; it frees itself when its lease ends");
                }
                Err(err)
            }
        }
    }

    /// One service's redeploy under a held claim, reported to Slack.
    /// `previous` is the attempt of the invocation whose claim this one took
    /// over; `attempt` is left holding the attempt the claim records.
    #[allow(clippy::too_many_arguments)]
    async fn deploy_one(
        &self,
        claim: &str,
        target: &ServiceTarget,
        task_definition: Option<&str>,
        cause: &Cause<'_>,
        lease: &Lease,
        previous: Option<Attempt>,
        attempt: &mut Option<Attempt>,
    ) -> Result<ServiceResult, DispatchError> {
        let reason = cause.reason;
        let env = &self.config.env;
        let base = |outcome: Outcome, title: String| {
            Notice::new(outcome, title, env.clone())
                .with_service(target.service.clone())
                .with_cluster(target.cluster.clone())
                .with_reason(reason.to_owned())
                .with_dry_run(self.config.dry_run)
                .with_link("ECS service", self.console_service_url(target))
        };
        let started = self
            .start(claim, target, task_definition, lease, previous, attempt)
            .await;
        match started {
            Ok(Started::DryRun { task_definition }) => {
                info!(service = %target.service, %task_definition, "DRY RUN: would deploy");
                let notice = base(
                    Outcome::Info,
                    format!("Would deploy {} to {env}", target.name),
                )
                .with_task_definition(task_definition.clone());
                self.notifier.send(&notice).await;
                Ok(ServiceResult {
                    task_definition: Some(task_definition),
                    ..ServiceResult::new(&target.service, "dry_run")
                })
            }
            Ok(Started::Deployment {
                deployment_id,
                task_definition,
                recovered,
                started_ms,
            }) => {
                let recorded = self
                    .record_redeploy(
                        target,
                        &task_definition,
                        cause,
                        Some(&deployment_id),
                        started_ms,
                        None,
                    )
                    .await?;
                let context = DeployContext {
                    service: target.service.clone(),
                    cluster: target.cluster.clone(),
                    name: target.name.clone(),
                    task_definition: task_definition.clone(),
                    reason: reason.to_owned(),
                    ledger: recorded,
                    rollback: false,
                };
                if let Err(err) = self.memory.remember_deploy(&deployment_id, &context).await {
                    warn!(error = %err, "could not remember the deploy; its completion will be reported without context");
                }
                let notice = base(
                    Outcome::Started,
                    format!("Deploying {} to {env}", target.name),
                )
                .with_deployment_id(deployment_id.clone())
                .with_task_definition(task_definition.clone());
                self.announce_once(claim, lease, attempt, &notice).await?;
                Ok(ServiceResult {
                    deployment_id: Some(deployment_id),
                    task_definition: Some(task_definition),
                    recovered,
                    ..ServiceResult::new(&target.service, "started")
                })
            }
            Err(StartFailure::Dispatch(err)) => Err(err),
            Err(StartFailure::Ecs(err)) if err.is_retryable() => {
                warn!(service = %target.service, error = %err, "deploy failed; the event will be retried");
                Err(DispatchError::Deploy(err))
            }
            Err(StartFailure::Ecs(err)) => {
                warn!(service = %target.service, error = %err, "deploy refused; not retried");
                let failure = err.to_string();
                self.record_redeploy(
                    target,
                    task_definition.unwrap_or("(newest ACTIVE revision)"),
                    cause,
                    None,
                    memory::now_ms(),
                    Some(&failure),
                )
                .await?;
                let notice = base(
                    Outcome::Failed,
                    format!("Deploy of {} to {env} failed", target.name),
                )
                .with_reason(format!("{reason}: {err}"));
                self.notifier.send(&notice).await;
                Ok(ServiceResult {
                    error: Some(err.to_string()),
                    ..ServiceResult::new(&target.service, "failed")
                })
            }
        }
    }

    /// Starts the service's deployment, or finds the one `previous` started.
    async fn start(
        &self,
        claim: &str,
        target: &ServiceTarget,
        task_definition: Option<&str>,
        lease: &Lease,
        previous: Option<Attempt>,
        attempt: &mut Option<Attempt>,
    ) -> Result<Started, StartFailure> {
        if let Some(previous) = previous {
            let found = ecs::find_attempt_deployment(
                &self.ecs,
                target,
                &previous.task_definition,
                previous.started_ms,
            )
            .await?;
            if let Some(deployment_id) = found {
                info!(service = %target.service, %deployment_id, started_ms = previous.started_ms,
                    "an earlier attempt's UpdateService reached ECS; its deployment is this event's");
                return Ok(Started::Deployment {
                    deployment_id,
                    task_definition: previous.task_definition,
                    recovered: true,
                    started_ms: previous.started_ms,
                });
            }
            info!(service = %target.service, "an earlier attempt left no deployment; deploying");
        }
        let task_definition =
            ecs::target_task_definition(&self.ecs, target, task_definition).await?;
        if self.config.dry_run {
            return Ok(Started::DryRun { task_definition });
        }
        let safeguards = ecs::Safeguards {
            circuit_breaker: self.config.circuit_breaker,
            alarms: self
                .config
                .deployment_alarms
                .get(&target.name)
                .map_or(&[], Vec::as_slice),
        };
        let configuration = ecs::deployment_configuration(&self.ecs, target, safeguards).await?;
        let next = Attempt {
            started_ms: memory::now_ms(),
            task_definition: task_definition.clone(),
            announced: false,
        };
        if !self.memory.start_attempt(claim, lease, &next).await? {
            return Err(StartFailure::Dispatch(DispatchError::LeaseLost {
                claim: claim.to_owned(),
            }));
        }
        *attempt = Some(next.clone());
        let deployment_id = ecs::update_service(
            &self.ecs,
            target,
            &task_definition,
            configuration.as_ref(),
            next.started_ms,
        )
        .await?;
        // Written right after UpdateService returns (the fault tests crash here).
        info!(service = %target.service, cluster = %target.cluster, %deployment_id, %task_definition, "deployment started");
        Ok(Started::Deployment {
            deployment_id,
            task_definition,
            recovered: false,
            started_ms: next.started_ms,
        })
    }

    /// Writes the redeploy's ledger record (once: a replay finds it); its
    /// key, to close it when ECS reports the rollout's end.
    async fn record_redeploy(
        &self,
        target: &ServiceTarget,
        task_definition: &str,
        cause: &Cause<'_>,
        deployment_id: Option<&str>,
        started_ms: u64,
        failure: Option<&str>,
    ) -> Result<Option<ledger::RecordKey>, DispatchError> {
        let Some(ledger) = &self.ledger else {
            return Ok(None);
        };
        let redeploy = ledger::StartedRedeploy {
            env: self.config.env.clone(),
            cluster: target.cluster.clone(),
            service: target.service.clone(),
            name: target.name.clone(),
            task_definition: task_definition.to_owned(),
            image_digest: cause.image_digest.map(str::to_owned),
            deployment_id: deployment_id.map(str::to_owned),
            started_ms,
            trigger: cause.reason.to_owned(),
            triggered_by: cause.source.to_owned(),
            console_url: self.console_service_url(target),
            failure: failure.map(str::to_owned),
        };
        Ok(Some(ledger.record_started(&redeploy).await?))
    }

    /// Refuses a manual deploy whose explicit task definition is not a
    /// revision of the service's own family: nothing is deployed and Slack
    /// is told once (a replay of the event is a duplicate).
    async fn refuse_foreign_family(
        &self,
        target: &ServiceTarget,
        task_definition: &str,
        reason: &str,
    ) -> Option<Value> {
        let family = naming::task_definition_family(task_definition);
        if family == target.family {
            return None;
        }
        let refusal = format!(
            "task definition {task_definition} is of family {family}, not {}, the family of service {}; nothing deployed",
            target.family, target.service
        );
        warn!(service = %target.service, %refusal, "manual deploy refused; not retried");
        let env = &self.config.env;
        let notice = Notice::new(
            Outcome::Failed,
            format!("Deploy of {} to {env} refused", target.name),
            env.clone(),
        )
        .with_service(target.service.clone())
        .with_cluster(target.cluster.clone())
        .with_reason(format!("{reason}: {refusal}"));
        self.notifier.send(&notice).await;
        Some(json!({"status": "rejected", "service": target.service, "error": refusal}))
    }

    /// Sends a deploy's "Deploying" message unless an earlier attempt of
    /// this event already did, then marks the claim's attempt announced: a
    /// retry after any later failure (a timeout, a crash, a throttle) does
    /// not repeat it; only a crash between the send and that one write can.
    async fn announce_once(
        &self,
        claim: &str,
        lease: &Lease,
        attempt: &mut Option<Attempt>,
        notice: &Notice,
    ) -> Result<(), DispatchError> {
        if attempt.as_ref().is_some_and(|a| a.announced) {
            info!(%claim, "the deploy's start was announced by an earlier attempt");
            return Ok(());
        }
        self.notifier.send(notice).await;
        if let Some(current) = attempt.as_mut() {
            let announced = Attempt {
                announced: true,
                ..current.clone()
            };
            match self.memory.start_attempt(claim, lease, &announced).await {
                Ok(true) => *current = announced,
                Ok(false) => {
                    return Err(DispatchError::LeaseLost {
                        claim: claim.to_owned(),
                    })
                }
                // The message went out; a retry would only repeat it.
                Err(err) => warn!(error = %err, %claim, "could not mark the deploy announced"),
            }
        }
        Ok(())
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
        updated_at: Option<&str>,
    ) -> Result<Value, DispatchError> {
        let Some((cluster, service)) = self.owns_service_arn(service_arn) else {
            info!(%service_arn, "deployment event for another project's cluster; ignored");
            return Ok(json!({"status": "ignored", "reason": "not this project's cluster"}));
        };
        let outcome = match event_name {
            "SERVICE_DEPLOYMENT_COMPLETED" => Outcome::Succeeded,
            "SERVICE_DEPLOYMENT_FAILED" => Outcome::Failed,
            "SERVICE_DEPLOYMENT_IN_PROGRESS" => {
                let Some(to) = reason.as_deref().and_then(ecs::rolled_back_to) else {
                    return Ok(
                        json!({"status": "ignored", "reason": "in progress was reported when the deploy started"}),
                    );
                };
                let rollback = EcsRollback {
                    cluster: &cluster,
                    service: &service,
                    deployment_id,
                    to,
                    reason: reason.as_deref().unwrap_or_default(),
                    updated_at,
                };
                return self.ecs_rollback(&rollback).await;
            }
            _ => Outcome::Info,
        };
        let context = self.memory.deploy_context(deployment_id).await?;
        let ended = match outcome {
            Outcome::Succeeded => Some(ledger::EndedRedeploy::Completed),
            Outcome::Failed => Some(ledger::EndedRedeploy::Failed),
            _ => None,
        };
        let recorded = context.as_ref().and_then(|c| c.ledger.as_ref());
        if let (Some(ledger), Some(key), Some(ended)) = (&self.ledger, recorded, ended) {
            let why = reason
                .clone()
                .unwrap_or_else(|| format!("ECS reported {event_name}"));
            if !ledger.record_ended(key, ended, &why).await? {
                info!(%service, %deployment_id, "redeploy record already closed; left unchanged");
            }
        }
        let env = &self.config.env;
        let rollback = context.as_ref().is_some_and(|c| c.rollback);
        let title = match (outcome, rollback) {
            (Outcome::Succeeded, true) => format!(
                "Rolled back {service} in {env} to {}",
                context
                    .as_ref()
                    .map_or("its last completed deployment", |c| short_task_definition(
                        &c.task_definition
                    ))
            ),
            (Outcome::Succeeded, false) => format!("Deployed {service} to {env}"),
            (Outcome::Failed, true) => format!("Rollback of {service} in {env} failed"),
            (Outcome::Failed, false) => format!("Deployment of {service} to {env} failed"),
            _ => format!("{service} in {env}: {event_name}"),
        };
        let mut notice = Notice::new(outcome, title, env.clone())
            .with_service(service.clone())
            .with_cluster(cluster)
            .with_deployment_id(deployment_id.to_owned());
        let started_by = context.as_ref().map(|c| c.reason.clone());
        if let Some(context) = &context {
            notice = notice.with_task_definition(context.task_definition.clone());
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

    /// ECS started rolling a service back (its deployment circuit breaker
    /// or alarms failed a deployment): reported as a failed deploy naming
    /// the task definition it went back to. The failed redeploy's record
    /// says so; the rollback gets a record (and a context) of its own, so
    /// its end is reported too.
    ///
    /// The task definition comes from ECS (the rollback deployment's), else
    /// from what was remembered of the deployment it goes back to.
    async fn ecs_rollback(&self, rollback: &EcsRollback<'_>) -> Result<Value, DispatchError> {
        let EcsRollback {
            cluster,
            service,
            deployment_id,
            to,
            reason,
            updated_at,
        } = *rollback;
        let facts = match ecs::describe_service(&self.ecs, cluster, service).await {
            Ok(described) => ecs::rollback_facts(&described, deployment_id),
            Err(err) if err.is_retryable() => return Err(DispatchError::Deploy(err)),
            Err(err) => {
                warn!(error = %err, "the rolled-back service could not be described");
                ecs::RollbackFacts {
                    restored: None,
                    failed: None,
                }
            }
        };
        // What was remembered of the deployment it goes back to is read
        // only when ECS did not name the task definition.
        let restored = match facts.restored {
            Some(restored) => Some(restored),
            None => self
                .memory
                .deploy_context(to)
                .await?
                .map(|c| c.task_definition),
        };
        let restored_name = restored.as_deref().map_or_else(
            || format!("deployment {to}"),
            |td| short_task_definition(td).to_owned(),
        );
        let failed_id = facts.failed.as_ref().map(|(id, _)| id.clone());
        let failed_context = match &failed_id {
            Some(id) => self.memory.deploy_context(id).await?,
            None => None,
        };
        let failed_task_definition = facts
            .failed
            .as_ref()
            .and_then(|(_, td)| td.clone())
            .or_else(|| failed_context.as_ref().map(|c| c.task_definition.clone()));
        let name = failed_context
            .as_ref()
            .map(|c| c.name.clone())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| service.to_owned());
        let why = format!("{reason} ECS rolled {service} back to {restored_name}");
        let mut rollback_record = None;
        if let Some(ledger) = &self.ledger {
            if let (Some(key), Some(td)) = (
                failed_context.as_ref().and_then(|c| c.ledger.as_ref()),
                &restored,
            ) {
                if !ledger.record_rolled_back(key, td, &why).await? {
                    info!(%service, "the failed redeploy's record already names its rollback");
                }
            }
            let started_ms = updated_at
                .and_then(ledger::parse_time)
                .map_or_else(memory::now_ms, |at| {
                    u64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or_default()
                });
            let target = ServiceTarget {
                cluster: cluster.to_owned(),
                service: service.to_owned(),
                family: naming::task_definition_family(restored.as_deref().unwrap_or_default())
                    .to_owned(),
                name: name.clone(),
            };
            let cause = Cause {
                reason,
                source: "aws.ecs",
                image_digest: None,
            };
            rollback_record = self
                .record_redeploy(
                    &target,
                    restored.as_deref().unwrap_or(&restored_name),
                    &cause,
                    Some(deployment_id),
                    started_ms,
                    None,
                )
                .await?;
        }
        let context = DeployContext {
            service: service.to_owned(),
            cluster: cluster.to_owned(),
            name,
            task_definition: restored.clone().unwrap_or_else(|| restored_name.clone()),
            reason: reason.to_owned(),
            ledger: rollback_record,
            rollback: true,
        };
        if let Err(err) = self.memory.remember_deploy(deployment_id, &context).await {
            warn!(error = %err, "could not remember the rollback; its end will be reported without context");
        }
        let env = &self.config.env;
        let mut detail = reason.to_owned();
        match (&failed_id, &failed_task_definition) {
            (Some(id), Some(td)) => detail.push_str(&format!(
                " Deployment {id} of {} failed.",
                short_task_definition(td)
            )),
            (Some(id), None) => detail.push_str(&format!(" Deployment {id} failed.")),
            _ => {}
        }
        if let Some(by) = failed_context.as_ref().map(|c| &c.reason) {
            detail.push_str(&format!(" (started by: {by})"));
        }
        let mut notice = Notice::new(
            Outcome::Failed,
            format!(
                "Deployment of {service} to {env} failed: ECS rolled it back to {restored_name}"
            ),
            env.clone(),
        )
        .with_service(service.to_owned())
        .with_cluster(cluster.to_owned())
        .with_deployment_id(deployment_id.to_owned())
        .with_reason(detail);
        if let Some(td) = &restored {
            notice = notice.with_task_definition(td.clone());
        }
        self.notifier.send(&notice).await;
        warn!(%service, %deployment_id, rolled_back_to = %restored_name, failed = ?failed_id, "ECS is rolling the service back");
        Ok(
            json!({"status": "rolled_back", "deployment_id": deployment_id, "task_definition": restored, "failed_deployment": failed_id}),
        )
    }

    /// A deployment execution ended outside the machine's own paths: its
    /// build is marked FAILED (never over a terminal status) and its stack
    /// lock released. The build is found from the input, else the
    /// execution's name, else its ARN (see [`executions`]).
    async fn execution_ended(&self, ended: ExecutionEnded) -> Result<Value, DispatchError> {
        let (Some(builds), Some(ours), Some(table)) = (
            &self.builds,
            &self.config.state_machine_arn,
            &self.config.builds_table,
        ) else {
            return Ok(
                json!({"status": "ignored", "reason": "build reconciliation not configured"}),
            );
        };
        let status = ended.status.as_str();
        if &ended.state_machine_arn != ours {
            return Ok(json!({"status": "ignored", "reason": "another state machine"}));
        }
        if !matches!(status, "FAILED" | "TIMED_OUT" | "ABORTED") {
            return Ok(json!({"status": "ignored", "reason": format!("execution {status}")}));
        }
        let execution_arn = ended.execution_arn.as_str();
        let Some(found) = executions::find_build(builds, &self.dynamodb, table, &ended).await?
        else {
            warn!(%execution_arn, name = %ended.name, "no build names this execution (input, name or ARN); nothing to reconcile");
            return Ok(
                json!({"status": "rejected", "error": format!("no build found for execution {execution_arn}")}),
            );
        };
        let key = found.key;
        let (repo, env, sk) = (key.repo.as_str(), key.env.as_str(), key.sk.as_str());
        let mut reason = format!("deployment execution {status}");
        if let Some(error) = &ended.error {
            reason.push_str(&format!(": {error}"));
        }
        if let Some(cause) = &ended.cause {
            reason.push_str(&format!(": {cause}"));
        }
        let now = ledger::now_rfc3339();
        let outcome = builds
            .mark_failed(
                &key,
                &[
                    BuildStatus::Pending,
                    BuildStatus::InProgress,
                    BuildStatus::AwaitingApproval,
                    BuildStatus::AwaitingWindow,
                ],
                &reason,
                &now,
            )
            .await?;
        if let (Some(stacks), Some(stack_name)) = (&self.config.stacks_table, &found.stack_name) {
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
            match released {
                Ok(_) => info!(%stack_name, "stack lock released"),
                Err(err) => {
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
        }
        let build_id = format!("{repo}/{env}/{sk}");
        match outcome {
            Transition::Applied => {
                warn!(%build_id, found_by = found.found_by, %reason, "build marked FAILED from execution status");
                let notice = Notice::new(
                    Outcome::Failed,
                    format!("Deployment of {repo} to {env} failed"),
                    env.to_owned(),
                )
                .with_deployment_id(execution_arn.to_owned())
                .with_reason(reason.clone());
                self.notifier.send(&notice).await;
                Ok(json!({"status": "build_failed", "build": build_id, "found_by": found.found_by}))
            }
            Transition::Refused { current } => {
                info!(%build_id, ?current, "build already ended; left unchanged");
                Ok(json!({"status": "unchanged", "current": current.map(|s| s.as_str())}))
            }
        }
    }
}
