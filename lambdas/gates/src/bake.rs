//! The bake: after a stack update completes, the build stays IN_PROGRESS
//! while the stack's alarms are watched and its smoke check runs; SUCCESS
//! comes only when the bake passes (docs/state-machine.md, "Bake").
//!
//! What is watched, by convention:
//! - every `AWS::CloudWatch::Alarm` the stack declares, and alarms named
//!   with `BAKE_ALARM_PREFIX` (`{stack}` is the stack name);
//! - a stack output `SmokeCheckUrl`: GET, answered 2xx;
//! - a stack output `SmokeCheckFunction`: invoked, returning without a
//!   function error.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_cloudwatch::types::StateValue;
use aws_sdk_lambda::primitives::Blob;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{GateError, Gates};

pub const SMOKE_URL_OUTPUT: &str = "SmokeCheckUrl";
pub const SMOKE_FUNCTION_OUTPUT: &str = "SmokeCheckFunction";
/// How long a smoke check's GET may take.
pub const SMOKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Deserialize)]
pub struct PlanRequest {
    pub env: String,
    pub stack_name: String,
}

/// The bake the state machine runs (`$.bake`): `polls` checks,
/// `interval_seconds` apart. `polls = 0`: no bake.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct Plan {
    pub seconds: u64,
    pub interval_seconds: u64,
    pub polls: u64,
    pub alarms: Vec<String>,
    pub smoke_url: String,
    pub smoke_function: String,
    pub summary: String,
}

#[derive(Debug, Deserialize)]
pub struct CheckRequest {
    pub stack_name: String,
    #[serde(default)]
    pub alarms: Vec<String>,
    #[serde(default)]
    pub smoke_url: String,
    #[serde(default)]
    pub smoke_function: String,
}

/// One look at a baking stack (`$.bake_check`).
#[derive(Debug, Serialize, PartialEq)]
pub struct CheckAnswer {
    pub healthy: bool,
    /// Why not, e.g. `alarm dev-shop-Errors in ALARM`.
    pub reason: String,
}

pub async fn plan(gates: &Gates, request: &PlanRequest) -> Result<Plan, GateError> {
    let seconds = gates.config.bake_seconds_for(&request.env);
    if seconds == 0 {
        return Ok(Plan {
            seconds: 0,
            interval_seconds: gates.config.bake_interval_seconds,
            polls: 0,
            alarms: Vec::new(),
            smoke_url: String::new(),
            smoke_function: String::new(),
            summary: format!("no bake in environment {}", request.env),
        });
    }
    let interval_seconds = gates.config.bake_interval_seconds.min(seconds);
    let polls = seconds.div_ceil(interval_seconds);
    let alarms: Vec<String> = watched_alarms(gates, &request.stack_name)
        .await?
        .into_keys()
        .collect();
    let (smoke_url, smoke_function) = smoke_outputs(gates, &request.stack_name).await?;
    let mut watching = Vec::new();
    if !alarms.is_empty() {
        watching.push(format!("alarms {}", alarms.join(", ")));
    }
    if !smoke_url.is_empty() {
        watching.push(format!("smoke check GET {smoke_url}"));
    }
    if !smoke_function.is_empty() {
        watching.push(format!("smoke check function {smoke_function}"));
    }
    let summary = if watching.is_empty() {
        format!(
            "baking for {seconds} s: stack {} has no alarms and no smoke check to watch",
            request.stack_name
        )
    } else {
        format!("baking for {seconds} s, watching {}", watching.join("; "))
    };
    Ok(Plan {
        seconds,
        interval_seconds,
        polls,
        alarms,
        smoke_url,
        smoke_function,
        summary,
    })
}

/// The stack's own alarms and those named with the configured prefix: each
/// name with its ARN where the listing gave it (the prefixed ones).
pub async fn watched_alarms(
    gates: &Gates,
    stack_name: &str,
) -> Result<BTreeMap<String, Option<String>>, GateError> {
    let mut names = BTreeMap::new();
    let mut resources = gates
        .cloudformation
        .list_stack_resources()
        .stack_name(stack_name)
        .into_paginator()
        .send();
    while let Some(page) = resources.next().await {
        let page = match page {
            Ok(page) => page,
            Err(err) if crate::is_missing_stack(&err) => break,
            Err(err) => return Err(GateError::aws("ListStackResources", err)),
        };
        for resource in page.stack_resource_summaries() {
            if resource.resource_type() == Some("AWS::CloudWatch::Alarm") {
                if let Some(name) = resource.physical_resource_id().filter(|n| !n.is_empty()) {
                    names.insert(name.to_owned(), None);
                }
            }
        }
    }
    if let Some(prefix) = &gates.config.bake_alarm_prefix {
        let prefix = prefix.replace("{stack}", stack_name);
        let mut alarms = gates
            .cloudwatch
            .describe_alarms()
            .alarm_name_prefix(&prefix)
            .into_paginator()
            .send();
        while let Some(page) = alarms.next().await {
            let page = page.map_err(|err| GateError::aws("DescribeAlarms", err))?;
            for alarm in page.metric_alarms() {
                if let Some(name) = alarm.alarm_name() {
                    names.insert(name.to_owned(), alarm.alarm_arn().map(str::to_owned));
                }
            }
        }
    }
    Ok(names)
}

