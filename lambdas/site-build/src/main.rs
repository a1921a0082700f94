//! The site-build Lambda: configuration and clients, once per cold start;
//! everything else is in the library ([`site_build::service`]).

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;
use site_build::build::{GitHubToken, SourceFetcher};
use site_build::config::SiteConfig;
use site_build::deployments::DeploymentStore;
use site_build::github_api::GitHubApi;
use site_build::lease::Invocation;
use site_build::service::SiteService;
use site_build::{Publisher, WebhookSecret};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = SiteConfig::from_env()?;
    let sdk = aws_config::load_from_env().await;
    let ssm = aws_sdk_ssm::Client::new(&sdk);

    // The three secrets in one GetParameters call.
    let [secret, token, slack] = notify::resolve_all(
        [
            Some(&config.github_secret),
            config.github_token.as_ref(),
            config.slack_webhook.as_ref(),
        ],
        &ssm,
    )
    .await?;
    let secret = secret.unwrap_or_default();
    let secret = WebhookSecret::new(secret).map_err(|_| "the GitHub webhook secret is empty")?;
    let token = match token {
        Some(token) => Some(GitHubToken::new(token).map_err(|e| format!("the GitHub token: {e}"))?),
        None => None,
    };
    let mut targets = Vec::new();
    if let Some(url) = slack {
        targets.push(notify::Target::Slack(notify::SecretUrl::new(url)?));
    }
    let publisher = Publisher::new(aws_sdk_s3::Client::new(&sdk), &config.bucket);
    let service = SiteService::new(
        config.clone(),
        DeploymentStore::new(aws_sdk_dynamodb::Client::new(&sdk), &config.table),
        publisher,
        SourceFetcher::new(&config.github_api_url, token.clone())?,
        GitHubApi::new(&config.github_api_url, token)?,
        secret,
        notify::Notifier::new(targets)?,
        &sdk,
        std::env::var("AWS_LAMBDA_FUNCTION_NAME")
            .map_err(|_| "AWS_LAMBDA_FUNCTION_NAME is not set (not running in Lambda?)")?,
    );
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        let service = &service;
        let invocation = Invocation::new(&event.context.request_id, event.context.deadline());
        async move {
            service
                .handle(event.payload, &invocation)
                .await
                .map_err(Error::from)
        }
    }))
    .await
}
