use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where a build is in its life. `SUCCESS`, `FAILED` and `SUPERSEDED` are
/// terminal: nothing moves a build out of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BuildStatus {
    Pending,
    InProgress,
    AwaitingApproval,
    /// Held by a freeze window of its environment until the window ends or
    /// someone approves it (docs/state-machine.md, "Freeze windows").
    AwaitingWindow,
    Success,
    Failed,
    /// A newer build of the same stack started first; this one never deployed.
    Superseded,
}

impl BuildStatus {
    pub const ALL: [BuildStatus; 7] = [
        BuildStatus::Pending,
        BuildStatus::InProgress,
        BuildStatus::AwaitingApproval,
        BuildStatus::AwaitingWindow,
        BuildStatus::Success,
        BuildStatus::Failed,
        BuildStatus::Superseded,
    ];

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            BuildStatus::Success | BuildStatus::Failed | BuildStatus::Superseded
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            BuildStatus::Pending => "PENDING",
            BuildStatus::InProgress => "IN_PROGRESS",
            BuildStatus::AwaitingApproval => "AWAITING_APPROVAL",
            BuildStatus::AwaitingWindow => "AWAITING_WINDOW",
            BuildStatus::Success => "SUCCESS",
            BuildStatus::Failed => "FAILED",
            BuildStatus::Superseded => "SUPERSEDED",
        }
    }

    /// Statuses in which the build's execution waits on a task token that
    /// `deployer approve` answers (the token is the build's `approval_token`).
    pub fn awaits_a_person(self) -> bool {
        matches!(
            self,
            BuildStatus::AwaitingApproval | BuildStatus::AwaitingWindow
        )
    }

    /// Statuses a build may still leave.
    pub fn non_terminal() -> impl Iterator<Item = BuildStatus> {
        Self::ALL.into_iter().filter(|s| !s.is_terminal())
    }
}

impl fmt::Display for BuildStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`, not `write_str`: `{:<17}` must line columns up.
        f.pad(self.as_str())
    }
}

impl FromStr for BuildStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| format!("unknown build status {s:?}"))
    }
}

/// The primary key of a build record.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BuildKey {
    pub repo: String,
    pub env: String,
    /// Upload time, build number, upload digest (see [`crate::build_sk`]):
    /// "newest first" is a reverse key order. Builds stored before that
    /// format have a KSUID here, which sorts before every newer key.
    pub sk: String,
}

impl BuildKey {
    pub fn pk(&self) -> String {
        partition_key(&self.repo, &self.env)
    }
}

pub(crate) fn partition_key(repo: &str, env: &str) -> String {
    format!("{repo}/{env}")
}

/// A build as people name it: `{repo}/{env}/{sk}` (repo may itself hold no `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildId(pub BuildKey);

#[derive(Debug, thiserror::Error)]
#[error("build id {0:?} is not of the form REPO/ENV/BUILD_SK")]
pub struct InvalidBuildId(pub String);

impl FromStr for BuildId {
    type Err = InvalidBuildId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.rsplitn(3, '/');
        let (sk, env, repo) = (parts.next(), parts.next(), parts.next());
        match (repo, env, sk) {
            (Some(repo), Some(env), Some(sk))
                if !repo.is_empty() && !env.is_empty() && !sk.is_empty() =>
            {
                Ok(BuildId(BuildKey {
                    repo: repo.to_owned(),
                    env: env.to_owned(),
                    sk: sk.to_owned(),
                }))
            }
            _ => Err(InvalidBuildId(s.to_owned())),
        }
    }
}

impl fmt::Display for BuildId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.0.repo, self.0.env, self.0.sk)
    }
}

