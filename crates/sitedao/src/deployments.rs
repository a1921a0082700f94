//! Deployment records and delivery claims in DynamoDB.
//!
//! One table, keys `pk`/`sk`: a deployment is `pk = {target}`,
//! `sk = {deployment id}` (a KSUID, so a target's deployments sort by
//! time); a delivery claim is `pk = dedupe#{key}`, `sk = -`. Every status
//! change is a conditional write from the status it leaves, so two
//! invocations racing for one deployment cannot both act on it.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem, Update};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use ledger::now_rfc3339;

use crate::dedupe::DedupeKey;
use crate::lease::{Lease, Phase, SeenLease};

/// How long a delivery claim is kept: GitHub redelivers for days at most.
pub const CLAIM_TTL_SECONDS: i64 = 7 * 24 * 3600;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeploymentStatus {
    Queued,
    AwaitingApproval,
    Building,
    Published,
    /// The build matched what was live; nothing was written.
    Unchanged,
    Failed,
    Removed,
    /// A newer deployment of the target switched it first; this one's
    /// build was never made live (it lost a race, it did not fail).
    Superseded,
}

impl DeploymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "QUEUED",
            Self::AwaitingApproval => "AWAITING_APPROVAL",
            Self::Building => "BUILDING",
            Self::Published => "PUBLISHED",
            Self::Unchanged => "UNCHANGED",
            Self::Failed => "FAILED",
            Self::Removed => "REMOVED",
            Self::Superseded => "SUPERSEDED",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Published | Self::Unchanged | Self::Failed | Self::Removed | Self::Superseded
        )
    }
}

impl fmt::Display for DeploymentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a deployment does to its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeploymentAction {
    Build,
    Remove,
    /// A kept deploy put back live (`deployer site rollback`): recorded
    /// PUBLISHED once the pointer moved.
    Rollback,
}

/// The key of one deployment: its target's name and its id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentKey {
    pub target: String,
    pub id: String,
}

impl fmt::Display for DeploymentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.target, self.id)
    }
}

