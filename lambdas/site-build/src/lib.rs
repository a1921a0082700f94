//! `site-build`: static sites published per environment (production,
//! staging, a preview per branch) to S3 behind CloudFront.
//!
//! The function itself is [`service`]; the pieces it is built from:
//! - [`trigger`]: GitHub webhooks, SES email commands and direct invocations
//!   parsed into build requests whose origin decides the production gate;
//! - [`signature`]: GitHub's `X-Hub-Signature-256` over the raw body;
//! - [`build`]: the source at an exact commit (tarball, no git), `npm ci`,
//!   `npm run build`, the log tail;
//! - [`builder`]: the boundary: those steps run only in the `site-builder`
//!   function, whose role grants nothing;
//! - [`slug`]: branch names to preview names that never collide;
//! - [`content`]: `Content-Type` and `Cache-Control` per file;
//! - [`publish`]: atomic deploys with a live pointer, rollback, removal.

pub mod approval;
pub mod build;
pub mod builder;
pub mod config;
pub mod content;
pub mod deployments;
pub mod github_api;
pub mod lease;
pub mod live_store;
pub mod publish;
pub mod service;
pub mod signature;
pub mod slug;
pub mod trigger;

pub use publish::{
    is_deploy_id, DeployManifest, LivePointer, ManifestEntry, PruneOutcome, PublishError,
    PublishOutcome, PublishTarget, Publisher, Reachable, RemoveOutcome, ResolvedObject,
    RollbackOutcome, Settled,
};
pub use signature::{SignatureError, WebhookSecret};
pub use slug::PreviewSlug;
