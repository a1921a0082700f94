//! `s3-trigger`: an artifact upload becomes one PENDING build.
//!
//! S3 calls this function for `.../cloudformation-params.json` uploads. Each
//! record is handled on its own: a malformed key is rejected with a message
//! naming the key and the rule, and the other records still go through.

pub mod artifact;
pub mod params;

use std::collections::BTreeSet;

use aws_lambda_events::s3::S3EventRecord;
use aws_sdk_s3::error::DisplayErrorContext;
use builddao::{BuildStore, Created, NewBuild};
use serde::Serialize;
use serde_json::Value;
use tracing::{info, warn, Instrument};

use artifact::{ArtifactKey, KeyError, TEMPLATE_FILE, TRIGGER_FILE};
use params::ParamsError;

/// Configuration, read once at cold start.
#[derive(Debug, Clone)]
pub struct Config {
    pub builds_table: String,
    /// The environment this installation deploys to.
    pub deploy_env: String,
    /// Every environment name an override file may carry. An override for any
    /// other name is a typo that would otherwise be silently ignored.
    pub known_envs: BTreeSet<String>,
    /// Stack names no upload may deploy: this install's own stack (its
    /// `AWS::StackName`, and `{env}-deployer`, the name `make deploy` gives it).
    /// The CloudFormation service role could rewrite Deployer itself.
    pub reserved_stacks: BTreeSet<String>,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut problems = Vec::new();
        let builds_table = get("BUILDS_TABLE").filter(|v| !v.is_empty());
        if builds_table.is_none() {
            problems.push("BUILDS_TABLE is required (the builds table name)".to_owned());
        }
        let deploy_env = get("DEPLOY_ENV").filter(|v| !v.is_empty());
        if deploy_env.is_none() {
            problems.push("DEPLOY_ENV is required (the environment builds deploy to)".to_owned());
        }
        let known_envs: BTreeSet<String> = get("KNOWN_ENVS")
            .unwrap_or_else(|| "dev,stg,prd".to_owned())
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        for env in known_envs.iter().chain(deploy_env.iter()) {
            if !env.chars().all(|c| c.is_ascii_alphanumeric()) {
                problems.push(format!(
                    "environment name {env:?} must be letters and digits only"
                ));
            }
        }
        if let Some(env) = &deploy_env {
            if !known_envs.contains(env) {
                problems.push(format!(
                    "DEPLOY_ENV {env:?} is not one of KNOWN_ENVS {known_envs:?}"
                ));
            }
        }
        let install_stack = get("INSTALL_STACK_NAME").filter(|v| !v.is_empty());
        match (builds_table, deploy_env) {
            (Some(builds_table), Some(deploy_env)) if problems.is_empty() => {
                let reserved_stacks = std::iter::once(format!("{deploy_env}-deployer"))
                    .chain(install_stack)
                    .collect();
                Ok(Config {
                    builds_table,
                    deploy_env,
                    known_envs,
                    reserved_stacks,
                })
            }
            _ => Err(ConfigError(problems)),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("s3-trigger configuration is invalid:\n  - {}", .0.join("\n  - "))]
pub struct ConfigError(pub Vec<String>);

/// Why one upload did not become a build.
#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    #[error("record is not an S3 event record: {0}")]
    NotS3Record(String),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("key {key:?} is not a trigger: builds start from {TRIGGER_FILE}")]
    NotTrigger { key: String },
    #[error("key {key:?}: repo {repo:?} would deploy stack {stack:?}, the stack of this Deployer install itself; uploads for it are refused (use another repo name)")]
    InstallStack {
        key: String,
        repo: String,
        stack: String,
    },
    #[error("{template_key}: template is missing; upload it before {TRIGGER_FILE}")]
    MissingTemplate { template_key: String },
    #[error(transparent)]
    Params(#[from] ParamsError),
    #[error("{key}: override for unknown environment {env:?}; known environments are {known:?}")]
    UnknownEnvOverride {
        key: String,
        env: String,
        known: BTreeSet<String>,
    },
    /// AWS said no for a reason that may pass: the whole event is retried.
    #[error("{operation} {target} failed: {message}")]
    Aws {
        operation: &'static str,
        target: String,
        message: String,
    },
    #[error(transparent)]
    Store(#[from] builddao::StoreError),
}

impl TriggerError {
    /// Bad input stays bad; only AWS trouble is worth a retry.
    pub fn is_retryable(&self) -> bool {
        matches!(self, TriggerError::Aws { .. } | TriggerError::Store(_))
    }
}

impl From<TriggerError> for lambda_runtime::Diagnostic {
    fn from(err: TriggerError) -> Self {
        let kind = if err.is_retryable() {
            "Retryable"
        } else {
            "NonRetryable"
        };
        lambda_runtime::Diagnostic {
            error_type: kind.to_owned(),
            error_message: err.to_string(),
        }
    }
}

/// What happened to each record of one notification.
#[derive(Debug, Default, Serialize, PartialEq)]
pub struct TriggerReport {
    /// Builds created, as `repo/env/sk`.
    pub created: Vec<String>,
    /// Builds that already existed (replayed notification).
    pub replayed: Vec<String>,
    /// Rejected uploads with the reason.
    pub rejected: Vec<Rejection>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Rejection {
    pub key: String,
    pub error: String,
}

/// Handles one S3 notification. Returns an error only when a record failed for
/// a reason a retry may cure; records already stored are not stored twice.
pub async fn handle(
    config: &Config,
    s3: &aws_sdk_s3::Client,
    builds: &BuildStore,
    event: Value,
) -> Result<TriggerReport, TriggerError> {
    let records = match event.get("Records").and_then(Value::as_array) {
        Some(records) => records.clone(),
        None => {
            warn!("event has no Records array; nothing to do");
            return Ok(TriggerReport::default());
        }
    };
    let mut report = TriggerReport::default();
    let mut retryable = None;
    for record in records {
        let raw_key = record
            .pointer("/s3/object/key")
            .and_then(Value::as_str)
            .unwrap_or("<no key>")
            .to_owned();
        let span = tracing::info_span!("upload", key = %raw_key, build_id = tracing::field::Empty, repo = tracing::field::Empty, env = %config.deploy_env);
        let outcome = handle_record(config, s3, builds, record)
            .instrument(span)
            .await;
        match outcome {
            Ok(Created::New(build)) => {
                info!(build_id = %build.id(), repo = %build.repo, env = %build.env, status = %build.status, "build created");
                report.created.push(build.id().to_string());
            }
            Ok(Created::AlreadyExists(build)) => {
                info!(build_id = %build.id(), repo = %build.repo, env = %build.env, "notification replayed; build already exists");
                report.replayed.push(build.id().to_string());
            }
            Err(err) if err.is_retryable() => {
                warn!(key = %raw_key, error = %err, "upload failed; the event will be retried");
                retryable = Some(err);
            }
            Err(err) => {
                warn!(key = %raw_key, error = %err, "upload rejected");
                report.rejected.push(Rejection {
                    key: raw_key,
                    error: err.to_string(),
                });
            }
        }
    }
    match retryable {
        Some(err) => Err(err),
        None => Ok(report),
    }
}

async fn handle_record(
    config: &Config,
    s3: &aws_sdk_s3::Client,
    builds: &BuildStore,
    record: Value,
) -> Result<Created, TriggerError> {
    let record: S3EventRecord =
        serde_json::from_value(record).map_err(|e| TriggerError::NotS3Record(e.to_string()))?;
    let bucket = record
        .s3
        .bucket
        .name
        .clone()
        .ok_or_else(|| TriggerError::NotS3Record("s3.bucket.name is missing".into()))?;
    let encoded_key = record
        .s3
        .object
        .key
        .clone()
        .ok_or_else(|| TriggerError::NotS3Record("s3.object.key is missing".into()))?;
    let key = ArtifactKey::from_event_key(&encoded_key)?;
    if key.file != TRIGGER_FILE {
        return Err(TriggerError::NotTrigger {
            key: format!("{}{}", key.prefix(), key.file),
        });
    }
    let prefix = key.prefix();
    let trigger_key = format!("{prefix}{TRIGGER_FILE}");
    tracing::Span::current().record("repo", key.repo.as_str());
    // The same name NewBuild::stack_name gives the build's stack.
    let stack = format!("{}-{}", config.deploy_env, key.repo);
    if config.reserved_stacks.contains(&stack) {
        return Err(TriggerError::InstallStack {
            key: trigger_key,
            repo: key.repo,
            stack,
        });
    }

    let template_key = format!("{prefix}{TEMPLATE_FILE}");
    head_template(s3, &bucket, &template_key).await?;

    let base = params::parse(&trigger_key, &read_object(s3, &bucket, &trigger_key).await?)?;
    let overrides = read_override(config, s3, &bucket, &prefix).await?;
    let parameters = params::merge(base, overrides);

    let sequencer = record.s3.object.sequencer.clone().unwrap_or_default();
    let etag = record.s3.object.e_tag.clone().unwrap_or_default();
    let origin = format!(
        "{bucket}\n{trigger_key}\n{sequencer}\n{etag}\n{}",
        record.event_time.to_rfc3339()
    );
    let new_build = NewBuild {
        repo: key.repo.clone(),
        env: config.deploy_env.clone(),
        branch: key.branch.clone(),
        version: key.version.to_string(),
        build_number: key.version.build_number,
        commit_hash: key.version.commit_hash.clone(),
        artifact_bucket: bucket,
        artifact_prefix: prefix,
        parameters,
        uploaded_unix_ms: record.event_time.timestamp_millis(),
        origin: origin.into_bytes(),
        uploaded_by: record
            .principal_id
            .principal_id
            .clone()
            .filter(|p| !p.is_empty()),
    };
    let build = new_build.into_build(ledger::now_rfc3339());
    tracing::Span::current().record("build_id", build.id().to_string().as_str());
    Ok(builds.create(&build).await?)
}

async fn head_template(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    template_key: &str,
) -> Result<(), TriggerError> {
    match s3
        .head_object()
        .bucket(bucket)
        .key(template_key)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(err) if err.as_service_error().is_some_and(|e| e.is_not_found()) => {
            Err(TriggerError::MissingTemplate {
                template_key: template_key.to_owned(),
            })
        }
        Err(err) => Err(TriggerError::Aws {
            operation: "HeadObject",
            target: format!("s3://{bucket}/{template_key}"),
            message: DisplayErrorContext(&err).to_string(),
        }),
    }
}

async fn read_object(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> Result<Vec<u8>, TriggerError> {
    let aws = |message: String| TriggerError::Aws {
        operation: "GetObject",
        target: format!("s3://{bucket}/{key}"),
        message,
    };
    let out = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| aws(DisplayErrorContext(&e).to_string()))?;
    let size = out.content_length().unwrap_or(0).max(0) as usize;
    if size > params::MAX_PARAMS_BYTES {
        return Err(ParamsError::TooLarge {
            key: key.to_owned(),
            size,
        }
        .into());
    }
    let body = out.body.collect().await.map_err(|e| aws(e.to_string()))?;
    Ok(body.into_bytes().to_vec())
}

/// Reads this environment's override, refusing overrides for unknown envs.
async fn read_override(
    config: &Config,
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> Result<params::Parameters, TriggerError> {
    let listing_prefix = format!("{prefix}cloudformation-params.");
    let out = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(&listing_prefix)
        .send()
        .await
        .map_err(|e| TriggerError::Aws {
            operation: "ListObjectsV2",
            target: format!("s3://{bucket}/{listing_prefix}"),
            message: DisplayErrorContext(&e).to_string(),
        })?;
    let mut ours = None;
    for object in out.contents() {
        let Some(key) = object.key() else { continue };
        let file = &key[prefix.len()..];
        let Some(env) = params::override_env(file) else {
            continue;
        };
        if !config.known_envs.contains(env) {
            return Err(TriggerError::UnknownEnvOverride {
                key: key.to_owned(),
                env: env.to_owned(),
                known: config.known_envs.clone(),
            });
        }
        if env == config.deploy_env {
            ours = Some(key.to_owned());
        }
    }
    match ours {
        Some(key) => Ok(params::parse(&key, &read_object(s3, bucket, &key).await?)?),
        None => Ok(params::Parameters::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_lists_every_problem_at_once() {
        let err = Config::from_lookup(|name| match name {
            "KNOWN_ENVS" => Some("dev,st-g".into()),
            _ => None,
        })
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("BUILDS_TABLE"), "{text}");
        assert!(text.contains("DEPLOY_ENV is required"), "{text}");
        assert!(text.contains("\"st-g\""), "{text}");
    }

    #[test]
    fn the_install_stack_is_reserved_by_convention_and_by_name() {
        let config = |install: Option<&str>| {
            Config::from_lookup(|name| match name {
                "BUILDS_TABLE" => Some("t".into()),
                "DEPLOY_ENV" => Some("dev".into()),
                "INSTALL_STACK_NAME" => install.map(str::to_owned),
                _ => None,
            })
            .unwrap()
            .reserved_stacks
        };
        assert_eq!(config(None), BTreeSet::from(["dev-deployer".to_owned()]));
        assert_eq!(
            config(Some("dev-platform")),
            BTreeSet::from(["dev-deployer".to_owned(), "dev-platform".to_owned()])
        );
    }

    #[test]
    fn deploy_env_must_be_known() {
        let err = Config::from_lookup(|name| match name {
            "BUILDS_TABLE" => Some("t".into()),
            "DEPLOY_ENV" => Some("qa".into()),
            _ => None,
        })
        .unwrap_err();
        assert!(err.to_string().contains("\"qa\" is not one of KNOWN_ENVS"));
    }
}
