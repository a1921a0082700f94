//! Invoking the suite's functions from the command line.

use anyhow::Context;
use aws_sdk_lambda::primitives::Blob;

/// Invokes one of the suite's functions synchronously: its JSON answer, or the error message
/// it answered (`Ok(Err(_))`); `Err` when it could not be invoked.
pub async fn invoke(
    aws: &aws_config::SdkConfig,
    function: &str,
    payload: &serde_json::Value,
) -> anyhow::Result<Result<serde_json::Value, String>> {
    let out = aws_sdk_lambda::Client::new(aws)
        .invoke()
        .function_name(function)
        .payload(Blob::new(payload.to_string()))
        .send()
        .await
        .with_context(|| format!("invoking {function}"))?;
    let body = out
        .payload
        .map(|p| String::from_utf8_lossy(p.as_ref()).into_owned())
        .unwrap_or_default();
    if out.function_error.is_some() {
        let message = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["errorMessage"].as_str().map(str::to_owned))
            .unwrap_or(body);
        return Ok(Err(message));
    }
    Ok(Ok(
        serde_json::from_str(&body).context("the function's answer is not JSON")?
    ))
}
