//! The lease a BUILDING deployment record holds: who runs its current
//! attempt, until when, and the step that attempt is in.
//!
//! These are the values the records store and every lease-guarded write of
//! [`crate::DeploymentStore`] is conditional on. What an invocation does
//! with them (when it may take a deployment over, when an interrupted one
//! ends FAILED, how long its steps may take) is site-build's `lease` module.

use std::fmt;

/// The claim of one attempt on a BUILDING record. Every write of that
/// attempt is conditional on it, so an attempt that lost its lease cannot
/// change the record (or publish) any more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The request id of the invocation running the attempt.
    pub holder: String,
    /// Epoch seconds.
    pub expires_at: i64,
    pub attempt: u32,
}

impl Lease {
    /// This lease as a record shows it.
    pub fn seen(&self) -> SeenLease {
        SeenLease {
            holder: Some(self.holder.clone()),
            attempt: self.attempt,
        }
    }
}

/// The lease a record shows, as read: what a takeover is conditional on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenLease {
    /// `None` for a record written before leases existed.
    pub holder: Option<String>,
    pub attempt: u32,
}

/// A step of a build, as recorded in `phase` while it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Starting,
    Fetch,
    /// In the builder function: unpack, `npm ci`, `npm run build`, pack.
    Build,
    Publish,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "setup",
            Self::Fetch => "the source fetch",
            Self::Build => "the build",
            Self::Publish => "the publish",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
