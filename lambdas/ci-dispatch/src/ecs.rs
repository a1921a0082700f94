//! Redeploying an ECS service.
//!
//! Throttling and 5xx answers are retried by the SDK client (standard retry
//! mode: exponential backoff with jitter, transient errors only), except for
//! UpdateService, which is not idempotent and is retried here only once ECS
//! says the failed call did not take effect. What is left when retries give
//! up is classified as retryable or not.

use std::time::Duration;

use aws_sdk_ecs::config::retry::RetryConfig;
use aws_sdk_ecs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_ecs::types::{
    DeploymentAlarms, DeploymentCircuitBreaker, DeploymentConfiguration, DeploymentControllerType,
    Service, SortOrder, TaskDefinitionStatus,
};

use crate::config::CircuitBreaker;
use crate::naming::ServiceTarget;

#[derive(Debug, Clone, thiserror::Error)]
pub enum DeployError {
    /// ECS kept failing transiently after the client's retries.
    #[error("{operation} for {service} failed after retries: {message}")]
    Retryable {
        operation: &'static str,
        service: String,
        message: String,
    },
    /// Retrying cannot help (unknown service, cluster or task definition).
    #[error("{operation} for {service} refused: {message}")]
    Refused {
        operation: &'static str,
        service: String,
        message: String,
    },
}

impl DeployError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, DeployError::Retryable { .. })
    }
}

fn classify<E: ProvideErrorMetadata + std::error::Error + 'static>(
    operation: &'static str,
    service: &str,
    err: SdkError<E, aws_sdk_ecs::config::http::HttpResponse>,
) -> DeployError {
    let retryable = match &err {
        SdkError::ServiceError(e) => {
            e.raw().status().is_server_error()
                || matches!(
                    e.err().code(),
                    Some("ThrottlingException" | "Throttling" | "ServerException")
                )
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        _ => false,
    };
    let message = DisplayErrorContext(&err).to_string();
    if retryable {
        DeployError::Retryable {
            operation,
            service: service.to_owned(),
            message,
        }
    } else {
        DeployError::Refused {
            operation,
            service: service.to_owned(),
            message,
        }
    }
}

/// The newest ACTIVE revision of a family, as an ARN.
///
/// DescribeTaskDefinition by family answers the latest ACTIVE revision on
/// AWS. If what comes back is not ACTIVE (an emulator returns the highest
/// revision whatever its status), the ACTIVE revisions are listed and the
/// highest revision *number* wins: ARNs are never compared as strings
/// (`:9` sorts after `:10`).
pub async fn newest_active_task_definition(
    ecs: &aws_sdk_ecs::Client,
    target: &ServiceTarget,
) -> Result<String, DeployError> {
    let described = ecs
        .describe_task_definition()
        .task_definition(&target.family)
        .send()
        .await
        .map_err(|e| classify("DescribeTaskDefinition", &target.service, e))?;
    let definition = described
        .task_definition()
        .ok_or_else(|| DeployError::Refused {
            operation: "DescribeTaskDefinition",
            service: target.service.clone(),
            message: format!("no task definition in family {}", target.family),
        })?;
    if definition.status() == Some(&TaskDefinitionStatus::Active) {
        if let Some(arn) = definition.task_definition_arn() {
            return Ok(arn.to_owned());
        }
    }
    let mut newest: Option<(u64, String)> = None;
    let mut pages = ecs
        .list_task_definitions()
        .family_prefix(&target.family)
        .status(TaskDefinitionStatus::Active)
        .sort(SortOrder::Desc)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| classify("ListTaskDefinitions", &target.service, e))?;
        for arn in page.task_definition_arns() {
            let Some((family, revision)) = arn
                .rsplit('/')
                .next()
                .and_then(|tail| tail.rsplit_once(':'))
            else {
                continue;
            };
            let Ok(revision) = revision.parse::<u64>() else {
                continue;
            };
            if family == target.family && newest.as_ref().is_none_or(|(best, _)| revision > *best) {
                newest = Some((revision, arn.clone()));
            }
        }
    }
    newest
        .map(|(_, arn)| arn)
        .ok_or_else(|| DeployError::Refused {
            operation: "ListTaskDefinitions",
            service: target.service.clone(),
            message: format!("family {} has no ACTIVE revision", target.family),
        })
}

