//! The ledger of ECS redeploys: one record per service deployment
//! ci-dispatch starts (or fails to start), closed when ECS reports the
//! rollout COMPLETED or FAILED.
//!
//! Keys: `pk` = the ECS service, `sk` = `{start time}#{deployment id}`
//! (the start time of the attempt that called UpdateService, which a retry
//! that recovers the attempt's deployment keeps, so a replay writes the same
//! key). Every write is conditional: a record is created once, and only an
//! IN_PROGRESS record is closed.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};
use time::macros::format_description;
use time::OffsetDateTime;

use crate::model::{Change, Deployment, Kind, Link, State};
use crate::time_format::parse_time;

/// The table's index of every record by `env`, then `sk`.
pub const LEDGER_INDEX: &str = "ledger";

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("DynamoDB {operation} on table {table} failed: {message}")]
    Aws {
        operation: &'static str,
        table: String,
        message: String,
    },
    #[error("service deployment record {key} in table {table} is malformed: {message}")]
    Malformed {
        table: String,
        key: String,
        message: String,
    },
}

/// Where a redeploy record is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordKey {
    pub service: String,
    pub sk: String,
}

/// A redeploy as ci-dispatch starts it (or fails to).
#[derive(Debug, Clone, PartialEq)]
pub struct StartedRedeploy {
    pub env: String,
    pub cluster: String,
    pub service: String,
    /// The service's short name (`web`).
    pub name: String,
    /// `family:revision` (or the full ARN), as UpdateService was given it.
    pub task_definition: String,
    /// The pushed image's digest, when an image push set it off.
    pub image_digest: Option<String>,
    /// ECS's deployment id; `None` when nothing started.
    pub deployment_id: Option<String>,
    /// Unix milliseconds: when the attempt started.
    pub started_ms: u64,
    /// What set it off (`image app_service_web:latest pushed (sha256:…)`).
    pub trigger: String,
    /// The event's source (`aws.ecr`, `action.deploy`, …) or its sender.
    pub triggered_by: String,
    pub console_url: String,
    /// Set when the start itself failed: the record is created FAILED.
    pub failure: Option<String>,
}

/// How ECS said a rollout ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndedRedeploy {
    Completed,
    Failed,
}

/// A redeploy record as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceDeployment {
    pub pk: String,
    pub sk: String,
    pub env: String,
    pub cluster: String,
    pub service: String,
    pub name: String,
    pub task_definition: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_id: Option<String>,
    /// IN_PROGRESS, SUCCESS or FAILED.
    pub status: String,
    pub trigger: String,
    pub triggered_by: String,
    pub console_url: String,
    pub started_at: String,
    pub updated_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The task definition ECS rolled the service back to when this
    /// redeploy failed (deployment circuit breaker or alarms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolled_back_to: Option<String>,
    #[serde(default)]
    pub transitions: Vec<StoredChange>,
}

/// A transition as stored (times as written, RFC 3339).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredChange {
    pub status: String,
    pub at: String,
    pub reason: String,
}

pub const IN_PROGRESS: &str = "IN_PROGRESS";
pub const SUCCESS: &str = "SUCCESS";
pub const FAILED: &str = "FAILED";

fn time_of_ms(ms: u64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn rfc3339_ms(at: OffsetDateTime) -> String {
    at.format(format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    ))
    .expect("a UTC time formats")
}

impl StartedRedeploy {
    /// `{start time, sortable}#{deployment id}`; a start that failed has
    /// no deployment id and is keyed by `unstarted`.
    pub fn key(&self) -> RecordKey {
        let at = time_of_ms(self.started_ms)
            .format(format_description!(
                "[year][month][day]T[hour][minute][second][subsecond digits:3]Z"
            ))
            .expect("a UTC time formats");
        let id = self.deployment_id.as_deref().unwrap_or("unstarted");
        RecordKey {
            service: self.service.clone(),
            sk: format!("{at}#{id}"),
        }
    }

