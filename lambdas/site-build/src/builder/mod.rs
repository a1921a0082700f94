//! The build boundary: repository code runs only in the builder.
//!
//! `npm ci` runs the install scripts of every dependency and `npm run
//! build` runs the repository's own; both are untrusted. So site-build,
//! which holds the deploy role, the webhook secret and the GitHub token,
//! never executes them. It hands each build to `site-builder`, a function
//! of its own whose role grants nothing:
//!
//! 1. site-build fetches the source with its token ([`crate::build::SourceFetcher::archive`]),
//!    stores it under `builds/` in the site bucket, and invokes the builder
//!    with a [`BuildJob`]: a presigned GET of that archive, a presigned PUT
//!    for the output, and a deadline;
//! 2. the builder ([`isolated::IsolatedBuilder`]), a process its builds
//!    cannot read ([`isolated::seal_process`]), empties its scratch
//!    folder, stops whatever an earlier build left running, unpacks, runs
//!    npm with a fresh cache and home, stops everything again, packs the
//!    output (files and folders only, [`handoff::pack_site`]) and PUTs it;
//! 3. site-build ([`remote::RemoteBuilder`]) reads that archive as hostile
//!    data ([`handoff::unpack_site`]) and publishes it.
//!
//! The builder's report ([`BuildReport`]) is just as untrusted: it decides
//! only what the build record says about a failure, never what is
//! published or where.

pub mod handoff;
pub mod isolated;
pub mod job;
pub mod remote;

pub use handoff::{pack_site, unpack_site, HandoffError, PackedSite};
pub use isolated::{seal_process, IsolatedBuilder};
pub use job::{BuildJob, BuildReport, BuilderStep};
pub use remote::{RemoteBuildError, RemoteBuilder, RemoteBuilt};
