//! `deployer service`: rolling an ECS service back by hand.
//!
//! A rollback is a manual deploy of an earlier task definition, sent to the
//! install's ci-dispatch like any `action.{env}` event: it is claimed,
//! recorded in the ledger, announced in Slack and reported when ECS ends
//! it, as every redeploy is.

use anyhow::bail;
use clap::Subcommand;
use ledger::{short_task_definition, ServiceDeployment, ServiceDeploymentStore};

use crate::invoke::invoke;
use crate::outcome::Outcome;

#[derive(Subcommand, Clone)]
pub enum ServiceCommand {
    /// Redeploy a service's previous task definition: the newest one that
    /// deployed successfully before what runs now (from the ledger), or
    /// --to. It goes through ci-dispatch like any manual deploy.
    Rollback {
        /// The ECS service (`shop_service_api_prd`) or its short name (`api`).
        service: String,
        /// The task definition to go back to (`family:revision` or ARN).
        #[arg(long)]
        to: Option<String>,
        #[arg(long, default_value = "rolled back from the command line")]
        reason: String,
        #[arg(long, env = "USER", default_value = "unknown")]
        by: String,
    },
}

/// Where the command finds the install.
pub struct ServiceContext {
    pub env: String,
    pub ledger: ServiceDeploymentStore,
    /// The ci-dispatch function's name.
    pub function: String,
}

/// How many ledger records are read looking for a service's deployments.
const SEARCHED: usize = 500;

pub async fn run(
    aws: &aws_config::SdkConfig,
    context: ServiceContext,
    command: ServiceCommand,
) -> anyhow::Result<Outcome> {
    let ServiceCommand::Rollback {
        service,
        to,
        reason,
        by,
    } = command;
    let records = history(&context, &service).await?;
    let Some(newest) = records.first() else {
        bail!(
            "no deployment of service {service} in the {} ledger ({}); name the ECS service as `deployer history` shows it",
            context.env,
            context.ledger.table()
        );
    };
    let (current, target) = match to {
        Some(to) => (
            current(&records).map(|i| records[i].task_definition.clone()),
            to,
        ),
        None => {
            let (current, previous) = previous(&records).ok_or_else(|| {
                crate::outcome::refused(format!(
                    "no earlier successful deployment of {} with another task definition in the ledger; name one with --to",
                    newest.service
                ))
            })?;
            (
                Some(current.task_definition.clone()),
                previous.task_definition.clone(),
            )
        }
    };
    let from = current
        .as_deref()
        .map_or("(unknown)", short_task_definition)
        .to_owned();
    let event = serde_json::json!({
        "version": "0",
        "id": event_id(),
        "detail-type": "DEPLOY",
        "source": format!("action.{}", context.env),
        "time": ledger::rfc3339(time::OffsetDateTime::now_utc()),
        "resources": [],
        "detail": {
            "service": newest.name,
            "task_definition": target,
            "reason": format!("rollback from {from} to {} by {by}: {reason}", short_task_definition(&target)),
        },
    });
    let answer = match invoke(aws, &context.function, &event).await? {
        Ok(answer) => answer,
        Err(message) => {
            eprintln!("rollback of {} not started: {message}", newest.service);
            return Ok(Outcome::Failure);
        }
    };
    let started = answer["services"]
        .as_array()
        .and_then(|s| s.first())
        .filter(|s| s["status"] == "started");
    match started {
        Some(started) => {
            println!(
                "rolling {} back from {from} to {}: ECS deployment {}",
                newest.service,
                short_task_definition(&target),
                started["deployment_id"].as_str().unwrap_or("(unknown)")
            );
            eprintln!(
                "follow it: deployer history service:{} --env {}",
                newest.service, context.env
            );
            Ok(Outcome::Success)
        }
        None => {
            let why = answer["error"]
                .as_str()
                .or_else(|| answer["services"][0]["error"].as_str())
                .map_or_else(|| answer.to_string(), str::to_owned);
            eprintln!("rollback of {} not started: {why}", newest.service);
            Ok(Outcome::Failure)
        }
    }
}