impl DeploymentKey {
    /// Reads a key written by its `Display` (`{target}/{id}`; a target may
    /// hold slashes, an id does not).
    fn parse(written: &str) -> Option<Self> {
        let (target, id) = written.rsplit_once('/')?;
        Some(Self {
            target: target.to_owned(),
            id: id.to_owned(),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    /// The target's name: `production`, `staging`, `preview/{slug}`.
    #[serde(rename = "pk")]
    pub target: String,
    #[serde(rename = "sk")]
    pub id: String,
    pub site: String,
    pub environment: String,
    pub action: DeploymentAction,
    pub branch: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    pub status: DeploymentStatus,
    pub url: String,
    pub triggered_by: String,
    /// `github:push`, `github:pull_request`, `email`, `direct`.
    pub origin: String,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// Epoch seconds; previews expire, production and staging are kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uploaded: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copied: Option<u64>,
    /// The CloudFront invalidation of a publish (records written before
    /// publishes stopped invalidating; read, never written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalidation: Option<String>,
    /// The newer deployment that superseded this one (SUPERSEDED only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub superseded_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log_tail: Vec<String>,
    /// SHA-256 (hex) of the approval token; removed when it is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_token_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_expires_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub github_deployment_id: Option<u64>,
    /// Who asked by email, to be told how it went.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    /// While BUILDING: the request id of the invocation running the
    /// current attempt (its [`Lease`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_holder: Option<String>,
    /// Epoch seconds after which the current attempt is known to be gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_expires_at: Option<i64>,
    /// The attempt running (or that ran last); 0 before any ran.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub attempt: u32,
    /// The step the current attempt is in ([`Phase`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Attempts that stopped without a result, and where.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interruptions: Vec<String>,
    /// The deploy the current attempt is uploading: not live until its
    /// pointer switch, and removed by whoever takes over if it never went live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_deploy_id: Option<String>,
    /// Every status change, oldest first: the record's creation, then one
    /// entry appended by each write that changes `status`, in that write.
    /// Records written before the history was kept have none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transitions: Vec<StatusChange>,
}

/// One entry of a deployment's history: what it became, when and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusChange {
    pub status: DeploymentStatus,
    /// RFC 3339, UTC.
    pub at: String,
    pub reason: String,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// What a deployment is created with; the rest it gains as it runs.
#[derive(Debug, Clone)]
pub struct NewDeployment {
    pub key: DeploymentKey,
    pub site: String,
    pub environment: String,
    pub action: DeploymentAction,
    pub branch: String,
    pub url: String,
    pub triggered_by: String,
    pub origin: String,
    pub created_at: String,
    pub expires_at: Option<i64>,
}

impl Deployment {
    /// A deployment just asked for: QUEUED, with nothing run yet.
    pub fn queued(new: NewDeployment) -> Self {
        let NewDeployment {
            key,
            site,
            environment,
            action,
            branch,
            url,
            triggered_by,
            origin,
            created_at,
            expires_at,
        } = new;
        let first = StatusChange {
            status: DeploymentStatus::Queued,
            at: created_at.clone(),
            reason: format!("{origin} by {triggered_by}"),
        };
        Self {
            target: key.target,
            id: key.id,
            site,
            environment,
            action,
            branch,
            commit: None,
            status: DeploymentStatus::Queued,
            url,
            triggered_by,
            origin,
            updated_at: created_at.clone(),
            created_at,
            finished_at: None,
            expires_at,
            deploy_id: None,
            uploaded: None,
            copied: None,
            invalidation: None,
            superseded_by: None,
            error: None,
            log_tail: Vec::new(),
            approval_token_hash: None,
            approval_expires_at: None,
            approved_by: None,
            github_deployment_id: None,
            reply_to: None,
            lease_holder: None,
            lease_expires_at: None,
            attempt: 0,
            phase: None,
            interruptions: Vec::new(),
            pending_deploy_id: None,
            transitions: vec![first],
        }
    }

    pub fn key(&self) -> DeploymentKey {
        DeploymentKey {
            target: self.target.clone(),
            id: self.id.clone(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("DynamoDB {operation} on table {table} failed: {message}")]
    Dynamo {
        operation: &'static str,
        table: String,
        message: String,
    },
    #[error("deployment {key} in table {table} is not a valid record: {message}")]
    Corrupt {
        key: String,
        table: String,
        message: String,
    },
}

/// The outcome of a conditional status change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Done,
    /// The condition did not hold (another invocation moved it first, the
    /// token did not match or had expired).
    Refused,
}

/// A change to a deployment's fields made together with its status.
#[derive(Debug, Default)]
pub struct Changes {
    set: Vec<(String, AttributeValue)>,
    remove: Vec<String>,
}

impl Changes {
    pub fn set(mut self, name: &str, value: impl Serialize) -> Self {
        let value = serde_dynamo::to_attribute_value(value).expect("plain values serialise");
        self.set.push((name.to_owned(), value));
        self
    }

    pub fn set_some<T: Serialize>(self, name: &str, value: Option<T>) -> Self {
        match value {
            Some(value) => self.set(name, value),
            None => self,
        }
    }

    pub fn remove(mut self, name: &str) -> Self {
        self.remove.push(name.to_owned());
        self
    }
}

#[derive(Debug, Clone)]
pub struct DeploymentStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

pub fn now_epoch() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

impl DeploymentStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    fn error<E>(&self, operation: &'static str, e: SdkError<E>) -> StoreError
    where
        E: std::error::Error + 'static,
    {
        StoreError::Dynamo {
            operation,
            table: self.table.clone(),
            message: DisplayErrorContext(&e).to_string(),
        }
    }

    /// Records a new deployment, together with the claim on the delivery
    /// that asked for it when there is one. `Ok(false)`: the delivery was
    /// claimed before (a redelivery); nothing was written.
    pub async fn create(
        &self,
        deployment: &Deployment,
        claim: Option<&DedupeKey>,
    ) -> Result<bool, StoreError> {
        let item: HashMap<String, AttributeValue> =
            serde_dynamo::to_item(deployment).expect("a deployment serialises");
        let put = |item| {
            Put::builder()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .expect("table, item and condition are set")
        };
        let mut request = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put(item)).build());
        if let Some(claim) = claim {
            request = request.transact_items(
                TransactWriteItem::builder()
                    .put(put(claim_item(claim, &deployment.key())))
                    .build(),
            );
        }
        match request.send().await {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_transaction_canceled_exception()) =>
            {
                // The id is fresh, so only the claim can have been there.
                match claim {
                    Some(claim) if self.claimed(claim).await? => Ok(false),
                    _ => Err(self.error("TransactWriteItems", e)),
                }
            }
            Err(e) => Err(self.error("TransactWriteItems", e)),
        }
    }

    /// Claims a delivery on its own (for commands that record nothing).
    /// `Ok(false)` when it was claimed before.
    pub async fn claim(&self, claim: &DedupeKey) -> Result<bool, StoreError> {
        let key = DeploymentKey {
            target: "-".into(),
            id: "-".into(),
        };
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(claim_item(claim, &key)))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(self.error("PutItem", e)),
        }
    }

    async fn claimed(&self, claim: &DedupeKey) -> Result<bool, StoreError> {
        Ok(self.claim_record(claim).await?.is_some())
    }

    /// The deployment a claimed delivery recorded, if it recorded one.
    pub async fn claimed_deployment(
        &self,
        claim: &DedupeKey,
    ) -> Result<Option<DeploymentKey>, StoreError> {
        let Some(item) = self.claim_record(claim).await? else {
            return Ok(None);
        };
        let key = item
            .get("deployment")
            .and_then(|v| v.as_s().ok())
            .and_then(|key| DeploymentKey::parse(key))
            .filter(|key| key.target != "-");
        Ok(key)
    }

    async fn claim_record(
        &self,
        claim: &DedupeKey,
    ) -> Result<Option<HashMap<String, AttributeValue>>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(claim_pk(claim)))
            .key("sk", AttributeValue::S("-".into()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.error("GetItem", e))?;
        Ok(out.item)
    }

    /// Gives a claim back, so a redelivery can try again (used when the
    /// build it recorded could not be started).
    pub async fn release(&self, claim: &DedupeKey) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(claim_pk(claim)))
            .key("sk", AttributeValue::S("-".into()))
            .send()
            .await
            .map_err(|e| self.error("DeleteItem", e))?;
        Ok(())
    }

    pub async fn get(&self, key: &DeploymentKey) -> Result<Option<Deployment>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(key.target.clone()))
            .key("sk", AttributeValue::S(key.id.clone()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.error("GetItem", e))?;
        out.item.map(|item| self.read(key, item)).transpose()
    }

    fn read(
        &self,
        key: &DeploymentKey,
        item: HashMap<String, AttributeValue>,
    ) -> Result<Deployment, StoreError> {
        serde_dynamo::from_item(item).map_err(|e| StoreError::Corrupt {
            key: key.to_string(),
            table: self.table.clone(),
            message: e.to_string(),
        })
    }

    /// Items a Query of `target`'s partition returned, read as deployments.
    fn read_all(
        &self,
        target: &str,
        items: Vec<HashMap<String, AttributeValue>>,
    ) -> Result<Vec<Deployment>, StoreError> {
        items
            .into_iter()
            .map(|item| {
                let key = DeploymentKey {
                    target: target.to_owned(),
                    id: item
                        .get("sk")
                        .and_then(|v| v.as_s().ok())
                        .cloned()
                        .unwrap_or_default(),
                };
                self.read(&key, item)
            })
            .collect()
    }

    /// A target's deployments, newest first.
    pub async fn list(&self, target: &str, limit: i32) -> Result<Vec<Deployment>, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", AttributeValue::S(target.to_owned()))
            .scan_index_forward(false)
            .limit(limit)
            .send()
            .await
            .map_err(|e| self.error("Query", e))?;
        self.read_all(target, out.items.unwrap_or_default())
    }

    /// A target's deployments, newest first, a page of `limit` starting
    /// after the deployment id `after`; with the id to continue after.
    pub async fn page(
        &self,
        target: &str,
        limit: i32,
        after: Option<&str>,
    ) -> Result<(Vec<Deployment>, Option<String>), StoreError> {
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", AttributeValue::S(target.to_owned()))
            .scan_index_forward(false)
            .limit(limit);
        if let Some(after) = after {
            query = query
                .exclusive_start_key("pk", AttributeValue::S(target.to_owned()))
                .exclusive_start_key("sk", AttributeValue::S(after.to_owned()));
        }
        let out = query.send().await.map_err(|e| self.error("Query", e))?;
        let deployments = self.read_all(target, out.items.unwrap_or_default())?;
        let next = out
            .last_evaluated_key
            .and_then(|_| deployments.last().map(|d| d.id.clone()));
        Ok((deployments, next))
    }

    /// Every target's deployments of `site`, newest first (the table's
    /// [`LEDGER_INDEX`]: `site`, then `sk`; claims and the BUILDING list
    /// carry no `site` and are not in it). Continues after `after`.
    pub async fn page_site(
        &self,
        site: &str,
        limit: i32,
        after: Option<&DeploymentKey>,
    ) -> Result<(Vec<Deployment>, Option<DeploymentKey>), StoreError> {
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(LEDGER_INDEX)
            .key_condition_expression("site = :site")
            .expression_attribute_values(":site", AttributeValue::S(site.to_owned()))
            .scan_index_forward(false)
            .limit(limit);
        if let Some(after) = after {
            query = query
                .exclusive_start_key("pk", AttributeValue::S(after.target.clone()))
                .exclusive_start_key("sk", AttributeValue::S(after.id.clone()))
                .exclusive_start_key("site", AttributeValue::S(site.to_owned()));
        }
        let out = query.send().await.map_err(|e| self.error("Query", e))?;
        let deployments = out
            .items
            .unwrap_or_default()
            .into_iter()
            .map(|item| {
                let key = DeploymentKey {
                    target: item
                        .get("pk")
                        .and_then(|v| v.as_s().ok())
                        .cloned()
                        .unwrap_or_default(),
                    id: item
                        .get("sk")
                        .and_then(|v| v.as_s().ok())
                        .cloned()
                        .unwrap_or_default(),
                };
                self.read(&key, item)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let next = out
            .last_evaluated_key
            .and_then(|_| deployments.last().map(Deployment::key));
        Ok((deployments, next))
    }

    /// Moves a deployment from `from` to `to` with `changes`, only if it is
    /// still in `from` (and `condition` holds, over `values`).
    pub async fn transition(
        &self,
        key: &DeploymentKey,
        from: DeploymentStatus,
        to: DeploymentStatus,
        changes: Changes,
        condition: Option<(&str, Vec<(&str, AttributeValue)>)>,
    ) -> Result<Transition, StoreError> {
        let mut update = StatusUpdate::new(from, to, changes);
        if let Some((extra, extra_values)) = condition {
            update.condition(extra, extra_values);
        }
        self.update(key, update).await
    }

    async fn update(
        &self,
        key: &DeploymentKey,
        update: StatusUpdate,
    ) -> Result<Transition, StoreError> {
        let (expression, condition, names, values) = update.build();
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(key.target.clone()))
            .key("sk", AttributeValue::S(key.id.clone()))
            .update_expression(expression)
            .condition_expression(condition)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Transition::Done),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(Transition::Refused)
            }
            Err(e) => Err(self.error("UpdateItem", e)),
        }
    }

    /// One status update of `key` together with a write of its entry in
    /// the index of BUILDING deployments, in one transaction.
    async fn update_with_index(
        &self,
        key: &DeploymentKey,
        update: StatusUpdate,
        index: IndexWrite,
    ) -> Result<Transition, StoreError> {
        let (expression, condition, names, values) = update.build();
        let update = Update::builder()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(key.target.clone()))
            .key("sk", AttributeValue::S(key.id.clone()))
            .update_expression(expression)
            .condition_expression(condition)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .build()
            .expect("table, key and expression are set");
        let index_item = match index {
            IndexWrite::Put => TransactWriteItem::builder()
                .put(
                    Put::builder()
                        .table_name(&self.table)
                        .set_item(Some(index_item(key)))
                        .build()
                        .expect("table and item are set"),
                )
                .build(),
            IndexWrite::Delete => TransactWriteItem::builder()
                .delete(
                    Delete::builder()
                        .table_name(&self.table)
                        .set_key(Some(index_key(key)))
                        .build()
                        .expect("table and key are set"),
                )
                .build(),
        };
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(update).build())
            .transact_items(index_item)
            .send()
            .await;
        match result {
            Ok(_) => Ok(Transition::Done),
            Err(e) => {
                let refused = e.as_service_error().is_some_and(|s| match s {
                    TransactWriteItemsError::TransactionCanceledException(canceled) => {
                        canceled.cancellation_reasons().is_empty()
                            || canceled
                                .cancellation_reasons()
                                .iter()
                                .any(|r| r.code() == Some("ConditionalCheckFailed"))
                    }
                    _ => false,
                });
                if refused {
                    Ok(Transition::Refused)
                } else {
                    Err(self.error("TransactWriteItems", e))
                }
            }
        }
    }

    /// Claims a QUEUED deployment for `lease` (attempt 1): BUILDING, and
    /// listed among the BUILDING deployments the sweep watches.
    pub async fn claim_run(
        &self,
        key: &DeploymentKey,
        lease: &Lease,
        changes: Changes,
    ) -> Result<Transition, StoreError> {
        let changes = lease_changes(changes, lease).set("phase", Phase::Starting.as_str());
        let update = StatusUpdate::new(
            DeploymentStatus::Queued,
            DeploymentStatus::Building,
            changes,
        );
        self.update_with_index(key, update, IndexWrite::Put).await
    }

    /// Takes a BUILDING deployment over from the attempt that held it as
    /// `seen`, for `lease`; refused if anyone changed the lease since.
    pub async fn take_over(
        &self,
        key: &DeploymentKey,
        seen: &SeenLease,
        lease: &Lease,
        changes: Changes,
    ) -> Result<Transition, StoreError> {
        let changes = lease_changes(changes, lease)
            .set("phase", Phase::Starting.as_str())
            .remove("pending_deploy_id");
        let mut update = StatusUpdate::new(
            DeploymentStatus::Building,
            DeploymentStatus::Building,
            changes,
        );
        update.held_by(seen);
        self.update_with_index(key, update, IndexWrite::Put).await
    }

    /// Records the progress of the attempt holding `lease`; refused when the
    /// attempt has lost its lease (it must then stop).
    pub async fn progress(
        &self,
        key: &DeploymentKey,
        lease: &Lease,
        changes: Changes,
    ) -> Result<Transition, StoreError> {
        let mut update = StatusUpdate::new(
            DeploymentStatus::Building,
            DeploymentStatus::Building,
            changes,
        );
        update.held_by(&lease.seen());
        self.update(key, update).await
    }

    /// Ends a BUILDING deployment held as `held` in `to`, and takes it off
    /// the sweep's list.
    pub async fn finish(
        &self,
        key: &DeploymentKey,
        held: &SeenLease,
        to: DeploymentStatus,
        changes: Changes,
    ) -> Result<Transition, StoreError> {
        let changes = changes
            .set("finished_at", now_rfc3339())
            .remove("lease_expires_at");
        let mut update = StatusUpdate::new(DeploymentStatus::Building, to, changes);
        update.held_by(held);
        self.update_with_index(key, update, IndexWrite::Delete)
            .await
    }

    /// The deployments listed as BUILDING (the sweep's list). An entry may
    /// outlive its deployment's BUILDING status only if the deployment was
    /// changed outside this store; [`Self::unlist`] removes it.
    pub async fn building(&self) -> Result<Vec<DeploymentKey>, StoreError> {
        let mut keys = Vec::new();
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", AttributeValue::S(BUILDING_INDEX_PK.into()))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.error("Query", e))?;
            keys.extend(
                page.items()
                    .iter()
                    .filter_map(|item| DeploymentKey::parse(item.get("sk")?.as_s().ok()?)),
            );
        }
        Ok(keys)
    }

    /// Takes `key` off the list of BUILDING deployments.
    pub async fn unlist(&self, key: &DeploymentKey) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(index_key(key)))
            .send()
            .await
            .map_err(|e| self.error("DeleteItem", e))?;
        Ok(())
    }

    /// Deployments of `target` newer than `id`, oldest first (at most `limit`).
    pub async fn newer(
        &self,
        target: &str,
        id: &str,
        limit: i32,
    ) -> Result<Vec<Deployment>, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND sk > :sk")
            .expression_attribute_values(":pk", AttributeValue::S(target.to_owned()))
            .expression_attribute_values(":sk", AttributeValue::S(id.to_owned()))
            .consistent_read(true)
            .limit(limit)
            .send()
            .await
            .map_err(|e| self.error("Query", e))?;
        self.read_all(target, out.items.unwrap_or_default())
    }
}

