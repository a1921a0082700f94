//! What the function's secrets make: the webhook secret, the GitHub clients
//! (with the token) and the notifier (with the Slack URL). They are read
//! by the first invocation that needs one of them, in one GetParameters
//! call, and kept for the life of the process; an invocation that needs
//! none (a `deploys` or `rollback` request, a sweep) never reads them.
//! A failed read is not kept: the next invocation reads again.

use crate::build::{GitHubToken, SourceFetcher};
use crate::config::SiteConfig;
use crate::github_api::GitHubApi;
use crate::WebhookSecret;

use super::{ServiceError, SiteService};

pub struct Secured {
    pub secret: WebhookSecret,
    pub fetcher: SourceFetcher,
    pub github: GitHubApi,
    pub notifier: notify::Notifier,
}

impl Secured {
    async fn read(config: &SiteConfig, ssm: &aws_sdk_ssm::Client) -> Result<Self, String> {
        let [secret, token, slack] = notify::resolve_all(
            [
                Some(&config.github_secret),
                config.github_token.as_ref(),
                config.slack_webhook.as_ref(),
            ],
            ssm,
        )
        .await
        .map_err(|e| e.to_string())?;
        let secret = WebhookSecret::new(secret.unwrap_or_default())
            .map_err(|_| "the GitHub webhook secret is empty".to_owned())?;
        let token = token
            .map(GitHubToken::new)
            .transpose()
            .map_err(|e| format!("the GitHub token: {e}"))?;
        let mut targets = Vec::new();
        if let Some(url) = slack {
            let url = notify::SecretUrl::new(url).map_err(|e| format!("the Slack webhook: {e}"))?;
            targets.push(notify::Target::Slack(url));
        }
        Ok(Self {
            secret,
            fetcher: SourceFetcher::new(&config.github_api_url, token.clone())
                .map_err(|e| e.to_string())?,
            github: GitHubApi::new(&config.github_api_url, token)
                .map_err(|e| format!("the GitHub API client: {e}"))?,
            notifier: notify::Notifier::new(targets),
        })
    }
}

impl SiteService {
    /// The secrets and what they make, read on first use.
    pub(super) async fn secured(&self) -> Result<&Secured, ServiceError> {
        self.secured
            .get_or_try_init(|| Secured::read(&self.config, &self.ssm))
            .await
            .map_err(ServiceError::Secrets)
    }

    /// The GitHub API client for reporting, or `None` (logged) when the
    /// token cannot be read: reporting never stops a deployment.
    pub(super) async fn github(&self) -> Option<&GitHubApi> {
        match self.secured().await {
            Ok(secured) => Some(&secured.github),
            Err(e) => {
                tracing::warn!(error = %e, "not reported to GitHub");
                None
            }
        }
    }
}
