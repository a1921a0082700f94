//! `trigger-build`: builds-table stream records -> deployment executions.
//!
//! Only INSERTs of PENDING builds start anything. Each record succeeds or
//! fails on its own and failures are reported by sequence number
//! (ReportBatchItemFailures), so one poison record never holds up the rest.

use std::collections::BTreeSet;

use aws_lambda_events::dynamodb::EventRecord;
use aws_lambda_events::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use builddao::{Build, BuildStatus};
use orchestrator::{DeployPolicy, Orchestrator, Started};
use serde_json::Value;
use tracing::{info, warn, Instrument};

/// Configuration, read once at cold start.
#[derive(Debug, Clone)]
pub struct Config {
    pub builds_table: String,
    pub policy: DeployPolicy,
}

#[derive(Debug, thiserror::Error)]
#[error("trigger-build configuration is invalid:\n  - {}", .0.join("\n  - "))]
pub struct ConfigError(pub Vec<String>);

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut problems = Vec::new();
        let mut required = |name: &str, what: &str| {
            let value = get(name).filter(|v| !v.is_empty());
            if value.is_none() {
                problems.push(format!("{name} is required ({what})"));
            }
            value.unwrap_or_default()
        };
        let builds_table = required("BUILDS_TABLE", "the builds table name");
        let state_machine_arn = required("STATE_MACHINE_ARN", "the deployment state machine");
        let region = get("AWS_REGION").unwrap_or_else(|| "us-east-1".to_owned());
        let mut number = |name: &str, default: u64| match get(name) {
            None => default,
            Some(raw) => match raw.parse::<u64>() {
                Ok(n) if n > 0 => n,
                _ => {
                    problems.push(format!(
                        "{name} must be a positive whole number, got {raw:?}"
                    ));
                    default
                }
            },
        };
        let approval_timeout_seconds = number("APPROVAL_TIMEOUT_SECONDS", 24 * 3600);
        let poll_interval_seconds = number("POLL_INTERVAL_SECONDS", 10);
        let poll_max_attempts = number("POLL_MAX_ATTEMPTS", 360);
        if !state_machine_arn.is_empty() && !state_machine_arn.contains(":stateMachine:") {
            problems.push(format!(
                "STATE_MACHINE_ARN {state_machine_arn:?} is not a state machine ARN"
            ));
        }
        let approval_envs: BTreeSet<String> = get("APPROVAL_ENVS")
            .unwrap_or_else(|| "prd".to_owned())
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        if !problems.is_empty() {
            return Err(ConfigError(problems));
        }
        Ok(Config {
            builds_table,
            policy: DeployPolicy {
                state_machine_arn,
                region,
                approval_envs,
                approval_timeout_seconds,
                poll_interval_seconds,
                poll_max_attempts,
            },
        })
    }
}

/// Why one stream record failed; the stream retries it.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("record is not a DynamoDB stream record: {0}")]
    NotStreamRecord(String),
    #[error("record {sequence} holds no build: {reason}")]
    NotABuild { sequence: String, reason: String },
    #[error(transparent)]
    Start(#[from] orchestrator::StartError),
}

/// Handles one stream batch and reports the records that failed.
pub async fn handle(orchestrator: &Orchestrator, event: Value) -> DynamoDbEventResponse {
    let mut response = DynamoDbEventResponse::default();
    let records = event
        .get("Records")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for record in records {
        // Without a sequence number a failure cannot be reported for this
        // record alone; Lambda then retries the whole batch, which is safe.
        let sequence = record
            .pointer("/dynamodb/SequenceNumber")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let span = tracing::info_span!(
            "stream_record",
            sequence = %sequence,
            build_id = tracing::field::Empty,
            repo = tracing::field::Empty,
            env = tracing::field::Empty
        );
        if let Err(err) = handle_record(orchestrator, record, &sequence)
            .instrument(span)
            .await
        {
            warn!(%sequence, error = %err, "stream record failed; reported for retry");
            let mut failure = DynamoDbBatchItemFailure::default();
            failure.item_identifier = Some(sequence);
            response.batch_item_failures.push(failure);
        }
    }
    response
}

async fn handle_record(
    orchestrator: &Orchestrator,
    record: Value,
    sequence: &str,
) -> Result<(), RecordError> {
    let record: EventRecord =
        serde_json::from_value(record).map_err(|e| RecordError::NotStreamRecord(e.to_string()))?;
    // Name the build on every line, even for records that are skipped.
    let key = |name: &str| {
        record.change.keys.get(name).and_then(|v| match v {
            serde_dynamo::AttributeValue::S(s) => Some(s.clone()),
            _ => None,
        })
    };
    if let (Some(pk), Some(sk)) = (key("pk"), key("sk")) {
        let span = tracing::Span::current();
        if let Some((repo, env)) = pk.rsplit_once('/') {
            span.record("repo", repo);
            span.record("env", env);
        }
        span.record("build_id", format!("{pk}/{sk}").as_str());
    }
    if record.event_name != "INSERT" {
        info!(event_name = %record.event_name, "skipping non-INSERT record");
        return Ok(());
    }
    let build: Build =
        serde_dynamo::from_item(record.change.new_image).map_err(|e| RecordError::NotABuild {
            sequence: sequence.to_owned(),
            reason: e.to_string(),
        })?;
    if build.status != BuildStatus::Pending {
        info!(status = %build.status, "inserted build is not PENDING; nothing to start");
        return Ok(());
    }
    match orchestrator.start(&build).await? {
        Started::Running {
            execution_arn,
            already_existed,
        } => {
            info!(%execution_arn, already_existed, "deployment running")
        }
        Started::Failed { reason } => warn!(%reason, "deployment could not start; build FAILED"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_lists_every_problem_at_once() {
        let err = Config::from_lookup(|name| match name {
            "STATE_MACHINE_ARN" => Some("not-an-arn".into()),
            "POLL_INTERVAL_SECONDS" => Some("soon".into()),
            _ => None,
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("BUILDS_TABLE is required"), "{err}");
        assert!(
            err.contains("\"not-an-arn\" is not a state machine ARN"),
            "{err}"
        );
        assert!(
            err.contains("POLL_INTERVAL_SECONDS must be a positive whole number, got \"soon\""),
            "{err}"
        );
    }
}
