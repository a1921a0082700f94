//! Build records: the model, its status rules and the DynamoDB store.
//!
//! A build is keyed by `pk = {repo}/{env}` and an `sk` ordered by upload
//! time, then build number ([`build_sk`]), so one query returns a repo's
//! builds in an environment newest first. Every status change is a
//! conditional write that also appends to the build's `transitions`:
//! terminal statuses are never overwritten, and no change goes unrecorded.

mod model;
mod order;
mod store;

pub use model::{
    Build, BuildId, BuildKey, BuildStatus, InvalidBuildId, NewBuild, Rollback, StatusChange,
    TrackedBuild,
};
pub use order::{build_sk, is_build_sk, SK_MARKER};
pub use store::{
    deployed_sk, BuildPage, BuildStore, Created, StoreError, TrackedPage, Transition, LEDGER_INDEX,
};

/// An RFC 3339 time as UTC to the millisecond (`2026-11-23T10:00:00.123Z`):
/// one form for the times this crate writes (nanoseconds, `Z`) and those
/// Step Functions writes (`$$.State.EnteredTime`: milliseconds and `Z` on
/// AWS, microseconds and `+00:00` on the emulator). `None` if it is not
/// RFC 3339.
pub fn utc_millis(at: &str) -> Option<String> {
    use time::format_description::well_known::Rfc3339;
    let at = time::OffsetDateTime::parse(at, &Rfc3339).ok()?;
    at.to_offset(time::UtcOffset::UTC)
        .format(time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        ))
        .ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_from_every_writer_read_the_same() {
        for at in [
            "2026-11-23T03:55:07.237Z",
            "2026-11-23T03:55:07.237171+00:00",
            "2026-11-23T03:55:07.237171456Z",
            "2026-11-23T04:55:07.237+01:00",
        ] {
            assert_eq!(
                super::utc_millis(at).as_deref(),
                Some("2026-11-23T03:55:07.237Z"),
                "{at}"
            );
        }
        assert_eq!(super::utc_millis("yesterday"), None);
    }
}
