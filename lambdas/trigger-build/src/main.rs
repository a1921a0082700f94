use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = trigger_build::Config::from_env()?;
    let aws = aws_config::load_from_env().await;
    let builds =
        builddao::BuildStore::new(aws_sdk_dynamodb::Client::new(&aws), &config.builds_table);
    let orchestrator =
        orchestrator::Orchestrator::new(aws_sdk_sfn::Client::new(&aws), builds, config.policy);

    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        let orchestrator = &orchestrator;
        async move { Ok::<_, Error>(trigger_build::handle(orchestrator, event.payload).await) }
    }))
    .await
}
