//! The static site's records: its deployments and their DynamoDB store, as
//! `builddao` is for stack builds.
//!
//! site-build writes these records and the operator CLI (`deployer site`,
//! `deployer status`, the dashboard) reads and approves them; both use this
//! crate, so the CLI depends on no Lambda function's crate. What is here:
//! - the deployment records, their status rules and the store
//!   ([`DeploymentStore`]: one table, conditional status changes, delivery
//!   claims, the list of BUILDING deployments the sweep watches);
//! - the lease a BUILDING record holds ([`Lease`], [`SeenLease`], [`Phase`]);
//!   when an attempt may take over is site-build's to decide;
//! - where a site is published ([`PublishTarget`], with a branch's
//!   [`PreviewSlug`]) and the ids of its deploys ([`new_deploy_id`]);
//! - the key a delivery is claimed under ([`DedupeKey`]);
//! - a deployment as readers are shown it ([`DeploymentSummary`]).

mod dedupe;
mod deploy_id;
mod deployments;
mod lease;
mod slug;
mod summary;
mod target;

pub use dedupe::DedupeKey;
pub use deploy_id::{is_deploy_id, new_deploy_id};
pub use deployments::{
    now_epoch, Changes, Deployment, DeploymentAction, DeploymentKey, DeploymentStatus,
    DeploymentStore, NewDeployment, StatusChange, StoreError, Transition, BUILDING_INDEX_PK,
    CLAIM_TTL_SECONDS, LEDGER_INDEX,
};
pub use lease::{Lease, Phase, SeenLease};
pub use slug::{PreviewSlug, MAX_SLUG_LEN};
pub use summary::DeploymentSummary;
pub use target::{PublishTarget, MANIFEST_NAME};
