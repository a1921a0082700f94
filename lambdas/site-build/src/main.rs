//! The site-build Lambda: configuration and AWS clients, once per cold
//! start (the secrets when first needed); everything else is in the
//! library ([`site_build::service`]).

// The handler's future nests every door's; its layout needs more than the
// default 128 query levels.
#![recursion_limit = "256"]

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;
use site_build::config::SiteConfig;
use site_build::lease::Invocation;
use site_build::service::SiteService;
use sitedao::DeploymentStore;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = SiteConfig::from_env()?;
    let sdk = aws_config::load_from_env().await;
    let service = SiteService::new(
        config.clone(),
        DeploymentStore::new(aws_sdk_dynamodb::Client::new(&sdk), &config.table),
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
