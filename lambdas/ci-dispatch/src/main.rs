use std::time::Duration;

use aws_config::retry::RetryConfig;
use ci_dispatch::config::Config;
use ci_dispatch::memory::{Lease, Memory};
use ci_dispatch::Dispatcher;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use notify::{Notifier, TargetKind};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = Config::from_env()?;
    let aws = aws_config::load_from_env().await;
    // Throttling and 5xx are retried with exponential backoff and jitter by
    // the SDK's standard mode; other errors are not retried.
    let ecs_config = aws_sdk_ecs::config::Builder::from(&aws)
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(5)
                .with_initial_backoff(Duration::from_millis(200))
                .with_max_backoff(Duration::from_secs(5)),
        )
        .build();
    let ecs = aws_sdk_ecs::Client::from_conf(ecs_config);
    let dynamodb = aws_sdk_dynamodb::Client::new(&aws);
    let ssm = aws_sdk_ssm::Client::new(&aws);

    // The webhook URLs are read from SSM on the first notification, not
    // here: an invocation that sends nothing never reads them.
    let sources = [
        (TargetKind::Slack, config.slack_webhook.clone()),
        (TargetKind::Webhook, config.webhook.clone()),
    ]
    .into_iter()
    .filter_map(|(kind, source)| Some((kind, source?)))
    .collect();
    let dispatcher = Dispatcher {
        memory: Memory::new(
            dynamodb.clone(),
            &config.dispatch_table,
            config.dedupe_ttl_seconds,
        ),
        builds: config
            .builds_table
            .as_ref()
            .map(|table| builddao::BuildStore::new(dynamodb.clone(), table)),
        ledger: config
            .service_deployments_table
            .as_ref()
            .map(|table| ledger::ServiceDeploymentStore::new(dynamodb.clone(), table)),
        notifier: Notifier::from_secrets(sources, ssm),
        ecs,
        dynamodb,
        config,
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        let dispatcher = &dispatcher;
        // The claims this invocation takes are leased to it until its
        // deadline: its async retries keep the request id and take them over.
        let lease = Lease::for_invocation(&event.context.request_id, event.context.deadline);
        async move { dispatcher.handle(event.payload, &lease).await }
    }))
    .await
}