/// The service's ledger records, newest first: by ECS service name, else
/// the records of the environment whose short name is `service`.
async fn history(
    context: &ServiceContext,
    service: &str,
) -> anyhow::Result<Vec<ServiceDeployment>> {
    let mut records = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let (page, next) = context
            .ledger
            .page_service(service, 100, after.as_deref())
            .await?;
        records.extend(page);
        match next {
            Some(next) if records.len() < SEARCHED => after = Some(next),
            _ => break,
        }
    }
    if !records.is_empty() {
        return Ok(records);
    }
    let mut after = None;
    let mut read = 0;
    loop {
        let (page, next) = context
            .ledger
            .page_env(&context.env, 100, after.as_ref())
            .await?;
        read += page.len();
        if let Some(named) = page.iter().find(|r| r.name == service) {
            let ecs_service = named.service.clone();
            return Box::pin(history(context, &ecs_service)).await;
        }
        match next {
            Some(next) if read < SEARCHED => after = Some(next),
            _ => return Ok(Vec::new()),
        }
    }
}

/// Where what runs now is in `records`, as the ledger knows it: the newest
/// redeploy that did not fail (a rolled-back one does not count).
fn current(records: &[ServiceDeployment]) -> Option<usize> {
    records.iter().position(|r| r.status != ledger::FAILED)
}

/// What runs now and the newest successful redeploy before it with another
/// task definition.
fn previous(records: &[ServiceDeployment]) -> Option<(&ServiceDeployment, &ServiceDeployment)> {
    let position = current(records)?;
    let current = &records[position];
    let previous = records[position + 1..].iter().find(|r| {
        r.status == ledger::SUCCESS
            && short_task_definition(&r.task_definition)
                != short_task_definition(&current.task_definition)
    })?;
    Some((current, previous))
}

/// A fresh event id: ci-dispatch deploys once per id.
fn event_id() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the OS gives random bytes");
    format!("deployer-cli-{}", hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(sk: &str, task_definition: &str, status: &str) -> ServiceDeployment {
        ServiceDeployment {
            pk: "shop_service_api_dev".into(),
            sk: sk.into(),
            env: "dev".into(),
            cluster: "shop_cluster_dev".into(),
            service: "shop_service_api_dev".into(),
            name: "api".into(),
            task_definition: format!(
                "arn:aws:ecs:us-east-1:123456789012:task-definition/{task_definition}"
            ),
            image_digest: None,
            deployment_id: None,
            status: status.into(),
            trigger: "t".into(),
            triggered_by: "aws.ecr".into(),
            console_url: String::new(),
            started_at: String::new(),
            updated_at: String::new(),
            finished_at: None,
            error: None,
            rolled_back_to: None,
            transitions: Vec::new(),
        }
    }

    #[test]
    fn the_previous_task_definition_is_the_newest_success_before_what_runs_now() {
        let records = [
            record("5", "api:12", ledger::FAILED),
            record("4", "api:11", ledger::SUCCESS),
            record("3", "api:11", ledger::SUCCESS),
            record("2", "api:10", ledger::FAILED),
            record("1", "api:9", ledger::SUCCESS),
        ];
        let (current, previous) = previous(&records).unwrap();
        assert_eq!(current.sk, "4");
        assert_eq!(previous.sk, "1");
    }

    #[test]
    fn an_in_flight_redeploy_counts_as_what_runs_and_nothing_earlier_is_none() {
        let records = [
            record("2", "api:10", ledger::IN_PROGRESS),
            record("1", "api:9", ledger::SUCCESS),
        ];
        assert_eq!(previous(&records).unwrap().1.sk, "1");
        let only = [record("1", "api:9", ledger::SUCCESS)];
        assert!(previous(&only).is_none());
    }
}
