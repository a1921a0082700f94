//! What ci-dispatch remembers between events, in one DynamoDB table with a
//! TTL: claims on the work it does (events, pushed image digests, one
//! service's redeploy for one event), and the context of the deploys it
//! started (so ECS's COMPLETED/FAILED can close the loop).
//!
//! A claim is a lease, not a flag. It names its holder (the Lambda request
//! id, which AWS keeps across the asynchronous retries of one invocation) and
//! how long the holder may still be running (its invocation's deadline plus
//! [`LEASE_MARGIN`]). It is `running` while the work runs and becomes `done`
//! only after the work. So an invocation that times out or crashes leaves a
//! claim its own retry takes over at once and anyone else takes over once
//! the lease has run out; nothing is acknowledged as done that was not done.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};

/// Added to an invocation's deadline to make its lease: covers the clock
/// difference between the Lambda host that ran it and the one that reads
/// the lease. After the lease, the holder can no longer be running.
pub const LEASE_MARGIN: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, thiserror::Error)]
#[error("dispatch table {table}: {operation} failed: {message}")]
pub struct MemoryError {
    pub table: String,
    pub operation: &'static str,
    pub message: String,
}

/// What is remembered of a deployment ci-dispatch started, or ECS started
/// to roll one back, so ECS's later word on it is reported with it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeployContext {
    pub service: String,
    pub cluster: String,
    /// The service's short name (`api`).
    #[serde(default)]
    pub name: String,
    pub task_definition: String,
    /// What set it off.
    pub reason: String,
    /// Its ledger record, to close when ECS reports the rollout's end.
    #[serde(default)]
    pub ledger: Option<ledger::RecordKey>,
    /// A rollback ECS started (its end is reported as the rollback's).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rollback: bool,
}

/// Who holds a claim and until when: one invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The Lambda request id (the same across the async retries of one event).
    pub holder: String,
    /// Unix milliseconds after which the holder cannot be running any more.
    pub until_ms: u64,
}

impl Lease {
    /// The lease of an invocation with `request_id` and `deadline_ms` (the
    /// Runtime API's `Lambda-Runtime-Deadline-Ms`).
    pub fn for_invocation(request_id: &str, deadline_ms: u64) -> Self {
        Self {
            holder: request_id.to_owned(),
            until_ms: deadline_ms + LEASE_MARGIN.as_millis() as u64,
        }
    }
}

/// A claim's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimState {
    Running,
    /// The work is done. Records written before leases existed carry no
    /// state and count as done: that is what they meant.
    Done,
}

/// One redeploy attempt: recorded on the service's claim before UpdateService.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// Unix milliseconds, taken before UpdateService was called.
    pub started_ms: u64,
    /// The task definition UpdateService was asked to deploy.
    pub task_definition: String,
    /// The deploy's start was announced to Slack: a retry does not announce
    /// it again. Written right after the message is sent.
    pub announced: bool,
}

/// A claim as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRecord {
    pub state: ClaimState,
    pub holder: Option<String>,
    pub lease_until_ms: u64,
    /// Unix seconds (the table's TTL attribute).
    pub expires_at: u64,
    pub attempt: Option<Attempt>,
}

/// The answer to a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Ours. `previous` is the running claim taken over (our own earlier
    /// attempt, or one whose lease ran out), with what it had started.
    Claimed { previous: Option<ClaimRecord> },
    /// Done before: a true duplicate.
    Done,
    /// Another invocation is working on it and may still be running.
    Busy { holder: String, until_ms: u64 },
}

/// Whether `lease` may take a claim whose stored record is `existing`, at
/// `now_ms`. This is the rule [`CLAIM_CONDITION`] enforces atomically.
pub fn may_claim(existing: Option<&ClaimRecord>, lease: &Lease, now_ms: u64) -> bool {
    let Some(record) = existing else {
        return true;
    };
    if record.expires_at < now_ms / 1000 {
        return true;
    }
    record.state == ClaimState::Running
        && (record.holder.as_deref() == Some(lease.holder.as_str())
            || record.lease_until_ms < now_ms)
}

/// What a refused claim means (for a record [`may_claim`] refuses).
pub fn refusal(existing: &ClaimRecord) -> Claim {
    match existing.state {
        ClaimState::Done => Claim::Done,
        ClaimState::Running => Claim::Busy {
            holder: existing.holder.clone().unwrap_or_default(),
            until_ms: existing.lease_until_ms,
        },
    }
}

