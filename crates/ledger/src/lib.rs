//! The deployment ledger.
//!
//! Every deployment Deployer makes is one [`Deployment`]: a stack build, an
//! ECS redeploy, a site publish, rollback or removal. Each kind is recorded
//! once, by the function doing the work, in its own table, and that record
//! *is* the ledger entry; nothing copies it:
//!
//! | kind    | record                         | written by                        |
//! |---------|--------------------------------|-----------------------------------|
//! | stack   | builds table (`builddao`)      | s3-trigger, state machine         |
//! | service | service deployments table (here)| ci-dispatch                      |
//! | site    | site deployments table         | site-build                        |
//!
//! Each table has a `ledger` index (the install's environment or site, then
//! the record's time-ordered `sk`), so all deployments of an install read
//! newest first without a scan. Readers turn records into [`Deployment`]s.

mod model;
mod service;
mod time_format;

pub use model::{Change, Deployment, Kind, Link, State, TargetRef};
pub use service::{
    short_task_definition, EndedRedeploy, LedgerError, RecordKey, ServiceDeployment,
    ServiceDeploymentStore, StartedRedeploy, FAILED, IN_PROGRESS, LEDGER_INDEX, SUCCESS,
};
pub use time_format::{now_rfc3339, parse_time, rfc3339, Timestamp};
