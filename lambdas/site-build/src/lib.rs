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
//! - [`content`]: `Content-Type` and `Cache-Control` per file;
//! - [`publish`]: atomic deploys with a live pointer, rollback, removal;
//! - [`lease`]: when a run may take a BUILDING deployment over, and how much
//!   time its steps may take.
//!
//! The records it writes (deployments, their leases and delivery claims),
//! the targets it publishes to and the deploy ids are the `sitedao` crate's,
//! shared with the operator CLI.

pub mod approval;
pub mod build;
pub mod builder;
pub mod config;
pub mod content;
pub mod github_api;
pub mod lease;
pub mod live_store;
pub mod publish;
pub mod service;
pub mod signature;
pub mod trigger;

pub use publish::{
    DeployManifest, LivePointer, ManifestEntry, PruneOutcome, PublishError, PublishOutcome,
    Publisher, Reachable, RemoveOutcome, ResolvedObject, RollbackOutcome, Settled,
};
pub use signature::{SignatureError, WebhookSecret};
