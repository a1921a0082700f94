//! A deployment as its readers are shown it: what site-build answers a
//! direct invocation or a run with, and what `deployer site list --json`
//! prints for each deployment.

use serde::Serialize;

use crate::deployments::{Deployment, DeploymentStatus};

/// The fields of a [`Deployment`] that say what it is and how it went
/// (never its approval token's hash); optional ones are left out when the
/// record has none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeploymentSummary<'a> {
    pub deployment_id: &'a str,
    pub target: &'a str,
    pub environment: &'a str,
    pub branch: &'a str,
    pub status: DeploymentStatus,
    pub url: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deploy_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub superseded_by: Option<&'a str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub log_tail: &'a [String],
}

impl Deployment {
    /// This deployment as its readers are shown it.
    pub fn summary(&self) -> DeploymentSummary<'_> {
        DeploymentSummary {
            deployment_id: &self.id,
            target: &self.target,
            environment: &self.environment,
            branch: &self.branch,
            status: self.status,
            url: &self.url,
            commit: self.commit.as_deref(),
            deploy_id: self.deploy_id.as_deref(),
            error: self.error.as_deref(),
            superseded_by: self.superseded_by.as_deref(),
            log_tail: &self.log_tail,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::deployments::{DeploymentAction, DeploymentKey, NewDeployment};

    use super::*;

    fn queued() -> Deployment {
        Deployment::queued(NewDeployment {
            key: DeploymentKey {
                target: "preview/feature-x".into(),
                id: "2qAbcdefghijklmnopqrstuvwxy".into(),
            },
            site: "acme/site".into(),
            environment: "preview".into(),
            action: DeploymentAction::Build,
            branch: "feature/x".into(),
            url: "https://feature-x.preview.example.com/".into(),
            triggered_by: "ana".into(),
            origin: "github:push".into(),
            created_at: "2026-01-01T00:00:00Z".into(),
            expires_at: Some(1_767_225_600),
        })
    }

    #[test]
    fn a_summary_leaves_out_what_the_record_does_not_have() {
        assert_eq!(
            serde_json::to_value(queued().summary()).unwrap(),
            json!({
                "deployment_id": "2qAbcdefghijklmnopqrstuvwxy",
                "target": "preview/feature-x",
                "environment": "preview",
                "branch": "feature/x",
                "status": "QUEUED",
                "url": "https://feature-x.preview.example.com/",
            })
        );
    }

    #[test]
    fn a_summary_shows_the_commit_deploy_error_and_log_tail_when_there_are() {
        let mut record = queued();
        record.status = DeploymentStatus::Superseded;
        record.commit = Some("0123456789abcdef0123456789abcdef01234567".into());
        record.deploy_id = Some("2qDeployDeployDeployDeployD".into());
        record.error = Some("npm run build exited with 1".into());
        record.superseded_by = Some("2qNewerNewerNewerNewerNewer".into());
        record.log_tail = vec!["line 1".into(), "line 2".into()];
        record.approved_by = Some("not shown".into());
        assert_eq!(
            serde_json::to_value(record.summary()).unwrap(),
            json!({
                "deployment_id": "2qAbcdefghijklmnopqrstuvwxy",
                "target": "preview/feature-x",
                "environment": "preview",
                "branch": "feature/x",
                "status": "SUPERSEDED",
                "url": "https://feature-x.preview.example.com/",
                "commit": "0123456789abcdef0123456789abcdef01234567",
                "deploy_id": "2qDeployDeployDeployDeployD",
                "error": "npm run build exited with 1",
                "superseded_by": "2qNewerNewerNewerNewerNewer",
                "log_tail": ["line 1", "line 2"],
            })
        );
    }
}