    fn record(&self, now: OffsetDateTime) -> ServiceDeployment {
        let key = self.key();
        let started_at = rfc3339_ms(time_of_ms(self.started_ms));
        let now = rfc3339_ms(now);
        let mut transitions = vec![StoredChange {
            status: IN_PROGRESS.into(),
            at: started_at.clone(),
            reason: match &self.deployment_id {
                Some(id) => format!("{}; ECS deployment {id} started", self.trigger),
                None => self.trigger.clone(),
            },
        }];
        if let Some(failure) = &self.failure {
            transitions.push(StoredChange {
                status: FAILED.into(),
                at: now.clone(),
                reason: failure.clone(),
            });
        }
        ServiceDeployment {
            pk: key.service,
            sk: key.sk,
            env: self.env.clone(),
            cluster: self.cluster.clone(),
            service: self.service.clone(),
            name: self.name.clone(),
            task_definition: self.task_definition.clone(),
            image_digest: self.image_digest.clone(),
            deployment_id: self.deployment_id.clone(),
            status: if self.failure.is_some() {
                FAILED
            } else {
                IN_PROGRESS
            }
            .into(),
            trigger: self.trigger.clone(),
            triggered_by: self.triggered_by.clone(),
            console_url: self.console_url.clone(),
            started_at,
            updated_at: now.clone(),
            finished_at: self.failure.as_ref().map(|_| now),
            error: self.failure.clone(),
            rolled_back_to: None,
            transitions,
        }
    }
}

impl ServiceDeployment {
    /// The record as a ledger entry.
    pub fn to_deployment(&self) -> Deployment {
        let state = match self.status.as_str() {
            SUCCESS => State::Succeeded,
            FAILED => State::Failed,
            _ => State::InFlight,
        };
        let started_at = parse_time(&self.started_at).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let finished_at = self.finished_at.as_deref().and_then(parse_time);
        let version = match &self.image_digest {
            Some(digest) => format!(
                "{} {}",
                short_task_definition(&self.task_definition),
                short_digest(digest)
            ),
            None => short_task_definition(&self.task_definition).to_owned(),
        };
        Deployment {
            kind: Kind::Service,
            target: self.service.clone(),
            env: self.env.clone(),
            id: self.sk.clone(),
            version,
            status: self.status.clone(),
            state,
            trigger: self.trigger.clone(),
            by: Some(self.triggered_by.clone()),
            branch: None,
            started_at,
            finished_at,
            duration_seconds: Deployment::duration_of(started_at, finished_at),
            reason: match (&self.error, &self.rolled_back_to) {
                (Some(error), Some(to)) => Some(format!(
                    "{error}; ECS rolled back to {}",
                    short_task_definition(to)
                )),
                (None, Some(to)) => {
                    Some(format!("ECS rolled back to {}", short_task_definition(to)))
                }
                (error, None) => error.clone(),
            },
            transitions: self
                .transitions
                .iter()
                .filter_map(|c| {
                    Some(Change {
                        status: c.status.clone(),
                        at: parse_time(&c.at)?,
                        reason: c.reason.clone(),
                    })
                })
                .collect(),
            links: vec![Link {
                label: "console".into(),
                url: self.console_url.clone(),
            }],
            parameters: Default::default(),
            change_summary: None,
        }
    }
}

/// `family:revision` of a task definition ARN or name.
pub fn short_task_definition(task_definition: &str) -> &str {
    task_definition
        .rsplit_once(":task-definition/")
        .map_or(task_definition, |(_, name)| name)
}

/// `sha256:0f1e2d3c4b5a` (twelve hex digits, as registries show it).
fn short_digest(digest: &str) -> String {
    match digest.split_once(':') {
        Some((algorithm, hex)) => format!("{algorithm}:{}", &hex[..hex.len().min(12)]),
        None => digest.chars().take(19).collect(),
    }
}

