//! The two small JSON objects that hold a target together in the site
//! bucket: each deploy's manifest and the live pointer (where they live is
//! [`sitedao::PublishTarget`]'s).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

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