/// The task definition a redeploy deploys: `explicit`, or the family's
/// newest ACTIVE revision.
pub async fn target_task_definition(
    ecs: &aws_sdk_ecs::Client,
    target: &ServiceTarget,
    explicit: Option<&str>,
) -> Result<String, DeployError> {
    match explicit {
        Some(explicit) => Ok(explicit.to_owned()),
        None => newest_active_task_definition(ecs, target).await,
    }
}

/// How many times UpdateService is sent within one invocation.
const UPDATE_ATTEMPTS: u32 = 5;

/// Whether a failed call may still have taken effect: ECS answered 5xx, or
/// no answer came back. A throttle or other 4xx was refused before any work.
fn outcome_unknown<E>(err: &SdkError<E, aws_sdk_ecs::config::http::HttpResponse>) -> bool {
    match err {
        SdkError::ServiceError(e) => e.raw().status().is_server_error(),
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        _ => false,
    }
}

/// Exponential backoff with full jitter: a random wait up to `ceiling`.
fn jittered(ceiling: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos() as u64;
    let ceiling_ms = ceiling.as_millis().max(1) as u64;
    Duration::from_millis(nanos % ceiling_ms + 1)
}

/// Forces a new deployment of the service with `task_definition` for the
/// attempt that started at `started_ms`; returns the deployment's id.
///
/// UpdateService is not idempotent: sent twice it starts two deployments.
/// So the SDK does not retry it. Throttles are retried here with backoff and
/// jitter; after a 5xx or a lost answer, ECS is asked first whether the call
/// took effect ([`find_attempt_deployment`]) and it is sent again only if not.
pub async fn update_service(
    ecs: &aws_sdk_ecs::Client,
    target: &ServiceTarget,
    task_definition: &str,
    configuration: Option<&DeploymentConfiguration>,
    started_ms: u64,
) -> Result<String, DeployError> {
    let mut ceiling = Duration::from_millis(200);
    let mut attempt = 1;
    loop {
        let sent = ecs
            .update_service()
            .cluster(&target.cluster)
            .service(&target.service)
            .task_definition(task_definition)
            .set_deployment_configuration(configuration.cloned())
            .force_new_deployment(true)
            .customize()
            .config_override(
                aws_sdk_ecs::config::Builder::default().retry_config(RetryConfig::disabled()),
            )
            .send()
            .await;
        let err = match sent {
            Ok(updated) => {
                return Ok(updated
                    .service()
                    .map(|s| s.deployments())
                    .unwrap_or_default()
                    .iter()
                    .find(|d| d.status() == Some("PRIMARY"))
                    .or_else(|| updated.service().and_then(|s| s.deployments().first()))
                    .and_then(|d| d.id())
                    .unwrap_or("unknown")
                    .to_owned())
            }
            Err(err) => err,
        };
        let unknown = outcome_unknown(&err);
        let err = classify("UpdateService", &target.service, err);
        if !err.is_retryable() {
            return Err(err);
        }
        if unknown {
            if let Some(id) =
                find_attempt_deployment(ecs, target, task_definition, started_ms).await?
            {
                return Ok(id);
            }
        }
        if attempt == UPDATE_ATTEMPTS {
            return Err(err);
        }
        tokio::time::sleep(jittered(ceiling)).await;
        ceiling = (ceiling * 2).min(Duration::from_secs(5));
        attempt += 1;
    }
}

/// `family:revision` (or `family`) of a task definition ARN or name.
fn family_revision(task_definition: &str) -> &str {
    task_definition
        .rsplit('/')
        .next()
        .unwrap_or(task_definition)
}

/// Whether ECS's `deployed` is the task definition `wanted` names: equal
/// `family:revision`, or the same family when `wanted` names no revision.
fn same_task_definition(deployed: &str, wanted: &str) -> bool {
    let (deployed, wanted) = (family_revision(deployed), family_revision(wanted));
    deployed == wanted || (!wanted.contains(':') && deployed.split(':').next() == Some(wanted))
}