/// The partition listing BUILDING deployments, one item each
/// (`sk = {target}/{id}`): written with the claim, deleted with the end, so
/// the sweep finds stranded builds with one Query and no scan.
pub const BUILDING_INDEX_PK: &str = "building";

/// The table's index of every deployment by `site`, then `sk` (a KSUID,
/// so newest first across targets).
pub const LEDGER_INDEX: &str = "ledger";

enum IndexWrite {
    Put,
    Delete,
}

/// The key of `key`'s entry in the list of BUILDING deployments.
fn index_key(key: &DeploymentKey) -> HashMap<String, AttributeValue> {
    HashMap::from([
        (
            "pk".to_owned(),
            AttributeValue::S(BUILDING_INDEX_PK.to_owned()),
        ),
        ("sk".to_owned(), AttributeValue::S(key.to_string())),
    ])
}

fn index_item(key: &DeploymentKey) -> HashMap<String, AttributeValue> {
    let mut item = index_key(key);
    item.insert("listed_at".to_owned(), AttributeValue::S(now_rfc3339()));
    item
}

fn lease_changes(changes: Changes, lease: &Lease) -> Changes {
    changes
        .set("lease_holder", &lease.holder)
        .set("lease_expires_at", lease.expires_at)
        .set("attempt", lease.attempt)
}

