//! ci-dispatch configuration: one typed struct, read and validated once at
//! cold start, with every problem reported at once.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use crate::naming::{NamePattern, ServiceNames};

/// Which event sources may trigger deploys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sources {
    pub ecr: bool,
    pub ssm: bool,
    pub s3: bool,
    pub manual: bool,
}

/// An S3 object a service reads its environment from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub struct EnvFile {
    pub bucket: String,
    pub key: String,
}

/// What a redeploy does with ECS's deployment circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitBreaker {
    /// Turned on with rollback for every redeploy, unless the service has
    /// it on already (then its own setting, rollback or not, is honoured).
    Rollback,
    /// The service's deployment configuration is left as it is.
    Keep,
}

/// Where notifications go: SSM parameters are read by the first notification.
pub use notify::SecretSource as Secret;

#[derive(Debug, Clone)]
pub struct Config {
    pub project: String,
    pub env: String,
    pub cluster_pattern: NamePattern,
    pub service_pattern: NamePattern,
    pub family_pattern: NamePattern,
    /// Names used for the backend service, whose repo is `{project}_backend`.
    pub backend_service_pattern: NamePattern,
    /// Explicit names per service; override the patterns.
    pub service_map: BTreeMap<String, ServiceNames>,
    /// Env files per service (S3 CloudTrail events redeploy their users).
    pub env_files: BTreeMap<String, Vec<EnvFile>>,
    /// Image tags that trigger a deploy; empty means any tag.
    pub ecr_tags: BTreeSet<String>,
    pub sources: Sources,
    pub dry_run: bool,
    pub circuit_breaker: CircuitBreaker,
    /// CloudWatch alarms per service (short name) that fail, and roll back,
    /// its deployments (ECS deployment alarms).
    pub deployment_alarms: BTreeMap<String, Vec<String>>,
    /// Table remembering processed events, pushed digests and started deploys.
    pub dispatch_table: String,
    /// How long processed events are remembered.
    pub dedupe_ttl_seconds: u64,
    /// The ledger of the redeploys this function starts.
    pub service_deployments_table: Option<String>,
    /// Builds of the deployment state machine (for aws.states events).
    pub builds_table: Option<String>,
    pub stacks_table: Option<String>,
    pub state_machine_arn: Option<String>,
    pub slack_webhook: Option<Secret>,
    pub webhook: Option<Secret>,
    pub console_region: String,
}

