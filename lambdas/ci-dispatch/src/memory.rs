//! What ci-dispatch remembers between events, in one DynamoDB table with a
//! TTL: processed event ids, pushed image digests, and the context of the
//! deploys it started (so ECS's COMPLETED/FAILED can close the loop).

use std::collections::HashMap;

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::Value;

#[derive(Debug, Clone, thiserror::Error)]
#[error("dispatch table {table}: {operation} failed: {message}")]
pub struct MemoryError {
    pub table: String,
    pub operation: &'static str,
    pub message: String,
}

#[derive(Debug, Clone)]
pub struct Memory {
    client: aws_sdk_dynamodb::Client,
    table: String,
    ttl_seconds: u64,
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
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

    /// Records `id` unless it is already remembered (and not expired).
    /// Returns false for something seen before.
    pub async fn claim(&self, id: &str) -> Result<bool, MemoryError> {
        let now = now_unix();
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("id", AttributeValue::S(id.to_owned()))
            .item(
                "expires_at",
                AttributeValue::N((now + self.ttl_seconds).to_string()),
            )
            .condition_expression("attribute_not_exists(id) OR expires_at < :now")
            .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
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

    /// Forgets `id`, so a retry of a failed event is processed again.
    pub async fn release(&self, id: &str) -> Result<(), MemoryError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("id", AttributeValue::S(id.to_owned()))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.error("DeleteItem", e))
    }

    /// Stores a started deploy's context under its deployment id.
    pub async fn remember_deploy(
        &self,
        deployment_id: &str,
        context: &Value,
    ) -> Result<(), MemoryError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item(
                "id",
                AttributeValue::S(format!("deployment#{deployment_id}")),
            )
            .item("context", AttributeValue::S(context.to_string()))
            .item(
                "expires_at",
                AttributeValue::N((now_unix() + self.ttl_seconds).to_string()),
            )
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.error("PutItem", e))
    }

    pub async fn deploy_context(&self, deployment_id: &str) -> Result<Option<Value>, MemoryError> {
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