/// An UpdateItem of a deployment's status, conditional on the status it
/// leaves (and on more, when asked).
struct StatusUpdate {
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
    sets: Vec<String>,
    removes: Vec<String>,
    conditions: Vec<String>,
}

impl StatusUpdate {
    fn new(from: DeploymentStatus, to: DeploymentStatus, changes: Changes) -> Self {
        let mut names = HashMap::from([("#status".to_owned(), "status".to_owned())]);
        let mut values = HashMap::from([
            (":from".to_owned(), AttributeValue::S(from.as_str().into())),
            (":to".to_owned(), AttributeValue::S(to.as_str().into())),
            (":now".to_owned(), AttributeValue::S(now_rfc3339())),
        ]);
        let mut sets = vec!["#status = :to".to_owned(), "updated_at = :now".to_owned()];
        if from != to {
            let change = StatusChange {
                status: to,
                at: now_rfc3339(),
                reason: change_reason(to, &changes),
            };
            names.insert("#transitions".to_owned(), "transitions".to_owned());
            values.insert(
                ":change".to_owned(),
                serde_dynamo::to_attribute_value(vec![change]).expect("a status change serialises"),
            );
            values.insert(":no_changes".to_owned(), AttributeValue::L(Vec::new()));
            sets.push(
                "#transitions = list_append(if_not_exists(#transitions, :no_changes), :change)"
                    .to_owned(),
            );
        }
        for (i, (name, value)) in changes.set.into_iter().enumerate() {
            names.insert(format!("#s{i}"), name);
            values.insert(format!(":s{i}"), value);
            sets.push(format!("#s{i} = :s{i}"));
        }
        let removes = changes
            .remove
            .into_iter()
            .enumerate()
            .map(|(i, name)| {
                names.insert(format!("#r{i}"), name);
                format!("#r{i}")
            })
            .collect();
        Self {
            names,
            values,
            sets,
            removes,
            conditions: vec!["attribute_exists(pk) AND #status = :from".to_owned()],
        }
    }