/// The deployment an earlier attempt's UpdateService created, if it reached
/// ECS: one created at or after `started_ms` whose task definition is
/// `task_definition`.
///
/// `started_ms` is stamped before the attempt is written to the dispatch
/// table, and UpdateService is sent only after that write returns, so ECS
/// stamps `createdAt` at least a DynamoDB round trip (milliseconds) later;
/// Lambda hosts and ECS keep time with the Amazon Time Sync Service, well
/// within that. No tolerance is added: it would let a deployment of the same
/// revision started just before the attempt pass for the attempt's.
///
/// ECS keeps the new deployment PRIMARY and the ones it replaces ACTIVE,
/// each with its own `createdAt` and `taskDefinition`, so any of them may be
/// the attempt's (a later deploy may have replaced it already). The PRIMARY
/// deployment's task definition is the service's; that is also read from the
/// service for emulators that keep one deployment and only move its
/// `createdAt` (moto 5.2.5 does not update the deployment's `taskDefinition`
/// on UpdateService).
pub fn attempt_deployment(
    service: &aws_sdk_ecs::types::Service,
    task_definition: &str,
    started_ms: u64,
) -> Option<String> {
    service
        .deployments()
        .iter()
        .filter(|d| {
            d.created_at()
                .and_then(|at| at.to_millis().ok())
                .is_some_and(|at| at >= 0 && at as u64 >= started_ms)
        })
        .find(|d| {
            let own = d.task_definition();
            let primary_of_service = (d.status() == Some("PRIMARY"))
                .then(|| service.task_definition())
                .flatten();
            own.is_some_and(|td| same_task_definition(td, task_definition))
                || primary_of_service.is_some_and(|td| same_task_definition(td, task_definition))
        })
        .and_then(|d| d.id())
        .map(str::to_owned)
}

/// The service as ECS describes it now; refused when ECS knows no such
/// service in the cluster.
pub async fn describe_service(
    ecs: &aws_sdk_ecs::Client,
    cluster: &str,
    service: &str,
) -> Result<Service, DeployError> {
    let described = ecs
        .describe_services()
        .cluster(cluster)
        .services(service)
        .send()
        .await
        .map_err(|e| classify("DescribeServices", service, e))?;
    if let Some(found) = described
        .services()
        .iter()
        .find(|s| s.service_name() == Some(service))
    {
        return Ok(found.clone());
    }
    let reason = described
        .failures()
        .first()
        .and_then(|f| f.reason())
        .unwrap_or("MISSING");
    Err(DeployError::Refused {
        operation: "DescribeServices",
        service: service.to_owned(),
        message: format!("service {service} not found in cluster {cluster} (ECS: {reason})"),
    })
}

/// Looks for the deployment an earlier attempt started (see
/// [`attempt_deployment`]).
pub async fn find_attempt_deployment(
    ecs: &aws_sdk_ecs::Client,
    target: &ServiceTarget,
    task_definition: &str,
    started_ms: u64,
) -> Result<Option<String>, DeployError> {
    let service = describe_service(ecs, &target.cluster, &target.service).await?;
    Ok(attempt_deployment(&service, task_definition, started_ms))
}

/// What a redeploy asks of ECS besides the new task definition: the
/// circuit breaker and the deployment alarms.
#[derive(Debug, Clone, Copy)]
pub struct Safeguards<'a> {
    pub circuit_breaker: CircuitBreaker,
    /// Alarms that fail (and roll back) the service's deployments.
    pub alarms: &'a [String],
}

