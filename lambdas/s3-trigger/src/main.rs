use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = s3_trigger::Config::from_env()?;
    let aws = aws_config::load_from_env().await;
    let s3 = aws_sdk_s3::Client::new(&aws);
    let builds =
        builddao::BuildStore::new(aws_sdk_dynamodb::Client::new(&aws), &config.builds_table);

    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        let (config, s3, builds) = (&config, &s3, &builds);
        async move { s3_trigger::handle(config, s3, builds, event.payload).await }
    }))
    .await
}