/// The service deployments table.
#[derive(Debug, Clone)]
pub struct ServiceDeploymentStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl ServiceDeploymentStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    fn aws_error<E, R>(&self, operation: &'static str, err: SdkError<E, R>) -> LedgerError
    where
        E: std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        LedgerError::Aws {
            operation,
            table: self.table.clone(),
            message: DisplayErrorContext(&err).to_string(),
        }
    }

    /// Records a redeploy unless its record exists (a replay); its key.
    pub async fn record_started(
        &self,
        redeploy: &StartedRedeploy,
    ) -> Result<RecordKey, LedgerError> {
        let record = redeploy.record(OffsetDateTime::now_utc());
        let item = serde_dynamo::to_item(&record).map_err(|e| LedgerError::Malformed {
            table: self.table.clone(),
            key: format!("{}/{}", record.pk, record.sk),
            message: e.to_string(),
        })?;
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(redeploy.key()),
            Err(err) if is_conditional_failure(&err) => Ok(redeploy.key()),
            Err(err) => Err(self.aws_error("PutItem", err)),
        }
    }

    /// Closes an IN_PROGRESS redeploy as ECS reported it. `Ok(false)`: it
    /// was not IN_PROGRESS (closed before, or never recorded).
    pub async fn record_ended(
        &self,
        key: &RecordKey,
        ended: EndedRedeploy,
        reason: &str,
    ) -> Result<bool, LedgerError> {
        let now = rfc3339_ms(OffsetDateTime::now_utc());
        let status = match ended {
            EndedRedeploy::Completed => SUCCESS,
            EndedRedeploy::Failed => FAILED,
        };
        let mut update = self
            .update_record(key, transition(status, &now, reason))
            .expression_attribute_values(":to", AttributeValue::S(status.into()))
            .expression_attribute_values(":from", AttributeValue::S(IN_PROGRESS.into()))
            .expression_attribute_values(":now", AttributeValue::S(now))
            .condition_expression("attribute_exists(pk) AND #status = :from");
        let mut set = "SET #status = :to, updated_at = :now, finished_at = :now, \
             #history = list_append(#history, :change)"
            .to_owned();
        if ended == EndedRedeploy::Failed {
            update = update
                .expression_attribute_names("#error", "error")
                .expression_attribute_values(":error", AttributeValue::S(reason.to_owned()));
            set.push_str(", #error = :error");
        }
        self.applied(update.update_expression(set).send().await)
    }

    /// Marks a redeploy ECS rolled back to `task_definition`: FAILED with
    /// `reason` if it was still IN_PROGRESS (ECS's FAILED event may come
    /// after the rollback's), `rolled_back_to` set either way, one
    /// transition added. `Ok(false)`: marked before, never recorded, or it
    /// had succeeded.
    pub async fn record_rolled_back(
        &self,
        key: &RecordKey,
        task_definition: &str,
        reason: &str,
    ) -> Result<bool, LedgerError> {
        let now = rfc3339_ms(OffsetDateTime::now_utc());
        let result = self
            .update_record(key, transition(FAILED, &now, reason))
            .expression_attribute_names("#error", "error")
            .expression_attribute_values(":failed", AttributeValue::S(FAILED.into()))
            .expression_attribute_values(":open", AttributeValue::S(IN_PROGRESS.into()))
            .expression_attribute_values(":to", AttributeValue::S(task_definition.to_owned()))
            .expression_attribute_values(":now", AttributeValue::S(now))
            .expression_attribute_values(":reason", AttributeValue::S(reason.to_owned()))
            .condition_expression(
                "attribute_exists(pk) AND attribute_not_exists(rolled_back_to) \
                 AND #status IN (:open, :failed)",
            )
            .update_expression(
                "SET #status = :failed, rolled_back_to = :to, updated_at = :now, \
                 finished_at = if_not_exists(finished_at, :now), \
                 #error = if_not_exists(#error, :reason), \
                 #history = list_append(#history, :change)",
            )
            .send()
            .await;
        self.applied(result)
    }

    /// An update of one record that appends `change` to its transitions
    /// (`#history = list_append(#history, :change)`; `#status` named too).
    fn update_record(
        &self,
        key: &RecordKey,
        change: AttributeValue,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(key.service.clone()))
            .key("sk", AttributeValue::S(key.sk.clone()))
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#history", "transitions")
            .expression_attribute_values(":change", change)
    }

    /// A conditional update's outcome: applied, or refused by its condition.
    fn applied<R, E>(
        &self,
        result: Result<R, SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>>,
    ) -> Result<bool, LedgerError>
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        match result {
            Ok(_) => Ok(true),
            Err(err) if is_conditional_failure(&err) => Ok(false),
            Err(err) => Err(self.aws_error("UpdateItem", err)),
        }
    }

    /// A service's redeploys, newest first, continuing after `after` (an sk).
    pub async fn page_service(
        &self,
        service: &str,
        limit: i32,
        after: Option<&str>,
    ) -> Result<(Vec<ServiceDeployment>, Option<String>), LedgerError> {
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", AttributeValue::S(service.to_owned()))
            .scan_index_forward(false)
            .limit(limit);
        if let Some(after) = after {
            query = query
                .exclusive_start_key("pk", AttributeValue::S(service.to_owned()))
                .exclusive_start_key("sk", AttributeValue::S(after.to_owned()));
        }
        let out = query.send().await.map_err(|e| self.aws_error("Query", e))?;
        let records = self.decode_all(out.items)?;
        let next = out
            .last_evaluated_key
            .and_then(|_| records.last().map(|r| r.sk.clone()));
        Ok((records, next))
    }

    /// Every redeploy of the install's `env`, newest first ([`LEDGER_INDEX`]).
    pub async fn page_env(
        &self,
        env: &str,
        limit: i32,
        after: Option<&RecordKey>,
    ) -> Result<(Vec<ServiceDeployment>, Option<RecordKey>), LedgerError> {
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(LEDGER_INDEX)
            .key_condition_expression("#env = :env")
            .expression_attribute_names("#env", "env")
            .expression_attribute_values(":env", AttributeValue::S(env.to_owned()))
            .scan_index_forward(false)
            .limit(limit);
        if let Some(after) = after {
            query = query
                .exclusive_start_key("pk", AttributeValue::S(after.service.clone()))
                .exclusive_start_key("sk", AttributeValue::S(after.sk.clone()))
                .exclusive_start_key("env", AttributeValue::S(env.to_owned()));
        }
        let out = query.send().await.map_err(|e| self.aws_error("Query", e))?;
        let records = self.decode_all(out.items)?;
        let next = out.last_evaluated_key.and_then(|_| {
            records.last().map(|r| RecordKey {
                service: r.pk.clone(),
                sk: r.sk.clone(),
            })
        });
        Ok((records, next))
    }

    fn decode_all(
        &self,
        items: Option<Vec<HashMap<String, AttributeValue>>>,
    ) -> Result<Vec<ServiceDeployment>, LedgerError> {
        items
            .unwrap_or_default()
            .into_iter()
            .map(|item| {
                let key = format!(
                    "{}/{}",
                    item.get("pk")
                        .and_then(|v| v.as_s().ok())
                        .map_or("?", |s| s),
                    item.get("sk")
                        .and_then(|v| v.as_s().ok())
                        .map_or("?", |s| s)
                );
                serde_dynamo::from_item(item).map_err(|e| LedgerError::Malformed {
                    table: self.table.clone(),
                    key,
                    message: e.to_string(),
                })
            })
            .collect()
    }
}