/// The deployment configuration UpdateService sends: the service's own,
/// with the circuit breaker turned on with rollback unless the service has
/// it on already (its own setting is honoured), and the configured alarms
/// added to any it watches. `None`: nothing to change, so none is sent.
///
/// The service's whole configuration goes back (percentages and all), so
/// nothing else is changed. Services deployed by CodeDeploy or an external
/// controller are left alone: the breaker works for rolling updates only.
pub fn safeguarded(
    service: &Service,
    safeguards: Safeguards<'_>,
) -> Option<DeploymentConfiguration> {
    let controller = service
        .deployment_controller()
        .map(|c| c.r#type())
        .unwrap_or(&DeploymentControllerType::Ecs);
    if *controller != DeploymentControllerType::Ecs {
        return None;
    }
    let mut configuration = service
        .deployment_configuration()
        .cloned()
        .unwrap_or_else(|| DeploymentConfiguration::builder().build());
    let mut changed = false;
    let breaker_on = configuration
        .deployment_circuit_breaker()
        .is_some_and(|b| b.enable());
    if safeguards.circuit_breaker == CircuitBreaker::Rollback && !breaker_on {
        configuration.deployment_circuit_breaker = Some(
            DeploymentCircuitBreaker::builder()
                .enable(true)
                .rollback(true)
                .build(),
        );
        changed = true;
    }
    if !safeguards.alarms.is_empty() {
        let current = configuration.alarms();
        let mut names: Vec<String> = current
            .map(|a| a.alarm_names().to_vec())
            .unwrap_or_default();
        let mut added = false;
        for alarm in safeguards.alarms {
            if !names.contains(alarm) {
                names.push(alarm.clone());
                added = true;
            }
        }
        let enabled = current.is_some_and(|a| a.enable());
        if !enabled || added {
            // An operator who enabled alarms without rollback keeps that.
            let rollback = !enabled || current.is_some_and(|a| a.rollback());
            configuration.alarms = DeploymentAlarms::builder()
                .set_alarm_names(Some(names))
                .enable(true)
                .rollback(rollback)
                .build()
                .ok();
            changed = true;
        }
    }
    changed.then_some(configuration)
}

/// The deployment configuration a redeploy of `target` sends (see
/// [`safeguarded`]); one DescribeServices.
pub async fn deployment_configuration(
    ecs: &aws_sdk_ecs::Client,
    target: &ServiceTarget,
    safeguards: Safeguards<'_>,
) -> Result<Option<DeploymentConfiguration>, DeployError> {
    if safeguards.circuit_breaker == CircuitBreaker::Keep && safeguards.alarms.is_empty() {
        return Ok(None);
    }
    let service = describe_service(ecs, &target.cluster, &target.service).await?;
    Ok(safeguarded(&service, safeguards))
}

/// The deployment id a rollback goes back to, from ECS's reason for it
/// (`ECS deployment circuit breaker: rolling back to deploymentId
/// ecs-svc/123.`); `None` when the reason reports no rollback.
pub fn rolled_back_to(reason: &str) -> Option<&str> {
    let (_, rest) = reason.split_once("rolling back to deploymentId")?;
    let id = rest
        .split_whitespace()
        .next()?
        .trim_matches(|c: char| c == '.' || c == '`' || c == ',');
    (!id.is_empty()).then_some(id)
}

/// What ECS says of a rollback in progress: the task definition of the
/// rollback deployment `rollback_id` (the service's, if that deployment is
/// not listed), and the deployment that failed, with its task definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollbackFacts {
    pub restored: Option<String>,
    pub failed: Option<(String, Option<String>)>,
}

