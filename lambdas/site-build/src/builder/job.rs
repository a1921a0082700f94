//! What site-build sends the builder, and what comes back.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One build, as the builder's invocation payload.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BuildJob {
    /// `owner/name`, for the archive's checks and the log.
    pub repository: String,
    /// The commit the archive must be of.
    pub commit: String,
    /// Exported to the build as `PUBLIC_ENV`.
    pub environment: String,
    /// Presigned GET of the source archive (gzip-compressed tar).
    pub source_url: String,
    /// Presigned PUT for the built site (gzip-compressed tar).
    pub output_url: String,
    /// Unix time in milliseconds by which the report must be back.
    pub deadline_ms: u64,
}

/// The URLs are bearer credentials for one object each: never logged.
impl fmt::Debug for BuildJob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BuildJob")
            .field("repository", &self.repository)
            .field("commit", &self.commit)
            .field("environment", &self.environment)
            .field("source_url", &"<presigned>")
            .field("output_url", &"<presigned>")
            .field("deadline_ms", &self.deadline_ms)
            .finish()
    }
}

/// Where a build stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BuilderStep {
    /// Getting and unpacking the source archive.
    Source,
    /// `npm ci`
    Install,
    /// `npm run build`
    Build,
    /// Finding, checking and packing the built site.
    Output,
    /// Uploading the packed site.
    Upload,
}

impl fmt::Display for BuilderStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Source => "unpacking the source",
            Self::Install => "npm ci",
            Self::Build => "npm run build",
            Self::Output => "packing the built site",
            Self::Upload => "uploading the built site",
        })
    }
}

/// The builder's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum BuildReport {
    /// The site is at the job's output URL.
    Built {
        log_tail: Vec<String>,
        install_ms: u64,
        build_ms: u64,
        files: usize,
        bytes: u64,
    },
    /// Nothing was uploaded.
    Failed {
        step: BuilderStep,
        error: String,
        /// The deadline came first.
        #[serde(default)]
        out_of_time: bool,
        log_tail: Vec<String>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_urls_never_reach_a_log() {
        let job = BuildJob {
            repository: "acme/site".into(),
            commit: "abc1234".into(),
            environment: "preview".into(),
            source_url: "https://s3/x?X-Amz-Signature=secret1".into(),
            output_url: "https://s3/y?X-Amz-Signature=secret2".into(),
            deadline_ms: 1,
        };
        let shown = format!("{job:?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("acme/site"), "{shown}");
    }

    #[test]
    fn reports_read_back_as_written() {
        let failed = BuildReport::Failed {
            step: BuilderStep::Build,
            error: "npm run build failed: it exited with status 1".into(),
            out_of_time: false,
            log_tail: vec!["$ npm run build".into()],
        };
        let json = serde_json::to_value(&failed).unwrap();
        assert_eq!(json["outcome"], "failed");
        assert_eq!(json["step"], "build");
        assert_eq!(serde_json::from_value::<BuildReport>(json).unwrap(), failed);
    }
}
