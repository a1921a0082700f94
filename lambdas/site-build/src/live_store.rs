//! The CloudFront side of the live pointer: a KeyValueStore the viewer-request
//! router function reads (`{target}` → live deploy id). Brought in line with
//! the S3 pointer right after every publish (an unchanged publish too, so a
//! retry heals a store that missed an update) and rollback; a removal takes
//! the key out before the files go.
//!
//! The S3 pointer is the source of truth; the store follows it. What is
//! written is what the S3 pointer names when it is read, never what the
//! caller published: two publishes of one target that switch S3 in one
//! order and reach the store in the other still leave the store naming the
//! S3 pointer's deploy (see [`LiveStore::sync`]).

use aws_sdk_cloudfrontkeyvaluestore::error::DisplayErrorContext;
use sitedao::PublishTarget;
use tracing::info;

use crate::publish::Publisher;

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

    /// Makes the store name the deploy `target`'s S3 pointer names now,
    /// and answers it (`None`: the target has no pointer, and no key).
    ///
    /// The store's ETag is read before the S3 pointer. A write by anyone
    /// else in between changes the ETag, so this write's `If-Match` fails
    /// and the retry reads the pointer again. The last write to succeed
    /// therefore read the pointer after every earlier one did: an older
    /// publish that reaches the store last cannot put its deploy back.
    pub async fn sync(
        &self,
        publisher: &Publisher,
        target: &PublishTarget,
    ) -> Result<Option<String>, LiveStoreError> {
        let key = target.name();
        let mut last = String::new();
        for _ in 0..ATTEMPTS {
            let etag = self.etag(&key).await?;
            let live = publisher
                .live(target)
                .await
                .map_err(|e| self.error(&key, format!("reading the S3 pointer: {e}")))?
                .map(|pointer| pointer.deploy_id);
            let written = match &live {
                Some(deploy_id) => self
                    .client
                    .put_key()
                    .kvs_arn(&self.arn)
                    .key(&key)
                    .value(deploy_id)
                    .if_match(etag)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| (is_conflict(&e), DisplayErrorContext(&e).to_string())),
                None => match self
                    .client
                    .delete_key()
                    .kvs_arn(&self.arn)
                    .key(&key)
                    .if_match(etag)
                    .send()
                    .await
                {
                    Ok(_) => Ok(()),
                    Err(e)
                        if e.as_service_error()
                            .is_some_and(|s| s.is_resource_not_found_exception()) =>
                    {
                        Ok(())
                    }
                    Err(e) => Err((is_conflict(&e), DisplayErrorContext(&e).to_string())),
                },
            };
            match written {
                Ok(()) => {
                    info!(target = %key, deploy_id = live.as_deref().unwrap_or("none"), "CloudFront router follows the S3 pointer");
                    return Ok(live);
                }
                Err((true, message)) => last = message,
                Err((false, message)) => return Err(self.error(&key, message)),
            }
        }
        Err(self.error(
            &key,
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