pub fn rollback_facts(service: &Service, rollback_id: &str) -> RollbackFacts {
    let deployments = service.deployments();
    let restored = deployments
        .iter()
        .find(|d| d.id() == Some(rollback_id))
        .and_then(|d| d.task_definition())
        .or(service.task_definition())
        .map(str::to_owned);
    let failed = deployments
        .iter()
        .filter(|d| {
            d.id() != Some(rollback_id)
                && d.rollout_state() == Some(&aws_sdk_ecs::types::DeploymentRolloutState::Failed)
        })
        .max_by_key(|d| d.updated_at().and_then(|at| at.to_millis().ok()))
        .and_then(|d| Some((d.id()?.to_owned(), d.task_definition().map(str::to_owned))));
    RollbackFacts { restored, failed }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ecs::primitives::DateTime;
    use aws_sdk_ecs::types::{Deployment, Service};

    const TD: &str = "arn:aws:ecs:us-east-1:123456789012:task-definition/shop_service_api_dev:10";
    const OLD_TD: &str =
        "arn:aws:ecs:us-east-1:123456789012:task-definition/shop_service_api_dev:9";
    const STARTED: u64 = 1_800_000_000_000;

    fn deployment(id: &str, status: &str, task_definition: &str, created_ms: i64) -> Deployment {
        Deployment::builder()
            .id(id)
            .status(status)
            .task_definition(task_definition)
            .created_at(DateTime::from_millis(created_ms))
            .build()
    }

    fn service(task_definition: &str, deployments: Vec<Deployment>) -> Service {
        Service::builder()
            .service_name("shop_service_api_dev")
            .task_definition(task_definition)
            .set_deployments(Some(deployments))
            .build()
    }

    #[test]
    fn aws_shape_a_primary_deployment_of_the_target_created_after_the_attempt_is_found() {
        let s = service(
            TD,
            vec![
                deployment("ecs-svc/new", "PRIMARY", TD, STARTED as i64 + 400),
                deployment("ecs-svc/old", "ACTIVE", OLD_TD, STARTED as i64 - 600_000),
            ],
        );
        assert_eq!(
            attempt_deployment(&s, TD, STARTED).as_deref(),
            Some("ecs-svc/new")
        );
    }

    #[test]
    fn a_deployment_already_replaced_by_a_later_one_still_counts() {
        let s = service(
            OLD_TD,
            vec![
                deployment("ecs-svc/later", "PRIMARY", OLD_TD, STARTED as i64 + 5_000),
                deployment("ecs-svc/ours", "ACTIVE", TD, STARTED as i64 + 300),
            ],
        );
        assert_eq!(
            attempt_deployment(&s, TD, STARTED).as_deref(),
            Some("ecs-svc/ours")
        );
    }

    #[test]
    fn nothing_created_since_the_attempt_or_another_revision_is_not_the_attempt() {
        let before = service(
            TD,
            vec![deployment(
                "ecs-svc/before",
                "PRIMARY",
                TD,
                STARTED as i64 - 60_000,
            )],
        );
        assert_eq!(attempt_deployment(&before, TD, STARTED), None);
        let other = service(
            OLD_TD,
            vec![deployment(
                "ecs-svc/other",
                "PRIMARY",
                OLD_TD,
                STARTED as i64 + 100,
            )],
        );
        assert_eq!(attempt_deployment(&other, TD, STARTED), None);
        let none = service(TD, vec![]);
        assert_eq!(attempt_deployment(&none, TD, STARTED), None);
    }

    #[test]
    fn a_deployment_of_the_target_created_a_moment_before_the_attempt_is_not_its() {
        let before = service(
            TD,
            vec![deployment(
                "ecs-svc/before",
                "PRIMARY",
                TD,
                STARTED as i64 - 1,
            )],
        );
        assert_eq!(attempt_deployment(&before, TD, STARTED), None);
        let at = service(
            TD,
            vec![deployment("ecs-svc/at", "PRIMARY", TD, STARTED as i64)],
        );
        assert_eq!(
            attempt_deployment(&at, TD, STARTED).as_deref(),
            Some("ecs-svc/at")
        );
    }

    #[test]
    fn moto_shape_one_deployment_whose_created_at_moves_and_the_service_names_the_target() {
        // moto 5.2.5 keeps the create-time task definition on its only
        // deployment and updates the service's.
        let s = service(
            TD,
            vec![deployment(
                "ecs-svc/moved",
                "PRIMARY",
                OLD_TD,
                STARTED as i64 + 20,
            )],
        );
        assert_eq!(
            attempt_deployment(&s, TD, STARTED).as_deref(),
            Some("ecs-svc/moved")
        );
    }

    fn breaker(enable: bool, rollback: bool) -> DeploymentCircuitBreaker {
        DeploymentCircuitBreaker::builder()
            .enable(enable)
            .rollback(rollback)
            .build()
    }

    fn configured(configuration: DeploymentConfiguration) -> Service {
        Service::builder()
            .service_name("shop_service_api_dev")
            .deployment_configuration(configuration)
            .build()
    }

    const ROLLBACK: Safeguards<'static> = Safeguards {
        circuit_breaker: CircuitBreaker::Rollback,
        alarms: &[],
    };

    #[test]
    fn the_breaker_is_turned_on_with_rollback_and_the_rest_of_the_configuration_kept() {
        let service = configured(
            DeploymentConfiguration::builder()
                .maximum_percent(150)
                .minimum_healthy_percent(50)
                .deployment_circuit_breaker(breaker(false, false))
                .build(),
        );
        let sent = safeguarded(&service, ROLLBACK).unwrap();
        assert_eq!(sent.deployment_circuit_breaker, Some(breaker(true, true)));
        assert_eq!(
            (sent.maximum_percent, sent.minimum_healthy_percent),
            (Some(150), Some(50))
        );
        let bare = Service::builder().service_name("s").build();
        let sent = safeguarded(&bare, ROLLBACK).unwrap();
        assert_eq!(sent.deployment_circuit_breaker, Some(breaker(true, true)));
    }

    #[test]
    fn a_breaker_the_service_has_on_is_honoured_and_keep_changes_nothing() {
        let own = configured(
            DeploymentConfiguration::builder()
                .deployment_circuit_breaker(breaker(true, false))
                .build(),
        );
        assert_eq!(safeguarded(&own, ROLLBACK), None);
        let keep = Safeguards {
            circuit_breaker: CircuitBreaker::Keep,
            alarms: &[],
        };
        let bare = Service::builder().service_name("s").build();
        assert_eq!(safeguarded(&bare, keep), None);
        let code_deploy = Service::builder()
            .service_name("s")
            .deployment_controller(
                aws_sdk_ecs::types::DeploymentController::builder()
                    .r#type(DeploymentControllerType::CodeDeploy)
                    .build()
                    .unwrap(),
            )
            .build();
        assert_eq!(safeguarded(&code_deploy, ROLLBACK), None);
    }

    #[test]
    fn configured_alarms_join_the_ones_the_service_watches() {
        let alarms = ["shop-api-5xx".to_owned()];
        let with_alarms = Safeguards {
            circuit_breaker: CircuitBreaker::Keep,
            alarms: &alarms,
        };
        let own = configured(
            DeploymentConfiguration::builder()
                .alarms(
                    DeploymentAlarms::builder()
                        .alarm_names("shop-api-latency")
                        .enable(true)
                        .rollback(false)
                        .build()
                        .unwrap(),
                )
                .build(),
        );
        let sent = safeguarded(&own, with_alarms).unwrap().alarms.unwrap();
        assert_eq!(sent.alarm_names(), ["shop-api-latency", "shop-api-5xx"]);
        assert!(
            sent.enable() && !sent.rollback(),
            "the operator's no-rollback is kept"
        );
        let bare = Service::builder().service_name("s").build();
        let sent = safeguarded(&bare, with_alarms).unwrap().alarms.unwrap();
        assert_eq!(sent.alarm_names(), ["shop-api-5xx"]);
        assert!(sent.enable() && sent.rollback());
        let already = configured(
            DeploymentConfiguration::builder()
                .alarms(
                    DeploymentAlarms::builder()
                        .alarm_names("shop-api-5xx")
                        .enable(true)
                        .rollback(true)
                        .build()
                        .unwrap(),
                )
                .build(),
        );
        assert_eq!(safeguarded(&already, with_alarms), None);
    }

    #[test]
    fn the_deployment_a_rollback_goes_back_to_is_read_from_its_reason() {
        assert_eq!(
            rolled_back_to(
                "ECS deployment circuit breaker: rolling back to deploymentId ecs-svc/123."
            ),
            Some("ecs-svc/123")
        );
        assert_eq!(
            rolled_back_to(
                "ECS deployment circuit breaker: rolling back to deploymentId `ecs-svc/9`."
            ),
            Some("ecs-svc/9")
        );
        assert_eq!(
            rolled_back_to("ECS deployment ecs-svc/1 in progress."),
            None
        );
    }

    #[test]
    fn rollback_facts_name_the_restored_and_the_failed_task_definitions() {
        let failed = Deployment::builder()
            .id("ecs-svc/failed")
            .status("ACTIVE")
            .task_definition(TD)
            .rollout_state(aws_sdk_ecs::types::DeploymentRolloutState::Failed)
            .updated_at(DateTime::from_millis(STARTED as i64))
            .build();
        let back = deployment("ecs-svc/back", "PRIMARY", OLD_TD, STARTED as i64 + 10);
        let s = service(OLD_TD, vec![back, failed]);
        assert_eq!(
            rollback_facts(&s, "ecs-svc/back"),
            RollbackFacts {
                restored: Some(OLD_TD.to_owned()),
                failed: Some(("ecs-svc/failed".to_owned(), Some(TD.to_owned()))),
            }
        );
        let unlisted = service(OLD_TD, vec![]);
        assert_eq!(
            rollback_facts(&unlisted, "ecs-svc/other"),
            RollbackFacts {
                restored: Some(OLD_TD.to_owned()),
                failed: None,
            }
        );
    }

    #[test]
    fn task_definitions_compare_by_family_and_revision_whatever_the_form() {
        assert!(same_task_definition(TD, "shop_service_api_dev:10"));
        assert!(same_task_definition(TD, "shop_service_api_dev"));
        assert!(!same_task_definition(TD, "shop_service_api_dev:1"));
        assert!(!same_task_definition(TD, "shop_service_api"));
    }
}