async fn smoke_outputs(gates: &Gates, stack_name: &str) -> Result<(String, String), GateError> {
    let described = gates
        .cloudformation
        .describe_stacks()
        .stack_name(stack_name)
        .send()
        .await
        .map_err(|err| GateError::aws("DescribeStacks", err))?;
    let mut url = String::new();
    let mut function = String::new();
    for output in described
        .stacks()
        .first()
        .map(|s| s.outputs())
        .unwrap_or_default()
    {
        match output.output_key() {
            Some(SMOKE_URL_OUTPUT) => url = output.output_value().unwrap_or_default().to_owned(),
            Some(SMOKE_FUNCTION_OUTPUT) => {
                function = output.output_value().unwrap_or_default().to_owned()
            }
            _ => {}
        }
    }
    Ok((url, function))
}

pub async fn check(gates: &Gates, request: &CheckRequest) -> Result<CheckAnswer, GateError> {
    if let Some(reason) = alarm_firing(gates, &request.alarms).await? {
        return Ok(unhealthy(reason));
    }
    if !request.smoke_url.is_empty() {
        if let Some(reason) = smoke_get(gates, &request.smoke_url).await {
            return Ok(unhealthy(reason));
        }
    }
    if !request.smoke_function.is_empty() {
        if let Some(reason) =
            smoke_invoke(gates, &request.smoke_function, &request.stack_name).await?
        {
            return Ok(unhealthy(reason));
        }
    }
    Ok(CheckAnswer {
        healthy: true,
        reason: String::new(),
    })
}

fn unhealthy(reason: String) -> CheckAnswer {
    CheckAnswer {
        healthy: false,
        reason,
    }
}

/// The first watched alarm in ALARM, as `alarm NAME in ALARM (reason)`.
async fn alarm_firing(gates: &Gates, alarms: &[String]) -> Result<Option<String>, GateError> {
    for chunk in alarms.chunks(100) {
        let described = gates
            .cloudwatch
            .describe_alarms()
            .set_alarm_names(Some(chunk.to_vec()))
            .state_value(StateValue::Alarm)
            .send()
            .await
            .map_err(|err| GateError::aws("DescribeAlarms", err))?;
        if let Some(alarm) = described
            .metric_alarms()
            .iter()
            .find(|a| a.state_value() == Some(&StateValue::Alarm))
        {
            let name = alarm.alarm_name().unwrap_or("?");
            return Ok(Some(match alarm.state_reason().filter(|r| !r.is_empty()) {
                Some(why) => format!("alarm {name} in ALARM ({why})"),
                None => format!("alarm {name} in ALARM"),
            }));
        }
    }
    Ok(None)
}

/// Whether `url` may be fetched: HTTPS, or plain HTTP to a loopback address
/// where the local stack allows it.
pub fn smoke_url_allowed(url: &reqwest::Url, http_loopback: bool) -> Result<(), String> {
    match url.scheme() {
        "https" => Ok(()),
        "http" if http_loopback && matches!(url.host_str(), Some("127.0.0.1" | "localhost")) => {
            Ok(())
        }
        other => Err(format!(
            "smoke check URL {url} must be https (scheme {other:?} is not allowed)"
        )),
    }
}

/// `None` when GET `url` answers 2xx; otherwise why not.
async fn smoke_get(gates: &Gates, url: &str) -> Option<String> {
    let parsed = match reqwest::Url::parse(url) {
        Ok(parsed) => parsed,
        Err(err) => return Some(format!("smoke check URL {url:?} is not a URL: {err}")),
    };
    if let Err(refused) = smoke_url_allowed(&parsed, gates.config.smoke_http_loopback) {
        return Some(refused);
    }
    let http = match gates.http() {
        Ok(http) => http,
        Err(err) => return Some(format!("smoke check GET {url}: no HTTP client: {err}")),
    };
    match http.get(parsed).send().await {
        Ok(response) if response.status().is_success() => None,
        Ok(response) => Some(format!(
            "smoke check GET {url} answered {}",
            response.status()
        )),
        Err(err) => Some(format!("smoke check GET {url} failed: {err}")),
    }
}

/// `None` when the function returns without a function error.
async fn smoke_invoke(
    gates: &Gates,
    function: &str,
    stack_name: &str,
) -> Result<Option<String>, GateError> {
    let payload = json!({"check": "smoke", "stack_name": stack_name});
    let answer = gates
        .lambda
        .invoke()
        .function_name(function)
        .payload(Blob::new(payload.to_string()))
        .send()
        .await;
    match answer {
        Ok(out) => Ok(out.function_error().map(|kind| {
            let body = out
                .payload()
                .map(|p| String::from_utf8_lossy(p.as_ref()).into_owned())
                .unwrap_or_default();
            format!("smoke check function {function} failed ({kind}): {body}")
        })),
        Err(err) => {
            let status = err.raw_response().map(|r| r.status().as_u16());
            match status {
                // The function cannot be invoked at all: a failed check,
                // not a reason to retry.
                Some(400..=499) => Ok(Some(format!(
                    "smoke check function {function} could not be invoked: {}",
                    aws_sdk_lambda::error::DisplayErrorContext(&err)
                ))),
                _ => Err(GateError::aws("Invoke", err)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smoke_urls_must_be_https_except_local_loopback() {
        let url = |s: &str| reqwest::Url::parse(s).unwrap();
        assert!(smoke_url_allowed(&url("https://api.example.com/health"), false).is_ok());
        let refused = smoke_url_allowed(&url("http://api.example.com/health"), true).unwrap_err();
        assert!(refused.contains("must be https"), "{refused}");
        assert!(smoke_url_allowed(&url("http://127.0.0.1:9/health"), false).is_err());
        assert!(smoke_url_allowed(&url("http://127.0.0.1:9/health"), true).is_ok());
        assert!(smoke_url_allowed(&url("file:///etc/passwd"), true).is_err());
    }
}