    fn condition(&mut self, expression: &str, values: Vec<(&str, AttributeValue)>) {
        self.conditions.push(format!("({expression})"));
        for (name, value) in values {
            self.values.insert(name.to_owned(), value);
        }
    }

    /// Only while the lease is still as `seen`.
    fn held_by(&mut self, seen: &SeenLease) {
        self.names
            .insert("#lease_holder".into(), "lease_holder".into());
        self.names.insert("#attempt".into(), "attempt".into());
        let holder = match &seen.holder {
            Some(holder) => {
                self.values
                    .insert(":lease_holder".into(), AttributeValue::S(holder.clone()));
                "#lease_holder = :lease_holder"
            }
            None => "attribute_not_exists(#lease_holder)",
        };
        let attempt = if seen.attempt == 0 {
            "attribute_not_exists(#attempt)".to_owned()
        } else {
            self.values.insert(
                ":lease_attempt".into(),
                AttributeValue::N(seen.attempt.to_string()),
            );
            "#attempt = :lease_attempt".to_owned()
        };
        self.conditions.push(format!("{holder} AND {attempt}"));
    }

    /// (update expression, condition, names, values)
    fn build(
        self,
    ) -> (
        String,
        String,
        HashMap<String, String>,
        HashMap<String, AttributeValue>,
    ) {
        let mut expression = format!("SET {}", self.sets.join(", "));
        if !self.removes.is_empty() {
            expression.push_str(&format!(" REMOVE {}", self.removes.join(", ")));
        }
        (
            expression,
            self.conditions.join(" AND "),
            self.names,
            self.values,
        )
    }
}

