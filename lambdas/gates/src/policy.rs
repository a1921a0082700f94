//! Policy before deploy: the build's template, with its parameters, is
//! checked with CloudFormation Guard ([`policy`]) before any change set
//! exists (docs/state-machine.md, "Policy"; docs/policy.md).
//!
//! Rules: the defaults built into this function, extended or replaced by
//! the operator's files `_deployer/policy/{env}/NAME.guard` (FAIL) and
//! `NAME.warn.guard` (WARN) in the artifact bucket.
//!
//! The same answer also carries the alarms CloudFormation watches while it
//! executes the change set (its rollback triggers).

use std::collections::BTreeMap;

use builddao::{BuildKey, Transition};
use serde::{Deserialize, Serialize};

use crate::config::policy_prefix;
use crate::{GateError, Gates};

/// CloudFormation takes at most five rollback triggers.
pub const MAX_ROLLBACK_TRIGGERS: usize = 5;
/// CloudFormation reads templates of up to 1 MB from S3.
const MAX_TEMPLATE_BYTES: usize = 1024 * 1024;

#[derive(Debug, Deserialize)]
pub struct PolicyRequest {
    pub build: crate::rollback::KeyInput,
    pub repo: String,
    pub env: String,
    pub stack_name: String,
    pub template: TemplateLocation,
    #[serde(default)]
    pub parameters: Vec<Parameter>,
    #[serde(default)]
    pub automatic_rollback: bool,
    /// `$$.State.EnteredTime`, for the history entry.
    pub at: String,
}

#[derive(Debug, Deserialize)]
pub struct TemplateLocation {
    pub bucket: String,
    pub key: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Parameter {
    pub parameter_key: String,
    pub parameter_value: String,
}

/// What the state machine branches on (`$.policy`).
#[derive(Debug, Serialize, PartialEq)]
pub struct PolicyAnswer {
    pub passed: bool,
    /// The build's error when it did not pass.
    pub failure: String,
    pub warnings: Vec<String>,
    /// One line for the history and the approval request.
    pub summary: String,
    /// CreateChangeSet's `RollbackConfiguration.RollbackTriggers`.
    pub rollback_triggers: Vec<RollbackTrigger>,
}

#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct RollbackTrigger {
    pub arn: String,
    pub r#type: String,
}

pub async fn check(gates: &Gates, request: &PolicyRequest) -> Result<PolicyAnswer, GateError> {
    let rollback_triggers = rollback_triggers(gates, &request.stack_name).await?;
    if request.automatic_rollback {
        return Ok(PolicyAnswer {
            passed: true,
            failure: String::new(),
            warnings: Vec::new(),
            summary:
                "policy not checked: an automatic rollback redeploys a build that deployed before"
                    .to_owned(),
            rollback_triggers,
        });
    }
    let template = read_template(gates, &request.template).await?;
    let operator = operator_rules(gates, &request.env).await?;
    let operator_names: Vec<String> = operator.iter().map(|r| r.file_name()).collect();
    let rules = policy::merge(policy::default_rules(), operator);
    let parameters: BTreeMap<String, String> = request
        .parameters
        .iter()
        .map(|p| (p.parameter_key.clone(), p.parameter_value.clone()))
        .collect();
    let report = match policy::check(&template, &parameters, &rules) {
        Ok(report) => report,
        // The template or an operator's rule file is broken: nothing is
        // deployed unchecked.
        Err(err) => {
            return Ok(PolicyAnswer {
                passed: false,
                failure: format!("policy check failed: {err}"),
                warnings: Vec::new(),
                summary: String::new(),
                rollback_triggers,
            })
        }
    };
    let warnings: Vec<String> = report.warnings.iter().map(|f| f.describe()).collect();
    let rule_count = rules.len();
    let from = if operator_names.is_empty() {
        format!("{rule_count} rule files, the defaults")
    } else {
        format!(
            "{rule_count} rule files, with {} from _deployer/policy/{}/",
            operator_names.join(", "),
            request.env
        )
    };
    if !report.passed() {
        let failures: Vec<String> = report.failures.iter().map(|f| f.describe()).collect();
        return Ok(PolicyAnswer {
            passed: false,
            failure: format!("policy: {}", failures.join("; ")),
            warnings,
            summary: String::new(),
            rollback_triggers,
        });
    }
    let summary = if warnings.is_empty() {
        format!("policy passed ({from})")
    } else {
        format!(
            "policy passed with {} warning(s) ({from}): {}",
            warnings.len(),
            warnings.join("; ")
        )
    };
    let key = BuildKey {
        repo: request.repo.clone(),
        env: request.env.clone(),
        sk: request.build.sk.clone(),
    };
    // Warnings are recorded on the build and in its history; a clean pass
    // leaves the history as it was (the summary still goes to approvers).
    if !warnings.is_empty() {
        match gates
            .builds
            .record_policy(&key, &warnings, &summary, &request.at)
            .await
            .map_err(GateError::store)?
        {
            Transition::Applied => {}
            // Recorded by an earlier try of this same request.
            Transition::Refused { .. } => {}
        }
    }
    Ok(PolicyAnswer {
        passed: true,
        failure: String::new(),
        warnings,
        summary,
        rollback_triggers,
    })
}

