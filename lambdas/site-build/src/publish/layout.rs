//! Where things live in the site bucket, and the two small JSON objects
//! that hold a target together: each deploy's manifest and the live pointer.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use svix_ksuid::{KsuidLike, KsuidMs};

use crate::slug::PreviewSlug;

/// Name of each deploy's manifest, inside the deploy's prefix. A site file of
/// the same name at the site root would be overwritten by it, so it is skipped.
pub const MANIFEST_NAME: &str = ".deploy-manifest.json";

/// Where a site is published.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PublishTarget {
    Production,
    Staging,
    Preview { slug: PreviewSlug },
}

impl PublishTarget {
    /// The preview of a branch.
    pub fn preview(branch: &str) -> Self {
        PublishTarget::Preview {
            slug: PreviewSlug::from_branch(branch),
        }
    }

    /// `production`, `staging` or `preview/{slug}`: the target's part of every key.
    pub fn name(&self) -> String {
        match self {
            PublishTarget::Production => "production".to_owned(),
            PublishTarget::Staging => "staging".to_owned(),
            PublishTarget::Preview { slug } => format!("preview/{slug}"),
        }
    }

    /// The pointer object naming the live deploy.
    pub fn pointer_key(&self) -> String {
        format!("live/{}.json", self.name())
    }

    /// The prefix holding every deploy of this target (with its trailing
    /// `/`, so preview `foo` never reaches into preview `foo-bar`).
    pub fn deploys_prefix(&self) -> String {
        format!("deploys/{}/", self.name())
    }

    pub fn deploy_prefix(&self, deploy_id: &str) -> String {
        format!("{}{deploy_id}/", self.deploys_prefix())
    }

    pub fn manifest_key(&self, deploy_id: &str) -> String {
        format!("{}{MANIFEST_NAME}", self.deploy_prefix(deploy_id))
    }
}

impl fmt::Display for PublishTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// One file of a deploy, as its manifest records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Lowercase hex.
    pub sha256: String,
    pub size: u64,
    pub content_type: String,
    pub cache_control: String,
}

/// Everything a deploy holds: site path (`/`-separated, no leading `/`) to file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployManifest {
    pub deploy_id: String,
    pub target: String,
    pub files: BTreeMap<String, ManifestEntry>,
}

/// What put a deploy live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Switch {
    Publish,
    Rollback,
}

/// The content of `live/{target}.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LivePointer {
    pub deploy_id: String,
    pub manifest_key: String,
    /// The deploy a rollback returns to; its files are still in place.
    pub previous: Option<String>,
    pub target: String,
    /// RFC 3339, UTC.
    pub switched_at: String,
    pub switched_by: Switch,
    /// The newest deployment (its KSUID id) whose publish ever switched this
    /// pointer; a rollback keeps it. A publish of an older deployment is
    /// superseded. Absent in pointers written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newest_deployment: Option<String>,
}

/// Unique, and sorting by the time it was made (to about 4 ms: a KSUID
/// whose first payload byte holds the fraction of the second).
pub(super) fn new_ksuid() -> String {
    KsuidMs::now(None).to_string()
}

pub(super) fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .expect("the current time formats as RFC 3339")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_lay_out_keys_under_their_name() {
        let preview = PublishTarget::preview("feature-login");
        assert_eq!(preview.name(), "preview/feature-login");
        assert_eq!(preview.pointer_key(), "live/preview/feature-login.json");
        assert_eq!(
            preview.manifest_key("2ABC"),
            "deploys/preview/feature-login/2ABC/.deploy-manifest.json"
        );
        assert_eq!(
            PublishTarget::Production.pointer_key(),
            "live/production.json"
        );
        assert_eq!(
            PublishTarget::Staging.deploy_prefix("X"),
            "deploys/staging/X/"
        );
    }
}
