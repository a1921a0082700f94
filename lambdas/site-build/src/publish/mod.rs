//! Publishing a built site to S3, atomically, behind CloudFront.
//!
//! Layout of the site bucket:
//!
//! ```text
//! deploys/{target}/{deploy_id}/{path}                 every file of one deploy
//! deploys/{target}/{deploy_id}/.deploy-manifest.json  path -> sha256, size, headers
//! live/{target}.json                                  which deploy is live, and the one before
//! ```
//!
//! `{target}` is `production`, `staging` or `preview/{slug}`. A deploy is a
//! complete copy of the site under its own prefix and is never modified
//! once written, so switching deploys is one small write (the pointer) and
//! a rollback is the same write pointing back. Readers go through the
//! pointer, and the pointer is written last: nobody resolves into a deploy
//! whose files are still arriving.
//!
//! Files a deploy shares with the live one are not uploaded again but
//! copied inside S3 (no bytes through the Lambda), so a one-file change
//! uploads one file, and an unchanged site writes nothing at all.
//!
//! Nothing is invalidated in CloudFront. The router function rewrites every
//! viewer URI into the live deploy's prefix at viewer request, before
//! CloudFront looks in its cache, so the cache keys are the rewritten
//! paths: every deploy's are new, and a deploy's objects never change. An
//! invalidation of viewer paths would match nothing (tests/e2e/site_router.rs
//! reads the keys the router produces).

mod layout;
mod local;

use std::fmt;
use std::path::{Path, PathBuf};

use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, Delete, MetadataDirective, ObjectIdentifier};
use futures::stream::{self, StreamExt, TryStreamExt};
use ledger::now_rfc3339;
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sitedao::{is_deploy_id, new_deploy_id, PublishTarget};
use tracing::{info, warn};

pub use layout::{DeployManifest, LivePointer, ManifestEntry, Switch};
pub(crate) use local::site_files;
pub use local::Refusal;
use local::{base64, list_refusals, LocalFile, LocalSite};

/// Characters left as they are in S3 copy sources; everything else is
/// percent-encoded (CopyObject wants a URL-encoded source).
const PATH_SAFE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// Uploads in flight at once: enough to hide S3's per-request latency, few
/// enough for a Lambda's bandwidth and memory (each streams a file).
pub const DEFAULT_CONCURRENCY: usize = 32;

/// Copies inside S3 in flight at once. A copy carries no bytes through the
/// Lambda, so only S3 bounds them: 3,500 PUT/COPY/POST/DELETE requests per
/// second per prefix, which 128 copies at 20–40 ms each approach without
/// passing (docs/site-build.md, "What a deploy costs").
pub const DEFAULT_COPY_CONCURRENCY: usize = 128;

/// The result of [`Publisher::publish`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishOutcome {
    pub target: PublishTarget,
    /// The live deploy: the new one, or the existing one when `unchanged`.
    pub deploy_id: String,
    /// The deploy that was live before (what a rollback returns to).
    pub previous: Option<String>,
    /// The site is byte-for-byte what is live already; nothing was written.
    pub unchanged: bool,
    pub uploaded: usize,
    pub copied: usize,
    /// Paths live before that the new deploy no longer has.
    pub deleted: usize,
    pub bytes_uploaded: u64,
}

/// The result of [`Publisher::rollback`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollbackOutcome {
    pub target: PublishTarget,
    /// The deploy live now (the former `previous`).
    pub deploy_id: String,
    /// The deploy rolled back from, now the pointer's `previous`.
    pub rolled_back_from: String,
}

/// The result of [`Publisher::remove`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoveOutcome {
    pub target: PublishTarget,
    /// The deploy that was live, if any.
    pub was_live: Option<String>,
    pub deleted_objects: usize,
}

/// The result of [`Publisher::prune`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PruneOutcome {
    pub target: PublishTarget,
    /// The live deploy (kept).
    pub live: String,
    /// The other deploys kept, oldest first: what rollback can reach.
    pub kept: Vec<String>,
    /// Deleted, oldest first.
    pub pruned_deploys: Vec<String>,
    pub deleted_objects: usize,
}

/// What a rollback of one target can reach: see [`Publisher::reachable`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reachable {
    pub live: String,
    /// Where a plain rollback goes.
    pub previous: Option<String>,
    /// Complete deploys other than the live one, oldest first.
    pub kept: Vec<String>,
    /// Every deploy id under the target's prefix, complete or not.
    pub all: Vec<String>,
    /// Manifests looked for (one HeadObject each).
    pub manifests_checked: usize,
}

