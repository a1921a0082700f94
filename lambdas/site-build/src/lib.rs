//! `site-build`: static sites published per environment (production,
//! staging, a preview per branch) to S3 behind CloudFront.
//!
//! What is here is the publishing core; the Lambda handler (GitHub webhook
//! over a Function URL, direct invoke, email commands) is built on it:
//! - [`signature`]: GitHub's `X-Hub-Signature-256` over the raw body;
//! - [`slug`]: branch names to preview names that never collide;
//! - [`content`]: `Content-Type` and `Cache-Control` per file;
//! - [`publish`]: atomic deploys with a live pointer, rollback, removal.

pub mod content;
pub mod publish;
pub mod signature;
pub mod slug;
pub mod trigger;

pub use publish::{
    DeployManifest, DistributionId, InvalidationStatus, LivePointer, ManifestEntry, PruneOutcome,
    PublishError, PublishOutcome, PublishTarget, Publisher, RemoveOutcome, ResolvedObject,
    RollbackOutcome,
};
pub use signature::{SignatureError, WebhookSecret};
pub use slug::PreviewSlug;