/// The claim rule as a DynamoDB condition (see [`may_claim`]).
pub const CLAIM_CONDITION: &str = "attribute_not_exists(id) OR expires_at < :now \
     OR (#state = :running AND (holder = :holder OR lease_until < :now_ms))";

#[derive(Debug, Clone)]
pub struct Memory {
    client: aws_sdk_dynamodb::Client,
    table: String,
    ttl_seconds: u64,
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

fn number(item: &HashMap<String, AttributeValue>, name: &str) -> Option<u64> {
    item.get(name)?.as_n().ok()?.parse().ok()
}

fn string(item: &HashMap<String, AttributeValue>, name: &str) -> Option<String> {
    item.get(name)?.as_s().ok().cloned()
}

impl ClaimRecord {
    pub fn from_item(item: &HashMap<String, AttributeValue>) -> Self {
        let attempt = match (
            number(item, "attempt_started_ms"),
            string(item, "attempt_task_definition"),
        ) {
            (Some(started_ms), Some(task_definition)) => Some(Attempt {
                started_ms,
                task_definition,
                announced: item
                    .get("attempt_announced")
                    .and_then(|v| v.as_bool().ok())
                    .copied()
                    .unwrap_or(false),
            }),
            _ => None,
        };
        Self {
            state: match string(item, "state").as_deref() {
                Some("running") => ClaimState::Running,
                _ => ClaimState::Done,
            },
            holder: string(item, "holder"),
            lease_until_ms: number(item, "lease_until").unwrap_or(0),
            expires_at: number(item, "expires_at").unwrap_or(u64::MAX),
            attempt,
        }
    }
}

impl Memory {
    pub fn new(
        client: aws_sdk_dynamodb::Client,
        table: impl Into<String>,
        ttl_seconds: u64,
    ) -> Self {
        Self {
            client,
            table: table.into(),
            ttl_seconds,
        }
    }

    fn error<E: std::error::Error + 'static, R: std::fmt::Debug>(
        &self,
        operation: &'static str,
        err: SdkError<E, R>,
    ) -> MemoryError {
        MemoryError {
            table: self.table.clone(),
            operation,
            message: DisplayErrorContext(&err).to_string(),
        }
    }

    fn running_item(
        &self,
        id: &str,
        lease: &Lease,
        lease_until_ms: u64,
        attempt: Option<&Attempt>,
    ) -> HashMap<String, AttributeValue> {
        let mut item = HashMap::from([
            ("id".to_owned(), AttributeValue::S(id.to_owned())),
            ("state".to_owned(), AttributeValue::S("running".into())),
            ("holder".to_owned(), AttributeValue::S(lease.holder.clone())),
            (
                "lease_until".to_owned(),
                AttributeValue::N(lease_until_ms.to_string()),
            ),
            (
                "expires_at".to_owned(),
                AttributeValue::N((now_ms() / 1000 + self.ttl_seconds).to_string()),
            ),
        ]);
        if let Some(attempt) = attempt {
            item.insert(
                "attempt_started_ms".into(),
                AttributeValue::N(attempt.started_ms.to_string()),
            );
            item.insert(
                "attempt_task_definition".into(),
                AttributeValue::S(attempt.task_definition.clone()),
            );
            if attempt.announced {
                item.insert("attempt_announced".into(), AttributeValue::Bool(true));
            }
        }
        item
    }

