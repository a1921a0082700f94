use std::collections::HashMap;

use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;

use crate::model::{partition_key, Build, BuildKey, BuildStatus, StatusChange, TrackedBuild};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("DynamoDB {operation} on table {table} failed: {message}")]
    Aws {
        operation: &'static str,
        table: String,
        message: String,
    },
    #[error("build record {key} in table {table} is malformed: {source}")]
    Malformed {
        table: String,
        key: String,
        source: serde_dynamo::Error,
    },
    #[error("cannot encode build {key}: {source}")]
    Encode {
        key: String,
        source: serde_dynamo::Error,
    },
}

/// Result of an idempotent create.
#[derive(Debug, Clone, PartialEq)]
pub enum Created {
    New(Build),
    /// The same build was already stored (a replayed notification).
    AlreadyExists(Build),
}

/// Result of a conditional status change.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    Applied,
    /// The build was not in an allowed status; `current` is what it is now
    /// (`None` if the build does not exist).
    Refused {
        current: Option<BuildStatus>,
    },
}

/// One page of builds, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildPage {
    pub builds: Vec<Build>,
    /// Pass back to `list` for the next (older) page.
    pub next: Option<String>,
}

/// One page of builds with their histories, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackedPage {
    pub builds: Vec<TrackedBuild>,
    /// Pass back for the next (older) page.
    pub next: Option<BuildKey>,
}

/// The builds table's index of every build of the install by `env`, then
/// `sk` (upload time first): the ledger's "newest first" across repos.
pub const LEDGER_INDEX: &str = "ledger";

/// The key a Query resumes after: the table's, and the index's with it.
fn start_key(after: &BuildKey, index: bool) -> HashMap<String, AttributeValue> {
    let mut key = HashMap::from([
        ("pk".to_owned(), AttributeValue::S(after.pk())),
        ("sk".to_owned(), AttributeValue::S(after.sk.clone())),
    ]);
    if index {
        key.insert("env".to_owned(), AttributeValue::S(after.env.clone()));
    }
    key
}

/// The builds table.
#[derive(Debug, Clone)]
pub struct BuildStore {
    client: Client,
    table: String,
}

