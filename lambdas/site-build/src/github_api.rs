//! The GitHub REST calls a deployment makes besides fetching the source:
//! the head commit of a branch (email and direct requests name only a
//! branch), and deployment statuses carrying the published URL.

use std::time::Duration;

use reqwest::header::ACCEPT;
use serde::Deserialize;
use serde_json::json;

use crate::build::source::USER_AGENT;
use crate::build::GitHubToken;
use crate::trigger::{Branch, Repository};

#[derive(Debug, thiserror::Error)]
pub enum GitHubApiError {
    #[error("GitHub {what} for {repository}: {source}")]
    Request {
        what: &'static str,
        repository: String,
        source: reqwest::Error,
    },
    #[error("GitHub {what} for {repository} answered {status}: {message}")]
    Status {
        what: &'static str,
        repository: String,
        status: u16,
        message: String,
    },
}

/// GitHub's states for a deployment status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeploymentState {
    InProgress,
    Success,
    Failure,
    Inactive,
}

impl DeploymentState {
    fn as_str(self) -> &'static str {
        match self {
            Self::InProgress => "in_progress",
            Self::Success => "success",
            Self::Failure => "failure",
            Self::Inactive => "inactive",
        }
    }
}

#[derive(Debug, Clone)]
pub struct GitHubApi {
    http: reqwest::Client,
    base: String,
    token: Option<GitHubToken>,
}

impl GitHubApi {
    pub fn new(base: &str, token: Option<GitHubToken>) -> Result<Self, reqwest::Error> {
        let http = notify::https::client_builder()
            .user_agent(USER_AGENT)
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(20))
            .build()?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token,
        })
    }

    /// Deployment statuses need a token; without one they are skipped.
    pub fn can_report(&self) -> bool {
        self.token.is_some()
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("X-GitHub-Api-Version", "2022-11-28");
        if let Some(token) = &self.token {
            request = request.header(reqwest::header::AUTHORIZATION, token.header());
        }
        request
    }

    async fn send(
        &self,
        what: &'static str,
        repository: &Repository,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, GitHubApiError> {
        let response = request
            .send()
            .await
            .map_err(|source| GitHubApiError::Request {
                what,
                repository: repository.to_string(),
                source: source.without_url(),
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
            .unwrap_or_else(|| body.chars().take(200).collect());
        Err(GitHubApiError::Status {
            what,
            repository: repository.to_string(),
            status: status.as_u16(),
            message,
        })
    }

    /// The commit a branch points at now.
    pub async fn branch_head(
        &self,
        repository: &Repository,
        branch: &Branch,
    ) -> Result<String, GitHubApiError> {
        let path = format!(
            "/repos/{}/{}/commits/{}",
            repository.owner(),
            repository.name(),
            percent_encoding::utf8_percent_encode(
                branch.as_str(),
                percent_encoding::NON_ALPHANUMERIC
            )
        );
        let request = self
            .request(reqwest::Method::GET, &path)
            .header(ACCEPT, "application/vnd.github.sha");
        let response = self.send("branch lookup", repository, request).await?;
        let sha = response
            .text()
            .await
            .map_err(|source| GitHubApiError::Request {
                what: "branch lookup",
                repository: repository.to_string(),
                source,
            })?;
        Ok(sha.trim().to_owned())
    }

    /// Creates a GitHub deployment of `commit` to `environment`; its id.
    pub async fn create_deployment(
        &self,
        repository: &Repository,
        commit: &str,
        environment: &str,
        production: bool,
    ) -> Result<u64, GitHubApiError> {
        #[derive(Deserialize)]
        struct Created {
            id: u64,
        }
        let path = format!(
            "/repos/{}/{}/deployments",
            repository.owner(),
            repository.name()
        );
        let request = self
            .request(reqwest::Method::POST, &path)
            .header(ACCEPT, "application/vnd.github+json")
            .json(&json!({
                "ref": commit,
                "environment": environment,
                "auto_merge": false,
                "required_contexts": [],
                "transient_environment": !production && environment != "staging",
                "production_environment": production,
                "description": "Deployer site-build",
            }));
        let response = self.send("deployment", repository, request).await?;
        let created: Created = response
            .json()
            .await
            .map_err(|source| GitHubApiError::Request {
                what: "deployment",
                repository: repository.to_string(),
                source,
            })?;
        Ok(created.id)
    }

    pub async fn deployment_status(
        &self,
        repository: &Repository,
        deployment_id: u64,
        state: DeploymentState,
        environment_url: Option<&str>,
        description: &str,
    ) -> Result<(), GitHubApiError> {
        let path = format!(
            "/repos/{}/{}/deployments/{deployment_id}/statuses",
            repository.owner(),
            repository.name()
        );
        let mut body = json!({
            "state": state.as_str(),
            "description": description.chars().take(140).collect::<String>(),
            "auto_inactive": true,
        });
        if let Some(url) = environment_url {
            body["environment_url"] = json!(url);
        }
        let request = self
            .request(reqwest::Method::POST, &path)
            .header(ACCEPT, "application/vnd.github+json")
            .json(&body);
        self.send("deployment status", repository, request).await?;
        Ok(())
    }
}
