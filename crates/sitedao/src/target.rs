//! Where a site is published, and where each target's objects live in the
//! site bucket (the layout is in site-build's `publish` module).

use std::fmt;

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

    /// `production`, `staging` or `preview/{slug}`: the target's part of every
    /// key, and the `pk` of its deployment records.
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