impl BuildStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    fn aws_error<E, R>(&self, operation: &'static str, err: SdkError<E, R>) -> StoreError
    where
        E: std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        StoreError::Aws {
            operation,
            table: self.table.clone(),
            message: DisplayErrorContext(&err).to_string(),
        }
    }

    fn decode(&self, item: HashMap<String, AttributeValue>) -> Result<Build, StoreError> {
        let key = format!(
            "{}/{}",
            item.get("pk")
                .and_then(|v| v.as_s().ok())
                .map_or("?", |s| s),
            item.get("sk")
                .and_then(|v| v.as_s().ok())
                .map_or("?", |s| s)
        );
        serde_dynamo::from_item(item).map_err(|source| StoreError::Malformed {
            table: self.table.clone(),
            key,
            source,
        })
    }

    /// Stores a PENDING build that redeploys `to`'s artifacts and parameters
    /// to undo `rollback.of` (the builds table's stream starts it like any
    /// other build). The same request made twice gives the same build.
    pub async fn create_rollback(
        &self,
        to: &Build,
        rollback: crate::Rollback,
        requested_by: &str,
        at_unix_ms: i64,
    ) -> Result<Build, StoreError> {
        let build = to.rollback_build(rollback, requested_by, at_unix_ms, ledger::now_rfc3339());
        match self.create(&build).await? {
            Created::New(build) | Created::AlreadyExists(build) => Ok(build),
        }
    }

    /// Stores a new PENDING build unless a build with the same key exists;
    /// its history starts with [`Build::created_change`].
    pub async fn create(&self, build: &Build) -> Result<Created, StoreError> {
        let encode = |source| StoreError::Encode {
            key: build.id().to_string(),
            source,
        };
        let mut item: HashMap<String, AttributeValue> =
            serde_dynamo::to_item(build).map_err(encode)?;
        let history =
            serde_dynamo::to_attribute_value(vec![build.created_change()]).map_err(encode)?;
        item.insert(TRANSITIONS.to_owned(), history);
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(Created::New(build.clone())),
            Err(err) if is_conditional_failure(&err) => {
                let existing = self
                    .get(&build.key())
                    .await?
                    .ok_or_else(|| StoreError::Aws {
                        operation: "PutItem",
                        table: self.table.clone(),
                        message: format!(
                            "build {} was refused as existing but cannot be read back",
                            build.id()
                        ),
                    })?;
                Ok(Created::AlreadyExists(existing))
            }
            Err(err) => Err(self.aws_error("PutItem", err)),
        }
    }

    pub async fn get(&self, key: &BuildKey) -> Result<Option<Build>, StoreError> {
        self.get_item(key)
            .await?
            .map(|item| self.decode(item))
            .transpose()
    }

    /// A build with its history (consistent read).
    pub async fn get_tracked(&self, key: &BuildKey) -> Result<Option<TrackedBuild>, StoreError> {
        self.get_item(key)
            .await?
            .map(|item| self.decode_tracked(item))
            .transpose()
    }

    fn decode_tracked(
        &self,
        mut item: HashMap<String, AttributeValue>,
    ) -> Result<TrackedBuild, StoreError> {
        let history = item.remove(TRANSITIONS);
        let build = self.decode(item)?;
        let transitions = match history {
            None => Vec::new(),
            Some(value) => serde_dynamo::from_attribute_value::<_, Vec<StatusChange>>(value)
                .map_err(|source| StoreError::Malformed {
                    table: self.table.clone(),
                    key: build.id().to_string(),
                    source,
                })?,
        };
        Ok(TrackedBuild { build, transitions })
    }

    /// Builds of `repo` in `env` with their histories, newest first.
    pub async fn list_tracked(
        &self,
        repo: &str,
        env: &str,
        limit: i32,
        after: Option<&BuildKey>,
    ) -> Result<TrackedPage, StoreError> {
        let pk = partition_key(repo, env);
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", AttributeValue::S(pk))
            .scan_index_forward(false)
            .limit(limit);
        if let Some(after) = after {
            query = query.set_exclusive_start_key(Some(start_key(after, false)));
        }
        let out = query.send().await.map_err(|e| self.aws_error("Query", e))?;
        self.tracked_page(out.items, out.last_evaluated_key)
    }

    /// Builds of every repo in `env` with their histories, newest first
    /// (the table's [`LEDGER_INDEX`]: `env`, then `sk`).
    pub async fn list_env(
        &self,
        env: &str,
        limit: i32,
        after: Option<&BuildKey>,
    ) -> Result<TrackedPage, StoreError> {
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
            query = query.set_exclusive_start_key(Some(start_key(after, true)));
        }
        let out = query.send().await.map_err(|e| self.aws_error("Query", e))?;
        self.tracked_page(out.items, out.last_evaluated_key)
    }

    fn tracked_page(
        &self,
        items: Option<Vec<HashMap<String, AttributeValue>>>,
        last: Option<HashMap<String, AttributeValue>>,
    ) -> Result<TrackedPage, StoreError> {
        let builds = items
            .unwrap_or_default()
            .into_iter()
            .map(|item| self.decode_tracked(item))
            .collect::<Result<Vec<_>, _>>()?;
        // The page's last build is where the next one starts.
        let next = last.and_then(|_| builds.last().map(|b| b.build.key()));
        Ok(TrackedPage { builds, next })
    }

    async fn get_item(
        &self,
        key: &BuildKey,
    ) -> Result<Option<HashMap<String, AttributeValue>>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(key.pk()))
            .key("sk", AttributeValue::S(key.sk.clone()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.aws_error("GetItem", e))?;
        Ok(out.item)
    }

    /// Builds of `repo` in `env`, newest first, `limit` per page.
    pub async fn list(
        &self,
        repo: &str,
        env: &str,
        limit: i32,
        after: Option<&str>,
    ) -> Result<BuildPage, StoreError> {
        let pk = partition_key(repo, env);
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", AttributeValue::S(pk.clone()))
            .scan_index_forward(false)
            .limit(limit);
        if let Some(after) = after {
            query = query
                .exclusive_start_key("pk", AttributeValue::S(pk.clone()))
                .exclusive_start_key("sk", AttributeValue::S(after.to_owned()));
        }
        let out = query.send().await.map_err(|e| self.aws_error("Query", e))?;
        let builds = out
            .items
            .unwrap_or_default()
            .into_iter()
            .map(|item| self.decode(item))
            .collect::<Result<Vec<_>, _>>()?;
        let next = out
            .last_evaluated_key
            .and_then(|k| k.get("sk").and_then(|v| v.as_s().ok()).cloned());
        Ok(BuildPage { builds, next })
    }

    /// The newest build of `repo` in `env`.
    pub async fn latest(&self, repo: &str, env: &str) -> Result<Option<Build>, StoreError> {
        Ok(self
            .list(repo, env, 1, None)
            .await?
            .builds
            .into_iter()
            .next())
    }

    /// PENDING -> IN_PROGRESS with the execution ARN, in one conditional write.
    pub async fn mark_started(
        &self,
        key: &BuildKey,
        execution_arn: &str,
        now: &str,
    ) -> Result<Transition, StoreError> {
        self.transition(
            key,
            &[BuildStatus::Pending],
            BuildStatus::InProgress,
            &format!("deployment execution {execution_arn} started"),
            now,
            &[("execution_arn", execution_arn)],
        )
        .await
    }

    /// Ends a build FAILED with `reason`, only from one of the `from` statuses.
    pub async fn mark_failed(
        &self,
        key: &BuildKey,
        from: &[BuildStatus],
        reason: &str,
        now: &str,
    ) -> Result<Transition, StoreError> {
        self.transition(
            key,
            from,
            BuildStatus::Failed,
            reason,
            now,
            &[("error_msg", reason), ("finished_at", now)],
        )
        .await
    }

    /// A conditional UpdateItem's result as a [`Transition`]: a failed
    /// condition is `Refused` with the status found.
    async fn conditional_outcome<O, E, R>(
        &self,
        key: &BuildKey,
        result: Result<O, SdkError<E, R>>,
    ) -> Result<Transition, StoreError>
    where
        E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        match result {
            Ok(_) => Ok(Transition::Applied),
            Err(err) if is_conditional_failure(&err) => {
                let current = self.get(key).await?.map(|b| b.status);
                Ok(Transition::Refused { current })
            }
            Err(err) => Err(self.aws_error("UpdateItem", err)),
        }
    }

    /// Records the policy check of an IN_PROGRESS build: its warnings, and
    /// an IN_PROGRESS entry in its history saying what was checked. Once per
    /// build: a retried check finds it recorded and writes nothing.
    pub async fn record_policy(
        &self,
        key: &BuildKey,
        warnings: &[String],
        summary: &str,
        now: &str,
    ) -> Result<Transition, StoreError> {
        let warnings = AttributeValue::L(
            warnings
                .iter()
                .map(|w| AttributeValue::S(w.clone()))
                .collect(),
        );
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(key.pk()))
            .key("sk", AttributeValue::S(key.sk.clone()))
            .update_expression(
                "SET policy_warnings = :w, #updated = :now, \
                 #history = list_append(if_not_exists(#history, :empty), :change)",
            )
            .condition_expression(
                "attribute_exists(pk) AND #status = :ip AND attribute_not_exists(policy_warnings)",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#updated", "updated_at")
            .expression_attribute_names("#history", TRANSITIONS)
            .expression_attribute_values(":w", warnings)
            .expression_attribute_values(":now", AttributeValue::S(now.to_owned()))
            .expression_attribute_values(":empty", AttributeValue::L(Vec::new()))
            .expression_attribute_values(
                ":ip",
                AttributeValue::S(BuildStatus::InProgress.as_str().to_owned()),
            )
            .expression_attribute_values(
                ":change",
                status_change(BuildStatus::InProgress, now, summary),
            )
            .send()
            .await;
        self.conditional_outcome(key, result).await
    }

    /// Moves a build to `to` if its status is one of `from`, setting
    /// `updated_at = now` and `fields`, and appends `{to, now, reason}` to
    /// its `transitions`, all in one conditional write. Terminal statuses
    /// are never left, whatever `from` says. `now` is RFC 3339 UTC.
    pub async fn transition(
        &self,
        key: &BuildKey,
        from: &[BuildStatus],
        to: BuildStatus,
        reason: &str,
        now: &str,
        fields: &[(&str, &str)],
    ) -> Result<Transition, StoreError> {
        let allowed: Vec<BuildStatus> = from.iter().copied().filter(|s| !s.is_terminal()).collect();
        if allowed.is_empty() {
            let current = self.get(key).await?.map(|b| b.status);
            return Ok(Transition::Refused { current });
        }
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(key.pk()))
            .key("sk", AttributeValue::S(key.sk.clone()))
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#updated", "updated_at")
            .expression_attribute_names("#history", TRANSITIONS)
            .expression_attribute_values(":to", AttributeValue::S(to.as_str().to_owned()))
            .expression_attribute_values(":now", AttributeValue::S(now.to_owned()))
            .expression_attribute_values(":empty", AttributeValue::L(Vec::new()))
            .expression_attribute_values(":change", status_change(to, now, reason));
        let mut sets = vec![
            "#status = :to".to_owned(),
            "#updated = :now".to_owned(),
            "#history = list_append(if_not_exists(#history, :empty), :change)".to_owned(),
        ];
        for (i, (name, value)) in fields.iter().enumerate() {
            sets.push(format!("#f{i} = :f{i}"));
            update = update
                .expression_attribute_names(format!("#f{i}"), *name)
                .expression_attribute_values(
                    format!(":f{i}"),
                    AttributeValue::S((*value).to_owned()),
                );
        }
        let mut allowed_refs = Vec::new();
        for (i, status) in allowed.iter().enumerate() {
            allowed_refs.push(format!(":from{i}"));
            update = update.expression_attribute_values(
                format!(":from{i}"),
                AttributeValue::S(status.as_str().to_owned()),
            );
        }
        let condition = format!(
            "attribute_exists(pk) AND #status IN ({})",
            allowed_refs.join(", ")
        );
        let result = update
            .update_expression(format!("SET {}", sets.join(", ")))
            .condition_expression(condition)
            .send()
            .await;
        self.conditional_outcome(key, result).await
    }
}

