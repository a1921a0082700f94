//! Building a site: its source at one commit, then its npm build.
//!
//! - [`source`]: the repository at an exact commit, as GitHub's tarball,
//!   unpacked into a fresh work directory (no git needed, none in Lambda);
//! - [`npm`]: `npm ci` with a cache shared between builds, `npm run build`
//!   with `PUBLIC_ENV` exported, the output folder found, the log's tail kept.
//!
//! Neither touches what is live: a failed build ends here with its log
//! tail, and only a built site goes on to [`crate::publish`].

mod extract;
pub mod npm;
pub mod source;
mod tail;

pub use extract::ArchiveError;
pub use npm::{
    BuildFailure, BuildStep, BuiltSite, FailureCause, NpmBuilder, NpmSession, StepDurations,
    DEFAULT_STEP_TIMEOUT, OUTPUT_DIRS,
};
pub use source::{
    GitHubToken, InvalidToken, SourceError, SourceFetcher, SourceTree, DEFAULT_API_BASE,
    DEFAULT_FETCH_TIMEOUT, DEFAULT_MAX_SOURCE_BYTES,
};
pub use tail::DEFAULT_TAIL_LINES;
