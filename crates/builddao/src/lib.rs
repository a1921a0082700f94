//! Build records: the model, its status rules and the DynamoDB store.
//!
//! A build is keyed by `pk = {repo}/{env}` and `sk = KSUID`, so one query
//! returns a repo's builds in an environment newest first. Every status change
//! is a conditional write: terminal statuses are never overwritten.

mod model;
mod store;

pub use model::{Build, BuildId, BuildKey, BuildStatus, InvalidBuildId, NewBuild};
pub use store::{BuildPage, BuildStore, Created, StoreError, Transition};

/// RFC 3339 timestamp of "now", the format every timestamp attribute uses
/// (Step Functions writes `$$.State.EnteredTime` in the same format).
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .expect("formatting the current UTC time as RFC 3339 cannot fail")
}