/// The attribute holding a build's history (a list of `{status, at, reason}`).
const TRANSITIONS: &str = "transitions";

/// `[{status, at, reason}]`: the one-entry list a write appends.
fn status_change(to: BuildStatus, at: &str, reason: &str) -> AttributeValue {
    AttributeValue::L(vec![AttributeValue::M(HashMap::from([
        (
            "status".to_owned(),
            AttributeValue::S(to.as_str().to_owned()),
        ),
        ("at".to_owned(), AttributeValue::S(at.to_owned())),
        ("reason".to_owned(), AttributeValue::S(reason.to_owned())),
    ]))])
}

fn is_conditional_failure<E, R>(err: &SdkError<E, R>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    matches!(err, SdkError::ServiceError(service) if service.err().code() == Some("ConditionalCheckFailedException"))
}

/// The sk of the newest build that deployed `stack_name` successfully, as
/// the state machine records it in the stacks table (`deployed_sk`).
pub async fn deployed_sk(
    client: &Client,
    stacks_table: &str,
    stack_name: &str,
) -> Result<Option<String>, StoreError> {
    let item = client
        .get_item()
        .table_name(stacks_table)
        .key("stack_name", AttributeValue::S(stack_name.to_owned()))
        .consistent_read(true)
        .send()
        .await
        .map_err(|err| StoreError::Aws {
            operation: "GetItem",
            table: stacks_table.to_owned(),
            message: DisplayErrorContext(&err).to_string(),
        })?;
    Ok(item
        .item()
        .and_then(|item| item.get("deployed_sk"))
        .and_then(|v| v.as_s().ok())
        .cloned())
}