/// One transition, as the `transitions` list appends it.
fn transition(status: &str, at: &str, reason: &str) -> AttributeValue {
    AttributeValue::L(vec![AttributeValue::M(HashMap::from([
        ("status".to_owned(), AttributeValue::S(status.to_owned())),
        ("at".to_owned(), AttributeValue::S(at.to_owned())),
        ("reason".to_owned(), AttributeValue::S(reason.to_owned())),
    ]))])
}

fn is_conditional_failure<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> bool {
    matches!(err, SdkError::ServiceError(service) if service.err().code() == Some("ConditionalCheckFailedException"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn started(deployment_id: Option<&str>, failure: Option<&str>) -> StartedRedeploy {
        StartedRedeploy {
            env: "prd".into(),
            cluster: "app_cluster_prd".into(),
            service: "app_service_web_prd".into(),
            name: "web".into(),
            task_definition: "arn:aws:ecs:us-east-1:123456789012:task-definition/app_web_prd:7"
                .into(),
            image_digest: Some(
                "sha256:0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0".into(),
            ),
            deployment_id: deployment_id.map(str::to_owned),
            started_ms: 1_795_428_000_123,
            trigger: "image app_service_web:latest pushed".into(),
            triggered_by: "aws.ecr".into(),
            console_url: "https://console/x".into(),
            failure: failure.map(str::to_owned),
        }
    }

    #[test]
    fn the_same_attempt_keys_the_same_record_in_start_order() {
        let a = started(Some("ecs-svc/1"), None);
        assert_eq!(a.key(), started(Some("ecs-svc/1"), None).key());
        assert_eq!(a.key().sk, "20261123T100000123Z#ecs-svc/1");
        let mut later = started(Some("ecs-svc/0"), None);
        later.started_ms += 1;
        assert!(later.key().sk > a.key().sk);
    }

    #[test]
    fn a_record_reads_as_a_ledger_entry_with_its_version_and_history() {
        let entry = started(Some("ecs-svc/1"), None)
            .record(time_of_ms(1_795_428_001_000))
            .to_deployment();
        assert_eq!(entry.kind, Kind::Service);
        assert_eq!(entry.state, State::InFlight);
        assert_eq!(entry.version, "app_web_prd:7 sha256:0f1e2d3c4b5a");
        assert_eq!(entry.transitions.len(), 1);
        assert_eq!(entry.finished_at, None);

        let failed = started(None, Some("ClusterNotFoundException: no cluster"))
            .record(time_of_ms(1_795_428_001_000))
            .to_deployment();
        assert_eq!(failed.state, State::Failed);
        assert_eq!(
            failed.reason.as_deref(),
            Some("ClusterNotFoundException: no cluster")
        );
        assert_eq!(failed.duration_seconds, Some(0));
        assert_eq!(
            failed
                .transitions
                .iter()
                .map(|c| c.status.as_str())
                .collect::<Vec<_>>(),
            [IN_PROGRESS, FAILED]
        );
    }
}