/// One build record as stored in the builds table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Build {
    pub pk: String,
    pub sk: String,
    pub repo: String,
    pub env: String,
    pub branch: String,
    pub version: String,
    pub build_number: u64,
    pub commit_hash: String,
    pub status: BuildStatus,
    pub stack_name: String,
    /// Bucket and key prefix (`{repo}/{branch}/{version}/`) of the artifacts.
    pub artifact_bucket: String,
    pub artifact_prefix: String,
    /// Base parameters merged with the environment override.
    #[serde(default)]
    pub parameters: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_msg: Option<String>,
    /// Set on SUCCESS when the change set held no changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_changes: Option<bool>,
    /// Short list of the changes awaiting approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_summary: Option<String>,
    /// Step Functions task token while the build awaits approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_token: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// Who uploaded the trigger file: the S3 event's
    /// `userIdentity.principalId` (absent on builds stored before it was kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uploaded_by: Option<String>,
    /// What the policy check warned about (WARN rules), one line each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policy_warnings: Vec<String>,
    /// Set when this build redeploys an earlier build's artifacts to undo
    /// another one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<Rollback>,
}

/// Why a build is a rollback, and of what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollback {
    /// The build being undone (the one that failed its bake, or the one
    /// deployed when someone asked for the rollback).
    pub of: String,
    /// The earlier build whose artifacts and parameters this one redeploys.
    pub to: String,
    /// Started by the state machine after a failed bake (true) or by a
    /// person with `deployer rollback` (false).
    pub automatic: bool,
    pub reason: String,
}

/// A build with its history: every status change, oldest first, as the
/// record's `transitions` list holds them. Each write that sets `status`
/// (this crate's and the state machine's) appends one entry in the same
/// write, so the history is never behind the status. Builds stored before
/// the history was kept have none.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackedBuild {
    pub build: Build,
    pub transitions: Vec<StatusChange>,
}

/// One entry of a build's history: what it became, when and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusChange {
    pub status: BuildStatus,
    /// RFC 3339, UTC (`…Z` from this crate and from Step Functions on AWS,
    /// `…+00:00` from the emulator's Step Functions).
    pub at: String,
    pub reason: String,
}

impl Build {
    pub fn key(&self) -> BuildKey {
        BuildKey {
            repo: self.repo.clone(),
            env: self.env.clone(),
            sk: self.sk.clone(),
        }
    }

    pub fn id(&self) -> BuildId {
        BuildId(self.key())
    }

    /// The first entry of a new build's history: PENDING since its upload.
    pub fn created_change(&self) -> StatusChange {
        let reason = match &self.rollback {
            Some(rollback) => format!(
                "rollback of build {} to build {} (version {}): {}",
                rollback.of, rollback.to, self.version, rollback.reason
            ),
            None => format!(
                "uploaded to s3://{}/{}",
                self.artifact_bucket, self.artifact_prefix
            ),
        };
        StatusChange {
            status: BuildStatus::Pending,
            at: self.created_at.clone(),
            reason,
        }
    }
}

/// What an artifact upload says about a build before it is stored.
#[derive(Debug, Clone, PartialEq)]
pub struct NewBuild {
    pub repo: String,
    pub env: String,
    pub branch: String,
    pub version: String,
    pub build_number: u64,
    pub commit_hash: String,
    pub artifact_bucket: String,
    pub artifact_prefix: String,
    pub parameters: BTreeMap<String, String>,
    /// When the trigger file was uploaded (the S3 event's `eventTime`), in
    /// Unix milliseconds: builds of a stack are ordered by it.
    pub uploaded_unix_ms: i64,
    /// Bytes that identify the upload: the same upload always yields the same
    /// build key, so a replayed notification cannot create a second build.
    pub origin: Vec<u8>,
    /// The uploader's principal, as the S3 event names it.
    pub uploaded_by: Option<String>,
}

impl NewBuild {
    /// Stack name the build deploys: `{env}-{repo}`.
    pub fn stack_name(&self) -> String {
        format!("{}-{}", self.env, self.repo)
    }

    /// Deterministic and ordered: upload time to the millisecond, then the
    /// build number, then a digest of the upload identity.
    pub fn sk(&self) -> String {
        crate::build_sk(self.uploaded_unix_ms, self.build_number, &self.origin)
    }

    pub fn into_build(self, now: String) -> Build {
        Build {
            pk: partition_key(&self.repo, &self.env),
            sk: self.sk(),
            stack_name: self.stack_name(),
            repo: self.repo,
            env: self.env,
            branch: self.branch,
            version: self.version,
            build_number: self.build_number,
            commit_hash: self.commit_hash,
            status: BuildStatus::Pending,
            artifact_bucket: self.artifact_bucket,
            artifact_prefix: self.artifact_prefix,
            parameters: self.parameters,
            execution_arn: None,
            error_msg: None,
            no_changes: None,
            change_summary: None,
            approval_token: None,
            created_at: now.clone(),
            updated_at: now,
            finished_at: None,
            uploaded_by: self.uploaded_by,
            policy_warnings: Vec::new(),
            rollback: None,
        }
    }
}