/// Why a deployment became `to`, from what the same write sets: its error,
/// who superseded or approved it; else what the status itself says.
fn change_reason(to: DeploymentStatus, changes: &Changes) -> String {
    let set = |name: &str| {
        changes
            .set
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_s().ok())
            .cloned()
    };
    if let Some(error) = set("error") {
        return error;
    }
    match to {
        DeploymentStatus::Superseded => match set("superseded_by") {
            Some(by) => format!("superseded by {by}"),
            None => "superseded by a newer deployment".to_owned(),
        },
        DeploymentStatus::Building => match set("approved_by") {
            Some(by) => format!("approved by {by}"),
            None => "build started".to_owned(),
        },
        DeploymentStatus::Queued => "queued".to_owned(),
        DeploymentStatus::AwaitingApproval => "waiting for approval".to_owned(),
        DeploymentStatus::Published => "published and live".to_owned(),
        DeploymentStatus::Unchanged => "the build matched what was live".to_owned(),
        DeploymentStatus::Failed => "failed".to_owned(),
        DeploymentStatus::Removed => "removed".to_owned(),
    }
}

fn claim_pk(claim: &DedupeKey) -> String {
    format!("dedupe#{claim}")
}

fn claim_item(claim: &DedupeKey, deployment: &DeploymentKey) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("pk".to_owned(), AttributeValue::S(claim_pk(claim))),
        ("sk".to_owned(), AttributeValue::S("-".into())),
        (
            "deployment".to_owned(),
            AttributeValue::S(deployment.to_string()),
        ),
        (
            "expires_at".to_owned(),
            AttributeValue::N((now_epoch() + CLAIM_TTL_SECONDS).to_string()),
        ),
    ])
}