/// What a viewer gets for a path: see [`Publisher::resolve`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedObject {
    pub deploy_id: String,
    /// The site path served (`blog/index.html` for `/blog/`).
    pub path: String,
    pub key: String,
    pub content_type: String,
    pub cache_control: String,
    pub sha256: String,
    pub size: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("cannot read the built site at {path}: {source}")]
    Local {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a regular file or directory; a site holds only files")]
    NotAFile { path: PathBuf },
    #[error(
        "the build output is refused, the publisher follows no links: {}",
        list_refusals(refused)
    )]
    UnsafeOutput { refused: Vec<Refusal> },
    #[error("{path} has a name that is not UTF-8; S3 keys and URLs must be")]
    NonUtf8Path { path: PathBuf },
    #[error("the built site at {dir} has no files (did the build write elsewhere?)")]
    EmptySite { dir: PathBuf },
    #[error("S3 {operation} on s3://{bucket}/{key} failed: {message}")]
    S3 {
        operation: &'static str,
        bucket: String,
        key: String,
        message: String,
    },
    #[error("s3://{bucket}/{key} is not a valid {what}: {source}")]
    Corrupt {
        bucket: String,
        key: String,
        what: &'static str,
        source: serde_json::Error,
    },
    #[error("{target} has nothing live in bucket {bucket}")]
    NotLive { target: String, bucket: String },
    #[error("{target} has no earlier deploy to roll back to (live is {live})")]
    NoPrevious { target: String, live: String },
    #[error(
        "cannot roll {target} back to {deploy_id}: it is not a kept deploy of {target} (pruned, or never published); rollback can reach {}",
        list_or_none(reachable)
    )]
    NotKept {
        target: String,
        deploy_id: String,
        reachable: Vec<String>,
    },
    #[error(
        "{given:?} is not a deploy id (27 letters and digits, as `deployer site list` shows them)"
    )]
    NotADeployId { given: String },
    #[error("deploy {deploy_id} is already live on {target}; nothing was switched")]
    AlreadyLive { target: String, deploy_id: String },
    #[error("deployment {deployment} of {target} is superseded: the newer deployment {newer} has already switched {target} (to deploy {live}); nothing of this one was switched")]
    Superseded {
        target: String,
        deployment: String,
        newer: String,
        live: String,
    },
    #[error("the function's time ran out before deploy {deploy_id} of {target} was complete; it was deleted, nothing was switched")]
    OutOfTime { target: String, deploy_id: String },
    #[error("the live pointer s3://{bucket}/{key} changed while this {action} ran (a concurrent publish, rollback or removal of {target}); nothing was switched")]
    PointerMoved {
        action: &'static str,
        target: String,
        bucket: String,
        key: String,
    },
}

/// The result of [`Publisher::settle`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// The deploy is live: the interrupted publish had switched to it.
    Live(PublishOutcome),
    /// It had gone live, and something (a rollback) replaced it since.
    Replaced { live: String },
    /// It never went live; what it had uploaded is deleted.
    Discarded { deleted_objects: usize },
}

fn list_or_none(ids: &[String]) -> String {
    if ids.is_empty() {
        "no other deploy".to_owned()
    } else {
        ids.join(", ")
    }
}

enum Written {
    Unchanged(PublishOutcome),
    Deploy(Box<WrittenDeploy>),
}

/// A deploy written in full, not yet switched to.
struct WrittenDeploy {
    previous: Option<String>,
    /// The ETag of the pointer read, for the conditional switch.
    expected: Option<String>,
    /// What that pointer says about the newest deployment that switched it.
    newest_deployment: Option<String>,
    uploaded: usize,
    copied: usize,
    /// Paths live before that the new deploy no longer has.
    deleted: usize,
    bytes_uploaded: u64,
}

/// A publish whose switch lost to another publish tries again at most this
/// often (each loss means another deployment switched in between).
const MAX_SWITCHES: usize = 5;

/// The live pointer, when a newer deployment than `deployment` switched it.
fn superseding<'a>(
    live: Option<&'a LivePointer>,
    deployment: Option<&str>,
) -> Option<&'a LivePointer> {
    let (live, ours) = (live?, deployment?);
    let newest = live.newest_deployment.as_deref()?;
    (newest > ours).then_some(live)
}

/// One file of a new deploy: uploaded from disk or, when the live deploy
/// has the same bytes, copied inside S3 from `copy_from`. Owned, so the
/// publish future stays `Send` for the Lambda runtime.
struct Transfer {
    path: String,
    file: LocalFile,
    copy_from: Option<String>,
}

enum Transferred {
    Uploaded { bytes: u64 },
    Copied,
}

/// Publishes sites into one bucket.
#[derive(Debug, Clone)]
pub struct Publisher {
    s3: aws_sdk_s3::Client,
    bucket: String,
    /// Uploads at once.
    concurrency: usize,
    /// Copies inside S3 at once.
    copy_concurrency: usize,
}

impl Publisher {
    pub fn new(s3: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        Self {
            s3,
            bucket: bucket.into(),
            concurrency: DEFAULT_CONCURRENCY,
            copy_concurrency: DEFAULT_COPY_CONCURRENCY,
        }
    }