async fn read_template(gates: &Gates, at: &TemplateLocation) -> Result<String, GateError> {
    let bytes = object_bytes(gates, &at.bucket, &at.key, "GetObject (template)").await?;
    if bytes.len() > MAX_TEMPLATE_BYTES {
        return Err(GateError::Invalid(format!(
            "template s3://{}/{} is {} bytes; CloudFormation takes at most {MAX_TEMPLATE_BYTES}",
            at.bucket,
            at.key,
            bytes.len()
        )));
    }
    String::from_utf8(bytes.to_vec()).map_err(|_| {
        GateError::Invalid(format!(
            "template s3://{}/{} is not UTF-8 text",
            at.bucket, at.key
        ))
    })
}

/// One S3 object's content.
async fn object_bytes(
    gates: &Gates,
    bucket: &str,
    key: &str,
    operation: &'static str,
) -> Result<Vec<u8>, GateError> {
    let object = gates
        .s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|err| GateError::aws(operation, err))?;
    Ok(object
        .body
        .collect()
        .await
        .map_err(|err| GateError::Unavailable {
            operation,
            message: err.to_string(),
        })?
        .to_vec())
}

/// The operator's rule files for `env`: every `*.guard` object under the
/// environment's policy prefix.
async fn operator_rules(gates: &Gates, env: &str) -> Result<Vec<policy::RuleFile>, GateError> {
    let prefix = policy_prefix(env);
    let mut keys = Vec::new();
    let mut pages = gates
        .s3
        .list_objects_v2()
        .bucket(&gates.config.artifact_bucket)
        .prefix(&prefix)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|err| GateError::aws("ListObjectsV2 (policy rules)", err))?;
        for object in page.contents() {
            if let Some(key) = object.key().filter(|k| k.ends_with(".guard")) {
                keys.push(key.to_owned());
            }
        }
    }
    let mut rules = Vec::with_capacity(keys.len());
    for key in keys {
        let bytes = object_bytes(
            gates,
            &gates.config.artifact_bucket,
            &key,
            "GetObject (policy rule)",
        )
        .await?;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        rules.push(policy::rule_file(&key, text));
    }
    Ok(rules)
}

/// The alarms a bake of `stack_name` would watch that exist now, as
/// CloudFormation rollback triggers (at most five; the bake watches all).
async fn rollback_triggers(
    gates: &Gates,
    stack_name: &str,
) -> Result<Vec<RollbackTrigger>, GateError> {
    // Triggers are a second line behind the bake: a stack whose resources
    // cannot be listed now (moto cannot list a rolled-back stack holding a
    // resource it refused) deploys without them.
    let alarms = match crate::bake::watched_alarms(gates, stack_name).await {
        Ok(alarms) => alarms,
        Err(err) => {
            tracing::warn!(error = %err, %stack_name, "no rollback triggers: the watched alarms could not be listed");
            return Ok(Vec::new());
        }
    };
    // The stack's own alarms are listed by name: their ARNs are asked for.
    let unnamed: Vec<String> = alarms
        .iter()
        .filter(|(_, arn)| arn.is_none())
        .map(|(name, _)| name.clone())
        .collect();
    let mut arns: Vec<String> = alarms.into_values().flatten().collect();
    for chunk in unnamed.chunks(100) {
        let described = gates
            .cloudwatch
            .describe_alarms()
            .set_alarm_names(Some(chunk.to_vec()))
            .send()
            .await;
        match described {
            Ok(described) => arns.extend(
                described
                    .metric_alarms()
                    .iter()
                    .filter_map(|a| a.alarm_arn().map(str::to_owned)),
            ),
            Err(err) => {
                let err = GateError::aws("DescribeAlarms", err);
                tracing::warn!(error = %err, %stack_name, "the stack's own alarms are left out of the rollback triggers");
            }
        }
    }
    let mut triggers: Vec<RollbackTrigger> = arns
        .into_iter()
        .map(|arn| RollbackTrigger {
            arn,
            r#type: "AWS::CloudWatch::Alarm".to_owned(),
        })
        .collect();
    triggers.truncate(MAX_ROLLBACK_TRIGGERS);
    Ok(triggers)
}