#[derive(Debug, thiserror::Error)]
#[error("ci-dispatch configuration is invalid:\n  - {}", .0.join("\n  - "))]
pub struct ConfigError(pub Vec<String>);

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut problems = Vec::new();
        let value = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let required = |name: &str, what: &str, problems: &mut Vec<String>| {
            value(name).unwrap_or_else(|| {
                problems.push(format!("{name} is required ({what})"));
                String::new()
            })
        };
        let project = required(
            "PROJECT",
            "the project name used in resource names",
            &mut problems,
        );
        let env = required("DEPLOY_ENV", "the environment, e.g. dev", &mut problems);
        let dispatch_table = required("DISPATCH_TABLE", "the idempotency table", &mut problems);

        let pattern = |name: &str, default: &str, problems: &mut Vec<String>| {
            let raw = value(name).unwrap_or_else(|| default.to_owned());
            NamePattern::parse(&raw).unwrap_or_else(|err| {
                problems.push(format!("{name}: {err}"));
                NamePattern::parse(default).expect("default patterns are valid")
            })
        };
        let cluster_pattern = pattern("CLUSTER_PATTERN", "{project}_cluster_{env}", &mut problems);
        let service_pattern = pattern(
            "SERVICE_PATTERN",
            "{project}_service_{name}_{env}",
            &mut problems,
        );
        let family_pattern = pattern(
            "TASK_FAMILY_PATTERN",
            "{project}_service_{name}_{env}",
            &mut problems,
        );
        let backend_service_pattern = pattern(
            "BACKEND_SERVICE_PATTERN",
            "{project}_backend_{env}",
            &mut problems,
        );
        if !service_pattern.has_name() {
            problems.push("SERVICE_PATTERN must contain {name}, or every service would map to one ECS service".into());
        }
        if !family_pattern.has_name() {
            problems.push("TASK_FAMILY_PATTERN must contain {name}".into());
        }

        let service_map: BTreeMap<String, ServiceNames> =
            json_setting(&value, "SERVICE_MAP", &mut problems);
        let env_files: BTreeMap<String, Vec<EnvFile>> =
            json_setting(&value, "ENV_FILES", &mut problems);
        let deployment_alarms: BTreeMap<String, Vec<String>> =
            json_setting(&value, "DEPLOYMENT_ALARMS", &mut problems);
        for (service, alarms) in &deployment_alarms {
            if alarms.iter().any(|a| a.trim().is_empty()) {
                problems.push(format!(
                    "DEPLOYMENT_ALARMS: service {service} lists an empty alarm name"
                ));
            }
        }
        let circuit_breaker = match value("CIRCUIT_BREAKER").as_deref() {
            None | Some("rollback") => CircuitBreaker::Rollback,
            Some("keep") => CircuitBreaker::Keep,
            Some(other) => {
                problems.push(format!(
                    "CIRCUIT_BREAKER must be rollback or keep, got {other:?}"
                ));
                CircuitBreaker::Rollback
            }
        };
        let ecr_tags = value("ECR_TAGS")
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();

        let flag =
            |name: &str, default: bool, problems: &mut Vec<String>| match value(name).as_deref() {
                None => default,
                Some("true" | "1" | "yes") => true,
                Some("false" | "0" | "no") => false,
                Some(other) => {
                    problems.push(format!("{name} must be true or false, got {other:?}"));
                    default
                }
            };
        let sources = Sources {
            ecr: flag("ENABLE_ECR", true, &mut problems),
            ssm: flag("ENABLE_SSM", true, &mut problems),
            s3: flag("ENABLE_S3", true, &mut problems),
            manual: flag("ENABLE_MANUAL", true, &mut problems),
        };
        let dry_run = flag("DRY_RUN", false, &mut problems);
        let dedupe_ttl_seconds = match value("DEDUPE_TTL_SECONDS") {
            None => 7 * 24 * 3600,
            Some(raw) => raw.parse().unwrap_or_else(|_| {
                problems.push(format!(
                    "DEDUPE_TTL_SECONDS must be a whole number of seconds, got {raw:?}"
                ));
                0
            }),
        };
        let secret = |url: &str, parameter: &str, problems: &mut Vec<String>| match (
            value(url),
            value(parameter),
        ) {
            (Some(_), Some(_)) => {
                problems.push(format!("set {url} or {parameter}, not both"));
                None
            }
            (Some(v), None) => {
                if !v.starts_with("https://") && !v.starts_with("http://") {
                    problems.push(format!("{url} must be an http(s) URL"));
                }
                Some(Secret::Value(v))
            }
            (None, Some(p)) => Some(Secret::Parameter(p)),
            (None, None) => None,
        };
        let slack_webhook = secret(
            "SLACK_WEBHOOK_URL",
            "SLACK_WEBHOOK_PARAMETER",
            &mut problems,
        );
        let webhook = secret("WEBHOOK_URL", "WEBHOOK_PARAMETER", &mut problems);
        let state_machine_arn = value("STATE_MACHINE_ARN");
        let builds_table = value("BUILDS_TABLE");
        let service_deployments_table = value("SERVICE_DEPLOYMENTS_TABLE");
        let stacks_table = value("STACKS_TABLE");
        if state_machine_arn.is_some() && builds_table.is_none() {
            problems.push("BUILDS_TABLE is required when STATE_MACHINE_ARN is set".into());
        }
        if !problems.is_empty() {
            return Err(ConfigError(problems));
        }
        Ok(Config {
            project,
            env,
            cluster_pattern,
            service_pattern,
            family_pattern,
            backend_service_pattern,
            service_map,
            env_files,
            ecr_tags,
            sources,
            dry_run,
            circuit_breaker,
            deployment_alarms,
            dispatch_table,
            dedupe_ttl_seconds,
            service_deployments_table,
            builds_table,
            stacks_table,
            state_machine_arn,
            slack_webhook,
            webhook,
            console_region: value("AWS_REGION").unwrap_or_else(|| "us-east-1".into()),
        })
    }
}

fn json_setting<T: serde::de::DeserializeOwned + Default>(
    value: &impl Fn(&str) -> Option<String>,
    name: &str,
    problems: &mut Vec<String>,
) -> T {
    match value(name) {
        None => T::default(),
        Some(raw) => serde_json::from_str(&raw).unwrap_or_else(|err| {
            problems.push(format!(
                "{name} is not valid JSON of the expected shape: {err}"
            ));
            T::default()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mistake_is_listed_in_one_error() {
        let err = Config::from_lookup(|name| {
            match name {
                "PROJECT" => Some("shop"),
                "SERVICE_PATTERN" => Some("{project}_service_{env}"),
                "CLUSTER_PATTERN" => Some("{project}_{cluster}"),
                "SERVICE_MAP" => Some("{not json"),
                "DRY_RUN" => Some("maybe"),
                "SLACK_WEBHOOK_URL" => Some("hooks.slack.com/x"),
                "CIRCUIT_BREAKER" => Some("sometimes"),
                "DEPLOYMENT_ALARMS" => Some(r#"{"api": [""]}"#),
                _ => None,
            }
            .map(str::to_owned)
        })
        .unwrap_err()
        .to_string();
        for fragment in [
            "DEPLOY_ENV is required",
            "DISPATCH_TABLE is required",
            "SERVICE_PATTERN must contain {name}",
            "CLUSTER_PATTERN: unknown placeholder {cluster}",
            "SERVICE_MAP is not valid JSON",
            "DRY_RUN must be true or false",
            "SLACK_WEBHOOK_URL must be an http(s) URL",
            "CIRCUIT_BREAKER must be rollback or keep, got \"sometimes\"",
            "DEPLOYMENT_ALARMS: service api lists an empty alarm name",
        ] {
            assert!(err.contains(fragment), "missing {fragment:?} in:\n{err}");
        }
    }
}