impl Build {
    /// A new PENDING build that redeploys `self`'s artifacts and parameters
    /// to undo `rollback.of`. Its key is newer than every build uploaded
    /// before `at_unix_ms` and depends only on its inputs, so asking twice
    /// for the same rollback at the same moment stores one build.
    pub fn rollback_build(
        &self,
        rollback: Rollback,
        requested_by: &str,
        at_unix_ms: i64,
        now: String,
    ) -> Build {
        let origin = format!("rollback:{}:{}:{}", rollback.of, rollback.to, at_unix_ms);
        let history = NewBuild {
            repo: self.repo.clone(),
            env: self.env.clone(),
            branch: self.branch.clone(),
            version: self.version.clone(),
            build_number: self.build_number,
            commit_hash: self.commit_hash.clone(),
            artifact_bucket: self.artifact_bucket.clone(),
            artifact_prefix: self.artifact_prefix.clone(),
            parameters: self.parameters.clone(),
            uploaded_unix_ms: at_unix_ms,
            origin: origin.into_bytes(),
            uploaded_by: Some(requested_by.to_owned()),
        };
        let mut build = history.into_build(now);
        build.rollback = Some(rollback);
        build
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_build(origin: &[u8], at_ms: i64) -> NewBuild {
        NewBuild {
            repo: "shop".into(),
            env: "dev".into(),
            branch: "main".into(),
            version: "1.abc".into(),
            build_number: 1,
            commit_hash: "abc".into(),
            artifact_bucket: "b".into(),
            artifact_prefix: "shop/main/1.abc/".into(),
            parameters: BTreeMap::new(),
            uploaded_unix_ms: at_ms,
            origin: origin.to_vec(),
            uploaded_by: None,
        }
    }

    #[test]
    fn same_upload_gives_same_key_and_a_millisecond_later_sorts_after() {
        let first = new_build(b"bucket/key/seq-1", 1_800_000_000_000);
        assert_eq!(
            first.sk(),
            new_build(b"bucket/key/seq-1", 1_800_000_000_000).sk()
        );
        let later = new_build(b"bucket/key/seq-0", 1_800_000_000_001);
        assert!(later.sk() > first.sk());
    }

    #[test]
    fn a_new_build_starts_its_history_pending_with_the_upload() {
        let build = new_build(b"x", 1_800_000_000_000).into_build("2027-01-15T08:00:00Z".into());
        assert_eq!(
            build.created_change(),
            StatusChange {
                status: BuildStatus::Pending,
                at: "2027-01-15T08:00:00Z".into(),
                reason: "uploaded to s3://b/shop/main/1.abc/".into(),
            }
        );
    }

    #[test]
    fn status_columns_honour_width() {
        assert_eq!(format!("[{:<9}]", BuildStatus::Failed), "[FAILED   ]");
    }

    #[test]
    fn build_id_round_trips_and_rejects_short_forms() {
        let id: BuildId = "shop/dev/2KqFQ6jRk1".parse().unwrap();
        assert_eq!(id.0.repo, "shop");
        assert_eq!(id.0.env, "dev");
        assert_eq!(id.to_string(), "shop/dev/2KqFQ6jRk1");
        assert!("shop/dev".parse::<BuildId>().is_err());
        assert!("/dev/x".parse::<BuildId>().is_err());
    }

    #[test]
    fn terminal_statuses_are_exactly_the_three_endings() {
        let terminal: Vec<_> = BuildStatus::ALL
            .into_iter()
            .filter(|s| s.is_terminal())
            .collect();
        assert_eq!(
            terminal,
            vec![
                BuildStatus::Success,
                BuildStatus::Failed,
                BuildStatus::Superseded
            ]
        );
        assert_eq!(
            "AWAITING_APPROVAL".parse::<BuildStatus>().unwrap(),
            BuildStatus::AwaitingApproval
        );
    }
}
