//! The CloudFront side of the live pointer: a KeyValueStore the viewer-request
//! router function reads (`{target}` → live deploy id). Written right after
//! the S3 pointer, on every publish (an unchanged publish rewrites it too,
//! so a retry heals a store that missed an update), rollback and removal.

use aws_sdk_cloudfrontkeyvaluestore::error::DisplayErrorContext;
use tracing::info;

/// Writes race with other publishes through the store's ETag; a lost race
/// is retried this many times.
const ATTEMPTS: usize = 5;

#[derive(Debug, Clone)]
pub struct LiveStore {
    client: aws_sdk_cloudfrontkeyvaluestore::Client,
    arn: String,
}

#[derive(Debug, thiserror::Error)]
#[error("updating the CloudFront KeyValueStore {arn} for {target}: {message}")]
pub struct LiveStoreError {
    pub arn: String,
    pub target: String,
    pub message: String,
}

impl LiveStore {
    pub fn new(client: aws_sdk_cloudfrontkeyvaluestore::Client, arn: impl Into<String>) -> Self {
        Self {
            client,
            arn: arn.into(),
        }
    }

    fn error(&self, target: &str, message: String) -> LiveStoreError {
        LiveStoreError {
            arn: self.arn.clone(),
            target: target.to_owned(),
            message,
        }
    }

    async fn etag(&self, target: &str) -> Result<String, LiveStoreError> {
        let out = self
            .client
            .describe_key_value_store()
            .kvs_arn(&self.arn)
            .send()
            .await
            .map_err(|e| self.error(target, DisplayErrorContext(&e).to_string()))?;
        Ok(out.e_tag)
    }

    /// Points `target` at `deploy_id`.
    pub async fn point(&self, target: &str, deploy_id: &str) -> Result<(), LiveStoreError> {
        let mut last = String::new();
        for _ in 0..ATTEMPTS {
            let etag = self.etag(target).await?;
            match self
                .client
                .put_key()
                .kvs_arn(&self.arn)
                .key(target)
                .value(deploy_id)
                .if_match(etag)
                .send()
                .await
            {
                Ok(_) => {
                    info!(target, deploy_id, "CloudFront router points at the deploy");
                    return Ok(());
                }
                Err(e) if is_conflict(&e) => last = DisplayErrorContext(&e).to_string(),
                Err(e) => return Err(self.error(target, DisplayErrorContext(&e).to_string())),
            }
        }
        Err(self.error(
            target,
            format!("still conflicting after {ATTEMPTS} attempts: {last}"),
        ))
    }

    /// Forgets `target` (its preview was removed).
    pub async fn forget(&self, target: &str) -> Result<(), LiveStoreError> {
        let mut last = String::new();
        for _ in 0..ATTEMPTS {
            let etag = self.etag(target).await?;
            match self
                .client
                .delete_key()
                .kvs_arn(&self.arn)
                .key(target)
                .if_match(etag)
                .send()
                .await
            {
                Ok(_) => return Ok(()),
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_resource_not_found_exception()) =>
                {
                    return Ok(())
                }
                Err(e) if is_conflict(&e) => last = DisplayErrorContext(&e).to_string(),
                Err(e) => return Err(self.error(target, DisplayErrorContext(&e).to_string())),
            }
        }
        Err(self.error(
            target,
            format!("still conflicting after {ATTEMPTS} attempts: {last}"),
        ))
    }
}

fn is_conflict<E: aws_sdk_cloudfrontkeyvaluestore::error::ProvideErrorMetadata>(
    e: &aws_sdk_cloudfrontkeyvaluestore::error::SdkError<E>,
) -> bool {
    e.as_service_error()
        .and_then(|s| s.code())
        .is_some_and(|code| matches!(code, "ConflictException" | "PreconditionFailed"))
}