    /// Uploads and copies at once: `concurrency` of each.
    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self.copy_concurrency = self.concurrency;
        self
    }

    /// Copies inside S3 at once (uploads unchanged).
    pub fn with_copy_concurrency(mut self, copies: usize) -> Self {
        self.copy_concurrency = copies.max(1);
        self
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    fn s3_error<E, R>(
        &self,
        operation: &'static str,
        key: &str,
        err: SdkError<E, R>,
    ) -> PublishError
    where
        E: std::error::Error + 'static,
        R: fmt::Debug,
    {
        PublishError::S3 {
            operation,
            bucket: self.bucket.clone(),
            key: key.to_owned(),
            message: DisplayErrorContext(&err).to_string(),
        }
    }

    /// The object's bytes and ETag, or `None` if there is no such key.
    async fn get(&self, key: &str) -> Result<Option<(Vec<u8>, Option<String>)>, PublishError> {
        let output = match self
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(output) => output,
            Err(err) if err.as_service_error().is_some_and(|e| e.is_no_such_key()) => {
                return Ok(None)
            }
            Err(err) => return Err(self.s3_error("GetObject", key, err)),
        };
        let etag = output.e_tag().map(str::to_owned);
        let bytes = output
            .body
            .collect()
            .await
            .map_err(|err| PublishError::S3 {
                operation: "GetObject",
                bucket: self.bucket.clone(),
                key: key.to_owned(),
                message: format!("reading the body: {err}"),
            })?
            .into_bytes()
            .to_vec();
        Ok(Some((bytes, etag)))
    }

    fn decode<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
        what: &'static str,
        bytes: &[u8],
    ) -> Result<T, PublishError> {
        serde_json::from_slice(bytes).map_err(|source| PublishError::Corrupt {
            bucket: self.bucket.clone(),
            key: key.to_owned(),
            what,
            source,
        })
    }

    async fn read_pointer(
        &self,
        target: &PublishTarget,
    ) -> Result<Option<(LivePointer, Option<String>)>, PublishError> {
        let key = target.pointer_key();
        match self.get(&key).await? {
            Some((bytes, etag)) => Ok(Some((self.decode(&key, "live pointer", &bytes)?, etag))),
            None => Ok(None),
        }
    }

    /// The live deploy of `target`, if any.
    pub async fn live(&self, target: &PublishTarget) -> Result<Option<LivePointer>, PublishError> {
        Ok(self.read_pointer(target).await?.map(|(pointer, _)| pointer))
    }

    /// The live pointer, or `NotLive` when `target` has never been published.
    async fn require_live(&self, target: &PublishTarget) -> Result<LivePointer, PublishError> {
        self.live(target)
            .await?
            .ok_or_else(|| PublishError::NotLive {
                target: target.name(),
                bucket: self.bucket.clone(),
            })
    }

    async fn read_manifest(&self, key: &str) -> Result<Option<DeployManifest>, PublishError> {
        match self.get(key).await? {
            Some((bytes, _)) => Ok(Some(self.decode(key, "deploy manifest", &bytes)?)),
            None => Ok(None),
        }
    }

    /// The manifest of one deploy of `target`, if that deploy exists.
    pub async fn manifest(
        &self,
        target: &PublishTarget,
        deploy_id: &str,
    ) -> Result<Option<DeployManifest>, PublishError> {
        self.read_manifest(&target.manifest_key(deploy_id)).await
    }

    /// Writes the pointer only if it is still what this switch read
    /// (`expected` ETag, or absent), so two switches of one target cannot
    /// both win and silently lose each other's `previous`.
    async fn switch_pointer(
        &self,
        action: &'static str,
        target: &PublishTarget,
        pointer: &LivePointer,
        expected: Option<&str>,
    ) -> Result<(), PublishError> {
        let key = target.pointer_key();
        let body = serde_json::to_vec_pretty(pointer).expect("a pointer serialises");
        let put = self
            .s3
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .body(ByteStream::from(body))
            .content_type("application/json")
            .cache_control("no-store");
        let put = match expected {
            Some(etag) => put.if_match(etag),
            None => put.if_none_match("*"),
        };
        let err = match put.send().await {
            Ok(_) => return Ok(()),
            Err(err) => err,
        };
        let lost_race = match &err {
            // 412: the condition failed; 409: a concurrent conditional write
            // is in progress; 404: If-Match on a pointer someone deleted.
            SdkError::ServiceError(e) => matches!(e.raw().status().as_u16(), 404 | 409 | 412),
            _ => false,
        };
        if !lost_race {
            return Err(self.s3_error("PutObject", &key, err));
        }
        // The SDK retries a write whose answer got lost; the retry then fails
        // its condition against our own first attempt. That is a success.
        if let Some((current, _)) = self.read_pointer(target).await? {
            if current.deploy_id == pointer.deploy_id && current.switched_at == pointer.switched_at
            {
                return Ok(());
            }
        }
        Err(PublishError::PointerMoved {
            action,
            target: target.name(),
            bucket: self.bucket.clone(),
            key,
        })
    }

    /// Publishes the built site in `dir` as the new live deploy of `target`.
    ///
    /// Unchanged sites write nothing. Otherwise a new deploy is written in
    /// full (changed files uploaded, the rest copied from the live deploy),
    /// then its manifest, then the pointer. If anything fails before the
    /// switch, the live deploy stays live and the partial one is deleted.
    pub async fn publish(
        &self,
        target: &PublishTarget,
        dir: &Path,
    ) -> Result<PublishOutcome, PublishError> {
        self.publish_as(target, dir, &new_deploy_id(), None, None)
            .await
    }

    /// [`Self::publish`] as the deploy `deploy_id` (from [`new_deploy_id`],
    /// recorded by the caller beforehand so that whoever resumes an
    /// interrupted publish can tell whether it went live), writing until
    /// `until` at the latest: a deploy not complete by then is deleted and
    /// never switched to ([`PublishError::OutOfTime`]). The switch itself,
    /// one conditional write, is never cut short.
    ///
    /// `deployment` orders racing publishes of one target (deployment ids
    /// are KSUIDs: they sort by the time the deployment was recorded). The
    /// pointer keeps the newest deployment that ever switched it; a publish
    /// of an older one is [`PublishError::Superseded`] and never switches,
    /// and a newer one whose switch lost to an older one switches again
    /// over what that one put live.
    pub async fn publish_as(
        &self,
        target: &PublishTarget,
        dir: &Path,
        deploy_id: &str,
        deployment: Option<&str>,
        until: Option<tokio::time::Instant>,
    ) -> Result<PublishOutcome, PublishError> {
        let out_of_time = || PublishError::OutOfTime {
            target: target.name(),
            deploy_id: deploy_id.to_owned(),
        };
        let write = self.write_deploy(target, dir, deploy_id, deployment);
        let written = match until {
            Some(until) => match tokio::time::timeout_at(until, write).await {
                Ok(written) => written?,
                Err(_) => return Err(self.abandon(target, deploy_id, out_of_time()).await),
            },
            None => write.await?,
        };
        let written = match written {
            Written::Unchanged(outcome) => return Ok(outcome),
            Written::Deploy(written) => written,
        };
        if until.is_some_and(|until| tokio::time::Instant::now() >= until) {
            return Err(self.abandon(target, deploy_id, out_of_time()).await);
        }
        let WrittenDeploy {
            mut previous,
            mut expected,
            mut newest_deployment,
            uploaded,
            copied,
            deleted,
            bytes_uploaded,
        } = *written;

        info!(target = %target, deploy_id = %deploy_id, "deploy uploaded; switching the live pointer");
        let mut switches = 0;
        loop {
            switches += 1;
            let pointer = LivePointer {
                deploy_id: deploy_id.to_owned(),
                manifest_key: target.manifest_key(deploy_id),
                previous: previous.clone(),
                target: target.name(),
                switched_at: now_rfc3339(),
                switched_by: Switch::Publish,
                newest_deployment: deployment.map(str::to_owned).or(newest_deployment.clone()),
            };
            match self
                .switch_pointer("publish", target, &pointer, expected.as_deref())
                .await
            {
                Ok(()) => break,
                Err(err @ PublishError::PointerMoved { .. }) if switches < MAX_SWITCHES => {
                    // Who moved it? A newer deployment wins; anything else
                    // (an older deployment, a rollback, a removal) is
                    // switched over again.
                    let current = self.read_pointer(target).await?;
                    if let Some(newer) = superseding(current.as_ref().map(|(p, _)| p), deployment) {
                        let err = self.superseded(target, deployment, newer);
                        return Err(self.abandon(target, deploy_id, err).await);
                    }
                    info!(target = %target, deploy_id = %deploy_id, error = %err, "the live pointer moved under an older deployment's publish; switching again");
                    previous = current.as_ref().map(|(p, _)| p.deploy_id.clone());
                    newest_deployment = current
                        .as_ref()
                        .and_then(|(p, _)| p.newest_deployment.clone());
                    expected = current.and_then(|(_, etag)| etag);
                }
                Err(err @ PublishError::PointerMoved { .. }) => {
                    return Err(self.abandon(target, deploy_id, err).await)
                }
                // Whether the pointer moved is unknown, so the deploy may be
                // live: it stays. If it is not, `prune` collects it later.
                Err(err) => return Err(err),
            }
        }
        info!(
            target = %target,
            deploy_id = %deploy_id,
            previous = previous.as_deref().unwrap_or("none"),
            uploaded,
            copied,
            deleted,
            bytes_uploaded,
            switches,
            "live pointer switched"
        );
        Ok(PublishOutcome {
            target: target.clone(),
            deploy_id: deploy_id.to_owned(),
            previous,
            unchanged: false,
            uploaded,
            copied,
            deleted,
            bytes_uploaded,
        })
    }

    fn superseded(
        &self,
        target: &PublishTarget,
        deployment: Option<&str>,
        newer: &LivePointer,
    ) -> PublishError {
        PublishError::Superseded {
            target: target.name(),
            deployment: deployment.unwrap_or_default().to_owned(),
            newer: newer.newest_deployment.clone().unwrap_or_default(),
            live: newer.deploy_id.clone(),
        }
    }

    /// Everything of a publish before the switch: the deploy's files and
    /// manifest, or the finding that the site is what is live already.
    async fn write_deploy(
        &self,
        target: &PublishTarget,
        dir: &Path,
        deploy_id: &str,
        deployment: Option<&str>,
    ) -> Result<Written, PublishError> {
        // The local scan (hashing every file) and the two reads of what is
        // live (pointer, then its manifest) overlap: neither needs the other.
        let root = dir.to_path_buf();
        let scan = tokio::task::spawn_blocking(move || LocalSite::scan(&root));
        let read_live = async {
            let live = self.read_pointer(target).await?;
            let live_manifest = match &live {
                Some((pointer, _)) => {
                    let manifest = self.read_manifest(&pointer.manifest_key).await?;
                    if manifest.is_none() {
                        warn!(
                            target = %target,
                            deploy_id = %pointer.deploy_id,
                            key = %pointer.manifest_key,
                            "the live deploy has no manifest; uploading every file"
                        );
                    }
                    manifest
                }
                None => None,
            };
            Ok::<_, PublishError>((live, live_manifest))
        };
        let (site, read) = tokio::join!(scan, read_live);
        let site = site.expect("scanning the site does not panic")?;
        let (live, live_manifest) = read?;
        let files = site.entries();
        if let Some(newer) = superseding(live.as_ref().map(|(p, _)| p), deployment) {
            return Err(self.superseded(target, deployment, newer));
        }
        let previous = live.as_ref().map(|(pointer, _)| pointer.deploy_id.clone());
        if let Some(manifest) = &live_manifest {
            if manifest.files == files {
                let (pointer, _) = live.as_ref().expect("a manifest came from a pointer");
                info!(target = %target, deploy_id = %pointer.deploy_id, "site unchanged; nothing published");
                return Ok(Written::Unchanged(PublishOutcome {
                    target: target.clone(),
                    deploy_id: pointer.deploy_id.clone(),
                    previous: pointer.previous.clone(),
                    unchanged: true,
                    uploaded: 0,
                    copied: 0,
                    deleted: 0,
                    bytes_uploaded: 0,
                }));
            }
        }

        let live_files = live_manifest
            .as_ref()
            .map(|m| m.files.clone())
            .unwrap_or_default();
        let live_prefix = live_manifest
            .as_ref()
            .map(|m| target.deploy_prefix(&m.deploy_id));
        let transfers: Vec<Transfer> = site
            .files
            .into_iter()
            .map(|(path, file)| {
                let copy_from = match (&live_prefix, live_files.get(&path)) {
                    (Some(prefix), Some(old)) if old.sha256 == file.entry.sha256 => {
                        Some(format!("{prefix}{path}"))
                    }
                    _ => None,
                };
                Transfer {
                    path,
                    file,
                    copy_from,
                }
            })
            .collect();

        let new_prefix = target.deploy_prefix(deploy_id);
        info!(target = %target, deploy_id = %deploy_id, files = transfers.len(), "uploading the deploy");
        // Uploads and copies side by side, each at its own concurrency.
        let (copies, uploads): (Vec<Transfer>, Vec<Transfer>) = transfers
            .into_iter()
            .partition(|transfer| transfer.copy_from.is_some());
        let written = futures::future::try_join(
            self.transfer_all(&new_prefix, uploads, self.concurrency),
            self.transfer_all(&new_prefix, copies, self.copy_concurrency),
        )
        .await
        .map(|((u1, c1, b1), (u2, c2, b2))| (u1 + u2, c1 + c2, b1 + b2));
        let (uploaded, copied, bytes_uploaded) = match written {
            Ok(counts) => counts,
            Err(err) => return Err(self.abandon(target, deploy_id, err).await),
        };

        let deleted = live_files
            .keys()
            .filter(|path| !files.contains_key(*path))
            .count();
        let manifest = DeployManifest {
            deploy_id: deploy_id.to_owned(),
            target: target.name(),
            files,
        };
        if let Err(err) = self
            .put_manifest(&target.manifest_key(deploy_id), &manifest)
            .await
        {
            return Err(self.abandon(target, deploy_id, err).await);
        }
        let newest_deployment = live
            .as_ref()
            .and_then(|(pointer, _)| pointer.newest_deployment.clone());
        Ok(Written::Deploy(Box::new(WrittenDeploy {
            previous,
            expected: live.and_then(|(_, etag)| etag),
            newest_deployment,
            uploaded,
            copied,
            deleted,
            bytes_uploaded,
        })))
    }

    /// Settles a deploy that an interrupted publish (recorded as pending)
    /// may or may not have switched to. Live: reported as published; live before and replaced
    /// since: left as it is; never live: deleted, so nothing of it can ever
    /// be switched to.
    pub async fn settle(
        &self,
        target: &PublishTarget,
        deploy_id: &str,
    ) -> Result<Settled, PublishError> {
        let live = self.live(target).await?;
        match &live {
            Some(pointer) if pointer.deploy_id == deploy_id => {
                info!(target = %target, deploy_id = %deploy_id, "an interrupted publish had switched; it stands");
                Ok(Settled::Live(PublishOutcome {
                    target: target.clone(),
                    deploy_id: deploy_id.to_owned(),
                    previous: pointer.previous.clone(),
                    unchanged: false,
                    uploaded: 0,
                    copied: 0,
                    deleted: 0,
                    bytes_uploaded: 0,
                }))
            }
            Some(pointer) if pointer.previous.as_deref() == Some(deploy_id) => {
                info!(target = %target, deploy_id = %deploy_id, live = %pointer.deploy_id, "an interrupted publish had switched; replaced since");
                Ok(Settled::Replaced {
                    live: pointer.deploy_id.clone(),
                })
            }
            _ => {
                let deleted_objects = self.delete_prefix(&target.deploy_prefix(deploy_id)).await?;
                info!(target = %target, deploy_id = %deploy_id, deleted_objects, "an interrupted publish never switched; its partial deploy is deleted");
                Ok(Settled::Discarded { deleted_objects })
            }
        }
    }

    /// `transfers`, `concurrency` at once: (uploaded, copied, bytes uploaded).
    async fn transfer_all(
        &self,
        new_prefix: &str,
        transfers: Vec<Transfer>,
        concurrency: usize,
    ) -> Result<(usize, usize, u64), PublishError> {
        stream::iter(transfers)
            .map(|transfer| self.transfer(new_prefix, transfer))
            .buffer_unordered(concurrency)
            .try_fold(
                (0usize, 0usize, 0u64),
                |(uploaded, copied, bytes), done| async move {
                    Ok(match done {
                        Transferred::Uploaded { bytes: b } => (uploaded + 1, copied, bytes + b),
                        Transferred::Copied => (uploaded, copied + 1, bytes),
                    })
                },
            )
            .await
    }

    async fn transfer(
        &self,
        new_prefix: &str,
        transfer: Transfer,
    ) -> Result<Transferred, PublishError> {
        let Transfer {
            path,
            file,
            copy_from,
        } = transfer;
        let Some(from_key) = copy_from else {
            return self.upload(new_prefix, &path, &file).await;
        };
        let key = format!("{new_prefix}{path}");
        let copied = self
            .s3
            .copy_object()
            .bucket(&self.bucket)
            .key(&key)
            .copy_source(format!(
                "{}/{}",
                self.bucket,
                utf8_percent_encode(&from_key, PATH_SAFE)
            ))
            // Headers come from this deploy's rules, not the old object's.
            .metadata_directive(MetadataDirective::Replace)
            .content_type(&file.entry.content_type)
            .cache_control(&file.entry.cache_control)
            .send()
            .await;
        match copied {
            Ok(_) => Ok(Transferred::Copied),
            // The live deploy lost the file (removed or pruned under us):
            // the local copy is just as good.
            Err(err) if err.code() == Some("NoSuchKey") => {
                warn!(key = %from_key, "copy source is gone; uploading instead");
                self.upload(new_prefix, &path, &file).await
            }
            Err(err) => Err(self.s3_error("CopyObject", &key, err)),
        }
    }

    async fn upload(
        &self,
        new_prefix: &str,
        path: &str,
        file: &LocalFile,
    ) -> Result<Transferred, PublishError> {
        let key = format!("{new_prefix}{path}");
        // Streamed from disk: a large video does not have to fit in memory,
        // 32 of them even less.
        let body = ByteStream::from_path(&file.disk_path)
            .await
            .map_err(|err| PublishError::Local {
                path: file.disk_path.clone(),
                source: std::io::Error::other(err),
            })?;
        self.s3
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .body(body)
            .content_type(&file.entry.content_type)
            .cache_control(&file.entry.cache_control)
            // The algorithm too, not only the value: S3 accepts the value
            // alone, moto only reads it when the algorithm is named.
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .checksum_sha256(base64(&file.digest))
            .send()
            .await
            .map_err(|err| self.s3_error("PutObject", &key, err))?;
        Ok(Transferred::Uploaded {
            bytes: file.entry.size,
        })
    }

    async fn put_manifest(&self, key: &str, manifest: &DeployManifest) -> Result<(), PublishError> {
        let body = serde_json::to_vec(manifest).expect("a manifest serialises");
        self.s3
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(ByteStream::from(body))
            .content_type("application/json")
            .cache_control("no-store")
            .send()
            .await
            .map_err(|err| self.s3_error("PutObject", key, err))?;
        Ok(())
    }

    /// Deletes a deploy that will never be live, then hands back the error
    /// that stopped it. Best effort: leftovers are harmless (nothing points
    /// at them) and `prune` or `remove` collects them later.
    async fn abandon(
        &self,
        target: &PublishTarget,
        deploy_id: &str,
        err: PublishError,
    ) -> PublishError {
        let prefix = target.deploy_prefix(deploy_id);
        if let Err(cleanup) = self.delete_prefix(&prefix).await {
            warn!(prefix = %prefix, error = %cleanup, "could not delete an abandoned deploy");
        }
        err
    }

    /// Puts the previous deploy of `target` back live. Nothing is uploaded:
    /// the previous deploy's files never left. The deploy rolled back from
    /// becomes `previous`, so a second rollback undoes the first.
    pub async fn rollback(&self, target: &PublishTarget) -> Result<RollbackOutcome, PublishError> {
        self.rollback_to(target, None).await
    }

    /// Puts `to` (a kept deploy of `target`, see [`Self::reachable`]) back
    /// live, or the pointer's `previous` when `to` is `None`. The deploy
    /// rolled back from becomes `previous`, so a plain rollback undoes this
    /// one. Nothing is invalidated: the cache keys are per deploy (see the
    /// module's documentation), and the deploy's own never went stale.
    pub async fn rollback_to(
        &self,
        target: &PublishTarget,
        to: Option<&str>,
    ) -> Result<RollbackOutcome, PublishError> {
        let (live, etag) =
            self.read_pointer(target)
                .await?
                .ok_or_else(|| PublishError::NotLive {
                    target: target.name(),
                    bucket: self.bucket.clone(),
                })?;
        let wanted = match to {
            Some(to) => {
                if !is_deploy_id(to) {
                    return Err(PublishError::NotADeployId {
                        given: to.to_owned(),
                    });
                }
                if to == live.deploy_id {
                    return Err(PublishError::AlreadyLive {
                        target: target.name(),
                        deploy_id: live.deploy_id,
                    });
                }
                to.to_owned()
            }
            None => live
                .previous
                .clone()
                .ok_or_else(|| PublishError::NoPrevious {
                    target: target.name(),
                    live: live.deploy_id.clone(),
                })?,
        };
        let manifest_key = target.manifest_key(&wanted);
        if self.read_manifest(&manifest_key).await?.is_none() {
            let reachable = match self.reachable(target).await {
                Ok(reachable) => reachable.kept,
                Err(_) => Vec::new(),
            };
            return Err(PublishError::NotKept {
                target: target.name(),
                deploy_id: wanted,
                reachable,
            });
        }
        let pointer = LivePointer {
            deploy_id: wanted.clone(),
            manifest_key,
            previous: Some(live.deploy_id.clone()),
            target: target.name(),
            switched_at: now_rfc3339(),
            switched_by: Switch::Rollback,
            // A rollback does not make older builds newer: the newest
            // deployment that ever switched stays the one to beat.
            newest_deployment: live.newest_deployment.clone(),
        };
        self.switch_pointer("rollback", target, &pointer, etag.as_deref())
            .await?;
        info!(target = %target, from = %live.deploy_id, to = %wanted, "rolled back");
        Ok(RollbackOutcome {
            target: target.clone(),
            deploy_id: wanted,
            rolled_back_from: live.deploy_id,
        })
    }

    /// The deploys of `target` (ids, oldest first), from one listing of its
    /// prefix: complete or not.
    async fn deploy_ids(&self, target: &PublishTarget) -> Result<Vec<String>, PublishError> {
        let prefix = target.deploys_prefix();
        let mut ids = Vec::new();
        let mut pages = self
            .s3
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&prefix)
            .delimiter("/")
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|err| self.s3_error("ListObjectsV2", &prefix, err))?;
            ids.extend(page.common_prefixes().iter().filter_map(|common| {
                common
                    .prefix()
                    .and_then(|p| p.strip_prefix(prefix.as_str()))
                    .map(|p| p.trim_end_matches('/').to_owned())
            }));
        }
        ids.sort();
        Ok(ids)
    }

    async fn has_manifest(&self, target: &PublishTarget, id: &str) -> Result<bool, PublishError> {
        let key = target.manifest_key(id);
        match self
            .s3
            .head_object()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(err) if err.as_service_error().is_some_and(|e| e.is_not_found()) => Ok(false),
            Err(err) => Err(self.s3_error("HeadObject", &key, err)),
        }
    }

    /// What rollback can reach in `target` under the retention policy:
    /// the live deploy, the pointer's `previous`, and the `keep` newest
    /// other complete deploys (deploy ids are KSUIDs, so newest is largest).
    pub async fn reachable_keeping(
        &self,
        target: &PublishTarget,
        keep: usize,
    ) -> Result<Reachable, PublishError> {
        let live = self.require_live(target).await?;
        let ids = self.deploy_ids(target).await?;
        let mut kept = Vec::new();
        let mut looked_at = 0;
        for id in ids.iter().rev() {
            if kept.len() >= keep {
                break;
            }
            if *id == live.deploy_id {
                continue;
            }
            looked_at += 1;
            if is_deploy_id(id) && self.has_manifest(target, id).await? {
                kept.push(id.clone());
            }
        }
        if let Some(previous) = &live.previous {
            if !kept.contains(previous) && ids.contains(previous) {
                kept.push(previous.clone());
            }
        }
        kept.sort();
        Ok(Reachable {
            live: live.deploy_id,
            previous: live.previous,
            kept,
            all: ids,
            manifests_checked: looked_at,
        })
    }

    /// [`Self::reachable_keeping`] with every complete deploy kept: what a
    /// rollback can reach now (`deployer site list`).
    pub async fn reachable(&self, target: &PublishTarget) -> Result<Reachable, PublishError> {
        self.reachable_keeping(target, usize::MAX).await
    }

    /// Takes `target` down and deletes all its deploys (a closed PR's
    /// preview). The pointer goes first, so viewers stop resolving into the
    /// files before they disappear. Removing what is not there is a no-op,
    /// so a replayed "PR closed" event is harmless.
    ///
    /// A publish of the same target that is already uploading loses its
    /// switch (the pointer it read is gone) unless it read the pointer after
    /// the removal; callers must not publish a target they are removing.
    pub async fn remove(&self, target: &PublishTarget) -> Result<RemoveOutcome, PublishError> {
        let was_live = self.live(target).await?.map(|pointer| pointer.deploy_id);
        let key = target.pointer_key();
        self.s3
            .delete_object()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await
            .map_err(|err| self.s3_error("DeleteObject", &key, err))?;
        let deleted_objects = self.delete_prefix(&target.deploys_prefix()).await?;
        info!(target = %target, deleted_objects, "removed");
        Ok(RemoveOutcome {
            target: target.clone(),
            was_live,
            deleted_objects,
        })
    }

    /// Applies the retention policy to `target`: keeps the live deploy, the
    /// pointer's `previous` and the `keep` newest other complete deploys
    /// ([`Self::reachable_keeping`]); deletes every deploy older than the
    /// oldest one kept, oldest first. Deploys newer than that are never
    /// touched, complete or not: a publish still uploading (no manifest yet)
    /// is among them. Ids that are not KSUID-like are left alone.
    pub async fn prune(
        &self,
        target: &PublishTarget,
        keep: usize,
    ) -> Result<PruneOutcome, PublishError> {
        let reachable = self.reachable_keeping(target, keep).await?;
        let oldest_kept = reachable
            .kept
            .iter()
            .chain(std::iter::once(&reachable.live))
            .min()
            .cloned()
            .unwrap_or_default();
        let doomed: Vec<String> = reachable
            .all
            .iter()
            .filter(|id| is_deploy_id(id) && id.as_str() < oldest_kept.as_str())
            .cloned()
            .collect();
        let mut outcome = PruneOutcome {
            target: target.clone(),
            kept: reachable.kept,
            live: reachable.live,
            pruned_deploys: Vec::new(),
            deleted_objects: 0,
        };
        for id in doomed {
            // The manifest goes first: a deploy cut short here is
            // incomplete, and rollback never reaches an incomplete deploy.
            let manifest = target.manifest_key(&id);
            if self.has_manifest(target, &id).await? {
                self.s3
                    .delete_object()
                    .bucket(&self.bucket)
                    .key(&manifest)
                    .send()
                    .await
                    .map_err(|err| self.s3_error("DeleteObject", &manifest, err))?;
                outcome.deleted_objects += 1;
            }
            outcome.deleted_objects += self.delete_prefix(&target.deploy_prefix(&id)).await?;
            outcome.pruned_deploys.push(id);
        }
        Ok(outcome)
    }

    /// Deletes every object under `prefix`; returns how many there were.
    async fn delete_prefix(&self, prefix: &str) -> Result<usize, PublishError> {
        let mut deleted = 0;
        let mut pages = self
            .s3
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        // Pages hold at most 1,000 keys, which is also DeleteObjects' limit.
        while let Some(page) = pages.next().await {
            let page = page.map_err(|err| self.s3_error("ListObjectsV2", prefix, err))?;
            let objects: Vec<ObjectIdentifier> = page
                .contents()
                .iter()
                .filter_map(|object| object.key())
                .filter_map(|key| ObjectIdentifier::builder().key(key).build().ok())
                .collect();
            if objects.is_empty() {
                continue;
            }
            let count = objects.len();
            let delete = Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .expect("objects are set");
            let out = self
                .s3
                .delete_objects()
                .bucket(&self.bucket)
                .delete(delete)
                .send()
                .await
                .map_err(|err| self.s3_error("DeleteObjects", prefix, err))?;
            if let Some(failed) = out.errors().first() {
                return Err(PublishError::S3 {
                    operation: "DeleteObjects",
                    bucket: self.bucket.clone(),
                    key: failed.key().unwrap_or(prefix).to_owned(),
                    message: format!(
                        "{} of {count} objects not deleted, first: {} {}",
                        out.errors().len(),
                        failed.code().unwrap_or("?"),
                        failed.message().unwrap_or_default()
                    ),
                });
            }
            deleted += count;
        }
        Ok(deleted)
    }

    /// What a viewer of `target` gets for the URL path `request_path`
    /// (`/`, `/blog/`, `/_astro/app.3f9a1c2b.js`, percent-encoded as in a
    /// URL): read through the live pointer, with `/` and `/dir/` served
    /// from their `index.html`, and `/dir` too when only `dir/index.html`
    /// exists. `None` when the live deploy has no such file.
    pub async fn resolve(
        &self,
        target: &PublishTarget,
        request_path: &str,
    ) -> Result<Option<ResolvedObject>, PublishError> {
        let live = self.require_live(target).await?;
        // The manifest is written before the pointer names it; missing now
        // means the target was removed after the pointer was read.
        let Some(manifest) = self.read_manifest(&live.manifest_key).await? else {
            return Ok(None);
        };
        let Some(site_path) = site_path(request_path) else {
            return Ok(None);
        };
        let directory_index = format!("{site_path}/index.html");
        let found = manifest
            .files
            .get_key_value(&site_path)
            .or_else(|| manifest.files.get_key_value(&directory_index));
        Ok(found.map(|(path, entry)| ResolvedObject {
            deploy_id: live.deploy_id.clone(),
            path: path.clone(),
            key: format!("{}{path}", target.deploy_prefix(&live.deploy_id)),
            content_type: entry.content_type.clone(),
            cache_control: entry.cache_control.clone(),
            sha256: entry.sha256.clone(),
            size: entry.size,
        }))
    }
}