    /// Claims `id` for `lease` (see [`may_claim`]), in one conditional write.
    ///
    /// An update, not a put: taking over a running claim keeps the attempt it
    /// recorded, so a takeover that dies in turn (a second timeout) still
    /// leaves the next one the attempt to look for on ECS. Attempts are only
    /// ever this claim's own (one event, one service).
    pub async fn claim(&self, id: &str, lease: &Lease) -> Result<Claim, MemoryError> {
        let now = now_ms();
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("id", AttributeValue::S(id.to_owned()))
            .update_expression(
                "SET #state = :running, holder = :holder, lease_until = :until, expires_at = :expires",
            )
            .condition_expression(CLAIM_CONDITION)
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":until", AttributeValue::N(lease.until_ms.to_string()))
            .expression_attribute_values(
                ":expires",
                AttributeValue::N((now / 1000 + self.ttl_seconds).to_string()),
            )
            .expression_attribute_values(":now", AttributeValue::N((now / 1000).to_string()))
            .expression_attribute_values(":now_ms", AttributeValue::N(now.to_string()))
            .expression_attribute_values(":running", AttributeValue::S("running".into()))
            .expression_attribute_values(":holder", AttributeValue::S(lease.holder.clone()))
            .return_values(ReturnValue::AllOld)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(out) => Ok(Claim::Claimed {
                previous: out
                    .attributes
                    .as_ref()
                    .map(ClaimRecord::from_item)
                    .filter(|r| r.state == ClaimState::Running),
            }),
            Err(SdkError::ServiceError(e))
                if matches!(e.err(), UpdateItemError::ConditionalCheckFailedException(_)) =>
            {
                let old = match e.err() {
                    UpdateItemError::ConditionalCheckFailedException(c) => c.item().cloned(),
                    _ => None,
                };
                let old = match old {
                    Some(item) => Some(item),
                    // An emulator may not return the item: read it.
                    None => self.read(id).await?,
                };
                Ok(match old.as_ref().map(ClaimRecord::from_item) {
                    Some(record) => refusal(&record),
                    // Gone between the write and the read: someone else's
                    // claim was released; try again later.
                    None => Claim::Busy {
                        holder: String::new(),
                        until_ms: now,
                    },
                })
            }
            Err(err) => Err(self.error("UpdateItem", err)),
        }
    }

    async fn read(&self, id: &str) -> Result<Option<HashMap<String, AttributeValue>>, MemoryError> {
        self.client
            .get_item()
            .table_name(&self.table)
            .key("id", AttributeValue::S(id.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map(|out| out.item)
            .map_err(|e| self.error("GetItem", e))
    }

    /// Writes `item` if `lease` still holds `id`. False if it does not.
    async fn put_held(
        &self,
        item: HashMap<String, AttributeValue>,
        lease: &Lease,
    ) -> Result<bool, MemoryError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("holder = :holder")
            .expression_attribute_values(":holder", AttributeValue::S(lease.holder.clone()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(e))
                if e.err().code() == Some("ConditionalCheckFailedException") =>
            {
                Ok(false)
            }
            Err(err) => Err(self.error("PutItem", err)),
        }
    }

    /// Records on a held claim that a redeploy attempt starts now. False if
    /// the claim is no longer ours (then nothing may be started).
    pub async fn start_attempt(
        &self,
        id: &str,
        lease: &Lease,
        attempt: &Attempt,
    ) -> Result<bool, MemoryError> {
        self.put_held(
            self.running_item(id, lease, lease.until_ms, Some(attempt)),
            lease,
        )
        .await
    }

    /// Marks a held claim done: from now on it answers "duplicate".
    pub async fn complete(&self, id: &str, lease: &Lease) -> Result<bool, MemoryError> {
        let item = HashMap::from([
            ("id".to_owned(), AttributeValue::S(id.to_owned())),
            ("state".to_owned(), AttributeValue::S("done".into())),
            ("holder".to_owned(), AttributeValue::S(lease.holder.clone())),
            (
                "expires_at".to_owned(),
                AttributeValue::N((now_ms() / 1000 + self.ttl_seconds).to_string()),
            ),
        ]);
        self.put_held(item, lease).await
    }

    /// Gives up a held claim after a failure, so anyone's retry takes it
    /// over at once. A claim that started a redeploy keeps its attempt (its
    /// lease ends now instead): UpdateService may have taken effect, and the
    /// retry must look before deploying again.
    pub async fn abandon(
        &self,
        id: &str,
        lease: &Lease,
        attempt: Option<&Attempt>,
    ) -> Result<(), MemoryError> {
        match attempt {
            Some(attempt) => {
                self.put_held(self.running_item(id, lease, 0, Some(attempt)), lease)
                    .await?;
                Ok(())
            }
            None => {
                let result = self
                    .client
                    .delete_item()
                    .table_name(&self.table)
                    .key("id", AttributeValue::S(id.to_owned()))
                    .condition_expression("holder = :holder AND #state = :running")
                    .expression_attribute_names("#state", "state")
                    .expression_attribute_values(":holder", AttributeValue::S(lease.holder.clone()))
                    .expression_attribute_values(":running", AttributeValue::S("running".into()))
                    .send()
                    .await;
                match result {
                    Ok(_) => Ok(()),
                    Err(SdkError::ServiceError(e))
                        if e.err().code() == Some("ConditionalCheckFailedException") =>
                    {
                        Ok(())
                    }
                    Err(err) => Err(self.error("DeleteItem", err)),
                }
            }
        }
    }

    /// Stores a started deploy's context under its deployment id.
    pub async fn remember_deploy(
        &self,
        deployment_id: &str,
        context: &DeployContext,
    ) -> Result<(), MemoryError> {
        let context = serde_json::to_string(context).expect("a deploy context serialises");
        self.client
            .put_item()
            .table_name(&self.table)
            .item(
                "id",
                AttributeValue::S(format!("deployment#{deployment_id}")),
            )
            .item("context", AttributeValue::S(context))
            .item(
                "expires_at",
                AttributeValue::N((now_ms() / 1000 + self.ttl_seconds).to_string()),
            )
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.error("PutItem", e))
    }

    pub async fn deploy_context(
        &self,
        deployment_id: &str,
    ) -> Result<Option<DeployContext>, MemoryError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(
                "id",
                AttributeValue::S(format!("deployment#{deployment_id}")),
            )
            .send()
            .await
            .map_err(|e| self.error("GetItem", e))?;
        Ok(out
            .item
            .as_ref()
            .and_then(|item: &HashMap<String, AttributeValue>| item.get("context"))
            .and_then(|v| v.as_s().ok())
            .and_then(|s| serde_json::from_str(s).ok()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000_000;

    fn lease(holder: &str) -> Lease {
        Lease::for_invocation(holder, NOW + 60_000)
    }

    fn record(state: ClaimState, holder: &str, lease_until_ms: u64) -> ClaimRecord {
        ClaimRecord {
            state,
            holder: Some(holder.into()),
            lease_until_ms,
            expires_at: NOW / 1000 + 3600,
            attempt: None,
        }
    }

    #[test]
    fn a_lease_outlives_the_invocation_deadline_by_the_margin() {
        assert_eq!(lease("r-1").until_ms, NOW + 60_000 + 10_000);
    }

    #[test]
    fn nothing_stored_or_an_expired_record_is_claimed() {
        assert!(may_claim(None, &lease("r-1"), NOW));
        let mut done = record(ClaimState::Done, "r-0", 0);
        done.expires_at = NOW / 1000 - 1;
        assert!(may_claim(Some(&done), &lease("r-1"), NOW));
    }

    #[test]
    fn the_same_request_retried_takes_over_its_own_running_claim() {
        let mine = record(ClaimState::Running, "r-1", NOW + 30_000);
        assert!(may_claim(Some(&mine), &lease("r-1"), NOW));
    }

    #[test]
    fn another_request_waits_for_a_running_lease_and_takes_it_over_once_it_ran_out() {
        let theirs = record(ClaimState::Running, "r-0", NOW + 30_000);
        assert!(!may_claim(Some(&theirs), &lease("r-1"), NOW));
        assert_eq!(
            refusal(&theirs),
            Claim::Busy {
                holder: "r-0".into(),
                until_ms: NOW + 30_000
            }
        );
        assert!(may_claim(Some(&theirs), &lease("r-1"), NOW + 30_001));
    }

    #[test]
    fn a_done_claim_is_a_duplicate_for_everyone_including_its_holder() {
        let done = record(ClaimState::Done, "r-1", 0);
        assert!(!may_claim(Some(&done), &lease("r-1"), NOW));
        assert!(!may_claim(Some(&done), &lease("r-2"), NOW + 3_600_000 - 1));
        assert_eq!(refusal(&done), Claim::Done);
    }

    #[test]
    fn records_from_before_leases_count_as_done() {
        let legacy = HashMap::from([
            ("id".to_owned(), AttributeValue::S("event#e-1".into())),
            (
                "expires_at".to_owned(),
                AttributeValue::N((NOW / 1000 + 60).to_string()),
            ),
        ]);
        let record = ClaimRecord::from_item(&legacy);
        assert_eq!(record.state, ClaimState::Done);
        assert!(!may_claim(Some(&record), &lease("r-1"), NOW));
    }

    #[test]
    fn an_attempt_is_read_back_from_its_record() {
        let mut item = HashMap::new();
        for (k, v) in [("state", "running"), ("holder", "r-1")] {
            item.insert(k.to_owned(), AttributeValue::S(v.into()));
        }
        item.insert(
            "attempt_task_definition".into(),
            AttributeValue::S("arn:aws:ecs:us-east-1:1:task-definition/api:3".into()),
        );
        item.insert(
            "attempt_started_ms".into(),
            AttributeValue::N("1234".into()),
        );
        item.insert("lease_until".into(), AttributeValue::N("0".into()));
        let record = ClaimRecord::from_item(&item);
        assert_eq!(
            record.attempt,
            Some(Attempt {
                started_ms: 1234,
                task_definition: "arn:aws:ecs:us-east-1:1:task-definition/api:3".into(),
                announced: false,
            })
        );
        assert_eq!(record.lease_until_ms, 0);
        assert!(may_claim(Some(&record), &lease("r-9"), NOW));
    }
}
