//! The baseline every function's cold start is compared with: the same
//! runtime, the same SDK config and clients, built the same way, and a
//! handler that does nothing.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::{json, Value};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let aws = aws_config::load_from_env().await;
    let clients = (
        aws_sdk_s3::Client::new(&aws),
        aws_sdk_dynamodb::Client::new(&aws),
        aws_sdk_sfn::Client::new(&aws),
    );
    lambda_runtime::run(service_fn(|_event: LambdaEvent<Value>| {
        let _clients = &clients;
        async move { Ok::<_, Error>(json!({"ok": true})) }
    }))
    .await
}
