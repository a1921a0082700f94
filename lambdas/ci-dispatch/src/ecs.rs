//! Redeploying an ECS service.
//!
//! Throttling and 5xx answers are retried by the SDK client (standard retry
//! mode: exponential backoff with jitter, transient errors only); what is left
//! when it gives up is classified here as retryable or not.

use aws_sdk_ecs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_ecs::types::{SortOrder, TaskDefinitionStatus};

use crate::naming::ServiceTarget;

/// The outcome of one redeploy.
#[derive(Debug, Clone, PartialEq)]
pub enum Deployed {
    Started {
        deployment_id: String,
        task_definition: String,
    },
    /// Dry run: what would have been deployed.
    DryRun { task_definition: String },
}

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

/// Forces a new deployment of the service with `task_definition` (or the
/// family's newest ACTIVE revision).
pub async fn redeploy(
    ecs: &aws_sdk_ecs::Client,
    target: &ServiceTarget,
    task_definition: Option<&str>,
    dry_run: bool,
) -> Result<Deployed, DeployError> {
    let task_definition = match task_definition {
        Some(explicit) => explicit.to_owned(),
        None => newest_active_task_definition(ecs, target).await?,
    };
    if dry_run {
        return Ok(Deployed::DryRun { task_definition });
    }
    let updated = ecs
        .update_service()
        .cluster(&target.cluster)
        .service(&target.service)
        .task_definition(&task_definition)
        .force_new_deployment(true)
        .send()
        .await
        .map_err(|e| classify("UpdateService", &target.service, e))?;
    let deployment_id = updated
        .service()
        .map(|s| s.deployments())
        .unwrap_or_default()
        .iter()
        .find(|d| d.status() == Some("PRIMARY"))
        .or_else(|| updated.service().and_then(|s| s.deployments().first()))
        .and_then(|d| d.id())
        .unwrap_or("unknown")
        .to_owned();
    Ok(Deployed::Started {
        deployment_id,
        task_definition,
    })
}