impl FromStr for DeploymentStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        serde_json::from_value(serde_json::Value::String(s.to_owned()))
            .map_err(|_| format!("{s:?} is not a deployment status"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_guarded_update_names_holder_and_attempt_in_its_condition() {
        let mut update = StatusUpdate::new(
            DeploymentStatus::Building,
            DeploymentStatus::Failed,
            Changes::default()
                .set("error", "x")
                .remove("lease_expires_at"),
        );
        update.held_by(&SeenLease {
            holder: Some("req-1".into()),
            attempt: 2,
        });
        let (expression, condition, names, values) = update.build();
        assert_eq!(
            expression,
            "SET #status = :to, updated_at = :now, \
             #transitions = list_append(if_not_exists(#transitions, :no_changes), :change), \
             #s0 = :s0 REMOVE #r0"
        );
        // The status change is appended to the history in the same write,
        // with the error as its reason.
        let change: Vec<StatusChange> =
            serde_dynamo::from_attribute_value(values[":change"].clone()).unwrap();
        assert_eq!(change.len(), 1);
        assert_eq!(
            (change[0].status, change[0].reason.as_str()),
            (DeploymentStatus::Failed, "x")
        );
        assert_eq!(
            condition,
            "attribute_exists(pk) AND #status = :from AND #lease_holder = :lease_holder AND #attempt = :lease_attempt"
        );
        assert_eq!(names["#r0"], "lease_expires_at");
        assert_eq!(values[":lease_holder"], AttributeValue::S("req-1".into()));
        assert_eq!(values[":lease_attempt"], AttributeValue::N("2".into()));
        assert_eq!(values[":from"], AttributeValue::S("BUILDING".into()));
    }

    #[test]
    fn a_change_that_keeps_the_status_adds_no_history() {
        let update = StatusUpdate::new(
            DeploymentStatus::Building,
            DeploymentStatus::Building,
            Changes::default().set("phase", "uploading"),
        );
        let (expression, _, names, values) = update.build();
        assert!(!expression.contains("transitions"), "{expression}");
        assert!(!names.contains_key("#transitions"));
        assert!(!values.contains_key(":change"));
    }

    #[test]
    fn a_record_from_before_leases_is_guarded_by_their_absence() {
        let mut update = StatusUpdate::new(
            DeploymentStatus::Building,
            DeploymentStatus::Building,
            Changes::default(),
        );
        update.held_by(&SeenLease {
            holder: None,
            attempt: 0,
        });
        let (_, condition, _, values) = update.build();
        assert!(
            condition.ends_with(
                "attribute_not_exists(#lease_holder) AND attribute_not_exists(#attempt)"
            ),
            "{condition}"
        );
        assert!(!values.contains_key(":lease_holder"));
    }

    #[test]
    fn index_entries_name_the_deployment_they_list() {
        let key = DeploymentKey {
            target: "preview/feature-x".into(),
            id: "2qAbcdefghijklmnopqrstuvwxy".into(),
        };
        let item = index_item(&key);
        assert_eq!(item["pk"], AttributeValue::S(BUILDING_INDEX_PK.into()));
        let sk = item["sk"].as_s().unwrap();
        assert_eq!(DeploymentKey::parse(sk), Some(key));
    }
}