/// The site path a URL path asks for, or `None` if it cannot name one.
fn site_path(request_path: &str) -> Option<String> {
    let path = request_path.split(['?', '#']).next().unwrap_or_default();
    let decoded = percent_decode_str(path).decode_utf8().ok()?;
    let relative = decoded.trim_start_matches('/');
    if relative.is_empty() || relative.ends_with('/') {
        Some(format!("{relative}index.html"))
    } else {
        Some(relative.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn viewer_paths_map_to_site_files() {
        assert_eq!(site_path("/").as_deref(), Some("index.html"));
        assert_eq!(site_path("").as_deref(), Some("index.html"));
        assert_eq!(site_path("/blog/").as_deref(), Some("blog/index.html"));
        assert_eq!(
            site_path("/blog/post?ref=x#top").as_deref(),
            Some("blog/post")
        );
        assert_eq!(site_path("/%C3%BCber/").as_deref(), Some("über/index.html"));
        assert_eq!(site_path("/%FF"), None);
    }

    fn pointer(newest: Option<&str>) -> LivePointer {
        LivePointer {
            deploy_id: new_deploy_id(),
            manifest_key: String::new(),
            previous: None,
            target: "production".into(),
            switched_at: now_rfc3339(),
            switched_by: Switch::Publish,
            newest_deployment: newest.map(str::to_owned),
        }
    }

    #[test]
    fn only_a_newer_deployment_supersedes() {
        let (older, newer) = (new_deploy_id(), {
            std::thread::sleep(std::time::Duration::from_millis(10));
            new_deploy_id()
        });
        assert!(older < newer, "ids sort by the time they were made");
        let live = pointer(Some(&newer));
        assert!(superseding(Some(&live), Some(&older)).is_some());
        // The same deployment (a resumed attempt), a newer one, a pointer
        // from before the field, no pointer, no ordering: not superseded.
        assert!(superseding(Some(&live), Some(&newer)).is_none());
        assert!(superseding(Some(&pointer(Some(&older))), Some(&newer)).is_none());
        assert!(superseding(Some(&pointer(None)), Some(&older)).is_none());
        assert!(superseding(None, Some(&older)).is_none());
        assert!(superseding(Some(&live), None).is_none());
    }
}
