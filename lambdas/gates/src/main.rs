use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = gates::Config::from_env()?;
    let aws = aws_config::load_from_env().await;
    let gates = gates::Gates::new(config, &aws);
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        let gates = &gates;
        async move { gates::handle(gates, event.payload).await }
    }))
    .await
}
